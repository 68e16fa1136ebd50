import assert from 'node:assert/strict';
import { mkdtemp, realpath, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import { resolveControlPlaneBinaries } from '../test/harness/binaries.js';
import { runCommand, type CommandResult } from '../test/harness/run-command.js';

const script = fileURLToPath(new URL('build-control-plane.sh', import.meta.url));

const runBuild = (env: NodeJS.ProcessEnv): Promise<CommandResult> =>
  runCommand('bash', [script], env);

describe('scripts/build-control-plane.sh', () => {
  let cached: string;
  let envtestAssets: string;
  let fullAssets: string;
  let emptyCache: string;
  let assembled: string | undefined;
  // Nothing of the caller's environment may steer these runs.
  const clean = { KUBEBUILDER_ASSETS: '' };

  before(async () => {
    const run = await runBuild(clean);
    assert.equal(run.code, 0, run.stderr);
    cached = run.stdout.trim();
    // What setup-envtest installs: etcd, kube-apiserver and kubectl, no controller-manager or scheduler.
    envtestAssets = await mkdtemp(join(tmpdir(), 'compofa-envtest-'));
    for (const name of ['etcd', 'kube-apiserver', 'kubectl'])
      await symlink(join(cached, name), join(envtestAssets, name));
    fullAssets = await mkdtemp(join(tmpdir(), 'compofa-assets-'));
    for (const name of ['etcd', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler'])
      await symlink(join(cached, name), join(fullAssets, name));
    emptyCache = await mkdtemp(join(tmpdir(), 'compofa-cp-cache-'));
  });
  after(async () => {
    await Promise.all(
      [envtestAssets, fullAssets, emptyCache].map((dir) =>
        rm(dir, { recursive: true, force: true }),
      ),
    );
  });

  it('reuses the per-version cache outside the repository', async () => {
    const run = await runBuild(clean);
    assert.equal(run.code, 0);
    assert.equal(run.stdout.trim(), cached);
    assert.match(run.stderr, /cached: /);
    assert.match(cached, /control-plane\/kubernetes-v1\.36\.3-etcd-v3\.6\.8$/);
  });

  it('uses a complete KUBEBUILDER_ASSETS folder as it is, with no Go', async () => {
    const run = await runBuild({
      KUBEBUILDER_ASSETS: fullAssets,
      COMPOFA_CACHE_DIR: emptyCache,
      GO: '/nonexistent/go',
    });
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout.trim(), fullAssets);
    assert.match(run.stderr, /using KUBEBUILDER_ASSETS=.* \(no build\)/);
  });

  it('completes a setup-envtest folder with the controller-manager and scheduler it lacks', async () => {
    const run = await runBuild({ KUBEBUILDER_ASSETS: envtestAssets });
    assert.equal(run.code, 0, run.stderr);
    assembled = run.stdout.trim();
    assert.notEqual(assembled, envtestAssets);
    assert.match(
      run.stderr,
      /using etcd and kube-apiserver from KUBEBUILDER_ASSETS=.*kube-controller-manager kube-scheduler v1\.36\.3 from /,
    );
    for (const name of ['etcd', 'kube-apiserver', 'kubectl'])
      assert.equal(
        await realpath(join(assembled, name)),
        await realpath(join(envtestAssets, name)),
      );
    for (const name of ['kube-controller-manager', 'kube-scheduler'])
      assert.equal(await realpath(join(assembled, name)), await realpath(join(cached, name)));
    const binaries = await resolveControlPlaneBinaries({
      ...process.env,
      KUBEBUILDER_ASSETS: envtestAssets,
    });
    assert.equal(binaries.kubeScheduler, join(assembled, 'kube-scheduler'));
  });

  it('says what KUBEBUILDER_ASSETS must hold when it does not', async () => {
    const run = await runBuild({ KUBEBUILDER_ASSETS: emptyCache });
    assert.equal(run.code, 1);
    assert.match(run.stderr, /KUBEBUILDER_ASSETS=.* must hold executable etcd and kube-apiserver/);
  });

  it('explains both ways out when there is neither a cache nor Go', async () => {
    const run = await runBuild({ ...clean, COMPOFA_CACHE_DIR: emptyCache, GO: '/nonexistent/go' });
    assert.equal(run.code, 1);
    assert.match(run.stderr, /Go \(>= 1\.26\) is needed to build .*or set KUBEBUILDER_ASSETS/);
  });

  it('reports why the Go module proxy failed instead of failing silently', async () => {
    const run = await runBuild({
      ...clean,
      COMPOFA_CACHE_DIR: emptyCache,
      GOPROXY: 'off',
      GOMODCACHE: join(emptyCache, 'mod'),
      GOFLAGS: '-modcacherw',
    });
    assert.equal(run.code, 1);
    assert.match(
      run.stderr,
      /could not download k8s\.io\/kubernetes@v1\.36\.3 from the Go module proxy \(off\): .*module lookup disabled by GOPROXY=off/,
    );
  });
});

describe('resolveControlPlaneBinaries', () => {
  it('names the missing binary of a KUBEBUILDER_ASSETS folder', async () => {
    const assets = await mkdtemp(join(tmpdir(), 'compofa-envtest-'));
    try {
      await assert.rejects(
        resolveControlPlaneBinaries({ ...process.env, KUBEBUILDER_ASSETS: assets }),
        /KUBEBUILDER_ASSETS=.* must hold executable etcd and kube-apiserver/,
      );
    } finally {
      await rm(assets, { recursive: true, force: true });
    }
  });
});
