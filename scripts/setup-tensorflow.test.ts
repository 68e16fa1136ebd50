import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import { freeLoopbackPort } from '../test/harness/network.js';
import { runCommand, type CommandResult } from '../test/harness/run-command.js';

const script = fileURLToPath(new URL('setup-tensorflow.sh', import.meta.url));
const addon = fileURLToPath(
  new URL('../node_modules/@tensorflow/tfjs-node/lib/napi-v8/tfjs_binding.node', import.meta.url),
);
const addonLibrary = fileURLToPath(
  new URL('../node_modules/@tensorflow/tfjs-node/deps/lib/libtensorflow_cc.so.2', import.meta.url),
);

// pip's own configuration and an inherited wheel must not steer these runs.
const isolated = {
  PIP_CONFIG_FILE: '/dev/null',
  PIP_FIND_LINKS: '',
  PIP_EXTRA_INDEX_URL: '',
  COMPOFA_TF_WHEEL: '',
};
const runSetup = (args: readonly string[], env: NodeJS.ProcessEnv): Promise<CommandResult> =>
  runCommand('bash', [script, ...args], { ...isolated, ...env });

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

  it('refuses a wheel of another TensorFlow version, naming the file, and caches nothing', async () => {
    const wheel = join(emptyCache, 'tensorflow_cpu-2.20.0-cp311-cp311-manylinux_2_27_x86_64.whl');
    const make = await runCommand('python3', [
      '-c',
      `import zipfile; z = zipfile.ZipFile(${JSON.stringify(wheel)}, 'w'); z.writestr('tensorflow_cpu-2.20.0.dist-info/METADATA', 'Metadata-Version: 2.1\\nName: tensorflow-cpu\\nVersion: 2.20.0\\n'); z.close()`,
    ]);
    assert.equal(make.code, 0, make.stderr);
    const run = await runSetup([], { COMPOFA_CACHE_DIR: emptyCache, COMPOFA_TF_WHEEL: wheel });
    assert.equal(run.code, 1);
    assert.match(
      run.stderr,
      /tensorflow_cpu-2\.20\.0-.*\.whl is tensorflow-cpu 2\.20\.0, not the tensorflow-cpu==2\.21\.0 wheel this set-up needs/,
    );
    assert.deepEqual(
      (await readdir(join(emptyCache, 'tensorflow'))).filter((f) => !f.startsWith('.')),
      [],
    );
  });

  it('rejects unknown options', async () => {
    const run = await runSetup(['--cuda'], {});
    assert.equal(run.code, 2);
    assert.match(run.stderr, /unknown option '--cuda'/);
  });

  it('is idempotent: a rerun reuses the cached library and addon, rewrites nothing, and still loads TensorFlow 2.21', async () => {
    const inode = (await stat(addon)).ino;
    const run = await runSetup([], {});
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, /\[setup-tensorflow\] cached: /);
    assert.match(run.stderr, /addon in place: /);
    assert.doesNotMatch(run.stderr, /building the tfjs-node N-API addon/);
    assert.equal((await stat(addon)).ino, inode, 'a rerun must not rewrite the loaded addon');
    assert.match(run.stderr, /backend tensorflow, TensorFlow 2\.21\.0/);
  });
});
