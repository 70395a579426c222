import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { parseSpanMetricsConfig, type SpanMetricsConfig } from '../../src/connectors/spanmetrics/config';
import { bucketIndex } from '../../src/connectors/histogram';
import { SpanMetricsConnector, spanMetricsConnectorFactory } from '../../src/connectors/spanmetrics/spanmetrics-connector';
import { PrometheusExporter, parsePrometheusExporterConfig } from '../../src/exporters/prometheus/prometheus-exporter';
import type { Batch } from '../../src/pdata/batch';
import { parseRequest } from '../../src/pdata/scan';
import { Capture, attrs, configErrors, parseWith, testSettings, type DecodedResourceMetrics } from '../helpers/components';
import { encodeTraces, hostInstance, obiResourceSpans, obiSpan } from '../helpers/obi';

const backend = hostInstance('web-1', 4242, 'backend');
const envoy = hostInstance('edge-1', 900, 'envoy');

function traces(...resources: ReturnType<typeof obiResourceSpans>[]): Batch {
  return parseRequest('traces', encodeTraces(resources)).batch;
}

const ms = (n: number) => BigInt(Math.round(n * 1e6));

function connector(raw: Record<string, unknown> = {}, now: () => number = Date.now) {
  const config: SpanMetricsConfig = parseWith(parseSpanMetricsConfig, raw, 'connectors::spanmetrics');
  const capture = new Capture();
  return { connector: new SpanMetricsConnector(testSettings('spanmetrics'), config, capture, now), capture, config };
}

function lastFlush(capture: Capture): DecodedResourceMetrics[] {
  const batch = capture.batches[capture.batches.length - 1];
  assert.ok(batch, 'a flush reached the metrics pipeline');
  const only = new Capture();
  only.batches.push(batch);
  return only.resourceMetrics();
}

/** The exposition the prometheus exporter makes of the connector's last flush. */
async function asPrometheus(capture: Capture): Promise<string> {
  const exporter = new PrometheusExporter(testSettings('prometheus'), parseWith(parsePrometheusExporterConfig, {}));
  await exporter.consume(capture.batches[capture.batches.length - 1]!);
  return (await exporter.render(false)).body;
}

describe('spanmetrics connector', () => {
  test('calls and duration per service, span name, kind and status, with the Collector names and default buckets', async () => {
    const { connector: c, capture } = connector();
    await c.consume(
      traces(
        obiResourceSpans(backend, [
          obiSpan({ name: 'GET /users/*', kind: 2, durationNs: ms(3) }),
          obiSpan({ name: 'GET /users/*', kind: 2, durationNs: ms(10) }),
          obiSpan({ name: 'GET /users/*', kind: 2, durationNs: ms(120), statusCode: 2 }),
        ]),
        obiResourceSpans(envoy, [obiSpan({ name: 'GET', kind: 3, durationNs: ms(7) })]),
      ),
    );
    await c.flush();
    await c.flush();
    const out = lastFlush(capture);
    assert.equal(out.length, 2, 'one ResourceMetrics per resource');
    const rm = out.find((r) => attrs(r.resource?.attributes)['service.instance.id'] === 'web-1:4242')!;
    assert.equal(attrs(rm.resource?.attributes)['service.name'], 'backend', 'the spans resource is kept');
    assert.equal(rm.scopeMetrics?.[0]?.scope?.name, 'spanmetricsconnector');
    const [callsMetric, durationMetric] = rm.scopeMetrics[0].metrics!;
    assert.equal(callsMetric!.name, 'traces.span.metrics.calls');
    assert.equal(callsMetric!.sum!.isMonotonic, true);
    assert.equal(callsMetric!.sum!.aggregationTemporality, 2);
    assert.equal(durationMetric!.name, 'traces.span.metrics.duration');
    assert.equal(durationMetric!.unit, 'ms');
    const calls: Array<Record<string, string | number>> = callsMetric!.sum!.dataPoints!.map((p) => ({ ...attrs(p.attributes), value: p.asInt ?? 0 }));
    assert.deepEqual(
      calls.sort((a, b) => String(a['status.code']).localeCompare(String(b['status.code']))),
      [
        { 'service.name': 'backend', 'span.name': 'GET /users/*', 'span.kind': 'SPAN_KIND_SERVER', 'status.code': 'STATUS_CODE_ERROR', value: 1 },
        { 'service.name': 'backend', 'span.name': 'GET /users/*', 'span.kind': 'SPAN_KIND_SERVER', 'status.code': 'STATUS_CODE_UNSET', value: 2 },
      ],
    );
    const unset = durationMetric!.histogram!.dataPoints!.find((p) => attrs(p.attributes)['status.code'] === 'STATUS_CODE_UNSET')!;
    assert.deepEqual(unset.explicitBounds, [2, 4, 6, 8, 10, 50, 100, 200, 400, 800, 1000, 1400, 2000, 5000, 10000, 15000]);
    // 3 ms -> le 4; 10 ms -> le 10 (upper bounds are inclusive).
    assert.deepEqual(unset.bucketCounts, [0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert.equal(unset.count, 2);
    assert.equal(unset.sum, 13);

    const text = await asPrometheus(capture);
    assert.match(
      text,
      /^traces_span_metrics_calls_total\{instance="web-1:4242",job="backend",otel_scope_name="spanmetricsconnector",service_name="backend",span_kind="SPAN_KIND_SERVER",span_name="GET \/users\/\*",status_code="STATUS_CODE_UNSET"\} 2$/m,
    );
    assert.match(text, /^traces_span_metrics_duration_milliseconds_bucket\{.*service_name="backend".*span_kind="SPAN_KIND_SERVER".*status_code="STATUS_CODE_UNSET".*le="10"\} 2$/m);
    assert.match(text, /^traces_span_metrics_duration_milliseconds_sum\{.*status_code="STATUS_CODE_UNSET".*\} 13$/m);
    assert.match(text, /^traces_span_metrics_calls_total\{.*service_name="envoy".*span_kind="SPAN_KIND_CLIENT".*\} 1$/m);
    assert.match(text, /^# TYPE traces_span_metrics_calls_total counter$/m);
    assert.match(text, /^# TYPE traces_span_metrics_duration_milliseconds histogram$/m);
  });

  test('a new cumulative calls series is first emitted as 0, as the Collector does', async () => {
    const { connector: c, capture } = connector();
    await c.consume(traces(obiResourceSpans(backend, [obiSpan(), obiSpan()])));
    await c.flush();
    assert.equal(lastFlush(capture)[0]!.scopeMetrics![0]!.metrics![0]!.sum!.dataPoints![0]!.asInt ?? 0, 0);
    await c.flush();
    assert.equal(lastFlush(capture)[0]!.scopeMetrics![0]!.metrics![0]!.sum!.dataPoints![0]!.asInt, 2);
    await c.consume(traces(obiResourceSpans(backend, [obiSpan()])));
    await c.flush();
    assert.equal(lastFlush(capture)[0]!.scopeMetrics![0]!.metrics![0]!.sum!.dataPoints![0]!.asInt, 3, 'cumulative');
  });

  test('unit s: seconds buckets and the _seconds name', async () => {
    const { connector: c, capture } = connector({ histogram: { unit: 's' } });
    await c.consume(traces(obiResourceSpans(backend, [obiSpan({ kind: 2, durationNs: ms(2) })])));
    await c.flush();
    const duration = lastFlush(capture)[0]!.scopeMetrics![0]!.metrics![1]!;
    assert.equal(duration.unit, 's');
    assert.deepEqual(duration.histogram!.dataPoints![0]!.explicitBounds!.slice(0, 3), [0.002, 0.004, 0.006]);
    const text = await asPrometheus(capture);
    assert.match(text, /^traces_span_metrics_duration_seconds_bucket\{.*span_kind="SPAN_KIND_SERVER".*le="0.002"\} 1$/m);
    assert.match(text, /^traces_span_metrics_duration_seconds_sum\{.*\} 0.002$/m);
  });

  test('explicit buckets are durations in the histogram unit; namespace changes the names', async () => {
    const { connector: c, capture } = connector({ namespace: 'obi', histogram: { unit: 'ms', explicit: { buckets: ['500us', '5ms', '1s'] } } });
    await c.consume(traces(obiResourceSpans(backend, [obiSpan({ durationNs: ms(0.4) }), obiSpan({ durationNs: ms(2000) })])));
    await c.flush();
    const [calls, duration] = lastFlush(capture)[0]!.scopeMetrics![0]!.metrics!;
    assert.equal(calls!.name, 'obi.calls');
    assert.deepEqual(duration!.histogram!.dataPoints![0]!.explicitBounds, [0.5, 5, 1000]);
    assert.deepEqual(duration!.histogram!.dataPoints![0]!.bucketCounts, [1, 0, 0, 1]);
  });

  test('dimensions: span attribute, else resource attribute, else the default; absent without a default', async () => {
    const { connector: c, capture } = connector({
      dimensions: [{ name: 'http.response.status_code' }, { name: 'host.name' }, { name: 'deployment', default: 'none' }, { name: 'absent' }],
    });
    await c.consume(traces(obiResourceSpans(backend, [obiSpan()])));
    await c.flush();
    const point = lastFlush(capture)[0]!.scopeMetrics![0]!.metrics![0]!.sum!.dataPoints![0]!;
    assert.deepEqual(point.attributes!.map((kv) => kv.key), ['service.name', 'span.name', 'span.kind', 'status.code', 'http.response.status_code', 'host.name', 'deployment']);
    const a = attrs(point.attributes);
    assert.equal(a['http.response.status_code'], '200');
    assert.equal(point.attributes!.find((kv) => kv.key === 'http.response.status_code')!.value.intValue, 200, 'the value keeps its type');
    assert.equal(a['host.name'], 'web-1');
    assert.equal(a.deployment, 'none');
  });

  test('aggregation_cardinality_limit: past the limit, new series go to one overflow series', async () => {
    const { connector: c, capture } = connector({ aggregation_cardinality_limit: 3 });
    await c.consume(traces(obiResourceSpans(backend, Array.from({ length: 10 }, (_, i) => obiSpan({ name: `GET /r${i % 6}` })))));
    await c.flush();
    await c.flush();
    const points = lastFlush(capture)[0]!.scopeMetrics![0]!.metrics![0]!.sum!.dataPoints!;
    assert.equal(points.length, 4, '3 series + 1 overflow');
    const overflow = points.filter((p) => p.attributes!.length === 1 && p.attributes![0]!.key === 'otel.metric.overflow');
    assert.equal(overflow.length, 1);
    assert.equal(overflow[0]!.attributes![0]!.value.boolValue, true);
    assert.equal(points.reduce((s, p) => s + (p.asInt ?? 0), 0), 10, 'no span is lost');
    const hist = lastFlush(capture)[0]!.scopeMetrics![0]!.metrics![1]!.histogram!.dataPoints!;
    assert.equal(hist.length, 4);
    const text = await asPrometheus(capture);
    assert.match(text, /^traces_span_metrics_calls_total\{instance="web-1:4242",job="backend",otel_metric_overflow="true",otel_scope_name="spanmetricsconnector"\} \d+$/m);
    assert.equal(c.seriesCount, 8);
  });

  test('series_expiration removes series that received no span for that long', async () => {
    let now = 1_000_000;
    const { connector: c, capture } = connector({ series_expiration: '5s' }, () => now);
    await c.consume(traces(obiResourceSpans(backend, [obiSpan({ name: 'old' })])));
    now += 4000;
    await c.consume(traces(obiResourceSpans(backend, [obiSpan({ name: 'fresh' })])));
    await c.flush();
    assert.equal(lastFlush(capture)[0]!.scopeMetrics![0]!.metrics![0]!.sum!.dataPoints!.length, 2);
    now += 2000; // "old" was last seen 6s ago, "fresh" 2s ago
    await c.flush();
    await c.flush();
    const names = lastFlush(capture)[0]!.scopeMetrics![0]!.metrics![0]!.sum!.dataPoints!.map((p) => attrs(p.attributes)['span.name']);
    assert.deepEqual(names, ['fresh']);
    now += 10_000;
    const before = capture.batches.length;
    await c.flush();
    await c.flush();
    assert.equal(capture.batches.length, before + 1, 'the last flush before expiry, then nothing');
    assert.equal(c.seriesCount, 0);
  });

  test('metrics_expiration drops a whole resource that received no span for that long, as the Collector does', async () => {
    let now = 1_000_000;
    const { connector: c, capture } = connector({ metrics_expiration: '5s' }, () => now);
    await c.consume(traces(obiResourceSpans(backend, [obiSpan({ name: 'old' })]), obiResourceSpans(envoy, [obiSpan({ name: 'other' })])));
    now += 4000;
    await c.consume(traces(obiResourceSpans(backend, [obiSpan({ name: 'fresh' })])));
    now += 2000; // backend last seen 2s ago (both its series stay), envoy 6s ago
    await c.flush();
    await c.flush();
    const flushed = lastFlush(capture);
    assert.equal(flushed.length, 1, 'only the backend resource is left');
    const names = flushed[0]!.scopeMetrics![0]!.metrics![0]!.sum!.dataPoints!.map((p) => attrs(p.attributes)['span.name']).sort();
    assert.deepEqual(names, ['fresh', 'old']);
    now += 10_000;
    await c.flush();
    assert.equal(c.seriesCount, 0);
  });

  test('delta temporality: each flush carries only its interval, start = previous flush', async () => {
    let now = 5_000_000;
    const { connector: c, capture } = connector({ aggregation_temporality: 'AGGREGATION_TEMPORALITY_DELTA' }, () => now);
    await c.consume(traces(obiResourceSpans(backend, [obiSpan(), obiSpan()])));
    now += 1000;
    await c.flush();
    let sum = lastFlush(capture)[0]!.scopeMetrics![0]!.metrics![0]!.sum!;
    assert.equal(sum.aggregationTemporality, 1);
    assert.equal(sum.dataPoints![0]!.asInt, 2, 'a delta series is not held back at 0');
    await c.consume(traces(obiResourceSpans(backend, [obiSpan()])));
    now += 1000;
    await c.flush();
    sum = lastFlush(capture)[0]!.scopeMetrics![0]!.metrics![0]!.sum!;
    assert.equal(sum.dataPoints![0]!.asInt, 1);
    assert.equal(sum.dataPoints![0]!.startTimeUnixNano, (now - 1000) * 1e6);
    const count = capture.batches.length;
    await c.flush();
    assert.equal(capture.batches.length, count, 'nothing new, nothing sent');
  });

  test('resources without service.name are skipped; resource_metrics_key_attributes merges resources', async () => {
    const { connector: c, capture } = connector({ resource_metrics_key_attributes: ['service.name'] });
    const other = hostInstance('web-2', 7, 'backend');
    await c.consume(traces(obiResourceSpans(backend, [obiSpan()]), obiResourceSpans(other, [obiSpan()])));
    await c.consume(
      parseRequest(
        'traces',
        encodeTraces([{ resource: { attributes: [] }, scopeSpans: [{ scope: {}, spans: [obiSpan({ traceId: randomBytes(16) })] }] }] as never),
      ).batch,
    );
    await c.flush();
    await c.flush();
    const out = lastFlush(capture);
    assert.equal(out.length, 1);
    assert.equal(out[0]!.scopeMetrics![0]!.metrics![0]!.sum!.dataPoints![0]!.asInt, 2);
  });

  test('config: errors name their path', () => {
    const errors = configErrors(
      (node) => spanMetricsConnectorFactory.parseConfig(node),
      {
        histogram: { unit: 'us', explicit: { buckets: ['10ms', '5ms', 3] } },
        dimensions: [{ name: 'span.kind' }, { default: 'x' }],
        aggregation_temporality: 'DELTA',
        metrics_flush_interval: '0s',
        bogus: 1,
      },
      'connectors::spanmetrics',
    );
    const text = errors.join('\n');
    assert.match(text, /connectors::spanmetrics::bogus: unknown key/);
    assert.match(text, /connectors::spanmetrics::histogram::unit: unknown unit "us"/);
    assert.match(text, /connectors::spanmetrics::histogram::explicit::buckets\[1\]: bucket bounds must be strictly increasing/);
    assert.match(text, /buckets\[2\]: expected a duration/);
    assert.match(text, /dimensions\[0\]::name: duplicate dimension name "span.kind"/);
    assert.match(text, /dimensions\[1\]::name: required/);
    assert.match(text, /aggregation_temporality: must be one of AGGREGATION_TEMPORALITY_CUMULATIVE, AGGREGATION_TEMPORALITY_DELTA/);
    assert.match(text, /metrics_flush_interval: must be a positive duration/);
  });

  test('bucketIndex: first bound >= value', () => {
    assert.equal(bucketIndex([1, 2, 3], 0.5), 0);
    assert.equal(bucketIndex([1, 2, 3], 1), 0);
    assert.equal(bucketIndex([1, 2, 3], 1.01), 1);
    assert.equal(bucketIndex([1, 2, 3], 3), 2);
    assert.equal(bucketIndex([1, 2, 3], 4), 3);
  });
});
