import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { DEFAULT_MAX_SIZE, ExponentialHistogram, MAX_SCALE, mapToIndex, scaleChange } from '../../src/connectors/exponential-histogram';
import { parseSpanMetricsConfig } from '../../src/connectors/spanmetrics/config';
import { SpanMetricsConnector } from '../../src/connectors/spanmetrics/spanmetrics-connector';
import { types } from '../../src/pdata/codec';
import { Capture, configErrors, parseWith, testSettings } from '../helpers/components';
import { encodeTraces, hostInstance, obiResourceSpans, obiSpan } from '../helpers/obi';
import { parseRequest } from '../../src/pdata/scan';

// The base-2 exponential histogram behind spanmetrics' histogram.exponential: bucket index math
// at its edges, downscaling, and the option's config. Equality with the Collector's own
// aggregation is checked in spanmetrics-conformance.test.ts.

/** The next double above / below a positive double. */
function nextUp(x: number): number {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  view.setBigUint64(0, view.getBigUint64(0) + 1n);
  return view.getFloat64(0);
}
function nextDown(x: number): number {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  view.setBigUint64(0, view.getBigUint64(0) - 1n);
  return view.getFloat64(0);
}

describe('mapToIndex', () => {
  test('an exact power of two is the upper bound of its bucket (inclusive), at every scale', () => {
    for (const scale of [20, 8, 3, 1, 0, -1, -4, -10]) {
      for (const e of [-30, -1, 0, 1, 10, 40]) {
        const value = 2 ** e;
        // Bucket i holds (2^(i·2^-scale), 2^((i+1)·2^-scale)]: 2^e ends bucket e·2^scale - 1.
        const expected = scale >= 0 ? e * 2 ** scale - 1 : Math.floor((e - 1) / 2 ** -scale);
        assert.equal(mapToIndex(value, scale), expected, `2^${e} at scale ${scale}`);
        // The next double up starts the next bucket; the one below stays in it.
        assert.equal(mapToIndex(nextUp(value), scale), scale >= 0 ? expected + 1 : Math.floor(e / 2 ** -scale), `just above 2^${e} at scale ${scale}`);
        // Below it: the same bucket by the exponent (scale <= 0); by the logarithm (scale > 0) one ulp
        // is below its resolution and may land in the next bucket, as in the Collector's mapping.
        const below = mapToIndex(nextDown(value), scale);
        if (scale <= 0) assert.equal(below, expected, `just below 2^${e} at scale ${scale}`);
        else assert.ok(below === expected || below === expected + 1, `just below 2^${e} at scale ${scale}: ${below}`);
        assert.equal(mapToIndex(value * (1 - 1e-9), scale), expected, `below 2^${e} at scale ${scale}`);
      }
    }
  });

  test('known values at positive scales: 1.5 and 3 between their powers of two', () => {
    // At scale 1 the bounds are 1, √2, 2, 2√2, 4: 1.5 is in (√2, 2] = bucket 1, 3 in (2√2, 4] = bucket 3.
    assert.equal(mapToIndex(1.5, 1), 1);
    assert.equal(mapToIndex(3, 1), 3);
    assert.equal(mapToIndex(1.4, 1), 0);
    assert.equal(mapToIndex(3, 0), 1);
    assert.equal(mapToIndex(0.75, 0), -1);
  });

  test('values at the bottom of the double range (subnormal) map to the lowest index, not below', () => {
    assert.equal(mapToIndex(Number.MIN_VALUE, 20), (-1022 << 20) - 1);
    assert.equal(mapToIndex(2 ** -1022, 20), (-1022 << 20) - 1);
    assert.equal(mapToIndex(Number.MIN_VALUE, 0), -1023);
    assert.equal(mapToIndex(Number.MIN_VALUE, -4), -1022 >> 4);
    assert.equal(mapToIndex(Number.MAX_VALUE, 20), (1024 << 20) - 1);
  });

  test('buckets nest: the index at scale s - 1 is the index at scale s halved (downscaling stays exact)', () => {
    fc.assert(
      fc.property(fc.double({ min: 1e-9, max: 1e12, noNaN: true }), fc.integer({ min: -9, max: 20 }), (value, scale) => {
        assert.equal(mapToIndex(value, scale - 1), mapToIndex(value, scale) >> 1);
      }),
      { numRuns: 3000 },
    );
  });
});

describe('ExponentialHistogram', () => {
  test('a single value stays at scale 20; only zeros report scale 0 and no buckets', () => {
    const h = new ExponentialHistogram();
    h.record(12.5);
    assert.equal(h.scale, MAX_SCALE);
    assert.deepEqual([h.offset, h.counts], [mapToIndex(12.5, 20), [1]]);
    const zeros = new ExponentialHistogram();
    zeros.record(0);
    zeros.record(0, 3);
    assert.deepEqual([zeros.scale, zeros.zeroCount, zeros.count, zeros.counts, zeros.offset, zeros.sum, zeros.min, zeros.max], [0, 4, 4, [], 0, 0, 0, 0]);
  });

  test('zero goes to the zero count, the smallest positive doubles to buckets (threshold 0)', () => {
    const h = new ExponentialHistogram();
    h.record(0);
    h.record(Number.MIN_VALUE);
    h.record(1e-6);
    assert.equal(h.zeroCount, 1);
    assert.equal(h.counts.reduce((a, b) => a + b, 0), 2);
    assert.equal(h.min, 0);
    assert.equal(h.max, 1e-6);
  });

  test('downscaling on overflow: the scale is the highest at which the populated range fits max_size', () => {
    fc.assert(
      fc.property(fc.array(fc.double({ min: 1e-6, max: 1e6, noNaN: true }), { minLength: 1, maxLength: 60 }), fc.integer({ min: 2, max: 40 }), (values, maxSize) => {
        const h = new ExponentialHistogram(maxSize);
        for (const v of values) h.record(v);
        const indices = values.map((v) => mapToIndex(v, h.scale));
        const lo = Math.min(...indices);
        const hi = Math.max(...indices);
        assert.equal(h.offset, lo);
        assert.equal(h.counts.length, hi - lo + 1);
        assert.ok(hi - lo < maxSize);
        // Not lower than needed: one scale up would not fit (unless already at 20).
        if (h.scale < MAX_SCALE) assert.equal(scaleChange(Math.min(...values.map((v) => mapToIndex(v, h.scale + 1))), Math.max(...values.map((v) => mapToIndex(v, h.scale + 1))), maxSize), 1);
        for (const [i, v] of values.entries()) assert.ok(h.counts[indices[i]! - lo]! > 0, `${v} counted`);
        assert.equal(
          h.counts.reduce((a, b) => a + b, 0),
          values.length,
        );
      }),
      { numRuns: 500 },
    );
  });

  test('a concrete downscale: 1, 2, 4, 8 with max_size 4', () => {
    const h = new ExponentialHistogram(4);
    for (const v of [1, 2, 4, 8]) h.record(v);
    // Powers of two end buckets: at scale 0 they are -1, 0, 1, 2: four buckets fit.
    assert.deepEqual([h.scale, h.offset, h.counts], [0, -1, [1, 1, 1, 1]]);
    h.record(16);
    // Five buckets do not: scale -1 merges pairs: (-1, 0, 1, 2, 3) >> 1 = (-1, 0, 0, 1, 1).
    assert.deepEqual([h.scale, h.offset, h.counts], [-1, -1, [1, 2, 2]]);
  });

  test('weighted values add incr to count and bucket, value × incr to sum', () => {
    const h = new ExponentialHistogram();
    h.record(3, 4);
    h.record(5);
    assert.deepEqual([h.count, h.sum, h.counts.reduce((a, b) => a + b, 0), h.min, h.max], [5, 17, 5, 3, 5]);
  });
});

describe('histogram.exponential config', () => {
  const errors = (histogram: unknown) => configErrors((n) => parseSpanMetricsConfig(n), { histogram }, 'connectors::spanmetrics');

  test('defaults, max_size, and `exponential:` with nothing under it (explicit, as in the Collector)', () => {
    assert.deepEqual(parseWith(parseSpanMetricsConfig, { histogram: { exponential: {} } }).histogram.exponential, { maxSize: DEFAULT_MAX_SIZE });
    assert.deepEqual(parseWith(parseSpanMetricsConfig, { histogram: { exponential: { max_size: 0 } } }).histogram.exponential, { maxSize: DEFAULT_MAX_SIZE });
    assert.deepEqual(parseWith(parseSpanMetricsConfig, { histogram: { exponential: { max_size: 20 } } }).histogram.exponential, { maxSize: 20 });
    assert.equal(parseWith(parseSpanMetricsConfig, { histogram: { exponential: null } }).histogram.exponential, undefined);
    assert.equal(parseWith(parseSpanMetricsConfig, {}).histogram.exponential, undefined);
  });

  test('bad max_size and explicit with exponential are named with their key path', () => {
    assert.match(errors({ exponential: { max_size: 1 } }).join('\n'), /connectors::spanmetrics::histogram::exponential::max_size: must be between 2 and 16384/);
    assert.match(errors({ exponential: { max_size: 20_000 } }).join('\n'), /histogram::exponential::max_size: must be between 2 and 16384/);
    assert.match(errors({ exponential: { max_size: -1 } }).join('\n'), /histogram::exponential::max_size: must be between/);
    assert.match(errors({ exponential: { max_size: 'many' } }).join('\n'), /histogram::exponential::max_size: expected an integer/);
    assert.match(errors({ exponential: { maxsize: 20 } }).join('\n'), /histogram::exponential::maxsize: unknown key/);
    assert.match(errors({ exponential: { max_size: 20 }, explicit: { buckets: ['1ms'] } }).join('\n'), /histogram::exponential: use either `explicit` or `exponential`/);
  });

  test('the connector emits an ExponentialHistogram with min, max and exemplars; delta clears it each flush', async () => {
    const capture = new Capture();
    const config = parseWith(parseSpanMetricsConfig, { aggregation_temporality: 'AGGREGATION_TEMPORALITY_DELTA', histogram: { exponential: { max_size: 10 } }, exemplars: { enabled: true } });
    const connector = new SpanMetricsConnector(testSettings('exp'), config, capture);
    const instance = hostInstance('h', 1, 'svc');
    const ms = (n: number) => BigInt(Math.round(n * 1e6));
    await connector.consume(parseRequest('traces', encodeTraces([obiResourceSpans(instance, [obiSpan({ name: 'a', durationNs: ms(2) }), obiSpan({ name: 'a', durationNs: ms(3) }), obiSpan({ name: 'a', durationNs: 0n })])])).batch);
    await connector.flush();
    await connector.consume(parseRequest('traces', encodeTraces([obiResourceSpans(instance, [obiSpan({ name: 'a', durationNs: ms(1000) })])])).batch);
    await connector.flush();
    const points = capture.batches.map((b) => {
      const rm = types.ResourceMetrics.toObject(types.ResourceMetrics.decode(b.resources[0]!.bytes), { longs: Number, defaults: true }) as {
        scopeMetrics: Array<{ metrics: Array<{ name: string; unit: string; exponentialHistogram?: { aggregationTemporality: number; dataPoints: Array<Record<string, unknown>> } }> }>;
      };
      const metric = rm.scopeMetrics[0]!.metrics.find((m) => m.name === 'traces.span.metrics.duration')!;
      assert.equal(metric.unit, 'ms');
      assert.equal(metric.exponentialHistogram!.aggregationTemporality, 1);
      return metric.exponentialHistogram!.dataPoints[0]!;
    });
    const [p1, p2] = points as [Record<string, unknown> & { positive: { offset: number; bucketCounts: number[] }; exemplars: unknown[] }, Record<string, unknown> & { positive: { offset: number; bucketCounts: number[] } }];
    // The highest scale at which 2 and 3 are fewer than 10 buckets apart.
    let scale = 20;
    while (mapToIndex(3, scale) - mapToIndex(2, scale) >= 10) scale--;
    assert.deepEqual([p1.count, p1.sum, p1.zeroCount, p1.min, p1.max, p1.scale], [3, 5, 1, 0, 3, scale]);
    assert.equal(p1.exemplars.length, 3);
    // 2 ends a bucket at every scale: 2^scale - 1.
    assert.equal(p1.positive.offset, 2 ** scale - 1);
    assert.equal(p1.positive.bucketCounts.reduce((a, b) => a + b, 0), 2);
    // Delta: the second flush holds only the second request's span, back at scale 20.
    assert.deepEqual([p2.count, p2.sum, p2.scale, p2.positive.bucketCounts], [1, 1000, 20, [1]]);
  });
});
