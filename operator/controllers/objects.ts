/**
 * Objects as the API server returns them: name, namespace, uid and generation are always set.
 * Reconcilers work on this type, so that no code path has to guess at a missing name.
 */
import type { V1ObjectMeta } from '@kubernetes/client-node';

/** The metadata the API server always fills in for a namespaced object it stored. */
export type StoredMeta = V1ObjectMeta & {
  readonly name: string;
  readonly namespace: string;
  readonly uid: string;
  readonly generation: number;
};

/** `T` as read from the API server. */
export type Stored<T extends { metadata?: V1ObjectMeta }> = Omit<T, 'metadata'> & {
  readonly metadata: StoredMeta;
};

/** Narrows an object read from the API to {@link Stored}; throws when it lacks identity. */
export function stored<T extends { metadata?: V1ObjectMeta }>(object: T): Stored<T> {
  const { metadata } = object;
  if (!metadata?.name || !metadata.namespace || !metadata.uid) {
    throw new Error('object without metadata.name, namespace or uid: not read from the API server');
  }
  // Objects from the API are plain JSON: a shallow copy keeps everything.
  return Object.assign({}, object, {
    metadata: Object.assign({}, metadata, { generation: metadata.generation ?? 0 }),
  }) as Stored<T>;
}
