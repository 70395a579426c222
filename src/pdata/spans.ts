import { decodeAnyValue, decodeKeyValues, readString, type AttrValue, type Attributes } from './attributes';
import { INSTRUMENTATION_SCOPE, KEY_VALUE, RESOURCE_ITEMS, SCOPE_ITEMS, SPAN, STATUS } from './fields';
import { forEachKeyValue } from './keyvalues';
import { WireReader } from './wire';

// Reads the few span fields that trace-derived metrics need (ids, name, kind, times, status)
// straight from an encoded ResourceSpans, without building span objects. Attributes are decoded
// only when a caller asks for them, and then only the ones it named. Used by the spanmetrics and
// servicegraph connectors.

export const SPAN_KIND_NAMES = [
  'SPAN_KIND_UNSPECIFIED',
  'SPAN_KIND_INTERNAL',
  'SPAN_KIND_SERVER',
  'SPAN_KIND_CLIENT',
  'SPAN_KIND_PRODUCER',
  'SPAN_KIND_CONSUMER',
] as const;
export const STATUS_CODE_NAMES = ['STATUS_CODE_UNSET', 'STATUS_CODE_OK', 'STATUS_CODE_ERROR'] as const;

export const SPAN_KIND_SERVER = 2;
export const SPAN_KIND_CLIENT = 3;
export const SPAN_KIND_PRODUCER = 4;
export const SPAN_KIND_CONSUMER = 5;
export const STATUS_CODE_ERROR = 2;


/** One span, valid only inside the callback that received it (the object is reused). */
export class SpanView {
  buf: Uint8Array = new Uint8Array(0);
  start = 0;
  end = 0;
  traceIdStart = 0;
  traceIdLen = 0;
  spanIdStart = 0;
  spanIdLen = 0;
  parentIdStart = 0;
  parentIdLen = 0;
  /** Where the trace_state string is in buf (len 0: none). */
  traceStateStart = 0;
  traceStateLen = 0;
  name = '';
  kind = 0;
  statusCode = 0;
  /** end - start in nanoseconds; 0 when the end precedes the start. */
  durationNs = 0;
  scopeName = '';
  scopeVersion = '';
  private startHi = 0;
  private startLo = 0;
  private endHi = 0;
  private endLo = 0;
  private attrs: Attributes | undefined;
  /** forEachSpan's `markKey`: where that attribute's value is in buf (markStart -1: the span has none). */
  markKey: Uint8Array | undefined;
  markStart = -1;
  markEnd = -1;
  /** Keys among attrs whose value was a double on the wire (a decoded 5.0 reads as 5). */
  private doubles: Set<string> | undefined;

  constructor(private readonly wanted?: WantedAttributes) {}

  get kindName(): string {
    return SPAN_KIND_NAMES[this.kind] ?? 'SPAN_KIND_UNSPECIFIED';
  }

  get statusName(): string {
    return STATUS_CODE_NAMES[this.statusCode] ?? 'STATUS_CODE_UNSET';
  }

  /** Trace id as 32 hex characters. */
  traceIdHex(): string {
    return hex(this.buf, this.traceIdStart, this.traceIdLen);
  }

  spanIdHex(): string {
    return hex(this.buf, this.spanIdStart, this.spanIdLen);
  }

  /** Parent span id as hex; '' for a root span. */
  parentSpanIdHex(): string {
    return hex(this.buf, this.parentIdStart, this.parentIdLen);
  }

  /** The span's attributes, decoded on first use: only the wanted ones if forEachSpan was given a list. */
  attributes(): Attributes {
    if (this.attrs) return this.attrs;
    if (this.wanted) {
      SCRATCH_DOUBLES.set = undefined;
      this.attrs = pickKeyValues(this.buf, this.start, this.end, SPAN.attributes, this.wanted, SCRATCH_DOUBLES);
      this.doubles = SCRATCH_DOUBLES.set;
    } else {
      this.attrs = decodeKeyValues(this.buf, this.start, this.end, SPAN.attributes);
    }
    return this.attrs;
  }

  /** Whether attribute `key` (as returned by attributes()) holds a double. */
  isDouble(key: string): boolean {
    if (!this.wanted && this.doubles === undefined) this.doubles = doubleKeysOf(this.buf, this.start, this.end, SPAN.attributes) ?? new Set();
    return this.doubles?.has(key) === true;
  }

  /** Calls `visit` with the bounds of each event (field 11) of the span, in order. */
  forEachEvent(visit: (start: number, end: number) => void): void {
    const reader = new WireReader(this.buf, this.start, this.end);
    while (!reader.done) {
      const tag = reader.tag();
      if (tag !== SPAN.events) {
        reader.skip(tag & 7);
        continue;
      }
      const s = reader.lengthDelimited();
      visit(s, reader.pos);
    }
  }

  /** @internal */
  reset(buf: Uint8Array, start: number, end: number, scopeName: string, scopeVersion: string): void {
    this.buf = buf;
    this.start = start;
    this.end = end;
    this.traceIdStart = this.traceIdLen = this.spanIdStart = this.spanIdLen = this.parentIdStart = this.parentIdLen = 0;
    this.traceStateStart = this.traceStateLen = 0;
    this.name = '';
    this.kind = 0;
    this.statusCode = 0;
    this.durationNs = 0;
    this.startHi = this.startLo = this.endHi = this.endLo = 0;
    this.attrs = undefined;
    this.doubles = undefined;
    this.markStart = this.markEnd = -1;
    this.scopeName = scopeName;
    this.scopeVersion = scopeVersion;
  }

  /** @internal */
  setTimes(startLo: number, startHi: number, endLo: number, endHi: number): void {
    this.startLo = startLo;
    this.startHi = startHi;
    this.endLo = endLo;
    this.endHi = endHi;
  }

  /** @internal Exact as long as the duration is below 2^53 ns (104 days). */
  computeDuration(): void {
    const diff = (this.endHi - this.startHi) * 4294967296 + (this.endLo - this.startLo);
    this.durationNs = diff > 0 ? diff : 0;
  }
}

function hex(buf: Uint8Array, start: number, len: number): string {
  return len === 0 ? '' : Buffer.from(buf.buffer, buf.byteOffset + start, len).toString('hex');
}

/** The encoded `Resource` message (field 1) of a ResourceSpans / ResourceMetrics, if present. */
export function resourceMessage(bytes: Uint8Array): Uint8Array | undefined {
  const reader = new WireReader(bytes, 0, bytes.length);
  while (!reader.done) {
    const tag = reader.tag();
    if (tag === RESOURCE_ITEMS.resource) {
      const s = reader.lengthDelimited();
      return bytes.subarray(s, reader.pos);
    }
    reader.skip(tag & 7);
  }
  return undefined;
}

/** Attribute keys a caller needs, encoded once, so spans' other attributes are skipped unread. */
export class WantedAttributes {
  readonly keys: ReadonlyArray<{ readonly name: string; readonly bytes: Buffer }>;

  constructor(names: Iterable<string>) {
    this.keys = [...new Set(names)].map((name) => ({ name, bytes: Buffer.from(name, 'utf8') }));
  }
}

/**
 * Calls `visit` for every span of an encoded ResourceSpans. The bytes were checked by the
 * receiver (parseRequest), so malformed input only raises WireFormatError here. With `wanted`,
 * SpanView.attributes() holds only those keys. With `markKey` (a key shorter than 128 bytes), the
 * span walk notes where that attribute's value is (markStart / markEnd), comparing key bytes
 * only: a marker check that decodes nothing.
 */
export function forEachSpan(bytes: Uint8Array, visit: (span: SpanView) => void, wanted?: WantedAttributes, markKey?: Uint8Array): void {
  const view = new SpanView(wanted);
  view.markKey = markKey;
  const reader = new WireReader(bytes, 0, bytes.length);
  while (!reader.done) {
    const tag = reader.tag();
    if (tag !== RESOURCE_ITEMS.scopes) {
      reader.skip(tag & 7);
      continue;
    }
    const scopeStart = reader.lengthDelimited();
    visitScope(bytes, scopeStart, reader.pos, view, visit);
  }
}

function visitScope(buf: Uint8Array, start: number, end: number, view: SpanView, visit: (span: SpanView) => void): void {
  // The scope (field 1) normally precedes the spans; read it first so every span knows its scope.
  let scopeName = '';
  let scopeVersion = '';
  const first = new WireReader(buf, start, end);
  while (!first.done) {
    const tag = first.tag();
    if (tag === SCOPE_ITEMS.scope) {
      const s = first.lengthDelimited();
      [scopeName, scopeVersion] = scopeNameOf(buf, s, first.pos);
    } else first.skip(tag & 7);
  }
  const reader = new WireReader(buf, start, end);
  while (!reader.done) {
    const tag = reader.tag();
    if (tag !== SCOPE_ITEMS.items) {
      reader.skip(tag & 7);
      continue;
    }
    const s = reader.lengthDelimited();
    readSpan(buf, s, reader.pos, view, scopeName, scopeVersion);
    visit(view);
  }
}

/** The name and version of an InstrumentationScope. */
function scopeNameOf(buf: Uint8Array, start: number, end: number): [string, string] {
  const reader = new WireReader(buf, start, end);
  let name = '';
  let version = '';
  while (!reader.done) {
    const tag = reader.tag();
    if (tag === INSTRUMENTATION_SCOPE.name) {
      const s = reader.lengthDelimited();
      name = readString(buf, s, reader.pos);
    } else if (tag === INSTRUMENTATION_SCOPE.version) {
      const s = reader.lengthDelimited();
      version = readString(buf, s, reader.pos);
    } else reader.skip(tag & 7);
  }
  return [name, version];
}

function readSpan(buf: Uint8Array, start: number, end: number, view: SpanView, scopeName: string, scopeVersion: string): void {
  view.reset(buf, start, end, scopeName, scopeVersion);
  const reader = new WireReader(buf, start, end);
  let startLo = 0;
  let startHi = 0;
  let endLo = 0;
  let endHi = 0;
  while (!reader.done) {
    const tag = reader.tag();
    switch (tag) {
      case SPAN.trace_id: {
        view.traceIdStart = reader.lengthDelimited();
        view.traceIdLen = reader.pos - view.traceIdStart;
        break;
      }
      case SPAN.span_id: {
        view.spanIdStart = reader.lengthDelimited();
        view.spanIdLen = reader.pos - view.spanIdStart;
        break;
      }
      case SPAN.parent_span_id: {
        view.parentIdStart = reader.lengthDelimited();
        view.parentIdLen = reader.pos - view.parentIdStart;
        break;
      }
      case SPAN.trace_state: {
        view.traceStateStart = reader.lengthDelimited();
        view.traceStateLen = reader.pos - view.traceStateStart;
        break;
      }
      case SPAN.name: {
        const s = reader.lengthDelimited();
        view.name = readString(buf, s, reader.pos);
        break;
      }
      case SPAN.kind:
        view.kind = reader.varint();
        break;
      case SPAN.start_time_unix_nano: {
        const pos = reader.pos;
        reader.advance(8);
        startLo = readUint32LE(buf, pos);
        startHi = readUint32LE(buf, pos + 4);
        break;
      }
      case SPAN.end_time_unix_nano: {
        const pos = reader.pos;
        reader.advance(8);
        endLo = readUint32LE(buf, pos);
        endHi = readUint32LE(buf, pos + 4);
        break;
      }
      case SPAN.status: {
        const s = reader.lengthDelimited();
        view.statusCode = statusCodeOf(buf, s, reader.pos);
        break;
      }
      case SPAN.attributes: {
        const s = reader.lengthDelimited();
        if (view.markKey !== undefined && view.markStart < 0) findMark(buf, s, reader.pos, view, view.markKey);
        break;
      }
      default:
        reader.skip(tag & 7);
    }
  }
  view.setTimes(startLo, startHi, endLo, endHi);
  view.computeDuration();
}

/** Notes the value of a KeyValue (start..end) whose key is `key`, written key first as encoders do. */
function findMark(buf: Uint8Array, start: number, end: number, view: SpanView, key: Uint8Array): void {
  const len = key.length;
  if (buf[start] !== KEY_VALUE.key || buf[start + 1] !== len || start + 2 + len > end) return;
  for (let i = 0; i < len; i++) if (buf[start + 2 + i] !== key[i]) return;
  const kv = new WireReader(buf, start + 2 + len, end);
  while (!kv.done) {
    const t = kv.tag();
    if (t === KEY_VALUE.value) {
      view.markStart = kv.lengthDelimited();
      view.markEnd = kv.pos;
      return;
    }
    kv.skip(t & 7);
  }
  view.markStart = view.markEnd = end; // present with no value: an empty AnyValue
}

function statusCodeOf(buf: Uint8Array, start: number, end: number): number {
  const reader = new WireReader(buf, start, end);
  let code = 0;
  while (!reader.done) {
    const tag = reader.tag();
    if (tag === STATUS.code) code = reader.varint();
    else reader.skip(tag & 7);
  }
  return code;
}

/** Like decodeKeyValues, but reads the value of a key only if it is wanted (first occurrence wins). */
interface DoubleKeys {
  set: Set<string> | undefined;
}

/** Reused by SpanView.attributes() (synchronous, so one suffices). */
const SCRATCH_DOUBLES: DoubleKeys = { set: undefined };

function pickKeyValues(buf: Uint8Array, start: number, end: number, kvTag: number, wanted: WantedAttributes, doubles: DoubleKeys): Map<string, AttrValue> {
  const out = new Map<string, AttrValue>();
  const reader = new WireReader(buf, start, end);
  while (!reader.done && out.size < wanted.keys.length) {
    const tag = reader.tag();
    if (tag !== kvTag) {
      reader.skip(tag & 7);
      continue;
    }
    const kvStart = reader.lengthDelimited();
    const kvEnd = reader.pos;
    const kv = new WireReader(buf, kvStart, kvEnd);
    let name: string | undefined;
    let valueStart = -1;
    let valueEnd = -1;
    while (!kv.done) {
      const t = kv.tag();
      if (t === KEY_VALUE.key) {
        const s = kv.lengthDelimited();
        name = matchKey(buf, s, kv.pos, wanted);
        if (name === undefined || out.has(name)) break;
      } else if (t === KEY_VALUE.value) {
        valueStart = kv.lengthDelimited();
        valueEnd = kv.pos;
      } else kv.skip(t & 7);
    }
    if (name !== undefined && !out.has(name)) {
      const value = valueStart < 0 ? null : decodeAnyValue(buf, valueStart, valueEnd);
      if (typeof value === 'number' && isDoubleValue(buf, valueStart, valueEnd)) (doubles.set ??= new Set()).add(name);
      out.set(name, value);
    }
  }
  return out;
}

/** Whether an encoded AnyValue holds a double (its last value field, as a decoder keeps, is double_value). */
function isDoubleValue(buf: Uint8Array, start: number, end: number): boolean {
  // The usual encodings, one field filling the value: double_value (tag 0x21 + 8 bytes), int_value (tag 0x18 + varint).
  const first = buf[start];
  if (first === 0x21 && end - start === 9) return true;
  if (first === 0x18) {
    let i = start + 1;
    while (i < end && buf[i]! >= 0x80) i++;
    if (i === end - 1) return false;
  }
  const reader = new WireReader(buf, start, end);
  let last = 0;
  while (!reader.done) {
    const tag = reader.tag();
    last = tag >>> 3;
    reader.skip(tag & 7);
  }
  return last === 4;
}

/**
 * The keys of a KeyValue list (repeated field with tag `kvTag` within start..end) whose value is a double,
 * first occurrence of a key deciding, as in decodeKeyValues; undefined when there are none.
 */
export function doubleKeysOf(buf: Uint8Array, start: number, end: number, kvTag: number): Set<string> | undefined {
  let out: Set<string> | undefined;
  const seen = new Set<string>();
  forEachKeyValue(buf, start, end, kvTag, (ks, ke, vs, ve) => {
    const key = ks < 0 ? '' : readString(buf, ks, ke);
    if (seen.has(key)) return;
    seen.add(key);
    if (vs >= 0 && isDoubleValue(buf, vs, ve)) (out ??= new Set()).add(key);
  });
  return out;
}

function matchKey(buf: Uint8Array, start: number, end: number, wanted: WantedAttributes): string | undefined {
  const len = end - start;
  outer: for (const key of wanted.keys) {
    if (key.bytes.length !== len) continue;
    for (let i = 0; i < len; i++) if (buf[start + i] !== key.bytes[i]) continue outer;
    return key.name;
  }
  return undefined;
}

function readUint32LE(buf: Uint8Array, pos: number): number {
  return (buf[pos]! | (buf[pos + 1]! << 8) | (buf[pos + 2]! << 16)) + buf[pos + 3]! * 0x1000000;
}
