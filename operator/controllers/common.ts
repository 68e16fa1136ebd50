/**
 * Steps every reconciler takes the same way: apply children, delete what is no longer wanted,
 * and write status (only when it changed) with an Event for a transition.
 */
import type { KubernetesObject } from '@kubernetes/client-node';

import type { Condition } from '../api/index.js';
import { isApplied, patchStatus, serverSideApply, withAppliedHash } from '../runtime/apply.js';
import { setCondition } from '../runtime/conditions.js';
import { describeError } from '../runtime/events.js';
import type { Caches, ControllerContext } from './context.js';
import type { StoredMeta } from './objects.js';

/** A child the API server did not apply (a quota, an admission webhook, a full ClusterIP range). */
export class ChildApplyError extends Error {
  override readonly name = 'ChildApplyError';
  constructor(
    readonly child: KubernetesObject,
    cause: unknown,
  ) {
    super(`${child.kind ?? 'object'} ${child.metadata?.name ?? ''}: ${describeError(cause)}`, {
      cause,
    });
  }

  /** What a condition says about it. */
  get refusal(): string {
    return `the API server refused ${this.message}`;
  }
}

/**
 * Server-side applies `children` in order under the operator's field manager, skipping a child
 * whose cached copy already holds all of it (most reconciles change nothing: a fleet of targets
 * would otherwise re-send every Deployment on every pass). Rejects with a {@link ChildApplyError}
 * naming the first child that could not be applied.
 */
export async function applyAll(
  context: ControllerContext,
  children: readonly KubernetesObject[],
): Promise<void> {
  for (const child of children) {
    const desired = withAppliedHash(child);
    if (isApplied(desired, cachedCopy(context.caches, child))) continue;
    try {
      await serverSideApply(context.objects, desired, context.config.fieldManager);
    } catch (error) {
      throw new ChildApplyError(child, error);
    }
  }
}

/** The informer's copy of `child`, for the kinds the operator caches. */
function cachedCopy(caches: Caches, child: KubernetesObject): KubernetesObject | undefined {
  const namespace = child.metadata?.namespace ?? '';
  const name = child.metadata?.name ?? '';
  const cache = {
    Job: caches.jobs,
    Deployment: caches.deployments,
    Service: caches.services,
    ConfigMap: caches.configMaps,
    LatencyProfile: caches.profiles,
  }[child.kind ?? ''];
  return cache?.get(namespace, name);
}

/** Deletes `object` (its dependents in the background); an object already gone is fine. */
export async function deleteChild(
  context: ControllerContext,
  object: KubernetesObject,
): Promise<void> {
  try {
    await context.objects.delete(object, undefined, undefined, undefined, undefined, 'Background');
  } catch (error) {
    if ((error as { code?: number }).code !== 404) throw error;
  }
}

/** True when `object` is controlled by the owner with `uid`. */
export function controlledBy(object: KubernetesObject, uid: string): boolean {
  return (
    object.metadata?.ownerReferences?.some((ref) => ref.uid === uid && ref.controller === true) ??
    false
  );
}

/** A one-line account of a transition, recorded as an Event when status changed. */
export interface TransitionEvent {
  readonly type: 'Normal' | 'Warning';
  readonly reason: string;
  readonly message: string;
}

/**
 * Writes `status` through the status subresource when it differs from `current`'s, and then
 * records `event`; resolves with whether it wrote.
 */
export async function writeStatus(
  context: ControllerContext,
  resource: { readonly group: string; readonly version: string; readonly plural: string },
  current: KubernetesObject & { metadata: StoredMeta; status?: unknown },
  status: object,
  event: TransitionEvent | undefined,
): Promise<boolean> {
  const wrote = await patchStatus(
    context.customObjects,
    { ...resource, namespace: current.metadata.namespace, name: current.metadata.name },
    status,
    current,
    { fieldManager: context.config.fieldManager },
  );
  if (wrote && event) {
    context.events.record(current, {
      type: event.type,
      reason: event.reason,
      action: 'Reconcile',
      note: event.message,
    });
  }
  return wrote;
}

/** Status with the conditions and phase every custom resource of the operator has. */
interface PhasedStatus {
  readonly phase?: string;
  readonly conditions?: readonly Condition[];
}

/**
 * A rejection handler for {@link applyAll}: for a {@link ChildApplyError} it writes `status` with
 * phase Failed and Ready False, reason ApplyFailed (naming the refused child and quoting the API
 * server), with a Warning Event, then rejects with the error so that the reconcile is retried
 * with backoff; a failure to write that status is left to the retry. Other errors pass through.
 */
export function reportRefusal(
  context: ControllerContext,
  resource: { readonly group: string; readonly version: string; readonly plural: string },
  current: KubernetesObject & { metadata: StoredMeta; status?: unknown },
  status: PhasedStatus,
): (error: unknown) => Promise<never> {
  return async (error) => {
    if (!(error instanceof ChildApplyError)) throw error;
    const message = error.refusal;
    const conditions = setCondition(
      status.conditions ?? [],
      { type: 'Ready', status: 'False', reason: 'ApplyFailed', message },
      current.metadata.generation,
      context.now(),
    );
    await writeStatus(
      context,
      resource,
      current,
      { ...status, phase: 'Failed', conditions },
      { type: 'Warning', reason: 'ApplyFailed', message },
    ).catch(() => undefined);
    throw error;
  };
}
