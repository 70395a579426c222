import { clientAuthenticator } from '../../component/auth';
import type { CreateSettings, ExporterFactory, Host } from '../../component/component';
import { PermanentError, RetryableError } from '../../component/errors';
import type { Node } from '../../config/reader';
import { parseHostPort } from '../../util/net';
import type { Batch } from '../../pdata/batch';
import { types } from '../../pdata/codec';
import { EXPORT_METHOD } from '../../pdata/otlp';
import type { PushSignal } from '../exporterhelper/attempt-signal';
import { RequestExporter } from '../exporterhelper/request-exporter';
import { GRPC_STATUS_NAMES, GrpcStatus } from '../../util/grpc';
import { GrpcUnaryClient, type GrpcClientOptions, type UnaryClient, type UnaryResult } from './grpc-client';
import { SpansieveGrpcClient } from './h2-grpc-client';
import { GRPC_COMPRESSIONS, OTLP_CLIENT_KEYS, clientAuthenticatorsOf, parseOtlpClientConfig, type OtlpClientConfig } from '../otlp-common';
import { loadZstd } from '../../util/compression';

export interface OtlpGrpcExporterConfig extends OtlpClientConfig {
  /** host:port of an OTLP/gRPC server (Jaeger, a Collector, another spansieve). */
  readonly endpoint: string;
  /** Which HTTP/2 client carries the calls: spansieve's own (src/util/h2) or node:http2. */
  readonly http2: Http2Client;
}

export const HTTP2_CLIENTS = ['spansieve', 'node'] as const;
export type Http2Client = (typeof HTTP2_CLIENTS)[number];
/** The default HTTP/2 client. */
export const DEFAULT_HTTP2_CLIENT: Http2Client = 'spansieve';

/** Headers HTTP/2 forbids (RFC 9113 8.2.2); node:http2 refuses to send them. */
const HTTP2_FORBIDDEN_HEADERS = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade']);

export function parseOtlpGrpcExporterConfig(node: Node): OtlpGrpcExporterConfig {
  const at = node.struct(['endpoint', 'http2', ...OTLP_CLIENT_KEYS]);
  const endpointNode = at('endpoint');
  if (endpointNode.isAbsent) endpointNode.report('required: host:port of the OTLP/gRPC server, e.g. 127.0.0.1:4317');
  // Accept the URL forms people paste from other tools, but dial host:port.
  const written = endpointNode.string('');
  const endpoint = written.replace(/^(?:https?|dns):\/\/\/?/, '');
  if (!endpointNode.isAbsent && !parseHostPort(endpoint)) {
    endpointNode.report(`expected host:port (e.g. 127.0.0.1:4317), got ${JSON.stringify(endpointNode.value)}`);
  }
  const client = parseOtlpClientConfig(at, GRPC_COMPRESSIONS);
  for (const name of Object.keys(client.headers)) {
    if (HTTP2_FORBIDDEN_HEADERS.has(name.toLowerCase()) || name.startsWith(':')) {
      at('headers').child(name).report('is a connection-level header, which HTTP/2 (and so gRPC) does not allow');
    }
  }
  // As in the Collector: an http:// endpoint means plaintext, whatever tls says.
  const http2 = at('http2').oneOf(DEFAULT_HTTP2_CLIENT, HTTP2_CLIENTS);
  return { endpoint, http2, ...client, tls: written.startsWith('http://') ? { ...client.tls, insecure: true } : client.tls };
}

/** gRPC status codes the OTLP spec lets a client retry (RESOURCE_EXHAUSTED only with RetryInfo). */
const RETRYABLE_CODES = new Set<number>([
  GrpcStatus.CANCELLED,
  GrpcStatus.DEADLINE_EXCEEDED,
  GrpcStatus.ABORTED,
  GrpcStatus.OUT_OF_RANGE,
  GrpcStatus.UNAVAILABLE,
  GrpcStatus.DATA_LOSS,
]);

export class OtlpGrpcExporter extends RequestExporter {
  private client: UnaryClient | undefined;
  private readonly metadata: Record<string, string> = {};

  constructor(
    private readonly settings: CreateSettings,
    private readonly config: OtlpGrpcExporterConfig,
  ) {
    super(settings, config.helper);
    for (const [name, value] of Object.entries(config.headers)) this.metadata[name.toLowerCase()] = value;
  }

  async start(host?: Host): Promise<void> {
    const tls = this.config.tls;
    const auth = this.config.auth === undefined ? undefined : clientAuthenticator(host, this.config.auth);
    if (auth && tls.insecure) {
      // gRPC-Go refuses per-call credentials without TLS; sent here, but said.
      this.settings.logger.warn({ endpoint: this.config.endpoint }, 'auth: the credentials go over a plaintext connection (tls.insecure); anyone on the path can read them');
    }
    const compression = this.config.compression;
    if (compression === 'zstd') await loadZstd();
    const options: GrpcClientOptions = {
      tls: tls.insecure ? undefined : tls.options,
      compression: compression === 'gzip' || compression === 'zstd' || compression === 'snappy' ? compression : undefined,
      metadata: this.metadata,
      ...(auth ? { authHeaders: () => auth.requestHeaders() } : {}),
    };
    this.client = this.config.http2 === 'node' ? new GrpcUnaryClient(this.config.endpoint, options) : new SpansieveGrpcClient(this.config.endpoint, options);
    await this.helper.start(host);
  }

  async shutdown(): Promise<void> {
    await this.helper.shutdown();
    this.client?.close();
  }

  protected async push(batch: Batch, signal: PushSignal): Promise<void> {
    const client = this.client;
    if (!client) throw new RetryableError('exporter not started');
    const result = await client.call(EXPORT_METHOD[batch.signal], batch.toRequestBytes(), signal, this.config.helper.timeout.timeoutMs);
    if (result.code !== GrpcStatus.OK) throw classify(result);
    if (result.responseError) this.settings.logger.warn({ err: result.responseError }, 'the server accepted the export but its response could not be read');
    this.logPartialSuccess(batch, result.response);
  }

  private logPartialSuccess(batch: Batch, response: Buffer | undefined): void {
    if (!response || response.length === 0) return;
    const type = batch.signal === 'traces' ? types.ExportTraceServiceResponse : types.ExportMetricsServiceResponse;
    let decoded: { partialSuccess?: { rejectedSpans?: number; rejectedDataPoints?: number; errorMessage?: string } };
    try {
      decoded = type.toObject(type.decode(response), { longs: Number });
    } catch (err) {
      // Accepted all the same: log, do not retry.
      this.settings.logger.warn({ err: (err as Error).message }, 'the server accepted the export but its response is not an Export response');
      return;
    }
    const rejected = decoded.partialSuccess?.rejectedSpans ?? decoded.partialSuccess?.rejectedDataPoints ?? 0;
    if (rejected > 0 || decoded.partialSuccess?.errorMessage) {
      this.settings.logger.warn({ rejected, message: decoded.partialSuccess?.errorMessage }, 'the server accepted the export only partially');
    }
  }
}

function classify(result: UnaryResult): Error {
  const message = `${GRPC_STATUS_NAMES[result.code] ?? result.code}: ${result.message}`;
  const retryAfterMs = retryInfoDelay(result.details);
  if (RETRYABLE_CODES.has(result.code)) return new RetryableError(message, retryAfterMs);
  if (result.code === GrpcStatus.RESOURCE_EXHAUSTED && retryAfterMs !== undefined) return new RetryableError(message, retryAfterMs);
  return new PermanentError(message);
}

/** The server-requested backoff from a google.rpc.RetryInfo in grpc-status-details-bin. */
export function retryInfoDelay(raw: Buffer | undefined): number | undefined {
  if (raw === undefined) return undefined;
  try {
    const status = types.Status.toObject(types.Status.decode(raw), { longs: Number }) as { details?: { typeUrl?: string; value?: Uint8Array }[] };
    for (const detail of status.details ?? []) {
      if (detail.typeUrl?.endsWith('google.rpc.RetryInfo') && detail.value) {
        const info = types.RetryInfo.toObject(types.RetryInfo.decode(detail.value), { longs: Number }) as {
          retryDelay?: { seconds?: number; nanos?: number };
        };
        return (info.retryDelay?.seconds ?? 0) * 1000 + Math.round((info.retryDelay?.nanos ?? 0) / 1e6);
      }
    }
  } catch {
    return undefined;
  }
  return undefined;
}

export const otlpExporterFactory: ExporterFactory<OtlpGrpcExporterConfig> = {
  type: 'otlp',
  kind: 'exporter',
  signals: ['traces', 'metrics'],
  parseConfig: parseOtlpGrpcExporterConfig,
  create: (settings, config) => new OtlpGrpcExporter(settings, config),
  authenticatorsOf: clientAuthenticatorsOf,
};
