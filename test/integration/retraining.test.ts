/**
 * Retraining and operator restarts against a real API server: two DeploymentTargets with
 * different budgets on one device class (so one shared LatencyProfile) serve generation 1 of a
 * supernet; a spec change retrains it (the harness plays its training and evaluation pods), and
 * both targets select again from generation 2's accuracy table, extract from generation 2 and
 * roll out, without the device being profiled again. Then the operator is stopped while a target
 * extracts and a new one started: it finds the Job and the Deployments it already made, creates no
 * second one, and the flow finishes.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import {
  AppsV1Api,
  BatchV1Api,
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
  type V1Deployment,
  type V1Job,
} from '@kubernetes/client-node';

import { formatTable, type AccuracyTable } from '../../compofa/tables.js';
import {
  DEPLOYMENT_TARGET,
  LATENCY_PROFILE,
  SUPERNET_TRAINING,
  type LatencyProfile,
  type SupernetTraining,
} from '../../operator/api/index.js';
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
  type CustomKind,
  type CustomResource,
} from '../harness/resources.js';
import { finishJob, markPodReady } from '../harness/pods.js';
import { waitFor } from '../harness/wait.js';
import { accuracyTable, latencyTable } from '../fixtures/tables.js';

const NAMESPACE = 'retrain';
const ARM = { 'kubernetes.io/arch': 'arm64' };
const TRAINING = 'fmnist';
const SUBNET_ANNOTATION = 'compofa.io/subnet';
const GENERATION_ANNOTATION = 'compofa.io/supernet-generation';
const TARGET_LABEL = 'compofa.io/deployment-target';

/** What one operator process logged: the `controller namespace/name` keys it reconciled. */
interface OperatorLog {
  readonly reconciled: Set<string>;
}

/**
 * Generation 2's accuracy table: generation 1's with a later time and every subnet in `worse`
 * now measured at 30% (below any other), so each target's previous winner loses.
 */
function retrainedTable(worse: readonly string[]): AccuracyTable {
  const table = accuracyTable();
  return {
    ...table,
    measuredAt: '2026-12-05T00:00:00Z',
    rows: table.rows.map((row) => (worse.includes(row.subnet) ? { ...row, accuracy: 0.3 } : row)),
  };
}

describe('a retrained supernet and a restarted operator', () => {
  let plane: ControlPlane;
  let core: CoreV1Api;
  let batch: BatchV1Api;
  let apps: AppsV1Api;
  let objects: CustomObjectsApi;
  let manager: Manager;
  let log: OperatorLog;
  /** Warnings and errors of every operator process, shown with DEBUG_OPERATOR_LOGS set. */
  const problems: string[] = [];

  const startManager = async (): Promise<{ manager: Manager; log: OperatorLog }> => {
    const record: OperatorLog = { reconciled: new Set() };
    const started = new Manager({
      kubeConfig: plane.kubeConfig(),
      config: DEFAULT_OPERATOR_CONFIG,
      logger: new Logger('debug', (line) => {
        const entry = JSON.parse(line) as {
          level?: string;
          msg?: string;
          controller?: string;
          key?: string;
        };
        if (entry.msg === 'Reconcile successful' || entry.msg === 'Reconcile done, requeueing')
          record.reconciled.add(`${entry.controller ?? '?'} ${entry.key ?? '?'}`);
        if (entry.level === 'warn' || entry.level === 'error') problems.push(line);
      }),
      identity: 'retraining-test',
    });
    await started.startCaches();
    started.startControllers();
    return { manager: started, log: record };
  };

  const eventually = <T>(
    probe: () => Promise<T | undefined | false>,
    description: string,
    timeoutMs = 30_000,
  ) => waitFor(probe, { description, timeoutMs, hint: plane.logHint });
  const custom = (resource: CustomResource) => inNamespace(resource, NAMESPACE);
  const create = (kind: CustomKind, name: string, spec: Record<string, unknown>) =>
    createResource(objects, kind, NAMESPACE, name, spec);
  const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
  const publish = (name: string, key: string, text: string) =>
    publishData(core, NAMESPACE, name, key, text);
  const configMap = (name: string) =>
    core.readNamespacedConfigMap({ namespace: NAMESPACE, name }).catch(() => undefined);
  const job = (name: string) =>
    batch.readNamespacedJob({ namespace: NAMESPACE, name }).catch(() => undefined);
  const training = async () =>
    (await objects.getNamespacedCustomObject({
      ...custom(SUPERNET_TRAINING),
      name: TRAINING,
    })) as SupernetTraining;
  const targetStatus = (name: string) =>
    readTargetStatus(objects, DEPLOYMENT_TARGET, NAMESPACE, name);
  const profiles = async () =>
    (
      (await objects.listNamespacedCustomObject({ ...custom(LATENCY_PROFILE) })) as {
        items: LatencyProfile[];
      }
    ).items;
  /** The extraction Jobs of `subnet` from `generation`, found by what they run, not by name. */
  const extractionJobs = async (generation: number, subnet: string): Promise<V1Job[]> => {
    const jobs = await batch.listNamespacedJob({
      namespace: NAMESPACE,
      labelSelector: `app.kubernetes.io/component=extraction,compofa.io/supernet-training=${TRAINING}`,
    });
    return jobs.items.filter((item) => {
      const args = item.spec?.template.spec?.containers[0]?.args ?? [];
      const out = args[args.indexOf('--out') + 1] ?? '';
      return args[args.indexOf('--subnet') + 1] === subnet && out.includes(`/g${generation}/`);
    });
  };
  /** The one extraction Job of `subnet` from `generation`, asserting there is exactly one. */
  const theExtractionJob = async (generation: number, subnet: string): Promise<V1Job> => {
    const found = await extractionJobs(generation, subnet);
    assert.equal(
      found.length,
      1,
      `one extraction Job of ${subnet} from generation ${generation}, found ${found
        .map((j) => j.metadata?.name)
        .join(', ')}`,
    );
    const [only] = found;
    assert.ok(only);
    assert.ok(only.metadata?.name?.startsWith(`${TRAINING}-extract-g${generation}-`));
    return only;
  };
  /** The Deployments serving `target`, asserting there is exactly one. */
  const theDeployment = async (target: string): Promise<V1Deployment> => {
    const found = (
      await apps.listNamespacedDeployment({
        namespace: NAMESPACE,
        labelSelector: `${TARGET_LABEL}=${target}`,
      })
    ).items;
    assert.deepEqual(
      found.map((d) => d.metadata?.name),
      [`${target}-serving`],
      `one Deployment serving ${target}`,
    );
    const [only] = found;
    assert.ok(only);
    return only;
  };
  const revisionOf = (deployment: V1Deployment) => {
    const annotations = deployment.spec?.template.metadata?.annotations ?? {};
    return { id: annotations[SUBNET_ANNOTATION], generation: annotations[GENERATION_ANNOTATION] };
  };

  /**
   * Once `target`'s extraction of `subnet` from `generation` is done: waits for its Deployment
   * to run that revision, plays the kubelet for the new pod, and waits for phase Ready on it.
   */
  const serve = async (target: string, subnet: string, generation: number) => {
    await eventually(async () => {
      const deployment = await apps
        .readNamespacedDeployment({ namespace: NAMESPACE, name: `${target}-serving` })
        .catch(() => undefined);
      if (!deployment) return false;
      const revision = revisionOf(deployment);
      return revision.id === subnet && revision.generation === String(generation);
    }, `the Deployment of ${target} running ${subnet} of generation ${generation}`);
    const pod = await eventually(async () => {
      const pods = await core.listNamespacedPod({
        namespace: NAMESPACE,
        labelSelector: `${TARGET_LABEL}=${target}`,
      });
      return pods.items.find(
        (p) =>
          p.spec?.nodeName &&
          !p.metadata?.deletionTimestamp &&
          p.metadata?.annotations?.[SUBNET_ANNOTATION] === subnet &&
          p.metadata.annotations[GENERATION_ANNOTATION] === String(generation),
      );
    }, `a bound pod of ${target} running ${subnet} of generation ${generation}`);
    await markPodReady(core, pod);
    return eventually(async () => {
      const status = await targetStatus(target);
      return (
        status?.phase === 'Ready' &&
        status.supernetGeneration === generation &&
        status.selectedSubnet?.id === subnet &&
        status
      );
    }, `${target} Ready on ${subnet} of generation ${generation}`);
  };

  const latencies = latencyTable()
    .rows.map((row) => row.p95Ms)
    .sort((a, b) => a - b);
  const budget = (fraction: number) =>
    latencies[Math.floor(fraction * (latencies.length - 1))] ?? NaN;

  /** What each target served on generation 1 and then on generation 2. */
  const served: Record<'small' | 'large', { g1: string; g2: string }> = {
    small: { g1: '', g2: '' },
    large: { g1: '', g2: '' },
  };
  let profileName = '';

  before(async () => {
    plane = await ControlPlane.start();
    const config = plane.kubeConfig();
    core = config.makeApiClient(CoreV1Api);
    batch = config.makeApiClient(BatchV1Api);
    apps = config.makeApiClient(AppsV1Api);
    objects = config.makeApiClient(CustomObjectsApi);
    await plane.createNamespace(NAMESPACE);
    await installCrds(plane, NAMESPACE);
    await plane.createVolumeClaim(NAMESPACE, 'artifacts');
    await plane.createNode({ name: 'arm-1', labels: ARM });
    ({ manager, log } = await startManager());
    await create(SUPERNET_TRAINING, TRAINING, {
      artifacts: { claimName: 'artifacts' },
      resources: { gpus: 0 },
    });
    // Generation 1 is trained: its report holds the accuracy table.
    await eventually(() => configMap(`${TRAINING}-g1`), 'the report ConfigMap of generation 1');
    await publish(`${TRAINING}-g1`, 'accuracy.json', formatTable(accuracyTable()));
  });
  after(async () => {
    if (process.env.DEBUG_OPERATOR_LOGS) for (const line of problems) process.stderr.write(line);
    await manager.stop();
    await plane.stop();
  });

  it('serves two budgets on one device class from generation 1 through one LatencyProfile', async () => {
    for (const [name, fraction] of [
      ['small', 0.3],
      ['large', 0.9],
    ] as const) {
      await create(DEPLOYMENT_TARGET, name, {
        supernetRef: { name: TRAINING },
        device: { nodeSelector: ARM },
        latencyBudgetMs: budget(fraction),
      });
    }
    profileName = await eventually(
      async () => (await targetStatus('small'))?.profileRef?.name,
      'the profile reference of small',
    );
    assert.equal(
      await eventually(
        async () => (await targetStatus('large'))?.profileRef?.name,
        'the profile reference of large',
      ),
      profileName,
      'both targets share the profile of their device class',
    );
    // The harness measures the device.
    await eventually(() => configMap(`${profileName}-g1`), 'the profile report ConfigMap');
    await publish(`${profileName}-g1`, 'latency.json', formatTable(latencyTable()));

    for (const name of ['small', 'large'] as const) {
      const extracting = await eventually(async () => {
        const status = await targetStatus(name);
        return status?.phase === 'Extracting' && status;
      }, `${name} in phase Extracting`);
      assert.equal(extracting.supernetGeneration, 1);
      served[name].g1 = extracting.selectedSubnet?.id ?? '';
    }
    assert.notEqual(served.small.g1, served.large.g1, 'the two budgets select different subnets');
    for (const name of ['small', 'large'] as const) {
      const extraction = await theExtractionJob(1, served[name].g1);
      await finishJob(core, NAMESPACE, extraction.metadata?.name ?? '', 0, plane.logHint);
    }
    for (const name of ['small', 'large'] as const) await serve(name, served[name].g1, 1);
    assert.equal((await profiles()).length, 1);
  });

  it('a retrained supernet re-evaluates every target that uses it', async () => {
    const [profile] = await profiles();
    assert.ok(profile?.metadata?.uid, 'the shared LatencyProfile');
    const profileUid = profile.metadata.uid;
    assert.equal(profile.metadata.name, profileName);
    const deployments = {
      small: await theDeployment('small'),
      large: await theDeployment('large'),
    };

    // The user changes the training's spec: a new generation trains into its own folder.
    const patched = (await objects.patchNamespacedCustomObject(
      { ...custom(SUPERNET_TRAINING), name: TRAINING, body: { spec: { schedule: { seed: 1 } } } },
      mergePatch,
    )) as SupernetTraining;
    assert.equal(patched.metadata?.generation, 2);
    await eventually(() => job(`${TRAINING}-train-g2`), 'the training Job of generation 2');
    await finishJob(core, NAMESPACE, `${TRAINING}-train-g2`, 0, plane.logHint);
    await eventually(() => job(`${TRAINING}-evaluate-g2`), 'the evaluation Job of generation 2');
    await eventually(
      async () => (await training()).status?.phase === 'Evaluating',
      'the training in phase Evaluating',
    );
    // Until generation 2 publishes its table, the targets keep serving generation 1.
    for (const name of ['small', 'large'] as const) {
      const status = await targetStatus(name);
      assert.equal(status?.phase, 'Ready', `${name} still Ready while the supernet retrains`);
      assert.equal(status.supernetGeneration, 1);
      assert.equal(status.selectedSubnet?.id, served[name].g1);
    }

    const table = retrainedTable([served.small.g1, served.large.g1]);
    await publish(`${TRAINING}-g2`, 'accuracy.json', formatTable(table));
    await finishJob(core, NAMESPACE, `${TRAINING}-evaluate-g2`, 0, plane.logHint);
    const trained = await eventually(async () => {
      const status = (await training()).status;
      return status?.phase === 'Succeeded' && status.trainedGeneration === 2 && status;
    }, 'generation 2 trained');
    assert.equal(trained.accuracyTableRef?.configMapName, `${TRAINING}-g2`);

    const accuracyOf = new Map(table.rows.map((row) => [row.subnet, row.accuracy]));
    for (const name of ['small', 'large'] as const) {
      const status = await eventually(async () => {
        const current = await targetStatus(name);
        return current?.supernetGeneration === 2 && current;
      }, `${name} selecting from generation 2`);
      const chosen = status.selectedSubnet?.id ?? '';
      assert.notEqual(chosen, served[name].g1, `${name} selects anew from generation 2's table`);
      assert.equal(status.predictedAccuracy, accuracyOf.get(chosen));
      assert.ok((status.expectedLatencyMs ?? Infinity) <= budget(name === 'small' ? 0.3 : 0.9));
      assert.equal(status.phase, 'Extracting');
      served[name].g2 = chosen;
      await theExtractionJob(2, chosen);
      // The old pods keep serving generation 1 until the new model is extracted.
      const deployment = await theDeployment(name);
      assert.equal(deployment.metadata?.uid, deployments[name].metadata?.uid);
      assert.deepEqual(revisionOf(deployment), { id: served[name].g1, generation: '1' });
    }
    assert.notEqual(served.small.g2, served.large.g2);

    // The device was not profiled again: the same profile, at its first generation.
    const profilesNow = await profiles();
    assert.deepEqual(
      profilesNow.map((p) => [p.metadata?.name, p.metadata?.uid, p.metadata?.generation]),
      [[profileName, profileUid, 1]],
    );
    assert.equal(profilesNow[0]?.status?.phase, 'Ready');
    assert.equal(await job(`${profileName}-profile-g2`), undefined);
    assert.equal(await configMap(`${profileName}-g2`), undefined);
    for (const name of ['small', 'large'] as const) {
      assert.equal((await targetStatus(name))?.profileRef?.name, profileName);
    }

    for (const name of ['small', 'large'] as const) {
      const extraction = await theExtractionJob(2, served[name].g2);
      await finishJob(core, NAMESPACE, extraction.metadata?.name ?? '', 0, plane.logHint);
    }
    for (const name of ['small', 'large'] as const) {
      await serve(name, served[name].g2, 2);
      const deployment = await theDeployment(name);
      assert.equal(deployment.spec?.template.metadata?.annotations?.[GENERATION_ANNOTATION], '2');
      assert.equal(deployment.metadata?.uid, deployments[name].metadata?.uid);
    }
  });

  it('restarting the operator in the middle of a flow creates no duplicate Job or Deployment', async () => {
    const deployments = {
      small: await theDeployment('small'),
      large: await theDeployment('large'),
    };
    // A new budget for small: a subnet of generation 2 that nothing extracted yet.
    await objects.patchNamespacedCustomObject(
      {
        ...custom(DEPLOYMENT_TARGET),
        name: 'small',
        body: { spec: { latencyBudgetMs: budget(0.6) } },
      },
      mergePatch,
    );
    const extracting = await eventually(async () => {
      const status = await targetStatus('small');
      return (
        status?.phase === 'Extracting' && status.selectedSubnet?.id !== served.small.g2 && status
      );
    }, 'small in phase Extracting its new choice');
    const chosen = extracting.selectedSubnet?.id ?? '';
    assert.equal(extracting.supernetGeneration, 2);
    assert.notEqual(chosen, served.large.g2);
    const extraction = await theExtractionJob(2, chosen);
    assert.equal(extraction.status?.succeeded ?? 0, 0, 'the extraction has not finished');

    await manager.stop();
    ({ manager, log } = await startManager());
    // The new operator has looked at everything once (and acted on what it saw).
    const keys = [
      `supernettraining ${NAMESPACE}/${TRAINING}`,
      `latencyprofile ${NAMESPACE}/${profileName}`,
      `deploymenttarget ${NAMESPACE}/small`,
      `deploymenttarget ${NAMESPACE}/large`,
    ];
    await eventually(
      () => Promise.resolve(keys.every((key) => log.reconciled.has(key))),
      `the restarted operator reconciling ${keys.join(', ')}`,
    );

    const again = await theExtractionJob(2, chosen);
    assert.equal(again.metadata?.uid, extraction.metadata?.uid, 'the same extraction Job');
    const pods = await core.listNamespacedPod({
      namespace: NAMESPACE,
      labelSelector: `batch.kubernetes.io/job-name=${extraction.metadata?.name ?? ''}`,
    });
    assert.equal(pods.items.length, 1, 'one extraction pod');
    for (const name of ['small', 'large'] as const) {
      const deployment = await theDeployment(name);
      assert.equal(deployment.metadata?.uid, deployments[name].metadata?.uid);
      assert.equal(
        deployment.metadata?.generation,
        deployments[name].metadata?.generation,
        `no rollout of ${name} from the restart`,
      );
      assert.deepEqual(revisionOf(deployment), { id: served[name].g2, generation: '2' });
    }
    const status = await targetStatus('small');
    assert.equal(status?.phase, 'Extracting');
    assert.equal(status.selectedSubnet?.id, chosen);
    assert.equal((await targetStatus('large'))?.phase, 'Ready');

    // The flow finishes under the new operator.
    await finishJob(core, NAMESPACE, extraction.metadata?.name ?? '', 0, plane.logHint);
    await serve('small', chosen, 2);
    await theExtractionJob(2, chosen);
    for (const name of ['small', 'large'] as const) {
      const deployment = await theDeployment(name);
      assert.equal(deployment.metadata?.uid, deployments[name].metadata?.uid);
    }
  });
});
