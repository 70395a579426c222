import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { mapToIndex } from '../../src/connectors/exponential-histogram';
import type { Service } from '../../src/service/service';
import { encodeTraces, hostInstance, k8sInstance, obiResourceSpans, obiSpan, type ObiInstance } from '../helpers/obi';
import { encodeMetrics, nowNanos, obiResourceMetrics } from '../helpers/obi-metrics';
import { freePorts } from '../helpers/ports';
import { Prometheus } from '../helpers/prometheus';
import { startService } from '../helpers/service';

// The seed scenario against a real Prometheus: OBI-shaped traces of a client -> Envoy :9000 ->
// Envoy :8000 -> backend chain (plus processes that are not kept) and OBI-shaped metrics go into
// spansieve; PromQL over Prometheus's HTTP API must show RED metrics and per-hop latency for
// exactly the kept processes. Run twice: Prometheus scraping the prometheus exporter (text 0.0.4
// and OpenMetrics side by side), and Prometheus receiving the prometheusremotewrite exporter.

const HOST = 'edge-1';
const client = hostInstance(HOST, 1001, 'client');
const envoyFront = hostInstance(HOST, 2001, 'envoy'); // listener :9000
const envoyBack = hostInstance(HOST, 2002, 'envoy'); // listener :8000
const backend = hostInstance(HOST, 3001, 'backend'); // :8080
const droppedBackend = hostInstance(HOST, 3002, 'backend'); // same service, another process
const droppedDns = k8sInstance('kube-system', 'coredns-1', 'coredns', 'coredns');
const KEPT = [client, envoyFront, envoyBack, backend];
const DROPPED = [droppedBackend, droppedDns];

const CHAIN_TRACES = 4;
/** Durations (ms) of each hop's CLIENT span (caller) and SERVER span (callee): Envoy :8000 adds 40 ms. */
const HOPS = [
  { caller: client, callee: envoyFront, port: 9000, clientMs: 60, serverMs: 57 },
  { caller: envoyFront, callee: envoyBack, port: 8000, clientMs: 55, serverMs: 52 },
  { caller: envoyBack, callee: backend, port: 8080, clientMs: 12, serverMs: 10 },
];
const EXTRA_CLIENT_MS = 30;

/** The README's "which hop is slow" query (docs/prometheus-exporter.md): time each proxy adds. */
const HOP_SELF_TIME_QUERY = `sort_desc(
  (
      sum by (instance) (label_replace(rate(traces_service_graph_request_server_seconds_sum[5m]), "instance", "$1", "server_service_instance_id", "(.+)"))
    / sum by (instance) (label_replace(rate(traces_service_graph_request_server_seconds_count[5m]), "instance", "$1", "server_service_instance_id", "(.+)"))
  )
  - on (instance)
  (
      sum by (instance) (label_replace(rate(traces_service_graph_request_client_seconds_sum[5m]), "instance", "$1", "client_service_instance_id", "(.+)"))
    / sum by (instance) (label_replace(rate(traces_service_graph_request_client_seconds_count[5m]), "instance", "$1", "client_service_instance_id", "(.+)"))
  )
)`;

const attrs = (port: number) => [
  { key: 'http.request.method', value: { stringValue: 'GET' } },
  { key: 'http.response.status_code', value: { intValue: 200 } },
  { key: 'server.port', value: { intValue: port } },
];
const ms = (n: number) => BigInt(n) * 1_000_000n;

type Span = ReturnType<typeof obiSpan>;

interface Scenario {
  /** First request: every CLIENT span and the dropped processes' spans. */
  readonly first: Buffer;
  /** Second request, later: the kept SERVER spans, so pairs span two batches. */
  readonly second: Buffer;
  readonly spansPerInstance: Map<string, number>;
  readonly durationMsPerInstance: Map<string, number>;
}

function buildScenario(): Scenario {
  const clientSpans = new Map<ObiInstance, Span[]>();
  const serverSpans = new Map<ObiInstance, Span[]>();
  const add = (map: Map<ObiInstance, Span[]>, instance: ObiInstance, span: Span) => map.set(instance, [...(map.get(instance) ?? []), span]);
  for (let t = 0; t < CHAIN_TRACES; t++) {
    const traceId = randomBytes(16);
    let parent: Buffer | undefined;
    const start = BigInt(Date.now() - 5000) * 1_000_000n;
    for (const hop of HOPS) {
      const clientSpan = obiSpan({ traceId, parentSpanId: parent, name: 'GET /api/items', kind: 3, startNs: start, durationNs: ms(hop.clientMs), attributes: attrs(hop.port) });
      const serverSpan = obiSpan({ traceId, parentSpanId: clientSpan.spanId, name: 'GET /api/items', kind: 2, startNs: start, durationNs: ms(hop.serverMs), attributes: attrs(hop.port) });
      add(clientSpans, hop.caller, clientSpan);
      add(serverSpans, hop.callee, serverSpan);
      parent = serverSpan.spanId;
    }
  }
  // The client also calls a backend process that is not kept: that edge never completes.
  const extra = obiSpan({ name: 'GET /api/other', kind: 3, durationNs: ms(EXTRA_CLIENT_MS), attributes: attrs(8080) });
  add(clientSpans, client, extra);
  const droppedSpans = new Map<ObiInstance, Span[]>([
    [droppedBackend, [obiSpan({ traceId: extra.traceId, parentSpanId: extra.spanId, name: 'GET /api/other', kind: 2, durationNs: ms(25) }), obiSpan(), obiSpan()]],
    [droppedDns, [obiSpan({ name: 'DNS', kind: 2 }), obiSpan({ name: 'DNS', kind: 2 }), obiSpan({ name: 'DNS', kind: 3 })]],
  ]);

  const spansPerInstance = new Map<string, number>();
  const durationMsPerInstance = new Map<string, number>();
  for (const map of [clientSpans, serverSpans]) {
    for (const [instance, spans] of map) {
      spansPerInstance.set(instance.instanceId, (spansPerInstance.get(instance.instanceId) ?? 0) + spans.length);
      const total = spans.reduce((s, span) => s + Number(BigInt(span.endTimeUnixNano) - BigInt(span.startTimeUnixNano)) / 1e6, 0);
      durationMsPerInstance.set(instance.instanceId, (durationMsPerInstance.get(instance.instanceId) ?? 0) + total);
    }
  }
  return {
    first: encodeTraces([...[...clientSpans].map(([i, s]) => obiResourceSpans(i, s)), ...[...droppedSpans].map(([i, s]) => obiResourceSpans(i, s))]),
    second: encodeTraces([...serverSpans].map(([i, s]) => obiResourceSpans(i, s))),
    spansPerInstance,
    durationMsPerInstance,
  };
}

async function post(port: number, signal: 'traces' | 'metrics', body: Buffer): Promise<void> {
  const res = await fetch(`http://127.0.0.1:${port}/v1/${signal}`, { method: 'POST', headers: { 'content-type': 'application/x-protobuf' }, body });
  assert.equal(res.status, 200, await res.text());
}

async function sendEverything(otlpPort: number): Promise<Scenario> {
  const scenario = buildScenario();
  const firstTime = nowNanos();
  await post(otlpPort, 'traces', scenario.first);
  await post(
    otlpPort,
    'metrics',
    encodeMetrics([
      obiResourceMetrics(backend, { durations: [0.01, 0.01, 0.01, 0.05], cpuSeconds: 1.5, networkBytesDelta: 100, memoryBytes: 12_345_678, cpuUtilization: 0.25, rpcExponential: [1, 2, 3], time: firstTime }),
      obiResourceMetrics(envoyFront, { durations: [0.06, 0.06], time: firstTime }),
      obiResourceMetrics(droppedBackend, { durations: [1, 2], cpuSeconds: 9, networkBytesDelta: 999, memoryBytes: 1, rpcExponential: [5], time: firstTime }),
      obiResourceMetrics(droppedDns, { memoryBytes: 2, cpuUtilization: 0.5, time: firstTime }),
    ]),
  );
  // The SERVER halves arrive in a later batch, well within store.ttl.
  await new Promise((resolve) => setTimeout(resolve, 1500));
  await post(otlpPort, 'traces', scenario.second);
  // Delta points continue the first ones: process.network.io must add up to 150, the exponential histogram to 7.
  await post(otlpPort, 'metrics', encodeMetrics([obiResourceMetrics(backend, { networkBytesDelta: 50, rpcExponential: [0, 1], deltaStart: firstTime })]));
  return scenario;
}

function spansieveConfig(otlpPort: number, exporters: Record<string, unknown>) {
  const exporterIds = Object.keys(exporters);
  return {
    receivers: { otlp: { protocols: { http: { endpoint: `127.0.0.1:${otlpPort}` } } } },
    processors: { 'filter/obi': { keep: KEPT.map((i) => ({ 'service.instance.id': i.instanceId })) } },
    connectors: {
      spanmetrics: { metrics_flush_interval: '500ms', dimensions: [{ name: 'http.response.status_code' }] },
      // The same spans in base-2 exponential buckets, exposed as a classic histogram.
      'spanmetrics/exp': { metrics_flush_interval: '500ms', namespace: 'exp', histogram: { exponential: { max_size: 20 } } },
      servicegraph: {
        metrics_flush_interval: '500ms',
        dimensions: ['service.instance.id'],
        store: { ttl: '10s', max_items: 1000 },
        store_expiration_loop: '500ms',
      },
    },
    exporters,
    service: {
      pipelines: {
        traces: { receivers: ['otlp'], processors: ['filter/obi'], exporters: ['spanmetrics', 'spanmetrics/exp', 'servicegraph'] },
        metrics: { receivers: ['otlp'], processors: ['filter/obi'], exporters: exporterIds },
        'metrics/traces': { receivers: ['spanmetrics', 'spanmetrics/exp', 'servicegraph'], exporters: exporterIds },
      },
      telemetry: { metrics: { level: 'none' } },
    },
  };
}

/** Retries `check` (assertions) until it passes or `timeoutMs` runs out; then throws its last failure. */
async function eventually(check: () => Promise<void>, timeoutMs = 90_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await check();
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
}

const near = (actual: number | undefined, expected: number, what: string) =>
  assert.ok(actual !== undefined && Math.abs(actual - expected) < 1e-9 * Math.max(1, Math.abs(expected)), `${what}: expected ${expected}, got ${actual}`);

/** Every check of the scenario; `sel` narrows to one exporter's series (e.g. exposition="openmetrics"). */
async function checkScenario(prom: Prometheus, scenario: Scenario, sel: string, label: string): Promise<void> {
  const m = (name: string, matchers = '') => `${name}{${[sel, matchers].filter(Boolean).join(',')}}`;

  // RED metrics: one call per span sent, per kept process; nothing for the others.
  const calls = await prom.valuesBy(`sum by (instance) (${m('traces_span_metrics_calls_total')})`, 'instance');
  assert.deepEqual(
    [...calls].sort(),
    [...scenario.spansPerInstance].filter(([id]) => KEPT.some((k) => k.instanceId === id)).sort(),
    `${label}: calls per instance`,
  );
  const counts = await prom.valuesBy(`sum by (instance) (${m('traces_span_metrics_duration_milliseconds_count')})`, 'instance');
  const sums = await prom.valuesBy(`sum by (instance) (${m('traces_span_metrics_duration_milliseconds_sum')})`, 'instance');
  for (const instance of KEPT) {
    assert.equal(counts.get(instance.instanceId), scenario.spansPerInstance.get(instance.instanceId), `${label}: duration count of ${instance.instanceId}`);
    near(sums.get(instance.instanceId), scenario.durationMsPerInstance.get(instance.instanceId)!, `${label}: duration sum (ms) of ${instance.instanceId}`);
  }
  // The Collector's label names and values, and inclusive bucket bounds (52 ms is above le=50).
  const serverSeries = m('traces_span_metrics_calls_total', `instance="${envoyBack.instanceId}",job="envoy",service_name="envoy",span_name="GET /api/items",span_kind="SPAN_KIND_SERVER",status_code="STATUS_CODE_UNSET",http_response_status_code="200"`);
  assert.equal(Number((await prom.query(serverSeries))[0]?.value[1]), CHAIN_TRACES, `${label}: ${serverSeries}`);
  const bucket = (le: string) => m('traces_span_metrics_duration_milliseconds_bucket', `instance="${envoyBack.instanceId}",span_kind="SPAN_KIND_SERVER",le="${le}"`);
  assert.equal(Number((await prom.query(bucket('50')))[0]?.value[1]), 0, `${label}: ${bucket('50')}`);
  assert.equal(Number((await prom.query(bucket('100')))[0]?.value[1]), CHAIN_TRACES, `${label}: ${bucket('100')}`);

  // histogram.exponential: the same counts and sums; Envoy :8000's four 52 ms SERVER spans sit in
  // one bucket at scale 20, whose upper bound is just above 52 (the zero bucket, le="0", is empty).
  const expCounts = await prom.valuesBy(`sum by (instance) (${m('exp_duration_milliseconds_count')})`, 'instance');
  const expSums = await prom.valuesBy(`sum by (instance) (${m('exp_duration_milliseconds_sum')})`, 'instance');
  for (const instance of KEPT) {
    assert.equal(expCounts.get(instance.instanceId), scenario.spansPerInstance.get(instance.instanceId), `${label}: exponential count of ${instance.instanceId}`);
    near(expSums.get(instance.instanceId), scenario.durationMsPerInstance.get(instance.instanceId)!, `${label}: exponential sum (ms) of ${instance.instanceId}`);
  }
  const expBuckets = await prom.query(m('exp_duration_milliseconds_bucket', `instance="${envoyBack.instanceId}",span_kind="SPAN_KIND_SERVER"`));
  const byLe = new Map(expBuckets.map((s) => [s.metric.le!, Number(s.value[1])]));
  const finite = [...byLe.keys()].filter((le) => le !== '+Inf').map(Number).sort((a, b) => a - b);
  assert.deepEqual([finite.length, byLe.get('0'), byLe.get('+Inf')], [2, 0, CHAIN_TRACES], `${label}: exponential buckets ${JSON.stringify([...byLe])}`);
  assert.equal(finite[1], 2 ** ((mapToIndex(52, 20) + 1) * 2 ** -20), `${label}: the bucket of 52 ms at scale 20`);
  assert.ok(finite[1] >= 52 && finite[1] < 52 * (1 + 2 ** -20), `${label}: the bucket of 52 ms ends at ${finite[1]}`);
  assert.equal([...byLe].find(([le]) => le !== '+Inf' && Number(le) === finite[1])?.[1], CHAIN_TRACES, `${label}: the 52 ms bucket holds every span`);

  // The service graph: exactly the chain's three hops, each with its request count and latencies.
  const by = 'client, server, client_service_instance_id, server_service_instance_id';
  const keys = ['client', 'server', 'client_service_instance_id', 'server_service_instance_id'];
  const edgeKey = (hop: (typeof HOPS)[number]) => [hop.caller.serviceName, hop.callee.serviceName, hop.caller.instanceId, hop.callee.instanceId].join('|');
  const edges = await prom.valuesBy(`sum by (${by}) (${m('traces_service_graph_request_total')})`, ...keys);
  assert.deepEqual([...edges].sort(), HOPS.map((hop) => [edgeKey(hop), CHAIN_TRACES] as [string, number]).sort(), `${label}: service graph edges`);
  const serverSum = await prom.valuesBy(`sum by (${by}) (${m('traces_service_graph_request_server_seconds_sum')})`, ...keys);
  const clientSum = await prom.valuesBy(`sum by (${by}) (${m('traces_service_graph_request_client_seconds_sum')})`, ...keys);
  const serverCount = await prom.valuesBy(`sum by (${by}) (${m('traces_service_graph_request_server_seconds_count')})`, ...keys);
  for (const hop of HOPS) {
    near(serverSum.get(edgeKey(hop)), (CHAIN_TRACES * hop.serverMs) / 1000, `${label}: server seconds of ${edgeKey(hop)}`);
    near(clientSum.get(edgeKey(hop)), (CHAIN_TRACES * hop.clientMs) / 1000, `${label}: client seconds of ${edgeKey(hop)}`);
    assert.equal(serverCount.get(edgeKey(hop)), CHAIN_TRACES, `${label}: server count of ${edgeKey(hop)}`);
  }
  assert.deepEqual(await prom.query(m('traces_service_graph_request_failed_total')), [], `${label}: no failed requests`);
  // Inclusive upper bounds: the backend's 10 ms server spans are in le="0.01".
  const lastHop = m('traces_service_graph_request_server_seconds_bucket', `server_service_instance_id="${backend.instanceId}",le="0.01"`);
  assert.equal(Number((await prom.query(lastHop))[0]?.value[1]), CHAIN_TRACES, `${label}: ${lastHop}`);

  // Which hop is slow: the README's query, over the whole run instead of a 5m rate.
  const lifetime = HOP_SELF_TIME_QUERY.replace(/rate\(([a-z_]+)\[5m\]\)/g, (_all, name: string) => m(name));
  const selfTime = await prom.query(lifetime);
  assert.deepEqual(
    selfTime.map((s) => s.metric.instance),
    [envoyBack.instanceId, envoyFront.instanceId],
    `${label}: proxies by the time they add: ${JSON.stringify(selfTime)}`,
  );
  near(Number(selfTime[0]!.value[1]), 0.04, `${label}: time Envoy :8000 adds`);
  near(Number(selfTime[1]!.value[1]), 0.002, `${label}: time Envoy :9000 adds`);

  // OBI's own metrics under their translated names.
  const b = `instance="${backend.instanceId}",job="backend"`;
  const value = async (q: string) => Number((await prom.query(q))[0]?.value[1]);
  const httpBucket = (le: string) => m('http_server_request_duration_seconds_bucket', `${b},http_route="/api/items",http_request_method="GET",le="${le}"`);
  assert.equal(await value(httpBucket('0.01')), 3, `${label}: ${httpBucket('0.01')}`);
  assert.equal(await value(httpBucket('0.05')), 4, `${label}: ${httpBucket('0.05')}`);
  assert.equal(await value(httpBucket('+Inf')), 4, `${label}: ${httpBucket('+Inf')}`);
  assert.equal(await value(m('http_server_request_duration_seconds_count', b)), 4, `${label}: http count`);
  near(await value(m('http_server_request_duration_seconds_sum', b)), 0.08, `${label}: http sum`);
  assert.equal(await value(m('http_server_request_duration_seconds_count', `instance="${envoyFront.instanceId}"`)), 2, `${label}: envoy http count`);
  assert.equal(await value(m('process_cpu_time_seconds_total', `${b},cpu_mode="user"`)), 1.5, `${label}: cumulative sum`);
  assert.equal(await value(m('process_network_io_bytes_total', `${b},network_io_direction="transmit"`)), 150, `${label}: delta sum accumulated`);
  assert.equal(await value(m('process_memory_usage_bytes', b)), 12_345_678, `${label}: gauge`);
  assert.equal(await value(m('process_cpu_utilization_ratio', b)), 0.25, `${label}: gauge with unit 1`);
  assert.equal(await value(m('rpc_server_call_duration_seconds_count', b)), 7, `${label}: exponential histogram count (delta, accumulated)`);
  assert.equal(await value(m('rpc_server_call_duration_seconds_bucket', `${b},le="0.015625"`)), 4, `${label}: exponential histogram bucket`);
  const targetInfo = await prom.query(m('target_info', b));
  assert.equal(targetInfo[0]?.metric.host_name, HOST, `${label}: target_info carries the other resource attributes`);

  // Nothing at all from the dropped processes.
  const droppedIds = DROPPED.map((i) => i.instanceId.replace(/\./g, '\\\\.')).join('|');
  assert.deepEqual(await prom.query(`count({instance=~"${droppedIds}"})`), [], `${label}: series of dropped instances`);
  assert.deepEqual(await prom.query('count({job="coredns"})'), [], `${label}: series of the dropped coredns`);
  assert.deepEqual(await prom.query(`count({server_service_instance_id=~"${droppedIds}"})`), [], `${label}: edges to dropped instances`);
}

async function expiredEdges(service: Service): Promise<number> {
  const text = await service.telemetry.registry.getSingleMetricAsString('otelcol_connector_servicegraph_expired_edges');
  const match = /\} (\d+)$/m.exec(text);
  return match ? Number(match[1]) : 0;
}

describe('spansieve -> real Prometheus (scrape: text 0.0.4 and OpenMetrics)', () => {
  let prom: Prometheus;
  let service: Service;
  let otlpPort: number;

  before(async () => {
    let textPort: number;
    let omPort: number;
    [otlpPort, textPort, omPort] = await freePorts(3);
    service = await startService(
      spansieveConfig(otlpPort, {
        prometheus: { endpoint: `127.0.0.1:${textPort}` },
        'prometheus/openmetrics': { endpoint: `127.0.0.1:${omPort}`, enable_open_metrics: true, const_labels: { exposition: 'openmetrics' } },
      }),
    );
    prom = await Prometheus.start({
      targets: [
        { job: 'spansieve-text', target: `127.0.0.1:${textPort}` },
        { job: 'spansieve-openmetrics', target: `127.0.0.1:${omPort}` },
      ],
    });
  });

  after(async () => {
    await service?.shutdown();
    await prom?.stop();
  });

  test('RED metrics, per-hop latency and OBI metrics for exactly the kept processes', async () => {
    const scenario = await sendEverything(otlpPort);
    await eventually(() => checkScenario(prom, scenario, 'exposition=""', 'text 0.0.4'));
    await eventually(() => checkScenario(prom, scenario, 'exposition="openmetrics"', 'OpenMetrics'));
    // Both scrape targets were healthy all along.
    const up = await prom.valuesBy('up', 'job');
    assert.deepEqual([...up].sort(), [['spansieve-openmetrics', 1], ['spansieve-text', 1]]);
    // The client's call to the process that is not kept never found its SERVER half.
    await eventually(async () => assert.ok((await expiredEdges(service)) >= 1, 'an expired edge is counted'), 40_000);
  });
});

describe('spansieve -> real Prometheus (remote write receiver)', () => {
  let prom: Prometheus;
  let service: Service;
  let otlpPort: number;

  before(async () => {
    [otlpPort] = await freePorts(1);
    prom = await Prometheus.start({ remoteWriteReceiver: true });
    service = await startService(
      spansieveConfig(otlpPort, {
        prometheusremotewrite: {
          endpoint: `${prom.url}/api/v1/write`,
          retry_on_failure: { initial_interval: '200ms', max_interval: '1s' },
        },
      }),
    );
  });

  after(async () => {
    await service?.shutdown();
    await prom?.stop();
  });

  test('RED metrics, per-hop latency and OBI metrics for exactly the kept processes', async () => {
    const scenario = await sendEverything(otlpPort);
    await eventually(() => checkScenario(prom, scenario, '', 'remote write'));
    // Every request was accepted: nothing was refused as out of order or malformed.
    const failed = await service.telemetry.registry.getSingleMetricAsString('otelcol_exporter_send_failed_metric_points');
    assert.doesNotMatch(failed, /\} [1-9]/, failed);
  });
});

test('the README query in docs/prometheus-exporter.md is the one tested here', () => {
  const doc = fs.readFileSync(path.join(__dirname, '..', '..', '..', 'docs', 'prometheus-exporter.md'), 'utf8');
  assert.ok(doc.includes(HOP_SELF_TIME_QUERY), 'docs/prometheus-exporter.md must contain HOP_SELF_TIME_QUERY verbatim');
});
