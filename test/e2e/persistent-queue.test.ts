import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { types } from '../../src/pdata/codec';
import { RECORD_HEADER, parseSegment } from '../../src/extensions/filestorage/segment-queue';
import { GrpcSink, type SinkReply } from '../helpers/sink';
import { encodeTraces, hostInstance, obiResourceSpans, obiSpan } from '../helpers/obi';
import { freePorts, waitFor } from '../helpers/ports';
import { OtlpLoad, SpansieveProcess } from '../helpers/spansieve-process';

// kill -9 under load with a persistent sending queue: every span a client got a 200 for reaches
// the backend after a restart; what arrives twice stays within what docs/exporterhelper.md allows
// (at most num_consumers batches per crash).

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

async function setUp(storage: boolean, logLevel = 'warn') {
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
  telemetry: { metrics: { level: none }, logs: { level: ${logLevel} } }
  pipelines:
    traces: { receivers: [otlp], exporters: [otlp/backend] }
`;
  const configFile = path.join(dir, 'spansieve.yaml');
  fs.writeFileSync(configFile, config);
  return { backend, spansieve: new SpansieveProcess(configFile, httpPort), dir };
}


describe('persistent sending queue across kill -9', () => {
  test('every acknowledged span reaches the backend after two kill -9 (one during an outage, one while sending); duplicates within num_consumers batches per kill', async () => {
    const { backend, spansieve } = await setUp(true);
    let load: OtlpLoad | undefined;
    try {
      await spansieve.start();
      load = new OtlpLoad(spansieve.httpPort, 2000, SPANS_PER_REQUEST);
      await waitFor('data flowing to the backend', () => backend.seen.size > 0, 30_000);
      backend.down = true;
      await waitFor('a backlog to build up', () => load!.acknowledged.size - backend.seen.size >= 10000, 30_000);
      await spansieve.kill9();
      const lostWithoutQueue = load.acknowledged.size - backend.seen.size;
      await spansieve.start();
      // The restarted process takes data while the backend is still down.
      const ackedAtRestart = load.acknowledged.size;
      await waitFor('data accepted after the restart', () => load!.acknowledged.size > ackedAtRestart, 30_000);
      backend.down = false;
      // Kill again while the stored backlog and new data are being sent.
      await waitFor('sending to resume', () => backend.seen.size > 0 && load!.acknowledged.size - backend.seen.size < lostWithoutQueue, 30_000);
      await spansieve.kill9();
      await spansieve.start();
      const ackedAtLastStart = load.acknowledged.size;
      await waitFor('data accepted after the second restart', () => load!.acknowledged.size > ackedAtLastStart, 30_000);
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

  test('start-up after a crash cuts a torn tail and skips a corrupt record, logs both counts, and sends the rest', async () => {
    const { backend, spansieve, dir } = await setUp(true, 'info');
    try {
      await spansieve.start();
      backend.down = true;
      const requests: string[][] = [];
      for (let i = 0; i < 6; i++) {
        const spans = Array.from({ length: 10 }, () => obiSpan());
        const res = await fetch(`http://127.0.0.1:${spansieve.httpPort}/v1/traces`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-protobuf' },
          body: encodeTraces([obiResourceSpans(hostInstance('web', 1), spans)]),
        });
        assert.equal(res.status, 200);
        requests.push(spans.map((span) => Buffer.from(span.spanId).toString('hex')));
      }
      await spansieve.kill9();
      const queueDir = path.join(dir, 'queue', 'exporter_otlp_backend');
      const segments = fs.readdirSync(queueDir).filter((name) => name.endsWith('.log'));
      assert.equal(segments.length, 1);
      const file = path.join(queueDir, segments[0]!);
      const buf = fs.readFileSync(file);
      const records = parseSegment(buf).records;
      assert.equal(records.length, 6);
      // The second record damaged, the last one cut short (as by a crash in the middle of its write).
      buf[records[1]!.offset + RECORD_HEADER + 40]! ^= 0xff;
      fs.writeFileSync(file, buf.subarray(0, buf.length - 9));
      backend.down = false;
      await spansieve.start();
      const expected = [requests[0]!, requests[2]!, requests[3]!, requests[4]!].flat();
      await waitFor('the four intact batches at the backend', () => expected.every((id) => backend.seen.has(id)));
      const lines = spansieve.output
        .join('')
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as Record<string, unknown>);
      const recovered = lines.find((l) => String(l.msg).startsWith('persistent queue: sending what the previous run left'));
      assert.ok(recovered, 'the recovery is logged');
      assert.equal(recovered.batches, 4);
      assert.equal(recovered.corrupt, 1);
      assert.ok(Number(recovered.tornBytes) > 0);
      assert.ok(lines.some((l) => String(l.msg).includes('cut an incomplete record') && l.level === 40));
      assert.ok(lines.some((l) => String(l.msg).includes('skipped corrupt records') && l.corrupt === 1));
      assert.equal(spansieve.child!.exitCode, null, 'still running');
      assert.equal(backend.seen.size, 40);
    } finally {
      await spansieve.stop();
      await backend.sink.stop();
    }
  });
});
