import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { cpuQuota } from './host-changes.js';

describe('cpuQuota', () => {
  it('uses a 1 ms period from one CPU up, so that a quota slows millisecond work', () => {
    assert.deepEqual(cpuQuota(1), { periodUs: 1_000, quotaUs: 1_000 });
    assert.deepEqual(cpuQuota(2), { periodUs: 1_000, quotaUs: 2_000 });
    assert.deepEqual(cpuQuota(1.5), { periodUs: 1_000, quotaUs: 1_500 });
  });

  it('lengthens the period below one CPU, since the kernel takes no quota under 1 ms', () => {
    assert.deepEqual(cpuQuota(0.5), { periodUs: 2_000, quotaUs: 1_000 });
    assert.deepEqual(cpuQuota(0.25), { periodUs: 4_000, quotaUs: 1_000 });
    const { periodUs, quotaUs } = cpuQuota(0.3);
    assert.ok(quotaUs >= 1_000 && periodUs >= 1_000);
    assert.ok(Math.abs(quotaUs / periodUs - 0.3) < 0.001);
  });

  it('refuses zero, negative and non-numbers', () => {
    for (const cpus of [0, -1, Number.NaN])
      assert.throws(() => cpuQuota(cpus), /expected a positive number of CPUs/);
  });
});
