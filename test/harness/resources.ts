/**
 * Reading and writing the operator's resources the way the integration tests play users and pods:
 * the custom-object coordinates of a kind in one namespace, a resource created, a quota imposed, a
 * table published into a report
 * ConfigMap (as a trainer pod does), and a DeploymentTarget's status.
 */
import {
  PatchStrategy,
  setHeaderOptions,
  type CoreV1Api,
  type CustomObjectsApi,
} from '@kubernetes/client-node';

import type { DeploymentTarget } from '../../operator/api/index.js';

/** A custom resource kind's API coordinates. */
export interface CustomResource {
  readonly group: string;
  readonly version: string;
  readonly plural: string;
}

/** A custom resource kind with what a manifest of it names. */
export interface CustomKind extends CustomResource {
  readonly apiVersion: string;
  readonly kind: string;
}

/** Creates the `kind` object `name` in `namespace` with `spec`, as a user's `kubectl create`. */
export function createResource(
  objects: CustomObjectsApi,
  kind: CustomKind,
  namespace: string,
  name: string,
  spec: Record<string, unknown>,
) {
  return objects.createNamespacedCustomObject({
    ...inNamespace(kind, namespace),
    body: { apiVersion: kind.apiVersion, kind: kind.kind, metadata: { name }, spec },
  });
}

/** `resource`'s coordinates in `namespace`, for CustomObjectsApi calls. */
export function inNamespace(resource: CustomResource, namespace: string) {
  return { group: resource.group, version: resource.version, plural: resource.plural, namespace };
}

/** Writes `text` under `key` of ConfigMap `name` (a merge patch: other keys stay). */
export function publishData(
  core: CoreV1Api,
  namespace: string,
  name: string,
  key: string,
  text: string,
) {
  return core.patchNamespacedConfigMap(
    { namespace, name, body: { data: { [key]: text } } },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
  );
}

/** The status of DeploymentTarget `name`. */
export async function readTargetStatus(
  objects: CustomObjectsApi,
  resource: CustomResource,
  namespace: string,
  name: string,
): Promise<DeploymentTarget['status']> {
  return (
    (await objects.getNamespacedCustomObject({
      ...inNamespace(resource, namespace),
      name,
    })) as DeploymentTarget
  ).status;
}

/**
 * Runs `body` while ResourceQuota `name` caps `namespace` at `hard`, then removes the quota. The
 * harness runs no quota controller, so the usage it would count (none yet) is published here; the
 * API server's quota admission then refuses what would exceed `hard`.
 */
export async function withResourceQuota(
  core: CoreV1Api,
  namespace: string,
  name: string,
  hard: Readonly<Record<string, string>>,
  body: () => Promise<void>,
): Promise<void> {
  const quota = await core.createNamespacedResourceQuota({
    namespace,
    body: { metadata: { name }, spec: { hard: { ...hard } } },
  });
  try {
    const used = Object.fromEntries(Object.keys(hard).map((resource) => [resource, '0']));
    quota.status = { hard: { ...hard }, used };
    await core.replaceNamespacedResourceQuotaStatus({ namespace, name, body: quota });
    await body();
  } finally {
    await core.deleteNamespacedResourceQuota({ namespace, name });
  }
}
