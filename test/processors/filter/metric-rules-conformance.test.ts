import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  ConditionSequence, DATAPOINT_CONTEXT, METRIC_CONTEXT, METRIC_CONTEXTS, OttlRuntimeError, compileCondition, inferContext,
  type CompiledCondition, type ErrorMode, type OttlContext, type TelemetryItem,
} from '../../../src/ottl';
import { Batch, type ResourceBlock } from '../../../src/pdata/batch';
import { decodeToPlain, encodeFromOtlpJson, types } from '../../../src/pdata/codec';
import { parseRequest } from '../../../src/pdata/scan';
import { filterMetricsBlock, type MetricRules } from '../../../src/processors/filter/metric-rules';
import { wireResource } from '../../../src/processors/filter/wire-items';
import { freePorts } from '../../helpers/ports';
import { OTTL_SKIP_REASON, ReferenceCollector, ottlReference } from '../../helpers/reference-collector';
import { startService } from '../../helpers/service';
import { GrpcSink } from '../../helpers/sink';

// The same OBI-shaped metrics through the reference Collector's filter processor (metrics: metric /
// datapoint conditions, one processor and pipeline per case, each exporting with its case number in
// a header) and through filterMetricsBlock driven directly: the exported requests must be equal
// message for message. The reference is otelcol v0.160.0 when installed, else the Jaeger v2 binary
// (contrib v0.140.1), as in test/ottl/conformance.test.ts. A second test runs the same cases as
// filter processor configs in a running spansieve service (otlp receiver -> filter -> otlp exporter).

const REF = ottlReference();
const SKIP = REF ? false : OTTL_SKIP_REASON;

interface Case {
  readonly metric?: readonly string[];
  readonly datapoint?: readonly string[];
  /** `metric_conditions` (flat): each condition's context is inferred. */
  readonly metricConditions?: readonly string[];
  readonly errorMode: ErrorMode;
}

const ALL_CASES: readonly Case[] = [
  { errorMode: 'ignore', metric: ['name == "http.server.request.body.size"'] },
  { errorMode: 'ignore', metric: ['type == METRIC_DATA_TYPE_SUM'] },
  { errorMode: 'ignore', metric: ['HasAttrKeyOnDatapoint("db.system.name")'] },
  { errorMode: 'ignore', metric: ['HasAttrOnDatapoint("http.route", "/health")'] },
  { errorMode: 'ignore', metric: ['HasAttrOnDatapoint("http.response.status_code", "200")'] },
  { errorMode: 'ignore', metric: ['unit == "By" or description == "CPU time"'] },
  { errorMode: 'ignore', metric: ['instrumentation_scope.name == "runtime" and resource.attributes["service.name"] == "frontend"'] },
  { errorMode: 'ignore', metric: ['aggregation_temporality == AGGREGATION_TEMPORALITY_DELTA or is_monotonic == false'] },
  { errorMode: 'ignore', datapoint: ['attributes["http.route"] == "/health"'] },
  { errorMode: 'ignore', datapoint: ['attributes["http.response.status_code"] >= 500'] },
  { errorMode: 'ignore', datapoint: ['attributes["http.response.status_code"] == 200.0', 'attributes["server.port"] == "8080"'] },
  { errorMode: 'ignore', datapoint: ['value_double > 0.5', 'value_int == 0'] },
  { errorMode: 'ignore', datapoint: ['count > 10', 'sum < 0.01'] },
  { errorMode: 'ignore', datapoint: ['value_int == nil'] },
  { errorMode: 'ignore', datapoint: ['value_double == nil and count == nil', 'attributes["missing"] != nil'] },
  { errorMode: 'ignore', datapoint: ['flags == FLAG_NO_RECORDED_VALUE'] },
  { errorMode: 'ignore', datapoint: ['time_unix_nano - start_time_unix_nano > 30000000000'] },
  { errorMode: 'ignore', datapoint: ['IsMatch(attributes["http.route"], "^/api/")'] },
  { errorMode: 'ignore', datapoint: ['metric.name == "http.server.request.duration" and resource.attributes["service.instance.id"] == "host-a:100"'] },
  { errorMode: 'ignore', metric: ['resource.attributes["service.name"] == "frontend"'], datapoint: ['attributes["http.request.method"] == "POST"'] },
  { errorMode: 'ignore', metric: ['name == "process.cpu.time"'], datapoint: ['metric.type == METRIC_DATA_TYPE_HISTOGRAM'] },
  { errorMode: 'ignore', datapoint: ['attributes["http.route"][0] == "x"', 'attributes["server.port"] == 8080'] },
  { errorMode: 'silent', datapoint: ['attributes["http.route"][0] == "x"', 'attributes["server.port"] == 8080'] },
  { errorMode: 'ignore', metric: ['HasAttrKeyOnDatapoint("cpu.mode")'] },
  { errorMode: 'propagate', datapoint: ['attributes["http.route"] == "/health"'] },
  { errorMode: 'propagate', metric: ['name == "obi.empty"'] },
  { errorMode: 'propagate', datapoint: ['attributes["http.route"][0] == "x"'] },
  { errorMode: 'propagate', metric: ['HasAttrKeyOnDatapoint("cpu.mode")'] },
  { errorMode: 'ignore', metricConditions: ['scope.name == "runtime"'] },
  { errorMode: 'ignore', metricConditions: ['scope.version == "1.2.0" and resource.attributes["service.name"] == "frontend"', 'datapoint.attributes["http.route"] == "/health"'] },
  { errorMode: 'ignore', metricConditions: ['metric.type == METRIC_DATA_TYPE_NONE', 'datapoint.value_int == 0', 'resource.attributes["service.instance.id"] == 100'] },
  { errorMode: 'ignore', metricConditions: ['HasAttrKeyOnDatapoint("db.system.name") and metric.unit == "s"', 'scope.attributes["x"] == nil and scope.name == ""'] },
  { errorMode: 'propagate', metricConditions: ['scope.name == "runtime" and metric.name == "x"', 'datapoint.attributes["http.route"][0] == "x"'] },
];

// metric_conditions exist from contrib v0.149 on (otelcol v0.160.0 has them, Jaeger's v0.140.1 not).
const CASES = ALL_CASES.filter((c) => REF?.version === 'v0.160.0' || !c.metricConditions);

type Json = Record<string, unknown>;
const T0 = 1_700_000_000_000_000_000n;
const BOUNDS = [0, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10];

const attr = (key: string, v: string | number | bigint | boolean): Json => ({
  key,
  value: typeof v === 'string' ? { stringValue: v } : typeof v === 'bigint' ? { intValue: v.toString() } : typeof v === 'boolean' ? { boolValue: v } : { doubleValue: v },
});
const attrs = (o: Record<string, string | number | bigint | boolean>): Json[] => Object.entries(o).map(([k, v]) => attr(k, v));

function histogramPoint(a: Record<string, string | number | bigint | boolean>, count: number, sum: number, ageS = 60, flags?: number): Json {
  const buckets = BOUNDS.map((_, i) => (i === 3 ? Math.max(0, count - 1) : i === 6 && count > 0 ? 1 : 0));
  buckets.push(0);
  return {
    attributes: attrs(a), startTimeUnixNano: (T0 - BigInt(ageS) * 1_000_000_000n).toString(), timeUnixNano: T0.toString(),
    count: String(count), sum, bucketCounts: buckets.map(String), explicitBounds: BOUNDS, ...(flags !== undefined ? { flags } : {}),
  };
}

/** An OBI-like export: one ResourceMetrics per process, HTTP/DB histograms, a few runtime metrics and edge cases. */
function corpus(): Json {
  const resource = (name: string, instance: string | bigint): Json => ({
    attributes: attrs({
      'service.name': name, 'telemetry.sdk.language': 'go', 'telemetry.sdk.name': 'opentelemetry', 'telemetry.distro.name': 'opentelemetry-ebpf-instrumentation',
      'host.name': 'ip-10-0-1-5', 'os.type': 'linux', 'service.instance.id': instance,
    }),
  });
  const http = (kind: 'server' | 'client', points: Json[]): Json => ({
    name: `http.${kind}.request.duration`, unit: 's', description: `Duration of HTTP ${kind} requests.`,
    histogram: { aggregationTemporality: 2, dataPoints: points },
  });
  const common = { 'url.scheme': 'http', 'server.address': 'checkout', 'server.port': 8080n };
  return {
    resourceMetrics: [
      {
        resource: resource('checkout', 'host-a:100'),
        scopeMetrics: [
          {
            scope: { name: 'go.opentelemetry.io/obi', version: '1.2.0' },
            metrics: [
              http('server', [
                histogramPoint({ ...common, 'http.request.method': 'GET', 'http.route': '/health', 'http.response.status_code': 200n }, 40, 0.004),
                histogramPoint({ ...common, 'http.request.method': 'GET', 'http.route': '/api/items', 'http.response.status_code': 200n }, 7, 0.9),
                histogramPoint({ ...common, 'http.request.method': 'POST', 'http.route': '/api/cart', 'http.response.status_code': 503n }, 2, 0.3, 20),
              ]),
              { name: 'http.server.request.body.size', unit: 'By', histogram: { aggregationTemporality: 2, dataPoints: [
                histogramPoint({ ...common, 'http.request.method': 'POST', 'http.route': '/api/cart', 'http.response.status_code': 503n }, 2, 512),
              ] } },
              { name: 'db.client.operation.duration', unit: 's', histogram: { aggregationTemporality: 2, dataPoints: [
                histogramPoint({ 'db.system.name': 'postgresql', 'db.operation.name': 'SELECT', 'db.collection.name': 'items' }, 12, 0.05),
                histogramPoint({ 'db.system.name': 'postgresql', 'db.operation.name': 'INSERT' }, 1, 0.002, 60, 1),
              ] } },
            ],
          },
          {
            scope: { name: 'runtime' },
            metrics: [
              { name: 'process.cpu.time', unit: 's', description: 'CPU time', sum: { aggregationTemporality: 2, isMonotonic: true, dataPoints: [
                { attributes: attrs({ 'cpu.mode': 'user' }), startTimeUnixNano: (T0 - 60_000_000_000n).toString(), timeUnixNano: T0.toString(), asDouble: 1.25 },
                { attributes: attrs({ 'cpu.mode': 'system' }), startTimeUnixNano: (T0 - 60_000_000_000n).toString(), timeUnixNano: T0.toString(), asDouble: 0.25 },
              ] } },
              { name: 'process.threads', gauge: { dataPoints: [{ timeUnixNano: T0.toString(), asInt: '12' }, { attributes: attrs({ idle: true }), timeUnixNano: T0.toString(), asInt: '0' }] } },
              { name: 'obi.empty', description: 'a metric with no data' },
            ],
          },
        ],
      },
      {
        resource: resource('frontend', 100n),
        scopeMetrics: [
          {
            scope: { name: 'go.opentelemetry.io/obi', version: '1.2.0' },
            metrics: [
              http('server', [
                histogramPoint({ ...common, 'server.port': '8080', 'http.request.method': 'GET', 'http.route': '/health', 'http.response.status_code': '200' }, 3, 0.001),
                histogramPoint({ ...common, 'http.request.method': 'POST', 'http.route': '/api/cart', 'http.response.status_code': 201.0 }, 11, 2.5, 45),
              ]),
              http('client', [
                histogramPoint({ 'http.request.method': 'GET', 'server.address': 'checkout', 'server.port': 8080n, 'http.response.status_code': 500n }, 1, 0.2),
              ]),
            ],
          },
          {
            scope: { name: 'runtime' },
            metrics: [
              { name: 'requests.delta', sum: { aggregationTemporality: 1, isMonotonic: false, dataPoints: [{ attributes: attrs({ 'http.route': '/health' }), timeUnixNano: T0.toString(), asInt: '5' }] } },
              { name: 'latency.summary', summary: { dataPoints: [{ attributes: attrs({ 'http.route': '/api/items' }), timeUnixNano: T0.toString(), count: '4', sum: 0.008, quantileValues: [{ quantile: 0.5, value: 0.002 }] }] } },
              { name: 'latency.exp', exponentialHistogram: { aggregationTemporality: 1, dataPoints: [{ attributes: attrs({ 'http.route': '/api/items' }), timeUnixNano: T0.toString(), count: '20', sum: 4, scale: 2, positive: { offset: 1, bucketCounts: ['20'] } }] } },
            ],
          },
        ],
      },
    ],
  };
}

function collectorConfig(ports: { ignore: number; propagate: number; sink: number }): string {
  const lines = [
    'receivers:',
    '  otlp:', '    protocols:', '      http:', `        endpoint: 127.0.0.1:${ports.ignore}`,
    '  otlp/propagate:', '    protocols:', '      http:', `        endpoint: 127.0.0.1:${ports.propagate}`,
    'processors:',
  ];
  CASES.forEach((c, n) => {
    lines.push(`  filter/${n}:`, `    error_mode: ${c.errorMode}`);
    if (c.metricConditions) {
      lines.push('    metric_conditions:', ...c.metricConditions.map((t) => `      - ${JSON.stringify(t)}`));
      return;
    }
    lines.push('    metrics:');
    if (c.metric) lines.push('      metric:', ...c.metric.map((t) => `        - ${JSON.stringify(t)}`));
    if (c.datapoint) lines.push('      datapoint:', ...c.datapoint.map((t) => `        - ${JSON.stringify(t)}`));
  });
  lines.push('exporters:');
  CASES.forEach((_, n) => lines.push(
    `  ${REF?.otlpExporter ?? 'otlp'}/${n}:`, `    endpoint: 127.0.0.1:${ports.sink}`, '    tls:', '      insecure: true',
    '    sending_queue:', '      enabled: false', '    retry_on_failure:', '      enabled: false', '    headers:', `      x-case: "${n}"`,
  ));
  lines.push('service:', '  telemetry:', '    logs:', '      level: error', '    metrics:', '      level: none', '  pipelines:');
  CASES.forEach((c, n) => lines.push(
    `    metrics/${n}:`, `      receivers: [${c.errorMode === 'propagate' ? 'otlp/propagate' : 'otlp'}]`, `      processors: [filter/${n}]`, `      exporters: [${REF?.otlpExporter ?? 'otlp'}/${n}]`,
  ));
  return `${lines.join('\n')}\n`;
}

/** A case as a filter processor config (the Collector's keys, which spansieve reads too). */
function filterConfigOf(c: Case): Json {
  if (c.metricConditions) return { error_mode: c.errorMode, metric_conditions: c.metricConditions };
  return { error_mode: c.errorMode, metrics: { ...(c.metric ? { metric: c.metric } : {}), ...(c.datapoint ? { datapoint: c.datapoint } : {}) } };
}

/** The rules for a case, plus its resource-context conditions (decided per resource, before the block is read). */
function rulesOf(c: Case): MetricRules & { resource?: ConditionSequence<TelemetryItem> } {
  if (c.metricConditions) {
    const byContext = new Map<string, CompiledCondition<TelemetryItem>[]>();
    for (const t of c.metricConditions) {
      const name = inferContext(t, METRIC_CONTEXTS);
      byContext.set(name, [...(byContext.get(name) ?? []), compileCondition(t, METRIC_CONTEXTS[name] as OttlContext<TelemetryItem>, { mode: 'explicit' })]);
    }
    const seq = (name: string): { [k: string]: ConditionSequence<TelemetryItem> } => {
      const conditions = byContext.get(name);
      return conditions ? { [name]: new ConditionSequence(conditions, c.errorMode) } : {};
    };
    return { ...seq('resource'), ...seq('scope'), ...seq('metric'), ...seq('datapoint') };
  }
  return {
    ...(c.metric ? { metric: new ConditionSequence(c.metric.map((t) => compileCondition(t, METRIC_CONTEXT)), c.errorMode) } : {}),
    ...(c.datapoint ? { datapoint: new ConditionSequence(c.datapoint.map((t) => compileCondition(t, DATAPOINT_CONTEXT)), c.errorMode) } : {}),
  };
}

/** What spansieve would export for the request: undefined when it fails the batch (propagate), null when nothing is left. */
function spansieveExport(request: Uint8Array, c: Case): Json | null | undefined {
  const { batch } = parseRequest('metrics', request);
  const rules = rulesOf(c);
  const kept: ResourceBlock[] = [];
  try {
    for (const block of batch.resources) {
      const resource = wireResource(block.bytes);
      if (rules.resource?.eval({ resource })) continue;
      const out = filterMetricsBlock(block.bytes, resource, rules);
      if (out === undefined) kept.push(block);
      else if (out !== null) kept.push({ ...block, bytes: out.bytes, itemCount: out.itemCount });
    }
  } catch (err) {
    if (err instanceof OttlRuntimeError) return undefined;
    throw err;
  }
  if (kept.length === 0) return null;
  const filtered = new Batch('metrics', kept);
  const plain = decodeToPlain(types.ExportMetricsServiceRequest, filtered.toRequestBytes());
  // The item counts agree with the points actually left.
  assert.equal(filtered.itemCount, countPoints(plain));
  return plain;
}

function countPoints(plain: Json): number {
  return ((plain.resourceMetrics ?? []) as Json[]).reduce((n, rm) => n + ((rm.scopeMetrics ?? []) as Json[]).reduce((k, sm) => k + ((sm.metrics ?? []) as Json[]).reduce((j, m) => {
    const body = (m.gauge ?? m.sum ?? m.histogram ?? m.exponentialHistogram ?? m.summary) as { dataPoints?: unknown[] } | undefined;
    return j + (body?.dataPoints?.length ?? 0);
  }, 0), 0), 0);
}

/** pdata writes an ExponentialHistogram's empty `negative` buckets; an empty message and none are the same data. */
function normalize(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(normalize);
  if (v === null || typeof v !== 'object') return v;
  const out: Json = {};
  for (const [k, x] of Object.entries(v as Json)) {
    const n = normalize(x);
    if (n !== null && typeof n === 'object' && !Array.isArray(n) && Object.keys(n).length === 0) continue;
    out[k] = n;
  }
  return out;
}

/** The path of the first difference between two plain values, undefined when equal. */
function firstDifference(a: unknown, b: unknown, at: string): string | undefined {
  if (a === b) return undefined;
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return `${at}: ${JSON.stringify(a)} vs ${JSON.stringify(b)}`;
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  for (const k of keys) {
    const d = firstDifference((a as Json)[k], (b as Json)[k], `${at}.${k}`);
    if (d !== undefined) return d;
  }
  return undefined;
}

/** What each case's exporter received, normalized, by case number. */
function exportsByCase(from: GrpcSink): Map<string, Json[]> {
  const exported = new Map<string, Json[]>();
  for (const r of from.requests.filter((q) => q.signal === 'metrics')) {
    const n = String(r.headers['x-case']);
    exported.set(n, [...(exported.get(n) ?? []), normalize(decodeToPlain(types.ExportMetricsServiceRequest, r.body)) as Json]);
  }
  return exported;
}

/** Filled by the first test: the Collector's exports per case and its receivers' answers. */
const collectorExports = new Map<string, Json[]>();
const collectorStatus = { ignore: 0, propagate: 0 };

const sink = new GrpcSink();
let collector: ReferenceCollector | undefined;
const ports = { ignore: 0, propagate: 0, sink: 0 };

before(async () => {
  if (!REF) return;
  await sink.start();
  [ports.ignore, ports.propagate] = await freePorts(2);
  ports.sink = sink.port;
  collector = await ReferenceCollector.start(collectorConfig(ports), { bin: REF.bin, httpPorts: [ports.ignore, ports.propagate] });
});

after(async () => {
  await collector?.stop();
  await sink.stop();
});

test('filterMetricsBlock exports exactly what the Collector filter processor exports, case by case', { skip: SKIP }, async () => {
  const request = Buffer.from(encodeFromOtlpJson(types.ExportMetricsServiceRequest, corpus()));
  // With the sending queue off, exports are synchronous: when the POST returns every pipeline has exported.
  const ok = await fetch(`http://127.0.0.1:${ports.ignore}/v1/metrics`, { method: 'POST', headers: { 'content-type': 'application/x-protobuf' }, body: request });
  assert.equal(ok.status, 200, await ok.text());
  const propagated = await fetch(`http://127.0.0.1:${ports.propagate}/v1/metrics`, { method: 'POST', headers: { 'content-type': 'application/x-protobuf' }, body: request });
  await propagated.arrayBuffer();
  collectorStatus.ignore = ok.status;
  collectorStatus.propagate = propagated.status;
  const exported = exportsByCase(sink);
  for (const [n, e] of exported) collectorExports.set(n, e);
  const mismatches: string[] = [];
  const outcomes = new Set<string>();
  let failed = 0;
  CASES.forEach((c, n) => {
    const collector = exported.get(String(n)) ?? [];
    const mine = spansieveExport(request, c);
    if (mine === undefined) failed++;
    outcomes.add(mine === undefined ? 'failed' : mine === null ? 'empty' : String(countPoints(mine)));
    // The Collector exports nothing for a failed batch (propagate) or when nothing is left.
    const expected = mine === undefined || mine === null ? [] : [normalize(mine)];
    const where = firstDifference(collector, expected, '');
    if (where !== undefined) {
      mismatches.push(`case ${n} ${JSON.stringify(c)}: the Collector exported ${collector.map(countPoints).join('+') || 'nothing'} points, spansieve ${mine === undefined ? 'failed the batch' : mine === null ? 'nothing' : countPoints(mine)}; first difference at ${where}`);
    }
  });
  if (process.env.OTTL_CONFORMANCE_DEBUG) console.log(CASES.map((_, n) => `${n}: ${(exported.get(String(n)) ?? []).map(countPoints).join('+') || '-'}`).join('\n'));
  assert.deepEqual(mismatches, []);
  // The propagate receiver answers with an error when one of its pipelines fails the batch.
  assert.equal(propagated.status !== 200, failed > 0, `propagate receiver answered ${propagated.status}`);
  // Guard against a vacuous pass: the cases leave many different results, failures included.
  assert.ok(failed >= 2 && outcomes.size >= 8, `outcomes: ${[...outcomes].join(', ')}`);
});

test('a running spansieve service exports for each filter config exactly what the Collector exports', { skip: SKIP }, async (t) => {
  if (collectorStatus.ignore === 0) return t.skip('the Collector test did not run');
  const ownSink = new GrpcSink();
  await ownSink.start();
  const [ignorePort, propagatePort] = await freePorts(2);
  const service = await startService({
    receivers: {
      otlp: { protocols: { http: { endpoint: `127.0.0.1:${ignorePort}` } } },
      'otlp/propagate': { protocols: { http: { endpoint: `127.0.0.1:${propagatePort}` } } },
    },
    processors: Object.fromEntries(CASES.map((c, n) => [`filter/${n}`, filterConfigOf(c)])),
    // Without the queue each export happens in the request: when the POST answers, the sink has it.
    exporters: Object.fromEntries(CASES.map((_, n) => [`otlp/${n}`, {
      endpoint: `127.0.0.1:${ownSink.port}`, tls: { insecure: true }, compression: 'none', headers: { 'x-case': String(n) },
      sending_queue: { enabled: false }, retry_on_failure: { enabled: false },
    }])),
    service: { pipelines: Object.fromEntries(CASES.map((c, n) => [`metrics/${n}`, {
      receivers: [c.errorMode === 'propagate' ? 'otlp/propagate' : 'otlp'], processors: [`filter/${n}`], exporters: [`otlp/${n}`],
    }])) },
  });
  try {
    const request = Buffer.from(encodeFromOtlpJson(types.ExportMetricsServiceRequest, corpus()));
    const ok = await fetch(`http://127.0.0.1:${ignorePort}/v1/metrics`, { method: 'POST', headers: { 'content-type': 'application/x-protobuf' }, body: request });
    assert.equal(ok.status, 200, await ok.text());
    const propagated = await fetch(`http://127.0.0.1:${propagatePort}/v1/metrics`, { method: 'POST', headers: { 'content-type': 'application/x-protobuf' }, body: request });
    await propagated.arrayBuffer();
    assert.equal(propagated.status !== 200, collectorStatus.propagate !== 200, `propagate receiver: spansieve ${propagated.status}, the Collector ${collectorStatus.propagate}`);
    const ours = exportsByCase(ownSink);
    const mismatches: string[] = [];
    CASES.forEach((c, n) => {
      const where = firstDifference(collectorExports.get(String(n)) ?? [], ours.get(String(n)) ?? [], '');
      if (where !== undefined) mismatches.push(`case ${n} ${JSON.stringify(c)}: first difference at ${where}`);
    });
    assert.deepEqual(mismatches, []);
    // Not vacuous: most cases export something, and not all the same.
    const outcomes = new Set([...ours.values()].map((e) => JSON.stringify(e)));
    assert.ok(ours.size >= CASES.length / 2 && outcomes.size >= 8, `cases exported: ${ours.size}, distinct: ${outcomes.size}`);
  } finally {
    await service.shutdown();
    await ownSink.stop();
  }
});
