/**
 * OFA's accuracy predictor: an MLP that maps a subnet's one-hot encoding to its accuracy, trained
 * on a few thousand measured subnets, so that search over the elastic space (over 10^19 subnets,
 * too many to evaluate) can rank candidates it never measured. It works for the compound space
 * too, where all 243 subnets per resolution can usually be measured instead.
 *
 * Encoding (OFA's): per unit and per block position up to {@link MAX_DEPTH}, a one-hot kernel size
 * over the unit's kernel sizes and a one-hot expand ratio over the space's expand ratios, all zero
 * for blocks beyond the unit's depth; then a one-hot resolution. For the ImageNet elastic space that
 * is 20 * (3 + 3) + resolutions values: OFA's 128 with 8 resolutions.
 *
 * The model is a plain tfjs LayersModel (dense relu x N, dense 1; OFA's 400-400-400-1 by default)
 * trained with Adam on the mean squared error of standardised targets, plus a small L2 penalty on
 * the kernels (see {@link PredictorOptions.l2}); after training the output layer is rescaled so the
 * saved model.json outputs the accuracy itself and needs nothing but tf.loadLayersModel.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

import type * as tfjs from '@tensorflow/tfjs';

import { architectureKey, canonicalJson } from '../compofa/architecture.js';
import {
  MAX_DEPTH,
  SubnetSpecError,
  type DesignSpace,
  type DesignSpaceKind,
  type SubnetSpec,
} from '../compofa/design-space.js';
import { Random, deriveSeed } from '../compofa/random.js';
import { TABLE_API_VERSION, type AccuracyRow, type AccuracyTable } from '../compofa/tables.js';
import type { TensorFlow } from './backend.js';

/** The layout of the encoding: which value each one-hot group stands for. */
export interface EncodingLayout {
  /** Per unit, the kernel sizes its blocks' one-hot groups range over. */
  readonly kernelSizes: readonly (readonly number[])[];
  readonly expandRatios: readonly number[];
  readonly resolutions: readonly number[];
}

/** The encoding layout of `space`; two predictors are interchangeable only when theirs match. */
export function encodingLayout(space: DesignSpace): EncodingLayout {
  return {
    kernelSizes: space.architecture.units.map((_, unit) => [...space.kernelSizes(unit)]),
    expandRatios: [...space.expandRatios],
    resolutions: [...space.architecture.resolutions],
  };
}

/** The number of values in {@link encodeSubnet}'s encoding for `space`. */
export function encodingLength(space: DesignSpace): number {
  const layout = encodingLayout(space);
  const blocks = layout.kernelSizes.reduce(
    (sum, kernels) => sum + MAX_DEPTH * (kernels.length + layout.expandRatios.length),
    0,
  );
  return blocks + layout.resolutions.length;
}

/**
 * OFA's encoding: per block position (units x MAX_DEPTH), one-hot kernel over
 * `space.kernelSizes(unit)` and one-hot expand over `space.expandRatios`, all zero for blocks
 * beyond the unit's depth; then one-hot resolution over `architecture.resolutions`. The spec is
 * validated first (throws {@link SubnetSpecError}).
 */
export function encodeSubnet(space: DesignSpace, spec: SubnetSpec): Float32Array {
  const out = new Float32Array(encodingLength(space));
  encodeInto(space, space.validate(spec), out, 0);
  return out;
}

/** Writes the encoding of a valid `spec` into `out` at `offset`. */
function encodeInto(space: DesignSpace, spec: SubnetSpec, out: Float32Array, offset: number): void {
  const expands = space.expandRatios;
  let position = offset;
  spec.units.forEach((unit, index) => {
    const kernels = space.kernelSizes(index);
    for (let block = 0; block < MAX_DEPTH; block++) {
      if (block < unit.depth) {
        out[position + kernels.indexOf(unit.kernelSizes[block] ?? NaN)] = 1;
        out[position + kernels.length + expands.indexOf(unit.expandRatios[block] ?? NaN)] = 1;
      }
      position += kernels.length + expands.length;
    }
  });
  out[position + space.architecture.resolutions.indexOf(spec.resolution)] = 1;
}

/** Options of {@link AccuracyPredictor.train}. */
export interface PredictorOptions {
  /** Widths of the hidden relu layers. Default [400, 400, 400] (OFA's). */
  readonly hiddenUnits?: readonly number[];
  /** Passes over the training rows. Default 100. */
  readonly epochs?: number;
  /** Default 64. */
  readonly batchSize?: number;
  /** Adam's learning rate. Default 1e-3. */
  readonly learningRate?: number;
  /** Seeds the weight initialisation, the validation split and the batch order. Default 0. */
  readonly seed?: number;
  /**
   * L2 penalty on the dense kernels, added to the loss as `l2 * sum(kernel^2)` (Keras's l2
   * regulariser; the loss is the MSE of standardised targets, so it does not depend on the
   * accuracies' scale). Default 0.01; 0 trains on the plain MSE, as OFA describes. With a few
   * hundred to a few thousand rows it cuts the validation RMSE by about a third.
   */
  readonly l2?: number;
  /** Share of the rows held out to measure the validation RMSE, in [0, 1). Default 0.2. */
  readonly validationFraction?: number;
}

/** How training went. RMSEs are on the accuracy scale ([0, 1]). */
export interface PredictorReport {
  readonly trainRmse: number;
  /** NaN when `validationFraction` is 0. */
  readonly validationRmse: number;
  /** Rows used for training (excluding the validation rows). */
  readonly samples: number;
  readonly epochs: number;
}

/** One measured subnet: its id in the space and its accuracy in [0, 1]. */
export interface PredictorRow {
  readonly subnet: string;
  readonly accuracy: number;
}

/** A saved predictor that cannot be loaded, or one for another supernet; names the folder. */
export class PredictorError extends Error {
  override readonly name = 'PredictorError';
}

/** Format version of predictor.json. */
export const PREDICTOR_FORMAT_VERSION = 1;

const METADATA_FILE = 'predictor.json';

/** What predictor.json holds next to the model's model.json and weights. */
interface PredictorMetadata {
  readonly version: number;
  readonly kind: 'AccuracyPredictor';
  readonly designSpace: DesignSpaceKind;
  readonly architectureKey: string;
  readonly encodingLength: number;
  readonly encoding: EncodingLayout;
  /** JSON has no NaN: a missing validation RMSE is stored as null. */
  readonly report?: Omit<PredictorReport, 'validationRmse'> & {
    readonly validationRmse: number | null;
  };
}

/** Predictions are made in batches of this many subnets. */
const PREDICT_BATCH = 4096;

/** An accuracy predictor for the subnets of one design space. */
export class AccuracyPredictor {
  private disposed = false;

  private constructor(
    private readonly tf: TensorFlow,
    readonly space: DesignSpace,
    private readonly model: tfjs.LayersModel,
    /** How training went; from predictor.json for a loaded predictor. */
    readonly report: PredictorReport | undefined,
  ) {}

  /**
   * Trains a predictor on measured `rows` of `space`. Deterministic from `options.seed`: the
   * weights are initialised from seeds derived from it and the split and batch order come from
   * {@link Random}. Throws {@link SubnetSpecError} for a row whose subnet is not in the space and
   * RangeError for a bad accuracy or option, naming the row or option.
   */
  static async train(
    tf: TensorFlow,
    space: DesignSpace,
    rows: readonly PredictorRow[],
    options: PredictorOptions = {},
  ): Promise<{ predictor: AccuracyPredictor; report: PredictorReport }> {
    const settings = validateOptions(options);
    const { encodings, targets } = readRows(space, rows);
    const length = encodingLength(space);
    const count = targets.length;
    if (count < 1) throw new RangeError('rows: there is nothing to train on');
    const validationCount = Math.round(count * settings.validationFraction);
    if (settings.validationFraction > 0 && (validationCount < 1 || validationCount >= count)) {
      throw new RangeError(
        `validationFraction ${settings.validationFraction} of ${count} rows leaves ${count - validationCount} for training and ${validationCount} for validation: both need at least one`,
      );
    }
    const order = new Random(deriveSeed(settings.seed, 'predictor', 'split')).shuffled(
      Array.from({ length: count }, (_, i) => i),
    );
    const validation = order.slice(0, validationCount);
    const training = order.slice(validationCount);

    // Standardised targets train faster; the output layer is rescaled afterwards.
    const trainTargets = training.map((i) => targets[i] ?? 0);
    const mean = trainTargets.reduce((a, b) => a + b, 0) / trainTargets.length;
    const variance =
      trainTargets.reduce((sum, y) => sum + (y - mean) ** 2, 0) / trainTargets.length;
    const scale = Math.sqrt(variance) > 1e-6 ? Math.sqrt(variance) : 1;

    const model = buildModel(tf, length, settings.hiddenUnits, settings.seed);
    const optimizer = tf.train.adam(settings.learningRate);
    const variables = model.trainableWeights.map((weight) => weight.read() as tfjs.Variable);
    const kernels = variables.filter((variable) => variable.rank === 2);
    const shuffle = new Random(deriveSeed(settings.seed, 'predictor', 'shuffle'));
    try {
      for (let epoch = 0; epoch < settings.epochs; epoch++) {
        const epochOrder = shuffle.shuffled(training);
        for (let start = 0; start < epochOrder.length; start += settings.batchSize) {
          const batch = epochOrder.slice(start, start + settings.batchSize);
          const x = new Float32Array(batch.length * length);
          const y = new Float32Array(batch.length);
          batch.forEach((row, i) => {
            x.set(encodings.subarray(row * length, (row + 1) * length), i * length);
            y[i] = ((targets[row] ?? 0) - mean) / scale;
          });
          tf.tidy(() => {
            const xs = tf.tensor2d(x, [batch.length, length]);
            const ys = tf.tensor2d(y, [batch.length, 1]);
            optimizer.minimize(
              () => {
                const mse: tfjs.Scalar = tf.losses.meanSquaredError(
                  ys,
                  model.apply(xs, { training: true }) as tfjs.Tensor,
                );
                if (settings.l2 === 0) return mse;
                const squares = kernels.map((kernel) => tf.sum(tf.square(kernel)));
                return tf.add<tfjs.Scalar>(mse, tf.addN(squares).mul(settings.l2));
              },
              false,
              variables,
            );
          });
        }
        // Let the event loop breathe between epochs.
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      rescaleOutput(tf, model, mean, scale);
    } catch (error) {
      model.dispose();
      throw error;
    } finally {
      optimizer.dispose();
    }

    const rmse = (indices: readonly number[]): number => {
      if (indices.length === 0) return NaN;
      const x = new Float32Array(indices.length * length);
      indices.forEach((row, i) => {
        x.set(encodings.subarray(row * length, (row + 1) * length), i * length);
      });
      const predicted = predictEncoded(tf, model, x, indices.length, length);
      const squared = indices.reduce(
        (sum, row, i) => sum + ((predicted[i] ?? NaN) - (targets[row] ?? NaN)) ** 2,
        0,
      );
      return Math.sqrt(squared / indices.length);
    };
    const report: PredictorReport = {
      trainRmse: rmse(training),
      validationRmse: rmse(validation),
      samples: training.length,
      epochs: settings.epochs,
    };
    return { predictor: new AccuracyPredictor(tf, space, model, report), report };
  }

  /**
   * Loads a predictor saved by {@link save}. Refuses, with a {@link PredictorError} naming `dir`,
   * one trained for another design space, architecture or encoding.
   */
  static async load(tf: TensorFlow, space: DesignSpace, dir: string): Promise<AccuracyPredictor> {
    const path = join(dir, METADATA_FILE);
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (error) {
      throw new PredictorError(
        `${dir}: is not a saved accuracy predictor (${METADATA_FILE} cannot be read: ${(error as NodeJS.ErrnoException).code ?? String(error)})`,
      );
    }
    let metadata: Partial<PredictorMetadata>;
    try {
      metadata = JSON.parse(text) as Partial<PredictorMetadata>;
    } catch (error) {
      throw new PredictorError(`${path}: is not valid JSON (${(error as Error).message})`);
    }
    if (metadata.kind !== 'AccuracyPredictor' || metadata.version !== PREDICTOR_FORMAT_VERSION) {
      throw new PredictorError(
        `${path}: is not an accuracy predictor of format version ${PREDICTOR_FORMAT_VERSION}`,
      );
    }
    const key = architectureKey(space.architecture);
    if (metadata.designSpace !== space.kind || metadata.architectureKey !== key) {
      throw new PredictorError(
        `${dir}: the predictor was trained for the ${String(metadata.designSpace)} space of architecture ${String(metadata.architectureKey)}, not the ${space.kind} space of architecture ${key}`,
      );
    }
    const length = encodingLength(space);
    if (
      metadata.encodingLength !== length ||
      canonicalJson(metadata.encoding) !== canonicalJson(encodingLayout(space))
    ) {
      throw new PredictorError(
        `${dir}: the predictor's encoding (${String(metadata.encodingLength)} values) does not match this space's (${length} values, ${JSON.stringify(encodingLayout(space))})`,
      );
    }
    let model: tfjs.LayersModel;
    try {
      model = await tf.loadLayersModel(`file://${join(dir, 'model.json')}`);
    } catch (error) {
      throw new PredictorError(`${dir}: the model cannot be loaded (${(error as Error).message})`);
    }
    const inputs = model.inputs[0]?.shape;
    const outputs = model.outputs[0]?.shape;
    if (model.inputs.length !== 1 || inputs?.length !== 2 || inputs[1] !== length) {
      model.dispose();
      throw new PredictorError(
        `${dir}: the model takes ${JSON.stringify(inputs)}, not encodings of ${length} values`,
      );
    }
    if (model.outputs.length !== 1 || outputs?.length !== 2 || outputs[1] !== 1) {
      model.dispose();
      throw new PredictorError(
        `${dir}: the model outputs ${JSON.stringify(outputs)}, not one accuracy per subnet`,
      );
    }
    const report = metadata.report && {
      ...metadata.report,
      validationRmse: metadata.report.validationRmse ?? NaN,
    };
    return new AccuracyPredictor(tf, space, model, report);
  }

  /** Predicted accuracies, clamped to [0, 1], in the order of `specs` (each validated first). */
  predict(specs: readonly SubnetSpec[]): number[] {
    this.checkAlive();
    const length = encodingLength(this.space);
    const result: number[] = [];
    for (let start = 0; start < specs.length; start += PREDICT_BATCH) {
      const batch = specs.slice(start, start + PREDICT_BATCH);
      const x = new Float32Array(batch.length * length);
      batch.forEach((spec, i) => {
        encodeInto(this.space, this.space.validate(spec), x, i * length);
      });
      result.push(...predictEncoded(this.tf, this.model, x, batch.length, length));
    }
    return result;
  }

  /**
   * Writes the model (model.json and weights, a standard tfjs LayersModel that outputs the
   * unclamped accuracy) and predictor.json (design space, architecture key, encoding) to `dir`,
   * through a temporary folder and a rename, replacing what was there.
   */
  async save(dir: string): Promise<void> {
    this.checkAlive();
    const metadata: PredictorMetadata = {
      version: PREDICTOR_FORMAT_VERSION,
      kind: 'AccuracyPredictor',
      designSpace: this.space.kind,
      architectureKey: architectureKey(this.space.architecture),
      encodingLength: encodingLength(this.space),
      encoding: encodingLayout(this.space),
      ...(this.report
        ? {
            report: {
              ...this.report,
              validationRmse: Number.isFinite(this.report.validationRmse)
                ? this.report.validationRmse
                : null,
            },
          }
        : {}),
    };
    await mkdir(dirname(dir), { recursive: true });
    const temporary = join(dirname(dir), `.${basename(dir)}.${randomBytes(4).toString('hex')}.tmp`);
    try {
      await this.model.save(`file://${temporary}`);
      // Written last: its presence marks a complete predictor.
      await writeFile(join(temporary, METADATA_FILE), `${JSON.stringify(metadata, null, 2)}\n`);
      await rm(dir, { recursive: true, force: true });
      await rename(temporary, dir);
    } catch (error) {
      await rm(temporary, { recursive: true, force: true });
      throw error;
    }
  }

  /** Frees the model's weights; the predictor cannot be used afterwards. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.model.dispose();
  }

  private checkAlive(): void {
    if (this.disposed) throw new Error('the accuracy predictor has been disposed');
  }
}

/** Provenance of a predicted accuracy table. */
export interface PredictedTableProvenance {
  /** The dataset and split the predictor's training accuracies were measured on. */
  readonly dataset: { readonly name: string; readonly split: string; readonly samples: number };
  readonly settings?: Readonly<Record<string, string | number | boolean>>;
  readonly now?: () => Date;
}

/**
 * An accuracy table with method `predicted` for `subnets` (duplicates are listed once). The
 * predictor must belong to `space`'s supernet.
 */
export function predictedAccuracyTable(
  space: DesignSpace,
  predictor: AccuracyPredictor,
  subnets: Iterable<SubnetSpec>,
  provenance: PredictedTableProvenance,
): AccuracyTable {
  const key = architectureKey(space.architecture);
  if (
    predictor.space.kind !== space.kind ||
    architectureKey(predictor.space.architecture) !== key ||
    canonicalJson(encodingLayout(predictor.space)) !== canonicalJson(encodingLayout(space))
  ) {
    throw new PredictorError(
      `the predictor belongs to the ${predictor.space.kind} space of architecture ${architectureKey(predictor.space.architecture)}, not the ${space.kind} space of architecture ${key}`,
    );
  }
  const specs = new Map<string, SubnetSpec>();
  for (const spec of subnets) {
    const id = space.format(space.validate(spec));
    if (!specs.has(id)) specs.set(id, spec);
  }
  if (specs.size === 0) throw new RangeError('subnets: there is nothing to predict');
  const accuracies = predictor.predict([...specs.values()]);
  const rows: AccuracyRow[] = [...specs.keys()].map((subnet, i) => ({
    subnet,
    accuracy: accuracies[i] ?? NaN,
  }));
  const report = predictor.report;
  return {
    apiVersion: TABLE_API_VERSION,
    kind: 'AccuracyTable',
    subject: { designSpace: space.kind, architectureKey: key },
    measuredAt: (provenance.now?.() ?? new Date()).toISOString(),
    dataset: { ...provenance.dataset },
    settings: {
      predictorEncodingLength: encodingLength(space),
      ...(report ? { predictorSamples: report.samples, predictorEpochs: report.epochs } : {}),
      ...(report && Number.isFinite(report.validationRmse)
        ? { predictorValidationRmse: report.validationRmse }
        : {}),
      ...provenance.settings,
    },
    method: 'predicted',
    rows,
  };
}

interface ValidatedOptions {
  readonly hiddenUnits: readonly number[];
  readonly epochs: number;
  readonly batchSize: number;
  readonly learningRate: number;
  readonly l2: number;
  readonly seed: number;
  readonly validationFraction: number;
}

function validateOptions(options: PredictorOptions): ValidatedOptions {
  const positiveInteger = (name: string, value: number): number => {
    if (!Number.isInteger(value) || value < 1)
      throw new RangeError(`${name} must be a positive integer, got ${value}`);
    return value;
  };
  const hiddenUnits = options.hiddenUnits ?? [400, 400, 400];
  if (hiddenUnits.length === 0)
    throw new RangeError('hiddenUnits must name at least one hidden layer');
  hiddenUnits.forEach((units, i) => positiveInteger(`hiddenUnits[${i}]`, units));
  const learningRate = options.learningRate ?? 1e-3;
  if (!(Number.isFinite(learningRate) && learningRate > 0))
    throw new RangeError(`learningRate must be a positive number, got ${learningRate}`);
  const l2 = options.l2 ?? 0.01;
  if (!(Number.isFinite(l2) && l2 >= 0))
    throw new RangeError(`l2 must be a non-negative number, got ${l2}`);
  const seed = options.seed ?? 0;
  if (!Number.isSafeInteger(seed)) throw new RangeError(`seed must be an integer, got ${seed}`);
  const validationFraction = options.validationFraction ?? 0.2;
  if (!(validationFraction >= 0 && validationFraction < 1))
    throw new RangeError(`validationFraction must be in [0, 1), got ${validationFraction}`);
  return {
    hiddenUnits,
    epochs: positiveInteger('epochs', options.epochs ?? 100),
    batchSize: positiveInteger('batchSize', options.batchSize ?? 64),
    learningRate,
    l2,
    seed,
    validationFraction,
  };
}

/** Encodes the rows' subnets (one after another) and checks their accuracies; names a bad row. */
function readRows(
  space: DesignSpace,
  rows: readonly PredictorRow[],
): { encodings: Float32Array; targets: number[] } {
  const length = encodingLength(space);
  const encodings = new Float32Array(rows.length * length);
  const targets: number[] = [];
  const seen = new Map<string, number>();
  rows.forEach((row, i) => {
    let spec: SubnetSpec;
    try {
      spec = space.parse(row.subnet);
    } catch (error) {
      if (error instanceof SubnetSpecError)
        throw new SubnetSpecError(`rows[${i}] ('${row.subnet}'): ${error.message}`);
      throw error;
    }
    const id = space.format(spec);
    const first = seen.get(id);
    if (first !== undefined)
      throw new RangeError(`rows[${i}]: subnet '${id}' appears twice (first in rows[${first}])`);
    seen.set(id, i);
    if (!(Number.isFinite(row.accuracy) && row.accuracy >= 0 && row.accuracy <= 1)) {
      throw new RangeError(
        `rows[${i}] ('${row.subnet}'): accuracy must be in [0, 1], got ${row.accuracy}`,
      );
    }
    encodeInto(space, spec, encodings, i * length);
    targets.push(row.accuracy);
  });
  return { encodings, targets };
}

/** The MLP: dense relu layers, then one linear output, initialised from seeds derived from `seed`. */
function buildModel(
  tf: TensorFlow,
  inputLength: number,
  hiddenUnits: readonly number[],
  seed: number,
): tfjs.LayersModel {
  const model = tf.sequential();
  [...hiddenUnits, 1].forEach((units, i) => {
    const last = i === hiddenUnits.length;
    model.add(
      tf.layers.dense({
        units,
        activation: last ? 'linear' : 'relu',
        kernelInitializer: tf.initializers.glorotUniform({
          seed: deriveSeed(seed, 'predictor', 'layer', i),
        }),
        biasInitializer: 'zeros',
        ...(i === 0 ? { inputShape: [inputLength] } : {}),
      }),
    );
  });
  return model;
}

/** Folds the target standardisation into the output layer: y = mean + scale * output. */
function rescaleOutput(tf: TensorFlow, model: tfjs.LayersModel, mean: number, scale: number): void {
  const output = model.layers.at(-1);
  if (!output) throw new Error('the predictor model has no layers');
  const [kernel, bias] = output.getWeights();
  if (!kernel || !bias) throw new Error('the predictor output layer has no kernel and bias');
  const rescaled = tf.tidy(() => [kernel.mul(scale), bias.mul(scale).add(mean)]);
  output.setWeights(rescaled);
  tf.dispose(rescaled);
}

/** Runs the model on `count` encodings, returning accuracies clamped to [0, 1]. */
function predictEncoded(
  tf: TensorFlow,
  model: tfjs.LayersModel,
  x: Float32Array,
  count: number,
  length: number,
): number[] {
  if (count === 0) return [];
  const output = tf.tidy(() => model.predict(tf.tensor2d(x, [count, length])) as tfjs.Tensor);
  const values = output.dataSync();
  output.dispose();
  return Array.from(values, (value) => Math.min(1, Math.max(0, value)));
}
