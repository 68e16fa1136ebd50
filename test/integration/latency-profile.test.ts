/**
 * The LatencyProfile controller against a real API server: the profiling Job lands on the
 * device's nodes, the published table reaches status, external tables are validated, and a
 * selector no node matches is explained.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import {
  BatchV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubernetesObjectApi,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node';

import { IMAGENET_ARCHITECTURE } from '../../compofa/architecture.js';
import { CompoundSpace } from '../../compofa/design-space.js';
import { formatTable } from '../../compofa/tables.js';
import { LATENCY_PROFILE, type LatencyProfile } from '../../operator/api/index.js';
import { DEFAULT_OPERATOR_CONFIG } from '../../operator/config.js';
import {
  servingDeployment,
  servingService,
  targetProfile,
  type DeploymentTarget,
} from '../../operator/controllers/deployment-target/children.js';
import {
  extractionJob,
  type SupernetTraining,
} from '../../operator/controllers/supernet-training/children.js';
import { controllerReference, serverSideApply } from '../../operator/runtime/apply.js';
import { Manager } from '../../operator/manager.js';
import { Logger } from '../../serving/logger.js';
import { ControlPlane } from '../harness/control-plane.js';
import { installCrds } from '../harness/crds.js';
import { finishJob } from '../harness/pods.js';
import { createResource, withResourceQuota } from '../harness/resources.js';
import { waitFor } from '../harness/wait.js';
import { ONNX_RUNTIME_VERSION } from '../../compofa/engines.js';
import { latencyTable } from '../fixtures/tables.js';

const NAMESPACE = 'profiles';
const ARM = {
  'kubernetes.io/arch': 'arm64',
  'feature.node.kubernetes.io/cpu-model.vendor_id': 'ARM',
};

describe('the LatencyProfile controller', () => {
  let plane: ControlPlane;
  let core: CoreV1Api;
  let objects: CustomObjectsApi;
  let manager: Manager;

  before(async () => {
    plane = await ControlPlane.start();
    core = plane.kubeConfig().makeApiClient(CoreV1Api);
    objects = plane.kubeConfig().makeApiClient(CustomObjectsApi);
    await plane.createNamespace(NAMESPACE);
    await installCrds(plane, NAMESPACE);
    await plane.createNode({ name: 'arm-edge-1', labels: ARM });
    await plane.createNode({ name: 'x86-1', labels: { 'kubernetes.io/arch': 'amd64' } });
    manager = new Manager({
      kubeConfig: plane.kubeConfig(),
      config: { ...DEFAULT_OPERATOR_CONFIG, runtimeImage: 'example.test/runtime:1' },
      logger: new Logger('warn', () => undefined),
    });
    await manager.startCaches();
    manager.startControllers();
  });
  after(async () => {
    await manager.stop();
    await plane.stop();
  });

  const target = {
    group: LATENCY_PROFILE.group,
    version: LATENCY_PROFILE.version,
    plural: LATENCY_PROFILE.plural,
    namespace: NAMESPACE,
  };
  const create = (name: string, spec: Record<string, unknown>) =>
    createResource(objects, LATENCY_PROFILE, NAMESPACE, name, spec);
  /** Job `name` of the namespace, or undefined while it does not exist. */
  const jobNamed = (name: string) =>
    plane
      .kubeConfig()
      .makeApiClient(BatchV1Api)
      .readNamespacedJob({ namespace: NAMESPACE, name })
      .catch(() => undefined);
  const statusOf = async (name: string) =>
    ((await objects.getNamespacedCustomObject({ ...target, name })) as LatencyProfile).status;
  const readyWhen = (name: string, reason: string) =>
    waitFor(
      async () => {
        const status = await statusOf(name);
        const ready = status?.conditions?.find((c) => c.type === 'Ready');
        return ready?.reason === reason && status !== undefined && { status, ready };
      },
      { description: `${name} Ready reason ${reason}`, timeoutMs: 30_000, hint: plane.logHint },
    );

  it('profiles on the device nodes and publishes the table with what it was measured on', async () => {
    await create('arm-b1', {
      device: { nodeSelector: ARM, resources: { cpu: '2' } },
      warmupRuns: 2,
      timedRuns: 5,
    });
    const job = await waitFor(() => jobNamed('arm-b1-profile-g1'), {
      description: 'the profiling Job',
      timeoutMs: 30_000,
    });
    const pod = job.spec?.template.spec;
    assert.deepEqual(pod?.nodeSelector, ARM);
    const container = pod.containers[0];
    assert.equal(container?.image, 'example.test/runtime:1');
    assert.deepEqual(container.args?.slice(0, 1), ['profile']);
    assert.ok(container.args.join(' ').includes('--warmup-runs 2 --timed-runs 5'));
    assert.equal(container.env?.find((e) => e.name === 'TF_NUM_INTRAOP_THREADS')?.value, '2');
    assert.equal(container.env.find((e) => e.name === 'COMPOFA_THREADS')?.value, '2');
    assert.equal(container.env.find((e) => e.name === 'COMPOFA_ENGINE')?.value, 'onnxruntime');
    assert.equal(
      pod.volumes?.some((v) => v.persistentVolumeClaim),
      false,
      'no weights needed',
    );

    const table = {
      ...latencyTable(),
      device: { ...latencyTable().device, nodeName: 'arm-edge-1', oneDnn: false },
    };
    await core.patchNamespacedConfigMap(
      {
        namespace: NAMESPACE,
        name: 'arm-b1-g1',
        body: { data: { 'latency.json': formatTable(table) } },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    await finishJob(core, NAMESPACE, 'arm-b1-profile-g1', 0, plane.logHint);
    const { status } = await readyWhen('arm-b1', 'TableReady');
    assert.equal(status.phase, 'Ready');
    assert.deepEqual(status.tableRef, {
      configMapName: 'arm-b1-g1',
      key: 'latency.json',
      rows: 243,
    });
    assert.equal(status.measuredOn?.node, 'arm-edge-1');
    assert.equal(status.measuredOn.cpuModel, 'test CPU');
    assert.equal(status.measuredOn.oneDnn, false, 'the status schema keeps the oneDNN setting');
    assert.equal(status.measuredOn.engine, 'onnxruntime', 'and the engine');
    assert.equal(status.measuredOn.engineVersion, ONNX_RUNTIME_VERSION);
  });

  it('validates an external table without running a Job', async () => {
    await core.createNamespacedConfigMap({
      namespace: NAMESPACE,
      body: { metadata: { name: 'jetson' }, data: { 'latency.json': formatTable(latencyTable()) } },
    });
    await create('jetson-b1', {
      device: { nodeSelector: { 'nvidia.com/gpu.product': 'NVIDIA-Jetson-Orin' } },
      external: { configMapName: 'jetson' },
    });
    const { status } = await readyWhen('jetson-b1', 'ExternalTableValid');
    assert.deepEqual(status.tableRef, { configMapName: 'jetson', key: 'latency.json', rows: 243 });
    const jobs = await plane
      .kubeConfig()
      .makeApiClient(BatchV1Api)
      .listNamespacedJob({ namespace: NAMESPACE });
    assert.equal(
      jobs.items.some((j) => j.metadata?.name?.startsWith('jetson-b1')),
      false,
    );
  });

  it('refuses a table of another architecture, naming both', async () => {
    await core.createNamespacedConfigMap({
      namespace: NAMESPACE,
      body: {
        metadata: { name: 'imagenet-table' },
        data: {
          'latency.json': formatTable(latencyTable(new CompoundSpace(IMAGENET_ARCHITECTURE))),
        },
      },
    });
    await create('mismatch', {
      device: { nodeSelector: { 'kubernetes.io/arch': 'amd64' } },
      external: { configMapName: 'imagenet-table' },
    });
    const { status, ready } = await readyWhen('mismatch', 'ArchitectureMismatch');
    assert.equal(status.phase, 'Failed');
    assert.match(
      ready.message,
      /was measured for architecture [0-9a-f]{16}, not [0-9a-f]{16} \(preset small\)/,
    );
  });

  it('refuses a table measured with another engine than the serving pods run, naming both', async () => {
    const measured = latencyTable();
    const tfjsTable = {
      ...measured,
      device: {
        cpuModel: 'Cortex-A78',
        threads: 4,
        backend: 'tensorflow',
        tensorflowVersion: '2.21.0',
      },
    };
    await core.createNamespacedConfigMap({
      namespace: NAMESPACE,
      body: { metadata: { name: 'tfjs-table' }, data: { 'latency.json': formatTable(tfjsTable) } },
    });
    await create('tfjs-measured', {
      device: { nodeSelector: { 'kubernetes.io/arch': 'amd64' } },
      external: { configMapName: 'tfjs-table' },
    });
    const { status, ready } = await readyWhen('tfjs-measured', 'EngineMismatch');
    assert.equal(status.phase, 'Failed');
    assert.match(
      ready.message,
      new RegExp(
        `latency\\.json was measured with tfjs 2\\.21\\.0, but the model is served with onnxruntime ${ONNX_RUNTIME_VERSION.replaceAll('.', '\\.')}; profile again with the engine that serves`,
      ),
    );
  });

  it("accepts a DeploymentTarget's children (server-side dry run)", async () => {
    const training: SupernetTraining = {
      apiVersion: 'compofa.io/v1alpha1',
      kind: 'SupernetTraining',
      metadata: { name: 'fmnist', namespace: NAMESPACE, uid: 'fmnist-uid', generation: 2 },
      spec: { artifacts: { claimName: 'artifacts' } },
    };
    const target: DeploymentTarget = {
      apiVersion: 'compofa.io/v1alpha1',
      kind: 'DeploymentTarget',
      metadata: { name: 'edge', namespace: NAMESPACE, uid: 'edge-uid', generation: 1 },
      spec: {
        supernetRef: { name: 'fmnist' },
        device: { nodeSelector: ARM, resources: { cpu: '2', memory: '1Gi' } },
        latencyBudgetMs: 40,
      },
    };
    const subnet = 'r28-d2e3-d3e4-d4e6-d2e3-d3e4';
    const children = [
      targetProfile(target, training, controllerReference(training)),
      extractionJob(training, 2, subnet, controllerReference(training), DEFAULT_OPERATOR_CONFIG),
      servingDeployment(
        target,
        training,
        { id: subnet, supernetGeneration: 2 },
        controllerReference(target),
        DEFAULT_OPERATOR_CONFIG,
      ),
      servingService(target, controllerReference(target)),
    ];
    const api = KubernetesObjectApi.makeApiClient(plane.kubeConfig());
    for (const child of children) {
      const accepted = await serverSideApply(api, child, 'compofa-operator', { dryRun: true });
      assert.equal(accepted.metadata?.name, child.metadata?.name);
    }
  });

  it('says when no node carries the device labels', async () => {
    await create('riscv', { device: { nodeSelector: { 'kubernetes.io/arch': 'riscv64' } } });
    const { ready } = await readyWhen('riscv', 'NoMatchingNodes');
    assert.match(ready.message, /didn't match Pod's node affinity\/selector/);
  });
  it('says which Job the API server refused, and profiles once allowed', async () => {
    await withResourceQuota(core, NAMESPACE, 'no-jobs', { 'count/jobs.batch': '0' }, async () => {
      await create('quota-bound', { device: { nodeSelector: ARM } });
      const { status, ready } = await readyWhen('quota-bound', 'ApplyFailed');
      assert.equal(status.phase, 'Failed');
      assert.match(
        ready.message,
        /^the API server refused Job quota-bound-profile-g1: HTTP 403: .*exceeded quota: no-jobs/,
      );
    });
    // Retried with backoff once the quota is gone: the Job is created, the failure forgotten.
    await waitFor(() => jobNamed('quota-bound-profile-g1'), {
      description: 'the profiling Job, created on a retry',
      timeoutMs: 30_000,
    });
    await waitFor(async () => (await statusOf('quota-bound'))?.phase !== 'Failed', {
      description: 'a phase other than Failed',
      timeoutMs: 30_000,
      hint: plane.logHint,
    });
  });
});
