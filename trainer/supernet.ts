/**
 * The MobileNetV3-based CompOFA/OFA supernet in TensorFlow.js: one set of weights from which every
 * subnet of a {@link DesignSpace} runs.
 *
 * - Elastic depth: a unit runs its first `depth` blocks.
 * - Elastic width: a block runs the first `mid` channels of its expanded (middle) layer; the
 *   channels are sorted by importance ({@link Supernet.sortChannelsByImportance}) so the first
 *   ones matter most.
 * - Elastic kernel: the centre of the largest depthwise kernel; in the `elastic` space through
 *   OFA's learned 7->5 and 5->3 transform matrices (initialised to identity).
 *
 * Weights are plain variables, named after the layer (`unit2.block3.project.kernel`), so that
 * checkpoints and extraction address them by name. Layouts are TensorFlow's: conv kernels
 * [k, k, in, out], depthwise kernels [k, k, channels, 1], activations NHWC.
 */
import type * as tfjs from '@tensorflow/tfjs';

import {
  makeDivisible,
  resolveChannels,
  type Activation,
  type Architecture,
} from '../compofa/architecture.js';
import { SE_REDUCTION } from '../compofa/cost.js';
import { MAX_DEPTH, type DesignSpace, type SubnetSpec } from '../compofa/design-space.js';
import { deriveSeed } from '../compofa/random.js';
import type { TensorFlow } from './backend.js';
import { fusedBatchNormTraining, type BatchStatistics } from './fused-ops.js';

type Tensor4D = tfjs.Tensor4D;
type Variable = tfjs.Variable;
type Variable1D = tfjs.Variable<tfjs.Rank.R1>;

/** Batch-norm epsilon, as OFA (PyTorch's default); the extracted Keras layers use the same. */
export const BN_EPSILON = 1e-5;
/** Weight of the old value in the moving averages (PyTorch momentum 0.1). */
export const BN_MOMENTUM = 0.9;

/** How batch norm behaves in a forward pass. */
export type ForwardMode =
  /** Batch statistics; the used channels' moving averages are updated. */
  | 'train'
  /** Moving averages. */
  | 'inference'
  /** Batch statistics, recorded into a {@link BatchNormRecorder} and not into the moving averages. */
  | 'calibrate';

/** Collects the batch statistics of each batch norm during `calibrate` passes. */
export class BatchNormRecorder {
  private readonly sums = new Map<
    ElasticBatchNorm,
    { mean: Float64Array; variance: Float64Array; samples: number }
  >();

  record(
    norm: ElasticBatchNorm,
    mean: Float32Array,
    variance: Float32Array,
    samples: number,
  ): void {
    let entry = this.sums.get(norm);
    if (!entry) {
      entry = {
        mean: new Float64Array(mean.length),
        variance: new Float64Array(variance.length),
        samples: 0,
      };
      this.sums.set(norm, entry);
    }
    for (let i = 0; i < mean.length; i++) {
      entry.mean[i] = (entry.mean[i] ?? 0) + (mean[i] ?? 0) * samples;
      entry.variance[i] = (entry.variance[i] ?? 0) + (variance[i] ?? 0) * samples;
    }
    entry.samples += samples;
  }

  /** Writes the sample-weighted mean of the recorded statistics into each norm's moving averages. */
  apply(tf: TensorFlow): void {
    for (const [norm, entry] of this.sums) {
      const average = (sum: Float64Array): Float32Array =>
        Float32Array.from(sum, (value) => value / entry.samples);
      norm.setMovingStatistics(tf, average(entry.mean), average(entry.variance));
    }
  }
}

/** Per-pass settings threaded through the layers. */
interface PassContext {
  readonly tf: TensorFlow;
  readonly mode: ForwardMode;
  readonly recorder: BatchNormRecorder | undefined;
  /** `train` mode only: blend the batch statistics into the moving averages. */
  readonly updateStatistics: boolean;
}

/** A batch norm over up to `channels` channels, of which a pass uses the first `active`. */
export class ElasticBatchNorm {
  readonly gamma: Variable1D;
  readonly beta: Variable1D;
  readonly movingMean: Variable1D;
  readonly movingVariance: Variable1D;

  /** `scope` keeps tfjs's process-wide variable names unique across supernets. */
  constructor(
    tf: TensorFlow,
    readonly name: string,
    readonly channels: number,
    scope = '',
  ) {
    // tf.variable shares the initial tensor's data: dispose the initial tensor's handle after.
    const make = (value: number, trainable: boolean, part: string): Variable1D => {
      const initial = tf.fill<tfjs.Rank.R1>([channels], value);
      const variable = tf.variable(initial, trainable, `${scope}${name}.${part}`);
      initial.dispose();
      return variable;
    };
    this.gamma = make(1, true, 'gamma');
    this.beta = make(0, true, 'beta');
    this.movingMean = make(0, false, 'moving_mean');
    this.movingVariance = make(1, false, 'moving_variance');
  }

  apply(x: Tensor4D, context: PassContext): Tensor4D {
    const { tf } = context;
    const active = x.shape[3];
    const slice = (v: Variable1D): tfjs.Tensor1D =>
      active === this.channels ? v : v.slice([0], [active]);
    if (context.mode === 'inference') {
      return tf.batchNorm4d(
        x,
        slice(this.movingMean),
        slice(this.movingVariance),
        slice(this.beta),
        slice(this.gamma),
        BN_EPSILON,
      );
    }
    if (context.mode === 'train') {
      let statistics: BatchStatistics | undefined;
      const y = fusedBatchNormTraining(
        tf,
        x,
        slice(this.gamma),
        slice(this.beta),
        BN_EPSILON,
        (s) => (statistics = s),
      );
      if (y && statistics) {
        if (context.updateStatistics)
          this.updateMovingStatistics(tf, statistics.mean, statistics.variance, active);
        tf.dispose([statistics.mean, statistics.variance]);
        return y;
      }
    }
    const { mean, variance } = tf.moments(x, [0, 1, 2]);
    if (context.mode === 'calibrate') {
      context.recorder?.record(
        this,
        mean.dataSync() as Float32Array,
        variance.dataSync() as Float32Array,
        x.shape[0],
      );
    } else if (context.updateStatistics) {
      const count = x.shape[0] * x.shape[1] * x.shape[2];
      // Unbiased variance for the moving average, as PyTorch and Keras keep it.
      const unbiased = variance.mul<tfjs.Tensor1D>(count / Math.max(count - 1, 1));
      this.updateMovingStatistics(tf, mean as tfjs.Tensor1D, unbiased, active);
    }
    return tf.batchNorm4d(
      x,
      mean as tfjs.Tensor1D,
      variance as tfjs.Tensor1D,
      slice(this.beta),
      slice(this.gamma),
      BN_EPSILON,
    );
  }

  /** Sets the moving averages of the first `mean.length` channels. */
  setMovingStatistics(tf: TensorFlow, mean: Float32Array, variance: Float32Array): void {
    tf.tidy(() => {
      this.movingMean.assign(this.withPrefix(tf, this.movingMean, tf.tensor1d(mean)));
      this.movingVariance.assign(this.withPrefix(tf, this.movingVariance, tf.tensor1d(variance)));
    });
  }

  /** Blends batch statistics (variance already unbiased) into the first `active` channels' moving averages. */
  private updateMovingStatistics(
    tf: TensorFlow,
    mean: tfjs.Tensor1D,
    variance: tfjs.Tensor1D,
    active: number,
  ): void {
    tf.tidy(() => {
      // The loss never reads the moving averages, so no gradient flows through these assignments.
      const blend = (moving: Variable1D, batch: tfjs.Tensor1D): tfjs.Tensor1D =>
        moving
          .slice([0], [active])
          .mul(BN_MOMENTUM)
          .add(batch.mul(1 - BN_MOMENTUM));
      this.movingMean.assign(this.withPrefix(tf, this.movingMean, blend(this.movingMean, mean)));
      this.movingVariance.assign(
        this.withPrefix(tf, this.movingVariance, blend(this.movingVariance, variance)),
      );
    });
  }

  private withPrefix(tf: TensorFlow, whole: Variable1D, prefix: tfjs.Tensor1D): tfjs.Tensor1D {
    const rest = this.channels - prefix.shape[0];
    return rest === 0 ? prefix : tf.concat([prefix, whole.slice([prefix.shape[0]], [rest])]);
  }
}

/** The weights of one inverted-residual block at its largest. */
export interface BlockWeights {
  readonly name: string;
  readonly inChannels: number;
  readonly outChannels: number;
  /** Middle channels at the largest expand ratio. */
  readonly maxMid: number;
  readonly maxKernel: number;
  readonly stride: 1 | 2;
  readonly activation: Activation;
  /** Absent for the fixed first block, whose expand ratio is 1. */
  readonly expand: { readonly kernel: Variable; readonly norm: ElasticBatchNorm } | undefined;
  readonly depthwise: { readonly kernel: Variable; readonly norm: ElasticBatchNorm };
  /** OFA's kernel transforms by target size, in the elastic space. */
  readonly kernelTransforms: ReadonlyMap<number, Variable>;
  readonly squeezeExcite:
    | {
        readonly reduceKernel: Variable;
        readonly reduceBias: Variable;
        readonly expandKernel: Variable;
        readonly expandBias: Variable;
      }
    | undefined;
  readonly project: { readonly kernel: Variable; readonly norm: ElasticBatchNorm };
}

/** The active sizes of a block in one subnet. */
export interface BlockChoice {
  readonly mid: number;
  readonly kernel: number;
  readonly squeezeExcite: number;
  readonly residual: boolean;
}

let supernetCount = 0;

/** The supernet's weights and its forward pass for any subnet of its space. */
export class Supernet {
  readonly stem: {
    readonly kernel: Variable;
    readonly norm: ElasticBatchNorm;
    readonly stride: 1 | 2;
  };
  readonly firstBlock: BlockWeights;
  /** Per unit, {@link MAX_DEPTH} blocks. */
  readonly units: readonly (readonly BlockWeights[])[];
  readonly head: { readonly kernel: Variable; readonly norm: ElasticBatchNorm };
  readonly feature: { readonly kernel: Variable };
  readonly classifier: { readonly kernel: Variable; readonly bias: Variable };
  private readonly norms: ElasticBatchNorm[] = [];
  /** Prefix of this supernet's tfjs variable names, which must be unique in the process. */
  private readonly scope = `supernet${++supernetCount}/`;

  constructor(
    private readonly tf: TensorFlow,
    readonly space: DesignSpace,
    readonly seed = 0,
  ) {
    const architecture: Architecture = space.architecture;
    const channels = resolveChannels(architecture);
    this.stem = {
      kernel: this.convVariable('stem.kernel', [3, 3, architecture.inputChannels, channels.stem]),
      norm: this.norm('stem.bn', channels.stem),
      stride: architecture.stemStride,
    };
    this.firstBlock = this.block(
      'first',
      channels.stem,
      channels.firstBlock,
      [1],
      3,
      1,
      'relu',
      false,
    );
    const maxExpand = Math.max(...space.expandRatios);
    let inChannels = channels.firstBlock;
    this.units = architecture.units.map((unit, u) => {
      const outChannels = channels.units[u] ?? 0;
      const blocks = Array.from({ length: MAX_DEPTH }, (_, b) =>
        this.block(
          `unit${u + 1}.block${b + 1}`,
          b === 0 ? inChannels : outChannels,
          outChannels,
          [maxExpand],
          Math.max(...space.kernelSizes(u)),
          b === 0 ? unit.stride : 1,
          unit.activation,
          unit.squeezeExcite,
          Math.min(...space.kernelSizes(u)),
        ),
      );
      inChannels = outChannels;
      return blocks;
    });
    this.head = {
      kernel: this.convVariable('head.kernel', [1, 1, inChannels, channels.head]),
      norm: this.norm('head.bn', channels.head),
    };
    this.feature = {
      kernel: this.denseVariable('feature.kernel', [channels.head, channels.feature]),
    };
    this.classifier = {
      kernel: this.denseVariable('classifier.kernel', [channels.feature, architecture.numClasses]),
      bias: this.addVariable('classifier.bias', tf.zeros([architecture.numClasses])),
    };
  }

  /** The variables by layer name (`unit2.block3.project.kernel`), batch-norm statistics included. */
  readonly variables = new Map<string, Variable>();

  /** The trainable variables, for optimizers. */
  get trainableVariables(): Variable[] {
    return [...this.variables.values()].filter((v) => v.trainable);
  }

  /** Active sizes of each block of `spec`, in order (the first block excluded). */
  blockChoices(spec: SubnetSpec): { weights: BlockWeights; choice: BlockChoice }[] {
    const out: { weights: BlockWeights; choice: BlockChoice }[] = [];
    spec.units.forEach((unit, u) => {
      for (let b = 0; b < unit.depth; b++) {
        const weights = this.units[u]?.[b];
        if (!weights) throw new RangeError(`the supernet has no unit ${u + 1} block ${b + 1}`);
        const mid = makeDivisible(Math.round(weights.inChannels * (unit.expandRatios[b] ?? 0)));
        out.push({
          weights,
          choice: {
            mid,
            kernel: unit.kernelSizes[b] ?? 0,
            squeezeExcite: weights.squeezeExcite
              ? makeDivisible(Math.floor(mid / SE_REDUCTION))
              : 0,
            residual: weights.stride === 1 && weights.inChannels === weights.outChannels,
          },
        });
      }
    });
    return out;
  }

  /**
   * Logits of subnet `spec` for images `x` ([batch, resolution, resolution, channels], values in
   * [0, 1]). Call inside tf.tidy or an optimizer's minimize.
   */
  forward(
    x: Tensor4D,
    spec: SubnetSpec,
    mode: ForwardMode,
    options: {
      recorder?: BatchNormRecorder;
      dropoutSeed?: number;
      /** In `train` mode, update the moving averages (default true). Sampled-subnet phases skip it: their statistics are re-calibrated per subnet anyway. */
      updateStatistics?: boolean;
    } = {},
  ): tfjs.Tensor2D {
    const tf = this.tf;
    const context: PassContext = {
      tf,
      mode,
      recorder: options.recorder,
      updateStatistics: options.updateStatistics ?? true,
    };
    let h = tf.conv2d(x, this.stem.kernel as tfjs.Tensor4D, this.stem.stride, 'same');
    h = hSwish(tf, this.stem.norm.apply(h, context));
    h = this.runBlock(
      h,
      this.firstBlock,
      { mid: this.firstBlock.maxMid, kernel: 3, squeezeExcite: 0, residual: true },
      context,
    );
    for (const { weights, choice } of this.blockChoices(spec))
      h = this.runBlock(h, weights, choice, context);
    h = tf.conv2d(h, this.head.kernel as tfjs.Tensor4D, 1, 'same');
    h = hSwish(tf, this.head.norm.apply(h, context));
    let features: tfjs.Tensor2D = h.mean([1, 2]);
    features = hSwish(tf, tf.matMul(features, this.feature.kernel as tfjs.Tensor2D));
    const rate = this.space.architecture.dropoutRate;
    if (mode === 'train' && rate > 0)
      features = tf.dropout(features, rate, undefined, options.dropoutSeed) as tfjs.Tensor2D;
    return tf.matMul(features, this.classifier.kernel as tfjs.Tensor2D).add(this.classifier.bias);
  }

  /**
   * Re-computes the batch-norm statistics of subnet `spec` from calibration batches (OFA: about
   * 2000 training images), replacing the moving averages of the channels it uses.
   */
  recalibrate(spec: SubnetSpec, batches: Iterable<Tensor4D>): void {
    const recorder = new BatchNormRecorder();
    for (const images of batches)
      this.tf.tidy(() => {
        this.forward(images, spec, 'calibrate', { recorder });
      });
    recorder.apply(this.tf);
  }

  /** The centre `kernel` x `kernel` of a block's depthwise kernel, for its first `mid` channels. */
  depthwiseKernel(weights: BlockWeights, kernel: number, mid: number): tfjs.Tensor4D {
    const tf = this.tf;
    return tf.tidy(() => {
      let current = weights.depthwise.kernel.slice(
        [0, 0, 0, 0],
        [weights.maxKernel, weights.maxKernel, mid, 1],
      ) as tfjs.Tensor4D;
      let size = weights.maxKernel;
      while (size > kernel) {
        const next = size - 2;
        const start = (size - next) / 2;
        current = current.slice([start, start, 0, 0], [next, next, mid, 1]);
        const transform = weights.kernelTransforms.get(next);
        if (transform) {
          // OFA: the cropped kernel, flattened over space, times a learned matrix.
          current = tf
            .matMul(transform as tfjs.Tensor2D, current.reshape([next * next, mid]))
            .reshape([next, next, mid, 1]);
        }
        size = next;
      }
      return current;
    });
  }

  /**
   * Sorts each block's middle channels by importance (L1 norm of the project weights that read
   * them, descending), and the squeeze-excite bottleneck by its expand weights, so that the first
   * channels, which every smaller width keeps, matter most. Does not change any subnet's outputs
   * at the largest width.
   */
  sortChannelsByImportance(): void {
    const tf = this.tf;
    for (const weights of this.units.flat()) {
      tf.tidy(() => {
        const importance = weights.project.kernel.abs().sum([0, 1, 3]);
        const order = tf.topk(importance, weights.maxMid).indices as tfjs.Tensor1D;
        const reorder = (v: Variable, axis: number, indices: tfjs.Tensor1D = order): void => {
          v.assign(tf.gather(v, indices, axis));
        };
        if (weights.expand) {
          reorder(weights.expand.kernel, 3);
          this.reorderNorm(weights.expand.norm, order);
        }
        reorder(weights.depthwise.kernel, 2);
        this.reorderNorm(weights.depthwise.norm, order);
        reorder(weights.project.kernel, 2);
        const se = weights.squeezeExcite;
        if (se) {
          reorder(se.reduceKernel, 2);
          reorder(se.expandKernel, 3);
          reorder(se.expandBias, 0);
          const seOrder = tf.topk(
            se.expandKernel.abs().sum([0, 1, 3]),
            se.expandKernel.shape[2] ?? 0,
          ).indices as tfjs.Tensor1D;
          reorder(se.reduceKernel, 3, seOrder);
          reorder(se.reduceBias, 0, seOrder);
          reorder(se.expandKernel, 2, seOrder);
        }
      });
    }
  }

  /** Frees every variable. */
  dispose(): void {
    for (const variable of this.variables.values()) variable.dispose();
    this.variables.clear();
  }

  private reorderNorm(norm: ElasticBatchNorm, order: tfjs.Tensor1D): void {
    for (const v of [norm.gamma, norm.beta, norm.movingMean, norm.movingVariance])
      v.assign(this.tf.gather(v, order));
  }

  private runBlock(
    x: Tensor4D,
    weights: BlockWeights,
    choice: BlockChoice,
    context: PassContext,
  ): Tensor4D {
    const tf = this.tf;
    const act = (t: Tensor4D): Tensor4D =>
      weights.activation === 'relu' ? tf.relu(t) : hSwish(tf, t);
    let h = x;
    if (weights.expand) {
      const kernel = weights.expand.kernel.slice(
        [0, 0, 0, 0],
        [1, 1, weights.inChannels, choice.mid],
      ) as tfjs.Tensor4D;
      h = act(weights.expand.norm.apply(tf.conv2d(h, kernel, 1, 'same'), context));
    }
    h = tf.depthwiseConv2d(
      h,
      this.depthwiseKernel(weights, choice.kernel, choice.mid),
      weights.stride,
      'same',
    );
    h = act(weights.depthwise.norm.apply(h, context));
    const se = weights.squeezeExcite;
    if (se && choice.squeezeExcite > 0) {
      const s = choice.squeezeExcite;
      const pointwise = (input: Tensor4D, kernel: tfjs.Tensor, bias: tfjs.Tensor): Tensor4D =>
        tf.conv2d(input, kernel as tfjs.Tensor4D, 1, 'same').add(bias);
      let gate = h.mean<Tensor4D>([1, 2], true);
      gate = tf.relu(
        pointwise(
          gate,
          se.reduceKernel.slice([0, 0, 0, 0], [1, 1, choice.mid, s]),
          se.reduceBias.slice([0], [s]),
        ),
      );
      gate = hSigmoid(
        tf,
        pointwise(
          gate,
          se.expandKernel.slice([0, 0, 0, 0], [1, 1, s, choice.mid]),
          se.expandBias.slice([0], [choice.mid]),
        ),
      );
      h = h.mul(gate);
    }
    const project = weights.project.kernel.slice(
      [0, 0, 0, 0],
      [1, 1, choice.mid, weights.outChannels],
    ) as tfjs.Tensor4D;
    h = weights.project.norm.apply(tf.conv2d(h, project, 1, 'same'), context);
    return choice.residual ? h.add(x) : h;
  }

  private block(
    name: string,
    inChannels: number,
    outChannels: number,
    expands: readonly number[],
    maxKernel: number,
    stride: 1 | 2,
    activation: Activation,
    squeezeExcite: boolean,
    minKernel = maxKernel,
  ): BlockWeights {
    const maxExpand = Math.max(...expands);
    const maxMid = maxExpand === 1 ? inChannels : makeDivisible(Math.round(inChannels * maxExpand));
    const seChannels = makeDivisible(Math.floor(maxMid / SE_REDUCTION));
    const transforms = new Map<number, Variable>();
    if (this.space.kind === 'elastic') {
      for (let size = maxKernel - 2; size >= minKernel; size -= 2) {
        transforms.set(
          size,
          this.addVariable(
            `${name}.depthwise.transform${size + 2}to${size}`,
            this.tf.eye(size * size),
          ),
        );
      }
    }
    return {
      name,
      inChannels,
      outChannels,
      maxMid,
      maxKernel,
      stride,
      activation,
      expand:
        maxExpand === 1
          ? undefined
          : {
              kernel: this.convVariable(`${name}.expand.kernel`, [1, 1, inChannels, maxMid]),
              norm: this.norm(`${name}.expand.bn`, maxMid),
            },
      depthwise: {
        kernel: this.convVariable(`${name}.depthwise.kernel`, [maxKernel, maxKernel, maxMid, 1]),
        norm: this.norm(`${name}.depthwise.bn`, maxMid),
      },
      kernelTransforms: transforms,
      squeezeExcite: squeezeExcite
        ? {
            reduceKernel: this.convVariable(`${name}.se.reduce.kernel`, [1, 1, maxMid, seChannels]),
            reduceBias: this.addVariable(`${name}.se.reduce.bias`, this.tf.zeros([seChannels])),
            expandKernel: this.convVariable(`${name}.se.expand.kernel`, [1, 1, seChannels, maxMid]),
            expandBias: this.addVariable(`${name}.se.expand.bias`, this.tf.zeros([maxMid])),
          }
        : undefined,
      project: {
        kernel: this.convVariable(`${name}.project.kernel`, [1, 1, maxMid, outChannels]),
        norm: this.norm(`${name}.project.bn`, outChannels),
      },
    };
  }

  private norm(name: string, channels: number): ElasticBatchNorm {
    const norm = new ElasticBatchNorm(this.tf, name, channels, this.scope);
    const parts = {
      gamma: norm.gamma,
      beta: norm.beta,
      moving_mean: norm.movingMean,
      moving_variance: norm.movingVariance,
    };
    for (const [part, v] of Object.entries(parts)) this.variables.set(`${name}.${part}`, v);
    this.norms.push(norm);
    return norm;
  }

  /** He-normal over fan-out, as OFA initialises convolutions; seeded per variable. */
  private convVariable(name: string, shape: [number, number, number, number]): Variable {
    const [kh, kw, , out] = shape;
    const depthwise = shape[3] === 1 && name.includes('depthwise');
    const fanOut = kh * kw * (depthwise ? 1 : out);
    return this.addVariable(
      name,
      this.tf.randomNormal(shape, 0, Math.sqrt(2 / fanOut), 'float32', deriveSeed(this.seed, name)),
    );
  }

  private denseVariable(name: string, shape: [number, number]): Variable {
    const limit = 1 / Math.sqrt(shape[0]);
    return this.addVariable(
      name,
      this.tf.randomUniform(shape, -limit, limit, 'float32', deriveSeed(this.seed, name)),
    );
  }

  private addVariable(name: string, initial: tfjs.Tensor): Variable {
    const variable = this.tf.variable(initial, true, `${this.scope}${name}`);
    initial.dispose();
    this.variables.set(name, variable);
    return variable;
  }
}

/**
 * x * relu6(x + 3) / 6, composed from tfjs ops. With TensorFlow's Relu6Grad registered
 * (trainer/fused-ops.ts) its backward pass is nine small kernels; a custom-gradient version with
 * five measured no faster (docs/benchmarks.md, training section), so it is not used.
 */
export function hSwish<T extends tfjs.Tensor>(tf: TensorFlow, x: T): T {
  return tf.tidy(() => x.mul(hSigmoid(tf, x)));
}

/** relu6(x + 3) / 6 */
export function hSigmoid<T extends tfjs.Tensor>(tf: TensorFlow, x: T): T {
  return tf.tidy(() => tf.relu6(x.add(3)).div(6));
}
