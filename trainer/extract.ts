/**
 * Extraction: one subnet's weights sliced out of the supernet into a standard TensorFlow.js
 * LayersModel (model.json + weight files) that `tf.loadLayersModel` opens in Node or a browser,
 * with no custom layer: h-swish is built from stock layers (a 1x1 depthwise convolution computing
 * x/6 + 1/2, a ReLU capped at 1, and a multiply).
 *
 * The model takes NHWC float images in [0, 1] and outputs class probabilities; the layer
 * `logits` before the softmax is what the equivalence tests compare with the supernet.
 */
import { randomBytes } from 'node:crypto';
import { rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

import type * as tfjs from '@tensorflow/tfjs';

import { architectureKey, resolveChannels } from '../compofa/architecture.js';
import type { SubnetSpec } from '../compofa/design-space.js';
import type { TensorFlow } from './backend.js';
import {
  BN_EPSILON,
  BN_MOMENTUM,
  type BlockChoice,
  type BlockWeights,
  type ElasticBatchNorm,
  type Supernet,
} from './supernet.js';

type SymbolicTensor = tfjs.SymbolicTensor;

/** What the extracted model.json carries about itself (`userDefinedMetadata.compofa`). */
export interface SubnetModelMetadata {
  readonly subnet: string;
  readonly designSpace: string;
  readonly architectureKey: string;
  readonly resolution: number;
  readonly inputChannels: number;
  readonly numClasses: number;
}

/** Builds the standard LayersModel of `spec` with the supernet's current weights. */
export function buildSubnetModel(
  tf: TensorFlow,
  supernet: Supernet,
  spec: SubnetSpec,
): tfjs.LayersModel {
  supernet.space.validate(spec);
  const builder = new ModelBuilder(tf);
  const architecture = supernet.space.architecture;
  const input = tf.input({
    shape: [spec.resolution, spec.resolution, architecture.inputChannels],
    name: 'image',
  });
  let h = builder.conv('stem_conv', input, supernet.stem.kernel, supernet.stem.stride);
  h = builder.hSwish(
    'stem_act',
    builder.batchNorm('stem_bn', h, supernet.stem.norm, resolveChannels(architecture).stem),
  );
  const first = supernet.firstBlock;
  h = builder.block(
    supernet,
    first,
    { mid: first.maxMid, kernel: 3, squeezeExcite: 0, residual: true },
    h,
  );
  for (const { weights, choice } of supernet.blockChoices(spec))
    h = builder.block(supernet, weights, choice, h);
  const channels = resolveChannels(architecture);
  h = builder.conv('head_conv', h, supernet.head.kernel, 1);
  h = builder.hSwish(
    'head_act',
    builder.batchNorm('head_bn', h, supernet.head.norm, channels.head),
  );
  let features = tf.layers.globalAveragePooling2d({ name: 'head_pool' }).apply(h) as SymbolicTensor;
  features = tf.layers
    .reshape({ targetShape: [1, 1, channels.head], name: 'head_pool_4d' })
    .apply(features) as SymbolicTensor;
  // The feature-mix layer is a dense layer; as a 1x1 convolution its h-swish stays 4-D.
  const featureKernel = supernet.feature.kernel.reshape([1, 1, channels.head, channels.feature]);
  features = builder.conv('feature_conv', features, featureKernel, 1);
  featureKernel.dispose();
  features = builder.hSwish('feature_act', features);
  features = tf.layers.flatten({ name: 'feature_flat' }).apply(features) as SymbolicTensor;
  features = tf.layers
    .dropout({ rate: architecture.dropoutRate, name: 'dropout' })
    .apply(features) as SymbolicTensor;
  const logits = builder.layer(
    tf.layers.dense({ units: architecture.numClasses, name: 'logits' }),
    features,
    [supernet.classifier.kernel, supernet.classifier.bias],
  );
  const probabilities = tf.layers
    .activation({ activation: 'softmax', name: 'probabilities' })
    .apply(logits) as SymbolicTensor;
  const model = tf.model({ inputs: input, outputs: probabilities, name: 'compofa_subnet' });
  builder.applyWeights();
  const metadata: SubnetModelMetadata = {
    subnet: supernet.space.format(spec),
    designSpace: supernet.space.kind,
    architectureKey: architectureKey(architecture),
    resolution: spec.resolution,
    inputChannels: architecture.inputChannels,
    numClasses: architecture.numClasses,
  };
  model.setUserDefinedMetadata({ compofa: metadata as unknown as Record<string, unknown> });
  return model;
}

/** The sub-model ending at the `logits` layer, for comparisons without the softmax. */
export function logitsModel(tf: TensorFlow, model: tfjs.LayersModel): tfjs.LayersModel {
  return tf.model({
    inputs: model.inputs,
    outputs: model.getLayer('logits').output,
  });
}

/**
 * Saves `model` to the folder `dir` (model.json + weights) through a temporary sibling folder and
 * a rename, so that a reader never sees half a model; an existing model there is replaced.
 */
export async function saveSubnetModel(model: tfjs.LayersModel, dir: string): Promise<void> {
  const temporary = join(dirname(dir), `.${basename(dir)}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    await model.save(`file://${temporary}`);
    await rm(dir, { recursive: true, force: true });
    await rename(temporary, dir);
  } catch (error) {
    await rm(temporary, { recursive: true, force: true });
    throw error;
  }
}

/** Creates layers and remembers the weights each needs, to set once the model is built. */
class ModelBuilder {
  private readonly pending: { layer: tfjs.layers.Layer; weights: tfjs.Tensor[] }[] = [];

  constructor(private readonly tf: TensorFlow) {}

  layer(
    layer: tfjs.layers.Layer,
    input: SymbolicTensor | SymbolicTensor[],
    weights: tfjs.Tensor[],
  ): SymbolicTensor {
    const output = layer.apply(input) as SymbolicTensor;
    this.pending.push({ layer, weights: weights.map((w) => w.clone()) });
    return output;
  }

  /** Sets every layer's weights and frees the copies. */
  applyWeights(): void {
    for (const { layer, weights } of this.pending) {
      layer.setWeights(weights);
      this.tf.dispose(weights);
    }
    this.pending.length = 0;
  }

  conv(name: string, input: SymbolicTensor, kernel: tfjs.Tensor, strides: number): SymbolicTensor {
    const [k, , , filters] = kernel.shape as [number, number, number, number];
    return this.layer(
      this.tf.layers.conv2d({
        name,
        filters,
        kernelSize: k,
        strides,
        padding: 'same',
        useBias: false,
      }),
      input,
      [kernel],
    );
  }

  /** A batch norm over the first `channels` channels of `norm`. */
  batchNorm(
    name: string,
    input: SymbolicTensor,
    norm: ElasticBatchNorm,
    channels: number,
  ): SymbolicTensor {
    const slices = this.tf.tidy(() =>
      [norm.gamma, norm.beta, norm.movingMean, norm.movingVariance].map((v) =>
        v.slice([0], [channels]),
      ),
    );
    const output = this.layer(
      this.tf.layers.batchNormalization({ name, epsilon: BN_EPSILON, momentum: BN_MOMENTUM }),
      input,
      slices,
    );
    this.tf.dispose(slices);
    return output;
  }

  /** relu6(x + 3) / 6 from stock layers: x/6 + 1/2 by a 1x1 depthwise conv, then ReLU capped at 1. */
  hSigmoid(name: string, input: SymbolicTensor): SymbolicTensor {
    const channels = input.shape[input.shape.length - 1] ?? 0;
    const scale = this.tf.fill([1, 1, channels, 1], 1 / 6);
    const offset = this.tf.fill([channels], 0.5);
    const affine = this.layer(
      this.tf.layers.depthwiseConv2d({ name: `${name}_affine`, kernelSize: 1, useBias: true }),
      input,
      [scale, offset],
    );
    this.tf.dispose([scale, offset]);
    return this.tf.layers
      .reLU({ name: `${name}_clip`, maxValue: 1 })
      .apply(affine) as SymbolicTensor;
  }

  hSwish(name: string, input: SymbolicTensor): SymbolicTensor {
    return this.tf.layers
      .multiply({ name })
      .apply([input, this.hSigmoid(`${name}_gate`, input)]) as SymbolicTensor;
  }

  activation(name: string, input: SymbolicTensor, kind: 'relu' | 'h_swish'): SymbolicTensor {
    return kind === 'relu'
      ? (this.tf.layers.reLU({ name }).apply(input) as SymbolicTensor)
      : this.hSwish(name, input);
  }

  block(
    supernet: Supernet,
    weights: BlockWeights,
    choice: BlockChoice,
    input: SymbolicTensor,
  ): SymbolicTensor {
    const tf = this.tf;
    const name = weights.name.replace('.', '_');
    let h = input;
    if (weights.expand) {
      const kernel = weights.expand.kernel.slice(
        [0, 0, 0, 0],
        [1, 1, weights.inChannels, choice.mid],
      );
      h = this.conv(`${name}_expand`, h, kernel, 1);
      kernel.dispose();
      h = this.activation(
        `${name}_expand_act`,
        this.batchNorm(`${name}_expand_bn`, h, weights.expand.norm, choice.mid),
        weights.activation,
      );
    }
    const depthwise = supernet.depthwiseKernel(weights, choice.kernel, choice.mid);
    h = this.layer(
      tf.layers.depthwiseConv2d({
        name: `${name}_depthwise`,
        kernelSize: choice.kernel,
        strides: weights.stride,
        padding: 'same',
        useBias: false,
      }),
      h,
      [depthwise],
    );
    depthwise.dispose();
    h = this.activation(
      `${name}_depthwise_act`,
      this.batchNorm(`${name}_depthwise_bn`, h, weights.depthwise.norm, choice.mid),
      weights.activation,
    );
    const se = weights.squeezeExcite;
    if (se && choice.squeezeExcite > 0) {
      const s = choice.squeezeExcite;
      let gate = tf.layers
        .globalAveragePooling2d({ name: `${name}_se_pool` })
        .apply(h) as SymbolicTensor;
      gate = tf.layers
        .reshape({ name: `${name}_se_pool_4d`, targetShape: [1, 1, choice.mid] })
        .apply(gate) as SymbolicTensor;
      const reduceKernel = se.reduceKernel.slice([0, 0, 0, 0], [1, 1, choice.mid, s]);
      const reduceBias = se.reduceBias.slice([0], [s]);
      const expandKernel = se.expandKernel.slice([0, 0, 0, 0], [1, 1, s, choice.mid]);
      const expandBias = se.expandBias.slice([0], [choice.mid]);
      const slices = [reduceKernel, reduceBias, expandKernel, expandBias];
      gate = this.layer(
        tf.layers.conv2d({
          name: `${name}_se_reduce`,
          filters: s,
          kernelSize: 1,
          activation: 'relu',
        }),
        gate,
        [reduceKernel, reduceBias],
      );
      gate = this.layer(
        tf.layers.conv2d({ name: `${name}_se_expand`, filters: choice.mid, kernelSize: 1 }),
        gate,
        [expandKernel, expandBias],
      );
      tf.dispose(slices);
      gate = this.hSigmoid(`${name}_se_gate`, gate);
      h = tf.layers.multiply({ name: `${name}_se_scale` }).apply([h, gate]) as SymbolicTensor;
    }
    const project = weights.project.kernel.slice(
      [0, 0, 0, 0],
      [1, 1, choice.mid, weights.outChannels],
    );
    h = this.conv(`${name}_project`, h, project, 1);
    project.dispose();
    h = this.batchNorm(`${name}_project_bn`, h, weights.project.norm, weights.outChannels);
    return choice.residual
      ? (tf.layers.add({ name: `${name}_residual` }).apply([h, input]) as SymbolicTensor)
      : h;
  }
}
