import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { stringify } from 'yaml';
import { SPANSIEVE_NODE_FLAGS } from '../src/service/node-flags';
import { buildPool, keptInstanceIds, type PooledRequest } from './obi';
import { cpuBusySeconds, cpuSeconds, freePorts, repin, spawnPinned, stopChild, waitForPort } from './proc';
import { shapeNamed } from './shapes';
import { createGrpcSink } from './sinks';
import { LOADGEN_CPU, SERVER_CPU } from './systems';

// The A/B driver shared by grpc-layer-cpu.ts and http1-layer-cpu.ts: one receiver layer against
// node's, by CPU time per request (which a busy machine disturbs far less than throughput). Each
// round starts spansieve once per layer (alternating which goes first), pinned to core 0, warms it
// up, sends a fixed number of requests from this process on core 1 (the sink here too), and
// divides the server's utime+stime over them by the count.

export type Layer = 'spansieve' | 'node';

export interface LayerAb {
  /** For the temporary directory and the summary line, e.g. "node:http2". */
  readonly name: string;
  readonly nodeName: string;
  readonly shapeName: string;
  readonly rounds: number;
  readonly requests: number;
  /** spansieve's config for this layer. */
  readonly config: (layer: Layer, ports: { grpc: number; http: number; sink: number }, keptIds: readonly string[]) => unknown;
  /** Which of the two ports the load goes to. */
  readonly port: 'grpc' | 'http';
  /** Sends `count` requests; resolves with how many failed. */
  readonly send: (port: number, requests: readonly PooledRequest[], count: number) => Promise<number>;
}

export async function runLayerAb(ab: LayerAb): Promise<void> {
  const shape = shapeNamed(ab.shapeName);
  const pool = buildPool({ ...shape.pool, requests: Math.min(shape.pool.requests, 128) });
  const spansPerRequest = pool.requests[0]?.spans ?? 1;
  const sink = createGrpcSink(() => undefined);
  const [sinkPort = 0] = await freePorts(1);
  await new Promise<void>((resolve) => sink.listen(sinkPort, '127.0.0.1', () => resolve()));
  repin(process.pid, [LOADGEN_CPU]);
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), `${ab.name.replace(/\W/g, '-')}-layer-cpu-`));
  const usPerRequest: Record<Layer, number[]> = { spansieve: [], node: [] };
  for (let round = 0; round < ab.rounds; round++) {
    const layers: readonly Layer[] = round % 2 === 0 ? ['spansieve', 'node'] : ['node', 'spansieve'];
    for (const layer of layers) {
      const [grpc = 0, http = 0] = await freePorts(2);
      const configFile = path.join(workDir, `${layer}.yaml`);
      fs.writeFileSync(configFile, stringify(ab.config(layer, { grpc, http, sink: sinkPort }, keptInstanceIds(shape.pool))));
      const port = ab.port === 'grpc' ? grpc : http;
      const child = spawnPinned([SERVER_CPU], process.execPath, [...SPANSIEVE_NODE_FLAGS, path.join(__dirname, '..', 'src', 'cli.js'), '--config', configFile], { stdio: 'ignore' });
      try {
        await waitForPort(port, 30_000, () => undefined);
        await ab.send(port, pool.requests, Math.max(500, ab.requests / 2)); // warm-up
        const cpu0 = cpuSeconds(child.pid!);
        const busy0 = cpuBusySeconds(SERVER_CPU);
        const t0 = performance.now();
        const failed = await ab.send(port, pool.requests, ab.requests);
        const wallS = (performance.now() - t0) / 1000;
        const used = cpuSeconds(child.pid!) - cpu0;
        const otherLoad = (cpuBusySeconds(SERVER_CPU) - busy0 - used) / wallS;
        const us = (used / ab.requests) * 1e6;
        usPerRequest[layer].push(us);
        console.log(JSON.stringify({ round, layer, shape: ab.shapeName, requests: ab.requests, cpu_us_per_request: Math.round(us), cpu_us_per_span: Number((us / spansPerRequest).toFixed(2)), requests_per_second: Math.round(ab.requests / wallS), other_load_server_core: Number(otherLoad.toFixed(2)), failed }));
      } finally {
        await stopChild(child);
      }
    }
  }
  sink.close();
  const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const [ours, nodes] = [mean(usPerRequest.spansieve), mean(usPerRequest.node)];
  console.log(`${ab.shapeName}: CPU per request, spansieve's layer ${ours.toFixed(0)} µs, ${ab.nodeName} ${nodes.toFixed(0)} µs: ratio ${(ours / nodes).toFixed(2)}`);
  fs.rmSync(workDir, { recursive: true, force: true });
}
