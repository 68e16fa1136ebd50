/**
 * The serving pod's configuration: every setting comes from a flag or, when the flag is absent,
 * from its environment variable (what a Deployment sets), and is validated once at start so a
 * bad value stops the pod with a message naming the flag, the variable and what is expected.
 */
import { parseArgs } from 'node:util';

import { STATISTIC_QUANTILES, type LatencyStatistic } from '../compofa/tables.js';
import { DEFAULT_ENGINE, ENGINES, type EngineName } from '../compofa/engines.js';

/** Validated settings of one server process. */
export interface ServingConfig {
  /** Folder with the extracted model (model.onnx, model.json + weight files). */
  readonly modelDir: string;
  /** What runs the model: ONNX Runtime on model.onnx, or TensorFlow.js on model.json. */
  readonly engine: EngineName;
  /** Name under which the model is served (`/v2/models/{name}`). */
  readonly modelName: string;
  readonly modelVersion: string;
  readonly host: string;
  readonly port: number;
  /** The DeploymentTarget this pod serves; a metric label. */
  readonly target: string;
  /** The target's latency budget, exported as a gauge for alert rules; undefined when none. */
  readonly latencyBudgetMs: number | undefined;
  /** Allowed excess over the budget before a drift alert, exported as a gauge. */
  readonly latencyTolerance: number;
  /** Which statistic of the served latency the budget bounds (the target's latencyStatistic). */
  readonly latencyStatistic: LatencyStatistic;
  /** Largest batch one request may carry. */
  readonly maxRequestBatch: number;
  /** Dynamic micro-batching; off by default. */
  readonly batching:
    { readonly maxBatchSize: number; readonly maxQueueDelayMs: number } | undefined;
  /** Rows waiting for the model beyond which requests are refused with 503. */
  readonly maxQueuedRows: number;
  /** Largest accepted request body. */
  readonly maxBodyBytes: number;
  /**
   * How long after SIGTERM the server goes on accepting and answering requests, unready, before
   * it stops listening: the time Kubernetes takes to remove the pod from its Service's endpoints
   * (kube-proxy and load balancers keep sending until then; a closed listener would refuse them).
   */
  readonly shutdownDelayMs: number;
  /** How long SIGTERM waits for in-flight requests, after the shutdown delay, before exiting anyway. */
  readonly drainTimeoutMs: number;
  readonly logLevel: LogLevel;
  /**
   * The engine's intra- and inter-op threads (TensorFlow's set before it loads); undefined keeps
   * the engine's default (every core the process sees, which in a container is often more than
   * its CPU limit).
   */
  readonly threads: number | undefined;
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];

/** A setting that could not be accepted; the message names the flag and variable. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

interface Setting {
  readonly env: string;
  readonly help: string;
  readonly default?: string;
  readonly boolean?: true;
}

/** Every setting once: its flag, variable, default and help (the usage text is built from it). */
const SETTINGS = {
  'model-dir': {
    env: 'COMPOFA_MODEL_DIR',
    help: 'folder of compofa extract: model.onnx, model.json (required)',
  },
  engine: {
    env: 'COMPOFA_ENGINE',
    default: DEFAULT_ENGINE,
    help: `${ENGINES.join(' | ')}: ONNX Runtime on model.onnx or TensorFlow.js on model.json`,
  },
  'model-name': { env: 'COMPOFA_MODEL_NAME', default: 'compofa', help: 'name in the API paths' },
  'model-version': { env: 'COMPOFA_MODEL_VERSION', default: '1', help: 'served version' },
  host: { env: 'COMPOFA_HOST', default: '0.0.0.0', help: 'address to listen on' },
  port: { env: 'COMPOFA_PORT', default: '8080', help: 'port to listen on' },
  target: { env: 'COMPOFA_TARGET', default: '', help: 'DeploymentTarget name (metric label)' },
  'latency-budget-ms': {
    env: 'COMPOFA_LATENCY_BUDGET_MS',
    help: 'latency budget, exported as compofa_latency_budget_seconds',
  },
  'latency-tolerance': {
    env: 'COMPOFA_LATENCY_TOLERANCE',
    default: '0.1',
    help: 'drift alerts fire above budget x (1 + tolerance)',
  },
  'latency-statistic': {
    env: 'COMPOFA_LATENCY_STATISTIC',
    default: 'p95',
    help: 'median or p95: what the budget bounds, exported as compofa_latency_budget_quantile',
  },
  'max-request-batch': {
    env: 'COMPOFA_MAX_REQUEST_BATCH',
    default: '64',
    help: 'largest batch in one request',
  },
  batching: {
    env: 'COMPOFA_BATCHING',
    boolean: true,
    help: 'merge concurrent requests into one model call',
  },
  'batch-max-size': {
    env: 'COMPOFA_BATCH_MAX_SIZE',
    default: '32',
    help: 'rows per merged model call',
  },
  'batch-max-delay-ms': {
    env: 'COMPOFA_BATCH_MAX_DELAY_MS',
    default: '2',
    help: 'longest wait for more requests',
  },
  'max-queued-rows': {
    env: 'COMPOFA_MAX_QUEUED_ROWS',
    default: '1024',
    help: 'rows waiting beyond which requests get 503',
  },
  'max-body-bytes': {
    env: 'COMPOFA_MAX_BODY_BYTES',
    default: String(16 * 1024 * 1024),
    help: 'largest request body',
  },
  'shutdown-delay-ms': {
    env: 'COMPOFA_SHUTDOWN_DELAY_MS',
    default: '0',
    help: 'SIGTERM: keep accepting (unready) this long before closing the listener',
  },
  'drain-timeout-ms': {
    env: 'COMPOFA_DRAIN_TIMEOUT_MS',
    default: '30000',
    help: 'SIGTERM: longest wait for in-flight requests',
  },
  threads: {
    env: 'COMPOFA_THREADS',
    help: "the engine's intra- and inter-op threads (unset: the engine's default, every core)",
  },
  'log-level': { env: 'COMPOFA_LOG_LEVEL', default: 'info', help: LOG_LEVELS.join(' | ') },
} as const satisfies Record<string, Setting>;

type Name = keyof typeof SETTINGS;

/** The usage text: one line per flag with its variable and default. */
export function usage(): string {
  const lines = Object.entries(SETTINGS).map(([flag, setting]: [string, Setting]) => {
    const fallback = setting.default === undefined ? '' : ` (default ${setting.default || '""'})`;
    return `  --${flag.padEnd(20)} ${setting.env.padEnd(28)} ${setting.help}${fallback}`;
  });
  return ['compofa-serve [flags]   (each flag may instead come from its variable)', ...lines].join(
    '\n',
  );
}

/** Reads and validates the settings; throws {@link ConfigError} naming the first bad one. */
export function parseConfig(
  args: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): ServingConfig {
  let flags: Record<string, string | boolean | undefined>;
  try {
    flags = parseArgs({
      args: [...args],
      strict: true,
      allowPositionals: false,
      options: Object.fromEntries(
        Object.entries(SETTINGS).map(([flag, setting]: [string, Setting]) => [
          flag,
          { type: setting.boolean ? 'boolean' : 'string' },
        ]),
      ),
    }).values;
  } catch (error) {
    throw new ConfigError(`${(error as Error).message}\n${usage()}`);
  }
  const raw = (name: Name): string | undefined => {
    const flag = flags[name];
    if (flag !== undefined) return String(flag);
    const setting: Setting = SETTINGS[name];
    return env[setting.env] ?? setting.default;
  };
  const where = (name: Name): string => `--${name} (${SETTINGS[name].env})`;
  const text = (name: Name): string => raw(name) ?? '';
  const integer = (name: Name, min: number, max: number): number => {
    const value = text(name);
    const parsed = /^\d+$/.test(value) ? Number(value) : NaN;
    if (!(parsed >= min && parsed <= max)) {
      throw new ConfigError(
        `${where(name)} must be an integer in [${min}, ${max}], got '${value}'`,
      );
    }
    return parsed;
  };
  const positive = (name: Name): number | undefined => {
    const value = raw(name);
    if (value === undefined || value === '') return undefined;
    const parsed = Number(value);
    if (!(Number.isFinite(parsed) && parsed > 0)) {
      throw new ConfigError(`${where(name)} must be a number > 0, got '${value}'`);
    }
    return parsed;
  };
  const ratio = (name: Name): number => {
    const value = text(name);
    const parsed = value === '' ? NaN : Number(value);
    if (!(parsed >= 0 && parsed <= 10)) {
      throw new ConfigError(`${where(name)} must be a number in [0, 10], got '${value}'`);
    }
    return parsed;
  };
  const boolean = (name: Name): boolean => {
    const value = text(name).toLowerCase();
    if (['', 'false', '0', 'no'].includes(value)) return false;
    if (['true', '1', 'yes'].includes(value)) return true;
    throw new ConfigError(`${where(name)} must be true or false, got '${value}'`);
  };

  const modelDir = text('model-dir');
  if (modelDir === '') throw new ConfigError(`${where('model-dir')} is required\n${usage()}`);
  const modelName = text('model-name');
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/.test(modelName)) {
    throw new ConfigError(
      `${where('model-name')} must be letters, digits, '.', '_' or '-', got '${modelName}'`,
    );
  }
  const modelVersion = text('model-version');
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(modelVersion)) {
    throw new ConfigError(
      `${where('model-version')} must be letters, digits, '.', '_' or '-', got '${modelVersion}'`,
    );
  }
  const logLevel = text('log-level') as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new ConfigError(`${where('log-level')} must be one of ${LOG_LEVELS.join(', ')}`);
  }
  const latencyStatistic = text('latency-statistic') as LatencyStatistic;
  if (!Object.hasOwn(STATISTIC_QUANTILES, latencyStatistic)) {
    throw new ConfigError(
      `${where('latency-statistic')} must be one of ${Object.keys(STATISTIC_QUANTILES).join(', ')}, got '${latencyStatistic}'`,
    );
  }
  const engine = text('engine') as EngineName;
  if (!ENGINES.includes(engine)) {
    throw new ConfigError(
      `${where('engine')} must be one of ${ENGINES.join(', ')}, got '${engine}'`,
    );
  }
  const maxRequestBatch = integer('max-request-batch', 1, 4096);
  return {
    modelDir,
    engine,
    modelName,
    modelVersion,
    host: text('host'),
    port: integer('port', 0, 65535),
    target: text('target'),
    latencyBudgetMs: positive('latency-budget-ms'),
    latencyTolerance: ratio('latency-tolerance'),
    latencyStatistic,
    maxRequestBatch,
    batching: boolean('batching')
      ? {
          maxBatchSize: integer('batch-max-size', 1, 4096),
          maxQueueDelayMs: integer('batch-max-delay-ms', 0, 10_000),
        }
      : undefined,
    maxQueuedRows: Math.max(integer('max-queued-rows', 1, 1_000_000), maxRequestBatch),
    maxBodyBytes: integer('max-body-bytes', 1024, 1024 * 1024 * 1024),
    shutdownDelayMs: integer('shutdown-delay-ms', 0, 600_000),
    drainTimeoutMs: integer('drain-timeout-ms', 0, 3_600_000),
    logLevel,
    threads: raw('threads') === undefined ? undefined : integer('threads', 1, 256),
  };
}
