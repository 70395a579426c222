import assert from 'node:assert/strict';
import { fork } from 'node:child_process';
import * as fs from 'node:fs';
import * as http2 from 'node:http2';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import * as zlib from 'node:zlib';
import { keptInstanceIds, type PoolSpec } from '../../bench/obi';
import { LoadGen } from '../../bench/loadgen-client';
import { taskCpuSeconds } from '../../bench/proc';
import type { PoolInfo, Snapshot } from '../../bench/protocol';
import { createGrpcSink, createRawGrpcSink } from '../../bench/sinks';
import { startServer, type RunningServer } from '../../bench/systems';

// The harness's sink on src/util/h2 must answer as the node:http2 one did, and the load generator
// with its sink thread must count, time and verify what a real spansieve forwards.

interface Answer {
  readonly headers: Record<string, unknown>;
  readonly body: Buffer;
  readonly trailers: Record<string, unknown>;
}

async function call(port: number, frame: Buffer, gzip: boolean): Promise<Answer> {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  try {
    const headers: http2.OutgoingHttpHeaders = { ':method': 'POST', ':path': '/opentelemetry.proto.collector.trace.v1.TraceService/Export', 'content-type': 'application/grpc', te: 'trailers' };
    if (gzip) headers['grpc-encoding'] = 'gzip';
    const stream = session.request(headers);
    const chunks: Buffer[] = [];
    let responseHeaders: Record<string, unknown> = {};
    let trailers: Record<string, unknown> = {};
    stream.on('response', (h: http2.IncomingHttpHeaders) => {
      responseHeaders = { ...h };
    });
    stream.on('trailers', (t: http2.IncomingHttpHeaders) => {
      trailers = { ...t };
    });
    stream.on('data', (c: Buffer) => chunks.push(c));
    await new Promise<void>((resolve, reject) => {
      stream.on('close', resolve);
      stream.on('error', reject);
      stream.end(frame);
    });
    delete responseHeaders.date; // node:http2 adds one; no gRPC client reads it
    return { headers: responseHeaders, body: Buffer.concat(chunks), trailers };
  } finally {
    session.close();
  }
}

function grpcFrame(message: Buffer, compressed: boolean): Buffer {
  const frame = Buffer.alloc(5 + message.length);
  frame[0] = compressed ? 1 : 0;
  frame.writeUInt32BE(message.length, 1);
  message.copy(frame, 5);
  return frame;
}

describe('bench sinks', () => {
  test('the src/util/h2 sink answers and counts as the node:http2 sink', async () => {
    const message = Buffer.from('a message the sink does not parse '.repeat(2000));
    const got: Record<string, Buffer[]> = { node: [], raw: [] };
    const node = createGrpcSink((m) => got.node!.push(Buffer.from(m)));
    const raw = createRawGrpcSink((m) => got.raw!.push(Buffer.from(m))).server;
    try {
      for (const server of [node, raw]) await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const port = (s: { address(): unknown }) => (s.address() as { port: number }).port;
      for (const gzip of [false, true]) {
        const frame = grpcFrame(gzip ? zlib.gzipSync(message) : message, gzip);
        const a = await call(port(node), frame, gzip);
        const b = await call(port(raw), frame, gzip);
        assert.deepEqual(b, a);
        assert.deepEqual(a.trailers['grpc-status'], '0');
        assert.deepEqual(a.body, Buffer.alloc(5));
      }
      assert.deepEqual(got.raw, got.node);
      assert.deepEqual(got.node, [message, message]);
    } finally {
      node.close();
      raw.close();
    }
  });
});

const SPEC: PoolSpec = { requests: 16, resourcesPerRequest: 8, keptPerRequest: 2, spansPerResource: 3, resourceAttributes: 11, keptInstances: 8, droppedInstances: 8, seed: 7 };

describe('load generator with its sink thread', () => {
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'loadgen-test-'));
  const child = fork(path.join(__dirname, '..', '..', 'bench', 'loadgen.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const loadgen = new LoadGen(child);
  let server: RunningServer | undefined;
  after(async () => {
    await server?.stop();
    child.kill('SIGKILL');
    fs.rmSync(workDir, { recursive: true, force: true });
  });

  test('counts, times and verifies what spansieve forwards; the sink thread is readable', async () => {
    const hello = await loadgen.ready;
    assert.ok(hello.sinkTid > 0 && hello.sinkTid !== child.pid);
    assert.ok(Number.isFinite(taskCpuSeconds(child.pid!, hello.sinkTid)));
    const info = await loadgen.call<PoolInfo>({ type: 'pool', spec: SPEC });
    server = await startServer({ system: 'spansieve', keepIds: keptInstanceIds(SPEC), sinkGrpcPort: hello.sinkGrpcPort, workDir, label: 'loadgen-test', sendingQueue: false });
    await loadgen.call({ type: 'target', target: { transport: 'grpc', grpcAddress: server.grpcAddress, httpAddress: server.httpAddress, expectSink: true } });
    await loadgen.call({ type: 'probe', timeoutMs: 30_000 });

    // The fixed rate checks the first 3 forwards in full.
    await loadgen.call({ type: 'fixed', spansPerSecond: 24 * 200, maxInFlight: 64 });
    let s: Snapshot;
    do {
      await new Promise((r) => setTimeout(r, 100));
      s = await loadgen.call<Snapshot>({ type: 'snapshot' });
    } while (s.verified < 3 && s.verifyErrors.length === 0);
    s = await loadgen.call<Snapshot>({ type: 'stop', drainMs: 5000 });
    assert.deepEqual(s.verifyErrors, []);
    assert.equal(s.verified, 3);

    await loadgen.call({ type: 'closed', concurrency: 4 });
    await new Promise((r) => setTimeout(r, 1000));
    s = await loadgen.call<Snapshot>({ type: 'stop', drainMs: 5000 });
    assert.ok(s.ackedRequests > 10, `acked ${s.ackedRequests}`);
    assert.equal(s.failedRequests, 0);
    assert.equal(s.sinkRequests, s.ackedRequests);
    assert.equal(s.sinkUnmatched, 0);
    // Every acknowledged request's kept spans arrived (2 of 8 resources kept, 3 spans each).
    assert.equal(s.sinkSpans, s.ackedRequests * info.keptSpansPerRequest);
    assert.equal(info.keptSpansPerRequest, 6);
    // One send-to-sink sample per request, each on the shared clock: positive and below its round trip's scale.
    assert.equal(s.sinkLatencyMs.length, s.sinkRequests);
    assert.ok(s.sinkLatencyMs.every((ms) => ms > 0 && ms < 5000), `latencies ${s.sinkLatencyMs.slice(0, 5).join(', ')}`);
    assert.equal(s.rttMs.length, s.ackedRequests);
  });
});
