/**
 * The served latency read back into a DeploymentTarget, with real parts end to end: a real
 * compofa-serve runs the target's chosen subnet (extracted from a small-preset supernet) and
 * answers requests, a real Prometheus scrapes it with the namespace label the chart's PodMonitor
 * adds, and the operator, against a real API server, reads the latency from that Prometheus. The
 * profile the test publishes claims the device is twice as fast as it is, so the served latency
 * drifts above the budget: the target turns Degraded, and with `drift.action: reselect` it selects
 * a faster subnet from the profile scaled by what was measured.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';

import { BatchV1Api, CoreV1Api, CustomObjectsApi, EventsV1Api } from '@kubernetes/client-node';

import { formatTable } from '../../compofa/tables.js';
import { DEPLOYMENT_TARGET, SUPERNET_TRAINING } from '../../operator/api/index.js';
import { DEFAULT_OPERATOR_CONFIG } from '../../operator/config.js';
import { Manager } from '../../operator/manager.js';
import { parseConfig } from '../../serving/config.js';
import { Logger } from '../../serving/logger.js';
import { startServing, type RunningServer } from '../../serving/serve.js';
import { loadTensorFlow } from '../../trainer/backend.js';
import { accuracyTable, latencyTable, smallSpace } from '../fixtures/tables.js';
import { writeServedModel } from '../fixtures/served-model.js';
import { ControlPlane } from '../harness/control-plane.js';
import { installCrds } from '../harness/crds.js';
import {
  createResource,
  publishData,
  readTargetStatus,
  type CustomKind,
} from '../harness/resources.js';
import { finishJob, markPodReady } from '../harness/pods.js';
import { TestPrometheus } from '../harness/prometheus.js';
import { waitFor } from '../harness/wait.js';

const NAMESPACE = 'fleet';
const ARM = { 'kubernetes.io/arch': 'arm64' };

describe('served latency from Prometheus', () => {
  let plane: ControlPlane;
  let core: CoreV1Api;
  let objects: CustomObjectsApi;
  let manager: Manager;
  let server: RunningServer;
  let prometheus: TestPrometheus;
  let dir: string;
  let served: string;
  /** Median inference time of the served subnet on this machine, in ms. */
  let realMs: number;
  let traffic = true;
  let sending: Promise<void> = Promise.resolve();

  const eventually = <T>(probe: () => Promise<T | undefined | false>, description: string) =>
    waitFor(probe, {
      description,
      timeoutMs: 60_000,
      hint: `${plane.logHint}; Prometheus logs in ${prometheus.dir}`,
    });
  const create = (kind: CustomKind, name: string, spec: Record<string, unknown>) =>
    createResource(objects, kind, NAMESPACE, name, spec);
  const publish = (name: string, key: string, text: string) =>
    publishData(core, NAMESPACE, name, key, text);
  const targetStatus = (name: string) =>
    readTargetStatus(objects, DEPLOYMENT_TARGET, NAMESPACE, name);
  const configMap = (name: string) =>
    eventually(
      () => core.readNamespacedConfigMap({ namespace: NAMESPACE, name }).catch(() => undefined),
      `ConfigMap ${name}`,
    );

  /** One inference through the server; resolves with its Server-Timing duration in ms. */
  async function infer(): Promise<number> {
    const response = await fetch(`http://127.0.0.1:${server.port}/v2/models/edge/infer`, {
      method: 'POST',
      body: JSON.stringify({
        inputs: [
          { name: 'image', datatype: 'FP32', shape: [1, 28, 28, 1], data: Array(784).fill(0.5) },
        ],
      }),
    });
    assert.equal(response.status, 200, await response.text());
    const timing = /^inference;dur=([\d.]+)$/.exec(response.headers.get('server-timing') ?? '');
    return Number(timing?.[1]);
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'compofa-drift-'));
    const { tf } = await loadTensorFlow({ purpose: 'inference' });
    // The largest subnet: what the budget below selects.
    served = await writeServedModel(tf, join(dir, 'model'), 'largest', smallSpace());
    server = await startServing(
      parseConfig(
        [
          ...['--model-dir', join(dir, 'model'), '--model-name', 'edge', '--target', 'edge'],
          ...['--host', '127.0.0.1', '--port', '0'],
        ],
        {},
      ),
      tf,
      new Logger('warn', () => undefined),
    );
    await server.loaded;
    // The fastest of 20 warm calls: with ONNX Runtime they take about a millisecond, where one
    // slow call moves a median; the served median is surely above half of the fastest.
    for (let i = 0; i < 10; i++) await infer();
    const timings: number[] = [];
    for (let i = 0; i < 20; i++) timings.push(await infer());
    realMs = Math.min(...timings);
    prometheus = await TestPrometheus.start({
      targets: [
        { address: `127.0.0.1:${server.port}`, labels: { namespace: NAMESPACE, pod: 'edge-0' } },
      ],
    });
    // Steady traffic, as a serving pod would see.
    sending = (async () => {
      while (traffic) {
        await infer();
        await sleep(20);
      }
    })();

    plane = await ControlPlane.start();
    core = plane.kubeConfig().makeApiClient(CoreV1Api);
    objects = plane.kubeConfig().makeApiClient(CustomObjectsApi);
    await plane.createNamespace(NAMESPACE);
    await installCrds(plane, NAMESPACE);
    await plane.createVolumeClaim(NAMESPACE, 'artifacts');
    await plane.createNode({ name: 'arm-1', labels: ARM });
    manager = new Manager({
      kubeConfig: plane.kubeConfig(),
      config: {
        ...DEFAULT_OPERATOR_CONFIG,
        prometheusUrl: prometheus.url,
        driftCheckIntervalMs: 1000,
      },
      logger: new Logger('warn', () => undefined),
    });
    await manager.startCaches();
    manager.startControllers();
    await create(SUPERNET_TRAINING, 'fmnist', {
      artifacts: { claimName: 'artifacts' },
      resources: { gpus: 0 },
    });
    await configMap('fmnist-g1');
    await publish('fmnist-g1', 'accuracy.json', formatTable(accuracyTable()));
  });
  after(async () => {
    traffic = false;
    await sending;
    await manager.stop();
    await plane.stop();
    await prometheus.stop();
    await server.shutdown();
    await rm(dir, { recursive: true, force: true });
  });

  it('reports the drift and, with reselect, selects a faster subnet from the corrected profile', async () => {
    // The profile says the largest subnet takes half of what it really takes, and the budget is
    // exactly that: it is selected, then served at twice the budget.
    const largestMs = Math.max(...latencyTable().rows.map((row) => row.medianMs));
    const budget = realMs / 2;
    await create(DEPLOYMENT_TARGET, 'edge', {
      supernetRef: { name: 'fmnist' },
      device: { nodeSelector: ARM },
      latencyBudgetMs: budget,
      latencyStatistic: 'median',
      drift: { window: '5s', tolerance: 0.1, action: 'reselect' },
    });
    const profileName = await eventually(
      async () => (await targetStatus('edge'))?.profileRef?.name,
      'the profile reference',
    );
    await configMap(`${profileName}-g1`);
    await publish(
      `${profileName}-g1`,
      'latency.json',
      formatTable(latencyTable(smallSpace(), budget / largestMs)),
    );
    const extracting = await eventually(async () => {
      const status = await targetStatus('edge');
      return status?.phase === 'Extracting' && status;
    }, 'phase Extracting');
    assert.equal(extracting.selectedSubnet?.id, served);
    const batch = plane.kubeConfig().makeApiClient(BatchV1Api);
    const extractionOf = async (subnet: string) =>
      (await batch.listNamespacedJob({ namespace: NAMESPACE })).items.find((job) =>
        job.spec?.template.spec?.containers[0]?.args?.includes(subnet),
      );
    const extraction = await eventually(() => extractionOf(served), 'the extraction Job');
    await finishJob(core, NAMESPACE, extraction.metadata?.name ?? '', 0, plane.logHint);
    const pod = await eventually(async () => {
      const pods = await core.listNamespacedPod({
        namespace: NAMESPACE,
        labelSelector: 'compofa.io/deployment-target=edge',
      });
      return pods.items.find((p) => p.spec?.nodeName);
    }, 'a serving pod');
    await markPodReady(core, pod);

    // Prometheus' median of the served subnet: above the budget, so Degraded.
    const degraded = await eventually(async () => {
      const status = await targetStatus('edge');
      return status?.latencyCorrection && status;
    }, 'the drift measured and a correction recorded');
    const within = degraded.conditions?.find((c) => c.type === 'WithinBudget');
    assert.equal(within?.status, 'False', within?.message);
    assert.equal(within.reason, 'LatencyAboveBudget');
    assert.match(within.message, /^median [\d.]+ ms over 5s is above the budget/);
    const correction = degraded.latencyCorrection;
    assert.ok(correction);
    assert.equal(correction.subnet, served);
    assert.ok(
      correction.measuredLatencyMs > budget * 1.1,
      `measured ${correction.measuredLatencyMs} ms against a budget of ${budget} ms`,
    );
    assert.ok(Math.abs(correction.expectedLatencyMs - budget) < 1e-3 * budget + 1e-3);
    assert.ok(correction.factor > 1.1, `factor ${correction.factor}`);
    const warned = (
      await plane
        .kubeConfig()
        .makeApiClient(EventsV1Api)
        .listNamespacedEvent({ namespace: NAMESPACE })
    ).items.some(
      (event) =>
        event.regarding?.name === 'edge' &&
        event.type === 'Warning' &&
        event.reason === 'LatencyAboveBudget',
    );
    assert.ok(warned, 'a Warning Event LatencyAboveBudget');

    // The correction selects again: the profile times the factor must fit the budget.
    const reselected = await eventually(async () => {
      const status = await targetStatus('edge');
      return status?.selectedSubnet?.id !== served && status;
    }, 'a faster selection');
    const id = reselected.selectedSubnet?.id ?? '';
    const profiled = latencyTable(smallSpace(), budget / largestMs).rows.find(
      (row) => row.subnet === id,
    );
    assert.ok(profiled, `${id} is in the profile`);
    assert.ok(
      profiled.medianMs * correction.factor <= budget,
      `${id}: ${profiled.medianMs} ms x ${correction.factor} within ${budget} ms`,
    );
    assert.ok((reselected.expectedLatencyMs ?? Infinity) <= budget);
    assert.equal(reselected.previousSelection?.id, served, 'the drifting subnet is the fallback');
    assert.match(
      reselected.conditions?.find((c) => c.type === 'SubnetSelected')?.message ?? '',
      /as served/,
    );
    await eventually(() => extractionOf(id), `the extraction Job of ${id}`);
  });
});
