import * as grpc from '@grpc/grpc-js';
import { OTLPTraceExporter as GrpcTraceExporter } from '@opentelemetry/exporter-trace-otlp-grpc';
import { OTLPTraceExporter as ProtoTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, SimpleSpanProcessor, type ReadableSpan, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import type { Consumer } from '../../../src/component/component';
import type { Batch } from '../../../src/pdata/batch';
import { OtlpReceiver, parseOtlpReceiverConfig } from '../../../src/receivers/otlp/otlp-receiver';
import { encodeTraces, hostInstance, obiResourceSpans, obiSpan } from '../../helpers/obi';
import { Capture, configErrors, parseWith, testSettings } from '../../helpers/components';
import { makeTestCerts, type Pair, type TestCerts } from '../../helpers/certs';
import { waitFor } from '../../helpers/ports';

// The OTLP receiver over TLS and mTLS, with the OpenTelemetry JS exporters (grpc-js and Node's
// https) as clients, certificate rotation on disk, and the config errors.

type ExportResult = Parameters<Parameters<SpanExporter['export']>[1]>[0];
const SUCCESS = 0;

/** Exports one span through `exporter`; resolves with the exporter's result. */
async function sendOne(exporter: SpanExporter, name: string): Promise<ExportResult> {
  let result: ExportResult | undefined;
  const recording: SpanExporter = {
    export: (spans: ReadableSpan[], done) =>
      exporter.export(spans, (r) => {
        result = r;
        done(r);
      }),
    shutdown: () => exporter.shutdown(),
  };
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': 'tls-test', 'service.instance.id': 'tls-1' }),
    spanProcessors: [new SimpleSpanProcessor(recording)],
  });
  // '~' ends the name in the raw bytes spanNames scans.
  provider.getTracer('tls-test').startSpan(`${name}~`).end();
  // A failed export also rejects the flush; the result says what happened.
  await provider.forceFlush().catch(() => undefined);
  await provider.shutdown().catch(() => undefined);
  assert.ok(result, 'the exporter reported a result');
  return result;
}

function spanNames(capture: Capture): string[] {
  return capture.batches.flatMap((b) => b.resources.flatMap((r) => [...Buffer.from(r.bytes).toString('latin1').matchAll(/(span-[a-z-]+)~/g)].map((m) => m[1]!)));
}

interface Clients {
  grpc: (client: Pair | undefined, ca: string, timeoutMillis?: number) => SpanExporter;
  http: (client: Pair | undefined, ca: string, timeoutMillis?: number) => SpanExporter;
}

function clientsFor(receiver: OtlpReceiver): Clients {
  const read = (file: string) => fs.readFileSync(file);
  return {
    grpc: (client, ca, timeoutMillis = 15_000) =>
      new GrpcTraceExporter({
        url: `https://127.0.0.1:${receiver.grpcServer!.port}`,
        credentials: client ? grpc.credentials.createSsl(read(ca), read(client.key), read(client.cert)) : grpc.credentials.createSsl(read(ca)),
        timeoutMillis,
      }),
    http: (client, ca, timeoutMillis = 15_000) =>
      new ProtoTraceExporter({
        url: `https://127.0.0.1:${receiver.httpServer!.port}/v1/traces`,
        httpAgentOptions: { ca: read(ca), ...(client ? { cert: read(client.cert), key: read(client.key) } : {}), keepAlive: false },
        timeoutMillis,
      }),
  };
}

async function startReceiver(tlsConfig: Record<string, unknown>, capture: Capture): Promise<OtlpReceiver> {
  const config = parseWith(parseOtlpReceiverConfig, {
    protocols: { grpc: { endpoint: '127.0.0.1:0', tls: tlsConfig }, http: { endpoint: '127.0.0.1:0', tls: tlsConfig } },
  });
  const receiver = new OtlpReceiver(testSettings('otlp'), config, new Map([['traces', capture]]));
  await receiver.start();
  return receiver;
}

let certs: TestCerts;
before(() => {
  certs = makeTestCerts();
});
after(() => certs.remove());

void describe('OTLP receiver with TLS (server certificate only)', () => {
  const capture = new Capture();
  let receiver: OtlpReceiver;
  before(async () => {
    receiver = await startReceiver({ cert_file: certs.server.cert, key_file: certs.server.key }, capture);
  });
  after(() => receiver.shutdown());

  for (const protocol of ['grpc', 'http'] as const) {
    void test(`${protocol}: the OTel JS exporter trusting the CA delivers; one trusting another CA does not; plaintext does not`, async () => {
      const clients = clientsFor(receiver);
      assert.equal((await sendOne(clients[protocol](undefined, certs.ca), `span-${protocol}-ok`)).code, SUCCESS);
      const wrong = await sendOne(clients[protocol](undefined, certs.wrongCa, 3000), `span-${protocol}-wrong-ca`);
      assert.notEqual(wrong.code, SUCCESS);
      const port = protocol === 'grpc' ? receiver.grpcServer!.port : receiver.httpServer!.port;
      const plain =
        protocol === 'grpc'
          ? new GrpcTraceExporter({ url: `http://127.0.0.1:${port}`, timeoutMillis: 3000 })
          : new ProtoTraceExporter({ url: `http://127.0.0.1:${port}/v1/traces`, timeoutMillis: 3000 });
      assert.notEqual((await sendOne(plain, `span-${protocol}-plain`)).code, SUCCESS);
      const names = spanNames(capture);
      assert.ok(names.includes(`span-${protocol}-ok`), names.join());
      assert.ok(!names.some((n) => n.startsWith(`span-${protocol}-wrong`) || n.startsWith(`span-${protocol}-plain`)), names.join());
    });
  }

  void test('gRPC negotiates h2 through ALPN and offers nothing else', async () => {
    const alpn = (protocols: string[]) =>
      new Promise<string | false>((resolve, reject) => {
        const socket = tls.connect({ host: '127.0.0.1', port: receiver.grpcServer!.port, ca: fs.readFileSync(certs.ca), ALPNProtocols: protocols }, () => {
          resolve(socket.alpnProtocol ?? false);
          socket.destroy();
        });
        socket.on('error', reject);
      });
    assert.equal(await alpn(['h2', 'http/1.1']), 'h2');
    await assert.rejects(alpn(['http/1.1']), /ALPN|no application protocol/i);
  });
});

void describe('OTLP receiver with mTLS (client_ca_file)', () => {
  const capture = new Capture();
  let receiver: OtlpReceiver;
  before(async () => {
    receiver = await startReceiver({ cert_file: certs.server.cert, key_file: certs.server.key, client_ca_file: certs.ca }, capture);
  });
  after(() => receiver.shutdown());

  for (const protocol of ['grpc', 'http'] as const) {
    void test(`${protocol}: a client certificate from the CA is accepted; none, one from another CA, or an expired one is refused`, async () => {
      const clients = clientsFor(receiver);
      assert.equal((await sendOne(clients[protocol](certs.client, certs.ca), `span-m${protocol}-ok`)).code, SUCCESS);
      for (const [label, client] of [
        ['none', undefined],
        ['wrong-ca', certs.wrongClient],
        ['expired', certs.expiredClient],
      ] as const) {
        const result = await sendOne(clients[protocol](client, certs.ca, 3000), `span-m${protocol}-${label}`);
        assert.notEqual(result.code, SUCCESS, `${label}: refused`);
      }
      const names = spanNames(capture).filter((n) => n.startsWith(`span-m${protocol}-`));
      assert.deepEqual(names, [`span-m${protocol}-ok`]);
    });
  }
});

void describe('certificate rotation', () => {
  test('a certificate replaced on disk is served without a restart (reload_interval); mTLS still holds after the swap', async () => {
    const live = { cert: `${certs.dir}/live.pem`, key: `${certs.dir}/live.key` };
    fs.copyFileSync(certs.server.cert, live.cert);
    fs.copyFileSync(certs.server.key, live.key);
    const capture = new Capture();
    const receiver = await startReceiver({ cert_file: live.cert, key_file: live.key, client_ca_file: certs.ca, reload_interval: '100ms' }, capture);
    try {
      const served = (port: number) =>
        new Promise<string>((resolve, reject) => {
          const client = { cert: fs.readFileSync(certs.client.cert), key: fs.readFileSync(certs.client.key) };
          const socket = tls.connect({ host: '127.0.0.1', port, ca: fs.readFileSync(certs.ca), ...client, ALPNProtocols: ['h2', 'http/1.1'] }, () => {
            resolve(socket.getPeerCertificate().subject.CN as string);
            socket.destroy();
          });
          socket.on('error', reject);
        });
      assert.equal(await served(receiver.grpcServer!.port), 'localhost');
      const next = certs.issueServer('rotated', 'rotated.localhost');
      // Key first, then the certificate: a half-written pair is skipped until both match.
      fs.copyFileSync(next.key, live.key);
      fs.copyFileSync(next.cert, live.cert);
      for (const port of [receiver.grpcServer!.port, receiver.httpServer!.port]) {
        await waitFor('the rotated certificate to be served', async () => (await served(port)) === 'rotated.localhost', 10_000, 50);
      }
      const clients = clientsFor(receiver);
      assert.equal((await sendOne(clients.grpc(certs.client, certs.ca), 'span-rotated-grpc')).code, SUCCESS);
      assert.equal((await sendOne(clients.http(certs.client, certs.ca), 'span-rotated-http')).code, SUCCESS);
      assert.notEqual((await sendOne(clients.grpc(undefined, certs.ca, 3000), 'span-rotated-nocert')).code, SUCCESS);
      assert.notEqual((await sendOne(clients.http(undefined, certs.ca, 3000), 'span-rotated-nocert')).code, SUCCESS);
      assert.deepEqual(spanNames(capture).sort(), ['span-rotated-grpc', 'span-rotated-http']);
    } finally {
      await receiver.shutdown();
    }
  });
});

void describe('shutdown over TLS', () => {
  test('an HTTPS request in flight when shutdown starts is still answered', async () => {
    let release: () => void = () => undefined;
    let arrived: () => void = () => undefined;
    const inConsumer = new Promise<void>((resolve) => (arrived = resolve));
    const gate = new Promise<void>((resolve) => (release = resolve));
    const slow: Consumer = {
      consume: async (_batch: Batch) => {
        arrived();
        await gate;
      },
    };
    const tlsConfig = { cert_file: certs.server.cert, key_file: certs.server.key };
    const config = parseWith(parseOtlpReceiverConfig, { protocols: { http: { endpoint: '127.0.0.1:0', tls: tlsConfig } } });
    const receiver = new OtlpReceiver(testSettings('otlp'), config, new Map([['traces', slow]]));
    await receiver.start();
    const body = encodeTraces([obiResourceSpans(hostInstance('h', 1), [obiSpan()])]);
    const answer = new Promise<number>((resolve, reject) => {
      const req = https.request(
        { host: '127.0.0.1', port: receiver.httpServer!.port, path: '/v1/traces', method: 'POST', ca: fs.readFileSync(certs.ca), headers: { 'content-type': 'application/x-protobuf' } },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        },
      );
      req.on('error', reject);
      req.end(body);
    });
    await inConsumer;
    const stopped = receiver.shutdown();
    // Past the moment shutdown closes idle connections, well within its grace.
    setTimeout(release, 200);
    assert.equal(await answer, 200);
    await stopped;
  });
});

void describe('TLS config errors', () => {
  test('name the key: missing files, cert without key, bad and crossed versions, no certificate', () => {
    const errors = (tlsConfig: unknown) => configErrors(parseOtlpReceiverConfig, { protocols: { grpc: { tls: tlsConfig } } }, 'receivers::otlp');
    assert.match(errors({ cert_file: '/nonexistent/c.pem', key_file: certs.server.key }).join('\n'), /receivers::otlp::protocols::grpc::tls::cert_file: cannot read \/nonexistent\/c\.pem/);
    assert.match(errors({ cert_file: certs.server.cert }).join('\n'), /tls::key_file: required when cert_file is set/);
    assert.match(errors({ cert_file: certs.server.cert, key_file: certs.server.key, min_version: '1.4' }).join('\n'), /tls::min_version: must be one of "1.0", "1.1", "1.2", "1.3", got "1.4"/);
    assert.match(errors({ cert_file: certs.server.cert, key_file: certs.server.key, min_version: '1.3', max_version: '1.2' }).join('\n'), /tls::min_version: "1.3" is greater than max_version "1.2"/);
    assert.match(errors({ client_ca_file: certs.ca }).join('\n'), /protocols::grpc::tls: a server needs cert_file and key_file/);
    assert.match(errors({ cert_file: certs.server.cert, key_file: certs.server.key, client_ca_file: '/nonexistent/ca.pem' }).join('\n'), /tls::client_ca_file: cannot read/);
    assert.match(errors({ cert_file: certs.server.cert, key_file: certs.server.key, bogus: 1 }).join('\n'), /tls::bogus: unknown key/);
    assert.match(errors({ cert_file: certs.server.cert, key_file: certs.client.key }).join('\n'), /protocols::grpc::tls: the TLS files are not usable: .*key values mismatch/);
    assert.match(errors({ cert_file: certs.server.key, key_file: certs.server.key }).join('\n'), /protocols::grpc::tls: the TLS files are not usable/);
    assert.deepEqual(errors({ cert_file: certs.server.cert, key_file: certs.server.key, min_version: '1.3', reload_interval: '1m' }), []);
  });

  test('min_version 1.3 refuses a TLS 1.2 client', async () => {
    const receiver = await startReceiver({ cert_file: certs.server.cert, key_file: certs.server.key, min_version: '1.3' }, new Capture());
    try {
      const connect = (maxVersion: tls.SecureVersion) =>
        new Promise<string | null>((resolve, reject) => {
          const socket = tls.connect({ host: '127.0.0.1', port: receiver.httpServer!.port, ca: fs.readFileSync(certs.ca), maxVersion }, () => {
            resolve(socket.getProtocol());
            socket.destroy();
          });
          socket.on('error', reject);
        });
      assert.equal(await connect('TLSv1.3'), 'TLSv1.3');
      await assert.rejects(connect('TLSv1.2'), /version|alert/i);
    } finally {
      await receiver.shutdown();
    }
  });
});
