import type { Logger } from 'pino';
import { attrValueToString, type Attributes } from '../../../pdata/attributes';
import { RESOURCE_ITEMS } from '../../../pdata/fields';
import { WireReader } from '../../../pdata/wire';
import type { ResourceBlock } from '../../../pdata/batch';
import { TooDeepError, decodeWithinLimit, types } from '../../../pdata/codec';
import {
  SERVICE_INSTANCE_ID,
  SERVICE_NAME,
  SERVICE_NAMESPACE,
  anyValueToString,
  attributesToLabels,
  buildMetricName,
  formatDouble,
  jobAndInstance,
  type DecodedAnyValue,
  type LabelPairs,
  type OtelMetricType,
} from './translation';

// The state both Prometheus exporters keep: the latest value of every series, by its Prometheus
// identity (name + labels), with delta points accumulated into cumulative ones. The prometheus
// exporter renders all of it on each scrape; prometheusremotewrite sends the series each batch
// touched. Exponential histograms are kept in their own form (so deltas of different scales
// merge) and rendered as classic histograms with the exponential buckets' bounds as `le`.

export type FamilyType = 'counter' | 'gauge' | 'histogram' | 'summary';

export interface HistogramValue {
  readonly bounds: readonly number[];
  /** Per bucket (not cumulative); one more than bounds, the last for values above every bound. */
  readonly counts: number[];
  count: number;
  sum: number;
}

export interface ExponentialValue {
  scale: number;
  zeroCount: number;
  zeroThreshold: number;
  positive: Map<number, number>;
  negative: Map<number, number>;
  count: number;
  sum: number;
}

export interface SummaryValue {
  readonly count: number;
  readonly sum: number;
  readonly quantiles: ReadonlyArray<readonly [number, number]>;
}

export interface Series {
  readonly family: Family;
  /** Sorted by name; includes job, instance and const labels. */
  readonly labels: LabelPairs;
  readonly resourceKey: string;
  value: number;
  histogram: HistogramValue | undefined;
  exponential: ExponentialValue | undefined;
  summary: SummaryValue | undefined;
  /** Data point times, in nanoseconds since the epoch (as doubles). */
  startNs: number;
  timeNs: number;
  /** Wall-clock ms of the last update, for expiry. */
  updatedAt: number;
  /** prometheusremotewrite: timestamp (ms) of the last sample sent, so none goes out of order. */
  lastSentMs: number;
  /** The latest point's exemplars (counters and histograms), as the Collector's exporter keeps them. */
  exemplars: readonly PromExemplar[] | undefined;
}

/** An exemplar as OpenMetrics shows it: trace_id / span_id labels (hex), value, time in seconds. */
export interface PromExemplar {
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
  readonly timestampSec: number;
}

export interface Family {
  readonly name: string;
  readonly type: FamilyType;
  readonly help: string;
  readonly series: Map<string, Series>;
}

export interface AccumulatorOptions {
  /** Already normalized (see normalizeNamespace). */
  readonly namespace: string;
  readonly addMetricSuffixes: boolean;
  readonly constLabels: LabelPairs;
  /** Copy every resource attribute onto every series (and emit no target_info). */
  readonly resourceToTelemetry: boolean;
  readonly expirationMs: number;
}

export interface AccumulateResult {
  /** job + instance of the block's resource (the key of its target_info). */
  readonly resourceKey: string;
  readonly touched: Series[];
  /** Points not translated (unspecified temporality, type conflicts, invalid names). */
  readonly dropped: number;
  /** Points accepted. */
  readonly accepted: number;
}

interface ResourceInfo {
  /** target_info's labels (sorted); undefined when the resource has neither job nor instance. */
  readonly targetInfo: LabelPairs | undefined;
  updatedAt: number;
  lastSentMs: number;
}

// Shapes protobufjs produces for ResourceMetrics with { longs: Number, bytes: String, enums: Number }.
interface KV {
  key?: string;
  value?: DecodedAnyValue;
}
interface DecodedExemplar {
  timeUnixNano?: number;
  asDouble?: number;
  asInt?: number;
  /** base64 (decoded with bytes: String). */
  traceId?: string;
  spanId?: string;
}
interface NumberPoint {
  attributes?: KV[];
  startTimeUnixNano?: number;
  timeUnixNano?: number;
  asDouble?: number;
  asInt?: number;
  flags?: number;
  exemplars?: DecodedExemplar[];
}
interface HistogramPoint {
  attributes?: KV[];
  startTimeUnixNano?: number;
  timeUnixNano?: number;
  count?: number;
  sum?: number;
  bucketCounts?: number[];
  explicitBounds?: number[];
  flags?: number;
  exemplars?: DecodedExemplar[];
}
interface ExponentialPoint {
  attributes?: KV[];
  startTimeUnixNano?: number;
  timeUnixNano?: number;
  count?: number;
  sum?: number;
  scale?: number;
  zeroCount?: number;
  zeroThreshold?: number;
  positive?: { offset?: number; bucketCounts?: number[] };
  negative?: { offset?: number; bucketCounts?: number[] };
  flags?: number;
}
interface SummaryPoint {
  attributes?: KV[];
  startTimeUnixNano?: number;
  timeUnixNano?: number;
  count?: number;
  sum?: number;
  quantileValues?: Array<{ quantile?: number; value?: number }>;
  flags?: number;
}
interface DecodedMetric {
  name?: string;
  description?: string;
  unit?: string;
  gauge?: { dataPoints?: NumberPoint[] };
  sum?: { dataPoints?: NumberPoint[]; aggregationTemporality?: number; isMonotonic?: boolean };
  histogram?: { dataPoints?: HistogramPoint[]; aggregationTemporality?: number };
  exponentialHistogram?: { dataPoints?: ExponentialPoint[]; aggregationTemporality?: number };
  summary?: { dataPoints?: SummaryPoint[] };
}
interface DecodedResourceMetrics {
  scopeMetrics?: Array<{ scope?: { name?: string; version?: string }; metrics?: DecodedMetric[] }>;
}

const DELTA = 1;
const CUMULATIVE = 2;
const FLAG_NO_RECORDED_VALUE = 1;

type PointKind = 'number' | 'histogram' | 'exponential' | 'summary';

export class Accumulator {
  readonly families = new Map<string, Family>();
  private readonly resources = new Map<string, ResourceInfo>();
  private readonly warned = new Set<string>();

  constructor(
    private readonly options: AccumulatorOptions,
    private readonly logger: Logger,
  ) {}

  /** Folds one ResourceMetrics into the state; returns the series it changed. */
  accumulate(block: ResourceBlock, now: number): AccumulateResult {
    // The resource is not decoded again: its attributes are in the block (bounded), while the
    // message may hold any number of them.
    const resource = block.attributes;
    const { job, instance } = jobAndInstance(resource);
    const resourceKey = `${job ?? ''}\u0000${instance ?? ''}`;
    let message;
    try {
      message = decodeWithinLimit(types.ResourceMetrics, withoutResource(block.bytes));
    } catch (err) {
      // Valid, but nested too deep to translate: its points are dropped (counted), not refused.
      if (!(err instanceof TooDeepError)) throw err;
      this.logger.warn({ job, instance, points: block.itemCount }, `metrics dropped: ${err.message}`);
      return { resourceKey, touched: [], dropped: block.itemCount, accepted: 0 };
    }
    const decoded = types.ResourceMetrics.toObject(message, {
      longs: Number,
      bytes: String,
      enums: Number,
      defaults: false,
    }) as DecodedResourceMetrics;
    const resourceLabels: LabelPairs = [];
    if (this.options.resourceToTelemetry) {
      resourceLabels.push(...attributesToLabels([...resource].map(([k, v]) => [k, attrValueToString(v)] as const)));
    } else {
      this.rememberResource(resourceKey, resource, job, instance, now);
    }

    const touched: Series[] = [];
    let dropped = 0;
    let accepted = 0;
    for (const scopeMetrics of decoded.scopeMetrics ?? []) {
      const scopeLabels: LabelPairs = [];
      if (scopeMetrics.scope?.name) scopeLabels.push(['otel_scope_name', scopeMetrics.scope.name]);
      if (scopeMetrics.scope?.version) scopeLabels.push(['otel_scope_version', scopeMetrics.scope.version]);
      for (const metric of scopeMetrics.metrics ?? []) {
        const shape = this.shapeOf(metric);
        if (!shape) continue;
        const points = shape.points;
        if (!shape.type) {
          dropped += points.length;
          continue;
        }
        const family = this.familyFor(metric, shape.otelType, shape.type);
        if (!family) {
          dropped += points.length;
          continue;
        }
        for (const point of points) {
          const labels = this.labelsFor(point.attributes, resourceLabels, scopeLabels, job, instance);
          const key = labels.map(([n, v]) => `${n}\u0001${v}`).join('\u0000');
          if (((point.flags ?? 0) & FLAG_NO_RECORDED_VALUE) !== 0) {
            family.series.delete(key);
            continue;
          }
          const series = this.apply(family, key, labels, resourceKey, shape.kind, shape.temporality, point, now);
          if (series) {
            touched.push(series);
            accepted++;
          }
        }
      }
    }
    return { resourceKey, touched, dropped, accepted };
  }

  /** Drops series not updated within metric_expiration; returns the live families, by name. */
  collect(now: number): Family[] {
    const cutoff = now - this.options.expirationMs;
    const out: Family[] = [];
    const live = new Set<string>();
    for (const [name, family] of this.families) {
      for (const [key, series] of family.series) {
        if (series.updatedAt < cutoff) family.series.delete(key);
        else live.add(series.resourceKey);
      }
      if (family.series.size === 0) this.families.delete(name);
      else out.push(family);
    }
    for (const key of this.resources.keys()) if (!live.has(key)) this.resources.delete(key);
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** target_info label sets of the resources that still have series (call after collect). */
  targetInfos(): LabelPairs[] {
    const out: LabelPairs[] = [];
    for (const info of this.resources.values()) if (info.targetInfo) out.push(info.targetInfo);
    return out;
  }

  /** For remote write: target_info of one resource, once per millisecond at most. */
  targetInfoToSend(resourceKey: string, nowMs: number): { labels: LabelPairs; timestampMs: number } | undefined {
    const info = this.resources.get(resourceKey);
    if (!info?.targetInfo) return undefined;
    const ts = Math.max(nowMs, info.lastSentMs);
    if (ts <= info.lastSentMs) return undefined;
    info.lastSentMs = ts;
    return { labels: info.targetInfo, timestampMs: ts };
  }

  get targetInfoName(): string {
    return this.options.namespace ? `${this.options.namespace}_target_info` : 'target_info';
  }

  private rememberResource(key: string, resource: Attributes, job: string | undefined, instance: string | undefined, now: number): void {
    let targetInfo: LabelPairs | undefined;
    if (job !== undefined || instance !== undefined) {
      const entries: Array<readonly [string, string]> = [];
      for (const [k, v] of resource) {
        if (k === SERVICE_NAME || k === SERVICE_NAMESPACE || k === SERVICE_INSTANCE_ID) continue;
        entries.push([k, attrValueToString(v)]);
      }
      const labels = attributesToLabels(entries).filter(([n]) => n !== 'job' && n !== 'instance');
      if (job !== undefined) labels.push(['job', job]);
      if (instance !== undefined) labels.push(['instance', instance]);
      targetInfo = sortLabels(labels);
    }
    const existing = this.resources.get(key);
    this.resources.set(key, { targetInfo, updatedAt: now, lastSentMs: existing?.lastSentMs ?? 0 });
  }

  private shapeOf(metric: DecodedMetric):
    | { kind: PointKind; otelType: OtelMetricType; type: FamilyType | undefined; temporality: number; points: Array<NumberPoint & HistogramPoint & ExponentialPoint & SummaryPoint> }
    | undefined {
    if (metric.gauge) return { kind: 'number', otelType: 'gauge', type: 'gauge', temporality: CUMULATIVE, points: metric.gauge.dataPoints ?? [] };
    if (metric.sum) {
      const monotonic = metric.sum.isMonotonic === true;
      const temporality = metric.sum.aggregationTemporality ?? 0;
      return {
        kind: 'number',
        otelType: monotonic ? 'monotonic_counter' : 'non_monotonic_counter',
        type: temporality === DELTA || temporality === CUMULATIVE ? (monotonic ? 'counter' : 'gauge') : this.refuse(metric, 'its aggregation temporality is unspecified'),
        temporality,
        points: metric.sum.dataPoints ?? [],
      };
    }
    if (metric.histogram) {
      const temporality = metric.histogram.aggregationTemporality ?? 0;
      return {
        kind: 'histogram',
        otelType: 'histogram',
        type: temporality === DELTA || temporality === CUMULATIVE ? 'histogram' : this.refuse(metric, 'its aggregation temporality is unspecified'),
        temporality,
        points: metric.histogram.dataPoints ?? [],
      };
    }
    if (metric.exponentialHistogram) {
      const temporality = metric.exponentialHistogram.aggregationTemporality ?? 0;
      return {
        kind: 'exponential',
        otelType: 'exponential_histogram',
        type: temporality === DELTA || temporality === CUMULATIVE ? 'histogram' : this.refuse(metric, 'its aggregation temporality is unspecified'),
        temporality,
        points: metric.exponentialHistogram.dataPoints ?? [],
      };
    }
    if (metric.summary) return { kind: 'summary', otelType: 'summary', type: 'summary', temporality: CUMULATIVE, points: metric.summary.dataPoints ?? [] };
    return undefined;
  }

  private refuse(metric: DecodedMetric, why: string): undefined {
    this.warnOnce(`refuse:${metric.name ?? ''}`, { metric: metric.name }, `dropping metric: ${why}`);
    return undefined;
  }

  private familyFor(metric: DecodedMetric, otelType: OtelMetricType, type: FamilyType): Family | undefined {
    const name = buildMetricName(metric.name ?? '', metric.unit ?? '', otelType, this.options.namespace, this.options.addMetricSuffixes);
    if (name === '') {
      this.warnOnce(`name:${metric.name ?? ''}`, { metric: metric.name }, 'dropping metric: its name has no valid Prometheus characters');
      return undefined;
    }
    let family = this.families.get(name);
    if (!family) {
      family = { name, type, help: metric.description ?? '', series: new Map() };
      this.families.set(name, family);
    } else if (family.type !== type) {
      this.warnOnce(`type:${name}:${type}`, { metric: metric.name, prometheusName: name, existing: family.type, dropped: type }, 'dropping points: a metric of another type has the same Prometheus name');
      return undefined;
    }
    return family;
  }

  private labelsFor(attributes: KV[] | undefined, resourceLabels: LabelPairs, scopeLabels: LabelPairs, job: string | undefined, instance: string | undefined): LabelPairs {
    const labels = new Map<string, string>(attributesToLabels((attributes ?? []).map((kv) => [kv.key ?? '', anyValueToString(kv.value)] as const)));
    for (const [n, v] of resourceLabels) if (!labels.has(n)) labels.set(n, v);
    for (const [n, v] of scopeLabels) labels.set(n, v);
    if (job !== undefined) labels.set('job', job);
    if (instance !== undefined) labels.set('instance', instance);
    for (const [n, v] of this.options.constLabels) if (!labels.has(n)) labels.set(n, v);
    return sortLabels([...labels]);
  }

  private apply(
    family: Family,
    key: string,
    labels: LabelPairs,
    resourceKey: string,
    kind: PointKind,
    temporality: number,
    point: NumberPoint & HistogramPoint & ExponentialPoint & SummaryPoint,
    now: number,
  ): Series | undefined {
    const timeNs = point.timeUnixNano ?? 0;
    const startNs = point.startTimeUnixNano ?? 0;
    let series = family.series.get(key);
    const delta = temporality === DELTA;
    if (series) {
      // Only newer points change a series (a delta point at the same time is a duplicate).
      if (delta ? timeNs <= series.timeNs && timeNs !== 0 : timeNs < series.timeNs) return undefined;
    } else {
      series = {
        family,
        labels,
        resourceKey,
        value: 0,
        histogram: undefined,
        exponential: undefined,
        summary: undefined,
        startNs,
        timeNs,
        updatedAt: now,
        lastSentMs: 0,
        exemplars: undefined,
      };
      family.series.set(key, series);
      // A new delta series starts from zero; a cumulative one takes the point as it is.
      if (delta) this.reset(series, kind);
    }
    switch (kind) {
      case 'number': {
        const value = point.asDouble ?? point.asInt ?? 0;
        series.value = delta ? series.value + value : value;
        break;
      }
      case 'histogram': {
        const incoming: HistogramValue = {
          bounds: point.explicitBounds ?? [],
          counts: (point.bucketCounts ?? []).map(Number),
          count: point.count ?? 0,
          sum: point.sum ?? 0,
        };
        // A histogram without buckets has one: everything is above no bound.
        if (incoming.counts.length === 0) incoming.counts.push(incoming.count);
        const prev = series.histogram;
        if (delta && prev && sameBounds(prev.bounds, incoming.bounds) && prev.counts.length === incoming.counts.length) {
          for (let i = 0; i < prev.counts.length; i++) prev.counts[i]! += incoming.counts[i]!;
          prev.count += incoming.count;
          prev.sum += incoming.sum;
        } else {
          series.histogram = incoming;
        }
        break;
      }
      case 'exponential': {
        const incoming = exponentialFromPoint(point);
        series.exponential = delta && series.exponential ? mergeExponential(series.exponential, incoming) : incoming;
        break;
      }
      case 'summary':
        series.summary = {
          count: point.count ?? 0,
          sum: point.sum ?? 0,
          quantiles: (point.quantileValues ?? []).map((q) => [q.quantile ?? 0, q.value ?? 0] as const),
        };
        break;
    }
    if (kind === 'number' || kind === 'histogram') series.exemplars = point.exemplars?.length ? point.exemplars.map(toPromExemplar) : undefined;
    if (!delta) series.startNs = startNs;
    series.timeNs = timeNs;
    series.updatedAt = now;
    return series;
  }

  private reset(series: Series, kind: PointKind): void {
    series.value = 0;
    if (kind === 'histogram') series.histogram = undefined;
    if (kind === 'exponential') series.exponential = undefined;
  }

  private warnOnce(key: string, fields: Record<string, unknown>, message: string): void {
    if (this.warned.has(key)) return;
    if (this.warned.size < 10_000) this.warned.add(key);
    this.logger.warn(fields, message);
  }
}

function sortLabels(labels: LabelPairs): LabelPairs {
  return labels.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

function sameBounds(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function exponentialFromPoint(point: ExponentialPoint): ExponentialValue {
  const buckets = (b: { offset?: number; bucketCounts?: number[] } | undefined): Map<number, number> => {
    const map = new Map<number, number>();
    const offset = b?.offset ?? 0;
    (b?.bucketCounts ?? []).forEach((count, i) => {
      if (count > 0) map.set(offset + i, Number(count));
    });
    return map;
  };
  return {
    scale: point.scale ?? 0,
    zeroCount: point.zeroCount ?? 0,
    zeroThreshold: point.zeroThreshold ?? 0,
    positive: buckets(point.positive),
    negative: buckets(point.negative),
    count: point.count ?? 0,
    sum: point.sum ?? 0,
  };
}

/** Adds two exponential histograms, first bringing both to the coarser scale. */
export function mergeExponential(a: ExponentialValue, b: ExponentialValue): ExponentialValue {
  const scale = Math.min(a.scale, b.scale);
  const positive = downscale(a.positive, a.scale - scale);
  const negative = downscale(a.negative, a.scale - scale);
  for (const [i, c] of downscale(b.positive, b.scale - scale)) positive.set(i, (positive.get(i) ?? 0) + c);
  for (const [i, c] of downscale(b.negative, b.scale - scale)) negative.set(i, (negative.get(i) ?? 0) + c);
  return {
    scale,
    zeroCount: a.zeroCount + b.zeroCount,
    zeroThreshold: Math.max(a.zeroThreshold, b.zeroThreshold),
    positive,
    negative,
    count: a.count + b.count,
    sum: a.sum + b.sum,
  };
}

function downscale(buckets: ReadonlyMap<number, number>, by: number): Map<number, number> {
  const out = new Map<number, number>();
  const factor = 2 ** by;
  for (const [i, c] of buckets) {
    const j = Math.floor(i / factor);
    out.set(j, (out.get(j) ?? 0) + c);
  }
  return out;
}

/**
 * An exponential histogram as a classic one: negative buckets (upper bound -base^i), the zero
 * bucket (upper bound zero_threshold), positive buckets (upper bound base^(i+1)), every bucket
 * between the lowest and highest populated index included so the `le` set stays stable.
 */
export function exponentialToHistogram(e: ExponentialValue): HistogramValue {
  // 2^(k * 2^-scale) rather than base^k: exact at integer powers of two, whatever the scale.
  const bound = (k: number) => 2 ** (k * 2 ** -e.scale);
  const bounds: number[] = [];
  const counts: number[] = [];
  if (e.negative.size > 0) {
    const keys = [...e.negative.keys()];
    const hi = Math.max(...keys);
    const lo = Math.min(...keys);
    for (let i = hi; i >= lo; i--) {
      bounds.push(-bound(i));
      counts.push(e.negative.get(i) ?? 0);
    }
  }
  let zeroCarry = e.zeroCount;
  const positiveKeys = [...e.positive.keys()];
  const firstPositiveBound = positiveKeys.length > 0 ? bound(Math.min(...positiveKeys) + 1) : Infinity;
  if (e.zeroThreshold < firstPositiveBound && (bounds.length === 0 || e.zeroThreshold > bounds[bounds.length - 1]!)) {
    bounds.push(e.zeroThreshold);
    counts.push(zeroCarry);
    zeroCarry = 0;
  }
  if (positiveKeys.length > 0) {
    const hi = Math.max(...positiveKeys);
    const lo = Math.min(...positiveKeys);
    for (let i = lo; i <= hi; i++) {
      bounds.push(bound(i + 1));
      counts.push((e.positive.get(i) ?? 0) + (i === lo ? zeroCarry : 0));
    }
    zeroCarry = 0;
  }
  counts.push(zeroCarry);
  return { bounds, counts, count: e.count, sum: e.sum };
}

/** One exposition line of a series: suffix (_bucket, _sum, ...), an extra label (le, quantile) and the value. */
export interface Sample {
  readonly suffix: '' | '_bucket' | '_sum' | '_count';
  readonly extra: readonly [string, string] | undefined;
  readonly value: number;
  /** Shown in OpenMetrics only. */
  readonly exemplar?: PromExemplar;
}

function toPromExemplar(e: DecodedExemplar): PromExemplar {
  const labels: Record<string, string> = {};
  const traceId = e.traceId ? Buffer.from(e.traceId, 'base64').toString('hex') : '';
  const spanId = e.spanId ? Buffer.from(e.spanId, 'base64').toString('hex') : '';
  if (traceId !== '' && !/^0+$/.test(traceId)) labels.trace_id = traceId;
  if (spanId !== '' && !/^0+$/.test(spanId)) labels.span_id = spanId;
  return { labels, value: e.asDouble ?? e.asInt ?? 0, timestampSec: (e.timeUnixNano ?? 0) / 1e9 };
}

/**
 * Which bucket (index into bounds, bounds.length for +Inf) shows each exemplar, as client_golang
 * places them: the first bucket whose bound is >= the value, a later exemplar replacing an earlier one.
 */
function exemplarsByBucket(bounds: readonly number[], exemplars: readonly PromExemplar[] | undefined): Map<number, PromExemplar> | undefined {
  if (!exemplars) return undefined;
  const out = new Map<number, PromExemplar>();
  for (const e of exemplars) {
    let i = 0;
    while (i < bounds.length && bounds[i]! < e.value) i++;
    out.set(i, e);
  }
  return out;
}

/** The samples of a series in Prometheus form (histogram buckets cumulative, ending with +Inf). */
export function samplesOf(series: Series): Sample[] {
  switch (series.family.type) {
    case 'counter': {
      // A counter shows its last exemplar (client_golang keeps one).
      const exemplar = series.exemplars?.[series.exemplars.length - 1];
      return [exemplar ? { suffix: '', extra: undefined, value: series.value, exemplar } : { suffix: '', extra: undefined, value: series.value }];
    }
    case 'gauge':
      return [{ suffix: '', extra: undefined, value: series.value }];
    case 'histogram': {
      const h = series.histogram ?? (series.exponential ? exponentialToHistogram(series.exponential) : { bounds: [], counts: [0], count: 0, sum: 0 });
      const byBucket = series.histogram ? exemplarsByBucket(h.bounds, series.exemplars) : undefined;
      const out: Sample[] = [];
      let cumulative = 0;
      for (let i = 0; i <= h.bounds.length; i++) {
        const last = i === h.bounds.length;
        cumulative += last ? 0 : (h.counts[i] ?? 0);
        const sample: Sample = { suffix: '_bucket', extra: ['le', last ? '+Inf' : formatDouble(h.bounds[i]!)], value: last ? h.count : cumulative };
        const exemplar = byBucket?.get(i);
        out.push(exemplar ? { ...sample, exemplar } : sample);
      }
      out.push({ suffix: '_sum', extra: undefined, value: h.sum });
      out.push({ suffix: '_count', extra: undefined, value: h.count });
      return out;
    }
    case 'summary': {
      const s = series.summary ?? { count: 0, sum: 0, quantiles: [] };
      return [
        ...s.quantiles.map(([q, v]): Sample => ({ suffix: '', extra: ['quantile', formatDouble(q)], value: v })),
        { suffix: '_sum', extra: undefined, value: s.sum },
        { suffix: '_count', extra: undefined, value: s.count },
      ];
    }
  }
}

/** A ResourceMetrics' bytes without its `resource` field (1); the same bytes when it has none. */
function withoutResource(bytes: Uint8Array): Uint8Array {
  const reader = new WireReader(bytes, 0, bytes.length);
  const parts: Uint8Array[] = [];
  let sawResource = false;
  while (!reader.done) {
    const at = reader.pos;
    const tag = reader.tag();
    reader.skip(tag & 7);
    if (tag === RESOURCE_ITEMS.resource) sawResource = true;
    else parts.push(bytes.subarray(at, reader.pos));
  }
  return sawResource ? Buffer.concat(parts) : bytes;
}
