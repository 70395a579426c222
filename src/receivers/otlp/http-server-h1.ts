import type * as net from 'node:net';
import type * as tls from 'node:tls';
import type { Logger } from 'pino';
import type { ServerAuthenticator } from '../../component/auth';
import type { Signal } from '../../pdata/batch';
import { boundPort, listen, processFdGuard, trackConnections } from '../../util/net';
import { loadZstd, zstdReady } from '../../util/compression';
import { headerRecord } from '../../util/http1/parser';
import { Http1Server, type Http1Exchange } from '../../util/http1/server';
import { serverOptions, watchServerTls } from '../../config/tls';
import { echoed } from './echo';
import type { BodyEncoding, ExportHandler, ExportOutcome } from './export-handler';
import { INFLIGHT_RETRY_AFTER_MS, InflightBytes, InflightExceeded, NO_COUNTERS, Reservation, ServerRefusals, type ServerCounters } from './inflight';
import {
  GRPC_CODE, HttpError, SHUTDOWN_GRACE_MS, UNREAD_LINGER_MS, acceptedEncodingsText, bodyEncoding, contentTypeOf, decompressBody, failureStatus, headerTimeoutMs, requestContentEncoding, routeRequest, statusBody,
  type HttpProtocolConfig,
} from './http-server';

// OTLP/HTTP on spansieve's own HTTP/1.1 layer (src/util/http1; `http1: spansieve`). Requests are
// handled exactly as http-server.ts does on node:http: same order of checks, same answers.

export class OtlpHttp1Server {
  private http: Http1Server | undefined;
  private sockets = new Set<net.Socket>();
  private stopTlsReload: () => void = () => undefined;
  private readonly refusals: ServerRefusals;
  private auth: ServerAuthenticator | undefined;
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
    return this.http ? boundPort(this.http.server) : 0;
  }

  async start(auth?: ServerAuthenticator): Promise<void> {
    this.auth = auth;
    const { readHeaderTimeoutMs, readTimeoutMs, idleTimeoutMs } = this.config;
    const headersTimeout = headerTimeoutMs(readHeaderTimeoutMs, readTimeoutMs);
    const tlsConfig = this.config.tls;
    const http = new Http1Server(
      (exchange) => this.onRequest(exchange),
      {
        headersTimeoutMs: headersTimeout,
        requestTimeoutMs: readTimeoutMs,
        writeTimeoutMs: this.config.writeTimeoutMs ?? 0,
        idleTimeoutMs,
        lingerMs: UNREAD_LINGER_MS,
      },
      // The TLS handshake gets the header timeout too.
      tlsConfig ? serverOptions(tlsConfig, headersTimeout) : undefined,
    );
    this.sockets = trackConnections(http.server, {
      maxConnections: this.config.maxConnections,
      guard: processFdGuard(),
      onRefused: (reason) => this.refusals.connection(reason),
    });
    if (tlsConfig) http.server.on('tlsClientError', (err: Error) => this.logger.debug({ err: err.message }, 'OTLP/HTTP TLS handshake failed'));
    await listen(http.server, this.config.endpoint);
    this.http = http;
    if (tlsConfig) this.stopTlsReload = watchServerTls(http.server as tls.Server, tlsConfig, this.logger, 'OTLP/HTTP receiver');
  }

  /**
   * Stops accepting, closes idle connections at once, lets requests in flight finish for
   * SHUTDOWN_GRACE_MS and then destroys whatever connection is left (TLS handshakes included).
   */
  async shutdown(): Promise<void> {
    const http = this.http;
    if (!http?.server.listening) return;
    this.stopTlsReload();
    const closed = http.close();
    const force = setTimeout(() => {
      for (const socket of this.sockets) socket.destroy();
    }, SHUTDOWN_GRACE_MS);
    await closed;
    clearTimeout(force);
  }

  private onRequest(exchange: Http1Exchange): void {
    this.handle(exchange).catch((err: unknown) => {
      this.logger.error({ err }, 'unexpected error handling an OTLP/HTTP request');
      exchange.respond(500, 'text/plain', Buffer.from('internal error\n'));
    });
  }

  private async handle(exchange: Http1Exchange): Promise<void> {
    const encoding = bodyEncoding(exchange.header('content-type'));
    const reservation = new Reservation(this.inflight);
    try {
      // First, as the Collector's auth interceptor: an unauthenticated client learns nothing else.
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
      reservation.release();
    }
  }

  private authenticate(exchange: Http1Exchange, auth: ServerAuthenticator): void {
    const headers = headerRecord(exchange.head);
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

  private inflightRefusal(): HttpError {
    return new HttpError(503, GRPC_CODE.UNAVAILABLE, this.refusals.inflight(this.inflight), { 'retry-after': String(INFLIGHT_RETRY_AFTER_MS / 1000) });
  }

  private async readBody(exchange: Http1Exchange, reservation: Reservation): Promise<Uint8Array> {
    const limit = this.config.maxRequestBodySize;
    const contentEncoding = requestContentEncoding(this.config, exchange.header('content-encoding') ?? '', this.acceptedEncodings);
    const declared = exchange.head.contentLength;
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
      // The connection went away mid-body (the client gave up, read_timeout answered 408, shutdown): nobody to answer.
      this.logger.debug({ err: (err as Error).message }, 'OTLP/HTTP request body not received in full');
      throw new HttpError(400, GRPC_CODE.INVALID_ARGUMENT, 'request body not received in full');
    }
    if (contentEncoding === 'zstd' && !zstdReady()) await loadZstd();
    try {
      return await decompressBody(raw, contentEncoding, limit, reservation);
    } catch (err) {
      if (err instanceof InflightExceeded) throw this.inflightRefusal();
      throw err;
    }
  }
}

/** Pre-rendered header lines for an answer's extra headers. */
function headerLines(headers: Record<string, string>): string {
  let out = '';
  for (const name in headers) out += `${name}: ${headers[name]!}\r\n`;
  return out;
}

function answer(exchange: Http1Exchange, handler: ExportHandler, outcome: ExportOutcome, encoding: BodyEncoding): void {
  if (outcome.kind === 'ok') {
    exchange.respond(200, contentTypeOf(encoding), handler.responseBytes(outcome, encoding));
    return;
  }
  const { status, grpcCode, headers } = failureStatus(outcome);
  sendStatus(exchange, status, grpcCode, outcome.message, encoding, headers);
}

function sendStatus(exchange: Http1Exchange, status: number, grpcCode: number, message: string, encoding: BodyEncoding | undefined, headers: Record<string, string> = {}): void {
  if (exchange.responded) return;
  const { contentType, body } = statusBody(grpcCode, message, encoding);
  exchange.respond(status, contentType, body, headerLines(headers));
}
