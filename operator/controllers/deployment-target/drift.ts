/**
 * What the served latency changes: the WithinBudget condition when nothing reads it, and, with
 * `drift.action: reselect`, the correction that selection applies to the profiled latencies. Pure
 * functions of the spec, the status and one measurement.
 */
import type { DeploymentTarget, DeploymentTargetStatus } from '../../api/index.js';
import type { ServedLatencyAssessment } from '../../monitoring/served-latency.js';

type Correction = NonNullable<DeploymentTargetStatus['latencyCorrection']>;

/** The WithinBudget condition of an operator that reads no Prometheus. */
export const NOT_MONITORED = {
  type: 'WithinBudget',
  status: 'Unknown',
  reason: 'NotMonitored',
  message:
    'the operator reads no Prometheus (--prometheus-url), so the served latency is not in status; the PrometheusRule still alerts',
} as const;

/** The factor selection multiplies the profiled latencies by: 1 unless the target reselects. */
export function latencyScale(target: Pick<DeploymentTarget, 'spec' | 'status'>): number {
  return target.spec.drift?.action === 'reselect'
    ? (target.status?.latencyCorrection?.factor ?? 1)
    : 1;
}

/**
 * The correction after `assessment` of the served `subnet` (whose expected latency in status is
 * already scaled by the current correction): a drift above the budget with `reselect` raises the
 * factor to measured / profiled; anything else keeps what there was. The factor never shrinks, so a
 * faster subnet chosen because of it is not traded back for the one that drifted.
 */
export function nextLatencyCorrection(
  target: Pick<DeploymentTarget, 'spec' | 'status'>,
  subnet: string,
  assessment: ServedLatencyAssessment,
): Correction | undefined {
  const current = target.status?.latencyCorrection;
  const expectedScaled = target.status?.expectedLatencyMs;
  const measured = assessment.measuredLatencyMs;
  if (
    target.spec.drift?.action !== 'reselect' ||
    assessment.condition.status !== 'False' ||
    measured === undefined ||
    expectedScaled === undefined ||
    expectedScaled <= 0
  )
    return current;
  const expected = expectedScaled / latencyScale(target);
  const factor = measured / expected;
  if (factor <= (current?.factor ?? 1)) return current;
  return {
    factor: Math.round(factor * 1000) / 1000,
    subnet,
    measuredLatencyMs: measured,
    expectedLatencyMs: Math.round(expected * 1000) / 1000,
    ...(assessment.measuredAt === undefined ? {} : { measuredAt: assessment.measuredAt }),
  };
}
