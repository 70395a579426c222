import type * as net from 'node:net';
import { ConnectionError, H2Endpoint, SELF_DEPENDENT } from './endpoint';
import {
  DEFAULT_WINDOW, FRAME_HEADER_BYTES, Flag, FrameType, H2Error, MIN_MAX_FRAME_SIZE, Setting,
  goawayFrame, headerFramesBytes, rstStreamFrame, settingsFrame, windowUpdateFrame, writeFrameHeader, writeHeaderFrames,
} from './frames';
import { HpackDecoder, encodeHeaders } from './hpack';

// The server side of one HTTP/2 connection (RFC 9113) on a plain socket, for request/response
// calls whose body is read whole before the handler runs (gRPC unary, OTLP). Not a general
// HTTP/2 server: no push, no priorities, no streaming bodies to the handler. What it keeps from
// nghttp2 as node:http2 configures it: concurrent-stream limit, rapid-reset and invalid-frame
// budgets, a CONTINUATION limit, a bound on queued control-frame replies (ping/settings floods),
// header list size, per-stream body limit.

export interface H2ConnectionOptions {
  /** SETTINGS_MAX_CONCURRENT_STREAMS; more are refused with REFUSED_STREAM. Default 100. */
  readonly maxConcurrentStreams?: number;
  /** SETTINGS_INITIAL_WINDOW_SIZE for request bodies. Default 1 MiB. */
  readonly initialWindowSize?: number;
  /** The connection's receive window, raised from 65,535 by a WINDOW_UPDATE. Default 16 MiB. */
  readonly connectionWindowSize?: number;
  /** SETTINGS_MAX_FRAME_SIZE we accept. Default 16,384. */
  readonly maxFrameSize?: number;
  /** SETTINGS_MAX_HEADER_LIST_SIZE, enforced: a larger request is answered 431. Default 16 KiB. */
  readonly maxHeaderListSize?: number;
  /** SETTINGS_HEADER_TABLE_SIZE for the peer's encoder. Default 4096. */
  readonly headerTableSize?: number;
  /** Body octets one stream may carry; past it onBodyTooLarge runs. Default 4 MiB + 5. */
  readonly maxBodyBytes?: number;
  /** CONTINUATION frames one header block may have. Default 8 (nghttp2's). */
  readonly maxContinuations?: number;
  /** Client stream resets allowed in a burst, refilled at resetRate per second. Default 1000 and 33 (nghttp2's). */
  readonly resetBurst?: number;
  readonly resetRate?: number;
  /** Frames that do nothing or break a stream's rules (empty DATA, frames on closed streams). Default 1000 (node's maxSessionInvalidFrames). */
  readonly maxInvalidFrames?: number;
  /** Streams refused for the concurrency limit before the connection ends. Default 100 (node's maxSessionRejectedStreams). */
  readonly maxRejectedStreams?: number;
  /** Octets queued to a peer that does not read, past which a PING or SETTINGS ack ends the connection. Default 1 MiB. */
  readonly maxOutboundBytes?: number;
  /** SETTINGS entries in one frame. Default 32 (node's maxSettings). */
  readonly maxSettings?: number;
  /**
   * A stream answered while the client is still sending: how long the rest of its body is read and
   * dropped (windows given back) before RST_STREAM NO_ERROR. 0 (default): the reset goes at once.
   * When such a stream's END_STREAM does arrive, a PING follows (curl waits for a frame to notice).
   */
  readonly drainMs?: number;
  /** Our SETTINGS must be acknowledged by then, or GOAWAY SETTINGS_TIMEOUT (6.5.3). 0 (default): no limit. */
  readonly settingsAckTimeoutMs?: number;
}

export interface H2Handler {
  /** Headers are in; the body may follow. The handler may respond (or reset) at once, e.g. to refuse. */
  onHeaders?(stream: H2Stream): void;
  /** The request is complete (END_STREAM) and the body whole. Not called after a response or reset. */
  onRequest(stream: H2Stream): void;
  /** The body passed maxBodyBytes; its octets are dropped from now on. Default: reset with CANCEL. */
  onBodyTooLarge?(stream: H2Stream): void;
}

type Header = readonly [string, string];

const EMPTY = Buffer.alloc(0);

/** One request stream. The handler answers through respond() or reset(). */
export class H2Stream {
  /** [name0, value0, name1, value1, ...] as received (latin1). */
  headers: string[] = [];
  readonly chunks: Buffer[] = [];
  bodyBytes = 0;
  remoteEnded = false;
  /** The response has been queued in full (END_STREAM decided). */
  responded = false;
  closed = false;
  /** Body octets are dropped (too large, or answered before its end). */
  discarding = false;
  /** Called once when the stream ends before its response went out in full (client reset, connection lost). */
  onAbort: (() => void) | undefined = undefined;
  /**
   * Set (in onHeaders): body chunks go here as they arrive, not buffered (unless keepBody), and
   * onEnd replaces onRequest. A chunk is lent for the call only: with keepBody the layer may move
   * its bytes afterwards.
   */
  onData: ((chunk: Buffer) => void) | undefined = undefined;
  /**
   * With onData: the body is kept as well, for body() at onEnd (no maxBodyBytes check: the handler
   * bounds it). Cleared by dropBody().
   */
  keepBody = false;
  onEnd: (() => void) | undefined = undefined;
  /** Called once when the stream is closed, for whatever reason. */
  onClose: (() => void) | undefined = undefined;
  /** Answered while the client was still sending: the rest is dropped until its end or the drain timer. */
  drainTimer: NodeJS.Timeout | undefined = undefined;
  sendWindow: number;
  recvWindow: number;
  recvUnacked = 0;
  // Response parts not yet sent for the peer's flow control.
  pendingData: Buffer | undefined = undefined;
  pendingTrailers: Buffer | undefined = undefined;

  constructor(readonly id: number, readonly connection: H2Connection, sendWindow: number, recvWindow: number) {
    this.sendWindow = sendWindow;
    this.recvWindow = recvWindow;
  }

  /** The first value of a header (lowercase name), or undefined. */
  header(name: string): string | undefined {
    const h = this.headers;
    for (let i = 0; i < h.length; i += 2) if (h[i] === name) return h[i + 1];
    return undefined;
  }

  /**
   * The whole body: one view into the socket read it came in when its DATA frames shared one read
   * (their payloads are moved together there as they arrive), else joined once.
   */
  body(): Buffer {
    const chunks = this.chunks;
    if (chunks.length === 0) return EMPTY;
    if (chunks.length > 1) chunks.splice(0, chunks.length, Buffer.concat(chunks, this.keptBytes));
    return chunks[0]!;
  }

  /** Stops keeping the body and lets go of what was kept (a refused call). */
  dropBody(): void {
    this.keepBody = false;
    this.chunks.length = 0;
    this.keptBytes = 0;
  }

  /** Octets in `chunks`. */
  keptBytes = 0;

  /** Response headers (with :status), an optional body, optional trailers: all queued at once. */
  respond(headers: readonly Header[], data?: Buffer, trailers?: readonly Header[]): void {
    this.respondEncoded(encodeHeaders(headers), data, trailers ? encodeHeaders(trailers) : undefined);
  }

  /** The same with header blocks already HPACK-encoded (see encodeHeaders): a fixed response costs no encoding. */
  respondEncoded(headerBlock: Buffer, data?: Buffer, trailerBlock?: Buffer): void {
    if (this.responded || this.closed) return;
    this.responded = true;
    this.connection.sendResponse(this, headerBlock, data, trailerBlock);
  }

  reset(code: number = H2Error.CANCEL): void {
    this.connection.resetStream(this, code);
  }
}

const CONNECTION_SPECIFIC = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade']);

export class H2Connection extends H2Endpoint<H2Stream> {
  private readonly maxConcurrentStreams: number;
  private readonly maxHeaderListSize: number;
  private readonly maxBodyBytes: number;
    private readonly resetBurst: number;
  private readonly resetRate: number;
  private readonly maxInvalidFrames: number;
  private readonly maxRejectedStreams: number;
  private readonly decoder: HpackDecoder;

  private lastStreamId = 0;
  private resetTokens: number;
  private resetRefilledAt = Date.now();
  private invalidFrames = 0;
  private rejectedStreams = 0;
  /** GOAWAY sent: no new streams; the socket ends when the last stream does. */
  private goingAway = false;
  /** Called once when the socket has closed. */
  onClose: (() => void) | undefined = undefined;
  /** Hooks for a keepalive policy: the client's first SETTINGS, its PINGs (onPingReceived), streams opened and closed. */
  onRemoteSettings: (() => void) | undefined = undefined;
  onStreamOpen: ((stream: H2Stream) => void) | undefined = undefined;
  onStreamClose: ((stream: H2Stream) => void) | undefined = undefined;
  /** The client's SETTINGS (after its preface) arrived. */
  handshaken = false;
  /** performance.now() of the last read from the socket. */
  lastActivity = performance.now();
  private readonly drainMs: number;
  private settingsAckTimer: NodeJS.Timeout | undefined;
  /** Our PINGs awaiting their ACK, by payload. */
  private readonly pings = new Map<bigint, (err?: Error) => void>();
  private pingSeq = 0n;
  /** A drain-end PING is out; another is wanted after it. */
  private wakePending = false;
  private wakeAgain = false;
  /** The stream whose body took the last DATA payload handed out in the current read, if any. */
  private lastKept: H2Stream | undefined = undefined;

  constructor(readonly socket: net.Socket, private readonly handler: H2Handler, options: H2ConnectionOptions = {}) {
    super({
      initialWindowSize: options.initialWindowSize ?? 1024 * 1024,
      connectionWindowSize: Math.max(DEFAULT_WINDOW, options.connectionWindowSize ?? 16 * 1024 * 1024),
      maxFrameSize: options.maxFrameSize ?? MIN_MAX_FRAME_SIZE,
      maxSettings: options.maxSettings ?? 32,
      maxOutboundBytes: options.maxOutboundBytes ?? 1024 * 1024,
      maxContinuations: options.maxContinuations ?? 8,
      // A block may be larger than the list it decodes to only by HPACK's overhead; twice is ample.
      maxHeaderBlockBytes: 2 * (options.maxHeaderListSize ?? 16 * 1024) + 1024,
    }, 'client');
    this.maxConcurrentStreams = options.maxConcurrentStreams ?? 100;
    this.maxHeaderListSize = options.maxHeaderListSize ?? 16 * 1024;
    this.maxBodyBytes = options.maxBodyBytes ?? 4 * 1024 * 1024 + 5;
    this.resetBurst = options.resetBurst ?? 1000;
    this.resetRate = options.resetRate ?? 33;
    this.resetTokens = this.resetBurst;
    this.maxInvalidFrames = options.maxInvalidFrames ?? 1000;
    this.maxRejectedStreams = options.maxRejectedStreams ?? 100;
    this.drainMs = options.drainMs ?? 0;
    this.decoder = new HpackDecoder({ maxTableSize: options.headerTableSize ?? 4096 });

    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      this.lastActivity = performance.now();
      // Bodies are moved together only within one read (see keep).
      this.lastKept = undefined;
      this.onData(chunk);
    });
    socket.on('error', () => this.destroy());
    socket.on('close', () => this.destroy());
    socket.on('end', () => this.destroy());
    // Our preface: SETTINGS, and the connection window raised past the fixed 65,535.
    const settings: [number, number][] = [
      [Setting.MAX_CONCURRENT_STREAMS, this.maxConcurrentStreams],
      [Setting.INITIAL_WINDOW_SIZE, this.initialWindowSize],
      [Setting.MAX_FRAME_SIZE, this.maxFrameSize],
      [Setting.MAX_HEADER_LIST_SIZE, this.maxHeaderListSize],
      [Setting.ENABLE_PUSH, 0],
    ];
    if (options.headerTableSize !== undefined) settings.push([Setting.HEADER_TABLE_SIZE, options.headerTableSize]);
    socket.cork();
    socket.write(settingsFrame(settings));
    if (this.connectionWindowSize > DEFAULT_WINDOW) socket.write(windowUpdateFrame(0, this.connectionWindowSize - DEFAULT_WINDOW));
    process.nextTick(() => socket.uncork());
    const ackMs = options.settingsAckTimeoutMs ?? 0;
    if (ackMs > 0) {
      this.settingsAckTimer = setTimeout(() => this.connectionError(H2Error.SETTINGS_TIMEOUT, 'SETTINGS not acknowledged'), ackMs);
      this.settingsAckTimer.unref();
    }
  }

  /** Sends a PING; `callback` runs on its ACK, or with an error if the connection ends first. False: not sent (closed). */
  ping(callback: (err?: Error) => void): boolean {
    if (this.dead || this.socket.destroyed || this.socket.writableEnded) return false;
    const id = ++this.pingSeq;
    const out = Buffer.alloc(FRAME_HEADER_BYTES + 8);
    writeFrameHeader(out, 0, 8, FrameType.PING, 0, 0);
    out.writeBigUInt64BE(id, FRAME_HEADER_BYTES);
    this.pings.set(id, callback);
    this.socket.write(out);
    return true;
  }

  /** GOAWAY with an error code (e.g. ENHANCE_YOUR_CALM) and a reason, then the connection ends. */
  goaway(code: number, reason: string): void {
    this.connectionError(code, reason);
  }

  /** Streams open now. */
  get activeStreams(): number {
    return this.streams.size;
  }

  get closed(): boolean {
    return this.dead;
  }

  /** Graceful close (GOAWAY with the last stream id): streams in flight finish, then the socket ends. */
  close(): void {
    if (this.dead || this.goingAway) return;
    this.goingAway = true;
    this.socket.write(goawayFrame(this.lastStreamId, H2Error.NO_ERROR));
    if (this.streams.size === 0) this.socket.end();
  }

  /** Ends the socket at once; open streams are aborted. */
  destroy(): void {
    if (this.dead) return;
    this.dead = true;
    this.reader.stopped = true;
    this.abortAll();
    if (!this.socket.destroyed) this.socket.destroy();
    this.onClose?.();
  }

  /** Ends every stream and pending ping: the connection is gone. */
  private abortAll(): void {
    clearTimeout(this.settingsAckTimer);
    for (const stream of [...this.streams.values()]) {
      this.closeStream(stream);
      this.abort(stream);
    }
    this.streams.clear();
    this.blocked.clear();
    const pings = [...this.pings.values()];
    this.pings.clear();
    const err = new Error('connection closed');
    for (const callback of pings) callback(err);
  }

  // ---- reading

  protected onPriority(streamId: number, payload: Buffer): void {
    if (payload.length !== 5) this.streamError(streamId, H2Error.FRAME_SIZE_ERROR);
  }

  protected onGoaway(): void {
    // The client will open no more streams: finish the ones in flight, then end.
    this.goingAway = true;
    if (this.streams.size === 0) this.socket.end();
  }

  protected onDataFrame(flags: number, streamId: number, payload: Buffer): void {
    if (streamId === 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'DATA on stream 0');
    if (streamId > this.lastStreamId) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'DATA on an idle stream');
    const length = payload.length;
    // Bodies are bounded by maxBodyBytes per stream, so the connection window is given back at once.
    const data = this.takeConnectionWindow(flags, payload);
    const stream = this.streams.get(streamId);
    // Closed (e.g. reset by us while the client was still sending, which RFC 9113 5.1 allows): dropped.
    if (!stream) return;
    if (stream.remoteEnded) {
      this.invalidFrame();
      this.streamError(streamId, H2Error.STREAM_CLOSED);
      return;
    }
    if (length > stream.recvWindow) {
      this.streamError(streamId, H2Error.FLOW_CONTROL_ERROR);
      return;
    }
    stream.recvWindow -= length;
    const endStream = (flags & Flag.END_STREAM) !== 0;
    if (length === 0 && !endStream) this.invalidFrame();
    if (!stream.discarding && data.length > 0) {
      stream.bodyBytes += data.length;
      if (stream.onData) {
        stream.onData(data);
        if (stream.closed) return;
        if (stream.keepBody) this.keep(stream, data);
        else this.lastKept = undefined;
      } else if (stream.bodyBytes > this.maxBodyBytes) {
        stream.discarding = true;
        stream.dropBody();
        this.lastKept = undefined;
        if (this.handler.onBodyTooLarge) this.handler.onBodyTooLarge(stream);
        else stream.reset(H2Error.CANCEL);
        if (stream.closed) return;
      } else {
        this.keep(stream, data);
      }
    } else if (data.length > 0) {
      this.lastKept = undefined;
    }
    if (endStream) {
      stream.remoteEnded = true;
      this.onRemoteEnd(stream);
      return;
    }
    this.giveBackStream(stream, length);
  }

  /**
   * Appends a DATA payload to its stream's body. When the stream's previous payload was the last
   * one handed out on this connection and in the same read, the bytes between them are frame
   * headers, padding and frames nobody keeps, so this payload is moved back to follow it and the
   * body stays one view, joined by no copy (the read is ours: nothing else keeps socket reads).
   */
  private keep(stream: H2Stream, data: Buffer): void {
    const chunks = stream.chunks;
    const last = chunks.length > 0 && this.lastKept === stream ? chunks[chunks.length - 1]! : undefined;
    this.lastKept = stream;
    stream.keptBytes += data.length;
    if (last && last.buffer === data.buffer && data.byteOffset >= last.byteOffset + last.length) {
      const end = last.byteOffset + last.length;
      if (data.byteOffset > end) new Uint8Array(data.buffer).copyWithin(end, data.byteOffset, data.byteOffset + data.length);
      chunks[chunks.length - 1] = Buffer.from(data.buffer, last.byteOffset, last.length + data.length);
      return;
    }
    chunks.push(data);
  }

  protected onHeaderBlock(streamId: number, flags: number, fragment: Buffer): void {
    // Decoded whatever becomes of the stream, to keep the HPACK table in step with the client's.
    const headers = this.decoder.decode(fragment);
    const endStream = (flags & Flag.END_STREAM) !== 0;
    const existing = this.streams.get(streamId);
    if (existing) {
      // Trailers: must end the stream.
      if (existing.remoteEnded) {
        this.streamError(streamId, H2Error.STREAM_CLOSED);
      } else if (!endStream) {
        this.streamError(streamId, H2Error.PROTOCOL_ERROR);
      } else {
        existing.remoteEnded = true;
        this.onRemoteEnd(existing);
      }
      return;
    }
    if ((streamId & 1) === 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'even stream id from a client');
    if (streamId <= this.lastStreamId) {
      // A closed stream (e.g. trailers after our reset): nothing to do but the decoding above.
      this.invalidFrame();
      return;
    }
    this.lastStreamId = streamId;
    // After our GOAWAY, newer streams are ignored (6.8); the client retries them elsewhere.
    if (this.goingAway) return;
    if (flags & SELF_DEPENDENT) {
      this.streamError(streamId, H2Error.PROTOCOL_ERROR);
      return;
    }
    if (this.streams.size >= this.maxConcurrentStreams) {
      this.socket.write(rstStreamFrame(streamId, H2Error.REFUSED_STREAM));
      if (++this.rejectedStreams > this.maxRejectedStreams) throw new ConnectionError(H2Error.ENHANCE_YOUR_CALM, 'too many refused streams');
      return;
    }
    const stream = new H2Stream(streamId, this, this.peerInitialWindow, this.initialWindowSize);
    stream.headers = headers;
    stream.remoteEnded = endStream;
    this.streams.set(streamId, stream);
    this.onStreamOpen?.(stream);
    if (!validRequestHeaders(headers)) {
      this.invalidFrame();
      this.streamError(streamId, H2Error.PROTOCOL_ERROR);
      return;
    }
    let listSize = 0;
    for (let i = 0; i < headers.length; i++) listSize += headers[i]!.length + (i & 1 ? 32 : 0);
    if (listSize > this.maxHeaderListSize) {
      stream.headers = [];
      stream.discarding = true;
      stream.respond([[':status', '431']]);
      return;
    }
    this.handler.onHeaders?.(stream);
    if (endStream && !stream.closed) this.onRemoteEnd(stream);
  }

  private onRemoteEnd(stream: H2Stream): void {
    if (stream.responded) {
      // Answered early; the client has now finished sending too.
      if (!stream.pendingData && !stream.pendingTrailers) {
        const drained = stream.drainTimer !== undefined;
        this.closeStream(stream);
        if (drained) this.wake();
      }
      return;
    }
    if (stream.discarding) return;
    if (stream.onEnd) stream.onEnd();
    else this.handler.onRequest(stream);
  }

  /** One PING after a drained stream ended, at most one outstanding (see drainMs). */
  private wake(): void {
    if (this.wakePending) {
      this.wakeAgain = true;
      return;
    }
    this.wakePending = true;
    this.ping((err) => {
      this.wakePending = false;
      if (!err && this.wakeAgain) {
        this.wakeAgain = false;
        this.wake();
      }
    });
  }

  protected onRstStream(streamId: number, payload: Buffer): void {
    if (payload.length !== 4) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'RST_STREAM length');
    if (streamId === 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'RST_STREAM on stream 0');
    if (streamId > this.lastStreamId) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'RST_STREAM on an idle stream');
    const stream = this.streams.get(streamId);
    if (!stream) return;
    this.closeStream(stream);
    this.abort(stream);
    // Rapid reset (CVE-2023-44487): a token bucket over streams the client opened and reset.
    const now = Date.now();
    this.resetTokens = Math.min(this.resetBurst, this.resetTokens + ((now - this.resetRefilledAt) / 1000) * this.resetRate);
    this.resetRefilledAt = now;
    if (--this.resetTokens < 0) throw new ConnectionError(H2Error.ENHANCE_YOUR_CALM, 'too many stream resets');
  }

  protected settingsAcked(): void {
    clearTimeout(this.settingsAckTimer);
    this.settingsAckTimer = undefined;
  }

  protected settingsApplied(): void {
    if (!this.handshaken) {
      this.handshaken = true;
      this.onRemoteSettings?.();
    }
  }

  protected pingAcked(payload: Buffer): void {
    const id = payload.readBigUInt64BE(0);
    const callback = this.pings.get(id);
    if (callback) {
      this.pings.delete(id);
      callback();
    }
  }

  protected notOpen(streamId: number, what: string): void {
    if (streamId > this.lastStreamId) throw new ConnectionError(H2Error.PROTOCOL_ERROR, `${what} on an idle stream`);
  }

  protected resetOnError(stream: H2Stream, code: number): void {
    this.resetStream(stream, code);
  }

  protected streamWindowOpened(stream: H2Stream): void {
    if (stream.pendingData || stream.pendingTrailers) this.flushStream(stream);
  }

  private invalidFrame(): void {
    if (++this.invalidFrames > this.maxInvalidFrames) throw new ConnectionError(H2Error.ENHANCE_YOUR_CALM, 'too many invalid frames');
  }

  // ---- writing

  /** Queues a response: one socket write for headers, body and trailers when flow control allows. */
  sendResponse(stream: H2Stream, headerBlock: Buffer, data: Buffer | undefined, trailerBlock: Buffer | undefined): void {
    if (this.dead) return;
    const frameSize = this.peerMaxFrameSize;
    const dataLength = data ? data.length : 0;
    // What of the body fits the windows now.
    const now = Math.max(0, Math.min(dataLength, stream.sendWindow, this.sendWindow));
    const all = now === dataLength;
    const noBody = dataLength === 0;
    let size = headerFramesBytes(headerBlock.length, frameSize);
    size += now + FRAME_HEADER_BYTES * Math.ceil(now / frameSize);
    if (all && trailerBlock) size += headerFramesBytes(trailerBlock.length, frameSize);
    const out = Buffer.allocUnsafe(size);
    let o = writeHeaderFrames(out, 0, stream.id, headerBlock, noBody && !trailerBlock, frameSize);
    let p = 0;
    while (p < now) {
      const length = Math.min(frameSize, now - p);
      const last = p + length === dataLength;
      writeFrameHeader(out, o, length, FrameType.DATA, last && !trailerBlock ? Flag.END_STREAM : 0, stream.id);
      data!.copy(out, o + FRAME_HEADER_BYTES, p, p + length);
      o += FRAME_HEADER_BYTES + length;
      p += length;
    }
    stream.sendWindow -= now;
    this.sendWindow -= now;
    if (all) {
      if (trailerBlock) writeHeaderFrames(out, o, stream.id, trailerBlock, true, frameSize);
    } else {
      stream.pendingData = data!.subarray(now);
      stream.pendingTrailers = trailerBlock;
      this.blocked.add(stream);
    }
    this.socket.write(out);
    if (all) this.localEnd(stream);
  }

  /** Sends what flow control now allows of a stream's pending body, then its trailers. */
  protected flushStream(stream: H2Stream): void {
    const data = stream.pendingData;
    if (data && data.length > 0) {
      const now = Math.min(data.length, stream.sendWindow, this.sendWindow);
      if (now <= 0) return;
      const trailers = stream.pendingTrailers;
      let p = 0;
      while (p < now) {
        const length = Math.min(this.peerMaxFrameSize, now - p);
        const last = p + length === data.length;
        const header = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
        writeFrameHeader(header, 0, length, FrameType.DATA, last && !trailers ? Flag.END_STREAM : 0, stream.id);
        this.socket.write(header);
        this.socket.write(data.subarray(p, p + length));
        p += length;
      }
      stream.sendWindow -= now;
      this.sendWindow -= now;
      stream.pendingData = now === data.length ? undefined : data.subarray(now);
      if (stream.pendingData) return;
    }
    stream.pendingData = undefined;
    const trailers = stream.pendingTrailers;
    stream.pendingTrailers = undefined;
    this.blocked.delete(stream);
    if (trailers) {
      const out = Buffer.allocUnsafe(headerFramesBytes(trailers.length, this.peerMaxFrameSize));
      writeHeaderFrames(out, 0, stream.id, trailers, true, this.peerMaxFrameSize);
      this.socket.write(out);
    }
    this.localEnd(stream);
  }

  /** Our END_STREAM is out. A client still sending is told to stop without error (8.1). */
  private localEnd(stream: H2Stream): void {
    if (!stream.remoteEnded) {
      if (this.drainMs > 0 && !this.dead) {
        // The rest of the body is read and dropped for a while, so the client can finish sending
        // and read the response rather than lose it to a reset (curl, node:http2 clients).
        stream.discarding = true;
        stream.dropBody();
        stream.drainTimer = setTimeout(() => {
          if (stream.closed || this.dead) return;
          this.socket.write(rstStreamFrame(stream.id, H2Error.NO_ERROR));
          this.closeStream(stream);
        }, this.drainMs);
        stream.drainTimer.unref();
        return;
      }
      this.socket.write(rstStreamFrame(stream.id, H2Error.NO_ERROR));
    }
    this.closeStream(stream);
  }

  resetStream(stream: H2Stream, code: number): void {
    if (stream.closed || this.dead) return;
    this.socket.write(rstStreamFrame(stream.id, code));
    this.closeStream(stream);
    this.abort(stream);
  }

  private streamError(streamId: number, code: number): void {
    const stream = this.streams.get(streamId);
    if (stream) {
      this.resetStream(stream, code);
    } else {
      this.socket.write(rstStreamFrame(streamId, code));
    }
  }

  private closeStream(stream: H2Stream): void {
    if (stream.closed) return;
    stream.closed = true;
    clearTimeout(stream.drainTimer);
    this.streams.delete(stream.id);
    this.blocked.delete(stream);
    if (this.goingAway && this.streams.size === 0 && !this.dead) this.socket.end();
    const onClose = stream.onClose;
    stream.onClose = undefined;
    onClose?.();
    this.onStreamClose?.(stream);
  }

  private abort(stream: H2Stream): void {
    if (!stream.closed) this.closeStream(stream);
    const onAbort = stream.onAbort;
    stream.onAbort = undefined;
    if (onAbort && !(stream.responded && !stream.pendingData && !stream.pendingTrailers)) onAbort();
  }

  protected connectionError(code: number, message: string): void {
    if (this.dead) return;
    this.socket.write(goawayFrame(this.lastStreamId, code, message));
    this.socket.end();
    const socket = this.socket;
    this.destroyLater(socket);
  }

  private destroyLater(socket: net.Socket): void {
    // Streams end now; the socket gets a moment to deliver the GOAWAY.
    this.dead = true;
    this.reader.stopped = true;
    this.abortAll();
    setTimeout(() => socket.destroy(), 1000).unref();
    this.onClose?.();
  }
}

/** 8.3.1 and 8.2.2: the request pseudo-headers, lowercase names, no connection-specific fields. */
function validRequestHeaders(h: readonly string[]): boolean {
  let method = false;
  let path = false;
  let scheme = false;
  let regular = false;
  for (let i = 0; i < h.length; i += 2) {
    const name = h[i]!;
    if (name.length === 0) return false;
    if (name.charCodeAt(0) === 0x3a) {
      if (regular) return false;
      if (name === ':method') {
        if (method) return false;
        method = true;
      } else if (name === ':path') {
        if (path || h[i + 1] === '') return false;
        path = true;
      } else if (name === ':scheme') {
        if (scheme) return false;
        scheme = true;
      } else if (name !== ':authority') {
        return false;
      }
      continue;
    }
    regular = true;
    if (name !== name.toLowerCase()) return false;
    if (CONNECTION_SPECIFIC.has(name)) return false;
    if (name === 'te' && h[i + 1] !== 'trailers') return false;
  }
  return method && path && scheme;
}
