import { isUtf8 } from 'node:buffer';
import { WIRE_I64, WIRE_LEN, WIRE_VARINT, WireFormatError, WireReader, readVarintBigInt } from './wire';

/** An OTLP AnyValue as a plain JS value; int64s beyond 2^53 stay exact as bigint. */
export type AttrValue =
  | string
  | number
  | boolean
  | bigint
  | Uint8Array
  | null
  | readonly AttrValue[]
  | { readonly [key: string]: AttrValue };

export type Attributes = ReadonlyMap<string, AttrValue>;

/** Text form used by selectors: ints and bools as written, other values as JSON. */
export function attrValueToString(value: AttrValue): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (value === null) return '';
  if (value instanceof Uint8Array) return Buffer.from(value).toString('base64');
  return JSON.stringify(value, (_key, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
}

const utf8Decoder = new TextDecoder('utf-8', { fatal: false });

/** Decodes a protobuf string field, refusing invalid UTF-8 as proto3 requires. */
export function readString(buf: Uint8Array, start: number, end: number): string {
  const ascii = isAscii(buf, start, end);
  // Attribute keys and values are nearly always ASCII: latin1 decoding is then exact and much cheaper.
  if (ascii) return buf instanceof Buffer ? buf.toString('latin1', start, end) : String.fromCharCode(...buf.subarray(start, end));
  if (!isUtf8(buf.subarray(start, end))) throw new WireFormatError('string field is not valid UTF-8');
  return utf8Decoder.decode(buf.subarray(start, end));
}

/** Whether [start, end) has no byte >= 0x80; ORs four bytes per step (this runs over every string forwarded). */
export function isAscii(buf: Uint8Array, start: number, end: number): boolean {
  let high = 0;
  let i = start;
  for (const stop = end - 3; i < stop; i += 4) high |= buf[i]! | buf[i + 1]! | buf[i + 2]! | buf[i + 3]!;
  for (; i < end; i++) high |= buf[i]!;
  return high < 0x80;
}

/** ASCII is checked inline; only strings with high bytes pay for the native check. */
export function isValidUtf8(buf: Uint8Array, start: number, end: number): boolean {
  return isAscii(buf, start, end) || isUtf8(buf.subarray(start, end));
}

/** Decodes `repeated KeyValue` occurrences of `field` inside [start, end) into a map (first key wins). */
export function decodeKeyValues(buf: Uint8Array, start: number, end: number, field: number): Map<string, AttrValue> {
  const out = new Map<string, AttrValue>();
  const reader = new WireReader(buf, start, end);
  while (!reader.done) {
    const tag = reader.tag();
    if (tag === field * 8 + WIRE_LEN) {
      const kvStart = reader.lengthDelimited();
      const [key, value] = decodeKeyValue(buf, kvStart, reader.pos);
      if (!out.has(key)) out.set(key, value);
    } else {
      reader.skip(tag & 7);
    }
  }
  return out;
}

function decodeKeyValue(buf: Uint8Array, start: number, end: number): [string, AttrValue] {
  const reader = new WireReader(buf, start, end);
  let key = '';
  let value: AttrValue = null;
  while (!reader.done) {
    const tag = reader.tag();
    if (tag === 1 * 8 + WIRE_LEN) {
      const s = reader.lengthDelimited();
      key = readString(buf, s, reader.pos);
    } else if (tag === 2 * 8 + WIRE_LEN) {
      const s = reader.lengthDelimited();
      try {
        value = decodeAnyValue(buf, s, reader.pos);
      } catch (err) {
        throw err instanceof WireFormatError ? err.at(`attributes[${JSON.stringify(key)}]`) : err;
      }
    } else {
      reader.skip(tag & 7);
    }
  }
  return [key, value];
}

export function decodeAnyValue(buf: Uint8Array, start: number, end: number): AttrValue {
  const reader = new WireReader(buf, start, end);
  let value: AttrValue = null;
  while (!reader.done) {
    const tag = reader.tag();
    const field = Math.floor(tag / 8);
    const wireType = tag & 7;
    switch (field) {
      case 1: {
        expectWireType(field, wireType, WIRE_LEN);
        const s = reader.lengthDelimited();
        value = readString(buf, s, reader.pos);
        break;
      }
      case 2:
        expectWireType(field, wireType, WIRE_VARINT);
        value = reader.varint() !== 0;
        break;
      case 3: {
        expectWireType(field, wireType, WIRE_VARINT);
        const big = readVarintBigInt(reader);
        value = big >= BigInt(Number.MIN_SAFE_INTEGER) && big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
        break;
      }
      case 4:
        expectWireType(field, wireType, WIRE_I64);
        value = reader.double();
        break;
      case 5: {
        expectWireType(field, wireType, WIRE_LEN);
        const s = reader.lengthDelimited();
        const items: AttrValue[] = [];
        const inner = new WireReader(buf, s, reader.pos);
        while (!inner.done) {
          const t = inner.tag();
          if (t === 1 * 8 + WIRE_LEN) {
            const vs = inner.lengthDelimited();
            items.push(decodeAnyValue(buf, vs, inner.pos));
          } else inner.skip(t & 7);
        }
        value = items;
        break;
      }
      case 6: {
        expectWireType(field, wireType, WIRE_LEN);
        const s = reader.lengthDelimited();
        value = Object.fromEntries(decodeKeyValues(buf, s, reader.pos, 1));
        break;
      }
      case 7: {
        expectWireType(field, wireType, WIRE_LEN);
        const s = reader.lengthDelimited();
        // A copy: a view would keep the whole request buffer alive.
        value = Uint8Array.prototype.slice.call(buf, s, reader.pos);
        break;
      }
      default:
        reader.skip(wireType);
    }
  }
  return value;
}

function expectWireType(field: number, actual: number, expected: number): void {
  if (actual !== expected) throw new WireFormatError(`field ${field}: wire type ${actual}, expected ${expected}`);
}
