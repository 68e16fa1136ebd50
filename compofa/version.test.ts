import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';

import { ONNX_RUNTIME_VERSION } from './engines.js';
import { COMPOFA_VERSION } from './version.js';

const json = async (path: string): Promise<Record<string, any>> =>
  JSON.parse(await readFile(new URL(path, import.meta.url), 'utf8')) as Record<string, any>;

describe('versions stated in code', () => {
  it("COMPOFA_VERSION is package.json's version", async () => {
    assert.equal(COMPOFA_VERSION, (await json('../package.json')).version);
  });

  it('ONNX_RUNTIME_VERSION is the exact onnxruntime-node that package.json pins and npm installed', async () => {
    assert.equal(
      (await json('../package.json')).dependencies['onnxruntime-node'],
      ONNX_RUNTIME_VERSION,
    );
    assert.equal(
      (await json('../node_modules/onnxruntime-node/package.json')).version,
      ONNX_RUNTIME_VERSION,
    );
  });
});
