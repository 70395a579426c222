import * as fs from 'node:fs';
import * as net from 'node:net';
import { createGrpcSink, createHttpSink, createRawGrpcSink, type SinkTls } from './sinks';

// The floor: the least a Node OTLP server on the same stack as spansieve can do. node:http2 with
// gRPC framing (the whole stream read, a compressed message inflated) and node:http reading the
// whole body (gunzipped when Content-Encoding: gzip), each answered with an empty success. No
// parsing, filtering or forwarding: the lower bound for spansieve's receive path. With a
// certificate and key, both ports serve TLS (the TLS transports). With --raw (the `floor-raw`
// system) gRPC is served by spansieve's own HTTP/2 layer (src/util/h2) instead of node:http2.
// With --tcp (bench/h2-floor.ts only) the gRPC port speaks no HTTP at all: 4-octet length, body,
// one octet back: what a request costs a Node process with no protocol.
//
// Usage: node dist/bench/floor.js [--raw|--tcp] GRPC_HOST:PORT HTTP_HOST:PORT [CERT_FILE KEY_FILE]

async function main(mode: string | undefined, grpcAddress: string, httpAddress: string, tls: SinkTls | undefined): Promise<void> {
  let bytes = 0;
  const count = (message: Buffer) => {
    bytes += message.length;
  };
  const grpcServer = mode === '--raw' ? createRawGrpcSink(count, tls).server : mode === '--tcp' ? lengthPrefixedServer(count) : createGrpcSink(count, tls);
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

function lengthPrefixedServer(onMessage: (message: Buffer) => void): net.Server {
  return net.createServer((socket) => {
    let chunks: Buffer[] = [];
    let have = 0;
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      have += chunk.length;
      for (;;) {
        if (have < 4) return;
        const all = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, have);
        const length = all.readUInt32BE(0);
        if (have < 4 + length) {
          chunks = [all];
          return;
        }
        onMessage(all.subarray(4, 4 + length));
        socket.write(ACK);
        chunks = have > 4 + length ? [all.subarray(4 + length)] : [];
        have -= 4 + length;
      }
    });
  });
}

const ACK = Buffer.from([1]);

function listenOn(server: net.Server, address: string): Promise<void> {
  const colon = address.lastIndexOf(':');
  return new Promise<void>((resolve) => server.listen(Number(address.slice(colon + 1)), address.slice(0, colon), () => resolve()));
}

const args = process.argv.slice(2);
const mode = args[0]?.startsWith('--') ? args.shift() : undefined;
const [grpcAddress, httpAddress, certFile, keyFile] = args;
if ((mode !== undefined && mode !== '--raw' && mode !== '--tcp') || !grpcAddress || !httpAddress || (certFile === undefined) !== (keyFile === undefined)) {
  process.stderr.write('usage: node dist/bench/floor.js [--raw|--tcp] GRPC_HOST:PORT HTTP_HOST:PORT [CERT_FILE KEY_FILE]\n');
  process.exit(2);
}
const tls = certFile && keyFile ? { cert: fs.readFileSync(certFile), key: fs.readFileSync(keyFile) } : undefined;
main(mode, grpcAddress, httpAddress, tls).catch((err: unknown) => {
  process.stderr.write(`floor: ${(err as Error).message}\n`);
  process.exit(1);
});
