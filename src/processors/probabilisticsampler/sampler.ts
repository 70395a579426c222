import type { ProbabilisticSamplerConfig, SamplerMode } from './config';
import {
  ALL_PROBABILITIES,
  ALWAYS_SAMPLE,
  MIN_SAMPLING_PROBABILITY,
  NEVER_SAMPLE,
  hashBucketThreshold,
  hex14,
  lessThan,
  probability,
  probabilityToThreshold,
  shouldSample,
  tValue,
  type U56,
} from '../../pdata/sampling-threshold';
import { parseTraceState, type W3CTraceState } from '../../pdata/tracestate';

// One span's sampling decision, step for step as the Collector's probabilistic_sampler traces
// path (v0.160.0): randomness from the trace id (FNV hash in hash_seed mode, its last 7 bytes in
// the consistent modes) or an `rv`, the arriving `th` checked against it, fail_closed on errors,
// then `sampling.priority`, then `th` written into the tracestate of a kept span.

/** The `policy` attribute of the count_traces_sampled metric. */
export type Policy = 'trace_id_hash' | 'trace_id_w3c' | 'sampling_randomness' | 'sampling_priority' | 'missing_randomness';
export const POLICIES: readonly Policy[] = ['trace_id_hash', 'trace_id_w3c', 'sampling_randomness', 'sampling_priority', 'missing_randomness'];

/** The span's `sampling.priority` attribute, as OpenTracing reads it. */
export const enum Priority {
  Defer = 0,
  MustSample = 1,
  DoNotSample = 2,
}

export interface SpanDecision {
  sampled: boolean;
  policy: Policy;
  /** The kept span's tracestate as the Collector writes it back; undefined when it is not rewritten. */
  traceState: string | undefined;
}

type Kind = 'never' | 'hash' | 'equalizing' | 'proportional';

const NUM_HASH_BUCKETS = 0x4000;
/** 16384 / 100 as a float32, as the Go constant multiplies a float32 percentage. */
const PERCENTAGE_SCALE = Math.fround(NUM_HASH_BUCKETS / 100);
const PROPORTIONAL_CACHE_LIMIT = 4096;

export class Sampler {
  readonly kind: Kind;
  readonly mode: SamplerMode;
  private readonly failClosed: boolean;
  private readonly hashSeedBytes: Uint8Array;
  /** hash_seed and equalizing: the configured threshold. */
  private readonly threshold: U56;
  private readonly ratio: number;
  private readonly precision: number;
  /** proportional: the threshold for each arriving `th` seen (few distinct ones in practice). */
  private readonly proportionalCache = new Map<string, U56>();
  private readonly proportionalDefault: U56;
  private readonly decision: SpanDecision = { sampled: false, policy: 'missing_randomness', traceState: undefined };
  /** tValue() of the two configured thresholds, computed once. */
  private readonly thresholdText: string;
  private readonly proportionalDefaultText: string;

  constructor(config: ProbabilisticSamplerConfig) {
    this.failClosed = config.failClosed;
    this.precision = config.samplingPrecision;
    this.hashSeedBytes = new Uint8Array(4);
    new DataView(this.hashSeedBytes.buffer).setUint32(0, config.hashSeed >>> 0, true);
    // The mode when unset is hash_seed (for traces, whatever hash_seed is).
    this.mode = config.mode === '' ? 'hash_seed' : config.mode;
    const { kind, threshold, ratio, proportionalDefault } = configure(config, this.mode);
    this.kind = kind;
    this.threshold = threshold;
    this.ratio = ratio;
    this.proportionalDefault = proportionalDefault;
    this.thresholdText = tValue(threshold);
    this.proportionalDefaultText = tValue(proportionalDefault);
  }

  /**
   * The decision for one span. `traceId` is [start, end) in `buf` (16 bytes; empty when absent).
   * The returned object is reused by the next call.
   */
  decide(buf: Uint8Array, traceIdStart: number, traceIdEnd: number, traceState: string, priority: Priority): SpanDecision {
    const hasTraceId = traceIdEnd - traceIdStart === 16 && !allZero(buf, traceIdStart, traceIdEnd);
    if (traceState === '' && hasTraceId) return this.decideWithoutTraceState(buf, traceIdStart, traceIdEnd, priority);
    let randomness: U56 | undefined; // undefined: missing
    let policy: Policy = 'missing_randomness';
    let carrier: W3CTraceState | undefined;
    let failed = false;
    switch (this.kind) {
      case 'hash': {
        if (hasTraceId) {
          randomness = hashRandomness(this.hashSeedBytes, buf, traceIdStart, traceIdEnd);
          policy = 'trace_id_hash';
        }
        const parsed = parseTraceState(traceState);
        // An explicit rv or th belongs to the consistent modes: left alone here.
        if (parsed.error !== undefined || parsed.state.ot.rvalue !== '' || parsed.state.ot.tvalue !== '') {
          failed = true;
        } else {
          carrier = parsed.state;
          const rnd = randomness ?? ALL_PROBABILITIES;
          carrier.ot.rvalue = hex14(rnd);
          carrier.ot.randomness = rnd;
        }
        break;
      }
      case 'equalizing':
      case 'proportional': {
        const parsed = parseTraceState(traceState);
        if (parsed.error !== undefined) {
          failed = true;
        } else {
          carrier = parsed.state;
          if (carrier.ot.rvalue !== '') {
            randomness = carrier.ot.randomness;
            policy = 'sampling_randomness';
          } else if (hasTraceId) {
            randomness = traceIdRandomness(buf, traceIdStart);
            policy = 'trace_id_w3c';
          }
        }
        break;
      }
      case 'never': {
        // A stand-in randomness: the decision is never anyway. The carrier stays even after a parse error.
        randomness = ALL_PROBABILITIES;
        policy = 'sampling_priority';
        const parsed = parseTraceState(traceState);
        carrier = parsed.state;
        failed = parsed.error !== undefined;
        break;
      }
    }
    if (!failed) {
      if (randomness === undefined) {
        failed = true;
      } else if (carrier && carrier.ot.tvalue !== '' && !shouldSample(carrier.ot.threshold, randomness)) {
        // An arriving threshold its randomness contradicts: cleared, as the specification says.
        carrier.ot.tvalue = '';
        carrier.ot.threshold = ALWAYS_SAMPLE;
        failed = true;
      }
    }
    let threshold = failed ? (this.failClosed ? NEVER_SAMPLE : ALWAYS_SAMPLE) : this.thresholdFor(carrier);
    if (priority === Priority.DoNotSample) {
      threshold = NEVER_SAMPLE;
      policy = 'sampling_priority';
    } else if (priority === Priority.MustSample) {
      threshold = ALWAYS_SAMPLE;
      policy = 'sampling_priority';
    }
    const sampled = shouldSample(threshold, randomness ?? ALL_PROBABILITIES);
    const decision = this.decision;
    decision.sampled = sampled;
    decision.policy = policy;
    decision.traceState = undefined;
    if (sampled && carrier) {
      // The threshold only rises (probability only falls); an attempt to lower it changes nothing.
      const ot = carrier.ot;
      if (!(ot.tvalue !== '' && lessThan(threshold, ot.threshold))) {
        ot.threshold = threshold;
        ot.tvalue = tValue(threshold);
      }
      decision.traceState = carrier.serialize();
    }
    return decision;
  }

  /**
   * The common case, without building a tracestate: the same steps as decide() for an empty
   * tracestate and a valid trace id (no error is possible), the kept span's tracestate written
   * directly (`rv` first in hash_seed mode, then `th`).
   */
  private decideWithoutTraceState(buf: Uint8Array, traceIdStart: number, traceIdEnd: number, priority: Priority): SpanDecision {
    let randomness: U56;
    let policy: Policy;
    let threshold: U56;
    switch (this.kind) {
      case 'hash':
        randomness = hashRandomness(this.hashSeedBytes, buf, traceIdStart, traceIdEnd);
        policy = 'trace_id_hash';
        threshold = this.threshold;
        break;
      case 'equalizing':
      case 'proportional':
        randomness = traceIdRandomness(buf, traceIdStart);
        policy = 'trace_id_w3c';
        threshold = this.kind === 'equalizing' ? this.threshold : this.proportionalDefault;
        break;
      case 'never':
        randomness = ALL_PROBABILITIES;
        policy = 'sampling_priority';
        threshold = NEVER_SAMPLE;
        break;
    }
    if (priority === Priority.DoNotSample) {
      threshold = NEVER_SAMPLE;
      policy = 'sampling_priority';
    } else if (priority === Priority.MustSample) {
      threshold = ALWAYS_SAMPLE;
      policy = 'sampling_priority';
    }
    const decision = this.decision;
    decision.sampled = shouldSample(threshold, randomness);
    decision.policy = policy;
    decision.traceState = undefined;
    if (decision.sampled) {
      const th = threshold === this.threshold ? this.thresholdText : threshold === this.proportionalDefault ? this.proportionalDefaultText : tValue(threshold);
      decision.traceState = this.kind === 'hash' ? `ot=rv:${hex14(randomness)};th:${th}` : `ot=th:${th}`;
    }
    return decision;
  }

  private thresholdFor(carrier: W3CTraceState | undefined): U56 {
    switch (this.kind) {
      case 'never':
        return NEVER_SAMPLE;
      case 'hash':
        return this.threshold;
      case 'equalizing': {
        const ot = carrier?.ot;
        if (ot && ot.tvalue !== '' && lessThan(this.threshold, ot.threshold)) return ot.threshold;
        return this.threshold;
      }
      case 'proportional': {
        const ot = carrier?.ot;
        if (!ot || ot.tvalue === '') return this.proportionalDefault;
        let cached = this.proportionalCache.get(ot.tvalue);
        if (cached === undefined) {
          // Below the smallest probability: never sampled, as in the Collector.
          cached = probabilityToThreshold(probability(ot.threshold) * this.ratio, this.precision) ?? NEVER_SAMPLE;
          if (this.proportionalCache.size >= PROPORTIONAL_CACHE_LIMIT) this.proportionalCache.clear();
          this.proportionalCache.set(ot.tvalue, cached);
        }
        return cached;
      }
    }
  }
}

/** The sampler a config makes, as the Collector's makeSampler (a percentage above 100 is 100). */
function configure(config: ProbabilisticSamplerConfig, mode: SamplerMode): { kind: Kind; threshold: U56; ratio: number; proportionalDefault: U56 } {
  const never = { kind: 'never' as const, threshold: NEVER_SAMPLE, ratio: 0, proportionalDefault: NEVER_SAMPLE };
  const pct = Math.min(config.samplingPercentage, 100);
  if (pct === 0) return never;
  const ratio = Math.max(pct / 100, MIN_SAMPLING_PROBABILITY);
  switch (mode) {
    case 'equalizing':
      return { ...never, kind: 'equalizing', threshold: probabilityToThreshold(ratio, config.samplingPrecision) ?? ALWAYS_SAMPLE };
    case 'proportional':
      return { ...never, kind: 'proportional', ratio, proportionalDefault: probabilityToThreshold(ratio, config.samplingPrecision) ?? NEVER_SAMPLE };
    case 'hash_seed': {
      // Kept as the Collector computes it for compatibility: a float32 product, truncated.
      const scaled = Math.trunc(Math.fround(pct * PERCENTAGE_SCALE));
      if (scaled === 0) return never;
      return { ...never, kind: 'hash', threshold: hashBucketThreshold(NUM_HASH_BUCKETS - scaled) };
    }
  }
}

function allZero(buf: Uint8Array, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (buf[i] !== 0) return false;
  return true;
}

/** FNV-1a (32 bits) over the seed's 4 little-endian bytes, then the trace id. */
export function fnv1a32(seed: Uint8Array, buf: Uint8Array, start: number, end: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < 4; i++) h = Math.imul(h ^ seed[i]!, 0x01000193);
  for (let i = start; i < end; i++) h = Math.imul(h ^ buf[i]!, 0x01000193);
  return h >>> 0;
}

/**
 * The hash_seed mode's 56-bit randomness: from the top, 14 bits (2^14 - 1 - bucket), 28 bits
 * mixed from the hash's 18 unused bits, 14 bits of the bucket; only the top 14 decide.
 */
export function hashRandomness(seed: Uint8Array, buf: Uint8Array, start: number, end: number): U56 {
  const hashed32 = fnv1a32(seed, buf, start, end);
  const hashed = hashed32 & (NUM_HASH_BUCKETS - 1);
  const rprime14 = NUM_HASH_BUCKETS - 1 - hashed;
  // The Collector's "unused18" is the hash's top 14 bits (>> 18); kept as it is.
  const unused = hashed32 >>> 18;
  const mixed28 = unused ^ (unused << 10);
  // rnd56 = rprime14 << 42 | mixed28 << 14 | hashed, split into two 28-bit halves.
  return { hi: rprime14 * 0x4000 + (mixed28 >>> 14), lo: (mixed28 & 0x3fff) * 0x4000 + hashed };
}

/** The W3C randomness of a trace id: its last 7 bytes. */
export function traceIdRandomness(buf: Uint8Array, start: number): U56 {
  const b = (i: number): number => buf[start + i]!;
  return {
    hi: b(9) * 0x100000 + b(10) * 0x1000 + b(11) * 0x10 + (b(12) >>> 4),
    lo: (b(12) & 0xf) * 0x1000000 + b(13) * 0x10000 + b(14) * 0x100 + b(15),
  };
}
