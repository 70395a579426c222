import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SelfTelemetry } from '../../src/service/telemetry';

// Self-metric histograms: numbers until a scrape, then Prometheus text with _bucket/_sum/_count.

test('a histogram is exposed with cumulative buckets, +Inf, sum and count, whether bound before or after the first scrape', async () => {
  const telemetry = new SelfTelemetry();
  const early = telemetry.histogram('test_early', 'bound before the registry', { processor: 'p' }, [1, 10]);
  early.observe(0.5);
  early.observe(1); // le is inclusive
  early.observe(7);
  early.observe(11);
  let text = await telemetry.registry.metrics();
  assert.match(text, /# TYPE test_early histogram/);
  assert.match(text, /test_early_bucket\{processor="p",le="1"\} 2\n/);
  assert.match(text, /test_early_bucket\{processor="p",le="10"\} 3\n/);
  assert.match(text, /test_early_bucket\{processor="p",le="\+Inf"\} 4\n/);
  assert.match(text, /test_early_sum\{processor="p"\} 19.5\n/);
  assert.match(text, /test_early_count\{processor="p"\} 4/);
  const late = telemetry.histogram('test_late', 'bound after', { policy: 'x' });
  text = await telemetry.registry.metrics();
  assert.doesNotMatch(text, /test_late_count/, 'a series appears once it has observed a value');
  late.observe(3);
  assert.equal(telemetry.histogram('test_late', 'bound after', { policy: 'x' }), late, 'the same series for the same labels');
  text = await telemetry.registry.metrics();
  assert.match(text, /test_late_bucket\{policy="x",le="0"\} 0\n/);
  assert.match(text, /test_late_bucket\{policy="x",le="5"\} 1\n/, 'OpenTelemetry\'s default bounds');
  assert.match(text, /test_late_count\{policy="x"\} 1/);
  assert.throws(() => telemetry.histogram('test_late', 'bound after', { policy: 'x' }, [1, 2]), /other bucket bounds/);
  assert.throws(() => telemetry.counter('test_late', 'a counter', { policy: 'x' }), /already a histogram/);
  assert.throws(() => telemetry.histogram('test_bad', 'unsorted', {}, [2, 1]), /ascending/);
});
