import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';

import type * as tfjs from '@tensorflow/tfjs';

import { SMALL_ARCHITECTURE } from '../compofa/architecture.js';
import { subnetCost } from '../compofa/cost.js';
import { CompoundSpace, ElasticSpace } from '../compofa/design-space.js';
import { loadTensorFlow, type TensorFlow } from './backend.js';
import { Supernet } from './supernet.js';

const compound = new CompoundSpace(SMALL_ARCHITECTURE);
const elastic = new ElasticSpace(SMALL_ARCHITECTURE);

describe('Supernet', () => {
  let tf: TensorFlow;
  before(async () => {
    ({ tf } = await loadTensorFlow({ purpose: 'training' }));
  });
  const images = (seed = 1, batch = 8): tfjs.Tensor4D =>
    tf.randomUniform([batch, 28, 28, 1], 0, 1, 'float32', seed);
  const parameterCount = (net: Supernet): number =>
    net.trainableVariables.reduce((sum, v) => sum + v.size, 0);

  it('holds exactly the weights of its largest subnet, as counted analytically', () => {
    const net = new Supernet(tf, compound, 1);
    assert.equal(parameterCount(net), subnetCost(SMALL_ARCHITECTURE, compound.largest()).params);
    net.dispose();
    // The elastic supernet adds OFA's 7->5 (25x25) and 5->3 (9x9) kernel transforms per block.
    const elasticNet = new Supernet(tf, elastic, 1);
    assert.equal(
      parameterCount(elasticNet),
      subnetCost(SMALL_ARCHITECTURE, elastic.largest()).params + 20 * (625 + 81),
    );
    elasticNet.dispose();
  });

  it('is reproducible from its seed', () => {
    const [a, b, c] = [1, 1, 2].map((seed) => new Supernet(tf, compound, seed));
    const weights = (net: Supernet | undefined): Float32Array =>
      net?.variables.get('unit3.block2.expand.kernel')?.dataSync() as Float32Array;
    assert.deepEqual(weights(a), weights(b));
    assert.notDeepEqual(weights(a), weights(c));
    for (const net of [a, b, c]) net?.dispose();
  });

  it('runs every kind of subnet to logits of the right shape without leaking tensors', () => {
    const net = new Supernet(tf, compound, 1);
    const x = images();
    const count = tf.memory().numTensors;
    for (const spec of [
      compound.smallest(),
      compound.largest(),
      compound.parse('r28-d3e4-d2e3-d4e6-d2e3-d3e4'),
    ]) {
      for (const mode of ['train', 'inference'] as const) {
        const shape = tf.tidy(() => net.forward(x, spec, mode).shape);
        assert.deepEqual(shape, [8, 10]);
      }
    }
    assert.equal(tf.memory().numTensors, count);
    x.dispose();
    net.dispose();
  });

  it('sorts middle channels by importance without changing what the largest subnet computes', () => {
    const net = new Supernet(tf, compound, 3);
    const x = images(4);
    const spec = compound.largest();
    const before = tf.tidy(() => net.forward(x, spec, 'inference').dataSync());
    net.sortChannelsByImportance();
    const after = tf.tidy(() => net.forward(x, spec, 'inference').dataSync());
    for (let i = 0; i < before.length; i++)
      assert.ok(Math.abs((before[i] ?? 0) - (after[i] ?? 0)) < 1e-4, `logit ${i}`);
    const importance = tf.tidy(
      () =>
        (net.units[2]?.[1]?.project.kernel.abs().sum([0, 1, 3]).dataSync() ??
          new Float32Array()) as Float32Array,
    );
    assert.ok(importance.length > 1);
    for (let i = 1; i < importance.length; i++)
      assert.ok(
        (importance[i - 1] ?? 0) >= (importance[i] ?? 0),
        `channel ${i} is more important than ${i - 1}`,
      );
    // A narrower subnet now keeps the most important channels, so its outputs change.
    x.dispose();
    net.dispose();
  });

  it('re-calibrates batch norm: afterwards inference on the calibration batch equals batch statistics', () => {
    const net = new Supernet(tf, compound, 5);
    const x = images(6, 32);
    const spec = compound.parse('r28-d2e3-d3e4-d4e6-d3e4-d2e3');
    const batchStatistics = tf.tidy(() => net.forward(x, spec, 'calibrate').dataSync());
    const stale = tf.tidy(() => net.forward(x, spec, 'inference').dataSync());
    net.recalibrate(spec, [x]);
    const recalibrated = tf.tidy(() => net.forward(x, spec, 'inference').dataSync());
    const maxDifference = (
      a: Float32Array | Int32Array | Uint8Array,
      b: Float32Array | Int32Array | Uint8Array,
    ): number => Math.max(...Array.from(a, (v, i) => Math.abs(v - (b[i] ?? 0))));
    assert.ok(
      maxDifference(stale, batchStatistics) > 1e-2,
      'the untrained moving averages differ from the batch statistics',
    );
    assert.ok(
      maxDifference(recalibrated, batchStatistics) < 1e-3,
      `difference ${maxDifference(recalibrated, batchStatistics)}`,
    );
    x.dispose();
    net.dispose();
  });

  it('learns: a few Nesterov-SGD steps on fixed data lower the loss, with no tensor growth between steps 3 and 8', () => {
    const net = new Supernet(tf, compound, 8);
    // Ten classes told apart by brightness: learnable in a few steps.
    const classes = Array.from({ length: 10 }, (_, i) => i);
    const x = tf.tidy(() =>
      images(9, 10)
        .mul(0.2)
        .add<tfjs.Tensor4D>(tf.tensor1d(classes.map((c) => c / 12)).reshape([10, 1, 1, 1])),
    );
    const labels = tf.oneHot(tf.tensor1d(classes, 'int32'), 10);
    const optimizer = tf.train.momentum(0.1, 0.9, true);
    const spec = compound.parse('r28-d2e3-d3e4-d2e3-d2e3-d2e3');
    const losses: number[] = [];
    let tensorsAtStep3 = 0;
    for (let step = 1; step <= 8; step++) {
      const loss = optimizer.minimize(
        () =>
          tf.losses.softmaxCrossEntropy<tfjs.Tensor, tfjs.Scalar>(
            labels,
            net.forward(x, spec, 'train'),
          ),
        true,
        net.trainableVariables,
      );
      losses.push(loss?.dataSync()[0] ?? Number.NaN);
      loss?.dispose();
      if (step === 3) tensorsAtStep3 = tf.memory().numTensors;
    }
    assert.equal(tf.memory().numTensors, tensorsAtStep3, 'tensors grew between steps');
    // The best of the last three steps: with momentum 0.9 on ten images one step may overshoot
    // (2.28 falling to 1.91, then 2.74 on a CI run), which says nothing about learning.
    assert.ok(
      Math.min(...losses.slice(-3)) < (losses[0] ?? 0) * 0.9,
      `losses ${losses.map((l) => l.toFixed(3)).join(', ')}`,
    );
    tf.dispose([x, labels]);
    optimizer.dispose();
    net.dispose();
  });
});
