import assert from 'node:assert/strict';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import * as zlib from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import { GrpcUnaryClient, type GrpcClientOptions, type UnaryClient } from '../../../src/exporters/otlp/grpc-client';
import { SpansieveGrpcClient } from '../../../src/exporters/otlp/h2-grpc-client';
import { otlpExporterFactory } from '../../../src/exporters/otlp/otlp-exporter';
import { loadZstd } from '../../../src/util/compression';
import { GrpcStatus } from '../../../src/util/grpc';
import { snappyFramed, zstdCompress } from '../../helpers/compression';
import { configErrors } from '../../helpers/components';
import { ConfigIssues, Node } from '../../../src/config/reader';

// The exporter's gRPC client against a bare HTTP/2 server whose answers each test chooses.

type Answer = (stream: http2.ServerHttp2Stream) => void;

// Both HTTP/2 clients the exporter can use (`http2: spansieve | node`) pass the same tests.
const IMPLEMENTATIONS: [string, (endpoint: string, options: GrpcClientOptions) => UnaryClient][] = [
  ['spansieve', (endpoint, options) => new SpansieveGrpcClient(endpoint, options)],
  ['node', (endpoint, options) => new GrpcUnaryClient(endpoint, options)],
];

for (const [name, makeClient] of IMPLEMENTATIONS) void describe(`gRPC unary client (http2: ${name})`, () => {
  const server = http2.createServer();
  let answer: Answer = () => undefined;
  let sessions = 0;
  let port = 0;

  before(async () => {
    await loadZstd();
    server.on('session', () => sessions++);
    server.on('stream', (stream) => {
      stream.on('error', () => undefined);
      stream.resume();
      stream.on('end', () => answer(stream));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    port = (server.address() as { port: number }).port;
  });

  after(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  const client = (metadata: Record<string, string> = {}) =>
    makeClient(`127.0.0.1:${port}`, { tls: undefined, metadata });
  const call = (c: UnaryClient, timeoutMs = 5000) => c.call('/x.Y/Export', Buffer.from('hello'), new AbortController().signal, timeoutMs);
  const ok: Answer = (stream) => {
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
    stream.end(Buffer.alloc(5));
  };

  void test('a header the config supplies that HTTP/2 forbids: INVALID_ARGUMENT naming it, and the connection stays usable', async () => {
    answer = ok;
    const c = client({ connection: 'keep-alive' });
    try {
      const result = await call(c);
      assert.equal(result.code, GrpcStatus.INVALID_ARGUMENT);
      assert.match(result.message, /cannot send the configured headers/);
    } finally {
      c.close();
    }
    const good = client();
    try {
      assert.equal((await call(good)).code, GrpcStatus.OK);
    } finally {
      good.close();
    }
  });

  void test('status OK with an unreadable body stays a success, with the reason (no retry, no duplicate)', async () => {
    answer = (stream) => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(Buffer.from([0, 0, 0, 0, 9, 1, 2])); // says 9 bytes, sends 2
    };
    const c = client();
    try {
      const result = await call(c);
      assert.equal(result.code, GrpcStatus.OK);
      assert.equal(result.response, undefined);
      assert.match(result.responseError ?? '', /prefix says 9 bytes, 2 arrived/);
    } finally {
      c.close();
    }
  });

  void test('response messages: plain, gzip, zstd and snappy under their grpc-encoding, and a compressed flag without that header', async () => {
    const respondWith = (body: Buffer, headers: http2.OutgoingHttpHeaders = {}): Answer => (stream) => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc', ...headers }, { waitForTrailers: true });
      stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(body);
    };
    const framed = (flag: number, message: Buffer) => {
      const prefix = Buffer.alloc(5);
      prefix[0] = flag;
      prefix.writeUInt32BE(message.length, 1);
      return Buffer.concat([prefix, message]);
    };
    const c = client();
    try {
      answer = respondWith(framed(0, Buffer.from('plain')));
      assert.equal((await call(c)).response?.toString(), 'plain');
      answer = respondWith(framed(1, zlib.gzipSync('zipped')), { 'grpc-encoding': 'gzip' });
      assert.equal((await call(c)).response?.toString(), 'zipped');
      answer = respondWith(framed(1, zlib.gzipSync('zipped')));
      const unflagged = await call(c);
      assert.equal(unflagged.code, GrpcStatus.OK);
      assert.match(unflagged.responseError ?? '', /compressed response without grpc-encoding/);
      // A grpc-go server answers in the request's encoding: zstd and (framed) snappy too.
      answer = respondWith(framed(1, Buffer.from(zstdCompress(Buffer.from('zstd-packed')))), { 'grpc-encoding': 'zstd' });
      assert.equal((await call(c)).response?.toString(), 'zstd-packed');
      answer = respondWith(framed(1, snappyFramed(Buffer.from('snappy-packed'))), { 'grpc-encoding': 'snappy' });
      assert.equal((await call(c)).response?.toString(), 'snappy-packed');
      answer = respondWith(framed(1, Buffer.from('not zstd')), { 'grpc-encoding': 'zstd' });
      assert.match((await call(c)).responseError ?? '', /not a zstd frame/);
      answer = respondWith(Buffer.alloc(0));
      const empty = await call(c);
      assert.equal(empty.code, GrpcStatus.OK);
      assert.equal(empty.response, undefined);
      assert.equal(empty.responseError, undefined);
    } finally {
      c.close();
    }
  });

  void test('every request arrives as one framed message with the configured headers (the cached headers too)', async () => {
    const received: { body: Buffer; headers: http2.IncomingHttpHeaders }[] = [];
    const capture = (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => received.push({ body: Buffer.concat(chunks), headers }));
    };
    server.prependListener('stream', capture);
    answer = ok;
    const c = client({ 'x-tenant': 'a' });
    try {
      const messages = [Buffer.alloc(100_000, 7), Buffer.alloc(300, 9)];
      for (const message of messages) {
        assert.equal((await c.call('/x.Y/Export', message, new AbortController().signal, 2500)).code, GrpcStatus.OK);
      }
      assert.equal(received.length, 2);
      received.forEach(({ body, headers }, i) => {
        const message = messages[i]!;
        assert.equal(body.length, 5 + message.length, `call ${i}`);
        assert.equal(body[0], 0);
        assert.equal(body.readUInt32BE(1), message.length);
        assert.ok(body.subarray(5).equals(message));
        assert.equal(headers[':path'], '/x.Y/Export');
        assert.equal(headers['grpc-timeout'], '2500m');
        assert.equal(headers['x-tenant'], 'a');
        assert.equal(headers['content-type'], 'application/grpc');
      });
    } finally {
      server.off('stream', capture);
      c.close();
    }
  });

  void test('a response message larger than one DATA frame is reassembled', async () => {
    const message = Buffer.alloc(200_000);
    for (let i = 0; i < message.length; i++) message[i] = i % 251;
    const prefix = Buffer.alloc(5);
    prefix.writeUInt32BE(message.length, 1);
    answer = (stream) => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      // Written in pieces that cut through the prefix and the message.
      const frame = Buffer.concat([prefix, message]);
      stream.write(frame.subarray(0, 3));
      stream.write(frame.subarray(3, 70_000));
      stream.end(frame.subarray(70_000));
    };
    const c = client();
    try {
      const result = await call(c);
      assert.equal(result.code, GrpcStatus.OK);
      assert.equal(result.responseError, undefined);
      assert.ok(result.response?.equals(message));
    } finally {
      c.close();
    }
  });

  void test('an HTTP error without gRPC status maps by the gRPC spec (503 -> UNAVAILABLE)', async () => {
    answer = (stream) => {
      stream.respond({ ':status': 503 });
      stream.end();
    };
    const c = client();
    try {
      const result = await call(c);
      assert.equal(result.code, GrpcStatus.UNAVAILABLE);
      assert.match(result.message, /HTTP 503/);
    } finally {
      c.close();
    }
  });

  void test('a call that times out is cancelled; a connection that still answers PING is kept', async () => {
    answer = () => undefined; // never answers the call
    const c = client();
    try {
      const before = sessions;
      const controller = new AbortController();
      const pending = c.call('/x.Y/Export', Buffer.from('hello'), controller.signal, 100);
      setTimeout(() => controller.abort(new Error('export timed out after 100ms')), 100);
      const result = await pending;
      assert.equal(result.code, GrpcStatus.DEADLINE_EXCEEDED);
      assert.match(result.message, /timed out after 100ms/);
      await new Promise((resolve) => setTimeout(resolve, 200)); // the PING's round trip
      answer = ok;
      assert.equal((await call(c)).code, GrpcStatus.OK);
      assert.equal(sessions, before + 1, 'the same connection served both calls');
    } finally {
      c.close();
    }
  });

  void test('a call that times out on a connection that no longer answers PING: the connection is replaced', async () => {
    answer = ok;
    const proxy = await freezableProxy(port);
    const c = makeClient(`127.0.0.1:${proxy.port}`, { tls: undefined, metadata: {}, pingTimeoutMs: 200 });
    const callWithin = (ms: number) => {
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(new Error(`export timed out after ${ms}ms`)), ms);
      return c.call('/x.Y/Export', Buffer.from('hello'), controller.signal, ms).finally(() => clearTimeout(timer));
    };
    try {
      const before = sessions;
      assert.equal((await callWithin(2000)).code, GrpcStatus.OK);
      // The peer goes silent without closing: nothing is forwarded either way any more.
      proxy.freeze();
      assert.equal((await callWithin(100)).code, GrpcStatus.DEADLINE_EXCEEDED);
      await new Promise((resolve) => setTimeout(resolve, 400)); // the unanswered PING's timeout
      // On the silent connection this would time out too; a new connection answers.
      const result = await callWithin(2000);
      assert.equal(result.code, GrpcStatus.OK, result.message);
      assert.equal(sessions, before + 2, 'a second connection served the last call');
    } finally {
      c.close();
      await proxy.close();
    }
  });
});

/** A TCP proxy to `targetPort` whose open connections can be frozen (new ones still pass). */
async function freezableProxy(targetPort: number): Promise<{ port: number; freeze(): void; close(): Promise<void> }> {
  const open = new Set<net.Socket>();
  const pairs: [net.Socket, net.Socket][] = [];
  const server = net.createServer((inbound) => {
    const outbound = net.connect(targetPort, '127.0.0.1');
    for (const socket of [inbound, outbound]) {
      open.add(socket);
      socket.on('error', () => undefined);
      socket.on('close', () => open.delete(socket));
    }
    inbound.pipe(outbound);
    outbound.pipe(inbound);
    pairs.push([inbound, outbound]);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    port: (server.address() as net.AddressInfo).port,
    freeze() {
      for (const [inbound, outbound] of pairs.splice(0)) {
        inbound.unpipe(outbound);
        outbound.unpipe(inbound);
        inbound.pause();
        outbound.pause();
      }
    },
    async close() {
      for (const socket of open) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

void describe('otlp exporter config', () => {
  void test('headers HTTP/2 forbids are config errors naming them', () => {
    const errors = configErrors(
      (n) => otlpExporterFactory.parseConfig(n),
      { endpoint: '127.0.0.1:4317', headers: { connection: 'keep-alive', 'x-tenant': 'a', 'Transfer-Encoding': 'chunked' } },
      'exporters::otlp',
    );
    assert.deepEqual(errors, [
      'exporters::otlp::headers::connection: is a connection-level header, which HTTP/2 (and so gRPC) does not allow',
      'exporters::otlp::headers::Transfer-Encoding: is a connection-level header, which HTTP/2 (and so gRPC) does not allow',
    ]);
  });

  void test('http2: spansieve (default) or node; anything else is a config error', () => {
    const parse = (extra: Record<string, unknown>) => otlpExporterFactory.parseConfig(new Node({ endpoint: '127.0.0.1:4317', ...extra }, 'exporters::otlp', new ConfigIssues()));
    assert.equal(parse({}).http2, 'spansieve');
    assert.equal(parse({ http2: 'node' }).http2, 'node');
    const errors = configErrors((n) => otlpExporterFactory.parseConfig(n), { endpoint: '127.0.0.1:4317', http2: 'nghttp2' }, 'exporters::otlp');
    assert.deepEqual(errors, ['exporters::otlp::http2: must be one of spansieve, node, got "nghttp2"']);
  });
});
