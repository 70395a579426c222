// OpenTelemetry consistent probability sampling arithmetic (the W3C tracestate `ot=th:` threshold
// and `rv:` randomness, 56 bits each), with the Collector's pkg/sampling rules (v0.160.0): the
// same rounding, precision and text forms, so a decision here equals the Collector's. Shared by probabilistic_sampler and spanmetrics.
//
// A 56-bit value is held as two 28-bit halves (numbers, not BigInt: this runs per span). A
// threshold T keeps a span whose randomness R satisfies T <= R; T = 2^56 never samples.

const HALF = 0x10000000; // 2^28
const HALF_MASK = HALF - 1;

export interface U56 {
  readonly hi: number;
  readonly lo: number;
}

export const ALWAYS_SAMPLE: U56 = { hi: 0, lo: 0 };
export const NEVER_SAMPLE: U56 = { hi: HALF, lo: 0 };
/** Randomness sampled at every probability (2^56 - 1). */
export const ALL_PROBABILITIES: U56 = { hi: HALF_MASK, lo: HALF_MASK };

export const NUM_HEX_DIGITS = 14;
/** The smallest probability a threshold can express, 2^-56. */
export const MIN_SAMPLING_PROBABILITY = 2 ** -56;

export function u56(hi: number, lo: number): U56 {
  return { hi, lo };
}

export function lessOrEqual(a: U56, b: U56): boolean {
  return a.hi < b.hi || (a.hi === b.hi && a.lo <= b.lo);
}

export function lessThan(a: U56, b: U56): boolean {
  return a.hi < b.hi || (a.hi === b.hi && a.lo < b.lo);
}

/** T <= R: the span is sampled. */
export function shouldSample(threshold: U56, randomness: U56): boolean {
  return lessOrEqual(threshold, randomness);
}

function isHexDigits(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (!((c >= 48 && c <= 57) || (c >= 97 && c <= 102) || (c >= 65 && c <= 70))) return false;
  }
  return true;
}

/** Up to 14 hex digits, missing trailing digits read as zeros (a t-value). */
function fromHexPrefix(s: string): U56 {
  const padded = s.padEnd(NUM_HEX_DIGITS, '0');
  return { hi: parseInt(padded.slice(0, 7), 16), lo: parseInt(padded.slice(7), 16) };
}

/** A `th` value as the Collector's TValueToThreshold reads it; undefined where it errs. */
export function parseTValue(s: string): U56 | undefined {
  if (s.length === 0 || s.length > NUM_HEX_DIGITS || !isHexDigits(s)) return undefined;
  return fromHexPrefix(s);
}

/** An `rv` value: exactly 14 hex digits. */
export function parseRValue(s: string): U56 | undefined {
  if (s.length !== NUM_HEX_DIGITS || !isHexDigits(s)) return undefined;
  return fromHexPrefix(s);
}

/** 14 lowercase hex digits (the r-value form); '' when out of range. */
export function hex14(value: U56): string {
  if (value.hi >= HALF) return '';
  return value.hi.toString(16).padStart(7, '0') + value.lo.toString(16).padStart(7, '0');
}

/** The `th` text of a threshold: '0' for always, '' for never, else 14 digits without trailing zeros. */
export function tValue(threshold: U56): string {
  if (threshold.hi === 0 && threshold.lo === 0) return '0';
  if (threshold.hi >= HALF) return '';
  return hex14(threshold).replace(/0+$/, '');
}

/** (2^56 - T) / 2^56 as a double, rounded once as Go's uint64 -> float64 conversion does. */
export function probability(threshold: U56): number {
  const borrow = threshold.lo > 0 ? 1 : 0;
  const hi = HALF - threshold.hi - borrow;
  const lo = borrow ? HALF - threshold.lo : 0;
  return (hi * HALF + lo) / 2 ** 56;
}

const MASK64 = (1n << 64n) - 1n;
const MAX_ADJUSTED_COUNT = 1n << 56n;
const exponentView = new DataView(new ArrayBuffer(8));

/** The exponent math.Frexp returns for a positive normal double (x = f * 2^exp, 0.5 <= f < 1). */
function frexpExponent(x: number): number {
  if (x === 0) return 0;
  exponentView.setFloat64(0, x);
  const biased = (exponentView.getUint16(0) >> 4) & 0x7ff;
  if (biased === 0) return frexpExponent(x * 2 ** 64) - 64;
  return biased - 1022;
}

/**
 * The Collector's ProbabilityToThresholdWithPrecision: the probability rounded to `precision` hex
 * digits, more near 0 and 1; undefined outside [2^-56, 1]. Go's uint64 shifts are reproduced
 * (a shift of 64 or more gives 0), so even the negative precisions the Collector accepts agree.
 */
export function probabilityToThreshold(fraction: number, precision: number): U56 | undefined {
  if (precision === 0) precision = NUM_HEX_DIGITS;
  if (!(fraction >= MIN_SAMPLING_PROBABILITY && fraction <= 1)) return undefined;
  if (fraction === 1) return ALWAYS_SAMPLE;
  const expF = frexpExponent(fraction);
  const expR = frexpExponent(1 - fraction);
  precision = Math.min(NUM_HEX_DIGITS, Math.max(precision + Math.trunc(expF / -4), precision + Math.trunc(expR / -4)));
  const scaled = BigInt(Math.round(fraction * 2 ** 56));
  let threshold = MAX_ADJUSTED_COUNT - scaled;
  const shift = 4 * (NUM_HEX_DIGITS - precision);
  if (shift !== 0) {
    const half = shift - 1 >= 64 ? 0n : (1n << BigInt(shift - 1)) & MASK64;
    threshold = (threshold + half) & MASK64;
    threshold = shift >= 64 ? 0n : threshold >> BigInt(shift);
    threshold = shift >= 64 ? 0n : (threshold << BigInt(shift)) & MASK64;
  }
  // Rounding may reach 2^56 (never); a wrapped uint64 above it cannot occur from values <= 2^56 + 2^63.
  return { hi: Number(threshold >> 28n), lo: Number(threshold & BigInt(HALF_MASK)) };
}

/** The threshold of the 14-bit hash_seed mode: `reject` buckets of 2^14, shifted into 56 bits. */
export function hashBucketThreshold(reject: number): U56 {
  // reject << 42: the 14 bits land in the top 14 of the upper half.
  return { hi: reject * 0x4000, lo: 0 };
}
