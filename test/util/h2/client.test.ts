import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { after, test } from 'node:test';
import { SpansieveGrpcClient } from '../../../src/exporters/otlp/h2-grpc-client';
import { GrpcStatus } from '../../../src/util/grpc';
import { H2ClientConnection, fieldValue, type H2ClientError, type H2Response } from '../../../src/util/h2/client';
import { FrameReader } from '../../../src/util/h2/frame-reader';
import { Flag, FrameType, H2Error, frame, goawayFrame, rstStreamFrame, settingsFrame, windowUpdateFrame } from '../../../src/util/h2/frames';
import { HpackDecoder, encodeHeaders } from '../../../src/util/h2/hpack';
import { createH2Server } from '../../../src/util/h2/server';
import { types } from '../../../src/pdata/codec';
import { makeTestCerts } from '../../helpers/certs';
import { Jaeger } from '../../helpers/jaeger';
import { waitFor } from '../../helpers/ports';

// spansieve's HTTP/2 client (src/util/h2/client.ts) and the exporter's gRPC client on it, against
// node:http2, @grpc/grpc-js, spansieve's own server layer, and hand-made servers for GOAWAY,
// resets and lost connections. Jaeger (grpc-go) is the peer in test/e2e/jaeger*.

const JAEGER_BIN = process.env.SPANSIEVE_JAEGER_BIN ?? `${process.env.HOME ?? ''}/.cache/spansieve/peers/bin/jaeger`;

const cleanups: (() => unknown)[] = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

const OK_BLOCK = encodeHeaders([[':status', '200'], ['content-type', 'application/grpc']]);
const REQUEST_BLOCK = (port: number, path = '/t.S/M') =>
  encodeHeaders([[':method', 'POST'], [':scheme', 'http'], [':path', path], [':authority', `127.0.0.1:${port}`], ['content-type', 'application/grpc'], ['te', 'trailers']]);

function framed(message: Buffer): Buffer {
  const out = Buffer.alloc(5 + message.length);
  out.writeUInt32BE(message.length, 1);
  message.copy(out, 5);
  return out;
}

/** One call on a connection, as a promise: the response, or the error. */
function request(connection: H2ClientConnection, block: Buffer, body: Buffer[]): Promise<H2Response | H2ClientError> {
  return new Promise((resolve) => connection.request(block, body, { onResponse: resolve, onError: resolve }));
}

async function listen(server: net.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return (server.address() as net.AddressInfo).port;
}

/** A node:http2 server that echoes the request body's length (grpc framing) and counts concurrency. */
async function nodeServer(settings: http2.Settings = {}): Promise<{ port: number; maxConcurrent: () => number; bodies: Buffer[] }> {
  const server = http2.createServer({ settings });
  let open = 0;
  let maxConcurrent = 0;
  const bodies: Buffer[] = [];
  server.on('stream', (stream) => {
    open++;
    maxConcurrent = Math.max(maxConcurrent, open);
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('error', () => undefined);
    stream.on('end', () => {
      const body = Buffer.concat(chunks);
      bodies.push(body);
      // Answer a little later so calls overlap.
      setTimeout(() => {
        open--;
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'x-body-bytes': String(body.length) }));
        stream.end(framed(Buffer.from(String(body.length))));
      }, 5);
    });
  });
  const port = await listen(server);
  cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { port, maxConcurrent: () => maxConcurrent, bodies };
}

test('node:http2 server: a 4 MiB request through 64 KiB windows arrives whole; MAX_CONCURRENT_STREAMS 2 queues the rest', async () => {
  const server = await nodeServer({ maxConcurrentStreams: 2, initialWindowSize: 65_535 });
  const connection = new H2ClientConnection({ host: '127.0.0.1', port: server.port });
  cleanups.push(() => connection.destroy());
  const big = Buffer.alloc(4 * 1024 * 1024);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7) % 256;
  const result = await request(connection, REQUEST_BLOCK(server.port), [big.subarray(0, 5), big.subarray(5)]);
  assert.ok(!(result instanceof Error), result instanceof Error ? result.message : '');
  assert.equal(fieldValue(result.trailers!, 'x-body-bytes'), String(big.length));
  assert.ok(server.bodies[0]!.equals(big), 'the body arrived unchanged');
  // 12 calls at once on a server that allows 2 streams: all succeed, never more than 2 open.
  const all = await Promise.all(Array.from({ length: 12 }, (_, i) => request(connection, REQUEST_BLOCK(server.port), [Buffer.alloc(i * 10_000, i)])));
  all.forEach((r, i) => {
    assert.ok(!(r instanceof Error), r instanceof Error ? r.message : '');
    assert.equal(fieldValue(r.trailers!, 'x-body-bytes'), String(i * 10_000));
  });
  assert.equal(server.maxConcurrent(), 2);
  assert.equal(connection.activeStreams, 0);
});

test('@grpc/grpc-js server: the exporter client gets OK, status errors with percent-decoded messages and details', async () => {
  const server = new grpc.Server();
  const details = Buffer.from([8, 8, 18, 3, 0x61, 0x62, 0x63]);
  server.register('/t.S/M', (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
    const text = call.request.toString();
    if (text === 'fail') {
      const metadata = new grpc.Metadata();
      metadata.set('grpc-status-details-bin', details);
      callback({ code: grpc.status.RESOURCE_EXHAUSTED, details: 'too much: 100% ünïcode', metadata });
    } else {
      callback(null, Buffer.from(`echo ${text} ${String(call.metadata.get('x-tenant')[0])}`));
    }
  }, (b: Buffer) => b, (b: Buffer) => b, 'unary');
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  cleanups.push(() => new Promise<void>((resolve) => server.tryShutdown(() => resolve())));
  const client = new SpansieveGrpcClient(`127.0.0.1:${port}`, { tls: undefined, metadata: { 'x-tenant': 'a' } });
  cleanups.push(() => client.close());
  const call = (text: string) => client.call('/t.S/M', Buffer.from(text), new AbortController().signal, 5000);
  for (let i = 0; i < 20; i++) {
    const ok = await call(`hi ${i}`);
    assert.equal(ok.code, GrpcStatus.OK, ok.message);
    assert.equal(ok.response?.toString(), `echo hi ${i} a`);
  }
  const failed = await call('fail');
  assert.equal(failed.code, GrpcStatus.RESOURCE_EXHAUSTED);
  assert.equal(failed.message, 'too much: 100% ünïcode');
  assert.ok(failed.details?.equals(details));
  const missing = await client.call('/t.S/Nope', Buffer.from('x'), new AbortController().signal, 5000);
  assert.equal(missing.code, GrpcStatus.UNIMPLEMENTED, 'a trailers-only response');
});

test("spansieve's own server layer: 4 MiB through a 64 KiB stream window, plain and over TLS (CA, server name); a TLS server without h2 fails the call", async () => {
  const handler = {
    onRequest(stream: { body(): Buffer; respondEncoded(h: Buffer, d?: Buffer, t?: Buffer): void }) {
      stream.respondEncoded(OK_BLOCK, framed(Buffer.from(String(stream.body().length))), encodeHeaders([['grpc-status', '0']]));
    },
  };
  // A small stream window and a large connection window: the stream's is the one that binds.
  const plain = createH2Server(handler, { initialWindowSize: 65_535, connectionWindowSize: 16 * 1024 * 1024 });
  const plainPort = await listen(plain.server);
  cleanups.push(() => plain.close());
  const client = new SpansieveGrpcClient(`127.0.0.1:${plainPort}`, { tls: undefined, metadata: {} });
  cleanups.push(() => client.close());
  const r = await client.call('/t.S/M', Buffer.alloc(4 * 1024 * 1024, 1), new AbortController().signal, 10_000);
  assert.equal(r.code, GrpcStatus.OK, r.message);
  assert.equal(r.response?.toString(), String(4 * 1024 * 1024 + 5));

  const certs = makeTestCerts();
  cleanups.push(() => certs.remove());
  const ca = fs.readFileSync(certs.ca);
  const secure = createH2Server(handler, {}, { cert: fs.readFileSync(certs.server.cert), key: fs.readFileSync(certs.server.key) });
  const securePort = await listen(secure.server);
  cleanups.push(() => secure.close());
  for (const [endpoint, options] of [[`localhost:${securePort}`, { ca }], [`127.0.0.1:${securePort}`, { ca, servername: 'localhost' }]] as const) {
    const tlsClient = new SpansieveGrpcClient(endpoint, { tls: options, metadata: {} });
    const t = await tlsClient.call('/t.S/M', Buffer.from('abc'), new AbortController().signal, 5000);
    tlsClient.close();
    assert.equal(t.code, GrpcStatus.OK, `${endpoint}: ${t.message}`);
    assert.equal(t.response?.toString(), '8');
  }
  // The wrong CA: the handshake fails, the call is UNAVAILABLE (retryable), saying why.
  const wrong = new SpansieveGrpcClient(`localhost:${securePort}`, { tls: { ca: fs.readFileSync(certs.wrongCa) }, metadata: {} });
  const w = await wrong.call('/t.S/M', Buffer.from('abc'), new AbortController().signal, 5000);
  wrong.close();
  assert.equal(w.code, GrpcStatus.UNAVAILABLE);
  assert.match(w.message, /certificate/);
  // insecure_skip_verify: the same server is accepted without the CA.
  const skip = new SpansieveGrpcClient(`localhost:${securePort}`, { tls: { rejectUnauthorized: false }, metadata: {} });
  const s = await skip.call('/t.S/M', Buffer.from('abc'), new AbortController().signal, 5000);
  skip.close();
  assert.equal(s.code, GrpcStatus.OK, s.message);
  // An HTTP/1.1-only TLS server: ALPN does not choose h2.
  const h1 = tls.createServer({ cert: fs.readFileSync(certs.server.cert), key: fs.readFileSync(certs.server.key), ALPNProtocols: ['http/1.1'] }, (s) => s.on('error', () => undefined));
  const h1Port = await listen(h1);
  cleanups.push(() => new Promise<void>((resolve) => h1.close(() => resolve())));
  const h1Client = new SpansieveGrpcClient(`localhost:${h1Port}`, { tls: { ca }, metadata: {} });
  const h = await h1Client.call('/t.S/M', Buffer.from('abc'), new AbortController().signal, 5000);
  h1Client.close();
  assert.equal(h.code, GrpcStatus.UNAVAILABLE);
  assert.match(h.message, /did not negotiate HTTP\/2|ALPN|protocol/i);
});

/**
 * A hand-made HTTP/2 server: reads the preface and frames, hands each request's header block and
 * body to `onRequest` with a writer for raw frames.
 */
async function rawServer(onRequest: (streamId: number, headers: string[], socket: net.Socket) => void): Promise<{ port: number; connections: () => number }> {
  let connections = 0;
  const server = net.createServer((socket) => {
    connections++;
    socket.on('error', () => undefined);
    const decoder = new HpackDecoder();
    let prefaceLeft = 24;
    const reader = new FrameReader((type, flags, streamId, payload) => {
      if (type === FrameType.SETTINGS && !(flags & Flag.ACK)) socket.write(frame(FrameType.SETTINGS, Flag.ACK, 0));
      const headers: string[] = [];
      if (type === FrameType.HEADERS) headers.push(...decoder.decode(payload));
      if ((type === FrameType.HEADERS || type === FrameType.DATA) && flags & Flag.END_STREAM) onRequest(streamId, headers, socket);
    }, 1 << 24);
    socket.write(settingsFrame([]));
    socket.on('data', (chunk: Buffer) => {
      if (prefaceLeft > 0) {
        const skip = Math.min(prefaceLeft, chunk.length);
        prefaceLeft -= skip;
        chunk = chunk.subarray(skip);
      }
      if (socket.writable) reader.push(chunk);
    });
  });
  const port = await listen(server);
  cleanups.push(() => new Promise<void>((resolve) => {
    server.close(() => resolve());
    (server as net.Server & { closeAllConnections?: () => void }).closeAllConnections?.();
  }));
  return { port, connections: () => connections };
}

function okResponse(streamId: number): Buffer {
  return Buffer.concat([
    frame(FrameType.HEADERS, Flag.END_HEADERS, streamId, OK_BLOCK),
    frame(FrameType.DATA, 0, streamId, framed(Buffer.from('ok'))),
    frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, streamId, encodeHeaders([['grpc-status', '0']])),
  ]);
}

test('GOAWAY mid-calls: calls up to its last stream id finish, later ones fail as unprocessed; the exporter client sends those again on a new connection', async () => {
  const pending: { id: number; socket: net.Socket }[] = [];
  let goaway = true;
  const server = await rawServer((id, _headers, socket) => {
    pending.push({ id, socket });
    if (pending.length === 3 && goaway) {
      goaway = false;
      // Streams 1 and 3 were taken; 5 was not.
      socket.write(goawayFrame(3, H2Error.NO_ERROR, 'restarting'));
      socket.write(Buffer.concat([okResponse(1), okResponse(3)]));
      pending.length = 0;
    } else if (!goaway) {
      socket.write(okResponse(id));
    }
  });
  const connection = new H2ClientConnection({ host: '127.0.0.1', port: server.port });
  cleanups.push(() => connection.destroy());
  const results = await Promise.all([1, 2, 3].map(() => request(connection, REQUEST_BLOCK(server.port), [Buffer.from('x')])));
  assert.ok(!(results[0] instanceof Error) && !(results[1] instanceof Error), 'streams 1 and 3 answered');
  const third = results[2] as H2ClientError;
  assert.ok(third instanceof Error);
  assert.equal(third.unprocessed, true);
  assert.match(third.message, /not processed.*GOAWAY NO_ERROR \(restarting\)/);
  assert.equal(connection.usable, false);
  const refused = await request(connection, REQUEST_BLOCK(server.port), [Buffer.from('x')]);
  assert.ok(refused instanceof Error && refused.unprocessed, 'a call on a connection going away is refused as unprocessed');

  // The exporter's client: the unprocessed call goes again, on a new connection, and succeeds.
  goaway = true;
  pending.length = 0;
  const before = server.connections();
  const client = new SpansieveGrpcClient(`127.0.0.1:${server.port}`, { tls: undefined, metadata: {} });
  cleanups.push(() => client.close());
  const calls = await Promise.all([1, 2, 3].map(() => client.call('/t.S/M', Buffer.from('x'), new AbortController().signal, 5000)));
  for (const c of calls) assert.equal(c.code, GrpcStatus.OK, c.message);
  assert.equal(server.connections(), before + 2);
});

test('server resets: REFUSED_STREAM is unprocessed, INTERNAL_ERROR is not; a lost connection fails calls in flight and the next call reconnects', async () => {
  let mode: 'refuse' | 'internal' | 'drop' | 'ok' = 'refuse';
  const server = await rawServer((id, _headers, socket) => {
    if (mode === 'refuse') socket.write(rstStreamFrame(id, H2Error.REFUSED_STREAM));
    else if (mode === 'internal') socket.write(rstStreamFrame(id, H2Error.INTERNAL_ERROR));
    else if (mode === 'drop') socket.destroy();
    else socket.write(okResponse(id));
  });
  const connection = new H2ClientConnection({ host: '127.0.0.1', port: server.port });
  cleanups.push(() => connection.destroy());
  const refused = await request(connection, REQUEST_BLOCK(server.port), [Buffer.from('x')]);
  assert.ok(refused instanceof Error && refused.unprocessed && refused.h2Code === H2Error.REFUSED_STREAM);
  mode = 'internal';
  const internal = await request(connection, REQUEST_BLOCK(server.port), [Buffer.from('x')]);
  assert.ok(internal instanceof Error && !internal.unprocessed && /INTERNAL_ERROR/.test(internal.message));
  assert.ok(connection.usable, 'a stream reset leaves the connection in use');

  const client = new SpansieveGrpcClient(`127.0.0.1:${server.port}`, { tls: undefined, metadata: {} });
  cleanups.push(() => client.close());
  const call = () => client.call('/t.S/M', Buffer.from('x'), new AbortController().signal, 5000);
  mode = 'internal';
  const reset = await call();
  assert.equal(reset.code, GrpcStatus.UNAVAILABLE);
  assert.match(reset.message, /INTERNAL_ERROR/);
  mode = 'drop';
  const before = server.connections();
  const lost = await call();
  assert.equal(lost.code, GrpcStatus.UNAVAILABLE, 'retryable');
  mode = 'ok';
  const again = await call();
  assert.equal(again.code, GrpcStatus.OK, again.message);
  assert.equal(server.connections(), before + 1, 'a new connection');
});

test('deadline: grpc-timeout is sent, and an abort cancels the stream with RST_STREAM CANCEL', async () => {
  const seen: { headers: string[]; resets: number[] } = { headers: [], resets: [] };
  const server = net.createServer((socket) => {
    socket.on('error', () => undefined);
    const decoder = new HpackDecoder();
    let preface = 24;
    const reader = new FrameReader((type, _flags, _id, payload) => {
      if (type === FrameType.HEADERS) seen.headers.push(...decoder.decode(payload));
      if (type === FrameType.RST_STREAM) seen.resets.push(payload.readUInt32BE(0));
    }, 1 << 24);
    socket.write(settingsFrame([]));
    socket.on('data', (chunk: Buffer) => {
      const skip = Math.min(preface, chunk.length);
      preface -= skip;
      reader.push(chunk.subarray(skip));
    });
  });
  const port = await listen(server);
  cleanups.push(() => new Promise<void>((resolve) => {
    server.close(() => resolve());
  }));
  const client = new SpansieveGrpcClient(`127.0.0.1:${port}`, { tls: undefined, metadata: {} });
  cleanups.push(() => client.close());
  const controller = new AbortController();
  setTimeout(() => controller.abort(new Error('export timed out after 150ms')), 150);
  const result = await client.call('/t.S/M', Buffer.from('x'), controller.signal, 150);
  assert.equal(result.code, GrpcStatus.DEADLINE_EXCEEDED);
  assert.equal(fieldValue(seen.headers, 'grpc-timeout'), '150m');
  const deadline = Date.now() + 5000;
  while (seen.resets.length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
  assert.deepEqual(seen.resets, [H2Error.CANCEL]);
});

test('flow control: a stream never gets more than its window, whatever the connection window; it waits for WINDOW_UPDATE', async () => {
  // The server grants a 64 KiB stream window and a 16 MiB connection window, and more stream
  // credit only in 256 KiB steps after each 64 KiB (so the client must wait, and must not overrun).
  const STREAM_WINDOW = 65_535;
  let overrun = '';
  let updates = 0;
  const server = net.createServer((socket) => {
    socket.on('error', () => undefined);
    let preface = 24;
    const granted = new Map<number, number>();
    const received = new Map<number, number>();
    const reader = new FrameReader((type, flags, id, payload) => {
      if (type === FrameType.SETTINGS && !(flags & Flag.ACK)) socket.write(frame(FrameType.SETTINGS, Flag.ACK, 0));
      if (type === FrameType.HEADERS) {
        granted.set(id, STREAM_WINDOW);
        received.set(id, 0);
      }
      if (type !== FrameType.DATA) return;
      const got = received.get(id)! + payload.length;
      received.set(id, got);
      if (got > granted.get(id)!) overrun ||= `stream ${id}: ${got} octets against a window of ${granted.get(id)!}`;
      if (flags & Flag.END_STREAM) {
        socket.write(Buffer.concat([
          frame(FrameType.HEADERS, Flag.END_HEADERS, id, OK_BLOCK),
          frame(FrameType.DATA, 0, id, framed(Buffer.from(String(got)))),
          frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, id, encodeHeaders([['grpc-status', '0']])),
        ]));
      } else if (got === granted.get(id)) {
        // Window used up: grant more a moment later.
        setTimeout(() => {
          updates++;
          granted.set(id, granted.get(id)! + 262_144);
          socket.write(windowUpdateFrame(id, 262_144));
        }, 2);
      }
    }, 1 << 24);
    socket.write(Buffer.concat([settingsFrame([[0x4, STREAM_WINDOW]]), windowUpdateFrame(0, 16 * 1024 * 1024)]));
    socket.on('data', (chunk: Buffer) => {
      const skip = Math.min(preface, chunk.length);
      preface -= skip;
      reader.push(chunk.subarray(skip));
    });
  });
  const port = await listen(server);
  cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const client = new SpansieveGrpcClient(`127.0.0.1:${port}`, { tls: undefined, metadata: {} });
  cleanups.push(() => client.close());
  const sizes = [2 * 1024 * 1024, 100_000, 1_000_000];
  const results = await Promise.all(sizes.map((n) => client.call('/t.S/M', Buffer.alloc(n, 1), new AbortController().signal, 20_000)));
  results.forEach((r, i) => {
    assert.equal(r.code, GrpcStatus.OK, r.message);
    assert.equal(r.response?.toString(), String(sizes[i]! + 5));
  });
  assert.equal(overrun, '');
  assert.ok(updates >= 8, `the client waited for window updates (${updates})`);
});

test('Jaeger (grpc-go OTLP receiver): 60 small exports, 3 large ones at once, plain and gzip; every trace stored', { skip: fs.existsSync(JAEGER_BIN) ? false : `no Jaeger binary at ${JAEGER_BIN}` }, async () => {
  const jaeger = await Jaeger.start();
  cleanups.push(() => jaeger.stop());
  const traceId = (i: number) => i.toString(16).padStart(32, '0');
  const request = (i: number, spans: number) => Buffer.from(types.ExportTraceServiceRequest.encode(types.ExportTraceServiceRequest.fromObject({
    resourceSpans: [{
      resource: { attributes: [{ key: 'service.name', value: { stringValue: 'h2-client' } }] },
      scopeSpans: [{ spans: Array.from({ length: spans }, (_, s) => ({
        traceId: Buffer.from(traceId(i), 'hex'), spanId: Buffer.from((s + 1).toString(16).padStart(16, '0'), 'hex'),
        name: `span-${'x'.repeat(200)}`, kind: 1, startTimeUnixNano: `${1_700_000_000_000 + s}000000`, endTimeUnixNano: `${1_700_000_000_001 + s}000000`,
      })) }],
    }],
  })).finish());
  const expected = new Map<string, number>();
  for (const [round, compression] of [[0, undefined], [1, 'gzip']] as const) {
    const client = new SpansieveGrpcClient(`127.0.0.1:${jaeger.otlpGrpcPort}`, { tls: undefined, metadata: {}, compression });
    cleanups.push(() => client.close());
    const call = async (i: number, spans: number) => {
      const r = await client.call('/opentelemetry.proto.collector.trace.v1.TraceService/Export', request(i, spans), new AbortController().signal, 20_000);
      assert.equal(r.code, GrpcStatus.OK, r.message);
      expected.set(traceId(i), spans);
    };
    const base = 1 + round * 1000;
    for (let i = 0; i < 60; i++) await call(base + i, 1);
    // About 1.5 MB each: through grpc-go's flow-control windows, three streams at once.
    await Promise.all([0, 1, 2].map((k) => call(base + 100 + k, 6000)));
  }
  for (const [id, spans] of expected) {
    await waitFor(`trace ${id} in Jaeger`, async () => (await jaeger.trace(id))?.spans.length === spans, 30_000);
  }
});
