/** Reads parts of an ONNX model file without a full protobuf decoder: its metadata and nodes. */
import { fieldText, readFields, WireType } from './protobuf.js';
import { EntryField, GraphField, ModelField, NodeField } from './schema.js';

/** The model's metadata_props as a map; throws ProtoDecodeError on bytes that are not protobuf. */
export function readOnnxMetadata(model: Uint8Array): Map<string, string> {
  const metadata = new Map<string, string>();
  for (const entry of embedded(model, ModelField.metadataProps)) {
    const text = strings(entry, EntryField.key, EntryField.value);
    metadata.set(text[EntryField.key] ?? '', text[EntryField.value] ?? '');
  }
  return metadata;
}

/** The graph's nodes in file order: operator type and node name. */
export function readOnnxNodes(model: Uint8Array): { opType: string; name: string }[] {
  return [...embedded(model, ModelField.graph)].flatMap((graph) =>
    [...embedded(graph, GraphField.node)].map((node) => {
      const text = strings(node, NodeField.opType, NodeField.name);
      return { opType: text[NodeField.opType] ?? '', name: text[NodeField.name] ?? '' };
    }),
  );
}

/** The bytes of each embedded message in field `field` of `message`. */
function* embedded(message: Uint8Array, field: number): Generator<Uint8Array> {
  for (const f of readFields(message)) {
    if (f.field === field && f.wireType === WireType.LENGTH_DELIMITED) yield f.bytes;
  }
}

/** The string fields `fields` of `message`, by field number (the last one wins, as in protobuf). */
function strings(message: Uint8Array, ...fields: number[]): Partial<Record<number, string>> {
  const text: Partial<Record<number, string>> = {};
  for (const f of readFields(message)) if (fields.includes(f.field)) text[f.field] = fieldText(f);
  return text;
}
