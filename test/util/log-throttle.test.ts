import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LogThrottle } from '../../src/util/log-throttle';

test('one line per interval; the next line that gets through counts those left out', () => {
  let now = 1_000;
  const throttle = new LogThrottle(10_000, () => now);
  assert.equal(throttle.take(), 0, 'the first one is logged');
  const inStorm = Array.from({ length: 500 }, () => throttle.take());
  assert.ok(inStorm.every((x) => x === undefined), 'the rest of the interval is suppressed');
  now += 9_999;
  assert.equal(throttle.take(), undefined);
  now += 1;
  assert.equal(throttle.take(), 501, 'the next interval logs, with the count left out');
  now += 60_000;
  assert.equal(throttle.take(), 0, 'after a quiet minute nothing was left out');
});
