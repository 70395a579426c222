import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import * as YAML from 'yaml';
import { loadConfig } from '../../src/cli';
import type { InstanceView } from '../../src/component/component';
import { Supervisor } from '../../src/service/supervisor';
import { encodeTraces, hostInstance, k8sInstance, obiResourceSpans, obiSpan } from '../helpers/obi';
import { freePorts, waitFor } from '../helpers/ports';
import { startService } from '../helpers/service';
import { GrpcSink } from '../helpers/sink';

describe('admin API', () => {
  const sink = new GrpcSink();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spansieve-admin-'));
  const file = path.join(dir, 'spansieve.yaml');
  let supervisor: Supervisor;
  let httpPort: number;
  let adminPort: number;
  const web = hostInstance('web-1', 4242, 'backend');
  const other = hostInstance('web-1', 4243, 'backend');
  const pod = k8sInstance('shop', 'edge-1', 'envoy', 'envoy');

  const api = (p: string, init?: RequestInit) => fetch(`http://127.0.0.1:${adminPort}${p}`, init);

  async function sendAll(): Promise<string[]> {
    const before = sink.requests.length;
    const body = encodeTraces([web, other, pod].map((i) => obiResourceSpans(i, [obiSpan(), obiSpan()])));
    const res = await fetch(`http://127.0.0.1:${httpPort}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/x-protobuf' }, body });
    assert.equal(res.status, 200);
    const probe = new GrpcSink();
    probe.requests.push(...sink.requests.slice(before));
    return probe.instanceIds().sort();
  }

  before(async () => {
    await sink.start();
    [httpPort, adminPort] = await freePorts(2);
    fs.writeFileSync(
      file,
      `# spansieve under test: comments survive a save
receivers:
  otlp:
    protocols:
      http: { endpoint: 127.0.0.1:${httpPort} }
processors:
  filter/obi:
    keep:
      - service.instance.id: web-1:4242   # the one we care about
exporters:
  otlp:
    endpoint: 127.0.0.1:${sink.port}
    tls: { insecure: true }
    sending_queue: { enabled: false }
extensions:
  admin:
    endpoint: 127.0.0.1:${adminPort}
service:
  extensions: [admin]
  pipelines:
    traces: { receivers: [otlp], processors: [filter/obi], exporters: [otlp] }
  telemetry: { metrics: { level: none } }
`,
    );
    supervisor = new Supervisor(() => loadConfig({ command: 'run', configFile: file, zero: undefined }), pino({ level: 'silent' }), file);
    await supervisor.start();
  });

  after(async () => {
    await supervisor?.shutdown();
    await sink.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('GET /api/v1/instances lists every instance seen, kept or dropped and by which selector', async () => {
    const started = Date.now();
    assert.deepEqual(await sendAll(), [web.instanceId]);
    const res = await api('/api/v1/instances');
    assert.equal(res.status, 200);
    const instances = (await res.json()) as InstanceView[];
    assert.deepEqual(
      instances.map((i) => [i.id, i.service, i.host, i.pid, i.kept, i.selector]),
      [
        ['shop.edge-1.envoy', 'envoy', 'edge-1', null, false, null],
        ['web-1:4242', 'backend', 'web-1', 4242, true, 'service.instance.id="web-1:4242"'],
        ['web-1:4243', 'backend', 'web-1', 4243, false, null],
      ],
    );
    for (const instance of instances) {
      assert.match(instance.firstSeen, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      assert.ok(Date.parse(instance.lastSeen) >= started - 1000);
      assert.ok(instance.spansPerSecond > 0, `${instance.id} has a span rate`);
      assert.equal(instance.metricPointsPerSecond, 0);
    }
    assert.equal(instances[0]!.attributes['k8s.namespace.name'], 'shop');
  });

  test('spansieve instances prints the inventory as a table', async () => {
    const cli = path.resolve(__dirname, '..', '..', 'src', 'cli.js');
    // Asynchronously: the admin server answering it runs in this very process.
    const run = (args: string[]) =>
      new Promise<{ status: number; stdout: string; stderr: string }>((resolve) =>
        execFile(process.execPath, [cli, ...args], { encoding: 'utf8' }, (err, stdout, stderr) =>
          resolve({ status: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
        ),
      );
    const result = await run(['instances', '--admin', `127.0.0.1:${adminPort}`]);
    assert.equal(result.status, 0, result.stderr);
    const lines = result.stdout.trimEnd().split('\n');
    assert.match(lines[0]!, /^INSTANCE\s+SERVICE\s+PID\s+KEPT\s+SELECTOR\s+SPANS\/S\s+POINTS\/S\s+LAST SEEN$/);
    assert.match(lines.find((l) => l.startsWith('web-1:4242'))!, /^web-1:4242\s+backend\s+4242\s+yes\s+service\.instance\.id="web-1:4242"/);
    assert.match(lines.find((l) => l.startsWith('web-1:4243'))!, /^web-1:4243\s+backend\s+4243\s+no\s/);
    assert.equal(lines.length, 4);
    const unreachable = await run(['instances', '--admin', '127.0.0.1:1']);
    assert.equal(unreachable.status, 1);
    assert.match(unreachable.stderr, /cannot reach the admin API at http:\/\/127\.0\.0\.1:1/);
  });

  test('PUT /api/v1/filters/{id} replaces the lists from the next request; invalid lists get 400 with paths', async () => {
    assert.deepEqual(await (await api('/api/v1/filters')).json(), { 'filter/obi': { keep: [{ 'service.instance.id': 'web-1:4242' }], drop: [] } });

    const bad = await api('/api/v1/filters/filter%2Fobi', { method: 'PUT', body: JSON.stringify({ keep: [{ pid: 'x' }], drop: [{ 'host.name': '/(/' }], extra: 1 }) });
    assert.equal(bad.status, 400);
    const badBody = (await bad.json()) as { errors: string[] };
    assert.deepEqual(badBody.errors.map((e) => e.split(': ')[0]!).sort(), ['extra', 'processors::filter/obi::drop[0]::host.name', 'processors::filter/obi::keep[0]::pid'].sort());
    assert.deepEqual(await sendAll(), [web.instanceId], 'a rejected change changes nothing');

    const ok = await api('/api/v1/filters/filter/obi', { method: 'PUT', body: JSON.stringify({ keep: [{ pid: 4243 }, { 'k8s.namespace.name': 'shop' }] }) });
    assert.equal(ok.status, 200);
    assert.deepEqual(await ok.json(), { keep: [{ pid: 4243 }, { 'k8s.namespace.name': 'shop' }], drop: [] });
    // The inventory reflects the new lists at once, before any new data arrives.
    const now = (await (await api('/api/v1/instances')).json()) as InstanceView[];
    assert.deepEqual(
      now.map((i) => [i.id, i.kept, i.selector]),
      [
        [pod.instanceId, true, 'k8s.namespace.name="shop"'],
        [web.instanceId, false, null],
        [other.instanceId, true, 'pid=4243'],
      ],
    );
    assert.deepEqual(await sendAll(), [other.instanceId, pod.instanceId].sort());

    const instances = (await (await api('/api/v1/instances')).json()) as InstanceView[];
    assert.equal(instances.find((i) => i.id === pod.instanceId)!.selector, 'k8s.namespace.name="shop"');
    assert.equal(instances.find((i) => i.id === web.instanceId)!.kept, false);

    assert.equal((await api('/api/v1/filters/filter%2Fnope', { method: 'PUT', body: '{}' })).status, 404);
    assert.equal((await api('/api/v1/filters/filter%2Fobi', { method: 'PUT', body: '{not json' })).status, 400);
    assert.equal((await api('/api/v1/nothing')).status, 404);
  });

  test('POST /api/v1/filters/{id}/save writes the lists into the config file, keeping its comments', async () => {
    const res = await api('/api/v1/filters/filter%2Fobi/save', { method: 'POST' });
    assert.equal(res.status, 200, await res.text());
    const text = fs.readFileSync(file, 'utf8');
    assert.match(text, /^# spansieve under test: comments survive a save/);
    const doc = YAML.parse(text) as { processors: Record<string, { keep: unknown[] }> };
    assert.deepEqual(doc.processors['filter/obi']!.keep, [{ pid: 4243 }, { 'k8s.namespace.name': 'shop' }]);
    // The saved file is what a reload (SIGHUP) now applies: the same lists.
    const outcome = await supervisor.reload('test');
    assert.notEqual(outcome.kind, 'rejected');
    assert.notEqual(outcome.kind, 'restarted');
    await waitFor('the lists to be unchanged after reload', async () => {
      const lists = (await (await api('/api/v1/filters')).json()) as Record<string, { keep: unknown[] }>;
      return JSON.stringify(lists['filter/obi']!.keep) === JSON.stringify([{ pid: 4243 }, { 'k8s.namespace.name': 'shop' }]);
    });
  });
});

describe('admin API access', () => {
  test('a token, when set, is required for the API (401 without, 200 with); the page needs none', async () => {
    const [httpPort, adminPort] = await freePorts(2);
    const service = await startService({
      receivers: { otlp: { protocols: { http: { endpoint: `127.0.0.1:${httpPort}` } } } },
      processors: { filter: {} },
      exporters: { debug: { verbosity: 'basic' } },
      extensions: { admin: { endpoint: `127.0.0.1:${adminPort}`, token: 's3cret' } },
      service: { extensions: ['admin'], pipelines: { traces: { receivers: ['otlp'], processors: ['filter'], exporters: ['debug'] } }, telemetry: { metrics: { level: 'none' } } },
    });
    try {
      const anonymous = await fetch(`http://127.0.0.1:${adminPort}/api/v1/filters`);
      assert.equal(anonymous.status, 401);
      assert.equal(anonymous.headers.get('www-authenticate'), 'Bearer');
      assert.equal((await fetch(`http://127.0.0.1:${adminPort}/api/v1/instances`, { headers: { authorization: 'Bearer wrong!' } })).status, 401);
      assert.equal((await fetch(`http://127.0.0.1:${adminPort}/api/v1/filters`, { method: 'PUT', body: '{"keep":[]}' })).status, 401);
      const authorized = await fetch(`http://127.0.0.1:${adminPort}/api/v1/filters`, { headers: { authorization: 'Bearer s3cret' } });
      assert.equal(authorized.status, 200);
      assert.deepEqual(await authorized.json(), { filter: { drop: [] } });
      assert.equal((await fetch(`http://127.0.0.1:${adminPort}/`)).status, 200);
      // Started without a config file: nothing to save to.
      const save = await fetch(`http://127.0.0.1:${adminPort}/api/v1/filters/filter/save`, { method: 'POST', headers: { authorization: 'Bearer s3cret' } });
      assert.equal(save.status, 409);
      assert.match(((await save.json()) as { error: string }).error, /without a config file/);
    } finally {
      await service.shutdown();
    }
  });

  test('without a token, requests addressed to a non-loopback host name are refused (DNS rebinding)', async () => {
    const [httpPort, adminPort] = await freePorts(2);
    const service = await startService({
      receivers: { otlp: { protocols: { http: { endpoint: `127.0.0.1:${httpPort}` } } } },
      processors: { filter: {} },
      exporters: { debug: { verbosity: 'basic' } },
      extensions: { admin: { endpoint: `127.0.0.1:${adminPort}` } },
      service: { extensions: ['admin'], pipelines: { traces: { receivers: ['otlp'], processors: ['filter'], exporters: ['debug'] } }, telemetry: { metrics: { level: 'none' } } },
    });
    const get = (host: string) =>
      new Promise<number>((resolve, reject) => {
        http.get({ host: '127.0.0.1', port: adminPort, path: '/api/v1/filters', headers: { host } }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        }).on('error', reject);
      });
    try {
      assert.equal(await get(`127.0.0.1:${adminPort}`), 200);
      assert.equal(await get(`localhost:${adminPort}`), 200);
      assert.equal(await get(`[::1]:${adminPort}`), 200);
      assert.equal(await get(`attacker.example:${adminPort}`), 403);
    } finally {
      await service.shutdown();
    }
  });

  test('binding the admin endpoint beyond loopback without a token is refused at validation', async () => {
    await assert.rejects(
      startService({
        receivers: { otlp: {} },
        exporters: { debug: {} },
        extensions: { admin: { endpoint: '0.0.0.0:13180' } },
        service: { extensions: ['admin'], pipelines: { traces: { receivers: ['otlp'], exporters: ['debug'] } } },
      }),
      /extensions::admin::token: required when the admin endpoint \(0\.0\.0\.0:13180\) is not bound to loopback/,
    );
  });
});
