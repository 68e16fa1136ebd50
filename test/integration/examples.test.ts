/**
 * examples/fleet on a real API server with the compofa.io CRDs: every manifest, and the
 * kustomization as a whole, is accepted by a server-side dry run with nothing rejected or dropped
 * and the defaults filled in; the pieces refer to each other; and on a representative fleet of
 * nodes labelled the way Node Feature Discovery, GPU feature discovery, the kubelet and the cloud
 * provider label them, the training and each target select exactly their own pool.
 */
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import { CoreV1Api } from '@kubernetes/client-node';
import yaml from 'js-yaml';

import type { NodeSpec } from '../harness/control-plane.js';
import { ControlPlane } from '../harness/control-plane.js';
import { installCrds } from '../harness/crds.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const FLEET = join(ROOT, 'examples', 'fleet');

/** A manifest as YAML gives it. */
interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  spec?: Record<string, any>;
}

interface Toleration {
  key?: string;
  operator?: 'Exists' | 'Equal';
  value?: string;
  effect?: string;
}

interface Manifest {
  /** Relative to the repository root. */
  readonly file: string;
  readonly object: KubeObject;
}

const key = (o: KubeObject): string => `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`;

/** Fails unless every field of `expected` is in `actual` with the same value. */
function assertKept(actual: unknown, expected: unknown, path: string): void {
  if (Array.isArray(expected)) {
    assert.ok(Array.isArray(actual), `${path}: expected a list, got ${JSON.stringify(actual)}`);
    assert.equal(actual.length, expected.length, `${path}: the list changed`);
    expected.forEach((item, k) => {
      assertKept(actual[k], item, `${path}[${k}]`);
    });
  } else if (expected !== null && typeof expected === 'object') {
    assert.ok(
      actual !== null && typeof actual === 'object' && !Array.isArray(actual),
      `${path}: expected an object, got ${JSON.stringify(actual)}`,
    );
    for (const [name, value] of Object.entries(expected))
      assertKept((actual as Record<string, unknown>)[name], value, `${path}.${name}`);
  } else {
    assert.deepEqual(actual, expected, `${path}: the API server changed or dropped the value`);
  }
}

/** Paths of the fields in `actual` that `given` lacks: what the API server filled in. */
function filledIn(actual: unknown, given: unknown, path: string): string[] {
  if (actual === null || typeof actual !== 'object' || Array.isArray(actual)) return [];
  const object = (given ?? {}) as Record<string, unknown>;
  return Object.entries(actual).flatMap(([name, value]) =>
    name in object
      ? filledIn(value, object[name], `${path}.${name}`)
      : [`${path}.${name}=${JSON.stringify(value)}`],
  );
}

/** Whether a pod with `selector` and `tolerations` may run on `node`, given the nodes' labels. */
function tolerates(tolerations: readonly Toleration[], node: NodeSpec): boolean {
  return (node.taints ?? [])
    .filter((taint) => taint.effect === 'NoSchedule' || taint.effect === 'NoExecute')
    .every((taint) =>
      tolerations.some(
        (t) =>
          (t.key === taint.key || ((t.key ?? '') === '' && t.operator === 'Exists')) &&
          (t.operator === 'Exists' || (t.value ?? '') === (taint.value ?? '')) &&
          (t.effect === undefined || t.effect === taint.effect),
      ),
    );
}

/**
 * A fleet such as the examples are written for. Each workload must land on exactly the node named
 * in `expectedFor`; `general-arm64` must attract nothing.
 */
const NODES: readonly NodeSpec[] = [
  {
    name: 'gpu-a100',
    labels: {
      'kubernetes.io/arch': 'amd64',
      'node.kubernetes.io/instance-type': 'p4d.24xlarge',
      'feature.node.kubernetes.io/pci-10de.present': 'true',
      'feature.node.kubernetes.io/cpu-cpuid.AVX512F': 'true',
      'nvidia.com/gpu.present': 'true',
    },
    capacity: { 'nvidia.com/gpu': '8' },
    taints: [{ key: 'nvidia.com/gpu', value: 'present', effect: 'NoSchedule' }],
  },
  {
    name: 'cpu-avx512',
    labels: {
      'kubernetes.io/arch': 'amd64',
      'node.kubernetes.io/instance-type': 'c6i.2xlarge',
      'feature.node.kubernetes.io/cpu-cpuid.AVX512F': 'true',
    },
  },
  {
    name: 'small-x86',
    labels: {
      'kubernetes.io/arch': 'amd64',
      'node.kubernetes.io/instance-type': 't3a.medium',
      'feature.node.kubernetes.io/cpu-cpuid.AVX2': 'true',
    },
  },
  {
    name: 'edge-arm64',
    labels: {
      'kubernetes.io/arch': 'arm64',
      'feature.node.kubernetes.io/cpu-cpuid.ASIMD': 'true',
      'node-role.kubernetes.io/edge': '',
    },
    taints: [{ key: 'node-role.kubernetes.io/edge', effect: 'NoSchedule' }],
  },
  {
    name: 'general-arm64',
    labels: {
      'kubernetes.io/arch': 'arm64',
      'node.kubernetes.io/instance-type': 'm6g.large',
      'feature.node.kubernetes.io/cpu-cpuid.ASIMD': 'true',
    },
  },
];
const expectedFor: Readonly<Record<string, string>> = {
  'SupernetTraining/fashion': 'gpu-a100',
  'DeploymentTarget/fashion-x86-avx512': 'cpu-avx512',
  'DeploymentTarget/fashion-x86-small': 'small-x86',
  'DeploymentTarget/fashion-arm64-edge': 'edge-arm64',
};

async function readManifests(): Promise<Manifest[]> {
  const files = (await readdir(FLEET)).filter(
    (f) => /\.ya?ml$/.test(f) && f !== 'kustomization.yaml',
  );
  const manifests: Manifest[] = [];
  for (const name of files.sort()) {
    const documents = yaml.loadAll(await readFile(join(FLEET, name), 'utf8')) as KubeObject[];
    assert.equal(documents.length, 1, `${name} holds one object`);
    for (const object of documents)
      manifests.push({ file: relative(ROOT, join(FLEET, name)), object });
  }
  return manifests;
}

describe('examples/fleet on a real API server', () => {
  let plane: ControlPlane;
  let manifests: Manifest[];
  let namespace: string;
  /** The server-side dry run of each manifest, by file. */
  const accepted = new Map<string, KubeObject>();

  const dryRun = async (args: readonly string[]): Promise<unknown> =>
    JSON.parse(
      (
        await plane.kubectl([
          'apply',
          '--server-side',
          '--dry-run=server',
          '--field-manager=compofa-examples-test',
          '-o',
          'json',
          ...args,
        ])
      ).stdout,
    ) as unknown;
  const byKind = (kind: string) => manifests.filter((m) => m.object.kind === kind);
  const one = (kind: string): Manifest => {
    const [manifest, ...others] = byKind(kind);
    assert.ok(manifest, `the fleet has a ${kind}`);
    assert.equal(others.length, 0, `the fleet has one ${kind}`);
    return manifest;
  };

  before(async () => {
    manifests = await readManifests();
    namespace = one('Namespace').object.metadata.name;
    plane = await ControlPlane.start();
    // The Namespace first (dry run, then for real), so that the rest can be dry-run inside it.
    const namespaceFile = one('Namespace').file;
    accepted.set(namespaceFile, (await dryRun(['-f', join(ROOT, namespaceFile)])) as KubeObject);
    await plane.kubectl(['apply', '--server-side', '-f', join(ROOT, namespaceFile)]);
    await installCrds(plane, namespace);
    for (const { file } of manifests)
      if (!accepted.has(file))
        accepted.set(file, (await dryRun(['-f', join(ROOT, file)])) as KubeObject);
  });
  after(async () => {
    await plane.stop();
  });

  it('lists every manifest of the folder in its kustomization and its README', async () => {
    const rendered = yaml.loadAll(
      (await plane.kubectl(['kustomize', FLEET])).stdout,
    ) as KubeObject[];
    assert.deepEqual(
      new Map(rendered.map((o) => [key(o), o])),
      new Map(manifests.map((m) => [key(m.object), m.object])),
      'kustomize renders exactly the manifests, unchanged',
    );
    const readme = await readFile(join(ROOT, 'examples', 'README.md'), 'utf8');
    const command = /^kubectl apply (-f .*)$/m.exec(readme)?.[1];
    assert.ok(command, 'the README shows kubectl apply -f');
    const named = [...command.matchAll(/-f (\S+)/g)].map((m) => m[1]);
    assert.deepEqual(
      [...(named as string[])].sort(),
      manifests.map((m) => m.file).sort(),
      'the README applies every manifest',
    );
    assert.equal(named[0], one('Namespace').file, 'the README applies the namespace first');
    assert.match(readme, /kubectl apply -k examples\/fleet/);
  });

  it('accepts every manifest with all its values kept, and fills in the defaults', () => {
    for (const { file, object } of manifests) {
      const result = accepted.get(file);
      assert.ok(result, file);
      assert.equal(result.kind, object.kind, `${file}: one object back`);
      assertKept(result, object, file);
      if (object.kind === 'Namespace') continue;
      const defaults = filledIn(result.spec, object.spec, `${file}: spec`);
      assert.ok(defaults.length > 0, `${file}: the API server filled in no default`);
    }
    const training = accepted.get(one('SupernetTraining').file)?.spec;
    assert.equal(training?.schedule.seed, 0);
    assert.equal(training.suspend, false);
    for (const { file, object } of byKind('DeploymentTarget')) {
      const target = accepted.get(file)?.spec;
      assert.equal(target?.serving.port, 8080, file);
      assert.equal(target.latencyStatistic, object.spec?.latencyStatistic ?? 'p95', file);
      assert.deepEqual(
        target.drift,
        { tolerance: 0.1, window: '10m', action: 'alert', ...object.spec?.drift },
        file,
      );
    }
    assert.equal(accepted.get(one('PersistentVolumeClaim').file)?.spec?.volumeMode, 'Filesystem');
  });

  it('accepts the whole kustomization as kubectl apply -k sends it', async () => {
    const list = (await dryRun(['-k', FLEET])) as { kind: string; items: KubeObject[] };
    assert.equal(list.kind, 'List');
    assert.deepEqual(list.items.map(key).sort(), manifests.map((m) => key(m.object)).sort());
    for (const item of list.items) {
      const manifest = manifests.find((m) => key(m.object) === key(item));
      assertKept(item, manifest?.object, `apply -k: ${key(item)}`);
    }
  });

  it('ties the fleet together: one namespace, a shared claim, one training served by three targets', () => {
    for (const { file, object } of manifests)
      if (object.kind !== 'Namespace')
        assert.equal(object.metadata.namespace, namespace, `${file} is in the fleet's namespace`);
    const claim = one('PersistentVolumeClaim').object;
    assert.deepEqual(claim.spec?.accessModes, ['ReadWriteMany'], 'pods on many nodes share it');
    const training = one('SupernetTraining').object;
    assert.equal(training.spec?.artifacts.claimName, claim.metadata.name);
    assert.equal(training.spec.architecture.preset, 'small');
    assert.equal(training.spec.dataset.type, 'fashion-mnist');
    assert.ok(training.spec.schedule.epochsScale <= 0.1, 'a short schedule');
    assert.ok(training.spec.resources.gpus >= 1, 'trained on a GPU');
    const targets = byKind('DeploymentTarget').map((m) => m.object);
    assert.equal(targets.length, 3);
    for (const target of targets)
      assert.equal(target.spec?.supernetRef.name, training.metadata.name, target.metadata.name);
    const budgets = new Set(targets.map((t) => t.spec?.latencyBudgetMs as number));
    assert.equal(budgets.size, 3, 'three different latency budgets');
  });

  it('pins the training to the GPU nodes and each target to its own pool, with distinct selectors', async () => {
    const targets = byKind('DeploymentTarget').map((m) => m.object);
    const selectors = targets.map((t) => t.spec?.device.nodeSelector as Record<string, string>);
    for (const [k, a] of selectors.entries())
      for (const b of selectors.slice(k + 1)) assert.notDeepEqual(a, b, 'distinct node selectors');
    const training = one('SupernetTraining').object;
    assert.ok(
      'feature.node.kubernetes.io/pci-10de.present' in (training.spec?.nodeSelector ?? {}),
      'the GPU nodes are found by their NFD PCI label',
    );

    for (const node of NODES) await plane.createNode(node);
    const core = plane.kubeConfig().makeApiClient(CoreV1Api);
    const workloads = [
      {
        name: key(training).replace(`/${namespace}/`, '/'),
        selector: training.spec?.nodeSelector as Record<string, string>,
        tolerations: (training.spec?.tolerations ?? []) as Toleration[],
      },
      ...targets.map((t) => ({
        name: key(t).replace(`/${namespace}/`, '/'),
        selector: t.spec?.device.nodeSelector as Record<string, string>,
        tolerations: (t.spec?.device.tolerations ?? []) as Toleration[],
      })),
    ];
    const used = new Set<string>();
    for (const workload of workloads) {
      // The API server's label selector, then the taints the pods must tolerate.
      const labelSelector = Object.entries(workload.selector)
        .map(([label, value]) => `${label}=${value}`)
        .join(',');
      const matching = (await core.listNode({ labelSelector })).items
        .map((node) => node.metadata?.name ?? '')
        .filter((name) => NODES.some((n) => n.name === name));
      const schedulable = matching.filter((name) =>
        tolerates(workload.tolerations, NODES.find((n) => n.name === name) ?? { name }),
      );
      assert.deepEqual(schedulable, [expectedFor[workload.name]], `${workload.name}'s nodes`);
      for (const name of schedulable) used.add(name);
    }
    assert.ok(!used.has('general-arm64'), 'a general-purpose arm64 node is not the edge');
  });
});
