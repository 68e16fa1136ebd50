import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import type { Condition } from '../api/index.js';
import {
  ALL_POLICIES_PASSED,
  conditionTime,
  evaluatePolicies,
  findCondition,
  isConditionFalse,
  isConditionTrue,
  isValidConditionReason,
  isValidConditionType,
  removeCondition,
  setCondition,
  truncateConditionMessage,
  type PolicyCheck,
} from './conditions.js';

const T0 = new Date('2026-01-02T03:04:05.678Z');
const T1 = new Date('2026-01-02T04:00:00.000Z');

describe('setCondition', () => {
  it('appends a new condition with the transition time in whole seconds', () => {
    const conditions = setCondition(
      undefined,
      { type: 'Ready', status: 'False', reason: 'Training', message: 'epoch 1/5' },
      3,
      T0,
    );
    assert.deepEqual(conditions, [
      {
        type: 'Ready',
        status: 'False',
        observedGeneration: 3,
        lastTransitionTime: '2026-01-02T03:04:05Z',
        reason: 'Training',
        message: 'epoch 1/5',
      },
    ]);
  });

  it('keeps lastTransitionTime while the status stays, and updates the rest in place', () => {
    const before = setCondition(
      setCondition(
        [],
        { type: 'Trained', status: 'False', reason: 'Training', message: 'epoch 1/5' },
        1,
        T0,
      ),
      { type: 'Ready', status: 'False', reason: 'Training', message: '' },
      1,
      T0,
    );
    const frozen = structuredClone(before);
    const after = setCondition(
      before,
      { type: 'Trained', status: 'False', reason: 'Evaluating', message: 'epoch 5/5' },
      2,
      T1,
    );
    assert.deepEqual(before, frozen, 'the input is not modified');
    assert.deepEqual(
      after.map((c) => c.type),
      ['Trained', 'Ready'],
      'ordering stays by insertion',
    );
    assert.deepEqual(after[0], {
      type: 'Trained',
      status: 'False',
      observedGeneration: 2,
      lastTransitionTime: '2026-01-02T03:04:05Z',
      reason: 'Evaluating',
      message: 'epoch 5/5',
    });
    assert.equal(after[1], before[1], 'other conditions are the same objects');
  });

  it('moves lastTransitionTime when the status changes', () => {
    const before = setCondition(
      [],
      { type: 'Ready', status: 'Unknown', reason: 'Pending', message: '' },
      1,
      T0,
    );
    const after = setCondition(
      before,
      { type: 'Ready', status: 'True', reason: 'Serving', message: 'all targets ready' },
      1,
      T1,
    );
    assert.equal(after[0]?.lastTransitionTime, '2026-01-02T04:00:00Z');
    assert.equal(after[0].status, 'True');
  });

  it('setting the same condition again gives an equal array', () => {
    const update = { type: 'Ready', status: 'True', reason: 'Serving', message: 'ok' } as const;
    const once = setCondition([], update, 4, T0);
    assert.deepEqual(setCondition(once, update, 4, T1), once);
  });

  it('drops observedGeneration when given none', () => {
    const before = setCondition(
      [],
      { type: 'Ready', status: 'True', reason: 'Serving', message: '' },
      7,
      T0,
    );
    const after = setCondition(
      before,
      { type: 'Ready', status: 'True', reason: 'Serving', message: '' },
      undefined,
      T1,
    );
    assert.equal('observedGeneration' in (after[0] ?? {}), false);
  });

  it('rejects reasons and types the API server would reject', () => {
    const set = (type: string, reason: string): Condition[] =>
      setCondition([], { type, status: 'True', reason, message: '' }, 1, T0);
    for (const reason of ['', 'has space', '1Starts', 'EndsWith,', 'Dash-ed', 'x'.repeat(1025)])
      assert.throws(() => set('Ready', reason), /invalid condition reason/, reason);
    for (const type of ['', 'bad type', '-Ready', 'Ready-', 'x'.repeat(317)])
      assert.throws(() => set(type, 'Ok'), /invalid condition type/, type);
    assert.doesNotThrow(() => set('compofa.io/Trained', 'Job_Failed:OOM,Retry_2'));
  });

  it('truncates a long message to 32768 characters', () => {
    const [condition] = setCondition(
      [],
      { type: 'Ready', status: 'False', reason: 'JobFailed', message: 'x'.repeat(40_000) },
      1,
      T0,
    );
    assert.equal(condition?.message.length, 32_768);
    assert.ok(condition.message.endsWith('…'));
  });
});

describe('condition validation and formatting', () => {
  it('isValidConditionReason follows metav1.Condition', () => {
    for (const ok of ['A', 'Ready', 'a_b', 'JobFailed', 'X:Y,Z_1'])
      assert.ok(isValidConditionReason(ok), ok);
    for (const bad of ['', '_A', 'A:', 'A B', 'A.B']) assert.ok(!isValidConditionReason(bad), bad);
  });

  it('isValidConditionType accepts plain and prefixed types', () => {
    for (const ok of ['Ready', 'compofa.io/Ready', 'Pod-Scheduled', 'a.b_c'])
      assert.ok(isValidConditionType(ok), ok);
    for (const bad of ['', 'Bad/Prefix/Ready', 'UPPER.io/Ready', '.Ready'])
      assert.ok(!isValidConditionType(bad), bad);
  });

  it('truncateConditionMessage leaves short messages and surrogate pairs whole', () => {
    assert.equal(truncateConditionMessage('short'), 'short');
    assert.equal(truncateConditionMessage('x'.repeat(32_768)).length, 32_768);
    // A pair that would be split at the cut: dropped whole.
    const cut = truncateConditionMessage('x'.repeat(32_766) + '😀'.repeat(10));
    assert.equal(cut, 'x'.repeat(32_766) + '…');
    assert.ok(cut.length <= 32_768);
  });

  it('conditionTime drops the milliseconds', () => {
    assert.equal(conditionTime(T0), '2026-01-02T03:04:05Z');
  });
});

describe('finding and removing conditions', () => {
  const conditions = [
    setCondition([], { type: 'Ready', status: 'True', reason: 'Serving', message: '' }, 1, T0)[0],
    setCondition(
      [],
      { type: 'Trained', status: 'False', reason: 'Training', message: '' },
      1,
      T0,
    )[0],
    setCondition(
      [],
      { type: 'Evaluated', status: 'Unknown', reason: 'Pending', message: '' },
      1,
      T0,
    )[0],
  ].filter((c): c is Condition => c !== undefined);

  it('findCondition, isConditionTrue and isConditionFalse', () => {
    assert.equal(findCondition(conditions, 'Trained')?.reason, 'Training');
    assert.equal(findCondition(conditions, 'Missing'), undefined);
    assert.equal(findCondition(undefined, 'Ready'), undefined);
    assert.equal(isConditionTrue(conditions, 'Ready'), true);
    assert.equal(isConditionTrue(conditions, 'Trained'), false);
    assert.equal(isConditionTrue(conditions, 'Evaluated'), false);
    assert.equal(isConditionTrue(undefined, 'Ready'), false);
    assert.equal(isConditionFalse(conditions, 'Trained'), true);
    assert.equal(isConditionFalse(conditions, 'Evaluated'), false);
    assert.equal(isConditionFalse(conditions, 'Missing'), false);
  });

  it('removeCondition returns the others, in order', () => {
    assert.deepEqual(
      removeCondition(conditions, 'Trained').map((c) => c.type),
      ['Ready', 'Evaluated'],
    );
    assert.equal(removeCondition(conditions, 'Missing').length, 3);
    assert.deepEqual(removeCondition(undefined, 'Ready'), []);
    assert.equal(conditions.length, 3, 'the input is not modified');
  });
});

describe('evaluatePolicies', () => {
  interface Target {
    supernet?: string;
    budgetMs: number;
    bestLatencyMs?: number;
  }
  const calls: string[] = [];
  const checks: PolicyCheck<Target>[] = [
    (t) => {
      calls.push('supernet');
      return t.supernet
        ? undefined
        : { ok: false, reason: 'SupernetMissing', message: 'no supernetRef' };
    },
    (t) => {
      calls.push('profiled');
      return t.bestLatencyMs === undefined
        ? { ok: false, reason: 'NotProfiled', message: 'no latency table yet' }
        : { ok: true, reason: 'Profiled', message: '' };
    },
    (t) => {
      calls.push('budget');
      return (t.bestLatencyMs ?? 0) > t.budgetMs
        ? {
            ok: false,
            reason: 'BudgetUnreachable',
            message: `fastest subnet takes ${t.bestLatencyMs ?? 0} ms > ${t.budgetMs} ms`,
          }
        : undefined;
    },
  ];

  it('returns the first failing result and runs no later check', () => {
    calls.length = 0;
    assert.deepEqual(evaluatePolicies(checks, { budgetMs: 5 }), {
      ok: false,
      reason: 'SupernetMissing',
      message: 'no supernetRef',
    });
    assert.deepEqual(calls, ['supernet']);
    assert.equal(evaluatePolicies(checks, { supernet: 's', budgetMs: 5 }).reason, 'NotProfiled');
    assert.equal(
      evaluatePolicies(checks, { supernet: 's', budgetMs: 5, bestLatencyMs: 9 }).reason,
      'BudgetUnreachable',
    );
  });

  it('returns the passed result when every check passes, or the default', () => {
    const input = { supernet: 's', budgetMs: 5, bestLatencyMs: 3 };
    assert.deepEqual(evaluatePolicies(checks, input), ALL_POLICIES_PASSED);
    const ready = { ok: true, reason: 'Deployed', message: 'serving' };
    assert.equal(evaluatePolicies(checks, input, ready), ready);
    assert.equal(evaluatePolicies([], input), ALL_POLICIES_PASSED);
  });
});
