import { readString } from '../../pdata/attributes';
import {
  EXPONENTIAL_HISTOGRAM_DATA_POINT,
  HISTOGRAM_DATA_POINT,
  METRIC,
  NUMBER_DATA_POINT,
  POINTS_HOLDER,
  RESOURCE_ITEMS,
  SCOPE_ITEMS,
  SUMMARY_DATA_POINT,
  fieldOf,
} from '../../pdata/fields';
import { WIRE_I64, WIRE_LEN, WireReader, readVarintBigInt, varintSize, writeVarint } from '../../pdata/wire';
import type { ConditionSequence, DataPointData, MetricData, MetricType, OttlValue, ResourceData, ScopeData, TelemetryItem } from '../../ottl';
import { WireAttributes, wireScope } from './wire-items';

// The filter processor's metric and datapoint conditions (`metrics: { metric, datapoint }`, and the
// scope, metric and datapoint conditions `metric_conditions` infers), read
// straight from an encoded ResourceMetrics. Semantics are the Collector's (filterprocessor v0.160.0):
// a metric a `metric` condition matches is removed; a data point a `datapoint` condition matches is
// removed; a metric left without data points, a ScopeMetrics left without metrics and a resource
// left without ScopeMetrics are removed. What the conditions read is decoded when they read it
// (of a point's attributes only the keys a condition looks up), and what is not removed keeps its bytes:
// only the messages that lose something get new length prefixes.

export interface MetricRules {
  readonly metric?: ConditionSequence<TelemetryItem>;
  readonly datapoint?: ConditionSequence<TelemetryItem>;
  /**
   * Scope-context conditions, which only `metric_conditions` have (the `metrics:` block has none): a
   * ScopeMetrics they match is removed before its metrics are read.
   */
  readonly scope?: ConditionSequence<TelemetryItem>;
}

/** Metric.data fields (gauge, sum, histogram, exponential_histogram, summary) -> pmetric.MetricType, by field number. */
const DATA_TYPE: (MetricType | undefined)[] = [];
DATA_TYPE[fieldOf(METRIC.gauge)] = 1;
DATA_TYPE[fieldOf(METRIC.sum)] = 2;
DATA_TYPE[fieldOf(METRIC.histogram)] = 3;
DATA_TYPE[fieldOf(METRIC.exponential_histogram)] = 4;
DATA_TYPE[fieldOf(METRIC.summary)] = 5;
/** Per MetricType: its data point's fields. */
const POINT_FIELDS = [undefined, NUMBER_DATA_POINT, NUMBER_DATA_POINT, HISTOGRAM_DATA_POINT, EXPONENTIAL_HISTOGRAM_DATA_POINT, SUMMARY_DATA_POINT] as const;
/** Per MetricType: the count and sum of the histogram-like points (Histogram, ExponentialHistogram, Summary). */
const POINT_COUNT_SUM = [undefined, undefined, undefined, HISTOGRAM_DATA_POINT, EXPONENTIAL_HISTOGRAM_DATA_POINT, SUMMARY_DATA_POINT] as const;

const TAG_SCOPE_METRICS = RESOURCE_ITEMS.scopes;
const TAG_METRIC = SCOPE_ITEMS.items;
const TAG_DATA_POINT = POINTS_HOLDER.data_points;

/** The data points left by the last filterScope / filterMetric call (they do not nest in time). */
let lastItems = 0;

/**
 * Applies `rules` to one encoded ResourceMetrics (a ResourceBlock's bytes, checked by the receiver).
 * undefined = unchanged (forward the same bytes), null = every metric removed (drop the resource).
 * A condition's evaluation error under error_mode `propagate` is thrown (OttlRuntimeError), as the
 * Collector then fails the whole batch; `ignore` and `silent` count it as false.
 */
export function filterMetricsBlock(bytes: Uint8Array, resource: ResourceData, rules: MetricRules): { bytes: Uint8Array; itemCount: number } | null | undefined {
  const buf = asBuffer(bytes);
  const reader = new WireReader(buf, 0, buf.length);
  const withItems = rules.metric !== undefined || rules.datapoint !== undefined || rules.scope !== undefined;
  const parts: Uint8Array[] = [];
  let changed = false;
  let scopes = 0;
  let items = 0;
  while (!reader.done) {
    const fieldStart = reader.pos;
    const tag = reader.tag();
    if (tag !== TAG_SCOPE_METRICS) {
      reader.skip(tag & 7);
      parts.push(buf.subarray(fieldStart, reader.pos));
      continue;
    }
    const s = reader.lengthDelimited();
    // Without scope, metric or datapoint conditions the Collector leaves scopes alone (it still
    // drops a resource that has none).
    const kept = withItems ? filterScope(buf, s, reader.pos, resource, rules) : undefined;
    if (kept === null) {
      changed = true;
      continue;
    }
    scopes++;
    items += lastItems;
    if (kept === undefined) parts.push(buf.subarray(fieldStart, reader.pos));
    else {
      changed = true;
      pushLenField(parts, TAG_SCOPE_METRICS, kept);
    }
  }
  if (scopes === 0) return null;
  if (!changed) return undefined;
  return { bytes: Buffer.concat(parts), itemCount: items };
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Appends field `tag` holding the concatenation of `payload` (a header, then the parts themselves). */
function pushLenField(parts: Uint8Array[], tag: number, payload: readonly Uint8Array[]): void {
  let len = 0;
  for (const p of payload) len += p.length;
  const header = Buffer.allocUnsafe(varintSize(tag) + varintSize(len));
  writeVarint(header, writeVarint(header, 0, tag), len);
  parts.push(header, ...payload);
}

/** One ScopeMetrics: undefined = unchanged, null = removed, else the parts of its new payload. Sets lastItems. */
function filterScope(buf: Buffer, start: number, end: number, resource: ResourceData, rules: MetricRules): Uint8Array[] | null | undefined {
  // Scope and schema_url are read when a condition asks (they may follow the metrics: the last wins).
  const scope = wireScope(buf, start, end);
  if (rules.scope?.eval({ resource, scope })) {
    lastItems = 0;
    return null;
  }
  const parts: Uint8Array[] = [];
  let changed = false;
  let metrics = 0;
  let items = 0;
  const reader = new WireReader(buf, start, end);
  while (!reader.done) {
    const fieldStart = reader.pos;
    const tag = reader.tag();
    if (tag !== TAG_METRIC) {
      reader.skip(tag & 7);
      parts.push(buf.subarray(fieldStart, reader.pos));
      continue;
    }
    const s = reader.lengthDelimited();
    const kept = filterMetric(buf, s, reader.pos, resource, scope, rules);
    if (kept === null) {
      changed = true;
      continue;
    }
    metrics++;
    items += lastItems;
    if (kept === undefined) parts.push(buf.subarray(fieldStart, reader.pos));
    else {
      changed = true;
      pushLenField(parts, TAG_METRIC, kept);
    }
  }
  lastItems = items;
  if (metrics === 0) return null;
  return changed ? parts : undefined;
}

interface MutableItem {
  resource: ResourceData;
  scope: ScopeData;
  metric: MetricData;
  dataPoint?: DataPointData;
}

/** One Metric: undefined = unchanged, null = removed, else the parts of its new payload. Sets lastItems. */
function filterMetric(buf: Buffer, start: number, end: number, resource: ResourceData, scope: ScopeData, rules: MetricRules): Uint8Array[] | null | undefined {
  const metric = new WireMetric(buf, start, end);
  const item: MutableItem = { resource, scope, metric };
  lastItems = metric.pointCount;
  if (rules.metric?.eval(item)) return null;
  const datapoint = rules.datapoint;
  // A metric without data (pmetric's MetricTypeEmpty) is left alone by datapoint conditions.
  if (!datapoint || metric.type === 0) return undefined;
  const points = metric.dataPoints;
  if (points.length === 0) return null;
  let removed: Uint8Array | undefined;
  let removedCount = 0;
  for (let i = 0; i < points.length; i++) {
    item.dataPoint = points[i];
    if (!datapoint.eval(item)) continue;
    (removed ??= new Uint8Array(points.length))[i] = 1;
    removedCount++;
  }
  if (removed === undefined) return undefined;
  if (removedCount === points.length) return null;
  lastItems = metric.pointCount - removedCount;
  return metric.rewrite(removed);
}

/**
 * One Metric's framing: its string fields' places, its data fields, and the data points of the
 * data field that counts. Like pdata, the last data field (the `data` oneof) decides the type and
 * holds the points; earlier ones are ignored by decoders but kept as bytes and counted, as the
 * receiver counts them.
 */
class WireMetric implements MetricData {
  readonly type: MetricType = 0;
  readonly aggregationTemporality: number | undefined;
  readonly isMonotonic: boolean | undefined;
  /** Data points in every data field (what the receiver counted). */
  readonly pointCount: number = 0;
  private nameStart = -1;
  private nameEnd = -1;
  private descriptionStart = -1;
  private descriptionEnd = -1;
  private unitStart = -1;
  private unitEnd = -1;
  /** The data field that counts: where its field starts (tag), its payload, and its points. */
  private dataFieldStart = -1;
  private dataTag = 0;
  private dataStart = -1;
  private dataEnd = -1;
  private points: WirePoint[] | undefined;

  constructor(
    private readonly buf: Buffer,
    private readonly start: number,
    private readonly end: number,
  ) {
    const reader = new WireReader(buf, start, end);
    let count = 0;
    while (!reader.done) {
      const fieldStart = reader.pos;
      const tag = reader.tag();
      if ((tag & 7) !== WIRE_LEN) {
        reader.skip(tag & 7);
        continue;
      }
      const s = reader.lengthDelimited();
      const dataType = DATA_TYPE[tag >>> 3];
      if (dataType !== undefined) {
        this.type = dataType;
        this.dataFieldStart = fieldStart;
        this.dataTag = tag;
        this.dataStart = s;
        this.dataEnd = reader.pos;
        count += countPoints(buf, s, reader.pos);
      } else if (tag === METRIC.name) {
        this.nameStart = s;
        this.nameEnd = reader.pos;
      } else if (tag === METRIC.description) {
        this.descriptionStart = s;
        this.descriptionEnd = reader.pos;
      } else if (tag === METRIC.unit) {
        this.unitStart = s;
        this.unitEnd = reader.pos;
      }
    }
    this.pointCount = count;
    if (this.type === 2 || this.type === 3 || this.type === 4) {
      // Sum, Histogram, ExponentialHistogram: aggregation_temporality; Sum: is_monotonic.
      let temporality = 0;
      let monotonic = false;
      const data = new WireReader(buf, this.dataStart, this.dataEnd);
      while (!data.done) {
        const tag = data.tag();
        if (tag === POINTS_HOLDER.aggregation_temporality) temporality = Number(BigInt.asIntN(32, readVarintBigInt(data)));
        else if (tag === POINTS_HOLDER.is_monotonic && this.type === 2) monotonic = data.varint() !== 0;
        else data.skip(tag & 7);
      }
      this.aggregationTemporality = temporality;
      if (this.type === 2) this.isMonotonic = monotonic;
    }
  }

  get name(): string {
    return this.nameStart < 0 ? '' : readString(this.buf, this.nameStart, this.nameEnd);
  }

  get description(): string {
    return this.descriptionStart < 0 ? '' : readString(this.buf, this.descriptionStart, this.descriptionEnd);
  }

  get unit(): string {
    return this.unitStart < 0 ? '' : readString(this.buf, this.unitStart, this.unitEnd);
  }

  /** The points of the data field that counts, each decoded only as far as it is read. */
  get dataPoints(): readonly WirePoint[] {
    if (this.points) return this.points;
    const points: WirePoint[] = [];
    if (this.type !== 0) {
      const reader = new WireReader(this.buf, this.dataStart, this.dataEnd);
      while (!reader.done) {
        const tag = reader.tag();
        if (tag === TAG_DATA_POINT) {
          const s = reader.lengthDelimited();
          points.push(new WirePoint(this.buf, s, reader.pos, this.type));
        } else reader.skip(tag & 7);
      }
    }
    this.points = points;
    return points;
  }

  /** The metric's payload without the points flagged in `removed` (indexes into dataPoints). */
  rewrite(removed: Uint8Array): Uint8Array[] {
    const parts: Uint8Array[] = [this.buf.subarray(this.start, this.dataFieldStart)];
    const data: Uint8Array[] = [];
    const reader = new WireReader(this.buf, this.dataStart, this.dataEnd);
    let index = 0;
    while (!reader.done) {
      const fieldStart = reader.pos;
      const tag = reader.tag();
      reader.skip(tag & 7);
      if (tag === TAG_DATA_POINT && removed[index++] === 1) continue;
      data.push(this.buf.subarray(fieldStart, reader.pos));
    }
    pushLenField(parts, this.dataTag, data);
    parts.push(this.buf.subarray(this.dataEnd, this.end));
    return parts;
  }
}

function countPoints(buf: Buffer, start: number, end: number): number {
  const reader = new WireReader(buf, start, end);
  let n = 0;
  while (!reader.done) {
    const tag = reader.tag();
    if (tag === TAG_DATA_POINT) n++;
    reader.skip(tag & 7);
  }
  return n;
}

/** A data point of any type; its scalars are read on first use, its attributes when asked for. */
class WirePoint implements DataPointData {
  private scanned = false;
  private start_ = 0n;
  private time_ = 0n;
  private value_: number | bigint | undefined;
  private count_ = 0n;
  private sum_ = 0;
  private flags_ = 0;
  private attrs: Map<string, OttlValue> | undefined;

  constructor(
    private readonly buf: Buffer,
    private readonly start: number,
    private readonly end: number,
    private readonly type: MetricType,
  ) {}

  get attributes(): ReadonlyMap<string, OttlValue> {
    this.attrs ??= new WireAttributes(this.buf, this.start, this.end, POINT_FIELDS[this.type]?.attributes ?? 0);
    return this.attrs;
  }

  get startTimeUnixNano(): bigint {
    this.scan();
    return this.start_;
  }

  get timeUnixNano(): bigint {
    this.scan();
    return this.time_;
  }

  get value(): number | bigint | undefined {
    this.scan();
    return this.value_;
  }

  get count(): bigint {
    this.scan();
    return this.count_;
  }

  get sum(): number {
    this.scan();
    return this.sum_;
  }

  get flags(): number {
    this.scan();
    return this.flags_;
  }

  private scan(): void {
    if (this.scanned) return;
    this.scanned = true;
    const number = this.type === 1 || this.type === 2;
    // Tags 0 (a point of no type, which dataPoints never makes) match no field.
    const fields = POINT_FIELDS[this.type];
    const startTag = fields?.start_time_unix_nano ?? 0;
    const timeTag = fields?.time_unix_nano ?? 0;
    const flagsTag = fields?.flags ?? 0;
    const countSum = POINT_COUNT_SUM[this.type];
    const buf = this.buf;
    const reader = new WireReader(buf, this.start, this.end);
    while (!reader.done) {
      const tag = reader.tag();
      if ((tag & 7) === WIRE_I64) {
        const at = reader.pos;
        reader.advance(8);
        // OTTL reads timestamps and counts as int64, as the Collector's int64(...) conversions do.
        if (tag === startTag) this.start_ = buf.readBigInt64LE(at);
        else if (tag === timeTag) this.time_ = buf.readBigInt64LE(at);
        else if (number) {
          if (tag === NUMBER_DATA_POINT.as_double) this.value_ = buf.readDoubleLE(at);
          else if (tag === NUMBER_DATA_POINT.as_int) this.value_ = buf.readBigInt64LE(at);
        } else if (countSum !== undefined) {
          if (tag === countSum.count) this.count_ = buf.readBigInt64LE(at);
          else if (tag === countSum.sum) this.sum_ = buf.readDoubleLE(at);
        }
      } else if (tag === flagsTag) {
        this.flags_ = Number(BigInt.asUintN(32, readVarintBigInt(reader)));
      } else reader.skip(tag & 7);
    }
  }
}
