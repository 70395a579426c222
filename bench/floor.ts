import * as fs from 'node:fs';
import type * as net from 'node:net';
import { createGrpcSink, createHttpSink, createRawGrpcSink, type SinkTls } from './sinks';

// The floor: the least a Node OTLP server on the same stack as spansieve can do. node:http2 with
// gRPC framing (the whole stream read, a compressed message inflated) and node:http reading the
// whole body (gunzipped when Content-Encoding: gzip), each answered with an empty success. No
// parsing, filtering or forwarding: the lower bound for spansieve's receive path. With a
// certificate and key, both ports serve TLS (the TLS transports). With --raw (the `floor-raw`
// system) gRPC is served by spansieve's own HTTP/2 layer (src/util/h2) instead of node:http2.
//
// Usage: node dist/bench/floor.js [--raw] GRPC_HOST:PORT HTTP_HOST:PORT [CERT_FILE KEY_FILE]

async function main(raw: boolean, grpcAddress: string, httpAddress: string, tls: SinkTls | undefined): Promise<void> {
  let bytes = 0;
  const count = (message: Buffer) => {
    bytes += message.length;
  };
  const grpcServer = raw ? createRawGrpcSink(count, tls).server : createGrpcSink(count, tls);
  await listenOn(grpcServer, grpcAddress);

  const httpServer = createHttpSink((message) => {
    bytes += message.length;
  }, tls);
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

function listenOn(server: net.Server, address: string): Promise<void> {
  const colon = address.lastIndexOf(':');
  return new Promise<void>((resolve) => server.listen(Number(address.slice(colon + 1)), address.slice(0, colon), () => resolve()));
}

const args = process.argv.slice(2);
const raw = args[0] === '--raw';
const [grpcAddress, httpAddress, certFile, keyFile] = raw ? args.slice(1) : args;
if (!grpcAddress || !httpAddress || (certFile === undefined) !== (keyFile === undefined)) {
  process.stderr.write('usage: node dist/bench/floor.js [--raw] GRPC_HOST:PORT HTTP_HOST:PORT [CERT_FILE KEY_FILE]\n');
  process.exit(2);
}
const tls = certFile && keyFile ? { cert: fs.readFileSync(certFile), key: fs.readFileSync(keyFile) } : undefined;
main(raw, grpcAddress, httpAddress, tls).catch((err: unknown) => {
  process.stderr.write(`floor: ${(err as Error).message}\n`);
  process.exit(1);
});
