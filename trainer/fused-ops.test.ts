import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';

import type * as tfjs from '@tensorflow/tfjs';

import { loadTensorFlow, type TensorFlow } from './backend.js';
import { fusedBatchNormTraining, type BatchStatistics } from './fused-ops.js';

describe('fusedBatchNormTraining', () => {
  let tf: TensorFlow;
  before(async () => {
    ({ tf } = await loadTensorFlow({ purpose: 'training' }));
  });

  it("matches tfjs's composed batch norm in value, gradients and statistics", () => {
    const x = tf.randomNormal<tfjs.Rank.R4>([8, 6, 6, 5], 1, 2, 'float32', 1);
    const gamma = tf.randomUniform<tfjs.Rank.R1>([5], 0.5, 1.5, 'float32', 2);
    const beta = tf.randomNormal<tfjs.Rank.R1>([5], 0, 1, 'float32', 3);
    const weights = tf.randomNormal([8, 6, 6, 5], 0, 1, 'float32', 4);
    let statistics: BatchStatistics | undefined;
    const fused = (a: tfjs.Tensor, b: tfjs.Tensor, c: tfjs.Tensor): tfjs.Scalar => {
      statistics?.mean.dispose();
      statistics?.variance.dispose();
      const y = fusedBatchNormTraining(
        tf,
        a as tfjs.Tensor4D,
        b as tfjs.Tensor1D,
        c as tfjs.Tensor1D,
        1e-5,
        (s) => (statistics = s),
      );
      assert.ok(y, 'the native backend provides the fused kernels');
      return y.mul(weights).sum();
    };
    const composed = (a: tfjs.Tensor, b: tfjs.Tensor, c: tfjs.Tensor): tfjs.Scalar => {
      const { mean, variance } = tf.moments(a, [0, 1, 2]);
      return tf
        .batchNorm4d(
          a as tfjs.Tensor4D,
          mean as tfjs.Tensor1D,
          variance as tfjs.Tensor1D,
          c as tfjs.Tensor1D,
          b as tfjs.Tensor1D,
          1e-5,
        )
        .mul(weights)
        .sum();
    };
    const maxDifference = (a: tfjs.Tensor, b: tfjs.Tensor): number =>
      tf.tidy(() => a.sub(b).abs().max().dataSync()[0] ?? Infinity);
    assert.ok(maxDifference(fused(x, gamma, beta), composed(x, gamma, beta)) < 1e-3);
    const fusedGrads = tf.grads(fused)([x, gamma, beta]);
    const composedGrads = tf.grads(composed)([x, gamma, beta]);
    fusedGrads.forEach((grad, i) => {
      const reference = composedGrads[i] as tfjs.Tensor;
      const scale = tf.tidy(() => reference.abs().max().dataSync()[0] ?? 1);
      assert.ok(maxDifference(grad, reference) < 1e-5 * Math.max(scale, 1) * 10, `gradient ${i}`);
    });
    const { mean, variance } = tf.moments(x, [0, 1, 2]);
    assert.ok(statistics);
    assert.ok(maxDifference(statistics.mean, mean) < 1e-5);
    const n = 8 * 6 * 6;
    assert.ok(
      maxDifference(statistics.variance, variance.mul(n / (n - 1))) < 1e-4,
      'the variance is Bessel-corrected',
    );
  });
});
