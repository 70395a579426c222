// `npm run bench -- --scenarios ...`: the issues' component rows, each spansieve against the
// reference Collector (v0.160.0) on the same config and load, one after the other on core 0.
//   filter-health          span rule attributes["url.path"] == "/health" (10 % of spans match) (issue 16)
//   filter-not-contains    resource rule not ContainsValue([100 ids], ...), plus spansieve's keep list (issue 16)
//   tail-sampling          bench/tail-sampling.ts (issue 18)
//   probabilistic-sampler  bench/probabilistic-sampler.ts, filter + sampler at 10 % (issue 18)
// The pure parts (names, ratios, table) are tested in test/bench/scenarios.test.ts.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { types } from '../src/pdata/codec';
import { measureFixedRate } from './fixed-rate';
import { DEFAULT_POOL, buildPool, keptInstanceIds, type Pool } from './obi';
import { measureProbabilisticSampler } from './probabilistic-sampler';
import { median } from './report';
import { ottlKeepOnly, spansieveConfig } from './systems';
import { measureTailSampling } from './tail-sampling';

export const SCENARIO_NAMES = ['filter-health', 'filter-not-contains', 'tail-sampling', 'probabilistic-sampler'] as const;
export type ScenarioName = (typeof SCENARIO_NAMES)[number];

export function parseScenarios(value: string): ScenarioName[] {
  if (value === 'all') return [...SCENARIO_NAMES];
  const names = value.split(',').map((name) => name.trim());
  for (const name of names) {
    if (!(SCENARIO_NAMES as readonly string[]).includes(name)) throw new Error(`--scenarios: unknown ${JSON.stringify(name)}; one of all, ${SCENARIO_NAMES.join(', ')}`);
  }
  return [...new Set(names)] as ScenarioName[];
}

/** One system's row in a scenario. `variant` tells apart rows of one system (sampler off/on, keep list). */
export interface ScenarioRow {
  readonly scenario: ScenarioName;
  readonly system: 'spansieve' | 'collector-ref';
  readonly variant: string;
  readonly spans_per_second: number;
  readonly cpu_us_per_span: number;
  /** The kernel's part of cpu_us_per_span (stime: syscalls, loopback TCP), where measured. */
  readonly system_cpu_us_per_span?: number;
  readonly peak_rss_mb: number;
  /** Spans that reached the sink ÷ spans sent, and what the rule should give; null where not checked. */
  readonly forwarded_ratio: number | null;
  readonly expected_forwarded_ratio: number | null;
  /** Cores' worth of other processes on the server's core while measured (flagged shared-core above 0.2). */
  readonly other_load_server_core: number;
  readonly flags: string[];
  /** Which of --scenario-rounds this row ran in (0 when omitted). */
  readonly round?: number;
}

/** The issues' targets: spansieve ÷ Collector at most this (null: none stated). */
export const TARGETS: Record<ScenarioName, { cpu: number | null; rss: number | null }> = {
  'filter-health': { cpu: 0.5, rss: null },
  'filter-not-contains': { cpu: 0.5, rss: null },
  'tail-sampling': { cpu: 0.5, rss: 1 },
  'probabilistic-sampler': { cpu: null, rss: null },
};

/** The rows compared per scenario: the variant each side is read from. */
const COMPARED: Record<ScenarioName, string> = {
  'filter-health': 'ottl',
  'filter-not-contains': 'ottl',
  'tail-sampling': 'tail_sampling',
  'probabilistic-sampler': 'filter+sampler',
};

export interface ScenarioRatio {
  readonly scenario: ScenarioName;
  readonly variant: string;
  /** The median over rounds of spansieve ÷ Collector, each round's pair measured in the same round. */
  readonly cpu_ratio: number | null;
  readonly rss_ratio: number | null;
  /** Each round's ratio, in round order (one entry without --scenario-rounds). */
  readonly cpu_ratios: number[];
  readonly cpu_target: number | null;
  readonly rss_target: number | null;
  /** null when the scenario has no target or a side is missing. */
  readonly cpu_met: boolean | null;
  readonly rss_met: boolean | null;
  readonly flags: string[];
}

const round2 = (x: number) => Math.round(x * 100) / 100;

export function scenarioRatios(rows: readonly ScenarioRow[]): ScenarioRatio[] {
  const scenarios = [...new Set(rows.map((r) => r.scenario))];
  return scenarios.map((scenario) => {
    const variant = COMPARED[scenario];
    const cpus: number[] = [];
    const rsses: number[] = [];
    const flags: string[] = [];
    const rounds = [...new Set(rows.filter((r) => r.scenario === scenario).map((r) => r.round ?? 0))].sort((a, b) => a - b);
    for (const round of rounds) {
      const pick = (system: ScenarioRow['system']) => rows.find((r) => r.scenario === scenario && r.system === system && r.variant === variant && (r.round ?? 0) === round);
      const s = pick('spansieve');
      const c = pick('collector-ref');
      if (s && c && c.cpu_us_per_span > 0) cpus.push(round2(s.cpu_us_per_span / c.cpu_us_per_span));
      if (s && c && c.peak_rss_mb > 0) rsses.push(round2(s.peak_rss_mb / c.peak_rss_mb));
      flags.push(...(s?.flags ?? []).map((f) => `spansieve:${f}`), ...(c?.flags ?? []).map((f) => `collector:${f}`));
    }
    const cpu = cpus.length > 0 ? round2(median(cpus)) : null;
    const rss = rsses.length > 0 ? round2(median(rsses)) : null;
    const target = TARGETS[scenario];
    return {
      scenario,
      variant,
      cpu_ratio: cpu,
      rss_ratio: rss,
      cpu_ratios: cpus,
      cpu_target: target.cpu,
      rss_target: target.rss,
      cpu_met: target.cpu === null || cpu === null ? null : cpu <= target.cpu,
      rss_met: target.rss === null || rss === null ? null : rss <= target.rss,
      flags: [...new Set(flags)],
    };
  });
}

const cell = (ratio: number | null, target: number | null, met: boolean | null) =>
  ratio === null ? '—' : `${ratio}x${target === null ? '' : ` (≤ ${target}x: ${met ? 'met' : 'NOT met'})`}`;

export function scenariosTable(rows: readonly ScenarioRow[], ratios: readonly ScenarioRatio[]): string {
  const lines = [
    '| scenario | round | system | variant | spans/s | CPU µs/span | peak RSS MiB | forwarded (expected) | flags |',
    '|---|---|---|---|---|---|---|---|---|',
    ...rows.map((r) =>
      `| ${r.scenario} | ${r.round ?? 0} | ${r.system} | ${r.variant} | ${r.spans_per_second} | ${r.cpu_us_per_span} | ${r.peak_rss_mb} | ` +
      `${r.forwarded_ratio ?? '—'}${r.expected_forwarded_ratio === null ? '' : ` (${r.expected_forwarded_ratio})`} | ${r.flags.join(' ') || '—'} |`),
    '',
    '| scenario | compared | spansieve ÷ Collector CPU/span | spansieve ÷ Collector peak RSS |',
    '|---|---|---|---|',
    ...ratios.map((r) => `| ${r.scenario} | ${r.variant} | ${cell(r.cpu_ratio, r.cpu_target, r.cpu_met)}${r.cpu_ratios.length > 1 ? ` (median of ${r.cpu_ratios.join(', ')})` : ''} | ${cell(r.rss_ratio, r.rss_target, r.rss_met)} |`),
  ];
  return lines.join('\n');
}

/** Forwarded more than 2 points off what the rule gives: the filter (or the sink count) is wrong. */
export function forwardedFlags(forwarded: number, expected: number): string[] {
  return Math.abs(forwarded - expected) > 0.02 ? [`forwarded-${forwarded}-expected-${expected}`] : [];
}

// ---------------------------------------------------------------- measuring

export interface ScenarioTiming {
  readonly rate: number;
  /** Closed-loop seconds before the fixed rate (the JIT's warm-up; see measureFixedRate). */
  readonly burstS: number;
  readonly warmupS: number;
  readonly windowS: number;
  /** Seconds of load in tail-sampling (then 5 s of lag and 12 s of decisions). */
  readonly tailSeconds: number;
}

export const SCENARIO_FULL: ScenarioTiming = { rate: 20_000, burstS: 4, warmupS: 8, windowS: 20, tailSeconds: 60 };
export const SCENARIO_QUICK: ScenarioTiming = { rate: 20_000, burstS: 2, warmupS: 3, windowS: 8, tailSeconds: 20 };

const HEALTH_RULE = 'attributes["url.path"] == "/health"';

/** Share of the pool's spans whose url.path is "/health": what the health rule drops. */
export function healthShareOf(pool: Pool): number {
  let spans = 0;
  let health = 0;
  for (const request of pool.requests) {
    const decoded = types.ExportTraceServiceRequest.decode(request.body) as unknown as {
      resourceSpans: { scopeSpans: { spans: { attributes: { key: string; value: { stringValue?: string } }[] }[] }[] }[];
    };
    for (const rs of decoded.resourceSpans) {
      for (const ss of rs.scopeSpans) {
        for (const span of ss.spans) {
          spans++;
          if (span.attributes.some((a) => a.key === 'url.path' && a.value.stringValue === '/health')) health++;
        }
      }
    }
  }
  return health / spans;
}

/** The Collector's filter config, used unchanged by both systems. */
function filterConfig(grpcPort: number, httpPort: number, sinkPort: number, traces: Record<string, string[]> | undefined): Record<string, unknown> {
  const base = spansieveConfig(grpcPort, httpPort, sinkPort, []);
  return { ...base, processors: { 'filter/keep': traces ? { error_mode: 'ignore', traces } : {} } };
}

type Log = (text: string) => void;

async function filterScenario(scenario: 'filter-health' | 'filter-not-contains', t: ScenarioTiming, log: Log, round: number): Promise<ScenarioRow[]> {
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), `spansieve-bench-${scenario}-`));
  try {
    // Health: all resources kept, so the rule alone decides; the default pool otherwise.
    const spec = scenario === 'filter-health' ? { ...DEFAULT_POOL, requests: 64, healthShare: 0.1 } : { ...DEFAULT_POOL, requests: 64 };
    const pool = buildPool(spec);
    const keep = keptInstanceIds(spec);
    const total = pool.requests.reduce((n, r) => n + r.spans, 0);
    const expected = Math.round(1000 * (scenario === 'filter-health' ? 1 - healthShareOf(pool) : pool.requests.reduce((n, r) => n + r.keptSpans, 0) / total)) / 1000;
    const traces: Record<string, string[]> = scenario === 'filter-health' ? { span: [HEALTH_RULE] } : { resource: [ottlKeepOnly(keep)] };
    const runs: { system: 'spansieve' | 'collector-ref'; variant: string; config: (g: number, h: number, s: number) => Record<string, unknown>; expected?: number }[] = [
      { system: 'spansieve', variant: 'ottl', config: (g, h, s) => filterConfig(g, h, s, traces) },
      { system: 'collector-ref', variant: 'ottl', config: (g, h, s) => filterConfig(g, h, s, traces) },
    ];
    // "keep lists as fast as today": the same choice as spansieve's own keep list, same run.
    if (scenario === 'filter-not-contains') runs.push({ system: 'spansieve', variant: 'keep-list', config: (g, h, s) => spansieveConfig(g, h, s, keep) });
    // What the span rule itself costs: the same load through a filter that keeps everything.
    if (scenario === 'filter-health') runs.push({ system: 'spansieve', variant: 'no-rule', config: (g, h, s) => filterConfig(g, h, s, undefined), expected: 1 });
    const rows: ScenarioRow[] = [];
    // Odd rounds in the reverse order, so that neither system always runs first.
    for (const run of round % 2 === 1 ? [...runs].reverse() : runs) {
      const label = `${scenario}-${run.system}-${run.variant}-${round}`;
      log(`${label}: starting`);
      const r = await measureFixedRate({ label, system: run.system, config: run.config, pool, rate: t.rate, burstS: t.burstS, warmupS: t.warmupS, windowS: t.windowS, workDir });
      const flags = [...forwardedFlags(r.forwardedRatio, run.expected ?? expected), ...(r.failedRequests > 0 ? [`failed-requests(${r.failedRequests})`] : [])];
      if (r.spansPerS < 0.95 * t.rate) flags.push(`behind(${Math.round((100 * r.spansPerS) / t.rate)}%)`);
      if (r.otherLoadServerCore > 0.2) flags.push(`shared-core(${r.otherLoadServerCore})`);
      rows.push({
        scenario,
        system: run.system,
        variant: run.variant,
        spans_per_second: r.spansPerS,
        cpu_us_per_span: r.cpuUsPerSpan,
        system_cpu_us_per_span: r.systemCpuUsPerSpan,
        peak_rss_mb: r.peakRssMb,
        forwarded_ratio: r.forwardedRatio,
        expected_forwarded_ratio: run.expected ?? expected,
        other_load_server_core: r.otherLoadServerCore,
        flags,
        round,
      });
    }
    return rows;
  } finally {
    fs.rmSync(workDir, { recursive: true, force: true });
  }
}

export async function runScenario(scenario: ScenarioName, t: ScenarioTiming, log: Log, round = 0): Promise<ScenarioRow[]> {
  const rows = await runScenarioOnce(scenario, t, log, round);
  return rows.map((row) => ({ ...row, round }));
}

async function runScenarioOnce(scenario: ScenarioName, t: ScenarioTiming, log: Log, round: number): Promise<ScenarioRow[]> {
  switch (scenario) {
    case 'filter-health':
    case 'filter-not-contains':
      return filterScenario(scenario, t, log, round);
    case 'tail-sampling': {
      log(`tail-sampling: ${t.tailSeconds} s of load per system (+17 s lag and decisions)`);
      const result = await measureTailSampling(t.tailSeconds);
      return result.rows.map((row) => {
        const flags: string[] = [];
        if (row.spansRefused > 0) flags.push(`refused(${row.spansRefused})`);
        if (row.undecodableExports > 0) flags.push(`undecodable-exports(${row.undecodableExports})`);
        if (row.incompleteExports > 0) flags.push(`incomplete-exports(${row.incompleteExports})`);
        if (row.otherLoadServerCore > 0.2) flags.push(`shared-core(${row.otherLoadServerCore})`);
        // CPU is per offered span over the whole run (load, lag, decisions); the sink check is the kept share.
        return {
          scenario,
          system: row.system === 'spansieve' ? 'spansieve' : 'collector-ref',
          variant: 'tail_sampling',
          spans_per_second: result.load.spansPerSecond,
          cpu_us_per_span: row.cpuMicrosPerSpan,
          peak_rss_mb: row.peakRssMiB,
          forwarded_ratio: Math.round((1000 * row.spansKept) / Math.max(1, row.spansOffered)) / 1000,
          expected_forwarded_ratio: null,
          other_load_server_core: row.otherLoadServerCore,
          flags,
        } satisfies ScenarioRow;
      });
    }
    case 'probabilistic-sampler': {
      log('probabilistic-sampler: both systems, sampler off then on');
      const rows = await measureProbabilisticSampler({ rate: t.rate, burstS: t.burstS, warmupS: t.warmupS, windowS: t.windowS, mode: 'hash_seed' });
      return rows.map((row) => ({
        scenario,
        system: row.system === 'spansieve' ? 'spansieve' : 'collector-ref',
        variant: row.sampler ? 'filter+sampler' : 'filter',
        spans_per_second: row.spansPerS,
        cpu_us_per_span: row.cpuUsPerSpan,
        peak_rss_mb: row.peakRssMb,
        forwarded_ratio: null,
        expected_forwarded_ratio: null,
        other_load_server_core: row.otherLoadServerCore,
        flags: [
          ...(row.spansPerS < 0.95 * t.rate ? [`behind(${Math.round((100 * row.spansPerS) / t.rate)}%)`] : []),
          ...(row.otherLoadServerCore > 0.2 ? [`shared-core(${row.otherLoadServerCore})`] : []),
        ],
      }));
    }
  }
}
