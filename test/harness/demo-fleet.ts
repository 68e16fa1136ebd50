/**
 * The fleet of `make demo` and of its end-to-end test: the local cluster's nodes (a training node
 * and three device classes that examples/local selects), the chart values that make drift show in
 * minutes, and a narrator that prints what changes in the example's namespace.
 */
import {
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type V1Deployment,
  type V1Pod,
} from '@kubernetes/client-node';

import {
  DEPLOYMENT_TARGET,
  LATENCY_PROFILE,
  SUPERNET_TRAINING,
  type DeploymentTarget,
  type LatencyProfile,
  type SupernetTraining,
} from '../../operator/api/index.js';
import type { ControlPlane } from './control-plane.js';
import type { DeviceClassSpec } from './kubelet-node.js';
import { LoadGenerator, type LoadCounts } from './load.js';
import type { LocalFleet } from './local-fleet.js';
import { waitFor } from './wait.js';

/** The namespace of examples/local. */
export const DEMO_NAMESPACE = 'compofa-demo';

const VENDOR = 'feature.node.kubernetes.io/cpu-model.vendor_id';
/** The label of the node examples/local trains on. */
const TRAINING_ROLE_LABEL = 'compofa.io/local-role';

/**
 * The nodes examples/local selects: the training node (the operator runs there too), and three
 * device classes whose CPU quotas make them 2, 1 and 0.5 CPUs fast. Memory is what their pods ask
 * for: a profiling or extraction pod (1 GiB) beside a rollout's two serving pods.
 */
export const DEMO_DEVICE_CLASSES: readonly DeviceClassSpec[] = [
  // The training (one CPU asked) and the operator (a tenth).
  { name: 'trainer', cpus: 2, memoryMiB: 5120, labels: { [TRAINING_ROLE_LABEL]: 'training' } },
  {
    name: 'large',
    cpus: 2,
    memoryMiB: 3072,
    labels: { [VENDOR]: 'Intel', 'feature.node.kubernetes.io/cpu-cpuid.AVX512F': 'true' },
  },
  { name: 'medium', cpus: 1, memoryMiB: 3072, labels: { [VENDOR]: 'AMD' } },
  { name: 'small', cpus: 0.5, memoryMiB: 3072, labels: { [VENDOR]: 'ARM' } },
];

/** The target whose device the demo slows down, and by how much. */
export const DRIFTING = { target: 'on-medium', node: 'medium', fromCpus: 1, toCpus: 0.33 } as const;

/** The ReadWriteMany volume examples/local's claim binds to. */
export const DEMO_SHARED_VOLUME = { name: 'compofa-local-artifacts', sizeGi: 2 } as const;

/**
 * Chart values for a demo: the operator reads the served latency every 15 s, Prometheus scrapes
 * every 5 s, and the drift alert looks at the last minute and fires after 10 s above the budget,
 * before the re-selected subnet is rolled out (the chart's defaults, 10 and 5 minutes, suit
 * production).
 */
export const DEMO_FLEET_VALUES = {
  // The operator beside the training: on a device node it would take the device's CPU.
  nodeSelector: { [TRAINING_ROLE_LABEL]: 'training' },
  servedLatency: { checkIntervalSeconds: 15 },
  metrics: { podMonitor: { interval: '5s' } },
  prometheusRule: { driftWindow: '1m', driftFor: '10s' },
} as const;

/**
 * One client that sends requests back to back: more would queue behind each other in the pod,
 * and the served latency (queueing included) would exceed the profiled one before any drift.
 */
export const DEMO_LOAD_CONCURRENCY = 1;

/** An OIP v2 inference request for a batch of 28x28 grayscale images (`images`: batch x 784). */
export function inferRequest(images: Float32Array): string {
  const batch = images.length / 784;
  if (!Number.isInteger(batch) || batch < 1)
    throw new RangeError(`expected a multiple of 784 values, got ${images.length}`);
  return JSON.stringify({
    inputs: [
      { name: 'image', datatype: 'FP32', shape: [batch, 28, 28, 1], data: Array.from(images) },
    ],
  });
}

/**
 * Prints, line by line, what changes in a namespace of compofa objects: pods scheduled and
 * finished, the training's phase and progress, the profiles, the targets' phases and selections,
 * and the serving Deployments' ready replicas.
 */
export class FleetNarrator {
  private readonly seen = new Map<string, string>();
  private readonly core: CoreV1Api;
  private readonly apps: AppsV1Api;
  private readonly custom: CustomObjectsApi;

  constructor(
    plane: ControlPlane,
    private readonly namespace: string,
    private readonly say: (line: string) => void,
  ) {
    const config = plane.kubeConfig();
    this.core = config.makeApiClient(CoreV1Api);
    this.apps = config.makeApiClient(AppsV1Api);
    this.custom = config.makeApiClient(CustomObjectsApi);
  }

  /** One DeploymentTarget, or undefined if it does not exist. */
  async target(name: string): Promise<DeploymentTarget | undefined> {
    return (await this.list<DeploymentTarget>(DEPLOYMENT_TARGET.plural)).find(
      (target) => target.metadata?.name === name,
    );
  }

  /** Reads everything once, prints what changed, and resolves with the DeploymentTargets. */
  async poll(): Promise<DeploymentTarget[]> {
    const namespace = this.namespace;
    const [pods, deployments, trainings, profiles, targets] = await Promise.all([
      this.core.listNamespacedPod({ namespace }).then((list) => list.items),
      this.apps.listNamespacedDeployment({ namespace }).then((list) => list.items),
      this.list<SupernetTraining>(SUPERNET_TRAINING.plural),
      this.list<LatencyProfile>(LATENCY_PROFILE.plural),
      this.list<DeploymentTarget>(DEPLOYMENT_TARGET.plural),
    ]);
    for (const training of trainings)
      this.report(`training/${training.metadata?.name}`, describeTraining(training));
    for (const pod of pods) this.report(`pod/${pod.metadata?.name ?? ''}`, describePod(pod));
    for (const profile of profiles)
      this.report(`profile/${profile.metadata?.name}`, describeProfile(profile));
    for (const target of targets)
      this.report(`target/${target.metadata?.name}`, describeTarget(target));
    for (const deployment of deployments)
      this.report(`deployment/${deployment.metadata?.name ?? ''}`, describeDeployment(deployment));
    return targets;
  }

  private async list<T>(plural: string): Promise<T[]> {
    const list = (await this.custom.listNamespacedCustomObject({
      group: 'compofa.io',
      version: 'v1alpha1',
      namespace: this.namespace,
      plural,
    })) as { items: T[] };
    return list.items;
  }

  /** Prints `line` when it differs from the last one printed for `key`. */
  private report(key: string, line: string | undefined): void {
    if (line === undefined || this.seen.get(key) === line) return;
    this.seen.set(key, line);
    this.say(line);
  }
}

function describeTraining(training: SupernetTraining): string {
  const { phase = 'Pending', progress } = training.status ?? {};
  // Progress in steps of 10%, so that the narration stays readable.
  const percent =
    progress?.percent === undefined ? '' : ` ${Math.floor(progress.percent / 10) * 10}%`;
  const stage = progress?.stage ? ` ${progress.stage}` : '';
  return `SupernetTraining ${training.metadata?.name}: ${phase}${stage}${percent}`;
}

function describePod(pod: V1Pod): string | undefined {
  const node = pod.spec?.nodeName;
  if (!node) return undefined;
  const component = pod.metadata?.labels?.['app.kubernetes.io/component'] ?? 'pod';
  const phase = pod.status?.phase ?? 'Pending';
  return `pod ${pod.metadata?.name ?? ''} (${component}) on node ${node}: ${phase}`;
}

function describeProfile(profile: LatencyProfile): string {
  const { phase = 'Pending', tableRef, measuredOn } = profile.status ?? {};
  const rows = tableRef && 'rows' in tableRef ? `, ${String(tableRef.rows)} subnets timed` : '';
  const on = measuredOn ? ` on ${JSON.stringify(measuredOn)}` : '';
  return `LatencyProfile ${profile.metadata?.name}: ${phase}${rows}${phase === 'Ready' ? on : ''}`;
}

function describeTarget(target: DeploymentTarget): string {
  const {
    phase = 'Pending',
    selectedSubnet,
    expectedLatencyMs,
    predictedAccuracy,
  } = target.status ?? {};
  const selection =
    selectedSubnet === undefined
      ? ''
      : `, subnet ${selectedSubnet.id} (${expectedLatencyMs?.toFixed(2) ?? '?'} ms expected, budget ${target.spec.latencyBudgetMs} ms, accuracy ${predictedAccuracy?.toFixed(3) ?? '?'})`;
  return `DeploymentTarget ${target.metadata?.name}: ${phase}${selection}`;
}

function describeDeployment(deployment: V1Deployment): string {
  const { replicas = 0, readyReplicas = 0, updatedReplicas = 0 } = deployment.status ?? {};
  return `Deployment ${deployment.metadata?.name ?? ''}: ${readyReplicas}/${deployment.spec?.replicas ?? replicas} ready, ${updatedReplicas} updated`;
}

/** What {@link demonstrateDrift} saw. */
export interface DriftOutcome {
  /** The target before the device slowed down, with its served latency. */
  readonly before: DeploymentTarget;
  /**
   * `reselected`: the target serves another subnet, chosen from the profile scaled by what its
   * pods measured; `nothing-fits`: even the fastest subnet, so scaled, misses the budget, and the
   * pods keep serving the current one.
   */
  readonly outcome: 'reselected' | 'nothing-fits';
  /** The target at the end. */
  readonly after: DeploymentTarget;
  /** Whether CompofaLatencyDrift reached `firing` for the target. */
  readonly alertFired: boolean;
  /** The load generator's counts over the whole drift and rollout. */
  readonly load: LoadCounts;
}

/**
 * Drift, as the demo shows it: a load generator sends requests to the drifting target; once the
 * operator has read its served latency, its device's CPU quota is lowered; then this follows the
 * drift alert in Prometheus and the target until the operator has acted (it serves another
 * subnet, or it says that none fits and keeps serving) and the alert has fired (or a minute and a
 * half has passed since the operator acted), and stops the load.
 */
export async function demonstrateDrift(
  fleet: LocalFleet,
  narrator: FleetNarrator,
  say: (line: string) => void,
  signal?: AbortSignal,
): Promise<DriftOutcome> {
  const { target: name, node, fromCpus, toCpus } = DRIFTING;
  const url = `${await fleet.serviceUrl(DEMO_NAMESPACE, name)}/v2/models/${name}/infer`;
  // Batches of the size the target's budget is for.
  const batch = (await narrator.target(name))?.spec.batchSize ?? 1;
  const load = LoadGenerator.start({
    url,
    body: inferRequest(new Float32Array(784 * batch).fill(0.5)),
    concurrency: DEMO_LOAD_CONCURRENCY,
  });
  say(
    `load: ${DEMO_LOAD_CONCURRENCY} client sends batches of ${batch} images to ${name} without pause`,
  );
  try {
    const before = await waitFor(
      async () => {
        const target = await narrator.target(name);
        return target?.status?.measuredLatencyMs !== undefined && target;
      },
      {
        description: `the served latency of ${name} in its status`,
        timeoutMs: 180_000,
        intervalMs: 3_000,
        signal,
      },
    );
    const subnet = before.status?.selectedSubnet?.id;
    say(
      `${name} serves ${subnet ?? '?'}: ${before.status?.measuredLatencyMs?.toFixed(2) ?? '?'} ms measured, ${before.status?.expectedLatencyMs?.toFixed(2) ?? '?'} ms profiled (${before.spec.latencyStatistic ?? 'p95'}), budget ${before.spec.latencyBudgetMs} ms`,
    );
    say(`drift: the ${node} device's CPU quota goes from ${fromCpus} to ${toCpus} CPU`);
    await fleet.cluster.setCpuQuota(node, toCpus);
    let alertState = '';
    let alertFired = false;
    let actedAt: number | undefined;
    // Set inside the probe (a closure, which narrowing does not follow).
    const acted: { outcome: DriftOutcome['outcome'] } = { outcome: 'reselected' };
    const after = await waitFor(
      async () => {
        const alert = (await fleet.prometheus.alerts()).find(
          (candidate) =>
            candidate.labels.alertname === 'CompofaLatencyDrift' &&
            candidate.labels.target === name,
        );
        const state = alert?.state ?? 'inactive';
        if (state !== alertState) {
          alertState = state;
          alertFired ||= state === 'firing';
          say(
            `Prometheus: CompofaLatencyDrift ${state} for ${name}${alert ? `: ${alert.annotations.description ?? ''}` : ''}`,
          );
        }
        await narrator.poll();
        const target = await narrator.target(name);
        if (!target) return false;
        const now = target.status?.selectedSubnet?.id;
        const moved = now !== undefined && now !== subnet && target.status?.phase === 'Ready';
        const ready = target.status?.conditions?.find((c) => c.type === 'Ready');
        const available = target.status?.conditions?.find((c) => c.type === 'Available');
        const nothingFits = ready?.reason === 'NothingFitsBudget' && available?.status === 'True';
        if (!moved && !nothingFits) return false;
        acted.outcome = moved ? 'reselected' : 'nothing-fits';
        actedAt ??= Date.now();
        return (alertFired || Date.now() - actedAt > 90_000) && target;
      },
      {
        description: `the operator to act on ${name}'s drift, and the drift alert to fire`,
        timeoutMs: 480_000,
        intervalMs: 3_000,
        signal,
      },
    );
    const factor = after.status?.latencyCorrection?.factor ?? '?';
    say(
      acted.outcome === 'reselected'
        ? `${name} moved from ${subnet ?? '?'} to ${after.status?.selectedSubnet?.id ?? '?'}: ${after.status?.expectedLatencyMs?.toFixed(2) ?? '?'} ms expected with the profile scaled x${factor} by what its pods measured`
        : `${name}: with the profile scaled x${factor} by what its pods measured, no subnet meets the budget (${after.status?.conditions?.find((c) => c.type === 'Ready')?.message ?? '?'}); its pods keep serving ${subnet ?? '?'}`,
    );
    // A few more seconds of load on the new pods.
    await new Promise((resolve) => setTimeout(resolve, 5_000));
    return { before, outcome: acted.outcome, after, alertFired, load: await load.stop() };
  } finally {
    await load.stop();
  }
}
