import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import type { V1Job, V1Pod } from '@kubernetes/client-node';

import { formatTable } from '../../../compofa/tables.js';
import { accuracyTable } from '../../../test/fixtures/tables.js';
import type { SupernetTraining } from './children.js';
import { planTraining, progressFrom, type TrainingObservation } from './status.js';

const NOW = new Date('2026-11-28T10:00:00Z');

function training(
  status?: SupernetTraining['status'],
  spec: Partial<SupernetTraining['spec']> = {},
): SupernetTraining {
  return {
    apiVersion: 'compofa.io/v1alpha1',
    kind: 'SupernetTraining',
    metadata: { name: 'fmnist', namespace: 'ml', uid: 'u', generation: 2 },
    spec: { artifacts: { claimName: 'artifacts' }, ...spec },
    ...(status ? { status } : {}),
  };
}

const job = (condition?: { type: string; reason?: string; message?: string }): V1Job => ({
  metadata: { name: 'j' },
  status: condition
    ? {
        conditions: [{ ...condition, status: 'True' }],
        ...(condition.type === 'Complete'
          ? { completionTime: new Date('2026-11-28T09:00:00Z') }
          : {}),
      }
    : { active: 1 },
});

function observe(overrides: Partial<TrainingObservation> = {}): TrainingObservation {
  return {
    training: training(),
    trainJob: undefined,
    evaluateJob: undefined,
    pods: [],
    report: {},
    reportName: 'fmnist-g2',
    now: NOW,
    ...overrides,
  };
}

const condition = (plan: ReturnType<typeof planTraining>, type: string) =>
  plan.status.conditions?.find((c) => c.type === type);

const progress = JSON.stringify({
  stage: 'compound-1',
  step: 50,
  totalSteps: 200,
  epoch: 3,
  stepsPerSecond: 2,
  eta: '2026-11-28T10:01:15Z',
  updatedAt: '2026-11-28T09:59:00Z',
});

describe('planning a SupernetTraining', () => {
  it('starts with the training Job, Pending until the pod reports', () => {
    const plan = planTraining(observe());
    assert.deepEqual(plan.jobs, ['train']);
    assert.equal(plan.status.phase, 'Pending');
    assert.equal(plan.status.observedGeneration, 2);
    assert.match(plan.status.architectureKey ?? '', /^[0-9a-f]{16}$/);
    assert.equal(condition(plan, 'Ready')?.status, 'False');
    assert.equal(condition(plan, 'Trained')?.reason, 'Pending');
    assert.equal(plan.event?.type, 'Normal');
  });

  it('copies the pod progress into status while training', () => {
    const plan = planTraining(observe({ trainJob: job(), report: { 'progress.json': progress } }));
    assert.equal(plan.status.phase, 'Training');
    assert.deepEqual(plan.status.progress, {
      stage: 'compound-1',
      step: 50,
      totalSteps: 200,
      percent: 25,
      epoch: 3,
      stepsPerSecond: 2,
      eta: '2026-11-28T10:01:15Z',
      updatedAt: '2026-11-28T09:59:00Z',
    });
    assert.equal(condition(plan, 'Ready')?.reason, 'Training');
    assert.match(condition(plan, 'Ready')?.message ?? '', /compound-1: step 50 of 200/);
  });

  it('explains a pod that no node fits, as a warning', () => {
    const pod: V1Pod = {
      metadata: { name: 'fmnist-train-g2-abc' },
      status: {
        conditions: [
          {
            type: 'PodScheduled',
            status: 'False',
            reason: 'Unschedulable',
            message: '0/3 nodes are available: 3 Insufficient nvidia.com/gpu.',
          },
        ],
      },
    };
    const plan = planTraining(observe({ trainJob: job(), pods: [pod] }));
    assert.equal(condition(plan, 'Ready')?.reason, 'Unschedulable');
    assert.match(condition(plan, 'Ready')?.message ?? '', /Insufficient nvidia.com\/gpu/);
    assert.equal(plan.event?.type, 'Warning');
  });

  it('fails with the Job reason when training runs out of retries, without recreating it', () => {
    const plan = planTraining(
      observe({
        trainJob: job({
          type: 'Failed',
          reason: 'PodFailurePolicy',
          message:
            'Container compofa for pod ml/x failed with exit code 2 matching FailJob rule at index 0',
        }),
      }),
    );
    assert.equal(plan.status.phase, 'Failed');
    assert.deepEqual(plan.jobs, ['train'], 'the failed Job is kept, not recreated');
    assert.equal(condition(plan, 'Ready')?.reason, 'JobFailed');
    assert.match(condition(plan, 'Ready')?.message ?? '', /exit code 2/);
    assert.equal(plan.event?.type, 'Warning');
  });

  it('evaluates once training completed', () => {
    const plan = planTraining(observe({ trainJob: job({ type: 'Complete' }) }));
    assert.deepEqual(plan.jobs, ['train', 'evaluate']);
    assert.equal(plan.status.phase, 'Evaluating');
    assert.equal(condition(plan, 'Trained')?.status, 'True');
    assert.equal(condition(plan, 'Evaluated')?.reason, 'Evaluating');
  });

  it('publishes the accuracy table reference when evaluation succeeded', () => {
    const plan = planTraining(
      observe({
        trainJob: job({ type: 'Complete' }),
        evaluateJob: job({ type: 'Complete' }),
        report: { 'accuracy.json': formatTable(accuracyTable()), 'progress.json': progress },
      }),
    );
    assert.equal(plan.status.phase, 'Succeeded');
    assert.deepEqual(plan.jobs, []);
    assert.deepEqual(plan.status.accuracyTableRef, {
      configMapName: 'fmnist-g2',
      key: 'accuracy.json',
      rows: 243,
      method: 'measured',
    });
    assert.equal(plan.status.trainedGeneration, 2);
    // The table's own time, so every reconcile computes the same status.
    assert.equal(plan.status.completedAt, '2026-11-28T00:00:00Z');
    assert.deepEqual(
      plan.keep,
      ['train', 'evaluate'],
      'finished Jobs go only in a later reconcile',
    );
    assert.equal(condition(plan, 'Ready')?.reason, 'Succeeded');
    assert.equal(condition(plan, 'Evaluated')?.reason, 'AccuracyTablePublished');
    // Level-based: planning again from the published status changes nothing.
    const again = planTraining(observe({ training: training(plan.status) }));
    assert.deepEqual(again.status, plan.status);
    assert.deepEqual(again.jobs, []);
    assert.deepEqual(again.keep, []);
    assert.equal(again.event, undefined);
  });

  it('never restarts training once the report holds the table, even with its Jobs gone', () => {
    // A reconcile whose cache has not yet seen the Succeeded status, after the Jobs were deleted.
    const plan = planTraining(
      observe({ report: { 'accuracy.json': formatTable(accuracyTable()) } }),
    );
    assert.equal(plan.status.phase, 'Succeeded');
    assert.deepEqual(plan.jobs, []);
  });

  it('fails naming the ConfigMap when the evaluation left no valid table', () => {
    const missing = planTraining(
      observe({ trainJob: job({ type: 'Complete' }), evaluateJob: job({ type: 'Complete' }) }),
    );
    assert.equal(missing.status.phase, 'Failed');
    assert.match(
      condition(missing, 'Ready')?.message ?? '',
      /ConfigMap fmnist-g2 key accuracy.json holds no accuracy table/,
    );
    const table = accuracyTable();
    const truncated = { ...table, rows: table.rows.slice(1) };
    const wrong = planTraining(
      observe({
        trainJob: job({ type: 'Complete' }),
        evaluateJob: job({ type: 'Complete' }),
        report: {
          'accuracy.json': JSON.stringify({
            ...truncated,
            subject: { ...table.subject, architectureKey: '0000000000000000' },
          }),
        },
      }),
    );
    assert.equal(wrong.status.phase, 'Failed');
    assert.match(condition(wrong, 'Ready')?.message ?? '', /invalid accuracy table/);
  });

  it('runs nothing while suspended', () => {
    const plan = planTraining(
      observe({ training: training(undefined, { suspend: true }), trainJob: job() }),
    );
    assert.deepEqual(plan.jobs, []);
    assert.equal(plan.status.phase, 'Suspended');
    assert.equal(condition(plan, 'Ready')?.reason, 'Suspended');
  });

  it('keeps condition transition times while nothing changes', () => {
    const first = planTraining(observe({ trainJob: job(), report: { 'progress.json': progress } }));
    const later = planTraining(
      observe({
        training: training(first.status),
        trainJob: job(),
        report: { 'progress.json': progress },
        now: new Date('2026-11-28T11:00:00Z'),
      }),
    );
    assert.deepEqual(later.status, first.status);
    assert.equal(later.event, undefined);
  });

  it('ignores progress reports it cannot read', () => {
    assert.equal(progressFrom('not json'), undefined);
    assert.equal(progressFrom('{"stage":"x","step":-1,"totalSteps":10}'), undefined);
    assert.equal(progressFrom('{"stage":"x","step":1,"totalSteps":0}'), undefined);
    assert.equal(progressFrom('{"stage":"x","step":30,"totalSteps":10}')?.percent, 100);
  });
});
