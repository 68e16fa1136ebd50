import assert from 'node:assert/strict';
import { mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
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
  let emptyCache: string;

  before(async () => {
    const run = await runBuild({});
    assert.equal(run.code, 0, run.stderr);
    cached = run.stdout.trim();
    // A setup-envtest style folder: etcd and the control plane, no kubectl.
    envtestAssets = await mkdtemp(join(tmpdir(), 'compofa-envtest-'));
    for (const name of ['etcd', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler']) {
      await symlink(join(cached, name), join(envtestAssets, name));
    }
    emptyCache = await mkdtemp(join(tmpdir(), 'compofa-cp-cache-'));
  });
  after(async () => {
    await Promise.all(
      [envtestAssets, emptyCache].map((dir) => rm(dir, { recursive: true, force: true })),
    );
  });

  it('reuses the per-version cache outside the repository', async () => {
    const run = await runBuild({});
    assert.equal(run.code, 0);
    assert.equal(run.stdout.trim(), cached);
    assert.match(run.stderr, /cached: /);
    assert.match(cached, /control-plane\/kubernetes-v1\.36\.3-etcd-v3\.6\.8$/);
  });

  it('uses KUBEBUILDER_ASSETS without building anything', async () => {
    const run = await runBuild({
      KUBEBUILDER_ASSETS: envtestAssets,
      COMPOFA_CACHE_DIR: emptyCache,
      PATH: '/usr/bin:/bin',
    });
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout.trim(), envtestAssets);
    assert.match(run.stderr, /using KUBEBUILDER_ASSETS=.* \(no build\)/);
  });

  it('says what KUBEBUILDER_ASSETS must hold when it does not', async () => {
    const run = await runBuild({ KUBEBUILDER_ASSETS: emptyCache });
    assert.equal(run.code, 1);
    assert.match(
      run.stderr,
      /KUBEBUILDER_ASSETS=.* must hold executable etcd, kube-apiserver, kube-controller-manager and kube-scheduler/,
    );
  });

  it('explains both ways out when there is neither a cache nor Go', async () => {
    const run = await runBuild({
      COMPOFA_CACHE_DIR: emptyCache,
      PATH: dirname(process.execPath) + ':/usr/bin:/bin',
    });
    assert.equal(run.code, 1);
    assert.match(run.stderr, /Go is needed to build the control plane .*or set KUBEBUILDER_ASSETS/);
  });
});

describe('resolveControlPlaneBinaries', () => {
  it('takes KUBEBUILDER_ASSETS and tolerates a missing kubectl', async () => {
    const cached = (await runBuild({})).stdout.trim();
    const assets = await mkdtemp(join(tmpdir(), 'compofa-envtest-'));
    const previous = process.env.KUBEBUILDER_ASSETS;
    try {
      for (const name of ['etcd', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler']) {
        await symlink(join(cached, name), join(assets, name));
      }
      process.env.KUBEBUILDER_ASSETS = assets;
      const binaries = await resolveControlPlaneBinaries();
      assert.equal(binaries.kubeApiserver, join(assets, 'kube-apiserver'));
      assert.equal(binaries.kubectl, undefined);
      process.env.KUBEBUILDER_ASSETS = join(assets, 'missing');
      await assert.rejects(
        resolveControlPlaneBinaries(),
        /control-plane binary etcd is missing or not executable/,
      );
    } finally {
      if (previous === undefined) delete process.env.KUBEBUILDER_ASSETS;
      else process.env.KUBEBUILDER_ASSETS = previous;
      await rm(assets, { recursive: true, force: true });
    }
  });
});
