import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { DEFAULT_POOL, keptInstanceIds, type PoolSpec } from './obi';
import { readElu } from './elu-probe';
import { SHAPES, SHAPE_NAMES, closedLoopConcurrency, shapeNamed, type Shape } from './shapes';
import { SCENARIO_FULL, SCENARIO_NAMES, SCENARIO_QUICK, parseScenarios, runScenario, scenarioRatios, scenariosTable, type ScenarioName, type ScenarioRow } from './scenarios';
import {
  allowedCpus,
  cpuList,
  cpusBusySeconds,
  cpuSeconds,
  processTree,
  repin,
  taskCpuSeconds,
  threadCpuSeconds,
  processCpuSplitSeconds,
  installCleanup,
  loadAverage,
  peakRssMb,
  resetPeakRss,
  rssMb,
  spawnPinned,
  stopChild,
  taskset,
} from './proc';
import { parseHostPort } from '../src/util/net';
import { startCapture, wireLatencyFromFile, type Capture, type WireLatency } from './wire';
import { makeBenchCerts, type BenchCerts } from './certs';
import { DEFAULT_TRANSPORTS, TRANSPORTS, isTls, type Hello, type PoolInfo, type Snapshot, type Transport } from './protocol';
import { LoadGen } from './loadgen-client';
import {
  percentile,
  ratios,
  ratiosTable,
  resultsTable,
  round,
  scalingTable,
  storageRows,
  storageTable,
  targetChecks,
  targetsTable,
  coresRows,
  coresTable,
  type Result,
  type ScalingResult,
} from './report';
import {
  LOADGEN_CPU,
  SERVER_CPU,
  DEFAULT_SYSTEMS,
  STORAGE_SYSTEMS,
  SYSTEMS,
  isReferenceBuild,
  isFloor,
  jaegerBinary,
  otelcolBinary,
  persistent,
  startServer,
  tail,
  type RunningServer,
  type SystemName,
} from './systems';

// `npm run bench [-- --quick]`: spansieve vs the Collector (the Jaeger v2 binary) vs a bare Node
// floor, and both with the sending queue on disk (the Collector's through a reference build with
// file_storage), per OTLP transport, then spansieve's cost against keep-list size and resource size.
// Writes bench/results/latest.json, prints one JSON line per measurement and the tables.
// Method: docs/performance.md.

const ROOT = path.resolve(__dirname, '..', '..');
const RESULTS_DIR = path.join(ROOT, 'bench', 'results');

interface Options {
  quick: boolean;
  rate: number;
  systems: SystemName[];
  transports: Transport[];
  scaling: boolean;
  profile: boolean;
  out: string;
  /** Closed-loop requests in flight per core; undefined: per shape (closedLoopConcurrency). */
  concurrency: number | undefined;
  /** Closed loop against the default config (sending queue on): overload behaviour, not capacity. */
  maxWithQueue: boolean;
  /** Overrides the fixed-rate warm-up (seconds). */
  warmupS: number | undefined;
  burstS: number | undefined;
  /** Measure added latency on the wire with tcpdump (when it can run); --no-wire turns it off. */
  wire: boolean;
  /** Load shapes (bench/shapes.ts) measured one after another; scaling runs on the default pool only. */
  shapes: Shape[];
  /** Whether --shapes was given: with --scenarios alone, only the scenarios run. */
  shapesGiven: boolean;
  /** Component scenarios (bench/scenarios.ts), spansieve vs the reference Collector, after the shapes. */
  scenarios: ScenarioName[];
  /** Times every scenario runs; its ratio is then the median of the rounds' ratios. */
  scenarioRounds: number;
  /**
   * --cores: each system is measured pinned to each of these many cores (default [1]), with as many
   * senders (gRPC connections) and `concurrency` requests in flight per core.
   */
  cores: number[];
}

interface Timing {
  warmupS: number;
  burstS: number;
  windowS: number;
  maxWarmupS: number;
  maxWindowS: number;
  scalingWarmupS: number;
  scalingWindowS: number;
  selectorPoints: number[];
  attributePoints: number[];
}

/**
 * Before the fixed-rate warm-up, a short closed loop with this many requests in flight: a few
 * thousand requests bring a JIT (Node's V8; Go has none) to its steady state, which at 100 requests
 * a second took about 25 s, so that the window measures a running sidecar, not its first minute
 * (docs/performance.md, "Warm-up"). Two keep the server busy without piling requests up.
 */
const BURST_CONCURRENCY = 2;

const FULL: Timing = {
  warmupS: 5,
  burstS: 4,
  windowS: 20,
  maxWarmupS: 3,
  maxWindowS: 12,
  scalingWarmupS: 4,
  scalingWindowS: 12,
  selectorPoints: [1, 10, 100, 1000],
  attributePoints: [10, 40, 160],
};

const QUICK: Timing = {
  warmupS: 2,
  burstS: 2,
  windowS: 5,
  maxWarmupS: 1,
  maxWindowS: 4,
  scalingWarmupS: 1.5,
  scalingWindowS: 4,
  selectorPoints: [1, 1000],
  attributePoints: [10, 160],
};

const USAGE = `usage: npm run bench -- [--quick] [--rate SPANS_PER_S] [--systems ${SYSTEMS.join(',')}]
                      [--transports ${TRANSPORTS.join(',')}] [--no-scaling]
                      [--concurrency N] [--max-with-queue] [--burst S] [--warmup S] [--no-wire] [--storage] [--profile] [--out FILE]
                      [--shapes all|${SHAPE_NAMES.join(',')}] (default: default)
                      [--scenarios all|${SCENARIO_NAMES.join(',')}] (default: none; alone, only the scenarios run) [--scenario-rounds N]
                      [--cores N,...] (default: 1; each system pinned to N cores, N senders)
--storage is --systems ${STORAGE_SYSTEMS.join(',')} (the persistent sending queue's comparison)
default --transports ${DEFAULT_TRANSPORTS.join(',')}; the -tls ones serve TLS on the systems' receivers`;

export function parseOptions(argv: readonly string[]): Options {
  const options: Options = {
    quick: false,
    rate: 20_000,
    systems: [...DEFAULT_SYSTEMS],
    transports: [...DEFAULT_TRANSPORTS],
    scaling: true,
    profile: false,
    out: path.join(RESULTS_DIR, 'latest.json'),
    concurrency: undefined,
    maxWithQueue: false,
    warmupS: undefined,
    burstS: undefined,
    wire: true,
    shapes: [shapeNamed('default')],
    shapesGiven: false,
    scenarios: [],
    scenarioRounds: 1,
    cores: [1],
  };
  const args = [...argv];
  while (args.length > 0) {
    const arg = args.shift()!;
    const value = () => {
      const v = args.shift();
      if (v === undefined) throw new Error(`${arg} needs a value\n${USAGE}`);
      return v;
    };
    const list = <T extends string>(allowed: readonly T[]) =>
      value()
        .split(',')
        .map((item) => {
          if (!allowed.includes(item as T)) throw new Error(`${arg}: unknown ${JSON.stringify(item)}; one of ${allowed.join(', ')}`);
          return item as T;
        });
    switch (arg) {
      case '--quick':
        options.quick = true;
        break;
      case '--rate':
        options.rate = Number(value());
        if (!(options.rate > 0)) throw new Error('--rate must be a positive number of spans per second');
        break;
      case '--systems':
        options.systems = list(SYSTEMS);
        break;
      case '--transports':
        options.transports = list(TRANSPORTS);
        break;
      case '--no-scaling':
        options.scaling = false;
        break;
      case '--concurrency': {
        const n = Number(value());
        if (!Number.isInteger(n) || n < 1) throw new Error(`--concurrency: a positive integer, not ${JSON.stringify(n)}`);
        options.concurrency = n;
        break;
      }
      case '--max-with-queue':
        options.maxWithQueue = true;
        break;
      case '--profile':
        options.profile = true;
        break;
      case '--burst':
        options.burstS = Number(value());
        if (!(options.burstS >= 0)) throw new Error('--burst must be a number of seconds');
        break;
      case '--warmup':
        options.warmupS = Number(value());
        if (!(options.warmupS >= 0)) throw new Error('--warmup must be a number of seconds');
        break;
      case '--no-wire':
        options.wire = false;
        break;
      case '--storage':
        options.systems = [...STORAGE_SYSTEMS];
        break;
      case '--shapes': {
        const names = value();
        options.shapes = names === 'all' ? [...SHAPES] : names.split(',').map(shapeNamed);
        options.shapesGiven = true;
        break;
      }
      case '--scenarios':
        options.scenarios = parseScenarios(value());
        break;
      case '--scenario-rounds':
        options.scenarioRounds = Number(value());
        if (!Number.isInteger(options.scenarioRounds) || options.scenarioRounds < 1) throw new Error('--scenario-rounds must be a whole number of at least 1');
        break;
      case '--cores':
        options.cores = parseCores(value());
        break;
      case '--out':
        options.out = path.resolve(value());
        break;
      case '--help':
      case '-h':
        process.stdout.write(`${USAGE}\n`);
        process.exit(0);
        break;
      default:
        throw new Error(`unknown argument ${JSON.stringify(arg)}\n${USAGE}`);
    }
  }
  if (options.scenarios.length > 0 && !options.shapesGiven) {
    options.shapes = [];
    options.scaling = false;
  }
  return options;
}

/** --cores: a list of distinct core counts, each a positive integer ("1,2"). */
export function parseCores(text: string): number[] {
  const cores = text.split(',').map((item) => {
    const n = Number(item);
    if (!/^[0-9]+$/.test(item.trim()) || !Number.isInteger(n) || n < 1) throw new Error(`--cores: ${JSON.stringify(item)} is not a positive whole number of cores`);
    return n;
  });
  if (new Set(cores).size !== cores.length) throw new Error(`--cores: ${text} names a core count twice`);
  return cores;
}

/** Where the server and the load generator run when the server gets `cores` of the machine's `machineCpus`. */
export interface Placement {
  readonly cores: number;
  /** CPUs 0 .. cores-1. */
  readonly server: readonly number[];
  /** The CPUs left over; all of them (shared with the server) when the server has every CPU. */
  readonly loadgen: readonly number[];
  readonly shared: boolean;
}

export function placement(cores: number, machineCpus: number): Placement {
  if (cores > machineCpus) throw new Error(`--cores ${cores}: this machine has ${machineCpus} CPUs`);
  // The server needs a core of its own and the load generator one it does not share, when there is one.
  const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);
  const server = range(0, cores);
  const shared = cores >= machineCpus;
  return { cores, server, loadgen: shared ? range(0, machineCpus) : range(cores, machineCpus), shared };
}

// ---------------------------------------------------------------- measuring

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const log = (text: string) => process.stderr.write(`bench: ${text}\n`);

interface Window {
  readonly seconds: number;
  readonly serverCpu: number;
  /** Of serverCpu, the kernel's part (stime: syscalls, loopback TCP). */
  readonly serverSystemCpu: number;
  readonly loadgenCpu: number;
  /** Of loadgenCpu: the generator's main thread and the sink's thread (the rest: V8 and libuv helpers). */
  readonly loadgenMainCpu: number;
  readonly sinkCpu: number;
  /** Busy time of the load generator's cores over the window (its process, helpers and anything else). */
  readonly loadgenCoresBusy: number;
  /** Cores' worth of CPU used by other processes on the server's core and on the load generator's. */
  readonly otherLoadServerCore: number;
  readonly otherLoadLoadgenCore: number;
  /** Server CPU cores by thread name ("main", V8 and libuv helpers; Go: all threads share one name). */
  readonly serverThreads: Record<string, number>;
  /** Cores used by each process of the server: the process, then its workers (spansieve-workers). */
  readonly serverProcesses: number[];
  /** The server's main-thread event-loop utilisation over the window (spansieve only: elu-probe.ts). */
  readonly serverElu: number | null;
  readonly a: Snapshot;
  readonly b: Snapshot;
  /** Latency samples gathered during the window. */
  readonly latency: number[];
  readonly rtt: number[];
  readonly verified: number;
  readonly verifyErrors: string[];
}

/** Reads CPU and counters at both ends of a `seconds` window while the load runs. */
async function measureWindow(loadgen: LoadGen, pid: number, seconds: number, where: Placement): Promise<Window> {
  await loadgen.call<Snapshot>({ type: 'snapshot' }); // drop warm-up samples
  // A multi-process server (spansieve-workers: a primary and its cluster workers) is measured whole.
  const pids = processTree(pid);
  const threadsA = threadCpuSeconds(pid);
  const splitsA = processCpuSplitSeconds(pids);
  const lgA = cpuSeconds(loadgen.pid);
  const sinkTid = loadgen.hello?.sinkTid ?? NaN;
  const lgMainA = taskCpuSeconds(loadgen.pid, loadgen.pid);
  const sinkA = taskCpuSeconds(loadgen.pid, sinkTid);
  const core0A = cpusBusySeconds(where.server);
  const core1A = cpusBusySeconds(where.loadgen);
  // The workers' event loops when there are workers (the primary's is nearly idle), else the process's.
  const eluPids = pids.length > 1 ? pids.slice(1) : pids;
  const eluA = sumElu(eluPids);
  const a = await loadgen.call<Snapshot>({ type: 'snapshot' });
  await sleep(seconds * 1000);
  const splitsB = processCpuSplitSeconds(pids);
  const threadsB = threadCpuSeconds(pid);
  const lgB = cpuSeconds(loadgen.pid);
  const lgMainB = taskCpuSeconds(loadgen.pid, loadgen.pid);
  const sinkB = taskCpuSeconds(loadgen.pid, sinkTid);
  const core0B = cpusBusySeconds(where.server);
  const core1B = cpusBusySeconds(where.loadgen);
  const eluB = sumElu(eluPids);
  const b = await loadgen.call<Snapshot>({ type: 'snapshot' });
  const wall = (b.at - a.at) / 1000;
  // Each process read once per end: its own CPU, and the sums of all of them.
  const perProcess = pids.map((_, i) => splitsB[i]!.user + splitsB[i]!.system - (splitsA[i]!.user + splitsA[i]!.system));
  const serverCpu = perProcess.reduce((sum, cpu) => sum + cpu, 0);
  const serverSystemCpu = pids.reduce((sum, _, i) => sum + splitsB[i]!.system - splitsA[i]!.system, 0);
  const serverThreads: Record<string, number> = {};
  for (const [name, seconds] of threadsB) {
    const used = (seconds - (threadsA.get(name) ?? 0)) / wall;
    if (used >= 0.001) serverThreads[name] = round(used, 3);
  }
  const eluActive = eluA && eluB ? eluB.active - eluA.active : NaN;
  const eluTotal = eluA && eluB ? eluActive + (eluB.idle - eluA.idle) : NaN;
  return {
    serverThreads,
    serverProcesses: perProcess.map((cpu) => round(cpu / wall, 3)),
    serverElu: eluTotal > 0 ? round(eluActive / eluTotal, 3) : null,
    seconds: wall,
    serverCpu,
    serverSystemCpu,
    loadgenCpu: lgB - lgA,
    loadgenMainCpu: lgMainB - lgMainA,
    sinkCpu: sinkB - sinkA,
    loadgenCoresBusy: core1B - core1A,
    // Sharing cores, the load generator's CPU is on the server's cores too: not "other" load.
    otherLoadServerCore: Math.max(0, (core0B - core0A - serverCpu - (where.shared ? lgB - lgA : 0)) / wall),
    otherLoadLoadgenCore: Math.max(0, (core1B - core1A - (lgB - lgA) - (where.shared ? serverCpu : 0)) / wall),
    a,
    b,
    latency: b.sinkLatencyMs,
    rtt: b.rttMs,
    verified: b.verified,
    verifyErrors: b.verifyErrors,
  };
}

/** Idle and active milliseconds summed over processes running the ELU probe; undefined if one has none. */
function sumElu(pids: readonly number[]): { idle: number; active: number } | undefined {
  let idle = 0;
  let active = 0;
  for (const pid of pids) {
    const elu = readElu(pid);
    if (!elu) return undefined;
    idle += elu.idle;
    active += elu.active;
  }
  return { idle, active };
}

interface MeasureOptions {
  readonly system: SystemName;
  readonly transport: Transport;
  readonly keepIds: readonly string[];
  readonly rate: number;
  readonly warmupS: number;
  /** Before the fixed-rate warm-up: a closed loop at low concurrency, so a JIT reaches steady state. */
  readonly burstS: number;
  readonly windowS: number;
  /** Closed-loop max throughput after the fixed-rate window. */
  readonly max?: { warmupS: number; windowS: number; concurrency: number };
  readonly label: string;
  /** gRPC sessions the load generator spreads the load over. */
  readonly connections: number;
  /** The server's CPUs and the load generator's. */
  readonly placement: Placement;
}

interface Measurement {
  readonly fixed: Window;
  /** Added latency from the packet capture of the fixed-rate window; undefined without one. */
  readonly wire: (WireLatency & { readonly dropped: number }) | undefined;
  readonly peakRssMb: number;
  /** Peak RSS through start-up and the warm-up burst, before the mark was reset for the fixed rate. */
  readonly burstPeakRssMb: number | undefined;
  readonly max: Window | undefined;
  readonly peakRssAfterMaxMb: number | undefined;
  readonly flags: string[];
  readonly loadAverage: number[];
  readonly concurrency: number | undefined;
  readonly idleRssMb: number;
}

async function measure(ctx: Context, o: MeasureOptions): Promise<Measurement> {
  const flags: string[] = [];
  const expectSink = !isFloor(o.system);
  let server: RunningServer | undefined;
  let capture: RunningCapture | undefined;
  const tls = isTls(o.transport) ? ctx.certs : undefined;
  if (isTls(o.transport) && !tls) throw new Error(`${o.label}: no certificates for ${o.transport}`);
  const start = async (label: string, sendingQueue: boolean): Promise<RunningServer> => {
    server = await startServer({
      tls,
      system: o.system,
      keepIds: o.keepIds,
      sinkGrpcPort: ctx.hello.sinkGrpcPort,
      workDir: ctx.workDir,
      label,
      sendingQueue,
      cpus: o.placement.server,
      nodeFlags: o.system.startsWith('spansieve') ? spansieveNodeFlags(ctx.options.profile, label) : [],
    });
    const pinned = allowedCpus(server.pid);
    if (pinned !== cpuList(o.placement.server)) flags.push(`server-not-pinned(${pinned})`);
    await ctx.loadgen.call({
      type: 'target',
      target: { transport: o.transport, grpcAddress: server.grpcAddress, httpAddress: server.httpAddress, expectSink, caFile: tls?.caFile, connections: o.connections },
    });
    await ctx.loadgen.call({ type: 'probe', timeoutMs: 30_000 });
    return server;
  };
  try {
    repin(ctx.loadgen.pid, o.placement.loadgen);
    if (o.placement.shared) flags.push('loadgen-shares-server-cores');
    // Fixed rate: the components' default configs (sending queue on).
    const fixedServer = await start(o.label, true);
    const idleRss = rssMb(fixedServer.pid);
    if (o.burstS > 0) {
      await ctx.loadgen.call({ type: 'closed', concurrency: BURST_CONCURRENCY });
      await sleep(o.burstS * 1000);
      await ctx.loadgen.call<Snapshot>({ type: 'stop', drainMs: 5000 });
    }
    // The peak RSS reported is that of the fixed rate (its warm-up and window), not of the burst.
    const burstPeakRss = peakRssMb(fixedServer.pid);
    if (!resetPeakRss(fixedServer.pid)) flags.push('peak-rss-includes-burst');
    await ctx.loadgen.call({ type: 'fixed', spansPerSecond: o.rate, maxInFlight: 64 });
    await sleep(o.warmupS * 1000);
    // Over TLS the request bytes on the wire are encrypted, so the capture cannot match requests:
    // latency is then the sink's clock (result.latency says which).
    capture = expectSink && !isTls(o.transport) ? await startWireCapture(ctx, fixedServer, o.label, flags) : undefined;
    const fromMs = Date.now();
    const fixed = await measureWindow(ctx.loadgen, fixedServer.pid, o.windowS, o.placement);
    const toMs = Date.now();
    await ctx.loadgen.call<Snapshot>({ type: 'stop', drainMs: 5000 });
    const wire = capture ? await finishWireCapture(ctx, capture, fromMs, toMs, flags) : undefined;
    capture = undefined;
    const peakRss = peakRssMb(fixedServer.pid);
    const loadAvg = loadAverage();
    await fixedServer.stop();
    server = undefined;

    // Closed loop on a fresh server whose exporter has no sending queue, so that an
    // acknowledgement means "forwarded" and `concurrency` really bounds the work in flight
    // (--max-with-queue: the default queue, which overloads both systems).
    let max: Window | undefined;
    let peakAfterMax: number | undefined;
    if (o.max) {
      const maxServer = await start(`${o.label}-max`, ctx.options.maxWithQueue);
      await ctx.loadgen.call({ type: 'closed', concurrency: o.max.concurrency });
      await sleep(o.max.warmupS * 1000);
      max = await measureWindow(ctx.loadgen, maxServer.pid, o.max.windowS, o.placement);
      await ctx.loadgen.call<Snapshot>({ type: 'stop', drainMs: 10_000 });
      peakAfterMax = peakRssMb(maxServer.pid);
    }
    return { fixed, wire, peakRssMb: peakRss, burstPeakRssMb: burstPeakRss, max, peakRssAfterMaxMb: peakAfterMax, flags, loadAverage: loadAvg, concurrency: o.max?.concurrency, idleRssMb: idleRss };
  } catch (err) {
    const failed: RunningServer | undefined = server;
    const logText = failed ? tail(failed.logFile) : '';
    throw new Error(`${o.label}: ${(err as Error).message}${failed ? `\n--- server log (${failed.logFile}) ---\n${logText}` : ''}`, { cause: err });
  } finally {
    await server?.stop();
    // A measurement that failed mid-window leaves its capture running: stop it.
    await capture?.capture.stop().catch(() => undefined);
  }
}

interface RunningCapture {
  readonly capture: Capture;
  readonly file: string;
  /** The server's listening ports: segments to them are requests in. */
  readonly inboundPorts: ReadonlySet<number>;
}

let wireUnavailable: string | undefined;

/** tcpdump on the loopback, for requests to this server and its forwards to the sink; undefined when it cannot run. */
async function startWireCapture(ctx: Context, server: RunningServer, label: string, flags: string[]): Promise<RunningCapture | undefined> {
  if (!ctx.options.wire) return undefined;
  if (wireUnavailable !== undefined) {
    flags.push('no-wire-capture');
    return undefined;
  }
  const file = path.join(ctx.workDir, `${label}.pcap`);
  const inboundPorts = new Set([portOf(server.grpcAddress), portOf(server.httpAddress)]);
  try {
    const capture = await startCapture(file, [...inboundPorts, ctx.hello.sinkGrpcPort], LOADGEN_CPU);
    return { capture, file, inboundPorts };
  } catch (err) {
    wireUnavailable = (err as Error).message;
    log(`no wire latency (the sink's clock is used instead; bash scripts/install-peers.sh tcpdump, run as root): ${wireUnavailable}`);
    flags.push('no-wire-capture');
    return undefined;
  }
}

async function finishWireCapture(
  ctx: Context,
  running: RunningCapture,
  fromMs: number,
  toMs: number,
  flags: string[],
): Promise<Measurement['wire']> {
  const { dropped } = await running.capture.stop();
  const sent = await ctx.loadgen.call<string[]>({ type: 'tails' });
  // A tail shared by two pool requests cannot tell them apart: leave both out.
  const tails = new Map<string, number>();
  const shared = new Set<string>();
  sent.forEach((tail, index) => (tails.has(tail) ? shared.add(tail) : tails.set(tail, index)));
  for (const tail of shared) tails.delete(tail);
  const wire = wireLatencyFromFile(running.file, {
    inboundPorts: running.inboundPorts,
    sinkPort: ctx.hello.sinkGrpcPort,
    tails,
    fromMs,
    toMs,
  });
  if (dropped > 0) flags.push(`wire-dropped(${dropped})`);
  if (wire.unpairedIn > 0.01 * wire.requestsIn) flags.push(`wire-unpaired(${wire.unpairedIn})`);
  return { ...wire, dropped };
}

function portOf(address: string): number {
  const parsed = parseHostPort(address);
  if (!parsed) throw new Error(`not a host:port address: ${address}`);
  return parsed.port;
}

/** --profile adds --cpu-prof; BENCH_SPANSIEVE_NODE_FLAGS adds flags for experiments (e.g. V8 heap sizes). */
function spansieveNodeFlags(profile: boolean, label: string): string[] {
  const extra = (process.env.BENCH_SPANSIEVE_NODE_FLAGS ?? '').split(/\s+/).filter(Boolean);
  const probe = ['--require', path.join(__dirname, 'elu-probe.js')];
  const prof = profile ? ['--cpu-prof', `--cpu-prof-dir=${path.join(RESULTS_DIR, 'profiles')}`, `--cpu-prof-name=${label}.cpuprofile`] : [];
  return [...probe, ...extra, ...prof];
}

/** Flags for a fixed-rate window: the generator kept up, the server kept up, the filter was right. */
function fixedFlags(w: Window, rate: number, expectSink: boolean, keptFraction: number): string[] {
  const flags: string[] = [];
  const offered = (w.b.sentSpans - w.a.sentSpans) / w.seconds;
  const achieved = (w.b.ackedSpans - w.a.ackedSpans) / w.seconds;
  if (offered < rate * 0.95) flags.push(`loadgen-behind(${round((100 * offered) / rate, 1)}%)`);
  if (achieved < rate * 0.95) flags.push(`server-behind(${round((100 * achieved) / rate, 1)}%)`);
  const failed = w.b.failedRequests - w.a.failedRequests;
  if (failed > 0) flags.push(`failed-requests(${failed}: ${w.b.lastError})`);
  if (w.loadgenCpu / w.seconds > 0.9) flags.push('loadgen-cpu-saturated');
  if (w.otherLoadServerCore > 0.2) flags.push(`shared-core(${round(w.otherLoadServerCore, 2)})`);
  if (expectSink) {
    const forwarded = (w.b.sinkSpans - w.a.sinkSpans) / w.seconds;
    const expected = achieved * keptFraction;
    if (expected > 0 && Math.abs(forwarded - expected) / expected > 0.05) flags.push(`forwarded-${round((100 * forwarded) / expected, 1)}%-of-kept`);
    if (w.verifyErrors.length > 0) flags.push(`filter-wrong(${w.verifyErrors[0]})`);
  }
  return flags;
}

function maxFlags(w: Window, cores: number): string[] {
  const flags: string[] = [];
  const serverCores = w.serverCpu / w.seconds;
  const loadgenCores = w.loadgenCpu / w.seconds;
  // Of the cores it was given (100 % = all of them busy).
  if (serverCores < 0.9 * cores) flags.push(`max:server-at-${round((serverCores * 100) / cores, 0)}%-cpu`);
  if (loadgenCores > 0.9) flags.push(`max:loadgen-at-${round(loadgenCores * 100, 0)}%-cpu`);
  // Cluster workers: one that did under half the work of the busiest got fewer connections.
  const workers = w.serverProcesses.slice(1);
  if (workers.length > 1 && Math.min(...workers) < 0.5 * Math.max(...workers)) flags.push(`max:workers-unbalanced(${workers.join('/')})`);
  const failed = w.b.failedRequests - w.a.failedRequests;
  if (failed > 0) flags.push(`max:refused(${failed}: ${w.b.lastError})`);
  return flags;
}

// ---------------------------------------------------------------- context, machine, versions

interface Context {
  readonly options: Options;
  readonly timing: Timing;
  readonly loadgen: LoadGen;
  readonly hello: Hello;
  readonly workDir: string;
  /** Made when a TLS transport is measured. */
  readonly certs: BenchCerts | undefined;
}

function machineInfo(): Record<string, unknown> {
  const cpus = os.cpus();
  let goVersion = 'unknown';
  try {
    goVersion = execFileSync('go', ['version'], { encoding: 'utf8' }).trim();
  } catch {
    // no go toolchain on PATH
  }
  return {
    cpu_model: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    memory_gb: round(os.totalmem() / 1024 ** 3, 1),
    os: `${os.type()} ${os.release()}`,
    node: process.version,
    go: goVersion,
    load_average_at_start: loadAverage(),
    server_cpu: SERVER_CPU,
    loadgen_cpu: LOADGEN_CPU,
  };
}

/** Module versions compiled into a Go binary (`go version -m`); empty when go is not on PATH. */
function goModules(bin: string, main: 'jaeger' | 'otelcol'): Record<string, string> {
  const modules: Record<string, string> = {};
  let text: string;
  try {
    text = execFileSync('go', ['version', '-m', bin], { encoding: 'utf8' });
  } catch {
    return modules;
  }
  modules.go = /:\s+(go\S+)/.exec(text)?.[1] ?? 'unknown';
  const contrib = 'github.com/open-telemetry/opentelemetry-collector-contrib';
  for (const [key, module] of [
    ...(main === 'jaeger' ? [['jaeger', 'github.com/jaegertracing/jaeger'] as const] : []),
    ['filterprocessor', `${contrib}/processor/filterprocessor`],
    ['filestorage', `${contrib}/extension/storage/filestorage`],
    ['otlpreceiver', 'go.opentelemetry.io/collector/receiver/otlpreceiver'],
    ['otlpexporter', 'go.opentelemetry.io/collector/exporter/otlpexporter'],
  ] as const) {
    const m = new RegExp(`\\s(?:mod|dep)\\s+${module.replace(/[.]/g, '\\.')}\\s+(\\S+)`).exec(text);
    if (m) modules[key] = m[1]!;
  }
  return modules;
}

function versions(includeCollector: boolean, includeOtelcol: boolean): Record<string, unknown> {
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
  let git = 'unknown';
  try {
    git = execFileSync('git', ['describe', '--always', '--dirty'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    // not a git checkout
  }
  const out: Record<string, unknown> = { spansieve: pkg.version, spansieve_git: git, node: process.version };
  if (includeCollector) {
    const modules = goModules(jaegerBinary(), 'jaeger');
    if (modules.jaeger === undefined) {
      // go not installed: fall back to what install-peers.sh builds
      const script = fs.readFileSync(path.join(ROOT, 'scripts', 'install-peers.sh'), 'utf8');
      modules.jaeger = /JAEGER_MODULE_VERSION=(\S+)/.exec(script)?.[1] ?? 'unknown';
    }
    out.jaeger = modules.jaeger;
    out.jaeger_binary = jaegerBinary();
    out.jaeger_built_with = modules.go ?? 'unknown';
    out.collector_filterprocessor = modules.filterprocessor ?? 'unknown';
    out.collector_otlpreceiver = modules.otlpreceiver ?? 'unknown';
    out.collector_otlpexporter = modules.otlpexporter ?? 'unknown';
  }
  if (includeOtelcol) {
    const modules = goModules(otelcolBinary(), 'otelcol');
    out.otelcol_binary = otelcolBinary();
    out.otelcol_built_with = modules.go ?? 'unknown';
    out.otelcol_filterprocessor = modules.filterprocessor ?? 'unknown';
    out.otelcol_filestorage = modules.filestorage ?? 'unknown';
    out.otelcol_otlpreceiver = modules.otlpreceiver ?? 'unknown';
    out.otelcol_otlpexporter = modules.otlpexporter ?? 'unknown';
  }
  return out;
}

function commandLine(argv: readonly string[]): string {
  if (process.env.npm_lifecycle_event === 'bench') return `npm run bench${argv.length ? ` -- ${argv.join(' ')}` : ''}`;
  return `node dist/bench/run.js${argv.length ? ` ${argv.join(' ')}` : ''}`;
}

// ---------------------------------------------------------------- main

/**
 * Jaeger (the Collector under test) and the reference Collector with file_storage when they are
 * measured, and tcpdump for the wire latency, through the same cached, idempotent script as the
 * tests. The Collectors are required; without tcpdump the harness falls back to the sink's clock
 * (startWireCapture says so).
 */
function installPeers(options: Options): void {
  const script = path.join(ROOT, 'scripts', 'install-peers.sh');
  if (options.systems.includes('collector') && !process.env.SPANSIEVE_JAEGER_BIN) {
    execFileSync('bash', [script, 'jaeger'], { stdio: ['ignore', 'ignore', 'inherit'] });
  }
  // The reference Collector with file_storage: bench only (the tests never build it).
  if ((options.systems.some(isReferenceBuild) || options.scenarios.length > 0) && !process.env.SPANSIEVE_OTELCOL_BIN) {
    execFileSync('bash', [script, 'otelcol'], { stdio: ['ignore', 'ignore', 'inherit'] });
  }
  if (options.wire) {
    try {
      execFileSync('bash', [script, 'tcpdump'], { stdio: ['ignore', 'ignore', 'inherit'] });
    } catch {
      log('could not install tcpdump: latency is measured on the sink\'s clock');
    }
  }
}

async function main(argv: readonly string[]): Promise<void> {
  const options = parseOptions(argv);
  const timing = options.quick ? QUICK : FULL;
  taskset();
  if (os.cpus().length < 2) throw new Error('the benchmark needs 2 cores: the server on core 0, the load generator and sink on core 1');
  const placements = options.cores.map((n) => placement(n, os.cpus().length));
  installPeers(options);
  if (options.systems.includes('collector')) jaegerBinary();
  if (options.systems.some(isReferenceBuild) || options.scenarios.length > 0) otelcolBinary();
  fs.mkdirSync(RESULTS_DIR, { recursive: true });
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'spansieve-bench-'));
  // Every child (servers, load generator) is killed on exit, error and signals; see proc.ts.
  installCleanup(() => fs.rmSync(workDir, { recursive: true, force: true }));
  const started = performance.now();

  const loadgenChild = spawnPinned(LOADGEN_CPU, process.execPath, [path.join(__dirname, 'loadgen.js')], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const loadgen = new LoadGen(loadgenChild);
  const hello = await loadgen.ready;
  const certs = options.transports.some(isTls) ? makeBenchCerts(path.join(workDir, 'tls')) : undefined;
  const ctx: Context = { options, timing, loadgen, hello, workDir, certs };

  const machine = machineInfo();
  const vers = versions(options.systems.includes('collector'), options.systems.some(isReferenceBuild));
  const what = options.shapes.length > 0 ? `${options.systems.join(', ')} x ${options.transports.join(', ')}` : 'no shapes';
  log(`${options.quick ? 'quick' : 'full'} run: ${what}${options.scenarios.length > 0 ? `; scenarios ${options.scenarios.join(', ')}` : ''} at ${options.rate} spans/s` +
    `; server on core ${SERVER_CPU}, load generator + sink on core ${LOADGEN_CPU}; load average ${loadAverage().join(' ')}`);

  const setPool = async (spec: PoolSpec): Promise<PoolInfo> => {
    const info = await loadgen.call<PoolInfo>({ type: 'pool', spec });
    log(`pool: ${info.requests} requests x ${info.spansPerRequest} spans (${info.keptSpansPerRequest} kept), ` +
      `${info.bytesPerRequest} bytes (${info.gzipBytesPerRequest} gzipped), ${spec.resourceAttributes} resource attributes, ` +
      `${spec.keptInstances} keep selectors; built in ${info.buildMs} ms`);
    return info;
  };

  // ---- per shape: systems x transports at the fixed rate, then closed loop
  const results: Result[] = [];
  const pools: Record<string, PoolSpec & PoolInfo & { connections: number }> = {};
  for (const shape of options.shapes) {
    const poolInfo = await setPool(shape.pool);
    pools[shape.name] = { ...shape.pool, ...poolInfo, connections: shape.connections };
    const keepIds = keptInstanceIds(shape.pool);
    const keptFraction = poolInfo.keptSpansPerRequest / poolInfo.spansPerRequest;
    for (const transport of options.transports) {
      for (const system of options.systems) for (const where of placements) {
        const base = options.shapes.length > 1 || shape.name !== 'default' ? `${shape.name}-${system}-${transport}` : `${system}-${transport}`;
        const label = options.cores.length > 1 || where.cores !== 1 ? `${base}-${where.cores}cores` : base;
        // N cores: N senders, each with the shape's connections and `concurrency` requests in flight.
        const connections = shape.connections * where.cores;
        const concurrency = closedLoopConcurrency(poolInfo.spansPerRequest, options.concurrency) * where.cores;
        log(`${label}: starting`);
        const m = await measure(ctx, {
          system,
          transport,
          keepIds,
          rate: options.rate,
          warmupS: options.warmupS ?? timing.warmupS,
          burstS: options.burstS ?? timing.burstS,
          windowS: timing.windowS,
          // The closed loop runs without a sending queue, where storage has nothing to do; a
          // persistent system runs it only with --max-with-queue.
          max: !persistent(system) || options.maxWithQueue ? { warmupS: timing.maxWarmupS, windowS: timing.maxWindowS, concurrency } : undefined,
          label,
          connections,
          placement: where,
        });
        const result = toResult(shape.name, system, transport, options.rate, m, keptFraction, where, connections);
        results.push(result);
        process.stdout.write(`${JSON.stringify({ type: 'result', ...result })}\n`);
      }
    }
  }

  // ---- scaling: spansieve's CPU per span against keep-list size and resource size
  const scaling: ScalingResult[] = [];
  if (options.scaling && options.systems.includes('spansieve') && options.shapes.some((sh) => sh.name === 'default')) {
    const points: { dimension: ScalingResult['dimension']; value: number; spec: PoolSpec }[] = [
      ...timing.selectorPoints.map((k) => ({ dimension: 'selectors' as const, value: k, spec: { ...DEFAULT_POOL, keptInstances: k } })),
      ...timing.attributePoints.map((n) => ({ dimension: 'resource_attributes' as const, value: n, spec: { ...DEFAULT_POOL, resourceAttributes: n } })),
    ];
    for (const point of points) {
      const info = await setPool(point.spec);
      const label = `scaling-${point.dimension}-${point.value}`;
      log(`${label}: starting`);
      const m = await measure(ctx, {
        system: 'spansieve',
        transport: 'grpc',
        keepIds: keptInstanceIds(point.spec),
        rate: options.rate,
        warmupS: timing.scalingWarmupS,
        burstS: options.burstS ?? timing.burstS,
        windowS: timing.scalingWindowS,
        label,
        connections: 1,
        placement: placement(1, os.cpus().length),
      });
      const r = toResult('default', 'spansieve', 'grpc', options.rate, m, info.keptSpansPerRequest / info.spansPerRequest, placement(1, os.cpus().length), 1);
      const row: ScalingResult = {
        dimension: point.dimension,
        value: point.value,
        system: 'spansieve',
        transport: 'grpc',
        selectors: point.spec.keptInstances,
        resource_attributes: point.spec.resourceAttributes,
        bytes_per_request: info.bytesPerRequest,
        offered_spans_per_second: r.offered_spans_per_second,
        achieved_spans_per_second: r.achieved_spans_per_second,
        cpu_seconds_per_million_spans: r.cpu_seconds_per_million_spans,
        p50_ms: r.p50_ms,
        p99_ms: r.p99_ms,
        peak_rss_mb: r.peak_rss_mb,
        other_load_server_core: r.other_load_server_core,
        flags: r.flags,
      };
      scaling.push(row);
      process.stdout.write(`${JSON.stringify({ type: 'scaling', ...row })}\n`);
    }
  }

  await loadgen.call({ type: 'exit' }).catch(() => undefined);
  await stopChild(loadgenChild, 2000);

  // ---- scenarios: their own load and sink (bench/scenarios.ts), after the load generator is gone
  const scenarioRows: ScenarioRow[] = [];
  const scenarioTiming = { ...(options.quick ? SCENARIO_QUICK : SCENARIO_FULL), rate: options.rate };
  for (let round = 0; round < options.scenarioRounds; round++) {
    for (const scenario of options.scenarios) {
      for (const row of await runScenario(scenario, scenarioTiming, log, round)) {
        scenarioRows.push(row);
        process.stdout.write(`${JSON.stringify({ type: 'scenario', ...row })}\n`);
      }
    }
  }
  const scenarioRs = scenarioRatios(scenarioRows);

  const shapeNames = options.shapes.map((sh) => sh.name);
  // The one-core targets on one-core rows; --cores rows are compared in their own table.
  const oneCore = results.filter((r) => r.cores === 1);
  const rs = ratios(oneCore, options.transports, shapeNames);
  const checks = targetChecks(oneCore, rs);
  const cores = coresRows(results);
  const report = {
    command: commandLine(argv),
    date: new Date().toISOString(),
    duration_seconds: round((performance.now() - started) / 1000, 1),
    machine: { ...machine, load_average_at_end: loadAverage() },
    versions: vers,
    settings: {
      quick: options.quick,
      fixed_rate_spans_per_second: options.rate,
      // null: per shape, closedLoopConcurrency(); each result has its own as max_concurrency.
      closed_loop_concurrency: options.concurrency ?? null,
      // Per core: a measurement on N cores has N x the shape's connections and N x concurrency in flight.
      cores: options.cores,
      closed_loop_sending_queue: options.maxWithQueue,
      // The persistent systems' file_storage: defaults (fsync off on both), a fresh directory per measurement.
      file_storage: { fsync: false, systems: options.systems.filter(persistent) },
      timing: { ...timing, warmupS: options.warmupS ?? timing.warmupS, burstS: options.burstS ?? timing.burstS },
      burst_concurrency: BURST_CONCURRENCY,
      // The TLS transports: the systems' receivers serve a generated EC P-256 certificate; the sink leg stays plaintext.
      tls: certs ? { transports: options.transports.filter(isTls), key: 'EC P-256', sink_leg: 'plaintext' } : null,
      pool: pools.default ?? null,
      shapes: pools,
    },
    results,
    ratios: rs,
    storage: storageRows(oneCore.filter((r) => r.shape === shapeNames[0]), options.transports),
    cores,
    targets: checks,
    scaling,
    scenarios: scenarioRows,
    scenario_ratios: scenarioRs,
    scenario_timing: options.scenarios.length > 0 ? scenarioTiming : null,
  };
  fs.mkdirSync(path.dirname(options.out), { recursive: true });
  fs.writeFileSync(options.out, `${JSON.stringify(report, null, 2)}\n`);

  const out: string[] = [
    '',
    `spansieve benchmark (${report.command}); ${String(machine.cpu_model)}, ${String(machine.cores)} cores; server pinned to core ${SERVER_CPU}, load generator + sink to core ${LOADGEN_CPU}`,
    `fixed rate ${options.rate} spans/s for CPU, latency and RSS; closed loop with ${options.concurrency ?? 'about 24,576 spans\' worth of (16-256)'} requests in flight for max throughput`,
  ];
  if (results.length > 0) out.push('', resultsTable(results), '', 'Ratios (same run):', ratiosTable(rs), '', 'Targets:', targetsTable(checks));
  if (options.cores.some((n) => n !== 1)) out.push('', 'Cores and senders, closed loop (same run):', coresTable(cores));
  const storage = report.storage;
  if (storage.length > 0) out.push('', 'Persistent sending queue (file_storage, fsync off), same run:', storageTable(storage));
  if (scaling.length > 0) {
    out.push('', 'Scaling, spansieve over grpc at the fixed rate: keep-list size', scalingTable(scaling, 'selectors'));
    out.push('', 'Scaling, spansieve over grpc at the fixed rate: attributes per resource', scalingTable(scaling, 'resource_attributes'));
  }
  if (scenarioRows.length > 0) out.push('', 'Scenarios, spansieve vs the reference Collector (v0.160.0), same run:', scenariosTable(scenarioRows, scenarioRs));
  out.push('', `written to ${path.relative(process.cwd(), options.out) || options.out} in ${report.duration_seconds} s`, '');
  process.stdout.write(out.join('\n'));
}

function toResult(shape: string, system: SystemName, transport: Transport, rate: number, m: Measurement, keptFraction: number, where: Placement, connections: number): Result {
  const w = m.fixed;
  const spans = w.b.ackedSpans - w.a.ackedSpans;
  const expectSink = !isFloor(system);
  const flags = [...m.flags, ...fixedFlags(w, rate, expectSink, keptFraction), ...(m.max ? maxFlags(m.max, where.cores) : [])];
  // Wire latency only when it matched nearly every request the sink saw; otherwise the sink's clock.
  const wireUsable = m.wire !== undefined && m.wire.latencyMs.length >= 0.95 * w.latency.length;
  if (m.wire && !wireUsable) flags.push(`wire-matched(${m.wire.latencyMs.length} of ${w.latency.length})`);
  const latency = !expectSink ? w.rtt : wireUsable ? m.wire.latencyMs : w.latency;
  const max = m.max;
  // Max throughput counts what was acknowledged AND forwarded: with an exporter queue, a server can
  // acknowledge faster than it forwards for a while (until its queue is full).
  const maxAcked = max ? max.b.ackedSpans - max.a.ackedSpans : 0;
  const maxForwardedInput = max && expectSink && keptFraction > 0 ? (max.b.sinkSpans - max.a.sinkSpans) / keptFraction : Infinity;
  const maxSpans = Math.min(maxAcked, maxForwardedInput);
  if (maxForwardedInput < maxAcked * 0.95) flags.push(`max:forwarded-${round((100 * maxForwardedInput) / maxAcked, 0)}%-of-acked`);
  return {
    shape,
    system,
    transport,
    cores: where.cores,
    server_cpus: cpuList(where.server),
    loadgen_cpus: cpuList(where.loadgen),
    loadgen_shares_server_cores: where.shared,
    connections,
    offered_spans_per_second: round((w.b.sentSpans - w.a.sentSpans) / w.seconds, 0),
    achieved_spans_per_second: round(spans / w.seconds, 0),
    cpu_seconds_per_million_spans: round(w.serverCpu / (spans / 1e6), 3),
    system_cpu_seconds_per_million_spans: round(w.serverSystemCpu / (spans / 1e6), 3),
    max_spans_per_second_one_core: max ? round(maxSpans / max.seconds, 0) : null,
    p50_ms: round(percentile(latency, 50), 3),
    p99_ms: round(percentile(latency, 99), 3),
    peak_rss_mb: round(m.peakRssMb, 1),
    burst_peak_rss_mb: m.burstPeakRssMb === undefined ? null : round(m.burstPeakRssMb, 1),
    target_spans_per_second: rate,
    latency: !expectSink ? 'round-trip' : wireUsable ? 'wire-request-in-to-request-out' : 'request-in-to-request-out',
    sink_p50_ms: expectSink ? round(percentile(w.latency, 50), 3) : null,
    sink_p90_ms: expectSink ? round(percentile(w.latency, 90), 3) : null,
    sink_p99_ms: expectSink ? round(percentile(w.latency, 99), 3) : null,
    wire_requests: m.wire ? m.wire.latencyMs.length : null,
    wire_unmatched_forwards: m.wire ? m.wire.unmatchedOut : null,
    rtt_p50_ms: round(percentile(w.rtt, 50), 3),
    rtt_p99_ms: round(percentile(w.rtt, 99), 3),
    // The shape of the tail: p99 alone cannot tell a few stalls from a slow everything.
    p90_ms: round(percentile(latency, 90), 3),
    p999_ms: round(percentile(latency, 99.9), 3),
    slow_request_share: latency.length > 0 ? round(latency.filter((ms) => ms > 5).length / latency.length, 4) : null,
    server_cpu_cores: round(w.serverCpu / w.seconds, 3),
    server_cpu_cores_by_thread: w.serverThreads,
    server_event_loop_utilization: w.serverElu,
    window_seconds: round(w.seconds, 2),
    forwarded_spans_per_second: expectSink ? round((w.b.sinkSpans - w.a.sinkSpans) / w.seconds, 0) : null,
    forwarded_requests_per_second: expectSink ? round((w.b.sinkRequests - w.a.sinkRequests) / w.seconds, 1) : null,
    acked_requests_per_second: round((w.b.ackedRequests - w.a.ackedRequests) / w.seconds, 1),
    forwarded_ratio: expectSink && spans > 0 ? round((w.b.sinkSpans - w.a.sinkSpans) / spans, 3) : null,
    failed_requests: w.b.failedRequests - w.a.failedRequests,
    verified_requests: w.verified,
    loadgen_cpu_cores: round(w.loadgenCpu / w.seconds, 3),
    loadgen_main_thread_cpu_cores: round(w.loadgenMainCpu / w.seconds, 3),
    sink_cpu_cores: round(w.sinkCpu / w.seconds, 3),
    loadgen_cores_busy: round(w.loadgenCoresBusy / w.seconds, 3),
    other_load_server_core: round(w.otherLoadServerCore, 2),
    other_load_loadgen_core: round(w.otherLoadLoadgenCore, 2),
    max_server_cpu_cores: max ? round(max.serverCpu / max.seconds, 3) : null,
    max_server_event_loop_utilization: max ? max.serverElu : null,
    max_server_cpu_cores_by_process: max ? max.serverProcesses : null,
    max_spans_per_cpu_second: max && max.serverCpu > 0 ? round(maxSpans / max.serverCpu, 0) : null,
    max_acked_spans_per_second: max ? round(maxAcked / max.seconds, 0) : null,
    max_forwarded_spans_per_second: max && expectSink ? round((max.b.sinkSpans - max.a.sinkSpans) / max.seconds, 0) : null,
    max_loadgen_cpu_cores: max ? round(max.loadgenCpu / max.seconds, 3) : null,
    max_loadgen_main_thread_cpu_cores: max ? round(max.loadgenMainCpu / max.seconds, 3) : null,
    max_sink_cpu_cores: max ? round(max.sinkCpu / max.seconds, 3) : null,
    max_loadgen_cores_busy: max ? round(max.loadgenCoresBusy / max.seconds, 3) : null,
    max_other_load_loadgen_core: max ? round(max.otherLoadLoadgenCore, 2) : null,
    max_other_load_server_core: max ? round(max.otherLoadServerCore, 2) : null,
    max_failed_requests: max ? max.b.failedRequests - max.a.failedRequests : null,
    max_concurrency: m.concurrency ?? null,
    peak_rss_mb_after_max: m.peakRssAfterMaxMb === undefined ? null : round(m.peakRssAfterMaxMb, 1),
    idle_rss_mb: round(m.idleRssMb, 1),
    load_average: m.loadAverage,
    flags,
  };
}

if (require.main === module) main(process.argv.slice(2)).then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench: ${(err as Error).message}\n`);
    process.exit(1);
  },
);
