import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import type { V1Deployment } from '@kubernetes/client-node';

import type { DeploymentTargetStatus } from '../../api/index.js';
import {
  deployedRevision,
  nextPreviousSelection,
  planRollout,
  rolloutFailure,
  type Revision,
} from './rollout.js';

const A: Revision = { id: 'r28-d2e3-d2e3-d2e3-d2e3-d2e3', supernetGeneration: 1 };
const B: Revision = { id: 'r28-d4e6-d4e6-d4e6-d4e6-d4e6', supernetGeneration: 1 };
const NOW = new Date('2026-11-28T08:00:00Z');

/** A Deployment running `revision`, with its Progressing condition as given. */
function deployment(
  revision: Revision,
  progressing?: { status: string; reason: string },
  generations: { spec: number; observed: number } = { spec: 2, observed: 2 },
): V1Deployment {
  return {
    metadata: { name: 'edge-serving', generation: generations.spec },
    spec: {
      selector: {},
      progressDeadlineSeconds: 30,
      template: {
        metadata: {
          annotations: {
            'compofa.io/subnet': revision.id,
            'compofa.io/supernet-generation': String(revision.supernetGeneration),
          },
        },
      },
    },
    status: {
      observedGeneration: generations.observed,
      conditions: progressing
        ? [
            {
              type: 'Progressing',
              ...progressing,
              message: 'ReplicaSet "edge-serving-1" has timed out progressing.',
            },
          ]
        : [],
    },
  };
}

const stuck = (revision: Revision) =>
  deployment(revision, { status: 'False', reason: 'ProgressDeadlineExceeded' });

/** A status that served A (available) and now selects `selected`. */
function status(extra: Partial<DeploymentTargetStatus> = {}): DeploymentTargetStatus {
  return {
    selectedSubnet: { id: B.id },
    supernetGeneration: 1,
    previousSelection: { id: A.id, supernetGeneration: 1, predictedAccuracy: 0.8 },
    ...extra,
  };
}

describe('deployedRevision', () => {
  it('reads the subnet and generation from the pod template', () => {
    assert.deepEqual(deployedRevision(deployment(A)), A);
  });
  it('is undefined without the annotations or with a bad generation', () => {
    assert.equal(deployedRevision(undefined), undefined);
    const bad = deployment(A);
    const annotations = bad.spec?.template.metadata?.annotations ?? {};
    annotations['compofa.io/supernet-generation'] = 'x';
    assert.equal(deployedRevision(bad), undefined);
  });
});

describe('rolloutFailure', () => {
  it('names the subnet, the deadline and what the Deployment said', () => {
    assert.equal(
      rolloutFailure(stuck(B), B),
      `the pods of ${B.id} did not become ready within 30s (ReplicaSet "edge-serving-1" has timed out progressing.)`,
    );
  });
  it('ignores a Deployment that progresses, runs another revision or has not seen its spec', () => {
    assert.equal(
      rolloutFailure(deployment(B, { status: 'True', reason: 'ReplicaSetUpdated' }), B),
      undefined,
    );
    assert.equal(rolloutFailure(stuck(A), B), undefined);
    assert.equal(
      rolloutFailure(
        deployment(
          B,
          { status: 'False', reason: 'ProgressDeadlineExceeded' },
          { spec: 3, observed: 2 },
        ),
        B,
      ),
      undefined,
    );
    assert.equal(rolloutFailure(undefined, B), undefined);
  });
});

describe('planRollout', () => {
  it('serves the choice while its rollout progresses', () => {
    const plan = planRollout(status(), 4, B, deployment(B), NOW);
    assert.deepEqual(plan, { serve: B, failed: undefined, rolledBack: false });
  });

  it('rolls back to the previous selection when the rollout exceeds its deadline', () => {
    const plan = planRollout(status(), 4, B, stuck(B), NOW, 'pod edge-serving-x cannot pull image');
    assert.deepEqual(plan.serve, A);
    assert.equal(plan.rolledBack, true);
    assert.equal(plan.failed?.id, B.id);
    assert.equal(plan.failed.targetGeneration, 4);
    assert.equal(plan.failed.time, NOW.toISOString());
    assert.match(
      plan.failed.message,
      /did not become ready within 30s.*: pod edge-serving-x cannot pull image$/,
    );
  });

  it('keeps the previous selection serving while the spec and supernet stay the same', () => {
    const failed = { ...B, targetGeneration: 4, message: 'stuck' };
    // The Deployment already runs A again, so it shows no failure of B itself.
    const plan = planRollout(status({ failedRollout: failed }), 4, B, deployment(A), NOW);
    assert.deepEqual(plan, { serve: A, failed, rolledBack: true });
  });

  it('tries the choice again after a spec change or with a new supernet generation', () => {
    const failed = { ...B, targetGeneration: 4, message: 'stuck' };
    assert.deepEqual(planRollout(status({ failedRollout: failed }), 5, B, deployment(A), NOW), {
      serve: B,
      failed: undefined,
      rolledBack: false,
    });
    const retrained = { ...B, supernetGeneration: 2 };
    assert.deepEqual(
      planRollout(status({ failedRollout: failed }), 4, retrained, deployment(A), NOW).serve,
      retrained,
    );
  });

  it('records the failure but keeps the Deployment when nothing was served before', () => {
    const plan = planRollout(status({ previousSelection: undefined }), 1, B, stuck(B), NOW);
    assert.deepEqual(plan.serve, B);
    assert.equal(plan.rolledBack, false);
    assert.equal(plan.failed?.id, B.id);
  });

  it('never rolls back to the failed revision itself', () => {
    const previous = { id: B.id, supernetGeneration: 1 };
    const plan = planRollout(status({ previousSelection: previous }), 1, B, stuck(B), NOW);
    assert.equal(plan.rolledBack, false);
    assert.deepEqual(plan.serve, B);
  });

  it('ignores a previous selection that does not say its generation (written by an older operator)', () => {
    const plan = planRollout(status({ previousSelection: { id: A.id } }), 1, B, stuck(B), NOW);
    assert.equal(plan.rolledBack, false);
  });

  it('caps a long message at the schema limit', () => {
    const plan = planRollout(status(), 1, B, stuck(B), NOW, 'x'.repeat(10_000));
    assert.ok((plan.failed?.message.length ?? Infinity) <= 2000);
  });
});

describe('nextPreviousSelection', () => {
  const available = [
    {
      type: 'Available',
      status: 'True' as const,
      reason: 'DeploymentAvailable',
      message: '',
      lastTransitionTime: NOW.toISOString(),
    },
  ];
  const serving = (extra: Partial<DeploymentTargetStatus> = {}): DeploymentTargetStatus => ({
    selectedSubnet: { id: A.id },
    supernetGeneration: 1,
    predictedAccuracy: 0.8,
    expectedLatencyMs: 12,
    conditions: available,
    ...extra,
  });

  it('remembers the served selection when the choice changes', () => {
    assert.deepEqual(nextPreviousSelection(serving(), B), {
      id: A.id,
      supernetGeneration: 1,
      predictedAccuracy: 0.8,
      expectedLatencyMs: 12,
    });
  });

  it('remembers it when only the supernet generation changes', () => {
    assert.equal(nextPreviousSelection(serving(), { ...A, supernetGeneration: 2 })?.id, A.id);
  });

  it('keeps what it had while the choice stays, or when the selection was never available', () => {
    const kept = { id: 'r28-d3e4-d3e4-d3e4-d3e4-d3e4', supernetGeneration: 1 };
    assert.deepEqual(nextPreviousSelection(serving({ previousSelection: kept }), A), kept);
    assert.deepEqual(
      nextPreviousSelection(serving({ previousSelection: kept, conditions: [] }), B),
      kept,
    );
    assert.equal(nextPreviousSelection(undefined, B), undefined);
  });
});
