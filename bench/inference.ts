/**
 * Benchmark: the inference engines side by side (issue 12), in one run.
 *
 *   npm run bench:inference -- [--quick] [--parts A,B,C,D,E] [--threads N] [--rounds N] [--cell-ms N]
 *     [--memory-requests N] [--profile-tfjs N|all] [--python PATH | --no-python] [--json FILE]
 *
 * For the smallest and the largest compound subnet of the small and the ImageNet preset, extracted
 * as `compofa extract` writes them (model.json, weights.bin and model.onnx in one folder; untrained:
 * latency does not depend on the weights' values), at batch 1 and 16:
 *
 * A. In-process, one call of each engine on the same input, p50 and p99:
 *    - tfjs: `ServedModel` with `--engine tfjs` (eager tfjs-node, oneDNN at the serving default);
 *    - onnxruntime-node: `ServedModel` with `--engine onnxruntime` (what compofa-serve runs);
 *    - the floor, in one Python child (bench/inference_floor.py, in the venv of
 *      bench/setup-keras.sh) reading the same files: Python's onnxruntime on model.onnx, and
 *      TensorFlow's graph mode, a `tf.function` of the Keras model rebuilt from model.json and
 *      weights.bin (the same layers and weights; its output is checked against onnxruntime's).
 *    Every engine gets the same intra- and inter-op threads (--threads, default: the machine's
 *    cores). Rounds (--rounds) go engine after engine, model after model, so that every engine
 *    sees the machine drift alike; each round runs each cell for about --cell-ms (at least 3
 *    calls). p50 is the median over rounds of each round's median, p99 the nearest-rank 99th
 *    percentile of all timed calls of all rounds.
 * B. The server round trip: `compofa-serve` (serving/main.ts) in a child process on loopback,
 *    one kept-alive connection, sequential v2 infer requests with a JSON body (flat `data`) and
 *    with a binary body (binary tensor data in and out), alternating call by call with the same
 *    call in-process and with a bare `node:http` server (the floor of bench/serving.ts) that
 *    reads the same body, keeps its CPU busy for the server's own inference time and answers as
 *    many bytes as the server did. Reported: the median of the paired differences round trip
 *    minus in-process, and the floor's round trip minus its busy time: what any Node.js server
 *    pays for that exchange on this machine. Also the small preset's largest subnet served by
 *    `--engine tfjs`, for the served speed-up.
 * C. Decoding a 224x224x3 FP32 request through the server's own parser (serving/protocol.ts
 *    `parseInferRequest`, after the JSON parse that serving/server.ts does): JSON body against
 *    binary body, median per request.
 * D. Profiling: `profileSubnets` (trainer/profile.ts) over all 243 small-preset compound subnets
 *    with the default engine, as `compofa profile` runs it, and with tfjs for comparison
 *    (--profile-tfjs: how many subnets; a sample is scaled to 243).
 * E. Memory: VmRSS of a compofa-serve process (/proc/<pid>/status) after a warm-up and after
 *    --memory-requests binary requests with the ImageNet preset's smallest subnet.
 *
 * Each part prints a table; the last one checks the goals of issue 12. Results and method:
 * docs/benchmarks.md, "Inference engines". The oneDNN on/off comparison of the tfjs engine is
 * `npm run bench:onednn` (bench/inference-onednn.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { Agent } from 'node:http';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import {
  IMAGENET_ARCHITECTURE,
  SMALL_ARCHITECTURE,
  type Architecture,
} from '../compofa/architecture.js';
import { subnetCost } from '../compofa/cost.js';
import { CompoundSpace } from '../compofa/design-space.js';
import { DEFAULT_ENGINE, type EngineName } from '../compofa/engines.js';
import { ServedModel } from '../serving/model.js';
import { parseInferRequest, type ModelSignature } from '../serving/protocol.js';
import { writeServedModel, type ServedSubnet } from '../test/fixtures/served-model.js';
import {
  loadTensorFlow,
  setTensorFlowThreads,
  type TensorFlowRuntime,
} from '../trainer/backend.js';
import { onnxRuntimeFacts, tfjsEngineFacts } from '../trainer/engine.js';
import { profileSubnets } from '../trainer/profile.js';
import { benchPython, machine, postInfer, renderTable, type InferExchange } from './report.js';

const BENCH_DIR = dirname(fileURLToPath(import.meta.url));
const SERVE_MAIN = fileURLToPath(new URL('../serving/main.ts', import.meta.url));
const PRESETS: Readonly<Record<'small' | 'imagenet', Architecture>> = {
  small: SMALL_ARCHITECTURE,
  imagenet: IMAGENET_ARCHITECTURE,
};
const SUBNETS: readonly ServedSubnet[] = ['smallest', 'largest'];
const BATCHES = [1, 16] as const;
/** Room for a JSON body of 16 ImageNet images (about 50 MB); the server's default is 16 MiB. */
const MAX_BODY_BYTES = 256 * 1024 * 1024;

/** Issue 12's goals. */
const GOALS = {
  /** In-process onnxruntime-node p50 at most this multiple of Python's onnxruntime. */
  nodeOverPython: 1.1,
  /** Server round trip minus in-process at most this much above the bare node:http floor. */
  serverExcessMs: 0.3,
  /** The small preset's largest subnet at batch 1 served at least this much faster than tfjs. */
  servedSpeedup: 10,
  /** Profiling all 243 small-preset subnets with the default engine. */
  profileSeconds: 20,
  /** Decoding a 224x224x3 binary request at least this much cheaper than the JSON one. */
  decodeSpeedup: 5,
  /**
   * Resident memory growth over the requests after the warm-up. One leaked output tensor per
   * request (4 KB at 1,000 classes) would add about 40 MB over 10,000 requests.
   */
  memoryGrowthMiB: 16,
} as const;

type Engine = 'tfjs' | 'ort-node' | 'ort-python' | 'tf-python';
const ENGINE_LABELS: Readonly<Record<Engine, string>> = {
  tfjs: 'tfjs eager',
  'ort-node': 'onnxruntime-node',
  'ort-python': 'onnxruntime (Python)',
  'tf-python': 'TF graph (Python)',
};

/** The parts of the run (see the file's comment). */
const PARTS = ['A', 'B', 'C', 'D', 'E'] as const;
type Part = (typeof PARTS)[number];

interface Options {
  readonly quick: boolean;
  readonly parts: readonly Part[];
  readonly threads: number;
  readonly rounds: number;
  readonly cellMs: number;
  readonly memoryRequests: number;
  /** Subnets profiled with tfjs; 243 is all of them. */
  readonly profileTfjs: number;
  /** The Python floor's interpreter, or undefined to skip it. */
  readonly python: string | undefined;
  readonly json: string | undefined;
}

/** One extracted subnet, loaded by both engines in this process. */
interface Subject {
  readonly key: string;
  readonly preset: keyof typeof PRESETS;
  readonly which: ServedSubnet;
  readonly id: string;
  readonly macs: number;
  readonly dir: string;
  readonly tfjs: ServedModel;
  readonly ort: ServedModel;
}

// --- Statistics --------------------------------------------------------------------------------

/** Nearest-rank percentile `q` (0..1) of `values`. */
function percentile(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? NaN;
}

const median = (values: readonly number[]): number => percentile(values, 0.5);

function ms(value: number): string {
  if (!Number.isFinite(value)) return 'n/a';
  return Math.abs(value) < 10 ? value.toFixed(2) : value.toFixed(1);
}

const clamp = (value: number, low: number, high: number): number =>
  Math.min(high, Math.max(low, Math.round(value)));

function log(message: string): void {
  process.stderr.write(`[bench:inference] ${message}\n`);
}

/** A yes/no for a goal, with the measured value. */
function verdict(met: boolean | undefined): string {
  if (met === undefined) return 'not measured';
  return met ? 'met' : 'NOT met';
}

// --- The Python floor --------------------------------------------------------------------------

/** bench/inference_floor.py as a child: one JSON command per line, one JSON answer per line. */
class PythonFloor {
  private readonly child: ChildProcess;
  private readonly lines: AsyncIterator<string>;

  constructor(python: string, threads: number, env: NodeJS.ProcessEnv) {
    this.child = spawn(
      python,
      [join(BENCH_DIR, 'inference_floor.py'), '--threads', String(threads)],
      { stdio: ['pipe', 'pipe', 'pipe'], env },
    );
    if (!this.child.stdout || !this.child.stderr) throw new Error('no pipes to the Python child');
    this.lines = createInterface({ input: this.child.stdout })[Symbol.asyncIterator]();
    createInterface({ input: this.child.stderr }).on('line', (line) => {
      process.stderr.write(`  ${line}\n`);
    });
  }

  private async next(): Promise<Record<string, unknown>> {
    const line: IteratorResult<string, unknown> = await this.lines.next();
    if (line.done === true) throw new Error('the Python floor exited (see its messages above)');
    const reply = JSON.parse(line.value) as Record<string, unknown>;
    if (typeof reply.error === 'string') throw new Error(`the Python floor: ${reply.error}`);
    return reply;
  }

  ready(): Promise<Record<string, unknown>> {
    return this.next();
  }

  request(command: Readonly<Record<string, unknown>>): Promise<Record<string, unknown>> {
    this.child.stdin?.write(`${JSON.stringify(command)}\n`);
    return this.next();
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null) return;
    this.child.stdin?.end(`${JSON.stringify({ cmd: 'exit' })}\n`);
    const timer = setTimeout(() => this.child.kill('SIGTERM'), 10_000);
    await once(this.child, 'exit');
    clearTimeout(timer);
  }
}

// --- A. In-process -----------------------------------------------------------------------------

/** Every timed call of one engine, model and batch, per round. */
interface Cell {
  readonly subject: string;
  readonly batch: number;
  readonly engine: Engine;
  readonly calls: number;
  readonly rounds: number[][];
}

interface CellSummary {
  readonly p50: number;
  readonly p99: number;
  readonly calls: number;
}

function summarizeCell(cell: Cell | undefined): CellSummary | undefined {
  if (!cell || cell.rounds.length === 0) return undefined;
  return {
    p50: median(cell.rounds.map(median)),
    p99: percentile(cell.rounds.flat(), 0.99),
    calls: cell.rounds.reduce((sum, round) => sum + round.length, 0),
  };
}

function images(length: number): Float32Array {
  // Pixel-like values: 8-bit levels as float32, as a client sending decoded images would.
  return Float32Array.from({ length }, (_, i) => ((i * 7) % 256) / 255);
}

async function timeNode(
  model: ServedModel,
  input: Float32Array,
  batch: number,
  warmup: number,
  calls: number,
): Promise<number[]> {
  for (let i = 0; i < warmup; i++) await model.predict(input, batch);
  const times: number[] = [];
  for (let i = 0; i < calls; i++) {
    const started = performance.now();
    await model.predict(input, batch);
    times.push(performance.now() - started);
  }
  return times;
}

async function measureInProcess(
  subjects: readonly Subject[],
  python: PythonFloor | undefined,
  options: Options,
): Promise<Cell[]> {
  const engines: Engine[] = python
    ? ['tfjs', 'ort-node', 'ort-python', 'tf-python']
    : ['tfjs', 'ort-node'];
  const cells = new Map<string, Cell>();
  const inputs = new Map<string, Float32Array>();
  const time = async (
    subject: Subject,
    engine: Engine,
    batch: number,
    warmup: number,
    calls: number,
  ): Promise<number[]> => {
    if (engine === 'tfjs' || engine === 'ort-node') {
      const model = engine === 'tfjs' ? subject.tfjs : subject.ort;
      const key = `${subject.key}/${batch}`;
      let input = inputs.get(key);
      if (!input) {
        input = images(model.rowSize * batch);
        inputs.set(key, input);
      }
      return timeNode(model, input, batch, warmup, calls);
    }
    if (!python) throw new Error('no Python floor');
    const reply = await python.request({
      cmd: 'time',
      key: subject.key,
      engine: engine === 'ort-python' ? 'onnxruntime' : 'tf',
      batch,
      warmup,
      calls,
    });
    return (reply.ms as number[]).map(Number);
  };
  for (let round = 1; round <= options.rounds; round++) {
    const started = performance.now();
    for (const subject of subjects) {
      for (const batch of BATCHES) {
        for (const engine of engines) {
          const key = `${subject.key}/${batch}/${engine}`;
          let cell = cells.get(key);
          if (!cell) {
            // First round: warm up (TF traces its graph on the first call), then size the cell.
            const [probe = 1] = await time(subject, engine, batch, 3, 1);
            const calls = clamp(options.cellMs / probe, options.quick ? 2 : 3, 200);
            cell = { subject: subject.key, batch, engine, calls, rounds: [] };
            cells.set(key, cell);
          }
          cell.rounds.push(await time(subject, engine, batch, 1, cell.calls));
        }
      }
    }
    log(
      `in-process round ${round}/${options.rounds}: ${((performance.now() - started) / 1000).toFixed(0)} s`,
    );
  }
  return [...cells.values()];
}

function inProcessTable(subjects: readonly Subject[], cells: readonly Cell[]): string {
  const find = (subject: string, batch: number, engine: Engine) =>
    summarizeCell(
      cells.find((c) => c.subject === subject && c.batch === batch && c.engine === engine),
    );
  const both = (s: CellSummary | undefined): string =>
    s ? `${ms(s.p50)} / ${ms(s.p99)} (${s.calls})` : 'not run';
  const ratio = (a: CellSummary | undefined, b: CellSummary | undefined): string =>
    a && b ? `${(a.p50 / b.p50).toFixed(2)}x` : 'n/a';
  const rows: string[][] = [];
  for (const subject of subjects) {
    for (const batch of BATCHES) {
      const tfjs = find(subject.key, batch, 'tfjs');
      const ortNode = find(subject.key, batch, 'ort-node');
      const ortPython = find(subject.key, batch, 'ort-python');
      const tfPython = find(subject.key, batch, 'tf-python');
      rows.push([
        `${subject.preset} ${subject.which}`,
        String(batch),
        both(tfjs),
        both(ortNode),
        both(ortPython),
        both(tfPython),
        ratio(ortNode, ortPython),
        ratio(tfjs, ortNode),
      ]);
    }
  }
  return renderTable(
    [
      'model',
      'batch',
      `${ENGINE_LABELS.tfjs} p50 / p99 (n)`,
      `${ENGINE_LABELS['ort-node']} p50 / p99 (n)`,
      `${ENGINE_LABELS['ort-python']} p50 / p99 (n)`,
      `${ENGINE_LABELS['tf-python']} p50 / p99 (n)`,
      'node / Python ort',
      'tfjs / ort-node',
    ],
    rows,
  );
}

// --- B. The server round trip ------------------------------------------------------------------

/**
 * The floor: a bare `node:http` server in its own process that reads the whole body, keeps its
 * CPU busy for `x-busy-ms`, and answers `x-answer-bytes` bytes.
 */
const BARE_SERVER = `
const http = require('node:http');
const answers = new Map();
const server = http.createServer((request, response) => {
  const chunks = [];
  request.on('data', (chunk) => chunks.push(chunk));
  request.on('end', () => {
    Buffer.concat(chunks);
    const busyMs = Number(request.headers['x-busy-ms'] ?? 0);
    const size = Number(request.headers['x-answer-bytes'] ?? 2);
    const started = performance.now();
    while (performance.now() - started < busyMs);
    let answer = answers.get(size);
    if (answer === undefined) answers.set(size, (answer = Buffer.alloc(size, 0x20)));
    response.setHeader('content-type', 'application/octet-stream');
    response.setHeader('server-timing', 'inference;dur=' + (performance.now() - started).toFixed(3));
    response.end(answer);
  });
});
server.listen(0, '127.0.0.1', () => console.log(server.address().port));
`;

interface Server {
  readonly child: ChildProcess;
  readonly port: number;
}

async function startBareServer(): Promise<Server> {
  const child = spawn(process.execPath, ['-e', BARE_SERVER], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const [line] = (await once(createInterface({ input: child.stdout }), 'line')) as [string];
  return { child, port: Number(line) };
}

/** A `compofa-serve` child on a free loopback port, resolved once it is ready. */
function startServer(modelDir: string, engine: EngineName, threads: number): Promise<Server> {
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      SERVE_MAIN,
      ...['--model-dir', modelDir, '--engine', engine, '--threads', String(threads)],
      ...['--host', '127.0.0.1', '--port', '0', '--log-level', 'info'],
      ...['--max-body-bytes', String(MAX_BODY_BYTES), '--max-request-batch', '16'],
    ],
    { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: '2' } },
  );
  return new Promise((resolve, reject) => {
    let port: number | undefined;
    let settled = false;
    // Read every line for the server's whole life, so that its log never blocks on the pipe.
    createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', (line) => {
      if (settled || !line.startsWith('{')) return;
      const record = JSON.parse(line) as { msg?: string; port?: number; error?: string };
      if (record.msg === 'listening') port = record.port;
      if (record.msg === 'ready' && port !== undefined) {
        settled = true;
        resolve({ child, port });
      } else if (record.error !== undefined) {
        settled = true;
        reject(new Error(`compofa-serve failed: ${record.error}`));
      }
    });
    child.once('exit', (code) => {
      if (!settled) reject(new Error(`compofa-serve exited with ${String(code)} before ready`));
      settled = true;
    });
  });
}

async function stopServer(server: Server): Promise<void> {
  if (server.child.exitCode !== null || server.child.signalCode !== null) return;
  server.child.kill('SIGTERM');
  await once(server.child, 'exit');
}

type BodyKind = 'JSON' | 'binary';

interface RequestBody {
  readonly kind: BodyKind;
  readonly body: Buffer;
  readonly headers: Readonly<Record<string, string>>;
}

/** A v2 infer request of `batch` images: JSON with flat data, or binary tensor data in and out. */
function inferBody(
  kind: BodyKind,
  signature: ModelSignature,
  input: Float32Array,
  batch: number,
): RequestBody {
  const { inputName: name, resolution: r, channels: c } = signature;
  const shape = [batch, r, r, c];
  if (kind === 'JSON') {
    const json = { inputs: [{ name, datatype: 'FP32', shape, data: Array.from(input) }] };
    return {
      kind,
      body: Buffer.from(JSON.stringify(json)),
      headers: { 'content-type': 'application/json' },
    };
  }
  const header = Buffer.from(
    JSON.stringify({
      inputs: [
        { name, datatype: 'FP32', shape, parameters: { binary_data_size: input.byteLength } },
      ],
      parameters: { binary_data_output: true },
    }),
  );
  return {
    kind,
    body: Buffer.concat([header, Buffer.from(input.buffer, input.byteOffset, input.byteLength)]),
    headers: {
      'content-type': 'application/octet-stream',
      'inference-header-content-length': String(header.length),
    },
  };
}

interface RoundTrip {
  readonly subject: string;
  readonly engine: EngineName;
  readonly batch: number;
  readonly kind: BodyKind;
  readonly requestBytes: number;
  readonly responseBytes: number;
  readonly calls: number;
  readonly inProcessP50: number;
  readonly roundTripP50: number;
  readonly roundTripP99: number;
  /** Median over calls of (round trip - the in-process call just before it). */
  readonly overheadMs: number;
  /** Median over calls of (round trip - the server's own inference time). */
  readonly aroundModelMs: number;
  /** Median over calls of (bare server's round trip - its busy time). */
  readonly floorMs: number;
}

/**
 * In-process, server and floor, call by call, for about `cellMs` (10 to 400 calls: medians of
 * round-trip differences need many calls on a shared machine).
 */
async function pairedRoundTrips(
  subject: Subject,
  engine: EngineName,
  server: Server,
  bare: Server,
  batch: number,
  kind: BodyKind,
  cellMs: number,
): Promise<RoundTrip> {
  const model = engine === 'tfjs' ? subject.tfjs : subject.ort;
  const input = images(model.rowSize * batch);
  const request = inferBody(kind, model.signature, input, batch);
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const bareAgent = new Agent({ keepAlive: true, maxSockets: 1 });
  const direct: number[] = [];
  const served: InferExchange[] = [];
  const floor: number[] = [];
  const overhead: number[] = [];
  const triple = async (): Promise<void> => {
    const started = performance.now();
    await model.predict(input, batch);
    const inProcess = performance.now() - started;
    const exchange = await postInfer(agent, server.port, request.body, request.headers);
    const bareExchange = await postInfer(bareAgent, bare.port, request.body, {
      ...request.headers,
      'x-busy-ms': exchange.inferenceMs.toFixed(3),
      'x-answer-bytes': String(exchange.responseBytes),
    });
    direct.push(inProcess);
    served.push(exchange);
    overhead.push(exchange.roundTripMs - inProcess);
    floor.push(bareExchange.roundTripMs - bareExchange.inferenceMs);
  };
  try {
    // Warm-up: connections, the JIT, the server's first request of this size.
    const warmStarted = performance.now();
    for (let i = 0; i < 2; i++) await triple();
    const calls = clamp(cellMs / ((performance.now() - warmStarted) / 2), 10, 400);
    direct.length = served.length = floor.length = overhead.length = 0;
    for (let i = 0; i < calls; i++) await triple();
  } finally {
    agent.destroy();
    bareAgent.destroy();
  }
  const roundTrips = served.map((s) => s.roundTripMs);
  return {
    subject: subject.key,
    engine,
    batch,
    kind,
    requestBytes: request.body.length,
    responseBytes: served[0]?.responseBytes ?? 0,
    calls: served.length,
    inProcessP50: median(direct),
    roundTripP50: median(roundTrips),
    roundTripP99: percentile(roundTrips, 0.99),
    overheadMs: median(overhead),
    aroundModelMs: median(served.map((s) => s.roundTripMs - s.inferenceMs)),
    floorMs: median(floor),
  };
}

async function measureRoundTrips(
  subjects: readonly Subject[],
  options: Options,
): Promise<RoundTrip[]> {
  const results: RoundTrip[] = [];
  const bare = await startBareServer();
  try {
    const runs: { subject: Subject; engine: EngineName; batches: readonly number[] }[] = [
      ...subjects.map((subject) => ({ subject, engine: DEFAULT_ENGINE, batches: BATCHES })),
    ];
    // The served speed-up: today's engine serving the small preset's largest subnet.
    const smallLargest = subjects.find((s) => s.key === 'small-largest');
    if (smallLargest) runs.push({ subject: smallLargest, engine: 'tfjs', batches: [1] });
    for (const { subject, engine, batches } of runs) {
      const started = performance.now();
      const server = await startServer(subject.dir, engine, options.threads);
      try {
        for (const batch of batches) {
          for (const kind of ['JSON', 'binary'] as const) {
            results.push(
              await pairedRoundTrips(
                subject,
                engine,
                server,
                bare,
                batch,
                kind,
                options.cellMs * 4,
              ),
            );
          }
        }
      } finally {
        await stopServer(server);
      }
      log(
        `round trips, ${subject.key} on ${engine}: ${((performance.now() - started) / 1000).toFixed(0)} s`,
      );
    }
  } finally {
    await stopServer(bare);
  }
  return results;
}

function kib(bytes: number): string {
  return bytes >= 1024 * 1024
    ? `${(bytes / 1024 / 1024).toFixed(1)} MiB`
    : `${(bytes / 1024).toFixed(1)} KiB`;
}

function roundTripTable(subjects: readonly Subject[], results: readonly RoundTrip[]): string {
  const name = (key: string): string => {
    const subject = subjects.find((s) => s.key === key);
    return subject ? `${subject.preset} ${subject.which}` : key;
  };
  return renderTable(
    [
      'model',
      'engine',
      'batch',
      'body',
      'request',
      'calls',
      'in-process p50',
      'round trip p50 / p99',
      'minus in-process',
      'minus server inference',
      'bare floor',
      'excess over floor',
      `<= ${GOALS.serverExcessMs} ms`,
    ],
    results.map((r) => [
      name(r.subject),
      r.engine,
      String(r.batch),
      r.kind,
      kib(r.requestBytes),
      String(r.calls),
      ms(r.inProcessP50),
      `${ms(r.roundTripP50)} / ${ms(r.roundTripP99)}`,
      ms(r.overheadMs),
      ms(r.aroundModelMs),
      ms(r.floorMs),
      ms(r.overheadMs - r.floorMs),
      r.overheadMs - r.floorMs <= GOALS.serverExcessMs ? 'yes' : 'no',
    ]),
  );
}

// --- C. Decoding -------------------------------------------------------------------------------

interface Decoding {
  readonly kind: BodyKind;
  readonly bytes: number;
  readonly calls: number;
  readonly medianMs: number;
  readonly p99Ms: number;
}

/**
 * One 224x224x3 FP32 image decoded as serving/server.ts decodes it: the JSON (all of it, or the
 * header before the binary data) parsed from the body's bytes, then `parseInferRequest`.
 */
function measureDecoding(signature: ModelSignature, quick: boolean): Decoding[] {
  const input = images(signature.resolution * signature.resolution * signature.channels);
  const results: Decoding[] = [];
  for (const kind of ['JSON', 'binary'] as const) {
    const request = inferBody(kind, signature, input, 1);
    const { body } = request;
    const headerLength = Number(request.headers['inference-header-content-length'] ?? 0);
    const decode =
      kind === 'JSON'
        ? () => parseInferRequest(JSON.parse(body.toString('utf8')) as unknown, signature)
        : () =>
            parseInferRequest(
              JSON.parse(body.subarray(0, headerLength).toString('utf8')) as unknown,
              signature,
              body.subarray(headerLength),
            );
    const check = decode();
    if (check.batch.data.length !== input.length) throw new Error(`${kind}: decoded wrong length`);
    const warmStarted = performance.now();
    for (let i = 0; i < 5; i++) decode();
    const calls = clamp((quick ? 500 : 2000) / ((performance.now() - warmStarted) / 5), 10, 2000);
    const times: number[] = [];
    for (let i = 0; i < calls; i++) {
      const started = performance.now();
      decode();
      times.push(performance.now() - started);
    }
    results.push({
      kind,
      bytes: body.length,
      calls,
      medianMs: median(times),
      p99Ms: percentile(times, 0.99),
    });
  }
  return results;
}

// --- D. Profiling ------------------------------------------------------------------------------

interface Profiling {
  readonly engine: EngineName;
  readonly subnets: number;
  readonly seconds: number;
  /** Seconds scaled to all 243 subnets when a sample was profiled. */
  readonly allSeconds: number;
  readonly medianOfMediansMs: number;
}

async function measureProfiling(
  runtime: TensorFlowRuntime,
  engine: EngineName,
  count: number,
  threads: number,
): Promise<Profiling> {
  const space = new CompoundSpace(SMALL_ARCHITECTURE);
  const all = [...space.enumerate()];
  // A sample spread over the whole space when not all of them.
  const step = all.length / count;
  const subnets =
    count >= all.length
      ? all
      : Array.from({ length: count }, (_, i) => all[Math.floor(i * step)]).filter(
          (spec) => spec !== undefined,
        );
  const started = performance.now();
  const table = await profileSubnets(runtime, space, subnets, {
    engine,
    threads,
    onProgress: (done, total) => {
      if (done % 81 === 0 || done === total) log(`profiling with ${engine}: ${done}/${total}`);
    },
  });
  const seconds = (performance.now() - started) / 1000;
  return {
    engine,
    subnets: subnets.length,
    seconds,
    allSeconds: (seconds * all.length) / subnets.length,
    medianOfMediansMs: median(table.rows.map((row) => row.medianMs)),
  };
}

// --- E. Memory ---------------------------------------------------------------------------------

interface Memory {
  readonly subject: string;
  readonly warmup: number;
  readonly requests: number;
  readonly errors: number;
  readonly seconds: number;
  /** [requests done after the warm-up, VmRSS MiB]. */
  readonly samples: readonly (readonly [number, number])[];
  readonly peakMiB: number;
}

function procStatusMiB(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1];
  if (kb === undefined) throw new Error(`no ${field} in /proc/${pid}/status`);
  return Number(kb) / 1024;
}

async function measureMemory(subject: Subject, options: Options): Promise<Memory> {
  const server = await startServer(subject.dir, DEFAULT_ENGINE, options.threads);
  const pid = server.child.pid;
  if (pid === undefined) throw new Error('compofa-serve has no pid');
  const input = images(subject.ort.rowSize);
  const request = inferBody('binary', subject.ort.signature, input, 1);
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const warmup = Math.min(500, Math.max(50, Math.round(options.memoryRequests / 20)));
  const every = Math.max(1, Math.round(options.memoryRequests / 10));
  const samples: [number, number][] = [];
  let errors = 0;
  const started = performance.now();
  try {
    const send = (): Promise<void> =>
      postInfer(agent, server.port, request.body, request.headers).then(
        () => undefined,
        () => {
          errors++;
        },
      );
    for (let i = 0; i < warmup; i++) await send();
    samples.push([0, procStatusMiB(pid, 'VmRSS')]);
    for (let i = 1; i <= options.memoryRequests; i++) {
      await send();
      if (i % every === 0 || i === options.memoryRequests) {
        samples.push([i, procStatusMiB(pid, 'VmRSS')]);
      }
    }
    return {
      subject: subject.key,
      warmup,
      requests: options.memoryRequests,
      errors,
      seconds: (performance.now() - started) / 1000,
      samples,
      peakMiB: procStatusMiB(pid, 'VmHWM'),
    };
  } finally {
    agent.destroy();
    await stopServer(server);
  }
}

// --- The run -----------------------------------------------------------------------------------

function parseOptions(): Options {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      parts: { type: 'string', default: PARTS.join(',') },
      threads: { type: 'string' },
      rounds: { type: 'string' },
      'cell-ms': { type: 'string' },
      'memory-requests': { type: 'string' },
      'profile-tfjs': { type: 'string' },
      python: { type: 'string' },
      'no-python': { type: 'boolean', default: false },
      json: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(
      [
        'npm run bench:inference -- [--quick] [--parts A,B,C,D,E] [--threads N] [--rounds N] [--cell-ms N]',
        '  [--memory-requests N] [--profile-tfjs N|all] [--python PATH | --no-python] [--json FILE]',
        '',
        'Defaults: threads = the machine cores; rounds 3 (--quick 1); cell-ms 700 (--quick 250);',
        'memory-requests 10000 (--quick 2000); profile-tfjs 81, every third subnet, scaled to 243',
        '(all: about 2.5 min more; --quick 27).',
        '',
      ].join('\n'),
    );
    process.exit(0);
  }
  const quick = values.quick;
  const integer = (name: string, text: string | undefined, fallback: number, min: number) => {
    if (text === undefined) return fallback;
    const value = Number(text);
    if (!Number.isSafeInteger(value) || value < min) {
      throw new Error(`--${name} must be an integer of at least ${min}, got '${text}'`);
    }
    return value;
  };
  const profileText = values['profile-tfjs'];
  const parts = values.parts.split(',').map((p) => p.trim().toUpperCase());
  for (const p of parts) {
    if (!(PARTS as readonly string[]).includes(p)) {
      throw new Error(`--parts takes a list of ${PARTS.join(', ')}, got '${p}'`);
    }
  }
  return {
    quick,
    parts: parts as Part[],
    threads: integer('threads', values.threads, machine().cores, 1),
    rounds: integer('rounds', values.rounds, quick ? 1 : 3, 1),
    cellMs: integer('cell-ms', values['cell-ms'], quick ? 250 : 700, 1),
    memoryRequests: integer('memory-requests', values['memory-requests'], quick ? 2000 : 10_000, 1),
    profileTfjs:
      profileText === 'all'
        ? 243
        : Math.min(243, integer('profile-tfjs', profileText, quick ? 27 : 81, 0)),
    python: values['no-python'] ? undefined : (values.python ?? ''),
    json: values.json,
  };
}

async function main(): Promise<void> {
  const options = parseOptions();
  const started = performance.now();
  const load = loadavg().map((l) => l.toFixed(2));
  // Python's TensorFlow keeps its own default for oneDNN unless the caller set one; ours is the
  // serving default (off), which loadTensorFlow writes into process.env.
  const pythonEnv: NodeJS.ProcessEnv = { ...process.env, TF_CPP_MIN_LOG_LEVEL: '2' };
  // Same threads for every engine: TensorFlow reads them when it loads.
  setTensorFlowThreads(options.threads);
  const runtime = await loadTensorFlow({ purpose: 'inference', log: () => undefined });
  const { tf } = runtime;
  const onnx = await onnxRuntimeFacts();
  const tfjsFacts = tfjsEngineFacts(tf);

  const dir = await mkdtemp(join(tmpdir(), 'compofa-bench-inference-'));
  const subjects: Subject[] = [];
  let python: PythonFloor | undefined;
  let pythonInfo: Record<string, unknown> | undefined;
  const pythonChecks: string[] = [];
  try {
    for (const [preset, architecture] of Object.entries(PRESETS) as [
      keyof typeof PRESETS,
      Architecture,
    ][]) {
      const space = new CompoundSpace(architecture);
      for (const which of SUBNETS) {
        const key = `${preset}-${which}`;
        const modelDir = join(dir, key);
        const id = await writeServedModel(tf, modelDir, which, space);
        const loadOptions = { modelDir, maxBatchSize: 16, threads: options.threads, tf };
        const tfjsModel = await ServedModel.load({ engine: 'tfjs', ...loadOptions });
        const ortModel = await ServedModel.load({ engine: 'onnxruntime', ...loadOptions });
        subjects.push({
          key,
          preset,
          which,
          id,
          macs: subnetCost(architecture, space.parse(id)).macs,
          dir: modelDir,
          tfjs: tfjsModel,
          ort: ortModel,
        });
        log(`extracted ${key}: ${id}`);
      }
    }

    if (options.python !== undefined && options.parts.includes('A')) {
      python = new PythonFloor(options.python || benchPython(), options.threads, pythonEnv);
      pythonInfo = await python.ready();
      for (const subject of subjects) {
        const reply = await python.request({ cmd: 'load', key: subject.key, dir: subject.dir });
        const difference = Number(reply.maxDifference);
        const relative = Number(reply.relativeDifference);
        pythonChecks.push(
          `${subject.key}: ${String(reply.layers)} Keras layers; TF graph vs onnxruntime output: ` +
            `max |difference| ${difference.toExponential(1)}, ${(relative * 100).toFixed(2)}% of ` +
            `the outputs' spread around their mean`,
        );
        if (!(relative <= 0.01)) {
          throw new Error(`the rebuilt Keras model of ${subject.key} differs from model.onnx`);
        }
      }
    }

    const part = (name: Part): boolean => options.parts.includes(name);
    const subject = (key: string): Subject => {
      const found = subjects.find((s) => s.key === key);
      if (!found) throw new Error(`no subnet ${key}`);
      return found;
    };
    let cells: Cell[] = [];
    if (part('A')) {
      log('A. in-process');
      cells = await measureInProcess(subjects, python, options);
    }
    await python?.close();
    python = undefined;

    let roundTrips: RoundTrip[] = [];
    if (part('B')) {
      log('B. server round trips');
      roundTrips = await measureRoundTrips(subjects, options);
    }

    let decoding: Decoding[] = [];
    if (part('C')) {
      log('C. decoding');
      const signature = subject('imagenet-largest').ort.signature;
      decoding = measureDecoding({ ...signature, maxBatchSize: 1 }, options.quick);
    }

    let memory: Memory | undefined;
    if (part('E')) {
      log('E. memory');
      memory = await measureMemory(subject('imagenet-smallest'), options);
    }

    const profiling: Profiling[] = [];
    if (part('D')) {
      log('D. profiling');
      profiling.push(await measureProfiling(runtime, DEFAULT_ENGINE, 243, options.threads));
      if (options.profileTfjs > 0) {
        profiling.push(
          await measureProfiling(runtime, 'tfjs', options.profileTfjs, options.threads),
        );
      }
    }

    const report = renderReport({
      options,
      load,
      versions: { onnx: onnx.version, tensorflow: tfjsFacts.version, tfjs: tf.version_core },
      pythonInfo,
      pythonChecks,
      subjects,
      cells,
      roundTrips,
      decoding,
      profiling,
      memory,
      seconds: (performance.now() - started) / 1000,
    });
    process.stdout.write(report);
    if (options.json !== undefined) {
      await writeFile(
        options.json,
        JSON.stringify(
          {
            machine: machine(),
            options,
            pythonInfo,
            subjects: subjects.map(({ key, id, macs }) => ({ key, id, macs })),
            cells,
            roundTrips,
            decoding,
            profiling,
            memory,
          },
          null,
          2,
        ),
      );
    }
  } finally {
    await python?.close();
    for (const subject of subjects) {
      await subject.tfjs.dispose();
      await subject.ort.dispose();
    }
    await rm(dir, { recursive: true, force: true });
  }
}

interface ReportInput {
  readonly options: Options;
  readonly load: readonly string[];
  readonly versions: { readonly onnx: string; readonly tensorflow: string; readonly tfjs: string };
  readonly pythonInfo: Record<string, unknown> | undefined;
  readonly pythonChecks: readonly string[];
  readonly subjects: readonly Subject[];
  readonly cells: readonly Cell[];
  readonly roundTrips: readonly RoundTrip[];
  readonly decoding: readonly Decoding[];
  readonly profiling: readonly Profiling[];
  readonly memory: Memory | undefined;
  readonly seconds: number;
}

function renderReport(input: ReportInput): string {
  const { options, subjects, cells, roundTrips, decoding, profiling, memory } = input;
  const host = machine();
  const py = input.pythonInfo;
  const out: string[] = [];
  out.push(
    `Inference engines (issue 12): ${host.cores} x ${host.cpuModel}, ${host.memoryGiB} GiB, ` +
      `${host.platform}/${host.arch}, Node ${host.node}; load average at start ${input.load.join(' ')}`,
    `onnxruntime-node ${input.versions.onnx}; tfjs-node ${input.versions.tfjs} on TensorFlow ` +
      `${input.versions.tensorflow} (oneDNN ${process.env.TF_ENABLE_ONEDNN_OPTS === '1' ? 'on' : 'off'}); ` +
      (py
        ? `Python ${String(py.python)}: onnxruntime ${String(py.onnxruntime)}, TensorFlow ${String(py.tensorflow)} ` +
          `(Keras ${String(py.keras)}, oneDNN: ${String(py.oneDnn)})`
        : 'Python floor not run') +
      `; ${options.threads} intra-/inter-op threads for every engine${options.quick ? '; --quick' : ''}`,
    '',
    'Subnets (untrained; latency does not depend on the weights):',
    ...subjects.map(
      (s) => `  ${s.preset} ${s.which}: ${s.id}, ${(s.macs / 1e6).toFixed(1)} M MACs per image`,
    ),
    ...(input.pythonChecks.length > 0
      ? [
          'TF graph rebuilt from model.json + weights.bin:',
          ...input.pythonChecks.map((c) => `  ${c}`),
        ]
      : []),
  );
  const has = (part: Part): boolean => options.parts.includes(part);
  if (has('A')) {
    out.push(
      '',
      `A. In-process, ms per call (p50: median over ${options.rounds} round(s) of each round's median; ` +
        `p99: of all n calls; calls per round sized to ~${options.cellMs} ms, at least ` +
        `${options.quick ? 2 : 3})`,
      inProcessTable(subjects, cells),
    );
  }
  if (has('B')) {
    out.push(
      '',
      'B. compofa-serve round trip over loopback, one connection, sequential requests, ms ' +
        "(paired call by call with the same engine's in-process call and the bare node:http floor)",
      roundTripTable(subjects, roundTrips),
    );
  }
  if (has('C')) {
    out.push(
      '',
      'C. Decoding one 224x224x3 FP32 request (JSON parse + parseInferRequest), ms per request',
      renderTable(
        ['body', 'bytes', 'calls', 'median', 'p99'],
        decoding.map((d) => [d.kind, kib(d.bytes), String(d.calls), ms(d.medianMs), ms(d.p99Ms)]),
      ),
    );
  }
  if (has('D')) {
    out.push(
      '',
      `D. Profiling the small preset's compound subnets (profileSubnets: 5 warm-up + 10 timed calls each)`,
      renderTable(
        ['engine', 'subnets', 'seconds', 'for all 243', 'median subnet latency'],
        profiling.map((p) => [
          p.engine,
          String(p.subnets),
          p.seconds.toFixed(1),
          p.subnets === 243 ? p.seconds.toFixed(1) : `${p.allSeconds.toFixed(0)} (scaled)`,
          `${ms(p.medianOfMediansMs)} ms`,
        ]),
      ),
    );
  }
  if (memory) {
    out.push(
      '',
      `E. compofa-serve resident memory (VmRSS), ${memory.subject}, binary bodies at batch 1, ` +
        `after ${memory.warmup} warm-up requests; ${memory.errors} errors, ${memory.seconds.toFixed(0)} s; ` +
        `peak VmHWM ${memory.peakMiB.toFixed(1)} MiB`,
      renderTable(
        ['requests', 'VmRSS MiB'],
        memory.samples.map(([n, rss]) => [String(n), rss.toFixed(1)]),
      ),
    );
  }
  out.push(
    '',
    'Goals (issue 12)',
    renderTable(['goal', 'measured', 'verdict'], goalRows(input)),
    '',
    `Total: ${input.seconds.toFixed(0)} s; load average at the end ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
    '',
  );
  return out.join('\n');
}

function goalRows(input: ReportInput): string[][] {
  const { cells, roundTrips, decoding, profiling, memory } = input;
  const rows: string[][] = [];
  // 1. onnxruntime-node within 1.1x of Python's onnxruntime.
  const ratios: { label: string; ratio: number }[] = [];
  for (const subject of input.subjects) {
    for (const batch of BATCHES) {
      const get = (engine: Engine) =>
        summarizeCell(
          cells.find((c) => c.subject === subject.key && c.batch === batch && c.engine === engine),
        );
      const node = get('ort-node');
      const python = get('ort-python');
      if (node && python) {
        ratios.push({ label: `${subject.key} b${batch}`, ratio: node.p50 / python.p50 });
      }
    }
  }
  const worst = ratios.reduce<{ label: string; ratio: number } | undefined>(
    (a, b) => (a === undefined || b.ratio > a.ratio ? b : a),
    undefined,
  );
  rows.push([
    `in-process onnxruntime-node p50 <= ${GOALS.nodeOverPython}x Python onnxruntime`,
    worst
      ? `${ratios.filter((r) => r.ratio <= GOALS.nodeOverPython).length}/${ratios.length} within; worst ${worst.ratio.toFixed(2)}x (${worst.label})`
      : 'no Python floor',
    verdict(worst ? worst.ratio <= GOALS.nodeOverPython : undefined),
  ]);
  // 2. Server round trip minus in-process within 0.3 ms of the floor, per body kind.
  for (const kind of ['binary', 'JSON'] as const) {
    const mine = roundTrips.filter((r) => r.engine === DEFAULT_ENGINE && r.kind === kind);
    const excess = mine.map((r) => r.overheadMs - r.floorMs);
    const within = excess.filter((e) => e <= GOALS.serverExcessMs).length;
    rows.push([
      `round trip - in-process <= floor + ${GOALS.serverExcessMs} ms (${kind} bodies)`,
      `${within}/${mine.length} within; excess ${ms(Math.min(...excess))} to ${ms(Math.max(...excess))} ms`,
      verdict(mine.length > 0 ? within === mine.length : undefined),
    ]);
  }
  // 3. Served speed-up over tfjs: small largest, batch 1, JSON body (today's clients).
  const served = (engine: EngineName) =>
    roundTrips.find(
      (r) =>
        r.subject === 'small-largest' && r.engine === engine && r.batch === 1 && r.kind === 'JSON',
    );
  const ort = served(DEFAULT_ENGINE);
  const tfjs = served('tfjs');
  const speedup = ort && tfjs ? tfjs.roundTripP50 / ort.roundTripP50 : undefined;
  rows.push([
    `small largest, batch 1, served >= ${GOALS.servedSpeedup}x faster than with tfjs`,
    speedup === undefined || !ort || !tfjs
      ? 'not measured'
      : `${speedup.toFixed(1)}x (round trip p50 ${ms(tfjs.roundTripP50)} -> ${ms(ort.roundTripP50)} ms, JSON body)`,
    verdict(speedup === undefined ? undefined : speedup >= GOALS.servedSpeedup),
  ]);
  // 4. Profiling.
  const profile = profiling.find((p) => p.engine === DEFAULT_ENGINE);
  rows.push([
    `profile 243 small subnets in < ${GOALS.profileSeconds} s`,
    profile ? `${profile.seconds.toFixed(1)} s with ${profile.engine}` : 'not measured',
    verdict(profile ? profile.seconds < GOALS.profileSeconds : undefined),
  ]);
  // 5. Decoding.
  const json = decoding.find((d) => d.kind === 'JSON');
  const binary = decoding.find((d) => d.kind === 'binary');
  const cheaper = json && binary ? json.medianMs / binary.medianMs : undefined;
  rows.push([
    `224x224x3 binary request >= ${GOALS.decodeSpeedup}x cheaper to decode than JSON`,
    cheaper === undefined || !json || !binary
      ? 'not measured'
      : `${cheaper.toFixed(0)}x (${ms(json.medianMs)} vs ${ms(binary.medianMs)} ms)`,
    verdict(cheaper === undefined ? undefined : cheaper >= GOALS.decodeSpeedup),
  ]);
  // 6. Memory.
  const first = memory?.samples[0]?.[1] ?? Number.NaN;
  const last = memory?.samples.at(-1)?.[1] ?? Number.NaN;
  rows.push([
    `no memory growth over ${memory?.requests ?? 0} requests (VmRSS growth < ${GOALS.memoryGrowthMiB} MiB)`,
    memory
      ? `${first.toFixed(1)} -> ${last.toFixed(1)} MiB (${last - first >= 0 ? '+' : ''}${(last - first).toFixed(1)} MiB), ${memory.errors} errors`
      : 'not measured',
    verdict(memory ? last - first < GOALS.memoryGrowthMiB && memory.errors === 0 : undefined),
  ]);
  return rows;
}

await main();
