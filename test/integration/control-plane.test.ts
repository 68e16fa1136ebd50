import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';

import {
  ApiextensionsV1Api,
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  loadYaml,
  VersionApi,
  type V1CustomResourceDefinition,
  type V1Pod,
} from '@kubernetes/client-node';

import { apiErrorCode, apiErrorMessage } from '../harness/api-errors.js';
import { ControlPlane } from '../harness/control-plane.js';
import { waitFor } from '../harness/wait.js';

describe('the test control plane', () => {
  let plane: ControlPlane;
  let core: CoreV1Api;
  let apps: AppsV1Api;

  before(async () => {
    plane = await ControlPlane.start();
    const config = plane.kubeConfig();
    core = config.makeApiClient(CoreV1Api);
    apps = config.makeApiClient(AppsV1Api);
  });
  after(async () => {
    await plane.stop();
  });

  const eventually = <T>(
    probe: () => Promise<T | undefined | false>,
    description: string,
  ): Promise<T> => waitFor(probe, { description, timeoutMs: 30_000, hint: plane.logHint });

  it('serves Kubernetes v1.36.3 to client-node through the written kubeconfig', async () => {
    const version = await plane.kubeConfig().makeApiClient(VersionApi).getCode();
    assert.equal(version.gitVersion, 'v1.36.3');
  });

  it('writes a kubeconfig that kubectl accepts', async () => {
    const { stdout } = await plane.kubectl(['version', '-o', 'json']);
    const versions = JSON.parse(stdout) as { serverVersion?: { gitVersion?: string } };
    assert.equal(versions.serverVersion?.gitVersion, 'v1.36.3');
    const { stdout: whoami } = await plane.kubectl([
      'auth',
      'whoami',
      '-o',
      'jsonpath={.status.userInfo.groups}',
    ]);
    assert.match(whoami, /system:masters/);
  });

  it('installs a CRD with a schema, and the API server rejects invalid objects with their message', async () => {
    // client-node's typed APIs serialize by their model's property names (`_default`,
    // `x_kubernetes_validations`): a plain yaml.load() object would lose `default`, `enum` and the
    // CEL rules on the way out. loadYaml deserializes into the model first.
    const crd = loadYaml<V1CustomResourceDefinition>(
      await readFile(new URL('../fixtures/widget-crd.yaml', import.meta.url), 'utf8'),
    );
    const extensions = plane.kubeConfig().makeApiClient(ApiextensionsV1Api);
    await extensions.createCustomResourceDefinition({ body: crd });
    await eventually(async () => {
      const current = await extensions.readCustomResourceDefinition({
        name: 'widgets.test.compofa.io',
      });
      return current.status?.conditions?.some(
        (c) => c.type === 'Established' && c.status === 'True',
      );
    }, 'the Widget CRD to be established');
    await plane.createNamespace('crd-test');
    const objects = plane.kubeConfig().makeApiClient(CustomObjectsApi);
    const create = (name: string, spec: Record<string, unknown>): Promise<unknown> =>
      objects.createNamespacedCustomObject({
        group: 'test.compofa.io',
        version: 'v1',
        namespace: 'crd-test',
        plural: 'widgets',
        body: { apiVersion: 'test.compofa.io/v1', kind: 'Widget', metadata: { name }, spec },
      });

    // Established comes a moment before the new endpoint applies the schema's defaults: wait
    // with server-side dry runs until an object comes back defaulted.
    await eventually(async () => {
      const dryRun = (await objects
        .createNamespacedCustomObject({
          group: 'test.compofa.io',
          version: 'v1',
          namespace: 'crd-test',
          plural: 'widgets',
          dryRun: 'All',
          body: {
            apiVersion: 'test.compofa.io/v1',
            kind: 'Widget',
            metadata: { name: 'probe' },
            spec: { size: 'small', latencyBudgetMs: 1 },
          },
        })
        .catch(() => undefined)) as { spec?: { replicas?: number } } | undefined;
      return dryRun?.spec?.replicas === 1;
    }, 'the widgets endpoint to apply the schema');
    const valid = (await create('ok', { size: 'small', latencyBudgetMs: 5 })) as {
      spec: { replicas: number };
    };
    assert.equal(
      valid.spec.replicas,
      1,
      `the schema default was applied: ${JSON.stringify(valid)}`,
    );

    const rejected = async (spec: Record<string, unknown>): Promise<string> => {
      const error = await create('bad', spec).then(
        () => assert.fail(`the API server accepted ${JSON.stringify(spec)}`),
        (e: unknown) => e,
      );
      assert.equal(apiErrorCode(error), 422, apiErrorMessage(error));
      return apiErrorMessage(error);
    };
    assert.match(
      await rejected({ size: 'small', latencyBudgetMs: 0 }),
      /spec\.latencyBudgetMs: Invalid value: 0: spec\.latencyBudgetMs in body should be greater than 0/,
    );
    assert.match(
      await rejected({ size: 'medium', latencyBudgetMs: 5 }),
      /spec\.size: Unsupported value: "medium": supported values: "small", "large"/,
    );
    assert.match(
      await rejected({ size: 'large', latencyBudgetMs: 5, replicas: 1 }),
      /spec\.replicas: Invalid value: .*a large widget needs at least 2 replicas/,
    );
    assert.match(await rejected({ size: 'small' }), /spec\.latencyBudgetMs: Required value/);

    // kubectl reports the same message to a user.
    const manifest =
      'apiVersion: test.compofa.io/v1\nkind: Widget\nmetadata: {name: bad, namespace: crd-test}\nspec: {size: small, latencyBudgetMs: 5, replicas: 11}\n';
    await assert.rejects(
      plane.kubectl(['apply', '-f', '-'], manifest),
      /spec\.replicas: Invalid value: 11: spec\.replicas in body should be less than or equal to 10/,
    );
  });

  it("schedules a Deployment's pods onto the node that its nodeSelector names", async () => {
    const pool = { 'compofa.io/test-pool': 'edge' };
    await plane.createNode({ name: 'edge-node', labels: pool });
    await plane.createNode({ name: 'other-node', labels: { 'compofa.io/test-pool': 'other' } });
    await plane.createNamespace('deploy-test');
    await apps.createNamespacedDeployment({
      namespace: 'deploy-test',
      body: {
        metadata: { name: 'web' },
        spec: {
          replicas: 3,
          selector: { matchLabels: { app: 'web' } },
          template: {
            metadata: { labels: { app: 'web' } },
            spec: {
              nodeSelector: pool,
              containers: [{ name: 'web', image: 'example.invalid/web:1' }],
            },
          },
        },
      },
    });
    const replicaSet = await eventually(async () => {
      const sets = await apps.listNamespacedReplicaSet({ namespace: 'deploy-test' });
      return sets.items.find((rs) =>
        rs.metadata?.ownerReferences?.some(
          (o) => o.kind === 'Deployment' && o.name === 'web' && o.controller,
        ),
      );
    }, 'a ReplicaSet owned by Deployment web');
    const pods = await eventually(async () => {
      const list = await core.listNamespacedPod({ namespace: 'deploy-test' });
      const bound = list.items.filter((pod) => pod.spec?.nodeName);
      return bound.length === 3 ? bound : undefined;
    }, '3 pods of Deployment web to be bound');
    for (const pod of pods) {
      assert.equal(pod.spec?.nodeName, 'edge-node', `pod ${pod.metadata?.name ?? ''}`);
      assert.equal(pod.metadata?.ownerReferences?.[0]?.name, replicaSet.metadata?.name);
    }
  });

  it('binds a pod requesting nvidia.com/gpu only to a node that has one', async () => {
    await plane.createNode({ name: 'cpu-node-large', capacity: { cpu: '64', memory: '256Gi' } });
    await plane.createNode({
      name: 'gpu-node',
      labels: { 'nvidia.com/gpu.present': 'true' },
      capacity: { 'nvidia.com/gpu': '1' },
    });
    await plane.createNamespace('gpu-test');
    const gpuPod = (name: string): V1Pod => ({
      metadata: { name },
      spec: {
        containers: [
          {
            name: 'train',
            image: 'example.invalid/train:1',
            resources: { limits: { 'nvidia.com/gpu': '1' } },
          },
        ],
      },
    });
    await core.createNamespacedPod({ namespace: 'gpu-test', body: gpuPod('first') });
    const first = await eventually(async () => {
      const pod = await core.readNamespacedPod({ name: 'first', namespace: 'gpu-test' });
      return pod.spec?.nodeName ? pod : undefined;
    }, 'pod first to be bound');
    assert.equal(first.spec?.nodeName, 'gpu-node');

    // The only GPU is taken: a second GPU pod must wait rather than land on a node without one.
    await core.createNamespacedPod({ namespace: 'gpu-test', body: gpuPod('second') });
    const unschedulable = await eventually(async () => {
      const pod = await core.readNamespacedPod({ name: 'second', namespace: 'gpu-test' });
      return pod.status?.conditions?.find(
        (c) => c.type === 'PodScheduled' && c.status === 'False' && c.reason === 'Unschedulable',
      );
    }, 'pod second to be reported unschedulable');
    assert.match(unschedulable.message ?? '', /Insufficient nvidia\.com\/gpu/);
    const second = await core.readNamespacedPod({ name: 'second', namespace: 'gpu-test' });
    assert.equal(second.spec?.nodeName, undefined);
  });

  it('garbage-collects the children of a deleted owner', async () => {
    await plane.createNode({ name: 'gc-node', labels: { 'compofa.io/test-pool': 'gc' } });
    await plane.createNamespace('gc-test');
    await apps.createNamespacedDeployment({
      namespace: 'gc-test',
      body: {
        metadata: { name: 'doomed' },
        spec: {
          replicas: 2,
          selector: { matchLabels: { app: 'doomed' } },
          template: {
            metadata: { labels: { app: 'doomed' } },
            spec: {
              nodeSelector: { 'compofa.io/test-pool': 'gc' },
              containers: [{ name: 'c', image: 'example.invalid/c:1' }],
            },
          },
        },
      },
    });
    await eventually(
      async () =>
        (await core.listNamespacedPod({ namespace: 'gc-test' })).items.filter(
          (p) => p.spec?.nodeName,
        ).length === 2,
      'two bound pods',
    );

    await apps.deleteNamespacedDeployment({ name: 'doomed', namespace: 'gc-test' });
    await eventually(
      async () =>
        (await apps.listNamespacedReplicaSet({ namespace: 'gc-test' })).items.length === 0,
      'the ReplicaSet to be garbage-collected',
    );
    await eventually(async () => {
      await plane.confirmPodDeletions('gc-test');
      return (await core.listNamespacedPod({ namespace: 'gc-test' })).items.length === 0;
    }, 'the pods to be garbage-collected');
  });
});
