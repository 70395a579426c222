import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import type { Host } from '../../../src/component/component';
import { RetryableError } from '../../../src/component/errors';
import { ConfigValidationError } from '../../../src/config/reader';
import { FileStorage } from '../../../src/extensions/filestorage/file-storage';
import { realIo } from '../../../src/extensions/filestorage/segment-queue';
import { parseTailSamplingConfig } from '../../../src/processors/tailsampling/config';
import { SelfTelemetry } from '../../../src/service/telemetry';
import { Capture, configErrors, parseWith, testSettings } from '../../helpers/components';
import { encodeTraces, hostInstance, obiResourceSpans, obiSpan } from '../../helpers/obi';
import { freePorts } from '../../helpers/ports';
import { Clock, batchOf, flush, keptSpans, metricReader, tailSampler } from '../../helpers/tail-sampling';
import { startService } from '../../helpers/service';

// tail_sampling with `storage`, in process with a real file_storage: what is written, what comes
// back at start, what is acked. A "crash" here is the storage closed under a processor that was
// not shut down (every write finished); test/e2e/tail-sampling-storage.test.ts kills a real process.

const dirs: string[] = [];
after(() => {
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

const keptNames = (capture: Capture): string[] => keptSpans(capture).map((s) => s.name).sort();

/** A started file_storage and a started tail_sampling using it. */
async function open(dir: string, clock: Clock, raw: Record<string, unknown> = {}) {
  const telemetry = new SelfTelemetry();
  const storage = new FileStorage(testSettings('file_storage', telemetry), { directory: dir, timeoutMs: 1000, fsync: false, createDirectory: false, directoryPermissions: 0o750 });
  await storage.start();
  const capture = new Capture();
  const policies = [{ name: 'errors', type: 'status_code', status_code: { status_codes: ['ERROR'] } }];
  const processor = tailSampler({ storage: 'file_storage', policies, ...raw }, capture, clock, telemetry);
  const host: Host = { reportStatus: () => {}, extensions: new Map([['file_storage', storage]]) };
  await processor.start(host);
  return { storage, processor, capture, metric: metricReader(telemetry) };
}

function newDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spansieve-tss-'));
  dirs.push(dir);
  return dir;
}

function bytesUnder(dir: string): number {
  let total = 0;
  for (const name of fs.readdirSync(dir)) total += fs.statSync(path.join(dir, name)).size;
  return total;
}

describe('tail_sampling storage', () => {
  test('config: storage names a file_storage extension; tail_storage is refused with a pointer to it', () => {
    const policies = [{ name: 'a', type: 'always_sample' }];
    assert.equal(parseWith(parseTailSamplingConfig, { policies, storage: 'file_storage/ts' }).storage, 'file_storage/ts');
    assert.deepEqual(configErrors(parseTailSamplingConfig, { policies, storage: 'memory' }), [
      'component::storage: expected the id of a file_storage extension (file_storage or file_storage/<name>), got "memory"',
    ]);
    assert.match(configErrors(parseTailSamplingConfig, { policies, tail_storage: 'x' })[0]!, /use storage: file_storage/);
  });

  test('service config: the extension is configured and enabled; one pipeline only', async () => {
    const config = (storage: string, extensions: string[], pipelines: string[]) => ({
      receivers: { otlp: { protocols: { http: { endpoint: '127.0.0.1:0' } } } },
      processors: { tail_sampling: { storage, policies: [{ name: 'a', type: 'always_sample' }] } },
      exporters: { debug: {} },
      extensions: { file_storage: { directory: newDir() } },
      service: {
        extensions,
        telemetry: { metrics: { level: 'none' } },
        pipelines: Object.fromEntries(pipelines.map((id) => [id, { receivers: ['otlp'], processors: ['tail_sampling'], exporters: ['debug'] }])),
      },
    });
    const errorsOf = async (c: Record<string, unknown>): Promise<string[]> => {
      try {
        const service = await startService(c);
        await service.shutdown();
        return [];
      } catch (err) {
        if (err instanceof ConfigValidationError) return [...err.errors];
        throw err;
      }
    };
    assert.deepEqual(await errorsOf(config('file_storage/x', ['file_storage'], ['traces'])), [
      'processors::tail_sampling::storage: references extension "file_storage/x" which is not configured (add it under extensions)',
    ]);
    assert.deepEqual(await errorsOf(config('file_storage', [], ['traces'])), [
      'processors::tail_sampling::storage: references extension "file_storage" which is not enabled (list it in service::extensions)',
    ]);
    assert.deepEqual(await errorsOf(config('file_storage', ['file_storage'], ['traces', 'traces/b'])), [
      'processors::tail_sampling::storage: a processor with storage can be in one pipeline only; it is in traces, traces/b',
    ]);
    assert.deepEqual(await errorsOf(config('file_storage', ['file_storage'], ['traces'])), []);
  });

  test('a crash keeps the undecided traces: the next start decides them from their first arrival, kept ones once', async () => {
    const dir = newDir();
    const clock = new Clock();
    const [a, b, c] = [randomBytes(16), randomBytes(16), randomBytes(16)];
    let run = await open(dir, clock);
    // a (error) and b arrive together; a is decided before the crash, b is not; c arrives later.
    await run.processor.consume(batchOf({ traceId: a, statusCode: 2, name: 'a1' }, { traceId: b, statusCode: 2, name: 'b1' }));
    clock.now += 5_000;
    await run.processor.consume(batchOf({ traceId: b, name: 'b2', service: 'db' }, { traceId: c, name: 'c1' }));
    clock.now += 5_000;
    run.processor.tick();
    await flush();
    assert.deepEqual(keptNames(run.capture), ['a1', 'b1', 'b2']);
    // c is undecided; its record also holds b's late half, decided and sent: the decision is on disk.
    await run.storage.shutdown(); // the crash: no processor shutdown
    clock.now += 1_000;
    run = await open(dir, clock);
    assert.equal(run.processor.stats.pending, 1, 'only c comes back');
    assert.equal(await run.metric('otelcol_processor_tail_sampling_storage_recovered_traces'), 1);
    run.processor.tick();
    await flush();
    assert.deepEqual(keptNames(run.capture), [], 'c is not due: 6 s of its 10 s passed');
    clock.now += 4_000;
    run.processor.tick();
    await flush();
    assert.equal(run.processor.stats.pending, 0);
    assert.deepEqual(keptNames(run.capture), [], 'c had no error');
    // A late span of b after the restart follows the decision read back.
    await run.processor.consume(batchOf({ traceId: b, name: 'b3', service: 'cache' }));
    await flush();
    assert.deepEqual(keptNames(run.capture), ['b3']);
    await run.processor.shutdown();
    await run.storage.shutdown();
    run = await open(dir, clock);
    assert.equal(run.processor.stats.pending, 0, 'nothing left after every trace was decided');
    await run.processor.shutdown();
    await run.storage.shutdown();
    assert.deepEqual(fs.readdirSync(path.join(dir, 'processor_tail_sampling')).filter((n) => n.endsWith('.log')), []);
  });

  test('graceful shutdown leaves undecided traces in storage (not decided at shutdown); the next start sends them', async () => {
    const dir = newDir();
    const clock = new Clock();
    let run = await open(dir, clock);
    await run.processor.consume(batchOf({ traceId: randomBytes(16), statusCode: 2, name: 'kept' }, { traceId: randomBytes(16), name: 'dropped' }));
    await run.processor.shutdown();
    await run.storage.shutdown();
    assert.deepEqual(keptNames(run.capture), []);
    clock.now += 60_000;
    run = await open(dir, clock);
    assert.equal(run.processor.stats.pending, 2);
    run.processor.tick();
    await flush();
    assert.deepEqual(keptNames(run.capture), ['kept']);
    await run.processor.shutdown();
    await run.storage.shutdown();
    run = await open(dir, clock);
    assert.equal(run.processor.stats.pending, 0, 'each trace once');
    await run.processor.shutdown();
    await run.storage.shutdown();
  });

  test('traces read back at start respect the new bounds: past num_traces the oldest are decided at once', async () => {
    const dir = newDir();
    const clock = new Clock();
    let run = await open(dir, clock);
    await run.processor.consume(batchOf({ traceId: randomBytes(16), statusCode: 2, name: 'first' }));
    await run.processor.consume(batchOf({ traceId: randomBytes(16), name: 'second' }));
    await run.processor.consume(batchOf({ traceId: randomBytes(16), statusCode: 2, name: 'third' }));
    await run.processor.shutdown();
    await run.storage.shutdown();
    run = await open(dir, clock, { num_traces: 1 });
    assert.equal(await run.metric('otelcol_processor_tail_sampling_storage_recovered_traces'), 3);
    assert.equal(await run.metric('otelcol_processor_tail_sampling_sampling_trace_dropped_too_early'), 2);
    assert.equal(run.processor.stats.pending, 1);
    await flush();
    assert.deepEqual(keptNames(run.capture), ['first'], 'sent on without waiting for a timer run');
    clock.now += 10_000;
    run.processor.tick();
    await flush();
    assert.deepEqual(keptNames(run.capture), ['first', 'third']);
    await run.processor.shutdown();
    await run.storage.shutdown();
  });

  test('a failed write refuses the request retryably and buffers nothing of it; writes succeed again after', async () => {
    const dir = newDir();
    const clock = new Clock();
    const run = await open(dir, clock);
    run.storage.io = { ...realIo, writev: () => Promise.reject(Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' })) };
    await assert.rejects(run.processor.consume(batchOf({ traceId: randomBytes(16), statusCode: 2 })), (err: Error) => err instanceof RetryableError && /ENOSPC/.test(err.message));
    assert.equal(run.processor.stats.pending, 0, 'nothing buffered that was not written');
    assert.equal(await run.metric('otelcol_processor_tail_sampling_storage_write_failed_spans'), 1);
    run.storage.io = undefined;
    await run.processor.consume(batchOf({ traceId: randomBytes(16), statusCode: 2, name: 'after' }));
    clock.now += 10_000;
    run.processor.tick();
    await flush();
    assert.deepEqual(keptNames(run.capture), ['after']);
    await run.processor.shutdown();
    await run.storage.shutdown();
  });

  test('behind a real receiver: a failed write is a 503 for the client, then accepted again', async () => {
    const dir = newDir();
    const [port] = await freePorts(1);
    const service = await startService({
      receivers: { otlp: { protocols: { http: { endpoint: `127.0.0.1:${port}` } } } },
      processors: { tail_sampling: { storage: 'file_storage', decision_wait: '10m', policies: [{ name: 'a', type: 'always_sample' }] } },
      exporters: { debug: {} },
      extensions: { file_storage: { directory: dir } },
      service: { extensions: ['file_storage'], telemetry: { metrics: { level: 'none' } }, pipelines: { traces: { receivers: ['otlp'], processors: ['tail_sampling'], exporters: ['debug'] } } },
    });
    const post = () =>
      fetch(`http://127.0.0.1:${port}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/x-protobuf' }, body: encodeTraces([obiResourceSpans(hostInstance('h', 1), [obiSpan()])]) });
    try {
      const storage = service.graph.extensions.get('file_storage') as FileStorage;
      storage.io = { ...realIo, writev: () => Promise.reject(Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' })) };
      const refused = await post();
      assert.equal(refused.status, 503);
      assert.match(await refused.text(), /ENOSPC/);
      storage.io = undefined;
      assert.equal((await post()).status, 200);
    } finally {
      await service.shutdown();
    }
  });

  test('storage stays bounded: decided traces\' records are acked and their segments deleted', async () => {
    const dir = newDir();
    const clock = new Clock();
    const run = await open(dir, clock, { decision_wait: '1s' });
    const queueDir = path.join(dir, 'processor_tail_sampling');
    let maxBytes = 0;
    let written = 0;
    // ~25 MB through the storage (3 segments), 600 traces of 15 spans per second of the clock.
    const seconds = 8;
    for (let second = 0; second < seconds; second++) {
      for (let i = 0; i < 15; i++) {
        const spans = [];
        for (let t = 0; t < 40; t++) {
          const traceId = randomBytes(16);
          for (let s = 0; s < 15; s++) spans.push({ traceId, statusCode: s === 0 && t === 0 ? 2 : 0 });
        }
        const batch = batchOf(...spans);
        written += batch.resources.reduce((n, r) => n + r.bytes.length, 0);
        await run.processor.consume(batch);
      }
      clock.now += 1_000;
      run.processor.tick();
      await flush();
      await flush();
      maxBytes = Math.max(maxBytes, bytesUnder(queueDir));
    }
    clock.now += 1_000;
    run.processor.tick();
    await run.processor.shutdown();
    assert.equal(run.processor.stats.pending, 0);
    assert.ok(written > 22 * 1024 * 1024, `wrote ${written} bytes`);
    // Two seconds of traffic (the decision wait, and the second being written) plus one 8 MiB segment.
    assert.ok(maxBytes < 2 * (written / seconds) + 9 * 1024 * 1024, `at most ${maxBytes} bytes on disk of ${written} written`);
    await run.storage.shutdown();
    assert.ok(bytesUnder(queueDir) <= 9 * 1024 * 1024, `${bytesUnder(queueDir)} bytes left after every trace was decided`);
    const again = await open(dir, clock);
    assert.equal(again.processor.stats.pending, 0, 'nothing comes back');
    await again.processor.shutdown();
    await again.storage.shutdown();
  });
});
