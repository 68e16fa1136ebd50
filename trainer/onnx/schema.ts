/**
 * The ONNX messages this project writes, as protobuf builders over {@link ProtoWriter}. Field
 * numbers and enum values are onnx.proto's (ONNX 1.16+, IR version 10), named as it names them.
 */
import { ProtoWriter } from './protobuf.js';

/** The IR version written: ONNX 1.16's, the first with opset 21. */
export const IR_VERSION = 10;
/**
 * The default-domain opset written (ONNX 1.16; ONNX Runtime reads it from 1.18). Every operator
 * used (Conv, Gemm, HardSigmoid, HardSwish, Clip, Softmax, GlobalAveragePool, Reshape, Flatten,
 * Transpose, Identity, Mul, Add, Relu) means the same since opset 14, where HardSwish appeared:
 * a runtime that only reads an older opset can take the file after a version conversion.
 */
export const OPSET = 21;

/** TensorProto.DataType. */
export const DataType = { FLOAT: 1, UINT8: 2, INT64: 7 } as const;
type DataTypeValue = (typeof DataType)[keyof typeof DataType];

/** AttributeProto.AttributeType. */
const AttributeType = { FLOAT: 1, INT: 2, STRING: 3, FLOATS: 6, INTS: 7 } as const;

/** An attribute value: numbers are INT when integral, FLOAT when marked with {@link float}. */
export type AttributeValue = number | string | readonly number[] | { readonly float: number };

/** Marks a number as a FLOAT attribute (an integral float, such as 1.0, would otherwise be INT). */
export function float(value: number): { readonly float: number } {
  return { float: value };
}

/** One graph node. */
export interface OnnxNode {
  readonly opType: string;
  readonly name: string;
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  readonly attributes?: Readonly<Record<string, AttributeValue>>;
}

/** A constant tensor (a weight or a shape), stored as raw little-endian bytes. */
export interface OnnxTensor {
  readonly name: string;
  readonly dims: readonly number[];
  readonly data: Float32Array | BigInt64Array;
}

/** A graph input or output: element type and shape, a string for a symbolic dimension. */
export interface OnnxValueInfo {
  readonly name: string;
  readonly elementType: DataTypeValue;
  readonly shape: readonly (number | string)[];
  readonly docString?: string;
}

/** Everything a model file holds, in the order ONNX writes it. */
export interface OnnxModel {
  readonly producerName: string;
  readonly producerVersion: string;
  readonly docString: string;
  readonly graphName: string;
  readonly nodes: readonly OnnxNode[];
  readonly initializers: readonly OnnxTensor[];
  readonly inputs: readonly OnnxValueInfo[];
  readonly outputs: readonly OnnxValueInfo[];
  readonly metadata: Readonly<Record<string, string>>;
}

/** ModelProto, GraphProto and NodeProto field numbers that readers of our files look up. */
export const ModelField = { graph: 7, metadataProps: 14 } as const;
export const GraphField = { node: 1 } as const;
export const NodeField = { name: 3, opType: 4 } as const;
/** StringStringEntryProto field numbers. */
export const EntryField = { key: 1, value: 2 } as const;

/** Encodes `model` as an ONNX ModelProto. */
export function encodeModel(model: OnnxModel): Uint8Array {
  const graph = new ProtoWriter();
  for (const node of model.nodes) graph.message(GraphField.node, nodeProto(node));
  graph.string(2, model.graphName);
  for (const tensor of model.initializers) graph.message(5, tensorProto(tensor));
  for (const input of model.inputs) graph.message(11, valueInfoProto(input));
  for (const output of model.outputs) graph.message(12, valueInfoProto(output));

  const proto = new ProtoWriter()
    .int(1, IR_VERSION)
    .string(2, model.producerName)
    .string(3, model.producerVersion)
    .string(6, model.docString)
    .message(ModelField.graph, graph)
    .message(8, new ProtoWriter().string(1, '').int(2, OPSET));
  for (const [key, value] of Object.entries(model.metadata)) {
    proto.message(
      ModelField.metadataProps,
      new ProtoWriter().string(EntryField.key, key).string(EntryField.value, value),
    );
  }
  return proto.finish();
}

function nodeProto(node: OnnxNode): ProtoWriter {
  const proto = new ProtoWriter();
  for (const input of node.inputs) proto.string(1, input);
  for (const output of node.outputs) proto.string(2, output);
  proto.string(NodeField.name, node.name).string(NodeField.opType, node.opType);
  for (const [name, value] of Object.entries(node.attributes ?? {})) {
    proto.message(5, attributeProto(name, value));
  }
  return proto;
}

function attributeProto(name: string, value: AttributeValue): ProtoWriter {
  const proto = new ProtoWriter().string(1, name);
  if (typeof value === 'string') return proto.int(20, AttributeType.STRING).string(4, value);
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) throw new Error(`attribute ${name}: ${value} is not an integer`);
    return proto.int(20, AttributeType.INT).int(3, value);
  }
  if ('float' in value) return proto.int(20, AttributeType.FLOAT).float(2, value.float);
  return proto.int(20, AttributeType.INTS).packedInts(8, value);
}

function tensorProto(tensor: OnnxTensor): ProtoWriter {
  const data = tensor.data;
  return new ProtoWriter()
    .packedInts(1, tensor.dims)
    .int(2, data instanceof Float32Array ? DataType.FLOAT : DataType.INT64)
    .string(8, tensor.name)
    .bytes(9, littleEndianBytes(data));
}

function valueInfoProto(info: OnnxValueInfo): ProtoWriter {
  const shape = new ProtoWriter();
  for (const dim of info.shape) {
    shape.message(
      1,
      typeof dim === 'number' ? new ProtoWriter().int(1, dim) : new ProtoWriter().string(2, dim),
    );
  }
  const tensorType = new ProtoWriter().int(1, info.elementType).message(2, shape);
  const proto = new ProtoWriter()
    .string(1, info.name)
    .message(2, new ProtoWriter().message(1, tensorType));
  if (info.docString) proto.string(3, info.docString);
  return proto;
}

/** raw_data is little-endian whatever the host; copy only on a big-endian host. */
function littleEndianBytes(data: Float32Array | BigInt64Array): Uint8Array {
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] === 1) return bytes;
  const copy = new Uint8Array(data.byteLength);
  const view = new DataView(copy.buffer);
  data.forEach((value: number | bigint, i: number) => {
    if (typeof value === 'bigint') view.setBigInt64(i * 8, value, true);
    else view.setFloat32(i * 4, value, true);
  });
  return copy;
}
