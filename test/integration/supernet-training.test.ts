/**
 * The SupernetTraining controller against a real API server and Job controller: the harness plays
 * the pods (progress into the report ConfigMap, exit codes through the pod status) and the
 * operator must follow with Jobs, status, conditions and events.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import {
  BatchV1Api,
  CoreV1Api,
  CustomObjectsApi,
  EventsV1Api,
  PatchStrategy,
  RbacAuthorizationV1Api,
  setHeaderOptions,
} from '@kubernetes/client-node';

import { formatTable } from '../../compofa/tables.js';
import { SUPERNET_TRAINING, type SupernetTraining } from '../../operator/api/index.js';
import { DEFAULT_OPERATOR_CONFIG } from '../../operator/config.js';
import { Manager } from '../../operator/manager.js';
import { Logger } from '../../serving/logger.js';
import { ControlPlane } from '../harness/control-plane.js';
import { installCrds } from '../harness/crds.js';
import { boundPodOfJob, finishJob } from '../harness/pods.js';
import { createResource, withResourceQuota } from '../harness/resources.js';
import { waitFor } from '../harness/wait.js';
import { accuracyTable } from '../fixtures/tables.js';

const NAMESPACE = 'training';

describe('the SupernetTraining controller', () => {
  let plane: ControlPlane;
  let core: CoreV1Api;
  let batch: BatchV1Api;
  let objects: CustomObjectsApi;
  let manager: Manager;
  const logs: string[] = [];

  const startManager = async (): Promise<Manager> => {
    const started = new Manager({
      kubeConfig: plane.kubeConfig(),
      config: { ...DEFAULT_OPERATOR_CONFIG, trainerImage: 'example.test/trainer:1' },
      logger: new Logger('debug', (line) => logs.push(line)),
      identity: 'test-operator',
    });
    await started.startCaches();
    started.startControllers();
    return started;
  };

  before(async () => {
    plane = await ControlPlane.start();
    const config = plane.kubeConfig();
    core = config.makeApiClient(CoreV1Api);
    batch = config.makeApiClient(BatchV1Api);
    objects = config.makeApiClient(CustomObjectsApi);
    await plane.createNamespace(NAMESPACE);
    await installCrds(plane, NAMESPACE);
    await plane.createVolumeClaim(NAMESPACE, 'artifacts');
    await plane.createNode({
      name: 'gpu-node',
      labels: { 'nvidia.com/gpu.present': 'true' },
      capacity: { 'nvidia.com/gpu': '1' },
    });
    manager = await startManager();
  });
  after(async () => {
    if (process.env.DEBUG_OPERATOR_LOGS)
      for (const line of logs) if (/"level":"(warn|error)"/.test(line)) process.stderr.write(line);
    await manager.stop();
    await plane.stop();
  });

  const eventually = <T>(probe: () => Promise<T | undefined | false>, description: string) =>
    waitFor(probe, { description, timeoutMs: 30_000, hint: plane.logHint });
  const target = {
    group: SUPERNET_TRAINING.group,
    version: SUPERNET_TRAINING.version,
    plural: SUPERNET_TRAINING.plural,
    namespace: NAMESPACE,
  };
  const create = (name: string, spec: Record<string, unknown>) =>
    createResource(objects, SUPERNET_TRAINING, NAMESPACE, name, spec);
  const read = async (name: string) =>
    (await objects.getNamespacedCustomObject({ ...target, name })) as SupernetTraining;
  const statusOf = async (name: string) => (await read(name)).status;
  const condition = async (name: string, type: string) =>
    (await statusOf(name))?.conditions?.find((c) => c.type === type);
  const job = (name: string) =>
    batch.readNamespacedJob({ namespace: NAMESPACE, name }).catch(() => undefined);
  const report = (name: string, data: Record<string, string>) =>
    core.patchNamespacedConfigMap(
      { namespace: NAMESPACE, name, body: { data } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );

  it('runs training then evaluation and publishes the accuracy table', async () => {
    await create('fmnist', {
      artifacts: { claimName: 'artifacts' },
      schedule: { epochsScale: 0.02, batchSize: 32 },
      nodeSelector: { 'nvidia.com/gpu.present': 'true' },
    });
    const train = await eventually(() => job('fmnist-train-g1'), 'the training Job');
    const container = train.spec?.template.spec?.containers[0];
    assert.equal(container?.image, 'example.test/trainer:1');
    assert.deepEqual(container.args?.slice(0, 1), ['train']);
    assert.ok(container.args.includes('--resume'));
    assert.deepEqual(container.resources?.limits, { 'nvidia.com/gpu': '1' });
    assert.equal(train.spec?.template.spec?.serviceAccountName, 'fmnist-reporter');
    const role = await plane
      .kubeConfig()
      .makeApiClient(RbacAuthorizationV1Api)
      .readNamespacedRole({ namespace: NAMESPACE, name: 'fmnist-reporter' });
    assert.deepEqual(role.rules?.[0]?.resourceNames, ['fmnist-g1']);
    assert.equal((await statusOf('fmnist'))?.phase, 'Pending');

    // The scheduler binds the pod to the GPU node; the "pod" reports progress.
    await boundPodOfJob(core, NAMESPACE, 'fmnist-train-g1', plane.logHint);
    await report('fmnist-g1', {
      'progress.json': JSON.stringify({
        stage: 'compound-1',
        step: 30,
        totalSteps: 120,
        eta: '2026-11-28T12:00:00Z',
        updatedAt: '2026-11-28T11:00:00Z',
      }),
    });
    const training = await eventually(async () => {
      const status = await statusOf('fmnist');
      return status?.phase === 'Training' && status;
    }, 'phase Training with progress');
    assert.equal(training.progress?.percent, 25);
    assert.equal(training.progress.stage, 'compound-1');

    await finishJob(core, NAMESPACE, 'fmnist-train-g1', 0, plane.logHint);
    const evaluate = await eventually(() => job('fmnist-evaluate-g1'), 'the evaluation Job');
    assert.equal(evaluate.spec?.template.spec?.containers[0]?.args?.[0], 'evaluate');
    await eventually(
      async () => (await statusOf('fmnist'))?.phase === 'Evaluating',
      'phase Evaluating',
    );

    await report('fmnist-g1', { 'accuracy.json': formatTable(accuracyTable()) });
    await finishJob(core, NAMESPACE, 'fmnist-evaluate-g1', 0, plane.logHint);
    const done = await eventually(async () => {
      const status = await statusOf('fmnist');
      return status?.phase === 'Succeeded' && status;
    }, 'phase Succeeded');
    assert.deepEqual(done.accuracyTableRef, {
      configMapName: 'fmnist-g1',
      key: 'accuracy.json',
      rows: 243,
      method: 'measured',
    });
    assert.equal(done.trainedGeneration, 1);
    assert.equal(done.observedGeneration, 1);
    const ready = done.conditions?.find((c) => c.type === 'Ready');
    assert.equal(ready?.status, 'True');
    assert.equal(ready.reason, 'Succeeded');
    const metrics = await manager.registry.metrics();
    assert.match(
      metrics,
      /compofa_supernettraining_phase\{namespace="training",name="fmnist",phase="Succeeded"\} 1/,
    );
    // Finished Jobs are cleaned up; the table stays in its ConfigMap.
    await eventually(
      async () => (await job('fmnist-train-g1')) === undefined,
      'the finished Jobs deleted',
    );

    const events = await plane
      .kubeConfig()
      .makeApiClient(EventsV1Api)
      .listNamespacedEvent({ namespace: NAMESPACE });
    const reasons = events.items
      .filter((event) => event.regarding?.name === 'fmnist')
      .map((event) => event.reason);
    for (const reason of ['Training', 'Evaluating', 'Succeeded']) {
      assert.ok(reasons.includes(reason), `an Event ${reason} among ${reasons.join(', ')}`);
    }
  });

  it('fails terminally when the trainer exits with its usage code', async () => {
    await create('bad-usage', {
      artifacts: { claimName: 'artifacts' },
      nodeSelector: { 'nvidia.com/gpu.present': 'true' },
    });
    await eventually(() => job('bad-usage-train-g1'), 'the training Job');
    await finishJob(core, NAMESPACE, 'bad-usage-train-g1', 2, plane.logHint);
    const ready = await eventually(async () => {
      const status = await statusOf('bad-usage');
      return status?.phase === 'Failed' && status.conditions?.find((c) => c.type === 'Ready');
    }, 'phase Failed');
    assert.equal(ready.reason, 'JobFailed');
    assert.match(ready.message, /exit code 2/);
    // Not retried: still one pod, and the failed Job is kept for inspection.
    const pods = await core.listNamespacedPod({
      namespace: NAMESPACE,
      labelSelector: 'batch.kubernetes.io/job-name=bad-usage-train-g1',
    });
    assert.equal(pods.items.length, 1);
    assert.ok(await job('bad-usage-train-g1'));
  });

  it('says why no node fits', async () => {
    await create('too-big', {
      artifacts: { claimName: 'artifacts' },
      resources: { gpus: 4 },
    });
    const ready = await eventually(async () => {
      const found = await condition('too-big', 'Ready');
      return found?.reason === 'Unschedulable' && found;
    }, 'Ready=False Unschedulable');
    assert.match(ready.message, /Insufficient nvidia.com\/gpu/);
  });

  it('resumes after an operator restart without a second Job', async () => {
    await create('restart', {
      artifacts: { claimName: 'artifacts' },
      nodeSelector: { 'nvidia.com/gpu.present': 'true' },
    });
    await eventually(() => job('restart-train-g1'), 'the training Job');
    await manager.stop();
    manager = await startManager();
    await finishJob(core, NAMESPACE, 'restart-train-g1', 0, plane.logHint);
    await eventually(() => job('restart-evaluate-g1'), 'the evaluation Job after the restart');
    const jobs = await batch.listNamespacedJob({
      namespace: NAMESPACE,
      labelSelector: 'compofa.io/supernet-training=restart',
    });
    assert.deepEqual(jobs.items.map((j) => j.metadata?.name).sort(), [
      'restart-evaluate-g1',
      'restart-train-g1',
    ]);
  });

  it('suspends by deleting its Job and resumes with a new one', async () => {
    await create('pause', {
      artifacts: { claimName: 'artifacts' },
      nodeSelector: { 'nvidia.com/gpu.present': 'true' },
    });
    await eventually(() => job('pause-train-g1'), 'the training Job');
    await objects.patchNamespacedCustomObject(
      { ...target, name: 'pause', body: { spec: { suspend: true } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    await eventually(
      async () => (await statusOf('pause'))?.phase === 'Suspended',
      'phase Suspended',
    );
    await eventually(async () => {
      const found = await job('pause-train-g1');
      return found === undefined || found.metadata?.deletionTimestamp !== undefined;
    }, 'the Job deleted');
    await objects.patchNamespacedCustomObject(
      { ...target, name: 'pause', body: { spec: { suspend: false } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    // A new generation trains into its own folder.
    await eventually(() => job('pause-train-g3'), 'a training Job of generation 3');
  });
  it('says which Job the API server refused, and starts it once allowed', async () => {
    // No Jobs allowed in the namespace: the training Job is refused.
    await withResourceQuota(core, NAMESPACE, 'no-jobs', { 'count/jobs.batch': '0' }, async () => {
      await create('quota-bound', {
        artifacts: { claimName: 'artifacts' },
        nodeSelector: { 'nvidia.com/gpu.present': 'true' },
      });
      const refused = await eventually(async () => {
        const status = await statusOf('quota-bound');
        const ready = status?.conditions?.find((c) => c.type === 'Ready');
        return ready?.reason === 'ApplyFailed' && status;
      }, 'Ready=False ApplyFailed');
      assert.equal(refused.phase, 'Failed');
      assert.match(
        refused.conditions?.find((c) => c.type === 'Ready')?.message ?? '',
        /^the API server refused Job quota-bound-train-g1: HTTP 403: .*exceeded quota: no-jobs/,
      );
    });
    // Retried with backoff: the Job is created and the training runs.
    await eventually(() => job('quota-bound-train-g1'), 'the training Job, created on a retry');
    await eventually(async () => {
      const status = await statusOf('quota-bound');
      return status?.phase !== 'Failed' && status;
    }, 'a phase other than Failed');
  });
});
