// Minimal protobuf wire-format reading and writing, for the paths that must not decode whole
// messages: splitting a request into resources, reading resource attributes, counting items.

export const WIRE_VARINT = 0;
export const WIRE_I64 = 1;
export const WIRE_LEN = 2;
export const WIRE_I32 = 5;

/** Raised for bytes that are not a well-formed protobuf message; `path` names where. */
/** Segments of an error's path shown at each end; a path through deep nesting has its middle elided. */
const PATH_ENDS = 8;

function shortPath(path: readonly string[]): string {
  if (path.length <= 2 * PATH_ENDS + 1) return path.join('.');
  return `${path.slice(0, PATH_ENDS).join('.')}.….${path.slice(-PATH_ENDS).join('.')}`;
}

export class WireFormatError extends Error {
  constructor(
    readonly detail: string,
    readonly path: string[] = [],
  ) {
    super(detail);
  }

  /** Prefixes a location segment while the error travels up through nested messages. */
  at(segment: string): WireFormatError {
    this.path.unshift(segment);
    this.message = `${shortPath(this.path)}: ${this.detail}`;
    return this;
  }

  /** Prefixes several segments at once, outermost first. */
  within(segments: readonly string[]): WireFormatError {
    this.path.unshift(...segments);
    this.message = `${shortPath(this.path)}: ${this.detail}`;
    return this;
  }
}

export class WireReader {
  pos: number;

  constructor(
    public buf: Uint8Array,
    start: number,
    public end: number,
  ) {
    this.pos = start;
  }

  /** Points the reader at another range, so a hot loop can reuse one reader. */
  reset(buf: Uint8Array, start: number, end: number): this {
    this.buf = buf;
    this.pos = start;
    this.end = end;
    return this;
  }

  get done(): boolean {
    return this.pos >= this.end;
  }

  /** Reads a varint of up to 53 significant bits; longer values are clamped to precision loss-free length checks by callers. */
  varint(): number {
    const buf = this.buf;
    let pos = this.pos;
    let result = 0;
    let shift = 1;
    for (let i = 0; i < 10; i++) {
      if (pos >= this.end) throw new WireFormatError('truncated varint');
      const byte = buf[pos++]!;
      result += (byte & 0x7f) * shift;
      if (byte < 0x80) {
        this.pos = pos;
        return result;
      }
      shift *= 128;
    }
    throw new WireFormatError('varint longer than 10 bytes');
  }

  /** Reads a tag; returns field number * 8 + wire type as a plain number. */
  tag(): number {
    const tag = this.varint();
    const field = Math.floor(tag / 8);
    const wireType = tag & 7;
    if (field === 0) throw new WireFormatError('field number 0 is not allowed');
    // protobuf's largest field number is 2^29 - 1; readers that take the tag as 32 bits would see another field.
    if (tag > 2 ** 32 - 1) throw new WireFormatError(`field number ${field} is above the largest protobuf allows`);
    if (wireType === 3 || wireType === 4) throw new WireFormatError(`field ${field}: groups are not used by OTLP`);
    if (wireType > 5) throw new WireFormatError(`field ${field}: invalid wire type ${wireType}`);
    return tag;
  }

  /** Returns the [start, end) of a length-delimited payload and moves past it. */
  lengthDelimited(): number {
    const len = this.varint();
    const start = this.pos;
    if (len > this.end - start) throw new WireFormatError(`length ${len} runs past the end of the message`);
    this.pos = start + len;
    return start;
  }

  skip(wireType: number): void {
    switch (wireType) {
      case WIRE_VARINT:
        this.varint();
        return;
      case WIRE_I64:
        this.advance(8);
        return;
      case WIRE_LEN:
        this.lengthDelimited();
        return;
      case WIRE_I32:
        this.advance(4);
        return;
      default:
        throw new WireFormatError(`invalid wire type ${wireType}`);
    }
  }

  advance(n: number): void {
    if (n > this.end - this.pos) throw new WireFormatError('truncated fixed-width field');
    this.pos += n;
  }

  fixed64AsBigInt(): bigint {
    const start = this.pos;
    this.advance(8);
    const view = new DataView(this.buf.buffer, this.buf.byteOffset + start, 8);
    return view.getBigUint64(0, true);
  }

  double(): number {
    const start = this.pos;
    this.advance(8);
    return new DataView(this.buf.buffer, this.buf.byteOffset + start, 8).getFloat64(0, true);
  }
}

/** Reads a varint that may exceed 2^53 exactly, for int64 attribute values. */
export function readVarintBigInt(reader: WireReader): bigint {
  let result = 0n;
  let shift = 0n;
  for (let i = 0; i < 10; i++) {
    if (reader.pos >= reader.end) throw new WireFormatError('truncated varint');
    const byte = reader.buf[reader.pos++]!;
    result |= BigInt(byte & 0x7f) << shift;
    if (byte < 0x80) return BigInt.asIntN(64, result);
    shift += 7n;
  }
  throw new WireFormatError('varint longer than 10 bytes');
}

export function varintSize(value: number): number {
  let size = 1;
  while (value >= 128) {
    value = Math.floor(value / 128);
    size++;
  }
  return size;
}

export function writeVarint(out: Uint8Array, pos: number, value: number): number {
  while (value >= 128) {
    out[pos++] = (value & 0x7f) | 0x80;
    value = Math.floor(value / 128);
  }
  out[pos++] = value;
  return pos;
}

/**
 * Concatenates already-encoded submessages as repeated field `field` of a new message:
 * how a request is rebuilt from kept resources without re-encoding them.
 */
export function encodeRepeatedField(field: number, parts: readonly Uint8Array[]): Buffer {
  const tag = field * 8 + WIRE_LEN;
  const tagSize = varintSize(tag);
  let total = 0;
  for (const part of parts) total += tagSize + varintSize(part.length) + part.length;
  const out = Buffer.allocUnsafe(total);
  let pos = 0;
  for (const part of parts) {
    pos = writeVarint(out, pos, tag);
    pos = writeVarint(out, pos, part.length);
    out.set(part, pos);
    pos += part.length;
  }
  return out;
}

/** Per process, so hash collisions cannot be precomputed. */
const HASH_SEED = (Math.random() * 0x100000000) >>> 0;

/**
 * A cheap hash for cache keys (a collision only costs a compare): FNV-1a over four bytes per step,
 * with a shift after each multiply so every input bit reaches the low bits. Seeded per process.
 */
export function hashBytes(buf: Uint8Array, start: number, end: number): number {
  let h = (0x811c9dc5 ^ HASH_SEED ^ (end - start)) | 0;
  let i = start;
  for (const stop = end - 3; i < stop; i += 4) {
    h = Math.imul(h ^ (buf[i]! | (buf[i + 1]! << 8) | (buf[i + 2]! << 16) | (buf[i + 3]! << 24)), 0x01000193);
    h ^= h >>> 15;
  }
  for (; i < end; i++) h = Math.imul(h ^ buf[i]!, 0x01000193);
  return h;
}
