/**
 * The compofa.io API for the operator and the tests: the generated types and names of the three
 * kinds, and their CRD manifests (crds/, the source of truth).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

import { loadYaml, type V1CustomResourceDefinition } from '@kubernetes/client-node';

import { parseCrd, REPO_ROOT, type CrdDocument } from './crd-files.js';
import { RESOURCES } from './types.generated.js';

export * from './types.generated.js';
export type { CrdDocument, JsonSchema, PrinterColumn, ValidationRule } from './crd-files.js';

/** A kind of the API. */
export type ResourceKind = (typeof RESOURCES)[number]['kind'];

/** Where a kind is served and where its CRD manifest is. */
export interface CrdInfo {
  readonly kind: ResourceKind;
  readonly plural: string;
  readonly group: string;
  readonly version: string;
  readonly apiVersion: string;
  /** The CRD's name, `<plural>.<group>`. */
  readonly name: string;
  /** Absolute path of the CRD manifest. */
  readonly path: string;
}

/** The CRDs of the API, in crds/ file order. */
export const CRDS: readonly CrdInfo[] = RESOURCES.map((resource) => ({
  kind: resource.kind,
  plural: resource.plural,
  group: resource.group,
  version: resource.version,
  apiVersion: resource.apiVersion,
  name: `${resource.plural}.${resource.group}`,
  path: join(REPO_ROOT, resource.file),
}));

/** The {@link CrdInfo} of `kind`. */
export function crdInfo(kind: ResourceKind): CrdInfo {
  const info = CRDS.find((crd) => crd.kind === kind);
  if (!info) throw new Error(`no CRD for kind ${kind}`);
  return info;
}

/**
 * The CRD manifest of `kind` as plain JSON (js-yaml): for server-side apply through a raw request
 * or kubectl, and for reading the schema. Do not pass it to client-node's typed APIs, which
 * serialize by their models' property names and would drop `default`, `enum` and the CEL rules;
 * use {@link loadCrdModel} there.
 */
export async function loadCrd(kind: ResourceKind): Promise<CrdDocument> {
  const { path } = crdInfo(kind);
  return parseCrd(await readFile(path, 'utf8'), path);
}

/**
 * The CRD manifest of `kind` as client-node's model, for
 * `ApiextensionsV1Api.createCustomResourceDefinition` and the like: deserialized by client-node's
 * `loadYaml`, so that it serializes back to the manifest unchanged.
 */
export async function loadCrdModel(kind: ResourceKind): Promise<V1CustomResourceDefinition> {
  return loadYaml<V1CustomResourceDefinition>(await readFile(crdInfo(kind).path, 'utf8'));
}
