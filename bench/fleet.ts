/**
 * Benchmark: the operator at fleet scale. N DeploymentTargets (1,000 by default) spread over
 * device classes (10) of one supernet whose accuracy and latency tables are ready: the time from
 * applying them until every one has a selected subnet and a serving Deployment, and the operator's
 * peak resident memory. The issue's goal: under 60 s and under 200 MB.
 *
 *   npm run bench:fleet -- [--targets 1000] [--devices 10] [--runs 3] [--json out.json]
 *
 * Each run, on a fresh control plane (test/harness):
 * - kube-controller-manager runs only the Job, ServiceAccount, volume-binder and service-CIDR
 *   controllers: no Deployment or ReplicaSet controller, so the 1,000 serving Deployments stay
 *   objects and the figures are the operator's, not the controller-manager's creating ReplicaSets
 *   and pods; a second service range, as the harness's /24 has room for only 254 Services;
 * - one Node per device class, labelled as Node Feature Discovery would
 *   (`feature.node.kubernetes.io/cpu-model.family=<n>`), the CRDs, an artifacts claim;
 * - the operator runs as a child process from its real entry point (operator/main.ts, compiled
 *   with tsc as the image ships it, or through tsx with `--operator tsx`), without leader
 *   election, so that its RSS is its own: VmRSS is sampled every 250 ms and VmHWM read at the end;
 * - untimed set-up: a SupernetTraining whose report gets the accuracy table, then one warm-up
 *   target per device class, whose LatencyProfile's report gets that class's latency table and
 *   whose extraction Job is finished: after that every table the fleet needs is Ready;
 * - timed: the N targets are created (32 in flight, over kept-alive connections), with budgets drawn (seeded) over
 *   each class's latency range, while the harness plays the kubelet for extraction pods (finishes
 *   each one as it is bound) and lists targets and Deployments every 250 ms. Done: every target
 *   has status.selectedSubnet and its Deployment `<target>-serving` exists. Then the operator's
 *   queue is left to drain before VmHWM is read.
 * Reported per run and as the median over runs: both times, the peak RSS, the operator's CPU time
 * and API requests (counted inside the child by a preloaded module that wraps https.request), its
 * reconciles, and the CPU time of every process of the control plane.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { Agent, request as httpsRequest, type RequestOptions } from 'node:https';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs, promisify } from 'node:util';

import {
  CoreV1Api,
  CustomObjectsApi,
  NetworkingV1Api,
  PatchStrategy,
  setHeaderOptions,
  type KubeConfig,
} from '@kubernetes/client-node';

import { Random } from '../compofa/random.js';
import { formatTable } from '../compofa/tables.js';
import {
  DEPLOYMENT_TARGET,
  SUPERNET_TRAINING,
  type DeploymentTarget,
} from '../operator/api/index.js';
import { accuracyTable, latencyTable, smallSpace } from '../test/fixtures/tables.js';
import { ControlPlane } from '../test/harness/control-plane.js';
import { installCrds } from '../test/harness/crds.js';
import { freeLoopbackPort } from '../test/harness/network.js';
import { finishPod } from '../test/harness/pods.js';
import { ManagedProcess } from '../test/harness/processes.js';
import { waitFor } from '../test/harness/wait.js';
import { machine, renderTable, type Machine } from './report.js';

const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));
const NAMESPACE = 'fleet';
const TRAINING = 'supernet';
const CLAIM = 'artifacts';
/** Node Feature Discovery's label of the CPU family: one value per device class. */
const DEVICE_LABEL = 'feature.node.kubernetes.io/cpu-model.family';
const COMPONENT_LABEL = 'app.kubernetes.io/component';
/**
 * What the operator needs from kube-controller-manager: Jobs make pods and complete when the
 * harness finishes them; namespaces get the default ServiceAccount that pods need; the artifacts
 * claim that extraction pods mount gets bound. Not the Deployment and ReplicaSet controllers.
 */
const CONTROLLERS = [
  'job-controller',
  'serviceaccount-controller',
  'persistentvolume-binder-controller',
  // Marks the extra ServiceCIDR Ready, after which the API server allocates from it.
  'service-cidr-controller',
] as const;
/**
 * The harness's service range is a /24 (254 ClusterIPs), and every target gets a Service: a
 * second range, as a real cluster's /16 or /12 would have, keeps allocation from failing.
 */
const EXTRA_SERVICE_CIDR = '10.96.0.0/16';
const GOAL_SECONDS = 60;
const GOAL_MB = 200;
const DEFAULTS = {
  targets: 1000,
  devices: 10,
  runs: 1,
  concurrency: 32,
  pollMs: 250,
  timeoutS: 600,
  drainS: 60,
  seed: 2021,
} as const;
/** Extraction pods finished at once by the harness. */
const FINISH_CONCURRENCY = 8;
const PROGRESS_EVERY_MS = 2_000;
/** VmRSS is read this often; every TIMELINE_EVERY-th reading goes into the JSON's timeline. */
const SAMPLE_MS = 250;
const TIMELINE_EVERY = 20;
const KIB_PER_MB = 1024;
/** Clock ticks per second of /proc/<pid>/stat (USER_HZ, 100 on Linux). */
const CLOCK_TICKS = 100;
/** A list of only the objects' metadata: the Deployments' names are all the benchmark needs. */
const METADATA_ONLY = 'application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1';
/**
 * Targets as a Table of their printer columns (Name, Phase, Subnet, ...) rather than whole objects,
 * so that polling 1,000 of them every 250 ms costs the API server and this process less.
 */
const TABLE = 'application/json;as=Table;g=meta.k8s.io;v=v1';

/**
 * Preloaded into the operator process: counts its requests to the API server by verb and resource
 * and writes the counts to $FLEET_BENCH_REQUESTS on SIGUSR2. client-node sends through node-fetch,
 * which calls `https.request` of the shared module object, so wrapping it sees every request.
 */
const REQUEST_COUNTER = `import https from 'node:https';
import { renameSync, writeFileSync } from 'node:fs';

const counts = Object.create(null);
const file = process.env.FLEET_BENCH_REQUESTS;

function header(headers, name) {
  for (const [key, value] of Object.entries(headers ?? {})) {
    if (key.toLowerCase() === name) return String(Array.isArray(value) ? value[0] : value);
  }
  return '';
}

function kind(options) {
  const [path = '', query = ''] = String(options.path ?? '').split('?');
  const parts = path.split('/').filter(Boolean);
  let rest = parts[0] === 'api' ? parts.slice(2) : parts.slice(3);
  if (rest[0] === 'namespaces' && rest.length > 2) rest = rest.slice(2);
  const [resource = '?', name, subresource] = rest;
  const method = String(options.method ?? 'GET').toUpperCase();
  let verb = method;
  if (method === 'GET') verb = /(^|&)watch=(true|1)/.test(query) ? 'WATCH' : name ? 'GET' : 'LIST';
  if (method === 'PATCH') {
    verb = header(options.headers, 'content-type').includes('apply-patch') ? 'APPLY' : 'PATCH';
  }
  return verb + ' ' + resource + (subresource ? '/' + subresource : '');
}

const original = https.request;
https.request = function (...args) {
  const options = args.find((arg) => arg && typeof arg === 'object' && !(arg instanceof URL));
  if (options) {
    const key = kind(options);
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return original.apply(this, args);
};

process.on('SIGUSR2', () => {
  writeFileSync(file + '.tmp', JSON.stringify(counts));
  renameSync(file + '.tmp', file);
});
`;

/** One device class: a Node, and a latency table this many times slower than the fixture's. */
interface DeviceClass {
  readonly index: number;
  readonly node: string;
  readonly nodeSelector: Readonly<Record<string, string>>;
  /** Multiplies every latency of the fixture's table: class 0 is the fastest. */
  readonly speed: number;
  /** The fastest and slowest subnet's p95 (the targets' default statistic). */
  readonly p95RangeMs: readonly [number, number];
}

function deviceClasses(count: number): DeviceClass[] {
  return Array.from({ length: count }, (_, index) => {
    const speed = 1 + index * 0.25;
    const p95 = latencyTable(smallSpace(), speed).rows.map((row) => row.p95Ms);
    return {
      index,
      node: `device-${index}`,
      nodeSelector: { [DEVICE_LABEL]: String(index) },
      speed,
      p95RangeMs: [Math.min(...p95), Math.max(...p95)],
    };
  });
}

interface FleetTarget {
  readonly name: string;
  readonly device: DeviceClass;
  readonly latencyBudgetMs: number;
}

/**
 * The fleet: targets round-robin over the device classes, each with a budget at a seeded uniform
 * fraction of its class's p95 range, rounded up to the microsecond so that the fastest subnet
 * always fits (a target that nothing fits would never get a Deployment).
 */
function fleet(count: number, devices: readonly DeviceClass[], seed: number): FleetTarget[] {
  const random = new Random(seed);
  return Array.from({ length: count }, (_, i) => {
    const device = devices[i % devices.length];
    if (!device) throw new Error('no device classes');
    const [fastest, slowest] = device.p95RangeMs;
    const budget = fastest + random.next() * (slowest - fastest);
    return {
      name: `target-${String(i).padStart(4, '0')}`,
      device,
      latencyBudgetMs: Math.ceil(budget * 1000) / 1000,
    };
  });
}

function targetBody(target: FleetTarget): object {
  return {
    apiVersion: DEPLOYMENT_TARGET.apiVersion,
    kind: DEPLOYMENT_TARGET.kind,
    metadata: { name: target.name },
    spec: {
      supernetRef: { name: TRAINING },
      device: { nodeSelector: { ...target.device.nodeSelector } },
      latencyBudgetMs: target.latencyBudgetMs,
    },
  };
}

/** Runs `task` over `items` with at most `limit` in flight. */
async function inPool<T>(
  items: readonly T[],
  limit: number,
  task: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++] as T;
      await task(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/**
 * Plain GETs with the kubeconfig's credentials over kept-alive connections: the benchmark's polls
 * parse the JSON themselves and ask for metadata only where that suffices, so that measuring
 * costs the shared CPUs as little as possible.
 */
class RawApi {
  private constructor(
    private readonly server: string,
    private readonly agent: Agent,
    private readonly headers: Readonly<Record<string, string>>,
  ) {}

  static async create(kubeConfig: KubeConfig): Promise<RawApi> {
    const server = kubeConfig.getCurrentCluster()?.server;
    if (!server) throw new Error('the kubeconfig has no current cluster');
    const tls: RequestOptions = {};
    await kubeConfig.applyToHTTPSOptions(tls);
    const headers: Record<string, string> = {};
    for (const [key, value] of Object.entries(tls.headers ?? {})) {
      if (typeof value === 'string') headers[key] = value;
    }
    const agent = new Agent({
      keepAlive: true,
      // One connection per create in flight (--concurrency), kept for the polls.
      maxSockets: 64,
      ...(tls.ca === undefined ? {} : { ca: tls.ca }),
      ...(tls.cert === undefined ? {} : { cert: tls.cert }),
      ...(tls.key === undefined ? {} : { key: tls.key }),
    });
    return new RawApi(server, agent, headers);
  }

  /** GETs `path` and parses the JSON body; rejects on a status other than 200. */
  get<T>(path: string, accept = 'application/json'): Promise<T> {
    return this.send<T>('GET', path, accept, undefined, 200);
  }

  /** POSTs `body` to the collection `path`; rejects with the status as `code` unless 201. */
  create(path: string, body: object): Promise<unknown> {
    return this.send('POST', path, 'application/json', JSON.stringify(body), 201);
  }

  private send<T>(
    method: string,
    path: string,
    accept: string,
    body: string | undefined,
    expected: number,
  ): Promise<T> {
    return new Promise((resolve, reject) => {
      const headers: Record<string, string | number> = { ...this.headers, accept };
      if (body !== undefined) {
        headers['content-type'] = 'application/json';
        headers['content-length'] = Buffer.byteLength(body);
      }
      const call = httpsRequest(
        `${this.server}${path}`,
        { method, agent: this.agent, headers, timeout: 30_000 },
        (response) => {
          const chunks: Buffer[] = [];
          response.on('data', (chunk: Buffer) => chunks.push(chunk));
          response.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            if (response.statusCode === expected) {
              resolve(JSON.parse(text) as T);
              return;
            }
            const error = new Error(`${method} ${path}: ${response.statusCode ?? '?'} ${text}`);
            reject(Object.assign(error, { code: response.statusCode }));
          });
          response.on('error', reject);
        },
      );
      call.once('timeout', () => call.destroy(new Error(`${method} ${path} timed out`)));
      call.once('error', reject);
      call.end(body);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

interface List<T> {
  readonly items: readonly T[];
}
interface Named {
  readonly metadata: { readonly name: string; readonly namespace?: string };
}
/** A server-side printed list (what `kubectl get` shows): the CRD's printer columns only. */
interface Table {
  readonly columnDefinitions: readonly { readonly name: string }[];
  readonly rows: readonly { readonly cells: readonly unknown[] }[];
}
type PodItem = Named & {
  readonly spec?: { readonly nodeName?: string };
  readonly status?: { readonly phase?: string };
};

/** Prometheus text samples by `name{labels}`. */
type Samples = ReadonlyMap<string, number>;

function parseMetrics(text: string): Samples {
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?)\s+(\S+)/.exec(line);
    if (match?.[1] && match[2]) samples.set(match[1], Number(match[2]));
  }
  return samples;
}

/** The sum of `name`'s samples whose labels include all of `labels`. */
function metric(
  samples: Samples,
  name: string,
  labels: Readonly<Record<string, string>> = {},
): number {
  const wanted = Object.entries(labels).map(([key, value]) => `${key}="${value}"`);
  let sum = 0;
  for (const [key, value] of samples) {
    const brace = key.indexOf('{');
    const sampleName = brace < 0 ? key : key.slice(0, brace);
    if (sampleName === name && wanted.every((label) => key.includes(label))) sum += value;
  }
  return sum;
}

/** Resident memory (VmRSS) and its high-water mark (VmHWM) of a process, in KiB. */
async function memoryOf(pid: number): Promise<{ rssKiB: number; hwmKiB: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const field = (name: string): number =>
    Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? NaN);
  return { rssKiB: field('VmRSS'), hwmKiB: field('VmHWM') };
}

/** User plus system CPU time of a process so far, in seconds (NaN once it is gone). */
async function cpuSecondsOf(pid: number): Promise<number> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // The command name in parentheses may hold spaces: count fields after its closing one.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return Number.NaN;
  }
}

type OperatorRuntime = 'compiled' | 'tsx';

/**
 * The operator's entry point compiled by tsc (emit only: `npm run typecheck` checks types) into
 * .test-artifacts/fleet-operator, inside the repository so that its imports find node_modules.
 */
async function compileOperator(): Promise<{ dir: string; main: string; hash: string }> {
  // Its own folder per invocation, so that two benchmarks never rebuild under each other.
  await mkdir(join(REPO_ROOT, '.test-artifacts'), { recursive: true });
  const outDir = await mkdtemp(join(REPO_ROOT, '.test-artifacts', 'fleet-operator-'));
  const tsc = join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  // tsconfig.json's compiler options; a file list makes tsc ignore the file, so they are repeated.
  const options = [
    ...['--target', 'es2022', '--lib', 'es2023', '--types', 'node'],
    ...['--module', 'nodenext', '--moduleResolution', 'nodenext'],
    ...['--verbatimModuleSyntax', '--resolveJsonModule', '--skipLibCheck', '--noCheck'],
    ...['--rootDir', REPO_ROOT, '--outDir', outDir],
  ];
  await promisify(execFile)(
    process.execPath,
    [tsc, ...options, join(REPO_ROOT, 'operator', 'main.ts')],
    {
      cwd: REPO_ROOT,
    },
  );
  // The working tree changes under the benchmark: a hash of what ran tells runs apart.
  const files = (await readdir(outDir, { recursive: true }))
    .filter((file) => file.endsWith('.js'))
    .sort();
  const hash = createHash('sha256');
  for (const file of files) hash.update(file).update(await readFile(join(outDir, file)));
  return {
    dir: outDir,
    main: join(outDir, 'operator', 'main.js'),
    hash: hash.digest('hex').slice(0, 12),
  };
}

/** The operator as a child process, observed from outside. */
class OperatorProcess {
  private constructor(
    private readonly process: ManagedProcess,
    readonly metricsPort: number,
    private readonly requestsFile: string,
    readonly logFile: string,
  ) {}

  static async start(
    plane: ControlPlane,
    runtime: OperatorRuntime,
    compiledMain: string | undefined,
    cpuProfileDir: string | undefined,
    nodeArgs: readonly string[],
  ): Promise<OperatorProcess> {
    const counter = join(plane.dir, 'count-requests.mjs');
    await writeFile(counter, REQUEST_COUNTER);
    const metricsPort = await freeLoopbackPort();
    const [loader, main] =
      runtime === 'tsx'
        ? [['--import', 'tsx'], join(REPO_ROOT, 'operator', 'main.ts')]
        : [[], compiledMain ?? ''];
    const args = [
      ...loader,
      '--import',
      pathToFileURL(counter).href,
      ...(cpuProfileDir ? ['--cpu-prof', '--cpu-prof-dir', cpuProfileDir] : []),
      ...nodeArgs,
      main,
      ...['--leader-elect', 'false', '--metrics-port', String(metricsPort)],
      ...['--log-level', 'warn'],
    ];
    const requestsFile = join(plane.dir, 'operator-requests.json');
    const logFile = join(plane.logDir, 'compofa-operator.log');
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      KUBECONFIG: plane.kubeconfigPath,
      FLEET_BENCH_REQUESTS: requestsFile,
    };
    delete env.NODE_OPTIONS;
    const child = await ManagedProcess.start({
      name: 'compofa-operator',
      command: process.execPath,
      args,
      logFile,
      cwd: REPO_ROOT,
      env,
    });
    const operator = new OperatorProcess(child, metricsPort, requestsFile, logFile);
    try {
      await waitFor(
        async () => {
          if (!child.isRunning) throw new Error(`the operator ended: ${child.describeExit()}`);
          const response = await fetch(`http://127.0.0.1:${metricsPort}/readyz`);
          return response.status === 200;
        },
        { description: 'the operator to sync its caches', timeoutMs: 60_000, intervalMs: 200 },
      );
    } catch (error) {
      await child.stop();
      throw new Error(`${(error as Error).message}\n${await child.logTail(20)}`);
    }
    return operator;
  }

  get pid(): number {
    return this.process.pid;
  }

  get isRunning(): boolean {
    return this.process.isRunning;
  }

  memory(): Promise<{ rssKiB: number; hwmKiB: number }> {
    return memoryOf(this.pid);
  }

  cpuSeconds(): Promise<number> {
    return cpuSecondsOf(this.pid);
  }

  /** The requests the operator has sent so far, by `VERB resource`. */
  async requests(): Promise<Record<string, number>> {
    await rm(this.requestsFile, { force: true });
    process.kill(this.pid, 'SIGUSR2');
    return waitFor(
      () =>
        readFile(this.requestsFile, 'utf8').then(
          (text) => JSON.parse(text) as Record<string, number>,
          () => undefined,
        ),
      {
        description: 'the operator to write its request counts',
        timeoutMs: 10_000,
        intervalMs: 20,
      },
    );
  }

  async metrics(): Promise<Samples> {
    const response = await fetch(`http://127.0.0.1:${this.metricsPort}/metrics`);
    return parseMetrics(await response.text());
  }

  /** SIGTERM; a CPU profile is written when the process exits by itself. */
  stop(graceMs: number): Promise<void> {
    return this.process.stop(graceMs);
  }

  logTail(lines: number): Promise<string> {
    return this.process.logTail(lines);
  }
}

/**
 * The kubelet's part for extraction pods: a loop that lists them and reports every newly bound,
 * Pending one as Succeeded (harness finishPod), a few at once, so that the Job controller
 * completes their Jobs. Finishing takes no time, unlike a real extraction: this measures the
 * operator.
 */
class ExtractionPlayer {
  finished = 0;
  errors = 0;
  lastError: string | undefined;
  private readonly handled = new Set<string>();
  private stopped = false;
  private loop: Promise<void> | undefined;

  constructor(
    private readonly api: RawApi,
    private readonly core: CoreV1Api,
    private readonly pollMs: number,
  ) {}

  start(): void {
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }

  private async run(): Promise<void> {
    const path =
      `/api/v1/namespaces/${NAMESPACE}/pods?resourceVersion=0&labelSelector=` +
      encodeURIComponent(`${COMPONENT_LABEL}=extraction`);
    while (!this.stopped) {
      try {
        const pods = await this.api.get<List<PodItem>>(path);
        const due = pods.items.filter(
          (pod) =>
            pod.spec?.nodeName &&
            pod.status?.phase === 'Pending' &&
            !this.handled.has(pod.metadata.name),
        );
        for (const pod of due) this.handled.add(pod.metadata.name);
        await inPool(due, FINISH_CONCURRENCY, async (pod) => {
          try {
            // finishPod reads the pod again itself: its name and namespace are enough.
            await finishPod(this.core, { metadata: { ...pod.metadata } }, 0);
            this.finished++;
          } catch (error) {
            this.handled.delete(pod.metadata.name);
            this.errors++;
            this.lastError = String(error);
          }
        });
      } catch (error) {
        this.errors++;
        this.lastError = String(error);
      }
      await sleep(this.pollMs);
    }
  }
}

/** Settings of one invocation. */
interface Settings {
  readonly targets: number;
  readonly devices: number;
  readonly runs: number;
  readonly concurrency: number;
  readonly pollMs: number;
  readonly timeoutS: number;
  readonly drainS: number;
  readonly seed: number;
  readonly operator: OperatorRuntime;
  readonly cpuProf: boolean;
  /** Extra flags for the operator's node, for experiments (heap limits, preloaded patches). */
  readonly nodeArgs: readonly string[];
}

/** Reconciles of one controller during the timed part. */
interface ControllerWork {
  readonly reconciles: number;
  readonly errors: number;
  readonly meanMs: number;
  readonly queueAdds: number;
}

/** What one run measured. Times are seconds from the first create of the fleet. */
interface RunResult {
  readonly run: number;
  readonly done: boolean;
  readonly applySeconds: number;
  readonly allSelectedSeconds: number | undefined;
  readonly allDeployedSeconds: number | undefined;
  readonly medianSelectedSeconds: number;
  readonly medianDeployedSeconds: number;
  /** Targets selected and with a Deployment when the run ended. */
  readonly selected: number;
  readonly deployed: number;
  readonly failed: number;
  /** After done: until the deploymenttarget queue was empty (undefined: not within --drain-s). */
  readonly queueDrainedSeconds: number | undefined;
  readonly distinctSubnets: number;
  readonly extractionPodsFinished: number;
  readonly operator: {
    readonly runtime: OperatorRuntime;
    /** VmRSS after the warm-up, before the clock started. */
    readonly rssBeforeMB: number;
    readonly peakSampledRssMB: number;
    /** V8's heap (prom-client's default metrics): used before the clock and at the end. */
    readonly heapUsedBeforeMB: number;
    readonly heapUsedAtEndMB: number;
    readonly heapTotalAtEndMB: number;
    /** [seconds since the clock started, VmRSS in MB], every 5 s. */
    readonly rssTimeline: readonly (readonly [number, number])[];
    /** VmHWM after the queue drained: the peak over the process's whole life. */
    readonly peakRssMB: number;
    readonly rssAtEndMB: number;
    readonly cpuSeconds: number;
    /** Requests to the API server during the timed part and the drain, by `VERB resource`. */
    readonly requests: Readonly<Record<string, number>>;
    readonly requestsTotal: number;
    readonly controllers: Readonly<Record<string, ControllerWork>>;
    readonly cpuProfileDir?: string;
  };
  /** CPU seconds of every process during the timed part and the drain. */
  readonly cpuSeconds: Readonly<Record<string, number>>;
  readonly wallSeconds: number;
  /** 1-minute load average when the clock started and when the run ended: the machine is shared. */
  readonly loadAverage: readonly [number, number];
  readonly logDir: string;
}

const CONTROLLER_NAMES = ['deploymenttarget', 'latencyprofile', 'supernettraining'] as const;

function controllerWork(before: Samples, after: Samples): Record<string, ControllerWork> {
  const delta = (name: string, labels: Record<string, string>): number =>
    metric(after, name, labels) - metric(before, name, labels);
  return Object.fromEntries(
    CONTROLLER_NAMES.map((controller) => {
      const reconciles = delta('controller_runtime_reconcile_total', { controller });
      const seconds = delta('controller_runtime_reconcile_time_seconds_sum', { controller });
      return [
        controller,
        {
          reconciles,
          errors: delta('controller_runtime_reconcile_errors_total', { controller }),
          meanMs: reconciles > 0 ? (seconds / reconciles) * 1000 : Number.NaN,
          queueAdds: delta('workqueue_adds_total', { name: controller }),
        },
      ];
    }),
  );
}

const median = (values: readonly number[]): number => {
  const sorted = values.filter((v) => !Number.isNaN(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const middle = Math.floor(sorted.length / 2);
  const upper = sorted[middle] ?? Number.NaN;
  return sorted.length % 2 === 1 ? upper : ((sorted[middle - 1] ?? Number.NaN) + upper) / 2;
};

const toMB = (kib: number): number => kib / KIB_PER_MB;

/** Adds {@link EXTRA_SERVICE_CIDR} and waits until the service-cidr controller marks it Ready. */
async function addServiceRange(plane: ControlPlane): Promise<void> {
  const networking = plane.kubeConfig().makeApiClient(NetworkingV1Api);
  const name = 'fleet-benchmark';
  await networking.createServiceCIDR({
    body: { metadata: { name }, spec: { cidrs: [EXTRA_SERVICE_CIDR] } },
  });
  await waitFor(
    async () =>
      (await networking.readServiceCIDR({ name })).status?.conditions?.some(
        (condition) => condition.type === 'Ready' && condition.status === 'True',
      ),
    { description: `ServiceCIDR ${name} to be Ready`, timeoutMs: 30_000, hint: plane.logHint },
  );
}

/** Creates the supernet and the warm-up targets, and publishes every table they need. */
async function warmUp(
  plane: ControlPlane,
  devices: readonly DeviceClass[],
  progress: (line: string) => void,
): Promise<void> {
  const core = plane.kubeConfig().makeApiClient(CoreV1Api);
  const objects = plane.kubeConfig().makeApiClient(CustomObjectsApi);
  const custom = (resource: { group: string; version: string; plural: string }) => ({
    group: resource.group,
    version: resource.version,
    plural: resource.plural,
    namespace: NAMESPACE,
  });
  const eventually = <T>(probe: () => Promise<T | undefined | false>, description: string) =>
    waitFor(probe, { description, timeoutMs: 60_000, intervalMs: 200, hint: plane.logHint });
  const configMap = (name: string) =>
    core.readNamespacedConfigMap({ namespace: NAMESPACE, name }).catch(() => undefined);
  const publish = (name: string, key: string, text: string) =>
    core.patchNamespacedConfigMap(
      { namespace: NAMESPACE, name, body: { data: { [key]: text } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );

  await objects.createNamespacedCustomObject({
    ...custom(SUPERNET_TRAINING),
    body: {
      apiVersion: SUPERNET_TRAINING.apiVersion,
      kind: SUPERNET_TRAINING.kind,
      metadata: { name: TRAINING },
      spec: { artifacts: { claimName: CLAIM }, resources: { gpus: 0 } },
    },
  });
  await eventually(() => configMap(`${TRAINING}-g1`), 'the report ConfigMap of the training');
  await publish(`${TRAINING}-g1`, 'accuracy.json', formatTable(accuracyTable()));
  progress(`warm-up: accuracy table published; ${devices.length} warm-up targets`);

  // One target per class at mid-range: its LatencyProfile is the one the fleet's targets share.
  const warm = devices.map((device) => ({
    name: `warm-up-${device.index}`,
    device,
    latencyBudgetMs: Math.ceil(((device.p95RangeMs[0] + device.p95RangeMs[1]) / 2) * 1000) / 1000,
  }));
  await Promise.all(
    warm.map((target) =>
      objects.createNamespacedCustomObject({
        ...custom(DEPLOYMENT_TARGET),
        body: targetBody(target),
      }),
    ),
  );
  await Promise.all(
    warm.map(async (target) => {
      const profile = await eventually(async () => {
        const object = (await objects.getNamespacedCustomObject({
          ...custom(DEPLOYMENT_TARGET),
          name: target.name,
        })) as DeploymentTarget;
        return object.status?.profileRef?.name;
      }, `the profile reference of ${target.name}`);
      await eventually(() => configMap(`${profile}-g1`), `the report ConfigMap of ${profile}`);
      await publish(
        `${profile}-g1`,
        'latency.json',
        formatTable(latencyTable(smallSpace(), target.device.speed)),
      );
      // Selected, extracted (the player finishes the Job), deployed.
      await eventually(
        () =>
          objects
            .getNamespacedCustomObject({ ...custom(DEPLOYMENT_TARGET), name: target.name })
            .then((object) => {
              const phase = (object as DeploymentTarget).status?.phase;
              if (phase === 'Failed') throw new Error(`${target.name} failed`);
              return phase === 'Deploying' || phase === 'Ready';
            }),
        `${target.name} to be deployed`,
      );
    }),
  );
}

/** One run on a fresh control plane. */
async function runOnce(
  settings: Settings,
  run: number,
  compiledMain: string | undefined,
  progress: (line: string) => void,
): Promise<RunResult> {
  const runStarted = performance.now();
  const devices = deviceClasses(settings.devices);
  const targets = fleet(settings.targets, devices, settings.seed);
  const names = new Set(targets.map((t) => t.name));
  progress(`run ${run}: starting the control plane (controllers: ${CONTROLLERS.join(', ')})`);
  const plane = await ControlPlane.start({ controllers: CONTROLLERS });
  let operator: OperatorProcess | undefined;
  let api: RawApi | undefined;
  let player: ExtractionPlayer | undefined;
  let sampler: ReturnType<typeof setInterval> | undefined;
  try {
    await plane.createNamespace(NAMESPACE);
    await installCrds(plane, NAMESPACE);
    await plane.createVolumeClaim(NAMESPACE, CLAIM);
    await addServiceRange(plane);
    for (const device of devices) {
      await plane.createNode({
        name: device.node,
        labels: { ...device.nodeSelector },
        // Room for every pod the run makes, so that the scheduler never says no.
        capacity: { cpu: '64', memory: '256Gi', pods: '1000' },
      });
    }
    const cpuProfileDir = settings.cpuProf ? join(plane.dir, 'cpu-profile') : undefined;
    if (cpuProfileDir) await mkdir(cpuProfileDir, { recursive: true });
    operator = await OperatorProcess.start(
      plane,
      settings.operator,
      compiledMain,
      cpuProfileDir,
      settings.nodeArgs,
    );
    progress(
      `run ${run}: operator pid ${operator.pid} (${settings.operator}), log ${operator.logFile}`,
    );

    const kubeConfig = plane.kubeConfig();
    const core = kubeConfig.makeApiClient(CoreV1Api);
    api = await RawApi.create(kubeConfig);
    player = new ExtractionPlayer(api, core, settings.pollMs);
    player.start();
    await warmUp(plane, devices, progress);
    const warmUpPods = player.finished;
    progress(`run ${run}: warm-up done (${warmUpPods} extraction pods finished); tables ready`);

    // Sampled all along: VmHWM covers the peak anyway, this shows when it happened.
    let peakSampledKiB = 0;
    let start = Number.NaN;
    const rssTimeline: [number, number][] = [];
    let ticks = 0;
    const watched = operator;
    sampler = setInterval(() => {
      void watched.memory().then(
        ({ rssKiB }) => {
          peakSampledKiB = Math.max(peakSampledKiB, rssKiB);
          if (!Number.isNaN(start) && ticks++ % TIMELINE_EVERY === 0) {
            rssTimeline.push([
              Math.round((performance.now() - start) / 100) / 10,
              Math.round(toMB(rssKiB)),
            ]);
          }
        },
        () => undefined,
      );
    }, SAMPLE_MS);
    await sleep(1_000); // let the warm-up's last reconciles settle before the baseline
    const rssBefore = (await operator.memory()).rssKiB;
    const pids: Record<string, number> = { ...plane.pids, 'compofa-operator': operator.pid };
    const cpuBefore = Object.fromEntries(
      await Promise.all(
        Object.entries(pids).map(async ([name, pid]) => [name, await cpuSecondsOf(pid)] as const),
      ),
    );
    const benchCpuBefore = process.cpuUsage();
    const requestsBefore = await operator.requests();
    const metricsBefore = await operator.metrics();

    // The clock starts with the first create.
    const loadAtStart = loadavg()[0] ?? Number.NaN;
    start = performance.now();
    const seconds = (): number => (performance.now() - start) / 1000;
    let created = 0;
    let applySeconds = Number.NaN;
    const creating = api;
    const collection = `/apis/${DEPLOYMENT_TARGET.group}/${DEPLOYMENT_TARGET.version}/namespaces/${NAMESPACE}/${DEPLOYMENT_TARGET.plural}`;
    const applying = inPool(targets, settings.concurrency, async (target) => {
      for (let attempt = 1; ; attempt++) {
        try {
          // Over kept-alive connections: client-node 1.4 opens a TLS connection per request,
          // which would load the API server that the operator is measured against.
          await creating.create(collection, targetBody(target));
          created++;
          return;
        } catch (error) {
          // 409: an earlier attempt did create it. Anything else but overload is a bug.
          const code = (error as { code?: number }).code;
          if (code === 409) {
            created++;
            return;
          }
          if (attempt >= 5 || (code !== 429 && code !== undefined && code < 500)) throw error;
          await sleep(100 * attempt);
        }
      }
    }).then(() => {
      applySeconds = seconds();
    });
    let applyError: Error | undefined;
    applying.catch((error: unknown) => {
      applyError = error instanceof Error ? error : new Error(String(error));
    });

    const selectedAt = new Map<string, number>();
    const deployedAt = new Map<string, number>();
    const subnets = new Set<string>();
    const failed = new Set<string>();
    const phases = new Map<string, number>();
    const targetsPath = `${collection}?resourceVersion=0&includeObject=None`;
    const deploymentsPath = `/apis/apps/v1/namespaces/${NAMESPACE}/deployments?resourceVersion=0`;
    let lastProgress = 0;
    let done = false;
    while (seconds() < settings.timeoutS) {
      if (applyError !== undefined) throw applyError;
      const [list, deployments] = await Promise.all([
        api.get<Table>(targetsPath, TABLE),
        api.get<List<Named>>(deploymentsPath, METADATA_ONLY),
      ]);
      const now = seconds();
      phases.clear();
      const column = (name: string): number =>
        list.columnDefinitions.findIndex((definition) => definition.name === name);
      const [nameAt, phaseAt, subnetAt] = [column('Name'), column('Phase'), column('Subnet')];
      for (const { cells } of list.rows) {
        const name = String(cells[nameAt]);
        if (!names.has(name)) continue;
        const phase =
          typeof cells[phaseAt] === 'string' && cells[phaseAt] ? cells[phaseAt] : 'None';
        phases.set(phase, (phases.get(phase) ?? 0) + 1);
        if (phase === 'Failed') failed.add(name);
        else failed.delete(name);
        const subnet = cells[subnetAt];
        if (typeof subnet === 'string' && subnet !== '' && !selectedAt.has(name)) {
          selectedAt.set(name, now);
          subnets.add(subnet);
        }
      }
      for (const deployment of deployments.items) {
        const name = deployment.metadata.name.replace(/-serving$/, '');
        if (names.has(name) && !deployedAt.has(name)) deployedAt.set(name, now);
      }
      done = selectedAt.size === names.size && deployedAt.size === names.size;
      if (done || now - lastProgress >= PROGRESS_EVERY_MS / 1000) {
        lastProgress = now;
        const memory = await operator.memory().catch(() => ({ rssKiB: Number.NaN }));
        const depth = metric(await operator.metrics(), 'workqueue_depth', {
          name: 'deploymenttarget',
        });
        progress(
          `run ${run}: ${now.toFixed(1)} s: created ${created}, selected ${selectedAt.size}, Deployments ${deployedAt.size} of ${names.size}; phases ${[...phases].map(([p, n]) => `${p} ${n}`).join(', ')}; extraction pods finished ${player.finished - warmUpPods}; operator RSS ${toMB(memory.rssKiB).toFixed(0)} MB, queue ${depth}`,
        );
      }
      if (done) break;
      if (!operator.isRunning)
        throw new Error(`the operator ended:\n${await operator.logTail(20)}`);
      await sleep(settings.pollMs);
    }
    await applying.catch(() => undefined);
    const endSeconds = seconds();

    // The peak may come after done, while the queue still holds the last events' keys.
    let queueDrainedSeconds: number | undefined;
    if (done) {
      const drainStart = performance.now();
      while ((performance.now() - drainStart) / 1000 < settings.drainS) {
        const samples = await operator.metrics();
        const busy =
          metric(samples, 'workqueue_depth', { name: 'deploymenttarget' }) +
          metric(samples, 'controller_runtime_active_workers', { controller: 'deploymenttarget' });
        if (busy === 0) {
          queueDrainedSeconds = seconds() - endSeconds;
          break;
        }
        await sleep(settings.pollMs);
      }
    }
    const memory = await operator.memory();
    const requestsAfter = await operator.requests();
    const metricsAfter = await operator.metrics();
    const cpuAfter = Object.fromEntries(
      await Promise.all(
        Object.entries(pids).map(async ([name, pid]) => [name, await cpuSecondsOf(pid)] as const),
      ),
    );
    const benchCpu = process.cpuUsage(benchCpuBefore);
    clearInterval(sampler);
    sampler = undefined;

    const requests: Record<string, number> = {};
    for (const [key, count] of Object.entries(requestsAfter)) {
      const delta = count - (requestsBefore[key] ?? 0);
      if (delta > 0) requests[key] = delta;
    }
    const cpuSeconds: Record<string, number> = {
      benchmark: (benchCpu.user + benchCpu.system) / 1e6,
    };
    for (const [name, after] of Object.entries(cpuAfter)) {
      cpuSeconds[name] = after - (cpuBefore[name] ?? Number.NaN);
    }
    const extractionPodsFinished = player.finished - warmUpPods;
    await player.stop();
    player = undefined;
    await operator.stop(settings.cpuProf ? 60_000 : 10_000);
    operator = undefined;
    const sortedRequests = Object.fromEntries(Object.entries(requests).sort((a, b) => b[1] - a[1]));
    return {
      run,
      done,
      applySeconds,
      allSelectedSeconds:
        selectedAt.size === names.size ? Math.max(...selectedAt.values()) : undefined,
      allDeployedSeconds:
        deployedAt.size === names.size ? Math.max(...deployedAt.values()) : undefined,
      medianSelectedSeconds: median([...selectedAt.values()]),
      medianDeployedSeconds: median([...deployedAt.values()]),
      selected: selectedAt.size,
      deployed: deployedAt.size,
      failed: failed.size,
      queueDrainedSeconds,
      distinctSubnets: subnets.size,
      extractionPodsFinished,
      operator: {
        runtime: settings.operator,
        rssBeforeMB: toMB(rssBefore),
        peakSampledRssMB: toMB(peakSampledKiB),
        heapUsedBeforeMB: metric(metricsBefore, 'nodejs_heap_size_used_bytes') / 2 ** 20,
        heapUsedAtEndMB: metric(metricsAfter, 'nodejs_heap_size_used_bytes') / 2 ** 20,
        heapTotalAtEndMB: metric(metricsAfter, 'nodejs_heap_size_total_bytes') / 2 ** 20,
        rssTimeline,
        peakRssMB: toMB(memory.hwmKiB),
        rssAtEndMB: toMB(memory.rssKiB),
        cpuSeconds: cpuSeconds['compofa-operator'] ?? Number.NaN,
        requests: sortedRequests,
        requestsTotal: Object.values(requests).reduce((sum, n) => sum + n, 0),
        controllers: controllerWork(metricsBefore, metricsAfter),
        ...(cpuProfileDir ? { cpuProfileDir } : {}),
      },
      cpuSeconds,
      wallSeconds: (performance.now() - runStarted) / 1000,
      loadAverage: [loadAtStart, loadavg()[0] ?? Number.NaN],
      logDir: plane.logDir,
    };
  } finally {
    if (sampler) clearInterval(sampler);
    await player?.stop();
    api?.close();
    await operator?.stop(10_000);
    await plane.stop();
  }
}

/** Left-aligned first column, right-aligned others. */

const formatSeconds = (s: number | undefined): string =>
  s === undefined || Number.isNaN(s) ? 'not done' : `${s.toFixed(1)} s`;
const formatMB = (mb: number): string => `${mb.toFixed(0)} MB`;
const formatCount = (n: number): string =>
  Number.isNaN(n) ? '-' : Math.round(n).toLocaleString('en-US');

/** The median over runs; a run that did not finish counts as infinitely slow. */
function medianTime(results: readonly RunResult[], pick: (r: RunResult) => number | undefined) {
  const value = median(results.map((r) => pick(r) ?? Number.POSITIVE_INFINITY));
  return Number.isFinite(value) ? value : undefined;
}

interface Summary {
  readonly allSelectedSeconds: number | undefined;
  readonly allDeployedSeconds: number | undefined;
  readonly peakRssMB: number;
  readonly timeGoalMet: boolean;
  readonly memoryGoalMet: boolean;
}

function summarize(results: readonly RunResult[]): Summary {
  const allDeployedSeconds = medianTime(results, (r) =>
    r.allSelectedSeconds === undefined || r.allDeployedSeconds === undefined
      ? undefined
      : Math.max(r.allSelectedSeconds, r.allDeployedSeconds),
  );
  const peakRssMB = median(results.map((r) => r.operator.peakRssMB));
  return {
    allSelectedSeconds: medianTime(results, (r) => r.allSelectedSeconds),
    allDeployedSeconds,
    peakRssMB,
    timeGoalMet: allDeployedSeconds !== undefined && allDeployedSeconds < GOAL_SECONDS,
    memoryGoalMet: peakRssMB < GOAL_MB,
  };
}

/** The median of each column over runs; a run that did not finish counts as slowest. */
function medianRow(results: readonly RunResult[]): string[] {
  const of = (pick: (r: RunResult) => number): number => median(results.map(pick));
  return [
    'median',
    formatSeconds(of((r) => r.applySeconds)),
    formatSeconds(medianTime(results, (r) => r.allSelectedSeconds)),
    formatSeconds(medianTime(results, (r) => r.allDeployedSeconds)),
    formatSeconds(of((r) => r.medianDeployedSeconds)),
    formatMB(of((r) => r.operator.peakRssMB)),
    formatMB(of((r) => r.operator.rssBeforeMB)),
    formatSeconds(of((r) => r.operator.cpuSeconds)),
    formatCount(of((r) => r.operator.requestsTotal)),
    formatCount(of((r) => r.operator.controllers.deploymenttarget?.reconciles ?? Number.NaN)),
    String(of((r) => r.distinctSubnets)),
    '',
  ];
}

function renderHuman(
  info: Machine,
  source: string,
  settings: Settings,
  results: readonly RunResult[],
  summary: Summary,
): string {
  const out: string[] = [];
  out.push(
    `Fleet: ${settings.targets} DeploymentTargets on ${settings.devices} device classes over one supernet with ready tables`,
  );
  out.push('');
  out.push(
    `Machine: ${info.cpuModel}, ${info.cores} cores, ${info.memoryGiB} GiB; Node ${info.node} (${info.platform}/${info.arch})`,
  );
  out.push(
    `Operator: operator/main.ts at ${source}, ${settings.operator === 'compiled' ? 'compiled by tsc, run by node' : 'run through tsx'}, one replica, no leader election; kube-controller-manager: ${CONTROLLERS.join(', ')}`,
  );
  if (settings.nodeArgs.length > 0)
    out.push(`Operator's extra node flags: ${settings.nodeArgs.join(' ')}`);
  out.push(
    `Timed: ${settings.concurrency} creates in flight; lists of targets and Deployments every ${settings.pollMs} ms; extraction pods finished as soon as bound; budgets seeded (${settings.seed}) over each class's p95 range`,
  );
  out.push('');
  out.push(
    renderTable(
      [
        'run',
        'apply',
        'all selected',
        'all Deployments',
        'median target',
        'peak RSS (VmHWM)',
        'RSS before',
        'operator CPU',
        'API requests',
        'DT reconciles',
        'subnets',
        'queue drained',
      ],
      [
        ...results.map((r) => [
          String(r.run),
          formatSeconds(r.applySeconds),
          `${formatSeconds(r.allSelectedSeconds)}${r.allSelectedSeconds === undefined ? ` (${r.selected})` : ''}`,
          `${formatSeconds(r.allDeployedSeconds)}${r.allDeployedSeconds === undefined ? ` (${r.deployed})` : ''}`,
          formatSeconds(r.medianDeployedSeconds),
          formatMB(r.operator.peakRssMB),
          formatMB(r.operator.rssBeforeMB),
          formatSeconds(r.operator.cpuSeconds),
          formatCount(r.operator.requestsTotal),
          formatCount(r.operator.controllers.deploymenttarget?.reconciles ?? Number.NaN),
          String(r.distinctSubnets),
          r.queueDrainedSeconds === undefined ? '-' : `+${r.queueDrainedSeconds.toFixed(1)} s`,
        ]),
        ...(results.length > 1 ? [medianRow(results)] : []),
      ],
    ),
  );
  out.push('');
  for (const r of results) {
    const dt = r.operator.controllers.deploymenttarget;
    const top = Object.entries(r.operator.requests)
      .slice(0, 8)
      .map(([key, n]) => `${key} ${formatCount(n)}`)
      .join(', ');
    const cpu = Object.entries(r.cpuSeconds)
      .map(([name, s]) => `${name} ${s.toFixed(1)}`)
      .join(', ');
    out.push(
      `run ${r.run}: ${r.done ? 'done' : `NOT DONE within ${settings.timeoutS} s`}; ${r.failed} Failed; extraction Jobs ${r.extractionPodsFinished}; DT reconcile mean ${dt ? dt.meanMs.toFixed(1) : '-'} ms, errors ${dt?.errors ?? '-'}, queue adds ${formatCount(dt?.queueAdds ?? Number.NaN)}`,
    );
    out.push(
      `  V8 heap used ${formatMB(r.operator.heapUsedBeforeMB)} before, ${formatMB(r.operator.heapUsedAtEndMB)} at the end (heap total ${formatMB(r.operator.heapTotalAtEndMB)}); RSS after the drain ${formatMB(r.operator.rssAtEndMB)}`,
    );
    out.push(`  requests: ${top}`);
    out.push(
      `  CPU seconds: ${cpu}; load average ${r.loadAverage.map((l) => l.toFixed(1)).join(' -> ')}; logs ${r.logDir}`,
    );
    if (r.operator.cpuProfileDir) out.push(`  CPU profile: ${r.operator.cpuProfileDir}`);
  }
  out.push('');
  out.push(
    `Goal (all ${settings.targets} selected and deployed in under ${GOAL_SECONDS} s): ${summary.timeGoalMet ? 'MET' : 'NOT MET'} (median ${formatSeconds(summary.allDeployedSeconds)} over ${results.length} run${results.length === 1 ? '' : 's'})`,
  );
  out.push(
    `Goal (operator peak RSS under ${GOAL_MB} MB): ${summary.memoryGoalMet ? 'MET' : 'NOT MET'} (median ${formatMB(summary.peakRssMB)})`,
  );
  return out.join('\n');
}

function usage(): string {
  return [
    'usage: npm run bench:fleet -- [--targets N] [--devices N] [--runs N] [--json out.json]',
    '       [--concurrency N] [--poll-ms N] [--timeout-s N] [--drain-s N] [--seed N]',
    '       [--operator compiled|tsx] [--cpu-prof] [--node-arg FLAG ...]',
  ].join('\n');
}

function parseSettings(args: string[]): { settings: Settings; json: string | undefined } {
  const { values } = parseArgs({
    args,
    options: {
      targets: { type: 'string' },
      devices: { type: 'string' },
      runs: { type: 'string' },
      concurrency: { type: 'string' },
      'poll-ms': { type: 'string' },
      'timeout-s': { type: 'string' },
      'drain-s': { type: 'string' },
      seed: { type: 'string' },
      operator: { type: 'string', default: 'compiled' },
      'cpu-prof': { type: 'boolean', default: false },
      'node-arg': { type: 'string', multiple: true, default: [] },
      json: { type: 'string' },
    },
    strict: true,
    allowPositionals: false,
  });
  const positive = (name: string, value: string | undefined, fallback: number): number => {
    const n = value === undefined ? fallback : Number(value);
    if (!Number.isSafeInteger(n) || n < 1)
      throw new Error(`--${name} must be a positive integer, got ${String(value)}`);
    return n;
  };
  const operator = values.operator;
  if (operator !== 'compiled' && operator !== 'tsx')
    throw new Error(`--operator must be compiled or tsx, got ${operator}`);
  return {
    settings: {
      targets: positive('targets', values.targets, DEFAULTS.targets),
      devices: positive('devices', values.devices, DEFAULTS.devices),
      runs: positive('runs', values.runs, DEFAULTS.runs),
      concurrency: positive('concurrency', values.concurrency, DEFAULTS.concurrency),
      pollMs: positive('poll-ms', values['poll-ms'], DEFAULTS.pollMs),
      timeoutS: positive('timeout-s', values['timeout-s'], DEFAULTS.timeoutS),
      drainS: positive('drain-s', values['drain-s'], DEFAULTS.drainS),
      seed: positive('seed', values.seed, DEFAULTS.seed),
      operator,
      cpuProf: values['cpu-prof'],
      nodeArgs: values['node-arg'],
    },
    json: values.json,
  };
}

async function main(): Promise<void> {
  let parsed: ReturnType<typeof parseSettings>;
  try {
    parsed = parseSettings(process.argv.slice(2));
  } catch (error) {
    console.error(`${(error as Error).message}\n${usage()}`);
    process.exitCode = 2;
    return;
  }
  const { settings, json } = parsed;
  // Progress on stderr; stdout gets the table only.
  const progress = (line: string): void => {
    process.stderr.write(`${line}\n`);
  };
  const info = machine();
  // The operator's source is measured as it is in the working tree: say which one.
  let source = await promisify(execFile)('git', ['describe', '--always', '--dirty'], {
    cwd: REPO_ROOT,
  }).then(
    ({ stdout }) => stdout.trim(),
    () => 'unknown',
  );
  let compiled: Awaited<ReturnType<typeof compileOperator>> | undefined;
  const results: RunResult[] = [];
  try {
    if (settings.operator === 'compiled') {
      progress('compiling operator/main.ts with tsc (emit only)');
      compiled = await compileOperator();
      source = `${source}, build ${compiled.hash}`;
    }
    for (let run = 1; run <= settings.runs; run++) {
      const result = await runOnce(settings, run, compiled?.main, progress);
      progress(
        `run ${run}: all selected ${formatSeconds(result.allSelectedSeconds)}, all Deployments ${formatSeconds(result.allDeployedSeconds)}, peak RSS ${formatMB(result.operator.peakRssMB)}`,
      );
      results.push(result);
    }
  } finally {
    if (compiled) await rm(compiled.dir, { recursive: true, force: true });
  }
  const summary = summarize(results);
  console.log(renderHuman(info, source, settings, results, summary));
  if (json !== undefined) {
    await writeFile(
      json,
      `${JSON.stringify(
        {
          benchmark: 'fleet',
          measuredAt: new Date().toISOString(),
          machine: info,
          source,
          settings: { ...settings, controllers: CONTROLLERS },
          goal: { seconds: GOAL_SECONDS, peakRssMB: GOAL_MB },
          summary,
          results,
        },
        null,
        2,
      )}\n`,
    );
  }
}

await main();
