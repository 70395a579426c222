// Scope, span and span event conditions on the wire: reads a kept ResourceSpans' scopes, spans and
// events from its bytes, evaluates, and rewrites only what lost something. A block that loses
// nothing is returned as undefined (the caller forwards the same bytes). As in the Collector's
// filter processor, a scope left without spans and a resource left without scopes are removed.

import type { ResourceData, TelemetryItem } from '../../ottl';
import { SCOPE_ITEMS, SPAN } from '../../pdata/fields';
import { Splice, rewriteScopes, type Parts } from '../../pdata/splice';
import { WireReader } from '../../pdata/wire';
import type { OttlGroup } from './ottl-rules';
import { WireSpan, WireSpanEvent, wireScope } from './wire-items';

export interface FilteredBlock {
  readonly bytes: Uint8Array;
  readonly itemCount: number;
}

/**
 * Applies one group's scope / span / span event conditions to a ResourceSpans. Returns undefined
 * when nothing is removed, null when the resource is left without scopes, else the new bytes and
 * span count. Evaluation errors under error_mode propagate are thrown (OttlRuntimeError).
 */
export function filterSpansBlock(bytes: Uint8Array, resource: ResourceData, group: OttlGroup): FilteredBlock | null | undefined {
  let scopes = 0;
  let spans = 0;
  const out = rewriteScopes(bytes, (s, e) => {
    const result = filterScope(bytes, s, e, resource, group);
    if (result === null) return null;
    scopes++;
    spans += result.spans;
    return result.parts;
  });
  // A resource without scopes is removed, also one that arrived so.
  if (scopes === 0) return null;
  return out ? { bytes: out, itemCount: spans } : undefined;
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
