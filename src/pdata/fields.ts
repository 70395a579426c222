import { WIRE_I32, WIRE_I64, WIRE_LEN, WIRE_VARINT } from './wire';

// The OTLP fields that the wire readers find by number (scan.ts, spans.ts, attributes.ts,
// batch.ts, codec.ts, the prometheus accumulator, the connectors' metric output, the samplers, the filter processor), named once here
// as tags: field number × 8 + wire type, what WireReader.tag() returns, so a reader compares
// with them directly. Keys are the upstream field names. test/pdata/schema.test.ts checks every
// entry against proto/ (opentelemetry-proto as published): number, name and wire type.
// (schema.ts keeps the scanner's full message tables; the same test checks those.)

const tag = (field: number, wireType: number): number => field * 8 + wireType;

/** The field number of a tag (for APIs that take a number; call it once, at module load). */
export const fieldOf = (t: number): number => t >>> 3;

/** ExportTraceServiceRequest.resource_spans, ExportMetricsServiceRequest.resource_metrics. */
export const EXPORT_REQUEST = { resources: tag(1, WIRE_LEN) } as const;

/** ResourceSpans / ResourceMetrics; `scopes` is scope_spans / scope_metrics. */
export const RESOURCE_ITEMS = { resource: tag(1, WIRE_LEN), scopes: tag(2, WIRE_LEN), schema_url: tag(3, WIRE_LEN) } as const;

/** ScopeSpans / ScopeMetrics; `items` is spans / metrics. */
export const SCOPE_ITEMS = { scope: tag(1, WIRE_LEN), items: tag(2, WIRE_LEN), schema_url: tag(3, WIRE_LEN) } as const;

export const RESOURCE = { attributes: tag(1, WIRE_LEN), dropped_attributes_count: tag(2, WIRE_VARINT) } as const;

export const INSTRUMENTATION_SCOPE = {
  name: tag(1, WIRE_LEN),
  version: tag(2, WIRE_LEN),
  attributes: tag(3, WIRE_LEN),
  dropped_attributes_count: tag(4, WIRE_VARINT),
} as const;

export const SPAN = {
  trace_id: tag(1, WIRE_LEN),
  span_id: tag(2, WIRE_LEN),
  trace_state: tag(3, WIRE_LEN),
  parent_span_id: tag(4, WIRE_LEN),
  name: tag(5, WIRE_LEN),
  kind: tag(6, WIRE_VARINT),
  start_time_unix_nano: tag(7, WIRE_I64),
  end_time_unix_nano: tag(8, WIRE_I64),
  attributes: tag(9, WIRE_LEN),
  dropped_attributes_count: tag(10, WIRE_VARINT),
  events: tag(11, WIRE_LEN),
  dropped_events_count: tag(12, WIRE_VARINT),
  links: tag(13, WIRE_LEN),
  dropped_links_count: tag(14, WIRE_VARINT),
  status: tag(15, WIRE_LEN),
  flags: tag(16, WIRE_I32),
} as const;

export const SPAN_EVENT = {
  time_unix_nano: tag(1, WIRE_I64),
  name: tag(2, WIRE_LEN),
  attributes: tag(3, WIRE_LEN),
  dropped_attributes_count: tag(4, WIRE_VARINT),
} as const;

export const STATUS = { message: tag(2, WIRE_LEN), code: tag(3, WIRE_VARINT) } as const;

export const KEY_VALUE = { key: tag(1, WIRE_LEN), value: tag(2, WIRE_LEN), key_strindex: tag(3, WIRE_VARINT) } as const;

export const ANY_VALUE = {
  string_value: tag(1, WIRE_LEN),
  bool_value: tag(2, WIRE_VARINT),
  int_value: tag(3, WIRE_VARINT),
  double_value: tag(4, WIRE_I64),
  array_value: tag(5, WIRE_LEN),
  kvlist_value: tag(6, WIRE_LEN),
  bytes_value: tag(7, WIRE_LEN),
} as const;

/** AnyValue's dictionary reference (profiles); apart from ANY_VALUE, whose entries are the values spansieve decodes. */
export const ANY_VALUE_STRINDEX = { string_value_strindex: tag(8, WIRE_VARINT) } as const;

/** ArrayValue.values and KeyValueList.values. */
export const VALUES = { values: tag(1, WIRE_LEN) } as const;

export const METRIC = {
  name: tag(1, WIRE_LEN),
  description: tag(2, WIRE_LEN),
  unit: tag(3, WIRE_LEN),
  gauge: tag(5, WIRE_LEN),
  sum: tag(7, WIRE_LEN),
  histogram: tag(9, WIRE_LEN),
  exponential_histogram: tag(10, WIRE_LEN),
  summary: tag(11, WIRE_LEN),
  metadata: tag(12, WIRE_LEN),
} as const;

/**
 * Gauge, Sum, Histogram, ExponentialHistogram, Summary: data_points in all; the scanner checks
 * fields 2 and 3 as varints in each (Sum has both, the histograms field 2).
 */
export const POINTS_HOLDER = {
  data_points: tag(1, WIRE_LEN),
  aggregation_temporality: tag(2, WIRE_VARINT),
  is_monotonic: tag(3, WIRE_VARINT),
} as const;

// The data points' fields the filter processor reads (the I64 ones are fixed64 / sfixed64 / double).

export const NUMBER_DATA_POINT = {
  start_time_unix_nano: tag(2, WIRE_I64),
  time_unix_nano: tag(3, WIRE_I64),
  as_double: tag(4, WIRE_I64),
  as_int: tag(6, WIRE_I64),
  attributes: tag(7, WIRE_LEN),
  flags: tag(8, WIRE_VARINT),
} as const;

export const HISTOGRAM_DATA_POINT = {
  start_time_unix_nano: tag(2, WIRE_I64),
  time_unix_nano: tag(3, WIRE_I64),
  count: tag(4, WIRE_I64),
  sum: tag(5, WIRE_I64),
  attributes: tag(9, WIRE_LEN),
  flags: tag(10, WIRE_VARINT),
} as const;

export const EXPONENTIAL_HISTOGRAM_DATA_POINT = {
  attributes: tag(1, WIRE_LEN),
  start_time_unix_nano: tag(2, WIRE_I64),
  time_unix_nano: tag(3, WIRE_I64),
  count: tag(4, WIRE_I64),
  sum: tag(5, WIRE_I64),
  flags: tag(10, WIRE_VARINT),
} as const;

export const SUMMARY_DATA_POINT = {
  start_time_unix_nano: tag(2, WIRE_I64),
  time_unix_nano: tag(3, WIRE_I64),
  count: tag(4, WIRE_I64),
  sum: tag(5, WIRE_I64),
  attributes: tag(7, WIRE_LEN),
  flags: tag(8, WIRE_VARINT),
} as const;

/** Every table above, for the test that checks them against proto/. */
export const OTLP_FIELD_TABLES = {
  EXPORT_REQUEST,
  RESOURCE_ITEMS,
  SCOPE_ITEMS,
  RESOURCE,
  INSTRUMENTATION_SCOPE,
  SPAN,
  SPAN_EVENT,
  STATUS,
  KEY_VALUE,
  ANY_VALUE,
  ANY_VALUE_STRINDEX,
  VALUES,
  METRIC,
  POINTS_HOLDER,
  NUMBER_DATA_POINT,
  HISTOGRAM_DATA_POINT,
  EXPONENTIAL_HISTOGRAM_DATA_POINT,
  SUMMARY_DATA_POINT,
} as const;
