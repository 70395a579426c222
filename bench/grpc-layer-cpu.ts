import * as http2 from 'node:http2';
import { runLayerAb } from './layer-ab';
import { type PooledRequest } from './obi';
import { spansieveConfig } from './systems';

// The A/B of the gRPC port's HTTP/2 layer (protocols::grpc::http2: spansieve | node) by CPU time
// per request (layer-ab.ts): requests of a load shape, 16 in flight on one connection from a
// node:http2 client.
//
//   node dist/bench/grpc-layer-cpu.js [shape=obi-sidecar] [rounds=3] [requests=4000]

const TRACE_EXPORT = '/opentelemetry.proto.collector.trace.v1.TraceService/Export';

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
  const [shapeName = 'obi-sidecar', rounds = '3', requests = '4000'] = process.argv.slice(2);
  await runLayerAb({
    name: 'grpc',
    nodeName: 'node:http2',
    shapeName,
    rounds: Number(rounds),
    requests: Number(requests),
    config: (layer, ports, keptIds) => spansieveConfig(ports.grpc, ports.http, ports.sink, keptIds, true, undefined, undefined, 1, layer),
    port: 'grpc',
    send: (port, pooled, count) => send(port, pooled, count),
  });
}

void main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
