import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { PermanentError } from '../../../src/component/errors';
import { ConfigIssues, Node } from '../../../src/config/reader';
import type { Signal } from '../../../src/pdata/batch';
import { decodeToPlain, encodeFromOtlpJson, types } from '../../../src/pdata/codec';
import { parseRequest } from '../../../src/pdata/scan';
import { FilterProcessor, parseFilterConfig } from '../../../src/processors/filter/filter';
import { SelfTelemetry } from '../../../src/service/telemetry';
import { Capture, testSettings } from '../../helpers/components';
import { freePorts, waitFor } from '../../helpers/ports';
import { OTTL_SKIP_REASON, ReferenceCollector, ottlReference } from '../../helpers/reference-collector';
import { startService } from '../../helpers/service';
import { GrpcSink } from '../../helpers/sink';

// The filter processor configs a Collector user brings, run unchanged through the reference
// Collector (v0.160.0: otlp receiver -> filter -> otlp_grpc exporter to a capture server) and
// through spansieve's receiver parser and filter processor, on the same OBI-shaped bytes: the
// surviving resources, scopes, spans and events must be identical.

// Without the Collector v0.160.0 (scripts/install-peers.sh otelcol, a long build), the Jaeger v2
// binary the test suite always has (contrib v0.140.1): without the trace_conditions /
// metric_conditions cases, and with error_mode written out (its default was still propagate).
const REF = ottlReference();
const SKIP = REF ? false : OTTL_SKIP_REASON;
const V160 = REF?.version === 'v0.160.0';

const s = (key: string, stringValue: string): unknown => ({ key, value: { stringValue } });
const i = (key: string, intValue: number): unknown => ({ key, value: { intValue } });

const hex = (n: number, len: number): string => n.toString(16).padStart(len, '0');
let spanSeq = 0;

interface SpanOpts {
  name: string;
  kind: number;
  path?: string;
  status?: number;
  statusCode?: number;
  root?: boolean;
  events?: { name: string; attributes?: unknown[] }[];
}

function span(o: SpanOpts): unknown {
  const id = ++spanSeq;
  return {
    traceId: hex(id, 32),
    spanId: hex(id, 16),
    ...(o.root ? {} : { parentSpanId: hex(1000 + id, 16) }),
    name: o.name,
    kind: o.kind,
    startTimeUnixNano: '1700000000000000000',
    endTimeUnixNano: String(1_700_000_000_000_000_000n + BigInt(id) * 1_000_000n),
    attributes: [
      ...(o.path !== undefined ? [s('url.path', o.path)] : []),
      ...(o.statusCode !== undefined ? [i('http.response.status_code', o.statusCode)] : []),
      s('http.request.method', 'GET'),
    ],
    ...(o.status !== undefined ? { status: { code: o.status, ...(o.status === 2 ? { message: 'boom' } : {}) } } : {}),
    events: (o.events ?? []).map((e) => ({ timeUnixNano: '1700000000000000001', name: e.name, attributes: e.attributes ?? [] })),
  };
}

const obiResource = (instance: unknown[], serviceName: string): unknown[] => [
  s('service.name', serviceName), s('telemetry.sdk.language', 'go'), s('host.name', 'ip-10-0-1-5'), ...instance, s('otel.scope.name', 'go.opentelemetry.io/obi'),
];
/** OBI puts each span in its own ScopeSpans with an empty scope. */
const obiScopes = (spans: unknown[]): unknown[] => spans.map((sp) => ({ scope: {}, spans: [sp] }));

/** OBI-shaped and edge-case traces: several resources and scopes, health checks, kinds, statuses, events, an int instance id, missing attributes. */
function tracesCorpus(): unknown {
  spanSeq = 0;
  return {
    resourceSpans: [
      { resource: { attributes: obiResource([s('service.instance.id', 'ip-10-0-1-5:297514')], 'envoy') }, scopeSpans: obiScopes([
        span({ name: 'GET /health', kind: 2, path: '/health', statusCode: 200, root: true }),
        span({ name: 'GET /users/*', kind: 2, path: '/users/42', statusCode: 200, root: true, events: [{ name: 'exception', attributes: [s('exception.type', 'IOError')] }] }),
        span({ name: 'GET', kind: 3, statusCode: 503, status: 2 }),
      ]) },
      { resource: { attributes: obiResource([s('service.instance.id', 'ip-10-0-1-5:297533')], 'backend') }, scopeSpans: obiScopes([
        span({ name: 'GET /users/*', kind: 2, path: '/users/7', statusCode: 500, status: 2, events: [{ name: 'log', attributes: [i('level', 3)] }, { name: 'exception' }] }),
        span({ name: 'SELECT users', kind: 3 }),
        span({ name: 'in queue', kind: 1 }),
      ]) },
      { resource: { attributes: obiResource([i('service.instance.id', 100)], 'frontend') }, scopeSpans: obiScopes([
        span({ name: 'GET /health', kind: 2, path: '/health', statusCode: 200, status: 1 }),
        span({ name: 'POST /cart', kind: 2, path: '/cart', statusCode: 201 }),
      ]) },
      { resource: { attributes: obiResource([s('service.instance.id', 'ip-10-0-1-5:1')], 'sshd') }, scopeSpans: [
        { scope: { name: 'lib', version: '2', attributes: [s('team', 'infra')] }, spans: [span({ name: 'CONNECT', kind: 3 }), span({ name: 'GET /health', kind: 2, path: '/health' })] },
        { scope: { name: 'other', version: '1' }, spans: [span({ name: 'publish topic', kind: 4, events: [{ name: 'log' }] })] },
      ] },
      { resource: { attributes: obiResource([s('service.instance.id', 'default.web-0.nginx')], 'nginx') }, scopeSpans: obiScopes([
        span({ name: 'GET /metrics', kind: 2, path: '/metrics', statusCode: 200 }),
      ]) },
      // Edge cases: a resource without scopes, and one whose only scope has no spans.
      { resource: { attributes: [s('service.name', 'empty')] }, scopeSpans: [] },
      { resource: { attributes: [s('service.name', 'hollow')] }, scopeSpans: [{ scope: { name: 'hollow' }, spans: [] }] },
    ],
  };
}

function metricsCorpus(): unknown {
  const gauge = (name: string, v: number): unknown => ({ name, gauge: { dataPoints: [{ timeUnixNano: '1700000000000000000', asDouble: v }] } });
  return {
    resourceMetrics: [
      { resource: { attributes: obiResource([s('service.instance.id', 'ip-10-0-1-5:297514')], 'envoy') }, scopeMetrics: [{ scope: {}, metrics: [gauge('a', 1), gauge('b', 2)] }] },
      { resource: { attributes: obiResource([i('service.instance.id', 100)], 'frontend') }, scopeMetrics: [{ scope: {}, metrics: [gauge('c', 3)] }] },
      { resource: { attributes: obiResource([s('service.instance.id', 'ip-10-0-1-5:1')], 'sshd') }, scopeMetrics: [{ scope: {}, metrics: [gauge('d', 4)] }] },
      { resource: { attributes: [s('service.name', 'empty')] }, scopeMetrics: [] },
    ],
  };
}

const SEED_FILTER = {
  error_mode: 'ignore',
  traces: { span: ['not ContainsValue(["ip-10-0-1-5:297514", "ip-10-0-1-5:297533"], resource.attributes["service.instance.id"])'] },
};

interface Case {
  readonly name: string;
  readonly signal: Signal;
  readonly filter: Record<string, unknown>;
  /** The Collector fails the request (error_mode propagate with an evaluation error). */
  readonly fails?: boolean;
}

const ALL_CASES: readonly Case[] = [
  { name: 'seed: keep two instance ids', signal: 'traces', filter: SEED_FILTER },
  { name: 'keep-only by instance id, int and string', signal: 'traces', filter: { traces: { span: ['not ContainsValue(["ip-10-0-1-5:1", 100], resource.attributes["service.instance.id"])'] } } },
  { name: 'IsMatch on service.name', signal: 'traces', filter: { traces: { span: ['IsMatch(resource.attributes["service.name"], "^(envoy|ngin)")'] } } },
  { name: 'health checks', signal: 'traces', filter: { error_mode: 'ignore', traces: { span: ['attributes["url.path"] == "/health"'] } } },
  { name: 'health checks and scrapes by IsMatch', signal: 'traces', filter: { traces: { span: ['IsMatch(attributes["url.path"], "^/(health|metrics)$")'] } } },
  { name: 'kind and status', signal: 'traces', filter: { traces: { span: ['kind == SPAN_KIND_CLIENT or status.code == STATUS_CODE_ERROR'] } } },
  { name: 'span kind string, status message', signal: 'traces', filter: { traces: { span: ['kind.string == "Internal"', 'status.message == "boom"'] } } },
  { name: 'span events', signal: 'traces', filter: { traces: { spanevent: ['name == "exception"'] } } },
  { name: 'span events by attribute and span', signal: 'traces', filter: { traces: { span: ['name == "SELECT users"'], spanevent: ['attributes["level"] >= 3', 'span.kind == SPAN_KIND_PRODUCER'] } } },
  { name: 'nil checks', signal: 'traces', filter: { traces: { span: ['attributes["http.response.status_code"] == nil', 'attributes["url.path"] != nil and attributes["url.path"] != "/health"'] } } },
  { name: 'mixed types: int id vs "100"', signal: 'traces', filter: { traces: { span: ['resource.attributes["service.instance.id"] != "100" and resource.attributes["service.name"] == "frontend"'] } } },
  { name: 'mixed types: int vs string attribute', signal: 'traces', filter: { traces: { span: ['attributes["http.response.status_code"] == "200"', 'attributes["http.response.status_code"] > 499'] } } },
  { name: 'resource block', signal: 'traces', filter: { traces: { resource: ['attributes["service.name"] == "sshd"', 'attributes["service.instance.id"] == 100'] } } },
  { name: 'resource block that drops nothing', signal: 'traces', filter: { traces: { resource: ['attributes["nope"] == "x"'] } } },
  { name: 'span block that drops nothing', signal: 'traces', filter: { traces: { span: ['false'] } } },
  { name: 'whole attribute maps: Len, String, ==', signal: 'traces', filter: { traces: { span: ['Len(attributes) > 2 and attributes["url.path"] != "/health"', 'String(attributes) == "{\\"http.request.method\\":\\"GET\\"}"'], spanevent: ['attributes == {"exception.type": "IOError"}'] } } },
  { name: 'IsRootSpan and names', signal: 'traces', filter: { traces: { span: ['IsRootSpan() and name != "GET /health"'] } } },
  { name: 'trace_conditions inferred', signal: 'traces', filter: { trace_conditions: ['resource.attributes["service.name"] == "nginx"', 'span.attributes["url.path"] == "/health"', 'spanevent.name == "log"'] } },
  { name: 'trace_conditions: scope', signal: 'traces', filter: { trace_conditions: ['scope.version == "2"'] } },
  { name: 'trace_conditions: scope attributes', signal: 'traces', filter: { trace_conditions: ['scope.attributes["team"] == "infra" and resource.attributes["service.name"] == "sshd"'] } },
  { name: 'trace_conditions: resource and IsRootSpan infer span', signal: 'traces', filter: { trace_conditions: ['resource.attributes["service.name"] == "envoy" and IsRootSpan()'] } },
  { name: 'trace_conditions: structured groups', signal: 'traces', filter: { trace_conditions: [{ context: 'span', conditions: ['kind == SPAN_KIND_SERVER'] }, { context: 'resource', conditions: ['attributes["service.name"] == "sshd"'] }] } },
  { name: 'error_mode ignore with an erroring condition', signal: 'traces', filter: { error_mode: 'ignore', traces: { span: ['Substring(name, 0, 12) == "GET /users/*"', 'name == "GET"'] } } },
  { name: 'error_mode silent with an erroring condition', signal: 'traces', filter: { error_mode: 'silent', traces: { spanevent: ['Int(attributes["exception.type"]) == 1', 'name == "log"'] } } },
  { name: 'error_mode propagate without errors', signal: 'traces', filter: { error_mode: 'propagate', traces: { span: ['attributes["url.path"] == "/health"'] } } },
  { name: 'error_mode propagate with an error', signal: 'traces', filter: { error_mode: 'propagate', traces: { span: ['Substring(name, 0, 12) == "GET /users/*"'] } }, fails: true },
  { name: 'group error_mode overrides', signal: 'traces', filter: { error_mode: 'propagate', trace_conditions: [{ conditions: ['Substring(span.name, 0, 12) == "GET /users/*"'], error_mode: 'ignore' }] } },
  { name: 'metrics: resource block', signal: 'metrics', filter: { metrics: { resource: ['attributes["service.instance.id"] == 100'] } } },
  { name: 'metrics: keep-only by metric_conditions', signal: 'metrics', filter: { metric_conditions: ['not ContainsValue(["ip-10-0-1-5:1"], resource.attributes["service.instance.id"])'] } },
  { name: 'metrics: nothing dropped', signal: 'metrics', filter: { metric_conditions: ['resource.attributes["x"] != nil'] } },
  { name: 'metrics: metric and datapoint blocks', signal: 'metrics', filter: { metrics: { metric: ['name == "a"'], datapoint: ['value_double > 3.5'] } } },
  { name: 'metrics: metric_conditions groups, each with its error_mode', signal: 'metrics', filter: { error_mode: 'propagate', metric_conditions: [
    { context: 'datapoint', conditions: ['Substring(metric.name, 0, 5) == "x"', 'value_double == 2'], error_mode: 'silent' },
    { context: 'scope', conditions: ['resource.attributes["service.name"] == "sshd"'] },
    { conditions: ['metric.name == "c"'] },
  ] } },
];

const CASES: readonly Case[] = REF?.version !== 'v0.140.1'
  ? ALL_CASES
  : ALL_CASES.filter((c) => !('trace_conditions' in c.filter) && !('metric_conditions' in c.filter)).map((c) => ({ ...c, filter: { error_mode: 'ignore', ...c.filter } }));

/** What survived, canonically: per resource (by service.name), per scope (by name), span names with their events. */
function survivors(signal: Signal, requestBytes: readonly Uint8Array[]): string[] {
  const out: string[] = [];
  for (const bytes of requestBytes) {
    if (signal === 'traces') {
      const req = decodeToPlain(types.ExportTraceServiceRequest, bytes) as { resourceSpans?: { resource?: { attributes?: { key: string; value: { stringValue?: string } }[] }; scopeSpans?: { scope?: { name?: string }; spans?: { spanId: string; name: string; events?: { name: string }[] }[] }[] }[] };
      for (const rs of req.resourceSpans ?? []) {
        const svc = rs.resource?.attributes?.find((a) => a.key === 'service.name')?.value.stringValue ?? '?';
        out.push(`${svc}: ${(rs.scopeSpans ?? []).map((ss) => `[${ss.scope?.name ?? ''}: ${(ss.spans ?? []).map((sp) => `${sp.spanId}/${sp.name}${sp.events?.length ? `(${sp.events.map((e) => e.name).join(',')})` : ''}`).join(' ')}]`).join(' ')}`);
      }
    } else {
      const req = decodeToPlain(types.ExportMetricsServiceRequest, bytes) as { resourceMetrics?: { resource?: { attributes?: { key: string; value: { stringValue?: string } }[] }; scopeMetrics?: { metrics?: { name: string }[] }[] }[] };
      for (const rm of req.resourceMetrics ?? []) {
        const svc = rm.resource?.attributes?.find((a) => a.key === 'service.name')?.value.stringValue ?? '?';
        out.push(`${svc}: ${(rm.scopeMetrics ?? []).map((sm) => `[${(sm.metrics ?? []).map((m) => m.name).join(' ')}]`).join(' ')}`);
      }
    }
  }
  return out.sort();
}

function body(signal: Signal): Uint8Array {
  return signal === 'traces' ? encodeFromOtlpJson(types.ExportTraceServiceRequest, tracesCorpus()) : encodeFromOtlpJson(types.ExportMetricsServiceRequest, metricsCorpus());
}

/** spansieve: the receiver's parser (with mayKeep) and the filter processor, twice (the second run sees mayKeep's cached answers). */
async function spansieve(c: Case): Promise<{ survivors: string[]; error?: Error }> {
  const issues = new ConfigIssues();
  const config = parseFilterConfig(new Node(c.filter, `processors::filter/${c.name}`, issues));
  assert.deepEqual(issues.errors, [], c.name);
  const capture = new Capture();
  const processor = new FilterProcessor(testSettings('filter', new SelfTelemetry()), config, c.signal, capture);
  const results: string[][] = [];
  for (let n = 0; n < 2; n++) {
    capture.batches.length = 0;
    try {
      await processor.consume(parseRequest(c.signal, body(c.signal), (a) => processor.mayKeep(a)).batch);
    } catch (err) {
      return { survivors: [], error: err as Error };
    }
    results.push(survivors(c.signal, capture.batches.map((b) => b.toRequestBytes())));
  }
  assert.deepEqual(results[1], results[0], `${c.name}: the second request (mayKeep's cached answers) ends the same`);
  return { survivors: results[0]! };
}

const sink = new GrpcSink();
let reference: ReferenceCollector | undefined;
const ports: number[] = [];

before(async () => {
  if (SKIP) return;
  await sink.start();
  while (ports.length < CASES.length) {
    const [port] = await freePorts(1);
    if (!ports.includes(port)) ports.push(port);
  }
  // One receiver and pipeline per case: a failing pipeline fails its whole request.
  const config = {
    receivers: Object.fromEntries(CASES.map((_, n) => [`otlp/${n}`, { protocols: { http: { endpoint: `127.0.0.1:${ports[n]}` } } }])),
    processors: Object.fromEntries(CASES.map((c, n) => [`filter/${n}`, c.filter])),
    exporters: Object.fromEntries(CASES.map((_, n) => [`${REF?.otlpExporter ?? ''}/${n}`, {
      endpoint: `127.0.0.1:${sink.port}`, tls: { insecure: true }, sending_queue: { enabled: false }, retry_on_failure: { enabled: false }, headers: { 'x-case': String(n) },
    }])),
    service: {
      telemetry: { logs: { level: 'error' }, metrics: { level: 'none' } },
      pipelines: Object.fromEntries(CASES.map((c, n) => [`${c.signal}/${n}`, { receivers: [`otlp/${n}`], processors: [`filter/${n}`], exporters: [`${REF?.otlpExporter ?? ''}/${n}`] }])),
    },
  };
  reference = await ReferenceCollector.start(config, { bin: REF?.bin, httpPorts: ports });
});

after(async () => {
  await reference?.stop();
  await sink.stop();
});

/** The Collector's survivors per case, filled by the first test. */
const collectorSurvivors = new Map<number, string[]>();

test('every Collector filter config leaves the same resources, scopes, spans and events in spansieve', { skip: SKIP }, async () => {
  const mismatches: string[] = [];
  const distinct = new Set<string>();
  for (const [n, c] of CASES.entries()) {
    const before = sink.requests.length;
    // Without a sending queue the export is synchronous: when the POST answers, the sink has it.
    const res = await fetch(`http://127.0.0.1:${ports[n]}/v1/${c.signal}`, { method: 'POST', headers: { 'content-type': 'application/x-protobuf' }, body: body(c.signal) });
    await res.arrayBuffer();
    const collector = survivors(c.signal, sink.requests.slice(before).filter((r) => r.headers['x-case'] === String(n)).map((r) => r.body));
    const ours = await spansieve(c);
    if (c.fails) {
      assert.notEqual(res.status, 200, `${c.name}: the Collector fails the request`);
      assert.deepEqual(collector, [], c.name);
      assert.ok(ours.error instanceof PermanentError, `${c.name}: spansieve fails the batch (${String(ours.error)})`);
      continue;
    }
    assert.equal(res.status, 200, `${c.name}: ${reference?.log ?? ''}`);
    assert.equal(ours.error, undefined, c.name);
    distinct.add(JSON.stringify(collector));
    collectorSurvivors.set(n, collector);
    if (process.env.OTTL_CONFORMANCE_DEBUG) process.stdout.write(`# ${c.name}: ${JSON.stringify(collector)}\n`);
    if (JSON.stringify(collector) !== JSON.stringify(ours.survivors)) {
      mismatches.push(`${c.name}:\n  collector ${JSON.stringify(collector)}\n  spansieve ${JSON.stringify(ours.survivors)}`);
    }
  }
  assert.deepEqual(mismatches, []);
  // Not a vacuous pass: the configs leave many different results.
  assert.ok(distinct.size >= (V160 ? 15 : 10), `distinct outcomes: ${distinct.size}`);
});

test('a running spansieve service (otlp receiver -> filter -> otlp exporter) forwards what the Collector forwards', { skip: SKIP }, async () => {
  // Every case that succeeds, as one pipeline each behind one receiver (a propagate failure
  // would fail the shared request, so those cases stay with the in-process test above).
  const cases = [...CASES.entries()].filter(([n, c]) => !c.fails && collectorSurvivors.has(n));
  const ownSink = new GrpcSink();
  await ownSink.start();
  const [httpPort] = await freePorts(1);
  const service = await startService({
    receivers: { otlp: { protocols: { http: { endpoint: `127.0.0.1:${httpPort}` } } } },
    processors: Object.fromEntries(cases.map(([n, c]) => [`filter/${n}`, c.filter])),
    exporters: Object.fromEntries(cases.map(([n]) => [`otlp/${n}`, { endpoint: `127.0.0.1:${ownSink.port}`, tls: { insecure: true }, compression: 'none', headers: { 'x-case': String(n) } }])),
    service: { pipelines: Object.fromEntries(cases.map(([n, c]) => [`${c.signal}/${n}`, { receivers: ['otlp'], processors: [`filter/${n}`], exporters: [`otlp/${n}`] }])) },
  });
  try {
    for (const signal of ['traces', 'metrics'] as const) {
      const res = await fetch(`http://127.0.0.1:${httpPort}/v1/${signal}`, { method: 'POST', headers: { 'content-type': 'application/x-protobuf' }, body: body(signal) });
      assert.equal(res.status, 200, await res.text());
    }
    const expecting = cases.filter(([n]) => (collectorSurvivors.get(n) ?? []).length > 0);
    await waitFor('every pipeline exported', () => expecting.every(([n]) => ownSink.requests.some((r) => r.headers['x-case'] === String(n))), 30_000);
    const mismatches: string[] = [];
    for (const [n, c] of cases) {
      const ours = survivors(c.signal, ownSink.requests.filter((r) => r.headers['x-case'] === String(n)).map((r) => r.body));
      if (JSON.stringify(ours) !== JSON.stringify(collectorSurvivors.get(n))) mismatches.push(`${c.name}: collector ${JSON.stringify(collectorSurvivors.get(n))}, spansieve ${JSON.stringify(ours)}`);
    }
    assert.deepEqual(mismatches, []);
  } finally {
    await service.shutdown();
    await ownSink.stop();
  }
});
