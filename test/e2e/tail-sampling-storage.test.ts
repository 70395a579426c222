import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { types } from '../../src/pdata/codec';
import { RECORD_MAGIC } from '../../src/extensions/filestorage/segment-queue';
import { GrpcSink } from '../helpers/sink';
import { encodeTraces, hostInstance, obiResourceSpans, obiSpan } from '../helpers/obi';
import { freePorts, waitFor } from '../helpers/ports';
import { SpansieveProcess } from '../helpers/spansieve-process';

// tail_sampling with storage: file_storage in a real process. Undecided traces (decision_wait
// 10m) are buffered under load, then the process is killed with SIGKILL (or stopped with SIGTERM),
// and restarted with decision_wait 1s: every acknowledged span of a trace with an error reaches
// the backend, once; no span of a trace without an error does.

const dirs: string[] = [];
after(() => {
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

/** Counts how often each span id arrived, and which traces. */
class Backend {
  readonly sink = new GrpcSink();
  readonly seen = new Map<string, number>();
  readonly traces = new Set<string>();

  async start(): Promise<void> {
    this.sink.reply = (request) => {
      const decoded = types.ExportTraceServiceRequest.decode(request.body) as unknown as {
        resourceSpans: { scopeSpans: { spans: { spanId: Uint8Array; traceId: Uint8Array }[] }[] }[];
      };
      for (const rs of decoded.resourceSpans) {
        for (const ss of rs.scopeSpans) {
          for (const span of ss.spans) {
            const id = Buffer.from(span.spanId).toString('hex');
            this.seen.set(id, (this.seen.get(id) ?? 0) + 1);
            this.traces.add(Buffer.from(span.traceId).toString('hex'));
          }
        }
      }
      return { kind: 'ok' };
    };
    await this.sink.start();
  }

  duplicates(): number {
    let n = 0;
    for (const count of this.seen.values()) n += count - 1;
    return n;
  }
}

/**
 * Clients posting requests of 5 new traces (2 spans each; about a third with an error span); each
 * client's last trace gets its other half (2 more spans, where its error may be) in its next
 * request, so traces span requests.
 */
class Load {
  /** Span id -> trace id of every span in a request answered 200. */
  readonly acked = new Map<string, string>();
  readonly ackedErrorTraces = new Set<string>();
  /** Traces with an error span in any request sent, answered or not (a request may be written and then the process dies). */
  readonly sentErrorTraces = new Set<string>();
  requests = 0;
  private running = true;
  private readonly loops: Promise<void>[];

  constructor(port: number, clients = 4) {
    this.loops = Array.from({ length: clients }, (_, c) => this.loop(port, c));
  }

  private async loop(port: number, client: number): Promise<void> {
    let carried: { traceId: Buffer; error: boolean } | undefined;
    while (this.running) {
      const spans: { span: ReturnType<typeof obiSpan>; trace: string; error: boolean }[] = [];
      const add = (traceId: Buffer, error: boolean) => {
        const span = obiSpan({ traceId, statusCode: error ? 2 : 0 });
        spans.push({ span, trace: traceId.toString('hex'), error });
      };
      if (carried) {
        add(carried.traceId, carried.error);
        add(carried.traceId, false);
      }
      carried = undefined;
      for (let t = 0; t < 5; t++) {
        const traceId = randomBytes(16);
        const error = Math.random() < 0.33;
        add(traceId, false);
        if (t === 4) carried = { traceId, error };
        else add(traceId, error);
      }
      for (const s of spans) if (s.error) this.sentErrorTraces.add(s.trace);
      try {
        const res = await fetch(`http://127.0.0.1:${port}/v1/traces`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-protobuf' },
          body: encodeTraces([obiResourceSpans(hostInstance('web', 1000 + client), spans.map((s) => s.span))]),
          signal: AbortSignal.timeout(10_000),
        });
        await res.arrayBuffer();
        if (res.status === 200) {
          this.requests++;
          for (const s of spans) {
            this.acked.set(Buffer.from(s.span.spanId).toString('hex'), s.trace);
            if (s.error) this.ackedErrorTraces.add(s.trace);
          }
        }
      } catch {
        // The process is gone: not acknowledged.
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }
}

async function setUp() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spansieve-tsstore-'));
  dirs.push(dir);
  const backend = new Backend();
  await backend.start();
  const [httpPort, metricsPort] = await freePorts(2);
  const configFile = path.join(dir, 'spansieve.yaml');
  const writeConfig = (decisionWait: string) =>
    fs.writeFileSync(
      configFile,
      `
receivers:
  otlp:
    protocols:
      http: { endpoint: 127.0.0.1:${httpPort} }
processors:
  tail_sampling:
    decision_wait: ${decisionWait}
    storage: file_storage
    policies:
      - { name: errors, type: status_code, status_code: { status_codes: [ERROR] } }
exporters:
  otlp/backend:
    endpoint: 127.0.0.1:${backend.sink.port}
    tls: { insecure: true }
extensions:
  file_storage:
    directory: ${path.join(dir, 'storage')}
    create_directory: true
service:
  extensions: [file_storage]
  telemetry: { metrics: { address: 127.0.0.1:${metricsPort} }, logs: { level: info } }
  pipelines:
    traces: { receivers: [otlp], processors: [tail_sampling], exporters: [otlp/backend] }
`,
    );
  const metric = async (name: string): Promise<number> => {
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    let sum = 0;
    for (const line of text.split('\n')) if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) sum += Number(line.split(' ').pop());
    return sum;
  };
  return { dir, backend, configFile, writeConfig, metric, spansieve: new SpansieveProcess(configFile, httpPort) };
}

function logLines(spansieve: SpansieveProcess): Record<string, unknown>[] {
  return spansieve.output
    .join('')
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

describe('tail_sampling storage across restarts', () => {
  for (const stop of ['kill -9', 'graceful'] as const) {
    test(`${stop}: every acknowledged span of an undecided kept trace is exported after the restart, once`, { timeout: 90_000 }, async () => {
      const { dir, backend, writeConfig, metric, spansieve } = await setUp();
      writeConfig('10m');
      let load: Load | undefined;
      try {
        await spansieve.start();
        load = new Load(spansieve.httpPort);
        await waitFor('200 requests acknowledged', () => load!.requests >= 200, 30_000);
        if (stop === 'kill -9') {
          // Killed under load: requests in flight are not acknowledged (some may be written).
          await spansieve.kill9();
          await load.stop();
        } else {
          await load.stop();
          await spansieve.stop();
          assert.ok(logLines(spansieve).some((l) => String(l.msg).includes('undecided traces stay in storage')), 'the shutdown says where the traces are');
        }
        assert.equal(backend.seen.size, 0, 'nothing decided before the restart (decision_wait 10m)');
        const queueDir = path.join(dir, 'storage', 'processor_tail_sampling');
        if (stop === 'kill -9') {
          // As a write cut by the crash: the start of a record header at the end of the last segment.
          const last = fs.readdirSync(queueDir).filter((n) => n.endsWith('.log')).sort().pop()!;
          const torn = Buffer.alloc(7);
          torn.writeUInt32LE(RECORD_MAGIC, 0);
          fs.appendFileSync(path.join(queueDir, last), torn);
        }
        writeConfig('1s');
        spansieve.output.length = 0;
        await spansieve.start();
        const expected = [...load.acked].filter(([, trace]) => load!.ackedErrorTraces.has(trace)).map(([id]) => id);
        assert.ok(expected.length > 200, `${expected.length} spans of kept traces`);
        await waitFor('every acknowledged span of a kept trace at the backend', () => expected.every((id) => backend.seen.has(id)), 40_000);
        const recovered = await metric('otelcol_processor_tail_sampling_storage_recovered_traces');
        await waitFor('every recovered trace decided and sent', async () => (await metric('otelcol_processor_tail_sampling_global_count_traces_sampled')) >= recovered && (await metric('otelcol_exporter_sent_spans')) === [...backend.seen.values()].reduce((a, b) => a + b, 0), 20_000);
        const ackedTraces = new Set(load.acked.values());
        assert.ok(recovered >= ackedTraces.size, `${recovered} traces read back, ${ackedTraces.size} acknowledged`);
        const wrong = [...backend.traces].filter((t) => !load!.sentErrorTraces.has(t));
        assert.deepEqual(wrong, [], 'no trace without an error span is kept');
        assert.equal(backend.duplicates(), 0, 'each span once');
        const lines = logLines(spansieve);
        const recoveryLine = lines.find((l) => String(l.msg).startsWith('tail_sampling: buffered the undecided traces'));
        assert.ok(recoveryLine, 'the recovery is logged');
        if (stop === 'kill -9') assert.ok(Number(recoveryLine.tornBytes) >= 7, 'the torn tail is cut');
        console.log(`tail_sampling storage (${stop}): ${load.requests} requests and ${load.acked.size} spans acknowledged, ${recovered} traces read back, ${expected.length} kept spans exported, duplicates ${backend.duplicates()}`);
        await spansieve.stop();
        // Every trace decided: what is left on disk is at most the last segment, fully acked.
        const left = fs.readdirSync(queueDir).filter((n) => n.endsWith('.log'));
        assert.ok(left.length <= 1, `segments left: ${left.join(', ')}`);
      } finally {
        await load?.stop();
        await spansieve.stop();
        await backend.sink.stop();
      }
    });
  }
});
