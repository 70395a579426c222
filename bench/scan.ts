import { performance } from 'node:perf_hooks';
import { parseRequest, type ResourcePredicate } from '../src/pdata/scan';
import { buildPool, keptInstanceIds } from './obi';
import { shapeNamed } from './shapes';

// Micro-benchmark of the wire scanner alone (the receive path's CPU without sockets): every
// request of the benchmark's OBI-shaped pool through parseRequest, with no filter (every span is
// checked). Prints one JSON line: ns of CPU time per span and MB/s, the best of `--rounds` rounds.
// CPU time rather than wall time: on a shared machine the wall clock counts other processes too.
// `--shape NAME` takes another load shape's pool (bench/shapes.ts); `--may-keep` answers the
// receiver's mayKeep question from the shape's keep list, as a filter does, so resources nobody
// keeps are counted rather than checked (what the server does); then it prints µs per request too.
//   node dist/bench/scan.js [--shape default] [--may-keep] [--rounds 7] [--seconds 1]

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

const rounds = arg('rounds', 7);
const seconds = arg('seconds', 1);
const shapeAt = process.argv.indexOf('--shape');
const shape = shapeNamed(shapeAt >= 0 ? process.argv[shapeAt + 1]! : 'default');
const keep = new Set(keptInstanceIds(shape.pool));
const mayKeep: ResourcePredicate | undefined = process.argv.includes('--may-keep')
  ? (attributes) => {
      const id = attributes.get('service.instance.id');
      return typeof id === 'string' && keep.has(id);
    }
  : undefined;
const pool = buildPool(shape.pool);
const requests = pool.requests;
let sink = 0;
const results: { nsPerSpan: number; usPerRequest: number; mbPerSecond: number }[] = [];
for (let round = 0; round < rounds; round++) {
  let spans = 0;
  let bytes = 0;
  let count = 0;
  const start = performance.now();
  const cpuStart = process.cpuUsage();
  while (performance.now() - start < seconds * 1000) {
    for (const request of requests) {
      sink += parseRequest('traces', request.body, mayKeep).batch.itemCount;
      spans += request.spans;
      count++;
      bytes += request.body.length;
    }
  }
  const cpu = process.cpuUsage(cpuStart);
  const elapsed = (cpu.user + cpu.system) / 1000;
  results.push({ nsPerSpan: (elapsed * 1e6) / spans, usPerRequest: (elapsed * 1e3) / count, mbPerSecond: bytes / 1e6 / (elapsed / 1000) });
}
const best = results.reduce((a, b) => (b.nsPerSpan < a.nsPerSpan ? b : a));
const sorted = results.map((r) => r.nsPerSpan).sort((a, b) => a - b);
console.log(
  JSON.stringify({
    bench: 'scan',
    shape: shape.name,
    mayKeep: mayKeep !== undefined,
    requests: requests.length,
    bestNsPerSpan: Number(best.nsPerSpan.toFixed(1)),
    medianNsPerSpan: Number(sorted[Math.floor(sorted.length / 2)]!.toFixed(1)),
    bestUsPerRequest: Number(best.usPerRequest.toFixed(1)),
    bestMBps: Number(best.mbPerSecond.toFixed(1)),
    checksum: sink,
  }),
);
