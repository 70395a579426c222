import type { IncomingHttpHeaders } from 'node:http';
import type { Logger } from 'pino';
import type { ServerAuthenticator } from '../../component/auth';
import type { ServerTlsConfig } from '../../config/tls';
import type { Signal } from '../../pdata/batch';
import { types } from '../../pdata/codec';
import { EXPORT_METHOD } from '../../pdata/otlp';
import { GrpcStatus, MESSAGE_PREFIX_LENGTH, encodeGrpcMessage } from '../../util/grpc';
import { DecompressError, loadZstd, zstdReady, type Compression } from '../../util/compression';
import { cappedMessage, echoed } from './echo';
import type { ExportHandler, ExportOutcome } from './export-handler';
import { INFLIGHT_RETRY_AFTER_MS, InflightBytes, InflightExceeded, NO_COUNTERS, Reservation, ServerRefusals, decompressReserved, type ServerCounters } from './inflight';

// OTLP/gRPC call handling and connection keepalive rules, shared by the two HTTP/2 layers the
// receiver can run on (grpc-server.ts on node:http2, grpc-server-h2.ts on src/util/h2): each
// wraps its streams and connections in the small interfaces below.

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

/** The HTTP/2 layer under the gRPC port: spansieve's own (src/util/h2) or node:http2. */
export type GrpcHttp2Layer = 'spansieve' | 'node';

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
  /** `http2`: which HTTP/2 implementation serves the port. */
  readonly http2: GrpcHttp2Layer;
}

/** grpc-encoding values accepted: grpc-go's gzip, the Collector's zstd and snappy (framing format), deflate (zlib). */
export const GRPC_ENCODINGS: ReadonlyMap<string, Compression | undefined> = new Map<string, Compression | undefined>([
  ['identity', undefined],
  ['gzip', 'gzip'],
  ['deflate', 'deflate'],
  ['zstd', 'zstd'],
  ['snappy', 'snappy'],
]);
export const ACCEPTED_ENCODINGS = [...GRPC_ENCODINGS.keys()].join(',');
export const CONNECTION_WINDOW_BYTES = 16 * 1024 * 1024;
export const STREAM_WINDOW_BYTES = 1024 * 1024;
export const MAX_FRAME_BYTES = 1024 * 1024;
/** How long a refused call's remaining message is read and discarded, once answered, before the stream is reset. */
export const REFUSED_DRAIN_MS = 5_000;
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
export const SHUTDOWN_GRACE_MS = 1000;
/** gRPC-Go's: the third ping too soon closes the connection with ENHANCE_YOUR_CALM. */
const MAX_PING_STRIKES = 2;
/** Without permit_without_stream, gRPC-Go's minimum between pings on a connection with no calls. */
const PING_MIN_TIME_WITHOUT_STREAM_MS = 2 * 3_600_000;

/** The running gRPC server, on either HTTP/2 layer. */
export interface GrpcServer {
  readonly port: number;
  start(auth?: ServerAuthenticator): Promise<void>;
  shutdown(): Promise<void>;
}

/** What the server on either HTTP/2 layer holds alike: its config, logger and calls. */
export abstract class GrpcServerBase implements GrpcServer {
  protected readonly calls: GrpcCalls;
  protected stopTlsReload: () => void = () => undefined;

  constructor(
    protected readonly config: GrpcProtocolConfig,
    handlers: ReadonlyMap<Signal, ExportHandler>,
    protected readonly logger: Logger,
    inflight = new InflightBytes(0),
    counters: ServerCounters = NO_COUNTERS,
  ) {
    this.calls = new GrpcCalls(config, handlers, logger, inflight, counters);
  }

  abstract get port(): number;
  abstract start(auth?: ServerAuthenticator): Promise<void>;
  abstract shutdown(): Promise<void>;
}

/** The trailers-only headers of a status (both layers). */
export function statusHeaders(code: number, message: string, details?: Uint8Array): Record<string, string | number> {
  const headers: Record<string, string | number> = {
    ':status': 200,
    'content-type': 'application/grpc',
    'grpc-accept-encoding': ACCEPTED_ENCODINGS,
    'grpc-status': String(code),
    'grpc-message': encodeGrpcMessage(cappedMessage(message)),
  };
  if (details) headers['grpc-status-details-bin'] = Buffer.from(details).toString('base64').replace(/=+$/, '');
  return headers;
}

/** One call's stream, as either HTTP/2 layer offers it. */
export interface GrpcCall {
  /** A request header's value (lowercase name); undefined when absent. */
  header(name: string): string | undefined;
  /** All request headers, for an authenticator. */
  headers(): IncomingHttpHeaders;
  readonly remoteAddress: string | undefined;
  /** Not answered and not closed. */
  isOpen(): boolean;
  /** The client has sent its END_STREAM. */
  readonly remoteEnded: boolean;
  /** Closed by a reset or a lost connection before its end. */
  readonly aborted: boolean;
  /** One listener each: body chunks as they arrive, the client's end (not after a reset). */
  onData: ((chunk: Buffer) => void) | undefined;
  onEnd: (() => void) | undefined;
  /**
   * Optional: the layer keeps the body itself (src/util/h2 moves its DATA payloads together within
   * a read, so it is usually one view and never joined). True when it does; chunks given to
   * onData are then only lent for that call, and keptBody() has the body at onEnd.
   */
  keepBody?(): boolean;
  keptBody?(): Buffer;
  /** Stops keeping the body and lets go of it. */
  dropBody?(): void;
  /** Runs once when the stream closes, whatever the reason. */
  whenClosed(fn: () => void): void;
  /** A response message (undefined: the empty one), then status OK in trailers. */
  respondMessage(response: Buffer | undefined): void;
  /** Trailers-only status; what the client still sends is read and discarded for REFUSED_DRAIN_MS. */
  respondStatus(code: number, message: string, details?: Uint8Array): void;
  /** A plain HTTP error (not a gRPC request at all). */
  respondHttpError(status: number, message: string): void;
  /** RST_STREAM INTERNAL_ERROR. */
  resetInternal(): void;
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

/** What gRPC calls are served and how: routes, auth, limits; `handle` runs one call. */
export class GrpcCalls {
  private readonly routes: ReadonlyMap<string, ExportHandler>;
  readonly maxMessageBytes: number;
  readonly refusals: ServerRefusals;
  auth: ServerAuthenticator | undefined;

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

  /** The call's request must be in by then: the sooner of read_timeout and the client's grpc-timeout. */
  private callDeadline(call: GrpcCall): { ms: number; fromClient: boolean } | undefined {
    const clientMs = parseGrpcTimeout(call.header('grpc-timeout'));
    const readMs = this.config.readTimeoutMs;
    if (clientMs !== undefined && (readMs <= 0 || clientMs <= readMs)) return { ms: clientMs, fromClient: true };
    return readMs > 0 ? { ms: readMs, fromClient: false } : undefined;
  }

  private inflightRefusal(): { code: number; message: string; details: Uint8Array } {
    const message = this.refusals.inflight(this.inflight);
    return { code: GrpcStatus.UNAVAILABLE, message, details: retryInfoDetails(message, INFLIGHT_RETRY_AFTER_MS) };
  }

  handle(call: GrpcCall): void {
    const contentType = call.header('content-type') ?? '';
    if (!isGrpcContentType(contentType)) {
      // The gRPC spec: a request that is not gRPC gets HTTP 415.
      call.respondHttpError(415, `unsupported content-type ${JSON.stringify(echoed(contentType))}; this port serves OTLP/gRPC (application/grpc)`);
      return;
    }
    const method = call.header(':method');
    if (method !== 'POST') {
      call.respondHttpError(405, `method ${echoed(String(method))} is not allowed; gRPC calls are POST`);
      return;
    }
    if (this.auth) {
      const reason = this.auth.authenticate(call.headers());
      if (reason !== undefined) {
        // Before the message is read, as the other early refusals (refuseUnread).
        refuseUnread(call, GrpcStatus.UNAUTHENTICATED, this.refusals.unauthenticated(reason, call.remoteAddress));
        return;
      }
    }
    const path = call.header(':path') ?? '';
    const handler = this.routes.get(path);
    if (!handler) {
      const served = [...this.routes.keys()].join(', ');
      call.respondStatus(GrpcStatus.UNIMPLEMENTED, `unknown method ${echoed(path)}; this receiver serves ${served || 'no method'}`);
      return;
    }
    const encoding = call.header('grpc-encoding') ?? 'identity';
    if (!GRPC_ENCODINGS.has(encoding)) {
      call.respondStatus(GrpcStatus.UNIMPLEMENTED, `grpc-encoding ${JSON.stringify(echoed(encoding))} is not supported; use ${ACCEPTED_ENCODINGS}`);
      return;
    }
    const refusal = handler.refusalBeforeReading();
    if (refusal) {
      const status = outcomeStatus(refusal);
      refuseUnread(call, status.code, status.message, status.details);
      return;
    }

    const kept = call.keepBody?.() === true;
    /** The chunks, unless the layer keeps the body (`kept`). */
    const chunks: Buffer[] = [];
    /** Kept: the octets of a prefix split over chunks, copied (a lent chunk may move). */
    let partialHead: Buffer | undefined;
    let received = 0;
    /** Bytes the call may send: one prefix and the message it declares (known once the prefix is in). */
    let expected = -1;
    let refused = false;
    const reservation = new Reservation(this.inflight);
    call.whenClosed(() => {
      clearTimeout(deadline);
      reservation.release();
    });
    const dropBody = () => {
      chunks.length = 0;
      partialHead = undefined;
      if (kept) call.dropBody?.();
    };
    /** `unsent`: what the client still has to send of its message, when the call is refused for it. */
    const refuse = (code: number, message: string, details?: Uint8Array, unsent?: number) => {
      refused = true;
      dropBody();
      clearTimeout(deadline);
      reservation.release();
      call.onData = undefined;
      call.onEnd = undefined;
      if (unsent === undefined) call.respondStatus(code, message, details);
      else refuseUnread(call, code, message, details, unsent);
    };
    const limit = this.callDeadline(call);
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
    call.onData = (chunk: Buffer) => {
      if (refused) return;
      if (!kept) chunks.push(chunk);
      received += chunk.length;
      if (expected < 0 && received >= MESSAGE_PREFIX_LENGTH) {
        const head = kept ? (partialHead ? Buffer.concat([partialHead, chunk]) : chunk) : chunks.length === 1 ? chunk : Buffer.concat(chunks);
        partialHead = undefined;
        const declared = head.readUInt32BE(1);
        // Refuse an oversized message from its prefix, before reading it.
        if (declared > this.maxMessageBytes) {
          refuse(GrpcStatus.RESOURCE_EXHAUSTED, `request message of ${declared} bytes exceeds max_recv_msg_size_mib (${this.maxMessageBytes} bytes)`, undefined, MESSAGE_PREFIX_LENGTH + declared - received);
          return;
        }
        expected = MESSAGE_PREFIX_LENGTH + declared;
        // The whole message is reserved from its prefix, before it is read.
        if (!reservation.grow(expected)) {
          const inflight = this.inflightRefusal();
          refuse(inflight.code, inflight.message, inflight.details, expected - received);
          return;
        }
      } else if (kept && expected < 0) {
        partialHead = partialHead ? Buffer.concat([partialHead, chunk]) : Buffer.from(chunk);
      }
      // Whatever comes after the one message is not buffered: a unary call has no second one.
      if (expected >= 0 && received > expected) refuse(GrpcStatus.INTERNAL, 'more than one request message: a unary call sends exactly one');
    };
    call.onEnd = () => {
      if (refused) return;
      clearTimeout(deadline);
      // Ended by a reset or a destroyed connection (shutdown): nobody to answer, nothing to join.
      if (call.aborted) {
        dropBody();
        reservation.release();
        return;
      }
      if (expected >= 0 && received < expected) {
        // Truncated: answered without joining the chunks (a copy of up to the whole message).
        dropBody();
        reservation.release();
        call.respondStatus(GrpcStatus.INTERNAL, `truncated request message: prefix says ${expected - MESSAGE_PREFIX_LENGTH} bytes, ${received - MESSAGE_PREFIX_LENGTH} arrived`);
        return;
      }
      const body = kept ? call.keptBody!() : chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, received);
      dropBody();
      let framed: { message: Buffer; compressed: boolean };
      try {
        framed = unframe(body, encoding);
      } catch (err) {
        this.refuseRead(call, reservation, err);
        return;
      }
      // An uncompressed message is exported in this same turn; only decompression waits.
      if (!framed.compressed) {
        this.export(call, handler, framed.message, reservation);
        return;
      }
      this.decompressMessage(framed.message, encoding, reservation).then(
        (message) => this.export(call, handler, message, reservation),
        (err: unknown) => {
          if (!(err instanceof InflightExceeded)) return this.refuseRead(call, reservation, err);
          reservation.release();
          const inflight = this.inflightRefusal();
          call.respondStatus(inflight.code, inflight.message, inflight.details);
        },
      );
    };
  }

  /** Answers a call whose message could not be read (a CallError names why). */
  private refuseRead(call: GrpcCall, reservation: Reservation, err: unknown): void {
    reservation.release();
    if (err instanceof CallError) {
      call.respondStatus(err.code, err.message);
    } else {
      this.logger.error({ err }, 'unexpected error reading an OTLP/gRPC request');
      call.respondStatus(GrpcStatus.INTERNAL, 'internal error');
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

  private export(call: GrpcCall, handler: ExportHandler, message: Buffer, reservation: Reservation): void {
    handler
      .export(message, 'protobuf')
      .finally(() => reservation.release())
      .then(
        (outcome) => respondOutcome(call, handler, outcome),
        (err: unknown) => {
          this.logger.error({ err }, 'unexpected error handling an OTLP/gRPC request');
          call.respondStatus(GrpcStatus.INTERNAL, 'internal error');
        },
      )
      .catch((err: unknown) => {
        // Answering failed: end the call rather than leave an unhandled rejection.
        this.logger.error({ err }, 'cannot answer an OTLP/gRPC request');
        call.resetInternal();
      });
  }
}

function respondOutcome(call: GrpcCall, handler: ExportHandler, outcome: ExportOutcome): void {
  if (outcome.kind === 'ok') {
    call.respondMessage(outcome.rejected === 0 ? undefined : handler.responseBytes(outcome, 'protobuf'));
    return;
  }
  const status = outcomeStatus(outcome);
  call.respondStatus(status.code, status.message, status.details);
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
export function refuseUnread(call: GrpcCall, code: number, message: string, details?: Uint8Array, unsent?: number): void {
  if (!call.isOpen()) return;
  if (call.remoteEnded || (unsent !== undefined && unsent <= REFUSED_ANSWER_UNSENT_BYTES)) {
    call.respondStatus(code, message, details);
    return;
  }
  let left = unsent;
  /** Bytes of the prefix seen so far, while `left` is unknown. */
  let prefix = Buffer.alloc(0);
  let received = 0;
  const answer = () => {
    clearTimeout(answerBy);
    call.onData = undefined;
    call.onEnd = undefined;
    call.respondStatus(code, message, details);
  };
  const answerBy = setTimeout(answer, REFUSED_ANSWER_MS);
  answerBy.unref();
  call.whenClosed(() => clearTimeout(answerBy));
  call.onData = (chunk: Buffer) => {
    received += chunk.length;
    if (left === undefined) {
      prefix = Buffer.concat([prefix, chunk.subarray(0, MESSAGE_PREFIX_LENGTH - prefix.length)]);
      if (prefix.length === MESSAGE_PREFIX_LENGTH) left = MESSAGE_PREFIX_LENGTH + prefix.readUInt32BE(1) - received;
    } else {
      left -= chunk.length;
    }
    if (left !== undefined && left <= REFUSED_ANSWER_UNSENT_BYTES) answer();
  };
  call.onEnd = answer;
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

/** One connection, as either HTTP/2 layer offers it, for the keepalive rules. */
export interface GrpcConnection {
  readonly destroyed: boolean;
  /** GOAWAY NO_ERROR: calls in flight finish, no new ones. */
  close(): void;
  /** GOAWAY ENHANCE_YOUR_CALM with debug data `too_many_pings`, then the connection ends. */
  tooManyPings(): void;
  /** Ends the connection now (reset a socket that never completed its handshake). */
  end(): void;
  /** Sends a PING; `callback` on its ACK (or an error). False: not sent. */
  ping(callback: (err?: Error | null) => void): boolean;
}

/**
 * configgrpc's keepalive for one connection: handshake_timeout, max_connection_idle/age/grace,
 * server pings (time/timeout), and the enforcement policy on the client's pings. The layer calls
 * handshaken(), streamOpened(), streamClosed(), pinged() and closed() as they happen.
 */
export class ConnectionKeepalive {
  private streams = 0;
  private idleTimer: NodeJS.Timeout | undefined;
  private lastPingAt = 0;
  private strikes = 0;
  /** A call was answered since the last ping: the next ping is no strike (gRPC-Go resets on every frame it sends). */
  private answeredSincePing = false;
  /** Last time a frame arrived (approximated by stream events and pings on node:http2). */
  lastActivity = performance.now();
  /** The client's SETTINGS (after its preface) arrived. */
  isHandshaken = false;
  /** Timers still pending, cleared when the connection closes. */
  private readonly timers = new Set<NodeJS.Timeout>();
  private handshakeTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly connection: GrpcConnection,
    private readonly config: Pick<GrpcProtocolConfig, 'handshakeTimeoutMs' | 'keepalive'>,
    private readonly logger: Logger,
    /** Where the layer keeps a fresher lastActivity than stream events (src/util/h2: every read). */
    private readonly activity: () => number = () => this.lastActivity,
  ) {
    const { handshakeTimeoutMs, keepalive } = config;
    // The client's SETTINGS follow its preface: a connection without them is not a gRPC client.
    if (handshakeTimeoutMs > 0) this.handshakeTimer = this.later(handshakeTimeoutMs, () => connection.end());
    this.armIdle();
    if (keepalive.maxConnectionAgeMs > 0) {
      // gRPC-Go's +-10% jitter, so connections opened together do not all end together.
      const age = keepalive.maxConnectionAgeMs * (0.9 + Math.random() * 0.2);
      this.later(age, () => {
        if (connection.destroyed) return;
        connection.close();
        if (keepalive.maxConnectionAgeGraceMs > 0) this.later(keepalive.maxConnectionAgeGraceMs, () => connection.end());
      });
    }
    if (keepalive.timeMs > 0) this.armPing();
  }

  get activeStreams(): number {
    return this.streams;
  }

  private later(ms: number, fn: () => void): NodeJS.Timeout {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      fn();
    }, ms);
    timer.unref();
    this.timers.add(timer);
    return timer;
  }

  private cancel(timer: NodeJS.Timeout | undefined): void {
    if (!timer) return;
    clearTimeout(timer);
    this.timers.delete(timer);
  }

  handshaken(): void {
    this.isHandshaken = true;
    this.cancel(this.handshakeTimer);
  }

  streamOpened(): void {
    this.streams++;
    this.lastActivity = performance.now();
    clearTimeout(this.idleTimer);
  }

  streamClosed(): void {
    this.streams--;
    this.answeredSincePing = true;
    this.lastActivity = performance.now();
    this.armIdle();
  }

  closed(): void {
    clearTimeout(this.idleTimer);
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
  }

  /** max_connection_idle: GOAWAY once a connection has had no call for that long. */
  private armIdle(): void {
    const idleMs = this.config.keepalive.maxConnectionIdleMs;
    if (idleMs <= 0 || this.streams > 0 || this.connection.destroyed) return;
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      if (this.streams === 0 && !this.connection.destroyed) this.connection.close();
    }, idleMs);
    this.idleTimer.unref();
  }

  /** keepalive time/timeout: ping a connection quiet for `time`; no answer within `timeout` closes it. */
  private armPing(): void {
    const { timeMs, timeoutMs } = this.config.keepalive;
    const connection = this.connection;
    const check = () => {
      if (connection.destroyed) return;
      const quiet = performance.now() - Math.max(this.lastActivity, this.activity());
      if (quiet < timeMs) {
        this.later(timeMs - quiet, check);
        return;
      }
      const noAnswer = timeoutMs > 0 ? this.later(timeoutMs, () => connection.end()) : undefined;
      const sent = connection.ping((err) => {
        this.cancel(noAnswer);
        if (err) {
          connection.end();
          return;
        }
        this.lastActivity = performance.now();
        this.later(timeMs, check);
      });
      if (!sent) this.cancel(noAnswer);
    };
    this.later(timeMs, check);
  }

  /** enforcement_policy: a client pinging more often than min_time is told ENHANCE_YOUR_CALM, as gRPC-Go does. */
  pinged(): void {
    const { minTimeMs, permitWithoutStream } = this.config.keepalive;
    const now = performance.now();
    this.lastActivity = now;
    if (this.answeredSincePing) {
      // A busy connection's pings (gRPC-Go clients send one per window of data they receive) are not abuse.
      this.answeredSincePing = false;
      this.strikes = 0;
      this.lastPingAt = now;
      return;
    }
    const minimum = this.streams === 0 && !permitWithoutStream ? Math.max(minTimeMs, PING_MIN_TIME_WITHOUT_STREAM_MS) : minTimeMs;
    const tooSoon = this.lastPingAt > 0 && now - this.lastPingAt < minimum;
    this.lastPingAt = now;
    if (!tooSoon) return;
    this.strikes++;
    if (this.strikes > MAX_PING_STRIKES && !this.connection.destroyed) {
      this.logger.debug('OTLP/gRPC client pings too often: closing its connection (too_many_pings)');
      this.connection.tooManyPings();
    }
  }
}
