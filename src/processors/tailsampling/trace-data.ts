import { readString, type Attributes } from '../../pdata/attributes';
import type { ResourceBlock } from '../../pdata/batch';
import { MAX_TYPED_DEPTH, decodeTypedKeyValues, decodeTypedValue, keyValueBytes } from '../../pdata/keyvalues';
import { RESOURCE_ITEMS, SCOPE_ITEMS, SPAN, STATUS } from '../../pdata/fields';
import { WireReader, varintSize, writeVarint } from '../../pdata/wire';
import type { OttlValue } from '../../ottl';

// Spans wait for their trace's decision as the bytes they arrived in. A received ResourceSpans is
// walked once into a table of its spans' byte ranges (one typed array per block); each span's trace
// id picks its trace, and the trace's part of the block links its spans through that table (no
// object or array per span or part). Nothing is decoded until a policy reads a field, and then only
// that field. A kept trace leaves as new ResourceSpans made of the original resource and scope
// fields and the original span bytes, concatenated.

const SPAN_TAG = SCOPE_ITEMS.items;
const SCOPE_SPANS_TAG = RESOURCE_ITEMS.scopes;

/** Per span of a block, in wire order: scopeStart, scopeEnd, spanStart, spanEnd, next span of the same part (-1: none). */
const STRIDE = 5;

/** One received resource whose spans (some of them) wait in traces. Shared by those traces. */
export class StoredBlock {
  /** The span table (STRIDE entries per span), filled by splitByTrace. */
  spans: Int32Array = EMPTY_TABLE;
  /** Traces still holding spans of this block; the bytes are released at 0. */
  refs = 0;
  /** Whether its bytes are counted in the processor's buffered bytes. */
  counted = false;
  /** Bytes counted for it: its own length, or its underlying buffer's when it is a view. */
  held = 0;

  constructor(
    /** The ResourceSpans bytes: the received view while ingesting, a private copy once buffered. */
    public bytes: Uint8Array,
    readonly attributes: Attributes,
  ) {}
}

const EMPTY_TABLE = new Int32Array(0);

/** The spans of one trace from one block: a chain through the block's span table, in wire order. */
export interface Part {
  readonly block: StoredBlock;
  /** Offset of its trace id (16 bytes) in block.bytes. */
  readonly idAt: number;
  /** Index of its first span in block.spans (entries / STRIDE). */
  readonly first: number;
  /** Index of its last span, where the next one is linked. */
  last: number;
  spans: number;
  bytes: number;
  /** Whether one of these spans has no parent. */
  root: boolean;
}

/** Trace id bytes as a Map key (16 one-byte characters). */
export function traceKey(buf: Uint8Array, start: number, len: number): string {
  return asBuffer(buf).toString('latin1', start, start + len);
}

function asBuffer(buf: Uint8Array): Buffer {
  return Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
}

/** Whether the 16-byte ids at a and b of buf are equal. */
function sameId(buf: Uint8Array, a: number, b: number): boolean {
  for (let i = 0; i < 16; i++) if (buf[a + i] !== buf[b + i]) return false;
  return true;
}

/** Scratch for grouping one block's spans by trace: part index + 1 per slot (0: empty), reused. */
let groupSlots = new Int32Array(1024);

/**
 * Calls `visit(part)` for every trace present in the block, with the spans of that trace, in the
 * order of each trace's first span. Groups by the id bytes themselves (no string per span).
 */
export function splitByTrace(block: ResourceBlock, stored: StoredBlock, visit: (part: Part) => void): void {
  const buf = block.bytes;
  const parts: Part[] = [];
  let table = new Int32Array(STRIDE * Math.max(1, block.itemCount));
  let slots = groupSlotsFor(block.itemCount);
  let mask = slots.length - 1;
  let n = 0;
  const reader = new WireReader(buf, 0, buf.length);
  const scopeReader = new WireReader(buf, 0, 0);
  try {
    while (!reader.done) {
      const tag = reader.tag();
      if (tag !== SCOPE_SPANS_TAG) {
        reader.skip(tag & 7);
        continue;
      }
      const scopeStart = reader.lengthDelimited();
      const scopeEnd = reader.pos;
      scopeReader.reset(buf, scopeStart, scopeEnd);
      while (!scopeReader.done) {
        const t = scopeReader.tag();
        if (t !== SPAN_TAG) {
          scopeReader.skip(t & 7);
          continue;
        }
        const spanStart = scopeReader.lengthDelimited();
        const spanEnd = scopeReader.pos;
        const ids = spanIds(buf, spanStart, spanEnd);
        const idAt = ids.traceStart;
        if ((n + 1) * STRIDE > table.length) {
          const grown = new Int32Array(table.length * 2);
          grown.set(table);
          table = grown;
        }
        if ((parts.length + 1) * 2 > slots.length) {
          // More traces than the item count said (it is only a hint): a larger scratch, regrouped.
          slots = regroup(buf, parts, slots.length * 2);
          mask = slots.length - 1;
        }
        const at = n * STRIDE;
        table[at] = scopeStart;
        table[at + 1] = scopeEnd;
        table[at + 2] = spanStart;
        table[at + 3] = spanEnd;
        table[at + 4] = -1;
        let slot = idHash(buf, idAt) & mask;
        let part: Part | undefined;
        for (let p = slots[slot]!; p !== 0; p = slots[slot]!) {
          const candidate = parts[p - 1]!;
          if (sameId(buf, candidate.idAt, idAt)) {
            part = candidate;
            break;
          }
          slot = (slot + 1) & mask;
        }
        if (!part) {
          part = { block: stored, idAt, first: n, last: n, spans: 0, bytes: 0, root: false };
          parts.push(part);
          slots[slot] = parts.length;
        } else {
          table[part.last * STRIDE + 4] = n;
          part.last = n;
        }
        n++;
        part.spans++;
        part.bytes += spanEnd - spanStart;
        if (!ids.hasParent) part.root = true;
      }
    }
  } finally {
    slots.fill(0);
  }
  stored.spans = table;
  for (const part of parts) visit(part);
}

/** The shared scratch, large enough for `items` traces at half load. */
function groupSlotsFor(items: number): Int32Array {
  let size = groupSlots.length;
  while (size < items * 2) size *= 2;
  if (size !== groupSlots.length) groupSlots = new Int32Array(size);
  return groupSlots;
}

function regroup(buf: Uint8Array, parts: readonly Part[], size: number): Int32Array {
  groupSlots = new Int32Array(size);
  const mask = size - 1;
  parts.forEach((part, i) => {
    let slot = idHash(buf, part.idAt) & mask;
    while (groupSlots[slot] !== 0) slot = (slot + 1) & mask;
    groupSlots[slot] = i + 1;
  });
  return groupSlots;
}

/** A hash of the 16 id bytes at `at`. */
function idHash(b: Uint8Array, at: number): number {
  let h = 0x811c9dc5;
  for (let w = at; w < at + 16; w += 4) {
    h = Math.imul(h ^ (b[w]! | (b[w + 1]! << 8) | (b[w + 2]! << 16) | (b[w + 3]! << 24)), 0x9e3779b1);
    h ^= h >>> 15;
  }
  return h >>> 0;
}

const idScratch = { traceStart: 0, hasParent: false };
const idReader = new WireReader(new Uint8Array(0), 0, 0);

/** Where the trace id starts, and whether the span has a parent (the scanner checked both ids). */
function spanIds(buf: Uint8Array, start: number, end: number): typeof idScratch {
  const reader = idReader.reset(buf, start, end);
  idScratch.traceStart = -1;
  idScratch.hasParent = false;
  while (!reader.done) {
    const tag = reader.tag();
    if (tag === SPAN.trace_id) {
      idScratch.traceStart = reader.lengthDelimited();
    } else if (tag === SPAN.parent_span_id) {
      const s = reader.lengthDelimited();
      if (reader.pos > s) idScratch.hasParent = true;
    } else reader.skip(tag & 7);
  }
  return idScratch;
}

/** Calls `visit` for every span of the parts, in arrival order. */
export function forEachSpanRange(parts: readonly Part[], visit: (buf: Uint8Array, start: number, end: number, part: Part, scopeStart: number, scopeEnd: number) => boolean | void): boolean {
  for (const part of parts) {
    const t = part.block.spans;
    const buf = part.block.bytes;
    for (let i = part.first; i >= 0; i = t[i * STRIDE + 4]!) {
      const at = i * STRIDE;
      if (visit(buf, t[at + 2]!, t[at + 3]!, part, t[at]!, t[at + 1]!) === true) return true;
    }
  }
  return false;
}

/** Reads single fields of one encoded Span on demand (the bytes were checked by the receiver). */
export class SpanFields {
  buf: Uint8Array = new Uint8Array(0);
  start = 0;
  end = 0;
  private readonly reader = new WireReader(new Uint8Array(0), 0, 0);
  private readonly inner = new WireReader(new Uint8Array(0), 0, 0);

  at(buf: Uint8Array, start: number, end: number): this {
    this.buf = buf;
    this.start = start;
    this.end = end;
    return this;
  }

  statusCode(): number {
    const s = this.find(SPAN.status);
    if (s < 0) return 0;
    const reader = this.inner.reset(this.buf, s, this.reader.pos);
    let code = 0;
    while (!reader.done) {
      const tag = reader.tag();
      if (tag === STATUS.code) code = reader.varint();
      else reader.skip(tag & 7);
    }
    return code;
  }

  startTime(): bigint {
    return this.fixed64(SPAN.start_time_unix_nano);
  }

  endTime(): bigint {
    return this.fixed64(SPAN.end_time_unix_nano);
  }

  /**
   * Start and end time in one pass, as unsigned 32-bit halves into `out` (startHi, startLo, endHi,
   * endLo; 0 when absent, the last occurrence wins): no BigInt per span.
   */
  times(out: Float64Array): void {
    const reader = this.reader.reset(this.buf, this.start, this.end);
    let start = -1;
    let end = -1;
    while (!reader.done) {
      const t = reader.tag();
      if (t === SPAN.start_time_unix_nano) start = reader.pos;
      else if (t === SPAN.end_time_unix_nano) end = reader.pos;
      reader.skip(t & 7);
    }
    const b = this.buf;
    out[0] = start < 0 ? 0 : (b[start + 4]! | (b[start + 5]! << 8) | (b[start + 6]! << 16) | (b[start + 7]! << 24)) >>> 0;
    out[1] = start < 0 ? 0 : (b[start]! | (b[start + 1]! << 8) | (b[start + 2]! << 16) | (b[start + 3]! << 24)) >>> 0;
    out[2] = end < 0 ? 0 : (b[end + 4]! | (b[end + 5]! << 8) | (b[end + 6]! << 16) | (b[end + 7]! << 24)) >>> 0;
    out[3] = end < 0 ? 0 : (b[end]! | (b[end + 1]! << 8) | (b[end + 2]! << 16) | (b[end + 3]! << 24)) >>> 0;
  }

  flags(): number {
    const reader = this.reader.reset(this.buf, this.start, this.end);
    let flags = 0;
    while (!reader.done) {
      const t = reader.tag();
      if (t === SPAN.flags) {
        const p = reader.pos;
        reader.advance(4);
        flags = (this.buf[p]! | (this.buf[p + 1]! << 8) | (this.buf[p + 2]! << 16) | (this.buf[p + 3]! << 24)) >>> 0;
      } else reader.skip(t & 7);
    }
    return flags;
  }

  traceState(): string {
    const s = this.find(SPAN.trace_state);
    return s < 0 ? '' : readString(this.buf, s, this.reader.pos);
  }

  /** The value of the first attribute named `key` (as bytes), or undefined when absent. */
  attribute(key: Uint8Array): OttlValue | undefined {
    return findAttribute(this.buf, this.start, this.end, SPAN.attributes, key);
  }

  /** Offset of the payload of the last occurrence of a length-delimited field (protobuf: last wins), or -1; reader.pos is its end. */
  private find(tag: number): number {
    const reader = this.reader.reset(this.buf, this.start, this.end);
    let found = -1;
    let foundEnd = 0;
    while (!reader.done) {
      const t = reader.tag();
      if (t === tag) {
        found = reader.lengthDelimited();
        foundEnd = reader.pos;
      } else reader.skip(t & 7);
    }
    reader.pos = foundEnd;
    return found;
  }

  private fixed64(tag: number): bigint {
    const reader = this.reader.reset(this.buf, this.start, this.end);
    let at = -1;
    while (!reader.done) {
      const t = reader.tag();
      if (t === tag) at = reader.pos;
      reader.skip(t & 7);
    }
    return at < 0 ? 0n : asBuffer(this.buf).readBigUInt64LE(at);
  }
}

/** First key-value (the field tagged `kvTag`, from fields.ts, of the message in [start, end)) whose key equals `key`. */
export function findAttribute(buf: Uint8Array, start: number, end: number, kvTag: number, key: Uint8Array): OttlValue | undefined {
  const range = keyValueBytes(buf, start, end, kvTag, key);
  return range ? decodeValue(buf, range[0], range[1]) : undefined;
}

/** Spans to emit from one block, by their index in its span table; they leave in wire order, grouped by scope. */
export class OutputBlock {
  private readonly indices: number[] = [];
  spanCount = 0;

  constructor(readonly block: StoredBlock) {}

  add(part: Part): void {
    const t = this.block.spans;
    for (let i = part.first; i >= 0; i = t[i * STRIDE + 4]!) this.indices.push(i);
    this.spanCount += part.spans;
  }

  /** A ResourceSpans: the block's fields other than scope_spans, then each scope's own fields and its spans. */
  encode(): ResourceBlock {
    const buf = this.block.bytes;
    const t = this.block.spans;
    // Wire order: the spans of one scope are next to each other.
    const order = Int32Array.from(this.indices).sort();
    // Sizes first (one per run of spans of a scope), then the bytes: no object per scope or span.
    const runSizes = new Int32Array(order.length);
    let runs = 0;
    let total = otherFields(null, 0, buf, 0, buf.length, SCOPE_SPANS_TAG);
    for (let k = 0; k < order.length; runs++) {
      const at = order[k]! * STRIDE;
      const scopeStart = t[at]!;
      let size = otherFields(null, 0, buf, scopeStart, t[at + 1]!, SPAN_TAG);
      for (; k < order.length && t[order[k]! * STRIDE]! === scopeStart; k++) {
        const len = t[order[k]! * STRIDE + 3]! - t[order[k]! * STRIDE + 2]!;
        size += 1 + varintSize(len) + len;
      }
      runSizes[runs] = size;
      total += 1 + varintSize(size) + size;
    }
    const out = Buffer.allocUnsafe(total);
    let pos = otherFields(out, 0, buf, 0, buf.length, SCOPE_SPANS_TAG);
    for (let k = 0, run = 0; k < order.length; run++) {
      const at = order[k]! * STRIDE;
      const scopeStart = t[at]!;
      out[pos++] = SCOPE_SPANS_TAG;
      pos = writeVarint(out, pos, runSizes[run]!);
      pos = otherFields(out, pos, buf, scopeStart, t[at + 1]!, SPAN_TAG);
      for (; k < order.length && t[order[k]! * STRIDE]! === scopeStart; k++) {
        const s = t[order[k]! * STRIDE + 2]!;
        const e = t[order[k]! * STRIDE + 3]!;
        out[pos++] = SPAN_TAG;
        pos = writeVarint(out, pos, e - s);
        out.set(buf.subarray(s, e), pos);
        pos += e - s;
      }
    }
    return { bytes: out, attributes: this.block.attributes, itemCount: this.spanCount };
  }
}

const fieldReader = new WireReader(new Uint8Array(0), 0, 0);

/**
 * Every field (tag included) of the message in [start, end) other than those tagged `skipTag`:
 * copied into `out` at `pos` (returns the new position), or with `out` null only measured (returns
 * pos plus their size).
 */
function otherFields(out: Buffer | null, pos: number, buf: Uint8Array, start: number, end: number, skipTag: number): number {
  const reader = fieldReader.reset(buf, start, end);
  let runStart = -1;
  let runEnd = -1;
  while (!reader.done) {
    const fieldStart = reader.pos;
    const tag = reader.tag();
    reader.skip(tag & 7);
    if (tag === skipTag) continue;
    if (runEnd === fieldStart) {
      runEnd = reader.pos;
      continue;
    }
    if (runStart >= 0) pos = copyRun(out, pos, buf, runStart, runEnd);
    runStart = fieldStart;
    runEnd = reader.pos;
  }
  if (runStart >= 0) pos = copyRun(out, pos, buf, runStart, runEnd);
  return pos;
}

function copyRun(out: Buffer | null, pos: number, buf: Uint8Array, start: number, end: number): number {
  if (out) out.set(buf.subarray(start, end), pos);
  return pos + end - start;
}

/**
 * An AnyValue with its type kept as pcommon keeps it: int64 as bigint, double as number, a map as a
 * Map (first key wins), so policies can tell `5` from `5.0` as the Collector does. No depth bound.
 */
export function decodeValue(buf: Uint8Array, start: number, end: number): OttlValue {
  return decodeTypedValue(buf, start, end, MAX_TYPED_DEPTH);
}

/** Every key-value (the field tagged `kvTag`, from fields.ts) of a message as a Map; the first occurrence of a key wins, as pcommon's Get. */
export function decodeKeyValueMap(buf: Uint8Array, start: number, end: number, kvTag: number): Map<string, OttlValue> {
  return decodeTypedKeyValues(buf, start, end, kvTag, MAX_TYPED_DEPTH);
}

/** [start, end) of the encoded Resource of a ResourceSpans, or undefined. */
export function resourceRange(buf: Uint8Array): [number, number] | undefined {
  const reader = new WireReader(buf, 0, buf.length);
  let found: [number, number] | undefined;
  while (!reader.done) {
    const tag = reader.tag();
    if (tag === RESOURCE_ITEMS.resource) {
      const s = reader.lengthDelimited();
      found = [s, reader.pos];
    } else reader.skip(tag & 7);
  }
  return found;
}
