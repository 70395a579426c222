// The Collector's typed getters (pkg/ottl expression.go): how a converter argument is converted to the
// type the converter wants, and which failures are OTTL TypeErrors (the Is* converters answer false
// for exactly those).

import { OttlDuration, OttlId, OttlRuntimeError, OttlTime, OttlTypeError, goTypeName, type OttlValue } from './values';

export type ParamKind =
  | 'Getter' | 'StringGetter' | 'StringLikeGetter' | 'IntGetter' | 'IntLikeGetter' | 'FloatGetter'
  | 'FloatLikeGetter' | 'BoolGetter' | 'BoolLikeGetter' | 'PMapGetter' | 'PSliceGetter'
  | 'ByteSliceLikeGetter' | 'TimeGetter' | 'DurationGetter'
  // Literal-only parameters (Go string / int64 / float64 / bool fields).
  | 'string' | 'int64' | 'float64' | 'bool';

/** Converts a value for a parameter kind; throws OttlTypeError or OttlRuntimeError. `undefined` = "not ok". */
export function convertFor(kind: ParamKind, v: OttlValue): unknown {
  switch (kind) {
    case 'Getter': return v;
    case 'StringGetter':
      if (typeof v === 'string') return v;
      throw expected('string', v);
    case 'IntGetter':
      if (typeof v === 'bigint') return v;
      throw expected('int64', v);
    case 'FloatGetter':
      if (typeof v === 'number') return v;
      throw expected('float64', v);
    case 'BoolGetter':
      if (typeof v === 'boolean') return v;
      throw expected('bool', v);
    case 'PMapGetter':
      if (v instanceof Map) return v;
      throw expected('pcommon.Map', v);
    case 'PSliceGetter':
      if (Array.isArray(v)) return v;
      throw expected('pcommon.Slice', v);
    case 'TimeGetter':
      if (v instanceof OttlTime) return v;
      throw expected('time', v);
    case 'DurationGetter':
      if (v instanceof OttlDuration) return v;
      throw expected('duration', v);
    case 'StringLikeGetter': return stringLike(v);
    case 'IntLikeGetter': return intLike(v);
    case 'FloatLikeGetter': return floatLike(v);
    case 'BoolLikeGetter': return boolLike(v);
    case 'ByteSliceLikeGetter': return byteSliceLike(v);
    default:
      throw new OttlRuntimeError(`unsupported argument type: ${kind}`);
  }
}

function expected(what: string, v: OttlValue): OttlTypeError {
  return new OttlTypeError(`expected ${what} but got ${v === null ? 'nil' : goTypeName(v)}`);
}

export function stringLike(v: OttlValue): string | undefined {
  if (v === null) return undefined;
  if (typeof v === 'string') return v;
  if (v instanceof Uint8Array) return Buffer.from(v).toString('hex');
  return goJson(v);
}

/** encoding/json's rendering of a value (map keys sorted, bytes as base64, Go float format). */
export function goJson(v: OttlValue): string {
  if (v === null) return 'null';
  switch (typeof v) {
    case 'string': return JSON.stringify(v);
    case 'boolean': return v ? 'true' : 'false';
    case 'bigint': return v.toString();
    case 'number':
      if (!Number.isFinite(v)) throw new OttlTypeError('unsupported type: float64');
      // Go and JavaScript agree on the shortest form and on the exponent thresholds (1e-6, 1e21).
      return Object.is(v, -0) ? '-0' : String(v);
    default:
  }
  if (v instanceof Uint8Array) return JSON.stringify(Buffer.from(v).toString('base64'));
  if (v instanceof OttlId) return `[${Array.from(v.bytes).join(',')}]`;
  if (v instanceof OttlTime) return JSON.stringify(formatRfc3339Nano(v.unixNano));
  if (v instanceof OttlDuration) return v.nanos.toString();
  if (Array.isArray(v)) return `[${(v as readonly OttlValue[]).map(goJson).join(',')}]`;
  const m = v as ReadonlyMap<string, OttlValue>;
  const keys = [...m.keys()].sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${goJson(m.get(k) ?? null)}`).join(',')}}`;
}

function formatRfc3339Nano(unixNano: bigint): string {
  const ms = unixNano / 1_000_000n;
  let frac = (((unixNano % 1_000_000_000n) + 1_000_000_000n) % 1_000_000_000n).toString().padStart(9, '0').replace(/0+$/, '');
  const base = new Date(Number(ms)).toISOString().slice(0, 19);
  if (frac) frac = `.${frac}`;
  return `${base}${frac}Z`;
}

const GO_INT = /^[+-]?[0-9]+$/;
const GO_FLOAT = /^[+-]?(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf(?:inity)?|nan)$/i;

/** strconv.ParseInt(s, 10, 64). */
export function goParseInt(s: string): bigint {
  if (!GO_INT.test(s)) throw new OttlRuntimeError(`strconv.ParseInt: parsing ${JSON.stringify(s)}: invalid syntax`);
  const v = BigInt(s);
  if (v !== BigInt.asIntN(64, v)) throw new OttlRuntimeError(`strconv.ParseInt: parsing ${JSON.stringify(s)}: value out of range`);
  return v;
}

/** strconv.ParseFloat(s, 64) for decimal input (hex floats and `_` separators are not accepted). */
export function goParseFloat(s: string): number {
  if (!GO_FLOAT.test(s)) throw new OttlRuntimeError(`strconv.ParseFloat: parsing ${JSON.stringify(s)}: invalid syntax`);
  const lower = s.toLowerCase().replace(/^\+/, '');
  if (lower.endsWith('nan')) return NaN;
  if (lower.endsWith('inf') || lower.endsWith('infinity')) return lower.startsWith('-') ? -Infinity : Infinity;
  const v = Number(s);
  if (!Number.isFinite(v)) throw new OttlRuntimeError(`strconv.ParseFloat: parsing ${JSON.stringify(s)}: value out of range`);
  return v;
}

function intLike(v: OttlValue): bigint | undefined {
  if (v === null) return undefined;
  switch (typeof v) {
    case 'bigint': return v;
    case 'string': return goParseInt(v);
    case 'number': return truncateToInt64(v);
    case 'boolean': return v ? 1n : 0n;
    default:
  }
  throw new OttlTypeError(`unsupported type: ${goTypeName(v)}`);
}

/** Go's int64(float64): truncation; out-of-range and NaN give the minimum int64 on amd64. */
export function truncateToInt64(v: number): bigint {
  if (!Number.isFinite(v) || v >= 9223372036854775808 || v < -9223372036854775808) return -(1n << 63n);
  return BigInt(Math.trunc(v));
}

function floatLike(v: OttlValue): number | undefined {
  if (v === null) return undefined;
  switch (typeof v) {
    case 'number': return v;
    case 'bigint': return Number(v);
    case 'string': return goParseFloat(v);
    case 'boolean': return v ? 1 : 0;
    default:
  }
  throw new OttlTypeError(`unsupported type: ${goTypeName(v)}`);
}

const GO_BOOL: Readonly<Record<string, boolean>> = {
  '1': true, t: true, T: true, TRUE: true, true: true, True: true,
  '0': false, f: false, F: false, FALSE: false, false: false, False: false,
};

function boolLike(v: OttlValue): boolean | undefined {
  if (v === null) return undefined;
  switch (typeof v) {
    case 'boolean': return v;
    case 'bigint': return v !== 0n;
    case 'number': return v !== 0;
    case 'string': {
      const b = GO_BOOL[v];
      if (b === undefined) throw new OttlRuntimeError(`strconv.ParseBool: parsing ${JSON.stringify(v)}: invalid syntax`);
      return b;
    }
    default:
  }
  throw new OttlTypeError(`unsupported type: ${goTypeName(v)}`);
}

function byteSliceLike(v: OttlValue): Uint8Array | undefined {
  if (v === null) return undefined;
  if (v instanceof Uint8Array) return v;
  switch (typeof v) {
    case 'string': return new Uint8Array(Buffer.from(v, 'utf8'));
    case 'bigint': {
      const b = Buffer.alloc(8);
      b.writeBigInt64BE(v);
      return new Uint8Array(b);
    }
    case 'number': {
      const b = Buffer.alloc(8);
      b.writeDoubleBE(v);
      return new Uint8Array(b);
    }
    case 'boolean': return new Uint8Array([v ? 1 : 0]);
    default:
  }
  throw new OttlTypeError(`unsupported type: ${goTypeName(v)}`);
}
