import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import type * as tfjs from '@tensorflow/tfjs';

import { architectureKey, SMALL_ARCHITECTURE } from '../compofa/architecture.js';
import { CompoundSpace, ElasticSpace, type SubnetSpec } from '../compofa/design-space.js';
import { extractionCases, perturb } from '../test/fixtures/supernets.js';
import { loadTensorFlow, type TensorFlow } from './backend.js';
import { OnnxModel } from './engine.js';
import { buildSubnetModel, logitsModel, saveSubnetModel } from './extract.js';
import { ONNX_METADATA_KEY } from './onnx/export.js';
import { readOnnxMetadata } from './onnx/metadata.js';
import { Supernet } from './supernet.js';

const TOLERANCE = 1e-4;

describe('subnet extraction', () => {
  let tf: TensorFlow;
  let dir: string;
  before(async () => {
    ({ tf } = await loadTensorFlow({ purpose: 'extraction' }));
    dir = await mkdtemp(join(tmpdir(), 'compofa-extract-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const images = (): tfjs.Tensor4D => tf.randomUniform([4, 28, 28, 1], 0, 1, 'float32', 99);

  function maxDifference(supernet: Supernet, model: tfjs.LayersModel, spec: SubnetSpec): number {
    return tf.tidy(() => {
      const x = images();
      const expected = supernet.forward(x, spec, 'inference');
      const actual = logitsModel(tf, model).predict(x) as tfjs.Tensor;
      return expected.sub(actual).abs().max().dataSync()[0] ?? Infinity;
    });
  }

  for (const [kind, space, subnets] of extractionCases()) {
    it(`gives the supernet's outputs (max abs difference <= 1e-4) for ${kind} subnets, smallest and largest included`, () => {
      const supernet = new Supernet(tf, space, 5);
      perturb(tf, supernet, 11);
      const before = tf.memory().numTensors;
      for (const spec of subnets) {
        // As extraction does: batch norm re-calibrated for this subnet, which also keeps the
        // activations, and so the float32 rounding, at realistic magnitudes.
        const calibration = tf.randomUniform<tfjs.Rank.R4>([16, 28, 28, 1], 0, 1, 'float32', 5);
        supernet.recalibrate(spec, [calibration]);
        calibration.dispose();
        const model = buildSubnetModel(tf, supernet, spec);
        const difference = maxDifference(supernet, model, spec);
        assert.ok(
          difference <= TOLERANCE,
          `${space.format(spec)}: max abs difference ${difference}`,
        );
        model.dispose();
      }
      assert.equal(tf.memory().numTensors, before, 'extraction leaked tensors');
      supernet.dispose();
    });
  }

  it('uses the kernel transforms of the elastic space: a changed 7->5 matrix changes 5x5 subnets', () => {
    const space = new ElasticSpace(SMALL_ARCHITECTURE);
    const supernet = new Supernet(tf, space, 6);
    const spec = space.parse(space.format(space.largest()).replace(/k7/g, 'k5'));
    const block = supernet.units[0]?.[0];
    const transform = block?.kernelTransforms.get(5);
    assert.ok(block && transform);
    const cropped = tf.tidy(() => supernet.depthwiseKernel(block, 5, 8).dataSync());
    transform.assign(tf.tidy(() => tf.eye(25).reverse(0)));
    const transformed = tf.tidy(() => supernet.depthwiseKernel(block, 5, 8).dataSync());
    assert.notDeepEqual(transformed, cropped);
    const model = buildSubnetModel(tf, supernet, spec);
    assert.ok(maxDifference(supernet, model, spec) <= TOLERANCE);
    model.dispose();
    supernet.dispose();
  });

  it('saves a standard model.json that tf.loadLayersModel opens and that gives the same outputs', async () => {
    const space = new CompoundSpace(SMALL_ARCHITECTURE);
    const supernet = new Supernet(tf, space, 7);
    perturb(tf, supernet, 12);
    const spec = space.parse('r28-d3e4-d2e3-d4e6-d2e3-d3e4');
    const model = buildSubnetModel(tf, supernet, spec);
    const target = join(dir, 'r28-d3e4-d2e3-d4e6-d2e3-d3e4');
    await saveSubnetModel(model, target);
    assert.deepEqual(
      (await readdir(dir)).filter((f) => f.includes('.tmp')),
      [],
      'no temporary folder remains',
    );
    const json = JSON.parse(await readFile(join(target, 'model.json'), 'utf8')) as {
      modelTopology: unknown;
      userDefinedMetadata: { compofa: Record<string, unknown> };
    };
    assert.equal(JSON.stringify(json.modelTopology).includes('"class_name":"Lambda"'), false);
    assert.deepEqual(json.userDefinedMetadata.compofa, {
      subnet: 'r28-d3e4-d2e3-d4e6-d2e3-d3e4',
      designSpace: 'compound',
      architectureKey: architectureKey(SMALL_ARCHITECTURE),
      resolution: 28,
      inputChannels: 1,
      numClasses: 10,
    });
    // The same network as model.onnx, with the same metadata and how to prepare its input.
    const onnx = await readFile(join(target, 'model.onnx'));
    assert.deepEqual(JSON.parse(readOnnxMetadata(onnx).get(ONNX_METADATA_KEY) ?? '{}'), {
      ...json.userDefinedMetadata.compofa,
      preprocessing: {
        layout: 'NHWC',
        shape: [28, 28, 1],
        datatype: 'FP32',
        range: [0, 1],
        scaling: '8-bit pixel values divided by 255',
      },
    });
    const session = await OnnxModel.create(onnx);
    const x = images();
    const viaOnnx = await session.run(x.dataSync() as Float32Array, 4);
    const viaLayers = tf.tidy(() => (model.predict(x) as tfjs.Tensor).dataSync());
    x.dispose();
    await session.dispose();
    viaLayers.forEach((p, i) => {
      assert.ok(Math.abs(p - (viaOnnx[i] ?? NaN)) <= TOLERANCE, `probability ${i}`);
    });

    const loaded = await tf.loadLayersModel(`file://${join(target, 'model.json')}`);
    assert.ok(maxDifference(supernet, loaded, spec) <= TOLERANCE);
    const probabilities = tf.tidy(() =>
      (loaded.predict(images()) as tfjs.Tensor).sum(1).dataSync(),
    );
    for (const total of probabilities)
      assert.ok(Math.abs(total - 1) < 1e-5, 'the output is a probability distribution');
    // A second save replaces the first.
    await saveSubnetModel(model, target);
    assert.ok((await readdir(target)).includes('model.json'));
    // The first extraction of a training makes the folders above the model (a pod found none).
    const nested = join(dir, 'training', 'g1', 'models', 'first');
    await saveSubnetModel(model, nested);
    assert.ok((await readdir(nested)).includes('model.onnx'));
    model.dispose();
    loaded.dispose();
    supernet.dispose();
  });

  it('refuses a subnet outside the supernet space', () => {
    const supernet = new Supernet(tf, new CompoundSpace(SMALL_ARCHITECTURE), 1);
    const elastic = new ElasticSpace(SMALL_ARCHITECTURE);
    assert.throws(
      () => buildSubnetModel(tf, supernet, elastic.largest()),
      /unit 1: kernel 7 is not the compound space's fixed kernel 3/,
    );
    supernet.dispose();
  });
});
