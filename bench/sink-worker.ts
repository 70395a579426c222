import * as fs from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { attrValueToString } from '../src/pdata/attributes';
import { parseRequest } from '../src/pdata/scan';
import { findMarkers } from './obi';
import { createGrpcSink, createHttpSink, createRawGrpcSink } from './sinks';
import { sharedClock, SINK_COUNTERS, type SinkCounter, type SinkReply, type SinkRequest, type SinkShared } from './sink-shared';

// The sink, in a worker thread of the load generator's process (bench/loadgen.ts): its own event
// loop, so forwards are answered while the generator's loop is busy sending, and its own thread,
// so run.ts reads its CPU apart from the generator's (/proc/PID/task/TID). Send times and the
// counters are shared memory; the clock is the monotonic one both threads read (sharedClock).

const now = sharedClock();
const shared = workerData as SinkShared;
const counters = new Float64Array(shared.counters);
const counterIndex = (name: SinkCounter) => SINK_COUNTERS.indexOf(name);
const REQUESTS = counterIndex('sinkRequests');
const SPANS = counterIndex('sinkSpans');
const UNMATCHED = counterIndex('sinkUnmatched');
const VERIFIED = counterIndex('verified');

let sentAt: Float64Array<ArrayBufferLike> = new Float64Array(0);
let awaiting: Int32Array<ArrayBufferLike> = new Int32Array(0);
let seen: Int32Array<ArrayBufferLike> = new Int32Array(0);
let keptSpans = new Int32Array(0);
let keepIds = new Set<string>();
let latencyMs: number[] = [];
let verifyErrors: string[] = [];
let verifyBudget = 0;
const markers: number[] = [];

function onForwarded(body: Buffer): void {
  const t = now();
  counters[REQUESTS]!++;
  findMarkers(body, markers);
  if (markers.length === 0) counters[UNMATCHED]!++;
  let expectedSpans = 0;
  for (const index of markers) {
    if (index >= keptSpans.length) {
      counters[UNMATCHED]!++;
      continue;
    }
    expectedSpans += keptSpans[index]!;
    // The generator stores 1 when it sends and 0 when the call fails; only the first arrival counts.
    if (Atomics.exchange(awaiting, index, 0) === 1) latencyMs.push(t - sentAt[index]!);
    else counters[UNMATCHED]!++;
    Atomics.add(seen, index, 1);
  }
  counters[SPANS]! += expectedSpans;
  if (verifyBudget > 0) {
    verifyBudget--;
    verify(body, expectedSpans);
  }
}

/** Full check of a sample of forwarded requests: only kept processes, every kept span present. */
function verify(body: Buffer, expectedSpans: number): void {
  try {
    const { batch } = parseRequest('traces', body);
    for (const block of batch.resources) {
      const id = block.attributes.get('service.instance.id');
      const text = id === undefined ? '<none>' : attrValueToString(id);
      if (!keepIds.has(text)) throw new Error(`forwarded a resource that should be dropped: ${text}`);
    }
    if (batch.itemCount !== expectedSpans) throw new Error(`forwarded ${batch.itemCount} spans, expected ${expectedSpans}`);
    counters[VERIFIED]!++;
  } catch (err) {
    if (verifyErrors.length < 5) verifyErrors.push((err as Error).message);
  }
}

function handle(request: SinkRequest): SinkReply['result'] {
  switch (request.type) {
    case 'pool':
      sentAt = new Float64Array(request.sentAt);
      awaiting = new Int32Array(request.awaiting);
      seen = new Int32Array(request.seen);
      keptSpans = Int32Array.from(request.keptSpans);
      keepIds = new Set(request.keepIds);
      return undefined;
    case 'reset':
      counters.fill(0);
      latencyMs = [];
      verifyErrors = [];
      verifyBudget = request.verifyBudget;
      return undefined;
    case 'samples': {
      const out = { latencyMs, verifyErrors: [...verifyErrors] };
      latencyMs = [];
      return out;
    }
  }
}

async function start(): Promise<void> {
  // BENCH_SINK=node: the gRPC sink on node:http2 as before (A/B of the harness); default spansieve's own layer.
  const raw = process.env.BENCH_SINK !== 'node';
  const grpc = raw ? createRawGrpcSink(onForwarded, undefined, { maxConcurrentStreams: 1 << 20 }).server : createGrpcSink(onForwarded);
  await new Promise<void>((resolve) => grpc.listen(0, '127.0.0.1', () => resolve()));
  const http = createHttpSink(onForwarded);
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', () => resolve()));
  // This thread's id, so the parent can read its CPU time apart from the generator's.
  const tid = Number(fs.readlinkSync('/proc/thread-self').split('/').pop());
  parentPort!.on('message', (message: { id: number; request: SinkRequest }) => {
    const reply: SinkReply = { id: message.id, result: handle(message.request) };
    parentPort!.postMessage(reply);
  });
  parentPort!.postMessage({
    type: 'ready',
    grpcPort: (grpc.address() as { port: number }).port,
    httpPort: (http.address() as { port: number }).port,
    tid,
    sink: raw ? 'src/util/h2' : 'node:http2',
  });
}

start().catch((err: unknown) => {
  process.stderr.write(`sink: cannot start: ${(err as Error).message}\n`);
  process.exit(1);
});
