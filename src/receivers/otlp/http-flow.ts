import type { IncomingHttpHeaders } from 'node:http';
import type { Logger } from 'pino';
import type { ServerAuthenticator } from '../../component/auth';
import type { Signal } from '../../pdata/batch';
import { types } from '../../pdata/codec';
import { DecompressError, decompress, loadZstd, zstdReady, type Compression } from '../../util/compression';
import type { ServerTlsConfig } from '../../config/tls';
import { cappedMessage, echoed } from './echo';
import type { BodyEncoding, ExportHandler, ExportOutcome } from './export-handler';
import { INFLIGHT_RETRY_AFTER_MS, InflightBytes, InflightExceeded, NO_COUNTERS, Reservation, ServerRefusals, decompressReserved, type ServerCounters } from './inflight';

// One OTLP/HTTP request from its head to its answer, the same on both HTTP layers (node:http in
// http-server.ts, src/util/http1 in http-server-h1.ts): the order of checks, the limits and the
// answers are written once here; each layer hands over its request as an OtlpHttpExchange.

export interface HttpProtocolConfig {
  readonly endpoint: string;
  /** Largest accepted body, in bytes, before and after decompression. */
  readonly maxRequestBodySize: number;
  readonly tracesUrlPath: string;
  readonly metricsUrlPath: string;
  /** Time to receive a request's headers; 0: read_timeout alone. */
  readonly readHeaderTimeoutMs: number;
  /** Time to receive a whole request, headers and body; 0: no limit. */
  readonly readTimeoutMs: number;
  /**
   * Time from a request's headers to the end of its response (reading the body and the pipelines
   * included); past it the connection is closed unanswered, as Go's WriteTimeout. 0: no limit.
   * Optional for callers that build a config by hand (default 0 there; the config reader's is 30 s).
   */
  readonly writeTimeoutMs?: number;
  /** Time a keep-alive connection may wait for its next request; 0: no limit. */
  readonly idleTimeoutMs: number;
  /** Connections open at once; 0: no limit but the fd limit's. */
  readonly maxConnections: number;
  /** Content-Encoding values accepted ("" for none); undefined: all of HTTP_CONTENT_ENCODINGS. */
  readonly compressionAlgorithms?: ReadonlySet<string> | undefined;
  /** undefined: plaintext. */
  readonly tls?: ServerTlsConfig | undefined;
  /** Id of the authenticator extension every request must pass (`auth.authenticator`); undefined: none. */
  readonly auth?: string | undefined;
  /** `auth.request_params`: query parameters handed to the authenticator as headers (the query wins). */
  readonly requestParams?: readonly string[];
  /** The HTTP/1.1 layer: spansieve's own (src/util/http1) or node:http; undefined: DEFAULT_HTTP1. */
  readonly http1?: Http1Layer;
}

/** `protocols::http::http1`: the HTTP/1.1 server under the OTLP/HTTP port. */
export type Http1Layer = 'spansieve' | 'node';
export const DEFAULT_HTTP1: Http1Layer = 'spansieve';

/** How long the rest of a refused request is discarded after the answer, before the socket is destroyed. */
export const UNREAD_LINGER_MS = 2_000;
/** How long shutdown lets a request in flight finish before its connection is destroyed. */
export const SHUTDOWN_GRACE_MS = 1000;

export const GRPC_CODE = { INVALID_ARGUMENT: 3, NOT_FOUND: 5, RESOURCE_EXHAUSTED: 8, UNIMPLEMENTED: 12, UNAVAILABLE: 14, UNAUTHENTICATED: 16 } as const;

/** For the 415 message: the encodings compression_algorithms allows. */
export function acceptedEncodingsText(config: HttpProtocolConfig): string {
  const accepted = HTTP_CONTENT_ENCODINGS.filter((e) => !config.compressionAlgorithms || config.compressionAlgorithms.has(e));
  return accepted.map((e) => (e === '' ? 'none' : e)).join(', ') || 'nothing (compression_algorithms is empty)';
}

/** Go's rules: no header timeout means read_timeout's, and it cannot outlast read_timeout. */
export function headerTimeoutMs(readHeaderTimeoutMs: number, readTimeoutMs: number): number {
  return readHeaderTimeoutMs === 0 ? readTimeoutMs : readTimeoutMs === 0 ? readHeaderTimeoutMs : Math.min(readHeaderTimeoutMs, readTimeoutMs);
}

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly grpcCode: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** Content-Encoding values known, as the Collector's confighttp accepts them (lz4 aside); `identity` counts as "". */
export const CONTENT_ENCODINGS: ReadonlyMap<string, Compression | undefined> = new Map<string, Compression | undefined>([
  ['', undefined],
  ['gzip', 'gzip'],
  ['deflate', 'deflate'],
  ['zlib', 'deflate'],
  ['zstd', 'zstd'],
  ['snappy', 'snappy'],
  ['x-snappy-framed', 'x-snappy-framed'],
]);

/** The compression_algorithms names, in confighttp's order. */
export const HTTP_CONTENT_ENCODINGS: readonly string[] = ['', 'gzip', 'zstd', 'zlib', 'snappy', 'deflate', 'x-snappy-framed'];

/** OTLP/HTTP: POST protobuf or JSON bodies, plain or compressed, answered per the OTLP spec. */
/** The handler for a request's path and method; a 404 or 405 HttpError when there is none. */
export function routeRequest(config: HttpProtocolConfig, handlers: ReadonlyMap<Signal, ExportHandler>, target: string, method: string): ExportHandler {
  const q = target.indexOf('?');
  const path = q === -1 ? target : target.slice(0, q);
  const signal: Signal | undefined = path === config.tracesUrlPath ? 'traces' : path === config.metricsUrlPath ? 'metrics' : undefined;
  if (!signal) {
    throw new HttpError(404, GRPC_CODE.NOT_FOUND, `unknown path ${echoed(path)}; OTLP/HTTP accepts POST ${config.tracesUrlPath} and ${config.metricsUrlPath}`);
  }
  if (method !== 'POST') {
    throw new HttpError(405, GRPC_CODE.INVALID_ARGUMENT, `method ${echoed(method)} is not allowed on ${path}; use POST`, { allow: 'POST' });
  }
  const handler = handlers.get(signal);
  if (!handler) throw new HttpError(404, GRPC_CODE.UNIMPLEMENTED, `no ${signal} pipeline uses this receiver`);
  return handler;
}

/** The Content-Encoding to undo ('' for none); a 415 HttpError naming the accepted ones otherwise. */
export function requestContentEncoding(config: HttpProtocolConfig, header: string, acceptedEncodings: string): string {
  const written = header.trim().toLowerCase();
  const contentEncoding = written === 'identity' ? '' : written;
  if (!CONTENT_ENCODINGS.has(contentEncoding) || (config.compressionAlgorithms && !config.compressionAlgorithms.has(contentEncoding))) {
    throw new HttpError(415, GRPC_CODE.INVALID_ARGUMENT, `unsupported Content-Encoding ${JSON.stringify(echoed(written))}; use ${acceptedEncodings}`);
  }
  return contentEncoding;
}

/** How an export that did not succeed is answered: HTTP status, gRPC code and extra headers. */
export function failureStatus(outcome: Exclude<ExportOutcome, { kind: 'ok' }>): { status: number; grpcCode: number; headers: Record<string, string> } {
  switch (outcome.kind) {
    case 'invalid':
      return { status: 400, grpcCode: GRPC_CODE.INVALID_ARGUMENT, headers: {} };
    case 'unavailable':
      return { status: 503, grpcCode: GRPC_CODE.UNAVAILABLE, headers: { 'retry-after': String(Math.max(1, Math.ceil(outcome.retryAfterMs / 1000))) } };
    case 'unimplemented':
      return { status: 404, grpcCode: GRPC_CODE.UNIMPLEMENTED, headers: {} };
  }
}

/**
 * The body decompressed into at most `limit` bytes: 413 past it, 400 when malformed. With a
 * `reservation`, what it inflates to counts in max_inflight_bytes (InflightExceeded when it does not fit).
 */
export async function decompressBody(raw: Buffer, contentEncoding: string, limit: number, reservation?: Reservation): Promise<Buffer> {
  const compression = CONTENT_ENCODINGS.get(contentEncoding);
  if (compression === undefined) return raw;
  try {
    return reservation ? await decompressReserved(compression, raw, limit, reservation) : await decompress(compression, raw, limit);
  } catch (err) {
    if (!(err instanceof DecompressError)) throw err;
    if (err.tooLarge) throw new HttpError(413, GRPC_CODE.RESOURCE_EXHAUSTED, `decompressed request body exceeds the limit of ${limit} bytes (${contentEncoding})`);
    throw new HttpError(400, GRPC_CODE.INVALID_ARGUMENT, `invalid ${contentEncoding} body: ${err.message}`);
  }
}

export function bodyEncoding(contentType: string | undefined): BodyEncoding | undefined {
  const mediaType = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  if (mediaType === 'application/x-protobuf' || mediaType === 'application/protobuf') return 'protobuf';
  if (mediaType === 'application/json') return 'json';
  return undefined;
}

export function contentTypeOf(encoding: BodyEncoding): string {
  return encoding === 'json' ? 'application/json' : 'application/x-protobuf';
}

/** An error body is a google.rpc.Status in the request's encoding; plain text when that is unknown. */
export function statusBody(grpcCode: number, message: string, encoding: BodyEncoding | undefined): { contentType: string; body: Uint8Array } {
  message = cappedMessage(message);
  if (encoding === undefined) return { contentType: 'text/plain; charset=utf-8', body: Buffer.from(`${message}\n`) };
  if (encoding === 'json') return { contentType: 'application/json', body: Buffer.from(JSON.stringify({ code: grpcCode, message })) };
  return { contentType: 'application/x-protobuf', body: types.Status.encode(types.Status.fromObject({ code: grpcCode, message })).finish() };
}


/** A request as an HTTP layer presents it, and the way to answer it. */
export interface OtlpHttpExchange {
  readonly method: string;
  /** The request target as sent: path and query. */
  readonly target: string;
  /** The first value of a header (name in lower case). */
  header(name: string): string | undefined;
  /** Every header by lower-case name, as a new object (the authenticator's view). */
  headers(): IncomingHttpHeaders;
  readonly remoteAddress: string | undefined;
  /** Content-Length; -1 when the body is chunked or has no declared length. */
  readonly declaredLength: number;
  /**
   * The whole body. `check` sees its size as it arrives and may refuse it: the promise then rejects
   * with that error. Any other rejection means the connection went away mid-body.
   */
  readBody(check: (size: number) => HttpError | undefined): Promise<Buffer>;
  /** Whether the answer was already given (or the connection is gone). */
  readonly answered: boolean;
  respond(status: number, contentType: string, body: Uint8Array, headers: Readonly<Record<string, string>>): void;
}

const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({});

export class OtlpHttpRequests {
  /** Connection, authentication and max_inflight_bytes refusals: counted and logged. */
  readonly refusals: ServerRefusals;
  /** For the 415 message: what compression_algorithms allows. */
  private readonly acceptedEncodings: string;
  /** Every request must pass it before anything else is looked at (set when the server starts). */
  auth: ServerAuthenticator | undefined;

  constructor(
    private readonly config: HttpProtocolConfig,
    private readonly handlers: ReadonlyMap<Signal, ExportHandler>,
    private readonly logger: Logger,
    private readonly inflight = new InflightBytes(0),
    counters: ServerCounters = NO_COUNTERS,
  ) {
    this.refusals = new ServerRefusals(counters, logger, 'OTLP/HTTP', 'request');
    this.acceptedEncodings = acceptedEncodingsText(config);
  }

  /** Handles one request to its answer; an unexpected error is logged and answered 500. */
  handle(exchange: OtlpHttpExchange): void {
    this.run(exchange).catch((err: unknown) => {
      this.logger.error({ err }, 'unexpected error handling an OTLP/HTTP request');
      if (!exchange.answered) exchange.respond(500, 'text/plain', Buffer.from('internal error\n'), NO_HEADERS);
    });
  }

  private async run(exchange: OtlpHttpExchange): Promise<void> {
    const encoding = bodyEncoding(exchange.header('content-type'));
    const reservation = new Reservation(this.inflight);
    try {
      // First, as the Collector's auth interceptor: an unauthenticated client learns nothing else
      // (not even which paths exist), and its body is never read.
      if (this.auth) this.authenticate(exchange, this.auth);
      const handler = routeRequest(this.config, this.handlers, exchange.target, exchange.method);
      if (encoding === undefined) {
        throw new HttpError(415, GRPC_CODE.INVALID_ARGUMENT, `unsupported Content-Type ${JSON.stringify(echoed(exchange.header('content-type') ?? ''))}; use application/x-protobuf or application/json`);
      }
      const refused = handler.refusalBeforeReading();
      if (refused) {
        answer(exchange, handler, refused, encoding);
        return;
      }
      const body = await this.readBody(exchange, reservation);
      const outcome = await handler.export(body, encoding);
      answer(exchange, handler, outcome, encoding);
    } catch (err) {
      if (!(err instanceof HttpError)) throw err;
      sendStatus(exchange, err.status, err.grpcCode, err.message, encoding, err.headers);
    } finally {
      // Handed on (the batch no longer needs the body's bytes counted here) or failed.
      reservation.release();
    }
  }

  private authenticate(exchange: OtlpHttpExchange, auth: ServerAuthenticator): void {
    const headers = exchange.headers();
    const params = this.config.requestParams ?? [];
    if (params.length > 0) {
      const query = new URLSearchParams(exchange.target.split('?')[1] ?? '');
      for (const name of params) {
        const value = query.get(name);
        if (value !== null) headers[name.toLowerCase()] = value;
      }
    }
    const reason = auth.authenticate(headers);
    if (reason === undefined) return;
    const message = this.refusals.unauthenticated(reason, exchange.remoteAddress);
    throw new HttpError(401, GRPC_CODE.UNAUTHENTICATED, message, auth.challenge ? { 'www-authenticate': auth.challenge } : {});
  }

  /** The request would pass max_inflight_bytes: a retryable refusal. */
  private inflightRefusal(): HttpError {
    return new HttpError(503, GRPC_CODE.UNAVAILABLE, this.refusals.inflight(this.inflight), { 'retry-after': String(INFLIGHT_RETRY_AFTER_MS / 1000) });
  }

  private async readBody(exchange: OtlpHttpExchange, reservation: Reservation): Promise<Uint8Array> {
    const limit = this.config.maxRequestBodySize;
    const contentEncoding = requestContentEncoding(this.config, exchange.header('content-encoding') ?? '', this.acceptedEncodings);
    const declared = exchange.declaredLength;
    if (declared > limit) {
      throw new HttpError(413, GRPC_CODE.RESOURCE_EXHAUSTED, `request body of ${declared} bytes exceeds the limit of ${limit} bytes`);
    }
    // The declared length is reserved before reading; a chunked body reserves as it arrives.
    if (declared >= 0 && !reservation.grow(declared)) throw this.inflightRefusal();
    let raw: Buffer;
    try {
      raw = await exchange.readBody((size) => {
        if (size > limit) return new HttpError(413, GRPC_CODE.RESOURCE_EXHAUSTED, `request body exceeds the limit of ${limit} bytes`);
        if (size > reservation.bytes && !reservation.grow(size - reservation.bytes)) return this.inflightRefusal();
        return undefined;
      });
    } catch (err) {
      if (err instanceof HttpError) throw err;
      // The connection went away mid-body: the client gave up, read_timeout passed (the layer has
      // answered 408) or shutdown destroyed it. Nobody is left to answer.
      this.logger.debug({ err: (err as Error).message }, 'OTLP/HTTP request body not received in full');
      throw new HttpError(400, GRPC_CODE.INVALID_ARGUMENT, 'request body not received in full');
    }
    // zstd is loaded by the first request that needs it (about 10 MiB that most senders never use).
    if (contentEncoding === 'zstd' && !zstdReady()) await loadZstd();
    try {
      return await decompressBody(raw, contentEncoding, limit, reservation);
    } catch (err) {
      if (err instanceof InflightExceeded) throw this.inflightRefusal();
      throw err;
    }
  }
}

function answer(exchange: OtlpHttpExchange, handler: ExportHandler, outcome: ExportOutcome, encoding: BodyEncoding): void {
  if (outcome.kind === 'ok') {
    exchange.respond(200, contentTypeOf(encoding), handler.responseBytes(outcome, encoding), NO_HEADERS);
    return;
  }
  const { status, grpcCode, headers } = failureStatus(outcome);
  sendStatus(exchange, status, grpcCode, outcome.message, encoding, headers);
}

function sendStatus(exchange: OtlpHttpExchange, status: number, grpcCode: number, message: string, encoding: BodyEncoding | undefined, headers: Readonly<Record<string, string>>): void {
  if (exchange.answered) return;
  const { contentType, body } = statusBody(grpcCode, message, encoding);
  exchange.respond(status, contentType, body, headers);
}
