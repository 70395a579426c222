import { compress } from '../../util/compression';
import { GrpcStatus, messagePrefix } from '../../util/grpc';
import { H2ClientConnection, fieldValue, type H2CallHandler, type H2ClientError, type H2ClientStream, type H2Response } from '../../util/h2/client';
import { encodeHeaders } from '../../util/h2/hpack';
import { parseHostPort } from '../../util/net';
import {
  PING_TIMEOUT_MS, REQUEST_COMPRESSION, grpcAcceptEncoding, grpcTimeout, unaryResult, type GrpcClientOptions, type UnaryClient, type UnaryResult,
} from './grpc-client';
import type { CallSignal } from '../exporterhelper/attempt-signal';

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
  readonly origin: string;
  private readonly host: string;
  private readonly port: number;
  /** Header blocks by path and timeout; a string is why the configured headers cannot be sent. */
  private readonly blocks = new Map<string, Buffer | string>();
  private cachedAuth: Readonly<Record<string, string>> | undefined;
  /** The last call's path, timeout and block: an exporter calls one path with one timeout, so most calls build no key. */
  private lastPath = '';
  private lastTimeoutMs = -1;
  private lastBlock: Buffer | string | undefined;

  constructor(
    private readonly endpoint: string,
    private readonly options: GrpcClientOptions,
  ) {
    this.origin = `${options.tls ? 'https' : 'http'}://${endpoint}`;
    const parsed = parseHostPort(endpoint);
    this.host = parsed?.host || 'localhost';
    this.port = parsed?.port ?? 0;
  }

  /** Not async: uncompressed, the call's promise is returned as is (no wrapper promise per call). */
  call(path: string, message: Buffer, signal: CallSignal, timeoutMs: number): Promise<UnaryResult> {
    const encoding = this.options.compression;
    if (encoding) return compress(REQUEST_COMPRESSION[encoding], message).then((payload) => this.send(path, payload, true, signal, timeoutMs));
    try {
      return this.send(path, message, false, signal, timeoutMs);
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
  }

  private send(path: string, payload: Buffer, compressed: boolean, signal: CallSignal, timeoutMs: number): Promise<UnaryResult> {
    const block = this.headerBlock(path, timeoutMs);
    if (typeof block === 'string') return Promise.resolve(failed(GrpcStatus.INVALID_ARGUMENT, `cannot send the configured headers to ${this.origin}: ${block}`));
    if (signal.aborted) return Promise.resolve(failed(GrpcStatus.DEADLINE_EXCEEDED, `call to ${this.origin} cancelled before it started`));
    const call = new UnaryCall(this, block, [messagePrefix(compressed, payload.length), payload], signal);
    return new Promise<UnaryResult>((resolve) => call.begin(resolve));
  }

  close(): void {
    this.connection?.close();
    this.connection = undefined;
  }

  /** The call's result from a complete response. */
  result(response: H2Response): UnaryResult | Promise<UnaryResult> {
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
      this.lastBlock = undefined;
      this.cachedAuth = auth;
    }
    if (this.lastBlock !== undefined && path === this.lastPath && timeoutMs === this.lastTimeoutMs) return this.lastBlock;
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
    this.lastPath = path;
    this.lastTimeoutMs = timeoutMs;
    this.lastBlock = block;
    return block;
  }

  /** The connection for the next call: the current one while usable, else a new one. */
  connect(): H2ClientConnection {
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
  checkAlive(connection: H2ClientConnection): void {
    if (connection.closed) return;
    const timer = setTimeout(() => connection.destroy(), this.options.pingTimeoutMs ?? PING_TIMEOUT_MS);
    timer.unref();
    connection.ping((err) => {
      clearTimeout(timer);
      if (err) connection.destroy();
    });
  }
}

/**
 * One call in flight: its own handler of the stream's events, one object instead of a closure
 * per event and a handler object per call (per-call allocations show at a fixed rate).
 */
class UnaryCall implements H2CallHandler {
  private settled = false;
  private stream: H2ClientStream | undefined = undefined;
  private connection: H2ClientConnection | undefined = undefined;
  private resolve: (result: UnaryResult) => void = noop;
  /** Sent again once already (transparent retry of an unprocessed call). */
  private repeated = false;
  private readonly onAbort = (): void => {
    this.stream?.cancel();
    if (this.connection) this.client.checkAlive(this.connection);
    this.finish(failed(GrpcStatus.DEADLINE_EXCEEDED, `call to ${this.client.origin} cancelled: ${String((this.signal.reason as Error | undefined)?.message ?? 'aborted')}`));
  };

  constructor(
    private readonly client: SpansieveGrpcClient,
    private readonly block: Buffer,
    private readonly body: Buffer[],
    private readonly signal: CallSignal,
  ) {}

  begin(resolve: (result: UnaryResult) => void): void {
    this.resolve = resolve;
    this.signal.addEventListener('abort', this.onAbort, { once: true });
    this.send();
  }

  onResponse(response: H2Response): void {
    const result = this.client.result(response);
    if (result instanceof Promise) void result.then((r) => this.finish(r));
    else this.finish(result);
  }

  onError(err: H2ClientError): void {
    // Not processed (above a GOAWAY's last stream id, refused): sent again at once on a new
    // connection, once, as gRPC's transparent retry; no duplicate is possible.
    if (err.unprocessed && !this.repeated && !this.settled && !this.signal.aborted) {
      this.repeated = true;
      this.send();
    } else {
      this.finish(failed(GrpcStatus.UNAVAILABLE, `call to ${this.client.origin} failed: ${err.message}`));
    }
  }

  private send(): void {
    this.connection = this.client.connect();
    this.stream = this.connection.request(this.block, this.body, this);
  }

  private finish(result: UnaryResult): void {
    if (this.settled) return;
    this.settled = true;
    this.signal.removeEventListener('abort', this.onAbort);
    this.resolve(result);
  }
}

function noop(): void {}

function failed(code: number, message: string): UnaryResult {
  return { code, message, details: undefined, response: undefined };
}
