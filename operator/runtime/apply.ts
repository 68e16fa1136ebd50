/**
 * Writing what a controller owns, and nothing else: server-side apply for children (after
 * controller-runtime's `client.Apply` with `ForceOwnership`), status writes through the /status
 * subresource that skip the request when nothing changed, and controller owner references. None of
 * these writes a custom resource's spec, which belongs to its user.
 */
import { createHash } from 'node:crypto';

import {
  CustomObjectsApi,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
  type KubernetesObject,
  type KubernetesObjectApi,
  type V1OwnerReference,
} from '@kubernetes/client-node';

import { canonicalJson } from '../../compofa/architecture.js';

/** Options of {@link serverSideApply}. */
export interface ApplyOptions {
  /**
   * Take over fields that another manager owns instead of failing with 409 Conflict; default true,
   * as a controller's desired state must win (controller-runtime's ForceOwnership).
   */
  readonly force?: boolean;
  /** Validate and compute the result without persisting it. */
  readonly dryRun?: boolean;
}

/**
 * Server-side applies `desired` as `fieldManager` and resolves with the object as stored.
 *
 * `desired` must hold apiVersion, kind and metadata.name (and metadata.namespace for namespaced
 * kinds: KubernetesObjectApi would otherwise pick the kubeconfig's default namespace), and only
 * the fields this manager owns: every field in it becomes owned by `fieldManager`, and a field it
 * owned before but that `desired` lacks is removed from the object (unless another manager owns it
 * too). Leave out status, resourceVersion (it would make the apply conditional), and anything
 * defaulted. `metadata.managedFields` is dropped, as the API server rejects it in an apply.
 *
 * Built-in kinds are serialized through client-node's model classes: a field that the model of
 * client-node 1.4 does not know is dropped silently. Custom kinds are sent as they are.
 */
export async function serverSideApply<T extends KubernetesObject>(
  client: KubernetesObjectApi,
  desired: T,
  fieldManager: string,
  options: ApplyOptions = {},
): Promise<T> {
  if (!fieldManager) throw new Error('serverSideApply needs a field manager');
  const { apiVersion, kind, metadata } = desired;
  if (!apiVersion || !kind || !metadata?.name)
    throw new Error(
      `serverSideApply needs apiVersion, kind and metadata.name, got ${JSON.stringify({ apiVersion, kind, name: metadata?.name })}`,
    );
  // KubernetesObjectApi fills in a default namespace on the object it is given: work on a copy.
  const body = structuredClone(desired);
  if (body.metadata) delete body.metadata.managedFields;
  return client.patch(
    body,
    undefined,
    options.dryRun ? 'All' : undefined,
    fieldManager,
    options.force ?? true,
    PatchStrategy.ServerSideApply,
  );
}

/** A custom object whose status is written. Leave out `namespace` for cluster-scoped kinds. */
export interface StatusTarget {
  readonly group: string;
  readonly version: string;
  readonly plural: string;
  readonly namespace?: string;
  readonly name: string;
}

/** Options of {@link patchStatus}. */
export interface PatchStatusOptions {
  /** Recorded in managedFields for the status fields; default the API server's (the client's user agent). */
  readonly fieldManager?: string;
}

/**
 * Writes `status` to a custom object through its /status subresource, with a JSON merge patch,
 * only if it differs from the current status (compared as JSON: key order, `undefined` members
 * and `null` members do not count). Resolves with whether it wrote.
 *
 * `current` is the object as last seen (from an informer's cache, say); without it the object is
 * read first. The patch sets every member of `status` and removes (with `null`) the members that
 * `current.status` has and `status` lacks, so the stored status becomes `status` unless `current`
 * was stale. The spec is never sent: the /status subresource would ignore it anyway.
 */
export async function patchStatus(
  api: CustomObjectsApi | KubeConfig,
  target: StatusTarget,
  status: object,
  current?: KubernetesObject & { status?: unknown },
  options: PatchStatusOptions = {},
): Promise<boolean> {
  const objects = api instanceof KubeConfig ? api.makeApiClient(CustomObjectsApi) : api;
  const { group, version, plural, namespace, name } = target;
  const seen =
    current ??
    ((namespace === undefined
      ? await objects.getClusterCustomObjectStatus({ group, version, plural, name })
      : await objects.getNamespacedCustomObjectStatus({
          group,
          version,
          plural,
          namespace,
          name,
        })) as { status?: unknown });
  const before = normalize(seen.status);
  const after = normalize(status);
  if (jsonEqual(before, after)) return false;
  const body = { status: mergePatch(before, after) };
  // Without the header client-node sends JSON patch (its first choice), which a merge patch body fails.
  const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
  const fieldManager = options.fieldManager;
  if (namespace === undefined)
    await objects.patchClusterCustomObjectStatus(
      { group, version, plural, name, body, fieldManager },
      merge,
    );
  else
    await objects.patchNamespacedCustomObjectStatus(
      { group, version, plural, namespace, name, body, fieldManager },
      merge,
    );
  return true;
}

/**
 * An owner reference that makes `owner` the controller of the object it is put on: the garbage
 * collector deletes that object after its owner, and a foreground deletion of the owner waits for it
 * (`blockOwnerDeletion`, which needs `update` on the owner's `<plural>/finalizers` in RBAC). The
 * owner must be in the same namespace, or cluster-scoped.
 */
export function controllerReference(owner: KubernetesObject): V1OwnerReference {
  const { apiVersion, kind } = owner;
  const name = owner.metadata?.name;
  const uid = owner.metadata?.uid;
  if (!apiVersion || !kind || !name || !uid)
    throw new Error(
      `an owner needs apiVersion, kind, metadata.name and metadata.uid, got ${JSON.stringify({ apiVersion, kind, name, uid })}`,
    );
  return { apiVersion, kind, name, uid, controller: true, blockOwnerDeletion: true };
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

function isObject(value: unknown): value is { [key: string]: Json } {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * The value as JSON would carry it (Dates as strings, `undefined` members gone), without `null`
 * object members, which a merge patch could only mean as "remove". Undefined stays undefined.
 */
function normalize(value: unknown): Json | undefined {
  if (value === undefined) return undefined;
  const strip = (json: Json): Json => {
    if (Array.isArray(json)) return json.map(strip);
    if (!isObject(json)) return json;
    const out: { [key: string]: Json } = {};
    for (const [key, member] of Object.entries(json)) if (member !== null) out[key] = strip(member);
    return out;
  };
  return strip(JSON.parse(JSON.stringify(value)) as Json);
}

/** Deep equality of JSON values; object key order does not matter, array order does. */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) || Array.isArray(b)) {
    return (
      Array.isArray(a) &&
      Array.isArray(b) &&
      a.length === b.length &&
      a.every((item, i) => jsonEqual(item, b[i]))
    );
  }
  if (!isObject(a) || !isObject(b)) return false;
  const keys = Object.keys(a);
  return (
    keys.length === Object.keys(b).length &&
    keys.every((key) => Object.hasOwn(b, key) && jsonEqual(a[key], b[key]))
  );
}

/** A JSON merge patch (RFC 7386) that turns `current` into `desired`. */
function mergePatch(current: Json | undefined, desired: Json | undefined): Json {
  if (desired === undefined) return null;
  if (!isObject(current) || !isObject(desired)) return desired;
  const patch: { [key: string]: Json } = {};
  for (const [key, value] of Object.entries(desired)) patch[key] = mergePatch(current[key], value);
  for (const key of Object.keys(current)) if (!Object.hasOwn(desired, key)) patch[key] = null;
  return patch;
}

/** The annotation that records a hash of what was last applied (see {@link withAppliedHash}). */
export const APPLIED_HASH_ANNOTATION = 'compofa.io/applied-hash';

/**
 * `desired` with an annotation holding a hash of itself, so that a later {@link isApplied} can
 * tell a change that only removes fields (which the cached object cannot show) from no change.
 */
export function withAppliedHash<T extends KubernetesObject>(desired: T): T {
  const hash = createHash('sha256').update(canonicalJson(desired)).digest('hex').slice(0, 16);
  const stamped = structuredClone(desired);
  stamped.metadata = stamped.metadata ?? {};
  stamped.metadata.annotations = {
    ...stamped.metadata.annotations,
    [APPLIED_HASH_ANNOTATION]: hash,
  };
  return stamped;
}

/**
 * Whether `stored` already holds everything in `desired` (from {@link withAppliedHash}): every
 * field `desired` sets has the same value in `stored`, arrays element by element with the same
 * length; fields that only `stored` has (defaults, status, other managers') do not matter, and an
 * empty list or object matches a field the API server left out (it omits empty ones). Then
 * applying `desired` again would change nothing, and the request can be skipped; a field someone
 * else changed, or a new desired state, makes it false.
 */
export function isApplied(desired: unknown, stored: unknown): boolean {
  if (desired === stored) return true;
  if (stored === undefined && isEmpty(desired)) return true;
  if (Array.isArray(desired))
    return (
      Array.isArray(stored) &&
      desired.length === stored.length &&
      desired.every((item, index) => isApplied(item, stored[index]))
    );
  if (desired !== null && typeof desired === 'object') {
    if (stored === null || typeof stored !== 'object' || Array.isArray(stored)) return false;
    const have = stored as Record<string, unknown>;
    return Object.entries(desired).every(
      ([key, value]) => value === undefined || isApplied(value, have[key]),
    );
  }
  return false;
}

function isEmpty(value: unknown): boolean {
  if (Array.isArray(value)) return value.length === 0;
  return value !== null && typeof value === 'object' && Object.keys(value).length === 0;
}
