// In-process CPU per request of the pipeline and exporter side at a shape's request mix, without
// sockets: parseRequest (as the receiver), Inventory.observe per resource, the keep-list filter
// (with its inventory decisions), the otlp exporter's helper (queue, attempt, timeout) and a push
// that uses its signal as the gRPC client does. Two builds side by side (e.g. a copy of the old
// dist/ against this one), alternating in rounds so a busy machine skews them alike.
// --part inventory: only Inventory.observe and the decisions a filter records, on requests parsed
// beforehand; --part helper: only the exporter helper and the push (parsed beforehand, no filter).
//   node dist/bench/pipeline-cpu.js [--shape default] [--part all|inventory|helper] [--rounds 8] [--seconds 1.5] [--builds OLD_DIST,NEW_DIST]
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Attributes } from '../src/pdata/attributes';
import type { Batch } from '../src/pdata/batch';
import { buildPool, keptInstanceIds } from './obi';
import { shapeNamed } from './shapes';

/** A build's modules, typed as this build's (the older build is assumed to have the same surface). */
function load(root: string) {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- modules of another build, loaded by path
  const r = <T>(p: string): T => require(path.join(root, 'src', p)) as T;
  const filter = r<typeof import('../src/processors/filter/filter')>('processors/filter/filter.js');
  const helper = r<typeof import('../src/exporters/exporterhelper/exporterhelper')>('exporters/exporterhelper/exporterhelper.js');
  return {
    root,
    parseRequest: r<typeof import('../src/pdata/scan')>('pdata/scan.js').parseRequest,
    Inventory: r<typeof import('../src/service/inventory')>('service/inventory.js').Inventory,
    FilterProcessor: filter.FilterProcessor,
    parseFilterConfig: filter.parseFilterConfig,
    reader: r<typeof import('../src/config/reader')>('config/reader.js'),
    ExporterHelper: helper.ExporterHelper,
    compactedBatchRequests: helper.compactedBatchRequests,
  };
}

type Build = ReturnType<typeof load>;

const silent = { warn: () => undefined, info: () => undefined, error: () => undefined, debug: () => undefined };
const telemetry = {
  counter: () => ({ inc: () => undefined }),
  signalCounter: () => ({ inc: () => undefined }),
  gauge: () => ({ set: () => undefined }),
  histogram: () => ({ observe: () => undefined }),
};

interface Pipeline {
  consume(body: Buffer): Promise<void>;
}

type Part = 'all' | 'inventory' | 'helper';

function pipeline(b: Build, keep: readonly string[], part: Part): Pipeline {
  const issues = new b.reader.ConfigIssues();
  const filterConfig = b.parseFilterConfig(new b.reader.Node({ keep: keep.map((id) => ({ 'service.instance.id': id })) }, 'processors::filter/keep', issues));
  if (issues.errors.length > 0) throw new Error(issues.errors.join('\n'));
  const inventory = new b.Inventory();
  const helper = new b.ExporterHelper(
    { id: 'otlp/sink', logger: silent, telemetry } as never,
    {
      timeout: { timeoutMs: 5000 },
      retry: { enabled: true, initialIntervalMs: 5000, maxIntervalMs: 30_000, maxElapsedTimeMs: 300_000, multiplier: 1.5, randomizationFactor: 0.5 },
      queue: { enabled: true, numConsumers: 10, queueSize: 1000, sizer: 'requests' },
    },
    // As the gRPC client: a listener for the attempt's abort, removed when the answer comes (a turn later).
    (batch, signal) => {
      batch.toRequestBytes();
      const onAbort = () => undefined;
      signal.addEventListener('abort', onAbort, { once: true });
      return new Promise<void>((resolve) =>
        setImmediate(() => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        }),
      );
    },
    b.compactedBatchRequests,
  );
  const filter = new b.FilterProcessor({ id: 'filter/keep', logger: silent, telemetry, inventory } as never, filterConfig, 'traces', helper);
  const mayKeep = (a: Attributes) => filter.mayKeep(a);
  const parsed = new Map<Buffer, Batch>();
  const parsedOnce = (body: Buffer): Batch => {
    let batch = parsed.get(body);
    if (!batch) parsed.set(body, (batch = b.parseRequest('traces', body, mayKeep).batch));
    return batch;
  };
  if (part === 'inventory') {
    return {
      consume(body: Buffer) {
        const batch = parsedOnce(body);
        for (const block of batch.resources) inventory.observe(block, 'traces');
        for (const block of batch.resources) inventory.decide(block.attributes, block.itemCount % 2 === 0, null, 'filter/keep', block.itemCount);
        return Promise.resolve();
      },
    };
  }
  if (part === 'helper') return { consume: (body: Buffer) => helper.consume(parsedOnce(body)) };
  return {
    async consume(body: Buffer) {
      const { batch } = b.parseRequest('traces', body, mayKeep);
      for (const block of batch.resources) inventory.observe(block, 'traces');
      await filter.consume(batch);
    },
  };
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const arg = (name: string, d: string) => (args.includes(name) ? args[args.indexOf(name) + 1]! : d);
  const rounds = Number(arg('--rounds', '8'));
  const seconds = Number(arg('--seconds', '1.5'));
  const shape = shapeNamed(arg('--shape', 'default'));
  const part = arg('--part', 'all') as Part;
  if (!['all', 'inventory', 'helper'].includes(part)) throw new Error('--part: all, inventory or helper');
  const builds = arg('--builds', path.join(__dirname, '..')).split(',').map(load);
  const pool = buildPool(shape.pool);
  const keep = keptInstanceIds(shape.pool);
  const totals = builds.map(() => ({ ns: 0, requests: 0, spans: 0 }));
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? builds.map((_, i) => i) : builds.map((_, i) => builds.length - 1 - i);
    for (const i of order) {
      const p = pipeline(builds[i]!, keep, part);
      let requests = 0;
      let spans = 0;
      const t0 = performance.now();
      const cpu0 = process.cpuUsage();
      while (performance.now() - t0 < seconds * 1000) {
        const request = pool.requests[requests % pool.requests.length]!;
        await p.consume(request.body);
        // A turn per request, as requests arriving apart: the exporter's attempts end between them.
        await new Promise((resolve) => setImmediate(resolve));
        requests++;
        spans += request.spans;
      }
      await new Promise((resolve) => setTimeout(resolve, 5));
      const used = process.cpuUsage(cpu0);
      if (round > 0) {
        totals[i]!.ns += (used.user + used.system) * 1000;
        totals[i]!.requests += requests;
        totals[i]!.spans += spans;
      }
    }
  }
  for (const [i, t] of totals.entries()) {
    console.log(`${shape.name} ${part} ${builds[i]!.root}: ${(t.ns / t.requests / 1000).toFixed(1)} CPU µs/request, ${(t.ns / t.spans).toFixed(0)} ns/span (${t.requests} requests, rounds 2-${rounds})`);
  }
}

void main();
