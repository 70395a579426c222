import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as YAML from 'yaml';
import { parseSpanMetricsConfig } from '../../src/connectors/spanmetrics/config';
import { SpanMetricsConnector } from '../../src/connectors/spanmetrics/spanmetrics-connector';
import { PrometheusExporter, parsePrometheusExporterConfig } from '../../src/exporters/prometheus/prometheus-exporter';
import { types } from '../../src/pdata/codec';
import { parseRequest } from '../../src/pdata/scan';
import { Capture, parseWith, testSettings } from '../helpers/components';
import { Jaeger } from '../helpers/jaeger';
import { freePort, waitFor } from '../helpers/ports';
import { OTELCOL_BIN, OTELCOL_SKIP, ReferenceCollector } from '../helpers/reference-collector';
import { HttpSink } from '../helpers/sink';
import { bool, dbl, int, str } from '../helpers/otlp-json';

// spansieve's spanmetrics connector against the real one: the same spans go through the Jaeger v2
// binary (its contrib spanmetrics connector, Collector v0.140) and through spansieve's connector
// with the same options; the series (names, attributes with their types, values, buckets, the
// overflow series, exemplars with their trace and span ids) must be identical. Jaeger's metrics
// leave through otlphttp to a capture server here, and through its prometheus exporter, whose
// OpenMetrics exposition (exemplars on buckets and counters) is compared with spansieve's.

const hexId = (n: number) => randomBytes(n);

const NOW_NS = BigInt(Date.now()) * 1_000_000n;

function span(name: string, o: { kind?: number; status?: number; ms?: number; attributes?: unknown[]; events?: unknown[] } = {}) {
  const start = NOW_NS - 10_000_000_000n;
  return {
    traceId: hexId(16),
    spanId: hexId(8),
    name,
    kind: o.kind ?? 2,
    startTimeUnixNano: start.toString(),
    endTimeUnixNano: (start + BigInt(Math.round((o.ms ?? 1.5) * 1e6))).toString(),
    attributes: o.attributes ?? [],
    events: o.events ?? [],
    status: { code: o.status ?? 0 },
  };
}

const event = (attributes: unknown[]) => ({ timeUnixNano: NOW_NS.toString(), name: 'exception', attributes });

function resource(attributes: unknown[], scopes: Array<{ scope?: { name?: string; version?: string }; spans: unknown[] }>) {
  return { resource: { attributes }, scopeSpans: scopes.map((s) => ({ scope: s.scope ?? {}, spans: s.spans })) };
}

const obiResource = (service: string, instance: string, extra: unknown[] = []) => [
  str('service.name', service),
  str('service.instance.id', instance),
  str('telemetry.sdk.language', 'go'),
  str('host.name', 'edge-1'),
  ...extra,
];

/** OBI-shaped and edge-case spans: typed dimension values, events, scopes, many span names (overflow), errors. */
function corpus() {
  const routes = ['/users/*', '/orders/*', '/health', '/metrics', '/login', '/cart'];
  const backendSpans = routes.flatMap((route, i) =>
    [0, 1, 2].map((j) =>
      span(`GET ${route}`, {
        ms: 0.5 + i * 7.3 + j * 3.1,
        status: j === 2 && i % 2 === 0 ? 2 : 0,
        attributes: [str('http.request.method', 'GET'), int('http.response.status_code', j === 2 ? 500 : 200), str('http.route', route), dbl('x.ratio', i === 0 ? 1e21 : i === 1 ? 5 : 0.25), bool('x.flag', j === 1)],
        events: j === 2 ? [event([str('exception.type', 'Timeout'), str('exception.message', 'deadline')]), event([str('exception.type', 'Refused')])] : [],
      }),
    ),
  );
  return [
    resource(obiResource('backend', 'web-1:4242', [dbl('res.weight', 2), int('res.shard', 7)]), [
      { scope: { name: 'go.opentelemetry.io/obi', version: 'v0.3.0' }, spans: backendSpans.slice(0, 9) },
      { scope: { name: 'other.scope' }, spans: backendSpans.slice(9) },
    ]),
    resource(obiResource('envoy', 'edge-1:900'), [
      {
        spans: [
          span('egress', { kind: 3, ms: 12, attributes: [str('http.request.method', 'POST'), int('x.ratio', 5)] }),
          span('egress', { kind: 3, ms: 2500, status: 1, attributes: [str('http.request.method', 'POST'), { key: 'x.list', value: { arrayValue: { values: [{ intValue: 1 }, { doubleValue: 3 }, { kvlistValue: { values: [{ key: 'z', value: { doubleValue: 1e21 } }, { key: 'b', value: { boolValue: true } }] } }] } } }] }),
          span('ingress', { kind: 2, ms: 60_000, events: [event([str('exception.type', 'Timeout')])] }),
        ],
      },
    ]),
    // The same service on another instance: its own resource (metrics per resource).
    // More spans in one series than max_per_data_point keeps as exemplars.
    resource(obiResource('backend', 'web-2:4242'), [
      { spans: [span('GET /users/*', { ms: 3 }), span('GET /users/*', { ms: 4, attributes: [dbl('x.ratio', -0)] }), ...[1, 2, 3, 4, 5, 6, 7].map((n) => span('GET /users/*', { ms: n * 0.9 }))] },
    ]),
    // No service.name: skipped by both. A non-string one reads as "".
    resource([str('service.instance.id', 'anon:1')], [{ spans: [span('lost')] }]),
    resource([int('service.name', 42), str('service.instance.id', 'int:1')], [{ spans: [span('numbered')] }]),
  ];
}

/** Connector configs run side by side (one Jaeger, one pipeline each). */
const CONFIGS: Record<string, Record<string, unknown>> = {
  delta: {
    aggregation_temporality: 'AGGREGATION_TEMPORALITY_DELTA',
    dimensions: [{ name: 'http.request.method', default: 'NONE' }, { name: 'x.ratio' }, { name: 'res.weight' }, { name: 'x.list' }],
    calls_dimensions: [{ name: 'x.flag' }],
    histogram: { dimensions: [{ name: 'http.response.status_code' }], explicit: { buckets: ['1ms', '5ms', '10ms', '50ms', '1s'] } },
    exemplars: { enabled: true, max_per_data_point: 2 },
    aggregation_cardinality_limit: 7,
    events: { enabled: true, dimensions: [{ name: 'exception.type' }, { name: 'res.shard' }] },
    include_instrumentation_scope: ['go.opentelemetry.io/obi'],
  },
  cumulative: {
    dimensions: [{ name: 'http.route' }, { name: 'x.ratio' }],
    exclude_dimensions: ['status.code'],
    resource_metrics_key_attributes: ['service.name'],
    histogram: { unit: 's' },
    namespace: 'obi.red',
    aggregation_cardinality_limit: 4,
    exemplars: { enabled: true },
  },
};

interface Decoded {
  resourceMetrics?: Array<{
    resource?: { attributes?: unknown[] };
    scopeMetrics?: Array<{ scope?: { name?: string }; metrics?: DecodedMetric[] }>;
  }>;
}
interface DecodedPoint {
  attributes?: Array<{ key: string; value: unknown }>;
  asInt?: string;
  count?: string;
  sum?: number;
  bucketCounts?: string[];
  explicitBounds?: number[];
  exemplars?: Array<{ asDouble?: number; traceId?: string; spanId?: string }>;
  scale?: number;
  zeroCount?: string;
  positive?: { offset?: number; bucketCounts?: string[] };
  negative?: { offset?: number; bucketCounts?: string[] };
  min?: number;
  max?: number;
}
interface DecodedMetric {
  name: string;
  unit?: string;
  sum?: { dataPoints?: DecodedPoint[]; aggregationTemporality?: number; isMonotonic?: boolean };
  histogram?: { dataPoints?: DecodedPoint[]; aggregationTemporality?: number };
  exponentialHistogram?: { dataPoints?: DecodedPoint[]; aggregationTemporality?: number };
}

/** An exponential histogram point's values, absent fields as their defaults (both sides may leave zeros out). */
const exponentialOf = (p: DecodedPoint) => ({
  count: p.count ?? '0',
  sum: p.sum ?? 0,
  scale: p.scale ?? 0,
  zeroCount: p.zeroCount ?? '0',
  positive: { offset: p.positive?.offset ?? 0, counts: p.positive?.bucketCounts ?? [] },
  negative: { offset: p.negative?.offset ?? 0, counts: p.negative?.bucketCounts ?? [] },
  min: p.min,
  max: p.max,
});

const sortByKey = <T extends { key: string }>(list: readonly T[] | undefined) => [...(list ?? [])].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));

/** Series by a stable text key: resource + metric + point attributes -> the point without timestamps. */
function seriesOf(requests: Decoded[]): Map<string, unknown> {
  const out = new Map<string, unknown>();
  for (const request of requests) {
    for (const rm of request.resourceMetrics ?? []) {
      const res = JSON.stringify(sortByKey(rm.resource?.attributes as Array<{ key: string }>));
      for (const sm of rm.scopeMetrics ?? []) {
        for (const m of sm.metrics ?? []) {
          const meta = { scope: sm.scope?.name, unit: m.unit ?? '', temporality: (m.sum ?? m.histogram ?? m.exponentialHistogram)?.aggregationTemporality, monotonic: m.sum?.isMonotonic };
          for (const p of m.sum?.dataPoints ?? m.histogram?.dataPoints ?? m.exponentialHistogram?.dataPoints ?? []) {
            const key = `${res} ${m.name} ${JSON.stringify(sortByKey(p.attributes))}`;
            const value = m.sum
              ? { ...meta, value: p.asInt }
              : m.exponentialHistogram
                ? { ...meta, exponential: exponentialOf(p) }
                : { ...meta, count: p.count, sum: p.sum, buckets: p.bucketCounts, bounds: p.explicitBounds };
            // Later flushes of a cumulative series replace earlier ones; exemplars come with the first flush after the spans.
            const previous = out.get(key) as { exemplars?: unknown } | undefined;
            const exemplars = p.exemplars?.map((e) => [e.traceId, e.spanId, e.asDouble]);
            out.set(key, { ...value, exemplars: exemplars ?? previous?.exemplars });
          }
        }
      }
    }
  }
  return out;
}

function decode(body: Buffer): Decoded {
  const type = types.ExportMetricsServiceRequest;
  return type.toObject(type.decode(body), { longs: String, bytes: String, defaults: false });
}

describe("spanmetrics conformance with the Jaeger v2 binary's spanmetrics connector", { timeout: 120_000 }, () => {
  // Each config's otlphttp exporter posts under its own path prefix: /<name>/v1/metrics.
  const sink = new HttpSink();
  const received = (name: string): Decoded[] => sink.requests.filter((r) => r.path?.split('/')[1] === name).map((r) => decode(r.body));
  let jaeger: Jaeger;
  const promPorts: Record<string, number> = {};
  let dir: string;

  before(async () => {
    await sink.start();
    const port = sink.port;
    const pipelines: Record<string, unknown> = {};
    const exporters: Record<string, unknown> = { jaeger_storage_exporter: { trace_storage: 'memstore' } };
    const connectors: Record<string, unknown> = {};
    for (const [name, config] of Object.entries(CONFIGS)) {
      promPorts[name] = await freePort();
      connectors[`spanmetrics/${name}`] = { ...config, metrics_flush_interval: '500ms' };
      exporters[`otlphttp/${name}`] = { endpoint: `http://127.0.0.1:${port}/${name}`, compression: 'none', retry_on_failure: { enabled: false } };
      exporters[`prometheus/${name}`] = { endpoint: `127.0.0.1:${promPorts[name]}`, enable_open_metrics: true };
      pipelines[`metrics/${name}`] = { receivers: [`spanmetrics/${name}`], exporters: [`otlphttp/${name}`, `prometheus/${name}`] };
    }
    const doc = {
      service: {
        extensions: ['jaeger_storage', 'jaeger_query'],
        pipelines: { traces: { receivers: ['otlp'], exporters: ['jaeger_storage_exporter', ...Object.keys(connectors)] }, ...pipelines },
        telemetry: { metrics: { level: 'none' }, logs: { level: 'warn' } },
      },
      extensions: {
        jaeger_query: { enable_tracing: false, storage: { traces: 'memstore' } },
        jaeger_storage: { backends: { memstore: { memory: { max_traces: 1000 } } } },
      },
      receivers: { otlp: { protocols: {} } },
      exporters,
      connectors,
    };
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spansieve-spanmetrics-conf-'));
    fs.writeFileSync(path.join(dir, 'jaeger.yaml'), YAML.stringify(doc));
    jaeger = await Jaeger.startFromFile(path.join(dir, 'jaeger.yaml'));
  });

  after(async () => {
    await jaeger?.stop();
    await sink.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test('same spans, same series: attributes and their types, counts, buckets, overflow, events, exemplars', async () => {
    const body = Buffer.from(types.ExportTraceServiceRequest.encode(types.ExportTraceServiceRequest.fromObject({ resourceSpans: corpus() })).finish());
    // One request: Jaeger's connector aggregates it in one go, inside one flush interval.
    const res = await fetch(`http://127.0.0.1:${jaeger.otlpHttpPort}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/x-protobuf' }, body });
    assert.equal(res.status, 200, await res.text());

    for (const [name, config] of Object.entries(CONFIGS)) {
      const capture = new Capture();
      const ours = new SpanMetricsConnector(testSettings(name), parseWith(parseSpanMetricsConfig, config), capture);
      await ours.consume(parseRequest('traces', body).batch);
      await ours.flush();
      await ours.flush(); // a new cumulative calls series is first sent as 0
      const expected = seriesOf(capture.batches.map((b) => ({ resourceMetrics: b.resources.map((r) => types.ResourceMetrics.toObject(types.ResourceMetrics.decode(r.bytes), { longs: String, bytes: String, defaults: false })) })));
      const totalCalls = (series: Map<string, unknown>) =>
        [...series].filter(([k]) => / [^ ]*calls /.test(k)).reduce((n, [, v]) => n + Number((v as { value?: string }).value ?? 0), 0);
      await waitFor(`Jaeger's ${name} spanmetrics to flush every span`, () => totalCalls(seriesOf(received(name))) >= totalCalls(expected), 30_000, 100);
      const actual = seriesOf(received(name));
      assert.ok(expected.size > 10, `${name}: the corpus makes enough series (${expected.size})`);
      assert.deepEqual([...actual.keys()].sort(), [...expected.keys()].sort(), `${name}: the same series`);
      for (const [key, value] of expected) assert.deepEqual(actual.get(key), value, `${name}: ${key}`);
      assert.ok([...expected.keys()].some((k) => k.includes('otel.metric.overflow')), `${name}: the corpus reaches the cardinality limit`);
      assert.ok([...expected.values()].some((v) => (v as { exemplars?: unknown[] }).exemplars?.length), `${name}: exemplars are compared`);

      if (name !== 'delta') continue;
      // The same flush through both prometheus exporters (delta: one flush holds everything, then nothing comes).
      const exporter = new PrometheusExporter(testSettings('prometheus'), parseWith(parsePrometheusExporterConfig, { enable_open_metrics: true }));
      for (const batch of capture.batches) await exporter.consume(batch);
      const ourLines = normalize((await exporter.render(true)).body);
      const scrape = await fetch(`http://127.0.0.1:${promPorts[name]}/metrics`, { headers: { accept: 'application/openmetrics-text;version=1.0.0' } });
      const theirLines = normalize(await scrape.text());
      assert.deepEqual([...theirLines.keys()].sort(), [...ourLines.keys()].sort(), 'the same Prometheus series');
      for (const [series, rest] of ourLines) {
        assert.equal(valueOf(theirLines.get(series)!), valueOf(rest), series);
        assert.equal(exemplarsOf(theirLines.get(series)!), exemplarsOf(rest), `exemplar of ${series}`);
      }
      assert.ok([...ourLines.values()].some((rest) => exemplarsOf(rest) !== ''), 'exemplars are shown');
    }
  });
});

/** OpenMetrics sample lines by series (labels sorted), keeping what follows the series: value and exemplar. */
function normalize(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line.trim() === '' || !line.startsWith('traces_span_metrics')) continue;
    const m = /^([^{ ]+)(?:\{(.*?)\})? (.*)$/.exec(line);
    if (!m) continue;
    // An empty label is no label to Prometheus (the Collector writes otel_scope_version="" and the like).
    const labels = ((m[2] ?? '').match(/[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"/g) ?? [])
      .filter((l) => !l.endsWith('=""'))
      .map((l) => (l.startsWith('le="') && l !== 'le="+Inf"' ? `le="${Number(l.slice(4, -1))}"` : l));
    out.set(`${m[1]}{${labels.sort().join(',')}}`, m[3]!);
  }
  return out;
}

function valueOf(rest: string): number {
  return Number(rest.split(' ')[0]);
}

/** The exemplar part of a sample line, labels sorted, without its timestamp. */
function exemplarsOf(rest: string): string {
  const [, exemplar] = rest.split(' # ');
  if (!exemplar) return '';
  const m = /^\{(.*?)\} (\S+)/.exec(exemplar);
  if (!m) return exemplar;
  return `{${m[1]!.split(',').sort().join(',')}} ${Number(m[2])}`;
}

// Glob dimensions exist from Collector v0.160 on, which Jaeger v2 does not bundle: checked against
// the reference Collector build (v0.160; collector.instance.id, which it adds by default there, is
// excluded so the series are comparable).
describe('spanmetrics glob dimensions against the reference Collector (v0.160)', { timeout: 120_000 }, () => {
  const config = {
    dimensions: [{ name: 'http.request.method' }, { glob: 'x.*' }, { glob: 'res.**' }],
    exclude_dimensions: ['collector.instance.id'],
    aggregation_temporality: 'AGGREGATION_TEMPORALITY_DELTA',
  };

  test('the same series, with the keys the globs select from span and resource attributes', { skip: OTELCOL_SKIP }, async () => {
    const body = Buffer.from(types.ExportTraceServiceRequest.encode(types.ExportTraceServiceRequest.fromObject({ resourceSpans: corpus() })).finish());
    const capture = new Capture();
    const ours = new SpanMetricsConnector(testSettings('glob'), parseWith(parseSpanMetricsConfig, config), capture);
    await ours.consume(parseRequest('traces', body).batch);
    await ours.flush();
    const expected = seriesOf(capture.batches.map((b) => ({ resourceMetrics: b.resources.map((r) => types.ResourceMetrics.toObject(types.ResourceMetrics.decode(r.bytes), { longs: String, bytes: String, defaults: false })) })));
    const actual = await referenceSeries(OTELCOL_BIN, config, body, expected.size);
    assert.deepEqual([...actual.keys()].sort(), [...expected.keys()].sort());
    for (const [key, value] of expected) assert.deepEqual(actual.get(key), value, key);
    assert.ok([...expected.keys()].some((k) => k.includes('"res.shard"') && k.includes('"x.flag"')), 'globs select span and resource attributes');
  });
});

/**
 * Runs `config` as the reference Collector's span_metrics connector over `body` (or each of
 * `bodies` in turn, the next once `wanted[i]` holds for what was flushed); its series.
 */
async function referenceSeries(
  bin: string,
  config: Record<string, unknown>,
  body: Buffer | readonly Buffer[],
  wanted: number | ReadonlyArray<(series: Map<string, unknown>) => boolean>,
): Promise<Map<string, unknown>> {
  const bodies = Buffer.isBuffer(body) ? [body] : body;
  const waits = typeof wanted === 'number' ? [(series: Map<string, unknown>) => series.size >= wanted] : wanted;
  const sink = new HttpSink();
  await sink.start();
  const received = (): Decoded[] => sink.requests.map((r) => decode(r.body));
  const otlpPort = await freePort();
  const doc = {
    receivers: { otlp: { protocols: { http: { endpoint: `127.0.0.1:${otlpPort}` } } } },
    connectors: { span_metrics: { ...config, metrics_flush_interval: '500ms' } },
    exporters: { otlp_http: { endpoint: `http://127.0.0.1:${sink.port}`, compression: 'none', retry_on_failure: { enabled: false } } },
    service: {
      pipelines: { traces: { receivers: ['otlp'], exporters: ['span_metrics'] }, metrics: { receivers: ['span_metrics'], exporters: ['otlp_http'] } },
      telemetry: { metrics: { level: 'none' }, logs: { level: 'warn' } },
    },
  };
  let collector: ReferenceCollector | undefined;
  try {
    collector = await ReferenceCollector.start(doc, { bin, httpPorts: [otlpPort], timeoutMs: 60_000 });
    for (const [i, b] of bodies.entries()) {
      const res = await fetch(`http://127.0.0.1:${otlpPort}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/x-protobuf' }, body: b });
      assert.equal(res.status, 200, await res.text());
      await waitFor(`the reference Collector's flush after request ${i + 1}`, () => waits[i]!(seriesOf(received())), 30_000, 100);
    }
    return seriesOf(received());
  } finally {
    await collector?.stop();
    await sink.stop();
  }
}

// Collector v0.160.0 weights each span by its tracestate's adjusted count (`ot=th:`), whatever the
// option says; enable_metrics_sampling_method adds sampling.method. Only thresholds with whole
// adjusted counts are sent (a fraction is rounded at random on both sides).
describe('spanmetrics adjusted counts and enable_metrics_sampling_method against the reference Collector (v0.160)', { timeout: 120_000 }, () => {
  const bin = OTELCOL_BIN;
  const withState = (name: string, traceState: string | undefined, ms: number, events: unknown[] = []) => ({ ...span(name, { ms, events }), ...(traceState === undefined ? {} : { traceState }) });
  const sampledCorpus = () => [
    resource(obiResource('backend', 'web-1:4242'), [
      {
        spans: [
          withState('GET /a', 'ot=th:8', 3, [event([str('exception.type', 'Timeout')])]), // 1/0.5 = 2
          withState('GET /a', 'ot=th:8', 7),
          withState('GET /a', 'ot=th:c', 12), // 4
          withState('GET /a', 'vendor=x,ot=th:c;rv:0123456789abcd', 40),
          withState('GET /a', 'ot=th:0', 1), // probability 1: adjusted, counted once
          withState('GET /a', 'ot=rv:0123456789abcd', 2), // no threshold: counted
          withState('GET /a', 'ot=th:zz', 2), // rejected: counted
          withState('GET /a', 'not a tracestate', 900),
          withState('GET /a', undefined, 5, [event([str('exception.type', 'Timeout')])]),
          withState('GET /b', 'ot=th:f', 20), // 1/(1/16) = 16
        ],
      },
    ]),
  ];
  const base = {
    exclude_dimensions: ['collector.instance.id'],
    aggregation_temporality: 'AGGREGATION_TEMPORALITY_DELTA',
    histogram: { explicit: { buckets: ['2ms', '10ms', '100ms'] } },
    events: { enabled: true, dimensions: [{ name: 'exception.type' }] },
  };

  for (const enabled of [true, false]) {
    test(`the same series, weighted, ${enabled ? 'with' : 'without'} sampling.method`, { skip: OTELCOL_SKIP }, async () => {
      const config = { ...base, enable_metrics_sampling_method: enabled };
      const body = Buffer.from(types.ExportTraceServiceRequest.encode(types.ExportTraceServiceRequest.fromObject({ resourceSpans: sampledCorpus() })).finish());
      const capture = new Capture();
      const ours = new SpanMetricsConnector(testSettings('sampled'), parseWith(parseSpanMetricsConfig, config), capture);
      await ours.consume(parseRequest('traces', body).batch);
      await ours.flush();
      const expected = seriesOf(capture.batches.map((b) => ({ resourceMetrics: b.resources.map((r) => types.ResourceMetrics.toObject(types.ResourceMetrics.decode(r.bytes), { longs: String, bytes: String, defaults: false })) })));
      const actual = await referenceSeries(bin, config, body, expected.size);
      assert.deepEqual([...actual.keys()].sort(), [...expected.keys()].sort());
      for (const [key, value] of expected) assert.deepEqual(actual.get(key), value, key);
      const calls = [...expected].filter(([k]) => / [^ ]*calls /.test(k)).reduce((n, [, v]) => n + Number((v as { value?: string }).value), 0);
      assert.equal(calls, 2 + 2 + 4 + 4 + 1 + 1 + 1 + 1 + 1 + 16, 'spans weighted by their adjusted counts');
      assert.equal([...expected.keys()].some((k) => k.includes('sampling.method')), enabled);
    });
  }
});

// histogram.exponential against the reference Collector (v0.160, go-expohisto underneath): the
// same spans must give the same scale, offset, bucket counts, zero count, count, sum, min and max.
// The durations hit exact powers of two (a bucket's inclusive upper bound) and their neighbours,
// zero (and an end before the start), 1 ns next to 60 s (forcing the scale down from 20), and
// spans weighted by their tracestate; max_size 4 drives the scale below 0.
describe('spanmetrics histogram.exponential against the reference Collector (v0.160)', { timeout: 120_000 }, () => {
  const withState = (name: string, ms: number, traceState?: string) => ({ ...span(name, { ms }), ...(traceState === undefined ? {} : { traceState }) });
  const first = () => [
    resource(obiResource('backend', 'web-1:4242'), [
      {
        spans: [
          ...[0.25, 0.5, 1, 2, 4, 1024, 2.000001, 1.999999, 3, 5, 7.5].map((ms) => withState('GET /pow2', ms)),
          withState('GET /zero', 0),
          withState('GET /zero', -5), // end before start: 0
          withState('GET /one', 12.5),
          withState('GET /wide', 0.000001), // 1 ns
          withState('GET /wide', 60_000),
          withState('GET /wide', 0.3),
          withState('GET /wide', 0, 'ot=th:8'), // zero, weighted 2
          withState('GET /weighted', 3, 'ot=th:8'),
          withState('GET /weighted', 40, 'ot=th:c'),
          withState('GET /weighted', 0.125, 'ot=th:f'),
        ],
      },
    ]),
    resource(obiResource('envoy', 'edge-1:900'), [{ spans: [0.07, 0.08, 900, 2500].map((ms) => withState('egress', ms)) }]),
  ];
  // Second request (cumulative run): widens /pow2 and /one downwards and upwards after a flush.
  const second = () => [
    resource(obiResource('backend', 'web-1:4242'), [{ spans: [withState('GET /pow2', 0.001), withState('GET /pow2', 16_384), withState('GET /one', 12.5), withState('GET /one', 0.002), withState('GET /zero', 8)] }]),
  ];
  const encode = (resourceSpans: unknown[]) => Buffer.from(types.ExportTraceServiceRequest.encode(types.ExportTraceServiceRequest.fromObject({ resourceSpans })).finish());
  const totals = (series: Map<string, unknown>) => {
    let calls = 0;
    let histogram = 0;
    for (const [key, v] of series) {
      const value = v as { value?: string; exponential?: { count: string } };
      if (/ [^ ]*calls /.test(key)) calls += Number(value.value ?? 0);
      else if (value.exponential) histogram += Number(value.exponential.count);
    }
    return { calls, histogram };
  };
  const ours = async (config: Record<string, unknown>, bodies: Buffer[]) => {
    const capture = new Capture();
    const connector = new SpanMetricsConnector(testSettings('exponential'), parseWith(parseSpanMetricsConfig, config), capture);
    for (const body of bodies) {
      await connector.consume(parseRequest('traces', body).batch);
      await connector.flush();
    }
    await connector.flush(); // a new cumulative calls series is first sent as 0
    return seriesOf(capture.batches.map((b) => ({ resourceMetrics: b.resources.map((r) => types.ResourceMetrics.toObject(types.ResourceMetrics.decode(r.bytes), { longs: String, bytes: String, defaults: false })) })));
  };
  const cases: Array<{ name: string; config: Record<string, unknown>; bodies: Buffer[] }> = [
    {
      name: 'delta, default max_size, exemplars',
      config: { aggregation_temporality: 'AGGREGATION_TEMPORALITY_DELTA', histogram: { exponential: {} }, exemplars: { enabled: true, max_per_data_point: 2 } },
      bodies: [encode(first())],
    },
    {
      name: 'delta, max_size 4 (negative scales), unit s',
      config: { aggregation_temporality: 'AGGREGATION_TEMPORALITY_DELTA', histogram: { unit: 's', exponential: { max_size: 4 } } },
      bodies: [encode(first())],
    },
    {
      name: 'cumulative over two requests, max_size 20',
      config: { histogram: { exponential: { max_size: 20 } } },
      bodies: [encode(first()), encode(second())],
    },
  ];

  for (const { name, config, bodies } of cases) {
    test(`the same ExponentialHistogram points: ${name}`, { skip: OTELCOL_SKIP }, async () => {
      const full = { exclude_dimensions: ['collector.instance.id'], ...config };
      const expected = await ours(full, bodies);
      // After each request, wait until the Collector's latest flush counts everything sent so far.
      const upTo = bodies.map((_, i) => i);
      const steps = await Promise.all(upTo.map(async (i) => totals(await ours(full, bodies.slice(0, i + 1)))));
      const actual = await referenceSeries(
        OTELCOL_BIN,
        full,
        bodies,
        steps.map((t) => (series: Map<string, unknown>) => {
          const now = totals(series);
          return now.calls === t.calls && now.histogram === t.histogram;
        }),
      );
      assert.deepEqual([...actual.keys()].sort(), [...expected.keys()].sort());
      for (const [key, value] of expected) assert.deepEqual(actual.get(key), value, key);
      const points = [...expected.values()].flatMap((v) => ((v as { exponential?: { scale: number } }).exponential ? [(v as { exponential: { scale: number } }).exponential] : []));
      assert.ok(points.length >= 5, 'exponential points are compared');
      assert.ok(new Set(points.map((p) => p.scale)).size >= 3, `several scales are compared: ${points.map((p) => p.scale).join(',')}`);
    });
  }
});
