import assert from 'node:assert/strict';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import * as zlib from 'node:zlib';
import { after, afterEach, before, describe, test } from 'node:test';
import { parseOtlpReceiverConfig } from '../../../src/receivers/otlp/otlp-receiver';
import { parseGrpcTimeout } from '../../../src/receivers/otlp/grpc-server';
import type { Service } from '../../../src/service/service';
import { SpansieveProcess, idleConnection, idleConnections, stalledGrpcCall, stalledHttpUpload } from '../../helpers/child';
import { configErrors, parseWith } from '../../helpers/components';
import { encodeTraces, hostInstance, obiResourceSpans, obiSpan } from '../../helpers/obi';
import { freePorts, waitFor } from '../../helpers/ports';
import { startService } from '../../helpers/service';
import { GrpcSink } from '../../helpers/sink';

// The receivers' timeouts and limits (issue 13): no client can hold a connection, a call or memory
// for ever, and a flood of connections does not lock out the clients that come after it.

const BODY = encodeTraces([obiResourceSpans(hostInstance('limits', 7), [obiSpan()])]);

/** The HTTP/1.1 layer the HTTP cases run on (protocols::http::http1), set per suite. */
let httpLayer: 'spansieve' | 'node' = 'spansieve';

async function start(receiver: Record<string, unknown>): Promise<{ service: Service; grpc: number; http: number }> {
  const [grpc, http] = await freePorts(2);
  const protocols = receiver.protocols as { grpc?: Record<string, unknown>; http?: Record<string, unknown> } | undefined;
  const service = await startService({
    receivers: {
      otlp: {
        ...receiver,
        protocols: {
          grpc: { endpoint: `127.0.0.1:${grpc}`, ...protocols?.grpc },
          http: { endpoint: `127.0.0.1:${http}`, http1: httpLayer, ...protocols?.http },
        },
      },
    },
    exporters: { debug: {} },
    service: { pipelines: { traces: { receivers: ['otlp'], exporters: ['debug'] } }, telemetry: { metrics: { level: 'none' } } },
  });
  return { service, grpc, http };
}

/** Client connections a test opened, closed after it even when it fails. */
const opened = new Set<{ destroy(): void }>();
afterEach(() => {
  for (const c of opened) c.destroy();
  opened.clear();
});

function keep<T extends { destroy(): void }>(c: T): T {
  opened.add(c);
  return c;
}

/** Resolves with the seconds until the server closes the socket. */
function closedAfter(socket: net.Socket): Promise<number> {
  const t0 = performance.now();
  // Whatever the server answered is read and dropped, or the socket never sees the end.
  socket.resume();
  return new Promise((resolve) => {
    if (socket.destroyed) resolve(0);
    socket.once('close', () => resolve((performance.now() - t0) / 1000));
  });
}

/** Reads one HTTP/1.1 response head (status and headers) from a raw socket. */
function responseHead(socket: net.Socket): Promise<{ status: number; headers: Record<string, string> }> {
  return new Promise((resolve, reject) => {
    let text = '';
    const onData = (chunk: Buffer) => {
      text += chunk.toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.off('data', onData);
      const [statusLine, ...lines] = text.slice(0, end).split('\r\n');
      const headers: Record<string, string> = {};
      for (const line of lines) headers[line.slice(0, line.indexOf(':')).toLowerCase()] = line.slice(line.indexOf(':') + 1).trim();
      resolve({ status: Number(statusLine!.split(' ')[1]), headers });
    };
    socket.on('data', onData);
    socket.once('close', () => reject(new Error(`closed before a response: ${JSON.stringify(text)}`)));
  });
}

/** The status and grpc-status of a call that ends (trailers-only or with trailers). */
function callStatus(stream: http2.ClientHttp2Stream): Promise<{ grpcStatus: number; message: string; details: string | undefined }> {
  return new Promise((resolve, reject) => {
    let head: http2.IncomingHttpHeaders = {};
    stream.on('response', (headers) => {
      head = headers;
      if (headers['grpc-status'] !== undefined) resolve({ grpcStatus: Number(headers['grpc-status']), message: decodeURIComponent(String(headers['grpc-message'] ?? '')), details: headers['grpc-status-details-bin'] as string | undefined });
    });
    stream.on('trailers', (trailers) => resolve({ grpcStatus: Number(trailers['grpc-status']), message: decodeURIComponent(String(trailers['grpc-message'] ?? '')), details: trailers['grpc-status-details-bin'] as string | undefined }));
    stream.resume();
    stream.once('close', () => {
      if (head['grpc-status'] === undefined) reject(new Error(`call closed without a status (rst ${stream.rstCode})`));
    });
  });
}

async function metricValue(service: Service, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = (await service.telemetry.registry.getMetricsAsJSON()).find((m) => m.name === name);
  const values = (metric?.values ?? []).filter((v) => Object.entries(labels).every(([k, want]) => v.labels[k] === want));
  return values.reduce((sum, v) => sum + Number(v.value), 0);
}

async function postOk(port: number): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${port}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/x-protobuf' }, body: BODY });
  await res.arrayBuffer();
  return res.status;
}

describe('config', () => {
  test('defaults, the Collector key names and unknown keys', () => {
    const config = parseWith(parseOtlpReceiverConfig, {}, 'receivers::otlp');
    assert.equal(config.maxInflightBytes, 256 * 1024 * 1024);
    assert.deepEqual(
      { header: config.http!.readHeaderTimeoutMs, read: config.http!.readTimeoutMs, write: config.http!.writeTimeoutMs, idle: config.http!.idleTimeoutMs, max: config.http!.maxConnections },
      { header: 60_000, read: 60_000, write: 30_000, idle: 60_000, max: 0 },
    );
    assert.deepEqual(config.grpc!.keepalive, {
      maxConnectionIdleMs: 60_000,
      maxConnectionAgeMs: 0,
      maxConnectionAgeGraceMs: 0,
      timeMs: 7_200_000,
      timeoutMs: 20_000,
      minTimeMs: 300_000,
      permitWithoutStream: false,
    });
    assert.equal(config.grpc!.http2, 'spansieve');
    assert.equal(parseWith(parseOtlpReceiverConfig, { protocols: { grpc: { http2: 'node' } } }, 'receivers::otlp').grpc!.http2, 'node');
    assert.deepEqual(configErrors(parseOtlpReceiverConfig, { protocols: { grpc: { http2: 'nghttp2' } } }, 'receivers::otlp'), [
      'receivers::otlp::protocols::grpc::http2: must be one of spansieve, node, got "nghttp2"',
    ]);
    assert.equal(config.http!.http1, 'spansieve');
    assert.equal(parseWith(parseOtlpReceiverConfig, { protocols: { http: { http1: 'node' } } }, 'receivers::otlp').http!.http1, 'node');
    assert.deepEqual(configErrors(parseOtlpReceiverConfig, { protocols: { http: { http1: 'llhttp' } } }, 'receivers::otlp'), [
      'receivers::otlp::protocols::http::http1: must be one of spansieve, node, got "llhttp"',
    ]);
    assert.deepEqual(
      configErrors(parseOtlpReceiverConfig, {
        protocols: {
          grpc: { keepalive: { server_parameters: { max_conection_idle: '1s' }, enforcement_policy: { min_time: 'soon' } } },
          http: { idle_timeout: 5 },
        },
      }, 'receivers::otlp'),
      [
        'receivers::otlp::protocols::grpc::keepalive::server_parameters::max_conection_idle: unknown key (allowed: max_connection_idle, max_connection_age, max_connection_age_grace, time, timeout)',
        'receivers::otlp::protocols::grpc::keepalive::enforcement_policy::min_time: expected a duration such as "500ms", "5s" or "1m", got "soon"',
        'receivers::otlp::protocols::http::idle_timeout: expected a duration such as "500ms", "5s" or "1m", got 5',
      ],
    );
  });

  test('grpc-timeout values', () => {
    assert.equal(parseGrpcTimeout('300m'), 300);
    assert.equal(parseGrpcTimeout('2S'), 2000);
    assert.equal(parseGrpcTimeout('1H'), 3_600_000);
    assert.equal(parseGrpcTimeout('5000u'), 5);
    assert.equal(parseGrpcTimeout('10n'), 1);
    assert.equal(parseGrpcTimeout('123456789m'), undefined, 'at most 8 digits');
    assert.equal(parseGrpcTimeout('1s'), undefined);
    assert.equal(parseGrpcTimeout(undefined), undefined);
  });
});

for (const layer of ['spansieve', 'node'] as const) describe(`OTLP/HTTP receiver (http1: ${layer}): timeouts, refusals, connection limit`, () => {
  const services: Service[] = [];
  before(() => {
    httpLayer = layer;
  });
  after(async () => {
    for (const s of services) await s.shutdown();
  });

  test('a refusal before the body is read answers Connection: close and the socket is closed', { timeout: 20_000 }, async () => {
    const s = await start({ protocols: { http: { max_request_body_size: 1000 } } });
    services.push(s.service);
    // 413 from Content-Length: the client has sent only its headers and would send 10 MB more.
    const socket = keep(await stalledHttpUpload(s.http, 10_000_000, 0));
    const closed = closedAfter(socket);
    const head = await responseHead(socket);
    assert.equal(head.status, 413);
    assert.equal(head.headers.connection, 'close');
    assert.ok((await closed) < 5, 'the server closes the connection instead of reading the rest');
    // An accepted request keeps its connection.
    const ok = await stalledHttpUpload(s.http, BODY.length, 0);
    ok.write(BODY);
    const okHead = await responseHead(ok);
    assert.equal(okHead.status, 200);
    assert.notEqual(okHead.headers.connection, 'close');
    ok.destroy();
  });

  test('read_header_timeout, read_timeout and idle_timeout close connections that stall', { timeout: 20_000 }, async () => {
    const s = await start({ protocols: { http: { read_header_timeout: '300ms', read_timeout: '800ms', idle_timeout: '400ms' } } });
    services.push(s.service);
    // Nothing sent at all.
    const silent = await idleConnection(s.http);
    silent.on('error', () => undefined);
    // Half a request head.
    const partial = await idleConnection(s.http);
    partial.on('error', () => undefined);
    partial.write('POST /v1/traces HTTP/1.1\r\nHost: x\r\n');
    // Headers and 3 of 1,000 body bytes.
    const upload = keep(await stalledHttpUpload(s.http));
    // A finished request, then nothing: the keep-alive connection idles out.
    const idle = await stalledHttpUpload(s.http, BODY.length, 0);
    idle.write(BODY);
    assert.equal((await responseHead(idle)).status, 200);
    const [silentS, partialS, uploadS, idleS] = await Promise.all([closedAfter(silent), closedAfter(partial), closedAfter(upload), closedAfter(idle)]);
    assert.ok(silentS < 3, `silent connection closed after ${silentS} s`);
    assert.ok(partialS < 3, `partial head closed after ${partialS} s`);
    assert.ok(uploadS < 3, `stalled body closed after ${uploadS} s`);
    assert.ok(idleS < 3, `idle keep-alive connection closed after ${idleS} s`);
    assert.equal(await postOk(s.http), 200);
  });

  test('write_timeout: a request not answered within it loses its connection; answered ones keep theirs, and each request gets the whole time', { timeout: 30_000 }, async () => {
    // A backend that never answers, no queue: the export, and so the answer, waits for ever.
    const stuck = new GrpcSink();
    stuck.reply = () => ({ kind: 'hang' });
    await stuck.start();
    const [grpcPort, httpPort, slowPort] = await freePorts(3);
    const service = await startService({
      receivers: {
        otlp: { protocols: { grpc: { endpoint: `127.0.0.1:${grpcPort}` }, http: { endpoint: `127.0.0.1:${httpPort}`, write_timeout: '600ms', http1: layer } } },
        'otlp/slow': { protocols: { http: { endpoint: `127.0.0.1:${slowPort}`, write_timeout: '600ms', http1: layer } } },
      },
      exporters: {
        debug: {},
        otlp: { endpoint: `127.0.0.1:${stuck.port}`, tls: { insecure: true }, timeout: '20s', sending_queue: { enabled: false }, retry_on_failure: { enabled: false } },
      },
      service: {
        pipelines: { traces: { receivers: ['otlp'], exporters: ['debug'] }, 'traces/slow': { receivers: ['otlp/slow'], exporters: ['otlp'] } },
        telemetry: { metrics: { level: 'none' } },
      },
    });
    services.push(service);
    try {
      const slow = keep(await stalledHttpUpload(slowPort, BODY.length, 0));
      const closed = closedAfter(slow);
      slow.write(BODY);
      const seconds = await closed;
      assert.ok(seconds >= 0.5 && seconds < 5, `closed after ${seconds} s`);
      await waitFor('the export to reach the stuck backend', () => stuck.requests.length === 1);
      // A fast pipeline answers in time; the same connection, idle past write_timeout, then takes a second request.
      const fast = keep(await stalledHttpUpload(httpPort, BODY.length, 0));
      fast.write(BODY);
      assert.equal((await responseHead(fast)).status, 200);
      await new Promise((resolve) => setTimeout(resolve, 900));
      assert.ok(!fast.destroyed, 'an answered request keeps its connection');
      fast.write(`POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: ${BODY.length}\r\n\r\n`);
      fast.write(BODY);
      assert.equal((await responseHead(fast)).status, 200);
    } finally {
      await stuck.stop();
    }
  });

  test('max_connections: a connection past the limit is closed at once, the open ones are served', { timeout: 20_000 }, async () => {
    const s = await start({ protocols: { http: { max_connections: 3 } } });
    services.push(s.service);
    const open = await idleConnections(s.http, 3);
    const extra = await idleConnection(s.http);
    assert.ok((await closedAfter(extra)) < 3);
    assert.equal(await metricValue(s.service, 'otelcol_receiver_otlp_refused_connections', { transport: 'http', reason: 'max_connections' }), 1);
    // An open one still works.
    open[0]!.write(`POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: ${BODY.length}\r\n\r\n`);
    open[0]!.write(BODY);
    assert.equal((await responseHead(open[0]!)).status, 200);
    for (const socket of open) socket.destroy();
    await waitFor('a later client to be served', async () => (await postOk(s.http)) === 200);
  });

  test('max_inflight_bytes: a request that would pass it is refused with 503 and Retry-After, over HTTP and gRPC', { timeout: 20_000 }, async () => {
    const s = await start({ max_inflight_bytes: 2000 });
    services.push(s.service);
    const holder = keep(await stalledHttpUpload(s.http, 1500, 3));
    // Wait until the server has taken the holder's reservation (its headers are parsed).
    await new Promise((resolve) => setTimeout(resolve, 200));
    const refused = await stalledHttpUpload(s.http, 1000, 0);
    const head = await responseHead(refused);
    assert.equal(head.status, 503);
    assert.equal(head.headers['retry-after'], '1');
    assert.equal(head.headers.connection, 'close');
    const call = await stalledGrpcCall(s.grpc, 1000, 3);
    keep(call.session);
    const status = await callStatus(call.stream);
    assert.equal(status.grpcStatus, 14, status.message);
    assert.match(status.message, /max_inflight_bytes/);
    assert.ok(status.details, 'RetryInfo in grpc-status-details-bin');
    call.session.destroy();
    // The bytes come back when the holder goes away.
    assert.equal(await metricValue(s.service, 'otelcol_receiver_otlp_inflight_refused_requests', { transport: 'http' }), 1);
    assert.equal(await metricValue(s.service, 'otelcol_receiver_otlp_inflight_refused_requests', { transport: 'grpc' }), 1);
    assert.equal(await metricValue(s.service, 'otelcol_receiver_otlp_inflight_bytes'), 1500);
    holder.destroy();
    await waitFor('the budget to be released', async () => (await postOk(s.http)) === 200);
    assert.equal(await metricValue(s.service, 'otelcol_receiver_otlp_inflight_bytes'), 0);
  });

  test('max_inflight_bytes counts what a compressed request inflates to: small gzip bodies of 3 MiB each are refused together, over HTTP and gRPC', { timeout: 30_000 }, async () => {
    const s = await start({ max_inflight_bytes: 1024 * 1024 });
    services.push(s.service);
    // ~3 KiB of gzip that inflates to ~3 MiB of valid OTLP.
    const wide = obiResourceSpans(hostInstance('inflate', 1), [obiSpan()]);
    wide.resource.attributes.push({ key: 'blob', value: { stringValue: 'x'.repeat(3 * 1024 * 1024) } });
    const inflated = encodeTraces([wide]);
    const small = zlib.gzipSync(inflated);
    assert.ok(small.length < 64 * 1024 && inflated.length > 3 * 1024 * 1024);
    const postGzip = async (body: Buffer): Promise<Response> => {
      const res = await fetch(`http://127.0.0.1:${s.http}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/x-protobuf', 'content-encoding': 'gzip' }, body });
      await res.arrayBuffer();
      return res;
    };
    // Alone it passes: one request is always let in, up to max_request_body_size once inflated.
    assert.equal((await postGzip(small)).status, 200);
    assert.equal(await metricValue(s.service, 'otelcol_receiver_otlp_inflight_bytes'), 0);
    // Another request holds 1,000 bytes: the same small body now does not fit once inflated.
    const holder = keep(await stalledHttpUpload(s.http, 1000, 3));
    await waitFor('the holder`s reservation', async () => (await metricValue(s.service, 'otelcol_receiver_otlp_inflight_bytes')) === 1000);
    const refused = await postGzip(small);
    assert.equal(refused.status, 503);
    assert.equal(refused.headers.get('retry-after'), '1');
    // gRPC: the same message, compressed in its frame.
    const session = keep(http2.connect(`http://127.0.0.1:${s.grpc}`));
    session.on('error', () => undefined);
    const stream = session.request({ ':method': 'POST', ':path': '/opentelemetry.proto.collector.trace.v1.TraceService/Export', 'content-type': 'application/grpc', te: 'trailers', 'grpc-encoding': 'gzip' });
    const prefix = Buffer.alloc(5);
    prefix[0] = 1;
    prefix.writeUInt32BE(small.length, 1);
    stream.end(Buffer.concat([prefix, small]));
    const status = await callStatus(stream);
    assert.equal(status.grpcStatus, 14, status.message);
    assert.match(status.message, /max_inflight_bytes/);
    assert.ok(status.details, 'RetryInfo in grpc-status-details-bin');
    assert.equal(await metricValue(s.service, 'otelcol_receiver_otlp_inflight_refused_requests', { transport: 'http' }), 1);
    assert.equal(await metricValue(s.service, 'otelcol_receiver_otlp_inflight_refused_requests', { transport: 'grpc' }), 1);
    // What the refused requests had inflated is given back; a body that inflates to little still fits.
    assert.equal(await metricValue(s.service, 'otelcol_receiver_otlp_inflight_bytes'), 1000);
    assert.equal((await postGzip(zlib.gzipSync(BODY))).status, 200);
    holder.destroy();
    await waitFor('the budget to be released', async () => (await postGzip(small)).status === 200);
    assert.equal(await metricValue(s.service, 'otelcol_receiver_otlp_inflight_bytes'), 0);
  });
});

for (const layer of ['spansieve', 'node']) describe(`OTLP/gRPC receiver: timeouts and keepalive (http2: ${layer})`, () => {
  const services: Service[] = [];
  after(async () => {
    for (const s of services) await s.shutdown();
  });

  test('handshake_timeout closes a connection that sends no preface', { timeout: 20_000 }, async () => {
    const s = await start({ protocols: { grpc: { http2: layer, handshake_timeout: '300ms' } } });
    services.push(s.service);
    const socket = await idleConnection(s.grpc);
    socket.on('error', () => undefined);
    assert.ok((await closedAfter(socket)) < 3);
  });

  test('read_timeout ends a call whose message does not arrive: DEADLINE_EXCEEDED', { timeout: 20_000 }, async () => {
    const s = await start({ protocols: { grpc: { http2: layer, read_timeout: '300ms' } } });
    services.push(s.service);
    const call = await stalledGrpcCall(s.grpc);
    keep(call.session);
    const t0 = performance.now();
    const status = await callStatus(call.stream);
    assert.equal(status.grpcStatus, 4, status.message);
    assert.match(status.message, /read_timeout/);
    assert.ok(performance.now() - t0 < 3000);
    call.session.destroy();
  });

  test('grpc-timeout is honoured: DEADLINE_EXCEEDED when it passes before the request is taken', { timeout: 20_000 }, async () => {
    const s = await start({ protocols: { grpc: { http2: layer } } });
    services.push(s.service);
    const call = await stalledGrpcCall(s.grpc, 1000, 3, { 'grpc-timeout': '300m' });
    keep(call.session);
    const t0 = performance.now();
    const status = await callStatus(call.stream);
    assert.equal(status.grpcStatus, 4, status.message);
    assert.match(status.message, /grpc-timeout/);
    assert.ok(performance.now() - t0 < 3000, 'well before read_timeout (1 min)');
    call.session.destroy();
  });

  test('max_connection_idle sends GOAWAY to an idle connection; max_concurrent_streams is announced', { timeout: 20_000 }, async () => {
    const s = await start({ protocols: { grpc: { http2: layer, max_concurrent_streams: 7, keepalive: { server_parameters: { max_connection_idle: '300ms' } } } } });
    services.push(s.service);
    const session = keep(http2.connect(`http://127.0.0.1:${s.grpc}`));
    session.on('error', () => undefined);
    const settings = await new Promise<http2.Settings>((resolve) => session.once('remoteSettings', resolve));
    assert.equal(settings.maxConcurrentStreams, 7);
    const goaway = new Promise<number>((resolve) => session.once('goaway', (code: number) => resolve(code)));
    assert.equal(await goaway, 0);
    session.destroy();
  });

  test('max_connection_age with max_connection_age_grace: GOAWAY, then the connection is closed under a call that never ends', { timeout: 20_000 }, async () => {
    const s = await start({ protocols: { grpc: { http2: layer, keepalive: { server_parameters: { max_connection_age: '300ms', max_connection_age_grace: '300ms' } } } } });
    services.push(s.service);
    const call = await stalledGrpcCall(s.grpc);
    keep(call.session);
    const goaway = new Promise<void>((resolve) => call.session.once('goaway', () => resolve()));
    const closed = new Promise<number>((resolve) => {
      const t0 = performance.now();
      call.session.once('close', () => resolve((performance.now() - t0) / 1000));
    });
    await goaway;
    assert.ok((await closed) < 3);
  });

  test('keepalive time: a quiet connection is pinged', { timeout: 20_000 }, async () => {
    const s = await start({ protocols: { grpc: { http2: layer, keepalive: { server_parameters: { time: '200ms', timeout: '1s' } } } } });
    services.push(s.service);
    const session = keep(http2.connect(`http://127.0.0.1:${s.grpc}`));
    session.on('error', () => undefined);
    await new Promise<void>((resolve) => session.once('ping', () => resolve()));
    session.destroy();
  });

  test('enforcement_policy: a client that pings too often is sent GOAWAY ENHANCE_YOUR_CALM', { timeout: 20_000 }, async () => {
    const s = await start({ protocols: { grpc: { http2: layer, keepalive: { enforcement_policy: { min_time: '10s', permit_without_stream: true } } } } });
    services.push(s.service);
    const session = keep(http2.connect(`http://127.0.0.1:${s.grpc}`));
    session.on('error', () => undefined);
    await new Promise<void>((resolve) => session.once('connect', () => resolve()));
    const goaway = new Promise<{ code: number; data: string }>((resolve) => session.once('goaway', (code: number, _last: number, data?: Buffer) => resolve({ code, data: data?.toString() ?? '' })));
    for (let i = 0; i < 5 && !session.destroyed; i++) {
      await new Promise<void>((resolve) => session.ping(() => resolve()) || resolve());
    }
    const { code, data } = await goaway;
    assert.equal(code, http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
    assert.equal(data, 'too_many_pings');
    session.destroy();
  });

  test('enforcement_policy: a ping after each answered call is no strike, as gRPC-Go counts them (its clients ping as data arrives)', { timeout: 20_000 }, async () => {
    const s = await start({ protocols: { grpc: { http2: layer, keepalive: { enforcement_policy: { min_time: '10s' } } } } });
    services.push(s.service);
    const session = keep(http2.connect(`http://127.0.0.1:${s.grpc}`));
    session.on('error', () => undefined);
    let goaway = false;
    session.once('goaway', () => (goaway = true));
    const empty = Buffer.from([0, 0, 0, 0, 0]);
    for (let i = 0; i < 8; i++) {
      const stream = session.request({ ':method': 'POST', ':path': '/opentelemetry.proto.collector.trace.v1.TraceService/Export', 'content-type': 'application/grpc', te: 'trailers' });
      const trailers = new Promise<string | undefined>((resolve) => {
        stream.on('trailers', (t) => resolve(t['grpc-status'] as string | undefined));
        stream.on('close', () => resolve(undefined));
      });
      stream.resume();
      stream.end(empty);
      assert.equal(await trailers, '0', `call ${i} answered`);
      await new Promise<void>((resolve) => session.ping(() => resolve()) || resolve());
    }
    assert.equal(goaway, false, 'no GOAWAY too_many_pings');
    assert.equal(session.destroyed, false);
    session.destroy();
  });
});

describe('near the fd limit', () => {
  test('new connections are refused, open ones and the health check served, later clients served once load drops', { timeout: 60_000 }, async () => {
    const [grpc, http, health] = await freePorts(3);
    const child = SpansieveProcess.start(
      {
        receivers: { otlp: { protocols: { grpc: { endpoint: `127.0.0.1:${grpc}` }, http: { endpoint: `127.0.0.1:${http}` } } } },
        exporters: { debug: {} },
        extensions: { health_check: { endpoint: `127.0.0.1:${health}` } },
        service: {
          extensions: ['health_check'],
          pipelines: { traces: { receivers: ['otlp'], exporters: ['debug'] } },
          telemetry: { metrics: { level: 'none' }, logs: { level: 'warn' } },
        },
      },
      { fdLimit: 256 },
    );
    const held: net.Socket[] = [];
    try {
      await child.ready(health);
      // A client connected before the flood, with a keep-alive connection.
      const early = await stalledHttpUpload(http, BODY.length, 0);
      early.write(BODY);
      assert.equal((await responseHead(early)).status, 200);
      // More connections than the process has fds: the receivers close the ones past the limit.
      held.push(...(await idleConnections(http, 200)), ...(await idleConnections(grpc, 200)));
      await waitFor('the receivers to close what does not fit', () => held.filter((s) => !s.destroyed).length < 256);
      assert.ok(held.filter((s) => !s.destroyed).length > 100, 'connections under the limit stay open');
      // The health check (the reserve) and the connection that was open before are still served.
      assert.equal((await fetch(`http://127.0.0.1:${health}/`)).status, 200);
      early.write(`POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: ${BODY.length}\r\n\r\n`);
      early.write(BODY);
      assert.equal((await responseHead(early)).status, 200);
      assert.match(child.log, /too many connections open/);
      // Load drops: later clients are served over both protocols.
      for (const s of held) s.destroy();
      await waitFor('a later OTLP/HTTP client to be served', async () => (await postOk(http)) === 200);
      const call = await stalledGrpcCall(grpc, 0, 0);
      call.stream.end();
      assert.equal((await callStatus(call.stream)).grpcStatus, 0);
      call.session.destroy();
      early.destroy();
      const { code } = await child.stop();
      assert.equal(code, 0, child.log);
    } finally {
      for (const s of held) s.destroy();
      await child.dispose();
    }
  });
});
