// The probabilistic_sampler row: spansieve against the reference Collector (v0.160.0, the only
// build with probabilistic_sampler), both pinned to core 0, each run twice on the same OBI-shaped
// load: filter only, then filter + probabilistic_sampler at 10 %. Reports the server's CPU per
// received span and peak RSS for each, and the sampler's added CPU per span.
// Run: npx tsc -p tsconfig.json && node dist/bench/probabilistic-sampler.js [--rate N] [--window S] [--mode M]
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { stringify } from 'yaml';
import { SPANSIEVE_NODE_FLAGS } from '../src/service/node-flags';
import { DEFAULT_POOL, buildPool, keptInstanceIds } from './obi';
import { cpuSeconds, freePorts, peakRssMb, resetPeakRss, spawnPinned, stopChild, waitForPort } from './proc';
import { createGrpcSink } from './sinks';
import { SERVER_CPU, collectorConfig, otelcolBinary, spansieveConfig } from './systems';

const ROOT = path.resolve(__dirname, '..', '..');

interface Options {
  rate: number;
  warmupS: number;
  windowS: number;
  mode: string;
}

function parseOptions(argv: readonly string[]): Options {
  const options: Options = { rate: 20_000, warmupS: 8, windowS: 20, mode: 'hash_seed' };
  for (let i = 0; i < argv.length; i += 2) {
    const value = argv[i + 1] ?? '';
    if (argv[i] === '--rate') options.rate = Number(value);
    else if (argv[i] === '--window') options.windowS = Number(value);
    else if (argv[i] === '--warmup') options.warmupS = Number(value);
    else if (argv[i] === '--mode') options.mode = value;
    else throw new Error(`usage: node dist/bench/probabilistic-sampler.js [--rate SPANS_PER_S] [--window S] [--warmup S] [--mode hash_seed|proportional|equalizing]`);
  }
  return options;
}

/** The benchmark configs of both systems, with the sampler after the filter when asked for. */
function withSampler(config: Record<string, unknown>, sampler: Record<string, unknown> | undefined): Record<string, unknown> {
  if (!sampler) return config;
  const processors = { ...(config.processors as Record<string, unknown>), probabilistic_sampler: sampler };
  const service = config.service as { pipelines: { traces: { processors: string[] } } };
  const traces = { ...service.pipelines.traces, processors: [...service.pipelines.traces.processors, 'probabilistic_sampler'] };
  return { ...config, processors, service: { ...service, pipelines: { traces } } };
}

interface Row {
  system: string;
  sampler: boolean;
  spansPerS: number;
  cpuUsPerSpan: number;
  peakRssMb: number;
  /** Bytes the sink received per span sent: what the sampler saves the exporter. */
  forwardedBytesPerSpan: number;
}

async function measure(system: 'spansieve' | 'collector-ref', sampler: Record<string, unknown> | undefined, options: Options, workDir: string): Promise<Row> {
  const pool = buildPool({ ...DEFAULT_POOL, requests: 64 });
  let forwarded = 0;
  const sink = createGrpcSink((message) => {
    forwarded += message.length;
  });
  await new Promise<void>((resolve) => sink.listen(0, '127.0.0.1', resolve));
  const sinkPort = (sink.address() as { port: number }).port;
  const [grpcPort, httpPort] = (await freePorts(2)) as [number, number];
  const keep = keptInstanceIds(pool.spec);
  const label = `${system}${sampler ? '-sampler' : ''}`;
  const configFile = path.join(workDir, `${label}.yaml`);
  const base = system === 'spansieve' ? spansieveConfig(grpcPort, httpPort, sinkPort, keep) : collectorConfig(grpcPort, httpPort, sinkPort, keep);
  fs.writeFileSync(configFile, stringify(withSampler(base, sampler), { lineWidth: 0 }));
  const log = fs.openSync(path.join(workDir, `${label}.log`), 'w');
  const child =
    system === 'spansieve'
      ? spawnPinned(SERVER_CPU, process.execPath, [...SPANSIEVE_NODE_FLAGS, path.join(ROOT, 'dist', 'src', 'cli.js'), '--config', configFile], { stdio: ['ignore', log, log] })
      : spawnPinned(SERVER_CPU, otelcolBinary(), ['--config', configFile], { stdio: ['ignore', log, log] });
  fs.closeSync(log);
  try {
    await waitForPort(httpPort, 60_000, () => {
      if (child.exitCode !== null) throw new Error(`${label} exited: ${fs.readFileSync(path.join(workDir, `${label}.log`), 'utf8')}`);
    });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
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
    const spansPerRequest = pool.requests[0]!.spans;
    const intervalMs = (1000 * spansPerRequest) / options.rate;
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
    await run(options.warmupS);
    resetPeakRss(child.pid!);
    const cpu0 = cpuSeconds(child.pid!);
    const spans0 = sentSpans;
    const forwarded0 = forwarded;
    const t0 = performance.now();
    await run(options.windowS);
    const elapsedS = (performance.now() - t0) / 1000;
    const spans = sentSpans - spans0;
    const cpu = cpuSeconds(child.pid!) - cpu0;
    agent.destroy();
    if (failures > 0) process.stderr.write(`${label}: ${failures} requests failed\n`);
    return {
      system,
      sampler: sampler !== undefined,
      spansPerS: Math.round(spans / elapsedS),
      cpuUsPerSpan: Math.round((cpu / spans) * 1e6 * 100) / 100,
      peakRssMb: Math.round(peakRssMb(child.pid!)),
      forwardedBytesPerSpan: Math.round((forwarded - forwarded0) / Math.max(1, spans)),
    };
  } finally {
    await stopChild(child, 10_000);
    sink.close();
  }
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'spansieve-bench-sampler-'));
  const sampler = { sampling_percentage: 10, ...(options.mode === 'hash_seed' ? {} : { mode: options.mode }) };
  const rows: Row[] = [];
  try {
    for (const system of ['spansieve', 'collector-ref'] as const) {
      for (const withIt of [undefined, sampler]) {
        const row = await measure(system, withIt, options, workDir);
        process.stdout.write(`${JSON.stringify({ bench: 'probabilistic_sampler', mode: options.mode, rate: options.rate, ...row })}\n`);
        rows.push(row);
      }
    }
  } finally {
    fs.rmSync(workDir, { recursive: true, force: true });
  }
  const added = (system: string) => {
    const off = rows.find((r) => r.system === system && !r.sampler)!;
    const on = rows.find((r) => r.system === system && r.sampler)!;
    return Math.round((on.cpuUsPerSpan - off.cpuUsPerSpan) * 100) / 100;
  };
  const lines = [
    `| system | sampler (${options.mode}, 10 %) | spans/s | CPU µs per span | peak RSS MiB | bytes forwarded per span |`,
    '|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.system} | ${r.sampler ? 'on' : 'off'} | ${r.spansPerS} | ${r.cpuUsPerSpan} | ${r.peakRssMb} | ${r.forwardedBytesPerSpan} |`),
    '',
    // Dropping 90 % also saves export work, so "added" may be negative.
    `CPU per span, sampler on minus off: spansieve ${added('spansieve')} µs, the Collector ${added('collector-ref')} µs`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
