import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import * as http2 from 'node:http2';
import { after, before, describe, test } from 'node:test';
import { decodeToPlain, types } from '../../../src/pdata/codec';
import { EXPORT_METHOD, rawExportMethod } from '../../../src/receivers/otlp/grpc-server';
import type { Service } from '../../../src/service/service';
import { encodeTraces, hostInstance, k8sInstance, obiResourceSpans, obiSpan } from '../../helpers/obi';
import { freePorts, waitFor } from '../../helpers/ports';
import { startService } from '../../helpers/service';
import { GrpcSink } from '../../helpers/sink';

// The OTLP/gRPC receiver of a running service, called with a raw-bytes grpc-js client.

const KEPT = hostInstance('web-1', 4242);
const DROPPED = hostInstance('web-1', 9999);
const DROPPED_K8S = k8sInstance('shop', 'cart-7d9f', 'cart');
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

void describe('OTLP/gRPC receiver', () => {
  const sink = new GrpcSink();
  let service: Service | undefined;
  let client: grpc.Client | undefined;
  let gzipClient: grpc.Client | undefined;
  let grpcPort = 0;

  before(async () => {
    await sink.start();
    const [gp = 0, httpPort = 0] = await freePorts(2);
    grpcPort = gp;
    service = await startService({
      receivers: {
        otlp: {
          protocols: {
            grpc: { endpoint: `127.0.0.1:${grpcPort}`, max_recv_msg_size_mib: MAX_RECV_MIB },
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
    assert.match(result.err.details, /larger than max/i);
    assert.match(result.err.details, new RegExp(`${MAX_RECV_MIB * 1024 * 1024}`));
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

void describe('OTLP/gRPC receiver when the exporter queue is full', () => {
  const sink = new GrpcSink();
  let service: Service | undefined;
  let client: grpc.Client | undefined;

  before(async () => {
    await sink.start();
    // The sink never answers: the one consumer hangs until the exporter's timeout, the queue fills.
    sink.reply = () => ({ kind: 'hang' });
    const [grpcPort = 0] = await freePorts(1);
    service = await startService({
      receivers: { otlp: { protocols: { grpc: { endpoint: `127.0.0.1:${grpcPort}` } } } },
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
