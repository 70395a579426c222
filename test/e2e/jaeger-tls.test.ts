import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import type { Component, Consumer, ExporterFactory } from '../../src/component/component';
import { ConfigIssues, ConfigValidationError, Node } from '../../src/config/reader';
import { otlpExporterFactory } from '../../src/exporters/otlp/otlp-exporter';
import { otlpHttpExporterFactory } from '../../src/exporters/otlphttp/otlphttp-exporter';
import type { Batch } from '../../src/pdata/batch';
import { parseRequest } from '../../src/pdata/scan';
import { OtlpReceiver, parseOtlpReceiverConfig } from '../../src/receivers/otlp/otlp-receiver';
import { SelfTelemetry } from '../../src/service/telemetry';
import { makeTestCerts, type Pair, type TestCerts } from '../helpers/certs';
import { Capture, configErrors, parseWith, testSettings } from '../helpers/components';
import { Jaeger } from '../helpers/jaeger';
import { encodeTraces, hostInstance, obiResourceSpans, obiSpan } from '../helpers/obi';
import { waitFor } from '../helpers/ports';

// TLS and mTLS between spansieve and the real Jaeger v2 binary (grpc-go / Go net/http with the
// Collector's configtls), each direction: spansieve's otlp and otlphttp exporters into Jaeger's
// receiver, and Jaeger's otlp and otlphttp exporters into spansieve's receiver.

const noop = { reportStatus: () => undefined };

function makeExporter(factory: ExporterFactory<unknown>, raw: Record<string, unknown>): Component & Consumer {
  const issues = new ConfigIssues();
  const config = factory.parseConfig(new Node(raw, 'exporters::test', issues));
  if (issues.errors.length > 0) throw new ConfigValidationError(issues.errors);
  return factory.create({ id: `${factory.type}/test`, logger: pino({ level: 'silent' }), telemetry: new SelfTelemetry() }, config);
}

function batchFor(service: string): Batch {
  return parseRequest('traces', encodeTraces([obiResourceSpans(hostInstance('tls-host', 1, service), [obiSpan()])])).batch;
}

/** Sends one span of `service` through a new exporter; resolves with the error, if any. */
async function exportOnce(factory: ExporterFactory<unknown>, raw: Record<string, unknown>, service: string): Promise<Error | undefined> {
  const exporter = makeExporter(factory, { sending_queue: { enabled: false }, retry_on_failure: { enabled: false }, timeout: '10s', ...raw });
  await exporter.start(noop);
  try {
    await exporter.consume(batchFor(service));
    return undefined;
  } catch (err) {
    return err as Error;
  } finally {
    await exporter.shutdown();
  }
}

function tlsYaml(fields: Record<string, string>): string[] {
  return Object.entries(fields).map(([key, value]) => `${key}: ${JSON.stringify(value)}`);
}

let certs: TestCerts;
before(() => {
  certs = makeTestCerts();
});
after(() => certs.remove());

void describe('spansieve exporters into Jaeger over mTLS', () => {
  let jaeger: Jaeger;
  before(async () => {
    jaeger = await Jaeger.start({ receiverTls: tlsYaml({ cert_file: certs.server.cert, key_file: certs.server.key, client_ca_file: certs.ca }) });
  });
  after(() => jaeger.stop());

  const targets = [
    { name: 'otlp', factory: otlpExporterFactory as ExporterFactory<unknown>, endpoint: () => ({ endpoint: `127.0.0.1:${jaeger.otlpGrpcPort}` }) },
    { name: 'otlphttp', factory: otlpHttpExporterFactory as ExporterFactory<unknown>, endpoint: () => ({ endpoint: `https://127.0.0.1:${jaeger.otlpHttpPort}` }) },
  ];
  for (const target of targets) {
    void test(`${target.name}: with a client certificate the span is stored; without one, from another CA, expired, or trusting another CA, the export fails`, async () => {
      const client = (pair: Pair) => ({ cert_file: pair.cert, key_file: pair.key });
      const ok = `tls-${target.name}-ok`;
      assert.equal(await exportOnce(target.factory, { ...target.endpoint(), tls: { ca_file: certs.ca, ...client(certs.client) } }, ok), undefined);
      await waitFor('Jaeger to store the span', async () => (await jaeger.services()).includes(ok), 20_000, 100);
      // Go's TLS server answers each refusal with its own alert, which the error must carry.
      const refused: [string, Record<string, unknown>, RegExp][] = [
        ['no-client-cert', { ca_file: certs.ca }, /certificate required/],
        ['wrong-ca-client', { ca_file: certs.ca, ...client(certs.wrongClient) }, /unknown ca/],
        ['expired-client', { ca_file: certs.ca, ...client(certs.expiredClient) }, /certificate expired/],
        ['trusts-wrong-ca', { ca_file: certs.wrongCa, ...client(certs.client) }, /unable to verify the first certificate/],
      ];
      for (const [label, tls, why] of refused) {
        const err = await exportOnce(target.factory, { ...target.endpoint(), tls }, `tls-${target.name}-${label}`);
        assert.ok(err, `${label}: the export fails`);
        assert.match(err.message, why, label);
      }
      // insecure_skip_verify skips the server check, not the client certificate.
      assert.equal(await exportOnce(target.factory, { ...target.endpoint(), tls: { insecure_skip_verify: true, ...client(certs.client) } }, `${ok}-skip`), undefined);
      const services = await jaeger.services();
      assert.ok(!services.some((s) => s.startsWith(`tls-${target.name}-`) && s !== ok && s !== `${ok}-skip`), services.join());
    });
  }
});

void describe('spansieve exporters against a server certificate', () => {
  test('an expired server certificate, or one for another name, is refused; server_name_override names the expected host', async () => {
    const capture = new Capture();
    const start = async (pair: Pair) => {
      const config = parseWith(parseOtlpReceiverConfig, {
        protocols: { grpc: { endpoint: '127.0.0.1:0', tls: { cert_file: pair.cert, key_file: pair.key } }, http: { endpoint: '127.0.0.1:0', tls: { cert_file: pair.cert, key_file: pair.key } } },
      });
      const receiver = new OtlpReceiver(testSettings('otlp'), config, new Map([['traces', capture]]));
      await receiver.start();
      return receiver;
    };
    const expired = await start(certs.expiredServer);
    const named = await start(certs.issueServer('named', 'collector.example', 'DNS:collector.example'));
    try {
      for (const [factory, endpoint] of [
        [otlpExporterFactory, (r: OtlpReceiver) => `127.0.0.1:${r.grpcServer!.port}`],
        [otlpHttpExporterFactory, (r: OtlpReceiver) => `https://127.0.0.1:${r.httpServer!.port}`],
      ] as const) {
        const f = factory as ExporterFactory<unknown>;
        const err = await exportOnce(f, { endpoint: endpoint(expired), tls: { ca_file: certs.ca } }, 'expired');
        assert.match(String(err?.message), /certificate has expired|CERT_HAS_EXPIRED/i);
        const mismatch = await exportOnce(f, { endpoint: endpoint(named), tls: { ca_file: certs.ca } }, 'named');
        assert.match(String(mismatch?.message), /altnames|Hostname\/IP does not match|ERR_TLS_CERT_ALTNAME_INVALID/i);
        assert.equal(await exportOnce(f, { endpoint: endpoint(named), tls: { ca_file: certs.ca, server_name_override: 'collector.example' } }, 'named-override'), undefined);
      }
      assert.equal(capture.batches.length, 2, 'only the two server_name_override exports arrived');
    } finally {
      await expired.shutdown();
      await named.shutdown();
    }
  });

  test('exporter tls config errors name the key', () => {
    const errors = (tls: unknown) => configErrors(otlpExporterFactory.parseConfig.bind(otlpExporterFactory), { endpoint: '127.0.0.1:4317', tls }, 'exporters::otlp');
    assert.match(errors({ cert_file: certs.client.cert }).join('\n'), /exporters::otlp::tls::key_file: required when cert_file is set/);
    assert.match(errors({ key_file: certs.client.key }).join('\n'), /exporters::otlp::tls::cert_file: required when key_file is set/);
    assert.match(errors({ ca_file: '/nonexistent/ca.pem' }).join('\n'), /exporters::otlp::tls::ca_file: cannot read \/nonexistent\/ca\.pem/);
    assert.match(errors({ max_version: 'TLSv1.3' }).join('\n'), /exporters::otlp::tls::max_version: must be one of/);
    assert.match(errors({ cert_file: certs.client.cert, key_file: certs.server.key }).join('\n'), /exporters::otlp::tls: the TLS files are not usable: .*key values mismatch/);
    assert.deepEqual(errors({ ca_file: certs.ca, cert_file: certs.client.cert, key_file: certs.client.key, server_name_override: 'x', min_version: '1.3' }), []);
  });
});

void describe('Jaeger exporters into spansieve over mTLS', () => {
  test('with a client certificate every span arrives; without one, from another CA, or expired, none does and Jaeger reports a TLS error', async () => {
    // One receiver per exporter, so each Jaeger exporter's deliveries are counted apart.
    const labels = ['ok', 'nocert', 'wrongca', 'expired'] as const;
    const clientFiles: Record<(typeof labels)[number], Record<string, string>> = {
      ok: { cert_file: certs.client.cert, key_file: certs.client.key },
      nocert: {},
      wrongca: { cert_file: certs.wrongClient.cert, key_file: certs.wrongClient.key },
      expired: { cert_file: certs.expiredClient.cert, key_file: certs.expiredClient.key },
    };
    const receivers = new Map<string, { receiver: OtlpReceiver; capture: Capture }>();
    const exporters: Record<string, string[]> = {};
    const serverTls = { cert_file: certs.server.cert, key_file: certs.server.key, client_ca_file: certs.ca };
    // The refused exporters must not retry (their failures are asserted below); the accepted ones
    // may, so that one handshake slowed by a busy machine does not lose a span.
    const common = (label: string) => [
      'retry_on_failure:',
      ...(label === 'ok' ? ['  enabled: true', '  initial_interval: 100ms', '  max_interval: 1s', '  max_elapsed_time: 20s'] : ['  enabled: false']),
      'sending_queue:',
      '  enabled: false',
      'timeout: 5s',
    ];
    for (const label of labels) {
      const tls = ['tls:', ...tlsYaml({ ca_file: certs.ca, ...clientFiles[label] }).map((line) => `  ${line}`)];
      for (const protocol of ['grpc', 'http'] as const) {
        const capture = new Capture();
        const config = parseWith(parseOtlpReceiverConfig, { protocols: { [protocol]: { endpoint: '127.0.0.1:0', tls: serverTls } } });
        const receiver = new OtlpReceiver(testSettings(`otlp/${label}`), config, new Map([['traces', capture]]));
        await receiver.start();
        const name = protocol === 'grpc' ? `otlp/${label}` : `otlphttp/${label}`;
        receivers.set(name, { receiver, capture });
        const endpoint = protocol === 'grpc' ? `127.0.0.1:${receiver.grpcServer!.port}` : `https://127.0.0.1:${receiver.httpServer!.port}`;
        exporters[name] = [`endpoint: ${endpoint}`, ...tls, ...common(label)];
      }
    }
    const jaeger = await Jaeger.start({ exporters });
    try {
      const sent = 5;
      // Jaeger's pipeline has no queue: the refused exporters' errors come back to this sender.
      for (let i = 0; i < sent; i++) {
        // Jaeger calls its exporters one after the other, each refused one for up to its 5 s timeout;
        // a sender that gave up sooner would cancel the call, and the accepted exporters with it.
        await exportOnce(otlpExporterFactory, { endpoint: `127.0.0.1:${jaeger.otlpGrpcPort}`, tls: { insecure: true }, timeout: '60s' }, `from-jaeger-${i}`);
      }
      const spans = (name: string) => receivers.get(name)!.capture.batches.reduce((n, b) => n + b.itemCount, 0);
      const counts = () => [...receivers.keys()].map((name) => `${name}=${spans(name)}`).join(' ');
      await waitFor('every span to arrive through both Jaeger exporters', () => spans('otlp/ok') >= sent && spans('otlphttp/ok') >= sent, 30_000, 100).catch((err: Error) => {
        throw new Error(`${err.message} (${counts()}); Jaeger said: ${jaeger.output.join('').slice(-3000)}`);
      });
      // A retried export whose first attempt was delivered but not answered in time comes twice.
      assert.ok(spans('otlp/ok') <= 2 * sent && spans('otlphttp/ok') <= 2 * sent, counts());
      for (const label of ['nocert', 'wrongca', 'expired'] as const) {
        await waitFor(`Jaeger to report the ${label} exporters' failures`, () => {
          const log = jaeger.output.join('');
          return log.includes(`otlp/${label}`) && log.includes(`otlphttp/${label}`);
        }, 30_000, 100);
        assert.equal(spans(`otlp/${label}`) + spans(`otlphttp/${label}`), 0, `${label}: nothing arrived`);
      }
      assert.match(jaeger.output.join(''), /certificate|tls/i);
    } finally {
      await jaeger.stop();
      for (const { receiver } of receivers.values()) await receiver.shutdown();
    }
  });
});
