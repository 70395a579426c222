import * as fs from 'node:fs';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as https from 'node:https';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { buildPool, type Pool, type PooledRequest } from './obi';
import { installLeanAsyncResourceBind } from '../src/util/lean-async-bind';
import { sharedClock, SINK_COUNTERS, type SinkReady, type SinkReply, type SinkRequest, type SinkShared } from './sink-shared';
import { isTls, type Command, type Hello, type PoolInfo, type Reply, type Snapshot, type Target, type Transport } from './protocol';
import { TAIL_BYTES } from './wire';

// The load generator and the sink, in one child process pinned to its own core (run.ts starts it
// under `taskset -c 1`): the generator on the main thread, the sink on a worker thread
// (bench/sink-worker.ts). It sends pre-encoded requests to the server under test and receives what
// that server forwards, so both ends of a request's trip are timed on one clock. Driven over IPC.

/** The load generator's HTTP/2 session memory limit, in MB (see grpcSender). */
const LOADGEN_MAX_SESSION_MEMORY_MB = 1024;
const EXPORT_PATH = '/opentelemetry.proto.collector.trace.v1.TraceService/Export';
const now = sharedClock();

let pool: Pool | undefined;
let target: Target | undefined;
let client: Sender | undefined;

// Per pool index: when it was last sent, and whether its sink arrival is still awaited.
let sentAt: Float64Array<ArrayBufferLike> = new Float64Array(0);
let awaitingSink: Int32Array<ArrayBufferLike> = new Int32Array(0);
let cursor = 0;

const counters = {
  sentRequests: 0,
  sentSpans: 0,
  ackedRequests: 0,
  ackedSpans: 0,
  failedRequests: 0,
  skippedRequests: 0,
  inFlight: 0,
};
let rttMs: number[] = [];
let lastError = '';
let stopLoad: (() => void) | undefined;

// ---------------------------------------------------------------- sink

// The sink runs in its own thread (bench/sink-worker.ts); send times and its counters are shared.
const sinkCounters = new Float64Array(new SharedArrayBuffer(SINK_COUNTERS.length * 8));
let seen: Int32Array<ArrayBufferLike> = new Int32Array(0);
let sink: Worker | undefined;
let sinkCallId = 1;
const sinkCalls = new Map<number, (result: SinkReply['result']) => void>();

function sinkCall(request: SinkRequest): Promise<SinkReply['result']> {
  const id = sinkCallId++;
  return new Promise((resolve) => {
    sinkCalls.set(id, resolve);
    sink!.postMessage({ id, request });
  });
}

async function startSink(): Promise<SinkReady> {
  const shared: SinkShared = { counters: sinkCounters.buffer };
  sink = new Worker(path.join(__dirname, 'sink-worker.js'), { workerData: shared });
  sink.on('error', (err) => {
    process.stderr.write(`loadgen: the sink thread failed: ${err.message}\n`);
    process.exit(1);
  });
  const ready = await new Promise<SinkReady>((resolve) => sink!.once('message', resolve));
  sink.on('message', (reply: SinkReply) => {
    const done = sinkCalls.get(reply.id);
    sinkCalls.delete(reply.id);
    done?.(reply.result);
  });
  return ready;
}

// ---------------------------------------------------------------- clients

type Done = (err: string | undefined) => void;

interface Sender {
  send(request: PooledRequest, done: Done): void;
  close(): void;
}

/**
 * OTLP/gRPC with pre-framed (and for grpc-gzip pre-compressed) messages on `connections` HTTP/2
 * sessions, taken in turn; with `ca`, over TLS (h2 through ALPN), the server's certificate verified against it.
 */
async function grpcSender(address: string, transport: Transport, ca: Buffer | undefined, connections: number): Promise<Sender> {
  const settings = { initialWindowSize: 1024 * 1024 };
  // Every request in flight is written whole at once, so the data queued to send is up to
  // concurrency x request size (16 x 1.6 MB on obi-batch-4096). node:http2 counts it against the
  // session's maxSessionMemory (10 MB by default) and, while over it, resets any stream whose
  // response headers arrive with ENHANCE_YOUR_CALM: the generator refused its own calls.
  const maxSessionMemory = Number(process.env.BENCH_LOADGEN_MAX_SESSION_MEMORY_MB ?? LOADGEN_MAX_SESSION_MEMORY_MB);
  const sessions: http2.ClientHttp2Session[] = [];
  for (let i = 0; i < Math.max(1, connections); i++) {
    const session = ca
      ? http2.connect(`https://${address}`, { settings, ca, maxSessionMemory })
      : http2.connect(`http://${address}`, { settings, maxSessionMemory });
    session.on('error', (err) => (lastError = `gRPC session: ${err.message}`));
    // One connection at a time, each up to the server's SETTINGS: a multi-process server (node's
    // cluster) hands a new connection to a free worker, and two opened together often both went
    // to one worker while the other idled.
    await new Promise<void>((resolve) => {
      session.once('remoteSettings', () => resolve());
      session.once('close', () => resolve());
    });
    sessions.push(session);
  }
  let turn = 0;
  const headers: http2.OutgoingHttpHeaders = { ':method': 'POST', ':path': EXPORT_PATH, 'content-type': 'application/grpc', te: 'trailers' };
  if (transport === 'grpc-gzip') headers['grpc-encoding'] = 'gzip';
  return {
    send(request, done) {
      const frame = sentBytes(request, transport);
      const session = sessions[turn]!;
      turn = (turn + 1) % sessions.length;
      let stream: http2.ClientHttp2Stream;
      try {
        stream = session.request(headers);
      } catch (err) {
        done((err as Error).message);
        return;
      }
      // One call object and four shared listeners per stream, not four closures.
      (stream as CallStream)[CALL] = { done, status: undefined };
      stream.on('response', onCallResponse);
      stream.on('trailers', onCallTrailers);
      stream.on('error', onCallError);
      stream.on('close', onCallClose);
      stream.resume();
      stream.end(frame);
    },
    close: () => {
      for (const session of sessions) session.close();
    },
  };
}

const CALL = Symbol('call');
type CallStream = http2.ClientHttp2Stream & { [CALL]: { done: Done; status: string | undefined } };

function onCallResponse(this: CallStream, h: http2.IncomingHttpHeaders): void {
  // A trailers-only answer (an error) carries grpc-status in the headers.
  if (h['grpc-status'] !== undefined) this[CALL].status = `${String(h['grpc-status'])}: ${String(h['grpc-message'])}`;
}

function onCallTrailers(this: CallStream, t: http2.IncomingHttpHeaders): void {
  this[CALL].status = t['grpc-status'] === '0' ? '0' : `${String(t['grpc-status'])}: ${String(t['grpc-message'])}`;
}

function onCallError(this: CallStream, err: Error): void {
  this[CALL].status = err.message;
}

function onCallClose(this: CallStream): void {
  const { done, status } = this[CALL];
  done(status === '0' ? undefined : (status ?? `stream reset ${this.rstCode}`));
}

/** OTLP/HTTP on kept-alive connections; with `ca`, HTTPS, the server's certificate verified against it. */
function httpSender(address: string, transport: Transport, ca: Buffer | undefined): Sender {
  const [host, port] = splitHostPort(address);
  const agent = ca ? new https.Agent({ keepAlive: true, maxSockets: 256, ca }) : new http.Agent({ keepAlive: true, maxSockets: 256 });
  const request = ca ? https.request : http.request;
  const gzip = transport === 'http-protobuf-gzip';
  return {
    send(pooled, done) {
      const body = sentBytes(pooled, transport);
      const headers: http.OutgoingHttpHeaders = { 'content-type': 'application/x-protobuf', 'content-length': body.length };
      if (gzip) headers['content-encoding'] = 'gzip';
      const req = request({ host, port, method: 'POST', path: '/v1/traces', agent, headers }, (res) => {
        const status = res.statusCode ?? 0;
        res.on('data', () => undefined);
        res.on('end', () => done(status === 200 ? undefined : `HTTP ${status}`));
        res.on('error', (err) => done(err.message));
      });
      req.on('error', (err) => done(err.message));
      req.end(body);
    },
    close: () => agent.destroy(),
  };
}

/** What goes on the wire after the headers: the gRPC frame or the HTTP body. */
function sentBytes(request: PooledRequest, transport: Transport): Buffer {
  switch (transport) {
    case 'grpc':
    case 'grpc-tls':
      return request.grpcFrame;
    case 'grpc-gzip':
      return request.grpcGzipFrame;
    case 'http-protobuf':
    case 'http-protobuf-tls':
      return request.body;
    case 'http-protobuf-gzip':
      return request.gzipped;
  }
}

function splitHostPort(address: string): [string, number] {
  const colon = address.lastIndexOf(':');
  return [address.slice(0, colon), Number(address.slice(colon + 1))];
}

// ---------------------------------------------------------------- load

function nextRequest(): PooledRequest {
  const requests = pool!.requests;
  const request = requests[cursor]!;
  cursor = (cursor + 1) % requests.length;
  return request;
}

function sendOne(onDone?: (ok: boolean) => void): PooledRequest {
  const request = nextRequest();
  const t = now();
  sentAt[request.index] = t;
  if (target!.expectSink) Atomics.store(awaitingSink, request.index, 1);
  counters.sentRequests++;
  counters.sentSpans += request.spans;
  counters.inFlight++;
  client!.send(request, (err) => {
    counters.inFlight--;
    if (err === undefined) {
      counters.ackedRequests++;
      counters.ackedSpans += request.spans;
      rttMs.push(now() - t);
    } else {
      counters.failedRequests++;
      lastError = err;
      Atomics.store(awaitingSink, request.index, 0);
    }
    onDone?.(err === undefined);
  });
  return request;
}

function startFixed(spansPerSecond: number, maxInFlight: number): void {
  const spansPerRequest = pool!.requests[0]!.spans;
  const requestsPerMs = spansPerSecond / spansPerRequest / 1000;
  const start = now();
  let scheduled = 0;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const tick = () => {
    if (stopped) return;
    const due = Math.floor((now() - start) * requestsPerMs) + 1;
    while (scheduled < due) {
      scheduled++;
      if (counters.inFlight >= maxInFlight) counters.skippedRequests++;
      else sendOne();
    }
    const nextAt = start + scheduled / requestsPerMs;
    timer = setTimeout(tick, Math.max(0, nextAt - now()));
  };
  tick();
  stopLoad = () => {
    stopped = true;
    if (timer) clearTimeout(timer);
  };
}

function startClosed(concurrency: number): void {
  let stopped = false;
  const loop = (ok: boolean) => {
    if (stopped) return;
    // A refused request (e.g. a full queue) is retried after a pause rather than spun on.
    if (ok) sendOne(loop);
    else setTimeout(() => !stopped && sendOne(loop), 5);
  };
  for (let i = 0; i < concurrency; i++) sendOne(loop);
  stopLoad = () => {
    stopped = true;
  };
}

async function stop(drainMs: number): Promise<void> {
  stopLoad?.();
  stopLoad = undefined;
  const deadline = now() + drainMs;
  while (counters.inFlight > 0 && now() < deadline) await sleep(10);
  // Let the last forwards reach the sink.
  await sleep(Math.min(200, drainMs));
}

async function probe(timeoutMs: number): Promise<void> {
  const deadline = now() + timeoutMs;
  for (;;) {
    let seenBefore = 0;
    const ok = await new Promise<{ ok: boolean; index: number }>((resolve) => {
      const request = sendOne((acked) => resolve({ ok: acked, index: request.index }));
      seenBefore = Atomics.load(seen, request.index);
    });
    if (ok.ok) {
      // The sink thread counts each arrival per pool index; poll it (probes are rare).
      const until = now() + 3000;
      while (target!.expectSink && Atomics.load(seen, ok.index) === seenBefore && now() < until) await sleep(2);
      if (!target!.expectSink || Atomics.load(seen, ok.index) !== seenBefore) return;
      lastError = 'acknowledged but not forwarded to the sink within 3 s';
    }
    if (now() > deadline) throw new Error(`server not ready: ${lastError}`);
    await sleep(200);
  }
}

async function snapshot(): Promise<Snapshot> {
  const at = now();
  const sinkNow: Record<string, number> = {};
  SINK_COUNTERS.forEach((name, i) => (sinkNow[name] = sinkCounters[i]!));
  const own = { ...counters };
  const ownRtt = rttMs;
  rttMs = [];
  // verifyErrors stay until the next load starts (the sample is checked during warm-up).
  const samples = (await sinkCall({ type: 'samples' }))!;
  return {
    at,
    ...own,
    sinkRequests: sinkNow.sinkRequests!,
    sinkSpans: sinkNow.sinkSpans!,
    sinkUnmatched: sinkNow.sinkUnmatched!,
    verified: sinkNow.verified!,
    sinkLatencyMs: samples.latencyMs,
    rttMs: ownRtt,
    verifyErrors: samples.verifyErrors,
    lastError,
  };
}

async function resetCounters(verifyBudget = 0): Promise<void> {
  for (const key of Object.keys(counters) as (keyof typeof counters)[]) if (key !== 'inFlight') counters[key] = 0;
  rttMs = [];
  lastError = '';
  await sinkCall({ type: 'reset', verifyBudget });
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------- IPC

async function handle(command: Command): Promise<unknown> {
  switch (command.type) {
    case 'pool': {
      const t = now();
      pool = buildPool(command.spec);
      const n = pool.requests.length;
      const shared = { sentAt: new SharedArrayBuffer(8 * n), awaiting: new SharedArrayBuffer(4 * n), seen: new SharedArrayBuffer(4 * n) };
      sentAt = new Float64Array(shared.sentAt);
      awaitingSink = new Int32Array(shared.awaiting);
      seen = new Int32Array(shared.seen);
      await sinkCall({ type: 'pool', ...shared, keptSpans: pool.requests.map((r) => r.keptSpans), keepIds: [...pool.keepIds] });
      cursor = 0;
      const first = pool.requests[0]!;
      const info: PoolInfo = {
        requests: pool.requests.length,
        spansPerRequest: first.spans,
        keptSpansPerRequest: pool.requests.reduce((n, r) => n + r.keptSpans, 0) / pool.requests.length,
        bytesPerRequest: Math.round(pool.requests.reduce((n, r) => n + r.body.length, 0) / pool.requests.length),
        gzipBytesPerRequest: Math.round(pool.requests.reduce((n, r) => n + r.gzipped.length, 0) / pool.requests.length),
        buildMs: Math.round(now() - t),
      };
      return info;
    }
    case 'target': {
      client?.close();
      target = command.target;
      if (isTls(target.transport) && target.caFile === undefined) throw new Error(`${target.transport} needs a CA file`);
      const ca = isTls(target.transport) ? fs.readFileSync(target.caFile!) : undefined;
      client = target.transport.startsWith('grpc')
        ? await grpcSender(target.grpcAddress, target.transport, ca, target.connections ?? 1)
        : httpSender(target.httpAddress, target.transport, ca);
      awaitingSink.fill(0);
      await resetCounters();
      return undefined;
    }
    case 'probe':
      await probe(command.timeoutMs);
      await resetCounters();
      awaitingSink.fill(0);
      return undefined;
    case 'fixed':
      await resetCounters(target!.expectSink ? 3 : 0);
      startFixed(command.spansPerSecond, command.maxInFlight);
      return undefined;
    case 'closed':
      await resetCounters();
      startClosed(command.concurrency);
      return undefined;
    case 'snapshot':
      return snapshot();
    case 'tails':
      return pool!.requests.map((request) => {
        const sent = sentBytes(request, target!.transport);
        return sent.toString('hex', sent.length - TAIL_BYTES);
      });
    case 'stop':
      await stop(command.drainMs);
      return snapshot();
    case 'exit':
      setImmediate(() => process.exit(0));
      return undefined;
  }
}

function reply(message: Reply): void {
  process.send?.(message);
}

process.on('message', (raw: { id: number; command: Command }) => {
  handle(raw.command).then(
    (result) => reply({ id: raw.id, ok: true, result }),
    (err: unknown) => reply({ id: raw.id, ok: false, error: (err as Error).message }),
  );
});
// As spansieve's CLI does: node:http2 binds one function per outgoing stream, and Node 20's bind
// leaves garbage for the old generation on each (docs/performance.md, "AsyncResource#bind").
installLeanAsyncResourceBind();
// The orchestrator is gone (killed, crashed): nothing left to do.
process.on('disconnect', () => process.exit(0));

startSink().then(
  ({ grpcPort, httpPort, tid, sink: kind }) => {
    const hello: Hello = { type: 'hello', sinkGrpcPort: grpcPort, sinkHttpPort: httpPort, sinkTid: tid, sink: kind };
    process.send?.(hello);
  },
  (err: unknown) => {
    process.stderr.write(`loadgen: cannot start the sink: ${(err as Error).message}\n`);
    process.exit(1);
  },
);
