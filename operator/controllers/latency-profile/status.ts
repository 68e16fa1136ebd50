/**
 * The LatencyProfile's level-based decision, pure: from its Job, pods and report (or, for an
 * external profile, the user's ConfigMap) to whether a Job should run and what the status says.
 */
import type { V1Job, V1Pod } from '@kubernetes/client-node';

import { architectureKey, ARCHITECTURE_PRESETS } from '../../../compofa/architecture.js';
import { createDesignSpace } from '../../../compofa/design-space.js';
import { engineMismatch } from '../../../compofa/engines.js';
import { parseLatencyTable, tableEngine } from '../../../compofa/tables.js';
import type { LatencyProfileStatus, MeasuredOn } from '../../api/index.js';
import { setCondition } from '../../runtime/conditions.js';
import type { TransitionEvent } from '../common.js';
import { jobState, podTrouble } from '../jobs.js';
import { SERVING_ENGINE } from '../pods.js';
import type { LatencyProfile } from './children.js';

/** The report key `compofa profile` publishes its table under. */
export const LATENCY_KEY = 'latency.json';

/** What the reconciler observed. */
export interface ProfileObservation {
  readonly profile: LatencyProfile;
  readonly job: V1Job | undefined;
  readonly pods: readonly V1Pod[];
  /** `data` of this generation's report ConfigMap (in-cluster profiles). */
  readonly report: Readonly<Record<string, string>>;
  readonly reportName: string;
  /** The user's ConfigMap of an external profile; undefined when it does not exist. */
  readonly external?: Readonly<Record<string, string>> | undefined;
  readonly now: Date;
}

/** What should exist and be said. */
export interface ProfilePlan {
  /** The profiling Job must exist (created when missing). */
  readonly runJob: boolean;
  /** Keep the Job if it exists, never create it (deleted otherwise). */
  readonly keepJob: boolean;
  readonly status: LatencyProfileStatus;
  readonly event: TransitionEvent | undefined;
}

type Phase = NonNullable<LatencyProfileStatus['phase']>;

/** Decides the plan for `observation`. */
export function planProfile(observation: ProfileObservation): ProfilePlan {
  const { profile, now } = observation;
  const generation = profile.metadata.generation;
  const previous = profile.status ?? {};
  const architecture = ARCHITECTURE_PRESETS[profile.spec.architecture?.preset ?? 'small'];
  const key = architectureKey(architecture);
  const decide = (
    phase: Phase,
    ready: { status: 'True' | 'False'; reason: string; message: string },
    job: { run: boolean; keep: boolean },
    extra: Partial<LatencyProfileStatus> = {},
  ): ProfilePlan => {
    const conditions = setCondition(
      previous.conditions,
      { type: 'Ready', ...ready },
      generation,
      now,
    );
    const changed = previous.phase !== phase || previous.observedGeneration !== generation;
    const warning =
      phase === 'Failed' ||
      ['Unschedulable', 'NoMatchingNodes', 'ConfigMapNotFound'].includes(ready.reason);
    return {
      runJob: job.run,
      keepJob: job.keep,
      status: {
        ...previous,
        ...extra,
        phase,
        observedGeneration: generation,
        architectureKey: key,
        conditions,
      },
      event: changed
        ? { type: warning ? 'Warning' : 'Normal', reason: ready.reason, message: ready.message }
        : undefined,
    };
  };
  const validated = (
    text: string | undefined,
    where: string,
    configMapName: string,
    tableKey: string,
    readyReason: string,
    job: { run: boolean; keep: boolean },
  ) => {
    const table = validateTable(text, where, profile, key);
    if (!table.ok)
      return decide(
        'Failed',
        { status: 'False', reason: table.reason, message: table.message },
        job,
      );
    return decide(
      'Ready',
      {
        status: 'True',
        reason: readyReason,
        message: `latency of ${table.rows} subnets at batch ${profile.spec.batchSize ?? 1} published in ConfigMap ${configMapName}`,
      },
      job,
      {
        tableRef: { configMapName, key: tableKey, rows: table.rows },
        measuredOn: table.measuredOn,
        measuredAt: table.measuredAt,
      },
    );
  };

  const external = profile.spec.external;
  if (external) {
    const tableKey = external.key ?? LATENCY_KEY;
    const noJob = { run: false, keep: false };
    if (observation.external === undefined) {
      return decide(
        'Pending',
        {
          status: 'False',
          reason: 'ConfigMapNotFound',
          message: `ConfigMap ${external.configMapName} does not exist`,
        },
        noJob,
      );
    }
    const where = `ConfigMap ${external.configMapName} key ${tableKey}`;
    return validated(
      observation.external[tableKey],
      where,
      external.configMapName,
      tableKey,
      'ExternalTableValid',
      noJob,
    );
  }

  const reported = observation.report[LATENCY_KEY];
  if (reported !== undefined) {
    const where = `ConfigMap ${observation.reportName} key ${LATENCY_KEY}`;
    return validated(reported, where, observation.reportName, LATENCY_KEY, 'TableReady', {
      run: false,
      keep: true,
    });
  }
  const job = jobState(observation.job);
  if (job.kind === 'failed') {
    return decide(
      'Failed',
      { status: 'False', reason: 'JobFailed', message: `profiling Job failed: ${job.message}` },
      { run: true, keep: true },
      { jobName: observation.job?.metadata?.name },
    );
  }
  if (job.kind === 'succeeded') {
    const message = `profiling finished but ConfigMap ${observation.reportName} key ${LATENCY_KEY} holds no table`;
    return decide(
      'Failed',
      { status: 'False', reason: 'InvalidTable', message },
      { run: true, keep: true },
    );
  }
  const jobName = { jobName: observation.job?.metadata?.name };
  const trouble = podTrouble(observation.pods);
  if (trouble) {
    // The scheduler's words tell "no node has these labels" from "no node has room".
    const noNode =
      trouble.reason === 'Unschedulable' &&
      /didn't match Pod's node affinity\/selector/.test(trouble.message) &&
      !/Insufficient/.test(trouble.message);
    return decide(
      'Pending',
      {
        status: 'False',
        reason: noNode ? 'NoMatchingNodes' : trouble.reason,
        message: trouble.message,
      },
      { run: true, keep: true },
      jobName,
    );
  }
  const progress = observation.report['progress.json'];
  return progress === undefined
    ? decide(
        'Pending',
        { status: 'False', reason: 'Pending', message: 'waiting for the profiling pod to start' },
        { run: true, keep: true },
        jobName,
      )
    : decide(
        'Profiling',
        { status: 'False', reason: 'Profiling', message: 'timing every subnet on the device' },
        { run: true, keep: true },
        jobName,
      );
}

function validateTable(
  text: string | undefined,
  where: string,
  profile: LatencyProfile,
  key: string,
):
  | { ok: true; rows: number; measuredOn: MeasuredOn; measuredAt: string }
  | {
      ok: false;
      reason: 'InvalidTable' | 'ArchitectureMismatch' | 'EngineMismatch';
      message: string;
    } {
  if (text === undefined)
    return { ok: false, reason: 'InvalidTable', message: `${where} does not exist` };
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    return {
      ok: false,
      reason: 'InvalidTable',
      message: `${where} is not JSON: ${(error as Error).message}`,
    };
  }
  const subject = (json as { subject?: { architectureKey?: unknown } } | null)?.subject;
  if (subject && typeof subject.architectureKey === 'string' && subject.architectureKey !== key) {
    return {
      ok: false,
      reason: 'ArchitectureMismatch',
      message: `${where} was measured for architecture ${subject.architectureKey}, not ${key} (preset ${profile.spec.architecture?.preset ?? 'small'})`,
    };
  }
  try {
    const space = createDesignSpace(
      profile.spec.designSpace ?? 'compound',
      ARCHITECTURE_PRESETS[profile.spec.architecture?.preset ?? 'small'],
    );
    const table = parseLatencyTable(json, where, space);
    const batchSize = profile.spec.batchSize ?? 1;
    if (table.batchSize !== batchSize) {
      return {
        ok: false,
        reason: 'InvalidTable',
        message: `${where} was measured at batch ${table.batchSize}, not ${batchSize}`,
      };
    }
    const device = table.device;
    // A table of another engine describes latencies that no serving pod will have.
    const engine = tableEngine(table);
    const mismatch = engineMismatch(engine, SERVING_ENGINE, where);
    if (mismatch) return { ok: false, reason: 'EngineMismatch', message: mismatch };
    const measuredOn: MeasuredOn = {
      cpuModel: device.cpuModel,
      threads: device.threads,
      backend: device.backend,
      ...(device.nodeName === undefined ? {} : { node: device.nodeName }),
      ...(device.gpuModel === undefined ? {} : { gpuModel: device.gpuModel }),
      ...(device.tensorflowVersion === undefined
        ? {}
        : { tensorflowVersion: device.tensorflowVersion }),
      ...(device.oneDnn === undefined ? {} : { oneDnn: device.oneDnn }),
      engine: engine.name,
      ...(device.engineVersion === undefined ? {} : { engineVersion: device.engineVersion }),
    };
    return { ok: true, rows: table.rows.length, measuredOn, measuredAt: table.measuredAt };
  } catch (error) {
    return { ok: false, reason: 'InvalidTable', message: (error as Error).message };
  }
}
