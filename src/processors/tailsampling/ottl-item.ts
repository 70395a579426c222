import { readString } from '../../pdata/attributes';
import { INSTRUMENTATION_SCOPE, RESOURCE, RESOURCE_ITEMS, SCOPE_ITEMS, SPAN, SPAN_EVENT, STATUS } from '../../pdata/fields';
import { WireReader } from '../../pdata/wire';
import { SPAN_CONTEXT, SPAN_EVENT_CONTEXT, type OttlContext, type ResourceData, type ScopeData, type SpanData, type SpanEventData, type TelemetryItem } from '../../ottl';
import { decodeKeyValueMap } from './trace-data';

// The ottl_condition policy's items, decoded from the wire only for the traces that policy
// evaluates: the span (and its events) with its resource and scope, in the shape the OTTL span and
// spanevent contexts read.

export const SPAN_OTTL_CONTEXT: OttlContext<TelemetryItem> = SPAN_CONTEXT;
export const SPAN_EVENT_OTTL_CONTEXT: OttlContext<TelemetryItem> = SPAN_EVENT_CONTEXT;

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

export function decodeResource(buf: Uint8Array): ResourceData {
  const out: Mutable<ResourceData> = {};
  const reader = new WireReader(buf, 0, buf.length);
  while (!reader.done) {
    const tag = reader.tag();
    if (tag === RESOURCE_ITEMS.resource) {
      const s = reader.lengthDelimited();
      const inner = new WireReader(buf, s, reader.pos);
      out.attributes = decodeKeyValueMap(buf, s, reader.pos, RESOURCE.attributes);
      while (!inner.done) {
        const t = inner.tag();
        if (t === RESOURCE.dropped_attributes_count) out.droppedAttributesCount = inner.varint();
        else inner.skip(t & 7);
      }
    } else if (tag === RESOURCE_ITEMS.schema_url) {
      const s = reader.lengthDelimited();
      out.schemaUrl = readString(buf, s, reader.pos);
    } else reader.skip(tag & 7);
  }
  return out;
}

export function decodeScope(buf: Uint8Array, start: number, end: number): ScopeData {
  const out: Mutable<ScopeData> = {};
  const reader = new WireReader(buf, start, end);
  while (!reader.done) {
    const tag = reader.tag();
    if (tag === SCOPE_ITEMS.scope) {
      const s = reader.lengthDelimited();
      const e = reader.pos;
      out.attributes = decodeKeyValueMap(buf, s, e, INSTRUMENTATION_SCOPE.attributes);
      const inner = new WireReader(buf, s, e);
      while (!inner.done) {
        const t = inner.tag();
        if (t === INSTRUMENTATION_SCOPE.name) {
          const x = inner.lengthDelimited();
          out.name = readString(buf, x, inner.pos);
        } else if (t === INSTRUMENTATION_SCOPE.version) {
          const x = inner.lengthDelimited();
          out.version = readString(buf, x, inner.pos);
        } else if (t === INSTRUMENTATION_SCOPE.dropped_attributes_count) out.droppedAttributesCount = inner.varint();
        else inner.skip(t & 7);
      }
    } else if (tag === SCOPE_ITEMS.schema_url) {
      const s = reader.lengthDelimited();
      out.schemaUrl = readString(buf, s, reader.pos);
    } else reader.skip(tag & 7);
  }
  return out;
}

/** The span and the [start, end) of each of its events. */
export function decodeSpan(buf: Uint8Array, start: number, end: number): { span: SpanData; events: number[] } {
  const out: Mutable<SpanData> = { attributes: decodeKeyValueMap(buf, start, end, SPAN.attributes) };
  const events: number[] = [];
  const reader = new WireReader(buf, start, end);
  while (!reader.done) {
    const tag = reader.tag();
    switch (tag) {
      case SPAN.trace_id:
      case SPAN.span_id:
      case SPAN.parent_span_id: {
        const s = reader.lengthDelimited();
        const bytes = buf.slice(s, reader.pos);
        if (tag === SPAN.trace_id) out.traceId = bytes;
        else if (tag === SPAN.span_id) out.spanId = bytes;
        else out.parentSpanId = bytes;
        break;
      }
      case SPAN.trace_state: {
        const s = reader.lengthDelimited();
        out.traceState = readString(buf, s, reader.pos);
        break;
      }
      case SPAN.name: {
        const s = reader.lengthDelimited();
        out.name = readString(buf, s, reader.pos);
        break;
      }
      case SPAN.kind:
        out.kind = reader.varint();
        break;
      case SPAN.start_time_unix_nano:
        out.startTimeUnixNano = reader.fixed64AsBigInt();
        break;
      case SPAN.end_time_unix_nano:
        out.endTimeUnixNano = reader.fixed64AsBigInt();
        break;
      case SPAN.dropped_attributes_count:
        out.droppedAttributesCount = reader.varint();
        break;
      case SPAN.events: {
        const s = reader.lengthDelimited();
        events.push(s, reader.pos);
        break;
      }
      case SPAN.dropped_events_count:
        out.droppedEventsCount = reader.varint();
        break;
      case SPAN.dropped_links_count:
        out.droppedLinksCount = reader.varint();
        break;
      case SPAN.status: {
        const s = reader.lengthDelimited();
        out.status = decodeStatus(buf, s, reader.pos);
        break;
      }
      case SPAN.flags: {
        const p = reader.pos;
        reader.advance(4);
        out.flags = (buf[p]! | (buf[p + 1]! << 8) | (buf[p + 2]! << 16) | (buf[p + 3]! << 24)) >>> 0;
        break;
      }
      default:
        reader.skip(tag & 7);
    }
  }
  return { span: out, events };
}

function decodeStatus(buf: Uint8Array, start: number, end: number): { code?: number; message?: string } {
  const out: { code?: number; message?: string } = {};
  const reader = new WireReader(buf, start, end);
  while (!reader.done) {
    const tag = reader.tag();
    if (tag === STATUS.code) out.code = reader.varint();
    else if (tag === STATUS.message) {
      const s = reader.lengthDelimited();
      out.message = readString(buf, s, reader.pos);
    } else reader.skip(tag & 7);
  }
  return out;
}

export function decodeEvent(buf: Uint8Array, start: number, end: number): SpanEventData {
  const out: Mutable<SpanEventData> = { attributes: decodeKeyValueMap(buf, start, end, SPAN_EVENT.attributes) };
  const reader = new WireReader(buf, start, end);
  while (!reader.done) {
    const tag = reader.tag();
    if (tag === SPAN_EVENT.time_unix_nano) out.timeUnixNano = reader.fixed64AsBigInt();
    else if (tag === SPAN_EVENT.name) {
      const s = reader.lengthDelimited();
      out.name = readString(buf, s, reader.pos);
    } else if (tag === SPAN_EVENT.dropped_attributes_count) out.droppedAttributesCount = reader.varint();
    else reader.skip(tag & 7);
  }
  return out;
}

export type { TelemetryItem };
