/**
 * The LatencyProfile reconciler: apply the reporter objects, observe the profiling Job, its pods
 * and report (or read the user's ConfigMap of an external profile), plan, create or delete the
 * Job, and write status only when it changed.
 */
import type { V1ConfigMap } from '@kubernetes/client-node';

import { LATENCY_PROFILE } from '../../api/index.js';
import { controllerReference } from '../../runtime/apply.js';
import type { ReconcileResult } from '../../runtime/controller.js';
import { applyAll, controlledBy, deleteChild, reportRefusal, writeStatus } from '../common.js';
import type { ControllerContext } from '../context.js';
import { reporterChildren } from '../pods.js';
import { stored } from '../objects.js';
import { profileChildNames, profileJob, profileReporter, type LatencyProfile } from './children.js';
import { planProfile } from './status.js';

/** How often an external profile's ConfigMap (not watched: it is the user's) is read again. */
const EXTERNAL_RECHECK_MS = 60_000;

/** Reconciles one LatencyProfile by its `namespace/name` key. */
export class LatencyProfileReconciler {
  constructor(private readonly context: ControllerContext) {}

  async reconcile(key: string): Promise<ReconcileResult> {
    const { caches, config } = this.context;
    const cached = caches.profiles.getByKey(key);
    if (!cached) return;
    const profile = stored(cached) as LatencyProfile;
    const { namespace, generation, uid } = profile.metadata;
    const owner = controllerReference(profile);
    const names = profileChildNames(profile, generation);
    const external = profile.spec.external;

    if (!external) {
      const reporter = profileReporter(profile, generation, owner);
      await applyAll(this.context, reporterChildren(reporter)).catch(
        reportRefusal(this.context, LATENCY_PROFILE, profile, profile.status ?? {}),
      );
    }
    const job = caches.jobs.get(namespace, names.job);
    const plan = planProfile({
      profile,
      job,
      pods: caches.pods
        .list(namespace)
        .filter((pod) => pod.metadata?.labels?.['batch.kubernetes.io/job-name'] === names.job),
      report: caches.configMaps.get(namespace, names.report)?.data ?? {},
      reportName: names.report,
      external: external ? await this.readConfigMap(namespace, external.configMapName) : undefined,
      now: this.context.now(),
    });
    if (plan.runJob && !job) {
      await applyAll(this.context, [profileJob(profile, generation, owner, config)]).catch(
        reportRefusal(this.context, LATENCY_PROFILE, profile, plan.status),
      );
    }
    const keep = plan.runJob || plan.keepJob ? names.job : undefined;
    for (const other of caches.jobs.list(namespace)) {
      if (
        controlledBy(other, uid) &&
        other.metadata?.name !== keep &&
        !other.metadata?.deletionTimestamp
      ) {
        await deleteChild(this.context, other);
      }
    }
    await writeStatus(this.context, LATENCY_PROFILE, profile, plan.status, plan.event);
    return external ? { requeueAfterMs: EXTERNAL_RECHECK_MS } : undefined;
  }

  /** The data of a user's ConfigMap, or undefined when it does not exist. */
  private async readConfigMap(
    namespace: string,
    name: string,
  ): Promise<Readonly<Record<string, string>> | undefined> {
    try {
      const map = await this.context.objects.read<V1ConfigMap>({
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name, namespace },
      });
      return map.data ?? {};
    } catch (error) {
      if ((error as { code?: number }).code === 404) return undefined;
      throw error;
    }
  }
}
