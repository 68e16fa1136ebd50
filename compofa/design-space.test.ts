import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { IMAGENET_ARCHITECTURE, SMALL_ARCHITECTURE } from './architecture.js';
import {
  CompoundSpace,
  createDesignSpace,
  ElasticSpace,
  SubnetSpecError,
  type SubnetSpec,
} from './design-space.js';
import { Random } from './random.js';

const compound = new CompoundSpace(IMAGENET_ARCHITECTURE);
const elastic = new ElasticSpace(IMAGENET_ARCHITECTURE);

describe('CompoundSpace', () => {
  it('has 243 subnets per resolution, enumerated once each in a fixed order', () => {
    const small = new CompoundSpace(SMALL_ARCHITECTURE);
    const ids = [...small.enumerate()].map((spec) => small.format(spec));
    assert.equal(ids.length, 243);
    assert.equal(new Set(ids).size, 243);
    assert.equal(ids[0], 'r28-d2e3-d2e3-d2e3-d2e3-d2e3');
    assert.equal(ids[1], 'r28-d2e3-d2e3-d2e3-d2e3-d3e4');
    assert.equal(ids.at(-1), 'r28-d4e6-d4e6-d4e6-d4e6-d4e6');
    assert.equal(compound.size, 243 * 5);
    assert.equal([...compound.enumerate()].length, 243 * 5);
  });

  it('formats short, DNS-label-safe ids that round-trip for every subnet', () => {
    for (const spec of compound.enumerate()) {
      const id = compound.format(spec);
      assert.match(id, /^[a-z0-9-]{1,63}$/);
      assert.deepEqual(compound.parse(id), spec);
    }
  });

  it('uses the fixed kernels [3,5,3,3,5] and one expand ratio per unit', () => {
    const spec = compound.parse('r224-d2e3-d3e4-d4e6-d2e3-d3e4');
    assert.deepEqual(
      spec.units.map((u) => [u.depth, u.kernelSizes, u.expandRatios]),
      [
        [2, [3, 3], [3, 3]],
        [3, [5, 5, 5], [4, 4, 4]],
        [4, [3, 3, 3, 3], [6, 6, 6, 6]],
        [2, [3, 3], [3, 3]],
        [3, [5, 5, 5], [4, 4, 4]],
      ],
    );
  });

  it('rejects specs and ids outside the space, naming the unit', () => {
    const largest = compound.largest();
    const withUnit = (index: number, unit: SubnetSpec['units'][number]): SubnetSpec => ({
      ...largest,
      units: largest.units.map((u, i) => (i === index ? unit : u)),
    });
    assert.throws(
      () =>
        compound.validate(
          withUnit(2, { depth: 3, kernelSizes: [3, 3, 3], expandRatios: [6, 6, 6] }),
        ),
      new SubnetSpecError(
        'unit 3: (depth 3, expand 6) is not a compound choice; expected one of (2, 3), (3, 4), (4, 6)',
      ),
    );
    assert.throws(
      () => compound.validate(withUnit(1, { depth: 2, kernelSizes: [3, 3], expandRatios: [3, 3] })),
      /unit 2: kernel 3 is not the compound space's fixed kernel 5/,
    );
    assert.throws(
      () => compound.validate(withUnit(0, { depth: 2, kernelSizes: [3, 3], expandRatios: [3, 4] })),
      /unit 1: expand ratios 3, 4 differ/,
    );
    assert.throws(
      () => compound.validate({ ...largest, resolution: 100 }),
      /resolution 100 is not one of 160, 176, 192, 208, 224/,
    );
    assert.throws(
      () => compound.parse('r224-d2e3-d3e4'),
      /is not a subnet id: expected r<resolution> and 5 units/,
    );
    assert.throws(
      () => compound.parse('r224-d2e3-d3e4-d9e6-d2e3-d3e4'),
      /unit 3: \(depth 9, expand 6\) is not a compound choice/,
    );
    assert.throws(
      () => compound.parse('r224-d2e3-d3e4-x-d2e3-d3e4'),
      /unit 3 'x' is not d<depth>e<expand>/,
    );
  });

  it('samples, mutates and crosses over only within the space, reproducibly from a seed', () => {
    const run = (seed: number): string[] => {
      const random = new Random(seed);
      const out: string[] = [];
      let a = compound.sample(random);
      let b = compound.sample(random);
      for (let i = 0; i < 200; i++) {
        a = compound.mutate(a, random, 0.3);
        b = compound.crossover(a, b, random);
        compound.validate(a);
        compound.validate(b);
        out.push(compound.format(b));
      }
      return out;
    };
    assert.deepEqual(run(42), run(42));
    assert.notDeepEqual(run(42), run(43));
    assert.ok(new Set(run(42)).size > 20, 'search explores');
  });
});

describe('ElasticSpace', () => {
  it('has OFA size: ((3*3)^2 + (3*3)^3 + (3*3)^4)^5 per resolution, over 10^19', () => {
    assert.equal(elastic.size, (81 + 729 + 6561) ** 5 * 5);
    assert.ok(elastic.size > 1e19);
  });

  it('round-trips random ids and rejects bad blocks naming unit and block', () => {
    const random = new Random(1);
    for (let i = 0; i < 500; i++) {
      const spec = elastic.sample(random);
      assert.deepEqual(elastic.parse(elastic.format(spec)), spec);
    }
    assert.equal(
      elastic.format(elastic.smallest()),
      'r160-k3e3.k3e3-k3e3.k3e3-k3e3.k3e3-k3e3.k3e3-k3e3.k3e3',
    );
    assert.throws(
      () => elastic.parse('r160-k3e3.k9e3-k3e3.k3e3-k3e3.k3e3-k3e3.k3e3-k3e3.k3e3'),
      /unit 1 block 2: kernel 9 is not one of 3, 5, 7/,
    );
    assert.throws(
      () => elastic.parse('r160-k3e3-k3e3.k3e3-k3e3.k3e3-k3e3.k3e3-k3e3.k3e3'),
      /unit 1: depth 1 is not one of 2, 3, 4/,
    );
    assert.throws(
      () => elastic.parse('r160-k3e3.k3e5-k3e3.k3e3-k3e3.k3e3-k3e3.k3e3-k3e3.k3e3'),
      /unit 1 block 2: expand ratio 5 is not one of 3, 4, 6/,
    );
  });

  it('keeps mutation and crossover inside the space', () => {
    const random = new Random(7);
    let a = elastic.sample(random);
    let b = elastic.sample(random);
    for (let i = 0; i < 500; i++) {
      a = elastic.validate(elastic.mutate(a, random, 0.2));
      b = elastic.validate(elastic.crossover(a, b, random));
    }
  });

  it('contains every compound subnet', () => {
    for (const spec of compound.enumerate()) elastic.validate(spec);
  });
});

describe('createDesignSpace', () => {
  it('builds either kind and names the known kinds otherwise', () => {
    assert.equal(createDesignSpace('compound', SMALL_ARCHITECTURE).kind, 'compound');
    assert.equal(createDesignSpace('elastic', SMALL_ARCHITECTURE).kind, 'elastic');
    assert.throws(
      () => createDesignSpace('progressive' as never, SMALL_ARCHITECTURE),
      /unknown design space 'progressive': expected compound or elastic/,
    );
  });
});
