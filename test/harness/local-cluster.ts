/**
 * A Kubernetes cluster with real nodes on this one host: the control plane of control-plane.ts,
 * N device nodes (kubelet-node.ts) and one kube-proxy, on loopback and private addresses only.
 * One runs at a time (a lock file names its process); {@link LocalCluster.stop} (or the next
 * start, after a process that was killed) leaves the host as it was.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import {
  chmod,
  chown,
  copyFile,
  mkdir,
  mkdtemp,
  open,
  readdir,
  readFile,
  rm,
} from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { CoreV1Api } from '@kubernetes/client-node';

import { DEFAULT_OPERATOR_CONFIG } from '../../operator/config.js';
import { ControlPlane } from './control-plane.js';
import { HostJournal, hasKubernetesFirewallChains } from './host-changes.js';
import { KubeletNode, PAUSE_IMAGE, type DeviceClassSpec, type NodeTools } from './kubelet-node.js';
import { isProcessAlive } from './liveness.js';
import { freeLoopbackPort } from './network.js';
import { writeOciArchive } from './oci-image.js';
import { ManagedProcess } from './processes.js';
import { waitFor } from './wait.js';

const run = promisify(execFile);
const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

/** Where the API server listens on the node network (on `lo`, like the nodes' addresses). */
export const APISERVER_ADDRESS = '10.213.0.100';
/** All pods' addresses; node i has 10.244.i.0/24. */
export const CLUSTER_CIDR = '10.244.0.0/16';
/** The user the images run as. */
const POD_USER = DEFAULT_OPERATOR_CONFIG.podUser;
/** The lock that lets one local cluster with real nodes run on this host at a time. */
export const LOCK_FILE = '/run/compofa-local-cluster.json';

/** Options of {@link LocalCluster.start}. */
export interface LocalClusterOptions {
  readonly deviceClasses: readonly DeviceClassSpec[];
  /** OCI archives loaded into every node besides the pause image. */
  readonly images?: readonly string[];
  /** Default: a new folder under .test-artifacts/. */
  readonly dir?: string;
  /** Called with a line for each step, for a narrated start. */
  readonly progress?: (line: string) => void;
}

interface LockContent {
  readonly pid: number;
  readonly dir: string;
}

/** A running local cluster with real nodes. */
export class LocalCluster {
  private stopped = false;

  private constructor(
    readonly dir: string,
    readonly plane: ControlPlane,
    readonly nodes: readonly KubeletNode[],
    private readonly kubeProxy: ManagedProcess,
    private readonly journal: HostJournal,
    private readonly tools: NodeTools,
  ) {}

  /**
   * Checks the host, takes the lock (cleaning up after a cluster whose process died), and starts
   * the control plane, the nodes and kube-proxy. On a failure everything started is undone and
   * the error names the step.
   */
  static async start(options: LocalClusterOptions): Promise<LocalCluster> {
    const progress = options.progress ?? (() => undefined);
    const tools = await resolveNodeTools();
    const dir = options.dir ?? (await newClusterDir());
    await mkdir(join(dir, 'logs'), { recursive: true });
    await acquireLock(dir, progress);
    // After the lock: what a killed cluster left is gone by now, and only ours would come.
    await checkHost().catch(async (error: unknown) => {
      await releaseLock();
      throw error;
    });
    const journal = await HostJournal.open(join(dir, 'host-changes.json'));
    let plane: ControlPlane | undefined;
    const nodes: KubeletNode[] = [];
    let kubeProxy: ManagedProcess | undefined;
    try {
      const pause = await pauseImage(tools);
      await journal.addLoopbackAddress(APISERVER_ADDRESS);
      progress('starting the control plane');
      plane = await ControlPlane.start({
        dir: join(dir, 'control-plane'),
        nodeNetwork: { apiserverAddress: APISERVER_ADDRESS },
      });
      for (const [i, spec] of options.deviceClasses.entries()) {
        progress(`starting node ${spec.name} (${spec.cpus} CPU, ${spec.memoryMiB} MiB)`);
        nodes.push(
          await KubeletNode.start({
            spec,
            index: i + 1,
            plane,
            journal,
            tools,
            images: [pause],
            parentDir: join(dir, 'nodes'),
            logDir: join(dir, 'logs'),
          }),
        );
      }
      if ((options.images ?? []).length > 0) {
        // In parallel: unpacking an image is the slow part of a node's start.
        progress(`loading the images into every node's containerd`);
        await Promise.all(nodes.map((node) => node.importImages(options.images ?? [])));
      }
      progress('starting kube-proxy');
      kubeProxy = await startKubeProxy(plane, journal, tools, dir, nodes[0]?.name ?? 'none');
    } catch (error) {
      await kubeProxy?.stop();
      for (const node of nodes.reverse()) await node.stop();
      await plane?.stop();
      const failures = await journal.undo();
      if (failures.length === 0) await removeNodeData(dir);
      await releaseLock();
      if (failures.length > 0)
        throw new Error(
          `${error instanceof Error ? error.message : String(error)}\nand undoing host changes failed: ${failures.join('; ')}`,
        );
      throw error;
    }
    return new LocalCluster(dir, plane, nodes, kubeProxy, journal, tools);
  }

  /** The node of device class `name`. */
  node(name: string): KubeletNode {
    const node = this.nodes.find((candidate) => candidate.name === name);
    if (!node)
      throw new Error(`no node ${name}; nodes: ${this.nodes.map((n) => n.name).join(', ')}`);
    return node;
  }

  /**
   * Makes a ReadWriteMany PersistentVolume of `sizeGi` GiB that a claim asking for at most that
   * binds to: a folder of this cluster (every node is on this host, as NFS would be), writable by
   * the pods' user 10001. Deleted with the nodes' data at stop.
   */
  async createSharedVolume(name: string, sizeGi: number): Promise<string> {
    const path = join(this.dir, 'nodes', 'volumes', name);
    await mkdir(path, { recursive: true, mode: 0o770 });
    await chown(path, POD_USER, POD_USER);
    await this.plane
      .kubeConfig()
      .makeApiClient(CoreV1Api)
      .createPersistentVolume({
        body: {
          metadata: { name },
          spec: {
            capacity: { storage: `${sizeGi}Gi` },
            accessModes: ['ReadWriteMany', 'ReadWriteOnce'],
            storageClassName: '',
            persistentVolumeReclaimPolicy: 'Retain',
            hostPath: { path, type: 'Directory' },
          },
        },
      });
    return path;
  }

  /**
   * What a failed test needs to see: every pod with its node and phase, the recent events, and the
   * compofa.io objects (when their CRDs exist).
   */
  async diagnose(): Promise<string> {
    const sections: string[] = [];
    for (const args of [
      ['get', 'pods', '-A', '-o', 'wide'],
      ['get', 'jobs,deployments,services,pvc', '-A'],
      ['get', 'supernettrainings,latencyprofiles,deploymenttargets', '-A', '-o', 'wide'],
      ['get', 'events', '-A', '--sort-by=.lastTimestamp'],
    ]) {
      const { stdout } = await this.plane
        .kubectl(args)
        .catch((error: unknown) => ({ stdout: String(error) }));
      sections.push(`$ kubectl ${args.join(' ')}\n${stdout.split('\n').slice(-40).join('\n')}`);
    }
    // The logs of pods that failed or restarted: the kubelet deletes them with the pods.
    const pods = await this.plane
      .kubeConfig()
      .makeApiClient(CoreV1Api)
      .listPodForAllNamespaces()
      .catch(() => ({ items: [] }));
    for (const pod of pods.items) {
      const restarted = pod.status?.containerStatuses?.some((status) => status.restartCount > 0);
      if (pod.status?.phase !== 'Failed' && !restarted) continue;
      const { namespace = '', name = '' } = pod.metadata ?? {};
      const { stdout } = await this.plane
        .kubectl(['logs', '-n', namespace, name, '--all-containers', '--tail=30'])
        .catch((error: unknown) => ({ stdout: String(error) }));
      sections.push(`$ kubectl logs -n ${namespace} ${name}\n${stdout}`);
    }
    return sections.join('\n');
  }

  /**
   * Memory in use by the cluster now: the resident memory of this process's descendants (control
   * plane, kubelets, containerd, kube-proxy, and what else it started, e.g. Prometheus) and of the
   * pods (the nodes' memory cgroups, without page cache).
   */
  async memoryBytes(): Promise<{ processes: number; pods: number }> {
    const parents = new Map<number, number>();
    const rss = new Map<number, number>();
    for (const entry of await readdir('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      const status = await readFile(`/proc/${entry}/status`, 'utf8').catch(() => '');
      const ppid = /^PPid:\s*(\d+)/m.exec(status)?.[1];
      if (ppid === undefined) continue;
      parents.set(Number(entry), Number(ppid));
      rss.set(Number(entry), Number(/^VmRSS:\s*(\d+) kB/m.exec(status)?.[1] ?? 0) * 1024);
    }
    const descends = (pid: number): boolean => {
      for (let p = parents.get(pid); p !== undefined && p > 1; p = parents.get(p))
        if (p === process.pid) return true;
      return false;
    };
    let processes = 0;
    for (const [pid, bytes] of rss) if (descends(pid)) processes += bytes;
    let pods = 0;
    for (const node of this.nodes) {
      const stat = await readFile(
        join('/sys/fs/cgroup/memory', node.cgroup, 'memory.stat'),
        'utf8',
      ).catch(() => '');
      pods += Number(/^total_rss (\d+)/m.exec(stat)?.[1] ?? 0);
    }
    return { processes, pods };
  }

  /** Changes a node's CPU quota while it runs (a slower device). */
  async setCpuQuota(node: string, cpus: number): Promise<void> {
    await this.journal.setCpuQuota(this.node(node).cgroup, cpus);
  }

  /**
   * Deletes every pod (so that the kubelets tear down their networks and volumes), stops
   * kube-proxy, the nodes and the control plane, and undoes every host change. Rejects, listing
   * them, if some could not be undone. Safe to call twice.
   */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.deleteAllPods().catch(() => undefined);
    await this.kubeProxy.stop();
    await run(join(this.tools.dir, 'kube-proxy'), ['--cleanup']).catch(() => undefined);
    for (const node of [...this.nodes].reverse()) await node.stop();
    await this.plane.stop();
    const failures = await this.journal.undo();
    if (failures.length === 0) await removeNodeData(this.dir);
    await releaseLock();
    if (failures.length > 0)
      throw new Error(`could not undo these host changes: ${failures.join('; ')}`);
  }

  private async deleteAllPods(): Promise<void> {
    // Else ReplicaSets and Jobs would replace the pods as fast as they go.
    await this.plane.stopControllers();
    const core = this.plane.kubeConfig().makeApiClient(CoreV1Api);
    const namespaces = await core.listNamespace();
    for (const namespace of namespaces.items) {
      const name = namespace.metadata?.name ?? '';
      await core.deleteCollectionNamespacedPod({ namespace: name, gracePeriodSeconds: 1 });
    }
    await waitFor(async () => (await core.listPodForAllNamespaces()).items.length === 0, {
      description: 'every pod to be gone',
      timeoutMs: 30_000,
    });
  }
}

/** Finds (building on first use) the node tools through scripts/build-node-tools.sh. */
export async function resolveNodeTools(): Promise<NodeTools> {
  const script = join(repoRoot, 'scripts', 'build-node-tools.sh');
  let dir: string;
  try {
    const { stdout } = await run('bash', [script], { maxBuffer: 1 << 20 });
    dir = stdout.trim().split('\n').at(-1) ?? '';
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr ?? String(error);
    throw new Error(
      `scripts/build-node-tools.sh failed:\n${stderr.trim().split('\n').slice(-10).join('\n')}`,
    );
  }
  return { dir, containerd: '/usr/bin/containerd', ctr: '/usr/bin/ctr' };
}

/** What the nodes need of this host beyond the tools. */
async function checkHost(): Promise<void> {
  if (existsSync('/sys/fs/cgroup/cgroup.controllers'))
    throw new Error(
      'this host uses cgroup v2 only; the local cluster emulates device classes with cgroup v1 CPU quotas (the machines of this project)',
    );
  const chain = await hasKubernetesFirewallChains();
  if (chain)
    throw new Error(
      `another Kubernetes node seems to run on this host (${chain}); stop it, or remove its chains, before starting a local cluster`,
    );
}

/**
 * Rejects, naming its process, when a local cluster runs on this host: a quick check before
 * minutes of work that the lock would refuse at the end (the lock itself is taken by start).
 */
export async function refuseIfClusterRuns(): Promise<void> {
  const holder = await readLockHolder();
  if (holder.pid && holder.pid !== process.pid && isProcessAlive(holder.pid))
    throw new Error(alreadyRunning(holder));
}

function alreadyRunning(holder: Partial<LockContent>): string {
  return `a local cluster is already running on this host (process ${holder.pid ?? '?'}, folder ${holder.dir ?? '?'}); stop it first (Ctrl-C in its terminal, or kill ${holder.pid ?? '?'})`;
}

/** Takes the host-wide lock, or says who holds it; undoes what a dead holder left. */
async function acquireLock(dir: string, progress: (line: string) => void): Promise<void> {
  for (;;) {
    try {
      const handle = await open(LOCK_FILE, 'wx');
      await handle.writeFile(JSON.stringify({ pid: process.pid, dir } satisfies LockContent));
      await handle.close();
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const holder = await readLockHolder();
    if (holder.pid && isProcessAlive(holder.pid)) throw new Error(alreadyRunning(holder));
    await undoDeadCluster(holder, progress);
  }
}

/**
 * Undoes what a local cluster whose process was killed left on this host (its lock says where),
 * and removes its lock; rejects if a live cluster holds it. Nothing to do without a lock. Start
 * does this itself; a test that compares the host before and after calls it first.
 */
export async function cleanUpAbandonedCluster(
  progress: (line: string) => void = () => undefined,
): Promise<void> {
  const holder = await readLockHolder();
  if (holder.pid === undefined) return;
  if (isProcessAlive(holder.pid)) throw new Error(alreadyRunning(holder));
  await undoDeadCluster(holder, progress);
}

async function undoDeadCluster(
  holder: Partial<LockContent>,
  progress: (line: string) => void,
): Promise<void> {
  if (holder.dir) {
    progress(
      `cleaning up after a local cluster whose process ${holder.pid ?? '?'} ended without stopping it`,
    );
    const journal = await HostJournal.open(join(holder.dir, 'host-changes.json'));
    const failures = await journal.undo();
    if (failures.length > 0)
      throw new Error(
        `could not undo what the local cluster in ${holder.dir} left on this host: ${failures.join('; ')}`,
      );
    await removeNodeData(holder.dir);
  }
  await rm(LOCK_FILE, { force: true });
}

/**
 * Deletes the nodes' data (containerd's images and snapshots: hundreds of MiB; kubeconfigs with
 * keys), keeping their logs in `<dir>/logs`. Only once the journal is undone: before that, mounts
 * of the nodes' namespaces may still hold it.
 */
async function removeNodeData(dir: string): Promise<void> {
  await rm(join(dir, 'nodes'), { recursive: true, force: true });
  await rm(join(dir, 'kube-proxy.kubeconfig'), { force: true });
}

/** What the lock says of the cluster holding it; empty when there is no lock. */
async function readLockHolder(): Promise<Partial<LockContent>> {
  return JSON.parse(await readFile(LOCK_FILE, 'utf8').catch(() => '{}')) as Partial<LockContent>;
}

async function releaseLock(): Promise<void> {
  const holder = await readLockHolder();
  if (holder.pid === process.pid) await rm(LOCK_FILE, { force: true });
}

/** The sandbox image, written once next to the pause binary it holds. */
async function pauseImage(tools: NodeTools): Promise<string> {
  const archive = join(tools.dir, 'pause.oci.tar');
  if (existsSync(archive)) return archive;
  const rootfs = await mkdtemp(join(tools.dir, '.pause-rootfs-'));
  try {
    await copyFile(join(tools.dir, 'pause'), join(rootfs, 'pause'));
    await chmod(join(rootfs, 'pause'), 0o755);
    await writeOciArchive({
      name: PAUSE_IMAGE,
      layers: [rootfs],
      config: { entrypoint: ['/pause'], user: '65535:65535' },
      output: archive,
    });
  } finally {
    await rm(rootfs, { recursive: true, force: true });
  }
  return archive;
}

async function startKubeProxy(
  plane: ControlPlane,
  journal: HostJournal,
  tools: NodeTools,
  dir: string,
  nodeName: string,
): Promise<ManagedProcess> {
  const kubeconfig = join(dir, 'kube-proxy.kubeconfig');
  // The bootstrap ClusterRoleBinding system:node-proxier grants this user what kube-proxy needs.
  await plane.writeClientKubeconfig(kubeconfig, 'system:kube-proxy');
  const [healthz, metrics] = [await freeLoopbackPort(), await freeLoopbackPort()];
  await journal.record({ kind: 'firewall-chains' });
  const proxy = await ManagedProcess.start({
    name: 'kube-proxy',
    command: join(tools.dir, 'kube-proxy'),
    args: [
      `--kubeconfig=${kubeconfig}`,
      '--proxy-mode=iptables',
      // One kube-proxy serves every node: they share this host's network namespace.
      `--hostname-override=${nodeName}`,
      `--cluster-cidr=${CLUSTER_CIDR}`,
      '--bind-address=127.0.0.1',
      `--healthz-bind-address=127.0.0.1:${healthz}`,
      `--metrics-bind-address=127.0.0.1:${metrics}`,
      // 0: leave the host's conntrack settings alone.
      '--conntrack-max-per-core=0',
      '--conntrack-tcp-timeout-established=0',
      '--conntrack-tcp-timeout-close-wait=0',
      // NodePorts on the nodes' addresses only; 127.0.0.1 would need route_localnet.
      '--nodeport-addresses=10.213.0.0/24',
      '--v=1',
    ],
    logFile: join(dir, 'logs', 'kube-proxy.log'),
    cwd: dir,
  });
  await waitFor(
    async () => {
      if (!proxy.isRunning)
        throw new Error(
          `kube-proxy ended with ${proxy.describeExit()}: ${await proxy.logTail(10)}`,
        );
      const response = await fetch(`http://127.0.0.1:${healthz}/healthz`).catch(() => undefined);
      return response?.ok;
    },
    {
      description: `kube-proxy at 127.0.0.1:${healthz}/healthz`,
      timeoutMs: 60_000,
      intervalMs: 200,
    },
  );
  return proxy;
}

/** Logs of this many ended clusters are kept; older folders are deleted. */
const KEPT_CLUSTER_FOLDERS = 20;

async function newClusterDir(): Promise<string> {
  const root = process.env.COMPOFA_TEST_ARTIFACTS ?? join(repoRoot, '.test-artifacts');
  await mkdir(root, { recursive: true });
  // Names sort by start time. A folder whose cluster still runs (or was killed) keeps its nodes/
  // folder until the lock's holder, or the next start, removes it: those are left alone.
  const ended = (await readdir(root))
    .filter((name) => name.startsWith('local-cluster-'))
    .sort()
    .reverse()
    .filter((name) => !existsSync(join(root, name, 'nodes')));
  for (const name of ended.slice(KEPT_CLUSTER_FOLDERS))
    await rm(join(root, name), { recursive: true, force: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  return mkdtemp(join(root, `local-cluster-${stamp}-`));
}
