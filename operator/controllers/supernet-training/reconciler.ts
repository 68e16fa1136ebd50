/**
 * The SupernetTraining reconciler, kubebuilder style: fetch the training from the cache, apply its
 * reporter objects, observe its Jobs, pods and report, plan (pure, status.ts), create the Jobs the
 * plan needs, delete the ones it no longer wants, and patch status only when it changed. Safe to
 * rerun at any point: Jobs are found by name, so a restarted operator never starts a second one.
 */
import type { KubernetesObject, V1Job } from '@kubernetes/client-node';

import { SUPERNET_TRAINING } from '../../api/index.js';
import { controllerReference } from '../../runtime/apply.js';
import { applyAll, controlledBy, deleteChild, reportRefusal, writeStatus } from '../common.js';
import type { ReconcileResult } from '../../runtime/controller.js';
import type { ControllerContext } from '../context.js';
import { reporterChildren } from '../pods.js';
import { COMPONENT_LABEL, TRAINING_LABEL } from '../names.js';

import { stored } from '../objects.js';
import {
  trainingChildNames,
  trainingJob,
  trainingReporter,
  type SupernetTraining,
  type TrainingStage,
} from './children.js';
import { planTraining } from './status.js';

/** The components of the Jobs this reconciler runs and removes. */
const TRAINING_COMPONENTS: ReadonlySet<string> = new Set(['training', 'evaluation']);

/** Reconciles one SupernetTraining by its `namespace/name` key. */
export class SupernetTrainingReconciler {
  constructor(private readonly context: ControllerContext) {}

  async reconcile(key: string): Promise<ReconcileResult> {
    const { caches, config } = this.context;
    const cached = caches.trainings.getByKey(key);
    // Deleted: the garbage collector removes what it owned.
    if (!cached) return;
    const training = stored(cached) as SupernetTraining;
    const { namespace } = training.metadata;
    const generation = training.metadata.generation;
    const owner = controllerReference(training);
    const names = trainingChildNames(training, generation);

    const reporter = trainingReporter(training, generation, owner);
    await applyAll(this.context, reporterChildren(reporter)).catch(
      reportRefusal(this.context, SUPERNET_TRAINING, training, training.status ?? {}),
    );

    const jobs: Record<TrainingStage, V1Job | undefined> = {
      train: caches.jobs.get(namespace, names.train),
      evaluate: caches.jobs.get(namespace, names.evaluate),
    };
    const jobNames = new Set([names.train, names.evaluate]);
    const pods = caches.pods
      .list(namespace)
      .filter((pod) => jobNames.has(pod.metadata?.labels?.['batch.kubernetes.io/job-name'] ?? ''));
    const report = caches.configMaps.get(namespace, names.report)?.data ?? {};
    const plan = planTraining({
      training,
      trainJob: jobs.train,
      evaluateJob: jobs.evaluate,
      pods,
      report,
      reportName: names.report,
      now: this.context.now(),
    });

    // A Job's pod template is immutable: never re-apply a running one.
    const missing = plan.jobs.filter((stage) => !jobs[stage]);
    await applyAll(
      this.context,
      missing.map((stage) => trainingJob(training, stage, generation, owner, config)),
    ).catch(reportRefusal(this.context, SUPERNET_TRAINING, training, plan.status));
    const kept = new Set([...plan.jobs, ...plan.keep].map((stage) => names[stage]));
    await this.deleteUnwanted(
      training,
      kept,
      plan.status.accuracyTableRef?.configMapName ?? names.report,
      names.report,
    );

    await writeStatus(this.context, SUPERNET_TRAINING, training, plan.status, plan.event);
    return undefined;
  }

  /**
   * Deletes this training's Jobs that the plan does not want (an older generation's, or all while
   * suspended) and report ConfigMaps other than the current one and the published one.
   */
  private async deleteUnwanted(
    training: SupernetTraining,
    wantedJobs: ReadonlySet<string>,
    publishedReport: string,
    currentReport: string,
  ): Promise<void> {
    const { caches } = this.context;
    const { namespace, uid } = training.metadata;
    const owned = (object: KubernetesObject): boolean => controlledBy(object, uid);
    for (const job of caches.jobs.list(namespace)) {
      const name = job.metadata?.name ?? '';
      // Extraction Jobs are the training's too, but the targets' business.
      const ours = TRAINING_COMPONENTS.has(job.metadata?.labels?.[COMPONENT_LABEL] ?? '');
      if (ours && owned(job) && !wantedJobs.has(name) && !job.metadata?.deletionTimestamp) {
        await deleteChild(this.context, job);
      }
    }
    for (const map of caches.configMaps.list(namespace)) {
      const name = map.metadata?.name ?? '';
      const isReport = map.metadata?.labels?.[TRAINING_LABEL] !== undefined && owned(map);
      if (
        isReport &&
        name !== publishedReport &&
        name !== currentReport &&
        !map.metadata?.deletionTimestamp
      ) {
        await deleteChild(this.context, map);
      }
    }
  }
}
