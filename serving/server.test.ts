import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { setTimeout as delay } from 'node:timers/promises';
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

/** `values` as little-endian FP32 bytes, as binary tensor data carries them. */
function fp32Bytes(values: readonly number[]): Buffer {
  const bytes = Buffer.alloc(values.length * 4);
  values.forEach((value, i) => bytes.writeFloatLE(value, i * 4));
  return bytes;
}

/** A response, its binary outputs decoded as Triton's and KServe's clients decode them. */
interface BinaryReply {
  status: number;
  contentType: string | null;
  /** The Inference-Header-Content-Length header; null for a plain JSON response. */
  headerLength: string | null;
  json: any;
  /** FP32 values of each output sent as binary data, by name. */
  binary: Map<string, number[]>;
}

/**
 * Splits a v2 response body as the clients do: the first Inference-Header-Content-Length bytes
 * (all of them without the header) are JSON; after them each output with
 * `parameters.binary_data_size` takes that many bytes, in order, as little-endian FP32.
 */
function decodeResponse(
  body: Buffer,
  headerLength: string | null,
): Omit<BinaryReply, 'status' | 'contentType' | 'headerLength'> {
  const length = headerLength === null ? body.length : Number(headerLength);
  assert.ok(Number.isInteger(length) && length <= body.length, `header length ${headerLength}`);
  const json = JSON.parse(body.subarray(0, length).toString('utf8'));
  const binary = new Map<string, number[]>();
  let offset = length;
  for (const output of (json.outputs ?? []) as any[]) {
    const size: unknown = output.parameters?.binary_data_size;
    if (size === undefined) continue;
    assert.equal(output.datatype, 'FP32');
    assert.equal(output.data, undefined, 'a binary output has no JSON data');
    assert.equal(size, output.shape[0] * output.shape[1] * 4, 'binary_data_size');
    const values: number[] = [];
    for (let at = offset; at < offset + size; at += 4) values.push(body.readFloatLE(at));
    binary.set(output.name as string, values);
    offset += size;
  }
  assert.equal(offset, body.length, 'the binary outputs account for every byte after the JSON');
  return { json, binary };
}

/** POSTs `body` as it is with `headers` (fetch adds no content type to bytes). */
async function postBytes(
  base: string,
  path: string,
  body: Uint8Array,
  headers: Record<string, string>,
): Promise<BinaryReply> {
  const response = await fetch(`${base}${path}`, { method: 'POST', headers, body });
  const headerLength = response.headers.get('inference-header-content-length');
  return {
    status: response.status,
    contentType: response.headers.get('content-type'),
    headerLength,
    ...decodeResponse(Buffer.from(await response.arrayBuffer()), headerLength),
  };
}

/** POSTs a JSON header followed by binary tensor data, with Inference-Header-Content-Length. */
function postBinary(
  base: string,
  header: unknown,
  binary: Uint8Array,
  path = '/v2/models/compofa/infer',
): Promise<BinaryReply> {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  return postBytes(base, path, Buffer.concat([json, binary]), {
    'content-type': 'application/octet-stream',
    'inference-header-content-length': String(json.length),
  });
}

/** POSTs `chunks` without a Content-Length (chunked), so the server cannot refuse it up front. */
function postChunked(url: string, chunks: readonly Buffer[], headers: Record<string, string>) {
  return new Promise<{ status: number; body: string }>((resolve, reject) => {
    const request = httpRequest(url, { method: 'POST', headers }, (response) => {
      const parts: Buffer[] = [];
      response.on('data', (part: Buffer) => parts.push(part));
      response.on('end', () => {
        resolve({ status: response.statusCode ?? 0, body: Buffer.concat(parts).toString('utf8') });
      });
    });
    request.on('error', reject);
    for (const chunk of chunks) request.write(chunk);
    request.end();
  });
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
    const health: [string, unknown][] = [
      ['/v2/health/live', { live: true }],
      ['/v2/health/ready', { ready: true }],
      ['/v2/models/compofa/ready', { name: 'compofa', ready: true }],
      ['/v2/models/compofa/versions/1/ready', { name: 'compofa', ready: true }],
    ];

    it('is live and ready once the model is loaded, in JSON as KServe reads it', async () => {
      for (const [path, body] of health) {
        const response = await fetch(`${base}${path}`);
        assert.equal(response.status, 200, path);
        assert.match(response.headers.get('content-type') ?? '', /^application\/json/, path);
        assert.deepEqual(await response.json(), body, path);
        const head = await fetch(`${base}${path}`, { method: 'HEAD' });
        assert.equal(head.status, 200, `HEAD ${path}`);
        assert.equal(await head.text(), '', `HEAD ${path}`);
      }
    });

    it('answers not ready with 503 and a body while draining, and stays live', async () => {
      const draining = await start();
      draining.server.state.startDraining();
      const answers: [string, number, unknown][] = [
        ['/v2/health/live', 200, { live: true }],
        ['/v2/health/ready', 503, { ready: false }],
        ['/v2/models/compofa/ready', 503, { name: 'compofa', ready: false }],
        ['/v2/models/compofa/versions/1/ready', 503, { name: 'compofa', ready: false }],
      ];
      for (const [path, status, body] of answers) {
        const response = await fetch(`${draining.base}${path}`);
        assert.equal(response.status, status, path);
        assert.deepEqual(await response.json(), body, path);
        const head = await fetch(`${draining.base}${path}`, { method: 'HEAD' });
        assert.equal(head.status, status, `HEAD ${path}`);
      }
      const unknown = await fetch(`${draining.base}/v2/models/compofa/versions/9/ready`);
      assert.equal(unknown.status, 404);
    });

    it('describes the server and the model (v2)', async () => {
      const server = (await (await fetch(`${base}/v2`)).json()) as any;
      assert.equal(server.name, 'compofa-serving');
      assert.deepEqual(server.extensions, ['binary_tensor_data']);
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

  describe('binary tensor data', () => {
    const images = [image(11), image(12), image(13)];
    const INFER = '/v2/models/compofa/infer';
    const binaryInput = (count: number, datatype = 'FP32', size = count * ROW * 4) => ({
      name: 'image',
      shape: [count, R, R, 1],
      datatype,
      parameters: { binary_data_size: size },
    });

    it('answers FP32 binary inputs with the probabilities of the JSON request', async () => {
      const json = await post(base, INFER, infer(images));
      assert.equal(json.status, 200, JSON.stringify(json.json));
      assertClose(json.json.outputs[0].data, expected(images));
      // Header lengths of each remainder mod 4: the binary data starts aligned or not.
      for (const padding of ['', ' ', '  ', '   ']) {
        const reply = await postBinary(
          base,
          JSON.stringify({ id: 'bin-1', inputs: [binaryInput(3)] }) + padding,
          fp32Bytes(images.flat()),
        );
        assert.equal(reply.status, 200, JSON.stringify(reply.json));
        // No binary output was asked for: plain JSON, as for a JSON request.
        assert.equal(reply.headerLength, null);
        assert.match(reply.contentType ?? '', /^application\/json/);
        assert.equal(reply.json.id, 'bin-1');
        assert.deepEqual(reply.json.outputs[0].shape, [3, CLASSES]);
        assert.deepEqual(
          reply.json.outputs[0].data,
          json.json.outputs[0].data,
          `padding ${padding.length}`,
        );
      }
    });

    it('answers UINT8 binary inputs with the probabilities of JSON UINT8', async () => {
      const pixels = [image(14), image(15)].map((one) => one.map((v) => Math.round(v * 255)));
      const json = await post(base, INFER, infer(pixels, 'UINT8'));
      assert.equal(json.status, 200, JSON.stringify(json.json));
      for (const padding of ['', ' ']) {
        const reply = await postBinary(
          base,
          JSON.stringify({ inputs: [binaryInput(2, 'UINT8', 2 * ROW)] }) + padding,
          Uint8Array.from(pixels.flat()),
        );
        assert.equal(reply.status, 200, JSON.stringify(reply.json));
        assert.deepEqual(reply.json.outputs[0].data, json.json.outputs[0].data);
      }
      assertClose(
        json.json.outputs[0].data,
        expected(pixels.map((p) => p.map((v) => v / 255))),
        1e-5,
      );
    });

    it("sends the output as binary data as asked, the output's flag winning", async () => {
      const want = (await post(base, INFER, infer(images))).json.outputs[0].data as number[];
      const output = (binary: boolean) => [
        { name: 'probabilities', parameters: { binary_data: binary } },
      ];
      const cases: [string, Record<string, unknown>, boolean][] = [
        ['binary_data_output', { parameters: { binary_data_output: true } }, true],
        ['binary_data', { outputs: output(true) }, true],
        [
          'binary_data false over binary_data_output',
          { parameters: { binary_data_output: true }, outputs: output(false) },
          false,
        ],
        [
          'binary_data over binary_data_output false',
          { parameters: { binary_data_output: false }, outputs: output(true) },
          true,
        ],
      ];
      for (const [what, fields, binary] of cases) {
        for (const binaryRequest of [false, true]) {
          const label = `${what}, ${binaryRequest ? 'binary' : 'JSON'} input`;
          const reply = binaryRequest
            ? await postBinary(
                base,
                { inputs: [binaryInput(3)], ...fields },
                fp32Bytes(images.flat()),
              )
            : await postBytes(
                base,
                INFER,
                Buffer.from(JSON.stringify({ ...infer(images), ...fields })),
                {
                  'content-type': 'application/json',
                },
              );
          assert.equal(reply.status, 200, `${label}: ${JSON.stringify(reply.json)}`);
          if (binary) {
            assert.equal(reply.contentType, 'application/octet-stream', label);
            assert.ok(reply.headerLength !== null, label);
            assert.deepEqual(reply.json.outputs[0].parameters, {
              binary_data_size: 3 * CLASSES * 4,
            });
            assert.deepEqual(reply.binary.get('probabilities'), want, label);
          } else {
            assert.equal(reply.headerLength, null, label);
            assert.match(reply.contentType ?? '', /^application\/json/, label);
            assert.equal(reply.binary.size, 0, label);
            assert.deepEqual(reply.json.outputs[0].data, want, label);
          }
        }
      }
    });

    it("answers a request byte for byte as Triton's Python client sends it", async () => {
      // tritonclient.http: InferInput.set_data_from_numpy(x) (binary_data=True by default), then
      // client.infer(model, [input]) or with outputs=[InferRequestedOutput(name)]: the request is
      // rapidjson.dumps (compact, in insertion order) followed by x.tobytes(), and the header
      // gives the JSON's length. No content type is set.
      const pixels = image(21);
      const input = `{"name":"image","shape":[1,${R},${R},1],"datatype":"FP32","parameters":{"binary_data_size":${ROW * 4}}}`;
      const headers = [
        `{"inputs":[${input}],"parameters":{"binary_data_output":true}}`,
        `{"id":"7","inputs":[${input}],"outputs":[{"name":"probabilities","parameters":{"binary_data":true}}]}`,
      ];
      for (const header of headers) {
        const reply = await postBytes(
          base,
          INFER,
          Buffer.concat([Buffer.from(header), fp32Bytes(pixels)]),
          {
            'Inference-Header-Content-Length': String(header.length),
          },
        );
        assert.equal(reply.status, 200, JSON.stringify(reply.json));
        // What InferResult does: JSON from the first N bytes, then as_numpy(name) reads the
        // output's binary_data_size bytes as float32 and reshapes them to its shape.
        assert.equal(reply.json.model_name, 'compofa');
        assert.deepEqual(reply.json.outputs[0].shape, [1, CLASSES]);
        assertClose(reply.binary.get('probabilities') ?? [], expected([pixels]));
      }
    });

    it('answers a raw binary request (header length 0) with a binary output', async () => {
      const pixels = image(22);
      const reply = await postBytes(base, INFER, fp32Bytes(pixels), {
        'content-type': 'application/octet-stream',
        'inference-header-content-length': '0',
      });
      assert.equal(reply.status, 200, JSON.stringify(reply.json));
      assert.deepEqual(reply.json.outputs[0].shape, [1, CLASSES]);
      assertClose(reply.binary.get('probabilities') ?? [], expected([pixels]));
    });

    const one = fp32Bytes(image(23));
    const header = (fields: Record<string, unknown>) => ({
      inputs: [{ ...binaryInput(1), ...fields }],
    });
    const cases: [string, () => Promise<BinaryReply | { status: number; json: any }>, RegExp][] = [
      [
        'a header length that is not a number',
        () => postBytes(base, INFER, one, { 'inference-header-content-length': 'abc' }),
        /^Inference-Header-Content-Length: expected the byte length of the JSON header \(an integer >= 0\), got "abc"$/,
      ],
      [
        'a negative header length',
        () => postBytes(base, INFER, one, { 'inference-header-content-length': '-1' }),
        /^Inference-Header-Content-Length: .*got "-1"/,
      ],
      [
        'a fractional header length',
        () => postBytes(base, INFER, one, { 'inference-header-content-length': '1.5' }),
        /^Inference-Header-Content-Length: .*got "1\.5"/,
      ],
      [
        'a header length beyond the body',
        () => postBytes(base, INFER, one, { 'inference-header-content-length': '5000' }),
        /^Inference-Header-Content-Length: 5000 is larger than the body \(1024 bytes\)$/,
      ],
      [
        'a header length that cuts the JSON',
        () =>
          postBytes(base, INFER, Buffer.concat([Buffer.from(JSON.stringify(header({}))), one]), {
            'inference-header-content-length': '10',
          }),
        /^JSON header \(the first 10 bytes\) is not valid JSON/,
      ],
      [
        'a binary_data_size that disagrees with the shape',
        () =>
          postBinary(base, header({ parameters: { binary_data_size: 100 } }), one.subarray(0, 100)),
        /^inputs\[0\]\.parameters\.binary_data_size: expected 1024 bytes for shape \[1, 16, 16, 1\] FP32, got 100$/,
      ],
      [
        'more bytes than binary_data_size',
        () => postBinary(base, header({}), Buffer.concat([one, Buffer.alloc(4)])),
        /^request body: 1028 bytes of binary tensor data follow the JSON header, but the inputs' binary_data_size add up to 1024$/,
      ],
      [
        'binary data no input claims',
        () => postBinary(base, infer([image(23)]), one),
        /^request body: 1024 bytes .* add up to 0$/,
      ],
      [
        'data and binary_data_size',
        () => postBinary(base, header({ data: image(23) }), one),
        /^inputs\[0\]\.data: expected no data with parameters\.binary_data_size/,
      ],
      [
        'an unknown datatype',
        () => postBinary(base, header({ datatype: 'FLOAT' }), one),
        /^inputs\[0\]\.datatype: expected FP32 or UINT8, got "FLOAT" \(not a v2 datatype\)$/,
      ],
      [
        'a non-finite value',
        () => postBinary(base, header({}), fp32Bytes(image(23).map((v, i) => (i === 5 ? NaN : v)))),
        /^inputs\[0\] binary data\[5\]: expected a finite number, got NaN$/,
      ],
      [
        'binary_data_size without the header',
        () => post(base, INFER, header({})),
        /^inputs\[0\]\.parameters\.binary_data_size: binary tensor data needs the Inference-Header-Content-Length header/,
      ],
      [
        'a raw binary request of the wrong size',
        () =>
          postBytes(base, INFER, Buffer.concat([one, one]), {
            'inference-header-content-length': '0',
          }),
        /^request body: a raw binary request \(Inference-Header-Content-Length: 0\) is one FP32 image of shape \[1, 16, 16, 1\], 1024 bytes; got 2048$/,
      ],
    ];
    for (const [what, send, message] of cases) {
      it(`answers 400 for ${what}`, async () => {
        const reply = await send();
        assert.equal(reply.status, 400, JSON.stringify(reply.json));
        assert.match(reply.json.error, message);
      });
    }

    it('still enforces the body limit on binary bodies, declared or chunked', async () => {
      // 64 images are within the batch limit, but their 65536 bytes and the header are not.
      const images64 = fp32Bytes(Array.from({ length: 64 * ROW }, (_, i) => (i % 256) / 255));
      const declared = await postBinary(base, { inputs: [binaryInput(64)] }, images64);
      assert.equal(declared.status, 413, JSON.stringify(declared.json));
      assert.match(declared.json.error, /larger than the limit of 65536 bytes/);

      const json = Buffer.from(JSON.stringify({ inputs: [binaryInput(64)] }));
      const chunks = [
        json,
        ...Array.from({ length: 16 }, (_, i) => images64.subarray(i * 4096, (i + 1) * 4096)),
      ];
      const chunked = await postChunked(`${base}${INFER}`, chunks, {
        'inference-header-content-length': String(json.length),
      });
      assert.equal(chunked.status, 413, chunked.body);
      assert.match(JSON.parse(chunked.body).error, /larger than the limit of 65536 bytes/);
      // The server is still fine afterwards.
      const small = await postBinary(base, { inputs: [binaryInput(1)] }, one);
      assert.equal(small.status, 200, JSON.stringify(small.json));
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

  describe('shutdown under load', () => {
    /**
     * Sends infer requests, each on a new connection (as kube-proxy spreads new connections), from
     * `clients` loops until `until` resolves; returns every answer's status or error code.
     */
    async function load(port: number, clients: number, until: Promise<void>): Promise<string[]> {
      let stopped = false;
      void until.then(() => (stopped = true));
      const body = JSON.stringify(infer([image(1)]));
      const results: string[] = [];
      const once = () =>
        new Promise<string>((resolve) => {
          const request = httpRequest(
            {
              host: '127.0.0.1',
              port,
              path: '/v2/models/compofa/infer',
              method: 'POST',
              agent: false,
              headers: { 'content-type': 'application/json', 'content-length': body.length },
            },
            (response) => {
              response.resume();
              response.on('end', () => {
                resolve(String(response.statusCode));
              });
              response.on('error', (error: NodeJS.ErrnoException) => {
                resolve(error.code ?? 'error');
              });
            },
          );
          request.on('error', (error: NodeJS.ErrnoException) => {
            resolve(error.code ?? 'error');
          });
          request.end(body);
        });
      await Promise.all(
        Array.from({ length: clients }, async () => {
          // Bounded: at most 2,000 requests per client.
          for (let i = 0; i < 2000 && !stopped; i++) results.push(await once());
        }),
      );
      return results;
    }

    /** Starts a server, shuts it down 100 ms into the load, and stops the load 300 ms later. */
    async function shutDownUnderLoad(delayMs: number): Promise<string[]> {
      const { server } = await start('--shutdown-delay-ms', String(delayMs));
      let endpointsRemoved!: () => void;
      const until = new Promise<void>((resolve) => (endpointsRemoved = resolve));
      const sent = load(server.port, 3, until);
      await delay(100);
      const stopping = server.shutdown();
      // The pod leaves its Service's endpoints a moment after SIGTERM: no new requests after that.
      await delay(300);
      endpointsRemoved();
      const results = await sent;
      assert.equal(await stopping, true, 'every accepted request finished');
      return results;
    }

    it('answers every request that arrives during the shutdown delay, then stops', async () => {
      const results = await shutDownUnderLoad(600);
      assert.ok(results.length > 5, `only ${results.length} requests were sent`);
      assert.deepEqual(
        results.filter((status) => status !== '200'),
        [],
        `${results.length} requests`,
      );
    });

    it('without a shutdown delay refuses the requests that arrive before the endpoints update', async () => {
      const results = await shutDownUnderLoad(0);
      assert.ok(
        results.some((status) => status === 'ECONNREFUSED' || status === 'ECONNRESET'),
        `no request failed out of ${results.length}: ${[...new Set(results)].join(', ')}`,
      );
    });
  });
});
