import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import { Registry } from 'prom-client';
import { PrometheusExporter, parsePrometheusExporterConfig, prometheusExporterFactory, wantsOpenMetrics } from '../../src/exporters/prometheus/prometheus-exporter';
import { SelfTelemetry } from '../../src/service/telemetry';
import { configErrors, parseWith, testSettings } from '../helpers/components';
import { hostInstance, resourceAttributes } from '../helpers/obi';
import { CUMULATIVE, DELTA, OBI_DURATION_BUCKETS, bucketCounts, metricsBatch, obiResourceMetrics } from '../helpers/obi-metrics';
import { freePort } from '../helpers/ports';
import { str } from '../helpers/otlp-json';

const backend = hostInstance('web-1', 4242, 'backend');
const T0 = 1_700_000_000_000_000_000n;
const t = (s: number) => (T0 + BigInt(s) * 1_000_000_000n).toString();

function exporter(raw: Record<string, unknown> = {}, telemetry = new SelfTelemetry()): PrometheusExporter {
  return new PrometheusExporter(testSettings('prometheus', telemetry), parseWith(parsePrometheusExporterConfig, raw, 'exporters::prometheus'));
}

function resource(metrics: Record<string, unknown>[], instance = backend, scope: Record<string, unknown> = { name: 'go.opentelemetry.io/obi' }) {
  return { resource: { attributes: resourceAttributes(instance).filter((kv) => kv.key !== 'otel.scope.name') }, scopeMetrics: [{ scope, metrics }] };
}

async function text(e: PrometheusExporter): Promise<string> {
  return (await e.render(false)).body;
}

/** The value of the single exposition line matching `pattern` (anchored at line start). */
function valueOf(exposition: string, pattern: RegExp): number {
  const lines = exposition.split('\n').filter((line) => pattern.test(line));
  assert.equal(lines.length, 1, `expected one line matching ${pattern}, got:\n${lines.join('\n') || exposition}`);
  return Number(lines[0]!.slice(lines[0]!.lastIndexOf(' ') + 1));
}

describe('prometheus exporter: translation of every metric type', () => {
  test('OBI histogram, cumulative sum, gauges: names, units, labels, job/instance, target_info', async () => {
    const e = exporter();
    await e.consume(metricsBatch([obiResourceMetrics(backend, { durations: [0.01, 0.01, 0.01, 0.05], cpuSeconds: 1.5, memoryBytes: 1234, cpuUtilization: 0.25, time: t(1) })]));
    const out = await text(e);
    const labels = 'http_request_method="GET",http_response_status_code="200",http_route="/api/items",instance="web-1:4242",job="backend",otel_scope_name="go.opentelemetry.io/obi",server_address="backend",server_port="8080",url_scheme="http"';
    assert.match(out, /^# HELP http_server_request_duration_seconds Duration of HTTP service calls from the server side, in seconds$/m);
    assert.match(out, /^# TYPE http_server_request_duration_seconds histogram$/m);
    assert.ok(out.includes(`http_server_request_duration_seconds_bucket{${labels},le="0"} 0\n`), out);
    assert.ok(out.includes(`http_server_request_duration_seconds_bucket{${labels},le="0.01"} 3\n`));
    assert.ok(out.includes(`http_server_request_duration_seconds_bucket{${labels},le="0.05"} 4\n`));
    assert.ok(out.includes(`http_server_request_duration_seconds_bucket{${labels},le="10"} 4\n`));
    assert.ok(out.includes(`http_server_request_duration_seconds_bucket{${labels},le="+Inf"} 4\n`));
    assert.ok(out.includes(`http_server_request_duration_seconds_count{${labels}} 4\n`));
    assert.equal(valueOf(out, /^http_server_request_duration_seconds_sum\{/), 0.08);
    assert.equal(OBI_DURATION_BUCKETS.length, out.split('\n').filter((l) => l.startsWith('http_server_request_duration_seconds_bucket')).length - 1);
    assert.match(out, /^# TYPE process_cpu_time_seconds_total counter$/m);
    assert.equal(valueOf(out, /^process_cpu_time_seconds_total\{cpu_mode="user",instance="web-1:4242",job="backend",otel_scope_name="go.opentelemetry.io\/obi"\}/), 1.5);
    assert.equal(valueOf(out, /^process_memory_usage_bytes\{/), 1234);
    assert.equal(valueOf(out, /^process_cpu_utilization_ratio\{/), 0.25);
    assert.match(
      out,
      /^target_info\{host_id="ec2f0e5b8a1c4d2e9f00112233445566",host_name="web-1",instance="web-1:4242",job="backend",os_type="linux",telemetry_distro_name="opentelemetry-ebpf-instrumentation",telemetry_distro_version="v0.3.0",telemetry_sdk_language="go",telemetry_sdk_name="opentelemetry",telemetry_sdk_version="1.38.0"\} 1$/m,
    );
  });

  test('delta sums accumulate into cumulative; duplicates and out-of-order points are ignored', async () => {
    const e = exporter();
    const delta = (value: number, start: number, end: number) =>
      resource([{ name: 'requests', sum: { aggregationTemporality: DELTA, isMonotonic: true, dataPoints: [{ startTimeUnixNano: t(start), timeUnixNano: t(end), asInt: value }] } }]);
    await e.consume(metricsBatch([delta(5, 0, 1)]));
    await e.consume(metricsBatch([delta(3, 1, 2)]));
    await e.consume(metricsBatch([delta(3, 1, 2)])); // the same point again
    await e.consume(metricsBatch([delta(100, 0, 1)])); // older than what was applied
    await e.consume(metricsBatch([delta(2, 5, 6)])); // after a gap: still added
    assert.equal(valueOf(await text(e), /^requests_total\{/), 10);
  });

  test('non-monotonic sums are gauges, delta ones accumulated; unspecified temporality is dropped', async () => {
    const telemetry = new SelfTelemetry();
    const e = exporter({}, telemetry);
    const sum = (name: string, temporality: number, value: number, end: number) =>
      resource([{ name, unit: '{request}', sum: { aggregationTemporality: temporality, isMonotonic: false, dataPoints: [{ timeUnixNano: t(end), asInt: value }] } }]);
    await e.consume(metricsBatch([sum('active.requests', CUMULATIVE, 7, 1), sum('queue.delta', DELTA, 4, 1), sum('weird', 0, 1, 1)]));
    await e.consume(metricsBatch([sum('active.requests', CUMULATIVE, 3, 2), sum('queue.delta', DELTA, -1, 2)]));
    const out = await text(e);
    assert.match(out, /^# TYPE active_requests gauge$/m);
    assert.equal(valueOf(out, /^active_requests\{/), 3);
    assert.equal(valueOf(out, /^queue_delta\{/), 3);
    assert.doesNotMatch(out, /weird/);
    const failed = (await telemetry.registry.getMetricsAsJSON()).find((m) => m.name === 'otelcol_exporter_send_failed_metric_points');
    assert.equal(failed?.values[0]?.value, 1);
  });

  test('delta histograms accumulate bucket by bucket; new bounds replace the old ones', async () => {
    const e = exporter();
    const hist = (obs: number[], start: number, end: number, bounds = [0.1, 1]) =>
      resource([
        {
          name: 'latency',
          unit: 's',
          histogram: {
            aggregationTemporality: DELTA,
            dataPoints: [{ startTimeUnixNano: t(start), timeUnixNano: t(end), count: obs.length, sum: obs.reduce((s, v) => s + v, 0), bucketCounts: bucketCounts(bounds, obs), explicitBounds: bounds }],
          },
        },
      ]);
    await e.consume(metricsBatch([hist([0.05, 0.5], 0, 1)]));
    await e.consume(metricsBatch([hist([0.05, 5], 1, 2)]));
    let out = await text(e);
    assert.equal(valueOf(out, /^latency_seconds_bucket\{.*le="0.1"\}/), 2);
    assert.equal(valueOf(out, /^latency_seconds_bucket\{.*le="1"\}/), 3);
    assert.equal(valueOf(out, /^latency_seconds_bucket\{.*le="\+Inf"\}/), 4);
    assert.equal(valueOf(out, /^latency_seconds_sum\{/), 5.6);
    await e.consume(metricsBatch([hist([0.2], 2, 3, [0.5])]));
    out = await text(e);
    assert.equal(valueOf(out, /^latency_seconds_bucket\{.*le="0.5"\}/), 1);
    assert.doesNotMatch(out, /le="0.1"/);
  });

  test('exponential histograms become classic histograms; deltas of different scales merge', async () => {
    const e = exporter();
    const expo = (scale: number, offset: number, counts: number[], end: number) =>
      resource([
        {
          name: 'rpc.server.call.duration',
          unit: 's',
          exponentialHistogram: {
            aggregationTemporality: DELTA,
            dataPoints: [
              {
                timeUnixNano: t(end),
                count: counts.reduce((s, c) => s + c, 0) + 1,
                sum: 1,
                scale,
                zeroCount: 1,
                positive: { offset, bucketCounts: counts },
              },
            ],
          },
        },
      ]);
    await e.consume(metricsBatch([expo(0, -3, [1, 2], 1)])); // (1/8, 1/4]: 1, (1/4, 1/2]: 2
    let out = await text(e);
    assert.equal(valueOf(out, /^rpc_server_call_duration_seconds_bucket\{.*le="0"\}/), 1);
    assert.equal(valueOf(out, /^rpc_server_call_duration_seconds_bucket\{.*le="0.25"\}/), 2);
    assert.equal(valueOf(out, /^rpc_server_call_duration_seconds_bucket\{.*le="0.5"\}/), 4);
    assert.equal(valueOf(out, /^rpc_server_call_duration_seconds_count\{/), 4);
    await e.consume(metricsBatch([expo(1, -6, [4], 2)])); // scale 1 index -6 = (2^-3, 2^-2.5] -> scale 0 index -3
    out = await text(e);
    assert.equal(valueOf(out, /^rpc_server_call_duration_seconds_bucket\{.*le="0.25"\}/), 2 + 4 + 1);
    assert.equal(valueOf(out, /^rpc_server_call_duration_seconds_count\{/), 9);
  });

  test('summaries keep their quantiles', async () => {
    const e = exporter();
    await e.consume(
      metricsBatch([
        resource([
          {
            name: 'gc.pause',
            unit: 's',
            summary: { dataPoints: [{ timeUnixNano: t(1), count: 10, sum: 2, quantileValues: [{ quantile: 0.5, value: 0.1 }, { quantile: 0.99, value: 0.9 }] }] },
          },
        ]),
      ]),
    );
    const out = await text(e);
    assert.match(out, /^# TYPE gc_pause_seconds summary$/m);
    assert.equal(valueOf(out, /^gc_pause_seconds\{.*quantile="0.99"\}/), 0.9);
    assert.equal(valueOf(out, /^gc_pause_seconds_count\{/), 10);
  });

  test('a point flagged "no recorded value" removes its series; older cumulative points are ignored', async () => {
    const e = exporter();
    const gauge = (value: number, end: number, flags = 0) => resource([{ name: 'temp', gauge: { dataPoints: [{ timeUnixNano: t(end), asDouble: value, flags }] } }]);
    await e.consume(metricsBatch([gauge(5, 2)]));
    await e.consume(metricsBatch([gauge(4, 1)]));
    assert.equal(valueOf(await text(e), /^temp\{/), 5);
    await e.consume(metricsBatch([gauge(0, 3, 1)]));
    assert.doesNotMatch(await text(e), /^temp\{/m);
  });

  test('a second metric with the same Prometheus name but another type is dropped', async () => {
    const e = exporter();
    await e.consume(metricsBatch([resource([{ name: 'x.y', gauge: { dataPoints: [{ timeUnixNano: t(1), asInt: 1 }] } }])]));
    await e.consume(metricsBatch([resource([{ name: 'x_y', summary: { dataPoints: [{ timeUnixNano: t(1), count: 1, sum: 1 }] } }])]));
    const out = await text(e);
    assert.match(out, /^# TYPE x_y gauge$/m);
    assert.doesNotMatch(out, /x_y_count/);
  });

  test('namespace, const_labels, service.namespace in job, resource_to_telemetry_conversion', async () => {
    const shop = { ...backend, extra: { 'host.name': 'web-1', 'service.namespace': 'shop' } };
    const e = exporter({ namespace: 'spansieve', const_labels: { region: 'eu', job: 'ignored-when-the-resource-has-one' } });
    await e.consume(metricsBatch([obiResourceMetrics(shop, { memoryBytes: 1 })]));
    const out = await text(e);
    assert.match(out, /^spansieve_process_memory_usage_bytes\{instance="web-1:4242",job="shop\/backend",otel_scope_name="go.opentelemetry.io\/obi",region="eu"\} 1$/m);
    assert.match(out, /^spansieve_target_info\{.*job="shop\/backend".*region="eu".*\} 1$/m);

    const r2t = exporter({ resource_to_telemetry_conversion: { enabled: true } });
    await r2t.consume(metricsBatch([obiResourceMetrics(backend, { memoryBytes: 1 })]));
    const out2 = await text(r2t);
    assert.match(out2, /^process_memory_usage_bytes\{.*host_name="web-1".*service_instance_id="web-1:4242",service_name="backend".*\} 1$/m);
    assert.doesNotMatch(out2, /target_info/);
  });

  test('series not updated for metric_expiration disappear', async () => {
    const e = exporter({ metric_expiration: '1m' });
    await e.consume(metricsBatch([obiResourceMetrics(backend, { memoryBytes: 1 })]));
    assert.equal(e.accumulator.collect(Date.now() + 30_000).length, 1);
    assert.equal(e.accumulator.collect(Date.now() + 61_000).length, 0);
    assert.equal(e.accumulator.targetInfos().length, 0, 'target_info goes with the last series of its resource');
  });
});

describe('prometheus exporter: scrape endpoint', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0)) await c();
  });

  async function serve(raw: Record<string, unknown>): Promise<{ e: PrometheusExporter; url: string }> {
    const port = await freePort();
    const e = exporter({ endpoint: `127.0.0.1:${port}`, ...raw });
    await e.start();
    cleanups.push(() => e.shutdown());
    await e.consume(metricsBatch([obiResourceMetrics(backend, { cpuSeconds: 2, durations: [0.2] })]));
    return { e, url: `http://127.0.0.1:${port}/metrics` };
  }

  const PROMETHEUS_ACCEPT = 'application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1';

  test('text format 0.0.4 by default, even when the scraper asks for OpenMetrics', async () => {
    const { url } = await serve({});
    const res = await fetch(url, { headers: { accept: PROMETHEUS_ACCEPT } });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), Registry.PROMETHEUS_CONTENT_TYPE);
    const body = await res.text();
    assert.match(body, /^# TYPE process_cpu_time_seconds_total counter$/m);
    assert.match(body, /^process_cpu_time_seconds_total\{.*\} 2$/m);
    assert.doesNotMatch(body, /# EOF/);
  });

  test('OpenMetrics when enable_open_metrics is set and the scraper accepts it', async () => {
    const { url } = await serve({ enable_open_metrics: true });
    const om = await fetch(url, { headers: { accept: PROMETHEUS_ACCEPT } });
    assert.equal(om.headers.get('content-type'), Registry.OPENMETRICS_CONTENT_TYPE);
    const body = await om.text();
    assert.match(body, /^# TYPE process_cpu_time_seconds counter$/m, 'the OpenMetrics family name has no _total');
    assert.match(body, /^process_cpu_time_seconds_total\{.*\} 2$/m);
    assert.match(body, /^http_server_request_duration_seconds_bucket\{.*le="\+Inf"\} 1$/m);
    assert.ok(body.endsWith('# EOF\n'));
    const plain = await fetch(url);
    assert.equal(plain.headers.get('content-type'), Registry.PROMETHEUS_CONTENT_TYPE, 'no Accept header: text');
    assert.equal(wantsOpenMetrics('application/openmetrics-text;q=0,text/plain'), false);
    assert.equal(wantsOpenMetrics('application/openmetrics-text; version=1.0.0'), true);
  });

  test('only /metrics is served; the port is released on shutdown', async () => {
    const { e, url } = await serve({});
    assert.equal((await fetch(url.replace('/metrics', '/'))).status, 404);
    await e.shutdown();
    await assert.rejects(fetch(url));
  });

  test('config: defaults and errors', () => {
    const config = parseWith(parsePrometheusExporterConfig, {});
    assert.equal(config.endpoint, '127.0.0.1:8889');
    assert.equal(config.metricExpirationMs, 300_000);
    assert.equal(config.enableOpenMetrics, false);
    const errors = configErrors((n) => prometheusExporterFactory.parseConfig(n), { endpoint: 'nope', const_labels: { 'bad-name': 'x' }, send_timestamps: true }, 'exporters::prometheus');
    assert.match(errors.join('\n'), /exporters::prometheus::endpoint: expected host:port/);
    assert.match(errors.join('\n'), /exporters::prometheus::const_labels::bad-name: not a valid Prometheus label name/);
    assert.match(errors.join('\n'), /exporters::prometheus::send_timestamps: not supported/);
  });
});

describe('prometheus exporter: attribute edge cases', () => {
  test('attributes colliding after sanitizing are joined; odd values are written as text', async () => {
    const e = exporter();
    await e.consume(
      metricsBatch([
        resource([
          {
            name: 'odd',
            gauge: {
              dataPoints: [
                {
                  timeUnixNano: t(1),
                  asInt: 1,
                  attributes: [
                    str('a.b', 'one'),
                    str('a_b', 'two'),
                    { key: 'flag', value: { boolValue: true } },
                    { key: 'ratio', value: { doubleValue: 0.5 } },
                    { key: 'list', value: { arrayValue: { values: [{ stringValue: 'x' }, { intValue: 2 }] } } },
                    str('quote', 'say "hi"\n'),
                  ],
                },
              ],
            },
          },
        ]),
      ]),
    );
    const out = await text(e);
    assert.ok(out.includes('odd{a_b="one;two",flag="true",instance="web-1:4242",job="backend",list="[\\"x\\",2]",otel_scope_name="go.opentelemetry.io/obi",quote="say \\"hi\\"\\n",ratio="0.5"} 1'), out);
  });
});
