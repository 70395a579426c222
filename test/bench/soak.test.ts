import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseSoakOptions, secondHalf, slopePerMinute, summarise, valueAt } from '../../bench/soak-stats';

void describe('bench: soak', () => {
  void test('the slope is per minute, least squares, over the second half only', () => {
    // 2 MiB per minute: 1/30 MiB per second.
    const line = [0, 10, 20, 30, 40, 50, 60].map((t) => ({ t, v: 50 + t / 30 }));
    assert.ok(Math.abs(slopePerMinute(line) - 2) < 1e-9);
    // Growth in the first half only (a warm-up), then flat with noise around 80: slope ~0.
    const warm = [
      { t: 0, v: 40 }, { t: 20, v: 60 }, { t: 40, v: 79 },
      { t: 60, v: 80 }, { t: 80, v: 81 }, { t: 100, v: 79 }, { t: 120, v: 80 },
    ];
    assert.deepEqual(secondHalf(warm).map((p) => p.t), [60, 80, 100, 120]);
    assert.ok(Math.abs(slopePerMinute(secondHalf(warm)) + 0.6) < 1e-9);
    assert.ok(slopePerMinute(warm) > 10);
    assert.ok(Number.isNaN(slopePerMinute([{ t: 5, v: 1 }])));
    assert.ok(Number.isNaN(slopePerMinute([{ t: 5, v: 1 }, { t: 5, v: 2 }])));
  });

  void test('the summary: at 1 min, at the end, the second half slope, the largest sample', () => {
    const points = [5, 55, 65, 120, 180, 240].map((t, i) => ({ t, v: [70, 72, 74, 90, 76, 78][i]! }));
    assert.equal(valueAt(points, 60), 74);
    assert.equal(valueAt(points, 500), undefined);
    const s = summarise(points);
    assert.equal(s.at_1min, 74);
    assert.equal(s.end, 78);
    assert.equal(s.max_sampled, 90);
    // second half: t >= 120: (120, 90), (180, 76), (240, 78) -> -6 MiB/min
    assert.equal(s.slope_per_min_second_half, -6);
    assert.deepEqual(summarise([]), { at_1min: null, end: null, slope_per_min_second_half: null, max_sampled: null });
  });

  void test('options: defaults, values and clear errors', () => {
    const d = parseSoakOptions([]);
    assert.equal(d.seconds, 600);
    assert.equal(d.rate, 20_000);
    assert.equal(d.shape.name, 'obi-sidecar');
    assert.deepEqual(d.systems, ['spansieve', 'collector']);
    assert.equal(d.transport, 'grpc');
    assert.equal(d.intervalS, 5);
    const o = parseSoakOptions(['--seconds', '120', '--shape', 'default', '--systems', 'collector', '--rate', '5000', '--interval', '2', '--burst', '0', '--transport', 'http-protobuf', '--out', 'x.json']);
    assert.deepEqual(
      [o.seconds, o.shape.name, o.systems, o.rate, o.intervalS, o.burstS, o.transport, o.out],
      [120, 'default', ['collector'], 5000, 2, 0, 'http-protobuf', 'x.json'],
    );
    assert.throws(() => parseSoakOptions(['--seconds', '0']), /--seconds must be a positive number of seconds/);
    assert.throws(() => parseSoakOptions(['--seconds']), /--seconds needs a value/);
    assert.throws(() => parseSoakOptions(['--shape', 'nope']), /unknown shape "nope"/);
    assert.throws(() => parseSoakOptions(['--systems', 'spansieve,jaeger']), /--systems: unknown "jaeger"/);
    assert.throws(() => parseSoakOptions(['--transport', 'udp']), /--transport: unknown "udp"/);
    assert.throws(() => parseSoakOptions(['--seconds', '10', '--interval', '5']), /fewer than 4 samples/);
    assert.throws(() => parseSoakOptions(['--soak']), /unknown argument "--soak"/);
  });
});
