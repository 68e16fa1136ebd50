/**
 * The one place that decides which TensorFlow.js backend this process runs on.
 *
 * Native TensorFlow (`@tensorflow/tfjs-node`, or `@tensorflow/tfjs-node-gpu` on GPU images) is
 * required: a training step on the pure-JS backend is about 130x slower, so a silent fallback
 * would turn minutes into days and make every latency measurement meaningless. The pure-JS
 * backend is used only when a caller explicitly allows it.
 */
import { createRequire } from 'node:module';

import type * as tfjs from '@tensorflow/tfjs';

import { installNativeActivationGradients } from './fused-ops.js';

/** The TensorFlow.js API shared by the native and the pure-JS packages. */
export type TensorFlow = typeof tfjs;

/** What the process will use TensorFlow for; named in logs and errors. */
export type TensorFlowPurpose =
  'training' | 'profiling' | 'evaluation' | 'extraction' | 'inference';

/** Which native package to load: the CPU build or the CUDA build. */
export type TensorFlowDevice = 'cpu' | 'gpu';

/** The TensorFlow.js runtime a process got, with the facts worth logging. */
export interface TensorFlowRuntime {
  readonly tf: TensorFlow;
  /** `tensorflow` for native TensorFlow, `cpu` for the pure-JS fallback. */
  readonly backend: string;
  readonly native: boolean;
  /** The npm package that provides the backend. */
  readonly packageName: string;
  readonly device: TensorFlowDevice;
  /** Version of the TensorFlow C library behind the native backend; undefined for pure JS. */
  readonly tensorflowVersion: string | undefined;
  readonly tfjsVersion: string;
  /**
   * Whether TensorFlow runs its oneDNN kernels for convolutions, batch norm and matrix products
   * on the CPU (`TF_ENABLE_ONEDNN_OPTS`, see {@link oneDnnEnabled}); false for pure JS.
   */
  readonly oneDnn: boolean;
}

/**
 * Sizes TensorFlow's intra- and inter-op thread pools; TensorFlow reads the variables when it
 * creates them, so this must run before {@link loadTensorFlow}.
 */
export function setTensorFlowThreads(threads: number): void {
  process.env.TF_NUM_INTRAOP_THREADS = String(threads);
  process.env.TF_NUM_INTEROP_THREADS = String(threads);
}

/** Options of {@link loadTensorFlow}. */
export interface LoadTensorFlowOptions {
  readonly purpose: TensorFlowPurpose;
  /** Default: `COMPOFA_TF_DEVICE` (cpu | gpu), else cpu. */
  readonly device?: TensorFlowDevice;
  /** Run on the slow pure-JS backend when native TensorFlow cannot be loaded. Default: `COMPOFA_ALLOW_PURE_JS=1`. */
  readonly allowPureJs?: boolean;
  /** Receives one structured record naming the chosen backend. Default: a JSON line on stderr. */
  readonly log?: (record: Readonly<Record<string, unknown>>) => void;
  /** Loads a package by name; injectable so tests can make the native package unavailable. */
  readonly importPackage?: (name: string) => Promise<unknown>;
}

/** Thrown when native TensorFlow cannot be loaded and the pure-JS backend was not allowed. */
export class NativeTensorFlowUnavailableError extends Error {
  override readonly name = 'NativeTensorFlowUnavailableError';
  constructor(
    readonly packageName: string,
    readonly purpose: TensorFlowPurpose,
    override readonly cause: unknown,
  ) {
    const setup = packageName.endsWith('-gpu') ? 'npm run setup:gpu' : 'npm run setup';
    super(
      `native TensorFlow is not available for ${purpose}: ${packageName} could not be loaded ` +
        `(${describe(cause)}). Run '${setup}' (scripts/setup-tensorflow.sh) to build it against ` +
        `TensorFlow 2.21, or allow the ~100x slower pure-JS backend with COMPOFA_ALLOW_PURE_JS=1.`,
    );
  }
}

/** The purposes that run small batches, where oneDNN's per-op cost outweighs its faster kernels. */
const ONEDNN_OFF_BY_DEFAULT: ReadonlySet<TensorFlowPurpose> = new Set(['inference', 'profiling']);

/**
 * Whether TensorFlow should run its oneDNN kernels for `purpose`: what `TF_ENABLE_ONEDNN_OPTS`
 * says when it is set (`1`/`true` or `0`/`false`, as TensorFlow reads it), otherwise off for
 * inference and profiling and on (TensorFlow's default) for training, evaluation and extraction.
 *
 * Why by purpose: in eager mode every oneDNN convolution and batch norm pays a fixed cost of
 * 0.1-0.2 ms on top of its arithmetic, which dominates at batch 1: without oneDNN the smallest
 * subnet of the small preset answers in 15.6 ms instead of 64 ms and the largest in 32.5 ms
 * instead of 97 ms (`npm run bench:onednn`), while a training step at batch 32 is 20% faster
 * with it (docs/benchmarks.md, "Serving"). Profiling must measure what serving runs, so both share
 * the default; a table records the setting it was measured with.
 */
export function oneDnnEnabled(
  purpose: TensorFlowPurpose,
  env: Readonly<Record<string, string | undefined>>,
): boolean {
  const value = env.TF_ENABLE_ONEDNN_OPTS;
  if (value === undefined || value === '') return !ONEDNN_OFF_BY_DEFAULT.has(purpose);
  const normalized = value.trim().toLowerCase();
  if (normalized === '1' || normalized === 'true') return true;
  if (normalized === '0' || normalized === 'false') return false;
  throw new Error(`TF_ENABLE_ONEDNN_OPTS must be 1, true, 0 or false, not '${value}'`);
}

const NATIVE_PACKAGES: Readonly<Record<TensorFlowDevice, string>> = {
  cpu: '@tensorflow/tfjs-node',
  gpu: '@tensorflow/tfjs-node-gpu',
};
const PURE_JS_PACKAGE = '@tensorflow/tfjs';

/** The part of tfjs-node's backend this module reads. */
interface NativeBackend {
  readonly binding?: { readonly TF_Version?: string };
}

const runtimes = new Map<string, Promise<TensorFlowRuntime>>();

/**
 * Loads TensorFlow.js for `purpose`, once per process and device, logging the backend and the
 * TensorFlow version. Rejects with {@link NativeTensorFlowUnavailableError} when the native
 * package cannot be loaded, unless the pure-JS backend is explicitly allowed.
 */
export function loadTensorFlow(options: LoadTensorFlowOptions): Promise<TensorFlowRuntime> {
  const device = options.device ?? deviceFromEnvironment();
  const allowPureJs = options.allowPureJs ?? process.env.COMPOFA_ALLOW_PURE_JS === '1';
  // Injected importers are test seams: never share their results with the process-wide cache.
  if (options.importPackage) return load(options, device, allowPureJs, options.importPackage);
  const key = `${device}:${allowPureJs}`;
  let runtime = runtimes.get(key);
  if (!runtime) {
    runtime = load(options, device, allowPureJs, importCommonJs);
    runtimes.set(key, runtime);
    runtime.catch(() => runtimes.delete(key));
  }
  return runtime;
}

async function load(
  options: LoadTensorFlowOptions,
  device: TensorFlowDevice,
  allowPureJs: boolean,
  importPackage: (name: string) => Promise<unknown>,
): Promise<TensorFlowRuntime> {
  // TensorFlow's C++ start-up chatter (oneDNN notices, CPU feature lines) is not our log.
  process.env.TF_CPP_MIN_LOG_LEVEL ??= '2';
  // TensorFlow reads it once, when the library loads.
  const oneDnn = oneDnnEnabled(options.purpose, process.env);
  process.env.TF_ENABLE_ONEDNN_OPTS = oneDnn ? '1' : '0';
  const packageName = NATIVE_PACKAGES[device];
  let runtime: TensorFlowRuntime;
  try {
    const tf = (await importPackage(packageName)) as TensorFlow;
    await tf.ready();
    const backend = tf.getBackend();
    if (backend !== 'tensorflow') throw new Error(`it selected the '${backend}' backend`);
    const tensorflowVersion = (tf.backend() as NativeBackend).binding?.TF_Version;
    // TensorFlow's ReluGrad/Relu6Grad in place of tfjs's composed ReLU gradients, once per
    // process (trainer/fused-ops.ts: a quarter of a training step).
    installNativeActivationGradients(tf);
    runtime = {
      tf,
      backend,
      native: true,
      packageName,
      device,
      tensorflowVersion,
      tfjsVersion: tf.version_core,
      oneDnn,
    };
  } catch (cause) {
    if (!allowPureJs)
      throw new NativeTensorFlowUnavailableError(packageName, options.purpose, cause);
    const tf = (await importPackage(PURE_JS_PACKAGE)) as TensorFlow;
    await tf.setBackend('cpu');
    runtime = {
      tf,
      backend: tf.getBackend(),
      native: false,
      packageName: PURE_JS_PACKAGE,
      device: 'cpu',
      tensorflowVersion: undefined,
      tfjsVersion: tf.version_core,
      oneDnn: false,
    };
  }
  (options.log ?? logToStderr)({
    level: runtime.native ? 'info' : 'warn',
    msg: runtime.native
      ? 'TensorFlow.js backend selected'
      : 'running on the slow pure-JS backend because native TensorFlow could not be loaded',
    purpose: options.purpose,
    backend: runtime.backend,
    package: runtime.packageName,
    device: runtime.device,
    tensorflowVersion: runtime.tensorflowVersion ?? null,
    tfjsVersion: runtime.tfjsVersion,
    oneDnn: runtime.oneDnn,
  });
  return runtime;
}

function deviceFromEnvironment(): TensorFlowDevice {
  const value = process.env.COMPOFA_TF_DEVICE ?? 'cpu';
  if (value !== 'cpu' && value !== 'gpu') {
    throw new Error(`COMPOFA_TF_DEVICE must be 'cpu' or 'gpu', not '${value}'`);
  }
  return value;
}

const requireFromHere = createRequire(import.meta.url);

/** tfjs packages are CommonJS; `require` gives the whole exports object, as their types describe. */
function importCommonJs(name: string): Promise<unknown> {
  try {
    return Promise.resolve(requireFromHere(name));
  } catch (error) {
    return Promise.reject(error instanceof Error ? error : new Error(String(error)));
  }
}

function logToStderr(record: Readonly<Record<string, unknown>>): void {
  process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), ...record })}\n`);
}

function describe(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  // tfjs-node's own message runs to several lines with advice that does not apply here.
  return message.split('\n')[0] ?? message;
}
