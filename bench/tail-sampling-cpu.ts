// CPU of the tail_sampling processor alone (no receiver, no exporter) on the tail-sampling bench's
// load: 500-span OBI-shaped requests from two processes, the backend's half 5 s after the frontend's,
// 20 requests per process per simulated second, decision_wait 10 s, num_traces 200,000, policies
// errors + latency + 10 % probabilistic. The clock is simulated (ticks every simulated second), so
// the run takes only the CPU it needs. Prints JSON: CPU µs per span (process.cpuUsage around the
// consume/tick calls only), GC time, kept spans.
// Run: npx tsc -p tsconfig.json && node --max-semi-space-size=2 --initial-heap-size=32 dist/bench/tail-sampling-cpu.js [seconds] [repeats]
import { PerformanceObserver } from 'node:perf_hooks';
import type { Batch } from '../src/pdata/batch';
import { obiTraceTemplate, offer, processorUnderTest } from './tail-sampling-load';

const SECONDS = Number(process.argv[2] ?? 60);
const REPEATS = Number(process.argv[3] ?? 3);
const PER_REQUEST = 500;
const REQUESTS_PER_SECOND = 20;
const LAG_REQUESTS = 5 * REQUESTS_PER_SECOND;





interface Result {
  spans: number;
  cpuMicrosPerSpan: number;
  gcMillis: number;
  keptSpans: number;
}

async function once(): Promise<Result> {
  let now = 0;
  const { processor, keptSpans: kept } = processorUnderTest(200_000, () => now);
  const front = obiTraceTemplate('frontend', 100, true, PER_REQUEST);
  const back = obiTraceTemplate('backend', 200, false, PER_REQUEST);
  let gc = 0;
  const observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) gc += e.duration;
  });
  observer.observe({ entryTypes: ['gc'] });
  let cpu = 0;
  let spans = 0;
  const total = SECONDS * REQUESTS_PER_SECOND;
  for (let k = 0; k < total + LAG_REQUESTS + 12 * REQUESTS_PER_SECOND; k++) {
    const batches: Batch[] = [];
    if (k < total) batches.push(offer(front, k * PER_REQUEST));
    if (k >= LAG_REQUESTS && k - LAG_REQUESTS < total) batches.push(offer(back, (k - LAG_REQUESTS) * PER_REQUEST));
    const before = process.cpuUsage();
    for (const b of batches) await processor.consume(b);
    now += 1000 / REQUESTS_PER_SECOND;
    if (now % 1000 === 0) processor.tick();
    const used = process.cpuUsage(before);
    cpu += used.user + used.system;
    spans += batches.length * PER_REQUEST;
    // Let the sink's promises and the GC observer run, as between requests.
    await new Promise((resolve) => setImmediate(resolve));
  }
  await processor.shutdown();
  observer.disconnect();
  return { spans, cpuMicrosPerSpan: Math.round((cpu / spans) * 100) / 100, gcMillis: Math.round(gc), keptSpans: kept() };
}

async function main(): Promise<void> {
  const runs: Result[] = [];
  for (let i = 0; i < REPEATS; i++) runs.push(await once());
  const best = Math.min(...runs.map((r) => r.cpuMicrosPerSpan));
  console.log(JSON.stringify({ seconds: SECONDS, runs, bestCpuMicrosPerSpan: best }));
}

void main();
