import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import { CoreV1Api, RbacAuthorizationV1Api } from '@kubernetes/client-node';

import { SMALL_ARCHITECTURE } from '../../compofa/architecture.js';
import { CompoundSpace } from '../../compofa/design-space.js';
import { parseLatencyTable } from '../../compofa/tables.js';
import { ConfigMapReporter, PROGRESS_KEY, ReportError } from '../../trainer/report.js';
import { ControlPlane } from '../harness/control-plane.js';
import { runCommand } from '../harness/run-command.js';

const NAMESPACE = 'reports';
const CLI = fileURLToPath(new URL('../../trainer/cli.ts', import.meta.url));

describe('reports from pods to the operator through a ConfigMap', () => {
  let plane: ControlPlane;
  let core: CoreV1Api;
  let dir: string;

  before(async () => {
    plane = await ControlPlane.start();
    core = plane.kubeConfig().makeApiClient(CoreV1Api);
    await plane.createNamespace(NAMESPACE);
    dir = await mkdtemp(join(tmpdir(), 'compofa-report-'));
  });
  after(async () => {
    await plane.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const createConfigMap = (name: string) =>
    core.createNamespacedConfigMap({ namespace: NAMESPACE, body: { metadata: { name } } });
  const data = async (name: string) =>
    (await core.readNamespacedConfigMap({ namespace: NAMESPACE, name })).data ?? {};

  const progress = (step: number) => ({
    stage: 'compound-1',
    step,
    totalSteps: 100,
    updatedAt: new Date(0).toISOString(),
  });

  it('throttles progress, and a result carries the latest progress with it', async () => {
    await createConfigMap('throttled');
    let now = 0;
    const reporter = new ConfigMapReporter(
      core,
      { namespace: NAMESPACE, name: 'throttled' },
      { minProgressIntervalMs: 1_000, now: () => now },
    );
    reporter.progress(progress(1));
    now = 500;
    reporter.progress(progress(2)); // within the interval: held back
    await reporter.flush();
    // flush writes the held-back report too.
    assert.equal(JSON.parse((await data('throttled'))[PROGRESS_KEY] ?? '{}').step, 2);
    now = 600;
    reporter.progress(progress(3));
    await reporter.publish('accuracy.json', '{"rows":[]}');
    const written = await data('throttled');
    assert.equal(written['accuracy.json'], '{"rows":[]}');
    assert.equal(JSON.parse(written[PROGRESS_KEY] ?? '{}').step, 3);
  });

  it('fails a result naming the ConfigMap when it is missing', async () => {
    const reporter = new ConfigMapReporter(core, { namespace: NAMESPACE, name: 'absent' });
    await assert.rejects(
      reporter.publish('accuracy.json', '{}'),
      (error: unknown) =>
        error instanceof ReportError &&
        /cannot write report ConfigMap reports\/absent: it does not exist/.test(error.message),
    );
  });

  it('needs no more than get and patch on its own ConfigMap', async () => {
    await createConfigMap('mine');
    await createConfigMap('someone-elses');
    await core.createNamespacedServiceAccount({
      namespace: NAMESPACE,
      body: { metadata: { name: 'trainer' } },
    });
    const rbac = plane.kubeConfig().makeApiClient(RbacAuthorizationV1Api);
    await rbac.createNamespacedRole({
      namespace: NAMESPACE,
      body: {
        metadata: { name: 'report-mine' },
        rules: [
          {
            apiGroups: [''],
            resources: ['configmaps'],
            resourceNames: ['mine'],
            verbs: ['get', 'patch'],
          },
        ],
      },
    });
    await rbac.createNamespacedRoleBinding({
      namespace: NAMESPACE,
      body: {
        metadata: { name: 'report-mine' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'report-mine' },
        subjects: [{ kind: 'ServiceAccount', name: 'trainer', namespace: NAMESPACE }],
      },
    });
    const asTrainer = await plane.kubeConfigAs(NAMESPACE, 'trainer');
    const trainerCore = asTrainer.makeApiClient(CoreV1Api);
    await new ConfigMapReporter(trainerCore, { namespace: NAMESPACE, name: 'mine' }).publish(
      'train.json',
      '{"steps":1}',
    );
    assert.equal((await data('mine'))['train.json'], '{"steps":1}');
    await assert.rejects(
      new ConfigMapReporter(trainerCore, { namespace: NAMESPACE, name: 'someone-elses' }).publish(
        'train.json',
        '{}',
      ),
      /service account may not patch it/,
    );
  });

  it('compofa profile --report-configmap publishes the latency table and progress', async () => {
    await createConfigMap('profile-run');
    const space = new CompoundSpace(SMALL_ARCHITECTURE);
    const subnets = [...space.enumerate()].slice(0, 2).map((s) => space.format(s));
    const result = await runCommand(
      process.execPath,
      [
        '--import',
        'tsx',
        CLI,
        'profile',
        ...['--subnets', subnets.join(','), '--warmup-runs', '1', '--timed-runs', '2'],
        ...['--out', join(dir, 'latency.json'), '--report-configmap', `${NAMESPACE}/profile-run`],
      ],
      { KUBECONFIG: plane.kubeconfigPath, TF_CPP_MIN_LOG_LEVEL: '2' },
    );
    assert.equal(result.code, 0, result.stderr);
    const written = await data('profile-run');
    const table = parseLatencyTable(
      JSON.parse(written['latency.json'] ?? 'null'),
      'ConfigMap',
      space,
    );
    assert.deepEqual(
      table.rows.map((row) => row.subnet),
      subnets,
    );
    const report = JSON.parse(written[PROGRESS_KEY] ?? '{}');
    assert.equal(report.stage, 'profiling');
    assert.equal(report.step, 2);
    assert.equal(report.totalSteps, 2);
  });
});
