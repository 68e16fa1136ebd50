import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { DEFAULT_ENGINE, engineMismatch, parseEngine } from './engines.js';

describe('engines', () => {
  it('default to ONNX Runtime and parse names, naming the source of a bad one', () => {
    assert.equal(DEFAULT_ENGINE, 'onnxruntime');
    assert.equal(parseEngine('tfjs', '--engine'), 'tfjs');
    assert.throws(
      () => parseEngine('tensorrt', '--engine (COMPOFA_ENGINE)'),
      /--engine \(COMPOFA_ENGINE\) must be one of onnxruntime, tfjs, got 'tensorrt'/,
    );
  });

  it('refuse a table of another engine or version, naming both', () => {
    const serving = { name: 'onnxruntime', version: '1.30.0' } as const;
    assert.equal(engineMismatch(serving, serving, 'latency.json'), undefined);
    assert.equal(
      engineMismatch({ name: 'tfjs', version: '2.21.0' }, serving, 'latency.json'),
      'latency.json was measured with tfjs 2.21.0, but the model is served with onnxruntime 1.30.0; profile again with the engine that serves',
    );
    assert.match(
      engineMismatch({ name: 'onnxruntime', version: '1.29.0' }, serving, 'lat.json') ?? '',
      /measured with onnxruntime 1\.29\.0, but the model is served with onnxruntime 1\.30\.0/,
    );
  });
});
