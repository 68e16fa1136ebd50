import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { SMALL_ARCHITECTURE } from './architecture.js';
import { subnetCost } from './cost.js';
import { CompoundSpace, ElasticSpace, type SubnetSpec } from './design-space.js';
import {
  evolutionarySearch,
  type CandidateEvaluation,
  type EvolutionOptions,
  type EvolutionResult,
  type Evaluator,
} from './evolution.js';
import { Random } from './random.js';

const compound = new CompoundSpace(SMALL_ARCHITECTURE);
const macsOf = (spec: SubnetSpec): number => subnetCost(SMALL_ARCHITECTURE, spec).macs;

/**
 * A measured table for all 243 subnets: accuracy rises with log MACs and latency with MACs, both
 * with seeded noise, so that the most accurate subnet is not simply the largest and accuracy is
 * not a function of latency.
 */
function syntheticTable(seed: number): Map<string, CandidateEvaluation> {
  const specs = [...compound.enumerate()];
  const logMacs = specs.map((spec) => Math.log(macsOf(spec)));
  const low = Math.min(...logMacs);
  const high = Math.max(...logMacs);
  const random = new Random(seed);
  return new Map(
    specs.map((spec, i) => {
      const scaled = ((logMacs[i] ?? low) - low) / (high - low);
      const accuracy = 0.7 + 0.2 * scaled + 0.04 * (random.next() - 0.5);
      const latencyMs = (Math.exp(logMacs[i] ?? low) / 1e6) * (0.85 + 0.3 * random.next());
      return [compound.format(spec), { accuracy, latencyMs }];
    }),
  );
}

const table = syntheticTable(42);
const lookup =
  (entries: ReadonlyMap<string, CandidateEvaluation>): Evaluator =>
  (spec) =>
    entries.get(compound.format(spec));
const latencies = [...table.values()].map((e) => e.latencyMs).sort((a, b) => a - b);
const fastest = latencies[0] ?? 0;
const slowest = latencies.at(-1) ?? 0;
const quantile = (q: number): number => latencies[Math.floor(q * (latencies.length - 1))] ?? 0;

/** The most accurate entry within the budget (ties: faster, then id), by brute force. */
function bruteForceBest(
  entries: ReadonlyMap<string, CandidateEvaluation>,
  budgetMs: number,
): string | undefined {
  let best: [string, CandidateEvaluation] | undefined;
  for (const spec of compound.enumerate()) {
    const id = compound.format(spec);
    const entry = entries.get(id);
    if (!entry || entry.latencyMs > budgetMs) continue;
    if (
      !best ||
      entry.accuracy > best[1].accuracy ||
      (entry.accuracy === best[1].accuracy && entry.latencyMs < best[1].latencyMs)
    )
      best = [id, entry];
  }
  return best?.[0];
}

function assertFound(
  result: EvolutionResult,
): asserts result is Extract<EvolutionResult, { found: true }> {
  assert.equal(result.found, true, result.found ? '' : result.message);
}

describe('evolutionarySearch', () => {
  it('never returns a subnet over the budget or without a measurement, over many budgets and seeds', () => {
    // Every fifth subnet unmeasured, so that "undefined means infeasible" is exercised too.
    const partial = new Map([...table].filter((_, i) => i % 5 !== 0));
    const budgets = [0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 1].map(quantile);
    for (const budgetMs of budgets) {
      for (const seed of [0, 1, 2, 3, 4]) {
        const result = evolutionarySearch(compound, lookup(partial), budgetMs, {
          seed,
          generations: 15,
          populationSize: 40,
        });
        // With thousands of tries over 243 subnets, "nothing fits" must mean nothing does.
        const fits = [...partial.values()].some((entry) => entry.latencyMs <= budgetMs);
        assert.equal(result.found, fits, `budget ${budgetMs} ms, seed ${seed}`);
        if (!result.found) continue;
        const entry = partial.get(result.id);
        assert.ok(entry, `${result.id} has no measurement`);
        assert.ok(entry.latencyMs <= budgetMs, `${result.id} is over ${budgetMs} ms`);
        assert.deepEqual(
          { accuracy: result.accuracy, latencyMs: result.latencyMs },
          { accuracy: entry.accuracy, latencyMs: entry.latencyMs },
        );
        assert.equal(compound.format(compound.validate(result.spec)), result.id);
      }
    }
  });

  it('gives the same result for the same seed, and explores differently for other seeds', () => {
    const options: EvolutionOptions = { populationSize: 8, generations: 3 };
    const budgetMs = quantile(0.5);
    const run = (seed: number): EvolutionResult =>
      evolutionarySearch(compound, lookup(table), budgetMs, { ...options, seed });
    assert.deepEqual(run(7), run(7));
    const outcomes = new Set(
      [0, 1, 2, 3, 4, 5, 6, 7].map((seed) => {
        const result = run(seed);
        assertFound(result);
        return `${result.id} after ${result.evaluations}`;
      }),
    );
    assert.ok(outcomes.size > 1, 'the seed changes the search');
  });

  it('reports NothingFitsBudget when the budget is below the fastest subnet', () => {
    let calls = 0;
    const counting: Evaluator = (spec) => {
      calls++;
      return lookup(table)(spec);
    };
    const result = evolutionarySearch(compound, counting, fastest * 0.99, {
      maxSampleAttempts: 50,
    });
    assert.equal(result.found, false);
    assert.ok(!result.found);
    assert.equal(result.reason, 'NothingFitsBudget');
    assert.match(result.message, new RegExp(`latency budget of ${fastest * 0.99} ms: 50 random`));
    assert.equal(result.evaluations, calls);
    assert.ok(calls > 0 && calls <= 50);

    const unmeasured = evolutionarySearch(compound, () => undefined, Infinity, {
      maxSampleAttempts: 20,
    });
    assert.equal(unmeasured.found, false);
  });

  it("finds the table's best accuracy with OFA's default parameters", () => {
    for (const budgetMs of [slowest * 2, quantile(0.5), quantile(0.1)]) {
      const expected = bruteForceBest(table, budgetMs);
      const result = evolutionarySearch(compound, lookup(table), budgetMs);
      assertFound(result);
      assert.equal(result.id, expected, `budget ${budgetMs} ms`);
      assert.equal(result.accuracy, table.get(result.id)?.accuracy);
    }
    // The table's best is not simply the largest subnet, so the search had to look.
    assert.notEqual(bruteForceBest(table, Infinity), compound.format(compound.largest()));
  });

  it('evaluates each subnet at most once and counts only evaluator calls', () => {
    const seen = new Map<string, number>();
    const counting: Evaluator = (spec) => {
      const id = compound.format(spec);
      seen.set(id, (seen.get(id) ?? 0) + 1);
      return table.get(id);
    };
    const result = evolutionarySearch(compound, counting, quantile(0.5), { generations: 50 });
    assertFound(result);
    assert.deepEqual(
      [...seen.values()].filter((n) => n > 1),
      [],
    );
    assert.equal(result.evaluations, seen.size);
    assert.ok(seen.size <= 243);
  });

  it('validates its options and budget, naming the offending one', () => {
    const search = (options: EvolutionOptions, budgetMs = slowest): EvolutionResult =>
      evolutionarySearch(compound, lookup(table), budgetMs, { generations: 1, ...options });
    const cases: [EvolutionOptions, RegExp][] = [
      [{ populationSize: 0 }, /populationSize must be a positive integer, got 0/],
      [{ populationSize: 2.5 }, /populationSize must be a positive integer, got 2.5/],
      [{ generations: -1 }, /generations must be a positive integer, got -1/],
      [{ maxSampleAttempts: 0 }, /maxSampleAttempts must be a positive integer/],
      [{ parentRatio: 0 }, /parentRatio must be in \(0, 1\], got 0/],
      [{ parentRatio: 1.5 }, /parentRatio must be in \(0, 1\], got 1.5/],
      [{ mutationRatio: Number.NaN }, /mutationRatio must be in \(0, 1\], got NaN/],
      [{ mutationProbability: -0.1 }, /mutationProbability must be in \[0, 1\], got -0.1/],
      [{ mutationProbability: 2 }, /mutationProbability must be in \[0, 1\], got 2/],
      [{ seed: 0.5 }, /seed must be an integer, got 0.5/],
    ];
    for (const [options, message] of cases) {
      assert.throws(() => search(options), { name: 'RangeError', message });
    }
    assert.throws(() => search({}, Number.NaN), /latencyBudgetMs must be a number, got NaN/);
    // The edges of the ranges are allowed.
    assertFound(
      search({ populationSize: 1, parentRatio: 1, mutationRatio: 1, mutationProbability: 0 }),
    );
    assertFound(search({ mutationProbability: 1 }));
  });

  it('rejects an evaluation that is not a number, naming the subnet', () => {
    assert.throws(
      () => evolutionarySearch(compound, () => ({ accuracy: Number.NaN, latencyMs: 1 }), 10),
      { name: 'RangeError', message: /accuracy NaN and latency 1 ms for r28-/ },
    );
  });

  it('selects: on the elastic space it climbs to a hidden target that random sampling misses', () => {
    const elastic = new ElasticSpace(SMALL_ARCHITECTURE);
    const target = elastic.sample(new Random(99));
    // Accuracy = genes shared with the target (depth per unit, kernel and expand per block), a
    // landscape where only selection of the better parents makes progress.
    const matches = (spec: SubnetSpec): number =>
      spec.units.reduce((sum, unit, u) => {
        const goal = target.units[u];
        let shared = unit.depth === goal?.depth ? 1 : 0;
        unit.kernelSizes.forEach((k, b) => (shared += k === goal?.kernelSizes[b] ? 1 : 0));
        unit.expandRatios.forEach((e, b) => (shared += e === goal?.expandRatios[b] ? 1 : 0));
        return sum + shared;
      }, 0);
    const evaluate: Evaluator = (spec) => ({
      accuracy: matches(spec),
      latencyMs: macsOf(spec) / 1e6,
    });
    for (const seed of [0, 1, 2]) {
      const result = evolutionarySearch(elastic, evaluate, Infinity, {
        generations: 20,
        populationSize: 30,
        seed,
      });
      assertFound(result);
      const random = new Random(100 + seed);
      let randomBest = 0;
      for (let n = 0; n < result.evaluations; n++)
        randomBest = Math.max(randomBest, matches(elastic.sample(random)));
      assert.ok(
        result.accuracy >= 0.9 * matches(target) && result.accuracy >= randomBest + 5,
        `seed ${seed}: evolution ${result.accuracy}, random ${randomBest} of ${matches(target)}`,
      );
    }
  });

  it('searches the elastic space and returns a valid subnet within the budget', () => {
    const elastic = new ElasticSpace(SMALL_ARCHITECTURE);
    const evaluate: Evaluator = (spec) => {
      const macs = macsOf(spec);
      return { accuracy: Math.log(macs), latencyMs: macs / 1e6 };
    };
    const random = new Random(3);
    const sampled = Array.from({ length: 100 }, () => evaluate(elastic.sample(random)))
      .map((e) => e?.latencyMs ?? 0)
      .sort((a, b) => a - b);
    const budgetMs = sampled[50] ?? 0;
    const result = evolutionarySearch(elastic, evaluate, budgetMs, {
      generations: 30,
      populationSize: 50,
      seed: 3,
    });
    assertFound(result);
    elastic.validate(result.spec);
    assert.equal(elastic.format(result.spec), result.id);
    assert.ok(result.latencyMs <= budgetMs);
    assert.deepEqual(evaluate(result.spec), {
      accuracy: result.accuracy,
      latencyMs: result.latencyMs,
    });
    // Accuracy grows with MACs here, so evolution should push close to the budget.
    assert.ok(result.latencyMs > 0.95 * budgetMs, `${result.latencyMs} of ${budgetMs} ms`);
  });
});
