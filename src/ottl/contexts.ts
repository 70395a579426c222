// The Collector's OTTL contexts the filter processor uses (pkg/ottl/contexts v0.160.0), over a plain
// in-memory item. A caller reading straight from the wire builds its own OttlContext with the same
// field names; these are also the reference the tests and the conformance test use.

import type { OttlContext, OttlField, OttlFieldTable, OttlFunction } from './compile';
import { OttlId, OttlRuntimeError, OttlTime, rawAttributeEquals, type OttlValue } from './values';

export type Attributes = ReadonlyMap<string, OttlValue>;

export interface ResourceData {
  readonly attributes?: Attributes;
  readonly droppedAttributesCount?: number;
  readonly schemaUrl?: string;
}

export interface ScopeData {
  readonly name?: string;
  readonly version?: string;
  readonly attributes?: Attributes;
  readonly droppedAttributesCount?: number;
  readonly schemaUrl?: string;
}

export interface SpanData {
  readonly traceId?: Uint8Array;
  readonly spanId?: Uint8Array;
  readonly parentSpanId?: Uint8Array;
  readonly traceState?: string;
  readonly name?: string;
  /** OTLP SpanKind number (0 unspecified .. 5 consumer). */
  readonly kind?: number;
  readonly startTimeUnixNano?: bigint;
  readonly endTimeUnixNano?: bigint;
  readonly attributes?: Attributes;
  readonly droppedAttributesCount?: number;
  readonly droppedEventsCount?: number;
  readonly droppedLinksCount?: number;
  readonly status?: { readonly code?: number; readonly message?: string };
  readonly flags?: number;
}

export interface SpanEventData {
  readonly timeUnixNano?: bigint;
  readonly name?: string;
  readonly attributes?: Attributes;
  readonly droppedAttributesCount?: number;
}

/** pmetric.MetricType numbers: 0 empty, 1 gauge, 2 sum, 3 histogram, 4 exponential histogram, 5 summary. */
export type MetricType = 0 | 1 | 2 | 3 | 4 | 5;

export interface DataPointData {
  readonly attributes?: Attributes;
  readonly startTimeUnixNano?: bigint;
  readonly timeUnixNano?: bigint;
  /** Number data points: the value (a bigint is an int value). */
  readonly value?: number | bigint;
  /** Histogram, exponential histogram and summary points. */
  readonly count?: bigint;
  readonly sum?: number;
  readonly flags?: number;
}

export interface MetricData {
  readonly name?: string;
  readonly description?: string;
  readonly unit?: string;
  readonly type: MetricType;
  readonly aggregationTemporality?: number;
  readonly isMonotonic?: boolean;
  readonly dataPoints?: readonly DataPointData[];
}

/** One item a condition looks at, with the parts its context reads. */
export interface TelemetryItem {
  readonly resource: ResourceData;
  readonly scope?: ScopeData;
  readonly span?: SpanData;
  readonly spanEvent?: SpanEventData;
  readonly metric?: MetricData;
  readonly dataPoint?: DataPointData;
}

const EMPTY: Attributes = new Map();
const f = (get: (i: TelemetryItem) => OttlValue, extra: Partial<OttlField<TelemetryItem>> = {}): OttlField<TelemetryItem> => ({ get, ...extra });
const int = (n: number | undefined): bigint => BigInt(n ?? 0);
const DOC = 'https://github.com/open-telemetry/opentelemetry-collector-contrib/tree/main/pkg/ottl/contexts';

function need<T>(part: T | undefined, name: string): T {
  if (part === undefined) throw new OttlRuntimeError(`the item has no ${name}`);
  return part;
}

const span = (i: TelemetryItem): SpanData => need(i.span, 'span');
const scope = (i: TelemetryItem): ScopeData => i.scope ?? {};
const event = (i: TelemetryItem): SpanEventData => need(i.spanEvent, 'span event');
const metric = (i: TelemetryItem): MetricData => need(i.metric, 'metric');
const point = (i: TelemetryItem): DataPointData => need(i.dataPoint, 'data point');

function idField(kind: 'trace' | 'span', read: (i: TelemetryItem) => Uint8Array | undefined): OttlField<TelemetryItem> {
  const len = kind === 'trace' ? 16 : 8;
  const bytes = (i: TelemetryItem): Uint8Array => read(i) ?? new Uint8Array(len);
  return f((i) => new OttlId(kind, bytes(i)), {
    fields: {
      // pcommon's String(): empty for an all-zero id, lowercase hex otherwise.
      string: f((i) => {
        const b = bytes(i);
        return b.every((x) => x === 0) ? '' : Buffer.from(b).toString('hex');
      }),
    },
  });
}

const KIND_NAMES = ['Unspecified', 'Internal', 'Server', 'Client', 'Producer', 'Consumer'];
const KIND_SYMBOLS = ['SPAN_KIND_UNSPECIFIED', 'SPAN_KIND_INTERNAL', 'SPAN_KIND_SERVER', 'SPAN_KIND_CLIENT', 'SPAN_KIND_PRODUCER', 'SPAN_KIND_CONSUMER'];

export const RESOURCE_FIELDS: OttlFieldTable<TelemetryItem> = {
  attributes: f((i) => i.resource.attributes ?? EMPTY, { indexable: true }),
  dropped_attributes_count: f((i) => int(i.resource.droppedAttributesCount)),
  schema_url: f((i) => i.resource.schemaUrl ?? ''),
};

export const SCOPE_FIELDS: OttlFieldTable<TelemetryItem> = {
  name: f((i) => scope(i).name ?? ''),
  version: f((i) => scope(i).version ?? ''),
  attributes: f((i) => scope(i).attributes ?? EMPTY, { indexable: true }),
  dropped_attributes_count: f((i) => int(scope(i).droppedAttributesCount)),
  schema_url: f((i) => scope(i).schemaUrl ?? ''),
};

export const SPAN_FIELDS: OttlFieldTable<TelemetryItem> = {
  trace_id: idField('trace', (i) => span(i).traceId),
  span_id: idField('span', (i) => span(i).spanId),
  parent_span_id: idField('span', (i) => span(i).parentSpanId),
  trace_state: f((i) => span(i).traceState ?? ''),
  name: f((i) => span(i).name ?? ''),
  kind: f((i) => int(span(i).kind), {
    fields: {
      string: f((i) => KIND_NAMES[span(i).kind ?? 0] ?? ''),
      deprecated_string: f((i) => KIND_SYMBOLS[span(i).kind ?? 0] ?? ''),
    },
  }),
  start_time_unix_nano: f((i) => span(i).startTimeUnixNano ?? 0n),
  end_time_unix_nano: f((i) => span(i).endTimeUnixNano ?? 0n),
  start_time: f((i) => new OttlTime(span(i).startTimeUnixNano ?? 0n)),
  end_time: f((i) => new OttlTime(span(i).endTimeUnixNano ?? 0n)),
  attributes: f((i) => span(i).attributes ?? EMPTY, { indexable: true, rawStringEquals: (i, key, utf8) => rawAttributeEquals(span(i), key, utf8) }),
  dropped_attributes_count: f((i) => int(span(i).droppedAttributesCount)),
  dropped_events_count: f((i) => int(span(i).droppedEventsCount)),
  dropped_links_count: f((i) => int(span(i).droppedLinksCount)),
  status: {
    fields: {
      code: f((i) => int(span(i).status?.code)),
      message: f((i) => span(i).status?.message ?? ''),
    },
  },
  flags: f((i) => int(span(i).flags)),
};

export const SPAN_EVENT_FIELDS: OttlFieldTable<TelemetryItem> = {
  time_unix_nano: f((i) => event(i).timeUnixNano ?? 0n),
  time: f((i) => new OttlTime(event(i).timeUnixNano ?? 0n)),
  name: f((i) => event(i).name ?? ''),
  attributes: f((i) => event(i).attributes ?? EMPTY, { indexable: true, rawStringEquals: (i, key, utf8) => rawAttributeEquals(event(i), key, utf8) }),
  dropped_attributes_count: f((i) => int(event(i).droppedAttributesCount)),
};

export const METRIC_FIELDS: OttlFieldTable<TelemetryItem> = {
  name: f((i) => metric(i).name ?? ''),
  description: f((i) => metric(i).description ?? ''),
  unit: f((i) => metric(i).unit ?? ''),
  type: f((i) => BigInt(metric(i).type)),
  aggregation_temporality: f((i) => {
    const m = metric(i);
    return m.type === 2 || m.type === 3 || m.type === 4 ? int(m.aggregationTemporality) : null;
  }),
  is_monotonic: f((i) => (metric(i).type === 2 ? (metric(i).isMonotonic ?? false) : null)),
};

const isNumberPoint = (i: TelemetryItem): boolean => {
  const t = metric(i).type;
  return t === 1 || t === 2;
};

export const DATAPOINT_FIELDS: OttlFieldTable<TelemetryItem> = {
  attributes: f((i) => point(i).attributes ?? EMPTY, { indexable: true }),
  start_time_unix_nano: f((i) => point(i).startTimeUnixNano ?? 0n),
  time_unix_nano: f((i) => point(i).timeUnixNano ?? 0n),
  start_time: f((i) => new OttlTime(point(i).startTimeUnixNano ?? 0n)),
  time: f((i) => new OttlTime(point(i).timeUnixNano ?? 0n)),
  // pmetric returns 0 for the value type a number point does not hold.
  value_double: f((i) => {
    if (!isNumberPoint(i)) return null;
    const v = point(i).value;
    return typeof v === 'number' ? v : 0;
  }),
  value_int: f((i) => {
    if (!isNumberPoint(i)) return null;
    const v = point(i).value;
    return typeof v === 'bigint' ? v : 0n;
  }),
  count: f((i) => (isNumberPoint(i) ? null : (point(i).count ?? 0n))),
  sum: f((i) => (isNumberPoint(i) ? null : (point(i).sum ?? 0))),
  flags: f((i) => int(point(i).flags)),
};

export const SPAN_ENUMS: Readonly<Record<string, bigint>> = {
  SPAN_KIND_UNSPECIFIED: 0n, SPAN_KIND_INTERNAL: 1n, SPAN_KIND_SERVER: 2n, SPAN_KIND_CLIENT: 3n,
  SPAN_KIND_PRODUCER: 4n, SPAN_KIND_CONSUMER: 5n,
  STATUS_CODE_UNSET: 0n, STATUS_CODE_OK: 1n, STATUS_CODE_ERROR: 2n,
};

export const METRIC_ENUMS: Readonly<Record<string, bigint>> = {
  AGGREGATION_TEMPORALITY_UNSPECIFIED: 0n, AGGREGATION_TEMPORALITY_DELTA: 1n, AGGREGATION_TEMPORALITY_CUMULATIVE: 2n,
  METRIC_DATA_TYPE_NONE: 0n, METRIC_DATA_TYPE_GAUGE: 1n, METRIC_DATA_TYPE_SUM: 2n, METRIC_DATA_TYPE_HISTOGRAM: 3n,
  METRIC_DATA_TYPE_EXPONENTIAL_HISTOGRAM: 4n, METRIC_DATA_TYPE_SUMMARY: 5n,
};

export const DATAPOINT_ENUMS: Readonly<Record<string, bigint>> = { ...METRIC_ENUMS, FLAG_NONE: 0n, FLAG_NO_RECORDED_VALUE: 1n };

/** IsRootSpan(): the span has no parent span id (span context only). */
export const IS_ROOT_SPAN: OttlFunction<TelemetryItem> = {
  params: [],
  create: () => (i) => (span(i).parentSpanId ?? new Uint8Array(0)).every((b) => b === 0),
};

function datapointAttr(expectValue: boolean): OttlFunction<TelemetryItem> {
  return {
    params: expectValue ? [{ name: 'key', kind: 'string' }, { name: 'expected_val', kind: 'string' }] : [{ name: 'key', kind: 'string' }],
    create: (args) => {
      const key = args[0] && !Array.isArray(args[0]) ? ((args[0] as { get: (c: unknown) => unknown }).get(undefined) as string) : '';
      const expected = expectValue && args[1] ? ((args[1] as { get: (c: unknown) => unknown }).get(undefined) as string) : undefined;
      return (i) => {
        const m = metric(i);
        if (m.type === 0) throw new OttlRuntimeError('unknown metric type');
        // The first data point that has the key decides (a non-string value reads as "").
        for (const dp of m.dataPoints ?? []) {
          const attrs = dp.attributes ?? EMPTY;
          if (!attrs.has(key)) continue;
          if (expected === undefined) return true;
          const v = attrs.get(key);
          return (typeof v === 'string' ? v : '') === expected;
        }
        return false;
      };
    },
  };
}

export const RESOURCE_CONTEXT: OttlContext<TelemetryItem> = {
  name: 'resource',
  docRef: `${DOC}/ottlresource`,
  fields: { resource: RESOURCE_FIELDS },
};

export const SCOPE_CONTEXT: OttlContext<TelemetryItem> = {
  name: 'scope',
  docRef: `${DOC}/ottlscope`,
  fields: { scope: SCOPE_FIELDS, resource: RESOURCE_FIELDS },
};

export const SPAN_CONTEXT: OttlContext<TelemetryItem> = {
  name: 'span',
  docRef: `${DOC}/ottlspan`,
  fields: { span: SPAN_FIELDS, resource: RESOURCE_FIELDS, scope: SCOPE_FIELDS, instrumentation_scope: SCOPE_FIELDS },
  enums: SPAN_ENUMS,
  functions: { IsRootSpan: IS_ROOT_SPAN },
};

export const SPAN_EVENT_CONTEXT: OttlContext<TelemetryItem> = {
  name: 'spanevent',
  docRef: `${DOC}/ottlspanevent`,
  fields: { spanevent: SPAN_EVENT_FIELDS, span: SPAN_FIELDS, resource: RESOURCE_FIELDS, scope: SCOPE_FIELDS, instrumentation_scope: SCOPE_FIELDS },
  enums: SPAN_ENUMS,
};

export const METRIC_CONTEXT: OttlContext<TelemetryItem> = {
  name: 'metric',
  docRef: `${DOC}/ottlmetric`,
  fields: { metric: METRIC_FIELDS, resource: RESOURCE_FIELDS, scope: SCOPE_FIELDS, instrumentation_scope: SCOPE_FIELDS },
  enums: METRIC_ENUMS,
  functions: { HasAttrOnDatapoint: datapointAttr(true), HasAttrKeyOnDatapoint: datapointAttr(false) },
};

export const DATAPOINT_CONTEXT: OttlContext<TelemetryItem> = {
  name: 'datapoint',
  docRef: `${DOC}/ottldatapoint`,
  fields: { datapoint: DATAPOINT_FIELDS, metric: METRIC_FIELDS, resource: RESOURCE_FIELDS, scope: SCOPE_FIELDS, instrumentation_scope: SCOPE_FIELDS },
  enums: DATAPOINT_ENUMS,
};

/** The contexts trace_conditions infer among, and those of metric_conditions. */
export const TRACE_CONTEXTS: Readonly<Record<string, OttlContext<TelemetryItem>>> = {
  resource: RESOURCE_CONTEXT, scope: SCOPE_CONTEXT, span: SPAN_CONTEXT, spanevent: SPAN_EVENT_CONTEXT,
};
export const METRIC_CONTEXTS: Readonly<Record<string, OttlContext<TelemetryItem>>> = {
  resource: RESOURCE_CONTEXT, scope: SCOPE_CONTEXT, metric: METRIC_CONTEXT, datapoint: DATAPOINT_CONTEXT,
};
