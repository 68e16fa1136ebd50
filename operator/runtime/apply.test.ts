import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import type { KubernetesObject } from '@kubernetes/client-node';

import { APPLIED_HASH_ANNOTATION, isApplied, withAppliedHash } from './apply.js';

const service = {
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name: 'edge', namespace: 'ml', labels: { app: 'x' } },
  spec: { selector: { app: 'x' }, ports: [{ name: 'http', port: 80, targetPort: 'http' }] },
};

/** What the API server stores for `desired`: defaults, status and metadata added. */
function stored(desired: object) {
  const copy = structuredClone(desired) as typeof service;
  return {
    ...copy,
    metadata: { ...copy.metadata, uid: 'u1', resourceVersion: '7', creationTimestamp: 'now' },
    spec: {
      ...copy.spec,
      type: 'ClusterIP',
      clusterIP: '10.96.0.10',
      ports: copy.spec.ports.map((port) => ({ ...port, protocol: 'TCP' })),
    },
    status: { loadBalancer: {} },
  };
}

describe('withAppliedHash', () => {
  it('stamps a hash that follows every change of the desired object, removals included', () => {
    const hash = (object: object) =>
      withAppliedHash(object as KubernetesObject).metadata?.annotations?.[APPLIED_HASH_ANNOTATION];
    assert.match(hash(service) ?? '', /^[0-9a-f]{16}$/);
    assert.equal(hash(structuredClone(service)), hash(service));
    const withoutLabels = { name: 'edge', namespace: 'ml' };
    assert.notEqual(hash({ ...service, metadata: withoutLabels }), hash(service));
    assert.equal(service.metadata.labels.app, 'x', 'the input is not changed');
  });
});

describe('isApplied', () => {
  const desired = withAppliedHash(service);

  it('is true when the stored object holds every desired field, whatever it adds', () => {
    assert.equal(isApplied(desired, stored(desired)), true);
  });

  it('is false when a desired field differs, is missing, or a list changed length', () => {
    const changed = stored(desired);
    changed.spec.selector.app = 'y';
    assert.equal(isApplied(desired, changed), false);
    const extraPort = stored(desired);
    extraPort.spec.ports.push({ name: 'grpc', port: 81, targetPort: 'grpc', protocol: 'TCP' });
    assert.equal(isApplied(desired, extraPort), false);
    assert.equal(isApplied(desired, undefined), false);
    assert.equal(isApplied({ a: [1] }, { a: { 0: 1 } }), false);
    assert.equal(isApplied({ a: 1 }, { a: '1' }), false);
  });

  it('is false for a new desired state that only removes fields (its hash differs)', () => {
    const before = stored(desired);
    const rest = { name: 'edge', namespace: 'ml' };
    assert.equal(isApplied(withAppliedHash({ ...service, metadata: rest }), before), false);
  });

  it('ignores fields the desired object leaves undefined', () => {
    assert.equal(isApplied({ a: 1, b: undefined }, { a: 1 }), true);
  });

  it('matches an empty list or object with a field the API server omitted', () => {
    assert.equal(isApplied({ args: [], resources: {} }, {}), true);
    assert.equal(isApplied({ args: ['x'] }, {}), false);
    assert.equal(isApplied({ resources: { cpu: '1' } }, {}), false);
  });
});
