import { randomBytes } from 'node:crypto';
import * as zlib from 'node:zlib';
import { types } from '../src/pdata/codec';
import { framedMessage } from '../src/util/grpc';

// The benchmark's load: ExportTraceServiceRequests shaped like OBI's (see
// /work/shared/reference/obi-output.md): one ResourceSpans per process, OBI's resource attributes
// in OBI's order with service.instance.id = "host:pid", every span in its own ScopeSpans with an
// empty scope, ~10 HTTP server attributes per span. About half of the resources in each request
// belong to kept processes. A pool of distinct requests is encoded once and cycled through.

/** How the pool is built; the parent and the load generator derive the same ids from it. */
export interface PoolSpec {
  /** Distinct pre-encoded requests, cycled through. */
  readonly requests: number;
  /** ResourceSpans per request. */
  readonly resourcesPerRequest: number;
  /** How many of them belong to kept processes. */
  readonly keptPerRequest: number;
  readonly spansPerResource: number;
  /** Resource attributes per ResourceSpans (OBI's own set is 11). */
  readonly resourceAttributes: number;
  /** Keep-list size: kept resources are drawn from this many instance ids. */
  readonly keptInstances: number;
  /** Instances that send but are not kept. */
  readonly droppedInstances: number;
  readonly seed: number;
  /**
   * Share of spans whose url.path is exactly "/health" (the filter-health scenario's rule matches
   * those); absent in the default pool, whose spans (and random draws) stay as they were.
   */
  readonly healthShare?: number;
}

export const DEFAULT_POOL: PoolSpec = {
  requests: 256,
  resourcesPerRequest: 40,
  keptPerRequest: 20,
  spansPerResource: 5,
  resourceAttributes: 11,
  keptInstances: 100,
  droppedInstances: 100,
  seed: 1,
};

/**
 * Every latency-marked request carries a trace id starting with these 8 bytes (then a 4-byte
 * big-endian pool index and 4 random bytes) on the first span of its first kept resource; the sink
 * finds it with Buffer.indexOf.
 */
export const MARKER_MAGIC = Buffer.from('5ab1e5eed1a7e4c7', 'hex');

export function keptInstanceIds(spec: PoolSpec): string[] {
  return Array.from({ length: spec.keptInstances }, (_, i) => `ip-10-1-${Math.floor(i / 250)}-${i % 250}:${10_000 + ((i * 7919) % 50_000)}`);
}

export function droppedInstanceIds(spec: PoolSpec): string[] {
  return Array.from({ length: spec.droppedInstances }, (_, i) => `ip-10-2-${Math.floor(i / 250)}-${i % 250}:${20_000 + ((i * 104_729) % 40_000)}`);
}

/** Small deterministic PRNG (mulberry32), so a pool is the same on every run. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export type KeyValue = { key: string; value: { stringValue: string } | { intValue: number } };
/** KeyValues in protobufjs's object form (the bench's other request builders use them too). */
export const str = (key: string, value: string): KeyValue => ({ key, value: { stringValue: value } });
export const int = (key: string, value: number): KeyValue => ({ key, value: { intValue: value } });

const SERVICES = ['checkout', 'frontend', 'cart', 'payments', 'users', 'inventory', 'search', 'envoy'];
const LANGUAGES = ['go', 'java', 'nodejs', 'python', 'generic'];

/**
 * OBI's resource attributes for one process, in OBI's order, resized to `count`: smaller drops
 * the least important ones; larger adds metadata-like attributes before service.instance.id (where
 * OBI puts metadata and OTEL_RESOURCE_ATTRIBUTES values).
 */
export function resourceAttributes(instanceId: string, count: number): KeyValue[] {
  const colon = instanceId.lastIndexOf(':');
  const host = instanceId.slice(0, colon);
  const n = hash(instanceId);
  const head = [
    str('service.name', SERVICES[n % SERVICES.length]!),
    str('telemetry.sdk.language', LANGUAGES[n % LANGUAGES.length]!),
    str('telemetry.sdk.name', 'opentelemetry'),
    str('telemetry.sdk.version', '1.38.0'),
    str('telemetry.distro.name', 'opentelemetry-ebpf-instrumentation'),
    str('telemetry.distro.version', 'v0.3.0'),
    str('host.name', host),
    str('host.id', `ec2f0e5b8a1c4d2e9f00${(n % 1_000_000).toString(16).padStart(12, '0')}`),
    str('os.type', 'linux'),
  ];
  const tail = [str('service.instance.id', instanceId), str('otel.scope.name', 'go.opentelemetry.io/obi')];
  const base = head.length + tail.length;
  if (count <= base) {
    // Drop from the optional end of each group; service.name and service.instance.id always stay.
    return [...head.slice(0, Math.max(1, count - 1)), tail[0]!];
  }
  const extra = Array.from({ length: count - base }, (_, i) => str(`k8s.pod.label.app.example.com/label-${i}`, `value-${i}-${n % 997}`));
  return [...head, ...extra, ...tail];
}

function hash(text: string): number {
  let h = 2166136261;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619);
  return h >>> 0;
}

const ROUTES = ['/users/*', '/cart/*', '/checkout', '/api/v1/items/*', '/healthz', '/search'];
const METHODS = ['GET', 'GET', 'GET', 'POST', 'PUT'];

function span(rand: () => number, traceId: Buffer, nowNs: bigint, healthShare: number | undefined) {
  const health = healthShare !== undefined && rand() < healthShare;
  const route = health ? '/health' : ROUTES[Math.floor(rand() * ROUTES.length)]!;
  const method = METHODS[Math.floor(rand() * METHODS.length)]!;
  const status = rand() < 0.05 ? 500 : 200;
  const start = nowNs - BigInt(Math.floor(rand() * 1e9));
  const duration = BigInt(200_000 + Math.floor(rand() * 20_000_000));
  const path = route.replace('*', String(Math.floor(rand() * 10_000)));
  return {
    traceId,
    spanId: randomBytes(8),
    name: `${method} ${route}`,
    kind: 2,
    startTimeUnixNano: start.toString(),
    endTimeUnixNano: (start + duration).toString(),
    attributes: [
      str('http.request.method', method),
      int('http.response.status_code', status),
      str('url.path', path),
      str('url.scheme', 'http'),
      str('http.route', route),
      str('client.address', `10.0.${Math.floor(rand() * 256)}.${Math.floor(rand() * 256)}`),
      str('server.address', 'backend'),
      int('server.port', 8080),
      int('http.request.body.size', method === 'GET' ? 0 : Math.floor(rand() * 4096)),
      int('http.response.body.size', Math.floor(rand() * 65_536)),
    ],
    status: { code: status >= 500 ? 2 : 0 },
  };
}

export interface PooledRequest {
  readonly index: number;
  readonly body: Buffer;
  readonly gzipped: Buffer;
  /** The body as one gRPC message (5-byte prefix + body), and gzipped with the compressed flag. */
  readonly grpcFrame: Buffer;
  readonly grpcGzipFrame: Buffer;
  readonly spans: number;
  /** Spans the filter should keep (what the sink should receive from this request). */
  readonly keptSpans: number;
}

export interface Pool {
  readonly spec: PoolSpec;
  readonly requests: readonly PooledRequest[];
  readonly keepIds: ReadonlySet<string>;
}

/** Encodes the whole pool (a few seconds for the default; done once per pool shape). */
export function buildPool(spec: PoolSpec): Pool {
  const rand = prng(spec.seed);
  const kept = keptInstanceIds(spec);
  const dropped = droppedInstanceIds(spec);
  const attrCache = new Map<string, KeyValue[]>();
  const attrsOf = (id: string) => {
    let attrs = attrCache.get(id);
    if (!attrs) {
      attrs = resourceAttributes(id, spec.resourceAttributes);
      attrCache.set(id, attrs);
    }
    return attrs;
  };
  const nowNs = BigInt(Date.now()) * 1_000_000n;
  const requests: PooledRequest[] = [];
  let keptCursor = 0;
  for (let index = 0; index < spec.requests; index++) {
    // Which resources are kept, in random positions; kept ids cycle through the keep list so every
    // id is used (with a keep list shorter than keptPerRequest an id repeats inside a request).
    const slots: boolean[] = Array.from({ length: spec.resourcesPerRequest }, (_, i) => i < spec.keptPerRequest);
    shuffle(slots, rand);
    const droppedPick = pickDistinct(dropped, spec.resourcesPerRequest - spec.keptPerRequest, rand);
    let marked = false;
    let keptSpans = 0;
    const resourceSpans = slots.map((isKept) => {
      const id = isKept ? kept[keptCursor++ % kept.length]! : droppedPick.pop()!;
      const spans = Array.from({ length: spec.spansPerResource }, (_, s) => {
        let traceId: Buffer;
        if (isKept && !marked && s === 0) {
          traceId = Buffer.concat([MARKER_MAGIC, u32(index), randomBytes(4)]);
          marked = true;
        } else {
          traceId = randomBytes(16);
        }
        return span(rand, traceId, nowNs, spec.healthShare);
      });
      if (isKept) keptSpans += spans.length;
      return { resource: { attributes: attrsOf(id) }, scopeSpans: spans.map((s) => ({ scope: {}, spans: [s] })) };
    });
    const type = types.ExportTraceServiceRequest;
    const body = Buffer.from(type.encode(type.fromObject({ resourceSpans })).finish());
    const gzipped = zlib.gzipSync(body);
    requests.push({
      index,
      body,
      gzipped,
      grpcFrame: framedMessage(false, body),
      grpcGzipFrame: framedMessage(true, gzipped),
      spans: spec.resourcesPerRequest * spec.spansPerResource,
      keptSpans,
    });
  }
  return { spec, requests, keepIds: new Set(kept) };
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

function shuffle<T>(items: T[], rand: () => number): void {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
}

function pickDistinct<T>(from: readonly T[], n: number, rand: () => number): T[] {
  if (n >= from.length) {
    const all = [...from];
    shuffle(all, rand);
    while (all.length < n) all.push(from[Math.floor(rand() * from.length)]!);
    return all;
  }
  const chosen = new Set<number>();
  while (chosen.size < n) chosen.add(Math.floor(rand() * from.length));
  return [...chosen].map((i) => from[i]!);
}

/**
 * Pool indexes of every marker in a forwarded request (a batching server could merge several).
 * Cheap: Buffer.indexOf on the 8-byte magic, then a 4-byte read.
 */
export function findMarkers(buf: Buffer, out: number[]): number[] {
  out.length = 0;
  let at = buf.indexOf(MARKER_MAGIC);
  while (at >= 0 && at + 12 <= buf.length) {
    out.push(buf.readUInt32BE(at + 8));
    at = buf.indexOf(MARKER_MAGIC, at + 12);
  }
  return out;
}
