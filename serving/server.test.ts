import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, it } from 'node:test';

import type * as tfjs from '@tensorflow/tfjs';

import { Random } from '../compofa/random.js';
import { writeServedModel } from '../test/fixtures/served-model.js';
import { loadTensorFlow, type TensorFlow } from '../trainer/backend.js';
import { parseConfig } from './config.js';
import { Logger } from './logger.js';
import { startServing, type RunningServer } from './serve.js';

/** The tiny model's input: 16x16 grey images, 10 classes. */
const R = 16;
const ROW = R * R;
const CLASSES = 10;

/** Deterministic images in [0, 1], one per seed. */
function image(seed: number): number[] {
  const random = new Random(seed);
  return Array.from({ length: ROW }, () => random.next());
}

function pick(random: Random, options: readonly string[]): string {
  return options[random.int(options.length)] ?? '';
}

/** `values` as an R x R x 1 nested array. */
function nested(values: readonly number[]): number[][][] {
  return Array.from({ length: R }, (_, y) =>
    Array.from({ length: R }, (_, x) => [values[y * R + x] ?? NaN]),
  );
}

async function post(
  base: string,
  path: string,
  body: unknown,
): Promise<{ status: number; json: any; timing?: string | null }> {
  const response = await fetch(`${base}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await response.text();
  return {
    status: response.status,
    json: text === '' ? undefined : JSON.parse(text),
    timing: response.headers.get('server-timing'),
  };
}

function infer(images: readonly number[][], datatype = 'FP32') {
  return {
    id: 'req-1',
    inputs: [{ name: 'image', datatype, shape: [images.length, R, R, 1], data: images.flat() }],
  };
}

function assertClose(
  actual: readonly number[],
  expected: ArrayLike<number>,
  tolerance = 1e-6,
): void {
  assert.equal(actual.length, expected.length);
  for (let i = 0; i < actual.length; i++) {
    assert.ok(
      Math.abs((actual[i] ?? NaN) - (expected[i] ?? NaN)) <= tolerance,
      `element ${i}: ${actual[i]} vs ${expected[i]}`,
    );
  }
}

/** A metric's value in a text exposition, for the line that matches `selector` exactly. */
function metric(text: string, selector: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${selector} `));
  return line === undefined ? NaN : Number(line.slice(selector.length + 1));
}

describe('inference server', () => {
  let tf: TensorFlow;
  let dir: string;
  let subnet: string;
  let reference: tfjs.LayersModel;
  const servers: RunningServer[] = [];
  const logs: string[] = [];

  async function start(...args: string[]): Promise<{ base: string; server: RunningServer }> {
    const config = parseConfig(
      ['--model-dir', dir, '--host', '127.0.0.1', '--port', '0', '--target', 'edge', ...args],
      {},
    );
    const server = await startServing(config, tf, new Logger('debug', (line) => logs.push(line)));
    servers.push(server);
    await server.loaded;
    return { base: `http://127.0.0.1:${server.port}`, server };
  }

  /** What the model gives in-process, the result every protocol path must reproduce. */
  function expected(images: readonly number[][]): Float32Array {
    return tf.tidy(
      () =>
        (
          reference.predict(tf.tensor4d(images.flat(), [images.length, R, R, 1])) as tfjs.Tensor
        ).dataSync() as Float32Array,
    );
  }

  let base: string;
  before(async () => {
    ({ tf } = await loadTensorFlow({ purpose: 'inference' }));
    dir = await mkdtemp(join(tmpdir(), 'compofa-serving-'));
    subnet = await writeServedModel(tf, join(dir, 'model'));
    dir = join(dir, 'model');
    reference = await tf.loadLayersModel(pathToFileURL(join(dir, 'model.json')).href);
    ({ base } = await start(
      ...[
        '--latency-budget-ms',
        '5',
        '--latency-tolerance',
        '0.25',
        '--latency-statistic',
        'median',
      ],
      ...['--max-body-bytes', '65536'],
    ));
  });
  after(async () => {
    for (const server of servers) await server.shutdown();
    reference.dispose();
    await rm(join(dir, '..'), { recursive: true, force: true });
  });

  describe('health and metadata', () => {
    it('is live and ready once the model is loaded', async () => {
      for (const path of ['/v2/health/live', '/v2/health/ready', '/v2/models/compofa/ready']) {
        const response = await fetch(`${base}${path}`);
        assert.equal(response.status, 200, path);
        assert.equal(await response.text(), '', path);
      }
    });

    it('describes the server and the model (v2)', async () => {
      const server = (await (await fetch(`${base}/v2`)).json()) as any;
      assert.equal(server.name, 'compofa-serving');
      for (const path of ['/v2/models/compofa', '/v2/models/compofa/versions/1']) {
        const metadata = (await (await fetch(`${base}${path}`)).json()) as any;
        assert.equal(metadata.name, 'compofa');
        assert.deepEqual(metadata.versions, ['1']);
        assert.deepEqual(metadata.inputs, [
          { name: 'image', datatype: 'FP32', shape: [-1, R, R, 1] },
        ]);
        assert.deepEqual(metadata.outputs, [
          { name: 'probabilities', datatype: 'FP32', shape: [-1, CLASSES] },
        ]);
        assert.equal(metadata.parameters.subnet, subnet);
      }
    });

    it('reports the model as available (TF Serving)', async () => {
      const status = (await (await fetch(`${base}/v1/models/compofa`)).json()) as any;
      assert.equal(status.model_version_status[0].state, 'AVAILABLE');
    });

    it('answers 404 for an unknown model, version or route', async () => {
      const cases: [string, RegExp][] = [
        ['/v2/models/other', /model 'other' is not served here; this server serves 'compofa'/],
        ['/v2/models/compofa/versions/7', /model 'compofa' has no version '7'/],
        ['/v2/models/other/ready', /model 'other' is not served here/],
        ['/v3/anything', /no route for GET \/v3\/anything/],
      ];
      for (const [path, message] of cases) {
        const response = await fetch(`${base}${path}`);
        assert.equal(response.status, 404, path);
        assert.match(((await response.json()) as { error: string }).error, message);
      }
    });
  });

  describe('inference', () => {
    const images = [image(1), image(2), image(3)];

    it('answers v2 infer with FP32 data, nested or flat, equal to model.predict', async () => {
      const want = expected(images);
      const flat = await post(base, '/v2/models/compofa/infer', infer(images));
      assert.match(flat.timing ?? '', /^inference;dur=\d+\.\d{3}$/);
      assert.equal(flat.status, 200, JSON.stringify(flat.json));
      assert.equal(flat.json.model_name, 'compofa');
      assert.equal(flat.json.model_version, '1');
      assert.equal(flat.json.id, 'req-1');
      assert.deepEqual(flat.json.outputs[0].shape, [3, CLASSES]);
      assert.equal(flat.json.outputs[0].name, 'probabilities');
      assertClose(flat.json.outputs[0].data, want);

      const body = infer(images);
      (body.inputs[0] as any).data = images.map(nested);
      const deep = await post(base, '/v2/models/compofa/versions/1/infer', body);
      assert.equal(deep.status, 200, JSON.stringify(deep.json));
      assertClose(deep.json.outputs[0].data, want);
    });

    it('scales UINT8 pixels to [0, 1]', async () => {
      const pixels = image(4).map((v) => Math.round(v * 255));
      const response = await post(base, '/v2/models/compofa/infer', infer([pixels], 'UINT8'));
      assert.equal(response.status, 200, JSON.stringify(response.json));
      assertClose(response.json.outputs[0].data, expected([pixels.map((p) => p / 255)]), 1e-5);
    });

    it('answers TF Serving predict with instances and with columnar inputs', async () => {
      const want = expected(images);
      const rows = await post(base, '/v1/models/compofa:predict', {
        instances: images.map(nested),
      });
      assert.equal(rows.status, 200, JSON.stringify(rows.json));
      assertClose(rows.json.predictions.flat(), want);
      const columns = await post(base, '/v1/models/compofa/versions/1:predict', {
        inputs: { image: images.map(nested) },
      });
      assert.equal(columns.status, 200, JSON.stringify(columns.json));
      assertClose(columns.json.outputs.flat(), want);
    });

    it('merges concurrent requests when batching is on, with the results of single calls', async () => {
      const batched = await start(
        '--batching',
        '--batch-max-size',
        '8',
        '--batch-max-delay-ms',
        '50',
      );
      const many = Array.from({ length: 12 }, (_, i) => image(100 + i));
      const responses = await Promise.all(
        many.map((one) => post(batched.base, '/v2/models/compofa/infer', infer([one]))),
      );
      for (const [i, response] of responses.entries()) {
        assert.equal(response.status, 200, JSON.stringify(response.json));
        assertClose(response.json.outputs[0].data, expected([many[i] ?? []]), 1e-6);
      }
      const text = await (await fetch(`${batched.base}/metrics`)).text();
      // 12 single-image requests in fewer model calls than requests: some calls were merged.
      const calls = metric(text, 'compofa_inference_batch_size_count{model="compofa"}');
      const rows = metric(text, 'compofa_inference_batch_size_sum{model="compofa"}');
      assert.equal(rows, 12, 'every image of every request, and no warm-up call, is counted');
      assert.ok(calls < 12, `expected merged calls, got ${calls} calls for 12 requests`);
    });
  });

  describe('input errors', () => {
    const good = (): any => infer([image(5)]);
    const cases: [string, string, unknown, number, RegExp][] = [
      [
        'wrong shape',
        '/v2/models/compofa/infer',
        { inputs: [{ name: 'image', datatype: 'FP32', shape: [1, 8, 8, 1], data: [] }] },
        400,
        /inputs\[0\]\.shape/,
      ],
      [
        'unsupported datatype',
        '/v2/models/compofa/infer',
        { inputs: [{ ...good().inputs[0], datatype: 'INT64' }] },
        400,
        /inputs\[0\]\.datatype: .*FP32.*UINT8/,
      ],
      [
        'wrong element count',
        '/v2/models/compofa/infer',
        { inputs: [{ ...good().inputs[0], data: image(5).slice(1) }] },
        400,
        /inputs\[0\]\.data/,
      ],
      [
        'non-numeric data',
        '/v2/models/compofa/infer',
        { inputs: [{ ...good().inputs[0], data: [...image(5).slice(1), 'x'] }] },
        400,
        /inputs\[0\]\.data\[255\]/,
      ],
      ['unknown model', '/v2/models/nope/infer', good(), 404, /model 'nope' is not served here/],
      ['unknown version', '/v2/models/compofa/versions/2/infer', good(), 404, /has no version '2'/],
      ['malformed JSON', '/v2/models/compofa/infer', '{"inputs": [', 400, /not valid JSON/],
      [
        'a body over the limit',
        '/v2/models/compofa/infer',
        infer(Array.from({ length: 40 }, (_, i) => image(i))),
        413,
        /larger than the limit of 65536 bytes/,
      ],
      [
        'too many images',
        '/v1/models/compofa:predict',
        { instances: Array.from({ length: 65 }, () => [[[0]]]) },
        413,
        /64/,
      ],
      ['an unknown verb', '/v1/models/compofa:classify', good(), 404, /only ':predict'/],
    ];
    for (const [what, path, body, status, message] of cases) {
      it(`answers ${status} for ${what}`, async () => {
        const response = await post(base, path, body);
        assert.equal(response.status, status, JSON.stringify(response.json));
        assert.match(response.json.error, message);
      });
    }

    it('survives a few hundred malformed bodies without leaking tensors', async () => {
      // Warm up the code paths once, so lazily created tensors are not counted as leaks.
      await post(base, '/v2/models/compofa/infer', good());
      const before = tf.memory().numTensors;
      const random = new Random(2024);
      const valid = JSON.stringify(good());
      const bodies: string[] = [];
      const pieces = ['{', '}', '[', ']', '"inputs"', ':', ',', '1e999', 'null', '"data"', '-1'];
      for (let i = 0; i < 300; i++) {
        const kind = i % 4;
        if (kind === 0) bodies.push(valid.slice(0, random.int(valid.length)));
        else if (kind === 1) {
          bodies.push(
            Array.from({ length: 1 + random.int(20) }, () => pick(random, pieces)).join(''),
          );
        } else if (kind === 2) {
          // A valid body with one character replaced.
          const at = random.int(valid.length);
          bodies.push(`${valid.slice(0, at)}${pick(random, pieces)}${valid.slice(at + 1)}`);
        } else {
          bodies.push('['.repeat(1 + random.int(5000)));
        }
      }
      for (const body of bodies) {
        const response = await post(base, '/v2/models/compofa/infer', body).catch(
          (error: unknown) => ({ status: -1, json: String(error) }),
        );
        assert.ok(
          response.status === 200 || (response.status >= 400 && response.status < 500),
          `status ${response.status} for ${body.slice(0, 80)}`,
        );
      }
      assert.equal((await fetch(`${base}/v2/health/live`)).status, 200);
      assert.equal(tf.memory().numTensors, before);
    });
  });

  describe('metrics', () => {
    it('exposes process, request and inference metrics that move with traffic', async () => {
      const scrape = async (): Promise<string> => (await fetch(`${base}/metrics`)).text();
      const labels = `model="compofa",target="edge",subnet="${subnet}"`;
      const first = await scrape();
      assert.match(first, /^process_cpu_user_seconds_total /m);
      assert.match(first, new RegExp(`compofa_model_info\\{[^}]*subnet="${subnet}"[^}]*\\} 1`));
      assert.equal(metric(first, `compofa_latency_budget_seconds{${labels}}`), 0.005);
      assert.equal(metric(first, `compofa_latency_tolerance_ratio{${labels}}`), 0.25);
      assert.equal(metric(first, `compofa_latency_budget_quantile{${labels}}`), 0.5);
      const count = metric(first, `compofa_inference_duration_seconds_count{${labels}}`);
      const ok = (text: string): number =>
        metric(
          text,
          'compofa_http_requests_total{route="/v2/models/{m}/infer",method="POST",code="200"}',
        );

      await post(base, '/v2/models/compofa/infer', infer([image(9)]));
      const second = await scrape();
      assert.equal(
        metric(second, `compofa_inference_duration_seconds_count{${labels}}`),
        count + 1,
      );
      assert.equal(ok(second), (ok(first) || 0) + 1);
      assert.match(second, /compofa_inference_duration_seconds_bucket\{le="0\.0005",/);
      assert.match(second, /^compofa_http_requests_in_flight 1$/m);
    });
  });
});
