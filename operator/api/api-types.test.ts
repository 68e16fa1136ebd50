import assert from 'node:assert/strict';
import { access, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import { dumpYaml } from '@kubernetes/client-node';
import yaml from 'js-yaml';

import {
  generateApi,
  renderDocs,
  renderTypes,
  DOCS_FILE,
  TYPES_FILE,
} from '../../scripts/generate-api-types.js';
import { readCrdFiles, REPO_ROOT, type CrdDocument, type JsonSchema } from './crd-files.js';
import {
  CRDS,
  crdInfo,
  DEPLOYMENT_TARGET,
  LATENCY_PROFILE,
  loadCrd,
  loadCrdModel,
  SUPERNET_TRAINING,
} from './index.js';

/** The schema at a dotted path (`spec.device`; `[]` steps into array items). */
function schemaAt(crd: CrdDocument, path: string): JsonSchema {
  let node: JsonSchema | undefined = crd.spec.versions[0]?.schema.openAPIV3Schema;
  for (const step of path.split('.')) {
    const [name = '', ...items] = step.split('[]');
    node = node?.properties?.[name];
    node = items.reduce<JsonSchema | undefined>((array) => array?.items, node);
  }
  assert.ok(node, `${crd.metadata.name}: no schema at ${path}`);
  return node;
}

/** Every property of `schema` with its path. */
function* properties(schema: JsonSchema, path: string): Generator<[string, JsonSchema]> {
  for (const [name, child] of Object.entries(schema.properties ?? {})) {
    yield [`${path}.${name}`, child];
    yield* properties(child, `${path}.${name}`);
    if (child.items) yield* properties(child.items, `${path}.${name}[]`);
  }
}

/** A CRD with one kind whose schema is `spec` and `status`, for generator tests. */
function testCrd(spec: JsonSchema, status: JsonSchema = { type: 'object' }): CrdDocument {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: 'gadgets.test.io' },
    spec: {
      group: 'test.io',
      scope: 'Namespaced',
      names: { kind: 'Gadget', plural: 'gadgets' },
      versions: [
        {
          name: 'v1',
          served: true,
          storage: true,
          schema: {
            openAPIV3Schema: {
              description: 'A gadget.',
              type: 'object',
              properties: {
                apiVersion: { type: 'string' },
                kind: { type: 'string' },
                metadata: { type: 'object' },
                spec,
                status,
              },
            },
          },
        },
      ],
    },
  };
}

describe('the compofa.io API types', () => {
  it('are what the CRDs generate: the committed files have not drifted', async () => {
    const generated = await generateApi();
    assert.deepEqual(
      generated.map((file) => file.path),
      [TYPES_FILE, DOCS_FILE],
    );
    for (const file of generated) {
      const committed = await readFile(join(REPO_ROOT, file.path), 'utf8');
      if (committed === file.content) continue;
      const [had, wants] = [committed.split('\n'), file.content.split('\n')];
      const line = had.findIndex((text, index) => text !== wants[index]);
      assert.fail(
        `${file.path} differs from what crds/ generates: run \`npm run generate:api\`\n` +
          `first difference at line ${line + 1}:\n  committed: ${had[line] ?? '(end)'}\n  generated: ${wants[line] ?? '(end)'}`,
      );
    }
  });

  it('render enums as unions, required fields as required, maps, int-or-string and docs', () => {
    const source = renderTypes([
      {
        file: 'crds/gadgets.yaml',
        crd: testCrd({
          type: 'object',
          required: ['size'],
          properties: {
            size: { description: 'How big.', type: 'string', enum: ['small', 'large'] },
            count: {
              description: 'How many.',
              type: 'integer',
              default: 3,
              minimum: 1,
              maximum: 9,
            },
            labels: {
              description: 'Labels.',
              type: 'object',
              additionalProperties: { type: 'string' },
            },
            cpu: { description: 'A quantity.', 'x-kubernetes-int-or-string': true },
            name: { description: 'A name.', type: 'string', pattern: '^[a-z]*/$' },
            tolerations: {
              description: 'Tolerations.',
              type: 'array',
              items: {
                description: 'One toleration.',
                type: 'object',
                properties: { key: { description: 'Key.', type: 'string' } },
              },
            },
          },
        }),
      },
    ]);
    assert.match(source, /export const GADGET = \{"group":"test\.io","version":"v1",/);
    assert.match(source, /export interface Gadget \{/);
    assert.match(source, /readonly apiVersion: "test\.io\/v1";/);
    assert.match(source, /readonly kind: "Gadget";/);
    assert.match(source, /readonly spec\?: GadgetSpec;/);
    assert.match(source, /readonly size: "small" \| "large";/);
    assert.match(source, /readonly count\?: number;/);
    assert.match(source, /Default: `3`\. Constraints: >= 1; <= 9\./);
    assert.match(source, /readonly labels\?: Readonly<Record<string, string>>;/);
    assert.match(source, /readonly cpu\?: number \| string;/);
    assert.match(source, /readonly tolerations\?: readonly Toleration\[\];/);
    assert.match(source, /\/\*\* One toleration\. \*\/\nexport interface Toleration \{/);
    // A pattern holding `*/` must not end the comment early.
    assert.match(source, /matches `\^\[a-z\]\*\\\/\$`/);
  });

  it('share one interface between equal objects and qualify a name that two shapes want', () => {
    const device = (extra: Record<string, JsonSchema>): JsonSchema => ({
      description: 'A device.',
      type: 'object',
      properties: { selector: { description: 'Selector.', type: 'string' }, ...extra },
    });
    const source = renderTypes([
      {
        file: 'crds/gadgets.yaml',
        crd: testCrd(
          {
            type: 'object',
            properties: {
              device: device({}),
              backup: {
                description: 'Backup.',
                type: 'object',
                properties: { device: device({}) },
              },
            },
          },
          {
            type: 'object',
            properties: {
              device: device({ extra: { description: 'Extra.', type: 'boolean' } }),
            },
          },
        ),
      },
    ]);
    assert.equal(source.match(/export interface Device \{/g)?.length, 1);
    assert.match(source, /Used at `Gadget\.spec\.device`, `Gadget\.spec\.backup\.device`\./);
    assert.match(source, /readonly device\?: GadgetStatusDevice;/);
    assert.match(
      source,
      /export interface GadgetStatusDevice \{\n[\s\S]*readonly extra\?: boolean;/,
    );
  });

  it("fill the docs' generated sections and refuse a section for an unknown kind", async () => {
    const crds = await readCrdFiles();
    const docs = renderDocs(
      'intro\n<!-- generated: DeploymentTarget columns -->\nstale\n<!-- end generated -->\nend\n',
      crds,
    );
    assert.doesNotMatch(docs, /stale/);
    assert.match(docs, /\| BUDGET \| `\.spec\.latencyBudgetMs` \| number \| default \|/);
    assert.match(docs, /^end$/m);
    assert.throws(
      () => renderDocs('<!-- generated: Gizmo spec -->\n<!-- end generated -->', crds),
      /no CRD of kind Gizmo/,
    );
  });

  it('name each kind once: CRDS, the constants and the manifests agree', async () => {
    assert.deepEqual(
      CRDS.map((crd) => [crd.kind, crd.plural, crd.group, crd.version, crd.name]),
      [
        [
          'DeploymentTarget',
          'deploymenttargets',
          'compofa.io',
          'v1alpha1',
          'deploymenttargets.compofa.io',
        ],
        [
          'LatencyProfile',
          'latencyprofiles',
          'compofa.io',
          'v1alpha1',
          'latencyprofiles.compofa.io',
        ],
        [
          'SupernetTraining',
          'supernettrainings',
          'compofa.io',
          'v1alpha1',
          'supernettrainings.compofa.io',
        ],
      ],
    );
    assert.deepEqual(
      [SUPERNET_TRAINING.shortNames, DEPLOYMENT_TARGET.shortNames, LATENCY_PROFILE.shortNames],
      [['snt'], ['dt'], ['lp']],
    );
    for (const info of CRDS) {
      await access(info.path);
      const crd = await loadCrd(info.kind);
      assert.equal(crd.metadata.name, info.name);
      assert.equal(crd.spec.scope, 'Namespaced');
      assert.deepEqual(crd.spec.names.categories, ['compofa']);
      const [version] = crd.spec.versions;
      assert.equal(crd.spec.versions.length, 1);
      assert.equal(version?.name, 'v1alpha1');
      assert.equal(version.served && version.storage, true);
      assert.deepEqual(version.subresources, { status: {} });
    }
    assert.equal(crdInfo('LatencyProfile').path, join(REPO_ROOT, LATENCY_PROFILE.file));
  });

  it("survive client-node's model: loadCrdModel serializes back to the manifest", async () => {
    for (const info of CRDS) {
      const model = await loadCrdModel(info.kind);
      assert.deepEqual(yaml.load(dumpYaml(model)), await loadCrd(info.kind), info.kind);
    }
  });

  it('describe every field, give every CEL rule a message and every column a field', async () => {
    for (const { file, crd } of await readCrdFiles()) {
      const version = crd.spec.versions[0];
      assert.ok(version);
      const root = version.schema.openAPIV3Schema;
      for (const [path, schema] of properties(root, '')) {
        if (path === '.metadata') continue; // the API server allows nothing else there
        assert.ok(schema.description, `${file}: ${path} has no description`);
        for (const rule of schema['x-kubernetes-validations'] ?? [])
          assert.ok(rule.message, `${file}: the rule ${rule.rule} at ${path} has no message`);
      }
      for (const column of version.additionalPrinterColumns ?? []) {
        const path = column.jsonPath.slice(1);
        if (path !== 'metadata.creationTimestamp') schemaAt(crd, path);
      }
    }
  });

  it('use one shape for what the kinds share: tolerations, conditions, device, architecture', async () => {
    const [target, profile, training] = await Promise.all([
      loadCrd('DeploymentTarget'),
      loadCrd('LatencyProfile'),
      loadCrd('SupernetTraining'),
    ]);
    const toleration = schemaAt(training, 'spec.tolerations[]');
    assert.deepEqual(schemaAt(target, 'spec.device.tolerations[]'), toleration);
    assert.deepEqual(schemaAt(profile, 'spec.device.tolerations[]'), toleration);
    const condition = schemaAt(training, 'status.conditions[]');
    assert.deepEqual(schemaAt(target, 'status.conditions[]'), condition);
    assert.deepEqual(schemaAt(profile, 'status.conditions[]'), condition);
    assert.deepEqual(
      schemaAt(profile, 'spec.device.nodeSelector'),
      schemaAt(target, 'spec.device.nodeSelector'),
    );
    assert.deepEqual(
      schemaAt(profile, 'spec.device.resources'),
      schemaAt(target, 'spec.device.resources'),
    );
    assert.deepEqual(
      schemaAt(target, 'spec.serving.resources').properties,
      schemaAt(target, 'spec.device.resources').properties,
    );
    assert.deepEqual(
      schemaAt(profile, 'spec.architecture.preset'),
      schemaAt(training, 'spec.architecture.preset'),
    );
  });
});
