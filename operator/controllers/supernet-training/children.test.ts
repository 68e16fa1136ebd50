import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import type { V1OwnerReference } from '@kubernetes/client-node';

import { DEFAULT_OPERATOR_CONFIG } from '../../config.js';
import {
  extractionJob,
  trainingChildNames,
  trainingJob,
  trainingReporter,
  type SupernetTraining,
} from './children.js';

const OWNER: V1OwnerReference = {
  apiVersion: 'compofa.io/v1alpha1',
  kind: 'SupernetTraining',
  name: 'fmnist',
  uid: 'uid-1',
  controller: true,
  blockOwnerDeletion: true,
};

function training(spec: Partial<SupernetTraining['spec']> = {}, name = 'fmnist'): SupernetTraining {
  return {
    apiVersion: 'compofa.io/v1alpha1',
    kind: 'SupernetTraining',
    metadata: { name, namespace: 'ml', uid: 'uid-1', generation: 3 },
    spec: { artifacts: { claimName: 'artifacts' }, ...spec },
  };
}

/** The value following `flag` in `args`. */
function flag(args: readonly string[] | undefined, name: string): string | undefined {
  const at = args?.indexOf(name) ?? -1;
  return at < 0 ? undefined : args?.[at + 1];
}

describe('the children of a SupernetTraining', () => {
  it('trains with the spec mapped onto compofa train, resuming its generation', () => {
    const job = trainingJob(
      training({
        designSpace: 'compound',
        architecture: { preset: 'small' },
        dataset: { type: 'mnist', limitPerClass: 50 },
        schedule: { epochsScale: 0.05, batchSize: 32, seed: 7 },
        artifacts: { claimName: 'artifacts', subPath: 'runs/a', checkpointEverySteps: 20 },
      }),
      'train',
      3,
      OWNER,
      DEFAULT_OPERATOR_CONFIG,
    );
    assert.equal(job.metadata?.name, 'fmnist-train-g3');
    const container = job.spec?.template.spec?.containers[0];
    const args = container?.args;
    assert.equal(args?.[0], 'train');
    assert.equal(flag(args, '--preset'), 'small');
    assert.equal(flag(args, '--dataset'), 'mnist');
    assert.equal(flag(args, '--limit-per-class'), '50');
    assert.equal(flag(args, '--epochs-scale'), '0.05');
    assert.equal(flag(args, '--batch-size'), '32');
    assert.equal(flag(args, '--seed'), '7');
    assert.equal(flag(args, '--checkpoint-every'), '20');
    assert.equal(flag(args, '--checkpoint-dir'), '/artifacts/runs/a/g3/checkpoint');
    assert.equal(flag(args, '--report-configmap'), 'fmnist-g3');
    assert.ok(args.includes('--resume'));
    assert.equal(container?.image, DEFAULT_OPERATOR_CONFIG.trainerImage);
    assert.deepEqual(job.metadata.ownerReferences, [OWNER]);
  });

  it('evaluates the same generation into its accuracy table', () => {
    const job = trainingJob(training(), 'evaluate', 3, OWNER, DEFAULT_OPERATOR_CONFIG);
    const args = job.spec?.template.spec?.containers[0]?.args;
    assert.equal(job.metadata?.name, 'fmnist-evaluate-g3');
    assert.equal(args?.[0], 'evaluate');
    assert.equal(flag(args, '--out'), '/artifacts/fmnist/g3/accuracy.json');
    assert.equal(flag(args, '--checkpoint-dir'), '/artifacts/fmnist/g3/checkpoint');
    assert.ok(!args.includes('--resume'));
    assert.equal(job.metadata.labels?.['app.kubernetes.io/component'], 'evaluation');
  });

  it('requests GPUs as an extended resource, none when gpus is 0', () => {
    const gpu = trainingJob(training(), 'train', 1, OWNER, DEFAULT_OPERATOR_CONFIG);
    const resources = gpu.spec?.template.spec?.containers[0]?.resources;
    assert.deepEqual(resources?.limits, { 'nvidia.com/gpu': '1' });
    assert.deepEqual(resources.requests, { 'nvidia.com/gpu': '1' });
    const amd = trainingJob(
      training({ resources: { gpus: 2, gpuResourceName: 'amd.com/gpu', memory: '8Gi', cpu: '4' } }),
      'train',
      1,
      OWNER,
      DEFAULT_OPERATOR_CONFIG,
    ).spec?.template.spec?.containers[0]?.resources;
    assert.deepEqual(amd?.limits, { 'amd.com/gpu': '2', memory: '8Gi' });
    assert.deepEqual(amd.requests, { 'amd.com/gpu': '2', cpu: '4', memory: '8Gi' });
    const cpu = trainingJob(
      training({ resources: { gpus: 0 } }),
      'train',
      1,
      OWNER,
      DEFAULT_OPERATOR_CONFIG,
    );
    assert.deepEqual(cpu.spec?.template.spec?.containers[0]?.resources, {});
  });

  it('mounts an imagefolder dataset from its own claim, read-only, or from the artifacts volume', () => {
    const own = trainingJob(
      training({ dataset: { type: 'imagefolder', claimName: 'photos', path: 'train' } }),
      'train',
      1,
      OWNER,
      DEFAULT_OPERATOR_CONFIG,
    ).spec?.template.spec;
    assert.equal(flag(own?.containers[0]?.args, '--dataset-path'), '/dataset/train');
    assert.deepEqual(own?.volumes?.find((v) => v.name === 'dataset')?.persistentVolumeClaim, {
      claimName: 'photos',
      readOnly: true,
    });
    const shared = trainingJob(
      training({ dataset: { type: 'imagefolder', path: 'data/train' } }),
      'train',
      1,
      OWNER,
      DEFAULT_OPERATOR_CONFIG,
    ).spec?.template.spec;
    assert.equal(flag(shared?.containers[0]?.args, '--dataset-path'), '/artifacts/data/train');
    assert.equal(
      shared?.volumes?.some((v) => v.name === 'dataset'),
      false,
    );
  });

  it('places the pod with the node selector and tolerations, hardened', () => {
    const pod = trainingJob(
      training({
        nodeSelector: { 'nvidia.com/gpu.present': 'true' },
        tolerations: [{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }],
      }),
      'train',
      1,
      OWNER,
      DEFAULT_OPERATOR_CONFIG,
    ).spec?.template.spec;
    assert.deepEqual(pod?.nodeSelector, { 'nvidia.com/gpu.present': 'true' });
    assert.deepEqual(pod.tolerations, [
      { key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' },
    ]);
    assert.equal(pod.restartPolicy, 'Never');
    assert.equal(pod.securityContext?.runAsNonRoot, true);
    assert.equal(pod.securityContext.runAsUser, DEFAULT_OPERATOR_CONFIG.podUser);
    const security = pod.containers[0]?.securityContext;
    assert.equal(security?.readOnlyRootFilesystem, true);
    assert.equal(security.allowPrivilegeEscalation, false);
    assert.deepEqual(security.capabilities?.drop, ['ALL']);
    assert.equal(pod.serviceAccountName, 'fmnist-reporter');
  });

  it('fails the Job at once when compofa exits with its usage code', () => {
    const job = trainingJob(training(), 'train', 1, OWNER, DEFAULT_OPERATOR_CONFIG);
    assert.equal(job.spec?.backoffLimit, DEFAULT_OPERATOR_CONFIG.jobBackoffLimit);
    assert.deepEqual(job.spec.podFailurePolicy?.rules[0], {
      action: 'FailJob',
      onExitCodes: { containerName: 'compofa', operator: 'In', values: [2] },
    });
  });

  it('lets the report service account patch only its own ConfigMap', () => {
    const reporter = trainingReporter(training(), 3, OWNER);
    assert.equal(reporter.configMap.metadata?.name, 'fmnist-g3');
    assert.equal(reporter.serviceAccount.metadata?.name, 'fmnist-reporter');
    assert.equal(reporter.configMap.data, undefined, 'the operator never owns the reported data');
    assert.deepEqual(reporter.role.rules, [
      {
        apiGroups: [''],
        resources: ['configmaps'],
        resourceNames: ['fmnist-g3'],
        verbs: ['get', 'patch'],
      },
    ]);
    assert.deepEqual(reporter.roleBinding.subjects, [
      { kind: 'ServiceAccount', name: 'fmnist-reporter', namespace: 'ml' },
    ]);
  });

  it('extracts one subnet per Job, on CPU, without API access, into its model folder', () => {
    const subnet = 'r28-d2e3-d3e4-d4e6-d2e3-d3e4';
    const job = extractionJob(training(), 3, subnet, OWNER, DEFAULT_OPERATOR_CONFIG);
    const other = extractionJob(
      training(),
      3,
      'r28-d4e6-d3e4-d4e6-d2e3-d3e4',
      OWNER,
      DEFAULT_OPERATOR_CONFIG,
    );
    assert.match(job.metadata?.name ?? '', /^fmnist-extract-g3-[0-9a-f]{10}$/);
    assert.notEqual(job.metadata?.name, other.metadata?.name);
    const pod = job.spec?.template.spec;
    const args = pod?.containers[0]?.args;
    assert.equal(args?.[0], 'extract');
    assert.equal(flag(args, '--subnet'), subnet);
    assert.equal(flag(args, '--out'), `/artifacts/fmnist/g3/models/${subnet}`);
    assert.equal(flag(args, '--checkpoint-dir'), '/artifacts/fmnist/g3/checkpoint');
    assert.equal(flag(args, '--report-configmap'), undefined);
    assert.equal(pod?.automountServiceAccountToken, false);
    assert.deepEqual(pod.containers[0]?.resources, {});
    assert.equal(job.metadata?.labels?.['app.kubernetes.io/component'], 'extraction');
  });

  it('keeps child names valid and distinct for long training names', () => {
    const long = 'a'.repeat(70);
    const names = trainingChildNames(training({}, long), 12);
    const other = trainingChildNames(training({}, `${'a'.repeat(69)}b`), 12);
    for (const name of Object.values(names)) {
      assert.ok(name.length <= 63, name);
      assert.match(name, /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
    }
    assert.ok(names.train.endsWith('-train-g12'));
    assert.notEqual(names.train, other.train);
  });
});
