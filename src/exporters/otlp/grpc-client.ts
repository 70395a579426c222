import * as http2 from 'node:http2';
import { promisify } from 'node:util';
import * as zlib from 'node:zlib';
import { GrpcStatus, decodeGrpcMessage, messagePrefix } from '../../util/grpc';

// A unary gRPC client on node:http2, for the otlp exporter. OTLP export is one request, one
// response: the framing is five bytes and the status comes in trailers, so this costs a third of
// the CPU of a general-purpose gRPC stack for the same call (docs/performance.md).

const gzip = promisify(zlib.gzip);
const gunzip = promisify(zlib.gunzip);

export interface UnaryResult {
  readonly code: number;
  readonly message: string;
  /** grpc-status-details-bin, decoded from base64 (a google.rpc.Status). */
  readonly details: Buffer | undefined;
  /** The response message (decompressed), when the call succeeded. */
  readonly response: Buffer | undefined;
}

export interface GrpcClientOptions {
  readonly tls: boolean;
  readonly ca: Buffer | undefined;
  readonly rejectUnauthorized: boolean;
  readonly gzip: boolean;
  readonly metadata: Readonly<Record<string, string>>;
}

/** Where HTTP statuses map when a proxy answers instead of a gRPC server (the gRPC spec's table). */
function codeForHttpStatus(status: number): number {
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

export class GrpcUnaryClient {
  private session: http2.ClientHttp2Session | undefined;
  private readonly origin: string;

  constructor(
    endpoint: string,
    private readonly options: GrpcClientOptions,
  ) {
    this.origin = `${options.tls ? 'https' : 'http'}://${endpoint}`;
  }

  /** Calls `path` with one message; resolves with the status (never rejects for a gRPC error). */
  async call(path: string, message: Buffer, signal: AbortSignal, timeoutMs: number): Promise<UnaryResult> {
    const payload = this.options.gzip ? await gzip(message) : message;
    const frameHeader = messagePrefix(this.options.gzip, payload.length);
    const headers: http2.OutgoingHttpHeaders = {
      ...this.options.metadata,
      ':method': 'POST',
      ':path': path,
      'content-type': 'application/grpc',
      te: 'trailers',
      'user-agent': 'spansieve',
      'grpc-accept-encoding': 'identity,gzip',
    };
    if (this.options.gzip) headers['grpc-encoding'] = 'gzip';
    if (timeoutMs > 0) headers['grpc-timeout'] = `${Math.ceil(timeoutMs)}m`;

    const session = this.connect();
    return new Promise<UnaryResult>((resolve) => {
      let settled = false;
      const finish = (result: UnaryResult) => {
        if (settled) return;
        settled = true;
        signal.removeEventListener('abort', onAbort);
        resolve(result);
      };
      const fail = (code: number, text: string) => finish({ code, message: text, details: undefined, response: undefined });
      let stream: http2.ClientHttp2Stream;
      try {
        stream = session.request(headers);
      } catch (err) {
        this.drop(session);
        fail(GrpcStatus.UNAVAILABLE, `cannot start a call to ${this.origin}: ${(err as Error).message}`);
        return;
      }
      const onAbort = () => {
        stream.close(http2.constants.NGHTTP2_CANCEL);
        fail(GrpcStatus.DEADLINE_EXCEEDED, `call to ${this.origin} cancelled: ${String((signal.reason as Error | undefined)?.message ?? 'aborted')}`);
      };
      signal.addEventListener('abort', onAbort, { once: true });

      let httpStatus = 0;
      let status: http2.IncomingHttpHeaders = {};
      let compressed = false;
      const chunks: Buffer[] = [];
      stream.on('response', (responseHeaders) => {
        httpStatus = Number(responseHeaders[':status']);
        compressed = responseHeaders['grpc-encoding'] === 'gzip';
        // A trailers-only response carries the status in its headers.
        if (responseHeaders['grpc-status'] !== undefined) status = responseHeaders;
      });
      stream.on('trailers', (trailers: http2.IncomingHttpHeaders) => {
        status = trailers;
      });
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('error', (err: Error) => fail(GrpcStatus.UNAVAILABLE, `call to ${this.origin} failed: ${err.message}`));
      stream.on('close', () => {
        if (settled) return;
        if (status['grpc-status'] === undefined) {
          if (httpStatus !== 0 && httpStatus !== 200) fail(codeForHttpStatus(httpStatus), `HTTP ${httpStatus} from ${this.origin} (not a gRPC server?)`);
          else fail(GrpcStatus.UNAVAILABLE, `call to ${this.origin} ended without a status (stream reset ${stream.rstCode})`);
          return;
        }
        const code = Number(status['grpc-status']);
        const text = decodeGrpcMessage(status['grpc-message']);
        const detailsHeader = status['grpc-status-details-bin'];
        const details = typeof detailsHeader === 'string' ? Buffer.from(detailsHeader, 'base64') : undefined;
        if (code !== GrpcStatus.OK) {
          finish({ code, message: text, details, response: undefined });
          return;
        }
        readResponse(Buffer.concat(chunks), compressed).then(
          (response) => finish({ code, message: text, details, response }),
          (err: Error) => fail(GrpcStatus.INTERNAL, `unreadable response from ${this.origin}: ${err.message}`),
        );
      });
      stream.write(frameHeader);
      stream.end(payload);
    });
  }

  close(): void {
    this.session?.close();
    this.session = undefined;
  }

  private connect(): http2.ClientHttp2Session {
    const current = this.session;
    if (current && !current.closed && !current.destroyed) return current;
    const session = http2.connect(this.origin, this.options.tls ? { ca: this.options.ca, rejectUnauthorized: this.options.rejectUnauthorized } : {});
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

  private drop(session: http2.ClientHttp2Session): void {
    if (this.session === session) this.session = undefined;
    if (!session.destroyed) session.destroy();
  }
}

async function readResponse(body: Buffer, compressedStream: boolean): Promise<Buffer | undefined> {
  if (body.length < 5) return undefined;
  const flag = body[0];
  const length = body.readUInt32BE(1);
  const message = body.subarray(5, 5 + length);
  return flag === 1 && compressedStream ? gunzip(message) : message;
}
