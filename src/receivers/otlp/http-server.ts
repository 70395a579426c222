import * as http from 'node:http';
import * as https from 'node:https';
import type * as net from 'node:net';
import type { Logger } from 'pino';
import type { ServerAuthenticator } from '../../component/auth';
import type { Signal } from '../../pdata/batch';
import { boundPort, listen, processFdGuard, trackConnections } from '../../util/net';
import { serverOptions, watchServerTls } from '../../config/tls';
import type { ExportHandler } from './export-handler';
import { InflightBytes, NO_COUNTERS, type ServerCounters } from './inflight';
import { HttpError, OtlpHttpRequests, SHUTDOWN_GRACE_MS, UNREAD_LINGER_MS, headerTimeoutMs, type HttpProtocolConfig, type OtlpHttpExchange } from './http-flow';

// OTLP/HTTP on node:http (`protocols::http::http1: node`): the request flow is http-flow.ts's;
// this file adapts node's request and response to it and keeps node's connections in check.

export class OtlpHttpServer {
  private server: http.Server | undefined;
  private sockets = new Set<net.Socket>();
  /** With TLS: the TLS sockets (requests run on these; `sockets` holds their TCP sockets). */
  private readonly secureSockets = new Set<net.Socket>();
  /** Sockets with a request whose answer is not finished. */
  private readonly busy = new Set<net.Socket>();
  private closing = false;
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
    this.requests.auth = auth;
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
      this.requests.handle(new NodeExchange(req, res, () => this.closing));
    };
    // The TLS handshake gets the header timeout too (Node's default is 120 s).
    const server = tlsConfig ? https.createServer({ ...options, ...serverOptions(tlsConfig, headersTimeout) }, onRequest) : http.createServer(options, onRequest);
    this.sockets = trackConnections(server, {
      maxConnections: this.config.maxConnections,
      guard: processFdGuard(),
      onRefused: (reason) => this.requests.refusals.connection(reason),
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

/** node's request and response as the request flow sees them. */
class NodeExchange implements OtlpHttpExchange {
  constructor(
    private readonly req: http.IncomingMessage,
    private readonly res: http.ServerResponse,
    private readonly closing: () => boolean,
  ) {}

  get method(): string {
    return String(this.req.method);
  }

  get target(): string {
    return this.req.url ?? '/';
  }

  header(name: string): string | undefined {
    const value = this.req.headers[name];
    return Array.isArray(value) ? value[0] : value;
  }

  headers(): http.IncomingHttpHeaders {
    return { ...this.req.headers };
  }

  get remoteAddress(): string | undefined {
    return this.req.socket.remoteAddress;
  }

  get declaredLength(): number {
    const declared = Number(this.req.headers['content-length']);
    return Number.isFinite(declared) ? declared : -1;
  }

  async readBody(check: (size: number) => HttpError | undefined): Promise<Buffer> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of this.req as AsyncIterable<Buffer>) {
      size += chunk.length;
      const refusal = check(size);
      if (refusal) throw refusal;
      chunks.push(chunk);
    }
    return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
  }

  get answered(): boolean {
    return this.res.headersSent;
  }

  respond(status: number, contentType: string, body: Uint8Array, headers: Readonly<Record<string, string>>): void {
    const { req, res } = this;
    closeIfUnread(req, res);
    if (this.closing() && !res.headersSent) res.setHeader('connection', 'close');
    for (const name in headers) res.setHeader(name, headers[name]!);
    reply(res, status, contentType, body);
  }
}

function reply(res: http.ServerResponse, status: number, contentType: string, body: Uint8Array): void {
  res.writeHead(status, { 'content-type': contentType, 'content-length': body.length });
  res.end(body);
}
