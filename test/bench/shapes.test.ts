import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { buildPool } from '../../bench/obi';
import { ratios, targetChecks, type Result } from '../../bench/report';
import { SHAPES, closedLoopConcurrency, shapeNamed } from '../../bench/shapes';
import { parseOptions } from '../../bench/run';

void describe('bench: load shapes', () => {
  void test('every shape builds the request it describes', () => {
    for (const shape of SHAPES) {
      const pool = buildPool({ ...shape.pool, requests: 2 });
      const spans = shape.pool.resourcesPerRequest * shape.pool.spansPerResource;
      const kept = shape.pool.keptPerRequest * shape.pool.spansPerResource;
      for (const request of pool.requests) {
        assert.equal(request.spans, spans, shape.name);
        assert.equal(request.keptSpans, kept, shape.name);
      }
      // The description names the span count and the kept share.
      assert.match(shape.description, new RegExp(spans.toLocaleString('en-US')), shape.name);
    }
    assert.equal(shapeNamed('obi-batch-4096').pool.resourcesPerRequest * shapeNamed('obi-batch-4096').pool.spansPerResource, 4096);
    assert.throws(() => shapeNamed('nope'), /unknown shape "nope"; one of default, obi-sidecar/);
  });

  void test('the closed loop keeps about 24,576 spans in flight per shape, 16 to 256 requests, unless --concurrency says', () => {
    const inFlight = (name: string) => {
      const pool = shapeNamed(name).pool;
      return closedLoopConcurrency(pool.resourcesPerRequest * pool.spansPerResource, parseOptions([]).concurrency);
    };
    assert.deepEqual(SHAPES.map((s) => [s.name, inFlight(s.name)]), [
      ['default', 123], ['obi-sidecar', 256], ['kept-2pct', 123], ['kept-25pct', 123], ['kept-100pct', 123],
      ['one-span-resources', 123], ['obi-batch-4096', 16], ['four-connections', 123],
    ]);
    assert.equal(closedLoopConcurrency(1, undefined), 256);
    assert.equal(closedLoopConcurrency(96, parseOptions(['--concurrency', '16']).concurrency), 16);
    assert.throws(() => parseOptions(['--concurrency', '0']), /--concurrency: a positive integer/);
    assert.throws(() => parseOptions(['--concurrency', '2.5']), /--concurrency: a positive integer/);
  });

  void test('ratios and targets are per shape, never across shapes', () => {
    const result = (shape: string, system: string, cpu: number, rss: number, p99: number) =>
      ({ shape, system, transport: 'grpc', cpu_seconds_per_million_spans: cpu, peak_rss_mb: rss, p99_ms: p99, max_spans_per_second_one_core: null }) as unknown as Result;
    const results = [
      result('default', 'spansieve', 2, 80, 1),
      result('default', 'collector', 8, 60, 4),
      result('obi-sidecar', 'spansieve', 3, 50, 1),
      result('obi-sidecar', 'collector', 4, 100, 0.5),
    ];
    const rs = ratios(results, ['grpc'], ['default', 'obi-sidecar']);
    assert.deepEqual(rs.map((r) => [r.shape, r.cpu_vs_collector, r.rss_vs_collector, r.p99_vs_collector]), [
      ['default', 0.25, 1.333, 0.25],
      ['obi-sidecar', 0.75, 0.5, 2],
    ]);
    const checks = targetChecks(results, rs);
    const cpu = checks.filter((c) => c.target === 'CPU per span vs Collector').map((c) => [c.shape, c.met]);
    assert.deepEqual(cpu, [['default', true], ['obi-sidecar', false]]);
    const rss = checks.filter((c) => c.target === 'peak RSS vs Collector').map((c) => [c.shape, c.met]);
    assert.deepEqual(rss, [['default', false], ['obi-sidecar', true]]);
  });
});
