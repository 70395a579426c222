import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as YAML from 'yaml';
import type { Service } from '../../src/service/service';
import { encodeTraces, hostInstance, obiResourceSpans, obiSpan } from '../helpers/obi';
import { freePorts, waitFor } from '../helpers/ports';
import { Jaeger } from '../helpers/jaeger';
import { Prometheus } from '../helpers/prometheus';
import { startService } from '../helpers/service';

// Jaeger's Monitor tab on spansieve's metrics, as the README's quick start sets it up: spansieve
// with config/default.yaml (its spanmetrics connector and prometheus exporter as shipped, only
// the flush interval shortened), a Prometheus scraping it, and Jaeger v2 run from
// config/jaeger-local.yaml with its Prometheus metric backend. Jaeger's metrics API, which the
// Monitor tab draws, must show the rates, errors and latencies of the spans sent.

const ROOT = path.resolve(__dirname, '..', '..', '..');
const HOST = 'shop-1';
const checkout = hostInstance(HOST, 4101, 'checkout');
const OK_SPANS = 40;
const ERROR_SPANS = 10;
/** Every server span lasts this long: the (200, 400] ms bucket, whose middle is the median. */
const DURATION_MS = 300;

interface MetricPoint {
  gaugeValue: { doubleValue: number };
  timestamp: string;
}
interface MetricFamily {
  name: string;
  metrics: { labels: { name: string; value: string }[]; metricPoints: MetricPoint[] }[];
}

describe("Jaeger's Monitor tab on spansieve's spanmetrics (real Jaeger v2 and Prometheus)", () => {
  let prometheus: Prometheus;
  let jaeger: Jaeger;
  let service: Service;

  before(async () => {
    const [grpcPort, httpPort, promPort] = await freePorts(3);
    prometheus = await Prometheus.start({ targets: [{ job: 'spansieve', target: `127.0.0.1:${promPort}` }] });
    jaeger = await Jaeger.startFromFile(path.join(ROOT, 'config', 'jaeger-local.yaml'), { prometheusUrl: prometheus.url });

    const config = YAML.parse(fs.readFileSync(path.join(ROOT, 'config', 'default.yaml'), 'utf8')) as DefaultConfig;
    config.receivers.otlp.protocols = { grpc: { endpoint: `127.0.0.1:${grpcPort}` }, http: { endpoint: `127.0.0.1:${httpPort}` } };
    config.connectors.spanmetrics.metrics_flush_interval = '1s';
    config.exporters.prometheus.endpoint = `127.0.0.1:${promPort}`;
    config.exporters['otlp/jaeger'].endpoint = `127.0.0.1:${jaeger.otlpGrpcPort}`;
    config.extensions.health_check.endpoint = '127.0.0.1:0';
    config.extensions.admin = { endpoint: '127.0.0.1:0' };
    config.service.telemetry = { metrics: { level: 'none' } };
    service = await startService(config as unknown as Record<string, unknown>);

    // Twice, as spans keep coming in real use: a histogram series' first point already holds its
    // first spans, so rate() (and the Monitor tab's latencies) count from its second point on,
    // as with the Collector's connector. calls starts at 0 and counts both rounds.
    await send(httpPort);
    await waitFor('the first round in Prometheus', async () => (await prometheus.query('traces_span_metrics_duration_milliseconds_count{service_name="checkout"}')).length > 0, 60_000, 500);
    await send(httpPort);
  });

  async function send(httpPort: number): Promise<void> {
    const spans = [
      ...Array.from({ length: OK_SPANS }, () => obiSpan({ name: 'POST /cart', kind: 2, durationNs: BigInt(DURATION_MS) * 1_000_000n })),
      ...Array.from({ length: ERROR_SPANS }, () => obiSpan({ name: 'POST /cart', kind: 2, durationNs: BigInt(DURATION_MS) * 1_000_000n, statusCode: 2 })),
      // A client span: not in the Monitor tab's default view (server spans only).
      obiSpan({ name: 'GET /stock', kind: 3, durationNs: 5_000_000n }),
    ];
    const res = await fetch(`http://127.0.0.1:${httpPort}/v1/traces`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-protobuf' },
      body: encodeTraces([obiResourceSpans(checkout, spans)]),
    });
    assert.equal(res.status, 200, await res.text());
  }

  after(async () => {
    await service?.shutdown();
    await jaeger?.stop();
    await prometheus?.stop();
  });

  /** Jaeger's metrics API for the service, over the last 5 minutes, points every second. */
  async function metrics(kind: 'calls' | 'errors' | 'latencies', extra = ''): Promise<MetricFamily> {
    const query = `service=checkout&endTs=${Date.now()}&lookback=300000&step=1000${extra}`;
    const res = await fetch(`http://127.0.0.1:${jaeger.queryPort}/api/metrics/${kind}?${query}`);
    const text = await res.text();
    assert.equal(res.status, 200, `/api/metrics/${kind}: ${text}\n${jaeger.output.join('').slice(-2000)}`);
    return JSON.parse(text) as MetricFamily;
  }

  /** The latest point of the family's only series, with its labels. */
  function latest(family: MetricFamily): { value: number; labels: Record<string, string> } | undefined {
    if (family.metrics.length !== 1) return undefined;
    const series = family.metrics[0]!;
    const point = series.metricPoints[series.metricPoints.length - 1];
    if (!point) return undefined;
    return { value: point.gaugeValue.doubleValue, labels: Object.fromEntries(series.labels.map((l) => [l.name, l.value])) };
  }

  test('calls, errors and latencies of the spans sent', async () => {
    // Values settle once Prometheus holds a scrape after the flush that carried the second round.
    let last: MetricFamily | undefined;
    await waitFor(
      'Jaeger to report latencies for checkout',
      async () => {
        last = await metrics('latencies', '&quantile=0.5');
        return (latest(last)?.value ?? NaN) > 0;
      },
      90_000,
      1000,
    ).catch((err: Error) => {
      throw new Error(`${err.message}; last answer: ${JSON.stringify(last).slice(-1500)}`);
    });

    const calls = latest(await metrics('calls'));
    assert.ok(calls, 'a call rate for checkout');
    assert.equal(calls.labels.service_name, 'checkout');
    assert.ok(calls.value > 0, `call rate ${calls.value}`);

    // errors is a share of calls: 10 of the 50 server spans had status ERROR.
    const errors = latest(await metrics('errors'));
    assert.ok(errors, 'an error rate for checkout');
    assert.ok(Math.abs(errors.value - ERROR_SPANS / (OK_SPANS + ERROR_SPANS)) < 0.01, `error share ${errors.value}`);

    // Every span took 300 ms: within the (200, 400] ms bucket; the median is its middle.
    const p50 = latest(await metrics('latencies', '&quantile=0.5'));
    const p95 = latest(await metrics('latencies', '&quantile=0.95'));
    assert.ok(p50 && Math.abs(p50.value - DURATION_MS) < 1, `p50 ${p50?.value} ms`);
    assert.ok(p95 && p95.value > 200 && p95.value <= 400, `p95 ${p95?.value} ms`);

    // Per operation, as the Monitor tab's table shows: the span name.
    const byOperation = latest(await metrics('calls', '&groupByOperation=true'));
    assert.equal(byOperation?.labels.operation, 'POST /cart');
  });

  test('client spans are counted under their kind', async () => {
    const client = latest(await metrics('calls', '&spanKind=client'));
    assert.ok(client && client.value > 0, `client call rate ${client?.value}`);
  });
});

interface DefaultConfig {
  receivers: { otlp: { protocols: unknown } };
  connectors: { spanmetrics: Record<string, unknown> };
  exporters: { prometheus: { endpoint: string }; 'otlp/jaeger': { endpoint: string } };
  extensions: { health_check: { endpoint: string }; admin: Record<string, unknown> };
  service: { telemetry: unknown };
}
