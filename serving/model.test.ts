import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { Random } from '../compofa/random.js';
import { writeServedModel } from '../test/fixtures/served-model.js';
import { tinySpace } from '../test/fixtures/tiny-training.js';
import { loadTensorFlow, type TensorFlow } from '../trainer/backend.js';
import { buildSubnetModel } from '../trainer/extract.js';
import { exportOnnx } from '../trainer/onnx/export.js';
import { Supernet } from '../trainer/supernet.js';
import { ModelLoadError, ServedModel } from './model.js';

describe('ServedModel', () => {
  let tf: TensorFlow;
  let dir: string;
  before(async () => {
    ({ tf } = await loadTensorFlow({ purpose: 'inference' }));
    dir = await mkdtemp(join(tmpdir(), 'compofa-model-'));
    await writeServedModel(tf, join(dir, 'model'), 'largest');
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('gives the same probabilities with ONNX Runtime (model.onnx) and TensorFlow.js (model.json)', async () => {
    const load = (engine: 'onnxruntime' | 'tfjs') =>
      ServedModel.load({ engine, modelDir: join(dir, 'model'), maxBatchSize: 4, threads: 1, tf });
    const onnx = await load('onnxruntime');
    const layers = await load('tfjs');
    try {
      assert.deepEqual(onnx.signature, layers.signature);
      assert.equal(onnx.platform, 'onnxruntime_onnx');
      assert.equal(layers.platform, 'tensorflowjs_layers');
      assert.equal(onnx.description.engine.name, 'onnxruntime');
      assert.match(onnx.description.engine.version, /^\d+\.\d+\.\d+/);
      assert.equal(layers.description.engine.name, 'tfjs');
      assert.equal(onnx.description.subnet, layers.description.subnet);
      const random = new Random(3);
      const images = Float32Array.from({ length: 3 * onnx.rowSize }, () => random.next());
      const [a, b] = [await onnx.predict(images, 3), await layers.predict(images, 3)];
      assert.equal(a.length, 3 * onnx.signature.numClasses);
      for (let i = 0; i < a.length; i++) {
        assert.ok(
          Math.abs((a[i] ?? NaN) - (b[i] ?? NaN)) <= 1e-5,
          `element ${i}: ${a[i]} vs ${b[i]}`,
        );
      }
    } finally {
      await onnx.dispose();
      await layers.dispose();
    }
  });

  /** The tiny space's smallest subnet as `dir/<name>/model.onnx`, with `metadata`. */
  async function onnxWithMetadata(
    name: string,
    metadata: Record<string, unknown>,
  ): Promise<string> {
    const space = tinySpace();
    const supernet = new Supernet(tf, space, 1);
    const model = buildSubnetModel(tf, supernet, space.smallest());
    const bytes = exportOnnx(model, { metadata, producerVersion: 'test' });
    model.dispose();
    supernet.dispose();
    await mkdir(join(dir, name));
    await writeFile(join(dir, name, 'model.onnx'), bytes);
    return join(dir, name);
  }

  it('refuses a model.onnx whose input shape disagrees with its metadata', async () => {
    const wrong = await onnxWithMetadata('wrong', {
      subnet: 'r16',
      resolution: 20,
      inputChannels: 1,
      numClasses: 10,
    });
    await assert.rejects(
      ServedModel.load({ engine: 'onnxruntime', modelDir: wrong, maxBatchSize: 1 }),
      (error: unknown) =>
        error instanceof ModelLoadError &&
        /wrong\/model\.onnx: input \["batch",16,16,1\] and output \["batch",10\] disagree with the model's metadata \(resolution 20, 1 channels, 10 classes\)/.test(
          error.message,
        ),
    );
  });

  it('refuses a model.onnx whose CompOFA metadata is not what extraction writes, naming it', async () => {
    const odd = await onnxWithMetadata('odd-metadata', { subnet: 'x' });
    await assert.rejects(
      ServedModel.load({ engine: 'onnxruntime', modelDir: odd, maxBatchSize: 1 }),
      /odd-metadata\/model\.onnx: metadata_props\['compofa'\] must be an object with positive integers resolution, inputChannels, numClasses/,
    );
  });

  it('refuses the tfjs engine without TensorFlow.js', async () => {
    await assert.rejects(
      ServedModel.load({ engine: 'tfjs', modelDir: join(dir, 'model'), maxBatchSize: 1 }),
      /the tfjs engine needs TensorFlow\.js loaded/,
    );
  });
});
