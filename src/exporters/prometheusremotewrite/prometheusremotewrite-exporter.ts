import * as http from 'node:http';
import * as https from 'node:https';
import { compress } from 'snappyjs';
import { clientAuthenticator, parseAuth, type ClientAuthenticator } from '../../component/auth';
import type { Component, Consumer, CreateSettings, ExporterFactory, Host, QueueAbandon } from '../../component/component';
import { PermanentError, RetryableError } from '../../component/errors';
import type { Node } from '../../config/reader';
import type { Batch } from '../../pdata/batch';
import { encodeRepeatedField } from '../../pdata/wire';
import { protobufjs } from '../../util/lazy-modules';
import { ExporterHelper, HELPER_KEYS, parseHelperConfig, type HelperConfig } from '../exporterhelper/exporterhelper';
import { clientAuthenticatorsOf, parseHttpUrl, readCaFile } from '../otlp-common';
import { parseRetryAfter } from '../otlphttp/otlphttp-exporter';
import { Accumulator, samplesOf, type Series } from '../prometheus/accumulator';
import { parseLabelMap } from '../prometheus/prometheus-exporter';
import { normalizeNamespace, type LabelPairs } from '../prometheus/translation';

// Pushes metrics to a Prometheus remote-write 1.0 endpoint (Prometheus's own receiver with
// --web.enable-remote-write-receiver, Mimir, Thanos receive, ...): the same OTel -> Prometheus
// translation as the prometheus exporter, each batch's series encoded as a WriteRequest
// protobuf, compressed with snappy's block format, POSTed with the headers the protocol requires.
// Timeout, retry and the sending queue are the shared ExporterHelper's.

export interface RemoteWriteConfig {
  readonly endpoint: URL | undefined;
  readonly headers: Readonly<Record<string, string>>;
  readonly tls: { readonly caPem: Buffer | undefined; readonly insecureSkipVerify: boolean };
  readonly namespace: string;
  readonly externalLabels: LabelPairs;
  readonly resourceToTelemetry: boolean;
  readonly addMetricSuffixes: boolean;
  readonly targetInfo: boolean;
  readonly maxBatchSizeBytes: number;
  readonly helper: HelperConfig;
  /** Id of the client authenticator extension whose headers every request carries; undefined: none. */
  readonly auth: string | undefined;
}

/** Delta and target_info state of series not seen for this long is forgotten. */
export const STATE_EXPIRATION_MS = 15 * 60_000;

export function parseRemoteWriteConfig(node: Node): RemoteWriteConfig {
  const at = node.struct([
    'endpoint',
    'headers',
    'tls',
    'namespace',
    'external_labels',
    'resource_to_telemetry_conversion',
    'add_metric_suffixes',
    'target_info',
    'max_batch_size_bytes',
    'auth',
    ...HELPER_KEYS,
  ]);
  const example = 'http://127.0.0.1:9090/api/v1/write';
  if (at('endpoint').isAbsent || at('endpoint').value === '') at('endpoint').report(`required: the remote-write URL, e.g. ${example}`);
  const endpoint = parseHttpUrl(at('endpoint'), example);
  const tls = at('tls').struct(['ca_file', 'insecure_skip_verify']);
  const caPem = readCaFile(tls('ca_file'));
  const helper = parseHelperConfig(at);
  if (helper.queue.storage !== undefined) {
    // Its queued requests are tied to the exporter's series state (ordering per series); not persisted yet.
    at('sending_queue').child('storage').report('is not supported by prometheusremotewrite yet (only otlp and otlphttp have a persistent queue)');
  }
  // Remote write needs each series' samples in time order: one sender unless told otherwise.
  const oneConsumer = at('sending_queue').child('num_consumers').isAbsent;
  return {
    endpoint,
    headers: at('headers').stringMap(),
    tls: { caPem, insecureSkipVerify: tls('insecure_skip_verify').boolean(false) },
    namespace: normalizeNamespace(at('namespace').string('')),
    externalLabels: parseLabelMap(at('external_labels')),
    resourceToTelemetry: at('resource_to_telemetry_conversion').struct(['enabled'])('enabled').boolean(false),
    addMetricSuffixes: at('add_metric_suffixes').boolean(true),
    targetInfo: at('target_info').struct(['enabled'])('enabled').boolean(true),
    maxBatchSizeBytes: at('max_batch_size_bytes').integer(3_000_000, 1024),
    helper: oneConsumer ? { ...helper, queue: { ...helper.queue, numConsumers: 1 } } : helper,
    auth: parseAuth(at('auth')),
  };
}

export interface TimeSeriesOut {
  /** Sorted by name, __name__ included. */
  readonly labels: LabelPairs;
  readonly value: number;
  readonly timestampMs: number;
}

/** One TimeSeries{labels=1, samples=2} with Label{name=1, value=2} and Sample{value=1 double, timestamp=2 int64}. */
export function encodeTimeSeries(series: TimeSeriesOut): Uint8Array {
  const w = protobufjs().Writer.create();
  for (const [name, value] of series.labels) {
    w.uint32(10).fork().uint32(10).string(name).uint32(18).string(value).ldelim();
  }
  w.uint32(18).fork().uint32(9).double(series.value).uint32(16).int64(series.timestampMs).ldelim();
  return w.finish();
}

/** WriteRequest{timeseries=1} bodies of at most `maxBytes` each (a larger single series goes alone). */
export function encodeWriteRequests(series: readonly TimeSeriesOut[], maxBytes: number): Uint8Array[] {
  const bodies: Uint8Array[] = [];
  let parts: Uint8Array[] = [];
  let size = 0;
  for (const s of series) {
    const part = encodeTimeSeries(s);
    const partSize = part.length + 6;
    if (parts.length > 0 && size + partSize > maxBytes) {
      bodies.push(encodeRepeatedField(1, parts));
      parts = [];
      size = 0;
    }
    parts.push(part);
    size += partSize;
  }
  if (parts.length > 0) bodies.push(encodeRepeatedField(1, parts));
  return bodies;
}

const RETRYABLE_STATUS = (status: number) => status === 429 || status >= 500;

export class RemoteWriteExporter implements Component, Consumer, QueueAbandon {
  readonly accumulator: Accumulator;
  private readonly helper: ExporterHelper;
  /** Encoded requests of each queued batch, built when it was accepted (so accumulation happens once). */
  private readonly pending = new WeakMap<Batch, Uint8Array[]>();
  private readonly agents = { http: new http.Agent({ keepAlive: true }), https: new https.Agent({ keepAlive: true }) };
  private lastExpiry = 0;
  private auth: ClientAuthenticator | undefined;

  constructor(
    settings: CreateSettings,
    private readonly config: RemoteWriteConfig,
  ) {
    this.accumulator = new Accumulator(
      {
        namespace: config.namespace,
        addMetricSuffixes: config.addMetricSuffixes,
        constLabels: [],
        resourceToTelemetry: config.resourceToTelemetry,
        expirationMs: STATE_EXPIRATION_MS,
      },
      settings.logger,
    );
    this.helper = new ExporterHelper(settings, config.helper, (batch, signal) => this.push(batch, signal));
  }

  async start(host?: Host): Promise<void> {
    if (this.config.auth !== undefined) this.auth = clientAuthenticator(host, this.config.auth);
    await this.helper.start();
  }

  async shutdown(): Promise<void> {
    await this.helper.shutdown();
    this.agents.http.destroy();
    this.agents.https.destroy();
  }

  /** Translates now (in arrival order, so deltas add up once) and queues the encoded requests. */
  async consume(batch: Batch): Promise<void> {
    const series = this.translate(batch, Date.now());
    if (series.length === 0) return;
    const bodies = encodeWriteRequests(series, this.config.maxBatchSizeBytes);
    const queued = batch.withResources(batch.resources);
    this.pending.set(queued, bodies);
    await this.helper.consume(queued);
  }

  wouldRefuse(): string | undefined {
    return this.helper.wouldRefuse();
  }

  abandonQueue(): Promise<void> {
    return this.helper.abandonQueue();
  }

  /** The samples a batch produces: every series it touched, with its current (cumulative) value. */
  translate(batch: Batch, now: number): TimeSeriesOut[] {
    if (now - this.lastExpiry > 60_000) {
      this.accumulator.collect(now);
      this.lastExpiry = now;
    }
    const out: TimeSeriesOut[] = [];
    for (const block of batch.resources) {
      const result = this.accumulator.accumulate(block, now);
      for (const series of result.touched) this.appendSeries(series, now, out);
      if (this.config.targetInfo && !this.config.resourceToTelemetry && result.touched.length > 0) {
        const info = this.accumulator.targetInfoToSend(result.resourceKey, now);
        if (info) out.push({ labels: this.finishLabels(info.labels, this.accumulator.targetInfoName, undefined), value: 1, timestampMs: info.timestampMs });
      }
    }
    return out;
  }

  private appendSeries(series: Series, now: number, out: TimeSeriesOut[]): void {
    const ts = series.timeNs > 0 ? Math.round(series.timeNs / 1e6) : now;
    // Never send a series' sample at or before one already sent: Prometheus refuses the whole request.
    if (ts <= series.lastSentMs) return;
    series.lastSentMs = ts;
    const name = series.family.name;
    for (const sample of samplesOf(series)) {
      out.push({ labels: this.finishLabels(series.labels, name + sample.suffix, sample.extra), value: sample.value, timestampMs: ts });
    }
  }

  private finishLabels(labels: LabelPairs, name: string, extra: readonly [string, string] | undefined): LabelPairs {
    const out: LabelPairs = [['__name__', name]];
    for (const pair of labels) if (!extra || pair[0] !== extra[0]) out.push(pair);
    if (extra) out.push([extra[0], extra[1]]);
    for (const [n, v] of this.config.externalLabels) if (!out.some(([m]) => m === n)) out.push([n, v]);
    return out.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  }

  private async push(batch: Batch, signal: AbortSignal): Promise<void> {
    const url = this.config.endpoint;
    if (!url) throw new PermanentError('no endpoint is configured');
    const bodies = this.pending.get(batch);
    if (!bodies) throw new PermanentError('internal: batch was not translated before queueing');
    for (const body of bodies) {
      const compressed = compress(Buffer.from(body.buffer, body.byteOffset, body.byteLength));
      const response = await this.send(url, compressed, signal);
      if (response.status >= 200 && response.status < 300) continue;
      const message = `HTTP ${response.status} from ${url.toString()}: ${response.body.slice(0, 500).trim() || '(empty body)'}`;
      if (RETRYABLE_STATUS(response.status)) throw new RetryableError(message, parseRetryAfter(response.retryAfter));
      throw new PermanentError(message);
    }
  }

  private send(url: URL, body: Buffer, signal: AbortSignal): Promise<{ status: number; body: string; retryAfter: string | undefined }> {
    const secure = url.protocol === 'https:';
    const headers = {
      ...this.config.headers,
      ...this.auth?.requestHeaders(),
      'content-encoding': 'snappy',
      'content-type': 'application/x-protobuf',
      'x-prometheus-remote-write-version': '0.1.0',
      'user-agent': 'spansieve',
      'content-length': String(body.length),
    };
    return new Promise((resolve, reject) => {
      const request = (secure ? https : http).request(
        url,
        {
          method: 'POST',
          headers,
          agent: secure ? this.agents.https : this.agents.http,
          signal,
          ...(secure ? { ca: this.config.tls.caPem, rejectUnauthorized: !this.config.tls.insecureSkipVerify } : {}),
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), retryAfter: res.headers['retry-after'] }));
          res.on('error', (err) => reject(new RetryableError(`reading the response from ${url.toString()} failed: ${err.message}`)));
        },
      );
      request.on('error', (err) => {
        if (signal.aborted) reject(signal.reason instanceof Error ? signal.reason : new RetryableError('export aborted'));
        else reject(new RetryableError(`POST ${url.toString()} failed: ${err.message}`));
      });
      request.end(body);
    });
  }
}

export const prometheusRemoteWriteExporterFactory: ExporterFactory<RemoteWriteConfig> = {
  type: 'prometheusremotewrite',
  kind: 'exporter',
  signals: ['metrics'],
  parseConfig: parseRemoteWriteConfig,
  create: (settings, config) => new RemoteWriteExporter(settings, config),
  authenticatorsOf: clientAuthenticatorsOf,
};
