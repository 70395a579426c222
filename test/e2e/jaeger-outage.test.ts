import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { Jaeger } from '../helpers/jaeger';
import { freePorts, waitFor } from '../helpers/ports';
import { OtlpLoad, OutageProxy, SpansieveProcess } from '../helpers/spansieve-process';

// A real Jaeger behind spansieve goes away for 60 s under 2,000 spans/s, then comes back: every
// span a client got a 200 for is in Jaeger, with the in-memory queue and with file_storage. The
// outage is a proxy that refuses connections (restarting Jaeger would empty its memory store).

const OUTAGE_MS = 60_000;
const SPANS_PER_SECOND = 2000;
const SPANS_PER_REQUEST = 200;

const dirs: string[] = [];
after(() => {
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Acknowledged spans not (yet) in Jaeger, fetched trace by trace. */
async function missingIn(jaeger: Jaeger, traces: ReadonlyMap<string, string[]>): Promise<Map<string, string[]>> {
  const missing = new Map<string, string[]>();
  const entries = [...traces];
  let next = 0;
  const worker = async () => {
    while (next < entries.length) {
      const [traceId, spanIds] = entries[next++]!;
      const trace = await jaeger.trace(traceId);
      const found = new Set(trace?.spans.map((s) => s.spanID) ?? []);
      const lacking = spanIds.filter((id) => !found.has(id));
      if (lacking.length > 0) missing.set(traceId, lacking);
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  return missing;
}

async function outage(storage: boolean): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spansieve-outage-'));
  dirs.push(dir);
  const jaeger = await Jaeger.start();
  const proxy = new OutageProxy(jaeger.otlpGrpcPort);
  let spansieve: SpansieveProcess | undefined;
  let load: OtlpLoad | undefined;
  try {
    await proxy.up();
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
  otlp/jaeger:
    endpoint: 127.0.0.1:${proxy.port}
    tls: { insecure: true }
    retry_on_failure: { initial_interval: 1s, max_interval: 5s }
    sending_queue:
      queue_size: 2000
${storage ? '      storage: file_storage' : ''}
extensions:
  file_storage: { directory: ${path.join(dir, 'queue')}, create_directory: true }
service:
  extensions: [${storage ? 'file_storage' : ''}]
  telemetry: { metrics: { level: none }, logs: { level: warn } }
  pipelines:
    traces: { receivers: [otlp], exporters: [otlp/jaeger] }
`,
    );
    spansieve = new SpansieveProcess(configFile, httpPort);
    await spansieve.start();
    load = new OtlpLoad(httpPort, SPANS_PER_SECOND, SPANS_PER_REQUEST);
    await sleep(3000);
    await proxy.down();
    const downAt = Date.now();
    await sleep(OUTAGE_MS);
    const duringOutage = load.acknowledged.size;
    await proxy.up();
    const outageMs = Date.now() - downAt;
    await sleep(3000);
    await load.stop();
    const acknowledged = load.acknowledgedTraces;
    let missing = await missingIn(jaeger, acknowledged);
    await waitFor(
      'every acknowledged span in Jaeger',
      async () => {
        missing = await missingIn(jaeger, missing);
        return missing.size === 0;
      },
      60_000,
      2000,
    ).catch(() => undefined);
    const missingSpans = [...missing.values()].reduce((n, ids) => n + ids.length, 0);
    console.log(
      `jaeger outage (${storage ? 'file_storage' : 'in memory'}): ${outageMs} ms down, acknowledged ${load.acknowledged.size} spans (${duringOutage} by the end of the outage), refused requests ${load.refused}, missing ${missingSpans}`,
    );
    assert.ok(duringOutage >= (SPANS_PER_SECOND * OUTAGE_MS) / 1000 / 2, `only ${duringOutage} spans acknowledged by the end of the outage: the load did not run`);
    assert.equal(missingSpans, 0, `${missingSpans} of ${load.acknowledged.size} acknowledged spans are not in Jaeger`);
  } finally {
    await load?.stop();
    await spansieve?.stop();
    await proxy.down();
    await jaeger.stop();
  }
}

describe('Jaeger down for 60 s under 2,000 spans/s', { timeout: 600_000 }, () => {
  test('in-memory queue: nothing acknowledged is lost', () => outage(false));
  test('file_storage queue: nothing acknowledged is lost', () => outage(true));
});
