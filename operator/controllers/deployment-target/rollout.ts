/**
 * Which subnet the serving Deployment runs: the current choice, unless its rollout already failed
 * for this spec and supernet, in which case the last selection that was served (the rollback). Pure
 * functions of the target's status and its Deployment, so every step is safe to rerun.
 */
import type { V1Deployment } from '@kubernetes/client-node';

import type { DeploymentTargetStatus } from '../../api/index.js';

/** A servable model: a subnet extracted from one generation of the supernet. */
export interface Revision {
  readonly id: string;
  readonly supernetGeneration: number;
}

/** The pod-template annotations that say which revision a Deployment runs. */
export const SUBNET_ANNOTATION = 'compofa.io/subnet';
export const GENERATION_ANNOTATION = 'compofa.io/supernet-generation';

/** Longest message kept in status.failedRollout (the schema allows 4096 characters). */
const MAX_MESSAGE = 2000;

/** Whether two revisions are the same model. */
export function sameRevision(a: Revision | undefined, b: Revision | undefined): boolean {
  return (
    a !== undefined &&
    b !== undefined &&
    a.id === b.id &&
    a.supernetGeneration === b.supernetGeneration
  );
}

/** The revision that `deployment`'s pod template runs, if it carries the annotations. */
export function deployedRevision(deployment: V1Deployment | undefined): Revision | undefined {
  const annotations = deployment?.spec?.template.metadata?.annotations;
  const id = annotations?.[SUBNET_ANNOTATION];
  const generation = Number(annotations?.[GENERATION_ANNOTATION]);
  return id && Number.isInteger(generation) ? { id, supernetGeneration: generation } : undefined;
}

/**
 * Why `deployment`'s rollout of `revision` failed: its Progressing condition is False with
 * ProgressDeadlineExceeded for the template that runs `revision`. Undefined while it progresses,
 * after it completed, or when the Deployment runs something else (or has not seen its spec yet).
 */
export function rolloutFailure(
  deployment: V1Deployment | undefined,
  revision: Revision,
): string | undefined {
  if (!deployment || !sameRevision(deployedRevision(deployment), revision)) return undefined;
  const settled = hasObservedSpec(deployment);
  const progressing = deployment.status?.conditions?.find((c) => c.type === 'Progressing');
  if (
    !settled ||
    progressing?.status !== 'False' ||
    progressing.reason !== 'ProgressDeadlineExceeded'
  )
    return undefined;
  const deadline = deployment.spec?.progressDeadlineSeconds;
  return `the pods of ${revision.id} did not become ready within ${deadline ?? 600}s (${progressing.message ?? 'ProgressDeadlineExceeded'})`;
}

/** Whether the Deployment controller has seen `deployment`'s latest spec (its status is about it). */
export function hasObservedSpec(deployment: V1Deployment | undefined): boolean {
  return (deployment?.status?.observedGeneration ?? 0) >= (deployment?.metadata?.generation ?? 1);
}

/** The rollout decision for one reconcile. */
export interface RolloutPlan {
  /** What the Deployment should run. */
  readonly serve: Revision;
  /** The failed rollout to record in status (undefined clears it once `choice` is served). */
  readonly failed: NonNullable<DeploymentTargetStatus['failedRollout']> | undefined;
  /** True when `serve` is the previous selection because `choice` failed. */
  readonly rolledBack: boolean;
}

/**
 * Decides what to serve for `choice`:
 * - a failure already recorded for this choice, target generation and supernet generation keeps
 *   the previous selection serving (a new spec or supernet tries again);
 * - a rollout of `choice` that just exceeded its deadline is recorded, and rolled back when a
 *   previous selection exists (without one, the Deployment stays as it is and may still recover);
 * - otherwise `choice` is served.
 */
export function planRollout(
  status: DeploymentTargetStatus | undefined,
  targetGeneration: number,
  choice: Revision,
  deployment: V1Deployment | undefined,
  now: Date,
  trouble?: string,
): RolloutPlan {
  const previous = previousRevision(status);
  const recorded = status?.failedRollout;
  const stillFailed =
    recorded !== undefined &&
    recorded.targetGeneration === targetGeneration &&
    sameRevision(recorded, choice);
  let failed = stillFailed ? recorded : undefined;
  if (!failed) {
    const why = rolloutFailure(deployment, choice);
    if (why) {
      const message = trouble ? `${why}: ${trouble}` : why;
      failed = {
        id: choice.id,
        supernetGeneration: choice.supernetGeneration,
        targetGeneration,
        message: message.length > MAX_MESSAGE ? `${message.slice(0, MAX_MESSAGE - 1)}…` : message,
        time: now.toISOString(),
      };
    }
  }
  const rollBack =
    failed !== undefined && previous !== undefined && !sameRevision(previous, choice);
  return { serve: rollBack ? previous : choice, failed, rolledBack: rollBack };
}

/** status.previousSelection as a revision, when it says which generation it came from. */
export function previousRevision(status: DeploymentTargetStatus | undefined): Revision | undefined {
  const previous = status?.previousSelection;
  return previous?.supernetGeneration === undefined
    ? undefined
    : { id: previous.id, supernetGeneration: previous.supernetGeneration };
}

/**
 * The previous selection to keep when the choice becomes `choice`: the selection in status if it
 * was being served with all replicas available (its Available condition True), else the one kept
 * before (a selection that never became available is nothing to roll back to).
 */
export function nextPreviousSelection(
  status: DeploymentTargetStatus | undefined,
  choice: Revision,
): DeploymentTargetStatus['previousSelection'] {
  const selected = status?.selectedSubnet;
  const generation = status?.supernetGeneration;
  const current =
    selected && generation !== undefined
      ? { id: selected.id, supernetGeneration: generation }
      : undefined;
  const served = status?.conditions?.some((c) => c.type === 'Available' && c.status === 'True');
  if (!current || !served || sameRevision(current, choice)) return status?.previousSelection;
  return {
    id: current.id,
    supernetGeneration: current.supernetGeneration,
    ...(status?.predictedAccuracy === undefined
      ? {}
      : { predictedAccuracy: status.predictedAccuracy }),
    ...(status?.expectedLatencyMs === undefined
      ? {}
      : { expectedLatencyMs: status.expectedLatencyMs }),
  };
}
