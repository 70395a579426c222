import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Service } from '../../src/service/service';
import { makeTestCerts, type TestCerts } from '../helpers/certs';
import { rawExportMethod } from '../helpers/grpc';
import { encodeTraces, hostInstance, obiResourceSpans, obiSpan } from '../helpers/obi';
import { freePorts, waitFor } from '../helpers/ports';
import { captureLogs, startService } from '../helpers/service';
import { OTELCOL_SKIP, ReferenceCollector } from '../helpers/reference-collector';
import { GrpcSink } from '../helpers/sink';

// bearertokenauth against the reference Collector (built with the Collector's builder; Jaeger's
// build has no bearertokenauth), both ways, with the right and a wrong token:
//
//   test --grpc--> otelcol otlp/plain --otlp_grpc (TLS), otlp_http, right and wrong token--> spansieve otlp (auth) --> sink A
//   test --http--> spansieve otlp/feed --otlp, otlphttp, right and wrong token--> otelcol otlp/auth (auth) --otlp_grpc--> sink B
//
// gRPC-Go sends per-call credentials over TLS only, so the Collector's gRPC exporter reaches
// spansieve over TLS; the other legs are plaintext.

const skip = OTELCOL_SKIP;
const RIGHT = 'e2e-right-token';
const WRONG = 'e2e-wrong-token';

function spanNames(sink: GrpcSink): string[] {
  return sink.resourceSpans().flatMap((rs) => ((rs.scopeSpans as { spans?: { name: string }[] }[] | undefined) ?? []).flatMap((ss) => (ss.spans ?? []).map((s) => s.name)));
}

void describe('bearertokenauth with the reference Collector', { skip }, () => {
  const sinkA = new GrpcSink();
  const sinkB = new GrpcSink();
  const logs = captureLogs('warn');
  let certs: TestCerts | undefined;
  let service: Service | undefined;
  let otelcol: ReferenceCollector | undefined;
  let ports: number[] = [];

  before(async () => {
    certs = makeTestCerts();
    await sinkA.start();
    await sinkB.start();
    ports = await freePorts(6);
    const [inGrpc, inHttp, feedHttp, plainGrpc, authGrpc, authHttp] = ports as [number, number, number, number, number, number];
    const direct = { sending_queue: { enabled: false }, retry_on_failure: { enabled: false } };

    service = await startService(
      {
        extensions: { 'bearertokenauth/server': { token: RIGHT }, 'bearertokenauth/right': { token: RIGHT }, 'bearertokenauth/wrong': { token: WRONG } },
        receivers: {
          otlp: {
            protocols: {
              grpc: { endpoint: `127.0.0.1:${inGrpc}`, tls: { cert_file: certs.server.cert, key_file: certs.server.key }, auth: { authenticator: 'bearertokenauth/server' } },
              http: { endpoint: `127.0.0.1:${inHttp}`, auth: { authenticator: 'bearertokenauth/server' } },
            },
          },
          'otlp/feed': { protocols: { http: { endpoint: `127.0.0.1:${feedHttp}` } } },
        },
        exporters: {
          'otlp/sink': { endpoint: `127.0.0.1:${sinkA.port}`, tls: { insecure: true }, ...direct },
          'otlp/collector': { endpoint: `127.0.0.1:${authGrpc}`, tls: { insecure: true }, auth: { authenticator: 'bearertokenauth/right' } },
          'otlphttp/collector': { endpoint: `http://127.0.0.1:${authHttp}`, auth: { authenticator: 'bearertokenauth/right' } },
          'otlp/collector-wrong': { endpoint: `127.0.0.1:${authGrpc}`, tls: { insecure: true }, auth: { authenticator: 'bearertokenauth/wrong' }, retry_on_failure: { enabled: false } },
          'otlphttp/collector-wrong': { endpoint: `http://127.0.0.1:${authHttp}`, auth: { authenticator: 'bearertokenauth/wrong' }, retry_on_failure: { enabled: false } },
        },
        service: {
          extensions: ['bearertokenauth/server', 'bearertokenauth/right', 'bearertokenauth/wrong'],
          pipelines: {
            traces: { receivers: ['otlp'], exporters: ['otlp/sink'] },
            'traces/feed': { receivers: ['otlp/feed'], exporters: ['otlp/collector', 'otlphttp/collector', 'otlp/collector-wrong', 'otlphttp/collector-wrong'] },
          },
          telemetry: { metrics: { address: '127.0.0.1:0' } },
        },
      },
      logs.logger,
    );

    const noRetry = { retry_on_failure: { enabled: false } };
    const collectorConfig = {
      extensions: { 'bearertokenauth/server': { token: RIGHT }, 'bearertokenauth/right': { token: RIGHT }, 'bearertokenauth/wrong': { token: WRONG } },
      receivers: {
        'otlp/plain': { protocols: { grpc: { endpoint: `127.0.0.1:${plainGrpc}` } } },
        'otlp/auth': {
          protocols: {
            grpc: { endpoint: `127.0.0.1:${authGrpc}`, auth: { authenticator: 'bearertokenauth/server' } },
            http: { endpoint: `127.0.0.1:${authHttp}`, auth: { authenticator: 'bearertokenauth/server' } },
          },
        },
      },
      exporters: {
        'otlp_grpc/spansieve': { endpoint: `127.0.0.1:${inGrpc}`, tls: { ca_file: certs.ca }, auth: { authenticator: 'bearertokenauth/right' }, ...noRetry },
        'otlp_http/spansieve': { endpoint: `http://127.0.0.1:${inHttp}`, auth: { authenticator: 'bearertokenauth/right' }, ...noRetry },
        'otlp_grpc/spansieve-wrong': { endpoint: `127.0.0.1:${inGrpc}`, tls: { ca_file: certs.ca }, auth: { authenticator: 'bearertokenauth/wrong' }, ...noRetry },
        'otlp_http/spansieve-wrong': { endpoint: `http://127.0.0.1:${inHttp}`, auth: { authenticator: 'bearertokenauth/wrong' }, ...noRetry },
        'otlp_grpc/sink': { endpoint: `127.0.0.1:${sinkB.port}`, tls: { insecure: true }, ...noRetry },
      },
      service: {
        extensions: ['bearertokenauth/server', 'bearertokenauth/right', 'bearertokenauth/wrong'],
        telemetry: { metrics: { level: 'none' }, logs: { level: 'info' } },
        pipelines: {
          'traces/in': { receivers: ['otlp/plain'], exporters: ['otlp_grpc/spansieve', 'otlp_http/spansieve', 'otlp_grpc/spansieve-wrong', 'otlp_http/spansieve-wrong'] },
          'traces/back': { receivers: ['otlp/auth'], exporters: ['otlp_grpc/sink'] },
        },
      },
    };
    otelcol = await ReferenceCollector.start(collectorConfig);
  });

  after(async () => {
    await otelcol?.stop();
    await service?.shutdown();
    await sinkA.stop();
    await sinkB.stop();
    certs?.remove();
  });

  void test('Collector exporters -> spansieve receiver: the right token passes over gRPC (TLS) and HTTP, the wrong one gets UNAUTHENTICATED / 401', { timeout: 60_000 }, async () => {
    const client = new grpc.Client(`127.0.0.1:${ports[3]}`, grpc.credentials.createInsecure());
    try {
      const method = rawExportMethod('traces');
      const body = encodeTraces([obiResourceSpans(hostInstance('web-1', 4242), [obiSpan({ name: 'to-spansieve' })])]);
      await new Promise<void>((resolve, reject) =>
        client.makeUnaryRequest(method.path, method.requestSerialize, method.responseDeserialize, body, new grpc.Metadata(), (err) => (err ? reject(err) : resolve())),
      );
    } finally {
      client.close();
    }
    // One copy from each exporter with the right token; none from the others.
    await waitFor('two copies at sink A', () => spanNames(sinkA).length >= 2, 30_000);
    const output = () => otelcol!.log;
    await waitFor('the Collector logging both refusals', () => /Unauthenticated/.test(output()) && /401/.test(output()), 30_000);
    assert.match(output(), /code = Unauthenticated desc = unauthenticated: the Authorization header does not match the expected scheme and token/);
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.deepEqual(spanNames(sinkA), ['to-spansieve', 'to-spansieve']);
    const metric = (await service!.telemetry.registry.getMetricsAsJSON()).find((m) => m.name === 'otelcol_receiver_otlp_unauthenticated_requests');
    const refused = (transport: string) => Number(metric?.values.find((v) => v.labels.transport === transport && v.labels.receiver === 'otlp')?.value ?? 0);
    assert.equal(refused('grpc'), 1);
    assert.equal(refused('http'), 1);
  });

  void test('spansieve exporters -> Collector receiver: the right token passes over gRPC and HTTP, the wrong one is refused', { timeout: 60_000 }, async () => {
    const body = encodeTraces([obiResourceSpans(hostInstance('web-2', 4343), [obiSpan({ name: 'to-collector' })])]);
    const res = await fetch(`http://127.0.0.1:${ports[2]}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/x-protobuf' }, body });
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    await waitFor('two copies at sink B', () => spanNames(sinkB).length >= 2, 30_000);
    const failures = () => logs.lines.filter((l) => l.msg === 'export failed with a permanent error; dropping the data').map((l) => String(l.err));
    await waitFor('both wrong-token exporters refused', () => failures().length >= 2, 30_000);
    assert.ok(failures().some((m) => /^UNAUTHENTICATED: /.test(m)), failures().join('\n'));
    assert.ok(failures().some((m) => /^HTTP 401 /.test(m)), failures().join('\n'));
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.deepEqual(spanNames(sinkB), ['to-collector', 'to-collector']);
    assert.ok(!JSON.stringify(logs.lines).includes(RIGHT), 'spansieve logged the token');
  });
});
