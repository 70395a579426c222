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
import { freePorts, waitFor } from '../helpers/ports';
import { GrpcSink } from '../helpers/sink';

// Live changes under steady load: filter lists change through the config file (watched) and
// SIGHUP-style reloads while requests keep flowing; none may fail and no accepted span be lost.

/** The CLI's own loader for a config file, as reloads use it. */
function loader(file: string) {
  return () => loadConfig({ command: 'run', configFile: file, zero: undefined });
}

describe('reload', () => {
  const sink = new GrpcSink();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spansieve-reload-'));
  const file = path.join(dir, 'spansieve.yaml');
  let supervisor: Supervisor;
  let httpPort: number;
  let sinkPort: number;

  const a = hostInstance('reload-host', 1001, 'a');
  const b = hostInstance('reload-host', 1002, 'b');

  function writeConfig(keep: string[], extra: Record<string, unknown> = {}): void {
    const doc = {
      receivers: { otlp: { protocols: { http: { endpoint: `127.0.0.1:${httpPort}` } } } },
      processors: { 'filter/live': { keep: keep.map((id) => ({ 'service.instance.id': id })) } },
      exporters: {
        otlp: {
          endpoint: `127.0.0.1:${sinkPort}`,
          tls: { insecure: true },
          retry_on_failure: { initial_interval: '20ms', max_interval: '50ms' },
          ...extra,
        },
      },
      service: {
        pipelines: { traces: { receivers: ['otlp'], processors: ['filter/live'], exporters: ['otlp'] } },
        telemetry: { metrics: { level: 'none' } },
      },
    };
    // Written beside and renamed, as editors and config managers do.
    fs.writeFileSync(`${file}.tmp`, YAML.stringify(doc));
    fs.renameSync(`${file}.tmp`, file);
  }

  before(async () => {
    await sink.start();
    sinkPort = sink.port;
    [httpPort] = await freePorts(1);
    writeConfig([a.instanceId]);
    supervisor = new Supervisor(loader(file), pino({ level: 'silent' }), file);
    await supervisor.start();
    supervisor.watchConfigFile(50);
  });

  after(async () => {
    await supervisor?.shutdown();
    await sink.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('filter lists change in place under steady load: no request fails, no accepted span is lost', async () => {
    const sentSpanIds = new Map<string, string[]>(); // instance -> span ids sent
    const failures: string[] = [];
    let stop = false;
    let requests = 0;
    const load = (async () => {
      while (!stop) {
        const spansA = [obiSpan(), obiSpan()];
        const spansB = [obiSpan()];
        const body = encodeTraces([obiResourceSpans(a, spansA), obiResourceSpans(b, spansB)]);
        try {
          const res = await fetch(`http://127.0.0.1:${httpPort}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/x-protobuf' }, body });
          if (res.status !== 200) failures.push(`HTTP ${res.status}: ${await res.text()}`);
          else {
            sentSpanIds.set(a.instanceId, [...(sentSpanIds.get(a.instanceId) ?? []), ...spansA.map((s) => s.spanId.toString('base64'))]);
            sentSpanIds.set(b.instanceId, [...(sentSpanIds.get(b.instanceId) ?? []), ...spansB.map((s) => s.spanId.toString('base64'))]);
          }
        } catch (err) {
          failures.push((err as Error).message);
        }
        requests++;
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    })();

    try {
      await waitFor('some load before the change', () => requests >= 20);
      // 1. The file changes: keep b instead of a. The watcher reloads it in place.
      writeConfig([b.instanceId]);
      await waitFor('the file change to apply', () => sink.instanceIds().slice(-3).every((id) => id === b.instanceId) && sink.instanceIds().includes(b.instanceId), 10_000, 20);
      // 2. A SIGHUP-style reload after another change: keep both.
      writeConfig([a.instanceId, b.instanceId]);
      const outcome = await supervisor.reload('test');
      assert.ok(outcome.kind === 'filters' || outcome.kind === 'unchanged', JSON.stringify(outcome));
      const afterBoth = requests;
      await waitFor('load with both kept', () => requests >= afterBoth + 20);
    } finally {
      stop = true;
      await load;
    }
    // Everything accepted has been exported once the sending queue has drained (the count settles).
    let settled = -1;
    await waitFor('the sending queue to drain', async () => {
      const count = sink.spanCount();
      const stable = count === settled;
      settled = count;
      await new Promise((resolve) => setTimeout(resolve, 200));
      return stable;
    });

    assert.deepEqual(failures, [], 'no request may fail during reloads');
    const exported = new Map<string, Set<string>>();
    for (const rs of sink.resourceSpans()) {
      const attributes = (rs.resource as { attributes: { key: string; value: { stringValue?: string } }[] }).attributes;
      const id = attributes.find((x) => x.key === 'service.instance.id')?.value.stringValue ?? '';
      for (const ss of (rs.scopeSpans as { spans?: { spanId: string }[] }[]) ?? []) {
        for (const span of ss.spans ?? []) exported.set(id, (exported.get(id) ?? new Set()).add(span.spanId));
      }
    }
    // a was kept at the start and at the end, b from the first change on: both phases present.
    const exportedA = exported.get(a.instanceId) ?? new Set();
    const exportedB = exported.get(b.instanceId) ?? new Set();
    const sentA = sentSpanIds.get(a.instanceId)!;
    const sentB = sentSpanIds.get(b.instanceId)!;
    assert.ok(exportedA.size > 0 && exportedB.size > 0);
    // Per request, the kept instance's spans arrived exactly as sent: nothing duplicated, nothing
    // that was not sent; and the last requests (both kept) delivered both.
    for (const id of exportedA) assert.ok(sentA.includes(id));
    for (const id of exportedB) assert.ok(sentB.includes(id));
    assert.ok(exportedA.has(sentA.at(-1)!), 'the last a span (sent while a was kept) was exported');
    assert.ok(exportedB.has(sentB.at(-1)!), 'the last b span (sent while b was kept) was exported');
    // While only b was kept, a's spans were dropped: some a spans are missing, some b spans too (before).
    assert.ok(exportedA.size < sentA.length, 'a spans sent while only b was kept were filtered');
    assert.ok(exportedB.size < sentB.length, 'b spans sent while only a was kept were filtered');
    assert.equal(sink.spanCount(), exportedA.size + exportedB.size, 'no span was exported twice');
  });

  test('an invalid new config is rejected with its errors and the running one keeps working', async () => {
    fs.writeFileSync(file, 'receivers: { otlp: {} }\nprocessors: { filter/live: { keep: [ { service.name: "/[broken/" } ] } }\nservice: { pipelines: {} }\n');
    const outcome = await supervisor.reload('test');
    assert.equal(outcome.kind, 'rejected');
    assert.ok(
      outcome.kind === 'rejected' && outcome.errors.some((e) => e.startsWith('processors::filter/live::keep[0]::service.name: invalid regular expression')),
      JSON.stringify(outcome),
    );
    const before = sink.requests.length;
    const res = await fetch(`http://127.0.0.1:${httpPort}/v1/traces`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-protobuf' },
      body: encodeTraces([obiResourceSpans(a, [obiSpan()])]),
    });
    assert.equal(res.status, 200);
    await waitFor('the span under the previous rules', () => sink.requests.length > before);
  });

  test('a change beyond filter lists restarts the service with the new config', async () => {
    writeConfig([b.instanceId], { headers: { 'x-generation': 'two' } });
    const outcome = await supervisor.reload('test');
    assert.equal(outcome.kind, 'restarted');
    const before = sink.requests.length;
    // A restart closes the listeners for a moment (clients retry); a pooled connection may be gone.
    await waitFor('the restarted receiver to accept', async () => {
      const res = await fetch(`http://127.0.0.1:${httpPort}/v1/traces`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-protobuf' },
        body: encodeTraces([obiResourceSpans(a, [obiSpan()]), obiResourceSpans(b, [obiSpan()])]),
      });
      return res.status === 200;
    });
    await waitFor('the export under the new config', () => sink.requests.length > before);
    const last = sink.requests.at(-1)!;
    assert.equal(last.headers['x-generation'], 'two');
    const probe = new GrpcSink();
    probe.requests.push(last);
    assert.deepEqual(probe.instanceIds(), [b.instanceId]);
  });
});
