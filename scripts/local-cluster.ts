/**
 * The embedded local setup: starts a real Kubernetes control plane (etcd, kube-apiserver,
 * kube-controller-manager, kube-scheduler) on loopback with labeled device nodes, installs the
 * compofa.io CRDs, runs the operator against it, writes a kubeconfig, and runs until Ctrl-C.
 * There are no kubelets: the operator's pods are scheduled onto the nodes but not run.
 */
import { DEFAULT_OPERATOR_CONFIG } from '../operator/config.js';
import { runOperator } from '../operator/run.js';
import { Logger } from '../serving/logger.js';
import { ControlPlane, type NodeSpec } from '../test/harness/control-plane.js';
import { installCrds } from '../test/harness/crds.js';

/** Device classes in Node Feature Discovery's label style, one node each. */
const DEVICE_NODES: readonly NodeSpec[] = [
  {
    name: 'gpu-a100-0',
    labels: {
      'feature.node.kubernetes.io/pci-10de.present': 'true',
      'nvidia.com/gpu.present': 'true',
      'nvidia.com/gpu.product': 'NVIDIA-A100-SXM4-40GB',
    },
    capacity: { cpu: '32', memory: '256Gi', 'nvidia.com/gpu': '4' },
  },
  {
    name: 'cpu-xeon-0',
    labels: {
      'feature.node.kubernetes.io/cpu-model.vendor_id': 'Intel',
      'feature.node.kubernetes.io/cpu-cpuid.AVX512F': 'true',
    },
    capacity: { cpu: '16', memory: '64Gi' },
  },
  {
    name: 'edge-arm-0',
    labels: {
      'kubernetes.io/arch': 'arm64',
      'feature.node.kubernetes.io/cpu-model.vendor_id': 'ARM',
    },
    capacity: { cpu: '4', memory: '8Gi' },
  },
];

const started = Date.now();
const plane = await ControlPlane.start();
for (const node of DEVICE_NODES) await plane.createNode(node);
// The examples' namespace, with its artifacts claim already bound (no storage provisioner here).
const NAMESPACE = 'compofa-fleet';
await plane.createNamespace(NAMESPACE);
await installCrds(plane, NAMESPACE);
await plane.createVolumeClaim(NAMESPACE, 'compofa-artifacts');
const operator = await runOperator({
  kubeConfig: plane.kubeConfig(),
  config: DEFAULT_OPERATOR_CONFIG,
  logger: new Logger('info'),
  metricsPort: 0,
  metricsHost: '127.0.0.1',
  identity: 'demo',
});
const seconds = ((Date.now() - started) / 1000).toFixed(1);
process.stdout.write(
  [
    `Kubernetes v1.36.3 control plane up in ${seconds} s at ${plane.server}`,
    `  nodes: ${DEVICE_NODES.map((node) => node.name).join(', ')}`,
    `  operator: metrics, healthz and readyz on http://127.0.0.1:${operator.metricsPort}; its logs go to stderr`,
    `  namespace ${NAMESPACE} with a bound PersistentVolumeClaim compofa-artifacts`,
    `  logs:  ${plane.logDir}`,
    '',
    `  export KUBECONFIG=${plane.kubeconfigPath}`,
    `  ${plane.kubectlPath ?? 'kubectl'} get nodes --show-labels`,
    `  ${plane.kubectlPath ?? 'kubectl'} apply -f examples/fleet/supernet-training.yaml`,
    `  ${plane.kubectlPath ?? 'kubectl'} get compofa,jobs,pods -n ${NAMESPACE}`,
    '',
    'Ctrl-C stops it.',
    '',
  ].join('\n'),
);

let stopping = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    process.stdout.write('\nstopping the operator and the control plane...\n');
    operator
      .stop()
      .then(() => plane.stop())
      .then(
        () => process.exit(0),
        (error: unknown) => {
          console.error(error);
          process.exit(1);
        },
      );
  });
}
// Keep the event loop alive until a signal arrives.
setInterval(() => undefined, 1 << 30);
