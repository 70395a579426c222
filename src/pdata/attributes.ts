import { isUtf8 } from 'node:buffer';
import { ANY_VALUE, KEY_VALUE, VALUES } from './fields';
import { WireFormatError, WireReader, readVarintBigInt } from './wire';

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

/**
 * How many values (attributes, array items and kvlist entries, nested ones included) one call of
 * decodeKeyValues turns into JS values at most. A resource may carry a million attributes; what
 * filters, connectors and the inventory read is bounded by this, not by the sender (the bytes are
 * still checked in full and forwarded as they came).
 */
export const MAX_DECODED_VALUES = 256;
/** Decoded whatever their position, so that identity survives the bound. */
const ALWAYS_DECODED = ['service.instance.id', 'service.name', 'host.name'].map((key) => Buffer.from(key));
const OMITTED = Symbol('omitted attributes');
/** AnyValue's value tags by field number, to refuse a value field of the wrong wire type. */
const ANY_VALUE_TAGS: readonly (number | undefined)[] = Object.values(ANY_VALUE).reduce<(number | undefined)[]>((byField, t) => {
  byField[t >>> 3] = t;
  return byField;
}, []);

/** Values left out of a map decodeKeyValues built (0 when it holds everything). */
export function omittedValues(attributes: Attributes | Readonly<Record<string, AttrValue>>): number {
  return (attributes as { [OMITTED]?: number })[OMITTED] ?? 0;
}

/**
 * How deep decoded values nest at most: an array or kvlist deeper inside is decoded as an empty
 * one (counted in omittedValues). Decoding recurses; the scanner accepts far deeper values.
 */
export const MAX_DECODED_DEPTH = 128;

/** Decoding budget shared by one decodeKeyValues call and the values nested in it. */
interface Budget {
  left: number;
  omitted: number;
  /** Arrays and kvlists around the value being decoded. */
  depth: number;
}

/**
 * Decodes `repeated KeyValue` occurrences of the field with tag `kvTag` (fields.ts) inside [start, end) into a map (first key
 * wins), at most MAX_DECODED_VALUES values; later ones are skipped (counted, see omittedValues),
 * except the ALWAYS_DECODED keys. Linear in the bytes whatever their content.
 */
export function decodeKeyValues(buf: Uint8Array, start: number, end: number, kvTag: number): Map<string, AttrValue> {
  const budget: Budget = { left: MAX_DECODED_VALUES, omitted: 0, depth: 0 };
  const out = decodeKeyValuesWithin(buf, start, end, kvTag, budget);
  if (budget.omitted > 0) Object.defineProperty(out, OMITTED, { value: budget.omitted });
  return out;
}

function decodeKeyValuesWithin(buf: Uint8Array, start: number, end: number, kvTag: number, budget: Budget): Map<string, AttrValue> {
  const out = new Map<string, AttrValue>();
  const reader = new WireReader(buf, start, end);
  while (!reader.done) {
    const tag = reader.tag();
    if (tag === kvTag) {
      const kvStart = reader.lengthDelimited();
      if (budget.left <= 0 && !isAlwaysDecoded(buf, kvStart, reader.pos)) {
        budget.omitted++;
        continue;
      }
      budget.left--;
      const [key, value] = decodeKeyValue(buf, kvStart, reader.pos, budget);
      if (!out.has(key)) out.set(key, value);
    } else {
      reader.skip(tag & 7);
    }
  }
  return out;
}

/** Whether a KeyValue's key is one of ALWAYS_DECODED, compared as bytes (no string made). */
function isAlwaysDecoded(buf: Uint8Array, start: number, end: number): boolean {
  // The usual layout, key first with a one-byte length, without a reader.
  if (buf[start] === KEY_VALUE.key && start + 1 < end && buf[start + 1]! < 0x80) {
    const s = start + 2;
    const length = buf[start + 1]!;
    if (s + length <= end) {
      for (const key of ALWAYS_DECODED) {
        if (key.length === length && key.compare(buf, s, s + length) === 0) return true;
      }
      // A later key field would replace this one: rare enough for the general path.
      if (s + length === end || buf[s + length] !== KEY_VALUE.key) return false;
    }
  }
  const reader = new WireReader(buf, start, end);
  while (!reader.done) {
    const tag = reader.tag();
    if (tag !== KEY_VALUE.key) {
      reader.skip(tag & 7);
      continue;
    }
    const s = reader.lengthDelimited();
    const length = reader.pos - s;
    for (const key of ALWAYS_DECODED) {
      if (key.length === length && key.compare(buf, s, reader.pos) === 0) return true;
    }
  }
  return false;
}

function decodeKeyValue(buf: Uint8Array, start: number, end: number, budget: Budget): [string, AttrValue] {
  const reader = new WireReader(buf, start, end);
  let key = '';
  let value: AttrValue = null;
  while (!reader.done) {
    const tag = reader.tag();
    if (tag === KEY_VALUE.key) {
      const s = reader.lengthDelimited();
      key = readString(buf, s, reader.pos);
    } else if (tag === KEY_VALUE.value) {
      const s = reader.lengthDelimited();
      try {
        value = decodeValue(buf, s, reader.pos, budget);
      } catch (err) {
        throw err instanceof WireFormatError ? err.at(`attributes[${JSON.stringify(key)}]`) : err;
      }
    } else {
      reader.skip(tag & 7);
    }
  }
  return [key, value];
}

/** One AnyValue, with no bound on how many values it holds (for callers that decode a single value); nesting stops at MAX_DECODED_DEPTH. */
export function decodeAnyValue(buf: Uint8Array, start: number, end: number): AttrValue {
  return decodeValue(buf, start, end, { left: Infinity, omitted: 0, depth: 0 });
}

function decodeValue(buf: Uint8Array, start: number, end: number, budget: Budget): AttrValue {
  const reader = new WireReader(buf, start, end);
  let value: AttrValue = null;
  while (!reader.done) {
    const tag = reader.tag();
    switch (tag) {
      case ANY_VALUE.string_value: {
        const s = reader.lengthDelimited();
        value = readString(buf, s, reader.pos);
        break;
      }
      case ANY_VALUE.bool_value:
        value = reader.varint() !== 0;
        break;
      case ANY_VALUE.int_value: {
        const big = readVarintBigInt(reader);
        value = big >= BigInt(Number.MIN_SAFE_INTEGER) && big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
        break;
      }
      case ANY_VALUE.double_value:
        value = reader.double();
        break;
      case ANY_VALUE.array_value: {
        const s = reader.lengthDelimited();
        const items: AttrValue[] = [];
        value = items;
        if (budget.depth >= MAX_DECODED_DEPTH) {
          budget.omitted++;
          break;
        }
        budget.depth++;
        const inner = new WireReader(buf, s, reader.pos);
        while (!inner.done) {
          const t = inner.tag();
          if (t === VALUES.values) {
            const vs = inner.lengthDelimited();
            if (budget.left <= 0) {
              budget.omitted++;
              continue;
            }
            budget.left--;
            items.push(decodeValue(buf, vs, inner.pos, budget));
          } else inner.skip(t & 7);
        }
        budget.depth--;
        break;
      }
      case ANY_VALUE.kvlist_value: {
        const s = reader.lengthDelimited();
        if (budget.depth >= MAX_DECODED_DEPTH) {
          budget.omitted++;
          value = {};
          break;
        }
        budget.depth++;
        value = Object.fromEntries(decodeKeyValuesWithin(buf, s, reader.pos, VALUES.values, budget));
        budget.depth--;
        break;
      }
      case ANY_VALUE.bytes_value: {
        const s = reader.lengthDelimited();
        // A copy: a view would keep the whole request buffer alive.
        value = Uint8Array.prototype.slice.call(buf, s, reader.pos);
        break;
      }
      default: {
        // A value field with another wire type is malformed; any other field is skipped.
        const expected = ANY_VALUE_TAGS[tag >>> 3];
        if (expected !== undefined) throw new WireFormatError(`field ${tag >>> 3}: wire type ${tag & 7}, expected ${expected & 7}`);
        reader.skip(tag & 7);
      }
    }
  }
  return value;
}
