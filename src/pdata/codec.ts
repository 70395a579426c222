import * as path from 'node:path';
import type * as Protobuf from 'protobufjs';
import { protobufjs } from '../util/lazy-modules';
import { ANY_VALUE, KEY_VALUE as KV_FIELD, VALUES } from './fields';
import { MAX_NESTING_DEPTH, nestingTooDeep } from './schema';

// Full decoding and encoding through protobufjs reflection over the OTLP .proto files in proto/
// (opentelemetry-proto at the release their headers name).
// Used off the fast path: JSON bodies, the debug exporter, JSON export, and repairing a resource
// from which invalid items were rejected.

const PROTO_DIR = path.resolve(__dirname, '..', '..', '..', 'proto');

/** The OTLP message types spansieve decodes and encodes in full, by their full protobuf names. */
const TYPE_NAMES = {
  ExportTraceServiceRequest: 'opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest',
  ExportTraceServiceResponse: 'opentelemetry.proto.collector.trace.v1.ExportTraceServiceResponse',
  ExportMetricsServiceRequest: 'opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceRequest',
  ExportMetricsServiceResponse: 'opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceResponse',
  ResourceSpans: 'opentelemetry.proto.trace.v1.ResourceSpans',
  ResourceMetrics: 'opentelemetry.proto.metrics.v1.ResourceMetrics',
  Status: 'google.rpc.Status',
  RetryInfo: 'google.rpc.RetryInfo',
} as const;

export const PROTO_FILES = [
  'opentelemetry/proto/collector/trace/v1/trace_service.proto',
  'opentelemetry/proto/collector/metrics/v1/metrics_service.proto',
  'google/rpc/status.proto',
];

let root: Protobuf.Root | undefined;

/** The .proto files, parsed on first use with protobufjs itself (util/lazy-modules.ts). */
export function loadedRoot(): Protobuf.Root {
  if (!root) {
    const lib = protobufjs();
    // protobufjs' default (100 message levels, protoc's) would refuse, in the exporters that
    // decode in full, values the receiver takes; 1000 still leaves its recursion on the JS stack.
    lib.util.recursionLimit = DECODE_RECURSION_LIMIT;
    lib.Reader.recursionLimit = DECODE_RECURSION_LIMIT;
    const loading = new lib.Root();
    // Imports name paths from the proto root, as protoc's include path does.
    loading.resolvePath = (_origin, target) => (path.isAbsolute(target) ? target : path.join(PROTO_DIR, target));
    loading.loadSync(PROTO_FILES, { keepCase: false });
    loading.resolveAll();
    convertDeepValuesWithoutRecursion(loading);
    root = loading;
  }
  return root;
}

/** The message types by short name; the first one read loads them all. */
export const types = {} as { readonly [Name in keyof typeof TYPE_NAMES]: Protobuf.Type };
for (const [name, fullName] of Object.entries(TYPE_NAMES)) {
  let type: Protobuf.Type | undefined;
  Object.defineProperty(types, name, { enumerable: true, get: () => (type ??= loadedRoot().lookupType(fullName)) });
}

/** Fields that OTLP/JSON writes as hex rather than protobuf JSON's base64. */
const HEX_ID_FIELDS = new Set(['traceId', 'spanId', 'parentSpanId']);

const TO_OBJECT_OPTIONS: Protobuf.IConversionOptions = { longs: String, enums: Number, bytes: String, defaults: false };

export class JsonShapeError extends Error {}

/** Message levels protobufjs decodes and encodes at most: about 330 kvlist or 500 array levels of attribute value. */
export const DECODE_RECURSION_LIMIT = 1000;

/** A message holds a value nested deeper than full decoding goes (DECODE_RECURSION_LIMIT). */
export class TooDeepError extends Error {}

/** type.decode, with TooDeepError for a message nested past DECODE_RECURSION_LIMIT. */
export function decodeWithinLimit(type: Protobuf.Type, bytes: Uint8Array): Protobuf.Message {
  try {
    return type.decode(bytes);
  } catch (err) {
    if ((err as Error).message === 'max depth exceeded') {
      throw new TooDeepError(`${type.name} holds an attribute value nested deeper than ${DECODE_RECURSION_LIMIT} message levels, too deep to decode in full`);
    }
    throw err;
  }
}

/** Decoded OTLP message as plain JS (camelCase keys, int64 as decimal strings, ids as hex); TooDeepError past DECODE_RECURSION_LIMIT. */
export type PlainMessage = Record<string, unknown>;

export function decodeToPlain(type: Protobuf.Type, bytes: Uint8Array): PlainMessage {
  const message = decodeWithinLimit(type, bytes);
  return idsToHex(type.toObject(message, TO_OBJECT_OPTIONS)) as PlainMessage;
}

/** Encodes an OTLP/JSON object (as parsed from a request body) to protobuf bytes. */
export function encodeFromOtlpJson(type: Protobuf.Type, json: unknown): Uint8Array {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new JsonShapeError('the body must be a JSON object');
  }
  const prepared = idsFromHex(json, '');
  let message: Protobuf.Message;
  try {
    message = type.fromObject(prepared as Record<string, unknown>);
  } catch (err) {
    if (err instanceof JsonShapeError) throw err;
    throw new JsonShapeError(`does not match ${type.name}: ${(err as Error).message.replace(/^\./, '')}`);
  }
  return type.encode(message).finish();
}

/** Renders decoded bytes as OTLP/JSON (hex ids, lowerCamelCase keys, enums as integers); TooDeepError past DECODE_RECURSION_LIMIT. */
export function toOtlpJson(type: Protobuf.Type, bytes: Uint8Array): string {
  return JSON.stringify(decodeToPlain(type, bytes));
}

/**
 * AnyValue levels (counted as protobufjs counts messages: 2 per array level, 3 per kvlist level)
 * that OTLP/JSON conversion handles by protobufjs' own recursion; a value nested deeper is
 * converted by deepAnyValueFromJson, which keeps its stack on the heap. protobufjs refuses
 * messages past util.recursionLimit (100) levels, and the JS stack overflows not far beyond.
 */
const JSON_RECURSION_LEVELS = 48;

/** Makes AnyValue's fromObject hand deep values to deepAnyValueFromJson. */
function convertDeepValuesWithoutRecursion(loaded: Protobuf.Root): void {
  const anyValue = loaded.lookupType('opentelemetry.proto.common.v1.AnyValue');
  anyValue.setup();
  // eslint-disable-next-line @typescript-eslint/unbound-method -- called with anyValue as this, below
  const generated: (this: Protobuf.Type, object: Record<string, unknown>, level?: number) => Protobuf.Message = anyValue.fromObject;
  const shallow = (object: Record<string, unknown>, level?: number): Protobuf.Message => generated.call(anyValue, object, level);
  const ctor = anyValue.ctor as unknown as new () => Protobuf.Message & { $unknowns?: Uint8Array[] };
  // protobufjs' generated converters call types[i].fromObject(value, level) on this Type object.
  anyValue.fromObject = (object: Record<string, unknown>, level?: number) => {
    if ((level ?? 0) < JSON_RECURSION_LEVELS) return shallow(object, level);
    // The value's bytes, written by protobufjs' encoder as they are (it writes a message's
    // $unknowns verbatim).
    const message = new ctor();
    message.$unknowns = [deepAnyValueFromJson(object, shallow, anyValue)];
    return message;
  };
}

// Steps of deepAnyValueFromJson's explicit stack.
const ANY = 0;
/** Writes a submessage's length (its content is written) and tag. */
const OPEN = 1;
/** Notes where a submessage ends: the first of its steps to run. */
const CLOSE = 2;
const ARRAY = 3;
const KVLIST = 4;
const KEY_VALUE = 5;
const ENTER = 6;
const HEAD = 7;
const TAIL = 8;
const KEY = 9;

/** AnyValue's kvlist_value and array_value: tag, JSON name, step. */
const NESTED_FIELDS = [
  [ANY_VALUE.kvlist_value, 'kvlistValue', KVLIST],
  [ANY_VALUE.array_value, 'arrayValue', ARRAY],
] as const;

/** protobufjs' String(key), whatever the key's JSON type. */
const keyString = (key: unknown): string => String(key);

const isObject = (value: unknown): value is Record<string, unknown> => value !== null && typeof value === 'object';

/**
 * A protobuf writer that writes back to front: a length prefix is written after what it measures,
 * so no byte is moved to make room for it. (protobufjs' writer moves the whole nested content at
 * each level whose length takes more than a byte: quadratic in the depth, 4 s for 100,000 levels.)
 */
class BackwardWriter {
  private buf = new Uint8Array(1024);
  private pos = 1024;

  /** Bytes written so far. */
  get size(): number {
    return this.buf.length - this.pos;
  }

  private room(n: number): void {
    if (this.pos >= n) return;
    const grown = new Uint8Array(Math.max(this.buf.length * 2, this.size + n + 1024));
    grown.set(this.buf.subarray(this.pos), grown.length - this.size);
    this.pos = grown.length - this.size;
    this.buf = grown;
  }

  bytes(bytes: Uint8Array): void {
    this.room(bytes.length);
    this.pos -= bytes.length;
    this.buf.set(bytes, this.pos);
  }

  varint(value: number): void {
    let size = 1;
    for (let v = value; v >= 128; v = Math.floor(v / 128)) size++;
    this.room(size);
    this.pos -= size;
    let p = this.pos;
    while (value >= 128) {
      this.buf[p++] = (value & 0x7f) | 0x80;
      value = Math.floor(value / 128);
    }
    this.buf[p] = value;
  }

  finish(): Uint8Array {
    return this.buf.subarray(this.pos);
  }
}

/**
 * Encodes an OTLP/JSON AnyValue as protobuf with an explicit stack rather than recursion, with the
 * checks and conversions of protobufjs' fromObject: scalar fields and keys are converted by
 * protobufjs itself (`shallow`, given no nested value). Fields come out in protobufjs' order. The
 * steps run in reverse (see BackwardWriter): each expansion pushes its steps in writing order, so
 * they pop last first. Fails beyond MAX_NESTING_DEPTH levels.
 */
function deepAnyValueFromJson(
  value: Record<string, unknown>,
  shallow: (object: Record<string, unknown>) => Protobuf.Message,
  anyValue: Protobuf.Type,
): Uint8Array {
  const writer = new BackwardWriter();
  const steps: number[] = [ANY];
  const values: unknown[] = [value];
  /** Sizes written when each open submessage ended (it is written first). */
  const marks: number[] = [];
  let depth = 0;
  const push = (step: number, v: unknown) => {
    steps.push(step);
    values.push(v);
  };
  const scalars = (object: Record<string, unknown>, names: readonly string[]) => {
    const picked: Record<string, unknown> = {};
    let any = false;
    for (const name of names) {
      if (object[name] != null) {
        picked[name] = object[name];
        any = true;
      }
    }
    if (any) writer.bytes(anyValue.encode(shallow(picked)).finish());
  };
  const list = (object: Record<string, unknown>, type: string): unknown[] => {
    const items = object.values;
    if (!items) return [];
    if (!Array.isArray(items)) throw TypeError(`.opentelemetry.proto.common.v1.${type}.values: array expected`);
    return items as unknown[];
  };
  while (steps.length > 0) {
    const step = steps.pop()!;
    const v = values.pop();
    switch (step) {
      case ANY: {
        if (!isObject(v)) throw TypeError('.opentelemetry.proto.common.v1.AnyValue: object expected');
        // Fields in number order, as protobufjs writes them: 1-4, array 5, kvlist 6, bytes 7.
        push(HEAD, v);
        for (const [field, name, nestedStep] of NESTED_FIELDS) {
          const nested = v[name];
          if (nested == null) continue;
          if (!isObject(nested)) throw TypeError(`.opentelemetry.proto.common.v1.AnyValue.${name}: object expected`);
          push(OPEN, field);
          push(nestedStep, nested);
          push(ENTER, undefined);
          push(CLOSE, undefined);
        }
        push(TAIL, v);
        break;
      }
      case HEAD:
        scalars(v as Record<string, unknown>, ['stringValue', 'boolValue', 'intValue', 'doubleValue']);
        break;
      case TAIL:
        scalars(v as Record<string, unknown>, ['bytesValue']);
        break;
      case CLOSE:
        marks.push(writer.size);
        break;
      case ENTER:
        if (++depth > MAX_NESTING_DEPTH) throw new JsonShapeError(nestingTooDeep());
        break;
      case OPEN:
        writer.varint(writer.size - marks.pop()!);
        writer.varint(v as number);
        if (v === NESTED_FIELDS[0][0] || v === NESTED_FIELDS[1][0]) depth--;
        break;
      case ARRAY:
      case KVLIST: {
        const type = step === ARRAY ? 'ArrayValue' : 'KeyValueList';
        const items = list(v as Record<string, unknown>, type);
        for (const item of items) {
          if (!isObject(item)) throw TypeError(`.opentelemetry.proto.common.v1.${type}.values: object expected`);
          push(OPEN, VALUES.values);
          push(step === ARRAY ? ANY : KEY_VALUE, item);
          push(CLOSE, undefined);
        }
        break;
      }
      case KEY_VALUE: {
        const kv = v as Record<string, unknown>;
        if (kv.key != null && (typeof kv.key !== 'string' || kv.key.length > 0)) push(KEY, kv.key);
        if (kv.value != null) {
          if (!isObject(kv.value)) throw TypeError('.opentelemetry.proto.common.v1.KeyValue.value: object expected');
          push(OPEN, KV_FIELD.value);
          push(ANY, kv.value);
          push(CLOSE, undefined);
        }
        break;
      }
      case KEY:
        // protobufjs' own UTF-8 (it differs from Buffer's for lone surrogates).
        writer.bytes(protobufjs().Writer.create().string(keyString(v)).finish());
        writer.varint(KV_FIELD.key);
        break;
    }
  }
  return writer.finish();
}

function idsToHex(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(idsToHex);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [key, v] of Object.entries(value as Record<string, unknown>)) {
      out[key] = HEX_ID_FIELDS.has(key) && typeof v === 'string' ? Buffer.from(v, 'base64').toString('hex') : idsToHex(v);
    }
    return out;
  }
  return value;
}

/** Fields holding KeyValues: no ids inside, and they may nest deeper than recursion goes. */
const KEY_VALUE_FIELDS = new Set(['attributes', 'filteredAttributes', 'metadata']);

function idsFromHex(value: unknown, where: string): unknown {
  if (Array.isArray(value)) return value.map((v, i) => idsFromHex(v, `${where}[${i}]`));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [key, v] of Object.entries(value as Record<string, unknown>)) {
      const at = where ? `${where}.${key}` : key;
      if (KEY_VALUE_FIELDS.has(key)) {
        out[key] = v;
      } else if (HEX_ID_FIELDS.has(key)) {
        if (v === '' || v === null || v === undefined) continue;
        if (typeof v !== 'string' || !/^(?:[0-9a-fA-F]{2})*$/.test(v)) {
          throw new JsonShapeError(`${at}: must be a hex string, got ${JSON.stringify(v)}`);
        }
        out[key] = Buffer.from(v, 'hex');
      } else {
        out[key] = idsFromHex(v, at);
      }
    }
    return out;
  }
  return value;
}
