import * as fs from 'node:fs';
import * as http2 from 'node:http2';
import * as os from 'node:os';
import * as path from 'node:path';
import { stringify } from 'yaml';
import { SPANSIEVE_NODE_FLAGS } from '../src/service/node-flags';
import { buildPool, keptInstanceIds, type PooledRequest } from './obi';
import { cpuBusySeconds, cpuSeconds, freePorts, repin, spawnPinned, stopChild, waitForPort } from './proc';
import { shapeNamed } from './shapes';
import { createGrpcSink } from './sinks';
import { LOADGEN_CPU, SERVER_CPU, spansieveConfig } from './systems';

// The A/B of the gRPC port's HTTP/2 layer (protocols::grpc::http2: spansieve | node) by CPU time
// per request, which a busy machine disturbs much less than throughput or latency: spansieve is
// started once per layer and round (alternating), pinned to core 0, sent a fixed number of
// requests of a load shape (16 in flight on one connection, node:http2 client pinned to core 1,
// sink in this process), and its utime+stime over them divided by the count.
//
//   node dist/bench/grpc-layer-cpu.js [shape=obi-sidecar] [rounds=3] [requests=4000]

const TRACE_EXPORT = '/opentelemetry.proto.collector.trace.v1.TraceService/Export';
const ROOT = path.resolve(__dirname, '..', '..');

/** Sends `count` calls; resolves with how many did not end with grpc-status 0 (a full queue refuses some on a busy machine). */
async function send(port: number, requests: readonly PooledRequest[], count: number, inFlight = 16): Promise<number> {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  let next = 0;
  let done = 0;
  let failed = 0;
  await new Promise<void>((resolve, reject) => {
    const one = () => {
      const request = requests[next++ % requests.length]!;
      const stream = session.request({ ':method': 'POST', ':path': TRACE_EXPORT, 'content-type': 'application/grpc', te: 'trailers' });
      let status = '';
      let message = '';
      const read = (h: http2.IncomingHttpHeaders) => {
        if (h['grpc-status'] !== undefined) status = String(h['grpc-status']);
        if (h['grpc-message'] !== undefined) message = String(h['grpc-message']);
      };
      stream.on('response', read);
      stream.on('trailers', read);
      stream.on('data', () => undefined);
      stream.on('error', reject);
      stream.on('close', () => {
        if (status !== '0') failed++;
        if (status === '') return reject(new Error(`no grpc-status ${message}`));
        if (++done === count) resolve();
        else if (next < count) one();
      });
      stream.end(request.grpcFrame);
    };
    for (let i = 0; i < inFlight; i++) one();
  });
  session.close();
  return failed;
}

async function main(): Promise<void> {
  const [shapeName = 'obi-sidecar', roundsArg = '3', countArg = '4000'] = process.argv.slice(2);
  const shape = shapeNamed(shapeName);
  const pool = buildPool({ ...shape.pool, requests: Math.min(shape.pool.requests, 128) });
  const count = Number(countArg);
  const sink = createGrpcSink(() => undefined);
  const [sinkPort = 0] = await freePorts(1);
  await new Promise<void>((resolve) => sink.listen(sinkPort, '127.0.0.1', () => resolve()));
  // The sink and the client share core 1 with whatever else runs there.
  repin(process.pid, [LOADGEN_CPU]);
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'grpc-layer-cpu-'));
  const rows: { layer: string; usPerRequest: number; wallS: number; otherLoad: number }[] = [];
  for (let round = 0; round < Number(roundsArg); round++) {
    const layers = round % 2 === 0 ? (['spansieve', 'node'] as const) : (['node', 'spansieve'] as const);
    for (const layer of layers) {
      const [grpcPort = 0, httpPort = 0] = await freePorts(2);
      const configFile = path.join(workDir, `${layer}.yaml`);
      fs.writeFileSync(configFile, stringify(spansieveConfig(grpcPort, httpPort, sinkPort, keptInstanceIds(shape.pool), true, undefined, undefined, 1, layer)));
      const child = spawnPinned([SERVER_CPU], process.execPath, [...SPANSIEVE_NODE_FLAGS, path.join(ROOT, 'dist', 'src', 'cli.js'), '--config', configFile], { stdio: 'ignore' });
      try {
        await waitForPort(grpcPort, 30_000, () => undefined);
        await send(grpcPort, pool.requests, Math.max(500, count / 2)); // warm-up
        const cpu0 = cpuSeconds(child.pid!);
        const busy0 = cpuBusySeconds(SERVER_CPU);
        const t0 = performance.now();
        const failed = await send(grpcPort, pool.requests, count);
        const wallS = (performance.now() - t0) / 1000;
        const used = cpuSeconds(child.pid!) - cpu0;
        const otherLoad = (cpuBusySeconds(SERVER_CPU) - busy0 - used) / wallS;
        rows.push({ layer, usPerRequest: (used / count) * 1e6, wallS, otherLoad });
        console.log(JSON.stringify({ round, layer, shape: shapeName, requests: count, cpu_us_per_request: Math.round((used / count) * 1e6), requests_per_second: Math.round(count / wallS), other_load_server_core: Number(otherLoad.toFixed(2)), failed }));
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
  console.log(`${shapeName}: CPU per request, spansieve's layer ${mean('spansieve').toFixed(0)} µs, node:http2 ${mean('node').toFixed(0)} µs: ratio ${(mean('spansieve') / mean('node')).toFixed(2)}`);
  fs.rmSync(workDir, { recursive: true, force: true });
}

void main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
