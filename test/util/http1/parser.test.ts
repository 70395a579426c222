import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type * as net from 'node:net';
import { test } from 'node:test';
import { ChunkedDecoder, HttpParseError, MAX_HEAD_BYTES, findHeadEnd, headerRecord, headerValue, parseHead, type RequestHead } from '../../../src/util/http1/parser';
import { Http1Connection, Http1Server, type Http1Exchange } from '../../../src/util/http1/server';

function head(text: string): RequestHead | HttpParseError {
  const buf = Buffer.from(text, 'latin1');
  const end = findHeadEnd(buf, 0, buf.length);
  assert.notEqual(end, -1, 'a whole head');
  return parseHead(buf, 0, end);
}

function ok(text: string): RequestHead {
  const h = head(text);
  assert.ok(!(h instanceof HttpParseError), h instanceof HttpParseError ? h.message : '');
  return h;
}

function refused(text: string, status: number, message: RegExp): void {
  const h = head(text);
  assert.ok(h instanceof HttpParseError, `refused: ${JSON.stringify(text)}`);
  assert.equal(h.status, status);
  assert.match(h.message, message);
}

test('a request head: method, target, version, headers in lower case with OWS trimmed, framing', () => {
  const h = ok('POST /v1/traces?x=1 HTTP/1.1\r\nHost: a\r\nContent-Type:  application/x-protobuf \t\r\nContent-Length: 12\r\nX-A: 1\r\nx-a: 2\r\n\r\n');
  assert.equal(h.method, 'POST');
  assert.equal(h.target, '/v1/traces?x=1');
  assert.equal(h.minor, 1);
  assert.equal(h.contentLength, 12);
  assert.equal(h.chunked, false);
  assert.equal(h.keepAlive, true);
  assert.equal(headerValue(h, 'content-type'), 'application/x-protobuf');
  assert.deepEqual({ ...headerRecord(h) }, { host: 'a', 'content-type': 'application/x-protobuf', 'content-length': '12', 'x-a': '1, 2' });
  const chunked = ok('POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\nConnection: close\r\nExpect: 100-Continue\r\n\r\n');
  assert.deepEqual([chunked.chunked, chunked.contentLength, chunked.keepAlive, chunked.expectContinue], [true, -1, false, true]);
  const old = ok('POST / HTTP/1.0\r\n\r\n');
  assert.deepEqual([old.minor, old.keepAlive], [0, false]);
  assert.equal(ok('POST / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n').keepAlive, true);
  // Duplicates of a single-valued header: the first, as node:http keeps it.
  assert.equal(headerRecord(ok('GET / HTTP/1.1\r\nHost: a\r\nAuthorization: one\r\nAuthorization: two\r\n\r\n')).authorization, 'one');
});

test('malformed heads, bad framing and unsupported expectations are refused with a reason', () => {
  refused('POST  /v1/traces HTTP/1.1\r\nHost: a\r\n\r\n', 400, /malformed request line/);
  refused('POST /v1/traces HTTP/2.0\r\nHost: a\r\n\r\n', 400, /malformed request line/);
  refused('PO(ST /v1/traces HTTP/1.1\r\nHost: a\r\n\r\n', 400, /malformed request line/);
  refused('POST /v1/traces HTTP/1.1\r\nHost a\r\n\r\n', 400, /malformed header line/);
  refused('POST /v1/traces HTTP/1.1\r\nHost : a\r\n\r\n', 400, /malformed header name/);
  refused('POST /v1/traces HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n', 400, /malformed header/);
  refused('POST /v1/traces HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n', 400, /invalid character/);
  refused('POST /v1/traces HTTP/1.1\r\nHost: a\r\nX: a\nb\r\n\r\n', 400, /invalid character/);
  refused('POST /v1/traces HTTP/1.1\r\n\r\n', 400, /missing Host/);
  refused('POST / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n', 400, /more than one Host/);
  refused('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n', 400, /invalid Content-Length/);
  refused('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1e3\r\n\r\n', 400, /invalid Content-Length/);
  refused('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n', 400, /conflicting Content-Length/);
  refused('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n', 400, /both Content-Length and Transfer-Encoding/);
  refused('POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n', 400, /unsupported Transfer-Encoding/);
  refused('POST / HTTP/1.1\r\nHost: a\r\nExpect: something\r\n\r\n', 417, /unsupported Expect/);
  assert.equal(ok('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n').contentLength, 3);
  const big = `POST / HTTP/1.1\r\nHost: a\r\nX: ${'a'.repeat(MAX_HEAD_BYTES)}\r\n\r\n`;
  refused(big, 431, /too large/);
});

function dechunk(input: string, pieces = 1): string | HttpParseError {
  const out: Buffer[] = [];
  const decoder = new ChunkedDecoder((data) => out.push(Buffer.from(data)));
  const buf = Buffer.from(input, 'latin1');
  const step = Math.ceil(buf.length / pieces);
  for (let at = 0; at < buf.length; at += step) {
    const end = Math.min(buf.length, at + step);
    const r = decoder.feed(buf, at, end);
    if (r instanceof HttpParseError) return r;
    if (decoder.done) return Buffer.concat(out).toString('latin1') + (r < buf.length ? `|rest:${buf.toString('latin1', r)}` : '');
  }
  return 'incomplete';
}

test('chunked bodies: sizes in hex, extensions and trailers dropped, the next request left over, malformed ones refused', () => {
  const body = '5\r\nhello\r\nA;ext=1\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n';
  for (const pieces of [1, 2, 5, body.length]) assert.equal(dechunk(body, pieces), 'hello0123456789');
  assert.equal(dechunk('3\r\nabc\r\n0\r\n\r\nPOST'), 'abc|rest:POST');
  assert.equal(dechunk('3\r\nabc\r\n'), 'incomplete');
  for (const bad of ['x\r\n', '3\r\nabcd\r\n', '3\nabc', '3\r\nabc\r\n0\r\n\n', '12345678901234\r\n']) {
    assert.ok(dechunk(bad) instanceof HttpParseError, JSON.stringify(bad));
  }
});

/** A socket stand-in: what the connection writes, and 'data' as the test feeds it. */
class FakeSocket extends EventEmitter {
  written: string[] = [];
  ended = false;
  destroyed = false;
  remoteAddress = '127.0.0.1';
  setNoDelay(): void {}
  pause(): void {}
  resume(): void {}
  write(data: Buffer | string): boolean {
    this.written.push(typeof data === 'string' ? data : data.toString('latin1'));
    return true;
  }
  end(): void {
    this.ended = true;
  }
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.emit('close');
  }
}

const turn = () => new Promise((resolve) => setImmediate(resolve));

/** Feeds `pieces` one read at a time to a connection whose handler reads each body and answers with it. */
async function serve(pieces: readonly Buffer[]): Promise<{ requests: string[]; output: string; ended: boolean }> {
  const requests: string[] = [];
  const handler = (exchange: Http1Exchange) => {
    exchange.readBody().then(
      (body) => {
        requests.push(`${exchange.method} ${exchange.target} ${JSON.stringify(headerRecord(exchange.head))} ${body.toString('latin1')}`);
        exchange.respond(200, 'text/plain', body);
      },
      () => requests.push('aborted'),
    );
  };
  const server = new Http1Server(handler, { headersTimeoutMs: 0, requestTimeoutMs: 0, writeTimeoutMs: 0, idleTimeoutMs: 0, lingerMs: 10 });
  const socket = new FakeSocket();
  new Http1Connection(socket as unknown as net.Socket, server);
  for (const piece of pieces) {
    socket.emit('data', piece);
    await turn();
  }
  for (let i = 0; i < 5; i++) await turn();
  socket.destroy();
  const output = socket.written.join('').replace(/Date: [^\r]*\r\n/g, '');
  return { requests, output, ended: socket.ended };
}

/** A small deterministic generator, so a failure can be replayed from its seed. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}

function randomSplit(buf: Buffer, random: () => number): Buffer[] {
  const pieces: Buffer[] = [];
  let at = 0;
  while (at < buf.length) {
    const n = 1 + Math.floor(random() * (random() < 0.3 ? 4 : buf.length));
    pieces.push(buf.subarray(at, Math.min(buf.length, at + n)));
    at += n;
  }
  return pieces;
}

const VALID_STREAM = Buffer.from(
  'POST /v1/traces HTTP/1.1\r\nHost: a\r\nContent-Type: application/x-protobuf\r\nContent-Length: 11\r\n\r\nhello world' +
    '\r\nPOST /v1/metrics?q=1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nX-Y: z\r\n\r\n4\r\nabcd\r\n2;e\r\nef\r\n0\r\nT: 1\r\n\r\n' +
    'POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n' +
    'POST /last HTTP/1.0\r\nContent-Length: 3\r\n\r\nend',
  'latin1',
);

test('property: however a stream of pipelined requests is split across reads, the same requests and answers in order', async () => {
  const whole = await serve([VALID_STREAM]);
  assert.equal(whole.requests.length, 4);
  assert.match(whole.requests[1]!, /^POST \/v1\/metrics\?q=1 .*"x-y":"z".* abcdef$/);
  assert.equal(whole.output.match(/HTTP\/1\.1 200 OK/g)?.length, 4);
  assert.match(whole.output, /Connection: close\r\n\r\nend$/, 'the HTTP/1.0 request without keep-alive closes');
  assert.ok(whole.ended);
  const random = rng(20261203);
  for (let i = 0; i < 150; i++) {
    const split = await serve(randomSplit(VALID_STREAM, random));
    assert.deepEqual(split, whole, `split ${i}`);
  }
  // One byte at a time.
  assert.deepEqual(await serve([...VALID_STREAM].map((b) => Buffer.from([b]))), whole);
});

test('property: random garbage and corrupted requests never throw; the answer, if any, is a 4xx and the connection ends', async () => {
  const random = rng(7);
  for (let i = 0; i < 300; i++) {
    let input: Buffer;
    if (i % 2 === 0) {
      input = Buffer.alloc(1 + Math.floor(random() * 300));
      for (let j = 0; j < input.length; j++) input[j] = Math.floor(random() * 256);
    } else {
      input = Buffer.from(VALID_STREAM);
      for (let k = 0; k < 3; k++) input[Math.floor(random() * input.length)] = Math.floor(random() * 256);
    }
    const { output, ended } = await serve(randomSplit(input, random));
    // The corrupted stream may still hold valid requests before the damage: their answers come first.
    const statuses = [...output.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => m[1]!);
    const what = `input ${i}: ${JSON.stringify(input.toString('latin1').slice(0, 80))} gave ${JSON.stringify(output.slice(0, 120))}`;
    const refusals = statuses.filter((s) => s !== '200');
    assert.ok(refusals.every((s) => ['400', '408', '417', '431'].includes(s)), what);
    assert.ok(refusals.length <= 1, what);
    if (refusals.length === 1) {
      assert.equal(statuses.at(-1), refusals[0], `the refusal is the last answer: ${what}`);
      assert.ok(ended, `a refusal ends the connection: ${what}`);
    }
  }
});
