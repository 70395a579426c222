import * as http2 from 'node:http2';
import type * as net from 'node:net';
import type * as tls from 'node:tls';
import type { Logger } from 'pino';
import type { ServerAuthenticator } from '../../component/auth';
import type { Signal } from '../../pdata/batch';
import { types } from '../../pdata/codec';
import { EXPORT_METHOD } from '../../pdata/otlp';
import { GrpcStatus, MESSAGE_PREFIX_LENGTH, encodeGrpcMessage, framedMessage } from '../../util/grpc';
import { DecompressError, loadZstd, zstdReady, type Compression } from '../../util/compression';
import { boundPort, listen, processFdGuard, trackConnections } from '../../util/net';
import { serverOptions, watchServerTls, type ServerTlsConfig } from '../../config/tls';
import { cappedMessage, echoed } from './echo';
import type { ExportHandler, ExportOutcome } from './export-handler';
import { inTurn } from './turns';
import { INFLIGHT_RETRY_AFTER_MS, InflightBytes, InflightExceeded, NO_COUNTERS, Reservation, ServerRefusals, decompressReserved, type ServerCounters } from './inflight';

// OTLP/gRPC on node:http2. Export is unary (one message in, one out), so a server needs only the
// gRPC framing and status trailers; grpc-js's server cost a third to a half more CPU per request
// here (docs/performance.md).

/** configgrpc's keepalive, in milliseconds; 0 turns a timer off. */
export interface GrpcKeepalive {
  readonly maxConnectionIdleMs: number;
  readonly maxConnectionAgeMs: number;
  readonly maxConnectionAgeGraceMs: number;
  readonly timeMs: number;
  readonly timeoutMs: number;
  readonly minTimeMs: number;
  readonly permitWithoutStream: boolean;
}

export interface GrpcProtocolConfig {
  readonly endpoint: string;
  readonly maxRecvMsgSizeMiB: number;
  /** Streams a connection may have open at once; 0: no limit. */
  readonly maxConcurrentStreams: number;
  /** Time for a call's request message to arrive, from its headers; 0: no limit. */
  readonly readTimeoutMs: number;
  /** Time for a new connection to send the HTTP/2 preface and its SETTINGS; 0: no limit. */
  readonly handshakeTimeoutMs: number;
  readonly keepalive: GrpcKeepalive;
  /** undefined: plaintext (h2c). */
  readonly tls?: ServerTlsConfig | undefined;
  /** Id of the authenticator extension every call must pass (`auth.authenticator`); undefined: none. */
  readonly auth?: string | undefined;
}

/** grpc-encoding values accepted: grpc-go's gzip, the Collector's zstd and snappy (framing format), deflate (zlib). */
const GRPC_ENCODINGS: ReadonlyMap<string, Compression | undefined> = new Map<string, Compression | undefined>([
  ['identity', undefined],
  ['gzip', 'gzip'],
  ['deflate', 'deflate'],
  ['zstd', 'zstd'],
  ['snappy', 'snappy'],
]);
const ACCEPTED_ENCODINGS = [...GRPC_ENCODINGS.keys()].join(',');
/** An empty response message (a full success), with its prefix. */
const EMPTY_RESPONSE_FRAME = framedMessage(false, new Uint8Array(0));
const OK_TRAILERS = { 'grpc-status': '0' };
const CONNECTION_WINDOW_BYTES = 16 * 1024 * 1024;
const MAX_FRAME_BYTES = 1024 * 1024;
/** How long a refused call's remaining message is read and discarded, once answered, before the stream is reset. */
const REFUSED_DRAIN_MS = 5_000;
/**
 * A call refused before its message is read is answered once the client has at most this much of
 * it left to send. Node's http2 client resets a call with ENHANCE_YOUR_CALM, losing its status,
 * when a header block arrives while more than its maxSessionMemory (10 MB by default) is queued to
 * send, as it is for a 20 MiB message written at once.
 */
const REFUSED_ANSWER_UNSENT_BYTES = 8 * 1024 * 1024;
/** A refused call is answered by then at the latest, however much is still to come. */
const REFUSED_ANSWER_MS = 3_000;
/** How long shutdown waits for calls in flight before destroying their connections. */
const SHUTDOWN_GRACE_MS = 1000;
/** gRPC-Go's: the third ping too soon closes the connection with ENHANCE_YOUR_CALM. */
const MAX_PING_STRIKES = 2;
/** Without permit_without_stream, gRPC-Go's minimum between pings on a connection with no calls. */
const PING_MIN_TIME_WITHOUT_STREAM_MS = 2 * 3_600_000;

/** Per-connection state for the keepalive rules. */
interface SessionState {
  streams: number;
  idleTimer: NodeJS.Timeout | undefined;
  lastPingAt: number;
  strikes: number;
  /** A call was answered since the last ping: the next ping is no strike (gRPC-Go resets on every frame it sends). */
  answeredSincePing: boolean;
  /** Last time a frame arrived (approximated by stream events and pings). */
  lastActivity: number;
  /** The connection's socket: destroying a session does not close a socket that never sent a preface. */
  socket: net.Socket | undefined;
  /** The client's SETTINGS (after its preface) arrived. */
  handshaken: boolean;
  /** Timers still pending, cleared when the connection closes. */
  readonly timers: Set<NodeJS.Timeout>;
}

/** A call that cannot go on: answered with this status, then the stream ends. */
class CallError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

/** OTLP/gRPC: TraceService/Export and MetricsService/Export for the signals that have pipelines. */
export class OtlpGrpcServer {
  private server: http2.Http2Server | http2.Http2SecureServer | undefined;
  private stopTlsReload: () => void = () => undefined;
  private readonly sessions = new Map<http2.ServerHttp2Session, SessionState>();
  private sockets = new Set<net.Socket>();
  private readonly routes: ReadonlyMap<string, ExportHandler>;
  private readonly maxMessageBytes: number;
  private readonly refusals: ServerRefusals;
  /** The session created for the connection being accepted. */
  private newest: http2.ServerHttp2Session | undefined;
  private auth: ServerAuthenticator | undefined;

  constructor(
    private readonly config: GrpcProtocolConfig,
    handlers: ReadonlyMap<Signal, ExportHandler>,
    private readonly logger: Logger,
    private readonly inflight = new InflightBytes(0),
    counters: ServerCounters = NO_COUNTERS,
  ) {
    this.refusals = new ServerRefusals(counters, logger, 'OTLP/gRPC', 'call');
    this.routes = new Map([...handlers].map(([signal, handler]) => [EXPORT_METHOD[signal], handler] as const));
    this.maxMessageBytes = Math.floor(config.maxRecvMsgSizeMiB * 1024 * 1024);
  }

  get port(): number {
    return this.server ? boundPort(this.server) : 0;
  }

  /** `auth`: every call must pass it before its method is looked up or its message read. */
  async start(auth?: ServerAuthenticator): Promise<void> {
    this.auth = auth;
    const tlsConfig = this.config.tls;
    const options: http2.ServerOptions = {
      // Requests are bounded by max_recv_msg_size_mib, not by nghttp2's per-session default (10 MB).
      maxSessionMemory: Math.max(10, Math.ceil((4 * this.maxMessageBytes) / (1024 * 1024))),
      // A window as large as a typical OTLP request saves a WINDOW_UPDATE round trip per call;
      // larger frames mean fewer, larger chunks to collect per request.
      settings: {
        initialWindowSize: 1024 * 1024,
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
      onRefused: (reason) => this.refusals.connection(reason),
    });
    server.on('session', (session) => this.onSession(session));
    // Node emits 'session' from its own 'connection' ('secureConnection' with TLS) listener, just
    // before this one runs: pair them.
    server.on(tlsConfig ? 'secureConnection' : 'connection', (socket: net.Socket) => {
      const state = this.newest && this.sessions.get(this.newest);
      if (state && !state.socket) state.socket = socket;
      this.newest = undefined;
    });
    server.on('stream', (stream, headers) => this.onStream(stream, headers));
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
      if (state.streams === 0) end(session, state);
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
    const { handshakeTimeoutMs, keepalive } = this.config;
    const state: SessionState = { streams: 0, idleTimer: undefined, lastPingAt: 0, strikes: 0, answeredSincePing: false, lastActivity: performance.now(), socket: undefined, handshaken: false, timers: new Set() };
    this.sessions.set(session, state);
    this.newest = session;
    const later = (ms: number, fn: () => void) => {
      const timer = setTimeout(() => {
        state.timers.delete(timer);
        fn();
      }, ms);
      timer.unref();
      state.timers.add(timer);
      return timer;
    };
    session.on('close', () => {
      this.sessions.delete(session);
      clearTimeout(state.idleTimer);
      for (const timer of state.timers) clearTimeout(timer);
    });
    session.on('error', (err: Error) => this.logger.debug({ err: err.message }, 'OTLP/gRPC connection error'));
    // The connection-level window starts at 64 KiB whatever the settings say; a larger one lets a
    // client send a whole request (or several) without waiting for WINDOW_UPDATEs.
    session.on('connect', () => {
      if (!session.destroyed) session.setLocalWindowSize(CONNECTION_WINDOW_BYTES);
    });
    if (handshakeTimeoutMs > 0) {
      // The client's SETTINGS follow its preface: a connection without them is not a gRPC client.
      const handshake = later(handshakeTimeoutMs, () => end(session, state));
      session.once('remoteSettings', () => clearTimeout(handshake));
    }
    session.once('remoteSettings', () => {
      state.handshaken = true;
    });
    this.armIdle(session, state);
    if (keepalive.maxConnectionAgeMs > 0) {
      // gRPC-Go's +-10% jitter, so connections opened together do not all end together.
      const age = keepalive.maxConnectionAgeMs * (0.9 + Math.random() * 0.2);
      later(age, () => {
        if (session.destroyed) return;
        session.close();
        if (keepalive.maxConnectionAgeGraceMs > 0) later(keepalive.maxConnectionAgeGraceMs, () => end(session, state));
      });
    }
    if (keepalive.timeMs > 0) this.armPing(session, state, later);
    session.on('ping', () => this.onPing(session, state));
    session.on('stream', (stream: http2.ServerHttp2Stream) => {
      state.streams++;
      state.lastActivity = performance.now();
      clearTimeout(state.idleTimer);
      stream.once('close', () => {
        state.streams--;
        state.answeredSincePing = true;
        state.lastActivity = performance.now();
        this.armIdle(session, state);
      });
    });
  }

  /** max_connection_idle: GOAWAY once a connection has had no call for that long. */
  private armIdle(session: http2.ServerHttp2Session, state: SessionState): void {
    const idleMs = this.config.keepalive.maxConnectionIdleMs;
    if (idleMs <= 0 || state.streams > 0 || session.destroyed) return;
    clearTimeout(state.idleTimer);
    state.idleTimer = setTimeout(() => {
      if (state.streams === 0 && !session.destroyed) session.close();
    }, idleMs);
    state.idleTimer.unref();
  }

  /** keepalive time/timeout: ping a connection quiet for `time`; no answer within `timeout` closes it. */
  private armPing(session: http2.ServerHttp2Session, state: SessionState, later: (ms: number, fn: () => void) => NodeJS.Timeout): void {
    const { timeMs, timeoutMs } = this.config.keepalive;
    const check = () => {
      if (session.destroyed) return;
      const quiet = performance.now() - state.lastActivity;
      if (quiet < timeMs) {
        later(timeMs - quiet, check);
        return;
      }
      const noAnswer = timeoutMs > 0 ? later(timeoutMs, () => end(session, state)) : undefined;
      const sent = session.ping((err) => {
        clearTimeout(noAnswer);
        if (noAnswer) state.timers.delete(noAnswer);
        if (err) {
          end(session, state);
          return;
        }
        state.lastActivity = performance.now();
        later(timeMs, check);
      });
      if (!sent && noAnswer) {
        clearTimeout(noAnswer);
        state.timers.delete(noAnswer);
      }
    };
    later(timeMs, check);
  }

  /** enforcement_policy: a client pinging more often than min_time is told ENHANCE_YOUR_CALM, as gRPC-Go does. */
  private onPing(session: http2.ServerHttp2Session, state: SessionState): void {
    const { minTimeMs, permitWithoutStream } = this.config.keepalive;
    const now = performance.now();
    state.lastActivity = now;
    if (state.answeredSincePing) {
      // A busy connection's pings (gRPC-Go clients send one per window of data they receive) are not abuse.
      state.answeredSincePing = false;
      state.strikes = 0;
      state.lastPingAt = now;
      return;
    }
    const minimum = state.streams === 0 && !permitWithoutStream ? Math.max(minTimeMs, PING_MIN_TIME_WITHOUT_STREAM_MS) : minTimeMs;
    const tooSoon = state.lastPingAt > 0 && now - state.lastPingAt < minimum;
    state.lastPingAt = now;
    if (!tooSoon) return;
    state.strikes++;
    if (state.strikes > MAX_PING_STRIKES && !session.destroyed) {
      this.logger.debug('OTLP/gRPC client pings too often: closing its connection (too_many_pings)');
      session.goaway(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM, 0, Buffer.from('too_many_pings'));
      end(session, state);
    }
  }

  /** The call's request must be in by then: the sooner of read_timeout and the client's grpc-timeout. */
  private callDeadline(headers: http2.IncomingHttpHeaders): { ms: number; fromClient: boolean } | undefined {
    const clientMs = parseGrpcTimeout(headers['grpc-timeout']);
    const readMs = this.config.readTimeoutMs;
    if (clientMs !== undefined && (readMs <= 0 || clientMs <= readMs)) return { ms: clientMs, fromClient: true };
    return readMs > 0 ? { ms: readMs, fromClient: false } : undefined;
  }

  private inflightRefusal(): { code: number; message: string; details: Uint8Array } {
    const message = this.refusals.inflight(this.inflight);
    return { code: GrpcStatus.UNAVAILABLE, message, details: retryInfoDetails(message, INFLIGHT_RETRY_AFTER_MS) };
  }

  private onStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
    // A client that resets its call (deadline, cancel) must not take the server down.
    stream.on('error', (err: Error) => this.logger.debug({ err: err.message }, 'OTLP/gRPC stream error'));
    const contentType = headers['content-type'] ?? '';
    if (!isGrpcContentType(contentType)) {
      // The gRPC spec: a request that is not gRPC gets HTTP 415.
      respondHttpError(stream, 415, `unsupported content-type ${JSON.stringify(echoed(contentType))}; this port serves OTLP/gRPC (application/grpc)`);
      return;
    }
    if (headers[':method'] !== 'POST') {
      respondHttpError(stream, 405, `method ${echoed(String(headers[':method']))} is not allowed; gRPC calls are POST`);
      return;
    }
    if (this.auth) {
      const reason = this.auth.authenticate(headers);
      if (reason !== undefined) {
        // Before the message is read, as the other early refusals (refuseUnread).
        refuseUnread(stream, GrpcStatus.UNAUTHENTICATED, this.refusals.unauthenticated(reason, stream.session?.socket?.remoteAddress));
        return;
      }
    }
    const path = headers[':path'] ?? '';
    const handler = this.routes.get(path);
    if (!handler) {
      const served = [...this.routes.keys()].join(', ');
      respondStatus(stream, GrpcStatus.UNIMPLEMENTED, `unknown method ${echoed(path)}; this receiver serves ${served || 'no method'}`);
      return;
    }
    const encoding = String(headers['grpc-encoding'] ?? 'identity');
    if (!GRPC_ENCODINGS.has(encoding)) {
      respondStatus(stream, GrpcStatus.UNIMPLEMENTED, `grpc-encoding ${JSON.stringify(echoed(encoding))} is not supported; use ${ACCEPTED_ENCODINGS}`);
      return;
    }
    const refusal = handler.refusalBeforeReading();
    if (refusal) {
      const status = outcomeStatus(refusal);
      refuseUnread(stream, status.code, status.message, status.details);
      return;
    }

    const chunks: Buffer[] = [];
    let received = 0;
    /** Bytes the call may send: one prefix and the message it declares (known once the prefix is in). */
    let expected = -1;
    let refused = false;
    const reservation = new Reservation(this.inflight);
    stream.once('close', () => {
      clearTimeout(deadline);
      reservation.release();
    });
    /** `unsent`: what the client still has to send of its message, when the call is refused for it. */
    const refuse = (code: number, message: string, details?: Uint8Array, unsent?: number) => {
      refused = true;
      chunks.length = 0;
      clearTimeout(deadline);
      reservation.release();
      if (unsent === undefined) respondStatus(stream, code, message, details);
      else refuseUnread(stream, code, message, details, unsent);
    };
    const limit = this.callDeadline(headers);
    const deadline = limit
      ? setTimeout(() => {
          refuse(
            GrpcStatus.DEADLINE_EXCEEDED,
            limit.fromClient
              ? `grpc-timeout (${limit.ms} ms) passed before the request was taken`
              : `request message not received within read_timeout (${limit.ms} ms)`,
          );
        }, limit.ms)
      : undefined;
    stream.on('data', (chunk: Buffer) => {
      if (refused) return;
      chunks.push(chunk);
      received += chunk.length;
      if (expected < 0 && received >= MESSAGE_PREFIX_LENGTH) {
        const head = chunks.length === 1 ? chunk : Buffer.concat(chunks);
        const declared = head.readUInt32BE(1);
        // Refuse an oversized message from its prefix, before reading it.
        if (declared > this.maxMessageBytes) {
          refuse(GrpcStatus.RESOURCE_EXHAUSTED, `request message of ${declared} bytes exceeds max_recv_msg_size_mib (${this.maxMessageBytes} bytes)`, undefined, MESSAGE_PREFIX_LENGTH + declared - received);
          return;
        }
        expected = MESSAGE_PREFIX_LENGTH + declared;
        // The whole message is reserved from its prefix, before it is read.
        if (!reservation.grow(expected)) {
          const refusal = this.inflightRefusal();
          refuse(refusal.code, refusal.message, refusal.details, expected - received);
          return;
        }
      }
      // Whatever comes after the one message is not buffered: a unary call has no second one.
      if (expected >= 0 && received > expected) refuse(GrpcStatus.INTERNAL, 'more than one request message: a unary call sends exactly one');
    });
    stream.on('end', () => {
      if (refused) return;
      clearTimeout(deadline);
      // Ended by a reset or a destroyed connection (shutdown): nobody to answer, nothing to join.
      if (stream.destroyed || stream.aborted) {
        chunks.length = 0;
        reservation.release();
        return;
      }
      if (expected >= 0 && received < expected) {
        // Truncated: answered without joining the chunks (a copy of up to the whole message).
        chunks.length = 0;
        reservation.release();
        respondStatus(stream, GrpcStatus.INTERNAL, `truncated request message: prefix says ${expected - MESSAGE_PREFIX_LENGTH} bytes, ${received - MESSAGE_PREFIX_LENGTH} arrived`);
        return;
      }
      const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, received);
      chunks.length = 0;
      let framed: { message: Buffer; compressed: boolean };
      try {
        framed = unframe(body, encoding);
      } catch (err) {
        this.refuseRead(stream, reservation, err);
        return;
      }
      // An uncompressed message is exported in this same turn unless another request was
      // (turns.ts: then in a later one); only decompression waits.
      if (!framed.compressed) {
        inTurn(() => this.export(stream, handler, framed.message, reservation));
        return;
      }
      this.decompressMessage(framed.message, encoding, reservation).then(
        (message) => inTurn(() => this.export(stream, handler, message, reservation)),
        (err: unknown) => {
          if (!(err instanceof InflightExceeded)) return this.refuseRead(stream, reservation, err);
          reservation.release();
          const refusal = this.inflightRefusal();
          respondStatus(stream, refusal.code, refusal.message, refusal.details);
        },
      );
    });
  }

  /** Answers a call whose message could not be read (a CallError names why). */
  private refuseRead(stream: http2.ServerHttp2Stream, reservation: Reservation, err: unknown): void {
    reservation.release();
    if (err instanceof CallError) {
      respondStatus(stream, err.code, err.message);
    } else {
      this.logger.error({ err }, 'unexpected error reading an OTLP/gRPC request');
      respondStatus(stream, GrpcStatus.INTERNAL, 'internal error');
    }
  }

  /** A compressed request message, decompressed within max_recv_msg_size_mib; what it inflates to is held by `reservation`. */
  private async decompressMessage(message: Buffer, encoding: string, reservation: Reservation): Promise<Buffer> {
    // zstd is loaded by the first call that needs it (about 10 MiB that most senders never use).
    if (encoding === 'zstd' && !zstdReady()) {
      try {
        await loadZstd();
      } catch (err) {
        this.logger.error({ err }, 'cannot decompress an OTLP/gRPC zstd request');
        throw new CallError(GrpcStatus.INTERNAL, 'internal error: zstd is not available');
      }
    }
    try {
      return await decompressReserved(GRPC_ENCODINGS.get(encoding)!, message, this.maxMessageBytes, reservation);
    } catch (err) {
      if (!(err instanceof DecompressError)) throw err;
      if (err.tooLarge) throw new CallError(GrpcStatus.RESOURCE_EXHAUSTED, `decompressed request message exceeds max_recv_msg_size_mib (${this.maxMessageBytes} bytes)`);
      throw new CallError(GrpcStatus.INVALID_ARGUMENT, `invalid ${encoding} message: ${err.message}`);
    }
  }

  private export(stream: http2.ServerHttp2Stream, handler: ExportHandler, message: Buffer, reservation: Reservation): void {
    handler
      .export(message, 'protobuf')
      .finally(() => reservation.release())
      .then(
        (outcome) => respondOutcome(stream, handler, outcome),
        (err: unknown) => {
          this.logger.error({ err }, 'unexpected error handling an OTLP/gRPC request');
          respondStatus(stream, GrpcStatus.INTERNAL, 'internal error');
        },
      )
      .catch((err: unknown) => {
        // Answering failed: end the call rather than leave an unhandled rejection.
        this.logger.error({ err }, 'cannot answer an OTLP/gRPC request');
        if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
      });
  }
}

function respondOutcome(stream: http2.ServerHttp2Stream, handler: ExportHandler, outcome: ExportOutcome): void {
  if (outcome.kind === 'ok') {
    respondMessage(stream, outcome.rejected === 0 ? undefined : handler.responseBytes(outcome, 'protobuf'));
    return;
  }
  const status = outcomeStatus(outcome);
  respondStatus(stream, status.code, status.message, status.details);
}

/** The gRPC status for an outcome other than a success. */
function outcomeStatus(outcome: Exclude<ExportOutcome, { kind: 'ok' }>): { code: number; message: string; details?: Uint8Array } {
  switch (outcome.kind) {
    case 'invalid':
      return { code: GrpcStatus.INVALID_ARGUMENT, message: outcome.message };
    case 'unimplemented':
      return { code: GrpcStatus.UNIMPLEMENTED, message: outcome.message };
    case 'unavailable':
      return { code: GrpcStatus.UNAVAILABLE, message: outcome.message, details: retryInfoDetails(outcome.message, outcome.retryAfterMs) };
  }
}

/**
 * Ends a connection now. Destroying the session of a connection that never sent its preface does
 * not close its socket (and makes a later reset of it a no-op), so that socket is reset first.
 */
function end(session: http2.ServerHttp2Session, state: SessionState): void {
  const socket = state.socket;
  // A TLS socket cannot be reset (its handle is not TCP's); destroying it closes the connection.
  if (!state.handshaken && socket) {
    if ((socket as tls.TLSSocket).encrypted) socket.destroy();
    else socket.resetAndDestroy();
  }
  if (!session.destroyed) session.destroy();
}

const GRPC_TIMEOUT_UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 };

/** The gRPC spec's grpc-timeout (at most 8 digits and a unit), in ms; undefined when absent or malformed. */
export function parseGrpcTimeout(value: string | string[] | undefined): number | undefined {
  const match = typeof value === 'string' ? /^(\d{1,8})([HMSmun])$/.exec(value) : null;
  if (!match) return undefined;
  return Math.max(1, Math.ceil(Number(match[1]) * GRPC_TIMEOUT_UNIT_MS[match[2]!]!));
}

/** application/grpc, optionally +proto or with parameters; not gRPC-Web, whose framing differs. */
function isGrpcContentType(contentType: string): boolean {
  if (!contentType.startsWith('application/grpc')) return false;
  const rest = contentType.slice('application/grpc'.length);
  return rest === '' || rest.startsWith(';') || rest === '+proto' || rest.startsWith('+proto;');
}

function isOpen(stream: http2.ServerHttp2Stream): boolean {
  return !stream.destroyed && !stream.closed && !stream.headersSent;
}

/** A response message (undefined: the empty one), then status OK in trailers. */
function respondMessage(stream: http2.ServerHttp2Stream, response: Buffer | undefined): void {
  if (!isOpen(stream)) return;
  stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-accept-encoding': ACCEPTED_ENCODINGS }, { waitForTrailers: true });
  stream.once('wantTrailers', () => stream.sendTrailers(OK_TRAILERS));
  stream.end(response === undefined || response.length === 0 ? EMPTY_RESPONSE_FRAME : framedMessage(false, response));
}

/** The one request message of a unary call, and whether its prefix marks it compressed. */
function unframe(body: Buffer, encoding: string): { message: Buffer; compressed: boolean } {
  if (body.length === 0) throw new CallError(GrpcStatus.INTERNAL, 'no request message: a unary call sends exactly one');
  if (body.length < MESSAGE_PREFIX_LENGTH) throw new CallError(GrpcStatus.INTERNAL, `truncated message prefix (${body.length} bytes)`);
  const flag = body[0];
  const length = body.readUInt32BE(1);
  const end = MESSAGE_PREFIX_LENGTH + length;
  if (body.length < end) throw new CallError(GrpcStatus.INTERNAL, `truncated request message: prefix says ${length} bytes, ${body.length - MESSAGE_PREFIX_LENGTH} arrived`);
  if (body.length > end) throw new CallError(GrpcStatus.INTERNAL, 'more than one request message: a unary call sends exactly one');
  const message = body.subarray(MESSAGE_PREFIX_LENGTH, end);
  if (flag === 0) return { message, compressed: false };
  if (flag !== 1) throw new CallError(GrpcStatus.INTERNAL, `invalid compressed-flag byte ${String(flag)} in the message prefix`);
  if (encoding === 'identity') throw new CallError(GrpcStatus.INTERNAL, 'message is marked compressed but the call has no grpc-encoding');
  return { message, compressed: true };
}

/**
 * Refuses a call whose message is not (or not wholly) read: a full queue, a message over the size
 * limit, max_inflight_bytes; the one way to refuse a call before reading it (authentication too).
 * What the client still sends is discarded, never buffered; the status goes out once the client
 * has at most REFUSED_ANSWER_UNSENT_BYTES left to send (`unsent`; unknown: from the message
 * prefix as it arrives), when it has sent everything, or after REFUSED_ANSWER_MS, whichever comes
 * first. Then respondStatus drains the rest for at most REFUSED_DRAIN_MS.
 */
export function refuseUnread(stream: http2.ServerHttp2Stream, code: number, message: string, details?: Uint8Array, unsent?: number): void {
  if (!isOpen(stream)) return;
  if (stream.readableEnded || (unsent !== undefined && unsent <= REFUSED_ANSWER_UNSENT_BYTES)) {
    respondStatus(stream, code, message, details);
    return;
  }
  let left = unsent;
  /** Bytes of the prefix seen so far, while `left` is unknown. */
  let prefix = Buffer.alloc(0);
  let received = 0;
  const answer = () => {
    clearTimeout(answerBy);
    stream.off('data', onData);
    stream.off('end', answer);
    respondStatus(stream, code, message, details);
  };
  const onData = (chunk: Buffer) => {
    received += chunk.length;
    if (left === undefined) {
      prefix = Buffer.concat([prefix, chunk.subarray(0, MESSAGE_PREFIX_LENGTH - prefix.length)]);
      if (prefix.length === MESSAGE_PREFIX_LENGTH) left = MESSAGE_PREFIX_LENGTH + prefix.readUInt32BE(1) - received;
    } else {
      left -= chunk.length;
    }
    if (left !== undefined && left <= REFUSED_ANSWER_UNSENT_BYTES) answer();
  };
  const answerBy = setTimeout(answer, REFUSED_ANSWER_MS);
  answerBy.unref();
  stream.once('close', () => clearTimeout(answerBy));
  stream.on('data', onData);
  stream.once('end', answer);
  stream.resume();
}

/**
 * A status without a message: gRPC's trailers-only response, for every call that does not succeed
 * (refuseUnread's included). When the client is still sending, the rest is discarded (drainRefused).
 */
function respondStatus(stream: http2.ServerHttp2Stream, code: number, message: string, details?: Uint8Array): void {
  if (!isOpen(stream)) return;
  message = cappedMessage(message);
  const headers: http2.OutgoingHttpHeaders = {
    ':status': 200,
    'content-type': 'application/grpc',
    'grpc-accept-encoding': ACCEPTED_ENCODINGS,
    'grpc-status': String(code),
    'grpc-message': encodeGrpcMessage(message),
  };
  if (details) headers['grpc-status-details-bin'] = Buffer.from(details).toString('base64').replace(/=+$/, '');
  stream.respond(headers, { endStream: true });
  if (!stream.readableEnded) drainRefused(stream);
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

function respondHttpError(stream: http2.ServerHttp2Stream, status: number, message: string): void {
  if (!isOpen(stream)) return;
  stream.respond({ ':status': status, 'content-type': 'text/plain; charset=utf-8' });
  stream.end(`${cappedMessage(message)}\n`);
  stream.resume();
}

/** A google.rpc.Status with a RetryInfo, so clients know how long to back off. */
function retryInfoDetails(message: string, retryAfterMs: number): Uint8Array {
  const seconds = Math.floor(retryAfterMs / 1000);
  const retryInfo = types.RetryInfo.encode(
    types.RetryInfo.fromObject({ retryDelay: { seconds, nanos: (retryAfterMs % 1000) * 1e6 } }),
  ).finish();
  return types.Status.encode(
    types.Status.fromObject({
      code: GrpcStatus.UNAVAILABLE,
      message,
      details: [{ typeUrl: 'type.googleapis.com/google.rpc.RetryInfo', value: retryInfo }],
    }),
  ).finish();
}
