import assert from 'node:assert/strict';
import * as http from 'node:http';
import { afterEach, describe, test } from 'node:test';
import { uncompress } from 'snappyjs';
import {
  RemoteWriteExporter,
  encodeWriteRequests,
  parseRemoteWriteConfig,
  prometheusRemoteWriteExporterFactory,
} from '../../src/exporters/prometheusremotewrite/prometheusremotewrite-exporter';
import { SelfTelemetry } from '../../src/service/telemetry';
import { configErrors, parseWith, testSettings } from '../helpers/components';
import { hostInstance } from '../helpers/obi';
import { metricsBatch, obiResourceMetrics } from '../helpers/obi-metrics';
import { waitFor } from '../helpers/ports';
import { WriteRequest, type DecodedSeries } from '../helpers/remote-write-sink';

interface Received {
  headers: http.IncomingHttpHeaders;
  series: DecodedSeries[];
}

class RemoteWriteSink {
  readonly requests: Received[] = [];
  status: (index: number) => number = () => 204;
  private server: http.Server | undefined;
  port = 0;

  async start(): Promise<void> {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const index = this.requests.length;
        const body = uncompress(Buffer.concat(chunks));
        const decoded = WriteRequest.toObject(WriteRequest.decode(body), { longs: Number, defaults: true }) as { timeseries: DecodedSeries[] };
        this.requests.push({ headers: req.headers, series: decoded.timeseries });
        const status = this.status(index);
        res.writeHead(status, { 'content-type': 'text/plain' }).end(status === 204 ? undefined : `status ${status}`);
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', () => resolve()));
    this.port = (this.server.address() as { port: number }).port;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/api/v1/write`;
  }

  /** Every series received, as `name{labels}` -> [value, timestamp][] . */
  samples(): Map<string, Array<[number, number]>> {
    const out = new Map<string, Array<[number, number]>>();
    for (const r of this.requests) {
      for (const s of r.series) {
        const name = s.labels.find((l) => l.name === '__name__')!.value;
        const rest = s.labels.filter((l) => l.name !== '__name__').map((l) => `${l.name}=${l.value}`);
        const key = `${name}{${rest.join(',')}}`;
        out.set(key, [...(out.get(key) ?? []), ...s.samples.map((x): [number, number] => [x.value, x.timestamp])]);
      }
    }
    return out;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()) ?? resolve());
  }
}

const backend = hostInstance('web-1', 4242, 'backend');
const T = 1_700_000_000_000;
/** The sink's key for a series: labels as name=value, in sorted order. */
const key = (name: string, ...labels: string[]) => `${name}{${labels.join(',').split(',').filter(Boolean).sort().join(',')}}`;
const nanos = (ms: number) => (BigInt(ms) * 1_000_000n).toString();

describe('prometheusremotewrite exporter', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function setup(raw: Record<string, unknown> = {}) {
    const sink = new RemoteWriteSink();
    await sink.start();
    const telemetry = new SelfTelemetry();
    const config = parseWith(parseRemoteWriteConfig, { endpoint: sink.url, retry_on_failure: { initial_interval: '20ms', max_interval: '50ms', randomization_factor: 0 }, ...raw });
    const exporter = new RemoteWriteExporter(testSettings('prometheusremotewrite', telemetry), config);
    await exporter.start();
    cleanups.push(
      () => sink.stop(),
      () => exporter.shutdown(),
    );
    return { sink, exporter, telemetry };
  }

  test('remote write 1.0: snappy-compressed WriteRequest, required headers, sorted labels, translated names', async () => {
    const { sink, exporter } = await setup();
    await exporter.consume(metricsBatch([obiResourceMetrics(backend, { durations: [0.01, 0.3], cpuSeconds: 2.5, time: nanos(T) })]));
    await waitFor('the request', () => sink.requests.length === 1);
    const request = sink.requests[0]!;
    assert.equal(request.headers['content-encoding'], 'snappy');
    assert.equal(request.headers['content-type'], 'application/x-protobuf');
    assert.equal(request.headers['x-prometheus-remote-write-version'], '0.1.0');
    for (const s of request.series) {
      const names = s.labels.map((l) => l.name);
      assert.deepEqual(names, [...names].sort(), 'labels sorted by name');
      assert.equal(names[0], '__name__');
      assert.ok(s.labels.every((l) => l.value !== ''), 'no empty label values');
    }
    const samples = sink.samples();
    const labels = 'http_request_method=GET,http_response_status_code=200,http_route=/api/items,instance=web-1:4242,job=backend,otel_scope_name=go.opentelemetry.io/obi,server_address=backend,server_port=8080,url_scheme=http';
    assert.deepEqual(samples.get(key('http_server_request_duration_seconds_bucket', labels, 'le=0.01')), [[1, T]]);
    assert.deepEqual(samples.get(key('http_server_request_duration_seconds_bucket', labels, 'le=0.5')), [[2, T]]);
    assert.deepEqual(samples.get(key('http_server_request_duration_seconds_bucket', labels, 'le=+Inf')), [[2, T]]);
    assert.deepEqual(samples.get(key('http_server_request_duration_seconds_count', labels)), [[2, T]]);
    assert.deepEqual(samples.get('process_cpu_time_seconds_total{cpu_mode=user,instance=web-1:4242,job=backend,otel_scope_name=go.opentelemetry.io/obi}'), [[2.5, T]]);
    const targetInfo = [...samples.keys()].find((k) => k.startsWith('target_info{'));
    assert.ok(targetInfo?.includes('host_name=web-1') && targetInfo.includes('instance=web-1:4242') && targetInfo.includes('job=backend'), targetInfo);
  });

  test('delta sums are sent as running totals; a point already sent is not sent again', async () => {
    const { sink, exporter } = await setup();
    const send = async (value: number, ms: number) => exporter.consume(metricsBatch([obiResourceMetrics(backend, { networkBytesDelta: value, time: nanos(ms), deltaStart: nanos(ms - 1000) })]));
    await send(100, T);
    await send(50, T + 1000);
    await send(50, T + 1000);
    await waitFor('three requests', () => sink.requests.length >= 2);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const series = 'process_network_io_bytes_total{instance=web-1:4242,job=backend,network_io_direction=transmit,otel_scope_name=go.opentelemetry.io/obi}';
    assert.deepEqual(sink.samples().get(series), [
      [100, T],
      [150, T + 1000],
    ]);
  });

  test('retries 5xx, gives up on 4xx, counts both', async () => {
    const { sink, exporter, telemetry } = await setup();
    sink.status = (i) => (i === 0 ? 503 : i === 1 ? 204 : 400);
    await exporter.consume(metricsBatch([obiResourceMetrics(backend, { memoryBytes: 1, time: nanos(T) })]));
    await waitFor('the retry', () => sink.requests.length === 2);
    await exporter.consume(metricsBatch([obiResourceMetrics(backend, { memoryBytes: 2, time: nanos(T + 1) })]));
    await waitFor('the refused request', () => sink.requests.length === 3);
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(sink.requests.length, 3, 'a 400 is not retried');
    const json = await telemetry.registry.getMetricsAsJSON();
    const value = (name: string) => json.find((m) => m.name === name)?.values.reduce((s, v) => s + Number(v.value), 0);
    assert.equal(value('otelcol_exporter_sent_metric_points'), 1);
    assert.equal(value('otelcol_exporter_send_failed_metric_points'), 1);
  });

  test('external_labels, namespace, and requests split by max_batch_size_bytes', async () => {
    const { sink, exporter } = await setup({ external_labels: { cluster: 'eu-1' }, namespace: 'obi', max_batch_size_bytes: 2048, target_info: { enabled: false } });
    await exporter.consume(metricsBatch([obiResourceMetrics(backend, { durations: [0.1], memoryBytes: 5, time: nanos(T) })]));
    await waitFor('the requests', () => sink.requests.length >= 2);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const samples = sink.samples();
    assert.ok([...samples.keys()].every((k) => k.startsWith('obi_') && k.includes('cluster=eu-1')), [...samples.keys()].join('\n'));
    assert.ok(!samples.has('obi_target_info'), 'target_info disabled');
    assert.equal(samples.get('obi_process_memory_usage_bytes{cluster=eu-1,instance=web-1:4242,job=backend,otel_scope_name=go.opentelemetry.io/obi}')?.[0]?.[0], 5);
    assert.ok(encodeWriteRequests([{ labels: [['__name__', 'x']], value: 1, timestampMs: 1 }], 10).length === 1);
  });

  test('config: endpoint required; one sender unless configured', () => {
    const config = parseWith(parseRemoteWriteConfig, { endpoint: 'http://127.0.0.1:9090/api/v1/write' });
    assert.equal(config.helper.queue.numConsumers, 1);
    assert.equal(config.maxBatchSizeBytes, 3_000_000);
    assert.equal(config.targetInfo, true);
    assert.equal(parseWith(parseRemoteWriteConfig, { endpoint: 'http://x:1/api/v1/write', sending_queue: { num_consumers: 4 } }).helper.queue.numConsumers, 4);
    const errors = configErrors((n) => prometheusRemoteWriteExporterFactory.parseConfig(n), { remote_write_queue: {}, external_labels: { __x: 'y' } }, 'exporters::prometheusremotewrite');
    const text = errors.join('\n');
    assert.match(text, /exporters::prometheusremotewrite::endpoint: required/);
    assert.match(text, /exporters::prometheusremotewrite::remote_write_queue: unknown key/);
    assert.match(text, /external_labels::__x: not a valid Prometheus label name/);
  });
});
