/**
 * A real Kubernetes control plane for tests and the local demo: etcd, kube-apiserver,
 * kube-controller-manager and kube-scheduler as child processes on free loopback ports, with their
 * own certificates and a kubeconfig that kubectl and @kubernetes/client-node accept.
 *
 * Without {@link ControlPlaneOptions.nodeNetwork} there are no kubelets: Nodes are API objects
 * made by {@link ControlPlane.createNode}, pods get scheduled and bound to them but nothing runs
 * them. With it, the API server is set up for real kubelets (see local-cluster.ts): it listens on
 * an address that pods reach, authorizes kubelets as nodes, and the controllers that real nodes
 * need run too.
 */
import { execFile } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { CoreV1Api, KubeConfig, type V1Node } from '@kubernetes/client-node';
import yaml from 'js-yaml';

import { resolveControlPlaneBinaries, type ControlPlaneBinaries } from './binaries.js';
import {
  createCertificates,
  issueClientCertificate,
  type ControlPlaneCertificates,
} from './certificates.js';
import { freeLoopbackPort, httpGet } from './network.js';
import { isProcessAlive } from './liveness.js';
import { ManagedProcess, onAbnormalExit } from './processes.js';
import { GiveUpWaiting, waitFor } from './wait.js';

/** The controllers the controller-manager runs unless told otherwise. */
export const DEFAULT_CONTROLLERS = [
  'deployment-controller',
  'replicaset-controller',
  'job-controller',
  'garbage-collector-controller',
  'namespace-controller',
  'serviceaccount-controller',
  // Binds the claims of pods' volumes, without which the scheduler keeps them Pending.
  'persistentvolume-binder-controller',
] as const;

/** What real nodes need besides: Ready taints lifted, Services' endpoints, the CA in pods. */
export const NODE_CONTROLLERS = [
  'node-lifecycle-controller',
  'endpoints-controller',
  'endpointslice-controller',
  'root-ca-certificate-publisher-controller',
  'ttl-after-finished-controller',
  'pod-garbage-collector-controller',
  'taint-eviction-controller',
] as const;

/** The Services' virtual IP range; the `kubernetes` Service gets its first address. */
export const SERVICE_CIDR = '10.96.0.0/16';
const KUBERNETES_SERVICE_IP = '10.96.0.1';

/** Options of {@link ControlPlane.start}. */
export interface ControlPlaneOptions {
  /** Folder for this control plane's logs, certificates and data; default: a new folder under .test-artifacts/. */
  readonly dir?: string;
  readonly controllers?: readonly string[];
  /** Default 60 s: a cold start takes 5-10 s on 2 cores. */
  readonly startTimeoutMs?: number;
  readonly binaries?: ControlPlaneBinaries;
  /**
   * For a cluster with kubelets: the address (on `lo`) where the API server listens, which pods
   * reach through the `kubernetes` Service and kubelets through their kubeconfig.
   */
  readonly nodeNetwork?: { readonly apiserverAddress: string };
}

/** Labels, capacity and taints of a fake Node; capacity doubles as allocatable. */
export interface NodeSpec {
  readonly name: string;
  readonly labels?: Readonly<Record<string, string>>;
  /** Quantities such as `{ cpu: '8', memory: '32Gi', pods: '110', 'nvidia.com/gpu': '1' }`; cpu, memory and pods have defaults. */
  readonly capacity?: Readonly<Record<string, string>>;
  readonly taints?: readonly {
    key: string;
    value?: string;
    effect: 'NoSchedule' | 'PreferNoSchedule' | 'NoExecute';
  }[];
}

/** The loopback ports a control plane listens on. */
// A type alias rather than an interface, so that Object.values() sees numbers.
export type ControlPlanePorts = {
  readonly etcdClient: number;
  readonly etcdPeer: number;
  readonly apiserver: number;
  readonly controllerManager: number;
  readonly scheduler: number;
};

type Component = 'etcd' | 'kube-apiserver' | 'kube-controller-manager' | 'kube-scheduler';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

/** A running control plane; {@link stop} it in an `after` hook. */
export class ControlPlane {
  private readonly processes = new Map<Component, ManagedProcess>();
  private stopped = false;
  /** Deletes the data and keys if the process dies without stop(). */
  private readonly forgetSecrets = onAbnormalExit(() => {
    for (const path of this.secretPaths()) rmSync(path, { recursive: true, force: true });
  });

  private constructor(
    /** Holds `logs/`, `pki/`, `etcd/` and `kubeconfig`. */
    readonly dir: string,
    readonly ports: ControlPlanePorts,
    private readonly binaries: ControlPlaneBinaries,
    private readonly certificates: ControlPlaneCertificates,
    private readonly nodeNetwork: ControlPlaneOptions['nodeNetwork'],
  ) {}

  /** `https://127.0.0.1:<port>`, or the node network's address when there is one. */
  get server(): string {
    return `https://${this.address}:${this.ports.apiserver}`;
  }

  /** Where the API server listens. */
  get address(): string {
    return this.nodeNetwork?.apiserverAddress ?? '127.0.0.1';
  }

  /** The certificate authority's files, to sign client certificates of kubelets and kube-proxy. */
  get pkiDir(): string {
    return join(this.dir, 'pki');
  }

  /** The CA certificate in PEM. */
  get caCertificate(): string {
    return this.certificates.pem.ca;
  }

  get kubeconfigPath(): string {
    return join(this.dir, 'kubeconfig');
  }

  get logDir(): string {
    return join(this.dir, 'logs');
  }

  /** Process ids of the running components. */
  get pids(): Readonly<Record<string, number>> {
    return Object.fromEntries([...this.processes].map(([name, p]) => [name, p.pid]));
  }

  /** The kubectl built with the control plane, if the binaries folder has one. */
  get kubectlPath(): string | undefined {
    return this.binaries.kubectl;
  }

  /** Where to look when something went wrong; append it to assertion messages. */
  get logHint(): string {
    return `control plane logs: ${this.logDir}`;
  }

  /**
   * Starts etcd, then kube-apiserver (waiting for /readyz), then the controller-manager and the
   * scheduler (waiting for /healthz). On any failure everything started is stopped and the error
   * quotes the failing component's log.
   */
  static async start(options: ControlPlaneOptions = {}): Promise<ControlPlane> {
    const binaries = options.binaries ?? (await resolveControlPlaneBinaries());
    // Free ports are found by binding and releasing them; another process can take one before a
    // component binds it. Then start again on new ports.
    for (let attempt = 1; ; attempt++) {
      try {
        return await ControlPlane.startOnce({ ...options, binaries });
      } catch (error) {
        if (attempt >= 3 || !/address already in use/.test(String(error))) throw error;
      }
    }
  }

  private static async startOnce(
    options: ControlPlaneOptions & { binaries: ControlPlaneBinaries },
  ): Promise<ControlPlane> {
    const started = Date.now();
    const binaries = options.binaries;
    const dir = options.dir ?? (await newArtifactsDir());
    await Promise.all(
      ['logs', 'pki', 'etcd'].map((sub) => mkdir(join(dir, sub), { recursive: true, mode: 0o700 })),
    );
    const [certificates, etcdClient, etcdPeer, apiserver, controllerManager, scheduler] =
      await Promise.all([
        createCertificates(
          join(dir, 'pki'),
          options.nodeNetwork
            ? {
                ips: [options.nodeNetwork.apiserverAddress, KUBERNETES_SERVICE_IP],
                dns: [
                  'kubernetes',
                  'kubernetes.default',
                  'kubernetes.default.svc',
                  'kubernetes.default.svc.cluster.local',
                ],
              }
            : {},
        ),
        freeLoopbackPort(),
        freeLoopbackPort(),
        freeLoopbackPort(),
        freeLoopbackPort(),
        freeLoopbackPort(),
      ]);
    const ports = { etcdClient, etcdPeer, apiserver, controllerManager, scheduler };
    if (new Set(Object.values(ports)).size !== 5)
      throw new Error(`port collision: ${JSON.stringify(ports)}`);
    const plane = new ControlPlane(dir, ports, binaries, certificates, options.nodeNetwork);
    const deadline = started + (options.startTimeoutMs ?? 60_000);
    try {
      await plane.startEtcd(deadline);
      await plane.startApiserver(deadline);
      await plane.writeKubeconfig();
      // allSettled: when one fails, the other must have finished starting before stop() runs.
      const started = await Promise.allSettled([
        plane.startController(
          'kube-controller-manager',
          binaries.kubeControllerManager,
          ports.controllerManager,
          [
            `--controllers=${(options.controllers ?? (options.nodeNetwork ? [...DEFAULT_CONTROLLERS, ...NODE_CONTROLLERS] : DEFAULT_CONTROLLERS)).join(',')}`,
            // Publishes the CA as ConfigMap kube-root-ca.crt, which every pod's token volume mounts.
            `--root-ca-file=${certificates.caCert}`,
          ],
          deadline,
        ),
        plane.startController(
          'kube-scheduler',
          binaries.kubeScheduler,
          ports.scheduler,
          [],
          deadline,
        ),
      ]);
      const failed = started.find((result) => result.status === 'rejected');
      if (failed) throw failed.reason;
      await writeFile(join(dir, 'pids.json'), JSON.stringify(plane.pids));
    } catch (error) {
      await plane.stop();
      throw error;
    }
    return plane;
  }

  /** A KubeConfig for @kubernetes/client-node, authenticated as a cluster admin. */
  kubeConfig(): KubeConfig {
    const config = new KubeConfig();
    config.loadFromFile(this.kubeconfigPath);
    return config;
  }

  /**
   * Runs kubectl against this control plane and resolves with its output; rejects with its
   * stderr on a non-zero exit. Needs kubectl in the binaries folder.
   */
  async kubectl(
    args: readonly string[],
    input?: string,
  ): Promise<{ stdout: string; stderr: string }> {
    const kubectl = this.binaries.kubectl;
    if (!kubectl) throw new Error('kubectl is not in the control-plane binaries folder');
    return new Promise((resolve, reject) => {
      const child = execFile(
        kubectl,
        ['--kubeconfig', this.kubeconfigPath, ...args],
        { maxBuffer: 16 << 20 },
        (error, stdout, stderr) => {
          if (error)
            reject(
              new Error(`kubectl ${args.join(' ')} failed: ${stderr.trim() || error.message}`),
            );
          else resolve({ stdout, stderr });
        },
      );
      child.stdin?.end(input);
    });
  }

  /**
   * Writes a kubeconfig for user `commonName` in `groups`, with a client certificate from this
   * control plane's CA: for a kubelet (`system:node:<name>` in `system:nodes`) or kube-proxy.
   */
  async writeClientKubeconfig(
    path: string,
    commonName: string,
    groups: readonly string[] = [],
  ): Promise<void> {
    const name = commonName.replace(/[^a-z0-9-]/gi, '-');
    const { cert, key } = await issueClientCertificate(this.pkiDir, name, commonName, groups);
    await writeKubeconfigFile(path, this.server, this.certificates.pem.ca, {
      'client-certificate': cert,
      'client-key': key,
    });
  }

  /**
   * Creates a Ready Node with the given labels and capacity that the scheduler will place pods
   * on. Without a kubelet, nobody updates it later, and pods bound to it stay Pending.
   */
  async createNode(spec: NodeSpec): Promise<V1Node> {
    const core = this.kubeConfig().makeApiClient(CoreV1Api);
    const capacity = { cpu: '4', memory: '16Gi', pods: '110', ...spec.capacity };
    await core.createNode({
      body: {
        metadata: {
          name: spec.name,
          labels: { 'kubernetes.io/hostname': spec.name, ...spec.labels },
        },
        spec: { taints: spec.taints?.map((taint) => ({ ...taint })) ?? [] },
      },
    });
    const now = new Date();
    const node = await core.readNode({ name: spec.name });
    node.status = {
      capacity,
      allocatable: capacity,
      conditions: [
        {
          type: 'Ready',
          status: 'True',
          reason: 'KubeletReady',
          message: 'fake node of the test control plane',
          lastHeartbeatTime: now,
          lastTransitionTime: now,
        },
      ],
      nodeInfo: {
        architecture: 'amd64',
        operatingSystem: 'linux',
        bootID: '',
        containerRuntimeVersion: 'none://0',
        kernelVersion: '',
        kubeProxyVersion: '',
        kubeletVersion: 'v1.36.3',
        machineID: '',
        osImage: 'compofa test node',
        systemUUID: '',
      },
    };
    return core.replaceNodeStatus({ name: spec.name, body: node });
  }

  /**
   * A KubeConfig that authenticates as ServiceAccount `namespace/name` (which must exist) with a
   * token from the TokenRequest API: for tests of what that account may and may not do.
   */
  async kubeConfigAs(namespace: string, name: string): Promise<KubeConfig> {
    const admin = this.kubeConfig();
    const request = await admin.makeApiClient(CoreV1Api).createNamespacedServiceAccountToken({
      name,
      namespace,
      body: { spec: { audiences: [], expirationSeconds: 3600 } },
    });
    const token = request.status?.token;
    const cluster = admin.getCurrentCluster();
    if (!token || !cluster) throw new Error(`no token for ServiceAccount ${namespace}/${name}`);
    const config = new KubeConfig();
    config.loadFromOptions({
      clusters: [cluster],
      users: [{ name, token }],
      contexts: [{ name, cluster: cluster.name, user: name }],
      currentContext: name,
    });
    return config;
  }

  /**
   * Creates PersistentVolumeClaim `name` in `namespace` with a hostPath PersistentVolume bound to
   * it, and waits until the claim is Bound (what a storage provisioner would do), so that pods
   * using it can be scheduled.
   */
  async createVolumeClaim(namespace: string, name: string): Promise<void> {
    const core = this.kubeConfig().makeApiClient(CoreV1Api);
    const volume = `${namespace}-${name}`;
    const accessModes = ['ReadWriteMany'];
    await core.createPersistentVolume({
      body: {
        metadata: { name: volume },
        spec: {
          capacity: { storage: '1Gi' },
          accessModes,
          storageClassName: '',
          hostPath: { path: `/tmp/${volume}` },
          claimRef: { namespace, name },
        },
      },
    });
    await core.createNamespacedPersistentVolumeClaim({
      namespace,
      body: {
        metadata: { name },
        spec: {
          accessModes,
          storageClassName: '',
          volumeName: volume,
          resources: { requests: { storage: '1Gi' } },
        },
      },
    });
    await waitFor(
      async () =>
        (await core.readNamespacedPersistentVolumeClaim({ namespace, name })).status?.phase ===
        'Bound',
      {
        description: `claim ${namespace}/${name} to be Bound`,
        timeoutMs: 30_000,
        hint: this.logHint,
      },
    );
  }

  /**
   * Creates a namespace and waits until the serviceaccount controller made its `default`
   * ServiceAccount, without which the API server rejects pods.
   */
  async createNamespace(
    name: string,
    labels: Readonly<Record<string, string>> = {},
  ): Promise<void> {
    const core = this.kubeConfig().makeApiClient(CoreV1Api);
    await core.createNamespace({ body: { metadata: { name, labels: { ...labels } } } });
    await waitFor(
      () =>
        core.readNamespacedServiceAccount({ name: 'default', namespace: name }).then(() => true),
      {
        description: `the default ServiceAccount of namespace ${name}`,
        timeoutMs: 15_000,
        hint: this.logHint,
      },
    );
  }

  /**
   * Does the one thing a kubelet must do for deletion to finish: pods bound to a node are only
   * marked for deletion (graceful delete) until their kubelet confirms. Deletes, with grace
   * period 0, every pod in `namespace` that is marked; resolves with their names.
   */
  async confirmPodDeletions(namespace: string): Promise<string[]> {
    const core = this.kubeConfig().makeApiClient(CoreV1Api);
    const pods = await core.listNamespacedPod({ namespace });
    const terminating = pods.items.filter((pod) => pod.metadata?.deletionTimestamp);
    await Promise.all(
      terminating.map((pod) =>
        core
          .deleteNamespacedPod({ name: pod.metadata?.name ?? '', namespace, gracePeriodSeconds: 0 })
          .catch(ignoreNotFound),
      ),
    );
    return terminating.map((pod) => pod.metadata?.name ?? '');
  }

  /**
   * Stops every component (scheduler and controller-manager first, etcd last), SIGKILLing any
   * that ignores SIGTERM for 5 s, and removes etcd's data, the private keys and the kubeconfig
   * (which embeds the admin key). Logs stay in
   * {@link logDir}. Safe to call twice.
   */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    const order: Component[] = [
      'kube-scheduler',
      'kube-controller-manager',
      'kube-apiserver',
      'etcd',
    ];
    for (const name of order) await this.processes.get(name)?.stop();
    await Promise.all(this.secretPaths().map((path) => rm(path, { recursive: true, force: true })));
    this.forgetSecrets();
  }

  /**
   * Stops the scheduler and the controller-manager, leaving the API server and etcd up: then no
   * workload controller replaces a deleted pod (what a cluster's teardown needs). {@link stop}
   * still stops the rest.
   */
  async stopControllers(): Promise<void> {
    for (const name of ['kube-scheduler', 'kube-controller-manager'] as const)
      await this.processes.get(name)?.stop();
  }

  /** etcd's data, the private keys, and the kubeconfig that embeds the admin key. */
  private secretPaths(): string[] {
    return [join(this.dir, 'etcd'), join(this.dir, 'pki'), this.kubeconfigPath];
  }

  private logFile(component: Component): string {
    return join(this.logDir, `${component}.log`);
  }

  private async launch(
    component: Component,
    command: string,
    args: readonly string[],
  ): Promise<ManagedProcess> {
    const process = await ManagedProcess.start({
      name: component,
      command,
      args,
      logFile: this.logFile(component),
      cwd: this.dir,
    });
    this.processes.set(component, process);
    return process;
  }

  /** Waits until `probe` succeeds, failing fast with the log's tail if the process exits. */
  private async awaitHealthy(
    process: ManagedProcess,
    probe: () => Promise<boolean>,
    what: string,
    deadline: number,
  ): Promise<void> {
    try {
      await waitFor(
        async () => {
          if (!process.isRunning) throw new ExitedError(process.describeExit());
          return probe();
        },
        { description: what, timeoutMs: Math.max(deadline - Date.now(), 1_000), intervalMs: 100 },
      );
    } catch (error) {
      const exited = !process.isRunning
        ? ` ${process.name} ended with ${process.describeExit()}.`
        : '';
      throw new Error(
        `${process.name} did not become healthy: ${error instanceof Error ? error.message : String(error)}.${exited}\n` +
          `last lines of ${process.logFile}:\n${await process.logTail(25)}`,
      );
    }
  }

  private async startEtcd(deadline: number): Promise<void> {
    const client = `http://127.0.0.1:${this.ports.etcdClient}`;
    const peer = `http://127.0.0.1:${this.ports.etcdPeer}`;
    const etcd = await this.launch('etcd', this.binaries.etcd, [
      '--name=compofa-test',
      `--data-dir=${join(this.dir, 'etcd')}`,
      `--listen-client-urls=${client}`,
      `--advertise-client-urls=${client}`,
      `--listen-peer-urls=${peer}`,
      `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=compofa-test=${peer}`,
      // A throwaway test store: durability is not worth the fsync latency.
      '--unsafe-no-fsync',
      '--log-level=warn',
    ]);
    await this.awaitHealthy(
      etcd,
      async () => {
        const response = await fetch(`${client}/health`, { signal: AbortSignal.timeout(2_000) });
        return response.ok && ((await response.json()) as { health?: string }).health === 'true';
      },
      `etcd at ${client}/health`,
      deadline,
    );
  }

  /** The API server's flags that differ with and without kubelets. */
  private async nodeFlags(): Promise<string[]> {
    if (!this.nodeNetwork)
      return [
        '--authorization-mode=RBAC',
        // There are no kubelets: the node-lifecycle controller that would lift the not-ready
        // taints this plugin puts on every new Node is not running, so pods would never schedule.
        '--disable-admission-plugins=TaintNodesByCondition',
        // Nothing would reach the `kubernetes` Service's endpoint: 127.0.0.1 is no pod's address.
        '--endpoint-reconciler-type=none',
      ];
    // `kubectl logs/exec` go through the API server to the kubelets, as this client.
    const kubeletClient = await issueClientCertificate(
      this.pkiDir,
      'apiserver-kubelet-client',
      'kube-apiserver-kubelet-client',
      ['system:masters'],
    );
    return [
      '--authorization-mode=Node,RBAC',
      '--enable-admission-plugins=NodeRestriction',
      `--kubelet-client-certificate=${kubeletClient.cert}`,
      `--kubelet-client-key=${kubeletClient.key}`,
      // A node's name does not resolve here; its InternalIP (on lo) does.
      '--kubelet-preferred-address-types=InternalIP',
    ];
  }

  private async startApiserver(deadline: number): Promise<void> {
    const pki = this.certificates;
    const apiserver = await this.launch('kube-apiserver', this.binaries.kubeApiserver, [
      `--etcd-servers=http://127.0.0.1:${this.ports.etcdClient}`,
      `--bind-address=${this.address}`,
      `--advertise-address=${this.address}`,
      `--secure-port=${this.ports.apiserver}`,
      `--cert-dir=${join(this.dir, 'pki')}`,
      `--tls-cert-file=${pki.servingCert}`,
      `--tls-private-key-file=${pki.servingKey}`,
      `--client-ca-file=${pki.caCert}`,
      ...(await this.nodeFlags()),
      '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
      `--service-account-key-file=${pki.serviceAccountPublicKey}`,
      `--service-account-signing-key-file=${pki.serviceAccountKey}`,
      `--service-cluster-ip-range=${SERVICE_CIDR}`,
      '--allow-privileged=true',
      '--profiling=false',
    ]);
    const tls = { ca: pki.pem.ca, cert: pki.pem.adminCert, key: pki.pem.adminKey };
    await this.awaitHealthy(
      apiserver,
      async () => (await httpGet(`${this.server}/readyz`, tls)).status === 200,
      `kube-apiserver at ${this.server}/readyz`,
      deadline,
    );
  }

  private async startController(
    component: 'kube-controller-manager' | 'kube-scheduler',
    binary: string,
    port: number,
    extraArgs: readonly string[],
    deadline: number,
  ): Promise<void> {
    const certDir = join(this.dir, 'pki', component);
    await mkdir(certDir, { recursive: true });
    const process = await this.launch(component, binary, [
      `--kubeconfig=${this.kubeconfigPath}`,
      `--authentication-kubeconfig=${this.kubeconfigPath}`,
      `--authorization-kubeconfig=${this.kubeconfigPath}`,
      '--leader-elect=false',
      '--bind-address=127.0.0.1',
      `--secure-port=${port}`,
      `--cert-dir=${certDir}`,
      ...extraArgs,
    ]);
    await this.awaitHealthy(
      process,
      async () =>
        (await httpGet(`https://127.0.0.1:${port}/healthz`, { rejectUnauthorized: false }))
          .status === 200,
      `${component} at https://127.0.0.1:${port}/healthz`,
      deadline,
    );
  }

  private async writeKubeconfig(): Promise<void> {
    const encode = (pem: string): string => Buffer.from(pem).toString('base64');
    await writeKubeconfigFile(this.kubeconfigPath, this.server, this.certificates.pem.ca, {
      'client-certificate-data': encode(this.certificates.pem.adminCert),
      'client-key-data': encode(this.certificates.pem.adminKey),
    });
  }
}

/** Writes a kubeconfig with one cluster, user and context (atomically, readable by root only). */
async function writeKubeconfigFile(
  path: string,
  server: string,
  caPem: string,
  user: Readonly<Record<string, string>>,
): Promise<void> {
  const kubeconfig = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      {
        name: 'compofa-test',
        cluster: { server, 'certificate-authority-data': Buffer.from(caPem).toString('base64') },
      },
    ],
    users: [{ name: 'compofa-test-admin', user }],
    contexts: [
      {
        name: 'compofa-test',
        context: { cluster: 'compofa-test', user: 'compofa-test-admin', namespace: 'default' },
      },
    ],
    'current-context': 'compofa-test',
  };
  const temporary = `${path}.tmp`;
  await writeFile(temporary, yaml.dump(kubeconfig), { mode: 0o600 });
  await rename(temporary, path);
}

function ignoreNotFound(error: unknown): void {
  if ((error as { code?: number }).code !== 404) throw error;
}

class ExitedError extends GiveUpWaiting {
  constructor(how: string) {
    super(`the process ended (${how})`);
  }
}

async function newArtifactsDir(): Promise<string> {
  const root = process.env.COMPOFA_TEST_ARTIFACTS ?? join(repoRoot, '.test-artifacts');
  await mkdir(root, { recursive: true });
  await pruneArtifacts(root);
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  return mkdtemp(join(root, `control-plane-${stamp}-`));
}

/** Logs of this many ended control planes are kept; older folders are deleted. */
const KEPT_ARTIFACTS = 20;

/**
 * Deletes the data and keys of control planes whose processes are all gone (a test process that
 * was SIGKILLed could not), and all but the newest {@link KEPT_ARTIFACTS} such folders. Folders
 * younger than two minutes without a pids.json may still be starting and are left alone.
 */
async function pruneArtifacts(root: string): Promise<void> {
  const ended: { path: string; time: number }[] = [];
  for (const entry of await readdir(root)) {
    if (!entry.startsWith('control-plane-')) continue;
    const path = join(root, entry);
    const pids = await readFile(join(path, 'pids.json'), 'utf8').then(
      (text) => Object.values(JSON.parse(text) as Record<string, number>),
      () => undefined,
    );
    const time = (await stat(path)).mtimeMs;
    if (pids ? pids.some(isProcessAlive) : Date.now() - time < 120_000) continue;
    ended.push({ path, time });
    await Promise.all(
      ['etcd', 'pki', 'kubeconfig'].map((name) =>
        rm(join(path, name), { recursive: true, force: true }),
      ),
    );
  }
  ended.sort((a, b) => b.time - a.time);
  await Promise.all(
    ended.slice(KEPT_ARTIFACTS).map(({ path }) => rm(path, { recursive: true, force: true })),
  );
}
