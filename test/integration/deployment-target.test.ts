/**
 * The DeploymentTarget controller against a real API server: from a trained supernet and a
 * profiled device class to a selected subnet, its extraction Job, and a serving Deployment and
 * Service whose pods (played by the harness) become available; a new budget selects again.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import {
  AppsV1Api,
  BatchV1Api,
  CoreV1Api,
  CustomObjectsApi,
  EventsV1Api,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node';

import { formatTable } from '../../compofa/tables.js';
import { DEPLOYMENT_TARGET, LATENCY_PROFILE, SUPERNET_TRAINING } from '../../operator/api/index.js';
import { DEFAULT_OPERATOR_CONFIG } from '../../operator/config.js';
import { Manager } from '../../operator/manager.js';
import { Logger } from '../../serving/logger.js';
import { ControlPlane } from '../harness/control-plane.js';
import { installCrds } from '../harness/crds.js';
import {
  createResource,
  inNamespace,
  publishData,
  readTargetStatus,
  withResourceQuota,
  type CustomKind,
  type CustomResource,
} from '../harness/resources.js';
import { finishJob, markPodReady } from '../harness/pods.js';
import { waitFor } from '../harness/wait.js';
import { accuracyTable, latencyTable } from '../fixtures/tables.js';

const NAMESPACE = 'fleet';
const ARM = { 'kubernetes.io/arch': 'arm64' };

describe('the DeploymentTarget controller', () => {
  let plane: ControlPlane;
  let core: CoreV1Api;
  let objects: CustomObjectsApi;
  let manager: Manager;

  const eventually = <T>(
    probe: () => Promise<T | undefined | false>,
    description: string,
    timeoutMs = 30_000,
  ) => waitFor(probe, { description, timeoutMs, hint: plane.logHint });
  const custom = (resource: CustomResource) => inNamespace(resource, NAMESPACE);
  const create = (kind: CustomKind, name: string, spec: Record<string, unknown>) =>
    createResource(objects, kind, NAMESPACE, name, spec);
  const publish = (name: string, key: string, text: string) =>
    publishData(core, NAMESPACE, name, key, text);
  /** The Event the operator recorded about target `name` with `reason`, if any. */
  const eventAbout = async (name: string, reason: string) =>
    (
      await plane
        .kubeConfig()
        .makeApiClient(EventsV1Api)
        .listNamespacedEvent({ namespace: NAMESPACE })
    ).items.find((event) => event.regarding?.name === name && event.reason === reason);
  const targetStatus = (name: string) =>
    readTargetStatus(objects, DEPLOYMENT_TARGET, NAMESPACE, name);

  before(async () => {
    plane = await ControlPlane.start();
    core = plane.kubeConfig().makeApiClient(CoreV1Api);
    objects = plane.kubeConfig().makeApiClient(CustomObjectsApi);
    await plane.createNamespace(NAMESPACE);
    await installCrds(plane, NAMESPACE);
    await plane.createVolumeClaim(NAMESPACE, 'artifacts');
    await plane.createNode({ name: 'arm-1', labels: ARM });
    manager = new Manager({
      kubeConfig: plane.kubeConfig(),
      config: DEFAULT_OPERATOR_CONFIG,
      logger: new Logger('warn', () => undefined),
    });
    await manager.startCaches();
    manager.startControllers();
    // A trained supernet: its generation's report holds the accuracy table.
    await create(SUPERNET_TRAINING, 'fmnist', {
      artifacts: { claimName: 'artifacts' },
      resources: { gpus: 0 },
    });
    await eventually(
      () =>
        core
          .readNamespacedConfigMap({ namespace: NAMESPACE, name: 'fmnist-g1' })
          .catch(() => undefined),
      'the report ConfigMap of the training',
    );
    await publish('fmnist-g1', 'accuracy.json', formatTable(accuracyTable()));
  });
  after(async () => {
    await manager.stop();
    await plane.stop();
  });

  const latencies = latencyTable()
    .rows.map((row) => row.p95Ms)
    .sort((a, b) => a - b);
  const budget = (fraction: number) =>
    latencies[Math.floor(fraction * (latencies.length - 1))] ?? NaN;

  it('profiles the device, selects, extracts and serves, then reports Ready', async () => {
    await create(DEPLOYMENT_TARGET, 'edge', {
      supernetRef: { name: 'fmnist' },
      device: { nodeSelector: ARM },
      latencyBudgetMs: budget(0.5),
    });
    const profileName = await eventually(
      async () => (await targetStatus('edge'))?.profileRef?.name,
      'the profile reference',
    );
    const profile = await objects.getNamespacedCustomObject({
      ...custom(LATENCY_PROFILE),
      name: profileName,
    });
    assert.equal(
      (profile as { metadata: { ownerReferences: { kind: string }[] } }).metadata.ownerReferences[0]
        ?.kind,
      'SupernetTraining',
    );
    // The harness measures the device.
    await eventually(
      () =>
        core
          .readNamespacedConfigMap({ namespace: NAMESPACE, name: `${profileName}-g1` })
          .catch(() => undefined),
      'the profile report ConfigMap',
    );
    await publish(`${profileName}-g1`, 'latency.json', formatTable(latencyTable()));

    const selected = await eventually(async () => {
      const status = await targetStatus('edge');
      return status?.phase === 'Extracting' && status;
    }, 'phase Extracting');
    const chosen = selected.selectedSubnet?.id ?? '';
    assert.ok((selected.expectedLatencyMs ?? Infinity) <= budget(0.5));
    const jobs = await plane
      .kubeConfig()
      .makeApiClient(BatchV1Api)
      .listNamespacedJob({ namespace: NAMESPACE });
    const extraction = jobs.items.find((job) =>
      job.metadata?.name?.startsWith('fmnist-extract-g1-'),
    );
    assert.ok(extraction, 'an extraction Job');
    assert.ok(extraction.spec?.template.spec?.containers[0]?.args?.includes(chosen));
    await finishJob(core, NAMESPACE, extraction.metadata?.name ?? '', 0, plane.logHint);

    const apps = plane.kubeConfig().makeApiClient(AppsV1Api);
    const deployment = await eventually(
      () =>
        apps
          .readNamespacedDeployment({ namespace: NAMESPACE, name: 'edge-serving' })
          .catch(() => undefined),
      'the serving Deployment',
    );
    assert.equal(deployment.spec?.template.metadata?.annotations?.['compofa.io/subnet'], chosen);
    assert.deepEqual(deployment.spec.template.spec?.nodeSelector, ARM);
    await eventually(
      () =>
        core.readNamespacedService({ namespace: NAMESPACE, name: 'edge' }).catch(() => undefined),
      'the serving Service',
    );
    // The harness plays the kubelet: the pod passes its probes.
    const pod = await eventually(async () => {
      const pods = await core.listNamespacedPod({
        namespace: NAMESPACE,
        labelSelector: 'compofa.io/deployment-target=edge',
      });
      return pods.items.find((p) => p.spec?.nodeName);
    }, 'a serving pod bound to the arm node');
    await markPodReady(core, pod);
    const ready = await eventually(async () => {
      const status = await targetStatus('edge');
      return status?.phase === 'Ready' && status;
    }, 'phase Ready');
    assert.equal(ready.endpoint, 'http://edge.fleet.svc:80/v2/models/edge');
    assert.equal(ready.conditions?.find((c) => c.type === 'Ready')?.reason, 'Serving');
    // This operator reads no Prometheus: the latency is not judged, and Ready does not wait for it.
    assert.equal(ready.conditions.find((c) => c.type === 'WithinBudget')?.reason, 'NotMonitored');
  });

  it('selects again when only the budget changes, keeping the previous choice in status', async () => {
    const before = await targetStatus('edge');
    await objects.patchNamespacedCustomObject(
      {
        ...custom(DEPLOYMENT_TARGET),
        name: 'edge',
        body: { spec: { latencyBudgetMs: budget(0.95) } },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    const after = await eventually(async () => {
      const status = await targetStatus('edge');
      return status?.selectedSubnet?.id !== before?.selectedSubnet?.id && status;
    }, 'a new selection');
    assert.equal(after.previousSelection?.id, before?.selectedSubnet?.id);
    assert.ok((after.predictedAccuracy ?? 0) > (before?.predictedAccuracy ?? 1));
    // No retraining and no re-profiling: still one training generation and one profile.
    const profiles = await objects.listNamespacedCustomObject({ ...custom(LATENCY_PROFILE) });
    assert.equal((profiles as { items: unknown[] }).items.length, 1);
  });

  it('names the closest subnet when nothing fits', async () => {
    await objects.patchNamespacedCustomObject(
      {
        ...custom(DEPLOYMENT_TARGET),
        name: 'edge',
        body: { spec: { latencyBudgetMs: budget(0) / 2 } },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    const failed = await eventually(async () => {
      const status = await targetStatus('edge');
      return status?.phase === 'Failed' && status;
    }, 'phase Failed');
    assert.equal(failed.conditions?.find((c) => c.type === 'Ready')?.reason, 'NothingFitsBudget');
    assert.equal(failed.closestSubnet?.expectedLatencyMs, budget(0));
  });

  it('rolls back to the previous subnet when the new pods do not become ready', async () => {
    const apps = plane.kubeConfig().makeApiClient(AppsV1Api);
    const before = await targetStatus('edge');
    const served = before?.previousSelection;
    assert.ok(served?.supernetGeneration, 'the subnet served in the first test, remembered');
    // Back to the large budget (its subnet's extraction is still pending), with a short deadline.
    await objects.patchNamespacedCustomObject(
      {
        ...custom(DEPLOYMENT_TARGET),
        name: 'edge',
        body: { spec: { latencyBudgetMs: budget(0.95), serving: { progressDeadlineSeconds: 10 } } },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    const extracting = await eventually(async () => {
      const status = await targetStatus('edge');
      return status?.phase === 'Extracting' && status;
    }, 'phase Extracting');
    const chosen = extracting.selectedSubnet?.id ?? '';
    assert.notEqual(chosen, served.id);
    const jobs = await plane
      .kubeConfig()
      .makeApiClient(BatchV1Api)
      .listNamespacedJob({ namespace: NAMESPACE });
    const extraction = jobs.items.find((job) =>
      job.spec?.template.spec?.containers[0]?.args?.includes(chosen),
    );
    assert.ok(extraction?.metadata?.name, `the extraction Job of ${chosen}`);
    await finishJob(core, NAMESPACE, extraction.metadata.name, 0, plane.logHint);

    // The new pods never pass their probes: the harness leaves them unready.
    const subnetOf = async () =>
      (await apps.readNamespacedDeployment({ namespace: NAMESPACE, name: 'edge-serving' })).spec
        ?.template.metadata?.annotations?.['compofa.io/subnet'];
    await eventually(async () => (await subnetOf()) === chosen, `the rollout of ${chosen}`);
    const degraded = await eventually(async () => {
      const status = await targetStatus('edge');
      return status?.phase === 'Degraded' && status;
    }, 'phase Degraded after the 10 s deadline');
    assert.equal(await subnetOf(), served.id, 'the Deployment runs the previous subnet again');
    assert.equal(degraded.selectedSubnet?.id, chosen);
    assert.equal(degraded.failedRollout?.id, chosen);
    assert.match(degraded.failedRollout.message, /did not become ready within 10s/);
    const ready = degraded.conditions?.find((c) => c.type === 'Ready');
    assert.equal(ready?.reason, 'RolledBack');
    assert.match(ready.message, new RegExp(`rolled back to ${served.id}`));
    assert.equal((await eventAbout('edge', 'RolledBack'))?.type, 'Warning');
    // The old pod kept serving throughout (maxUnavailable 0), and the Deployment settles on it.
    await eventually(async () => {
      const deployment = await apps.readNamespacedDeployment({
        namespace: NAMESPACE,
        name: 'edge-serving',
      });
      return (deployment.status?.availableReplicas ?? 0) >= 1;
    }, 'the previous subnet available');
  });

  it('says which child the API server refused, keeps its selection, and recovers once allowed', async () => {
    // A quota of no Services in the namespace: the serving Service of a new target is refused.
    await withResourceQuota(core, NAMESPACE, 'no-services', { services: '0' }, async () => {
      // The first test's budget: its subnet is extracted already, so serving comes next.
      await create(DEPLOYMENT_TARGET, 'guarded', {
        supernetRef: { name: 'fmnist' },
        device: { nodeSelector: ARM },
        latencyBudgetMs: budget(0.5),
      });
      const refused = await eventually(async () => {
        const status = await targetStatus('guarded');
        return (
          status?.conditions?.find((c) => c.type === 'Ready')?.reason === 'ApplyFailed' && status
        );
      }, 'Ready False with reason ApplyFailed');
      assert.equal(refused.phase, 'Failed');
      assert.ok(refused.selectedSubnet?.id, 'the selection is recorded');
      const available = refused.conditions?.find((c) => c.type === 'Available');
      assert.equal(available?.status, 'False');
      assert.match(
        available.message,
        /^the API server refused Service guarded: HTTP 403: .*quota/,
        'names the child and the reason of the API server',
      );
      assert.equal((await eventAbout('guarded', 'ApplyFailed'))?.type, 'Warning');
    });
    // Retried with backoff: the Service is created and the target goes on to serve.
    await eventually(
      () =>
        core
          .readNamespacedService({ namespace: NAMESPACE, name: 'guarded' })
          .catch(() => undefined),
      'the Service, created on a retry',
      60_000,
    );
    const deploying = await eventually(async () => {
      const status = await targetStatus('guarded');
      return status?.phase === 'Deploying' && status;
    }, 'phase Deploying');
    assert.equal(deploying.conditions?.find((c) => c.type === 'Available')?.reason, 'RollingOut');
    await objects.deleteNamespacedCustomObject({ ...custom(DEPLOYMENT_TARGET), name: 'guarded' });
  });

  it('removes its Deployment and Service when the target is deleted, not the shared profile', async () => {
    const apps = plane.kubeConfig().makeApiClient(AppsV1Api);
    await objects.deleteNamespacedCustomObject({ ...custom(DEPLOYMENT_TARGET), name: 'edge' });
    await eventually(
      async () =>
        (await apps
          .readNamespacedDeployment({ namespace: NAMESPACE, name: 'edge-serving' })
          .then(() => false)
          .catch((error: unknown) => (error as { code?: number }).code === 404)) &&
        (await core
          .readNamespacedService({ namespace: NAMESPACE, name: 'edge' })
          .then(() => false)
          .catch((error: unknown) => (error as { code?: number }).code === 404)),
      'the Deployment and Service garbage-collected',
      // The garbage collector notices a new CRD's kind on its next discovery sync (every 30 s).
      60_000,
    );
    const profiles = await objects.listNamespacedCustomObject({ ...custom(LATENCY_PROFILE) });
    assert.equal(
      (profiles as { items: unknown[] }).items.length,
      1,
      'the profile is the training’s',
    );
  });

  it('removes the profile, the extraction Jobs and the reports when the training is deleted', async () => {
    const batch = plane.kubeConfig().makeApiClient(BatchV1Api);
    const owned = async () => {
      const profiles = (await objects.listNamespacedCustomObject({
        ...custom(LATENCY_PROFILE),
      })) as { items: unknown[] };
      const jobs = await batch.listNamespacedJob({ namespace: NAMESPACE });
      const reports = await core.listNamespacedConfigMap({
        namespace: NAMESPACE,
        labelSelector: 'app.kubernetes.io/managed-by=compofa-operator',
      });
      return profiles.items.length + jobs.items.length + reports.items.length;
    };
    assert.ok((await owned()) > 0, 'a profile, extraction Jobs and report ConfigMaps to remove');
    await objects.deleteNamespacedCustomObject({ ...custom(SUPERNET_TRAINING), name: 'fmnist' });
    await eventually(
      async () => (await owned()) === 0,
      "the training's children garbage-collected",
      60_000,
    );
  });
});
