import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import { writeServedModel } from '../test/fixtures/served-model.js';
import { ManagedProcess } from '../test/harness/processes.js';
import { runCommand } from '../test/harness/run-command.js';
import { waitFor } from '../test/harness/wait.js';
import { loadTensorFlow } from '../trainer/backend.js';

const MAIN = fileURLToPath(new URL('./main.ts', import.meta.url));
const ENV = { TF_CPP_MIN_LOG_LEVEL: '2' };

/** The JSON log records of a process, parsed from its log file. */
async function records(logFile: string): Promise<Record<string, unknown>[]> {
  const text = await readFile(logFile, 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

describe('the compofa-serve process', () => {
  let dir: string;
  let modelDir: string;
  before(async () => {
    const { tf } = await loadTensorFlow({ purpose: 'inference' });
    dir = await mkdtemp(join(tmpdir(), 'compofa-serve-'));
    modelDir = join(dir, 'model');
    await writeServedModel(tf, modelDir);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const serve = (args: string[], env: Record<string, string> = {}) =>
    runCommand(process.execPath, ['--import', 'tsx', MAIN, ...args], { ...ENV, ...env });

  it('prints its flags with --help', async () => {
    const result = await serve(['--help']);
    assert.equal(result.code, 0);
    assert.match(result.stdout, /--model-dir\s+COMPOFA_MODEL_DIR/);
  });

  it('exits 2 naming the setting when the configuration is bad', async () => {
    const result = await serve(['--model-dir', modelDir], { COMPOFA_PORT: 'http' });
    assert.equal(result.code, 2);
    assert.match(
      result.stderr,
      /--port \(COMPOFA_PORT\) must be an integer in \[0, 65535\], got 'http'/,
    );
  });

  it('exits 1 naming the file when the model folder has no model, for each engine', async () => {
    for (const [engine, file] of [
      ['onnxruntime', 'model\\.onnx'],
      ['tfjs', 'model\\.json'],
    ] as const) {
      const result = await serve(['--model-dir', dir, '--port', '0', '--engine', engine]);
      assert.equal(result.code, 1, engine);
      assert.match(
        result.stderr,
        new RegExp(`${file}: no such file; expected the model folder of compofa extract`),
      );
    }
  });

  it('exits 1 naming model.onnx when it is corrupt', async () => {
    const corrupt = join(dir, 'corrupt');
    await mkdir(corrupt, { recursive: true });
    const bytes = await readFile(join(modelDir, 'model.onnx'));
    await writeFile(join(corrupt, 'model.onnx'), bytes.subarray(0, bytes.length >> 1));
    const result = await serve(['--model-dir', corrupt, '--port', '0']);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /corrupt\/model\.onnx: not (a loadable )?an? ONNX model: /);
  });

  it('exits 2 naming --engine when the engine is unknown', async () => {
    const result = await serve(['--model-dir', modelDir, '--engine', 'tensorrt']);
    assert.equal(result.code, 2);
    assert.match(
      result.stderr,
      /--engine \(COMPOFA_ENGINE\) must be one of onnxruntime, tfjs, got 'tensorrt'/,
    );
  });

  it('on SIGTERM stops accepting, answers the request in flight, and exits 0', async () => {
    const logFile = join(dir, 'serve.log');
    // A long batching delay keeps a lone request in flight while the signal arrives.
    const server = await ManagedProcess.start({
      name: 'compofa-serve',
      command: process.execPath,
      args: [
        '--import',
        'tsx',
        MAIN,
        ...['--model-dir', modelDir, '--host', '127.0.0.1', '--port', '0'],
        ...['--batching', '--batch-max-delay-ms', '1500', '--log-level', 'debug'],
      ],
      logFile,
      env: { ...process.env, ...ENV },
    });
    try {
      const port = await waitFor(
        async () => {
          const logs = await records(logFile);
          const ready = logs.some((r) => r.msg === 'ready');
          return ready ? (logs.find((r) => r.msg === 'listening')?.port as number) : undefined;
        },
        { description: 'compofa-serve to be ready', timeoutMs: 60_000, hint: logFile },
      );
      const base = `http://127.0.0.1:${port}`;
      const body = {
        inputs: [
          { name: 'image', datatype: 'FP32', shape: [1, 16, 16, 1], data: Array(256).fill(0.5) },
        ],
      };
      const inFlight = fetch(`${base}/v2/models/compofa/infer`, {
        method: 'POST',
        body: JSON.stringify(body),
      });
      await waitFor(
        async () => {
          const text = await (await fetch(`${base}/metrics`)).text();
          // The scrape itself is one request in flight; the infer request is the other.
          return /^compofa_http_requests_in_flight 2$/m.test(text);
        },
        { description: 'the infer request to be in flight', timeoutMs: 10_000 },
      );
      const stopped = server.stop(30_000);
      const response = await inFlight;
      assert.equal(response.status, 200);
      const answer = (await response.json()) as { outputs: { data: number[] }[] };
      assert.equal(answer.outputs[0]?.data.length, 10);
      await stopped;
      assert.equal(server.describeExit(), 'exit code 0');

      const logs = await records(logFile);
      const draining = logs.findIndex((r) => r.msg === 'draining');
      const answered = logs.findIndex(
        (r) => r.msg === 'request' && r.route === '/v2/models/{m}/infer',
      );
      assert.ok(
        draining >= 0 && answered > draining,
        'the request was answered after draining began',
      );
      assert.equal(logs[draining]?.inFlight, 1);
      assert.equal(logs.find((r) => r.msg === 'stopped')?.drained, true);
      await assert.rejects(fetch(`${base}/v2/health/live`), 'the port is closed after exit');
    } finally {
      await server.stop(1_000);
    }
  });
});
