/**
 * Supernet training: a teacher phase (the largest subnet alone), then CompOFA's compound phases
 * or OFA's progressive-shrinking phases, each step averaging the gradients of K sampled subnets
 * with knowledge distillation from the teacher; SGD with Nesterov momentum, weight decay, label
 * smoothing and a cosine learning rate with warm-up. Checkpoints are written atomically every N
 * steps, and a resumed run continues from the last one exactly as if it had not stopped: data
 * order, sampled subnets and dropout all derive from (seed, step).
 */
import type * as tfjs from '@tensorflow/tfjs';

import { architectureKey } from '../compofa/architecture.js';
import {
  ElasticSpace,
  type DesignSpace,
  type DesignSpaceKind,
  type ElasticChoices,
  type SubnetSpec,
} from '../compofa/design-space.js';
import { deriveSeed, Random } from '../compofa/random.js';
import type { TensorFlow } from './backend.js';
import { loadCheckpoint, saveCheckpoint, type StoredTensor } from './checkpoint.js';
import { batches, type Dataset } from './datasets.js';
import { Supernet } from './supernet.js';

/** One phase of the schedule. */
export interface PhaseConfig {
  readonly name: string;
  readonly epochs: number;
  /** Linear warm-up at the start of the phase, in epochs (part of `epochs`). */
  readonly warmupEpochs: number;
  /** Peak learning rate per 256 images; scaled by batchSize / 256. */
  readonly learningRate: number;
  /** Subnets whose gradients are summed per step (K). */
  readonly subnetsPerStep: number;
  /** `largest`: the teacher phase; `sample`: random subnets of the space (narrowed by `elasticChoices`). */
  readonly subnets: 'largest' | 'sample';
  /** OFA's progressive shrinking: the elastic choices open in this phase. */
  readonly elasticChoices?: Partial<ElasticChoices>;
}

/** The papers' schedules (ImageNet epochs); {@link scaleSchedule} shrinks them for small runs. */
export function paperSchedule(kind: DesignSpaceKind): PhaseConfig[] {
  const teacher: PhaseConfig = {
    name: 'teacher',
    epochs: 180,
    warmupEpochs: 5,
    learningRate: 0.1,
    subnetsPerStep: 1,
    subnets: 'largest',
  };
  if (kind === 'compound') {
    return [
      teacher,
      {
        name: 'compound-1',
        epochs: 25,
        warmupEpochs: 0,
        learningRate: 0.01,
        subnetsPerStep: 4,
        subnets: 'sample',
      },
      {
        name: 'compound-2',
        epochs: 125,
        warmupEpochs: 5,
        learningRate: 0.03,
        subnetsPerStep: 4,
        subnets: 'sample',
      },
    ];
  }
  const full = { depths: [4], expands: [6] };
  return [
    teacher,
    {
      name: 'elastic-kernel',
      epochs: 125,
      warmupEpochs: 5,
      learningRate: 0.03,
      subnetsPerStep: 1,
      subnets: 'sample',
      elasticChoices: full,
    },
    {
      name: 'elastic-depth-1',
      epochs: 25,
      warmupEpochs: 0,
      learningRate: 0.0025,
      subnetsPerStep: 2,
      subnets: 'sample',
      elasticChoices: { depths: [3, 4], expands: [6] },
    },
    {
      name: 'elastic-depth-2',
      epochs: 125,
      warmupEpochs: 5,
      learningRate: 0.0075,
      subnetsPerStep: 2,
      subnets: 'sample',
      elasticChoices: { expands: [6] },
    },
    {
      name: 'elastic-expand-1',
      epochs: 25,
      warmupEpochs: 0,
      learningRate: 0.0025,
      subnetsPerStep: 4,
      subnets: 'sample',
      elasticChoices: { expands: [4, 6] },
    },
    {
      name: 'elastic-expand-2',
      epochs: 125,
      warmupEpochs: 5,
      learningRate: 0.0075,
      subnetsPerStep: 4,
      subnets: 'sample',
    },
  ];
}

/** The schedule with every phase's epochs multiplied by `factor` (at least 1 epoch, warm-up below it). */
export function scaleSchedule(phases: readonly PhaseConfig[], factor: number): PhaseConfig[] {
  return phases.map((phase) => {
    const epochs = Math.max(1, Math.round(phase.epochs * factor));
    return {
      ...phase,
      epochs,
      warmupEpochs: Math.min(Math.round(phase.warmupEpochs * factor), epochs - 1),
    };
  });
}

/** What {@link trainSupernet} reports after each step. */
export interface TrainingProgress {
  readonly phase: string;
  readonly phaseIndex: number;
  readonly epoch: number;
  /** 1-based global step, and the total over all phases. */
  readonly step: number;
  readonly totalSteps: number;
  readonly loss: number;
  readonly learningRate: number;
  readonly elapsedSeconds: number;
  /** Seconds left at the pace of this run so far. */
  readonly etaSeconds: number;
}

/** Options of {@link trainSupernet}; defaults are the papers'. */
export interface TrainOptions {
  readonly space: DesignSpace;
  readonly dataset: Dataset;
  readonly phases: readonly PhaseConfig[];
  readonly batchSize?: number;
  readonly momentum?: number;
  readonly weightDecay?: number;
  readonly labelSmoothing?: number;
  /** Weight of the distillation loss (0 turns distillation off). */
  readonly kdRatio?: number;
  readonly seed?: number;
  /** Where checkpoints go; with it, an existing checkpoint is resumed. */
  readonly checkpointDir?: string;
  readonly checkpointEverySteps?: number;
  /** Stop after this global step (the rest of the schedule stays for a resumed run). */
  readonly stopAfterStep?: number;
  readonly onProgress?: (progress: TrainingProgress) => void;
  /** Injectable clock for progress times. */
  readonly now?: () => number;
}

/** The trained supernet (and teacher) with how the run went. */
export interface TrainResult {
  readonly supernet: Supernet;
  readonly teacher: Supernet | undefined;
  /** Global step reached. */
  readonly step: number;
  readonly totalSteps: number;
  /** The step of the checkpoint this run resumed from, if it did. */
  readonly resumedFromStep: number | undefined;
  readonly losses: readonly number[];
}

/** The JSON half of a checkpoint. */
interface TrainingState {
  readonly step: number;
  readonly seed: number;
  readonly designSpace: DesignSpaceKind;
  readonly architectureKey: string;
  readonly batchSize: number;
  readonly hasTeacher: boolean;
}

const SUPERNET = 'supernet/';
const TEACHER = 'teacher/';
const VELOCITY = 'velocity/';

/** Where global step `step` (0-based) falls in the schedule. */
function locate(
  phases: readonly PhaseConfig[],
  stepsPerEpoch: number,
  step: number,
): { phaseIndex: number; stepInPhase: number; epochsBefore: number } {
  let before = 0;
  let epochsBefore = 0;
  for (const [phaseIndex, phase] of phases.entries()) {
    const steps = phase.epochs * stepsPerEpoch;
    if (step < before + steps) return { phaseIndex, stepInPhase: step - before, epochsBefore };
    before += steps;
    epochsBefore += phase.epochs;
  }
  throw new RangeError(`step ${step} is past the end of the schedule`);
}

/** Cosine decay after a linear warm-up, as OFA. */
export function learningRateAt(
  phase: PhaseConfig,
  stepInPhase: number,
  stepsPerEpoch: number,
  batchSize: number,
): number {
  const peak = (phase.learningRate * batchSize) / 256;
  const warmup = phase.warmupEpochs * stepsPerEpoch;
  const total = phase.epochs * stepsPerEpoch;
  if (stepInPhase < warmup) return (peak * (stepInPhase + 1)) / warmup;
  return (
    0.5 * peak * (1 + Math.cos((Math.PI * (stepInPhase - warmup)) / Math.max(total - warmup, 1)))
  );
}

/** Trains `options.space`'s supernet on `options.dataset` through `options.phases`. */
export async function trainSupernet(tf: TensorFlow, options: TrainOptions): Promise<TrainResult> {
  const { space, dataset, phases } = options;
  const batchSize = options.batchSize ?? 64;
  const momentum = options.momentum ?? 0.9;
  const weightDecay = options.weightDecay ?? 3e-5;
  const labelSmoothing = options.labelSmoothing ?? 0.1;
  const kdRatio = options.kdRatio ?? 1;
  const seed = options.seed ?? 0;
  const now = options.now ?? Date.now;
  if (phases.length === 0) throw new RangeError('the schedule has no phases');
  const architecture = space.architecture;
  if (dataset.channels !== architecture.inputChannels) {
    throw new RangeError(
      `the dataset has ${dataset.channels} channels, the architecture expects ${architecture.inputChannels} (architecture.inputChannels)`,
    );
  }
  if (dataset.classNames.length !== architecture.numClasses) {
    throw new RangeError(
      `the dataset has ${dataset.classNames.length} classes, the architecture expects ${architecture.numClasses} (architecture.numClasses)`,
    );
  }
  const stepsPerEpoch = Math.ceil(dataset.train.count / batchSize);
  const totalSteps = phases.reduce((sum, phase) => sum + phase.epochs * stepsPerEpoch, 0);
  const lastStep = Math.min(options.stopAfterStep ?? totalSteps, totalSteps);

  const supernet = new Supernet(tf, space, seed);
  let teacher: Supernet | undefined;
  const velocity = new Map<string, tfjs.Tensor>();
  let step = 0;
  let resumedFromStep: number | undefined;
  const expectedState = {
    seed,
    designSpace: space.kind,
    architectureKey: architectureKey(architecture),
    batchSize,
  };

  if (options.checkpointDir) {
    const checkpoint = await loadCheckpoint<TrainingState>(options.checkpointDir);
    if (checkpoint) {
      for (const [key, value] of Object.entries(expectedState)) {
        const found = checkpoint.state[key as keyof TrainingState];
        if (found !== value) {
          throw new RangeError(
            `the checkpoint in ${options.checkpointDir} was made with ${key} ${String(found)}, this run has ${String(value)}; use another checkpoint folder`,
          );
        }
      }
      if (checkpoint.state.hasTeacher) teacher = new Supernet(tf, space, seed);
      restore(tf, checkpoint.tensors, supernet, teacher, velocity);
      step = checkpoint.state.step;
      resumedFromStep = step;
    }
  }

  const saveAt = async (atStep: number): Promise<void> => {
    if (!options.checkpointDir) return;
    const tensors: StoredTensor[] = [];
    const store = (prefix: string, entries: Iterable<[string, tfjs.Tensor]>): void => {
      for (const [name, tensor] of entries)
        tensors.push({
          name: prefix + name,
          shape: tensor.shape,
          values: tensor.dataSync() as Float32Array,
        });
    };
    store(SUPERNET, supernet.variables);
    if (teacher) store(TEACHER, teacher.variables);
    store(VELOCITY, velocity);
    await saveCheckpoint<TrainingState>(options.checkpointDir, {
      state: { ...expectedState, step: atStep, hasTeacher: teacher !== undefined },
      tensors,
    });
  };

  const losses: number[] = [];
  const started = now();
  const startStep = step;
  const shape: [number, number, number] = [
    dataset.resolution,
    dataset.resolution,
    dataset.channels,
  ];
  while (step < lastStep) {
    const { phaseIndex, stepInPhase, epochsBefore } = locate(phases, stepsPerEpoch, step);
    const phase = phases[phaseIndex] as PhaseConfig;
    if (stepInPhase === 0) {
      if (phaseIndex > 0 && phases[phaseIndex - 1]?.subnets === 'largest' && !teacher) {
        // The teacher is the largest subnet as the teacher phase left it.
        teacher = new Supernet(tf, space, seed);
        for (const [name, variable] of supernet.variables)
          teacher.variables.get(name)?.assign(variable);
      }
      // Fresh momentum per phase, and the middle channels re-sorted before any elastic width phase.
      for (const v of velocity.values()) v.dispose();
      velocity.clear();
      if (phase.subnets === 'sample') supernet.sortChannelsByImportance();
    }
    const epochInPhase = Math.floor(stepInPhase / stepsPerEpoch);
    const epoch = epochsBefore + epochInPhase;
    const sampler = phaseSampler(space, phase);
    const firstBatch = stepInPhase - epochInPhase * stepsPerEpoch;
    let batchIndex = firstBatch;
    const iterator = batches(dataset.train, batchSize, seed, epoch, shape);
    for (let skip = 0; skip < firstBatch; skip++) iterator.next();
    for (const batch of iterator) {
      const learningRate = learningRateAt(
        phase,
        stepInPhase + batchIndex - firstBatch,
        stepsPerEpoch,
        batchSize,
      );
      const loss = trainStep(tf, {
        supernet,
        teacher: kdRatio > 0 ? teacher : undefined,
        batch: tf.tensor4d(batch.images, [batch.count, ...shape]),
        labels: batch.labels,
        numClasses: architecture.numClasses,
        subnets: Array.from({ length: phase.subnetsPerStep }, (_, k) =>
          phase.subnets === 'largest'
            ? space.largest()
            : sampler(new Random(deriveSeed(seed, 'subnet', step, k))),
        ),
        learningRate,
        momentum,
        weightDecay,
        labelSmoothing,
        kdRatio,
        velocity,
        dropoutSeed: deriveSeed(seed, 'dropout', step),
        updateStatistics: phase.subnets === 'largest',
      });
      losses.push(loss);
      step += 1;
      batchIndex += 1;
      const elapsedSeconds = (now() - started) / 1000;
      options.onProgress?.({
        phase: phase.name,
        phaseIndex,
        epoch,
        step,
        totalSteps,
        loss,
        learningRate,
        elapsedSeconds,
        etaSeconds: (elapsedSeconds / (step - startStep)) * (totalSteps - step),
      });
      if (options.checkpointEverySteps && step % options.checkpointEverySteps === 0)
        await saveAt(step);
      if (step >= lastStep || batchIndex >= stepsPerEpoch) break;
    }
  }
  if (
    options.checkpointDir &&
    (!options.checkpointEverySteps || step % options.checkpointEverySteps !== 0) &&
    step > startStep
  )
    await saveAt(step);
  for (const v of velocity.values()) v.dispose();
  return { supernet, teacher, step, totalSteps, resumedFromStep, losses };
}

/** Draws subnets of `space`, narrowed to the phase's elastic choices (OFA's progressive shrinking). */
function phaseSampler(space: DesignSpace, phase: PhaseConfig): (random: Random) => SubnetSpec {
  if (!phase.elasticChoices || !(space instanceof ElasticSpace))
    return (random) => space.sample(random);
  const narrowed = new ElasticSpace(space.architecture, {
    ...space.choices,
    ...phase.elasticChoices,
  });
  return (random) => narrowed.sample(random);
}

/** What {@link trainStep} needs for one optimizer step. */
export interface TrainStepInputs {
  readonly supernet: Supernet;
  /** Distils from the teacher's largest subnet when given (trainSupernet passes none when kdRatio is 0). */
  readonly teacher: Supernet | undefined;
  /** The step's images; trainStep disposes it. */
  readonly batch: tfjs.Tensor4D;
  readonly labels: Int32Array;
  readonly numClasses: number;
  readonly subnets: readonly SubnetSpec[];
  readonly learningRate: number;
  readonly momentum: number;
  readonly weightDecay: number;
  readonly labelSmoothing: number;
  readonly kdRatio: number;
  /** Momentum buffers by variable name, carried from step to step (updated in place). */
  readonly velocity: Map<string, tfjs.Tensor>;
  readonly dropoutSeed: number;
  /** Only the teacher phase's moving averages are ever used (by the teacher). */
  readonly updateStatistics: boolean;
}

/**
 * One optimizer step over the summed gradients of the step's subnets; returns the mean loss. This
 * is the step {@link trainSupernet} runs; exported for the training-throughput benchmark.
 */
export function trainStep(tf: TensorFlow, inputs: TrainStepInputs): number {
  const { supernet, batch } = inputs;
  const trainable = supernet.trainableVariables;
  const sums = new Map<string, tfjs.Tensor>();
  let lossTotal = 0;
  const targets = tf.tidy(() => tf.oneHot(tf.tensor1d(inputs.labels, 'int32'), inputs.numClasses));
  const soft = inputs.teacher
    ? tf.tidy(() =>
        tf.softmax(
          (inputs.teacher as Supernet).forward(
            batch,
            (inputs.teacher as Supernet).space.largest(),
            'inference',
          ),
        ),
      )
    : undefined;
  for (const [k, spec] of inputs.subnets.entries()) {
    const input =
      spec.resolution === batch.shape[1]
        ? batch
        : tf.image.resizeBilinear(batch, [spec.resolution, spec.resolution]);
    const { value, grads } = tf.variableGrads(() => {
      const logits = supernet.forward(input, spec, 'train', {
        dropoutSeed: inputs.dropoutSeed + k,
        updateStatistics: inputs.updateStatistics,
      });
      const hard = tf.losses.softmaxCrossEntropy(targets, logits, undefined, inputs.labelSmoothing);
      if (!soft) return hard as tfjs.Scalar;
      const distill = tf.losses.softmaxCrossEntropy<tfjs.Tensor, tfjs.Scalar>(soft, logits);
      // OFA: kd_ratio * KD + CE, scaled back to the magnitude of one loss.
      return distill
        .mul(inputs.kdRatio)
        .add(hard)
        .mul<tfjs.Scalar>(2 / (inputs.kdRatio + 1));
    }, trainable);
    if (input !== batch) input.dispose();
    lossTotal += value.dataSync()[0] ?? Number.NaN;
    value.dispose();
    for (const [name, grad] of Object.entries(grads)) {
      const previous = sums.get(name);
      if (previous) {
        sums.set(name, previous.add(grad));
        tf.dispose([previous, grad]);
      } else {
        sums.set(name, grad);
      }
    }
  }
  // SGD with Nesterov momentum and weight decay, as PyTorch's: g += wd * w (not on batch-norm
  // parameters or biases); v = m * v + g; w -= lr * (g + m * v). Variables no subnet used are left alone.
  tf.tidy(() => {
    for (const variable of trainable) {
      const grad = sums.get(variable.name);
      if (!grad) continue;
      const name = variable.name.slice(variable.name.indexOf('/') + 1);
      const decays = !/\.(gamma|beta|bias)$/.test(name) && !name.includes('.transform');
      const g =
        decays && inputs.weightDecay > 0 ? grad.add(variable.mul(inputs.weightDecay)) : grad;
      const previous = inputs.velocity.get(name);
      const v = tf.keep(previous ? previous.mul(inputs.momentum).add(g) : g.clone());
      previous?.dispose();
      inputs.velocity.set(name, v);
      variable.assign(variable.sub(g.add(v.mul(inputs.momentum)).mul(inputs.learningRate)));
    }
  });
  tf.dispose([...sums.values(), targets, batch]);
  soft?.dispose();
  return lossTotal / inputs.subnets.length;
}

/**
 * The supernet of the checkpoint in `checkpointDir`, for evaluation, profiling and extraction.
 * Refuses a checkpoint of another design space or architecture, naming the folder.
 */
export async function loadTrainedSupernet(
  tf: TensorFlow,
  space: DesignSpace,
  checkpointDir: string,
): Promise<{ supernet: Supernet; step: number }> {
  const checkpoint = await loadCheckpoint<TrainingState>(checkpointDir);
  if (!checkpoint)
    throw new RangeError(
      `${checkpointDir} holds no checkpoint (expected ${checkpointDir}/latest/state.json); train first`,
    );
  const key = architectureKey(space.architecture);
  if (checkpoint.state.designSpace !== space.kind || checkpoint.state.architectureKey !== key) {
    throw new RangeError(
      `the checkpoint in ${checkpointDir} is of a ${checkpoint.state.designSpace} supernet with architecture ${checkpoint.state.architectureKey}, not ${space.kind} with ${key}: use the same --preset and --design-space as for training`,
    );
  }
  const supernet = new Supernet(tf, space, checkpoint.state.seed);
  restore(
    tf,
    checkpoint.tensors.filter((t) => t.name.startsWith(SUPERNET)),
    supernet,
    undefined,
    new Map(),
  );
  return { supernet, step: checkpoint.state.step };
}

function restore(
  tf: TensorFlow,
  tensors: readonly StoredTensor[],
  supernet: Supernet,
  teacher: Supernet | undefined,
  velocity: Map<string, tfjs.Tensor>,
): void {
  for (const stored of tensors) {
    const value = tf.tensor(stored.values, [...stored.shape]);
    if (stored.name.startsWith(VELOCITY)) {
      velocity.set(stored.name.slice(VELOCITY.length), value);
      continue;
    }
    const [net, name] = stored.name.startsWith(TEACHER)
      ? [teacher, stored.name.slice(TEACHER.length)]
      : [supernet, stored.name.slice(SUPERNET.length)];
    const variable = net?.variables.get(name);
    if (!variable)
      throw new RangeError(
        `the checkpoint holds ${stored.name}, which this supernet does not have`,
      );
    variable.assign(value);
    value.dispose();
  }
}
