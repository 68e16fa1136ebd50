/**
 * What the Jobs and pods the operator started say about themselves, reduced to what a status
 * needs: whether a Job runs, succeeded or failed (and why, in the pod's words), and whether its
 * pods are stuck for a reason worth telling the user (no node fits, the image cannot be pulled).
 */
import type { V1Job, V1Pod } from '@kubernetes/client-node';

/** The state of one Job. */
export type JobState =
  | { readonly kind: 'missing' }
  | { readonly kind: 'running'; readonly active: number }
  | { readonly kind: 'succeeded'; readonly completedAt: Date | undefined }
  | { readonly kind: 'failed'; readonly reason: string; readonly message: string };

/** The state of `job` from its terminal conditions (`Complete`/`Failed`), else running. */
export function jobState(job: V1Job | undefined): JobState {
  if (!job) return { kind: 'missing' };
  const conditions = job.status?.conditions ?? [];
  const isTrue = (type: string) => conditions.find((c) => c.type === type && c.status === 'True');
  if (isTrue('Complete')) {
    // Informer caches hold raw JSON: times are strings there, Dates from typed reads.
    const completed: unknown = job.status?.completionTime;
    return {
      kind: 'succeeded',
      completedAt: completed === undefined ? undefined : new Date(completed as string | Date),
    };
  }
  const failed = isTrue('Failed');
  if (failed) {
    return {
      kind: 'failed',
      reason: failed.reason ?? 'Failed',
      message: failed.message ?? `Job ${job.metadata?.name ?? ''} failed`,
    };
  }
  return { kind: 'running', active: job.status?.active ?? 0 };
}

/** Why a Job's pod cannot make progress, when the reason is one the user must act on. */
export interface PodTrouble {
  readonly reason: 'Unschedulable' | 'ImagePullFailed';
  readonly message: string;
}

const IMAGE_PULL_REASONS = new Set([
  'ErrImagePull',
  'ImagePullBackOff',
  'InvalidImageName',
  'ErrImageNeverPull',
]);

/** The first pod trouble among `pods`: no node fits, or the image cannot be pulled. */
export function podTrouble(pods: readonly V1Pod[]): PodTrouble | undefined {
  for (const pod of pods) {
    const name = pod.metadata?.name ?? 'pod';
    const scheduled = pod.status?.conditions?.find((c) => c.type === 'PodScheduled');
    if (scheduled?.status === 'False' && scheduled.reason === 'Unschedulable') {
      return {
        reason: 'Unschedulable',
        message: `pod ${name} cannot be scheduled: ${scheduled.message ?? 'no node fits'}`,
      };
    }
    for (const container of pod.status?.containerStatuses ?? []) {
      const waiting = container.state?.waiting;
      if (waiting?.reason && IMAGE_PULL_REASONS.has(waiting.reason)) {
        return {
          reason: 'ImagePullFailed',
          message: `pod ${name} cannot pull image ${container.image}: ${waiting.reason}${waiting.message ? `: ${waiting.message}` : ''}`,
        };
      }
    }
  }
  return undefined;
}
