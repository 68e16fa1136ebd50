/** Reads parts of an ONNX model file without a full protobuf decoder: its metadata and nodes. */
import { fieldText, readFields, WireType } from './protobuf.js';
import { EntryField, GraphField, ModelField, NodeField } from './schema.js';

/** The model's metadata_props as a map; throws ProtoDecodeError on bytes that are not protobuf. */
export function readOnnxMetadata(model: Uint8Array): Map<string, string> {
  const metadata = new Map<string, string>();
  for (const field of readFields(model)) {
    if (field.field !== ModelField.metadataProps || field.wireType !== WireType.LENGTH_DELIMITED) {
      continue;
    }
    let key = '';
    let value = '';
    for (const entry of readFields(field.bytes)) {
      if (entry.field === EntryField.key) key = fieldText(entry);
      else if (entry.field === EntryField.value) value = fieldText(entry);
    }
    metadata.set(key, value);
  }
  return metadata;
}

/** The graph's nodes in file order: operator type and node name. */
export function readOnnxNodes(model: Uint8Array): { opType: string; name: string }[] {
  const nodes: { opType: string; name: string }[] = [];
  for (const field of readFields(model)) {
    if (field.field !== ModelField.graph || field.wireType !== WireType.LENGTH_DELIMITED) continue;
    for (const graphField of readFields(field.bytes)) {
      if (graphField.field !== GraphField.node || graphField.wireType !== WireType.LENGTH_DELIMITED)
        continue;
      let opType = '';
      let name = '';
      for (const nodeField of readFields(graphField.bytes)) {
        if (nodeField.field === NodeField.opType) opType = fieldText(nodeField);
        else if (nodeField.field === NodeField.name) name = fieldText(nodeField);
      }
      nodes.push({ opType, name });
    }
  }
  return nodes;
}
