import { types } from '../../src/pdata/codec';
import { obiSpan } from './obi';

// A hostile but valid OTLP request: one resource with a huge number of attributes, hand-encoded
// (protobufjs would build a million objects first).

function varint(value: number): number[] {
  const out: number[] = [];
  while (value > 0x7f) {
    out.push((value & 0x7f) | 0x80);
    value >>>= 7;
  }
  out.push(value);
  return out;
}

function lengthDelimited(field: number, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from([(field << 3) | 2, ...varint(body.length)]), body]);
}

function stringKeyValue(key: string, value: string): Buffer {
  return lengthDelimited(1, Buffer.concat([lengthDelimited(1, Buffer.from(key)), lengthDelimited(2, lengthDelimited(1, Buffer.from(value)))]));
}

/**
 * An ExportTraceServiceRequest with one resource (service.instance.id `instanceId`, then `count`
 * more string attributes of 16 bytes each on the wire) and one span.
 */
export function wideResourceRequest(instanceId: string, count: number): Buffer {
  const head = Buffer.concat([stringKeyValue('service.instance.id', instanceId), stringKeyValue('service.name', 'wide')]);
  // Each attribute: KeyValue{key "k" + 6 chars, value AnyValue{string_value "v"}}, written in place.
  const one = stringKeyValue('k000000', 'v');
  const body = Buffer.alloc(head.length + count * one.length);
  head.copy(body, 0);
  for (let i = 0, pos = head.length; i < count; i++, pos += one.length) {
    one.copy(body, pos);
    body.write(i.toString(36).padStart(6, '0'), pos + 5, 'latin1');
  }
  const resource = lengthDelimited(1, body);
  // The scope_spans part of a ResourceSpans; appended to the resource field, the two make one message.
  const rest = Buffer.from(types.ResourceSpans.encode(types.ResourceSpans.fromObject({ scopeSpans: [{ scope: {}, spans: [obiSpan()] }] })).finish());
  return lengthDelimited(1, Buffer.concat([resource, rest]));
}

/** The same request for another instance id of the same length, without encoding it again. */
export function withInstanceId(request: Buffer, from: string, to: string): Buffer {
  if (Buffer.byteLength(from) !== Buffer.byteLength(to)) throw new Error('instance ids must have the same length');
  const at = request.indexOf(Buffer.from(from));
  const copy = Buffer.from(request);
  copy.write(to, at);
  return copy;
}
