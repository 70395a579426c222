import type { IncomingHttpHeaders } from 'node:http';
import type * as net from 'node:net';
import type * as tls from 'node:tls';
import type { Logger } from 'pino';
import type { ServerAuthenticator } from '../../component/auth';
import type { Signal } from '../../pdata/batch';
import { boundPort, listen, processFdGuard, trackConnections } from '../../util/net';
import { headerRecord } from '../../util/http1/parser';
import { Http1Server, type Http1Exchange } from '../../util/http1/server';
import { serverOptions, watchServerTls } from '../../config/tls';
import type { ExportHandler } from './export-handler';
import { InflightBytes, NO_COUNTERS, type ServerCounters } from './inflight';
import { OtlpHttpRequests, SHUTDOWN_GRACE_MS, UNREAD_LINGER_MS, headerTimeoutMs, type HttpError, type HttpProtocolConfig, type OtlpHttpExchange } from './http-flow';

// OTLP/HTTP on spansieve's own HTTP/1.1 layer (src/util/http1; `http1: spansieve`): the request
// flow is http-flow.ts's, the same as on node:http.

export class OtlpHttp1Server {
  private http: Http1Server | undefined;
  private sockets = new Set<net.Socket>();
  private stopTlsReload: () => void = () => undefined;
  private readonly requests: OtlpHttpRequests;

  constructor(
    private readonly config: HttpProtocolConfig,
    handlers: ReadonlyMap<Signal, ExportHandler>,
    private readonly logger: Logger,
    inflight = new InflightBytes(0),
    counters: ServerCounters = NO_COUNTERS,
  ) {
    this.requests = new OtlpHttpRequests(config, handlers, logger, inflight, counters);
  }

  get port(): number {
    return this.http ? boundPort(this.http.server) : 0;
  }

  async start(auth?: ServerAuthenticator): Promise<void> {
    this.requests.auth = auth;
    const { readHeaderTimeoutMs, readTimeoutMs, idleTimeoutMs } = this.config;
    const headersTimeout = headerTimeoutMs(readHeaderTimeoutMs, readTimeoutMs);
    const tlsConfig = this.config.tls;
    const http = new Http1Server(
      (exchange) => this.requests.handle(new Http1OtlpExchange(exchange)),
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
      onRefused: (reason) => this.requests.refusals.connection(reason),
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
}

/** Pre-rendered header lines for an answer's extra headers. */
function headerLines(headers: Readonly<Record<string, string>>): string {
  let out = '';
  for (const name in headers) out += `${name}: ${headers[name]!}\r\n`;
  return out;
}

/** An Http1Exchange as the request flow sees it. */
class Http1OtlpExchange implements OtlpHttpExchange {
  constructor(private readonly exchange: Http1Exchange) {}

  get method(): string {
    return this.exchange.method;
  }

  get target(): string {
    return this.exchange.target;
  }

  header(name: string): string | undefined {
    return this.exchange.header(name);
  }

  headers(): IncomingHttpHeaders {
    return headerRecord(this.exchange.head);
  }

  get remoteAddress(): string | undefined {
    return this.exchange.remoteAddress;
  }

  get declaredLength(): number {
    return this.exchange.head.contentLength;
  }

  readBody(check: (size: number) => HttpError | undefined): Promise<Buffer> {
    return this.exchange.readBody(check);
  }

  get answered(): boolean {
    return this.exchange.responded;
  }

  respond(status: number, contentType: string, body: Uint8Array, headers: Readonly<Record<string, string>>): void {
    this.exchange.respond(status, contentType, body, headerLines(headers));
  }
}
