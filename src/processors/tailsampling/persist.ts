import type { Logger } from 'pino';
import { errorMessage } from '../../component/errors';
import type { PersistentQueue, RecordCodec, RecordRef } from '../../component/storage';
import type { ResourceBlock } from '../../pdata/batch';
import { parseRequest } from '../../pdata/scan';
import { writeVarint } from '../../pdata/wire';
import { LogThrottle } from '../../util/log-throttle';

// tail_sampling's `storage`: every received request is written to a storage extension's queue
// before it is acknowledged, and acked there once every trace holding spans of it is decided
// (and, for a kept trace, handed to the next component). A record that still holds an
// undecided trace may also hold decided ones: their decisions are written as records of their
// own, so a restart does not decide them twice; a decision record is acked once the request
// records it speaks for are. See docs/tail-sampling-processor.md#restarts-and-storage.

/** Record kinds (global across storage users, see component/storage.ts). */
export const RECEIVED_KIND = 3;
export const DECISIONS_KIND = 4;
const KEY_BYTES = 16;
/** ExportTraceServiceRequest.resource_spans: field 1, length-delimited. */
const RESOURCES_TAG = 0x0a;
const DECISION_BYTES = KEY_BYTES + 1;

export type TailRecord =
  /** A received request's resources (checked), and when it arrived (epoch ms of the processor's clock). */
  | { readonly kind: 'received'; readonly at: number; readonly blocks: readonly ResourceBlock[] }
  /** Trace ids (16-byte keys) and whether each was kept. */
  | { readonly kind: 'decisions'; readonly keys: readonly string[]; readonly sampled: readonly boolean[] };

export const tailRecords: RecordCodec<TailRecord> = {
  kind: (r) => (r.kind === 'received' ? RECEIVED_KIND : DECISIONS_KIND),
  body: (r) => {
    if (r.kind === 'received') {
      // The arrival time, then an export request made of the blocks' own bytes (written as they are, not copied).
      const out: Buffer[] = [];
      let head = Buffer.allocUnsafe(8 + 1 + 5);
      head.writeDoubleLE(r.at, 0);
      let pos = 8;
      for (const block of r.blocks) {
        head[pos] = RESOURCES_TAG;
        pos = writeVarint(head, pos + 1, block.bytes.length);
        out.push(head.subarray(0, pos));
        out.push(Buffer.from(block.bytes.buffer, block.bytes.byteOffset, block.bytes.byteLength));
        head = Buffer.allocUnsafe(1 + 5);
        pos = 0;
      }
      if (out.length === 0) out.push(head.subarray(0, 8));
      return out;
    }
    const buf = Buffer.allocUnsafe(r.keys.length * DECISION_BYTES);
    r.keys.forEach((key, i) => {
      buf.write(key, i * DECISION_BYTES, KEY_BYTES, 'latin1');
      buf[i * DECISION_BYTES + KEY_BYTES] = r.sampled[i] ? 1 : 0;
    });
    return buf;
  },
  decode: (kind, body) => {
    if (kind === RECEIVED_KIND) {
      if (body.length < 8) throw new Error('short received record');
      const at = body.readDoubleLE(0);
      // A copy: the body is a view into the segment file's bytes.
      return { kind: 'received', at, blocks: parseRequest('traces', Buffer.from(body.subarray(8))).batch.resources };
    }
    if (kind === DECISIONS_KIND) {
      if (body.length % DECISION_BYTES !== 0) throw new Error('bad decisions record');
      const keys: string[] = [];
      const sampled: boolean[] = [];
      for (let pos = 0; pos < body.length; pos += DECISION_BYTES) {
        keys.push(body.toString('latin1', pos, pos + KEY_BYTES));
        sampled.push(body[pos + KEY_BYTES] === 1);
      }
      return { kind: 'decisions', keys, sampled };
    }
    throw new Error(`record kind ${kind} is not tail_sampling's`);
  },
};

/** A received request on disk: acked once no trace needs it. */
export class ReceivedRecord {
  /** Traces with spans in it whose decision is not settled yet (plus 1 while it is being ingested). */
  open = 0;
  done = false;
  /** Decision records that speak for traces in this record. */
  readonly dependents: DecisionRecord[] = [];

  constructor(readonly ref: RecordRef) {}
}

class DecisionRecord {
  /** Received records (not yet acked) holding spans of its traces. */
  deps = 0;

  constructor(readonly ref: RecordRef) {}
}

interface Settled {
  readonly key: string;
  readonly sampled: boolean;
  readonly records: readonly ReceivedRecord[];
}

export class TraceStore {
  private toWrite: Settled[] = [];
  private writeScheduled = false;
  private readonly inFlight = new Set<Promise<unknown>>();
  private readonly failureLog = new LogThrottle();

  constructor(
    readonly queue: PersistentQueue<TailRecord>,
    private readonly logger: Logger,
  ) {}

  /** Writes a received request; resolves once it is as durable as the storage's fsync says. */
  async append(at: number, blocks: readonly ResourceBlock[]): Promise<ReceivedRecord> {
    return new ReceivedRecord(await this.queue.append({ kind: 'received', at, blocks }));
  }

  /** A recovered decision record: acked once the recovered records holding its traces are. */
  recoveredDecisions(ref: RecordRef, holders: Iterable<ReceivedRecord>): void {
    this.link(new DecisionRecord(ref), holders);
  }

  /**
   * A trace's decision is final (and a kept trace's spans were handed on): the records holding it
   * no longer wait for it. Records still needed by other traces get its decision written.
   */
  settle(key: string, sampled: boolean, records: readonly ReceivedRecord[]): void {
    let needed: ReceivedRecord[] | undefined;
    for (const record of records) {
      if (--record.open === 0) this.ackReceived(record);
      else (needed ??= []).push(record);
    }
    if (!needed) return;
    this.toWrite.push({ key, sampled, records: needed });
    if (!this.writeScheduled) {
      this.writeScheduled = true;
      // The decisions of one turn share a record.
      queueMicrotask(() => this.writeDecisions());
    }
  }

  /** Acks a received record that no trace needs any more (and decision records that only spoke for it). */
  release(record: ReceivedRecord): void {
    if (record.open === 0) this.ackReceived(record);
  }

  async close(): Promise<void> {
    this.writeDecisions();
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
    await this.queue.close();
  }

  private ackReceived(record: ReceivedRecord): void {
    if (record.done) return;
    record.done = true;
    this.track(this.queue.ack(record.ref));
    for (const decision of record.dependents) if (--decision.deps === 0) this.track(this.queue.ack(decision.ref));
    record.dependents.length = 0;
  }

  private writeDecisions(): void {
    this.writeScheduled = false;
    // Decisions whose records were all acked meanwhile need no record.
    const group = this.toWrite.filter((s) => s.records.some((r) => !r.done));
    this.toWrite = [];
    if (group.length === 0) return;
    const written = this.queue.append({ kind: 'decisions', keys: group.map((s) => s.key), sampled: group.map((s) => s.sampled) }).then(
      (ref) => this.link(new DecisionRecord(ref), group.flatMap((s) => s.records)),
      (err: unknown) => {
        // Not fatal: after a crash these traces are decided again (kept ones sent twice).
        const left = this.failureLog.take();
        if (left !== undefined) this.logger.warn({ err: errorMessage(err), traces: group.length, ...(left > 0 ? { similarNotLogged: left } : {}) }, 'tail_sampling: could not write decisions to storage; a crash now would decide those traces again');
      },
    );
    this.track(written);
  }

  private link(decision: DecisionRecord, holders: Iterable<ReceivedRecord>): void {
    const live = new Set<ReceivedRecord>();
    for (const record of holders) if (!record.done) live.add(record);
    decision.deps = live.size;
    if (decision.deps === 0) {
      this.track(this.queue.ack(decision.ref));
      return;
    }
    for (const record of live) record.dependents.push(decision);
  }

  private track(p: Promise<unknown>): void {
    this.inFlight.add(p);
    void p.finally(() => this.inFlight.delete(p));
  }
}
