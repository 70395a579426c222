// In-process cost of the filter processor's rules on the scenarios' pools, without sockets:
// parseRequest (as the receiver), FilterProcessor.consume, then toRequestBytes (as the exporter).
// Configs alternate A/B in rounds, so a busy machine skews them alike; CPU time per received span.
//   node dist/bench/filter-rules.js [--rounds 6] [--seconds 1.5] [--only NAME] [--filter-only]
import { performance } from 'node:perf_hooks';
import type { Batch } from '../src/pdata/batch';
import { parseRequest } from '../src/pdata/scan';
import { ConfigIssues, Node } from '../src/config/reader';
import { FilterProcessor, parseFilterConfig } from '../src/processors/filter/filter';
import { DEFAULT_POOL, buildPool, keptInstanceIds } from './obi';

const HEALTH_RULE = 'attributes["url.path"] == "/health"';

function processor(config: Record<string, unknown>): FilterProcessor {
  const issues = new ConfigIssues();
  const parsed = parseFilterConfig(new Node(config, 'processors::filter', issues));
  if (issues.errors.length > 0) throw new Error(issues.errors.join('\n'));
  let sink = 0;
  const next = {
    consume: (batch: Batch) => {
      sink += batch.toRequestBytes().length;
      return Promise.resolve();
    },
  };
  const telemetry = { counter: () => ({ inc: () => undefined }) };
  void sink;
  return new FilterProcessor({ id: 'filter', telemetry } as never, parsed, 'traces', next);
}

function main(): void {
  const args = process.argv.slice(2);
  const arg = (name: string, d: number) => (args.includes(name) ? Number(args[args.indexOf(name) + 1]) : d);
  const rounds = arg('--rounds', 6);
  const seconds = arg('--seconds', 1.5);
  const only = args.includes('--only') ? args[args.indexOf('--only') + 1] : undefined;
  const health = buildPool({ ...DEFAULT_POOL, requests: 64, healthShare: 0.1 });
  const keep = [...keptInstanceIds(health.spec)];
  const cases: { name: string; config: Record<string, unknown> }[] = [
    { name: 'no-rule', config: {} },
    { name: 'health-span-rule', config: { traces: { span: [HEALTH_RULE] } } },
    { name: 'keep-list', config: { keep: keep.map((id) => ({ 'service.instance.id': id })) } },
  ].filter((c) => !only || c.name === only);
  const parsed = args.includes('--filter-only') ? health.requests.map((r) => parseRequest('traces', r.body).batch) : undefined;
  const totals = new Map<string, { ns: number; spans: number }>();
  for (let round = 0; round < rounds; round++) {
    for (const c of round % 2 === 0 ? cases : [...cases].reverse()) {
      const p = processor(c.config);
      let spans = 0;
      const t0 = performance.now();
      const cpu0 = process.cpuUsage();
      let i = 0;
      while (performance.now() - t0 < seconds * 1000) {
        // --filter-only: the requests parsed once beforehand, only consume (and the sink) measured.
        const batch = parsed ? parsed[i++ % parsed.length]! : parseRequest('traces', health.requests[i++ % health.requests.length]!.body, (a) => p.mayKeep(a)).batch;
        void p.consume(batch);
        spans += batch.itemCount;
      }
      // CPU time, not wall time: on a shared machine the process is descheduled at random.
      const used = process.cpuUsage(cpu0);
      const ns = (used.user + used.system) * 1000;
      if (round > 0) {
        const t = totals.get(c.name) ?? { ns: 0, spans: 0 };
        t.ns += ns;
        t.spans += spans;
        totals.set(c.name, t);
      }
    }
  }
  for (const [name, t] of totals) console.log(`${name.padEnd(18)} ${(t.ns / t.spans / 1000).toFixed(3)} CPU µs/span (received spans, rounds 2-${rounds})`);
}

main();
