/**
 * The whole product on a local cluster with real nodes, as a user would set it up: the Dockerfile's
 * images built here, the chart installed with them (the operator runs in the cluster, on the
 * training node), the Prometheus Operator's CRDs so that the chart creates its PodMonitor and
 * PrometheusRule, and a real Prometheus on this host that does what the Prometheus Operator would
 * do with those two objects: scrape the serving pods through Kubernetes service discovery and
 * evaluate the chart's alert rules. The operator reads the served latency back from it.
 * What `make demo` and the end-to-end test run on.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { CoreV1Api } from '@kubernetes/client-node';
import yaml from 'js-yaml';

import { chartTools, type ChartTools } from './chart-tools.js';
import { buildImages, type BuiltImage } from './images.js';
import type { DeviceClassSpec } from './kubelet-node.js';
import { APISERVER_ADDRESS, LocalCluster, refuseIfClusterRuns } from './local-cluster.js';
import { freeLoopbackPort } from './network.js';
import { podMonitorScrapeConfigs, type PodMonitor } from './pod-monitor.js';
import { TestPrometheus } from './prometheus.js';
import { runCommand } from './run-command.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
/** Where the chart is installed. */
export const RELEASE_NAMESPACE = 'compofa-system';

/** Options of {@link LocalFleet.start}. */
export interface LocalFleetOptions {
  /** The nodes. */
  readonly deviceClasses: readonly DeviceClassSpec[];
  /** Called with a line for each step. */
  readonly progress?: (line: string) => void;
  /**
   * Chart values merged over the ones this sets (images, monitoring, Prometheus' URL), e.g.
   * `{ prometheusRule: { driftFor: '30s' } }`.
   */
  readonly values?: Readonly<Record<string, unknown>>;
  /** Seconds between two scrapes and rule evaluations; default 5. */
  readonly scrapeIntervalSeconds?: number;
  /** A ReadWriteMany PersistentVolume for the artifacts claim, `{ name, sizeGi }`. */
  readonly sharedVolume?: { readonly name: string; readonly sizeGi: number };
}

/** A running local fleet; {@link stop} undoes all of it. */
export class LocalFleet {
  private stopped = false;

  private constructor(
    readonly cluster: LocalCluster,
    readonly prometheus: TestPrometheus,
    readonly images: Readonly<Record<'runtime' | 'operator', BuiltImage>>,
    readonly tools: ChartTools,
  ) {}

  /**
   * Builds (or takes from the cache) the images and starts everything; on a failure what was
   * started is stopped and the error names the step.
   */
  static async start(options: LocalFleetOptions): Promise<LocalFleet> {
    const progress = options.progress ?? (() => undefined);
    await refuseIfClusterRuns();
    progress('building the images from the Dockerfile (cached when nothing changed)');
    const images = await buildImages(['runtime', 'operator'], progress);
    const tools = await chartTools();
    const cluster = await LocalCluster.start({
      deviceClasses: options.deviceClasses,
      images: [images.runtime.archive, images.operator.archive],
      progress,
    });
    let prometheus: TestPrometheus | undefined;
    try {
      const step = async <T>(name: string, action: () => Promise<T>): Promise<T> => {
        progress(name);
        try {
          return await action();
        } catch (error) {
          throw new Error(
            `${name} failed: ${error instanceof Error ? error.message : String(error)}`,
          );
        }
      };
      if (options.sharedVolume)
        await cluster.createSharedVolume(options.sharedVolume.name, options.sharedVolume.sizeGi);
      await step("installing the Prometheus Operator's CRDs (PodMonitor, PrometheusRule)", () =>
        Promise.all(
          tools.monitoringCrds.map((file) =>
            cluster.plane.kubectl(['apply', '--server-side', '-f', file]),
          ),
        ),
      );
      // Pods reach this host's addresses on `lo`: the API server's is where Prometheus listens.
      const prometheusPort = await freeLoopbackPort(APISERVER_ADDRESS);
      const prometheusUrl = `http://${APISERVER_ADDRESS}:${prometheusPort}`;
      await step(
        'helm install compofa charts/compofa (the operator, with the images built here)',
        () => helmInstall(cluster, tools, images, prometheusUrl, options),
      );
      const kubeconfig = await step('giving Prometheus read access to pods', () =>
        prometheusKubeconfig(cluster),
      );
      const { podMonitors, ruleGroups } = await step(
        "reading the chart's PodMonitor and PrometheusRule",
        () => monitoringObjects(cluster),
      );
      prometheus = await step(`starting Prometheus at ${prometheusUrl}`, () =>
        TestPrometheus.start({
          scrapeConfigs: podMonitors.flatMap((monitor) =>
            podMonitorScrapeConfigs(monitor, kubeconfig),
          ),
          ruleGroups,
          host: APISERVER_ADDRESS,
          port: prometheusPort,
          scrapeIntervalSeconds: options.scrapeIntervalSeconds ?? 5,
        }),
      );
      return new LocalFleet(cluster, prometheus, images, tools);
    } catch (error) {
      await prometheus?.stop();
      await cluster.stop();
      throw error;
    }
  }

  /** The ClusterIP URL of a target's Service (reachable from this host through kube-proxy). */
  async serviceUrl(namespace: string, name: string): Promise<string> {
    const service = await this.cluster.plane
      .kubeConfig()
      .makeApiClient(CoreV1Api)
      .readNamespacedService({ name, namespace });
    const port = service.spec?.ports?.[0]?.port ?? 80;
    return `http://${service.spec?.clusterIP ?? ''}:${port}`;
  }

  /** Stops Prometheus and the cluster (which undoes every host change). Safe to call twice. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    try {
      await this.prometheus.stop();
    } finally {
      await this.cluster.stop();
    }
  }
}

/** `repository:tag` split for the chart's values. */
function imageValues(image: BuiltImage): { repository: string; tag: string } {
  const colon = image.reference.lastIndexOf(':');
  return { repository: image.reference.slice(0, colon), tag: image.reference.slice(colon + 1) };
}

/** Deep merge of plain objects; `override` wins. */
function merge(base: Record<string, unknown>, override: Readonly<Record<string, unknown>>) {
  const merged: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(override)) {
    const current = merged[key];
    merged[key] = isPlainObject(current) && isPlainObject(value) ? merge(current, value) : value;
  }
  return merged;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

async function helmInstall(
  cluster: LocalCluster,
  tools: ChartTools,
  images: Readonly<Record<'runtime' | 'operator', BuiltImage>>,
  prometheusUrl: string,
  options: LocalFleetOptions,
): Promise<void> {
  const runtime = imageValues(images.runtime);
  const values = merge(
    {
      image: { ...imageValues(images.operator), pullPolicy: 'Never' },
      // No GPU here: training runs on the CPU with the runtime image's tfjs-node.
      workloads: { trainerImage: runtime, runtimeImage: runtime, imagePullPolicy: 'Never' },
      replicaCount: 1,
      servedLatency: { prometheusUrl },
      metrics: { podMonitor: { enabled: true } },
      prometheusRule: { enabled: true },
    },
    options.values ?? {},
  );
  const helmDir = join(cluster.dir, 'helm');
  await mkdir(helmDir, { recursive: true });
  const valuesFile = join(helmDir, 'values.yaml');
  await writeFile(valuesFile, yaml.dump(values));
  const installed = await runCommand(
    tools.helm,
    [
      'install',
      'compofa',
      join(ROOT, 'charts', 'compofa'),
      `--namespace=${RELEASE_NAMESPACE}`,
      '--create-namespace',
      `--kubeconfig=${cluster.plane.kubeconfigPath}`,
      `--values=${valuesFile}`,
      '--wait',
      '--timeout=3m',
    ],
    {
      HELM_CACHE_HOME: join(helmDir, 'cache'),
      HELM_CONFIG_HOME: join(helmDir, 'config'),
      HELM_DATA_HOME: join(helmDir, 'data'),
    },
  );
  if (installed.code !== 0)
    throw new Error(`helm install exited with ${installed.code}:\n${installed.stderr.trim()}`);
}

/** A kubeconfig for Prometheus' service discovery: a user that may only read pods. */
async function prometheusKubeconfig(cluster: LocalCluster): Promise<string> {
  const user = 'compofa:local-prometheus';
  const rbac = [
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: { name: 'compofa-local-prometheus' },
      rules: [{ apiGroups: [''], resources: ['pods'], verbs: ['get', 'list', 'watch'] }],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: 'compofa-local-prometheus' },
      roleRef: {
        apiGroup: 'rbac.authorization.k8s.io',
        kind: 'ClusterRole',
        name: 'compofa-local-prometheus',
      },
      subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: user }],
    },
  ];
  await cluster.plane.kubectl(
    ['apply', '-f', '-'],
    rbac.map((object) => JSON.stringify(object)).join('\n'),
  );
  const path = join(cluster.dir, 'prometheus.kubeconfig');
  await cluster.plane.writeClientKubeconfig(path, user);
  return path;
}

/** The chart's PodMonitors and the rule groups of its PrometheusRules, as installed. */
async function monitoringObjects(
  cluster: LocalCluster,
): Promise<{ podMonitors: PodMonitor[]; ruleGroups: unknown[] }> {
  const list = async <T>(kind: string): Promise<T[]> => {
    const { stdout } = await cluster.plane.kubectl([
      'get',
      kind,
      '-n',
      RELEASE_NAMESPACE,
      '-o',
      'json',
    ]);
    return (JSON.parse(stdout) as { items: T[] }).items;
  };
  const podMonitors = await list<PodMonitor>('podmonitors.monitoring.coreos.com');
  const rules = await list<{ spec: { groups: unknown[] } }>(
    'prometheusrules.monitoring.coreos.com',
  );
  if (podMonitors.length === 0 || rules.length === 0)
    throw new Error(
      `expected the chart to create a PodMonitor and a PrometheusRule in ${RELEASE_NAMESPACE}, found ${podMonitors.length} and ${rules.length}`,
    );
  return { podMonitors, ruleGroups: rules.flatMap((rule) => rule.spec.groups) };
}
