import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as YAML from 'yaml';
import { ConfigIssues, ConfigValidationError } from '../../src/config/reader';
import { parseConfigText } from '../../src/config/load';
import { buildServiceConfig } from '../../src/config/service-config';
import { BearerTokenAuth, TOKEN_FILE_POLL_MS, parseBearerTokenAuthConfig, tokensOfFile } from '../../src/extensions/bearertokenauth/bearertokenauth';
import { types } from '../../src/pdata/codec';
import type { Service } from '../../src/service/service';
import { stalledGrpcCall, stalledHttpUpload } from '../helpers/child';
import { configErrors, parseWith, testSettings } from '../helpers/components';
import { rawExportMethod } from '../helpers/grpc';
import { encodeTraces, hostInstance, obiResourceSpans, obiSpan } from '../helpers/obi';
import { metricsBatch, obiResourceMetrics } from '../helpers/obi-metrics';
import { freePorts, waitFor } from '../helpers/ports';
import { captureLogs, startService, type CapturedLogs } from '../helpers/service';
import { GrpcSink, HttpSink } from '../helpers/sink';

// bearertokenauth: config, the check itself, and the otlp receiver and exporters using it, with
// a token file rewritten while they run.

const BODY = encodeTraces([obiResourceSpans(hostInstance('web-1', 4242), [obiSpan({ name: 'auth' })])]);
/** A refusal must come while the request is still being sent; a receiver reading the body first never answers these. */
const ANSWER_WITHIN_MS = 5000;

function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'spansieve-bearer-'));
}

function extension(raw: Record<string, unknown>, logs?: CapturedLogs): BearerTokenAuth {
  const settings = testSettings('bearertokenauth');
  return new BearerTokenAuth(logs ? { ...settings, logger: logs.logger } : settings, parseWith(parseBearerTokenAuthConfig, raw));
}

function validationErrors(doc: Record<string, unknown>): string[] {
  const issues = new ConfigIssues();
  const parsed = parseConfigText(YAML.stringify(doc), 'test', issues);
  try {
    buildServiceConfig(parsed, issues);
  } catch (err) {
    if (err instanceof ConfigValidationError) return [...err.errors];
    throw err;
  }
  return [];
}

void describe('bearertokenauth config', () => {
  void test('defaults: Authorization header, Bearer scheme; token becomes the one token', () => {
    const config = parseWith(parseBearerTokenAuthConfig, { token: 'abc' });
    assert.equal(config.header, 'Authorization');
    assert.equal(config.scheme, 'Bearer');
    assert.deepEqual(config.tokens, ['abc']);
    assert.equal(config.filename, undefined);
  });

  void test('every problem is reported with its key', () => {
    assert.deepEqual(configErrors(parseBearerTokenAuthConfig, {}), ['component: no bearer token provided: set token, tokens or filename']);
    assert.deepEqual(configErrors(parseBearerTokenAuthConfig, { token: 'a', tokens: ['b'] }), ['component: set token or tokens, not both']);
    assert.deepEqual(configErrors(parseBearerTokenAuthConfig, { token: 'a\nb' }), ['component::token: must not contain control characters or line breaks (a header value cannot carry them)']);
    assert.deepEqual(configErrors(parseBearerTokenAuthConfig, { tokens: ['a', ''] }), ['component::tokens[1]: must not be empty']);
    assert.deepEqual(configErrors(parseBearerTokenAuthConfig, { token: 'a', header: 'X Auth' }), ['component::header: expected an HTTP header name, got "X Auth"']);
    assert.deepEqual(configErrors(parseBearerTokenAuthConfig, { token: 'a', retry_on_failure: { enabled: true, interval: '1s' } }), ['component::retry_on_failure: requires filename']);
    assert.deepEqual(configErrors(parseBearerTokenAuthConfig, { filename: '/x', retry_on_failure: { enabled: true } }), [
      'component::retry_on_failure::interval: must be greater than 0 when retry_on_failure is enabled',
    ]);
    assert.deepEqual(configErrors(parseBearerTokenAuthConfig, { filename: '/x', wait_for_token_file: true }), ['component::wait_for_token_file: requires retry_on_failure.enabled']);
    assert.deepEqual(configErrors(parseBearerTokenAuthConfig, { token: 'a', unknown: 1 }).length, 1);
  });

  void test('a token file: trimmed, one token per line, the first word of each (the rest is a comment)', () => {
    assert.deepEqual(tokensOfFile('abc\n'), ['abc']);
    assert.deepEqual(tokensOfFile('  abc  \r\n'), ['abc']);
    assert.deepEqual(tokensOfFile('one # first\n\n two // second\r\nthree\n'), ['one', 'two', 'three']);
    assert.deepEqual(tokensOfFile(' \n \n'), []);
  });

  void test('references: configured, enabled, an authenticator of the right kind; each error names its key path', () => {
    const base = {
      receivers: { otlp: { protocols: { grpc: { auth: { authenticator: 'bearertokenauth/in' } }, http: { auth: { authenticator: 'health_check' } } } } },
      exporters: {
        otlp: { endpoint: '127.0.0.1:4317', auth: { authenticator: 'bearertokenauth/out' } },
        otlphttp: { endpoint: 'http://127.0.0.1:4318', auth: { authenticator: 'bearertokenauth/missing' } },
        'otlp/empty': { endpoint: '127.0.0.1:4317', auth: {} },
      },
      extensions: { 'bearertokenauth/in': { token: 'a' }, 'bearertokenauth/out': { token: 'b' }, health_check: {} },
      service: { extensions: ['bearertokenauth/in', 'health_check'], pipelines: { traces: { receivers: ['otlp'], exporters: ['otlp', 'otlphttp', 'otlp/empty'] } } },
    };
    assert.deepEqual(validationErrors(base).sort(), [
      'exporters::otlp/empty::auth::authenticator: required: the id of an authenticator extension, e.g. bearertokenauth or bearertokenauth/<name>',
      'exporters::otlp::auth::authenticator: references extension "bearertokenauth/out" which is not enabled (list it in service::extensions)',
      'exporters::otlphttp::auth::authenticator: references extension "bearertokenauth/missing" which is not configured (add it under extensions)',
      'receivers::otlp::protocols::http::auth::authenticator: extension "health_check" is not a server authenticator (bearertokenauth is one)',
    ]);
  });
});

void describe('bearertokenauth checks', () => {
  void test('missing, wrong, right; scheme and header as configured; several tokens', async () => {
    const auth = extension({ tokens: ['one', 'two'] });
    await auth.start();
    assert.equal(auth.authenticate({}), 'missing or empty Authorization header');
    assert.equal(auth.authenticate({ authorization: '' }), 'missing or empty Authorization header');
    assert.equal(auth.authenticate({ authorization: 'Bearer three' }), 'the Authorization header does not match the expected scheme and token');
    assert.equal(auth.authenticate({ authorization: 'one' }), 'the Authorization header does not match the expected scheme and token');
    assert.equal(auth.authenticate({ authorization: 'Bearer one' }), undefined);
    assert.equal(auth.authenticate({ authorization: 'Bearer two' }), undefined);
    assert.equal(auth.authenticate({ authorization: 'Bearer one ' }) !== undefined, true);
    // A client sends the first token.
    assert.deepEqual(auth.requestHeaders(), { Authorization: 'Bearer one' });
    assert.equal(auth.challenge, 'Bearer');
    await auth.shutdown();

    const custom = extension({ token: 'k', scheme: '', header: 'X-Api-Key' });
    assert.equal(custom.authenticate({ authorization: 'k' }), 'missing or empty X-Api-Key header');
    assert.equal(custom.authenticate({ 'x-api-key': 'k' }), undefined);
    assert.deepEqual(custom.requestHeaders(), { 'X-Api-Key': 'k' });
    assert.equal(custom.challenge, undefined);
  });

  void test('a token file: read at start, re-read when rewritten or replaced, kept when emptied or removed', { timeout: 30_000 }, async () => {
    const dir = tempDir();
    const file = path.join(dir, 'token');
    fs.writeFileSync(file, 'first\n');
    const logs = captureLogs('info');
    const auth = extension({ filename: file }, logs);
    const logged = (msg: string) => logs.lines.filter((l) => l.msg === msg).length;
    try {
      await auth.start();
      assert.equal(auth.authenticate({ authorization: 'Bearer first' }), undefined);
      const sent = auth.requestHeaders();
      assert.deepEqual(sent, { Authorization: 'Bearer first' });
      // Rewritten in place.
      fs.writeFileSync(file, 'second # comment\nthird\n');
      await waitFor('the rewritten token file read', () => auth.authenticate({ authorization: 'Bearer second' }) === undefined, 10 * TOKEN_FILE_POLL_MS);
      assert.notEqual(auth.authenticate({ authorization: 'Bearer first' }), undefined);
      assert.equal(auth.authenticate({ authorization: 'Bearer third' }), undefined);
      assert.notEqual(auth.requestHeaders(), sent, 'a new headers object once the token changed');
      assert.deepEqual(auth.requestHeaders(), { Authorization: 'Bearer second' });
      // Emptied, then removed: seen (logged), and the last tokens stay.
      fs.writeFileSync(file, '\n');
      await waitFor('the emptied file seen', () => logged('bearertokenauth: cannot use the changed token file; keeping the tokens last read') === 1, 10 * TOKEN_FILE_POLL_MS);
      assert.equal(auth.authenticate({ authorization: 'Bearer second' }), undefined);
      fs.rmSync(file);
      await waitFor('the removed file seen', () => logged('bearertokenauth: token file not readable; keeping the tokens last read') === 1, 10 * TOKEN_FILE_POLL_MS);
      assert.equal(auth.authenticate({ authorization: 'Bearer second' }), undefined);
      assert.ok(!JSON.stringify(logs.lines).includes('second'), 'no token in the log');
      // Replaced by a rename (how a Kubernetes secret volume or an atomic writer swaps it).
      fs.writeFileSync(path.join(dir, 'token.new'), 'fourth');
      fs.renameSync(path.join(dir, 'token.new'), file);
      await waitFor('the replaced token file read', () => auth.authenticate({ authorization: 'Bearer fourth' }) === undefined, 10 * TOKEN_FILE_POLL_MS);
    } finally {
      await auth.shutdown();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  void test('a token file that cannot be read fails the start, unless retry_on_failure waits for it', { timeout: 20_000 }, async () => {
    const dir = tempDir();
    const file = path.join(dir, 'token');
    try {
      await assert.rejects(extension({ filename: file }).start(), /bearertokenauth: cannot read the token file .*token: ENOENT/);
      fs.writeFileSync(file, ' \n');
      await assert.rejects(extension({ filename: file }).start(), /bearertokenauth: the token file .*token is empty/);
      fs.rmSync(file);
      await assert.rejects(
        extension({ filename: file, retry_on_failure: { enabled: true, max_retries: 2, interval: '10ms' }, wait_for_token_file: true }).start(),
        /is empty|ENOENT.*after 2 retries/,
      );
      // In the background: started at once, refusing everything until the file is there.
      const background = extension({ filename: file, retry_on_failure: { enabled: true, interval: '20ms' } });
      await background.start();
      assert.match(background.authenticate({ authorization: 'Bearer late' }) ?? '', /no token loaded yet/);
      assert.deepEqual(background.requestHeaders(), {});
      fs.writeFileSync(file, 'late\n');
      await waitFor('the late token file read', () => background.authenticate({ authorization: 'Bearer late' }) === undefined, 5000, 20);
      await background.shutdown();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

interface CallResult {
  code: number;
  details: string;
}

function grpcExport(client: grpc.Client, token: string | undefined): Promise<CallResult> {
  const metadata = new grpc.Metadata();
  if (token !== undefined) metadata.set('authorization', token);
  const method = rawExportMethod('traces');
  return new Promise((resolve) => {
    client.makeUnaryRequest(method.path, method.requestSerialize, method.responseDeserialize, BODY, metadata, { deadline: Date.now() + 10_000 }, (err) =>
      resolve(err ? { code: err.code, details: err.details } : { code: grpc.status.OK, details: '' }),
    );
  });
}

async function httpExport(port: number, token: string | undefined, contentType = 'application/x-protobuf'): Promise<{ status: number; headers: Headers; body: Buffer }> {
  const headers: Record<string, string> = { 'content-type': contentType };
  if (token !== undefined) headers.authorization = token;
  const res = await fetch(`http://127.0.0.1:${port}/v1/traces`, { method: 'POST', headers, body: BODY });
  return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
}

void describe('otlp receiver with auth: bearertokenauth', () => {
  const sink = new GrpcSink();
  const dir = tempDir();
  const tokenFile = path.join(dir, 'token');
  const logs = captureLogs('info');
  let service: Service | undefined;
  let client: grpc.Client | undefined;
  let grpcPort = 0;
  let httpPort = 0;

  before(async () => {
    fs.writeFileSync(tokenFile, 's3cret-one\n');
    await sink.start();
    [grpcPort, httpPort] = await freePorts(2);
    service = await startService(
      {
        extensions: { 'bearertokenauth/in': { filename: tokenFile } },
        receivers: {
          otlp: {
            protocols: {
              grpc: { endpoint: `127.0.0.1:${grpcPort}`, auth: { authenticator: 'bearertokenauth/in' } },
              http: { endpoint: `127.0.0.1:${httpPort}`, auth: { authenticator: 'bearertokenauth/in', request_params: ['authorization'] } },
            },
          },
        },
        exporters: { otlp: { endpoint: `127.0.0.1:${sink.port}`, tls: { insecure: true }, sending_queue: { enabled: false }, retry_on_failure: { enabled: false } } },
        service: { extensions: ['bearertokenauth/in'], pipelines: { traces: { receivers: ['otlp'], exporters: ['otlp'] } } },
      },
      logs.logger,
    );
    client = new grpc.Client(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure());
  });

  after(async () => {
    client?.close();
    await service?.shutdown();
    await sink.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  void test('HTTP: missing or wrong token gets 401 with WWW-Authenticate and a Status; the right one 200', async () => {
    const missing = await httpExport(httpPort, undefined);
    assert.equal(missing.status, 401);
    assert.equal(missing.headers.get('www-authenticate'), 'Bearer');
    const status = types.Status.toObject(types.Status.decode(missing.body)) as { code: number; message: string };
    assert.deepEqual(status, { code: 16, message: 'unauthenticated: missing or empty Authorization header' });

    const wrong = await httpExport(httpPort, 'Bearer s3cret-two', 'application/json');
    assert.equal(wrong.status, 401);
    assert.deepEqual(JSON.parse(wrong.body.toString()), { code: 16, message: 'unauthenticated: the Authorization header does not match the expected scheme and token' });

    // Before anything else: an unknown path is not revealed either.
    const unknown = await fetch(`http://127.0.0.1:${httpPort}/nope`, { method: 'POST' });
    assert.equal(unknown.status, 401);
    await unknown.arrayBuffer();

    const before = sink.requests.length;
    assert.equal((await httpExport(httpPort, 'Bearer s3cret-one')).status, 200);
    assert.equal(sink.requests.length, before + 1);

    // request_params: a query parameter stands for the header (and wins over it).
    const query = await fetch(`http://127.0.0.1:${httpPort}/v1/traces?authorization=${encodeURIComponent('Bearer s3cret-one')}`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-protobuf', authorization: 'Bearer wrong' },
      body: BODY,
    });
    assert.equal(query.status, 200);
    await query.arrayBuffer();
  });

  void test('gRPC: missing or wrong token gets UNAUTHENTICATED; the right one OK', async () => {
    assert.deepEqual(await grpcExport(client!, undefined), { code: grpc.status.UNAUTHENTICATED, details: 'unauthenticated: missing or empty Authorization header' });
    assert.deepEqual(await grpcExport(client!, 'Bearer nope'), {
      code: grpc.status.UNAUTHENTICATED,
      details: 'unauthenticated: the Authorization header does not match the expected scheme and token',
    });
    // The connection is still usable afterwards.
    const before = sink.requests.length;
    assert.deepEqual(await grpcExport(client!, 'Bearer s3cret-one'), { code: grpc.status.OK, details: '' });
    assert.equal(sink.requests.length, before + 1);
  });

  void test('refused before the body is read: answers come while the client is still sending', { timeout: 15_000 }, async () => {
    const socket = await stalledHttpUpload(httpPort, 100_000, 3);
    try {
      const answer = await new Promise<string>((resolve, reject) => {
        let text = '';
        const timer = setTimeout(() => reject(new Error(`no answer within ${ANSWER_WITHIN_MS} ms`)), ANSWER_WITHIN_MS);
        socket.on('data', (chunk: Buffer) => {
          text += chunk.toString('latin1');
          if (text.includes('\r\n\r\n')) {
            clearTimeout(timer);
            resolve(text);
          }
        });
      });
      assert.match(answer, /^HTTP\/1\.1 401 /);
      assert.match(answer, /connection: close/i);
    } finally {
      socket.destroy();
    }

    const { session, stream } = await stalledGrpcCall(grpcPort, 100_000, 3, { authorization: 'Bearer wrong' });
    try {
      const head = await new Promise<Record<string, unknown>>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no answer within ${ANSWER_WITHIN_MS} ms`)), ANSWER_WITHIN_MS);
        stream.once('response', (headers) => {
          clearTimeout(timer);
          resolve(headers);
        });
      });
      assert.equal(head['grpc-status'], String(grpc.status.UNAUTHENTICATED));
    } finally {
      stream.destroy();
      session.destroy();
    }
  });

  void test('a large request with a wrong token: its sender still gets the answer, not a reset (grpc-js, fetch)', { timeout: 30_000 }, async () => {
    // Never parsed: refused on its headers.
    const large = Buffer.alloc(3 * 1024 * 1024, 7);
    const method = rawExportMethod('traces');
    const metadata = new grpc.Metadata();
    metadata.set('authorization', 'Bearer wrong');
    const result = await new Promise<CallResult>((resolve) => {
      client!.makeUnaryRequest(method.path, method.requestSerialize, method.responseDeserialize, large, metadata, { deadline: Date.now() + 15_000 }, (err) =>
        resolve(err ? { code: err.code, details: err.details } : { code: grpc.status.OK, details: '' }),
      );
    });
    assert.equal(result.code, grpc.status.UNAUTHENTICATED, result.details);
    assert.equal((await grpcExport(client!, 'Bearer s3cret-one')).code, grpc.status.OK, 'the connection is still usable');

    const res = await fetch(`http://127.0.0.1:${httpPort}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/x-protobuf', authorization: 'Bearer wrong' }, body: large });
    assert.equal(res.status, 401);
    await res.arrayBuffer();
  });

  void test('a rewritten token file is used without a restart, on both transports', { timeout: 30_000 }, async () => {
    fs.writeFileSync(tokenFile, 's3cret-two\n');
    await waitFor('the new token accepted over HTTP', async () => (await httpExport(httpPort, 'Bearer s3cret-two')).status === 200, 10 * TOKEN_FILE_POLL_MS);
    assert.equal((await httpExport(httpPort, 'Bearer s3cret-one')).status, 401);
    assert.equal((await grpcExport(client!, 'Bearer s3cret-two')).code, grpc.status.OK);
    assert.equal((await grpcExport(client!, 'Bearer s3cret-one')).code, grpc.status.UNAUTHENTICATED);
  });

  void test('refusals are counted per transport and logged without the token', async () => {
    const metric = (await service!.telemetry.registry.getMetricsAsJSON()).find((m) => m.name === 'otelcol_receiver_otlp_unauthenticated_requests');
    const count = (transport: string) => Number(metric?.values.find((v) => v.labels.transport === transport)?.value ?? 0);
    assert.ok(count('http') >= 4, `http refusals: ${count('http')}`);
    assert.ok(count('grpc') >= 4, `grpc refusals: ${count('grpc')}`);
    const refused = logs.lines.filter((l) => String(l.msg).includes('unauthenticated'));
    assert.ok(refused.length >= 2, 'one throttled line per transport at least');
    const all = JSON.stringify(logs.lines);
    for (const secret of ['s3cret-one', 's3cret-two', 'Bearer wrong', 'Bearer nope']) assert.ok(!all.includes(secret), `the log holds ${secret}`);
    assert.ok(logs.lines.some((l) => l.msg === 'bearertokenauth: token file changed; tokens reloaded'));
  });
});

void describe('otlp and otlphttp exporters with auth: bearertokenauth', () => {
  const grpcSink = new GrpcSink();
  const httpSink = new HttpSink();
  const dir = tempDir();
  const tokenFile = path.join(dir, 'token');
  let service: Service | undefined;
  let httpPort = 0;

  before(async () => {
    fs.writeFileSync(tokenFile, 'out-one\n');
    await grpcSink.start();
    await httpSink.start();
    [httpPort] = await freePorts(1);
    const direct = { sending_queue: { enabled: false }, retry_on_failure: { enabled: false } };
    service = await startService({
      extensions: { 'bearertokenauth/out': { filename: tokenFile } },
      receivers: { otlp: { protocols: { http: { endpoint: `127.0.0.1:${httpPort}` } } } },
      exporters: {
        otlp: { endpoint: `127.0.0.1:${grpcSink.port}`, tls: { insecure: true }, headers: { authorization: 'overridden', 'x-tenant': 't1' }, auth: { authenticator: 'bearertokenauth/out' }, ...direct },
        otlphttp: { endpoint: `http://127.0.0.1:${httpSink.port}`, auth: { authenticator: 'bearertokenauth/out' }, ...direct },
      },
      service: { extensions: ['bearertokenauth/out'], pipelines: { traces: { receivers: ['otlp'], exporters: ['otlp', 'otlphttp'] } } },
    });
  });

  after(async () => {
    await service?.shutdown();
    await grpcSink.stop();
    await httpSink.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  void test('each request carries the token (replacing a configured header of that name), and the new one after the file changes', { timeout: 30_000 }, async () => {
    assert.equal((await httpExport(httpPort, undefined)).status, 200);
    assert.equal(grpcSink.requests.at(-1)?.headers.authorization, 'Bearer out-one');
    assert.equal(grpcSink.requests.at(-1)?.headers['x-tenant'], 't1');
    assert.equal(httpSink.requests.at(-1)?.headers.authorization, 'Bearer out-one');

    fs.writeFileSync(tokenFile, 'out-two\n');
    await waitFor(
      'the new token sent',
      async () => {
        assert.equal((await httpExport(httpPort, undefined)).status, 200);
        return httpSink.requests.at(-1)?.headers.authorization === 'Bearer out-two';
      },
      10 * TOKEN_FILE_POLL_MS,
      200,
    );
    assert.equal(grpcSink.requests.at(-1)?.headers.authorization, 'Bearer out-two');
  });

  void test('prometheusremotewrite sends the token too', async () => {
    const { RemoteWriteExporter, parseRemoteWriteConfig } = await import('../../src/exporters/prometheusremotewrite/prometheusremotewrite-exporter');
    const seen: (string | undefined)[] = [];
    const server = http.createServer((req, res) => {
      seen.push(req.headers.authorization);
      req.resume();
      req.on('end', () => res.writeHead(204).end());
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    const auth = extension({ token: 'rw-token', scheme: 'Token' });
    const config = parseWith(parseRemoteWriteConfig, {
      endpoint: `http://127.0.0.1:${(server.address() as { port: number }).port}/api/v1/write`,
      headers: { Authorization: 'overridden' },
      auth: { authenticator: 'bearertokenauth' },
      sending_queue: { enabled: false },
      retry_on_failure: { enabled: false },
    });
    const exporter = new RemoteWriteExporter(testSettings('prometheusremotewrite'), config);
    try {
      await exporter.start({ reportStatus: () => undefined, extensions: new Map([['bearertokenauth', auth]]) });
      await exporter.consume(metricsBatch([obiResourceMetrics(hostInstance('web-1', 4242), { memoryBytes: 1 })]));
      assert.deepEqual(seen, ['Token rw-token']);
    } finally {
      await exporter.shutdown();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  void test('an exporter whose authenticator is not running fails its start with the reason', async () => {
    const { OtlpHttpExporter, parseOtlpHttpExporterConfig } = await import('../../src/exporters/otlphttp/otlphttp-exporter');
    const config = parseWith(parseOtlpHttpExporterConfig, { endpoint: 'http://127.0.0.1:1', auth: { authenticator: 'bearertokenauth/gone' } });
    const exporter = new OtlpHttpExporter(testSettings('otlphttp'), config);
    await assert.rejects(exporter.start({ reportStatus: () => undefined, extensions: new Map() }), /auth: authenticator extension "bearertokenauth\/gone" is not running/);
    await exporter.shutdown();
  });
});
