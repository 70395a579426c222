import * as grpc from '@grpc/grpc-js';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-grpc';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as http2 from 'node:http2';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { types } from '../../../src/pdata/codec';
import { EXPORT_METHOD } from '../../../src/pdata/otlp';
import type { Service } from '../../../src/service/service';
import { rawExportMethod } from '../../helpers/grpc';
import { Jaeger } from '../../helpers/jaeger';
import { encodeTraces, hostInstance, obiResourceSpans, obiSpan } from '../../helpers/obi';
import { freePorts } from '../../helpers/ports';
import { startService } from '../../helpers/service';
import { GrpcSink } from '../../helpers/sink';

// A call refused before its message is read (over max_recv_msg_size_mib, a full sending queue)
// reaches every real client as its status, while the client is still sending, without the client
// waiting for its own deadline: curl (nghttp2), Node's http2 client, grpc-js, the OpenTelemetry JS
// exporter and grpc-go (Jaeger's otlp exporter). Before the fix curl printed the status and then
// hung until its timeout, and Node's http2 client lost it on a 20-50 MiB body.

const LIMIT_MIB = 1;
const LIMIT = LIMIT_MIB * 1024 * 1024;
const ATTEMPTS = 20;
/** Each call's own deadline; a call answered only at its deadline fails the test. */
const CALL_DEADLINE_MS = 15_000;
const TOO_LARGE = new RegExp(`request message of \\d+ bytes exceeds max_recv_msg_size_mib \\(${LIMIT} bytes\\)`);
const QUEUE_FULL = /sending queue of exporter otlp\/sink is full/;
const RESOURCE_EXHAUSTED = 8;
const UNAVAILABLE = 14;

/** A gRPC-framed message of `size` bytes (zeros: refused from its prefix, never parsed). */
function framed(size: number): Buffer {
  const body = Buffer.alloc(5 + size);
  body.writeUInt32BE(size, 1);
  return body;
}

/** An OTLP request of about `size` bytes: one span with one large attribute. */
function tracesOfSize(size: number): Buffer {
  return encodeTraces([obiResourceSpans(hostInstance('big', 1), [obiSpan({ attributes: [{ key: 'blob', value: { stringValue: 'x'.repeat(size) } }] })])]);
}

interface Answer {
  status: number | undefined;
  message: string;
  /** What else a client reported: its exit code, reset code or error. */
  note: string;
}

function describeAnswers(answers: readonly Answer[]): string {
  return answers.map((a, i) => `#${i}: ${a.status ?? 'no status'} ${a.note}`).join('; ');
}

/** Runs `call` `n` times in turn; stops at the first answer that is not `code` with a message matching `message`. */
async function expectEach(n: number, code: number, message: RegExp, call: (i: number) => Promise<Answer>): Promise<void> {
  const answers: Answer[] = [];
  for (let i = 0; i < n; i++) {
    const answer = await call(i);
    answers.push(answer);
    const ok = answer.status === code && message.test(answer.message);
    assert.ok(ok, `call ${i + 1} of ${n} got ${answer.status ?? 'no status'} (${answer.message}) ${answer.note}; before it: ${describeAnswers(answers.slice(0, -1))}`);
  }
}

function curlCall(port: number, file: string): Promise<Answer> {
  const args = ['-sS', '--http2-prior-knowledge', '-m', String(CALL_DEADLINE_MS / 1000), '-X', 'POST', '-H', 'content-type: application/grpc', '-H', 'te: trailers'];
  args.push('--data-binary', `@${file}`, '-D', '-', '-o', '/dev/null', `http://127.0.0.1:${port}${EXPORT_METHOD.traces}`);
  return new Promise((resolve) => {
    execFile('curl', args, (err, stdout, stderr) => {
      const status = /^grpc-status: *(\d+)/im.exec(stdout)?.[1];
      const message = /^grpc-message: *(.*?)\r?$/im.exec(stdout)?.[1] ?? '';
      // A status printed before curl hung until its timeout (exit 28) is not a delivered status.
      const code = err ? (err as { code?: number }).code : 0;
      resolve({ status: code === 0 && status !== undefined ? Number(status) : undefined, message: decodeURIComponent(message), note: `curl exit ${code}${stderr ? `: ${stderr.trim()}` : ''}` });
    });
  });
}

/** One call on `session` (Node's http2 client, its default settings), the body written at once. */
function nodeCall(session: http2.ClientHttp2Session, body: Buffer): Promise<Answer> {
  return new Promise((resolve) => {
    const stream = session.request({ ':method': 'POST', ':path': EXPORT_METHOD.traces, 'content-type': 'application/grpc', te: 'trailers' });
    let head: http2.IncomingHttpHeaders = {};
    const timer = setTimeout(() => stream.close(http2.constants.NGHTTP2_CANCEL), CALL_DEADLINE_MS);
    const take = (h: http2.IncomingHttpHeaders) => {
      if (h['grpc-status'] !== undefined) head = h;
    };
    stream.on('response', take);
    stream.on('trailers', take);
    stream.on('error', () => undefined);
    stream.resume();
    stream.on('close', () => {
      clearTimeout(timer);
      const status = head['grpc-status'] === undefined ? undefined : Number(head['grpc-status']);
      resolve({ status, message: decodeURIComponent(String(head['grpc-message'] ?? '')), note: `rst ${stream.rstCode}` });
    });
    stream.end(body);
  });
}

function grpcJsCall(client: grpc.Client, body: Buffer): Promise<Answer> {
  const method = rawExportMethod('traces');
  return new Promise((resolve) => {
    client.makeUnaryRequest(method.path, method.requestSerialize, method.responseDeserialize, body, new grpc.Metadata(), { deadline: Date.now() + CALL_DEADLINE_MS }, (err) => {
      resolve({ status: err ? err.code : 0, message: err?.details ?? '', note: '' });
    });
  });
}

function otelExport(exporter: OTLPTraceExporter, spans: ReadableSpan[]): Promise<Answer> {
  return new Promise((resolve) => {
    exporter.export(spans, (result) => {
      const err: (Error & { code?: number; details?: string }) | undefined = result.error;
      resolve({ status: err ? err.code : 0, message: err?.details ?? err?.message ?? '', note: '' });
    });
  });
}

/** A span made by the OpenTelemetry SDK, with an attribute of `size` characters. */
function sdkSpans(size: number): ReadableSpan[] {
  const memory = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(memory)] });
  provider.getTracer('refuse-clients').startSpan('big', { attributes: { blob: 'x'.repeat(size) } }).end();
  return memory.getFinishedSpans();
}

/** Sends through Jaeger's OTLP/HTTP receiver; its otlp exporter (grpc-go) has no queue or retries, so spansieve's answer comes back. */
async function throughJaeger(jaeger: Jaeger, body: Buffer): Promise<Answer> {
  const res = await fetch(`http://127.0.0.1:${jaeger.otlpHttpPort}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/x-protobuf' }, body, signal: AbortSignal.timeout(CALL_DEADLINE_MS) });
  const bytes = Buffer.from(await res.arrayBuffer());
  if (res.ok) return { status: 0, message: '', note: `HTTP ${res.status}` };
  const message = (types.Status.decode(bytes) as unknown as { message: string }).message;
  // grpc-go's error text names the status it received: "rpc error: code = ResourceExhausted desc = ...".
  const code = /code = (\w+) desc/.exec(message)?.[1];
  const status = code === 'ResourceExhausted' ? RESOURCE_EXHAUSTED : code === 'Unavailable' ? UNAVAILABLE : undefined;
  return { status, message, note: `HTTP ${res.status}` };
}

void describe('early gRPC refusals reach real clients as their status', () => {
  const sink = new GrpcSink();
  let service: Service | undefined;
  let jaeger: Jaeger | undefined;
  let grpcPort = 0;
  let httpPort = 0;
  let dir = '';
  const files: Record<'justOver' | 'big' | 'queued', string> = { justOver: '', big: '', queued: '' };
  const bodies = { justOver: framed(LIMIT + 1), big: framed(24 * 1024 * 1024), huge: framed(48 * 1024 * 1024), queued: framed(LIMIT / 2) };

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spansieve-refuse-'));
    for (const name of ['justOver', 'big', 'queued'] as const) {
      files[name] = path.join(dir, `${name}.bin`);
      fs.writeFileSync(files[name], bodies[name]);
    }
    await sink.start();
    [grpcPort, httpPort] = await freePorts(2);
    service = await startService({
      receivers: { otlp: { protocols: { grpc: { endpoint: `127.0.0.1:${grpcPort}`, max_recv_msg_size_mib: LIMIT_MIB }, http: { endpoint: `127.0.0.1:${httpPort}` } } } },
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
    });
    jaeger = await Jaeger.start({
      // Room for the 24 MiB request (the default is 20 MiB).
      receiverHttp: ['max_request_body_size: 67108864'],
      exporters: {
        'otlp/spansieve': [
          `endpoint: 127.0.0.1:${grpcPort}`,
          'tls:',
          '  insecure: true',
          // Uncompressed, so the message spansieve sees is as large as the request.
          'compression: none',
          'timeout: 15s',
          'sending_queue:',
          '  enabled: false',
          'retry_on_failure:',
          '  enabled: false',
        ],
      },
    });
  });

  after(async () => {
    sink.reply = () => ({ kind: 'ok' });
    await jaeger?.stop();
    await service?.shutdown();
    await sink.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** Makes the sink hang and sends whole requests over HTTP until one is refused: the queue is full until the sink answers. */
  async function fillQueue(): Promise<void> {
    sink.reply = () => ({ kind: 'hang' });
    for (let i = 0; i < 50; i++) {
      const res = await fetch(`http://127.0.0.1:${httpPort}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/x-protobuf' }, body: tracesOfSize(10) });
      await res.arrayBuffer();
      if (res.status === 503) return;
    }
    assert.fail('the queue never filled');
  }

  void describe('a message over max_recv_msg_size_mib: RESOURCE_EXHAUSTED', () => {
    void test('curl', { timeout: 60_000 }, async () => {
      await expectEach(ATTEMPTS, RESOURCE_EXHAUSTED, TOO_LARGE, () => curlCall(grpcPort, files.justOver));
      await expectEach(1, RESOURCE_EXHAUSTED, TOO_LARGE, () => curlCall(grpcPort, files.big));
    });

    void test("Node's http2 client, one connection, 48 MiB written at once included", { timeout: 60_000 }, async () => {
      const session = http2.connect(`http://127.0.0.1:${grpcPort}`);
      try {
        await expectEach(ATTEMPTS, RESOURCE_EXHAUSTED, TOO_LARGE, () => nodeCall(session, bodies.justOver));
        await expectEach(2, RESOURCE_EXHAUSTED, TOO_LARGE, (i) => nodeCall(session, i === 0 ? bodies.big : bodies.huge));
      } finally {
        session.destroy();
      }
    });

    void test('grpc-js', { timeout: 60_000 }, async () => {
      const client = new grpc.Client(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure());
      try {
        await expectEach(ATTEMPTS, RESOURCE_EXHAUSTED, TOO_LARGE, () => grpcJsCall(client, bodies.justOver.subarray(5)));
        await expectEach(1, RESOURCE_EXHAUSTED, TOO_LARGE, () => grpcJsCall(client, bodies.big.subarray(5)));
      } finally {
        client.close();
      }
    });

    void test('the OpenTelemetry JS gRPC exporter', { timeout: 60_000 }, async () => {
      const exporter = new OTLPTraceExporter({ url: `http://127.0.0.1:${grpcPort}`, timeoutMillis: CALL_DEADLINE_MS });
      try {
        const spans = sdkSpans(LIMIT);
        await expectEach(ATTEMPTS, RESOURCE_EXHAUSTED, TOO_LARGE, () => otelExport(exporter, spans));
      } finally {
        await exporter.shutdown();
      }
    });

    void test('a client that never stops sending gets the status within 3 s, then its stream reset (NO_ERROR) within 5 s more', { timeout: 30_000 }, async () => {
      const session = http2.connect(`http://127.0.0.1:${grpcPort}`);
      try {
        const stream = session.request({ ':method': 'POST', ':path': EXPORT_METHOD.traces, 'content-type': 'application/grpc', te: 'trailers' });
        // Declares 100 MiB, then trickles 1 KiB every 20 ms for as long as the stream is open.
        stream.write(framed(100 * 1024 * 1024).subarray(0, 5 + 1024));
        const trickle = setInterval(() => {
          if (!stream.closed && !stream.destroyed) stream.write(Buffer.alloc(1024));
        }, 20);
        // A server that never resets the stream fails the test here, not at its timeout.
        const giveUp = setTimeout(() => stream.close(http2.constants.NGHTTP2_CANCEL), 20_000);
        const t0 = performance.now();
        let answeredAt = 0;
        let status: string | undefined;
        stream.on('response', (h) => {
          answeredAt = performance.now() - t0;
          status = h['grpc-status'] as string | undefined;
        });
        stream.on('error', () => undefined);
        stream.resume();
        await new Promise<void>((resolve) => stream.once('close', () => resolve()));
        clearInterval(trickle);
        clearTimeout(giveUp);
        const closedAt = performance.now() - t0;
        assert.equal(status, String(RESOURCE_EXHAUSTED));
        // Bounds plus room for a busy machine.
        assert.ok(answeredAt < 3000 + 2000, `answered after ${Math.round(answeredAt)} ms`);
        assert.equal(stream.rstCode, http2.constants.NGHTTP2_NO_ERROR, `stream reset with ${stream.rstCode} after ${Math.round(closedAt)} ms`);
        assert.ok(closedAt - answeredAt < 5000 + 2000, `reset ${Math.round(closedAt - answeredAt)} ms after the answer`);
      } finally {
        session.destroy();
      }
    });

    void test("grpc-go (Jaeger's otlp exporter)", { timeout: 60_000 }, async () => {
      await expectEach(ATTEMPTS, RESOURCE_EXHAUSTED, TOO_LARGE, () => throughJaeger(jaeger!, tracesOfSize(LIMIT)));
      await expectEach(1, RESOURCE_EXHAUSTED, TOO_LARGE, () => throughJaeger(jaeger!, tracesOfSize(24 * 1024 * 1024)));
    });
  });

  void describe('a full sending queue: UNAVAILABLE', () => {
    before(fillQueue);

    void test('curl', { timeout: 60_000 }, async () => {
      await expectEach(ATTEMPTS, UNAVAILABLE, QUEUE_FULL, () => curlCall(grpcPort, files.queued));
      await expectEach(1, UNAVAILABLE, QUEUE_FULL, () => curlCall(grpcPort, files.big));
    });

    void test("Node's http2 client, one connection", { timeout: 60_000 }, async () => {
      const session = http2.connect(`http://127.0.0.1:${grpcPort}`);
      try {
        await expectEach(ATTEMPTS, UNAVAILABLE, QUEUE_FULL, () => nodeCall(session, bodies.queued));
        await expectEach(2, UNAVAILABLE, QUEUE_FULL, () => nodeCall(session, bodies.big));
      } finally {
        session.destroy();
      }
    });

    void test('grpc-js', { timeout: 60_000 }, async () => {
      const client = new grpc.Client(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure());
      try {
        await expectEach(ATTEMPTS, UNAVAILABLE, QUEUE_FULL, () => grpcJsCall(client, bodies.queued.subarray(5)));
      } finally {
        client.close();
      }
    });

    void test('the OpenTelemetry JS gRPC exporter', { timeout: 60_000 }, async () => {
      const exporter = new OTLPTraceExporter({ url: `http://127.0.0.1:${grpcPort}`, timeoutMillis: CALL_DEADLINE_MS });
      try {
        const spans = sdkSpans(LIMIT / 2);
        await expectEach(ATTEMPTS, UNAVAILABLE, QUEUE_FULL, () => otelExport(exporter, spans));
      } finally {
        await exporter.shutdown();
      }
    });

    void test("grpc-go (Jaeger's otlp exporter)", { timeout: 60_000 }, async () => {
      await expectEach(ATTEMPTS, UNAVAILABLE, QUEUE_FULL, () => throughJaeger(jaeger!, tracesOfSize(LIMIT / 2)));
    });
  });
});
