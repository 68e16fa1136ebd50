/**
 * The Helm chart (charts/compofa) with the real tools and a real API server: its CRDs are crds/
 * plus the keep annotation; `helm lint` passes; what `helm template` renders (default values, and
 * every monitoring flag on) is accepted by kube-apiserver in a server-side dry run, with the
 * Prometheus Operator's CRDs installed; the operator's RBAC is exactly what it needs, checked by
 * impersonation and by running the operator under the chart's service account; the alert rules
 * pass `promtool check rules` and their unit tests (charts/compofa/tests/rules.test.yaml); the Argo
 * CD health check gives the right health for each phase, run by gopher-lua as Argo CD runs it;
 * every value is documented in values.yaml and the chart's README.
 *
 * helm, promtool, the Lua runner and the Prometheus Operator CRDs come from
 * scripts/build-chart-tools.sh (cached; part of `npm run setup`).
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile, copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import {
  BatchV1Api,
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  EventsV1Api,
  PatchStrategy,
  setHeaderOptions,
  type KubernetesObject,
} from '@kubernetes/client-node';
import yaml from 'js-yaml';

import { CHART_CRD_DIR, expectedChartCrds, SOURCE_CRD_DIR } from '../../charts/sync-crds.js';
import { CRDS, crdInfo, SUPERNET_TRAINING, type ResourceKind } from '../../operator/api/index.js';
import { DEFAULT_OPERATOR_CONFIG } from '../../operator/config.js';
import { runOperator, type RunningOperator } from '../../operator/run.js';
import { Logger } from '../../serving/logger.js';
import { chartTools, type ChartTools } from '../harness/chart-tools.js';
import { ControlPlane } from '../harness/control-plane.js';
import { MINIMAL_SPECS } from '../harness/crds.js';
import { runCommand, type CommandResult } from '../harness/run-command.js';
import { waitFor } from '../harness/wait.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CHART = join(ROOT, 'charts', 'compofa');
const RELEASE = 'compofa';
/** Where the chart is installed; the operator's names follow from RELEASE. */
const NAMESPACE = 'compofa-system';
const OPERATOR = 'compofa-operator';
const OPERATOR_USER = `system:serviceaccount:${NAMESPACE}:${OPERATOR}`;
/** Namespaces of the user's resources. */
const USER_NAMESPACES = ['shop', 'lab'] as const;
const KUBE_VERSION = 'v1.36.3';
const MONITORING = [
  'metrics.serviceMonitor.enabled=true',
  'metrics.podMonitor.enabled=true',
  'prometheusRule.enabled=true',
];
const SERVING_ACCOUNTS = [
  'servingServiceAccount.create=true',
  `servingServiceAccount.namespaces={${USER_NAMESPACES.join(',')}}`,
];

/** A rendered manifest. */
interface Manifest extends KubernetesObject {
  readonly kind: string;
  readonly metadata: { name: string; namespace?: string; [key: string]: any };
  readonly [key: string]: any;
}

/** What a command printed, for assertion messages. */
function output(result: CommandResult): string {
  return `exit ${result.code}\n${result.stdout}\n${result.stderr}`;
}

/** `kind/name` of each manifest, sorted. */
function names(manifests: readonly Manifest[]): string[] {
  return manifests
    .map(
      (m) =>
        `${m.kind}/${m.metadata.namespace ? `${m.metadata.namespace}/` : ''}${m.metadata.name}`,
    )
    .sort();
}

/** The one manifest of `kind` (and `name`, when given). */
function only(manifests: readonly Manifest[], kind: string, name?: string): Manifest {
  const found = manifests.filter(
    (m) => m.kind === kind && (name === undefined || m.metadata.name === name),
  );
  assert.equal(found.length, 1, `one ${kind} ${name ?? ''} in ${names(manifests).join(', ')}`);
  return found[0] as Manifest;
}

/** An RBAC rule as a comparable string per (group, resource, verb, name). */
function permissions(
  rules: readonly {
    apiGroups?: string[];
    resources?: string[];
    verbs: string[];
    resourceNames?: string[];
  }[],
): string[] {
  const result = new Set<string>();
  for (const rule of rules)
    for (const group of rule.apiGroups ?? [])
      for (const resource of rule.resources ?? [])
        for (const verb of rule.verbs)
          for (const name of rule.resourceNames ?? ['*'])
            result.add(`${verb} ${resource}${group ? `.${group}` : ''} ${name}`);
  return [...result].sort();
}

/**
 * What the operator does with each resource, from its code (operator/manager.ts, run.ts, the
 * controllers and runtime/): its informers list and watch, reconcilers get, server-side apply
 * (patch, and create when absent) and delete; status goes through /status.
 */
const CLUSTER_NEEDS: Readonly<Record<string, readonly string[]>> = {
  'supernettrainings.compofa.io': ['get', 'list', 'watch'],
  'deploymenttargets.compofa.io': ['get', 'list', 'watch'],
  'latencyprofiles.compofa.io': ['get', 'list', 'watch', 'create', 'patch'],
  'supernettrainings.compofa.io/status': ['get', 'patch', 'update'],
  'deploymenttargets.compofa.io/status': ['get', 'patch', 'update'],
  'latencyprofiles.compofa.io/status': ['get', 'patch', 'update'],
  'supernettrainings.compofa.io/finalizers': ['update'],
  'deploymenttargets.compofa.io/finalizers': ['update'],
  'latencyprofiles.compofa.io/finalizers': ['update'],
  'jobs.batch': ['get', 'list', 'watch', 'create', 'patch', 'delete'],
  pods: ['get', 'list', 'watch'],
  configmaps: ['get', 'list', 'watch', 'create', 'patch', 'delete'],
  serviceaccounts: ['get', 'create', 'patch', 'delete'],
  'roles.rbac.authorization.k8s.io': ['get', 'create', 'patch', 'delete'],
  'rolebindings.rbac.authorization.k8s.io': ['get', 'create', 'patch', 'delete'],
  'deployments.apps': ['get', 'list', 'watch', 'create', 'patch', 'delete'],
  services: ['get', 'list', 'watch', 'create', 'patch', 'delete'],
  'events.events.k8s.io': ['create', 'patch'],
};

/** One request to check with `kubectl auth can-i`; `resource` may be `resource/name`. */
interface Check {
  readonly verb: string;
  readonly resource: string;
  /** Unset: in every namespace. */
  readonly namespace?: string;
  readonly subresource?: string;
}

/** The needs of {@link CLUSTER_NEEDS} as checks in one namespace, or in all. */
function neededChecks(namespace?: string): Check[] {
  return Object.entries(CLUSTER_NEEDS).flatMap(([key, verbs]) => {
    const [resource = '', subresource] = key.split('/');
    return verbs.map((verb) => ({
      verb,
      resource,
      ...(namespace ? { namespace } : {}),
      ...(subresource ? { subresource } : {}),
    }));
  });
}

/** Requests the operator never makes. */
const NOT_NEEDED: readonly Check[] = [
  { verb: 'get', resource: 'secrets', namespace: 'shop' },
  { verb: 'list', resource: 'secrets' },
  { verb: 'delete', resource: 'nodes' },
  { verb: 'list', resource: 'nodes' },
  { verb: 'delete', resource: 'pods', namespace: 'shop' },
  { verb: 'create', resource: 'pods', namespace: 'shop' },
  { verb: 'create', resource: 'pods', namespace: 'shop', subresource: 'exec' },
  { verb: 'update', resource: 'configmaps', namespace: 'shop' },
  { verb: 'update', resource: 'jobs.batch', namespace: 'shop' },
  { verb: 'create', resource: 'supernettrainings.compofa.io', namespace: 'shop' },
  { verb: 'update', resource: 'supernettrainings.compofa.io', namespace: 'shop' },
  { verb: 'patch', resource: 'deploymenttargets.compofa.io', namespace: 'shop' },
  { verb: 'delete', resource: 'latencyprofiles.compofa.io', namespace: 'shop' },
  { verb: 'create', resource: 'customresourcedefinitions.apiextensions.k8s.io' },
  { verb: 'create', resource: 'clusterroles.rbac.authorization.k8s.io' },
  { verb: 'create', resource: 'clusterrolebindings.rbac.authorization.k8s.io' },
  { verb: 'escalate', resource: 'roles.rbac.authorization.k8s.io', namespace: 'shop' },
  { verb: 'bind', resource: 'roles.rbac.authorization.k8s.io', namespace: 'shop' },
  { verb: 'create', resource: 'serviceaccounts', namespace: 'shop', subresource: 'token' },
  { verb: 'delete', resource: 'events.events.k8s.io', namespace: 'shop' },
  { verb: 'create', resource: 'events', namespace: 'shop' },
  { verb: 'list', resource: 'namespaces' },
  // The chart's one PrometheusRule compares with the budget the pods export: no rule per target.
  { verb: 'create', resource: 'prometheusrules.monitoring.coreos.com', namespace: 'shop' },
  { verb: 'get', resource: 'leases.coordination.k8s.io', namespace: 'shop' },
  { verb: 'create', resource: 'leases.coordination.k8s.io', namespace: 'shop' },
  { verb: 'delete', resource: `leases.coordination.k8s.io/${OPERATOR}`, namespace: NAMESPACE },
  { verb: 'update', resource: 'leases.coordination.k8s.io/someone-else', namespace: NAMESPACE },
];

/** `verb resource[/sub] in namespace`, for messages. */
function describeCheck(check: Check): string {
  const sub = check.subresource ? `/${check.subresource}` : '';
  return `${check.verb} ${check.resource}${sub} in ${check.namespace ?? 'all namespaces'}`;
}

/** Runs `items` through `work`, `limit` at a time. */
async function inBatches<T, R>(
  items: readonly T[],
  limit: number,
  work: (item: T) => Promise<R>,
): Promise<R[]> {
  const results: R[] = [];
  for (let i = 0; i < items.length; i += limit)
    results.push(...(await Promise.all(items.slice(i, i + limit).map(work))));
  return results;
}

describe('the Helm chart', () => {
  let tools: ChartTools;
  let plane: ControlPlane;
  let work: string;

  before(async () => {
    [tools, plane, work] = await Promise.all([
      chartTools(),
      ControlPlane.start(),
      mkdtemp(join(tmpdir(), 'compofa-chart-')),
    ]);
    for (const namespace of [NAMESPACE, ...USER_NAMESPACES]) await plane.createNamespace(namespace);
  });
  after(async () => {
    await plane.stop();
    await rm(work, { recursive: true, force: true });
  });

  /** helm, with its cache, config and data folders in the test's own folder. */
  const helm = (args: readonly string[]) =>
    runCommand(tools.helm, args, {
      HELM_CACHE_HOME: join(work, 'helm', 'cache'),
      HELM_CONFIG_HOME: join(work, 'helm', 'config'),
      HELM_DATA_HOME: join(work, 'helm', 'data'),
    });
  /** `helm template` of the chart with `--set` values; fails the test when rendering fails. */
  const render = async (
    sets: readonly string[] = [],
    extra: readonly string[] = [],
  ): Promise<{ text: string; manifests: Manifest[] }> => {
    const result = await helm([
      'template',
      RELEASE,
      CHART,
      '--namespace',
      NAMESPACE,
      '--kube-version',
      KUBE_VERSION,
      ...sets.flatMap((set) => ['--set', set]),
      ...extra,
    ]);
    assert.equal(result.code, 0, `helm template failed: ${output(result)}`);
    const manifests = yaml
      .loadAll(result.stdout)
      .filter((doc): doc is Manifest => doc !== null && typeof doc === 'object');
    return { text: result.stdout, manifests };
  };
  const kubectl = (args: readonly string[]) => {
    assert.ok(plane.kubectlPath, 'kubectl is in the control-plane binaries');
    return runCommand(plane.kubectlPath, ['--kubeconfig', plane.kubeconfigPath, ...args]);
  };
  const writeManifests = async (file: string, manifests: readonly unknown[]): Promise<string> => {
    const path = join(work, file);
    await writeFile(path, manifests.map((m) => yaml.dump(m, { noRefs: true })).join('---\n'));
    return path;
  };

  /** Waits until each CRD (`plural.group`) is Established. */
  const established = async (crds: readonly string[]) => {
    for (const crd of crds)
      await waitFor(
        async () =>
          (
            await kubectl([
              'get',
              'crd',
              crd,
              '-o',
              'jsonpath={.status.conditions[?(@.type=="Established")].status}',
            ])
          ).stdout === 'True',
        { description: `CRD ${crd} to be Established`, hint: plane.logHint },
      );
  };
  /** Applies `files` server-side, as Helm's field manager. */
  const apply = async (files: readonly string[]) => {
    const applied = await kubectl([
      'apply',
      '--server-side',
      '--field-manager=helm',
      ...files.flatMap((file) => ['-f', file]),
    ]);
    assert.equal(applied.code, 0, output(applied));
  };

  let monitoringCrdsInstalled: Promise<void> | undefined;
  /** The Prometheus Operator's ServiceMonitor, PodMonitor and PrometheusRule CRDs, once. */
  const installMonitoringCrds = () =>
    (monitoringCrdsInstalled ??= (async () => {
      await apply(tools.monitoringCrds);
      await established(
        ['servicemonitors', 'podmonitors', 'prometheusrules'].map(
          (plural) => `${plural}.monitoring.coreos.com`,
        ),
      );
    })());
  let chartCrdsInstalled: Promise<void> | undefined;
  /** The chart's compofa.io CRDs, as its README says to upgrade them, once. */
  const installChartCrds = () =>
    (chartCrdsInstalled ??= (async () => {
      await apply([CHART_CRD_DIR]);
      await established(CRDS.map((crd) => `${crd.plural}.${crd.group}`));
    })());

  it('keeps its CRDs equal to crds/, with only the keep annotation and a header added', async () => {
    const expected = await expectedChartCrds();
    assert.deepEqual(
      (await readdir(CHART_CRD_DIR)).sort(),
      [...expected.keys()].sort(),
      'charts/compofa/crds/ holds exactly the CRDs of crds/ (run `npx tsx charts/sync-crds.ts`)',
    );
    assert.deepEqual(
      [...expected.keys()].sort(),
      CRDS.map((crd) => crd.path.split('/').at(-1)).sort(),
    );
    for (const [file, content] of expected) {
      assert.equal(
        await readFile(join(CHART_CRD_DIR, file), 'utf8'),
        content,
        `charts/compofa/crds/${file} is out of date: run \`npx tsx charts/sync-crds.ts\``,
      );
      // The copy means what the source means, plus the annotation.
      const source = yaml.load(await readFile(join(SOURCE_CRD_DIR, file), 'utf8')) as Manifest;
      const copy = yaml.load(content) as Manifest;
      assert.deepEqual(copy.metadata.annotations, {
        ...source.metadata.annotations,
        'helm.sh/resource-policy': 'keep',
      });
      assert.deepEqual(
        { ...copy, metadata: { ...copy.metadata, annotations: undefined } },
        { ...source, metadata: { ...source.metadata, annotations: undefined } },
      );
    }
  });

  it('passes helm lint --strict with default values and with every optional object on', async () => {
    for (const sets of [[], [...MONITORING, ...SERVING_ACCOUNTS]]) {
      const result = await helm([
        'lint',
        '--strict',
        CHART,
        '--namespace',
        NAMESPACE,
        '--kube-version',
        KUBE_VERSION,
        ...sets.flatMap((set) => ['--set', set]),
      ]);
      assert.equal(result.code, 0, `helm lint ${sets.join(' ')}: ${output(result)}`);
      assert.match(result.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
    }
    // Lint fails on a typo: values.schema.json allows no unknown keys.
    const typo = await helm(['lint', CHART, '--set', 'metrics.serviceMonitor.enable=true']);
    assert.notEqual(typo.code, 0, output(typo));
    assert.match(typo.stdout + typo.stderr, /additional properties 'enable' not allowed/);
  });

  it('renders a hardened operator Deployment with two leader-electing replicas by default', async () => {
    const { manifests } = await render();
    assert.deepEqual(names(manifests), [
      `ClusterRole/${OPERATOR}`,
      `ClusterRoleBinding/${OPERATOR}`,
      `Deployment/${NAMESPACE}/${OPERATOR}`,
      `PodDisruptionBudget/${NAMESPACE}/${OPERATOR}`,
      `Role/${NAMESPACE}/${OPERATOR}`,
      `RoleBinding/${NAMESPACE}/${OPERATOR}`,
      `Service/${NAMESPACE}/${OPERATOR}-metrics`,
      `ServiceAccount/${NAMESPACE}/${OPERATOR}`,
    ]);
    const deployment = only(manifests, 'Deployment');
    assert.equal(deployment.spec.replicas, 2);
    const pod = deployment.spec.template.spec;
    assert.equal(pod.serviceAccountName, OPERATOR);
    assert.deepEqual(pod.securityContext.seccompProfile, { type: 'RuntimeDefault' });
    assert.equal(pod.securityContext.runAsNonRoot, true);
    assert.ok(pod.securityContext.runAsUser > 0);
    const [container, ...others] = pod.containers;
    assert.equal(others.length, 0);
    assert.equal(container.image, 'ghcr.io/compofa/compofa-operator:0.1.0');
    assert.deepEqual(container.securityContext, {
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      runAsNonRoot: true,
      capabilities: { drop: ['ALL'] },
    });
    assert.ok(container.resources.requests.cpu && container.resources.requests.memory);
    assert.ok(container.resources.limits.memory);
    assert.deepEqual(container.ports, [{ name: 'metrics', containerPort: 8080, protocol: 'TCP' }]);
    assert.deepEqual(container.livenessProbe.httpGet, { path: '/healthz', port: 'metrics' });
    assert.deepEqual(container.readinessProbe.httpGet, { path: '/readyz', port: 'metrics' });

    const env = Object.fromEntries(
      (container.env as { name: string; value?: string; valueFrom?: unknown }[]).map((e) => [
        e.name,
        e.value ?? e.valueFrom,
      ]),
    );
    assert.deepEqual(env, {
      POD_NAMESPACE: { fieldRef: { fieldPath: 'metadata.namespace' } },
      COMPOFA_METRICS_PORT: '8080',
      COMPOFA_LEADER_ELECT: 'true',
      COMPOFA_LEASE_NAME: OPERATOR,
      COMPOFA_TRAINER_IMAGE: 'ghcr.io/compofa/compofa-trainer:0.1.0',
      COMPOFA_RUNTIME_IMAGE: 'ghcr.io/compofa/compofa-runtime:0.1.0',
      COMPOFA_IMAGE_PULL_POLICY: 'IfNotPresent',
      COMPOFA_LOG_LEVEL: 'info',
      COMPOFA_SERVING_SERVICE_ACCOUNT: '',
      COMPOFA_MAX_CONCURRENT_RECONCILES: '8',
      COMPOFA_PROMETHEUS_URL: '',
      COMPOFA_DRIFT_CHECK_INTERVAL: '60',
    });
    // With its own serving account the chart makes the operator use it.
    const withAccounts = only((await render(SERVING_ACCOUNTS)).manifests, 'Deployment');
    assert.deepEqual(
      withAccounts.spec.template.spec.containers[0].env.find(
        (e: { name: string }) => e.name === 'COMPOFA_SERVING_SERVICE_ACCOUNT',
      ),
      { name: 'COMPOFA_SERVING_SERVICE_ACCOUNT', value: 'compofa-serving' },
    );
    // A Prometheus URL with credentials comes from a Secret, never in the pod spec.
    const withSecret = only(
      (await render(['servedLatency.prometheusUrlSecret.name=prometheus-access'])).manifests,
      'Deployment',
    );
    assert.deepEqual(
      withSecret.spec.template.spec.containers[0].env.find(
        (e: { name: string }) => e.name === 'COMPOFA_PROMETHEUS_URL',
      ),
      {
        name: 'COMPOFA_PROMETHEUS_URL',
        valueFrom: { secretKeyRef: { name: 'prometheus-access', key: 'url' } },
      },
    );
    // The chart sets every variable the operator reads, and only those.
    const help = await runCommand(process.execPath, [
      '--import',
      'tsx',
      join(ROOT, 'operator', 'main.ts'),
      '--help',
    ]);
    assert.equal(help.code, 0, output(help));
    const variables = [...help.stdout.matchAll(/^\s+--\S+\s+([A-Z_]+)\s+default/gm)].map(
      (match) => match[1],
    );
    assert.ok(variables.length >= 5, help.stdout);
    assert.deepEqual(Object.keys(env).sort(), variables.sort());

    // The Service and the Lease the Role allows are the ones the pod uses.
    const service = only(manifests, 'Service');
    assert.deepEqual(service.spec.selector, deployment.spec.selector.matchLabels);
    assert.deepEqual(service.spec.ports[0].targetPort, 'metrics');
    const role = only(manifests, 'Role');
    assert.deepEqual(permissions(role.rules), [
      'create leases.coordination.k8s.io *',
      `get leases.coordination.k8s.io ${OPERATOR}`,
      `update leases.coordination.k8s.io ${OPERATOR}`,
    ]);
  });

  it('renders the ServiceMonitor, PodMonitor and PrometheusRule only behind their flags', async () => {
    const kinds = (manifests: readonly Manifest[]) => manifests.map((m) => m.kind);
    const defaults = await render();
    for (const kind of ['ServiceMonitor', 'PodMonitor', 'PrometheusRule'])
      assert.ok(!kinds(defaults.manifests).includes(kind), `${kind} is off by default`);

    const { manifests } = await render([
      ...MONITORING,
      'metrics.serviceMonitor.labels.release=kps',
    ]);
    const serviceMonitor = only(manifests, 'ServiceMonitor');
    const service = only(manifests, 'Service');
    assert.equal(serviceMonitor.metadata.labels.release, 'kps');
    assert.deepEqual(serviceMonitor.spec.selector.matchLabels, service.spec.selector);
    for (const [key, value] of Object.entries(serviceMonitor.spec.selector.matchLabels))
      assert.equal(service.metadata.labels[key], value, 'the ServiceMonitor selects the Service');
    assert.equal(serviceMonitor.spec.endpoints[0].port, service.spec.ports[0].name);
    assert.equal(serviceMonitor.spec.endpoints[0].honorLabels, true);

    const podMonitor = only(manifests, 'PodMonitor');
    assert.deepEqual(podMonitor.spec.selector.matchLabels, {
      'app.kubernetes.io/component': 'serving',
      'app.kubernetes.io/managed-by': 'compofa-operator',
    });
    assert.deepEqual(podMonitor.spec.podMetricsEndpoints[0].port, 'http');
    assert.deepEqual(podMonitor.spec.podMetricsEndpoints[0].path, '/metrics');
    assert.deepEqual(podMonitor.spec.namespaceSelector, { any: true });

    const alerts = (rule: Manifest) =>
      (rule.spec.groups as { rules: { alert?: string; expr: string; for?: string }[] }[])
        .flatMap((group) => group.rules)
        .filter((r) => r.alert);
    const rule = only(manifests, 'PrometheusRule');
    assert.deepEqual(
      alerts(rule)
        .map((r) => r.alert)
        .sort(),
      [
        'CompofaLatencyDrift',
        'CompofaOperatorReconcileErrors',
        'CompofaSupernetTrainingFailed',
        'CompofaSupernetTrainingStalled',
      ],
    );
    // The values reach the rules.
    const tuned = only(
      (
        await render([
          'prometheusRule.enabled=true',
          'prometheusRule.driftWindow=15m',
          'prometheusRule.driftFor=7m',
          'prometheusRule.stallThreshold=2h',
          'prometheusRule.operatorSelector=job="ops"',
        ])
      ).manifests,
      'PrometheusRule',
    );
    const text = JSON.stringify(tuned.spec);
    assert.match(text, /compofa_inference_duration_seconds_bucket\[15m\]/);
    assert.match(text, /> 7200/);
    assert.match(text, /controller_runtime_reconcile_errors_total\{job=\\"ops\\"\}\[5m\]/);
    assert.equal(alerts(tuned).find((r) => r.alert === 'CompofaLatencyDrift')?.for, '7m');
  });

  it('refuses values that cannot work', async () => {
    for (const [sets, message] of [
      [['leaderElection.enabled=false'], /replicaCount > 1 needs leaderElection.enabled/],
      [['workloads.imagePullPolicy=Sometimes'], /imagePullPolicy': value must be one of 'Always'/],
      [['podAntiAffinity=maybe'], /podAntiAffinity': value must be one of 'soft'/],
      [['serviceAccount.create=false'], /serviceAccount.name is required/],
      [['logLevel=loud'], /logLevel': value must be one of/],
      [['prometheusRule.stallThreshold=soon'], /'soon' does not match pattern/],
      [['replicaCount=0'], /replicaCount': minimum/],
      [
        [
          'servedLatency.prometheusUrl=http://prom:9090',
          'servedLatency.prometheusUrlSecret.name=p',
        ],
        /set servedLatency.prometheusUrl or servedLatency.prometheusUrlSecret.name, not both/,
      ],
      [['servedLatency.prometheusUrlSecret.name=Bad_Name'], /'Bad_Name' does not match pattern/],
    ] as const) {
      const result = await helm(['template', RELEASE, CHART, ...sets.flatMap((s) => ['--set', s])]);
      assert.notEqual(result.code, 0, `${sets.join(' ')}: ${output(result)}`);
      assert.match(result.stderr, message);
    }
    // A single replica may run without a Lease: no Role, no PodDisruptionBudget.
    const { manifests } = await render(['replicaCount=1', 'leaderElection.enabled=false']);
    const env = only(manifests, 'Deployment').spec.template.spec.containers[0].env;
    assert.deepEqual(
      env.find((e: { name: string }) => e.name === 'COMPOFA_LEADER_ELECT').value,
      'false',
    );
    assert.ok(!manifests.some((m) => m.kind === 'Role' || m.kind === 'PodDisruptionBudget'));
  });

  it('is accepted by the API server in a server-side dry run, every manifest of it', async () => {
    await installMonitoringCrds();
    for (const sets of [[], [...MONITORING, ...SERVING_ACCOUNTS]]) {
      const { manifests } = await render(sets, ['--include-crds']);
      assert.equal(manifests.filter((m) => m.kind === 'CustomResourceDefinition').length, 3);
      const file = await writeManifests('dry-run.yaml', manifests);
      const result = await kubectl([
        'apply',
        '--server-side',
        '--dry-run=server',
        '--field-manager=helm',
        '-f',
        file,
      ]);
      assert.equal(result.code, 0, `${sets.join(' ')}: ${output(result)}`);
      const accepted = result.stdout
        .split('\n')
        .filter((line) => line.endsWith('(server dry run)'));
      assert.equal(accepted.length, manifests.length, result.stdout);
    }
  });

  it('fails the dry run of a manifest the schemas reject', async () => {
    await installMonitoringCrds();
    const { manifests } = await render(MONITORING);
    const cases: [string, (m: any) => void, RegExp][] = [
      ['ServiceMonitor', (m) => (m.spec.endpoints[0].scheme = 'gopher'), /scheme/],
      ['PrometheusRule', (m) => (m.spec.groups[0].rules[2].for = 'soon'), /for/],
      [
        'Deployment',
        (m) => (m.spec.template.spec.containers[0].ports[0].containerPort = 70000),
        /containerPort/,
      ],
    ];
    for (const [kind, spoil, message] of cases) {
      const broken = structuredClone(only(manifests, kind)) as any;
      spoil(broken);
      const file = await writeManifests(`broken-${kind}.yaml`, [broken]);
      const result = await kubectl(['apply', '--server-side', '--dry-run=server', '-f', file]);
      assert.notEqual(result.code, 0, `a spoilt ${kind} was accepted: ${output(result)}`);
      assert.match(result.stderr, message);
    }
  });

  it('gives the operator exactly the cluster permissions its code uses', async () => {
    const { manifests } = await render();
    const granted = permissions(only(manifests, 'ClusterRole').rules);
    const needed = Object.entries(CLUSTER_NEEDS)
      .flatMap(([resource, verbs]) => verbs.map((verb) => `${verb} ${resource} *`))
      .map((permission) =>
        // `resource/sub.group` is written `resource.group/sub` by can-i, `resource/sub` + group in RBAC.
        permission.replace(/^(\S+) ([^/. ]+)\.(\S+)\/(\S+) /, '$1 $2/$4.$3 '),
      )
      .sort();
    assert.deepEqual(granted, needed);
  });

  describe('installed', () => {
    let operator: RunningOperator | undefined;
    const logs: string[] = [];

    before(async () => {
      await installMonitoringCrds();
      const installed = await helm([
        'install',
        RELEASE,
        CHART,
        '--namespace',
        NAMESPACE,
        '--kubeconfig',
        plane.kubeconfigPath,
        ...[...MONITORING, ...SERVING_ACCOUNTS].flatMap((set) => ['--set', set]),
      ]);
      assert.equal(installed.code, 0, `helm install: ${output(installed)}`);
      assert.match(installed.stdout, /STATUS: deployed/);
      chartCrdsInstalled = established(CRDS.map((crd) => `${crd.plural}.${crd.group}`));
      await chartCrdsInstalled;
    });
    after(async () => {
      await operator?.stop();
      if (process.env.DEBUG_OPERATOR_LOGS) for (const line of logs) process.stderr.write(line);
    });

    const canI = async (user: string, check: Check): Promise<boolean> => {
      const result = await kubectl([
        'auth',
        'can-i',
        check.verb,
        check.resource,
        `--as=${user}`,
        ...(check.subresource ? [`--subresource=${check.subresource}`] : []),
        ...(check.namespace ? ['--namespace', check.namespace] : ['--all-namespaces']),
      ]);
      const answer = result.stdout.trim();
      assert.ok(answer === 'yes' || answer === 'no', `${describeCheck(check)}: ${output(result)}`);
      return answer === 'yes';
    };

    it('installs its CRDs with helm.sh/resource-policy: keep', async () => {
      for (const crd of CRDS) {
        const result = await kubectl([
          'get',
          'crd',
          `${crd.plural}.${crd.group}`,
          '-o',
          'jsonpath={.metadata.annotations.helm\\.sh/resource-policy}',
        ]);
        assert.equal(result.stdout, 'keep', output(result));
      }
    });

    it('lets the operator service account do what it needs, by impersonation', async () => {
      const checks: Check[] = [
        ...neededChecks('shop'),
        ...neededChecks(),
        { verb: 'get', resource: `leases.coordination.k8s.io/${OPERATOR}`, namespace: NAMESPACE },
        {
          verb: 'update',
          resource: `leases.coordination.k8s.io/${OPERATOR}`,
          namespace: NAMESPACE,
        },
        { verb: 'create', resource: 'leases.coordination.k8s.io', namespace: NAMESPACE },
      ];
      const denied = (
        await inBatches(checks, 6, async (check) =>
          (await canI(OPERATOR_USER, check)) ? undefined : describeCheck(check),
        )
      ).filter((check) => check !== undefined);
      assert.deepEqual(denied, []);
    });

    it('denies the operator service account what it does not need, by impersonation', async () => {
      const allowed = (
        await inBatches(NOT_NEEDED, 6, async (check) =>
          (await canI(OPERATOR_USER, check)) ? describeCheck(check) : undefined,
        )
      ).filter((check) => check !== undefined);
      assert.deepEqual(allowed, []);
    });

    it('gives serving pods a service account with no permissions and no token', async () => {
      const core = plane.kubeConfig().makeApiClient(CoreV1Api);
      for (const namespace of USER_NAMESPACES) {
        const account = await core.readNamespacedServiceAccount({
          namespace,
          name: 'compofa-serving',
        });
        assert.equal(account.automountServiceAccountToken, false);
        const user = `system:serviceaccount:${namespace}:compofa-serving`;
        for (const [verb, resource] of [
          ['get', 'configmaps'],
          ['list', 'pods'],
          ['get', 'supernettrainings.compofa.io'],
          ['get', 'secrets'],
        ] as const)
          assert.equal(
            await canI(user, { verb, resource, namespace }),
            false,
            `${verb} ${resource}`,
          );
      }
    });

    it('runs the operator under its service account: Lease, Jobs, RBAC, status and events', async () => {
      const config = await plane.kubeConfigAs(NAMESPACE, OPERATOR);
      operator = await runOperator({
        kubeConfig: config,
        config: DEFAULT_OPERATOR_CONFIG,
        logger: new Logger('info', (line) => logs.push(line)),
        metricsPort: 0,
        metricsHost: '127.0.0.1',
        identity: 'chart-test',
        leaderElection: { namespace: NAMESPACE, name: OPERATOR },
      });
      const running = operator;
      const admin = plane.kubeConfig();
      /** waitFor, whose timeout quotes what the operator logged at warn and error level. */
      const eventually = async <T>(
        probe: () => Promise<T | undefined | false> | T | undefined | false,
        description: string,
      ): Promise<T> => {
        try {
          return await waitFor(probe, { description, hint: plane.logHint });
        } catch (error) {
          const trouble = logs.filter((line) => /"level":"(warn|error)"/.test(line));
          throw new Error(`${(error as Error).message}\noperator warnings:\n${trouble.join('')}`);
        }
      };
      await eventually(() => running.leading, 'the operator to take its Lease');
      const lease = await admin
        .makeApiClient(CoordinationV1Api)
        .readNamespacedLease({ namespace: NAMESPACE, name: OPERATOR });
      assert.equal(lease.spec?.holderIdentity, 'chart-test');

      const namespace = 'shop';
      await plane.createVolumeClaim(namespace, 'artifacts');
      const objects = admin.makeApiClient(CustomObjectsApi);
      const target = {
        group: SUPERNET_TRAINING.group,
        version: SUPERNET_TRAINING.version,
        plural: SUPERNET_TRAINING.plural,
        namespace,
      };
      const training = (await objects.createNamespacedCustomObject({
        ...target,
        body: {
          apiVersion: SUPERNET_TRAINING.apiVersion,
          kind: SUPERNET_TRAINING.kind,
          metadata: { name: 'fashion' },
          spec: { artifacts: { claimName: 'artifacts' } },
        },
      })) as Manifest;
      const uid = training.metadata.uid as string;
      const owned = (object: KubernetesObject) =>
        object.metadata?.ownerReferences?.some((ref) => ref.uid === uid) ?? false;
      const batch = admin.makeApiClient(BatchV1Api);
      const job = await eventually(
        async () => (await batch.listNamespacedJob({ namespace })).items.find(owned),
        'the training Job',
      );
      const account = job.spec?.template.spec?.serviceAccountName;
      assert.ok(account, 'the Job runs under its own service account');
      const core = admin.makeApiClient(CoreV1Api);
      assert.ok(owned(await core.readNamespacedServiceAccount({ namespace, name: account })));
      // The per-run Role (get and patch on one ConfigMap) and its binding were allowed.
      const runRole = await kubectl(['get', 'role,rolebinding', '-n', namespace, '-o', 'name']);
      assert.match(runRole.stdout, new RegExp(`role.rbac.authorization.k8s.io/${account}`));
      assert.match(runRole.stdout, new RegExp(`rolebinding.rbac.authorization.k8s.io/${account}`));
      const status = await eventually(
        async () =>
          ((await objects.getNamespacedCustomObject({ ...target, name: 'fashion' })) as Manifest)
            .status as { phase?: string } | undefined,
        'a status written through /status',
      );
      assert.ok(status.phase);
      await eventually(
        async () =>
          (await admin.makeApiClient(EventsV1Api).listNamespacedEvent({ namespace })).items.some(
            (event) => event.regarding?.uid === uid,
          ),
        'an Event about the training',
      );

      // Suspending deletes the Job: the delete permission.
      await objects.patchNamespacedCustomObject(
        { ...target, name: 'fashion', body: { spec: { suspend: true } } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
      await eventually(
        async () =>
          !(await batch.listNamespacedJob({ namespace })).items.some(
            (j) => owned(j) && !j.metadata?.deletionTimestamp,
          ),
        'the Job to be deleted on suspend',
      );
      const refused = logs.filter((line) => /forbidden|\b403\b/i.test(line));
      assert.deepEqual(refused, [], 'the API server refused the operator nothing');
    });

    it('helm uninstall removes the release but keeps the CRDs and the resources', async () => {
      await operator?.stop();
      await plane
        .kubeConfig()
        .makeApiClient(CustomObjectsApi)
        .createNamespacedCustomObject({
          group: SUPERNET_TRAINING.group,
          version: SUPERNET_TRAINING.version,
          plural: SUPERNET_TRAINING.plural,
          namespace: 'lab',
          body: {
            apiVersion: SUPERNET_TRAINING.apiVersion,
            kind: SUPERNET_TRAINING.kind,
            metadata: { name: 'precious' },
            spec: MINIMAL_SPECS.SupernetTraining,
          },
        });
      const removed = await helm([
        'uninstall',
        RELEASE,
        '--namespace',
        NAMESPACE,
        '--kubeconfig',
        plane.kubeconfigPath,
        '--wait',
      ]);
      assert.equal(removed.code, 0, `helm uninstall: ${output(removed)}`);
      const gone = await kubectl([
        'get',
        `clusterrole/${OPERATOR}`,
        `deployment/${OPERATOR}`,
        '--namespace',
        NAMESPACE,
        '--ignore-not-found',
        '-o',
        'name',
      ]);
      assert.equal(gone.stdout.trim(), '', output(gone));
      const kept = await kubectl(['get', 'supernettrainings.compofa.io', '-A', '-o', 'name']);
      assert.equal(kept.code, 0, output(kept));
      assert.match(kept.stdout, /supernettraining.compofa.io\/precious/);
      for (const crd of CRDS) {
        const result = await kubectl(['get', 'crd', `${crd.plural}.${crd.group}`, '-o', 'name']);
        assert.equal(result.code, 0, output(result));
      }
    });
  });

  it('has alert rules that pass promtool check rules and their unit tests', async () => {
    const promtool = async (sets: readonly string[]) => {
      const rule = only(
        (await render(['prometheusRule.enabled=true', ...sets])).manifests,
        'PrometheusRule',
      );
      const dir = await mkdtemp(join(work, 'rules-'));
      await writeFile(join(dir, 'rules.yaml'), yaml.dump({ groups: rule.spec.groups }));
      await copyFile(join(CHART, 'tests', 'rules.test.yaml'), join(dir, 'rules.test.yaml'));
      const check = await runCommand(tools.promtool, ['check', 'rules', join(dir, 'rules.yaml')]);
      const test = await runCommand(tools.promtool, [
        'test',
        'rules',
        join(dir, 'rules.test.yaml'),
      ]);
      return { check, test };
    };
    const { check, test } = await promtool([]);
    assert.equal(check.code, 0, output(check));
    assert.match(check.stdout, /SUCCESS: 8 rules found/);
    assert.equal(test.code, 0, output(test));
    // The unit tests notice when the rules change: a longer stall threshold, a shorter `for`.
    for (const [set, alert] of [
      ['prometheusRule.stallThreshold=1h', 'CompofaSupernetTrainingStalled'],
      ['prometheusRule.driftFor=1m', 'CompofaLatencyDrift'],
      ['prometheusRule.reconcileErrorsFor=10m', 'CompofaOperatorReconcileErrors'],
    ] as const) {
      const changed = await promtool([set]);
      assert.equal(changed.check.code, 0, output(changed.check));
      assert.notEqual(changed.test.code, 0, `${set} went unnoticed: ${output(changed.test)}`);
      assert.match(changed.test.stdout + changed.test.stderr, new RegExp(alert));
    }
  });

  describe('the Argo CD health check', () => {
    const script = join(CHART, 'argocd', 'health.lua');
    const health = async (objects: readonly unknown[], lua = script) => {
      const input = join(work, 'health-input.json');
      await writeFile(input, JSON.stringify(objects));
      const result = await runCommand('bash', [
        '-c',
        `"$0" "$1" < "$2"`,
        tools.argocdHealth,
        lua,
        input,
      ]);
      return {
        result,
        health:
          result.code === 0
            ? (JSON.parse(result.stdout) as { status: string; message: string }[])
            : [],
      };
    };
    const condition = (
      status: 'True' | 'False',
      reason: string,
      message: string,
      generation = 1,
    ) => ({
      type: 'Ready',
      status,
      reason,
      message,
      lastTransitionTime: '2026-11-28T10:00:00Z',
      observedGeneration: generation,
    });

    it('maps phases and conditions, as the API server stores them, to Argo CD health', async () => {
      await installChartCrds();
      const objects = plane.kubeConfig().makeApiClient(CustomObjectsApi);
      type Case = readonly [
        ResourceKind,
        string,
        Record<string, unknown> | undefined,
        string,
        RegExp,
      ];
      const cases: Case[] = [
        ['SupernetTraining', 'fresh', undefined, 'Progressing', /Waiting for the operator/],
        [
          'SupernetTraining',
          'pending',
          {
            phase: 'Pending',
            conditions: [condition('False', 'Unschedulable', '0/3 nodes have nvidia.com/gpu')],
          },
          'Progressing',
          /^Pending: 0\/3 nodes/,
        ],
        [
          'SupernetTraining',
          'training',
          {
            phase: 'Training',
            conditions: [condition('False', 'Training', 'compound-1 epoch 3/20')],
          },
          'Progressing',
          /compound-1/,
        ],
        [
          'SupernetTraining',
          'evaluating',
          {
            phase: 'Evaluating',
            conditions: [condition('False', 'Evaluating', 'measuring 243 subnets')],
          },
          'Progressing',
          /measuring/,
        ],
        [
          'SupernetTraining',
          'done',
          {
            phase: 'Succeeded',
            conditions: [condition('True', 'Succeeded', 'accuracy table published')],
          },
          'Healthy',
          /accuracy table published/,
        ],
        [
          'SupernetTraining',
          'broken',
          { phase: 'Failed', conditions: [condition('False', 'JobFailed', 'OOMKilled')] },
          'Degraded',
          /^Failed: OOMKilled/,
        ],
        [
          'SupernetTraining',
          'paused',
          { phase: 'Suspended', conditions: [condition('False', 'Suspended', 'suspended')] },
          'Suspended',
          /Suspended/,
        ],
        [
          'SupernetTraining',
          'stale',
          {
            phase: 'Succeeded',
            observedGeneration: 0,
            conditions: [condition('True', 'Succeeded', 'old table', 0)],
          },
          'Progressing',
          /generation 1/,
        ],
        [
          'SupernetTraining',
          'stale-ready',
          { phase: 'Succeeded', conditions: [condition('True', 'Succeeded', 'old table', 0)] },
          'Progressing',
          /generation 1/,
        ],
        [
          'SupernetTraining',
          'no-conditions',
          { phase: 'Training' },
          'Progressing',
          /^Training: no Ready condition yet/,
        ],
        ['DeploymentTarget', 'fresh', undefined, 'Progressing', /Waiting for the operator/],
        [
          'DeploymentTarget',
          'deploying',
          { phase: 'Deploying', conditions: [condition('False', 'RollingOut', 'rolling out')] },
          'Progressing',
          /rolling out/,
        ],
        [
          'DeploymentTarget',
          'serving',
          { phase: 'Ready', conditions: [condition('True', 'Serving', 'serving r28-d3e4')] },
          'Healthy',
          /serving r28-d3e4/,
        ],
        [
          'DeploymentTarget',
          'rolled-back',
          {
            phase: 'Degraded',
            conditions: [condition('False', 'RolledBack', 'new pods not ready')],
          },
          'Degraded',
          /new pods not ready/,
        ],
        [
          'DeploymentTarget',
          'drifting',
          {
            phase: 'Degraded',
            conditions: [condition('False', 'LatencyDrift', 'p95 above budget')],
          },
          'Degraded',
          /p95/,
        ],
        [
          'DeploymentTarget',
          'too-tight',
          {
            phase: 'Failed',
            conditions: [condition('False', 'NothingFitsBudget', 'closest r28 at 9 ms')],
          },
          'Degraded',
          /closest/,
        ],
        ['LatencyProfile', 'fresh', undefined, 'Progressing', /Waiting for the operator/],
        [
          'LatencyProfile',
          'profiling',
          { phase: 'Profiling', conditions: [condition('False', 'Profiling', '40/243')] },
          'Progressing',
          /40\/243/,
        ],
        [
          'LatencyProfile',
          'ready',
          { phase: 'Ready', conditions: [condition('True', 'TableReady', 'table ready')] },
          'Healthy',
          /table ready/,
        ],
        [
          'LatencyProfile',
          'invalid',
          { phase: 'Failed', conditions: [condition('False', 'InvalidTable', 'bad table')] },
          'Degraded',
          /bad table/,
        ],
      ];
      const stored: unknown[] = [];
      for (const [kind, name, status] of cases) {
        const info = crdInfo(kind);
        const where = {
          group: info.group,
          version: info.version,
          plural: info.plural,
          namespace: 'lab',
        };
        const created = (await objects.createNamespacedCustomObject({
          ...where,
          body: {
            apiVersion: info.apiVersion,
            kind,
            metadata: { name },
            spec: MINIMAL_SPECS[kind],
          },
        })) as Manifest;
        stored.push(
          status === undefined
            ? created
            : await objects.replaceNamespacedCustomObjectStatus({
                ...where,
                name,
                body: { ...created, status: { observedGeneration: 1, ...status } },
              }),
        );
      }
      const { result, health: results } = await health(stored);
      assert.equal(result.code, 0, output(result));
      cases.forEach(([kind, name, , expected, message], i) => {
        const got = results[i];
        assert.ok(got, `a health for ${kind} ${name}`);
        assert.equal(got.status, expected, `${kind} ${name}: ${JSON.stringify(got)}`);
        assert.match(got.message, message, `${kind} ${name}`);
      });
    });

    it('falls back on the Ready condition for a phase it does not know', async () => {
      const object = (phase: string, ready: 'True' | 'False') => ({
        apiVersion: 'compofa.io/v1alpha1',
        kind: 'DeploymentTarget',
        metadata: { name: 'x', generation: 3 },
        status: {
          observedGeneration: 3,
          phase,
          conditions: [condition(ready, 'Whatever', 'a new phase', 3)],
        },
      });
      const { result, health: results } = await health([
        object('Canarying', 'True'),
        object('Canarying', 'False'),
      ]);
      assert.equal(result.code, 0, output(result));
      assert.deepEqual(
        results.map((r) => r.status),
        ['Healthy', 'Progressing'],
      );
    });

    it("runs in Argo CD's sandbox, without the string library", async () => {
      const lua = join(work, 'uses-string.lua');
      await writeFile(lua, 'return { status = string.upper("healthy") }\n');
      const { result } = await health([{ kind: 'SupernetTraining' }], lua);
      assert.notEqual(result.code, 0, output(result));
      assert.match(result.stderr, /string/);
    });
  });

  it('documents every value in values.yaml and in the README table', async () => {
    const valuesText = await readFile(join(CHART, 'values.yaml'), 'utf8');
    const values = yaml.load(valuesText) as Record<string, unknown>;
    // Keys with a `# --` comment right above them are documented (as a whole, for objects).
    const documented: string[] = [];
    const stack: string[] = [];
    let comment = false;
    for (const line of valuesText.split('\n')) {
      if (/^\s*# -- /.test(line)) comment = true;
      const key = /^( *)([A-Za-z][A-Za-z0-9]*):/.exec(line);
      if (key) {
        const depth = (key[1] ?? '').length / 2;
        stack.length = depth;
        stack.push(key[2] ?? '');
        if (comment) documented.push(stack.join('.'));
        comment = false;
      } else if (!/^\s*#/.test(line)) {
        comment = false;
      }
    }
    const leaves = (value: unknown, path: string): string[] =>
      value !== null &&
      typeof value === 'object' &&
      !Array.isArray(value) &&
      Object.keys(value).length > 0
        ? Object.entries(value).flatMap(([key, child]) =>
            leaves(child, path ? `${path}.${key}` : key),
          )
        : [path];
    const undocumented = leaves(values, '').filter(
      (leaf) => !documented.some((path) => leaf === path || leaf.startsWith(`${path}.`)),
    );
    assert.deepEqual(undocumented, [], 'values without a `# --` comment in values.yaml');

    const readme = (await readFile(join(CHART, 'README.md'), 'utf8')).split(/^## Values$/m)[1];
    assert.ok(readme, 'README.md has a "## Values" section');
    const rows = [...readme.matchAll(/^\| `([A-Za-z0-9.]+)` +\| ([^|]*)\|/gm)].map((m) => ({
      path: m[1] ?? '',
      defaults: (m[2] ?? '').trim(),
    }));
    assert.deepEqual(rows.map((row) => row.path).sort(), [...documented].sort(), 'README rows');
    for (const row of rows) {
      const value = row.path
        .split('.')
        .reduce<unknown>((v, key) => (v as Record<string, unknown>)[key], values);
      const shown = JSON.stringify(value);
      if (value === null || typeof value !== 'object' || Object.keys(value).length === 0)
        assert.equal(row.defaults, `\`${shown}\``, `the default of ${row.path} in README.md`);
    }
  });
});
