/**
 * Extraction: one subnet's weights sliced out of the supernet into a standard TensorFlow.js
 * LayersModel (model.json + weight files) that `tf.loadLayersModel` opens in Node or a browser,
 * with no custom layer: h-swish is built from stock layers (a 1x1 depthwise convolution computing
 * x/6 + 1/2, a ReLU capped at 1, and a multiply).
 *
 * The model takes NHWC float images in [0, 1] and outputs class probabilities; the layer
 * `logits` before the softmax is what the equivalence tests compare with the supernet. The same
 * model is also written as `model.onnx` (trainer/onnx/export.ts), which compofa-serve runs with
 * ONNX Runtime.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

import type * as tfjs from '@tensorflow/tfjs';

import { architectureKey, type Activation } from '../compofa/architecture.js';
import { subnetShape, type BlockShape, type SubnetShape } from '../compofa/cost.js';
import type { SubnetSpec } from '../compofa/design-space.js';
import { COMPOFA_VERSION } from '../compofa/version.js';
import type { TensorFlow } from './backend.js';
import { exportOnnx } from './onnx/export.js';
import {
  BN_EPSILON,
  BN_MOMENTUM,
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

/** The file names of an extracted model folder. */
export const MODEL_FILES = { layers: 'model.json', onnx: 'model.onnx' } as const;

/** How images must be prepared for an extracted model (recorded in model.onnx's metadata). */
export function inputPreprocessing(metadata: SubnetModelMetadata): Record<string, unknown> {
  return {
    layout: 'NHWC',
    shape: [metadata.resolution, metadata.resolution, metadata.inputChannels],
    datatype: 'FP32',
    range: [0, 1],
    scaling: '8-bit pixel values divided by 255',
  };
}

/** Builds the standard LayersModel of `spec` with the supernet's current weights. */
export function buildSubnetModel(
  tf: TensorFlow,
  supernet: Supernet,
  spec: SubnetSpec,
): tfjs.LayersModel {
  supernet.space.validate(spec);
  const architecture = supernet.space.architecture;
  const shape = subnetShape(architecture, spec);
  const layers = new SubnetLayers(tf, supernet);
  const input = tf.input({
    shape: [spec.resolution, spec.resolution, architecture.inputChannels],
    name: 'image',
  });
  let h = layers.stem(input, shape);
  for (const block of shape.blocks) h = layers.block(h, block);
  const model = tf.model({
    inputs: input,
    outputs: layers.head(h, shape, architecture.dropoutRate),
    name: 'compofa_subnet',
  });
  layers.applyWeights();
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
 * Saves `model` to the folder `dir` (model.json + weights, and the same network as model.onnx)
 * through a temporary sibling folder and a rename, so that a reader never sees half a model; an
 * existing model there is replaced.
 */
export async function saveSubnetModel(model: tfjs.LayersModel, dir: string): Promise<void> {
  const metadata = (model.getUserDefinedMetadata() as { compofa?: SubnetModelMetadata } | undefined)
    ?.compofa;
  if (!metadata)
    throw new Error('the model has no CompOFA metadata; build it with buildSubnetModel');
  const onnx = exportOnnx(model, {
    metadata: { ...metadata, preprocessing: inputPreprocessing(metadata) },
    producerVersion: COMPOFA_VERSION,
    docString: `CompOFA subnet ${metadata.subnet} (${metadata.designSpace} design space)`,
  });
  // The first extraction of a training makes its models/ folder.
  await mkdir(dirname(dir), { recursive: true });
  const temporary = join(dirname(dir), `.${basename(dir)}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    await model.save(`file://${temporary}`);
    await writeFile(join(temporary, MODEL_FILES.onnx), onnx);
    await rm(dir, { recursive: true, force: true });
    await rename(temporary, dir);
  } catch (error) {
    await rm(temporary, { recursive: true, force: true });
    throw error;
  }
}

/**
 * The stem, blocks and head of a subnet as stock tfjs layers, built from their shapes
 * (compofa/cost.ts). With a supernet, each layer gets its sliced weights (set by
 * {@link applyWeights} once the model exists); without one, layers keep their default
 * initialisation, which is all latency profiling needs. One definition of the served network, so
 * profiles time exactly what extraction produces.
 */
export class SubnetLayers {
  private readonly pending: { layer: tfjs.layers.Layer; weights: tfjs.Tensor[] }[] = [];
  private count = 0;

  constructor(
    private readonly tf: TensorFlow,
    private readonly supernet?: Supernet,
  ) {}

  stem(input: SymbolicTensor, shape: SubnetShape): SymbolicTensor {
    const stem = this.supernet?.stem;
    const h = this.conv('stem_conv', input, shape.stem.outChannels, 3, shape.stem.stride, () => [
      stem?.kernel,
    ]);
    return this.hSwish(
      'stem_act',
      this.batchNorm('stem_bn', h, shape.stem.outChannels, stem?.norm),
    );
  }

  block(input: SymbolicTensor, block: BlockShape): SymbolicTensor {
    const tf = this.tf;
    const weights = this.supernet ? blockWeights(this.supernet, block.name) : undefined;
    const name = block.name.replace('.', '_');
    const mid = block.midChannels;
    let h = input;
    if (block.expandRatio !== 1) {
      h = this.conv(`${name}_expand`, h, mid, 1, 1, () => [
        weights?.expand?.kernel.slice([0, 0, 0, 0], [1, 1, block.inChannels, mid]),
      ]);
      h = this.activation(
        `${name}_expand_act`,
        this.batchNorm(`${name}_expand_bn`, h, mid, weights?.expand?.norm),
        block.activation,
      );
    }
    h = this.layer(
      tf.layers.depthwiseConv2d({
        name: this.unique(`${name}_depthwise`),
        kernelSize: block.kernelSize,
        strides: block.stride,
        padding: 'same',
        useBias: false,
      }),
      h,
      () => [weights && this.supernet?.depthwiseKernel(weights, block.kernelSize, mid)],
    );
    h = this.activation(
      `${name}_depthwise_act`,
      this.batchNorm(`${name}_depthwise_bn`, h, mid, weights?.depthwise.norm),
      block.activation,
    );
    const s = block.squeezeExciteChannels;
    if (s > 0) {
      const se = weights?.squeezeExcite;
      let gate = tf.layers
        .globalAveragePooling2d({ name: this.unique(`${name}_se_pool`) })
        .apply(h) as SymbolicTensor;
      gate = tf.layers
        .reshape({ name: this.unique(`${name}_se_pool_4d`), targetShape: [1, 1, mid] })
        .apply(gate) as SymbolicTensor;
      gate = this.layer(
        tf.layers.conv2d({
          name: this.unique(`${name}_se_reduce`),
          filters: s,
          kernelSize: 1,
          activation: 'relu',
        }),
        gate,
        () => [
          se?.reduceKernel.slice([0, 0, 0, 0], [1, 1, mid, s]),
          se?.reduceBias.slice([0], [s]),
        ],
      );
      gate = this.layer(
        tf.layers.conv2d({ name: this.unique(`${name}_se_expand`), filters: mid, kernelSize: 1 }),
        gate,
        () => [
          se?.expandKernel.slice([0, 0, 0, 0], [1, 1, s, mid]),
          se?.expandBias.slice([0], [mid]),
        ],
      );
      gate = this.hSigmoid(`${name}_se_gate`, gate);
      h = tf.layers
        .multiply({ name: this.unique(`${name}_se_scale`) })
        .apply([h, gate]) as SymbolicTensor;
    }
    h = this.conv(`${name}_project`, h, block.outChannels, 1, 1, () => [
      weights?.project.kernel.slice([0, 0, 0, 0], [1, 1, mid, block.outChannels]),
    ]);
    h = this.batchNorm(`${name}_project_bn`, h, block.outChannels, weights?.project.norm);
    return block.residual
      ? (tf.layers
          .add({ name: this.unique(`${name}_residual`) })
          .apply([h, input]) as SymbolicTensor)
      : h;
  }

  /** Head conv, pooling, the feature-mix layer, dropout, `logits` and `probabilities`. */
  head(input: SymbolicTensor, shape: SubnetShape, dropoutRate: number): SymbolicTensor {
    const tf = this.tf;
    const supernet = this.supernet;
    let h = this.conv('head_conv', input, shape.headChannels, 1, 1, () => [supernet?.head.kernel]);
    h = this.hSwish(
      'head_act',
      this.batchNorm('head_bn', h, shape.headChannels, supernet?.head.norm),
    );
    let features = tf.layers
      .globalAveragePooling2d({ name: this.unique('head_pool') })
      .apply(h) as SymbolicTensor;
    features = tf.layers
      .reshape({ targetShape: [1, 1, shape.headChannels], name: this.unique('head_pool_4d') })
      .apply(features) as SymbolicTensor;
    // The feature-mix layer is a dense layer; as a 1x1 convolution its h-swish stays 4-D.
    features = this.conv('feature_conv', features, shape.featureChannels, 1, 1, () => [
      supernet?.feature.kernel.reshape([1, 1, shape.headChannels, shape.featureChannels]),
    ]);
    features = this.hSwish('feature_act', features);
    features = tf.layers
      .flatten({ name: this.unique('feature_flat') })
      .apply(features) as SymbolicTensor;
    features = tf.layers
      .dropout({ rate: dropoutRate, name: this.unique('dropout') })
      .apply(features) as SymbolicTensor;
    const logits = this.layer(
      tf.layers.dense({ units: shape.numClasses, name: this.unique('logits') }),
      features,
      () => [supernet?.classifier.kernel, supernet?.classifier.bias],
    );
    return tf.layers
      .activation({ activation: 'softmax', name: this.unique('probabilities') })
      .apply(logits) as SymbolicTensor;
  }

  /**
   * A model of what `build` makes of an input of `shape` (H, W, C), its weights set; when
   * building fails, the weights sliced so far are freed before the error goes on.
   */
  model(
    shape: readonly number[],
    inputName: string,
    build: (input: SymbolicTensor) => SymbolicTensor,
  ): tfjs.LayersModel {
    try {
      const input = this.tf.input({ shape: [...shape], name: inputName });
      const model = this.tf.model({ inputs: input, outputs: build(input) });
      this.applyWeights();
      return model;
    } catch (error) {
      this.tf.dispose(this.pending.flatMap(({ weights }) => weights));
      this.pending.length = 0;
      throw error;
    }
  }

  /** Sets every layer's weights and frees the slices. */
  applyWeights(): void {
    for (const { layer, weights } of this.pending) {
      layer.setWeights(weights);
      this.tf.dispose(weights);
    }
    this.pending.length = 0;
  }

  /** Layer names are unique in a model; the first use of a name keeps it (extraction's names are). */
  private unique(name: string): string {
    return this.names.has(name) ? `${name}_${++this.count}` : (this.names.add(name), name);
  }

  private readonly names = new Set<string>();

  /** Applies `layer`; with a supernet, remembers copies of the weights `weights()` slices out of it. */
  private layer(
    layer: tfjs.layers.Layer,
    input: SymbolicTensor | SymbolicTensor[],
    weights: () => (tfjs.Tensor | undefined)[],
  ): SymbolicTensor {
    const output = layer.apply(input) as SymbolicTensor;
    if (this.supernet) {
      const tensors = this.tf.tidy(() =>
        weights().map((w) => {
          if (!w) throw new Error(`the supernet has no weights for layer ${layer.name}`);
          return w.clone();
        }),
      );
      this.pending.push({ layer, weights: tensors });
    }
    return output;
  }

  private conv(
    name: string,
    input: SymbolicTensor,
    filters: number,
    kernelSize: number,
    strides: number,
    weights: () => (tfjs.Tensor | undefined)[],
  ): SymbolicTensor {
    return this.layer(
      this.tf.layers.conv2d({
        name: this.unique(name),
        filters,
        kernelSize,
        strides,
        padding: 'same',
        useBias: false,
      }),
      input,
      weights,
    );
  }

  /** A batch norm over the first `channels` channels of `norm`. */
  private batchNorm(
    name: string,
    input: SymbolicTensor,
    channels: number,
    norm: ElasticBatchNorm | undefined,
  ): SymbolicTensor {
    return this.layer(
      this.tf.layers.batchNormalization({
        name: this.unique(name),
        epsilon: BN_EPSILON,
        momentum: BN_MOMENTUM,
      }),
      input,
      () =>
        norm
          ? [norm.gamma, norm.beta, norm.movingMean, norm.movingVariance].map((v) =>
              v.slice([0], [channels]),
            )
          : [undefined],
    );
  }

  /** relu6(x + 3) / 6 from stock layers: x/6 + 1/2 by a 1x1 depthwise conv, then ReLU capped at 1. */
  private hSigmoid(name: string, input: SymbolicTensor): SymbolicTensor {
    const channels = input.shape[input.shape.length - 1] ?? 0;
    const layer = this.tf.layers.depthwiseConv2d({
      name: this.unique(`${name}_affine`),
      kernelSize: 1,
      useBias: true,
    });
    const affine = layer.apply(input) as SymbolicTensor;
    // Fixed weights, with or without a supernet.
    this.pending.push({
      layer,
      weights: [this.tf.fill([1, 1, channels, 1], 1 / 6), this.tf.fill([channels], 0.5)],
    });
    return this.tf.layers
      .reLU({ name: this.unique(`${name}_clip`), maxValue: 1 })
      .apply(affine) as SymbolicTensor;
  }

  private hSwish(name: string, input: SymbolicTensor): SymbolicTensor {
    return this.tf.layers
      .multiply({ name: this.unique(name) })
      .apply([input, this.hSigmoid(`${name}_gate`, input)]) as SymbolicTensor;
  }

  private activation(name: string, input: SymbolicTensor, kind: Activation): SymbolicTensor {
    return kind === 'relu'
      ? (this.tf.layers.reLU({ name: this.unique(name) }).apply(input) as SymbolicTensor)
      : this.hSwish(name, input);
  }
}

/** The supernet's weights of block `first` or `unit<u>.block<b>`. */
function blockWeights(supernet: Supernet, name: string): BlockWeights {
  if (name === 'first') return supernet.firstBlock;
  const match = /^unit(\d+)\.block(\d+)$/.exec(name);
  const weights = match ? supernet.units[Number(match[1]) - 1]?.[Number(match[2]) - 1] : undefined;
  if (!weights) throw new Error(`the supernet has no block ${name}`);
  return weights;
}
