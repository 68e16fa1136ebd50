import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';

import { COMPOFA_VERSION } from './version.js';

describe('COMPOFA_VERSION', () => {
  it("is package.json's version", async () => {
    const manifest = JSON.parse(
      await readFile(new URL('../package.json', import.meta.url), 'utf8'),
    ) as { version: string };
    assert.equal(COMPOFA_VERSION, manifest.version);
  });
});
