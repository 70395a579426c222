import type { Logger } from 'pino';
import type { Batch, Signal } from '../pdata/batch';
import { parseRequest } from '../pdata/scan';

// What an exporter's persistent sending queue (sending_queue.storage) needs from a storage
// extension: the exporter helper uses these, the file_storage extension implements them.

/**
 * How one exporter's requests are written as records and read back. Kinds are global (a
 * directory could be reused by another exporter type): 0 and 1 batches, 2 remote write,
 * 3 and 4 tail_sampling's received resources and decisions.
 */
export interface RecordCodec<R> {
  /** The payload's first byte. */
  kind(request: R): number;
  /** The rest of the payload, in one or more buffers (written as they are, not copied). */
  body(request: R): Buffer | readonly Buffer[];
  /** A request from a record's kind and body (a view into the segment: copy what is kept); throws when it is not one. */
  decode(kind: number, body: Buffer): R;
}

/** A record's kind byte for a batch of each signal. */
export const SIGNAL_CODE: Record<Signal, number> = { traces: 0, metrics: 1 };
const CODE_SIGNAL: readonly Signal[] = ['traces', 'metrics'];

/** Records of batches (otlp, otlphttp): the batch's export request, as sent. */
export const batchRecords: RecordCodec<Batch> = {
  kind: (batch) => SIGNAL_CODE[batch.signal],
  body: (batch) => batch.toRequestBytes(),
  decode: (kind, body) => {
    const signal = CODE_SIGNAL[kind];
    if (!signal) throw new Error(`record kind ${kind} is not a batch`);
    return parseRequest(signal, Buffer.from(body)).batch.compact();
  },
};

/** Where a record sits; only the queue that returned it reads it. */
export interface RecordRef {
  readonly offset: number;
}

export interface RecoveredRecord<R, Ref extends RecordRef = RecordRef> {
  readonly request: R;
  readonly ref: Ref;
}

export interface RecoveryReport<R, Ref extends RecordRef = RecordRef> {
  readonly records: RecoveredRecord<R, Ref>[];
  /** Records (or unreadable regions) skipped because their checksum or framing was wrong. */
  readonly corrupt: number;
  /** Bytes cut from the end of segments (a write that a crash interrupted). */
  readonly tornBytes: number;
  /** Segments that held nothing readable, renamed to *.corrupt. */
  readonly corruptSegments: string[];
  readonly segments: number;
}

/** One exporter's queue on disk: appended records stay until acked, and come back from recover(). */
export interface PersistentQueue<R> {
  /** The directory the queue's files are in. */
  readonly dir: string;
  /** The records a previous run left unacked. */
  recover(): RecoveryReport<R>;
  append(request: R): Promise<RecordRef>;
  /** Only with a ref this queue returned (append, recover). */
  ack(ref: RecordRef): Promise<void>;
  close(): Promise<void>;
}

/** Whose queue: an exporter's sending queue, or a processor's buffer (tail_sampling's `storage`). */
export type QueueOwner = 'exporter' | 'processor';

/** An extension that can hold exporters' persistent queues (what `sending_queue.storage` names) and processors' buffers. */
export interface QueueStorage {
  /** A queue of batches, or of the requests `codec` writes and reads. */
  openQueue<R = Batch>(componentId: string, logger: Logger, onCorrupt: (n: number) => void, codec?: RecordCodec<R>, owner?: QueueOwner): PersistentQueue<R>;
  /** Where openQueue() keeps that component's queue. */
  directoryFor?(componentId: string, owner?: QueueOwner): string;
}

export function isQueueStorage(component: unknown): component is QueueStorage {
  return typeof (component as Partial<QueueStorage> | undefined)?.openQueue === 'function';
}
