import * as http2 from 'node:http2';
import type { IncomingHttpHeaders } from 'node:http';
import type * as net from 'node:net';
import type * as tls from 'node:tls';
import type { ServerAuthenticator } from '../../component/auth';
import { framedMessage } from '../../util/grpc';
import { boundPort, listen, processFdGuard, trackConnections } from '../../util/net';
import { serverOptions, watchServerTls } from '../../config/tls';
import { cappedMessage } from './echo';
import {
  ACCEPTED_ENCODINGS, CONNECTION_WINDOW_BYTES, ConnectionKeepalive, GrpcServerBase, MAX_FRAME_BYTES, REFUSED_DRAIN_MS, SHUTDOWN_GRACE_MS, STREAM_WINDOW_BYTES, statusHeaders,
  type GrpcCall, type GrpcConnection,
} from './grpc-call';

export { parseGrpcTimeout, refuseUnread, type GrpcKeepalive, type GrpcProtocolConfig, type GrpcServer } from './grpc-call';

// OTLP/gRPC on node:http2 (`http2: node`). Export is unary (one message in, one out), so a server
// needs only the gRPC framing and status trailers; grpc-js's server cost a third to a half more
// CPU per request here (docs/performance.md). The calls themselves are handled in grpc-call.ts,
// shared with the src/util/h2 server (grpc-server-h2.ts).

/** An empty response message (a full success), with its prefix. */
const EMPTY_RESPONSE_FRAME = framedMessage(false, new Uint8Array(0));
const OK_TRAILERS = { 'grpc-status': '0' };

/** A node:http2 session and its keepalive rules. */
interface Session {
  keepalive: ConnectionKeepalive;
  /** The connection's socket: destroying a session does not close a socket that never sent a preface. */
  socket: net.Socket | undefined;
}

/** OTLP/gRPC: TraceService/Export and MetricsService/Export for the signals that have pipelines. */
export class OtlpGrpcServer extends GrpcServerBase {
  private server: http2.Http2Server | http2.Http2SecureServer | undefined;
  private readonly sessions = new Map<http2.ServerHttp2Session, Session>();
  private sockets = new Set<net.Socket>();
  /** The session created for the connection being accepted. */
  private newest: http2.ServerHttp2Session | undefined;

  get port(): number {
    return this.server ? boundPort(this.server) : 0;
  }

  /** `auth`: every call must pass it before its method is looked up or its message read. */
  async start(auth?: ServerAuthenticator): Promise<void> {
    this.calls.auth = auth;
    const tlsConfig = this.config.tls;
    const options: http2.ServerOptions = {
      // Requests are bounded by max_recv_msg_size_mib, not by nghttp2's per-session default (10 MB).
      maxSessionMemory: Math.max(10, Math.ceil((4 * this.calls.maxMessageBytes) / (1024 * 1024))),
      // A window as large as a typical OTLP request saves a WINDOW_UPDATE round trip per call;
      // larger frames mean fewer, larger chunks to collect per request.
      settings: {
        initialWindowSize: STREAM_WINDOW_BYTES,
        maxFrameSize: MAX_FRAME_BYTES,
        ...(this.config.maxConcurrentStreams > 0 ? { maxConcurrentStreams: this.config.maxConcurrentStreams } : {}),
      },
    };
    // With TLS, ALPN offers h2 only (allowHTTP1 stays false): gRPC clients require it.
    const secure = tlsConfig ? http2.createSecureServer({ ...options, ...serverOptions(tlsConfig, this.config.handshakeTimeoutMs) }) : undefined;
    const server = secure ?? http2.createServer(options);
    this.sockets = trackConnections(server, {
      maxConnections: 0,
      guard: processFdGuard(),
      onRefused: (reason) => this.calls.refusals.connection(reason),
    });
    server.on('session', (session) => this.onSession(session));
    // Node emits 'session' from its own 'connection' ('secureConnection' with TLS) listener, just
    // before this one runs: pair them.
    server.on(tlsConfig ? 'secureConnection' : 'connection', (socket: net.Socket) => {
      const state = this.newest && this.sessions.get(this.newest);
      if (state && !state.socket) state.socket = socket;
      this.newest = undefined;
    });
    server.on('stream', (stream, headers) => {
      // A client that resets its call (deadline, cancel) must not take the server down.
      stream.on('error', (err: Error) => this.logger.debug({ err: err.message }, 'OTLP/gRPC stream error'));
      this.calls.handle(new NodeCall(stream, headers));
    });
    if (tlsConfig) server.on('tlsClientError', (err: Error) => this.logger.debug({ err: err.message }, 'OTLP/gRPC TLS handshake failed'));
    await listen(server, this.config.endpoint);
    this.server = server;
    if (secure && tlsConfig) this.stopTlsReload = watchServerTls(secure, tlsConfig, this.logger, 'OTLP/gRPC receiver');
  }

  /**
   * GOAWAY to every connection (idle ones close at once), a short grace for calls in flight, then
   * every connection left is destroyed, so no client can hold the shutdown up.
   */
  async shutdown(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    this.stopTlsReload();
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const [session, state] of this.sessions) {
      // A connection without calls (or without a handshake) has nothing to wait for.
      if (state.keepalive.activeStreams === 0) end(session, state);
      else session.close();
    }
    const force = setTimeout(() => {
      for (const [session, state] of this.sessions) end(session, state);
      for (const socket of this.sockets) if (!socket.destroyed) socket.resetAndDestroy();
    }, SHUTDOWN_GRACE_MS);
    await closed;
    clearTimeout(force);
  }

  private onSession(session: http2.ServerHttp2Session): void {
    const state = { socket: undefined } as Session;
    const connection: GrpcConnection = {
      get destroyed() {
        return session.destroyed;
      },
      close: () => session.close(),
      tooManyPings: () => {
        session.goaway(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM, 0, Buffer.from('too_many_pings'));
        end(session, state);
      },
      end: () => end(session, state),
      ping: (callback) => session.ping((err) => callback(err)),
    };
    state.keepalive = new ConnectionKeepalive(connection, this.config, this.logger);
    this.sessions.set(session, state);
    this.newest = session;
    session.on('close', () => {
      this.sessions.delete(session);
      state.keepalive.closed();
    });
    session.on('error', (err: Error) => this.logger.debug({ err: err.message }, 'OTLP/gRPC connection error'));
    // The connection-level window starts at 64 KiB whatever the settings say; a larger one lets a
    // client send a whole request (or several) without waiting for WINDOW_UPDATEs.
    session.on('connect', () => {
      if (!session.destroyed) session.setLocalWindowSize(CONNECTION_WINDOW_BYTES);
    });
    session.once('remoteSettings', () => state.keepalive.handshaken());
    session.on('ping', () => state.keepalive.pinged());
    session.on('stream', (stream: http2.ServerHttp2Stream) => {
      state.keepalive.streamOpened();
      stream.once('close', () => state.keepalive.streamClosed());
    });
  }
}

/**
 * Ends a connection now. Destroying the session of a connection that never sent its preface does
 * not close its socket (and makes a later reset of it a no-op), so that socket is reset first.
 */
function end(session: http2.ServerHttp2Session, state: Session): void {
  const socket = state.socket;
  // A TLS socket cannot be reset (its handle is not TCP's); destroying it closes the connection.
  if (!state.keepalive.isHandshaken && socket) {
    if ((socket as tls.TLSSocket).encrypted) socket.destroy();
    else socket.resetAndDestroy();
  }
  if (!session.destroyed) session.destroy();
}

/** A node:http2 stream as a gRPC call. */
class NodeCall implements GrpcCall {
  onData: ((chunk: Buffer) => void) | undefined = undefined;
  onEnd: (() => void) | undefined = undefined;

  constructor(
    private readonly stream: http2.ServerHttp2Stream,
    private readonly headersIn: http2.IncomingHttpHeaders,
  ) {
    // Always flowing: what no listener wants (a refused call's rest) is discarded, never buffered.
    stream.on('data', (chunk: Buffer) => this.onData?.(chunk));
    stream.on('end', () => this.onEnd?.());
  }

  header(name: string): string | undefined {
    const value = this.headersIn[name];
    return Array.isArray(value) ? value.join(', ') : value;
  }

  headers(): IncomingHttpHeaders {
    return this.headersIn;
  }

  get remoteAddress(): string | undefined {
    return this.stream.session?.socket?.remoteAddress;
  }

  isOpen(): boolean {
    const stream = this.stream;
    return !stream.destroyed && !stream.closed && !stream.headersSent;
  }

  get remoteEnded(): boolean {
    return this.stream.readableEnded;
  }

  get aborted(): boolean {
    return this.stream.destroyed || this.stream.aborted;
  }

  whenClosed(fn: () => void): void {
    this.stream.once('close', fn);
  }

  respondMessage(response: Buffer | undefined): void {
    const stream = this.stream;
    if (!this.isOpen()) return;
    stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-accept-encoding': ACCEPTED_ENCODINGS }, { waitForTrailers: true });
    stream.once('wantTrailers', () => stream.sendTrailers(OK_TRAILERS));
    stream.end(response === undefined || response.length === 0 ? EMPTY_RESPONSE_FRAME : framedMessage(false, response));
  }

  /**
   * A status without a message: gRPC's trailers-only response, for every call that does not succeed
   * (refuseUnread's included). When the client is still sending, the rest is discarded (drainRefused).
   */
  respondStatus(code: number, message: string, details?: Uint8Array): void {
    const stream = this.stream;
    if (!this.isOpen()) return;
    stream.respond(statusHeaders(code, message, details), { endStream: true });
    if (!stream.readableEnded) drainRefused(stream);
  }

  respondHttpError(status: number, message: string): void {
    const stream = this.stream;
    if (!this.isOpen()) return;
    stream.respond({ ':status': status, 'content-type': 'text/plain; charset=utf-8' });
    stream.end(`${cappedMessage(message)}\n`);
  }

  resetInternal(): void {
    if (!this.stream.destroyed) this.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
  }
}

/**
 * The rest of a refused call's request is read and discarded (never buffered), so the flow-control
 * windows are given back and the client can finish sending, rather than cut off with RST_STREAM at
 * once: with an immediate reset, curl (nghttp2) lost the status and a node:http2 client's
 * connection stalled after a few refused large calls. Bounded in time: a client still sending
 * after REFUSED_DRAIN_MS is told to stop (RST_STREAM NO_ERROR).
 */
function drainRefused(stream: http2.ServerHttp2Stream): void {
  stream.resume();
  const stop = setTimeout(() => {
    if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_NO_ERROR);
  }, REFUSED_DRAIN_MS);
  stop.unref();
  stream.once('close', () => clearTimeout(stop));
  // The client's last DATA frame closed the stream; nothing more is sent on it. curl 7.88 then
  // waits for the connection to become readable before it notices the call is over, and with no
  // further frame from the server it hung until its own timeout (after printing the status). A
  // PING is a frame every client reads and answers.
  stream.once('end', () => wake(stream.session));
}

/** Sessions with a wake-up PING not yet acknowledged, and whether another stream wants one after it. */
const wakes = new WeakMap<http2.Http2Session, { again: boolean }>();

/** One PING on the connection; at most one outstanding per connection (clients cap unacknowledged PINGs). */
function wake(session: http2.Http2Session | undefined): void {
  if (!session || session.destroyed || session.closed) return;
  const pending = wakes.get(session);
  if (pending) {
    // The PING in flight may have been read before this call ended: one more after its answer.
    pending.again = true;
    return;
  }
  const state = { again: false };
  wakes.set(session, state);
  try {
    session.ping((err) => {
      wakes.delete(session);
      if (!err && state.again) wake(session);
    });
  } catch {
    // A session closing under us: nothing to wake.
    wakes.delete(session);
  }
}
