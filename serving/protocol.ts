/**
 * The wire formats of the inference server, without HTTP and without TensorFlow: requests of the
 * Open Inference Protocol v2 (KServe, Triton) and of TensorFlow Serving's REST API are validated
 * and turned into one flat `Float32Array` batch of NHWC images in [0, 1]; the model's class
 * probabilities are turned back into each protocol's response.
 *
 * Validation accepts any JSON value without throwing anything but an {@link HttpError}: 400 with
 * a message naming the field as a JSON path (`inputs[0].data[2][27][0]`) and what is expected, or
 * 413 when a request carries more images than `maxBatchSize`. Nothing is allocated before the
 * declared shape has been checked against the model and the batch limit, and nested data is only
 * walked as deep as the model's input shape, so neither huge shapes nor deep nesting cost memory
 * or stack.
 *
 * Input values:
 * - `FP32` (v2) and every TF Serving request: finite numbers, used as they are (the model expects
 *   [0, 1], as its training images were).
 * - `UINT8` (v2 only): integers 0..255, divided by 255, so raw 8-bit pixels can be sent directly.
 *
 * v2 requests and responses may carry tensors as binary data (Triton's binary tensor data
 * extension): an input with `parameters.binary_data_size` has no `data`, its little-endian bytes
 * follow the JSON header instead, and are checked and scaled exactly like JSON values; an output
 * asked for with `binary_data` (or the request's `binary_data_output`) is sent the same way. The
 * HTTP layer splits the body at `Inference-Header-Content-Length` and frames the response.
 */
import { type HttpError, badRequest, payloadTooLarge } from './http-error.js';

/** Names and shapes of the served model's single input and output. */
export interface ModelSignature {
  /** Name of the image input, e.g. `image`. */
  inputName: string;
  /** Name of the class-probability output, e.g. `probabilities`. */
  outputName: string;
  /** Image height and width R of the input `[-1, R, R, C]`. */
  resolution: number;
  /** Channels C of the input `[-1, R, R, C]`. */
  channels: number;
  /** Classes K of the output `[-1, K]`. */
  numClasses: number;
  /** Most images one request may carry; more is answered with 413. */
  maxBatchSize: number;
}

/** A validated batch of images: `batch` NHWC images of R×R×C values in [0, 1], row-major. */
export interface ImageBatch {
  batch: number;
  /** Length `batch * R * R * C`. */
  data: Float32Array;
}

/** A validated v2 infer request. */
export interface InferRequest {
  /** The request id, to be echoed in the response; absent when the request had none. */
  id?: string;
  batch: ImageBatch;
  /** Names of the outputs to return (always the model's one output). */
  requestedOutputs: string[];
  /** Whether the output is to be sent as binary tensor data rather than JSON. */
  binaryOutput: boolean;
}

/** TF Serving's two request layouts: `instances` (row) or `inputs` (columnar). */
export type PredictFormat = 'row' | 'columnar';

/** A validated TF Serving predict request. */
export interface PredictRequest {
  /** Which layout the request used; the response uses the same. */
  format: PredictFormat;
  batch: ImageBatch;
}

/** Datatype names of the Open Inference Protocol v2 (with Triton's BF16). */
export const V2_DATATYPES: readonly string[] = [
  'BOOL',
  'UINT8',
  'UINT16',
  'UINT32',
  'UINT64',
  'INT8',
  'INT16',
  'INT32',
  'INT64',
  'FP16',
  'BF16',
  'FP32',
  'FP64',
  'BYTES',
];

/** The v2 datatypes this server accepts for the image input. */
export const ACCEPTED_DATATYPES: readonly string[] = ['FP32', 'UINT8'];

/**
 * The v2 protocol extensions this server implements, for server metadata (`GET /v2`), in Triton's
 * names. Only binary tensor data: request parameters are accepted but not passed to the model
 * (so not "parameters"), and neither classification nor shared memory is served.
 */
export const V2_EXTENSIONS: readonly string[] = ['binary_tensor_data'];

/** The only signature name of a served model, as in TF Serving. */
export const SERVING_DEFAULT = 'serving_default';

/** Values per image: R * R * C. */
export function rowSize(signature: ModelSignature): number {
  return signature.resolution * signature.resolution * signature.channels;
}

/**
 * Validates a v2 infer request body (`POST /v2/models/{m}/infer`). `binary` is the binary tensor
 * data after the JSON header when the request had one (`Inference-Header-Content-Length`); the
 * input's `binary_data_size` must then account for all of it.
 *
 * @throws HttpError 400 naming the first bad field; 413 when `shape[0]` exceeds `maxBatchSize`.
 */
export function parseInferRequest(
  body: unknown,
  signature: ModelSignature,
  binary?: Uint8Array,
): InferRequest {
  const request = expectObject(body, 'request body');
  const id = field(request, 'id');
  if (id !== undefined && typeof id !== 'string') {
    throw badRequest(`id: expected a string, got ${describeValue(id)}`);
  }
  let binaryOutput = false;
  const parameters = field(request, 'parameters');
  if (parameters !== undefined) {
    const object = expectObject(parameters, 'parameters');
    binaryOutput = readFlag(object, 'binary_data_output', 'parameters') ?? false;
  }
  const batch = readInferInput(field(request, 'inputs'), signature, binary);
  const outputs = readRequestedOutputs(field(request, 'outputs'), signature, binaryOutput);
  return id === undefined ? { batch, ...outputs } : { id, batch, ...outputs };
}

/**
 * Validates a raw binary request (`Inference-Header-Content-Length: 0`): the body is the model's
 * one input without a JSON header, so, as in Triton, one image (batch 1) in the input's declared
 * datatype FP32, answered with binary outputs.
 *
 * @throws HttpError 400 when the body is not exactly one FP32 image or holds a non-finite value.
 */
export function parseRawInferRequest(binary: Uint8Array, signature: ModelSignature): InferRequest {
  const { resolution: r, channels: c } = signature;
  const bytes = rowSize(signature) * FP32_READER.byteSize;
  if (binary.byteLength !== bytes) {
    throw badRequest(
      `request body: a raw binary request (Inference-Header-Content-Length: 0) is one FP32 ` +
        `image of shape [1, ${r}, ${r}, ${c}], ${bytes} bytes; got ${binary.byteLength}`,
    );
  }
  return {
    batch: { batch: 1, data: readBinaryValues(binary, FP32_READER, 'request body') },
    requestedOutputs: [signature.outputName],
    binaryOutput: true,
  };
}

/**
 * Validates a TF Serving predict body (`POST /v1/models/{m}:predict`): `{"instances": [...]}` with
 * each instance an R×R×C nested array or `{"image": R×R×C}`, or columnar `{"inputs": N×R×R×C}` or
 * `{"inputs": {"image": N×R×R×C}}`. An optional `signature_name` must be `serving_default`.
 *
 * @throws HttpError 400 naming the first bad field; 413 when there are more than `maxBatchSize`
 *   instances.
 */
export function parsePredictRequest(body: unknown, signature: ModelSignature): PredictRequest {
  const request = expectObject(body, 'request body');
  const signatureName = field(request, 'signature_name');
  if (signatureName !== undefined && signatureName !== SERVING_DEFAULT) {
    throw badRequest(
      `signature_name: expected "${SERVING_DEFAULT}", got ${describeValue(signatureName)}`,
    );
  }
  const instances = field(request, 'instances');
  const inputs = field(request, 'inputs');
  if (instances !== undefined && inputs !== undefined) {
    throw badRequest('request body: expected either "instances" or "inputs", not both');
  }
  if (instances !== undefined) {
    return { format: 'row', batch: readImages(instances, 'instances', signature, true) };
  }
  if (inputs !== undefined) {
    let tensor: unknown = inputs;
    let path = 'inputs';
    if (isObject(inputs)) {
      rejectOtherKeys(inputs, 'inputs', signature.inputName);
      tensor = field(inputs, signature.inputName);
      path = `inputs.${signature.inputName}`;
    }
    return { format: 'columnar', batch: readImages(tensor, path, signature, false) };
  }
  throw badRequest('request body: expected "instances" (row format) or "inputs" (columnar format)');
}

/** What {@link inferResponse} needs. */
export interface InferResponseInit {
  modelName: string;
  modelVersion?: string | undefined;
  /** The request's id, echoed when given. */
  id?: string | undefined;
  /** `batch * numClasses` probabilities, row-major. */
  probabilities: Float32Array;
  batch: number;
  numClasses: number;
  outputName: string;
  /** Send the output as binary tensor data (see {@link encodeInferResponse}) instead of JSON. */
  binaryOutput?: boolean | undefined;
}

/** One output tensor of a v2 response. */
export interface InferOutputTensor {
  name: string;
  shape: [number, number];
  datatype: 'FP32';
  /** Row-major, flat; absent when the tensor is sent as binary data. */
  data?: number[];
  /** Present when the tensor is sent as binary data: its byte length after the JSON header. */
  parameters?: { binary_data_size: number };
}

/** A v2 infer response. */
export interface InferResponse {
  model_name: string;
  model_version?: string;
  id?: string;
  outputs: InferOutputTensor[];
}

/**
 * The v2 response: one FP32 output of shape `[batch, numClasses]`, with flat data or, when
 * `binaryOutput`, with its `binary_data_size` (the bytes then follow the JSON, see
 * {@link encodeInferResponse}).
 */
export function inferResponse(init: InferResponseInit): InferResponse {
  const { probabilities, batch, numClasses } = init;
  checkLength(probabilities, batch, numClasses);
  const output: InferOutputTensor = {
    name: init.outputName,
    shape: [batch, numClasses],
    datatype: 'FP32',
  };
  if (init.binaryOutput === true) {
    output.parameters = { binary_data_size: probabilities.byteLength };
  } else {
    output.data = Array.from(probabilities);
  }
  return {
    model_name: init.modelName,
    ...(init.modelVersion === undefined ? {} : { model_version: init.modelVersion }),
    ...(init.id === undefined ? {} : { id: init.id }),
    outputs: [output],
  };
}

/** A v2 response as it goes on the wire. */
export interface EncodedInferResponse {
  /** The JSON response; with a binary output, the JSON header followed by the tensor's bytes. */
  body: Buffer;
  /**
   * With a binary output, the JSON header's byte length (the `Inference-Header-Content-Length`
   * response header); undefined for a plain JSON response.
   */
  headerLength: number | undefined;
}

/**
 * The v2 response body: the JSON of {@link inferResponse}, followed, when `binaryOutput`, by the
 * probabilities as little-endian FP32 bytes (the binary tensor data extension).
 */
export function encodeInferResponse(init: InferResponseInit): EncodedInferResponse {
  const json = Buffer.from(JSON.stringify(inferResponse(init)), 'utf8');
  if (init.binaryOutput !== true) return { body: json, headerLength: undefined };
  return {
    body: Buffer.concat([json, littleEndianBytes(init.probabilities)]),
    headerLength: json.length,
  };
}

/** TF Serving's response: `predictions` for the row format, `outputs` for the columnar one. */
export type PredictResponse = { predictions: number[][] } | { outputs: number[][] };

/** The TF Serving response in the request's format: one list of K probabilities per image. */
export function predictResponse(
  format: PredictFormat,
  probabilities: Float32Array,
  batch: number,
  numClasses: number,
): PredictResponse {
  const rows = splitRows(probabilities, batch, numClasses);
  return format === 'row' ? { predictions: rows } : { outputs: rows };
}

/** Splits `batch * width` row-major values into `batch` plain arrays of `width` numbers. */
export function splitRows(values: Float32Array, batch: number, width: number): number[][] {
  checkLength(values, batch, width);
  const rows: number[][] = [];
  for (let i = 0; i < batch; i++) {
    rows.push(Array.from(values.subarray(i * width, (i + 1) * width)));
  }
  return rows;
}

/** A v2 tensor description in model metadata. */
export interface TensorMetadata {
  name: string;
  datatype: string;
  shape: number[];
}

/** The v2 model metadata response (`GET /v2/models/{m}`). */
export interface ModelMetadata {
  name: string;
  versions?: string[];
  platform: string;
  inputs: TensorMetadata[];
  outputs: TensorMetadata[];
}

/** The v2 model metadata: input `[-1, R, R, C]` and output `[-1, K]`, both FP32. */
export function modelMetadata(
  init: { modelName: string; versions?: string[] | undefined; platform?: string | undefined },
  signature: ModelSignature,
): ModelMetadata {
  const { resolution: r, channels: c } = signature;
  const metadata: ModelMetadata = {
    name: init.modelName,
    platform: init.platform ?? 'tensorflowjs',
    inputs: [{ name: signature.inputName, datatype: 'FP32', shape: [-1, r, r, c] }],
    outputs: [{ name: signature.outputName, datatype: 'FP32', shape: [-1, signature.numClasses] }],
  };
  if (init.versions !== undefined) metadata.versions = init.versions;
  return metadata;
}

/**
 * A short description of a JSON value for error messages: numbers, booleans and null as they are,
 * strings quoted (and cut at 40 characters), arrays and objects by kind and length, a missing
 * value as `nothing`. Never walks into the value.
 */
export function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  switch (typeof value) {
    case 'number':
    case 'boolean':
    case 'bigint':
      return String(value);
    case 'string':
      return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value);
    case 'object':
      if (Array.isArray(value)) {
        return value.length === 0 ? 'an empty array' : `an array of ${elements(value.length)}`;
      }
      return 'an object';
    default:
      return typeof value;
  }
}

// --- Internals ---------------------------------------------------------------------------------

/** `1 element`, `28 elements`. */
function elements(count: number): string {
  return count === 1 ? '1 element' : `${count} elements`;
}

type JsonObject = Readonly<Record<string, unknown>>;

/**
 * How one element of the image data is checked and scaled to [0, 1], whether it came as JSON or
 * as binary tensor data: binary elements go through the same `read`.
 */
interface ElementReader {
  /** What a valid element is, for the error message. */
  readonly expected: string;
  /** The value to store, or undefined when `value` is not valid. */
  read(value: unknown): number | undefined;
  /** Bytes per element as binary tensor data. */
  readonly byteSize: number;
  /**
   * The elements of little-endian binary tensor data (a whole number of elements). A returned
   * Float32Array is also where the scaled values go, so FP32 data is checked in place.
   */
  elements(bytes: Uint8Array): Float32Array | Uint8Array;
}

/** Largest finite float32; a larger number would become Infinity in the Float32Array. */
const FLOAT32_MAX = 3.4028234663852886e38;

/** Whether typed arrays on this host are little-endian, as binary tensor data is. */
const LITTLE_ENDIAN = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;

const FP32_READER: ElementReader = {
  expected: 'a finite number',
  read: (value) =>
    typeof value === 'number' && Math.abs(value) <= FLOAT32_MAX ? value : undefined,
  byteSize: 4,
  elements: float32s,
};

const UINT8_READER: ElementReader = {
  expected: 'an integer in 0..255 (UINT8)',
  read: (value) =>
    typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= 255
      ? value / 255
      : undefined,
  byteSize: 1,
  elements: (bytes) => bytes,
};

/**
 * Little-endian FP32 bytes as floats: a view over the same memory when the bytes are 4-aligned
 * (when the JSON header's length is a multiple of 4, or the body is a raw binary request), else a
 * copy, as a Float32Array cannot start at an unaligned offset.
 */
function float32s(bytes: Uint8Array): Float32Array {
  const count = bytes.byteLength / 4;
  if (LITTLE_ENDIAN && bytes.byteOffset % 4 === 0) {
    return new Float32Array(bytes.buffer, bytes.byteOffset, count);
  }
  const out = new Float32Array(count);
  if (LITTLE_ENDIAN) {
    new Uint8Array(out.buffer).set(bytes);
  } else {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let i = 0; i < count; i++) out[i] = view.getFloat32(i * 4, true);
  }
  return out;
}

/** `values` as little-endian FP32 bytes: their own memory on a little-endian host. */
function littleEndianBytes(values: Float32Array): Uint8Array {
  if (LITTLE_ENDIAN) return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  const out = new Uint8Array(values.byteLength);
  const view = new DataView(out.buffer);
  for (let i = 0; i < values.length; i++) view.setFloat32(i * 4, values[i] ?? 0, true);
  return out;
}

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isArray(value: unknown): value is readonly unknown[] {
  return Array.isArray(value);
}

/** An own property only, so that keys such as `constructor` never reach Object.prototype. */
function field(object: JsonObject, key: string): unknown {
  return Object.hasOwn(object, key) ? object[key] : undefined;
}

function expectObject(value: unknown, path: string): JsonObject {
  if (!isObject(value)) {
    throw badRequest(`${path}: expected a JSON object, got ${describeValue(value)}`);
  }
  return value;
}

/** An optional boolean parameter such as `binary_data`; undefined when absent. */
function readFlag(parameters: JsonObject, key: string, path: string): boolean | undefined {
  const value = field(parameters, key);
  if (value !== undefined && typeof value !== 'boolean') {
    throw badRequest(`${path}.${key}: expected true or false, got ${describeValue(value)}`);
  }
  return value;
}

/** Refuses Triton's shared-memory parameters, which would otherwise be silently ignored. */
function rejectSharedMemory(parameters: JsonObject, path: string, instead: string): void {
  if (field(parameters, 'shared_memory_region') !== undefined) {
    throw badRequest(`${path}.shared_memory_region: shared memory is not supported; ${instead}`);
  }
}

/** Allows only `name` as the key of an object standing for the model's single input. */
function rejectOtherKeys(object: JsonObject, path: string, name: string): void {
  for (const key in object) {
    if (Object.hasOwn(object, key) && key !== name) {
      throw badRequest(
        `${path}: unknown input ${describeValue(key)}; the model's only input is "${name}"`,
      );
    }
  }
}

/** `[N, 28, 28, 1]`: the expected shape of a v2 input. */
function expectedShape(signature: ModelSignature): string {
  const { resolution: r, channels: c } = signature;
  return `[N, ${r}, ${r}, ${c}]`;
}

/** A short shape for messages: `[1, 784]` when it is a few numbers, else its description. */
function formatShape(shape: readonly unknown[]): string {
  if (shape.length <= 8 && shape.every((d) => typeof d === 'number')) {
    return `[${shape.join(', ')}]`;
  }
  return describeValue(shape);
}

function tooManyImages(path: string, count: number, signature: ModelSignature): HttpError {
  return payloadTooLarge(
    `${path}: ${count} images exceed the limit of ${signature.maxBatchSize} per request`,
  );
}

function readInferInput(
  inputs: unknown,
  signature: ModelSignature,
  binary: Uint8Array | undefined,
): ImageBatch {
  const name = signature.inputName;
  if (!isArray(inputs)) {
    throw badRequest(
      `inputs: expected an array with one tensor named "${name}", got ${describeValue(inputs)}`,
    );
  }
  if (inputs.length !== 1) {
    throw badRequest(`inputs: expected exactly 1 input tensor ("${name}"), got ${inputs.length}`);
  }
  const input = expectObject(inputs[0], 'inputs[0]');

  const inputName = field(input, 'name');
  if (inputName !== name) {
    throw badRequest(`inputs[0].name: expected "${name}", got ${describeValue(inputName)}`);
  }

  const datatype = field(input, 'datatype');
  const accepted = ACCEPTED_DATATYPES.join(' or ');
  let reader: ElementReader;
  if (datatype === 'FP32') {
    reader = FP32_READER;
  } else if (datatype === 'UINT8') {
    reader = UINT8_READER;
  } else if (typeof datatype === 'string' && V2_DATATYPES.includes(datatype)) {
    throw badRequest(`inputs[0].datatype: expected ${accepted}, got "${datatype}"`);
  } else {
    const unknown = typeof datatype === 'string' ? ' (not a v2 datatype)' : '';
    throw badRequest(
      `inputs[0].datatype: expected ${accepted}, got ${describeValue(datatype)}${unknown}`,
    );
  }

  const shape = field(input, 'shape');
  if (!isArray(shape) || shape.length !== 4) {
    const got = isArray(shape) ? formatShape(shape) : describeValue(shape);
    throw badRequest(`inputs[0].shape: expected ${expectedShape(signature)}, got ${got}`);
  }
  const n = shape[0];
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1) {
    throw badRequest(
      `inputs[0].shape[0]: expected the batch size (an integer >= 1), got ${describeValue(n)}`,
    );
  }
  const dims = [signature.resolution, signature.resolution, signature.channels];
  for (let d = 0; d < 3; d++) {
    if (shape[d + 1] !== dims[d]) {
      throw badRequest(
        `inputs[0].shape[${d + 1}]: expected ${dims[d]} (shape ${expectedShape(signature)}), ` +
          `got ${describeValue(shape[d + 1])}`,
      );
    }
  }
  if (n > signature.maxBatchSize) throw tooManyImages('inputs[0].shape[0]', n, signature);

  const count = n * rowSize(signature);
  const data = field(input, 'data');
  let binarySize = 0;
  const parameters = field(input, 'parameters');
  if (parameters !== undefined) {
    const object = expectObject(parameters, 'inputs[0].parameters');
    rejectSharedMemory(object, 'inputs[0].parameters', 'send "data" as JSON or binary data');
    const declared = field(object, 'binary_data_size');
    if (declared !== undefined) {
      const tensor = `shape ${formatShape(shape)} ${datatype}`;
      binarySize = readBinarySize(declared, count * reader.byteSize, tensor, data, binary);
    }
  }
  // The one input is the only binary tensor, so its size must account for every byte after the
  // JSON header: anything else means a wrong header length or a lost tensor.
  if (binary !== undefined && binary.byteLength !== binarySize) {
    throw badRequest(
      `request body: ${binary.byteLength} bytes of binary tensor data follow the JSON header, ` +
        `but the inputs' binary_data_size add up to ${binarySize}`,
    );
  }
  if (binary !== undefined && binarySize > 0) {
    return { batch: n, data: readBinaryValues(binary, reader, 'inputs[0] binary data') };
  }

  if (!isArray(data)) {
    throw badRequest(`inputs[0].data: expected an array, got ${describeValue(data)}`);
  }
  if (data.length > 0 && isArray(data[0])) {
    // Nested: must match the shape exactly. Allocation is bounded by maxBatchSize (checked above).
    const out = new Float32Array(count);
    fillNested(data, [n, ...dims], 'inputs[0].data', reader, out, 0);
    return { batch: n, data: out };
  }
  if (data.length !== count) {
    throw badRequest(
      `inputs[0].data: expected ${count} values for shape ${formatShape(shape)}, ` +
        `got ${data.length}`,
    );
  }
  return { batch: n, data: readFlat(data, reader, new Float32Array(count), 'inputs[0].data') };
}

/**
 * The input's `binary_data_size`, which must be the byte size of its tensor (`expected` bytes for
 * `tensor`), with binary data present and no JSON `data`.
 */
function readBinarySize(
  declared: unknown,
  expected: number,
  tensor: string,
  data: unknown,
  binary: Uint8Array | undefined,
): number {
  const path = 'inputs[0].parameters.binary_data_size';
  if (binary === undefined) {
    throw badRequest(
      `${path}: binary tensor data needs the Inference-Header-Content-Length header ` +
        '(the byte length of the JSON before the binary data)',
    );
  }
  if (data !== undefined) {
    throw badRequest(
      `inputs[0].data: expected no data with parameters.binary_data_size (the tensor is in ` +
        `the binary data), got ${describeValue(data)}`,
    );
  }
  if (typeof declared !== 'number' || !Number.isInteger(declared) || declared < 0) {
    throw badRequest(
      `${path}: expected a byte count (an integer >= 0), got ${describeValue(declared)}`,
    );
  }
  if (declared !== expected) {
    throw badRequest(`${path}: expected ${expected} bytes for ${tensor}, got ${declared}`);
  }
  return declared;
}

/**
 * Checks and scales flat `values` into `out` (all of it), naming a bad element `${base}[i]`.
 * `out` may be `values` itself: FP32 binary data is checked in place.
 */
function readFlat(
  values: ArrayLike<unknown>,
  reader: ElementReader,
  out: Float32Array,
  base: string,
): Float32Array {
  for (let i = 0; i < out.length; i++) {
    const value = reader.read(values[i]);
    if (value === undefined) {
      throw badRequest(
        `${base}[${i}]: expected ${reader.expected}, got ${describeValue(values[i])}`,
      );
    }
    out[i] = value;
  }
  return out;
}

/** Binary tensor data, whose length has been checked, as checked and scaled values. */
function readBinaryValues(bytes: Uint8Array, reader: ElementReader, base: string): Float32Array {
  const elements = reader.elements(bytes);
  const out = elements instanceof Float32Array ? elements : new Float32Array(elements.length);
  return readFlat(elements, reader, out, base);
}

/**
 * The requested outputs and whether the output goes as binary data: an output's own
 * `binary_data` wins over the request's `binary_data_output` (`binaryDefault`).
 */
function readRequestedOutputs(
  outputs: unknown,
  signature: ModelSignature,
  binaryDefault: boolean,
): { requestedOutputs: string[]; binaryOutput: boolean } {
  const name = signature.outputName;
  // Left out or empty, `outputs` asks for every output.
  const all = { requestedOutputs: [name], binaryOutput: binaryDefault };
  if (outputs === undefined) return all;
  if (!isArray(outputs)) {
    throw badRequest(`outputs: expected an array, got ${describeValue(outputs)}`);
  }
  let binaryOutput = binaryDefault;
  for (let i = 0; i < outputs.length; i++) {
    const output = expectObject(outputs[i], `outputs[${i}]`);
    const outputName = field(output, 'name');
    if (outputName !== name) {
      throw badRequest(
        `outputs[${i}].name: expected "${name}" (the model's only output), ` +
          `got ${describeValue(outputName)}`,
      );
    }
    if (i > 0) {
      // It could be asked for once as JSON and once as binary data, but it is answered once.
      throw badRequest(`outputs[${i}].name: "${name}" is already requested by outputs[0]`);
    }
    const parameters = field(output, 'parameters');
    if (parameters !== undefined) {
      const path = `outputs[${i}].parameters`;
      const object = expectObject(parameters, path);
      if (field(object, 'classification') !== undefined) {
        throw badRequest(
          `${path}.classification: not supported; request "${name}" and rank the classes`,
        );
      }
      rejectSharedMemory(object, path, 'leave it out to get the output in the response');
      binaryOutput = readFlag(object, 'binary_data', path) ?? binaryOutput;
    }
  }
  return { ...all, binaryOutput };
}

/**
 * TF Serving images: `value` must be an array of 1..maxBatchSize images, each an R×R×C nested
 * array or, when `objectInstances`, an object `{[inputName]: R×R×C}`.
 */
function readImages(
  value: unknown,
  path: string,
  signature: ModelSignature,
  objectInstances: boolean,
): ImageBatch {
  const { resolution: r, channels: c, maxBatchSize } = signature;
  const what = objectInstances ? 'instances' : 'images';
  if (!isArray(value)) {
    throw badRequest(
      `${path}: expected an array of 1 to ${maxBatchSize} ${what}, got ${describeValue(value)}`,
    );
  }
  if (value.length === 0) {
    throw badRequest(`${path}: expected at least 1 ${what.slice(0, -1)}, got an empty array`);
  }
  if (value.length > maxBatchSize) throw tooManyImages(path, value.length, signature);
  const size = rowSize(signature);
  const dims = [r, r, c];
  const out = new Float32Array(value.length * size);
  for (let i = 0; i < value.length; i++) {
    let image = value[i];
    let imagePath = `${path}[${i}]`;
    if (objectInstances && isObject(image)) {
      rejectOtherKeys(image, imagePath, signature.inputName);
      image = field(image, signature.inputName);
      imagePath = `${imagePath}.${signature.inputName}`;
    }
    fillNested(image, dims, imagePath, FP32_READER, out, i * size);
  }
  return { batch: value.length, data: out };
}

/**
 * Copies nested arrays of exactly `dims` (row-major) into `out` from `offset`; returns the offset
 * after the last value. The recursion is as deep as `dims` is long, whatever the input's nesting.
 */
function fillNested(
  root: unknown,
  dims: readonly number[],
  base: string,
  reader: ElementReader,
  out: Float32Array,
  offset: number,
): number {
  const index: number[] = [];
  const pathAt = (last?: number): string =>
    base + index.map((i) => `[${i}]`).join('') + (last === undefined ? '' : `[${last}]`);
  const leaf = dims.length - 1;
  let o = offset;
  const walk = (node: unknown, depth: number): void => {
    const length = dims[depth] ?? 0;
    if (!isArray(node)) {
      throw badRequest(
        `${pathAt()}: expected an array of ${elements(length)}, got ${describeValue(node)}`,
      );
    }
    if (node.length !== length) {
      throw badRequest(`${pathAt()}: expected ${elements(length)}, got ${node.length}`);
    }
    if (depth === leaf) {
      for (let i = 0; i < length; i++) {
        const value = reader.read(node[i]);
        if (value === undefined) {
          throw badRequest(
            `${pathAt(i)}: expected ${reader.expected}, got ${describeValue(node[i])}`,
          );
        }
        out[o++] = value;
      }
      return;
    }
    for (let i = 0; i < length; i++) {
      index.push(i);
      walk(node[i], depth + 1);
      index.pop();
    }
  };
  walk(root, 0);
  return o;
}

function checkLength(values: Float32Array, batch: number, width: number): void {
  if (!Number.isInteger(batch) || batch < 0 || values.length !== batch * width) {
    throw new RangeError(
      `expected ${batch} rows of ${width} values, got ${values.length} values in all`,
    );
  }
}
