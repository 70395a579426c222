import { randomBytes } from 'node:crypto';
import * as zlib from 'node:zlib';
import { types } from '../../src/pdata/codec';
import { int, str } from './otlp-json';

// Payloads shaped like OBI's (../shared/reference/obi-output.md): one ResourceSpans per process,
// each span in its own ScopeSpans with an empty scope, OBI's resource attributes and span names.

export interface ObiInstance {
  readonly instanceId: string;
  readonly serviceName: string;
  readonly extra?: Record<string, string>;
}

export const hostInstance = (host: string, pid: number, serviceName = 'backend'): ObiInstance => ({
  instanceId: `${host}:${pid}`,
  serviceName,
  extra: { 'host.name': host },
});

export const k8sInstance = (ns: string, pod: string, container: string, serviceName = container): ObiInstance => ({
  instanceId: `${ns}.${pod}.${container}`,
  serviceName,
  extra: { 'host.name': pod, 'k8s.namespace.name': ns, 'k8s.pod.name': pod, 'k8s.container.name': container, 'k8s.node.name': 'node-1' },
});

export const dockerInstance = (composeService: string, container: string): ObiInstance => ({
  instanceId: `${composeService}.${container}`,
  serviceName: composeService,
  extra: { 'container.name': container, 'container.id': randomBytes(32).toString('hex') },
});

export interface SpanSpec {
  readonly traceId?: Buffer;
  readonly spanId?: Buffer;
  readonly parentSpanId?: Buffer;
  readonly name?: string;
  readonly kind?: number;
  readonly startNs?: bigint;
  readonly durationNs?: bigint;
  readonly statusCode?: number;
  readonly attributes?: { key: string; value: Record<string, unknown> }[];
}

export function resourceAttributes(instance: ObiInstance) {
  return [
    str('service.name', instance.serviceName),
    str('telemetry.sdk.language', 'go'),
    str('telemetry.sdk.name', 'opentelemetry'),
    str('telemetry.sdk.version', '1.38.0'),
    str('telemetry.distro.name', 'opentelemetry-ebpf-instrumentation'),
    str('telemetry.distro.version', 'v0.3.0'),
    str('host.id', 'ec2f0e5b8a1c4d2e9f00112233445566'),
    str('os.type', 'linux'),
    ...Object.entries(instance.extra ?? {}).map(([k, v]) => str(k, v)),
    str('service.instance.id', instance.instanceId),
    str('otel.scope.name', 'go.opentelemetry.io/obi'),
  ];
}

export function obiSpan(spec: SpanSpec = {}) {
  const start = spec.startNs ?? BigInt(Date.now()) * 1_000_000n;
  const end = start + (spec.durationNs ?? 1_500_000n);
  return {
    traceId: spec.traceId ?? randomBytes(16),
    spanId: spec.spanId ?? randomBytes(8),
    ...(spec.parentSpanId ? { parentSpanId: spec.parentSpanId } : {}),
    name: spec.name ?? 'GET /users/*',
    kind: spec.kind ?? 2,
    startTimeUnixNano: start.toString(),
    endTimeUnixNano: end.toString(),
    attributes: spec.attributes ?? [
      str('http.request.method', 'GET'),
      int('http.response.status_code', 200),
      str('url.path', '/users/42'),
      str('url.scheme', 'http'),
      str('http.route', '/users/*'),
      str('client.address', '10.0.0.7'),
      str('server.address', 'backend'),
      int('server.port', 8080),
      int('http.request.body.size', 0),
      int('http.response.body.size', 312),
    ],
    status: { code: spec.statusCode ?? 0 },
  };
}

/** One ResourceSpans for an instance; each span in its own empty-scope ScopeSpans, as OBI does. */
export function obiResourceSpans(instance: ObiInstance, spans: ReturnType<typeof obiSpan>[]) {
  return {
    resource: { attributes: resourceAttributes(instance) },
    scopeSpans: spans.map((span) => ({ scope: {}, spans: [span] })),
  };
}

export function encodeTraces(resourceSpans: ReturnType<typeof obiResourceSpans>[]): Buffer {
  const type = types.ExportTraceServiceRequest;
  return Buffer.from(type.encode(type.fromObject({ resourceSpans })).finish());
}

export function gzip(body: Buffer): Buffer {
  return zlib.gzipSync(body);
}

/** A request for many instances, `spansPerInstance` spans each. */
export function obiTraceRequest(instances: readonly ObiInstance[], spansPerInstance: number): Buffer {
  return encodeTraces(instances.map((instance) => obiResourceSpans(instance, Array.from({ length: spansPerInstance }, () => obiSpan()))));
}
