/**
 * Two operator replicas against one real API server: only the Lease holder reconciles, and a
 * standby takes over when the leader stops.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import { BatchV1Api, CustomObjectsApi } from '@kubernetes/client-node';

import { SUPERNET_TRAINING } from '../../operator/api/index.js';
import { DEFAULT_OPERATOR_CONFIG } from '../../operator/config.js';
import { runOperator, type RunningOperator } from '../../operator/run.js';
import { Logger } from '../../serving/logger.js';
import { ControlPlane } from '../harness/control-plane.js';
import { installCrds } from '../harness/crds.js';
import { runCommand } from '../harness/run-command.js';
import { waitFor } from '../harness/wait.js';

const NAMESPACE = 'replicas';
const MAIN = fileURLToPath(new URL('../../operator/main.ts', import.meta.url));

/** Reconciles a replica has run, from its own metrics registry. */
async function reconciles(replica: RunningOperator): Promise<number> {
  const metrics = await replica.manager.registry.getMetricsAsJSON();
  const total = metrics.find((m) => m.name === 'controller_runtime_reconcile_total');
  return (total?.values ?? []).reduce((sum, value) => sum + value.value, 0);
}

describe('operator replicas', () => {
  let plane: ControlPlane;
  const replicas: RunningOperator[] = [];

  const start = (identity: string) =>
    runOperator({
      kubeConfig: plane.kubeConfig(),
      config: DEFAULT_OPERATOR_CONFIG,
      logger: new Logger('warn', () => undefined),
      metricsPort: 0,
      metricsHost: '127.0.0.1',
      identity,
      leaderElection: {
        namespace: NAMESPACE,
        name: 'compofa-operator',
        leaseDurationMs: 2_000,
        renewDeadlineMs: 1_500,
        retryPeriodMs: 300,
      },
    });

  before(async () => {
    plane = await ControlPlane.start();
    await plane.createNamespace(NAMESPACE);
    await installCrds(plane, NAMESPACE);
    replicas.push(await start('replica-a'), await start('replica-b'));
  });
  after(async () => {
    for (const replica of replicas) await replica.stop();
    await plane.stop();
  });

  const createTraining = (name: string) =>
    plane
      .kubeConfig()
      .makeApiClient(CustomObjectsApi)
      .createNamespacedCustomObject({
        group: SUPERNET_TRAINING.group,
        version: SUPERNET_TRAINING.version,
        plural: SUPERNET_TRAINING.plural,
        namespace: NAMESPACE,
        body: {
          apiVersion: SUPERNET_TRAINING.apiVersion,
          kind: SUPERNET_TRAINING.kind,
          metadata: { name },
          spec: { artifacts: { claimName: 'artifacts' } },
        },
      });
  const job = (name: string) =>
    plane
      .kubeConfig()
      .makeApiClient(BatchV1Api)
      .readNamespacedJob({ namespace: NAMESPACE, name })
      .catch(() => undefined);

  it('lets only the lease holder reconcile, and never both at once', async () => {
    const [a, b] = replicas as [RunningOperator, RunningOperator];
    await waitFor(() => a.leading || b.leading, { description: 'a leader', timeoutMs: 10_000 });
    for (let i = 0; i < 60; i++) {
      assert.ok(!(a.leading && b.leading), 'both replicas lead');
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    const [leader, standby] = a.leading ? [a, b] : [b, a];
    await createTraining('first');
    await waitFor(() => job('first-train-g1'), {
      description: 'the Job of the first training',
      timeoutMs: 20_000,
    });
    // The Job appears while the reconcile that created it is still writing status.
    await waitFor(async () => (await reconciles(leader)) > 0, {
      description: 'a finished reconcile on the leader',
      timeoutMs: 10_000,
    });
    assert.equal(await reconciles(standby), 0, 'the standby reconciled');
    for (const replica of [leader, standby]) {
      const ready = await fetch(`http://127.0.0.1:${replica.metricsPort}/readyz`);
      assert.equal(ready.status, 200, 'both replicas have synced caches');
    }
  });

  it('hands over to the standby when the leader stops', async () => {
    const leader = replicas.find((r) => r.leading);
    const standby = replicas.find((r) => !r.leading);
    assert.ok(leader && standby);
    await leader.stop();
    const stoppedAt = Date.now();
    await waitFor(() => standby.leading, { description: 'the standby to lead', timeoutMs: 10_000 });
    // Released, not expired: sooner than the 2 s lease would have run out.
    assert.ok(Date.now() - stoppedAt < 2_000, `took over after ${Date.now() - stoppedAt} ms`);
    await createTraining('second');
    await waitFor(() => job('second-train-g1'), {
      description: 'the Job of the second training',
      timeoutMs: 20_000,
    });
  });

  it('the process explains its flags and refuses bad ones', async () => {
    const help = await runCommand(process.execPath, ['--import', 'tsx', MAIN, '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /--lease-namespace\s+POD_NAMESPACE/);
    const bad = await runCommand(process.execPath, [
      '--import',
      'tsx',
      MAIN,
      '--metrics-port',
      'x',
    ]);
    assert.equal(bad.code, 2);
    assert.match(
      bad.stderr,
      /--metrics-port \(COMPOFA_METRICS_PORT\) must be a port number, got 'x'/,
    );
    const account = await runCommand(process.execPath, ['--import', 'tsx', MAIN], {
      COMPOFA_SERVING_SERVICE_ACCOUNT: 'Serving_Pods',
    });
    assert.equal(account.code, 2);
    assert.match(
      account.stderr,
      /--serving-service-account \(COMPOFA_SERVING_SERVICE_ACCOUNT\) must be a service account name .*got 'Serving_Pods'/,
    );
  });
});
