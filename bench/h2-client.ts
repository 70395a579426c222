import * as path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { GrpcUnaryClient, type UnaryClient } from '../src/exporters/otlp/grpc-client';
import { SpansieveGrpcClient } from '../src/exporters/otlp/h2-grpc-client';
import { freePorts, installCleanup, killAll, spawnPinned, stopChild, waitForPort } from './proc';
import { LOADGEN_CPU, SERVER_CPU } from './systems';

// The otlp exporter's two HTTP/2 clients (`http2: spansieve | node`) side by side, the client's
// own CPU only: each runs in a child process pinned to the server core, calling the `floor-raw`
// sink (spansieve's HTTP/2 server layer, pinned to the other core) with bodies of a shape's size;
// the child measures its own CPU (process.cpuUsage) over the window. Alternated spansieve, node,
// node, spansieve, ... Two loads as in bench/h2-floor.ts: a fixed rate and a closed loop (16 in
// flight).
//
// Usage: node dist/bench/h2-client.js [--rounds N] [--seconds S] [--rate REQ_PER_S] [--bytes N]
// (defaults 4 rounds, 4 s, 208 requests/s: obi-sidecar's receive rate at 20 k spans/s, an upper
// bound for its forwarded calls; 9,000 bytes: about what it forwards per request, 24 of 96 spans).

type Client = 'spansieve' | 'node';
type Mode = 'fixed' | 'closed';

interface ChildResult {
  readonly calls: number;
  readonly failed: number;
  readonly userUs: number;
  readonly sysUs: number;
}

async function child(client: Client, port: number, mode: Mode, seconds: number, bytes: number, rate: number): Promise<void> {
  const options = { tls: undefined, metadata: {} };
  const c: UnaryClient = client === 'node' ? new GrpcUnaryClient(`127.0.0.1:${port}`, options) : new SpansieveGrpcClient(`127.0.0.1:${port}`, options);
  const message = Buffer.alloc(bytes, 7);
  let calls = 0;
  let failed = 0;
  let running = true;
  const one = async () => {
    const r = await c.call('/opentelemetry.proto.collector.trace.v1.TraceService/Export', message, new AbortController().signal, 5000);
    if (r.code === 0) calls++;
    else failed++;
  };
  const run = async (ms: number) => {
    running = true;
    const until = Date.now() + ms;
    if (mode === 'closed') {
      const loop = async () => {
        while (running && Date.now() < until) await one();
      };
      await Promise.all(Array.from({ length: 16 }, loop));
    } else {
      const pending: Promise<void>[] = [];
      await new Promise<void>((resolve) => {
        const timer = setInterval(() => {
          if (Date.now() >= until) {
            clearInterval(timer);
            resolve();
            return;
          }
          pending.push(one());
        }, 1000 / rate);
      });
      await Promise.all(pending);
    }
  };
  await run(1000); // warm-up: connection, JIT
  calls = 0;
  failed = 0;
  const start = process.cpuUsage();
  await run(seconds * 1000);
  const used = process.cpuUsage(start);
  c.close();
  const result: ChildResult = { calls, failed, userUs: used.user, sysUs: used.system };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

async function runChild(client: Client, port: number, mode: Mode, seconds: number, bytes: number, rate: number): Promise<ChildResult> {
  const proc: ChildProcess = spawnPinned(SERVER_CPU, process.execPath, [__filename, '--child', client, String(port), mode, String(seconds), String(bytes), String(rate)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  proc.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  await new Promise<void>((resolve) => proc.on('exit', () => resolve()));
  return JSON.parse(out.trim()) as ChildResult;
}

async function main(argv: string[]): Promise<void> {
  if (argv[0] === '--child') {
    await child(argv[1] as Client, Number(argv[2]), argv[3] as Mode, Number(argv[4]), Number(argv[5]), Number(argv[6]));
    return;
  }
  const option = (name: string, fallback: number) => {
    const i = argv.indexOf(name);
    return i >= 0 ? Number(argv[i + 1]) : fallback;
  };
  const rounds = option('--rounds', 4);
  const seconds = option('--seconds', 4);
  const rate = option('--rate', 208);
  const bytes = option('--bytes', 9000);
  installCleanup(() => killAll());
  const [grpcPort, httpPort] = await freePorts(2);
  const sink = spawnPinned(LOADGEN_CPU, process.execPath, [path.join(__dirname, 'floor.js'), '--raw', `127.0.0.1:${grpcPort!}`, `127.0.0.1:${httpPort!}`], { stdio: 'ignore' });
  try {
    await waitForPort(grpcPort!, 10_000, () => undefined);
    const perCall: Record<string, number[]> = {};
    for (let round = 0; round < rounds; round++) {
      const order: Client[] = round % 2 === 0 ? ['spansieve', 'node'] : ['node', 'spansieve'];
      for (const mode of ['fixed', 'closed'] as Mode[]) {
        for (const client of order) {
          const r = await runChild(client, grpcPort!, mode, seconds, bytes, rate);
          const us = (r.userUs + r.sysUs) / Math.max(1, r.calls);
          (perCall[`${mode} ${client}`] ??= []).push(us);
          process.stdout.write(`${JSON.stringify({ round, mode, client, bytes, ...r, cpu_us_per_call: Math.round(us) })}\n`);
        }
      }
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    for (const mode of ['fixed', 'closed']) {
      const s = median(perCall[`${mode} spansieve`]!);
      const n = median(perCall[`${mode} node`]!);
      process.stdout.write(`${JSON.stringify({ summary: mode, bytes, spansieve_us: Math.round(s), node_us: Math.round(n), ratio: Math.round((s / n) * 100) / 100 })}\n`);
    }
  } finally {
    await stopChild(sink);
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
