/**
 * The layers of a subnet as shapes, and their analytic cost: multiply-accumulates (what OFA and
 * CompOFA report as "FLOPs") and parameters. The shapes also key per-block latency lookup tables.
 *
 * Counted as OFA counts: convolutions and linear layers for MACs (batch norm, activations and
 * pooling are free); for parameters every trainable weight: conv kernels, batch-norm scale and
 * offset, the squeeze-excite convs' biases and the classifier's bias.
 */
import {
  makeDivisible,
  resolveChannels,
  type Activation,
  type Architecture,
} from './architecture.js';
import type { SubnetSpec } from './design-space.js';

/** An inverted-residual block as built for one subnet. */
export interface BlockShape {
  /** `unit<u>.block<b>` (1-based), or `first` for the fixed first block. */
  readonly name: string;
  /** Input feature-map side (square). */
  readonly inputSize: number;
  readonly inChannels: number;
  readonly outChannels: number;
  /** make_divisible(round(inChannels * expand), 8); equals inChannels when expand is 1. */
  readonly midChannels: number;
  readonly expandRatio: number;
  readonly kernelSize: number;
  readonly stride: 1 | 2;
  readonly activation: Activation;
  /** Channels of the squeeze-excite bottleneck, or 0 without SE. */
  readonly squeezeExciteChannels: number;
  /** Identity shortcut: stride 1 and inChannels == outChannels. */
  readonly residual: boolean;
}

/** Every layer of a subnet, in order. */
export interface SubnetShape {
  readonly resolution: number;
  readonly stem: {
    readonly inChannels: number;
    readonly outChannels: number;
    readonly stride: 1 | 2;
  };
  readonly blocks: readonly BlockShape[];
  /** Feature-map side entering the head. */
  readonly headInputSize: number;
  readonly headInChannels: number;
  readonly headChannels: number;
  readonly featureChannels: number;
  readonly numClasses: number;
}

/** Multiply-accumulates and parameters of a subnet. */
export interface SubnetCost {
  readonly macs: number;
  readonly params: number;
}

/** SE bottleneck width, as OFA: make_divisible(channels / 4, 8). */
export const SE_REDUCTION = 4;

const convOutput = (size: number, stride: number): number => Math.ceil(size / stride);

/** The layer shapes of `spec` in `architecture` (the spec is not validated here). */
export function subnetShape(architecture: Architecture, spec: SubnetSpec): SubnetShape {
  const channels = resolveChannels(architecture);
  let size = convOutput(spec.resolution, architecture.stemStride);
  const blocks: BlockShape[] = [];
  const block = (
    name: string,
    inChannels: number,
    outChannels: number,
    expandRatio: number,
    kernelSize: number,
    stride: 1 | 2,
    activation: Activation,
    squeezeExcite: boolean,
  ): void => {
    const midChannels =
      expandRatio === 1 ? inChannels : makeDivisible(Math.round(inChannels * expandRatio));
    blocks.push({
      name,
      inputSize: size,
      inChannels,
      outChannels,
      midChannels,
      expandRatio,
      kernelSize,
      stride,
      activation,
      squeezeExciteChannels: squeezeExcite
        ? makeDivisible(Math.floor(midChannels / SE_REDUCTION))
        : 0,
      residual: stride === 1 && inChannels === outChannels,
    });
    size = convOutput(size, stride);
  };
  block('first', channels.stem, channels.firstBlock, 1, 3, 1, 'relu', false);
  let inChannels = channels.firstBlock;
  spec.units.forEach((unit, u) => {
    const unitArchitecture = architecture.units[u];
    const outChannels = channels.units[u];
    if (!unitArchitecture || outChannels === undefined)
      throw new RangeError(`the architecture has no unit ${u + 1}`);
    for (let b = 0; b < unit.depth; b++) {
      block(
        `unit${u + 1}.block${b + 1}`,
        inChannels,
        outChannels,
        unit.expandRatios[b] ?? 0,
        unit.kernelSizes[b] ?? 0,
        b === 0 ? unitArchitecture.stride : 1,
        unitArchitecture.activation,
        unitArchitecture.squeezeExcite,
      );
      inChannels = outChannels;
    }
  });
  return {
    resolution: spec.resolution,
    stem: {
      inChannels: architecture.inputChannels,
      outChannels: channels.stem,
      stride: architecture.stemStride,
    },
    blocks,
    headInputSize: size,
    headInChannels: inChannels,
    headChannels: channels.head,
    featureChannels: channels.feature,
    numClasses: architecture.numClasses,
  };
}

/** MACs and parameters of one block. */
export function blockCost(block: BlockShape): SubnetCost {
  const out = convOutput(block.inputSize, block.stride);
  let macs = 0;
  let params = 0;
  if (block.expandRatio !== 1) {
    macs += block.inputSize ** 2 * block.inChannels * block.midChannels;
    params += block.inChannels * block.midChannels + 2 * block.midChannels;
  }
  macs += out ** 2 * block.midChannels * block.kernelSize ** 2;
  params += block.midChannels * block.kernelSize ** 2 + 2 * block.midChannels;
  if (block.squeezeExciteChannels > 0) {
    const se = block.squeezeExciteChannels;
    macs += 2 * block.midChannels * se;
    params += block.midChannels * se + se + se * block.midChannels + block.midChannels;
  }
  macs += out ** 2 * block.midChannels * block.outChannels;
  params += block.midChannels * block.outChannels + 2 * block.outChannels;
  return { macs, params };
}

/** MACs and parameters of the whole subnet. */
export function subnetCost(architecture: Architecture, spec: SubnetSpec): SubnetCost {
  const shape = subnetShape(architecture, spec);
  const stemSize = convOutput(spec.resolution, shape.stem.stride);
  let macs = stemSize ** 2 * shape.stem.inChannels * shape.stem.outChannels * 9;
  let params = shape.stem.inChannels * shape.stem.outChannels * 9 + 2 * shape.stem.outChannels;
  for (const block of shape.blocks) {
    const cost = blockCost(block);
    macs += cost.macs;
    params += cost.params;
  }
  // Head: 1x1 expand with BN, global pool, 1x1 feature mix without BN or bias, linear classifier.
  macs += shape.headInputSize ** 2 * shape.headInChannels * shape.headChannels;
  params += shape.headInChannels * shape.headChannels + 2 * shape.headChannels;
  macs += shape.headChannels * shape.featureChannels;
  params += shape.headChannels * shape.featureChannels;
  macs += shape.featureChannels * shape.numClasses;
  params += shape.featureChannels * shape.numClasses + shape.numClasses;
  return { macs, params };
}
