/**
 * What a local cluster with real nodes changes on this host outside its own folder: addresses on
 * `lo`, parent cgroups, sysctls the kubelet rewrites, mount namespaces, CNI bridges, firewall
 * chains, the containers' processes. Each change is written to a journal file *before* it is
 * made, so that {@link HostJournal.undo} (at stop, or at the next start after a process that was
 * SIGKILLed) undoes exactly what was done, newest first, and leaves the host as it was.
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmdirSync } from 'node:fs';
import { mkdir, readFile, rename, rm, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';

import { processesWithArgument } from './liveness.js';

const run = promisify(execFile);

/** One undoable change to the host. */
export type HostChange =
  /** An address added to `lo` (a node's IP). */
  | { readonly kind: 'loopback-address'; readonly address: string }
  /** A sysctl and the value it had before (`vm/overcommit_memory`). */
  | { readonly kind: 'sysctl'; readonly key: string; readonly value: string }
  /** A cgroup made in every cgroup v1 hierarchy, `compofa-node-fast`; its processes are killed. */
  | { readonly kind: 'cgroup'; readonly name: string }
  /** A folder that did not exist: removed only when empty, or with its contents when `owned`. */
  | { readonly kind: 'directory'; readonly path: string; readonly owned?: boolean }
  | { readonly kind: 'mount'; readonly path: string }
  /** A network link made by a CNI plugin, e.g. a bridge. */
  | { readonly kind: 'link'; readonly name: string }
  /** Processes whose command line contains `marker` (containerd shims of a node): SIGKILLed. */
  | { readonly kind: 'processes'; readonly marker: string }
  /** KUBE-* and CNI-* chains of iptables and ip6tables, and the rules that jump to them. */
  | { readonly kind: 'firewall-chains' };

/** The cgroup v1 hierarchies; `unified` is the cgroup2 mount of a hybrid host. */
export const CGROUP_ROOT = '/sys/fs/cgroup';

export function cgroupV1Hierarchies(): string[] {
  return readdirSync(CGROUP_ROOT, { withFileTypes: true })
    .filter((entry) => entry.isDirectory() && entry.name !== 'unified')
    .map((entry) => join(CGROUP_ROOT, entry.name));
}

/** An append-only list of {@link HostChange}s in a JSON file, and how to undo them. */
/**
 * The CFS bandwidth of `cpus` CPUs: the shortest period whose quota the kernel accepts (both at
 * least 1 ms). A short period makes the cap act like a slower CPU on millisecond inferences: with
 * the default 100 ms, a 0.5-CPU node runs them at full speed for 50 ms and then stalls for 50 ms,
 * which a median latency never sees.
 */
export function cpuQuota(cpus: number): { periodUs: number; quotaUs: number } {
  if (!(cpus > 0)) throw new RangeError(`expected a positive number of CPUs, got ${cpus}`);
  const periodUs = Math.max(MIN_CFS_US, Math.ceil(MIN_CFS_US / cpus));
  return { periodUs, quotaUs: Math.round(cpus * periodUs) };
}

/** The kernel's lower bound of cpu.cfs_period_us and cpu.cfs_quota_us. */
const MIN_CFS_US = 1_000;

export class HostJournal {
  private constructor(
    readonly path: string,
    private readonly changes: HostChange[],
  ) {}

  /** Opens the journal at `path`, with what it already lists (an abandoned cluster's). */
  static async open(path: string): Promise<HostJournal> {
    const text = await readFile(path, 'utf8').catch(() => '[]');
    return new HostJournal(path, JSON.parse(text) as HostChange[]);
  }

  get recorded(): readonly HostChange[] {
    return this.changes;
  }

  /** Records `change` durably; call it before making the change. */
  async record(change: HostChange): Promise<void> {
    this.changes.push(change);
    const temporary = `${this.path}.tmp`;
    await writeFile(temporary, JSON.stringify(this.changes, null, 1));
    await rename(temporary, this.path);
  }

  /** Adds `address`/32 to `lo`. */
  async addLoopbackAddress(address: string): Promise<void> {
    await this.record({ kind: 'loopback-address', address });
    await command('ip', ['addr', 'add', `${address}/32`, 'dev', 'lo']);
  }

  /** Remembers the values of `keys` (`vm/overcommit_memory`), to be restored by undo(). */
  async saveSysctls(keys: readonly string[]): Promise<void> {
    for (const key of keys) {
      const value = (await readFile(`/proc/sys/${key}`, 'utf8')).trim();
      await this.record({ kind: 'sysctl', key, value });
    }
  }

  /** Puts the remembered sysctls back now (the kubelet rewrites some when it starts). */
  async restoreSysctls(): Promise<void> {
    for (const change of this.changes)
      if (change.kind === 'sysctl') await writeFile(`/proc/sys/${change.key}`, change.value);
  }

  /** Makes cgroup `name` in every v1 hierarchy, with `cpus` CPUs of quota (fractions allowed). */
  async createCgroup(name: string, cpus: number): Promise<void> {
    await this.record({ kind: 'cgroup', name });
    for (const hierarchy of cgroupV1Hierarchies())
      await mkdir(join(hierarchy, name), { recursive: true });
    // cpuset needs its CPUs and memory nodes before any process can join.
    for (const file of ['cpuset.cpus', 'cpuset.mems'])
      await writeFile(
        join(CGROUP_ROOT, 'cpuset', name, file),
        await readFile(join(CGROUP_ROOT, 'cpuset', file), 'utf8'),
      );
    await this.setCpuQuota(name, cpus);
  }

  /** Changes the CPU quota of a cgroup made by {@link createCgroup}. */
  async setCpuQuota(name: string, cpus: number): Promise<void> {
    const { periodUs, quotaUs } = cpuQuota(cpus);
    // The quota must stay at least 1 ms and the ratio valid after each write: any order does,
    // since both values are; the period goes first so the quota is read against the new one.
    await writeFile(join(CGROUP_ROOT, 'cpu', name, 'cpu.cfs_period_us'), String(periodUs));
    await writeFile(join(CGROUP_ROOT, 'cpu', name, 'cpu.cfs_quota_us'), String(quotaUs));
  }

  /**
   * Creates `path` (and its parents) if it is missing, recording each folder it made; `owned`:
   * undo removes the last one with whatever it then holds.
   */
  async ensureDirectory(path: string, owned = false): Promise<void> {
    const missing: string[] = [];
    for (let dir = path; !existsSync(dir); dir = join(dir, '..')) missing.unshift(dir);
    for (const dir of missing) {
      await this.record({ kind: 'directory', path: dir, ...(owned && dir === path && { owned }) });
      await mkdir(dir);
    }
  }

  /**
   * Undoes every recorded change, newest first. Each step is attempted even when an earlier one
   * failed; resolves with what could not be undone (empty when the host is clean).
   */
  async undo(): Promise<string[]> {
    const failures: string[] = [];
    for (const change of [...this.changes].reverse()) {
      try {
        await undoChange(change);
      } catch (error) {
        failures.push(
          `${describe(change)}: ${error instanceof Error ? error.message : String(error)}`,
        );
      }
    }
    if (failures.length === 0) {
      this.changes.length = 0;
      await writeFile(this.path, '[]');
    }
    return failures;
  }
}

function describe(change: HostChange): string {
  const { kind, ...rest } = change;
  return `${kind} ${Object.values(rest).join(' ')}`.trim();
}

async function command(file: string, args: readonly string[]): Promise<string> {
  try {
    return (await run(file, args, { maxBuffer: 16 << 20 })).stdout;
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr?.trim();
    throw new Error(`${file} ${args.join(' ')} failed: ${stderr || String(error)}`);
  }
}

async function undoChange(change: HostChange): Promise<void> {
  switch (change.kind) {
    case 'loopback-address': {
      const shown = await command('ip', ['-o', 'addr', 'show', 'dev', 'lo']);
      if (shown.includes(` ${change.address}/32 `))
        await command('ip', ['addr', 'del', `${change.address}/32`, 'dev', 'lo']);
      return;
    }
    case 'sysctl':
      await writeFile(`/proc/sys/${change.key}`, change.value);
      return;
    case 'cgroup':
      await removeCgroup(change.name);
      return;
    case 'directory':
      if (change.owned) {
        await rm(change.path, { recursive: true, force: true });
        return;
      }
      // Only when empty: something else may have put files there since.
      await rmdir(change.path).catch((error: unknown) => {
        const code = (error as NodeJS.ErrnoException).code;
        if (code !== 'ENOENT' && code !== 'ENOTEMPTY') throw error;
      });
      return;
    case 'mount': {
      const mounted = readFileSync('/proc/self/mounts', 'utf8')
        .split('\n')
        .some((line) => line.split(' ')[1] === change.path);
      if (mounted) await command('umount', ['--lazy', change.path]);
      return;
    }
    case 'link': {
      const links = await command('ip', ['-o', 'link', 'show']);
      if (links.includes(` ${change.name}:`)) await command('ip', ['link', 'delete', change.name]);
      return;
    }
    case 'processes':
      await killAll(() => processesWithArgument(change.marker), change.marker);
      return;
    case 'firewall-chains':
      await removeFirewallChains();
  }
}

/** SIGKILLs what `pids` lists until nothing is left (5 s at most). */
async function killAll(pids: () => number[], what: string): Promise<void> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const left = pids();
    if (left.length === 0) return;
    for (const pid of left) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    await sleep(100);
  }
  throw new Error(`processes of ${what} survive SIGKILL: ${pids().join(', ')}`);
}

/** Every cgroup folder under `dir`, deepest first. */
function cgroupTree(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const children = readdirSync(dir, { withFileTypes: true }).filter((entry) => entry.isDirectory());
  return [...children.flatMap((child) => cgroupTree(join(dir, child.name))), dir];
}

function cgroupProcesses(name: string): number[] {
  const pids = new Set<number>();
  for (const hierarchy of cgroupV1Hierarchies())
    for (const dir of cgroupTree(join(hierarchy, name)))
      for (const line of readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n'))
        if (line) pids.add(Number(line));
  return [...pids];
}

/** Kills every process in cgroup `name` (a node's pods), then removes it from every hierarchy. */
async function removeCgroup(name: string): Promise<void> {
  await killAll(() => cgroupProcesses(name), `cgroup ${name}`);
  for (const hierarchy of cgroupV1Hierarchies())
    for (const dir of cgroupTree(join(hierarchy, name))) {
      // A cgroup whose last process just died can be busy for a moment.
      for (let attempt = 0; ; attempt++) {
        try {
          rmdirSync(dir);
          break;
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code === 'ENOENT') break;
          if (attempt >= 20) throw error;
          await sleep(100);
        }
      }
    }
}

const CHAIN_PREFIX = /^(KUBE-|CNI-)/;

/**
 * Removes the KUBE-* and CNI-* chains (kubelet, kube-proxy, portmap) from the filter, nat and
 * mangle tables of iptables and ip6tables, after the built-in chains' rules that jump to them.
 */
async function removeFirewallChains(): Promise<void> {
  for (const tool of ['iptables', 'ip6tables'])
    for (const table of ['filter', 'nat', 'mangle']) {
      const rules = (await command(tool, ['-w', '-t', table, '-S']).catch(() => '')).split('\n');
      const chains = rules
        .filter((rule) => rule.startsWith('-N '))
        .map((rule) => rule.slice(3).trim())
        .filter((chain) => CHAIN_PREFIX.test(chain));
      for (const rule of rules) {
        const [action, chain] = rule.split(' ');
        if (action === '-A' && chain && !CHAIN_PREFIX.test(chain) && / -j (KUBE-|CNI-)/.test(rule))
          await command('sh', ['-c', `${tool} -w -t ${table} -D ${rule.slice(3)}`]);
      }
      for (const chain of chains) await command(tool, ['-w', '-t', table, '-F', chain]);
      for (const chain of chains) await command(tool, ['-w', '-t', table, '-X', chain]);
    }
}

/** True when a KUBE-* or CNI-* chain exists: another Kubernetes node uses this host's firewall. */
export async function hasKubernetesFirewallChains(): Promise<string | undefined> {
  for (const tool of ['iptables', 'ip6tables'])
    for (const table of ['filter', 'nat', 'mangle']) {
      const rules = await command(tool, ['-w', '-t', table, '-S']).catch(() => '');
      const chain = rules
        .split('\n')
        .find((rule) => rule.startsWith('-N ') && CHAIN_PREFIX.test(rule.slice(3)));
      if (chain) return `${tool} -t ${table}: chain ${chain.slice(3)}`;
    }
  return undefined;
}
