// The tail-sampling benches' OBI-shaped requests: one process's request of N spans (each in its own
// empty scope, as OBI sends them), encoded once; each send copies it and writes fresh trace ids at
// the marker offsets, so that no span object is built per request.
import pino from 'pino';
import { ConfigIssues, Node } from '../src/config/reader';
import type { Batch } from '../src/pdata/batch';
import { types } from '../src/pdata/codec';
import { parseRequest } from '../src/pdata/scan';
import { parseTailSamplingConfig } from '../src/processors/tailsampling/config';
import { TailSamplingProcessor } from '../src/processors/tailsampling/tail-sampling';
import { SelfTelemetry } from '../src/service/telemetry';
import { int, str } from './obi';

const START_NS = 1_700_000_000_000_000_000n;

export interface TraceTemplate {
  readonly bytes: Buffer;
  /** Where each span's trace id is, in span order. */
  readonly idOffsets: readonly number[];
}

/** The marker a template's span `i` carries as its trace id until `withTraceIds` rewrites it. */
export const traceIdMarker = (i: number): Buffer => Buffer.concat([Buffer.from('TRACEID!'), Buffer.alloc(4), Buffer.from([0, 0, i >> 8, i & 255])]);

/** Offsets of the markers of spans 0..count-1 in `bytes`. */
export function markerOffsets(bytes: Buffer, count: number): number[] {
  return Array.from({ length: count }, (_, i) => bytes.indexOf(traceIdMarker(i)));
}

/**
 * A frontend (root, server spans) or backend (child, client spans) request: every 50th span an
 * error with status 500, durations 10-500 ms.
 */
export function obiTraceTemplate(service: string, pid: number, root: boolean, spansPerRequest: number): TraceTemplate {
  const spans = Array.from({ length: spansPerRequest }, (_, i) => ({
    traceId: traceIdMarker(i),
    spanId: Buffer.from([1, 2, 3, 4, 5, 6, i >> 8, (i & 255) | 1]),
    ...(root ? {} : { parentSpanId: Buffer.from([9, 9, 9, 9, 9, 9, i >> 8, (i & 255) | 1]) }),
    name: 'GET /users/*',
    kind: root ? 2 : 3,
    startTimeUnixNano: START_NS.toString(),
    endTimeUnixNano: (START_NS + BigInt(1 + (i % 50)) * 10_000_000n).toString(),
    attributes: [
      str('http.request.method', 'GET'), int('http.response.status_code', i % 50 === 0 ? 500 : 200), str('url.path', '/users/42'),
      str('url.scheme', 'http'), str('http.route', '/users/*'), str('client.address', '10.0.0.7'), str('server.address', 'backend'), int('server.port', 8080),
    ],
    status: { code: i % 50 === 0 ? 2 : 0 },
  }));
  const resource = {
    attributes: [
      str('service.name', service), str('service.instance.id', `host:${pid}`), str('host.name', 'host'), str('telemetry.sdk.language', 'go'),
      str('telemetry.sdk.name', 'opentelemetry'), str('telemetry.distro.name', 'opentelemetry-ebpf-instrumentation'), str('os.type', 'linux'),
    ],
  };
  const type = types.ExportTraceServiceRequest;
  const bytes = Buffer.from(type.encode(type.fromObject({ resourceSpans: [{ resource, scopeSpans: spans.map((span) => ({ scope: {}, spans: [span] })) }] })).finish());
  return { bytes, idOffsets: markerOffsets(bytes, spansPerRequest) };
}

function mix(n: number, seed: number): number {
  let h = Math.imul(n ^ Math.imul(seed, 0x9e3779b9), 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** A copy of the template whose span i belongs to trace firstTrace + i (ids spread like random ones). */
export function withTraceIds(t: TraceTemplate, firstTrace: number): Buffer {
  const bytes = Buffer.from(t.bytes);
  t.idOffsets.forEach((offset, i) => {
    // Spread like random ids (the Collector's FNV hash barely mixes the last bytes into the top bits).
    const n = firstTrace + i;
    bytes.writeUInt32BE(mix(n, 1), offset);
    bytes.writeUInt32BE(mix(n, 2), offset + 4);
    bytes.writeUInt32BE(mix(n, 3), offset + 8);
    bytes.writeUInt32BE(n >>> 0, offset + 12);
  });
  return bytes;
}

/** A fresh request (its own buffer, as a receiver hands over), parsed. */
export function offer(t: TraceTemplate, firstTrace: number): Batch {
  return parseRequest('traces', withTraceIds(t, firstTrace)).batch;
}

/** The benches' policies (errors + latency + 10 % probabilistic), decision_wait 10 s. */
export const BENCH_POLICIES = [
  { name: 'errors', type: 'status_code', status_code: { status_codes: ['ERROR'] } },
  { name: 'slow', type: 'latency', latency: { threshold_ms: 400 } },
  { name: 'rest', type: 'probabilistic', probabilistic: { sampling_percentage: 10 } },
];

/** The processor alone on a simulated clock (no timer: the caller ticks), counting the spans it keeps. */
export function processorUnderTest(numTraces: number, clock: () => number, telemetry = new SelfTelemetry()): { processor: TailSamplingProcessor; keptSpans: () => number } {
  const issues = new ConfigIssues();
  const config = parseTailSamplingConfig(new Node({ decision_wait: '10s', num_traces: numTraces, policies: BENCH_POLICIES }, 'tail_sampling', issues));
  if (issues.errors.length > 0) throw new Error(issues.errors.join('\n'));
  let kept = 0;
  const sink = {
    consume: (batch: Batch) => {
      kept += batch.itemCount;
      return Promise.resolve();
    },
  };
  const processor = new TailSamplingProcessor({ id: 'tail_sampling', logger: pino({ level: 'silent' }), telemetry }, config, sink, { clock, timer: false });
  return { processor, keptSpans: () => kept };
}
