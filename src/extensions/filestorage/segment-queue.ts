import * as fs from 'node:fs';
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import { crc32 } from 'node:zlib';
import type { Logger } from 'pino';
import { errorMessage } from '../../component/errors';
import { LogThrottle } from '../../util/log-throttle';
import type { Batch, Signal } from '../../pdata/batch';
import { SIGNAL_CODE, batchRecords, type PersistentQueue, type RecordCodec, type RecordRef, type RecoveredRecord, type RecoveryReport } from '../../component/storage';

// One exporter's persistent sending queue: append-only segment files of checksummed records, and
// beside each segment a file of the offsets of its records that were sent (each entry written at
// its place, so a failed write is overwritten by the next). A segment whose records are all
// acknowledged is deleted; no record is ever rewritten in place.
//
// Segment: header (magic u32 | salt u32 | crc32 of those 8 bytes u32 | 0 u32), then records.
// Record:  magic u32 | length u32 | crc32(payload) u32 | crc32(the first 12 bytes, seeded with the salt) u32 | payload
// Payload: kind u8 | body. Kinds (RecordCodec): 0 traces, 1 metrics: the batch's export request
// (ResourceSpans/-Metrics as field 1); 2 prometheusremotewrite: its snappy-compressed WriteRequests.
// The salt is random per segment: bytes a client sent (a record's image inside a span attribute)
// cannot carry a header that checks out, so recovery never takes them for a record.
// Ack entry: offset u32 | crc32(offset) u32.

export const SEGMENT_MAGIC = 0x53534732; // "2GSS"
export const SEGMENT_HEADER = 16;
export const RECORD_MAGIC = 0x53535132; // "2QSS"
export const RECORD_HEADER = 16;
const ACK_ENTRY = 8;
/** A segment receives no more records once it is this large (a larger record still fits alone). */
export const DEFAULT_SEGMENT_BYTES = 8 * 1024 * 1024;
/** libuv writes at most this many buffers in one writev. */
const MAX_IOV = 512;
const SEGMENT_RE = /^(\d{16})\.log$/;

/** The file operations the queue's writes go through; tests replace them to inject ENOSPC/EIO. */
export interface QueueIo {
  writev(fd: number, buffers: readonly Buffer[], position: number): Promise<number>;
  fdatasync(fd: number): Promise<void>;
}

export const realIo: QueueIo = {
  writev: (fd, buffers, position) =>
    new Promise((resolve, reject) => fs.writev(fd, buffers as Buffer[], position, (err, written) => (err ? reject(err) : resolve(written)))),
  fdatasync: (fd) => new Promise((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve()))),
};

/** Files of a file-storage directory are the holder's only (they hold what clients sent). */
const FILE_MODE = 0o600;

/** A record's place: its segment and offset there. */
interface SegmentRef extends RecordRef {
  readonly segment: Segment;
}

export interface SegmentQueueOptions<R> {
  readonly dir: string;
  /** How requests are written and read back (default: batches). */
  readonly codec?: RecordCodec<R>;
  readonly fsync: boolean;
  readonly logger: Logger;
  readonly io?: QueueIo;
  readonly segmentBytes?: number;
  /** Incremented by the number of corrupt records skipped at recovery. */
  readonly onCorrupt?: (n: number) => void;
}

class Segment {
  fd: number | undefined;
  ackFd: number | undefined;
  /** Where the next record goes (the bytes known good). */
  size = 0;
  /** Records written and not acknowledged. */
  live = 0;
  /** Bytes in the ack file (read once when it is opened). */
  ackSize = 0;
  active = false;
  deleted = false;
  /** Seeds the header checksums of this segment's records. */
  salt = 0;

  constructor(
    readonly id: number,
    readonly dir: string,
  ) {}

  get logPath(): string {
    return path.join(this.dir, `${String(this.id).padStart(16, '0')}.log`);
  }

  get ackPath(): string {
    return path.join(this.dir, `${String(this.id).padStart(16, '0')}.ack`);
  }
}

interface PendingAppend {
  readonly buffers: Buffer[];
  readonly bytes: number;
  readonly resolve: (ref: SegmentRef) => void;
  readonly reject: (err: Error) => void;
}

interface PendingAck {
  readonly ref: SegmentRef;
  readonly resolve: () => void;
}

/**
 * A record's header and kind byte (a batch's signal: 'traces' 0, 'metrics' 1); its header
 * checksum is set by sealRecordHeader() once the segment is known.
 */
export function encodeRecordHeader(kind: number | Signal, body: Buffer | readonly Buffer[]): Buffer {
  const header = Buffer.allocUnsafe(RECORD_HEADER + 1);
  const kindByte = header.subarray(RECORD_HEADER);
  kindByte[0] = typeof kind === 'number' ? kind : SIGNAL_CODE[kind];
  let crc = crc32(kindByte);
  let length = 1;
  if (Buffer.isBuffer(body)) {
    crc = crc32(body, crc);
    length += body.length;
  } else {
    for (const part of body) {
      crc = crc32(part, crc);
      length += part.length;
    }
  }
  header.writeUInt32LE(RECORD_MAGIC, 0);
  header.writeUInt32LE(length, 4);
  header.writeUInt32LE(crc, 8);
  return header;
}

export function sealRecordHeader(header: Buffer, salt: number): void {
  header.writeUInt32LE(crc32(header.subarray(0, 12), salt), 12);
}

export function encodeSegmentHeader(salt: number): Buffer {
  const header = Buffer.alloc(SEGMENT_HEADER);
  header.writeUInt32LE(SEGMENT_MAGIC, 0);
  header.writeUInt32LE(salt, 4);
  header.writeUInt32LE(crc32(header.subarray(0, 8)), 8);
  return header;
}

export interface ParsedSegment {
  /** Offset and payload of every valid record, in order. */
  readonly records: { offset: number; payload: Buffer }[];
  /** Damaged records (or unreadable regions), each counted once. */
  readonly corrupt: number;
  /** Where the last readable record ends: what follows is cut. */
  readonly validEnd: number;
  /** What follows validEnd is a write that did not finish (not counted as corrupt). */
  readonly torn: boolean;
  /** The segment header is damaged: nothing in the file can be trusted. */
  readonly badHeader: boolean;
}

function allZero(buf: Buffer, from: number): boolean {
  for (let i = from; i < buf.length; i++) if (buf[i] !== 0) return false;
  return true;
}

/**
 * Reads the records of one segment file's bytes. Torn (a write that did not finish, cut without
 * counting): an incomplete header at the end, a record whose intact header says it runs past the
 * end, or a tail of zeros (a file extended but its data not written: power loss without fsync).
 * Anything else that does not check out is corrupt: a record whose header checks out but whose
 * payload does not is skipped by its length; a damaged header makes the reader look for the next
 * header that checks out with this segment's salt.
 */
export function parseSegment(buf: Buffer): ParsedSegment {
  const records: { offset: number; payload: Buffer }[] = [];
  if (buf.length < SEGMENT_HEADER) return { records, corrupt: 0, validEnd: 0, torn: buf.length > 0, badHeader: false };
  if (buf.readUInt32LE(0) !== SEGMENT_MAGIC || crc32(buf.subarray(0, 8)) !== buf.readUInt32LE(8)) {
    return { records, corrupt: 1, validEnd: 0, torn: false, badHeader: true };
  }
  const salt = buf.readUInt32LE(4);
  const magic = Buffer.alloc(4);
  magic.writeUInt32LE(RECORD_MAGIC, 0);
  /** The payload length of an intact record header at `at`, or -1. */
  const headerAt = (at: number): number => {
    if (at + RECORD_HEADER > buf.length || buf.readUInt32LE(at) !== RECORD_MAGIC) return -1;
    if (crc32(buf.subarray(at, at + 12), salt) !== buf.readUInt32LE(at + 12)) return -1;
    const length = buf.readUInt32LE(at + 4);
    return length < 1 ? -1 : length;
  };
  let corrupt = 0;
  let pos = SEGMENT_HEADER;
  let validEnd = pos;
  let torn = false;
  while (pos < buf.length) {
    if (pos + RECORD_HEADER > buf.length || allZero(buf, pos)) {
      torn = true;
      break;
    }
    const length = headerAt(pos);
    if (length >= 0) {
      const end = pos + RECORD_HEADER + length;
      if (end > buf.length) {
        torn = true;
        break;
      }
      if (crc32(buf.subarray(pos + RECORD_HEADER, end)) === buf.readUInt32LE(pos + 8)) records.push({ offset: pos, payload: buf.subarray(pos + RECORD_HEADER, end) });
      else corrupt++;
      pos = end;
      validEnd = end;
      continue;
    }
    // A damaged header: resynchronise on the next header that checks out; none: the rest is lost.
    corrupt++;
    let next = -1;
    for (let candidate = buf.indexOf(magic, pos + 1); candidate >= 0; candidate = buf.indexOf(magic, candidate + 1)) {
      if (headerAt(candidate) >= 0) {
        next = candidate;
        break;
      }
    }
    if (next < 0) break;
    pos = next;
    validEnd = next;
  }
  return { records, corrupt, validEnd, torn, badHeader: false };
}

function parseAcks(buf: Buffer): Set<number> {
  const acked = new Set<number>();
  for (let pos = 0; pos + ACK_ENTRY <= buf.length; pos += ACK_ENTRY) {
    const offsetBytes = buf.subarray(pos, pos + 4);
    if (crc32(offsetBytes) === buf.readUInt32LE(pos + 4)) acked.add(offsetBytes.readUInt32LE(0));
  }
  return acked;
}

/**
 * A persistent FIFO of batches for one exporter. append() resolves once the record is written
 * (and fdatasync'ed with `fsync`); appends that arrive while a write is under way share the next
 * write (group commit). ack() marks a record sent; fully acknowledged segments are deleted.
 */
export class SegmentQueue<R = Batch> implements PersistentQueue<R> {
  private readonly codec: RecordCodec<R>;
  private readonly io: QueueIo;
  private readonly segmentBytes: number;
  private readonly segments = new Map<number, Segment>();
  private active: Segment | undefined;
  private nextSegmentId = 1;
  private pending: PendingAppend[] = [];
  private writing = false;
  private pendingAcks: PendingAck[] = [];
  private acking = false;
  private closed = false;
  private idleWaiters: (() => void)[] = [];
  /** Closes and deletions under way (off the write and ack paths); close() waits for them. */
  private readonly closing = new Set<Promise<void>>();
  /** Records whose ack failed since the last line logged. */
  private ackFailures = 0;
  private readonly ackFailureLog = new LogThrottle();

  get dir(): string {
    return this.options.dir;
  }

  constructor(private readonly options: SegmentQueueOptions<R>) {
    // Without a codec the queue holds batches (R's default).
    this.codec = options.codec ?? (batchRecords as unknown as RecordCodec<R>);
    this.io = options.io ?? realIo;
    this.segmentBytes = options.segmentBytes ?? DEFAULT_SEGMENT_BYTES;
  }

  /** Reads what a previous run left: unacknowledged records in order; cuts torn tails; deletes finished segments. */
  recover(): RecoveryReport<R, SegmentRef> {
    const { dir, logger } = this.options;
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const names = fs.readdirSync(dir);
    const ids = names
      .map((name) => SEGMENT_RE.exec(name)?.[1])
      .filter((id): id is string => id !== undefined)
      .map(Number)
      .sort((a, b) => a - b);
    const records: RecoveredRecord<R, SegmentRef>[] = [];
    const corruptSegments: string[] = [];
    let corrupt = 0;
    let tornBytes = 0;
    for (const id of ids) {
      const segment = new Segment(id, dir);
      this.nextSegmentId = Math.max(this.nextSegmentId, id + 1);
      const buf = fs.readFileSync(segment.logPath);
      let acked = new Set<number>();
      try {
        const acks = fs.readFileSync(segment.ackPath);
        acked = parseAcks(acks);
        // A torn last entry would misalign the entries appended after it.
        if (acks.length % ACK_ENTRY !== 0) fs.truncateSync(segment.ackPath, acks.length - (acks.length % ACK_ENTRY));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
      const parsed = parseSegment(buf);
      corrupt += parsed.corrupt;
      if (parsed.corrupt > 0 && parsed.records.length === 0) {
        // Nothing readable: kept aside for a look, not deleted.
        const aside = `${segment.logPath}.corrupt`;
        fs.renameSync(segment.logPath, aside);
        fs.rmSync(segment.ackPath, { force: true });
        corruptSegments.push(aside);
        logger.error({ segment: aside, bytes: buf.length, badHeader: parsed.badHeader }, 'persistent queue: a segment holds nothing readable; renamed to *.corrupt (remove it once looked at)');
        continue;
      }
      if (parsed.validEnd < buf.length) {
        const cut = buf.length - parsed.validEnd;
        if (parsed.torn) {
          tornBytes += cut;
          logger.warn({ segment: segment.logPath, bytes: cut }, 'persistent queue: cut an incomplete record at the end of a segment (a write the process did not finish)');
        }
        // A corrupt tail is counted (and logged) with the corrupt records.
        fs.truncateSync(segment.logPath, parsed.validEnd);
      }
      if (parsed.validEnd >= SEGMENT_HEADER) segment.salt = buf.readUInt32LE(4);
      for (const record of parsed.records) {
        if (acked.has(record.offset)) continue;
        let request: R;
        try {
          request = this.codec.decode(record.payload[0]!, record.payload.subarray(1));
        } catch {
          // Checksums right, content not: not this exporter's kind of record, or not decodable.
          corrupt++;
          continue;
        }
        segment.live++;
        records.push({ request, ref: { segment, offset: record.offset } });
      }
      segment.size = parsed.validEnd;
      if (segment.live === 0) {
        fs.rmSync(segment.logPath, { force: true });
        fs.rmSync(segment.ackPath, { force: true });
      } else this.segments.set(id, segment);
    }
    // Ack files whose segment is gone (a crash between the two unlinks).
    for (const name of names) {
      const match = /^(\d{16})\.ack$/.exec(name);
      if (match && !this.segments.has(Number(match[1])) && !ids.includes(Number(match[1]))) fs.rmSync(path.join(dir, name), { force: true });
    }
    if (corrupt > 0) {
      logger.error({ corrupt, dir }, 'persistent queue: skipped corrupt records (their data is lost)');
      this.options.onCorrupt?.(corrupt);
    }
    return { records, corrupt, tornBytes, segments: this.segments.size, corruptSegments };
  }

  /** Writes a request; resolves with its place once it is as durable as `fsync` says. */
  append(request: R): Promise<SegmentRef> {
    if (this.closed) return Promise.reject(new Error('the persistent queue is closed'));
    const body = this.codec.body(request);
    const header = encodeRecordHeader(this.codec.kind(request), body);
    // The header's length field is the kind byte and the body.
    const bytes = RECORD_HEADER + header.readUInt32LE(4);
    const buffers = Buffer.isBuffer(body) ? [header, body] : [header, ...body];
    return new Promise((resolve, reject) => {
      this.pending.push({ buffers, bytes, resolve, reject });
      if (!this.writing) {
        this.writing = true;
        // Appends of the same tick share the first write too.
        queueMicrotask(() => void this.flush());
      }
    });
  }

  /** Marks a record sent; resolves once the mark is written (or failed to be: then the record may be resent after a restart). */
  ack(ref: SegmentRef): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      this.pendingAcks.push({ ref, resolve });
      if (!this.acking) {
        this.acking = true;
        queueMicrotask(() => void this.flushAcks());
      }
    });
  }

  /** Waits for writes under way, then closes every file. Records stay for the next start. */
  async close(): Promise<void> {
    this.closed = true;
    while (this.writing || this.acking) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    for (const segment of [...this.segments.values()]) {
      if (segment.live === 0) void this.deleteSegment(segment);
      else this.closing.add(closeFiles(segment));
    }
    this.segments.clear();
    this.active = undefined;
    await Promise.all(this.closing);
  }

  private async flush(): Promise<void> {
    while (this.pending.length > 0) {
      // One write takes at most a segment's worth (and at least one record), so that offsets stay small.
      let take = 0;
      for (let bytes = 0; take < this.pending.length && (take === 0 || bytes < this.segmentBytes); take++) bytes += this.pending[take]!.bytes;
      const group = this.pending.splice(0, take);
      let segment: Segment;
      try {
        segment = await this.writableSegment();
      } catch (err) {
        this.fail(group, err);
        continue;
      }
      // A new segment's header goes with its first records.
      const writeAt = segment.size;
      const buffers: Buffer[] = segment.size === 0 ? [encodeSegmentHeader(segment.salt)] : [];
      const start = segment.size === 0 ? SEGMENT_HEADER : segment.size;
      const refs: SegmentRef[] = [];
      let bytes = 0;
      for (const append of group) {
        refs.push({ segment, offset: start + bytes });
        sealRecordHeader(append.buffers[0]!, segment.salt);
        buffers.push(...append.buffers);
        bytes += append.bytes;
      }
      try {
        await this.writeAll(segment.fd!, buffers, writeAt);
        if (this.options.fsync) await this.io.fdatasync(segment.fd!);
      } catch (err) {
        // Nothing of this group counts as written. A partial write is cut (best effort) and the
        // segment closed for writing, so later records never follow garbage in it.
        await new Promise<void>((resolve) => fs.ftruncate(segment.fd!, writeAt, () => resolve()));
        this.retire(segment);
        this.fail(group, err);
        continue;
      }
      segment.size = start + bytes;
      segment.live += group.length;
      for (let i = 0; i < group.length; i++) group[i]!.resolve(refs[i]!);
      if (segment.size >= this.segmentBytes) this.retire(segment);
    }
    this.writing = false;
    this.notifyIdle();
  }

  private fail(group: readonly PendingAppend[], err: unknown): void {
    const code = (err as NodeJS.ErrnoException).code;
    const error = new Error(`could not write to the persistent queue: ${code ?? errorMessage(err)}`);
    for (const append of group) append.reject(error);
  }

  private async writeAll(fd: number, buffers: Buffer[], position: number): Promise<void> {
    let index = 0;
    let skip = 0;
    while (index < buffers.length) {
      const batch: Buffer[] = [];
      for (let i = index; i < buffers.length && batch.length < MAX_IOV; i++) batch.push(i === index && skip > 0 ? buffers[i]!.subarray(skip) : buffers[i]!);
      const written = await this.io.writev(fd, batch, position);
      if (written <= 0) throw Object.assign(new Error('write returned 0 bytes'), { code: 'EIO' });
      position += written;
      // Advance past what was written; a short write continues inside a buffer.
      let left = written;
      while (left > 0) {
        const remaining = buffers[index]!.length - skip;
        if (left >= remaining) {
          left -= remaining;
          index++;
          skip = 0;
        } else {
          skip += left;
          left = 0;
        }
      }
    }
  }

  /** The segment appends go to: the active one, or a new one (opened off the event loop). */
  private async writableSegment(): Promise<Segment> {
    if (this.active) return this.active;
    const segment = new Segment(this.nextSegmentId++, this.options.dir);
    segment.salt = randomBytes(4).readUInt32LE(0);
    segment.fd = await new Promise<number>((resolve, reject) => fs.open(segment.logPath, 'wx', FILE_MODE, (err, fd) => (err ? reject(err) : resolve(fd))));
    if (this.options.fsync) {
      // The new file's directory entry must survive a power loss too, not only its data.
      try {
        await syncDirectory(this.options.dir);
      } catch (err) {
        await closeFiles(segment);
        await fs.promises.rm(segment.logPath, { force: true });
        throw err;
      }
    }
    segment.active = true;
    this.segments.set(segment.id, segment);
    this.active = segment;
    return segment;
  }

  /** No more appends to this segment; it goes once its records are all acknowledged. */
  private retire(segment: Segment): void {
    segment.active = false;
    if (this.active === segment) this.active = undefined;
    if (segment.live === 0) void this.deleteSegment(segment);
  }

  private async flushAcks(): Promise<void> {
    while (this.pendingAcks.length > 0) {
      const group = this.pendingAcks;
      this.pendingAcks = [];
      const bySegment = new Map<Segment, PendingAck[]>();
      const deletions: Promise<void>[] = [];
      for (const ack of group) {
        const list = bySegment.get(ack.ref.segment);
        if (list) list.push(ack);
        else bySegment.set(ack.ref.segment, [ack]);
      }
      for (const [segment, acks] of bySegment) {
        if (segment.deleted) continue;
        const buf = Buffer.allocUnsafe(acks.length * ACK_ENTRY);
        for (let i = 0; i < acks.length; i++) {
          buf.writeUInt32LE(acks[i]!.ref.offset, i * ACK_ENTRY);
          buf.writeUInt32LE(crc32(buf.subarray(i * ACK_ENTRY, i * ACK_ENTRY + 4)), i * ACK_ENTRY + 4);
        }
        segment.live -= acks.length;
        if (segment.live <= 0 && !segment.active) {
          // Every record sent: the segment goes, no need to write its acks.
          deletions.push(this.deleteSegment(segment));
          continue;
        }
        try {
          if (segment.ackFd === undefined) {
            // Not O_APPEND: writes go where ackSize says, so a failed one is overwritten by the next.
            const fd = await new Promise<number>((resolve, reject) => fs.open(segment.ackPath, fs.constants.O_WRONLY | fs.constants.O_CREAT, FILE_MODE, (err, f) => (err ? reject(err) : resolve(f))));
            const size = await new Promise<number>((resolve, reject) => fs.fstat(fd, (err, st) => (err ? reject(err) : resolve(st.size))));
            if (segment.deleted) {
              fs.close(fd, () => {});
              continue;
            }
            segment.ackFd = fd;
            // Whole entries only: a torn last one would misalign those written after it.
            segment.ackSize = size - (size % ACK_ENTRY);
          }
          await this.writeAll(segment.ackFd, [buf], segment.ackSize);
          segment.ackSize += buf.length;
        } catch (err) {
          this.logAckFailure(err, acks.length);
        }
      }
      await Promise.all(deletions);
      for (const ack of group) ack.resolve();
    }
    this.acking = false;
    this.notifyIdle();
  }

  /** One line at the first failure, then at most one every 10 s (a full disk fails every ack). */
  private logAckFailure(err: unknown, records: number): void {
    this.ackFailures += records;
    if (this.ackFailureLog.take() === undefined) return;
    this.options.logger.warn(
      { err: errorMessage(err), records: this.ackFailures },
      'persistent queue: could not mark records as sent; they will be sent again after a restart',
    );
    this.ackFailures = 0;
  }

  /** Forgets the segment now; its files are closed and removed off the ack path. */
  private deleteSegment(segment: Segment): Promise<void> {
    segment.deleted = true;
    this.segments.delete(segment.id);
    const done = (async () => {
      await closeFiles(segment);
      try {
        // The log first: an ack file without its log is ignored and removed at the next start.
        await fs.promises.rm(segment.logPath, { force: true });
        await fs.promises.rm(segment.ackPath, { force: true });
      } catch (err) {
        this.options.logger.warn({ err: errorMessage(err), segment: segment.logPath }, 'persistent queue: could not delete a sent segment');
      }
    })();
    this.closing.add(done);
    void done.finally(() => this.closing.delete(done));
    return done;
  }

  private notifyIdle(): void {
    if (this.writing || this.acking) return;
    for (const resolve of this.idleWaiters.splice(0)) resolve();
  }
}

async function closeFiles(segment: Segment): Promise<void> {
  const fds = [segment.fd, segment.ackFd];
  segment.fd = undefined;
  segment.ackFd = undefined;
  for (const fd of fds) if (fd !== undefined) await new Promise<void>((resolve) => fs.close(fd, () => resolve()));
}

async function syncDirectory(dir: string): Promise<void> {
  const handle = await fs.promises.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
