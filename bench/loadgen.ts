import * as fs from 'node:fs';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as https from 'node:https';
import { performance } from 'node:perf_hooks';
import { attrValueToString } from '../src/pdata/attributes';
import { parseRequest } from '../src/pdata/scan';
import { createGrpcSink, createHttpSink } from './sinks';
import { buildPool, findMarkers, type Pool, type PooledRequest } from './obi';
import { isTls, type Command, type Hello, type PoolInfo, type Reply, type Snapshot, type Target, type Transport } from './protocol';
import { TAIL_BYTES } from './wire';

// The load generator and the sink, in one child process pinned to its own core (run.ts starts it
// under `taskset -c 1`). It sends pre-encoded requests to the server under test and receives what
// that server forwards, so both ends of a request's trip are timed on one clock. Driven over IPC.

/** The load generator's HTTP/2 session memory limit, in MB (see grpcSender). */
const LOADGEN_MAX_SESSION_MEMORY_MB = 1024;
const EXPORT_PATH = '/opentelemetry.proto.collector.trace.v1.TraceService/Export';
const now = (): number => performance.now();

let pool: Pool | undefined;
let target: Target | undefined;
let client: Sender | undefined;

// Per pool index: when it was last sent, and whether its sink arrival is still awaited.
let sentAt = new Float64Array(0);
let awaitingSink = new Uint8Array(0);
let cursor = 0;
const probeWaiters = new Map<number, () => void>();

const counters = {
  sentRequests: 0,
  sentSpans: 0,
  ackedRequests: 0,
  ackedSpans: 0,
  failedRequests: 0,
  skippedRequests: 0,
  inFlight: 0,
  sinkRequests: 0,
  sinkSpans: 0,
  sinkUnmatched: 0,
  verified: 0,
};
let sinkLatencyMs: number[] = [];
let rttMs: number[] = [];
let verifyErrors: string[] = [];
let verifyBudget = 0;
let lastError = '';
let stopLoad: (() => void) | undefined;

// ---------------------------------------------------------------- sink

const markers: number[] = [];

function onForwarded(body: Buffer): void {
  const t = now();
  counters.sinkRequests++;
  const p = pool;
  if (!p) return;
  findMarkers(body, markers);
  if (markers.length === 0) counters.sinkUnmatched++;
  let expectedSpans = 0;
  for (const index of markers) {
    const request = p.requests[index];
    if (!request) {
      counters.sinkUnmatched++;
      continue;
    }
    expectedSpans += request.keptSpans;
    if (awaitingSink[index] === 1) {
      awaitingSink[index] = 0;
      sinkLatencyMs.push(t - sentAt[index]!);
    } else {
      counters.sinkUnmatched++;
    }
    const waiter = probeWaiters.get(index);
    if (waiter) {
      probeWaiters.delete(index);
      waiter();
    }
  }
  counters.sinkSpans += expectedSpans;
  if (verifyBudget > 0) {
    verifyBudget--;
    verify(body, p, expectedSpans);
  }
}

/** Full check of a sample of forwarded requests: only kept processes, every kept span present. */
function verify(body: Buffer, p: Pool, expectedSpans: number): void {
  try {
    const { batch } = parseRequest('traces', body);
    for (const block of batch.resources) {
      const id = block.attributes.get('service.instance.id');
      const text = id === undefined ? '<none>' : attrValueToString(id);
      if (!p.keepIds.has(text)) throw new Error(`forwarded a resource that should be dropped: ${text}`);
    }
    if (batch.itemCount !== expectedSpans) throw new Error(`forwarded ${batch.itemCount} spans, expected ${expectedSpans}`);
    counters.verified++;
  } catch (err) {
    if (verifyErrors.length < 5) verifyErrors.push((err as Error).message);
  }
}

async function startSink(): Promise<{ grpcPort: number; httpPort: number }> {
  const grpcServer = createGrpcSink(onForwarded);
  await new Promise<void>((resolve) => grpcServer.listen(0, '127.0.0.1', () => resolve()));
  const grpcPort = (grpcServer.address() as { port: number }).port;
  const httpServer = createHttpSink(onForwarded);
  await new Promise<void>((resolve) => httpServer.listen(0, '127.0.0.1', () => resolve()));
  const httpPort = (httpServer.address() as { port: number }).port;
  return { grpcPort, httpPort };
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
      let status: string | undefined;
      stream.on('response', (h) => {
        if (h['grpc-status'] !== undefined) status = `${String(h['grpc-status'])}: ${String(h['grpc-message'])}`;
      });
      stream.on('trailers', (t) => {
        status = t['grpc-status'] === '0' ? '0' : `${String(t['grpc-status'])}: ${String(t['grpc-message'])}`;
      });
      stream.on('error', (err: Error) => {
        status = err.message;
      });
      stream.on('close', () => done(status === '0' ? undefined : (status ?? `stream reset ${stream.rstCode}`)));
      stream.resume();
      stream.end(frame);
    },
    close: () => {
      for (const session of sessions) session.close();
    },
  };
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
  if (target!.expectSink) awaitingSink[request.index] = 1;
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
      awaitingSink[request.index] = 0;
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
    const ok = await new Promise<{ ok: boolean; index: number; seen: Promise<void> }>((resolve) => {
      let seen: Promise<void> = Promise.resolve();
      const request = sendOne((acked) => resolve({ ok: acked, index: request.index, seen }));
      if (target!.expectSink) seen = new Promise<void>((r) => probeWaiters.set(request.index, r));
    });
    if (ok.ok) {
      const arrived = await Promise.race([ok.seen.then(() => true), sleep(3000).then(() => false)]);
      probeWaiters.delete(ok.index);
      if (arrived) return;
      lastError = 'acknowledged but not forwarded to the sink within 3 s';
    }
    if (now() > deadline) throw new Error(`server not ready: ${lastError}`);
    await sleep(200);
  }
}

function snapshot(): Snapshot {
  // verifyErrors stay until the next load starts (the sample is checked during warm-up).
  const s: Snapshot = { at: now(), ...counters, sinkLatencyMs, rttMs, verifyErrors: [...verifyErrors], lastError };
  sinkLatencyMs = [];
  rttMs = [];
  return s;
}

function resetCounters(): void {
  for (const key of Object.keys(counters) as (keyof typeof counters)[]) if (key !== 'inFlight') counters[key] = 0;
  sinkLatencyMs = [];
  rttMs = [];
  verifyErrors = [];
  lastError = '';
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------- IPC

async function handle(command: Command): Promise<unknown> {
  switch (command.type) {
    case 'pool': {
      const t = now();
      pool = buildPool(command.spec);
      sentAt = new Float64Array(pool.requests.length);
      awaitingSink = new Uint8Array(pool.requests.length);
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
      resetCounters();
      return undefined;
    }
    case 'probe':
      await probe(command.timeoutMs);
      resetCounters();
      awaitingSink.fill(0);
      return undefined;
    case 'fixed':
      resetCounters();
      verifyBudget = target!.expectSink ? 3 : 0;
      startFixed(command.spansPerSecond, command.maxInFlight);
      return undefined;
    case 'closed':
      resetCounters();
      verifyBudget = 0;
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
// The orchestrator is gone (killed, crashed): nothing left to do.
process.on('disconnect', () => process.exit(0));

startSink().then(
  ({ grpcPort, httpPort }) => {
    const hello: Hello = { type: 'hello', sinkGrpcPort: grpcPort, sinkHttpPort: httpPort };
    process.send?.(hello);
  },
  (err: unknown) => {
    process.stderr.write(`loadgen: cannot start the sink: ${(err as Error).message}\n`);
    process.exit(1);
  },
);
