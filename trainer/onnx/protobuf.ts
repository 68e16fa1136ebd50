/**
 * The protobuf wire format, as much of it as ONNX model files need: a writer for the messages the
 * exporter emits and a reader that walks a message's fields (to read a model's metadata back).
 *
 * Why not a library: the exporter writes nine ONNX messages and reads one field of one, and the
 * candidates each cost more than these hundred lines. `onnx-proto` is generated from ONNX 1.10
 * (IR 8) on protobufjs 6 and unmaintained; protobufjs itself is a dynamic runtime that would still
 * need the schema written out here; @bufbuild/protobuf needs code generated from onnx.proto and
 * checked in. The field numbers live in one place, `schema.ts`, each named as onnx.proto
 * names it, and every file written is checked by a real consumer (onnxruntime-node) in the tests.
 */

/** Wire types (protobuf encoding spec). */
export const WireType = { VARINT: 0, FIXED64: 1, LENGTH_DELIMITED: 2, FIXED32: 5 } as const;
const { VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 } = WireType;

/** A message under construction: append fields in any order, then {@link finish}. */
export class ProtoWriter {
  private readonly parts: Uint8Array[] = [];
  private scratch: number[] = [];
  private size = 0;

  /** An int32/int64/enum/bool field (negative values take ten bytes, as protobuf requires). */
  int(field: number, value: number | bigint): this {
    this.tag(field, VARINT);
    this.varint(value);
    return this;
  }

  /** A `float` field (fixed32, little-endian). */
  float(field: number, value: number): this {
    this.tag(field, FIXED32);
    this.flushScratch();
    const bytes = new Uint8Array(4);
    new DataView(bytes.buffer).setFloat32(0, value, true);
    this.push(bytes);
    return this;
  }

  /** A `string` field (UTF-8). */
  string(field: number, value: string): this {
    return this.bytes(field, new TextEncoder().encode(value));
  }

  /** A `bytes` field; the array is referenced, not copied, until {@link finish}. */
  bytes(field: number, value: Uint8Array): this {
    this.tag(field, LENGTH_DELIMITED);
    this.varint(value.length);
    this.flushScratch();
    this.push(value);
    return this;
  }

  /** An embedded message field. */
  message(field: number, value: ProtoWriter): this {
    return this.bytes(field, value.finish());
  }

  /** A packed `repeated int64`/`int32` field. */
  packedInts(field: number, values: readonly (number | bigint)[]): this {
    const packed = new ProtoWriter();
    for (const value of values) packed.varint(value);
    return this.bytes(field, packed.finish());
  }

  /** A packed `repeated float` field. */
  packedFloats(field: number, values: readonly number[]): this {
    const bytes = new Uint8Array(values.length * 4);
    const view = new DataView(bytes.buffer);
    values.forEach((value, i) => {
      view.setFloat32(i * 4, value, true);
    });
    return this.bytes(field, bytes);
  }

  /** The encoded message. */
  finish(): Uint8Array {
    this.flushScratch();
    if (this.parts.length === 1 && this.parts[0]) return this.parts[0];
    const out = new Uint8Array(this.size);
    let offset = 0;
    for (const part of this.parts) {
      out.set(part, offset);
      offset += part.length;
    }
    this.parts.splice(0, this.parts.length, out);
    return out;
  }

  private tag(field: number, wireType: number): void {
    this.varint((field << 3) | wireType);
  }

  private varint(value: number | bigint): void {
    if (typeof value === 'number' && !Number.isSafeInteger(value)) {
      throw new RangeError(`a protobuf integer must be a safe integer, got ${value}`);
    }
    if (typeof value === 'number' && value >= 0) {
      let v = value;
      while (v > 0x7f) {
        this.scratch.push((v % 128) | 0x80);
        v = Math.floor(v / 128);
      }
      this.scratch.push(v);
      return;
    }
    // Negative or large: two's complement in 64 bits, seven bits at a time.
    let v = BigInt.asUintN(64, BigInt(value));
    while (v > 0x7fn) {
      this.scratch.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    this.scratch.push(Number(v));
  }

  private flushScratch(): void {
    if (this.scratch.length === 0) return;
    this.push(Uint8Array.from(this.scratch));
    this.scratch = [];
  }

  private push(bytes: Uint8Array): void {
    this.parts.push(bytes);
    this.size += bytes.length;
  }
}

/** One field read from a message: a varint's value, or a length-delimited field's bytes. */
export type ProtoField =
  | { readonly field: number; readonly wireType: typeof VARINT; readonly value: bigint }
  | {
      readonly field: number;
      readonly wireType: typeof LENGTH_DELIMITED;
      readonly bytes: Uint8Array;
    }
  | {
      readonly field: number;
      readonly wireType: typeof FIXED32 | typeof FIXED64;
      readonly bytes: Uint8Array;
    };

/** Thrown for bytes that are not a well-formed protobuf message. */
export class ProtoDecodeError extends Error {
  override readonly name = 'ProtoDecodeError';
}

/** The fields of the message in `buffer`, in file order; throws on truncated or invalid input. */
export function* readFields(buffer: Uint8Array): Generator<ProtoField> {
  let offset = 0;
  const varint = (): bigint => {
    let result = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      const byte = buffer[offset++];
      if (byte === undefined) throw new ProtoDecodeError(`truncated varint at byte ${offset - 1}`);
      result |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return result;
    }
    throw new ProtoDecodeError(`varint longer than ten bytes at byte ${offset}`);
  };
  const take = (length: number): Uint8Array => {
    if (offset + length > buffer.length) {
      throw new ProtoDecodeError(
        `field of ${length} bytes at byte ${offset} runs past the end (${buffer.length} bytes)`,
      );
    }
    const bytes = buffer.subarray(offset, offset + length);
    offset += length;
    return bytes;
  };
  while (offset < buffer.length) {
    const key = varint();
    const field = Number(key >> 3n);
    const wireType = Number(key & 7n);
    if (field === 0) throw new ProtoDecodeError(`field number 0 at byte ${offset}`);
    switch (wireType) {
      case VARINT:
        yield { field, wireType, value: varint() };
        break;
      case LENGTH_DELIMITED:
        yield { field, wireType, bytes: take(Number(varint())) };
        break;
      case FIXED32:
        yield { field, wireType, bytes: take(4) };
        break;
      case FIXED64:
        yield { field, wireType, bytes: take(8) };
        break;
      default:
        throw new ProtoDecodeError(`unsupported wire type ${wireType} for field ${field}`);
    }
  }
}

/** The UTF-8 text of a length-delimited field. */
export function fieldText(field: ProtoField): string {
  if (field.wireType !== LENGTH_DELIMITED) {
    throw new ProtoDecodeError(`field ${field.field} is not a string`);
  }
  return new TextDecoder('utf-8', { fatal: true }).decode(field.bytes);
}
