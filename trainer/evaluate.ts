/**
 * Evaluation of subnets for the accuracy table: for each subnet, batch norm re-calibrated on a
 * fixed subset of the training images (OFA/CompOFA: about 2000), then top-1 accuracy and loss on
 * the validation split. For `compound`, every subnet of the space (243 per resolution).
 */
import type * as tfjs from '@tensorflow/tfjs';

import { architectureKey } from '../compofa/architecture.js';
import { CompoundSpace, type SubnetSpec } from '../compofa/design-space.js';
import { deriveSeed, Random } from '../compofa/random.js';
import { TABLE_API_VERSION, type AccuracyRow, type AccuracyTable } from '../compofa/tables.js';
import type { TensorFlow } from './backend.js';
import type { Dataset, Split } from './datasets.js';
import type { Supernet } from './supernet.js';

/** Options of {@link evaluateSubnets}. */
export interface EvaluateOptions {
  /** The subnets to evaluate; default: every subnet of a compound space. */
  readonly subnets?: Iterable<SubnetSpec>;
  /** Training images used to re-calibrate batch norm. Default 2000 (or the whole split). */
  readonly calibrationImages?: number;
  readonly calibrationBatchSize?: number;
  readonly batchSize?: number;
  /** Picks the calibration images. Default 0. */
  readonly seed?: number;
  /** Validation images evaluated (a prefix of the split). Default: all. */
  readonly validationImages?: number;
  /** Recorded in the table's settings, e.g. the checkpoint step. */
  readonly settings?: Readonly<Record<string, string | number | boolean>>;
  readonly onProgress?: (done: number, total: number, row: AccuracyRow) => void;
  readonly now?: () => Date;
}

/**
 * The accuracy table of `subnets` of `supernet` on `dataset`. The supernet's batch-norm moving
 * averages are restored afterwards, so evaluation changes nothing.
 */
export function evaluateSubnets(
  tf: TensorFlow,
  supernet: Supernet,
  dataset: Dataset,
  options: EvaluateOptions = {},
): AccuracyTable {
  const space = supernet.space;
  const subnets = [...(options.subnets ?? defaultSubnets(supernet))];
  if (subnets.length === 0) throw new RangeError('there are no subnets to evaluate');
  for (const spec of subnets) space.validate(spec);
  const batchSize = positive('batchSize', options.batchSize ?? 256);
  const calibrationBatchSize = positive(
    'calibrationBatchSize',
    options.calibrationBatchSize ?? 200,
  );
  const calibrationCount = Math.min(
    positive('calibrationImages', options.calibrationImages ?? 2000),
    dataset.train.count,
  );
  const validationCount = Math.min(
    positive('validationImages', options.validationImages ?? dataset.validation.count),
    dataset.validation.count,
  );
  const seed = options.seed ?? 0;
  const shape = [dataset.resolution, dataset.resolution, dataset.channels] as const;

  const saved = [...supernet.variables]
    .filter(([name]) => /moving_(mean|variance)$/.test(name))
    .map(([, v]) => [v, v.clone()] as const);
  const calibration = calibrationBatches(tf, dataset, calibrationCount, calibrationBatchSize, seed);
  const rows: AccuracyRow[] = [];
  try {
    for (const spec of subnets) {
      recalibrateFor(tf, supernet, spec, calibration);
      const { correct, loss } = score(
        tf,
        supernet,
        spec,
        dataset.validation,
        validationCount,
        batchSize,
        shape,
      );
      const row = {
        subnet: space.format(spec),
        accuracy: correct / validationCount,
        loss: loss / validationCount,
      };
      rows.push(row);
      options.onProgress?.(rows.length, subnets.length, row);
    }
  } finally {
    tf.dispose(calibration);
    for (const [variable, value] of saved) {
      variable.assign(value);
      value.dispose();
    }
  }
  return {
    apiVersion: TABLE_API_VERSION,
    kind: 'AccuracyTable',
    subject: { designSpace: space.kind, architectureKey: architectureKey(space.architecture) },
    measuredAt: (options.now?.() ?? new Date()).toISOString(),
    dataset: { name: dataset.name, split: 'validation', samples: validationCount },
    settings: {
      calibrationImages: calibrationCount,
      calibrationBatchSize,
      batchSize,
      seed,
      ...options.settings,
    },
    method: 'measured',
    rows,
  };
}

function defaultSubnets(supernet: Supernet): Iterable<SubnetSpec> {
  if (supernet.space instanceof CompoundSpace) return supernet.space.enumerate();
  throw new RangeError(
    'the elastic space is too large to evaluate whole: pass the subnets to evaluate (e.g. a random sample)',
  );
}

function positive(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1)
    throw new RangeError(`${name} must be a positive integer, got ${value}`);
  return value;
}

/**
 * A fixed, seeded subset of `count` training images in batches, kept for every subnet: the
 * batch-norm re-calibration set of evaluation and extraction alike. The caller disposes them.
 */
export function calibrationBatches(
  tf: TensorFlow,
  dataset: Dataset,
  count: number,
  batchSize: number,
  seed: number,
): tfjs.Tensor4D[] {
  const split = dataset.train;
  const shape = [dataset.resolution, dataset.resolution, dataset.channels] as const;
  const size = shape[0] * shape[1] * shape[2];
  const order = new Random(deriveSeed(seed, 'calibration'))
    .shuffled(Array.from({ length: split.count }, (_, i) => i))
    .slice(0, count);
  const out: tfjs.Tensor4D[] = [];
  for (let start = 0; start < order.length; start += batchSize) {
    const indices = order.slice(start, start + batchSize);
    const images = new Float32Array(indices.length * size);
    indices.forEach((index, i) => {
      images.set(split.images.subarray(index * size, (index + 1) * size), i * size);
    });
    out.push(tf.tensor4d(images, [indices.length, ...shape]));
  }
  return out;
}

/** Re-calibrates `spec`'s batch norm on `calibration`, resized to the subnet's resolution. */
export function recalibrateFor(
  tf: TensorFlow,
  supernet: Supernet,
  spec: SubnetSpec,
  calibration: readonly tfjs.Tensor4D[],
): void {
  const resized = calibration.map((batch) => resize(tf, batch, spec.resolution));
  supernet.recalibrate(spec, resized);
  resized.forEach((batch, i) => {
    if (batch !== calibration[i]) batch.dispose();
  });
}

function resize(tf: TensorFlow, images: tfjs.Tensor4D, resolution: number): tfjs.Tensor4D {
  return images.shape[1] === resolution
    ? images
    : tf.image.resizeBilinear(images, [resolution, resolution]);
}

/** Correct predictions and summed cross-entropy over the first `count` images of `split`. */
function score(
  tf: TensorFlow,
  supernet: Supernet,
  spec: SubnetSpec,
  split: Split,
  count: number,
  batchSize: number,
  shape: readonly [number, number, number],
): { correct: number; loss: number } {
  const size = shape[0] * shape[1] * shape[2];
  const classes = supernet.space.architecture.numClasses;
  let correct = 0;
  let loss = 0;
  for (let start = 0; start < count; start += batchSize) {
    const n = Math.min(batchSize, count - start);
    const [batchCorrect, batchLoss] = tf.tidy(() => {
      const images = resize(
        tf,
        tf.tensor4d(split.images.subarray(start * size, (start + n) * size), [n, ...shape]),
        spec.resolution,
      );
      const labels = tf.tensor1d(split.labels.subarray(start, start + n), 'int32');
      const logits = supernet.forward(images, spec, 'inference');
      const hits = logits.argMax(1).equal(labels).sum().dataSync()[0] ?? 0;
      const crossEntropy =
        tf.losses
          .softmaxCrossEntropy(tf.oneHot(labels, classes), logits, undefined, 0, tf.Reduction.SUM)
          .dataSync()[0] ?? 0;
      return [hits, crossEntropy];
    });
    correct += batchCorrect;
    loss += batchLoss;
  }
  return { correct, loss };
}
