import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { types } from '../../src/pdata/codec';
import {
  ConditionSequence, DATAPOINT_CONTEXT, METRIC_CONTEXT, METRIC_CONTEXTS, SPAN_CONTEXT, SPAN_EVENT_CONTEXT, TRACE_CONTEXTS, compileCondition, inferContext,
  type CompiledCondition, type OttlContext, type OttlValue, type TelemetryItem,
} from '../../src/ottl';
import { freePorts } from '../helpers/ports';
import { OTTL_SKIP_REASON, ReferenceCollector, ottlReference, validateWithReference } from '../helpers/reference-collector';
import { GrpcSink } from '../helpers/sink';

// The same data through a real Collector's filter processor and through the engine: the survivors
// must be identical for every condition. The reference is the Collector v0.160.0 (the engine's
// version; scripts/install-peers.sh otelcol, a long build, bench only) when installed, else the
// Jaeger v2 binary the tests always have (contrib v0.140.1: no trace_conditions / metric_conditions,
// and a few conditions valid in only one version, listed in V0_140_DIFFERENCES).
// SPANSIEVE_OTTL_REFERENCE=jaeger forces Jaeger.

const REF = ottlReference();
const SKIP = REF ? false : OTTL_SKIP_REASON;
/** Context-inferred conditions exist from contrib v0.149 on; Jaeger's filter processor lacks them. */
const HAS_INFERRED = REF?.version === 'v0.160.0';

type Attr = string | bigint | number | boolean | Uint8Array | readonly Attr[] | { readonly [k: string]: Attr };

interface SpanSpec {
  id: number;
  name: string;
  kind: number;
  status?: { code: number; message?: string };
  parent?: boolean;
  durationNs: bigint;
  attributes: Record<string, Attr>;
  events?: { name: string; attributes: Record<string, Attr> }[];
}

interface ResourceSpec {
  attributes: Record<string, Attr>;
  scope: { name: string; version: string };
  spans: SpanSpec[];
}

const CORPUS: ResourceSpec[] = [
  {
    attributes: { 'service.name': 'checkout', 'service.instance.id': 'host-a:100', pid: 100n },
    scope: { name: 'obi', version: '1.0' },
    spans: [
      { id: 1, name: 'GET /health', kind: 2, durationNs: 500_000n, attributes: { 'url.path': '/health', 'http.status': 200n, latency: 12.7 },
        events: [{ name: 'exception', attributes: { 'exception.type': 'IOError' } }, { name: 'log', attributes: { level: 3n } }] },
      { id: 2, name: 'GET /api/items', kind: 2, status: { code: 2, message: 'boom' }, durationNs: 20_000_000n, attributes: { 'url.path': '/api/items', 'http.status': 503n, latency: 9.5 }, parent: true },
      { id: 3, name: 'SELECT', kind: 3, durationNs: 3_000_000n, attributes: { 'db.system': 'postgresql', payload: Uint8Array.from([0xde, 0xad]) }, parent: true,
        events: [{ name: 'exception', attributes: { 'exception.type': 'Timeout' } }] },
    ],
  },
  {
    attributes: { 'service.name': 'frontend', 'service.instance.id': 100n, 'host.ip': '10.0.0.1' },
    scope: { name: 'obi', version: '1.0' },
    spans: [
      { id: 4, name: 'GET /health', kind: 2, status: { code: 1 }, durationNs: 100_000n, attributes: { 'url.path': '/health', 'http.status': 200n } },
      { id: 5, name: 'POST /cart', kind: 1, durationNs: 2_000_000n, attributes: { 'url.path': '/cart', 'http.status': 201n, latency: 1.0 }, parent: true },
    ],
  },
  {
    attributes: { 'service.name': 'db', 'service.instance.id': 'host-b:1', ratio: 1.5, flag: true, tags: ['a', 'b'], meta: { k: 'v' } },
    scope: { name: 'other', version: '2' },
    spans: [
      { id: 6, name: 'SELECT', kind: 1, durationNs: 50_000n, attributes: { 'http.status': '200', latency: 300n } },
      { id: 7, name: 'x', kind: 4, durationNs: 1n, attributes: {} },
    ],
  },
];

const spanIdHex = (id: number): string => id.toString(16).padStart(16, '0');
const traceIdHex = (id: number): string => id.toString(16).padStart(32, '0');

/** Each entry: the conditions of one filter processor, legacy `traces.span` or `trace_conditions`. */
const CASES: readonly { readonly span?: readonly string[]; readonly spanevent?: readonly string[]; readonly traceConditions?: readonly string[] }[] = [
  { span: ['resource.attributes["service.instance.id"] != "host-a:100"'] },
  { span: ['not ContainsValue(["host-a:100", "host-b:1"], resource.attributes["service.instance.id"])'] },
  { span: ['attributes["url.path"] == "/health"'] },
  { span: ['IsMatch(resource.attributes["service.name"], "^check")'] },
  { span: ['kind == SPAN_KIND_CLIENT or status.code == STATUS_CODE_ERROR'] },
  { span: ['attributes["http.status"] >= 500', 'attributes["http.status"] > 200.5'] },
  { span: ['attributes["missing"] == nil and attributes["latency"] != nil'] },
  { span: ['resource.attributes["service.instance.id"] == 100'] },
  { span: ['resource.attributes["service.instance.id"] == "100"'] },
  { span: ['resource.attributes["pid"] < "2"', 'resource.attributes["pid"] != "100" and resource.attributes["pid"] != nil'] },
  { span: ['Substring(name, 0, 10) == "GET /api/i"'] },
  { span: ['IsRootSpan()'] },
  { span: ['Len(attributes) > 2'] },
  { span: ['IsString(resource.attributes["service.instance.id"])', 'IsInt(attributes["latency"])'] },
  { span: ['resource.attributes["tags"] == ["a", "b"]'] },
  { span: ['resource.attributes["meta"] == {"k": "v"}'] },
  { span: ['Concat([name, String(kind)], "-") == "SELECT-1"'] },
  { span: ['end_time_unix_nano - start_time_unix_nano > 1000000'] },
  { span: ['ToLowerCase(name) == "get /health" and instrumentation_scope.name == "obi"'] },
  { span: [`span_id == SpanID(0x${spanIdHex(5)})`, `trace_id.string == "${traceIdHex(3)}"`] },
  { span: ['Int(attributes["latency"]) == 12', 'attributes["latency"] * 2 > 100'] },
  { span: ['Split(name, " ")[1] == "/health"'] },
  { span: ['IsMatch(String(attributes["http.status"]), "^2")'] },
  { span: ['Double(attributes["http.status"]) == 200.0'] },
  { span: ['name == "GET /health" and (kind == SPAN_KIND_CLIENT or not IsRootSpan())'] },
  { span: ['resource.attributes["ratio"] == 1.5 and resource.attributes["flag"] == true'] },
  { span: ['status.message == "boom" or HasPrefix(name, "SEL")'] },
  { span: ['Hex(attributes["payload"]) == "dead"'] },
  { span: ['attributes["http.status"] == "200"'] },
  { span: ['1 == 1 and attributes["latency"] > 10'] },
  { span: ['resource.attributes["meta"]["k"] == "v"', 'resource.attributes["tags"][1] == "a"'] },
  { span: ['resource.attributes["tags"][5] == "b"', 'attributes["url.path"]["x"] == nil', 'attributes[0] == nil'] },
  { span: ['Len(resource.attributes["tags"]) == 2 and String(resource.attributes["meta"]) == "{\\"k\\":\\"v\\"}"'] },
  { span: ['String(attributes["latency"]) == "12.7"', 'attributes["payload"] == 0xdead'] },
  { span: ['Concat([attributes["missing"], "x"], "") == "<nil>x" and kind == SPAN_KIND_SERVER'] },
  { span: ['Split(name, " ")[5] == "x"', 'attributes["http.status"] / 0 == 1', 'name == "x"'] },
  { span: ['ContainsValue(resource.attributes["tags"], "b") and name == "x"'] },
  { span: ['end_time - start_time > Duration("10ms")'] },
  { span: ['Int(attributes["http.status"]) == 200 and attributes["http.status"] != 200'] },
  { span: ['attributes["http.status"] == 200.0'] },
  { span: ['resource.attributes == {"service.name": "frontend", "service.instance.id": 100, "host.ip": "10.0.0.1"}'] },
  { span: ['attributes["latency"] > attributes["http.status"]'] },
  { span: ['IsMatch(attributes["payload"], "^de")', 'IsMatch(resource.attributes["meta"], "\\"k\\"")'] },
  { span: ['not (name == "GET /health" or name == "SELECT") and not IsRootSpan()'] },
  { traceConditions: ['span.attributes["url.path"] == "/health"', 'resource.attributes["service.name"] == "db"'] },
  { traceConditions: ['resource.attributes["host.ip"] != nil', 'span.kind == SPAN_KIND_CLIENT and IsRootSpan()'] },
  { traceConditions: ['scope.version == "2"'] },
  { spanevent: ['name == "exception" and attributes["exception.type"] == "IOError"'] },
  { span: ['kind == SPAN_KIND_CLIENT'], spanevent: ['attributes["level"] > 2', 'span.name == "SELECT"'] },
  { traceConditions: ['spanevent.name == "log" or spanevent.attributes["exception.type"] == "Timeout"'] },
  { traceConditions: ['spanevent.name == "exception" and span.kind == SPAN_KIND_SERVER', 'resource.attributes["service.name"] == "frontend"'] },
];

interface PointSpec {
  id: string;
  attributes: Record<string, Attr>;
  value?: number | bigint;
  count?: bigint;
  sum?: number;
}

interface MetricSpec {
  name: string;
  type: 1 | 2 | 3 | 5;
  temporality?: number;
  monotonic?: boolean;
  points: PointSpec[];
}

const METRICS: { attributes: Record<string, Attr>; metrics: MetricSpec[] }[] = [
  {
    attributes: { 'service.name': 'checkout' },
    metrics: [
      { name: 'http.server.duration', type: 3, temporality: 2, points: [
        { id: 'p1', attributes: { route: '/a', code: 200n }, count: 3n, sum: 1.5 },
        { id: 'p2', attributes: { route: '/b', code: '500' }, count: 1n, sum: 0.2 },
      ] },
      { name: 'process.cpu', type: 1, points: [{ id: 'p3', attributes: { state: 'user' }, value: 1.5 }, { id: 'p4', attributes: { state: 'system' }, value: 0.5 }] },
      { name: 'requests', type: 2, temporality: 1, monotonic: true, points: [{ id: 'p5', attributes: { route: '/a' }, value: 10n }, { id: 'p6', attributes: {}, value: 0n }] },
    ],
  },
  {
    attributes: { 'service.name': 'db' },
    metrics: [
      { name: 'db.calls', type: 2, temporality: 2, monotonic: false, points: [{ id: 'p7', attributes: { op: 'select' }, value: 2.5 }] },
      { name: 'summary.x', type: 5, points: [{ id: 'p8', attributes: { q: 1n }, count: 5n, sum: 10 }] },
    ],
  },
];

const METRIC_CASES: readonly { readonly metric?: readonly string[]; readonly datapoint?: readonly string[]; readonly metricConditions?: readonly string[] }[] = [
  { metric: ['name == "process.cpu"'] },
  { metric: ['type == METRIC_DATA_TYPE_HISTOGRAM'] },
  { metric: ['HasAttrOnDatapoint("route", "/a")'] },
  { metric: ['HasAttrKeyOnDatapoint("op")'] },
  { metric: ['HasAttrOnDatapoint("code", "200")'] },
  { metric: ['aggregation_temporality == AGGREGATION_TEMPORALITY_DELTA or is_monotonic == false'] },
  { metric: ['resource.attributes["service.name"] == "db"'] },
  { datapoint: ['attributes["route"] == "/a"'] },
  { datapoint: ['value_double > 1.0'] },
  { datapoint: ['value_int == 0', 'count > 2'] },
  { datapoint: ['sum < 1.0'] },
  { datapoint: ['metric.name == "requests" and attributes["route"] == nil'] },
  { datapoint: ['attributes["code"] == 200'] },
  { datapoint: ['value_double == nil'] },
  { metric: ['name == "db.calls"'], datapoint: ['attributes["state"] == "user"'] },
  { metricConditions: ['datapoint.attributes["state"] == "system"', 'metric.name == "requests"'] },
  { metricConditions: ['resource.attributes["service.name"] == "checkout" and HasAttrKeyOnDatapoint("state")'] },
];

function otlpMetricsJson(): unknown {
  const point = (p: PointSpec): Record<string, unknown> => ({
    attributes: otlpAttributes({ ...p.attributes, id: p.id }),
    timeUnixNano: '1700000000000000000',
    ...(typeof p.value === 'number' ? { asDouble: p.value } : typeof p.value === 'bigint' ? { asInt: p.value.toString() } : {}),
    ...(p.count !== undefined ? { count: p.count.toString(), sum: p.sum } : {}),
  });
  return {
    resourceMetrics: METRICS.map((r) => ({
      resource: { attributes: otlpAttributes(r.attributes) },
      scopeMetrics: [{
        scope: { name: 'obi' },
        metrics: r.metrics.map((m) => {
          const dataPoints = m.points.map(point);
          const body =
            m.type === 1 ? { gauge: { dataPoints } }
              : m.type === 2 ? { sum: { dataPoints, aggregationTemporality: m.temporality, isMonotonic: m.monotonic } }
                : m.type === 3 ? { histogram: { dataPoints, aggregationTemporality: m.temporality } }
                  : { summary: { dataPoints } };
          return { name: m.name, ...body };
        }),
      }],
    })),
  };
}

function engineMetricSurvivors(c: (typeof METRIC_CASES)[number]): string[] {
  const out: string[] = [];
  const byContext = new Map<string, CompiledCondition<TelemetryItem>[]>();
  if (c.metricConditions) {
    for (const t of c.metricConditions) {
      const name = inferContext(t, METRIC_CONTEXTS);
      byContext.set(name, [...(byContext.get(name) ?? []), compileCondition(t, METRIC_CONTEXTS[name] as OttlContext<TelemetryItem>, { mode: 'explicit' })]);
    }
  } else {
    byContext.set('metric', (c.metric ?? []).map((t) => compileCondition(t, METRIC_CONTEXT)));
    if (c.datapoint) byContext.set('datapoint', c.datapoint.map((t) => compileCondition(t, DATAPOINT_CONTEXT)));
  }
  const seq = (name: string): ConditionSequence<TelemetryItem> => new ConditionSequence(byContext.get(name) ?? [], 'ignore');
  for (const r of METRICS) {
    for (const m of r.metrics) {
      const pts = m.points.map((p) => ({
        id: p.id,
        attributes: ottlMap({ ...p.attributes, id: p.id }),
        timeUnixNano: 1_700_000_000_000_000_000n,
        ...(p.value !== undefined ? { value: p.value } : {}),
        ...(p.count !== undefined ? { count: p.count, sum: p.sum } : {}),
      }));
      const metric = { name: m.name, type: m.type, aggregationTemporality: m.temporality, isMonotonic: m.monotonic, dataPoints: pts };
      const base: TelemetryItem = { resource: { attributes: ottlMap(r.attributes) }, scope: { name: 'obi' }, metric };
      if (seq('resource').eval(base) || seq('scope').eval(base) || seq('metric').eval(base)) continue;
      for (const p of pts) if (!seq('datapoint').eval({ ...base, dataPoint: p })) out.push(`${m.name}:${p.id}`);
    }
  }
  return out.sort();
}

/** A condition that errors on some spans, under error_mode propagate: the Collector fails the request. */
const PROPAGATE = 'Substring(name, 0, 10) == "GET /api/i"';

function attrValue(v: Attr): Record<string, unknown> {
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'bigint') return { intValue: v.toString() };
  if (typeof v === 'number') return { doubleValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (v instanceof Uint8Array) return { bytesValue: Buffer.from(v).toString('base64') };
  if (Array.isArray(v)) return { arrayValue: { values: (v as readonly Attr[]).map(attrValue) } };
  return { kvlistValue: { values: otlpAttributes(v as Record<string, Attr>) } };
}

function otlpAttributes(o: Record<string, Attr>): unknown[] {
  return Object.entries(o).map(([key, value]) => ({ key, value: attrValue(value) }));
}

function otlpJson(): unknown {
  return {
    resourceSpans: CORPUS.map((r) => ({
      resource: { attributes: otlpAttributes(r.attributes) },
      scopeSpans: [{
        scope: r.scope,
        spans: r.spans.map((s) => ({
          traceId: traceIdHex(s.id),
          spanId: spanIdHex(s.id),
          ...(s.parent ? { parentSpanId: spanIdHex(100 + s.id) } : {}),
          name: s.name,
          kind: s.kind,
          startTimeUnixNano: '1700000000000000000',
          endTimeUnixNano: (1_700_000_000_000_000_000n + s.durationNs).toString(),
          attributes: otlpAttributes(s.attributes),
          ...(s.status ? { status: s.status } : {}),
          events: (s.events ?? []).map((e) => ({ timeUnixNano: '1700000000000000001', name: e.name, attributes: otlpAttributes(e.attributes) })),
        })),
      }],
    })),
  };
}

function ottlValue(v: Attr): OttlValue {
  if (Array.isArray(v)) return (v as readonly Attr[]).map(ottlValue);
  if (typeof v === 'object' && !(v instanceof Uint8Array)) return ottlMap(v as Record<string, Attr>);
  return v;
}

function ottlMap(o: Record<string, Attr>): Map<string, OttlValue> {
  return new Map(Object.entries(o).map(([k, v]) => [k, ottlValue(v)]));
}

function items(): { resource: number; item: TelemetryItem; id: string; events: TelemetryItem[] }[] {
  return CORPUS.flatMap((r, ri) =>
    r.spans.map((s) => ({
      resource: ri,
      id: spanIdHex(s.id),
      item: {
        resource: { attributes: ottlMap(r.attributes) },
        scope: r.scope,
        span: {
          traceId: Buffer.from(traceIdHex(s.id), 'hex'),
          spanId: Buffer.from(spanIdHex(s.id), 'hex'),
          ...(s.parent ? { parentSpanId: Buffer.from(spanIdHex(100 + s.id), 'hex') } : {}),
          name: s.name,
          kind: s.kind,
          startTimeUnixNano: 1_700_000_000_000_000_000n,
          endTimeUnixNano: 1_700_000_000_000_000_000n + s.durationNs,
          attributes: ottlMap(s.attributes),
          ...(s.status ? { status: s.status } : {}),
        },
      },
    })).map((i, k, all) => ({ ...i, events: eventsOf(all[k]?.item as TelemetryItem, CORPUS[i.resource]?.spans.find((sp) => spanIdHex(sp.id) === i.id)) })),
  );
}

function eventsOf(item: TelemetryItem, spec: SpanSpec | undefined): TelemetryItem[] {
  return (spec?.events ?? []).map((e) => ({ ...item, spanEvent: { name: e.name, timeUnixNano: 1_700_000_000_000_000_001n, attributes: ottlMap(e.attributes) } }));
}

/** A survivor: the span id (as a number) and the names of its surviving events. */
const survivor = (id: string, events: readonly string[]): string => `${parseInt(id, 16)}${events.length ? `:${events.join('|')}` : ''}`;

/** The engine's survivors, the way the filter processor walks resources, scopes, spans and events. */
function engineSurvivors(c: (typeof CASES)[number]): string[] {
  const all = items();
  const keepEvents = (i: (typeof all)[number], seq: ConditionSequence<TelemetryItem> | undefined): string[] =>
    i.events.filter((e) => !seq?.eval(e)).map((e) => e.spanEvent?.name ?? '');
  if (c.span || c.spanevent) {
    const seq = new ConditionSequence((c.span ?? []).map((t) => compileCondition(t, SPAN_CONTEXT)), 'ignore');
    const eseq = c.spanevent ? new ConditionSequence(c.spanevent.map((t) => compileCondition(t, SPAN_EVENT_CONTEXT)), 'ignore') : undefined;
    return all.filter((i) => !seq.eval(i.item)).map((i) => survivor(i.id, keepEvents(i, eseq))).sort();
  }
  const byContext = new Map<string, ReturnType<typeof compileCondition<TelemetryItem>>[]>();
  for (const t of c.traceConditions ?? []) {
    const name = inferContext(t, TRACE_CONTEXTS);
    const ctx = TRACE_CONTEXTS[name] as OttlContext<TelemetryItem>;
    byContext.set(name, [...(byContext.get(name) ?? []), compileCondition(t, ctx, { mode: 'explicit' })]);
  }
  const seq = (name: string): ConditionSequence<TelemetryItem> => new ConditionSequence(byContext.get(name) ?? [], 'ignore');
  return all
    .filter((i) => !seq('resource').eval(i.item) && !seq('scope').eval(i.item) && !seq('span').eval(i.item))
    .map((i) => survivor(i.id, keepEvents(i, seq('spanevent'))))
    .sort();
}

const EXPORTER = REF?.otlpExporter ?? 'otlp';
const ACTIVE_CASES = CASES.filter((c) => HAS_INFERRED || !c.traceConditions);
const ACTIVE_METRIC_CASES = METRIC_CASES.filter((c) => HAS_INFERRED || !c.metricConditions);

function collectorConfig(httpPort: number, propagatePort: number, sinkPort: number): string {
  const lines: string[] = [
    'receivers:', '  otlp:', '    protocols:', '      http:', `        endpoint: 127.0.0.1:${httpPort}`,
    '  otlp/propagate:', '    protocols:', '      http:', `        endpoint: 127.0.0.1:${propagatePort}`,
    'processors:',
    '  filter/propagate:', '    error_mode: propagate', '    traces:', '      span:', `        - ${JSON.stringify(PROPAGATE)}`,
  ];
  ACTIVE_CASES.forEach((c, n) => {
    lines.push(`  filter/${n}:`, '    error_mode: ignore');
    if (c.span || c.spanevent) {
      lines.push('    traces:');
      if (c.span) lines.push('      span:', ...c.span.map((t) => `        - ${JSON.stringify(t)}`));
      if (c.spanevent) lines.push('      spanevent:', ...c.spanevent.map((t) => `        - ${JSON.stringify(t)}`));
    } else {
      lines.push('    trace_conditions:', ...(c.traceConditions ?? []).map((t) => `      - ${JSON.stringify(t)}`));
    }
  });
  ACTIVE_METRIC_CASES.forEach((c, n) => {
    lines.push(`  filter/m${n}:`, '    error_mode: ignore');
    if (c.metricConditions) {
      lines.push('    metric_conditions:', ...c.metricConditions.map((t) => `      - ${JSON.stringify(t)}`));
    } else {
      lines.push('    metrics:');
      if (c.metric) lines.push('      metric:', ...c.metric.map((t) => `        - ${JSON.stringify(t)}`));
      if (c.datapoint) lines.push('      datapoint:', ...c.datapoint.map((t) => `        - ${JSON.stringify(t)}`));
    }
  });
  lines.push('exporters:');
  ACTIVE_METRIC_CASES.forEach((_, n) => {
    lines.push(
      `  ${EXPORTER}/m${n}:`, `    endpoint: 127.0.0.1:${sinkPort}`, '    tls:', '      insecure: true',
      '    sending_queue:', '      enabled: false', '    retry_on_failure:', '      enabled: false', '    headers:', `      x-case: "m${n}"`,
    );
  });
  lines.push(
    `  ${EXPORTER}/propagate:`, `    endpoint: 127.0.0.1:${sinkPort}`, '    tls:', '      insecure: true',
    '    sending_queue:', '      enabled: false', '    retry_on_failure:', '      enabled: false', '    headers:', '      x-case: "propagate"',
  );
  ACTIVE_CASES.forEach((_, n) => {
    lines.push(
      `  ${EXPORTER}/${n}:`, `    endpoint: 127.0.0.1:${sinkPort}`, '    tls:', '      insecure: true',
      '    sending_queue:', '      enabled: false', '    retry_on_failure:', '      enabled: false',
      '    headers:', `      x-case: "${n}"`,
    );
  });
  lines.push('service:', '  telemetry:', '    logs:', '      level: error', '    metrics:', '      level: none', '  pipelines:');
  ACTIVE_METRIC_CASES.forEach((_, n) => {
    lines.push(`    metrics/${n}:`, '      receivers: [otlp]', `      processors: [filter/m${n}]`, `      exporters: [${EXPORTER}/m${n}]`);
  });
  lines.push('    traces/propagate:', '      receivers: [otlp/propagate]', '      processors: [filter/propagate]', `      exporters: [${EXPORTER}/propagate]`);
  ACTIVE_CASES.forEach((_, n) => {
    lines.push(`    traces/${n}:`, '      receivers: [otlp]', `      processors: [filter/${n}]`, `      exporters: [${EXPORTER}/${n}]`);
  });
  return `${lines.join('\n')}\n`;
}

const sink = new GrpcSink();
let collector: ReferenceCollector | undefined;
let httpPort = 0;
let propagatePort = 0;

before(async () => {
  if (!REF) return;
  await sink.start();
  [httpPort, propagatePort] = await freePorts(2);
  collector = await ReferenceCollector.start(collectorConfig(httpPort, propagatePort, sink.port), { bin: REF.bin, httpPorts: [httpPort, propagatePort] });
});

after(async () => {
  await collector?.stop();
  await sink.stop();
});

test('the engine keeps exactly the spans the Collector filter processor keeps', { skip: SKIP }, async () => {
  // With the sending queue off, exports are synchronous: when the POST returns every pipeline has exported.
  const res = await fetch(`http://127.0.0.1:${httpPort}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(otlpJson()) });
  assert.equal(res.status, 200, await res.text());
  const survivors = new Map<number, string[]>();
  for (const r of sink.requests) {
    const n = Number(r.headers['x-case']);
    const msg = types.ExportTraceServiceRequest.toObject(types.ExportTraceServiceRequest.decode(r.body), { bytes: String }) as {
      resourceSpans?: { scopeSpans?: { spans?: { spanId: string; events?: { name: string }[] }[] }[] }[];
    };
    const ids = (msg.resourceSpans ?? []).flatMap((rs) => (rs.scopeSpans ?? []).flatMap((ss) => (ss.spans ?? []).map((s) =>
      survivor(Buffer.from(s.spanId, 'base64').toString('hex'), (s.events ?? []).map((e) => e.name)))));
    survivors.set(n, [...(survivors.get(n) ?? []), ...ids]);
  }
  const mismatches: string[] = [];
  ACTIVE_CASES.forEach((c, n) => {
    const collector = (survivors.get(n) ?? []).sort();
    const engine = engineSurvivors(c);
    if (JSON.stringify(collector) !== JSON.stringify(engine)) {
      mismatches.push(`${JSON.stringify(c)}: collector kept [${collector.join(', ')}], engine kept [${engine.join(', ')}]`);
    }
  });
  if (process.env.OTTL_CONFORMANCE_DEBUG) console.log([...survivors.entries()].map(([n, ids]) => `${n}: ${ids.sort().join(", ")}`).join("\n"));
  assert.deepEqual(mismatches, []);
  // error_mode propagate: the Collector refuses the request (nothing exported); the engine throws.
  const refused = await fetch(`http://127.0.0.1:${propagatePort}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(otlpJson()) });
  assert.notEqual(refused.status, 200);
  assert.equal(sink.requests.filter((r) => r.headers['x-case'] === 'propagate').length, 0);
  const seq = new ConditionSequence([compileCondition(PROPAGATE, SPAN_CONTEXT)], 'propagate');
  assert.throws(() => items().forEach((i) => seq.eval(i.item)), /failed to eval condition: Substring/);
  // Guard against a vacuous pass: the cases drop different sets, some all, some none.
  const sizes = new Set(ACTIVE_CASES.map((c) => engineSurvivors(c).length));
  assert.ok(sizes.size >= 4, `survivor counts vary: ${[...sizes].join(',')}`);
});

test('metric and datapoint conditions: the engine keeps exactly the points the Collector keeps', { skip: SKIP }, async () => {
  const res = await fetch(`http://127.0.0.1:${httpPort}/v1/metrics`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(otlpMetricsJson()) });
  assert.equal(res.status, 200, await res.text());
  const survivors = new Map<string, string[]>();
  for (const r of sink.requests.filter((q) => q.signal === 'metrics')) {
    const n = String(r.headers['x-case']);
    const msg = types.ExportMetricsServiceRequest.toObject(types.ExportMetricsServiceRequest.decode(r.body), { longs: String }) as {
      resourceMetrics?: { scopeMetrics?: { metrics?: Record<string, unknown>[] }[] }[];
    };
    const points = (msg.resourceMetrics ?? []).flatMap((rm) => (rm.scopeMetrics ?? []).flatMap((sm) => (sm.metrics ?? []).flatMap((m) => {
      const body = (m.gauge ?? m.sum ?? m.histogram ?? m.summary) as { dataPoints?: { attributes?: { key: string; value: { stringValue?: string } }[] }[] };
      return (body.dataPoints ?? []).map((dp) => `${String(m.name)}:${dp.attributes?.find((a) => a.key === 'id')?.value.stringValue ?? '?'}`);
    })));
    survivors.set(n, [...(survivors.get(n) ?? []), ...points]);
  }
  const mismatches: string[] = [];
  ACTIVE_METRIC_CASES.forEach((c, n) => {
    const collector = (survivors.get(`m${n}`) ?? []).sort();
    const engine = engineMetricSurvivors(c);
    if (JSON.stringify(collector) !== JSON.stringify(engine)) mismatches.push(`${JSON.stringify(c)}: collector kept [${collector.join(', ')}], engine kept [${engine.join(', ')}]`);
  });
  if (process.env.OTTL_CONFORMANCE_DEBUG) console.log([...survivors.entries()].map(([n, ids]) => `${n}: ${ids.sort().join(', ')}`).join('\n'));
  assert.deepEqual(mismatches, []);
  assert.ok(new Set(ACTIVE_METRIC_CASES.map((c) => engineMetricSurvivors(c).length)).size >= 4);
});

/** Conditions the Collector refuses at `validate` or accepts; the engine must agree (compile error or not). */
const VALIDITY: readonly string[] = [
  'attributes["a"] == 1e5', 'name == 1.', 'attributes["a"] == -1', 'attributes["a"] - 1 == 0', 'attributes["a"]-1 == 0',
  'IsMatch(name, 1)', 'IsMatch(name, "(")', 'IsMatch(name, "(?<n>x)")', 'IsMatch(name, "\\\\1")',
  'Substring(name, "a", 1) == ""', 'Substring(name, attributes["a"], 1) == ""',
  'TraceID(0x01) == trace_id', 'TraceID("0102") == trace_id', 'TraceID("0102030405060708090a0b0c0d0e0f10") == trace_id',
  'kind == SPAN_KIND_FOO', 'name.string == ""', 'kind.string == "Server"', 'attributes == nil', 'name["x"] == nil',
  'set(name, "x") == nil', 'set(name, "x")', 'Len(name)', '"a" == 1', 'IsMatch(target = name, pattern = "x")',
  'IsMatch(pattern = "x", name)', 'IsMatch(name, patern = "x")', 'Concat(name, "") == ""', 'Concat([name], "") == ""',
  'Int(attributes["a"]) == nil', 'Int("abc") == nil', 'Double(nil) == nil', 'String(1.5) == "1.5"', 'true', 'not true',
  'resource.attributes["a"] == nil', 'spanevent.name == "x"', 'IsRootSpan()', 'HasAttrOnDatapoint("a", "b")',
  'Hex(span_id) == ""', 'Split(name, ",")[0] == "x"', 'attributes["a"][attributes["b"]] == nil', 'attributes[0] == nil',
  'Substring(name, 0, 1, true) == ""', 'Substring(name, 0, 1, 1) == ""', '1 == 1 == 1', 'name == "a" or', '(name == "a"',
  'name == "\\q"', 'name == "\\u00e9"', 'name == 0xABC', 'ToLowerCase(1) == "1"', 'IsString(1)', 'IsString(nil)', 'Trim(name, 1) == ""',
  'Duration("1x") == nil', 'TraceID(attributes["a"]) == nil', 'Is Match(name, "x")', 'IsMatch (name, "x")', 'name == nil_x',
  'x == 9223372036854775807', 'attributes["a"] == 9223372036854775808', 'instrumentation_scope.name == "x"', 'scope.nam == "x"',
  'resource == nil', 'resource.attributes["a"]["b"][0] == 1', 'Len(attributes) > 1 and (kind == 1 or kind == SPAN_KIND_CLIENT)',
  '{"a": 1} == attributes', '[1, 2] == nil', 'ContainsValue([1, 2], 1)', 'ContainsValue(1, 1)', 'ContainsValue(name, 1)',
  'Int(1.5) == 1', 'Bool("yes")', 'Bool("true")', 'Unix(1) == nil', 'Nanoseconds(1) == 1', 'UnixNano(start_time) > 0',
  'end_time - start_time > Duration("1s")', 'attributes["a"] == attributes["b"] * -2', 'attributes["a"] == +1',
];

/**
 * Where contrib v0.140.1 (Jaeger) and v0.160.0 (the engine) disagree on validity (docs/ottl.md):
 * v0.140.1 lexes signed numbers and no `1.` float, takes only byte literals in TraceID, has no
 * Substring utf8_safe and no Bool, and converts literal arguments only at evaluation (so a literal of
 * the wrong type is not a compile error there).
 */
const V0_140_DIFFERENCES = new Set([
  'name == 1.', 'attributes["a"]-1 == 0', 'TraceID("0102030405060708090a0b0c0d0e0f10") == trace_id',
  'TraceID(attributes["a"]) == nil', 'Substring(name, 0, 1, true) == ""', 'Bool("true")',
  'IsMatch(name, 1)', 'Substring(name, "a", 1) == ""', 'Int("abc") == nil', 'ToLowerCase(1) == "1"', 'IsString(1)',
  'IsString(nil)', 'Trim(name, 1) == ""', 'ContainsValue(1, 1)', 'Nanoseconds(1) == 1',
]);

test('the engine refuses exactly the conditions the Collector refuses at validate', { skip: SKIP }, async () => {
  const lines = ['receivers:', '  otlp:', '    protocols:', '      http:', '        endpoint: 127.0.0.1:0', 'processors:'];
  VALIDITY.forEach((t, n) => lines.push(`  filter/${n}:`, '    traces:', '      span:', `        - ${JSON.stringify(t)}`));
  lines.push('exporters:', '  debug:', 'service:', '  pipelines:');
  VALIDITY.forEach((_, n) => lines.push(`    traces/${n}: {receivers: [otlp], processors: [filter/${n}], exporters: [debug]}`));
  const text = await validateWithReference(`${lines.join('\n')}\n`, REF?.bin);
  const refusedByCollector = new Set([...text.matchAll(/processors::filter\/(\d+):/g)].map((m) => Number(m[1])));
  assert.ok(refusedByCollector.size > 10 && refusedByCollector.size < VALIDITY.length - 10, text);
  const disagreements: string[] = [];
  VALIDITY.forEach((t, n) => {
    let engineError: string | undefined;
    try {
      compileCondition(t, SPAN_CONTEXT);
    } catch (err) {
      engineError = (err as Error).message;
    }
    const differs = REF?.version === 'v0.140.1' && V0_140_DIFFERENCES.has(t);
    if (refusedByCollector.has(n) !== (engineError !== undefined) !== differs) {
      disagreements.push(`${t}: ${REF?.version ?? ''} ${refusedByCollector.has(n) ? 'refuses' : 'accepts'}, engine ${engineError ? `refuses (${engineError})` : 'accepts'}`);
    }
  });
  assert.deepEqual(disagreements, []);
});
