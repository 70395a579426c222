import { isValidUtf8 } from './attributes';
import { WIRE_I32, WIRE_I64, WIRE_LEN, WIRE_VARINT, WireFormatError, WireReader } from './wire';

// A table of the OTLP messages below the resource level, used to check that forwarded bytes are
// well formed without building objects: right wire types, lengths in bounds, valid UTF-8, ids of
// the right size. Field numbers are the protocol's (opentelemetry-proto v1).

type Kind = 'msg' | 'string' | 'bytes' | 'varint' | 'i64' | 'i32' | 'packedI64' | 'packedVarint';

export interface FieldSpec {
  readonly name: string;
  readonly kind: Kind;
  readonly message?: MessageSpec;
  /** Allowed byte lengths for a bytes field (ids). */
  readonly lengths?: readonly number[];
}

export interface MessageSpec {
  readonly name: string;
  readonly fields: ReadonlyArray<FieldSpec | undefined>;
}

function spec(name: string, fields: Record<number, FieldSpec>): MessageSpec {
  const table: (FieldSpec | undefined)[] = [];
  for (const [num, field] of Object.entries(fields)) table[Number(num)] = field;
  return { name, fields: table };
}

const msg = (name: string, message: () => MessageSpec): FieldSpec => ({
  name,
  kind: 'msg',
  get message() {
    return message();
  },
});
const str = (name: string): FieldSpec => ({ name, kind: 'string' });
const varint = (name: string): FieldSpec => ({ name, kind: 'varint' });
const i64 = (name: string): FieldSpec => ({ name, kind: 'i64' });
const i32 = (name: string): FieldSpec => ({ name, kind: 'i32' });
const bytes = (name: string, lengths?: readonly number[]): FieldSpec => (lengths ? { name, kind: 'bytes', lengths } : { name, kind: 'bytes' });

export const AnyValueSpec: MessageSpec = spec('AnyValue', {
  1: str('string_value'),
  2: varint('bool_value'),
  3: varint('int_value'),
  4: i64('double_value'),
  5: msg('array_value', () => ArrayValueSpec),
  6: msg('kvlist_value', () => KeyValueListSpec),
  7: bytes('bytes_value'),
  8: varint('string_value_strindex'),
});
export const KeyValueSpec: MessageSpec = spec('KeyValue', {
  1: str('key'),
  2: msg('value', () => AnyValueSpec),
  3: varint('key_strindex'),
});
const ArrayValueSpec: MessageSpec = spec('ArrayValue', { 1: msg('values', () => AnyValueSpec) });
const KeyValueListSpec: MessageSpec = spec('KeyValueList', { 1: msg('values', () => KeyValueSpec) });
const attributes = (name = 'attributes'): FieldSpec => msg(name, () => KeyValueSpec);

export const InstrumentationScopeSpec: MessageSpec = spec('InstrumentationScope', {
  1: str('name'),
  2: str('version'),
  3: attributes(),
  4: varint('dropped_attributes_count'),
});

const EventSpec = spec('Event', {
  1: i64('time_unix_nano'),
  2: str('name'),
  3: attributes(),
  4: varint('dropped_attributes_count'),
});
const LinkSpec = spec('Link', {
  1: bytes('trace_id', [16]),
  2: bytes('span_id', [8]),
  3: str('trace_state'),
  4: attributes(),
  5: varint('dropped_attributes_count'),
  6: i32('flags'),
});
const StatusSpec = spec('Status', { 2: str('message'), 3: varint('code') });

/** Span fields 1 and 2 (ids) are checked by the span scanner itself, which also needs their values. */
export const SpanSpec: MessageSpec = spec('Span', {
  1: bytes('trace_id'),
  2: bytes('span_id'),
  3: str('trace_state'),
  4: bytes('parent_span_id', [0, 8]),
  5: str('name'),
  6: varint('kind'),
  7: i64('start_time_unix_nano'),
  8: i64('end_time_unix_nano'),
  9: attributes(),
  10: varint('dropped_attributes_count'),
  11: msg('events', () => EventSpec),
  12: varint('dropped_events_count'),
  13: msg('links', () => LinkSpec),
  14: varint('dropped_links_count'),
  15: msg('status', () => StatusSpec),
  16: i32('flags'),
});

const ExemplarSpec = spec('Exemplar', {
  7: attributes('filtered_attributes'),
  2: i64('time_unix_nano'),
  3: i64('as_double'),
  6: i64('as_int'),
  4: bytes('span_id', [0, 8]),
  5: bytes('trace_id', [0, 16]),
});
export const NumberDataPointSpec = spec('NumberDataPoint', {
  7: attributes(),
  2: i64('start_time_unix_nano'),
  3: i64('time_unix_nano'),
  4: i64('as_double'),
  6: i64('as_int'),
  5: msg('exemplars', () => ExemplarSpec),
  8: varint('flags'),
});
export const HistogramDataPointSpec = spec('HistogramDataPoint', {
  9: attributes(),
  2: i64('start_time_unix_nano'),
  3: i64('time_unix_nano'),
  4: i64('count'),
  5: i64('sum'),
  6: { name: 'bucket_counts', kind: 'packedI64' },
  7: { name: 'explicit_bounds', kind: 'packedI64' },
  8: msg('exemplars', () => ExemplarSpec),
  10: varint('flags'),
  11: i64('min'),
  12: i64('max'),
});
const BucketsSpec = spec('Buckets', { 1: varint('offset'), 2: { name: 'bucket_counts', kind: 'packedVarint' } });
export const ExponentialHistogramDataPointSpec = spec('ExponentialHistogramDataPoint', {
  1: attributes(),
  2: i64('start_time_unix_nano'),
  3: i64('time_unix_nano'),
  4: i64('count'),
  5: i64('sum'),
  6: varint('scale'),
  7: i64('zero_count'),
  8: msg('positive', () => BucketsSpec),
  9: msg('negative', () => BucketsSpec),
  10: varint('flags'),
  11: msg('exemplars', () => ExemplarSpec),
  12: i64('min'),
  13: i64('max'),
  14: i64('zero_threshold'),
});
const ValueAtQuantileSpec = spec('ValueAtQuantile', { 1: i64('quantile'), 2: i64('value') });
export const SummaryDataPointSpec = spec('SummaryDataPoint', {
  7: attributes(),
  2: i64('start_time_unix_nano'),
  3: i64('time_unix_nano'),
  4: i64('count'),
  5: i64('sum'),
  6: msg('quantile_values', () => ValueAtQuantileSpec),
  8: varint('flags'),
});

const WIRE_TYPE_OF: Record<Kind, number> = {
  msg: WIRE_LEN,
  string: WIRE_LEN,
  bytes: WIRE_LEN,
  varint: WIRE_VARINT,
  i64: WIRE_I64,
  i32: WIRE_I32,
  packedI64: WIRE_I64,
  packedVarint: WIRE_VARINT,
};

/** Checks one field whose tag was just read; unknown fields are skipped, as protobuf requires. */
export function checkField(reader: WireReader, spec: MessageSpec, field: number, wireType: number): void {
  const fieldSpec = spec.fields[field];
  if (fieldSpec === undefined) {
    reader.skip(wireType);
    return;
  }
  const packable = fieldSpec.kind === 'packedI64' || fieldSpec.kind === 'packedVarint';
  if (packable && wireType === WIRE_LEN) {
    const start = reader.lengthDelimited();
    if (fieldSpec.kind === 'packedI64' && (reader.pos - start) % 8 !== 0) {
      throw new WireFormatError('packed fixed64 length is not a multiple of 8').at(fieldSpec.name);
    }
    if (fieldSpec.kind === 'packedVarint') {
      const inner = new WireReader(reader.buf, start, reader.pos);
      while (!inner.done) inner.varint();
    }
    return;
  }
  if (wireType !== WIRE_TYPE_OF[fieldSpec.kind]) {
    throw new WireFormatError(`wire type ${wireType}, expected ${WIRE_TYPE_OF[fieldSpec.kind]}`).at(fieldSpec.name);
  }
  switch (fieldSpec.kind) {
    case 'msg': {
      const start = reader.lengthDelimited();
      try {
        checkMessage(reader.buf, start, reader.pos, fieldSpec.message!);
      } catch (err) {
        throw err instanceof WireFormatError ? err.at(fieldSpec.name) : err;
      }
      return;
    }
    case 'string': {
      const start = reader.lengthDelimited();
      if (!isValidUtf8(reader.buf, start, reader.pos)) throw new WireFormatError('string is not valid UTF-8').at(fieldSpec.name);
      return;
    }
    case 'bytes': {
      const start = reader.lengthDelimited();
      const len = reader.pos - start;
      if (fieldSpec.lengths && !fieldSpec.lengths.includes(len)) {
        throw new WireFormatError(`${len} bytes, expected ${fieldSpec.lengths.filter((n) => n > 0).join(' or ')}`).at(fieldSpec.name);
      }
      return;
    }
    default:
      reader.skip(wireType);
  }
}

export function checkMessage(buf: Uint8Array, start: number, end: number, spec: MessageSpec): void {
  const reader = new WireReader(buf, start, end);
  while (!reader.done) {
    const tag = reader.tag();
    checkField(reader, spec, Math.floor(tag / 8), tag & 7);
  }
}
