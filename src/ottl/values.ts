// OTTL values as JavaScript values, and the Collector's comparison rules (pkg/ottl compare.go).
//
//   nil -> null, string -> string, bool -> boolean, int64 -> bigint (exact), float64 -> number,
//   []byte -> Uint8Array, list/slice -> array, map -> Map<string, value>,
//   pcommon.TraceID / SpanID -> OttlId, time.Time -> OttlTime, time.Duration -> OttlDuration.

/** A trace or span id (pcommon.TraceID / pcommon.SpanID): a distinct type, never equal to bytes. */
export class OttlId {
  constructor(readonly kind: 'trace' | 'span', readonly bytes: Uint8Array) {}
}

/** time.Time as nanoseconds since the Unix epoch. */
export class OttlTime {
  constructor(readonly unixNano: bigint) {}
}

/** time.Duration in nanoseconds. */
export class OttlDuration {
  constructor(readonly nanos: bigint) {}
}

export type OttlValue =
  | null
  | string
  | boolean
  | bigint
  | number
  | Uint8Array
  | OttlId
  | OttlTime
  | OttlDuration
  | readonly OttlValue[]
  | ReadonlyMap<string, OttlValue>;

export type CompareOp = '==' | '!=' | '<' | '<=' | '>' | '>=';

/**
 * A map whose values are still bytes (the filter's wire attributes) may answer
 * `m["k"] == "literal"` by comparing the value's UTF-8 bytes, with no string built. undefined:
 * it cannot tell cheaply (key absent, not a plain string, unusual layout): compare as usual.
 */
export interface RawStringEquals {
  stringEquals(key: string, utf8: Uint8Array): boolean | undefined;
}

export function hasRawStringEquals(v: unknown): v is RawStringEquals {
  return typeof (v as Partial<RawStringEquals> | null)?.stringEquals === 'function';
}

/**
 * The same for an item still in bytes (the filter's wire span or span event): its attribute `key`
 * compared with `utf8`, key and value both UTF-8, without building its attributes map.
 */
export interface RawAttributeEquals {
  attributeStringEquals(key: Uint8Array, utf8: Uint8Array): boolean | undefined;
}

export function rawAttributeEquals(item: object, key: Uint8Array, utf8: Uint8Array): boolean | undefined {
  const raw = item as Partial<RawAttributeEquals>;
  return typeof raw.attributeStringEquals === 'function' ? raw.attributeStringEquals(key, utf8) : undefined;
}

/** Raised while evaluating a condition (the Collector's eval error); error_mode decides what happens. */
export class OttlRuntimeError extends Error {
  override readonly name = 'OttlRuntimeError';
}

/** OTTL's TypeError: the Is* converters turn exactly this into `false`. */
export class OttlTypeError extends OttlRuntimeError {}

const INT64_MIN = -(1n << 63n);
const INT64_MAX = (1n << 63n) - 1n;

/** Wraps a JavaScript integer result into int64 the way Go's arithmetic overflows. */
export function wrapInt64(v: bigint): bigint {
  return BigInt.asIntN(64, v);
}

export function isInt64(v: bigint): boolean {
  return v >= INT64_MIN && v <= INT64_MAX;
}

/** The Go type name the Collector prints for a value in its error messages. */
export function goTypeName(v: OttlValue): string {
  if (v === null) return '<nil>';
  switch (typeof v) {
    case 'string': return 'string';
    case 'boolean': return 'bool';
    case 'bigint': return 'int64';
    case 'number': return 'float64';
    default:
  }
  if (v instanceof Uint8Array) return '[]uint8';
  if (v instanceof OttlId) return v.kind === 'trace' ? 'pcommon.TraceID' : 'pcommon.SpanID';
  if (v instanceof OttlTime) return 'time.Time';
  if (v instanceof OttlDuration) return 'time.Duration';
  if (Array.isArray(v)) return 'pcommon.Slice';
  return 'pcommon.Map';
}

function isMap(v: OttlValue): v is ReadonlyMap<string, OttlValue> {
  return v instanceof Map;
}

/** Orders strings by their UTF-8 bytes (code points), as Go does; JavaScript's < compares UTF-16 units. */
export function compareStrings(a: string, b: string): number {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) {
      // At the first difference, code points order as UTF-8 bytes do (a low surrogate after equal high
      // surrogates compares correctly as a unit too).
      return (a.codePointAt(i) ?? x) < (b.codePointAt(i) ?? y) ? -1 : 1;
    }
  }
  return a.length - b.length;
}

function compareBytesOrder(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

function ordered(c: number, op: CompareOp): boolean {
  switch (op) {
    case '==': return c === 0;
    case '!=': return c !== 0;
    case '<': return c < 0;
    case '<=': return c <= 0;
    case '>': return c > 0;
    case '>=': return c >= 0;
  }
}

/** Go's comparison of two numbers of one type (NaN compares false except !=). */
function comparePrimitive<T extends number | bigint | string>(a: T, b: T, op: CompareOp): boolean {
  switch (op) {
    case '==': return a === b;
    case '!=': return a !== b;
    case '<': return a < b;
    case '<=': return a <= b;
    case '>': return a > b;
    case '>=': return a >= b;
  }
}

const invalid = (op: CompareOp): boolean => op === '!=';

/** Deep equality as reflect.DeepEqual / pcommon Equal see it: types must match (1 != 1.0), NaN != NaN. */
export function deepEqual(a: OttlValue, b: OttlValue): boolean {
  if (a === null || b === null) return a === b;
  if (typeof a !== 'object' || typeof b !== 'object') return typeof a === typeof b && a === b;
  if (a instanceof Uint8Array) return b instanceof Uint8Array && compareBytesOrder(a, b) === 0 && a.length === b.length;
  if (a instanceof OttlId) return b instanceof OttlId && a.kind === b.kind && compareBytesOrder(a.bytes, b.bytes) === 0;
  if (a instanceof OttlTime) return b instanceof OttlTime && a.unixNano === b.unixNano;
  if (a instanceof OttlDuration) return b instanceof OttlDuration && a.nanos === b.nanos;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    const bl = b as readonly OttlValue[];
    return (a as readonly OttlValue[]).every((x, i) => deepEqual(x, bl[i] ?? null));
  }
  if (!isMap(a) || !isMap(b) || a.size !== b.size) return false;
  for (const [k, v] of a) {
    if (!b.has(k) || !deepEqual(v, b.get(k) ?? null)) return false;
  }
  return true;
}

/** compare.go: the result of `a op b` under OTTL's rules. Never throws. */
export function compareValues(a: OttlValue, b: OttlValue, op: CompareOp): boolean {
  // nils are equal to each other and never equal to anything else.
  if (a === null && b === null) return op === '==' || op === '<=' || op === '>=';
  // A nil on the left swaps sides without flipping the operator, as the Collector does.
  if (a === null) return compareValues(b, null, op);
  switch (typeof a) {
    case 'boolean':
      if (typeof b !== 'boolean') return invalid(op);
      return comparePrimitive(Number(a), Number(b), op);
    case 'bigint':
      if (typeof b === 'bigint') return comparePrimitive(a, b, op);
      if (typeof b === 'number') return comparePrimitive(Number(a), b, op);
      return invalid(op);
    case 'number':
      if (typeof b === 'number') return comparePrimitive(a, b, op);
      if (typeof b === 'bigint') return comparePrimitive(a, Number(b), op);
      return invalid(op);
    case 'string':
      if (typeof b !== 'string') return invalid(op);
      return ordered(compareStrings(a, b), op);
    default:
  }
  if (a instanceof Uint8Array) {
    // An empty bytes value reads as a nil []byte in the Collector, and compares like nil.
    if (a.length === 0) return compareValues(b, null, op);
    if (b === null) return op === '!=';
    if (!(b instanceof Uint8Array)) return invalid(op);
    if (b.length === 0) return op === '!=';
    return ordered(compareBytesOrder(a, b), op);
  }
  if (a instanceof OttlTime) {
    if (!(b instanceof OttlTime)) return invalid(op);
    return comparePrimitive(a.unixNano, b.unixNano, op);
  }
  if (a instanceof OttlDuration) {
    if (!(b instanceof OttlDuration)) return invalid(op);
    return comparePrimitive(a.nanos, b.nanos, op);
  }
  if (Array.isArray(a) || isMap(a)) {
    const sameKind = Array.isArray(a) ? Array.isArray(b) : b instanceof Map;
    if (!sameKind) return invalid(op);
    if (op === '==') return deepEqual(a, b);
    if (op === '!=') return !deepEqual(a, b);
    return invalid(op);
  }
  // Types without an order (ids): Go's == on the interface values.
  if (op === '==') return deepEqual(a, b);
  if (op === '!=') return !deepEqual(a, b);
  return invalid(op);
}
