// OTTL's view of a resource, scope, span and span event read straight from the checked bytes of a
// ResourceSpans / ResourceMetrics: each field is decoded the first time a condition reads it, with
// OTTL's types (int64 as bigint, doubles as numbers, kvlists as Maps), so what no condition reads
// is never decoded. One set for the span and the metric paths (metric-rules.ts adds the metric and
// data point views); values decode with pdata/keyvalues.ts, at most MAX_OTTL_DEPTH levels deep.

import { readString } from '../../pdata/attributes';
import { ANY_VALUE, INSTRUMENTATION_SCOPE, KEY_VALUE, RESOURCE, RESOURCE_ITEMS, SCOPE_ITEMS, SPAN, SPAN_EVENT, STATUS } from '../../pdata/fields';
import { WIRE_I32, WIRE_I64, WIRE_LEN, WIRE_VARINT, WireReader, readVarintBigInt } from '../../pdata/wire';
import { MAX_TYPED_DEPTH, decodeTypedKeyValues, decodeTypedValue } from '../../pdata/keyvalues';
import type { Attributes, ResourceData, ScopeData, SpanData, SpanEventData } from '../../ottl';
import type { OttlValue } from '../../ottl';

/** Values nested deeper than this read as an empty list or map (the wire scanner accepts far deeper). */
export const MAX_OTTL_DEPTH = MAX_TYPED_DEPTH;

/** `repeated KeyValue` occurrences of field `tag` (from pdata/fields.ts) in [start, end) as an OTTL map (first key wins, as pcommon's Get). */
export function decodeOttlKeyValues(buf: Uint8Array, start: number, end: number, tag: number, depth = 0): Map<string, OttlValue> {
  return decodeTypedKeyValues(buf, start, end, tag, MAX_OTTL_DEPTH, depth);
}

/** One AnyValue; an empty one (no value set) is nil, as pcommon's empty value reads in OTTL. */
export function decodeOttlAnyValue(buf: Uint8Array, start: number, end: number, depth = 0): OttlValue {
  return decodeTypedValue(buf, start, end, MAX_OTTL_DEPTH, depth);
}

/** find() does not nest (decoding a value uses readers of its own). */
const findReader = new WireReader(new Uint8Array(0), 0, 0);

/** Attribute keys conditions name, encoded once (bounded: cleared when full). */
const encodedKeys = new Map<string, Buffer>();

function encodedKey(key: string): Buffer {
  let b = encodedKeys.get(key);
  if (b === undefined) {
    if (encodedKeys.size >= 4096) encodedKeys.clear();
    b = Buffer.from(key, 'utf8');
    encodedKeys.set(key, b);
  }
  return b;
}

/** Whether buf[at, at + n) equals want[0, n) (a loop: Buffer.compare costs a native call per key). */
function sameBytes(buf: Uint8Array, at: number, want: Uint8Array, n: number): boolean {
  for (let i = 0; i < n; i++) if (buf[at + i] !== want[i]) return false;
  return true;
}

/** The tag of the field nextField read last and, when length-delimited, where its payload starts. */
let fieldTagRead = 0;
let payloadStart = 0;

/** Where the varint varintRest read last ends. */
let varintEnd = 0;

/**
 * A varint of more than one byte whose first byte `first` (>= 0x80) came just before `pos`:
 * its value, or -1 when [pos, end) cuts it off or it exceeds 35 bits; its end in varintEnd.
 */
function varintRest(buf: Uint8Array, first: number, pos: number, end: number): number {
  let value = first & 0x7f;
  for (let mul = 128; ; mul *= 128) {
    if (pos >= end || mul > 2 ** 28) return -1;
    const b = buf[pos++]!;
    value += (b & 0x7f) * mul;
    if (b < 0x80) break;
  }
  varintEnd = pos;
  return value;
}

/**
 * Reads the field at `pos` (its tag, then skips its value) without a reader: returns the position
 * after it, or -1 when [pos, end) does not hold a whole field. The tag and payload start are left
 * in fieldTagRead / payloadStart for the caller to read before its next call.
 */
function nextField(buf: Uint8Array, pos: number, end: number): number {
  let tag = buf[pos++]!;
  if (tag >= 0x80) {
    tag = varintRest(buf, tag, pos, end);
    if (tag < 0) return -1;
    pos = varintEnd;
  }
  fieldTagRead = tag;
  switch (tag & 7) {
    case WIRE_VARINT:
      while (pos < end && buf[pos]! >= 0x80) pos++;
      pos++;
      break;
    case WIRE_I64:
      pos += 8;
      break;
    case WIRE_I32:
      pos += 4;
      break;
    case WIRE_LEN: {
      let len = buf[pos++]!;
      if (len >= 0x80) {
        len = varintRest(buf, len, pos, end);
        if (len < 0) return -1;
        pos = varintEnd;
      }
      payloadStart = pos;
      pos += len;
      break;
    }
    default:
      return -1;
  }
  return pos <= end ? pos : -1;
}

/**
 * Whether a KeyValue's fields in [pos, end) hold another key field (which would replace the key
 * read before it, the last one winning as in pcommon); undefined when they are malformed or carry
 * a multi-byte tag.
 */
function keyFieldAfter(buf: Uint8Array, pos: number, end: number): boolean | undefined {
  while (pos < end) {
    if (buf[pos] === KEY_VALUE.key) return true;
    if (buf[pos]! >= 0x80) return undefined;
    pos = nextField(buf, pos, end);
    if (pos < 0) return undefined;
  }
  return false;
}

/**
 * RawStringEquals on the bytes of a message [start, end): whether its first KeyValue (field
 * `fieldTag`) with this key holds exactly the string `utf8`; false when no KeyValue has the key
 * (nil is no string). Read without a reader or an object; undefined, for the caller to decode, as
 * soon as a KeyValue up to it is off the usual layout (key first, one-byte lengths, an AnyValue
 * holding only a string_value) or the bytes end early.
 */
export function attributeStringEquals(buf: Uint8Array, start: number, end: number, fieldTag: number, key: Uint8Array, utf8: Uint8Array): boolean | undefined {
  const kl = key.length;
  let pos = start;
  while (pos < end) {
    pos = nextField(buf, pos, end);
    if (pos < 0) return undefined;
    if (fieldTagRead !== fieldTag) continue;
    const s = payloadStart;
    const e = pos;
    if (buf[s] !== KEY_VALUE.key || buf[s + 1]! >= 0x80) return undefined;
    const ks = s + 2;
    const ke = ks + buf[s + 1]!;
    if (ke > e) return undefined;
    if (ke - ks !== kl || !sameBytes(buf, ks, key, kl)) {
      // A later key field (after the value or anything else) would replace this one: decode instead.
      if (keyFieldAfter(buf, ke, e) !== false) return undefined;
      continue;
    }
    if (buf[ke] !== KEY_VALUE.value || ke + 2 > e || buf[ke + 1]! >= 0x80 || ke + 2 + buf[ke + 1]! !== e) return undefined;
    const vs = ke + 2;
    if (buf[vs] !== ANY_VALUE.string_value || vs + 2 > e || buf[vs + 1]! >= 0x80 || vs + 2 + buf[vs + 1]! !== e) return undefined;
    const n = e - vs - 2;
    return n === utf8.length && sameBytes(buf, vs + 2, utf8, n);
  }
  return false;
}

/**
 * A `repeated KeyValue` as an OTTL map that answers `has` / `get` by comparing key bytes on the
 * wire, decoding only the value asked for; anything else (size, iteration) decodes it whole first.
 * `attributes["url.path"] == "/health"` then costs no string per attribute.
 */
export class WireAttributes extends Map<string, OttlValue> {
  private decoded = false;
  private lastKey: string | undefined;
  private lastValue: OttlValue | undefined;

  constructor(private readonly buf: Uint8Array, private readonly start: number, private readonly end: number, private readonly tag: number) {
    super();
  }

  private all(): void {
    if (this.decoded) return;
    this.decoded = true;
    for (const [k, v] of decodeOttlKeyValues(this.buf, this.start, this.end, this.tag)) super.set(k, v);
  }

  /** The value of the first KeyValue with this key; undefined when there is none. */
  private find(key: string): OttlValue | undefined {
    if (key === this.lastKey) return this.lastValue;
    const want = encodedKey(key);
    const wl = want.length;
    const buf = this.buf;
    const fieldTag = this.tag;
    let found: OttlValue | undefined;
    const reader = findReader.reset(buf, this.start, this.end);
    while (!reader.done) {
      const tag = reader.tag();
      if (tag !== fieldTag) {
        reader.skip(tag & 7);
        continue;
      }
      const s = reader.lengthDelimited();
      const e = reader.pos;
      // The usual layout, the key first with a one-byte length: a different key is skipped
      // without a reader (unless another key field follows, which would replace it).
      if (buf[s] === KEY_VALUE.key && buf[s + 1]! < 0x80) {
        const ks = s + 2;
        const ke = ks + buf[s + 1]!;
        const same = ke - ks === wl && ke <= e && sameBytes(buf, ks, want, wl);
        if (!same && keyFieldAfter(buf, ke, e) === false) continue;
        // The same key, then the value as the last field (one-byte length): decoded in place.
        if (same && buf[ke] === KEY_VALUE.value && buf[ke + 1]! < 0x80 && ke + 2 + buf[ke + 1]! === e) {
          found = decodeOttlAnyValue(buf, ke + 2, e);
          break;
        }
      }
      const kv = new WireReader(buf, s, e);
      let matched = false;
      let vs = -1;
      let ve = -1;
      while (!kv.done) {
        const t = kv.tag();
        if (t === KEY_VALUE.key) {
          const ks = kv.lengthDelimited();
          matched = kv.pos - ks === wl && sameBytes(buf, ks, want, wl);
        } else if (t === KEY_VALUE.value) {
          vs = kv.lengthDelimited();
          ve = kv.pos;
        } else kv.skip(t & 7);
      }
      if (matched) {
        found = vs < 0 ? null : decodeOttlAnyValue(buf, vs, ve);
        break;
      }
    }
    this.lastKey = key;
    this.lastValue = found;
    return found;
  }

  override has(key: string): boolean {
    return this.decoded ? super.has(key) : this.find(key) !== undefined;
  }

  /**
   * RawStringEquals: whether the first KeyValue with this key holds exactly the string `utf8`, read
   * on the bytes when every KeyValue up to it has the usual layout (key first, one-byte lengths)
   * and its AnyValue holds only a string_value; otherwise undefined (the caller decodes).
   */
  stringEquals(key: string, utf8: Uint8Array): boolean | undefined {
    if (this.decoded || key === this.lastKey) return undefined;
    return attributeStringEquals(this.buf, this.start, this.end, this.tag, encodedKey(key), utf8);
  }

  override get(key: string): OttlValue | undefined {
    return this.decoded ? super.get(key) : this.find(key);
  }

  override get size(): number {
    this.all();
    return super.size;
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

  override forEach(callback: (value: OttlValue, key: string, map: Map<string, OttlValue>) => void, thisArg?: unknown): void {
    this.all();
    super.forEach(callback, thisArg);
  }

  // Writes (no condition makes them today) apply to the whole map, decoded first.
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

  override [Symbol.iterator](): MapIterator<[string, OttlValue]> {
    this.all();
    return super[Symbol.iterator]();
  }
}

/** [start, end) of the last occurrence of the length-delimited field `tag` (from pdata/fields.ts), or undefined. */
function lastLen(buf: Uint8Array, start: number, end: number, tag: number): [number, number] | undefined {
  const reader = new WireReader(buf, start, end);
  let found: [number, number] | undefined;
  while (!reader.done) {
    const t = reader.tag();
    if (t === tag) {
      const s = reader.lengthDelimited();
      found = [s, reader.pos];
    } else reader.skip(t & 7);
  }
  return found;
}

/** The last value of the varint field `tag`, or undefined. */
function lastVarint(buf: Uint8Array, start: number, end: number, tag: number): number | undefined {
  const reader = new WireReader(buf, start, end);
  let found: number | undefined;
  while (!reader.done) {
    const t = reader.tag();
    if (t === tag) found = reader.varint();
    else reader.skip(t & 7);
  }
  return found;
}

/** The last value of the uint32 varint field `tag` (a longer varint keeps its low 32 bits, as protobuf's decoders do), or undefined. */
function lastUint32(buf: Uint8Array, start: number, end: number, tag: number): number | undefined {
  const reader = new WireReader(buf, start, end);
  let found: number | undefined;
  while (!reader.done) {
    const t = reader.tag();
    if (t === tag) found = Number(BigInt.asUintN(32, readVarintBigInt(reader)));
    else reader.skip(t & 7);
  }
  return found;
}

function lastString(buf: Uint8Array, start: number, end: number, tag: number): string | undefined {
  const r = lastLen(buf, start, end, tag);
  return r ? readString(buf, r[0], r[1]) : undefined;
}

function fixed64At(buf: Uint8Array, pos: number): bigint {
  return new DataView(buf.buffer, buf.byteOffset + pos, 8).getBigUint64(0, true);
}

/** Field tags of a Resource or InstrumentationScope and of the message that holds it (pdata/fields.ts). */
interface HeldTags {
  /** The Resource / InstrumentationScope field of the holder. */
  readonly held: number;
  /** The holder's schema_url. */
  readonly schemaUrl: number;
  readonly attributes: number;
  readonly droppedAttributesCount: number;
}

const RESOURCE_TAGS: HeldTags = {
  held: RESOURCE_ITEMS.resource,
  schemaUrl: RESOURCE_ITEMS.schema_url,
  attributes: RESOURCE.attributes,
  droppedAttributesCount: RESOURCE.dropped_attributes_count,
};

const SCOPE_TAGS: HeldTags = {
  held: SCOPE_ITEMS.scope,
  schemaUrl: SCOPE_ITEMS.schema_url,
  attributes: INSTRUMENTATION_SCOPE.attributes,
  droppedAttributesCount: INSTRUMENTATION_SCOPE.dropped_attributes_count,
};

/**
 * A resource or a scope: attributes and dropped count of the held message, the holder's
 * schema_url, and for a scope its name and version; decoded on first read. One class for both, not
 * a base class: a derived class cost ~7 % on the span filter path (a WireScope per span; 60-80
 * slices A/B in one process).
 */
class WireHeld implements ResourceData, ScopeData {
  private heldRange: [number, number] | undefined | null = null;
  private attrs: Attributes | undefined;
  private dropped: number | undefined;
  private schema: string | undefined;
  private n: string | undefined;
  private v: string | undefined;

  constructor(private readonly buf: Uint8Array, private readonly start: number, private readonly end: number, private readonly tags: HeldTags) {}

  private range(): [number, number] | undefined {
    if (this.heldRange === null) this.heldRange = lastLen(this.buf, this.start, this.end, this.tags.held);
    return this.heldRange;
  }

  get attributes(): Attributes {
    if (this.attrs === undefined) {
      const r = this.range();
      this.attrs = r ? decodeOttlKeyValues(this.buf, r[0], r[1], this.tags.attributes) : new Map();
    }
    return this.attrs;
  }

  get droppedAttributesCount(): number {
    if (this.dropped === undefined) {
      const r = this.range();
      this.dropped = (r ? lastUint32(this.buf, r[0], r[1], this.tags.droppedAttributesCount) : undefined) ?? 0;
    }
    return this.dropped;
  }

  get schemaUrl(): string {
    this.schema ??= lastString(this.buf, this.start, this.end, this.tags.schemaUrl) ?? '';
    return this.schema;
  }

  private str(tag: number): string {
    const r = this.range();
    return (r ? lastString(this.buf, r[0], r[1], tag) : undefined) ?? '';
  }

  get name(): string {
    this.n ??= this.str(INSTRUMENTATION_SCOPE.name);
    return this.n;
  }

  get version(): string {
    this.v ??= this.str(INSTRUMENTATION_SCOPE.version);
    return this.v;
  }
}

/** The resource of a ResourceSpans / ResourceMetrics block. */
export type WireResource = ResourceData;
export const wireResource = (buf: Uint8Array): WireResource => new WireHeld(buf, 0, buf.length, RESOURCE_TAGS);

/** A ScopeSpans' / ScopeMetrics' scope and schema_url. */
export const wireScope = (buf: Uint8Array, start: number, end: number): ScopeData => new WireHeld(buf, start, end, SCOPE_TAGS);

const NO_STATUS = Object.freeze({});

/** A Span; one pass over its tags on first read records where each field is. */
export class WireSpan implements SpanData {
  private read = false;
  // Offsets of the last occurrence of each singular field (-1: absent).
  private traceIdAt = -1; private traceIdEnd = -1;
  private spanIdAt = -1; private spanIdEnd = -1;
  private parentAt = -1; private parentEnd = -1;
  private traceStateAt = -1; private traceStateEnd = -1;
  private nameAt = -1; private nameEnd = -1;
  private statusAt = -1; private statusEnd = -1;
  private startAt = -1;
  private endAt = -1;
  private flagsAt = -1;
  private kindValue = 0;
  private droppedAttrs = 0;
  private droppedEvents = 0;
  private droppedLinks = 0;
  private attrs: Attributes | undefined;
  private nameValue: string | undefined;

  constructor(readonly buf: Uint8Array, readonly start: number, readonly end: number) {}

  private scan(): void {
    if (this.read) return;
    this.read = true;
    const buf = this.buf;
    const reader = new WireReader(buf, this.start, this.end);
    while (!reader.done) {
      const tag = reader.tag();
      switch (tag) {
        case SPAN.trace_id: this.traceIdAt = reader.lengthDelimited(); this.traceIdEnd = reader.pos; break;
        case SPAN.span_id: this.spanIdAt = reader.lengthDelimited(); this.spanIdEnd = reader.pos; break;
        case SPAN.trace_state: this.traceStateAt = reader.lengthDelimited(); this.traceStateEnd = reader.pos; break;
        case SPAN.parent_span_id: this.parentAt = reader.lengthDelimited(); this.parentEnd = reader.pos; break;
        case SPAN.name: this.nameAt = reader.lengthDelimited(); this.nameEnd = reader.pos; break;
        case SPAN.kind: this.kindValue = reader.varint(); break;
        case SPAN.start_time_unix_nano: this.startAt = reader.pos; reader.advance(8); break;
        case SPAN.end_time_unix_nano: this.endAt = reader.pos; reader.advance(8); break;
        case SPAN.dropped_attributes_count: this.droppedAttrs = reader.varint(); break;
        case SPAN.dropped_events_count: this.droppedEvents = reader.varint(); break;
        case SPAN.dropped_links_count: this.droppedLinks = reader.varint(); break;
        case SPAN.status: this.statusAt = reader.lengthDelimited(); this.statusEnd = reader.pos; break;
        case SPAN.flags: this.flagsAt = reader.pos; reader.advance(4); break;
        default: reader.skip(tag & 7);
      }
    }
  }

  private bytes(at: number, end: number): Uint8Array | undefined {
    return at < 0 ? undefined : this.buf.subarray(at, end);
  }

  get traceId(): Uint8Array | undefined { this.scan(); return this.bytes(this.traceIdAt, this.traceIdEnd); }
  get spanId(): Uint8Array | undefined { this.scan(); return this.bytes(this.spanIdAt, this.spanIdEnd); }
  get parentSpanId(): Uint8Array | undefined { this.scan(); return this.bytes(this.parentAt, this.parentEnd); }
  get traceState(): string { this.scan(); return this.traceStateAt < 0 ? '' : readString(this.buf, this.traceStateAt, this.traceStateEnd); }
  get name(): string {
    this.scan();
    this.nameValue ??= this.nameAt < 0 ? '' : readString(this.buf, this.nameAt, this.nameEnd);
    return this.nameValue;
  }
  get kind(): number { this.scan(); return this.kindValue; }
  get startTimeUnixNano(): bigint { this.scan(); return this.startAt < 0 ? 0n : fixed64At(this.buf, this.startAt); }
  get endTimeUnixNano(): bigint { this.scan(); return this.endAt < 0 ? 0n : fixed64At(this.buf, this.endAt); }
  get droppedAttributesCount(): number { this.scan(); return this.droppedAttrs; }
  get droppedEventsCount(): number { this.scan(); return this.droppedEvents; }
  get droppedLinksCount(): number { this.scan(); return this.droppedLinks; }
  get flags(): number {
    this.scan();
    if (this.flagsAt < 0) return 0;
    const b = this.buf;
    const p = this.flagsAt;
    return (b[p]! | (b[p + 1]! << 8) | (b[p + 2]! << 16)) + b[p + 3]! * 0x1000000;
  }

  get attributes(): Attributes {
    this.attrs ??= new WireAttributes(this.buf, this.start, this.end, SPAN.attributes);
    return this.attrs;
  }

  /** RawAttributeEquals: `attributes["k"] == "literal"` without building the attributes map. */
  attributeStringEquals(key: Uint8Array, utf8: Uint8Array): boolean | undefined {
    return this.attrs === undefined ? attributeStringEquals(this.buf, this.start, this.end, SPAN.attributes, key, utf8) : undefined;
  }

  get status(): { readonly code?: number; readonly message?: string } {
    this.scan();
    if (this.statusAt < 0) return NO_STATUS;
    const code = lastVarint(this.buf, this.statusAt, this.statusEnd, STATUS.code) ?? 0;
    const message = lastString(this.buf, this.statusAt, this.statusEnd, STATUS.message) ?? '';
    return { code, message };
  }
}

/** A Span.Event. */
export class WireSpanEvent implements SpanEventData {
  private attrs: Attributes | undefined;

  constructor(private readonly buf: Uint8Array, private readonly start: number, private readonly end: number) {}

  get timeUnixNano(): bigint {
    const reader = new WireReader(this.buf, this.start, this.end);
    let at = -1;
    while (!reader.done) {
      const tag = reader.tag();
      if (tag === SPAN_EVENT.time_unix_nano) {
        at = reader.pos;
        reader.advance(8);
      } else reader.skip(tag & 7);
    }
    return at < 0 ? 0n : fixed64At(this.buf, at);
  }

  get name(): string {
    return lastString(this.buf, this.start, this.end, SPAN_EVENT.name) ?? '';
  }

  get attributes(): Attributes {
    this.attrs ??= new WireAttributes(this.buf, this.start, this.end, SPAN_EVENT.attributes);
    return this.attrs;
  }

  attributeStringEquals(key: Uint8Array, utf8: Uint8Array): boolean | undefined {
    return this.attrs === undefined ? attributeStringEquals(this.buf, this.start, this.end, SPAN_EVENT.attributes, key, utf8) : undefined;
  }

  get droppedAttributesCount(): number {
    return lastVarint(this.buf, this.start, this.end, SPAN_EVENT.dropped_attributes_count) ?? 0;
  }
}
