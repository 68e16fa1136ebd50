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

/** The most accurate subnet within budget, by exhaustive scan (243 rows per resolution for compound). */
export function selectSubnet(
  measurements: readonly SubnetMeasurement[],
  policy: SelectionPolicy,
): SelectionResult {
  validatePolicy(policy);
  if (measurements.length === 0) {
    return {
      ok: false,
      reason: 'NoMeasurements',
      message: 'there are no subnets with both an accuracy and a latency to choose from',
    };
  }
  let best: SubnetMeasurement | undefined;
  let fastest: SubnetMeasurement | undefined;
  let feasible = 0;
  for (const candidate of measurements) {
    if (
      !fastest ||
      candidate.latencyMs < fastest.latencyMs ||
      (candidate.latencyMs === fastest.latencyMs && compareForSelection(candidate, fastest) < 0)
    ) {
      fastest = candidate;
    }
    if (candidate.latencyMs > policy.latencyBudgetMs) continue;
    feasible += 1;
    if (!best || compareForSelection(candidate, best) < 0) best = candidate;
  }
  if (!best) {
    const closest = fastest as SubnetMeasurement;
    return {
      ok: false,
      reason: 'NothingFitsBudget',
      fastest: closest,
      message: `no subnet meets the ${ms(policy.latencyBudgetMs)} budget; the fastest, ${closest.id}, takes ${ms(closest.latencyMs)} (accuracy ${percent(closest.accuracy)})`,
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
  return {
    ok: true,
    reason: 'Selected',
    selected: best,
    feasible,
    message: `${best.id}: accuracy ${percent(best.accuracy)} at ${ms(best.latencyMs)} within ${ms(policy.latencyBudgetMs)} (${feasible} of ${measurements.length} subnets fit)`,
  };
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
