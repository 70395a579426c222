import assert from 'node:assert/strict';
import * as http from 'node:http';
import { randomBytes } from 'node:crypto';
import * as zlib from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import { compress as snappyjsCompress } from 'snappyjs';
import { decodeToPlain, encodeFromOtlpJson, types } from '../../../src/pdata/codec';
import type { Service } from '../../../src/service/service';
import { OtlpReceiver, parseOtlpReceiverConfig } from '../../../src/receivers/otlp/otlp-receiver';
import { loadZstd } from '../../../src/util/compression';
import { Capture, configErrors, parseWith, testSettings } from '../../helpers/components';
import { rawZstdBlock, snappyFramed, zstdCompress, zstdWithoutContentSize } from '../../helpers/compression';
import { encodeTraces, gzip, hostInstance, k8sInstance, obiResourceSpans, obiSpan } from '../../helpers/obi';
import { freePorts } from '../../helpers/ports';
import { startService } from '../../helpers/service';
import { GrpcSink } from '../../helpers/sink';

// The OTLP/HTTP receiver of a running service: what a client gets back for good and bad requests,
// what reaches the downstream sink (only the kept processes, byte for byte), and the self-metrics.

const LIMIT = 64 * 1024;
const KEPT = hostInstance('web-1', 4242);
const DROPPED = hostInstance('web-1', 9999);
const DROPPED_K8S = k8sInstance('shop', 'cart-7d9f', 'cart');

interface HttpResult {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: Buffer;
}

interface RequestOptions {
  readonly method?: string;
  readonly path?: string;
  readonly headers?: Record<string, string | number>;
  /** Sent in these pieces (chunked transfer encoding when more than one). */
  readonly body?: Buffer | Buffer[];
}

/** One request on its own connection, so no keep-alive socket outlives the test. */
function request(port: number, options: RequestOptions = {}): Promise<HttpResult> {
  return new Promise<HttpResult>((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, method: options.method ?? 'POST', path: options.path ?? '/v1/traces', headers: options.headers ?? {}, agent: false, timeout: 30_000 },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
    const body = options.body;
    if (Array.isArray(body)) {
      for (const piece of body) req.write(piece);
      req.end();
    } else {
      req.end(body);
    }
  });
}

const protobuf = (body: Buffer, headers: Record<string, string | number> = {}): RequestOptions => ({
  headers: { 'content-type': 'application/x-protobuf', ...headers },
  body,
});
const json = (value: unknown): RequestOptions => ({
  headers: { 'content-type': 'application/json' },
  body: Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)),
});

interface StatusBody {
  code: number;
  message: string;
}

function protobufStatus(res: HttpResult): StatusBody {
  assert.equal(res.headers['content-type'], 'application/x-protobuf');
  const status = types.Status.toObject(types.Status.decode(res.body), { longs: Number, defaults: true }) as StatusBody;
  return status;
}

function jsonStatus(res: HttpResult): StatusBody {
  assert.equal(res.headers['content-type'], 'application/json');
  return JSON.parse(res.body.toString('utf8')) as StatusBody;
}

function textBody(res: HttpResult): string {
  assert.match(String(res.headers['content-type']), /^text\/plain/);
  return res.body.toString('utf8');
}

interface PlainSpan {
  traceId: string;
  spanId: string;
  name: string;
  attributes?: unknown[];
}

/** Spans of a decoded request, in order, with hex ids. */
function spansOf(body: Buffer): PlainSpan[] {
  const request = decodeToPlain(types.ExportTraceServiceRequest, body) as { resourceSpans?: { scopeSpans?: { spans?: PlainSpan[] }[] }[] };
  return (request.resourceSpans ?? []).flatMap((rs) => (rs.scopeSpans ?? []).flatMap((ss) => ss.spans ?? []));
}

/** One sample's value from Prometheus text, matching all the given labels; undefined when absent. */
function metricValue(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const have = new Map([...(match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1]!, m[2]!]));
    if (Object.entries(labels).every(([k, v]) => have.get(k) === v)) return Number(match[3]);
  }
  return undefined;
}

// Every case on both HTTP/1.1 layers (protocols::http::http1): spansieve's own and node:http.
for (const layer of ['spansieve', 'node'] as const) void describe(`OTLP/HTTP receiver (http1: ${layer})`, () => {
  const sink = new GrpcSink();
  let service: Service | undefined;
  let httpPort = 0;
  let metricsPort = 0;

  before(async () => {
    await loadZstd();
    await sink.start();
    const [grpcPort = 0, hp = 0, mp = 0] = await freePorts(3);
    httpPort = hp;
    metricsPort = mp;
    service = await startService({
      receivers: {
        otlp: {
          protocols: {
            grpc: { endpoint: `127.0.0.1:${grpcPort}` },
            http: { endpoint: `127.0.0.1:${httpPort}`, max_request_body_size: LIMIT, http1: layer },
          },
        },
      },
      processors: { 'filter/web': { keep: [{ 'service.instance.id': KEPT.instanceId }] } },
      exporters: {
        'otlp/sink': {
          endpoint: `127.0.0.1:${sink.port}`,
          tls: { insecure: true },
          compression: 'none',
          sending_queue: { enabled: false },
          retry_on_failure: { enabled: false },
        },
      },
      service: {
        pipelines: { traces: { receivers: ['otlp'], processors: ['filter/web'], exporters: ['otlp/sink'] } },
        telemetry: { metrics: { address: `127.0.0.1:${metricsPort}` } },
      },
    });
  });

  after(async () => {
    await service?.shutdown();
    await sink.stop();
  });

  /** The sink requests that arrived while `fn` ran. */
  async function newSinkRequests(fn: () => Promise<void>): Promise<Buffer[]> {
    const before = sink.requests.length;
    await fn();
    return sink.requests.slice(before).map((r) => r.body);
  }

  async function metricsText(): Promise<string> {
    const res = await request(metricsPort, { method: 'GET', path: '/metrics' });
    assert.equal(res.status, 200);
    return res.body.toString('utf8');
  }

  void test('valid protobuf: 200, empty ExportTraceServiceResponse, only the kept process reaches the sink, byte for byte', async () => {
    const kept = obiResourceSpans(KEPT, [obiSpan({ name: 'GET /users/*' }), obiSpan({ name: 'POST /orders' })]);
    const dropped = obiResourceSpans(DROPPED, [obiSpan(), obiSpan(), obiSpan()]);
    const droppedK8s = obiResourceSpans(DROPPED_K8S, [obiSpan()]);
    let res: HttpResult | undefined;
    const forwarded = await newSinkRequests(async () => {
      res = await request(httpPort, protobuf(encodeTraces([dropped, kept, droppedK8s])));
    });
    assert.equal(res?.status, 200, res?.body.toString());
    assert.equal(res.headers['content-type'], 'application/x-protobuf');
    assert.deepEqual(types.ExportTraceServiceResponse.toObject(types.ExportTraceServiceResponse.decode(res.body)), {});
    assert.equal(res.body.length, 0);

    assert.equal(forwarded.length, 1);
    assert.deepEqual(forwarded[0], encodeTraces([kept]));
    assert.deepEqual(
      spansOf(forwarded[0]).map((s) => [s.name, s.spanId]),
      [
        ['GET /users/*', kept.scopeSpans[0]!.spans[0]!.spanId.toString('hex')],
        ['POST /orders', kept.scopeSpans[1]!.spans[0]!.spanId.toString('hex')],
      ],
    );
  });

  void test('a request in which every process is filtered out: 200 and nothing exported', async () => {
    let res: HttpResult | undefined;
    const forwarded = await newSinkRequests(async () => {
      res = await request(httpPort, protobuf(encodeTraces([obiResourceSpans(DROPPED, [obiSpan()])])));
    });
    assert.equal(res?.status, 200);
    assert.equal(forwarded.length, 0);
  });

  void test('gzip-compressed protobuf (Content-Encoding: gzip) is decompressed and forwarded', async () => {
    const kept = obiResourceSpans(KEPT, [obiSpan({ name: 'gzip-span' })]);
    let res: HttpResult | undefined;
    const forwarded = await newSinkRequests(async () => {
      res = await request(httpPort, protobuf(gzip(encodeTraces([kept, obiResourceSpans(DROPPED, [obiSpan()])])), { 'content-encoding': 'gzip' }));
    });
    assert.equal(res?.status, 200, res?.body.toString());
    assert.equal(res.body.length, 0);
    assert.equal(forwarded.length, 1);
    assert.deepEqual(forwarded[0], encodeTraces([kept]));
  });

  void test('zstd, snappy (block and framed), x-snappy-framed, zlib and deflate bodies are decompressed and forwarded', async () => {
    const body = () => encodeTraces([obiResourceSpans(KEPT, [obiSpan({ name: 'compressed-span' })]), obiResourceSpans(DROPPED, [obiSpan()])]);
    const cases: [string, Uint8Array][] = [
      ['zstd', zstdCompress(body())],
      // Without a content size in the frame header, as Go's streaming zstd writer (confighttp) sends it.
      ['zstd', Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x58]), rawZstdBlock(body())])],
      ['snappy', snappyjsCompress(body())],
      ['snappy', snappyFramed(body())],
      ['x-snappy-framed', snappyFramed(body())],
      ['zlib', zlib.deflateSync(body())],
      ['deflate', zlib.deflateSync(body())],
    ];
    for (const [encoding, payload] of cases) {
      let res: HttpResult | undefined;
      const forwarded = await newSinkRequests(async () => {
        res = await request(httpPort, protobuf(Buffer.from(payload), { 'content-encoding': encoding }));
      });
      assert.equal(res?.status, 200, `${encoding}: ${res?.body.toString()}`);
      assert.equal(forwarded.length, 1, encoding);
      assert.deepEqual(spansOf(forwarded[0]!).map((s) => s.name), ['compressed-span'], encoding);
    }
  });

  void test('OTLP/JSON with hex ids arrives at the sink byte-faithful', async () => {
    const traceId = randomBytes(16).toString('hex');
    const linkedTraceId = randomBytes(16).toString('hex');
    const keptJson = {
      resource: {
        attributes: [
          { key: 'service.name', value: { stringValue: 'web' } },
          { key: 'service.instance.id', value: { stringValue: KEPT.instanceId } },
        ],
      },
      scopeSpans: [
        {
          scope: { name: 'go.opentelemetry.io/obi', version: '0.3.0' },
          spans: [
            {
              traceId,
              spanId: 'a1b2c3d4e5f60718',
              name: 'GET /json/:id',
              kind: 2,
              startTimeUnixNano: '1700000000000000000',
              endTimeUnixNano: '1700000000001500000',
              attributes: [
                { key: 'http.request.method', value: { stringValue: 'GET' } },
                { key: 'http.response.status_code', value: { intValue: '200' } },
                { key: 'sampling.ratio', value: { doubleValue: 0.25 } },
                { key: 'cache.hit', value: { boolValue: true } },
                { key: 'tags', value: { arrayValue: { values: [{ stringValue: 'a' }, { intValue: '7' }] } } },
                { key: 'blob', value: { bytesValue: Buffer.from('spansieve').toString('base64') } },
              ],
              status: { code: 1 },
            },
            {
              traceId,
              spanId: '0102030405060708',
              parentSpanId: 'a1b2c3d4e5f60718',
              name: 'SELECT users',
              kind: 3,
              startTimeUnixNano: '1700000000000100000',
              endTimeUnixNano: '1700000000000900000',
              events: [{ timeUnixNano: '1700000000000200000', name: 'retry', attributes: [{ key: 'attempt', value: { intValue: '2' } }] }],
              links: [{ traceId: linkedTraceId, spanId: 'ffeeddccbbaa9988' }],
            },
          ],
        },
      ],
    };
    const droppedJson = {
      resource: { attributes: [{ key: 'service.instance.id', value: { stringValue: DROPPED.instanceId } }] },
      scopeSpans: [{ spans: [{ traceId: randomBytes(16).toString('hex'), spanId: randomBytes(8).toString('hex'), name: 'dropped' }] }],
    };
    let res: HttpResult | undefined;
    const forwarded = await newSinkRequests(async () => {
      res = await request(httpPort, json({ resourceSpans: [keptJson, droppedJson] }));
    });
    assert.equal(res?.status, 200, res?.body.toString());
    assert.equal(res.headers['content-type'], 'application/json');
    assert.deepEqual(JSON.parse(res.body.toString('utf8')), {});

    assert.equal(forwarded.length, 1);
    // Exactly the protobuf encoding of the kept resource, and decoding it gives back the JSON sent.
    assert.deepEqual(forwarded[0], Buffer.from(encodeFromOtlpJson(types.ExportTraceServiceRequest, { resourceSpans: [keptJson] })));
    assert.deepEqual(decodeToPlain(types.ExportTraceServiceRequest, forwarded[0]), { resourceSpans: [keptJson] });
    const spans = spansOf(forwarded[0]);
    assert.deepEqual(
      spans.map((s) => [s.traceId, s.spanId, s.name]),
      [
        [traceId, 'a1b2c3d4e5f60718', 'GET /json/:id'],
        [traceId, '0102030405060708', 'SELECT users'],
      ],
    );
  });

  void test('partial success: a span with an all-zero trace id is rejected and named, the valid spans still arrive', async () => {
    const good1 = obiSpan({ name: 'good-1' });
    const bad = obiSpan({ name: 'bad', traceId: Buffer.alloc(16) });
    const good2 = obiSpan({ name: 'good-2' });
    const kept = obiResourceSpans(KEPT, [good1, bad, good2]);
    let res: HttpResult | undefined;
    const forwarded = await newSinkRequests(async () => {
      res = await request(httpPort, protobuf(encodeTraces([kept, obiResourceSpans(DROPPED, [obiSpan()])])));
    });
    assert.equal(res?.status, 200, res?.body.toString());
    const response = types.ExportTraceServiceResponse.toObject(types.ExportTraceServiceResponse.decode(res.body), { longs: Number }) as {
      partialSuccess?: { rejectedSpans?: number; errorMessage?: string };
    };
    assert.equal(response.partialSuccess?.rejectedSpans, 1);
    assert.match(response.partialSuccess?.errorMessage ?? '', /trace_id/);
    assert.match(response.partialSuccess?.errorMessage ?? '', /all zeros/);
    assert.match(response.partialSuccess?.errorMessage ?? '', /resource_spans\[0\]\.scope_spans\[1\]\.spans\[0\]/);

    assert.equal(forwarded.length, 1);
    assert.deepEqual(
      spansOf(forwarded[0]!).map((s) => [s.name, s.spanId]),
      [
        ['good-1', good1.spanId.toString('hex')],
        ['good-2', good2.spanId.toString('hex')],
      ],
    );
  });

  void test('partial success over OTLP/JSON: the response is JSON naming the rejected span', async () => {
    const body = {
      resourceSpans: [
        {
          resource: { attributes: [{ key: 'service.instance.id', value: { stringValue: KEPT.instanceId } }] },
          scopeSpans: [
            {
              spans: [
                { traceId: randomBytes(16).toString('hex'), spanId: randomBytes(8).toString('hex'), name: 'ok' },
                { traceId: '0'.repeat(32), spanId: randomBytes(8).toString('hex'), name: 'zero-trace' },
              ],
            },
          ],
        },
      ],
    };
    let res: HttpResult | undefined;
    const forwarded = await newSinkRequests(async () => {
      res = await request(httpPort, json(body));
    });
    assert.equal(res?.status, 200, res?.body.toString());
    assert.equal(res.headers['content-type'], 'application/json');
    const response = JSON.parse(res.body.toString('utf8')) as { partialSuccess?: { rejectedSpans?: string | number; errorMessage?: string } };
    assert.equal(Number(response.partialSuccess?.rejectedSpans), 1);
    assert.match(response.partialSuccess?.errorMessage ?? '', /trace_id is all zeros/);
    assert.equal(forwarded.length, 1);
    assert.deepEqual(
      spansOf(forwarded[0]!).map((s) => s.name),
      ['ok'],
    );
  });

  void test('malformed protobuf: 400 with a google.rpc.Status protobuf naming the problem, nothing exported', async () => {
    let res: HttpResult | undefined;
    const forwarded = await newSinkRequests(async () => {
      // resource_spans says 255 bytes follow; one does.
      res = await request(httpPort, protobuf(Buffer.from([0x0a, 0xff, 0x01, 0x00])));
    });
    assert.equal(res?.status, 400);
    const status = protobufStatus(res);
    assert.equal(status.code, 3);
    assert.match(status.message, /^invalid OTLP protobuf traces request: /);
    assert.match(status.message, /length 255 runs past the end of the message/);
    assert.equal(forwarded.length, 0);
  });

  void test('malformed protobuf deep inside a span: 400 and the message gives its location', async () => {
    // ExportTraceServiceRequest{resource_spans{scope_spans{spans{name: <invalid UTF-8>}}}}
    const span = [0x2a, 0x01, 0xff];
    const scopeSpans = [0x12, span.length, ...span];
    const resourceSpans = [0x12, scopeSpans.length, ...scopeSpans];
    const body = Buffer.from([0x0a, resourceSpans.length, ...resourceSpans]);
    const res = await request(httpPort, protobuf(body));
    assert.equal(res.status, 400);
    const status = protobufStatus(res);
    assert.equal(status.code, 3);
    assert.match(status.message, /resource_spans\[0\]\.scope_spans\[0\]\.spans\[0\]/);
    assert.match(status.message, /UTF-8/);
  });

  void test('malformed JSON: 400 with a JSON Status naming the problem', async () => {
    let res: HttpResult | undefined;
    const forwarded = await newSinkRequests(async () => {
      res = await request(httpPort, json('{"resourceSpans": ['));
    });
    assert.equal(res?.status, 400);
    const status = jsonStatus(res);
    assert.equal(status.code, 3);
    assert.match(status.message, /^invalid OTLP\/JSON traces request: /);
    assert.match(status.message, /not valid JSON/);
    assert.equal(forwarded.length, 0);
  });

  void test('JSON of the wrong shape: 400 naming the field', async () => {
    for (const [body, pattern] of [
      [{ resourceSpans: 5 }, /resourceSpans: array expected/],
      [[1, 2, 3], /must be a JSON object/],
      ['"just a string"', /must be a JSON object/],
    ] as const) {
      const res = await request(httpPort, json(body));
      assert.equal(res.status, 400, JSON.stringify(body));
      const status = jsonStatus(res);
      assert.equal(status.code, 3);
      assert.match(status.message, /^invalid OTLP\/JSON traces request: /);
      assert.match(status.message, pattern);
    }
  });

  void test('JSON with a trace id that is not hex: 400 naming traceId and where it is', async () => {
    const body = {
      resourceSpans: [
        {
          resource: { attributes: [{ key: 'service.instance.id', value: { stringValue: KEPT.instanceId } }] },
          scopeSpans: [{ spans: [{ traceId: 'not-a-hex-trace-id-0123456789abc', spanId: '0102030405060708', name: 'x' }] }],
        },
      ],
    };
    let res: HttpResult | undefined;
    const forwarded = await newSinkRequests(async () => {
      res = await request(httpPort, json(body));
    });
    assert.equal(res?.status, 400);
    const status = jsonStatus(res);
    assert.equal(status.code, 3);
    assert.match(status.message, /resourceSpans\[0\]\.scopeSpans\[0\]\.spans\[0\]\.traceId: must be a hex string/);
    assert.match(status.message, /not-a-hex-trace-id/);
    assert.equal(forwarded.length, 0);
  });

  void test('corrupt gzip: 400 naming the encoding', async () => {
    const res = await request(httpPort, protobuf(Buffer.from('this is not gzip at all'), { 'content-encoding': 'gzip' }));
    assert.equal(res.status, 400);
    const status = protobufStatus(res);
    assert.equal(status.code, 3);
    assert.match(status.message, /^invalid gzip body: /);
    assert.match(status.message, /incorrect header check/);

    // A truncated gzip stream is refused the same way.
    const truncated = gzip(encodeTraces([obiResourceSpans(KEPT, [obiSpan()])]));
    const res2 = await request(httpPort, protobuf(truncated.subarray(0, truncated.length - 6), { 'content-encoding': 'gzip' }));
    assert.equal(res2.status, 400);
    assert.match(protobufStatus(res2).message, /^invalid gzip body: /);
  });

  void test('corrupt or truncated zstd and snappy: 400 naming the encoding and the problem, nothing forwarded', async () => {
    const body = encodeTraces([obiResourceSpans(KEPT, [obiSpan()])]);
    const cases: [string, Uint8Array, RegExp][] = [
      ['zstd', Buffer.from('this is not zstd at all'), /^invalid zstd body: not a zstd frame/],
      ['zstd', zstdCompress(body).subarray(0, 20), /^invalid zstd body: truncated zstd frame/],
      ['snappy', Buffer.from('this is not snappy at all'), /^invalid snappy body: invalid snappy block/],
      ['snappy', snappyjsCompress(body).subarray(0, 30), /^invalid snappy body: invalid snappy block/],
      ['x-snappy-framed', snappyjsCompress(body), /^invalid x-snappy-framed body: invalid snappy stream: no stream identifier/],
      ['x-snappy-framed', snappyFramed(body).subarray(0, 40), /^invalid x-snappy-framed body: invalid snappy stream: truncated chunk/],
    ];
    const forwarded = await newSinkRequests(async () => {
      for (const [encoding, payload, message] of cases) {
        const res = await request(httpPort, protobuf(Buffer.from(payload), { 'content-encoding': encoding }));
        assert.equal(res.status, 400, encoding);
        const status = protobufStatus(res);
        assert.equal(status.code, 3);
        assert.match(status.message, message);
      }
    });
    assert.equal(forwarded.length, 0);
  });

  void test('unsupported Content-Encoding: 415 naming it', async () => {
    const res = await request(httpPort, protobuf(encodeTraces([obiResourceSpans(KEPT, [obiSpan()])]), { 'content-encoding': 'br' }));
    assert.equal(res.status, 415);
    const status = protobufStatus(res);
    assert.equal(status.code, 3);
    assert.match(status.message, /unsupported Content-Encoding "br"/);
  });

  void test('oversize body declared by Content-Length: 413 naming the limit', async () => {
    let res: HttpResult | undefined;
    const forwarded = await newSinkRequests(async () => {
      res = await request(httpPort, protobuf(Buffer.alloc(LIMIT + 1)));
    });
    assert.equal(res?.status, 413);
    const status = protobufStatus(res);
    assert.equal(status.code, 8);
    assert.match(status.message, new RegExp(`request body of ${LIMIT + 1} bytes exceeds the limit of ${LIMIT} bytes`));
    assert.equal(forwarded.length, 0);
  });

  void test('oversize body sent chunked (no Content-Length): 413 once the limit is passed', async () => {
    const pieces = Array.from({ length: 5 }, () => Buffer.alloc(LIMIT / 4));
    const res = await request(httpPort, { headers: { 'content-type': 'application/x-protobuf' }, body: pieces });
    assert.equal(res.status, 413);
    const status = protobufStatus(res);
    assert.equal(status.code, 8);
    assert.match(status.message, new RegExp(`request body exceeds the limit of ${LIMIT} bytes`));
  });

  void test('gzip bomb decompressing beyond the limit: 413 naming the decompressed size limit', async () => {
    const bomb = gzip(Buffer.alloc(1024 * 1024));
    assert.ok(bomb.length < LIMIT, 'the compressed body itself is under the limit');
    let res: HttpResult | undefined;
    const forwarded = await newSinkRequests(async () => {
      res = await request(httpPort, protobuf(bomb, { 'content-encoding': 'gzip' }));
    });
    assert.equal(res?.status, 413);
    const status = protobufStatus(res);
    assert.equal(status.code, 8);
    assert.match(status.message, new RegExp(`decompressed request body exceeds the limit of ${LIMIT} bytes`));
    assert.equal(forwarded.length, 0);
  });

  void test('zstd and snappy bombs decompressing beyond the limit: 413, nothing forwarded', async () => {
    const zeros = Buffer.alloc(1024 * 1024);
    const bombs: [string, Uint8Array][] = [
      ['zstd', zstdCompress(zeros)],
      ['zstd', zstdWithoutContentSize(8)],
      ['snappy', snappyjsCompress(zeros)],
      ['x-snappy-framed', snappyFramed(zeros)],
    ];
    const forwarded = await newSinkRequests(async () => {
      for (const [encoding, bomb] of bombs) {
        assert.ok(bomb.length < LIMIT, `${encoding}: the compressed body itself is under the limit`);
        const res = await request(httpPort, protobuf(Buffer.from(bomb), { 'content-encoding': encoding }));
        assert.equal(res.status, 413, encoding);
        const status = protobufStatus(res);
        assert.equal(status.code, 8);
        assert.match(status.message, new RegExp(`decompressed request body exceeds the limit of ${LIMIT} bytes \\(${encoding}\\)`));
      }
    });
    assert.equal(forwarded.length, 0);
  });

  void test('wrong Content-Type: 415 naming it (plain-text answer)', async () => {
    const res = await request(httpPort, { headers: { 'content-type': 'text/plain' }, body: encodeTraces([obiResourceSpans(KEPT, [obiSpan()])]) });
    assert.equal(res.status, 415);
    const text = textBody(res);
    assert.match(text, /unsupported Content-Type "text\/plain"/);
    assert.match(text, /application\/x-protobuf or application\/json/);

    const missing = await request(httpPort, { body: Buffer.from('x') });
    assert.equal(missing.status, 415);
    assert.match(textBody(missing), /unsupported Content-Type ""/);
  });

  void test('unknown path: 404 naming the path', async () => {
    const res = await request(httpPort, { ...protobuf(encodeTraces([obiResourceSpans(KEPT, [obiSpan()])])), path: '/v1/logs' });
    assert.equal(res.status, 404);
    const status = protobufStatus(res);
    assert.equal(status.code, 5);
    assert.match(status.message, /unknown path \/v1\/logs/);
  });

  void test('a long path or Content-Type is quoted cut to 200 characters, with its length', async () => {
    const longPath = `/${'x'.repeat(7999)}`;
    const res = await request(httpPort, { ...protobuf(encodeTraces([obiResourceSpans(KEPT, [obiSpan()])])), path: longPath });
    assert.equal(res.status, 404);
    const status = protobufStatus(res);
    assert.match(status.message, /^unknown path \/x{199}\.\.\. \(8000 characters\); OTLP\/HTTP accepts POST/);
    assert.ok(res.body.length < 400, `answer of ${res.body.length} bytes`);

    const longType = `text/${'y'.repeat(5000)}`;
    const typed = await request(httpPort, { headers: { 'content-type': longType }, body: Buffer.from('x') });
    assert.equal(typed.status, 415);
    assert.match(textBody(typed), /^unsupported Content-Type "text\/y{195}\.\.\. \(5005 characters\)"; use application/);
  });

  void test('GET on /v1/traces: 405 with Allow: POST', async () => {
    const res = await request(httpPort, { method: 'GET', path: '/v1/traces' });
    assert.equal(res.status, 405);
    assert.equal(res.headers.allow, 'POST');
    assert.match(textBody(res), /method GET is not allowed on \/v1\/traces; use POST/);
  });

  void test('metrics path without a metrics pipeline: 404 saying so', async () => {
    const body = Buffer.from(types.ExportMetricsServiceRequest.encode(types.ExportMetricsServiceRequest.fromObject({})).finish());
    const res = await request(httpPort, { ...protobuf(body), path: '/v1/metrics' });
    assert.equal(res.status, 404);
    const status = protobufStatus(res);
    assert.equal(status.code, 12);
    assert.match(status.message, /no metrics pipeline uses this receiver/);

    const resJson = await request(httpPort, { ...json({}), path: '/v1/metrics' });
    assert.equal(resJson.status, 404);
    assert.match(jsonStatus(resJson).message, /no metrics pipeline uses this receiver/);
  });

  void test('downstream failures: a retryable one is 503 with Retry-After, a permanent one 400, both naming the cause', async () => {
    const body = encodeTraces([obiResourceSpans(KEPT, [obiSpan()])]);
    try {
      sink.reply = () => ({ kind: 'grpc-error', code: 14, message: 'sink is busy', retryAfterMs: 3000 });
      const busy = await request(httpPort, protobuf(body));
      assert.equal(busy.status, 503);
      assert.equal(busy.headers['retry-after'], '3');
      const busyStatus = protobufStatus(busy);
      assert.equal(busyStatus.code, 14);
      assert.match(busyStatus.message, /UNAVAILABLE: sink is busy/);

      sink.reply = () => ({ kind: 'grpc-error', code: 3, message: 'sink dislikes this span' });
      const refused = await request(httpPort, json(decodeToPlain(types.ExportTraceServiceRequest, body)));
      assert.equal(refused.status, 400);
      const refusedStatus = jsonStatus(refused);
      assert.equal(refusedStatus.code, 3);
      assert.match(refusedStatus.message, /INVALID_ARGUMENT: sink dislikes this span/);
    } finally {
      sink.reply = () => ({ kind: 'ok' });
    }
  });

  void test('self-metrics: accepted / refused spans for transport="http" and spans filtered', async () => {
    const labels = { receiver: 'otlp', transport: 'http' };
    const before = await metricsText();
    const accepted0 = metricValue(before, 'otelcol_receiver_accepted_spans', labels) ?? 0;
    const refused0 = metricValue(before, 'otelcol_receiver_refused_spans', labels) ?? 0;
    const filtered0 = metricValue(before, 'otelcol_processor_filter_spans_filtered', { processor: 'filter/web' }) ?? 0;
    const grpcAccepted0 = metricValue(before, 'otelcol_receiver_accepted_spans', { receiver: 'otlp', transport: 'grpc' }) ?? 0;
    // Earlier tests in this file already counted some.
    assert.ok(accepted0 > 0, 'earlier requests were counted');
    assert.ok(refused0 >= 2, 'the two partial-success requests were counted as refused');

    // 3 kept spans + 1 invalid among them, 2 + 1 spans of dropped processes.
    const kept = obiResourceSpans(KEPT, [obiSpan(), obiSpan({ spanId: Buffer.alloc(8) }), obiSpan(), obiSpan()]);
    const res = await request(httpPort, protobuf(encodeTraces([kept, obiResourceSpans(DROPPED, [obiSpan(), obiSpan()]), obiResourceSpans(DROPPED_K8S, [obiSpan()])])));
    assert.equal(res.status, 200);
    // Malformed requests are refused before any span is counted.
    assert.equal((await request(httpPort, protobuf(Buffer.from([0x0a, 0x05])))).status, 400);

    const after = await metricsText();
    assert.equal(metricValue(after, 'otelcol_receiver_accepted_spans', labels), accepted0 + 6);
    assert.equal(metricValue(after, 'otelcol_receiver_refused_spans', labels), refused0 + 1);
    assert.equal(metricValue(after, 'otelcol_processor_filter_spans_filtered', { processor: 'filter/web' }), filtered0 + 3);
    assert.equal(metricValue(after, 'otelcol_receiver_accepted_spans', { receiver: 'otlp', transport: 'grpc' }) ?? 0, grpcAccepted0);
    assert.equal(metricValue(after, 'otelcol_exporter_sent_spans', { exporter: 'otlp/sink' }), (metricValue(before, 'otelcol_exporter_sent_spans', { exporter: 'otlp/sink' }) ?? 0) + 3);
  });

  void test('after all of that, the service still serves a valid request', async () => {
    const kept = obiResourceSpans(KEPT, [obiSpan({ name: 'still-alive' })]);
    let res: HttpResult | undefined;
    const forwarded = await newSinkRequests(async () => {
      res = await request(httpPort, protobuf(encodeTraces([kept])));
    });
    assert.equal(res?.status, 200);
    assert.equal(forwarded.length, 1);
    assert.deepEqual(forwarded[0], encodeTraces([kept]));
    assert.equal(service?.state, 'ready');
  });
});

void describe('compression_algorithms', () => {
  void test('only the listed Content-Encodings are accepted ("" for none), others 415 naming what is; unknown names and lz4 are config errors', async () => {
    const capture = new Capture();
    const config = parseWith(parseOtlpReceiverConfig, { protocols: { http: { endpoint: '127.0.0.1:0', compression_algorithms: ['', 'gzip'] } } });
    const receiver = new OtlpReceiver(testSettings('otlp'), config, new Map([['traces', capture]]));
    await receiver.start();
    try {
      const port = receiver.httpServer!.port;
      const body = encodeTraces([obiResourceSpans(KEPT, [obiSpan()])]);
      assert.equal((await request(port, protobuf(body))).status, 200);
      assert.equal((await request(port, protobuf(body, { 'content-encoding': 'identity' }))).status, 200);
      assert.equal((await request(port, protobuf(gzip(body), { 'content-encoding': 'gzip' }))).status, 200);
      const refused = await request(port, protobuf(Buffer.from(zstdCompress(body)), { 'content-encoding': 'zstd' }));
      assert.equal(refused.status, 415);
      assert.equal(protobufStatus(refused).message, 'unsupported Content-Encoding "zstd"; use none, gzip');
      assert.equal(capture.batches.length, 3);
    } finally {
      await receiver.shutdown();
    }
    const errors = configErrors(parseOtlpReceiverConfig, { protocols: { http: { compression_algorithms: ['gzip', 'lz4', 'br'] } } }, 'receivers::otlp');
    assert.deepEqual(errors, [
      'receivers::otlp::protocols::http::compression_algorithms[1]: lz4 is not supported',
      'receivers::otlp::protocols::http::compression_algorithms[2]: must be one of "", "gzip", "zstd", "zlib", "snappy", "deflate", "x-snappy-framed", got "br"',
    ]);
  });
});
