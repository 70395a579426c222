import assert from 'node:assert/strict';
import { test } from 'node:test';
import pino from 'pino';
import type { Component, Consumer, ExporterFactory } from '../../src/component/component';
import { ConfigIssues, ConfigValidationError, Node } from '../../src/config/reader';
import { otlpExporterFactory } from '../../src/exporters/otlp/otlp-exporter';
import { otlpHttpExporterFactory } from '../../src/exporters/otlphttp/otlphttp-exporter';
import { attrValueToString } from '../../src/pdata/attributes';
import { parseRequest } from '../../src/pdata/scan';
import { OtlpReceiver, parseOtlpReceiverConfig } from '../../src/receivers/otlp/otlp-receiver';
import { SelfTelemetry } from '../../src/service/telemetry';
import { Capture, parseWith, testSettings } from '../helpers/components';
import { Jaeger } from '../helpers/jaeger';
import { encodeTraces, hostInstance, obiResourceSpans, obiSpan } from '../helpers/obi';
import { waitFor } from '../helpers/ports';

// Every request compression, both ways, between spansieve and the real Jaeger v2 binary (a
// Collector distribution: grpc-go with configgrpc's zstd and snappy codecs, Go net/http with
// confighttp's), in one Jaeger process: spansieve's otlp and otlphttp exporters send into Jaeger's
// OTLP receiver, and Jaeger's traces pipeline hands everything it receives, besides storing it, to
// one otlp or otlphttp exporter per compression, each pointed at a spansieve receiver of its own.

const GRPC = ['zstd', 'snappy', 'gzip', 'none'] as const;
const HTTP = ['zstd', 'snappy', 'x-snappy-framed', 'gzip', 'zlib', 'none'] as const;
const SPANS = 3;

/** What the exporters log at warn or above: an unreadable response from Jaeger would show here. */
const exporterLog: string[] = [];

function makeExporter(factory: ExporterFactory<unknown>, raw: Record<string, unknown>): Component & Consumer {
  const issues = new ConfigIssues();
  const config = factory.parseConfig(new Node(raw, 'exporters::test', issues));
  if (issues.errors.length > 0) throw new ConfigValidationError(issues.errors);
  const logger = pino({ level: 'warn' }, { write: (line: string) => exporterLog.push(line) });
  return factory.create({ id: `${factory.type}/test`, logger, telemetry: new SelfTelemetry() }, config);
}

test('Jaeger v2 <-> spansieve with zstd, snappy, gzip and none (and HTTP x-snappy-framed, zlib): every span arrives both ways', async () => {
  // Jaeger's side: one spansieve receiver per Jaeger exporter, so each one's deliveries count apart.
  const receivers = new Map<string, { receiver: OtlpReceiver; capture: Capture }>();
  const exporters: Record<string, string[]> = {};
  const common = ['retry_on_failure:', '  initial_interval: 100ms', '  max_interval: 1s', '  max_elapsed_time: 30s', 'timeout: 10s'];
  try {
    for (const [protocol, compressions] of [['grpc', GRPC], ['http', HTTP]] as const) {
      for (const compression of compressions) {
        const capture = new Capture();
        const config = parseWith(parseOtlpReceiverConfig, { protocols: { [protocol]: { endpoint: '127.0.0.1:0' } } });
        const receiver = new OtlpReceiver(testSettings(`otlp/${compression}`), config, new Map([['traces', capture]]));
        await receiver.start();
        const name = `${protocol === 'grpc' ? 'otlp' : 'otlphttp'}/${compression}`;
        receivers.set(name, { receiver, capture });
        const endpoint = protocol === 'grpc' ? [`endpoint: 127.0.0.1:${receiver.grpcServer!.port}`, 'tls:', '  insecure: true'] : [`endpoint: http://127.0.0.1:${receiver.httpServer!.port}`];
        exporters[name] = [...endpoint, `compression: ${compression}`, ...common];
      }
    }
    const jaeger = await Jaeger.start({ exporters });
    try {
      // spansieve's side: one export per exporter and compression, each under its own service name.
      const services: string[] = [];
      const targets = [
        ...GRPC.map((compression) => ({ factory: otlpExporterFactory, compression, endpoint: `127.0.0.1:${jaeger.otlpGrpcPort}`, tls: { insecure: true } })),
        ...HTTP.map((compression) => ({ factory: otlpHttpExporterFactory, compression, endpoint: `http://127.0.0.1:${jaeger.otlpHttpPort}`, tls: {} })),
      ];
      for (const target of targets) {
        const service = `${target.factory.type}-${target.compression}`;
        services.push(service);
        const exporter = makeExporter(target.factory, {
          endpoint: target.endpoint,
          tls: target.tls,
          compression: target.compression,
          sending_queue: { enabled: false },
          retry_on_failure: { enabled: false },
          timeout: '10s',
        });
        await exporter.start({ reportStatus: () => undefined });
        try {
          const spans = Array.from({ length: SPANS }, (_, i) => obiSpan({ name: `${service}-${i}` }));
          await exporter.consume(parseRequest('traces', encodeTraces([obiResourceSpans(hostInstance('compression-host', 1, service), spans)])).batch);
        } finally {
          await exporter.shutdown();
        }
      }
      // grpc-go answers in the request's encoding: those responses were read too.
      assert.deepEqual(exporterLog, []);
      const stored = async (service: string) => (await jaeger.traces(service)).reduce((n, t) => n + t.spans.length, 0);
      await waitFor('Jaeger to store every span spansieve sent', async () => (await Promise.all(services.map(stored))).every((n) => n === SPANS), 20_000, 100).catch(
        async (err: Error) => {
          const counts = await Promise.all(services.map(async (s) => `${s}=${await stored(s)}`));
          throw new Error(`${err.message} (${counts.join(' ')}); Jaeger said: ${jaeger.output.join('').slice(-3000)}`);
        },
      );

      // Jaeger forwarded all of it through each of its exporters.
      const received = (name: string) => {
        const perService = new Map<string, number>();
        for (const batch of receivers.get(name)!.capture.batches) {
          for (const block of batch.resources) {
            const service = attrValueToString(block.attributes.get('service.name') ?? '');
            perService.set(service, (perService.get(service) ?? 0) + block.itemCount);
          }
        }
        return perService;
      };
      const complete = (name: string) => services.every((s) => (received(name).get(s) ?? 0) >= SPANS);
      await waitFor('every span to arrive through every Jaeger exporter', () => [...receivers.keys()].every(complete), 30_000, 100).catch((err: Error) => {
        const missing = [...receivers.keys()].filter((name) => !complete(name));
        throw new Error(`${err.message}: incomplete ${missing.map((n) => `${n} (${[...received(n)].map(([s, c]) => `${s}=${c}`).join(' ')})`).join(', ')}; Jaeger said: ${jaeger.output.join('').slice(-3000)}`);
      });
      // A retried export whose first attempt was delivered but not answered in time comes twice, no more.
      for (const name of receivers.keys()) for (const [service, count] of received(name)) assert.ok(count <= 2 * SPANS, `${name}: ${service}=${count}`);
      // No exporter of Jaeger's was refused along the way.
      assert.doesNotMatch(jaeger.output.join(''), /Unimplemented|415|not supported|Exporting failed/i);
    } finally {
      await jaeger.stop();
    }
  } finally {
    for (const { receiver } of receivers.values()) await receiver.shutdown();
  }
});
