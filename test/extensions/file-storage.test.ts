import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import pino from 'pino';
import { RetryableError } from '../../src/component/errors';
import { ConfigValidationError } from '../../src/config/reader';
import type { PushSignal } from '../../src/exporters/exporterhelper/attempt-signal';
import { ExporterHelper, compactedBatchRequests, type HelperConfig } from '../../src/exporters/exporterhelper/exporterhelper';
import { FileStorage, LOCK_FILE, LOCK_REFRESH_MS, LOCK_STALE_MS, type FileStorageConfig } from '../../src/extensions/filestorage/file-storage';
import { RECORD_HEADER, SEGMENT_HEADER, SegmentQueue, encodeRecordHeader, parseSegment, realIo, sealRecordHeader, type QueueIo } from '../../src/extensions/filestorage/segment-queue';
import type { Batch } from '../../src/pdata/batch';
import { parseRequest } from '../../src/pdata/scan';
import { SelfTelemetry } from '../../src/service/telemetry';
import { testSettings } from '../helpers/components';
import { encodeTraces, hostInstance, obiResourceSpans, obiSpan, obiTraceRequest } from '../helpers/obi';
import { captureLogs, startService } from '../helpers/service';
import { waitFor } from '../helpers/ports';

const roots: string[] = [];
after(() => {
  for (const root of roots) fs.rmSync(root, { recursive: true, force: true });
});

/** unshare -p needs root (or user namespaces); the pid-namespace test is skipped without it. */
function canUnshare(): boolean {
  return spawnSync('unshare', ['-p', '-f', '--mount-proc', 'true']).status === 0;
}

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spansieve-fs-'));
  roots.push(dir);
  return dir;
}

/** A batch of `spans` spans from instance pid `pid` (so batches can be told apart). */
const batch = (pid: number, spans = 2): Batch => parseRequest('traces', obiTraceRequest([hostInstance('h', pid)], spans)).batch.compact();
const pidOf = (b: Batch): string => (b.resources[0]!.attributes.get('service.instance.id') as string).split(':')[1]!;
const silent = pino({ level: 'silent' });

function queue(dir: string, options: { io?: QueueIo; segmentBytes?: number; fsync?: boolean } = {}): SegmentQueue {
  return new SegmentQueue({ dir, fsync: options.fsync ?? false, logger: silent, ...options });
}

describe('segment record format', () => {
  test('records read back in order; a record with a bad checksum is skipped and counted; a torn tail is found', async () => {
    const dir = tempDir();
    const q = queue(dir);
    q.recover();
    for (let pid = 1; pid <= 3; pid++) await q.append(batch(pid));
    await q.close();
    const file = path.join(dir, fs.readdirSync(dir).find((n) => n.endsWith('.log'))!);
    const buf = fs.readFileSync(file);
    assert.equal(parseSegment(buf).records.length, 3);
    const second = parseSegment(buf).records[1]!.offset;
    // A flipped byte inside the second record's payload.
    const corrupted = Buffer.from(buf);
    corrupted[second + RECORD_HEADER + 20]! ^= 0xff;
    const parsed = parseSegment(corrupted);
    assert.deepEqual(
      parsed.records.map((r) => r.offset),
      [SEGMENT_HEADER, parseSegment(buf).records[2]!.offset],
    );
    assert.equal(parsed.corrupt, 1);
    assert.equal(parsed.validEnd, buf.length);
    // Cut in the middle of the last record: a torn tail, not a corrupt record.
    const torn = buf.subarray(0, buf.length - 5);
    const tornParsed = parseSegment(torn);
    assert.equal(tornParsed.records.length, 2);
    assert.equal(tornParsed.corrupt, 0);
    assert.equal(tornParsed.validEnd, parseSegment(buf).records[2]!.offset);
    // A garbled length field: resynchronised on the next record.
    const badLength = Buffer.from(buf);
    badLength.writeUInt32LE(0x7fffffff, second + 4);
    const resynced = parseSegment(badLength);
    assert.equal(resynced.records.length, 2);
    assert.equal(resynced.corrupt, 1);
  });
});

describe('segment recovery (review findings)', () => {
  const onlyLog = (dir: string) => path.join(dir, fs.readdirSync(dir).find((n) => n.endsWith('.log'))!);
  const instanceOf = (b: Batch) => b.resources[0]!.attributes.get('service.instance.id');

  test('a record image inside a torn record (a span attribute a client sent) is never recovered as a record', async () => {
    const dir = tempDir();
    const injected = encodeTraces([obiResourceSpans(hostInstance('evil', 666), [obiSpan()])]);
    const header = encodeRecordHeader('traces', injected);
    sealRecordHeader(header, 0); // the salt is random: a client can only guess
    const image = Buffer.concat([header, injected]);
    const span = obiSpan({ attributes: [{ key: 'blob', value: { bytesValue: image } }, { key: 'pad', value: { stringValue: 'x'.repeat(200) } }] });
    const q = queue(dir);
    q.recover();
    await q.append(batch(1));
    await q.append(parseRequest('traces', encodeTraces([obiResourceSpans(hostInstance('good', 2), [span])])).batch.compact());
    await q.close();
    const file = onlyLog(dir);
    const buf = fs.readFileSync(file);
    // Killed in the middle of writing the second record: its last 50 bytes never reached the file.
    fs.writeFileSync(file, buf.subarray(0, buf.length - 50));
    const report = queue(dir).recover();
    assert.deepEqual(report.records.map((r) => instanceOf(r.request)), ['h:1']);
    assert.equal(report.corrupt, 0);
    assert.equal(report.tornBytes, buf.length - 50 - parseSegment(buf).records[1]!.offset);
  });

  test('a damaged but complete last record is counted as corrupt (error log, metric), not cut as a torn tail', async () => {
    const dir = tempDir();
    const q = queue(dir);
    q.recover();
    for (let pid = 1; pid <= 3; pid++) await q.append(batch(pid));
    await q.close();
    const file = onlyLog(dir);
    const buf = fs.readFileSync(file);
    buf[parseSegment(buf).records[2]!.offset + RECORD_HEADER + 30]! ^= 0xff;
    fs.writeFileSync(file, buf);
    let counted = 0;
    const logs = captureLogs('warn');
    const report = new SegmentQueue({ dir, fsync: false, logger: logs.logger, onCorrupt: (n) => (counted += n) }).recover();
    assert.equal(report.records.length, 2);
    assert.equal(report.corrupt, 1);
    assert.equal(counted, 1);
    assert.equal(report.tornBytes, 0);
    assert.ok(logs.lines.some((l) => Number(l.level) >= 50 && String(l.msg).includes('skipped corrupt records')));
  });

  test('a tail of zeros (a power loss after the file grew) is a torn tail: cut, not counted as corrupt', async () => {
    const dir = tempDir();
    const q = queue(dir);
    q.recover();
    for (let pid = 1; pid <= 2; pid++) await q.append(batch(pid));
    await q.close();
    const file = onlyLog(dir);
    const size = fs.statSync(file).size;
    fs.appendFileSync(file, Buffer.alloc(4096));
    const report = queue(dir).recover();
    assert.equal(report.records.length, 2);
    assert.equal(report.corrupt, 0);
    assert.equal(report.tornBytes, 4096);
    assert.equal(fs.statSync(file).size, size);
  });

  test('a segment with nothing readable is renamed to *.corrupt, not deleted', async () => {
    const dir = tempDir();
    const q = queue(dir);
    q.recover();
    await q.append(batch(1));
    await q.close();
    const file = onlyLog(dir);
    const buf = fs.readFileSync(file);
    buf[5]! ^= 0xff; // the segment header (its salt)
    fs.writeFileSync(file, buf);
    const logs = captureLogs('warn');
    const report = new SegmentQueue({ dir, fsync: false, logger: logs.logger }).recover();
    assert.equal(report.records.length, 0);
    assert.equal(report.corrupt, 1);
    assert.deepEqual(report.corruptSegments, [`${file}.corrupt`]);
    assert.ok(fs.existsSync(`${file}.corrupt`));
    assert.ok(logs.lines.some((l) => String(l.msg).includes('renamed to *.corrupt')));
  });

  test('an ack write that fails part-way does not shift the acks written after it', async () => {
    const dir = tempDir();
    let failNextAck = false;
    const io: QueueIo = {
      ...realIo,
      writev: async (fd, buffers, position) => {
        const isAck = buffers.length === 1 && buffers[0]!.length === 8;
        if (isAck && failNextAck) {
          failNextAck = false;
          await realIo.writev(fd, [buffers[0]!.subarray(0, 3)], position);
          throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
        }
        return realIo.writev(fd, buffers, position);
      },
    };
    const q = queue(dir, { io });
    q.recover();
    const refs = [];
    for (let pid = 1; pid <= 6; pid++) refs.push(await q.append(batch(pid)));
    await q.ack(refs[0]!);
    failNextAck = true;
    await q.ack(refs[1]!);
    for (const ref of refs.slice(2, 5)) await q.ack(ref);
    // Killed here (no close): 2 is sent again (its ack failed), 6 was never sent.
    assert.deepEqual(queue(dir).recover().records.map((r) => pidOf(r.request)), ['2', '6']);
  });

  test('a directory fsync that fails rejects the append without leaking the new segment or its descriptor', async () => {
    const dir = tempDir();
    const q = queue(dir, { fsync: true });
    q.recover();
    const promises = (createRequire(__filename)('node:fs') as typeof fs).promises as unknown as Record<string, unknown>;
    const open = promises.open as (...args: unknown[]) => Promise<unknown>;
    const fds = () => fs.readdirSync('/proc/self/fd').length;
    const before = fds();
    promises.open = (file: unknown, ...rest: unknown[]) =>
      file === dir ? Promise.reject(Object.assign(new Error('EIO: i/o error, open'), { code: 'EIO' })) : open(file, ...rest);
    try {
      await assert.rejects(q.append(batch(1)), /EIO/);
    } finally {
      promises.open = open;
    }
    assert.equal(fds(), before, 'no descriptor left open');
    assert.deepEqual(fs.readdirSync(dir), [], 'the new segment is removed');
    await q.append(batch(2));
    await q.close();
    assert.deepEqual(queue(dir).recover().records.map((r) => pidOf(r.request)), ['2']);
  });

  test('failed ack writes (a full disk) are logged once, not once per batch', async () => {
    const dir = tempDir();
    const io: QueueIo = {
      ...realIo,
      writev: (fd, buffers, position) =>
        buffers.length === 1 && buffers[0]!.length === 8 ? Promise.reject(Object.assign(new Error('no space left on device'), { code: 'ENOSPC' })) : realIo.writev(fd, buffers, position),
    };
    const logs = captureLogs('warn');
    const q = new SegmentQueue({ dir, fsync: false, logger: logs.logger, io });
    q.recover();
    const refs = [];
    for (let pid = 1; pid <= 6; pid++) refs.push(await q.append(batch(pid)));
    for (const ref of refs.slice(0, 5)) await q.ack(ref);
    assert.equal(logs.lines.filter((l) => String(l.msg).includes('could not mark records as sent')).length, 1);
    await q.close();
  });

  test('appends (fsync on, a new segment each) and acks make no synchronous file-system calls', async () => {
    const dir = tempDir();
    const q = queue(dir, { fsync: true, segmentBytes: 1 });
    q.recover();
    const names = ['openSync', 'closeSync', 'fsyncSync', 'fdatasyncSync', 'rmSync', 'unlinkSync', 'ftruncateSync', 'writeSync', 'fstatSync'] as const;
    // The module object itself (the import binding is read-only).
    const mutable = createRequire(__filename)('node:fs') as Record<string, unknown>;
    const saved = names.map((name) => [name, mutable[name]] as const);
    const called: string[] = [];
    for (const [name, original] of saved) {
      mutable[name] = (...args: unknown[]) => {
        called.push(name);
        return (original as (...a: unknown[]) => unknown)(...args);
      };
    }
    try {
      const refs = [];
      for (let pid = 1; pid <= 3; pid++) refs.push(await q.append(batch(pid)));
      for (const ref of refs) await q.ack(ref);
      await q.append(batch(4));
    } finally {
      for (const [name, original] of saved) mutable[name] = original;
    }
    assert.deepEqual(called, []);
    await q.close();
    assert.deepEqual(queue(dir).recover().records.map((r) => pidOf(r.request)), ['4']);
  });
});

describe('segment queue', () => {
  test('unacknowledged batches come back after a restart, in order; acknowledged ones do not', async () => {
    const dir = tempDir();
    const first = queue(dir);
    assert.equal(first.recover().records.length, 0);
    const refs = [];
    for (let pid = 1; pid <= 5; pid++) refs.push(await first.append(batch(pid)));
    await first.ack(refs[0]!);
    await first.ack(refs[2]!);
    await first.close();
    // A torn ack entry at the end (a crash in the middle of writing it) must not hide later acks.
    const ackFile = path.join(dir, fs.readdirSync(dir).find((n) => n.endsWith('.ack'))!);
    fs.appendFileSync(ackFile, Buffer.from([1, 2, 3]));
    const second = queue(dir);
    const recovered = second.recover();
    assert.deepEqual(
      recovered.records.map((r) => pidOf(r.request)),
      ['2', '4', '5'],
    );
    assert.equal(recovered.records[0]!.request.itemCount, 2);
    assert.equal(recovered.corrupt, 0);
    await second.ack(recovered.records[1]!.ref);
    await second.close();
    assert.deepEqual(
      queue(dir)
        .recover()
        .records.map((r) => pidOf(r.request)),
      ['2', '5'],
      'an ack written after a torn one counts',
    );
  });

  test('a segment is deleted once every record in it is acknowledged; the next start finds nothing', async () => {
    const dir = tempDir();
    const q = queue(dir, { segmentBytes: 1 });
    q.recover();
    const refs = [];
    for (let pid = 1; pid <= 4; pid++) refs.push(await q.append(batch(pid)));
    assert.equal(fs.readdirSync(dir).filter((n) => n.endsWith('.log')).length, 4, 'one record per segment with segmentBytes 1');
    for (const ref of refs.slice(0, 3)) await q.ack(ref);
    assert.equal(fs.readdirSync(dir).filter((n) => n.endsWith('.log')).length, 1);
    await q.ack(refs[3]!);
    assert.deepEqual(fs.readdirSync(dir), []);
    await q.close();
    assert.equal(queue(dir).recover().records.length, 0);
  });

  test('appends of the same tick share one write and one fdatasync (group commit); an append resolves only after its fdatasync', async () => {
    const dir = tempDir();
    let writes = 0;
    let syncs = 0;
    let releaseSync: (() => void) | undefined;
    const io: QueueIo = {
      writev: (fd, buffers, position) => (writes++, realIo.writev(fd, buffers, position)),
      fdatasync: async (fd) => {
        syncs++;
        await new Promise<void>((resolve) => (releaseSync = resolve));
        await realIo.fdatasync(fd);
      },
    };
    const q = queue(dir, { io, fsync: true });
    q.recover();
    let resolved = 0;
    const appends = Array.from({ length: 20 }, (_, i) => q.append(batch(i + 1)).then(() => resolved++));
    await waitFor('the fdatasync to start', () => releaseSync !== undefined);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(resolved, 0, 'nothing resolves before its fdatasync returned');
    releaseSync!();
    await Promise.all(appends);
    assert.equal(writes, 1);
    assert.equal(syncs, 1);
    await q.close();
    assert.equal(queue(dir).recover().records.length, 20);
  });

  test('with fsync: false there is no fdatasync', async () => {
    const dir = tempDir();
    let syncs = 0;
    const q = queue(dir, { io: { ...realIo, fdatasync: async () => void syncs++ } });
    q.recover();
    await q.append(batch(1));
    assert.equal(syncs, 0);
    await q.close();
  });

  test('start-up cuts a torn tail and skips a corrupt record, counting it; the rest is recovered', async () => {
    const dir = tempDir();
    const q = queue(dir);
    q.recover();
    for (let pid = 1; pid <= 4; pid++) await q.append(batch(pid));
    await q.close();
    const file = path.join(dir, fs.readdirSync(dir).find((n) => n.endsWith('.log'))!);
    const buf = fs.readFileSync(file);
    const offsets = parseSegment(buf).records.map((r) => r.offset);
    buf[offsets[1]! + RECORD_HEADER + 30]! ^= 0x55;
    fs.writeFileSync(file, buf.subarray(0, buf.length - 7));
    let counted = 0;
    const logs = captureLogs('warn');
    const again = new SegmentQueue({ dir, fsync: false, logger: logs.logger, onCorrupt: (n) => (counted += n) });
    const report = again.recover();
    assert.equal(report.records.length, 2, 'records 1 and 3 survive');
    assert.equal(report.corrupt, 1);
    assert.equal(report.tornBytes, buf.length - 7 - offsets[3]!);
    assert.equal(counted, 1);
    assert.equal(fs.statSync(file).size, offsets[3], 'the torn tail is cut from the file');
    assert.ok(logs.lines.some((l) => String(l.msg).includes('cut an incomplete record')));
    assert.ok(logs.lines.some((l) => String(l.msg).includes('skipped corrupt records') && l.corrupt === 1));
    // Appends after recovery go to a new segment and survive the next restart too.
    await again.append(batch(9));
    await again.close();
    assert.equal(queue(dir).recover().records.length, 3);
  });

  test('a failed write (ENOSPC) rejects the appends it carried, leaves nothing behind, and later writes succeed', async () => {
    const dir = tempDir();
    let full = true;
    const io: QueueIo = {
      ...realIo,
      writev: async (fd, buffers, position) => {
        if (!full) return realIo.writev(fd, buffers, position);
        // Half of it reaches the file before the disk fills up.
        await realIo.writev(fd, [buffers[0]!.subarray(0, 6)], position);
        throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
      },
    };
    const q = queue(dir, { io });
    q.recover();
    await assert.rejects(q.append(batch(1)), /ENOSPC/);
    full = false;
    await q.append(batch(2));
    await q.close();
    const report = queue(dir).recover();
    assert.deepEqual(report.records.length, 1);
    assert.equal(report.corrupt, 0);
    assert.equal(report.tornBytes, 0);
  });
});

function storageConfig(directory: string, overrides: Partial<FileStorageConfig> = {}): FileStorageConfig {
  return { directory, timeoutMs: 200, fsync: false, createDirectory: false, directoryPermissions: 0o750, ...overrides };
}

describe('file_storage lock', () => {
  test('each exporter id gets its own directory, named as the Collector does for type/name', async () => {
    const dir = tempDir();
    const storage = new FileStorage(testSettings('file_storage'), storageConfig(dir));
    await storage.start();
    for (const id of ['otlp/jaeger', 'otlp/a:b', 'otlp/a_b']) storage.openQueue(id, silent, () => {}).recover();
    assert.deepEqual(fs.readdirSync(dir).filter((n) => n !== LOCK_FILE).sort(), ['exporter_otlp_a_b', 'exporter_otlp_a~3ab', 'exporter_otlp_jaeger']);
    // What clients sent is readable by the holder only.
    assert.equal(fs.statSync(path.join(dir, 'exporter_otlp_jaeger')).mode & 0o777, 0o700);
    const q = storage.openQueue('otlp/perm', silent, () => {});
    q.recover();
    await q.ack(await q.append(batch(1)));
    const ref = await q.append(batch(2));
    await q.ack(ref);
    for (const name of fs.readdirSync(path.join(dir, 'exporter_otlp_perm'))) assert.equal(fs.statSync(path.join(dir, 'exporter_otlp_perm', name)).mode & 0o777, 0o600, name);
    await storage.shutdown();
  });

  const lockOf = (dir: string) => JSON.parse(fs.readFileSync(path.join(dir, LOCK_FILE), 'utf8')) as { token: string; pid: number; host: string; pidns?: string };
  const writeLock = (dir: string, holder: Record<string, unknown>, ageMs = 0) => {
    const file = path.join(dir, LOCK_FILE);
    const boot = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    fs.writeFileSync(file, JSON.stringify({ token: 'other', host: os.hostname(), boot, pidns: fs.readlinkSync('/proc/self/ns/pid'), ...holder }));
    const at = new Date(Date.now() - ageMs);
    fs.utimesSync(file, at, at);
  };

  test('a second holder of the same directory gets a clear error naming the pid; after shutdown it can start', async () => {
    const dir = tempDir();
    const first = new FileStorage(testSettings('file_storage'), storageConfig(dir));
    await first.start();
    assert.equal(lockOf(dir).pid, process.pid);
    assert.equal(fs.statSync(path.join(dir, LOCK_FILE)).mode & 0o777, 0o600);
    const second = new FileStorage(testSettings('file_storage/b'), storageConfig(dir));
    // Same pid, another token (another instance, or pid 1 of another pid namespace): not ours.
    await assert.rejects(second.start(), new RegExp(`in use by another process \\(pid ${process.pid} on ${os.hostname()}`));
    await first.shutdown();
    assert.equal(fs.existsSync(path.join(dir, LOCK_FILE)), false);
    await second.start();
    await second.shutdown();
  });

  test('a lock left by a process that is gone is taken over with a warning', async () => {
    const dir = tempDir();
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    writeLock(dir, { pid: Number(dead.stdout) });
    const logs = captureLogs('warn');
    const storage = new FileStorage({ ...testSettings('file_storage'), logger: logs.logger }, storageConfig(dir));
    await storage.start();
    assert.ok(logs.lines.some((l) => String(l.msg).includes('stale') && l.pid === Number(dead.stdout) && l.reason === 'its process is not running'));
    assert.equal(lockOf(dir).pid, process.pid);
    await storage.shutdown();
  });

  test('lease: a live-looking lock of another host or pid namespace is waited for; once not refreshed for a while it is taken over', async () => {
    const dir = tempDir();
    // pid 1 in another pid namespace: its pid says nothing to us, only the lock's age does.
    writeLock(dir, { pid: 1, pidns: 'pid:[1]' });
    await assert.rejects(new FileStorage(testSettings('file_storage'), storageConfig(dir)).start(), /in use by another process \(pid 1 on/);
    writeLock(dir, { pid: 999_999_999, host: 'elsewhere' });
    await assert.rejects(new FileStorage(testSettings('file_storage'), storageConfig(dir)).start(), /pid 999999999 on elsewhere/);
    // Same host name and pid namespace id, another machine (the initial pid namespace has the same id everywhere).
    writeLock(dir, { pid: 999_999_999, boot: 'another-boot' });
    await assert.rejects(new FileStorage(testSettings('file_storage'), storageConfig(dir)).start(), /pid 999999999 on/);
    writeLock(dir, { pid: 1, pidns: 'pid:[1]' }, LOCK_STALE_MS + 1000);
    const logs = captureLogs('warn');
    const storage = new FileStorage({ ...testSettings('file_storage'), logger: logs.logger }, storageConfig(dir));
    await storage.start();
    assert.ok(logs.lines.some((l) => String(l.msg).includes('stale') && /not refreshed/.test(String(l.reason))));
    // The holder keeps its lease fresh.
    const file = path.join(dir, LOCK_FILE);
    const old = new Date(Date.now() - 60_000);
    fs.utimesSync(file, old, old);
    await waitFor('the lock refreshed', () => Date.now() - fs.statSync(file).mtimeMs < LOCK_STALE_MS, 3 * LOCK_REFRESH_MS);
    // A lock another process took over is not deleted by our shutdown.
    const mine = fs.readFileSync(file, 'utf8');
    writeLock(dir, { pid: 1, pidns: 'pid:[1]' });
    await storage.shutdown();
    assert.equal(lockOf(dir).token, 'other');
    assert.notEqual(mine, fs.readFileSync(file, 'utf8'));
  });

  test('two processes in their own pid namespaces (both pid 1) do not both get the lock', { skip: !canUnshare(), timeout: 30_000 }, async () => {
    const dir = tempDir();
    const module = path.resolve(__dirname, '../../src/extensions/filestorage/file-storage');
    const script = `const { FileStorage } = require(${JSON.stringify(module)});
      const s = new FileStorage({ id: 'file_storage', logger: require('pino')({ level: 'silent' }), telemetry: undefined },
        { directory: ${JSON.stringify(dir)}, timeoutMs: 300, fsync: false, createDirectory: false, directoryPermissions: 0o750 });
      s.start().then(() => { console.log('acquired pid ' + process.pid); process.stdin.on('data', () => s.shutdown().then(() => process.exit(0))); process.stdin.resume(); },
        (e) => { console.log('failed: ' + e.message); process.exit(0); });`;
    const spawnNs = () => {
      const child = spawn('unshare', ['-p', '-f', '--mount-proc', process.execPath, '-e', script], { cwd: path.resolve(__dirname, '../../..'), stdio: ['pipe', 'pipe', 'inherit'] });
      // One that failed exits at once: the 'stop' written to it may then meet a closed pipe (EPIPE).
      child.stdin.on('error', () => undefined);
      return child;
    };
    const output = (child: ReturnType<typeof spawnNs>) => {
      const out = { text: '' };
      child.stdout.on('data', (d: Buffer) => (out.text += d.toString()));
      return out;
    };
    const a = spawnNs();
    const aOut = output(a);
    try {
      await waitFor('the first holder', () => aOut.text.includes('acquired') || aOut.text.includes('failed'));
      assert.match(aOut.text, /acquired pid 1\b/);
      const b = spawnNs();
      const bOut = output(b);
      const bExit = new Promise((resolve) => b.on('exit', resolve));
      await waitFor('the second start', () => bOut.text.includes('acquired') || bOut.text.includes('failed'));
      b.stdin.end('stop\n');
      await bExit;
      assert.match(bOut.text, /failed: directory .* is in use by another process \(pid 1 on/);
    } finally {
      a.stdin.end('stop\n');
      await new Promise((resolve) => a.on('exit', resolve));
    }
    assert.equal(fs.existsSync(path.join(dir, LOCK_FILE)), false, 'the holder removed its lock');
  });

  test('a stale lock that cannot be moved (EPERM) fails the start with that error, without spinning', { timeout: 10_000 }, async () => {
    const dir = tempDir();
    writeLock(dir, { pid: 1, pidns: 'pid:[1]' }, LOCK_STALE_MS + 1000);
    const promises = (createRequire(__filename)('node:fs') as typeof fs).promises as unknown as Record<string, unknown>;
    const rename = promises.rename;
    promises.rename = () => Promise.reject(Object.assign(new Error('EPERM: operation not permitted, rename'), { code: 'EPERM' }));
    try {
      await assert.rejects(new FileStorage(testSettings('file_storage'), storageConfig(dir)).start(), /EPERM/);
    } finally {
      promises.rename = rename;
    }
  });

  test('a lock path that cannot be read (a dangling symlink) fails the start at its timeout', { timeout: 10_000 }, async () => {
    const dir = tempDir();
    fs.symlinkSync(path.join(dir, 'nowhere'), path.join(dir, LOCK_FILE));
    const started = Date.now();
    await assert.rejects(new FileStorage(testSettings('file_storage'), storageConfig(dir)).start(), /in use by another process/);
    assert.ok(Date.now() - started < 5000);
  });

  test('on a Node.js without zlib.crc32 the start fails saying which version is needed', async () => {
    const zlib = createRequire(__filename)('node:zlib') as Record<string, unknown>;
    const crc32 = zlib.crc32;
    zlib.crc32 = undefined;
    try {
      await assert.rejects(new FileStorage(testSettings('file_storage'), storageConfig(tempDir())).start(), /needs Node.js 20.15 or later \(zlib.crc32\)/);
    } finally {
      zlib.crc32 = crc32;
    }
  });

  test('a missing directory is an error unless create_directory is set', async () => {
    const dir = path.join(tempDir(), 'a', 'b');
    await assert.rejects(new FileStorage(testSettings('file_storage'), storageConfig(dir)).start(), /does not exist; create it or set create_directory: true/);
    const storage = new FileStorage(testSettings('file_storage'), storageConfig(dir, { createDirectory: true }));
    await storage.start();
    assert.equal(fs.statSync(dir).mode & 0o777, 0o750 & ~process.umask());
    await storage.shutdown();
  });
});

describe('sending_queue.storage config', () => {
  const base = (exporter: Record<string, unknown>, extensions: string[] = ['file_storage']) => ({
    receivers: { otlp: { protocols: { http: { endpoint: '127.0.0.1:0' } } } },
    exporters: { 'otlp/x': { endpoint: '127.0.0.1:1', tls: { insecure: true }, ...exporter } },
    extensions: { file_storage: { directory: tempDir() } },
    service: { extensions, telemetry: { metrics: { level: 'none' } }, pipelines: { traces: { receivers: ['otlp'], exporters: ['otlp/x'] } } },
  });
  const errorsOf = async (config: Record<string, unknown>): Promise<string[]> => {
    try {
      const service = await startService(config);
      await service.shutdown();
      return [];
    } catch (err) {
      if (err instanceof ConfigValidationError) return [...err.errors];
      throw err;
    }
  };

  test('names an extension that is configured and enabled, of type file_storage, with the queue on', async () => {
    assert.deepEqual(await errorsOf(base({ sending_queue: { storage: 'file_storage/other' } })), [
      'exporters::otlp/x::sending_queue::storage: references extension "file_storage/other" which is not configured (add it under extensions)',
    ]);
    assert.deepEqual(await errorsOf(base({ sending_queue: { storage: 'file_storage' } }, [])), [
      'exporters::otlp/x::sending_queue::storage: references extension "file_storage" which is not enabled (list it in service::extensions)',
    ]);
    assert.match((await errorsOf(base({ sending_queue: { storage: 'health_check' } })))[0]!, /expected the id of a file_storage extension/);
    assert.match((await errorsOf(base({ sending_queue: { enabled: false, storage: 'file_storage' } })))[0]!, /has no effect with sending_queue.enabled: false/);
    assert.deepEqual(await errorsOf(base({ sending_queue: { storage: 'file_storage' } })), []);
  });

  test('two enabled file_storage extensions cannot share a directory, also through a symlink', async () => {
    const config = base({ sending_queue: { storage: 'file_storage' } }, ['file_storage', 'file_storage/b']);
    const directory = config.extensions.file_storage.directory;
    (config.extensions as Record<string, unknown>)['file_storage/b'] = { directory };
    assert.deepEqual(await errorsOf(config), ['extensions::file_storage/b::directory: is also the directory of file_storage; each file_storage needs its own']);
    const link = path.join(tempDir(), 'link');
    fs.symlinkSync(directory, link);
    (config.extensions as Record<string, unknown>)['file_storage/b'] = { directory: link };
    assert.deepEqual(await errorsOf(config), ['extensions::file_storage/b::directory: is also the directory of file_storage; each file_storage needs its own']);
  });

  test("the Collector's recreate key is accepted; directory_permissions without create_directory is warned about", async () => {
    const config = base({ sending_queue: { storage: 'file_storage' } });
    (config.extensions as Record<string, unknown>).file_storage = { directory: config.extensions.file_storage.directory, recreate: true, directory_permissions: '0700' };
    const logs = captureLogs('warn');
    const service = await startService(config, logs.logger);
    await service.shutdown();
    assert.ok(logs.lines.some((l) => String(l.msg).includes('directory_permissions has no effect without create_directory')));
  });

  test('prometheusremotewrite takes a storage; an unknown storage id is a clear error', async () => {
    const config = (storage: string, extensions = ['file_storage']) => ({
      receivers: { otlp: { protocols: { http: { endpoint: '127.0.0.1:0' } } } },
      exporters: { 'prometheusremotewrite/x': { endpoint: 'http://127.0.0.1:1/api/v1/write', sending_queue: { storage } } },
      extensions: { file_storage: { directory: tempDir() }, 'file_storage/b': { directory: tempDir() } },
      service: { extensions, telemetry: { metrics: { level: 'none' } }, pipelines: { metrics: { receivers: ['otlp'], exporters: ['prometheusremotewrite/x'] } } },
    });
    assert.deepEqual(await errorsOf(config('file_storage')), []);
    assert.deepEqual(await errorsOf(config('file_storage/b', ['file_storage/b'])), []);
    assert.deepEqual(await errorsOf(config('file_storage/nope')), [
      'exporters::prometheusremotewrite/x::sending_queue::storage: references extension "file_storage/nope" which is not configured (add it under extensions)',
    ]);
    assert.deepEqual(await errorsOf(config('file_storage/b')), [
      'exporters::prometheusremotewrite/x::sending_queue::storage: references extension "file_storage/b" which is not enabled (list it in service::extensions)',
    ]);
    assert.match((await errorsOf(config('memory')))[0]!, /^exporters::prometheusremotewrite\/x::sending_queue::storage: expected the id of a file_storage extension/);
  });
});

describe('exporter helper with a persistent queue', () => {
  const config = (queueSize = 100): HelperConfig => ({
    timeout: { timeoutMs: 1000 },
    retry: { enabled: true, initialIntervalMs: 20, maxIntervalMs: 20, maxElapsedTimeMs: 0, multiplier: 1, randomizationFactor: 0 },
    queue: { enabled: true, numConsumers: 2, queueSize, sizer: 'requests', storage: 'file_storage' },
  });

  async function started(dir: string, push: (b: Batch) => Promise<void>, logger = silent) {
    const telemetry = new SelfTelemetry();
    const storage = new FileStorage(testSettings('file_storage', telemetry), storageConfig(dir));
    await storage.start();
    const helper = new ExporterHelper({ ...testSettings('otlp/x', telemetry), logger }, config(), push, compactedBatchRequests);
    await helper.start({ reportStatus: () => {}, extensions: new Map([['file_storage', storage]]) });
    return { helper, storage, telemetry };
  }

  test('what was not sent before a shutdown is sent first after the next start; what was sent is not sent again', async () => {
    const dir = tempDir();
    const sent: unknown[] = [];
    let up = true;
    const push = async (b: Batch) => {
      if (!up) throw new RetryableError('down');
      sent.push(pidOf(b));
    };
    const logs = captureLogs('info');
    const one = await started(dir, push, logs.logger);
    await one.helper.consume(batch(1));
    await one.helper.consume(batch(2));
    await waitFor('two sent', () => sent.length === 2);
    up = false;
    for (let pid = 3; pid <= 6; pid++) await one.helper.consume(batch(pid));
    await one.helper.shutdown();
    await one.storage.shutdown();
    assert.ok(logs.lines.some((l) => String(l.msg).includes('stay on disk') && l.batches === 4), 'the shutdown leaves the 4 unsent batches on disk');
    assert.ok(!logs.lines.some((l) => Number(l.level) >= 50), 'nothing dropped or failed');
    up = true;
    sent.length = 0;
    const two = await started(dir, push);
    await waitFor('the stored batches sent', () => sent.length === 4);
    assert.deepEqual(new Set(sent.map(Number)), new Set([3, 4, 5, 6]));
    await two.helper.shutdown();
    await two.storage.shutdown();
    assert.deepEqual(fs.readdirSync(path.join(dir, 'exporter_otlp_x')), [], 'every segment deleted once sent');
  });

  test('retry_on_failure disabled: the shutdown deadline leaves the batch in flight on disk, not dropped', async () => {
    const dir = tempDir();
    const telemetry = new SelfTelemetry();
    const storage = new FileStorage(testSettings('file_storage', telemetry), storageConfig(dir));
    await storage.start();
    let started = 0;
    const push = (_b: Batch, signal?: PushSignal) =>
      new Promise<void>((_resolve, reject) => {
        started++;
        signal!.addEventListener('abort', () => reject(signal!.reason instanceof Error ? signal!.reason : new Error(String(signal!.reason))));
      });
    const logs = captureLogs('warn');
    const noRetry: HelperConfig = { ...config(), retry: { ...config().retry, enabled: false }, timeout: { timeoutMs: 0 } };
    const helper = new ExporterHelper({ ...testSettings('otlp/x', telemetry), logger: logs.logger }, noRetry, push, compactedBatchRequests);
    await helper.start({ reportStatus: () => {}, extensions: new Map([['file_storage', storage]]) });
    await helper.consume(batch(1));
    await waitFor('the attempt started', () => started === 1);
    const shutdown = helper.shutdown();
    await helper.abandonQueue();
    await shutdown;
    await storage.shutdown();
    assert.ok(!logs.lines.some((l) => Number(l.level) >= 50), 'nothing dropped');
    const again = new FileStorage(testSettings('file_storage', new SelfTelemetry()), storageConfig(dir));
    await again.start();
    assert.deepEqual(again.openQueue('otlp/x', silent, () => {}).recover().records.map((r) => pidOf(r.request)), ['1']);
    await again.shutdown();
  });

  test('a reload that adds a storage writes the batches it takes over to disk; one that drops the storage warns where batches were left', async () => {
    const dir = tempDir();
    const down = async () => {
      throw new RetryableError('down');
    };
    const inMemory: HelperConfig = { ...config(), queue: { ...config().queue, storage: undefined } };
    const before = new ExporterHelper(testSettings('otlp/x'), inMemory, down, compactedBatchRequests);
    await before.start();
    await before.consume(batch(1));
    await before.consume(batch(2));
    const carried = await before.releaseQueue();
    assert.equal(carried.length, 2);
    const logs = captureLogs('info');
    const telemetry = new SelfTelemetry();
    const storage = new FileStorage(testSettings('file_storage', telemetry), storageConfig(dir));
    await storage.start();
    const after = new ExporterHelper({ ...testSettings('otlp/x', telemetry), logger: logs.logger }, config(), down, compactedBatchRequests);
    await after.start({ reportStatus: () => {}, extensions: new Map([['file_storage', storage]]) });
    after.adoptQueue(carried);
    await waitFor('taken over', () => logs.lines.some((l) => String(l.msg).includes('took over the sending queue')));
    await after.shutdown();
    await storage.shutdown();
    assert.ok(!logs.lines.some((l) => Number(l.level) >= 50), 'nothing dropped');
    // The next configuration has no storage: the batches are still there, and it says where.
    const dropped = captureLogs('warn');
    const third = new ExporterHelper({ ...testSettings('otlp/x'), logger: dropped.logger }, inMemory, down, compactedBatchRequests);
    await third.start();
    assert.ok(dropped.lines.some((l) => String(l.msg).includes('no longer uses') && l.directory === path.join(dir, 'exporter_otlp_x')));
    await third.shutdown();
    const again = new FileStorage(testSettings('file_storage', new SelfTelemetry()), storageConfig(dir));
    await again.start();
    assert.deepEqual(again.openQueue('otlp/x', silent, () => {}).recover().records.map((r) => pidOf(r.request)).sort(), ['1', '2']);
    await again.shutdown();
  });

  test('disk full: consume is refused with a retryable error and a log line, and taken again once writes succeed', async () => {
    const dir = tempDir();
    let full = false;
    const io: QueueIo = {
      ...realIo,
      writev: (fd, buffers, position) => (full ? Promise.reject(Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' })) : realIo.writev(fd, buffers, position)),
    };
    const sent: unknown[] = [];
    const logs = captureLogs('info');
    const telemetry = new SelfTelemetry();
    const storage = new FileStorage(testSettings('file_storage', telemetry), storageConfig(dir));
    storage.io = io;
    await storage.start();
    const helper = new ExporterHelper({ ...testSettings('otlp/x', telemetry), logger: logs.logger }, config(), async (b) => void sent.push(pidOf(b)), compactedBatchRequests);
    await helper.start({ reportStatus: () => {}, extensions: new Map([['file_storage', storage]]) });
    full = true;
    await assert.rejects(helper.consume(batch(1)), (err: Error) => err instanceof RetryableError && /persistent queue: ENOSPC/.test(err.message));
    await assert.rejects(helper.consume(batch(2)), RetryableError);
    assert.equal(logs.lines.filter((l) => String(l.msg).includes('write failed')).length, 1, 'one log line, throttled');
    full = false;
    await helper.consume(batch(3));
    await waitFor('sent', () => sent.length === 1);
    assert.deepEqual(sent.map(Number), [3]);
    assert.ok(logs.lines.some((l) => String(l.msg).includes('writing again')));
    await helper.shutdown();
    await storage.shutdown();
  });
});
