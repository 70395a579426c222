import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { after, test } from 'node:test';
import type { H2Connection, H2ConnectionOptions, H2Handler, H2Stream } from '../../../src/util/h2/connection';
import { Flag, FrameType, H2Error, PREFACE, frame, goawayFrame, rstStreamFrame, settingsFrame, windowUpdateFrame } from '../../../src/util/h2/frames';
import { HpackDecoder, encodeHeaders } from '../../../src/util/h2/hpack';
import { createH2Server, type H2Server } from '../../../src/util/h2/server';
import { makeTestCerts } from '../../helpers/certs';

// The HTTP/2 layer against real clients (node:http2, @grpc/grpc-js, curl) and against hand-made
// frames for the protocol errors and floods, on loopback.

const servers: H2Server[] = [];
after(async () => {
  for (const s of servers) {
    for (const c of s.connections) c.destroy();
    await s.close();
  }
});

const OK_HEADERS = encodeHeaders([[':status', '200'], ['content-type', 'application/grpc']]);

/** Answers each call with a gRPC frame holding the body's length, and the body's length in a trailer. */
const echoLength: H2Handler = {
  onRequest(stream) {
    const body = stream.body();
    const reply = Buffer.alloc(9);
    reply.writeUInt32BE(4, 1);
    reply.writeUInt32BE(body.length, 5);
    stream.respondEncoded(OK_HEADERS, reply, encodeHeaders([['grpc-status', '0'], ['x-body-bytes', String(body.length)], ['x-path', stream.header(':path') ?? '']]));
  },
};

async function start(handler: H2Handler = echoLength, options: H2ConnectionOptions = {}): Promise<{ server: H2Server; port: number }> {
  const server = createH2Server(handler, options);
  servers.push(server);
  await new Promise<void>((resolve) => server.server.listen(0, '127.0.0.1', () => resolve()));
  return { server, port: (server.server.address() as net.AddressInfo).port };
}

interface Reply {
  status: number | undefined;
  data: Buffer;
  trailers: http2.IncomingHttpHeaders;
}

function post(session: http2.ClientHttp2Session, body: Buffer, path = '/svc/Method'): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers' });
    const chunks: Buffer[] = [];
    let status: number | undefined;
    let trailers: http2.IncomingHttpHeaders = {};
    req.on('response', (h) => (status = h[':status']));
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('trailers', (t: http2.IncomingHttpHeaders) => {
      trailers = t;
    });
    req.on('end', () => resolve({ status, data: Buffer.concat(chunks), trailers }));
    req.on('error', reject);
    req.end(body);
  });
}

test('node:http2 client: 241 calls on one connection, bodies from 0 to 3 MiB, 40 at once', async () => {
  const { port } = await start(echoLength, { initialWindowSize: 65_535, connectionWindowSize: 65_535 });
  const session = http2.connect(`http://127.0.0.1:${port}`);
  try {
    for (let i = 0; i < 200; i++) {
      const r = await post(session, Buffer.alloc(i * 37), `/p/${i}`);
      assert.equal(r.status, 200);
      assert.equal(r.trailers['grpc-status'], '0');
      assert.equal(r.trailers['x-body-bytes'], String(i * 37));
      assert.equal(r.trailers['x-path'], `/p/${i}`);
      assert.equal(r.data.readUInt32BE(5), i * 37);
    }
    // Beyond the 64 KiB stream and connection windows: the server must give them back as it reads.
    const big = await post(session, Buffer.alloc(3 * 1024 * 1024, 7));
    assert.equal(big.trailers['x-body-bytes'], String(3 * 1024 * 1024));
    const many = await Promise.all(Array.from({ length: 40 }, (_, i) => post(session, Buffer.alloc(20_000 + i))));
    many.forEach((r, i) => assert.equal(r.trailers['x-body-bytes'], String(20_000 + i)));
  } finally {
    session.close();
  }
});

test('a response larger than the client window waits for its WINDOW_UPDATEs; one larger than a frame is split', async () => {
  const payload = Buffer.alloc(1024 * 1024 + 3);
  for (let i = 0; i < payload.length; i++) payload[i] = i & 0xff;
  const { port } = await start({
    onRequest(stream) {
      stream.respond([[':status', '200']], payload, [['x-done', '1']]);
    },
  });
  // The client's own windows are the default 65,535: the server must stop and resume.
  const session = http2.connect(`http://127.0.0.1:${port}`, { settings: { initialWindowSize: 65_535 } });
  try {
    const r = await post(session, Buffer.from('x'));
    assert.equal(r.data.length, payload.length);
    assert.ok(r.data.equals(payload));
    assert.equal(r.trailers['x-done'], '1');
  } finally {
    session.close();
  }
});

test('client cancel: the stream is aborted, the connection keeps serving', async () => {
  let aborted = 0;
  const waiting: H2Stream[] = [];
  const { port } = await start({
    onHeaders(stream) {
      stream.onAbort = () => aborted++;
    },
    onRequest(stream) {
      // node:http2 may end a stream's body before resetting it, so /slow can arrive whole too.
      if (stream.header(':path') !== '/echo') waiting.push(stream);
      else echoLength.onRequest(stream);
    },
  });
  const session = http2.connect(`http://127.0.0.1:${port}`);
  try {
    // Cancelled mid-body.
    const a = session.request({ ':method': 'POST', ':path': '/slow' });
    a.on('error', () => undefined);
    a.write(Buffer.alloc(1000));
    await new Promise((r) => setTimeout(r, 50));
    a.close(http2.constants.NGHTTP2_CANCEL);
    // Cancelled while the server holds the complete request.
    const b = session.request({ ':method': 'POST', ':path': '/hang' });
    b.on('error', () => undefined);
    b.end(Buffer.alloc(10));
    while (!waiting.some((s) => s.header(':path') === '/hang')) await new Promise((r) => setTimeout(r, 5));
    b.close(http2.constants.NGHTTP2_CANCEL);
    while (aborted < 2) await new Promise((r) => setTimeout(r, 5));
    const hang = waiting.find((s) => s.header(':path') === '/hang')!;
    assert.equal(hang.closed, true);
    // Answering a cancelled stream is a no-op.
    hang.respond([[':status', '200']]);
    const r = await post(session, Buffer.alloc(5), '/echo');
    assert.equal(r.trailers['x-body-bytes'], '5');
  } finally {
    session.close();
  }
});

test('@grpc/grpc-js unary calls: success, a status error, a 1 MiB message, 20 concurrent', async () => {
  const { port } = await start({
    onRequest(stream) {
      const body = stream.body();
      const message = body.subarray(5, 5 + body.readUInt32BE(1));
      if (message.toString() === 'fail') {
        stream.respond([[':status', '200'], ['content-type', 'application/grpc']], undefined, [['grpc-status', '8'], ['grpc-message', 'too much']]);
        return;
      }
      // Echo the message back as the response.
      const reply = Buffer.alloc(5 + message.length);
      reply.writeUInt32BE(message.length, 1);
      message.copy(reply, 5);
      stream.respondEncoded(OK_HEADERS, reply, encodeHeaders([['grpc-status', '0']]));
    },
  });
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': 8 * 1024 * 1024 });
  const call = (message: Buffer) => new Promise<Buffer>((resolve, reject) => {
    client.makeUnaryRequest('/test.Svc/Echo', (b: Buffer) => b, (b: Buffer) => b, message, (err, value) => (err ? reject(err) : resolve(value!)));
  });
  try {
    for (let i = 0; i < 50; i++) assert.equal((await call(Buffer.from(`hello ${i}`))).toString(), `hello ${i}`);
    await assert.rejects(call(Buffer.from('fail')), (err: grpc.ServiceError) => err.code === grpc.status.RESOURCE_EXHAUSTED && err.details === 'too much');
    const big = Buffer.alloc(1024 * 1024, 3);
    assert.ok((await call(big)).equals(big));
    const all = await Promise.all(Array.from({ length: 20 }, (_, i) => call(Buffer.alloc(i * 1000, i))));
    all.forEach((r, i) => assert.equal(r.length, i * 1000));
  } finally {
    client.close();
  }
});

test('TLS with ALPN h2: node:http2 and grpc-js clients; a client without h2 is disconnected', async () => {
  const certs = makeTestCerts();
  const fs = await import('node:fs');
  const tlsModule = await import('node:tls');
  try {
    const server = createH2Server(echoLength, {}, { cert: fs.readFileSync(certs.server.cert), key: fs.readFileSync(certs.server.key) });
    servers.push(server);
    await new Promise<void>((resolve) => server.server.listen(0, '127.0.0.1', () => resolve()));
    const port = (server.server.address() as net.AddressInfo).port;
    const ca = fs.readFileSync(certs.ca);
    const session = http2.connect(`https://localhost:${port}`, { ca });
    try {
      assert.equal((await post(session, Buffer.alloc(70_000))).trailers['x-body-bytes'], '70000');
    } finally {
      session.close();
    }
    const client = new grpc.Client(`localhost:${port}`, grpc.credentials.createSsl(ca));
    try {
      const reply = await new Promise<Buffer>((resolve, reject) => {
        client.makeUnaryRequest('/t.S/M', (b: Buffer) => b, (b: Buffer) => b, Buffer.from('abc'), (err, v) => (err ? reject(err) : resolve(v!)));
      });
      assert.equal(reply.readUInt32BE(0), 8); // the gRPC frame: 5 octets of prefix, 3 of message
    } finally {
      client.close();
    }
    // HTTP/1.1 over TLS (ALPN http/1.1): refused at the handshake or closed right after it.
    const closed = await new Promise<boolean>((resolve) => {
      const socket = tlsModule.connect({ port, host: '127.0.0.1', servername: 'localhost', ca, ALPNProtocols: ['http/1.1'] });
      socket.on('error', () => resolve(true));
      socket.on('close', () => resolve(true));
      socket.on('secureConnect', () => socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
      setTimeout(() => resolve(false), 5000).unref();
    });
    assert.ok(closed);
  } finally {
    certs.remove();
  }
});

test('curl --http2-prior-knowledge', async (t) => {
  const { port } = await start();
  const result = await new Promise<{ err: Error | null; stdout: string }>((resolve) => {
    execFile('curl', ['-sS', '--http2-prior-knowledge', '-o', '/dev/null', '-w', '%{http_code} %{http_version}', '--data-binary', 'abcdef', '-H', 'content-type: application/grpc', `http://127.0.0.1:${port}/curl`], (err, stdout) => resolve({ err, stdout }));
  });
  if (result.err && (result.err as NodeJS.ErrnoException).code === 'ENOENT') {
    t.skip('curl not installed');
    return;
  }
  assert.ifError(result.err);
  assert.equal(result.stdout, '200 2');
});

// ---- hand-made frames

interface Frame {
  type: number;
  flags: number;
  streamId: number;
  payload: Buffer;
}

/** A raw client: sends bytes, collects the server's frames. */
class RawClient {
  readonly frames: Frame[] = [];
  private buf = Buffer.alloc(0);
  closed = false;
  readonly decoder = new HpackDecoder();

  constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buf = Buffer.concat([this.buf, chunk]);
      while (this.buf.length >= 9) {
        const length = this.buf.readUIntBE(0, 3);
        if (this.buf.length < 9 + length) break;
        this.frames.push({ type: this.buf[3]!, flags: this.buf[4]!, streamId: this.buf.readUInt32BE(5) & 0x7fffffff, payload: this.buf.subarray(9, 9 + length) });
        this.buf = this.buf.subarray(9 + length);
      }
    });
    socket.on('close', () => (this.closed = true));
    socket.on('error', () => undefined);
  }

  static async open(port: number, preface = true): Promise<RawClient> {
    const socket = net.connect(port, '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    const client = new RawClient(socket);
    if (preface) client.send(PREFACE, settingsFrame([]));
    return client;
  }

  send(...buffers: Buffer[]): void {
    this.socket.write(Buffer.concat(buffers));
  }

  async waitFor(predicate: (f: Frame) => boolean, what: string): Promise<Frame> {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const found = this.frames.find(predicate);
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; got ${JSON.stringify(this.frames.map((f) => [f.type, f.flags, f.streamId]))}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  async goaway(): Promise<{ lastStreamId: number; code: number }> {
    const f = await this.waitFor((x) => x.type === FrameType.GOAWAY, 'GOAWAY');
    return { lastStreamId: f.payload.readUInt32BE(0), code: f.payload.readUInt32BE(4) };
  }

  rst(streamId: number): Promise<number> {
    return this.waitFor((x) => x.type === FrameType.RST_STREAM && x.streamId === streamId, `RST_STREAM ${streamId}`).then((f) => f.payload.readUInt32BE(0));
  }

  /** Decoded header blocks the server sent on a stream. */
  headersOf(streamId: number): string[][] {
    return this.frames.filter((f) => f.type === FrameType.HEADERS && f.streamId === streamId).map((f) => this.decoder.decode(f.payload));
  }

  close(): void {
    this.socket.destroy();
  }
}

const REQUEST = encodeHeaders([[':method', 'POST'], [':scheme', 'http'], [':path', '/x'], [':authority', 'a'], ['content-type', 'application/grpc']]);
const headers = (streamId: number, endStream: boolean, block = REQUEST) => frame(FrameType.HEADERS, Flag.END_HEADERS | (endStream ? Flag.END_STREAM : 0), streamId, block);
const data = (streamId: number, payload: Buffer, endStream = true) => frame(FrameType.DATA, endStream ? Flag.END_STREAM : 0, streamId, payload);

test('frames: our SETTINGS first; PING answered with its payload; PRIORITY and unknown types ignored; padded HEADERS and DATA with priority read', async () => {
  const { port } = await start();
  const c = await RawClient.open(port);
  try {
    const settings = await c.waitFor((f) => f.type === FrameType.SETTINGS && f.flags === 0, 'SETTINGS');
    assert.equal(c.frames[0], settings);
    await c.waitFor((f) => f.type === FrameType.SETTINGS && f.flags === Flag.ACK, 'SETTINGS ack');
    c.send(frame(FrameType.PING, 0, 0, Buffer.from('12345678')));
    const pong = await c.waitFor((f) => f.type === FrameType.PING, 'PING ack');
    assert.equal(pong.flags, Flag.ACK);
    assert.equal(pong.payload.toString(), '12345678');
    c.send(frame(FrameType.PRIORITY, 0, 1, Buffer.from([0, 0, 0, 0, 16])), frame(0xfa, 0xff, 0, Buffer.from('whatever')));
    // HEADERS: PADDED (3 octets of padding) and PRIORITY (5 octets); DATA: PADDED (10 octets).
    const hp = Buffer.concat([Buffer.from([3]), Buffer.from([0, 0, 0, 0, 16]), REQUEST, Buffer.alloc(3)]);
    c.send(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.PADDED | Flag.PRIORITY, 1, hp));
    c.send(frame(FrameType.DATA, Flag.PADDED | Flag.END_STREAM, 1, Buffer.concat([Buffer.from([10]), Buffer.from('hello'), Buffer.alloc(10)])));
    await c.waitFor((f) => f.type === FrameType.HEADERS && (f.flags & Flag.END_STREAM) !== 0 && f.streamId === 1, 'trailers');
    const [responseHeaders, trailers] = c.headersOf(1);
    assert.deepEqual(responseHeaders, [':status', '200', 'content-type', 'application/grpc']);
    assert.equal(trailers![trailers!.indexOf('x-body-bytes') + 1], '5');
  } finally {
    c.close();
  }
});

test('frames: a header block split over CONTINUATION frames is read', async () => {
  const { port } = await start();
  const c = await RawClient.open(port);
  try {
    c.send(frame(FrameType.HEADERS, 0, 1, REQUEST.subarray(0, 3)), frame(FrameType.CONTINUATION, 0, 1, REQUEST.subarray(3, 10)), frame(FrameType.CONTINUATION, Flag.END_HEADERS, 1, REQUEST.subarray(10)), data(1, Buffer.from('abc')));
    await c.waitFor((f) => f.type === FrameType.HEADERS && (f.flags & Flag.END_STREAM) !== 0, 'trailers');
  } finally {
    c.close();
  }
});

const connectionErrors: [string, (c: RawClient) => void, number][] = [
  ['a bad preface', (c) => c.send(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')), H2Error.PROTOCOL_ERROR],
  ['a frame larger than our MAX_FRAME_SIZE', (c) => c.send(PREFACE, settingsFrame([]), frame(FrameType.DATA, 0, 1, Buffer.alloc(16_385))), H2Error.FRAME_SIZE_ERROR],
  ['DATA on an idle stream', (c) => c.send(PREFACE, settingsFrame([]), data(1, Buffer.from('x'))), H2Error.PROTOCOL_ERROR],
  ['WINDOW_UPDATE of 0 on the connection', (c) => c.send(PREFACE, settingsFrame([]), windowUpdateFrame(0, 0)), H2Error.PROTOCOL_ERROR],
  ['PUSH_PROMISE from a client', (c) => c.send(PREFACE, settingsFrame([]), frame(FrameType.PUSH_PROMISE, Flag.END_HEADERS, 1, Buffer.alloc(4))), H2Error.PROTOCOL_ERROR],
  ['a first frame that is not SETTINGS', (c) => c.send(PREFACE, frame(FrameType.PING, 0, 0, Buffer.alloc(8))), H2Error.PROTOCOL_ERROR],
  ['a PING of 7 octets', (c) => c.send(PREFACE, settingsFrame([]), frame(FrameType.PING, 0, 0, Buffer.alloc(7))), H2Error.FRAME_SIZE_ERROR],
  ['SETTINGS of 5 octets', (c) => c.send(PREFACE, settingsFrame([]), frame(FrameType.SETTINGS, 0, 0, Buffer.alloc(5))), H2Error.FRAME_SIZE_ERROR],
  ['INITIAL_WINDOW_SIZE above 2^31-1', (c) => c.send(PREFACE, settingsFrame([[4, 0x80000000]])), H2Error.FLOW_CONTROL_ERROR],
  ['MAX_FRAME_SIZE below 16384', (c) => c.send(PREFACE, settingsFrame([[5, 100]])), H2Error.PROTOCOL_ERROR],
  ['a malformed HPACK block', (c) => c.send(PREFACE, settingsFrame([]), headers(1, true, Buffer.from([0x80]))), H2Error.COMPRESSION_ERROR],
  ['an even stream id', (c) => c.send(PREFACE, settingsFrame([]), headers(2, true)), H2Error.PROTOCOL_ERROR],
  ['another frame inside a header block', (c) => c.send(PREFACE, settingsFrame([]), frame(FrameType.HEADERS, 0, 1, REQUEST.subarray(0, 3)), frame(FrameType.PING, 0, 0, Buffer.alloc(8))), H2Error.PROTOCOL_ERROR],
  ['CONTINUATION without HEADERS', (c) => c.send(PREFACE, settingsFrame([]), frame(FrameType.CONTINUATION, Flag.END_HEADERS, 1, REQUEST)), H2Error.PROTOCOL_ERROR],
  ['a CONTINUATION flood (empty frames, no END_HEADERS)', (c) => {
    c.send(PREFACE, settingsFrame([]), frame(FrameType.HEADERS, 0, 1, REQUEST.subarray(0, 3)));
    for (let i = 0; i < 50; i++) c.send(frame(FrameType.CONTINUATION, 0, 1));
  }, H2Error.ENHANCE_YOUR_CALM],
  ['too many SETTINGS entries in one frame', (c) => c.send(PREFACE, settingsFrame(Array.from({ length: 40 }, () => [0x99, 1] as [number, number]))), H2Error.ENHANCE_YOUR_CALM],
];

for (const [name, act, code] of connectionErrors) {
  test(`connection error: ${name} → GOAWAY ${code} and the socket ends`, async () => {
    const { port } = await start();
    const c = await RawClient.open(port, false);
    try {
      act(c);
      assert.equal((await c.goaway()).code, code);
      const deadline = Date.now() + 5000;
      while (!c.closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      assert.ok(c.closed, 'the server ends the connection');
    } finally {
      c.close();
    }
  });
}

test('rapid reset (CVE-2023-44487): streams opened and reset at once past the budget end the connection', async () => {
  let requests = 0;
  const { port } = await start({ onRequest: () => requests++ }, { resetBurst: 100, resetRate: 0 });
  const c = await RawClient.open(port);
  try {
    const out: Buffer[] = [];
    for (let id = 1; id < 2 * 150; id += 2) out.push(headers(id, false), rstStreamFrame(id, H2Error.CANCEL));
    c.send(...out);
    const g = await c.goaway();
    assert.equal(g.code, H2Error.ENHANCE_YOUR_CALM);
    assert.equal(g.lastStreamId, 201); // the 101st reset
    assert.equal(requests, 0);
  } finally {
    c.close();
  }
});

test('concurrency limit: the stream past SETTINGS_MAX_CONCURRENT_STREAMS is refused, then the others finish', async () => {
  const { port } = await start(echoLength, { maxConcurrentStreams: 2 });
  const c = await RawClient.open(port);
  try {
    const settings = await c.waitFor((f) => f.type === FrameType.SETTINGS && f.flags === 0, 'SETTINGS');
    assert.ok(settings.payload.includes(Buffer.from([0, 3, 0, 0, 0, 2])), 'MAX_CONCURRENT_STREAMS 2 advertised');
    c.send(headers(1, false), headers(3, false), headers(5, false));
    assert.equal(await c.rst(5), H2Error.REFUSED_STREAM);
    c.send(data(1, Buffer.from('a')), data(3, Buffer.from('bb')), headers(7, false), data(7, Buffer.from('ccc')));
    for (const id of [1, 3, 7]) await c.waitFor((f) => f.type === FrameType.HEADERS && f.streamId === id && (f.flags & Flag.END_STREAM) !== 0, `trailers ${id}`);
  } finally {
    c.close();
  }
});

test('refused streams past maxRejectedStreams end the connection', async () => {
  const { port } = await start({ onRequest: () => undefined }, { maxConcurrentStreams: 1, maxRejectedStreams: 10 });
  const c = await RawClient.open(port);
  try {
    const out = [headers(1, false)];
    for (let id = 3; id < 40; id += 2) out.push(headers(id, false));
    c.send(...out);
    assert.equal((await c.goaway()).code, H2Error.ENHANCE_YOUR_CALM);
  } finally {
    c.close();
  }
});

test('header list over SETTINGS_MAX_HEADER_LIST_SIZE: answered 431, the connection goes on', async () => {
  const { port } = await start(echoLength, { maxHeaderListSize: 1024 });
  const c = await RawClient.open(port);
  try {
    const big = encodeHeaders([[':method', 'POST'], [':scheme', 'http'], [':path', '/x'], ['x-big', 'y'.repeat(2000)]]);
    c.send(headers(1, true, big));
    await c.waitFor((f) => f.type === FrameType.HEADERS && f.streamId === 1, '431');
    assert.deepEqual(c.headersOf(1)[0], [':status', '431']);
    c.send(headers(3, false), data(3, Buffer.from('ok')));
    await c.waitFor((f) => f.type === FrameType.HEADERS && f.streamId === 3 && (f.flags & Flag.END_STREAM) !== 0, 'trailers 3');
  } finally {
    c.close();
  }
});

test('a body over maxBodyBytes: onBodyTooLarge answers; the rest of the body is dropped and the connection window given back', async () => {
  const { port } = await start({
    onRequest: (stream) => echoLength.onRequest(stream),
    onBodyTooLarge(stream) {
      stream.respond([[':status', '200'], ['content-type', 'application/grpc']], undefined, [['grpc-status', '8']]);
    },
  }, { maxBodyBytes: 1000, connectionWindowSize: 65_535 });
  const session = http2.connect(`http://127.0.0.1:${port}`);
  try {
    // Larger than the whole connection window: it must keep flowing after the refusal.
    const r = await post(session, Buffer.alloc(200_000));
    assert.equal(r.trailers['grpc-status'], '8');
    const ok = await post(session, Buffer.alloc(999));
    assert.equal(ok.trailers['x-body-bytes'], '999');
  } finally {
    session.close();
  }
});

test('malformed requests are reset with PROTOCOL_ERROR: no :path, uppercase name, a connection header', async () => {
  const { port } = await start();
  const c = await RawClient.open(port);
  try {
    c.send(headers(1, true, encodeHeaders([[':method', 'POST'], [':scheme', 'http']])));
    c.send(headers(3, true, encodeHeaders([[':method', 'POST'], [':scheme', 'http'], [':path', '/'], ['X-Up', '1']])));
    c.send(headers(5, true, encodeHeaders([[':method', 'POST'], [':scheme', 'http'], [':path', '/'], ['connection', 'close']])));
    for (const id of [1, 3, 5]) assert.equal(await c.rst(id), H2Error.PROTOCOL_ERROR);
  } finally {
    c.close();
  }
});

test('send-side flow control: INITIAL_WINDOW_SIZE 0 holds the body until the client opens the window', async () => {
  const { port } = await start({
    onRequest(stream) {
      stream.respond([[':status', '200']], Buffer.from('0123456789'), [['x-end', '1']]);
    },
  });
  const c = await RawClient.open(port, false);
  try {
    c.send(PREFACE, settingsFrame([[4, 0]]), headers(1, true));
    await c.waitFor((f) => f.type === FrameType.HEADERS && f.streamId === 1, 'response headers');
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(c.frames.filter((f) => f.type === FrameType.DATA).length, 0, 'no DATA with a zero window');
    c.send(windowUpdateFrame(1, 4));
    await c.waitFor((f) => f.type === FrameType.DATA, 'first DATA');
    c.send(settingsFrame([[4, 100]])); // raises the stream window by 100
    const end = await c.waitFor((f) => f.type === FrameType.HEADERS && (f.flags & Flag.END_STREAM) !== 0, 'trailers');
    assert.equal(end.streamId, 1);
    const body = Buffer.concat(c.frames.filter((f) => f.type === FrameType.DATA).map((f) => f.payload));
    assert.equal(body.toString(), '0123456789');
    assert.equal(c.frames.filter((f) => f.type === FrameType.DATA)[0]!.payload.length, 4);
  } finally {
    c.close();
  }
});

test('ping flood from a client that never reads: the connection ends once replies pile up', async () => {
  const { port } = await start(echoLength, { maxOutboundBytes: 64 * 1024 });
  const c = await RawClient.open(port);
  c.socket.pause();
  try {
    const ping = frame(FrameType.PING, 0, 0, Buffer.alloc(8));
    const burst = Buffer.concat(Array.from({ length: 10_000 }, () => ping));
    let ended = false;
    c.socket.once('close', () => (ended = true));
    for (let i = 0; i < 200 && !ended; i++) {
      if (!c.socket.write(burst)) await new Promise((r) => setTimeout(r, 10));
    }
    const deadline = Date.now() + 10_000;
    while (!ended && Date.now() < deadline) {
      c.socket.resume();
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(ended, 'the server ended the connection');
    // Its GOAWAY sits behind the unread replies and may be discarded with them: not asserted.
    const goaway = c.frames.find((f) => f.type === FrameType.GOAWAY);
    if (goaway) assert.equal(goaway.payload.readUInt32BE(4), H2Error.ENHANCE_YOUR_CALM);
  } finally {
    c.close();
  }
});

test('graceful close: GOAWAY with the last stream id; the call in flight is answered, then the socket ends', async () => {
  const held: H2Stream[] = [];
  const { server, port } = await start({ onRequest: (s) => held.push(s) });
  const c = await RawClient.open(port);
  try {
    c.send(headers(1, true), headers(3, true));
    while (held.length < 2) await new Promise((r) => setTimeout(r, 5));
    const closing = server.close();
    const g = await c.goaway();
    assert.deepEqual(g, { lastStreamId: 3, code: H2Error.NO_ERROR });
    held[0]!.respond([[':status', '200']]);
    held[1]!.respond([[':status', '200']], Buffer.from('x'));
    await closing;
    const deadline = Date.now() + 5000;
    while (!c.closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    assert.ok(c.closed);
    assert.equal(c.headersOf(1).length, 1);
    assert.equal(c.frames.filter((f) => f.type === FrameType.DATA && f.streamId === 3).length, 1);
  } finally {
    c.close();
  }
});

test('the client GOAWAY ends the connection once its streams are answered', async () => {
  const held: H2Stream[] = [];
  const { port } = await start({ onRequest: (s) => held.push(s) });
  const c = await RawClient.open(port);
  try {
    c.send(headers(1, true));
    while (held.length < 1) await new Promise((r) => setTimeout(r, 5));
    c.send(goawayFrame(0, H2Error.NO_ERROR));
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(c.closed, false);
    held[0]!.respond([[':status', '200']]);
    const deadline = Date.now() + 5000;
    while (!c.closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    assert.ok(c.closed);
  } finally {
    c.close();
  }
});

test('reads frames however the bytes are split across socket reads (1 octet at a time up to whole)', async () => {
  const { EventEmitter } = await import('node:events');
  const { H2Connection } = await import('../../../src/util/h2/connection');
  const body = Buffer.from(Array.from({ length: 5000 }, (_, i) => i & 0xff));
  const wire = Buffer.concat([
    PREFACE, settingsFrame([[4, 100_000]]),
    headers(1, false), data(1, body.subarray(0, 10), false), data(1, Buffer.alloc(0), false), data(1, body.subarray(10, 3000), false), data(1, body.subarray(3000)),
    frame(FrameType.PING, 0, 0, Buffer.from('abcdefgh')),
    frame(FrameType.HEADERS, 0, 3, REQUEST.subarray(0, 4)), frame(FrameType.CONTINUATION, Flag.END_HEADERS, 3, REQUEST.subarray(4)),
    data(3, Buffer.from('tail')),
  ]);
  for (const split of [1, 2, 3, 5, 8, 9, 10, 11, 17, 24, 25, 33, 100, 1000, 4096, wire.length]) {
    const written: Buffer[] = [];
    const socket = Object.assign(new EventEmitter(), {
      destroyed: false, writableLength: 0,
      setNoDelay: () => undefined, cork: () => undefined, uncork: () => undefined,
      write: (b: Buffer) => written.push(Buffer.from(b)),
      end: () => undefined, destroy: () => undefined,
    });
    const got: [number, string][] = [];
    new H2Connection(socket as unknown as net.Socket, { onRequest: (s) => got.push([s.id, s.body().toString('hex')]) });
    // Each read a buffer of its own, as a socket's are: the layer moves body bytes inside them.
    for (let p = 0; p < wire.length; p += split) socket.emit('data', Buffer.from(wire.subarray(p, p + split)));
    assert.deepEqual(got, [[1, body.toString('hex')], [3, Buffer.from('tail').toString('hex')]], `split ${split}`);
    const out = Buffer.concat(written);
    assert.ok(out.includes(Buffer.from('abcdefgh')), `PING answered, split ${split}`);
    assert.ok(!out.includes(goawayFrame(0, 0).subarray(0, 4)), `no GOAWAY, split ${split}`);
  }
});

/** A connection on a fake socket: `feed` emits one read; returns what the handler got. */
async function fakeConnection(handler: H2Handler): Promise<{ feed: (read: Buffer) => void }> {
  const { EventEmitter } = await import('node:events');
  const { H2Connection } = await import('../../../src/util/h2/connection');
  const socket = Object.assign(new EventEmitter(), {
    destroyed: false, writableLength: 0,
    setNoDelay: () => undefined, cork: () => undefined, uncork: () => undefined,
    write: () => true, end: () => undefined, destroy: () => undefined,
  });
  new H2Connection(socket as unknown as net.Socket, handler);
  return { feed: (read) => socket.emit('data', read) };
}

const pattern = (length: number, seed: number) => Buffer.from(Array.from({ length }, (_, i) => (i * 7 + seed) & 0xff));
const padded = (streamId: number, payload: Buffer, pad: number, endStream = false) =>
  frame(FrameType.DATA, Flag.PADDED | (endStream ? Flag.END_STREAM : 0), streamId, Buffer.concat([Buffer.from([pad]), payload, Buffer.alloc(pad, 0xee)]));

test('keepBody: a body whose DATA frames share a read is one view into it, not a copy; interleaved streams and padding stay intact', async () => {
  const bodies = new Map<number, Buffer>();
  const lent: number[] = [];
  const { feed } = await fakeConnection({
    onHeaders(stream) {
      stream.keepBody = true;
      stream.onData = (chunk) => lent.push(chunk.length);
      stream.onEnd = () => bodies.set(stream.id, stream.body());
    },
    onRequest: () => assert.fail('onEnd replaces onRequest'),
  });
  const a = pattern(3000, 1);
  const b = pattern(2000, 2);
  const c = pattern(1500, 3);
  const read = Buffer.concat([
    PREFACE, settingsFrame([]),
    // stream 1 alone: three frames (one padded) with a PING between them
    headers(1, false), data(1, a.subarray(0, 1000), false), frame(FrameType.PING, 0, 0, Buffer.from('abcdefgh')),
    padded(1, a.subarray(1000, 2000), 17), data(1, a.subarray(2000)),
    // streams 3 and 5 interleaved
    headers(3, false), headers(5, false), data(3, b.subarray(0, 700), false), data(5, c.subarray(0, 500), false),
    data(3, b.subarray(700, 1400), false), data(5, c.subarray(500)), data(3, b.subarray(1400)),
  ]);
  feed(read);
  assert.deepEqual(lent, [1000, 1000, 1000, 700, 500, 700, 1000, 600]);
  assert.ok(bodies.get(1)!.equals(a));
  assert.ok(bodies.get(3)!.equals(b));
  assert.ok(bodies.get(5)!.equals(c));
  // Stream 1's frames were moved together inside the read: its body is a view of it, not a join.
  assert.equal(bodies.get(1)!.buffer, read.buffer);
});

test('keepBody: a body handed on stays intact while later reads on the connection are taken in', async () => {
  const bodies: Buffer[] = [];
  const { feed } = await fakeConnection({
    onHeaders(stream) {
      stream.keepBody = true;
      stream.onData = () => undefined;
      stream.onEnd = () => bodies.push(stream.body());
    },
    onRequest: () => assert.fail('onEnd replaces onRequest'),
  });
  const sent: Buffer[] = [];
  feed(Buffer.concat([PREFACE, settingsFrame([])]));
  for (let i = 0; i < 40; i++) {
    const id = 2 * i + 1;
    const body = pattern(900 + i * 37, i);
    sent.push(body);
    // Each call in two reads split inside a frame: moved parts, straddling frames and joins all occur.
    const wire = Buffer.concat([headers(id, false), data(id, body.subarray(0, 300), false), padded(id, body.subarray(300, 600), i), data(id, body.subarray(600))]);
    const cut = 20 + ((i * 53) % (wire.length - 20));
    feed(wire.subarray(0, cut));
    feed(Buffer.from(wire.subarray(cut)));
  }
  assert.equal(bodies.length, 40);
  for (let i = 0; i < 40; i++) assert.ok(bodies[i]!.equals(sent[i]!), `call ${i}`);
});

test('keepBody: dropBody lets go of a refused body; a chunk lent to onData without keepBody is not moved over', async () => {
  const kept: Buffer[] = [];
  const held: Buffer[] = [];
  const { feed } = await fakeConnection({
    onHeaders(stream) {
      if (stream.id === 1) {
        // keeps lent chunks itself (not keepBody): they must not be overwritten by stream 3's moves
        stream.onData = (chunk) => held.push(chunk);
        stream.onEnd = () => undefined;
      } else if (stream.id === 3) {
        stream.keepBody = true;
        stream.onData = () => undefined;
        stream.onEnd = () => kept.push(stream.body());
      } else {
        stream.keepBody = true;
        stream.onData = () => stream.dropBody();
        stream.onEnd = () => kept.push(stream.body());
      }
    },
    onRequest: () => assert.fail('onEnd replaces onRequest'),
  });
  const x = pattern(400, 9);
  const y = pattern(400, 10);
  feed(Buffer.concat([
    PREFACE, settingsFrame([]), headers(1, false), headers(3, false), headers(5, false),
    data(3, y.subarray(0, 200), false), data(1, x.subarray(0, 200), false), data(3, y.subarray(200)), data(1, x.subarray(200)),
    data(5, pattern(100, 1)),
  ]));
  assert.ok(Buffer.concat(held).equals(x));
  assert.ok(kept[0]!.equals(y));
  assert.equal(kept[1]!.length, 0);
});

test('settingsAckTimeoutMs: a client that never acknowledges our SETTINGS gets GOAWAY SETTINGS_TIMEOUT; one that does is kept', async () => {
  const { port } = await start(echoLength, { settingsAckTimeoutMs: 300 });
  const silent = await RawClient.open(port);
  const polite = await RawClient.open(port);
  try {
    polite.send(frame(FrameType.SETTINGS, Flag.ACK, 0));
    assert.equal((await silent.goaway()).code, H2Error.SETTINGS_TIMEOUT);
    polite.send(headers(1, false), data(1, Buffer.from('abc')));
    await polite.waitFor((f) => f.type === FrameType.HEADERS && (f.flags & Flag.END_STREAM) !== 0 && f.streamId === 1, 'trailers');
    assert.equal(polite.frames.some((f) => f.type === FrameType.GOAWAY), false);
  } finally {
    silent.close();
    polite.close();
  }
});

test('drainMs: a stream answered mid-body drops the rest (no reset), its END_STREAM brings a PING; past drainMs RST_STREAM NO_ERROR', async () => {
  const closed: number[] = [];
  const { port } = await start({
    onHeaders(stream) {
      stream.onData = () => undefined;
      stream.onEnd = () => undefined;
      stream.onClose = () => closed.push(stream.id);
      stream.respond([[':status', '200'], ['content-type', 'application/grpc'], ['grpc-status', '8']]);
    },
    onRequest: () => assert.fail('onEnd replaces onRequest'),
  }, { drainMs: 400 });
  const c = await RawClient.open(port);
  try {
    c.send(headers(1, false), data(1, Buffer.alloc(1000), false));
    await c.waitFor((f) => f.type === FrameType.HEADERS && f.streamId === 1, 'the early answer');
    c.send(data(1, Buffer.alloc(1000), true));
    const ping = await c.waitFor((f) => f.type === FrameType.PING && f.flags === 0, 'the wake-up PING');
    c.send(frame(FrameType.PING, Flag.ACK, 0, ping.payload));
    assert.equal(c.frames.some((f) => f.type === FrameType.RST_STREAM && f.streamId === 1), false);
    assert.deepEqual(closed, [1]);
    // A client that keeps sending is reset with NO_ERROR once drainMs has passed.
    c.send(headers(3, false), data(3, Buffer.alloc(100), false));
    assert.equal(await c.rst(3), H2Error.NO_ERROR);
    assert.deepEqual(closed, [1, 3]);
  } finally {
    c.close();
  }
});

test('connection hooks and ping(): settings, pings, streams opened and closed; a ping callback fails when the connection ends', async () => {
  const events: string[] = [];
  let connection: H2Connection | undefined;
  const server = createH2Server(echoLength, {}, undefined, (conn) => {
    connection = conn;
    conn.onRemoteSettings = () => events.push('settings');
    conn.onPingReceived = () => events.push('ping');
    conn.onStreamOpen = (s) => events.push(`open ${s.id}`);
    conn.onStreamClose = (s) => events.push(`close ${s.id}`);
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.server.listen(0, '127.0.0.1', resolve));
  const c = await RawClient.open((server.server.address() as net.AddressInfo).port);
  try {
    c.send(frame(FrameType.PING, 0, 0, Buffer.from('12345678')), headers(1, false), data(1, Buffer.from('abc')));
    await c.waitFor((f) => f.type === FrameType.HEADERS && (f.flags & Flag.END_STREAM) !== 0 && f.streamId === 1, 'trailers');
    assert.deepEqual(events, ['settings', 'ping', 'open 1', 'close 1']);
    assert.equal(connection!.handshaken, true);
    const acked = new Promise<Error | undefined>((resolve) => connection!.ping(resolve));
    const ours = await c.waitFor((f) => f.type === FrameType.PING && f.flags === 0, 'our PING');
    c.send(frame(FrameType.PING, Flag.ACK, 0, ours.payload));
    assert.equal(await acked, undefined);
    const lost = new Promise<Error | undefined>((resolve) => connection!.ping(resolve));
    c.close();
    assert.ok((await lost) instanceof Error);
  } finally {
    c.close();
  }
});
