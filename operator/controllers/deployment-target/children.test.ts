import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import type { V1OwnerReference } from '@kubernetes/client-node';

import { DEFAULT_OPERATOR_CONFIG } from '../../config.js';
import type { SupernetTraining } from '../supernet-training/children.js';
import {
  servingDeployment,
  servingEndpoint,
  servingService,
  targetProfile,
  type DeploymentTarget,
} from './children.js';

const owner = (kind: string, name: string): V1OwnerReference => ({
  apiVersion: 'compofa.io/v1alpha1',
  kind,
  name,
  uid: `${name}-uid`,
  controller: true,
  blockOwnerDeletion: true,
});

const training: SupernetTraining = {
  apiVersion: 'compofa.io/v1alpha1',
  kind: 'SupernetTraining',
  metadata: { name: 'fmnist', namespace: 'ml', uid: 'fmnist-uid', generation: 2 },
  spec: { artifacts: { claimName: 'artifacts' } },
};

function target(name: string, spec: Partial<DeploymentTarget['spec']> = {}): DeploymentTarget {
  return {
    apiVersion: 'compofa.io/v1alpha1',
    kind: 'DeploymentTarget',
    metadata: { name, namespace: 'ml', uid: `${name}-uid`, generation: 1 },
    spec: {
      supernetRef: { name: 'fmnist' },
      device: { nodeSelector: { 'kubernetes.io/arch': 'arm64' }, resources: { cpu: '2' } },
      latencyBudgetMs: 40,
      ...spec,
    },
  };
}

describe('the children of a DeploymentTarget', () => {
  it('shares one LatencyProfile among targets on the same devices and batch size', () => {
    const a = targetProfile(target('a'), training, owner('SupernetTraining', 'fmnist'));
    const b = targetProfile(
      target('b', { latencyBudgetMs: 80 }),
      training,
      owner('SupernetTraining', 'fmnist'),
    );
    const other = targetProfile(
      target('c', { batchSize: 8 }),
      training,
      owner('SupernetTraining', 'fmnist'),
    );
    assert.equal(a.metadata?.name, b.metadata?.name, 'the budget does not change the profile');
    assert.notEqual(a.metadata?.name, other.metadata?.name);
    assert.match(a.metadata?.name ?? '', /^fmnist-lp-[0-9a-f]{10}$/);
    assert.deepEqual(a.spec, {
      designSpace: 'compound',
      architecture: { preset: 'small' },
      device: { nodeSelector: { 'kubernetes.io/arch': 'arm64' }, resources: { cpu: '2' } },
      batchSize: 1,
    });
    assert.equal(a.metadata?.ownerReferences?.[0]?.kind, 'SupernetTraining');
  });

  it('serves the chosen model on the device nodes with probes and the budget', () => {
    const deployment = servingDeployment(
      target('edge', {
        serving: { replicas: 2 },
        drift: { tolerance: 0.25 },
        latencyStatistic: 'median',
      }),
      training,
      { id: 'r28-d2e3-d3e4-d4e6-d2e3-d3e4', supernetGeneration: 2 },
      owner('DeploymentTarget', 'edge'),
      DEFAULT_OPERATOR_CONFIG,
    );
    const spec = deployment.spec;
    const pod = spec?.template.spec;
    const container = pod?.containers[0];
    const env = Object.fromEntries((container?.env ?? []).map((e) => [e.name, e.value]));
    assert.equal(deployment.metadata?.name, 'edge-serving');
    assert.equal(spec?.replicas, 2);
    assert.deepEqual(spec.strategy?.rollingUpdate, { maxUnavailable: 0, maxSurge: 1 });
    assert.deepEqual(pod?.nodeSelector, { 'kubernetes.io/arch': 'arm64' });
    assert.deepEqual(container?.command, ['compofa-serve']);
    assert.equal(env.COMPOFA_MODEL_DIR, '/artifacts/fmnist/g2/models/r28-d2e3-d3e4-d4e6-d2e3-d3e4');
    assert.equal(env.COMPOFA_LATENCY_BUDGET_MS, '40');
    assert.equal(env.COMPOFA_LATENCY_TOLERANCE, '0.25');
    assert.equal(env.COMPOFA_LATENCY_STATISTIC, 'median', 'the statistic the budget bounds');
    assert.equal(env.TF_NUM_INTRAOP_THREADS, '2', 'the same threads as its profile');
    assert.equal(env.COMPOFA_THREADS, '2', 'the same threads as its profile');
    assert.equal(env.COMPOFA_ENGINE, 'onnxruntime', 'the same engine as its profile');
    // Answers for 5 s after SIGTERM while it leaves the Service, drains for up to 30 s, and the
    // grace period covers both.
    assert.equal(env.COMPOFA_SHUTDOWN_DELAY_MS, '5000');
    assert.equal(env.COMPOFA_DRAIN_TIMEOUT_MS, '30000');
    assert.equal(pod.terminationGracePeriodSeconds, 40);
    assert.equal(container.readinessProbe?.httpGet?.path, '/v2/health/ready');
    assert.equal(container.livenessProbe?.httpGet?.path, '/v2/health/live');
    assert.equal(
      pod.volumes?.find((v) => v.name === 'artifacts')?.persistentVolumeClaim?.readOnly,
      true,
    );
    assert.equal(pod.automountServiceAccountToken, false);
    assert.equal(pod.serviceAccountName, undefined, "the namespace's default account");
    assert.equal(spec.progressDeadlineSeconds, 300);
    assert.equal(
      spec.template.metadata?.annotations?.['compofa.io/subnet'],
      'r28-d2e3-d3e4-d4e6-d2e3-d3e4',
    );
    // The selector matches the pod labels.
    for (const [key, value] of Object.entries(spec.selector.matchLabels ?? {})) {
      assert.equal(spec.template.metadata.labels?.[key], value);
    }
  });

  it("runs under the configured serving account, still without a token, with the target's deadline", () => {
    const deployment = servingDeployment(
      target('edge', { serving: { progressDeadlineSeconds: 45 } }),
      training,
      { id: 'r28-d2e3-d3e4-d4e6-d2e3-d3e4', supernetGeneration: 1 },
      owner('DeploymentTarget', 'edge'),
      { ...DEFAULT_OPERATOR_CONFIG, servingServiceAccount: 'compofa-serving' },
    );
    const pod = deployment.spec?.template.spec;
    assert.equal(pod?.serviceAccountName, 'compofa-serving');
    assert.equal(pod.automountServiceAccountToken, false);
    assert.equal(deployment.spec?.progressDeadlineSeconds, 45);
  });

  it('puts a Service named after the target in front of the pods', () => {
    const service = servingService(target('edge'), owner('DeploymentTarget', 'edge'));
    assert.equal(service.metadata?.name, 'edge');
    assert.deepEqual(service.spec?.ports, [
      { name: 'http', port: 80, targetPort: 'http', protocol: 'TCP' },
    ]);
    assert.equal(servingEndpoint(target('edge')), 'http://edge.ml.svc:80/v2/models/edge');
  });
});
