import { readString } from '../../pdata/attributes';
import { ANY_VALUE, KEY_VALUE, RESOURCE, RESOURCE_ITEMS, VALUES } from '../../pdata/fields';
import { WireReader, readVarintBigInt } from '../../pdata/wire';
import type { OttlValue, ResourceData } from '../../ottl';

// OTLP attributes read from the wire as OTTL values: ints stay int64 (bigint) and doubles stay
// float64 (number) even when whole, kvlists become Maps (first key wins, as pcommon.Map.Get finds
// it), an AnyValue without a value is nil. pdata's decodeKeyValues cannot serve here: it turns a
// safe int into a number (1 and 1.0 would compare equal) and stops after 256 values.
//
// Values nest as deep as the receiver accepts (100,000 levels), so the decoder keeps its stack on
// the heap. The bytes were checked by the receiver; a field with an unexpected wire type is skipped.
//
// TODO: the span path decodes with pdata/keyvalues.ts (recursive, stops at MAX_OTTL_DEPTH) where these
// do not stop; wire-items.ts still has its own WireAttributes, WireResource (vs resourceDataOf) and a
// WireScope (metric-rules.ts another): to be merged into one set once the depth rule is settled.

const ANY = 0;
const ARRAY = 1;
const KVS = 2;
const KV = 3;

interface Frame {
  kind: number;
  pos: number;
  end: number;
  /** KVS: the tag of the repeated KeyValue (VALUES.values inside a kvlist); ARRAY: VALUES.values. */
  tag: number;
  value: OttlValue;
  list: OttlValue[];
  map: Map<string, OttlValue>;
  key: string;
}

function frame(kind: number, pos: number, end: number, tag: number = VALUES.values): Frame {
  return {
    kind, pos, end, tag, value: null,
    list: kind === ARRAY ? [] : (EMPTY_LIST as OttlValue[]),
    map: kind === KVS ? new Map<string, OttlValue>() : (EMPTY_MAP as Map<string, OttlValue>),
    key: '',
  };
}

const EMPTY_LIST: readonly OttlValue[] = [];
const EMPTY_MAP: ReadonlyMap<string, OttlValue> = new Map();

function result(f: Frame): OttlValue {
  switch (f.kind) {
    case ARRAY: return f.list;
    case KVS: return f.map;
    default: return f.value;
  }
}

function run(bytes: Uint8Array, root: Frame): OttlValue {
  // A Buffer view: readString decodes plain Uint8Arrays by spreading them onto the stack.
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const stack: Frame[] = [root];
  const reader = new WireReader(buf, 0, 0);
  for (;;) {
    const f = stack[stack.length - 1] as Frame;
    if (f.pos >= f.end) {
      stack.pop();
      const parent = stack[stack.length - 1];
      if (!parent) return result(f);
      if (parent.kind === ARRAY) parent.list.push(result(f));
      else if (parent.kind === KVS) {
        if (!parent.map.has(f.key)) parent.map.set(f.key, f.value);
      } else parent.value = result(f);
      continue;
    }
    reader.reset(buf, f.pos, f.end);
    const tag = reader.tag();
    let child: Frame | undefined;
    if (f.kind === ANY) {
      if (tag === ANY_VALUE.string_value) {
        const s = reader.lengthDelimited();
        f.value = readString(buf, s, reader.pos);
      } else if (tag === ANY_VALUE.bool_value) {
        f.value = reader.varint() !== 0;
      } else if (tag === ANY_VALUE.int_value) {
        f.value = readVarintBigInt(reader);
      } else if (tag === ANY_VALUE.double_value) {
        f.value = reader.double();
      } else if (tag === ANY_VALUE.array_value || tag === ANY_VALUE.kvlist_value) {
        const s = reader.lengthDelimited();
        child = frame(tag === ANY_VALUE.array_value ? ARRAY : KVS, s, reader.pos);
      } else if (tag === ANY_VALUE.bytes_value) {
        const s = reader.lengthDelimited();
        // A copy: a view would keep the whole request alive.
        f.value = Uint8Array.prototype.slice.call(buf, s, reader.pos);
      } else reader.skip(tag & 7);
    } else if (f.kind === KV) {
      if (tag === KEY_VALUE.key) {
        const s = reader.lengthDelimited();
        f.key = readString(buf, s, reader.pos);
      } else if (tag === KEY_VALUE.value) {
        const s = reader.lengthDelimited();
        // A second value field replaces the first (last one wins, as for scalars).
        f.value = null;
        child = frame(ANY, s, reader.pos);
      } else reader.skip(tag & 7);
    } else if (tag === f.tag) {
      // ARRAY: ArrayValue.values; KVS: the repeated KeyValue.
      const s = reader.lengthDelimited();
      child = frame(f.kind === KVS ? KV : ANY, s, reader.pos);
    } else reader.skip(tag & 7);
    f.pos = reader.pos;
    if (child) stack.push(child);
  }
}

/** The repeated KeyValue field `tag` (from pdata/fields.ts) of the message in [start, end), as an OTTL map (first key wins). */
export function decodeOttlAttributes(buf: Uint8Array, start: number, end: number, tag: number): Map<string, OttlValue> {
  return run(buf, frame(KVS, start, end, tag)) as Map<string, OttlValue>;
}

/** One encoded AnyValue as an OTTL value. */
export function decodeOttlAnyValue(buf: Uint8Array, start: number, end: number): OttlValue {
  return run(buf, frame(ANY, start, end));
}

/**
 * The resource of an encoded ResourceSpans / ResourceMetrics for OTTL's resource context: its
 * attributes, dropped_attributes_count and the schema_url beside it. A repeated
 * resource field: the last one wins.
 */
export function resourceDataOf(bytes: Uint8Array): ResourceData {
  let resourceStart = -1;
  let resourceEnd = -1;
  let schemaUrl = '';
  const reader = new WireReader(bytes, 0, bytes.length);
  while (!reader.done) {
    const tag = reader.tag();
    if (tag === RESOURCE_ITEMS.resource) {
      resourceStart = reader.lengthDelimited();
      resourceEnd = reader.pos;
    } else if (tag === RESOURCE_ITEMS.schema_url) {
      const s = reader.lengthDelimited();
      schemaUrl = readString(bytes, s, reader.pos);
    } else reader.skip(tag & 7);
  }
  if (resourceStart < 0) return { attributes: new Map(), schemaUrl };
  let dropped = 0;
  const inner = new WireReader(bytes, resourceStart, resourceEnd);
  while (!inner.done) {
    const tag = inner.tag();
    if (tag === RESOURCE.dropped_attributes_count) dropped = Number(BigInt.asUintN(32, readVarintBigInt(inner)));
    else inner.skip(tag & 7);
  }
  return { attributes: decodeOttlAttributes(bytes, resourceStart, resourceEnd, RESOURCE.attributes), droppedAttributesCount: dropped, schemaUrl };
}

const ABSENT = Symbol('absent');
const keyBytes = new Map<string, Buffer>();
/** Keys a condition names repeat for every item: encoded once (a bounded cache, keys may be computed). */
function encodedKey(key: string): Buffer {
  let b = keyBytes.get(key);
  if (!b) {
    if (keyBytes.size >= 1024) keyBytes.clear();
    b = Buffer.from(key, 'utf8');
    keyBytes.set(key, b);
  }
  return b;
}

const lookupReader = new WireReader(new Uint8Array(0), 0, 0);
const kvReader = new WireReader(new Uint8Array(0), 0, 0);

/**
 * The repeated KeyValue field `tag` (from pdata/fields.ts) of a message as an OTTL map that reads from the wire only what
 * is asked: get/has of one key find that key's bytes and decode its value alone (what
 * `attributes["http.route"]` needs); size, iteration and the rest decode the whole map once.
 * First key wins, as with decodeOttlAttributes.
 */
export class WireAttributes extends Map<string, OttlValue> {
  private decoded = false;
  private looked: Map<string, OttlValue | typeof ABSENT> | undefined;

  constructor(
    private readonly buf: Buffer,
    private readonly start: number,
    private readonly end: number,
    private readonly tag: number,
  ) {
    super();
  }

  override get(key: string): OttlValue | undefined {
    if (this.decoded) return super.get(key);
    const v = this.lookup(key);
    return v === ABSENT ? undefined : v;
  }

  override has(key: string): boolean {
    return this.decoded ? super.has(key) : this.lookup(key) !== ABSENT;
  }

  override [Symbol.iterator](): MapIterator<[string, OttlValue]> {
    this.all();
    return super.entries();
  }

  override entries(): MapIterator<[string, OttlValue]> {
    this.all();
    return super.entries();
  }

  override keys(): MapIterator<string> {
    this.all();
    return super.keys();
  }

  override values(): MapIterator<OttlValue> {
    this.all();
    return super.values();
  }

  override forEach(fn: (value: OttlValue, key: string, map: Map<string, OttlValue>) => void, thisArg?: unknown): void {
    this.all();
    super.forEach(fn, thisArg);
  }

  override set(key: string, value: OttlValue): this {
    this.all();
    return super.set(key, value);
  }

  override delete(key: string): boolean {
    this.all();
    return super.delete(key);
  }

  override clear(): void {
    this.decoded = true;
    super.clear();
  }

  /** Decodes every entry into the map itself, once. */
  all(): void {
    if (this.decoded) return;
    this.decoded = true;
    for (const [k, v] of decodeOttlAttributes(this.buf, this.start, this.end, this.tag)) super.set(k, v);
  }

  private lookup(key: string): OttlValue | typeof ABSENT {
    const cached = this.looked?.get(key);
    if (cached !== undefined || this.looked?.has(key)) return cached as OttlValue | typeof ABSENT;
    const want = encodedKey(key);
    const buf = this.buf;
    const fieldTag = this.tag;
    const reader = lookupReader.reset(buf, this.start, this.end);
    let found: OttlValue | typeof ABSENT = ABSENT;
    while (!reader.done) {
      const tag = reader.tag();
      if (tag !== fieldTag) {
        reader.skip(tag & 7);
        continue;
      }
      const kvStart = reader.lengthDelimited();
      // A KeyValue's last key and last value count (protobuf: the last occurrence wins).
      const kv = kvReader.reset(buf, kvStart, reader.pos);
      let keyStart = -1;
      let keyEnd = 0;
      let valueStart = -1;
      let valueEnd = 0;
      while (!kv.done) {
        const t = kv.tag();
        if (t === KEY_VALUE.key) {
          keyStart = kv.lengthDelimited();
          keyEnd = kv.pos;
        } else if (t === KEY_VALUE.value) {
          valueStart = kv.lengthDelimited();
          valueEnd = kv.pos;
        } else kv.skip(t & 7);
      }
      const keyLen = keyStart < 0 ? 0 : keyEnd - keyStart;
      if (keyLen !== want.length || (keyLen > 0 && buf.compare(want, 0, keyLen, keyStart, keyEnd) !== 0)) continue;
      found = valueStart < 0 ? null : decodeOttlAnyValue(buf, valueStart, valueEnd);
      break;
    }
    (this.looked ??= new Map()).set(key, found);
    return found;
  }
}

const sizeDescriptor: { get?: (this: Map<string, OttlValue>) => number } | undefined = Object.getOwnPropertyDescriptor(Map.prototype, 'size');
const mapSize = sizeDescriptor?.get ?? ((): number => 0);
// Map's size is an accessor on its prototype, which TypeScript declares as a property: replaced
// here, once, on the subclass's prototype (an own accessor per instance made construction 20x slower).
Object.defineProperty(WireAttributes.prototype, 'size', {
  get(this: WireAttributes): number {
    this.all();
    return mapSize.call(this);
  },
});
