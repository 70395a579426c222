import * as http from 'node:http';
import * as zlib from 'node:zlib';
import type { Logger } from 'pino';
import type { Signal } from '../../pdata/batch';
import { types } from '../../pdata/codec';
import { boundPort, closeServer, listen } from '../../util/net';
import { echoed } from './echo';
import type { BodyEncoding, ExportHandler, ExportOutcome } from './export-handler';

export interface HttpProtocolConfig {
  readonly endpoint: string;
  /** Largest accepted body, in bytes, before and after decompression. */
  readonly maxRequestBodySize: number;
  readonly tracesUrlPath: string;
  readonly metricsUrlPath: string;
}

const GRPC_CODE = { INVALID_ARGUMENT: 3, NOT_FOUND: 5, RESOURCE_EXHAUSTED: 8, UNIMPLEMENTED: 12, UNAVAILABLE: 14 } as const;

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly grpcCode: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** OTLP/HTTP: POST protobuf or JSON bodies, plain or gzip/deflate, answered per the OTLP spec. */
export class OtlpHttpServer {
  private server: http.Server | undefined;

  constructor(
    private readonly config: HttpProtocolConfig,
    private readonly handlers: ReadonlyMap<Signal, ExportHandler>,
    private readonly logger: Logger,
  ) {}

  get port(): number {
    return this.server ? boundPort(this.server) : 0;
  }

  async start(): Promise<void> {
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        this.logger.error({ err }, 'unexpected error handling an OTLP/HTTP request');
        if (!res.headersSent) reply(res, 500, 'text/plain', Buffer.from('internal error\n'));
      });
    });
    this.server.keepAliveTimeout = 30_000;
    await listen(this.server, this.config.endpoint);
  }

  async shutdown(): Promise<void> {
    await closeServer(this.server);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const encoding = bodyEncoding(req.headers['content-type']);
    try {
      const handler = this.route(req);
      if (encoding === undefined) {
        throw new HttpError(415, GRPC_CODE.INVALID_ARGUMENT, `unsupported Content-Type ${JSON.stringify(echoed(req.headers['content-type'] ?? ''))}; use application/x-protobuf or application/json`);
      }
      const refused = handler.refusalBeforeReading();
      if (refused) {
        // Answered before the body is parsed; it is drained unread so the connection stays usable.
        req.resume();
        this.answer(res, handler, refused, encoding);
        return;
      }
      const body = await this.readBody(req);
      const outcome = await handler.export(body, encoding);
      this.answer(res, handler, outcome, encoding);
    } catch (err) {
      if (!(err instanceof HttpError)) throw err;
      // Unread request bodies would otherwise stall the keep-alive connection.
      if (!req.complete) req.resume();
      sendStatus(res, err.status, err.grpcCode, err.message, encoding, err.headers);
    }
  }

  private route(req: http.IncomingMessage): ExportHandler {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const signal: Signal | undefined =
      path === this.config.tracesUrlPath ? 'traces' : path === this.config.metricsUrlPath ? 'metrics' : undefined;
    if (!signal) {
      throw new HttpError(404, GRPC_CODE.NOT_FOUND, `unknown path ${echoed(path)}; OTLP/HTTP accepts POST ${this.config.tracesUrlPath} and ${this.config.metricsUrlPath}`);
    }
    if (req.method !== 'POST') {
      throw new HttpError(405, GRPC_CODE.INVALID_ARGUMENT, `method ${echoed(String(req.method))} is not allowed on ${path}; use POST`, { allow: 'POST' });
    }
    const handler = this.handlers.get(signal);
    if (!handler) throw new HttpError(404, GRPC_CODE.UNIMPLEMENTED, `no ${signal} pipeline uses this receiver`);
    return handler;
  }

  private async readBody(req: http.IncomingMessage): Promise<Uint8Array> {
    const limit = this.config.maxRequestBodySize;
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > limit) {
      throw new HttpError(413, GRPC_CODE.RESOURCE_EXHAUSTED, `request body of ${declared} bytes exceeds the limit of ${limit} bytes`);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > limit) {
        throw new HttpError(413, GRPC_CODE.RESOURCE_EXHAUSTED, `request body exceeds the limit of ${limit} bytes`);
      }
      chunks.push(chunk);
    }
    const raw = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
    return decompress(raw, String(req.headers['content-encoding'] ?? 'identity').trim().toLowerCase(), limit);
  }

  private answer(res: http.ServerResponse, handler: ExportHandler, outcome: ExportOutcome, encoding: BodyEncoding): void {
    switch (outcome.kind) {
      case 'ok':
        reply(res, 200, contentTypeOf(encoding), handler.responseBytes(outcome, encoding));
        return;
      case 'invalid':
        sendStatus(res, 400, GRPC_CODE.INVALID_ARGUMENT, outcome.message, encoding);
        return;
      case 'unavailable':
        sendStatus(res, 503, GRPC_CODE.UNAVAILABLE, outcome.message, encoding, {
          'retry-after': String(Math.max(1, Math.ceil(outcome.retryAfterMs / 1000))),
        });
        return;
      case 'unimplemented':
        sendStatus(res, 404, GRPC_CODE.UNIMPLEMENTED, outcome.message, encoding);
        return;
    }
  }
}

function decompress(raw: Buffer, contentEncoding: string, limit: number): Buffer {
  if (contentEncoding === 'identity' || contentEncoding === '') return raw;
  const options = { maxOutputLength: limit };
  try {
    if (contentEncoding === 'gzip') return zlib.gunzipSync(raw, options);
    if (contentEncoding === 'deflate') return zlib.inflateSync(raw, options);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ERR_BUFFER_TOO_LARGE' || (err as Error).message.includes('Cannot create a Buffer larger')) {
      throw new HttpError(413, GRPC_CODE.RESOURCE_EXHAUSTED, `decompressed request body exceeds the limit of ${limit} bytes`);
    }
    throw new HttpError(400, GRPC_CODE.INVALID_ARGUMENT, `invalid ${contentEncoding} body: ${(err as Error).message}`);
  }
  throw new HttpError(415, GRPC_CODE.INVALID_ARGUMENT, `unsupported Content-Encoding ${JSON.stringify(echoed(contentEncoding))}; use gzip, deflate or none`);
}

function bodyEncoding(contentType: string | undefined): BodyEncoding | undefined {
  const mediaType = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  if (mediaType === 'application/x-protobuf' || mediaType === 'application/protobuf') return 'protobuf';
  if (mediaType === 'application/json') return 'json';
  return undefined;
}

function contentTypeOf(encoding: BodyEncoding): string {
  return encoding === 'json' ? 'application/json' : 'application/x-protobuf';
}

/** An error body is a google.rpc.Status in the request's encoding; plain text when that is unknown. */
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
  if (encoding === undefined) {
    reply(res, status, 'text/plain; charset=utf-8', Buffer.from(`${message}\n`));
  } else if (encoding === 'json') {
    reply(res, status, 'application/json', Buffer.from(JSON.stringify({ code: grpcCode, message })));
  } else {
    reply(res, status, 'application/x-protobuf', types.Status.encode(types.Status.fromObject({ code: grpcCode, message })).finish());
  }
}

function reply(res: http.ServerResponse, status: number, contentType: string, body: Uint8Array): void {
  res.writeHead(status, { 'content-type': contentType, 'content-length': body.length });
  res.end(body);
}
