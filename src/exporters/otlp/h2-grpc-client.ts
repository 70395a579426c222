import { compress } from '../../util/compression';
import { GrpcStatus, messagePrefix } from '../../util/grpc';
import { H2ClientConnection, fieldValue, type H2ClientError, type H2ClientStream, type H2Response } from '../../util/h2/client';
import { encodeHeaders } from '../../util/h2/hpack';
import { parseHostPort } from '../../util/net';
import {
  PING_TIMEOUT_MS, REQUEST_COMPRESSION, grpcAcceptEncoding, grpcTimeout, unaryResult, type GrpcClientOptions, type UnaryClient, type UnaryResult,
} from './grpc-client';

// The otlp exporter's unary gRPC client on spansieve's own HTTP/2 layer (src/util/h2/client.ts)
// instead of node:http2: the request's header block is HPACK-encoded once per path and timeout,
// and a call is one socket write of headers and body (docs/h2.md, docs/performance.md).

/** RFC 9110 token characters, lowercase (HTTP/2 field names, 8.2.1). */
const FIELD_NAME = /^[a-z0-9!#$%&'*+\-.^_`|~]+$/;
/** What node:http2 also refuses in a value: control characters other than tab. */
const BAD_VALUE = /[^\t\x20-\x7e\x80-\xff]/;
/** Connection-specific fields HTTP/2 forbids (8.2.2). */
const CONNECTION_SPECIFIC = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'host']);

export class SpansieveGrpcClient implements UnaryClient {
  private connection: H2ClientConnection | undefined;
  private readonly origin: string;
  private readonly host: string;
  private readonly port: number;
  /** Header blocks by path and timeout; a string is why the configured headers cannot be sent. */
  private readonly blocks = new Map<string, Buffer | string>();
  private cachedAuth: Readonly<Record<string, string>> | undefined;

  constructor(
    private readonly endpoint: string,
    private readonly options: GrpcClientOptions,
  ) {
    this.origin = `${options.tls ? 'https' : 'http'}://${endpoint}`;
    const parsed = parseHostPort(endpoint);
    this.host = parsed?.host || 'localhost';
    this.port = parsed?.port ?? 0;
  }

  async call(path: string, message: Buffer, signal: AbortSignal, timeoutMs: number): Promise<UnaryResult> {
    const encoding = this.options.compression;
    const payload = encoding ? await compress(REQUEST_COMPRESSION[encoding], message) : message;
    const body = [messagePrefix(encoding !== undefined, payload.length), payload];
    const block = this.headerBlock(path, timeoutMs);
    if (typeof block === 'string') return failed(GrpcStatus.INVALID_ARGUMENT, `cannot send the configured headers to ${this.origin}: ${block}`);
    if (signal.aborted) return failed(GrpcStatus.DEADLINE_EXCEEDED, `call to ${this.origin} cancelled before it started`);
    return new Promise<UnaryResult>((resolve) => {
      let settled = false;
      let stream: H2ClientStream | undefined;
      let connection: H2ClientConnection | undefined;
      const finish = (result: UnaryResult) => {
        if (settled) return;
        settled = true;
        signal.removeEventListener('abort', onAbort);
        resolve(result);
      };
      const onAbort = () => {
        stream?.cancel();
        if (connection) this.checkAlive(connection);
        finish(failed(GrpcStatus.DEADLINE_EXCEEDED, `call to ${this.origin} cancelled: ${String((signal.reason as Error | undefined)?.message ?? 'aborted')}`));
      };
      const attempt = (mayRepeat: boolean) => {
        connection = this.connect();
        stream = connection.request(block, body, {
          onResponse: (response) => {
            const result = this.result(response);
            if (result instanceof Promise) void result.then(finish);
            else finish(result);
          },
          onError: (err: H2ClientError) => {
            // Not processed (above a GOAWAY's last stream id, refused): sent again at once on a new
            // connection, once, as gRPC's transparent retry; no duplicate is possible.
            if (err.unprocessed && mayRepeat && !settled && !signal.aborted) attempt(false);
            else finish(failed(GrpcStatus.UNAVAILABLE, `call to ${this.origin} failed: ${err.message}`));
          },
        });
      };
      signal.addEventListener('abort', onAbort, { once: true });
      attempt(true);
    });
  }

  close(): void {
    this.connection?.close();
    this.connection = undefined;
  }

  private result(response: H2Response): UnaryResult | Promise<UnaryResult> {
    const headers = response.headers;
    // A trailers-only response carries the status in its headers.
    const status = response.trailers ?? (fieldValue(headers, 'grpc-status') !== undefined ? headers : undefined);
    const body = response.body.length === 1 ? response.body[0]! : Buffer.concat(response.body, response.bodyBytes);
    return unaryResult(
      this.origin,
      Number(headers[0] === ':status' ? headers[1] : fieldValue(headers, ':status')),
      status && fieldValue(status, 'grpc-status'),
      status && fieldValue(status, 'grpc-message'),
      status && fieldValue(status, 'grpc-status-details-bin'),
      fieldValue(headers, 'grpc-encoding') ?? 'identity',
      body,
      response.trailers ? 'trailers without grpc-status' : 'no trailers',
    );
  }

  /** The request's header block, HPACK-encoded once per path and timeout (rebuilt when the credentials change). */
  private headerBlock(path: string, timeoutMs: number): Buffer | string {
    const auth = this.options.authHeaders?.();
    if (auth !== this.cachedAuth) {
      this.blocks.clear();
      this.cachedAuth = auth;
    }
    const key = `${path} ${timeoutMs}`;
    let block = this.blocks.get(key);
    if (block === undefined) {
      const fields = new Map<string, string>([
        [':method', 'POST'],
        [':scheme', this.options.tls ? 'https' : 'http'],
        [':path', path],
        [':authority', this.endpoint],
        ['content-type', 'application/grpc'],
        ['te', 'trailers'],
        ['user-agent', 'spansieve'],
        ['grpc-accept-encoding', grpcAcceptEncoding()],
      ]);
      if (this.options.compression) fields.set('grpc-encoding', this.options.compression);
      if (timeoutMs > 0) fields.set('grpc-timeout', grpcTimeout(timeoutMs));
      // gRPC metadata keys are lower-case (HTTP/2 requires it); the authenticator's override the config's.
      let problem: string | undefined;
      for (const [name, value] of [...Object.entries(this.options.metadata), ...Object.entries(auth ?? {})]) {
        const lower = name.toLowerCase();
        if (!FIELD_NAME.test(lower) || CONNECTION_SPECIFIC.has(lower) || lower === 'te') problem ??= `header ${JSON.stringify(name)} is not allowed in HTTP/2`;
        else if (BAD_VALUE.test(value)) problem ??= `header ${JSON.stringify(name)} has a character HTTP/2 does not allow`;
        fields.set(lower, value);
      }
      block = problem ?? encodeHeaders([...fields]);
      this.blocks.set(key, block);
    }
    return block;
  }

  private connect(): H2ClientConnection {
    const current = this.connection;
    if (current?.usable) return current;
    const connection = new H2ClientConnection({ host: this.host, port: this.port, tls: this.options.tls });
    connection.onClose = () => {
      if (this.connection === connection) this.connection = undefined;
    };
    this.connection = connection;
    return connection;
  }

  /** After a call timed out: if the connection does not answer a PING either, replace it. */
  private checkAlive(connection: H2ClientConnection): void {
    if (connection.closed) return;
    const timer = setTimeout(() => connection.destroy(), this.options.pingTimeoutMs ?? PING_TIMEOUT_MS);
    timer.unref();
    connection.ping((err) => {
      clearTimeout(timer);
      if (err) connection.destroy();
    });
  }
}

function failed(code: number, message: string): UnaryResult {
  return { code, message, details: undefined, response: undefined };
}
