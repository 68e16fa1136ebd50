/**
 * The versioned JSON formats of the accuracy table (what each subnet of a trained supernet
 * scores) and the latency table (how long each subnet takes on one kind of hardware), with what
 * was measured, on what, when and with which settings. Validated on read: a bad file stops with
 * an error naming the file, the field and the expectation. Written atomically.
 */
import { randomBytes } from 'node:crypto';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';

import { architectureKey } from './architecture.js';
import { SubnetSpecError, type DesignSpace, type DesignSpaceKind } from './design-space.js';
import { ENGINES, type EngineFacts, type EngineName } from './engines.js';
import type { SubnetMeasurement } from './selection.js';

/** The API version of both table formats. */
export const TABLE_API_VERSION = 'compofa.io/v1alpha1';

/** Which supernet a table belongs to. */
export interface TableSubject {
  readonly designSpace: DesignSpaceKind;
  /** {@link architectureKey} of the supernet's architecture. */
  readonly architectureKey: string;
}

/** One subnet's accuracy on the evaluation split. */
export interface AccuracyRow {
  readonly subnet: string;
  /** Top-1 accuracy in [0, 1]. */
  readonly accuracy: number;
  readonly loss?: number;
}

/** Accuracy of subnets of one trained supernet. */
export interface AccuracyTable {
  readonly apiVersion: typeof TABLE_API_VERSION;
  readonly kind: 'AccuracyTable';
  readonly subject: TableSubject;
  /** ISO 8601. */
  readonly measuredAt: string;
  readonly dataset: { readonly name: string; readonly split: string; readonly samples: number };
  /** How it was measured: checkpoint, BN re-calibration samples, batch size, seed... */
  readonly settings: Readonly<Record<string, string | number | boolean>>;
  /** `measured` for every subnet evaluated; `predicted` for rows from an accuracy predictor. */
  readonly method: 'measured' | 'predicted';
  readonly rows: readonly AccuracyRow[];
}

/** One subnet's latency statistics. */
export interface LatencyRow {
  readonly subnet: string;
  readonly medianMs: number;
  readonly p95Ms: number;
}

/** The hardware and software a latency table was measured on. */
export interface LatencyDevice {
  readonly nodeName?: string;
  /** e.g. the node's device-class labels. */
  readonly labels?: Readonly<Record<string, string>>;
  readonly cpuModel: string;
  readonly gpuModel?: string;
  readonly threads: number;
  readonly backend: string;
  readonly tensorflowVersion?: string;
  /**
   * Whether TensorFlow ran its oneDNN CPU kernels; serving must run with the same setting for the
   * table to describe it. Absent in tables written before it was recorded.
   */
  readonly oneDnn?: boolean;
  /**
   * The engine that ran the model (compofa/engines.ts) and its version. Absent in tables written
   * before engines were recorded, all of which were measured with tfjs.
   */
  readonly engine?: EngineName;
  readonly engineVersion?: string;
}

/** Latency of subnets on one device class at one batch size. */
export interface LatencyTable {
  readonly apiVersion: typeof TABLE_API_VERSION;
  readonly kind: 'LatencyTable';
  readonly subject: TableSubject;
  readonly measuredAt: string;
  readonly device: LatencyDevice;
  readonly batchSize: number;
  readonly method: 'exhaustive' | 'lookup-table';
  readonly settings: { readonly warmupRuns: number; readonly timedRuns: number };
  readonly rows: readonly LatencyRow[];
}

/** A table file that is not what it should be; names the file, field and expectation. */
export class TableFormatError extends Error {
  override readonly name = 'TableFormatError';
}

/** Walks an untrusted JSON value, failing with the path of the first bad field. */
class Reader {
  constructor(
    private readonly source: string,
    readonly value: unknown,
    private readonly path: string,
  ) {}

  fail(expectation: string): never {
    const got = this.value === undefined ? 'nothing' : JSON.stringify(this.value).slice(0, 60);
    throw new TableFormatError(
      `${this.source}: ${this.path || 'the table'} must be ${expectation}, got ${got}`,
    );
  }

  field(name: string): Reader {
    return new Reader(this.source, this.object()[name], this.path ? `${this.path}.${name}` : name);
  }

  optional(name: string): Reader | undefined {
    const child = this.field(name);
    return child.value === undefined ? undefined : child;
  }

  string(): string {
    if (typeof this.value !== 'string' || this.value.length === 0) this.fail('a non-empty string');
    return this.value;
  }

  boolean(): boolean {
    if (typeof this.value !== 'boolean') this.fail('true or false');
    return this.value;
  }

  oneOf<T extends string>(values: readonly T[]): T {
    if (!values.includes(this.value as T)) this.fail(`one of ${values.join(', ')}`);
    return this.value as T;
  }

  number(min: number, max = Infinity, { exclusiveMin = false, integer = false } = {}): number {
    const value = this.value;
    const ok =
      typeof value === 'number' &&
      Number.isFinite(value) &&
      (exclusiveMin ? value > min : value >= min) &&
      value <= max &&
      (!integer || Number.isInteger(value));
    if (!ok) {
      const range =
        max === Infinity
          ? `${exclusiveMin ? '>' : '>='} ${min}`
          : `in ${exclusiveMin ? '(' : '['}${min}, ${max}]`;
      this.fail(`${integer ? 'an integer' : 'a number'} ${range}`);
    }
    return value;
  }

  timestamp(): string {
    const value = this.string();
    if (Number.isNaN(Date.parse(value))) this.fail('an ISO 8601 time');
    return value;
  }

  items(): Reader[] {
    if (!Array.isArray(this.value)) this.fail('an array');
    return this.value.map((item, index) => new Reader(this.source, item, `${this.path}[${index}]`));
  }

  /** An object whose values are strings, numbers or booleans (settings). */
  scalars(): Record<string, string | number | boolean> {
    const record = this.object();
    for (const key of Object.keys(record)) {
      const type = typeof record[key];
      if (type !== 'string' && type !== 'number' && type !== 'boolean')
        this.field(key).fail('a string, number or boolean');
    }
    return record as Record<string, string | number | boolean>;
  }

  /** An object whose values are non-empty strings (labels). */
  stringMap(): Record<string, string> {
    const record = this.object();
    for (const key of Object.keys(record)) this.field(key).string();
    return record as Record<string, string>;
  }

  private object(): Record<string, unknown> {
    if (this.value === null || typeof this.value !== 'object' || Array.isArray(this.value))
      this.fail('an object');
    return this.value as Record<string, unknown>;
  }
}

function readHeader(root: Reader, kind: string): void {
  root.field('apiVersion').oneOf([TABLE_API_VERSION]);
  root.field('kind').oneOf([kind]);
}

function readSubject(root: Reader, space: DesignSpace | undefined): TableSubject {
  const subject = root.field('subject');
  const designSpace = subject.field('designSpace').oneOf<DesignSpaceKind>(['compound', 'elastic']);
  const key = subject.field('architectureKey');
  const value = key.string();
  if (space) {
    const expected = architectureKey(space.architecture);
    if (value !== expected)
      key.fail(
        `${expected}, the key of this supernet's architecture (the table was measured for another one)`,
      );
  }
  return { designSpace, architectureKey: value };
}

/** Reads rows, checking each subnet id against `space` and refusing duplicates. */
function readRows<T extends { subnet: string }>(
  root: Reader,
  space: DesignSpace | undefined,
  readRow: (row: Reader) => T,
): T[] {
  const seen = new Set<string>();
  const rows = root.field('rows').items();
  if (rows.length === 0) root.field('rows').fail('a non-empty array');
  return rows.map((row) => {
    const subnetField = row.field('subnet');
    const subnet = subnetField.string();
    if (space) {
      try {
        space.parse(subnet);
      } catch (error) {
        if (error instanceof SubnetSpecError)
          subnetField.fail(`a subnet of the ${space.kind} space (${error.message})`);
        throw error;
      }
    }
    if (seen.has(subnet)) subnetField.fail('unique; this subnet appears twice');
    seen.add(subnet);
    return readRow(row);
  });
}

/**
 * Validates `json` as an accuracy table. With `space`, every subnet id must belong to it and the
 * architecture key must match. `source` (a file name) starts every error message.
 */
export function parseAccuracyTable(
  json: unknown,
  source: string,
  space?: DesignSpace,
): AccuracyTable {
  const root = new Reader(source, json, '');
  readHeader(root, 'AccuracyTable');
  const dataset = root.field('dataset');
  return {
    apiVersion: TABLE_API_VERSION,
    kind: 'AccuracyTable',
    subject: readSubject(root, space),
    measuredAt: root.field('measuredAt').timestamp(),
    dataset: {
      name: dataset.field('name').string(),
      split: dataset.field('split').string(),
      samples: dataset.field('samples').number(1, Infinity, { integer: true }),
    },
    settings: root.field('settings').scalars(),
    method: root.field('method').oneOf(['measured', 'predicted']),
    rows: readRows(root, space, (row) => {
      const loss = row.optional('loss')?.number(0);
      return {
        subnet: row.field('subnet').string(),
        accuracy: row.field('accuracy').number(0, 1),
        ...(loss === undefined ? {} : { loss }),
      };
    }),
  };
}

/**
 * The engine a latency table was measured with: tfjs with TensorFlow's version for tables
 * written before engines were recorded.
 */
export function tableEngine(table: LatencyTable): EngineFacts {
  const { engine, engineVersion, tensorflowVersion } = table.device;
  return engine === undefined
    ? { name: 'tfjs', version: tensorflowVersion ?? 'unknown' }
    : { name: engine, version: engineVersion ?? 'unknown' };
}

/** Validates `json` as a latency table; see {@link parseAccuracyTable}. */
export function parseLatencyTable(
  json: unknown,
  source: string,
  space?: DesignSpace,
): LatencyTable {
  const root = new Reader(source, json, '');
  readHeader(root, 'LatencyTable');
  const device = root.field('device');
  const settings = root.field('settings');
  const optionalString = (name: string): Partial<Record<string, string>> => {
    const value = device.optional(name)?.string();
    return value === undefined ? {} : { [name]: value };
  };
  const labels = device.optional('labels')?.stringMap();
  const oneDnn = device.optional('oneDnn')?.boolean();
  const engine = device.optional('engine')?.oneOf(ENGINES);
  // A table is true of one version of its engine: the two go together.
  const engineVersion =
    engine === undefined
      ? device.optional('engineVersion')?.string()
      : device.field('engineVersion').string();
  return {
    apiVersion: TABLE_API_VERSION,
    kind: 'LatencyTable',
    subject: readSubject(root, space),
    measuredAt: root.field('measuredAt').timestamp(),
    device: {
      ...optionalString('nodeName'),
      ...(labels ? { labels } : {}),
      cpuModel: device.field('cpuModel').string(),
      ...optionalString('gpuModel'),
      threads: device.field('threads').number(1, Infinity, { integer: true }),
      backend: device.field('backend').string(),
      ...optionalString('tensorflowVersion'),
      ...(oneDnn === undefined ? {} : { oneDnn }),
      ...(engine === undefined ? {} : { engine }),
      ...(engineVersion === undefined ? {} : { engineVersion }),
    },
    batchSize: root.field('batchSize').number(1, Infinity, { integer: true }),
    method: root.field('method').oneOf(['exhaustive', 'lookup-table']),
    settings: {
      warmupRuns: settings.field('warmupRuns').number(0, Infinity, { integer: true }),
      timedRuns: settings.field('timedRuns').number(1, Infinity, { integer: true }),
    },
    rows: readRows(root, space, (row) => {
      const medianMs = row.field('medianMs').number(0, Infinity, { exclusiveMin: true });
      const p95 = row.field('p95Ms');
      const p95Ms = p95.number(0, Infinity, { exclusiveMin: true });
      if (p95Ms < medianMs) p95.fail(`at least medianMs (${medianMs})`);
      return { subnet: row.field('subnet').string(), medianMs, p95Ms };
    }),
  };
}

/** Which latency statistic a budget is compared with. */
export type LatencyStatistic = 'median' | 'p95';

/** The quantile of each statistic, as Prometheus' histogram_quantile takes it. */
export const STATISTIC_QUANTILES: Readonly<Record<LatencyStatistic, number>> = {
  median: 0.5,
  p95: 0.95,
};

/**
 * The subnets present in both tables, as selection input. The tables must describe the same
 * supernet architecture; subnets missing from either table are listed, not silently dropped.
 */
export function joinTables(
  accuracy: AccuracyTable,
  latency: LatencyTable,
  statistic: LatencyStatistic = 'p95',
): { measurements: SubnetMeasurement[]; missingLatency: string[]; missingAccuracy: string[] } {
  if (accuracy.subject.architectureKey !== latency.subject.architectureKey) {
    throw new TableFormatError(
      `the accuracy table (architecture ${accuracy.subject.architectureKey}) and the latency table (architecture ${latency.subject.architectureKey}) describe different supernets`,
    );
  }
  const latencies = new Map(
    latency.rows.map((row) => [row.subnet, statistic === 'p95' ? row.p95Ms : row.medianMs]),
  );
  const measurements: SubnetMeasurement[] = [];
  const missingLatency: string[] = [];
  for (const row of accuracy.rows) {
    const latencyMs = latencies.get(row.subnet);
    if (latencyMs === undefined) missingLatency.push(row.subnet);
    else measurements.push({ id: row.subnet, accuracy: row.accuracy, latencyMs });
  }
  const accurate = new Set(accuracy.rows.map((row) => row.subnet));
  const missingAccuracy = latency.rows
    .filter((row) => !accurate.has(row.subnet))
    .map((row) => row.subnet);
  return { measurements, missingLatency, missingAccuracy };
}

async function readJsonFile(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new TableFormatError(
      `${path}: cannot be read (${(error as NodeJS.ErrnoException).code ?? String(error)})`,
    );
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new TableFormatError(`${path}: is not valid JSON (${(error as Error).message})`);
  }
}

/** Reads and validates an accuracy table file. */
export async function readAccuracyTable(path: string, space?: DesignSpace): Promise<AccuracyTable> {
  return parseAccuracyTable(await readJsonFile(path), path, space);
}

/** Reads and validates a latency table file. */
export async function readLatencyTable(path: string, space?: DesignSpace): Promise<LatencyTable> {
  return parseLatencyTable(await readJsonFile(path), path, space);
}

/** The JSON text of a table, as files and report ConfigMaps hold it. */
export function formatTable(table: AccuracyTable | LatencyTable): string {
  return `${JSON.stringify(table, null, 2)}\n`;
}

/** Writes a table as JSON through a temporary file and a rename, so readers never see half a file. */
export async function writeTable(path: string, table: AccuracyTable | LatencyTable): Promise<void> {
  const temporary = `${path}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await writeFile(temporary, formatTable(table));
    await rename(temporary, path);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
}
