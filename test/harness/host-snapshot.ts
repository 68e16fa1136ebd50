/**
 * What a local cluster could leave behind on this host, read off it: for tests that teardown
 * leaves the host exactly as it was.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { cgroupV1Hierarchies } from './host-changes.js';
import { SYSCTLS_CHANGED_BY_NODES } from './kubelet-node.js';
import { waitFor } from './wait.js';

const run = promisify(execFile);

/** Folders the node stack hard-codes or that the local cluster makes outside its own folder. */
const WATCHED_PATHS = [
  '/var/lib/kubelet',
  '/var/log/containers',
  '/run/containerd',
  '/var/lib/cni',
  '/run/compofa-nodes',
  '/run/compofa-local-cluster.json',
];

/** Programs of a node; none may outlive the cluster. */
const NODE_PROGRAMS = ['kubelet', 'kube-proxy', 'containerd', 'containerd-shim-runc-v2', 'pause'];

export interface HostSnapshot {
  readonly loopbackAddresses: readonly string[];
  readonly links: readonly string[];
  readonly mounts: readonly string[];
  readonly firewallChains: readonly string[];
  readonly cgroups: readonly string[];
  readonly sysctls: Readonly<Record<string, string>>;
  readonly paths: readonly string[];
  readonly processes: readonly string[];
}

async function lines(file: string, args: readonly string[]): Promise<string[]> {
  const { stdout } = await run(file, args, { maxBuffer: 16 << 20 });
  return stdout.split('\n').filter(Boolean);
}

export async function hostSnapshot(): Promise<HostSnapshot> {
  const firewallChains: string[] = [];
  for (const tool of ['iptables', 'ip6tables'])
    for (const table of ['filter', 'nat', 'mangle'])
      for (const rule of await lines(tool, ['-w', '-t', table, '-S']))
        if (rule.startsWith('-N ') || rule.startsWith('-A '))
          firewallChains.push(`${tool} ${table} ${rule}`);
  const processes: string[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const comm = readFileSync(join('/proc', entry, 'comm'), 'utf8').trim();
      if (NODE_PROGRAMS.some((program) => program.startsWith(comm)))
        processes.push(`${entry} ${comm}`);
    } catch {
      // Ended while we looked.
    }
  }
  return {
    loopbackAddresses: (await lines('ip', ['-o', 'addr', 'show', 'dev', 'lo'])).map(
      (line) => line.split(/\s+/)[3] ?? line,
    ),
    links: (await lines('ip', ['-o', 'link', 'show'])).map((line) => line.split(': ')[1] ?? line),
    mounts: readFileSync('/proc/self/mounts', 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((line) => line.split(' ')[1] ?? line),
    firewallChains,
    cgroups: cgroupV1Hierarchies().flatMap((hierarchy) =>
      readdirSync(hierarchy, { withFileTypes: true })
        .filter((entry) => entry.isDirectory())
        .map((entry) => join(hierarchy, entry.name)),
    ),
    sysctls: Object.fromEntries(
      SYSCTLS_CHANGED_BY_NODES.map((key) => [key, readFileSync(`/proc/sys/${key}`, 'utf8').trim()]),
    ),
    paths: WATCHED_PATHS.filter((path) => existsSync(path)),
    processes,
  };
}

/**
 * Fails, showing the difference, unless the host is as `before` (waiting up to 10 s: the last
 * processes may take a moment to go).
 */
export async function assertHostAsBefore(before: HostSnapshot): Promise<void> {
  await waitFor(async () => JSON.stringify(await hostSnapshot()) === JSON.stringify(before), {
    description: 'the host to be as before',
    timeoutMs: 10_000,
  }).catch(() => undefined);
  assert.deepEqual(await hostSnapshot(), before);
}
