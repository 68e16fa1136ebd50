/**
 * Benchmark: the inference server against its limit, `model.predict` in-process, for the smallest
 * and the largest subnet of the small preset at batch 1.
 *
 *   npm run bench:serving -- [--runs 3] [--seconds 10] [--json out.json]
 *
 * For each model, each run measures side by side:
 * - in-process: `ServedModel.predict` (exactly what the server calls) on one 28x28 image,
 *   sequentially, for `--seconds`;
 * - server, 1 connection: `compofa-serve` in a child process, v2 infer requests with the same
 *   image sent one at a time by autocannon; the p50 difference to in-process is the server's
 *   overhead (goal: at most 1 ms);
 * - server, 64 connections, batching off and on: throughput at saturation (goal: zero errors,
 *   batching at least 2x).
 * Latencies are taken per response from autocannon's `response` event (sub-millisecond), not from
 * its whole-millisecond histogram. Reported: the median over runs of each figure.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import autocannon from 'autocannon';

import { SMALL_ARCHITECTURE } from '../compofa/architecture.js';
import { CompoundSpace } from '../compofa/design-space.js';
import { Random } from '../compofa/random.js';
import { ServedModel } from '../serving/model.js';
import { writeServedModel, type ServedSubnet } from '../test/fixtures/served-model.js';
import { loadTensorFlow } from '../trainer/backend.js';

const MAIN = fileURLToPath(new URL('../serving/main.ts', import.meta.url));
const SATURATION_CONNECTIONS = 64;

interface Latencies {
  readonly requests: number;
  readonly errors: number;
  readonly perSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

const quantile = (sorted: readonly number[], q: number): number =>
  sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;

const median = (values: readonly number[]): number =>
  quantile(
    [...values].sort((a, b) => a - b),
    0.5,
  );

function summarize(latenciesMs: number[], errors: number, seconds: number): Latencies {
  latenciesMs.sort((a, b) => a - b);
  return {
    requests: latenciesMs.length,
    errors,
    perSecond: latenciesMs.length / seconds,
    p50Ms: quantile(latenciesMs, 0.5),
    p99Ms: quantile(latenciesMs, 0.99),
  };
}

async function inProcess(
  model: ServedModel,
  image: Float32Array,
  seconds: number,
): Promise<Latencies> {
  const latencies: number[] = [];
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) {
    const started = performance.now();
    await model.predict(image, 1);
    latencies.push(performance.now() - started);
  }
  return summarize(latencies, 0, seconds);
}

/** A `compofa-serve` child process on a free port. */
async function startServer(
  modelDir: string,
  batching: boolean,
): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      MAIN,
      ...['--model-dir', modelDir, '--host', '127.0.0.1', '--port', '0', '--log-level', 'info'],
      ...(batching ? ['--batching', '--batch-max-size', '32', '--batch-max-delay-ms', '2'] : []),
    ],
    { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: '2' } },
  );
  let port: number | undefined;
  for await (const line of createInterface({ input: child.stderr })) {
    if (!line.startsWith('{')) continue;
    const record = JSON.parse(line) as { msg?: string; port?: number; error?: string };
    if (record.msg === 'listening') port = record.port;
    if (record.msg === 'ready' && port !== undefined) return { child, port };
    if (record.error !== undefined) throw new Error(`compofa-serve failed: ${record.error}`);
  }
  throw new Error('compofa-serve exited before it was ready');
}

async function stopServer(child: ChildProcess): Promise<void> {
  child.kill('SIGTERM');
  if (child.exitCode === null) await once(child, 'exit');
}

function load(
  port: number,
  body: string,
  connections: number,
  seconds: number,
): Promise<Latencies> {
  return new Promise((resolve, reject) => {
    const latencies: number[] = [];
    const instance = autocannon(
      {
        url: `http://127.0.0.1:${port}/v2/models/compofa/infer`,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
        connections,
        duration: seconds,
      },
      (error: unknown, result: autocannon.Result) => {
        if (error) {
          reject(error instanceof Error ? error : new Error(JSON.stringify(error)));
          return;
        }
        resolve(summarize(latencies, result.errors + result.non2xx + result.timeouts, seconds));
      },
    );
    instance.on('response', (_client, statusCode, _bytes, responseTimeMs) => {
      if (statusCode === 200) latencies.push(responseTimeMs);
    });
  });
}

interface ModelResult {
  readonly subnet: string;
  readonly inProcess: Latencies[];
  readonly serverOneConnection: Latencies[];
  readonly saturationUnbatched: Latencies[];
  readonly saturationBatched: Latencies[];
}

async function benchmarkModel(
  which: ServedSubnet,
  dir: string,
  runs: number,
  seconds: number,
): Promise<ModelResult> {
  const { tf } = await loadTensorFlow({ purpose: 'inference' });
  const modelDir = join(dir, which);
  const subnet = await writeServedModel(tf, modelDir, which, new CompoundSpace(SMALL_ARCHITECTURE));
  const model = await ServedModel.load(tf, modelDir, 1);
  await model.warmUp([1]);
  const random = new Random(7);
  const image = Float32Array.from({ length: model.rowSize }, () => random.next());
  const body = JSON.stringify({
    inputs: [{ name: 'image', datatype: 'FP32', shape: [1, 28, 28, 1], data: Array.from(image) }],
  });
  const result: ModelResult = {
    subnet,
    inProcess: [],
    serverOneConnection: [],
    saturationUnbatched: [],
    saturationBatched: [],
  };
  for (let run = 1; run <= runs; run++) {
    process.stderr.write(`${which} (${subnet}): run ${run}/${runs}\n`);
    result.inProcess.push(await inProcess(model, image, seconds));
    const unbatched = await startServer(modelDir, false);
    try {
      await load(unbatched.port, body, 1, 1); // warm-up of the connection and the JIT
      result.serverOneConnection.push(await load(unbatched.port, body, 1, seconds));
      result.saturationUnbatched.push(
        await load(unbatched.port, body, SATURATION_CONNECTIONS, seconds),
      );
    } finally {
      await stopServer(unbatched.child);
    }
    const batched = await startServer(modelDir, true);
    try {
      await load(batched.port, body, SATURATION_CONNECTIONS, 1);
      result.saturationBatched.push(
        await load(batched.port, body, SATURATION_CONNECTIONS, seconds),
      );
    } finally {
      await stopServer(batched.child);
    }
  }
  model.dispose();
  return result;
}

function report(results: readonly ModelResult[], runs: number, seconds: number): string {
  const m = (list: readonly Latencies[], key: keyof Latencies): number =>
    median(list.map((l) => l[key]));
  const lines = [
    `Serving benchmark: small preset, batch 1, ${runs} runs of ${seconds} s each, medians over runs`,
    `(${cpus().length} x ${cpus()[0]?.model ?? 'unknown CPU'}, Node ${process.version})`,
    '',
    '| subnet | in-process p50 / p99 | server (1 conn) p50 / p99 | overhead at p50 | 64 conns unbatched | 64 conns batched | batching gain | errors |',
    '|---|---|---|---|---|---|---|---|',
  ];
  for (const r of results) {
    const overhead = m(r.serverOneConnection, 'p50Ms') - m(r.inProcess, 'p50Ms');
    const unbatched = m(r.saturationUnbatched, 'perSecond');
    const batched = m(r.saturationBatched, 'perSecond');
    const errors = [...r.serverOneConnection, ...r.saturationUnbatched, ...r.saturationBatched]
      .map((l) => l.errors)
      .reduce((a, b) => a + b, 0);
    lines.push(
      `| ${r.subnet} | ${m(r.inProcess, 'p50Ms').toFixed(2)} / ${m(r.inProcess, 'p99Ms').toFixed(2)} ms (${m(r.inProcess, 'perSecond').toFixed(1)}/s) ` +
        `| ${m(r.serverOneConnection, 'p50Ms').toFixed(2)} / ${m(r.serverOneConnection, 'p99Ms').toFixed(2)} ms (${m(r.serverOneConnection, 'perSecond').toFixed(1)}/s) ` +
        `| ${overhead.toFixed(2)} ms | ${unbatched.toFixed(1)}/s | ${batched.toFixed(1)}/s | ${(batched / unbatched).toFixed(2)}x | ${errors} |`,
    );
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string', default: '3' },
      seconds: { type: 'string', default: '10' },
      json: { type: 'string' },
    },
  });
  const runs = Number(values.runs);
  const seconds = Number(values.seconds);
  const dir = await mkdtemp(join(tmpdir(), 'compofa-bench-serving-'));
  try {
    const results: ModelResult[] = [];
    for (const which of ['smallest', 'largest'] as const) {
      results.push(await benchmarkModel(which, dir, runs, seconds));
    }
    process.stdout.write(`${report(results, runs, seconds)}\n`);
    if (values.json !== undefined) await writeFile(values.json, JSON.stringify(results, null, 2));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
