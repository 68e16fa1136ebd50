import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { Random } from './random.js';
import { paretoFront, selectSubnet, SubnetSelector, type SubnetMeasurement } from './selection.js';

function randomTable(random: Random, size: number): SubnetMeasurement[] {
  return Array.from({ length: size }, (_, i) => ({
    id: `s${i.toString().padStart(3, '0')}`,
    // Coarse values so that ties in accuracy and latency actually happen.
    accuracy: random.int(40) / 40,
    latencyMs: 1 + random.int(30),
  }));
}

function bruteForce(
  table: readonly SubnetMeasurement[],
  budget: number,
): SubnetMeasurement | undefined {
  const feasible = table.filter((row) => row.latencyMs <= budget);
  const bestAccuracy = Math.max(...feasible.map((row) => row.accuracy));
  const mostAccurate = feasible.filter((row) => row.accuracy === bestAccuracy);
  const lowestLatency = Math.min(...mostAccurate.map((row) => row.latencyMs));
  return mostAccurate
    .filter((row) => row.latencyMs === lowestLatency)
    .sort((a, b) => a.id.localeCompare(b.id))[0];
}

describe('selectSubnet', () => {
  it('equals brute force on random tables, ties included, for every budget', () => {
    const random = new Random(2021);
    for (let trial = 0; trial < 200; trial++) {
      const table = randomTable(random, 1 + random.int(243));
      for (const budget of [0.5, 1, 2, 5, 10, 15, 30, 31]) {
        const result = selectSubnet(random.shuffled(table), { latencyBudgetMs: budget });
        const expected = bruteForce(table, budget);
        if (expected) {
          assert.ok(result.ok, `trial ${trial} budget ${budget}: ${result.message}`);
          assert.deepEqual(result.selected, expected);
          assert.equal(result.feasible, table.filter((row) => row.latencyMs <= budget).length);
        } else {
          assert.equal(result.reason, 'NothingFitsBudget');
        }
      }
    }
  });

  it('answers many budgets from one SubnetSelector exactly as brute force does', () => {
    const random = new Random(99);
    const table = randomTable(random, 243);
    const selector = new SubnetSelector(table);
    for (let budget = 0.25; budget <= 32; budget += 0.25) {
      const result = selector.select({ latencyBudgetMs: budget });
      const expected = bruteForce(table, budget);
      assert.deepEqual(result.ok ? result.selected : undefined, expected, `budget ${budget}`);
    }
  });

  it('names the fastest subnet and its latency when nothing fits', () => {
    const table = [
      { id: 'slow', accuracy: 0.9, latencyMs: 12 },
      { id: 'quick', accuracy: 0.7, latencyMs: 4.25 },
    ];
    const result = selectSubnet(table, { latencyBudgetMs: 3 });
    assert.equal(result.ok, false);
    assert.equal(result.reason, 'NothingFitsBudget');
    assert.equal(
      result.message,
      'no subnet meets the 3 ms budget; the fastest, quick, takes 4.25 ms (accuracy 70.00%)',
    );
  });

  it('applies the accuracy floor after the budget', () => {
    const table = [
      { id: 'a', accuracy: 0.8, latencyMs: 5 },
      { id: 'b', accuracy: 0.95, latencyMs: 50 },
    ];
    const result = selectSubnet(table, { latencyBudgetMs: 10, accuracyFloor: 0.9 });
    assert.equal(result.reason, 'BelowAccuracyFloor');
    assert.match(
      result.message,
      /the most accurate subnet within 10 ms, a, reaches 80\.00%, below the floor of 90\.00%/,
    );
    assert.equal(
      selectSubnet(table, { latencyBudgetMs: 10, accuracyFloor: 0.8 }).reason,
      'Selected',
    );
  });

  it('reports an empty table and rejects a bad policy', () => {
    assert.equal(selectSubnet([], { latencyBudgetMs: 1 }).reason, 'NoMeasurements');
    assert.throws(
      () => selectSubnet([], { latencyBudgetMs: 0 }),
      /latencyBudgetMs must be a positive number, got 0/,
    );
    assert.throws(
      () => selectSubnet([], { latencyBudgetMs: 1, accuracyFloor: 1.5 }),
      /accuracyFloor must be in \[0, 1\], got 1.5/,
    );
  });
});

describe('paretoFront', () => {
  it('keeps exactly the non-dominated subnets, by latency', () => {
    const random = new Random(7);
    for (let trial = 0; trial < 100; trial++) {
      const table = randomTable(random, 1 + random.int(200));
      const front = paretoFront(table);
      const strictlyDominated = (row: SubnetMeasurement): boolean =>
        table.some(
          (o) =>
            o.latencyMs <= row.latencyMs &&
            o.accuracy >= row.accuracy &&
            (o.latencyMs < row.latencyMs || o.accuracy > row.accuracy),
        );
      for (const row of front)
        assert.ok(!strictlyDominated(row), `${row.id} on the front is dominated`);
      for (const row of table) {
        const covered = front.some(
          (f) => f.latencyMs <= row.latencyMs && f.accuracy >= row.accuracy,
        );
        assert.ok(
          covered,
          `${row.id} is off the front but nothing on it is as fast and as accurate`,
        );
      }
      for (let i = 1; i < front.length; i++) {
        assert.ok((front[i]?.latencyMs ?? 0) >= (front[i - 1]?.latencyMs ?? 0));
        assert.ok((front[i]?.accuracy ?? 0) > (front[i - 1]?.accuracy ?? 0));
      }
      // The selection for any budget lies on the front.
      for (const budget of [3, 10, 20, 31]) {
        const result = selectSubnet(table, { latencyBudgetMs: budget });
        if (result.ok)
          assert.ok(
            front.some((f) => f.id === result.selected.id),
            `budget ${budget}: ${result.selected.id} not on the front`,
          );
      }
    }
  });
});
