import * as grpc from '@grpc/grpc-js';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as http2 from 'node:http2';
import assert from 'node:assert/strict';
import { after, afterEach, describe, test } from 'node:test';
import pino from 'pino';
import type { Component, Consumer, ExporterFactory } from '../../src/component/component';
import { PermanentError, RetryableError } from '../../src/component/errors';
import { ConfigIssues, ConfigValidationError, Node } from '../../src/config/reader';
import { otlpExporterFactory } from '../../src/exporters/otlp/otlp-exporter';
import { parseRetryAfter } from '../../src/exporters/otlp-common';
import { otlpHttpExporterFactory } from '../../src/exporters/otlphttp/otlphttp-exporter';
import type { Batch } from '../../src/pdata/batch';
import { types } from '../../src/pdata/codec';
import { parseRequest } from '../../src/pdata/scan';
import { EXPORT_METHOD } from '../../src/pdata/otlp';
import { rawExportMethod } from '../helpers/grpc';
import { SelfTelemetry } from '../../src/service/telemetry';
import { decompress } from '../../src/util/compression';
import { GrpcSink, HttpSink } from '../helpers/sink';
import { hostInstance, obiTraceRequest } from '../helpers/obi';
import { waitFor } from '../helpers/ports';

const noop = { reportStatus: () => undefined };

function makeExporter(factory: ExporterFactory<unknown>, raw: Record<string, unknown>, telemetry = new SelfTelemetry()): Component & Consumer {
  const issues = new ConfigIssues();
  const config = factory.parseConfig(new Node(raw, 'exporters::test', issues));
  if (issues.errors.length > 0) throw new ConfigValidationError(issues.errors);
  return factory.create({ id: `${factory.type}/test`, logger: pino({ level: 'silent' }), telemetry }, config);
}

function batchOf(instances: number, spans: number): Batch {
  return parseRequest(
    'traces',
    obiTraceRequest(
      Array.from({ length: instances }, (_, i) => hostInstance('h', 1000 + i)),
      spans,
    ),
  ).batch;
}

const fastRetry = { initial_interval: '20ms', max_interval: '50ms', max_elapsed_time: '5s', randomization_factor: 0 };

async function counterValue(telemetry: SelfTelemetry, name: string): Promise<number> {
  const metric = (await telemetry.registry.getMetricsAsJSON()).find((m) => m.name === name);
  return (metric?.values ?? []).reduce((sum, v) => sum + Number(v.value), 0);
}

describe('otlp (gRPC) exporter', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  async function setup(raw: Record<string, unknown>) {
    const sink = new GrpcSink();
    await sink.start();
    const telemetry = new SelfTelemetry();
    const exporter = makeExporter(otlpExporterFactory, { endpoint: `127.0.0.1:${sink.port}`, tls: { insecure: true }, ...raw }, telemetry);
    await exporter.start(noop);
    cleanups.push(
      () => sink.stop(),
      () => exporter.shutdown(),
    );
    return { sink, exporter, telemetry };
  }

  test('forwards kept resources byte-for-byte, with headers', async () => {
    const { sink, exporter, telemetry } = await setup({ headers: { 'x-tenant': 'blue' }, sending_queue: { enabled: false } });
    const batch = batchOf(3, 4);
    await exporter.consume(batch);
    assert.equal(sink.requests.length, 1);
    assert.deepEqual(sink.requests[0]!.body, Buffer.from(batch.toRequestBytes()));
    assert.equal(sink.requests[0]!.headers['x-tenant'], 'blue');
    assert.equal(await counterValue(telemetry, 'otelcol_exporter_sent_spans'), 12);
  });

  for (const compression of ['gzip', 'zstd', 'snappy', 'none'] as const) {
    test(`compression: ${compression} is what goes on the wire`, async () => {
      // A bare HTTP/2 server, to see the grpc-encoding header and the message's compressed flag.
      const seen: { encoding: string | undefined; compressedFlag: number | undefined; message: Buffer }[] = [];
      const server = http2.createServer();
      server.on('stream', (stream, headers) => {
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('end', () => {
          const body = Buffer.concat(chunks);
          seen.push({ encoding: headers['grpc-encoding'] as string | undefined, compressedFlag: body[0], message: body.subarray(5) });
          stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
          stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
          stream.end(Buffer.from([0, 0, 0, 0, 0]));
        });
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
      const port = (server.address() as { port: number }).port;
      const exporter = makeExporter(otlpExporterFactory, {
        endpoint: `127.0.0.1:${port}`,
        tls: { insecure: true },
        compression,
        sending_queue: { enabled: false },
      });
      await exporter.start(noop);
      const batch = batchOf(2, 2);
      try {
        await exporter.consume(batch);
      } finally {
        await exporter.shutdown();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      }
      assert.equal(seen.length, 1);
      const expected = Buffer.from(batch.toRequestBytes());
      if (compression === 'none') {
        assert.equal(seen[0]!.encoding, undefined);
        assert.equal(seen[0]!.compressedFlag, 0);
        assert.deepEqual(seen[0]!.message, expected);
      } else {
        assert.equal(seen[0]!.encoding, compression);
        assert.equal(seen[0]!.compressedFlag, 1);
        // gRPC's snappy codec writes the framing format (it starts with the stream identifier).
        if (compression === 'snappy') assert.equal(seen[0]!.message.subarray(4, 10).toString(), 'sNaPpY');
        assert.deepEqual(await decompress(compression === 'snappy' ? 'x-snappy-framed' : compression, seen[0]!.message, 1 << 20), expected);
      }
    });
  }

  test('retries retryable codes with backoff until success', async () => {
    const { sink, exporter, telemetry } = await setup({ retry_on_failure: fastRetry, sending_queue: { enabled: false } });
    sink.reply = (_r, i) => (i < 2 ? { kind: 'grpc-error', code: grpc.status.UNAVAILABLE, message: 'busy' } : { kind: 'ok' });
    await exporter.consume(batchOf(1, 5));
    assert.equal(sink.requests.length, 3);
    assert.ok(sink.requests[1]!.at - sink.requests[0]!.at >= 15, 'the retry waited for the backoff');
    assert.equal(await counterValue(telemetry, 'otelcol_exporter_sent_spans'), 5);
    assert.equal(await counterValue(telemetry, 'otelcol_exporter_send_failed_spans'), 0);
  });

  test('does not retry INVALID_ARGUMENT, and counts the spans as failed', async () => {
    const { sink, exporter, telemetry } = await setup({ retry_on_failure: fastRetry, sending_queue: { enabled: false } });
    sink.reply = () => ({ kind: 'grpc-error', code: grpc.status.INVALID_ARGUMENT, message: 'bad span' });
    await assert.rejects(exporter.consume(batchOf(1, 2)), (err: Error) => err instanceof PermanentError && /INVALID_ARGUMENT: bad span/.test(err.message));
    assert.equal(sink.requests.length, 1);
    assert.equal(await counterValue(telemetry, 'otelcol_exporter_send_failed_spans'), 2);
  });

  test('RESOURCE_EXHAUSTED is retried only with RetryInfo, after the delay the server asked for', async () => {
    const { sink, exporter } = await setup({ retry_on_failure: { ...fastRetry, initial_interval: '1ms' }, sending_queue: { enabled: false } });
    sink.reply = (_r, i) => (i === 0 ? { kind: 'grpc-error', code: grpc.status.RESOURCE_EXHAUSTED, message: 'slow down', retryAfterMs: 300 } : { kind: 'ok' });
    await exporter.consume(batchOf(1, 1));
    assert.equal(sink.requests.length, 2);
    assert.ok(sink.requests[1]!.at - sink.requests[0]!.at >= 280, `retried after ${sink.requests[1]!.at - sink.requests[0]!.at}ms, not the 300ms asked for`);

    sink.reply = () => ({ kind: 'grpc-error', code: grpc.status.RESOURCE_EXHAUSTED, message: 'no retry info' });
    await assert.rejects(exporter.consume(batchOf(1, 1)), PermanentError);
    assert.equal(sink.requests.length, 3);
  });

  test('gives up when max_elapsed_time has passed', { timeout: 20_000 }, async () => {
    const { sink, exporter, telemetry } = await setup({ retry_on_failure: { ...fastRetry, max_elapsed_time: '200ms' }, sending_queue: { enabled: false } });
    sink.reply = () => ({ kind: 'grpc-error', code: grpc.status.UNAVAILABLE, message: 'down' });
    const started = performance.now();
    await assert.rejects(exporter.consume(batchOf(1, 3)), RetryableError);
    // Only what cannot race on a busy machine: it gave up, after at least the backoff it took, and
    // after at most 6 attempts (waits of 20, 30, 45, 50, 50 ms fit in 200 ms; one more would not).
    const waits = [20, 30, 45, 50, 50];
    const attempts = sink.requests.length;
    assert.ok(attempts >= 1 && attempts <= waits.length + 1, `${attempts} attempts`);
    const waited = waits.slice(0, attempts - 1).reduce((a, b) => a + b, 0);
    assert.ok(performance.now() - started >= waited, `gave up after ${performance.now() - started} ms, before its ${waited} ms of backoff`);
    assert.equal(await counterValue(telemetry, 'otelcol_exporter_send_failed_spans'), 3);
  });

  test('a timed-out call is cancelled and retried', async () => {
    const { sink, exporter } = await setup({ timeout: '150ms', retry_on_failure: fastRetry, sending_queue: { enabled: false } });
    sink.reply = (_r, i) => (i === 0 ? { kind: 'hang' } : { kind: 'ok' });
    await exporter.consume(batchOf(1, 1));
    assert.equal(sink.requests.length, 2);
  });

  test('a full sending queue refuses with a retryable error; shutdown drains what was queued', async () => {
    const { sink, exporter, telemetry } = await setup({
      retry_on_failure: fastRetry,
      sending_queue: { enabled: true, queue_size: 2, num_consumers: 1 },
    });
    let release: (() => void) | undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    // The first request fails until released, holding the only consumer busy.
    let open = false;
    void gate.then(() => (open = true));
    sink.reply = () => (open ? { kind: 'ok' } : { kind: 'grpc-error', code: grpc.status.UNAVAILABLE, message: 'hold' });
    await exporter.consume(batchOf(1, 1)); // taken by the consumer
    await new Promise((resolve) => setTimeout(resolve, 30));
    await exporter.consume(batchOf(1, 1)); // queued
    assert.equal(exporter.wouldRefuse?.(), undefined, 'room for one more: a receiver reads the next request');
    await exporter.consume(batchOf(1, 1)); // queued
    // At capacity: a receiver asking now refuses before reading, with the message consume() gives.
    assert.match(exporter.wouldRefuse?.() ?? '', /^sending queue of exporter otlp\/test is full \(2 batches\)$/);
    await assert.rejects(exporter.consume(batchOf(1, 7)), (err: Error) => err instanceof RetryableError && /queue .* is full/.test(err.message));
    assert.equal(await counterValue(telemetry, 'otelcol_exporter_enqueue_failed_spans'), 7);
    release!();
    await exporter.shutdown();
    await assert.rejects(exporter.consume(batchOf(1, 1)), /shutting down/);
    assert.match(exporter.wouldRefuse?.() ?? '', /shutting down/);
    const delivered = new Set(sink.requests.map((r) => r.body.toString('hex')));
    assert.equal(delivered.size, 3, 'all three accepted batches were delivered before shutdown returned');
    assert.equal(await counterValue(telemetry, 'otelcol_exporter_sent_spans'), 3);
  });
});

describe('otlp (gRPC) exporter over TLS', () => {
  test('verifies the server against ca_file; insecure_skip_verify accepts an unknown CA; neither refuses it', async () => {
    // A self-signed certificate for 127.0.0.1, made for this test.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spansieve-tls-'));
    const key = path.join(dir, 'key.pem');
    const cert = path.join(dir, 'cert.pem');
    const made = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { encoding: 'utf8' });
    assert.equal(made.status, 0, made.stderr);
    const received: number[] = [];
    const server = new grpc.Server();
    const method = rawExportMethod('traces');
    server.register(
      EXPORT_METHOD.traces,
      (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
        received.push(call.request.length);
        callback(null, Buffer.alloc(0));
      },
      method.responseSerialize,
      method.requestDeserialize,
      'unary',
    );
    const credentials = grpc.ServerCredentials.createSsl(null, [{ private_key: fs.readFileSync(key), cert_chain: fs.readFileSync(cert) }]);
    const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', credentials, (err, p) => (err ? reject(err) : resolve(p))));
    const send = async (tls: Record<string, unknown>) => {
      const exporter = makeExporter(otlpExporterFactory, {
        endpoint: `127.0.0.1:${port}`,
        tls,
        sending_queue: { enabled: false },
        retry_on_failure: { enabled: false },
      });
      await exporter.start(noop);
      try {
        await exporter.consume(batchOf(1, 1));
      } finally {
        await exporter.shutdown();
      }
    };
    try {
      await send({ ca_file: cert });
      await send({ insecure_skip_verify: true });
      assert.equal(received.length, 2);
      await assert.rejects(send({}), (err: Error) => err instanceof RetryableError && /UNAVAILABLE: .*(self-signed|self signed|certificate)/i.test(err.message));
      assert.equal(received.length, 2);
    } finally {
      server.forceShutdown();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('sending queue sizers', () => {
  for (const [sizer, capacity, unit] of [
    ['items', 10, (spans: number) => spans],
    ['bytes', 0, (spans: number) => batchOf(1, spans).resources[0]!.bytes.length],
  ] as const) {
    test(`sizer: ${sizer} bounds the queue by ${sizer}`, async () => {
      const sink = new GrpcSink();
      await sink.start();
      let open = false;
      sink.reply = () => (open ? { kind: 'ok' } : { kind: 'grpc-error', code: grpc.status.UNAVAILABLE, message: 'hold' });
      const size = capacity || unit(6) + unit(4);
      const exporter = makeExporter(otlpExporterFactory, {
        endpoint: `127.0.0.1:${sink.port}`,
        tls: { insecure: true },
        retry_on_failure: fastRetry,
        sending_queue: { num_consumers: 1, queue_size: size, sizer },
      });
      await exporter.start(noop);
      try {
        await exporter.consume(batchOf(1, 1)); // taken by the only consumer, which keeps retrying
        await waitFor('the consumer to take the first batch', () => sink.requests.length > 0);
        await exporter.consume(batchOf(1, 6));
        await assert.rejects(exporter.consume(batchOf(1, 6)), new RegExp(`is full \\(${size} ${sizer}\\)`));
        await exporter.consume(batchOf(1, 4));
      } finally {
        open = true;
        await exporter.shutdown();
        await sink.stop();
      }
      assert.equal(new Set(sink.requests.map((r) => r.body.toString('hex'))).size, 3);
    });
  }
});

describe('sending queue copies what it holds', () => {
  for (const factory of [otlpExporterFactory, otlpHttpExporterFactory]) {
    test(`${factory.type}: a queued batch no longer depends on the received request's buffer`, async () => {
      const sink = factory === otlpExporterFactory ? new GrpcSink() : new HttpSink();
      await sink.start();
      let open = false;
      sink.reply = () => (open ? { kind: 'ok' } : factory === otlpExporterFactory ? { kind: 'grpc-error', code: grpc.status.UNAVAILABLE, message: 'hold' } : { kind: 'http-error', status: 503, message: 'hold' });
      const endpoint = factory === otlpExporterFactory ? { endpoint: `127.0.0.1:${sink.port}`, tls: { insecure: true } } : { endpoint: `http://127.0.0.1:${sink.port}` };
      const exporter = makeExporter(factory, { ...endpoint, compression: 'none', retry_on_failure: fastRetry, sending_queue: { num_consumers: 1, queue_size: 10 } });
      await exporter.start(noop);
      const received = Buffer.from(obiTraceRequest([hostInstance('h', 7)], 3));
      const expected = Buffer.from(received);
      try {
        await exporter.consume(batchOf(1, 1)); // holds the only consumer until the sink opens
        await waitFor('the consumer to take the first batch', () => sink.requests.length > 0);
        await exporter.consume(parseRequest('traces', received).batch);
        received.fill(0); // what a reused or freed receive buffer would look like
      } finally {
        open = true;
        await exporter.shutdown();
        await sink.stop();
      }
      assert.deepEqual(sink.requests.at(-1)?.body, expected);
    });
  }
});

describe('otlphttp exporter', () => {
  const sink = new HttpSink();
  after(() => sink.stop());

  async function exporterFor(raw: Record<string, unknown>, telemetry = new SelfTelemetry()) {
    if (sink.port === 0) await sink.start();
    const exporter = makeExporter(otlpHttpExporterFactory, { endpoint: `http://127.0.0.1:${sink.port}`, ...raw }, telemetry);
    await exporter.start(noop);
    return exporter;
  }

  test('protobuf, gzip: the request body is the batch, byte-for-byte', async () => {
    sink.requests.length = 0;
    sink.reply = () => ({ kind: 'ok' });
    const exporter = await exporterFor({ sending_queue: { enabled: false } });
    const batch = batchOf(2, 3);
    await exporter.consume(batch);
    await exporter.shutdown();
    assert.equal(sink.requests.length, 1);
    assert.equal(sink.requests[0]!.headers['content-encoding'], 'gzip');
    assert.equal(sink.requests[0]!.headers['content-type'], 'application/x-protobuf');
    assert.deepEqual(sink.requests[0]!.body, Buffer.from(batch.toRequestBytes()));
  });

  for (const compression of ['zstd', 'snappy', 'x-snappy-framed', 'zlib', 'deflate', 'none'] as const) {
    test(`protobuf, ${compression}: Content-Encoding names it and the body decompresses to the batch`, async () => {
      sink.requests.length = 0;
      const exporter = await exporterFor({ compression, sending_queue: { enabled: false } });
      const batch = batchOf(2, 3);
      await exporter.consume(batch);
      await exporter.shutdown();
      assert.equal(sink.requests[0]!.headers['content-encoding'], compression === 'none' ? undefined : compression);
      assert.deepEqual(sink.requests[0]!.body, Buffer.from(batch.toRequestBytes()));
    });
  }

  test('compression config: unknown names and levels are refused with their key; lz4 is not offered; "" is none', () => {
    const errors = (raw: Record<string, unknown>, factory: ExporterFactory<unknown> = otlpHttpExporterFactory) => {
      const issues = new ConfigIssues();
      factory.parseConfig(new Node({ endpoint: factory === otlpHttpExporterFactory ? 'http://127.0.0.1:4318' : '127.0.0.1:4317', ...raw }, 'exporters::x', issues));
      return issues.errors.join('\n');
    };
    assert.match(errors({ compression: 'lz4' }), /exporters::x::compression: must be one of gzip, zstd, snappy, x-snappy-framed, zlib, deflate, none, got "lz4"/);
    assert.match(errors({ compression: 'deflate' }, otlpExporterFactory), /exporters::x::compression: must be one of gzip, zstd, snappy, none, got "deflate"/);
    assert.match(errors({ compression: 'gzip', compression_params: { level: 12 } }), /exporters::x::compression_params::level: must be -1 \(default\) or 1 \(fastest\) to 9/);
    assert.match(errors({ compression: 'snappy', compression_params: { level: 1 } }), /exporters::x::compression_params::level: is not supported for compression snappy/);
    assert.equal(errors({ compression: 'zstd', compression_params: { level: 11 } }), '');
    assert.equal(errors({ compression: '' }, otlpExporterFactory), '');
  });

  test('encoding: json sends OTLP/JSON with hex ids that decodes to the same spans', async () => {
    sink.requests.length = 0;
    const exporter = await exporterFor({ encoding: 'json', compression: 'none', sending_queue: { enabled: false } });
    const batch = batchOf(1, 2);
    await exporter.consume(batch);
    await exporter.shutdown();
    type Span = { traceId: string; name: string; startTimeUnixNano: string };
    type Request = { resourceSpans: { scopeSpans: { spans: Span[] }[] }[] };
    const json = JSON.parse(sink.requests[0]!.body.toString('utf8')) as Request;
    const expected = types.ExportTraceServiceRequest.toObject(types.ExportTraceServiceRequest.decode(batch.toRequestBytes()), { bytes: String, longs: String }) as Request;
    const firstSpan = json.resourceSpans[0]!.scopeSpans[0]!.spans[0]!;
    const expectedSpan = expected.resourceSpans[0]!.scopeSpans[0]!.spans[0]!;
    assert.equal(firstSpan.traceId, Buffer.from(expectedSpan.traceId, 'base64').toString('hex'));
    assert.match(firstSpan.traceId, /^[0-9a-f]{32}$/);
    assert.equal(firstSpan.name, expectedSpan.name);
    assert.equal(firstSpan.startTimeUnixNano, expectedSpan.startTimeUnixNano);
    assert.equal(json.resourceSpans[0]!.scopeSpans.length, 2);
  });

  test('503 with Retry-After is retried after the given delay; 400 is not retried', async () => {
    sink.requests.length = 0;
    const telemetry = new SelfTelemetry();
    const exporter = await exporterFor({ retry_on_failure: { ...fastRetry, initial_interval: '1ms' }, sending_queue: { enabled: false } }, telemetry);
    sink.reply = (_r, i) => (i === 0 ? { kind: 'http-error', status: 503, message: 'later', retryAfter: '1' } : { kind: 'ok' });
    await exporter.consume(batchOf(1, 1));
    assert.equal(sink.requests.length, 2);
    assert.ok(sink.requests[1]!.at - sink.requests[0]!.at >= 950, 'waited the Retry-After second');

    sink.reply = () => ({ kind: 'http-error', status: 400, message: 'broken payload' });
    await assert.rejects(exporter.consume(batchOf(1, 4)), (err: Error) => err instanceof PermanentError && /HTTP 400.*broken payload/.test(err.message));
    assert.equal(sink.requests.length, 3);
    assert.equal(await counterValue(telemetry, 'otelcol_exporter_send_failed_spans'), 4);
    await exporter.shutdown();
  });

  test('Retry-After accepts seconds and HTTP dates', () => {
    assert.equal(parseRetryAfter('3'), 3000);
    const inFive = new Date(Date.now() + 5000).toUTCString();
    const ms = parseRetryAfter(inFive)!;
    assert.ok(ms > 3000 && ms <= 5000, String(ms));
    assert.equal(parseRetryAfter('soon'), undefined);
  });
});
