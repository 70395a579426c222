import { attrValueToString, type AttrValue } from '../pdata/attributes';
import type { Batch } from '../pdata/batch';
import { types } from '../pdata/codec';
import { parseRequest } from '../pdata/scan';
import { resourceMessage } from '../pdata/spans';
import { readString } from '../pdata/attributes';
import { ANY_VALUE, EXPORT_REQUEST, KEY_VALUE, RESOURCE_ITEMS, VALUES, fieldOf } from '../pdata/fields';
import { WireReader, encodeRepeatedField, readVarintBigInt } from '../pdata/wire';

// What the trace -> metrics connectors share: OTLP metric messages as protobufjs plain objects,
// encoded and turned into a metrics Batch the same way a receiver builds one (parseRequest), so
// everything downstream (filter, exporters) sees an ordinary metrics batch.

export interface PlainAnyValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: string | number;
  doubleValue?: number;
  bytesValue?: Uint8Array;
  arrayValue?: { values: PlainAnyValue[] };
  kvlistValue?: { values: PlainKeyValue[] };
}

export interface PlainKeyValue {
  key: string;
  value: PlainAnyValue;
}

export interface PlainExemplar {
  timeUnixNano: string;
  asDouble: number;
  traceId: Uint8Array;
  spanId: Uint8Array;
}

export interface PlainNumberPoint {
  attributes: PlainKeyValue[];
  startTimeUnixNano: string;
  timeUnixNano: string;
  asInt?: string | number;
  asDouble?: number;
  exemplars?: PlainExemplar[];
}

export interface PlainHistogramPoint {
  attributes: PlainKeyValue[];
  startTimeUnixNano: string;
  timeUnixNano: string;
  count: number;
  sum: number;
  bucketCounts: number[];
  explicitBounds: readonly number[];
  exemplars?: PlainExemplar[];
}

/** A base-2 exponential histogram point (scale, zero count, positive buckets from `offset`). */
export interface PlainExponentialPoint {
  attributes: PlainKeyValue[];
  startTimeUnixNano: string;
  timeUnixNano: string;
  count: number;
  sum: number;
  scale: number;
  zeroCount: number;
  positive: { offset: number; bucketCounts: number[] };
  negative: { offset: number; bucketCounts: number[] };
  min?: number;
  max?: number;
  exemplars?: PlainExemplar[];
}

export interface PlainMetric {
  name: string;
  description?: string;
  unit?: string;
  sum?: { dataPoints: PlainNumberPoint[]; aggregationTemporality: number; isMonotonic: boolean };
  histogram?: { dataPoints: PlainHistogramPoint[]; aggregationTemporality: number };
  exponentialHistogram?: { dataPoints: PlainExponentialPoint[]; aggregationTemporality: number };
}

export interface OutputResource {
  /** The encoded `Resource` message to emit these metrics under (copied from the spans' resource); none for an empty resource. */
  readonly resource: Uint8Array | undefined;
  readonly scope: { name: string; version?: string };
  readonly metrics: PlainMetric[];
}

const RESOURCE_FIELD = fieldOf(RESOURCE_ITEMS.resource);
const RESOURCE_METRICS_FIELD = fieldOf(EXPORT_REQUEST.resources);

export const TEMPORALITY_DELTA = 1;
export const TEMPORALITY_CUMULATIVE = 2;

/** Encodes ResourceMetrics and splits them into a metrics Batch with decoded resource attributes. */
export function buildMetricsBatch(resources: readonly OutputResource[]): Batch {
  const parts = resources.map((r) => {
    const body = types.ResourceMetrics.encode(types.ResourceMetrics.fromObject({ scopeMetrics: [{ scope: r.scope, metrics: r.metrics }] })).finish();
    if (!r.resource) return body;
    // `resource` has one number in ResourceMetrics and ResourceSpans: the span resource's bytes are reused as they are.
    return Buffer.concat([encodeRepeatedField(RESOURCE_FIELD, [r.resource]), body]);
  });
  return parseRequest('metrics', encodeRepeatedField(RESOURCE_METRICS_FIELD, parts)).batch;
}

export function toAnyValue(value: AttrValue): PlainAnyValue {
  if (typeof value === 'string') return { stringValue: value };
  if (typeof value === 'boolean') return { boolValue: value };
  if (typeof value === 'bigint') return { intValue: value.toString() };
  // A decoded int outside the safe range is a bigint, so such a number was a double.
  if (typeof value === 'number') return Number.isSafeInteger(value) ? { intValue: value } : { doubleValue: value };
  if (value === null) return {};
  if (value instanceof Uint8Array) return { bytesValue: value };
  if (Array.isArray(value)) return { arrayValue: { values: (value as readonly AttrValue[]).map(toAnyValue) } };
  return { kvlistValue: { values: Object.entries(value as Record<string, AttrValue>).map(([key, v]) => ({ key, value: toAnyValue(v) })) } };
}

/** Nesting beyond this is emitted empty, as decodeKeyValues decodes it (MAX_DECODED_DEPTH). */
const MAX_WIRE_DEPTH = 128;

/**
 * An encoded AnyValue as a plain value with every type kept (a whole double nested in a list
 * stays a double, which an AttrValue cannot tell), for attributes copied into emitted metrics.
 */
export function anyValueFromWire(buf: Uint8Array, start: number, end: number, depth = 0): PlainAnyValue {
  const reader = new WireReader(buf, start, end);
  let out: PlainAnyValue = {};
  while (!reader.done) {
    const tag = reader.tag();
    switch (tag) {
      case ANY_VALUE.string_value: {
        const s = reader.lengthDelimited();
        out = { stringValue: readString(buf, s, reader.pos) };
        break;
      }
      case ANY_VALUE.bool_value:
        out = { boolValue: reader.varint() !== 0 };
        break;
      case ANY_VALUE.int_value:
        out = { intValue: BigInt.asIntN(64, readVarintBigInt(reader)).toString() };
        break;
      case ANY_VALUE.double_value:
        out = { doubleValue: reader.double() };
        break;
      case ANY_VALUE.array_value:
      case ANY_VALUE.kvlist_value: {
        const s = reader.lengthDelimited();
        const inner = new WireReader(buf, s, reader.pos);
        const values: Array<PlainAnyValue | PlainKeyValue> = [];
        while (depth < MAX_WIRE_DEPTH && !inner.done) {
          const t = inner.tag();
          if (t !== VALUES.values) {
            inner.skip(t & 7);
            continue;
          }
          const vs = inner.lengthDelimited();
          values.push(tag === ANY_VALUE.array_value ? anyValueFromWire(buf, vs, inner.pos, depth + 1) : keyValueFromWire(buf, vs, inner.pos, depth + 1));
        }
        out = tag === ANY_VALUE.array_value ? { arrayValue: { values: values as PlainAnyValue[] } } : { kvlistValue: { values: values as PlainKeyValue[] } };
        break;
      }
      case ANY_VALUE.bytes_value: {
        const s = reader.lengthDelimited();
        out = { bytesValue: Uint8Array.prototype.slice.call(buf, s, reader.pos) };
        break;
      }
      default:
        reader.skip(tag & 7);
    }
  }
  return out;
}

function keyValueFromWire(buf: Uint8Array, start: number, end: number, depth: number): PlainKeyValue {
  const reader = new WireReader(buf, start, end);
  let key = '';
  let value: PlainAnyValue = {};
  while (!reader.done) {
    const tag = reader.tag();
    const s = tag === KEY_VALUE.key || tag === KEY_VALUE.value ? reader.lengthDelimited() : -1;
    if (tag === KEY_VALUE.key) key = readString(buf, s, reader.pos);
    else if (tag === KEY_VALUE.value) value = anyValueFromWire(buf, s, reader.pos, depth);
    else reader.skip(tag & 7);
  }
  return { key, value };
}

export function toKeyValues(entries: Iterable<readonly [string, AttrValue]>): PlainKeyValue[] {
  const out: PlainKeyValue[] = [];
  for (const [key, value] of entries) out.push({ key, value: toAnyValue(value) });
  return out;
}

/** Wall-clock milliseconds as OTLP nanoseconds (decimal string, exact for fixed64). */
export function msToNanos(ms: number): string {
  return (BigInt(Math.round(ms)) * 1_000_000n).toString();
}

/**
 * An encoded Resource with the attributes given (identity ones first), as many as fit in about
 * `maxBytes`; values whose text is longer than a quarter of that are left out.
 */
export function encodeResource(attributes: ReadonlyMap<string, AttrValue>, maxBytes: number): Uint8Array {
  const chosen: [string, AttrValue][] = [];
  let size = 0;
  const consider = (key: string, value: AttrValue): void => {
    const length = key.length + attrValueToString(value).length + 8;
    if (length > maxBytes / 4 || size + length > maxBytes) return;
    chosen.push([key, value]);
    size += length;
  };
  for (const key of IDENTITY_KEYS) {
    const value = attributes.get(key);
    if (value !== undefined) consider(key, value);
  }
  for (const [key, value] of attributes) if (!IDENTITY_KEYS.includes(key)) consider(key, value);
  const encoded = types.ResourceMetrics.encode(types.ResourceMetrics.fromObject({ resource: { attributes: toKeyValues(chosen) } })).finish();
  return Uint8Array.prototype.slice.call(resourceMessage(encoded) ?? new Uint8Array(0));
}

const IDENTITY_KEYS = ['service.instance.id', 'service.name', 'host.name'];
