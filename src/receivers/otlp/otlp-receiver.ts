import type { Component, Consumer, CreateSettings, ReceiverFactory } from '../../component/component';
import type { Node } from '../../config/reader';
import type { Signal } from '../../pdata/batch';
import { ExportHandler } from './export-handler';
import { OtlpGrpcServer, type GrpcProtocolConfig } from './grpc-server';
import { OtlpHttpServer, type HttpProtocolConfig } from './http-server';

export interface OtlpReceiverConfig {
  readonly grpc: GrpcProtocolConfig | undefined;
  readonly http: HttpProtocolConfig | undefined;
}

export const DEFAULT_GRPC_ENDPOINT = '127.0.0.1:4317';
export const DEFAULT_HTTP_ENDPOINT = '127.0.0.1:4318';

function parseGrpc(node: Node): GrpcProtocolConfig {
  const at = node.struct(['endpoint', 'max_recv_msg_size_mib']);
  return {
    endpoint: at('endpoint').endpoint(DEFAULT_GRPC_ENDPOINT),
    maxRecvMsgSizeMiB: at('max_recv_msg_size_mib').number(4, 0.001, 2048),
  };
}

function parseHttp(node: Node): HttpProtocolConfig {
  const at = node.struct(['endpoint', 'max_request_body_size', 'traces_url_path', 'metrics_url_path']);
  const path = (key: string, fallback: string) => {
    const n = at(key);
    const value = n.string(fallback);
    if (!value.startsWith('/')) n.report(`must start with "/", got ${JSON.stringify(value)}`);
    return value;
  };
  return {
    endpoint: at('endpoint').endpoint(DEFAULT_HTTP_ENDPOINT),
    maxRequestBodySize: at('max_request_body_size').integer(20 * 1024 * 1024, 1),
    tracesUrlPath: path('traces_url_path', '/v1/traces'),
    metricsUrlPath: path('metrics_url_path', '/v1/metrics'),
  };
}

export function parseOtlpReceiverConfig(node: Node): OtlpReceiverConfig {
  const fields = node.object(['protocols']);
  if (!fields.protocols || fields.protocols.isAbsent) {
    // No protocols listed: both, on their defaults.
    return { grpc: parseGrpc(node.child('protocols').child('grpc')), http: parseHttp(node.child('protocols').child('http')) };
  }
  const protocols = fields.protocols.object(['grpc', 'http']);
  if (!('grpc' in protocols) && !('http' in protocols)) fields.protocols.report('enable at least one of grpc, http');
  return {
    grpc: 'grpc' in protocols ? parseGrpc(protocols.grpc) : undefined,
    http: 'http' in protocols ? parseHttp(protocols.http) : undefined,
  };
}

export class OtlpReceiver implements Component {
  readonly grpcServer: OtlpGrpcServer | undefined;
  readonly httpServer: OtlpHttpServer | undefined;

  constructor(settings: CreateSettings, config: OtlpReceiverConfig, next: ReadonlyMap<Signal, Consumer>) {
    const handlersFor = (transport: 'grpc' | 'http') =>
      new Map([...next].map(([signal, consumer]) => [signal, new ExportHandler(settings, transport, signal, consumer)] as const));
    this.grpcServer = config.grpc ? new OtlpGrpcServer(config.grpc, handlersFor('grpc'), settings.logger) : undefined;
    this.httpServer = config.http ? new OtlpHttpServer(config.http, handlersFor('http'), settings.logger) : undefined;
  }

  async start(): Promise<void> {
    await this.grpcServer?.start();
    await this.httpServer?.start();
  }

  async shutdown(): Promise<void> {
    await Promise.all([this.grpcServer?.shutdown(), this.httpServer?.shutdown()]);
  }
}

export const otlpReceiverFactory: ReceiverFactory<OtlpReceiverConfig> = {
  type: 'otlp',
  kind: 'receiver',
  signals: ['traces', 'metrics'],
  parseConfig: parseOtlpReceiverConfig,
  create: (settings, config, next) => new OtlpReceiver(settings, config, next),
};
