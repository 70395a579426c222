import assert from 'node:assert/strict';
import * as net from 'node:net';
import { after, test } from 'node:test';
import { Http1Server, type Http1Exchange, type Http1ServerOptions } from '../../../src/util/http1/server';
import { waitFor } from '../../helpers/ports';

const servers: Http1Server[] = [];
after(async () => {
  for (const s of servers) if (s.server.listening) await s.close();
});

const NO_TIMEOUTS: Http1ServerOptions = { headersTimeoutMs: 0, requestTimeoutMs: 0, writeTimeoutMs: 0, idleTimeoutMs: 0, lingerMs: 200 };

/** A server whose handler is `handle`; by default it reads the body and echoes it with the method and target. */
async function listen(options: Partial<Http1ServerOptions> = {}, handle?: (exchange: Http1Exchange) => void): Promise<{ server: Http1Server; port: number }> {
  const server = new Http1Server(
    handle ??
      ((exchange) => {
        exchange.readBody().then(
          (body) => exchange.respond(200, 'text/plain', Buffer.concat([Buffer.from(`${exchange.method} ${exchange.target} `), body])),
          () => undefined,
        );
      }),
    { ...NO_TIMEOUTS, ...options },
  );
  servers.push(server);
  await new Promise<void>((resolve) => server.server.listen(0, '127.0.0.1', () => resolve()));
  return { server, port: (server.server.address() as net.AddressInfo).port };
}

/** A raw connection collecting what it receives. */
class Client {
  readonly socket: net.Socket;
  received = '';
  closed = false;
  constructor(port: number) {
    this.socket = net.connect(port, '127.0.0.1');
    this.socket.on('data', (d: Buffer) => (this.received += d.toString('latin1')));
    this.socket.on('error', () => undefined);
    this.socket.on('close', () => (this.closed = true));
  }
  send(text: string | Buffer): void {
    this.socket.write(text);
  }
  /** The answers received so far, each as status, headers (lower-case names) and body. */
  responses(): { status: number; headers: Record<string, string>; body: string }[] {
    const out: { status: number; headers: Record<string, string>; body: string }[] = [];
    let rest = this.received;
    while (rest.length > 0) {
      const end = rest.indexOf('\r\n\r\n');
      if (end === -1) break;
      const [statusLine, ...lines] = rest.slice(0, end).split('\r\n');
      const headers: Record<string, string> = {};
      for (const line of lines) headers[line.slice(0, line.indexOf(':')).toLowerCase()] = line.slice(line.indexOf(':') + 1).trim();
      const length = Number(headers['content-length'] ?? 0);
      const status = Number(statusLine!.split(' ')[1]);
      // 1xx answers carry no body.
      const bodyLength = status < 200 ? 0 : length;
      if (rest.length < end + 4 + bodyLength) break;
      out.push({ status, headers, body: rest.slice(end + 4, end + 4 + bodyLength) });
      rest = rest.slice(end + 4 + bodyLength);
    }
    return out;
  }
  async waitResponses(n: number): Promise<ReturnType<Client['responses']>> {
    await waitFor(`${n} answers`, () => this.responses().length >= n, 10_000, 10);
    return this.responses();
  }
  async waitClosed(): Promise<void> {
    await waitFor('the connection to close', () => this.closed, 10_000, 10);
  }
}

const post = (path: string, body: string, extra = '') => `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`;

test('keep-alive: requests on one connection, each answered in one write with Date and Content-Length', async () => {
  const { port } = await listen();
  const c = new Client(port);
  c.send(post('/a', 'one'));
  const [first] = await c.waitResponses(1);
  assert.equal(first!.status, 200);
  assert.equal(first!.body, 'POST /a one');
  assert.ok(first!.headers.date);
  assert.equal(first!.headers.connection, undefined);
  c.send(post('/b', 'two'));
  const answers = await c.waitResponses(2);
  assert.equal(answers[1]!.body, 'POST /b two');
  assert.equal(c.closed, false);
  c.socket.destroy();
});

test('a refusal without reading keeps the connection when the whole body is already here; closes it when not', async () => {
  const { port } = await listen({}, (exchange) => exchange.respond(415, 'text/plain', Buffer.from('no')));
  const c = new Client(port);
  c.send(post('/a', 'small'));
  assert.equal((await c.waitResponses(1))[0]!.headers.connection, undefined);
  c.send(post('/b', 'again'));
  assert.equal((await c.waitResponses(2))[1]!.status, 415);
  c.send('POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nonly the start');
  assert.equal((await c.waitResponses(3))[2]!.headers.connection, 'close');
  await c.waitClosed();
});

test('pipelined requests, sent in one write, are answered in order', async () => {
  // The first answer is delayed: the second must still come after it.
  const { port } = await listen({}, (exchange) => {
    void exchange.readBody().then((body) => {
      const delay = exchange.target === '/slow' ? 100 : 0;
      setTimeout(() => exchange.respond(200, 'text/plain', body), delay);
    });
  });
  const c = new Client(port);
  c.send(post('/slow', 'first') + post('/fast', 'second') + `POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nthird\r\n0\r\n\r\n`);
  const answers = await c.waitResponses(3);
  assert.deepEqual(answers.map((a) => a.body), ['first', 'second', 'third']);
  c.socket.destroy();
});

test('chunked bodies arriving in pieces, with trailers', async () => {
  const { port } = await listen();
  const c = new Client(port);
  c.send('POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab');
  await new Promise((resolve) => setTimeout(resolve, 20));
  c.send('c\r\n4;x=y\r\ndefg\r\n0\r\nTrailer: 1\r\n\r\n');
  const [a] = await c.waitResponses(1);
  assert.equal(a!.body, 'POST /c abcdefg');
  c.socket.destroy();
});

test('a body check refusing a chunked body ends the request: the answer closes the connection', async () => {
  const { port } = await listen({}, (exchange) => {
    exchange.readBody((size) => (size > 4 ? new Error('too big') : undefined)).then(
      () => exchange.respond(200, 'text/plain', Buffer.alloc(0)),
      (err: Error) => exchange.respond(413, 'text/plain', Buffer.from(err.message)),
    );
  });
  const c = new Client(port);
  c.send('POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n');
  const [a] = await c.waitResponses(1);
  assert.equal(a!.status, 413);
  assert.equal(a!.headers.connection, 'close');
  await c.waitClosed();
});

test('Expect: 100-continue: 100 Continue when the body is asked for; a refusal without reading closes instead', async () => {
  const { port } = await listen({}, (exchange) => {
    if (exchange.target === '/refuse') {
      exchange.respond(413, 'text/plain', Buffer.from('no'));
      return;
    }
    void exchange.readBody().then((body) => exchange.respond(200, 'text/plain', body));
  });
  const c = new Client(port);
  c.send('POST /ok HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n');
  const [cont] = await c.waitResponses(1);
  assert.equal(cont!.status, 100);
  c.send('body');
  const answers = await c.waitResponses(2);
  assert.equal(answers[1]!.body, 'body');
  c.send('POST /refuse HTTP/1.1\r\nHost: x\r\nContent-Length: 4000000\r\nExpect: 100-continue\r\n\r\n');
  const all = await c.waitResponses(3);
  assert.equal(all[2]!.status, 413);
  assert.equal(all[2]!.headers.connection, 'close');
  assert.ok(!c.received.slice(c.received.indexOf('body') + 4).includes('100 Continue'), 'no 100 for a refused request');
  await c.waitClosed();
});

test('oversized heads get 431, malformed ones 400 with the reason, and the connection closes; the server goes on', async () => {
  const { port } = await listen();
  const big = new Client(port);
  big.send(`POST / HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(17 * 1024)}`);
  const [a] = await big.waitResponses(1);
  assert.equal(a!.status, 431);
  await big.waitClosed();
  for (const bad of ['GARBAGE\r\n\r\n', 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n', 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n']) {
    const c = new Client(port);
    c.send(bad);
    const [r] = await c.waitResponses(1);
    assert.equal(r!.status, 400, bad);
    assert.match(r!.body, /malformed|both Content-Length|invalid Content-Length/);
    await c.waitClosed();
  }
  const ok = new Client(port);
  ok.send(post('/', 'x'));
  assert.equal((await ok.waitResponses(1))[0]!.status, 200);
  ok.socket.destroy();
});

test('a client that goes away mid-body: readBody rejects, nothing is written', async () => {
  let rejected: Error | undefined;
  const { server, port } = await listen({}, (exchange) => {
    exchange.readBody().then(
      () => exchange.respond(200, 'text/plain', Buffer.alloc(0)),
      (err: Error) => {
        rejected = err;
        exchange.respond(400, 'text/plain', Buffer.alloc(0));
      },
    );
  });
  const c = new Client(port);
  c.send('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly some');
  await waitFor('the connection', () => server.connections.size === 1, 5000, 10);
  c.socket.destroy();
  await waitFor('readBody to reject', () => rejected !== undefined, 5000, 10);
  await waitFor('the connection to go', () => server.connections.size === 0, 5000, 10);
});

test('a client that half-closes after its request still gets the answer, then the connection closes', async () => {
  const { port } = await listen();
  const c = new Client(port);
  c.socket.end(post('/half', 'closed'));
  const [a] = await c.waitResponses(1);
  assert.equal(a!.body, 'POST /half closed');
  await c.waitClosed();
});

test('HTTP/1.0: closed after the answer unless it asks for keep-alive; HEAD gets no body', async () => {
  const { port } = await listen();
  const c = new Client(port);
  c.send('POST /a HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi');
  const [a] = await c.waitResponses(1);
  assert.equal(a!.body, 'POST /a hi');
  assert.equal(a!.headers.connection, 'close');
  await c.waitClosed();
  const k = new Client(port);
  k.send('POST /b HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi');
  assert.equal((await k.waitResponses(1))[0]!.headers.connection, 'keep-alive');
  k.send('HEAD /h HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
  await waitFor('the HEAD answer', () => k.received.split('HTTP/1.1 200').length === 3, 5000, 10);
  const headAnswer = k.received.slice(k.received.lastIndexOf('HTTP/1.1 200'));
  assert.match(headAnswer, /Content-Length: 8\r\n/);
  assert.ok(headAnswer.endsWith('\r\n\r\n'), 'no body after a HEAD answer');
  k.socket.destroy();
});

test('timeouts: a silent connection, a stalled head (408), a stalled body (408), an idle keep-alive connection, an unanswered request', async () => {
  const { port } = await listen({ headersTimeoutMs: 200, requestTimeoutMs: 400, idleTimeoutMs: 200, writeTimeoutMs: 600 }, (exchange) => {
    if (exchange.target === '/never') return;
    void exchange.readBody().then((body) => exchange.respond(200, 'text/plain', body), () => undefined);
  });
  const silent = new Client(port);
  const head = new Client(port);
  head.send('POST / HTTP/1.1\r\nHost: x\r\n');
  const body = new Client(port);
  body.send('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc');
  const idle = new Client(port);
  idle.send(post('/', 'x'));
  const never = new Client(port);
  never.send(post('/never', ''));
  await Promise.all([silent, head, body, idle, never].map((c) => c.waitClosed()));
  assert.equal(silent.received, '');
  assert.equal(head.responses()[0]?.status, 408);
  assert.equal(body.responses()[0]?.status, 408);
  assert.equal(idle.responses()[0]?.status, 200);
  assert.equal(never.received, '', 'past write_timeout the connection closes unanswered');
});

test('close(): idle connections end at once, a request in flight is answered (Connection: close) before its connection ends', async () => {
  let answer: (() => void) | undefined;
  const { server, port } = await listen({}, (exchange) => {
    void exchange.readBody().then((body) => {
      answer = () => exchange.respond(200, 'text/plain', body);
    });
  });
  const idle = new Client(port);
  const busy = new Client(port);
  busy.send(post('/', 'x'));
  await waitFor('the request', () => answer !== undefined, 5000, 10);
  await waitFor('both connections', () => server.connections.size === 2, 5000, 10);
  const closed = server.close();
  await idle.waitClosed();
  assert.equal(busy.closed, false);
  answer!();
  const [a] = await busy.waitResponses(1);
  assert.equal(a!.headers.connection, 'close');
  await busy.waitClosed();
  await closed;
});
