/** Reads an ONNX model's metadata_props without a full protobuf decoder. */
import { fieldText, readFields } from './protobuf.js';
import { EntryField, ModelField } from './schema.js';

/** The model's metadata_props as a map; throws ProtoDecodeError on bytes that are not protobuf. */
export function readOnnxMetadata(model: Uint8Array): Map<string, string> {
  const metadata = new Map<string, string>();
  for (const field of readFields(model)) {
    if (field.field !== ModelField.metadataProps || field.wireType !== 2) continue;
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
