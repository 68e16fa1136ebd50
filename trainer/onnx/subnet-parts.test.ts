import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';

import { SMALL_ARCHITECTURE } from '../../compofa/architecture.js';
import { CompoundSpace, ElasticSpace, type SubnetSpec } from '../../compofa/design-space.js';
import { Random } from '../../compofa/random.js';
import { perturb } from '../../test/fixtures/supernets.js';
import { loadTensorFlow, type TensorFlow } from '../backend.js';
import { OnnxModel } from '../engine.js';
import { buildSubnetModel } from '../extract.js';
import { Supernet } from '../supernet.js';
import { chainOnnxGraphs, OnnxChainError } from './chain.js';
import { convertToOnnx, encodeOnnxGraph, exportOnnx } from './export.js';
import { SubnetOnnxParts } from './subnet-parts.js';

const FILE = { metadata: {}, producerVersion: 'test' };

describe('subnets chained from ONNX parts', () => {
  let tf: TensorFlow;
  before(async () => {
    ({ tf } = await loadTensorFlow({ purpose: 'extraction' }));
  });

  /** The largest difference between the outputs of two model files on the same images. */
  async function difference(a: Uint8Array, b: Uint8Array, spec: SubnetSpec): Promise<number> {
    const random = new Random(spec.resolution);
    const images = Float32Array.from({ length: 2 * spec.resolution ** 2 }, () => random.next());
    const [left, right] = [await OnnxModel.create(a), await OnnxModel.create(b)];
    const [x, y] = [await left.run(images, 2), await right.run(images, 2)];
    await left.dispose();
    await right.dispose();
    assert.equal(x.length, y.length);
    return Math.max(...x.map((v, i) => Math.abs(v - (y[i] ?? NaN))));
  }

  for (const space of [
    new CompoundSpace(SMALL_ARCHITECTURE),
    new ElasticSpace(SMALL_ARCHITECTURE),
  ]) {
    it(`give the outputs of the whole subnet's export (${space.kind} space)`, async () => {
      const supernet = new Supernet(tf, space, 3);
      perturb(tf, supernet, 4);
      const parts = new SubnetOnnxParts(tf, supernet);
      for (const spec of [space.smallest(), space.largest(), space.sample(new Random(9))]) {
        const chained = encodeOnnxGraph(parts.graph(spec), FILE);
        const model = buildSubnetModel(tf, supernet, spec);
        const whole = exportOnnx(model, FILE);
        model.dispose();
        const d = await difference(chained, whole, spec);
        assert.ok(d <= 1e-6, `${space.format(spec)}: outputs differ by ${d}`);
      }
      supernet.dispose();
    });
  }

  it('builds the 243 compound subnets of a resolution from 17 parts', () => {
    const space = new CompoundSpace(SMALL_ARCHITECTURE);
    const supernet = new Supernet(tf, space, 3);
    const parts = new SubnetOnnxParts(tf, supernet);
    const tensors = tf.memory().numTensors;
    const names = new Set<string>();
    for (const spec of space.enumerate()) {
      const graph = parts.graph(spec);
      assert.equal(graph.input.name, 'image');
      assert.deepEqual(
        graph.outputs.map((o) => o.name),
        ['probabilities'],
      );
      names.add(graph.nodes.map((n) => n.name).join());
    }
    assert.equal(parts.size, 1 + 5 * 3 + 1, 'the stem, three choices per unit, the head');
    assert.equal(names.size, 243, 'every subnet its own graph');
    assert.equal(tf.memory().numTensors, tensors, 'no tensor left behind');
    supernet.dispose();
  });

  it('refuses parts that do not fit, naming both', () => {
    const a = tf.input({ shape: [4, 4, 2], name: 'image' });
    const b = tf.input({ shape: [4, 4, 3], name: 'image' });
    const relu = (input: typeof a, name: string) =>
      tf.model({ inputs: input, outputs: tf.layers.reLU({ name }).apply(input) as typeof a });
    const first = convertToOnnx(relu(a, 'first'), { outputLayout: 'nchw' });
    const second = convertToOnnx(relu(b, 'second'), { inputLayout: 'nchw' });
    assert.throws(
      () => chainOnnxGraphs('x', [first, second]),
      (error: unknown) =>
        error instanceof OnnxChainError &&
        /part 1 \(model\d*\) takes \[3,4,4\] but part 0 \(model\d*\) gives \[2,4,4\]/.test(
          error.message,
        ),
    );
  });
});
