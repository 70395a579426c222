import { isAscii, isValidUtf8 } from './attributes';
import { ANY_VALUE, ANY_VALUE_STRINDEX, KEY_VALUE } from './fields';
import { WIRE_I32, WIRE_I64, WIRE_LEN, WIRE_VARINT, WireFormatError, type WireReader } from './wire';

// A table of the OTLP messages below the resource level, used to check that forwarded bytes are
// well formed without building objects: right wire types, lengths in bounds, valid UTF-8, ids of
// the right size. Field numbers are the protocol's (opentelemetry-proto v1). This runs over every
// byte spansieve forwards, so checkMessage reads the wire inline and allocates nothing.

export const KIND_MSG = 0;
export const KIND_STRING = 1;
export const KIND_BYTES = 2;
export const KIND_VARINT = 3;
export const KIND_I64 = 4;
export const KIND_I32 = 5;
export const KIND_PACKED_I64 = 6;
export const KIND_PACKED_VARINT = 7;

/** The largest tag: field number 2^29 - 1 (protobuf's largest), wire type 7. */
export const MAX_TAG = 2 ** 32 - 1;

/** The wire type each kind is written with (packed kinds: their unpacked form). */
const WIRE_OF = [WIRE_LEN, WIRE_LEN, WIRE_LEN, WIRE_VARINT, WIRE_I64, WIRE_I32, WIRE_I64, WIRE_VARINT];

export interface FieldSpec {
  readonly name: string;
  readonly kind: number;
  /** Set for KIND_MSG (resolved once the whole table is built). */
  message: MessageSpec | undefined;
  /** Allowed byte lengths for a bytes field (ids). */
  readonly lengths: readonly number[] | undefined;
  /** For KIND_BYTES: a slot of `captured` that receives the field's start and length. */
  readonly capture: number | undefined;
}

export interface MessageSpec {
  readonly name: string;
  readonly fields: ReadonlyArray<FieldSpec | undefined>;
  /** 1 for the messages that make one level of attribute value nesting (ArrayValue, KeyValueList). */
  nesting: number;
}

/**
 * How deep attribute values may nest: array and kvlist values inside one another, counted from
 * the outermost one (the value `{"a": [1]}` is 2 levels deep). Deeper values fail the request.
 */
export const MAX_NESTING_DEPTH = 100_000;

/** The error for a value nested deeper than MAX_NESTING_DEPTH (the JSON path words it the same). */
export function nestingTooDeep(): string {
  return `attribute value nested more than ${MAX_NESTING_DEPTH} levels deep (the limit)`;
}

/** Start and length of captured bytes fields from the last checkMessage: [start0, len0, start1, len1, ...]. */
export const captured = new Int32Array(8);

const lazyMessages: { field: FieldSpec; resolve: () => MessageSpec }[] = [];

function field(name: string, kind: number, extra: Partial<Pick<FieldSpec, 'lengths' | 'capture'>> = {}): FieldSpec {
  return { name, kind, message: undefined, lengths: extra.lengths, capture: extra.capture };
}

export function spec(name: string, fields: Record<number, FieldSpec>): MessageSpec {
  const table: (FieldSpec | undefined)[] = [];
  for (const [num, f] of Object.entries(fields)) table[Number(num)] = f;
  return { name, fields: table, nesting: 0 };
}

/** A submessage field; `message` may name a spec defined later in the file. */
export const msg = (name: string, message: () => MessageSpec): FieldSpec => {
  const f = field(name, KIND_MSG);
  lazyMessages.push({ field: f, resolve: message });
  return f;
};
/** A submessage field whose spec already exists. */
export const sub = (name: string, message: MessageSpec): FieldSpec => {
  // Assigned, not spread, so every FieldSpec has one hidden class and the checker stays monomorphic.
  const f = field(name, KIND_MSG);
  f.message = message;
  return f;
};
export const str = (name: string): FieldSpec => field(name, KIND_STRING);
export const varint = (name: string): FieldSpec => field(name, KIND_VARINT);
const i64 = (name: string): FieldSpec => field(name, KIND_I64);
const i32 = (name: string): FieldSpec => field(name, KIND_I32);
const bytes = (name: string, lengths?: readonly number[], capture?: number): FieldSpec => field(name, KIND_BYTES, { lengths, capture });

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
ArrayValueSpec.nesting = 1;
KeyValueListSpec.nesting = 1;
const attributes = (name = 'attributes'): FieldSpec => msg(name, () => KeyValueSpec);

/** Resource.entity_refs (field 3): strings only. */
export const EntityRefSpec: MessageSpec = spec('EntityRef', { 1: str('schema_url'), 2: str('type'), 3: str('id_keys'), 4: str('description_keys') });

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
  1: bytes('trace_id', undefined, 0),
  2: bytes('span_id', undefined, 1),
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
  6: field('bucket_counts', KIND_PACKED_I64),
  7: field('explicit_bounds', KIND_PACKED_I64),
  8: msg('exemplars', () => ExemplarSpec),
  10: varint('flags'),
  11: i64('min'),
  12: i64('max'),
});
const BucketsSpec = spec('Buckets', { 1: varint('offset'), 2: field('bucket_counts', KIND_PACKED_VARINT) });
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

for (const { field: f, resolve } of lazyMessages.splice(0)) f.message = resolve();

/** Checks one field whose tag was just read; unknown fields are skipped, as protobuf requires. */
export function checkField(reader: WireReader, spec: MessageSpec, field: number, wireType: number): void {
  const f = spec.fields[field];
  if (f !== undefined && wireType === WIRE_LEN) {
    const start = reader.lengthDelimited();
    checkValue(reader.buf, start, reader.pos, f, WIRE_LEN, 0);
    return;
  }
  reader.skip(wireType);
  if (f !== undefined) checkValue(reader.buf, reader.pos, reader.pos, f, wireType, 0);
}

function fail(detail: string, name: string): never {
  throw new WireFormatError(detail).at(name);
}

// The messages checkDeep is inside of, as an explicit stack: attribute values may nest 100,000
// levels deep, far beyond what recursion on the JS stack takes. Shared: checkDeep calls nothing
// that could re-enter it.
let stackEnds = new Float64Array(64);
const stackSpecs: MessageSpec[] = new Array<MessageSpec>(64).fill(spec('', {}));
const stackFields: FieldSpec[] = new Array<FieldSpec>(64).fill(field('', KIND_MSG));

/** Makes room for deeper nesting (rare: OTLP's own messages nest less than 10 levels). */
function growStack(): void {
  const ends = new Float64Array(stackEnds.length * 2);
  ends.set(stackEnds);
  stackEnds = ends;
  const filler = stackSpecs[0]!;
  const fillerField = stackFields[0]!;
  for (let i = stackSpecs.length; i < ends.length; i++) {
    stackSpecs.push(filler);
    stackFields.push(fillerField);
  }
}

/** Checks a message's fields in [start, end) against its spec, submessages included. */
export function checkMessage(buf: Uint8Array, start: number, end: number, spec: MessageSpec): void {
  checkShallow(buf, start, end, spec, 0);
}

/**
 * Attribute value nesting checked by recursion; deeper values go to checkDeep. Recursion is the
 * faster of the two for OTLP's own few levels, and the JS stack takes the ~30 message levels
 * this allows anywhere.
 */
const RECURSION_NESTING = 8;

/** checkMessage by recursion; `depth` is the attribute value nesting around the message. */
function checkShallow(buf: Uint8Array, start: number, end: number, spec: MessageSpec, depth: number): void {
  const fields = spec.fields;
  let pos = start;
  while (pos < end) {
    // Tag: field numbers up to 2^28 fit in 5 bytes.
    let tag = buf[pos++]!;
    if (tag >= 0x80) {
      tag &= 0x7f;
      let multiplier = 128;
      for (;;) {
        if (pos >= end) throw new WireFormatError('truncated varint');
        const b = buf[pos++]!;
        tag += (b & 0x7f) * multiplier;
        if (b < 0x80) break;
        multiplier *= 128;
        if (multiplier > 2 ** 35) throw new WireFormatError('tag varint too long');
      }
      if (tag > MAX_TAG) throw new WireFormatError(`field number ${Math.floor(tag / 8)} is above the largest protobuf allows`);
    }
    const fieldNumber = Math.floor(tag / 8);
    const wireType = tag & 7;
    if (fieldNumber === 0) throw new WireFormatError('field number 0 is not allowed');
    const f = fields[fieldNumber];
    switch (wireType) {
      case WIRE_VARINT: {
        let n = 0;
        while (pos < end && buf[pos]! >= 0x80) {
          pos++;
          if (++n >= 10) throw new WireFormatError('varint longer than 10 bytes');
        }
        if (pos >= end) throw new WireFormatError('truncated varint');
        pos++;
        if (f !== undefined && WIRE_OF[f.kind] !== WIRE_VARINT) fail(`wire type 0, expected ${WIRE_OF[f.kind]}`, f.name);
        break;
      }
      case WIRE_I64:
        pos += 8;
        if (pos > end) throw new WireFormatError('truncated fixed-width field');
        if (f !== undefined && WIRE_OF[f.kind] !== WIRE_I64) fail(`wire type 1, expected ${WIRE_OF[f.kind]}`, f.name);
        break;
      case WIRE_I32:
        pos += 4;
        if (pos > end) throw new WireFormatError('truncated fixed-width field');
        if (f !== undefined && WIRE_OF[f.kind] !== WIRE_I32) fail(`wire type 5, expected ${WIRE_OF[f.kind]}`, f.name);
        break;
      case WIRE_LEN: {
        let len = buf[pos++]!;
        if (len >= 0x80) {
          len &= 0x7f;
          let multiplier = 128;
          for (;;) {
            if (pos >= end) throw new WireFormatError('truncated varint');
            const b = buf[pos++]!;
            len += (b & 0x7f) * multiplier;
            if (b < 0x80) break;
            multiplier *= 128;
            if (multiplier > 2 ** 35) throw new WireFormatError('length varint too long');
          }
        }
        if (pos > end || len > end - pos) throw new WireFormatError(`length ${len} runs past the end of the message`);
        const valueStart = pos;
        pos += len;
        if (f !== undefined) checkValue(buf, valueStart, pos, f, WIRE_LEN, depth);
        break;
      }
      default:
        if (wireType === 3 || wireType === 4) throw new WireFormatError(`field ${fieldNumber}: groups are not used by OTLP`);
        throw new WireFormatError(`field ${fieldNumber}: invalid wire type ${wireType}`);
    }
  }
}

/**
 * checkMessage with an explicit stack instead of recursion, for submessages nested deep. Its tag,
 * varint and length reading repeats checkShallow's on purpose: both read the wire inline, since a
 * shared reader would cost a call per field on every byte spansieve forwards (bench/scan.ts). One
 * walker for both was measured: checkMessage through checkDeep alone took 988–1610 ns per span in
 * `node dist/bench/scan.js` against 853–982 with checkShallow first (alternating runs, same machine).
 */
function checkDeep(buf: Uint8Array, start: number, end: number, spec: MessageSpec, depth: number): void {
  let fields = spec.fields;
  let pos = start;
  /** Enclosing messages on the stack. */
  let sp = 0;
  try {
    for (;;) {
      if (pos >= end) {
        if (sp === 0) return;
        // Back to the enclosing message (a submessage ends exactly at its length).
        depth -= spec.nesting;
        sp--;
        end = stackEnds[sp]!;
        spec = stackSpecs[sp]!;
        fields = spec.fields;
        continue;
      }
      // Tag: field numbers up to 2^28 fit in 5 bytes.
      let tag = buf[pos++]!;
      if (tag >= 0x80) {
        tag &= 0x7f;
        let multiplier = 128;
        for (;;) {
          if (pos >= end) throw new WireFormatError('truncated varint');
          const b = buf[pos++]!;
          tag += (b & 0x7f) * multiplier;
          if (b < 0x80) break;
          multiplier *= 128;
          if (multiplier > 2 ** 35) throw new WireFormatError('tag varint too long');
        }
        if (tag > MAX_TAG) throw new WireFormatError(`field number ${Math.floor(tag / 8)} is above the largest protobuf allows`);
      }
      const fieldNumber = Math.floor(tag / 8);
      const wireType = tag & 7;
      if (fieldNumber === 0) throw new WireFormatError('field number 0 is not allowed');
      const f = fields[fieldNumber];
      switch (wireType) {
        case WIRE_VARINT: {
          let n = 0;
          while (pos < end && buf[pos]! >= 0x80) {
            pos++;
            if (++n >= 10) throw new WireFormatError('varint longer than 10 bytes');
          }
          if (pos >= end) throw new WireFormatError('truncated varint');
          pos++;
          if (f !== undefined && WIRE_OF[f.kind] !== WIRE_VARINT) fail(`wire type 0, expected ${WIRE_OF[f.kind]}`, f.name);
          break;
        }
        case WIRE_I64:
          pos += 8;
          if (pos > end) throw new WireFormatError('truncated fixed-width field');
          if (f !== undefined && WIRE_OF[f.kind] !== WIRE_I64) fail(`wire type 1, expected ${WIRE_OF[f.kind]}`, f.name);
          break;
        case WIRE_I32:
          pos += 4;
          if (pos > end) throw new WireFormatError('truncated fixed-width field');
          if (f !== undefined && WIRE_OF[f.kind] !== WIRE_I32) fail(`wire type 5, expected ${WIRE_OF[f.kind]}`, f.name);
          break;
        case WIRE_LEN: {
          let len = buf[pos++]!;
          if (len >= 0x80) {
            len &= 0x7f;
            let multiplier = 128;
            for (;;) {
              if (pos >= end) throw new WireFormatError('truncated varint');
              const b = buf[pos++]!;
              len += (b & 0x7f) * multiplier;
              if (b < 0x80) break;
              multiplier *= 128;
              if (multiplier > 2 ** 35) throw new WireFormatError('length varint too long');
            }
          }
          if (pos > end || len > end - pos) throw new WireFormatError(`length ${len} runs past the end of the message`);
          if (f === undefined) {
            pos += len;
          } else if (f.kind === KIND_MSG) {
            // Into the submessage; its fields are read next, then the enclosing message's again.
            if (sp === stackEnds.length) growStack();
            stackEnds[sp] = end;
            stackSpecs[sp] = spec;
            stackFields[sp] = f;
            sp++;
            end = pos + len;
            spec = f.message!;
            fields = spec.fields;
            depth += spec.nesting;
            if (depth > MAX_NESTING_DEPTH) throw new WireFormatError(nestingTooDeep());
          } else {
            const valueStart = pos;
            pos += len;
            checkValue(buf, valueStart, pos, f, WIRE_LEN, depth);
          }
          break;
        }
        default:
          if (wireType === 3 || wireType === 4) throw new WireFormatError(`field ${fieldNumber}: groups are not used by OTLP`);
          throw new WireFormatError(`field ${fieldNumber}: invalid wire type ${wireType}`);
      }
    }
  } catch (err) {
    if (err instanceof WireFormatError && sp > 0) err.within(pathOf(sp));
    throw err;
  }
}

/** Path segments kept from each end of the stack; the error message elides the middle anyway. */
const PATH_ENDS = 8;

/** The field names leading to the message `sp` levels down the stack, the middle of a long path elided. */
function pathOf(sp: number): string[] {
  const names = (from: number, to: number) => stackFields.slice(from, to).map((f) => f.name);
  if (sp <= 2 * PATH_ENDS + 1) return names(0, sp);
  return [...names(0, PATH_ENDS), '…', ...names(sp - PATH_ENDS, sp)];
}

/**
 * Skips a varint at `pos` (at most 10 bytes, ending before `end`): the position after it, or -1
 * where checkShallow would refuse it.
 */
function skipVarint(buf: Uint8Array, pos: number, end: number): number {
  for (let n = 0; pos < end; n++) {
    if (n >= 10) return -1;
    if (buf[pos++]! < 0x80) return pos;
  }
  return -1;
}

// The tags isPlainKeyValue compares with, read once.
const KEY = KEY_VALUE.key;
const KEY_STRINDEX = KEY_VALUE.key_strindex;
const VALUE = KEY_VALUE.value;
const STRING_VALUE = ANY_VALUE.string_value;
const BYTES_VALUE = ANY_VALUE.bytes_value;
const BOOL_VALUE = ANY_VALUE.bool_value;
const INT_VALUE = ANY_VALUE.int_value;
const DOUBLE_VALUE = ANY_VALUE.double_value;
const STRINDEX_VALUE = ANY_VALUE_STRINDEX.string_value_strindex;

/** Where the payload found by the last payloadEnd starts. */
let payloadStart = 0;

/**
 * Reads a length (one or two bytes) at `pos` and returns where its payload ends, with the payload's
 * start left in `payloadStart`; -1 for a length of three or more bytes, a truncated one, or one
 * that runs past `end`.
 */
function payloadEnd(buf: Uint8Array, pos: number, end: number): number {
  if (pos >= end) return -1;
  let len = buf[pos++]!;
  if (len >= 0x80) {
    if (pos >= end) return -1;
    const high = buf[pos++]!;
    if (high >= 0x80) return -1;
    len = (len & 0x7f) + high * 128;
  }
  if (len > end - pos) return -1;
  payloadStart = pos;
  return pos + len;
}

/**
 * Whether [start, end) is a KeyValue that is certainly well formed: ASCII key, and a scalar value
 * (or none) of the expected wire types. Span and resource attributes are nearly all such, and this
 * checks one in a single pass instead of two checkShallow and three checkValue calls. It accepts a
 * subset of what checkShallow does; on false the caller checks the KeyValue the general way, which
 * also words any error (a KeyValue with a non-ASCII string is read twice: rare in OBI's output).
 */
export function isPlainKeyValue(buf: Uint8Array, start: number, end: number): boolean {
  let pos = start;
  while (pos < end) {
    const tag = buf[pos++]!;
    if (tag === KEY) {
      const keyEnd = payloadEnd(buf, pos, end);
      if (keyEnd < 0 || !isAscii(buf, payloadStart, keyEnd)) return false;
      pos = keyEnd;
    } else if (tag === VALUE) {
      const valueEnd = payloadEnd(buf, pos, end);
      if (valueEnd < 0) return false;
      pos = payloadStart;
      while (pos < valueEnd) {
        const valueTag = buf[pos++]!;
        if (valueTag === STRING_VALUE || valueTag === BYTES_VALUE) {
          const stringEnd = payloadEnd(buf, pos, valueEnd);
          if (stringEnd < 0 || (valueTag === STRING_VALUE && !isAscii(buf, payloadStart, stringEnd))) return false;
          pos = stringEnd;
        } else if (valueTag === BOOL_VALUE || valueTag === INT_VALUE || valueTag === STRINDEX_VALUE) {
          pos = skipVarint(buf, pos, valueEnd);
          if (pos < 0) return false;
        } else if (valueTag === DOUBLE_VALUE) {
          pos += 8;
          if (pos > valueEnd) return false;
        } else {
          return false;
        }
      }
    } else if (tag === KEY_STRINDEX) {
      pos = skipVarint(buf, pos, end);
      if (pos < 0) return false;
    } else {
      return false;
    }
  }
  return true;
}

/** Checks one known field's value in [start, end) (for LEN fields: the payload). */
function checkValue(buf: Uint8Array, start: number, end: number, f: FieldSpec, wireType: number, depth: number): void {
  if (wireType !== WIRE_LEN) {
    if (WIRE_OF[f.kind] !== wireType) fail(`wire type ${wireType}, expected ${WIRE_OF[f.kind]}`, f.name);
    return;
  }
  switch (f.kind) {
    case KIND_MSG: {
      const message = f.message!;
      if (message === KeyValueSpec && isPlainKeyValue(buf, start, end)) return;
      const nested = depth + message.nesting;
      try {
        if (nested < RECURSION_NESTING) checkShallow(buf, start, end, message, nested);
        else checkDeep(buf, start, end, message, nested);
      } catch (err) {
        throw err instanceof WireFormatError ? err.at(f.name) : err;
      }
      return;
    }
    case KIND_STRING:
      if (!isValidUtf8(buf, start, end)) fail('string is not valid UTF-8', f.name);
      return;
    case KIND_BYTES:
      if (f.lengths !== undefined && !f.lengths.includes(end - start)) {
        fail(`${end - start} bytes, expected ${f.lengths.filter((n) => n > 0).join(' or ')}`, f.name);
      }
      if (f.capture !== undefined) {
        captured[f.capture * 2] = start;
        captured[f.capture * 2 + 1] = end - start;
      }
      return;
    case KIND_PACKED_I64:
      if ((end - start) % 8 !== 0) fail('packed fixed64 length is not a multiple of 8', f.name);
      return;
    case KIND_PACKED_VARINT: {
      let n = 0;
      for (let i = start; i < end; i++) {
        if (buf[i]! < 0x80) n = 0;
        else if (++n >= 10) fail('varint longer than 10 bytes', f.name);
      }
      if (end > start && buf[end - 1]! >= 0x80) fail('truncated varint', f.name);
      return;
    }
    default:
      fail(`wire type 2, expected ${WIRE_OF[f.kind]}`, f.name);
  }
}
