import * as path from 'node:path';
import type * as Protobuf from 'protobufjs';
import { protobufjs } from '../util/lazy-modules';

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
    const loading = new (protobufjs().Root)();
    // Imports name paths from the proto root, as protoc's include path does.
    loading.resolvePath = (_origin, target) => (path.isAbsolute(target) ? target : path.join(PROTO_DIR, target));
    loading.loadSync(PROTO_FILES, { keepCase: false });
    loading.resolveAll();
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

/** Decoded OTLP message as plain JS (camelCase keys, int64 as decimal strings, ids as hex). */
export type PlainMessage = Record<string, unknown>;

export function decodeToPlain(type: Protobuf.Type, bytes: Uint8Array): PlainMessage {
  const message = type.decode(bytes);
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
    throw new JsonShapeError(`does not match ${type.name}: ${(err as Error).message.replace(/^\./, '')}`);
  }
  return type.encode(message).finish();
}

/** Renders decoded bytes as OTLP/JSON (hex ids, lowerCamelCase keys, enums as integers). */
export function toOtlpJson(type: Protobuf.Type, bytes: Uint8Array): string {
  return JSON.stringify(decodeToPlain(type, bytes));
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

function idsFromHex(value: unknown, where: string): unknown {
  if (Array.isArray(value)) return value.map((v, i) => idsFromHex(v, `${where}[${i}]`));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [key, v] of Object.entries(value as Record<string, unknown>)) {
      const at = where ? `${where}.${key}` : key;
      if (HEX_ID_FIELDS.has(key)) {
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
