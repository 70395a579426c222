// One system pinned to core 0 under OTLP/HTTP load from a pool at a fixed rate, with a config the
// caller writes (the probabilistic_sampler and filter scenarios): CPU per sent span, peak RSS over
// the window, and what reached the sink (bytes and spans, counted on the wire).
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { stringify } from 'yaml';
import { SPANSIEVE_NODE_FLAGS } from '../src/service/node-flags';
import type { Pool } from './obi';
import { cpuBusySeconds, cpuSplitSeconds, threadCpuSeconds, freePorts, peakRssMb, repin, resetPeakRss, spawnPinned, stopChild, waitForPort } from './proc';
import { createGrpcSink } from './sinks';
import { LOADGEN_CPU, SERVER_CPU, otelcolBinary } from './systems';

const ROOT = path.resolve(__dirname, '..', '..');

export interface FixedRateOptions {
  readonly label: string;
  /** spansieve, or the reference Collector (v0.160.0: filter, tail_sampling, probabilistic_sampler). */
  readonly system: 'spansieve' | 'collector-ref';
  readonly config: (grpcPort: number, httpPort: number, sinkGrpcPort: number) => Record<string, unknown>;
  readonly pool: Pool;
  readonly rate: number;
  /**
   * Seconds of closed-loop load (two requests in flight) before the fixed rate, as in run.ts: V8
   * optimizes the once-per-request functions only after 1,000-2,000 calls, 12-20 s at the fixed
   * rate, so without it the window measures spansieve's start-up. Both systems get the same.
   */
  readonly burstS: number;
  readonly warmupS: number;
  readonly windowS: number;
  readonly workDir: string;
}

export interface FixedRateResult {
  readonly spansPerS: number;
  readonly cpuUsPerSpan: number;
  readonly peakRssMb: number;
  readonly forwardedBytesPerSpan: number;
  /** Spans the sink received ÷ spans acknowledged, over the window. */
  readonly forwardedRatio: number;
  readonly failedRequests: number;
  /** Cores' worth of other processes on the server's core during the window (0.2 and above: a shared core, noisy). */
  readonly otherLoadServerCore: number;
  /** CPU µs per span by thread name over the window ("main", V8's and libuv's helpers). */
  readonly threadCpuUsPerSpan: Record<string, number>;
  /** The part of cpuUsPerSpan spent in the kernel (stime). */
  readonly systemCpuUsPerSpan: number;
}

/** Spans in an ExportTraceServiceRequest, walking only the length-delimited fields down to spans. */
export function countSpans(buf: Buffer): number {
  let spans = 0;
  const walk = (from: number, to: number, depth: number): void => {
    let i = from;
    while (i < to) {
      let key = 0;
      let shift = 0;
      let b: number;
      do {
        b = buf[i++]!;
        key += (b & 0x7f) * 2 ** shift;
        shift += 7;
      } while (b & 0x80 && i < to);
      const wire = key % 8;
      const field = Math.floor(key / 8);
      if (wire === 0) {
        while (buf[i++]! & 0x80 && i < to);
      } else if (wire === 1) i += 8;
      else if (wire === 5) i += 4;
      else if (wire === 2) {
        let len = 0;
        shift = 0;
        do {
          b = buf[i++]!;
          len += (b & 0x7f) * 2 ** shift;
          shift += 7;
        } while (b & 0x80 && i < to);
        // request.resource_spans(1) -> scope_spans(2) -> spans(2)
        if (depth === 0 && field === 1) walk(i, i + len, 1);
        else if (depth === 1 && field === 2) walk(i, i + len, 2);
        else if (depth === 2 && field === 2) spans++;
        i += len;
      } else return; // groups: not in OTLP
    }
  };
  walk(0, buf.length, 0);
  return spans;
}

/** BENCH_SPANSIEVE_NODE_FLAGS adds node flags (as in run.ts); BENCH_PROFILE=1 adds --cpu-prof under bench/results/profiles. */
function experimentFlags(label: string): string[] {
  const extra = (process.env.BENCH_SPANSIEVE_NODE_FLAGS ?? '').split(/\s+/).filter(Boolean);
  const dir = path.join(ROOT, 'bench', 'results', 'profiles');
  return process.env.BENCH_PROFILE === '1' ? [...extra, '--cpu-prof', `--cpu-prof-dir=${dir}`, `--cpu-prof-name=${label}.cpuprofile`] : extra;
}

export async function measureFixedRate(o: FixedRateOptions): Promise<FixedRateResult> {
  // The load and the sink run in this process: off the server's core, or they are measured as its
  // other load (0.2-0.4 of it before) and take turns with the server.
  repin(process.pid, [LOADGEN_CPU]);
  try {
    return await measurePinned(o);
  } finally {
    repin(process.pid, os.cpus().map((_, i) => i));
  }
}

async function measurePinned(o: FixedRateOptions): Promise<FixedRateResult> {
  const { pool, label, workDir } = o;
  let forwardedBytes = 0;
  let forwardedSpans = 0;
  const sink = createGrpcSink((message) => {
    forwardedBytes += message.length;
    forwardedSpans += countSpans(message);
  });
  await new Promise<void>((resolve) => sink.listen(0, '127.0.0.1', resolve));
  const sinkPort = (sink.address() as { port: number }).port;
  const [grpcPort, httpPort] = (await freePorts(2)) as [number, number];
  const configFile = path.join(workDir, `${label}.yaml`);
  fs.writeFileSync(configFile, stringify(o.config(grpcPort, httpPort, sinkPort), { lineWidth: 0 }));
  const log = fs.openSync(path.join(workDir, `${label}.log`), 'w');
  const child =
    o.system === 'spansieve'
      ? spawnPinned(SERVER_CPU, process.execPath, [...SPANSIEVE_NODE_FLAGS, ...experimentFlags(label), path.join(ROOT, 'dist', 'src', 'cli.js'), '--config', configFile], { stdio: ['ignore', log, log] })
      : spawnPinned(SERVER_CPU, otelcolBinary(), ['--config', configFile], { stdio: ['ignore', log, log] });
  fs.closeSync(log);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  try {
    await waitForPort(httpPort, 60_000, () => {
      if (child.exitCode !== null) throw new Error(`${label} exited: ${fs.readFileSync(path.join(workDir, `${label}.log`), 'utf8')}`);
    });
    let sentSpans = 0;
    let next = 0;
    let failures = 0;
    const send = (): Promise<void> => {
      const request = pool.requests[next++ % pool.requests.length]!;
      return new Promise((resolve) => {
        const req = http.request(
          { host: '127.0.0.1', port: httpPort, path: '/v1/traces', method: 'POST', agent, headers: { 'content-type': 'application/x-protobuf' } },
          (res) => {
            res.resume();
            res.on('end', () => {
              if (res.statusCode === 200) sentSpans += request.spans;
              else failures++;
              resolve();
            });
          },
        );
        req.on('error', () => {
          failures++;
          resolve();
        });
        req.end(request.body);
      });
    };
    const burst = async (seconds: number): Promise<void> => {
      const end = performance.now() + seconds * 1000;
      const loop = async (): Promise<void> => {
        while (performance.now() < end) await send();
      };
      await Promise.all([loop(), loop()]);
    };
    const spansPerRequest = pool.requests[0]!.spans;
    const intervalMs = (1000 * spansPerRequest) / o.rate;
    const run = async (seconds: number): Promise<void> => {
      const start = performance.now();
      const inflight = new Set<Promise<void>>();
      for (let i = 0; performance.now() - start < seconds * 1000; i++) {
        const due = start + i * intervalMs;
        const wait = due - performance.now();
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        if (inflight.size >= 64) await Promise.race(inflight);
        const p = send().finally(() => inflight.delete(p));
        inflight.add(p);
      }
      await Promise.all(inflight);
    };
    await burst(o.burstS);
    await run(o.warmupS);
    resetPeakRss(child.pid!);
    const cpu0 = cpuSplitSeconds(child.pid!);
    const threads0 = threadCpuSeconds(child.pid!);
    const core0 = cpuBusySeconds(SERVER_CPU);
    const spans0 = sentSpans;
    const failures0 = failures;
    const t0 = performance.now();
    await run(o.windowS);
    const elapsedS = (performance.now() - t0) / 1000;
    const spans = sentSpans - spans0;
    const cpu1 = cpuSplitSeconds(child.pid!);
    const systemCpu = cpu1.system - cpu0.system;
    const cpu = cpu1.user - cpu0.user + systemCpu;
    const threadCpuUsPerSpan: Record<string, number> = {};
    for (const [name, seconds] of threadCpuSeconds(child.pid!)) {
      const used = seconds - (threads0.get(name) ?? 0);
      if (used > 0) threadCpuUsPerSpan[name] = Math.round((used / spans) * 1e6 * 100) / 100;
    }
    const otherLoad = Math.max(0, (cpuBusySeconds(SERVER_CPU) - core0 - cpu) / elapsedS);
    const rss = peakRssMb(child.pid!);
    // Forwarded counts are taken after the exporters drained (stopChild waits for shutdown), so
    // they cover warm-up + window against everything sent.
    await stopChild(child, 10_000);
    return {
      spansPerS: Math.round(spans / elapsedS),
      cpuUsPerSpan: Math.round((cpu / spans) * 1e6 * 100) / 100,
      systemCpuUsPerSpan: Math.round((systemCpu / spans) * 1e6 * 100) / 100,
      peakRssMb: Math.round(rss),
      forwardedBytesPerSpan: Math.round(forwardedBytes / Math.max(1, sentSpans)),
      forwardedRatio: Math.round((forwardedSpans / Math.max(1, sentSpans)) * 1000) / 1000,
      failedRequests: failures - failures0,
      otherLoadServerCore: Math.round(otherLoad * 100) / 100,
      threadCpuUsPerSpan,
    };
  } finally {
    agent.destroy();
    await stopChild(child, 10_000);
    sink.close();
  }
}
