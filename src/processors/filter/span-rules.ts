// Scope, span and span event conditions on the wire: reads a kept ResourceSpans' scopes, spans and
// events from its bytes, evaluates, and rewrites only what lost something. A block that loses
// nothing is returned as undefined (the caller forwards the same bytes). As in the Collector's
// filter processor, a scope left without spans and a resource left without scopes are removed.

import type { ResourceData, TelemetryItem } from '../../ottl';
import { RESOURCE_ITEMS, SCOPE_ITEMS, SPAN } from '../../pdata/fields';
import { WireReader, varintSize, writeVarint } from '../../pdata/wire';
import type { OttlGroup } from './ottl-rules';
import { WireSpan, WireSpanEvent, wireScope } from './wire-items';

export interface FilteredBlock {
  readonly bytes: Uint8Array;
  readonly itemCount: number;
}

/** Encoded pieces of a message under construction: its content is their concatenation. */
type Parts = Uint8Array[];

function partsLength(parts: Parts): number {
  let n = 0;
  for (const p of parts) n += p.length;
  return n;
}

/** Appends the length-delimited field `tag` (from pdata/fields.ts) holding `content` to `out`. */
function pushFramed(out: Parts, tag: number, content: Parts): void {
  const len = partsLength(content);
  const header = new Uint8Array(varintSize(tag) + varintSize(len));
  writeVarint(header, writeVarint(header, 0, tag), len);
  out.push(header, ...content);
}

function concat(parts: Parts): Uint8Array {
  const out = Buffer.allocUnsafe(partsLength(parts));
  let pos = 0;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.length;
  }
  return out;
}

/**
 * The content of a message with some of its fields cut or replaced: unchanged runs of fields are
 * copied as single views, and nothing is built until the first change.
 */
class Splice {
  parts: Parts | undefined;
  private copyFrom: number;

  constructor(private readonly buf: Uint8Array, start: number) {
    this.copyFrom = start;
  }

  /** Leaves out the field at [fieldStart, fieldEnd). */
  cut(fieldStart: number, fieldEnd: number): void {
    const parts = (this.parts ??= []);
    if (fieldStart > this.copyFrom) parts.push(this.buf.subarray(this.copyFrom, fieldStart));
    this.copyFrom = fieldEnd;
  }

  /** Puts the field `tag` with new content in place of the field at [fieldStart, fieldEnd). */
  replace(fieldStart: number, fieldEnd: number, tag: number, content: Parts): void {
    this.cut(fieldStart, fieldEnd);
    pushFramed(this.parts!, tag, content);
  }

  /** The new content, or undefined when nothing changed. */
  finish(end: number): Parts | undefined {
    if (this.parts && end > this.copyFrom) this.parts.push(this.buf.subarray(this.copyFrom, end));
    return this.parts;
  }
}

/**
 * Applies one group's scope / span / span event conditions to a ResourceSpans. Returns undefined
 * when nothing is removed, null when the resource is left without scopes, else the new bytes and
 * span count. Evaluation errors under error_mode propagate are thrown (OttlRuntimeError).
 */
export function filterSpansBlock(bytes: Uint8Array, resource: ResourceData, group: OttlGroup): FilteredBlock | null | undefined {
  const splice = new Splice(bytes, 0);
  let scopes = 0;
  let spans = 0;
  const reader = new WireReader(bytes, 0, bytes.length);
  while (!reader.done) {
    const fieldStart = reader.pos;
    const tag = reader.tag();
    if (tag !== RESOURCE_ITEMS.scopes) {
      reader.skip(tag & 7);
      continue;
    }
    const s = reader.lengthDelimited();
    const e = reader.pos;
    const result = filterScope(bytes, s, e, resource, group);
    if (result === null) {
      splice.cut(fieldStart, e);
      continue;
    }
    scopes++;
    spans += result.spans;
    if (result.parts) splice.replace(fieldStart, e, RESOURCE_ITEMS.scopes, result.parts);
  }
  // A resource without scopes is removed, also one that arrived so.
  if (scopes === 0) return null;
  const parts = splice.finish(bytes.length);
  return parts ? { bytes: concat(parts), itemCount: spans } : undefined;
}

/** One ScopeSpans: null = removed, else its spans left and its new content (undefined: unchanged). */
function filterScope(buf: Uint8Array, start: number, end: number, resource: ResourceData, group: OttlGroup): { parts: Parts | undefined; spans: number } | null {
  const scope = wireScope(buf, start, end);
  if (group.scope?.eval({ resource, scope })) return null;
  const spanSeq = group.span;
  const eventSeq = group.spanevent;
  const splice = new Splice(buf, start);
  let kept = 0;
  const reader = new WireReader(buf, start, end);
  while (!reader.done) {
    const fieldStart = reader.pos;
    const tag = reader.tag();
    if (tag !== SCOPE_ITEMS.items) {
      reader.skip(tag & 7);
      continue;
    }
    const s = reader.lengthDelimited();
    const e = reader.pos;
    if (!spanSeq && !eventSeq) {
      kept++;
      continue;
    }
    const span = new WireSpan(buf, s, e);
    const item: TelemetryItem = { resource, scope, span };
    if (spanSeq?.eval(item)) {
      splice.cut(fieldStart, e);
      continue;
    }
    kept++;
    const events = eventSeq ? filterEvents(buf, s, e, item, eventSeq) : undefined;
    if (events) splice.replace(fieldStart, e, SCOPE_ITEMS.items, events);
  }
  // An empty scope is removed, as the Collector does (also one that arrived empty).
  if (kept === 0) return null;
  return { parts: splice.finish(end), spans: kept };
}

/** The span's content without the events the conditions match; undefined when none does. */
function filterEvents(buf: Uint8Array, start: number, end: number, spanItem: TelemetryItem, seq: NonNullable<OttlGroup['spanevent']>): Parts | undefined {
  const splice = new Splice(buf, start);
  const reader = new WireReader(buf, start, end);
  while (!reader.done) {
    const fieldStart = reader.pos;
    const tag = reader.tag();
    if (tag !== SPAN.events) {
      reader.skip(tag & 7);
      continue;
    }
    const s = reader.lengthDelimited();
    const e = reader.pos;
    if (seq.eval({ ...spanItem, spanEvent: new WireSpanEvent(buf, s, e) })) splice.cut(fieldStart, e);
  }
  return splice.finish(end);
}
