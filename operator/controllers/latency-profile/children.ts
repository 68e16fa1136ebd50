/**
 * What a LatencyProfile owns: the report ConfigMap with its narrow RBAC and the profiling Job,
 * pinned to the device's nodes. Profiling needs no trained weights, so the Job mounts no volume.
 */
import type { V1Job, V1OwnerReference } from '@kubernetes/client-node';

import type { LatencyProfile as LatencyProfileResource } from '../../api/index.js';
import type { OperatorConfig } from '../../config.js';
import { childLabels, childName, PROFILE_LABEL } from '../names.js';
import type { Stored } from '../objects.js';
import {
  compofaContainer,
  compofaJob,
  ownedMeta,
  reporterObjects,
  resourceRequirements,
  securePodSpec,
  engineEnv,
  type ReporterObjects,
} from '../pods.js';

/** A LatencyProfile read from the API server. */
export type LatencyProfile = Stored<LatencyProfileResource>;

/** Names of a profile's children; each generation reports into its own ConfigMap. */
export function profileChildNames(profile: LatencyProfile, generation: number) {
  const name = profile.metadata.name;
  return {
    reporter: childName(name, 'reporter'),
    report: childName(name, `g${generation}`),
    job: childName(name, `profile-g${generation}`),
  };
}

/** The generation's report ConfigMap and the service account that may patch only it. */
export function profileReporter(
  profile: LatencyProfile,
  generation: number,
  owner: V1OwnerReference,
): ReporterObjects {
  const names = profileChildNames(profile, generation);
  const labels = childLabels({ [PROFILE_LABEL]: profile.metadata.name }, 'profiling');
  return reporterObjects(
    ownedMeta(names.reporter, profile.metadata.namespace, labels, owner),
    names.report,
  );
}

/** The Job that runs `compofa profile` on the device's nodes. */
export function profileJob(
  profile: LatencyProfile,
  generation: number,
  owner: V1OwnerReference,
  config: OperatorConfig,
): V1Job {
  const { spec, metadata } = profile;
  const names = profileChildNames(profile, generation);
  const device = spec.device;
  const labels = childLabels({ [PROFILE_LABEL]: metadata.name }, 'profiling');
  return compofaJob(
    config,
    ownedMeta(names.job, metadata.namespace, labels, owner),
    securePodSpec(config, {
      restartPolicy: 'Never',
      serviceAccountName: names.reporter,
      containers: [
        compofaContainer(config, {
          name: 'compofa',
          image: config.runtimeImage,
          command: ['compofa'],
          args: [
            'profile',
            ...['--preset', spec.architecture?.preset ?? 'small'],
            ...['--design-space', spec.designSpace ?? 'compound'],
            ...['--batch-size', String(spec.batchSize ?? 1)],
            ...['--warmup-runs', String(spec.warmupRuns ?? 5)],
            ...['--timed-runs', String(spec.timedRuns ?? 10)],
            // The table travels in the report; the file is only the CLI's own copy.
            ...['--out', '/tmp/latency.json'],
            ...['--report-configmap', names.report],
            '--json',
          ],
          resources: resourceRequirements(device.resources ?? {}, 0),
          env: engineEnv(device.resources?.cpu),
        }),
      ],
      nodeSelector: device.nodeSelector,
      ...(device.tolerations ? { tolerations: device.tolerations } : {}),
    }),
  );
}
