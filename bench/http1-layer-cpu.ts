import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { stringify } from 'yaml';
import { SPANSIEVE_NODE_FLAGS } from '../src/service/node-flags';
import { buildPool, keptInstanceIds, type PooledRequest } from './obi';
import { cpuBusySeconds, cpuSeconds, freePorts, repin, spawnPinned, stopChild, waitForPort } from './proc';
import { shapeNamed } from './shapes';
import { createGrpcSink } from './sinks';
import { LOADGEN_CPU, SERVER_CPU, spansieveConfig } from './systems';

const ROOT = path.resolve(__dirname, '..', '..');

// The A/B of the OTLP/HTTP port's HTTP/1.1 layer (protocols::http::http1: spansieve | node) by CPU
// time per request, as grpc-layer-cpu.ts does for the gRPC port: spansieve started once per layer
// and round (alternating), pinned to core 0, sent a fixed number of OTLP/HTTP protobuf requests of
// a load shape (one in flight on each of a few keep-alive connections, raw sockets in this process on
// core 1, the sink too), and its utime+stime over them divided by the count.
//
//   node dist/bench/http1-layer-cpu.js [shape=default] [rounds=3] [requests=4000] [connections=2]
//
// Few connections: with many, the sending queue fills and refusals (503 before the body is read,
// far cheaper than an export) lower the CPU per request of whichever layer is faster.

/** Sends `count` requests over `connections` keep-alive connections; resolves with how many were not 200. */
async function send(port: number, requests: readonly PooledRequest[], count: number, connections = 16): Promise<number> {
  const wire = requests.map((r) =>
    Buffer.concat([Buffer.from(`POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/x-protobuf\r\nContent-Length: ${r.body.length}\r\n\r\n`), r.body]),
  );
  let next = 0;
  let done = 0;
  let failed = 0;
  await new Promise<void>((resolve, reject) => {
    // A refusal before the body is read (a full sending queue) closes its connection: another takes its place.
    const connect = () => {
      const socket = net.connect(port, '127.0.0.1');
      let buf = '';
      const one = () => {
        if (next >= count) {
          socket.end();
          return;
        }
        socket.write(wire[next++ % wire.length]!);
      };
      socket.on('data', (d: Buffer) => {
        buf += d.toString('latin1');
        for (;;) {
          const end = buf.indexOf('\r\n\r\n');
          if (end === -1) return;
          const head = buf.slice(0, end);
          const length = Number(/content-length: *(\d+)/i.exec(head)?.[1] ?? 0);
          if (buf.length < end + 4 + length) return;
          if (!buf.startsWith('HTTP/1.1 200')) failed++;
          buf = buf.slice(end + 4 + length);
          if (++done === count) resolve();
          if (/\r\nconnection: *close/i.test(head)) {
            socket.destroy();
            connect();
            return;
          }
          one();
        }
      });
      socket.on('error', reject);
      one();
    };
    for (let c = 0; c < connections; c++) connect();
  });
  return failed;
}

async function main(): Promise<void> {
  const [shapeName = 'default', roundsArg = '3', countArg = '4000', connectionsArg = '2'] = process.argv.slice(2);
  const connections = Number(connectionsArg);
  const shape = shapeNamed(shapeName);
  const pool = buildPool({ ...shape.pool, requests: Math.min(shape.pool.requests, 128) });
  const count = Number(countArg);
  const sink = createGrpcSink(() => undefined);
  const [sinkPort = 0] = await freePorts(1);
  await new Promise<void>((resolve) => sink.listen(sinkPort, '127.0.0.1', () => resolve()));
  repin(process.pid, [LOADGEN_CPU]);
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'http1-layer-cpu-'));
  const rows: { layer: string; usPerRequest: number }[] = [];
  for (let round = 0; round < Number(roundsArg); round++) {
    const layers = round % 2 === 0 ? (['spansieve', 'node'] as const) : (['node', 'spansieve'] as const);
    for (const layer of layers) {
      const [grpcPort = 0, httpPort = 0] = await freePorts(2);
      const configFile = path.join(workDir, `${layer}.yaml`);
      process.env.SPANSIEVE_BENCH_HTTP1 = layer;
      fs.writeFileSync(configFile, stringify(spansieveConfig(grpcPort, httpPort, sinkPort, keptInstanceIds(shape.pool))));
      const child = spawnPinned([SERVER_CPU], process.execPath, [...SPANSIEVE_NODE_FLAGS, path.join(ROOT, 'dist', 'src', 'cli.js'), '--config', configFile], { stdio: 'ignore' });
      try {
        await waitForPort(httpPort, 30_000, () => undefined);
        await send(httpPort, pool.requests, Math.max(500, count / 2), connections); // warm-up
        const cpu0 = cpuSeconds(child.pid!);
        const busy0 = cpuBusySeconds(SERVER_CPU);
        const t0 = performance.now();
        const failed = await send(httpPort, pool.requests, count, connections);
        const wallS = (performance.now() - t0) / 1000;
        const used = cpuSeconds(child.pid!) - cpu0;
        const otherLoad = (cpuBusySeconds(SERVER_CPU) - busy0 - used) / wallS;
        rows.push({ layer, usPerRequest: (used / count) * 1e6 });
        console.log(JSON.stringify({ round, layer, shape: shapeName, requests: count, cpu_us_per_request: Math.round((used / count) * 1e6), cpu_us_per_span: Number(((used / count) * 1e6 / (pool.requests[0]?.spans ?? 1)).toFixed(2)), requests_per_second: Math.round(count / wallS), other_load_server_core: Number(otherLoad.toFixed(2)), failed }));
      } finally {
        await stopChild(child);
      }
    }
  }
  sink.close();
  const mean = (layer: string) => {
    const xs = rows.filter((r) => r.layer === layer).map((r) => r.usPerRequest);
    return xs.reduce((a, b) => a + b, 0) / xs.length;
  };
  console.log(`${shapeName}: CPU per request, spansieve's layer ${mean('spansieve').toFixed(0)} µs, node:http ${mean('node').toFixed(0)} µs: ratio ${(mean('spansieve') / mean('node')).toFixed(2)}`);
  fs.rmSync(workDir, { recursive: true, force: true });
}

void main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
