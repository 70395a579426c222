import * as net from 'node:net';
import * as tls from 'node:tls';
import { ConnectionError, H2Endpoint } from './endpoint';
import {
  DEFAULT_WINDOW, FRAME_HEADER_BYTES, Flag, FrameType, H2Error, MIN_MAX_FRAME_SIZE, PREFACE, Setting,
  goawayFrame, headerFramesBytes, rstStreamFrame, settingsFrame, windowUpdateFrame, writeFrameHeader, writeHeaderFrames,
} from './frames';
import { HpackDecoder } from './hpack';

// The client side of one HTTP/2 connection (RFC 9113) for unary calls: a request is a header
// block (encoded by the caller, usually once and cached) and a body given whole; the response is
// handed over whole (headers, body, trailers). No push, no priorities, no streaming.

const H2_ERROR_NAMES = Object.fromEntries(Object.entries(H2Error).map(([name, code]) => [code, name])) as Record<number, string>;

export function h2ErrorName(code: number): string {
  return H2_ERROR_NAMES[code] ?? `0x${code.toString(16)}`;
}

/**
 * Why a call failed below HTTP. `unprocessed`: the server certainly did not act on the request
 * (the stream was above a GOAWAY's last stream id, refused with REFUSED_STREAM, or never sent),
 * so it may be sent again at once without risk of a duplicate.
 */
export class H2ClientError extends Error {
  constructor(message: string, readonly unprocessed: boolean, readonly h2Code?: number) {
    super(message);
  }
}

export interface H2Response {
  /** Response header fields, flat: [name0, value0, ...] (latin1). */
  readonly headers: readonly string[];
  /** Trailer fields, flat; undefined when the response ended without trailers (e.g. trailers-only). */
  readonly trailers: readonly string[] | undefined;
  readonly body: readonly Buffer[];
  readonly bodyBytes: number;
}

export interface H2CallHandler {
  onResponse(response: H2Response): void;
  onError(err: H2ClientError): void;
}

export interface H2ClientOptions {
  readonly host: string;
  readonly port: number;
  /** TLS (ALPN h2 is added; a server that does not choose h2 is a failed connection); undefined: prior-knowledge plaintext. */
  readonly tls?: tls.ConnectionOptions | undefined;
  /** Our SETTINGS_INITIAL_WINDOW_SIZE for response bodies. Default 1 MiB. */
  readonly initialWindowSize?: number;
  /** The connection's receive window. Default 16 MiB. */
  readonly connectionWindowSize?: number;
  /** Response body octets one stream may carry; past it the stream is cancelled and the call fails. Default 16 MiB. */
  readonly maxResponseBytes?: number;
}

/** Bodies up to this size go out copied into the one buffer with their headers (one write). */
const COPY_BELOW = 64 * 1024;
const LAST_STREAM_ID = 0x7fffffff;

export class H2ClientStream {
  id = 0;
  sendWindow = 0;
  recvWindow = 0;
  recvUnacked = 0;
  /** The body still to send: parts[partIndex] from partOffset on, pendingBytes in all. */
  partIndex = 0;
  partOffset = 0;
  pendingBytes: number;
  localEnded = false;
  headers: string[] | undefined = undefined;
  trailers: string[] | undefined = undefined;
  body: Buffer[] = [];
  bodyBytes = 0;
  /** The handler has been called (or the caller cancelled): nothing more goes to it. */
  done = false;

  constructor(
    private readonly connection: H2ClientConnection,
    readonly headerBlock: Buffer,
    readonly parts: readonly Buffer[],
    readonly handler: H2CallHandler,
  ) {
    let bytes = 0;
    for (const part of parts) bytes += part.length;
    this.pendingBytes = bytes;
  }

  /** Abandons the call (RST_STREAM CANCEL if it started); the handler is not called. */
  cancel(): void {
    this.connection.cancel(this);
  }
}

export class H2ClientConnection extends H2Endpoint<H2ClientStream> {
  readonly socket: net.Socket;
  private readonly decoder = new HpackDecoder();
  private readonly maxResponseBytes: number;
  /** Calls waiting for the peer's MAX_CONCURRENT_STREAMS. */
  private queue: H2ClientStream[] = [];
  private nextStreamId = 1;
  private readonly pings = new Map<string, (err?: Error) => void>();
  private pingCount = 0;
  /** GOAWAY received or sent: no new streams; the socket ends when the last stream does. */
  private goingAway = false;
  private closeError: H2ClientError | undefined;
  /** Called once when the connection has ended. */
  onClose: (() => void) | undefined = undefined;

  constructor(options: H2ClientOptions) {
    super({
      initialWindowSize: options.initialWindowSize ?? 1024 * 1024,
      connectionWindowSize: Math.max(DEFAULT_WINDOW, options.connectionWindowSize ?? 16 * 1024 * 1024),
      maxFrameSize: MIN_MAX_FRAME_SIZE,
      // The server is not limited in what it asks of us.
      maxSettings: Number.POSITIVE_INFINITY,
      maxOutboundBytes: Number.POSITIVE_INFINITY,
      maxContinuations: Number.POSITIVE_INFINITY,
      // A response header block may be at most this large (with its CONTINUATIONs).
      maxHeaderBlockBytes: 256 * 1024,
    }, 'server');
    this.maxResponseBytes = options.maxResponseBytes ?? 16 * 1024 * 1024;
    const where = `${options.host}:${options.port}`;
    if (options.tls) {
      const servername = options.tls.servername ?? (net.isIP(options.host) ? undefined : options.host);
      const socket = tls.connect({ ...options.tls, host: options.host, port: options.port, ALPNProtocols: ['h2'], ...(servername ? { servername } : {}) });
      socket.once('secureConnect', () => {
        // RFC 9113 3.2: over TLS, HTTP/2 only where the server chose h2.
        if (socket.alpnProtocol !== 'h2') this.destroy(new H2ClientError(`${where} did not negotiate HTTP/2 (ALPN ${JSON.stringify(socket.alpnProtocol || 'none')})`, true));
      });
      this.socket = socket;
    } else {
      this.socket = net.connect({ host: options.host, port: options.port });
    }
    const socket = this.socket;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.destroy(new H2ClientError(`connection to ${where}: ${err.message}`, false)));
    socket.on('end', () => this.destroy(new H2ClientError(`${where} closed the connection`, false)));
    socket.on('close', () => this.destroy(new H2ClientError(`connection to ${where} closed`, false)));
    if (options.tls) holdUntilServerSpeaks(socket as tls.TLSSocket);
    // Written before the connection is up: the socket holds it until then.
    socket.cork();
    socket.write(PREFACE);
    socket.write(settingsFrame([
      [Setting.ENABLE_PUSH, 0],
      [Setting.INITIAL_WINDOW_SIZE, this.initialWindowSize],
    ]));
    if (this.connectionWindowSize > DEFAULT_WINDOW) socket.write(windowUpdateFrame(0, this.connectionWindowSize - DEFAULT_WINDOW));
    socket.uncork();
  }

  /** New calls may go on this connection (not ended, no GOAWAY, stream ids left). */
  get usable(): boolean {
    return !this.dead && !this.goingAway;
  }

  get closed(): boolean {
    return this.dead;
  }

  /** Streams open now (queued calls not counted). */
  get activeStreams(): number {
    return this.streams.size;
  }

  /** Starts a call now, or queues it while the peer's MAX_CONCURRENT_STREAMS are in use. */
  request(headerBlock: Buffer, body: readonly Buffer[], handler: H2CallHandler): H2ClientStream {
    const stream = new H2ClientStream(this, headerBlock, body, handler);
    if (!this.usable) {
      const err = this.closeError ?? new H2ClientError('the connection is closing (GOAWAY)', true);
      queueMicrotask(() => this.fail(stream, new H2ClientError(err.message, true, err.h2Code)));
    } else if (this.streams.size >= this.peerMaxConcurrent) {
      this.queue.push(stream);
    } else {
      this.start(stream);
    }
    return stream;
  }

  /** Sends a PING; `done` runs on its ACK, or with an error if the connection ends first. */
  ping(done: (err?: Error) => void): void {
    if (this.dead) {
      queueMicrotask(() => done(this.closeError ?? new Error('connection closed')));
      return;
    }
    const out = Buffer.allocUnsafe(FRAME_HEADER_BYTES + 8);
    writeFrameHeader(out, 0, 8, FrameType.PING, 0, 0);
    out.writeUInt32BE(0x73736976, FRAME_HEADER_BYTES); // "ssiv"
    out.writeUInt32BE(++this.pingCount >>> 0, FRAME_HEADER_BYTES + 4);
    this.pings.set(out.toString('hex', FRAME_HEADER_BYTES), done);
    this.socket.write(out);
  }

  /** Graceful close: GOAWAY; calls in flight finish (queued ones fail as unprocessed), then the socket ends. */
  close(): void {
    if (this.dead) return;
    if (!this.goingAway) {
      this.goingAway = true;
      this.socket.write(goawayFrame(0, H2Error.NO_ERROR));
    }
    this.failQueued(new H2ClientError('the connection was closed before the call started', true));
    if (this.streams.size === 0) this.end();
  }

  /** Ends the connection at once; calls in flight fail with `err` (queued ones as unprocessed). */
  destroy(err: H2ClientError = new H2ClientError('connection destroyed', false), flush = false): void {
    if (this.dead) return;
    this.dead = true;
    this.closeError = err;
    this.reader.stopped = true;
    const streams = [...this.streams.values()];
    this.streams.clear();
    this.blocked.clear();
    for (const stream of streams) this.fail(stream, err);
    this.failQueued(new H2ClientError(err.message, true, err.h2Code));
    for (const done of this.pings.values()) done(err);
    this.pings.clear();
    if (flush) {
      // Our GOAWAY gets a moment to go out.
      this.end();
    } else if (!this.socket.destroyed) {
      this.socket.destroy();
    }
    this.onClose?.();
  }

  /** Called by H2ClientStream.cancel. */
  cancel(stream: H2ClientStream): void {
    if (stream.done) return;
    stream.done = true;
    if (stream.id === 0) {
      this.queue = this.queue.filter((s) => s !== stream);
      return;
    }
    if (this.streams.has(stream.id) && !this.dead) {
      this.socket.write(rstStreamFrame(stream.id, H2Error.CANCEL));
      this.closeStream(stream);
    }
  }

  // ---- writing

  private start(stream: H2ClientStream): void {
    const id = this.nextStreamId;
    this.nextStreamId += 2;
    // The last id this connection may use: the next call goes on a new one.
    if (this.nextStreamId > LAST_STREAM_ID) this.goingAway = true;
    stream.id = id;
    stream.sendWindow = this.peerInitialWindow;
    stream.recvWindow = this.initialWindowSize;
    this.streams.set(id, stream);
    const frameSize = this.peerMaxFrameSize;
    const total = stream.pendingBytes;
    const now = Math.max(0, Math.min(total, stream.sendWindow, this.sendWindow));
    const headerBytes = headerFramesBytes(stream.headerBlock.length, frameSize);
    if (total === 0) {
      const out = Buffer.allocUnsafe(headerBytes);
      writeHeaderFrames(out, 0, id, stream.headerBlock, true, frameSize);
      stream.localEnded = true;
      this.socket.write(out);
      return;
    }
    if (now === total && total <= COPY_BELOW) {
      // Headers and the whole body in one buffer, one write; the DATA frame headers are written in
      // place (no buffer or slice per frame: this runs once per call).
      const out = Buffer.allocUnsafe(headerBytes + total + FRAME_HEADER_BYTES * Math.ceil(total / frameSize));
      let o = writeHeaderFrames(out, 0, id, stream.headerBlock, false, frameSize);
      const parts = stream.parts;
      let partIndex = 0;
      let partOffset = 0;
      let left = total;
      while (left > 0) {
        const length = Math.min(frameSize, left);
        left -= length;
        writeFrameHeader(out, o, length, FrameType.DATA, left === 0 ? Flag.END_STREAM : 0, id);
        o += FRAME_HEADER_BYTES;
        let need = length;
        while (need > 0) {
          const part = parts[partIndex]!;
          const take = Math.min(part.length - partOffset, need);
          o += part.copy(out, o, partOffset, partOffset + take);
          partOffset += take;
          need -= take;
          if (partOffset === part.length) {
            partIndex++;
            partOffset = 0;
          }
        }
      }
      stream.partIndex = partIndex;
      stream.partOffset = partOffset;
      stream.pendingBytes = 0;
      stream.localEnded = true;
      stream.sendWindow -= total;
      this.sendWindow -= total;
      this.socket.write(out);
      return;
    }
    const pieces: Buffer[] = [];
    this.takeData(stream, now, pieces);
    const out = Buffer.allocUnsafe(headerBytes);
    writeHeaderFrames(out, 0, id, stream.headerBlock, false, frameSize);
    this.socket.cork();
    this.socket.write(out);
    for (const piece of pieces) this.socket.write(piece);
    this.socket.uncork();
    if (stream.pendingBytes > 0) this.blocked.add(stream);
  }

  /** Cuts `n` octets of the stream's pending body into DATA frames (headers and body slices, in order). */
  private takeData(stream: H2ClientStream, n: number, pieces: Buffer[]): void {
    let left = n;
    const parts = stream.parts;
    while (left > 0) {
      const length = Math.min(this.peerMaxFrameSize, left);
      left -= length;
      stream.pendingBytes -= length;
      const header = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
      const last = stream.pendingBytes === 0;
      writeFrameHeader(header, 0, length, FrameType.DATA, last ? Flag.END_STREAM : 0, stream.id);
      pieces.push(header);
      let need = length;
      while (need > 0) {
        const part = parts[stream.partIndex]!;
        const take = Math.min(part.length - stream.partOffset, need);
        if (take > 0) pieces.push(take === part.length ? part : part.subarray(stream.partOffset, stream.partOffset + take));
        stream.partOffset += take;
        need -= take;
        if (stream.partOffset === part.length) {
          stream.partIndex++;
          stream.partOffset = 0;
        }
      }
      if (last) stream.localEnded = true;
    }
    stream.sendWindow -= n;
    this.sendWindow -= n;
  }

  /** Sends what the windows now allow of a blocked body (called with the socket corked, from a read). */
  protected flushStream(stream: H2ClientStream): void {
    const n = Math.min(stream.pendingBytes, stream.sendWindow, this.sendWindow);
    if (n <= 0) return;
    const pieces: Buffer[] = [];
    this.takeData(stream, n, pieces);
    for (const piece of pieces) this.socket.write(piece);
    if (stream.pendingBytes === 0) this.blocked.delete(stream);
  }

  private startQueued(): void {
    while (this.queue.length > 0 && this.streams.size < this.peerMaxConcurrent && this.usable) {
      this.start(this.queue.shift()!);
    }
  }

  private failQueued(err: H2ClientError): void {
    const queued = this.queue;
    this.queue = [];
    for (const stream of queued) this.fail(stream, err);
  }

  private end(): void {
    this.socket.end();
    // The server closes too; if it does not, do not wait forever.
    const socket = this.socket;
    setTimeout(() => socket.destroy(), 1000).unref();
  }

  // ---- reading

  protected onPriority(): void {
    // Priorities are not used.
  }

  /** A frame on `streamId` for a stream not open: fine if it was ours and is closed, an error if it never was. */
  protected notOpen(streamId: number, what: string): void {
    if ((streamId & 1) === 0 || streamId >= this.nextStreamId) throw new ConnectionError(H2Error.PROTOCOL_ERROR, `${what} on an idle stream`);
  }

  protected onDataFrame(flags: number, streamId: number, payload: Buffer): void {
    if (streamId === 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'DATA on stream 0');
    const length = payload.length;
    // Response bodies are taken in whole, so the connection window is given back as they come.
    const data = this.takeConnectionWindow(flags, payload);
    const stream = this.streams.get(streamId);
    if (!stream) {
      this.notOpen(streamId, 'DATA');
      return;
    }
    if (stream.headers === undefined) {
      this.streamError(stream, H2Error.PROTOCOL_ERROR, 'DATA before the response headers');
      return;
    }
    if (length > stream.recvWindow) {
      this.streamError(stream, H2Error.FLOW_CONTROL_ERROR, 'stream window exceeded');
      return;
    }
    stream.recvWindow -= length;
    if (data.length > 0) {
      stream.bodyBytes += data.length;
      if (stream.bodyBytes > this.maxResponseBytes) {
        this.streamError(stream, H2Error.CANCEL, `response body larger than ${this.maxResponseBytes} bytes`);
        return;
      }
      stream.body.push(data);
    }
    if (flags & Flag.END_STREAM) {
      this.remoteEnd(stream);
      return;
    }
    this.giveBackStream(stream, length);
  }

  protected onHeaderBlock(streamId: number, flags: number, fragment: Buffer): void {
    // Decoded whatever becomes of the stream, to keep the HPACK table in step with the server's.
    const fields = this.decoder.decode(fragment);
    const endStream = (flags & Flag.END_STREAM) !== 0;
    const stream = this.streams.get(streamId);
    if (!stream) {
      this.notOpen(streamId, 'HEADERS');
      return;
    }
    if (stream.headers === undefined) {
      const status = fields[0] === ':status' ? fields[1] : fieldValue(fields, ':status');
      if (status === undefined || !/^\d{3}$/.test(status)) {
        this.streamError(stream, H2Error.PROTOCOL_ERROR, 'response without a valid :status');
        return;
      }
      if (status.charCodeAt(0) === 0x31) {
        // 1xx: informational, the real response follows (8.1).
        if (endStream) this.streamError(stream, H2Error.PROTOCOL_ERROR, 'informational response ending the stream');
        return;
      }
      stream.headers = fields;
    } else {
      if (!endStream) {
        this.streamError(stream, H2Error.PROTOCOL_ERROR, 'trailers without END_STREAM');
        return;
      }
      stream.trailers = fields;
    }
    if (endStream) this.remoteEnd(stream);
  }

  /** The response is complete. If the request was still being sent, the server needs no more of it (8.1). */
  private remoteEnd(stream: H2ClientStream): void {
    if (!stream.localEnded) this.socket.write(rstStreamFrame(stream.id, H2Error.NO_ERROR));
    this.closeStream(stream);
    if (stream.done) return;
    stream.done = true;
    stream.handler.onResponse({ headers: stream.headers!, trailers: stream.trailers, body: stream.body, bodyBytes: stream.bodyBytes });
  }

  protected onRstStream(streamId: number, payload: Buffer): void {
    if (payload.length !== 4) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'RST_STREAM length');
    if (streamId === 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'RST_STREAM on stream 0');
    const stream = this.streams.get(streamId);
    if (!stream) {
      this.notOpen(streamId, 'RST_STREAM');
      return;
    }
    const code = payload.readUInt32BE(0);
    this.closeStream(stream);
    // REFUSED_STREAM: the server did nothing with it (8.7).
    this.fail(stream, new H2ClientError(`stream reset by the server (${h2ErrorName(code)})`, code === H2Error.REFUSED_STREAM, code));
  }

  protected settingsAcked(): void {
    // Nothing waits on it.
  }

  protected settingsApplied(): void {
    this.startQueued();
  }

  protected pingAcked(payload: Buffer): void {
    const key = payload.toString('hex');
    const done = this.pings.get(key);
    if (done) {
      this.pings.delete(key);
      done();
    }
  }

  protected onGoaway(payload: Buffer): void {
    const last = payload.readUInt32BE(0) & 0x7fffffff;
    const code = payload.readUInt32BE(4);
    const debug = payload.toString('utf8', 8, Math.min(payload.length, 8 + 200));
    this.goingAway = true;
    const why = `GOAWAY ${h2ErrorName(code)}${debug ? ` (${debug})` : ''}`;
    // 6.8: streams above the last id were not processed, and may be sent again elsewhere.
    for (const stream of [...this.streams.values()]) {
      if (stream.id > last) {
        this.closeStream(stream);
        this.fail(stream, new H2ClientError(`not processed by the server: ${why}`, true, code));
      }
    }
    this.failQueued(new H2ClientError(`not started: ${why}`, true, code));
    this.closeError = new H2ClientError(`the server is closing the connection: ${why}`, false, code);
    if (this.streams.size === 0) this.end();
  }

  protected resetOnError(stream: H2ClientStream, code: number, message: string): void {
    this.streamError(stream, code, message);
  }

  protected streamWindowOpened(stream: H2ClientStream): void {
    if (stream.pendingBytes > 0) this.flushBlocked();
  }

  // ---- ending streams and the connection

  private fail(stream: H2ClientStream, err: H2ClientError): void {
    if (stream.done) return;
    stream.done = true;
    stream.handler.onError(err);
  }

  private streamError(stream: H2ClientStream, code: number, message: string): void {
    this.socket.write(rstStreamFrame(stream.id, code));
    this.closeStream(stream);
    this.fail(stream, new H2ClientError(`stream error: ${message}`, false, code));
  }

  private closeStream(stream: H2ClientStream): void {
    if (!this.streams.delete(stream.id)) return;
    this.blocked.delete(stream);
    if (this.goingAway) {
      if (this.streams.size === 0) this.end();
    } else {
      this.startQueued();
    }
  }

  protected connectionError(code: number, message: string): void {
    if (this.dead) return;
    this.socket.write(goawayFrame(0, code, message));
    this.destroy(new H2ClientError(`HTTP/2 ${h2ErrorName(code)}: ${message}`, false, code), true);
  }
}

/** The first value of `name` in a flat field list. */
export function fieldValue(fields: readonly string[], name: string): string | undefined {
  for (let i = 0; i < fields.length; i += 2) if (fields[i] === name) return fields[i + 1];
  return undefined;
}

/**
 * With TLS 1.3 the server checks our certificate after our side of the handshake is done. Bytes we
 * send before its verdict are unread when a refusing server closes, so its close becomes a reset
 * and its alert ("unknown ca", "certificate required") is lost to an ECONNRESET. Our first bytes
 * therefore wait for the server's first (its SETTINGS, sent at once by grpc-go, node:http2 and
 * src/util/h2) or, for a server that waits for our preface, 200 ms after the handshake.
 */
function holdUntilServerSpeaks(socket: tls.TLSSocket): void {
  socket.cork();
  let held = true;
  let timer: NodeJS.Timeout | undefined;
  const release = () => {
    if (!held) return;
    held = false;
    clearTimeout(timer);
    socket.off('data', release);
    socket.uncork();
  };
  socket.once('secureConnect', () => {
    timer = setTimeout(release, 200);
    timer.unref();
  });
  // Before the connection's own data handler, so its answers follow our preface.
  socket.prependOnceListener('data', release);
  socket.once('close', () => clearTimeout(timer));
}
