import type { Logger } from 'pino';
import type { Component, Consumer, CreateSettings, DroppedTrace, Host, ProcessorFactory, SamplingRecorder } from '../../component/component';
import { errorMessage, PermanentError, RetryableError } from '../../component/errors';
import { isQueueStorage } from '../../component/storage';
import type { Node } from '../../config/reader';
import type { Attributes } from '../../pdata/attributes';
import { Batch, type ResourceBlock } from '../../pdata/batch';
import { checkDeferredBlock } from '../../pdata/scan';
import { WireFormatError } from '../../pdata/wire';
import { LogThrottle } from '../../util/log-throttle';
import { parseTailSamplingConfig, type TailSamplingConfig } from './config';
import { buildEvaluator, type Clock, type Decision, type Evaluator, type TraceView } from './policies';
import { Fifo } from './fifo';
import { OutputBlock, splitByTrace, StoredBlock, traceKey, type Part } from './trace-data';
import { TraceTable } from './trace-table';
import { ReceivedRecord, tailRecords, TraceStore } from './persist';

// tail_sampling: spans wait, grouped by trace id, for `decision_wait` after their trace's first span;
// then the policies decide and the kept traces go on. Buffered spans stay as received bytes
// (trace-data.ts). Bounded by num_traces and max_buffered_bytes: past either, the oldest undecided
// traces are decided early. See docs/tail-sampling-processor.md.

const PENDING = 0;
/** Decided (its queue entry is dead). */
const GONE = 3;
type TraceState = typeof PENDING | typeof GONE;

/**
 * `traces` maps a trace id to its waiting TraceEntry, then (without a decision cache) to a number,
 * its decision and decision time, until num_traces pushes it out: one map entry per trace for its
 * whole stay (no delete and insert at the decision), and no object per decided trace for the GC to
 * trace. The number is (decision time - epoch, ms) * 2 + 1 if sampled (the time for
 * sampling_late_span_age).
 */
function isSampled(decided: number): boolean {
  return decided % 2 !== 0;
}

interface TraceEntry extends TraceView {
  readonly key: string;
  readonly parts: Part[];
  spanCount: number;
  /** Span bytes, for maximum_trace_size_bytes. */
  bytes: number;
  readonly arrivedAt: number;
  decideAt: number;
  state: TraceState;
  /** Arrival order (shutdown decides the waiting traces oldest first). */
  readonly seq: number;
  /** With storage: the received records holding its spans, in arrival order. */
  records?: ReceivedRecord[];
}

/** What recovery passes to ingest: decisions read back, and which records hold those traces. */
interface Recovery {
  readonly decided: ReadonlyMap<string, boolean>;
  readonly holders: Map<string, ReceivedRecord[]>;
  /** Undecided traces read back. */
  traces: number;
}

interface Policy {
  readonly name: string;
  readonly evaluator: Evaluator;
  readonly isDrop: boolean;
  readonly counts: Record<Decision, { inc(n: number): void }>;
  readonly executions: { inc(n: number): void };
  readonly executionMicros: { inc(n: number): void };
  readonly latency: { observe(v: number): void };
}

/** Trace ids with their decision time, forgetting the least recently used past its size (the Collector's decision caches). */
class LruSet {
  /** Key -> stamp of its latest use and decision time; the queue holds (key, stamp) per use, live while the stamp is current. */
  private readonly entries = new Map<string, { stamp: number; readonly at: number }>();
  private readonly order = new Fifo<{ key: string; stamp: number }>((e) => this.entries.get(e.key)?.stamp === e.stamp);
  private clock = 0;

  constructor(private readonly size: number) {}

  /** The decision time of a cached trace (counts as a use), or undefined. */
  get(key: string): number | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    this.touch(key, entry);
    return entry.at;
  }

  add(key: string, at: number): void {
    const entry = this.entries.get(key) ?? { stamp: 0, at };
    this.entries.set(key, entry);
    this.touch(key, entry);
    while (this.entries.size > this.size) {
      const oldest = this.order.first();
      if (!oldest) break;
      this.order.shift();
      this.entries.delete(oldest.key);
    }
  }

  private touch(key: string, entry: { stamp: number }): void {
    entry.stamp = ++this.clock;
    this.order.push({ key, stamp: entry.stamp });
    this.order.compactAbove(2 * this.size + 1024);
  }
}

/** The Collector's bounds for its decision latency (µs) and decision timer latency (ms) histograms. */
const LATENCY_BOUNDS: readonly number[] = [1, 2, 5, 10, 25, 50, 75, 100, 150, 200, 300, 400, 500, 750, 1000, 2000, 3000, 4000, 5000, 10000, 20000, 30000, 50000];

export interface TailSamplingOptions {
  /** Milliseconds; Date.now by default. Tests pass their own and call tick(). */
  readonly clock?: Clock;
  /** false: no timer; decisions happen only on tick() (tests). */
  readonly timer?: boolean;
}

const DECISIONS: readonly Decision[] = ['sampled', 'not_sampled', 'dropped'];

export class TailSamplingProcessor implements Component, Consumer {
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly useTimer: boolean;
  private readonly policies: Policy[];
  /** Undecided traces, and decisions kept without a decision cache (as the Collector, they hold a num_traces slot). */
  private readonly traces: TraceTable<TraceEntry | number>;
  /** The clock at construction: decision times in `traces` count from it (small integers). */
  private readonly epoch: number;
  private pendingCount = 0;
  private seq = 0;
  private decidedCount = 0;
  /** The undecided traces in arrival order. */
  private readonly arrivals = new Fifo<TraceEntry>((t) => t.state === PENDING);
  /** Traces whose root span moved their decision ahead (decision_wait_after_root_received). */
  private readonly early = new Set<string>();
  /** The trace ids of the kept decisions, in decision order (a decision leaves `traces` only from here). */
  private readonly decidedOrder = new Fifo<string>(() => true);
  private readonly sampledCache: LruSet | undefined;
  private readonly nonSampledCache: LruSet | undefined;
  private bufferedBytes = 0;
  /** Kept spans waiting to go to the next consumer at the end of the current turn. */
  private output = new Map<StoredBlock, OutputBlock>();
  private readonly inFlight = new Set<Promise<void>>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly refusedLog = new LogThrottle();
  private readonly metrics;
  /** Where decisions are shown (the admin API's /api/v1/sampling); undefined in tests without a service. */
  private readonly sampling: SamplingRecorder | undefined;
  private readonly id: string;
  /** The policy that made evaluate()'s last decision: the first that sampled, or the drop policy; null: none. */
  private decidingPolicy: string | null = null;
  /** With `storage`: where received requests are written before they are acknowledged. */
  private store: TraceStore | undefined;
  /** Kept traces of this turn whose records are settled once the next component has their spans. */
  private awaitingOutput: TraceEntry[] = [];
  /** Records with late spans of kept traces in this turn's output: held until the next component has them. */
  private awaitingRecords: ReceivedRecord[] = [];
  private readonly writeFailLog = new LogThrottle();

  constructor(
    settings: CreateSettings,
    private readonly config: TailSamplingConfig,
    private readonly next: Consumer,
    options: TailSamplingOptions = {},
  ) {
    this.logger = settings.logger;
    this.sampling = settings.sampling;
    this.id = settings.id;
    this.clock = options.clock ?? Date.now;
    this.epoch = this.clock();
    // Never holds more than num_traces (undecided plus decisions kept without a cache).
    this.traces = new TraceTable(config.numTraces);
    this.useTimer = options.timer ?? true;
    this.sampledCache = config.sampledCacheSize > 0 ? new LruSet(config.sampledCacheSize) : undefined;
    this.nonSampledCache = config.nonSampledCacheSize > 0 ? new LruSet(config.nonSampledCacheSize) : undefined;
    const t = settings.telemetry;
    const processor = settings.id;
    const prefix = 'otelcol_processor_tail_sampling_';
    const slash = settings.id.indexOf('/');
    const componentName = slash < 0 ? '' : settings.id.slice(slash + 1);
    const decisionLabels = (d: Decision) => ({ sampled: String(d === 'sampled'), decision: d });
    const onOttlError = (err: Error): void => this.logger.warn({ err }, 'tail_sampling: ottl_condition could not evaluate a condition');
    const built = config.policies.map((p): Policy => {
      const policy = componentName ? `${componentName}.${p.name}` : p.name;
      const count = (d: Decision) =>
        t.counter(`${prefix}count_traces_sampled`, 'Count of traces that were sampled or not per sampling policy', { processor, policy, ...decisionLabels(d) });
      return {
        name: p.name,
        evaluator: buildEvaluator(p.policy, this.clock, onOttlError),
        isDrop: p.policy.type === 'drop',
        counts: { sampled: count('sampled'), not_sampled: count('not_sampled'), dropped: count('dropped') },
        executions: t.counter(`${prefix}sampling_policy_execution_count`, 'Total number of executions of a specific sampling policy', { processor, policy }),
        executionMicros: t.counter(`${prefix}sampling_policy_execution_time_sum`, 'Total time spent (in microseconds) executing a specific sampling policy', { processor, policy }),
        latency: t.histogram(`${prefix}sampling_decision_latency`, 'Latency (in microseconds) of a given sampling policy', { processor, policy }, LATENCY_BOUNDS),
      };
    });
    // Drop policies first: a dropped decision wins over every other.
    this.policies = [...built.filter((p) => p.isDrop), ...built.filter((p) => !p.isDrop)];
    const global = Object.fromEntries(
      DECISIONS.map((d) => [d, t.counter(`${prefix}global_count_traces_sampled`, 'Global count of traces that were sampled or not by at least one policy', { processor, ...decisionLabels(d) })]),
    ) as Record<Decision, { inc(n: number): void }>;
    this.metrics = {
      global,
      newTraces: t.counter(`${prefix}new_trace_id_received`, 'Counts the arrival of new traces', { processor }),
      tooEarly: t.counter(`${prefix}sampling_trace_dropped_too_early`, 'Count of traces that needed to be decided before the configured wait time (spansieve decides them on the spans received so far)', { processor }),
      tooLarge: t.counter(`${prefix}traces_dropped_too_large`, 'Count of traces that were dropped because they were too large', { processor }),
      evalErrors: t.counter(`${prefix}sampling_policy_evaluation_error`, 'Count of sampling policy evaluation errors', { processor }),
      onMemory: t.gauge(`${prefix}sampling_traces_on_memory`, 'Tracks the number of traces current on memory', { processor }),
      cacheReleases: {
        true: t.counter(`${prefix}early_releases_from_cache_decision`, 'Number of spans that were able to be immediately released due to a decision cache hit.', { processor, sampled: 'true' }),
        false: t.counter(`${prefix}early_releases_from_cache_decision`, 'Number of spans that were able to be immediately released due to a decision cache hit.', { processor, sampled: 'false' }),
      },
      lateSpans: {
        true: t.counter(`${prefix}late_spans`, 'Spans that arrived after their trace was decided, by that decision (spansieve)', { processor, sampled: 'true' }),
        false: t.counter(`${prefix}late_spans`, 'Spans that arrived after their trace was decided, by that decision (spansieve)', { processor, sampled: 'false' }),
      },
      bufferedBytes: t.gauge(`${prefix}buffered_bytes`, 'Bytes of received resources held for undecided traces (spansieve; bounded by max_buffered_bytes)', { processor }),
      timerLatency: t.histogram(`${prefix}sampling_decision_timer_latency`, 'Latency (in milliseconds) of each run of the sampling decision timer', { processor }, LATENCY_BOUNDS),
      lateSpanAge: t.histogram(`${prefix}sampling_late_span_age`, 'Time (in seconds) from the sampling decision was taken and the arrival of a late span', { processor }),
      writeFailed: t.counter(`${prefix}storage_write_failed_spans`, 'Spans refused because they could not be written to storage (the client retries) (spansieve)', { processor }),
      recovered: t.counter(`${prefix}storage_recovered_traces`, 'Undecided traces read back from storage at start (spansieve)', { processor }),
      corrupt: t.counter(`${prefix}storage_corrupt_records`, 'Records of the storage skipped at start because their checksum or framing was wrong; their data is lost (spansieve)', { processor }),
      refused: t.counter(`${prefix}sampled_spans_refused`, 'Spans of kept traces that the next component refused; lost, as in the Collector (spansieve)', { processor }),
    };
  }

  async start(host?: Host): Promise<void> {
    if (this.config.storage !== undefined) this.recover(host, this.config.storage);
    if (!this.useTimer) return;
    const interval = Math.min(1000, this.config.decisionWaitMs);
    this.timer = setInterval(() => this.tick(), interval);
    this.timer.unref();
  }

  async shutdown(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (!this.stopped) {
      this.stopped = true;
      // As the Collector: the traces still waiting are decided on what arrived, unless asked to drop
      // them; with storage they stay there for the next start.
      const pending: TraceEntry[] = [];
      this.traces.forEach((t) => {
        if (typeof t !== 'number') pending.push(t);
      });
      // Oldest first, as the map's insertion order gave them.
      pending.sort((a, b) => a.seq - b.seq);
      if (this.store && !this.config.dropPendingTracesOnShutdown) {
        if (pending.length > 0) this.logger.info({ traces: pending.length }, 'tail_sampling: undecided traces stay in storage for the next start');
      } else if (this.config.dropPendingTracesOnShutdown) {
        if (pending.length > 0) this.logger.warn(`tail_sampling: ${pending.length} undecided traces dropped at shutdown (drop_pending_traces_on_shutdown)`);
        for (const trace of pending) this.forget(trace);
      } else {
        for (const trace of pending) this.decide(trace);
      }
      this.flush();
    }
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
    await this.store?.close();
    this.store = undefined;
  }

  mayKeep(attributes: Attributes): boolean {
    return this.next.mayKeep?.(attributes) ?? true;
  }

  wouldRefuse(): string | undefined {
    return this.next.wouldRefuse?.();
  }

  /** Accepted batches are buffered; their kept spans reach the next consumer later, so this does not wait for it. */
  consume(batch: Batch): Promise<void> {
    if (this.store) return this.consumeStored(batch, this.store);
    try {
      const now = this.clock();
      for (const block of batch.resources) this.ingest(block.unchecked ? checkedBlock(block) : block, now);
      this.enforceByteLimit();
      this.flush();
      this.updateGauges();
      return DONE;
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
  }

  /**
   * With storage: the request is written first and acknowledged once written (a failed write
   * refuses it, retryably); then buffered as without storage, with its arrival time as written.
   */
  private async consumeStored(batch: Batch, store: TraceStore): Promise<void> {
    const blocks = batch.resources.map((block) => (block.unchecked ? checkedBlock(block) : block));
    if (blocks.length === 0) return;
    const at = this.clock();
    let record: ReceivedRecord;
    try {
      record = await store.append(at, blocks);
    } catch (err) {
      this.metrics.writeFailed.inc(batch.itemCount);
      const left = this.writeFailLog.take();
      if (left !== undefined) this.logger.warn({ err: errorMessage(err), ...(left > 0 ? { similarNotLogged: left } : {}) }, 'tail_sampling: could not write received spans to storage; refusing them (the client retries)');
      throw new RetryableError(`processor ${this.id}: ${errorMessage(err)}`);
    }
    // Shut down meanwhile: the record waits on disk for the next start.
    if (this.stopped) return;
    this.ingestRecord(record, at, blocks);
    this.enforceByteLimit();
    this.flush();
    this.updateGauges();
  }

  private ingestRecord(record: ReceivedRecord, at: number, blocks: readonly ResourceBlock[], recovery?: Recovery): void {
    // Held while its blocks are ingested, so an early decision among them cannot ack it half-way.
    record.open++;
    try {
      for (const block of blocks) this.ingest(block, at, record, recovery);
    } finally {
      record.open--;
      this.store!.release(record);
    }
  }

  /** Opens the storage and buffers what a previous run left undecided, with its arrival times. */
  private recover(host: Host | undefined, id: string): void {
    const storage = host?.extensions?.get(id);
    if (!isQueueStorage(storage)) throw new Error(`storage: extension "${id}" is not running (it must be configured and listed in service::extensions)`);
    const corrupt = this.metrics.corrupt;
    let queue;
    try {
      queue = storage.openQueue(this.id, this.logger, (n) => corrupt.inc(n), tailRecords, 'processor');
    } catch (err) {
      throw new Error(`${errorMessage(err)} (a tail_sampling with storage can be in one pipeline only)`, { cause: err });
    }
    const report = queue.recover();
    const store = new TraceStore(queue, this.logger);
    this.store = store;
    const decided = new Map<string, boolean>();
    for (const { request } of report.records) {
      if (request.kind === 'decisions') request.keys.forEach((key, i) => decided.set(key, request.sampled[i]!));
    }
    const recovery: Recovery = { decided, holders: new Map(), traces: 0 };
    for (const { request, ref } of report.records) {
      if (request.kind !== 'received') continue;
      this.ingestRecord(new ReceivedRecord(ref), request.at, request.blocks, recovery);
      // The bounds hold at start too (they may be lower than the previous run's).
      this.enforceByteLimit();
    }
    for (const { request, ref } of report.records) {
      if (request.kind === 'decisions') store.recoveredDecisions(ref, request.keys.flatMap((key) => recovery.holders.get(key) ?? []));
    }
    // Late spans after the restart follow the decisions still on disk.
    for (const [key, sampled] of decided) if (this.traces.findKey(key) < 0) this.rememberKey(key, sampled);
    const traces = recovery.traces;
    this.metrics.recovered.inc(traces);
    // Traces decided early above (the bounds) go on now.
    this.flush();
    this.updateGauges();
    if (report.records.length > 0 || report.corrupt > 0) {
      this.logger.info(
        { traces, records: report.records.length, decisionsRead: decided.size, corrupt: report.corrupt, tornBytes: report.tornBytes, dir: queue.dir },
        'tail_sampling: buffered the undecided traces the previous run left in storage; their decision_wait counts from their first arrival',
      );
    }
  }

  /** Decides every trace whose wait is over. The timer calls it; tests call it after moving their clock. */
  tick(): void {
    const started = performance.now();
    const now = this.clock();
    const due: TraceEntry[] = [];
    this.arrivals.forEachWhile((trace) => {
      if (trace.arrivedAt + this.config.decisionWaitMs > now) return false;
      due.push(trace);
      return true;
    });
    for (const key of this.early) {
      const slot = this.traces.findKey(key);
      const trace = slot < 0 ? undefined : this.traces.get(slot);
      if (typeof trace === 'object' && trace.decideAt <= now && trace.arrivedAt + this.config.decisionWaitMs > now) due.push(trace);
    }
    for (const trace of due) this.decide(trace);
    // Drops the decided traces from the front of the arrival queue.
    this.arrivals.first();
    this.flush();
    this.updateGauges();
    // Whole milliseconds, as the Collector records it.
    this.metrics.timerLatency.observe(Math.floor(performance.now() - started));
  }

  /** Traces held (undecided, plus decisions kept without a cache), and buffered bytes: for tests and the bench. */
  get stats(): { pending: number; decided: number; bufferedBytes: number } {
    return { pending: this.pendingCount, decided: this.decidedCount, bufferedBytes: this.bufferedBytes };
  }

  private ingest(block: ResourceBlock, now: number, record?: ReceivedRecord, recovery?: Recovery): void {
    const stored = new StoredBlock(block.bytes, block.attributes);
    /** Late spans of a kept trace went to this turn's output: with storage, the record is held until they are handed on. */
    let lateKept = false;
    splitByTrace(block, stored, (part) => {
      const buf = stored.bytes;
      const idAt = part.idAt;
      // The id as a string only where a string-keyed structure needs it (not per span).
      let key: string | undefined;
      if (recovery && recovery.decided.has((key = traceKey(buf, idAt, 16)))) {
        // Decided before the restart (and sent on if kept): only its decision record needs to know where it is.
        const holders = recovery.holders.get(key);
        if (!holders) recovery.holders.set(key, [record!]);
        else if (holders[holders.length - 1] !== record) holders.push(record!);
        return;
      }
      if (this.sampledCache || this.nonSampledCache) key ??= traceKey(buf, idAt, 16);
      const sampledAt = this.sampledCache?.get(key!);
      if (sampledAt !== undefined) {
        this.lateSpanAge(now, sampledAt);
        this.metrics.cacheReleases.true.inc(part.spans);
        this.sampling?.sampled(this.id, part.block.attributes, part.spans, part.spans);
        this.metrics.lateSpans.true.inc(part.spans);
        this.outputFor(stored).add(part);
        lateKept = true;
        return;
      }
      const notSampledAt = this.nonSampledCache?.get(key!);
      if (notSampledAt !== undefined) {
        this.lateSpanAge(now, notSampledAt);
        this.metrics.cacheReleases.false.inc(part.spans);
        this.sampling?.sampled(this.id, part.block.attributes, part.spans, 0);
        this.metrics.lateSpans.false.inc(part.spans);
        return;
      }
      const slot = this.traces.find(buf, idAt);
      const found = slot < 0 ? undefined : this.traces.get(slot);
      if (typeof found === 'number') {
        const sampled = isSampled(found);
        this.lateSpanAge(now, this.decidedAt(found));
        this.metrics.lateSpans[sampled ? 'true' : 'false'].inc(part.spans);
        this.sampling?.sampled(this.id, part.block.attributes, part.spans, sampled ? part.spans : 0);
        if (sampled) {
          this.outputFor(stored).add(part);
          lateKept = true;
        }
        return;
      }
      let trace = found;
      if (!trace) {
        this.makeRoom();
        key ??= traceKey(buf, idAt, 16);
        trace = { key, parts: [], spanCount: 0, bytes: 0, arrivedAt: now, decideAt: now + this.config.decisionWaitMs, state: PENDING, seq: this.seq++ };
        // makeRoom may have moved slots: inserted afresh.
        this.traces.insert(buf, idAt, trace);
        this.pendingCount++;
        this.arrivals.push(trace);
        this.metrics.newTraces.inc(1);
        if (recovery) recovery.traces++;
      }
      trace.parts.push(part);
      trace.spanCount += part.spans;
      trace.bytes += part.bytes;
      stored.refs++;
      if (record) {
        const records = (trace.records ??= []);
        if (records[records.length - 1] !== record) {
          records.push(record);
          record.open++;
        }
      }
      if (part.root && this.config.decisionWaitAfterRootReceivedMs > 0) {
        const at = now + this.config.decisionWaitAfterRootReceivedMs;
        if (at < trace.decideAt) {
          trace.decideAt = at;
          this.early.add(trace.key);
        }
      }
      if (this.config.maximumTraceSizeBytes > 0 && trace.bytes > this.config.maximumTraceSizeBytes) {
        this.metrics.tooLarge.inc(1);
        this.report(trace, false, null, 'larger than maximum_trace_size_bytes');
        this.release(trace);
        this.remember(trace, false);
        this.settle(trace, false);
      }
    });
    if (lateKept && record) {
      // Held until the next component has this turn's output (flush).
      record.open++;
      this.awaitingRecords.push(record);
    }
    if (stored.refs > 0) {
      // A view keeps its whole underlying buffer alive while the trace waits: kept when the block is
      // at least half of it (a request read whole: no copy, the common case), else a private copy.
      // Nothing writes into received bytes. Counted as the memory held: the whole buffer when a view.
      const bytes = block.bytes;
      const held = bytes.buffer.byteLength;
      if (bytes.byteLength * 2 >= held) {
        stored.bytes = bytes;
        stored.held = held;
      } else {
        stored.bytes = Buffer.from(bytes);
        stored.held = bytes.byteLength;
      }
      stored.counted = true;
      this.bufferedBytes += stored.held;
    }
  }

  /** Before a new trace: at num_traces, forget the oldest kept decision, else decide the oldest waiting trace now. */
  private makeRoom(): void {
    while (this.pendingCount + this.decidedCount >= this.config.numTraces) {
      const oldestDecided = this.decidedOrder.first();
      if (oldestDecided) {
        this.decidedOrder.shift();
        const slot = this.traces.findKey(oldestDecided);
        if (slot >= 0) this.traces.delete(slot);
        this.decidedCount--;
        continue;
      }
      const oldest = this.arrivals.first();
      if (!oldest) return;
      this.metrics.tooEarly.inc(1);
      this.decide(oldest);
    }
  }

  private enforceByteLimit(): void {
    while (this.bufferedBytes > this.config.maxBufferedBytes) {
      const oldest = this.arrivals.first();
      if (!oldest) return;
      this.metrics.tooEarly.inc(1);
      this.decide(oldest);
    }
  }

  private decide(trace: TraceEntry): void {
    this.decidingPolicy = null;
    const decision = this.evaluate(trace);
    this.metrics.global[decision].inc(1);
    if (this.sampling) {
      const policy = this.decidingPolicy;
      this.report(trace, decision === 'sampled', policy, decision === 'dropped' ? 'drop policy' : decision === 'sampled' ? 'sampled' : 'no policy sampled');
    }
    if (decision === 'sampled') {
      for (const part of trace.parts) this.outputFor(part.block).add(part);
    }
    this.release(trace);
    this.remember(trace, decision === 'sampled');
    // A kept trace's records wait until the next component has its spans (flush).
    if (decision === 'sampled' && trace.records) this.awaitingOutput.push(trace);
    else this.settle(trace, false);
  }

  /** With storage: the trace no longer needs its records (kept: its spans were handed on). */
  private settle(trace: TraceEntry, sampled: boolean): void {
    const records = trace.records;
    if (!records || !this.store) return;
    trace.records = undefined;
    this.store.settle(trace.key, sampled, records);
  }

  /** The Collector's final decision: dropped wins, then any sampled; errors are counted and skipped. */
  private evaluate(trace: TraceEntry): Decision {
    let sampled = false;
    // One clock read per policy: each one's end is the next one's start.
    let started = performance.now();
    for (const policy of this.policies) {
      let decision: Decision;
      try {
        decision = policy.evaluator.evaluate(trace);
      } catch (err) {
        this.metrics.evalErrors.inc(1);
        this.logger.debug({ err, policy: policy.name }, 'tail_sampling: policy evaluation error');
        continue;
      } finally {
        const ended = performance.now();
        const micros = Math.round((ended - started) * 1000);
        started = ended;
        policy.executions.inc(1);
        policy.executionMicros.inc(micros);
        policy.latency.observe(micros);
      }
      policy.counts[decision].inc(1);
      if (decision === 'dropped') {
        this.decidingPolicy = policy.name;
        return 'dropped';
      }
      if (policy.isDrop) continue;
      if (decision === 'sampled') {
        // As the Collector's recorded policy: the first policy that sampled the trace.
        if (!sampled) this.decidingPolicy = policy.name;
        sampled = true;
        if (this.config.sampleOnFirstMatch) break;
      }
    }
    return sampled ? 'sampled' : 'not_sampled';
  }

  /** Per trace part (one resource's spans of the trace), not per span; a trace not kept goes to the recent list. */
  private report(trace: TraceEntry, kept: boolean, policy: string | null, reason: string): void {
    const sampling = this.sampling;
    if (!sampling) return;
    for (const part of trace.parts) sampling.sampled(this.id, part.block.attributes, part.spans, kept ? part.spans : 0);
    sampling.traceDecided(this.id, policy, kept);
    if (!kept) {
      const name = trace.parts[0]?.block.attributes.get('service.name');
      sampling.dropped(new DroppedRecord(trace.key, typeof name === 'string' ? name : null, this.id, policy, reason));
    }
  }

  /** Once per trace per received resource, as the Collector records it per trace of a batch; whole seconds. */
  private lateSpanAge(now: number, decidedAt: number): void {
    this.metrics.lateSpanAge.observe(Math.max(0, Math.floor((now - decidedAt) / 1000)));
  }

  /** The decision time of a decided trace's number in `traces` (the clock's milliseconds). */
  private decidedAt(decided: number): number {
    return this.epoch + (decided - (isSampled(decided) ? 1 : 0)) / 2;
  }

  /** After release(): the decision replaces the trace's entry in `traces`, or goes to a decision cache and the entry out. */
  private remember(trace: TraceEntry, sampled: boolean): void {
    if (!this.rememberKey(trace.key, sampled)) this.deleteKey(trace.key);
  }

  /** Records a decision; false when it went to a decision cache (then `traces` is not touched). */
  private rememberKey(key: string, sampled: boolean): boolean {
    const at = this.clock();
    const cache = sampled ? this.sampledCache : this.nonSampledCache;
    if (cache) {
      cache.add(key, at);
      return false;
    }
    // The decision and its time in one number: a small integer (no object) for the first ~12 days
    // after the epoch, a heap number past that (correct, a little slower).
    const decided = (at - this.epoch) * 2 + (sampled ? 1 : 0);
    const slot = this.traces.findKey(key);
    if (slot >= 0) this.traces.set(slot, decided);
    else this.traces.insertKey(key, decided);
    this.decidedCount++;
    this.decidedOrder.push(key);
    return true;
  }

  /** Takes the trace's spans out of the buffer (its entry stays until remember() or forget()); blocks no trace holds any more are freed. */
  private release(trace: TraceEntry): void {
    this.pendingCount--;
    trace.state = GONE;
    if (this.early.size > 0) this.early.delete(trace.key);
    for (const part of trace.parts) {
      const block = part.block;
      if (--block.refs === 0 && block.counted) {
        this.bufferedBytes -= block.held;
        block.counted = false;
      }
    }
    // The arrival queue may hold the trace a while longer: not its spans.
    trace.parts.length = 0;
  }

  private deleteKey(key: string): void {
    const slot = this.traces.findKey(key);
    if (slot >= 0) this.traces.delete(slot);
  }

  private forget(trace: TraceEntry): void {
    this.release(trace);
    this.deleteKey(trace.key);
    this.settle(trace, false);
  }

  private outputFor(block: StoredBlock): OutputBlock {
    let out = this.output.get(block);
    if (!out) {
      out = new OutputBlock(block);
      this.output.set(block, out);
    }
    return out;
  }

  /** Sends what was kept this turn as one batch. A refusal loses those spans (counted, logged), as in the Collector. */
  private flush(): void {
    const awaiting = this.awaitingOutput;
    if (awaiting.length > 0) this.awaitingOutput = [];
    const records = this.awaitingRecords;
    if (records.length > 0) this.awaitingRecords = [];
    const settle = (): void => {
      for (const trace of awaiting) this.settle(trace, true);
      for (const record of records) {
        record.open--;
        this.store?.release(record);
      }
    };
    if (this.output.size === 0) {
      settle();
      return;
    }
    const blocks = [...this.output.values()].map((out) => out.encode());
    this.output = new Map();
    const batch = new Batch('traces', blocks);
    // Settled after the next component answered, accepted or refused (then lost, as without storage).
    const sent = this.next.consume(batch).finally(settle).then(
      () => undefined,
      (err: unknown) => {
        this.metrics.refused.inc(batch.itemCount);
        const left = this.refusedLog.take();
        if (left !== undefined) {
          this.logger.warn({ err, spans: batch.itemCount, ...(left > 0 ? { similarNotLogged: left } : {}) }, 'tail_sampling: the next component refused spans of kept traces; they are lost');
        }
      },
    );
    this.inFlight.add(sent);
    void sent.finally(() => this.inFlight.delete(sent));
  }

  private updateGauges(): void {
    this.metrics.onMemory.set(this.pendingCount + this.decidedCount);
    this.metrics.bufferedBytes.set(this.bufferedBytes);
  }
}

const DONE: Promise<void> = Promise.resolve();

/** A sampled-out trace for the admin view; its hex id is made only when shown (most records are overwritten unseen). */
class DroppedRecord implements DroppedTrace {
  constructor(
    private readonly key: string,
    readonly service: string | null,
    readonly processor: string,
    readonly policy: string | null,
    readonly reason: string,
  ) {}

  get traceId(): string {
    return Buffer.from(this.key, 'latin1').toString('hex');
  }
}

function checkedBlock(block: ResourceBlock): ResourceBlock {
  try {
    return checkDeferredBlock('traces', block);
  } catch (err) {
    if (err instanceof WireFormatError) throw new PermanentError(`invalid traces resource: ${err.message}`);
    throw err;
  }
}

export const tailSamplingFactory: ProcessorFactory<TailSamplingConfig> = {
  singleProcess: "a trace's spans arrive over several connections, so several workers would each hold part of a trace and decide on it alone",
  type: 'tail_sampling',
  kind: 'processor',
  signals: ['traces'],
  parseConfig: (node: Node) => parseTailSamplingConfig(node),
  create: (settings, config, _signal, next) => new TailSamplingProcessor(settings, config, next),
};
