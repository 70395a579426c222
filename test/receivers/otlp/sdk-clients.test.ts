import { OTLPTraceExporter as GrpcTraceExporter } from '@opentelemetry/exporter-trace-otlp-grpc';
import { OTLPTraceExporter as JsonTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as ProtoTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, SimpleSpanProcessor, type ReadableSpan, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { decodeToPlain, types } from '../../../src/pdata/codec';
import type { Service } from '../../../src/service/service';
import { freePorts } from '../../helpers/ports';
import { startService } from '../../helpers/service';
import { GrpcSink } from '../../helpers/sink';

// The official OpenTelemetry JS SDK exporters (gRPC, HTTP/protobuf, HTTP/JSON) as clients of
// spansieve: everything they send is accepted, and only the kept process reaches the sink.

type ExportResult = Parameters<Parameters<SpanExporter['export']>[1]>[0];
/** ExportResultCode.SUCCESS in @opentelemetry/core. */
const SUCCESS = 0;

const KEPT_ID = 'web-1:4242';
const DROPPED_ID = 'web-1:9999';

/** Passes spans on to the real exporter and keeps every result it reports. */
class RecordingExporter implements SpanExporter {
  readonly results: ExportResult[] = [];

  constructor(private readonly inner: SpanExporter) {}

  export(spans: ReadableSpan[], resultCallback: (result: ExportResult) => void): void {
    this.inner.export(spans, (result) => {
      this.results.push(result);
      resultCallback(result);
    });
  }

  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush?.() ?? Promise.resolve();
  }
}

interface KeyValue {
  key: string;
  value: Record<string, unknown>;
}

interface PlainSpan {
  name: string;
  traceId: string;
  spanId: string;
  attributes?: KeyValue[];
}

interface PlainResourceSpans {
  resource?: { attributes?: KeyValue[] };
  scopeSpans?: { scope?: { name?: string }; spans?: PlainSpan[] }[];
}

/** An OTLP AnyValue as a plain JS value. */
function anyValue(value: Record<string, unknown>): unknown {
  if ('stringValue' in value) return value.stringValue;
  if ('intValue' in value) return Number(value.intValue);
  if ('doubleValue' in value) return value.doubleValue;
  if ('boolValue' in value) return value.boolValue;
  if ('arrayValue' in value) return ((value.arrayValue as { values?: Record<string, unknown>[] }).values ?? []).map(anyValue);
  return value;
}

function attributeMap(attributes: KeyValue[] | undefined): Record<string, unknown> {
  return Object.fromEntries((attributes ?? []).map((kv) => [kv.key, anyValue(kv.value)]));
}

void describe('OpenTelemetry JS SDK exporters as clients', () => {
  const sink = new GrpcSink();
  let service: Service | undefined;
  let grpcPort = 0;
  let httpPort = 0;

  before(async () => {
    await sink.start();
    [grpcPort = 0, httpPort = 0] = await freePorts(2);
    service = await startService({
      receivers: {
        otlp: {
          protocols: {
            grpc: { endpoint: `127.0.0.1:${grpcPort}` },
            http: { endpoint: `127.0.0.1:${httpPort}` },
          },
        },
      },
      processors: { 'filter/web': { keep: [{ 'service.instance.id': KEPT_ID }] } },
      exporters: {
        'otlp/sink': {
          endpoint: `127.0.0.1:${sink.port}`,
          tls: { insecure: true },
          compression: 'none',
          sending_queue: { enabled: false },
          retry_on_failure: { enabled: false },
        },
      },
      service: {
        pipelines: { traces: { receivers: ['otlp'], processors: ['filter/web'], exporters: ['otlp/sink'] } },
        telemetry: { metrics: { level: 'none' } },
      },
    });
  });

  after(async () => {
    await service?.shutdown();
    await sink.stop();
  });

  const clients: { name: string; exporter: () => SpanExporter }[] = [
    { name: 'exporter-trace-otlp-grpc', exporter: () => new GrpcTraceExporter({ url: `http://127.0.0.1:${grpcPort}`, timeoutMillis: 30_000 }) },
    { name: 'exporter-trace-otlp-proto', exporter: () => new ProtoTraceExporter({ url: `http://127.0.0.1:${httpPort}/v1/traces`, timeoutMillis: 30_000 }) },
    { name: 'exporter-trace-otlp-http (JSON)', exporter: () => new JsonTraceExporter({ url: `http://127.0.0.1:${httpPort}/v1/traces`, timeoutMillis: 30_000 }) },
  ];

  for (const client of clients) {
    void test(`${client.name}: only the kept process's spans reach the sink, with their names and attributes`, async () => {
      const tag = client.name.split(' ')[0]!;
      const keptExporter = new RecordingExporter(client.exporter());
      const droppedExporter = new RecordingExporter(client.exporter());
      const kept = new BasicTracerProvider({
        resource: resourceFromAttributes({ 'service.name': 'web', 'service.instance.id': KEPT_ID, 'host.name': 'web-1' }),
        spanProcessors: [new SimpleSpanProcessor(keptExporter)],
      });
      const dropped = new BasicTracerProvider({
        resource: resourceFromAttributes({ 'service.name': 'web', 'service.instance.id': DROPPED_ID, 'host.name': 'web-1' }),
        spanProcessors: [new SimpleSpanProcessor(droppedExporter)],
      });
      const before = sink.requests.length;
      const sent: { name: string; traceId: string; spanId: string }[] = [];
      try {
        const tracer = kept.getTracer('sdk-clients-test', '1.2.3');
        for (let i = 0; i < 3; i++) {
          const span = tracer.startSpan(`${tag} kept ${i}`, {
            attributes: {
              'http.request.method': 'GET',
              'http.response.status_code': 200 + i,
              'sampling.ratio': 0.25,
              'cache.hit': i % 2 === 0,
              tags: ['a', 'b'],
            },
          });
          sent.push({ name: `${tag} kept ${i}`, traceId: span.spanContext().traceId, spanId: span.spanContext().spanId });
          span.end();
        }
        const droppedTracer = dropped.getTracer('sdk-clients-test', '1.2.3');
        for (let i = 0; i < 2; i++) droppedTracer.startSpan(`${tag} dropped ${i}`, { attributes: { 'http.request.method': 'POST' } }).end();

        await kept.forceFlush();
        await dropped.forceFlush();
      } finally {
        await kept.shutdown();
        await dropped.shutdown();
      }

      // SimpleSpanProcessor exports span by span; every export succeeded, kept or filtered out.
      assert.deepEqual(
        keptExporter.results.map((r) => [r.code, r.error?.message]),
        [
          [SUCCESS, undefined],
          [SUCCESS, undefined],
          [SUCCESS, undefined],
        ],
      );
      assert.deepEqual(
        droppedExporter.results.map((r) => [r.code, r.error?.message]),
        [
          [SUCCESS, undefined],
          [SUCCESS, undefined],
        ],
      );

      // Every export returned only after spansieve had exported synchronously to the sink.
      const resourceSpans = sink.requests
        .slice(before)
        .flatMap((r) => (decodeToPlain(types.ExportTraceServiceRequest, r.body) as { resourceSpans?: PlainResourceSpans[] }).resourceSpans ?? []);
      assert.deepEqual(
        resourceSpans.map((rs) => attributeMap(rs.resource?.attributes)['service.instance.id']),
        [KEPT_ID, KEPT_ID, KEPT_ID],
      );
      for (const rs of resourceSpans) {
        assert.equal(attributeMap(rs.resource?.attributes)['service.name'], 'web');
        assert.equal(attributeMap(rs.resource?.attributes)['host.name'], 'web-1');
        assert.deepEqual(
          (rs.scopeSpans ?? []).map((ss) => ss.scope?.name),
          ['sdk-clients-test'],
        );
      }
      // Each span is its own export, and concurrent exports may arrive in any order.
      const spans = resourceSpans.flatMap((rs) => (rs.scopeSpans ?? []).flatMap((ss) => ss.spans ?? [])).sort((a, b) => a.name.localeCompare(b.name));
      assert.deepEqual(
        spans.map((s) => ({ name: s.name, traceId: s.traceId, spanId: s.spanId })),
        sent,
      );
      spans.forEach((span, i) => {
        assert.equal(span.name, `${tag} kept ${i}`);
        assert.deepEqual(attributeMap(span.attributes), {
          'http.request.method': 'GET',
          'http.response.status_code': 200 + i,
          'sampling.ratio': 0.25,
          'cache.hit': i % 2 === 0,
          tags: ['a', 'b'],
        });
      });
    });
  }
});
