import type { Transport } from './protocol';
import type { SystemName } from './systems';

// Result records, percentiles, the targets, and the stdout tables.

export interface Result {
  /** The load shape (bench/shapes.ts). */
  readonly shape: string;
  readonly system: SystemName;
  readonly transport: Transport;
  /** How many cores the server was pinned to (--cores; 1 unless asked). */
  readonly cores: number;
  /** The server's CPUs and the load generator's, as taskset lists ("0", "0-1"). */
  readonly server_cpus: string;
  readonly loadgen_cpus: string;
  /** The server had every CPU, so the load generator and sink ran on its cores. */
  readonly loadgen_shares_server_cores: boolean;
  /** gRPC connections the load was spread over (the shape's, times the cores). */
  readonly connections: number;
  readonly offered_spans_per_second: number;
  readonly achieved_spans_per_second: number;
  readonly cpu_seconds_per_million_spans: number;
  /** Of it, the kernel's part (stime): loopback TCP and wake-ups, which move with the machine. */
  readonly system_cpu_seconds_per_million_spans?: number;
  readonly max_spans_per_second_one_core: number | null;
  readonly p50_ms: number;
  readonly p99_ms: number;
  readonly peak_rss_mb: number;
  // Details beyond the required fields.
  readonly target_spans_per_second: number;
  /**
   * What p50/p99 measure: the server's request in -> its forward out, timestamped by tcpdump on the
   * loopback (wire-...); send -> arrival at the sink on the load generator's clock (when no capture
   * could run); or, for the floor, the request's round trip.
   */
  readonly latency: 'wire-request-in-to-request-out' | 'request-in-to-request-out' | 'round-trip';
  /** Send -> arrival at the sink, on the load generator's clock (includes both hops and its event loop). */
  readonly sink_p50_ms: number | null;
  readonly sink_p90_ms: number | null;
  readonly sink_p99_ms: number | null;
  /** Requests paired in the capture, and markers forwarded with no captured request in. */
  readonly wire_requests: number | null;
  readonly wire_unmatched_forwards: number | null;
  readonly rtt_p50_ms: number;
  readonly rtt_p99_ms: number;
  readonly p90_ms: number;
  readonly p999_ms: number;
  /** Share of requests whose latency was over 5 ms (the p99 target). */
  readonly slow_request_share: number | null;
  readonly server_cpu_cores: number;
  /** The same split by thread name (live threads): "main" vs V8/libuv helper threads. */
  readonly server_cpu_cores_by_thread: Record<string, number>;
  /** Main-thread event-loop utilisation at the fixed rate (spansieve only; null for the others). */
  readonly server_event_loop_utilization: number | null;
  readonly window_seconds: number;
  readonly forwarded_spans_per_second: number | null;
  readonly forwarded_ratio: number | null;
  readonly forwarded_requests_per_second: number | null;
  readonly acked_requests_per_second: number;
  readonly failed_requests: number;
  readonly verified_requests: number;
  readonly loadgen_cpu_cores: number;
  /** Of loadgen_cpu_cores: the generator's main thread and the sink's thread (cores). */
  readonly loadgen_main_thread_cpu_cores?: number;
  readonly sink_cpu_cores?: number;
  /** Busy fraction of the load generator's core(s) over the window, whoever used them. */
  readonly loadgen_cores_busy?: number;
  /** Other processes' CPU use on the server's core (0) and the load generator's (1), in cores: noise. */
  readonly other_load_server_core: number;
  readonly other_load_loadgen_core: number;
  readonly max_server_cpu_cores: number | null;
  readonly max_server_event_loop_utilization: number | null;
  /** Closed loop: cores used by the server process, then by each of its workers (spansieve-workers). */
  readonly max_server_cpu_cores_by_process: number[] | null;
  /** Closed-loop spans acknowledged and forwarded per second of server CPU. */
  readonly max_spans_per_cpu_second: number | null;
  /** Closed-loop spans acknowledged per second (max_spans_per_second_one_core also needs them forwarded). */
  readonly max_acked_spans_per_second: number | null;
  /** Closed-loop kept spans arriving at the sink per second. */
  readonly max_forwarded_spans_per_second: number | null;
  readonly max_loadgen_cpu_cores: number | null;
  /** Closed loop: the generator's main thread, the sink's thread, the generator's core(s) busy, other load there. */
  readonly max_loadgen_main_thread_cpu_cores?: number | null;
  readonly max_sink_cpu_cores?: number | null;
  readonly max_loadgen_cores_busy?: number | null;
  readonly max_other_load_loadgen_core?: number | null;
  readonly max_other_load_server_core: number | null;
  readonly max_failed_requests: number | null;
  readonly max_concurrency: number | null;
  readonly peak_rss_mb_after_max: number | null;
  /** Peak RSS through start-up and the warm-up burst (peak_rss_mb is reset after it: the fixed rate only). */
  readonly burst_peak_rss_mb: number | null;
  /** RSS once started and probed, before any load. */
  readonly idle_rss_mb: number;
  readonly load_average: number[];
  /** Empty when the measurement is clean; otherwise why it should be read with care. */
  readonly flags: string[];
}

export interface ScalingResult {
  readonly dimension: 'selectors' | 'resource_attributes';
  readonly value: number;
  readonly system: 'spansieve';
  readonly transport: Transport;
  readonly selectors: number;
  readonly resource_attributes: number;
  readonly bytes_per_request: number;
  readonly offered_spans_per_second: number;
  readonly achieved_spans_per_second: number;
  readonly cpu_seconds_per_million_spans: number;
  readonly p50_ms: number;
  readonly p99_ms: number;
  readonly peak_rss_mb: number;
  /** Other processes' CPU on the server's core during the window, in cores. */
  readonly other_load_server_core: number;
  readonly flags: string[];
}

/** One system's closed loop on N cores, against the Collector on the same N cores and itself on one. */
export interface CoresRow {
  readonly shape: string;
  readonly transport: Transport;
  readonly system: SystemName;
  readonly cores: number;
  readonly connections: number;
  readonly concurrency: number | null;
  readonly max_spans_per_second: number | null;
  readonly max_spans_per_cpu_second: number | null;
  readonly max_server_cpu_cores: number | null;
  readonly max_loadgen_cpu_cores: number | null;
  readonly loadgen_shares_server_cores: boolean;
  readonly max_other_load_server_core: number | null;
  /** ÷ the Collector on the same cores, same shape and transport (target with N cores: >= 2). */
  readonly max_vs_collector: number | null;
  readonly max_per_cpu_second_vs_collector: number | null;
  /** ÷ the same system on one core: how it scales. */
  readonly max_vs_one_core: number | null;
}

export function coresRows(results: readonly Result[]): CoresRow[] {
  return results.map((r) => {
    const find = (system: SystemName, cores: number) =>
      results.find((x) => x.shape === r.shape && x.transport === r.transport && x.system === system && x.cores === cores);
    const collector = find('collector', r.cores);
    const one = find(r.system, 1);
    return {
      shape: r.shape,
      transport: r.transport,
      system: r.system,
      cores: r.cores,
      connections: r.connections,
      concurrency: r.max_concurrency,
      max_spans_per_second: r.max_spans_per_second_one_core,
      max_spans_per_cpu_second: r.max_spans_per_cpu_second,
      max_server_cpu_cores: r.max_server_cpu_cores,
      max_loadgen_cpu_cores: r.max_loadgen_cpu_cores,
      loadgen_shares_server_cores: r.loadgen_shares_server_cores,
      max_other_load_server_core: r.max_other_load_server_core,
      max_vs_collector: r.system === 'collector' ? null : ratio(r.max_spans_per_second_one_core, collector?.max_spans_per_second_one_core),
      max_per_cpu_second_vs_collector: r.system === 'collector' ? null : ratio(r.max_spans_per_cpu_second, collector?.max_spans_per_cpu_second),
      max_vs_one_core: r.cores === 1 ? null : ratio(r.max_spans_per_second_one_core, one?.max_spans_per_second_one_core),
    };
  });
}

export interface TargetCheck {
  readonly shape: string;
  readonly target: string;
  readonly transport: Transport;
  readonly value: number | null;
  readonly limit: string;
  readonly met: boolean | null;
}

export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

/** The middle sample, or the mean of the two middle ones for an even count; NaN for none. */
export function median(samples: readonly number[]): number {
  if (samples.length === 0) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function round(n: number, digits = 2): number {
  if (!Number.isFinite(n)) return n;
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

export function ratio(a: number | null | undefined, b: number | null | undefined): number | null {
  if (a === null || a === undefined || b === null || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0) return null;
  return round(a / b, 3);
}

export interface Ratios {
  readonly shape: string;
  readonly transport: Transport;
  /** spansieve CPU/span ÷ collector CPU/span (target ≤ 0.5). */
  readonly cpu_vs_collector: number | null;
  /** spansieve max ÷ collector max (target ≥ 2). */
  readonly max_vs_collector: number | null;
  /** The same on closed-loop spans per server CPU-second: robust when the core was shared. */
  readonly max_per_cpu_second_vs_collector: number | null;
  /** spansieve CPU/span ÷ floor CPU/span (target ≤ 1.5). */
  readonly cpu_vs_floor: number | null;
  /** collector CPU/span ÷ floor CPU/span (context). */
  readonly collector_cpu_vs_floor: number | null;
  /** spansieve peak RSS ÷ collector peak RSS at the fixed rate (target ≤ 1). */
  readonly rss_vs_collector: number | null;
  /** spansieve p99 ÷ collector p99 at the fixed rate (target ≤ 1). */
  readonly p99_vs_collector: number | null;
}

export function ratios(results: readonly Result[], transports: readonly Transport[], shapes: readonly string[] = ['default']): Ratios[] {
  return shapes.flatMap((shape) => transports.map((transport) => {
    const of = (system: SystemName) => results.find((r) => r.shape === shape && r.system === system && r.transport === transport);
    const s = of('spansieve');
    const c = of('collector');
    const f = of('floor');
    return {
      shape,
      transport,
      cpu_vs_collector: ratio(s?.cpu_seconds_per_million_spans, c?.cpu_seconds_per_million_spans),
      max_vs_collector: ratio(s?.max_spans_per_second_one_core, c?.max_spans_per_second_one_core),
      max_per_cpu_second_vs_collector: ratio(s?.max_spans_per_cpu_second, c?.max_spans_per_cpu_second),
      cpu_vs_floor: ratio(s?.cpu_seconds_per_million_spans, f?.cpu_seconds_per_million_spans),
      collector_cpu_vs_floor: ratio(c?.cpu_seconds_per_million_spans, f?.cpu_seconds_per_million_spans),
      rss_vs_collector: ratio(s?.peak_rss_mb, c?.peak_rss_mb),
      p99_vs_collector: ratio(s?.p99_ms, c?.p99_ms),
    };
  }));
}

/** The persistent queue's comparison on one transport: spansieve with and without file_storage, the Collector with it. */
export interface StorageRow {
  readonly transport: Transport;
  readonly cpu_seconds_per_million_spans: PerSystem;
  readonly p99_ms: PerSystem;
  readonly peak_rss_mb: PerSystem;
  /** spansieve with storage ÷ without, CPU per span (target <= 1.5). */
  readonly storage_cpu_vs_memory: number | null;
  /** spansieve with storage ÷ the Collector with storage, CPU per span. */
  readonly storage_cpu_vs_collector_storage: number | null;
  readonly storage_p99_vs_collector_storage: number | null;
  /** The Collector with storage ÷ the same build in memory (collector-ref, when run), CPU per span. */
  readonly collector_storage_cpu_vs_memory: number | null;
  /** Other processes' CPU on the server's core during each window (noise). */
  readonly other_load_server_core: PerSystem;
}

/** A figure of each system in the comparison; null when it was not run. */
export interface PerSystem {
  readonly spansieve: number | null;
  readonly spansieve_storage: number | null;
  readonly collector_storage: number | null;
  readonly collector_ref: number | null;
}

export function storageRows(results: readonly Result[], transports: readonly Transport[]): StorageRow[] {
  const rows: StorageRow[] = [];
  for (const transport of transports) {
    const of = (system: SystemName) => results.find((r) => r.system === system && r.transport === transport);
    const m = of('spansieve');
    const s = of('spansieve-storage');
    const c = of('collector-storage');
    const ref = of('collector-ref');
    if (!s && !c) continue;
    const three = (pick: (r: Result) => number): PerSystem => ({
      spansieve: m ? pick(m) : null,
      spansieve_storage: s ? pick(s) : null,
      collector_storage: c ? pick(c) : null,
      collector_ref: ref ? pick(ref) : null,
    });
    rows.push({
      transport,
      cpu_seconds_per_million_spans: three((r) => r.cpu_seconds_per_million_spans),
      p99_ms: three((r) => r.p99_ms),
      peak_rss_mb: three((r) => r.peak_rss_mb),
      storage_cpu_vs_memory: ratio(s?.cpu_seconds_per_million_spans, m?.cpu_seconds_per_million_spans),
      storage_cpu_vs_collector_storage: ratio(s?.cpu_seconds_per_million_spans, c?.cpu_seconds_per_million_spans),
      storage_p99_vs_collector_storage: ratio(s?.p99_ms, c?.p99_ms),
      collector_storage_cpu_vs_memory: ratio(c?.cpu_seconds_per_million_spans, ref?.cpu_seconds_per_million_spans),
      other_load_server_core: three((r) => r.other_load_server_core),
    });
  }
  return rows;
}

export function targetChecks(results: readonly Result[], rs: readonly Ratios[]): TargetCheck[] {
  const checks: TargetCheck[] = [];
  for (const r of rs) {
    const check = (target: string, transport: Transport, value: number | null, limit: string, ok: (v: number) => boolean) =>
      checks.push({ shape: r.shape, target, transport, value, limit, met: value === null || !Number.isFinite(value) ? null : ok(value) });
    check('CPU per span vs Collector', r.transport, r.cpu_vs_collector, '<= 0.5x', (v) => v <= 0.5);
    check('one-core max throughput vs Collector', r.transport, r.max_vs_collector, '>= 2x', (v) => v >= 2);
    check('  same, per server CPU-second', r.transport, r.max_per_cpu_second_vs_collector, '>= 2x', (v) => v >= 2);
    check('CPU per span vs floor', r.transport, r.cpu_vs_floor, '<= 1.5x', (v) => v <= 1.5);
    check('peak RSS vs Collector', r.transport, r.rss_vs_collector, '<= 1x', (v) => v <= 1);
    check('p99 latency vs Collector', r.transport, r.p99_vs_collector, '<= 1x', (v) => v <= 1);
    const s = results.find((x) => x.shape === r.shape && x.system === 'spansieve' && x.transport === r.transport);
    check('core busy at max throughput', r.transport, s?.max_server_cpu_cores ?? null, '>= 0.95', (v) => v >= 0.95);
    check('p99 latency at the fixed rate (ms)', r.transport, s ? round(s.p99_ms) : null, '<= 5', (v) => v <= 5);
    // The same on the load generator's clock (both network hops and the sink's event loop included).
    check('  same, send to sink arrival', r.transport, s?.sink_p99_ms ?? null, '<= 5', (v) => v <= 5);
    check('peak RSS at the fixed rate (MiB)', r.transport, s ? round(s.peak_rss_mb, 1) : null, '<= 100', (v) => v <= 100);
    const p = results.find((x) => x.shape === r.shape && x.system === 'spansieve-storage' && x.transport === r.transport);
    if (p) {
      check('file_storage: CPU per span vs in-memory', r.transport, ratio(p.cpu_seconds_per_million_spans, s?.cpu_seconds_per_million_spans), '<= 1.5x', (v) => v <= 1.5);
      check('file_storage: p99 at the fixed rate (ms)', r.transport, round(p.p99_ms), '<= 10', (v) => v <= 10);
    }
  }
  return checks;
}

// ---------------------------------------------------------------- tables

function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
  const rule = `|${widths.map((w, i) => (i === 0 ? '-'.repeat(w + 2) : `${'-'.repeat(w + 1)}:`)).join('|')}|`;
  return [line(headers), rule, ...rows.map(line)].join('\n');
}

const fmt = (n: number | null | undefined, digits = 2): string => (n === null || n === undefined || !Number.isFinite(n) ? '-' : n.toFixed(digits));
const int = (n: number | null | undefined): string => (n === null || n === undefined || !Number.isFinite(n) ? '-' : Math.round(n).toLocaleString('en-US'));

export function resultsTable(results: readonly Result[]): string {
  return table(
    ['shape', 'system', 'transport', 'offered/s', 'achieved/s', 'CPU s / M spans', 'max spans/s (1 core)', 'core at max', 'ELU at max', 'generator / sink / their core at max', 'p50 ms', 'p99 ms', 'sink p99 ms', 'peak RSS MiB', 'flags'],
    results.map((r) => [
      r.shape,
      r.system,
      r.transport,
      int(r.offered_spans_per_second),
      int(r.achieved_spans_per_second),
      fmt(r.cpu_seconds_per_million_spans, 2),
      int(r.max_spans_per_second_one_core),
      fmt(r.max_server_cpu_cores),
      fmt(r.max_server_event_loop_utilization),
      r.max_loadgen_cores_busy === undefined || r.max_loadgen_cores_busy === null
        ? '-'
        : `${fmt(r.max_loadgen_main_thread_cpu_cores)} / ${fmt(r.max_sink_cpu_cores)} / ${fmt(r.max_loadgen_cores_busy)}`,
      fmt(r.p50_ms),
      fmt(r.p99_ms),
      fmt(r.sink_p99_ms),
      fmt(r.peak_rss_mb, 1),
      r.flags.join(', '),
    ]),
  );
}

export function ratiosTable(rs: readonly Ratios[]): string {
  return table(
    ['shape', 'transport', 'spansieve/collector CPU per span', 'spansieve/collector max', 'same, per CPU-second', 'spansieve/collector peak RSS', 'spansieve/collector p99', 'spansieve/floor CPU per span', 'collector/floor CPU per span'],
    rs.map((r) => [
      r.shape,
      r.transport,
      fmt(r.cpu_vs_collector, 3),
      fmt(r.max_vs_collector, 3),
      fmt(r.max_per_cpu_second_vs_collector, 3),
      fmt(r.rss_vs_collector, 3),
      fmt(r.p99_vs_collector, 3),
      fmt(r.cpu_vs_floor, 3),
      fmt(r.collector_cpu_vs_floor, 3),
    ]),
  );
}

export function scalingTable(rows: readonly ScalingResult[], dimension: ScalingResult['dimension']): string {
  return table(
    [dimension === 'selectors' ? 'keep selectors' : 'resource attributes', 'bytes/request', 'achieved/s', 'CPU s / M spans', 'p50 ms', 'p99 ms', 'peak RSS MiB', 'other load', 'flags'],
    rows
      .filter((r) => r.dimension === dimension)
      .map((r) => [
        String(r.value),
        int(r.bytes_per_request),
        int(r.achieved_spans_per_second),
        fmt(r.cpu_seconds_per_million_spans),
        fmt(r.p50_ms),
        fmt(r.p99_ms),
        fmt(r.peak_rss_mb, 1),
        fmt(r.other_load_server_core),
        r.flags.join(', '),
      ]),
  );
}

export function coresTable(rows: readonly CoresRow[]): string {
  return table(
    ['shape', 'transport', 'system', 'cores', 'connections', 'in flight', 'max spans/s', 'spans per CPU-s', 'server cores used', 'loadgen cores', 'other load', '÷ collector', 'same, per CPU-s', '÷ itself on 1 core'],
    rows.map((r) => [
      r.shape,
      r.transport,
      r.system,
      String(r.cores),
      String(r.connections),
      r.concurrency === null ? '-' : String(r.concurrency),
      int(r.max_spans_per_second),
      int(r.max_spans_per_cpu_second),
      fmt(r.max_server_cpu_cores),
      `${fmt(r.max_loadgen_cpu_cores)}${r.loadgen_shares_server_cores ? ' (shared)' : ''}`,
      fmt(r.max_other_load_server_core),
      fmt(r.max_vs_collector, 3),
      fmt(r.max_per_cpu_second_vs_collector, 3),
      fmt(r.max_vs_one_core, 3),
    ]),
  );
}

export function targetsTable(checks: readonly TargetCheck[]): string {
  return table(
    ['shape', 'target', 'transport', 'value', 'limit', 'met'],
    checks.map((c) => [c.shape, c.target, c.transport, fmt(c.value, 3), c.limit, c.met === null ? 'n/a' : c.met ? 'yes' : 'NO']),
  );
}

export function storageTable(rows: readonly StorageRow[]): string {
  return table(
    ['transport', 'CPU s / M spans: spansieve', 'spansieve+fs', 'collector+fs', 'p99 ms: spansieve', 'spansieve+fs', 'collector+fs',
      'peak RSS MiB: spansieve', 'spansieve+fs', 'collector+fs', 'fs ÷ in-memory CPU', 'spansieve+fs ÷ collector+fs CPU', 'same, p99',
      'collector+fs ÷ collector-ref CPU', 'other load'],
    rows.map((r) => [
      r.transport,
      fmt(r.cpu_seconds_per_million_spans.spansieve),
      fmt(r.cpu_seconds_per_million_spans.spansieve_storage),
      fmt(r.cpu_seconds_per_million_spans.collector_storage),
      fmt(r.p99_ms.spansieve),
      fmt(r.p99_ms.spansieve_storage),
      fmt(r.p99_ms.collector_storage),
      fmt(r.peak_rss_mb.spansieve, 1),
      fmt(r.peak_rss_mb.spansieve_storage, 1),
      fmt(r.peak_rss_mb.collector_storage, 1),
      fmt(r.storage_cpu_vs_memory, 3),
      fmt(r.storage_cpu_vs_collector_storage, 3),
      fmt(r.storage_p99_vs_collector_storage, 3),
      fmt(r.collector_storage_cpu_vs_memory, 3),
      [r.other_load_server_core.spansieve, r.other_load_server_core.spansieve_storage, r.other_load_server_core.collector_storage, r.other_load_server_core.collector_ref]
        .filter((v, i) => i < 3 || v !== null)
        .map((v) => fmt(v))
        .join(' / '),
    ]),
  );
}
