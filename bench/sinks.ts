import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as https from 'node:https';
import * as zlib from 'node:zlib';
import { encodeHeaders } from '../src/util/h2/hpack';
import type { H2ConnectionOptions } from '../src/util/h2/connection';
import { createH2Server, type H2Server } from '../src/util/h2/server';

const EMPTY_RESPONSE_FRAME = Buffer.alloc(5);
const OK_TRAILERS = { 'grpc-status': '0' };

/** PEM certificate and key: the floor serves TLS with them for the TLS transports (the sink never does). */
export interface SinkTls {
  readonly cert: Buffer;
  readonly key: Buffer;
}

/**
 * The least an OTLP/gRPC server can do on node:http2: read each call's one message (inflated when
 * its compressed flag is set), hand it to `onMessage`, answer an empty success. Used by the floor
 * and by the load generator's sink.
 */
export function createGrpcSink(onMessage: (message: Buffer) => void, tls?: SinkTls): http2.Http2Server | http2.Http2SecureServer {
  // The same HTTP/2 settings as spansieve's receiver (src/receivers/otlp/grpc-server.ts).
  const options = { maxSessionMemory: 1024, settings: { initialWindowSize: 1024 * 1024, maxFrameSize: 1024 * 1024 } };
  const server: http2.Http2Server | http2.Http2SecureServer = tls ? http2.createSecureServer({ ...options, ...tls }) : http2.createServer(options);
  server.on('session', (session) => session.on('connect', () => session.setLocalWindowSize(16 * 1024 * 1024)));
  server.on('stream', (stream) => {
    const chunks: Buffer[] = [];
    stream.on('error', () => undefined);
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('end', () => {
      const frame = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
      const message = frame.subarray(5, 5 + frame.readUInt32BE(1));
      onMessage(frame[0] === 1 ? zlib.gunzipSync(message) : message);
      // A call the client gave up on (its timeout) ends here too; it can no longer be answered.
      if (stream.destroyed) return;
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.once('wantTrailers', () => stream.sendTrailers(OK_TRAILERS));
      stream.end(EMPTY_RESPONSE_FRAME);
    });
  });
  return server;
}

// The fixed gRPC success, HPACK-encoded once: :status 200 is one static-table octet.
const RAW_RESPONSE_HEADERS = encodeHeaders([[':status', '200'], ['content-type', 'application/grpc']]);
const RAW_OK_TRAILERS = encodeHeaders([['grpc-status', '0']]);

/**
 * The same as createGrpcSink on spansieve's own HTTP/2 layer (src/util/h2) instead of node:http2,
 * with the same windows and frame size: the floor's `floor-raw` variant (issue 19).
 */
export function createRawGrpcSink(onMessage: (message: Buffer) => void, tls?: SinkTls, options?: H2ConnectionOptions): H2Server {
  return createH2Server({
    onRequest(stream) {
      const frame = stream.body();
      const message = frame.subarray(5, 5 + frame.readUInt32BE(1));
      onMessage(frame[0] === 1 ? zlib.gunzipSync(message) : message);
      stream.respondEncoded(RAW_RESPONSE_HEADERS, EMPTY_RESPONSE_FRAME, RAW_OK_TRAILERS);
    },
  }, { initialWindowSize: 1024 * 1024, maxFrameSize: 1024 * 1024, connectionWindowSize: 16 * 1024 * 1024, maxBodyBytes: 64 * 1024 * 1024, ...options }, tls);
}

/** The same for OTLP/HTTP: read the whole body (gunzipped when Content-Encoding: gzip), answer 200. */
export function createHttpSink(onMessage: (message: Buffer) => void, tls?: SinkTls): http.Server {
  const handler: http.RequestListener = (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      let body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
      if (req.headers['content-encoding'] === 'gzip') body = zlib.gunzipSync(body);
      onMessage(body);
      res.writeHead(200, { 'content-type': 'application/x-protobuf', 'content-length': 0 }).end();
    });
  };
  const server = tls ? https.createServer(tls, handler) : http.createServer(handler);
  server.keepAliveTimeout = 60_000;
  return server;
}
