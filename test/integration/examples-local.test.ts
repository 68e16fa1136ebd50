/**
 * examples/local, the fleet of `make demo`, against the demo's own nodes on a real API server
 * (without kubelets: this checks the manifests, the end-to-end test runs them): the kustomization
 * is accepted as `kubectl apply -k` sends it, its claim binds to the volume the demo makes, and the
 * training and each target select exactly the demo node they are written for, with room for their
 * pods at each step (profiling or extraction beside a serving pod, a rollout's two serving pods).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import { CoreV1Api } from '@kubernetes/client-node';
import yaml from 'js-yaml';

import type { DeploymentTarget, SupernetTraining } from '../../operator/api/index.js';
import { ControlPlane } from '../harness/control-plane.js';
import { installCrds } from '../harness/crds.js';
import {
  DEMO_DEVICE_CLASSES,
  DEMO_NAMESPACE,
  DEMO_SHARED_VOLUME,
  DRIFTING,
} from '../harness/demo-fleet.js';

const LOCAL = fileURLToPath(new URL('../../examples/local', import.meta.url));

interface KubeObject {
  readonly kind: string;
  readonly metadata: { readonly name: string; readonly namespace?: string };
  readonly spec?: Record<string, unknown>;
}

/** Mebibytes of a memory quantity such as 512Mi or 3Gi. */
function mebibytes(quantity: string): number {
  const match = /^(\d+)(Mi|Gi)$/.exec(quantity);
  assert.ok(match, `a Mi or Gi quantity: ${quantity}`);
  return Number(match[1]) * (match[2] === 'Gi' ? 1024 : 1);
}

/** CPUs of a quantity such as 250m or 2. */
function cores(quantity: string): number {
  return quantity.endsWith('m') ? Number(quantity.slice(0, -1)) / 1000 : Number(quantity);
}

describe('examples/local on the nodes of make demo', () => {
  let plane: ControlPlane;
  let objects: KubeObject[];
  const ofKind = <T extends KubeObject>(kind: string): T[] =>
    objects.filter((object) => object.kind === kind) as T[];

  before(async () => {
    plane = await ControlPlane.start();
    objects = yaml.loadAll((await plane.kubectl(['kustomize', LOCAL])).stdout) as KubeObject[];
    await plane.createNamespace(DEMO_NAMESPACE);
    await installCrds(plane, DEMO_NAMESPACE);
    for (const spec of DEMO_DEVICE_CLASSES)
      await plane.createNode({
        name: spec.name,
        labels: spec.labels ?? {},
        capacity: { cpu: `${spec.cpus * 1000}m`, memory: `${spec.memoryMiB}Mi` },
      });
  });
  after(() => plane.stop());

  it('is accepted as kubectl apply -k sends it, in the namespace the demo watches', async () => {
    const { stdout } = await plane.kubectl([
      'apply',
      '--server-side',
      '--dry-run=server',
      '-o',
      'json',
      '-k',
      LOCAL,
    ]);
    const list = JSON.parse(stdout) as { items: KubeObject[] };
    assert.deepEqual(
      list.items.map((item) => `${item.kind}/${item.metadata.name}`).sort(),
      objects.map((object) => `${object.kind}/${object.metadata.name}`).sort(),
    );
    for (const object of objects)
      if (object.kind !== 'Namespace') assert.equal(object.metadata.namespace, DEMO_NAMESPACE);
  });

  it('claims the volume the demo makes, and no more than it holds', () => {
    const [claim] = ofKind<KubeObject & { spec: { volumeName?: string; resources: any } }>(
      'PersistentVolumeClaim',
    );
    assert.ok(claim);
    assert.equal(claim.spec.volumeName, DEMO_SHARED_VOLUME.name);
    assert.ok(mebibytes(claim.spec.resources.requests.storage) <= DEMO_SHARED_VOLUME.sizeGi * 1024);
  });

  it('trains on the training node and serves each target on its own device class, with room for its pods', async () => {
    const core = plane.kubeConfig().makeApiClient(CoreV1Api);
    const nodesFor = async (selector: Readonly<Record<string, string>>): Promise<string[]> =>
      (
        await core.listNode({
          labelSelector: Object.entries(selector)
            .map(([key, value]) => `${key}=${value}`)
            .join(','),
        })
      ).items.map((node) => node.metadata?.name ?? '');
    const [training] = ofKind<SupernetTraining & KubeObject>('SupernetTraining');
    assert.ok(training);
    assert.deepEqual(await nodesFor(training.spec.nodeSelector ?? {}), ['trainer']);

    const targets = ofKind<DeploymentTarget & KubeObject>('DeploymentTarget');
    const nodes = new Set<string>();
    for (const target of targets) {
      const matching = await nodesFor(target.spec.device.nodeSelector);
      assert.equal(
        matching.length,
        1,
        `${target.metadata.name} selects one node: ${matching.join(', ')}`,
      );
      const [node = ''] = matching;
      nodes.add(node);
      const device = DEMO_DEVICE_CLASSES.find((spec) => spec.name === node);
      assert.ok(device);
      // An extraction pod beside the serving pod it replaces, and a rollout's two serving pods.
      const { cpu = '0', memory = '0Mi' } = target.spec.device.resources ?? {};
      const serving = target.spec.serving?.resources ?? {};
      const [deviceCpu, servingCpu] = [cores(String(cpu)), cores(String(serving.cpu ?? '0'))];
      const [deviceMemory, servingMemory] = [
        mebibytes(String(memory)),
        mebibytes(String(serving.memory ?? '0Mi')),
      ];
      assert.ok(
        Math.max(deviceCpu + servingCpu, 2 * servingCpu) <= device.cpus,
        `${target.metadata.name}'s pods fit ${node}'s CPUs`,
      );
      assert.ok(
        Math.max(deviceMemory + servingMemory, 2 * servingMemory) <= device.memoryMiB,
        `${target.metadata.name}'s pods fit ${node}'s memory`,
      );
    }
    assert.equal(nodes.size, 3, 'three device classes');
    assert.ok(!nodes.has('trainer'));
    const drifting = targets.find((target) => target.metadata.name === DRIFTING.target);
    assert.equal(drifting?.spec.drift?.action, 'reselect');
    assert.deepEqual(await nodesFor(drifting.spec.device.nodeSelector), [DRIFTING.node]);
  });
});
