/**
 * Reading the CustomResourceDefinitions in crds/, the source of truth of the compofa.io API, as
 * plain JSON-shaped objects (js-yaml). Independent of the generated types, so that the generator
 * (scripts/generate-api-types.ts) can run when they are missing or stale.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import yaml from 'js-yaml';

/** The repository root. */
export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** The folder of the CRD manifests. */
export const CRD_DIR = join(REPO_ROOT, 'crds');

/** One `x-kubernetes-validations` entry: a CEL rule. */
export interface ValidationRule {
  readonly rule: string;
  readonly message?: string;
  readonly messageExpression?: string;
  readonly fieldPath?: string;
  readonly reason?: string;
  readonly optionalOldSelf?: boolean;
}

/** The structural subset of OpenAPI v3 that CRD schemas use. */
export interface JsonSchema {
  readonly type?: 'object' | 'array' | 'string' | 'integer' | 'number' | 'boolean';
  readonly description?: string;
  readonly properties?: Readonly<Record<string, JsonSchema>>;
  readonly required?: readonly string[];
  readonly items?: JsonSchema;
  readonly additionalProperties?: JsonSchema | boolean;
  readonly anyOf?: readonly JsonSchema[];
  readonly enum?: readonly unknown[];
  readonly default?: unknown;
  readonly format?: string;
  readonly pattern?: string;
  readonly minimum?: number;
  readonly maximum?: number;
  readonly exclusiveMinimum?: boolean;
  readonly exclusiveMaximum?: boolean;
  readonly minLength?: number;
  readonly maxLength?: number;
  readonly minItems?: number;
  readonly maxItems?: number;
  readonly minProperties?: number;
  readonly maxProperties?: number;
  readonly 'x-kubernetes-int-or-string'?: boolean;
  readonly 'x-kubernetes-preserve-unknown-fields'?: boolean;
  readonly 'x-kubernetes-embedded-resource'?: boolean;
  readonly 'x-kubernetes-list-type'?: 'atomic' | 'set' | 'map';
  readonly 'x-kubernetes-list-map-keys'?: readonly string[];
  readonly 'x-kubernetes-map-type'?: 'atomic' | 'granular';
  readonly 'x-kubernetes-validations'?: readonly ValidationRule[];
}

/** A printer column of a CRD version. */
export interface PrinterColumn {
  readonly name: string;
  readonly type: 'string' | 'integer' | 'number' | 'boolean' | 'date';
  readonly jsonPath: string;
  readonly description?: string;
  readonly priority?: number;
  readonly format?: string;
}

/** One version of a CRD. */
export interface CrdVersion {
  readonly name: string;
  readonly served: boolean;
  readonly storage: boolean;
  readonly schema: { readonly openAPIV3Schema: JsonSchema };
  readonly subresources?: { readonly status?: object; readonly scale?: object };
  readonly additionalPrinterColumns?: readonly PrinterColumn[];
}

/** A CustomResourceDefinition as written in crds/ (plain JSON, not client-node's model). */
export interface CrdDocument {
  readonly apiVersion: 'apiextensions.k8s.io/v1';
  readonly kind: 'CustomResourceDefinition';
  readonly metadata: { readonly name: string; readonly labels?: Readonly<Record<string, string>> };
  readonly spec: {
    readonly group: string;
    readonly scope: 'Namespaced' | 'Cluster';
    readonly names: {
      readonly kind: string;
      readonly listKind?: string;
      readonly plural: string;
      readonly singular?: string;
      readonly shortNames?: readonly string[];
      readonly categories?: readonly string[];
    };
    readonly versions: readonly CrdVersion[];
  };
}

/** A CRD manifest and where it is, relative to the repository root (`crds/x.yaml`). */
export interface CrdFile {
  readonly file: string;
  readonly crd: CrdDocument;
}

/** Parses one CRD manifest; throws naming `source` when it is not a CustomResourceDefinition. */
export function parseCrd(text: string, source: string): CrdDocument {
  const document = yaml.load(text) as Partial<CrdDocument> | null;
  if (
    document?.apiVersion !== 'apiextensions.k8s.io/v1' ||
    document.kind !== 'CustomResourceDefinition'
  ) {
    throw new Error(`${source} is not an apiextensions.k8s.io/v1 CustomResourceDefinition`);
  }
  return document as CrdDocument;
}

/** Reads a CRD manifest, given its path relative to the repository root. */
export async function readCrdFile(file: string): Promise<CrdDocument> {
  return parseCrd(await readFile(join(REPO_ROOT, file), 'utf8'), file);
}

/** Every CustomResourceDefinition in crds/, in file name order. */
export async function readCrdFiles(): Promise<CrdFile[]> {
  const names = (await readdir(CRD_DIR)).filter((name) => /\.ya?ml$/.test(name)).sort();
  const files: CrdFile[] = [];
  for (const name of names) {
    const file = `crds/${name}`;
    const text = await readFile(join(REPO_ROOT, file), 'utf8');
    const kind = (yaml.load(text) as { kind?: unknown } | null)?.kind;
    if (kind === 'CustomResourceDefinition') files.push({ file, crd: parseCrd(text, file) });
  }
  return files;
}

/** The one version of `crd` that is stored (the generator covers single-version CRDs). */
export function storageVersion(crd: CrdDocument): CrdVersion {
  const stored = crd.spec.versions.filter((version) => version.storage);
  const [version] = stored;
  if (stored.length !== 1 || !version)
    throw new Error(`${crd.metadata.name}: expected exactly one storage version`);
  return version;
}
