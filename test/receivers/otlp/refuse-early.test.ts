import assert from 'node:assert/strict';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import { after, before, describe, test } from 'node:test';
import { types } from '../../../src/pdata/codec';
import { EXPORT_METHOD } from '../../../src/pdata/otlp';
import type { Service } from '../../../src/service/service';
import { encodeTraces, hostInstance, obiResourceSpans, obiSpan } from '../../helpers/obi';
import { freePorts, waitFor } from '../../helpers/ports';
import { captureLogs, startService } from '../../helpers/service';
import { GrpcSink } from '../../helpers/sink';

// With the sending queue at capacity, a request is refused before its body is read: the answer
// comes while the client is still sending, and nothing accepted before is lost.

const KEPT = hostInstance('web-1', 4242);
/** How long a refusal may take; a receiver that waits for the body never answers these requests. */
const ANSWER_WITHIN_MS = 5000;
const QUEUE_FULL = /sending queue of exporter otlp\/sink is full \(1 batches\)/;

void describe('OTLP receiver with a full sending queue', () => {
  const sink = new GrpcSink();
  let service: Service | undefined;
  let grpcPort = 0;
  let httpPort = 0;
  /** Span names of every request the service accepted. */
  const accepted: string[] = [];
  let sent = 0;
  const logs = captureLogs('warn');

  before(async () => {
    await sink.start();
    // The sink never answers: the one consumer stays busy (timeout, retry, timeout...), one batch
    // waits in the queue, and the queue is full until the sink answers again.
    sink.reply = () => ({ kind: 'hang' });
    [grpcPort, httpPort] = await freePorts(2);
    service = await startService({
      receivers: { otlp: { protocols: { grpc: { endpoint: `127.0.0.1:${grpcPort}` }, http: { endpoint: `127.0.0.1:${httpPort}` } } } },
      exporters: {
        'otlp/sink': {
          endpoint: `127.0.0.1:${sink.port}`,
          tls: { insecure: true },
          compression: 'none',
          timeout: '1s',
          retry_on_failure: { initial_interval: '50ms', max_interval: '50ms', randomization_factor: 0 },
          sending_queue: { enabled: true, queue_size: 1, num_consumers: 1 },
        },
      },
      service: { pipelines: { traces: { receivers: ['otlp'], exporters: ['otlp/sink'] } }, telemetry: { metrics: { level: 'none' } } },
    }, logs.logger);
  });

  after(async () => {
    sink.reply = () => ({ kind: 'ok' });
    await service?.shutdown();
    await sink.stop();
  });

  /** Sends whole requests over HTTP until one is refused with 503; the others are accepted. */
  async function fillQueue(): Promise<void> {
    for (let i = 0; i < 50; i++) {
      const name = `fill-${sent++}`;
      const res = await fetch(`http://127.0.0.1:${httpPort}/v1/traces`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-protobuf' },
        body: encodeTraces([obiResourceSpans(KEPT, [obiSpan({ name })])]),
      });
      await res.arrayBuffer();
      if (res.status === 503) return;
      assert.equal(res.status, 200);
      accepted.push(name);
    }
    assert.fail('the queue never filled');
  }

  void test('gRPC: a call whose message is still arriving gets UNAVAILABLE at once, with a RetryInfo', { timeout: 15_000 }, async () => {
    await fillQueue();
    const session = http2.connect(`http://127.0.0.1:${grpcPort}`);
    try {
      const stream = session.request({ ':method': 'POST', ':path': EXPORT_METHOD.traces, 'content-type': 'application/grpc', te: 'trailers' });
      // A prefix declaring 100,000 bytes and the first 1,000 of them; the rest never comes.
      const prefix = Buffer.alloc(5);
      prefix.writeUInt32BE(100_000, 1);
      stream.write(Buffer.concat([prefix, Buffer.alloc(1000)]));
      const headers = await new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no answer within ${ANSWER_WITHIN_MS} ms while the message was still being sent`)), ANSWER_WITHIN_MS);
        stream.once('response', (h) => {
          clearTimeout(timer);
          resolve(h);
        });
        stream.once('error', reject);
      });
      assert.equal(headers['grpc-status'], '14');
      assert.match(decodeURIComponent(String(headers['grpc-message'])), QUEUE_FULL);
      const details = types.Status.decode(Buffer.from(String(headers['grpc-status-details-bin']), 'base64')) as unknown as { details: { typeUrl: string }[] };
      assert.equal(details.details[0]?.typeUrl, 'type.googleapis.com/google.rpc.RetryInfo');
    } finally {
      session.destroy();
    }
  });

  void test('gRPC: one connection keeps getting answers through many refused 2 MB calls (flow-control windows given back)', { timeout: 60_000 }, async () => {
    await fillQueue();
    const session = http2.connect(`http://127.0.0.1:${grpcPort}`);
    const message = Buffer.alloc(2 * 1024 * 1024);
    const prefix = Buffer.alloc(5);
    prefix.writeUInt32BE(message.length, 1);
    try {
      // 40 x 2 MiB is well past the 16 MiB connection window: unread bytes the server never
      // acknowledges would stall the connection after a handful of calls.
      for (let call = 0; call < 40; call++) {
        const status = await new Promise<string>((resolve, reject) => {
          const stream = session.request({ ':method': 'POST', ':path': EXPORT_METHOD.traces, 'content-type': 'application/grpc', te: 'trailers' });
          const timer = setTimeout(() => {
            stream.close(http2.constants.NGHTTP2_CANCEL);
            reject(new Error(`call ${call} got no answer within ${ANSWER_WITHIN_MS} ms on a connection that had ${call} refused calls`));
          }, ANSWER_WITHIN_MS);
          stream.on('response', (h) => {
            clearTimeout(timer);
            resolve(String(h['grpc-status']));
          });
          stream.on('error', () => undefined);
          stream.resume();
          stream.write(prefix);
          stream.end(message);
        });
        assert.equal(status, '14', `call ${call}`);
      }
    } finally {
      session.destroy();
    }
  });

  void test('HTTP: a request whose body is still arriving gets 503 with Retry-After at once', { timeout: 15_000 }, async () => {
    await fillQueue();
    const response = await new Promise<{ status: number; retryAfter: string | undefined; body: Buffer }>((resolve, reject) => {
      const req = http.request({
        host: '127.0.0.1',
        port: httpPort,
        method: 'POST',
        path: '/v1/traces',
        headers: { 'content-type': 'application/x-protobuf', 'content-length': 100_000 },
      });
      const timer = setTimeout(() => {
        req.destroy();
        reject(new Error(`no answer within ${ANSWER_WITHIN_MS} ms while the body was still being sent`));
      }, ANSWER_WITHIN_MS);
      req.on('error', reject);
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          clearTimeout(timer);
          resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'], body: Buffer.concat(chunks) });
          req.destroy();
        });
      });
      // The first 1,000 of 100,000 bytes; the rest never comes.
      req.write(Buffer.alloc(1000));
    });
    assert.equal(response.status, 503);
    assert.equal(response.retryAfter, '1');
    const status = types.Status.decode(response.body) as unknown as { code: number; message: string };
    assert.equal(status.code, 14);
    assert.match(status.message, QUEUE_FULL);
  });

  void test('a storm of refusals logs one warn line per 10 s, then how many it left out', { timeout: 15_000 }, async () => {
    await fillQueue();
    const refusalLines = () => logs.lines.filter((l) => String(l.msg).startsWith('refused export request'));
    const before = refusalLines().length;
    const started = Date.now();
    for (let i = 0; i < 40; i++) {
      const res = await fetch(`http://127.0.0.1:${httpPort}/v1/traces`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-protobuf' },
        body: encodeTraces([obiResourceSpans(KEPT, [obiSpan()])]),
      });
      await res.arrayBuffer();
      assert.equal(res.status, 503);
    }
    const intervals = Math.ceil((Date.now() - started) / 10_000);
    assert.ok(refusalLines().length >= 1, 'refusals are logged');
    assert.ok(refusalLines().length - before <= intervals, `${refusalLines().length - before} lines for 40 refusals`);
    assert.ok(refusalLines().every((l) => typeof l.suppressed === 'number'), 'each line says how many it left out');
  });

  void test('every request accepted while the queue was full reaches the sink once it answers', { timeout: 30_000 }, async () => {
    assert.ok(accepted.length >= 2, `requests were accepted before the queue filled: ${accepted.length}`);
    sink.reply = () => ({ kind: 'ok' });
    const delivered = () => accepted.filter((name) => sink.requests.some((r) => r.body.includes(Buffer.from(name))));
    await waitFor(`all ${accepted.length} accepted requests at the sink`, () => delivered().length === accepted.length, 20_000);
  });
});
