/**
 * Benchmark: in-process inference latency with TensorFlow's oneDNN CPU kernels on and off, the
 * measurement behind `loadTensorFlow`'s default (off for inference and profiling, on for
 * training; trainer/backend.ts).
 *
 *   npm run bench:onednn -- [--runs 30]
 *
 * (The engines side by side, tfjs against ONNX Runtime and Python's floor: `npm run
 * bench:inference`, bench/inference.ts.)
 *
 * TensorFlow reads `TF_ENABLE_ONEDNN_OPTS` once, when it loads, so each setting runs in its own
 * child process, one after the other. Each measures the smallest and the largest subnet of the
 * small and the ImageNet preset (untrained: latency does not depend on the weights' values),
 * extracted as `compofa extract` writes them and called through `ServedModel.predict` exactly as
 * the server calls it, at batch 1 and 16: two warm-up calls, then timed calls (`--runs` for the
 * small preset; a third of them, at least 3, for the ImageNet preset), reporting the median.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { IMAGENET_ARCHITECTURE, SMALL_ARCHITECTURE } from '../compofa/architecture.js';
import { CompoundSpace } from '../compofa/design-space.js';
import { ServedModel } from '../serving/model.js';
import { writeServedModel, type ServedSubnet } from '../test/fixtures/served-model.js';
import { loadTensorFlow } from '../trainer/backend.js';
import { machine, renderTable } from './report.js';

const PRESETS = { small: SMALL_ARCHITECTURE, imagenet: IMAGENET_ARCHITECTURE } as const;
const SUBNETS: readonly ServedSubnet[] = ['smallest', 'largest'];
const BATCHES = [1, 16] as const;

interface Measurement {
  readonly preset: keyof typeof PRESETS;
  readonly subnet: ServedSubnet;
  readonly batch: number;
  readonly medianMs: number;
}

const median = (values: readonly number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
};

/** Every configuration, in this process, with the oneDNN setting it was started with. */
async function measure(runs: number): Promise<Measurement[]> {
  const { tf } = await loadTensorFlow({ purpose: 'inference', log: () => undefined });
  const results: Measurement[] = [];
  const dir = await mkdtemp(join(tmpdir(), 'compofa-bench-onednn-'));
  try {
    for (const [preset, architecture] of Object.entries(PRESETS) as [
      keyof typeof PRESETS,
      (typeof PRESETS)[keyof typeof PRESETS],
    ][]) {
      const space = new CompoundSpace(architecture);
      for (const subnet of SUBNETS) {
        const modelDir = join(dir, `${preset}-${subnet}`);
        await writeServedModel(tf, modelDir, subnet, space);
        const model = await ServedModel.load({
          engine: 'tfjs',
          modelDir,
          maxBatchSize: Math.max(...BATCHES),
          tf,
        });
        try {
          for (const batch of BATCHES) {
            const images = new Float32Array(model.rowSize * batch).map((_, i) => (i % 97) / 97);
            for (let i = 0; i < 2; i++) await model.predict(images, batch);
            const timed = preset === 'small' ? runs : Math.max(3, Math.round(runs / 3));
            const times: number[] = [];
            for (let i = 0; i < timed; i++) {
              const started = performance.now();
              await model.predict(images, batch);
              times.push(performance.now() - started);
            }
            results.push({ preset, subnet, batch, medianMs: median(times) });
          }
        } finally {
          await model.dispose();
        }
      }
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return results;
}

/** Runs this script in a child process with oneDNN `enabled`, and returns what it measured. */
function measureInChild(enabled: boolean, runs: number): Promise<Measurement[]> {
  const script = fileURLToPath(import.meta.url);
  const child = spawn(
    process.execPath,
    // --measure: the child measures and prints one JSON line.
    ['--import', 'tsx', script, '--measure', '--runs', String(runs)],
    {
      env: { ...process.env, TF_ENABLE_ONEDNN_OPTS: enabled ? '1' : '0' },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  let stdout = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code !== 0) reject(new Error(`the oneDNN ${enabled ? 'on' : 'off'} run exited ${code}`));
      else resolve(JSON.parse(stdout.trim().split('\n').at(-1) ?? '[]') as Measurement[]);
    });
  });
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { runs: { type: 'string', default: '30' }, measure: { type: 'boolean' } },
  });
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs must be a positive integer`);
  if (values.measure) {
    process.stdout.write(`${JSON.stringify(await measure(runs))}\n`);
    return;
  }
  const started = performance.now();
  const on = await measureInChild(true, runs);
  const off = await measureInChild(false, runs);
  const rows = on.map((withOneDnn, i) => {
    const without = off[i];
    if (!without) throw new Error('the two runs measured different configurations');
    return [
      `${withOneDnn.preset} ${withOneDnn.subnet}`,
      String(withOneDnn.batch),
      withOneDnn.medianMs.toFixed(1),
      without.medianMs.toFixed(1),
      `${(withOneDnn.medianMs / without.medianMs).toFixed(2)}x`,
    ];
  });
  const host = machine();
  process.stdout.write(
    `In-process inference, median ms per call (${host.cores} x ${host.cpuModel}, Node ${host.node})\n` +
      `${renderTable(['model', 'batch', 'oneDNN on', 'oneDNN off', 'on / off'], rows)}\n` +
      `Total: ${((performance.now() - started) / 1000).toFixed(0)} s\n`,
  );
}

await main();
