import * as net from 'node:net';
import * as tls from 'node:tls';
import { ChunkedDecoder, HttpParseError, MAX_HEAD_BYTES, findHeadEnd, headerValue, leadingEmptyLines, parseHead, type RequestHead } from './parser';

// A small HTTP/1.1 server for request/response exchanges whose bodies are handled whole (OTLP/HTTP's
// POSTs): one request at a time per connection (pipelined ones wait their turn in the read buffer),
// bodies collected into one buffer, every answer one socket write. See docs/http1.md.

export interface Http1ServerOptions {
  /** From a request's first byte to the end of its head; also a new connection's wait for one. 0: none. */
  readonly headersTimeoutMs: number;
  /** From a request's first byte to the end of its body (408 past it). 0: none. */
  readonly requestTimeoutMs: number;
  /** From a request's head to the end of its answer; past it the connection is destroyed. 0: none. */
  readonly writeTimeoutMs: number;
  /** A keep-alive connection's wait for its next request. 0: none. */
  readonly idleTimeoutMs: number;
  /** How long an answer sent before the whole request was read leaves the socket discarding before it is destroyed. */
  readonly lingerMs: number;
}

/** The body so far grew to `size` bytes: an error to end the request with, or undefined to go on. */
export type BodyCheck = (size: number) => Error | undefined;

/** Called once per request, when its head has arrived; the exchange must be answered (or the connection ends). */
export type Http1Handler = (exchange: Http1Exchange) => void;

/** The connection ended (or timed out) before the request body was received in full. */
export class BodyAbortedError extends Error {}

/** How often deadlines are looked at: a fraction of the shortest, within these bounds. */
const MIN_CHECK_MS = 50;
const MAX_CHECK_MS = 1000;
/** Read buffer held for pipelined requests (or a body not yet asked for) before the socket is paused. */
const MAX_BUFFERED_BYTES = 64 * 1024;

const REASONS: Record<number, string> = {
  100: 'Continue', 200: 'OK', 400: 'Bad Request', 401: 'Unauthorized', 404: 'Not Found', 405: 'Method Not Allowed',
  408: 'Request Timeout', 413: 'Payload Too Large', 415: 'Unsupported Media Type', 417: 'Expectation Failed',
  431: 'Request Header Fields Too Large', 500: 'Internal Server Error', 503: 'Service Unavailable',
};

const CONTINUE = Buffer.from('HTTP/1.1 100 Continue\r\n\r\n', 'latin1');
const EMPTY = Buffer.alloc(0);

let dateSecond = -1;
let dateLine = '';
/** The Date header line, formatted at most once a second. */
function currentDateLine(now: number): string {
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateLine = `Date: ${new Date(second * 1000).toUTCString()}\r\n`;
  }
  return dateLine;
}

const enum Body {
  /** The handler has not asked for it: its bytes wait in the read buffer. */
  Waiting,
  Reading,
  Done,
  /** Answered before it was read: what arrives is dropped until the socket closes. */
  Discarding,
}

/** One request and its answer. */
export class Http1Exchange {
  /** Set once respond() ran or the connection ended. */
  private finished = false;
  bodyState = Body.Waiting;
  /** Bytes of a Content-Length body still to come, or the chunked decoder. */
  remaining: number;
  readonly decoder: ChunkedDecoder | undefined;
  private parts: Buffer[] | undefined;
  /** A Content-Length body being copied into place (when it did not arrive in one read). */
  private whole: Buffer | undefined;
  private received = 0;
  private check: BodyCheck | undefined;
  private resolveBody: ((body: Buffer) => void) | undefined;
  private rejectBody: ((err: Error) => void) | undefined;
  private continueSent = false;

  constructor(
    private readonly connection: Http1Connection,
    readonly head: RequestHead,
    /** When the request's first byte arrived (ms, Date.now()). */
    readonly startedAt: number,
    readonly headAt: number,
  ) {
    this.remaining = head.chunked ? 0 : Math.max(0, head.contentLength);
    this.decoder = head.chunked ? new ChunkedDecoder((data) => this.take(data)) : undefined;
    if (!head.chunked && this.remaining === 0) this.bodyState = Body.Done;
  }

  get method(): string {
    return this.head.method;
  }

  get target(): string {
    return this.head.target;
  }

  /** The first value of a header (name in lower case). */
  header(name: string): string | undefined {
    return headerValue(this.head, name);
  }

  get remoteAddress(): string | undefined {
    return this.connection.socket.remoteAddress;
  }

  /** The request's body has been read in full. */
  get complete(): boolean {
    return this.bodyState === Body.Done;
  }

  get responded(): boolean {
    return this.finished;
  }

  /**
   * The whole body, as one buffer. `check` sees the size as it grows (a chunked body's; a
   * Content-Length body is checked by its declared length before this is called). A client that
   * sent `Expect: 100-continue` is told to go on first.
   */
  readBody(check?: BodyCheck): Promise<Buffer> {
    if (this.bodyState === Body.Done) return Promise.resolve(this.parts?.[0] ?? EMPTY);
    if (this.bodyState !== Body.Waiting || this.finished) return Promise.reject(new BodyAbortedError('request body not available'));
    this.check = check;
    this.bodyState = Body.Reading;
    if (this.head.expectContinue && !this.continueSent) {
      this.continueSent = true;
      this.connection.socket.write(CONTINUE);
    }
    return new Promise<Buffer>((resolve, reject) => {
      this.resolveBody = resolve;
      this.rejectBody = reject;
      this.connection.bodyWanted();
    });
  }

  /**
   * Takes body bytes from `buf[start, end)`: returns the index past the body's end (the rest is the
   * next request's), or `end` when more is needed, or an error that ends the connection.
   */
  feed(buf: Buffer, start: number, end: number): number | HttpParseError {
    if (this.decoder) {
      const at = this.decoder.feed(buf, start, end);
      if (at instanceof HttpParseError) return at;
      if (this.bodyState === Body.Reading && this.decoder.done) this.settle();
      return at;
    }
    const take = Math.min(this.remaining, end - start);
    this.take(buf.subarray(start, start + take));
    this.remaining -= take;
    if (this.remaining === 0 && this.bodyState === Body.Reading) this.settle();
    return start + take;
  }

  private take(data: Buffer): void {
    if (this.bodyState !== Body.Reading) return;
    this.received += data.length;
    if (this.decoder) {
      const err = this.check?.(this.received);
      if (err) {
        this.fail(err);
        return;
      }
      (this.parts ??= []).push(data);
      return;
    }
    const length = this.head.contentLength;
    if (data.length === length) {
      // The common case: the whole body in one read, kept as a view of it.
      this.parts = [data];
      return;
    }
    this.whole ??= Buffer.allocUnsafe(length);
    data.copy(this.whole, this.received - data.length);
  }

  private settle(): void {
    this.bodyState = Body.Done;
    let body: Buffer;
    if (this.whole) body = this.whole;
    else if (!this.parts) body = EMPTY;
    else body = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.received);
    this.parts = [body];
    this.whole = undefined;
    const resolve = this.resolveBody;
    this.resolveBody = this.rejectBody = undefined;
    resolve?.(body);
  }

  /** The body will not arrive: a BodyCheck refused it, the connection ended or timed out. */
  fail(err: Error): void {
    if (this.bodyState !== Body.Reading) return;
    this.bodyState = Body.Discarding;
    this.parts = undefined;
    this.whole = undefined;
    const reject = this.rejectBody;
    this.resolveBody = this.rejectBody = undefined;
    reject?.(err);
  }

  /** The connection is gone: any answer is dropped. */
  aborted(): void {
    this.fail(new BodyAbortedError('the connection ended before the request body was received'));
    this.finished = true;
  }

  /**
   * Answers, as one socket write. `headerLines` are pre-rendered ("Name: value\r\n" each), the
   * Content-Length is added. An answer sent before the body was read in full closes the
   * connection (the rest is discarded for a moment first, so the client sees the answer).
   */
  respond(status: number, contentType: string, body: Uint8Array, headerLines = '', close = false): void {
    if (this.finished) return;
    this.finished = true;
    const connection = this.connection;
    // A refusal of a body that is already all here (a small request, read with its head) keeps the connection.
    if (this.bodyState === Body.Waiting && connection.skipBufferedBody(this.remaining, this.decoder !== undefined)) this.bodyState = Body.Done;
    const unread = this.bodyState !== Body.Done;
    if (unread) {
      this.fail(new BodyAbortedError('answered before the body was read'));
      this.bodyState = Body.Discarding;
    }
    const closing = close || unread || !this.head.keepAlive || connection.server.closing;
    let head = `HTTP/1.1 ${status} ${REASONS[status] ?? 'Unknown'}\r\n${currentDateLine(Date.now())}Content-Type: ${contentType}\r\nContent-Length: ${body.length}\r\n${headerLines}`;
    if (closing) head += 'Connection: close\r\n\r\n';
    else head += this.head.minor === 0 ? 'Connection: keep-alive\r\n\r\n' : '\r\n';
    const withBody = this.head.method !== 'HEAD' && body.length > 0;
    const out = Buffer.allocUnsafe(head.length + (withBody ? body.length : 0));
    out.write(head, 0, 'latin1');
    if (withBody) out.set(body, head.length);
    connection.responded(this, out, closing);
  }
}

/** One socket: reads requests in turn, answers them in order. */
export class Http1Connection {
  private buffered: Buffer | undefined;
  /** Where the head scan left off in `buffered`. */
  private scanned = 0;
  private current: Http1Exchange | undefined;
  /** When the request now arriving sent its first byte; 0 while none has. */
  private requestStart = 0;
  /** When the connection became idle (accepted, or its last answer written). */
  idleSince = Date.now();
  requests = 0;
  private closed = false;
  /** The socket ends after the answer now being written (or is discarding after an early one). */
  private ending = false;

  constructor(
    readonly socket: net.Socket,
    readonly server: Http1Server,
  ) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => socket.destroy());
    socket.on('end', () => {
      // The client half-closed: no more requests can come; one in flight is still answered.
      const current = this.current;
      if (!current) {
        socket.destroy();
        return;
      }
      current.fail(new BodyAbortedError('the client ended the connection before the request body was received'));
      this.ending = true;
    });
    socket.on('close', () => this.onClose());
  }

  /** A request is being handled (its answer not yet written). */
  get busy(): boolean {
    return this.current !== undefined;
  }

  private onData(chunk: Buffer): void {
    if (this.ending && !this.current) return;
    const current = this.current;
    if (current && current.bodyState === Body.Discarding) return;
    if (current && current.bodyState === Body.Reading && !this.buffered) {
      const at = current.feed(chunk, 0, chunk.length);
      if (at instanceof HttpParseError) return this.fatal(at);
      if (at < chunk.length) this.keep(chunk.subarray(at));
      return;
    }
    this.keep(chunk);
    if (current) {
      if (this.buffered!.length > MAX_BUFFERED_BYTES) this.socket.pause();
      return;
    }
    this.advance();
  }

  private keep(chunk: Buffer): void {
    this.buffered = this.buffered ? Buffer.concat([this.buffered, chunk]) : chunk;
  }

  /** Starts the next request if its head is all there. */
  private advance(): void {
    while (!this.current && !this.closed && !this.ending && this.buffered) {
      const buf = this.buffered;
      if (this.requestStart === 0) this.requestStart = Date.now();
      const skip = leadingEmptyLines(buf, 0, buf.length);
      const end = findHeadEnd(buf, Math.max(skip, this.scanned - 3), buf.length);
      if (end === -1) {
        if (buf.length - skip > MAX_HEAD_BYTES) return this.fatal(new HttpParseError(431, 'request header fields too large'));
        this.scanned = buf.length;
        if (skip === buf.length) {
          // Only empty lines so far: no request has started.
          this.buffered = undefined;
          this.scanned = 0;
          this.requestStart = 0;
        }
        return;
      }
      this.scanned = 0;
      const head = parseHead(buf, skip, end);
      if (head instanceof HttpParseError) return this.fatal(head);
      this.buffered = end < buf.length ? buf.subarray(end) : undefined;
      const exchange = new Http1Exchange(this, head, this.requestStart, Date.now());
      this.requestStart = 0;
      this.current = exchange;
      this.requests++;
      this.server.handler(exchange);
      // The handler asked for the body at once (the common case): already fed by bodyWanted.
    }
  }

  /** The handler asked for the body: what is buffered is taken now, the rest as it arrives. */
  bodyWanted(): void {
    const exchange = this.current;
    if (!exchange) return;
    this.socket.resume();
    const buf = this.buffered;
    if (!buf) return;
    this.buffered = undefined;
    const at = exchange.feed(buf, 0, buf.length);
    if (at instanceof HttpParseError) return this.fatal(at);
    if (at < buf.length) this.buffered = buf.subarray(at);
  }

  /** Drops a Content-Length body of `length` bytes not asked for, when all of it is buffered already. */
  skipBufferedBody(length: number, chunked: boolean): boolean {
    if (chunked) return false;
    const buf = this.buffered;
    if (length === 0) return true;
    if (!buf || buf.length < length) return false;
    this.buffered = buf.length > length ? buf.subarray(length) : undefined;
    return true;
  }

  /** Writes an answer; the next request (pipelined) starts, or the connection ends. */
  responded(exchange: Http1Exchange, out: Buffer, closing: boolean): void {
    if (this.closed || this.current !== exchange) return;
    const flushed = this.socket.write(out);
    this.current = undefined;
    if (closing || this.ending) {
      this.ending = true;
      this.buffered = undefined;
      this.linger();
      return;
    }
    this.idleSince = Date.now();
    // A client that sends but does not read its answers is not read from until it does.
    if (!flushed) {
      this.socket.pause();
      this.socket.once('drain', () => this.next());
      return;
    }
    this.next();
  }

  private next(): void {
    if (this.closed) return;
    this.socket.resume();
    // A pipelined request was waiting: handled on a later turn, so this answer's turn ends first.
    if (this.buffered) setImmediate(() => this.advance());
  }

  /**
   * Half-closes and drops what still arrives for a moment before destroying: closing with unread
   * bytes makes the kernel reset the connection, and a client still sending loses the answer.
   */
  private linger(): void {
    this.ending = true;
    this.socket.end();
    this.socket.resume();
    const timer = setTimeout(() => this.socket.destroy(), this.server.options.lingerMs);
    timer.unref();
    this.socket.once('close', () => clearTimeout(timer));
  }

  /** A request the connection cannot go on from: answered in plain text, then closed. */
  private fatal(err: HttpParseError): void {
    const current = this.current;
    if (current && !current.responded) {
      current.fail(new BodyAbortedError(err.message));
      current.respond(err.status, 'text/plain; charset=utf-8', Buffer.from(`${err.message}\n`), '', true);
      return;
    }
    if (this.ending || this.closed) return;
    this.current = undefined;
    const body = `${err.message}\n`;
    this.socket.write(
      `HTTP/1.1 ${err.status} ${REASONS[err.status] ?? 'Error'}\r\n${currentDateLine(Date.now())}Content-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
      'latin1',
    );
    this.buffered = undefined;
    this.linger();
  }

  /** Deadlines, looked at every few tens of milliseconds by the server. */
  checkTimeouts(now: number): void {
    if (this.closed) return;
    const options = this.server.options;
    const current = this.current;
    if (current) {
      if (options.writeTimeoutMs > 0 && !current.responded && now - current.headAt >= options.writeTimeoutMs) {
        this.socket.destroy();
        return;
      }
      if (options.requestTimeoutMs > 0 && !current.complete && !current.responded && now - current.startedAt >= options.requestTimeoutMs) {
        this.fatal(new HttpParseError(408, 'request not received within read_timeout'));
      }
      return;
    }
    if (this.ending) return;
    if (this.requestStart > 0) {
      const limit = options.headersTimeoutMs > 0 ? options.headersTimeoutMs : options.requestTimeoutMs;
      if (limit > 0 && now - this.requestStart >= limit) this.fatal(new HttpParseError(408, 'request head not received in time'));
      return;
    }
    // Before a first request the header timeout applies (a connection that never sends one).
    const idleLimit = this.requests === 0 ? options.headersTimeoutMs : options.idleTimeoutMs;
    if (idleLimit > 0 && now - this.idleSince >= idleLimit) this.socket.destroy();
  }

  /** Shutdown: an idle connection closes now; one with a request finishes it (and then closes). */
  closeIfIdle(): void {
    if (!this.current) this.socket.destroy();
  }

  private onClose(): void {
    this.closed = true;
    this.buffered = undefined;
    this.current?.aborted();
    this.current = undefined;
    this.server.connections.delete(this);
  }
}

/** A listening HTTP/1.1 server (over TCP, or TLS when `tlsOptions` are given) and its connections. */
export class Http1Server {
  readonly server: net.Server;
  readonly connections = new Set<Http1Connection>();
  closing = false;
  private readonly timer: NodeJS.Timeout;

  constructor(
    readonly handler: Http1Handler,
    readonly options: Http1ServerOptions,
    tlsOptions?: tls.TlsOptions,
  ) {
    const attach = (socket: net.Socket) => {
      if (socket.destroyed) return;
      this.connections.add(new Http1Connection(socket, this));
    };
    // ALPN as node:https offers it: a client that asks only for h2 is refused in the handshake.
    this.server = tlsOptions ? tls.createServer({ ALPNProtocols: ['http/1.1'], ...tlsOptions, allowHalfOpen: true }, attach)
      : net.createServer({ allowHalfOpen: true }, attach);
    const deadlines = [options.headersTimeoutMs, options.requestTimeoutMs, options.writeTimeoutMs, options.idleTimeoutMs].filter((t) => t > 0);
    const period = Math.min(MAX_CHECK_MS, Math.max(MIN_CHECK_MS, Math.floor(Math.min(...deadlines, 4000) / 8)));
    this.timer = setInterval(() => {
      const now = Date.now();
      for (const connection of this.connections) connection.checkTimeouts(now);
    }, period);
    this.timer.unref();
    this.server.on('close', () => clearInterval(this.timer));
  }

  /** Stops accepting; idle connections close now. Resolves when the listener has closed (all connections ended). */
  close(): Promise<void> {
    this.closing = true;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const connection of this.connections) connection.closeIfIdle();
    return closed;
  }
}
