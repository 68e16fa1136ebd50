/**
 * A real Kubernetes node on this host: a kubelet with its own containerd, bridge CNI network and
 * parent cgroup, both in a private mount namespace of their own, so that several nodes share one
 * host (see ../shared/reference/real-nodes/REPORT.md for why each piece is needed).
 *
 * A node emulates a device class: Node Feature Discovery-style labels, and a CPU quota on the
 * cgroup that holds all its pods, with allocatable CPU and memory matching it so that the
 * scheduler sees the device's size. Every host change goes through a {@link HostJournal}.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { CoreV1Api } from '@kubernetes/client-node';

import type { ControlPlane } from './control-plane.js';
import type { HostJournal } from './host-changes.js';
import { ManagedProcess } from './processes.js';
import { GiveUpWaiting, waitFor } from './wait.js';

const run = promisify(execFile);

/** A device class: what a node is called, labeled and given. */
export interface DeviceClassSpec {
  readonly name: string;
  readonly labels?: Readonly<Record<string, string>>;
  /** CPU quota of the node's pods, in CPUs (0.5 = half a core); also its allocatable CPU. */
  readonly cpus: number;
  /** Allocatable memory in MiB. */
  readonly memoryMiB: number;
}

/** Where the node's tools are: the cached kubelet build and Debian's containerd. */
export interface NodeTools {
  /** Folder with kubelet, kube-proxy and pause (scripts/build-node-tools.sh prints it). */
  readonly dir: string;
  readonly containerd: string;
  readonly ctr: string;
}

/** Addresses of node `index` (1-based) on this host. */
export function nodeAddresses(index: number): {
  nodeIp: string;
  podCidr: string;
  bridge: string;
} {
  if (!Number.isInteger(index) || index < 1 || index > 99)
    throw new Error(`node index must be 1-99, got ${index}`);
  return {
    nodeIp: `10.213.0.${index}`,
    podCidr: `10.244.${index}.0/24`,
    bridge: `compofa-br${index}`,
  };
}

/** Holds each node's containerd socket (short paths). */
const SOCKET_ROOT = '/run/compofa-nodes';

/** The image the pod sandboxes run; built from Kubernetes' pause.c. */
export const PAUSE_IMAGE = 'localhost/compofa/pause:v1.36.3';

/** Host paths the kubelet and containerd hard-code; each node gets its own through bind mounts. */
const PER_NODE_HOST_PATHS = [
  '/var/lib/kubelet',
  '/var/log/containers',
  '/run/containerd',
  '/var/lib/cni',
] as const;

/** Sysctls the kubelet rewrites when it starts (and bridge CNI's ip_forward). */
export const SYSCTLS_CHANGED_BY_NODES = [
  'vm/overcommit_memory',
  'vm/panic_on_oom',
  'kernel/panic',
  'kernel/panic_on_oops',
  'kernel/keys/root_maxkeys',
  'kernel/keys/root_maxbytes',
  'net/ipv4/ip_forward',
  'net/ipv4/conf/all/route_localnet',
] as const;

/** A running node; stop it with {@link stop}, then undo the journal. */
export class KubeletNode {
  private constructor(
    readonly spec: DeviceClassSpec,
    readonly index: number,
    readonly dir: string,
    private readonly containerd: ManagedProcess,
    private readonly kubelet: ManagedProcess,
    private readonly tools: NodeTools,
  ) {}

  get name(): string {
    return this.spec.name;
  }

  get nodeIp(): string {
    return nodeAddresses(this.index).nodeIp;
  }

  /** The parent cgroup of the node's pods (in every v1 hierarchy). */
  get cgroup(): string {
    return cgroupName(this.spec.name);
  }

  get containerdSocket(): string {
    return join(SOCKET_ROOT, this.spec.name, 'containerd.sock');
  }

  get logFiles(): { containerd: string; kubelet: string } {
    return { containerd: this.containerd.logFile, kubelet: this.kubelet.logFile };
  }

  /**
   * Starts the node: cgroup, address, mount namespace, containerd (with `images` imported), then
   * the kubelet; resolves when the Node is Ready. Fails naming the step and quoting its log.
   */
  static async start(options: {
    readonly spec: DeviceClassSpec;
    readonly index: number;
    readonly plane: ControlPlane;
    readonly journal: HostJournal;
    readonly tools: NodeTools;
    /** OCI archives to import into the node's containerd (the pause image among them). */
    readonly images: readonly string[];
    /** Where this node's folder goes. */
    readonly parentDir: string;
    readonly logDir: string;
    readonly timeoutMs?: number;
  }): Promise<KubeletNode> {
    const { spec, index, plane, journal, tools } = options;
    const { nodeIp, podCidr, bridge } = nodeAddresses(index);
    const dir = join(options.parentDir, spec.name);
    const hostDirs = Object.fromEntries(
      PER_NODE_HOST_PATHS.map((path) => [
        path,
        join(dir, 'host', path.slice(1).replace(/\//g, '-')),
      ]),
    );
    for (const sub of ['containerd/root', 'containerd/state', 'cni', 'cni-ipam', 'pki'])
      await mkdir(join(dir, sub), { recursive: true, mode: 0o700 });
    for (const path of Object.values(hostDirs)) await mkdir(path, { recursive: true });
    await mkdir(join(dir, 'pod-logs'), { recursive: true });
    await mkdir(join(dir, 'ns'), { recursive: true });

    // A unix socket's path has at most 104 bytes; the artifacts folder can be deeper than that.
    const socketDir = join(SOCKET_ROOT, spec.name);
    await journal.ensureDirectory(socketDir, true);
    const socket = join(socketDir, 'containerd.sock');
    await writeFile(join(dir, 'containerd.toml'), containerdConfig(dir, socket));
    await writeFile(
      join(dir, 'cni', '10-compofa.conflist'),
      JSON.stringify(cniConfig(spec.name, bridge, podCidr, join(dir, 'cni-ipam')), null, 1),
    );
    await writeFile(
      join(dir, 'kubelet-config.yaml'),
      kubeletConfig({ spec, dir, socket, nodeIp, index, caFile: join(plane.pkiDir, 'ca.crt') }),
    );
    const kubeconfig = join(dir, 'kubeconfig');
    await plane.writeClientKubeconfig(kubeconfig, `system:node:${spec.name}`, ['system:nodes']);

    // Host changes, each journaled first.
    await journal.saveSysctls(
      SYSCTLS_CHANGED_BY_NODES.filter(
        (key) => !journal.recorded.some((change) => change.kind === 'sysctl' && change.key === key),
      ),
    );
    await journal.createCgroup(cgroupName(spec.name), spec.cpus);
    await journal.addLoopbackAddress(nodeIp);
    await journal.record({ kind: 'link', name: bridge });
    // Shims outlive containerd; their command line names the node's socket.
    await journal.record({ kind: 'processes', marker: socket });
    for (const path of PER_NODE_HOST_PATHS) await journal.ensureDirectory(path);
    const namespace = await createMountNamespace(dir, journal, hostDirs);

    const inNamespace = (command: string, args: readonly string[]): [string, string[]] => [
      'nsenter',
      [`--mount=${namespace}`, '--', command, ...args],
    ];
    const deadline = Date.now() + (options.timeoutMs ?? 120_000);
    const launch = (name: string, [command, args]: [string, string[]]): Promise<ManagedProcess> =>
      ManagedProcess.start({
        name: `${name} of node ${spec.name}`,
        command,
        args,
        logFile: join(options.logDir, `${name}-${spec.name}.log`),
        cwd: dir,
      });

    const containerd = await launch(
      'containerd',
      inNamespace(tools.containerd, ['--config', join(dir, 'containerd.toml')]),
    );
    let kubelet: ManagedProcess | undefined;
    try {
      await waitForStep(containerd, `containerd socket ${socket}`, deadline, () =>
        existsSync(socket),
      );
      for (const archive of options.images)
        await step(`importing ${archive} into node ${spec.name}'s containerd`, () =>
          run(tools.ctr, [
            '--address',
            socket,
            '--namespace',
            'k8s.io',
            'images',
            'import',
            archive,
          ]),
        );
      kubelet = await launch(
        'kubelet',
        inNamespace(join(tools.dir, 'kubelet'), [
          `--config=${join(dir, 'kubelet-config.yaml')}`,
          `--kubeconfig=${kubeconfig}`,
          // The default /var/lib/kubelet, which is this node's own folder in its mount namespace
          // (and short enough for the unix sockets the kubelet makes there).
          `--cert-dir=${join(dir, 'pki')}`,
          `--hostname-override=${spec.name}`,
          `--node-ip=${nodeIp}`,
          `--node-labels=${Object.entries(spec.labels ?? {})
            .map(([key, value]) => `${key}=${value}`)
            .join(',')}`,
          '--v=1',
        ]),
      );
      const healthz = `http://127.0.0.1:${healthzPort(index)}/healthz`;
      await waitForStep(kubelet, `kubelet at ${healthz}`, deadline, async () =>
        fetch(healthz, { signal: AbortSignal.timeout(1_000) }).then((response) => response.ok),
      );
      // The kubelet rewrote a few kernel settings as it started; this host keeps its own.
      await journal.restoreSysctls();
      const core = plane.kubeConfig().makeApiClient(CoreV1Api);
      await waitForStep(kubelet, `Node ${spec.name} to be Ready`, deadline, async () => {
        const node = await core.readNode({ name: spec.name });
        return node.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
      });
    } catch (error) {
      await kubelet?.stop();
      await containerd.stop();
      throw error;
    }
    return new KubeletNode(spec, index, dir, containerd, kubelet, tools);
  }

  /** Stops the kubelet, then containerd. Containers and shims go with the journal's undo. */
  async stop(): Promise<void> {
    await this.kubelet.stop();
    await this.containerd.stop();
  }

  /** Imports OCI archives into this node's containerd (namespace k8s.io), one after the other. */
  async importImages(archives: readonly string[]): Promise<void> {
    for (const archive of archives)
      await this.ctr(['images', 'import', archive]).catch((error: unknown) => {
        throw new Error(
          `importing ${archive} into node ${this.name}'s containerd failed: ${error instanceof Error ? error.message : String(error)}`,
        );
      });
  }

  /** Runs ctr against this node's containerd (namespace k8s.io). */
  async ctr(args: readonly string[]): Promise<string> {
    const { stdout } = await run(this.tools.ctr, [
      '--address',
      this.containerdSocket,
      '--namespace',
      'k8s.io',
      ...args,
    ]);
    return stdout;
  }
}

export function cgroupName(node: string): string {
  return `compofa-${node}`;
}

function healthzPort(index: number): number {
  return 20_300 + index;
}

/** Runs `action`, and on failure says which step failed. */
async function step<T>(what: string, action: () => Promise<T>): Promise<T> {
  try {
    return await action();
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr?.trim();
    throw new Error(
      `${what} failed: ${stderr || (error instanceof Error ? error.message : String(error))}`,
    );
  }
}

/** Waits for `probe` while `process` runs; the error quotes the process's log. */
async function waitForStep(
  process: ManagedProcess,
  what: string,
  deadline: number,
  probe: () => Promise<boolean | undefined> | boolean,
): Promise<void> {
  try {
    await waitFor(
      async () => {
        if (!process.isRunning)
          throw new GiveUpWaiting(`${process.name} ended with ${process.describeExit()}`);
        return probe();
      },
      { description: what, timeoutMs: Math.max(deadline - Date.now(), 1_000), intervalMs: 200 },
    );
  } catch (error) {
    throw new Error(
      `${error instanceof Error ? error.message : String(error)}\nlast lines of ${process.logFile}:\n${await process.logTail(20)}`,
    );
  }
}

/**
 * A persistent private mount namespace for one node (bind-mounted on `<dir>/ns/mnt`), in which
 * the hard-coded host paths are the node's own folders. The kubelet's and containerd's mounts
 * (volumes, container root filesystems) stay inside it and vanish with it.
 */
async function createMountNamespace(
  dir: string,
  journal: HostJournal,
  hostDirs: Readonly<Record<string, string>>,
): Promise<string> {
  const holder = join(dir, 'ns');
  const file = join(holder, 'mnt');
  await journal.record({ kind: 'mount', path: holder });
  await step('making the mount namespace holder', async () => {
    await run('mount', ['--bind', holder, holder]);
    await run('mount', ['--make-private', holder]);
  });
  await writeFile(file, '');
  await journal.record({ kind: 'mount', path: file });
  const binds = Object.entries(hostDirs)
    .map(([target, source]) => `mount --bind '${source}' '${target}'`)
    .join(' && ');
  await step(`creating the mount namespace of ${dir}`, () =>
    run('unshare', [`--mount=${file}`, '--propagation', 'private', 'sh', '-c', binds]),
  );
  return file;
}

function containerdConfig(dir: string, socket: string): string {
  return `version = 2
root = "${join(dir, 'containerd', 'root')}"
state = "${join(dir, 'containerd', 'state')}"
[grpc]
  address = "${socket}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${PAUSE_IMAGE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  netns_mounts_under_state_dir = true
  enable_cdi = false
  # Root here lacks CAP_SYS_RESOURCE: runc cannot set the negative oom_score_adj that the kubelet
  # asks for (-998 for pause), so containerd clamps it to its own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "${join(dir, 'cni')}"
[plugins."io.containerd.internal.v1.opt"]
  path = "${join(dir, 'containerd', 'opt')}"
`;
}

function cniConfig(node: string, bridge: string, subnet: string, ipamDir: string): object {
  return {
    cniVersion: '0.4.0',
    name: `compofa-${node}`,
    plugins: [
      {
        type: 'bridge',
        bridge,
        isGateway: true,
        ipMasq: false,
        hairpinMode: true,
        ipam: {
          type: 'host-local',
          dataDir: ipamDir,
          ranges: [[{ subnet }]],
          routes: [{ dst: '0.0.0.0/0' }],
        },
      },
      { type: 'portmap', capabilities: { portMappings: true } },
    ],
  };
}

const EVICTION_MEMORY_MIB = 100;

function kubeletConfig(options: {
  spec: DeviceClassSpec;
  dir: string;
  socket: string;
  nodeIp: string;
  index: number;
  caFile: string;
}): string {
  const { spec, dir } = options;
  const hostCpus = cpus().length;
  const hostMemoryMiB = Math.floor(totalmem() / 2 ** 20);
  if (spec.cpus <= 0 || spec.cpus > hostCpus)
    throw new Error(
      `device class ${spec.name}: cpus must be in (0, ${hostCpus}] on this host, got ${spec.cpus}`,
    );
  if (spec.memoryMiB <= 0 || spec.memoryMiB > hostMemoryMiB - EVICTION_MEMORY_MIB)
    throw new Error(
      `device class ${spec.name}: memoryMiB must be in (0, ${hostMemoryMiB - EVICTION_MEMORY_MIB}], got ${spec.memoryMiB}`,
    );
  // allocatable = capacity - systemReserved - eviction threshold: reserve what the device lacks.
  const reservedMilliCpu = Math.round((hostCpus - spec.cpus) * 1000);
  // In KiB: the kubelet's capacity is MemTotal, which need not be a whole number of MiB.
  const reservedMemoryKiB = totalmem() / 1024 - (spec.memoryMiB + EVICTION_MEMORY_MIB) * 1024;
  return `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# These hosts run cgroup v1, which kubelet 1.36 refuses unless told.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /${cgroupName(spec.name)}
containerRuntimeEndpoint: unix://${options.socket}
address: ${options.nodeIp}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: ${healthzPort(options.index)}
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: ${options.caFile}}
authorization: {mode: Webhook}
clusterDomain: cluster.local
podLogsDir: ${join(dir, 'pod-logs')}
failSwapOn: false
serializeImagePulls: false
systemReserved: {cpu: ${reservedMilliCpu}m, memory: ${reservedMemoryKiB}Ki}
evictionHard: {memory.available: ${EVICTION_MEMORY_MIB}Mi, nodefs.available: 1%, imagefs.available: 1%}
# The nodes share one disk: image garbage collection of one node must not be driven by the others.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
`;
}
