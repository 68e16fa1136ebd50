/**
 * What a SupernetTraining owns, computed from its spec alone: the report ConfigMap with its narrow
 * RBAC, the training Job and, once training succeeded, the evaluation Job. Pure functions, so the
 * reconciler only compares and applies.
 *
 * Every generation of the spec trains into its own folder (`g<generation>`) of the artifacts
 * volume; a replaced pod of the same generation resumes from the checkpoint there.
 */
import { posix } from 'node:path';

import type { V1Job, V1OwnerReference, V1ResourceRequirements } from '@kubernetes/client-node';

import type { SupernetTraining as SupernetTrainingResource } from '../../api/index.js';
import type { OperatorConfig } from '../../config.js';
import type { Stored } from '../objects.js';
import { childLabels, childName, shortHash, TRAINING_LABEL } from '../names.js';
import {
  ARTIFACTS_MOUNT,
  artifactsVolume,
  compofaContainer,
  compofaJob,
  ownedMeta,
  reporterObjects,
  resourceRequirements,
  securePodSpec,
  type ReporterObjects,
} from '../pods.js';

/** A SupernetTraining read from the API server. */
export type SupernetTraining = Stored<SupernetTrainingResource>;

/** Where the imagefolder dataset's own volume is mounted. */
const DATASET_MOUNT = '/dataset';

/** The two Jobs of a training run. */
export type TrainingStage = 'train' | 'evaluate';

/**
 * Names of a training's children. Each generation reports into its own ConfigMap, so a new spec
 * never reads the previous one's progress or table as its own.
 */
export function trainingChildNames(training: SupernetTraining, generation: number) {
  const name = training.metadata.name;
  return {
    reporter: childName(name, 'reporter'),
    report: childName(name, `g${generation}`),
    train: childName(name, `train-g${generation}`),
    evaluate: childName(name, `evaluate-g${generation}`),
  };
}

/** Paths on the artifacts volume, as the pods see them. */
export function trainingPaths(training: SupernetTraining, generation: number) {
  const base = posix.join(
    ARTIFACTS_MOUNT,
    training.spec.artifacts.subPath ?? training.metadata.name,
  );
  const run = posix.join(base, `g${generation}`);
  return {
    run,
    checkpoint: posix.join(run, 'checkpoint'),
    accuracyTable: posix.join(run, 'accuracy.json'),
    models: posix.join(run, 'models'),
  };
}

/** The generation's report ConfigMap and the service account that may patch only it. */
export function trainingReporter(
  training: SupernetTraining,
  generation: number,
  owner: V1OwnerReference,
): ReporterObjects {
  const names = trainingChildNames(training, generation);
  const labels = childLabels({ [TRAINING_LABEL]: training.metadata.name }, 'training');
  return reporterObjects(
    ownedMeta(names.reporter, training.metadata.namespace, labels, owner),
    names.report,
  );
}

/** The Job of `stage` for the training's current generation. */
export function trainingJob(
  training: SupernetTraining,
  stage: TrainingStage,
  generation: number,
  owner: V1OwnerReference,
  config: OperatorConfig,
): V1Job {
  const { spec } = training;
  const names = trainingChildNames(training, generation);
  const paths = trainingPaths(training, generation);
  const args =
    stage === 'train'
      ? [
          'train',
          ...['--epochs-scale', String(spec.schedule?.epochsScale ?? 1)],
          ...['--batch-size', String(spec.schedule?.batchSize ?? 64)],
          ...['--checkpoint-every', String(spec.artifacts.checkpointEverySteps ?? 100)],
          // A replaced pod continues the checkpoint of this generation instead of starting over.
          '--resume',
        ]
      : ['evaluate', ...['--out', paths.accuracyTable]];
  return trainerJob(training, generation, owner, config, {
    name: stage === 'train' ? names.train : names.evaluate,
    component: stage === 'train' ? 'training' : 'evaluation',
    args: [...args, ...['--report-configmap', names.report]],
    serviceAccountName: names.reporter,
    resources: resourceRequirements(spec.resources ?? {}, 1),
    nodeSelector: spec.nodeSelector,
    tolerations: spec.tolerations,
  });
}

/** Where the model of `subnet` extracted from `generation` lives, as pods see it. */
export function modelPath(training: SupernetTraining, generation: number, subnet: string): string {
  return posix.join(trainingPaths(training, generation).models, subnet);
}

/** The Job name that extracts `subnet` from `generation`: one per pair, shared by targets. */
export function extractionJobName(
  training: { readonly metadata: { readonly name: string } },
  generation: number,
  subnet: string,
): string {
  return childName(training.metadata.name, `extract-g${generation}-${shortHash(subnet)}`);
}

/**
 * The Job that extracts `subnet` of `generation` into its model folder, on CPU anywhere (it needs
 * the checkpoint and the dataset for batch-norm re-calibration, not the device). It reports
 * nothing: its success is the model on the volume.
 */
export function extractionJob(
  training: SupernetTraining,
  generation: number,
  subnet: string,
  owner: V1OwnerReference,
  config: OperatorConfig,
): V1Job {
  return trainerJob(training, generation, owner, config, {
    name: extractionJobName(training, generation, subnet),
    component: 'extraction',
    args: [
      'extract',
      ...['--subnet', subnet],
      ...['--out', modelPath(training, generation, subnet)],
    ],
    resources: {},
  });
}

/** A Job of the trainer image with the training's data and checkpoint flags and volumes. */
function trainerJob(
  training: SupernetTraining,
  generation: number,
  owner: V1OwnerReference,
  config: OperatorConfig,
  job: {
    readonly name: string;
    readonly component: string;
    readonly args: readonly string[];
    readonly serviceAccountName?: string;
    readonly resources: V1ResourceRequirements;
    readonly nodeSelector?: Readonly<Record<string, string>> | undefined;
    readonly tolerations?: SupernetTraining['spec']['tolerations'];
  },
): V1Job {
  const { spec, metadata } = training;
  const paths = trainingPaths(training, generation);
  const dataset = spec.dataset ?? {};
  const artifacts = artifactsVolume(spec.artifacts.claimName, false);
  const volumes = [artifacts.volume];
  const mounts = [artifacts.mount];
  let datasetPath: string | undefined;
  if (dataset.type === 'imagefolder' && dataset.path !== undefined) {
    if (dataset.claimName !== undefined) {
      volumes.push({
        name: 'dataset',
        persistentVolumeClaim: { claimName: dataset.claimName, readOnly: true },
      });
      mounts.push({ name: 'dataset', mountPath: DATASET_MOUNT, readOnly: true });
      datasetPath = posix.join(DATASET_MOUNT, dataset.path);
    } else {
      datasetPath = posix.join(ARTIFACTS_MOUNT, dataset.path);
    }
  }
  const [command, ...rest] = job.args;
  const args = [
    command ?? '',
    ...['--preset', spec.architecture?.preset ?? 'small'],
    ...['--design-space', spec.designSpace ?? 'compound'],
    ...['--dataset', dataset.type ?? 'fashion-mnist'],
    ...(datasetPath === undefined ? [] : ['--dataset-path', datasetPath]),
    ...(dataset.limitPerClass === undefined
      ? []
      : ['--limit-per-class', String(dataset.limitPerClass)]),
    ...['--seed', String(spec.schedule?.seed ?? 0)],
    ...['--checkpoint-dir', paths.checkpoint],
    ...rest,
    '--json',
  ];
  const labels = childLabels({ [TRAINING_LABEL]: metadata.name }, job.component);
  return compofaJob(
    config,
    ownedMeta(job.name, metadata.namespace, labels, owner),
    securePodSpec(config, {
      restartPolicy: 'Never',
      ...(job.serviceAccountName ? { serviceAccountName: job.serviceAccountName } : {}),
      containers: [
        compofaContainer(config, {
          name: 'compofa',
          image: spec.image ?? config.trainerImage,
          command: ['compofa'],
          args,
          resources: job.resources,
          volumeMounts: mounts,
        }),
      ],
      volumes,
      ...(job.nodeSelector ? { nodeSelector: job.nodeSelector } : {}),
      ...(job.tolerations ? { tolerations: job.tolerations } : {}),
    }),
  );
}
