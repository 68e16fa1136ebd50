import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { podMonitorScrapeConfigs, type PodMonitor } from './pod-monitor.js';

const MONITOR: PodMonitor = {
  metadata: { name: 'compofa-serving', namespace: 'compofa-system' },
  spec: {
    selector: {
      matchLabels: {
        'app.kubernetes.io/component': 'serving',
        'app.kubernetes.io/managed-by': 'compofa-operator',
      },
    },
    namespaceSelector: { any: true },
    podMetricsEndpoints: [
      {
        port: 'http',
        path: '/metrics',
        interval: '2s',
        relabelings: [{ sourceLabels: ['__meta_kubernetes_pod_node_name'], targetLabel: 'node' }],
      },
    ],
  },
};

type Relabeling = Record<string, unknown>;

describe('podMonitorScrapeConfigs', () => {
  it('discovers pods through the kubeconfig and keeps those the selector matches', () => {
    const [config] = podMonitorScrapeConfigs(MONITOR, '/tmp/kubeconfig') as Array<
      Record<string, unknown> & { relabel_configs: Relabeling[] }
    >;
    assert.ok(config);
    assert.equal(config.job_name, 'podMonitor/compofa-system/compofa-serving/0');
    assert.deepEqual(config.kubernetes_sd_configs, [
      { role: 'pod', kubeconfig_file: '/tmp/kubeconfig' },
    ]);
    assert.equal(config.scrape_interval, '2s');
    assert.equal(config.metrics_path, '/metrics');
    assert.deepEqual(config.relabel_configs[1], {
      action: 'keep',
      source_labels: [
        '__meta_kubernetes_pod_label_app_kubernetes_io_component',
        '__meta_kubernetes_pod_labelpresent_app_kubernetes_io_component',
      ],
      regex: '(serving);true',
    });
    assert.ok(
      config.relabel_configs.some(
        (r) =>
          r.regex === 'http' &&
          r.action === 'keep' &&
          String(r.source_labels).includes('port_name'),
      ),
    );
    for (const label of ['namespace', 'pod', 'container', 'job', 'endpoint'])
      assert.ok(
        config.relabel_configs.some((r) => r.target_label === label),
        `labels ${label}`,
      );
    // The endpoint's own relabelings come last, in Prometheus' spelling.
    assert.deepEqual(config.relabel_configs.at(-1), {
      source_labels: ['__meta_kubernetes_pod_node_name'],
      target_label: 'node',
    });
  });

  it("limits discovery to the monitor's namespace unless it selects any", () => {
    const own = podMonitorScrapeConfigs(
      { ...MONITOR, spec: { ...MONITOR.spec, namespaceSelector: {} } },
      'k',
    ) as Array<{ kubernetes_sd_configs: unknown[] }>;
    assert.deepEqual(own[0]?.kubernetes_sd_configs[0], {
      role: 'pod',
      kubeconfig_file: 'k',
      namespaces: { names: ['compofa-system'] },
    });
  });

  it('refuses what it does not translate, naming the field', () => {
    assert.throws(
      () =>
        podMonitorScrapeConfigs(
          { ...MONITOR, spec: { ...MONITOR.spec, selector: { matchExpressions: [{}] } } },
          'k',
        ),
      /PodMonitor compofa-system\/compofa-serving: spec.selector.matchExpressions/,
    );
    assert.throws(
      () =>
        podMonitorScrapeConfigs(
          { ...MONITOR, spec: { ...MONITOR.spec, podMetricsEndpoints: [{ honorLabels: true }] } },
          'k',
        ),
      /podMetricsEndpoints\[0\] has fields that are not translated: honorLabels/,
    );
  });
});
