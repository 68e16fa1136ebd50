import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import type { DeploymentTarget } from '../../api/index.js';
import type { ServedLatencyAssessment } from '../../monitoring/served-latency.js';
import { latencyScale, nextLatencyCorrection } from './drift.js';

type Target = Pick<DeploymentTarget, 'spec' | 'status'>;

function target(
  action: 'alert' | 'reselect',
  status: DeploymentTarget['status'] = { expectedLatencyMs: 20 },
): Target {
  return {
    spec: {
      supernetRef: { name: 'fmnist' },
      device: { nodeSelector: { 'kubernetes.io/arch': 'arm64' } },
      latencyBudgetMs: 20,
      drift: { action },
    },
    status,
  };
}

function assessment(
  measured: number | undefined,
  status: 'True' | 'False' | 'Unknown',
): ServedLatencyAssessment {
  return {
    measuredLatencyMs: measured,
    measuredAt: measured === undefined ? undefined : '2026-11-28T08:00:00.000Z',
    condition: {
      type: 'WithinBudget',
      status,
      reason:
        status === 'True'
          ? 'WithinBudget'
          : status === 'False'
            ? 'LatencyAboveBudget'
            : 'NoTraffic',
      message: '',
    },
  };
}

describe('latency correction', () => {
  it('records served / profiled when a reselecting target drifts', () => {
    assert.deepEqual(nextLatencyCorrection(target('reselect'), 'r28-a', assessment(50, 'False')), {
      factor: 2.5,
      subnet: 'r28-a',
      measuredLatencyMs: 50,
      expectedLatencyMs: 20,
      measuredAt: '2026-11-28T08:00:00.000Z',
    });
  });

  it('only alerts without reselect, and changes nothing within budget or without traffic', () => {
    assert.equal(
      nextLatencyCorrection(target('alert'), 'r28-a', assessment(50, 'False')),
      undefined,
    );
    assert.equal(latencyScale(target('alert', { latencyCorrection: kept() })), 1);
    const status = { expectedLatencyMs: 20, latencyCorrection: kept() };
    for (const reading of [assessment(21, 'True'), assessment(undefined, 'Unknown')])
      assert.equal(
        nextLatencyCorrection(target('reselect', status), 'r28-a', reading),
        status.latencyCorrection,
      );
  });

  it('compounds with the correction in force, and never shrinks', () => {
    // Selected under x2, the status expects 2 x 10 ms; serving at 30 ms means x3.
    const status = { expectedLatencyMs: 20, latencyCorrection: kept() };
    assert.equal(latencyScale(target('reselect', status)), 2);
    const grown = nextLatencyCorrection(
      target('reselect', status),
      'r28-b',
      assessment(30, 'False'),
    );
    assert.equal(grown?.factor, 3);
    assert.equal(grown.expectedLatencyMs, 10);
    // A drift that implies less than x2 (a noisy reading) keeps x2.
    assert.equal(
      nextLatencyCorrection(target('reselect', status), 'r28-b', assessment(15, 'False')),
      status.latencyCorrection,
    );
  });
});

function kept() {
  return { factor: 2, subnet: 'r28-a', measuredLatencyMs: 40, expectedLatencyMs: 20 };
}
