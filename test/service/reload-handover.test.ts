import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import * as YAML from 'yaml';
import { loadConfig } from '../../src/cli';
import { Supervisor } from '../../src/service/supervisor';
import { encodeTraces, hostInstance, obiResourceSpans, obiSpan } from '../helpers/obi';
import { freePorts, waitFor, postTracesRetrying } from '../helpers/ports';
import { GrpcSink } from '../helpers/sink';

// A reload while the backend is down: what the old configuration accepted and could not send yet
// must neither hold the reload up (retries run for minutes by default) nor be lost.

describe('reload with a backend that is down', () => {
  const sink = new GrpcSink();
  const lateSink = new GrpcSink();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spansieve-handover-'));
  const file = path.join(dir, 'spansieve.yaml');
  const instance = hostInstance('handover-host', 2001);
  let supervisor: Supervisor;
  let httpPort: number;
  let deadPort: number;

  function writeConfig(exporterId: string, endpointPort: number): void {
    const doc = {
      receivers: { otlp: { protocols: { http: { endpoint: `127.0.0.1:${httpPort}` } } } },
      processors: { 'filter/live': { keep: [{ 'service.instance.id': instance.instanceId }] } },
      exporters: {
        // The default max_elapsed_time (5 minutes): far longer than this test may take.
        [exporterId]: { endpoint: `127.0.0.1:${endpointPort}`, tls: { insecure: true }, timeout: '1s', retry_on_failure: { initial_interval: '100ms', max_interval: '200ms' } },
      },
      service: {
        pipelines: { traces: { receivers: ['otlp'], processors: ['filter/live'], exporters: [exporterId] } },
        telemetry: { metrics: { level: 'none' } },
      },
    };
    fs.writeFileSync(file, YAML.stringify(doc));
  }

  /** Sends `n` requests of 2 spans each; returns the span ids the receiver accepted. */
  async function send(n: number): Promise<string[]> {
    const ids: string[] = [];
    for (let i = 0; i < n; i++) {
      const spans = [obiSpan(), obiSpan()];
      const body = encodeTraces([obiResourceSpans(instance, spans)]);
      const res = await postTracesRetrying(httpPort, body);
      assert.equal(res.status, 200, await res.text());
      ids.push(...spans.map((s) => s.spanId.toString('base64')));
    }
    return ids;
  }

  function exportedSpanIds(from: GrpcSink): string[] {
    return from.resourceSpans().flatMap((rs) => (rs.scopeSpans as { spans?: { spanId: string }[] }[]).flatMap((ss) => (ss.spans ?? []).map((s) => s.spanId)));
  }

  before(async () => {
    await sink.start();
    [httpPort, deadPort] = await freePorts(2);
    supervisor = new Supervisor(() => loadConfig({ command: 'run', configFile: file, zero: undefined }), pino({ level: 'silent' }), file);
  });

  after(async () => {
    await supervisor?.shutdown();
    await sink.stop();
    await lateSink.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('the exporter that stays takes over the unsent batches and sends them to its new endpoint', { timeout: 30_000 }, async () => {
    writeConfig('otlp', deadPort);
    await supervisor.start();
    const accepted = await send(3);
    // Let the queued batches fail against the dead endpoint and wait for their retries.
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(sink.requests.length, 0);

    writeConfig('otlp', sink.port);
    const outcome = await supervisor.reload('test');
    assert.equal(outcome.kind, 'restarted');
    await waitFor('the carried-over batches at the new endpoint', () => exportedSpanIds(sink).length >= accepted.length, 10_000);
    const newer = await send(1);
    await waitFor('a batch accepted after the reload', () => exportedSpanIds(sink).length >= accepted.length + newer.length, 10_000);
    assert.deepEqual(exportedSpanIds(sink).sort(), [...accepted, ...newer].sort(), 'every accepted span exactly once');
  });

  test('an exporter the new config drops keeps draining in the background; the reload does not wait for it', { timeout: 30_000 }, async () => {
    // Running now: 'otlp' to the live sink. Switch to a dead one, queue data, then replace the exporter.
    writeConfig('otlp', deadPort);
    assert.equal((await supervisor.reload('test')).kind, 'restarted');
    const before = exportedSpanIds(sink).length;
    const accepted = await send(2);
    await new Promise((resolve) => setTimeout(resolve, 300));

    writeConfig('otlp/other', sink.port);
    // Nothing listens on deadPort yet: a reload that waited for the old queue would not return.
    assert.equal((await supervisor.reload('test')).kind, 'restarted');
    const newer = await send(1);
    await waitFor('the new exporter to send', () => exportedSpanIds(sink).length >= before + newer.length, 10_000);
    assert.deepEqual(exportedSpanIds(sink).slice(before).sort(), newer.sort(), 'the new exporter sends only what it received');

    // The old exporter is still retrying: once its backend appears, what it held arrives there.
    await lateSink.start(deadPort);
    await waitFor('the old exporter to deliver to its own backend', () => exportedSpanIds(lateSink).length >= accepted.length, 10_000);
    assert.deepEqual(exportedSpanIds(lateSink).sort(), accepted.sort());
  });
});
