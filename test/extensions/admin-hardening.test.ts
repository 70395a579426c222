import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import { loadConfig } from '../../src/cli';
import { Supervisor } from '../../src/service/supervisor';
import { freePorts } from '../helpers/ports';

interface Answer {
  status: number;
  body: string;
}

/** A raw request, so that exactly the headers given (Origin, Sec-Fetch-Site, Host) are sent. */
function request(port: number, method: string, target: string, headers: Record<string, string> = {}, body?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path: target, headers: { host: `127.0.0.1:${port}`, ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** A service run from a config file, so that `save` really rewrites it. */
function startFromFile(adminConfig: string): { file: string; started: Promise<Supervisor>; dir: string; ports: Promise<[number, number]> } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spansieve-admin-hardening-'));
  const file = path.join(dir, 'spansieve.yaml');
  const ports = freePorts(2);
  const started = ports.then(async ([httpPort, adminPort]) => {
    fs.writeFileSync(
      file,
      `receivers:
  otlp:
    protocols:
      http: { endpoint: 127.0.0.1:${httpPort} }
processors:
  filter/obi:
    keep:
      - service.instance.id: web-1:4242
exporters:
  debug: { verbosity: basic }
extensions:
  admin:
    endpoint: 127.0.0.1:${adminPort}
${adminConfig}
service:
  extensions: [admin]
  pipelines:
    traces: { receivers: [otlp], processors: [filter/obi], exporters: [debug] }
  telemetry: { metrics: { level: none } }
`,
    );
    const supervisor = new Supervisor(() => loadConfig({ command: 'run', configFile: file, zero: undefined }), pino({ level: 'silent' }), file);
    await supervisor.start();
    return supervisor;
  });
  return { file, started, dir, ports };
}

const NEW_LISTS = JSON.stringify({ keep: [{ 'service.instance.id': 'web-1:9999' }] });

void describe('admin API without a token: cross-site requests change nothing', () => {
  const run = startFromFile('');
  let supervisor: Supervisor;
  let port: number;
  before(async () => {
    supervisor = await run.started;
    port = (await run.ports)[1];
  });
  after(async () => {
    await supervisor?.shutdown();
    fs.rmSync(run.dir, { recursive: true, force: true });
  });

  void test('POST .../save and PUT from another site are 403 and leave the lists and the file alone', async () => {
    const fileBefore = fs.readFileSync(run.file, 'utf8');
    const listsBefore = (await request(port, 'GET', '/api/v1/filters/filter%2Fobi')).body;
    const refusals: Record<string, string>[] = [
      { origin: 'http://evil.example' },
      { origin: `http://evil.example:${port}` },
      { origin: 'null' },
      { origin: 'not a url' },
      { 'sec-fetch-site': 'cross-site' },
      { 'sec-fetch-site': 'same-site' }, // another port on localhost is same-site, not same-origin
      { 'sec-fetch-site': 'cross-site', origin: `http://127.0.0.1:${port}` },
    ];
    for (const headers of refusals) {
      const save = await request(port, 'POST', '/api/v1/filters/filter%2Fobi/save', headers);
      assert.equal(save.status, 403, `save with ${JSON.stringify(headers)}: ${save.body}`);
      assert.match((JSON.parse(save.body) as { error: string }).error, /cross-site requests may not change anything/);
      const put = await request(port, 'PUT', '/api/v1/filters/filter%2Fobi', { ...headers, 'content-type': 'application/json' }, NEW_LISTS);
      assert.equal(put.status, 403, `PUT with ${JSON.stringify(headers)}: ${put.body}`);
    }
    assert.equal(fs.readFileSync(run.file, 'utf8'), fileBefore);
    assert.equal((await request(port, 'GET', '/api/v1/filters/filter%2Fobi')).body, listsBefore);
    // Reading is not a change: a cross-site GET is answered (a browser does not show it to the other site).
    assert.equal((await request(port, 'GET', '/api/v1/filters', { origin: 'http://evil.example' })).status, 200);
  });

  void test('same-origin browsers and clients that are not browsers (no Origin) still change and save', async () => {
    const allowed: Record<string, string>[] = [
      {},
      { origin: `http://127.0.0.1:${port}` },
      { 'sec-fetch-site': 'same-origin', origin: `http://127.0.0.1:${port}` },
      { 'sec-fetch-site': 'none' },
      // Behind a reverse proxy that rewrites Host, Fetch Metadata decides.
      { 'sec-fetch-site': 'same-origin', origin: 'https://admin.example' },
    ];
    for (const headers of allowed) {
      const put = await request(port, 'PUT', '/api/v1/filters/filter%2Fobi', { ...headers, 'content-type': 'application/json' }, NEW_LISTS);
      assert.equal(put.status, 200, `PUT with ${JSON.stringify(headers)}: ${put.body}`);
    }
    const save = await request(port, 'POST', '/api/v1/filters/filter%2Fobi/save', { origin: `http://127.0.0.1:${port}` });
    assert.equal(save.status, 200, save.body);
    assert.match(fs.readFileSync(run.file, 'utf8'), /web-1:9999/);
  });

  void test('malformed input is 400, never 500, and error messages stay short', async () => {
    for (const [method, target] of [
      ['GET', '/api/v1/filters/%E0%A4%A'],
      ['PUT', '/api/v1/filters/%E0%A4%A'],
      ['POST', '/api/v1/filters/%E0%A4%A/save'],
      ['GET', '/api/v1/filters/%'],
      ['GET', '//'],
    ] as const) {
      const answer = await request(port, method, target, method === 'GET' ? {} : { 'content-type': 'application/json' }, method === 'PUT' ? NEW_LISTS : undefined);
      assert.equal(answer.status, 400, `${method} ${target}: ${answer.body}`);
    }
    const long = await request(port, 'GET', `/${'x'.repeat(10_000)}`);
    assert.equal(long.status, 404);
    assert.ok(long.body.length < 1200, `${long.body.length} bytes`);
    const badJson = await request(port, 'PUT', '/api/v1/filters/filter%2Fobi', { 'content-type': 'application/json' }, `{${'x'.repeat(20_000)}`);
    assert.equal(badJson.status, 400);
    assert.ok(badJson.body.length < 1200, `${badJson.body.length} bytes`);
  });
});

void describe('admin API with a token', () => {
  const run = startFromFile('    token: s3cret');
  let supervisor: Supervisor;
  let port: number;
  before(async () => {
    supervisor = await run.started;
    port = (await run.ports)[1];
  });
  after(async () => {
    await supervisor?.shutdown();
    fs.rmSync(run.dir, { recursive: true, force: true });
  });

  void test('the Bearer scheme is case-insensitive', async () => {
    for (const authorization of ['Bearer s3cret', 'bearer s3cret', 'BEARER s3cret', 'beArer  s3cret']) {
      assert.equal((await request(port, 'GET', '/api/v1/filters', { authorization })).status, 200, authorization);
    }
    for (const authorization of ['Bearer s3cre', 'Basic s3cret', 'bearers3cret', 's3cret', '']) {
      assert.equal((await request(port, 'GET', '/api/v1/filters', { authorization })).status, 401, authorization);
    }
  });

  void test('a token of the same length in characters but not in bytes is 401, not 500', async () => {
    assert.equal((await request(port, 'GET', '/api/v1/filters', { authorization: 'Bearer s3cr\u00e9t' })).status, 401);
  });

  void test('cross-site changes are refused even with a valid token', async () => {
    const save = await request(port, 'POST', '/api/v1/filters/filter%2Fobi/save', { authorization: 'bearer s3cret', origin: 'http://evil.example' });
    assert.equal(save.status, 403);
  });
});
