import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import { CoreV1Api, type V1Pod } from '@kubernetes/client-node';

import { BUSYBOX_IMAGE, busyboxImage } from '../fixtures/busybox-image.js';
import { CGROUP_ROOT, cpuQuota } from '../harness/host-changes.js';
import { assertHostAsBefore, hostSnapshot, type HostSnapshot } from '../harness/host-snapshot.js';
import { LocalCluster, resolveNodeTools } from '../harness/local-cluster.js';
import { httpGet } from '../harness/network.js';
import { waitFor } from '../harness/wait.js';

const DEVICE_CLASSES = [
  {
    name: 'xeon',
    cpus: 1,
    memoryMiB: 1024,
    labels: { 'feature.node.kubernetes.io/cpu-model.vendor_id': 'Intel' },
  },
  {
    name: 'edge',
    cpus: 0.5,
    memoryMiB: 512,
    labels: { 'feature.node.kubernetes.io/cpu-model.vendor_id': 'ARM' },
  },
] as const;

/** `mib` MiB as Kubernetes writes it: 1024 -> 1Gi, 512 -> 512Mi. */
function binaryQuantity(mib: number): string {
  return mib % 1024 === 0 ? `${mib / 1024}Gi` : `${mib}Mi`;
}

/** A busybox pod; `command` runs in sh. */
function busyboxPod(name: string, vendor: string, command: string): V1Pod {
  return {
    metadata: { name, labels: { app: name } },
    spec: {
      nodeSelector: { 'feature.node.kubernetes.io/cpu-model.vendor_id': vendor },
      containers: [
        {
          name: 'main',
          image: BUSYBOX_IMAGE,
          imagePullPolicy: 'Never',
          command: ['sh', '-c', command],
        },
      ],
    },
  };
}

describe('a local cluster with real nodes', () => {
  let before_: HostSnapshot;
  let cluster: LocalCluster;
  let core: CoreV1Api;
  let busybox: string;

  before(async () => {
    busybox = await busyboxImage((await resolveNodeTools()).dir);
    before_ = await hostSnapshot();
    cluster = await LocalCluster.start({ deviceClasses: DEVICE_CLASSES, images: [busybox] });
    core = cluster.plane.kubeConfig().makeApiClient(CoreV1Api);
  });
  after(() => cluster.stop());

  const running = (name: string): Promise<V1Pod> =>
    waitFor(
      async () => {
        const pod = await core.readNamespacedPod({ name, namespace: 'default' });
        return pod.status?.phase === 'Running' && pod;
      },
      { description: `pod ${name} to run`, timeoutMs: 60_000, hint: cluster.dir },
    );

  it('registers each device class as a Ready node with its labels, and allocatable equal to its quota', async () => {
    for (const spec of DEVICE_CLASSES) {
      const node = await core.readNode({ name: spec.name });
      assert.ok(
        node.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
        `${spec.name} Ready`,
      );
      assert.equal(node.status?.nodeInfo?.containerRuntimeVersion.split(':')[0], 'containerd');
      for (const [key, value] of Object.entries(spec.labels))
        assert.equal(node.metadata?.labels?.[key], value);
      const { allocatable = {} } = node.status ?? {};
      assert.equal(allocatable.cpu, spec.cpus === 1 ? '1' : `${spec.cpus * 1000}m`);
      assert.equal(allocatable.memory, binaryQuantity(spec.memoryMiB));
      const quota = await readFile(
        join(CGROUP_ROOT, 'cpu', cluster.node(spec.name).cgroup, 'cpu.cfs_quota_us'),
        'utf8',
      );
      const { periodUs, quotaUs } = cpuQuota(spec.cpus);
      assert.equal(Number(quota), quotaUs);
      assert.equal(quotaUs / periodUs, spec.cpus);
    }
  });

  it("runs a pod on the node its selector names, inside that node's CPU-quota cgroup", async () => {
    await core.createNamespacedPod({
      namespace: 'default',
      body: busyboxPod('where', 'ARM', 'grep -E "^[0-9]+:cpu:" /proc/self/cgroup; sleep 3600'),
    });
    const pod = await running('where');
    assert.equal(pod.spec?.nodeName, 'edge');
    assert.match(pod.status?.podIP ?? '', /^10\.244\.2\./);
    const logs = await waitFor(
      async () => (await cluster.plane.kubectl(['logs', 'where'])).stdout || undefined,
      { description: 'the logs of pod where', timeoutMs: 20_000 },
    );
    assert.match(logs, /:cpu:\/compofa-edge\/kubepods\//);
  });

  it('routes Services from the host and across nodes, and the kubernetes Service to the API server', async () => {
    await core.createNamespacedPod({
      namespace: 'default',
      body: busyboxPod(
        'web',
        'Intel',
        'echo served-by-xeon > /tmp/index.html; httpd -f -p 8080 -h /tmp',
      ),
    });
    await running('web');
    const service = await core.createNamespacedService({
      namespace: 'default',
      body: {
        metadata: { name: 'web' },
        spec: { selector: { app: 'web' }, ports: [{ port: 80, targetPort: 8080 }] },
      },
    });
    const ip = service.spec?.clusterIP ?? '';
    const body = await waitFor(
      async () => {
        const response = await httpGet(`http://${ip}/index.html`);
        return response.status === 200 && response.body;
      },
      { description: `http://${ip} from the host`, timeoutMs: 30_000 },
    );
    assert.equal(body.trim(), 'served-by-xeon');
    const { stdout } = await cluster.plane.kubectl([
      'exec',
      'where',
      '--',
      'sh',
      '-c',
      `printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 5 ${ip} 80; nc -w 5 $KUBERNETES_SERVICE_HOST $KUBERNETES_SERVICE_PORT </dev/null && echo api-reachable`,
    ]);
    assert.match(stdout, /served-by-xeon/);
    assert.match(stdout, /api-reachable/);
  });

  it("changes a node's CPU quota while it runs", async () => {
    await cluster.setCpuQuota('edge', 0.25);
    const quota = await readFile(
      join(CGROUP_ROOT, 'cpu', cluster.node('edge').cgroup, 'cpu.cfs_quota_us'),
      'utf8',
    );
    // 1 ms of every 4 ms: the kernel accepts no quota under 1 ms.
    assert.equal(Number(quota), 1_000);
    const period = await readFile(
      join(CGROUP_ROOT, 'cpu', cluster.node('edge').cgroup, 'cpu.cfs_period_us'),
      'utf8',
    );
    assert.equal(Number(period), 4_000);
  });

  it('refuses a second cluster while one runs, naming its process', async () => {
    await assert.rejects(
      LocalCluster.start({ deviceClasses: [{ name: 'second', cpus: 1, memoryMiB: 256 }] }),
      new RegExp(
        `a local cluster is already running on this host \\(process ${process.pid}, folder ${cluster.dir}`,
      ),
    );
  });

  it('stops every process and undoes every change to the host', async () => {
    await cluster.stop();
    await assertHostAsBefore(before_);
    // The nodes' data (images, snapshots, keys) is gone; their logs stay.
    assert.equal(existsSync(join(cluster.dir, 'nodes')), false);
    assert.ok(existsSync(join(cluster.dir, 'logs', 'kubelet-edge.log')));
  });
});

describe('a local cluster whose process was killed', () => {
  const fixture = fileURLToPath(new URL('../fixtures/abandoned-local-cluster.ts', import.meta.url));

  it('is cleaned up by the next start, which then leaves the host as it was', async () => {
    const before_ = await hostSnapshot();
    const child = spawn(process.execPath, ['--import', 'tsx', fixture], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    // Its one line on stdout says the cluster is up.
    await once(child.stdout, 'data');
    child.kill('SIGKILL');
    await once(child, 'exit');
    // What it left: its pod's processes, its address, its cgroup.
    const left = await hostSnapshot();
    assert.ok(left.loopbackAddresses.includes('10.213.0.1/32'), 'the node address is left');
    assert.ok(
      left.processes.some((entry) => entry.endsWith(' containerd-shim')),
      `a containerd shim is left: ${left.processes.join(', ')}`,
    );

    const lines: string[] = [];
    const next = await LocalCluster.start({
      deviceClasses: [{ name: 'next', cpus: 0.5, memoryMiB: 256 }],
      progress: (text) => lines.push(text),
    });
    try {
      assert.ok(
        lines.some((text) =>
          text.includes(`cleaning up after a local cluster whose process ${child.pid} ended`),
        ),
        lines.join('\n'),
      );
    } finally {
      await next.stop();
    }
    assert.deepEqual(await hostSnapshot(), before_);
  });
});
