import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import type { Dataset } from './datasets.js';
import { tinyDataset, tinySchedule, tinySpace } from '../test/fixtures/tiny-training.js';
import { waitFor } from '../test/harness/wait.js';
import { loadTensorFlow, type TensorFlow } from './backend.js';
import { loadCheckpoint } from './checkpoint.js';
import {
  learningRateAt,
  paperSchedule,
  scaleSchedule,
  trainSupernet,
  type TrainingProgress,
  type TrainResult,
} from './train.js';

function weightsOf(result: TrainResult): Map<string, Float32Array> {
  return new Map(
    [...result.supernet.variables].map(([name, v]) => [name, v.dataSync() as Float32Array]),
  );
}

function maxDifference(a: Map<string, Float32Array>, b: Map<string, Float32Array>): number {
  let max = 0;
  for (const [name, values] of a) {
    const other = b.get(name);
    assert.ok(other, `missing ${name}`);
    for (let i = 0; i < values.length; i++)
      max = Math.max(max, Math.abs((values[i] ?? 0) - (other[i] ?? 0)));
  }
  return max;
}

describe('schedule', () => {
  it("follows the papers' phases and scales them down for short runs", () => {
    assert.deepEqual(
      paperSchedule('compound').map((p) => [p.name, p.epochs, p.subnetsPerStep]),
      [
        ['teacher', 180, 1],
        ['compound-1', 25, 4],
        ['compound-2', 125, 4],
      ],
    );
    assert.equal(
      paperSchedule('elastic').reduce((sum, p) => sum + p.epochs, 0) - 180,
      425,
      "OFA's ~425 epochs after the teacher",
    );
    assert.deepEqual(
      scaleSchedule(paperSchedule('compound'), 0.01).map((p) => [p.epochs, p.warmupEpochs]),
      [
        [2, 0],
        [1, 0],
        [1, 0],
      ],
    );
  });

  it('warms up linearly, then decays along a cosine to zero', () => {
    const phase = {
      name: 'p',
      epochs: 10,
      warmupEpochs: 2,
      learningRate: 0.256,
      subnetsPerStep: 1,
      subnets: 'sample' as const,
    };
    const at = (step: number): number => learningRateAt(phase, step, 10, 100);
    assert.ok(Math.abs(at(0) - 0.1 / 20) < 1e-12);
    assert.ok(Math.abs(at(19) - 0.1) < 1e-12);
    assert.ok(Math.abs(at(20) - 0.1) < 1e-12);
    assert.ok(Math.abs(at(60) - 0.05) < 1e-12);
    assert.ok(at(99) < 1e-4);
  });
});

describe('trainSupernet', () => {
  let tf: TensorFlow;
  let dataset: Dataset;
  let dir: string;
  before(async () => {
    ({ tf } = await loadTensorFlow({ purpose: 'training' }));
    dataset = await tinyDataset();
    dir = await mkdtemp(join(tmpdir(), 'compofa-train-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const train = (extra: Partial<Parameters<typeof trainSupernet>[1]> = {}): Promise<TrainResult> =>
    trainSupernet(tf, {
      space: tinySpace(),
      dataset,
      phases: tinySchedule(1, 2),
      batchSize: 16,
      seed: 4,
      ...extra,
    });

  it('lowers the loss through the teacher and compound phases with no tensor leak, reporting progress', async () => {
    const progress: TrainingProgress[] = [];
    const tensors = new Map<number, number>();
    const result = await train({
      phases: tinySchedule(5, 1),
      onProgress: (p) => {
        progress.push(p);
        tensors.set(p.step, tf.memory().numTensors);
      },
    });
    const perEpoch = Math.ceil(dataset.train.count / 16);
    assert.equal(perEpoch, 7);
    assert.equal(result.step, 6 * perEpoch);
    assert.equal(result.totalSteps, result.step);
    assert.ok(result.teacher, 'the teacher phase leaves a teacher for distillation');
    assert.deepEqual([...new Set(progress.map((p) => p.phase))], ['teacher', 'compound']);
    assert.deepEqual(
      progress.map((p) => p.step),
      Array.from({ length: result.totalSteps }, (_, i) => i + 1),
    );
    assert.equal(progress.at(-1)?.etaSeconds, 0);
    assert.ok((progress[0]?.etaSeconds ?? 0) > 0);
    // Steps 10 and 30 both fall in the teacher phase: nothing may pile up between them.
    assert.equal(tensors.get(30), tensors.get(10));
    const mean = (from: number, to: number): number =>
      result.losses.slice(from, to).reduce((a, b) => a + b, 0) / (to - from);
    assert.ok(
      mean(4 * perEpoch, 5 * perEpoch) < mean(0, perEpoch) * 0.93,
      `teacher losses: ${result.losses.map((l) => l.toFixed(2)).join(' ')}`,
    );
    result.supernet.dispose();
    result.teacher.dispose();
  });

  it('resumes from the checkpoint, not from zero, and ends exactly where an uninterrupted run ends', async () => {
    const uninterrupted = await train();
    const checkpointDir = join(dir, 'resume');
    const first = await train({ checkpointDir, checkpointEverySteps: 4, stopAfterStep: 10 });
    assert.equal(first.step, 10);
    assert.equal((await loadCheckpoint<{ step: number }>(checkpointDir))?.state.step, 10);
    first.supernet.dispose();
    first.teacher?.dispose();
    const steps: number[] = [];
    const resumed = await train({
      checkpointDir,
      checkpointEverySteps: 4,
      onProgress: (p) => steps.push(p.step),
    });
    assert.equal(resumed.resumedFromStep, 10);
    assert.equal(steps[0], 11, 'the resumed run continues after the checkpoint');
    assert.equal(resumed.step, uninterrupted.step);
    const difference = maxDifference(weightsOf(uninterrupted), weightsOf(resumed));
    assert.ok(difference < 1e-5, `weights differ by ${difference}`);
    for (const result of [uninterrupted, resumed]) {
      result.supernet.dispose();
      result.teacher?.dispose();
    }
  });

  it('refuses a checkpoint made with other settings, naming the setting', async () => {
    const checkpointDir = join(dir, 'mismatch');
    const first = await train({ checkpointDir, stopAfterStep: 2 });
    first.supernet.dispose();
    await assert.rejects(
      train({ checkpointDir, seed: 5 }),
      /the checkpoint in .*mismatch was made with seed 4, this run has 5/,
    );
  });

  it('survives kill -9 during training, losing at most one checkpoint interval', async () => {
    const checkpointDir = join(dir, 'killed');
    const fixture = fileURLToPath(
      new URL('../test/fixtures/train-until-killed.ts', import.meta.url),
    );
    const child = spawn(process.execPath, ['--import', 'tsx', fixture, checkpointDir], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = once(child, 'exit');
    let lastStep = 0;
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      lastStep = Math.max(lastStep, ...chunk.toString().trim().split('\n').map(Number));
    });
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    await waitFor(() => lastStep >= 7, {
      description: `the training child to pass step 7 (stderr: ${stderr.slice(-400)})`,
      timeoutMs: 120_000,
    });
    child.kill('SIGKILL');
    await exited;
    const killedAt = lastStep;
    const steps: number[] = [];
    const resumed = await train({
      checkpointDir,
      checkpointEverySteps: 2,
      phases: tinySchedule(100, 100),
      stopAfterStep: killedAt + 2,
      onProgress: (p) => steps.push(p.step),
    });
    assert.ok(
      resumed.resumedFromStep !== undefined && resumed.resumedFromStep % 2 === 0,
      `resumed from ${String(resumed.resumedFromStep)}`,
    );
    assert.ok(
      killedAt - resumed.resumedFromStep <= 2 + 1,
      `killed after step ${killedAt}, resumed from ${resumed.resumedFromStep}`,
    );
    assert.equal(steps[0], resumed.resumedFromStep + 1);
    assert.deepEqual(
      (await readdir(checkpointDir)).filter((entry) => entry !== 'latest'),
      [],
      'no half-written checkpoint remains after the next save',
    );
    resumed.supernet.dispose();
    resumed.teacher?.dispose();
  });
});
