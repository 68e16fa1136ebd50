/**
 * Benchmark: the inference server against its limit, `model.predict` in-process, for the smallest
 * and the largest subnet of the small preset at batch 1.
 *
 *   npm run bench:serving -- [--runs 3] [--seconds 10] [--json out.json]
 *
 * For each model, each run measures:
 * - latency, side by side: `ServedModel.predict` in-process (exactly what the server calls) and
 *   a v2 infer request with the same 28x28 image to `compofa-serve` in a child process over one
 *   kept-alive connection, alternating call by call; the server's overhead is the median of the
 *   paired differences (goal: at most 1 ms at p50). Alternating matters on a shared machine,
 *   whose speed drifts by tens of percent from one minute to the next.
 * - the machine's floor, in the same loop: a bare `node:http` server that keeps a core busy for
 *   the time the model took and answers at once (see BARE_SERVER); what the server adds beyond
 *   that floor is its own work.
 * - throughput at saturation with autocannon, 64 connections, batching off and on (goal: zero
 *   errors, batching at least 2x). Latencies come from autocannon's per-response event
 *   (sub-millisecond), not its whole-millisecond histogram.
 * Reported: the median over runs of each figure.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent } from 'node:http';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import autocannon from 'autocannon';

import { SMALL_ARCHITECTURE } from '../compofa/architecture.js';
import { CompoundSpace } from '../compofa/design-space.js';
import { Random } from '../compofa/random.js';
import { ServedModel } from '../serving/model.js';
import { DEFAULT_ENGINE } from '../compofa/engines.js';
import { writeServedModel, type ServedSubnet } from '../test/fixtures/served-model.js';
import { loadTensorFlow } from '../trainer/backend.js';
import { postInfer } from './report.js';

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

/**
 * The same image through `model.predict` in-process and through the server, alternating call by
 * call for `seconds`, so that both see the same machine (a shared machine's speed drifts by tens
 * of percent between one minute and the next). The overhead is the median of the paired
 * differences.
 */
async function sideBySide(
  model: ServedModel,
  image: Float32Array,
  port: number,
  barePort: number,
  body: string,
  seconds: number,
): Promise<{
  inProcess: Latencies;
  server: Latencies;
  overheadMs: number;
  aroundModelMs: number;
  floorMs: number;
  errors: number;
}> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const bareAgent = new Agent({ keepAlive: true, maxSockets: 1 });
  const local: number[] = [];
  const remote: number[] = [];
  const differences: number[] = [];
  const around: number[] = [];
  const floor: number[] = [];
  let errors = 0;
  const end = performance.now() + seconds * 1000;
  try {
    await postInfer(agent, port, body); // opens the connections
    await postInfer(bareAgent, barePort, body, { 'x-busy-ms': '1' });
    while (performance.now() < end) {
      const started = performance.now();
      await model.predict(image, 1);
      const direct = performance.now() - started;
      const served = await postInfer(agent, port, body).catch(() => {
        errors++;
        return undefined;
      });
      if (served === undefined) continue;
      local.push(direct);
      remote.push(served.roundTripMs);
      differences.push(served.roundTripMs - direct);
      around.push(served.roundTripMs - served.inferenceMs);
      const bare = await postInfer(bareAgent, barePort, body, {
        'x-busy-ms': served.inferenceMs.toFixed(3),
      });
      floor.push(bare.roundTripMs - bare.inferenceMs);
    }
  } finally {
    agent.destroy();
    bareAgent.destroy();
  }
  // Each side ran about half of the time.
  return {
    inProcess: summarize(local, 0, seconds / 2),
    server: summarize(remote, errors, seconds / 2),
    overheadMs: median(differences),
    aroundModelMs: median(around),
    floorMs: median(floor),
    errors,
  };
}

/**
 * The machine's floor for the same exchange: a bare `node:http` server in its own process that
 * reads the body, keeps its CPU busy for as long as the model took (`x-busy-ms`), and answers a
 * response of the size of ours. Its round trip minus the busy time is what any Node.js server
 * pays on this machine after that much work: reading a 16 KB body, waking the waiting client,
 * and whatever the CPU's caches and the hypervisor add after a long computation.
 */
const BARE_SERVER = `
const http = require('node:http');
const answer = JSON.stringify({ model_name: 'compofa', model_version: '1', outputs: [{ name: 'probabilities',
  datatype: 'FP32', shape: [1, 10], data: Array.from({ length: 10 }, (_, i) => 0.1 + i / 1e7) }] });
const server = http.createServer((request, response) => {
  const chunks = [];
  request.on('data', (chunk) => chunks.push(chunk));
  request.on('end', () => {
    const busyMs = Number(request.headers['x-busy-ms'] ?? 0);
    const started = performance.now();
    while (performance.now() - started < busyMs);
    response.setHeader('content-type', 'application/json');
    response.setHeader('server-timing', 'inference;dur=' + (performance.now() - started).toFixed(3));
    response.end(answer);
  });
});
server.listen(0, '127.0.0.1', () => console.log(server.address().port));
`;

async function startBareServer(): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, ['-e', BARE_SERVER], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const [line] = (await once(createInterface({ input: child.stdout }), 'line')) as [string];
  return { child, port: Number(line) };
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
  /** Per run: the median of (server - in-process) over paired calls. */
  readonly overheadMs: number[];
  /** Per run: the median of (round trip - the server's own inference time). */
  readonly aroundModelMs: number[];
  /** Per run: the median of (round trip - busy time) of the bare node:http server. */
  readonly floorMs: number[];
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
  // The engine the server child runs by default.
  const model = await ServedModel.load({
    engine: DEFAULT_ENGINE,
    modelDir,
    maxBatchSize: 1,
  });
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
    overheadMs: [],
    aroundModelMs: [],
    floorMs: [],
    saturationUnbatched: [],
    saturationBatched: [],
  };
  for (let run = 1; run <= runs; run++) {
    process.stderr.write(`${which} (${subnet}): run ${run}/${runs}\n`);
    const unbatched = await startServer(modelDir, false);
    const bare = await startBareServer();
    try {
      await load(unbatched.port, body, 1, 1); // warm-up of the connection and the JIT
      const paired = await sideBySide(model, image, unbatched.port, bare.port, body, seconds);
      result.inProcess.push(paired.inProcess);
      result.serverOneConnection.push(paired.server);
      result.overheadMs.push(paired.overheadMs);
      result.aroundModelMs.push(paired.aroundModelMs);
      result.floorMs.push(paired.floorMs);
      result.saturationUnbatched.push(
        await load(unbatched.port, body, SATURATION_CONNECTIONS, seconds),
      );
    } finally {
      await stopServer(unbatched.child);
      await stopServer(bare.child);
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
  await model.dispose();
  return result;
}

function report(results: readonly ModelResult[], runs: number, seconds: number): string {
  const m = (list: readonly Latencies[], key: keyof Latencies): number =>
    median(list.map((l) => l[key]));
  const lines = [
    `Serving benchmark: small preset, batch 1, ${runs} runs of ${seconds} s each, medians over runs`,
    `(${cpus().length} x ${cpus()[0]?.model ?? 'unknown CPU'}, Node ${process.version})`,
    '',
    '| subnet | in-process p50 / p99 | server (1 conn) p50 / p99 | overhead vs in-process (paired median) | round trip minus server inference time | bare node:http floor | 64 conns unbatched | 64 conns batched | batching gain | errors |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const r of results) {
    const overhead = median(r.overheadMs);
    const unbatched = m(r.saturationUnbatched, 'perSecond');
    const batched = m(r.saturationBatched, 'perSecond');
    const errors = [...r.serverOneConnection, ...r.saturationUnbatched, ...r.saturationBatched]
      .map((l) => l.errors)
      .reduce((a, b) => a + b, 0);
    lines.push(
      `| ${r.subnet} | ${m(r.inProcess, 'p50Ms').toFixed(2)} / ${m(r.inProcess, 'p99Ms').toFixed(2)} ms (${m(r.inProcess, 'perSecond').toFixed(1)}/s) ` +
        `| ${m(r.serverOneConnection, 'p50Ms').toFixed(2)} / ${m(r.serverOneConnection, 'p99Ms').toFixed(2)} ms (${m(r.serverOneConnection, 'perSecond').toFixed(1)}/s) ` +
        `| ${overhead.toFixed(2)} ms | ${median(r.aroundModelMs).toFixed(2)} ms | ${median(r.floorMs).toFixed(2)} ms | ${unbatched.toFixed(1)}/s | ${batched.toFixed(1)}/s | ${(batched / unbatched).toFixed(2)}x | ${errors} |`,
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
