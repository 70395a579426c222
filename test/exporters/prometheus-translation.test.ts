import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  attributesToLabels,
  buildLabelName,
  buildMetricName,
  jobAndInstance,
  normalizeNamespace,
  type OtelMetricType,
} from '../../src/exporters/internal/prometheus/translation';
import { exponentialToHistogram, mergeExponential, type ExponentialValue } from '../../src/exporters/internal/prometheus/accumulator';

// The OTel -> Prometheus naming rules (Collector: prometheus/otlptranslator, UnderscoreEscapingWithSuffixes;
// spec: compatibility/prometheus_and_openmetrics.md). Expected names are the Collector's.

describe('metric names', () => {
  const cases: Array<[name: string, unit: string, type: OtelMetricType, expected: string]> = [
    // What OBI sends (obi-output.md) and what the connectors emit (the Collector's documented names).
    ['http.server.request.duration', 's', 'histogram', 'http_server_request_duration_seconds'],
    ['http.server.request.body.size', 'By', 'histogram', 'http_server_request_body_size_bytes'],
    ['traces.span.metrics.calls', '', 'monotonic_counter', 'traces_span_metrics_calls_total'],
    ['traces.span.metrics.duration', 'ms', 'histogram', 'traces_span_metrics_duration_milliseconds'],
    ['traces.span.metrics.duration', 's', 'histogram', 'traces_span_metrics_duration_seconds'],
    ['traces_service_graph_request_total', '', 'monotonic_counter', 'traces_service_graph_request_total'],
    ['traces_service_graph_request_failed_total', '', 'monotonic_counter', 'traces_service_graph_request_failed_total'],
    ['traces_service_graph_request_server', 's', 'histogram', 'traces_service_graph_request_server_seconds'],
    ['traces_service_graph_request_client', 's', 'histogram', 'traces_service_graph_request_client_seconds'],
    // Unit suffixes.
    ['process.memory.usage', 'By', 'gauge', 'process_memory_usage_bytes'],
    ['process.cpu.time', 's', 'monotonic_counter', 'process_cpu_time_seconds_total'],
    ['system.network.io', 'By/s', 'gauge', 'system_network_io_bytes_per_second'],
    ['queue.latency', 'ms', 'gauge', 'queue_latency_milliseconds'],
    ['disk.free', 'MiBy', 'gauge', 'disk_free_mebibytes'],
    ['temperature', 'Cel', 'gauge', 'temperature_celsius'],
    ['requests', '{request}', 'monotonic_counter', 'requests_total'],
    ['requests.rate', '{request}/s', 'gauge', 'requests_rate_per_second'],
    ['load', '%', 'gauge', 'load_percent'],
    ['custom', 'widgets', 'gauge', 'custom_widgets'],
    // The unit already in the name is not repeated.
    ['request.duration.seconds', 's', 'histogram', 'request_duration_seconds'],
    // Ratio only for gauges with unit 1; _total only for monotonic sums, and moved to the end.
    ['system.cpu.utilization', '1', 'gauge', 'system_cpu_utilization_ratio'],
    ['cache.hit.ratio', '1', 'gauge', 'cache_hit_ratio'],
    ['queue.size', '1', 'non_monotonic_counter', 'queue_size'],
    ['active.requests', '{request}', 'non_monotonic_counter', 'active_requests'],
    ['total.requests', '', 'monotonic_counter', 'requests_total'],
    // Invalid characters become separators; a leading digit gets '_'.
    ['my-metric/with spaces', '', 'gauge', 'my_metric_with_spaces'],
    ['http..server__latency', 's', 'histogram', 'http_server_latency_seconds'],
    ['2xx.responses', '', 'monotonic_counter', '_2xx_responses_total'],
    ['ns:metric', '', 'gauge', 'ns:metric'],
  ];
  for (const [name, unit, type, expected] of cases) {
    test(`${name} [${unit || 'no unit'}, ${type}] -> ${expected}`, () => {
      assert.equal(buildMetricName(name, unit, type, ''), expected);
    });
  }

  test('namespace is prepended', () => {
    assert.equal(buildMetricName('http.server.request.duration', 's', 'histogram', 'obi'), 'obi_http_server_request_duration_seconds');
    assert.equal(normalizeNamespace('my.team'), 'my_team');
  });

  test('without suffixes only the characters change', () => {
    assert.equal(buildMetricName('http.server.request.duration', 's', 'histogram', '', false), 'http_server_request_duration');
    assert.equal(buildMetricName('process.cpu.time', 's', 'monotonic_counter', '', false), 'process_cpu_time');
  });

  test('a name with nothing valid in it is refused', () => {
    assert.equal(buildMetricName('...', '', 'gauge', ''), '');
    assert.equal(buildMetricName('é', '', 'gauge', ''), '');
  });
});

describe('label names', () => {
  test('invalid characters become _, a leading digit gets key_', () => {
    assert.equal(buildLabelName('service.name'), 'service_name');
    assert.equal(buildLabelName('http.response.status_code'), 'http_response_status_code');
    assert.equal(buildLabelName('k8s.pod.name'), 'k8s_pod_name');
    assert.equal(buildLabelName('1st'), 'key_1st');
    assert.equal(buildLabelName('a..b'), 'a__b');
    assert.equal(buildLabelName('otel.metric.overflow'), 'otel_metric_overflow');
    assert.equal(buildLabelName('___'), undefined);
    assert.equal(buildLabelName(''), undefined);
  });

  test('keys that collide after sanitizing are joined with ; in key order, empty values dropped', () => {
    assert.deepEqual(
      attributesToLabels([
        ['a_b', 'second'],
        ['a.b', 'first'],
        ['c', ''],
        ['d', 'x'],
      ]),
      [
        ['a_b', 'first;second'],
        ['d', 'x'],
      ],
    );
  });
});

describe('job and instance', () => {
  test('job = service.namespace/service.name, instance = service.instance.id', () => {
    assert.deepEqual(
      jobAndInstance(
        new Map([
          ['service.name', 'backend'],
          ['service.namespace', 'shop'],
          ['service.instance.id', 'web-1:4242'],
        ]),
      ),
      { job: 'shop/backend', instance: 'web-1:4242' },
    );
    assert.deepEqual(jobAndInstance(new Map([['service.name', 'backend']])), { job: 'backend', instance: undefined });
    assert.deepEqual(jobAndInstance(new Map()), { job: undefined, instance: undefined });
  });
});

describe('exponential histograms as classic histograms', () => {
  const expo = (scale: number, positive: Record<number, number>, extra: Partial<ExponentialValue> = {}): ExponentialValue => {
    const map = new Map(Object.entries(positive).map(([k, v]) => [Number(k), v]));
    const count = [...map.values()].reduce((s, v) => s + v, 0) + (extra.zeroCount ?? 0);
    return { scale, zeroCount: 0, zeroThreshold: 0, positive: map, negative: new Map(), count, sum: 1, ...extra };
  };

  test('bucket i of scale 0 is (2^i, 2^(i+1)]; the zero bucket comes first', () => {
    const h = exponentialToHistogram(expo(0, { 0: 2, 2: 3 }, { zeroCount: 1, count: 6 }));
    assert.deepEqual(h.bounds, [0, 2, 4, 8]);
    assert.deepEqual(h.counts.slice(0, 4), [1, 2, 0, 3]);
    assert.equal(h.count, 6);
  });

  test('scale 1 halves the buckets in log space', () => {
    const h = exponentialToHistogram(expo(1, { 0: 1, 1: 1 }));
    assert.deepEqual(h.bounds, [0, Math.SQRT2, 2]);
  });

  test('negative buckets precede zero, with upper bound -base^i', () => {
    const h = exponentialToHistogram({ ...expo(0, {}), negative: new Map([[1, 4]]), count: 4 });
    assert.deepEqual(h.bounds, [-2, 0]);
    assert.deepEqual(h.counts.slice(0, 2), [4, 0]);
  });

  test('merging different scales downscales to the coarser one', () => {
    const merged = mergeExponential(expo(1, { 2: 1, 3: 1 }), expo(0, { 1: 5 }));
    assert.equal(merged.scale, 0);
    // scale-1 indexes 2 and 3 both fall into scale-0 index 1.
    assert.deepEqual([...merged.positive], [[1, 7]]);
    assert.equal(merged.count, 7);
  });
});
