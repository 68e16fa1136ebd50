/**
 * The DeploymentTarget reconciler: make sure its device class is profiled (a shared
 * LatencyProfile), choose the subnet once both tables exist, extract it (a Job shared by every
 * target that picks the same subnet of the same supernet generation), then serve it with a
 * Deployment and Service on the device's nodes. A new choice keeps the old pods serving until its
 * model is extracted, then rolls out. Conditions are evaluated in order (cert-manager style): the
 * first that is not True gives Ready its reason.
 */
import type { KubernetesObject, V1Deployment } from '@kubernetes/client-node';

import { DEPLOYMENT_TARGET, type Condition, type DeploymentTargetStatus } from '../../api/index.js';
import { controllerReference } from '../../runtime/apply.js';
import { setCondition } from '../../runtime/conditions.js';
import type { ReconcileResult } from '../../runtime/controller.js';
import { applyAll, ChildApplyError, writeStatus, type TransitionEvent } from '../common.js';
import type { ControllerContext } from '../context.js';
import { jobState, podTrouble } from '../jobs.js';
import { TARGET_LABEL } from '../names.js';
import { stored } from '../objects.js';
import {
  extractionJob,
  extractionJobName,
  type SupernetTraining,
} from '../supernet-training/children.js';
import {
  servingDeployment,
  servingEndpoint,
  servingNames,
  servingService,
  targetProfile,
  type DeploymentTarget,
} from './children.js';
import {
  deployedRevision,
  hasObservedSpec,
  nextPreviousSelection,
  planRollout,
  sameRevision,
  type Revision,
} from './rollout.js';
import { chooseSubnet, type TableText } from './selection.js';
import { latencyScale, nextLatencyCorrection, NOT_MONITORED } from './drift.js';

type Update = Pick<Condition, 'type' | 'status' | 'reason' | 'message'>;
type Phase = NonNullable<DeploymentTargetStatus['phase']>;
/** Status fields gathered while reconciling (the generated status type is read-only). */
type StatusFields = { -readonly [K in keyof DeploymentTargetStatus]?: DeploymentTargetStatus[K] };

/** Reasons that stay until the spec (or the supernet) changes. */
const TERMINAL = new Set([
  'NothingFitsBudget',
  'BelowAccuracyFloor',
  'ArchitectureMismatch',
  'EngineMismatch',
  'InvalidTable',
]);

/** Reconciles one DeploymentTarget by its `namespace/name` key. */
export class DeploymentTargetReconciler {
  constructor(private readonly context: ControllerContext) {}

  async reconcile(key: string): Promise<ReconcileResult> {
    const { caches, config } = this.context;
    const cached = caches.targets.getByKey(key);
    if (!cached) return;
    const target = stored(cached) as DeploymentTarget;
    const { namespace } = target.metadata;
    const extra: StatusFields = {};
    const updates: Update[] = [];
    const conclude = (phase: Phase) => this.writeStatus(target, phase, updates, extra);
    // A child the API server refuses fails the target visibly, with what was decided so far
    // recorded, and the reconcile is retried with backoff.
    const apply = async (type: string, children: readonly KubernetesObject[]) => {
      try {
        await applyAll(this.context, children);
      } catch (error) {
        if (!(error instanceof ChildApplyError)) throw error;
        updates.push({
          type,
          status: 'False',
          reason: 'ApplyFailed',
          message: error.refusal,
        });
        await conclude('Failed').catch(() => undefined);
        throw error;
      }
    };

    const cachedTraining = caches.trainings.get(namespace, target.spec.supernetRef.name);
    if (!cachedTraining) {
      updates.push({
        type: 'SubnetSelected',
        status: 'False',
        reason: 'WaitingForSupernet',
        message: `SupernetTraining ${target.spec.supernetRef.name} does not exist in namespace ${namespace}`,
      });
      return conclude('Pending');
    }
    const training = stored(cachedTraining) as SupernetTraining;
    const trainingOwner = controllerReference(training);

    // 1. The device class's latency table.
    const desiredProfile = targetProfile(target, training, trainingOwner);
    await apply('Profiled', [desiredProfile]);
    const profileName = desiredProfile.metadata?.name ?? '';
    extra.profileRef = { name: profileName };
    const profile = caches.profiles.get(namespace, profileName);
    const tableRef = profile?.status?.phase === 'Ready' ? profile.status.tableRef : undefined;
    const profileReady = profile?.status?.conditions?.find((c) => c.type === 'Ready');
    const profileReason =
      profileReady?.reason === 'NoMatchingNodes' ||
      profileReady?.reason === 'ArchitectureMismatch' ||
      profileReady?.reason === 'EngineMismatch'
        ? profileReady.reason
        : profile?.status?.phase === 'Failed'
          ? 'ProfileFailed'
          : 'Profiling';
    updates.push(
      tableRef
        ? {
            type: 'Profiled',
            status: 'True',
            reason: 'ProfileReady',
            message: `LatencyProfile ${profileName} is ready`,
          }
        : {
            type: 'Profiled',
            status: 'False',
            reason: profileReason,
            message:
              profileReady?.message || `LatencyProfile ${profileName} is measuring the device`,
          },
    );

    // 2. The choice, once both tables exist.
    const accuracyRef = training.status?.accuracyTableRef;
    const generation = training.status?.trainedGeneration;
    if (!accuracyRef || generation === undefined) {
      updates.push({
        type: 'SubnetSelected',
        status: 'False',
        reason: 'WaitingForSupernet',
        message: `SupernetTraining ${training.metadata.name} has not published its accuracy table yet`,
      });
      return conclude(tableRef ? 'Pending' : 'Profiling');
    }
    if (!tableRef) {
      updates.push({
        type: 'SubnetSelected',
        status: 'False',
        reason: 'WaitingForProfile',
        message: `waiting for LatencyProfile ${profileName}`,
      });
      return conclude(profileReason === 'Profiling' ? 'Profiling' : 'Failed');
    }
    const choice = chooseSubnet(
      target,
      training,
      await this.table(namespace, accuracyRef.configMapName, accuracyRef.key),
      await this.table(namespace, tableRef.configMapName, tableRef.key),
      latencyScale(target),
    );
    extra.supernetGeneration = generation;
    if (training.status.architectureKey) extra.architectureKey = training.status.architectureKey;
    if (!choice.ok) {
      updates.push({
        type: 'SubnetSelected',
        status: 'False',
        reason: choice.reason,
        message: choice.message,
      });
      if (choice.closest) extra.closestSubnet = choice.closest;
      return conclude('Failed');
    }
    const chosen: Revision = { id: choice.selected.id, supernetGeneration: generation };
    extra.previousSelection = nextPreviousSelection(target.status, chosen);
    extra.closestSubnet = undefined;
    extra.selectedSubnet = choice.selected;
    extra.predictedAccuracy = choice.predictedAccuracy;
    extra.expectedLatencyMs = choice.expectedLatencyMs;
    updates.push({
      type: 'SubnetSelected',
      status: 'True',
      reason: 'Selected',
      message: choice.message,
    });

    // 3. The model of the choice, then the pods that serve it.
    const subnet = choice.selected.id;
    const job = caches.jobs.get(namespace, extractionJobName(training, generation, subnet));
    if (!job)
      await apply('Available', [
        extractionJob(training, generation, subnet, trainingOwner, config),
      ]);
    const extraction = jobState(job);
    if (extraction.kind === 'failed') {
      updates.push({
        type: 'Available',
        status: 'False',
        reason: 'ExtractionFailed',
        message: `extraction of ${subnet} failed: ${extraction.message}`,
      });
      return conclude('Failed');
    }
    if (extraction.kind !== 'succeeded') {
      updates.push({
        type: 'Available',
        status: 'False',
        reason: 'Extracting',
        message: `extracting ${subnet} from generation ${generation}`,
      });
      return conclude('Extracting');
    }
    const owner = controllerReference(target);
    const names = servingNames(target);
    const deployment = caches.deployments.get(namespace, names.deployment);
    const plan = planRollout(
      target.status,
      target.metadata.generation,
      chosen,
      deployment,
      this.context.now(),
      this.podTrouble(target)?.message,
    );
    extra.failedRollout = plan.failed;
    await apply('Available', [
      servingDeployment(target, training, plan.serve, owner, config),
      servingService(target, owner),
    ]);
    extra.deploymentName = names.deployment;
    extra.serviceName = names.service;
    extra.endpoint = servingEndpoint(target);
    const served = this.availability(target, deployment, plan.serve);
    if (plan.rolledBack) {
      updates.push({
        type: 'Available',
        status: 'False',
        reason: 'RolledBack',
        message: `rolled back to ${plan.serve.id} (generation ${plan.serve.supernetGeneration}): ${plan.failed?.message ?? ''}; ${served.message}`,
      });
      return conclude('Degraded');
    }
    if (plan.failed) {
      updates.push({
        type: 'Available',
        status: 'False',
        reason: 'RolloutFailed',
        message: `${plan.failed.message}; no earlier selection was served to roll back to`,
      });
      return conclude('Failed');
    }
    updates.push(served);
    if (served.status !== 'True') return conclude('Deploying');

    // 4. How fast it serves, as Prometheus saw it.
    const servedLatency = this.context.servedLatency;
    if (!servedLatency) return this.writeStatus(target, 'Ready', updates, extra, [NOT_MONITORED]);
    // Every status write comes back as an update: read Prometheus only when the last reading is due.
    const last = target.status?.conditions?.find((c) => c.type === 'WithinBudget');
    const dueInMs =
      Date.parse(target.status?.measuredAt ?? '') +
      config.driftCheckIntervalMs -
      this.context.now().getTime();
    if (last?.observedGeneration === target.metadata.generation && dueInMs > 0) {
      await this.writeStatus(
        target,
        last.status === 'False' ? 'Degraded' : 'Ready',
        updates,
        extra,
        [last],
      );
      return { requeueAfterMs: dueInMs };
    }
    const assessment = await servedLatency({
      namespace,
      name: target.metadata.name,
      subnet: chosen.id,
      statistic: target.spec.latencyStatistic ?? 'p95',
      window: target.spec.drift?.window ?? '10m',
      budgetMs: target.spec.latencyBudgetMs,
      tolerance: target.spec.drift?.tolerance ?? 0.1,
    });
    extra.measuredLatencyMs = assessment.measuredLatencyMs;
    extra.measuredAt = assessment.measuredAt;
    extra.latencyCorrection = nextLatencyCorrection(target, chosen.id, assessment);
    const drifted = assessment.condition.status === 'False';
    await this.writeStatus(target, drifted ? 'Degraded' : 'Ready', updates, extra, [
      assessment.condition,
    ]);
    return { requeueAfterMs: config.driftCheckIntervalMs };
  }

  /** Whether the Deployment runs `revision` with all its replicas available, or what holds it up. */
  private availability(
    target: DeploymentTarget,
    deployment: V1Deployment | undefined,
    revision: Revision,
  ): Update {
    const wanted = target.spec.serving?.replicas ?? 1;
    const status = deployment?.status;
    if (
      sameRevision(deployedRevision(deployment), revision) &&
      hasObservedSpec(deployment) &&
      (status?.updatedReplicas ?? 0) >= wanted &&
      (status?.availableReplicas ?? 0) >= wanted
    ) {
      return {
        type: 'Available',
        status: 'True',
        reason: 'DeploymentAvailable',
        message: `${wanted} replicas serve ${revision.id}`,
      };
    }
    const trouble = this.podTrouble(target);
    return trouble
      ? { type: 'Available', status: 'False', reason: trouble.reason, message: trouble.message }
      : {
          type: 'Available',
          status: 'False',
          reason: 'RollingOut',
          message: `rolling out ${revision.id}: ${status?.availableReplicas ?? 0} of ${wanted} replicas available`,
        };
  }

  /** What keeps the target's serving pods from running (unschedulable, image pull), if anything. */
  private podTrouble(target: DeploymentTarget) {
    const pods = this.context.caches.pods
      .list(target.metadata.namespace)
      .filter((pod) => pod.metadata?.labels?.[TARGET_LABEL] === target.metadata.name);
    return podTrouble(pods);
  }

  /** A table's text from a ConfigMap: the operator's own from the cache, a user's from the API. */
  private async table(namespace: string, name: string, key: string): Promise<TableText> {
    const where = `ConfigMap ${name} key ${key}`;
    const cached = this.context.caches.configMaps.get(namespace, name);
    if (cached) return { text: cached.data?.[key], where };
    try {
      const map = await this.context.objects.read({
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name, namespace },
      });
      return { text: (map as { data?: Record<string, string> }).data?.[key], where };
    } catch (error) {
      if ((error as { code?: number }).code === 404) return { text: undefined, where };
      throw error;
    }
  }

  /**
   * Patches status with `updates` (whose first condition that is not True gives Ready its reason)
   * and `observations` (conditions that do not decide Ready, like WithinBudget), and records an
   * Event when the phase or the selection changed.
   */
  private async writeStatus(
    target: DeploymentTarget,
    phase: Phase,
    updates: readonly Update[],
    extra: Partial<DeploymentTargetStatus>,
    observations: readonly Update[] = [],
  ): Promise<ReconcileResult> {
    const generation = target.metadata.generation;
    const now = this.context.now();
    const previous = target.status ?? {};
    let conditions = previous.conditions ?? [];
    for (const update of [...updates, ...observations])
      conditions = setCondition(conditions, update, generation, now);
    const blocking = updates.find((u) => u.status !== 'True');
    const worry = observations.find((o) => o.status === 'False');
    const ready: Update = blocking
      ? { type: 'Ready', status: 'False', reason: blocking.reason, message: blocking.message }
      : {
          type: 'Ready',
          status: 'True',
          reason: 'Serving',
          message: updates.at(-1)?.message ?? 'serving',
        };
    conditions = setCondition(conditions, ready, generation, now);
    const status: DeploymentTargetStatus = {
      ...previous,
      ...extra,
      phase,
      observedGeneration: generation,
      conditions,
    };
    const changed =
      previous.phase !== phase ||
      previous.observedGeneration !== generation ||
      previous.selectedSubnet?.id !== status.selectedSubnet?.id;
    const event: TransitionEvent | undefined = changed
      ? {
          type:
            phase === 'Failed' || phase === 'Degraded' || TERMINAL.has(ready.reason)
              ? 'Warning'
              : 'Normal',
          reason: (worry ?? ready).reason,
          message: (worry ?? ready).message,
        }
      : undefined;
    await writeStatus(this.context, DEPLOYMENT_TARGET, target, status, event);
    return undefined;
  }
}
