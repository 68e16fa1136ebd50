/**
 * Once-For-All's evolutionary search (OFA's `EvolutionFinder`): the baseline that CompOFA's
 * exhaustive selection is compared against. It keeps a population of subnets within a latency
 * budget, and each generation keeps the most accurate quarter as parents and refills from their
 * mutations and crossovers. Works on any {@link DesignSpace}, including OFA's 10^19-subnet
 * elastic space, where enumeration is impossible.
 *
 * Deterministic: every random choice comes from one {@link Random} seeded by `options.seed`, and
 * ties in accuracy are broken by latency, then by id.
 */
import type { DesignSpace, SubnetSpec } from './design-space.js';
import { Random } from './random.js';
import { compareForSelection } from './selection.js';

/** A subnet's measured (or predicted) top-1 accuracy and latency. */
export interface CandidateEvaluation {
  readonly accuracy: number;
  readonly latencyMs: number;
}

/** Returns undefined for a subnet with no measurement (treated as infeasible). */
export type Evaluator = (spec: SubnetSpec) => CandidateEvaluation | undefined;

/** OFA's search parameters; every field defaults to OFA's value. */
export interface EvolutionOptions {
  /** Subnets in the initial population, and children bred per generation. Default 100. */
  readonly populationSize?: number;
  /** Generations of selection and breeding. Default 500. */
  readonly generations?: number;
  /** Share of the population kept as parents, in (0, 1]. Default 0.25. */
  readonly parentRatio?: number;
  /** Probability that each gene of a mutated child is resampled, in [0, 1]. Default 0.1. */
  readonly mutationProbability?: number;
  /** Share of each generation's children made by mutation (the rest by crossover), in (0, 1]. Default 0.5. */
  readonly mutationRatio?: number;
  /** Seed of every random choice. Default 0. */
  readonly seed?: number;
  /** Rejection sampling gives up after this many infeasible tries in a row. Default 10 000. */
  readonly maxSampleAttempts?: number;
}

/** The best feasible subnet found, or why there is none. */
export type EvolutionResult =
  | {
      readonly found: true;
      readonly spec: SubnetSpec;
      readonly id: string;
      readonly accuracy: number;
      readonly latencyMs: number;
      /** Evaluator calls made; each subnet is evaluated at most once per search. */
      readonly evaluations: number;
    }
  | {
      readonly found: false;
      readonly reason: 'NothingFitsBudget';
      readonly message: string;
      readonly evaluations: number;
    };

const DEFAULTS: Required<EvolutionOptions> = {
  populationSize: 100,
  generations: 500,
  parentRatio: 0.25,
  mutationProbability: 0.1,
  mutationRatio: 0.5,
  seed: 0,
  maxSampleAttempts: 10_000,
};

/** A subnet that was evaluated and fits the budget. */
interface Candidate {
  readonly spec: SubnetSpec;
  readonly id: string;
  readonly accuracy: number;
  readonly latencyMs: number;
}

function resolveOptions(options: EvolutionOptions): Required<EvolutionOptions> {
  const resolved = { ...DEFAULTS, ...options };
  const fail = (name: keyof EvolutionOptions, expected: string): never => {
    throw new RangeError(
      `evolution option ${name} must be ${expected}, got ${String(resolved[name])}`,
    );
  };
  for (const name of ['populationSize', 'generations', 'maxSampleAttempts'] as const) {
    const value = resolved[name];
    if (!Number.isSafeInteger(value) || value <= 0) fail(name, 'a positive integer');
  }
  for (const name of ['parentRatio', 'mutationRatio'] as const) {
    const value = resolved[name];
    // Written as a negated range so that NaN fails too.
    if (!(value > 0 && value <= 1)) fail(name, 'in (0, 1]');
  }
  const probability = resolved.mutationProbability;
  if (!(probability >= 0 && probability <= 1)) fail('mutationProbability', 'in [0, 1]');
  if (!Number.isSafeInteger(resolved.seed)) fail('seed', 'an integer');
  return resolved;
}

/**
 * OFA's evolutionary search for the most accurate subnet of `space` whose latency is at most
 * `latencyBudgetMs`.
 *
 * As OFA: an initial population of `populationSize` feasible random subnets (rejection sampling);
 * then per generation the top `round(parentRatio * populationSize)` subnets become parents, and
 * `populationSize` children are bred from them: `round(mutationRatio * populationSize)` by
 * mutating a random parent, the rest by crossing two random parents, each retried until the
 * child is feasible. The next population is the parents plus the children.
 *
 * The result is the best feasible subnet evaluated at any point (OFA reports only the best
 * parent, which can miss the last generation's children). Evaluations are cached per id, so
 * `evaluations` counts distinct subnets evaluated.
 *
 * @throws RangeError for an invalid option or budget, naming it, or for an evaluation whose
 *   accuracy or latency is not a number.
 */
export function evolutionarySearch(
  space: DesignSpace,
  evaluate: Evaluator,
  latencyBudgetMs: number,
  options: EvolutionOptions = {},
): EvolutionResult {
  const settings = resolveOptions(options);
  if (typeof latencyBudgetMs !== 'number' || Number.isNaN(latencyBudgetMs)) {
    throw new RangeError(`latencyBudgetMs must be a number, got ${String(latencyBudgetMs)}`);
  }
  const random = new Random(settings.seed);
  // Every evaluator call lands here, so its size is the number of calls; an unmeasured
  // subnet is cached too, so that it is never asked for twice.
  const measured = new Map<string, Candidate | undefined>();

  /** The subnet as a feasible candidate, or undefined when unmeasured or over budget. */
  const feasible = (spec: SubnetSpec): Candidate | undefined => {
    const id = space.format(spec);
    let candidate = measured.get(id);
    if (candidate === undefined && !measured.has(id)) {
      const evaluation = evaluate(spec);
      if (evaluation !== undefined) {
        const { accuracy, latencyMs } = evaluation;
        if (!Number.isFinite(accuracy) || Number.isNaN(latencyMs)) {
          throw new RangeError(
            `the evaluator returned accuracy ${String(accuracy)} and latency ${String(latencyMs)} ms for ${id}; expected numbers`,
          );
        }
        candidate = { spec, id, accuracy, latencyMs };
      }
      measured.set(id, candidate);
    }
    return candidate !== undefined && candidate.latencyMs <= latencyBudgetMs
      ? candidate
      : undefined;
  };

  /** Draws until a feasible subnet comes up, giving up after `maxSampleAttempts` in a row. */
  const draw = (next: () => SubnetSpec): Candidate | undefined => {
    for (let attempt = 0; attempt < settings.maxSampleAttempts; attempt++) {
      const candidate = feasible(next());
      if (candidate) return candidate;
    }
    return undefined;
  };

  const { populationSize } = settings;
  let population: Candidate[] = [];
  for (let i = 0; i < populationSize; i++) {
    const candidate = draw(() => space.sample(random));
    if (!candidate) {
      return {
        found: false,
        reason: 'NothingFitsBudget',
        message: `no subnet fits the latency budget of ${latencyBudgetMs} ms: ${settings.maxSampleAttempts} random subnets in a row were over it or unmeasured`,
        evaluations: measured.size,
      };
    }
    population.push(candidate);
  }

  // At least one parent, so that a tiny population still breeds.
  const parentCount = Math.max(1, Math.round(settings.parentRatio * populationSize));
  const mutationCount = Math.round(settings.mutationRatio * populationSize);
  for (let generation = 0; generation < settings.generations; generation++) {
    const parents = population.sort(compareForSelection).slice(0, parentCount);
    const children: Candidate[] = [];
    // A child that stays infeasible after maxSampleAttempts tries falls back to its (feasible)
    // parent, where OFA would loop forever.
    for (let i = 0; i < mutationCount; i++) {
      const parent = random.pick(parents);
      children.push(
        draw(() => space.mutate(parent.spec, random, settings.mutationProbability)) ?? parent,
      );
    }
    for (let i = mutationCount; i < populationSize; i++) {
      const a = random.pick(parents);
      const b = random.pick(parents);
      children.push(draw(() => space.crossover(a.spec, b.spec, random)) ?? a);
    }
    population = [...parents, ...children];
  }

  let best: Candidate | undefined;
  for (const candidate of measured.values()) {
    if (
      candidate !== undefined &&
      candidate.latencyMs <= latencyBudgetMs &&
      (best === undefined || compareForSelection(candidate, best) < 0)
    )
      best = candidate;
  }
  // The initial population is feasible, so the loop above found at least one candidate.
  if (!best) throw new Error('evolutionarySearch: no feasible candidate after a full population');
  return {
    found: true,
    spec: best.spec,
    id: best.id,
    accuracy: best.accuracy,
    latencyMs: best.latencyMs,
    evaluations: measured.size,
  };
}
