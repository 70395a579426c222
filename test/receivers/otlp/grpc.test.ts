import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import * as http2 from 'node:http2';
import * as zlib from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import { decodeToPlain, types } from '../../../src/pdata/codec';
import { EXPORT_METHOD } from '../../../src/pdata/otlp';
import { loadZstd } from '../../../src/util/compression';
import { snappyFramed, zstdCompress, zstdWithoutContentSize } from '../../helpers/compression';
import { rawExportMethod } from '../../helpers/grpc';
import type { Service } from '../../../src/service/service';
import { encodeTraces, hostInstance, k8sInstance, obiResourceSpans, obiSpan } from '../../helpers/obi';
import { freePorts, waitFor } from '../../helpers/ports';
import { startService } from '../../helpers/service';
import { GrpcSink } from '../../helpers/sink';

// The OTLP/gRPC receiver of a running service, called with a raw-bytes grpc-js client.

const KEPT = hostInstance('web-1', 4242);
const DROPPED = hostInstance('web-1', 9999);
const DROPPED_K8S = k8sInstance('shop', 'cart-7d9f', 'cart');
/** Every suite runs on both HTTP/2 layers the gRPC port can use (`protocols::grpc::http2`). */
const HTTP2_LAYERS = ['spansieve', 'node'] as const;
/** max_recv_msg_size_mib for the receiver: 64 KiB. */
const MAX_RECV_MIB = 0.0625;

interface CallResult {
  readonly err: grpc.ServiceError | null;
  readonly response: Buffer | undefined;
}

/** A unary Export call with raw bytes; never rejects, the error is part of the result. */
function exportCall(client: grpc.Client, path: string, body: Buffer): Promise<CallResult> {
  const method = rawExportMethod('traces');
  return new Promise<CallResult>((resolve) => {
    client.makeUnaryRequest<Buffer, Buffer>(
      path,
      method.requestSerialize,
      method.responseDeserialize,
      body,
      new grpc.Metadata(),
      { deadline: Date.now() + 30_000 },
      (err, response) => resolve({ err: err ?? null, response }),
    );
  });
}

/** What a grpc-js channel with these options puts on the wire for one call, seen by a bare HTTP/2 server. */
async function firstMessageOnTheWire(options: grpc.ChannelOptions, body: Buffer): Promise<{ encoding: string | undefined; compressedFlag: number | undefined; length: number }> {
  const seen: { encoding: string | undefined; compressedFlag: number | undefined; length: number }[] = [];
  const server = http2.createServer();
  server.on('stream', (stream, headers) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      const frame = Buffer.concat(chunks);
      seen.push({ encoding: headers['grpc-encoding'] as string | undefined, compressedFlag: frame[0], length: frame.length > 5 ? frame.readUInt32BE(1) : 0 });
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(Buffer.from([0, 0, 0, 0, 0]));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const c = newClient((server.address() as { port: number }).port, options);
  try {
    const result = await exportCall(c, EXPORT_METHOD.traces, body);
    assert.equal(result.err, null);
  } finally {
    c.close();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
  assert.equal(seen.length, 1);
  return seen[0]!;
}

function newClient(port: number, options: grpc.ChannelOptions = {}): grpc.Client {
  return new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), options);
}

interface PlainSpan {
  spanId: string;
  name: string;
}

function spansOf(body: Buffer): PlainSpan[] {
  const request = decodeToPlain(types.ExportTraceServiceRequest, body) as { resourceSpans?: { scopeSpans?: { spans?: PlainSpan[] }[] }[] };
  return (request.resourceSpans ?? []).flatMap((rs) => (rs.scopeSpans ?? []).flatMap((ss) => ss.spans ?? []));
}

function sinkExporter(sinkPort: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    endpoint: `127.0.0.1:${sinkPort}`,
    tls: { insecure: true },
    compression: 'none',
    sending_queue: { enabled: false },
    retry_on_failure: { enabled: false },
    ...extra,
  };
}

for (const layer of HTTP2_LAYERS) void describe(`OTLP/gRPC receiver (http2: ${layer})`, () => {
  const sink = new GrpcSink();
  let service: Service | undefined;
  let client: grpc.Client | undefined;
  let gzipClient: grpc.Client | undefined;
  let grpcPort = 0;

  before(async () => {
    await loadZstd();
    await sink.start();
    const [gp = 0, httpPort = 0] = await freePorts(2);
    grpcPort = gp;
    service = await startService({
      receivers: {
        otlp: {
          protocols: {
            grpc: { endpoint: `127.0.0.1:${grpcPort}`, http2: layer, max_recv_msg_size_mib: MAX_RECV_MIB },
            http: { endpoint: `127.0.0.1:${httpPort}` },
          },
        },
      },
      processors: { 'filter/web': { keep: [{ 'service.instance.id': KEPT.instanceId }] } },
      exporters: { 'otlp/sink': sinkExporter(sink.port) },
      service: {
        pipelines: { traces: { receivers: ['otlp'], processors: ['filter/web'], exporters: ['otlp/sink'] } },
        telemetry: { metrics: { level: 'none' } },
      },
    });
    client = newClient(grpcPort);
    // grpc-js: 2 = gzip for every message this channel sends.
    gzipClient = newClient(grpcPort, { 'grpc.default_compression_algorithm': 2 });
  });

  after(async () => {
    client?.close();
    gzipClient?.close();
    await service?.shutdown();
    await sink.stop();
  });

  async function newSinkRequests(fn: () => Promise<void>): Promise<Buffer[]> {
    const before = sink.requests.length;
    await fn();
    return sink.requests.slice(before).map((r) => r.body);
  }

  void test('valid request: OK with an empty response; only the kept process reaches the sink, byte for byte', async () => {
    const kept = obiResourceSpans(KEPT, [obiSpan({ name: 'GET /users/*' }), obiSpan({ name: 'POST /orders' })]);
    let result: CallResult | undefined;
    const forwarded = await newSinkRequests(async () => {
      result = await exportCall(client!, EXPORT_METHOD.traces, encodeTraces([obiResourceSpans(DROPPED, [obiSpan()]), kept, obiResourceSpans(DROPPED_K8S, [obiSpan()])]));
    });
    assert.equal(result?.err, null);
    assert.equal(result.response?.length, 0);
    assert.deepEqual(types.ExportTraceServiceResponse.toObject(types.ExportTraceServiceResponse.decode(result.response)), {});
    assert.equal(forwarded.length, 1);
    assert.deepEqual(forwarded[0], encodeTraces([kept]));
    assert.deepEqual(
      spansOf(forwarded[0]).map((s) => [s.name, s.spanId]),
      [
        ['GET /users/*', kept.scopeSpans[0]!.spans[0]!.spanId.toString('hex')],
        ['POST /orders', kept.scopeSpans[1]!.spans[0]!.spanId.toString('hex')],
      ],
    );
  });

  void test('gzip-compressed call: decompressed and forwarded', async () => {
    // Compressible: many similar spans, still under the 64 KiB limit once compressed and uncompressed.
    const kept = obiResourceSpans(KEPT, Array.from({ length: 20 }, (_, i) => obiSpan({ name: `gzip-${i}` })));
    const body = encodeTraces([kept, obiResourceSpans(DROPPED, [obiSpan()])]);
    assert.ok(body.length < MAX_RECV_MIB * 1024 * 1024);
    // The premise: a channel with these options really sends gzip (header and compressed flag).
    const onTheWire = await firstMessageOnTheWire({ 'grpc.default_compression_algorithm': 2 }, body);
    assert.equal(onTheWire.encoding, 'gzip');
    assert.equal(onTheWire.compressedFlag, 1);
    assert.ok(onTheWire.length < body.length, 'the message was compressed');

    let result: CallResult | undefined;
    const forwarded = await newSinkRequests(async () => {
      result = await exportCall(gzipClient!, EXPORT_METHOD.traces, body);
    });
    assert.equal(result?.err, null);
    assert.equal(result.response?.length, 0);
    assert.equal(forwarded.length, 1);
    assert.deepEqual(forwarded[0], encodeTraces([kept]));
    assert.equal(spansOf(forwarded[0]).length, 20);
  });

  void test('partial success: a span with an all-zero trace id is rejected and named, the rest arrive', async () => {
    const good = obiSpan({ name: 'good' });
    const kept = obiResourceSpans(KEPT, [obiSpan({ name: 'bad', traceId: Buffer.alloc(16) }), good]);
    let result: CallResult | undefined;
    const forwarded = await newSinkRequests(async () => {
      result = await exportCall(client!, EXPORT_METHOD.traces, encodeTraces([kept]));
    });
    assert.equal(result?.err, null);
    const response = types.ExportTraceServiceResponse.toObject(types.ExportTraceServiceResponse.decode(result.response!), { longs: Number }) as {
      partialSuccess?: { rejectedSpans?: number; errorMessage?: string };
    };
    assert.equal(response.partialSuccess?.rejectedSpans, 1);
    assert.match(response.partialSuccess?.errorMessage ?? '', /resource_spans\[0\]\.scope_spans\[0\]\.spans\[0\]: trace_id is all zeros/);
    assert.equal(forwarded.length, 1);
    assert.deepEqual(
      spansOf(forwarded[0]!).map((s) => [s.name, s.spanId]),
      [['good', good.spanId.toString('hex')]],
    );
  });

  void test('malformed protobuf: INVALID_ARGUMENT naming the problem, nothing exported', async () => {
    let result: CallResult | undefined;
    const forwarded = await newSinkRequests(async () => {
      result = await exportCall(client!, EXPORT_METHOD.traces, Buffer.from([0x0a, 0xff, 0x01, 0x00]));
    });
    assert.equal(result?.err?.code, grpc.status.INVALID_ARGUMENT);
    assert.match(result.err.details, /^invalid OTLP protobuf traces request: /);
    assert.match(result.err.details, /length 255 runs past the end of the message/);
    assert.equal(forwarded.length, 0);

    // A wrong wire type for resource_spans is named too.
    const wrongType = await exportCall(client!, EXPORT_METHOD.traces, Buffer.from([0x08, 0x01]));
    assert.equal(wrongType.err?.code, grpc.status.INVALID_ARGUMENT);
    assert.match(wrongType.err.details, /resource_spans: wrong wire type 0/);
  });

  void test('a message over max_recv_msg_size_mib: RESOURCE_EXHAUSTED', async () => {
    const big = encodeTraces([obiResourceSpans(KEPT, Array.from({ length: 300 }, () => obiSpan()))]);
    assert.ok(big.length > MAX_RECV_MIB * 1024 * 1024, `${big.length} bytes is over the limit`);
    let result: CallResult | undefined;
    const forwarded = await newSinkRequests(async () => {
      result = await exportCall(client!, EXPORT_METHOD.traces, big);
    });
    assert.equal(result?.err?.code, grpc.status.RESOURCE_EXHAUSTED);
    assert.match(result.err.details, new RegExp(`request message of ${big.length} bytes exceeds max_recv_msg_size_mib \\(${MAX_RECV_MIB * 1024 * 1024} bytes\\)`));
    assert.equal(forwarded.length, 0);
  });

  void test('MetricsService/Export without a metrics pipeline: UNIMPLEMENTED', async () => {
    const body = Buffer.from(types.ExportMetricsServiceRequest.encode(types.ExportMetricsServiceRequest.fromObject({})).finish());
    const result = await exportCall(client!, EXPORT_METHOD.metrics, body);
    assert.equal(result.err?.code, grpc.status.UNIMPLEMENTED);
    assert.match(result.err.details, /MetricsService\/Export/);
  });

  void test('after all of that, the service still serves valid requests on both channels', async () => {
    for (const c of [client!, gzipClient!]) {
      const kept = obiResourceSpans(KEPT, [obiSpan({ name: 'still-alive' })]);
      let result: CallResult | undefined;
      const forwarded = await newSinkRequests(async () => {
        result = await exportCall(c, EXPORT_METHOD.traces, encodeTraces([kept]));
      });
      assert.equal(result?.err, null);
      assert.equal(forwarded.length, 1);
      assert.deepEqual(forwarded[0], encodeTraces([kept]));
    }
  });
});

for (const layer of HTTP2_LAYERS) void describe(`OTLP/gRPC receiver when the exporter queue is full (http2: ${layer})`, () => {
  const sink = new GrpcSink();
  let service: Service | undefined;
  let client: grpc.Client | undefined;

  before(async () => {
    await sink.start();
    // The sink never answers: the one consumer hangs until the exporter's timeout, the queue fills.
    sink.reply = () => ({ kind: 'hang' });
    const [grpcPort = 0] = await freePorts(1);
    service = await startService({
      receivers: { otlp: { protocols: { grpc: { endpoint: `127.0.0.1:${grpcPort}`, http2: layer } } } },
      exporters: {
        'otlp/sink': sinkExporter(sink.port, { timeout: '500ms', sending_queue: { enabled: true, queue_size: 1, num_consumers: 1 } }),
      },
      service: {
        pipelines: { traces: { receivers: ['otlp'], exporters: ['otlp/sink'] } },
        telemetry: { metrics: { level: 'none' } },
      },
    });
    client = newClient(grpcPort);
  });

  after(async () => {
    client?.close();
    // Answer from now on, so the drain on shutdown ends once the hung call's timeout fires.
    sink.reply = () => ({ kind: 'ok' });
    await service?.shutdown();
    await sink.stop();
  });

  void test('UNAVAILABLE with a RetryInfo in grpc-status-details-bin', async () => {
    let refused: grpc.ServiceError | undefined;
    let accepted = 0;
    // One batch in flight + one queued fill it; keep sending until a request is refused (a slow
    // machine may let the in-flight call time out in between).
    for (let i = 0; i < 50 && !refused; i++) {
      const result = await exportCall(client!, EXPORT_METHOD.traces, encodeTraces([obiResourceSpans(KEPT, [obiSpan({ name: `queued-${i}` })])]));
      if (result.err) refused = result.err;
      else accepted++;
    }
    assert.ok(refused, 'a request was refused');
    assert.ok(accepted >= 2, `at least two requests were taken before the queue was full, got ${accepted}`);
    assert.equal(refused.code, grpc.status.UNAVAILABLE);
    assert.match(refused.details, /sending queue of exporter otlp\/sink is full \(1 batches\)/);

    const raw = refused.metadata.get('grpc-status-details-bin')[0];
    assert.ok(raw instanceof Buffer, 'grpc-status-details-bin is present');
    const status = types.Status.toObject(types.Status.decode(raw), { longs: Number }) as {
      code?: number;
      message?: string;
      details?: { typeUrl?: string; value?: Uint8Array }[];
    };
    assert.equal(status.code, grpc.status.UNAVAILABLE);
    assert.match(status.message ?? '', /sending queue of exporter otlp\/sink is full/);
    assert.equal(status.details?.length, 1);
    assert.equal(status.details[0]!.typeUrl, 'type.googleapis.com/google.rpc.RetryInfo');
    const retryInfo = types.RetryInfo.toObject(types.RetryInfo.decode(status.details[0]!.value!), { longs: Number, defaults: true }) as {
      retryDelay?: { seconds?: number; nanos?: number };
    };
    assert.deepEqual(retryInfo.retryDelay, { seconds: 1, nanos: 0 });

    // Once the sink answers again, the queued batch goes out: every accepted batch reaches the sink.
    sink.reply = () => ({ kind: 'ok' });
    await waitFor(`all ${accepted} accepted batches to reach the sink`, () => sink.requests.length === accepted, 30_000);
    assert.equal(sink.spanCount(), accepted);
  });
});

interface RawResponse {
  readonly status: number;
  readonly headers: http2.IncomingHttpHeaders;
  /** Trailers; for a trailers-only response, the headers. */
  readonly trailers: http2.IncomingHttpHeaders;
  readonly body: Buffer;
}

/** One HTTP/2 request with exactly these headers and body bytes: what a non-grpc-js client could send. */
function rawCall(port: number, headers: http2.OutgoingHttpHeaders, body: Buffer): Promise<RawResponse> {
  return new Promise<RawResponse>((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', reject);
    const requestHeaders = { ':method': 'POST', ':path': EXPORT_METHOD.traces, 'content-type': 'application/grpc', te: 'trailers', ...headers };
    const bodyless = requestHeaders[':method'] === 'GET';
    const stream = session.request(requestHeaders, { endStream: bodyless });
    let responseHeaders: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    stream.on('response', (h) => {
      responseHeaders = h;
      if (h['grpc-status'] !== undefined) trailers = h;
    });
    stream.on('trailers', (t: http2.IncomingHttpHeaders) => {
      trailers = t;
    });
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('error', reject);
    stream.on('close', () => {
      session.close();
      resolve({ status: Number(responseHeaders[':status']), headers: responseHeaders, trailers, body: Buffer.concat(chunks) });
    });
    if (!bodyless) stream.end(body);
  });
}

function framed(message: Buffer, compressedFlag = 0): Buffer {
  const prefix = Buffer.alloc(5);
  prefix[0] = compressedFlag;
  prefix.writeUInt32BE(message.length, 1);
  return Buffer.concat([prefix, message]);
}

for (const layer of HTTP2_LAYERS) void describe(`OTLP/gRPC receiver at the protocol level (raw HTTP/2 client) (http2: ${layer})`, () => {
  const sink = new GrpcSink();
  let service: Service | undefined;
  let grpcPort = 0;

  before(async () => {
    await sink.start();
    [grpcPort = 0] = await freePorts(1);
    service = await startService({
      receivers: { otlp: { protocols: { grpc: { endpoint: `127.0.0.1:${grpcPort}`, http2: layer, max_recv_msg_size_mib: MAX_RECV_MIB } } } },
      processors: { 'filter/web': { keep: [{ 'service.instance.id': KEPT.instanceId }] } },
      exporters: { 'otlp/sink': sinkExporter(sink.port) },
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

  const keptRequest = () => encodeTraces([obiResourceSpans(KEPT, [obiSpan({ name: 'raw' })]), obiResourceSpans(DROPPED, [obiSpan()])]);

  void test('a plain call: headers, one empty message, grpc-status 0 in trailers; deflate and gzip messages too', async () => {
    const plain = await rawCall(grpcPort, {}, framed(keptRequest()));
    assert.equal(plain.status, 200);
    assert.equal(plain.headers['content-type'], 'application/grpc');
    assert.equal(plain.trailers['grpc-status'], '0');
    assert.deepEqual(plain.body, Buffer.alloc(5), 'one uncompressed empty message');

    const before = sink.requests.length;
    const encodings = [
      ['deflate', zlib.deflateSync],
      ['gzip', zlib.gzipSync],
      ['zstd', (b: Uint8Array) => zstdCompress(b)],
      // gRPC's snappy codec writes the framing format.
      ['snappy', (b: Uint8Array) => snappyFramed(b)],
    ] as const;
    for (const [encoding, compress] of encodings) {
      const result = await rawCall(grpcPort, { 'grpc-encoding': encoding }, framed(Buffer.from(compress(keptRequest())), 1));
      assert.equal(result.trailers['grpc-status'], '0', `${encoding}: ${String(result.trailers['grpc-message'])}`);
    }
    // grpc-encoding names the algorithm; a message may still be sent uncompressed (flag 0).
    const uncompressedOnGzipCall = await rawCall(grpcPort, { 'grpc-encoding': 'gzip' }, framed(keptRequest()));
    assert.equal(uncompressedOnGzipCall.trailers['grpc-status'], '0');
    await waitFor('five forwarded requests', () => sink.requests.length === before + 5);
    for (const r of sink.requests.slice(before)) assert.deepEqual(spansOf(r.body).map((s) => s.name), ['raw']);
  });

  void test('a prefix split over 1- and 2-byte DATA frames and 30 calls interleaved on one connection are forwarded intact', async () => {
    const before = sink.requests.length;
    const session = http2.connect(`http://127.0.0.1:${grpcPort}`);
    try {
      const calls = Array.from({ length: 30 }, (_, i) => {
        const body = framed(encodeTraces([obiResourceSpans(KEPT, Array.from({ length: 1 + (i % 7) }, (_, j) => obiSpan({ name: `call-${i}-${j}` }))), obiResourceSpans(DROPPED, [obiSpan()])]));
        return new Promise<string>((resolve, reject) => {
          const stream = session.request({ ':method': 'POST', ':path': EXPORT_METHOD.traces, 'content-type': 'application/grpc', te: 'trailers' });
          let status = '';
          stream.on('response', (h) => (status = String(h['grpc-status'] ?? '')));
          stream.on('trailers', (t: http2.IncomingHttpHeaders) => (status = String(t['grpc-status'])));
          stream.resume();
          stream.on('error', reject);
          stream.on('close', () => resolve(status));
          // Every write is its own DATA frame; the writes of all calls interleave on the connection.
          const cuts = i % 3 === 0 ? [1, 2, 4, 5, 40] : [2, 5, 60];
          let from = 0;
          const next = (k: number) => {
            if (k === cuts.length) {
              stream.end(body.subarray(from));
              return;
            }
            stream.write(body.subarray(from, cuts[k]), () => setImmediate(() => next(k + 1)));
            from = cuts[k]!;
          };
          next(0);
        });
      });
      assert.deepEqual(await Promise.all(calls), Array.from({ length: 30 }, () => '0'));
    } finally {
      session.close();
    }
    await waitFor('30 forwarded requests', () => sink.requests.length >= before + 30);
    const names = sink.requests.slice(before).flatMap((r) => spansOf(r.body).map((span) => span.name)).sort();
    const expected = Array.from({ length: 30 }, (_, i) => Array.from({ length: 1 + (i % 7) }, (_, j) => `call-${i}-${j}`)).flat().sort();
    assert.deepEqual(names, expected);
  });

  void test('framing errors get a status naming the problem, and nothing is forwarded', async () => {
    const before = sink.requests.length;
    const message = keptRequest();
    const cases: [string, http2.OutgoingHttpHeaders, Buffer, number, RegExp][] = [
      ['no message', {}, Buffer.alloc(0), grpc.status.INTERNAL, /no request message/],
      ['short prefix', {}, Buffer.from([0, 0, 0]), grpc.status.INTERNAL, /truncated message prefix \(3 bytes\)/],
      ['truncated', {}, framed(message).subarray(0, 50), grpc.status.INTERNAL, new RegExp(`prefix says ${message.length} bytes, 45 arrived`)],
      ['two messages', {}, Buffer.concat([framed(message), framed(message)]), grpc.status.INTERNAL, /more than one request message/],
      ['bad flag', {}, framed(message, 7), grpc.status.INTERNAL, /invalid compressed-flag byte 7/],
      ['compressed without encoding', {}, framed(zlib.gzipSync(message), 1), grpc.status.INTERNAL, /marked compressed but the call has no grpc-encoding/],
      ['corrupt gzip', { 'grpc-encoding': 'gzip' }, framed(Buffer.from('not gzip at all'), 1), grpc.status.INVALID_ARGUMENT, /invalid gzip message/],
      ['corrupt zstd', { 'grpc-encoding': 'zstd' }, framed(Buffer.from('not zstd at all'), 1), grpc.status.INVALID_ARGUMENT, /invalid zstd message: not a zstd frame/],
      ['truncated zstd', { 'grpc-encoding': 'zstd' }, framed(Buffer.from(zstdCompress(message)).subarray(0, 20), 1), grpc.status.INVALID_ARGUMENT, /invalid zstd message: truncated zstd frame/],
      ['corrupt snappy', { 'grpc-encoding': 'snappy' }, framed(Buffer.from('not snappy at all'), 1), grpc.status.INVALID_ARGUMENT, /invalid snappy message: invalid snappy/],
      ['unknown encoding', { 'grpc-encoding': 'lz4' }, framed(message), grpc.status.UNIMPLEMENTED, /grpc-encoding "lz4" is not supported; use identity,gzip,deflate,zstd,snappy/],
      ['unknown method', { ':path': '/opentelemetry.proto.collector.logs.v1.LogsService/Export' }, framed(message), grpc.status.UNIMPLEMENTED, /unknown method \/opentelemetry\.proto\.collector\.logs\.v1\.LogsService\/Export; this receiver serves \/opentelemetry\.proto\.collector\.trace\.v1\.TraceService\/Export/],
    ];
    // A long path is named, not echoed whole (grpc-message must stay a small header).
    const longPath = `/${'x'.repeat(8000)}/Export`;
    cases.push(['unknown method, 8 KB path', { ':path': longPath }, framed(message), grpc.status.UNIMPLEMENTED, /^unknown method \/x{199}\.\.\. \(8008 characters\); this receiver serves/]);
    for (const [name, headers, body, code, message] of cases) {
      const result = await rawCall(grpcPort, headers, body);
      assert.ok(String(result.trailers['grpc-message'] ?? '').length < 1000, `${name}: grpc-message stays short`);
      assert.equal(result.status, 200, name);
      assert.equal(result.trailers['grpc-status'], String(code), `${name}: ${String(result.trailers['grpc-message'])}`);
      assert.match(decodeURIComponent(String(result.trailers['grpc-message'])), message, name);
    }
    // A bomb: 10 MiB of zeros gzip to ~10 KiB, well under the 64 KiB limit until inflated.
    const bomb = zlib.gzipSync(Buffer.alloc(10 * 1024 * 1024));
    const bombed = await rawCall(grpcPort, { 'grpc-encoding': 'gzip' }, framed(bomb, 1));
    assert.equal(bombed.trailers['grpc-status'], String(grpc.status.RESOURCE_EXHAUSTED));
    assert.match(decodeURIComponent(String(bombed.trailers['grpc-message'])), /decompressed request message exceeds max_recv_msg_size_mib \(65536 bytes\)/);
    // The same with zstd (declared content size; and none, as a streaming encoder writes) and snappy.
    const zeros = Buffer.alloc(10 * 1024 * 1024);
    const bombs: [string, Uint8Array][] = [
      ['zstd', zstdCompress(zeros)],
      ['zstd', zstdWithoutContentSize(80)],
      ['snappy', snappyFramed(zeros.subarray(0, 1024 * 1024))],
    ];
    for (const [encoding, payload] of bombs) {
      const result = await rawCall(grpcPort, { 'grpc-encoding': encoding }, framed(Buffer.from(payload), 1));
      assert.equal(result.trailers['grpc-status'], String(grpc.status.RESOURCE_EXHAUSTED), `${encoding}: ${String(result.trailers['grpc-message'])}`);
      assert.match(decodeURIComponent(String(result.trailers['grpc-message'])), /decompressed request message exceeds max_recv_msg_size_mib \(65536 bytes\)/);
    }
    assert.equal(sink.requests.length, before);
  });

  void test('the connection window is opened to 16 MiB, so a client can send whole requests without waiting', async () => {
    const session = http2.connect(`http://127.0.0.1:${grpcPort}`);
    try {
      await waitFor('the server to open its connection window', () => session.state.remoteWindowSize === 16 * 1024 * 1024, 3000, 20);
    } finally {
      session.destroy();
    }
  });

  void test('not gRPC: HTTP 415 for another content-type (gRPC-Web included), 405 for GET', async () => {
    const json = await rawCall(grpcPort, { 'content-type': 'application/json' }, Buffer.from('{}'));
    assert.equal(json.status, 415);
    assert.match(json.body.toString(), /unsupported content-type "application\/json"; this port serves OTLP\/gRPC/);
    const grpcWeb = await rawCall(grpcPort, { 'content-type': 'application/grpc-web+proto' }, framed(keptRequest()));
    assert.equal(grpcWeb.status, 415);
    for (const contentType of ['application/grpc+proto', 'application/grpc; charset=utf-8']) {
      const accepted = await rawCall(grpcPort, { 'content-type': contentType }, framed(keptRequest()));
      assert.equal(accepted.trailers['grpc-status'], '0', contentType);
    }
    const get = await rawCall(grpcPort, { ':method': 'GET' }, Buffer.alloc(0));
    assert.equal(get.status, 405);
  });

  void test('a status message with non-ASCII text is percent-encoded and arrives intact', async () => {
    // A span name is not in the message; the located error is. Use a bad UTF-8 key to get one.
    const result = await rawCall(grpcPort, {}, framed(Buffer.from([0x0a, 0x03, 0x0a, 0x01, 0xff])));
    assert.equal(result.trailers['grpc-status'], String(grpc.status.INVALID_ARGUMENT));
    const text = String(result.trailers['grpc-message']);
    assert.doesNotMatch(text, /[^\x20-\x7e]/, 'only printable ASCII on the wire');
    assert.match(decodeURIComponent(text), /^invalid OTLP protobuf traces request: /);
  });

  void test('bytes beyond the declared message are refused as they arrive, not buffered until the end', async () => {
    const session = http2.connect(`http://127.0.0.1:${grpcPort}`);
    try {
      const stream = session.request({ ':method': 'POST', ':path': EXPORT_METHOD.traces, 'content-type': 'application/grpc', te: 'trailers' });
      stream.on('error', () => undefined);
      const answered = new Promise<http2.IncomingHttpHeaders>((resolve) => stream.on('response', resolve));
      // A 0-byte message, then more and more data, and the stream never ends.
      stream.write(framed(Buffer.alloc(0)));
      stream.write(Buffer.alloc(256 * 1024));
      const headers = await answered;
      assert.equal(headers['grpc-status'], String(grpc.status.INTERNAL));
      assert.match(decodeURIComponent(String(headers['grpc-message'])), /more than one request message/);
    } finally {
      session.destroy();
    }
  });

  void test('a call the client cancels does not disturb the server', async () => {
    const session = http2.connect(`http://127.0.0.1:${grpcPort}`);
    const stream = session.request({ ':method': 'POST', ':path': EXPORT_METHOD.traces, 'content-type': 'application/grpc', te: 'trailers' });
    stream.on('error', () => undefined);
    stream.write(framed(keptRequest()).subarray(0, 20));
    await new Promise((resolve) => setTimeout(resolve, 50));
    stream.close(http2.constants.NGHTTP2_CANCEL);
    session.destroy();
    const after = await rawCall(grpcPort, {}, framed(keptRequest()));
    assert.equal(after.trailers['grpc-status'], '0');
  });
});

for (const layer of HTTP2_LAYERS) void describe(`OTLP/gRPC receiver shutdown (http2: ${layer})`, () => {
  void test('a call in flight when shutdown starts is answered; new connections are refused', async () => {
    const sink = new GrpcSink();
    await sink.start();
    const [grpcPort = 0] = await freePorts(1);
    const service = await startService({
      receivers: { otlp: { protocols: { grpc: { endpoint: `127.0.0.1:${grpcPort}`, http2: layer } } } },
      exporters: { 'otlp/sink': sinkExporter(sink.port, { sending_queue: { enabled: false } }) },
      service: { pipelines: { traces: { receivers: ['otlp'], exporters: ['otlp/sink'] } }, telemetry: { metrics: { level: 'none' } } },
    });
    let stopped: Promise<void> | undefined;
    try {
      const session = http2.connect(`http://127.0.0.1:${grpcPort}`);
      await new Promise<void>((resolve) => session.once('connect', () => resolve()));
      // Start the call but hold back its last byte until shutdown has begun.
      const body = framed(encodeTraces([obiResourceSpans(KEPT, [obiSpan({ name: 'in-flight' })])]));
      const stream = session.request({ ':method': 'POST', ':path': EXPORT_METHOD.traces, 'content-type': 'application/grpc', te: 'trailers' });
      let trailers: http2.IncomingHttpHeaders = {};
      stream.on('trailers', (t: http2.IncomingHttpHeaders) => (trailers = t));
      stream.resume();
      const closed = new Promise<void>((resolve) => stream.on('close', () => resolve()));
      stream.write(body.subarray(0, body.length - 1));
      await new Promise((resolve) => setTimeout(resolve, 50));
      stopped = service.shutdown();
      await new Promise((resolve) => setTimeout(resolve, 50));
      stream.end(body.subarray(body.length - 1));
      await closed;
      assert.equal(trailers['grpc-status'], '0', 'the in-flight call completed');
      await stopped;
      assert.deepEqual(sink.requests.map((r) => spansOf(r.body).map((s) => s.name)), [['in-flight']]);
      session.destroy();
      await assert.rejects(rawCall(grpcPort, {}, framed(encodeTraces([]))), /ECONNREFUSED/);
    } finally {
      await (stopped ?? service.shutdown());
      await sink.stop();
    }
  });
});
