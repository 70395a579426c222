import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { types } from '../../src/pdata/codec';
import { GrpcSink, type SinkReply } from '../helpers/sink';
import { encodeTraces, hostInstance, obiResourceSpans, obiSpan } from '../helpers/obi';
import { freePorts, waitFor } from '../helpers/ports';

// kill -9 under load with a persistent sending queue: every span a client got a 200 for reaches
// the backend after a restart; what arrives twice stays within what docs/exporterhelper.md allows
// (at most num_consumers batches per crash).

const CLI = path.resolve(__dirname, '..', '..', 'src', 'cli.js');
const NUM_CONSUMERS = 4;
const SPANS_PER_REQUEST = 50;

const dirs: string[] = [];
after(() => {
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

/** A backend that can be switched off (UNAVAILABLE) and counts how often each span id was accepted. */
class CountingBackend {
  readonly sink = new GrpcSink();
  down = false;
  readonly seen = new Map<string, number>();

  async start(): Promise<void> {
    this.sink.reply = (request): SinkReply => {
      if (this.down) return { kind: 'grpc-error', code: grpc.status.UNAVAILABLE, message: 'backend down' };
      const decoded = types.ExportTraceServiceRequest.decode(request.body) as unknown as {
        resourceSpans: { scopeSpans: { spans: { spanId: Uint8Array }[] }[] }[];
      };
      for (const rs of decoded.resourceSpans) {
        for (const ss of rs.scopeSpans) {
          for (const span of ss.spans) {
            const id = Buffer.from(span.spanId).toString('hex');
            this.seen.set(id, (this.seen.get(id) ?? 0) + 1);
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

class Spansieve {
  child: ChildProcess | undefined;
  readonly output: string[] = [];

  constructor(
    private readonly configFile: string,
    readonly httpPort: number,
  ) {}

  async start(): Promise<void> {
    const child = spawn(process.execPath, [CLI, '--config', this.configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    child.stdout.on('data', (c: Buffer) => this.output.push(c.toString()));
    child.stderr.on('data', (c: Buffer) => this.output.push(c.toString()));
    await waitFor(
      'spansieve to accept OTLP/HTTP',
      async () => {
        if (child.exitCode !== null) throw new Error(`spansieve exited with ${child.exitCode}: ${this.output.join('').slice(-3000)}`);
        try {
          const res = await fetch(`http://127.0.0.1:${this.httpPort}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/x-protobuf' }, body: new Uint8Array(0) });
          return res.ok;
        } catch {
          return false;
        }
      },
      30_000,
    );
  }

  async kill9(): Promise<void> {
    const child = this.child!;
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGKILL');
    await exited;
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }
}

/** Clients sending OBI-shaped requests at about `spansPerSecond`; keeps the span ids of every request answered 200. */
class Load {
  readonly acknowledged = new Set<string>();
  refused = 0;
  private running = true;
  private readonly loops: Promise<void>[] = [];

  constructor(port: number, spansPerSecond: number, clients = 4) {
    const intervalMs = (1000 * SPANS_PER_REQUEST * clients) / spansPerSecond;
    for (let c = 0; c < clients; c++) this.loops.push(this.loop(port, c, intervalMs));
  }

  private async loop(port: number, client: number, intervalMs: number): Promise<void> {
    let next = performance.now();
    while (this.running) {
      const spans = Array.from({ length: SPANS_PER_REQUEST }, () => obiSpan());
      const body = encodeTraces([obiResourceSpans(hostInstance('web', 1000 + client), spans)]);
      try {
        const res = await fetch(`http://127.0.0.1:${port}/v1/traces`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-protobuf' },
          body,
          signal: AbortSignal.timeout(10_000),
        });
        await res.arrayBuffer();
        if (res.status === 200) for (const span of spans) this.acknowledged.add(Buffer.from(span.spanId).toString('hex'));
        else this.refused++;
      } catch {
        this.refused++;
      }
      next += intervalMs;
      const wait = next - performance.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      else next = performance.now();
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }
}

async function setUp(storage: boolean) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spansieve-pq-'));
  dirs.push(dir);
  const backend = new CountingBackend();
  await backend.start();
  const [httpPort] = await freePorts(1);
  const config = `
receivers:
  otlp:
    protocols:
      http: { endpoint: 127.0.0.1:${httpPort} }
exporters:
  otlp/backend:
    endpoint: 127.0.0.1:${backend.sink.port}
    tls: { insecure: true }
    timeout: 2s
    retry_on_failure: { initial_interval: 100ms, max_interval: 500ms, max_elapsed_time: 0 }
    sending_queue:
      num_consumers: ${NUM_CONSUMERS}
      queue_size: 100000
${storage ? '      storage: file_storage' : ''}
extensions:
  file_storage:
    directory: ${path.join(dir, 'queue')}
    create_directory: true
service:
  extensions: [${storage ? 'file_storage' : ''}]
  telemetry: { metrics: { level: none }, logs: { level: warn } }
  pipelines:
    traces: { receivers: [otlp], exporters: [otlp/backend] }
`;
  const configFile = path.join(dir, 'spansieve.yaml');
  fs.writeFileSync(configFile, config);
  return { backend, spansieve: new Spansieve(configFile, httpPort), dir };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('persistent sending queue across kill -9', () => {
  test('every acknowledged span reaches the backend after two kill -9 (one during an outage, one while sending); duplicates within num_consumers batches per kill', async () => {
    const { backend, spansieve } = await setUp(true);
    let load: Load | undefined;
    try {
      await spansieve.start();
      load = new Load(spansieve.httpPort, 2000);
      await sleep(1500);
      backend.down = true;
      await waitFor('a backlog to build up', () => load!.acknowledged.size - backend.seen.size >= 10000, 30_000);
      await spansieve.kill9();
      const lostWithoutQueue = load.acknowledged.size - backend.seen.size;
      await spansieve.start();
      await sleep(500);
      backend.down = false;
      // Kill again while the stored backlog and new data are being sent.
      await waitFor('sending to resume', () => backend.seen.size > 0 && load!.acknowledged.size - backend.seen.size < lostWithoutQueue, 30_000);
      await spansieve.kill9();
      await spansieve.start();
      await sleep(1000);
      await load.stop();
      const acknowledged = load.acknowledged;
      await waitFor('every acknowledged span at the backend', () => [...acknowledged].every((id) => backend.seen.has(id)), 60_000).catch(() => undefined);
      const missing = [...acknowledged].filter((id) => !backend.seen.has(id)).length;
      const duplicates = backend.duplicates();
      // For the report: what this run measured.
      console.log(`persistent queue: acknowledged ${acknowledged.size}, backlog at the first kill ${lostWithoutQueue}, missing ${missing}, duplicated ${duplicates}, refused ${load.refused}`);
      assert.equal(missing, 0, `${missing} of ${acknowledged.size} acknowledged spans never reached the backend`);
      assert.ok(lostWithoutQueue >= 10000, 'the first kill had a backlog to lose');
      assert.ok(duplicates <= 2 * NUM_CONSUMERS * SPANS_PER_REQUEST, `${duplicates} spans arrived twice; at most ${2 * NUM_CONSUMERS * SPANS_PER_REQUEST} allowed`);
    } finally {
      await load?.stop();
      await spansieve.stop();
      await backend.sink.stop();
    }
  });
});
