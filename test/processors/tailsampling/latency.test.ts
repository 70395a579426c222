import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { types } from '../../../src/pdata/codec';
import { parseRequest } from '../../../src/pdata/scan';
import { buildEvaluator, type TraceView } from '../../../src/processors/tailsampling/policies';
import { splitByTrace, StoredBlock, type Part } from '../../../src/processors/tailsampling/trace-data';

// The latency policy reads span times as 32-bit halves and computes the duration in doubles when
// that is exact: it must decide as the BigInt computation (the Collector's int64 arithmetic on
// these inputs) for every timestamp, including durations past 2^53 ns, end before start, and
// durations a nanosecond either side of a whole millisecond.

const TRACE_ID = Buffer.alloc(16, 7);

function traceOf(times: readonly (readonly [bigint, bigint])[]): TraceView {
  const spans = times.map(([start, end], i) => ({
    traceId: TRACE_ID,
    spanId: Buffer.from([0, 0, 0, 0, 0, 0, i >> 8, (i & 255) | 1]),
    name: 's',
    startTimeUnixNano: start.toString(),
    endTimeUnixNano: end.toString(),
  }));
  const type = types.ExportTraceServiceRequest;
  const body = Buffer.from(type.encode(type.fromObject({ resourceSpans: [{ resource: {}, scopeSpans: [{ scope: {}, spans }] }] })).finish());
  const block = parseRequest('traces', body).batch.resources[0]!;
  const parts: Part[] = [];
  splitByTrace(block, new StoredBlock(block.bytes, block.attributes), (part) => {
    parts.push(part);
  });
  return { key: TRACE_ID.toString('latin1'), parts, spanCount: times.length };
}

/** The policy as computed before, in BigInt: the reference. */
function reference(times: readonly (readonly [bigint, bigint])[], lowerMs: number, upperMs: number): 'sampled' | 'not_sampled' {
  const lower = BigInt(lowerMs);
  const upper = BigInt(upperMs);
  let min = 0n;
  let max = 0n;
  for (const [start, end] of times) {
    if (min === 0n || start < min) min = start;
    if (max === 0n || end > max) max = end;
    const ms = (max - min) / 1_000_000n;
    if (upper === 0n ? ms > lower : lower < ms && ms <= upper) return 'sampled';
  }
  return 'not_sampled';
}

const BASE = 1_700_000_000_000_000_000n;
const U64 = 2n ** 64n - 1n;

const timestamp = fc.oneof(
  fc.bigInt({ min: 0n, max: U64 }),
  fc.bigInt({ min: BASE - 10n ** 12n, max: BASE + 10n ** 12n }),
  fc.constantFrom(0n, 1n, BASE, 2n ** 53n, 2n ** 63n, U64, 2n ** 32n - 1n, 2n ** 32n),
);
const offset = fc.oneof(
  fc.bigInt({ min: -(10n ** 10n), max: 10n ** 10n }),
  // A nanosecond either side of the thresholds' milliseconds.
  fc.integer({ min: 0, max: 2_000 }).chain((ms) => fc.constantFrom(BigInt(ms) * 1_000_000n - 1n, BigInt(ms) * 1_000_000n, BigInt(ms) * 1_000_000n + 1n)),
  fc.constantFrom(2n ** 53n, 2n ** 53n + 1n, (1n << 21n) * 2n ** 32n, (1n << 21n) * 2n ** 32n - 1n),
);
const clamp = (v: bigint): bigint => (v < 0n ? 0n : v > U64 ? U64 : v);
const span = fc.tuple(timestamp, offset).map(([start, d]) => [start, clamp(start + d)] as const);

test('latency decides as the BigInt computation for any timestamps', () => {
  fc.assert(
    fc.property(
      fc.array(span, { minLength: 1, maxLength: 6 }),
      fc.integer({ min: 0, max: 2_000 }),
      fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 3_000 })),
      (times, lowerMs, upperMs) => {
        const evaluator = buildEvaluator({ type: 'latency', thresholdMs: lowerMs, upperThresholdMs: upperMs }, Date.now);
        assert.equal(evaluator.evaluate(traceOf(times)), reference(times, lowerMs, upperMs));
      },
    ),
    { numRuns: 2000 },
  );
});

test('latency at the millisecond boundaries of a realistic trace', () => {
  for (const [d, expected] of [
    [100_000_000n, 'not_sampled'],
    [100_999_999n, 'not_sampled'],
    [101_000_000n, 'sampled'],
  ] as const) {
    const evaluator = buildEvaluator({ type: 'latency', thresholdMs: 100, upperThresholdMs: 0 }, Date.now);
    assert.equal(evaluator.evaluate(traceOf([[BASE, BASE + d]])), expected, `duration ${d} ns`);
  }
});
