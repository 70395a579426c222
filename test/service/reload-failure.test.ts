import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import pino from 'pino';
import * as YAML from 'yaml';
import { loadConfig } from '../../src/cli';
import type { ServiceConfig } from '../../src/config/service-config';
import { Service } from '../../src/service/service';
import { Supervisor } from '../../src/service/supervisor';
import { encodeTraces, hostInstance, obiResourceSpans, obiSpan } from '../helpers/obi';
import { freePorts, waitFor, postTracesRetrying } from '../helpers/ports';
import { GrpcSink } from '../helpers/sink';

// One failed reload must not poison the next ones nor the shutdown: an unexpected error in a
// reload, and a reload whose new and previous configurations both fail to start.

describe('reloads that fail', () => {
  const sink = new GrpcSink();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spansieve-reload-failure-'));
  const file = path.join(dir, 'spansieve.yaml');
  const instance = hostInstance('failure-host', 3001);
  let httpPort: number;
  let occupiedPort: number;
  let deadPort: number;
  let occupier: net.Server;
  /** The next load() throws this instead of reading the file. */
  let loadThrows: Error | undefined;
  /** Configs whose service start is made to fail (the previous one, when it is restarted). */
  const failingStarts = new Set<ServiceConfig>();
  const loaded: ServiceConfig[] = [];
  // eslint-disable-next-line @typescript-eslint/unbound-method -- restored in after(), called with .call(this)
  const originalStart = Service.prototype.start;
  // eslint-disable-next-line @typescript-eslint/unbound-method -- restored in after()
  const originalStopForReload = Service.prototype.stopForReload;
  let supervisor: Supervisor | undefined;

  function writeConfig(options: { extraReceiverPort?: number; exporterPort?: number; logLevel?: string } = {}): void {
    const protocols: Record<string, unknown> = { http: { endpoint: `127.0.0.1:${httpPort}` } };
    if (options.extraReceiverPort) protocols.grpc = { endpoint: `127.0.0.1:${options.extraReceiverPort}` };
    const doc = {
      receivers: { otlp: { protocols } },
      exporters: {
        otlp: { endpoint: `127.0.0.1:${options.exporterPort ?? sink.port}`, tls: { insecure: true }, timeout: '1s', retry_on_failure: { initial_interval: '50ms', max_interval: '100ms' } },
      },
      service: {
        pipelines: { traces: { receivers: ['otlp'], exporters: ['otlp'] } },
        telemetry: { metrics: { level: 'none' }, ...(options.logLevel ? { logs: { level: options.logLevel } } : {}) },
      },
    };
    fs.writeFileSync(file, YAML.stringify(doc));
  }

  function load(): ServiceConfig {
    if (loadThrows) {
      const err = loadThrows;
      loadThrows = undefined;
      throw err;
    }
    const config = loadConfig({ command: 'run', configFile: file, zero: undefined });
    loaded.push(config);
    return config;
  }

  async function send(): Promise<string[]> {
    const spans = [obiSpan(), obiSpan()];
    const body = encodeTraces([obiResourceSpans(instance, spans)]);
    const res = await postTracesRetrying(httpPort, body);
    assert.equal(res.status, 200, await res.text());
    return spans.map((s) => s.spanId.toString('base64'));
  }

  function exportedSpanIds(): string[] {
    return sink.resourceSpans().flatMap((rs) => (rs.scopeSpans as { spans?: { spanId: string }[] }[]).flatMap((ss) => (ss.spans ?? []).map((s) => s.spanId)));
  }

  before(async () => {
    await sink.start();
    [httpPort, occupiedPort, deadPort] = await freePorts(3);
    occupier = net.createServer();
    await new Promise<void>((resolve) => occupier.listen(occupiedPort, '127.0.0.1', resolve));
    Service.prototype.start = function (this: Service) {
      if (failingStarts.has(this.config)) return Promise.reject(new Error('injected start failure'));
      return originalStart.call(this);
    };
  });

  afterEach(async () => {
    failingStarts.clear();
    loadThrows = undefined;
    await supervisor?.shutdown();
    supervisor = undefined;
  });

  after(async () => {
    Service.prototype.start = originalStart;
    Service.prototype.stopForReload = originalStopForReload;
    await new Promise((resolve) => occupier.close(resolve));
    await sink.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('a load that throws a plain Error is reported as failed; the next reload and the shutdown work', async () => {
    writeConfig();
    supervisor = new Supervisor(load, pino({ level: 'silent' }), file);
    await supervisor.start();
    loadThrows = new Error('disk on fire');
    const failed = await supervisor.reload('test');
    assert.deepEqual(failed, { kind: 'failed', error: 'disk on fire', running: true });
    await send();

    writeConfig({ logLevel: 'warn' });
    assert.equal((await supervisor.reload('test')).kind, 'restarted');
    const sent = await send();
    await waitFor('the span sent after the failed reload', () => sent.every((id) => exportedSpanIds().includes(id)), 10_000);
    await supervisor.shutdown();
  });

  test('a service that throws while stopping for a reload is shut down and the new configuration starts', async () => {
    writeConfig();
    supervisor = new Supervisor(load, pino({ level: 'silent' }), file);
    await supervisor.start();
    Service.prototype.stopForReload = async function (this: Service, handOver: ReadonlySet<string>) {
      Service.prototype.stopForReload = originalStopForReload;
      await originalStopForReload.call(this, handOver);
      throw new Error('injected stop failure');
    };
    writeConfig({ logLevel: 'warn' });
    assert.equal((await supervisor.reload('test')).kind, 'restarted');
    const sent = await send();
    await waitFor('a span through the new service', () => sent.every((id) => exportedSpanIds().includes(id)), 10_000);
    await supervisor.shutdown();
  });

  test('new and previous configurations both fail: no service, batches kept; a later good reload starts one and delivers them', { timeout: 30_000 }, async () => {
    writeConfig({ exporterPort: deadPort });
    supervisor = new Supervisor(load, pino({ level: 'silent' }), file, 60_000);
    await supervisor.start();
    const queued = [...(await send()), ...(await send())];
    const previous = loaded.at(-1)!;

    // New: a receiver port that another process holds. Previous: its start is made to fail.
    writeConfig({ exporterPort: deadPort, extraReceiverPort: occupiedPort });
    failingStarts.add(previous);
    const outcome = await supervisor.reload('test');
    assert.equal(outcome.kind, 'failed');
    assert.equal(outcome.kind === 'failed' && outcome.running, false);
    assert.match(outcome.kind === 'failed' ? outcome.error : '', /EADDRINUSE.*injected start failure/s);
    assert.equal(supervisor.service, undefined);

    // Reloads are not poisoned: an invalid file is still rejected, and a good one starts.
    fs.writeFileSync(file, 'receivers: [');
    assert.equal((await supervisor.reload('test')).kind, 'rejected');
    writeConfig({ exporterPort: sink.port });
    assert.equal((await supervisor.reload('test')).kind, 'restarted');
    assert.ok(supervisor.service);
    const later = await send();
    await waitFor('the batches kept while no service ran, and a later one', () => [...queued, ...later].every((id) => exportedSpanIds().includes(id)), 10_000);
    await supervisor.shutdown();
  });

  test('with no service running, the previous configuration is retried until it starts', { timeout: 30_000 }, async () => {
    writeConfig();
    supervisor = new Supervisor(load, pino({ level: 'silent' }), file, 100);
    await supervisor.start();
    const previous = loaded.at(-1)!;
    writeConfig({ extraReceiverPort: occupiedPort });
    failingStarts.add(previous);
    assert.equal((await supervisor.reload('test')).kind, 'failed');
    assert.equal(supervisor.service, undefined);
    // A few retries fail, then the cause goes away.
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(supervisor.service, undefined);
    failingStarts.delete(previous);
    await waitFor('the previous configuration to start again', () => supervisor!.service !== undefined, 10_000, 20);
    const sent = await send();
    await waitFor('a span through the restored service', () => sent.every((id) => exportedSpanIds().includes(id)), 10_000);
    await supervisor.shutdown();
  });

  test('shutdown completes while no service runs, and logs the batches it could not send', { timeout: 30_000 }, async () => {
    writeConfig({ exporterPort: deadPort });
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
    supervisor = new Supervisor(load, logger, file, 60_000);
    await supervisor.start();
    await send();
    failingStarts.add(loaded.at(-1)!);
    writeConfig({ exporterPort: deadPort, extraReceiverPort: occupiedPort });
    assert.equal((await supervisor.reload('test')).kind, 'failed');
    const started = Date.now();
    await supervisor.shutdown();
    // Nothing to drain (no exporter runs): well before the 25 s shutdown_timeout.
    assert.ok(Date.now() - started < 5000, `shutdown took ${Date.now() - started} ms`);
    assert.ok(lines.some((line) => /stopped without a running service/.test(line) && /"items":2/.test(line)), lines.join(''));
    assert.equal((await supervisor.reload('after shutdown')).kind, 'unchanged');
  });
});
