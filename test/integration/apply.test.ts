/**
 * serverSideApply, patchStatus and controllerReference against a real API server: idempotent
 * applies, pruning of fields a manager stopped applying, conflicts with other managers, garbage
 * collection of owned children, and status writes that happen only when the status changes and
 * never touch the spec.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';

import {
  ApiextensionsV1Api,
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubernetesObjectApi,
  loadYaml,
  PatchStrategy,
  setHeaderOptions,
  type KubeConfig,
  type KubernetesObject,
  type V1ConfigMap,
  type V1CustomResourceDefinition,
  type V1Deployment,
} from '@kubernetes/client-node';

import {
  controllerReference,
  jsonEqual,
  patchStatus,
  serverSideApply,
  type StatusTarget,
} from '../../operator/runtime/apply.js';
import { apiErrorCode, apiErrorMessage } from '../harness/api-errors.js';
import { ControlPlane } from '../harness/control-plane.js';
import { waitFor } from '../harness/wait.js';

const NAMESPACE = 'apply-test';
const MANAGER = 'compofa-operator';

/**
 * The widget fixture has a status subresource but no status schema, so the API server would prune
 * any status written to it. This CRD keeps status.
 */
const GADGET_CRD = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: { name: gadgets.test.compofa.io }
spec:
  group: test.compofa.io
  scope: Namespaced
  names: { plural: gadgets, singular: gadget, kind: Gadget, listKind: GadgetList }
  versions:
    - name: v1
      served: true
      storage: true
      subresources: { status: {} }
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                size: { type: string }
                replicas: { type: integer, default: 1 }
            status:
              type: object
              x-kubernetes-preserve-unknown-fields: true
`;

interface Gadget extends KubernetesObject {
  spec: Record<string, unknown>;
  status?: Record<string, unknown>;
}

describe('apply helpers on a real API server', () => {
  let plane: ControlPlane;
  let kubeConfig: KubeConfig;
  let client: KubernetesObjectApi;
  let core: CoreV1Api;
  let apps: AppsV1Api;
  let objects: CustomObjectsApi;

  const eventually = <T>(
    probe: () => Promise<T | undefined | false> | T | undefined | false,
    description: string,
  ): Promise<T> => waitFor(probe, { description, timeoutMs: 30_000, hint: plane.logHint });

  const installCrd = async (crd: V1CustomResourceDefinition): Promise<void> => {
    const extensions = kubeConfig.makeApiClient(ApiextensionsV1Api);
    await extensions.createCustomResourceDefinition({ body: crd });
    await eventually(
      async () => {
        const current = await extensions.readCustomResourceDefinition({
          name: crd.metadata?.name ?? '',
        });
        return current.status?.conditions?.some(
          (c) => c.type === 'Established' && c.status === 'True',
        );
      },
      `CRD ${crd.metadata?.name ?? ''} to be established`,
    );
  };

  before(async () => {
    plane = await ControlPlane.start();
    kubeConfig = plane.kubeConfig();
    client = KubernetesObjectApi.makeApiClient(kubeConfig);
    core = kubeConfig.makeApiClient(CoreV1Api);
    apps = kubeConfig.makeApiClient(AppsV1Api);
    objects = kubeConfig.makeApiClient(CustomObjectsApi);
    await plane.createNamespace(NAMESPACE);
    // Early: the garbage collector notices a new CRD only at its next discovery, every 30 s.
    await installCrd(
      loadYaml<V1CustomResourceDefinition>(
        await readFile(new URL('../fixtures/widget-crd.yaml', import.meta.url), 'utf8'),
      ),
    );
  });
  after(async () => {
    await plane.stop();
  });

  const settingsMap = (
    data: Record<string, string>,
    labels: Record<string, string> = {},
  ): V1ConfigMap => ({
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: 'settings', namespace: NAMESPACE, labels },
    data,
  });

  it('applies a ConfigMap idempotently, as the field manager', async () => {
    const desired = settingsMap({ a: '1' }, { app: 'compofa' });
    const first = await serverSideApply(client, desired, MANAGER);
    assert.equal(first.data?.['a'], '1');
    assert.deepEqual(
      desired,
      settingsMap({ a: '1' }, { app: 'compofa' }),
      'the desired object is not modified',
    );
    const second = await serverSideApply(client, desired, MANAGER);
    assert.equal(second.metadata?.resourceVersion, first.metadata?.resourceVersion);
    const entry = second.metadata?.managedFields?.find((f) => f.manager === MANAGER);
    assert.equal(entry?.operation, 'Apply');
    assert.ok(
      JSON.stringify(entry.fieldsV1).includes('"f:a"'),
      `${MANAGER} owns data.a: ${JSON.stringify(entry.fieldsV1)}`,
    );
  });

  it('removes the fields it stopped applying, but not those of other managers', async () => {
    await serverSideApply(
      client,
      settingsMap({ a: '1', b: '2' }, { app: 'compofa', tier: 'x' }),
      MANAGER,
    );
    // Someone else adds a key with an ordinary update.
    await core.patchNamespacedConfigMap(
      {
        name: 'settings',
        namespace: NAMESPACE,
        body: { data: { c: 'theirs' } },
        fieldManager: 'kubectl-edit',
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    const applied = await serverSideApply(
      client,
      settingsMap({ a: '1' }, { app: 'compofa' }),
      MANAGER,
    );
    assert.deepEqual(applied.data, { a: '1', c: 'theirs' });
    assert.deepEqual(applied.metadata?.labels, { app: 'compofa' });
  });

  it('takes over fields of another applier only with force', async () => {
    await serverSideApply(client, settingsMap({ a: 'other' }), 'other-applier');
    const conflict = await serverSideApply(client, settingsMap({ a: 'mine' }), MANAGER, {
      force: false,
    }).then(
      () => assert.fail('a conflicting apply without force succeeded'),
      (error: unknown) => error,
    );
    assert.equal(apiErrorCode(conflict), 409, apiErrorMessage(conflict));
    assert.match(apiErrorMessage(conflict), /conflict with "other-applier"/);
    const forced = await serverSideApply(client, settingsMap({ a: 'mine' }), MANAGER);
    assert.equal(forced.data?.['a'], 'mine');
  });

  it('dry-runs without persisting', async () => {
    const dry = await serverSideApply(client, settingsMap({ a: 'dry' }), MANAGER, { dryRun: true });
    assert.equal(dry.data?.['a'], 'dry');
    const stored = await core.readNamespacedConfigMap({ name: 'settings', namespace: NAMESPACE });
    assert.equal(stored.data?.['a'], 'mine');
  });

  it('applies a Deployment idempotently', async () => {
    const deployment = (image: string): V1Deployment => ({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'server', namespace: NAMESPACE, labels: { app: 'server' } },
      spec: {
        replicas: 1,
        selector: { matchLabels: { app: 'server' } },
        template: {
          metadata: { labels: { app: 'server' } },
          spec: {
            containers: [{ name: 'server', image, ports: [{ containerPort: 8080, name: 'http' }] }],
          },
        },
      },
    });
    const first = await serverSideApply(client, deployment('example.invalid/server:1'), MANAGER);
    assert.equal(first.metadata?.generation, 1);
    // The deployment controller writes status after the apply; wait until it leaves the object alone.
    const settled = await eventually(async () => {
      const read = async () =>
        (await apps.readNamespacedDeployment({ name: 'server', namespace: NAMESPACE })).metadata
          ?.resourceVersion;
      const version = await read();
      await sleep(500);
      return version === (await read()) ? version : undefined;
    }, 'the Deployment to settle');
    const second = await serverSideApply(client, deployment('example.invalid/server:1'), MANAGER);
    assert.equal(second.metadata?.resourceVersion, settled);
    assert.equal(second.metadata.generation, 1);
    assert.ok(
      second.metadata.managedFields?.some((f) => f.manager === MANAGER && f.operation === 'Apply'),
    );

    const third = await serverSideApply(client, deployment('example.invalid/server:2'), MANAGER);
    assert.equal(third.metadata?.generation, 2);
    assert.equal(third.spec?.template.spec?.containers[0]?.image, 'example.invalid/server:2');
  });

  it('makes the garbage collector delete a child when its owning widget is deleted', async () => {
    const widgets = {
      group: 'test.compofa.io',
      version: 'v1',
      plural: 'widgets',
      namespace: NAMESPACE,
    };
    const createWidget = (name: string): Promise<KubernetesObject> =>
      eventually(
        () =>
          objects.createNamespacedCustomObject({
            ...widgets,
            body: {
              apiVersion: 'test.compofa.io/v1',
              kind: 'Widget',
              metadata: { name },
              spec: { size: 'small', latencyBudgetMs: 5 },
            },
          }) as Promise<KubernetesObject>,
        `widget ${name} to be created`,
      );
    const gone = (read: () => Promise<unknown>): Promise<boolean> =>
      read().then(
        () => false,
        (error: unknown) => apiErrorCode(error) === 404,
      );
    // Until the garbage collector watches widgets (up to 30 s after the CRD appeared), it learns
    // of a deleted owner only by polling, with backoff. A foreground deletion waits for the
    // collector: once the probe is gone, it watches widgets.
    await createWidget('probe');
    await objects.deleteNamespacedCustomObject({
      ...widgets,
      name: 'probe',
      propagationPolicy: 'Foreground',
    });
    await waitFor(
      () => gone(() => objects.getNamespacedCustomObject({ ...widgets, name: 'probe' })),
      {
        description: 'the garbage collector to watch widgets',
        timeoutMs: 60_000,
        hint: plane.logHint,
      },
    );

    const widget = await createWidget('owner');
    const reference = controllerReference(widget);
    assert.deepEqual(reference, {
      apiVersion: 'test.compofa.io/v1',
      kind: 'Widget',
      name: 'owner',
      uid: widget.metadata?.uid,
      controller: true,
      blockOwnerDeletion: true,
    });
    const owned: V1ConfigMap = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'owned', namespace: NAMESPACE, ownerReferences: [reference] },
      data: { k: 'v' },
    };
    const child = await serverSideApply(client, owned, MANAGER);
    assert.equal(child.metadata?.ownerReferences?.[0]?.uid, widget.metadata?.uid);

    // The default propagation: background.
    await objects.deleteNamespacedCustomObject({ ...widgets, name: 'owner' });
    await eventually(
      () => gone(() => core.readNamespacedConfigMap({ name: 'owned', namespace: NAMESPACE })),
      'the owned ConfigMap to be garbage-collected',
    );
  });

  it('controllerReference refuses an owner without a uid', () => {
    assert.throws(
      () => controllerReference({ apiVersion: 'v1', kind: 'X', metadata: { name: 'n' } }),
      /metadata\.uid/,
    );
  });

  it('writes a status only when it changed, through /status, leaving the spec alone', async () => {
    await installCrd(loadYaml<V1CustomResourceDefinition>(GADGET_CRD));
    const target = {
      group: 'test.compofa.io',
      version: 'v1',
      plural: 'gadgets',
      namespace: NAMESPACE,
      name: 'g',
    } satisfies StatusTarget;
    const read = async (): Promise<Gadget> =>
      (await objects.getNamespacedCustomObject(target)) as Gadget;
    const created = await eventually(
      () =>
        objects.createNamespacedCustomObject({
          ...target,
          body: {
            apiVersion: 'test.compofa.io/v1',
            kind: 'Gadget',
            metadata: { name: 'g' },
            spec: { size: 'small' },
          },
        }) as Promise<Gadget>,
      'the gadget to be created',
    );
    assert.deepEqual(created.spec, { size: 'small', replicas: 1 });

    const status = {
      phase: 'Running',
      observedGeneration: 1,
      detail: { ready: 1, total: 2 },
      conditions: [{ type: 'Ready', status: 'False', reason: 'Waiting', message: '' }],
    };
    assert.equal(await patchStatus(kubeConfig, target, status, created), true);
    const written = await read();
    assert.deepEqual(written.status, status);
    assert.deepEqual(written.spec, created.spec);
    assert.equal(written.metadata?.generation, created.metadata?.generation);

    // The same status, keys in another order, with an undefined member: no request at all.
    const reordered = {
      conditions: [{ message: '', reason: 'Waiting', status: 'False', type: 'Ready' }],
      detail: { total: 2, ready: 1 },
      observedGeneration: 1,
      phase: 'Running',
      note: undefined,
    };
    const noRequests = new Proxy({} as CustomObjectsApi, {
      get: (_, method) => () => assert.fail(`unexpected request ${String(method)}`),
    });
    assert.equal(await patchStatus(noRequests, target, reordered, written), false);
    // Without `current`, it reads the object, and still writes nothing.
    assert.equal(await patchStatus(objects, target, reordered), false);
    assert.equal((await read()).metadata?.resourceVersion, written.metadata?.resourceVersion);

    // Members the new status lacks are removed; nested ones too.
    assert.equal(
      await patchStatus(objects, target, { phase: 'Ready', detail: { ready: 2 } }, written),
      true,
    );
    const updated = await read();
    assert.deepEqual(updated.status, { phase: 'Ready', detail: { ready: 2 } });
    assert.deepEqual(updated.spec, created.spec);

    // A user's spec change in between is neither reverted nor affected by a status write.
    await objects.patchNamespacedCustomObject(
      { ...target, body: { spec: { size: 'large' } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    assert.equal(await patchStatus(objects, target, { phase: 'Updating' }, updated), true);
    const last = await read();
    assert.deepEqual(last.spec, { size: 'large', replicas: 1 });
    assert.deepEqual(last.status, { phase: 'Updating' });
  });

  it('jsonEqual ignores key order but not array order', () => {
    assert.ok(jsonEqual({ a: 1, b: [1, { c: 2, d: 3 }] }, { b: [1, { d: 3, c: 2 }], a: 1 }));
    assert.ok(!jsonEqual({ a: [1, 2] }, { a: [2, 1] }));
    assert.ok(!jsonEqual({ a: 1 }, { a: 1, b: 2 }));
    assert.ok(!jsonEqual({ a: 1 }, [1]));
  });
});
