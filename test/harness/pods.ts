/**
 * The kubelet's part in tests: the control plane has no kubelets, so pods bound to a node stay
 * Pending. These helpers write what a kubelet would report when a pod's container ran (exit code
 * 0: Succeeded, else Failed), so that the Job controller completes or fails their Jobs for real.
 */
import type { CoreV1Api, V1Pod } from '@kubernetes/client-node';

import { waitFor } from './wait.js';

/** Waits for a pod of Job `job` that the scheduler bound to a node. */
export async function boundPodOfJob(
  core: CoreV1Api,
  namespace: string,
  job: string,
  hint?: string,
): Promise<V1Pod> {
  let seen: V1Pod[] = [];
  try {
    return await waitFor(
      async () => {
        seen = (
          await core.listNamespacedPod({
            namespace,
            labelSelector: `batch.kubernetes.io/job-name=${job}`,
          })
        ).items;
        return seen.find((pod) => pod.spec?.nodeName && pod.status?.phase === 'Pending');
      },
      {
        description: `a bound pod of Job ${namespace}/${job}`,
        timeoutMs: 30_000,
        ...(hint ? { hint } : {}),
      },
    );
  } catch (error) {
    // Say what there was instead: no pod at all, or pods that the scheduler could not place.
    const pods = seen.map((pod) => {
      const scheduled = pod.status?.conditions?.find((c) => c.type === 'PodScheduled');
      return `${pod.metadata?.name ?? '?'} phase=${pod.status?.phase ?? '?'} node=${pod.spec?.nodeName ?? '-'} scheduled=${scheduled?.status ?? '?'} ${scheduled?.message ?? ''}`;
    });
    const others = (await core.listNamespacedPod({ namespace })).items
      .filter(
        (pod) => pod.spec?.nodeName && !['Succeeded', 'Failed'].includes(pod.status?.phase ?? ''),
      )
      .map(
        (pod) =>
          `${pod.metadata?.name ?? '?'} on ${pod.spec?.nodeName ?? '?'} (${pod.status?.phase ?? '?'})`,
      );
    throw new Error(
      `${(error as Error).message}; pods: ${pods.length ? pods.join('; ') : 'none'}; running pods on nodes: ${others.join(', ') || 'none'}`,
    );
  }
}

/**
 * Read-modify-write of a pod's status, again on a 409 Conflict (the scheduler or the Job
 * controller wrote the pod meanwhile).
 */
async function updatePodStatus(
  core: CoreV1Api,
  pod: V1Pod,
  change: (current: V1Pod) => void,
): Promise<void> {
  const name = pod.metadata?.name ?? '';
  const namespace = pod.metadata?.namespace ?? '';
  for (let attempt = 1; ; attempt++) {
    const current = await core.readNamespacedPod({ name, namespace });
    change(current);
    try {
      await core.replaceNamespacedPodStatus({ name, namespace, body: current });
      return;
    } catch (error) {
      if ((error as { code?: number }).code !== 409 || attempt >= 10) throw error;
    }
  }
}

/** Reports `pod`'s containers as terminated with `exitCode`, as a kubelet would. */
export async function finishPod(core: CoreV1Api, pod: V1Pod, exitCode: number): Promise<void> {
  await updatePodStatus(core, pod, (current) => {
    const now = new Date();
    current.status = Object.assign(current.status ?? {}, {
      phase: exitCode === 0 ? 'Succeeded' : 'Failed',
      startTime: current.status?.startTime ?? now,
      containerStatuses: (current.spec?.containers ?? []).map((container) => ({
        name: container.name,
        image: container.image ?? '',
        imageID: '',
        ready: false,
        restartCount: 0,
        started: false,
        state: {
          terminated: {
            exitCode,
            reason: exitCode === 0 ? 'Completed' : 'Error',
            startedAt: now,
            finishedAt: now,
          },
        },
      })),
    });
  });
}

/** Finishes the bound pod of Job `job` with `exitCode`. */
export async function finishJob(
  core: CoreV1Api,
  namespace: string,
  job: string,
  exitCode = 0,
  hint?: string,
): Promise<void> {
  await finishPod(core, await boundPodOfJob(core, namespace, job, hint), exitCode);
}

/** Reports `pod` as running with every container ready, as a kubelet would once probes pass. */
export async function markPodReady(core: CoreV1Api, pod: V1Pod): Promise<void> {
  await updatePodStatus(core, pod, (current) => {
    const now = new Date();
    current.status = Object.assign(current.status ?? {}, {
      phase: 'Running',
      startTime: now,
      conditions: ['PodScheduled', 'Initialized', 'ContainersReady', 'Ready'].map((type) => ({
        type,
        status: 'True',
        lastTransitionTime: now,
      })),
      containerStatuses: (current.spec?.containers ?? []).map((container) => ({
        name: container.name,
        image: container.image ?? '',
        imageID: '',
        ready: true,
        started: true,
        restartCount: 0,
        state: { running: { startedAt: now } },
      })),
    });
  });
}
