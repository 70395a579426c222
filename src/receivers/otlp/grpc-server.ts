import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { Signal } from '../../pdata/batch';
import { types } from '../../pdata/codec';
import type { ExportHandler } from './export-handler';

export interface GrpcProtocolConfig {
  readonly endpoint: string;
  readonly maxRecvMsgSizeMiB: number;
}

export const EXPORT_METHOD: Record<Signal, string> = {
  traces: '/opentelemetry.proto.collector.trace.v1.TraceService/Export',
  metrics: '/opentelemetry.proto.collector.metrics.v1.MetricsService/Export',
};

const passThrough = (value: Buffer): Buffer => value;

/** A unary method whose request stays raw bytes, so the receiver can scan it without decoding. */
export function rawExportMethod(signal: Signal): grpc.MethodDefinition<Buffer, Buffer> {
  return {
    path: EXPORT_METHOD[signal],
    requestStream: false,
    responseStream: false,
    requestSerialize: passThrough,
    requestDeserialize: passThrough,
    responseSerialize: passThrough,
    responseDeserialize: passThrough,
  };
}

/** OTLP/gRPC: TraceService/Export and MetricsService/Export for the signals that have pipelines. */
export class OtlpGrpcServer {
  private server: grpc.Server | undefined;
  private boundPort = 0;

  constructor(
    private readonly config: GrpcProtocolConfig,
    private readonly handlers: ReadonlyMap<Signal, ExportHandler>,
    private readonly logger: Logger,
  ) {}

  get port(): number {
    return this.boundPort;
  }

  async start(): Promise<void> {
    const server = new grpc.Server({
      'grpc.max_receive_message_length': Math.floor(this.config.maxRecvMsgSizeMiB * 1024 * 1024),
    });
    for (const [signal, handler] of this.handlers) {
      const method = rawExportMethod(signal);
      server.register(method.path, this.unaryHandler(handler), method.responseSerialize, method.requestDeserialize, 'unary');
    }
    this.boundPort = await new Promise<number>((resolve, reject) => {
      server.bindAsync(this.config.endpoint, grpc.ServerCredentials.createInsecure(), (err, port) => {
        if (err) reject(new Error(`cannot listen on ${this.config.endpoint}: ${err.message}`));
        else resolve(port);
      });
    });
    this.server = server;
  }

  async shutdown(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    // Let in-flight calls finish; new ones are refused from now on.
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => {
        server.forceShutdown();
        resolve();
      }, 10_000);
      server.tryShutdown(() => {
        clearTimeout(force);
        resolve();
      });
    });
  }

  private unaryHandler(handler: ExportHandler): grpc.handleUnaryCall<Buffer, Buffer> {
    return (call, callback) => {
      const reply = (err: Partial<grpc.StatusObject> | null, value?: Buffer) => callback(err, value);
      handler.export(call.request, 'protobuf').then(
        (outcome) => {
          switch (outcome.kind) {
            case 'ok':
              reply(null, handler.responseBytes(outcome, 'protobuf'));
              return;
            case 'invalid':
              reply({ code: grpc.status.INVALID_ARGUMENT, details: outcome.message });
              return;
            case 'unimplemented':
              reply({ code: grpc.status.UNIMPLEMENTED, details: outcome.message });
              return;
            case 'unavailable':
              reply({ code: grpc.status.UNAVAILABLE, details: outcome.message, metadata: retryInfoMetadata(outcome.message, outcome.retryAfterMs) });
              return;
          }
        },
        (err: unknown) => {
          this.logger.error({ err }, 'unexpected error handling an OTLP/gRPC request');
          reply({ code: grpc.status.INTERNAL, details: 'internal error' });
        },
      );
    };
  }
}

/** grpc-status-details-bin carrying a RetryInfo, so clients know how long to back off. */
function retryInfoMetadata(message: string, retryAfterMs: number): grpc.Metadata {
  const seconds = Math.floor(retryAfterMs / 1000);
  const retryInfo = types.RetryInfo.encode(
    types.RetryInfo.fromObject({ retryDelay: { seconds, nanos: (retryAfterMs % 1000) * 1e6 } }),
  ).finish();
  const status = types.Status.encode(
    types.Status.fromObject({
      code: grpc.status.UNAVAILABLE,
      message,
      details: [{ typeUrl: 'type.googleapis.com/google.rpc.RetryInfo', value: retryInfo }],
    }),
  ).finish();
  const metadata = new grpc.Metadata();
  metadata.set('grpc-status-details-bin', Buffer.from(status));
  return metadata;
}
