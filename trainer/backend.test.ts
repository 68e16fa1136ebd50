import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';

import { loadTensorFlow, NativeTensorFlowUnavailableError } from './backend.js';

const nativeMissing = (name: string): Promise<unknown> =>
  name.startsWith('@tensorflow/tfjs-node')
    ? Promise.reject(new Error(`Cannot find module '${name}'`))
    : import(name).then((module: { default: unknown }) => module.default);

describe('loadTensorFlow', () => {
  it('selects native TensorFlow 2.21 and logs the backend and version', async () => {
    const records: Record<string, unknown>[] = [];
    const runtime = await loadTensorFlow({
      purpose: 'training',
      log: (r) => records.push({ ...r }),
    });
    assert.equal(runtime.backend, 'tensorflow');
    assert.equal(runtime.native, true);
    assert.equal(runtime.packageName, '@tensorflow/tfjs-node');
    assert.equal(runtime.tensorflowVersion, '2.21.0');
    assert.equal(runtime.tf.getBackend(), 'tensorflow');
    assert.equal(records.length, 1);
    assert.deepEqual(
      {
        backend: records[0]?.backend,
        version: records[0]?.tensorflowVersion,
        purpose: records[0]?.purpose,
      },
      { backend: 'tensorflow', version: '2.21.0', purpose: 'training' },
    );
  });

  it('loads once per process: a second call returns the same runtime without logging again', async () => {
    const first = await loadTensorFlow({ purpose: 'training' });
    let logged = 0;
    const second = await loadTensorFlow({ purpose: 'profiling', log: () => (logged += 1) });
    assert.equal(second, first);
    assert.equal(logged, 0);
  });

  it('trains a conv + depthwise-conv net natively: the loss falls over a few steps on fixed data', async () => {
    const { tf } = await loadTensorFlow({ purpose: 'training' });
    const seed = 7;
    const model = tf.sequential({
      layers: [
        tf.layers.conv2d({
          inputShape: [16, 16, 3],
          filters: 8,
          kernelSize: 3,
          strides: 2,
          padding: 'same',
          kernelInitializer: tf.initializers.glorotUniform({ seed }),
        }),
        tf.layers.batchNormalization(),
        tf.layers.reLU(),
        tf.layers.depthwiseConv2d({
          kernelSize: 3,
          padding: 'same',
          depthwiseInitializer: tf.initializers.glorotUniform({ seed: seed + 1 }),
        }),
        tf.layers.batchNormalization(),
        tf.layers.reLU(),
        tf.layers.conv2d({
          filters: 16,
          kernelSize: 1,
          kernelInitializer: tf.initializers.glorotUniform({ seed: seed + 2 }),
        }),
        tf.layers.globalAveragePooling2d({}),
        tf.layers.dense({
          units: 4,
          activation: 'softmax',
          kernelInitializer: tf.initializers.glorotUniform({ seed: seed + 3 }),
        }),
      ],
    });
    model.compile({ optimizer: tf.train.sgd(0.1), loss: 'categoricalCrossentropy' });
    // Four classes told apart by brightness: learnable in a few steps, fixed by the seed.
    const classes = Array.from({ length: 32 }, (_, i) => i % 4);
    const images = tf.tidy(() =>
      tf
        .randomNormal([32, 16, 16, 3], 0, 1, 'float32', seed)
        .add(tf.tensor1d(classes.map((c) => c - 1.5)).reshape([32, 1, 1, 1])),
    );
    const labels = tf.oneHot(tf.tensor1d(classes, 'int32'), 4);
    const tensorsBefore = tf.memory().numTensors;
    const losses: number[] = [];
    for (let step = 0; step < 8; step++) {
      const loss = await model.trainOnBatch(images, labels);
      losses.push(Array.isArray(loss) ? Number(loss[0]) : loss);
    }
    assert.equal(tf.memory().numTensors, tensorsBefore, 'a training step leaked tensors');
    tf.dispose([images, labels]);
    model.dispose();
    const first = losses[0] ?? Number.NaN;
    const last = losses.at(-1) ?? Number.NaN;
    assert.ok(Number.isFinite(first) && Number.isFinite(last), `losses: ${losses.join(', ')}`);
    assert.ok(
      last < first * 0.8,
      `loss did not fall: ${losses.map((l) => l.toFixed(4)).join(', ')}`,
    );
  });

  it('refuses to train on the pure-JS backend unless asked, and says how to fix it', async () => {
    await assert.rejects(
      loadTensorFlow({
        purpose: 'training',
        allowPureJs: false,
        importPackage: nativeMissing,
        log: () => undefined,
      }),
      (error: unknown) => {
        assert.ok(error instanceof NativeTensorFlowUnavailableError);
        assert.match(error.message, /native TensorFlow is not available for training/);
        assert.match(error.message, /Cannot find module '@tensorflow\/tfjs-node'/);
        assert.match(error.message, /npm run setup/);
        assert.match(error.message, /COMPOFA_ALLOW_PURE_JS=1/);
        return true;
      },
    );
  });

  it('names the GPU setup command when the GPU package is missing', async () => {
    await assert.rejects(
      loadTensorFlow({
        purpose: 'profiling',
        device: 'gpu',
        allowPureJs: false,
        importPackage: nativeMissing,
      }),
      /tfjs-node-gpu could not be loaded.*npm run setup:gpu/,
    );
  });

  describe('when the pure-JS backend is explicitly allowed', () => {
    after(async () => {
      const { tf } = await loadTensorFlow({ purpose: 'training' });
      await tf.setBackend('tensorflow');
    });

    it('falls back to the cpu backend and warns', async () => {
      const records: Record<string, unknown>[] = [];
      const runtime = await loadTensorFlow({
        purpose: 'training',
        allowPureJs: true,
        importPackage: nativeMissing,
        log: (r) => records.push({ ...r }),
      });
      assert.equal(runtime.backend, 'cpu');
      assert.equal(runtime.native, false);
      assert.equal(runtime.tensorflowVersion, undefined);
      assert.equal(records[0]?.level, 'warn');
      assert.equal(runtime.tf.tensor1d([1, 2]).sum().dataSync()[0], 3);
    });
  });
});
