/**
 * The SupernetTraining's level-based decision: from what exists now (its Jobs, their pods, the
 * report ConfigMap of the current generation) to which Jobs should exist and what the status
 * says. Pure, so every transition is a unit test; the reconciler only observes and applies.
 */
import type { V1Job, V1Pod } from '@kubernetes/client-node';

import { architectureKey, ARCHITECTURE_PRESETS } from '../../../compofa/architecture.js';
import { createDesignSpace } from '../../../compofa/design-space.js';
import { parseAccuracyTable } from '../../../compofa/tables.js';
import type { Condition, Progress, SupernetTrainingStatus } from '../../api/index.js';
import { setCondition } from '../../runtime/conditions.js';
import { jobState, podTrouble, type JobState } from '../jobs.js';
import type { SupernetTraining, TrainingStage } from './children.js';

/** The report keys the trainer writes (trainer/report.ts, trainer/cli.ts). */
export const REPORT_KEYS = { progress: 'progress.json', accuracy: 'accuracy.json' } as const;

/** What the reconciler observed for the current generation. */
export interface TrainingObservation {
  readonly training: SupernetTraining;
  readonly trainJob: V1Job | undefined;
  readonly evaluateJob: V1Job | undefined;
  /** Pods of those Jobs. */
  readonly pods: readonly V1Pod[];
  /** `data` of the current generation's report ConfigMap. */
  readonly report: Readonly<Record<string, string>>;
  /** Name of that ConfigMap, for the accuracy table's reference. */
  readonly reportName: string;
  readonly now: Date;
}

/** What should exist and be said. */
export interface TrainingPlan {
  /** The Jobs that must exist now: created when missing. */
  readonly jobs: readonly TrainingStage[];
  /**
   * Jobs kept if they exist but never created. The rest are deleted, so a Job is only removed
   * once the status that makes it unnecessary is recorded (a reconcile reading a cache that has
   * not yet seen that status must not find the Job gone and start it again).
   */
  readonly keep: readonly TrainingStage[];
  readonly status: SupernetTrainingStatus;
  /** A one-line account of a transition, for a Kubernetes Event; undefined when nothing changed. */
  readonly event:
    | { readonly type: 'Normal' | 'Warning'; readonly reason: string; readonly message: string }
    | undefined;
}

type ConditionUpdate = Pick<Condition, 'type' | 'status' | 'reason' | 'message'>;

type Decide = (
  phase: NonNullable<SupernetTrainingStatus['phase']>,
  jobs: readonly TrainingStage[],
  updates: readonly ConditionUpdate[],
  extra?: Partial<SupernetTrainingStatus>,
  keep?: readonly TrainingStage[],
) => TrainingPlan;

/** Decides the plan for `observation`. */
export function planTraining(observation: TrainingObservation): TrainingPlan {
  const { training, now } = observation;
  const generation = training.metadata.generation;
  const previous = training.status ?? {};
  const base: SupernetTrainingStatus = {
    ...previous,
    observedGeneration: generation,
    architectureKey: architectureKey(
      ARCHITECTURE_PRESETS[training.spec.architecture?.preset ?? 'small'],
    ),
  };
  const decide: Decide = (
    phase: NonNullable<SupernetTrainingStatus['phase']>,
    jobs: readonly TrainingStage[],
    updates: readonly ConditionUpdate[],
    extra: Partial<SupernetTrainingStatus> = {},
    keep: readonly TrainingStage[] = [],
  ): TrainingPlan => {
    let conditions = previous.conditions ?? [];
    for (const update of updates) conditions = setCondition(conditions, update, generation, now);
    const status: SupernetTrainingStatus = { ...base, ...extra, phase, conditions };
    const ready = updates.find((u) => u.type === 'Ready');
    const changed = previous.phase !== phase || previous.observedGeneration !== generation;
    return {
      jobs,
      keep,
      status,
      event:
        changed && ready
          ? {
              type:
                phase === 'Failed' ||
                ready.reason === 'Unschedulable' ||
                ready.reason === 'ImagePullFailed'
                  ? 'Warning'
                  : 'Normal',
              reason: ready.reason,
              message: ready.message,
            }
          : undefined,
    };
  };

  // A published table of this generation is final: nothing more runs.
  if (previous.trainedGeneration === generation && previous.accuracyTableRef) {
    return decide(
      'Succeeded',
      [],
      [{ type: 'Ready', status: 'True', reason: 'Succeeded', message: succeededMessage(previous) }],
    );
  }
  if (training.spec.suspend) {
    const message =
      'training is suspended; its checkpoint is kept and it resumes when suspend is false';
    return decide(
      'Suspended',
      [],
      [
        { type: 'Ready', status: 'False', reason: 'Suspended', message },
        { type: 'Trained', status: 'False', reason: 'Suspended', message },
      ],
    );
  }

  // The table in this generation's report is the proof of success, whatever became of the Jobs.
  if (observation.report[REPORT_KEYS.accuracy] !== undefined) {
    return published(observation, base, decide);
  }

  const train = jobState(observation.trainJob);
  const progress = progressFrom(observation.report[REPORT_KEYS.progress]);
  const trouble = podTrouble(observation.pods);
  if (train.kind !== 'succeeded') {
    return trainingPhase(train, trouble, progress, decide);
  }

  const evaluate = jobState(observation.evaluateJob);
  const trained: ConditionUpdate = {
    type: 'Trained',
    status: 'True',
    reason: 'TrainingComplete',
    message: `training of generation ${generation} finished`,
  };
  if (evaluate.kind === 'failed') {
    const message = `evaluation Job failed: ${evaluate.message}`;
    return decide(
      'Failed',
      ['train', 'evaluate'],
      [
        trained,
        { type: 'Evaluated', status: 'False', reason: 'JobFailed', message },
        { type: 'Ready', status: 'False', reason: 'JobFailed', message },
      ],
    );
  }
  if (evaluate.kind === 'succeeded') {
    const message = `evaluation finished but ConfigMap ${observation.reportName} key ${REPORT_KEYS.accuracy} holds no accuracy table`;
    return decide(
      'Failed',
      ['train', 'evaluate'],
      [
        trained,
        { type: 'Evaluated', status: 'False', reason: 'JobFailed', message },
        { type: 'Ready', status: 'False', reason: 'JobFailed', message },
      ],
    );
  }
  const message = trouble?.message ?? 'measuring the accuracy of every subnet';
  return decide(
    'Evaluating',
    ['train', 'evaluate'],
    [
      trained,
      { type: 'Evaluated', status: 'False', reason: 'Evaluating', message },
      { type: 'Ready', status: 'False', reason: trouble?.reason ?? 'Evaluating', message },
    ],
    progress ? { progress } : {},
  );
}

/** The plan once the report holds the accuracy table: Succeeded, or Failed if it is invalid. */
function published(
  observation: TrainingObservation,
  base: SupernetTrainingStatus,
  decide: Decide,
): TrainingPlan {
  const generation = observation.training.metadata.generation;
  const trained: ConditionUpdate = {
    type: 'Trained',
    status: 'True',
    reason: 'TrainingComplete',
    message: `training of generation ${generation} finished`,
  };
  const table = accuracyTable(observation);
  if (!table.ok) {
    return decide(
      'Failed',
      ['train', 'evaluate'],
      [
        trained,
        { type: 'Evaluated', status: 'False', reason: 'JobFailed', message: table.message },
        { type: 'Ready', status: 'False', reason: 'JobFailed', message: table.message },
      ],
    );
  }
  const progress = progressFrom(observation.report[REPORT_KEYS.progress]);
  const extra: Partial<SupernetTrainingStatus> = {
    trainedGeneration: generation,
    // The table's own time: the same on every reconcile, so status is written once.
    completedAt: table.measuredAt,
    accuracyTableRef: {
      configMapName: observation.reportName,
      key: REPORT_KEYS.accuracy,
      rows: table.rows,
      method: 'measured',
    },
    ...(progress ? { progress: { ...progress, percent: 100 } } : {}),
  };
  return decide(
    'Succeeded',
    [],
    [
      trained,
      {
        type: 'Evaluated',
        status: 'True',
        reason: 'AccuracyTablePublished',
        message: `accuracy of ${table.rows} subnets published in ConfigMap ${observation.reportName}`,
      },
      {
        type: 'Ready',
        status: 'True',
        reason: 'Succeeded',
        message: succeededMessage({ ...base, ...extra }),
      },
    ],
    extra,
    // Finished Jobs go in a later reconcile, once the cache shows this status.
    ['train', 'evaluate'],
  );
}

function trainingPhase(
  train: Exclude<JobState, { kind: 'succeeded' }>,
  trouble: ReturnType<typeof podTrouble>,
  progress: Progress | undefined,
  decide: Decide,
): TrainingPlan {
  if (train.kind === 'failed') {
    const message = `training Job failed: ${train.message}`;
    return decide(
      'Failed',
      ['train'],
      [
        { type: 'Trained', status: 'False', reason: 'JobFailed', message },
        {
          type: 'Evaluated',
          status: 'False',
          reason: 'WaitingForTraining',
          message: 'training did not finish',
        },
        { type: 'Ready', status: 'False', reason: 'JobFailed', message },
      ],
    );
  }
  const started = progress !== undefined;
  const reason = trouble?.reason ?? (started ? 'Training' : 'Pending');
  const message =
    trouble?.message ??
    (started
      ? `${progress.stage}: step ${progress.step ?? 0} of ${progress.totalSteps ?? '?'}`
      : 'waiting for the training pod to start');
  return decide(
    started ? 'Training' : 'Pending',
    ['train'],
    [
      { type: 'Trained', status: 'False', reason, message },
      {
        type: 'Evaluated',
        status: 'False',
        reason: 'WaitingForTraining',
        message: 'training has not finished',
      },
      { type: 'Ready', status: 'False', reason: trouble?.reason ?? 'Training', message },
    ],
    progress ? { progress } : {},
  );
}

/** The status progress from the pod's progress report; undefined when absent or unreadable. */
export function progressFrom(text: string | undefined): Progress | undefined {
  if (text === undefined) return undefined;
  let report: Record<string, unknown>;
  try {
    report = JSON.parse(text) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  const number = (key: string): number | undefined =>
    typeof report[key] === 'number' && Number.isFinite(report[key]) && report[key] >= 0
      ? report[key]
      : undefined;
  const string = (key: string): string | undefined =>
    typeof report[key] === 'string' ? report[key] : undefined;
  const stage = string('stage');
  const step = number('step');
  const totalSteps = number('totalSteps');
  if (stage === undefined || step === undefined || !totalSteps) return undefined;
  const percent = Math.min(100, Math.floor((100 * step) / totalSteps));
  const optional = {
    epoch: number('epoch'),
    stepsPerSecond: number('stepsPerSecond'),
    eta: string('eta'),
    updatedAt: string('updatedAt'),
  };
  return {
    stage: stage.slice(0, 63),
    step: Math.floor(step),
    totalSteps: Math.floor(totalSteps),
    percent,
    ...Object.fromEntries(Object.entries(optional).filter(([, v]) => v !== undefined)),
  };
}

function accuracyTable(
  observation: TrainingObservation,
): { ok: true; rows: number; measuredAt: string } | { ok: false; message: string } {
  const { training, reportName } = observation;
  const text = observation.report[REPORT_KEYS.accuracy];
  const where = `ConfigMap ${reportName} key ${REPORT_KEYS.accuracy}`;
  if (text === undefined) {
    return { ok: false, message: `evaluation finished but ${where} holds no accuracy table` };
  }
  try {
    const space = createDesignSpace(
      training.spec.designSpace ?? 'compound',
      ARCHITECTURE_PRESETS[training.spec.architecture?.preset ?? 'small'],
    );
    const table = parseAccuracyTable(JSON.parse(text), where, space);
    return { ok: true, rows: table.rows.length, measuredAt: table.measuredAt };
  } catch (error) {
    return { ok: false, message: `invalid accuracy table: ${(error as Error).message}` };
  }
}

function succeededMessage(status: SupernetTrainingStatus): string {
  const ref = status.accuracyTableRef;
  return ref
    ? `accuracy table of ${ref.rows ?? '?'} subnets published in ConfigMap ${ref.configMapName}`
    : 'accuracy table published';
}
