import * as grpc from '@grpc/grpc-js';
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Service } from '../../src/service/service';
import { EXPORT_METHOD } from '../../src/pdata/otlp';
import { rawExportMethod } from '../helpers/grpc';
import { Jaeger, tagValue, type JaegerTrace } from '../helpers/jaeger';
import { dockerInstance, encodeTraces, gzip, hostInstance, k8sInstance, obiResourceSpans, obiSpan, type ObiInstance } from '../helpers/obi';
import { freePorts, waitFor } from '../helpers/ports';
import { startService } from '../helpers/service';

// The whole path against a real Jaeger v2: OBI-shaped traces for many processes go into
// spansieve; exactly the chosen processes' spans, with their attributes, come out in Jaeger.

function grpcExport(port: number, body: Buffer): Promise<void> {
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const method = rawExportMethod('traces');
  return new Promise<void>((resolve, reject) => {
    client.makeUnaryRequest(EXPORT_METHOD.traces, method.requestSerialize, method.responseDeserialize, body, (err) => {
      client.close();
      if (err) reject(err);
      else resolve();
    });
  });
}

async function httpExport(port: number, body: Buffer, gzipped: boolean): Promise<void> {
  const res = await fetch(`http://127.0.0.1:${port}/v1/traces`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-protobuf', ...(gzipped ? { 'content-encoding': 'gzip' } : {}) },
    body: gzipped ? gzip(body) : body,
  });
  assert.equal(res.status, 200, await res.text());
}

function instanceIdsOf(traces: readonly JaegerTrace[]): Set<string> {
  const ids = new Set<string>();
  for (const trace of traces) {
    for (const span of trace.spans) ids.add(String(tagValue(trace.processes[span.processID]!.tags, 'service.instance.id')));
  }
  return ids;
}

function spanCountByInstance(traces: readonly JaegerTrace[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const trace of traces) {
    for (const span of trace.spans) {
      const id = String(tagValue(trace.processes[span.processID]!.tags, 'service.instance.id'));
      counts.set(id, (counts.get(id) ?? 0) + 1);
    }
  }
  return counts;
}

describe('spansieve -> real Jaeger v2', () => {
  let jaeger: Jaeger;
  let service: Service;
  let grpcPort: number;
  let httpPort: number;

  // Kept: an exact id, a PID, a Kubernetes glob, a regex on host.name with a second key, a Docker container.
  const keptExact = hostInstance('web-1', 4242, 'backend');
  const keptPid = hostInstance('web-1', 5151, 'backend');
  const keptK8s = k8sInstance('shop', 'edge-7f9c', 'envoy', 'envoy');
  const keptRegex = hostInstance('edge-12', 900, 'envoy');
  const keptDocker = dockerInstance('proxy', 'proxy-1');
  const dropped: ObiInstance[] = [
    hostInstance('web-1', 4243, 'backend'), // same service, other PID
    hostInstance('web-2', 4242, 'backend'), // same PID on another host: the exact id does not match
    k8sInstance('kube-system', 'coredns-1', 'coredns', 'coredns'),
    hostInstance('edge-x', 901, 'envoy'), // host.name fails the regex
    dockerInstance('db', 'db-1'),
  ];
  const kept = [keptExact, keptPid, keptK8s, keptRegex, keptDocker];

  before(async () => {
    jaeger = await Jaeger.start();
    [grpcPort, httpPort] = await freePorts(2);
    service = await startService({
      receivers: { otlp: { protocols: { grpc: { endpoint: `127.0.0.1:${grpcPort}` }, http: { endpoint: `127.0.0.1:${httpPort}` } } } },
      processors: {
        'filter/pids': {
          keep: [
            { 'service.instance.id': 'web-1:4242' },
            { pid: 5151 },
            { 'service.instance.id': 'shop.edge-*.envoy' },
            { 'service.name': 'envoy', 'host.name': '/^edge-[0-9]+$/' },
            { 'container.name': 'proxy-?' },
          ],
          drop: [{ 'service.name': '/^jaeger/' }],
        },
      },
      exporters: { 'otlp/jaeger': { endpoint: `127.0.0.1:${jaeger.otlpGrpcPort}`, tls: { insecure: true } } },
      service: {
        pipelines: { traces: { receivers: ['otlp'], processors: ['filter/pids'], exporters: ['otlp/jaeger'] } },
        telemetry: { metrics: { level: 'none' } },
      },
    });
  });

  after(async () => {
    await service?.shutdown();
    await jaeger?.stop();
  });

  test('only the kept instances reach Jaeger, with their attributes, over gRPC, HTTP and HTTP+gzip', async () => {
    const all = [...kept, ...dropped];
    const sent = new Map<string, ReturnType<typeof obiSpan>[]>();
    const spansFor = (instance: ObiInstance, n: number) => {
      const spans = Array.from({ length: n }, (_, i) =>
        obiSpan({ name: `GET /r${i}`, kind: i % 2 === 0 ? 2 : 3, durationNs: BigInt(1_000_000 * (i + 1)), statusCode: i === 2 ? 2 : 0 }),
      );
      sent.set(instance.instanceId, [...(sent.get(instance.instanceId) ?? []), ...spans]);
      return spans;
    };
    // Three requests, each mixing kept and dropped instances, over the three transports.
    await grpcExport(grpcPort, encodeTraces(all.map((i) => obiResourceSpans(i, spansFor(i, 3)))));
    await httpExport(httpPort, encodeTraces(all.map((i) => obiResourceSpans(i, spansFor(i, 2)))), false);
    await httpExport(httpPort, encodeTraces(all.map((i) => obiResourceSpans(i, spansFor(i, 2)))), true);

    const expectedPerInstance = 7;
    let traces: JaegerTrace[] = [];
    await waitFor('Jaeger to store every kept span', async () => {
      traces = [...(await jaeger.traces('backend')), ...(await jaeger.traces('envoy')), ...(await jaeger.traces('proxy'))];
      const counts = spanCountByInstance(traces);
      return kept.every((i) => counts.get(i.instanceId) === expectedPerInstance);
    });

    assert.deepEqual([...instanceIdsOf(traces)].sort(), kept.map((i) => i.instanceId).sort());
    const services = await jaeger.services();
    assert.ok(!services.includes('coredns'), `dropped service coredns reached Jaeger: ${services.join(', ')}`);
    assert.ok(!services.includes('db'), `dropped service db reached Jaeger: ${services.join(', ')}`);

    // Every kept span arrived once, with its name, kind, duration, status and attributes.
    const byId = new Map(traces.flatMap((t) => t.spans.map((s) => [s.spanID, { span: s, trace: t }] as const)));
    for (const instance of kept) {
      for (const span of sent.get(instance.instanceId)!) {
        const found = byId.get(span.spanId.toString('hex'));
        assert.ok(found, `span ${span.spanId.toString('hex')} of ${instance.instanceId} is missing in Jaeger`);
        const { span: stored, trace } = found;
        assert.equal(stored.traceID, span.traceId.toString('hex'));
        assert.equal(stored.operationName, span.name);
        assert.equal(tagValue(stored.tags, 'span.kind'), span.kind === 2 ? 'server' : 'client');
        assert.equal(stored.duration, Number((BigInt(span.endTimeUnixNano) - BigInt(span.startTimeUnixNano)) / 1000n));
        assert.equal(tagValue(stored.tags, 'http.request.method'), 'GET');
        assert.equal(tagValue(stored.tags, 'http.response.status_code'), 200);
        assert.equal(tagValue(stored.tags, 'url.path'), '/users/42');
        if (span.status.code === 2) assert.equal(tagValue(stored.tags, 'otel.status_code'), 'ERROR');
        const processTags = trace.processes[stored.processID]!.tags;
        assert.equal(tagValue(processTags, 'service.instance.id'), instance.instanceId);
        assert.equal(tagValue(processTags, 'telemetry.distro.name'), 'opentelemetry-ebpf-instrumentation');
        for (const [key, value] of Object.entries(instance.extra ?? {})) assert.equal(tagValue(processTags, key), value, key);
      }
    }
  });

  test('a dropped instance sharing a trace with a kept one leaves only the kept spans in that trace', async () => {
    const traceId = Buffer.from('7a3c0f1e2d4b5a69788796a5b4c3d2e1', 'hex');
    const clientSpan = obiSpan({ traceId, name: 'GET /chain', kind: 3 });
    const serverSpan = obiSpan({ traceId, parentSpanId: clientSpan.spanId, name: 'GET /chain', kind: 2 });
    await grpcExport(
      grpcPort,
      encodeTraces([obiResourceSpans(keptExact, [clientSpan]), obiResourceSpans(dropped[0]!, [serverSpan])]),
    );
    let trace: JaegerTrace | undefined;
    await waitFor('the chained trace in Jaeger', async () => {
      trace = await jaeger.trace(traceId.toString('hex'));
      return trace !== undefined;
    });
    // Give a wrongly forwarded span time to show up before asserting it is absent.
    await new Promise((resolve) => setTimeout(resolve, 500));
    trace = await jaeger.trace(traceId.toString('hex'));
    assert.deepEqual(trace!.spans.map((s) => s.spanID), [clientSpan.spanId.toString('hex')]);
  });
});

describe('the file-less command line, run as a process', () => {
  test('spansieve --keep ... --jaeger ... keeps the listed ids and drains its queue on SIGTERM', async () => {
    const jaeger = await Jaeger.start();
    const [grpcPort, httpPort, healthPort, metricsPort, adminPort] = await freePorts(5);
    const cli = path.resolve(__dirname, '..', '..', 'src', 'cli.js');
    const child = spawn(
      process.execPath,
      [
        cli,
        '--keep',
        'cli-host:100,cli-host:101',
        '--jaeger',
        `127.0.0.1:${jaeger.otlpGrpcPort}`,
        '--grpc',
        `127.0.0.1:${grpcPort}`,
        '--http',
        `127.0.0.1:${httpPort}`,
        '--health',
        `127.0.0.1:${healthPort}`,
        '--metrics',
        `127.0.0.1:${metricsPort}`,
        '--admin',
        `127.0.0.1:${adminPort}`,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const output: string[] = [];
    child.stdout.on('data', (c: Buffer) => output.push(c.toString()));
    child.stderr.on('data', (c: Buffer) => output.push(c.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      await waitFor('spansieve health_check to report ready', async () => (await fetch(`http://127.0.0.1:${healthPort}/`)).status === 200);
      const instances = [hostInstance('cli-host', 100, 'cli-svc'), hostInstance('cli-host', 101, 'cli-svc'), hostInstance('cli-host', 102, 'cli-svc')];
      const body = encodeTraces(instances.map((i) => obiResourceSpans(i, Array.from({ length: 50 }, () => obiSpan()))));
      await httpExport(httpPort, body, true);
      // Stop at once: the 100 accepted spans are still queued or in flight and must not be lost.
      child.kill('SIGTERM');
      assert.equal(await exited, 0, output.join(''));
      let traces: JaegerTrace[] = [];
      await waitFor('the drained spans in Jaeger', async () => {
        traces = await jaeger.traces('cli-svc');
        return [...spanCountByInstance(traces).values()].reduce((a, b) => a + b, 0) >= 100;
      });
      const counts = spanCountByInstance(traces);
      assert.deepEqual(Object.fromEntries(counts), { 'cli-host:100': 50, 'cli-host:101': 50 });
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      await jaeger.stop();
    }
  });
});
