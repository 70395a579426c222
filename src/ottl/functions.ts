// The standard OTTL converters spansieve implements for conditions, with the Collector's argument
// types (pkg/ottl/ottlfuncs, v0.160.0): the same conversions, nil handling and errors.

import { compileRe2Pattern, type LinearRegex } from '../util/regex';
import type { BoundArg, OttlArgs, OttlFunction, OttlParam } from './compile';
import { goParseInt } from './getters';
import {
  OttlDuration, OttlId, OttlRuntimeError, OttlTime, OttlTypeError, compareValues, goTypeName, type OttlValue,
} from './values';

type Fn = OttlFunction<unknown>;

interface TypedArg<T> {
  readonly get: (c: unknown) => T;
  readonly literal: boolean;
}

function arg<T>(args: OttlArgs<unknown>, i: number): TypedArg<T> {
  return args[i] as unknown as TypedArg<T>;
}

function listArg(args: OttlArgs<unknown>, i: number): readonly BoundArg<unknown>[] {
  return args[i] as readonly BoundArg<unknown>[];
}

function def(params: readonly OttlParam[], create: (args: OttlArgs<unknown>) => (c: unknown) => OttlValue): Fn {
  return { params, create };
}

const target = (kind: OttlParam['kind']): OttlParam => ({ name: 'target', kind });

/** IsString / IsInt / ...: true when the typed getter succeeds, false on an OTTL TypeError only. */
function isType(kind: OttlParam['kind']): Fn {
  return def([target(kind)], (args) => {
    const t = arg<unknown>(args, 0);
    return (c) => {
      try {
        t.get(c);
        return true;
      } catch (err) {
        if (err instanceof OttlTypeError) return false;
        throw err;
      }
    };
  });
}

function utf8Length(s: string): number {
  return Buffer.byteLength(s, 'utf8');
}

const GO_DURATION_UNITS: Readonly<Record<string, bigint>> = {
  ns: 1n, us: 1000n, 'µs': 1000n, 'μs': 1000n, ms: 1_000_000n, s: 1_000_000_000n, m: 60_000_000_000n, h: 3_600_000_000_000n,
};

/** time.ParseDuration ("1h30m", "-1.5s", "300ms", "0"). */
export function goParseDuration(s: string): OttlDuration {
  const bad = (): OttlRuntimeError => new OttlRuntimeError(`time: invalid duration ${JSON.stringify(s)}`);
  let rest = s;
  let neg = false;
  if (rest.startsWith('-') || rest.startsWith('+')) {
    neg = rest.startsWith('-');
    rest = rest.slice(1);
  }
  if (rest === '0') return new OttlDuration(0n);
  if (rest === '') throw bad();
  let total = 0;
  let totalExact = 0n;
  let exact = true;
  while (rest.length > 0) {
    const m = /^([0-9]*)(?:\.([0-9]*))?(ns|us|µs|μs|ms|s|m|h)/.exec(rest);
    if (!m || (m[1] === '' && (m[2] ?? '') === '')) {
      if (/^[0-9.]+$/.test(rest)) throw new OttlRuntimeError(`time: missing unit in duration ${JSON.stringify(s)}`);
      throw bad();
    }
    const unit = GO_DURATION_UNITS[m[3] ?? ''] ?? 1n;
    const whole = BigInt(m[1] || '0');
    const frac = m[2] ?? '';
    totalExact += whole * unit;
    if (frac) {
      exact = false;
      total += Number(`0.${frac}`) * Number(unit);
    }
    rest = rest.slice(m[0].length);
  }
  let nanos = totalExact + (exact ? 0n : BigInt(Math.trunc(total)));
  if (nanos > (1n << 63n) - 1n) throw bad();
  if (neg) nanos = -nanos;
  return new OttlDuration(nanos);
}

function idFunction(kind: 'trace' | 'span', name: string): Fn {
  const len = kind === 'trace' ? 16 : 8;
  const toId = (b: Uint8Array | undefined): OttlId => {
    const bytes = b ?? new Uint8Array(0);
    if (bytes.length === len) return new OttlId(kind, new Uint8Array(bytes));
    if (bytes.length === len * 2) {
      const text = Buffer.from(bytes).toString('latin1');
      if (!/^[0-9a-fA-F]*$/.test(text)) throw new OttlRuntimeError(`${name}: could not decode ID: invalid hex: encoding/hex: invalid byte`);
      return new OttlId(kind, new Uint8Array(Buffer.from(text, 'hex')));
    }
    throw new OttlRuntimeError(`${name}: could not decode ID: invalid length: expected ${len} or ${len * 2} bytes, got ${bytes.length}`);
  };
  return def([target('ByteSliceLikeGetter')], (args) => {
    const t = arg<Uint8Array | undefined>(args, 0);
    if (t.literal) {
      const id = toId(t.get(undefined));
      return () => id;
    }
    return (c) => toId(t.get(c));
  });
}

function stringTransform(f: (s: string) => string): Fn {
  return def([target('StringGetter')], (args) => {
    const t = arg<string>(args, 0);
    return (c) => f(t.get(c));
  });
}

function twoStrings(second: string, f: (a: string, b: string) => OttlValue): Fn {
  return def([target('StringGetter'), { name: second, kind: 'StringGetter' }], (args) => {
    const a = arg<string>(args, 0);
    const b = arg<string>(args, 1);
    return (c) => {
      const x = a.get(c);
      return f(x, b.get(c));
    };
  });
}

function durationTo(f: (d: OttlDuration) => OttlValue): Fn {
  return def([{ name: 'duration', kind: 'DurationGetter' }], (args) => {
    const d = arg<OttlDuration>(args, 0);
    return (c) => f(d.get(c));
  });
}

/** Go's strings.Trim: removes leading and trailing code points contained in cutset. */
function goTrim(s: string, cutset: string): string {
  const set = new Set(Array.from(cutset));
  const cps = Array.from(s);
  let a = 0;
  let b = cps.length;
  while (a < b && set.has(cps[a] as string)) a++;
  while (b > a && set.has(cps[b - 1] as string)) b--;
  return cps.slice(a, b).join('');
}

function substringFn(): Fn {
  return def(
    [target('StringGetter'), { name: 'start', kind: 'IntGetter' }, { name: 'length', kind: 'IntGetter' }, { name: 'utf8_safe', kind: 'bool', optional: true }],
    (args) => {
      const t = arg<string>(args, 0);
      const st = arg<bigint>(args, 1);
      const ln = arg<bigint>(args, 2);
      const utf8Safe = args[3] ? arg<boolean>(args, 3).get(undefined) : false;
      return (c) => {
        const start = st.get(c);
        if (start < 0n) throw new OttlRuntimeError(`invalid start for substring function, ${start} cannot be negative`);
        const length = ln.get(c);
        if (length <= 0n) throw new OttlRuntimeError(`invalid length for substring function, ${length} cannot be negative or zero`);
        const val = t.get(c);
        // Go indexes strings by UTF-8 byte.
        const bytes = Buffer.from(val, 'utf8');
        const n = BigInt(bytes.length);
        if (start > n || length > n - start) {
          throw new OttlRuntimeError(`invalid range for substring function, start(${start})+length(${length}) cannot be greater than the length of target string(${bytes.length})`);
        }
        let from = Number(start);
        let to = Number(start + length);
        if (utf8Safe) {
          const runeStart = (i: number): boolean => ((bytes[i] ?? 0) & 0xc0) !== 0x80;
          while (from < bytes.length && !runeStart(from)) from++;
          while (from < to && to < bytes.length && !runeStart(to)) to--;
          if (to < from) to = from;
        }
        return bytes.subarray(from, to).toString('utf8');
      };
    },
  );
}

function isMatchFn(): Fn {
  return def([target('StringLikeGetter'), { name: 'pattern', kind: 'StringGetter' }], (args) => {
    const t = arg<string | undefined>(args, 0);
    const p = arg<string>(args, 1);
    const compile = (pattern: string): LinearRegex => {
      try {
        return compileRe2Pattern(pattern);
      } catch (err) {
        throw new OttlRuntimeError(`the regex pattern supplied to IsMatch '${JSON.stringify(pattern)}' is not a valid pattern: ${(err as Error).message}`);
      }
    };
    // A literal pattern compiles once, at compile time (a bad one is a compile error).
    const fixed = p.literal ? compile(p.get(undefined)) : undefined;
    let lastPattern: string | undefined;
    let last: LinearRegex | undefined;
    return (c) => {
      let re = fixed;
      if (!re) {
        const pattern = p.get(c);
        if (pattern !== lastPattern || !last) {
          last = compile(pattern);
          lastPattern = pattern;
        }
        re = last;
      }
      const v = t.get(c);
      if (v === undefined) return false;
      return re.test(v);
    };
  });
}

function lenFn(): Fn {
  return def([target('Getter')], (args) => {
    const t = arg<OttlValue>(args, 0);
    return (c) => {
      const v = t.get(c);
      if (typeof v === 'string') return BigInt(utf8Length(v));
      if (Array.isArray(v)) return BigInt(v.length);
      if (v instanceof Map) return BigInt(v.size);
      if (v instanceof Uint8Array) return BigInt(v.length);
      throw new OttlRuntimeError(
        `Len: unsupported target type ${goTypeName(v)}. target arg must be of type string, []any, map[string]any, pcommon.Map, pcommon.Slice, pcommon.Value (of type String, Map, Slice) or a supported slice type from the plog, pmetric or ptrace packages`,
      );
    };
  });
}

function isEmptyFn(): Fn {
  return def([target('Getter')], (args) => {
    const t = arg<OttlValue>(args, 0);
    return (c) => {
      const v = t.get(c);
      if (v === null) return true;
      if (typeof v === 'string') return v === '';
      if (typeof v === 'bigint') return v === 0n;
      if (typeof v === 'number') return v === 0 && !Object.is(v, -0);
      if (typeof v === 'boolean') return !v;
      if (Array.isArray(v)) return v.length === 0;
      if (v instanceof Map) return v.size === 0;
      if (v instanceof Uint8Array) return v.length === 0;
      if (v instanceof OttlId) return v.bytes.every((b) => b === 0);
      if (v instanceof OttlDuration) return v.nanos === 0n;
      return false;
    };
  });
}

function containsValueFn(): Fn {
  return def([target('PSliceGetter'), { name: 'item', kind: 'Getter' }], (args) => {
    const t = arg<readonly OttlValue[]>(args, 0);
    const item = arg<OttlValue>(args, 1);
    if (t.literal) {
      const list = t.get(undefined);
      // A literal list of strings (a keep-list of instance ids): a set lookup; under the comparison
      // rules only a string item can equal a string element.
      if (list.length > 8 && list.every((x) => typeof x === 'string')) {
        const set = new Set(list);
        return (c) => {
          const v = item.get(c);
          return typeof v === 'string' && set.has(v);
        };
      }
    }
    return (c) => {
      const list = t.get(c);
      const v = item.get(c);
      for (const x of list) if (compareValues(x, v, '==')) return true;
      return false;
    };
  });
}

function concatFn(): Fn {
  return def([{ name: 'vals', kind: 'StringLikeGetter', list: true }, { name: 'delimiter', kind: 'StringGetter' }], (args) => {
    const vals = listArg(args, 0);
    const delim = arg<string>(args, 1);
    return (c) => {
      const d = delim.get(c);
      let out = '';
      vals.forEach((g, i) => {
        const v = g.get(c) as string | undefined;
        out += v === undefined ? '<nil>' : v;
        if (i !== vals.length - 1) out += d;
      });
      return out;
    };
  });
}

function likeFn(kind: OttlParam['kind']): Fn {
  return def([target(kind)], (args) => {
    const t = arg<OttlValue | undefined>(args, 0);
    return (c) => t.get(c) ?? null;
  });
}

/** Converters every context offers (the filter processor registers ottlfuncs.StandardConverters). */
export const STANDARD_CONVERTERS: Readonly<Record<string, Fn>> = {
  IsMatch: isMatchFn(),
  ContainsValue: containsValueFn(),
  IsString: isType('StringGetter'),
  IsInt: isType('IntGetter'),
  IsDouble: isType('FloatGetter'),
  IsBool: isType('BoolGetter'),
  IsMap: isType('PMapGetter'),
  IsList: def([target('Getter')], (args) => {
    const t = arg<OttlValue>(args, 0);
    return (c) => Array.isArray(t.get(c));
  }),
  IsEmpty: isEmptyFn(),
  Len: lenFn(),
  Concat: concatFn(),
  Int: likeFn('IntLikeGetter'),
  Double: likeFn('FloatLikeGetter'),
  String: likeFn('StringLikeGetter'),
  Bool: likeFn('BoolLikeGetter'),
  ToLowerCase: stringTransform((s) => (s === '' ? s : s.toLowerCase())),
  ToUpperCase: stringTransform((s) => (s === '' ? s : s.toUpperCase())),
  Substring: substringFn(),
  Split: twoStrings('delimiter', (s, d) => goSplit(s, d)),
  HasPrefix: twoStrings('prefix', (s, p) => s.startsWith(p)),
  HasSuffix: twoStrings('suffix', (s, p) => s.endsWith(p)),
  TrimPrefix: twoStrings('prefix', (s, p) => (s.startsWith(p) ? s.slice(p.length) : s)),
  TrimSuffix: twoStrings('suffix', (s, p) => (p !== '' && s.endsWith(p) ? s.slice(0, s.length - p.length) : s)),
  Trim: def([target('StringGetter'), { name: 'replacement', kind: 'string', optional: true }], (args) => {
    const t = arg<string>(args, 0);
    const cut = args[1] ? arg<string>(args, 1).get(undefined) : ' ';
    return (c) => goTrim(t.get(c), cut);
  }),
  TraceID: idFunction('trace', 'TraceID'),
  SpanID: idFunction('span', 'SpanID'),
  Hex: def([target('ByteSliceLikeGetter')], (args) => {
    const t = arg<Uint8Array | undefined>(args, 0);
    return (c) => Buffer.from(t.get(c) ?? new Uint8Array(0)).toString('hex');
  }),
  Duration: def([{ name: 'duration', kind: 'StringGetter' }], (args) => {
    const d = arg<string>(args, 0);
    return (c) => goParseDuration(d.get(c));
  }),
  Nanoseconds: durationTo((d) => d.nanos),
  Microseconds: durationTo((d) => d.nanos / 1000n),
  Milliseconds: durationTo((d) => d.nanos / 1_000_000n),
  Seconds: durationTo((d) => Number(d.nanos / 1_000_000_000n) + Number(d.nanos % 1_000_000_000n) / 1e9),
  Minutes: durationTo((d) => Number(d.nanos / 60_000_000_000n) + Number(d.nanos % 60_000_000_000n) / 6e10),
  Hours: durationTo((d) => Number(d.nanos / 3_600_000_000_000n) + Number(d.nanos % 3_600_000_000_000n) / 3.6e12),
  Unix: def([{ name: 'seconds', kind: 'IntGetter' }, { name: 'nanoseconds', kind: 'IntGetter', optional: true }], (args) => {
    const s = arg<bigint>(args, 0);
    const ns = args[1] ? arg<bigint>(args, 1) : undefined;
    return (c) => new OttlTime(s.get(c) * 1_000_000_000n + (ns ? ns.get(c) : 0n));
  }),
  UnixNano: def([{ name: 'time', kind: 'TimeGetter' }], (args) => {
    const t = arg<OttlTime>(args, 0);
    return (c) => t.get(c).unixNano;
  }),
  UnixMilli: def([{ name: 'time', kind: 'TimeGetter' }], (args) => {
    const t = arg<OttlTime>(args, 0);
    return (c) => floorDiv(t.get(c).unixNano, 1_000_000n);
  }),
  UnixSeconds: def([{ name: 'time', kind: 'TimeGetter' }], (args) => {
    const t = arg<OttlTime>(args, 0);
    return (c) => floorDiv(t.get(c).unixNano, 1_000_000_000n);
  }),
  Now: def([], () => () => new OttlTime(BigInt(Date.now()) * 1_000_000n)),
  ParseInt: def([target('StringGetter'), { name: 'base', kind: 'IntGetter' }], (args) => {
    const t = arg<string>(args, 0);
    const b = arg<bigint>(args, 1);
    return (c) => {
      const s = t.get(c);
      const base = b.get(c);
      if (base === 10n) return goParseInt(s);
      throw new OttlRuntimeError(`ParseInt: only base 10 is supported by spansieve (got ${base})`);
    };
  }),
};

function floorDiv(a: bigint, b: bigint): bigint {
  const q = a / b;
  return a % b !== 0n && a < 0n ? q - 1n : q;
}

/** strings.Split: an empty separator splits after each UTF-8 sequence. */
function goSplit(s: string, sep: string): OttlValue {
  if (sep === '') return Array.from(s);
  return s.split(sep);
}

/** Every converter the Collector's filter processor offers (v0.160.0), to tell "unsupported" from "unknown". */
export const COLLECTOR_CONVERTERS: ReadonlySet<string> = new Set([
  'All', 'Any', 'Base64Decode', 'Base64Encode', 'Bool', 'Decode', 'Coalesce', 'CommunityID', 'Concat', 'ContainsValue',
  'ConvertCase', 'ConvertAttributesToElementsXML', 'ConvertTextToElementsXML', 'Day', 'Double', 'Duration',
  'ExtractPatterns', 'ExtractGrokPatterns', 'Filter', 'Find', 'FNV', 'GetXML', 'HasPrefix', 'HasSuffix', 'Hour', 'Hours',
  'Index', 'InsertXML', 'Int', 'IsBool', 'IsDouble', 'IsEmpty', 'IsList', 'IsInt', 'IsMap', 'IsMatch', 'IsString', 'Len',
  'Log', 'IsValidLuhn', 'MapEach', 'MapKeys', 'MD5', 'Microseconds', 'Milliseconds', 'Minute', 'Minutes', 'Month',
  'Murmur3Hash', 'Murmur3Hash128', 'Nanosecond', 'Nanoseconds', 'Now', 'ParseCSV', 'ParseJSON', 'ParseKeyValue',
  'ParseSimplifiedXML', 'ParseXML', 'Reduce', 'RemoveXML', 'Second', 'Seconds', 'SHA1', 'SHA256', 'SHA512', 'Sort',
  'SpanID', 'Split', 'Format', 'String', 'Substring', 'Time', 'FormatTime', 'Trim', 'TrimPrefix', 'TrimSuffix',
  'ToKeyValueString', 'ToCamelCase', 'ToLowerCase', 'ToSnakeCase', 'ToUpperCase', 'TruncateTime', 'TraceID', 'Unix',
  'UnixMicro', 'UnixMilli', 'UnixNano', 'UnixSeconds', 'UUID', 'UUIDv7', 'URL', 'Values', 'Weekday', 'When', 'UserAgent',
  'Append', 'DeleteIndex', 'Year', 'Hex', 'SliceToMap', 'ParseSeverity', 'ProfileID', 'ParseInt', 'Keys', 'XXH3',
  'XXH128', 'IsInCIDR', 'IsRootSpan', 'HasAttrOnDatapoint', 'HasAttrKeyOnDatapoint',
]);
