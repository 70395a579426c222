import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { types } from '../../src/pdata/codec';
import { countSpans } from '../../bench/fixed-rate';
import { DEFAULT_POOL, buildPool } from '../../bench/obi';
import { parseOptions } from '../../bench/run';
import { SCENARIO_NAMES, forwardedFlags, healthShareOf, parseScenarios, scenarioRatios, scenariosTable, type ScenarioRow } from '../../bench/scenarios';

const row = (over: Partial<ScenarioRow>): ScenarioRow => ({
  scenario: 'filter-health',
  system: 'spansieve',
  variant: 'ottl',
  spans_per_second: 20_000,
  cpu_us_per_span: 1,
  peak_rss_mb: 100,
  forwarded_ratio: 0.9,
  expected_forwarded_ratio: 0.9,
  other_load_server_core: 0,
  flags: [],
  ...over,
});

void describe('bench: scenarios', () => {
  void test('--scenarios alone runs only the scenarios; with --shapes both; the default run is unchanged', () => {
    const plain = parseOptions([]);
    assert.deepEqual(plain.scenarios, []);
    assert.deepEqual(plain.shapes.map((s) => s.name), ['default']);
    assert.equal(plain.scaling, true);
    const only = parseOptions(['--scenarios', 'filter-health,tail-sampling']);
    assert.deepEqual(only.scenarios, ['filter-health', 'tail-sampling']);
    assert.deepEqual(only.shapes, []);
    assert.equal(only.scaling, false);
    const both = parseOptions(['--shapes', 'default', '--scenarios', 'all']);
    assert.deepEqual(both.scenarios, [...SCENARIO_NAMES]);
    assert.deepEqual(both.shapes.map((s) => s.name), ['default']);
    assert.throws(() => parseScenarios('filter-health,nope'), /unknown "nope".*filter-health/);
    assert.throws(() => parseOptions(['--scenarios']), /needs a value/);
  });

  void test('ratios compare the named variants and check the targets', () => {
    const rows = [
      row({ cpu_us_per_span: 1, peak_rss_mb: 90 }),
      row({ system: 'collector-ref', cpu_us_per_span: 4, peak_rss_mb: 60 }),
      row({ scenario: 'tail-sampling', variant: 'tail_sampling', cpu_us_per_span: 3, peak_rss_mb: 100, flags: ['refused(500)'] }),
      row({ scenario: 'tail-sampling', system: 'collector-ref', variant: 'tail_sampling', cpu_us_per_span: 4, peak_rss_mb: 200 }),
      row({ scenario: 'probabilistic-sampler', variant: 'filter', cpu_us_per_span: 9 }),
      row({ scenario: 'probabilistic-sampler', variant: 'filter+sampler', cpu_us_per_span: 1 }),
      row({ scenario: 'probabilistic-sampler', system: 'collector-ref', variant: 'filter+sampler', cpu_us_per_span: 2 }),
    ];
    const rs = scenarioRatios(rows);
    assert.deepEqual(rs.map((r) => [r.scenario, r.cpu_ratio, r.cpu_met, r.rss_ratio, r.rss_met]), [
      ['filter-health', 0.25, true, 1.5, null],
      ['tail-sampling', 0.75, false, 0.5, true],
      ['probabilistic-sampler', 0.5, null, 1, null],
    ]);
    assert.deepEqual(rs[1]!.flags, ['spansieve:refused(500)']);
    const table = scenariosTable(rows, rs);
    assert.match(table, /\| tail-sampling \| tail_sampling \| 0\.75x \(≤ 0\.5x: NOT met\) \| 0\.5x \(≤ 1x: met\) \|/);
    // Rounds: each round's pair is compared, the median decides.
    const rounds = [1, 2, 3].flatMap((round, i) => [
      row({ round, cpu_us_per_span: [5, 7, 6][i]! }),
      row({ round, system: 'collector-ref', cpu_us_per_span: 10 }),
    ]);
    const median = scenarioRatios(rounds)[0]!;
    assert.deepEqual([median.cpu_ratio, median.cpu_ratios, median.cpu_met], [0.6, [0.5, 0.7, 0.6], false]);
    assert.match(scenariosTable(rounds, [median]), /0\.6x \(≤ 0\.5x: NOT met\) \(median of 0\.5, 0\.7, 0\.6\)/);
    assert.equal(scenarioRatios(rounds.slice(0, 4))[0]!.cpu_ratio, 0.6);
    assert.deepEqual(parseOptions(['--scenarios', 'filter-health', '--scenario-rounds', '3']).scenarioRounds, 3);
    assert.throws(() => parseOptions(['--scenario-rounds', '0']), /at least 1/);
    // A side missing: no ratio, no verdict.
    assert.deepEqual(scenarioRatios([row({})]).map((r) => [r.cpu_ratio, r.cpu_met]), [[null, null]]);
  });

  void test('forwarded share: flagged beyond 2 points of what the rule gives', () => {
    assert.deepEqual(forwardedFlags(0.905, 0.9), []);
    assert.deepEqual(forwardedFlags(1, 0.9), ['forwarded-1-expected-0.9']);
  });

  void test('the health pool has ~10 % "/health" spans; the default pool has none and is unchanged', () => {
    const plain = buildPool({ ...DEFAULT_POOL, requests: 8 });
    const healthy = buildPool({ ...DEFAULT_POOL, requests: 8, healthShare: 0.1 });
    assert.equal(healthShareOf(plain), 0);
    assert.ok(Math.abs(healthShareOf(healthy) - 0.1) < 0.03, `share ${healthShareOf(healthy)}`);
    // countSpans (the scenarios' sink) agrees with a full decode.
    for (const r of healthy.requests.slice(0, 2)) {
      const decoded = types.ExportTraceServiceRequest.decode(r.body) as unknown as { resourceSpans: { scopeSpans: { spans: unknown[] }[] }[] };
      const full = decoded.resourceSpans.reduce((n, rs) => n + rs.scopeSpans.reduce((m, ss) => m + ss.spans.length, 0), 0);
      assert.equal(countSpans(r.body), full);
      assert.equal(full, r.spans);
    }
  });
});
