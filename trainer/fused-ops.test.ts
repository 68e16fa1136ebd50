import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';

import type * as tfjs from '@tensorflow/tfjs';

import { loadTensorFlow, type TensorFlow } from './backend.js';
import {
  fusedBatchNormTraining,
  installNativeActivationGradients,
  type BatchStatistics,
} from './fused-ops.js';
import { hSwish } from './supernet.js';

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

describe('native ReLU, ReLU6 and h-swish gradients', () => {
  let tf: TensorFlow;
  before(async () => {
    ({ tf } = await loadTensorFlow({ purpose: 'training' }));
  });

  /** Random values in [-10, 10), none within 1e-3 of the kinks at -3, 0, 3 and 6. */
  const awayFromKinks = (count: number, seed: number): Float32Array => {
    const values = new Float32Array(count);
    let state = seed;
    for (let i = 0; i < count; i++) {
      let v: number;
      do {
        state = (state * 1103515245 + 12345) % 2147483648;
        v = (state / 2147483648) * 20 - 10;
      } while ([-3, 0, 3, 6].some((kink) => Math.abs(v - kink) < 1e-3));
      values[i] = v;
    }
    return values;
  };
  const shape: [number, number, number, number] = [4, 8, 8, 6];
  const count = 4 * 8 * 8 * 6;

  /** d/dx of sum(f(x) * w), by tf.grad, read back. */
  const gradientOf = (
    f: (x: tfjs.Tensor) => tfjs.Tensor,
    x: tfjs.Tensor,
    w: tfjs.Tensor,
  ): Float32Array =>
    tf.tidy(() =>
      tf
        .grad((input: tfjs.Tensor) => f(input).mul(w).sum())(x)
        .dataSync(),
    ) as Float32Array;

  const assertClose = (
    actual: Float32Array,
    expected: (i: number) => number,
    label: string,
    tolerance = 1e-6,
  ): void => {
    assert.equal(actual.length, count);
    for (let i = 0; i < count; i++) {
      const e = expected(i);
      assert.ok(
        Math.abs((actual[i] ?? NaN) - e) <= tolerance * Math.max(1, Math.abs(e)),
        `${label}[${i}]: ${actual[i]} vs ${e}`,
      );
    }
  };

  it('registers TensorFlow ReluGrad / Relu6Grad for Relu and Relu6 and runs them instead of Step', () => {
    const backend = tf.backend() as unknown as {
      executeSingleOutput: (...args: unknown[]) => unknown;
      executeMultipleOutputs: (...args: unknown[]) => unknown;
    };
    const ops: string[] = [];
    const single = backend.executeSingleOutput;
    const multiple = backend.executeMultipleOutputs;
    backend.executeSingleOutput = function (this: unknown, ...args: unknown[]) {
      ops.push(String(args[0]));
      return single.apply(this, args);
    };
    backend.executeMultipleOutputs = function (this: unknown, ...args: unknown[]) {
      ops.push(String(args[0]));
      return multiple.apply(this, args);
    };
    try {
      const x = tf.tensor4d(awayFromKinks(count, 1), shape);
      const w = tf.onesLike(x);
      gradientOf((t) => tf.relu6(tf.relu(t)), x, w);
      tf.dispose([x, w]);
    } finally {
      backend.executeSingleOutput = single;
      backend.executeMultipleOutputs = multiple;
    }
    assert.ok(ops.includes('ReluGrad'), `ops: ${ops.join(', ')}`);
    assert.ok(ops.includes('Relu6Grad'), `ops: ${ops.join(', ')}`);
    for (const slow of ['Select', 'IsNan', 'Greater', 'LessEqual'])
      assert.ok(!ops.includes(slow), `${slow} ran: ${ops.join(', ')}`);
    const registered = tf.getGradient('Relu');
    assert.equal(installNativeActivationGradients(tf), true);
    assert.equal(tf.getGradient('Relu'), registered, 'installing again changes nothing');
  });

  it('relu and relu6 gradients equal dy * [0 < x] and dy * [0 < x < 6] away from the kinks', () => {
    const values = awayFromKinks(count, 2);
    const weights = awayFromKinks(count, 3);
    const x = tf.tensor4d(values, shape);
    const w = tf.tensor4d(weights, shape);
    const dy = (i: number): number => weights[i] ?? NaN;
    const v = (i: number): number => values[i] ?? NaN;
    assertClose(
      gradientOf((t) => tf.relu(t), x, w),
      (i) => (v(i) > 0 ? dy(i) : 0),
      'relu',
    );
    assertClose(
      gradientOf((t) => tf.relu6(t), x, w),
      (i) => (v(i) > 0 && v(i) < 6 ? dy(i) : 0),
      'relu6',
    );
    tf.dispose([x, w]);
  });

  it("the supernet's h-swish: value x * relu6(x + 3) / 6, gradient (2x + 3) / 6 on (-3, 3), 1 above, 0 below", () => {
    const values = awayFromKinks(count, 4);
    const weights = awayFromKinks(count, 5);
    const x = tf.tensor4d(values, shape);
    const w = tf.tensor4d(weights, shape);
    const v = (i: number): number => values[i] ?? NaN;
    const value = tf.tidy(() => hSwish(tf, x).dataSync()) as Float32Array;
    assertClose(value, (i) => (v(i) * Math.min(Math.max(v(i) + 3, 0), 6)) / 6, 'h-swish');
    const slope = (t: number): number => (t <= -3 ? 0 : t >= 3 ? 1 : (2 * t + 3) / 6);
    assertClose(
      gradientOf((t) => hSwish(tf, t), x, w),
      (i) => (weights[i] ?? NaN) * slope(v(i)),
      'h-swish gradient',
    );
    tf.dispose([x, w]);
  });

  it('agrees with tf.grad of references built without Relu or Relu6, through a chain of layers', () => {
    // maximum/minimum have their own tfjs gradients: a wrong registered gradient shows up here.
    const relu = (t: tfjs.Tensor): tfjs.Tensor => tf.maximum(t, 0);
    const relu6 = (t: tfjs.Tensor): tfjs.Tensor => tf.minimum(tf.maximum(t, 0), 6);
    const hSwishReference = (t: tfjs.Tensor): tfjs.Tensor => t.mul(relu6(t.add(3))).div(6);
    const kernel = tf.randomNormal<tfjs.Rank.R4>([3, 3, 6, 6], 0, 0.15, 'float32', 6);
    const chain =
      (
        activation: (t: tfjs.Tensor) => tfjs.Tensor,
        six: (t: tfjs.Tensor) => tfjs.Tensor,
        swish: (t: tfjs.Tensor) => tfjs.Tensor,
      ) =>
      (x: tfjs.Tensor): tfjs.Tensor =>
        // Scaled so that every range passes gradient on: convolution outputs above 6 reach relu6
        // below its cap, and relu6's [0, 6] reaches h-swish as [-6, 6], both sides of +-3.
        swish(
          six(
            activation(tf.conv2d(x as tfjs.Tensor4D, kernel, 1, 'same'))
              .mul(0.5)
              .sub(1),
          )
            .sub(3)
            .mul(2),
        );
    const x = tf.tensor4d(awayFromKinks(count, 7), shape);
    const w = tf.tensor4d(awayFromKinks(count, 8), shape);
    const native = gradientOf(
      chain(tf.relu, tf.relu6, (t) => hSwish(tf, t)),
      x,
      w,
    );
    const reference = gradientOf(chain(relu, relu6, hSwishReference), x, w);
    let largest = 0;
    for (let i = 0; i < count; i++) largest = Math.max(largest, Math.abs(reference[i] ?? 0));
    assert.ok(largest > 1, 'the reference gradient is not trivially zero');
    // Float32 sums through a convolution, rounded in a different order: 1e-5, not 1e-6.
    assertClose(native, (i) => reference[i] ?? NaN, 'chain', 1e-5);
    tf.dispose([kernel, x, w]);
  });

  it('leaves no tensor behind across repeated gradient steps', () => {
    const x = tf.tensor4d(awayFromKinks(count, 9), shape);
    const w = tf.tensor4d(awayFromKinks(count, 10), shape);
    const step = (): void => {
      gradientOf((t) => hSwish(tf, tf.relu6(tf.relu(t).mul(2)).sub(3)), x, w);
    };
    step();
    const tensors = tf.memory().numTensors;
    for (let i = 0; i < 5; i++) step();
    assert.equal(tf.memory().numTensors, tensors);
    tf.dispose([x, w]);
  });

  it("falls back to tfjs's own gradients on the pure-JS backend", async () => {
    await tf.setBackend('cpu');
    try {
      const values = awayFromKinks(count, 11);
      const x = tf.tensor4d(values, shape);
      const w = tf.onesLike(x);
      const v = (i: number): number => values[i] ?? NaN;
      assertClose(
        gradientOf((t) => tf.relu(t), x, w),
        (i) => (v(i) > 0 ? 1 : 0),
        'relu on cpu',
      );
      assertClose(
        gradientOf((t) => tf.relu6(t), x, w),
        (i) => (v(i) > 0 && v(i) < 6 ? 1 : 0),
        'relu6 on cpu',
      );
      tf.dispose([x, w]);
    } finally {
      await tf.setBackend('tensorflow');
    }
  });
});
