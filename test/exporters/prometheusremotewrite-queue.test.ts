import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { crc32 } from 'node:zlib';
import { after, describe, test } from 'node:test';
import pino from 'pino';
import * as YAML from 'yaml';
import { loadConfig } from '../../src/cli';
import {
  REMOTE_WRITE_RECORD,
  RemoteWriteExporter,
  RemoteWriteRequest,
  parseRemoteWriteConfig,
  remoteWriteRecords,
} from '../../src/exporters/prometheusremotewrite/prometheusremotewrite-exporter';
import { FileStorage, type FileStorageConfig } from '../../src/extensions/filestorage/file-storage';
import { RECORD_HEADER, SegmentQueue, parseSegment } from '../../src/extensions/filestorage/segment-queue';
import { Supervisor } from '../../src/service/supervisor';
import { SelfTelemetry } from '../../src/service/telemetry';
import { parseWith, testSettings } from '../helpers/components';
import { encodeTraces, hostInstance, obiResourceSpans, obiSpan } from '../helpers/obi';
import { encodeMetrics, metricsBatch, nowNanos, obiResourceMetrics } from '../helpers/obi-metrics';
import { freePorts, waitFor } from '../helpers/ports';
import { RemoteWriteSink } from '../helpers/remote-write-sink';

// prometheusremotewrite with a persistent sending queue (its own records, kind 2), and its queue
// handed over on a reload, in memory and through the disk.

const dirs: string[] = [];
after(() => {
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spansieve-prwq-'));
  dirs.push(dir);
  return dir;
}

const METRIC = 'process_memory_usage_bytes';
/** One batch per process: its memory gauge is the process's pid, so the sink can tell them apart. */
const gauge = (pid: number) => obiResourceMetrics(hostInstance('web', pid), { memoryBytes: pid, time: nowNanos() });
const storageConfig = (directory: string): FileStorageConfig => ({ directory, timeoutMs: 1000, fsync: false, createDirectory: true, directoryPermissions: 0o750 });
const segmentsIn = (dir: string) => (fs.existsSync(dir) ? fs.readdirSync(dir).filter((name) => name.endsWith('.log')) : []);

describe('prometheusremotewrite with sending_queue.storage', () => {
  test('unsent requests stay on disk as remote-write records and are sent, once each, after the next start', async () => {
    const dir = tempDir();
    const sink = new RemoteWriteSink();
    await sink.start();
    sink.down = true;
    const config = parseWith(parseRemoteWriteConfig, {
      endpoint: sink.url,
      retry_on_failure: { initial_interval: '20ms', max_interval: '50ms', max_elapsed_time: 0 },
      sending_queue: { storage: 'file_storage', sizer: 'bytes' },
    });
    const run = async () => {
      const storage = new FileStorage(testSettings('file_storage'), storageConfig(dir));
      await storage.start();
      const telemetry = new SelfTelemetry();
      const exporter = new RemoteWriteExporter(testSettings('prometheusremotewrite', telemetry), config);
      await exporter.start({ reportStatus: () => {}, extensions: new Map([['file_storage', storage]]) });
      return { exporter, storage, telemetry, stop: async () => (await exporter.shutdown(), await storage.shutdown()) };
    };
    try {
      const first = await run();
      for (let pid = 1; pid <= 3; pid++) await first.exporter.consume(metricsBatch([gauge(pid)]));
      await waitFor('attempts against the backend that is down', () => sink.refused >= 2);
      // sizer: bytes counts the compressed requests waiting (one of the three is being sent).
      const queued = await first.telemetry.registry.getSingleMetric('otelcol_exporter_queue_size')!.get();
      await first.stop();
      const queueDir = path.join(dir, 'exporter_prometheusremotewrite');
      const segments = segmentsIn(queueDir);
      assert.equal(segments.length, 1);
      const records = parseSegment(fs.readFileSync(path.join(queueDir, segments[0]!))).records;
      assert.deepEqual(
        records.map((r) => r.payload[0]),
        [REMOTE_WRITE_RECORD, REMOTE_WRITE_RECORD, REMOTE_WRITE_RECORD],
      );
      const requests = records.map((r) => remoteWriteRecords.decode(r.payload[0]!, r.payload.subarray(1)));
      assert.ok(requests.every((r) => r.itemCount === 1 && r.bodies.length === 1));
      const sizes = requests.map((r) => r.byteSize);
      assert.ok(sizes.some((a, i) => sizes.some((b, j) => i < j && a + b === queued.values[0]!.value)), `queue_size ${queued.values[0]!.value} is two requests' compressed bytes (${sizes.join(', ')})`);

      sink.down = false;
      const second = await run();
      await waitFor('the three stored requests at the backend', () => sink.valuesBy(METRIC, 'instance').size === 3);
      await second.stop();
      assert.deepEqual(
        [...sink.valuesBy(METRIC, 'instance')].sort(),
        [
          ['web:1', [1]],
          ['web:2', [2]],
          ['web:3', [3]],
        ],
        'each once',
      );
      assert.deepEqual(segmentsIn(queueDir), [], 'sent segments are deleted');
    } finally {
      await sink.stop();
    }
  });

  test('a record of another kind, or a damaged remote-write table, is not taken for a request', () => {
    const request = new RemoteWriteRequest([Buffer.from('abc'), Buffer.from('defgh')], 7);
    const body = Buffer.concat(remoteWriteRecords.body(request) as Buffer[]);
    const back = remoteWriteRecords.decode(REMOTE_WRITE_RECORD, body);
    assert.deepEqual(
      back.bodies.map((b) => b.toString()),
      ['abc', 'defgh'],
    );
    assert.equal(back.itemCount, 7);
    assert.equal(back.byteSize, 8);
    assert.throws(() => remoteWriteRecords.decode(0, body), /not a remote-write request/);
    assert.throws(() => remoteWriteRecords.decode(REMOTE_WRITE_RECORD, body.subarray(0, body.length - 1)), /too short/);
    assert.throws(() => remoteWriteRecords.decode(REMOTE_WRITE_RECORD, Buffer.concat([body, Buffer.from([0])])), /trailing/);
  });

  test('an otlp queue file written in the documented record format (signal byte, no kind table) still reads back', () => {
    // Segment header and one record laid out by hand, as docs/file-storage-extension.md describes
    // them (and as queues written before the record kinds were added are).
    const dir = tempDir();
    const salt = 0x1234abcd;
    const segment = Buffer.alloc(16);
    segment.writeUInt32LE(0x53534732, 0);
    segment.writeUInt32LE(salt, 4);
    segment.writeUInt32LE(crc32(segment.subarray(0, 8)), 8);
    const payload = Buffer.concat([Buffer.from([0]), encodeTraces([obiResourceSpans(hostInstance('old', 7), [obiSpan(), obiSpan()])])]);
    const header = Buffer.alloc(RECORD_HEADER);
    header.writeUInt32LE(0x53535132, 0);
    header.writeUInt32LE(payload.length, 4);
    header.writeUInt32LE(crc32(payload), 8);
    header.writeUInt32LE(crc32(header.subarray(0, 12), salt), 12);
    fs.writeFileSync(path.join(dir, '0000000000000001.log'), Buffer.concat([segment, header, payload]));
    const report = new SegmentQueue({ dir, fsync: false, logger: pino({ level: 'silent' }) }).recover();
    assert.equal(report.corrupt, 0);
    assert.equal(report.records.length, 1);
    const batch = report.records[0]!.request;
    assert.equal(batch.signal, 'traces');
    assert.equal(batch.itemCount, 2);
    assert.equal(batch.resources[0]!.attributes.get('service.instance.id'), 'old:7');
  });
});

describe('prometheusremotewrite across a reload', () => {
  for (const storage of [false, true]) {
    test(`the queue is handed over (${storage ? 'through the disk' : 'in memory'}): the reload does not wait for the backend, the new configuration sends every queued request once`, async () => {
      const dir = tempDir();
      const sink = new RemoteWriteSink();
      await sink.start();
      // The old endpoint: a backend that is down (503), not a closed port another process could take.
      const down = new RemoteWriteSink();
      await down.start();
      down.down = true;
      const [httpPort] = await freePorts(1);
      const file = path.join(dir, 'spansieve.yaml');
      const writeConfig = (endpoint: string) =>
        fs.writeFileSync(
          file,
          YAML.stringify({
            receivers: { otlp: { protocols: { http: { endpoint: `127.0.0.1:${httpPort}` } } } },
            exporters: {
              prometheusremotewrite: {
                endpoint,
                timeout: '1s',
                retry_on_failure: { initial_interval: '100ms', max_interval: '200ms', max_elapsed_time: '20s' },
                ...(storage ? { sending_queue: { storage: 'file_storage' } } : {}),
              },
            },
            extensions: { file_storage: { directory: path.join(dir, 'queue'), create_directory: true } },
            service: {
              extensions: storage ? ['file_storage'] : [],
              telemetry: { metrics: { level: 'none' } },
              pipelines: { metrics: { receivers: ['otlp'], exporters: ['prometheusremotewrite'] } },
            },
          }),
        );
      writeConfig(down.url);
      const supervisor = new Supervisor(() => loadConfig({ command: 'run', configFile: file, zero: undefined }), pino({ level: 'silent' }), file);
      try {
        await supervisor.start();
        for (let pid = 1; pid <= 3; pid++) {
          const res = await fetch(`http://127.0.0.1:${httpPort}/v1/metrics`, {
            method: 'POST',
            headers: { 'content-type': 'application/x-protobuf' },
            body: encodeMetrics([gauge(pid)]),
          });
          assert.equal(res.status, 200);
        }
        writeConfig(sink.url);
        const started = performance.now();
        assert.equal((await supervisor.reload('test')).kind, 'restarted');
        // Without a hand-over the old exporter would drain first: retry the dead endpoint for max_elapsed_time (20 s).
        assert.ok(performance.now() - started < 10_000, `the reload took ${Math.round(performance.now() - started)} ms`);
        await waitFor('the three requests at the new endpoint', () => sink.valuesBy(METRIC, 'instance').size === 3, 10_000);
        await supervisor.shutdown();
        const received = [...sink.valuesBy(METRIC, 'instance')].sort();
        assert.deepEqual(received, [
          ['web:1', [1]],
          ['web:2', [2]],
          ['web:3', [3]],
        ], `each once; received ${JSON.stringify(received)}`);
        assert.ok(down.refused >= 1, 'the old endpoint was tried');
        if (storage) assert.deepEqual(segmentsIn(path.join(dir, 'queue', 'exporter_prometheusremotewrite')), [], 'nothing left on disk');
      } finally {
        await supervisor.shutdown();
        await sink.stop();
        await down.stop();
      }
    });
  }
});
