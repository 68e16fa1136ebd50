import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';

import { parseAccuracyTable } from '../compofa/tables.js';
import { tinyDataset, tinySchedule, tinySpace } from '../test/fixtures/tiny-training.js';
import { loadTensorFlow, type TensorFlow } from './backend.js';
import type { Dataset } from './datasets.js';
import { evaluateSubnets } from './evaluate.js';
import { Supernet } from './supernet.js';
import { trainSupernet, type TrainResult } from './train.js';

describe('evaluateSubnets', () => {
  let tf: TensorFlow;
  let dataset: Dataset;
  let trained: TrainResult;
  before(async () => {
    ({ tf } = await loadTensorFlow({ purpose: 'evaluation' }));
    dataset = await tinyDataset();
    trained = await trainSupernet(tf, {
      space: tinySpace(),
      dataset,
      phases: tinySchedule(5, 2),
      batchSize: 16,
      seed: 4,
    });
  });

  it('writes a valid accuracy table with one row per compound subnet, nearly all of them beating chance', () => {
    const progress: number[] = [];
    const table = evaluateSubnets(tf, trained.supernet, dataset, {
      calibrationImages: 64,
      onProgress: (done) => progress.push(done),
      settings: { checkpointStep: trained.step },
    });
    assert.equal(table.rows.length, 243);
    assert.equal(new Set(table.rows.map((row) => row.subnet)).size, 243);
    assert.deepEqual(
      parseAccuracyTable(JSON.parse(JSON.stringify(table)), 'table.json', trained.supernet.space),
      table,
    );
    assert.equal(progress.length, 243);
    assert.equal(table.dataset.samples, dataset.validation.count);
    assert.equal(table.settings.checkpointStep, trained.step);
    const chance = 1 / dataset.classNames.length;
    const largest = table.rows.find(
      (row) => row.subnet === trained.supernet.space.format(trained.supernet.space.largest()),
    );
    assert.ok(
      largest && largest.accuracy > 2 * chance,
      `largest subnet: ${JSON.stringify(largest)}`,
    );
    // After a few seconds of training a smallest subnet may only reach chance now and then
    // (TensorFlow's threads make the training vary a little from run to run): 9 in 10 must beat it.
    const atChance = table.rows.filter((row) => row.accuracy <= chance);
    assert.ok(
      atChance.length <= table.rows.length / 10,
      `${atChance.length} subnets at or below chance: ${JSON.stringify(atChance.slice(0, 5))}`,
    );
  });

  it('is deterministic and leaves the supernet as it found it', () => {
    const subnets = [trained.supernet.space.smallest(), trained.supernet.space.largest()];
    const before = [...trained.supernet.variables.values()].map((v) => v.dataSync().slice());
    const tensors = tf.memory().numTensors;
    const first = evaluateSubnets(tf, trained.supernet, dataset, {
      subnets,
      calibrationImages: 32,
      now: () => new Date(0),
    });
    const second = evaluateSubnets(tf, trained.supernet, dataset, {
      subnets,
      calibrationImages: 32,
      now: () => new Date(0),
    });
    assert.deepEqual(second, first);
    assert.equal(tf.memory().numTensors, tensors, 'evaluation leaked tensors');
    [...trained.supernet.variables.values()].forEach((v, i) => {
      assert.deepEqual(v.dataSync(), before[i], `${v.name} changed`);
    });
  });

  it('re-calibrates batch norm per subnet: without it a narrow subnet of a trained supernet does worse', () => {
    const spec = trained.supernet.space.smallest();
    const calibrated =
      evaluateSubnets(tf, trained.supernet, dataset, { subnets: [spec], calibrationImages: 64 })
        .rows[0]?.accuracy ?? 0;
    // The same subnet scored with the statistics the largest subnet left behind.
    const stale = tf.tidy(() => {
      const size = dataset.resolution * dataset.resolution * dataset.channels;
      const images = tf.tensor4d(dataset.validation.images, [
        dataset.validation.count,
        dataset.resolution,
        dataset.resolution,
        dataset.channels,
      ]);
      const predicted = trained.supernet.forward(images, spec, 'inference').argMax(1);
      const hits =
        predicted.equal(tf.tensor1d(dataset.validation.labels, 'int32')).sum().dataSync()[0] ?? 0;
      return hits / (dataset.validation.images.length / size);
    });
    assert.ok(calibrated > stale, `calibrated ${calibrated} vs stale ${stale}`);
  });

  it('refuses an elastic space without an explicit list, and bad options', async () => {
    const { ElasticSpace } = await import('../compofa/design-space.js');
    const elastic = new Supernet(tf, new ElasticSpace(tinySpace().architecture), 1);
    assert.throws(
      () => evaluateSubnets(tf, elastic, dataset),
      /the elastic space is too large to evaluate whole/,
    );
    elastic.dispose();
    assert.throws(
      () => evaluateSubnets(tf, trained.supernet, dataset, { batchSize: 0 }),
      /batchSize must be a positive integer, got 0/,
    );
  });
});
