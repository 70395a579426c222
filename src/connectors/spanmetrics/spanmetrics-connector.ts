import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { Component, Consumer, ConnectorFactory, CreateSettings } from '../../component/component';
import { errorMessage } from '../../component/errors';
import type { Node } from '../../config/reader';
import { attrValueToString, type AttrValue, type Attributes } from '../../pdata/attributes';
import type { Batch } from '../../pdata/batch';
import { WantedAttributes, forEachSpan, resourceMessage, type SpanView } from '../../pdata/spans';
import {
  TEMPORALITY_CUMULATIVE,
  TEMPORALITY_DELTA,
  buildMetricsBatch,
  encodeResource,
  msToNanos,
  toKeyValues,
  type OutputResource,
  type PlainHistogramPoint,
  type PlainMetric,
  type PlainNumberPoint,
} from '../metrics-output';
import { bucketIndex } from '../histogram';
import { parseSpanMetricsConfig, type Dimension, type SpanMetricsConfig } from './config';

// Traces -> metrics, as the Collector's spanmetrics connector: per resource, a `calls` counter and
// a `duration` histogram for every (service.name, span.name, span.kind, status.code, dimensions...)
// combination, flushed every metrics_flush_interval to the metrics pipelines that list it.

export const OVERFLOW_ATTRIBUTE = 'otel.metric.overflow';
const OVERFLOW_KEY = OVERFLOW_ATTRIBUTE;
const SEP = '\u0000';

interface SeriesBase {
  readonly attributes: ReadonlyArray<readonly [string, AttrValue]>;
  readonly startMs: number;
  lastSeenMs: number;
}

interface SumSeries extends SeriesBase {
  count: number;
  /** A new cumulative series is first emitted as 0, as the Collector does, so a rate over it starts at the first span. */
  isFirst: boolean;
}

interface HistogramSeries extends SeriesBase {
  readonly counts: number[];
  count: number;
  sum: number;
}

/** Series of one metric for one resource, bounded by aggregation_cardinality_limit. */
export class LimitedSeries<T extends SeriesBase> {
  readonly map = new Map<string, T>();

  constructor(private readonly limit: number) {}

  /** Returns the series for `key`, creating it; past the limit, new keys share one overflow series. */
  getOrCreate(key: string, create: (attributes: ReadonlyArray<readonly [string, AttrValue]>) => T, attributes: () => ReadonlyArray<readonly [string, AttrValue]>): T {
    const found = this.map.get(key);
    if (found) return found;
    if (this.limit > 0 && this.map.size >= this.limit) {
      const overflow = this.map.get(OVERFLOW_KEY);
      if (overflow) return overflow;
      const series = create([[OVERFLOW_ATTRIBUTE, true]]);
      this.map.set(OVERFLOW_KEY, series);
      return series;
    }
    const series = create(attributes());
    this.map.set(key, series);
    return series;
  }

  expire(now: number, expirationMs: number): void {
    for (const [key, series] of this.map) if (now - series.lastSeenMs >= expirationMs) this.map.delete(key);
  }
}

interface ResourceState {
  readonly key: string;
  readonly resource: Uint8Array | undefined;
  readonly sums: LimitedSeries<SumSeries>;
  readonly histograms: LimitedSeries<HistogramSeries>;
}

export class SpanMetricsConnector implements Component, Consumer {
  /** In least-recently-used order (a touched resource moves to the end). */
  private readonly resources = new Map<string, ResourceState>();
  /** Delta temporality: when each series was last flushed, so successive points are contiguous. */
  private readonly lastDeltaFlush = new Map<string, number>();
  private readonly logger: Logger;
  private readonly callsDims: readonly Dimension[];
  private readonly durationDims: readonly Dimension[];
  private readonly sameDims: boolean;
  private readonly exclude: ReadonlySet<string>;
  private readonly divider: number;
  /** Span attributes the dimensions read; the others are never decoded. */
  private readonly wanted: WantedAttributes;
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;

  constructor(
    settings: CreateSettings,
    private readonly config: SpanMetricsConfig,
    private readonly next: Consumer,
    private readonly now: () => number = Date.now,
  ) {
    this.logger = settings.logger;
    this.callsDims = [...config.dimensions, ...config.callsDimensions];
    this.durationDims = [...config.dimensions, ...config.histogramDimensions];
    this.sameDims = config.callsDimensions.length === 0 && config.histogramDimensions.length === 0;
    this.exclude = new Set(config.excludeDimensions);
    this.divider = config.histogram.unit === 'ms' ? 1e6 : 1e9;
    this.wanted = new WantedAttributes([...this.callsDims, ...this.durationDims].map((d) => d.name));
  }

  async start(): Promise<void> {
    this.timer = setInterval(() => {
      this.flush().catch((err: unknown) => this.logger.error({ err: errorMessage(err) }, 'spanmetrics: flush failed'));
    }, this.config.flushIntervalMs);
    this.timer.unref();
  }

  /** Stops the timer and flushes once more, so a delta interval in progress is not lost. */
  async shutdown(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.flush();
  }

  async consume(batch: Batch): Promise<void> {
    const now = this.now();
    for (const block of batch.resources) {
      const serviceName = block.attributes.get('service.name');
      if (typeof serviceName !== 'string') continue;
      const state = this.resourceFor(block.bytes, block.attributes);
      try {
        forEachSpan(block.bytes, (span) => this.aggregate(state, serviceName, span, block.attributes, now), this.wanted);
      } catch (err) {
        // Never fail the traces pipeline over derived metrics: the other exporters got the spans.
        this.logger.error({ err: errorMessage(err), service: serviceName }, 'spanmetrics: could not read the spans of a resource');
      }
    }
  }

  /** Number of series held (calls + duration), for tests and self-observation. */
  get seriesCount(): number {
    let n = 0;
    for (const r of this.resources.values()) n += r.sums.map.size + r.histograms.map.size;
    return n;
  }

  /** Emits the current metrics downstream; runs on the timer, and can be called directly (tests). */
  flush(): Promise<void> {
    if (this.flushing) return this.flushing;
    this.flushing = this.doFlush().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  private async doFlush(): Promise<void> {
    const now = this.now();
    const output = this.build(now);
    this.resetState(now);
    if (output.length === 0) return;
    try {
      await this.next.consume(buildMetricsBatch(output));
    } catch (err) {
      this.logger.error({ err: errorMessage(err) }, 'spanmetrics: the metrics pipeline refused the flushed metrics');
    }
  }

  private resourceFor(bytes: Uint8Array, attributes: Attributes): ResourceState {
    const key = this.resourceKey(attributes);
    let state = this.resources.get(key);
    if (state) {
      this.resources.delete(key);
    } else {
      state = {
        key,
        resource: ownResource(bytes, attributes),
        sums: new LimitedSeries<SumSeries>(this.config.cardinalityLimit),
        histograms: new LimitedSeries<HistogramSeries>(this.config.cardinalityLimit),
      };
      if (this.resources.size >= this.config.resourceMetricsCacheSize) {
        const oldest = this.resources.keys().next().value;
        if (oldest !== undefined) this.resources.delete(oldest);
      }
    }
    this.resources.set(key, state);
    return state;
  }

  private resourceKey(attributes: Attributes): string {
    const only = this.config.resourceMetricsKeyAttributes;
    const keys = (only.length > 0 ? only.filter((k) => attributes.has(k)) : [...attributes.keys()]).sort();
    let key = '';
    for (const k of keys) key += `${k}${SEP}${attrValueToString(attributes.get(k)!)}${SEP}`;
    // Held as a map key for as long as the resource is cached: a long one is replaced by its digest.
    return key.length <= MAX_RESOURCE_KEY_CHARS ? key : `sha256${SEP}${createHash('sha256').update(key).digest('base64')}`;
  }

  private aggregate(state: ResourceState, serviceName: string, span: SpanView, resourceAttrs: Attributes, now: number): void {
    const duration = span.durationNs / this.divider;
    const callsKey = this.buildKey(serviceName, span, this.callsDims, resourceAttrs);
    const sum = state.sums.getOrCreate(
      callsKey,
      (attributes) => ({ attributes, startMs: now, lastSeenMs: now, count: 0, isFirst: true }),
      () => this.buildAttributes(serviceName, span, this.callsDims, resourceAttrs),
    );
    sum.count++;
    sum.lastSeenMs = now;

    if (this.config.histogram.disable) return;
    const durationKey = this.sameDims ? callsKey : this.buildKey(serviceName, span, this.durationDims, resourceAttrs);
    const bounds = this.config.histogram.bounds;
    const histogram = state.histograms.getOrCreate(
      durationKey,
      (attributes) => ({ attributes, startMs: now, lastSeenMs: now, counts: new Array<number>(bounds.length + 1).fill(0), count: 0, sum: 0 }),
      () => this.buildAttributes(serviceName, span, this.durationDims, resourceAttrs),
    );
    histogram.counts[bucketIndex(bounds, duration)]!++;
    histogram.count++;
    histogram.sum += duration;
    histogram.lastSeenMs = now;
  }

  private buildKey(serviceName: string, span: SpanView, dims: readonly Dimension[], resourceAttrs: Attributes): string {
    const ex = this.exclude;
    let key = ex.has('service.name') ? '' : serviceName;
    if (!ex.has('span.name')) key += SEP + span.name;
    if (!ex.has('span.kind')) key += SEP + span.kindName;
    if (!ex.has('status.code')) key += SEP + span.statusName;
    for (const dim of dims) {
      const value = dimensionValue(dim, span, resourceAttrs);
      // The dimension's name is part of the key, so a missing dimension cannot shift the others.
      if (value !== undefined) key += `${SEP}${dim.name}=${attrValueToString(value)}`;
    }
    return key;
  }

  private buildAttributes(serviceName: string, span: SpanView, dims: readonly Dimension[], resourceAttrs: Attributes): Array<readonly [string, AttrValue]> {
    const ex = this.exclude;
    const out: Array<readonly [string, AttrValue]> = [];
    if (!ex.has('service.name')) out.push(['service.name', serviceName]);
    if (!ex.has('span.name')) out.push(['span.name', span.name]);
    if (!ex.has('span.kind')) out.push(['span.kind', span.kindName]);
    if (!ex.has('status.code')) out.push(['status.code', span.statusName]);
    for (const dim of dims) {
      const value = dimensionValue(dim, span, resourceAttrs);
      if (value !== undefined) out.push([dim.name, value]);
    }
    return out;
  }

  private build(now: number): OutputResource[] {
    const delta = this.config.temporality === 'delta';
    const temporality = delta ? TEMPORALITY_DELTA : TEMPORALITY_CUMULATIVE;
    const timeUnixNano = msToNanos(now);
    const ns = this.config.namespace;
    const name = (metric: string) => (ns ? `${ns}.${metric}` : metric);
    const startOf = (state: ResourceState, prefix: string, key: string, series: SeriesBase): string => {
      if (!delta) return msToNanos(series.startMs);
      const cacheKey = `${state.key}${prefix}${key}`;
      const last = this.lastDeltaFlush.get(cacheKey);
      this.rememberDeltaFlush(cacheKey, now);
      return msToNanos(last ?? series.startMs);
    };

    const out: OutputResource[] = [];
    for (const state of this.resources.values()) {
      if (state.sums.map.size === 0) continue;
      const callPoints: PlainNumberPoint[] = [];
      for (const [key, series] of state.sums.map) {
        const value = !delta && series.isFirst ? 0 : series.count;
        series.isFirst = false;
        callPoints.push({ attributes: toKeyValues(series.attributes), startTimeUnixNano: startOf(state, 'c', key, series), timeUnixNano, asInt: value });
      }
      const metrics: PlainMetric[] = [{ name: name('calls'), sum: { dataPoints: callPoints, aggregationTemporality: temporality, isMonotonic: true } }];
      if (!this.config.histogram.disable) {
        const points: PlainHistogramPoint[] = [];
        for (const [key, series] of state.histograms.map) {
          points.push({
            attributes: toKeyValues(series.attributes),
            startTimeUnixNano: startOf(state, 'h', key, series),
            timeUnixNano,
            count: series.count,
            sum: series.sum,
            bucketCounts: [...series.counts],
            explicitBounds: this.config.histogram.bounds,
          });
        }
        metrics.push({ name: name('duration'), unit: this.config.histogram.unit, histogram: { dataPoints: points, aggregationTemporality: temporality } });
      }
      out.push({ resource: state.resource, scope: { name: 'spanmetricsconnector' }, metrics });
    }
    return out;
  }

  private rememberDeltaFlush(key: string, now: number): void {
    this.lastDeltaFlush.delete(key);
    this.lastDeltaFlush.set(key, now);
    if (this.lastDeltaFlush.size > this.config.timestampCacheSize) {
      const oldest = this.lastDeltaFlush.keys().next().value;
      if (oldest !== undefined) this.lastDeltaFlush.delete(oldest);
    }
  }

  private resetState(now: number): void {
    if (this.config.temporality === 'delta') {
      this.resources.clear();
      return;
    }
    if (this.config.expirationMs <= 0) return;
    for (const [key, state] of this.resources) {
      state.sums.expire(now, this.config.expirationMs);
      state.histograms.expire(now, this.config.expirationMs);
      if (state.sums.map.size === 0 && state.histograms.map.size === 0) this.resources.delete(key);
    }
  }
}

/** A span attribute, else a resource attribute, else the dimension's default. */
function dimensionValue(dim: Dimension, span: SpanView, resourceAttrs: Attributes): AttrValue | undefined {
  const fromSpan = span.attributes().get(dim.name);
  if (fromSpan !== undefined) return fromSpan;
  const fromResource = resourceAttrs.get(dim.name);
  if (fromResource !== undefined) return fromResource;
  return dim.default;
}

export const spanMetricsConnectorFactory: ConnectorFactory<SpanMetricsConfig> = {
  type: 'spanmetrics',
  kind: 'connector',
  routes: [['traces', 'metrics']],
  parseConfig: (node: Node) => parseSpanMetricsConfig(node),
  create(settings, config, _from, next) {
    const target = next.get('metrics');
    if (!target) throw new Error(`connector ${settings.id} has no metrics pipeline to send to`);
    return new SpanMetricsConnector(settings, config, target);
  },
};

/** Resource keys longer than this are kept as a digest. */
const MAX_RESOURCE_KEY_CHARS = 4096;
/** Largest resource copied as it is into the metrics; a larger one is rebuilt, smaller. */
const MAX_COPIED_RESOURCE_BYTES = 16 * 1024;

/**
 * The encoded Resource to emit a resource's metrics under, as the connector's own bytes: a view
 * would keep the whole request alive for as long as the resource is cached. A resource larger
 * than MAX_COPIED_RESOURCE_BYTES (a sender may put a million attributes in one) is rebuilt from
 * its decoded attributes, identity first, up to about that size; the rest is left out.
 */
function ownResource(bytes: Uint8Array, attributes: Attributes): Uint8Array | undefined {
  const message = resourceMessage(bytes);
  if (message === undefined) return undefined;
  if (message.length <= MAX_COPIED_RESOURCE_BYTES) return Uint8Array.prototype.slice.call(message);
  return encodeResource(attributes, MAX_COPIED_RESOURCE_BYTES);
}
