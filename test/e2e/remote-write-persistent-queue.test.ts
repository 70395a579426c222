import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { hostInstance } from '../helpers/obi';
import { encodeMetrics, nowNanos, obiResourceMetrics } from '../helpers/obi-metrics';
import { freePorts, waitFor } from '../helpers/ports';
import { Prometheus } from '../helpers/prometheus';
import { OutageProxy, SpansieveProcess } from '../helpers/spansieve-process';

// prometheusremotewrite with sending_queue.storage, against a real Prometheus (2.42, remote-write
// receiver) behind a proxy that plays the outage: data accepted while Prometheus is unreachable,
// spansieve killed with SIGKILL, restarted; every sample a client got a 200 for reaches Prometheus.

const METRIC = 'process_memory_usage_bytes';

const dirs: string[] = [];
after(() => {
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

/** Clients posting one process's memory gauge per request (pid = value, a series of its own); keeps the pids answered 200. */
class MetricsLoad {
  readonly acknowledged = new Set<number>();
  refused = 0;
  private nextPid = 1;
  private running = true;
  private readonly loops: Promise<void>[];

  constructor(port: number, clients = 2, intervalMs = 20) {
    this.loops = Array.from({ length: clients }, () => this.loop(port, intervalMs));
  }

  private async loop(port: number, intervalMs: number): Promise<void> {
    while (this.running) {
      const pid = this.nextPid++;
      try {
        const res = await fetch(`http://127.0.0.1:${port}/v1/metrics`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-protobuf' },
          body: encodeMetrics([obiResourceMetrics(hostInstance('web', pid), { memoryBytes: pid, time: nowNanos() })]),
          signal: AbortSignal.timeout(10_000),
        });
        await res.arrayBuffer();
        if (res.status === 200) this.acknowledged.add(pid);
        else this.refused++;
      } catch {
        this.refused++;
      }
      await new Promise((resolve) => setTimeout(resolve, intervalMs));
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }
}

/** The pids whose sample Prometheus holds. */
async function stored(prom: Prometheus): Promise<Set<number>> {
  const values = await prom.valuesBy(`last_over_time(${METRIC}[10m])`, 'instance');
  return new Set([...values.keys()].map((instance) => Number(instance.split(':')[1])));
}

describe('prometheusremotewrite persistent queue across kill -9, real Prometheus', () => {
  test('samples acknowledged while Prometheus was unreachable reach it after a kill -9 and a restart', { timeout: 120_000 }, async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spansieve-prw-pq-'));
    dirs.push(dir);
    const prom = await Prometheus.start({ remoteWriteReceiver: true });
    const proxy = new OutageProxy(prom.port);
    const [httpPort] = await freePorts(1);
    const configFile = path.join(dir, 'spansieve.yaml');
    fs.writeFileSync(
      configFile,
      `
receivers:
  otlp:
    protocols:
      http: { endpoint: 127.0.0.1:${httpPort} }
exporters:
  prometheusremotewrite:
    endpoint: http://127.0.0.1:PROXY_PORT/api/v1/write
    timeout: 2s
    retry_on_failure: { initial_interval: 100ms, max_interval: 500ms, max_elapsed_time: 0 }
    sending_queue:
      storage: file_storage
  debug: { verbosity: basic }
extensions:
  file_storage:
    directory: ${path.join(dir, 'queue')}
    create_directory: true
service:
  extensions: [file_storage]
  telemetry: { metrics: { level: none }, logs: { level: warn } }
  pipelines:
    metrics: { receivers: [otlp], exporters: [prometheusremotewrite] }
    traces: { receivers: [otlp], exporters: [debug] }
`,
    );
    const spansieve = new SpansieveProcess(configFile, httpPort);
    let load: MetricsLoad | undefined;
    try {
      await proxy.up();
      fs.writeFileSync(configFile, fs.readFileSync(configFile, 'utf8').replace('PROXY_PORT', String(proxy.port)));
      await spansieve.start();
      load = new MetricsLoad(httpPort);
      await waitFor('samples flowing to Prometheus', async () => (await stored(prom)).size > 0, 30_000);
      await proxy.down();
      const before = load.acknowledged.size;
      await waitFor('a backlog accepted while Prometheus is unreachable', () => load!.acknowledged.size - before >= 100, 30_000);
      await spansieve.kill9();
      // Acknowledged and not in Prometheus: what the kill would lose without the queue on disk.
      const inPrometheus = await stored(prom);
      const backlog = [...load.acknowledged].filter((pid) => !inPrometheus.has(pid)).length;
      await spansieve.start();
      // Still unreachable: the restarted process takes new data on top of the stored backlog.
      const ackedAtRestart = load.acknowledged.size;
      await waitFor('data accepted after the restart', () => load!.acknowledged.size > ackedAtRestart + 20, 30_000);
      await proxy.up();
      await load.stop();
      const acknowledged = [...load.acknowledged];
      await waitFor('every acknowledged sample in Prometheus', async () => {
        const have = await stored(prom);
        return acknowledged.every((pid) => have.has(pid));
      }, 60_000).catch(() => undefined);
      const have = await stored(prom);
      const missing = acknowledged.filter((pid) => !have.has(pid));
      console.log(`remote write persistent queue: acknowledged ${acknowledged.length}, unsent at the kill ${backlog}, missing ${missing.length}, refused ${load.refused}`);
      assert.deepEqual(missing.slice(0, 20), [], `${missing.length} of ${acknowledged.length} acknowledged samples never reached Prometheus`);
      assert.ok(backlog >= 100, `the kill had a backlog to lose (${backlog})`);
      const values = await prom.valuesBy(`last_over_time(${METRIC}[10m])`, 'instance');
      assert.ok([...values].every(([instance, value]) => instance === `web:${value}`), 'each sample is its own process');
    } finally {
      await load?.stop();
      await spansieve.stop();
      await proxy.down();
      await prom.stop();
    }
  });
});
