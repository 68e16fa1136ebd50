/**
 * Choosing a subnet for a deployment target: the most accurate subnet whose measured latency is
 * within the budget, optionally above an accuracy floor. Written as a chain of small decisions
 * that each return (ok, reason, message), in the manner of cert-manager's policy chains, so every
 * outcome has a stable reason for status conditions.
 */

/** One subnet's accuracy and its latency on the target hardware. */
export interface SubnetMeasurement {
  readonly id: string;
  readonly accuracy: number;
  readonly latencyMs: number;
}

/** What a target asks for. */
export interface SelectionPolicy {
  readonly latencyBudgetMs: number;
  /** Reject the selection when even the best subnet within budget is less accurate. */
  readonly accuracyFloor?: number;
}

/** Stable reasons, used as condition reasons by the operator. */
export type SelectionReason =
  'Selected' | 'NoMeasurements' | 'NothingFitsBudget' | 'BelowAccuracyFloor';

/** The outcome of {@link selectSubnet}. */
export type SelectionResult =
  | {
      readonly ok: true;
      readonly reason: 'Selected';
      readonly message: string;
      readonly selected: SubnetMeasurement;
      readonly feasible: number;
    }
  | { readonly ok: false; readonly reason: 'NoMeasurements'; readonly message: string }
  | {
      readonly ok: false;
      readonly reason: 'NothingFitsBudget';
      readonly message: string;
      readonly fastest: SubnetMeasurement;
    }
  | {
      readonly ok: false;
      readonly reason: 'BelowAccuracyFloor';
      readonly message: string;
      readonly best: SubnetMeasurement;
    };

/**
 * Orders measurements best-first: higher accuracy, then lower latency, then id, so that equal
 * inputs always give the same selection.
 */
export function compareForSelection(a: SubnetMeasurement, b: SubnetMeasurement): number {
  return (
    b.accuracy - a.accuracy || a.latencyMs - b.latencyMs || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
  );
}

const ms = (value: number): string => `${Number(value.toPrecision(4))} ms`;
const percent = (value: number): string => `${(value * 100).toFixed(2)}%`;

/** Checks `policy` itself; throws a RangeError naming the field. */
export function validatePolicy(policy: SelectionPolicy): void {
  if (!(policy.latencyBudgetMs > 0) || !Number.isFinite(policy.latencyBudgetMs)) {
    throw new RangeError(
      `latencyBudgetMs must be a positive number, got ${policy.latencyBudgetMs}`,
    );
  }
  if (
    policy.accuracyFloor !== undefined &&
    !(policy.accuracyFloor >= 0 && policy.accuracyFloor <= 1)
  ) {
    throw new RangeError(`accuracyFloor must be in [0, 1], got ${policy.accuracyFloor}`);
  }
}

/** The most accurate subnet within budget; see {@link SubnetSelector} to answer many budgets. */
export function selectSubnet(
  measurements: readonly SubnetMeasurement[],
  policy: SelectionPolicy,
): SelectionResult {
  return new SubnetSelector(measurements).select(policy);
}

/**
 * Selection over one table for any number of budgets (a fleet of targets on one device class).
 * Every row is considered once, when the selector is made: the most accurate subnet within any
 * budget lies on the Pareto front, so each budget is then a binary search on the front.
 */
export class SubnetSelector {
  private readonly front: readonly SubnetMeasurement[];
  private readonly frontLatencies: Float64Array;
  private readonly latencies: Float64Array;
  private readonly fastest: SubnetMeasurement | undefined;

  constructor(measurements: readonly SubnetMeasurement[]) {
    this.front = paretoFront(measurements);
    this.frontLatencies = Float64Array.from(this.front, (m) => m.latencyMs);
    this.latencies = Float64Array.from(measurements, (m) => m.latencyMs).sort();
    this.fastest = this.front[0];
  }

  select(policy: SelectionPolicy): SelectionResult {
    validatePolicy(policy);
    const fastest = this.fastest;
    if (!fastest) {
      return {
        ok: false,
        reason: 'NoMeasurements',
        message: 'there are no subnets with both an accuracy and a latency to choose from',
      };
    }
    const best =
      this.front[
        lastAtMost(
          this.front.map((m) => m.latencyMs),
          policy.latencyBudgetMs,
        )
      ];
    if (!best) {
      return {
        ok: false,
        reason: 'NothingFitsBudget',
        fastest,
        message: `no subnet meets the ${ms(policy.latencyBudgetMs)} budget; the fastest, ${fastest.id}, takes ${ms(fastest.latencyMs)} (accuracy ${percent(fastest.accuracy)})`,
      };
    }
    if (policy.accuracyFloor !== undefined && best.accuracy < policy.accuracyFloor) {
      return {
        ok: false,
        reason: 'BelowAccuracyFloor',
        best,
        message: `the most accurate subnet within ${ms(policy.latencyBudgetMs)}, ${best.id}, reaches ${percent(best.accuracy)}, below the floor of ${percent(policy.accuracyFloor)}`,
      };
    }
    const feasible = lastAtMost(this.latencies, policy.latencyBudgetMs) + 1;
    return {
      ok: true,
      reason: 'Selected',
      selected: best,
      feasible,
      message: `${best.id}: accuracy ${percent(best.accuracy)} at ${ms(best.latencyMs)} within ${ms(policy.latencyBudgetMs)} (${feasible} of ${this.latencies.length} subnets fit)`,
    };
  }
}

/** The index of the last value <= `limit` in ascending `values`, or -1. */
function lastAtMost(values: ArrayLike<number>, limit: number): number {
  let low = 0;
  let high = values.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if ((values[middle] ?? Infinity) <= limit) low = middle + 1;
    else high = middle;
  }
  return low - 1;
}

/**
 * The Pareto front of (latency, accuracy): the subnets that no other subnet beats on both, sorted
 * by latency ascending (and so accuracy ascending). The most accurate subnet within any budget is
 * always on it.
 */
export function paretoFront(measurements: readonly SubnetMeasurement[]): SubnetMeasurement[] {
  const byLatency = [...measurements].sort(
    (a, b) => a.latencyMs - b.latencyMs || compareForSelection(a, b),
  );
  const front: SubnetMeasurement[] = [];
  for (const candidate of byLatency) {
    const last = front.at(-1);
    if (!last || candidate.accuracy > last.accuracy) front.push(candidate);
  }
  return front;
}
