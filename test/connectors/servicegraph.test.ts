import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { parseServiceGraphConfig } from '../../src/connectors/servicegraph/config';
import { ServiceGraphConnector, serviceGraphConnectorFactory } from '../../src/connectors/servicegraph/servicegraph-connector';
import { EdgeStore } from '../../src/connectors/servicegraph/store';
import { PrometheusExporter, parsePrometheusExporterConfig } from '../../src/exporters/prometheus/prometheus-exporter';
import type { Batch } from '../../src/pdata/batch';
import { parseRequest } from '../../src/pdata/scan';
import { SelfTelemetry } from '../../src/service/telemetry';
import { Capture, attrs, configErrors, parseWith, testSettings, type DecodedResourceMetrics } from '../helpers/components';
import { encodeTraces, hostInstance, obiResourceSpans, obiSpan, type ObiInstance } from '../helpers/obi';

const client = hostInstance('h', 1, 'client');
const envoy = hostInstance('h', 2, 'envoy');
const backend = hostInstance('h', 3, 'backend');
const ms = (n: number) => BigInt(n) * 1_000_000n;

function traces(...resources: Array<[ObiInstance, ReturnType<typeof obiSpan>[]]>): Batch {
  return parseRequest('traces', encodeTraces(resources.map(([i, s]) => obiResourceSpans(i, s)))).batch;
}

function setup(raw: Record<string, unknown> = {}, now: () => number = Date.now) {
  const telemetry = new SelfTelemetry();
  const capture = new Capture();
  const config = parseWith(parseServiceGraphConfig, raw, 'connectors::servicegraph');
  return { c: new ServiceGraphConnector(testSettings('servicegraph', telemetry), config, capture, now), capture, telemetry };
}

/** A CLIENT span in the caller and its SERVER child in the callee. */
function pair(clientMs: number, serverMs: number, status: { client?: number; server?: number } = {}) {
  const traceId = randomBytes(16);
  const c = obiSpan({ traceId, kind: 3, durationNs: ms(clientMs), statusCode: status.client ?? 0 });
  const s = obiSpan({ traceId, parentSpanId: c.spanId, kind: 2, durationNs: ms(serverMs), statusCode: status.server ?? 0 });
  return { c, s };
}

function metricsOf(capture: Capture): Map<string, NonNullable<NonNullable<DecodedResourceMetrics['scopeMetrics']>[number]['metrics']>[number]> {
  const last = capture.batches[capture.batches.length - 1];
  assert.ok(last, 'the connector flushed');
  const only = new Capture();
  only.batches.push(last);
  const [rm] = only.resourceMetrics();
  assert.deepEqual(rm!.resource?.attributes ?? [], [], 'service-graph metrics have an empty resource');
  assert.equal(rm!.scopeMetrics![0]!.scope!.name, 'traces_service_graph');
  return new Map(rm!.scopeMetrics![0]!.metrics!.map((m) => [m.name, m]));
}

async function counter(telemetry: SelfTelemetry, name: string): Promise<number> {
  const metric = (await telemetry.registry.getMetricsAsJSON()).find((m) => m.name === name);
  return (metric?.values ?? []).reduce((s, v) => s + Number(v.value), 0);
}

describe('servicegraph connector', () => {
  test('pairs CLIENT and SERVER spans that arrive in different batches, per hop', async () => {
    const { c, capture, telemetry } = setup({ dimensions: ['service.instance.id'] });
    const hop1 = [pair(60, 57), pair(62, 59)];
    const hop2 = [pair(20, 10)];
    // Client halves first, server halves in a later batch.
    await c.consume(traces([client, hop1.map((p) => p.c)], [envoy, hop2.map((p) => p.c)]));
    await c.consume(traces([envoy, hop1.map((p) => p.s)], [backend, hop2.map((p) => p.s)]));
    assert.equal(c.store.size, 0, 'every pair completed');
    await c.flush();
    const metrics = metricsOf(capture);
    const total = metrics.get('traces_service_graph_request_total')!;
    assert.equal(total.sum!.isMonotonic, true);
    assert.equal(total.sum!.aggregationTemporality, 2);
    const edges: Array<Record<string, string>> = total.sum!.dataPoints!.map((p) => ({ ...attrs(p.attributes), n: String(p.asInt) }));
    assert.deepEqual(
      edges.sort((a, b) => a.client!.localeCompare(b.client!)),
      [
        { client: 'client', server: 'envoy', connection_type: '', failed: 'false', 'client_service.instance.id': 'h:1', 'server_service.instance.id': 'h:2', n: '2' },
        { client: 'envoy', server: 'backend', connection_type: '', failed: 'false', 'client_service.instance.id': 'h:2', 'server_service.instance.id': 'h:3', n: '1' },
      ],
    );
    const server = metrics.get('traces_service_graph_request_server')!;
    assert.equal(server.unit, 's');
    const hop1Server = server.histogram!.dataPoints!.find((p) => attrs(p.attributes).client === 'client')!;
    assert.equal(hop1Server.count, 2);
    assert.ok(Math.abs(hop1Server.sum! - 0.116) < 1e-12);
    assert.deepEqual(hop1Server.explicitBounds, [0.002, 0.004, 0.006, 0.008, 0.01, 0.05, 0.1, 0.2, 0.4, 0.8, 1, 1.4, 2, 5, 10, 15]);
    const hop2Client = metrics.get('traces_service_graph_request_client')!.histogram!.dataPoints!.find((p) => attrs(p.attributes).client === 'envoy')!;
    assert.ok(Math.abs(hop2Client.sum! - 0.02) < 1e-12);
    assert.equal(metrics.has('traces_service_graph_request_failed_total'), false);
    assert.equal(await counter(telemetry, 'otelcol_connector_servicegraph_total_edges'), 3);

    // The Prometheus names the Collector documents.
    const exporter = new PrometheusExporter(testSettings('prometheus'), parseWith(parsePrometheusExporterConfig, {}));
    await exporter.consume(capture.batches[capture.batches.length - 1]!);
    const text = (await exporter.render(false)).body;
    assert.match(text, /^traces_service_graph_request_total\{client="client",client_service_instance_id="h:1",failed="false",otel_scope_name="traces_service_graph",server="envoy",server_service_instance_id="h:2"\} 2$/m);
    assert.match(text, /^traces_service_graph_request_server_seconds_bucket\{.*client="envoy".*le="0.01"\} 1$/m);
    assert.match(text, /^traces_service_graph_request_client_seconds_count\{.*client="client".*\} 2$/m);
  });

  test('span.metrics.skip: marked spans and marked resources make no edges (honor_span_metrics_skip, on by default)', async () => {
    const mark = <T extends { attributes: unknown[] }>(span: T): T => ({ ...span, attributes: [...span.attributes, { key: 'span.metrics.skip', value: { boolValue: true } }] });
    for (const honor of [true, false]) {
      const { c, capture } = setup(honor ? {} : { honor_span_metrics_skip: false });
      const marked = pair(5, 4);
      const plain = pair(5, 4);
      const fromMarkedResource = pair(5, 4);
      const sdkApp = hostInstance('h', 9, 'sdk-app');
      const markedResource = obiResourceSpans(sdkApp, [fromMarkedResource.c]);
      markedResource.resource.attributes.push({ key: 'span.metrics.skip', value: { stringValue: 'true' } });
      await c.consume(parseRequest('traces', encodeTraces([obiResourceSpans(client, [mark(marked.c), plain.c]), markedResource, obiResourceSpans(backend, [mark(marked.s), plain.s, fromMarkedResource.s])])).batch);
      await c.flush();
      const total = metricsOf(capture).get('traces_service_graph_request_total')!;
      const edges = total.sum!.dataPoints!.map((p) => `${attrs(p.attributes).client}->${attrs(p.attributes).server}=${p.asInt}`).sort();
      assert.deepEqual(edges, honor ? ['client->backend=1'] : ['client->backend=2', 'sdk-app->backend=1'], `honor=${honor}`);
    }
  });

  test('a request is failed when either side has status ERROR', async () => {
    const { c, capture } = setup();
    const bad = pair(5, 4, { server: 2 });
    const ok = pair(5, 4);
    await c.consume(traces([client, [bad.c, ok.c]], [backend, [bad.s, ok.s]]));
    await c.flush();
    const metrics = metricsOf(capture);
    const failed = metrics.get('traces_service_graph_request_failed_total')!.sum!.dataPoints!;
    assert.equal(failed.length, 1);
    assert.equal(attrs(failed[0]!.attributes).failed, 'true');
    assert.equal(failed[0]!.asInt, 1);
    const totals = metrics.get('traces_service_graph_request_total')!.sum!.dataPoints!.map((p) => [attrs(p.attributes).failed, p.asInt]);
    assert.deepEqual(totals.sort(), [
      ['false', 1],
      ['true', 1],
    ]);
  });

  test('unpaired halves expire after store.ttl and are counted', async () => {
    let now = 1_000_000;
    const { c, capture, telemetry } = setup({ store: { ttl: '2s' } }, () => now);
    const lonely = pair(5, 4);
    const late = pair(5, 4);
    await c.consume(traces([client, [lonely.c, late.c]]));
    now += 1500;
    assert.equal(c.store.expire(), 0);
    await c.consume(traces([backend, [late.s]]));
    now += 1000;
    assert.equal(c.store.expire(), 1);
    assert.equal(await counter(telemetry, 'otelcol_connector_servicegraph_expired_edges'), 1);
    await c.consume(traces([backend, [lonely.s]]));
    assert.equal(c.store.size, 1, 'a server half arriving after its client expired waits in turn');
    await c.flush();
    const total = metricsOf(capture).get('traces_service_graph_request_total')!.sum!.dataPoints!;
    assert.equal(total.length, 1);
    assert.equal(total[0]!.asInt, 1);
  });

  test('store.max_items bounds the pending halves; the rest are dropped and counted', async () => {
    const { c, telemetry } = setup({ store: { ttl: '1m', max_items: 2 } });
    await c.consume(traces([client, [pair(1, 1).c, pair(1, 1).c, pair(1, 1).c]]));
    assert.equal(c.store.size, 2);
    assert.equal(await counter(telemetry, 'otelcol_connector_servicegraph_dropped_spans'), 1);
  });

  test('a CLIENT span with a database name completes its edge alone', async () => {
    const { c, capture } = setup({ database_name_attributes: ['db.namespace'] });
    const span = obiSpan({ kind: 3, name: 'SELECT users', durationNs: ms(3), attributes: [{ key: 'db.namespace', value: { stringValue: 'shop' } }] });
    await c.consume(traces([backend, [span]]));
    await c.flush();
    const point = metricsOf(capture).get('traces_service_graph_request_total')!.sum!.dataPoints![0]!;
    assert.deepEqual(attrs(point.attributes), { client: 'backend', server: 'shop', connection_type: 'database', failed: 'false' });
  });

  test('PRODUCER and CONSUMER spans make messaging_system edges; INTERNAL spans are ignored', async () => {
    const { c, capture } = setup();
    const traceId = randomBytes(16);
    const producer = obiSpan({ traceId, kind: 4 });
    const consumer = obiSpan({ traceId, kind: 5, parentSpanId: producer.spanId });
    await c.consume(traces([client, [producer, obiSpan({ kind: 1 })]], [backend, [consumer]]));
    await c.flush();
    const point = metricsOf(capture).get('traces_service_graph_request_total')!.sum!.dataPoints![0]!;
    assert.equal(attrs(point.attributes).connection_type, 'messaging_system');
    assert.equal(c.store.size, 0);
  });

  test('metrics_flush_interval 0 flushes after every batch', async () => {
    const { c, capture } = setup({ metrics_flush_interval: '0s' });
    const p = pair(1, 1);
    await c.consume(traces([client, [p.c]]));
    assert.equal(capture.batches.length, 0, 'nothing complete yet, nothing sent');
    await c.consume(traces([backend, [p.s]]));
    assert.equal(capture.batches.length, 1);
  });

  test('series not updated for 15 minutes are dropped by the cache loop', async () => {
    let now = 0;
    const { c, capture } = setup({}, () => now);
    const p = pair(1, 1);
    await c.consume(traces([client, [p.c]], [backend, [p.s]]));
    now += 16 * 60_000;
    c.cleanStaleSeries();
    await c.flush();
    assert.equal(capture.batches.length, 0);
  });

  test('the store expires oldest first and stops at the first live edge', () => {
    let now = 0;
    const expired: string[] = [];
    const store = new EdgeStore(1000, 10, () => undefined, (e) => expired.push(e.key), () => now);
    store.upsert('a', (e) => (e.clientService = 'x'));
    now = 500;
    store.upsert('b', (e) => (e.clientService = 'x'));
    now = 1200;
    assert.equal(store.expire(), 1);
    assert.deepEqual(expired, ['a']);
  });

  test('config: defaults and errors', () => {
    const config = parseWith(parseServiceGraphConfig, {});
    assert.deepEqual(config.store, { ttlMs: 2000, maxItems: 1000 });
    assert.equal(config.cacheLoopMs, 60_000);
    assert.equal(config.storeExpirationLoopMs, 2000);
    assert.deepEqual(config.databaseNameAttributes, ['db.name']);
    const errors = configErrors((n) => serviceGraphConnectorFactory.parseConfig(n), { store: { ttl: '0s', bogus: 1 }, latency_histogram_buckets: ['1s', '1ms'], virtual_node_peer_attributes: [] }, 'connectors::servicegraph');
    const text = errors.join('\n');
    assert.match(text, /connectors::servicegraph::store::bogus: unknown key/);
    assert.match(text, /connectors::servicegraph::store::ttl: must be a positive duration/);
    assert.match(text, /latency_histogram_buckets\[1\]: bucket bounds must be strictly increasing/);
    assert.match(text, /connectors::servicegraph::virtual_node_peer_attributes: unknown key/);
  });
});
