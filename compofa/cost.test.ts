import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  IMAGENET_ARCHITECTURE,
  SMALL_ARCHITECTURE,
  makeDivisible,
  resolveChannels,
  validateArchitecture,
  ArchitectureError,
} from './architecture.js';
import { blockCost, subnetCost, subnetShape } from './cost.js';
import { CompoundSpace } from './design-space.js';

describe('architecture', () => {
  it('rounds channels as MobileNet does', () => {
    assert.deepEqual(
      [
        makeDivisible(12),
        makeDivisible(20),
        makeDivisible(40),
        makeDivisible(3),
        makeDivisible(100),
      ],
      [16, 24, 40, 8, 104],
    );
    assert.deepEqual(resolveChannels(SMALL_ARCHITECTURE), {
      stem: 8,
      firstBlock: 8,
      units: [16, 24, 40, 56, 80],
      head: 480,
      feature: 256,
    });
  });

  it('rejects a bad architecture naming the field', () => {
    assert.throws(
      () => validateArchitecture({ ...SMALL_ARCHITECTURE, resolutions: [32, 28] }),
      new ArchitectureError('resolutions', 'must be strictly ascending, got 32, 28'),
    );
    assert.throws(
      () => validateArchitecture({ ...SMALL_ARCHITECTURE, numClasses: 1 }),
      /architecture\.numClasses: must be an integer of at least 2, got 1/,
    );
    assert.throws(
      () =>
        validateArchitecture({ ...SMALL_ARCHITECTURE, units: SMALL_ARCHITECTURE.units.slice(1) }),
      /architecture\.units: must have 5 units, got 4/,
    );
  });
});

describe('subnet cost', () => {
  it('counts a block by hand: expand, depthwise, SE and project convolutions with batch norm', () => {
    const cost = blockCost({
      name: 't',
      inputSize: 8,
      inChannels: 16,
      outChannels: 24,
      midChannels: 48,
      expandRatio: 3,
      kernelSize: 5,
      stride: 2,
      activation: 'relu',
      squeezeExciteChannels: 16,
      residual: false,
    });
    const expand = 8 * 8 * 16 * 48;
    const depthwise = 4 * 4 * 48 * 25;
    const se = 2 * 48 * 16;
    const project = 4 * 4 * 48 * 24;
    assert.equal(cost.macs, expand + depthwise + se + project);
    const params = 16 * 48 + 96 + 48 * 25 + 96 + (48 * 16 + 16 + 16 * 48 + 48) + 48 * 24 + 48;
    assert.equal(cost.params, params);
  });

  it('follows the strides: 28 -> 28 -> 14 -> 7 -> 7 -> 4 in the small preset, 224 -> 7 in ImageNet', () => {
    const small = new CompoundSpace(SMALL_ARCHITECTURE);
    const shape = subnetShape(SMALL_ARCHITECTURE, small.largest());
    assert.equal(shape.blocks.length, 1 + 20);
    assert.equal(shape.headInputSize, 4);
    const imagenet = new CompoundSpace(IMAGENET_ARCHITECTURE);
    assert.equal(subnetShape(IMAGENET_ARCHITECTURE, imagenet.largest(224)).headInputSize, 7);
    const firstOfUnit4 = subnetShape(IMAGENET_ARCHITECTURE, imagenet.largest()).blocks.find(
      (b) => b.name === 'unit4.block1',
    );
    assert.equal(
      firstOfUnit4?.residual,
      false,
      '80 -> 112 channels cannot have an identity shortcut',
    );
    const secondOfUnit4 = subnetShape(IMAGENET_ARCHITECTURE, imagenet.largest()).blocks.find(
      (b) => b.name === 'unit4.block2',
    );
    assert.deepEqual(
      [secondOfUnit4?.residual, secondOfUnit4?.midChannels, secondOfUnit4?.squeezeExciteChannels],
      [true, 672, 168],
    );
  });

  it('grows monotonically with depth, width and resolution over the compound space', () => {
    const space = new CompoundSpace(IMAGENET_ARCHITECTURE);
    const smallest = subnetCost(IMAGENET_ARCHITECTURE, space.smallest(160));
    const largest = subnetCost(IMAGENET_ARCHITECTURE, space.largest(224));
    assert.ok(largest.macs > 4 * smallest.macs, `${largest.macs} vs ${smallest.macs}`);
    // The resolution changes MACs, never parameters.
    assert.equal(subnetCost(IMAGENET_ARCHITECTURE, space.largest(160)).params, largest.params);
    // Published ballpark for OFA/CompOFA MobileNetV3 subnets: roughly 150-600 MMACs, 4-8 M params at 1000 classes.
    assert.ok(smallest.macs > 50e6 && largest.macs < 700e6, `${smallest.macs}..${largest.macs}`);
    assert.ok(largest.params > 4e6 && largest.params < 9e6, `${largest.params}`);
  });
});
