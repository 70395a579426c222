import { clientAuthenticator, type ClientAuthenticator } from '../../component/auth';
import type { CreateSettings, ExporterFactory, Host } from '../../component/component';
import { PermanentError, RetryableError } from '../../component/errors';
import type { Node } from '../../config/reader';
import type { Batch, Signal } from '../../pdata/batch';
import { TooDeepError, toOtlpJson, types } from '../../pdata/codec';
import type { PushSignal } from '../exporterhelper/attempt-signal';
import { RequestExporter } from '../exporterhelper/request-exporter';
import { HttpPoster } from '../http-post';
import { compress, loadZstd, type Compression } from '../../util/compression';
import { HTTP_COMPRESSIONS, OTLP_CLIENT_KEYS, clientAuthenticatorsOf, parseHttpUrl, parseOtlpClientConfig, parseRetryAfter, type ClientCompression, type OtlpClientConfig } from '../otlp-common';

/** What each `compression` value sends (`zlib` and `deflate` are both the zlib format, as in confighttp). */
const BODY_COMPRESSION: Readonly<Record<Exclude<ClientCompression, 'none'>, Compression>> = {
  gzip: 'gzip',
  zstd: 'zstd',
  snappy: 'snappy',
  'x-snappy-framed': 'x-snappy-framed',
  zlib: 'deflate',
  deflate: 'deflate',
};
/** confighttp's default zstd speed is its fastest, zstd's level 1. */
const ZSTD_HTTP_DEFAULT_LEVEL = 1;

export interface OtlpHttpExporterConfig extends OtlpClientConfig {
  readonly urls: Readonly<Record<Signal, URL | undefined>>;
  readonly encoding: 'proto' | 'json';
  /** compression_params::level; undefined: the compression's default. */
  readonly compressionLevel: number | undefined;
}

/** compression_params::level, with confighttp's rules: 0 is the default; zlib levels for gzip, zlib, deflate; any for zstd; none for snappy. */
function parseCompressionLevel(node: Node, compression: ClientCompression): number | undefined {
  const level = node.struct(['level'])('level');
  const value = level.integer(0, -1000, 1000);
  if (value === 0) return compression === 'zstd' ? ZSTD_HTTP_DEFAULT_LEVEL : undefined;
  if (compression === 'gzip' || compression === 'zlib' || compression === 'deflate') {
    if (value >= -1 && value <= 9) return value;
    level.report(`must be -1 (default) or 1 (fastest) to 9 (smallest) for ${compression}, got ${value}`);
    return undefined;
  }
  // zstd's levels run from negative (fastest) to 22; out of range means the nearest.
  if (compression === 'zstd') return Math.max(-7, Math.min(22, value));
  level.report(`is not supported for compression ${compression}`);
  return undefined;
}

function parseUrl(node: Node, fallback: string | undefined): URL | undefined {
  return parseHttpUrl(node, 'http://127.0.0.1:4318', fallback);
}

export function parseOtlpHttpExporterConfig(node: Node): OtlpHttpExporterConfig {
  const at = node.struct(['endpoint', 'traces_endpoint', 'metrics_endpoint', 'encoding', 'compression_params', ...OTLP_CLIENT_KEYS]);
  const base = parseUrl(at('endpoint'), undefined);
  const under = (path: string) => (base ? new URL(base.pathname.replace(/\/$/, '') + path, base).toString() : undefined);
  const urls = {
    traces: parseUrl(at('traces_endpoint'), under('/v1/traces')),
    metrics: parseUrl(at('metrics_endpoint'), under('/v1/metrics')),
  };
  if (!urls.traces && !urls.metrics) at('endpoint').report('required: base URL of the OTLP/HTTP server, e.g. http://127.0.0.1:4318');
  const client = parseOtlpClientConfig(at, HTTP_COMPRESSIONS);
  const compressionLevel = parseCompressionLevel(at('compression_params'), client.compression);
  return { urls, encoding: at('encoding').oneOf<'proto' | 'json'>('proto', ['proto', 'json']), compressionLevel, ...client };
}

const RETRYABLE_STATUS = new Set([429, 502, 503, 504]);

export class OtlpHttpExporter extends RequestExporter {
  private readonly poster: HttpPoster;
  private auth: ClientAuthenticator | undefined;

  constructor(
    private readonly settings: CreateSettings,
    private readonly config: OtlpHttpExporterConfig,
  ) {
    super(settings, config.helper);
    this.poster = new HttpPoster(config.tls.options);
  }

  async start(host?: Host): Promise<void> {
    if (this.config.auth !== undefined) this.auth = clientAuthenticator(host, this.config.auth);
    if (this.config.compression === 'zstd') await loadZstd();
    await this.helper.start(host);
  }

  async shutdown(): Promise<void> {
    await this.helper.shutdown();
    this.poster.destroy();
  }

  protected async push(batch: Batch, signal: PushSignal): Promise<void> {
    const url = this.config.urls[batch.signal];
    if (!url) throw new PermanentError(`no ${batch.signal} URL is configured for ${this.settings.id}`);
    const json = this.config.encoding === 'json';
    const requestType = batch.signal === 'traces' ? types.ExportTraceServiceRequest : types.ExportMetricsServiceRequest;
    const raw = batch.toRequestBytes();
    let body: Buffer = json ? Buffer.from(jsonBody(requestType, raw)) : Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
    const headers: Record<string, string> = {
      ...this.config.headers,
      // Last, so they replace a configured header of the same name (as the Collector's auth does).
      ...this.auth?.requestHeaders(),
      'content-type': json ? 'application/json' : 'application/x-protobuf',
    };
    const compression = this.config.compression;
    if (compression !== 'none') {
      body = await compress(BODY_COMPRESSION[compression], body, this.config.compressionLevel);
      headers['content-encoding'] = compression;
    }
    const response = await this.poster.post(url, headers, body, signal.toAbortSignal());
    if (response.status >= 200 && response.status < 300) {
      this.logPartialSuccess(batch.signal, response.body, json);
      return;
    }
    const message = `HTTP ${response.status} from ${url.toString()}: ${describeBody(response.body, response.contentType)}`;
    if (RETRYABLE_STATUS.has(response.status)) throw new RetryableError(message, parseRetryAfter(response.retryAfter));
    throw new PermanentError(message);
  }

  private logPartialSuccess(signal: Signal, body: Buffer, json: boolean): void {
    if (body.length === 0) return;
    let partial: { rejectedSpans?: unknown; rejectedDataPoints?: unknown; errorMessage?: string } | undefined;
    try {
      if (json) {
        partial = (JSON.parse(body.toString('utf8')) as { partialSuccess?: typeof partial }).partialSuccess;
      } else {
        const type = signal === 'traces' ? types.ExportTraceServiceResponse : types.ExportMetricsServiceResponse;
        partial = (type.toObject(type.decode(body), { longs: Number }) as { partialSuccess?: typeof partial }).partialSuccess;
      }
    } catch {
      return;
    }
    const rejected = Number(partial?.rejectedSpans ?? partial?.rejectedDataPoints ?? 0);
    if (rejected > 0 || partial?.errorMessage) {
      this.settings.logger.warn({ rejected, message: partial?.errorMessage }, 'the server accepted the export only partially');
    }
  }
}

/** The message of a google.rpc.Status error body, or the body's text. */
function describeBody(body: Buffer, contentType: string): string {
  if (body.length === 0) return '(empty body)';
  try {
    if (contentType.includes('json')) return String((JSON.parse(body.toString('utf8')) as { message?: string }).message ?? body.toString('utf8'));
    if (contentType.includes('protobuf')) return String((types.Status.toObject(types.Status.decode(body)) as { message?: string }).message);
  } catch {
    // fall through to the raw text
  }
  return body.toString('utf8').slice(0, 500);
}

export const otlpHttpExporterFactory: ExporterFactory<OtlpHttpExporterConfig> = {
  type: 'otlphttp',
  kind: 'exporter',
  signals: ['traces', 'metrics'],
  parseConfig: parseOtlpHttpExporterConfig,
  cannotExport: (config, signal) =>
    config.urls[signal] ? undefined : `no URL for it (set endpoint, or ${signal === 'traces' ? 'traces_endpoint' : 'metrics_endpoint'})`,
  create: (settings, config) => new OtlpHttpExporter(settings, config),
  authenticatorsOf: clientAuthenticatorsOf,
};

/** The request as OTLP/JSON; one too deep to render can never be sent: a permanent failure. */
function jsonBody(type: typeof types.ExportTraceServiceRequest, raw: Uint8Array): string {
  try {
    return toOtlpJson(type, raw);
  } catch (err) {
    if (err instanceof TooDeepError) throw new PermanentError(`cannot encode as OTLP/JSON: ${err.message}`);
    throw err;
  }
}
