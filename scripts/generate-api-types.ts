/**
 * Generates, from the CRD manifests in crds/ (the one source of truth of the compofa.io API):
 *
 * - `operator/api/types.generated.ts`: an interface per kind and per nested object of its spec and
 *   status, documented with the schema's descriptions, defaults and constraints; `readonly`
 *   fields, optional unless `required`, enums as string-literal unions; and a constant per kind
 *   with its group, version, kind, plural and file.
 * - the field and printer-column tables of `docs/api.md`, between `<!-- generated: ... -->` and
 *   `<!-- end generated -->` markers (the prose around them is written by hand).
 *
 * It walks the structural schema; nothing in it is specific to one kind. Run `npm run
 * generate:api`; operator/api/api-types.test.ts fails when the committed files differ from what it
 * generates.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import * as prettier from 'prettier';

import {
  readCrdFiles,
  REPO_ROOT,
  storageVersion,
  type CrdFile,
  type JsonSchema,
  type PrinterColumn,
  type ValidationRule,
} from '../operator/api/crd-files.js';

/** Paths, relative to the repository root, of what is generated. */
export const TYPES_FILE = 'operator/api/types.generated.ts';
export const DOCS_FILE = 'docs/api.md';

/** A generated file's path (relative to the repository root) and its content. */
export interface GeneratedFile {
  readonly path: string;
  readonly content: string;
}

/** Every generated file from the CRDs in crds/, formatted with the repository's prettier settings. */
export async function generateApi(): Promise<GeneratedFile[]> {
  const crds = await readCrdFiles();
  const docs = await readFile(join(REPO_ROOT, DOCS_FILE), 'utf8');
  return [
    { path: TYPES_FILE, content: await format(renderTypes(crds), TYPES_FILE) },
    { path: DOCS_FILE, content: await format(renderDocs(docs, crds), DOCS_FILE) },
  ];
}

async function format(text: string, path: string): Promise<string> {
  const absolute = join(REPO_ROOT, path);
  const config = await prettier.resolveConfig(absolute);
  return prettier.format(text, { ...config, filepath: absolute });
}

// ---------------------------------------------------------------------------------------------
// TypeScript

interface PendingInterface {
  readonly name: string;
  readonly schema: JsonSchema;
  /** Where the object appears, as `Kind.spec.field` paths. */
  readonly usedAt: string[];
  /** A kind's interface: its properties' types are named after it (`KindSpec`). */
  readonly root?: boolean;
  /** Property types to use instead of the schema's (the root's apiVersion, kind, metadata). */
  readonly overrides?: Readonly<
    Record<string, { type: string; optional: boolean; description?: string }>
  >;
}

/** Names the interfaces of nested objects; equal objects under one property name share one. */
class InterfaceNamer {
  readonly interfaces: PendingInterface[] = [];
  private readonly byBaseName = new Map<string, PendingInterface[]>();
  private readonly taken = new Set<string>();

  /**
   * The interface for `schema`, found at `path` under property `baseName` of interface `parent`:
   * an existing one of the same base name and shape, or a new one named `baseName` (or
   * `parent + baseName` when that is taken).
   */
  name(baseName: string, parent: string, schema: JsonSchema, path: string): string {
    const key = shapeKey(schema);
    const candidates = this.byBaseName.get(baseName) ?? [];
    const same = candidates.find((candidate) => shapeKey(candidate.schema) === key);
    if (same) {
      if (!same.usedAt.includes(path)) same.usedAt.push(path);
      return same.name;
    }
    let name = this.taken.has(baseName) ? `${parent}${baseName}` : baseName;
    for (let n = 2; this.taken.has(name); n++) name = `${parent}${baseName}${n}`;
    return this.add({ name, schema, usedAt: [path] }, baseName);
  }

  add(pending: PendingInterface, baseName = pending.name): string {
    if (this.taken.has(pending.name)) throw new Error(`two interfaces named ${pending.name}`);
    this.taken.add(pending.name);
    this.interfaces.push(pending);
    this.byBaseName.set(baseName, [...(this.byBaseName.get(baseName) ?? []), pending]);
    return pending.name;
  }
}

/** The schema minus what belongs to where it is used (its description, default and rules). */
function shapeKey(schema: JsonSchema): string {
  const shape: Record<string, unknown> = { ...schema };
  delete shape.description;
  delete shape.default;
  delete shape['x-kubernetes-validations'];
  return canonicalJson(shape);
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    return `{${Object.entries(value as Record<string, unknown>)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`)
      .join(',')}}`;
  }
  return JSON.stringify(value);
}

/** The TypeScript source (unformatted) for `crds`. */
export function renderTypes(crds: readonly CrdFile[]): string {
  const namer = new InterfaceNamer();
  const constants: string[] = [];
  for (const { file, crd } of crds) {
    const version = storageVersion(crd);
    const { kind } = crd.spec.names;
    const apiVersion = `${crd.spec.group}/${version.name}`;
    const info = {
      group: crd.spec.group,
      version: version.name,
      apiVersion,
      kind,
      listKind: crd.spec.names.listKind ?? `${kind}List`,
      plural: crd.spec.names.plural,
      singular: crd.spec.names.singular ?? kind.toLowerCase(),
      shortNames: crd.spec.names.shortNames ?? [],
      categories: crd.spec.names.categories ?? [],
      scope: crd.spec.scope,
      file,
    };
    constants.push(
      `${jsDoc(`Names of the ${kind} resource (${crd.metadata.name}).`, '')}export const ${constantName(kind)} = ${JSON.stringify(info)} as const;\n`,
    );
    namer.add({
      name: kind,
      schema: version.schema.openAPIV3Schema,
      usedAt: [],
      root: true,
      overrides: {
        apiVersion: { type: JSON.stringify(apiVersion), optional: false },
        kind: { type: JSON.stringify(kind), optional: false },
        metadata: {
          type: 'V1ObjectMeta',
          optional: true,
          description: 'Standard object metadata.',
        },
      },
    });
  }

  // Rendering an interface names those of its properties: the list grows while it is walked.
  // A second pass renders them all again, now that every interface knows all of its uses.
  for (let index = 0; index < namer.interfaces.length; index++) {
    const pending = namer.interfaces[index];
    if (pending) renderInterface(pending, namer);
  }
  const bodies = namer.interfaces.map((pending) => renderInterface(pending, namer));

  const kinds = crds.map(({ crd }) => constantName(crd.spec.names.kind));
  return [
    '// Generated by scripts/generate-api-types.ts from crds/*.yaml. Do not edit: change the CRD',
    '// and run `npm run generate:api`.',
    '',
    "import type { V1ObjectMeta } from '@kubernetes/client-node';",
    '',
    ...constants,
    '',
    `${jsDoc('Every kind of the API, in crds/ file order.', '')}export const RESOURCES = [${kinds.join(', ')}] as const;`,
    '',
    ...bodies,
  ].join('\n');
}

function renderInterface(pending: PendingInterface, namer: InterfaceNamer): string {
  const { name, schema } = pending;
  const required = new Set(schema.required ?? []);
  const members = Object.entries(schema.properties ?? {}).map(([property, child]) => {
    const override = pending.overrides?.[property];
    const baseName = pending.root ? `${name}${pascal(property)}` : pascal(property);
    const type =
      override?.type ?? tsType(child, baseName, name, `${pathOf(pending)}.${property}`, namer);
    const optional = override ? override.optional : !required.has(property);
    const doc = override?.description ?? describe(child, property, schema);
    return `${jsDoc(doc, '  ')}  readonly ${property}${optional ? '?' : ''}: ${type};`;
  });
  const shared =
    pending.usedAt.length > 1
      ? `\n\nUsed at ${pending.usedAt.map((p) => `\`${p}\``).join(', ')}.`
      : '';
  return `${jsDoc(`${schema.description ?? name}${shared}`, '')}export interface ${name} {\n${members.join('\n')}\n}\n`;
}

function pathOf(pending: PendingInterface): string {
  return pending.usedAt[0] ?? pending.name;
}

function tsType(
  schema: JsonSchema,
  baseName: string,
  parent: string,
  path: string,
  namer: InterfaceNamer,
): string {
  if (schema['x-kubernetes-int-or-string']) return 'number | string';
  if (schema.enum) return schema.enum.map((value) => JSON.stringify(value)).join(' | ');
  switch (schema.type) {
    case 'string':
      return 'string';
    case 'integer':
    case 'number':
      return 'number';
    case 'boolean':
      return 'boolean';
    case 'array': {
      const item = schema.items
        ? tsType(schema.items, singular(baseName), parent, `${path}[]`, namer)
        : 'unknown';
      return `readonly ${/[ |]/.test(item) ? `(${item})` : item}[]`;
    }
    case 'object':
      if (schema.properties) return namer.name(baseName, parent, schema, path);
      if (typeof schema.additionalProperties === 'object')
        return `Readonly<Record<string, ${tsType(schema.additionalProperties, `${baseName}Value`, parent, `${path}.*`, namer)}>>`;
      return 'Readonly<Record<string, unknown>>';
    default:
      return 'unknown';
  }
}

/** The description of a property, then its default and constraints. */
function describe(schema: JsonSchema, property: string, parent: JsonSchema): string {
  const rules = constraints(schema, property, parent);
  const facts = [
    schema.default === undefined ? '' : `Default: \`${literal(schema.default)}\`.`,
    rules.length === 0 ? '' : `Constraints: ${rules.join('; ')}.`,
  ].filter(Boolean);
  return [schema.description ?? '', facts.join(' ')].filter(Boolean).join('\n\n');
}

/**
 * The constraints on `schema` (as property `property` of `parent`) in words: ranges, lengths,
 * sizes, short patterns, and the messages of CEL rules that target it.
 */
function constraints(schema: JsonSchema, property: string, parent: JsonSchema): string[] {
  const out: string[] = [];
  if (schema.enum) out.push(`one of ${schema.enum.map((v) => `\`${String(v)}\``).join(', ')}`);
  if (schema.minimum !== undefined)
    out.push(`${schema.exclusiveMinimum ? '>' : '>='} ${schema.minimum}`);
  if (schema.maximum !== undefined)
    out.push(`${schema.exclusiveMaximum ? '<' : '<='} ${schema.maximum}`);
  if (schema.minLength !== undefined && schema.minLength > 0)
    out.push(schema.minLength === 1 ? 'not empty' : `at least ${schema.minLength} characters`);
  if (schema.maxLength !== undefined) out.push(`at most ${schema.maxLength} characters`);
  if (schema.maxItems !== undefined) out.push(`at most ${schema.maxItems} items`);
  if (schema.maxProperties !== undefined) out.push(`at most ${schema.maxProperties} entries`);
  if (schema.format && !/^int(32|64)$/.test(schema.format)) out.push(`format ${schema.format}`);
  if (schema.pattern && schema.pattern.length <= 32) out.push(`matches \`${schema.pattern}\``);
  const rules = [
    ...(schema['x-kubernetes-validations'] ?? []).filter((rule) => !rule.fieldPath),
    ...(parent['x-kubernetes-validations'] ?? []).filter(
      (rule) => rule.fieldPath === `.${property}`,
    ),
  ];
  out.push(...rules.map(ruleText));
  return out;
}

/** A default value as written in YAML: strings bare, the rest as JSON. */
function literal(value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value);
}

function ruleText(rule: ValidationRule): string {
  const text = rule.message ?? `rule \`${rule.rule}\``;
  return /\boldSelf\b/.test(rule.rule) ? `on update: ${text}` : text;
}

/** A JSDoc comment of `text`, wrapped to fit 100 columns at `indent`. */
function jsDoc(text: string, indent: string): string {
  if (!text.trim()) return '';
  const width = 100 - indent.length - 3;
  const lines = text
    .replaceAll('*/', '*\\/')
    .split('\n')
    .flatMap((paragraph) => wrap(paragraph, width));
  if (lines.length === 1) return `${indent}/** ${lines[0] ?? ''} */\n`;
  return `${indent}/**\n${lines.map((line) => `${indent} *${line ? ` ${line}` : ''}`).join('\n')}\n${indent} */\n`;
}

function wrap(paragraph: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of paragraph.split(/\s+/).filter(Boolean)) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line ? `${line} ${word}` : word;
    }
  }
  lines.push(line);
  return lines;
}

function pascal(name: string): string {
  return name.charAt(0).toUpperCase() + name.slice(1);
}

function singular(name: string): string {
  return name.endsWith('s') && !name.endsWith('ss') ? name.slice(0, -1) : `${name}Item`;
}

/** `SupernetTraining` -> `SUPERNET_TRAINING`. */
function constantName(kind: string): string {
  return kind.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase();
}

// ---------------------------------------------------------------------------------------------
// Markdown

const SECTION =
  /(<!-- generated: (\w+) (spec|status|columns) -->\n)[\s\S]*?(<!-- end generated -->)/g;

/** `docs` with every generated section replaced by the table it names. */
export function renderDocs(docs: string, crds: readonly CrdFile[]): string {
  const byKind = new Map(crds.map(({ crd }) => [crd.spec.names.kind, crd]));
  return docs.replace(
    SECTION,
    (_match, open: string, kind: string, part: string, close: string) => {
      const crd = byKind.get(kind);
      if (!crd) throw new Error(`${DOCS_FILE}: no CRD of kind ${kind} for a generated section`);
      const version = storageVersion(crd);
      const table =
        part === 'columns'
          ? columnsTable(version.additionalPrinterColumns ?? [])
          : fieldsTable(version.schema.openAPIV3Schema, part);
      return `${open}\n${table}\n${close}`;
    },
  );
}

function columnsTable(columns: readonly PrinterColumn[]): string {
  const rows = columns.map((column) =>
    [
      column.name.toUpperCase(),
      `\`${column.jsonPath}\``,
      column.type,
      (column.priority ?? 0) > 0 ? 'wide' : 'default',
      column.description ?? '',
    ]
      .map(cell)
      .join(' | '),
  );
  return table(['Column', 'Path', 'Type', 'Shown', 'Meaning'], rows);
}

function fieldsTable(root: JsonSchema, part: string): string {
  const schema = root.properties?.[part];
  if (!schema) throw new Error(`no ${part} in the schema`);
  const rows: string[] = [];
  const visit = (node: JsonSchema, path: string, parent: JsonSchema, property: string): void => {
    const required = parent.required?.includes(property) ?? false;
    rows.push(
      [
        `\`${path}\``,
        docType(node),
        node.default === undefined ? '' : `\`${literal(node.default)}\``,
        [...(required ? ['required'] : []), ...constraints(node, property, parent)].join('; '),
        node.description ?? '',
      ]
        .map(cell)
        .join(' | '),
    );
    const children = node.type === 'array' ? node.items : node;
    const suffix = node.type === 'array' ? '[]' : '';
    for (const [name, child] of Object.entries(children?.properties ?? {}))
      visit(child, `${path}${suffix}.${name}`, children ?? node, name);
  };
  for (const [name, child] of Object.entries(schema.properties ?? {}))
    visit(child, `${part}.${name}`, schema, name);
  return table(['Field', 'Type', 'Default', 'Constraints', 'Meaning'], rows);
}

function docType(schema: JsonSchema): string {
  if (schema['x-kubernetes-int-or-string']) return 'int or string';
  if (schema.type === 'array') return `[]${schema.items ? docType(schema.items) : 'any'}`;
  if (
    schema.type === 'object' &&
    !schema.properties &&
    typeof schema.additionalProperties === 'object'
  )
    return `map[string]${docType(schema.additionalProperties)}`;
  return schema.type ?? 'any';
}

function cell(text: string): string {
  return text.replaceAll('|', '\\|').replaceAll('\n', ' ');
}

function table(header: readonly string[], rows: readonly string[]): string {
  return [
    `| ${header.join(' | ')} |`,
    `| ${header.map(() => '---').join(' | ')} |`,
    ...rows.map((row) => `| ${row} |`),
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  for (const file of await generateApi()) {
    await writeFile(join(REPO_ROOT, file.path), file.content);
    process.stdout.write(`wrote ${file.path}\n`);
  }
}
