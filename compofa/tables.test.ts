import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { architectureKey, IMAGENET_ARCHITECTURE, SMALL_ARCHITECTURE } from './architecture.js';
import { CompoundSpace } from './design-space.js';
import {
  joinTables,
  parseAccuracyTable,
  parseLatencyTable,
  tableEngine,
  readAccuracyTable,
  readLatencyTable,
  TABLE_API_VERSION,
  writeTable,
  type AccuracyTable,
  type LatencyTable,
} from './tables.js';

const space = new CompoundSpace(SMALL_ARCHITECTURE);
const ids = [...space.enumerate()].map((spec) => space.format(spec));
const subject = {
  designSpace: 'compound' as const,
  architectureKey: architectureKey(SMALL_ARCHITECTURE),
};

const accuracyTable: AccuracyTable = {
  apiVersion: TABLE_API_VERSION,
  kind: 'AccuracyTable',
  subject,
  measuredAt: '2026-11-28T03:00:00.000Z',
  dataset: { name: 'fashion-mnist', split: 'validation', samples: 10000 },
  settings: { checkpoint: 'step-1200', bnCalibrationSamples: 2000, seed: 1 },
  method: 'measured',
  rows: ids.map((subnet, i) => ({ subnet, accuracy: 0.7 + i / 1000 })),
};

const latencyTable: LatencyTable = {
  apiVersion: TABLE_API_VERSION,
  kind: 'LatencyTable',
  subject,
  measuredAt: '2026-11-28T03:10:00.000Z',
  device: {
    nodeName: 'cpu-xeon-0',
    cpuModel: 'Intel Xeon',
    threads: 2,
    backend: 'tensorflow',
    tensorflowVersion: '2.21.0',
    oneDnn: false,
    labels: { 'kubernetes.io/arch': 'amd64' },
  },
  batchSize: 1,
  method: 'exhaustive',
  settings: { warmupRuns: 5, timedRuns: 10 },
  rows: ids
    .slice(0, 200)
    .map((subnet, i) => ({ subnet, medianMs: 1 + i / 100, p95Ms: 1.5 + i / 100 })),
};

/** A deep copy of `value` with one field changed by `edit`. */
function edited(value: object, edit: (copy: Record<string, any>) => void): unknown {
  const copy = structuredClone(value) as Record<string, any>;
  edit(copy);
  return copy;
}

describe('accuracy and latency tables', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'compofa-tables-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('round-trip through files written atomically, validated against the design space', async () => {
    await writeTable(join(dir, 'accuracy.json'), accuracyTable);
    await writeTable(join(dir, 'latency.json'), latencyTable);
    assert.deepEqual(await readAccuracyTable(join(dir, 'accuracy.json'), space), accuracyTable);
    assert.deepEqual(await readLatencyTable(join(dir, 'latency.json'), space), latencyTable);
    assert.deepEqual(
      (await readdir(dir)).sort(),
      ['accuracy.json', 'latency.json'],
      'no temporary files remain',
    );
    assert.equal(accuracyTable.rows.length, 243);
  });

  it('name the file, the field and the expectation when a value is wrong', () => {
    const cases: [unknown, RegExp][] = [
      [
        edited(accuracyTable, (t) => (t.rows[3].accuracy = 1.3)),
        /acc\.json: rows\[3\]\.accuracy must be a number in \[0, 1\], got 1\.3$/,
      ],
      [
        edited(accuracyTable, (t) => (t.kind = 'LatencyTable')),
        /acc\.json: kind must be one of AccuracyTable, got "LatencyTable"$/,
      ],
      [
        edited(accuracyTable, (t) => (t.apiVersion = 'v0')),
        /acc\.json: apiVersion must be one of compofa\.io\/v1alpha1/,
      ],
      [
        edited(accuracyTable, (t) => delete t.dataset.samples),
        /acc\.json: dataset\.samples must be an integer >= 1, got nothing$/,
      ],
      [
        edited(accuracyTable, (t) => (t.measuredAt = 'yesterday')),
        /acc\.json: measuredAt must be an ISO 8601 time, got "yesterday"$/,
      ],
      [
        edited(accuracyTable, (t) => {
          t.rows[5].subnet = t.rows[4].subnet;
        }),
        /acc\.json: rows\[5\]\.subnet must be unique; this subnet appears twice/,
      ],
      [
        edited(accuracyTable, (t) => (t.rows[0].subnet = 'r28-d2e3-d2e3-d2e3-d2e3-d4e4')),
        /acc\.json: rows\[0\]\.subnet must be a subnet of the compound space \(unit 5: \(depth 4, expand 4\) is not a compound choice/,
      ],
      [
        edited(accuracyTable, (t) => (t.rows = [])),
        /acc\.json: rows must be a non-empty array, got \[\]$/,
      ],
      [
        edited(accuracyTable, (t) => (t.settings.nested = { a: 1 })),
        /acc\.json: settings\.nested must be a string, number or boolean/,
      ],
      [[], /acc\.json: the table must be an object, got \[\]$/],
    ];
    for (const [json, message] of cases)
      assert.throws(() => parseAccuracyTable(json, 'acc.json', space), message);
  });

  it('refuse a latency table whose p95 is below its median or whose numbers are not positive', () => {
    assert.throws(
      () =>
        parseLatencyTable(
          edited(latencyTable, (t) => (t.rows[2].p95Ms = 0.5)),
          'lat.json',
          space,
        ),
      /lat\.json: rows\[2\]\.p95Ms must be at least medianMs \(1\.02\), got 0\.5$/,
    );
    assert.throws(
      () =>
        parseLatencyTable(
          edited(latencyTable, (t) => (t.rows[0].medianMs = 0)),
          'lat.json',
        ),
      /rows\[0\]\.medianMs must be a number > 0, got 0/,
    );
    assert.throws(
      () =>
        parseLatencyTable(
          edited(latencyTable, (t) => (t.device.threads = 1.5)),
          'lat.json',
        ),
      /device\.threads must be an integer >= 1, got 1\.5/,
    );
    assert.throws(
      () =>
        parseLatencyTable(
          edited(latencyTable, (t) => (t.device.labels = { a: 3 })),
          'lat.json',
        ),
      /device\.labels\.a must be a non-empty string, got 3/,
    );
    assert.throws(
      () =>
        parseLatencyTable(
          edited(latencyTable, (t) => (t.device.oneDnn = 'off')),
          'lat.json',
        ),
      /device\.oneDnn must be true or false, got "off"/,
    );
  });

  it('record the engine and its version, and read tables written before engines were', () => {
    const measured = edited(latencyTable, (t) => {
      t.device.engine = 'onnxruntime';
      t.device.engineVersion = '1.30.0';
    });
    const table = parseLatencyTable(measured, 'lat.json', space);
    assert.deepEqual(tableEngine(table), { name: 'onnxruntime', version: '1.30.0' });
    // Tables from before were all measured with tfjs, on TensorFlow's version.
    assert.deepEqual(tableEngine(parseLatencyTable(latencyTable, 'lat.json', space)), {
      name: 'tfjs',
      version: '2.21.0',
    });
    assert.throws(
      () =>
        parseLatencyTable(
          edited(latencyTable, (t) => (t.device.engine = 'tensorrt')),
          'lat.json',
        ),
      /lat\.json: device\.engine must be one of/,
    );
    assert.throws(
      () =>
        parseLatencyTable(
          edited(measured as object, (t) => delete t.device.engineVersion),
          'lat.json',
        ),
      /lat\.json: device\.engineVersion must be/,
    );
  });

  it('read a latency table written before the oneDNN setting was recorded', () => {
    const older = edited(latencyTable, (t) => delete t.device.oneDnn);
    const { oneDnn, ...device } = latencyTable.device;
    assert.equal(oneDnn, false);
    assert.deepEqual(parseLatencyTable(older, 'lat.json', space).device, device);
  });

  it('refuse a table measured for another architecture', () => {
    const other = new CompoundSpace(IMAGENET_ARCHITECTURE);
    assert.throws(
      () => parseAccuracyTable(accuracyTable, 'acc.json', other),
      /acc\.json: subject\.architectureKey must be [0-9a-f]{16}, the key of this supernet's architecture \(the table was measured for another one\)/,
    );
  });

  it('report unreadable files and bad JSON with the path', async () => {
    await assert.rejects(
      readAccuracyTable(join(dir, 'missing.json')),
      /missing\.json: cannot be read \(ENOENT\)/,
    );
    await writeFile(join(dir, 'broken.json'), '{"kind": ');
    await assert.rejects(
      readLatencyTable(join(dir, 'broken.json')),
      /broken\.json: is not valid JSON/,
    );
    assert.equal(await readFile(join(dir, 'broken.json'), 'utf8'), '{"kind": ');
  });

  it('join into selection input by the chosen latency statistic, listing what is missing', () => {
    const p95 = joinTables(accuracyTable, latencyTable);
    assert.equal(p95.measurements.length, 200);
    assert.equal(p95.missingLatency.length, 43);
    assert.deepEqual(p95.missingAccuracy, []);
    assert.deepEqual(p95.measurements[0], { id: ids[0], accuracy: 0.7, latencyMs: 1.5 });
    assert.equal(joinTables(accuracyTable, latencyTable, 'median').measurements[0]?.latencyMs, 1);
    const foreign = {
      ...latencyTable,
      subject: { ...subject, architectureKey: 'ffffffffffffffff' },
    };
    assert.throws(() => joinTables(accuracyTable, foreign), /describe different supernets/);
  });
});

describe('architectureKey', () => {
  it('is stable, order-independent and differs between architectures', () => {
    assert.match(architectureKey(SMALL_ARCHITECTURE), /^[0-9a-f]{16}$/);
    const reordered = Object.fromEntries(
      Object.entries(SMALL_ARCHITECTURE).reverse(),
    ) as typeof SMALL_ARCHITECTURE;
    assert.equal(architectureKey(reordered), architectureKey(SMALL_ARCHITECTURE));
    assert.notEqual(architectureKey(IMAGENET_ARCHITECTURE), architectureKey(SMALL_ARCHITECTURE));
    assert.notEqual(
      architectureKey({ ...SMALL_ARCHITECTURE, numClasses: 11 }),
      architectureKey(SMALL_ARCHITECTURE),
    );
  });
});
