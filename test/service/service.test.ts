import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { EXPORT_METHOD } from '../../src/pdata/otlp';
import { rawExportMethod } from '../helpers/grpc';
import { GrpcSink } from '../helpers/sink';
import { hostInstance, obiResourceSpans, obiSpan, encodeTraces } from '../helpers/obi';
import { freePorts, waitFor } from '../helpers/ports';
import { captureLogs, startService } from '../helpers/service';

async function postTraces(port: number, body: Buffer): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${port}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/x-protobuf' }, body });
  await res.arrayBuffer();
  return res.status;
}

describe('service', () => {
  test('health_check answers 200 when ready and 503 while draining on shutdown; the queue is drained', async () => {
    const sink = new GrpcSink();
    await sink.start();
    const [httpPort, healthPort, metricsPort] = await freePorts(3);
    let releaseSink = false;
    sink.reply = () => (releaseSink ? { kind: 'ok' } : { kind: 'grpc-error', code: grpc.status.UNAVAILABLE, message: 'not yet' });
    const service = await startService({
      receivers: { otlp: { protocols: { http: { endpoint: `127.0.0.1:${httpPort}` } } } },
      exporters: {
        otlp: {
          endpoint: `127.0.0.1:${sink.port}`,
          tls: { insecure: true },
          retry_on_failure: { initial_interval: '20ms', max_interval: '20ms', randomization_factor: 0 },
        },
      },
      extensions: { health_check: { endpoint: `127.0.0.1:${healthPort}` } },
      service: {
        extensions: ['health_check'],
        pipelines: { traces: { receivers: ['otlp'], exporters: ['otlp'] } },
        telemetry: { metrics: { address: `127.0.0.1:${metricsPort}` } },
      },
    });
    try {
      assert.equal((await fetch(`http://127.0.0.1:${healthPort}/`)).status, 200);
      assert.equal(await postTraces(httpPort, encodeTraces([obiResourceSpans(hostInstance('h', 1), [obiSpan(), obiSpan()])])), 200);
      await waitFor('a first failed attempt', () => sink.requests.length >= 1);
      const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      assert.match(metrics, /otelcol_exporter_queue_capacity\{exporter="otlp"\} 1000/);

      const stopped = service.shutdown();
      await waitFor('health to turn 503 while stopping', async () => (await fetch(`http://127.0.0.1:${healthPort}/`)).status === 503);
      const body = (await (await fetch(`http://127.0.0.1:${healthPort}/`)).json()) as { state: string };
      assert.equal(body.state, 'stopping');
      // The receiver is closed already: nothing new is accepted while draining.
      await assert.rejects(postTraces(httpPort, encodeTraces([obiResourceSpans(hostInstance('h', 1), [obiSpan()])])));
      releaseSink = true;
      await stopped;
      assert.equal(sink.spanCount() >= 2, true);
      assert.equal(sink.requests.at(-1)!.body.length > 0, true);
      await assert.rejects(fetch(`http://127.0.0.1:${healthPort}/`), 'health_check is stopped last');
    } finally {
      await service.shutdown();
      await sink.stop();
    }
  });

  test('self-metrics use the Collector names on service.telemetry.metrics.address', async () => {
    const sink = new GrpcSink();
    await sink.start();
    const [grpcPort, metricsPort] = await freePorts(2);
    const service = await startService({
      receivers: { otlp: { protocols: { grpc: { endpoint: `127.0.0.1:${grpcPort}` } } } },
      processors: { 'filter/one': { keep: [{ pid: 1 }] } },
      exporters: { otlp: { endpoint: `127.0.0.1:${sink.port}`, tls: { insecure: true }, sending_queue: { enabled: false } } },
      service: {
        pipelines: { traces: { receivers: ['otlp'], processors: ['filter/one'], exporters: ['otlp'] } },
        telemetry: { metrics: { address: `127.0.0.1:${metricsPort}` } },
      },
    });
    try {
      const client = new grpc.Client(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure());
      const method = rawExportMethod('traces');
      const body = encodeTraces([obiResourceSpans(hostInstance('h', 1), [obiSpan(), obiSpan(), obiSpan()]), obiResourceSpans(hostInstance('h', 2), [obiSpan()])]);
      await new Promise<void>((resolve, reject) =>
        client.makeUnaryRequest(EXPORT_METHOD.traces, method.requestSerialize, method.responseDeserialize, body, (err) => (err ? reject(err) : resolve())),
      );
      client.close();
      const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      assert.match(text, /^otelcol_receiver_accepted_spans\{receiver="otlp",transport="grpc"\} 4$/m);
      assert.match(text, /^otelcol_processor_filter_spans_filtered\{processor="filter\/one"\} 1$/m);
      assert.match(text, /^otelcol_exporter_sent_spans\{exporter="otlp"\} 3$/m);
      assert.match(text, /^otelcol_process_memory_rss \d+$/m);
      assert.equal((await fetch(`http://127.0.0.1:${metricsPort}/other`)).status, 404);
    } finally {
      await service.shutdown();
      await sink.stop();
    }
  });

  test('the debug exporter prints one line per span through pino', async () => {
    const [httpPort] = await freePorts(1);
    const logs = captureLogs();
    const service = await startService(
      {
        receivers: { otlp: { protocols: { http: { endpoint: `127.0.0.1:${httpPort}` } } } },
        exporters: { debug: {} },
        service: { pipelines: { traces: { receivers: ['otlp'], exporters: ['debug'] } }, telemetry: { metrics: { level: 'none' } } },
      },
      logs.logger,
    );
    try {
      const traceId = Buffer.from('0af7651916cd43dd8448eb211c80319c', 'hex');
      const spans = [
        obiSpan({ traceId, name: 'GET /a', kind: 2, durationNs: 2_500_000n }),
        obiSpan({ traceId, name: 'SELECT users', kind: 3, durationNs: 1_000_000n, statusCode: 2 }),
      ];
      assert.equal(await postTraces(httpPort, encodeTraces([obiResourceSpans(hostInstance('web-1', 4242, 'backend'), spans)])), 200);
      const lines = logs.lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('span '));
      assert.equal(lines.length, 2);
      assert.deepEqual(
        lines.map((l) => [l.service, l.instance, l.span, l.kind, l.durationMs, l.status, l.traceId]),
        [
          ['backend', 'web-1:4242', 'GET /a', 'SERVER', 2.5, 'UNSET', traceId.toString('hex')],
          ['backend', 'web-1:4242', 'SELECT users', 'CLIENT', 1, 'ERROR', traceId.toString('hex')],
        ],
      );
    } finally {
      await service.shutdown();
    }
  });

  test('a port already in use fails start-up with a message naming the address', async () => {
    const [port] = await freePorts(1);
    const first = await startService({
      receivers: { otlp: { protocols: { http: { endpoint: `127.0.0.1:${port}` } } } },
      exporters: { debug: { verbosity: 'basic' } },
      service: { pipelines: { traces: { receivers: ['otlp'], exporters: ['debug'] } }, telemetry: { metrics: { level: 'none' } } },
    });
    try {
      await assert.rejects(
        startService({
          receivers: { otlp: { protocols: { http: { endpoint: `127.0.0.1:${port}` } } } },
          exporters: { debug: {} },
          service: { pipelines: { traces: { receivers: ['otlp'], exporters: ['debug'] } }, telemetry: { metrics: { level: 'none' } } },
        }),
        new RegExp(`receiver otlp: cannot listen on 127\\.0\\.0\\.1:${port}: EADDRINUSE`),
      );
    } finally {
      await first.shutdown();
    }
  });

  test('a receiver leaves unchecked only what no pipeline keeps: malformed spans there are dropped, elsewhere refused', async () => {
    const sink = new GrpcSink();
    await sink.start();
    const [httpPort] = await freePorts(1);
    const web = hostInstance('web', 1);
    const cart = hostInstance('cart', 2);
    const other = hostInstance('other', 3);
    const exporter = { endpoint: `127.0.0.1:${sink.port}`, tls: { insecure: true }, sending_queue: { enabled: false } };
    const service = await startService({
      receivers: { otlp: { protocols: { http: { endpoint: `127.0.0.1:${httpPort}` } } } },
      processors: { 'filter/web': { keep: [{ 'service.instance.id': web.instanceId }] }, 'filter/cart': { keep: [{ 'service.instance.id': cart.instanceId }] } },
      exporters: { otlp: exporter },
      service: {
        pipelines: {
          'traces/web': { receivers: ['otlp'], processors: ['filter/web'], exporters: ['otlp'] },
          'traces/cart': { receivers: ['otlp'], processors: ['filter/cart'], exporters: ['otlp'] },
        },
      },
    });
    /** A request with a valid `web` resource and `instance` whose second span's name is not UTF-8. */
    const withBrokenSpan = (instance: typeof web): Buffer => {
      const webRs = obiResourceSpans(web, [obiSpan({ name: 'GET /web' })]);
      const body = Buffer.from(encodeTraces([webRs, obiResourceSpans(instance, [obiSpan({ name: 'GET /a' }), obiSpan({ name: 'GET /broken' })])]));
      body[body.indexOf('GET /broken') + 1] = 0xff;
      return body;
    };
    try {
      assert.equal(await postTraces(httpPort, withBrokenSpan(other)), 200, 'no pipeline keeps `other`: its spans are not read');
      await waitFor('the web resource at the sink', () => sink.requests.length >= 1);
      assert.deepEqual(sink.instanceIds(), [web.instanceId]);
      assert.equal(sink.spanCount(), 1);
      const before = sink.requests.length;
      assert.equal(await postTraces(httpPort, withBrokenSpan(cart)), 400, 'traces/cart keeps `cart`: its spans are checked');
      assert.equal(sink.requests.length, before, 'nothing of the refused request was exported');
    } finally {
      await service.shutdown();
      await sink.stop();
    }
  });
});
