/**
 * The small preset really learns: a short CompOFA run (teacher phase, then a compound phase) on a
 * Fashion-MNIST subset, then every one of its 243 subnets evaluated with batch-norm
 * re-calibration. The largest subnet must clearly beat chance and every subnet must beat it.
 * About 3 minutes of training and 3 of evaluation on 2 cores; the other trainer tests use a
 * quarter-width synthetic variant to stay fast.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';

import { SMALL_ARCHITECTURE } from '../compofa/architecture.js';
import { CompoundSpace } from '../compofa/design-space.js';
import type { AccuracyTable } from '../compofa/tables.js';
import { loadTensorFlow, type TensorFlow } from './backend.js';
import { loadDataset, type Dataset } from './datasets.js';
import { evaluateSubnets } from './evaluate.js';
import { trainSupernet, type TrainResult } from './train.js';

const CHANCE = 0.1;

describe('the small preset on Fashion-MNIST', () => {
  let tf: TensorFlow;
  let dataset: Dataset;
  let trained: TrainResult;
  let table: AccuracyTable;
  const space = new CompoundSpace(SMALL_ARCHITECTURE);

  before(async () => {
    ({ tf } = await loadTensorFlow({ purpose: 'training' }));
    // 60 real images per class: 510 to train on, 90 held out.
    dataset = await loadDataset(
      { kind: 'fashion-mnist', limitPerClass: 60 },
      { resolution: 28, channels: 1, seed: 1 },
    );
  });

  it('trains the teacher, then the compound subnets (112 steps)', async () => {
    trained = await trainSupernet(tf, {
      space,
      dataset,
      batchSize: 32,
      seed: 7,
      phases: [
        {
          name: 'teacher',
          epochs: 5,
          warmupEpochs: 0,
          learningRate: 1,
          subnetsPerStep: 1,
          subnets: 'largest',
        },
        {
          name: 'compound',
          epochs: 2,
          warmupEpochs: 0,
          learningRate: 0.5,
          subnetsPerStep: 2,
          subnets: 'sample',
        },
      ],
    });
    assert.equal(trained.step, trained.totalSteps);
    assert.equal(trained.losses.length, trained.totalSteps);
    assert.ok(trained.losses.every(Number.isFinite), 'every loss is finite');
  });

  it('has 243 subnets that all beat chance, the largest clearly', () => {
    table = evaluateSubnets(tf, trained.supernet, dataset, {
      calibrationImages: 64,
      settings: { checkpointStep: trained.step },
    });
    assert.equal(table.rows.length, 243);
    assert.equal(new Set(table.rows.map((row) => row.subnet)).size, 243);
    assert.equal(table.dataset.samples, dataset.validation.count);
    const largest = table.rows.find((row) => row.subnet === space.format(space.largest()));
    assert.ok(
      largest && largest.accuracy >= 4 * CHANCE,
      `the largest subnet: ${JSON.stringify(largest)}`,
    );
    const worst = table.rows.reduce((a, b) => (b.accuracy < a.accuracy ? b : a));
    assert.ok(worst.accuracy > CHANCE, `the worst subnet: ${JSON.stringify(worst)}`);
  });
});
