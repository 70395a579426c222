import * as grpc from '@grpc/grpc-js';
import type { Component, Consumer, CreateSettings, ExporterFactory } from '../../component/component';
import { PermanentError, RetryableError } from '../../component/errors';
import { parseHostPort, type Node } from '../../config/reader';
import type { Batch } from '../../pdata/batch';
import { types } from '../../pdata/codec';
import { EXPORT_METHOD } from '../../receivers/otlp/grpc-server';
import { ExporterHelper } from '../exporterhelper/exporterhelper';
import { OTLP_CLIENT_KEYS, parseOtlpClientConfig, type OtlpClientConfig } from '../otlp-common';

export interface OtlpGrpcExporterConfig extends OtlpClientConfig {
  /** host:port of an OTLP/gRPC server (Jaeger, a Collector, another spansieve). */
  readonly endpoint: string;
}

export function parseOtlpGrpcExporterConfig(node: Node): OtlpGrpcExporterConfig {
  const at = node.struct(['endpoint', ...OTLP_CLIENT_KEYS]);
  const endpointNode = at('endpoint');
  if (endpointNode.isAbsent) endpointNode.report('required: host:port of the OTLP/gRPC server, e.g. 127.0.0.1:4317');
  // Accept the URL forms people paste from other tools, but dial host:port.
  const written = endpointNode.string('');
  const endpoint = written.replace(/^(?:https?|dns):\/\/\/?/, '');
  if (!endpointNode.isAbsent && !parseHostPort(endpoint)) {
    endpointNode.report(`expected host:port (e.g. 127.0.0.1:4317), got ${JSON.stringify(endpointNode.value)}`);
  }
  const client = parseOtlpClientConfig(at);
  // As in the Collector: an http:// endpoint means plaintext, whatever tls says.
  return { endpoint, ...client, tls: written.startsWith('http://') ? { ...client.tls, insecure: true } : client.tls };
}

/** gRPC status codes the OTLP spec lets a client retry (RESOURCE_EXHAUSTED only with RetryInfo). */
const RETRYABLE_CODES = new Set([
  grpc.status.CANCELLED,
  grpc.status.DEADLINE_EXCEEDED,
  grpc.status.ABORTED,
  grpc.status.OUT_OF_RANGE,
  grpc.status.UNAVAILABLE,
  grpc.status.DATA_LOSS,
]);

const passThrough = (value: Buffer): Buffer => value;

export class OtlpGrpcExporter implements Component, Consumer {
  private readonly helper: ExporterHelper;
  private client: grpc.Client | undefined;
  private readonly metadata = new grpc.Metadata();

  constructor(
    private readonly settings: CreateSettings,
    private readonly config: OtlpGrpcExporterConfig,
  ) {
    for (const [name, value] of Object.entries(config.headers)) this.metadata.set(name.toLowerCase(), value);
    this.helper = new ExporterHelper(settings, config.helper, (batch, signal) => this.push(batch, signal));
  }

  async start(): Promise<void> {
    const tls = this.config.tls;
    const credentials = tls.insecure
      ? grpc.credentials.createInsecure()
      : grpc.credentials.createSsl(tls.caPem ?? null, null, null, tls.insecureSkipVerify ? { checkServerIdentity: () => undefined, rejectUnauthorized: false } : undefined);
    this.client = new grpc.Client(this.config.endpoint, credentials, {
      // grpc-js: 2 = gzip, 0 = identity.
      'grpc.default_compression_algorithm': this.config.compression === 'gzip' ? 2 : 0,
      'grpc.max_send_message_length': -1,
    });
    await this.helper.start();
  }

  consume(batch: Batch): Promise<void> {
    return this.helper.consume(batch);
  }

  async shutdown(): Promise<void> {
    await this.helper.shutdown();
    this.client?.close();
  }

  private push(batch: Batch, signal: AbortSignal): Promise<void> {
    const client = this.client;
    if (!client) return Promise.reject(new RetryableError('exporter not started'));
    const body = batch.toRequestBytes();
    return new Promise<void>((resolve, reject) => {
      const call = client.makeUnaryRequest<Buffer, Buffer>(
        EXPORT_METHOD[batch.signal],
        passThrough,
        passThrough,
        body,
        this.metadata,
        {},
        (err, response) => {
          signal.removeEventListener('abort', onAbort);
          if (err) {
            reject(classify(err));
            return;
          }
          this.logPartialSuccess(batch, response);
          resolve();
        },
      );
      const onAbort = () => call.cancel();
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  private logPartialSuccess(batch: Batch, response: Buffer | undefined): void {
    if (!response || response.length === 0) return;
    const type = batch.signal === 'traces' ? types.ExportTraceServiceResponse : types.ExportMetricsServiceResponse;
    const decoded = type.toObject(type.decode(response), { longs: Number }) as {
      partialSuccess?: { rejectedSpans?: number; rejectedDataPoints?: number; errorMessage?: string };
    };
    const rejected = decoded.partialSuccess?.rejectedSpans ?? decoded.partialSuccess?.rejectedDataPoints ?? 0;
    if (rejected > 0 || decoded.partialSuccess?.errorMessage) {
      this.settings.logger.warn({ rejected, message: decoded.partialSuccess?.errorMessage }, 'the server accepted the export only partially');
    }
  }
}

function classify(err: grpc.ServiceError): Error {
  const message = `${grpc.status[err.code] ?? err.code}: ${err.details || err.message}`;
  const retryAfterMs = retryInfoDelay(err.metadata);
  if (RETRYABLE_CODES.has(err.code)) return new RetryableError(message, retryAfterMs);
  if (err.code === grpc.status.RESOURCE_EXHAUSTED && retryAfterMs !== undefined) return new RetryableError(message, retryAfterMs);
  return new PermanentError(message);
}

/** The server-requested backoff from a google.rpc.RetryInfo in grpc-status-details-bin. */
export function retryInfoDelay(metadata: grpc.Metadata | undefined): number | undefined {
  const raw = metadata?.get('grpc-status-details-bin')[0];
  if (!(raw instanceof Buffer)) return undefined;
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
};
