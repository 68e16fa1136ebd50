import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { formatTable } from '../../../compofa/tables.js';
import { accuracyTable, latencyTable, smallSpace } from '../../../test/fixtures/tables.js';
import type { DeploymentTarget } from '../../api/index.js';
import { chooseSubnet } from './selection.js';

const training = { spec: { artifacts: { claimName: 'artifacts' } } };
const accuracy = {
  text: formatTable(accuracyTable()),
  where: 'ConfigMap fmnist-g1 key accuracy.json',
};
const latency = { text: formatTable(latencyTable()), where: 'ConfigMap arm-g1 key latency.json' };

function target(spec: Partial<DeploymentTarget['spec']>): Pick<DeploymentTarget, 'spec'> {
  return {
    spec: {
      supernetRef: { name: 'fmnist' },
      device: { nodeSelector: { 'kubernetes.io/arch': 'arm64' } },
      latencyBudgetMs: 5,
      ...spec,
    },
  };
}

/** The most accurate subnet whose p95 fits, by brute force over the fixture tables. */
function bruteForce(budgetMs: number): string | undefined {
  const p95 = new Map(latencyTable().rows.map((row) => [row.subnet, row.p95Ms]));
  const fits = accuracyTable().rows.filter((row) => (p95.get(row.subnet) ?? Infinity) <= budgetMs);
  fits.sort(
    (a, b) =>
      b.accuracy - a.accuracy ||
      (p95.get(a.subnet) ?? 0) - (p95.get(b.subnet) ?? 0) ||
      (a.subnet < b.subnet ? -1 : 1),
  );
  return fits[0]?.subnet;
}

describe("a DeploymentTarget's subnet choice", () => {
  const latencies = latencyTable()
    .rows.map((row) => row.p95Ms)
    .sort((a, b) => a - b);
  const middle = latencies[Math.floor(latencies.length / 2)] ?? NaN;

  it('selects the most accurate subnet within the budget, described unit by unit', () => {
    const choice = chooseSubnet(target({ latencyBudgetMs: middle }), training, accuracy, latency);
    assert.ok(choice.ok, choice.ok ? '' : choice.message);
    assert.equal(choice.selected.id, bruteForce(middle));
    const spec = smallSpace().parse(choice.selected.id);
    assert.deepEqual(
      choice.selected.depths,
      spec.units.map((unit) => unit.depth),
    );
    assert.equal(choice.selected.resolution, 28);
    assert.equal(choice.selected.kernelSizes?.length, choice.selected.expandRatios?.length);
    assert.ok(choice.expectedLatencyMs <= middle);
    // Same inputs, same choice.
    assert.deepEqual(
      chooseSubnet(target({ latencyBudgetMs: middle }), training, accuracy, latency),
      choice,
    );
  });

  it('scales the profiled latencies by the measured correction: a budget of B at x2 picks what B/2 picks', () => {
    const corrected = chooseSubnet(
      target({ latencyBudgetMs: middle }),
      training,
      accuracy,
      latency,
      2,
    );
    assert.ok(corrected.ok, corrected.ok ? '' : corrected.message);
    assert.equal(corrected.selected.id, bruteForce(middle / 2));
    assert.notEqual(corrected.selected.id, bruteForce(middle));
    assert.ok(corrected.expectedLatencyMs <= middle);
    assert.match(corrected.message, /profiled latencies x 2\.00, as served/);
  });

  it('uses the median when asked, which lets a larger subnet fit', () => {
    const p95 = chooseSubnet(target({ latencyBudgetMs: middle }), training, accuracy, latency);
    const median = chooseSubnet(
      target({ latencyBudgetMs: middle, latencyStatistic: 'median' }),
      training,
      accuracy,
      latency,
    );
    assert.ok(p95.ok && median.ok);
    assert.ok(median.predictedAccuracy >= p95.predictedAccuracy);
    assert.ok(median.expectedLatencyMs > p95.expectedLatencyMs / 1.1 - 1e-9);
  });

  it('names the fastest subnet when nothing fits', () => {
    const fastest = latencies[0] ?? NaN;
    const choice = chooseSubnet(
      target({ latencyBudgetMs: fastest / 2 }),
      training,
      accuracy,
      latency,
    );
    assert.ok(!choice.ok);
    assert.equal(choice.reason, 'NothingFitsBudget');
    assert.equal(choice.closest?.expectedLatencyMs, fastest);
  });

  it('refuses a choice below the accuracy floor, naming the best one', () => {
    const choice = chooseSubnet(
      target({ latencyBudgetMs: middle, objective: { accuracyFloor: 0.89 } }),
      training,
      accuracy,
      latency,
    );
    assert.ok(!choice.ok);
    assert.equal(choice.reason, 'BelowAccuracyFloor');
    assert.equal(choice.closest?.id, bruteForce(middle));
  });

  it('reports a table it cannot read, naming where it is', () => {
    const choice = chooseSubnet(target({}), training, accuracy, {
      text: '{"kind":"LatencyTable"}',
      where: 'ConfigMap arm-g1 key latency.json',
    });
    assert.ok(!choice.ok);
    assert.equal(choice.reason, 'InvalidTable');
    assert.match(choice.message, /ConfigMap arm-g1 key latency.json/);
    const missing = chooseSubnet(
      target({}),
      training,
      { text: undefined, where: 'ConfigMap x key accuracy.json' },
      latency,
    );
    assert.ok(!missing.ok);
    assert.match(missing.message, /ConfigMap x key accuracy.json holds no table/);
  });
});
