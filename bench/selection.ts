/**
 * Benchmark: CompOFA's exhaustive selection over the compound space against OFA's evolutionary
 * search, on the SAME accuracy and latency tables, for 100 latency budgets.
 *
 *   npx tsx bench/selection.ts [--runs N] [--preset imagenet|small|all] [--json]
 *
 * - Method A (exhaustive): a `SubnetSelector` built over every row of the table (timed), then one
 *   lookup per budget. The measurement array is built once, outside the timing.
 * - Method B (evolution): `evolutionarySearch` with OFA's defaults (population 100, 500
 *   generations, parent ratio 0.25, mutation probability 0.1, mutation ratio 0.5), one search per
 *   budget with seed = the budget's index; the evaluator is a lookup by subnet id in a Map built
 *   once, outside the timing.
 *
 * The tables are SYNTHETIC until the trainer produces real ones: accuracy and latency are derived
 * from each subnet's analytic MACs and parameters (compofa/cost.ts) plus seeded noise, so that
 * the Pareto front is not trivial. Both methods see the same tables.
 *
 * Each run times all budgets with A 11 times back to back (the run's A time is their median), then
 * all budgets with B once (process.hrtime.bigint). An untimed warm-up precedes the runs: B over
 * the first 10 budgets, then A over all budgets 20 times (a pass of A takes about a millisecond,
 * too short for V8 to finish optimising it within one pass). Reported: the median over runs of each method's total wall time, the ratio B/A, and how
 * evolution's choice compares with exhaustive's in accuracy.
 */
import { parseArgs } from 'node:util';

import {
  IMAGENET_ARCHITECTURE,
  SMALL_ARCHITECTURE,
  type Architecture,
  type ArchitecturePreset,
} from '../compofa/architecture.js';
import { subnetCost } from '../compofa/cost.js';
import { CompoundSpace, type SubnetSpec } from '../compofa/design-space.js';
import {
  evolutionarySearch,
  type CandidateEvaluation,
  type EvolutionOptions,
} from '../compofa/evolution.js';
import { deriveSeed, Random } from '../compofa/random.js';
import { paretoFront, SubnetSelector, type SubnetMeasurement } from '../compofa/selection.js';
import { machine, renderTable, type Machine } from './report.js';

/** Number of latency budgets per table. */
const TARGET_COUNT = 100;
/**
 * Default number of timed runs: 3, not 5, because one pass of evolution over 100 targets takes
 * 12-19 s on a 2-core machine, and 5 runs of both presets would exceed 3 minutes.
 */
const DEFAULT_RUNS = 3;
/** Targets of the untimed evolution warm-up: one search already loops 50 000 times. */
const WARMUP_EVOLUTION_TARGETS = 10;
/** Untimed passes of exhaustive selection over all targets (one pass is under a millisecond). */
const WARMUP_EXHAUSTIVE_PASSES = 20;
/**
 * Timed passes of exhaustive selection per run; the run's time is their median. One pass takes
 * about a millisecond, so a single one mostly measures the scheduler and the garbage the previous
 * evolution left behind; the first pass of each run is reported too.
 */
const EXHAUSTIVE_PASSES_PER_RUN = 11;
/** Seed of the synthetic tables' noise. */
const TABLE_SEED = 2021;
/** The goal: exhaustive selection at least this many times faster than evolution. */
const GOAL_SPEEDUP = 10_000;
/** OFA's search parameters, written out so that the output records them. */
const OFA_EVOLUTION: Required<Omit<EvolutionOptions, 'seed' | 'maxSampleAttempts'>> = {
  populationSize: 100,
  generations: 500,
  parentRatio: 0.25,
  mutationProbability: 0.1,
  mutationRatio: 0.5,
};

/** How a preset's synthetic table is shaped: ranges that look like that preset's real numbers. */
interface SyntheticProfile {
  readonly architecture: Architecture;
  /** Accuracy of the smallest and of the largest subnet, before noise. */
  readonly accuracyRange: readonly [number, number];
  /** Standard deviation of the accuracy noise. */
  readonly accuracyNoise: number;
  /** Latency of the largest subnet, before noise. */
  readonly maxLatencyMs: number;
  /** Relative standard deviation of the latency noise. */
  readonly latencyNoise: number;
}

const PROFILES: Record<ArchitecturePreset, SyntheticProfile> = {
  imagenet: {
    architecture: IMAGENET_ARCHITECTURE,
    accuracyRange: [0.7, 0.8],
    accuracyNoise: 0.004,
    maxLatencyMs: 30,
    latencyNoise: 0.04,
  },
  small: {
    architecture: SMALL_ARCHITECTURE,
    accuracyRange: [0.885, 0.925],
    accuracyNoise: 0.002,
    maxLatencyMs: 3,
    latencyNoise: 0.04,
  },
};

/** One row of a synthetic table. */
interface SyntheticRow extends SubnetMeasurement {
  readonly spec: SubnetSpec;
  readonly macs: number;
  readonly params: number;
}

/** A standard normal draw (Box-Muller). */
function gaussian(random: Random): number {
  const u = 1 - random.next(); // in (0, 1], so the log is finite
  const v = random.next();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

const round = (value: number, digits: number): number => Number(value.toFixed(digits));

/**
 * A deterministic synthetic table for every subnet of the compound space.
 *
 * - accuracy: rises with log MACs (saturating) and log parameters, plus Gaussian noise; rounded to
 *   4 decimals as a 10 000-image evaluation would be.
 * - latency: a fixed cost, a per-MAC cost and a per-block cost (deep, narrow subnets pay launch
 *   overhead that MACs do not show), times multiplicative noise; rounded to microseconds.
 *
 * Accuracy and latency thus disagree on the order of subnets, and the Pareto front is a strict
 * subset of the table. Each row's noise is seeded by its id, so rows do not depend on order.
 */
function syntheticTable(preset: ArchitecturePreset, space: CompoundSpace): SyntheticRow[] {
  const profile = PROFILES[preset];
  const subnets = [...space.enumerate()].map((spec) => ({
    spec,
    id: space.format(spec),
    blocks: spec.units.reduce((sum, unit) => sum + unit.depth, 0),
    ...subnetCost(profile.architecture, spec),
  }));
  const extent = (values: readonly number[]): [number, number] => [
    Math.min(...values),
    Math.max(...values),
  ];
  const [minLogMacs, maxLogMacs] = extent(subnets.map((s) => Math.log(s.macs)));
  const [minLogParams, maxLogParams] = extent(subnets.map((s) => Math.log(s.params)));
  const [, maxMacs] = extent(subnets.map((s) => s.macs));
  const [, maxBlocks] = extent(subnets.map((s) => s.blocks));
  const [lowAccuracy, highAccuracy] = profile.accuracyRange;
  return subnets.map(({ spec, id, blocks, macs, params }) => {
    const random = new Random(deriveSeed(TABLE_SEED, preset, id));
    const macsScore = (Math.log(macs) - minLogMacs) / (maxLogMacs - minLogMacs);
    const paramsScore = (Math.log(params) - minLogParams) / (maxLogParams - minLogParams);
    const quality = 0.75 * Math.sqrt(macsScore) + 0.25 * paramsScore;
    const accuracy =
      lowAccuracy +
      (highAccuracy - lowAccuracy) * quality +
      profile.accuracyNoise * gaussian(random);
    const cost = 0.1 + 0.7 * (macs / maxMacs) + 0.2 * (blocks / maxBlocks);
    const latencyMs =
      profile.maxLatencyMs * cost * Math.max(0.5, 1 + profile.latencyNoise * gaussian(random));
    return {
      id,
      spec,
      macs,
      params,
      accuracy: round(Math.min(1, Math.max(0, accuracy)), 4),
      latencyMs: round(latencyMs, 3),
    };
  });
}

/**
 * `count` budgets evenly spaced over (fastest, slowest]: the first is one step above the fastest
 * subnet (so that something always fits), the last is the slowest subnet's latency.
 */
function latencyBudgets(rows: readonly SubnetMeasurement[], count: number): number[] {
  const latencies = rows.map((row) => row.latencyMs);
  const fastest = Math.min(...latencies);
  const slowest = Math.max(...latencies);
  return Array.from({ length: count }, (_, i) => fastest + ((slowest - fastest) * (i + 1)) / count);
}

/** What one method chose for one budget (undefined when it found nothing). */
interface Choice {
  readonly id: string;
  readonly accuracy: number;
  readonly latencyMs: number;
}

interface MethodPass {
  readonly elapsedNs: bigint;
  readonly choices: readonly (Choice | undefined)[];
}

/** Method A: exhaustive selection: every row considered once (SubnetSelector), then each budget. */
function exhaustivePass(
  measurements: readonly SubnetMeasurement[],
  budgets: readonly number[],
): MethodPass {
  const choices: (Choice | undefined)[] = [];
  const start = process.hrtime.bigint();
  // Timed: the one pass over every row that builds the selector, then a lookup per budget.
  const selector = new SubnetSelector(measurements);
  for (const latencyBudgetMs of budgets) {
    const result = selector.select({ latencyBudgetMs });
    choices.push(result.ok ? result.selected : undefined);
  }
  const elapsedNs = process.hrtime.bigint() - start;
  return { elapsedNs, choices };
}

interface EvolutionPass extends MethodPass {
  /** Distinct subnets evaluated, per budget. */
  readonly evaluations: readonly number[];
}

/** Method B: one OFA evolutionary search per budget, seeded by the budget's index. */
function evolutionPass(
  space: CompoundSpace,
  table: ReadonlyMap<string, CandidateEvaluation>,
  budgets: readonly number[],
): EvolutionPass {
  const evaluate = (spec: SubnetSpec): CandidateEvaluation | undefined =>
    table.get(space.format(spec));
  const choices: (Choice | undefined)[] = [];
  const evaluations: number[] = [];
  const start = process.hrtime.bigint();
  budgets.forEach((latencyBudgetMs, seed) => {
    const result = evolutionarySearch(space, evaluate, latencyBudgetMs, {
      ...OFA_EVOLUTION,
      seed,
    });
    choices.push(result.found ? result : undefined);
    evaluations.push(result.evaluations);
  });
  const elapsedNs = process.hrtime.bigint() - start;
  return { elapsedNs, choices, evaluations };
}

const median = (values: readonly number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  const upper = sorted[middle] ?? Number.NaN;
  return sorted.length % 2 === 1 ? upper : ((sorted[middle - 1] ?? Number.NaN) + upper) / 2;
};

const mean = (values: readonly number[]): number =>
  values.length === 0 ? Number.NaN : values.reduce((sum, v) => sum + v, 0) / values.length;

const nsToMs = (ns: bigint): number => Number(ns) / 1e6;

const sameChoices = (
  a: readonly (Choice | undefined)[],
  b: readonly (Choice | undefined)[],
): boolean => a.length === b.length && a.every((choice, i) => choice?.id === b[i]?.id);

/** The result for one preset, as printed in --json. */
interface PresetResult {
  readonly preset: ArchitecturePreset;
  readonly table: {
    readonly rows: number;
    readonly resolutions: readonly number[];
    readonly paretoFrontSize: number;
    readonly accuracyRange: readonly [number, number];
    readonly latencyRangeMs: readonly [number, number];
    /** Untimed set-up: building the measurement array (A) and the id -> row Map (B). */
    readonly buildMeasurementsMs: number;
    readonly buildLookupMapMs: number;
  };
  readonly targets: {
    readonly count: number;
    readonly firstBudgetMs: number;
    readonly lastBudgetMs: number;
  };
  readonly exhaustive: {
    readonly medianMs: number;
    /** Per run: the median of its back-to-back passes. */
    readonly runsMs: readonly number[];
    /** Per run: its first pass alone, right after the previous run's evolution (GC left by it included). */
    readonly firstPassMs: readonly number[];
    readonly passesPerRun: number;
    readonly perTargetMedianUs: number;
  };
  readonly evolution: {
    readonly medianMs: number;
    readonly runsMs: readonly number[];
    readonly perTargetMedianMs: number;
    readonly meanDistinctEvaluations: number;
  };
  /** Median evolution time / median exhaustive time. */
  readonly speedup: number;
  readonly accuracy: {
    /** Targets where evolution's choice is less accurate than, as accurate as, or more accurate than exhaustive's. */
    readonly evolutionLess: number;
    readonly evolutionEqual: number;
    readonly evolutionMore: number;
    /** Targets where one method found nothing (should be 0: every budget admits the fastest subnet). */
    readonly notFound: number;
    /** Mean and largest of (exhaustive accuracy - evolution accuracy) over the targets, in [0, 1]. */
    readonly meanGap: number;
    readonly maxGap: number;
    /** Targets where evolution chose a different subnet (possibly of equal accuracy). */
    readonly differentSubnet: number;
  };
  /** Whether every run chose the same subnets as the first (both methods are deterministic). */
  readonly deterministic: boolean;
  readonly goalMet: boolean;
}

function benchmarkPreset(
  preset: ArchitecturePreset,
  runs: number,
  progress: (line: string) => void,
): PresetResult {
  const space = new CompoundSpace(PROFILES[preset].architecture);
  const rows = syntheticTable(preset, space);

  // Untimed set-up, once per preset: what each method reads at selection time.
  let start = process.hrtime.bigint();
  const measurements: SubnetMeasurement[] = rows.map(({ id, accuracy, latencyMs }) => ({
    id,
    accuracy,
    latencyMs,
  }));
  const buildMeasurementsMs = nsToMs(process.hrtime.bigint() - start);
  start = process.hrtime.bigint();
  const lookup = new Map<string, CandidateEvaluation>(
    rows.map(({ id, accuracy, latencyMs }) => [id, { accuracy, latencyMs }]),
  );
  const buildLookupMapMs = nsToMs(process.hrtime.bigint() - start);

  const budgets = latencyBudgets(measurements, TARGET_COUNT);

  // Warm-up, untimed: B over the first targets only (one search already runs its loop 50 000
  // times, plenty for V8 to optimise it; a full pass would add a quarter to the run time for
  // nothing), then A over all targets several times, last, so that the first timed pass of A
  // does not run while V8 is still optimising it.
  progress(
    `${preset}: warm-up (untimed: B over the first ${WARMUP_EVOLUTION_TARGETS} targets, then A over all ${budgets.length} targets x ${WARMUP_EXHAUSTIVE_PASSES})`,
  );
  evolutionPass(space, lookup, budgets.slice(0, WARMUP_EVOLUTION_TARGETS));
  for (let pass = 0; pass < WARMUP_EXHAUSTIVE_PASSES; pass++) exhaustivePass(measurements, budgets);

  const timesA: number[] = [];
  const firstPassA: number[] = [];
  const timesB: number[] = [];
  let first: { readonly a: MethodPass; readonly b: EvolutionPass } | undefined;
  let deterministic = true;
  for (let run = 0; run < runs; run++) {
    const passes = Array.from({ length: EXHAUSTIVE_PASSES_PER_RUN }, () =>
      exhaustivePass(measurements, budgets),
    );
    const a = passes[0];
    if (!a) throw new Error('no exhaustive pass');
    const b = evolutionPass(space, lookup, budgets);
    timesA.push(median(passes.map((pass) => nsToMs(pass.elapsedNs))));
    firstPassA.push(nsToMs(a.elapsedNs));
    timesB.push(nsToMs(b.elapsedNs));
    first ??= { a, b };
    deterministic &&=
      sameChoices(a.choices, first.a.choices) && sameChoices(b.choices, first.b.choices);
    progress(
      `${preset}: run ${run + 1}/${runs}: exhaustive ${formatMs(timesA.at(-1) ?? Number.NaN)} (first pass ${formatMs(nsToMs(a.elapsedNs))}), evolution ${formatMs(nsToMs(b.elapsedNs))}`,
    );
  }
  if (!first) throw new Error('no runs');
  // Both methods are deterministic, so the choices of the first run stand for all runs.
  const chosenA = first.a.choices;
  const chosenB = first.b;

  let less = 0;
  let equal = 0;
  let more = 0;
  let notFound = 0;
  let differentSubnet = 0;
  const gaps: number[] = [];
  chosenA.forEach((exhaustive, i) => {
    const evolved = chosenB.choices[i];
    if (!exhaustive || !evolved) {
      notFound += 1;
      return;
    }
    if (evolved.id !== exhaustive.id) differentSubnet += 1;
    if (evolved.accuracy < exhaustive.accuracy) less += 1;
    else if (evolved.accuracy > exhaustive.accuracy) more += 1;
    else equal += 1;
    gaps.push(exhaustive.accuracy - evolved.accuracy);
  });

  const medianA = median(timesA);
  const medianB = median(timesB);
  const speedup = medianB / medianA;
  const accuracies = rows.map((row) => row.accuracy);
  const latencies = rows.map((row) => row.latencyMs);
  return {
    preset,
    table: {
      rows: rows.length,
      resolutions: space.architecture.resolutions,
      paretoFrontSize: paretoFront(measurements).length,
      accuracyRange: [Math.min(...accuracies), Math.max(...accuracies)],
      latencyRangeMs: [Math.min(...latencies), Math.max(...latencies)],
      buildMeasurementsMs,
      buildLookupMapMs,
    },
    targets: {
      count: budgets.length,
      firstBudgetMs: budgets[0] ?? Number.NaN,
      lastBudgetMs: budgets.at(-1) ?? Number.NaN,
    },
    exhaustive: {
      medianMs: medianA,
      runsMs: timesA,
      firstPassMs: firstPassA,
      passesPerRun: EXHAUSTIVE_PASSES_PER_RUN,
      perTargetMedianUs: (medianA * 1000) / budgets.length,
    },
    evolution: {
      medianMs: medianB,
      runsMs: timesB,
      perTargetMedianMs: medianB / budgets.length,
      meanDistinctEvaluations: mean(chosenB.evaluations),
    },
    speedup,
    accuracy: {
      evolutionLess: less,
      evolutionEqual: equal,
      evolutionMore: more,
      notFound,
      meanGap: mean(gaps),
      maxGap: gaps.length === 0 ? Number.NaN : Math.max(...gaps),
      differentSubnet,
    },
    deterministic,
    goalMet: speedup >= GOAL_SPEEDUP && more === 0 && notFound === 0,
  };
}

function formatMs(ms: number): string {
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  if (ms >= 1) return `${ms.toFixed(2)} ms`;
  return `${(ms * 1000).toFixed(1)} µs`;
}

const formatCount = (value: number): string => Math.round(value).toLocaleString('en-US');
const formatPoints = (gap: number): string => `${(gap * 100).toFixed(3)} pts`;

/** Left-aligned first column, right-aligned others. */

const SYNTHETIC_NOTE =
  'SYNTHETIC tables (accuracy and latency derived from analytic MACs/params with seeded noise) ' +
  'until the trainer produces real ones; both methods see the SAME tables.';

function renderHuman(
  info: Machine,
  runs: number,
  results: readonly PresetResult[],
  totalSeconds: number,
): string {
  const out: string[] = [];
  out.push('Selection: exhaustive compound (A) vs OFA evolutionary search (B)');
  out.push('');
  out.push(`Machine: ${info.cpuModel}, ${info.cores} cores, ${info.memoryGiB} GiB`);
  out.push(`Node ${info.node} (${info.platform}/${info.arch})`);
  out.push(`Note: ${SYNTHETIC_NOTE}`);
  out.push(
    `Method A: SubnetSelector built over every row (timed), then one lookup per target (measurement array built once, untimed).`,
  );
  out.push(
    `Method B: evolutionarySearch, population ${OFA_EVOLUTION.populationSize}, ${OFA_EVOLUTION.generations} generations, parent ratio ${OFA_EVOLUTION.parentRatio}, mutation probability ${OFA_EVOLUTION.mutationProbability}, mutation ratio ${OFA_EVOLUTION.mutationRatio}; seed = target index; evaluator = Map lookup by id (built once, untimed).`,
  );
  out.push(
    `Timing: ${TARGET_COUNT} latency budgets per table, evenly spaced from just above the fastest subnet to the slowest; untimed warm-up (B over the first ${WARMUP_EVOLUTION_TARGETS} targets, then A over all targets x ${WARMUP_EXHAUSTIVE_PASSES}), then median of ${runs} run${runs === 1 ? '' : 's'} (process.hrtime.bigint). Each run: A over all targets ${EXHAUSTIVE_PASSES_PER_RUN} times back to back (the run's A time is their median), then B over all targets once.`,
  );
  out.push('');
  out.push(
    renderTable(
      [
        'preset',
        'rows',
        'Pareto',
        'targets',
        `A: all targets`,
        'A: per target',
        'B: all targets',
        'B: per target',
        'B/A',
      ],
      results.map((r) => [
        r.preset,
        String(r.table.rows),
        String(r.table.paretoFrontSize),
        String(r.targets.count),
        formatMs(r.exhaustive.medianMs),
        formatMs(r.exhaustive.perTargetMedianUs / 1000),
        formatMs(r.evolution.medianMs),
        formatMs(r.evolution.perTargetMedianMs),
        `${formatCount(r.speedup)}x`,
      ]),
    ),
  );
  out.push('');
  out.push(
    renderTable(
      [
        'preset',
        'B less accurate',
        'equal',
        'B more accurate',
        'not found',
        'other subnet',
        'mean gap',
        'max gap',
        'B evals/target',
      ],
      results.map((r) => [
        r.preset,
        String(r.accuracy.evolutionLess),
        String(r.accuracy.evolutionEqual),
        String(r.accuracy.evolutionMore),
        String(r.accuracy.notFound),
        String(r.accuracy.differentSubnet),
        formatPoints(r.accuracy.meanGap),
        formatPoints(r.accuracy.maxGap),
        r.evolution.meanDistinctEvaluations.toFixed(1),
      ]),
    ),
  );
  out.push('');
  out.push('Gap = exhaustive accuracy - evolution accuracy, in percentage points of top-1.');
  for (const r of results) {
    out.push(
      `${r.preset}: runs A [${r.exhaustive.runsMs.map(formatMs).join(', ')}] (first pass of each run [${r.exhaustive.firstPassMs.map(formatMs).join(', ')}]), B [${r.evolution.runsMs.map(formatMs).join(', ')}]; budgets ${r.targets.firstBudgetMs.toFixed(3)}..${r.targets.lastBudgetMs.toFixed(3)} ms; untimed set-up: measurements ${formatMs(r.table.buildMeasurementsMs)}, lookup Map ${formatMs(r.table.buildLookupMapMs)}${r.deterministic ? '' : '; WARNING: choices differed between runs'}`,
    );
  }
  out.push('');
  for (const r of results) {
    const accuracyOk = r.accuracy.evolutionMore === 0 && r.accuracy.notFound === 0;
    out.push(
      `Goal (A >= ${formatCount(GOAL_SPEEDUP)}x faster with equal or better accuracy), ${r.preset}: ${r.goalMet ? 'MET' : 'NOT MET'} (${formatCount(r.speedup)}x; accuracy ${accuracyOk ? 'equal or better on every target' : 'WORSE on some target'})`,
    );
  }
  out.push(`Total benchmark time: ${totalSeconds.toFixed(1)} s`);
  return out.join('\n');
}

function usage(): string {
  return 'usage: npx tsx bench/selection.ts [--runs N] [--preset imagenet|small|all] [--json]';
}

function parseOptions(args: string[]) {
  return parseArgs({
    args,
    options: {
      runs: { type: 'string' },
      preset: { type: 'string', default: 'all' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
    allowPositionals: false,
  }).values;
}

type Options = ReturnType<typeof parseOptions>;

function main(): void {
  let values: Options;
  try {
    values = parseOptions(process.argv.slice(2));
  } catch (error) {
    console.error(`${error instanceof Error ? error.message : String(error)}\n${usage()}`);
    process.exitCode = 2;
    return;
  }
  if (values.help) {
    console.log(usage());
    return;
  }
  const runs = values.runs === undefined ? DEFAULT_RUNS : Number(values.runs);
  if (!Number.isSafeInteger(runs) || runs < 1) {
    console.error(`--runs must be a positive integer, got ${String(values.runs)}\n${usage()}`);
    process.exitCode = 2;
    return;
  }
  const presetArg = values.preset;
  const presets: ArchitecturePreset[] =
    presetArg === 'all'
      ? ['imagenet', 'small']
      : presetArg === 'imagenet' || presetArg === 'small'
        ? [presetArg]
        : [];
  if (presets.length === 0) {
    console.error(`--preset must be imagenet, small or all, got ${presetArg}\n${usage()}`);
    process.exitCode = 2;
    return;
  }

  const info = machine();
  const begin = process.hrtime.bigint();
  // Progress goes to stderr, so that --json leaves stdout with exactly one JSON object.
  const progress = (line: string): void => {
    process.stderr.write(`${line}\n`);
  };
  const results = presets.map((preset) => benchmarkPreset(preset, runs, progress));
  const totalSeconds = Number(process.hrtime.bigint() - begin) / 1e9;

  if (values.json) {
    console.log(
      JSON.stringify(
        {
          benchmark: 'selection',
          measuredAt: new Date().toISOString(),
          note: SYNTHETIC_NOTE,
          machine: info,
          settings: {
            runs,
            targets: TARGET_COUNT,
            tableSeed: TABLE_SEED,
            evolution: OFA_EVOLUTION,
            evolutionSeed: 'target index',
            timer: 'process.hrtime.bigint',
            exhaustivePassesPerRun: EXHAUSTIVE_PASSES_PER_RUN,
            warmup: `untimed: evolution over the first ${WARMUP_EVOLUTION_TARGETS} targets, then exhaustive over all targets x ${WARMUP_EXHAUSTIVE_PASSES}`,
          },
          goal: { speedup: GOAL_SPEEDUP, accuracy: 'equal or better on every target' },
          results,
          totalSeconds,
        },
        null,
        2,
      ),
    );
  } else {
    console.log(renderHuman(info, runs, results, totalSeconds));
  }
}

main();
