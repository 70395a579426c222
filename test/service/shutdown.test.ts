import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import pino from 'pino';
import * as YAML from 'yaml';
import { loadConfig } from '../../src/cli';
import { Supervisor } from '../../src/service/supervisor';
import type { SelfTelemetry } from '../../src/service/telemetry';
import { encodeTraces, hostInstance, obiResourceSpans, obiSpan } from '../helpers/obi';
import { freePorts } from '../helpers/ports';

// A shutdown while the backend is down: retries would run for minutes (max_elapsed_time), longer
// than a grace period before SIGKILL. At service::shutdown_timeout exporters stop and count the loss.

async function counterValue(telemetry: SelfTelemetry, name: string): Promise<number> {
  const metric = (await telemetry.registry.getMetricsAsJSON()).find((m) => m.name === name);
  return (metric?.values ?? []).reduce((sum, v) => sum + Number(v.value), 0);
}

describe('shutdown deadline', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spansieve-shutdown-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('at service::shutdown_timeout the exporter stops retrying and counts what it drops as failed', { timeout: 30_000 }, async () => {
    const [httpPort, deadPort] = await freePorts(2);
    const file = path.join(dir, 'deadline.yaml');
    const instance = hostInstance('shutdown-host', 3001);
    fs.writeFileSync(
      file,
      YAML.stringify({
        receivers: { otlp: { protocols: { http: { endpoint: `127.0.0.1:${httpPort}` } } } },
        exporters: { otlp: { endpoint: `127.0.0.1:${deadPort}`, tls: { insecure: true }, retry_on_failure: { initial_interval: '100ms', max_interval: '200ms' } } },
        service: {
          shutdown_timeout: '700ms',
          pipelines: { traces: { receivers: ['otlp'], exporters: ['otlp'] } },
          telemetry: { metrics: { level: 'none' } },
        },
      }),
    );
    const supervisor = new Supervisor(() => loadConfig({ command: 'run', configFile: file, zero: undefined }), pino({ level: 'silent' }), file);
    await supervisor.start();
    let spans = 0;
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`http://127.0.0.1:${httpPort}/v1/traces`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-protobuf' },
        body: encodeTraces([obiResourceSpans(instance, [obiSpan(), obiSpan()])]),
      });
      assert.equal(res.status, 200);
      spans += 2;
    }
    const telemetry = supervisor.service!.telemetry;
    // max_elapsed_time is the default 5 minutes: only the deadline can end this shutdown within the test's timeout.
    await supervisor.shutdown();
    assert.equal(await counterValue(telemetry, 'otelcol_exporter_send_failed_spans'), spans, 'every span not sent is counted as failed');
    assert.equal(await counterValue(telemetry, 'otelcol_exporter_sent_spans'), 0);
  });

  test('the deadline also ends the background drain of an exporter a reload removed', { timeout: 30_000 }, async () => {
    const [httpPort, deadPort] = await freePorts(2);
    const file = path.join(dir, 'background.yaml');
    const write = (exporterId: string) =>
      fs.writeFileSync(
        file,
        YAML.stringify({
          receivers: { otlp: { protocols: { http: { endpoint: `127.0.0.1:${httpPort}` } } } },
          exporters: { [exporterId]: { endpoint: `127.0.0.1:${deadPort}`, tls: { insecure: true }, retry_on_failure: { initial_interval: '100ms', max_interval: '200ms' } } },
          service: {
            shutdown_timeout: '700ms',
            pipelines: { traces: { receivers: ['otlp'], exporters: [exporterId] } },
            telemetry: { metrics: { level: 'none' } },
          },
        }),
      );
    write('otlp/first');
    const supervisor = new Supervisor(() => loadConfig({ command: 'run', configFile: file, zero: undefined }), pino({ level: 'silent' }), file);
    await supervisor.start();
    const res = await fetch(`http://127.0.0.1:${httpPort}/v1/traces`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-protobuf' },
      body: encodeTraces([obiResourceSpans(hostInstance('shutdown-host', 3002), [obiSpan()])]),
    });
    assert.equal(res.status, 200);
    // otlp/first is not in the new config: it keeps retrying its batch in the background.
    write('otlp/second');
    assert.equal((await supervisor.reload('test')).kind, 'restarted');
    // Without the deadline this would wait for max_elapsed_time (5 minutes).
    await supervisor.shutdown();
  });

  test('shutdown_timeout must be a duration', () => {
    const file = path.join(dir, 'invalid.yaml');
    fs.writeFileSync(file, YAML.stringify({ receivers: { otlp: {} }, exporters: { debug: {} }, service: { shutdown_timeout: 'soon', pipelines: { traces: { receivers: ['otlp'], exporters: ['debug'] } } } }));
    assert.throws(
      () => loadConfig({ command: 'run', configFile: file, zero: undefined }),
      (err: { errors?: string[] }) => (err.errors ?? []).some((e) => e.startsWith('service::shutdown_timeout: expected a duration')),
    );
  });
});
