/**
 * Benchmark: training-step throughput of the supernet's largest subnet on tfjs-node (native
 * TensorFlow 2.21) against the same network in Keras on the same TensorFlow 2.21 (Python, graph
 * mode), with the same threads, as a ratio tfjs/Keras. Goal (issue 3): at least 0.8x.
 *
 *   npx tsx bench/training-throughput.ts [--configs small:32,small:64,imagenet:32] [--rounds N]
 *     [--steps N] [--warmup N] [--full-steps N] [--threads N] [--profile] [--python PATH] [--json]
 *     [--out FILE]   (--json prints the results as one JSON object; --out also writes it to FILE)
 *   npx tsx bench/training-throughput.ts --describe small:32   (the network Keras builds, as JSON)
 *
 * Results, method and the profile's findings: docs/benchmarks.md. The Python side runs in the venv
 * that bench/setup-keras.sh makes (the benchmark runs it; --python names another interpreter).
 *
 * - One source of truth: the network is the largest subnet of the preset's compound space,
 *   described by compofa/cost.ts `subnetShape` (every block's channels, kernel, stride, expand,
 *   activation, squeeze-excite width, shortcut) plus the layer conventions of trainer/supernet.ts
 *   (stem/head/feature h-swish, SE relu then h-sigmoid with biases, BN epsilon and momentum,
 *   'same' padding, bias-free convolutions). This file writes that description as JSON and
 *   bench/keras_training_step.py builds the Keras model from it; the Keras model's trainable
 *   parameter count must equal `subnetCost`'s, or the benchmark stops.
 * - One step, both sides: forward + backward + SGD with Nesterov momentum 0.9 and weight decay
 *   3e-5 (not on BN parameters and biases), label-smoothing (0.1) cross-entropy, dropout, on one
 *   fixed batch of random images in [0, 1) and random labels, converted from host memory each
 *   step. tfjs runs `trainStep` (trainer/train.ts), the step `trainSupernet` runs, with the largest
 *   subnet, K = 1 and no distillation: exactly the teacher phase's step, BN moving averages
 *   updated. Keras runs `train_on_batch` of a compiled model (tf.function graph; XLA at Keras's
 *   default 'auto', which is off on CPU-only machines).
 * - Threads: TF_NUM_INTRAOP_THREADS and TF_NUM_INTEROP_THREADS are set to --threads (default: the
 *   machine's parallelism) before TensorFlow loads in both processes (the TensorFlow behind
 *   tfjs-node reads them when it creates its CPU device), and Python also sets tf.config.threading.
 * - Timing, per configuration (preset, batch): untimed warm-up steps on each side, then rounds
 *   alternating tfjs, Keras, tfjs, Keras ..., each of N back-to-back steps (process.hrtime.bigint
 *   here, time.perf_counter in Python, around the N steps; each step ends by reading its loss).
 *   Reported: the median over rounds of each side's steps/s (and images/s), their ratio
 *   tfjs/Keras, the median of the per-round ratios, and the ratio of CPU time per step (getrusage
 *   of each process), which other work on a shared machine disturbs less than wall time.
 * - For information: our full CompOFA step as `trainSupernet` runs it in the compound phases
 *   (K = 4 sampled subnets, seeded per step, distillation from a teacher, kd_ratio 1), per step,
 *   per image and per sampled subnet.
 * - --profile: after the timed rounds, one tfjs step with every TensorFlow op it executes timed
 *   (by wrapping the tfjs-node backend's executeSingleOutput/executeMultipleOutputs, which every
 *   kernel goes through, the fused batch norm and the registered ReluGrad/Relu6Grad included), a
 *   second one with its ops attributed to forward, backward and optimizer, and a TensorFlow
 *   profiler trace of Keras steps, all per TensorFlow op type.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { arch, availableParallelism, cpus, loadavg, platform, tmpdir, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import type * as tfjs from '@tensorflow/tfjs';

import { ARCHITECTURE_PRESETS, type ArchitecturePreset } from '../compofa/architecture.js';
import { subnetCost, subnetShape, type BlockShape } from '../compofa/cost.js';
import { CompoundSpace, type SubnetSpec } from '../compofa/design-space.js';
import { deriveSeed, Random } from '../compofa/random.js';
import { loadTensorFlow, type TensorFlow } from '../trainer/backend.js';
import { BN_EPSILON, BN_MOMENTUM, Supernet } from '../trainer/supernet.js';
import { paperSchedule, trainStep } from '../trainer/train.js';
import { benchPython } from './report.js';

/** The goal: tfjs steps/s at least this fraction of Keras's. */
const GOAL_RATIO = 0.8;
/** trainSupernet's defaults (trainer/train.ts), passed explicitly to both sides. */
const MOMENTUM = 0.9;
const WEIGHT_DECAY = 3e-5;
const LABEL_SMOOTHING = 0.1;
const KD_RATIO = 1;
/** The CompOFA schedule: the teacher phase (largest subnet, K = 1) and the last compound phase. */
const SCHEDULE = paperSchedule('compound');
const TEACHER_PHASE = SCHEDULE[0];
const COMPOUND_PHASE = SCHEDULE.at(-1);
/** Default counts per preset: an ImageNet-preset step takes seconds on 2 cores. */
const DEFAULT_COUNTS: Readonly<Record<ArchitecturePreset, Counts>> = {
  small: { warmup: 3, rounds: 5, steps: 5, fullSteps: 5 },
  imagenet: { warmup: 2, rounds: 3, steps: 2, fullSteps: 2 },
};
const DEFAULT_CONFIGS = 'small:32,small:64,imagenet:32';
const BENCH_DIR = dirname(fileURLToPath(import.meta.url));

interface Counts {
  /** Untimed steps per side before the rounds. */
  readonly warmup: number;
  readonly rounds: number;
  /** Timed steps per round and side. */
  readonly steps: number;
  /** Timed full CompOFA steps (after one untimed one); 0 skips them. */
  readonly fullSteps: number;
}

interface Config {
  readonly preset: ArchitecturePreset;
  readonly batch: number;
}

/** What bench/keras_training_step.py builds: the largest subnet, layer by layer. */
interface ModelDescription {
  readonly source: string;
  readonly preset: ArchitecturePreset;
  readonly designSpace: 'compound';
  readonly subnetId: string;
  readonly resolution: number;
  readonly inputChannels: number;
  readonly numClasses: number;
  readonly dropoutRate: number;
  /** subnetCost: trainable parameters (the Keras model must have exactly these) and MACs per image. */
  readonly params: number;
  readonly macsPerImage: number;
  readonly batchNorm: { readonly epsilon: number; readonly momentum: number };
  readonly padding: 'same';
  readonly convolutionBias: false;
  readonly stem: {
    readonly inChannels: number;
    readonly outChannels: number;
    readonly kernelSize: 3;
    readonly stride: 1 | 2;
    readonly activation: 'h_swish';
  };
  readonly blocks: readonly BlockShape[];
  readonly squeezeExcite: {
    readonly pool: 'mean';
    readonly reduceActivation: 'relu';
    readonly gateActivation: 'h_sigmoid';
    readonly bias: true;
  };
  readonly head: {
    readonly inChannels: number;
    readonly channels: number;
    readonly activation: 'h_swish';
  };
  readonly feature: {
    readonly channels: number;
    readonly activation: 'h_swish';
    readonly bias: false;
  };
  readonly training: {
    readonly optimizer: 'sgd';
    readonly learningRate: number;
    readonly momentum: number;
    readonly nesterov: true;
    readonly weightDecay: number;
    /** Variable names without weight decay: trainStep skips `.gamma`, `.beta` and `.bias`. */
    readonly weightDecayExcludes: readonly string[];
    readonly labelSmoothing: number;
  };
}

/** The largest subnet of `preset`'s compound space as the Keras side builds it, trained at `batch`. */
function describeLargestSubnet(preset: ArchitecturePreset, batch: number): ModelDescription {
  const architecture = ARCHITECTURE_PRESETS[preset];
  const space = new CompoundSpace(architecture);
  const spec = space.largest();
  const shape = subnetShape(architecture, spec);
  const cost = subnetCost(architecture, spec);
  return {
    source:
      'bench/training-throughput.ts: compofa/cost.ts subnetShape of CompoundSpace.largest(), layer conventions of trainer/supernet.ts',
    preset,
    designSpace: 'compound',
    subnetId: space.format(spec),
    resolution: shape.resolution,
    inputChannels: shape.stem.inChannels,
    numClasses: shape.numClasses,
    dropoutRate: architecture.dropoutRate,
    params: cost.params,
    macsPerImage: cost.macs,
    batchNorm: { epsilon: BN_EPSILON, momentum: BN_MOMENTUM },
    padding: 'same',
    convolutionBias: false,
    stem: { ...shape.stem, kernelSize: 3, activation: 'h_swish' },
    blocks: shape.blocks,
    squeezeExcite: {
      pool: 'mean',
      reduceActivation: 'relu',
      gateActivation: 'h_sigmoid',
      bias: true,
    },
    head: { inChannels: shape.headInChannels, channels: shape.headChannels, activation: 'h_swish' },
    feature: { channels: shape.featureChannels, activation: 'h_swish', bias: false },
    training: {
      optimizer: 'sgd',
      learningRate: teacherLearningRate(batch),
      momentum: MOMENTUM,
      nesterov: true,
      weightDecay: WEIGHT_DECAY,
      weightDecayExcludes: ['gamma', 'beta', 'bias'],
      labelSmoothing: LABEL_SMOOTHING,
    },
  };
}

function teacherLearningRate(batch: number): number {
  return ((TEACHER_PHASE?.learningRate ?? 0.1) * batch) / 256;
}

/** One side's timed rounds. */
interface SideResult {
  /** Wall seconds of each round's steps. */
  readonly roundSeconds: readonly number[];
  readonly stepsPerRound: number;
  readonly medianStepsPerSecond: number;
  readonly medianImagesPerSecond: number;
  readonly medianStepMs: number;
  /** The process's CPU time and minor page faults per step, over all rounds. */
  readonly perStep: Usage;
  readonly lastLoss: number;
}

/** getrusage deltas: CPU milliseconds (all threads) and minor page faults. */
interface Usage {
  readonly userMs: number;
  readonly systemMs: number;
  readonly minorFaults: number;
}

function usageNow(): Usage {
  const usage = process.resourceUsage();
  return {
    userMs: usage.userCPUTime / 1000,
    systemMs: usage.systemCPUTime / 1000,
    minorFaults: usage.minorPageFault,
  };
}

function usageSince(start: Usage): Usage {
  const now = usageNow();
  return {
    userMs: now.userMs - start.userMs,
    systemMs: now.systemMs - start.systemMs,
    minorFaults: now.minorFaults - start.minorFaults,
  };
}

function toUsage(value: unknown): Usage {
  const { userMs, systemMs, minorFaults } = value as Record<string, unknown>;
  return { userMs: Number(userMs), systemMs: Number(systemMs), minorFaults: Number(minorFaults) };
}

/** Per TensorFlow op type: executions and milliseconds per step. */
type OpProfile = Record<string, { readonly count: number; readonly ms: number }>;

interface ProfileResult {
  readonly tfjs: {
    /** Wall time of the profiled step (the wrapper adds about a microsecond per op). */
    readonly stepMs: number;
    /** Time inside TensorFlow's eager ops; the rest is JavaScript (tape, tidy, N-API glue). */
    readonly opMs: number;
    readonly opCount: number;
    readonly ops: OpProfile;
    /** A second step's ops by the phase that ran them. */
    readonly phases: Readonly<
      Record<string, { readonly opMs: number; readonly opCount: number; readonly ops: OpProfile }>
    >;
  };
  readonly keras: {
    readonly steps: number;
    /** Wall time per traced step (the profiler adds some). */
    readonly stepMs: number;
    /** Summed over the executor's inter-op threads, which run independent ops concurrently. */
    readonly opMs: number;
    readonly opCount: number;
    readonly ops: OpProfile;
  };
}

interface FullStepResult {
  readonly subnetsPerStep: number;
  readonly kdRatio: number;
  readonly steps: number;
  readonly stepSeconds: readonly number[];
  readonly medianStepMs: number;
  readonly meanStepMs: number;
  readonly imagesPerSecond: number;
  readonly msPerSampledSubnet: number;
}

interface ConfigResult {
  readonly preset: ArchitecturePreset;
  readonly batch: number;
  readonly subnetId: string;
  readonly resolution: number;
  readonly params: number;
  readonly macsPerImage: number;
  readonly counts: Counts;
  readonly tfjs: SideResult;
  readonly keras: SideResult & { readonly info: Readonly<Record<string, unknown>> };
  /** Median tfjs steps/s over median Keras steps/s. */
  readonly ratio: number;
  /** tfjs steps/s over Keras steps/s per round pair. */
  readonly roundRatios: readonly number[];
  readonly medianRoundRatio: number;
  /**
   * Keras's CPU time per step over ours (user + system, all threads of each process): less
   * sensitive than wall time to other work on a shared machine, though not immune to it.
   */
  readonly cpuTimeRatio: number;
  readonly goalMet: boolean;
  readonly fullStep: FullStepResult | undefined;
  readonly profile: ProfileResult | undefined;
  readonly loadAverage: readonly number[];
}

const median = (values: readonly number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[mid] ?? Number.NaN)
    : ((sorted[mid - 1] ?? Number.NaN) + (sorted[mid] ?? Number.NaN)) / 2;
};

const seconds = (since: bigint): number => Number(process.hrtime.bigint() - since) / 1e9;

function sideResult(
  roundSeconds: readonly number[],
  usages: readonly Usage[],
  steps: number,
  batch: number,
  lastLoss: number,
): SideResult {
  const stepsPerSecond = median(roundSeconds.map((s) => steps / s));
  const total = steps * usages.length;
  const sum = (key: keyof Usage): number => usages.reduce((a, u) => a + u[key], 0) / total;
  return {
    roundSeconds,
    stepsPerRound: steps,
    medianStepsPerSecond: stepsPerSecond,
    medianImagesPerSecond: stepsPerSecond * batch,
    medianStepMs: 1000 / stepsPerSecond,
    perStep: { userMs: sum('userMs'), systemMs: sum('systemMs'), minorFaults: sum('minorFaults') },
    lastLoss,
  };
}

/** The Python process that trains the Keras model, one JSON line per command. */
class KerasWorker {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly lines: AsyncIterator<string>;
  private readonly stderrTail: string[] = [];

  constructor(python: string, modelPath: string, batch: number, threads: number, seed: number) {
    this.child = spawn(
      python,
      [
        join(BENCH_DIR, 'keras_training_step.py'),
        '--model',
        modelPath,
        '--batch',
        String(batch),
        '--threads',
        String(threads),
        '--seed',
        String(seed),
      ],
      { env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: '2' }, stdio: 'pipe' },
    );
    this.lines = createInterface({ input: this.child.stdout })[Symbol.asyncIterator]();
    createInterface({ input: this.child.stderr }).on('line', (line) => {
      this.stderrTail.push(line);
      if (this.stderrTail.length > 40) this.stderrTail.shift();
      if (line.startsWith('[keras]')) process.stderr.write(`  ${line}\n`);
    });
  }

  /** The first line: versions, thread settings, parameter count. */
  async ready(): Promise<Record<string, unknown>> {
    return this.read();
  }

  async request(command: Record<string, unknown>): Promise<Record<string, unknown>> {
    this.child.stdin.write(`${JSON.stringify(command)}\n`);
    return this.read();
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.stdin.end(`${JSON.stringify({ cmd: 'exit' })}\n`);
    await exited;
  }

  private async read(): Promise<Record<string, unknown>> {
    const next = await this.lines.next();
    if (next.done === true) {
      throw new Error(
        `the Keras process exited (code ${String(this.child.exitCode)}); its last output:\n${this.stderrTail.join('\n')}`,
      );
    }
    const reply = JSON.parse(next.value) as Record<string, unknown>;
    if (typeof reply.error === 'string') throw new Error(`Keras: ${reply.error}`);
    return reply;
  }
}

/** Our side: trainStep on one supernet, with its momentum carried across steps. */
class TfjsTrainer {
  private readonly supernet: Supernet;
  private readonly space: CompoundSpace;
  private readonly largest: SubnetSpec;
  private readonly velocity = new Map<string, tfjs.Tensor>();
  private readonly images: Float32Array;
  private readonly labels: Int32Array;
  private readonly shape: [number, number, number, number];
  private teacher: Supernet | undefined;
  private step = 0;

  constructor(
    private readonly tf: TensorFlow,
    readonly preset: ArchitecturePreset,
    readonly batch: number,
    private readonly seed: number,
  ) {
    const architecture = ARCHITECTURE_PRESETS[preset];
    this.space = new CompoundSpace(architecture);
    this.largest = this.space.largest();
    this.supernet = new Supernet(tf, this.space, seed);
    const resolution = this.largest.resolution;
    this.shape = [batch, resolution, resolution, architecture.inputChannels];
    const random = new Random(deriveSeed(seed, 'bench-images'));
    this.images = Float32Array.from(
      { length: batch * resolution * resolution * architecture.inputChannels },
      () => random.next(),
    );
    this.labels = Int32Array.from({ length: batch }, () => random.int(architecture.numClasses));
  }

  /** `steps` teacher-phase steps (largest subnet, K = 1, no distillation); wall seconds and last loss. */
  runLargest(steps: number): { seconds: number; loss: number; usage: Usage } {
    const usage = usageNow();
    const start = process.hrtime.bigint();
    let loss = Number.NaN;
    for (let i = 0; i < steps; i++) {
      loss = trainStep(this.tf, {
        supernet: this.supernet,
        teacher: undefined,
        batch: this.tf.tensor4d(this.images, this.shape),
        labels: this.labels,
        numClasses: this.space.architecture.numClasses,
        subnets: [this.largest],
        learningRate: teacherLearningRate(this.batch),
        momentum: MOMENTUM,
        weightDecay: WEIGHT_DECAY,
        labelSmoothing: LABEL_SMOOTHING,
        kdRatio: 0,
        velocity: this.velocity,
        dropoutSeed: deriveSeed(this.seed, 'dropout', this.step++),
        updateStatistics: true,
      });
    }
    const elapsed = seconds(start);
    return { seconds: elapsed, loss, usage: usageSince(usage) };
  }

  /** One compound-phase step as trainSupernet runs it: K sampled subnets, distilled from a teacher. */
  runFull(): number {
    const phase = COMPOUND_PHASE;
    if (!phase) throw new Error('the compound schedule has no phases');
    if (!this.teacher) {
      this.teacher = new Supernet(this.tf, this.space, this.seed);
      for (const [name, variable] of this.supernet.variables)
        this.teacher.variables.get(name)?.assign(variable);
    }
    const step = this.step++;
    const start = process.hrtime.bigint();
    trainStep(this.tf, {
      supernet: this.supernet,
      teacher: this.teacher,
      batch: this.tf.tensor4d(this.images, this.shape),
      labels: this.labels,
      numClasses: this.space.architecture.numClasses,
      subnets: Array.from({ length: phase.subnetsPerStep }, (_, k) =>
        this.space.sample(new Random(deriveSeed(this.seed, 'subnet', step, k))),
      ),
      learningRate: (phase.learningRate * this.batch) / 256,
      momentum: MOMENTUM,
      weightDecay: WEIGHT_DECAY,
      labelSmoothing: LABEL_SMOOTHING,
      kdRatio: KD_RATIO,
      velocity: this.velocity,
      dropoutSeed: deriveSeed(this.seed, 'dropout', step),
      updateStatistics: false,
    });
    return seconds(start);
  }

  /**
   * Two teacher-phase steps with every TensorFlow op timed: tfjs-node runs every kernel (the fused
   * batch norm and ReluGrad/Relu6Grad included) through its backend's executeSingleOutput or
   * executeMultipleOutputs. The first step is timed as a whole too; the second attributes each op
   * to a phase by its call stack (slower, so its wall time is not reported).
   */
  profileLargest(): ProfileResult['tfjs'] {
    const plain = this.profiledStep(undefined);
    const phases = new Map<string, OpTotals>();
    this.profiledStep((name, ns) => {
      const phase = phaseOfCaller();
      const ops = phases.get(phase) ?? new Map<string, { count: number; ns: bigint }>();
      addOp(ops, name, ns);
      phases.set(phase, ops);
    });
    return {
      stepMs: plain.seconds * 1000,
      opMs: totalMs(plain.ops),
      opCount: [...plain.ops.values()].reduce((sum, { count }) => sum + count, 0),
      ops: toProfile(plain.ops),
      phases: Object.fromEntries(
        PHASES.map((phase) => {
          const ops = phases.get(phase) ?? new Map<string, { count: number; ns: bigint }>();
          return [
            phase,
            {
              opMs: totalMs(ops),
              opCount: [...ops.values()].reduce((sum, { count }) => sum + count, 0),
              ops: toProfile(ops),
            },
          ];
        }),
      ),
    };
  }

  /** One teacher-phase step with the backend's op entry points wrapped. */
  private profiledStep(onOp: ((name: string, ns: bigint) => void) | undefined): {
    seconds: number;
    ops: OpTotals;
  } {
    type Execute = (name: string, ...rest: unknown[]) => unknown;
    const backend = this.tf.backend() as unknown as Record<string, unknown>;
    const methods = ['executeSingleOutput', 'executeMultipleOutputs'] as const;
    const ops: OpTotals = new Map();
    for (const method of methods) {
      const original = backend[method];
      if (typeof original !== 'function' || Object.hasOwn(backend, method))
        throw new Error(`profiling needs tfjs-node's backend (${method} on its prototype)`);
      backend[method] = (name: string, ...rest: unknown[]): unknown => {
        const start = process.hrtime.bigint();
        try {
          return (original as Execute).call(backend, name, ...rest);
        } finally {
          const ns = process.hrtime.bigint() - start;
          addOp(ops, name, ns);
          onOp?.(name, ns);
        }
      };
    }
    try {
      return { seconds: this.runLargest(1).seconds, ops };
    } finally {
      // The instance properties shadowed the prototype's methods: removing them restores those.
      for (const method of methods) Reflect.deleteProperty(backend, method);
    }
  }

  dispose(): void {
    for (const v of this.velocity.values()) v.dispose();
    this.velocity.clear();
    this.supernet.dispose();
    this.teacher?.dispose();
  }
}

type OpTotals = Map<string, { count: number; ns: bigint }>;

function addOp(ops: OpTotals, name: string, ns: bigint): void {
  const entry = ops.get(name) ?? { count: 0, ns: 0n };
  entry.count += 1;
  entry.ns += ns;
  ops.set(name, entry);
}

const totalMs = (ops: OpTotals): number =>
  [...ops.values()].reduce((sum, { ns }) => sum + Number(ns) / 1e6, 0);

function toProfile(ops: OpTotals): OpProfile {
  return Object.fromEntries(
    [...ops]
      .sort((a, b) => (b[1].ns > a[1].ns ? 1 : b[1].ns < a[1].ns ? -1 : 0))
      .map(([name, { count, ns }]) => [name, { count, ms: Number(ns) / 1e6 }]),
  );
}

/** Where an op of the step comes from, by the functions on the call stack. */
const PHASES = ['forward and loss', 'backward', 'optimizer and rest'] as const;

function phaseOfCaller(): (typeof PHASES)[number] {
  // Function names only: cheaper than formatted (source-mapped) stack text.
  const limit = Error.stackTraceLimit;
  const prepare = Object.getOwnPropertyDescriptor(Error, 'prepareStackTrace');
  Error.stackTraceLimit = 200;
  Error.prepareStackTrace = (_error, sites) => sites.map((site) => site.getFunctionName() ?? '');
  const holder: { stack?: unknown } = {};
  Error.captureStackTrace(holder);
  const names = holder.stack as string[];
  Error.stackTraceLimit = limit;
  if (prepare) Object.defineProperty(Error, 'prepareStackTrace', prepare);
  else Reflect.deleteProperty(Error, 'prepareStackTrace');
  if (names.includes('backpropagateGradients')) return 'backward';
  if (names.includes('forward') || names.some((n) => n.startsWith('softmaxCrossEntropy')))
    return 'forward and loss';
  return 'optimizer and rest';
}

function toOpProfile(value: unknown): OpProfile {
  const out: Record<string, { count: number; ms: number }> = {};
  for (const [name, entry] of Object.entries(value as Record<string, unknown>)) {
    const { count, ms } = entry as { count: number; ms: number };
    out[name] = { count, ms };
  }
  return out;
}

async function benchmarkConfig(
  tf: TensorFlow,
  config: Config,
  counts: Counts,
  options: { python: string; threads: number; seed: number; profile: boolean; workDir: string },
  progress: (line: string) => void,
): Promise<ConfigResult> {
  const { preset, batch } = config;
  const description = describeLargestSubnet(preset, batch);
  const modelPath = join(options.workDir, `${preset}-${batch}.json`);
  await writeFile(modelPath, `${JSON.stringify(description, null, 2)}\n`);
  const label = `${preset} batch ${batch}`;
  progress(
    `${label}: ${description.subnetId}, ${description.params.toLocaleString('en-US')} parameters, ${(description.macsPerImage / 1e6).toFixed(1)} M MACs per image`,
  );
  progress(`${label}: starting Keras (builds the model and traces its first step)`);
  const keras = new KerasWorker(options.python, modelPath, batch, options.threads, options.seed);
  const trainer = new TfjsTrainer(tf, preset, batch, options.seed);
  try {
    const info = await keras.ready();
    if (info.trainableParams !== description.params) {
      throw new Error(
        `the Keras model has ${String(info.trainableParams)} trainable parameters, subnetCost says ${description.params}: the two networks differ`,
      );
    }
    progress(
      `${label}: Keras ready (TensorFlow ${String(info.tensorflow)}, Keras ${String(info.keras)}, intra/inter-op threads ${String(info.intraOpThreads)}/${String(info.interOpThreads)}, jit_compile ${String(info.jitCompile)})`,
    );
    if (counts.warmup > 0) {
      const warm = trainer.runLargest(counts.warmup);
      progress(
        `${label}: tfjs warm-up ${counts.warmup} steps: ${((warm.seconds / counts.warmup) * 1000).toFixed(0)} ms/step`,
      );
      const reply = await keras.request({ cmd: 'steps', steps: counts.warmup });
      progress(
        `${label}: Keras warm-up ${counts.warmup} steps: ${((Number(reply.seconds) / counts.warmup) * 1000).toFixed(0)} ms/step`,
      );
    }
    // After the warm-up, which creates the momentum buffers.
    const before = tf.memory().numTensors;
    const tfjsRounds: number[] = [];
    const kerasRounds: number[] = [];
    const tfjsUsage: Usage[] = [];
    const kerasUsage: Usage[] = [];
    let tfjsLoss = Number.NaN;
    let kerasLoss = Number.NaN;
    for (let round = 0; round < counts.rounds; round++) {
      const ours = trainer.runLargest(counts.steps);
      tfjsRounds.push(ours.seconds);
      tfjsUsage.push(ours.usage);
      tfjsLoss = ours.loss;
      const theirs = await keras.request({ cmd: 'steps', steps: counts.steps });
      kerasRounds.push(Number(theirs.seconds));
      kerasUsage.push(toUsage(theirs.usage));
      kerasLoss = Number(theirs.loss);
      progress(
        `${label}: round ${round + 1}/${counts.rounds}: tfjs ${((ours.seconds / counts.steps) * 1000).toFixed(0)} ms/step, Keras ${((Number(theirs.seconds) / counts.steps) * 1000).toFixed(0)} ms/step, ratio ${(Number(theirs.seconds) / ours.seconds).toFixed(3)} (loss ${tfjsLoss.toFixed(3)} / ${kerasLoss.toFixed(3)})`,
      );
    }
    const leaked = tf.memory().numTensors - before;
    if (leaked !== 0) progress(`${label}: WARNING: ${leaked} tensors more than before the steps`);
    const tfjsResult = sideResult(tfjsRounds, tfjsUsage, counts.steps, batch, tfjsLoss);
    const kerasResult = sideResult(kerasRounds, kerasUsage, counts.steps, batch, kerasLoss);
    const roundRatios = tfjsRounds.map((s, i) => (kerasRounds[i] ?? Number.NaN) / s);
    const ratio = tfjsResult.medianStepsPerSecond / kerasResult.medianStepsPerSecond;

    let profile: ProfileResult | undefined;
    if (options.profile) {
      progress(`${label}: profiling one tfjs step and ${counts.steps} Keras steps`);
      const ours = trainer.profileLargest();
      const dir = join(options.workDir, `trace-${preset}-${batch}`);
      const theirs = await keras.request({ cmd: 'profile', steps: counts.steps, dir });
      const kerasOps = toOpProfile(theirs.ops);
      const values = Object.values(kerasOps);
      profile = {
        tfjs: ours,
        keras: {
          steps: counts.steps,
          stepMs: Number(theirs.stepMs),
          opMs: values.reduce((sum, op) => sum + op.ms, 0),
          opCount: values.reduce((sum, op) => sum + op.count, 0),
          ops: kerasOps,
        },
      };
    }

    let fullStep: FullStepResult | undefined;
    if (counts.fullSteps > 0) {
      await keras.close();
      const phase = COMPOUND_PHASE;
      const k = phase?.subnetsPerStep ?? 0;
      progress(
        `${label}: full CompOFA step (K = ${k} sampled subnets + distillation): 1 warm-up + ${counts.fullSteps} timed`,
      );
      trainer.runFull();
      const stepSeconds: number[] = [];
      for (let i = 0; i < counts.fullSteps; i++) {
        stepSeconds.push(trainer.runFull());
        progress(
          `${label}: full step ${i + 1}/${counts.fullSteps}: ${((stepSeconds.at(-1) ?? 0) * 1000).toFixed(0)} ms`,
        );
      }
      const mean = stepSeconds.reduce((a, b) => a + b, 0) / stepSeconds.length;
      fullStep = {
        subnetsPerStep: k,
        kdRatio: KD_RATIO,
        steps: counts.fullSteps,
        stepSeconds,
        medianStepMs: median(stepSeconds) * 1000,
        meanStepMs: mean * 1000,
        imagesPerSecond: batch / mean,
        msPerSampledSubnet: (mean * 1000) / k,
      };
    }
    return {
      preset,
      batch,
      subnetId: description.subnetId,
      resolution: description.resolution,
      params: description.params,
      macsPerImage: description.macsPerImage,
      counts,
      tfjs: tfjsResult,
      keras: { ...kerasResult, info },
      ratio,
      roundRatios,
      medianRoundRatio: median(roundRatios),
      cpuTimeRatio:
        (kerasResult.perStep.userMs + kerasResult.perStep.systemMs) /
        (tfjsResult.perStep.userMs + tfjsResult.perStep.systemMs),
      goalMet: ratio >= GOAL_RATIO,
      fullStep,
      profile,
      loadAverage: loadavg(),
    };
  } finally {
    await keras.close();
    trainer.dispose();
  }
}

function renderHuman(
  settings: Readonly<Record<string, unknown>>,
  results: readonly ConfigResult[],
  totalSeconds: number,
): string {
  const out: string[] = [];
  out.push('Training-step throughput: largest subnet, tfjs-node trainStep vs Keras train_on_batch');
  out.push(JSON.stringify(settings));
  out.push('');
  const header = [
    'preset',
    'batch',
    'tfjs steps/s',
    'tfjs img/s',
    'Keras steps/s',
    'Keras img/s',
    'tfjs/Keras',
    'median round ratio',
    'CPU-time ratio',
    `goal ${GOAL_RATIO}x`,
  ];
  const rows = results.map((r) => [
    r.preset,
    String(r.batch),
    r.tfjs.medianStepsPerSecond.toFixed(3),
    r.tfjs.medianImagesPerSecond.toFixed(1),
    r.keras.medianStepsPerSecond.toFixed(3),
    r.keras.medianImagesPerSecond.toFixed(1),
    `${r.ratio.toFixed(3)}x`,
    `${r.medianRoundRatio.toFixed(3)}x`,
    `${r.cpuTimeRatio.toFixed(3)}x`,
    r.goalMet ? 'met' : 'NOT met',
  ]);
  out.push(...markdownTable(header, rows));
  out.push('');
  for (const r of results) {
    out.push(
      `${r.preset} batch ${r.batch} (${r.subnetId}, ${r.counts.rounds} rounds x ${r.counts.steps} steps): tfjs ms/step [${r.tfjs.roundSeconds.map((s) => ((s / r.counts.steps) * 1000).toFixed(0)).join(', ')}], Keras [${r.keras.roundSeconds.map((s) => ((s / r.counts.steps) * 1000).toFixed(0)).join(', ')}]; load average after ${r.loadAverage.map((l) => l.toFixed(2)).join(' ')}`,
    );
    const usage = (u: Usage): string =>
      `user ${u.userMs.toFixed(0)} ms, system ${u.systemMs.toFixed(0)} ms, ${u.minorFaults.toFixed(0)} minor page faults`;
    out.push(
      `  per step, whole process: tfjs ${usage(r.tfjs.perStep)}; Keras ${usage(r.keras.perStep)}`,
    );
  }
  const full = results.filter((r) => r.fullStep !== undefined);
  if (full.length > 0) {
    out.push('');
    out.push('Full CompOFA step (compound phase: K sampled subnets + distillation), tfjs only:');
    out.push(
      ...markdownTable(
        ['preset', 'batch', 'K', 'ms/step (median)', 'ms/step (mean)', 'img/s', 'ms per subnet'],
        full.map((r) => {
          const f = r.fullStep as FullStepResult;
          return [
            r.preset,
            String(r.batch),
            String(f.subnetsPerStep),
            f.medianStepMs.toFixed(0),
            f.meanStepMs.toFixed(0),
            f.imagesPerSecond.toFixed(1),
            f.msPerSampledSubnet.toFixed(0),
          ];
        }),
      ),
    );
  }
  for (const r of results) {
    if (!r.profile) continue;
    const { tfjs: ours, keras } = r.profile;
    out.push('');
    out.push(
      `Profile, ${r.preset} batch ${r.batch}: tfjs step ${ours.stepMs.toFixed(0)} ms, ${ours.opCount} TF ops taking ${ours.opMs.toFixed(0)} ms (${(ours.stepMs - ours.opMs).toFixed(0)} ms outside ops); Keras step ${keras.stepMs.toFixed(0)} ms, ${keras.opCount.toFixed(0)} TF ops taking ${keras.opMs.toFixed(0)} ms (summed over its inter-op threads)`,
    );
    for (const [phase, p] of Object.entries(ours.phases)) {
      const top = Object.entries(p.ops)
        .slice(0, 8)
        .map(([name, op]) => `${name} x${op.count} ${op.ms.toFixed(0)} ms`)
        .join(', ');
      out.push(`  tfjs ${phase}: ${p.opCount} ops, ${p.opMs.toFixed(0)} ms (${top || 'none'})`);
    }
    const names = new Set([...Object.keys(ours.ops), ...Object.keys(keras.ops)]);
    const rowsByCost = [...names]
      .map((name) => ({ name, ours: ours.ops[name], theirs: keras.ops[name] }))
      .sort(
        (a, b) =>
          Math.max(b.ours?.ms ?? 0, b.theirs?.ms ?? 0) -
          Math.max(a.ours?.ms ?? 0, a.theirs?.ms ?? 0),
      )
      .slice(0, 30);
    out.push(
      ...markdownTable(
        ['op type', 'tfjs count', 'tfjs ms', 'Keras count', 'Keras ms'],
        rowsByCost.map(({ name, ours: o, theirs: t }) => [
          name,
          o ? String(o.count) : '-',
          o ? o.ms.toFixed(1) : '-',
          t ? t.count.toFixed(0) : '-',
          t ? t.ms.toFixed(1) : '-',
        ]),
      ),
    );
  }
  out.push('');
  for (const r of results) {
    out.push(
      `Goal (tfjs >= ${GOAL_RATIO}x Keras steps/s), ${r.preset} batch ${r.batch}: ${r.goalMet ? 'MET' : 'NOT MET'} (${r.ratio.toFixed(3)}x)`,
    );
  }
  out.push(`Total benchmark time: ${totalSeconds.toFixed(1)} s`);
  return out.join('\n');
}

function markdownTable(header: readonly string[], rows: readonly (readonly string[])[]): string[] {
  const widths = header.map((h, i) =>
    Math.max(h.length, ...rows.map((row) => row[i]?.length ?? 0)),
  );
  const line = (cells: readonly string[]): string =>
    `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`;
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)];
}

function usage(): string {
  return [
    'usage: npx tsx bench/training-throughput.ts [--configs small:32,small:64,imagenet:32]',
    '         [--rounds N] [--steps N] [--warmup N] [--full-steps N] [--threads N] [--seed N]',
    '         [--profile] [--python PATH] [--json] [--out FILE]',
    '       npx tsx bench/training-throughput.ts --describe small:32   (the network Keras builds, as JSON)',
    `Counts default per preset: small ${JSON.stringify(DEFAULT_COUNTS.small)}, imagenet ${JSON.stringify(DEFAULT_COUNTS.imagenet)};`,
    'a flag overrides them for every configuration. --python skips bench/setup-keras.sh.',
  ].join('\n');
}

function parseOptions(args: string[]) {
  return parseArgs({
    args,
    options: {
      configs: { type: 'string', default: DEFAULT_CONFIGS },
      rounds: { type: 'string' },
      steps: { type: 'string' },
      warmup: { type: 'string' },
      'full-steps': { type: 'string' },
      threads: { type: 'string' },
      seed: { type: 'string', default: '0' },
      profile: { type: 'boolean', default: false },
      python: { type: 'string' },
      describe: { type: 'string' },
      out: { type: 'string' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
    allowPositionals: false,
  }).values;
}

class UsageError extends Error {}

function count(name: string, value: string | undefined, min: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < min)
    throw new UsageError(`--${name} must be an integer of at least ${min}, got ${value}`);
  return n;
}

function parseConfigs(value: string): Config[] {
  return value.split(',').map((item) => {
    const [preset, batch] = item.split(':');
    if (preset !== 'small' && preset !== 'imagenet')
      throw new UsageError(`--configs: preset must be small or imagenet, got '${item}'`);
    const n = Number(batch);
    if (!Number.isSafeInteger(n) || n < 1)
      throw new UsageError(`--configs: '${item}' needs a positive batch size, e.g. ${preset}:32`);
    return { preset, batch: n };
  });
}

async function main(): Promise<void> {
  let values: ReturnType<typeof parseOptions>;
  let configs: Config[];
  let overrides: Partial<Counts>;
  let threads: number;
  let seed: number;
  try {
    values = parseOptions(process.argv.slice(2));
    if (values.help) {
      console.log(usage());
      return;
    }
    if (values.describe !== undefined) {
      const [config] = parseConfigs(values.describe);
      if (config)
        console.log(JSON.stringify(describeLargestSubnet(config.preset, config.batch), null, 2));
      return;
    }
    configs = parseConfigs(values.configs);
    overrides = Object.fromEntries(
      Object.entries({
        rounds: count('rounds', values.rounds, 1),
        steps: count('steps', values.steps, 1),
        warmup: count('warmup', values.warmup, 0),
        fullSteps: count('full-steps', values['full-steps'], 0),
      }).filter(([, v]) => v !== undefined),
    );
    threads =
      count('threads', values.threads, 1) ??
      count('threads', process.env.TF_NUM_INTRAOP_THREADS, 1) ??
      availableParallelism();
    seed = count('seed', values.seed, 0) ?? 0;
  } catch (error) {
    if (!(error instanceof UsageError || error instanceof TypeError)) throw error;
    console.error(`${error.message}\n${usage()}`);
    process.exitCode = 2;
    return;
  }
  const progress = (line: string): void => {
    process.stderr.write(`${line}\n`);
  };
  // Both TensorFlows read these when they create their CPU device: set them before either loads.
  process.env.TF_NUM_INTRAOP_THREADS = String(threads);
  process.env.TF_NUM_INTEROP_THREADS = String(threads);
  const python = values.python ?? benchPython();
  const runtime = await loadTensorFlow({ purpose: 'training', log: () => undefined });
  const cores = cpus();
  const settings = {
    tfjs: runtime.tfjsVersion,
    tensorflowBehindTfjs: runtime.tensorflowVersion,
    backend: runtime.backend,
    threads: { TF_NUM_INTRAOP_THREADS: threads, TF_NUM_INTEROP_THREADS: threads },
    machine: {
      cpuModel: cores[0]?.model.trim() ?? 'unknown',
      cores: cores.length,
      memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
      node: process.version,
      platform: `${platform()}/${arch()}`,
      loadAverageAtStart: loadavg().map((l) => Math.round(l * 100) / 100),
    },
    seed,
  };
  progress(`settings: ${JSON.stringify(settings)}`);
  const workDir = await mkdtemp(join(tmpdir(), 'compofa-bench-training-'));
  const begin = process.hrtime.bigint();
  const results: ConfigResult[] = [];
  try {
    for (const config of configs) {
      const counts = { ...DEFAULT_COUNTS[config.preset], ...overrides };
      results.push(
        await benchmarkConfig(
          runtime.tf,
          config,
          counts,
          { python, threads, seed, profile: values.profile, workDir },
          progress,
        ),
      );
    }
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
  const totalSeconds = seconds(begin);
  const report = {
    benchmark: 'training-throughput',
    measuredAt: new Date().toISOString(),
    goal: { ratio: GOAL_RATIO },
    settings,
    results,
    totalSeconds,
  };
  if (values.out !== undefined) await writeFile(values.out, `${JSON.stringify(report, null, 2)}\n`);
  console.log(
    values.json ? JSON.stringify(report, null, 2) : renderHuman(settings, results, totalSeconds),
  );
}

await main();
