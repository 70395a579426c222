import type { Logger } from 'pino';
import type { Component, ComponentStatusEvent, Consumer, CreateSettings, ProcessorFactory } from '../../component/component';
import { RetryableError } from '../../component/errors';
import type { Node } from '../../config/reader';
import type { Attributes } from '../../pdata/attributes';
import type { Batch, Signal } from '../../pdata/batch';
import { forceGc, liveMemory, totalMemory, type MemoryReader } from './memory';

// The Collector's memory_limiter: memory is sampled every check_interval; above the soft limit
// (limit - spike) every batch is refused with a retryable error, and receivers refuse requests
// before reading them (wouldRefuse); above the soft limit a GC is forced now and then, above the
// hard limit more often. See docs/memory-limiter-processor.md.

const MIB = 1024 * 1024;
/** A forced GC that frees less than this fraction did not help (the Collector's 5 %). */
const GC_EFFECTIVE_FRACTION = 0.05;

export interface MemoryLimiterConfig {
  readonly checkIntervalMs: number;
  readonly limitMib: number;
  readonly spikeLimitMib: number;
  readonly limitPercentage: number;
  readonly spikeLimitPercentage: number;
  readonly minGcIntervalWhenSoftLimitedMs: number;
  readonly minGcIntervalWhenHardLimitedMs: number;
  readonly maxGcIntervalWhenSoftLimitedMs: number;
  readonly maxGcIntervalWhenHardLimitedMs: number;
}

export const MEMORY_LIMITER_KEYS = [
  'check_interval',
  'limit_mib',
  'spike_limit_mib',
  'limit_percentage',
  'spike_limit_percentage',
  'min_gc_interval_when_soft_limited',
  'min_gc_interval_when_hard_limited',
  'max_gc_interval_when_soft_limited',
  'max_gc_interval_when_hard_limited',
] as const;

/** Defaults and rules as in the Collector's memorylimiter Config.Validate; each problem under its key. */
export function parseMemoryLimiterConfig(node: Node): MemoryLimiterConfig {
  const at = node.struct(MEMORY_LIMITER_KEYS);
  const checkIntervalMs = at('check_interval').duration(0);
  if (checkIntervalMs <= 0 && !hasError(node, 'check_interval')) {
    at('check_interval').report(at('check_interval').isAbsent ? 'is required: how often memory is measured (1s is usual)' : 'must be greater than 0');
  }
  const limitMib = at('limit_mib').integer(0, 0, 4_294_967_295);
  const spikeLimitMib = at('spike_limit_mib').integer(0, 0, 4_294_967_295);
  const limitPercentage = at('limit_percentage').integer(0, 0, 100);
  const spikeLimitPercentage = at('spike_limit_percentage').integer(0, 0, 100);
  if (limitMib === 0 && limitPercentage === 0 && !hasError(node, 'limit_mib') && !hasError(node, 'limit_percentage')) {
    node.report('limit_mib or limit_percentage must be greater than 0');
  }
  if (limitMib > 0 && spikeLimitMib >= limitMib) at('spike_limit_mib').report(`must be smaller than limit_mib (${limitMib}), got ${spikeLimitMib}`);
  if (limitPercentage > 0 && spikeLimitPercentage >= limitPercentage) {
    at('spike_limit_percentage').report(`must be smaller than limit_percentage (${limitPercentage}), got ${spikeLimitPercentage}`);
  }
  const minSoft = at('min_gc_interval_when_soft_limited').duration(10_000);
  const minHard = at('min_gc_interval_when_hard_limited').duration(0);
  const maxSoft = at('max_gc_interval_when_soft_limited').duration(30_000);
  const maxHard = at('max_gc_interval_when_hard_limited').duration(30_000);
  if (minSoft < minHard) at('min_gc_interval_when_soft_limited').report('must not be smaller than min_gc_interval_when_hard_limited');
  if (maxSoft > 0 && maxSoft < minSoft) at('max_gc_interval_when_soft_limited').report('must not be smaller than min_gc_interval_when_soft_limited (or 0: no backoff)');
  if (maxHard > 0 && maxHard < minHard) at('max_gc_interval_when_hard_limited').report('must not be smaller than min_gc_interval_when_hard_limited (or 0: no backoff)');
  if (maxSoft > 0 && maxHard > 0 && maxSoft < maxHard) at('max_gc_interval_when_soft_limited').report('must not be smaller than max_gc_interval_when_hard_limited');
  return {
    checkIntervalMs,
    limitMib,
    spikeLimitMib,
    limitPercentage,
    spikeLimitPercentage,
    minGcIntervalWhenSoftLimitedMs: minSoft,
    minGcIntervalWhenHardLimitedMs: minHard,
    maxGcIntervalWhenSoftLimitedMs: maxSoft,
    maxGcIntervalWhenHardLimitedMs: maxHard,
  };
}

function hasError(node: Node, key: string): boolean {
  const prefix = `${node.path ? `${node.path}::` : ''}${key}: `;
  return node.issues.errors.some((e) => e.startsWith(prefix));
}

export interface MemoryLimits {
  readonly hardBytes: number;
  readonly softBytes: number;
}

/** The limits in bytes: limit_mib wins over limit_percentage; an unset spike is 20 % of the limit. */
export function resolveLimits(config: MemoryLimiterConfig, total: () => number = () => totalMemory().bytes): MemoryLimits {
  let hard: number;
  let spike: number;
  if (config.limitMib > 0) {
    hard = config.limitMib * MIB;
    spike = config.spikeLimitMib * MIB;
  } else {
    const bytes = total();
    hard = Math.floor((bytes * config.limitPercentage) / 100);
    spike = Math.floor((bytes * config.spikeLimitPercentage) / 100);
  }
  if (spike === 0) spike = Math.floor(hard / 5);
  return { hardBytes: hard, softBytes: hard - spike };
}

export interface LimiterDeps {
  readonly readMemory: MemoryReader;
  readonly gc: () => void;
  readonly now: () => number;
}

const DEFAULT_DEPS: LimiterDeps = { readMemory: liveMemory, gc: forceGc, now: () => performance.now() };

/**
 * The decision, shared by every pipeline's instance of one memory_limiter id (as in the Collector):
 * one timer, one reading per check_interval, one `refusing` flag read by every request.
 */
export class MemoryLimiter {
  private refusingNow = false;
  private users = 0;
  private timer: NodeJS.Timeout | undefined;
  private lastGcAt: number;
  /** Memory when the last forced GC ran, until the next check tells whether it helped. */
  private beforeGc: number | undefined;
  private softGcIntervalMs = 0;
  private hardGcIntervalMs = 0;
  readonly reason: string;

  constructor(
    id: string,
    private readonly config: MemoryLimiterConfig,
    readonly limits: MemoryLimits,
    private readonly logger: Logger,
    private readonly deps: LimiterDeps = DEFAULT_DEPS,
    /** Status events on each change between accepting and refusing (health_check's component_health). */
    private readonly reportStatus: (event: ComponentStatusEvent) => void = () => undefined,
  ) {
    this.lastGcAt = deps.now();
    this.reason = `memory usage is above the soft limit of ${id} (${mib(limits.softBytes)} MiB)`;
  }

  get refusing(): boolean {
    return this.refusingNow;
  }

  /** Starts sampling when the first instance starts. */
  acquire(): void {
    if (this.users++ > 0) return;
    this.logger.info(
      { limitMib: mib(this.limits.hardBytes), softLimitMib: mib(this.limits.softBytes), checkInterval: this.config.checkIntervalMs },
      'memory limiter configured',
    );
    this.check();
    // Unref'd: the sampling alone never keeps the process alive.
    this.timer = setInterval(() => this.check(), this.config.checkIntervalMs).unref();
  }

  /** Stops sampling when the last instance stops; a later start begins accepting again. */
  release(): void {
    if (this.users === 0 || --this.users > 0) return;
    clearInterval(this.timer);
    this.timer = undefined;
    if (this.refusingNow) this.reportStatus({ status: 'ok' });
    this.refusingNow = false;
  }

  /** One sample and its decision (the timer's tick; tests call it directly). */
  check(): void {
    const used = this.deps.readMemory();
    const { softBytes, hardBytes } = this.limits;
    // A forced GC frees Buffers' memory asynchronously, so whether it helped is judged here, a tick later.
    if (this.beforeGc !== undefined) {
      const helped = used < softBytes || used <= this.beforeGc * (1 - GC_EFFECTIVE_FRACTION);
      if (!helped) this.backOffGc(used);
      else this.softGcIntervalMs = this.hardGcIntervalMs = 0;
      this.beforeGc = undefined;
    }
    if (used < softBytes) {
      if (this.refusingNow) {
        this.logger.info({ usedMib: mib(used) }, 'memory usage is back under the soft limit; accepting data again');
        this.reportStatus({ status: 'ok' });
      }
      this.refusingNow = false;
      this.softGcIntervalMs = this.hardGcIntervalMs = 0;
      return;
    }
    const hard = used >= hardBytes;
    const gate = hard
      ? Math.max(this.config.minGcIntervalWhenHardLimitedMs, this.hardGcIntervalMs)
      : Math.max(this.config.minGcIntervalWhenSoftLimitedMs, this.softGcIntervalMs);
    if (this.deps.now() - this.lastGcAt >= gate) {
      this.logger[hard ? 'warn' : 'info']({ usedMib: mib(used) }, `memory usage is above the ${hard ? 'hard' : 'soft'} limit; forcing a garbage collection`);
      this.deps.gc();
      this.lastGcAt = this.deps.now();
      this.beforeGc = used;
    }
    if (!this.refusingNow) {
      this.logger.warn({ usedMib: mib(used), softLimitMib: mib(softBytes), limitMib: mib(hardBytes) }, 'memory usage is above the soft limit; refusing data');
      // The Collector's memory_limiter reports this error text as its status.
      this.reportStatus({ status: 'recoverable_error', error: 'data refused due to high memory usage' });
    }
    this.refusingNow = true;
  }

  /** Ineffective GC: wait longer before the next one (doubling from about one check_interval up to the max). */
  private backOffGc(used: number): void {
    const next = (current: number, min: number, max: number): number => {
      if (max === 0) return min;
      const floor = Math.max(min, this.config.checkIntervalMs * 0.95);
      return Math.min(Math.max(current, floor) * 2, Math.max(max, min));
    };
    this.softGcIntervalMs = next(this.softGcIntervalMs, this.config.minGcIntervalWhenSoftLimitedMs, this.config.maxGcIntervalWhenSoftLimitedMs);
    this.hardGcIntervalMs = next(this.hardGcIntervalMs, this.config.minGcIntervalWhenHardLimitedMs, this.config.maxGcIntervalWhenHardLimitedMs);
    this.logger.warn(
      { usedMib: mib(used), nextSoftGcIntervalMs: this.softGcIntervalMs, nextHardGcIntervalMs: this.hardGcIntervalMs },
      'the forced garbage collection freed little memory; forcing it less often',
    );
  }
}

function mib(bytes: number): number {
  return Math.round(bytes / MIB);
}

/** One limiter per config object, i.e. per processor id and service generation, whatever the number of pipelines. */
const limiters = new WeakMap<MemoryLimiterConfig, MemoryLimiter>();

function sharedLimiter(settings: CreateSettings, config: MemoryLimiterConfig): MemoryLimiter {
  let limiter = limiters.get(config);
  if (!limiter) {
    limiter = new MemoryLimiter(settings.id, config, resolveLimits(config), settings.logger, DEFAULT_DEPS, settings.reportStatus);
    limiters.set(config, limiter);
  }
  return limiter;
}

export class MemoryLimiterProcessor implements Component, Consumer {
  private readonly accepted: { inc(n: number): void };
  private readonly refused: { inc(n: number): void };
  private started = false;

  constructor(
    settings: CreateSettings,
    private readonly limiter: MemoryLimiter,
    signal: Signal,
    private readonly next: Consumer,
  ) {
    const labels = { processor: settings.id };
    this.accepted = settings.telemetry.signalCounter('processor_memory_limiter_accepted', signal, 'Number of items passed on to the next component in the pipeline', labels);
    this.refused = settings.telemetry.signalCounter('processor_memory_limiter_refused', signal, 'Number of items refused because memory usage was above the soft limit', labels);
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    this.limiter.acquire();
  }

  async shutdown(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    this.limiter.release();
  }

  mayKeep(attributes: Attributes): boolean {
    return this.next.mayKeep?.(attributes) ?? true;
  }

  wouldRefuse(): string | undefined {
    return this.limiter.refusing ? this.limiter.reason : this.next.wouldRefuse?.();
  }

  consume(batch: Batch): Promise<void> {
    if (this.limiter.refusing) {
      this.refused.inc(batch.itemCount);
      return Promise.reject(new RetryableError(this.limiter.reason));
    }
    this.accepted.inc(batch.itemCount);
    return this.next.consume(batch);
  }
}

export const memoryLimiterFactory: ProcessorFactory<MemoryLimiterConfig> = {
  type: 'memory_limiter',
  kind: 'processor',
  signals: ['traces', 'metrics'],
  firstInPipeline: true,
  parseConfig: parseMemoryLimiterConfig,
  create: (settings, config, signal, next) => new MemoryLimiterProcessor(settings, sharedLimiter(settings, config), signal, next),
};

/**
 * V8's old-space limit (MiB) for a config: the hard limit of the smallest memory_limiter a pipeline
 * uses, or undefined without one. The CLI starts node with it (docs/memory-limiter-processor.md).
 */
export function heapLimitMib(configs: readonly MemoryLimiterConfig[], total?: () => number): number | undefined {
  if (configs.length === 0) return undefined;
  const hard = Math.min(...configs.map((c) => resolveLimits(c, total).hardBytes));
  return Math.max(MIN_HEAP_LIMIT_MIB, Math.floor(hard / MIB));
}

/** Below this V8 would spend its time in GC on spansieve's baseline heap alone (about 10 MiB live). */
const MIN_HEAP_LIMIT_MIB = 64;
