import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import {
  loadTensorFlow,
  NativeTensorFlowUnavailableError,
  oneDnnEnabled,
  type TensorFlowPurpose,
} from './backend.js';

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

describe('oneDnnEnabled', () => {
  it('is off by default for inference and profiling, on for the rest', () => {
    const expected: Record<TensorFlowPurpose, boolean> = {
      inference: false,
      profiling: false,
      training: true,
      evaluation: true,
      extraction: true,
    };
    for (const [purpose, enabled] of Object.entries(expected))
      assert.equal(oneDnnEnabled(purpose as TensorFlowPurpose, {}), enabled, purpose);
  });

  it('follows TF_ENABLE_ONEDNN_OPTS when it is set, in the spellings TensorFlow accepts', () => {
    for (const value of ['1', 'true', 'TRUE', ' 1 '])
      assert.equal(oneDnnEnabled('inference', { TF_ENABLE_ONEDNN_OPTS: value }), true, value);
    for (const value of ['0', 'false', 'False'])
      assert.equal(oneDnnEnabled('training', { TF_ENABLE_ONEDNN_OPTS: value }), false, value);
    assert.equal(oneDnnEnabled('training', { TF_ENABLE_ONEDNN_OPTS: '' }), true);
  });

  it('rejects any other value, naming the variable and what it accepts', () => {
    assert.throws(
      () => oneDnnEnabled('inference', { TF_ENABLE_ONEDNN_OPTS: 'yes' }),
      /TF_ENABLE_ONEDNN_OPTS must be 1, true, 0 or false, not 'yes'/,
    );
  });

  /** Loads TensorFlow for `purpose` in a fresh process with TensorFlow's own logging on. */
  async function loadInChild(
    purpose: TensorFlowPurpose,
    env: Record<string, string> = {},
  ): Promise<{ reported: boolean; tensorflowSays: boolean }> {
    const backend = fileURLToPath(new URL('./backend.ts', import.meta.url));
    const script =
      `const { loadTensorFlow } = await import(${JSON.stringify(backend)});` +
      `const runtime = await loadTensorFlow({ purpose: '${purpose}', log: () => undefined });` +
      `console.log(JSON.stringify({ oneDnn: runtime.oneDnn }));`;
    const childEnv: NodeJS.ProcessEnv = { ...process.env, TF_CPP_MIN_LOG_LEVEL: '0', ...env };
    if (!('TF_ENABLE_ONEDNN_OPTS' in env)) delete childEnv.TF_ENABLE_ONEDNN_OPTS;
    const { stdout, stderr } = await promisify(execFile)(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '-e', script],
      { env: childEnv },
    );
    const { oneDnn } = JSON.parse(stdout.trim().split('\n').at(-1) ?? '') as { oneDnn: boolean };
    // TensorFlow announces its oneDNN kernels when it loads them, and only then.
    return { reported: oneDnn, tensorflowSays: /oneDNN custom operations are on/.test(stderr) };
  }

  it('reaches TensorFlow: its oneDNN kernels load for training, not for inference unless asked', async () => {
    assert.deepEqual(await loadInChild('training'), { reported: true, tensorflowSays: true });
    assert.deepEqual(await loadInChild('inference'), { reported: false, tensorflowSays: false });
    assert.deepEqual(await loadInChild('inference', { TF_ENABLE_ONEDNN_OPTS: '1' }), {
      reported: true,
      tensorflowSays: true,
    });
  });
});
