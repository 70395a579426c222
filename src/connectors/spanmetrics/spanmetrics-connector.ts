import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { Component, Consumer, ConnectorFactory, CreateSettings } from '../../component/component';
import { errorMessage } from '../../component/errors';
import type { Node } from '../../config/reader';
import { attrValueToString, decodeKeyValues, readString, type AttrValue, type Attributes } from '../../pdata/attributes';
import type { Batch } from '../../pdata/batch';
import { RESOURCE, SPAN, SPAN_EVENT } from '../../pdata/fields';
import { goAsString } from '../../pdata/go-format';
import { keyValueBytes } from '../../pdata/keyvalues';
import { WantedAttributes, doubleKeysOf, forEachSpan, resourceMessage, type SpanView } from '../../pdata/spans';
import { adjustedCount } from '../../pdata/tracestate';
import { SKIP_MARK_KEY, resourceIsMarked, spanIsMarked } from '../skip-mark';
import {
  TEMPORALITY_CUMULATIVE,
  TEMPORALITY_DELTA,
  buildMetricsBatch,
  encodeResource,
  msToNanos,
  anyValueFromWire,
  toAnyValue,
  type OutputResource,
  type PlainAnyValue,
  type PlainExemplar,
  type PlainExponentialPoint,
  type PlainHistogramPoint,
  type PlainKeyValue,
  type PlainMetric,
  type PlainNumberPoint,
} from '../metrics-output';
import { ExponentialHistogram } from '../exponential-histogram';
import { bucketIndex } from '../histogram';
import { parseSpanMetricsConfig, type Dimension, type SpanMetricsConfig } from './config';

// Traces -> metrics, as the Collector's spanmetrics connector: per resource, a `calls` counter and
// a `duration` histogram (and with `events`, an `events` counter) for every (service.name,
// span.name, span.kind, status.code, dimensions...) combination, flushed every
// metrics_flush_interval to the metrics pipelines that list it.

export const OVERFLOW_ATTRIBUTE = 'otel.metric.overflow';
/** enable_metrics_sampling_method's attribute: "extrapolated" (from a tracestate threshold) or "counted". */
const SAMPLING_METHOD_KEY = 'sampling.method';
const OVERFLOW_KEY = OVERFLOW_ATTRIBUTE;
const OVERFLOW_ATTRIBUTES: PlainKeyValue[] = [{ key: OVERFLOW_ATTRIBUTE, value: { boolValue: true } }];
const SEP = '\u0000';
const SCOPE_NAME_KEY = 'span.instrumentation.scope.name';
const SCOPE_VERSION_KEY = 'span.instrumentation.scope.version';

interface Exemplar {
  readonly traceId: Uint8Array;
  readonly spanId: Uint8Array;
  /** The span's duration in the histogram unit, as the Collector records it (on every metric). */
  readonly value: number;
}

interface SeriesBase {
  readonly attributes: PlainKeyValue[];
  readonly startMs: number;
  lastSeenMs: number;
  /** Since the last flush; only with exemplars enabled. */
  exemplars: Exemplar[] | undefined;
}

interface SumSeries extends SeriesBase {
  count: number;
  /** A new cumulative series is first emitted as 0, as the Collector does, so a rate over it starts at the first span. */
  isFirst: boolean;
}

interface HistogramSeries extends SeriesBase {
  /** Explicit buckets' counts (empty with exponential buckets). */
  readonly counts: number[];
  /** With histogram.exponential: the base-2 buckets, count, sum, min and max. */
  readonly exponential: ExponentialHistogram | undefined;
  count: number;
  sum: number;
}

/** Series of one metric for one resource, bounded by aggregation_cardinality_limit. */
export class LimitedSeries<T extends SeriesBase> {
  readonly map = new Map<string, T>();
  /** Whether the last getOrCreate answered with the overflow series (the Collector's limitReached). */
  overflowed = false;

  constructor(private readonly limit: number) {}

  /**
   * Returns the series for `key`, creating it; once the map holds `limit` series (the overflow
   * series counts among them, as in the Collector), new keys share one overflow series.
   */
  getOrCreate(key: string, create: (attributes: PlainKeyValue[]) => T, attributes: () => PlainKeyValue[]): T {
    const found = this.map.get(key);
    if (found) {
      this.overflowed = false;
      return found;
    }
    if (this.limit > 0 && this.map.size >= this.limit) {
      this.overflowed = true;
      const overflow = this.map.get(OVERFLOW_KEY);
      if (overflow) return overflow;
      const series = create(OVERFLOW_ATTRIBUTES);
      this.map.set(OVERFLOW_KEY, series);
      return series;
    }
    this.overflowed = false;
    const series = create(attributes());
    this.map.set(key, series);
    return series;
  }

  expire(now: number, expirationMs: number): void {
    for (const [key, series] of this.map) if (now - series.lastSeenMs >= expirationMs) this.map.delete(key);
  }

  clearExemplars(): void {
    for (const series of this.map.values()) series.exemplars = undefined;
  }
}

interface ResourceState {
  readonly key: string;
  readonly resource: Uint8Array | undefined;
  readonly sums: LimitedSeries<SumSeries>;
  readonly histograms: LimitedSeries<HistogramSeries>;
  readonly events: LimitedSeries<SumSeries>;
  /** For metrics_expiration, which drops whole resources as the Collector does. */
  lastSeenMs: number;
}

/** What the spans of one resource block share while they are aggregated. */
interface BlockContext {
  readonly state: ResourceState;
  readonly serviceName: string;
  readonly bytes: Uint8Array;
  readonly resourceAttrs: Attributes;
  /** Resource attributes holding doubles, read from the bytes on first need. */
  resourceDoubles: Set<string> | undefined;
  readonly now: number;
}

/** The event a dimension is being looked up for (events metric only). */
interface EventContext {
  readonly attrs: Attributes;
  readonly buf: Uint8Array;
  readonly start: number;
  readonly end: number;
  doubles: Set<string> | undefined;
}

export class SpanMetricsConnector implements Component, Consumer {
  /** In least-recently-used order (a touched resource moves to the end). */
  private readonly resources = new Map<string, ResourceState>();
  /** Delta temporality: when each series was last flushed, so successive points are contiguous. */
  private readonly lastDeltaFlush = new Map<string, number>();
  private readonly logger: Logger;
  private readonly callsDims: readonly DimStep[];
  private readonly durationDims: readonly DimStep[];
  private readonly eventDims: readonly DimStep[];
  private readonly sameDims: boolean;
  private readonly exclude: ReadonlySet<string>;
  private readonly includeScopes: ReadonlySet<string>;
  private readonly divider: number;
  private readonly maxExemplars: number;
  /** The span being aggregated: how many spans it stands for (its tracestate's adjusted count, rounded), and whether that came from a threshold. */
  private weight = 1;
  private adjusted = false;
  /** The last tracestate seen in this request and its rounded weight (the Collector's one-entry cache). */
  private lastTraceState = '';
  private lastWeight = 1;
  private lastAdjusted = false;
  /** Span attributes the dimensions read; the others are never decoded. */
  private readonly wanted: WantedAttributes | undefined;
  /** Set by lookUp: the value found (undefined: none) and whether it is a double. */
  private found: AttrValue | undefined;
  private foundDouble = false;
  /** Where lookUp found it. */
  private foundIn: 'span' | 'event' | 'resource' | 'default' = 'default';
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;

  constructor(
    settings: CreateSettings,
    private readonly config: SpanMetricsConfig,
    private readonly next: Consumer,
    private readonly now: () => number = Date.now,
  ) {
    this.logger = settings.logger;
    this.callsDims = [...steps(config.dimensions), ...steps(config.callsDimensions)];
    this.durationDims = [...steps(config.dimensions), ...steps(config.histogramDimensions)];
    this.eventDims = [...steps(config.dimensions), ...steps(config.events.dimensions)];
    this.sameDims = config.callsDimensions.length === 0 && config.histogramDimensions.length === 0;
    this.exclude = new Set(config.excludeDimensions);
    this.includeScopes = new Set(config.includeInstrumentationScope);
    this.divider = config.histogram.unit === 'ms' ? 1e6 : 1e9;
    this.maxExemplars = config.exemplars.enabled ? config.exemplars.maxPerDataPoint : 0;
    const all = [...this.callsDims, ...this.durationDims, ...(config.events.enabled ? this.eventDims : [])];
    // A glob dimension may match any attribute: then spans' attributes are decoded in full.
    this.wanted = all.some((d) => d.glob !== undefined) ? undefined : new WantedAttributes(all.map((d) => d.name));
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
    // The Collector's tracestate cache lives for one request.
    this.lastTraceState = '';
    this.lastWeight = 1;
    this.lastAdjusted = false;
    for (const block of batch.resources) {
      // As the Collector: a resource without service.name is skipped; a non-string one reads as "".
      const serviceValue = block.attributes.get('service.name');
      if (serviceValue === undefined) continue;
      const serviceName = typeof serviceValue === 'string' ? serviceValue : '';
      const honor = this.config.honorSpanMetricsSkip;
      if (honor && resourceIsMarked(block)) continue;
      const state = this.resourceFor(block.bytes, block.attributes);
      if (this.config.expirationMs > 0) state.lastSeenMs = now;
      const ctx: BlockContext = { state, serviceName, bytes: block.bytes, resourceAttrs: block.attributes, resourceDoubles: undefined, now };
      try {
        forEachSpan(block.bytes, (span) => this.aggregate(ctx, span), this.wanted, honor ? SKIP_MARK_KEY : undefined);
      } catch (err) {
        // Never fail the traces pipeline over derived metrics: the other exporters got the spans.
        this.logger.error({ err: errorMessage(err), service: serviceName }, 'spanmetrics: could not read the spans of a resource');
      }
    }
  }

  /** Number of series held (calls + duration + events), for tests and self-observation. */
  get seriesCount(): number {
    let n = 0;
    for (const r of this.resources.values()) n += r.sums.map.size + r.histograms.map.size + r.events.map.size;
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
      const limit = this.config.cardinalityLimit;
      state = {
        key,
        resource: ownResource(bytes, attributes),
        sums: new LimitedSeries<SumSeries>(limit),
        histograms: new LimitedSeries<HistogramSeries>(limit),
        events: new LimitedSeries<SumSeries>(limit),
        lastSeenMs: 0,
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

  /**
   * Sets weight and adjusted from the span's tracestate, as the Collector v0.160.0 does whatever
   * enable_metrics_sampling_method says: `ot=th:` gives an adjusted count (1 / probability),
   * rounded up or down at random in proportion to its fraction; without one a span counts once.
   */
  private weigh(span: SpanView): void {
    if (span.traceStateLen === 0) {
      this.weight = 1;
      this.adjusted = false;
      return;
    }
    const text = readString(span.buf, span.traceStateStart, span.traceStateStart + span.traceStateLen);
    if (text !== this.lastTraceState) {
      const count = adjustedCount(text);
      const whole = Math.floor(count);
      this.lastTraceState = text;
      this.lastAdjusted = count !== 0;
      this.lastWeight = count === 0 ? 1 : whole + (count > whole && Math.random() < count - whole ? 1 : 0);
    }
    this.weight = this.lastWeight;
    this.adjusted = this.lastAdjusted;
  }

  private aggregate(ctx: BlockContext, span: SpanView): void {
    if (span.markStart >= 0 && spanIsMarked(span)) return;
    this.weigh(span);
    const weight = this.weight;
    const { state, now } = ctx;
    const duration = span.durationNs / this.divider;
    const callsKey = this.buildKey(ctx, span, this.callsDims, undefined);
    const sum = state.sums.getOrCreate(
      callsKey,
      (attributes) => ({ attributes, startMs: now, lastSeenMs: now, count: 0, isFirst: true, exemplars: undefined }),
      () => this.buildAttributes(ctx, span, this.callsDims, undefined),
    );
    if (this.maxExemplars > 0 && !state.sums.overflowed) addExemplar(sum, span, duration, this.maxExemplars);
    sum.count += weight;
    sum.lastSeenMs = now;

    if (!this.config.histogram.disable) {
      const durationKey = this.sameDims ? callsKey : this.buildKey(ctx, span, this.durationDims, undefined);
      const bounds = this.config.histogram.bounds;
      const expo = this.config.histogram.exponential;
      const histogram = state.histograms.getOrCreate(
        durationKey,
        (attributes) => ({
          attributes,
          startMs: now,
          lastSeenMs: now,
          counts: expo ? [] : new Array<number>(bounds.length + 1).fill(0),
          exponential: expo ? new ExponentialHistogram(expo.maxSize) : undefined,
          count: 0,
          sum: 0,
          exemplars: undefined,
        }),
        () => this.buildAttributes(ctx, span, this.durationDims, undefined),
      );
      if (this.maxExemplars > 0 && !state.histograms.overflowed) addExemplar(histogram, span, duration, this.maxExemplars);
      if (histogram.exponential) histogram.exponential.record(duration, weight);
      else {
        histogram.counts[bucketIndex(bounds, duration)]! += weight;
        histogram.count += weight;
        // One multiplication, as the Collector observes n at once (not n additions).
        histogram.sum += weight === 1 ? duration : duration * weight;
      }
      histogram.lastSeenMs = now;
    }

    if (this.config.events.enabled) this.aggregateEvents(ctx, span, duration);
  }

  private aggregateEvents(ctx: BlockContext, span: SpanView, duration: number): void {
    const { state, now } = ctx;
    span.forEachEvent((start, end) => {
      const event: EventContext = { attrs: decodeKeyValues(span.buf, start, end, SPAN_EVENT.attributes), buf: span.buf, start, end, doubles: undefined };
      const key = this.buildKey(ctx, span, this.eventDims, event);
      const series = state.events.getOrCreate(
        key,
        (attributes) => ({ attributes, startMs: now, lastSeenMs: now, count: 0, isFirst: true, exemplars: undefined }),
        () => this.buildAttributes(ctx, span, this.eventDims, event),
      );
      if (this.maxExemplars > 0 && !state.events.overflowed) addExemplar(series, span, duration, this.maxExemplars);
      series.count += this.weight;
      series.lastSeenMs = now;
    });
  }

  /**
   * Looks a dimension up as the Collector does: the span's attributes, then (events metric) the
   * event's, then the resource's, then the dimension's default. Sets `found` and `foundDouble`.
   */
  private lookUp(dim: Dimension, ctx: BlockContext, span: SpanView, event: EventContext | undefined): void {
    const fromSpan = span.attributes().get(dim.name);
    if (fromSpan !== undefined) {
      this.found = fromSpan;
      this.foundIn = 'span';
      this.foundDouble = isAmbiguousNumber(fromSpan) && span.isDouble(dim.name);
      return;
    }
    if (event) {
      const fromEvent = event.attrs.get(dim.name);
      if (fromEvent !== undefined) {
        this.found = fromEvent;
        this.foundIn = 'event';
        if (isAmbiguousNumber(fromEvent)) {
          event.doubles ??= doubleKeysOf(event.buf, event.start, event.end, SPAN_EVENT.attributes) ?? new Set();
          this.foundDouble = event.doubles.has(dim.name);
        } else this.foundDouble = false;
        return;
      }
    }
    const fromResource = ctx.resourceAttrs.get(dim.name);
    if (fromResource !== undefined) {
      this.found = fromResource;
      this.foundIn = 'resource';
      if (isAmbiguousNumber(fromResource)) {
        if (ctx.resourceDoubles === undefined) {
          const message = resourceMessage(ctx.bytes);
          ctx.resourceDoubles = (message && doubleKeysOf(message, 0, message.length, RESOURCE.attributes)) ?? new Set();
        }
        this.foundDouble = ctx.resourceDoubles.has(dim.name);
      } else this.foundDouble = false;
      return;
    }
    this.found = dim.default;
    this.foundDouble = false;
    this.foundIn = 'default';
  }

  /** A list or map value as it is on the wire (its nested numbers keep their types); called when a series is created. */
  private foundFromWire(name: string, ctx: BlockContext, span: SpanView, event: EventContext | undefined): PlainAnyValue | undefined {
    let range: [number, number] | undefined;
    let buf: Uint8Array = span.buf;
    if (this.foundIn === 'span') range = keyValueBytes(span.buf, span.start, span.end, SPAN.attributes, name);
    else if (this.foundIn === 'event' && event) range = keyValueBytes(event.buf, event.start, event.end, SPAN_EVENT.attributes, name);
    else if (this.foundIn === 'resource') {
      const message = resourceMessage(ctx.bytes);
      if (message) {
        buf = message;
        range = keyValueBytes(message, 0, message.length, RESOURCE.attributes, name);
      }
    }
    return range ? anyValueFromWire(buf, range[0], range[1]) : undefined;
  }

  private buildKey(ctx: BlockContext, span: SpanView, dims: readonly DimStep[], event: EventContext | undefined): string {
    const ex = this.exclude;
    let key = ex.has('service.name') ? '' : ctx.serviceName;
    if (!ex.has('span.name')) key += SEP + span.name;
    if (!ex.has('span.kind')) key += SEP + span.kindName;
    if (!ex.has('status.code')) key += SEP + span.statusName;
    for (const step of dims) {
      if (step.glob === undefined) {
        this.lookUp(step, ctx, span, event);
        const value = this.found;
        // The dimension's name is part of the key, so a missing dimension cannot shift the others.
        if (value !== undefined) key += `${SEP}${step.name}=${typeof value === 'string' ? value : goAsString(value, this.foundDouble)}`;
      } else {
        for (const name of this.globMatches(step.globs, ctx, span, event)) key += this.keyPart({ name, default: undefined }, ctx, span, event);
      }
    }
    if (this.config.enableMetricsSamplingMethod) key += `${SEP}${SAMPLING_METHOD_KEY}=${this.adjusted ? 'extrapolated' : 'counted'}`;
    return key;
  }

  private keyPart(dim: Dimension, ctx: BlockContext, span: SpanView, event: EventContext | undefined): string {
    this.lookUp(dim, ctx, span, event);
    const value = this.found;
    // The dimension's name is part of the key, so a missing dimension cannot shift the others.
    return value === undefined ? '' : `${SEP}${dim.name}=${typeof value === 'string' ? value : goAsString(value, this.foundDouble)}`;
  }

  /**
   * The attributes a list's glob dimensions select, as the Collector picks them: the span's keys
   * in sorted order, then the (event's and) resource's keys the span does not have, sorted; a key
   * counts once however many globs match it.
   */
  private globMatches(globs: readonly RegExp[], ctx: BlockContext, span: SpanView, event: EventContext | undefined): string[] {
    const spanAttrs = span.attributes();
    const out = [...spanAttrs.keys()].filter((k) => globs.some((g) => g.test(k))).sort();
    const others = new Set<string>(ctx.resourceAttrs.keys());
    if (event) for (const k of event.attrs.keys()) others.add(k);
    const rest = [...others].filter((k) => !spanAttrs.has(k) && globs.some((g) => g.test(k))).sort();
    return [...out, ...rest];
  }

  private buildAttributes(ctx: BlockContext, span: SpanView, dims: readonly DimStep[], event: EventContext | undefined): PlainKeyValue[] {
    const ex = this.exclude;
    const out: PlainKeyValue[] = [];
    if (!ex.has('service.name')) out.push({ key: 'service.name', value: { stringValue: ctx.serviceName } });
    if (!ex.has('span.name')) out.push({ key: 'span.name', value: { stringValue: span.name } });
    if (!ex.has('span.kind')) out.push({ key: 'span.kind', value: { stringValue: span.kindName } });
    if (!ex.has('status.code')) out.push({ key: 'status.code', value: { stringValue: span.statusName } });
    if (span.scopeName !== '' && this.includeScopes.has(span.scopeName)) {
      out.push({ key: SCOPE_NAME_KEY, value: { stringValue: span.scopeName } });
      if (span.scopeVersion !== '') out.push({ key: SCOPE_VERSION_KEY, value: { stringValue: span.scopeVersion } });
    }
    for (const step of dims) {
      if (step.glob === undefined) this.pushAttribute(out, step, ctx, span, event);
      else for (const name of this.globMatches(step.globs, ctx, span, event)) this.pushAttribute(out, { name, default: undefined }, ctx, span, event);
    }
    if (this.config.enableMetricsSamplingMethod) out.push({ key: SAMPLING_METHOD_KEY, value: { stringValue: this.adjusted ? 'extrapolated' : 'counted' } });
    return out;
  }

  private pushAttribute(out: PlainKeyValue[], dim: Dimension, ctx: BlockContext, span: SpanView, event: EventContext | undefined): void {
    this.lookUp(dim, ctx, span, event);
    const value = this.found;
    if (value === undefined) return;
    let typed: PlainAnyValue | undefined;
    if (this.foundDouble) typed = { doubleValue: value as number };
    else if (value !== null && typeof value === 'object' && !(value instanceof Uint8Array)) typed = this.foundFromWire(dim.name, ctx, span, event);
    out.push({ key: dim.name, value: typed ?? toAnyValue(value) });
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
    const sumPoints = (state: ResourceState, prefix: string, series: LimitedSeries<SumSeries>): PlainNumberPoint[] => {
      const points: PlainNumberPoint[] = [];
      for (const [key, s] of series.map) {
        const value = !delta && s.isFirst ? 0 : s.count;
        s.isFirst = false;
        const point: PlainNumberPoint = { attributes: s.attributes, startTimeUnixNano: startOf(state, prefix, key, s), timeUnixNano, asInt: value };
        if (s.exemplars) point.exemplars = exemplarsOut(s.exemplars, timeUnixNano);
        points.push(point);
      }
      return points;
    };

    const out: OutputResource[] = [];
    for (const state of this.resources.values()) {
      if (state.sums.map.size === 0) continue;
      const metrics: PlainMetric[] = [{ name: name('calls'), sum: { dataPoints: sumPoints(state, 'c', state.sums), aggregationTemporality: temporality, isMonotonic: true } }];
      if (!this.config.histogram.disable && this.config.histogram.exponential) {
        const points: PlainExponentialPoint[] = [];
        for (const [key, series] of state.histograms.map) {
          const point = exponentialPoint(series.exponential!, series.attributes, startOf(state, 'h', key, series), timeUnixNano);
          if (series.exemplars) point.exemplars = exemplarsOut(series.exemplars, timeUnixNano);
          points.push(point);
        }
        metrics.push({ name: name('duration'), unit: this.config.histogram.unit, exponentialHistogram: { dataPoints: points, aggregationTemporality: temporality } });
      } else if (!this.config.histogram.disable) {
        const points: PlainHistogramPoint[] = [];
        for (const [key, series] of state.histograms.map) {
          const point: PlainHistogramPoint = {
            attributes: series.attributes,
            startTimeUnixNano: startOf(state, 'h', key, series),
            timeUnixNano,
            count: series.count,
            sum: series.sum,
            bucketCounts: [...series.counts],
            explicitBounds: this.config.histogram.bounds,
          };
          if (series.exemplars) point.exemplars = exemplarsOut(series.exemplars, timeUnixNano);
          points.push(point);
        }
        metrics.push({ name: name('duration'), unit: this.config.histogram.unit, histogram: { dataPoints: points, aggregationTemporality: temporality } });
      }
      if (this.config.events.enabled) {
        metrics.push({ name: name('events'), sum: { dataPoints: sumPoints(state, 'e', state.events), aggregationTemporality: temporality, isMonotonic: true } });
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
    const { expirationMs, seriesExpirationMs } = this.config;
    if (expirationMs <= 0 && seriesExpirationMs <= 0 && this.maxExemplars === 0) return;
    for (const [key, state] of this.resources) {
      // Exemplars belong to the interval just flushed.
      if (this.maxExemplars > 0) {
        state.sums.clearExemplars();
        state.histograms.clearExemplars();
        state.events.clearExemplars();
      }
      if (seriesExpirationMs > 0) {
        state.sums.expire(now, seriesExpirationMs);
        state.histograms.expire(now, seriesExpirationMs);
        state.events.expire(now, seriesExpirationMs);
      }
      if (expirationMs > 0 && now - state.lastSeenMs >= expirationMs) this.resources.delete(key);
    }
  }
}

/**
 * A named dimension (glob undefined), or the glob dimensions of one list, matched together after
 * its named ones. One object shape for both, so the per-span loop stays monomorphic.
 */
interface DimStep {
  readonly name: string;
  readonly default: string | undefined;
  readonly glob: RegExp | undefined;
  readonly globs: readonly RegExp[];
}

function steps(list: readonly Dimension[]): DimStep[] {
  const globs = list.flatMap((d) => (d.glob ? [d.glob] : []));
  const named: DimStep[] = list.filter((d) => !d.glob).map((d) => ({ name: d.name, default: d.default, glob: undefined, globs: [] }));
  return globs.length > 0 ? [...named, { name: '', default: undefined, glob: globs[0], globs }] : named;
}

/** A number that may have been an int or a whole double on the wire (the decoded value cannot tell). */
function isAmbiguousNumber(value: AttrValue): boolean {
  return typeof value === 'number' && Number.isSafeInteger(value);
}

/** Keeps the first `max` spans of a series' interval, as the Collector does. */
function addExemplar(series: SeriesBase, span: SpanView, value: number, max: number): void {
  const list = (series.exemplars ??= []);
  if (list.length >= max || span.traceIdLen === 0) return;
  list.push({
    traceId: Uint8Array.prototype.slice.call(span.buf, span.traceIdStart, span.traceIdStart + span.traceIdLen),
    spanId: Uint8Array.prototype.slice.call(span.buf, span.spanIdStart, span.spanIdStart + span.spanIdLen),
    value,
  });
}

/** A series' exponential histogram as the Collector writes it: min and max once something was counted, no negative buckets. */
function exponentialPoint(h: ExponentialHistogram, attributes: PlainKeyValue[], startTimeUnixNano: string, timeUnixNano: string): PlainExponentialPoint {
  const point: PlainExponentialPoint = {
    attributes,
    startTimeUnixNano,
    timeUnixNano,
    count: h.count,
    sum: h.sum,
    scale: h.scale,
    zeroCount: h.zeroCount,
    positive: { offset: h.offset, bucketCounts: [...h.counts] },
    negative: { offset: 0, bucketCounts: [] },
  };
  if (h.count > 0) {
    point.min = h.min;
    point.max = h.max;
  }
  return point;
}

/** Exemplars carry the flush time, as in the Collector. */
function exemplarsOut(list: readonly Exemplar[], timeUnixNano: string): PlainExemplar[] {
  return list.map((e) => ({ timeUnixNano, asDouble: e.value, traceId: e.traceId, spanId: e.spanId }));
}

export const spanMetricsConnectorFactory: ConnectorFactory<SpanMetricsConfig> = {
  singleProcess: 'its series are cumulative counts per process; several workers would export the same series N times, each with part of the count',
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
