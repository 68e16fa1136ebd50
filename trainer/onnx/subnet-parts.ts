/**
 * ONNX graphs of many subnets of one supernet, built from parts that subnets share: the stem
 * with the first block (per resolution), each unit's blocks (per resolution and per choice of
 * depth, kernels and widths), and the head (per resolution). Each part is built once with the
 * extraction layers (`SubnetLayers`, the one description of the network), converted with NCHW
 * boundaries, and chained per subnet. The 243 compound subnets of a resolution take 17 parts
 * instead of 243 TensorFlow.js models, which is what makes profiling every subnet fast.
 */
import type * as tfjs from '@tensorflow/tfjs';

import type { BlockShape } from '../../compofa/cost.js';
import { subnetShape } from '../../compofa/cost.js';
import type { SubnetSpec } from '../../compofa/design-space.js';
import type { TensorFlow } from '../backend.js';
import { SubnetLayers } from '../extract.js';
import type { Supernet } from '../supernet.js';
import { chainOnnxGraphs } from './chain.js';
import { convertToOnnx, type OnnxGraph, type OnnxLayout } from './export.js';

type SymbolicTensor = tfjs.SymbolicTensor;

/** Builds and caches the parts of `supernet`'s subnets; see the module comment. */
export class SubnetOnnxParts {
  private readonly parts = new Map<string, OnnxGraph>();

  constructor(
    private readonly tf: TensorFlow,
    private readonly supernet: Supernet,
  ) {}

  /** Parts built so far. */
  get size(): number {
    return this.parts.size;
  }

  /** The graph of `spec`: input `image` (NHWC), output `probabilities`, as exportOnnx gives. */
  graph(spec: SubnetSpec): OnnxGraph {
    const space = this.supernet.space;
    space.validate(spec);
    const architecture = space.architecture;
    const shape = subnetShape(architecture, spec);
    const units = new Map<string, BlockShape[]>();
    for (const block of shape.blocks) {
      const unit = block.name.split('.')[0] ?? block.name;
      units.set(unit, [...(units.get(unit) ?? []), block]);
    }
    const first = units.get('first') ?? [];
    units.delete('first');
    const resolution = spec.resolution;
    const parts = [
      this.part(
        `stem ${JSON.stringify([resolution, shape.stem, first])}`,
        [resolution, resolution, architecture.inputChannels],
        (layers, input) =>
          first.reduce((h, block) => layers.block(h, block), layers.stem(input, shape)),
        'nhwc',
      ),
      ...[...units.values()].map((blocks) => {
        const [head] = blocks;
        if (!head) throw new Error('a unit without blocks');
        return this.part(
          JSON.stringify(blocks),
          [head.inputSize, head.inputSize, head.inChannels],
          (layers, input) => blocks.reduce((h, block) => layers.block(h, block), input),
          'nchw',
        );
      }),
      this.part(
        `head ${JSON.stringify([shape.headInputSize, shape.headInChannels, shape.headChannels, shape.featureChannels])}`,
        [shape.headInputSize, shape.headInputSize, shape.headInChannels],
        (layers, input) => layers.head(input, shape, architecture.dropoutRate),
        'nchw',
      ),
    ];
    return chainOnnxGraphs('compofa_subnet', parts);
  }

  /** The part under `key`, built with `build` on an input of `inputShape` (H, W, C) if new. */
  private part(
    key: string,
    inputShape: readonly [number, number, number],
    build: (layers: SubnetLayers, input: SymbolicTensor) => SymbolicTensor,
    inputLayout: OnnxLayout,
  ): OnnxGraph {
    const cached = this.parts.get(key);
    if (cached) return cached;
    const { tf } = this;
    const layers = new SubnetLayers(tf, this.supernet);
    const model = layers.model(inputShape, 'image', (input) => build(layers, input));
    try {
      const graph = convertToOnnx(model, { inputLayout, outputLayout: 'nchw' });
      this.parts.set(key, graph);
      return graph;
    } finally {
      model.dispose();
    }
  }
}
