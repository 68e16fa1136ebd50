/**
 * A DeploymentTarget's served latency as Prometheus sees it, and the WithinBudget condition that
 * follows from it. The serving pods export `compofa_inference_duration_seconds` (labels model,
 * target, subnet; serving/metrics.ts); scraping through the chart's PodMonitor adds `namespace`
 * (and pod, container, endpoint, job, instance), so a target's pods are selected by
 * `{namespace, target}` and summed before the quantile, exactly as the chart's drift alert does.
 */
import { STATISTIC_QUANTILES, type LatencyStatistic } from '../../compofa/tables.js';
import type { ConditionUpdate, PolicyCheck, PolicyResult } from '../runtime/conditions.js';
import { evaluatePolicies } from '../runtime/conditions.js';
import { PrometheusError, type PrometheusClient } from './prometheus.js';

/** The histogram the serving pods export (serving/metrics.ts). */
export const INFERENCE_HISTOGRAM = 'compofa_inference_duration_seconds';

/** A Prometheus duration as the CRD's `spec.drift.window` accepts it (e.g. 30s, 10m, 1h30m). */
const DURATION_PATTERN = /^([0-9]+(ms|s|m|h|d|w|y))+$/;

/** Which served latency to read: one DeploymentTarget's pods, one statistic, one window. */
export interface ServedLatencyTarget {
  readonly namespace: string;
  /** The DeploymentTarget's name, the pods' `target` label. */
  readonly name: string;
  readonly statistic: LatencyStatistic;
  /** `spec.drift.window`, a Prometheus duration. */
  readonly window: string;
  /**
   * Only the pods serving this subnet (their `subnet` label): after a rollout the window still
   * holds the previous subnet's requests, which say nothing about the new one.
   */
  readonly subnet?: string;
}

/**
 * `value` as the inside of a PromQL double-quoted string: backslash and double quote escaped, and
 * line breaks and tabs written as escapes, since a raw newline ends a PromQL string with an error.
 */
export function escapeLabelValue(value: string): string {
  return value.replace(/[\\"\n\r\t]/g, (char) => ESCAPES[char] ?? char);
}

const ESCAPES: Readonly<Record<string, string>> = {
  '\\': '\\\\',
  '"': '\\"',
  '\n': '\\n',
  '\r': '\\r',
  '\t': '\\t',
};

/**
 * The PromQL of a target's served latency in seconds: the statistic's quantile of the histogram
 * summed over the target's pods (old and new during a rollout), over the window. Throws a
 * RangeError for an empty namespace or name (`=""` would match series without the label) and for a
 * window that is not a Prometheus duration (it is not quoted in the query).
 */
export function servedLatencyQuery(target: ServedLatencyTarget): string {
  if (target.namespace === '' || target.name === '')
    throw new RangeError('expected a non-empty namespace and target name');
  if (!DURATION_PATTERN.test(target.window))
    throw new RangeError(
      `expected the window to be a Prometheus duration such as 30s, 10m or 1h30m, got ${JSON.stringify(target.window)}`,
    );
  const quantile = STATISTIC_QUANTILES[target.statistic];
  const labels = { namespace: target.namespace, target: target.name, subnet: target.subnet };
  const selector = Object.entries(labels)
    .filter((entry): entry is [string, string] => entry[1] !== undefined)
    .map(([label, value]) => `${label}="${escapeLabelValue(value)}"`)
    .join(',');
  return `histogram_quantile(${quantile}, sum by (le) (rate(${INFERENCE_HISTOGRAM}_bucket{${selector}}[${target.window}])))`;
}

/** One reading of a target's served latency. */
export interface ServedLatencyReading {
  /** Milliseconds; undefined when no request was served in the window (no series, or NaN). */
  readonly measuredMs: number | undefined;
  /** When Prometheus evaluated the query (or when it was asked, if it returned nothing). */
  readonly at: Date;
  readonly query: string;
}

/**
 * Reads the target's served latency at `time` (default: Prometheus' now). Rejects with a
 * {@link PrometheusError} when Prometheus cannot answer or answers more than one series.
 */
export async function readServedLatency(
  client: PrometheusClient,
  target: ServedLatencyTarget,
  time?: Date,
): Promise<ServedLatencyReading> {
  const query = servedLatencyQuery(target);
  const asked = time ?? new Date();
  const samples = await client.queryVector(query, time);
  if (samples.length > 1)
    throw new PrometheusError(
      client.url,
      'bad_data',
      `expected at most one series from ${query}, got ${samples.length}`,
    );
  const sample = samples[0];
  if (!sample) return { measuredMs: undefined, at: asked, query };
  const at = new Date(sample.timestamp * 1000);
  // histogram_quantile gives NaN when every bucket's rate is 0: the series exist, the requests don't.
  return { measuredMs: Number.isNaN(sample.value) ? undefined : sample.value * 1000, at, query };
}

/** The WithinBudget condition's reasons. */
export type WithinBudgetReason =
  'WithinBudget' | 'LatencyAboveBudget' | 'NoTraffic' | 'MetricsUnavailable';

/** The condition type. */
export const WITHIN_BUDGET = 'WithinBudget';

/** The WithinBudget condition, ready for setCondition (operator/runtime/conditions.ts). */
export interface WithinBudgetCondition extends ConditionUpdate {
  readonly type: typeof WITHIN_BUDGET;
  readonly status: 'True' | 'False' | 'Unknown';
  readonly reason: WithinBudgetReason;
}

/** What a measurement was, for messages: `p95` over `10m`. */
export interface MeasurementContext {
  readonly statistic: LatencyStatistic;
  readonly window: string;
}

interface BudgetInput {
  readonly measuredMs: number | undefined;
  readonly budgetMs: number;
  readonly tolerance: number;
  readonly context: MeasurementContext | undefined;
}

const hasTraffic: PolicyCheck<BudgetInput> = ({ measuredMs, context }) =>
  measuredMs === undefined || Number.isNaN(measuredMs)
    ? {
        ok: false,
        reason: 'NoTraffic',
        message: context
          ? `no requests were served over ${context.window}, so the ${context.statistic} latency is unknown`
          : 'no requests were served, so the latency is unknown',
      }
    : undefined;

const fitsBudget: PolicyCheck<BudgetInput> = (input) =>
  (input.measuredMs ?? 0) > input.budgetMs * (1 + input.tolerance)
    ? { ok: false, reason: 'LatencyAboveBudget', message: comparison(input, 'is above') }
    : undefined;

/**
 * Whether the served latency fits `budgetMs x (1 + tolerance)`, as the chart's drift alert
 * compares (equal still fits): True (WithinBudget), False (LatencyAboveBudget), or Unknown
 * (NoTraffic) when `measuredMs` is undefined or NaN. `tolerance` is a fraction (0.1 is 10%);
 * `context` names the statistic and window in the message, e.g. "p95 12.3 ms over 10m is above the
 * budget 10 ms x 1.1 (11 ms)". Throws a RangeError for a budget that is not positive, a negative
 * tolerance or a negative measurement.
 */
export function withinBudget(
  measuredMs: number | undefined,
  budgetMs: number,
  tolerance: number,
  context?: MeasurementContext,
): WithinBudgetCondition {
  checkArguments(measuredMs, budgetMs, tolerance);
  const input: BudgetInput = { measuredMs, budgetMs, tolerance, context };
  const passed: PolicyResult = {
    ok: true,
    reason: 'WithinBudget',
    message: comparison(input, 'is within'),
  };
  const result = evaluatePolicies([hasTraffic, fitsBudget], input, passed);
  return condition(result.reason as WithinBudgetReason, result.message);
}

/**
 * The condition when the latency cannot be read: Unknown (MetricsUnavailable) with the error,
 * whose message names the Prometheus URL without credentials (see {@link PrometheusError}).
 */
export function metricsUnavailable(error: unknown): WithinBudgetCondition {
  const why = error instanceof Error ? error.message : String(error);
  return condition('MetricsUnavailable', `cannot read the served latency: ${why}`);
}

/** A target's budget, as its spec gives it. */
export interface LatencyBudget {
  readonly budgetMs: number;
  /** `spec.drift.tolerance`, a fraction. */
  readonly tolerance: number;
}

/** What the reconciler writes: status.measuredLatencyMs, status.measuredAt and the condition. */
export interface ServedLatencyAssessment {
  /** Rounded to 0.001 ms; undefined without a measurement. */
  readonly measuredLatencyMs: number | undefined;
  /** RFC 3339; undefined without a measurement. */
  readonly measuredAt: string | undefined;
  readonly condition: WithinBudgetCondition;
}

/**
 * Reads the target's served latency and judges it against its budget. Never rejects for
 * Prometheus' sake: a failed query becomes MetricsUnavailable. Programming errors (a bad window
 * or budget) still throw.
 */
export async function assessServedLatency(
  client: PrometheusClient,
  target: ServedLatencyTarget & LatencyBudget,
  time?: Date,
): Promise<ServedLatencyAssessment> {
  let reading: ServedLatencyReading;
  try {
    reading = await readServedLatency(client, target, time);
  } catch (error) {
    if (!(error instanceof PrometheusError)) throw error;
    return {
      measuredLatencyMs: undefined,
      measuredAt: undefined,
      condition: metricsUnavailable(error),
    };
  }
  const { measuredMs } = reading;
  return {
    measuredLatencyMs: measuredMs === undefined ? undefined : Math.round(measuredMs * 1000) / 1000,
    measuredAt: measuredMs === undefined ? undefined : reading.at.toISOString(),
    condition: withinBudget(measuredMs, target.budgetMs, target.tolerance, target),
  };
}

const STATUS_OF: Readonly<Record<WithinBudgetReason, WithinBudgetCondition['status']>> = {
  WithinBudget: 'True',
  LatencyAboveBudget: 'False',
  NoTraffic: 'Unknown',
  MetricsUnavailable: 'Unknown',
};

function condition(reason: WithinBudgetReason, message: string): WithinBudgetCondition {
  return { type: WITHIN_BUDGET, status: STATUS_OF[reason], reason, message };
}

function checkArguments(measuredMs: number | undefined, budgetMs: number, tolerance: number): void {
  if (!(Number.isFinite(budgetMs) && budgetMs > 0))
    throw new RangeError(`expected a positive, finite latency budget in ms, got ${budgetMs}`);
  if (!(Number.isFinite(tolerance) && tolerance >= 0))
    throw new RangeError(`expected a tolerance >= 0 (a fraction such as 0.1), got ${tolerance}`);
  if (measuredMs !== undefined && measuredMs < 0)
    throw new RangeError(`expected a measured latency >= 0 ms, got ${measuredMs}`);
}

/** "p95 12.3 ms over 10m is above the budget 10 ms x 1.1 (11 ms)". */
function comparison(input: BudgetInput, verb: string): string {
  const { measuredMs = NaN, budgetMs, tolerance, context } = input;
  const what = context
    ? `${context.statistic} ${formatMs(measuredMs)} ms over ${context.window}`
    : `served latency ${formatMs(measuredMs)} ms`;
  const factor = Number((1 + tolerance).toFixed(6));
  return `${what} ${verb} the budget ${formatMs(budgetMs)} ms x ${factor} (${formatMs(budgetMs * factor)} ms)`;
}

/** Three significant digits below 100 ms (0.423, 12.3), whole milliseconds above. */
export function formatMs(ms: number): string {
  if (!Number.isFinite(ms)) return String(ms);
  return ms >= 100 ? String(Math.round(ms)) : String(Number(ms.toPrecision(3)));
}
