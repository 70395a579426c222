import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { Component, CreateSettings, Host, QueueRequest } from '../../component/component';
import { PermanentError, RetryableError, errorMessage } from '../../component/errors';
import type { Node } from '../../config/reader';
import { Batch, type Signal } from '../../pdata/batch';
import { LogThrottle } from '../../util/log-throttle';
import { batchRecords, isQueueStorage, type PersistentQueue, type RecordCodec, type RecordRef } from '../../component/storage';
import { BEHAVIOUR, nextState, type QueueEvent, type QueueState, type StateBehaviour } from './queue-state';
import { AttemptSignal, type PushSignal } from './attempt-signal';

// What every network exporter shares, as in the Collector's exporterhelper: the exporter only
// implements `push`; timeout, retry with backoff and a bounded sending queue wrap it.

export interface TimeoutConfig {
  readonly timeoutMs: number;
}

export interface RetryConfig {
  readonly enabled: boolean;
  readonly initialIntervalMs: number;
  readonly maxIntervalMs: number;
  /** 0 means retry forever. */
  readonly maxElapsedTimeMs: number;
  readonly multiplier: number;
  readonly randomizationFactor: number;
}

export interface QueueConfig {
  readonly enabled: boolean;
  readonly numConsumers: number;
  /** Capacity, in units of `sizer`. */
  readonly queueSize: number;
  /** What queue_size counts, as in the Collector: requests (batches), items (spans/points) or bytes. */
  readonly sizer: 'requests' | 'items' | 'bytes';
  /** Id of a file_storage extension: the queue is kept on disk there (a persistent queue). */
  readonly storage?: string;
}

export interface HelperConfig {
  readonly timeout: TimeoutConfig;
  readonly retry: RetryConfig;
  readonly queue: QueueConfig;
}

export const HELPER_KEYS = ['timeout', 'retry_on_failure', 'sending_queue'] as const;

/** Reads timeout, retry_on_failure and sending_queue from an exporter's config (keys checked by the caller). */
export function parseHelperConfig(at: (key: string) => Node): HelperConfig {
  const retry = at('retry_on_failure').struct(['enabled', 'initial_interval', 'max_interval', 'max_elapsed_time', 'multiplier', 'randomization_factor']);
  const queue = at('sending_queue').struct(['enabled', 'num_consumers', 'queue_size', 'sizer', 'storage']);
  const interval = (key: string, fallbackMs: number) => {
    const ms = retry(key).duration(fallbackMs);
    if (ms <= 0) retry(key).report('must be greater than 0 (retries would run back to back)');
    return ms;
  };
  return {
    timeout: { timeoutMs: at('timeout').duration(5000) },
    retry: {
      enabled: retry('enabled').boolean(true),
      initialIntervalMs: interval('initial_interval', 5000),
      maxIntervalMs: interval('max_interval', 30_000),
      maxElapsedTimeMs: retry('max_elapsed_time').duration(300_000),
      multiplier: retry('multiplier').number(1.5, 1, 100),
      randomizationFactor: retry('randomization_factor').number(0.5, 0, 1),
    },
    queue: {
      enabled: queue('enabled').boolean(true),
      numConsumers: queue('num_consumers').integer(10, 1, 1000),
      queueSize: queue('queue_size').integer(1000, 1, Number.MAX_SAFE_INTEGER),
      sizer: queue('sizer').oneOf<QueueConfig['sizer']>('requests', ['requests', 'items', 'bytes']),
      ...parseStorage(queue),
    },
  };
}

function parseStorage(queue: (key: string) => Node): { storage?: string } {
  const node = queue('storage');
  if (node.isAbsent) return {};
  const id = node.string('');
  if (!/^file_storage(?:\/[^\s/]+)?$/.test(id)) {
    node.report(`expected the id of a file_storage extension (file_storage or file_storage/<name>), got ${JSON.stringify(node.value)}`);
    return {};
  }
  if (!queue('enabled').boolean(true)) node.report('has no effect with sending_queue.enabled: false (there is no queue to keep)');
  return { storage: id };
}

/** How late a timeout may fire, at most: the sweep interval is a fiftieth of the timeout, capped here. */
const MAX_SWEEP_MS = 100;

/** One attempt: `signal` aborts when its deadline (performance.now(), monotonic) passes or the shutdown deadline does. */
export type PushFn<R extends QueueRequest = Batch> = (request: R, signal: PushSignal) => Promise<void>;

/**
 * What the helper needs to know of the requests it queues, beyond their signal and item count:
 * a Batch for otlp and otlphttp, an exporter's own request otherwise (prometheusremotewrite).
 */
export interface RequestType<R extends QueueRequest> {
  /** Its size for `sizer: bytes`. */
  byteSize(request: R): number;
  /** What the in-memory queue keeps of a request given to consume(). */
  toQueued(request: R): R;
  /** What the persistent queue keeps: a new object per call (the key of its record on disk). */
  toStored(request: R): R;
  /** Whether a request a reload hands over is of this type. */
  accepts(request: QueueRequest): request is R;
  /** How the persistent queue writes and reads it. */
  readonly records: RecordCodec<R>;
}

function batchBytes(batch: Batch): number {
  let bytes = 0;
  for (const block of batch.resources) bytes += block.bytes.length;
  return bytes;
}

/** Batches queued as they came (their blocks stay views into the received request). */
export const batchRequests: RequestType<Batch> = {
  byteSize: batchBytes,
  toQueued: (batch) => batch,
  toStored: ownCopy,
  accepts: (request): request is Batch => request instanceof Batch,
  records: batchRecords,
};

/**
 * Batches whose push sends batch.toRequestBytes() (otlp, otlphttp): built when queuing
 * (Batch.compact), the one copy the push would make anyway.
 */
export const compactedBatchRequests: RequestType<Batch> = { ...batchRequests, toQueued: (batch) => batch.compact() };

interface SignalCounters {
  sent: { inc(n: number): void };
  failed: { inc(n: number): void };
  enqueueFailed: { inc(n: number): void };
}

/**
 * The batch as the persistent queue keeps it: compacted into its own buffer, and always a new
 * object, since a batch already compacted (queued by this exporter before) needs its own identity
 * as a key of the on-disk references.
 */
function ownCopy(batch: Batch): Batch {
  const compact = batch.compact();
  return compact === batch ? new Batch(batch.signal, batch.resources) : compact;
}

/** The states a shutdown, a release or an abandon waits for: the queue is stopped. */
const STOPPED: readonly QueueState[] = ['drained', 'handedOver', 'abandoned'];

/** Per exporter id, the directory a released persistent queue left unsent batches in (for a reload's successor). */
const leftOnDisk = new Map<string, string>();

export class ExporterHelper<R extends QueueRequest = Batch> implements Component {
  private readonly queue: R[] = [];
  /** Size of what is queued, in `sizer` units. */
  private queued = 0;
  private readonly counters = new Map<Signal, SignalCounters>();
  private readonly queueSizeGauge: { set(n: number): void };
  private readonly logger: Logger;
  private activeWorkers = 0;
  /** Where the queue is in its life (queue-state.ts); changed only by transition(). */
  private state: QueueState = 'running';
  /** BEHAVIOUR[state], kept at hand for the hot path. */
  private does: StateBehaviour = BEHAVIOUR.running;
  /** Calls waiting for the queue to reach one of `states` (a shutdown for the end of the drain, ...). */
  private readonly stateWaiters: { readonly states: readonly QueueState[]; readonly resolve: () => void }[] = [];
  /** Batches a release or abandon took from their workers before their next attempt. */
  private readonly released: R[] = [];
  /** Resolve early the backoff sleeps of batches waiting for their next attempt. */
  private readonly wakeSleepers = new Set<() => void>();
  /** A hand-over or abandon waiting for the workers' attempts in flight to end. */
  private readonly workerWaiters: (() => void)[] = [];
  /** Attempts with a deadline, for sweepDeadlines(). */
  private readonly inFlight = new Set<AttemptSignal>();
  private sweeper: NodeJS.Timeout | undefined;
  /** The persistent queue (sending_queue.storage); undefined: in memory only. */
  private store: PersistentQueue<R> | undefined;
  /** Where each queued or in-flight request of the persistent queue is on disk, to acknowledge it once sent. */
  private readonly refs = new Map<R, RecordRef>();
  /** Persistent appends being written (their size is already in `queued`). */
  private writing = 0;
  private readonly writeWaiters: (() => void)[] = [];
  /** Failed writes since the last successful one. */
  private writeFailures = 0;
  private writeFailureLog = new LogThrottle();

  constructor(
    private readonly settings: CreateSettings,
    private readonly config: HelperConfig,
    private readonly push: PushFn<R>,
    private readonly requests: RequestType<R> = batchRequests as unknown as RequestType<R>,
  ) {
    this.logger = settings.logger;
    const labels = { exporter: settings.id };
    const unit = config.queue.sizer === 'requests' ? 'batches' : config.queue.sizer;
    this.queueSizeGauge = settings.telemetry.gauge('otelcol_exporter_queue_size', 'Current size of the sending queue (in queue_size units)', labels);
    settings.telemetry
      .gauge('otelcol_exporter_queue_capacity', `Fixed capacity of the sending queue (in queue_size units; here ${unit})`, labels)
      .set(config.queue.enabled ? config.queue.queueSize : 0);
  }

  /** With sending_queue.storage: opens the persistent queue and queues what a previous run left, ahead of anything new. */
  async start(host?: Host): Promise<void> {
    const id = this.config.queue.storage;
    if (id === undefined || !this.config.queue.enabled) {
      this.warnStranded(undefined);
      return;
    }
    const storage = host?.extensions?.get(id);
    if (!isQueueStorage(storage)) throw new Error(`sending_queue.storage: extension "${id}" is not running (it must be configured and listed in service::extensions)`);
    const corrupt = this.settings.telemetry.counter(
      'otelcol_exporter_queue_corrupt_records',
      'Records of the persistent sending queue skipped at start-up because their checksum or framing was wrong (their data is lost)',
      { exporter: this.settings.id },
    );
    this.warnStranded(storage.directoryFor?.(this.settings.id));
    const store = storage.openQueue(this.settings.id, this.logger, (n) => corrupt.inc(n), this.requests.records);
    const recovered = store.recover();
    this.store = store;
    leftOnDisk.delete(this.settings.id);
    if (recovered.records.length === 0) return;
    let items = 0;
    for (const { request, ref } of recovered.records) {
      this.refs.set(request, ref);
      this.queue.push(request);
      this.queued += this.sizeOf(request);
      items += request.itemCount;
    }
    this.queueSizeGauge.set(this.queued);
    this.logger.info(
      { batches: recovered.records.length, items, corrupt: recovered.corrupt, tornBytes: recovered.tornBytes, segments: recovered.segments },
      'persistent queue: sending what the previous run left, ahead of new data',
    );
    this.pump();
  }

  async consume(batch: R): Promise<void> {
    const counters = this.countersFor(batch.signal);
    if (!this.does.takesBatches) {
      counters.enqueueFailed.inc(batch.itemCount);
      throw new RetryableError(this.shuttingDownMessage());
    }
    if (!this.config.queue.enabled) {
      await this.sendWithRetry(batch);
      return;
    }
    if (this.store) return this.consumePersistent(batch, this.store, counters);
    const size = this.sizeOf(batch);
    if (!this.hasRoomFor(size)) {
      counters.enqueueFailed.inc(batch.itemCount);
      throw new RetryableError(this.queueFullMessage());
    }
    this.queue.push(this.requests.toQueued(batch));
    this.queued += size;
    this.queueSizeGauge.set(this.queued);
    this.pump();
  }

  /**
   * Resolves once the batch is written to the persistent queue (as durably as file_storage's
   * `fsync` says), so the receiver acknowledges only what a crash cannot lose. A failed write
   * (disk full, I/O error) refuses the batch with a retryable error: the client keeps it.
   */
  private async consumePersistent(batch: R, store: PersistentQueue<R>, counters: SignalCounters): Promise<void> {
    const size = this.sizeOf(batch);
    if (!this.hasRoomFor(size)) {
      counters.enqueueFailed.inc(batch.itemCount);
      throw new RetryableError(this.queueFullMessage());
    }
    const stored = this.requests.toStored(batch);
    this.queued += size;
    this.writing++;
    let ref: RecordRef;
    try {
      ref = await store.append(stored);
    } catch (err) {
      this.queued -= size;
      this.writeDone();
      counters.enqueueFailed.inc(batch.itemCount);
      this.logWriteFailure(err);
      throw new RetryableError(`exporter ${this.settings.id}: ${errorMessage(err)}`);
    } finally {
      this.queueSizeGauge.set(this.queued);
    }
    this.writeDone();
    if (this.writeFailures > 0) {
      this.logger.info({ failedWrites: this.writeFailures }, 'persistent queue: writing again after failed writes');
      this.writeFailures = 0;
      // The next failure is logged at once.
      this.writeFailureLog = new LogThrottle();
    }
    this.refs.set(stored, ref);
    this.queue.push(stored);
    this.pump();
  }

  private writeDone(): void {
    this.writing--;
    if (this.writing === 0) for (const resolve of this.writeWaiters.splice(0)) resolve();
  }

  /** A reload moved this exporter off the storage its predecessor left batches in: say where they are. */
  private warnStranded(directory: string | undefined): void {
    const left = leftOnDisk.get(this.settings.id);
    if (left === undefined || left === directory) return;
    leftOnDisk.delete(this.settings.id);
    this.logger.warn(
      { directory: left },
      'persistent queue: the previous configuration left unsent batches on disk in a storage this exporter no longer uses; they are sent only when an exporter with this id uses that storage again',
    );
  }

  /**
   * Batches a predecessor without a persistent queue released: written to disk before they are
   * queued, so that a crash does not lose them. One that cannot be written is queued in memory.
   */
  private async adoptPersistent(batches: readonly R[], store: PersistentQueue<R>): Promise<void> {
    const stored = batches.map((batch) => this.requests.toStored(batch));
    for (const batch of stored) this.queued += this.sizeOf(batch);
    this.writing++;
    const written = await Promise.allSettled(stored.map((batch) => store.append(batch)));
    let failed = 0;
    written.forEach((result, i) => {
      if (result.status === 'fulfilled') this.refs.set(stored[i]!, result.value);
      else failed++;
    });
    if (failed > 0) this.logger.warn({ batches: failed }, 'persistent queue: could not write batches taken over from the previous configuration; they are kept in memory only');
    this.queue.unshift(...stored);
    this.queueSizeGauge.set(this.queued);
    this.writeDone();
    this.logger.info({ batches: batches.length }, 'took over the sending queue of the previous configuration');
    this.pump();
  }

  /** One line at the first failure, then at most one every 10 s while writes keep failing. */
  private logWriteFailure(err: unknown): void {
    this.writeFailures++;
    if (this.writeFailureLog.take() === undefined) return;
    this.logger.error({ err: errorMessage(err), failedWrites: this.writeFailures }, 'persistent queue: write failed; refusing new data (retryable) until writes succeed');
  }

  /** A persistent batch left the queue: sent or given up on (`done`), or set aside by a release (stays on disk). */
  private async settle(batch: R, done: boolean): Promise<void> {
    const ref = this.refs.get(batch);
    if (ref === undefined || !done) return;
    this.refs.delete(batch);
    await this.store?.ack(ref);
  }

  /**
   * Refuses before a batch exists only when no batch could be queued: not even the smallest (size
   * 1 in every sizer). With room left, a batch too large for it is refused by consume(), once its
   * size is known.
   */
  wouldRefuse(): string | undefined {
    if (!this.does.takesBatches) return this.shuttingDownMessage();
    if (!this.config.queue.enabled) return undefined;
    return this.hasRoomFor(1) ? undefined : this.queueFullMessage();
  }

  /**
   * Stops accepting batches and waits until every queued batch was sent or given up on (in
   * memory), or until the attempts in flight ended (persistent: the rest stays on disk).
   */
  async shutdown(): Promise<void> {
    if (this.store) {
      // Persistent: no drain. What is unsent stays on disk for the next start.
      const unsaved = await this.releaseQueue();
      if (unsaved.length > 0) this.drop(unsaved, 'shutdown: dropping batches that were never written to the persistent queue');
      return;
    }
    const from = this.state;
    this.transition('drain');
    if (from === 'running' && this.state === 'draining') {
      if (this.queue.length > 0 || this.activeWorkers > 0) this.logger.info({ queued: this.queue.length }, 'draining the sending queue before shutdown');
      this.drainedIfIdle();
    }
    // A drain in progress ends drained, or abandoned by the deadline.
    await this.until(STOPPED);
  }

  /**
   * For a reload that keeps this exporter: stops taking batches, lets attempts in flight finish
   * (a success counts as sent), and returns every batch not sent, queued or waiting for a retry,
   * uncounted, for the same exporter of the new configuration to adopt. Batches of callers that
   * wait (no sending queue) are refused to those callers instead, who still hold them.
   */
  async releaseQueue(): Promise<R[]> {
    this.transition('release');
    // The shutdown deadline abandoned this queue first: it dropped what there was.
    if (this.state !== 'handingOver') {
      await this.until(STOPPED);
      return [];
    }
    await this.workersIdle();
    const batches = [...this.released.splice(0), ...this.queue.splice(0)];
    this.queued = 0;
    this.queueSizeGauge.set(0);
    const store = this.store;
    if (!store) {
      this.transition('done');
      return batches;
    }
    // Persistent batches stay on disk, for whoever opens this exporter's queue next (the
    // successor of a reload, or the next start); only batches never written are handed over.
    this.store = undefined;
    if (this.writing > 0) await new Promise<void>((resolve) => this.writeWaiters.push(resolve));
    // Queued while the release waited (written, or adopted and not writable).
    const all = [...batches, ...this.queue.splice(0)];
    this.queued = 0;
    this.queueSizeGauge.set(0);
    try {
      await store.close();
    } finally {
      this.transition('done');
    }
    const unsaved = all.filter((batch) => !this.refs.has(batch));
    const kept = all.length - unsaved.length;
    this.refs.clear();
    if (kept > 0) {
      leftOnDisk.set(this.settings.id, store.dir);
      this.logger.info({ batches: kept, directory: store.dir }, 'persistent queue: unsent batches stay on disk; they are sent at the next start');
    }
    return unsaved;
  }

  /** Counts as failed and logs requests this exporter cannot keep (in memory only at a persistent shutdown, or not its type). */
  private drop(batches: readonly QueueRequest[], message: string): void {
    let items = 0;
    for (const batch of batches) {
      this.countersFor(batch.signal).failed.inc(batch.itemCount);
      items += batch.itemCount;
    }
    this.logger.error({ batches: batches.length, items }, message);
  }

  /**
   * The first step of releaseQueue(), taken before the receivers stop: batches waiting for a retry
   * stop waiting (queued ones are set aside for the successor; a caller waiting on its own batch
   * gets a retryable refusal), so that no receiver request stays blocked in a backoff while the
   * reload waits for it. New batches are still taken, and queued for the successor.
   */
  prepareRelease(): void {
    this.transition('prepareRelease');
  }

  /**
   * The shutdown deadline passed: aborts attempts in flight, stops retrying, and drops what is
   * left, counted as failed and logged with its size, so that a process about to be killed does
   * not lose it silently. A drain in progress (shutdown()) then returns.
   */
  async abandonQueue(): Promise<void> {
    if (this.store || this.refs.size > 0) {
      // Persistent: aborting the attempts in flight ends the shutdown; nothing is dropped.
      if (this.state === 'running' || this.state === 'releasing') this.transition('prepareRelease');
      this.abortAttempts();
      return;
    }
    const from = this.state;
    this.transition('abandon');
    this.abortAttempts();
    if (from === 'abandoning' || this.state === 'handingOver') {
      // Another abandon, or a hand-over, is under way: its end is this one's.
      await this.until(STOPPED);
      return;
    }
    if (this.state !== 'abandoning') return;
    await this.workersIdle();
    const dropped = [...this.released.splice(0), ...this.queue.splice(0)];
    this.queued = 0;
    this.queueSizeGauge.set(0);
    if (dropped.length > 0) this.drop(dropped, 'shutdown deadline passed: dropping what the exporter has not sent');
    this.transition('done');
  }

  /** Takes over requests released by this exporter's predecessor: ahead of new ones, whatever the capacity (they were accepted). */
  adoptQueue(handedOver: readonly QueueRequest[]): void {
    try {
      this.transition('adopt');
    } catch (err) {
      if (handedOver.length > 0) this.drop(handedOver, 'dropping the queue of the previous configuration: this exporter is stopped');
      throw err;
    }
    const batches = handedOver.filter((request) => this.requests.accepts(request));
    // Same id means same exporter type, so this does not happen; if it did, it is not silent.
    if (batches.length < handedOver.length) {
      this.drop(
        handedOver.filter((request) => !this.requests.accepts(request)),
        'dropping queued requests of the previous configuration that this exporter cannot send',
      );
    }
    if (batches.length === 0) return;
    if (this.store) {
      void this.adoptPersistent(batches, this.store);
      return;
    }
    this.queue.unshift(...batches);
    for (const batch of batches) this.queued += this.sizeOf(batch);
    this.queueSizeGauge.set(this.queued);
    this.logger.info({ batches: batches.length }, 'took over the sending queue of the previous configuration');
    this.pump();
  }

  /** The queue's state (for tests and diagnostics). */
  get lifecycleState(): QueueState {
    return this.state;
  }

  /**
   * The one place the state changes: nextState() checks the transition against the table (an
   * illegal one throws); leaving the sending states cuts short every backoff wait; waiters for
   * the new state are released.
   */
  private transition(event: QueueEvent): void {
    const next = nextState(this.state, event, this.settings.id);
    if (next === this.state) return;
    const wasSending = this.does.sends;
    this.state = next;
    this.does = BEHAVIOUR[next];
    if (wasSending && !this.does.sends) for (const wake of this.wakeSleepers) wake();
    for (let i = this.stateWaiters.length - 1; i >= 0; i--) {
      const waiter = this.stateWaiters[i]!;
      if (!waiter.states.includes(next)) continue;
      this.stateWaiters.splice(i, 1);
      waiter.resolve();
    }
  }

  /** Resolves once the queue is in one of `states` (at once if it is). */
  private until(states: readonly QueueState[]): Promise<void> {
    if (states.includes(this.state)) return Promise.resolve();
    return new Promise((resolve) => this.stateWaiters.push({ states, resolve }));
  }

  /** Resolves once no worker has an attempt in flight. */
  private workersIdle(): Promise<void> {
    if (this.activeWorkers === 0) return Promise.resolve();
    return new Promise((resolve) => this.workerWaiters.push(resolve));
  }

  private abortAttempts(): void {
    for (const attempt of this.inFlight) attempt.abort(new RetryableError('the shutdown deadline passed'));
  }

  /** A drain ends when nothing is queued and no worker sends. */
  private drainedIfIdle(): void {
    if (this.state === 'draining' && this.activeWorkers === 0 && this.queue.length === 0) this.transition('done');
  }

  get queueLength(): number {
    return this.queue.length;
  }

  private pump(): void {
    while (this.does.sends && this.activeWorkers < this.config.queue.numConsumers && this.queue.length > 0) {
      const batch = this.queue.shift()!;
      this.queued -= this.sizeOf(batch);
      this.queueSizeGauge.set(this.queued);
      this.activeWorkers++;
      // Already counted and logged: a queued batch has no caller to return the error to. A
      // persistent one is acknowledged before its worker takes the next, so that after a crash
      // at most num_consumers batches are sent twice.
      const sending = this.sendWithRetry(batch, true);
      if (this.store) {
        void sending
          .catch(() => true)
          .then((done) => this.settle(batch, done))
          .finally(this.workerDone);
      } else {
        // In memory: nothing to settle; one callback for either outcome, no promise chain per batch.
        void sending.then(this.workerDone, this.workerDone);
      }
    }
  }

  /** A worker's batch is done with (sent, given up on or set aside): its slot takes the next. */
  private readonly workerDone = (): void => {
    this.activeWorkers--;
    this.pump();
    this.notifyIdle();
  };

  private notifyIdle(): void {
    if (this.activeWorkers !== 0) return;
    for (const resolve of this.workerWaiters.splice(0)) resolve();
    this.drainedIfIdle();
  }

  /** True when the batch is done with (sent, or given up on); false when a release set it aside. */
  private async sendWithRetry(batch: R, queued = false): Promise<boolean> {
    const counters = this.countersFor(batch.signal);
    const retry = this.config.retry;
    const startedAt = performance.now();
    let interval = retry.initialIntervalMs;
    for (let attempt = 1; ; attempt++) {
      if (attempt > 1 && !this.does.sends) {
        if (queued) {
          this.released.push(batch);
          return false;
        }
        counters.enqueueFailed.inc(batch.itemCount);
        throw new RetryableError(this.shuttingDownMessage());
      }
      try {
        await this.pushWithTimeout(batch);
        counters.sent.inc(batch.itemCount);
        return true;
      } catch (err) {
        const permanent = err instanceof PermanentError;
        // Released during this attempt: no backoff, the loop hands the batch over. A persistent
        // batch (acknowledged to its client, on disk) stays on disk even without retries: the
        // release (or the shutdown deadline) cut its attempt short, the backend did not refuse it.
        if (!permanent && !this.does.sends && (retry.enabled || (queued && this.refs.has(batch)))) continue;
        let delay = err instanceof RetryableError && err.retryAfterMs !== undefined ? err.retryAfterMs : jitter(interval, retry.randomizationFactor);
        const elapsed = performance.now() - startedAt;
        const outOfTime = retry.maxElapsedTimeMs > 0 && elapsed + delay > retry.maxElapsedTimeMs;
        if (permanent || !retry.enabled || outOfTime) {
          counters.failed.inc(batch.itemCount);
          this.logger.error(
            { err: errorMessage(err), items: batch.itemCount, signal: batch.signal, attempts: attempt, permanent },
            permanent ? 'export failed with a permanent error; dropping the data' : 'export failed and retries are exhausted; dropping the data',
          );
          throw err;
        }
        this.logger.warn({ err: errorMessage(err), attempt, retryInMs: Math.round(delay) }, 'export failed; will retry');
        delay = Math.max(0, delay);
        await this.sleep(delay);
        interval = Math.min(interval * retry.multiplier, retry.maxIntervalMs);
      }
    }
  }

  private async pushWithTimeout(batch: R): Promise<void> {
    const timeoutMs = this.config.timeout.timeoutMs;
    // Attempts without a deadline are tracked too, so that abandonQueue() can abort them.
    const attempt = new AttemptSignal(timeoutMs > 0 ? performance.now() + timeoutMs : Infinity);
    this.inFlight.add(attempt);
    if (timeoutMs > 0) this.sweepDeadlines();
    try {
      return await this.push(batch, attempt);
    } catch (err) {
      if (attempt.aborted) throw attempt.reason;
      throw err;
    } finally {
      this.inFlight.delete(attempt);
    }
  }

  /**
   * Aborts attempts past their deadline. One coarse timer for all attempts instead of a timer
   * each: arming and clearing a timer per call was a measurable share of an export's CPU. It
   * stops itself when a tick finds nothing in flight, so it holds the process open no longer
   * than a timer per attempt did.
   */
  private sweepDeadlines(): void {
    if (this.sweeper) return;
    const tickMs = Math.min(MAX_SWEEP_MS, Math.max(1, Math.ceil(this.config.timeout.timeoutMs / 50)));
    this.sweeper = setInterval(() => {
      if (this.inFlight.size === 0) {
        clearInterval(this.sweeper);
        this.sweeper = undefined;
        return;
      }
      const now = performance.now();
      for (const attempt of this.inFlight) {
        if (attempt.deadline > now) continue;
        this.inFlight.delete(attempt);
        attempt.abort(new RetryableError(`export timed out after ${this.config.timeout.timeoutMs}ms`));
      }
    }, tickMs);
  }

  /** An empty queue takes any one batch, so a batch larger than the whole queue is not refused forever. */
  private hasRoomFor(size: number): boolean {
    return (this.queue.length === 0 && this.writing === 0) || this.queued + size <= this.config.queue.queueSize;
  }

  private shuttingDownMessage(): string {
    return `exporter ${this.settings.id} is shutting down`;
  }

  private queueFullMessage(): string {
    const unit = this.config.queue.sizer === 'requests' ? 'batches' : this.config.queue.sizer;
    return `sending queue of exporter ${this.settings.id} is full (${this.config.queue.queueSize} ${unit})`;
  }

  private sizeOf(batch: R): number {
    switch (this.config.queue.sizer) {
      case 'requests':
        return 1;
      case 'items':
        return batch.itemCount;
      case 'bytes':
        return this.requests.byteSize(batch);
    }
  }

  /** A backoff wait that leaving the sending states (transition()) cuts short. */
  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.wakeSleepers.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.wakeSleepers.add(wake);
    });
  }

  private countersFor(signal: Signal): SignalCounters {
    let counters = this.counters.get(signal);
    if (!counters) {
      const labels = { exporter: this.settings.id };
      const t = this.settings.telemetry;
      counters = {
        sent: t.signalCounter('exporter_sent', signal, 'Number of items successfully sent to destination', labels),
        failed: t.signalCounter('exporter_send_failed', signal, 'Number of items the exporter failed to send and dropped', labels),
        enqueueFailed: t.signalCounter('exporter_enqueue_failed', signal, 'Number of items refused because the sending queue was full', labels),
      };
      this.counters.set(signal, counters);
    }
    return counters;
  }
}

function jitter(interval: number, factor: number): number {
  const delta = interval * factor;
  return interval - delta + Math.random() * 2 * delta;
}
