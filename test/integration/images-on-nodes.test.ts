// The Dockerfile's images, built here by BuildKit, running on a real node: compofa-serve from the
// runtime image answers Open Inference Protocol requests through a Service, as the non-root user
// with a read-only root filesystem (as the operator runs it), and the operator image starts.
import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { CoreV1Api, type V1Container, type V1Pod, type V1Volume } from '@kubernetes/client-node';

import { writeServedModel } from '../fixtures/served-model.js';
import { buildImages, type BuiltImage, type ImageTarget } from '../harness/images.js';
import { LocalCluster } from '../harness/local-cluster.js';
import { httpGet } from '../harness/network.js';
import { waitFor } from '../harness/wait.js';
import { loadTensorFlow } from '../../trainer/backend.js';

/** The pod security the operator gives its pods (operator/controllers/pods.ts). */
const RESTRICTED: V1Container['securityContext'] = {
  runAsNonRoot: true,
  readOnlyRootFilesystem: true,
  allowPrivilegeEscalation: false,
  capabilities: { drop: ['ALL'] },
};

describe("the Dockerfile's images on a real node", () => {
  let images: Record<ImageTarget, BuiltImage>;
  let cluster: LocalCluster;
  let core: CoreV1Api;
  let modelRoot: string;

  before(async () => {
    images = await buildImages(['runtime', 'operator']);
    modelRoot = await mkdtemp('/tmp/compofa-images-test-');
    const { tf } = await loadTensorFlow({ purpose: 'inference' });
    await writeServedModel(tf, join(modelRoot, 'model'));
    // The pod's user (10001) reads it through a hostPath volume.
    await chmod(modelRoot, 0o755);
    cluster = await LocalCluster.start({
      deviceClasses: [{ name: 'cpu-node', cpus: 1, memoryMiB: 2048 }],
      images: [images.runtime.archive, images.operator.archive],
    });
    core = cluster.plane.kubeConfig().makeApiClient(CoreV1Api);
  });
  after(async () => {
    await cluster.stop();
    await rm(modelRoot, { recursive: true, force: true });
  });

  const pod = (name: string, container: V1Container, volumes: V1Volume[] = []): V1Pod => ({
    metadata: { name, labels: { app: name } },
    spec: {
      restartPolicy: 'Never',
      securityContext: { runAsUser: 10001, runAsGroup: 10001, fsGroup: 10001 },
      containers: [
        Object.assign(container, { imagePullPolicy: 'Never', securityContext: RESTRICTED }),
      ],
      volumes,
    },
  });

  it('names each image after its build context and keeps the runtime image within 1 GiB compressed', () => {
    for (const image of Object.values(images)) {
      assert.match(
        image.reference,
        /^localhost\/compofa\/compofa-(runtime|operator):local-[0-9a-f]{16}$/,
      );
      assert.ok(image.archiveBytes > 10 << 20, `${image.reference}: ${image.archiveBytes} bytes`);
    }
    assert.ok(images.runtime.archiveBytes < 2 ** 30);
    assert.ok(images.operator.archiveBytes < images.runtime.archiveBytes);
  });

  it('serves inference from the runtime image through a Service', async () => {
    await core.createNamespacedPod({
      namespace: 'default',
      body: pod(
        'serve',
        {
          name: 'serve',
          image: images.runtime.reference,
          command: ['compofa-serve'],
          args: ['--model-dir', '/models/model', '--port', '8080'],
          ports: [{ containerPort: 8080 }],
          readinessProbe: { httpGet: { path: '/v2/health/ready', port: 8080 }, periodSeconds: 1 },
          volumeMounts: [
            { name: 'models', mountPath: '/models', readOnly: true },
            { name: 'tmp', mountPath: '/tmp' },
          ],
        },
        [
          { name: 'models', hostPath: { path: modelRoot, type: 'Directory' } },
          { name: 'tmp', emptyDir: {} },
        ],
      ),
    });
    const service = await core.createNamespacedService({
      namespace: 'default',
      body: {
        metadata: { name: 'serve' },
        spec: { selector: { app: 'serve' }, ports: [{ port: 80, targetPort: 8080 }] },
      },
    });
    await waitFor(
      async () => {
        const status = (await core.readNamespacedPod({ name: 'serve', namespace: 'default' }))
          .status;
        if (status?.phase === 'Failed')
          throw new Error(`pod serve failed: ${JSON.stringify(status)}`);
        return status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
      },
      { description: 'pod serve to be Ready', timeoutMs: 120_000, hint: cluster.dir },
    );
    const base = `http://${service.spec?.clusterIP ?? ''}`;
    const metadata = await waitFor(
      async () => {
        const response = await httpGet(`${base}/v2/models/compofa`);
        return response.status === 200 && (JSON.parse(response.body) as { platform?: string });
      },
      { description: `${base}/v2/models/compofa`, timeoutMs: 30_000 },
    );
    assert.equal(metadata.platform, 'onnxruntime_onnx');
    const response = await fetch(`${base}/v2/models/compofa/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        inputs: [
          { name: 'image', datatype: 'FP32', shape: [1, 16, 16, 1], data: Array(256).fill(0.5) },
        ],
      }),
    });
    assert.equal(response.status, 200, await response.clone().text());
    const body = (await response.json()) as { outputs: { shape: number[]; data: number[] }[] };
    const [output] = body.outputs;
    assert.ok(output, 'one output');
    assert.deepEqual(output.shape, [1, 10]);
    // The extracted model ends with a softmax.
    const total = output.data.reduce((sum, p) => sum + p, 0);
    assert.ok(Math.abs(total - 1) < 1e-4, `probabilities sum to ${total}`);
    const { stdout: user } = await cluster.plane.kubectl([
      'exec',
      'serve',
      '--',
      'node',
      '-e',
      'console.log(process.getuid())',
    ]);
    assert.equal(user.trim(), '10001');
  });

  it('starts the operator image as a non-root process', async () => {
    await core.createNamespacedPod({
      namespace: 'default',
      body: pod('operator-help', {
        name: 'operator',
        image: images.operator.reference,
        args: ['--help'],
      }),
    });
    const phase = await waitFor(
      async () => {
        const status = (
          await core.readNamespacedPod({ name: 'operator-help', namespace: 'default' })
        ).status;
        return (status?.phase === 'Succeeded' || status?.phase === 'Failed') && status.phase;
      },
      { description: 'pod operator-help to finish', timeoutMs: 60_000 },
    );
    const { stdout } = await cluster.plane.kubectl(['logs', 'operator-help']);
    assert.equal(phase, 'Succeeded', stdout);
    assert.match(stdout, /COMPOFA_LEADER_ELECT/);
  });
});
