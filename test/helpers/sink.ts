import * as grpc from '@grpc/grpc-js';
import * as http from 'node:http';
import * as zlib from 'node:zlib';
import { types } from '../../src/pdata/codec';
import { decompressSync, type Compression } from '../../src/util/compression';
import { EXPORT_METHOD } from '../../src/pdata/otlp';
import { rawExportMethod } from './grpc';

// A downstream OTLP server for exporter tests: records every request's raw bytes and can be told
// to fail. (Where a real peer exists for the test's purpose - Jaeger - the tests use that instead.)

export interface ReceivedRequest {
  readonly signal: 'traces' | 'metrics';
  readonly body: Buffer;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly at: number;
  /** HttpSink: the request's path (an exporter's endpoint may carry a prefix before /v1/...). */
  readonly path?: string;
}

export type SinkReply =
  | { kind: 'ok' }
  | { kind: 'grpc-error'; code: grpc.status; message: string; retryAfterMs?: number }
  | { kind: 'http-error'; status: number; message: string; retryAfter?: string }
  | { kind: 'hang' };

abstract class Sink {
  readonly requests: ReceivedRequest[] = [];
  /** Consulted per request; the default accepts everything. */
  reply: (request: ReceivedRequest, index: number) => SinkReply = () => ({ kind: 'ok' });

  /** Decodes every received request's ResourceSpans as plain objects (camelCase, base64 bytes, long strings). */
  resourceSpans(): Record<string, unknown>[] {
    return this.requests
      .filter((r) => r.signal === 'traces')
      .flatMap((r) => {
        const message = types.ExportTraceServiceRequest.toObject(types.ExportTraceServiceRequest.decode(r.body), { longs: String, bytes: String }) as {
          resourceSpans?: Record<string, unknown>[];
        };
        return message.resourceSpans ?? [];
      });
  }

  instanceIds(): string[] {
    return this.resourceSpans().map((rs) => {
      const attributes = ((rs.resource as { attributes?: { key: string; value: { stringValue?: string } }[] } | undefined)?.attributes ?? []);
      return attributes.find((a) => a.key === 'service.instance.id')?.value.stringValue ?? '';
    });
  }

  spanCount(): number {
    return this.resourceSpans().reduce(
      (n, rs) => n + ((rs.scopeSpans as { spans?: unknown[] }[] | undefined) ?? []).reduce((m, ss) => m + (ss.spans?.length ?? 0), 0),
      0,
    );
  }
}

export class GrpcSink extends Sink {
  private server: grpc.Server | undefined;
  port = 0;

  /** Listens on `port` (0: any free one). */
  async start(port = 0): Promise<void> {
    const server = new grpc.Server({ 'grpc.max_receive_message_length': 64 * 1024 * 1024 });
    for (const signal of ['traces', 'metrics'] as const) {
      const method = rawExportMethod(signal);
      server.register(
        EXPORT_METHOD[signal],
        (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
          const request: ReceivedRequest = { signal, body: call.request, headers: call.metadata.getMap() as Record<string, string>, at: Date.now() };
          const index = this.requests.length;
          this.requests.push(request);
          const reply = this.reply(request, index);
          if (reply.kind === 'hang') return;
          if (reply.kind === 'grpc-error') {
            const metadata = new grpc.Metadata();
            if (reply.retryAfterMs !== undefined) {
              const retryInfo = types.RetryInfo.encode(
                types.RetryInfo.fromObject({ retryDelay: { seconds: Math.floor(reply.retryAfterMs / 1000), nanos: (reply.retryAfterMs % 1000) * 1e6 } }),
              ).finish();
              const status = types.Status.encode(
                types.Status.fromObject({ code: reply.code, message: reply.message, details: [{ typeUrl: 'type.googleapis.com/google.rpc.RetryInfo', value: retryInfo }] }),
              ).finish();
              metadata.set('grpc-status-details-bin', Buffer.from(status));
            }
            callback({ code: reply.code, details: reply.message, metadata });
            return;
          }
          callback(null, Buffer.alloc(0));
        },
        method.responseSerialize,
        method.requestDeserialize,
        'unary',
      );
    }
    this.port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))),
    );
    this.server = server;
  }

  async stop(): Promise<void> {
    this.server?.forceShutdown();
  }
}

export class HttpSink extends Sink {
  private server: http.Server | undefined;
  port = 0;

  async start(): Promise<void> {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        let body: Buffer = Buffer.concat(chunks);
        const encoding = req.headers['content-encoding'];
        if (encoding === 'gzip') body = zlib.gunzipSync(body);
        else if (encoding) body = decompressSync(encoding === 'zlib' ? 'deflate' : (encoding as Compression), body, 64 << 20);
        const signal = (req.url ?? '').endsWith('/v1/metrics') ? 'metrics' : 'traces';
        if (req.headers['content-type'] === 'application/json') {
          // Keep JSON bodies as JSON text; tests that use JSON read `body` themselves.
        }
        const request: ReceivedRequest = { signal, body, headers: req.headers, at: Date.now(), path: req.url };
        const index = this.requests.length;
        this.requests.push(request);
        const reply = this.reply(request, index);
        if (reply.kind === 'hang') return;
        if (reply.kind === 'http-error') {
          const headers: Record<string, string> = { 'content-type': 'application/json' };
          if (reply.retryAfter) headers['retry-after'] = reply.retryAfter;
          res.writeHead(reply.status, headers).end(JSON.stringify({ code: 14, message: reply.message }));
          return;
        }
        res.writeHead(200, { 'content-type': String(req.headers['content-type'] ?? 'application/x-protobuf') }).end(
          req.headers['content-type'] === 'application/json' ? '{}' : Buffer.alloc(0),
        );
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', () => resolve()));
    this.port = (this.server.address() as { port: number }).port;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()) ?? resolve());
  }
}
