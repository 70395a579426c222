import * as grpc from '@grpc/grpc-js';
import * as http from 'node:http';
import * as zlib from 'node:zlib';

// The floor: the least a Node OTLP server on the same stack can do. grpc-js with raw Buffer
// (de)serializers (grpc-js itself inflates grpc-gzip messages) and node:http reading the whole body
// (gunzipped when Content-Encoding: gzip), each answered with an empty success. No parsing, no
// filtering, no forwarding: the lower bound for spansieve's receive path.
//
// Usage: node dist/bench/floor.js GRPC_HOST:PORT HTTP_HOST:PORT

const EXPORT_PATH = '/opentelemetry.proto.collector.trace.v1.TraceService/Export';
const passThrough = (value: Buffer): Buffer => value;
const EMPTY = Buffer.alloc(0);

async function main(grpcAddress: string, httpAddress: string): Promise<void> {
  const server = new grpc.Server({ 'grpc.max_receive_message_length': 64 * 1024 * 1024 });
  let bytes = 0;
  server.register(
    EXPORT_PATH,
    (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
      bytes += call.request.length;
      callback(null, EMPTY);
    },
    passThrough,
    passThrough,
    'unary',
  );
  await new Promise<number>((resolve, reject) =>
    server.bindAsync(grpcAddress, grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))),
  );

  const httpServer = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      let body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
      if (req.headers['content-encoding'] === 'gzip') body = zlib.gunzipSync(body);
      bytes += body.length;
      res.writeHead(200, { 'content-type': 'application/x-protobuf', 'content-length': 0 }).end();
    });
  });
  httpServer.keepAliveTimeout = 60_000;
  const colon = httpAddress.lastIndexOf(':');
  await new Promise<void>((resolve) => httpServer.listen(Number(httpAddress.slice(colon + 1)), httpAddress.slice(0, colon), () => resolve()));

  const stop = () => {
    server.forceShutdown();
    httpServer.closeAllConnections();
    httpServer.close();
    process.stderr.write(`floor: received ${bytes} bytes\n`);
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
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
