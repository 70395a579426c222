import { compileConditions, ConditionSequence, type OttlValue, type TelemetryItem } from '../../ottl';
import { RESOURCE } from '../../pdata/fields';
import { compileRe2Pattern, type LinearRegex } from '../../util/regex';
import type { PolicyConfig } from './config';
import { decodeEvent, decodeResource, decodeScope, decodeSpan, SPAN_EVENT_OTTL_CONTEXT, SPAN_OTTL_CONTEXT } from './ottl-item';
import { findAttribute, forEachSpanRange, resourceRange, SpanFields, type Part, type StoredBlock } from './trace-data';

// The Collector's sampling policies (tailsamplingprocessor/internal/sampling, v0.160.0), evaluated
// over a trace's spans as stored: in arrival order, one ResourceSpans per received resource, as the
// Collector groups them, so order-sensitive policies (latency with an upper bound) decide alike.

export type Decision = 'sampled' | 'not_sampled' | 'dropped';

export interface TraceView {
  /** The trace id, one character per byte. */
  readonly key: string;
  readonly parts: readonly Part[];
  readonly spanCount: number;
}

/** Evaluates one trace; throws when the policy cannot decide (counted as an evaluation error). */
export interface Evaluator {
  evaluate(trace: TraceView): Decision;
}

/** Milliseconds since the epoch; the processor's clock, injectable in tests. */
export type Clock = () => number;

const fields = new SpanFields();

function hasSpan(trace: TraceView, check: (span: SpanFields) => boolean): Decision {
  return forEachSpanRange(trace.parts, (buf, s, e) => check(fields.at(buf, s, e))) ? 'sampled' : 'not_sampled';
}

/** The resource attribute `key` of a block (first occurrence), undefined when absent. */
function resourceAttribute(block: StoredBlock, key: Uint8Array): OttlValue | undefined {
  const range = resourceRange(block.bytes);
  return range ? findAttribute(block.bytes, range[0], range[1], RESOURCE.attributes, key) : undefined;
}

/** Sampled when some resource or span satisfies its check (resources checked before their spans). */
function hasResourceOrSpan(trace: TraceView, resource: (v: OttlValue | undefined) => boolean, span: (v: OttlValue | undefined) => boolean, key: Uint8Array): Decision {
  for (const part of trace.parts) {
    if (resource(resourceAttribute(part.block, key))) return 'sampled';
    if (forEachSpanRange([part], (buf, s, e) => span(fields.at(buf, s, e).attribute(key)))) return 'sampled';
  }
  return 'not_sampled';
}

/** The inverted form: sampled only when every resource and every span satisfies its check. */
function everyResourceAndSpan(trace: TraceView, resource: (v: OttlValue | undefined) => boolean, span: (v: OttlValue | undefined) => boolean, key: Uint8Array): Decision {
  for (const part of trace.parts) {
    if (!resource(resourceAttribute(part.block, key))) return 'not_sampled';
    if (forEachSpanRange([part], (buf, s, e) => !span(fields.at(buf, s, e).attribute(key)))) return 'not_sampled';
  }
  return 'sampled';
}

// pcommon's typed accessors: the zero value for another type.
const asStr = (v: OttlValue | undefined): string => (typeof v === 'string' ? v : '');
const asInt = (v: OttlValue | undefined): bigint => (typeof v === 'bigint' ? v : 0n);
const asBool = (v: OttlValue | undefined): boolean => v === true;

export function buildEvaluator(config: PolicyConfig, clock: Clock, onOttlError?: (err: Error) => void): Evaluator {
  switch (config.type) {
    case 'always_sample':
      return { evaluate: () => 'sampled' };
    case 'trace_flags':
      return { evaluate: (t) => hasSpan(t, (s) => (s.flags() & 1) !== 0) };
    case 'latency':
      return latency(config.thresholdMs, config.upperThresholdMs);
    case 'status_code': {
      const codes = new Set(config.codes);
      return { evaluate: (t) => hasSpan(t, (s) => codes.has(s.statusCode())) };
    }
    case 'probabilistic':
      return probabilistic(config.hashSalt, config.samplingPercentage);
    case 'string_attribute':
      return stringAttribute(config);
    case 'numeric_attribute': {
      const min = config.min ?? -(2n ** 63n);
      const max = config.max ?? 2n ** 63n - 1n;
      const key = Buffer.from(config.key);
      const inRange = (v: OttlValue | undefined): boolean => {
        const n = asInt(v);
        return n >= min && n <= max;
      };
      if (config.invert) {
        const notMatching = (v: OttlValue | undefined): boolean => v === undefined || !inRange(v);
        return { evaluate: (t) => everyResourceAndSpan(t, notMatching, notMatching, key) };
      }
      const matching = (v: OttlValue | undefined): boolean => v !== undefined && inRange(v);
      return { evaluate: (t) => hasResourceOrSpan(t, matching, matching, key) };
    }
    case 'boolean_attribute': {
      const key = Buffer.from(config.key);
      const want = config.value;
      if (config.invert) {
        const notMatching = (v: OttlValue | undefined): boolean => v === undefined || asBool(v) !== want;
        return { evaluate: (t) => everyResourceAndSpan(t, notMatching, notMatching, key) };
      }
      const matching = (v: OttlValue | undefined): boolean => v !== undefined && asBool(v) === want;
      return { evaluate: (t) => hasResourceOrSpan(t, matching, matching, key) };
    }
    case 'rate_limiting':
      return rateLimiting(config.spansPerSecond, config.burstCapacity, clock);
    case 'span_count': {
      const { minSpans, maxSpans } = config;
      return {
        evaluate: (t) => (maxSpans === 0 ? t.spanCount >= minSpans : t.spanCount >= minSpans && t.spanCount <= maxSpans) ? 'sampled' : 'not_sampled',
      };
    }
    case 'trace_state': {
      const values = new Set(config.values.filter((v) => v !== '' && config.key.length + v.length < 256));
      const key = config.key;
      return {
        evaluate: (t) =>
          hasSpan(t, (s) => {
            const parsed = parseTraceState(s.traceState());
            return parsed !== undefined && values.has(parsed.get(key) ?? '');
          }),
      };
    }
    case 'ottl_condition':
      return ottlCondition(config, onOttlError);
    case 'and': {
      const subs = config.policies.map((p) => buildEvaluator(p, clock, onOttlError));
      return {
        evaluate: (t) => {
          for (const sub of subs) if (sub.evaluate(t) === 'not_sampled') return 'not_sampled';
          return 'sampled';
        },
      };
    }
    case 'not': {
      const sub = buildEvaluator(config.policy, clock, onOttlError);
      return {
        evaluate: (t) => {
          const d = sub.evaluate(t);
          return d === 'sampled' ? 'not_sampled' : d === 'not_sampled' ? 'sampled' : d;
        },
      };
    }
    case 'drop': {
      const subs = config.policies.map((p) => buildEvaluator(p, clock, onOttlError));
      return {
        evaluate: (t) => {
          for (const sub of subs) if (sub.evaluate(t) === 'not_sampled') return 'not_sampled';
          return 'dropped';
        },
      };
    }
    case 'composite':
      return composite(config, clock, onOttlError);
  }
}

const TWO_32 = 0x100000000;
/** Differences below 2^53 ns (104 days) are exact as doubles. */
const EXACT_HI = 1 << 21;
const times = new Float64Array(4);

function latency(thresholdMs: number, upperThresholdMs: number): Evaluator {
  const lower = BigInt(thresholdMs);
  const upper = BigInt(upperThresholdMs);
  const lowerN = thresholdMs;
  const upperN = upperThresholdMs;
  return {
    evaluate: (t) => {
      // As the Collector: the trace's extent so far is checked after each span, in arrival order.
      // Timestamps as unsigned 32-bit halves; the duration in doubles when exact, else in BigInt.
      let minHi = 0;
      let minLo = 0;
      let maxHi = 0;
      let maxLo = 0;
      return hasSpan(t, (s) => {
        s.times(times);
        const sHi = times[0]!;
        const sLo = times[1]!;
        const eHi = times[2]!;
        const eLo = times[3]!;
        if ((minHi === 0 && minLo === 0) || sHi < minHi || (sHi === minHi && sLo < minLo)) {
          minHi = sHi;
          minLo = sLo;
        }
        if ((maxHi === 0 && maxLo === 0) || eHi > maxHi || (eHi === maxHi && eLo > maxLo)) {
          maxHi = eHi;
          maxLo = eLo;
        }
        let dHi = maxHi - minHi;
        let dLo = maxLo - minLo;
        if (dLo < 0) {
          dLo += TWO_32;
          dHi--;
        }
        if (dHi >= 0 && dHi < EXACT_HI) {
          const d = dHi * TWO_32 + dLo;
          let ms = Math.floor(d / 1e6);
          if (ms * 1e6 > d) ms--;
          return upperN === 0 ? ms > lowerN : lowerN < ms && ms <= upperN;
        }
        const ms = (BigInt(maxHi) * 0x100000000n + BigInt(maxLo) - (BigInt(minHi) * 0x100000000n + BigInt(minLo))) / 1_000_000n;
        return upper === 0n ? ms > lower : lower < ms && ms <= upper;
      });
    },
  };
}

const MAX_UINT64 = 2n ** 64n - 1n;
const FNV_OFFSET_HI = 0xcbf29ce4;
const FNV_OFFSET_LO = 0x84222325;

/** FNV-1a 64 over `salt` then the trace id, compared with a threshold: the Collector's hash, bit for bit. */
export function probabilistic(hashSalt: string, samplingPercentage: number): Evaluator {
  const salt = Buffer.from(hashSalt === '' ? 'default-hash-seed' : hashSalt, 'utf8');
  const threshold = probabilityThreshold(samplingPercentage / 100);
  const thHi = Number(threshold >> 32n);
  const thLo = Number(threshold & 0xffffffffn);
  // The salt's part of the hash is the same for every trace.
  const [saltHi, saltLo] = fnv1a64(FNV_OFFSET_HI, FNV_OFFSET_LO, salt);
  return {
    evaluate: (t) => {
      const [hi, lo] = fnv1a64(saltHi, saltLo, t.key);
      return hi < thHi || (hi === thHi && lo <= thLo) ? 'sampled' : 'not_sampled';
    },
  };
}

/** `bytes` as bytes, or as a string of one character per byte (a trace key). */
function fnv1a64(hi: number, lo: number, bytes: Uint8Array | string): [number, number] {
  const text = typeof bytes === 'string';
  for (let i = 0; i < bytes.length; i++) {
    const b = text ? bytes.charCodeAt(i) & 255 : bytes[i]!;
    lo = (lo ^ b) >>> 0;
    // h * 0x100000001b3 mod 2^64 = h * 0x1b3 + (h << 40)
    const prod = lo * 0x1b3;
    const carry = Math.floor(prod / 0x100000000);
    const newLo = prod - carry * 0x100000000;
    hi = (Math.imul(hi, 0x1b3) + (lo << 8) + carry) >>> 0;
    lo = newLo >>> 0;
  }
  return [hi, lo];
}

/**
 * MaxUint64 × ratio as the Collector computes it with math/big: the product rounded to 64 bits of
 * mantissa (nearest, ties to even), then truncated to an integer.
 */
export function probabilityThreshold(ratio: number): bigint {
  if (!(ratio > 0)) return 0n;
  if (!Number.isFinite(ratio)) return MAX_UINT64;
  // ratio = mantissa × 2^exponent exactly.
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, ratio);
  const bits = view.getBigUint64(0);
  const expBits = Number((bits >> 52n) & 0x7ffn);
  const frac = bits & ((1n << 52n) - 1n);
  const mantissa = expBits === 0 ? frac : frac | (1n << 52n);
  const exponent = (expBits === 0 ? 1 : expBits) - 1075;
  let n = MAX_UINT64 * mantissa;
  let shift = 0;
  const len = n.toString(2).length;
  if (len > 64) {
    shift = len - 64;
    const q = n >> BigInt(shift);
    const rem = n & ((1n << BigInt(shift)) - 1n);
    const half = 1n << BigInt(shift - 1);
    n = rem > half || (rem === half && (q & 1n) === 1n) ? q + 1n : q;
  }
  const e = exponent + shift;
  const value = e >= 0 ? n << BigInt(e) : n >> BigInt(-e);
  return value > MAX_UINT64 ? MAX_UINT64 : value;
}

function stringAttribute(config: Extract<PolicyConfig, { type: 'string_attribute' }>): Evaluator {
  const key = Buffer.from(config.key);
  let matcher: (value: string) => boolean;
  if (config.regex) {
    const patterns: LinearRegex[] = config.values.map((v) => compileRe2Pattern(v));
    const cache = new Map<string, boolean>();
    const size = config.cacheMaxSize > 0 ? config.cacheMaxSize : 128;
    matcher = (value) => {
      const hit = cache.get(value);
      if (hit !== undefined) {
        cache.delete(value);
        cache.set(value, hit);
        return hit;
      }
      const matched = patterns.some((p) => p.test(value));
      cache.set(value, matched);
      if (cache.size > size) cache.delete(cache.keys().next().value!);
      return matched;
    };
  } else {
    const values = new Set(config.values.filter((v) => v !== ''));
    matcher = (value) => values.has(value);
  }
  if (config.invert) {
    return {
      evaluate: (t) =>
        everyResourceAndSpan(
          t,
          (v) => v === undefined || !matcher(asStr(v)),
          (v) => v === undefined || asStr(v) === '' || !matcher(asStr(v)),
          key,
        ),
    };
  }
  return {
    evaluate: (t) =>
      hasResourceOrSpan(
        t,
        (v) => v !== undefined && matcher(asStr(v)),
        (v) => v !== undefined && asStr(v) !== '' && matcher(asStr(v)),
        key,
      ),
  };
}

/** golang.org/x/time/rate's token bucket, as AllowN(now, spans) uses it. */
function rateLimiting(spansPerSecond: number, burst: number, clock: Clock): Evaluator {
  let tokens = burst;
  let last = clock();
  return {
    evaluate: (t) => {
      const now = clock();
      const elapsed = Math.max(0, now - last) / 1000;
      const available = Math.min(burst, tokens + elapsed * spansPerSecond);
      if (t.spanCount <= burst && available >= t.spanCount) {
        tokens = available - t.spanCount;
        last = now;
        return 'sampled';
      }
      return 'not_sampled';
    },
  };
}

function composite(config: Extract<PolicyConfig, { type: 'composite' }>, clock: Clock, onOttlError?: (err: Error) => void): Evaluator {
  const subs = config.policies.map((p) => ({ evaluator: buildEvaluator(p.policy, clock, onOttlError), allocated: p.spansPerSecond, used: 0 }));
  let second = -1;
  return {
    evaluate: (t) => {
      const now = Math.floor(clock() / 1000);
      if (now !== second) {
        second = now;
        for (const sub of subs) sub.used = 0;
      }
      for (const sub of subs) {
        if (sub.evaluator.evaluate(t) !== 'sampled') continue;
        const ifSampled = sub.used + t.spanCount;
        if (ifSampled <= sub.allocated && ifSampled <= config.maxTotalSpansPerSecond) {
          sub.used = ifSampled;
          return 'sampled';
        }
        return 'not_sampled';
      }
      return 'not_sampled';
    },
  };
}

function ottlCondition(config: Extract<PolicyConfig, { type: 'ottl_condition' }>, onError?: (err: Error) => void): Evaluator {
  const report = onError ? (err: Error) => onError(err) : undefined;
  const spanSeq = config.span.length > 0 ? new ConditionSequence(compileConditions(config.span, SPAN_OTTL_CONTEXT, { mode: 'legacy' }), config.errorMode, report) : undefined;
  const eventSeq =
    config.spanEvent.length > 0 ? new ConditionSequence(compileConditions(config.spanEvent, SPAN_EVENT_OTTL_CONTEXT, { mode: 'legacy' }), config.errorMode, report) : undefined;
  return {
    evaluate: (t) => {
      // Under error_mode propagate an evaluation error throws: the policy errs for this trace, as in the Collector.
      let resourceOf: { block: StoredBlock; data: TelemetryItem['resource'] } | undefined;
      let scopeOf: { at: number; data: NonNullable<TelemetryItem['scope']> } | undefined;
      const found = forEachSpanRange(t.parts, (buf, s, e, part, scopeStart, scopeEnd) => {
        if (resourceOf?.block !== part.block) resourceOf = { block: part.block, data: decodeResource(buf) };
        if (scopeOf?.at !== scopeStart || resourceOf.block !== part.block) scopeOf = { at: scopeStart, data: decodeScope(buf, scopeStart, scopeEnd) };
        const { span, events } = decodeSpan(buf, s, e);
        if (spanSeq?.eval({ resource: resourceOf.data, scope: scopeOf.data, span })) return true;
        if (eventSeq) {
          for (let i = 0; i < events.length; i += 2) {
            const spanEvent = decodeEvent(buf, events[i]!, events[i + 1]!);
            if (eventSeq.eval({ resource: resourceOf.data, scope: scopeOf.data, span, spanEvent })) return true;
          }
        }
        return false;
      });
      return found ? 'sampled' : 'not_sampled';
    },
  };
}

const TS_KEY = /^(?:[a-z][_0-9a-z\-*/]{0,255}|[a-z0-9][_0-9a-z\-*/]{0,240}@[a-z][_0-9a-z\-*/]{0,13})$/;
 
const TS_VALUE = /^[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$/;

/** W3C tracestate as go.opentelemetry.io/otel/trace parses it; undefined when invalid. */
export function parseTraceState(text: string): Map<string, string> | undefined {
  const out = new Map<string, string>();
  if (text === '') return out;
  for (const raw of text.split(',')) {
    if (raw === '') continue;
    const eq = raw.indexOf('=');
    if (eq < 0) return undefined;
    const key = raw.slice(0, eq).replace(/^[ \t]+/, '');
    const value = raw.slice(eq + 1).replace(/[ \t]+$/, '');
    if (!TS_KEY.test(key) || !TS_VALUE.test(value) || out.has(key)) return undefined;
    out.set(key, value);
    if (out.size > 32) return undefined;
  }
  return out;
}
