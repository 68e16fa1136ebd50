import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';

import * as ort from 'onnxruntime-node';

import { architectureKey, SMALL_ARCHITECTURE } from '../compofa/architecture.js';
import { subnetShape } from '../compofa/cost.js';
import {
  CompoundSpace,
  ElasticSpace,
  SubnetSpecError,
  type DesignSpace,
  type SubnetSpec,
} from '../compofa/design-space.js';
import { Random } from '../compofa/random.js';
import { parseLatencyTable, readLatencyTable, writeTable } from '../compofa/tables.js';
import { TINY_ARCHITECTURE, tinySpace } from '../test/fixtures/tiny-training.js';
import { loadTensorFlow, type TensorFlowRuntime } from './backend.js';
import {
  blockKey,
  buildLatencyLookupTable,
  deviceFacts,
  estimateLatency,
  headKey,
  lookupLatencyTable,
  lookupTableError,
  percentile,
  profileSubnets,
  stemKey,
  type ProfileOptions,
} from './profile.js';

const MS = 1_000_000n;

/** A clock for which every timed run takes exactly 1 ms (it advances 1 ms per call). */
function millisecondClock(): { now: () => bigint; calls: () => number } {
  let time = 0n;
  let calls = 0;
  return {
    now: () => {
      calls++;
      return (time += MS);
    },
    calls: () => calls,
  };
}

/** A clock for which timed run i takes durationsMs[i] (start and end calls alternate). */
function scriptedClock(durationsMs: readonly number[]): () => bigint {
  let time = 0n;
  let call = 0;
  return () => {
    const duration = call % 2 === 1 ? durationsMs[(call - 1) / 2] : 0.25;
    call++;
    if (duration === undefined) throw new Error('the clock was read more often than scripted');
    return (time += BigInt(Math.round(duration * 1e6)));
  };
}

/** The stem, block and head keys of a subnet, in network order. */
function layerKeys(space: DesignSpace, spec: SubnetSpec): string[] {
  const shape = subnetShape(space.architecture, spec);
  return [stemKey(shape), ...shape.blocks.map(blockKey), headKey(shape)];
}

describe('latency profiling', () => {
  let runtime: TensorFlowRuntime;
  before(async () => {
    runtime = await loadTensorFlow({ purpose: 'profiling', log: () => undefined });
  });

  it('writes one exhaustive row per subnet, valid for parseLatencyTable, with the device facts and settings', async () => {
    const { tf } = runtime;
    const space = tinySpace();
    const subnets = [space.smallest(), space.largest(), space.sample(new Random(3))];
    const progress: [number, number, string][] = [];
    const started = Date.now();
    const tensors = tf.memory().numTensors;
    const table = await profileSubnets(runtime, space, [...subnets, space.smallest()], {
      batchSize: 2,
      warmupRuns: 1,
      timedRuns: 3,
      device: { nodeName: 'node-a', labels: { 'compofa.io/device-class': 'cpu-small' } },
      onProgress: (done, total, subnet) => progress.push([done, total, subnet]),
    });
    assert.equal(tf.memory().numTensors, tensors, 'no tensor left behind');

    const parsed = parseLatencyTable(JSON.parse(JSON.stringify(table)), 'x', space);
    assert.deepEqual(parsed, table);
    const ids = subnets.map((spec) => space.format(spec));
    assert.deepEqual(
      table.rows.map((row) => row.subnet),
      ids,
      'one row per distinct subnet, in order',
    );
    assert.deepEqual(
      progress,
      ids.map((id, index) => [index + 1, 3, id]),
    );
    assert.equal(table.method, 'exhaustive');
    assert.equal(table.subject.designSpace, 'compound');
    assert.equal(table.subject.architectureKey, architectureKey(TINY_ARCHITECTURE));
    assert.equal(table.batchSize, 2);
    assert.deepEqual(table.settings, { warmupRuns: 1, timedRuns: 3 });
    const measuredAt = Date.parse(table.measuredAt);
    assert.ok(measuredAt >= started - 1000 && measuredAt <= Date.now() + 1000, table.measuredAt);
    for (const row of table.rows) assert.ok(row.medianMs > 0 && row.p95Ms >= row.medianMs);

    assert.deepEqual(table.device, {
      nodeName: 'node-a',
      labels: { 'compofa.io/device-class': 'cpu-small' },
      cpuModel: cpus()[0]?.model.trim().replace(/\s+/g, ' '),
      threads: availableParallelism(),
      backend: 'tensorflow',
      tensorflowVersion: '2.21.0',
      oneDnn: false,
      // The engine that serves, by default ONNX Runtime.
      engine: 'onnxruntime',
      engineVersion: ort.env.versions.node,
    });
    assert.deepEqual(deviceFacts(runtime), {
      cpuModel: table.device.cpuModel,
      threads: table.device.threads,
      backend: 'tensorflow',
      tensorflowVersion: '2.21.0',
      oneDnn: false,
    });

    const dir = await mkdtemp(join(tmpdir(), 'compofa-profile-'));
    try {
      await writeTable(join(dir, 'latency.json'), table);
      assert.deepEqual(await readLatencyTable(join(dir, 'latency.json'), space), table);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('measures the largest subnet of the small compound space as slower than its smallest', async () => {
    const space = new CompoundSpace(SMALL_ARCHITECTURE);
    const table = await profileSubnets(runtime, space, [space.smallest(), space.largest()], {
      warmupRuns: 2,
      timedRuns: 9,
    });
    const [smallest, largest] = table.rows;
    assert.ok(smallest && largest);
    // About 2.5x on an idle or a busy machine; medians of 9 runs keep load spikes out.
    assert.ok(
      largest.medianMs > 1.2 * smallest.medianMs,
      `largest ${largest.medianMs} ms, smallest ${smallest.medianMs} ms`,
    );
  });

  it('gives exact nearest-rank statistics with an injected clock', async () => {
    const space = tinySpace();
    const clock = millisecondClock();
    const table = await profileSubnets(runtime, space, [space.smallest(), space.largest()], {
      warmupRuns: 0,
      timedRuns: 4,
      now: clock.now,
    });
    assert.equal(clock.calls(), 2 * 4 * 2, 'read only at the start and end of each timed run');
    for (const row of table.rows) assert.deepEqual([row.medianMs, row.p95Ms], [1, 1]);

    // Runs of 1..20 ms in shuffled order: the 10th and 19th smallest are the nearest-rank median
    // and p95 (interpolation would give 10.5 and 19.05).
    const durations = [7, 20, 3, 14, 1, 18, 9, 12, 5, 16, 2, 19, 11, 4, 15, 6, 13, 8, 17, 10];
    const scripted = await profileSubnets(runtime, space, [space.smallest()], {
      warmupRuns: 1,
      timedRuns: durations.length,
      now: scriptedClock(durations),
    });
    assert.deepEqual(scripted.rows, [
      { subnet: space.format(space.smallest()), medianMs: 10, p95Ms: 19 },
    ]);
    // Nearest rank is ceil(p/100 * n), not rounded: the 95th of 19 samples is the 19th.
    const nineteen = Array.from({ length: 19 }, (_, i) => i + 1);
    assert.equal(percentile(nineteen, 95), 19);
    assert.equal(percentile([1, 2, 3, 4], 50), 2);
    assert.equal(percentile([4], 95), 4);
  });

  it('builds a lookup table that times each distinct layer shape once, with estimates within 2x of full measurements', async (t) => {
    const { tf } = runtime;
    const space = tinySpace();
    const expected = new Set<string>();
    for (const spec of space.enumerate())
      for (const key of layerKeys(space, spec)) expected.add(key);
    const timed: string[] = [];
    let clockReads = 0;
    const tensors = tf.memory().numTensors;
    // With tfjs, whose layers of this tiny network take tenths of a millisecond: ONNX Runtime runs
    // them in microseconds, where a busy machine's noise is larger than the layers (how close its
    // estimates come is measured by the benchmarks, not asserted here).
    const table = await buildLatencyLookupTable(runtime, space, {
      engine: 'tfjs',
      warmupRuns: 5,
      timedRuns: 5,
      now: () => {
        clockReads++;
        return process.hrtime.bigint();
      },
      onProgress: (done, total, key) => {
        timed.push(key);
        assert.equal(done, timed.length);
        assert.equal(total, expected.size);
      },
    });
    assert.deepEqual(new Set(timed), expected, 'every layer shape of the 243 subnets');
    assert.equal(timed.length, expected.size, 'each shape timed once');
    // Every layer shape, and the call overhead once.
    assert.equal(clockReads, 2 * 5 * (expected.size + 1));
    assert.ok(table.callOverhead && table.callOverhead.medianMs > 0);
    assert.deepEqual(new Set(Object.keys(table.entries)), expected);
    for (const entry of Object.values(table.entries))
      assert.ok(entry.medianMs > 0 && entry.p95Ms >= entry.medianMs);

    const subnets = [space.smallest(), space.largest(), space.sample(new Random(8))];
    const error = await lookupTableError(runtime, space, table, subnets, {
      engine: 'tfjs',
      warmupRuns: 5,
    });
    assert.equal(tf.memory().numTensors, tensors, 'no tensor left behind');
    t.diagnostic(
      `lookup-table error: mean ${error.meanAbsolutePercentError.toFixed(1)}%, max ${error.maxAbsolutePercentError.toFixed(1)}% (${error.rows.map((row) => `${row.estimatedMs.toFixed(1)}/${row.measuredMs.toFixed(1)} ms`).join(', ')})`,
    );
    assert.equal(error.samples, 3);
    for (const row of error.rows) {
      assert.equal(row.estimatedMs, estimateLatency(table, space, space.parse(row.subnet)));
      const ratio = row.estimatedMs / row.measuredMs;
      assert.ok(
        ratio > 0.5 && ratio < 2,
        `${row.subnet}: estimated ${row.estimatedMs} ms, measured ${row.measuredMs} ms`,
      );
    }
    assert.ok(error.maxAbsolutePercentError >= error.meanAbsolutePercentError);
  });

  it('measures with the tfjs engine and the given threads when asked, and records both', async () => {
    const space = tinySpace();
    const table = await profileSubnets(runtime, space, [space.smallest()], {
      engine: 'tfjs',
      warmupRuns: 1,
      timedRuns: 2,
    });
    assert.equal(table.device.engine, 'tfjs');
    assert.equal(table.device.engineVersion, '2.21.0');
    // TensorFlow loaded here without TF_NUM_INTRAOP_THREADS: every core, and no other number.
    assert.equal(process.env.TF_NUM_INTRAOP_THREADS, undefined);
    assert.equal(table.device.threads, availableParallelism());
    await assert.rejects(
      profileSubnets(runtime, space, [space.smallest()], { engine: 'tfjs', threads: 64 }),
      /threads 64: TensorFlow runs \d+, fixed when it loaded/,
    );
    const onnx = await profileSubnets(runtime, space, [space.smallest()], {
      threads: 1,
      warmupRuns: 1,
      timedRuns: 2,
    });
    assert.equal(onnx.device.engine, 'onnxruntime');
    assert.equal(onnx.device.threads, 1);
  });

  it('merges identical block shapes of the elastic space and estimates the sum of the layers', async () => {
    const space = new ElasticSpace(TINY_ARCHITECTURE);
    const clock = millisecondClock();
    const table = await buildLatencyLookupTable(runtime, space, {
      warmupRuns: 0,
      timedRuns: 1,
      now: clock.now,
    });
    // Stem, head, the fixed first block, and 9 (kernel, expand) shapes per distinct block
    // position: unit 1 keeps 8 channels at stride 1, so its first block is shaped as its others
    // (one position); units 2 to 5 have two (the first block strides or widens).
    assert.equal(Object.keys(table.entries).length, 3 + 9 + 4 * 2 * 9);
    // Every layer shape, and the call overhead once.
    assert.equal(clock.calls(), 2 * (Object.keys(table.entries).length + 1));
    assert.deepEqual(table.callOverhead, { medianMs: 1, p95Ms: 1 });
    // One call's overhead is paid per layer in the table, once by the subnet.
    const overhead = 0.25;
    const corrected = { ...table, callOverhead: { medianMs: overhead, p95Ms: 0.5 } };

    const random = new Random(5);
    const subnets = [space.largest(), space.smallest()];
    for (let i = 0; i < 50; i++) subnets.push(space.sample(random));
    for (const spec of subnets) {
      // Every layer takes exactly 1 ms with this clock.
      const layers = layerKeys(space, spec).length;
      assert.equal(estimateLatency(corrected, space, spec), overhead + layers * (1 - overhead));
    }
    const estimated = lookupLatencyTable(table, space, subnets);
    assert.equal(parseLatencyTable(estimated, 'x', space).method, 'lookup-table');
    assert.equal(estimated.rows.length, new Set(subnets.map((s) => space.format(s))).size);
  });

  it('rejects bad options with a RangeError naming the option', async () => {
    const space = tinySpace();
    const bad: [string, ProfileOptions][] = [
      ['batchSize', { batchSize: 0 }],
      ['batchSize', { batchSize: 1.5 }],
      ['warmupRuns', { warmupRuns: -1 }],
      ['timedRuns', { timedRuns: 0 }],
      ['timedRuns', { timedRuns: Number.NaN }],
      ['now', { now: 'soon' as any }],
      ['onProgress', { onProgress: 5 as any }],
      ['device.nodeName', { device: { nodeName: '' } }],
      ['device.labels.zone', { device: { labels: { zone: '' } } }],
      ['engine', { engine: 'tensorrt' as any }],
      ['threads', { threads: 0 }],
    ];
    for (const [name, options] of bad) {
      const message = new RegExp(`^${name.replace(/\./g, '\\.')} must`);
      await assert.rejects(profileSubnets(runtime, space, [space.smallest()], options), {
        name: 'RangeError',
        message,
      });
      await assert.rejects(buildLatencyLookupTable(runtime, space, options), {
        name: 'RangeError',
        message,
      });
    }
    await assert.rejects(profileSubnets(runtime, space, []), {
      name: 'RangeError',
      message: /subnets must name at least one subnet/,
    });
    const elastic = new ElasticSpace(TINY_ARCHITECTURE);
    await assert.rejects(profileSubnets(runtime, space, [elastic.largest()]), SubnetSpecError);

    // A table of one architecture is not used for another, nor for a missing layer.
    const clock = millisecondClock();
    const table = await buildLatencyLookupTable(runtime, space, {
      warmupRuns: 0,
      timedRuns: 1,
      now: clock.now,
    });
    const small = new CompoundSpace(SMALL_ARCHITECTURE);
    assert.throws(() => estimateLatency(table, small, small.smallest()), {
      name: 'RangeError',
      message: /the lookup table is for architecture/,
    });
    const [missing] = layerKeys(space, space.largest()).slice(-2);
    const partial = {
      ...table,
      entries: Object.fromEntries(Object.entries(table.entries).filter(([k]) => k !== missing)),
    };
    assert.throws(() => estimateLatency(partial, space, space.largest()), {
      name: 'RangeError',
      // Unit 5's blocks 2 to 4 share the removed key: the first of them is named.
      message: /no entry for unit5\.block2 of r16-d4e6-d4e6-d4e6-d4e6-d4e6 \(key block-/,
    });
    await assert.rejects(
      lookupTableError(runtime, space, table, [space.smallest()], { batchSize: 2 }),
      {
        name: 'RangeError',
        message: /batchSize 2 differs from the lookup table's 1/,
      },
    );
  });

  it('frees every tensor and model, also when a measurement fails', async () => {
    const { tf } = runtime;
    const space = tinySpace();
    const tensors = tf.memory().numTensors;
    let reads = 0;
    const failingClock = (): bigint => {
      if (++reads === 3) throw new Error('clock failed');
      return process.hrtime.bigint();
    };
    await assert.rejects(
      profileSubnets(runtime, space, [space.smallest()], {
        warmupRuns: 1,
        timedRuns: 2,
        now: failingClock,
      }),
      /clock failed/,
    );
    assert.equal(tf.memory().numTensors, tensors);
    reads = 0;
    await assert.rejects(
      buildLatencyLookupTable(runtime, space, { warmupRuns: 1, timedRuns: 2, now: failingClock }),
      /clock failed/,
    );
    assert.equal(tf.memory().numTensors, tensors);
    await profileSubnets(runtime, space, [space.smallest()], { warmupRuns: 1, timedRuns: 1 });
    assert.equal(tf.memory().numTensors, tensors);
  });
});
