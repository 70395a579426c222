import assert from 'node:assert/strict';
import * as http2 from 'node:http2';
import { after, before, describe, test } from 'node:test';
import { types } from '../../../src/pdata/codec';
import { MAX_NESTING_DEPTH } from '../../../src/pdata/schema';
import { EXPORT_METHOD } from '../../../src/pdata/otlp';
import { MAX_ERROR_MESSAGE_BYTES } from '../../../src/receivers/otlp/echo';
import type { Service } from '../../../src/service/service';
import { decodeGrpcMessage, framedMessage } from '../../../src/util/grpc';
import { deepAnyValue, deepAnyValueJson, deepTraceRequest, deepTraceRequestJson, type DeepKind } from '../../helpers/deep';
import { freePorts, waitFor } from '../../helpers/ports';
import { captureLogs, startService, type CapturedLogs } from '../../helpers/service';
import { GrpcSink } from '../../helpers/sink';

// Deep and hostile input (issue 14): an attribute value nested 10,000 and 100,000 levels deep is
// received over gRPC, HTTP protobuf and HTTP JSON, kept by the filter and forwarded by the otlp
// exporter byte for byte (a debug exporter beside it decodes in full); one level more is 400 / INVALID_ARGUMENT naming the limit; no error
// message is longer than 1 KiB.

type Transport = 'grpc' | 'http-protobuf' | 'http-json';
const TRANSPORTS: readonly Transport[] = ['grpc', 'http-protobuf', 'http-json'];

interface Answer {
  /** HTTP status, or gRPC status code for gRPC. */
  status: number;
  message: string;
}

let service: Service;
let sink: GrpcSink;
let grpcPort: number;
let httpPort: number;
let session: http2.ClientHttp2Session;
let logs: CapturedLogs;

before(async () => {
  sink = new GrpcSink();
  await sink.start();
  [grpcPort, httpPort] = await freePorts(2);
  logs = captureLogs('info');
  service = await startService({
    receivers: { otlp: { protocols: { grpc: { endpoint: `127.0.0.1:${grpcPort}` }, http: { endpoint: `127.0.0.1:${httpPort}` } } } },
    processors: { 'filter/deep': { keep: [{ 'service.instance.id': 'deep-*' }] } },
    // The debug exporter decodes in full: a value too deep for that is not shown, not refused.
    exporters: { 'otlp/sink': { endpoint: `127.0.0.1:${sink.port}`, tls: { insecure: true } }, debug: { verbosity: 'detailed' } },
    service: {
      pipelines: { traces: { receivers: ['otlp'], processors: ['filter/deep'], exporters: ['otlp/sink', 'debug'] } },
      telemetry: { metrics: { level: 'none' } },
    },
  }, logs.logger);
  session = http2.connect(`http://127.0.0.1:${grpcPort}`);
});

after(async () => {
  session?.close();
  await service?.shutdown();
  await sink?.stop();
});

function grpcExport(body: Uint8Array): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':method': 'POST', ':path': EXPORT_METHOD.traces, 'content-type': 'application/grpc', te: 'trailers' });
    const done = (headers: http2.IncomingHttpHeaders) => {
      if (headers['grpc-status'] !== undefined) resolve({ status: Number(headers['grpc-status']), message: decodeGrpcMessage(headers['grpc-message']) });
    };
    stream.on('response', done);
    stream.on('trailers', done);
    stream.on('error', reject);
    stream.resume();
    stream.end(framedMessage(false, body));
  });
}

async function httpExport(body: Uint8Array | string, json: boolean): Promise<Answer> {
  const res = await fetch(`http://127.0.0.1:${httpPort}/v1/traces`, {
    method: 'POST',
    headers: { 'content-type': json ? 'application/json' : 'application/x-protobuf' },
    body,
  });
  const bytes = Buffer.from(await res.arrayBuffer());
  if (res.status === 200) return { status: 200, message: '' };
  const message = json ? (JSON.parse(bytes.toString('utf8')) as { message: string }).message : String((types.Status.decode(bytes) as unknown as { message: string }).message);
  return { status: res.status, message };
}

function send(transport: Transport, instance: string, kind: DeepKind, depth: number): Promise<Answer> {
  if (transport === 'http-json') return httpExport(deepTraceRequestJson(instance, deepAnyValueJson(kind, depth)), true);
  const body = deepTraceRequest(instance, deepAnyValue(kind, depth));
  return transport === 'grpc' ? grpcExport(body) : httpExport(body, false);
}

const OK: Record<Transport, number> = { grpc: 0, 'http-protobuf': 200, 'http-json': 200 };
const INVALID: Record<Transport, number> = { grpc: 3, 'http-protobuf': 400, 'http-json': 400 };

describe('attribute values nested deep', () => {
  for (const depth of [10_000, MAX_NESTING_DEPTH]) {
    for (const kind of ['kvlist', 'array'] as const) {
      test(`${depth} ${kind} levels are received, kept and forwarded unchanged over gRPC, HTTP protobuf and HTTP JSON`, async () => {
        for (const transport of TRANSPORTS) {
          const instance = `deep-${transport}-${kind}-${depth}`;
          const answer = await send(transport, instance, kind, depth);
          assert.deepEqual(answer, { status: OK[transport], message: '' }, transport);
          // The JSON request converts to exactly these bytes too.
          const expected = deepTraceRequest(instance, deepAnyValue(kind, depth));
          await waitFor(`${transport} request at the sink`, () => sink.requests.some((r) => r.body.equals(expected)));
          assert.ok(logs.lines.some((line) => line['service.instance.id'] === instance && String(line.msg).startsWith('resource not shown')), 'the debug exporter says why');
        }
      });
    }
  }

  test(`one level more than ${MAX_NESTING_DEPTH} is INVALID_ARGUMENT naming the limit, with a short message`, async () => {
    for (const kind of ['kvlist', 'array'] as const) {
      for (const transport of TRANSPORTS) {
        const answer = await send(transport, `deep-over-${transport}-${kind}`, kind, MAX_NESTING_DEPTH + 1);
        assert.equal(answer.status, INVALID[transport], `${transport} ${kind}: ${answer.message}`);
        assert.match(answer.message, new RegExp(`nested more than ${MAX_NESTING_DEPTH} levels deep`), transport);
        assert.ok(Buffer.byteLength(answer.message) <= MAX_ERROR_MESSAGE_BYTES, `${transport}: ${answer.message.length}`);
      }
    }
  });
});

describe('error messages', () => {
  test(`are cut to ${MAX_ERROR_MESSAGE_BYTES} bytes on every transport`, async () => {
    // Protobuf: an invalid value under a 100 KB key (the key is part of the error's path); JSON:
    // a 100 KB trace id that is not hex (quoted in the error).
    const body = badKeyRequest('k'.repeat(100_000));
    const json = `{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"${'z'.repeat(100_000)}","spanId":"0102030405060708"}]}]}]}`;
    for (const [transport, answer] of [
      ['grpc', await grpcExport(body)],
      ['http-protobuf', await httpExport(body, false)],
      ['http-json', await httpExport(json, true)],
    ] as const) {
      assert.equal(answer.status, INVALID[transport], `${transport}: ${answer.message.slice(0, 200)}`);
      assert.ok(Buffer.byteLength(answer.message) <= MAX_ERROR_MESSAGE_BYTES, `${transport}: ${Buffer.byteLength(answer.message)} bytes`);
      assert.match(answer.message, /bytes, cut\)$/, transport);
    }
  });
});

function varint(value: number): Buffer {
  const out: number[] = [];
  while (value >= 0x80) {
    out.push((value & 0x7f) | 0x80);
    value = Math.floor(value / 128);
  }
  out.push(value);
  return Buffer.from(out);
}

/** A request whose one resource attribute has key `key` and a string value that is not UTF-8. */
function badKeyRequest(key: string): Buffer {
  const field = (num: number, payload: Buffer) => Buffer.concat([varint(num * 8 + 2), varint(payload.length), payload]);
  const attribute = field(1, Buffer.concat([field(1, Buffer.from(key)), field(2, field(1, Buffer.from([0xff])))]));
  return field(1, field(1, attribute));
}
