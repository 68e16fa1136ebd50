// The whole job on real nodes, as `make demo` runs it: the chart installs the operator (built here
// from the Dockerfile) into a local cluster with a training node and three device classes, with a
// real Prometheus that scrapes the serving pods through the chart's PodMonitor and evaluates its
// PrometheusRule; examples/local is applied as it is. Every pod runs on the node class it is meant
// for, each target answers inference through its Service, a slowed-down device fires the drift
// alert and its target re-selects and rolls out under load without a failed request, and stopping
// leaves the host as it was.
import assert from 'node:assert/strict';
import { appendFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import { AppsV1Api, CoreV1Api, type V1Pod } from '@kubernetes/client-node';

import {
  DEMO_DEVICE_CLASSES,
  DEMO_FLEET_VALUES,
  DEMO_NAMESPACE,
  DEMO_SHARED_VOLUME,
  demonstrateDrift,
  DRIFTING,
  FleetNarrator,
  inferRequest,
} from '../harness/demo-fleet.js';
import { assertHostAsBefore, hostSnapshot, type HostSnapshot } from '../harness/host-snapshot.js';
import { LoadGenerator } from '../harness/load.js';
import { cleanUpAbandonedCluster } from '../harness/local-cluster.js';
import { LocalFleet } from '../harness/local-fleet.js';
import { httpGet } from '../harness/network.js';
import { runCommand } from '../harness/run-command.js';
import { GiveUpWaiting, waitFor } from '../harness/wait.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** Each example target and the device class its selector picks. */
const TARGET_NODES: Readonly<Record<string, string>> = {
  'on-large': 'large',
  'on-medium': 'medium',
  'on-small': 'small',
};

describe('the fleet on real nodes (make demo, shortened)', () => {
  let hostBefore: HostSnapshot;
  let fleet: LocalFleet;
  let core: CoreV1Api;
  let narrator: FleetNarrator;
  const log: string[] = [];
  let say: (line: string) => void = (line) => log.push(line);

  /** Fails with the cluster's state (pods, events, objects) and the narration appended. */
  const explained = async (check: () => Promise<void>): Promise<void> => {
    try {
      await check();
    } catch (error) {
      throw new Error(
        `${error instanceof Error ? error.message : String(error)}\n${log.slice(-60).join('\n')}\n${await fleet.cluster.diagnose()}`,
      );
    }
  };
  const podsWith = async (label: string): Promise<V1Pod[]> =>
    (await core.listNamespacedPod({ namespace: DEMO_NAMESPACE, labelSelector: label })).items;

  before(async () => {
    // A killed earlier run's leftovers would be undone by the start, after the snapshot.
    await cleanUpAbandonedCluster();
    hostBefore = await hostSnapshot();
    fleet = await LocalFleet.start({
      deviceClasses: DEMO_DEVICE_CLASSES,
      values: DEMO_FLEET_VALUES,
      sharedVolume: DEMO_SHARED_VOLUME,
    });
    core = fleet.cluster.plane.kubeConfig().makeApiClient(CoreV1Api);
    // The narration of make demo, kept beside the cluster's logs and quoted by a failure.
    const narration = join(fleet.cluster.dir, 'logs', 'narration.log');
    say = (line) => {
      const stamped = `${new Date().toISOString()} ${line}`;
      log.push(stamped);
      appendFileSync(narration, `${stamped}\n`);
    };
    narrator = new FleetNarrator(fleet.cluster.plane, DEMO_NAMESPACE, say);
  });
  // Also when a test failed; stop() is safe to call twice.
  after(() => fleet.stop());

  it('trains on the training node, profiles on each device class and serves each target from its own node', () =>
    explained(async () => {
      await fleet.cluster.plane.kubectl(['apply', '-k', join(ROOT, 'examples', 'local')]);
      await waitFor(
        async () => {
          const targets = await narrator.poll();
          const failed = targets.find((target) => target.status?.phase === 'Failed');
          if (failed) throw new GiveUpWaiting(`${failed.metadata?.name ?? ''} Failed`);
          return (
            targets.length === Object.keys(TARGET_NODES).length &&
            targets.every((target) => target.status?.phase === 'Ready')
          );
        },
        {
          description: 'every DeploymentTarget to be Ready',
          timeoutMs: 540_000,
          intervalMs: 3_000,
        },
      );

      const nodeOf = (pod: V1Pod): string => pod.spec?.nodeName ?? '';
      // The training Job's pods are gone once it succeeded; the scheduler's events name their node.
      const scheduled = (await core.listNamespacedEvent({ namespace: DEMO_NAMESPACE })).items
        .filter((event) => event.reason === 'Scheduled')
        .map((event) => /assigned [^/]+\/(\S+) to (\S+)/.exec(event.message ?? ''))
        .filter((match) => match !== null)
        .map(([, pod = '', node = '']) => ({ pod, node }));
      const training = scheduled.filter(({ pod }) => /^fashion-(train|evaluate)/.test(pod));
      assert.ok(training.length > 0, `a training pod ran: ${JSON.stringify(scheduled)}`);
      for (const { pod, node } of training) assert.equal(node, 'trainer', pod);

      // The tables came from pods on the device classes: one profiling pod per class.
      const profiling = await podsWith('app.kubernetes.io/component=profiling');
      assert.deepEqual(
        [...new Set(profiling.map(nodeOf))].sort(),
        Object.values(TARGET_NODES).sort(),
      );
      for (const pod of profiling) assert.equal(pod.status?.phase, 'Succeeded');

      for (const [target, node] of Object.entries(TARGET_NODES)) {
        const serving = await podsWith(
          `compofa.io/deployment-target=${target},app.kubernetes.io/component=serving`,
        );
        assert.ok(serving.length > 0, `serving pods of ${target}`);
        for (const pod of serving) assert.equal(nodeOf(pod), node, pod.metadata?.name);
      }
    }));

  it("answers inference through each target's Service", () =>
    explained(async () => {
      for (const target of Object.keys(TARGET_NODES)) {
        const base = await fleet.serviceUrl(DEMO_NAMESPACE, target);
        await waitFor(async () => (await httpGet(`${base}/v2/health/ready`)).status === 200, {
          description: `${base}/v2/health/ready`,
          timeoutMs: 30_000,
        });
        const response = await fetch(`${base}/v2/models/${target}/infer`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: inferRequest(new Float32Array(784).fill(0.5)),
        });
        const body = (await response.json()) as { outputs?: Array<{ shape?: number[] }> };
        assert.equal(response.status, 200, JSON.stringify(body));
        assert.deepEqual(body.outputs?.[0]?.shape, [1, 10]);
      }
    }));

  it('fires the drift alert when a device slows down, and the operator corrects the profile and acts, without a failed request', () =>
    explained(async () => {
      const { target: name, node } = DRIFTING;
      const { before, outcome, after, alertFired, load } = await demonstrateDrift(
        fleet,
        narrator,
        say,
      );
      say(`load: ${JSON.stringify(load)}`);
      assert.ok(alertFired, `CompofaLatencyDrift fired for ${name}`);
      // The profile is scaled by what the pods measured, over what it promised.
      const correction = after.status?.latencyCorrection;
      assert.ok((correction?.factor ?? 1) > 1, JSON.stringify(correction));
      assert.equal(correction?.subnet, before.status?.selectedSubnet?.id);
      if (outcome === 'reselected') {
        // A faster subnet, within the budget once scaled, rolled out on the same device class.
        assert.notEqual(after.status?.selectedSubnet?.id, before.status?.selectedSubnet?.id);
        assert.ok(
          (after.status?.expectedLatencyMs ?? Infinity) <= after.spec.latencyBudgetMs,
          JSON.stringify(after.status),
        );
      } else {
        // Nothing fits the scaled profile: the status names the fastest, the pods keep serving.
        const ready = after.status?.conditions?.find((c) => c.type === 'Ready');
        assert.match(ready?.message ?? '', /no subnet meets the .* budget; the fastest, r28-/);
        assert.equal(after.status?.selectedSubnet?.id, before.status?.selectedSubnet?.id);
      }
      const serving = await podsWith(
        `compofa.io/deployment-target=${name},app.kubernetes.io/component=serving`,
      );
      assert.ok(serving.length > 0);
      for (const pod of serving) assert.equal(pod.spec?.nodeName, node);
      assert.equal(load.failed, 0, `failed requests: ${load.failures.join('; ')}`);
      assert.ok(load.answered >= 100, `only ${load.answered} requests answered`);
    }));

  it('rolls a serving Deployment out under load without a failed request', () =>
    explained(async () => {
      const name = 'on-large';
      const url = `${await fleet.serviceUrl(DEMO_NAMESPACE, name)}/v2/models/${name}/infer`;
      const load = LoadGenerator.start({
        url,
        body: inferRequest(new Float32Array(784).fill(0.5)),
        concurrency: 2,
      });
      try {
        const apps = fleet.cluster.plane.kubeConfig().makeApiClient(AppsV1Api);
        const deploymentName = `${name}-serving`;
        const before = await apps.readNamespacedDeployment({
          name: deploymentName,
          namespace: DEMO_NAMESPACE,
        });
        // A change of the serving pods' resources: a new ReplicaSet, old pods drained.
        await fleet.cluster.plane.kubectl([
          'patch',
          'deploymenttarget',
          name,
          '-n',
          DEMO_NAMESPACE,
          '--type=merge',
          '-p',
          JSON.stringify({ spec: { serving: { resources: { cpu: '250m', memory: '640Mi' } } } }),
        ]);
        await waitFor(
          async () => {
            const deployment = await apps.readNamespacedDeployment({
              name: deploymentName,
              namespace: DEMO_NAMESPACE,
            });
            const {
              replicas = 0,
              updatedReplicas = 0,
              readyReplicas = 0,
            } = deployment.status ?? {};
            const pods = await podsWith(
              `compofa.io/deployment-target=${name},app.kubernetes.io/component=serving`,
            );
            return (
              (deployment.metadata?.generation ?? 0) > (before.metadata?.generation ?? 0) &&
              (deployment.status?.observedGeneration ?? 0) >=
                (deployment.metadata?.generation ?? 0) &&
              replicas === updatedReplicas &&
              readyReplicas === updatedReplicas &&
              pods.length === updatedReplicas &&
              pods.every((pod) => pod.spec?.containers[0]?.resources?.limits?.memory === '640Mi')
            );
          },
          { description: `${deploymentName} to roll out`, timeoutMs: 180_000, intervalMs: 1_000 },
        );
        // The old pod's drain, and a little more load on the new one.
        await new Promise((resolve) => setTimeout(resolve, 5_000));
      } finally {
        const counts = await load.stop();
        say(`rollout load: ${JSON.stringify(counts)}`);
        assert.equal(counts.failed, 0, `failed requests: ${counts.failures.join('; ')}`);
        assert.ok(counts.answered >= 100, `only ${counts.answered} requests answered`);
      }
    }));

  it('refuses a second make demo while this one runs, naming its process', async () => {
    const second = await runCommand(process.execPath, [
      '--import',
      'tsx',
      join(ROOT, 'scripts', 'demo.ts'),
    ]);
    assert.equal(second.code, 1, second.stdout);
    assert.match(
      second.stderr,
      new RegExp(`a local cluster is already running on this host \\(process ${process.pid}`),
    );
  });

  it('stops everything and leaves the host as it was', async () => {
    await fleet.stop();
    await assertHostAsBefore(hostBefore);
    assert.equal(existsSync(join(fleet.cluster.dir, 'nodes')), false);
  });
});
