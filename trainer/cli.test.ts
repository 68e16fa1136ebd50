import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import { architectureKey, SMALL_ARCHITECTURE } from '../compofa/architecture.js';
import { CompoundSpace } from '../compofa/design-space.js';
import { TABLE_API_VERSION, writeTable } from '../compofa/tables.js';
import { ONNX_RUNTIME_VERSION } from '../compofa/engines.js';
import { TEST_DEVICE } from '../test/fixtures/tables.js';
import { runCommand, type CommandResult } from '../test/harness/run-command.js';

const cli = fileURLToPath(new URL('cli.ts', import.meta.url));
const compofa = (...args: string[]): Promise<CommandResult> =>
  runCommand(process.execPath, ['--import', 'tsx', cli, ...args], { TF_CPP_MIN_LOG_LEVEL: '2' });

describe('the compofa command line', () => {
  let dir: string;
  const space = new CompoundSpace(SMALL_ARCHITECTURE);
  const ids = [...space.enumerate()].map((spec) => space.format(spec));
  const subject = {
    designSpace: 'compound' as const,
    architectureKey: architectureKey(SMALL_ARCHITECTURE),
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'compofa-cli-'));
    // Accuracy and latency both grow with the index: the budget decides.
    await writeTable(join(dir, 'accuracy.json'), {
      apiVersion: TABLE_API_VERSION,
      kind: 'AccuracyTable',
      subject,
      measuredAt: '2026-11-28T00:00:00Z',
      dataset: { name: 'fashion-mnist', split: 'validation', samples: 100 },
      settings: {},
      method: 'measured',
      rows: ids.map((subnet, i) => ({ subnet, accuracy: 0.5 + i / 1000 })),
    });
    await writeTable(join(dir, 'latency.json'), {
      apiVersion: TABLE_API_VERSION,
      kind: 'LatencyTable',
      subject,
      measuredAt: '2026-11-28T00:00:00Z',
      device: TEST_DEVICE,
      batchSize: 1,
      method: 'exhaustive',
      settings: { warmupRuns: 1, timedRuns: 1 },
      rows: ids.map((subnet, i) => ({ subnet, medianMs: 1 + i, p95Ms: 2 + i })),
    });
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('lists its commands and explains bad usage with exit code 2', async () => {
    const help = await compofa('--help');
    assert.equal(help.code, 0);
    for (const command of ['select', 'search', 'train', 'evaluate', 'profile', 'extract'])
      assert.match(help.stdout, new RegExp(`^  ${command} `, 'm'));
    const unknown = await compofa('frobnicate');
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown command 'frobnicate'/);
    const missing = await compofa(
      'select',
      '--latency',
      join(dir, 'latency.json'),
      '--budget-ms',
      '5',
    );
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /--accuracy is required\nUsage: compofa select/);
    const badNumber = await compofa(
      'select',
      '--accuracy',
      join(dir, 'accuracy.json'),
      '--latency',
      join(dir, 'latency.json'),
      '--budget-ms',
      'soon',
    );
    assert.equal(badNumber.code, 2);
    assert.match(badNumber.stderr, /--budget-ms must be a number, got 'soon'/);
    const unknownOption = await compofa('select', '--budget', '5');
    assert.equal(unknownOption.code, 2);
    assert.match(unknownOption.stderr, /Unknown option '--budget'/);
  });

  it('selects the most accurate subnet within the p95 budget, as JSON, and says when nothing fits', async () => {
    const run = await compofa(
      'select',
      '--accuracy',
      join(dir, 'accuracy.json'),
      '--latency',
      join(dir, 'latency.json'),
      '--budget-ms',
      '12.5',
      '--json',
    );
    assert.equal(run.code, 0, run.stderr);
    const result = JSON.parse(run.stdout) as {
      ok: boolean;
      selected: { id: string; latencyMs: number };
      subnet: { resolution: number };
    };
    assert.deepEqual(
      [result.ok, result.selected.id, result.selected.latencyMs, result.subnet.resolution],
      [true, ids[10], 12, 28],
    );
    const median = await compofa(
      'select',
      '--accuracy',
      join(dir, 'accuracy.json'),
      '--latency',
      join(dir, 'latency.json'),
      '--budget-ms',
      '12.5',
      '--statistic',
      'median',
    );
    assert.match(
      median.stdout,
      new RegExp(`^${ids[11] ?? ''}: accuracy 51\\.10% at 12 ms within 12\\.5 ms`),
    );
    const none = await compofa(
      'select',
      '--accuracy',
      join(dir, 'accuracy.json'),
      '--latency',
      join(dir, 'latency.json'),
      '--budget-ms',
      '1',
    );
    assert.equal(none.code, 3);
    assert.match(
      none.stdout,
      /no subnet meets the 1 ms budget; the fastest, r28-d2e3-d2e3-d2e3-d2e3-d2e3, takes 2 ms/,
    );
  });

  it('refuses a latency table measured with another engine or version, naming both', async () => {
    const latency = JSON.parse(await readFile(join(dir, 'latency.json'), 'utf8')) as {
      device: Record<string, unknown>;
    };
    const cases = [
      [{ ...latency.device, engine: 'tfjs', engineVersion: '2.21.0' }, 'tfjs 2.21.0'],
      [{ ...latency.device, engineVersion: '1.17.0' }, 'onnxruntime 1.17.0'],
    ] as const;
    for (const [device, measured] of cases) {
      const path = join(dir, 'other-engine.json');
      await writeFile(path, JSON.stringify({ ...latency, device }));
      const run = await compofa(
        'select',
        ...['--accuracy', join(dir, 'accuracy.json'), '--latency', path, '--budget-ms', '5'],
      );
      assert.equal(run.code, 1, run.stderr);
      assert.ok(
        run.stderr.includes(
          `${path} was measured with ${measured}, but the model is served with onnxruntime ${ONNX_RUNTIME_VERSION}`,
        ),
        run.stderr,
      );
    }
  });

  it("runs OFA's search over the same tables and never exceeds the budget", async () => {
    const run = await compofa(
      'search',
      '--accuracy',
      join(dir, 'accuracy.json'),
      '--latency',
      join(dir, 'latency.json'),
      '--budget-ms',
      '50',
      '--generations',
      '20',
      '--json',
    );
    assert.equal(run.code, 0, run.stderr);
    const result = JSON.parse(run.stdout) as { found: boolean; latencyMs: number };
    assert.ok(result.found && result.latencyMs <= 50);
  });

  it('fails with exit code 1 naming a bad table file', async () => {
    const run = await compofa(
      'select',
      '--accuracy',
      join(dir, 'missing.json'),
      '--latency',
      join(dir, 'latency.json'),
      '--budget-ms',
      '5',
    );
    assert.equal(run.code, 1);
    assert.match(run.stderr, /missing\.json: cannot be read \(ENOENT\)/);
  });

  it('trains, evaluates, profiles, selects and extracts: the pipeline the operator runs', async () => {
    const checkpoint = join(dir, 'ckpt');
    const subnets = 'r28-d2e3-d2e3-d2e3-d2e3-d2e3,r28-d3e4-d2e3-d4e6-d2e3-d3e4';
    const data = ['--limit-per-class', '4'];
    const train = await compofa(
      'train',
      '--checkpoint-dir',
      checkpoint,
      ...data,
      '--epochs-scale',
      '0.006',
      '--batch-size',
      '16',
      '--json',
    );
    assert.equal(train.code, 0, train.stderr);
    assert.deepEqual(JSON.parse(train.stdout), {
      steps: 6,
      totalSteps: 6,
      resumedFromStep: null,
      finalLoss: (JSON.parse(train.stdout) as { finalLoss: number }).finalLoss,
      checkpointDir: checkpoint,
    });
    const evaluate = await compofa(
      'evaluate',
      '--checkpoint-dir',
      checkpoint,
      ...data,
      '--subnets',
      subnets,
      '--calibration-images',
      '16',
      '--out',
      join(dir, 'trained-accuracy.json'),
    );
    assert.equal(evaluate.code, 0, evaluate.stderr);
    const profile = await compofa(
      'profile',
      '--subnets',
      subnets,
      '--warmup-runs',
      '1',
      '--timed-runs',
      '3',
      '--out',
      join(dir, 'trained-latency.json'),
    );
    assert.equal(profile.code, 0, profile.stderr);
    const select = await compofa(
      'select',
      '--accuracy',
      join(dir, 'trained-accuracy.json'),
      '--latency',
      join(dir, 'trained-latency.json'),
      '--budget-ms',
      '100000',
      '--json',
    );
    assert.equal(select.code, 0, select.stderr);
    const chosen = (JSON.parse(select.stdout) as { selected: { id: string } }).selected.id;
    assert.ok(subnets.split(',').includes(chosen));
    const extract = await compofa(
      'extract',
      '--checkpoint-dir',
      checkpoint,
      ...data,
      '--subnet',
      chosen,
      '--calibration-images',
      '16',
      '--out',
      join(dir, 'model'),
    );
    assert.equal(extract.code, 0, extract.stderr);
    const model = JSON.parse(await readFile(join(dir, 'model', 'model.json'), 'utf8')) as {
      userDefinedMetadata: { compofa: { subnet: string } };
    };
    assert.equal(model.userDefinedMetadata.compofa.subnet, chosen);
    const wrongPreset = await compofa(
      'evaluate',
      '--checkpoint-dir',
      checkpoint,
      '--preset',
      'imagenet',
      '--subnets',
      'r224-d2e3-d2e3-d2e3-d2e3-d2e3',
      '--out',
      join(dir, 'x.json'),
      ...data,
    );
    assert.equal(wrongPreset.code, 1);
    assert.match(wrongPreset.stderr, /use the same --preset and --design-space as for training/);
  });
});
