/**
 * Latency profiling of subnets on the machine this runs on, in the two ways OFA and CompOFA use:
 *
 * - `exhaustive` ({@link profileSubnets}): every subnet's extracted LayersModel (what serving
 *   runs) is built and timed, warm-up predictions first, then timed ones on one fixed random
 *   input. CompOFA's 243 subnets per resolution make this practical.
 * - `lookup-table` ({@link buildLatencyLookupTable}): for spaces too large to enumerate (OFA's
 *   elastic space), each distinct layer shape (stem, every block shape, head) is timed once as a
 *   small LayersModel of just that layer, keyed by a canonical string of its shape; a subnet's
 *   latency is then estimated by {@link estimateLatency} from the entries of its layers.
 *
 * Every model is timed with the engine that serves it (trainer/engine.ts: ONNX Runtime on the
 * exported model.onnx by default, or TensorFlow.js), with the same threads, and every timed run
 * is one call of that engine up to the output's values on the CPU, as compofa-serve makes it.
 * Statistics are nearest-rank percentiles of the sorted samples: the median is the 50th, and so
 * never above the 95th.
 *
 * The lookup-table models mirror extract.ts's layer structure (same stock layers: h-swish from a
 * 1x1 depthwise conv, a capped ReLU and a multiply; SE as pool, reshape, two 1x1 convs) with
 * default-initialised weights, which do not change latency. {@link lookupTableError} checks the
 * estimates against full measurements, which also catches the two drifting apart.
 *
 * As OFA's tables, an estimate is the sum of the layers' medians, less the fixed cost of an
 * engine call that each per-layer model pays and a full model pays once. The table measures that
 * cost as the latency of a model that computes nothing ({@link LatencyLookupTable.callOverhead}).
 * With TensorFlow.js it is small next to a block (0.1 to 0.7 ms against a few ms); with ONNX
 * Runtime a whole small-preset subnet takes about as long as a dozen calls' overhead, so without
 * the correction the estimates were 2-3x the measured latency.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { join } from 'node:path';

import type * as tfjs from '@tensorflow/tfjs';

import { architectureKey } from '../compofa/architecture.js';
import { subnetShape, type BlockShape, type SubnetShape } from '../compofa/cost.js';
import type { DesignSpace, SubnetSpec } from '../compofa/design-space.js';
import {
  TABLE_API_VERSION,
  type LatencyDevice,
  type LatencyRow,
  type LatencyTable,
  type TableSubject,
} from '../compofa/tables.js';
import {
  DEFAULT_ENGINE,
  ENGINES,
  isEngine,
  type EngineFacts,
  type EngineName,
} from '../compofa/engines.js';
import { COMPOFA_VERSION } from '../compofa/version.js';
import type { TensorFlow, TensorFlowRuntime } from './backend.js';
import {
  OnnxModel,
  onnxRuntimeFacts,
  TfjsModel,
  tfjsEngineFacts,
  type CompiledModel,
} from './engine.js';
import { buildSubnetModel, SubnetLayers } from './extract.js';
import { encodeOnnxGraph, exportOnnx } from './onnx/export.js';
import { SubnetOnnxParts } from './onnx/subnet-parts.js';
import { Supernet } from './supernet.js';

type SymbolicTensor = tfjs.SymbolicTensor;
/** Height, width and channels of a model's input (the batch size comes from the settings). */
type InputShape = readonly [number, number, number];

/** Settings of a profiling run. */
export interface ProfileOptions {
  /** Images per prediction. Default 1. */
  readonly batchSize?: number;
  /** Untimed predictions before the timed ones. Default 5 (OFA). */
  readonly warmupRuns?: number;
  /** Timed predictions. Default 10 (OFA). */
  readonly timedRuns?: number;
  /** The engine that will serve the subnets. Default {@link DEFAULT_ENGINE}. */
  readonly engine?: EngineName;
  /**
   * The engine's threads, as serving will set them. Default: the engine's own (ONNX Runtime's
   * is set per session; TensorFlow's comes from TF_NUM_INTRAOP_THREADS when it loaded).
   */
  readonly threads?: number;
  /** Recorded in the table, next to the facts of {@link deviceFacts}. */
  readonly device?: {
    readonly nodeName?: string;
    readonly labels?: Readonly<Record<string, string>>;
  };
  /** Called after each measurement: subnets for tables, layer keys for lookup tables. */
  readonly onProgress?: (done: number, total: number, subnet: string) => void;
  /** Injectable clock in nanoseconds, read only around each timed run. Default process.hrtime.bigint. */
  readonly now?: () => bigint;
}

/** One layer shape's latency in a {@link LatencyLookupTable}. */
export interface LatencyLookupEntry {
  readonly medianMs: number;
  readonly p95Ms: number;
}

/** Per-layer-shape latencies of one supernet architecture on one device at one batch size. */
export interface LatencyLookupTable {
  readonly apiVersion: typeof TABLE_API_VERSION;
  readonly kind: 'LatencyLookupTable';
  readonly subject: TableSubject;
  readonly measuredAt: string;
  readonly device: LatencyDevice;
  readonly batchSize: number;
  readonly settings: { readonly warmupRuns: number; readonly timedRuns: number };
  /** By {@link stemKey}, {@link blockKey} or {@link headKey}. */
  readonly entries: Readonly<Record<string, LatencyLookupEntry>>;
  /** The latency of a call that computes nothing; absent in tables measured before it was. */
  readonly callOverhead?: LatencyLookupEntry;
}

/** How a lookup table's estimates compare with full measurements. */
export interface LookupTableError {
  readonly meanAbsolutePercentError: number;
  readonly maxAbsolutePercentError: number;
  readonly samples: number;
  /** Per subnet, in the order given. */
  readonly rows: readonly {
    readonly subnet: string;
    readonly estimatedMs: number;
    readonly measuredMs: number;
    readonly absolutePercentError: number;
  }[];
}

interface Settings {
  readonly engine: EngineName;
  readonly threads: number | undefined;
  readonly batchSize: number;
  readonly warmupRuns: number;
  readonly timedRuns: number;
  readonly now: () => bigint;
}

const DEFAULTS = { batchSize: 1, warmupRuns: 5, timedRuns: 10 } as const;
/** Seed of the fixed random input. */
const INPUT_SEED = 7;

/**
 * The hardware and software this process measures on: the CPU model (os.cpus()), the threads
 * available to it, the TensorFlow backend and version, whether its oneDNN kernels ran, and on the
 * GPU build the GPU model where the NVIDIA driver names it (omitted on CPU).
 */
export function deviceFacts(runtime: TensorFlowRuntime): {
  cpuModel: string;
  gpuModel?: string;
  threads: number;
  backend: string;
  tensorflowVersion?: string;
  oneDnn: boolean;
} {
  const cpuModel = cpus()[0]?.model.trim().replace(/\s+/g, ' ') ?? '';
  const gpuModel = runtime.device === 'gpu' ? nvidiaGpuModel() : undefined;
  return {
    cpuModel: cpuModel || 'unknown',
    ...(gpuModel ? { gpuModel } : {}),
    threads: Math.max(1, availableParallelism()),
    backend: runtime.backend,
    ...(runtime.tensorflowVersion ? { tensorflowVersion: runtime.tensorflowVersion } : {}),
    oneDnn: runtime.oneDnn,
  };
}

/** The first GPU's model from the NVIDIA driver's proc files, if there are any. */
function nvidiaGpuModel(): string | undefined {
  const root = '/proc/driver/nvidia/gpus';
  try {
    for (const gpu of readdirSync(root).sort()) {
      const text = readFileSync(join(root, gpu, 'information'), 'utf8');
      const model = /^Model:\s*(.+)$/m.exec(text)?.[1]?.trim();
      if (model) return model;
    }
  } catch {
    // No driver, or not readable: the GPU stays unnamed.
  }
  return undefined;
}

/**
 * Measures each subnet of `subnets` (validated against `space`; repeated ids measured once):
 * builds its extracted LayersModel from a freshly initialised supernet (latency does not depend
 * on trained weights), runs the warm-up predictions, then the timed ones on a fixed random input.
 * Returns a `LatencyTable` (method `exhaustive`) that `parseLatencyTable` accepts for `space`.
 */
export async function profileSubnets(
  runtime: TensorFlowRuntime,
  space: DesignSpace,
  subnets: Iterable<SubnetSpec>,
  options: ProfileOptions = {},
): Promise<LatencyTable> {
  const settings = validateOptions(options);
  const unique = new Map<string, SubnetSpec>();
  for (const spec of subnets) {
    space.validate(spec);
    const id = space.format(spec);
    if (!unique.has(id)) unique.set(id, spec);
  }
  if (unique.size === 0) throw new RangeError('subnets must name at least one subnet');
  const { tf } = runtime;
  const device = latencyDevice(runtime, options, settings, await engineFacts(tf, settings.engine));
  const rows: LatencyRow[] = [];
  // Latency needs only the architecture: a supernet with its initial weights will do.
  const supernet = new Supernet(tf, space, 0);
  // ONNX Runtime's models are chained from parts the subnets share (trainer/onnx/subnet-parts.ts):
  // the same graphs as exporting each subnet's LayersModel, without building 243 of them.
  const parts = settings.engine === 'onnxruntime' ? new SubnetOnnxParts(tf, supernet) : undefined;
  try {
    for (const [subnet, spec] of unique) {
      const input: InputShape = [
        spec.resolution,
        spec.resolution,
        space.architecture.inputChannels,
      ];
      const compiled = parts
        ? await OnnxModel.create(encodeOnnxGraph(parts.graph(spec), ONNX_FILE), {
            threads: settings.threads,
          })
        : await compile(tf, buildSubnetModel(tf, supernet, spec), input, settings);
      try {
        rows.push({ subnet, ...(await timeModel(tf, compiled, input, settings)) });
      } finally {
        await compiled.dispose();
      }
      options.onProgress?.(rows.length, unique.size, subnet);
      await yieldToEventLoop();
    }
  } finally {
    supernet.dispose();
  }
  return {
    apiVersion: TABLE_API_VERSION,
    kind: 'LatencyTable',
    subject: { designSpace: space.kind, architectureKey: architectureKey(space.architecture) },
    measuredAt: new Date().toISOString(),
    device,
    batchSize: settings.batchSize,
    method: 'exhaustive',
    settings: { warmupRuns: settings.warmupRuns, timedRuns: settings.timedRuns },
    rows,
  };
}

/**
 * Times every distinct layer shape that a subnet of `space` can contain (the stem and head at
 * each resolution, each block shape: per unit its first block and the shape its other blocks
 * share, per kernel size and expand ratio) once, as a small LayersModel of just that layer.
 * Identical shapes share one entry (keys leave out the block's name), so e.g. the three
 * non-first blocks of a unit with one kernel and expand ratio are timed once.
 */
export async function buildLatencyLookupTable(
  runtime: TensorFlowRuntime,
  space: DesignSpace,
  options: ProfileOptions = {},
): Promise<LatencyLookupTable> {
  const settings = validateOptions(options);
  const { tf } = runtime;
  const device = latencyDevice(runtime, options, settings, await engineFacts(tf, settings.engine));
  const layers = distinctLayers(space);
  const entries: Record<string, LatencyLookupEntry> = {};
  let done = 0;
  for (const [key, layer] of layers) {
    entries[key] = await timeBuiltModel(tf, settings, layer.input, layer.build);
    options.onProgress?.(++done, layers.size, key);
    await yieldToEventLoop();
  }
  // An identity of a single value: all it costs is the call.
  const callOverhead = await timeBuiltModel(
    tf,
    settings,
    [1, 1, 1],
    (_, input) =>
      tf.layers
        .activation({ activation: 'linear', name: 'call_overhead' })
        .apply(input) as SymbolicTensor,
  );
  return {
    apiVersion: TABLE_API_VERSION,
    kind: 'LatencyLookupTable',
    subject: { designSpace: space.kind, architectureKey: architectureKey(space.architecture) },
    measuredAt: new Date().toISOString(),
    device,
    batchSize: settings.batchSize,
    settings: { warmupRuns: settings.warmupRuns, timedRuns: settings.timedRuns },
    entries,
    callOverhead,
  };
}

/**
 * The estimated median latency (ms) of `spec` from `table`: the sum of the medians of its stem,
 * blocks and head. Throws a RangeError when the table belongs to another architecture or lacks
 * one of the layers.
 */
export function estimateLatency(
  table: LatencyLookupTable,
  space: DesignSpace,
  spec: SubnetSpec,
): number {
  return estimate(table, space, spec).medianMs;
}

/**
 * A `LatencyTable` (method `lookup-table`) of `subnets` estimated from `table`. Its p95 is the
 * same sum over the layers' p95s: an upper bound, since the layers' slowest runs rarely coincide.
 */
export function lookupLatencyTable(
  table: LatencyLookupTable,
  space: DesignSpace,
  subnets: Iterable<SubnetSpec>,
): LatencyTable {
  const rows = new Map<string, LatencyRow>();
  for (const spec of subnets) {
    const subnet = space.format(space.validate(spec));
    if (!rows.has(subnet)) rows.set(subnet, estimate(table, space, spec));
  }
  if (rows.size === 0) throw new RangeError('subnets must name at least one subnet');
  return {
    apiVersion: TABLE_API_VERSION,
    kind: 'LatencyTable',
    subject: table.subject,
    measuredAt: table.measuredAt,
    device: table.device,
    batchSize: table.batchSize,
    method: 'lookup-table',
    settings: table.settings,
    rows: [...rows.values()],
  };
}

/**
 * Measures `subnets` in full ({@link profileSubnets}, at the table's batch size and, unless
 * `options` says otherwise, its warm-up and timed runs) and compares the medians with the
 * estimates of `table`: absolute percentage errors relative to the measurement.
 */
export async function lookupTableError(
  runtime: TensorFlowRuntime,
  space: DesignSpace,
  table: LatencyLookupTable,
  subnets: readonly SubnetSpec[],
  options: ProfileOptions = {},
): Promise<LookupTableError> {
  if (options.batchSize !== undefined && options.batchSize !== table.batchSize) {
    throw new RangeError(
      `batchSize ${options.batchSize} differs from the lookup table's ${table.batchSize}`,
    );
  }
  const estimates = lookupLatencyTable(table, space, subnets);
  const measured = await profileSubnets(runtime, space, subnets, {
    ...table.settings,
    ...options,
    batchSize: table.batchSize,
  });
  const measuredBySubnet = new Map(measured.rows.map((row) => [row.subnet, row.medianMs]));
  const rows = estimates.rows.map((row) => {
    const measuredMs = measuredBySubnet.get(row.subnet) ?? Number.NaN;
    return {
      subnet: row.subnet,
      estimatedMs: row.medianMs,
      measuredMs,
      absolutePercentError: (Math.abs(row.medianMs - measuredMs) / measuredMs) * 100,
    };
  });
  const errors = rows.map((row) => row.absolutePercentError);
  return {
    meanAbsolutePercentError: errors.reduce((sum, e) => sum + e, 0) / errors.length,
    maxAbsolutePercentError: Math.max(...errors),
    samples: rows.length,
    rows,
  };
}

/** The lookup key of a subnet's stem (its input resolution and channels). */
export function stemKey(shape: SubnetShape): string {
  const { stem } = shape;
  return `stem-r${shape.resolution}-i${stem.inChannels}-o${stem.outChannels}-s${stem.stride}`;
}

/** The lookup key of a block shape: every field but the block's name. */
export function blockKey(block: BlockShape): string {
  return [
    'block',
    `r${block.inputSize}`,
    `i${block.inChannels}`,
    `o${block.outChannels}`,
    `m${block.midChannels}`,
    `e${block.expandRatio}`,
    `k${block.kernelSize}`,
    `s${block.stride}`,
    block.activation,
    `se${block.squeezeExciteChannels}`,
    block.residual ? 'res' : 'nores',
  ].join('-');
}

/** The lookup key of the head (conv, pooling, feature layer, classifier). */
export function headKey(shape: SubnetShape): string {
  return [
    'head',
    `r${shape.headInputSize}`,
    `i${shape.headInChannels}`,
    `h${shape.headChannels}`,
    `f${shape.featureChannels}`,
    `c${shape.numClasses}`,
  ].join('-');
}

// ---------------------------------------------------------------------------------------------

function estimate(table: LatencyLookupTable, space: DesignSpace, spec: SubnetSpec): LatencyRow {
  const expected = architectureKey(space.architecture);
  if (table.subject.architectureKey !== expected) {
    throw new RangeError(
      `the lookup table is for architecture ${table.subject.architectureKey}, not ${expected}`,
    );
  }
  space.validate(spec);
  const shape = subnetShape(space.architecture, spec);
  // Each layer's entry paid one call; the subnet pays one in all.
  const overhead = table.callOverhead;
  let medianMs = overhead?.medianMs ?? 0;
  let p95Ms = overhead?.medianMs ?? 0;
  const add = (key: string, layer: string): void => {
    const entry = table.entries[key];
    if (!entry) {
      throw new RangeError(
        `the lookup table has no entry for ${layer} of ${space.format(spec)} (key ${key}); rebuild it for this space`,
      );
    }
    medianMs += entry.medianMs - (overhead?.medianMs ?? 0);
    p95Ms += entry.p95Ms - (overhead?.medianMs ?? 0);
  };
  add(stemKey(shape), 'the stem');
  for (const block of shape.blocks) add(blockKey(block), block.name);
  add(headKey(shape), 'the head');
  return { subnet: space.format(spec), medianMs, p95Ms };
}

/** A layer to time: its input shape (without batch) and how to build it on a symbolic input. */
interface LayerToTime {
  readonly input: InputShape;
  readonly build: (layers: SubnetLayers, input: SymbolicTensor) => SymbolicTensor;
}

/** Every distinct stem, block and head shape of `space`, by key, in network order. */
function distinctLayers(space: DesignSpace): Map<string, LayerToTime> {
  const architecture = space.architecture;
  const layers = new Map<string, LayerToTime>();
  const add = (key: string, layer: LayerToTime): void => {
    if (!layers.has(key)) layers.set(key, layer);
  };
  for (const resolution of architecture.resolutions) {
    // The largest subnet has every block position; each position takes every kernel and expand.
    const positions = space.largest(resolution);
    const variants: SubnetSpec[] = [];
    positions.units.forEach((_, unit) => {
      for (const kernel of space.kernelSizes(unit)) {
        for (const expand of space.expandRatios) {
          variants.push({
            resolution,
            units: positions.units.map((other, u) =>
              u === unit
                ? {
                    depth: other.depth,
                    kernelSizes: Array<number>(other.depth).fill(kernel),
                    expandRatios: Array<number>(other.depth).fill(expand),
                  }
                : other,
            ),
          });
        }
      }
    });
    for (const variant of [positions, ...variants]) {
      // Not space.validate: the compound space couples depth and expand, these specs need not.
      const shape = subnetShape(architecture, variant);
      add(stemKey(shape), {
        input: [resolution, resolution, shape.stem.inChannels],
        build: (layers, input) => layers.stem(input, shape),
      });
      for (const block of shape.blocks) {
        add(blockKey(block), {
          input: [block.inputSize, block.inputSize, block.inChannels],
          build: (layers, input) => layers.block(input, block),
        });
      }
      add(headKey(shape), {
        input: [shape.headInputSize, shape.headInputSize, shape.headInChannels],
        build: (layers, input) => layers.head(input, shape, architecture.dropoutRate),
      });
    }
  }
  return layers;
}

/** Builds a model of one input, times it and disposes it. */
async function timeBuiltModel(
  tf: TensorFlow,
  settings: Settings,
  inputShape: InputShape,
  build: (layers: SubnetLayers, input: SymbolicTensor) => SymbolicTensor,
): Promise<LatencyLookupEntry> {
  const layers = new SubnetLayers(tf);
  const model = layers.model(inputShape, 'lut_input', (input) => build(layers, input));
  const compiled = await compile(tf, model, inputShape, settings, 'layer');
  try {
    return await timeModel(tf, compiled, inputShape, settings);
  } finally {
    await compiled.dispose();
  }
}

/** The facts of `engine` as profiling records them. */
async function engineFacts(tf: TensorFlow, engine: EngineName): Promise<EngineFacts> {
  return engine === 'tfjs' ? tfjsEngineFacts(tf) : onnxRuntimeFacts();
}

/**
 * The threads TensorFlow runs with: what TF_NUM_INTRAOP_THREADS said when it loaded (it reads
 * the variable once), else every core. A `threads` option that disagrees cannot be honoured.
 */
function tensorflowThreads(settings: Settings): number {
  const loaded = Number(process.env.TF_NUM_INTRAOP_THREADS);
  const threads =
    Number.isInteger(loaded) && loaded > 0 ? loaded : Math.max(1, availableParallelism());
  if (settings.threads !== undefined && settings.threads !== threads) {
    throw new RangeError(
      `threads ${settings.threads}: TensorFlow runs ${threads}, fixed when it loaded; set them with setTensorFlowThreads (TF_NUM_INTRAOP_THREADS) before loadTensorFlow`,
    );
  }
  return threads;
}

/** What the model files profiling times record: nothing, they are never saved. */
const ONNX_FILE = { metadata: {}, producerVersion: COMPOFA_VERSION } as const;

/**
 * `model` as the engine will serve it: for ONNX Runtime exported to ONNX and compiled (the
 * LayersModel is then disposed), for tfjs the LayersModel itself.
 */
async function compile(
  tf: TensorFlow,
  model: tfjs.LayersModel,
  inputShape: InputShape,
  settings: Settings,
  part: 'network' | 'layer' = 'network',
): Promise<CompiledModel> {
  if (settings.engine === 'tfjs') {
    return new TfjsModel(tf, model, tfjsEngineFacts(tf), inputShape);
  }
  try {
    const bytes = exportOnnx(model, {
      ...ONNX_FILE,
      // A layer inside a network reads and writes NCHW: no transposes that the whole avoids.
      inputLayout: part === 'layer' ? 'nchw' : 'nhwc',
      outputLayout: part === 'layer' ? 'nchw' : 'nhwc',
    });
    return await OnnxModel.create(bytes, { threads: settings.threads });
  } finally {
    model.dispose();
  }
}

/** Warm-up, then timed runs of the engine on one fixed random input. */
async function timeModel(
  tf: TensorFlow,
  model: CompiledModel,
  inputShape: InputShape,
  settings: Settings,
): Promise<LatencyLookupEntry> {
  const x = tf.tidy(
    () =>
      tf
        .randomUniform([settings.batchSize, ...inputShape], 0, 1, 'float32', INPUT_SEED)
        .dataSync() as Float32Array,
  );
  for (let i = 0; i < settings.warmupRuns; i++) await model.run(x, settings.batchSize);
  const samples: number[] = [];
  for (let i = 0; i < settings.timedRuns; i++) {
    const start = settings.now();
    await model.run(x, settings.batchSize);
    const end = settings.now();
    samples.push(Number(end - start) / 1e6);
  }
  samples.sort((a, b) => a - b);
  return { medianMs: percentile(samples, 50), p95Ms: percentile(samples, 95) };
}

/** Nearest-rank percentile of ascending `sorted` (non-empty). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) throw new RangeError('percentile of no samples');
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1] ?? Number.NaN;
}

function latencyDevice(
  runtime: TensorFlowRuntime,
  options: ProfileOptions,
  settings: Settings,
  engine: EngineFacts,
): LatencyDevice {
  const nodeName = options.device?.nodeName;
  const labels = options.device?.labels;
  const facts = deviceFacts(runtime);
  return {
    ...(nodeName === undefined ? {} : { nodeName }),
    ...(labels === undefined ? {} : { labels: { ...labels } }),
    ...facts,
    threads:
      settings.engine === 'tfjs'
        ? tensorflowThreads(settings)
        : (settings.threads ?? facts.threads),
    engine: engine.name,
    engineVersion: engine.version,
  };
}

function validateOptions(options: ProfileOptions): Settings {
  const integer = (name: string, value: number | undefined, min: number, fallback: number) => {
    if (value === undefined) return fallback;
    if (!Number.isSafeInteger(value) || value < min)
      throw new RangeError(`${name} must be an integer of at least ${min}, got ${String(value)}`);
    return value;
  };
  // Read as unknown: JavaScript callers and parsed configuration need not respect the types.
  const now: unknown = options.now;
  if (now !== undefined && typeof now !== 'function')
    throw new RangeError('now must be a function returning nanoseconds as a bigint');
  const onProgress: unknown = options.onProgress;
  if (onProgress !== undefined && typeof onProgress !== 'function')
    throw new RangeError('onProgress must be a function');
  const device: unknown = options.device;
  if (device !== undefined && (device === null || typeof device !== 'object'))
    throw new RangeError('device must be an object');
  const { nodeName, labels } = (device ?? {}) as { nodeName?: unknown; labels?: unknown };
  if (nodeName !== undefined && (typeof nodeName !== 'string' || nodeName.length === 0))
    throw new RangeError(
      `device.nodeName must be a non-empty string, got ${JSON.stringify(nodeName)}`,
    );
  if (labels !== undefined) {
    if (labels === null || typeof labels !== 'object' || Array.isArray(labels))
      throw new RangeError('device.labels must be an object of strings');
    for (const [key, value] of Object.entries(labels)) {
      if (typeof value !== 'string' || value.length === 0)
        throw new RangeError(`device.labels.${key} must be a non-empty string`);
    }
  }
  const engine: unknown = options.engine ?? DEFAULT_ENGINE;
  if (!isEngine(engine)) {
    throw new RangeError(
      `engine must be one of ${ENGINES.join(', ')}, got ${JSON.stringify(engine)}`,
    );
  }
  return {
    engine,
    threads: options.threads === undefined ? undefined : integer('threads', options.threads, 1, 1),
    batchSize: integer('batchSize', options.batchSize, 1, DEFAULTS.batchSize),
    warmupRuns: integer('warmupRuns', options.warmupRuns, 0, DEFAULTS.warmupRuns),
    timedRuns: integer('timedRuns', options.timedRuns, 1, DEFAULTS.timedRuns),
    now: options.now ?? (() => process.hrtime.bigint()),
  };
}

/** Lets timers and I/O run between measurements. */
function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
