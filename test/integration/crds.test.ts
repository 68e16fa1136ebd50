/**
 * The compofa.io CRDs on a real kube-apiserver: defaults, validation (OpenAPI and CEL), the
 * immutable architecture, the status subresource, printer columns, categories and `kubectl
 * explain`.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';

import { CustomObjectsApi } from '@kubernetes/client-node';
import yaml from 'js-yaml';

import {
  CRDS,
  crdInfo,
  type DeploymentTargetStatus,
  type LatencyProfileStatus,
  type ResourceKind,
  type SupernetTrainingStatus,
} from '../../operator/api/index.js';
import { apiErrorCode, apiErrorMessage } from '../harness/api-errors.js';
import { ControlPlane } from '../harness/control-plane.js';
import { installCrds, MINIMAL_SPECS } from '../harness/crds.js';
import { waitFor } from '../harness/wait.js';

const NAMESPACE = 'compofa-crds';

const MINIMAL = MINIMAL_SPECS;

/** A custom object as the API server returns it. */
interface Stored {
  metadata: { name: string; generation: number; resourceVersion: string };
  spec: Record<string, any>;
  status?: Record<string, any>;
}

/** The YAML examples of docs/api.md, so that what users copy is what is tested. */
async function documentedExamples(): Promise<{ kind: ResourceKind; text: string }[]> {
  const docs = await readFile(new URL('../../docs/api.md', import.meta.url), 'utf8');
  return [...docs.matchAll(/```yaml\n([\s\S]*?)```/g)]
    .map((match) => match[1] ?? '')
    .filter((text) => text.includes('apiVersion: compofa.io/v1alpha1'))
    .map((text) => ({ kind: (yaml.load(text) as { kind: ResourceKind }).kind, text }));
}

describe('the compofa.io CRDs on a real API server', () => {
  let plane: ControlPlane;
  let objects: CustomObjectsApi;

  const target = (kind: ResourceKind) => {
    const info = crdInfo(kind);
    return { group: info.group, version: info.version, plural: info.plural, namespace: NAMESPACE };
  };
  const manifest = (kind: ResourceKind, name: string, spec: Record<string, unknown>) => ({
    apiVersion: crdInfo(kind).apiVersion,
    kind,
    metadata: { name },
    spec,
  });
  const create = async (
    kind: ResourceKind,
    name: string,
    spec: Record<string, unknown>,
    extra: Record<string, unknown> = {},
  ): Promise<Stored> =>
    (await objects.createNamespacedCustomObject({
      ...target(kind),
      body: { ...manifest(kind, name, spec), ...extra },
    })) as Stored;
  const read = async (kind: ResourceKind, name: string): Promise<Stored> =>
    (await objects.getNamespacedCustomObject({ ...target(kind), name })) as Stored;
  const replace = async (kind: ResourceKind, object: Stored): Promise<Stored> =>
    (await objects.replaceNamespacedCustomObject({
      ...target(kind),
      name: object.metadata.name,
      body: { apiVersion: crdInfo(kind).apiVersion, kind, ...object },
    })) as Stored;
  const replaceStatus = async (kind: ResourceKind, object: Stored): Promise<Stored> =>
    (await objects.replaceNamespacedCustomObjectStatus({
      ...target(kind),
      name: object.metadata.name,
      body: { apiVersion: crdInfo(kind).apiVersion, kind, ...object },
    })) as Stored;
  /** The API server's message for a request it must refuse with 422 Unprocessable Entity. */
  const refusal = async (request: Promise<unknown>, what: string): Promise<string> => {
    const error = await request.then(
      () => assert.fail(`the API server accepted ${what}`),
      (e: unknown) => e,
    );
    assert.equal(apiErrorCode(error), 422, `${what}: ${apiErrorMessage(error)}`);
    return apiErrorMessage(error);
  };

  before(async () => {
    plane = await ControlPlane.start();
    objects = plane.kubeConfig().makeApiClient(CustomObjectsApi);
    // What a user (or Helm) does: the manifests as they are, applied server-side.
    await plane.createNamespace(NAMESPACE);
    const stdout = await installCrds(plane, NAMESPACE);
    for (const crd of CRDS) assert.match(stdout, new RegExp(`${crd.name} serverside-applied`));
  });
  after(async () => {
    await plane.stop();
  });

  it('fills in the defaults of a minimal spec of each kind', async () => {
    const training = await create('SupernetTraining', 'defaults', MINIMAL.SupernetTraining);
    assert.deepEqual(training.spec, {
      designSpace: 'compound',
      architecture: { preset: 'small' },
      dataset: { type: 'fashion-mnist' },
      schedule: { epochsScale: 1, batchSize: 64, seed: 0 },
      artifacts: { claimName: 'artifacts', checkpointEverySteps: 100 },
      resources: { gpus: 1 },
      suspend: false,
    });

    const deployment = await create('DeploymentTarget', 'defaults', MINIMAL.DeploymentTarget);
    assert.deepEqual(deployment.spec, {
      ...MINIMAL.DeploymentTarget,
      latencyStatistic: 'p95',
      batchSize: 1,
      serving: { replicas: 1, port: 8080, progressDeadlineSeconds: 300 },
      drift: { tolerance: 0.1, window: '10m', action: 'alert' },
    });

    const profile = await create('LatencyProfile', 'defaults', MINIMAL.LatencyProfile);
    assert.deepEqual(profile.spec, {
      ...MINIMAL.LatencyProfile,
      designSpace: 'compound',
      architecture: { preset: 'small' },
      batchSize: 1,
      method: 'exhaustive',
      warmupRuns: 5,
      timedRuns: 10,
    });

    // Nested defaults apply inside objects the user gave in part, and never replace a value.
    const partial = await create('DeploymentTarget', 'partial-defaults', {
      ...MINIMAL.DeploymentTarget,
      drift: { action: 'reselect' },
      serving: { replicas: 3 },
    });
    assert.deepEqual(partial.spec.drift, { tolerance: 0.1, window: '10m', action: 'reselect' });
    assert.deepEqual(partial.spec.serving, {
      replicas: 3,
      port: 8080,
      progressDeadlineSeconds: 300,
    });
    const external = await create('LatencyProfile', 'external-defaults', {
      ...MINIMAL.LatencyProfile,
      external: { configMapName: 'measured-elsewhere' },
    });
    assert.deepEqual(external.spec.external, {
      configMapName: 'measured-elsewhere',
      key: 'latency.json',
    });
  });

  it('accepts the examples of docs/api.md as they are', async () => {
    const examples = await documentedExamples();
    assert.deepEqual(
      examples.map((example) => example.kind).sort(),
      ['DeploymentTarget', 'LatencyProfile', 'SupernetTraining'],
      'one example per kind',
    );
    for (const example of examples) {
      const { stdout } = await plane.kubectl(['apply', '-n', NAMESPACE, '-f', '-'], example.text);
      assert.match(stdout, new RegExp(`${crdInfo(example.kind).plural.slice(0, -1)}.* created`));
    }
  });

  describe('rejects a bad spec with a message that names the field', () => {
    const training = MINIMAL.SupernetTraining;
    const deployment = MINIMAL.DeploymentTarget;
    const profile = MINIMAL.LatencyProfile;
    const cases: readonly {
      what: string;
      kind: ResourceKind;
      spec: Record<string, unknown>;
      error: RegExp;
    }[] = [
      {
        what: 'a latency budget of 0',
        kind: 'DeploymentTarget',
        spec: { ...deployment, latencyBudgetMs: 0 },
        error:
          /spec\.latencyBudgetMs: Invalid value: 0: spec\.latencyBudgetMs in body should be greater than 0/,
      },
      {
        what: 'a negative latency budget',
        kind: 'DeploymentTarget',
        spec: { ...deployment, latencyBudgetMs: -3 },
        error: /spec\.latencyBudgetMs: Invalid value: -3: .*should be greater than 0/,
      },
      {
        what: 'no latency budget',
        kind: 'DeploymentTarget',
        spec: { supernetRef: deployment.supernetRef, device: deployment.device },
        error: /spec\.latencyBudgetMs: Required value/,
      },
      {
        what: 'an empty device nodeSelector',
        kind: 'DeploymentTarget',
        spec: { ...deployment, device: { nodeSelector: {} } },
        error:
          /spec\.device\.nodeSelector: Required value: nodeSelector must name at least one node label: it pins profiling and serving to the device's nodes/,
      },
      {
        what: 'a device without a nodeSelector',
        kind: 'DeploymentTarget',
        spec: { ...deployment, device: { tolerations: [] } },
        error: /spec\.device\.nodeSelector: Required value/,
      },
      {
        what: 'a nodeSelector key that is no label key',
        kind: 'DeploymentTarget',
        spec: { ...deployment, device: { nodeSelector: { 'gpu model': 'a100' } } },
        error:
          /spec\.device\.nodeSelector: Invalid value: .*every key must be a label key, such as kubernetes\.io\/arch/,
      },
      {
        what: 'a nodeSelector value that is no label value',
        kind: 'DeploymentTarget',
        spec: { ...deployment, device: { nodeSelector: { arch: 'arm 64' } } },
        error: /spec\.device\.nodeSelector\.arch: Invalid value: "arm 64": .*should match/,
      },
      {
        what: 'batch size 0',
        kind: 'DeploymentTarget',
        spec: { ...deployment, batchSize: 0 },
        error:
          /spec\.batchSize: Invalid value: 0: spec\.batchSize in body should be greater than or equal to 1/,
      },
      {
        what: 'batch size 257',
        kind: 'DeploymentTarget',
        spec: { ...deployment, batchSize: 257 },
        error: /spec\.batchSize: Invalid value: 257: .*should be less than or equal to 256/,
      },
      {
        what: 'an accuracy floor of 1.5',
        kind: 'DeploymentTarget',
        spec: { ...deployment, objective: { accuracyFloor: 1.5 } },
        error:
          /spec\.objective\.accuracyFloor: Invalid value: 1\.5: spec\.objective\.accuracyFloor in body should be less than or equal to 1/,
      },
      {
        what: 'an unknown latency statistic',
        kind: 'DeploymentTarget',
        spec: { ...deployment, latencyStatistic: 'p99' },
        error:
          /spec\.latencyStatistic: Unsupported value: "p99": supported values: "p95", "median"/,
      },
      {
        what: 'a drift window that is no Prometheus duration',
        kind: 'DeploymentTarget',
        spec: { ...deployment, drift: { window: '10 minutes' } },
        error:
          /spec\.drift\.window: Invalid value: "10 minutes": window must be a Prometheus duration such as 30s, 10m or 1h30m/,
      },
      {
        what: 'a drift tolerance of 11',
        kind: 'DeploymentTarget',
        spec: { ...deployment, drift: { tolerance: 11 } },
        error: /spec\.drift\.tolerance: Invalid value: 11: .*should be less than or equal to 10/,
      },
      {
        what: 'an unknown drift action',
        kind: 'DeploymentTarget',
        spec: { ...deployment, drift: { action: 'page' } },
        error:
          /spec\.drift\.action: Unsupported value: "page": supported values: "alert", "reselect"/,
      },
      {
        what: 'zero serving replicas',
        kind: 'DeploymentTarget',
        spec: { ...deployment, serving: { replicas: 0 } },
        error: /spec\.serving\.replicas: Invalid value: 0: .*should be greater than or equal to 1/,
      },
      {
        what: 'an unknown design space',
        kind: 'SupernetTraining',
        spec: { ...training, designSpace: 'nas' },
        error:
          /spec\.designSpace: Unsupported value: "nas": supported values: "compound", "elastic"/,
      },
      {
        what: 'an unknown architecture preset',
        kind: 'SupernetTraining',
        spec: { ...training, architecture: { preset: 'huge' } },
        error:
          /spec\.architecture\.preset: Unsupported value: "huge": supported values: "small", "imagenet"/,
      },
      {
        what: 'an imagefolder dataset without a path',
        kind: 'SupernetTraining',
        spec: { ...training, dataset: { type: 'imagefolder', claimName: 'images' } },
        error:
          /spec\.dataset\.path: Required value: an imagefolder dataset needs a path: the folder of class sub-folders on its volume/,
      },
      {
        what: 'a path for a built-in dataset',
        kind: 'SupernetTraining',
        spec: { ...training, dataset: { type: 'mnist', path: 'digits' } },
        error: /spec\.dataset\.path: Forbidden: path applies only to an imagefolder dataset/,
      },
      {
        what: 'limitPerClass for an imagefolder dataset',
        kind: 'SupernetTraining',
        spec: { ...training, dataset: { type: 'imagefolder', path: 'images', limitPerClass: 50 } },
        error:
          /spec\.dataset\.limitPerClass: Forbidden: limitPerClass applies only to the fashion-mnist and mnist datasets/,
      },
      {
        what: 'a dataset path that leaves the volume',
        kind: 'SupernetTraining',
        spec: { ...training, dataset: { type: 'imagefolder', path: 'images/../../etc' } },
        error:
          /spec\.dataset\.path: Invalid value: "images\/\.\.\/\.\.\/etc": path must be relative to the volume root and must not contain '\.\.'/,
      },
      {
        what: 'no artifacts volume',
        kind: 'SupernetTraining',
        spec: { dataset: { type: 'mnist' } },
        error: /spec\.artifacts: Required value/,
      },
      {
        what: 'an epochs scale of 0',
        kind: 'SupernetTraining',
        spec: { ...training, schedule: { epochsScale: 0 } },
        error: /spec\.schedule\.epochsScale: Invalid value: 0: .*should be greater than 0/,
      },
      {
        what: 'a cpu request that is no quantity',
        kind: 'SupernetTraining',
        spec: { ...training, resources: { cpu: 'lots' } },
        error:
          /spec\.resources\.cpu: Invalid value: "lots": spec\.resources\.cpu in body should match/,
      },
      {
        what: 'an exhaustive profile of the elastic space',
        kind: 'LatencyProfile',
        spec: { ...profile, designSpace: 'elastic' },
        error:
          /spec\.method: Invalid value: .*the elastic space has over 10\^19 subnets and cannot be profiled exhaustively: use method lookup-table/,
      },
      {
        what: 'zero timed runs',
        kind: 'LatencyProfile',
        spec: { ...profile, timedRuns: 0 },
        error: /spec\.timedRuns: Invalid value: 0: .*should be greater than or equal to 1/,
      },
      {
        what: 'an external profile without its ConfigMap',
        kind: 'LatencyProfile',
        spec: { ...profile, external: { key: 'latency.json' } },
        error: /spec\.external\.configMapName: Required value/,
      },
    ];
    for (const { what, kind, spec, error } of cases) {
      it(`${kind}: ${what}`, async () => {
        const message = await refusal(create(kind, 'bad', spec), what);
        assert.match(message, error);
      });
    }

    it('and kubectl shows the user the same message', async () => {
      const bad = yaml.dump(manifest('DeploymentTarget', 'bad', { ...deployment, batchSize: 0 }));
      await assert.rejects(
        plane.kubectl(['apply', '-n', NAMESPACE, '-f', '-'], bad),
        /spec\.batchSize: Invalid value: 0: spec\.batchSize in body should be greater than or equal to 1/,
      );
    });
  });

  it('keeps the architecture and design space of a training immutable, and allows other updates', async () => {
    const created = await create('SupernetTraining', 'immutable', {
      ...MINIMAL.SupernetTraining,
      architecture: { preset: 'imagenet' },
    });

    const otherArchitecture = {
      ...created,
      spec: { ...created.spec, architecture: { preset: 'small' } },
    };
    assert.match(
      await refusal(replace('SupernetTraining', otherArchitecture), 'a new architecture'),
      /spec\.architecture: Invalid value: .*architecture is immutable: to train another architecture, create a new SupernetTraining/,
    );
    // Leaving it out on an update is a change too: the default (small) would replace imagenet.
    const withoutArchitecture = { ...created.spec };
    delete withoutArchitecture.architecture;
    assert.match(
      await refusal(
        replace('SupernetTraining', { ...created, spec: withoutArchitecture }),
        'an update that drops the architecture',
      ),
      /spec\.architecture: Invalid value: .*architecture is immutable/,
    );
    assert.match(
      await refusal(
        replace('SupernetTraining', {
          ...created,
          spec: { ...created.spec, designSpace: 'elastic' },
        }),
        'a new design space',
      ),
      /spec\.designSpace: Invalid value: "elastic": designSpace is immutable: to train a supernet of another design space, create a new SupernetTraining/,
    );

    const updated = await replace('SupernetTraining', {
      ...created,
      spec: { ...created.spec, schedule: { ...created.spec.schedule, epochsScale: 0.01 } },
    });
    assert.equal(updated.spec.schedule.epochsScale, 0.01);
    assert.deepEqual(updated.spec.architecture, { preset: 'imagenet' });
    assert.equal(updated.metadata.generation, created.metadata.generation + 1);
  });

  it('keeps status behind the status subresource', async () => {
    // A status sent with the object is dropped on create.
    const created = await create('DeploymentTarget', 'status', MINIMAL.DeploymentTarget, {
      status: { phase: 'Ready' },
    });
    assert.equal(created.status, undefined);

    const status: DeploymentTargetStatus = {
      phase: 'Ready',
      selectedSubnet: {
        id: 'r28-d2e3-d3e4-d4e6-d2e3-d3e4',
        resolution: 28,
        depths: [2, 3, 4, 2, 3],
      },
      predictedAccuracy: 0.8812,
      expectedLatencyMs: 3.2,
      observedGeneration: 1,
      conditions: [
        {
          type: 'Ready',
          status: 'True',
          reason: 'Serving',
          message: 'serving r28-d2e3-d3e4-d4e6-d2e3-d3e4',
          lastTransitionTime: '2026-01-01T00:00:00Z',
          observedGeneration: 1,
        },
      ],
    };
    // Through /status: the status changes, the spec in the same body does not.
    const afterStatus = await replaceStatus('DeploymentTarget', {
      ...created,
      spec: { ...created.spec, latencyBudgetMs: 99 },
      status: status as Record<string, any>,
    });
    assert.deepEqual(afterStatus.status, status);
    assert.equal(afterStatus.spec.latencyBudgetMs, 5);
    assert.equal(afterStatus.metadata.generation, created.metadata.generation);

    // Through the main resource: the spec changes, the status in the same body does not.
    const afterSpec = await replace('DeploymentTarget', {
      ...afterStatus,
      spec: { ...afterStatus.spec, latencyBudgetMs: 7 },
      status: { ...status, phase: 'Failed' },
    });
    assert.equal(afterSpec.spec.latencyBudgetMs, 7);
    assert.equal(afterSpec.status?.phase, 'Ready');
    assert.equal(afterSpec.metadata.generation, created.metadata.generation + 1);

    // The status schema is enforced too.
    const current = await read('DeploymentTarget', 'status');
    assert.match(
      await refusal(
        replaceStatus('DeploymentTarget', { ...current, status: { phase: 'Done' } }),
        'an unknown phase',
      ),
      /status\.phase: Unsupported value: "Done": supported values: "Pending", "Profiling"/,
    );
    assert.match(
      await refusal(
        replaceStatus('DeploymentTarget', {
          ...current,
          status: {
            conditions: [{ type: 'Ready', status: 'Yes', reason: 'Serving', message: '' }],
          },
        }),
        'a malformed condition',
      ),
      /status\.conditions\[0\]\.status: Unsupported value: "Yes"[\s\S]*status\.conditions\[0\]\.lastTransitionTime: Required value/,
    );
  });

  it('lists all three kinds under `kubectl get compofa`, with their printer columns', async () => {
    const trainingStatus: SupernetTrainingStatus = {
      phase: 'Training',
      progress: {
        stage: 'teacher',
        epoch: 2,
        totalEpochs: 9,
        percent: 42,
        eta: '2030-01-01T10:00:00Z',
      },
    };
    const targetStatus: DeploymentTargetStatus = {
      phase: 'Ready',
      selectedSubnet: { id: 'r28-d2e3-d3e4-d4e6-d2e3-d3e4' },
      predictedAccuracy: 0.8812,
      expectedLatencyMs: 3.2,
    };
    const profileStatus: LatencyProfileStatus = {
      phase: 'Ready',
      tableRef: { configMapName: 'listed-latency', key: 'latency.json', rows: 243 },
    };
    const statuses: [ResourceKind, Record<string, any>][] = [
      ['SupernetTraining', trainingStatus],
      ['DeploymentTarget', targetStatus],
      ['LatencyProfile', profileStatus],
    ];
    for (const [kind, status] of statuses) {
      const created = await create(kind, 'listed', MINIMAL[kind]);
      await replaceStatus(kind, { ...created, status });
    }

    const { stdout: all } = await plane.kubectl(['get', 'compofa', '-n', NAMESPACE]);
    for (const crd of CRDS)
      assert.match(all, new RegExp(`^${crd.kind.toLowerCase()}\\.compofa\\.io/listed\\s`, 'm'));

    const columns = async (resource: string): Promise<{ header: string; row: string }> => {
      const { stdout } = await plane.kubectl(['get', resource, 'listed', '-n', NAMESPACE]);
      const [header = '', row = ''] = stdout.trim().split('\n');
      return { header: header.trim(), row: row.trim() };
    };
    const dt = await columns('dt');
    assert.match(dt.header, /^NAME\s+PHASE\s+SUBNET\s+ACCURACY\s+LATENCY\s+BUDGET\s+AGE$/);
    assert.match(
      dt.row,
      /^listed\s+Ready\s+r28-d2e3-d3e4-d4e6-d2e3-d3e4\s+0\.8812\s+3\.2\s+5\s+\d+s$/,
    );
    const snt = await columns('snt');
    assert.match(snt.header, /^NAME\s+PHASE\s+PROGRESS\s+ETA\s+AGE$/);
    assert.match(snt.row, /^listed\s+Training\s+42\s+2030-01-01T10:00:00Z\s+\d+s$/);
    const lp = await columns('lp');
    assert.match(lp.header, /^NAME\s+PHASE\s+DEVICE\s+BATCH\s+SUBNETS\s+AGE$/);
    assert.match(lp.row, /^listed\s+Ready\s+\{"kubernetes\.io\/arch":"arm64"\}\s+1\s+243\s+\d+s$/);

    const { stdout: wide } = await plane.kubectl([
      'get',
      'deploymenttargets',
      'listed',
      '-n',
      NAMESPACE,
      '-o',
      'wide',
    ]);
    assert.match(
      wide,
      /^NAME\s+PHASE\s+SUBNET\s+ACCURACY\s+LATENCY\s+BUDGET\s+MEASURED\s+SUPERNET\s+AGE$/m,
    );
  });

  it('documents fields for `kubectl explain`', async () => {
    // The OpenAPI document that kubectl reads is published a moment after the CRD.
    const explained = await waitFor(
      () => plane.kubectl(['explain', 'supernettraining.spec.schedule']).then((r) => r.stdout),
      { description: 'kubectl explain to know SupernetTraining', hint: plane.logHint },
    );
    assert.match(explained, /KIND:\s+SupernetTraining/);
    assert.match(explained, /How long and how the supernet is trained\./);
    assert.match(explained, /epochsScale\s+<number>\n\s+Multiplies the epochs of every phase/);
    const { stdout: window } = await plane.kubectl(['explain', 'dt.spec.drift.window']);
    assert.match(
      window,
      /How long the drift must last, a Prometheus duration such as 10m or\s+1h30m/,
    );
  });
});
