import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { keptInstanceIds } from './obi';
import { LoadGen } from './loadgen-client';
import { readMem } from './mem-probe';
import { isTls, type PoolInfo, type Snapshot } from './protocol';
import { allowedCpus, brkHeapMb, cpuBusySeconds, rssAnonMb, cpuSeconds, installCleanup, loadAverage, peakRssMb, resetPeakRss, rssMb, spawnPinned, stopChild, taskset } from './proc';
import { round } from './report';
import { parseSoakOptions, summarise, type Point, type SeriesSummary } from './soak-stats';
import { LOADGEN_CPU, SERVER_CPU, isCollector, isFloor, isReferenceBuild, jaegerBinary, otelcolBinary, startServer, type SystemName } from './systems';

// `npm run bench:soak -- [--seconds 600] [--shape obi-sidecar] ...`: each system in turn at a fixed
// span rate for a long window, pinned as in run.ts (server core 0, load generator + sink core 1),
// RSS sampled every few seconds (and, for spansieve, V8's heap through the mem-probe.js preload).
// Prints one JSON line per sample and a table; writes bench/results/soak.json.
// Method: docs/performance.md, "Memory over a 10-minute soak".

const ROOT = path.resolve(__dirname, '..', '..');
const RESULTS_DIR = path.join(ROOT, 'bench', 'results');
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const log = (text: string) => process.stderr.write(`soak: ${text}\n`);
const MIB = 1024 * 1024;

interface Sample {
  readonly t: number;
  readonly rss_mb: number;
  readonly hwm_mb: number;
  /** RssAnon: RSS less the mapped binary and libraries. */
  readonly anon_mb: number;
  /** The brk heap's RSS (glibc malloc's main arena: Node's Buffers, nghttp2, V8's zones). */
  readonly brk_heap_mb: number;
  readonly cpu_s: number;
  readonly acked_spans: number;
  readonly failed_requests: number;
  /** Cores' worth of CPU other processes used on the server's core since the previous sample. */
  readonly other_load_server_core: number;
  readonly heap_used_mb?: number;
  readonly heap_total_mb?: number;
  readonly new_space_mb?: number;
  readonly external_mb?: number;
  readonly array_buffers_mb?: number;
}

interface SoakResult {
  readonly system: SystemName;
  readonly seconds: number;
  readonly idle_rss_mb: number;
  /** VmHWM over the fixed-rate run (reset after the warm-up burst). */
  readonly peak_rss_mb: number;
  readonly rss: SeriesSummary;
  readonly anon: SeriesSummary;
  readonly brk_heap: SeriesSummary;
  readonly heap_used: SeriesSummary | null;
  readonly heap_total: SeriesSummary | null;
  readonly external: SeriesSummary | null;
  readonly achieved_spans_per_second: number;
  readonly cpu_seconds_per_million_spans: number;
  readonly failed_requests: number;
  /** Mean over the samples: cores' worth of other processes' CPU on the server's core. */
  readonly other_load_server_core: number;
  readonly flags: string[];
  readonly samples: Sample[];
}

async function soakOne(loadgen: LoadGen, sinkGrpcPort: number, workDir: string, system: SystemName, o: ReturnType<typeof parseSoakOptions>): Promise<SoakResult> {
  const flags: string[] = [];
  const label = `soak-${o.shape.name}-${system}`;
  const extra = (process.env.BENCH_SPANSIEVE_NODE_FLAGS ?? '').split(/\s+/).filter(Boolean);
  const spansieve = !isCollector(system) && !isFloor(system);
  const server = await startServer({
    system,
    keepIds: keptInstanceIds(o.shape.pool),
    sinkGrpcPort,
    workDir,
    label,
    sendingQueue: true,
    nodeFlags: spansieve ? ['--require', path.join(__dirname, 'mem-probe.js'), ...extra] : [],
  });
  try {
    if (allowedCpus(server.pid) !== String(SERVER_CPU)) flags.push('server-not-pinned');
    await loadgen.call({
      type: 'target',
      target: { transport: o.transport, grpcAddress: server.grpcAddress, httpAddress: server.httpAddress, expectSink: !isFloor(system), connections: o.shape.connections },
    });
    await loadgen.call({ type: 'probe', timeoutMs: 30_000 });
    const idle = rssMb(server.pid);
    if (o.burstS > 0) {
      await loadgen.call({ type: 'closed', concurrency: 2 });
      await sleep(o.burstS * 1000);
      await loadgen.call<Snapshot>({ type: 'stop', drainMs: 5000 });
    }
    if (!resetPeakRss(server.pid)) flags.push('peak-rss-includes-burst');
    await loadgen.call({ type: 'fixed', spansPerSecond: o.rate, maxInFlight: 64 });
    const first = await loadgen.call<Snapshot>({ type: 'snapshot' });
    const cpu0 = cpuSeconds(server.pid);
    let prev = { at: Date.now(), core: cpuBusySeconds(SERVER_CPU), cpu: cpu0 };
    const samples: Sample[] = [];
    const started = Date.now();
    for (let i = 1; ; i++) {
      // Against the start, not the last sample: a slow sample does not shift the rest.
      const due = started + i * o.intervalS * 1000;
      await sleep(Math.max(0, due - Date.now()));
      const snap = await loadgen.call<Snapshot>({ type: 'snapshot' }); // also empties the generator's latency samples
      const mem = spansieve ? readMem(server.pid) : undefined;
      const now = { at: Date.now(), core: cpuBusySeconds(SERVER_CPU), cpu: cpuSeconds(server.pid) };
      const other = Math.max(0, (now.core - prev.core - (now.cpu - prev.cpu)) / ((now.at - prev.at) / 1000));
      prev = now;
      const sample: Sample = {
        t: round((Date.now() - started) / 1000, 1),
        rss_mb: round(rssMb(server.pid), 1),
        hwm_mb: round(peakRssMb(server.pid), 1),
        anon_mb: round(rssAnonMb(server.pid), 1),
        brk_heap_mb: round(brkHeapMb(server.pid), 1),
        cpu_s: round(cpuSeconds(server.pid) - cpu0, 2),
        acked_spans: snap.ackedSpans - first.ackedSpans,
        failed_requests: snap.failedRequests - first.failedRequests,
        other_load_server_core: round(other, 2),
        ...(mem
          ? {
              heap_used_mb: round(mem.heapUsed / MIB, 1),
              heap_total_mb: round(mem.heapTotal / MIB, 1),
              new_space_mb: round(mem.newSpace / MIB, 1),
              external_mb: round(mem.external / MIB, 1),
              array_buffers_mb: round(mem.arrayBuffers / MIB, 1),
            }
          : {}),
      };
      samples.push(sample);
      process.stdout.write(`${JSON.stringify({ type: 'soak-sample', system, ...sample })}\n`);
      if (sample.t >= o.seconds) break;
    }
    const peak = peakRssMb(server.pid);
    await loadgen.call<Snapshot>({ type: 'stop', drainMs: 5000 });
    const last = samples[samples.length - 1]!;
    const series = (key: keyof Sample): Point[] => samples.filter((s) => s[key] !== undefined).map((s) => ({ t: s.t, v: s[key]! }));
    const achieved = last.acked_spans / last.t;
    if (achieved < o.rate * 0.95) flags.push(`server-behind(${round((100 * achieved) / o.rate, 1)}%)`);
    if (last.failed_requests > 0) flags.push(`failed-requests(${last.failed_requests})`);
    return {
      system,
      seconds: last.t,
      idle_rss_mb: round(idle, 1),
      peak_rss_mb: round(peak, 1),
      rss: summarise(series('rss_mb')),
      anon: summarise(series('anon_mb')),
      brk_heap: summarise(series('brk_heap_mb')),
      heap_used: spansieve ? summarise(series('heap_used_mb')) : null,
      heap_total: spansieve ? summarise(series('heap_total_mb')) : null,
      external: spansieve ? summarise(series('external_mb')) : null,
      achieved_spans_per_second: round(achieved, 0),
      cpu_seconds_per_million_spans: round(last.cpu_s / (last.acked_spans / 1e6), 3),
      failed_requests: last.failed_requests,
      other_load_server_core: round(samples.reduce((sum, x) => sum + x.other_load_server_core, 0) / samples.length, 2),
      flags,
      samples,
    };
  } finally {
    await server.stop();
  }
}

function table(results: readonly SoakResult[]): string {
  const f = (n: number | null | undefined, d = 1) => (n === null || n === undefined ? '-' : n.toFixed(d));
  const rows = [
    '| system | RSS at 1 min (MiB) | RSS at end | slope, 2nd half (MiB/min) | peak RSS (VmHWM) | RssAnon at end | brk heap at end | heap used at 1 min → end (slope) | heap total at end | spans/s | CPU s per M spans | other load on core 0 | flags |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const r of results) {
    const heap = r.heap_used ? `${f(r.heap_used.at_1min)} → ${f(r.heap_used.end)} (${f(r.heap_used.slope_per_min_second_half, 2)})` : '-';
    rows.push(`| ${r.system} | ${f(r.rss.at_1min)} | ${f(r.rss.end)} | ${f(r.rss.slope_per_min_second_half, 2)} | ${f(r.peak_rss_mb)} | ${f(r.anon.end)} | ${f(r.brk_heap.end)} | ${heap} | ${f(r.heap_total?.end)} | ${r.achieved_spans_per_second} | ${f(r.cpu_seconds_per_million_spans, 2)} | ${f(r.other_load_server_core, 2)} | ${r.flags.join(' ') || '-'} |`);
  }
  return rows.join('\n');
}

async function main(argv: readonly string[]): Promise<void> {
  const o = parseSoakOptions(argv);
  taskset();
  if (os.cpus().length < 2) throw new Error('the soak needs 2 cores: the server on core 0, the load generator and sink on core 1');
  if (o.systems.some((s) => s === 'collector') && !process.env.SPANSIEVE_JAEGER_BIN) {
    execFileSync('bash', [path.join(ROOT, 'scripts', 'install-peers.sh'), 'jaeger'], { stdio: ['ignore', 'ignore', 'inherit'] });
  }
  if (o.systems.includes('collector')) jaegerBinary();
  if (o.systems.some(isReferenceBuild)) otelcolBinary();
  if (isTls(o.transport)) throw new Error('the soak runs plaintext transports only');
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'spansieve-soak-'));
  installCleanup(() => fs.rmSync(workDir, { recursive: true, force: true }));
  const child = spawnPinned(LOADGEN_CPU, process.execPath, [path.join(__dirname, 'loadgen.js')], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const loadgen = new LoadGen(child);
  const hello = await loadgen.ready;
  const pool = await loadgen.call<PoolInfo>({ type: 'pool', spec: o.shape.pool });
  log(`${o.systems.join(', ')} one after the other, ${o.seconds} s each at ${o.rate} spans/s, shape ${o.shape.name} (${o.shape.description}; ${pool.bytesPerRequest} bytes per request) over ${o.transport}; load average ${loadAverage().join(' ')}`);
  const commit = (() => {
    try {
      return execFileSync('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
    } catch {
      return 'unknown';
    }
  })();
  const results: SoakResult[] = [];
  for (const system of o.systems) {
    log(`${system}: starting`);
    const r = await soakOne(loadgen, hello.sinkGrpcPort, workDir, system, o);
    results.push(r);
    process.stdout.write(`${JSON.stringify({ type: 'soak-result', ...r, samples: r.samples.length })}\n`);
  }
  await loadgen.call({ type: 'exit' }).catch(() => undefined);
  await stopChild(child, 2000);
  const report = {
    command: `npm run bench:soak${argv.length ? ` -- ${argv.join(' ')}` : ''}`,
    commit,
    date: new Date().toISOString(),
    load_average_at_end: loadAverage(),
    settings: { seconds: o.seconds, rate: o.rate, shape: o.shape.name, pool, transport: o.transport, interval_s: o.intervalS, burst_s: o.burstS },
    results,
  };
  const out = o.out ? path.resolve(o.out) : path.join(RESULTS_DIR, 'soak.json');
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);
  process.stdout.write(`\nsoak (${report.command}, commit ${commit}): ${o.shape.name} at ${o.rate} spans/s over ${o.transport}, ${o.seconds} s per system\n\n${table(results)}\n\nwritten to ${path.relative(process.cwd(), out)}\n`);
}

main(process.argv.slice(2)).then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`soak: ${(err as Error).message}\n`);
    process.exit(1);
  },
);
