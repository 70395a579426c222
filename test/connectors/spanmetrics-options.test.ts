import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseSpanMetricsConfig } from '../../src/connectors/spanmetrics/config';
import { SpanMetricsConnector, spanMetricsConnectorFactory } from '../../src/connectors/spanmetrics/spanmetrics-connector';
import { PrometheusExporter, parsePrometheusExporterConfig } from '../../src/exporters/prometheus/prometheus-exporter';
import type { Batch } from '../../src/pdata/batch';
import { types } from '../../src/pdata/codec';
import { parseRequest } from '../../src/pdata/scan';
import { Capture, configErrors, parseWith, testSettings } from '../helpers/components';
import { encodeTraces, hostInstance, obiResourceSpans, obiSpan, resourceAttributes } from '../helpers/obi';

// The spanmetrics options beyond the basic ones (exemplars, events, the cardinality limit's
// overflow series with exemplars, instrumentation scope, expiration, the span.metrics.skip mark)
// and label values written as the Collector writes them (doubles stay doubles).

const backend = hostInstance('web-1', 4242, 'backend');

function traces(...resources: unknown[]): Batch {
  return parseRequest('traces', encodeTraces(resources as never)).batch;
}

function connector(raw: Record<string, unknown> = {}) {
  const config = parseWith(parseSpanMetricsConfig, raw, 'connectors::spanmetrics');
  const capture = new Capture();
  return { c: new SpanMetricsConnector(testSettings('spanmetrics'), config, capture), capture };
}

interface AnyValue {
  [field: string]: unknown;
  stringValue?: string;
  intValue?: string;
  doubleValue?: number;
  boolValue?: boolean;
}
interface Point {
  attributes?: Array<{ key: string; value: AnyValue }>;
  asInt?: string;
  count?: string;
  bucketCounts?: string[];
  exemplars?: Array<{ asDouble?: number; traceId?: string; spanId?: string; timeUnixNano?: string }>;
}
interface Metric {
  name: string;
  sum?: { dataPoints?: Point[] };
  histogram?: { dataPoints?: Point[] };
}

/** The metrics of the last flush, by name, with longs as strings and ids as hex. */
function flushed(capture: Capture): Map<string, Point[]> {
  const batch = capture.batches[capture.batches.length - 1];
  assert.ok(batch, 'a flush reached the metrics pipeline');
  const out = new Map<string, Point[]>();
  for (const block of batch.resources) {
    const rm = types.ResourceMetrics.toObject(types.ResourceMetrics.decode(block.bytes), { longs: String, bytes: String, defaults: false }) as {
      scopeMetrics?: Array<{ metrics?: Metric[] }>;
    };
    for (const m of rm.scopeMetrics?.[0]?.metrics ?? []) {
      const points = (m.sum?.dataPoints ?? m.histogram?.dataPoints ?? []).map((p) => ({
        ...p,
        exemplars: p.exemplars?.map((e) => ({ ...e, traceId: hex(e.traceId), spanId: hex(e.spanId) })),
      }));
      out.set(m.name, [...(out.get(m.name) ?? []), ...points]);
    }
  }
  return out;
}

const hex = (b64: string | undefined) => (b64 === undefined ? undefined : Buffer.from(b64, 'base64').toString('hex'));
const attr = (p: Point, key: string) => p.attributes?.find((a) => a.key === key)?.value;

describe('spanmetrics: label values as the Collector writes them', () => {
  test('a double dimension stays a double: 1e21 is "1e+21", 5.0 is the double 5; ints stay ints; never clamped', async () => {
    const { c, capture } = connector({ dimensions: [{ name: 'x.ratio' }, { name: 'x.count' }, { name: 'res.weight' }] });
    const span = (ratio: AnyValue, name: string) =>
      obiSpan({ name, attributes: [{ key: 'x.ratio', value: ratio }, { key: 'x.count', value: { intValue: '9007199254740993' } }] });
    const resource = {
      resource: { attributes: [...resourceAttributes(backend), { key: 'res.weight', value: { doubleValue: 2 } as unknown as { stringValue: string } }] },
      scopeSpans: [{ scope: {}, spans: [span({ doubleValue: 1e21 }, 'a'), span({ doubleValue: 5 }, 'b'), span({ intValue: '5' }, 'b'), span({ doubleValue: -0 }, 'c')] }],
    };
    await c.consume(traces(resource));
    await c.flush();
    const calls = flushed(capture).get('traces.span.metrics.calls')!;
    const byName = new Map(calls.map((p) => [attr(p, 'span.name')!.stringValue, p]));
    assert.deepEqual(attr(byName.get('a')!, 'x.ratio'), { doubleValue: 1e21 });
    assert.deepEqual(attr(byName.get('a')!, 'x.count'), { intValue: '9007199254740993' });
    assert.deepEqual(attr(byName.get('a')!, 'res.weight'), { doubleValue: 2 }, 'a double resource attribute too');
    // The Collector's key is the value's text: double 5 and int 5 are one series (the first one's attributes).
    assert.equal(calls.filter((p) => attr(p, 'span.name')!.stringValue === 'b').length, 1);
    assert.deepEqual(attr(byName.get('b')!, 'x.ratio'), { doubleValue: 5 });
    assert.ok(Object.is(attr(byName.get('c')!, 'x.ratio')!.doubleValue, -0));
  });

  test('a list or map dimension is copied with its nested types (a whole double stays a double)', async () => {
    const { c, capture } = connector({ dimensions: [{ name: 'x.list' }] });
    const list = { arrayValue: { values: [{ doubleValue: 3 }, { intValue: '3' }, { kvlistValue: { values: [{ key: 'k', value: { doubleValue: 2 } }] } }] } };
    await c.consume(traces(obiResourceSpans(backend, [obiSpan({ attributes: [{ key: 'x.list', value: list }] })])));
    await c.flush();
    const [point] = flushed(capture).get('traces.span.metrics.calls')!;
    assert.deepEqual(attr(point!, 'x.list'), list);
  });
});

describe('spanmetrics: exemplars', () => {
  test('the first max_per_data_point spans of each series in a flush interval, with trace and span ids, on calls and duration', async () => {
    const { c, capture } = connector({ exemplars: { enabled: true, max_per_data_point: 2 } });
    const spans = [1, 2, 3].map((n) => obiSpan({ durationNs: BigInt(n) * 1_000_000n }));
    await c.consume(traces(obiResourceSpans(backend, spans)));
    await c.flush();
    const out = flushed(capture);
    for (const metric of ['traces.span.metrics.calls', 'traces.span.metrics.duration']) {
      const [point] = out.get(metric)!;
      assert.deepEqual(
        point!.exemplars!.map((e) => [e.traceId, e.spanId, e.asDouble]),
        spans.slice(0, 2).map((s, i) => [s.traceId.toString('hex'), s.spanId.toString('hex'), i + 1]),
        metric,
      );
    }
    // Exemplars belong to the interval flushed: the next flush has none.
    await c.flush();
    assert.equal(flushed(capture).get('traces.span.metrics.duration')![0]!.exemplars, undefined);
  });

  test('the prometheus exporter shows them in OpenMetrics only: on the bucket holding the value, and the last one on the counter', async () => {
    const { c, capture } = connector({ exemplars: { enabled: true }, histogram: { explicit: { buckets: ['5ms', '50ms'] } } });
    const spans = [3, 4, 30, 70].map((n) => obiSpan({ durationNs: BigInt(n) * 1_000_000n }));
    await c.consume(traces(obiResourceSpans(backend, spans)));
    await c.flush();
    const exporter = new PrometheusExporter(testSettings('prometheus'), parseWith(parsePrometheusExporterConfig, { enable_open_metrics: true }));
    await exporter.consume(capture.batches[capture.batches.length - 1]!);
    const om = (await exporter.render(true)).body;
    const ids = (i: number) => `trace_id="${spans[i]!.traceId.toString('hex')}",span_id="${spans[i]!.spanId.toString('hex')}"`;
    const exemplarOf = (line: RegExp) => om.split('\n').find((l) => line.test(l))?.split(' # ')[1];
    assert.match(exemplarOf(/^traces_span_metrics_duration_milliseconds_bucket\{.*le="5"\}/) ?? '', new RegExp(`^\\{${ids(1)}\\} 4 \\d+(\\.\\d+)?$`), 'the later of two in a bucket');
    assert.match(exemplarOf(/^traces_span_metrics_duration_milliseconds_bucket\{.*le="50"\}/) ?? '', new RegExp(`^\\{${ids(2)}\\} 30 `));
    assert.match(exemplarOf(/^traces_span_metrics_duration_milliseconds_bucket\{.*le="\+Inf"\}/) ?? '', new RegExp(`^\\{${ids(3)}\\} 70 `));
    assert.match(exemplarOf(/^traces_span_metrics_calls_total\{/) ?? '', new RegExp(`^\\{${ids(3)}\\} 70 `), 'the counter shows the last one');
    const text = (await exporter.render(false)).body;
    assert.doesNotMatch(text, /trace_id/, 'text format 0.0.4 has no exemplars');
  });

  test('off by default; max_per_data_point 0 keeps none', async () => {
    for (const raw of [{}, { exemplars: { enabled: true, max_per_data_point: 0 } }]) {
      const { c, capture } = connector(raw);
      await c.consume(traces(obiResourceSpans(backend, [obiSpan()])));
      await c.flush();
      assert.equal(flushed(capture).get('traces.span.metrics.duration')![0]!.exemplars, undefined);
    }
  });
});

describe('spanmetrics: aggregation_cardinality_limit', () => {
  test('the overflow series counts among the limit, has only otel.metric.overflow=true, and gets no exemplars', async () => {
    const { c, capture } = connector({ aggregation_cardinality_limit: 2, exemplars: { enabled: true } });
    await c.consume(traces(obiResourceSpans(backend, ['a', 'b', 'c', 'd', 'a', 'e'].map((name) => obiSpan({ name })))));
    await c.flush();
    await c.flush();
    const calls = flushed(capture).get('traces.span.metrics.calls')!;
    const counts = Object.fromEntries(calls.map((p) => [attr(p, 'span.name')?.stringValue ?? 'overflow', Number(p.asInt)]));
    assert.deepEqual(counts, { a: 2, b: 1, overflow: 3 });
    const overflow = calls.find((p) => attr(p, 'span.name') === undefined)!;
    assert.deepEqual(overflow.attributes, [{ key: 'otel.metric.overflow', value: { boolValue: true } }]);
  });
});

describe('spanmetrics: events', () => {
  test('one count per span event, dimensions from the span, then the event, then the resource', async () => {
    const { c, capture } = connector({ events: { enabled: true, dimensions: [{ name: 'exception.type' }, { name: 'host.name' }] } });
    const event = (type: string) => ({ timeUnixNano: '1', name: 'exception', attributes: [{ key: 'exception.type', value: { stringValue: type } }] });
    const withEvents = { ...obiSpan({ name: 'e' }), events: [event('Timeout'), event('Timeout'), event('Refused')] };
    const spanWins = { ...obiSpan({ name: 'e', attributes: [{ key: 'exception.type', value: { stringValue: 'FromSpan' } }] }), events: [event('Timeout')] };
    const resource = obiResourceSpans(backend, [withEvents, spanWins, obiSpan({ name: 'none' })]);
    resource.resource.attributes.push({ key: 'host.name', value: { stringValue: 'web-1' } });
    await c.consume(traces(resource));
    await c.flush();
    await c.flush();
    const events = flushed(capture).get('traces.span.metrics.events')!;
    const counts = Object.fromEntries(events.map((p) => [`${attr(p, 'exception.type')!.stringValue}@${attr(p, 'host.name')!.stringValue}`, Number(p.asInt)]));
    assert.deepEqual(counts, { 'Timeout@web-1': 2, 'Refused@web-1': 1, 'FromSpan@web-1': 1 });
  });

  test('enabled without dimensions is a config error, as in the Collector', () => {
    const errors = configErrors((n) => parseSpanMetricsConfig(n), { events: { enabled: true } }, 'connectors::spanmetrics');
    assert.match(errors.join('\n'), /connectors::spanmetrics::events::dimensions: at least one dimension is required/);
  });
});

describe('spanmetrics: include_instrumentation_scope', () => {
  test('spans of a listed scope carry its name and version; others do not', async () => {
    const { c, capture } = connector({ include_instrumentation_scope: ['io.opentelemetry.http'] });
    const resource = {
      resource: { attributes: resourceAttributes(backend) },
      scopeSpans: [
        { scope: { name: 'io.opentelemetry.http', version: '1.2.3' }, spans: [obiSpan({ name: 'listed' })] },
        { scope: { name: 'other' }, spans: [obiSpan({ name: 'unlisted' })] },
      ],
    };
    await c.consume(traces(resource));
    await c.flush();
    const calls = flushed(capture).get('traces.span.metrics.calls')!;
    const listed = calls.find((p) => attr(p, 'span.name')!.stringValue === 'listed')!;
    assert.deepEqual(attr(listed, 'span.instrumentation.scope.name'), { stringValue: 'io.opentelemetry.http' });
    assert.deepEqual(attr(listed, 'span.instrumentation.scope.version'), { stringValue: '1.2.3' });
    const unlisted = calls.find((p) => attr(p, 'span.name')!.stringValue === 'unlisted')!;
    assert.equal(attr(unlisted, 'span.instrumentation.scope.name'), undefined);
  });
});

describe('spanmetrics: span.metrics.skip', () => {
  const marked = (value: AnyValue) => obiSpan({ name: 'marked', attributes: [{ key: 'span.metrics.skip', value }] });

  test('spans OBI marked (span attribute true) and resources marked "true" are not counted; others are', async () => {
    const { c, capture } = connector();
    const markedResource = obiResourceSpans(hostInstance('web-2', 1, 'sdk-app'), [obiSpan({ name: 'resource-marked' })]);
    markedResource.resource.attributes.push({ key: 'span.metrics.skip', value: { stringValue: 'true' } });
    await c.consume(traces(obiResourceSpans(backend, [marked({ boolValue: true }), marked({ boolValue: false }), obiSpan({ name: 'plain' })]), markedResource));
    await c.flush();
    await c.flush();
    const calls = flushed(capture).get('traces.span.metrics.calls')!;
    const counts = Object.fromEntries(calls.map((p) => [attr(p, 'span.name')!.stringValue, Number(p.asInt)]));
    assert.deepEqual(counts, { marked: 1, plain: 1 }, 'the false-marked span counts, the true-marked one and the marked resource do not');
  });

  test('honor_span_metrics_skip: false counts them all', async () => {
    const { c, capture } = connector({ honor_span_metrics_skip: false });
    await c.consume(traces(obiResourceSpans(backend, [marked({ boolValue: true }), obiSpan({ name: 'plain' })])));
    await c.flush();
    await c.flush();
    assert.equal(flushed(capture).get('traces.span.metrics.calls')!.length, 2);
  });
});

describe('spanmetrics: config', () => {
  test("the Collector's options are accepted", () => {
    const raw = {
      dimensions: [{ name: 'http.method', default: 'GET' }],
      exclude_dimensions: ['status.code', 'collector.instance.id'],
      dimensions_cache_size: 1000,
      aggregation_cardinality_limit: 100,
      aggregation_temporality: 'AGGREGATION_TEMPORALITY_CUMULATIVE',
      metrics_flush_interval: '15s',
      metrics_expiration: '5m',
      series_expiration: '1m',
      metric_timestamp_cache_size: 1000,
      resource_metrics_key_attributes: ['service.name', 'telemetry.sdk.language'],
      resource_metrics_cache_size: 500,
      exemplars: { enabled: true, max_per_data_point: 3 },
      events: { enabled: true, dimensions: [{ name: 'exception.type' }, { name: 'exception.message' }] },
      include_instrumentation_scope: ['a'],
      add_resource_attributes: true,
      namespace: 'x',
      histogram: { unit: 's', explicit: { buckets: ['100us', '1ms', '2ms'] } },
    };
    assert.deepEqual(configErrors((n) => spanMetricsConnectorFactory.parseConfig(n), raw), []);
  });

  test('glob dimensions: one of name or glob, no default, no clash with a named dimension, a valid pattern', () => {
    const errors = configErrors(
      (n) => parseSpanMetricsConfig(n),
      { dimensions: [{ name: 'http.method' }, { glob: 'http.*' }, { name: 'a', glob: 'b.*' }, { glob: 'db.*', default: 'x' }, { glob: 'db.[' }, { glob: 'service.*' }] },
      'connectors::spanmetrics',
    ).join('\n');
    assert.match(errors, /dimensions\[1\]::glob: dimension name "http.method" conflicts with glob "http.\*"/);
    assert.match(errors, /dimensions\[2\]::glob: set either name or glob, not both/);
    assert.match(errors, /dimensions\[3\]::default: not supported on a glob dimension/);
    assert.match(errors, /dimensions\[4\]::glob: invalid glob "db.\["/);
    assert.match(errors, /dimensions\[5\]::glob: dimension name "service.name" conflicts/);
  });

  test('bad values name their path', () => {
    const errors = configErrors(
      (n) => parseSpanMetricsConfig(n),
      { exemplars: { enabled: true, max_per_data_point: -1 }, series_expiration: 'soon', exclude_dimensions: ['http.method'], enable_metrics_sampling_method: 'yes' },
      'connectors::spanmetrics',
    ).join('\n');
    assert.match(errors, /exemplars::max_per_data_point: must be between 0/);
    assert.match(errors, /series_expiration: expected a duration/);
    assert.match(errors, /exclude_dimensions\[0\]: can only exclude/);
    assert.match(errors, /enable_metrics_sampling_method: /);
  });
});
