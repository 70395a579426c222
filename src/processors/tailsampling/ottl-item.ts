import { readString } from '../../pdata/attributes';
import { WIRE_LEN, WireReader } from '../../pdata/wire';
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
    if (tag === 1 * 8 + WIRE_LEN) {
      const s = reader.lengthDelimited();
      const inner = new WireReader(buf, s, reader.pos);
      out.attributes = decodeKeyValueMap(buf, s, reader.pos, 1);
      while (!inner.done) {
        const t = inner.tag();
        if (t === 2 * 8) out.droppedAttributesCount = inner.varint();
        else inner.skip(t & 7);
      }
    } else if (tag === 3 * 8 + WIRE_LEN) {
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
    if (tag === 1 * 8 + WIRE_LEN) {
      const s = reader.lengthDelimited();
      const e = reader.pos;
      out.attributes = decodeKeyValueMap(buf, s, e, 3);
      const inner = new WireReader(buf, s, e);
      while (!inner.done) {
        const t = inner.tag();
        if (t === 1 * 8 + WIRE_LEN) {
          const x = inner.lengthDelimited();
          out.name = readString(buf, x, inner.pos);
        } else if (t === 2 * 8 + WIRE_LEN) {
          const x = inner.lengthDelimited();
          out.version = readString(buf, x, inner.pos);
        } else if (t === 4 * 8) out.droppedAttributesCount = inner.varint();
        else inner.skip(t & 7);
      }
    } else if (tag === 3 * 8 + WIRE_LEN) {
      const s = reader.lengthDelimited();
      out.schemaUrl = readString(buf, s, reader.pos);
    } else reader.skip(tag & 7);
  }
  return out;
}

/** The span and the [start, end) of each of its events. */
export function decodeSpan(buf: Uint8Array, start: number, end: number): { span: SpanData; events: number[] } {
  const out: Mutable<SpanData> = { attributes: decodeKeyValueMap(buf, start, end, 9) };
  const events: number[] = [];
  const reader = new WireReader(buf, start, end);
  while (!reader.done) {
    const tag = reader.tag();
    switch (tag) {
      case 1 * 8 + WIRE_LEN:
      case 2 * 8 + WIRE_LEN:
      case 4 * 8 + WIRE_LEN: {
        const s = reader.lengthDelimited();
        const bytes = buf.slice(s, reader.pos);
        if (tag === 1 * 8 + WIRE_LEN) out.traceId = bytes;
        else if (tag === 2 * 8 + WIRE_LEN) out.spanId = bytes;
        else out.parentSpanId = bytes;
        break;
      }
      case 3 * 8 + WIRE_LEN: {
        const s = reader.lengthDelimited();
        out.traceState = readString(buf, s, reader.pos);
        break;
      }
      case 5 * 8 + WIRE_LEN: {
        const s = reader.lengthDelimited();
        out.name = readString(buf, s, reader.pos);
        break;
      }
      case 6 * 8:
        out.kind = reader.varint();
        break;
      case 7 * 8 + 1:
        out.startTimeUnixNano = reader.fixed64AsBigInt();
        break;
      case 8 * 8 + 1:
        out.endTimeUnixNano = reader.fixed64AsBigInt();
        break;
      case 10 * 8:
        out.droppedAttributesCount = reader.varint();
        break;
      case 11 * 8 + WIRE_LEN: {
        const s = reader.lengthDelimited();
        events.push(s, reader.pos);
        break;
      }
      case 12 * 8:
        out.droppedEventsCount = reader.varint();
        break;
      case 14 * 8:
        out.droppedLinksCount = reader.varint();
        break;
      case 15 * 8 + WIRE_LEN: {
        const s = reader.lengthDelimited();
        out.status = decodeStatus(buf, s, reader.pos);
        break;
      }
      case 16 * 8 + 5: {
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
    if (tag === 3 * 8) out.code = reader.varint();
    else if (tag === 2 * 8 + WIRE_LEN) {
      const s = reader.lengthDelimited();
      out.message = readString(buf, s, reader.pos);
    } else reader.skip(tag & 7);
  }
  return out;
}

export function decodeEvent(buf: Uint8Array, start: number, end: number): SpanEventData {
  const out: Mutable<SpanEventData> = { attributes: decodeKeyValueMap(buf, start, end, 3) };
  const reader = new WireReader(buf, start, end);
  while (!reader.done) {
    const tag = reader.tag();
    if (tag === 1 * 8 + 1) out.timeUnixNano = reader.fixed64AsBigInt();
    else if (tag === 2 * 8 + WIRE_LEN) {
      const s = reader.lengthDelimited();
      out.name = readString(buf, s, reader.pos);
    } else if (tag === 4 * 8) out.droppedAttributesCount = reader.varint();
    else reader.skip(tag & 7);
  }
  return out;
}

export type { TelemetryItem };
