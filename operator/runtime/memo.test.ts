import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { Memo } from './memo.js';

describe('Memo', () => {
  it('computes once per distinct keys', () => {
    const memo = new Memo<number>(4);
    let calls = 0;
    const compute = () => ++calls;
    const text = 'x'.repeat(50_000);
    assert.equal(memo.get(['a', text], compute), 1);
    assert.equal(memo.get(['a', 'x'.repeat(50_000)], compute), 1, 'equal strings are one key');
    assert.equal(memo.get(['a', `${text}y`], compute), 2);
    assert.equal(memo.get(['b', text], compute), 3);
    assert.equal(calls, 3);
    assert.equal(memo.size, 3);
  });

  it('forgets the least recently used entry beyond its capacity', () => {
    const memo = new Memo<string>(2);
    let calls = 0;
    const value = (name: string) => () => `${name}${++calls}`;
    memo.get(['a'], value('a'));
    memo.get(['b'], value('b'));
    memo.get(['a'], value('a')); // a is now the most recent
    memo.get(['c'], value('c')); // evicts b
    assert.equal(memo.size, 2);
    assert.equal(memo.get(['a'], value('a')), 'a1');
    assert.equal(memo.get(['b'], value('b')), 'b4', 'b was computed again');
  });

  it('refuses a capacity that is not a positive integer', () => {
    assert.throws(() => new Memo(0), /capacity must be a positive integer, not 0/);
  });
});
