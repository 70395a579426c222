// CPU of the probabilistic_sampler processor alone on the harness's OBI-shaped pool (the requests
// the probabilistic-sampler scenario sends), pre-parsed, as the keep filter hands them on (only the
// kept resources). Prints JSON: CPU µs per span received, best of the passes.
// Run: npx tsc -p tsconfig.json && node --max-semi-space-size=2 --initial-heap-size=32 dist/bench/probabilistic-sampler-cpu.js [percent] [mode] [passes]
import pino from 'pino';
import type { Consumer } from '../src/component/component';
import { ConfigIssues, Node } from '../src/config/reader';
import type { Batch } from '../src/pdata/batch';
import { parseRequest } from '../src/pdata/scan';
import { parseProbabilisticSamplerConfig } from '../src/processors/probabilisticsampler/config';
import { ProbabilisticSamplerProcessor } from '../src/processors/probabilisticsampler/probabilistic-sampler';
import { SelfTelemetry } from '../src/service/telemetry';
import { DEFAULT_POOL, buildPool } from './obi';

const PERCENT = Number(process.argv[2] ?? 10);
const MODE = process.argv[3] ?? 'hash_seed';
const PASSES = Number(process.argv[4] ?? 10);

async function main(): Promise<void> {
  const pool = buildPool({ ...DEFAULT_POOL, requests: 64 });
  const issues = new ConfigIssues();
  const config = parseProbabilisticSamplerConfig(new Node({ sampling_percentage: PERCENT, mode: MODE }, 'probabilistic_sampler', issues));
  if (issues.errors.length > 0) throw new Error(issues.errors.join('\n'));
  let keptSpans = 0;
  const sink: Consumer = {
    consume: async (batch) => {
      keptSpans += batch.itemCount;
    },
  };
  const processor = new ProbabilisticSamplerProcessor({ id: 'probabilistic_sampler', logger: pino({ level: 'silent' }), telemetry: new SelfTelemetry() }, config, sink);
  // What the keep filter passes on: the kept resources of each request.
  const batches: Batch[] = pool.requests.map((r) => {
    const batch = parseRequest('traces', r.body).batch;
    return batch.withResources(
      batch.resources.filter((b) => {
        const id = b.attributes.get('service.instance.id');
        return typeof id === 'string' && pool.keepIds.has(id);
      }),
    );
  });
  const spans = batches.reduce((n, b) => n + b.itemCount, 0);
  const results: number[] = [];
  for (let pass = 0; pass < PASSES; pass++) {
    const before = process.cpuUsage();
    for (let k = 0; k < 10; k++) for (const b of batches) await processor.consume(b);
    const used = process.cpuUsage(before);
    results.push(Math.round(((used.user + used.system) / (spans * 10)) * 100) / 100);
  }
  console.log(JSON.stringify({ percent: PERCENT, mode: MODE, spansPerPass: spans * 10, keptShare: Math.round((keptSpans / (spans * 10 * PASSES)) * 1000) / 1000, cpuMicrosPerSpan: results, best: Math.min(...results) }));
}

void main();
