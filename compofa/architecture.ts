/**
 * The MobileNetV3-based supernet's fixed skeleton: stem, first block, five elastic units and the
 * head. The elastic choices within it are the design space's (design-space.ts).
 *
 * Small inputs (28x28) are adapted with documented parameters rather than a fork of the model:
 * the stem's and each unit's stride, a width multiplier and the input channel count.
 */
import { createHash } from 'node:crypto';

/** Activation of a unit's blocks. */
export type Activation = 'relu' | 'h_swish';

/** One of the five elastic units: up to four inverted-residual blocks of one width. */
export interface UnitArchitecture {
  /** Output channels before the width multiplier. */
  readonly outChannels: number;
  /** Stride of the unit's first block; the others have stride 1. */
  readonly stride: 1 | 2;
  readonly activation: Activation;
  readonly squeezeExcite: boolean;
}

/** The supernet skeleton. */
export interface Architecture {
  /** 3 for RGB, 1 for grayscale. */
  readonly inputChannels: number;
  readonly stemChannels: number;
  readonly stemStride: 1 | 2;
  /** Output channels of the fixed first block (kernel 3, expand 1, relu, identity skip). */
  readonly firstBlockChannels: number;
  readonly units: readonly UnitArchitecture[];
  /** The head's 1x1 expansion (960 in MobileNetV3). */
  readonly headChannels: number;
  /** The 1x1 feature-mix layer after pooling (1280); scaled only by multipliers above 1, as in OFA. */
  readonly featureChannels: number;
  /** Applied to every other channel count through {@link makeDivisible}. */
  readonly widthMultiplier: number;
  /** Input resolutions the supernet is trained and searched at, ascending. */
  readonly resolutions: readonly number[];
  readonly numClasses: number;
  readonly dropoutRate: number;
}

/**
 * A short stable key of an architecture: the first 16 hex digits of the SHA-256 of its canonical
 * JSON. Tables and latency profiles carry it, so a table measured for another supernet is refused.
 */
export function architectureKey(architecture: Architecture): string {
  return createHash('sha256').update(canonicalJson(architecture)).digest('hex').slice(0, 16);
}

/** JSON with object keys sorted at every level, so equal values give equal text. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** Channel counts after the width multiplier. */
export interface ResolvedChannels {
  readonly stem: number;
  readonly firstBlock: number;
  readonly units: readonly number[];
  readonly head: number;
  readonly feature: number;
}

/** The CompOFA paper's ImageNet supernet. */
export const IMAGENET_ARCHITECTURE: Architecture = {
  inputChannels: 3,
  stemChannels: 16,
  stemStride: 2,
  firstBlockChannels: 16,
  units: [
    { outChannels: 24, stride: 2, activation: 'relu', squeezeExcite: false },
    { outChannels: 40, stride: 2, activation: 'relu', squeezeExcite: true },
    { outChannels: 80, stride: 2, activation: 'h_swish', squeezeExcite: false },
    { outChannels: 112, stride: 1, activation: 'h_swish', squeezeExcite: true },
    { outChannels: 160, stride: 2, activation: 'h_swish', squeezeExcite: true },
  ],
  headChannels: 960,
  featureChannels: 1280,
  widthMultiplier: 1,
  resolutions: [160, 176, 192, 208, 224],
  numClasses: 1000,
  dropoutRate: 0.1,
};

/**
 * The same unit structure for 28x28 grayscale images (Fashion-MNIST, MNIST): stride 1 in the stem
 * and the first unit keeps 28 -> 28 -> 14 -> 7 -> 7 -> 4 feature maps instead of shrinking to 1x1,
 * and half the width (with a 256-wide feature layer instead of 1280) keeps training on a CPU practical.
 */
export const SMALL_ARCHITECTURE: Architecture = {
  ...IMAGENET_ARCHITECTURE,
  inputChannels: 1,
  stemStride: 1,
  units: IMAGENET_ARCHITECTURE.units.map((unit, index) => ({
    ...unit,
    stride: index === 0 ? 1 : unit.stride,
  })),
  widthMultiplier: 0.5,
  featureChannels: 256,
  resolutions: [28],
  numClasses: 10,
};

/** Named presets, for CLIs and the custom resources' `architecture.preset`. */
export const ARCHITECTURE_PRESETS = {
  imagenet: IMAGENET_ARCHITECTURE,
  small: SMALL_ARCHITECTURE,
} as const;

/** A preset's name. */
export type ArchitecturePreset = keyof typeof ARCHITECTURE_PRESETS;

/** Rounds `value` to a multiple of `divisor`, never below it and never more than 10% down (MobileNet's rule). */
export function makeDivisible(value: number, divisor = 8, minValue = divisor): number {
  const rounded = Math.max(minValue, Math.floor((value + divisor / 2) / divisor) * divisor);
  return rounded < 0.9 * value ? rounded + divisor : rounded;
}

/** Channel counts of `architecture` after its width multiplier. */
export function resolveChannels(architecture: Architecture): ResolvedChannels {
  const scale = (channels: number): number =>
    makeDivisible(channels * architecture.widthMultiplier);
  return {
    stem: scale(architecture.stemChannels),
    firstBlock: scale(architecture.firstBlockChannels),
    units: architecture.units.map((unit) => scale(unit.outChannels)),
    head: scale(architecture.headChannels),
    feature:
      architecture.widthMultiplier > 1
        ? scale(architecture.featureChannels)
        : architecture.featureChannels,
  };
}

/** Thrown for an architecture that cannot be built; names the offending field. */
export class ArchitectureError extends Error {
  override readonly name = 'ArchitectureError';
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`architecture.${field}: ${message}`);
  }
}

/**
 * Checks the ranges that the types cannot express and returns `architecture`; throws
 * {@link ArchitectureError} naming the first bad field.
 */
export function validateArchitecture(architecture: Architecture): Architecture {
  const positiveInteger = (field: string, value: number): void => {
    if (!Number.isInteger(value) || value <= 0)
      throw new ArchitectureError(field, `must be a positive integer, got ${value}`);
  };
  positiveInteger('inputChannels', architecture.inputChannels);
  positiveInteger('stemChannels', architecture.stemChannels);
  positiveInteger('firstBlockChannels', architecture.firstBlockChannels);
  positiveInteger('headChannels', architecture.headChannels);
  positiveInteger('featureChannels', architecture.featureChannels);
  if (architecture.numClasses < 2 || !Number.isInteger(architecture.numClasses)) {
    throw new ArchitectureError(
      'numClasses',
      `must be an integer of at least 2, got ${architecture.numClasses}`,
    );
  }
  if (!(architecture.widthMultiplier > 0 && architecture.widthMultiplier <= 4)) {
    throw new ArchitectureError(
      'widthMultiplier',
      `must be in (0, 4], got ${architecture.widthMultiplier}`,
    );
  }
  if (!(architecture.dropoutRate >= 0 && architecture.dropoutRate < 1)) {
    throw new ArchitectureError(
      'dropoutRate',
      `must be in [0, 1), got ${architecture.dropoutRate}`,
    );
  }
  if (architecture.units.length !== 5) {
    throw new ArchitectureError('units', `must have 5 units, got ${architecture.units.length}`);
  }
  architecture.units.forEach((unit, index) => {
    positiveInteger(`units[${index}].outChannels`, unit.outChannels);
  });
  if (architecture.resolutions.length === 0)
    throw new ArchitectureError('resolutions', 'must name at least one resolution');
  architecture.resolutions.forEach((resolution, index) => {
    if (!Number.isInteger(resolution) || resolution < 8 || resolution > 1024) {
      throw new ArchitectureError(
        `resolutions[${index}]`,
        `must be an integer in [8, 1024], got ${resolution}`,
      );
    }
    const previous = architecture.resolutions[index - 1];
    if (previous !== undefined && resolution <= previous) {
      throw new ArchitectureError(
        'resolutions',
        `must be strictly ascending, got ${architecture.resolutions.join(', ')}`,
      );
    }
  });
  return architecture;
}
