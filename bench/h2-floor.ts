import * as fs from 'node:fs';
import * as http2 from 'node:http2';
import * as path from 'node:path';
import { freePorts, installCleanup, killAll, spawnPinned, stopChild, ticksPerSecond, waitForPort } from './proc';
import { SERVER_CPU } from './systems';

// The two gRPC floors side by side (issue 19): bench/floor.ts on node:http2 (`floor`) and on
// spansieve's own HTTP/2 layer, src/util/h2 (`floor-raw`). Both run at once, pinned to the server
// core; this process is the client (node:http2, one connection, gRPC unary calls with a body of
// the shape's size) and measures each server's CPU (user and system, from /proc) over the same
// load, alternating floor, floor-raw, floor, ... Two loads: a fixed rate (each request wakes the
// server, as at 20 k spans/s) and a closed loop (16 in flight: the per-request cost with wake-ups
// shared).
//
// Usage: node dist/bench/h2-floor.js [--rounds N] [--seconds S] [--rate REQ_PER_S] [--bytes N]
// (defaults 4 rounds, 4 s, 208 requests/s = obi-sidecar's 96 spans at 20 k spans/s, 37,450 bytes).

const ROOT = path.resolve(__dirname, '..', '..');
type System = 'floor' | 'floor-raw';

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

function call(session: http2.ClientHttp2Session, body: Buffer): Promise<void> {
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

async function fixedRate(session: http2.ClientHttp2Session, body: Buffer, rate: number, seconds: number): Promise<number> {
  const start = performance.now();
  const inFlight = new Set<Promise<void>>();
  let sent = 0;
  while (performance.now() - start < seconds * 1000) {
    const due = Math.floor(((performance.now() - start) / 1000) * rate);
    while (sent < due) {
      const p = call(session, body).finally(() => inFlight.delete(p));
      inFlight.add(p);
      sent++;
    }
    await new Promise((r) => setTimeout(r, 1));
  }
  await Promise.all(inFlight);
  return sent;
}

async function closedLoop(session: http2.ClientHttp2Session, body: Buffer, concurrency: number, seconds: number): Promise<number> {
  const end = performance.now() + seconds * 1000;
  let done = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (performance.now() < end) {
      await call(session, body);
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
  for (const system of ['floor', 'floor-raw'] as const) {
    const [grpcPort, httpPort] = await freePorts(2);
    const child = spawnPinned(SERVER_CPU, process.execPath, [
      path.join(ROOT, 'dist', 'bench', 'floor.js'), ...(system === 'floor-raw' ? ['--raw'] : []), `127.0.0.1:${grpcPort}`, `127.0.0.1:${httpPort}`,
    ], { stdio: ['ignore', 'ignore', 'inherit'] });
    await waitForPort(grpcPort!, 30_000, () => {
      if (child.exitCode !== null) throw new Error(`${system} exited`);
    });
    servers.set(system, { pid: child.pid!, port: grpcPort!, stop: () => stopChild(child) });
  }

  const samples: Sample[] = [];
  const measure = async (system: System, mode: 'fixed' | 'closed') => {
    const server = servers.get(system)!;
    const session = http2.connect(`http://127.0.0.1:${server.port}`);
    // Warm-up: the JIT and both HPACK tables.
    await closedLoop(session, body, 4, 1);
    const before = cpuSplit(server.pid);
    const requests = mode === 'fixed' ? await fixedRate(session, body, rate, seconds) : await closedLoop(session, body, 16, seconds);
    const after = cpuSplit(server.pid);
    session.close();
    const sample = { system, mode, requests, userUs: ((after.user - before.user) * 1e6) / requests, sysUs: ((after.sys - before.sys) * 1e6) / requests };
    samples.push(sample);
    process.stdout.write(`${JSON.stringify({ type: 'h2-floor', ...sample, loadavg: (await import('node:os')).loadavg()[0] })}\n`);
  };
  for (let round = 0; round < rounds; round++) {
    for (const mode of ['fixed', 'closed'] as const) {
      // Alternate which goes first.
      const order: System[] = round % 2 === 0 ? ['floor', 'floor-raw'] : ['floor-raw', 'floor'];
      for (const system of order) await measure(system, mode);
    }
  }
  for (const server of servers.values()) await server.stop();

  const median = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
  };
  process.stdout.write(`\nCPU per request, µs (median of ${rounds} rounds; ${bytes}-byte bodies; fixed = ${rate} requests/s, closed = 16 in flight)\n`);
  process.stdout.write('| load | system | user | system | total | floor-raw ÷ floor |\n|---|---|---:|---:|---:|---:|\n');
  for (const mode of ['fixed', 'closed'] as const) {
    const total = (system: System) => median(samples.filter((s) => s.system === system && s.mode === mode).map((s) => s.userUs + s.sysUs));
    for (const system of ['floor', 'floor-raw'] as const) {
      const of = samples.filter((s) => s.system === system && s.mode === mode);
      const t = total(system);
      process.stdout.write(`| ${mode} | ${system} | ${median(of.map((s) => s.userUs)).toFixed(0)} | ${median(of.map((s) => s.sysUs)).toFixed(0)} | ${t.toFixed(0)} | ${system === 'floor-raw' ? (t / total('floor')).toFixed(2) : ''} |\n`);
    }
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`h2-floor: ${(err as Error).stack ?? String(err)}\n`);
  killAll();
  process.exit(1);
});
