import * as http from 'node:http';
import * as http2 from 'node:http2';
import { createGrpcSink, createHttpSink } from './sinks';

// The floor: the least a Node OTLP server on the same stack as spansieve can do. node:http2 with
// gRPC framing (the whole stream read, a compressed message inflated) and node:http reading the
// whole body (gunzipped when Content-Encoding: gzip), each answered with an empty success. No
// parsing, filtering or forwarding: the lower bound for spansieve's receive path.
//
// Usage: node dist/bench/floor.js GRPC_HOST:PORT HTTP_HOST:PORT

async function main(grpcAddress: string, httpAddress: string): Promise<void> {
  let bytes = 0;
  const grpcServer = createGrpcSink((message) => {
    bytes += message.length;
  });
  await listenOn(grpcServer, grpcAddress);

  const httpServer = createHttpSink((message) => {
    bytes += message.length;
  });
  await listenOn(httpServer, httpAddress);

  const stop = () => {
    grpcServer.close();
    httpServer.closeAllConnections();
    httpServer.close();
    process.stderr.write(`floor: received ${bytes} bytes\n`);
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

function listenOn(server: http.Server | http2.Http2Server, address: string): Promise<void> {
  const colon = address.lastIndexOf(':');
  return new Promise<void>((resolve) => server.listen(Number(address.slice(colon + 1)), address.slice(0, colon), () => resolve()));
}

const [grpcAddress, httpAddress] = process.argv.slice(2);
if (!grpcAddress || !httpAddress) {
  process.stderr.write('usage: node dist/bench/floor.js GRPC_HOST:PORT HTTP_HOST:PORT\n');
  process.exit(2);
}
main(grpcAddress, httpAddress).catch((err: unknown) => {
  process.stderr.write(`floor: ${(err as Error).message}\n`);
  process.exit(1);
});
