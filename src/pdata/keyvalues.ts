// KeyValue lists and AnyValues read straight from checked OTLP bytes, for components that need
// pcommon's typing (int64 stays bigint, a kvlist is a Map) rather than attributes.ts's AttrValue.
// One copy here, shared by the filter processor, tail sampling and the connectors.

import { readString } from './attributes';
import { ANY_VALUE, KEY_VALUE, VALUES } from './fields';
import { WireReader, readVarintBigInt } from './wire';

/** An AnyValue typed as pcommon types it; OTTL's OttlValue is a superset, so it is one as is. */
export type TypedValue = null | string | boolean | bigint | number | Uint8Array | readonly TypedValue[] | ReadonlyMap<string, TypedValue>;

/**
 * Calls `visit` with the key's and the value's [start, end) of each KeyValue of the list of field
 * `kvTag` (fields.ts) within [start, end), -1 for an absent one (the last key / value field of a
 * KeyValue counts, as a decoder keeps); stops when `visit` returns true.
 */
export function forEachKeyValue(
  buf: Uint8Array, start: number, end: number, kvTag: number,
  visit: (keyStart: number, keyEnd: number, valueStart: number, valueEnd: number) => boolean | void,
): void {
  const reader = new WireReader(buf, start, end);
  const kv = new WireReader(buf, 0, 0);
  while (!reader.done) {
    const tag = reader.tag();
    if (tag !== kvTag) {
      reader.skip(tag & 7);
      continue;
    }
    const kvStart = reader.lengthDelimited();
    kv.reset(buf, kvStart, reader.pos);
    let ks = -1;
    let ke = -1;
    let vs = -1;
    let ve = -1;
    while (!kv.done) {
      const t = kv.tag();
      if (t === KEY_VALUE.key) {
        ks = kv.lengthDelimited();
        ke = kv.pos;
      } else if (t === KEY_VALUE.value) {
        vs = kv.lengthDelimited();
        ve = kv.pos;
      } else kv.skip(t & 7);
    }
    if (visit(ks, ke, vs, ve) === true) return;
  }
}

/**
 * The encoded value of the first KeyValue whose key is `key` (a string, or its UTF-8 bytes, compared
 * without making a string) in the list of field `kvTag` (fields.ts) within [start, end): [0, 0] when it
 * has no value, undefined when no key matches.
 */
export function keyValueBytes(buf: Uint8Array, start: number, end: number, kvTag: number, key: string | Uint8Array): [number, number] | undefined {
  let found: [number, number] | undefined;
  forEachKeyValue(buf, start, end, kvTag, (ks, ke, vs, ve) => {
    if (ks < 0 || (typeof key === 'string' ? readString(buf, ks, ke) !== key : !sameBytes(buf, ks, ke, key))) return false;
    found = vs < 0 ? [0, 0] : [vs, ve];
    return true;
  });
  return found;
}

function sameBytes(buf: Uint8Array, start: number, end: number, key: Uint8Array): boolean {
  if (end - start !== key.length) return false;
  for (let i = 0; i < key.length; i++) if (buf[start + i] !== key[i]) return false;
  return true;
}

/**
 * Every KeyValue of field `kvTag` in [start, end) as a Map; the first occurrence of a key wins, as
 * pcommon's Get. Arrays and kvlists nested `maxDepth` deep read as empty ones (decoding recurses).
 */
/** How deep decodeTypedValue goes by default: a request may nest 100,000 deep, and decoding recurses. */
export const MAX_TYPED_DEPTH = 128;

export function decodeTypedKeyValues(buf: Uint8Array, start: number, end: number, kvTag: number, maxDepth: number, depth = 0): Map<string, TypedValue> {
  const out = new Map<string, TypedValue>();
  forEachKeyValue(buf, start, end, kvTag, (ks, ke, vs, ve) => {
    const key = ks < 0 ? '' : readString(buf, ks, ke);
    if (!out.has(key)) out.set(key, vs < 0 ? null : decodeTypedValue(buf, vs, ve, maxDepth, depth));
  });
  return out;
}

/** One AnyValue; an empty one (no value set) is null. A value field of an unexpected wire type is skipped. */
export function decodeTypedValue(buf: Uint8Array, start: number, end: number, maxDepth: number, depth = 0): TypedValue {
  const reader = new WireReader(buf, start, end);
  let value: TypedValue = null;
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
      case ANY_VALUE.int_value:
        value = readVarintBigInt(reader);
        break;
      case ANY_VALUE.double_value:
        value = reader.double();
        break;
      case ANY_VALUE.array_value: {
        const s = reader.lengthDelimited();
        const items: TypedValue[] = [];
        if (depth < maxDepth) {
          const inner = new WireReader(buf, s, reader.pos);
          while (!inner.done) {
            const t = inner.tag();
            if (t === VALUES.values) {
              const is = inner.lengthDelimited();
              items.push(decodeTypedValue(buf, is, inner.pos, maxDepth, depth + 1));
            } else inner.skip(t & 7);
          }
        }
        value = items;
        break;
      }
      case ANY_VALUE.kvlist_value: {
        const s = reader.lengthDelimited();
        value = depth < maxDepth ? decodeTypedKeyValues(buf, s, reader.pos, VALUES.values, maxDepth, depth + 1) : new Map<string, TypedValue>();
        break;
      }
      case ANY_VALUE.bytes_value: {
        const s = reader.lengthDelimited();
        // A copy: a view would keep the whole request buffer alive.
        value = Uint8Array.prototype.slice.call(buf, s, reader.pos);
        break;
      }
      default:
        reader.skip(tag & 7);
    }
  }
  return value;
}
