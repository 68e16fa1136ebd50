#!/usr/bin/env node
/**
 * `compofa`: the CompOFA programs behind one command line, the same commands the operator's pods
 * run. `compofa <command> --help` describes each; `--json` prints one machine-readable result on
 * stdout; progress goes to stderr, with a bar and ETA on a terminal only. Exit codes: 0 done,
 * 1 failed (the message names what and why), 2 bad usage, 3 no subnet meets the budget.
 */
import { realpathSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, type ParseArgsConfig } from 'node:util';

import { ARCHITECTURE_PRESETS, type ArchitecturePreset } from '../compofa/architecture.js';
import { createDesignSpace, type DesignSpace, type SubnetSpec } from '../compofa/design-space.js';
import { evolutionarySearch } from '../compofa/evolution.js';
import { selectSubnet } from '../compofa/selection.js';
import {
  DEFAULT_ENGINE,
  engineMismatch,
  parseEngine,
  type EngineFacts,
  type EngineName,
} from '../compofa/engines.js';
import {
  formatTable,
  joinTables,
  readAccuracyTable,
  readLatencyTable,
  tableEngine,
  writeTable,
} from '../compofa/tables.js';
import type { DatasetSpec } from './datasets.js';
import type { ConfigMapReporter } from './report.js';

/** Thrown for wrong usage; exit code 2 with the command's help. */
class UsageError extends Error {}

const COMMON = {
  preset: { type: 'string', default: 'small' },
  'design-space': { type: 'string', default: 'compound' },
  json: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
  /** In a pod: the ConfigMap (NAME or NAMESPACE/NAME) that receives progress and results. */
  'report-configmap': { type: 'string' },
} as const;

/** The engine that serves (or will serve) the subnets; default COMPOFA_ENGINE, else onnxruntime. */
const ENGINE = { engine: { type: 'string' } } as const;

const TABLE_INPUTS = {
  ...ENGINE,
  accuracy: { type: 'string' },
  latency: { type: 'string' },
  'budget-ms': { type: 'string' },
  statistic: { type: 'string', default: 'p95' },
} as const;

const DATA = {
  dataset: { type: 'string', default: 'fashion-mnist' },
  'dataset-path': { type: 'string' },
  'limit-per-class': { type: 'string' },
  seed: { type: 'string', default: '0' },
} as const;

/** Options of the commands that read a trained checkpoint and re-calibrate batch norm. */
const CHECKPOINT = {
  ...COMMON,
  ...DATA,
  'checkpoint-dir': { type: 'string' },
  out: { type: 'string' },
  'calibration-images': { type: 'string', default: '2000' },
} as const;

interface Command {
  readonly summary: string;
  readonly usage: string;
  readonly options: NonNullable<ParseArgsConfig['options']>;
  run(values: Values, out: Output): Promise<number>;
}

type Values = Record<string, string | boolean | undefined>;

/** One progress update of a long command. */
interface Progress {
  /** What the operator shows as the stage: a training phase, `evaluation`, `profiling`. */
  readonly stage: string;
  /** The bar's text. */
  readonly label: string;
  readonly done: number;
  readonly total: number;
  readonly startedMs: number;
  /** The command's own estimate; else the pace since `startedMs`. */
  readonly etaSeconds?: number;
  readonly epoch?: number;
}

/** Where results and progress go: the terminal, and the report ConfigMap when there is one. */
interface Output {
  readonly json: boolean;
  result(human: string, machine: unknown): void;
  progress(update: Progress): void;
  /** Hands a finished table to the operator (no-op without --report-configmap). */
  publish(key: string, content: string): Promise<void>;
}

const COMMANDS: Readonly<Record<string, Command>> = {
  select: {
    summary: 'the most accurate subnet whose latency fits a budget (exhaustive)',
    usage:
      'compofa select --accuracy accuracy.json --latency latency.json --budget-ms 5 [--accuracy-floor 0.9] [--statistic p95|median] [--engine onnxruntime|tfjs]',
    options: { ...COMMON, ...TABLE_INPUTS, 'accuracy-floor': { type: 'string' } },
    async run(values, out) {
      const { space, measurements } = await tables(values);
      const floor =
        values['accuracy-floor'] === undefined ? undefined : number(values, 'accuracy-floor');
      const result = selectSubnet(measurements, {
        latencyBudgetMs: number(values, 'budget-ms'),
        ...(floor === undefined ? {} : { accuracyFloor: floor }),
      });
      out.result(
        result.message,
        result.ok ? { ...result, subnet: space.parse(result.selected.id) } : result,
      );
      return result.ok ? 0 : 3;
    },
  },
  search: {
    summary: "OFA's evolutionary search over the same tables (the baseline)",
    usage:
      'compofa search --accuracy accuracy.json --latency latency.json --budget-ms 5 [--generations 500] [--population 100] [--seed 0]',
    options: {
      ...COMMON,
      ...TABLE_INPUTS,
      generations: { type: 'string', default: '500' },
      population: { type: 'string', default: '100' },
      seed: { type: 'string', default: '0' },
    },
    async run(values, out) {
      const { space, measurements } = await tables(values);
      const byId = new Map(measurements.map((m) => [m.id, m]));
      const result = evolutionarySearch(
        space,
        (spec) => byId.get(space.format(spec)),
        number(values, 'budget-ms'),
        {
          generations: integer(values, 'generations'),
          populationSize: integer(values, 'population'),
          seed: integer(values, 'seed'),
        },
      );
      out.result(
        result.found
          ? `${result.id}: accuracy ${(result.accuracy * 100).toFixed(2)}% at ${result.latencyMs} ms (${result.evaluations} subnets evaluated)`
          : result.message,
        result,
      );
      return result.found ? 0 : 3;
    },
  },
  train: {
    summary: 'train the supernet: teacher, then compound (or progressive-shrinking) phases',
    usage:
      'compofa train --checkpoint-dir ckpt [--resume] [--preset small] [--dataset fashion-mnist] [--epochs-scale 0.01] [--batch-size 64] [--checkpoint-every 100]',
    options: {
      ...COMMON,
      ...DATA,
      'checkpoint-dir': { type: 'string' },
      'epochs-scale': { type: 'string', default: '1' },
      'batch-size': { type: 'string', default: '64' },
      'checkpoint-every': { type: 'string', default: '100' },
      resume: { type: 'boolean', default: false },
    },
    async run(values, out) {
      const checkpointDir = required(values, 'checkpoint-dir');
      const { loadCheckpoint } = await import('./checkpoint.js');
      // Never continue someone else's run by accident, nor start over on top of one.
      if (values.resume !== true && (await loadCheckpoint(checkpointDir))) {
        throw new UsageError(
          `${checkpointDir} already holds a checkpoint: pass --resume to continue it, or choose another --checkpoint-dir`,
        );
      }
      const { tf, space, dataset } = await trainingInputs(values, 'training');
      const { paperSchedule, scaleSchedule, trainSupernet } = await import('./train.js');
      const started = Date.now();
      const result = await trainSupernet(tf, {
        space,
        dataset,
        phases: scaleSchedule(paperSchedule(space.kind), number(values, 'epochs-scale')),
        batchSize: integer(values, 'batch-size'),
        seed: integer(values, 'seed'),
        checkpointDir,
        checkpointEverySteps: integer(values, 'checkpoint-every'),
        onProgress: (p) => {
          out.progress({
            stage: p.phase,
            label: `${p.phase} epoch ${p.epoch + 1} loss ${p.loss.toFixed(3)}`,
            done: p.step,
            total: p.totalSteps,
            startedMs: started,
            etaSeconds: p.etaSeconds,
            epoch: p.epoch + 1,
          });
        },
      });
      const summary = {
        steps: result.step,
        totalSteps: result.totalSteps,
        resumedFromStep: result.resumedFromStep ?? null,
        finalLoss: result.losses.at(-1) ?? null,
        checkpointDir: values['checkpoint-dir'],
      };
      await out.publish('train.json', JSON.stringify(summary));
      out.result(
        `trained ${result.step} of ${result.totalSteps} steps${result.resumedFromStep === undefined ? '' : ` (resumed at ${result.resumedFromStep})`}; checkpoint in ${String(values['checkpoint-dir'])}`,
        summary,
      );
      return 0;
    },
  },
  evaluate: {
    summary: 'the accuracy table: every subnet, batch norm re-calibrated per subnet',
    usage:
      'compofa evaluate --checkpoint-dir ckpt --out accuracy.json [--subnets id,id,...] [--calibration-images 2000]',
    options: { ...CHECKPOINT, subnets: { type: 'string' } },
    async run(values, out) {
      const { tf, space, dataset, supernet, step } = await trainedSupernet(values, 'evaluation');
      const { evaluateSubnets } = await import('./evaluate.js');
      const started = Date.now();
      const table = evaluateSubnets(tf, supernet, dataset, {
        ...subnetList(space, values),
        calibrationImages: integer(values, 'calibration-images'),
        seed: integer(values, 'seed'),
        settings: { checkpointStep: step },
        onProgress: (done, total, row) => {
          out.progress({ stage: 'evaluation', label: row.subnet, done, total, startedMs: started });
        },
      });
      await writeOut(required(values, 'out'), table);
      await out.publish('accuracy.json', formatTable(table));
      const best = [...table.rows].sort((a, b) => b.accuracy - a.accuracy)[0];
      out.result(
        `${table.rows.length} subnets evaluated; best ${best?.subnet ?? '-'} at ${((best?.accuracy ?? 0) * 100).toFixed(2)}%; written to ${String(values.out)}`,
        { out: values.out, rows: table.rows.length, best },
      );
      return 0;
    },
  },
  profile: {
    summary: 'the latency table of this machine: every subnet (or --subnets) timed',
    usage:
      'compofa profile --out latency.json [--engine onnxruntime|tfjs] [--threads N] [--batch-size 1] [--warmup-runs 5] [--timed-runs 10] [--subnets id,id,...]',
    options: {
      ...COMMON,
      ...ENGINE,
      /** The engine's threads, as serving sets them; default COMPOFA_THREADS, else the engine's. */
      threads: { type: 'string' },
      out: { type: 'string' },
      subnets: { type: 'string' },
      'batch-size': { type: 'string', default: '1' },
      'warmup-runs': { type: 'string', default: '5' },
      'timed-runs': { type: 'string', default: '10' },
    },
    async run(values, out) {
      const { loadTensorFlow } = await import('./backend.js');
      const { profileSubnets } = await import('./profile.js');
      const space = designSpace(values);
      const engine = engineName(values);
      const threads = engineThreads(values);
      if (engine === 'tfjs' && threads !== undefined) {
        const { setTensorFlowThreads } = await import('./backend.js');
        setTensorFlowThreads(threads);
      }
      const runtime = await loadTensorFlow({ purpose: 'profiling' });
      const subnets = subnetList(space, values).subnets ?? defaultSubnets(space);
      const started = Date.now();
      const table = await profileSubnets(runtime, space, subnets, {
        engine,
        ...(threads === undefined ? {} : { threads }),
        batchSize: integer(values, 'batch-size'),
        warmupRuns: integer(values, 'warmup-runs'),
        timedRuns: integer(values, 'timed-runs'),
        ...(process.env.NODE_NAME ? { device: { nodeName: process.env.NODE_NAME } } : {}),
        onProgress: (done, total, subnet) => {
          out.progress({ stage: 'profiling', label: subnet, done, total, startedMs: started });
        },
      });
      await writeOut(required(values, 'out'), table);
      await out.publish('latency.json', formatTable(table));
      out.result(
        `${table.rows.length} subnets profiled on ${table.device.cpuModel} with ${table.device.engine ?? 'tfjs'} ${table.device.engineVersion ?? ''} on ${table.device.threads} threads; written to ${String(values.out)}`,
        { out: values.out, rows: table.rows.length, device: table.device },
      );
      return 0;
    },
  },
  extract: {
    summary: 'one subnet as a standard TensorFlow.js model (model.json + weights) and model.onnx',
    usage:
      'compofa extract --checkpoint-dir ckpt --subnet r28-d2e3-d3e4-d4e6-d2e3-d3e4 --out model-dir [--calibration-images 2000]',
    options: { ...CHECKPOINT, subnet: { type: 'string' } },
    async run(values, out) {
      const { tf, space, dataset, supernet, step } = await trainedSupernet(values, 'extraction');
      const { buildSubnetModel, saveSubnetModel } = await import('./extract.js');
      const { calibrationBatches, recalibrateFor } = await import('./evaluate.js');
      const spec = parseSubnet(space, required(values, 'subnet'));
      // The same seeded re-calibration set as `evaluate`, so the model matches its table row.
      const calibration = calibrationBatches(
        tf,
        dataset,
        integer(values, 'calibration-images'),
        200,
        integer(values, 'seed'),
      );
      recalibrateFor(tf, supernet, spec, calibration);
      tf.dispose(calibration);
      const model = buildSubnetModel(tf, supernet, spec);
      const target = required(values, 'out');
      await saveSubnetModel(model, target);
      await out.publish(
        'extract.json',
        JSON.stringify({ subnet: space.format(spec), out: target, checkpointStep: step }),
      );
      out.result(`${space.format(spec)} extracted to ${target}`, {
        out: target,
        subnet: space.format(spec),
      });
      return 0;
    },
  },
};

function number(values: Values, name: string): number {
  const text = required(values, name);
  const value = Number(text);
  if (!Number.isFinite(value)) throw new UsageError(`--${name} must be a number, got '${text}'`);
  return value;
}

/** --engine, else COMPOFA_ENGINE (what the operator sets on its pods), else the default. */
function engineName(values: Values): EngineName {
  const value = values.engine ?? process.env.COMPOFA_ENGINE ?? DEFAULT_ENGINE;
  try {
    return parseEngine(String(value), '--engine (COMPOFA_ENGINE)');
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

/** --threads, else COMPOFA_THREADS (what the operator sets), else undefined: the engine's own. */
function engineThreads(values: Values): number | undefined {
  const text = values.threads ?? process.env.COMPOFA_THREADS;
  if (text === undefined || text === '') return undefined;
  const threads = Number(text);
  if (!Number.isInteger(threads) || threads < 1)
    throw new UsageError(
      `--threads (COMPOFA_THREADS) must be an integer of at least 1, got '${String(text)}'`,
    );
  return threads;
}

/** The engine of that name installed here, with its version. */
async function installedEngine(name: EngineName): Promise<EngineFacts> {
  const { onnxRuntimeFacts, tfjsEngineFacts } = await import('./engine.js');
  if (name === 'onnxruntime') return onnxRuntimeFacts();
  const { loadTensorFlow } = await import('./backend.js');
  return tfjsEngineFacts((await loadTensorFlow({ purpose: 'inference', log: () => undefined })).tf);
}

function integer(values: Values, name: string): number {
  const value = number(values, name);
  if (!Number.isInteger(value)) throw new UsageError(`--${name} must be an integer, got ${value}`);
  return value;
}

function required(values: Values, name: string): string {
  const value = values[name];
  if (typeof value !== 'string' || value === '') throw new UsageError(`--${name} is required`);
  return value;
}

function designSpace(values: Values): DesignSpace {
  const preset = required(values, 'preset');
  if (!(preset in ARCHITECTURE_PRESETS))
    throw new UsageError(
      `--preset must be one of ${Object.keys(ARCHITECTURE_PRESETS).join(', ')}, got '${preset}'`,
    );
  const kind = required(values, 'design-space');
  if (kind !== 'compound' && kind !== 'elastic')
    throw new UsageError(`--design-space must be compound or elastic, got '${kind}'`);
  return createDesignSpace(kind, ARCHITECTURE_PRESETS[preset as ArchitecturePreset]);
}

function parseSubnet(space: DesignSpace, id: string): SubnetSpec {
  try {
    return space.parse(id);
  } catch (error) {
    throw new UsageError(`--subnet: ${(error as Error).message}`);
  }
}

function subnetList(space: DesignSpace, values: Values): { subnets?: SubnetSpec[] } {
  const text = values.subnets;
  return typeof text === 'string'
    ? { subnets: text.split(',').map((id) => parseSubnet(space, id.trim())) }
    : {};
}

function defaultSubnets(space: DesignSpace): Iterable<SubnetSpec> {
  if ('enumerate' in space && typeof space.enumerate === 'function')
    return (space.enumerate as () => Iterable<SubnetSpec>)();
  throw new UsageError('the elastic space is too large to profile whole: pass --subnets');
}

async function tables(
  values: Values,
): Promise<{ space: DesignSpace; measurements: ReturnType<typeof joinTables>['measurements'] }> {
  const space = designSpace(values);
  const statistic = required(values, 'statistic');
  if (statistic !== 'p95' && statistic !== 'median')
    throw new UsageError(`--statistic must be p95 or median, got '${statistic}'`);
  const latencyPath = required(values, 'latency');
  const [accuracy, latency] = await Promise.all([
    readAccuracyTable(required(values, 'accuracy'), space),
    readLatencyTable(latencyPath, space),
  ]);
  // A table measured with another engine or version does not describe what will serve.
  const mismatch = engineMismatch(
    tableEngine(latency),
    await installedEngine(engineName(values)),
    latencyPath,
  );
  if (mismatch) throw new Error(mismatch);
  return {
    space,
    measurements: joinTables(accuracy, latency, statistic).measurements,
  };
}

async function trainingInputs(values: Values, purpose: 'training' | 'evaluation' | 'extraction') {
  const space = designSpace(values);
  const { loadTensorFlow } = await import('./backend.js');
  const { loadDataset } = await import('./datasets.js');
  const { tf } = await loadTensorFlow({ purpose });
  const architecture = space.architecture;
  const kind = required(values, 'dataset');
  const limit =
    values['limit-per-class'] === undefined
      ? {}
      : { limitPerClass: integer(values, 'limit-per-class') };
  const spec: DatasetSpec | undefined =
    kind === 'fashion-mnist' || kind === 'mnist'
      ? { kind, ...limit }
      : kind === 'imagefolder'
        ? { kind, path: required(values, 'dataset-path') }
        : undefined;
  if (!spec)
    throw new UsageError(`--dataset must be fashion-mnist, mnist or imagefolder, got '${kind}'`);
  const resolution = architecture.resolutions.at(-1) ?? 0;
  const dataset = await loadDataset(spec, {
    resolution,
    channels: architecture.inputChannels,
    seed: integer(values, 'seed'),
  });
  return { tf, space, dataset };
}

/** The dataset and the supernet of `--checkpoint-dir`. */
async function trainedSupernet(values: Values, purpose: 'evaluation' | 'extraction') {
  const inputs = await trainingInputs(values, purpose);
  const { loadTrainedSupernet } = await import('./train.js');
  const trained = await loadTrainedSupernet(
    inputs.tf,
    inputs.space,
    required(values, 'checkpoint-dir'),
  );
  return { ...inputs, ...trained };
}

async function writeOut(path: string, table: Parameters<typeof writeTable>[1]): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeTable(path, table);
}

function createOutput(json: boolean, reporter: ConfigMapReporter | undefined): Output {
  const bar = !json && process.stderr.isTTY;
  return {
    json,
    result(human, machine) {
      if (bar) process.stderr.write('\n');
      process.stdout.write(json ? `${JSON.stringify(machine)}\n` : `${human}\n`);
    },
    progress(update) {
      const { done, total, startedMs } = update;
      const now = Date.now();
      const elapsed = (now - startedMs) / 1000;
      const eta =
        update.etaSeconds ?? (done > 0 ? Math.round((elapsed / done) * (total - done)) : undefined);
      reporter?.progress({
        stage: update.stage,
        step: done,
        totalSteps: total,
        ...(update.epoch === undefined ? {} : { epoch: update.epoch }),
        ...(elapsed > 0 && done > 0 ? { stepsPerSecond: done / elapsed } : {}),
        ...(eta === undefined ? {} : { eta: new Date(now + eta * 1000).toISOString() }),
        updatedAt: new Date(now).toISOString(),
      });
      if (!bar) return;
      const width = 30;
      const filled = Math.round((done / total) * width);
      process.stderr.write(
        `\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} ETA ${Math.round(eta ?? 0)}s ${update.label.slice(0, 40)}\x1b[K`,
      );
    },
    async publish(key, content) {
      await reporter?.publish(key, content);
    },
  };
}

function help(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((name) => name.length));
  return [
    'compofa: train a CompOFA supernet, measure its subnets, and pick and extract the right one per device.',
    '',
    'Usage: compofa <command> [options]    (compofa <command> --help for its options)',
    '',
    ...Object.entries(COMMANDS).map(
      ([name, command]) => `  ${name.padEnd(width)}  ${command.summary}`,
    ),
    '',
    'Common options: --preset small|imagenet, --design-space compound|elastic, --json',
    'Exit codes: 0 done, 1 failed, 2 bad usage, 3 no subnet meets the budget.',
  ].join('\n');
}

/** Runs the command line `args` and resolves with the exit code. */
export async function main(args: readonly string[]): Promise<number> {
  const [name, ...rest] = args;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${help()}\n`);
    return name === undefined ? 2 : 0;
  }
  const command = COMMANDS[name];
  if (!command) {
    process.stderr.write(`compofa: unknown command '${name}'\n\n${help()}\n`);
    return 2;
  }
  try {
    const { values } = parseArgs({
      args: [...rest],
      options: command.options,
      strict: true,
      allowPositionals: false,
    });
    if (values.help === true) {
      process.stdout.write(`${name}: ${command.summary}\n\nUsage: ${command.usage}\n`);
      return 0;
    }
    const reportTo = values['report-configmap'];
    let reporter: ConfigMapReporter | undefined;
    if (typeof reportTo === 'string') {
      // client-node is loaded only by pods that report to the operator.
      const report = await import('./report.js');
      reporter = report.ConfigMapReporter.fromEnvironment(report.parseReportTarget(reportTo));
    }
    try {
      return await command.run(values as Values, createOutput(values.json === true, reporter));
    } finally {
      await reporter?.flush();
    }
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    if (
      error instanceof UsageError ||
      (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')
    ) {
      process.stderr.write(`compofa ${name}: ${message}\nUsage: ${command.usage}\n`);
      return 2;
    }
    process.stderr.write(`compofa ${name}: ${message}\n`);
    return 1;
  }
}

// Run when this file is the program, also through a symlink or an npm bin entry of another name.
if (
  process.argv[1] &&
  realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url))
) {
  process.exitCode = await main(process.argv.slice(2));
}
