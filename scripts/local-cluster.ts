/**
 * The embedded local setup: starts a real Kubernetes control plane (etcd, kube-apiserver,
 * kube-controller-manager, kube-scheduler) on loopback with labeled device nodes, writes a
 * kubeconfig, and runs until Ctrl-C. There are no kubelets: pods are scheduled onto the nodes
 * but not run.
 */
import { ControlPlane, type NodeSpec } from '../test/harness/control-plane.js';

/** Device classes in Node Feature Discovery's label style, one node each. */
const DEVICE_NODES: readonly NodeSpec[] = [
  {
    name: 'gpu-a100-0',
    labels: { 'nvidia.com/gpu.present': 'true', 'nvidia.com/gpu.product': 'NVIDIA-A100-SXM4-40GB' },
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
const seconds = ((Date.now() - started) / 1000).toFixed(1);
process.stdout.write(
  [
    `Kubernetes v1.36.3 control plane up in ${seconds} s at ${plane.server}`,
    `  nodes: ${DEVICE_NODES.map((node) => node.name).join(', ')}`,
    `  logs:  ${plane.logDir}`,
    '',
    `  export KUBECONFIG=${plane.kubeconfigPath}`,
    `  ${plane.kubectlPath ?? 'kubectl'} get nodes --show-labels`,
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
    process.stdout.write('\nstopping the control plane...\n');
    plane.stop().then(
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
