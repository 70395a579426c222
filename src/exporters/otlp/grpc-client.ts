import * as http2 from 'node:http2';
import type * as tls from 'node:tls';
import { DecompressError, compress, decompress, zstdReady, type Compression } from '../../util/compression';
import { GrpcStatus, MESSAGE_PREFIX_LENGTH, decodeGrpcMessage, messagePrefix } from '../../util/grpc';
import type { CallSignal } from '../exporterhelper/attempt-signal';

// A unary gRPC client on node:http2, for the otlp exporter. OTLP export is one request, one
// response: the framing is five bytes and the status comes in trailers, so this costs a third of
// the CPU of a general-purpose gRPC stack for the same call (docs/performance.md).

/** grpc-encoding names and the compressions they stand for (gRPC's snappy is the framing format). */
const RESPONSE_ENCODINGS: Readonly<Record<string, Compression>> = { gzip: 'gzip', deflate: 'deflate', zstd: 'zstd', snappy: 'snappy' };
export const REQUEST_COMPRESSION = { gzip: 'gzip', zstd: 'zstd', snappy: 'x-snappy-framed' } as const satisfies Record<string, Compression>;

/** How long a connection has to answer a PING after a call on it timed out. */
export const PING_TIMEOUT_MS = 5000;
/**
 * node:http2 counts the requests a session has queued to send against maxSessionMemory (10 MB by
 * default) and, while over it, resets every call whose response headers arrive with
 * ENHANCE_YOUR_CALM: ten consumers sending 4 MB requests to a busy server got calls the server had
 * taken reported as failures, and retried them (duplicates). What is queued is bounded by the
 * sending queue (consumers x request size), not by this limit.
 */
const SESSION_MEMORY_MB = 1024;
/** An Export response is a few bytes; anything this large is not one. */
const MAX_RESPONSE_BYTES = 4 * 1024 * 1024;

/** grpc-timeout: at most 8 digits, so long timeouts go in seconds or minutes. */
export function grpcTimeout(ms: number): string {
  const millis = Math.ceil(ms);
  if (millis < 1e8) return `${millis}m`;
  const seconds = Math.ceil(millis / 1000);
  return seconds < 1e8 ? `${seconds}S` : `${Math.min(99_999_999, Math.ceil(seconds / 60))}M`;
}

export interface UnaryResult {
  readonly code: number;
  readonly message: string;
  /** grpc-status-details-bin, decoded from base64 (a google.rpc.Status). */
  readonly details: Buffer | undefined;
  /** The response message (decompressed), when the call succeeded. */
  readonly response: Buffer | undefined;
  /** Why a successful call's response could not be read. */
  readonly responseError?: string;
}

export interface GrpcClientOptions {
  /** TLS options (CA, client certificate, server name, versions); undefined: plaintext. */
  readonly tls: tls.ConnectionOptions | undefined;
  /** grpc-encoding of the request messages; undefined: uncompressed. */
  readonly compression?: 'gzip' | 'zstd' | 'snappy' | undefined;
  readonly metadata: Readonly<Record<string, string>>;
  /**
   * Headers from a client authenticator, asked per call; the same object while the credentials
   * hold (request headers are rebuilt when it changes). They override `metadata`.
   */
  readonly authHeaders?: () => Readonly<Record<string, string>>;
  /** How long a connection may leave a PING unanswered after a timed-out call (default 5 s). */
  readonly pingTimeoutMs?: number;
}

/** Where HTTP statuses map when a proxy answers instead of a gRPC server (the gRPC spec's table). */
export function codeForHttpStatus(status: number): number {
  switch (status) {
    case 400:
      return GrpcStatus.INTERNAL;
    case 401:
      return GrpcStatus.UNAUTHENTICATED;
    case 403:
      return GrpcStatus.PERMISSION_DENIED;
    case 404:
      return GrpcStatus.UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
      return GrpcStatus.UNAVAILABLE;
    default:
      return GrpcStatus.UNKNOWN;
  }
}

/** What the otlp exporter needs of a gRPC client; two implementations (`http2: spansieve | node`). */
export interface UnaryClient {
  /** Calls `path` with one message; resolves with the status (never rejects for a gRPC error). */
  call(path: string, message: Buffer, signal: CallSignal, timeoutMs: number): Promise<UnaryResult>;
  /** Closes gracefully: calls in flight finish. */
  close(): void;
}

export function grpcAcceptEncoding(): string {
  return zstdReady() ? 'identity,gzip,deflate,zstd,snappy' : 'identity,gzip,deflate,snappy';
}

/**
 * The call's result from what came back: the gRPC status (trailers, or the headers of a
 * trailers-only response), else the HTTP status mapped as gRPC does; the response message
 * checked and decompressed. `noStatus` says why a stream ended without either.
 */
export function unaryResult(
  origin: string,
  httpStatus: number,
  grpcStatus: string | undefined,
  grpcMessage: string | string[] | undefined,
  detailsHeader: string | undefined,
  responseEncoding: string,
  body: Buffer,
  noStatus: string,
): UnaryResult | Promise<UnaryResult> {
  const fail = (code: number, message: string): UnaryResult => ({ code, message, details: undefined, response: undefined });
  if (grpcStatus === undefined) {
    if (httpStatus !== 0 && httpStatus !== 200) return fail(codeForHttpStatus(httpStatus), `HTTP ${httpStatus} from ${origin} (not a gRPC server?)`);
    return fail(GrpcStatus.UNAVAILABLE, `call to ${origin} ended without a status (${noStatus})`);
  }
  const code = Number(grpcStatus);
  const text = decodeGrpcMessage(grpcMessage);
  const details = detailsHeader !== undefined ? Buffer.from(detailsHeader, 'base64') : undefined;
  if (code !== GrpcStatus.OK) return { code, message: text, details, response: undefined };
  // The server accepted the request: an unreadable response must not make it a failure (a retry would duplicate it).
  const unreadable = (err: Error): UnaryResult => ({ code, message: text, details, response: undefined, responseError: `unreadable response from ${origin}: ${err.message}` });
  let message: Buffer | undefined;
  try {
    message = responseMessage(body);
  } catch (err) {
    return unreadable(err as Error);
  }
  if (message === undefined || !isCompressed(message)) return { code, message: text, details, response: message && message.subarray(MESSAGE_PREFIX_LENGTH) };
  const compression = RESPONSE_ENCODINGS[responseEncoding];
  if (compression === undefined || (compression === 'zstd' && !zstdReady())) {
    return unreadable(new Error(responseEncoding === 'identity' ? 'compressed response without grpc-encoding' : `compressed response in unknown grpc-encoding ${JSON.stringify(responseEncoding)}`));
  }
  return decompress(compression, message.subarray(MESSAGE_PREFIX_LENGTH), MAX_RESPONSE_BYTES).then(
    (response): UnaryResult => ({ code, message: text, details, response }),
    (err: unknown) => unreadable(err instanceof DecompressError ? err : new Error(String(err))),
  );
}

export class GrpcUnaryClient implements UnaryClient {
  private session: http2.ClientHttp2Session | undefined;
  private readonly origin: string;
  private readonly headerCache = new Map<string, http2.OutgoingHttpHeaders>();
  /** The authenticator's headers the cached request headers were built with. */
  private cachedAuth: Readonly<Record<string, string>> | undefined;

  constructor(
    endpoint: string,
    private readonly options: GrpcClientOptions,
  ) {
    this.origin = `${options.tls ? 'https' : 'http'}://${endpoint}`;
  }

  /** Calls `path` with one message; resolves with the status (never rejects for a gRPC error). */
  async call(path: string, message: Buffer, signal: CallSignal, timeoutMs: number): Promise<UnaryResult> {
    const encoding = this.options.compression;
    const payload = encoding ? await compress(REQUEST_COMPRESSION[encoding], message) : message;
    const frameHeader = messagePrefix(encoding !== undefined, payload.length);
    const headers = this.headersFor(path, timeoutMs);
    const session = this.connect();
    return new Promise<UnaryResult>((resolve) => {
      let settled = false;
      let stream: http2.ClientHttp2Stream | undefined;
      const onAbort = () => {
        stream?.close(http2.constants.NGHTTP2_CANCEL);
        this.checkAlive(session);
        fail(GrpcStatus.DEADLINE_EXCEEDED, `call to ${this.origin} cancelled: ${String((signal.reason as Error | undefined)?.message ?? 'aborted')}`);
      };
      const finish = (result: UnaryResult) => {
        if (settled) return;
        settled = true;
        signal.removeEventListener('abort', onAbort);
        resolve(result);
      };
      const fail = (code: number, text: string) => finish({ code, message: text, details: undefined, response: undefined });
      if (signal.aborted) {
        fail(GrpcStatus.DEADLINE_EXCEEDED, `call to ${this.origin} cancelled before it started`);
        return;
      }
      try {
        stream = session.request(headers);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? '';
        if (code.startsWith('ERR_HTTP2_INVALID_HEADER') || code === 'ERR_INVALID_CHAR' || code === 'ERR_HTTP2_INVALID_CONNECTION_HEADERS') {
          // A header the config supplied cannot be sent: the session is fine, the call never will be.
          fail(GrpcStatus.INVALID_ARGUMENT, `cannot send the configured headers to ${this.origin}: ${(err as Error).message}`);
        } else {
          this.drop(session);
          fail(GrpcStatus.UNAVAILABLE, `cannot start a call to ${this.origin}: ${(err as Error).message}`);
        }
        return;
      }
      const call = stream;
      signal.addEventListener('abort', onAbort, { once: true });

      let httpStatus = 0;
      let status: http2.IncomingHttpHeaders = {};
      let responseEncoding = 'identity';
      const chunks: Buffer[] = [];
      call.on('response', (responseHeaders) => {
        httpStatus = Number(responseHeaders[':status']);
        responseEncoding = String(responseHeaders['grpc-encoding'] ?? 'identity');
        // A trailers-only response carries the status in its headers.
        if (responseHeaders['grpc-status'] !== undefined) status = responseHeaders;
      });
      call.on('trailers', (trailers: http2.IncomingHttpHeaders) => {
        status = trailers;
      });
      call.on('data', (chunk: Buffer) => chunks.push(chunk));
      call.on('error', (err: Error) => fail(GrpcStatus.UNAVAILABLE, `call to ${this.origin} failed: ${err.message}`));
      call.on('close', () => {
        if (settled) return;
        const detailsHeader = status['grpc-status-details-bin'];
        const result = unaryResult(
          this.origin,
          httpStatus,
          status['grpc-status'] as string | undefined,
          status['grpc-message'],
          typeof detailsHeader === 'string' ? detailsHeader : undefined,
          responseEncoding,
          chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks),
          `stream reset ${call.rstCode}`,
        );
        if (result instanceof Promise) void result.then(finish);
        else finish(result);
      });
      // One writev for prefix and message instead of two writes.
      call.cork();
      call.write(frameHeader);
      call.end(payload);
    });
  }

  /** Request headers, built once per path and timeout (node:http2 copies them; they are never changed). */
  private headersFor(path: string, timeoutMs: number): http2.OutgoingHttpHeaders {
    const auth = this.options.authHeaders?.();
    if (auth !== this.cachedAuth) {
      // The credentials changed (a token file rewritten): rebuild every cached header set.
      this.headerCache.clear();
      this.cachedAuth = auth;
    }
    const key = `${path} ${timeoutMs}`;
    let headers = this.headerCache.get(key);
    if (!headers) {
      headers = {
        ...this.options.metadata,
        ':method': 'POST',
        ':path': path,
        'content-type': 'application/grpc',
        te: 'trailers',
        'user-agent': 'spansieve',
        'grpc-accept-encoding': grpcAcceptEncoding(),
      };
      // gRPC metadata keys are lower-case (HTTP/2 requires it).
      for (const [name, value] of Object.entries(auth ?? {})) headers[name.toLowerCase()] = value;
      if (this.options.compression) headers['grpc-encoding'] = this.options.compression;
      if (timeoutMs > 0) headers['grpc-timeout'] = grpcTimeout(timeoutMs);
      this.headerCache.set(key, headers);
    }
    return headers;
  }

  close(): void {
    this.session?.close();
    this.session = undefined;
  }

  private connect(): http2.ClientHttp2Session {
    const current = this.session;
    if (current && !current.closed && !current.destroyed) return current;
    const session = http2.connect(this.origin, { ...(this.options.tls ?? {}), maxSessionMemory: SESSION_MEMORY_MB });
    // Errors reach the calls on the session; a broken session is replaced on the next call.
    session.on('error', () => this.drop(session));
    session.on('close', () => this.drop(session));
    // After GOAWAY the server finishes what it has: no new calls on this session, but no reset.
    session.on('goaway', () => {
      if (this.session === session) this.session = undefined;
    });
    this.session = session;
    return session;
  }

  /** After a call timed out: if the connection does not answer a PING either, replace it. */
  private checkAlive(session: http2.ClientHttp2Session): void {
    if (session.destroyed || session.closed) return;
    const timer = setTimeout(() => this.drop(session), this.options.pingTimeoutMs ?? PING_TIMEOUT_MS);
    timer.unref();
    try {
      session.ping((err) => {
        clearTimeout(timer);
        if (err) this.drop(session);
      });
    } catch {
      clearTimeout(timer);
      this.drop(session);
    }
  }

  private drop(session: http2.ClientHttp2Session): void {
    if (this.session === session) this.session = undefined;
    if (!session.destroyed) session.destroy();
  }
}

/** The one framed response message, checked (prefix included), or undefined for an empty body. */
function responseMessage(body: Buffer): Buffer | undefined {
  if (body.length === 0) return undefined;
  if (body.length < MESSAGE_PREFIX_LENGTH) throw new Error(`truncated message prefix (${body.length} bytes)`);
  const length = body.readUInt32BE(1);
  if (body.length !== MESSAGE_PREFIX_LENGTH + length) throw new Error(`response framing: prefix says ${length} bytes, ${body.length - MESSAGE_PREFIX_LENGTH} arrived`);
  if (body[0] !== 0 && body[0] !== 1) throw new Error(`unknown compressed flag ${body[0]}`);
  return body;
}

function isCompressed(framed: Buffer): boolean {
  return framed[0] === 1;
}
