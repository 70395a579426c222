import type { Logger } from 'pino';
import type { Component, Consumer, CreateSettings, ProcessorFactory, SamplingRecorder } from '../../component/component';
import { PermanentError } from '../../component/errors';
import type { Node } from '../../config/reader';
import type { Attributes } from '../../pdata/attributes';
import { Batch, type ResourceBlock } from '../../pdata/batch';
import { checkDeferredBlock } from '../../pdata/scan';
import { WireFormatError } from '../../pdata/wire';
import { LogThrottle } from '../../util/log-throttle';
import { parseTailSamplingConfig, type TailSamplingConfig } from './config';
import { buildEvaluator, type Clock, type Decision, type Evaluator, type TraceView } from './policies';
import { Fifo } from './fifo';
import { OutputBlock, splitByTrace, StoredBlock, type Part } from './trace-data';

// tail_sampling: spans wait, grouped by trace id, for `decision_wait` after their trace's first span;
// then the policies decide and the kept traces go on. Buffered spans stay as received bytes
// (trace-data.ts). Bounded by num_traces and max_buffered_bytes: past either, the oldest undecided
// traces are decided early. See docs/tail-sampling-processor.md.

interface PendingTrace extends TraceView {
  readonly key: string;
  readonly parts: Part[];
  spanCount: number;
  /** Span bytes, for maximum_trace_size_bytes. */
  bytes: number;
  readonly arrivedAt: number;
  decideAt: number;
  /** Decided or dropped: no longer in `pending` (its queue entry is dead). */
  done: boolean;
}

interface DecidedTrace {
  readonly key: string;
  readonly sampled: boolean;
}

interface Policy {
  readonly name: string;
  readonly evaluator: Evaluator;
  readonly isDrop: boolean;
  readonly counts: Record<Decision, { inc(n: number): void }>;
  readonly executions: { inc(n: number): void };
  readonly executionMicros: { inc(n: number): void };
}

/** A set of trace ids that forgets the least recently used past its size (the Collector's decision caches). */
class LruSet {
  /** Key -> stamp of its latest use; the queue holds (key, stamp) per use, live while the stamp is current. */
  private readonly stamps = new Map<string, number>();
  private readonly order = new Fifo<{ key: string; stamp: number }>((e) => this.stamps.get(e.key) === e.stamp);
  private clock = 0;

  constructor(private readonly size: number) {}

  has(key: string): boolean {
    if (!this.stamps.has(key)) return false;
    this.touch(key);
    return true;
  }

  add(key: string): void {
    this.touch(key);
    while (this.stamps.size > this.size) {
      const oldest = this.order.first();
      if (!oldest) break;
      this.order.shift();
      this.stamps.delete(oldest.key);
    }
  }

  private touch(key: string): void {
    const stamp = ++this.clock;
    this.stamps.set(key, stamp);
    this.order.push({ key, stamp });
    this.order.compactAbove(2 * this.size + 1024);
  }
}

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
  private readonly pending = new Map<string, PendingTrace>();
  /** The undecided traces in arrival order. */
  private readonly arrivals = new Fifo<PendingTrace>((t) => !t.done);
  /** Traces whose root span moved their decision ahead (decision_wait_after_root_received). */
  private readonly early = new Set<string>();
  /** Decisions kept without a decision cache: as the Collector, they hold a num_traces slot. */
  private readonly decided = new Map<string, DecidedTrace>();
  private readonly decidedOrder = new Fifo<DecidedTrace>((d) => this.decided.get(d.key) === d);
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
      refused: t.counter(`${prefix}sampled_spans_refused`, 'Spans of kept traces that the next component refused; lost, as in the Collector (spansieve)', { processor }),
    };
  }

  async start(): Promise<void> {
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
      // As the Collector: the traces still waiting are decided on what arrived, unless asked to drop them.
      if (this.config.dropPendingTracesOnShutdown) {
        if (this.pending.size > 0) this.logger.warn(`tail_sampling: ${this.pending.size} undecided traces dropped at shutdown (drop_pending_traces_on_shutdown)`);
        for (const trace of [...this.pending.values()]) this.forget(trace);
      } else {
        for (const trace of [...this.pending.values()]) this.decide(trace);
      }
      this.flush();
    }
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  mayKeep(attributes: Attributes): boolean {
    return this.next.mayKeep?.(attributes) ?? true;
  }

  wouldRefuse(): string | undefined {
    return this.next.wouldRefuse?.();
  }

  /** Accepted batches are buffered; their kept spans reach the next consumer later, so this does not wait for it. */
  consume(batch: Batch): Promise<void> {
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

  /** Decides every trace whose wait is over. The timer calls it; tests call it after moving their clock. */
  tick(): void {
    const now = this.clock();
    const due: PendingTrace[] = [];
    this.arrivals.forEachWhile((trace) => {
      if (trace.arrivedAt + this.config.decisionWaitMs > now) return false;
      due.push(trace);
      return true;
    });
    for (const key of this.early) {
      const trace = this.pending.get(key);
      if (trace && trace.decideAt <= now && trace.arrivedAt + this.config.decisionWaitMs > now) due.push(trace);
    }
    for (const trace of due) this.decide(trace);
    // Drops the decided traces from the front of the arrival queue.
    this.arrivals.first();
    this.flush();
    this.updateGauges();
  }

  /** Traces held (undecided, plus decisions kept without a cache), and buffered bytes: for tests and the bench. */
  get stats(): { pending: number; decided: number; bufferedBytes: number } {
    return { pending: this.pending.size, decided: this.decided.size, bufferedBytes: this.bufferedBytes };
  }

  private ingest(block: ResourceBlock, now: number): void {
    const stored = new StoredBlock(block.bytes, block.attributes);
    let late: OutputBlock | undefined;
    splitByTrace(block, stored, (key, part, hasRoot) => {
      if (this.sampledCache?.has(key)) {
        this.metrics.cacheReleases.true.inc(part.spans);
        this.sampling?.sampled(this.id, part.block.attributes, part.spans, part.spans);
        this.metrics.lateSpans.true.inc(part.spans);
        (late ??= new OutputBlock(stored)).add(part);
        return;
      }
      if (this.nonSampledCache?.has(key)) {
        this.metrics.cacheReleases.false.inc(part.spans);
        this.sampling?.sampled(this.id, part.block.attributes, part.spans, 0);
        this.metrics.lateSpans.false.inc(part.spans);
        return;
      }
      const decided = this.decided.get(key);
      if (decided !== undefined) {
        this.metrics.lateSpans[decided.sampled ? 'true' : 'false'].inc(part.spans);
        this.sampling?.sampled(this.id, part.block.attributes, part.spans, decided.sampled ? part.spans : 0);
        if (decided.sampled) (late ??= new OutputBlock(stored)).add(part);
        return;
      }
      let trace = this.pending.get(key);
      if (!trace) {
        this.makeRoom();
        trace = { key, parts: [], spanCount: 0, bytes: 0, arrivedAt: now, decideAt: now + this.config.decisionWaitMs, done: false };
        this.pending.set(key, trace);
        this.arrivals.push(trace);
        this.metrics.newTraces.inc(1);
      }
      trace.parts.push(part);
      trace.spanCount += part.spans;
      trace.bytes += part.bytes;
      stored.refs++;
      if (hasRoot && this.config.decisionWaitAfterRootReceivedMs > 0) {
        const at = now + this.config.decisionWaitAfterRootReceivedMs;
        if (at < trace.decideAt) {
          trace.decideAt = at;
          this.early.add(key);
        }
      }
      if (this.config.maximumTraceSizeBytes > 0 && trace.bytes > this.config.maximumTraceSizeBytes) {
        this.metrics.tooLarge.inc(1);
        this.report(trace, false, null, 'larger than maximum_trace_size_bytes');
        this.release(trace);
        this.remember(key, false);
      }
    });
    if (late) this.queueOutput(late);
    if (stored.refs > 0) {
      // A private copy: a view would keep the whole received request alive while the trace waits.
      stored.bytes = Buffer.from(block.bytes);
      stored.counted = true;
      this.bufferedBytes += stored.bytes.length;
    }
  }

  /** Before a new trace: at num_traces, forget the oldest kept decision, else decide the oldest waiting trace now. */
  private makeRoom(): void {
    while (this.pending.size + this.decided.size >= this.config.numTraces) {
      const oldestDecided = this.decidedOrder.first();
      if (oldestDecided) {
        this.decidedOrder.shift();
        this.decided.delete(oldestDecided.key);
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

  private decide(trace: PendingTrace): void {
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
    this.remember(trace.key, decision === 'sampled');
  }

  /** The Collector's final decision: dropped wins, then any sampled; errors are counted and skipped. */
  private evaluate(trace: PendingTrace): Decision {
    let sampled = false;
    for (const policy of this.policies) {
      const started = performance.now();
      let decision: Decision;
      try {
        decision = policy.evaluator.evaluate(trace);
      } catch (err) {
        this.metrics.evalErrors.inc(1);
        this.logger.debug({ err, policy: policy.name }, 'tail_sampling: policy evaluation error');
        continue;
      } finally {
        policy.executions.inc(1);
        policy.executionMicros.inc(Math.round((performance.now() - started) * 1000));
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
  private report(trace: PendingTrace, kept: boolean, policy: string | null, reason: string): void {
    const sampling = this.sampling;
    if (!sampling) return;
    for (const part of trace.parts) sampling.sampled(this.id, part.block.attributes, part.spans, kept ? part.spans : 0);
    sampling.traceDecided(this.id, policy, kept);
    if (!kept) {
      const name = trace.parts[0]?.block.attributes.get('service.name');
      sampling.dropped({ traceId: Buffer.from(trace.key, 'latin1').toString('hex'), service: typeof name === 'string' ? name : null, processor: this.id, policy, reason });
    }
  }

  private remember(key: string, sampled: boolean): void {
    const cache = sampled ? this.sampledCache : this.nonSampledCache;
    if (cache) cache.add(key);
    else {
      const entry = { key, sampled };
      this.decided.set(key, entry);
      this.decidedOrder.push(entry);
    }
  }

  /** Takes the trace out of the buffer; blocks no trace holds any more are freed. */
  private release(trace: PendingTrace): void {
    this.pending.delete(trace.key);
    trace.done = true;
    this.early.delete(trace.key);
    for (const part of trace.parts) {
      const block = part.block;
      if (--block.refs === 0 && block.counted) {
        this.bufferedBytes -= block.bytes.length;
        block.counted = false;
      }
    }
    // The arrival queue may hold the trace a while longer: not its spans.
    trace.parts.length = 0;
  }

  private forget(trace: PendingTrace): void {
    this.release(trace);
  }

  private outputFor(block: StoredBlock): OutputBlock {
    let out = this.output.get(block);
    if (!out) {
      out = new OutputBlock(block);
      this.output.set(block, out);
    }
    return out;
  }

  private queueOutput(out: OutputBlock): void {
    const existing = this.output.get(out.block);
    if (!existing) this.output.set(out.block, out);
    else for (const [start, scope] of out.scopes) {
      const into = existing.scopes.get(start);
      if (into) into.spans.push(...scope.spans);
      else existing.scopes.set(start, scope);
      existing.spanCount += scope.spans.length / 2;
    }
  }

  /** Sends what was kept this turn as one batch. A refusal loses those spans (counted, logged), as in the Collector. */
  private flush(): void {
    if (this.output.size === 0) return;
    const blocks = [...this.output.values()].map((out) => out.encode());
    this.output = new Map();
    const batch = new Batch('traces', blocks);
    const sent = this.next.consume(batch).then(
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
    this.metrics.onMemory.set(this.pending.size + this.decided.size);
    this.metrics.bufferedBytes.set(this.bufferedBytes);
  }
}

const DONE: Promise<void> = Promise.resolve();

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
