import * as http from 'node:http';
import * as https from 'node:https';
import type * as net from 'node:net';
import type { Logger } from 'pino';
import type { ServerAuthenticator } from '../../component/auth';
import type { Signal } from '../../pdata/batch';
import { types } from '../../pdata/codec';
import { boundPort, listen, processFdGuard, trackConnections } from '../../util/net';
import { DecompressError, decompress, loadZstd, zstdReady, type Compression } from '../../util/compression';
import { serverOptions, watchServerTls, type ServerTlsConfig } from '../../config/tls';
import { cappedMessage, echoed } from './echo';
import type { BodyEncoding, ExportHandler, ExportOutcome } from './export-handler';
import { INFLIGHT_RETRY_AFTER_MS, InflightBytes, InflightExceeded, NO_COUNTERS, Reservation, ServerRefusals, decompressReserved, type ServerCounters } from './inflight';

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

export class OtlpHttpServer {
  private server: http.Server | undefined;
  private sockets = new Set<net.Socket>();
  /** With TLS: the TLS sockets (requests run on these; `sockets` holds their TCP sockets). */
  private readonly secureSockets = new Set<net.Socket>();
  /** Sockets with a request whose answer is not finished. */
  private readonly busy = new Set<net.Socket>();
  private closing = false;
  private stopTlsReload: () => void = () => undefined;
  private readonly refusals: ServerRefusals;
  private auth: ServerAuthenticator | undefined;
  /** For the 415 message: what compression_algorithms allows. */
  private readonly acceptedEncodings: string;

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

  get port(): number {
    return this.server ? boundPort(this.server) : 0;
  }

  /**
   * write_timeout: the response must be written within `ms` of the request's headers (Go sets the
   * connection's write deadline then); a request still unanswered by then loses its connection,
   * the client sees it closed without an answer.
   */
  private armWriteTimeout(req: http.IncomingMessage, res: http.ServerResponse, ms: number): void {
    const timer = setTimeout(() => {
      if (res.writableFinished) return;
      this.logger.debug({ writeTimeoutMs: ms }, 'OTLP/HTTP response not written within write_timeout; closing the connection');
      req.socket.destroy();
    }, ms);
    timer.unref();
    res.once('close', () => clearTimeout(timer));
  }

  /** `auth`: every request must pass it before anything else is looked at. */
  async start(auth?: ServerAuthenticator): Promise<void> {
    this.auth = auth;
    const { readHeaderTimeoutMs, readTimeoutMs, idleTimeoutMs } = this.config;
    const headersTimeout = headerTimeoutMs(readHeaderTimeoutMs, readTimeoutMs);
    const shortest = Math.min(...[headersTimeout, readTimeoutMs].filter((t) => t > 0), 4000);
    const tlsConfig = this.config.tls;
    const options: http.ServerOptions = {
      headersTimeout,
      requestTimeout: readTimeoutMs,
      keepAliveTimeout: idleTimeoutMs,
      // Node checks those two timeouts on this period (30 s by default): a fraction of the shortest.
      connectionsCheckingInterval: Math.max(50, Math.floor(shortest / 4)),
    };
    const writeTimeoutMs = this.config.writeTimeoutMs ?? 0;
    const onRequest = (req: http.IncomingMessage, res: http.ServerResponse) => {
      this.busy.add(req.socket);
      res.once('close', () => this.busy.delete(req.socket));
      if (writeTimeoutMs > 0) this.armWriteTimeout(req, res, writeTimeoutMs);
      this.handle(req, res).catch((err: unknown) => {
        this.logger.error({ err }, 'unexpected error handling an OTLP/HTTP request');
        if (!res.headersSent) reply(res, 500, 'text/plain', Buffer.from('internal error\n'));
      });
    };
    // The TLS handshake gets the header timeout too (Node's default is 120 s).
    const server = tlsConfig ? https.createServer({ ...options, ...serverOptions(tlsConfig, headersTimeout) }, onRequest) : http.createServer(options, onRequest);
    this.sockets = trackConnections(server, {
      maxConnections: this.config.maxConnections,
      guard: processFdGuard(),
      onRefused: (reason) => this.refusals.connection(reason),
    });
    // A connection that never sends a request: Node's header timeout starts with the request.
    // With TLS, counted from the end of the handshake (handshakeTimeout bounds that; a TLS socket's
    // bytesRead counts decrypted bytes).
    server.on(tlsConfig ? 'secureConnection' : 'connection', (socket: net.Socket) => {
      if (tlsConfig) {
        this.secureSockets.add(socket);
        socket.once('close', () => this.secureSockets.delete(socket));
      }
      if (headersTimeout > 0 && !socket.destroyed) {
        const timer = setTimeout(() => {
          if (!this.busy.has(socket) && socket.bytesRead === 0) socket.destroy();
        }, headersTimeout);
        timer.unref();
        socket.once('data', () => clearTimeout(timer));
        socket.once('close', () => clearTimeout(timer));
      }
    });
    if (tlsConfig) server.on('tlsClientError', (err: Error) => this.logger.debug({ err: err.message }, 'OTLP/HTTP TLS handshake failed'));
    this.server = server;
    await listen(server, this.config.endpoint);
    if (tlsConfig) this.stopTlsReload = watchServerTls(server as https.Server, tlsConfig, this.logger, 'OTLP/HTTP receiver');
  }

  /**
   * Stops accepting, closes idle connections at once, lets requests in flight finish for
   * SHUTDOWN_GRACE_MS and then destroys whatever connection is left, so no client can hold the
   * shutdown up.
   */
  async shutdown(): Promise<void> {
    const server = this.server;
    if (!server?.listening) return;
    this.closing = true;
    this.stopTlsReload();
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    // With TLS, a connection still in its handshake is left to the grace period below.
    for (const socket of this.config.tls ? this.secureSockets : this.sockets) if (!this.busy.has(socket)) socket.destroy();
    const force = setTimeout(() => {
      for (const socket of this.sockets) socket.destroy();
    }, SHUTDOWN_GRACE_MS);
    await closed;
    clearTimeout(force);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const encoding = bodyEncoding(req.headers['content-type']);
    const reservation = new Reservation(this.inflight);
    try {
      // First, as the Collector's auth interceptor: an unauthenticated client learns nothing else
      // (not even which paths exist), and its body is never read.
      if (this.auth) this.authenticate(req, this.auth);
      const handler = routeRequest(this.config, this.handlers, req.url ?? '/', String(req.method));
      if (encoding === undefined) {
        throw new HttpError(415, GRPC_CODE.INVALID_ARGUMENT, `unsupported Content-Type ${JSON.stringify(echoed(req.headers['content-type'] ?? ''))}; use application/x-protobuf or application/json`);
      }
      const refused = handler.refusalBeforeReading();
      if (refused) {
        this.answer(req, res, handler, refused, encoding);
        return;
      }
      const body = await this.readBody(req, reservation);
      const outcome = await handler.export(body, encoding);
      this.answer(req, res, handler, outcome, encoding);
    } catch (err) {
      if (!(err instanceof HttpError)) throw err;
      closeIfUnread(req, res);
      if (this.closing && !res.headersSent) res.setHeader('connection', 'close');
      sendStatus(res, err.status, err.grpcCode, err.message, encoding, err.headers);
    } finally {
      // Handed on (the batch no longer needs the body's bytes counted here) or failed.
      reservation.release();
    }
  }

  private authenticate(req: http.IncomingMessage, auth: ServerAuthenticator): void {
    const params = this.config.requestParams ?? [];
    let headers = req.headers;
    if (params.length > 0) {
      const query = new URLSearchParams((req.url ?? '').split('?')[1] ?? '');
      headers = { ...headers };
      for (const name of params) {
        const value = query.get(name);
        if (value !== null) headers[name.toLowerCase()] = value;
      }
    }
    const reason = auth.authenticate(headers);
    if (reason === undefined) return;
    const message = this.refusals.unauthenticated(reason, req.socket.remoteAddress);
    throw new HttpError(401, GRPC_CODE.UNAUTHENTICATED, message, auth.challenge ? { 'www-authenticate': auth.challenge } : {});
  }

  /** The request would pass max_inflight_bytes: a retryable refusal. */
  private inflightRefusal(): HttpError {
    return new HttpError(503, GRPC_CODE.UNAVAILABLE, this.refusals.inflight(this.inflight), { 'retry-after': String(INFLIGHT_RETRY_AFTER_MS / 1000) });
  }

  private async readBody(req: http.IncomingMessage, reservation: Reservation): Promise<Uint8Array> {
    const limit = this.config.maxRequestBodySize;
    const contentEncoding = requestContentEncoding(this.config, String(req.headers['content-encoding'] ?? ''), this.acceptedEncodings);
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > limit) {
      throw new HttpError(413, GRPC_CODE.RESOURCE_EXHAUSTED, `request body of ${declared} bytes exceeds the limit of ${limit} bytes`);
    }
    // The declared length is reserved before reading; a chunked body reserves as it arrives.
    if (Number.isFinite(declared) && !reservation.grow(declared)) throw this.inflightRefusal();
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const chunk of req as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > limit) {
          throw new HttpError(413, GRPC_CODE.RESOURCE_EXHAUSTED, `request body exceeds the limit of ${limit} bytes`);
        }
        if (size > reservation.bytes && !reservation.grow(size - reservation.bytes)) throw this.inflightRefusal();
        chunks.push(chunk);
      }
    } catch (err) {
      if (err instanceof HttpError) throw err;
      // The connection went away mid-body: the client gave up, read_timeout passed (Node has
      // answered 408) or shutdown destroyed it. Nobody is left to answer.
      this.logger.debug({ err: (err as Error).message }, 'OTLP/HTTP request body not received in full');
      throw new HttpError(400, GRPC_CODE.INVALID_ARGUMENT, 'request body not received in full');
    }
    const raw = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
    // zstd is loaded by the first request that needs it (about 10 MiB that most senders never use).
    if (contentEncoding === 'zstd' && !zstdReady()) await loadZstd();
    try {
      return await decompressBody(raw, contentEncoding, limit, reservation);
    } catch (err) {
      if (err instanceof InflightExceeded) throw this.inflightRefusal();
      throw err;
    }
  }

  private answer(req: http.IncomingMessage, res: http.ServerResponse, handler: ExportHandler, outcome: ExportOutcome, encoding: BodyEncoding): void {
    closeIfUnread(req, res);
    if (this.closing && !res.headersSent) res.setHeader('connection', 'close');
    if (outcome.kind === 'ok') {
      reply(res, 200, contentTypeOf(encoding), handler.responseBytes(outcome, encoding));
      return;
    }
    const { status, grpcCode, headers } = failureStatus(outcome);
    sendStatus(res, status, grpcCode, outcome.message, encoding, headers);
  }
}

/**
 * An answer sent before the whole body arrived closes the connection once it is flushed: keeping
 * it would mean reading (and discarding) whatever the client still sends, for as long as it sends.
 */
function closeIfUnread(req: http.IncomingMessage, res: http.ServerResponse): void {
  if (req.complete || res.headersSent) return;
  res.setHeader('connection', 'close');
  // Discarded until the socket closes; the response is not held up by unread data.
  req.resume();
  // Node destroys a `Connection: close` socket as soon as the answer is written; with request
  // bytes still unread the kernel then resets the connection and a client still sending loses the
  // answer (EPIPE). Half-close instead and discard what arrives for a moment, as Go's server does.
  const socket = req.socket;
  socket.destroySoon = () => {
    socket.end();
    socket.resume();
    const linger = setTimeout(() => socket.destroy(), UNREAD_LINGER_MS);
    linger.unref();
    socket.once('close', () => clearTimeout(linger));
  };
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

function sendStatus(
  res: http.ServerResponse,
  status: number,
  grpcCode: number,
  message: string,
  encoding: BodyEncoding | undefined,
  headers: Record<string, string> = {},
): void {
  if (res.headersSent) return;
  for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
  const { contentType, body } = statusBody(grpcCode, message, encoding);
  reply(res, status, contentType, body);
}

function reply(res: http.ServerResponse, status: number, contentType: string, body: Uint8Array): void {
  res.writeHead(status, { 'content-type': contentType, 'content-length': body.length });
  res.end(body);
}
