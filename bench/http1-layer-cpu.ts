import * as net from 'node:net';
import { runLayerAb } from './layer-ab';
import { type PooledRequest } from './obi';
import { spansieveConfig } from './systems';

// The A/B of the OTLP/HTTP port's HTTP/1.1 layer (protocols::http::http1: spansieve | node) by CPU
// time per request (layer-ab.ts), as grpc-layer-cpu.ts does for the gRPC port: OTLP/HTTP protobuf
// requests of a load shape, one in flight on each of a few keep-alive connections (raw sockets).
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
  const [shapeName = 'default', rounds = '3', requests = '4000', connections = '2'] = process.argv.slice(2);
  await runLayerAb({
    name: 'http1',
    nodeName: 'node:http',
    shapeName,
    rounds: Number(rounds),
    requests: Number(requests),
    config: (layer, ports, keptIds) => {
      process.env.SPANSIEVE_BENCH_HTTP1 = layer;
      return spansieveConfig(ports.grpc, ports.http, ports.sink, keptIds);
    },
    port: 'http',
    send: (port, pooled, count) => send(port, pooled, count, Number(connections)),
  });
}

void main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
