import * as fs from 'node:fs';
import * as path from 'node:path';
import { crc32 } from 'node:zlib';
import type { Logger } from 'pino';
import { errorMessage } from '../../component/errors';
import type { Batch, Signal } from '../../pdata/batch';
import { parseRequest } from '../../pdata/scan';

// One exporter's persistent sending queue: append-only segment files of checksummed records, and
// beside each segment an append-only file of the offsets of its records that were sent. A segment
// whose records are all acknowledged is deleted; nothing is ever rewritten in place.
//
// Record:  magic u32 | length u32 | crc32 u32 | payload (length bytes)
// Payload: signal u8 (0 traces, 1 metrics) | the batch's export request (ResourceSpans/-Metrics as field 1)
// The crc covers the payload. Ack entry: offset u32 | crc32(offset) u32.

export const RECORD_MAGIC = 0x53535131; // "SSQ1"
export const RECORD_HEADER = 12;
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

export interface RecordRef {
  readonly segment: Segment;
  readonly offset: number;
}

export interface RecoveredRecord {
  readonly batch: Batch;
  readonly ref: RecordRef;
}

export interface RecoveryReport {
  readonly records: RecoveredRecord[];
  /** Records (or unreadable regions) skipped because their checksum or framing was wrong. */
  readonly corrupt: number;
  /** Bytes cut from the end of segments (a write that a crash interrupted). */
  readonly tornBytes: number;
  readonly segments: number;
}

export interface SegmentQueueOptions {
  readonly dir: string;
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
  readonly resolve: (ref: RecordRef) => void;
  readonly reject: (err: Error) => void;
}

interface PendingAck {
  readonly ref: RecordRef;
  readonly resolve: () => void;
}

const SIGNAL_CODE: Record<Signal, number> = { traces: 0, metrics: 1 };
const CODE_SIGNAL: readonly Signal[] = ['traces', 'metrics'];

export function encodeRecordHeader(signal: Signal, request: Buffer): Buffer {
  const header = Buffer.allocUnsafe(RECORD_HEADER + 1);
  const signalByte = header.subarray(RECORD_HEADER);
  signalByte[0] = SIGNAL_CODE[signal];
  header.writeUInt32LE(RECORD_MAGIC, 0);
  header.writeUInt32LE(request.length + 1, 4);
  header.writeUInt32LE(crc32(request, crc32(signalByte)), 8);
  return header;
}

export interface ParsedSegment {
  /** Offset and payload of every valid record, in order. */
  readonly records: { offset: number; payload: Buffer }[];
  readonly corrupt: number;
  /** Where the last valid record ends: anything after it is a torn tail. */
  readonly validEnd: number;
}

/** Reads the records of one segment file's bytes, skipping corrupt ones and finding the torn tail. */
export function parseSegment(buf: Buffer): ParsedSegment {
  const records: { offset: number; payload: Buffer }[] = [];
  let corrupt = 0;
  let pos = 0;
  let validEnd = 0;
  const magic = Buffer.alloc(4);
  magic.writeUInt32LE(RECORD_MAGIC, 0);
  const validAt = (at: number): number => {
    // The record's end, or -1 when there is no whole valid record at `at`.
    if (at + RECORD_HEADER > buf.length || buf.readUInt32LE(at) !== RECORD_MAGIC) return -1;
    const length = buf.readUInt32LE(at + 4);
    const end = at + RECORD_HEADER + length;
    if (length < 1 || end > buf.length) return -1;
    if (crc32(buf.subarray(at + RECORD_HEADER, end)) !== buf.readUInt32LE(at + 8)) return -1;
    return end;
  };
  while (pos < buf.length) {
    const end = validAt(pos);
    if (end >= 0) {
      records.push({ offset: pos, payload: buf.subarray(pos + RECORD_HEADER, end) });
      pos = end;
      validEnd = end;
      continue;
    }
    // Resynchronise on the next record that checks out; none: the rest is a torn tail.
    let next = -1;
    for (let candidate = buf.indexOf(magic, pos + 1); candidate >= 0; candidate = buf.indexOf(magic, candidate + 1)) {
      if (validAt(candidate) >= 0) {
        next = candidate;
        break;
      }
    }
    if (next < 0) break;
    corrupt++;
    pos = next;
  }
  return { records, corrupt, validEnd };
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
export class SegmentQueue {
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

  constructor(private readonly options: SegmentQueueOptions) {
    this.io = options.io ?? realIo;
    this.segmentBytes = options.segmentBytes ?? DEFAULT_SEGMENT_BYTES;
  }

  /** Reads what a previous run left: unacknowledged records in order; cuts torn tails; deletes finished segments. */
  recover(): RecoveryReport {
    const { dir, logger } = this.options;
    fs.mkdirSync(dir, { recursive: true });
    const names = fs.readdirSync(dir);
    const ids = names
      .map((name) => SEGMENT_RE.exec(name)?.[1])
      .filter((id): id is string => id !== undefined)
      .map(Number)
      .sort((a, b) => a - b);
    const records: RecoveredRecord[] = [];
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
      if (parsed.validEnd < buf.length) {
        const cut = buf.length - parsed.validEnd;
        tornBytes += cut;
        logger.warn({ segment: segment.logPath, bytes: cut }, 'persistent queue: cut an incomplete record at the end of a segment (a write the process did not finish)');
        fs.truncateSync(segment.logPath, parsed.validEnd);
      }
      for (const record of parsed.records) {
        if (acked.has(record.offset)) continue;
        const signal = CODE_SIGNAL[record.payload[0]!];
        let batch: Batch | undefined;
        try {
          if (signal) batch = parseRequest(signal, Buffer.from(record.payload.subarray(1))).batch.compact();
        } catch {
          batch = undefined;
        }
        if (!batch) {
          corrupt++;
          continue;
        }
        segment.live++;
        records.push({ batch, ref: { segment, offset: record.offset } });
      }
      segment.size = parsed.validEnd;
      if (segment.live === 0) this.deleteSegment(segment);
      else this.segments.set(id, segment);
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
    return { records, corrupt, tornBytes, segments: this.segments.size };
  }

  /** Writes a batch; resolves with its place once it is as durable as `fsync` says. */
  append(batch: Batch): Promise<RecordRef> {
    if (this.closed) return Promise.reject(new Error('the persistent queue is closed'));
    const request = batch.toRequestBytes();
    const header = encodeRecordHeader(batch.signal, request);
    return new Promise((resolve, reject) => {
      this.pending.push({ buffers: [header, request], bytes: header.length + request.length, resolve, reject });
      if (!this.writing) {
        this.writing = true;
        // Appends of the same tick share the first write too.
        queueMicrotask(() => void this.flush());
      }
    });
  }

  /** Marks a record sent; resolves once the mark is written (or failed to be: then the record may be resent after a restart). */
  ack(ref: RecordRef): Promise<void> {
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
      if (segment.live === 0) this.deleteSegment(segment);
      else this.closeFiles(segment);
    }
    this.segments.clear();
    this.active = undefined;
  }

  private async flush(): Promise<void> {
    while (this.pending.length > 0) {
      // One write takes at most a segment's worth (and at least one record), so that offsets stay small.
      let take = 0;
      for (let bytes = 0; take < this.pending.length && (take === 0 || bytes < this.segmentBytes); take++) bytes += this.pending[take]!.bytes;
      const group = this.pending.splice(0, take);
      let segment: Segment;
      try {
        segment = this.writableSegment();
      } catch (err) {
        this.fail(group, err);
        continue;
      }
      const start = segment.size;
      const refs: RecordRef[] = [];
      const buffers: Buffer[] = [];
      let bytes = 0;
      for (const append of group) {
        refs.push({ segment, offset: start + bytes });
        buffers.push(...append.buffers);
        bytes += append.bytes;
      }
      try {
        await this.writeAll(segment.fd!, buffers, start);
        if (this.options.fsync) await this.io.fdatasync(segment.fd!);
      } catch (err) {
        // Nothing of this group counts as written. A partial write is cut (best effort) and the
        // segment closed for writing, so later records never follow garbage in it.
        try {
          fs.ftruncateSync(segment.fd!, start);
        } catch {
          // Left for recovery, which cuts it as a torn tail.
        }
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

  /** The segment appends go to: the active one, or a new one. */
  private writableSegment(): Segment {
    if (this.active) return this.active;
    const segment = new Segment(this.nextSegmentId++, this.options.dir);
    segment.fd = fs.openSync(segment.logPath, 'wx');
    if (this.options.fsync) {
      // The new file's directory entry must survive a power loss too, not only its data.
      const dirFd = fs.openSync(this.options.dir, 'r');
      try {
        fs.fsyncSync(dirFd);
      } finally {
        fs.closeSync(dirFd);
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
    if (segment.live === 0) this.deleteSegment(segment);
  }

  private async flushAcks(): Promise<void> {
    while (this.pendingAcks.length > 0) {
      const group = this.pendingAcks;
      this.pendingAcks = [];
      const bySegment = new Map<Segment, PendingAck[]>();
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
          this.deleteSegment(segment);
          continue;
        }
        try {
          if (segment.ackFd === undefined) {
            segment.ackFd = fs.openSync(segment.ackPath, 'a');
            segment.ackSize = fs.fstatSync(segment.ackFd).size;
          }
          await this.writeAll(segment.ackFd, [buf], segment.ackSize);
          segment.ackSize += buf.length;
        } catch (err) {
          this.options.logger.warn({ err: errorMessage(err), records: acks.length }, 'persistent queue: could not mark records as sent; they will be sent again after a restart');
        }
      }
      for (const ack of group) ack.resolve();
    }
    this.acking = false;
    this.notifyIdle();
  }

  private deleteSegment(segment: Segment): void {
    this.closeFiles(segment);
    segment.deleted = true;
    this.segments.delete(segment.id);
    try {
      // The log first: an ack file without its log is ignored and removed at the next start.
      fs.rmSync(segment.logPath, { force: true });
      fs.rmSync(segment.ackPath, { force: true });
    } catch (err) {
      this.options.logger.warn({ err: errorMessage(err), segment: segment.logPath }, 'persistent queue: could not delete a sent segment');
    }
  }

  private closeFiles(segment: Segment): void {
    for (const fd of [segment.fd, segment.ackFd]) {
      if (fd === undefined) continue;
      try {
        fs.closeSync(fd);
      } catch {
        // Already closed.
      }
    }
    segment.fd = undefined;
    segment.ackFd = undefined;
  }

  private notifyIdle(): void {
    if (this.writing || this.acking) return;
    for (const resolve of this.idleWaiters.splice(0)) resolve();
  }
}
