// The issue's tail-sampling row: OBI-shaped load at 20,000 spans/s (two processes per trace, the
// backend's half 5 s after the frontend's), decision_wait 10s, policies errors + latency + 10 %
// probabilistic, through spansieve and through the reference Collector's tail_sampling (v0.160.0,
// scripts/install-peers.sh otelcol; with `batch` behind it), each pinned to core 0, one after the other. Measures the
// server's CPU per offered span and its peak RSS over the run. Prints JSON.
// Run: npx tsc -p tsconfig.json && node dist/bench/tail-sampling.js [seconds]
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { stringify } from 'yaml';
import { types } from '../src/pdata/codec';
import { SPANSIEVE_NODE_FLAGS } from '../src/service/node-flags';
import { cpuBusySeconds, cpuSeconds, freePorts, installCleanup, killAll, peakRssMb, spawnPinned, stopChild, waitForPort } from './proc';
import { createGrpcSink } from './sinks';
import { otelcolBinary, SERVER_CPU } from './systems';
import { BENCH_POLICIES, obiTraceTemplate, withTraceIds } from './tail-sampling-load';

const SPANS_PER_REQUEST = 500;
const REQUESTS_PER_SECOND = 20; // per process: 2 × 20 × 500 = 20,000 spans/s
const LAG_MS = 5000;
const ROOT = path.resolve(__dirname, '..', '..');

const POLICIES = BENCH_POLICIES;





const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });

function post(port: number, body: Buffer): Promise<number> {
  return new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port, path: '/v1/traces', method: 'POST', agent, headers: { 'content-type': 'application/x-protobuf', 'content-length': body.length } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', () => resolve(0));
    req.end(body);
  });
}

export interface Row {
  system: string;
  spansOffered: number;
  spansRefused: number;
  spansKept: number;
  undecodableExports: number;
  incompleteExports: number;
  cpuSeconds: number;
  cpuMicrosPerSpan: number;
  peakRssMiB: number;
  /** Cores' worth of other processes on the server's core over the run (0.2 and above: a shared core, noisy). */
  otherLoadServerCore: number;
}

async function run(system: 'spansieve' | 'collector', dir: string, seconds: number): Promise<Row> {
  let kept = 0;
  let undecodable = 0;
  let incomplete = 0;
  const sink = createGrpcSink((message) => {
    if (message.length > 0 && message.length < 5) return;
    try {
      const decoded = types.ExportTraceServiceRequest.decode(message) as unknown as { resourceSpans: { scopeSpans: { spans: unknown[] }[] }[] };
      for (const rs of decoded.resourceSpans) for (const ss of rs.scopeSpans) kept += ss.spans.length;
    } catch (err) {
      // A call cut short (the exporter's timeout while this process was busy generating load) ends with part of its message.
      if ((err as Error).message.includes('index out of range')) {
        incomplete++;
        return;
      }
      if (undecodable++ === 0) {
        fs.writeFileSync(path.join(os.tmpdir(), `tail-bench-undecodable-${system}.bin`), message);
        console.error(`${system}: undecodable export (${message.length} bytes): ${(err as Error).message}`);
      }
    }
  });
  await new Promise<void>((resolve) => sink.listen(0, '127.0.0.1', resolve));
  const sinkPort = (sink.address() as { port: number }).port;
  const [port] = (await freePorts(1)) as [number];
  const pipeline = { tail_sampling: { decision_wait: '10s', num_traces: 200_000, policies: POLICIES } };
  const exporter = { endpoint: `127.0.0.1:${sinkPort}`, tls: { insecure: true }, compression: 'none', timeout: '30s' };
  const configFile = path.join(dir, `${system}.yaml`);
  const log = fs.openSync(path.join(dir, `${system}.log`), 'w');
  let child;
  if (system === 'spansieve') {
    fs.writeFileSync(configFile, stringify({
      receivers: { otlp: { protocols: { http: { endpoint: `127.0.0.1:${port}` } } } },
      processors: pipeline,
      exporters: { 'otlp/sink': exporter },
      service: { pipelines: { traces: { receivers: ['otlp'], processors: ['tail_sampling'], exporters: ['otlp/sink'] } }, telemetry: { metrics: { level: 'none' }, logs: { level: 'warn' } } },
    }));
    // BENCH_SPANSIEVE_NODE_FLAGS: extra flags for experiments (e.g. --cpu-prof), as bench/run.ts.
    const extra = (process.env.BENCH_SPANSIEVE_NODE_FLAGS ?? '').split(/\s+/).filter(Boolean);
    child = spawnPinned(SERVER_CPU, process.execPath, [...SPANSIEVE_NODE_FLAGS, ...extra, path.join(ROOT, 'dist', 'src', 'cli.js'), '--config', configFile], { stdio: ['ignore', log, log] });
  } else {
    // The Collector forwards each kept trace as its own request: batch behind it, as its docs advise
    // (without it the exporter's queue overflows at this rate and kept traces are dropped).
    fs.writeFileSync(configFile, stringify({
      receivers: { otlp: { protocols: { http: { endpoint: `127.0.0.1:${port}` } } } },
      processors: { ...pipeline, batch: {} },
      exporters: { 'otlp_grpc/sink': exporter },
      service: { pipelines: { traces: { receivers: ['otlp'], processors: ['tail_sampling', 'batch'], exporters: ['otlp_grpc/sink'] } }, telemetry: { metrics: { level: 'none' }, logs: { level: 'warn' } } },
    }));
    child = spawnPinned(SERVER_CPU, otelcolBinary(), ['--config', configFile], { stdio: ['ignore', log, log] });
  }
  const pid = child.pid!;
  await waitForPort(port, 60_000, () => {
    if (child.exitCode !== null) throw new Error(`${system} exited: ${fs.readFileSync(path.join(dir, `${system}.log`), 'utf8')}`);
  });
  const front = obiTraceTemplate('frontend', 100, true, SPANS_PER_REQUEST);
  const back = obiTraceTemplate('backend', 200, false, SPANS_PER_REQUEST);
  const cpuBefore = cpuSeconds(pid);
  const coreBefore = cpuBusySeconds(SERVER_CPU);
  const wallBefore = Date.now();
  let offered = 0;
  let refused = 0;
  const sends: Promise<void>[] = [];
  const started = Date.now();
  const total = seconds * REQUESTS_PER_SECOND;
  const lag = (LAG_MS / 1000) * REQUESTS_PER_SECOND;
  for (let k = 0; k < total + lag; k++) {
    const due = started + (k * 1000) / REQUESTS_PER_SECOND;
    const wait = due - Date.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    const sendOne = (body: Buffer) => {
      offered += SPANS_PER_REQUEST;
      sends.push(post(port, body).then((status) => {
        if (status !== 200) refused += SPANS_PER_REQUEST;
      }));
    };
    if (k < total) sendOne(withTraceIds(front, k * SPANS_PER_REQUEST));
    if (k >= lag) sendOne(withTraceIds(back, (k - lag) * SPANS_PER_REQUEST));
  }
  await Promise.all(sends);
  // Every trace decided: decision_wait after the last one's first span, and the export behind it.
  await new Promise((resolve) => setTimeout(resolve, 12_000));
  const cpu = cpuSeconds(pid) - cpuBefore;
  const otherLoad = Math.max(0, (cpuBusySeconds(SERVER_CPU) - coreBefore - cpu) / ((Date.now() - wallBefore) / 1000));
  const rss = peakRssMb(pid);
  await stopChild(child, 10_000);
  fs.closeSync(log);
  await new Promise<void>((resolve) => sink.close(() => resolve()));
  return {
    system,
    spansOffered: offered,
    spansRefused: refused,
    spansKept: kept,
    undecodableExports: undecodable,
    incompleteExports: incomplete,
    cpuSeconds: Math.round(cpu * 100) / 100,
    cpuMicrosPerSpan: Math.round((cpu / offered) * 1e6 * 100) / 100,
    peakRssMiB: Math.round(rss),
    otherLoadServerCore: Math.round(otherLoad * 100) / 100,
  };
}

export interface TailSamplingResult {
  load: { spansPerSecond: number; seconds: number; backendLagMs: number; decisionWait: string; policies: string[] };
  rows: Row[];
  cpuRatio: number;
  rssRatio: number;
}

/** spansieve then the Collector, `seconds` of load each (plus the backend lag and the decisions after it). */
export async function measureTailSampling(seconds: number, systems: readonly ('spansieve' | 'collector')[] = ['spansieve', 'collector']): Promise<TailSamplingResult> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spansieve-bench-tail-'));
  try {
    const rows: Row[] = [];
    for (const system of systems) rows.push(await run(system, dir, seconds));
    const s = rows.find((r) => r.system === 'spansieve');
    const c = rows.find((r) => r.system === 'collector');
    return {
      load: { spansPerSecond: 2 * REQUESTS_PER_SECOND * SPANS_PER_REQUEST, seconds, backendLagMs: LAG_MS, decisionWait: '10s', policies: POLICIES.map((p) => p.name) },
      rows,
      cpuRatio: s && c ? Math.round((s.cpuMicrosPerSpan / c.cpuMicrosPerSpan) * 100) / 100 : NaN,
      rssRatio: s && c ? Math.round((s.peakRssMiB / c.peakRssMiB) * 100) / 100 : NaN,
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  installCleanup(() => killAll());
  // Optional second argument: the systems to run, e.g. `spansieve` alone (profiling).
  const systems = (process.argv[3] ?? 'spansieve,collector').split(',') as ('spansieve' | 'collector')[];
  console.log(JSON.stringify(await measureTailSampling(Number(process.argv[2] ?? 60), systems), null, 2));
  agent.destroy();
}

if (require.main === module) void main();
