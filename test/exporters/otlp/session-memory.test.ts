import assert from 'node:assert/strict';
import * as http2 from 'node:http2';
import { after, before, describe, test } from 'node:test';
import { GrpcUnaryClient, type UnaryClient } from '../../../src/exporters/otlp/grpc-client';
import { SpansieveGrpcClient } from '../../../src/exporters/otlp/h2-grpc-client';

// node:http2 counts the data a session has queued to send against its maxSessionMemory (10 MB by
// default) and, while over it, resets any stream whose response headers arrive with
// ENHANCE_YOUR_CALM. An exporter with ten consumers sending 4 MB requests to a busy server has
// that much queued: the server has taken the request and answered, the client sees a failure,
// and a retry sends the data twice.

const CALLS_IN_FLIGHT = 10;
const MESSAGE_BYTES = 4 * 1024 * 1024;
const CALLS = 40;
/** CPU the server spends per request, as a server parsing 4 MB would: the client's queue fills meanwhile. */
const SERVER_BUSY_MS = 8;

void describe('GrpcUnaryClient with many large calls in flight', () => {
  const server = http2.createServer();
  let port = 0;

  before(async () => {
    server.on('stream', (stream) => {
      stream.on('error', () => undefined);
      stream.resume();
      stream.on('end', () => {
        const until = performance.now() + SERVER_BUSY_MS;
        while (performance.now() < until) {
          // busy, as parsing would be
        }
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
        stream.end(Buffer.alloc(5));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    port = (server.address() as { port: number }).port;
  });

  after(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  for (const http2Client of ['spansieve', 'node']) void test(`http2: ${http2Client}: ${CALLS_IN_FLIGHT} calls of 4 MB in flight on one connection all succeed (no ENHANCE_YOUR_CALM from the client's own session)`, async () => {
    const options = { tls: undefined, metadata: {} };
    const client: UnaryClient = http2Client === 'node' ? new GrpcUnaryClient(`127.0.0.1:${port}`, options) : new SpansieveGrpcClient(`127.0.0.1:${port}`, options);
    const message = Buffer.alloc(MESSAGE_BYTES, 7);
    const failures: string[] = [];
    let started = 0;
    try {
      // A closed loop: a new call as soon as one ends, as the sending queue's consumers do.
      const consumer = async () => {
        while (started < CALLS) {
          started++;
          const result = await client.call('/x.Y/Export', message, new AbortController().signal, 30_000);
          if (result.code !== 0) failures.push(`${result.code}: ${result.message}`);
        }
      };
      await Promise.all(Array.from({ length: CALLS_IN_FLIGHT }, consumer));
    } finally {
      client.close();
    }
    assert.deepEqual(failures, []);
  });
});
