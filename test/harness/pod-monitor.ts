/**
 * What the Prometheus Operator makes of a PodMonitor, for a Prometheus that runs without it: one
 * `kubernetes_sd_configs` scrape job per pod metrics endpoint, keeping the pods the selector
 * matches and labelling their series `namespace`, `pod`, `container`, `endpoint` and `job` as the
 * operator does. Covers the fields the chart's PodMonitor uses; anything else is refused by name,
 * rather than scraped differently than a cluster with the Prometheus Operator would.
 */

/** The part of a monitoring.coreos.com/v1 PodMonitor that is translated. */
export interface PodMonitor {
  readonly metadata: { readonly name: string; readonly namespace: string };
  readonly spec: {
    readonly selector?: {
      readonly matchLabels?: Readonly<Record<string, string>>;
      readonly matchExpressions?: readonly unknown[];
    };
    readonly namespaceSelector?: {
      readonly any?: boolean;
      readonly matchNames?: readonly string[];
    };
    readonly podMetricsEndpoints?: readonly PodMetricsEndpoint[];
  };
}

interface PodMetricsEndpoint {
  readonly port?: string;
  readonly path?: string;
  readonly interval?: string;
  readonly scrapeTimeout?: string;
  readonly relabelings?: readonly unknown[];
  readonly metricRelabelings?: readonly unknown[];
  readonly [other: string]: unknown;
}

/** The endpoint fields this translation understands. */
const KNOWN_ENDPOINT_FIELDS = new Set([
  'port',
  'path',
  'interval',
  'scrapeTimeout',
  'relabelings',
  'metricRelabelings',
]);

/** A Prometheus label name for a Kubernetes label key, as service discovery writes it. */
function sanitize(key: string): string {
  return key.replace(/[^a-zA-Z0-9_]/g, '_');
}

/** A RegExp source that matches `value` literally (Prometheus' RE2 syntax). */
function literal(value: string): string {
  return value.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * The scrape configs of `monitor`, discovering pods through the API server of `kubeconfigFile`.
 * Throws, naming the field, for what it does not translate (selector matchExpressions, endpoint
 * fields other than port, path, interval, scrapeTimeout and the relabelings).
 */
export function podMonitorScrapeConfigs(monitor: PodMonitor, kubeconfigFile: string): object[] {
  const { name, namespace } = monitor.metadata;
  const where = `PodMonitor ${namespace}/${name}`;
  if ((monitor.spec.selector?.matchExpressions ?? []).length > 0)
    throw new Error(`${where}: spec.selector.matchExpressions is not translated; use matchLabels`);
  const namespaces = monitor.spec.namespaceSelector?.any
    ? undefined
    : (monitor.spec.namespaceSelector?.matchNames ?? [namespace]);
  const selectorRelabelings = Object.entries(monitor.spec.selector?.matchLabels ?? {}).map(
    ([key, value]) => ({
      action: 'keep',
      source_labels: [
        `__meta_kubernetes_pod_label_${sanitize(key)}`,
        `__meta_kubernetes_pod_labelpresent_${sanitize(key)}`,
      ],
      regex: `(${literal(value)});true`,
    }),
  );
  return (monitor.spec.podMetricsEndpoints ?? []).map((endpoint, index) => {
    const unknown = Object.keys(endpoint).filter((field) => !KNOWN_ENDPOINT_FIELDS.has(field));
    if (unknown.length > 0)
      throw new Error(
        `${where}: spec.podMetricsEndpoints[${index}] has fields that are not translated: ${unknown.join(', ')}`,
      );
    return {
      job_name: `podMonitor/${namespace}/${name}/${index}`,
      kubernetes_sd_configs: [
        {
          role: 'pod',
          kubeconfig_file: kubeconfigFile,
          ...(namespaces === undefined ? {} : { namespaces: { names: namespaces } }),
        },
      ],
      ...(endpoint.interval ? { scrape_interval: endpoint.interval } : {}),
      ...(endpoint.scrapeTimeout ? { scrape_timeout: endpoint.scrapeTimeout } : {}),
      metrics_path: endpoint.path ?? '/metrics',
      relabel_configs: [
        // Finished pods keep their IP in the API for a while: nothing to scrape there.
        {
          action: 'drop',
          source_labels: ['__meta_kubernetes_pod_phase'],
          regex: '(Failed|Succeeded)',
        },
        ...selectorRelabelings,
        ...(endpoint.port === undefined
          ? []
          : [
              {
                action: 'keep',
                source_labels: ['__meta_kubernetes_pod_container_port_name'],
                regex: literal(endpoint.port),
              },
            ]),
        { source_labels: ['__meta_kubernetes_namespace'], target_label: 'namespace' },
        { source_labels: ['__meta_kubernetes_pod_container_name'], target_label: 'container' },
        { source_labels: ['__meta_kubernetes_pod_name'], target_label: 'pod' },
        { target_label: 'job', replacement: `${namespace}/${name}` },
        ...(endpoint.port === undefined
          ? []
          : [{ target_label: 'endpoint', replacement: endpoint.port }]),
        ...((endpoint.relabelings ?? []) as object[]).map(snakeCaseKeys),
      ],
      ...(endpoint.metricRelabelings && endpoint.metricRelabelings.length > 0
        ? { metric_relabel_configs: (endpoint.metricRelabelings as object[]).map(snakeCaseKeys) }
        : {}),
    };
  });
}

/** A relabeling as the CRD writes it (sourceLabels) in Prometheus' spelling (source_labels). */
function snakeCaseKeys(relabeling: object): object {
  return Object.fromEntries(
    Object.entries(relabeling).map(([key, value]) => [
      key.replace(/[A-Z]/g, (char) => `_${char.toLowerCase()}`),
      value,
    ]),
  );
}
