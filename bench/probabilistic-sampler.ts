// The probabilistic_sampler row: spansieve against the reference Collector (v0.160.0, the only
// build with probabilistic_sampler), both pinned to core 0, each run twice on the same OBI-shaped
// load: filter only, then filter + probabilistic_sampler at 10 %. Reports the server's CPU per
// received span and peak RSS for each, and the sampler's added CPU per span.
// Run: npx tsc -p tsconfig.json && node dist/bench/probabilistic-sampler.js [--rate N] [--window S] [--mode M]
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DEFAULT_POOL, buildPool, keptInstanceIds } from './obi';
import { measureFixedRate } from './fixed-rate';
import { collectorConfig, spansieveConfig } from './systems';

export interface Options {
  rate: number;
  burstS: number;
  warmupS: number;
  windowS: number;
  mode: string;
}

function parseOptions(argv: readonly string[]): Options {
  const options: Options = { rate: 20_000, burstS: 4, warmupS: 8, windowS: 20, mode: 'hash_seed' };
  for (let i = 0; i < argv.length; i += 2) {
    const value = argv[i + 1] ?? '';
    if (argv[i] === '--rate') options.rate = Number(value);
    else if (argv[i] === '--window') options.windowS = Number(value);
    else if (argv[i] === '--warmup') options.warmupS = Number(value);
    else if (argv[i] === '--burst') options.burstS = Number(value);
    else if (argv[i] === '--mode') options.mode = value;
    else throw new Error(`usage: node dist/bench/probabilistic-sampler.js [--rate SPANS_PER_S] [--window S] [--burst S] [--warmup S] [--mode hash_seed|proportional|equalizing]`);
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

export interface Row {
  system: string;
  sampler: boolean;
  spansPerS: number;
  cpuUsPerSpan: number;
  peakRssMb: number;
  /** Bytes the sink received per span sent: what the sampler saves the exporter. */
  forwardedBytesPerSpan: number;
  otherLoadServerCore: number;
}

async function measure(system: 'spansieve' | 'collector-ref', sampler: Record<string, unknown> | undefined, options: Options, workDir: string): Promise<Row> {
  const pool = buildPool({ ...DEFAULT_POOL, requests: 64 });
  const keep = keptInstanceIds(pool.spec);
  const r = await measureFixedRate({
    label: `${system}${sampler ? '-sampler' : ''}`,
    system,
    config: (grpcPort, httpPort, sinkPort) =>
      withSampler(system === 'spansieve' ? spansieveConfig(grpcPort, httpPort, sinkPort, keep) : collectorConfig(grpcPort, httpPort, sinkPort, keep), sampler),
    pool,
    rate: options.rate,
    burstS: options.burstS,
    warmupS: options.warmupS,
    windowS: options.windowS,
    workDir,
  });
  if (r.failedRequests > 0) process.stderr.write(`${system}: ${r.failedRequests} requests failed\n`);
  return { system, sampler: sampler !== undefined, spansPerS: r.spansPerS, cpuUsPerSpan: r.cpuUsPerSpan, peakRssMb: r.peakRssMb, forwardedBytesPerSpan: r.forwardedBytesPerSpan, otherLoadServerCore: r.otherLoadServerCore };
}

/** Both systems, sampler off then on (10 %, `mode`); the rows in that order. */
export async function measureProbabilisticSampler(options: Options, onRow: (row: Row) => void = () => undefined): Promise<Row[]> {
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'spansieve-bench-sampler-'));
  const sampler = { sampling_percentage: 10, ...(options.mode === 'hash_seed' ? {} : { mode: options.mode }) };
  const rows: Row[] = [];
  try {
    for (const system of ['spansieve', 'collector-ref'] as const) {
      for (const withIt of [undefined, sampler]) {
        const row = await measure(system, withIt, options, workDir);
        onRow(row);
        rows.push(row);
      }
    }
  } finally {
    fs.rmSync(workDir, { recursive: true, force: true });
  }
  return rows;
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const rows = await measureProbabilisticSampler(options, (row) =>
    process.stdout.write(`${JSON.stringify({ bench: 'probabilistic_sampler', mode: options.mode, rate: options.rate, ...row })}\n`),
  );
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

if (require.main === module) {
  main().catch((err: unknown) => {
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  });
}
