import * as fs from 'node:fs';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import * as path from 'node:path';
import { freePorts, installCleanup, killAll, spawnPinned, stopChild, ticksPerSecond, waitForPort } from './proc';
import { median } from './report';
import { SERVER_CPU } from './systems';

// The two gRPC floors side by side (issue 19): bench/floor.ts on node:http2 (`floor`) and on
// spansieve's own HTTP/2 layer, src/util/h2 (`floor-raw`), and as a baseline the same bodies with
// no protocol at all (`tcp`: 4-octet length, body, one octet back). All run at once, pinned to the
// server core; this process is the client (node:http2, one connection, gRPC unary calls with a body of
// the shape's size) and measures each server's CPU (user and system, from /proc) over the same
// load, alternating floor, floor-raw, floor, ... Two loads: a fixed rate (each request wakes the
// server, as at 20 k spans/s) and a closed loop (16 in flight: the per-request cost with wake-ups
// shared).
//
// Usage: node dist/bench/h2-floor.js [--rounds N] [--seconds S] [--rate REQ_PER_S] [--bytes N]
// (defaults 4 rounds, 4 s, 208 requests/s = obi-sidecar's 96 spans at 20 k spans/s, 37,450 bytes).

const ROOT = path.resolve(__dirname, '..', '..');
type System = 'floor' | 'floor-raw' | 'tcp';
const SYSTEM_LIST: readonly System[] = ['floor', 'floor-raw', 'tcp'];
const FLAGS: Record<System, string[]> = { floor: [], 'floor-raw': ['--raw'], tcp: ['--tcp'] };

/** Sends one request and resolves on its answer. */
type Call = () => Promise<void>;

interface Sample {
  readonly system: System;
  readonly mode: 'fixed' | 'closed';
  readonly requests: number;
  readonly userUs: number;
  readonly sysUs: number;
}

function cpuSplit(pid: number): { user: number; sys: number } {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { user: Number(fields[11]) / ticksPerSecond(), sys: Number(fields[12]) / ticksPerSecond() };
}

function grpcCall(session: http2.ClientHttp2Session, body: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = session.request({
      ':method': 'POST',
      ':path': '/opentelemetry.proto.collector.trace.v1.TraceService/Export',
      'content-type': 'application/grpc',
      te: 'trailers',
      'grpc-accept-encoding': 'identity,gzip',
      'user-agent': 'h2-floor-bench',
    });
    let status: string | undefined;
    req.on('trailers', (t) => (status = String(t['grpc-status'])));
    req.on('data', () => undefined);
    req.on('end', () => (status === '0' ? resolve() : reject(new Error(`grpc-status ${status}`))));
    req.on('error', reject);
    req.end(body);
  });
}

/** The `tcp` floor's client: length-prefixed bodies, one octet back each, in order. */
async function tcpCaller(port: number, body: Buffer): Promise<{ call: Call; close: () => void }> {
  const socket = net.connect(port, '127.0.0.1');
  await new Promise((resolve) => socket.once('connect', resolve));
  socket.setNoDelay(true);
  const waiting: (() => void)[] = [];
  socket.on('data', (chunk: Buffer) => {
    for (let i = 0; i < chunk.length; i++) waiting.shift()?.();
  });
  const framed = Buffer.alloc(4 + body.length);
  framed.writeUInt32BE(body.length, 0);
  body.copy(framed, 4);
  return {
    call: () => new Promise<void>((resolve) => {
      waiting.push(resolve);
      socket.write(framed);
    }),
    close: () => socket.destroy(),
  };
}

async function fixedRate(call: Call, rate: number, seconds: number): Promise<number> {
  const start = performance.now();
  const inFlight = new Set<Promise<void>>();
  let sent = 0;
  while (performance.now() - start < seconds * 1000) {
    const due = Math.floor(((performance.now() - start) / 1000) * rate);
    while (sent < due) {
      const p = call().finally(() => inFlight.delete(p));
      inFlight.add(p);
      sent++;
    }
    await new Promise((r) => setTimeout(r, 1));
  }
  await Promise.all(inFlight);
  return sent;
}

async function closedLoop(call: Call, concurrency: number, seconds: number): Promise<number> {
  const end = performance.now() + seconds * 1000;
  let done = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (performance.now() < end) {
      await call();
      done++;
    }
  }));
  return done;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const opt = (name: string, fallback: number) => {
    const i = args.indexOf(name);
    return i >= 0 ? Number(args[i + 1]) : fallback;
  };
  const rounds = opt('--rounds', 4);
  const seconds = opt('--seconds', 4);
  const rate = opt('--rate', 208);
  const bytes = opt('--bytes', 37_450);
  installCleanup(() => killAll());
  const message = Buffer.alloc(bytes, 0x2a);
  const body = Buffer.alloc(5 + bytes);
  body.writeUInt32BE(bytes, 1);
  message.copy(body, 5);

  const servers = new Map<System, { pid: number; port: number; stop: () => Promise<void> }>();
  for (const system of SYSTEM_LIST) {
    const [grpcPort, httpPort] = await freePorts(2);
    const child = spawnPinned(SERVER_CPU, process.execPath, [
      path.join(ROOT, 'dist', 'bench', 'floor.js'), ...FLAGS[system], `127.0.0.1:${grpcPort}`, `127.0.0.1:${httpPort}`,
    ], { stdio: ['ignore', 'ignore', 'inherit'] });
    await waitForPort(grpcPort!, 30_000, () => {
      if (child.exitCode !== null) throw new Error(`${system} exited`);
    });
    servers.set(system, { pid: child.pid!, port: grpcPort!, stop: () => stopChild(child) });
  }

  const samples: Sample[] = [];
  const measure = async (system: System, mode: 'fixed' | 'closed') => {
    const server = servers.get(system)!;
    let call: Call;
    let close: () => void;
    if (system === 'tcp') {
      ({ call, close } = await tcpCaller(server.port, message));
    } else {
      const session = http2.connect(`http://127.0.0.1:${server.port}`);
      call = () => grpcCall(session, body);
      close = () => session.close();
    }
    // Warm-up: the JIT and both HPACK tables.
    await closedLoop(call, 4, 1);
    const before = cpuSplit(server.pid);
    const requests = mode === 'fixed' ? await fixedRate(call, rate, seconds) : await closedLoop(call, 16, seconds);
    const after = cpuSplit(server.pid);
    close();
    const sample = { system, mode, requests, userUs: ((after.user - before.user) * 1e6) / requests, sysUs: ((after.sys - before.sys) * 1e6) / requests };
    samples.push(sample);
    process.stdout.write(`${JSON.stringify({ type: 'h2-floor', ...sample, loadavg: (await import('node:os')).loadavg()[0] })}\n`);
  };
  for (let round = 0; round < rounds; round++) {
    for (const mode of ['fixed', 'closed'] as const) {
      // Alternate which goes first.
      const order: System[] = round % 2 === 0 ? [...SYSTEM_LIST] : [...SYSTEM_LIST].reverse();
      for (const system of order) await measure(system, mode);
    }
  }
  for (const server of servers.values()) await server.stop();

  process.stdout.write(`\nCPU per request, µs (median of ${rounds} rounds; ${bytes}-byte bodies; fixed = ${rate} requests/s, closed = 16 in flight)\n`);
  process.stdout.write('| load | system | user | system | total | ÷ floor |\n|---|---|---:|---:|---:|---:|\n');
  for (const mode of ['fixed', 'closed'] as const) {
    const total = (system: System) => median(samples.filter((s) => s.system === system && s.mode === mode).map((s) => s.userUs + s.sysUs));
    for (const system of SYSTEM_LIST) {
      const of = samples.filter((s) => s.system === system && s.mode === mode);
      const t = total(system);
      process.stdout.write(`| ${mode} | ${system} | ${median(of.map((s) => s.userUs)).toFixed(0)} | ${median(of.map((s) => s.sysUs)).toFixed(0)} | ${t.toFixed(0)} | ${system === 'floor' ? '' : (t / total('floor')).toFixed(2)} |\n`);
    }
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`h2-floor: ${(err as Error).stack ?? String(err)}\n`);
  killAll();
  process.exit(1);
});
