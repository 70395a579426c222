// Scope, span and span event conditions on the wire: reads a kept ResourceSpans' scopes, spans and
// events from its bytes, evaluates, and rewrites only what lost something. A block that loses
// nothing is returned as undefined (the caller forwards the same bytes). As in the Collector's
// filter processor, a scope left without spans and a resource left without scopes are removed.

import type { ResourceData, TelemetryItem } from '../../ottl';
import { WIRE_LEN, WireReader, varintSize, writeVarint } from '../../pdata/wire';
import type { OttlGroup } from './ottl-rules';
import { WireScope, WireSpan, WireSpanEvent } from './wire-items';

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

/** Appends `field` (length-delimited) holding `content` to `out`. */
function pushFramed(out: Parts, field: number, content: Parts): void {
  const len = partsLength(content);
  const tag = field * 8 + WIRE_LEN;
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
 * Applies one group's scope / span / span event conditions to a ResourceSpans. Returns undefined
 * when nothing is removed, null when the resource is left without scopes, else the new bytes and
 * span count. Evaluation errors under error_mode propagate are thrown (OttlRuntimeError).
 */
export function filterSpansBlock(bytes: Uint8Array, resource: ResourceData, group: OttlGroup): FilteredBlock | null | undefined {
  const out: Parts = [];
  let changed = false;
  let scopes = 0;
  let spans = 0;
  const reader = new WireReader(bytes, 0, bytes.length);
  while (!reader.done) {
    const fieldStart = reader.pos;
    const tag = reader.tag();
    if (tag !== 2 * 8 + WIRE_LEN) {
      reader.skip(tag & 7);
      out.push(bytes.subarray(fieldStart, reader.pos));
      continue;
    }
    const s = reader.lengthDelimited();
    const e = reader.pos;
    const result = filterScope(bytes, s, e, resource, group);
    if (result === null) {
      changed = true;
      continue;
    }
    scopes++;
    spans += result.spans;
    if (result.parts === undefined) out.push(bytes.subarray(fieldStart, e));
    else {
      changed = true;
      pushFramed(out, 2, result.parts);
    }
  }
  // A resource without scopes is removed, also one that arrived so.
  if (scopes === 0) return null;
  if (!changed) return undefined;
  return { bytes: concat(out), itemCount: spans };
}

/** One ScopeSpans: null = removed, else its spans left and its new content (undefined: unchanged). */
function filterScope(buf: Uint8Array, start: number, end: number, resource: ResourceData, group: OttlGroup): { parts: Parts | undefined; spans: number } | null {
  const scope = new WireScope(buf, start, end);
  if (group.scope?.eval({ resource, scope })) return null;
  const spanSeq = group.span;
  const eventSeq = group.spanevent;
  const out: Parts = [];
  let changed = false;
  let kept = 0;
  const reader = new WireReader(buf, start, end);
  while (!reader.done) {
    const fieldStart = reader.pos;
    const tag = reader.tag();
    if (tag !== 2 * 8 + WIRE_LEN) {
      reader.skip(tag & 7);
      out.push(buf.subarray(fieldStart, reader.pos));
      continue;
    }
    const s = reader.lengthDelimited();
    const e = reader.pos;
    if (!spanSeq && !eventSeq) {
      kept++;
      out.push(buf.subarray(fieldStart, e));
      continue;
    }
    const span = new WireSpan(buf, s, e);
    const item: TelemetryItem = { resource, scope, span };
    if (spanSeq?.eval(item)) {
      changed = true;
      continue;
    }
    kept++;
    const events = eventSeq ? filterEvents(buf, s, e, item, eventSeq) : undefined;
    if (events === undefined) out.push(buf.subarray(fieldStart, e));
    else {
      changed = true;
      pushFramed(out, 2, events);
    }
  }
  // An empty scope is removed, as the Collector does (also one that arrived empty).
  if (kept === 0) return null;
  return { parts: changed ? out : undefined, spans: kept };
}

/** The span's content without the events the conditions match; undefined when none does. */
function filterEvents(buf: Uint8Array, start: number, end: number, spanItem: TelemetryItem, seq: NonNullable<OttlGroup['spanevent']>): Parts | undefined {
  let out: Parts | undefined;
  let copiedTo = start;
  const reader = new WireReader(buf, start, end);
  while (!reader.done) {
    const fieldStart = reader.pos;
    const tag = reader.tag();
    if (tag !== 11 * 8 + WIRE_LEN) {
      reader.skip(tag & 7);
      continue;
    }
    const s = reader.lengthDelimited();
    const e = reader.pos;
    if (!seq.eval({ ...spanItem, spanEvent: new WireSpanEvent(buf, s, e) })) continue;
    // Drop [fieldStart, e): copy what precedes it since the last cut.
    out ??= [];
    if (fieldStart > copiedTo) out.push(buf.subarray(copiedTo, fieldStart));
    copiedTo = e;
  }
  if (!out) return undefined;
  if (end > copiedTo) out.push(buf.subarray(copiedTo, end));
  return out;
}
