import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import pino from 'pino';
import * as YAML from 'yaml';
import { loadConfig } from '../../src/cli';
import { Supervisor } from '../../src/service/supervisor';
import { FileStorage } from '../../src/extensions/filestorage/file-storage';
import { realIo } from '../../src/extensions/filestorage/segment-queue';
import { encodeTraces, hostInstance, obiResourceSpans, obiSpan } from '../helpers/obi';
import { freePorts, waitFor } from '../helpers/ports';
import { captureLogs, startService } from '../helpers/service';
import { GrpcSink } from '../helpers/sink';

// The persistent queue behind a real receiver: a write that fails (disk full, I/O error) turns
// into a retryable refusal for the client, and the service takes data again once writes succeed.

const dirs: string[] = [];
after(() => {
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

describe('otlp exporter with sending_queue.storage', () => {
  test('disk full: 503 with Retry-After and a log line, no crash; accepted again once writes succeed, and nothing acknowledged is missing', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spansieve-pq-'));
    dirs.push(dir);
    const sink = new GrpcSink();
    await sink.start();
    const [httpPort] = await freePorts(1);
    const logs = captureLogs('info');
    const service = await startService(
      {
        receivers: { otlp: { protocols: { http: { endpoint: `127.0.0.1:${httpPort}` } } } },
        exporters: { otlp: { endpoint: `127.0.0.1:${sink.port}`, tls: { insecure: true }, sending_queue: { storage: 'file_storage' } } },
        extensions: { file_storage: { directory: dir, fsync: true } },
        service: { extensions: ['file_storage'], telemetry: { metrics: { level: 'none' } }, pipelines: { traces: { receivers: ['otlp'], exporters: ['otlp'] } } },
      },
      logs.logger,
    );
    const storage = service.graph.extensions.get('file_storage') as FileStorage;
    const post = async (pid: number) =>
      fetch(`http://127.0.0.1:${httpPort}/v1/traces`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-protobuf' },
        body: encodeTraces([obiResourceSpans(hostInstance('h', pid), [obiSpan(), obiSpan()])]),
      });
    try {
      assert.equal((await post(1)).status, 200);
      let failing: string | undefined = 'ENOSPC';
      storage.io = {
        ...realIo,
        writev: (fd, buffers, position) =>
          failing ? Promise.reject(Object.assign(new Error(`${failing}: write failed`), { code: failing })) : realIo.writev(fd, buffers, position),
      };
      const refused = await post(2);
      assert.equal(refused.status, 503);
      assert.equal(refused.headers.get('retry-after'), '1');
      assert.match(await refused.text(), /could not write to the persistent queue: ENOSPC/);
      failing = 'EIO';
      assert.equal((await post(3)).status, 503);
      assert.ok(logs.lines.some((l) => String(l.msg).includes('persistent queue: write failed') && l.level === 50));
      failing = undefined;
      assert.equal((await post(4)).status, 200);
      await waitFor('both accepted batches at the backend', () => sink.requests.length >= 2);
      assert.deepEqual(sink.instanceIds().sort(), ['h:1', 'h:4']);
      assert.ok(logs.lines.some((l) => String(l.msg).includes('writing again')));
    } finally {
      await service.shutdown();
      await sink.stop();
    }
    assert.deepEqual(fs.readdirSync(path.join(dir, 'exporter_otlp')), [], 'sent segments are deleted');
    assert.equal(fs.existsSync(path.join(dir, 'spansieve.lock')), false);
  });

  test('a reload hands the unsent batches over through the disk: the new configuration sends them, each once', { timeout: 30_000 }, async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spansieve-pq-'));
    dirs.push(dir);
    const sink = new GrpcSink();
    await sink.start();
    const [httpPort, deadPort] = await freePorts(2);
    const file = path.join(dir, 'spansieve.yaml');
    const writeConfig = (port: number) =>
      fs.writeFileSync(
        file,
        YAML.stringify({
          receivers: { otlp: { protocols: { http: { endpoint: `127.0.0.1:${httpPort}` } } } },
          exporters: {
            otlp: {
              endpoint: `127.0.0.1:${port}`,
              tls: { insecure: true },
              timeout: '1s',
              retry_on_failure: { initial_interval: '100ms', max_interval: '200ms' },
              sending_queue: { storage: 'file_storage' },
            },
          },
          extensions: { file_storage: { directory: path.join(dir, 'queue'), create_directory: true } },
          service: { extensions: ['file_storage'], telemetry: { metrics: { level: 'none' } }, pipelines: { traces: { receivers: ['otlp'], exporters: ['otlp'] } } },
        }),
      );
    writeConfig(deadPort);
    const supervisor = new Supervisor(() => loadConfig({ command: 'run', configFile: file, zero: undefined }), pino({ level: 'silent' }), file);
    try {
      await supervisor.start();
      for (let pid = 1; pid <= 3; pid++) {
        const res = await fetch(`http://127.0.0.1:${httpPort}/v1/traces`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-protobuf' },
          body: encodeTraces([obiResourceSpans(hostInstance('h', pid), [obiSpan()])]),
        });
        assert.equal(res.status, 200);
      }
      writeConfig(sink.port);
      assert.equal((await supervisor.reload('test')).kind, 'restarted');
      await waitFor('the three batches at the new endpoint', () => sink.requests.length >= 3, 10_000);
      // No wait for "nothing more": the shutdown lets attempts in flight finish, and any batch
      // still queued (a second copy) would be left on disk, where it is looked for below.
      await supervisor.shutdown();
      assert.deepEqual(sink.instanceIds().sort(), ['h:1', 'h:2', 'h:3'], 'each once');
      const storage = new FileStorage({ id: 'file_storage', logger: pino({ level: 'silent' }), telemetry: undefined as never }, {
        directory: path.join(dir, 'queue'),
        timeoutMs: 1000,
        fsync: false,
        createDirectory: false,
        directoryPermissions: 0o750,
      });
      await storage.start();
      assert.equal(storage.openQueue('otlp', pino({ level: 'silent' }), () => {}).recover().records.length, 0, 'nothing left to send');
      await storage.shutdown();
    } finally {
      await supervisor.shutdown();
      await sink.stop();
    }
  });
});
