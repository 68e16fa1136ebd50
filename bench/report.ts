/**
 * What every benchmark prints the same way: the machine it ran on, and plain-text tables whose
 * first column is left-aligned and the rest right-aligned.
 */
import { spawnSync } from 'node:child_process';
import { request as httpRequest, type Agent } from 'node:http';
import { arch, cpus, platform, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The machine a benchmark ran on, as its report states it. */
export interface Machine {
  readonly cpuModel: string;
  readonly cores: number;
  readonly node: string;
  readonly platform: string;
  readonly arch: string;
  readonly memoryGiB: number;
}

/** This machine. */
export function machine(): Machine {
  const cores = cpus();
  return {
    cpuModel: cores[0]?.model.trim() ?? 'unknown',
    cores: cores.length,
    node: process.version,
    platform: platform(),
    arch: arch(),
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
  };
}

/** `header` and `body` as aligned columns under a dashed rule. */
export function renderTable(
  header: readonly string[],
  body: readonly (readonly string[])[],
): string {
  const widths = header.map((cell, c) =>
    Math.max(cell.length, ...body.map((row) => (row[c] ?? '').length)),
  );
  const line = (row: readonly string[]): string =>
    row
      .map((cell, c) => (c === 0 ? cell.padEnd(widths[c] ?? 0) : cell.padStart(widths[c] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}

const BENCH_DIR = dirname(fileURLToPath(import.meta.url));

/**
 * The Python of the benchmarks' venv (bench/setup-keras.sh: tensorflow-cpu and onnxruntime, made
 * the first time, then reused).
 */
export function benchPython(): string {
  const result = spawnSync('bash', [join(BENCH_DIR, 'setup-keras.sh')], {
    stdio: ['ignore', 'pipe', 'inherit'],
    encoding: 'utf8',
  });
  if (result.status !== 0) throw new Error('bench/setup-keras.sh failed (see above)');
  const python = result.stdout.trim().split('\n').at(-1);
  if (!python) throw new Error('bench/setup-keras.sh printed no python path');
  return python;
}

/** One v2 infer exchange: its round trip, the server's own inference time, the response size. */
export interface InferExchange {
  readonly roundTripMs: number;
  /** The Server-Timing inference time (the bare server's busy time). */
  readonly inferenceMs: number;
  readonly responseBytes: number;
}

/** One v2 infer POST over a kept-alive connection, timed until the last byte of the response. */
export function postInfer(
  agent: Agent,
  port: number,
  body: string | Buffer,
  headers: Readonly<Record<string, string>> = {},
): Promise<InferExchange> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const call = httpRequest(
      {
        agent,
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: '/v2/models/compofa/infer',
        headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
      },
      (response) => {
        let bytes = 0;
        response.on('data', (chunk: Buffer) => (bytes += chunk.length));
        response.on('end', () => {
          const roundTripMs = performance.now() - started;
          const timing = /inference;dur=([\d.]+)/.exec(String(response.headers['server-timing']));
          if (response.statusCode === 200 && timing?.[1]) {
            resolve({ roundTripMs, inferenceMs: Number(timing[1]), responseBytes: bytes });
          } else reject(new Error(`status ${String(response.statusCode)} from port ${port}`));
        });
      },
    );
    call.on('error', reject);
    call.end(body);
  });
}
