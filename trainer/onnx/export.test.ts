import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';

import type * as tfjs from '@tensorflow/tfjs';
import * as ort from 'onnxruntime-node';

import { IMAGENET_ARCHITECTURE, SMALL_ARCHITECTURE } from '../../compofa/architecture.js';
import { CompoundSpace, type SubnetSpec } from '../../compofa/design-space.js';
import { extractionCases, perturb } from '../../test/fixtures/supernets.js';
import { loadTensorFlow, type TensorFlow } from '../backend.js';
import { buildSubnetModel } from '../extract.js';
import { Supernet } from '../supernet.js';
import { exportOnnx, OnnxExportError, ONNX_METADATA_KEY, samePadding } from './export.js';
import { readOnnxMetadata, readOnnxNodes } from './metadata.js';

const TOLERANCE = 1e-4;

describe('ONNX export', () => {
  let tf: TensorFlow;
  before(async () => {
    ({ tf } = await loadTensorFlow({ purpose: 'extraction' }));
  });

  /** The supernet's logits and the ONNX model's logits and probabilities for the same images. */
  async function compare(
    supernet: Supernet,
    spec: SubnetSpec,
    batch = 3,
  ): Promise<{ logits: number; probabilities: number; bytes: Uint8Array }> {
    const { resolution } = spec;
    const channels = supernet.space.architecture.inputChannels;
    const calibration = tf.randomUniform<tfjs.Rank.R4>(
      [8, resolution, resolution, channels],
      0,
      1,
      'float32',
      5,
    );
    supernet.recalibrate(spec, [calibration]);
    calibration.dispose();
    const model = buildSubnetModel(tf, supernet, spec);
    const bytes = exportOnnx(model, {
      metadata: { subnet: supernet.space.format(spec) },
      extraOutputs: ['logits'],
      producerVersion: 'test',
    });
    model.dispose();
    const images = tf.randomUniform<tfjs.Rank.R4>(
      [batch, resolution, resolution, channels],
      0,
      1,
      'float32',
      99,
    );
    const expected = tf.tidy(() => supernet.forward(images, spec, 'inference'));
    const expectedLogits = expected.dataSync() as Float32Array;
    const expectedProbabilities = tf.tidy(() => tf.softmax(expected).dataSync() as Float32Array);
    const session = await ort.InferenceSession.create(bytes);
    const results = await session.run({
      image: new ort.Tensor('float32', images.dataSync() as Float32Array, images.shape),
    });
    tf.dispose([images, expected]);
    await session.release();
    const logits = results.logits?.data as Float32Array;
    const probabilities = results.probabilities?.data as Float32Array;
    assert.equal(logits.length, expectedLogits.length);
    return {
      logits: maxDifference(logits, expectedLogits),
      probabilities: maxDifference(probabilities, expectedProbabilities),
      bytes,
    };
  }

  for (const [kind, space, subnets] of extractionCases()) {
    it(`gives the supernet's outputs (max abs difference <= 1e-4) through ONNX Runtime for ${kind} subnets, smallest and largest included`, async () => {
      const supernet = new Supernet(tf, space, 5);
      perturb(tf, supernet, 11);
      for (const spec of subnets) {
        const { logits, probabilities } = await compare(supernet, spec);
        const id = space.format(spec);
        assert.ok(logits <= TOLERANCE, `${id}: logits differ by ${logits}`);
        assert.ok(probabilities <= TOLERANCE, `${id}: probabilities differ by ${probabilities}`);
      }
      supernet.dispose();
    });
  }

  it('exports the ImageNet preset (3 channels, stride-2 units, squeeze-excite) exactly', async () => {
    const space = new CompoundSpace(IMAGENET_ARCHITECTURE);
    const supernet = new Supernet(tf, space, 8);
    perturb(tf, supernet, 13);
    const { logits } = await compare(supernet, space.smallest(), 1);
    assert.ok(logits <= TOLERANCE, `logits differ by ${logits}`);
    supernet.dispose();
  });

  it('folds batch norm into the convolutions and fuses h-swish, so no such node remains', () => {
    const space = new CompoundSpace(SMALL_ARCHITECTURE);
    const supernet = new Supernet(tf, space, 9);
    const model = buildSubnetModel(tf, supernet, space.largest());
    const bytes = exportOnnx(model, { metadata: {}, producerVersion: 'test' });
    const nodes = readOnnxNodes(bytes);
    const count = (opType: string) => nodes.filter((n) => n.opType === opType).length;
    const layers = model.layers.map((l) => l.getClassName());
    const convolutions = layers.filter((c) => c === 'Conv2D' || c === 'DepthwiseConv2D').length;
    const norms = layers.filter((c) => c === 'BatchNormalization').length;
    const gates = model.layers.filter((l) => l.name.endsWith('_affine')).length;
    const swishes = model.layers.filter((l) => /_(act|expand_act|depthwise_act)$/.test(l.name));
    assert.ok(norms > 0 && gates > 0);
    // Every batch norm folded: neither its own operator nor a Mul/Add pair remains.
    assert.equal(count('BatchNormalization'), 0);
    assert.equal(count('Add'), layers.filter((c) => c === 'Add').length, 'residual adds only');
    // Each h-sigmoid's 1x1 depthwise affine and capped ReLU became one HardSigmoid or HardSwish.
    assert.equal(count('Conv'), convolutions - gates);
    assert.equal(count('HardSwish') + count('HardSigmoid'), gates);
    assert.ok(count('HardSwish') > 0 && count('HardSwish') <= swishes.length);
    assert.equal(count('Clip'), 0, 'no capped ReLU left');
    model.dispose();
    supernet.dispose();
  });

  it('carries its metadata, readable back from the file', async () => {
    const space = new CompoundSpace(SMALL_ARCHITECTURE);
    const supernet = new Supernet(tf, space, 9);
    const model = buildSubnetModel(tf, supernet, space.smallest());
    const metadata = { subnet: space.format(space.smallest()), preprocessing: { layout: 'NHWC' } };
    const bytes = exportOnnx(model, { metadata, producerVersion: '1.2.3' });
    model.dispose();
    supernet.dispose();
    const read = readOnnxMetadata(bytes);
    assert.deepEqual(JSON.parse(read.get(ONNX_METADATA_KEY) ?? 'null'), metadata);
    const session = await ort.InferenceSession.create(bytes);
    assert.deepEqual(session.inputNames, ['image']);
    assert.deepEqual(session.outputNames, ['probabilities']);
    const [input] = session.inputMetadata;
    assert.ok(input?.isTensor);
    assert.deepEqual(input.shape, ['batch', 28, 28, 1]);
    await session.release();
  });

  it('refuses a layer it cannot convert exactly, naming it', () => {
    const input = tf.input({ shape: [8, 8, 1], name: 'image' });
    const pooled = tf.layers.maxPooling2d({ poolSize: 2, name: 'pool' }).apply(input);
    const model = tf.model({ inputs: input, outputs: pooled as tfjs.SymbolicTensor });
    assert.throws(
      () => exportOnnx(model, { metadata: {}, producerVersion: 'test' }),
      (error: unknown) =>
        error instanceof OnnxExportError &&
        /layer 'pool': layers of class MaxPooling2D cannot be exported/.test(error.message),
    );
  });

  it("pads like TensorFlow's 'same': the odd pixel at the end", () => {
    assert.deepEqual(samePadding(28, 3, 1), [1, 1]);
    assert.deepEqual(samePadding(28, 3, 2), [0, 1]);
    assert.deepEqual(samePadding(27, 3, 2), [1, 1]);
    assert.deepEqual(samePadding(14, 5, 2), [1, 2]);
    assert.deepEqual(samePadding(7, 1, 1), [0, 0]);
  });
});

function maxDifference(a: Float32Array, b: Float32Array): number {
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs((a[i] ?? NaN) - (b[i] ?? NaN)));
  return Number.isNaN(max) ? Infinity : max;
}
