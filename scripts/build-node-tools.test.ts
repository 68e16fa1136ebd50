import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { runCommand } from '../test/harness/run-command.js';

const script = fileURLToPath(new URL('build-node-tools.sh', import.meta.url));

describe('scripts/build-node-tools.sh', () => {
  const emptyCaches: string[] = [];
  after(() => Promise.all(emptyCaches.map((dir) => rm(dir, { recursive: true, force: true }))));

  it('prints the cached folder with kubelet and kube-proxy v1.36.3 and the static pause binary', async () => {
    const run = await runCommand('bash', [script], {});
    assert.equal(run.code, 0, run.stderr);
    const dir = run.stdout.trim();
    assert.match(dir, /node\/kubernetes-v1\.36\.3$/);
    for (const tool of ['kubelet', 'kube-proxy']) {
      const { stdout } = await promisify(execFile)(join(dir, tool), ['--version']);
      assert.match(stdout, /Kubernetes v1\.36\.3/);
    }
    // The image holds nothing but this file, so it must need no C library.
    const ldd = await runCommand('ldd', [join(dir, 'pause')]);
    assert.match(ldd.stdout + ldd.stderr, /not a dynamic executable/);
  });

  it('refuses to run without root, saying why', async () => {
    const run = await runCommand(
      'setpriv',
      ['--reuid=65534', '--regid=65534', '--clear-groups', 'bash', script],
      {},
    );
    assert.equal(run.code, 1);
    assert.match(run.stderr, /real nodes need root \(a kubelet and containerd manage mounts/);
  });

  it('reports why the Go module proxy failed when it has to build', async () => {
    const cache = await mkdtemp(join(tmpdir(), 'compofa-node-cache-'));
    emptyCaches.push(cache);
    const run = await runCommand('bash', [script], {
      COMPOFA_CACHE_DIR: cache,
      GOPROXY: 'off',
      GOMODCACHE: join(cache, 'mod'),
      GOFLAGS: '-modcacherw',
    });
    assert.equal(run.code, 1);
    assert.match(
      run.stderr,
      /could not download k8s\.io\/kubernetes@v1\.36\.3 from the Go module proxy \(off\)/,
    );
  });
});
