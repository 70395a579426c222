import * as assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { buildServiceConfig } from '../../src/config/service-config';
import { ConfigIssues, ConfigValidationError } from '../../src/config/reader';
import { encodeTraces, hostInstance, obiResourceSpans, obiSpan, type ObiInstance } from '../helpers/obi';
import { freePorts, waitFor } from '../helpers/ports';
import { HttpSink } from '../helpers/sink';
import { EXPORT_METHOD } from '../../src/pdata/otlp';

// The multi-core mode (service::workers: 2) as real processes: the primary forks two workers that
// share the OTLP listeners; spans from many connections reach the sink exactly once and both
// workers take connections; /metrics shows sums; an admin API edit reaches both workers (and a
// replacement for a killed one); SIGTERM drains every worker; kill -9 of the primary leaves no
// worker behind; validate refuses components that must be one per process.

const CLI = path.resolve(__dirname, '..', '..', 'src', 'cli.js');
const LAUNCHER = path.resolve(__dirname, '..', '..', '..', 'bin', 'spansieve');
const A = hostInstance('web', 1001);
const B = hostInstance('web', 1002);

class Cluster {
  child: ChildProcess | undefined;
  readonly output: string[] = [];
  constructor(
    readonly configFile: string,
    readonly ports: { http: number; grpc: number; health: number; admin: number; metrics: number },
  ) {}

  /** Through the launcher (bin/spansieve, which execs node with its flags: same pid), or node and the CLI directly. */
  async start(launcher = false): Promise<void> {
    const child = launcher
      ? spawn(LAUNCHER, ['--config', this.configFile], { stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn(process.execPath, [CLI, '--config', this.configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    child.stdout.on('data', (c: Buffer) => this.output.push(c.toString()));
    child.stderr.on('data', (c: Buffer) => this.output.push(c.toString()));
    await waitFor(
      'the primary to report every worker ready',
      async () => {
        if (child.exitCode !== null) throw new Error(`spansieve exited with ${child.exitCode}: ${this.log().slice(-3000)}`);
        return (await this.health()).status === 200;
      },
      60_000,
    );
  }

  log(): string {
    return this.output.join('');
  }

  /** The worker pids from the primary's last log line that lists them (the ready line, or a replacement's). */
  workerPids(): number[] {
    return [...this.log().matchAll(/"pids":\[([\d,]+)\]/g)].at(-1)?.[1]!.split(',').map(Number) ?? [];
  }

  async health(): Promise<{ status: number; state: string }> {
    try {
      const res = await fetch(`http://127.0.0.1:${this.ports.health}/`);
      return { status: res.status, state: ((await res.json()) as { state: string }).state };
    } catch {
      return { status: 0, state: 'unreachable' };
    }
  }

  async metrics(): Promise<Map<string, number>> {
    const text = await (await fetch(`http://127.0.0.1:${this.ports.metrics}/metrics`)).text();
    const out = new Map<string, number>();
    for (const line of text.split('\n')) {
      const m = /^(\S+) (\S+)$/.exec(line);
      if (m) out.set(m[1]!, Number(m[2]));
    }
    return out;
  }

  async admin(method: string, apiPath: string, body?: unknown): Promise<{ status: number; json: unknown }> {
    const res = await fetch(`http://127.0.0.1:${this.ports.admin}${apiPath}`, {
      method,
      ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
    });
    return { status: res.status, json: await res.json() };
  }

  exited(): Promise<number | null> {
    const child = this.child!;
    if (child.exitCode !== null) return Promise.resolve(child.exitCode);
    return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    await this.exited();
    clearTimeout(timer);
  }
}

/** POSTs one request on a connection of its own (no keep-alive), so that the primary hands each to the next worker. */
function postOnNewConnection(port: number, body: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: '/v1/traces', method: 'POST', agent: false, headers: { 'content-type': 'application/x-protobuf' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** One OTLP/gRPC Export call on an HTTP/2 connection of its own; resolves with its grpc-status. */
function grpcOnNewConnection(port: number, body: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', reject);
    const frame = Buffer.alloc(5 + body.length);
    frame.writeUInt32BE(body.length, 1);
    body.copy(frame, 5);
    const stream = session.request({ ':method': 'POST', ':path': EXPORT_METHOD.traces, 'content-type': 'application/grpc', te: 'trailers' });
    let status = '';
    stream.on('response', (headers) => (status = String(headers['grpc-status'] ?? status)));
    stream.on('trailers', (trailers) => (status = String(trailers['grpc-status'] ?? status)));
    stream.resume();
    stream.on('end', () => {
      session.close();
      resolve(status);
    });
    stream.on('error', reject);
    stream.end(frame);
  });
}

/** `connections` requests, each on a connection of its own with spans of every instance in `instances`; returns the span ids (hex) by instance id. */
async function sendFromConnections(port: number, connections: number, instances: readonly ObiInstance[], grpcPort?: number): Promise<Map<string, string[]>> {
  const sent = new Map<string, string[]>(instances.map((i) => [i.instanceId, []]));
  await Promise.all(
    Array.from({ length: connections }, async (_, n) => {
      const resources = instances.map((instance) => {
        const spans = [obiSpan(), obiSpan()];
        sent.get(instance.instanceId)!.push(...spans.map((s) => s.spanId.toString('hex')));
        return obiResourceSpans(instance, spans);
      });
      // Every other connection is OTLP/gRPC (node:http2), the others OTLP/HTTP.
      if (grpcPort !== undefined && n % 2 === 1) assert.equal(await grpcOnNewConnection(grpcPort, encodeTraces(resources)), '0');
      else assert.equal(await postOnNewConnection(port, encodeTraces(resources)), 200);
    }),
  );
  return sent;
}

/** Requests the sink answered with an error: their spans were not delivered. */
const refused = new WeakSet<object>();

/** The sink answers 503 (and remembers which requests it refused). */
function refuseAll(sink: HttpSink): void {
  sink.reply = (request) => {
    refused.add(request);
    return { kind: 'http-error', status: 503, message: 'down for a moment' };
  };
}

/** Span ids (hex) the sink accepted, each as often as accepted. */
function receivedSpanIds(sink: HttpSink): string[] {
  const accepted = new HttpSink();
  accepted.requests.push(...sink.requests.filter((r) => !refused.has(r)));
  return accepted.resourceSpans().flatMap((rs) =>
    ((rs.scopeSpans as { spans?: { spanId: string }[] }[] | undefined) ?? []).flatMap((ss) => (ss.spans ?? []).map((s) => Buffer.from(s.spanId, 'base64').toString('hex'))),
  );
}

function writeConfig(dir: string, ports: Cluster['ports'], sinkPort: number): string {
  const file = path.join(dir, 'spansieve.yaml');
  fs.writeFileSync(
    file,
    JSON.stringify({
      receivers: { otlp: { protocols: { http: { endpoint: `127.0.0.1:${ports.http}` }, grpc: { endpoint: `127.0.0.1:${ports.grpc}` } } } },
      processors: {
        // bin/spansieve derives V8's heap limit from it; each worker must get it.
        memory_limiter: { check_interval: '1s', limit_mib: 160 },
        'filter/obi': { keep: [{ 'service.instance.id': A.instanceId }, { 'service.instance.id': B.instanceId }] },
      },
      exporters: {
        otlphttp: { endpoint: `http://127.0.0.1:${sinkPort}`, compression: 'none', retry_on_failure: { initial_interval: '50ms', max_interval: '100ms', max_elapsed_time: '60s' } },
      },
      extensions: { health_check: { endpoint: `127.0.0.1:${ports.health}` }, admin: { endpoint: `127.0.0.1:${ports.admin}` } },
      service: {
        workers: 2,
        extensions: ['health_check', 'admin'],
        telemetry: { metrics: { address: `127.0.0.1:${ports.metrics}` } },
        pipelines: { traces: { receivers: ['otlp'], processors: ['memory_limiter', 'filter/obi'], exporters: ['otlphttp'] } },
      },
    }),
  );
  return file;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

void describe('service::workers: 2', { timeout: 120_000 }, () => {
  const sink = new HttpSink();
  let dir: string;
  let spansieve: Cluster;

  before(async () => {
    await sink.start();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spansieve-workers-'));
    const [http, grpc, health, admin, metrics] = await freePorts(5);
    const ports = { http, grpc, health, admin, metrics };
    spansieve = new Cluster(writeConfig(dir, ports, sink.port), ports);
    // The launcher's flags must reach the workers: the heap limit (memory_limiter's) is per worker.
    await spansieve.start(true);
  });

  after(async () => {
    await spansieve.stop();
    await sink.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  void test('spans from many connections reach the sink exactly once; both workers took connections; /metrics sums them', async () => {
    const sent = await sendFromConnections(spansieve.ports.http, 24, [A, B], spansieve.ports.grpc);
    const all = [...sent.values()].flat();
    await waitFor('every span at the sink', () => receivedSpanIds(sink).length >= all.length, 30_000);
    const received = receivedSpanIds(sink);
    assert.equal(received.length, all.length, 'no span twice');
    assert.deepEqual(new Set(received), new Set(all));

    const metrics = await spansieve.metrics();
    const perWorker = [metrics.get('spansieve_worker_accepted_spans{worker="0"}') ?? 0, metrics.get('spansieve_worker_accepted_spans{worker="1"}') ?? 0];
    assert.ok(perWorker[0]! > 0 && perWorker[1]! > 0, `both workers accepted spans: ${perWorker.join(', ')}`);
    assert.equal(
      (metrics.get('otelcol_receiver_accepted_spans{receiver="otlp",transport="http"}') ?? 0) + (metrics.get('otelcol_receiver_accepted_spans{receiver="otlp",transport="grpc"}') ?? 0),
      all.length,
      'the sum over the workers',
    );
    assert.ok(metrics.get('otelcol_receiver_accepted_spans{receiver="otlp",transport="grpc"}')! > 0);
    assert.equal(perWorker[0]! + perWorker[1]!, all.length);
    assert.equal(metrics.get('otelcol_exporter_sent_spans{exporter="otlphttp"}'), all.length);
    assert.equal(metrics.get('spansieve_workers_ready'), 2);
    for (const w of ['0', '1']) {
      const limit = metrics.get(`spansieve_worker_heap_size_limit{worker="${w}"}`)!;
      assert.ok(limit >= 160 * 2 ** 20 && limit < 200 * 2 ** 20, `worker ${w} runs with the launcher's --max-old-space-size=160 (memory_limiter's limit_mib): heap limit ${limit}`);
    }

    // One inventory: both instances, each once, with the requests of both workers.
    const instances = (await spansieve.admin('GET', '/api/v1/instances')).json as { id: string }[];
    assert.deepEqual(instances.map((i) => i.id), [A.instanceId, B.instanceId]);
  });

  void test('an admin API edit of the keep list applies in every worker, and in a replacement for a killed one', async () => {
    const put = await spansieve.admin('PUT', '/api/v1/filters/filter%2Fobi', { keep: [{ 'service.instance.id': A.instanceId }] });
    assert.equal(put.status, 200, JSON.stringify(put.json));
    const before = await spansieve.metrics();
    const sent = await sendFromConnections(spansieve.ports.http, 12, [A, B]);
    await waitFor('A spans at the sink', () => sent.get(A.instanceId)!.every((id) => receivedSpanIds(sink).includes(id)), 30_000);
    const after = await spansieve.metrics();
    for (const w of ['0', '1']) {
      const key = `spansieve_worker_accepted_spans{worker="${w}"}`;
      assert.ok(after.get(key)! > before.get(key)!, `worker ${w} took some of these connections`);
    }
    const received = new Set(receivedSpanIds(sink));
    assert.equal(sent.get(B.instanceId)!.filter((id) => received.has(id)).length, 0, 'no worker kept B');

    // A worker dies: the primary reports degraded meanwhile, replaces it, and the replacement runs the edited list.
    const [first] = spansieve.workerPids();
    process.kill(first!, 'SIGKILL');
    // A replacement needs a few hundred ms at least (node, the modules, the config): polled closely.
    await waitFor('health_check to report the degraded state', async () => (await spansieve.health()).state === 'degraded', 10_000, 10);
    await waitFor('the restart counted', async () => (await spansieve.metrics()).get('spansieve_worker_restarts') === 1, 20_000);
    await waitFor('every worker ready again', async () => (await spansieve.health()).status === 200 && (await spansieve.metrics()).get('spansieve_workers_ready') === 2, 60_000);
    assert.match(spansieve.log(), /worker process died: starting a replacement/);
    const sentAgain = await sendFromConnections(spansieve.ports.http, 12, [A, B]);
    await waitFor('A spans at the sink', () => sentAgain.get(A.instanceId)!.every((id) => receivedSpanIds(sink).includes(id)), 30_000);
    const receivedAgain = new Set(receivedSpanIds(sink));
    assert.equal(sentAgain.get(B.instanceId)!.filter((id) => receivedAgain.has(id)).length, 0, 'the replacement worker drops B too');
    const metrics = await spansieve.metrics();
    for (const w of ['0', '1']) assert.ok(metrics.get(`spansieve_worker_accepted_spans{worker="${w}"}`)! > 0, `worker ${w} took connections after the restart`);
  });

  void test('a reload (SIGHUP to the primary) reaches every worker', async () => {
    const doc = JSON.parse(fs.readFileSync(spansieve.configFile, 'utf8')) as { processors: Record<string, unknown>; service: Record<string, unknown> };
    // An invalid file is refused by the primary with its errors; no worker is asked.
    fs.writeFileSync(spansieve.configFile, JSON.stringify({ ...doc, processors: { ...doc.processors, 'filter/obi': { keep: [{ 'service.name': '/[broken/' }] } } }));
    spansieve.child!.kill('SIGHUP');
    await waitFor('the primary to refuse an invalid file', () => spansieve.log().split('\n').some((l) => l.includes('new configuration rejected; the running one stays') && l.includes('invalid regular expression')), 20_000);
    doc.processors['filter/obi'] = { keep: [{ 'service.instance.id': B.instanceId }] };
    // The number of workers changes only with a restart: such a file is refused as a whole.
    fs.writeFileSync(spansieve.configFile, JSON.stringify({ ...doc, service: { ...doc.service, workers: 3 } }));
    spansieve.child!.kill('SIGHUP');
    await waitFor('the primary to refuse another worker count', () => spansieve.log().includes('service::workers changes only with a restart'), 20_000);
    assert.equal((spansieve.log().match(/filter lists reloaded in place/g) ?? []).length, 0);
    fs.writeFileSync(spansieve.configFile, JSON.stringify(doc));
    spansieve.child!.kill('SIGHUP');
    await waitFor('both workers to reload the filter in place', () => (spansieve.log().match(/filter lists reloaded in place/g) ?? []).length === 2, 20_000);
    const sent = await sendFromConnections(spansieve.ports.http, 12, [A, B]);
    await waitFor('B spans at the sink', () => sent.get(B.instanceId)!.every((id) => receivedSpanIds(sink).includes(id)), 30_000);
    const received = new Set(receivedSpanIds(sink));
    assert.equal(sent.get(A.instanceId)!.filter((id) => received.has(id)).length, 0, 'no worker kept A any more');
  });

  void test('SIGTERM: every worker drains its sending queue, then the primary exits 0 and no worker is left', async () => {
    const workers = spansieve.workerPids().filter(alive);
    assert.equal(workers.length, 2);
    refuseAll(sink);
    const sent = await sendFromConnections(spansieve.ports.http, 8, [B]);
    const ids = sent.get(B.instanceId)!;
    await waitFor('the exporters to be retrying', () => sink.requests.length > 0 && sink.requests.at(-1)!.at > 0, 10_000);
    spansieve.child!.kill('SIGTERM');
    // The backend comes back after the shutdown began: the queues drain to it.
    await new Promise((resolve) => setTimeout(resolve, 300));
    sink.reply = () => ({ kind: 'ok' });
    assert.equal(await spansieve.exited(), 0, spansieve.log().slice(-3000));
    const received = new Set(receivedSpanIds(sink));
    assert.deepEqual(
      ids.filter((id) => !received.has(id)),
      [],
      'every acknowledged span was sent before the exit',
    );
    for (const pid of workers) assert.equal(alive(pid), false, `worker ${pid} exited`);
    assert.equal((spansieve.log().match(/worker shutting down: draining queues/g) ?? []).length, 2);
  });
});

void describe('service::workers: kill -9 of the primary', { timeout: 90_000 }, () => {
  void test('the workers notice the closed IPC channel, drain their queues and exit', async () => {
    const sink = new HttpSink();
    await sink.start();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spansieve-workers-'));
    const [http, grpc, health, admin, metrics] = await freePorts(5);
    const ports = { http, grpc, health, admin, metrics };
    const spansieve = new Cluster(writeConfig(dir, ports, sink.port), ports);
    try {
      await spansieve.start();
      const workers = spansieve.workerPids();
      assert.equal(workers.length, 2);
      refuseAll(sink);
      const ids = (await sendFromConnections(spansieve.ports.http, 8, [A])).get(A.instanceId)!;
      await waitFor('the exporters to be retrying', () => sink.requests.length > 0, 10_000);
      spansieve.child!.kill('SIGKILL');
      await spansieve.exited();
      sink.reply = () => ({ kind: 'ok' });
      await waitFor('the workers to exit', () => workers.every((pid) => !alive(pid)), 30_000);
      // They drained on the way out, as on SIGTERM.
      const received = new Set(receivedSpanIds(sink));
      assert.deepEqual(
        ids.filter((id) => !received.has(id)),
        [],
      );
    } finally {
      spansieve.child?.kill('SIGKILL');
      for (const pid of spansieve.workerPids()) if (alive(pid)) process.kill(pid, 'SIGKILL');
      await sink.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

void describe('service::workers: validation', () => {
  const base = (workers: unknown, extra: Record<string, unknown>, pipeline: Record<string, unknown>) => ({
    receivers: { otlp: {} },
    exporters: { debug: {} },
    ...extra,
    service: { workers, pipelines: { traces: { receivers: ['otlp'], exporters: ['debug'], ...pipeline } } },
  });
  const errorsOf = (doc: unknown): string[] => {
    try {
      buildServiceConfig(doc, new ConfigIssues());
      return [];
    } catch (err) {
      if (err instanceof ConfigValidationError) return [...err.errors];
      throw err;
    }
  };

  void test('tail_sampling, spanmetrics and the prometheus exporter are refused with workers: 2 and auto, each with the reason', () => {
    const doc = (workers: unknown) => ({
      receivers: { otlp: {} },
      processors: { tail_sampling: { policies: [{ name: 'all', type: 'always_sample' }] } },
      connectors: { spanmetrics: {} },
      exporters: { debug: {}, prometheus: { endpoint: '127.0.0.1:0' } },
      service: {
        workers,
        pipelines: {
          traces: { receivers: ['otlp'], processors: ['tail_sampling'], exporters: ['debug', 'spanmetrics'] },
          metrics: { receivers: ['spanmetrics'], exporters: ['prometheus'] },
        },
      },
    });
    for (const workers of [2, 'auto']) {
      const errors = errorsOf(doc(workers));
      assert.equal(errors.length, 3, errors.join('\n'));
      assert.match(errors.find((e) => e.startsWith('processors::tail_sampling'))!, /tail_sampling cannot run with service::workers: .*a trace's spans/);
      assert.match(errors.find((e) => e.startsWith('connectors::spanmetrics'))!, /spanmetrics cannot run with service::workers/);
      assert.match(errors.find((e) => e.startsWith('exporters::prometheus'))!, /prometheus cannot run with service::workers: .*one port/);
    }
    assert.deepEqual(errorsOf(doc(1)), [], 'one process runs them as today');
    assert.deepEqual(errorsOf(doc(undefined)), [], 'the default is one process');
  });

  void test('the gateway pipeline is accepted; workers must be a positive integer or auto', () => {
    const gateway = base(4, { processors: { memory_limiter: { limit_mib: 200, check_interval: '1s' }, 'filter/obi': { keep: [{ pid: 42 }] } } }, { processors: ['memory_limiter', 'filter/obi'] });
    assert.equal(buildServiceConfig(gateway, new ConfigIssues()).workers, 4);
    assert.equal(buildServiceConfig(base('auto', {}, {}), new ConfigIssues()).workers, os.availableParallelism());
    assert.match(errorsOf(base(0, {}, {})).join('\n'), /service::workers/);
    assert.match(errorsOf(base('many', {}, {})).join('\n'), /service::workers/);
  });
});

void test('workers: 2: a worker\'s memory_limiter refusing reaches the primary\'s health_check (component_health), named with its worker', { timeout: 90_000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spansieve-workers-status-'));
  const [http, grpc, health, admin, metrics, components] = await freePorts(6);
  const ports = { http, grpc, health, admin, metrics };
  const file = path.join(dir, 'spansieve.yaml');
  fs.writeFileSync(
    file,
    JSON.stringify({
      receivers: { otlp: { protocols: { http: { endpoint: `127.0.0.1:${http}` }, grpc: { endpoint: `127.0.0.1:${grpc}` } } } },
      // Any Node process uses more than 2 MiB: each worker's limiter refuses from its first check on.
      processors: { memory_limiter: { check_interval: '100ms', limit_mib: 2, spike_limit_mib: 1 } },
      exporters: { debug: {} },
      extensions: {
        health_check: { endpoint: `127.0.0.1:${health}` },
        'health_check/components': { endpoint: `127.0.0.1:${components}`, component_health: { include_recoverable_errors: true, recovery_duration: '300ms' } },
      },
      service: {
        workers: 2,
        extensions: ['health_check', 'health_check/components'],
        telemetry: { metrics: { address: `127.0.0.1:${metrics}` } },
        pipelines: { traces: { receivers: ['otlp'], processors: ['memory_limiter'], exporters: ['debug'] } },
      },
    }),
  );
  const spansieve = new Cluster(file, ports);
  try {
    await spansieve.start();
    let answer: { httpStatus: number; component?: string; error?: string } = { httpStatus: 0 };
    await waitFor(
      'the primary\'s component_health to turn unhealthy',
      async () => {
        const res = await fetch(`http://127.0.0.1:${http}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"resourceSpans":[]}' });
        await res.arrayBuffer();
        const check = await fetch(`http://127.0.0.1:${components}/`);
        answer = { ...((await check.json()) as { component?: string; error?: string }), httpStatus: check.status };
        return answer.httpStatus === 500;
      },
      30_000,
    ).catch((err: Error) => {
      throw new Error(`${err.message}; last answer ${JSON.stringify(answer)}; log: ${spansieve.log().slice(-2000)}`);
    });
    assert.match(answer.component ?? '', /^processor:memory_limiter \(worker [01]\)$/);
    assert.equal(answer.error, 'data refused due to high memory usage');
    assert.equal((await spansieve.health()).status, 200, 'the plain health_check keeps the Collector\'s default');
  } finally {
    await spansieve.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
