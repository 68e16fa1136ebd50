import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import { freeLoopbackPort } from '../test/harness/network.js';
import { runCommand, type CommandResult } from '../test/harness/run-command.js';

const script = fileURLToPath(new URL('setup-tensorflow.sh', import.meta.url));
const addonLibrary = fileURLToPath(
  new URL('../node_modules/@tensorflow/tfjs-node/deps/lib/libtensorflow_cc.so.2', import.meta.url),
);

const runSetup = (args: readonly string[], env: NodeJS.ProcessEnv): Promise<CommandResult> =>
  runCommand('bash', [script, ...args], env);

describe('scripts/setup-tensorflow.sh', () => {
  let emptyCache: string;
  before(async () => {
    emptyCache = await mkdtemp(join(tmpdir(), 'compofa-tf-cache-'));
  });
  after(async () => {
    await rm(emptyCache, { recursive: true, force: true });
  });

  it('stops with one clear message when pip cannot provide the wheel, leaving nothing half-written', async () => {
    const closedPort = await freeLoopbackPort();
    const run = await runSetup([], {
      COMPOFA_CACHE_DIR: emptyCache,
      PIP_INDEX_URL: `http://127.0.0.1:${closedPort}/simple`,
      PIP_RETRIES: '0',
      PIP_TIMEOUT: '2',
    });
    assert.equal(run.code, 1, run.stderr);
    assert.match(run.stderr, /ERROR: pip could not download tensorflow-cpu==2\.21\.0\./);
    assert.match(run.stderr, /COMPOFA_TF_WHEEL/);
    const left = await readdir(join(emptyCache, 'tensorflow')).catch(() => []);
    assert.deepEqual(left, [], 'no partial cache folder may stay behind');
    assert.ok(
      existsSync(addonLibrary),
      'the installed TensorFlow must be untouched by a failed run',
    );
  });

  it('says what to install when Python is missing', async () => {
    const run = await runSetup([], {
      COMPOFA_CACHE_DIR: emptyCache,
      PYTHON: '/nonexistent/python3',
    });
    assert.equal(run.code, 1);
    assert.match(run.stderr, /Python 3 with pip is needed .*apt-get install python3-pip/);
  });

  it('names the file when COMPOFA_TF_WHEEL is not a TensorFlow wheel', async () => {
    const run = await runSetup([], { COMPOFA_CACHE_DIR: emptyCache, COMPOFA_TF_WHEEL: script });
    assert.equal(run.code, 1);
    assert.match(
      run.stderr,
      new RegExp(
        `could not extract the C API from ${script.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`,
      ),
    );
  });

  it('rejects unknown options', async () => {
    const run = await runSetup(['--cuda'], {});
    assert.equal(run.code, 2);
    assert.match(run.stderr, /unknown option '--cuda'/);
  });

  it('is idempotent: a rerun reuses the cached library and addon and still loads TensorFlow 2.21', async () => {
    const run = await runSetup([], {});
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, /\[setup-tensorflow\] cached: /);
    assert.match(run.stderr, /addon from cache: /);
    assert.doesNotMatch(run.stderr, /building the tfjs-node N-API addon/);
    assert.match(run.stderr, /backend tensorflow, TensorFlow 2\.21\.0/);
  });
});
