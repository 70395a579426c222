import type { IncomingHttpHeaders } from 'node:http';
import type * as tls from 'node:tls';
import type { ServerAuthenticator } from '../../component/auth';
import { framedMessage } from '../../util/grpc';
import { boundPort, listen, processFdGuard, trackConnections } from '../../util/net';
import type { H2Connection, H2ConnectionOptions, H2Stream } from '../../util/h2/connection';
import { H2Error } from '../../util/h2/frames';
import { encodeHeaders } from '../../util/h2/hpack';
import { createH2Server, type H2Server } from '../../util/h2/server';
import { serverOptions, watchServerTls } from '../../config/tls';
import { cappedMessage } from './echo';
import {
  ACCEPTED_ENCODINGS, CONNECTION_WINDOW_BYTES, ConnectionKeepalive, GrpcServerBase, MAX_FRAME_BYTES, REFUSED_DRAIN_MS, SHUTDOWN_GRACE_MS, STREAM_WINDOW_BYTES,
  statusHeaders, type GrpcCall, type GrpcConnection,
} from './grpc-call';

// OTLP/gRPC on spansieve's own HTTP/2 layer (src/util/h2; `http2: spansieve`, the default). The
// calls are handled by grpc-call.ts exactly as on node:http2 (grpc-server.ts); this file maps
// connections and streams onto it and holds the settings node:http2 is given there.

/** A success: headers and trailers HPACK-encoded once. */
const OK_HEADER_BLOCK = encodeHeaders([
  [':status', '200'],
  ['content-type', 'application/grpc'],
  ['grpc-accept-encoding', ACCEPTED_ENCODINGS],
]);
const OK_TRAILER_BLOCK = encodeHeaders([['grpc-status', '0']]);
const EMPTY_RESPONSE_FRAME = framedMessage(false, new Uint8Array(0));
/** node:http2's default SETTINGS_MAX_HEADER_LIST_SIZE, kept so both layers accept the same metadata. */
const MAX_HEADER_LIST_BYTES = 65_535;
/** node:http2's default: no limit on concurrent streams unless max_concurrent_streams sets one. */
const UNLIMITED_STREAMS = 0xffffffff;
/** Our SETTINGS must be acknowledged within this (or handshake_timeout when longer). */
const SETTINGS_ACK_TIMEOUT_MS = 10_000;

export class OtlpGrpcH2Server extends GrpcServerBase {
  private h2: H2Server | undefined;
  private readonly connections = new Map<H2Connection, ConnectionKeepalive>();

  get port(): number {
    return this.h2 ? boundPort(this.h2.server) : 0;
  }

  async start(auth?: ServerAuthenticator): Promise<void> {
    this.calls.auth = auth;
    const config = this.config;
    const options: H2ConnectionOptions = {
      maxConcurrentStreams: config.maxConcurrentStreams > 0 ? config.maxConcurrentStreams : UNLIMITED_STREAMS,
      initialWindowSize: STREAM_WINDOW_BYTES,
      connectionWindowSize: CONNECTION_WINDOW_BYTES,
      maxFrameSize: MAX_FRAME_BYTES,
      maxHeaderListSize: MAX_HEADER_LIST_BYTES,
      // Bodies are streamed to grpc-call.ts, which bounds them by max_recv_msg_size_mib from the prefix.
      maxBodyBytes: Number.POSITIVE_INFINITY,
      drainMs: REFUSED_DRAIN_MS,
      settingsAckTimeoutMs: Math.max(SETTINGS_ACK_TIMEOUT_MS, config.handshakeTimeoutMs),
    };
    const tlsConfig = config.tls;
    const h2 = createH2Server(
      { onHeaders: (stream) => this.calls.handle(new H2Call(stream)), onRequest: () => undefined },
      options,
      tlsConfig ? serverOptions(tlsConfig, config.handshakeTimeoutMs) : undefined,
      (connection) => this.onConnection(connection),
    );
    trackConnections(h2.server, {
      maxConnections: 0,
      guard: processFdGuard(),
      onRefused: (reason) => this.calls.refusals.connection(reason),
    });
    if (tlsConfig) h2.server.on('tlsClientError', (err: Error) => this.logger.debug({ err: err.message }, 'OTLP/gRPC TLS handshake failed'));
    await listen(h2.server, config.endpoint);
    this.h2 = h2;
    if (tlsConfig) this.stopTlsReload = watchServerTls(h2.server as tls.Server, tlsConfig, this.logger, 'OTLP/gRPC receiver');
  }

  /**
   * GOAWAY to every connection (idle ones close at once), a short grace for calls in flight, then
   * every connection left is destroyed, so no client can hold the shutdown up.
   */
  async shutdown(): Promise<void> {
    const h2 = this.h2;
    if (!h2) return;
    this.h2 = undefined;
    this.stopTlsReload();
    const closed = new Promise<void>((resolve) => h2.server.close(() => resolve()));
    for (const [connection, keepalive] of this.connections) {
      // A connection without calls (or without a handshake) has nothing to wait for.
      if (keepalive.activeStreams === 0) end(connection);
      else connection.close();
    }
    const force = setTimeout(() => {
      for (const connection of h2.connections) end(connection);
    }, SHUTDOWN_GRACE_MS);
    await closed;
    clearTimeout(force);
  }

  private onConnection(connection: H2Connection): void {
    const handle: GrpcConnection = {
      get destroyed() {
        return connection.closed;
      },
      close: () => connection.close(),
      tooManyPings: () => connection.goaway(H2Error.ENHANCE_YOUR_CALM, 'too_many_pings'),
      end: () => end(connection),
      ping: (callback) => connection.ping(callback),
    };
    const keepalive = new ConnectionKeepalive(handle, this.config, this.logger, () => connection.lastActivity);
    this.connections.set(connection, keepalive);
    connection.onRemoteSettings = () => keepalive.handshaken();
    connection.onPingReceived = () => keepalive.pinged();
    connection.onStreamOpen = () => keepalive.streamOpened();
    connection.onStreamClose = () => keepalive.streamClosed();
    const onClose = connection.onClose;
    connection.onClose = () => {
      onClose?.();
      this.connections.delete(connection);
      keepalive.closed();
    };
    connection.socket.on('error', (err: Error) => this.logger.debug({ err: err.message }, 'OTLP/gRPC connection error'));
  }
}

/** Ends a connection now; a TCP socket that never completed the HTTP/2 handshake is reset. */
function end(connection: H2Connection): void {
  const socket = connection.socket;
  // A TLS socket cannot be reset (its handle is not TCP's); destroying it closes the connection.
  if (!connection.handshaken && !(socket as tls.TLSSocket).encrypted && !socket.destroyed) socket.resetAndDestroy();
  connection.destroy();
}

/** An src/util/h2 stream as a gRPC call. */
class H2Call implements GrpcCall {
  onData: ((chunk: Buffer) => void) | undefined = undefined;
  onEnd: (() => void) | undefined = undefined;
  private closers: (() => void)[] | undefined;

  constructor(private readonly stream: H2Stream) {
    stream.onData = (chunk) => this.onData?.(chunk);
    stream.onEnd = () => this.onEnd?.();
  }

  /** The layer keeps the body, in the socket's read where it can (H2Stream.keepBody). */
  keepBody(): boolean {
    this.stream.keepBody = true;
    return true;
  }

  keptBody(): Buffer {
    return this.stream.body();
  }

  dropBody(): void {
    this.stream.dropBody();
  }

  header(name: string): string | undefined {
    return this.stream.header(name);
  }

  headers(): IncomingHttpHeaders {
    const h = this.stream.headers;
    const out: Record<string, string> = {};
    for (let i = 0; i < h.length; i += 2) {
      const name = h[i]!;
      out[name] = out[name] === undefined ? h[i + 1]! : `${out[name]}, ${h[i + 1]!}`;
    }
    return out;
  }

  get remoteAddress(): string | undefined {
    return this.stream.connection.socket.remoteAddress;
  }

  isOpen(): boolean {
    return !this.stream.responded && !this.stream.closed;
  }

  get remoteEnded(): boolean {
    return this.stream.remoteEnded;
  }

  get aborted(): boolean {
    return this.stream.closed && !this.stream.responded;
  }

  whenClosed(fn: () => void): void {
    if (this.stream.closed) return;
    if (!this.closers) {
      const closers: (() => void)[] = [];
      this.closers = closers;
      this.stream.onClose = () => {
        for (const closer of closers) closer();
      };
    }
    this.closers.push(fn);
  }

  respondMessage(response: Buffer | undefined): void {
    if (!this.isOpen()) return;
    this.stream.respondEncoded(OK_HEADER_BLOCK, response === undefined || response.length === 0 ? EMPTY_RESPONSE_FRAME : framedMessage(false, response), OK_TRAILER_BLOCK);
  }

  /** Trailers-only; a client still sending has the rest read and dropped for REFUSED_DRAIN_MS (the layer's drainMs). */
  respondStatus(code: number, message: string, details?: Uint8Array): void {
    if (!this.isOpen()) return;
    this.stream.respond(Object.entries(statusHeaders(code, message, details)).map(([name, value]) => [name, String(value)] as const));
  }

  respondHttpError(status: number, message: string): void {
    if (!this.isOpen()) return;
    this.stream.respond([[':status', String(status)], ['content-type', 'text/plain; charset=utf-8']], Buffer.from(`${cappedMessage(message)}\n`));
  }

  resetInternal(): void {
    this.stream.reset(H2Error.INTERNAL_ERROR);
  }
}
