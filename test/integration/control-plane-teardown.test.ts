import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';

import { resolveControlPlaneBinaries } from '../harness/binaries.js';
import { ControlPlane, type ControlPlanePorts } from '../harness/control-plane.js';
import { isProcessAlive, processesWithArgument } from '../harness/liveness.js';
import { isPortOpen } from '../harness/network.js';
import { waitFor } from '../harness/wait.js';

interface Footprint {
  readonly pids: Readonly<Record<string, number>>;
  readonly ports: ControlPlanePorts;
  readonly dir: string;
}

async function assertNothingLeft(footprint: Footprint): Promise<void> {
  // A SIGKILLed Go server shows as a zombie while the kernel tears down its threads and
  // sockets, so wait for both the processes and their ports to be gone.
  await waitFor(
    async () => {
      if (Object.values(footprint.pids).some(isProcessAlive)) return false;
      const open = await Promise.all(Object.values(footprint.ports).map(isPortOpen));
      return open.every((isOpen) => !isOpen);
    },
    {
      description: `processes ${JSON.stringify(footprint.pids)} and ports ${JSON.stringify(footprint.ports)} to be gone`,
      timeoutMs: 15_000,
    },
  );
}

/** etcd's data, the private keys and the kubeconfig with the admin key are gone; the logs stay. */
async function assertNoSecretsLeft(footprint: Footprint): Promise<void> {
  const left = await readdir(footprint.dir);
  assert.deepEqual(
    left.filter((entry) => ['etcd', 'pki', 'kubeconfig'].includes(entry)),
    [],
    `in ${footprint.dir}`,
  );
  assert.ok(left.includes('logs'));
}

const fixture = fileURLToPath(new URL('../fixtures/abandoned-control-plane.ts', import.meta.url));

/** Runs the fixture in a child Node process and resolves with its footprint once it has started. */
async function abandonedControlPlane(mode: 'throw' | 'hang'): Promise<{
  footprint: Footprint;
  /** Makes the `throw` fixture crash. */
  crash: () => void;
  interrupt: () => void;
  kill: () => void;
  exit: Promise<[number | null, NodeJS.Signals | null]>;
}> {
  const child = spawn(process.execPath, ['--import', 'tsx', fixture, mode], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const exit = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const line = await waitFor(() => (stdout.includes('\n') ? stdout.split('\n')[0] : undefined), {
    description: `the ${mode} fixture to start a control plane (stderr: ${stderr.slice(-500)})`,
    timeoutMs: 60_000,
  });
  const footprint = JSON.parse(line) as Footprint;
  assert.equal(Object.keys(footprint.pids).length, 4);
  for (const pid of Object.values(footprint.pids))
    assert.ok(isProcessAlive(pid), `pid ${pid} should be running`);
  return {
    footprint,
    exit,
    crash: () => child.stdin.end('crash\n'),
    interrupt: () => child.kill('SIGINT'),
    kill: () => child.kill('SIGKILL'),
  };
}

describe('control plane teardown', () => {
  it('fails fast when a component dies at start, quoting its log, and leaves nothing running', async () => {
    const binaries = await resolveControlPlaneBinaries();
    const dir = await mkdtemp(join(tmpdir(), 'compofa-broken-'));
    try {
      const brokenApiserver = join(dir, 'kube-apiserver');
      await writeFile(
        brokenApiserver,
        '#!/bin/sh\necho "Error: unknown flag: --frobnicate" >&2\nexit 3\n',
        { mode: 0o755 },
      );
      const error = await ControlPlane.start({
        binaries: { ...binaries, kubeApiserver: brokenApiserver },
        dir: join(dir, 'plane'),
      }).then(
        () => assert.fail('a control plane with a broken kube-apiserver started'),
        (e: unknown) => e as Error,
      );
      assert.match(error.message, /kube-apiserver did not become healthy/);
      assert.match(error.message, /ended with exit code 3/);
      assert.match(
        error.message,
        new RegExp(`last lines of ${join(dir, 'plane', 'logs', 'kube-apiserver.log')}`),
      );
      assert.match(error.message, /unknown flag: --frobnicate/);
      assert.deepEqual(
        processesWithArgument(`--data-dir=${join(dir, 'plane', 'etcd')}`),
        [],
        'etcd was left running',
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('stop() ends every component and frees every port', async () => {
    const plane = await ControlPlane.start();
    const footprint = { pids: plane.pids, ports: plane.ports, dir: plane.dir };
    for (const port of Object.values(plane.ports))
      assert.equal(await isPortOpen(port), true, `port ${port} should be open`);
    await plane.stop();
    await assertNothingLeft(footprint);
    await assertNoSecretsLeft(footprint);
    await plane.stop(); // a second stop is harmless
  });

  it('kills the components when the test process crashes with an uncaught exception', async () => {
    const { footprint, exit, crash } = await abandonedControlPlane('throw');
    crash();
    const [code] = await exit;
    assert.notEqual(code, 0);
    await assertNothingLeft(footprint);
    await assertNoSecretsLeft(footprint);
  });

  it('kills the components when the test process is interrupted (Ctrl-C)', async () => {
    const { footprint, exit, interrupt } = await abandonedControlPlane('hang');
    interrupt();
    const [, signal] = await exit;
    assert.equal(signal, 'SIGINT');
    await assertNothingLeft(footprint);
    await assertNoSecretsLeft(footprint);
  });

  it('kills the components even when the test process is SIGKILLed and can run no handler', async () => {
    const { footprint, exit, kill } = await abandonedControlPlane('hang');
    kill();
    const [, signal] = await exit;
    assert.equal(signal, 'SIGKILL');
    await assertNothingLeft(footprint);
  });
});
