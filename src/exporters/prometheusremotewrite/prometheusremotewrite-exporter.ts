import { compress } from 'snappyjs';
import { clientAuthenticator, parseAuth, type ClientAuthenticator } from '../../component/auth';
import type { CreateSettings, ExporterFactory, Host, QueueRequest } from '../../component/component';
import { PermanentError, RetryableError } from '../../component/errors';
import type { Node } from '../../config/reader';
import type { Batch } from '../../pdata/batch';
import type { RecordCodec } from '../../component/storage';
import { encodeRepeatedField } from '../../pdata/wire';
import { protobufjs } from '../../util/lazy-modules';
import { HELPER_KEYS, parseHelperConfig, type HelperConfig, type RequestType } from '../exporterhelper/exporterhelper';
import type { PushSignal } from '../exporterhelper/attempt-signal';
import { QueueingExporter } from '../exporterhelper/request-exporter';
import { Accumulator, samplesOf, type Series } from '../internal/prometheus/accumulator';
import { normalizeNamespace, parseLabelMap, type LabelPairs } from '../internal/prometheus/translation';
import { HttpPoster } from '../http-post';
import { clientAuthenticatorsOf, parseHttpUrl, parseRetryAfter, readCaFile } from '../otlp-common';

// Pushes metrics to a Prometheus remote-write 1.0 endpoint (Prometheus's own receiver with
// --web.enable-remote-write-receiver, Mimir, Thanos receive, ...): the same OTel -> Prometheus
// translation as the prometheus exporter, each batch's series encoded as a WriteRequest
// protobuf, compressed with snappy's block format, POSTed with the headers the protocol requires.
// Timeout, retry and the sending queue (persistent with sending_queue.storage) are the shared
// ExporterHelper's; what it queues is the batch's compressed WriteRequests (RemoteWriteRequest).

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

/**
 * What the sending queue holds for one batch: its WriteRequests, snappy-compressed as they are
 * POSTed, built when the batch is accepted (the translation updates series state, so it runs
 * once, in arrival order). Retried as a whole.
 */
export class RemoteWriteRequest implements QueueRequest {
  readonly signal = 'metrics';
  /** Compressed bytes of all its bodies (`sizer: bytes`). */
  readonly byteSize: number;

  constructor(
    readonly bodies: readonly Buffer[],
    /** Data points of the batch it was translated from. */
    readonly itemCount: number,
  ) {
    let bytes = 0;
    for (const body of bodies) bytes += body.length;
    this.byteSize = bytes;
  }
}

/** Record kind of a RemoteWriteRequest in the persistent queue (0 and 1 are batches). */
export const REMOTE_WRITE_RECORD = 2;

/**
 * Record body: items u32 | bodies u32 | the length of each body u32 | the bodies, compressed as
 * sent (the record's checksum covers all of it).
 */
export const remoteWriteRecords: RecordCodec<RemoteWriteRequest> = {
  kind: () => REMOTE_WRITE_RECORD,
  body: (request) => {
    const table = Buffer.allocUnsafe(8 + 4 * request.bodies.length);
    table.writeUInt32LE(request.itemCount, 0);
    table.writeUInt32LE(request.bodies.length, 4);
    request.bodies.forEach((body, i) => table.writeUInt32LE(body.length, 8 + 4 * i));
    return [table, ...request.bodies];
  },
  decode: (kind, record) => {
    if (kind !== REMOTE_WRITE_RECORD) throw new Error(`record kind ${kind} is not a remote-write request`);
    if (record.length < 8) throw new Error('remote-write record too short');
    const count = record.readUInt32LE(4);
    let at = 8 + 4 * count;
    if (at > record.length) throw new Error('remote-write record too short');
    // One copy for all bodies: the segment file's buffer is not kept alive.
    const own = Buffer.from(record);
    const bodies: Buffer[] = [];
    for (let i = 0; i < count; i++) {
      const length = own.readUInt32LE(8 + 4 * i);
      if (at + length > own.length) throw new Error('remote-write record too short');
      bodies.push(own.subarray(at, at + length));
      at += length;
    }
    if (at !== own.length) throw new Error('remote-write record has trailing bytes');
    return new RemoteWriteRequest(bodies, own.readUInt32LE(0));
  },
};

const remoteWriteRequests: RequestType<RemoteWriteRequest> = {
  byteSize: (request) => request.byteSize,
  toQueued: (request) => request,
  // consume() builds a new request each time: already its own object.
  toStored: (request) => request,
  accepts: (request): request is RemoteWriteRequest => request instanceof RemoteWriteRequest,
  records: remoteWriteRecords,
};

/** The block format Content-Encoding: snappy means, as an own Buffer of the exact size. */
function snappy(body: Uint8Array): Buffer {
  const compressed = compress(body);
  return Buffer.from(compressed.buffer, compressed.byteOffset, compressed.byteLength);
}

const RETRYABLE_STATUS = (status: number) => status === 429 || status >= 500;

export class RemoteWriteExporter extends QueueingExporter<RemoteWriteRequest> {
  readonly accumulator: Accumulator;
  private readonly poster: HttpPoster;
  private lastExpiry = 0;
  private auth: ClientAuthenticator | undefined;

  constructor(
    settings: CreateSettings,
    private readonly config: RemoteWriteConfig,
  ) {
    super(settings, config.helper, remoteWriteRequests);
    this.poster = new HttpPoster({ ca: config.tls.caPem, rejectUnauthorized: !config.tls.insecureSkipVerify });
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
  }

  async start(host?: Host): Promise<void> {
    if (this.config.auth !== undefined) this.auth = clientAuthenticator(host, this.config.auth);
    await this.helper.start(host);
  }

  async shutdown(): Promise<void> {
    await this.helper.shutdown();
    this.poster.destroy();
  }

  /** Translates now (in arrival order, so deltas add up once) and queues the compressed requests. */
  async consume(batch: Batch): Promise<void> {
    const series = this.translate(batch, Date.now());
    if (series.length === 0) return;
    const bodies = encodeWriteRequests(series, this.config.maxBatchSizeBytes).map(snappy);
    await this.helper.consume(new RemoteWriteRequest(bodies, batch.itemCount));
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

  protected async push(request: RemoteWriteRequest, signal: PushSignal): Promise<void> {
    const url = this.config.endpoint;
    if (!url) throw new PermanentError('no endpoint is configured');
    for (const body of request.bodies) {
      const headers = {
        ...this.config.headers,
        ...this.auth?.requestHeaders(),
        'content-encoding': 'snappy',
        'content-type': 'application/x-protobuf',
        'x-prometheus-remote-write-version': '0.1.0',
        'user-agent': 'spansieve',
      };
      const response = await this.poster.post(url, headers, body, signal.toAbortSignal());
      if (response.status >= 200 && response.status < 300) continue;
      const message = `HTTP ${response.status} from ${url.toString()}: ${response.body.toString('utf8').slice(0, 500).trim() || '(empty body)'}`;
      if (RETRYABLE_STATUS(response.status)) throw new RetryableError(message, parseRetryAfter(response.retryAfter));
      throw new PermanentError(message);
    }
  }

}

export const prometheusRemoteWriteExporterFactory: ExporterFactory<RemoteWriteConfig> = {
  singleProcess: 'it keeps per-series state (cumulative values, staleness) in the process; several workers would send conflicting samples for the same series',
  type: 'prometheusremotewrite',
  kind: 'exporter',
  signals: ['metrics'],
  parseConfig: parseRemoteWriteConfig,
  create: (settings, config) => new RemoteWriteExporter(settings, config),
  authenticatorsOf: clientAuthenticatorsOf,
};
