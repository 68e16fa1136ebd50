import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { HttpError } from './http-error.js';
import {
  type ImageBatch,
  type ModelSignature,
  describeValue,
  encodeInferResponse,
  inferResponse,
  modelMetadata,
  parseInferRequest,
  parsePredictRequest,
  parseRawInferRequest,
  predictResponse,
  rowSize,
  splitRows,
} from './protocol.js';

/** A tiny model: 2×2 RGB images, 3 classes, at most 4 images per request. */
const SMALL: ModelSignature = {
  inputName: 'image',
  outputName: 'probabilities',
  resolution: 2,
  channels: 3,
  numClasses: 3,
  maxBatchSize: 4,
};

/** The MNIST-sized model of the real deployments. */
const MNIST: ModelSignature = {
  inputName: 'image',
  outputName: 'probabilities',
  resolution: 28,
  channels: 1,
  numClasses: 10,
  maxBatchSize: 64,
};

/** Image `n` of SMALL as nested [2][2][3]: value (n*12 + flat index) / 100. */
function nestedImage(n: number): number[][][] {
  return [0, 1].map((y) =>
    [0, 1].map((x) => [0, 1, 2].map((c) => (n * 12 + y * 6 + x * 3 + c) / 100)),
  );
}

/** The same images flat, row-major. */
function flatImages(count: number): number[] {
  return Array.from({ length: count * 12 }, (_, i) => i / 100);
}

function expectedData(count: number): Float32Array {
  return Float32Array.from(flatImages(count));
}

/** A valid v2 request for SMALL with `count` nested FP32 images. */
function inferBody(count = 1): Record<string, any> {
  return {
    inputs: [
      {
        name: 'image',
        shape: [count, 2, 2, 3],
        datatype: 'FP32',
        data: Array.from({ length: count }, (_, n) => nestedImage(n)),
      },
    ],
  };
}

/** inferBody with the input tensor's fields replaced. */
function withInput(fields: Record<string, unknown>, count = 1): Record<string, any> {
  const body = inferBody(count);
  body.inputs[0] = { ...body.inputs[0], ...fields };
  return body;
}

/** `values` as little-endian FP32 bytes, starting `offset` bytes into their buffer. */
function fp32Bytes(values: readonly number[], offset = 0): Uint8Array {
  const bytes = new Uint8Array(offset + values.length * 4).subarray(offset);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  values.forEach((value, i) => {
    view.setFloat32(i * 4, value, true);
  });
  return bytes;
}

/** A v2 request for SMALL with `count` images sent as `size` bytes of binary data. */
function binaryBody(count: number, datatype: string, size: unknown): Record<string, any> {
  return {
    inputs: [
      {
        name: 'image',
        shape: [count, 2, 2, 3],
        datatype,
        parameters: { binary_data_size: size },
      },
    ],
  };
}

function assertHttpError(
  action: () => unknown,
  status: number,
  path: string,
  fragment?: string,
): void {
  assert.throws(action, (error: unknown) => {
    assert.ok(error instanceof HttpError, `expected an HttpError, got ${String(error)}`);
    assert.equal(error.status, status, error.message);
    assert.ok(
      error.message.startsWith(`${path}: `),
      `message ${JSON.stringify(error.message)} should start with "${path}: "`,
    );
    if (fragment !== undefined) {
      assert.ok(
        error.message.includes(fragment),
        `message ${JSON.stringify(error.message)} should include ${JSON.stringify(fragment)}`,
      );
    }
    return true;
  });
}

describe('parseInferRequest', () => {
  it('reads nested FP32 data row-major', () => {
    const parsed = parseInferRequest(inferBody(2), SMALL);
    assert.equal(parsed.batch.batch, 2);
    assert.deepEqual(parsed.batch.data, expectedData(2));
    assert.deepEqual(parsed.requestedOutputs, ['probabilities']);
    assert.equal('id' in parsed, false);
  });

  it('reads flat FP32 data into the same values', () => {
    const parsed = parseInferRequest(
      withInput({ data: flatImages(3), shape: [3, 2, 2, 3] }),
      SMALL,
    );
    assert.equal(parsed.batch.batch, 3);
    assert.deepEqual(parsed.batch.data, expectedData(3));
  });

  it('scales UINT8 values by 1/255', () => {
    const data = [0, 255, 51, 102, 1, 254, 0, 0, 0, 0, 0, 128];
    const parsed = parseInferRequest(withInput({ datatype: 'UINT8', data }), SMALL);
    assert.deepEqual(
      parsed.batch.data,
      Float32Array.from(data, (v) => v / 255),
    );
    assert.equal(parsed.batch.data[1], 1);
    assert.equal(parsed.batch.data[2], Math.fround(0.2));
  });

  it('echoes the id and accepts parameters and an explicit output', () => {
    const body = {
      ...inferBody(),
      id: 'req-7',
      parameters: { binary_data_output: false, priority: 1 },
      outputs: [{ name: 'probabilities', parameters: { binary_data: false } }],
    };
    const parsed = parseInferRequest(body, SMALL);
    assert.equal(parsed.id, 'req-7');
    assert.deepEqual(parsed.requestedOutputs, ['probabilities']);
    assert.equal(parsed.binaryOutput, false);
    assert.deepEqual(parseInferRequest({ ...inferBody(), outputs: [] }, SMALL).requestedOutputs, [
      'probabilities',
    ]);
  });

  it('reads a full 64×28×28×1 batch, nested and flat', () => {
    const size = rowSize(MNIST);
    assert.equal(size, 784);
    const flat = Array.from({ length: 64 * size }, (_, i) => (i % 256) / 255);
    const nested = Array.from({ length: 64 }, (_, n) =>
      Array.from({ length: 28 }, (_, y) =>
        Array.from({ length: 28 }, (_, x) => [flat[n * size + y * 28 + x]]),
      ),
    );
    const input = { name: 'image', shape: [64, 28, 28, 1], datatype: 'FP32' };
    const fromNested = parseInferRequest({ inputs: [{ ...input, data: nested }] }, MNIST);
    const fromFlat = parseInferRequest({ inputs: [{ ...input, data: flat }] }, MNIST);
    assert.equal(fromNested.batch.batch, 64);
    assert.deepEqual(fromNested.batch.data, Float32Array.from(flat));
    assert.deepEqual(fromFlat.batch.data, fromNested.batch.data);
  });

  it('answers a batch over the limit with 413 before reading the data', () => {
    // A shape of a billion images must neither allocate nor look at the (absent) data.
    assertHttpError(
      () => parseInferRequest(withInput({ shape: [1e9, 2, 2, 3], data: undefined }), SMALL),
      413,
      'inputs[0].shape[0]',
      '1000000000 images exceed the limit of 4',
    );
  });

  const deep: unknown[] = [];
  {
    let node = deep;
    for (let i = 0; i < 100_000; i++) {
      const next: unknown[] = [];
      node.push(next);
      node = next;
    }
  }

  const cases: [string, unknown, string, string][] = [
    ['null body', null, 'request body', 'expected a JSON object, got null'],
    ['string body', 'hello', 'request body', 'got "hello"'],
    ['array body', [inferBody()], 'request body', 'got an array of 1 element'],
    ['numeric id', { ...inferBody(), id: 5 }, 'id', 'expected a string, got 5'],
    ['null id', { ...inferBody(), id: null }, 'id', 'got null'],
    ['array parameters', { ...inferBody(), parameters: [] }, 'parameters', 'an empty array'],
    [
      'a string binary_data_output',
      { ...inferBody(), parameters: { binary_data_output: 'true' } },
      'parameters.binary_data_output',
      'expected true or false, got "true"',
    ],
    ['no inputs', {}, 'inputs', 'got nothing'],
    ['inputs an object', { inputs: {} }, 'inputs', 'got an object'],
    ['no input tensor', { inputs: [] }, 'inputs', 'exactly 1 input tensor ("image"), got 0'],
    [
      'two input tensors',
      { inputs: [inferBody().inputs[0], inferBody().inputs[0]] },
      'inputs',
      'got 2',
    ],
    ['input null', { inputs: [null] }, 'inputs[0]', 'expected a JSON object, got null'],
    ['wrong input name', withInput({ name: 'x' }), 'inputs[0].name', 'expected "image", got "x"'],
    ['missing input name', withInput({ name: undefined }), 'inputs[0].name', 'got nothing'],
    [
      'unsupported datatype',
      withInput({ datatype: 'INT64' }),
      'inputs[0].datatype',
      'expected FP32 or UINT8, got "INT64"',
    ],
    ['FP64', withInput({ datatype: 'FP64' }), 'inputs[0].datatype', 'got "FP64"'],
    [
      'unknown datatype',
      withInput({ datatype: 'FLOAT' }),
      'inputs[0].datatype',
      'expected FP32 or UINT8, got "FLOAT" (not a v2 datatype)',
    ],
    ['lower-case datatype', withInput({ datatype: 'fp32' }), 'inputs[0].datatype', '"fp32"'],
    ['numeric datatype', withInput({ datatype: 32 }), 'inputs[0].datatype', 'got 32'],
    ['missing shape', withInput({ shape: undefined }), 'inputs[0].shape', 'got nothing'],
    ['string shape', withInput({ shape: '1,2,2,3' }), 'inputs[0].shape', 'got "1,2,2,3"'],
    [
      'flattened shape',
      withInput({ shape: [1, 12] }),
      'inputs[0].shape',
      'expected [N, 2, 2, 3], got [1, 12]',
    ],
    ['empty batch', withInput({ shape: [0, 2, 2, 3] }), 'inputs[0].shape[0]', 'got 0'],
    ['dynamic batch', withInput({ shape: [-1, 2, 2, 3] }), 'inputs[0].shape[0]', 'got -1'],
    ['fractional batch', withInput({ shape: [1.5, 2, 2, 3] }), 'inputs[0].shape[0]', 'got 1.5'],
    ['string batch', withInput({ shape: ['1', 2, 2, 3] }), 'inputs[0].shape[0]', 'got "1"'],
    [
      'wrong height',
      withInput({ shape: [1, 3, 2, 3] }),
      'inputs[0].shape[1]',
      'expected 2 (shape [N, 2, 2, 3]), got 3',
    ],
    ['string width', withInput({ shape: [1, 2, '2', 3] }), 'inputs[0].shape[2]', 'got "2"'],
    ['wrong channels', withInput({ shape: [1, 2, 2, 1] }), 'inputs[0].shape[3]', 'got 1'],
    [
      'input parameters not an object',
      withInput({ parameters: 'x' }),
      'inputs[0].parameters',
      'expected a JSON object',
    ],
    [
      'binary input without binary data',
      withInput({ data: undefined, parameters: { binary_data_size: 48 } }),
      'inputs[0].parameters.binary_data_size',
      'needs the Inference-Header-Content-Length header',
    ],
    [
      'shared-memory input',
      withInput({
        data: undefined,
        parameters: { shared_memory_region: 'r', shared_memory_byte_size: 48 },
      }),
      'inputs[0].parameters.shared_memory_region',
      'shared memory is not supported',
    ],
    ['missing data', withInput({ data: undefined }), 'inputs[0].data', 'got nothing'],
    ['data an object', withInput({ data: { 0: 1 } }), 'inputs[0].data', 'got an object'],
    ['data a string', withInput({ data: '[0.1]' }), 'inputs[0].data', 'got "[0.1]"'],
    [
      'flat data too short',
      withInput({ data: flatImages(1).slice(1) }),
      'inputs[0].data',
      'expected 12 values for shape [1, 2, 2, 3], got 11',
    ],
    ['empty data', withInput({ data: [] }), 'inputs[0].data', 'got 0'],
    [
      'number as a string',
      withInput({ data: flatImages(1).map((v, i) => (i === 5 ? '0.5' : v)) }),
      'inputs[0].data[5]',
      'expected a finite number, got "0.5"',
    ],
    [
      'NaN as a string',
      withInput({ data: flatImages(1).map((v, i) => (i === 0 ? 'NaN' : v)) }),
      'inputs[0].data[0]',
      'got "NaN"',
    ],
    [
      'boolean value',
      withInput({ data: flatImages(1).map((v, i) => (i === 11 ? true : v)) }),
      'inputs[0].data[11]',
      'got true',
    ],
    [
      'null value',
      withInput({ data: flatImages(1).map((v, i) => (i === 2 ? null : v)) }),
      'inputs[0].data[2]',
      'got null',
    ],
    [
      'array inside flat data',
      withInput({ data: flatImages(1).map((v, i) => (i === 3 ? [v] : v)) }),
      'inputs[0].data[3]',
      'got an array of 1 element',
    ],
    [
      'beyond float32',
      withInput({ data: flatImages(1).map((v, i) => (i === 4 ? 1e39 : v)) }),
      'inputs[0].data[4]',
      'got 1e+39',
    ],
    [
      'UINT8 over 255',
      withInput({ datatype: 'UINT8', data: [0, 0, 256, 0, 0, 0, 0, 0, 0, 0, 0, 0] }),
      'inputs[0].data[2]',
      'expected an integer in 0..255 (UINT8), got 256',
    ],
    [
      'fractional UINT8',
      withInput({ datatype: 'UINT8', data: [0.5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0] }),
      'inputs[0].data[0]',
      'got 0.5',
    ],
    [
      'negative UINT8',
      withInput({
        datatype: 'UINT8',
        data: [
          [
            [
              [0, 0, 0],
              [0, 0, 0],
            ],
            [
              [0, 0, 0],
              [0, -1, 0],
            ],
          ],
        ],
      }),
      'inputs[0].data[0][1][1][1]',
      'got -1',
    ],
    [
      'ragged row',
      withInput({ data: [[nestedImage(0)[0], [[0.1, 0.2, 0.3]]]] }),
      'inputs[0].data[0][1]',
      'expected 2 elements, got 1',
    ],
    [
      'number where a pixel is expected',
      withInput({ data: [[nestedImage(0)[0], [0.5, [0.1, 0.2, 0.3]]]] }),
      'inputs[0].data[0][1][0]',
      'expected an array of 3 elements, got 0.5',
    ],
    [
      'string in nested data',
      withInput({
        data: [
          [
            nestedImage(0)[0],
            [
              [0, 0, 0],
              [0, 0, '1'],
            ],
          ],
        ],
      }),
      'inputs[0].data[0][1][1][2]',
      'got "1"',
    ],
    [
      'too deep',
      withInput({
        data: [
          [
            nestedImage(0)[0],
            [
              [0, 0, 0],
              [0, 0, [1]],
            ],
          ],
        ],
      }),
      'inputs[0].data[0][1][1][2]',
      'expected a finite number, got an array of 1 element',
    ],
    [
      'batch differs from shape',
      withInput({ shape: [2, 2, 2, 3] }),
      'inputs[0].data',
      'expected 2 elements, got 1',
    ],
    [
      'second image ragged',
      withInput({ data: [nestedImage(0), [nestedImage(1)[0]]] }, 2),
      'inputs[0].data[1]',
      'expected 2 elements, got 1',
    ],
    ['deep nesting', withInput({ data: deep }), 'inputs[0].data[0]', 'expected 2 elements, got 1'],
    ['outputs an object', { ...inferBody(), outputs: {} }, 'outputs', 'got an object'],
    ['output a string', { ...inferBody(), outputs: ['x'] }, 'outputs[0]', 'got "x"'],
    [
      'unknown output',
      { ...inferBody(), outputs: [{ name: 'probabilities' }, { name: 'logits' }] },
      'outputs[1].name',
      'expected "probabilities" (the model\'s only output), got "logits"',
    ],
    [
      'classification extension',
      { ...inferBody(), outputs: [{ name: 'probabilities', parameters: { classification: 3 } }] },
      'outputs[0].parameters.classification',
      'not supported',
    ],
    [
      'a numeric binary_data',
      { ...inferBody(), outputs: [{ name: 'probabilities', parameters: { binary_data: 1 } }] },
      'outputs[0].parameters.binary_data',
      'expected true or false, got 1',
    ],
    [
      'a shared-memory output',
      {
        ...inferBody(),
        outputs: [{ name: 'probabilities', parameters: { shared_memory_region: 'r' } }],
      },
      'outputs[0].parameters.shared_memory_region',
      'shared memory is not supported',
    ],
    [
      'the output twice',
      { ...inferBody(), outputs: [{ name: 'probabilities' }, { name: 'probabilities' }] },
      'outputs[1].name',
      '"probabilities" is already requested by outputs[0]',
    ],
  ];

  for (const [name, body, path, fragment] of cases) {
    it(`rejects ${name} naming ${path}`, () => {
      assertHttpError(() => parseInferRequest(body, SMALL), 400, path, fragment);
    });
  }
});

describe('parseInferRequest with binary tensor data', () => {
  const flat = flatImages(2);

  it('reads FP32 binary data into the JSON values, in place when 4-aligned', () => {
    const json = parseInferRequest(withInput({ data: flat, shape: [2, 2, 2, 3] }), SMALL);
    const bytes = fp32Bytes(flat);
    const aligned = parseInferRequest(binaryBody(2, 'FP32', 96), SMALL, bytes);
    assert.equal(aligned.batch.batch, 2);
    assert.deepEqual(aligned.batch.data, json.batch.data);
    assert.equal(aligned.batch.data.buffer, bytes.buffer, 'a view, not a copy');
    assert.equal(aligned.batch.data.byteOffset, bytes.byteOffset);

    for (const offset of [1, 2, 3, 5]) {
      const unaligned = fp32Bytes(flat, offset);
      const copied = parseInferRequest(binaryBody(2, 'FP32', 96), SMALL, unaligned);
      assert.deepEqual(copied.batch.data, json.batch.data, `offset ${offset}`);
      assert.notEqual(copied.batch.data.buffer, unaligned.buffer);
    }
  });

  it('reads UINT8 binary data scaled by 1/255 like JSON UINT8', () => {
    const pixels = [0, 255, 51, 102, 1, 254, 0, 7, 9, 200, 13, 128];
    const json = parseInferRequest(withInput({ datatype: 'UINT8', data: pixels }), SMALL);
    for (const offset of [0, 1]) {
      const bytes = new Uint8Array(offset + 12).subarray(offset);
      bytes.set(pixels);
      const parsed = parseInferRequest(binaryBody(1, 'UINT8', 12), SMALL, bytes);
      assert.deepEqual(parsed.batch.data, json.batch.data);
    }
  });

  it('accepts the header with JSON data and no binary data', () => {
    const parsed = parseInferRequest(inferBody(), SMALL, new Uint8Array(0));
    assert.deepEqual(parsed.batch.data, expectedData(1));
  });

  it('reads a raw binary request as one FP32 image with a binary output', () => {
    const parsed = parseRawInferRequest(fp32Bytes(flatImages(1), 1), SMALL);
    assert.equal(parsed.batch.batch, 1);
    assert.deepEqual(parsed.batch.data, expectedData(1));
    assert.deepEqual(parsed.requestedOutputs, ['probabilities']);
    assert.equal(parsed.binaryOutput, true);
  });

  it("sends the output as binary data when asked, the output's flag winning", () => {
    const output = (binary?: boolean): unknown[] => [
      binary === undefined
        ? { name: 'probabilities' }
        : { name: 'probabilities', parameters: { binary_data: binary } },
    ];
    const cases: [string, unknown, unknown, boolean][] = [
      ['nothing', undefined, undefined, false],
      ['binary_data_output', { binary_data_output: true }, undefined, true],
      ['binary_data_output with an empty list', { binary_data_output: true }, [], true],
      ['binary_data_output false', { binary_data_output: false }, undefined, false],
      ['binary_data', undefined, output(true), true],
      ['binary_data false', undefined, output(false), false],
      ['binary_data over binary_data_output', { binary_data_output: true }, output(false), false],
      ['binary_data true over false', { binary_data_output: false }, output(true), true],
      ['an output without the flag', { binary_data_output: true }, output(), true],
    ];
    for (const [what, parameters, outputs, binary] of cases) {
      const body = { ...inferBody(), parameters, outputs };
      assert.equal(parseInferRequest(body, SMALL).binaryOutput, binary, what);
    }
  });

  it('answers a binary batch over the limit with 413 before reading the data', () => {
    assertHttpError(
      () => parseInferRequest(binaryBody(5, 'FP32', 240), SMALL, new Uint8Array(240)),
      413,
      'inputs[0].shape[0]',
      '5 images exceed the limit of 4',
    );
  });

  const withNaN = flatImages(1).map((v, i) => (i === 3 ? NaN : v));
  const withInfinity = flatImages(1).map((v, i) => (i === 7 ? -Infinity : v));
  const mnistInput = { name: 'image', shape: [1, 28, 28, 1], datatype: 'FP32' };
  const cases: [string, () => unknown, string, string][] = [
    [
      'a size that disagrees with the shape',
      () =>
        parseInferRequest(
          { inputs: [{ ...mnistInput, parameters: { binary_data_size: 100 } }] },
          MNIST,
          new Uint8Array(100),
        ),
      'inputs[0].parameters.binary_data_size',
      'expected 3136 bytes for shape [1, 28, 28, 1] FP32, got 100',
    ],
    [
      'an FP32 size for UINT8',
      () => parseInferRequest(binaryBody(1, 'UINT8', 48), SMALL, new Uint8Array(48)),
      'inputs[0].parameters.binary_data_size',
      'expected 12 bytes for shape [1, 2, 2, 3] UINT8, got 48',
    ],
    [
      'a size as a string',
      () => parseInferRequest(binaryBody(1, 'FP32', '48'), SMALL, new Uint8Array(48)),
      'inputs[0].parameters.binary_data_size',
      'expected a byte count (an integer >= 0), got "48"',
    ],
    [
      'a negative size',
      () => parseInferRequest(binaryBody(1, 'FP32', -48), SMALL, new Uint8Array(48)),
      'inputs[0].parameters.binary_data_size',
      'got -48',
    ],
    [
      'a fractional size',
      () => parseInferRequest(binaryBody(1, 'FP32', 47.5), SMALL, new Uint8Array(48)),
      'inputs[0].parameters.binary_data_size',
      'got 47.5',
    ],
    [
      'both data and binary data',
      () =>
        parseInferRequest(
          withInput({ data: flatImages(1), parameters: { binary_data_size: 48 } }),
          SMALL,
          new Uint8Array(48),
        ),
      'inputs[0].data',
      'expected no data with parameters.binary_data_size',
    ],
    [
      'more bytes than the sizes',
      () => parseInferRequest(binaryBody(1, 'FP32', 48), SMALL, new Uint8Array(52)),
      'request body',
      "52 bytes of binary tensor data follow the JSON header, but the inputs' " +
        'binary_data_size add up to 48',
    ],
    [
      'fewer bytes than the sizes',
      () => parseInferRequest(binaryBody(1, 'FP32', 48), SMALL, new Uint8Array(44)),
      'request body',
      '44 bytes of binary tensor data',
    ],
    [
      'binary data no input claims',
      () => parseInferRequest(inferBody(), SMALL, new Uint8Array(4)),
      'request body',
      'add up to 0',
    ],
    [
      'an unknown datatype',
      () => parseInferRequest(binaryBody(1, 'FLOAT', 48), SMALL, new Uint8Array(48)),
      'inputs[0].datatype',
      'expected FP32 or UINT8, got "FLOAT" (not a v2 datatype)',
    ],
    [
      'an unsupported datatype',
      () => parseInferRequest(binaryBody(1, 'FP16', 24), SMALL, new Uint8Array(24)),
      'inputs[0].datatype',
      'expected FP32 or UINT8, got "FP16"',
    ],
    [
      'NaN',
      () => parseInferRequest(binaryBody(1, 'FP32', 48), SMALL, fp32Bytes(withNaN)),
      'inputs[0] binary data[3]',
      'expected a finite number, got NaN',
    ],
    [
      'Infinity, unaligned',
      () => parseInferRequest(binaryBody(1, 'FP32', 48), SMALL, fp32Bytes(withInfinity, 1)),
      'inputs[0] binary data[7]',
      'got -Infinity',
    ],
    [
      'a raw binary request of the wrong size',
      () => parseRawInferRequest(new Uint8Array(47), SMALL),
      'request body',
      'is one FP32 image of shape [1, 2, 2, 3], 48 bytes; got 47',
    ],
    [
      'a raw binary request of two images',
      () => parseRawInferRequest(fp32Bytes(flatImages(2)), SMALL),
      'request body',
      'got 96',
    ],
    [
      'NaN in a raw binary request',
      () => parseRawInferRequest(fp32Bytes(withNaN), SMALL),
      'request body[3]',
      'got NaN',
    ],
  ];
  for (const [name, parse, path, fragment] of cases) {
    it(`rejects ${name} naming ${path}`, () => {
      assertHttpError(parse, 400, path, fragment);
    });
  }
});

describe('parsePredictRequest', () => {
  const images: any[] = [nestedImage(0), nestedImage(1)];

  it('reads row-format instances as arrays and as objects', () => {
    for (const instances of [
      images,
      images.map((image) => ({ image })),
      [images[0], { image: images[1] }],
    ]) {
      const parsed = parsePredictRequest({ instances }, SMALL);
      assert.equal(parsed.format, 'row');
      assert.equal(parsed.batch.batch, 2);
      assert.deepEqual(parsed.batch.data, expectedData(2));
    }
  });

  it('reads columnar inputs as a tensor and as an object', () => {
    for (const inputs of [images, { image: images }]) {
      const parsed = parsePredictRequest({ inputs, signature_name: 'serving_default' }, SMALL);
      assert.equal(parsed.format, 'columnar');
      assert.equal(parsed.batch.batch, 2);
      assert.deepEqual(parsed.batch.data, expectedData(2));
    }
  });

  const tooMany = Array.from({ length: 5 }, (_, n) => nestedImage(n));
  const cases: [string, unknown, number, string, string][] = [
    ['null body', null, 400, 'request body', 'got null'],
    ['neither layout', { examples: images }, 400, 'request body', '"instances" (row format)'],
    ['both layouts', { instances: images, inputs: images }, 400, 'request body', 'not both'],
    [
      'other signature',
      { instances: images, signature_name: 'predict' },
      400,
      'signature_name',
      'expected "serving_default", got "predict"',
    ],
    ['instances a string', { instances: 'x' }, 400, 'instances', 'got "x"'],
    ['no instances', { instances: [] }, 400, 'instances', 'at least 1 instance'],
    ['too many instances', { instances: tooMany }, 413, 'instances', '5 images exceed'],
    ['instance a number', { instances: [images[0], 7] }, 400, 'instances[1]', 'got 7'],
    [
      'ragged instance',
      { instances: [images[0], [images[1][0]]] },
      400,
      'instances[1]',
      'expected 2 elements, got 1',
    ],
    [
      'unknown input key',
      { instances: [{ img: images[0] }] },
      400,
      'instances[0]',
      'unknown input "img"; the model\'s only input is "image"',
    ],
    ['instance without image', { instances: [{ image: 5 }] }, 400, 'instances[0].image', 'got 5'],
    [
      'string pixel value',
      { instances: [[images[0][0], [images[0][1][0], [0, 0, 'NaN']]]] },
      400,
      'instances[0][1][1][2]',
      'expected a finite number, got "NaN"',
    ],
    ['inputs null', { inputs: null }, 400, 'inputs', 'got null'],
    ['inputs empty', { inputs: [] }, 400, 'inputs', 'at least 1 image'],
    ['too many inputs', { inputs: { image: tooMany } }, 413, 'inputs.image', '5 images'],
    ['unknown columnar key', { inputs: { pixels: images } }, 400, 'inputs', '"pixels"'],
    ['columnar missing', { inputs: { image: undefined } }, 400, 'inputs.image', 'got nothing'],
    [
      'columnar bad value',
      {
        inputs: {
          image: [
            images[0],
            [
              images[1][0],
              [
                [0, 0, 0],
                [0, false, 0],
              ],
            ],
          ],
        },
      },
      400,
      'inputs.image[1][1][1][1]',
      'got false',
    ],
    // 12 numbers are 12 instances: over SMALL's limit of 4.
    ['instances as flat numbers', { instances: flatImages(1) }, 413, 'instances', '12 images'],
  ];

  for (const [name, body, status, path, fragment] of cases) {
    it(`rejects ${name} naming ${path}`, () => {
      assertHttpError(() => parsePredictRequest(body, SMALL), status, path, fragment);
    });
  }

  it('rejects flat numbers as instances naming the first one', () => {
    assertHttpError(
      () => parsePredictRequest({ instances: [0.1, 0.2] }, SMALL),
      400,
      'instances[0]',
      'expected an array of 2 elements, got 0.1',
    );
  });
});

describe('responses', () => {
  const probabilities = Float32Array.from([0.5, 0.25, 0.25, 0.125, 0.75, 0.125]);

  it('builds the v2 response with flat FP32 data', () => {
    const response = inferResponse({
      modelName: 'compofa',
      modelVersion: '3',
      id: 'req-7',
      probabilities,
      batch: 2,
      numClasses: 3,
      outputName: 'probabilities',
    });
    assert.deepEqual(response, {
      model_name: 'compofa',
      model_version: '3',
      id: 'req-7',
      outputs: [
        {
          name: 'probabilities',
          shape: [2, 3],
          datatype: 'FP32',
          data: [0.5, 0.25, 0.25, 0.125, 0.75, 0.125],
        },
      ],
    });
    const bare = inferResponse({
      modelName: 'compofa',
      probabilities: probabilities.subarray(0, 3),
      batch: 1,
      numClasses: 3,
      outputName: 'probabilities',
    });
    assert.deepEqual(Object.keys(bare), ['model_name', 'outputs']);
    assert.deepEqual(bare.outputs[0]?.shape, [1, 3]);
  });

  it('encodes a plain JSON response without a header length', () => {
    const init = {
      modelName: 'compofa',
      id: 'req-7',
      probabilities,
      batch: 2,
      numClasses: 3,
      outputName: 'probabilities',
    };
    const encoded = encodeInferResponse(init);
    assert.equal(encoded.headerLength, undefined);
    assert.equal(encoded.body.toString('utf8'), JSON.stringify(inferResponse(init)));
  });

  it('encodes a binary output as little-endian FP32 after the JSON header', () => {
    const encoded = encodeInferResponse({
      modelName: 'compofa',
      modelVersion: '3',
      probabilities,
      batch: 2,
      numClasses: 3,
      outputName: 'probabilities',
      binaryOutput: true,
    });
    const length = encoded.headerLength ?? NaN;
    assert.equal(encoded.body.length, length + 24);
    assert.deepEqual(JSON.parse(encoded.body.subarray(0, length).toString('utf8')), {
      model_name: 'compofa',
      model_version: '3',
      outputs: [
        {
          name: 'probabilities',
          shape: [2, 3],
          datatype: 'FP32',
          parameters: { binary_data_size: 24 },
        },
      ],
    });
    const tail = encoded.body.subarray(length);
    const view = new DataView(tail.buffer, tail.byteOffset, tail.byteLength);
    const floats = Array.from({ length: 6 }, (_, i) => view.getFloat32(i * 4, true));
    assert.deepEqual(floats, Array.from(probabilities));
  });

  it('builds TF Serving responses in the request format', () => {
    const rows = [
      [0.5, 0.25, 0.25],
      [0.125, 0.75, 0.125],
    ];
    assert.deepEqual(predictResponse('row', probabilities, 2, 3), { predictions: rows });
    assert.deepEqual(predictResponse('columnar', probabilities, 2, 3), { outputs: rows });
    assert.deepEqual(JSON.parse(JSON.stringify(predictResponse('row', probabilities, 2, 3))), {
      predictions: rows,
    });
  });

  it('refuses outputs of the wrong length', () => {
    assert.throws(() => splitRows(probabilities, 3, 3), RangeError);
    assert.throws(
      () =>
        inferResponse({
          modelName: 'm',
          probabilities,
          batch: 1,
          numClasses: 3,
          outputName: 'probabilities',
        }),
      RangeError,
    );
  });

  it('describes the model in v2 metadata', () => {
    assert.deepEqual(modelMetadata({ modelName: 'compofa', versions: ['1'] }, MNIST), {
      name: 'compofa',
      versions: ['1'],
      platform: 'tensorflowjs',
      inputs: [{ name: 'image', datatype: 'FP32', shape: [-1, 28, 28, 1] }],
      outputs: [{ name: 'probabilities', datatype: 'FP32', shape: [-1, 10] }],
    });
  });

  it('describes values briefly', () => {
    assert.equal(describeValue(undefined), 'nothing');
    assert.equal(describeValue('x'.repeat(1000)), `"${'x'.repeat(40)}..."`);
    assert.equal(describeValue({ a: 1 }), 'an object');
    assert.equal(describeValue([1, 2]), 'an array of 2 elements');
  });
});

/** mulberry32: a small deterministic generator for the fuzz tests. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('fuzzing', () => {
  const random = prng(20240601);
  const int = (n: number): number => Math.floor(random() * n);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)] as T;

  const KEYS = [
    'id',
    'inputs',
    'outputs',
    'parameters',
    'name',
    'shape',
    'datatype',
    'data',
    'instances',
    'image',
    'signature_name',
    'binary_data_size',
    'classification',
    '__proto__',
    'constructor',
    'length',
  ];
  const SCALARS: unknown[] = [
    null,
    true,
    false,
    0,
    -0,
    1,
    -1,
    0.5,
    2,
    3,
    4,
    255,
    256,
    1e308,
    -1e308,
    1e39,
    Number.MAX_SAFE_INTEGER,
    '',
    '0.5',
    '1',
    'NaN',
    'Infinity',
    '1e400',
    'FP32',
    'UINT8',
    'INT64',
    'image',
    'probabilities',
    'serving_default',
  ];

  function randomValue(depth: number): unknown {
    const roll = random();
    if (depth <= 0 || roll < 0.4) return pick(SCALARS);
    if (roll < 0.7) {
      return Array.from({ length: int(5) }, () => randomValue(depth - 1));
    }
    if (roll < 0.75) {
      // Deep nesting of a random depth.
      let node: unknown = pick(SCALARS);
      for (let i = int(5000); i > 0; i--) node = [node];
      return node;
    }
    if (roll < 0.8) return Array.from({ length: int(30) }, () => random());
    const object: Record<string, unknown> = {};
    for (let i = int(5); i > 0; i--) {
      // An own property even for "__proto__", as JSON.parse makes it.
      Object.defineProperty(object, pick(KEYS), {
        value: randomValue(depth - 1),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
    return object;
  }

  /** Replaces or deletes one randomly chosen part of a valid body. */
  function mutate(valid: unknown): unknown {
    const root = structuredClone(valid) as Record<string, unknown>;
    let parent: any = root;
    let key: string | number = pick(Object.keys(root));
    for (let steps = int(8); steps > 0; steps--) {
      const child = parent[key];
      if (typeof child !== 'object' || child === null) break;
      const keys: (string | number)[] = Array.isArray(child)
        ? child.map((_, i) => i)
        : Object.keys(child);
      if (keys.length === 0) break;
      parent = child;
      key = pick(keys);
    }
    if (random() < 0.2) {
      if (Array.isArray(parent)) parent.splice(Number(key), 1);
      else Reflect.deleteProperty(parent, key);
    } else {
      parent[key] = randomValue(3);
    }
    return root;
  }

  function checkOnlyHttpErrors(parse: () => { batch: ImageBatch }): 'accepted' | 'rejected' {
    try {
      const { batch } = parse();
      assert.equal(batch.data.length, batch.batch * rowSize(SMALL));
      assert.ok(batch.batch >= 1 && batch.batch <= SMALL.maxBatchSize);
      assert.ok(batch.data.every((v) => Number.isFinite(v)));
      return 'accepted';
    } catch (error) {
      assert.ok(error instanceof HttpError, `threw ${String(error)}`);
      assert.ok(error.status === 400 || error.status === 413, `status ${error.status}`);
      assert.ok(error.message.length < 400, `message too long: ${error.message.length}`);
      return 'rejected';
    }
  }

  it('throws only HttpError for random JSON values', () => {
    const outcomes = { accepted: 0, rejected: 0 };
    for (let i = 0; i < 400; i++) {
      const value = randomValue(5);
      outcomes[checkOnlyHttpErrors(() => parseInferRequest(value, SMALL))]++;
      outcomes[checkOnlyHttpErrors(() => parsePredictRequest(value, SMALL))]++;
    }
    assert.equal(outcomes.rejected, 800);
  });

  it('throws only HttpError for mutated valid requests', () => {
    const inferBodies = [
      inferBody(2),
      withInput({ data: flatImages(1) }),
      withInput({ datatype: 'UINT8', data: flatImages(1).map((_, i) => i) }),
    ];
    const predictBodies = [
      { instances: [nestedImage(0), { image: nestedImage(1) }] },
      { inputs: { image: [nestedImage(0)] }, signature_name: 'serving_default' },
    ];
    const outcomes = { accepted: 0, rejected: 0 };
    for (let i = 0; i < 300; i++) {
      const infer = mutate(pick(inferBodies));
      outcomes[checkOnlyHttpErrors(() => parseInferRequest(infer, SMALL))]++;
      const predict = mutate(pick(predictBodies));
      outcomes[checkOnlyHttpErrors(() => parsePredictRequest(predict, SMALL))]++;
    }
    // Most mutations break the request; some (an ignored field, an equal value) do not.
    assert.ok(outcomes.rejected > 300, JSON.stringify(outcomes));
    assert.ok(outcomes.accepted > 0, JSON.stringify(outcomes));
  });

  it('throws only HttpError for mutated binary requests and random bytes', () => {
    const outcomes = { accepted: 0, rejected: 0 };
    for (let i = 0; i < 300; i++) {
      const count = 1 + int(2);
      const datatype = pick(['FP32', 'UINT8']);
      const size = count * 12 * (datatype === 'FP32' ? 4 : 1);
      const body =
        random() < 0.7
          ? binaryBody(count, datatype, size)
          : mutate(binaryBody(count, datatype, size));
      // Mostly the right length, so values are read; sometimes any length; at any alignment.
      const length = random() < 0.8 ? size : int(2 * size);
      const offset = int(4);
      const binary = new Uint8Array(offset + length).subarray(offset);
      for (let b = 0; b < length; b++) binary[b] = int(256);
      outcomes[checkOnlyHttpErrors(() => parseInferRequest(body, SMALL, binary))]++;
      outcomes[checkOnlyHttpErrors(() => parseRawInferRequest(binary, SMALL))]++;
    }
    assert.ok(outcomes.rejected > 100, JSON.stringify(outcomes));
    assert.ok(outcomes.accepted > 50, JSON.stringify(outcomes));
  });

  it('rejects deeply nested bodies and inputs', () => {
    let deep: unknown = 0.5;
    for (let i = 0; i < 200_000; i++) deep = [deep];
    assertHttpError(() => parseInferRequest(deep, SMALL), 400, 'request body');
    assertHttpError(() => parseInferRequest({ inputs: deep }, SMALL), 400, 'inputs[0]');
    assertHttpError(() => parsePredictRequest({ instances: deep }, SMALL), 400, 'instances[0]');
    assertHttpError(() => parsePredictRequest({ inputs: [deep] }, SMALL), 400, 'inputs[0]');
  });
});
