import { parseAuth, serverAuthenticator, type AuthenticatorRef } from '../../component/auth';
import type { Component, Consumer, CreateSettings, Host, ReceiverFactory } from '../../component/component';
import type { Node } from '../../config/reader';
import type { Signal } from '../../pdata/batch';
import { ExportHandler } from './export-handler';
import { OtlpGrpcServer } from './grpc-server';
import { OtlpGrpcH2Server } from './grpc-server-h2';
import type { GrpcHttp2Layer, GrpcProtocolConfig, GrpcServer } from './grpc-call';
import { DEFAULT_HTTP1, HTTP_CONTENT_ENCODINGS, type Http1Layer, type HttpProtocolConfig } from './http-flow';
import { OtlpHttpServer } from './http-server';
import { OtlpHttp1Server } from './http-server-h1';
import { parseServerTls } from '../../config/tls';
import { InflightBytes, type ServerCounters } from './inflight';

export interface OtlpReceiverConfig {
  readonly grpc: GrpcProtocolConfig | undefined;
  readonly http: HttpProtocolConfig | undefined;
  /** Cap on request bytes being received at once over both protocols; 0: none. */
  readonly maxInflightBytes: number;
}

export const DEFAULT_MAX_INFLIGHT_BYTES = 256 * 1024 * 1024;

/** `protocols::grpc::http2`: the HTTP/2 layer under the gRPC port. */
export const DEFAULT_GRPC_HTTP2: GrpcHttp2Layer = 'spansieve';

export const DEFAULT_GRPC_ENDPOINT = '127.0.0.1:4317';
export const DEFAULT_HTTP_ENDPOINT = '127.0.0.1:4318';

function parseGrpc(node: Node): GrpcProtocolConfig {
  const at = node.struct(['endpoint', 'max_recv_msg_size_mib', 'max_concurrent_streams', 'read_timeout', 'handshake_timeout', 'keepalive', 'tls', 'auth', 'http2']);
  const keepalive = at('keepalive');
  const ka = keepalive.struct(['server_parameters', 'enforcement_policy']);
  const sp = ka('server_parameters').struct(['max_connection_idle', 'max_connection_age', 'max_connection_age_grace', 'time', 'timeout']);
  const ep = ka('enforcement_policy').struct(['min_time', 'permit_without_stream']);
  return {
    endpoint: at('endpoint').endpoint(DEFAULT_GRPC_ENDPOINT),
    maxRecvMsgSizeMiB: at('max_recv_msg_size_mib').number(4, 0.001, 2048),
    maxConcurrentStreams: at('max_concurrent_streams').integer(0, 0, 2 ** 31 - 1),
    readTimeoutMs: at('read_timeout').duration(60_000),
    handshakeTimeoutMs: at('handshake_timeout').duration(5_000),
    keepalive: {
      maxConnectionIdleMs: sp('max_connection_idle').duration(60_000),
      maxConnectionAgeMs: sp('max_connection_age').duration(0),
      maxConnectionAgeGraceMs: sp('max_connection_age_grace').duration(0),
      timeMs: sp('time').duration(2 * 3_600_000),
      timeoutMs: sp('timeout').duration(20_000),
      minTimeMs: ep('min_time').duration(5 * 60_000),
      permitWithoutStream: ep('permit_without_stream').boolean(false),
    },
    tls: parseServerTls(at('tls')),
    auth: parseAuth(at('auth')),
    http2: at('http2').oneOf<GrpcHttp2Layer>(DEFAULT_GRPC_HTTP2, ['spansieve', 'node']),
  };
}

function parseHttp(node: Node): HttpProtocolConfig {
  const at = node.struct([
    'endpoint',
    'max_request_body_size',
    'traces_url_path',
    'metrics_url_path',
    'read_header_timeout',
    'read_timeout',
    'write_timeout',
    'idle_timeout',
    'max_connections',
    'compression_algorithms',
    'tls',
    'auth',
    'http1',
  ]);
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
    readHeaderTimeoutMs: at('read_header_timeout').duration(60_000),
    readTimeoutMs: at('read_timeout').duration(60_000),
    writeTimeoutMs: at('write_timeout').duration(30_000),
    idleTimeoutMs: at('idle_timeout').duration(60_000),
    maxConnections: at('max_connections').integer(0, 0),
    compressionAlgorithms: parseCompressionAlgorithms(at('compression_algorithms')),
    tls: parseServerTls(at('tls')),
    auth: parseAuth(at('auth'), ['request_params']),
    requestParams: at('auth').child('request_params').list().map((n) => n.string('')).filter((name) => name !== ''),
    http1: at('http1').oneOf<Http1Layer>(DEFAULT_HTTP1, ['spansieve', 'node']),
  };
}

/** confighttp's compression_algorithms: the Content-Encoding values accepted, "" for none. */
function parseCompressionAlgorithms(node: Node): ReadonlySet<string> {
  if (node.isAbsent) return new Set(HTTP_CONTENT_ENCODINGS);
  const accepted = new Set<string>();
  for (const item of node.list()) {
    const name = item.string('').trim().toLowerCase();
    if (HTTP_CONTENT_ENCODINGS.includes(name)) accepted.add(name);
    else if (name === 'lz4') item.report('lz4 is not supported');
    else item.report(`must be one of ${HTTP_CONTENT_ENCODINGS.map((e) => JSON.stringify(e)).join(', ')}, got ${JSON.stringify(name)}`);
  }
  return accepted;
}

export function parseOtlpReceiverConfig(node: Node): OtlpReceiverConfig {
  const fields = node.object(['protocols', 'max_inflight_bytes']);
  const maxInflightBytes = node.child('max_inflight_bytes').integer(DEFAULT_MAX_INFLIGHT_BYTES, 0);
  if (!fields.protocols || fields.protocols.isAbsent) {
    // No protocols listed: both, on their defaults.
    return { grpc: parseGrpc(node.child('protocols').child('grpc')), http: parseHttp(node.child('protocols').child('http')), maxInflightBytes };
  }
  const protocols = fields.protocols.object(['grpc', 'http']);
  if (!('grpc' in protocols) && !('http' in protocols)) fields.protocols.report('enable at least one of grpc, http');
  return {
    grpc: 'grpc' in protocols ? parseGrpc(protocols.grpc) : undefined,
    http: 'http' in protocols ? parseHttp(protocols.http) : undefined,
    maxInflightBytes,
  };
}

export class OtlpReceiver implements Component {
  readonly grpcServer: GrpcServer | undefined;
  readonly httpServer: OtlpHttpServer | OtlpHttp1Server | undefined;

  constructor(
    settings: CreateSettings,
    private readonly config: OtlpReceiverConfig,
    next: ReadonlyMap<Signal, Consumer>,
  ) {
    const handlersFor = (transport: 'grpc' | 'http') =>
      new Map([...next].map(([signal, consumer]) => [signal, new ExportHandler(settings, transport, signal, consumer)] as const));
    const telemetry = settings.telemetry;
    const gauge = telemetry.gauge('otelcol_receiver_otlp_inflight_bytes', 'Request bytes being received at once, counted against max_inflight_bytes', { receiver: settings.id });
    gauge.set(0);
    const inflight = new InflightBytes(config.maxInflightBytes, (bytes) => gauge.set(bytes));
    const countersFor = (transport: 'grpc' | 'http'): ServerCounters => {
      const labels = { receiver: settings.id, transport };
      const help = 'Connections closed at once because a limit was reached';
      const byReason = {
        max_connections: telemetry.counter('otelcol_receiver_otlp_refused_connections', help, { ...labels, reason: 'max_connections' }),
        fd_limit: telemetry.counter('otelcol_receiver_otlp_refused_connections', help, { ...labels, reason: 'fd_limit' }),
      };
      const inflightRefused = telemetry.counter('otelcol_receiver_otlp_inflight_refused_requests', 'Requests refused because they would pass max_inflight_bytes', labels);
      const unauthenticated = telemetry.counter('otelcol_receiver_otlp_unauthenticated_requests', 'Requests refused by the auth authenticator, before their body was read', labels);
      return {
        connectionRefused: (reason) => byReason[reason].inc(1),
        inflightRefused: () => inflightRefused.inc(1),
        unauthenticated: () => unauthenticated.inc(1),
      };
    };
    const grpc = config.grpc;
    this.grpcServer = grpc
      ? new (grpc.http2 === 'node' ? OtlpGrpcServer : OtlpGrpcH2Server)(grpc, handlersFor('grpc'), settings.logger, inflight, countersFor('grpc'))
      : undefined;
    const http = config.http;
    this.httpServer = http
      ? new ((http.http1 ?? DEFAULT_HTTP1) === 'node' ? OtlpHttpServer : OtlpHttp1Server)(http, handlersFor('http'), settings.logger, inflight, countersFor('http'))
      : undefined;
  }

  async start(host?: Host): Promise<void> {
    // Resolved before either server listens: a missing authenticator fails the start, nothing is served unchecked.
    const grpcId = this.config.grpc?.auth;
    const httpId = this.config.http?.auth;
    const grpcAuth = grpcId === undefined ? undefined : serverAuthenticator(host, grpcId);
    const httpAuth = httpId === undefined ? undefined : serverAuthenticator(host, httpId);
    await this.grpcServer?.start(grpcAuth);
    await this.httpServer?.start(httpAuth);
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
  authenticatorsOf: (config) => {
    const refs: AuthenticatorRef[] = [];
    if (config.grpc?.auth !== undefined) refs.push({ key: 'protocols::grpc::auth::authenticator', id: config.grpc.auth });
    if (config.http?.auth !== undefined) refs.push({ key: 'protocols::http::auth::authenticator', id: config.http.auth });
    return refs;
  },
};
