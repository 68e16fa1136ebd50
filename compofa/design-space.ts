/**
 * The design spaces over a supernet {@link Architecture}: which subnets exist, their canonical
 * ids, and the sampling, mutation and crossover that search needs. One source of truth for what
 * a valid subnet is.
 *
 * - `compound` (CompOFA): depth and width coupled per unit, (depth, expand) in
 *   {(2,3), (3,4), (4,6)}, one expand ratio for all blocks of a unit, kernels fixed per unit
 *   ([3,5,3,3,5]): 3^5 = 243 subnets per resolution.
 * - `elastic` (OFA): depth per unit in {2,3,4}, kernel in {3,5,7} and expand in {3,4,6} per block:
 *   over 10^19 subnets.
 */
import { validateArchitecture, type Architecture } from './architecture.js';
import type { Random } from './random.js';

/** One unit of a subnet: its active blocks' kernels and expand ratios (each `depth` long). */
export interface UnitSpec {
  readonly depth: number;
  readonly kernelSizes: readonly number[];
  readonly expandRatios: readonly number[];
}

/** A subnet: the input resolution and, per unit, the first `depth` blocks with their choices. */
export interface SubnetSpec {
  readonly resolution: number;
  readonly units: readonly UnitSpec[];
}

/** The kinds of design space. */
export type DesignSpaceKind = 'compound' | 'elastic';

/** Thrown for a subnet spec or id outside its space; names the offending unit or field. */
export class SubnetSpecError extends Error {
  override readonly name = 'SubnetSpecError';
}

/** The largest number of blocks in a unit. */
export const MAX_DEPTH = 4;

/** Behaviour shared by both spaces; see {@link CompoundSpace} and {@link ElasticSpace}. */
export interface DesignSpace {
  readonly kind: DesignSpaceKind;
  readonly architecture: Architecture;
  /** Number of subnets (a float for elastic, which exceeds 2^53). */
  readonly size: number;
  /** The expand ratios a block can have. */
  readonly expandRatios: readonly number[];
  /** The depthwise kernel sizes a block of unit `unit` (0-based) can have. */
  kernelSizes(unit: number): readonly number[];
  /** Throws {@link SubnetSpecError} naming the offending unit when `spec` is outside the space. */
  validate(spec: SubnetSpec): SubnetSpec;
  /** The canonical id; `parse(format(s))` deep-equals `s`. */
  format(spec: SubnetSpec): string;
  /** Parses and validates an id; throws {@link SubnetSpecError}. */
  parse(id: string): SubnetSpec;
  largest(resolution?: number): SubnetSpec;
  smallest(resolution?: number): SubnetSpec;
  /** A uniformly random subnet. */
  sample(random: Random): SubnetSpec;
  /** Each gene resampled with probability `probability` (OFA's mutate). */
  mutate(spec: SubnetSpec, random: Random, probability: number): SubnetSpec;
  /** Each gene taken from either parent (OFA's crossover). */
  crossover(a: SubnetSpec, b: SubnetSpec, random: Random): SubnetSpec;
}

abstract class BaseSpace {
  constructor(readonly architecture: Architecture) {
    validateArchitecture(architecture);
  }

  protected get unitCount(): number {
    return this.architecture.units.length;
  }

  protected checkResolution(resolution: number): void {
    if (!this.architecture.resolutions.includes(resolution)) {
      throw new SubnetSpecError(
        `resolution ${resolution} is not one of ${this.architecture.resolutions.join(', ')}`,
      );
    }
  }

  protected checkShape(spec: SubnetSpec): void {
    this.checkResolution(spec.resolution);
    if (spec.units.length !== this.unitCount) {
      throw new SubnetSpecError(`a subnet has ${this.unitCount} units, got ${spec.units.length}`);
    }
    spec.units.forEach((unit, index) => {
      if (unit.kernelSizes.length !== unit.depth || unit.expandRatios.length !== unit.depth) {
        throw new SubnetSpecError(
          `unit ${index + 1}: depth ${unit.depth} needs ${unit.depth} kernel sizes and expand ratios, got ${unit.kernelSizes.length} and ${unit.expandRatios.length}`,
        );
      }
    });
  }

  /** Splits `r<res>-<unit>-<unit>...` into the resolution and the unit parts. */
  protected splitId(id: string): { resolution: number; parts: string[] } {
    const [head, ...parts] = id.split('-');
    const match = /^r(\d+)$/.exec(head ?? '');
    if (!match || parts.length !== this.unitCount) {
      throw new SubnetSpecError(
        `'${id}' is not a subnet id: expected r<resolution> and ${this.unitCount} units separated by '-', e.g. ${this.format(this.largest())}`,
      );
    }
    return { resolution: Number(match[1]), parts };
  }

  abstract format(spec: SubnetSpec): string;
  abstract largest(resolution?: number): SubnetSpec;
}

/** A (depth, expand) pair of the compound space. */
export interface CompoundChoice {
  readonly depth: number;
  readonly expand: number;
}

/** CompOFA's coupled choices, smallest to largest. */
export const COMPOUND_CHOICES: readonly CompoundChoice[] = [
  { depth: 2, expand: 3 },
  { depth: 3, expand: 4 },
  { depth: 4, expand: 6 },
];

/** CompOFA's kernel size per unit. */
export const COMPOUND_KERNELS: readonly number[] = [3, 5, 3, 3, 5];

/**
 * CompOFA's space. Ids are short and DNS-label safe: `r224-d2e3-d3e4-d4e6-d2e3-d3e4` (resolution,
 * then depth and expand of each unit).
 */
export class CompoundSpace extends BaseSpace implements DesignSpace {
  readonly kind = 'compound';

  constructor(
    architecture: Architecture,
    readonly kernels: readonly number[] = COMPOUND_KERNELS,
    readonly choices: readonly CompoundChoice[] = COMPOUND_CHOICES,
  ) {
    super(architecture);
    if (kernels.length !== architecture.units.length) {
      throw new SubnetSpecError(
        `compound kernels need one size per unit (${architecture.units.length}), got ${kernels.length}`,
      );
    }
  }

  get size(): number {
    return this.choices.length ** this.unitCount * this.architecture.resolutions.length;
  }

  get expandRatios(): readonly number[] {
    return this.choices.map((choice) => choice.expand);
  }

  kernelSizes(unit: number): readonly number[] {
    const kernel = this.kernels[unit];
    if (kernel === undefined) throw new RangeError(`the compound space has no unit ${unit + 1}`);
    return [kernel];
  }

  /** The choice index (into {@link choices}) of each unit of a valid spec. */
  choiceIndices(spec: SubnetSpec): number[] {
    return spec.units.map((unit, index) =>
      this.choiceIndex(index, unit.depth, unit.expandRatios[0]),
    );
  }

  /** The subnet with the given resolution and per-unit choice indices. */
  fromChoices(resolution: number, indices: readonly number[]): SubnetSpec {
    return {
      resolution,
      units: indices.map((choiceIndex, unit) => {
        const choice = this.choices[choiceIndex];
        const kernel = this.kernels[unit];
        if (!choice || kernel === undefined)
          throw new SubnetSpecError(`unit ${unit + 1}: no compound choice ${choiceIndex}`);
        return {
          depth: choice.depth,
          kernelSizes: Array<number>(choice.depth).fill(kernel),
          expandRatios: Array<number>(choice.depth).fill(choice.expand),
        };
      }),
    };
  }

  validate(spec: SubnetSpec): SubnetSpec {
    this.checkShape(spec);
    spec.units.forEach((unit, index) => {
      const expected = this.kernels[index];
      const badKernel = unit.kernelSizes.find((k) => k !== expected);
      if (badKernel !== undefined) {
        throw new SubnetSpecError(
          `unit ${index + 1}: kernel ${badKernel} is not the compound space's fixed kernel ${String(expected)}`,
        );
      }
      const expand = unit.expandRatios[0];
      if (unit.expandRatios.some((e) => e !== expand)) {
        throw new SubnetSpecError(
          `unit ${index + 1}: expand ratios ${unit.expandRatios.join(', ')} differ; the compound space uses one per unit`,
        );
      }
      this.choiceIndex(index, unit.depth, expand);
    });
    return spec;
  }

  format(spec: SubnetSpec): string {
    return [
      `r${spec.resolution}`,
      ...spec.units.map((unit) => `d${unit.depth}e${String(unit.expandRatios[0])}`),
    ].join('-');
  }

  parse(id: string): SubnetSpec {
    const { resolution, parts } = this.splitId(id);
    this.checkResolution(resolution);
    const indices = parts.map((part, index) => {
      const match = /^d(\d+)e(\d+)$/.exec(part);
      if (!match)
        throw new SubnetSpecError(`'${id}': unit ${index + 1} '${part}' is not d<depth>e<expand>`);
      return this.choiceIndex(index, Number(match[1]), Number(match[2]));
    });
    return this.fromChoices(resolution, indices);
  }

  private choiceIndex(unit: number, depth: number, expand: number | undefined): number {
    const index = this.choices.findIndex((c) => c.depth === depth && c.expand === expand);
    if (index < 0) {
      const allowed = this.choices.map((c) => `(${c.depth}, ${c.expand})`).join(', ');
      throw new SubnetSpecError(
        `unit ${unit + 1}: (depth ${depth}, expand ${String(expand)}) is not a compound choice; expected one of ${allowed}`,
      );
    }
    return index;
  }

  /** Every subnet: by resolution, then per-unit choices in mixed-radix order (unit 1 slowest). */
  *enumerate(): Generator<SubnetSpec> {
    const radix = this.choices.length;
    const perResolution = radix ** this.unitCount;
    for (const resolution of this.architecture.resolutions) {
      for (let n = 0; n < perResolution; n++) {
        const indices: number[] = [];
        for (
          let unit = this.unitCount - 1, rest = n;
          unit >= 0;
          unit--, rest = Math.floor(rest / radix)
        )
          indices[unit] = rest % radix;
        yield this.fromChoices(resolution, indices);
      }
    }
  }

  largest(resolution = this.architecture.resolutions.at(-1) ?? 0): SubnetSpec {
    return this.fromChoices(
      resolution,
      Array<number>(this.unitCount).fill(this.choices.length - 1),
    );
  }

  smallest(resolution = this.architecture.resolutions[0] ?? 0): SubnetSpec {
    return this.fromChoices(resolution, Array<number>(this.unitCount).fill(0));
  }

  sample(random: Random): SubnetSpec {
    const indices = Array.from({ length: this.unitCount }, () => random.int(this.choices.length));
    return this.fromChoices(random.pick(this.architecture.resolutions), indices);
  }

  /** Compound-aware: a unit's depth and width mutate together, as one gene. */
  mutate(spec: SubnetSpec, random: Random, probability: number): SubnetSpec {
    const resolution = random.chance(probability)
      ? random.pick(this.architecture.resolutions)
      : spec.resolution;
    const indices = this.choiceIndices(spec).map((index) =>
      random.chance(probability) ? random.int(this.choices.length) : index,
    );
    return this.fromChoices(resolution, indices);
  }

  /** Compound-aware: each unit's (depth, expand) pair comes whole from one parent. */
  crossover(a: SubnetSpec, b: SubnetSpec, random: Random): SubnetSpec {
    const fromA = this.choiceIndices(a);
    const fromB = this.choiceIndices(b);
    const indices = fromA.map((index, unit) =>
      random.chance(0.5) ? index : (fromB[unit] ?? index),
    );
    return this.fromChoices(random.chance(0.5) ? a.resolution : b.resolution, indices);
  }
}

/** The choices of OFA's elastic space. */
export interface ElasticChoices {
  readonly depths: readonly number[];
  readonly kernels: readonly number[];
  readonly expands: readonly number[];
}

/** OFA's choices. */
export const ELASTIC_CHOICES: ElasticChoices = {
  depths: [2, 3, 4],
  kernels: [3, 5, 7],
  expands: [3, 4, 6],
};

/**
 * OFA's space. Ids list every active block: `r224-k3e3.k5e4-k7e6.k3e3-...` (per unit, blocks
 * separated by '.', each `k<kernel>e<expand>`).
 */
export class ElasticSpace extends BaseSpace implements DesignSpace {
  readonly kind = 'elastic';

  constructor(
    architecture: Architecture,
    readonly choices: ElasticChoices = ELASTIC_CHOICES,
  ) {
    super(architecture);
  }

  get expandRatios(): readonly number[] {
    return this.choices.expands;
  }

  kernelSizes(): readonly number[] {
    return this.choices.kernels;
  }

  get size(): number {
    const perBlock = this.choices.kernels.length * this.choices.expands.length;
    const perUnit = this.choices.depths.reduce((sum, depth) => sum + perBlock ** depth, 0);
    return perUnit ** this.unitCount * this.architecture.resolutions.length;
  }

  validate(spec: SubnetSpec): SubnetSpec {
    this.checkShape(spec);
    spec.units.forEach((unit, index) => {
      if (!this.choices.depths.includes(unit.depth)) {
        throw new SubnetSpecError(
          `unit ${index + 1}: depth ${unit.depth} is not one of ${this.choices.depths.join(', ')}`,
        );
      }
      unit.kernelSizes.forEach((kernel, block) => {
        if (!this.choices.kernels.includes(kernel)) {
          throw new SubnetSpecError(
            `unit ${index + 1} block ${block + 1}: kernel ${kernel} is not one of ${this.choices.kernels.join(', ')}`,
          );
        }
      });
      unit.expandRatios.forEach((expand, block) => {
        if (!this.choices.expands.includes(expand)) {
          throw new SubnetSpecError(
            `unit ${index + 1} block ${block + 1}: expand ratio ${expand} is not one of ${this.choices.expands.join(', ')}`,
          );
        }
      });
    });
    return spec;
  }

  format(spec: SubnetSpec): string {
    const unitId = (unit: UnitSpec): string =>
      unit.kernelSizes.map((k, b) => `k${k}e${String(unit.expandRatios[b])}`).join('.');
    return [`r${spec.resolution}`, ...spec.units.map(unitId)].join('-');
  }

  parse(id: string): SubnetSpec {
    const { resolution, parts } = this.splitId(id);
    const units = parts.map((part, index) => {
      const blocks = part.split('.').map((block) => {
        const match = /^k(\d+)e(\d+)$/.exec(block);
        if (!match)
          throw new SubnetSpecError(
            `'${id}': unit ${index + 1} block '${block}' is not k<kernel>e<expand>`,
          );
        return { kernel: Number(match[1]), expand: Number(match[2]) };
      });
      return {
        depth: blocks.length,
        kernelSizes: blocks.map((b) => b.kernel),
        expandRatios: blocks.map((b) => b.expand),
      };
    });
    return this.validate({ resolution, units });
  }

  largest(resolution = this.architecture.resolutions.at(-1) ?? 0): SubnetSpec {
    return this.uniform(
      resolution,
      Math.max(...this.choices.depths),
      Math.max(...this.choices.kernels),
      Math.max(...this.choices.expands),
    );
  }

  smallest(resolution = this.architecture.resolutions[0] ?? 0): SubnetSpec {
    return this.uniform(
      resolution,
      Math.min(...this.choices.depths),
      Math.min(...this.choices.kernels),
      Math.min(...this.choices.expands),
    );
  }

  sample(random: Random): SubnetSpec {
    return {
      resolution: random.pick(this.architecture.resolutions),
      units: this.architecture.units.map(() =>
        this.sampleUnit(random, random.pick(this.choices.depths)),
      ),
    };
  }

  /** Genes: the resolution, each unit's depth, and each of the 4 possible blocks' kernel and expand. */
  mutate(spec: SubnetSpec, random: Random, probability: number): SubnetSpec {
    return {
      resolution: random.chance(probability)
        ? random.pick(this.architecture.resolutions)
        : spec.resolution,
      units: spec.units.map((unit) => {
        const depth = random.chance(probability) ? random.pick(this.choices.depths) : unit.depth;
        const kernels = this.padded(unit.kernelSizes, () => random.pick(this.choices.kernels));
        const expands = this.padded(unit.expandRatios, () => random.pick(this.choices.expands));
        for (let block = 0; block < MAX_DEPTH; block++) {
          if (random.chance(probability)) kernels[block] = random.pick(this.choices.kernels);
          if (random.chance(probability)) expands[block] = random.pick(this.choices.expands);
        }
        return {
          depth,
          kernelSizes: kernels.slice(0, depth),
          expandRatios: expands.slice(0, depth),
        };
      }),
    };
  }

  crossover(a: SubnetSpec, b: SubnetSpec, random: Random): SubnetSpec {
    // A block beyond one parent's depth exists in the other, whose depth may be the one chosen.
    const gene = (x: number | undefined, y: number | undefined): number => {
      const value = (random.chance(0.5) ? x : y) ?? x ?? y;
      if (value === undefined)
        throw new SubnetSpecError('crossover of subnets of different shapes');
      return value;
    };
    return {
      resolution: gene(a.resolution, b.resolution),
      units: a.units.map((unitA, index) => {
        const unitB = b.units[index] ?? unitA;
        const depth = gene(unitA.depth, unitB.depth);
        return {
          depth,
          kernelSizes: Array.from({ length: depth }, (_, i) =>
            gene(unitA.kernelSizes[i], unitB.kernelSizes[i]),
          ),
          expandRatios: Array.from({ length: depth }, (_, i) =>
            gene(unitA.expandRatios[i], unitB.expandRatios[i]),
          ),
        };
      }),
    };
  }

  private uniform(resolution: number, depth: number, kernel: number, expand: number): SubnetSpec {
    return {
      resolution,
      units: this.architecture.units.map(() => ({
        depth,
        kernelSizes: Array<number>(depth).fill(kernel),
        expandRatios: Array<number>(depth).fill(expand),
      })),
    };
  }

  private sampleUnit(random: Random, depth: number): UnitSpec {
    return {
      depth,
      kernelSizes: Array.from({ length: depth }, () => random.pick(this.choices.kernels)),
      expandRatios: Array.from({ length: depth }, () => random.pick(this.choices.expands)),
    };
  }

  /** The unit's values extended to MAX_DEPTH with fresh choices for the inactive blocks. */
  private padded(values: readonly number[], fresh: () => number): number[] {
    return Array.from({ length: MAX_DEPTH }, (_, block) => values[block] ?? fresh());
  }
}

/** The space of `kind` over `architecture`. */
export function createDesignSpace(
  kind: DesignSpaceKind,
  architecture: Architecture,
): CompoundSpace | ElasticSpace {
  switch (kind) {
    case 'compound':
      return new CompoundSpace(architecture);
    case 'elastic':
      return new ElasticSpace(architecture);
    default:
      throw new SubnetSpecError(
        `unknown design space '${String(kind)}': expected compound or elastic`,
      );
  }
}
