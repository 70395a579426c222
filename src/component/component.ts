import type { Logger } from 'pino';
import type { AuthenticatorRef } from './auth';
import type { DryRunResult, LiveSettings } from './live';
import type { Node } from '../config/reader';
import type { Attributes } from '../pdata/attributes';
import type { Batch, ResourceBlock, Signal } from '../pdata/batch';

export type ComponentKind = 'receiver' | 'processor' | 'exporter' | 'connector' | 'extension';

/** The one data contract: every receiver, processor, connector and exporter hands on batches through it. */
export interface Consumer {
  /** Fails only by rejecting, never by a synchronous throw (callers may return the promise as is). */
  consume(batch: Batch): Promise<void>;
  /**
   * False only when this consumer would certainly drop a resource with these attributes. A
   * receiver then skips checking that resource's spans or points: it is counted, not read.
   * Absent means "may keep" (exporters, connectors).
   */
  mayKeep?(attributes: Attributes): boolean;
  /**
   * Why this consumer would refuse any batch now (a sending queue with no room, a shutdown), or
   * undefined when it may accept. A receiver asks before reading a request, so an overloaded
   * service answers at once instead of parsing what it will refuse. Absent means "may accept".
   */
  wouldRefuse?(): string | undefined;
}

/** One lifecycle for every component; shutdown must be safe without a prior start. */
export interface Component {
  start(host: Host): Promise<void>;
  shutdown(): Promise<void>;
}

/**
 * What a sending queue carries: a Batch (otlp, otlphttp) or an exporter's own request built from
 * one (prometheusremotewrite: its encoded WriteRequests). The supervisor only counts them.
 */
export interface QueueRequest {
  readonly signal: Signal;
  /** Spans or data points it holds (the `items` sizer, and the sent / failed counters). */
  readonly itemCount: number;
}

/**
 * An exporter whose unsent requests can move to the exporter of the same id in the next
 * configuration, so that a reload neither waits for a backend to recover nor drops what was queued.
 */
export interface QueueHandover {
  /** Before receivers stop: requests waiting for a retry stop waiting (see releaseQueue). */
  prepareRelease(): void;
  /** Stops taking batches and returns the unsent requests, after attempts in flight finished. */
  releaseQueue(): Promise<QueueRequest[]>;
  /** Queues a predecessor's requests ahead of new ones (same id, so the same exporter type). */
  adoptQueue(requests: readonly QueueRequest[]): void;
}

/** An exporter that can stop retrying when a shutdown runs out of time (service::shutdown_timeout). */
export interface QueueAbandon {
  /** Aborts attempts in flight and drops what is unsent, counted as failed and logged. */
  abandonQueue(): Promise<void>;
}

export function canAbandon(component: unknown): component is QueueAbandon {
  return typeof (component as Partial<QueueAbandon> | undefined)?.abandonQueue === 'function';
}

export function canHandOver(component: unknown): component is QueueHandover {
  const c = component as Partial<QueueHandover> | undefined;
  return typeof c?.releaseQueue === 'function' && typeof c.adoptQueue === 'function' && typeof c.prepareRelease === 'function';
}

export interface Host {
  /** Extensions that react to the service's state (health_check). */
  readonly reportStatus: (status: ServiceStatus) => void;
  /** Run-time control of the running service, for the admin extension. */
  readonly control?: ServiceControl;
  /** The running extensions by id (an exporter finds its `sending_queue.storage` here). */
  readonly extensions?: ReadonlyMap<string, Component>;
}

/**
 * Run-time control of the running service, for the admin extension: implemented by the Service,
 * and with several workers (service::workers) by the primary, which asks every worker (hence the
 * promises).
 */
export interface ServiceControl {
  instances(): InstanceView[] | Promise<InstanceView[]>;
  /** Per service: spans seen, kept by filters, kept by samplers; per policy; the last sampled-out traces. */
  sampling(): SamplingView | Promise<SamplingView>;
  /**
   * The live settings of every running live-editable component (a factory with `live`, see
   * component/live.ts), by component id: the filter processors' keep and drop lists.
   */
  liveSettings(): Map<string, Record<string, unknown>> | Promise<Map<string, Record<string, unknown>>>;
  /** Replaces a component's live settings in all its instances; returns validation errors (nothing changed) or []. */
  setLive(id: string, settings: unknown): string[] | Promise<string[]>;
  /** Writes a component's current live settings into the config file. */
  saveLive(id: string): Promise<void>;
  /** What the given settings would decide for every instance the inventory knows; changes nothing. */
  dryRun(id: string, settings: unknown): DryRunResult | Promise<DryRunResult>;
}

/** The admin API's `GET /api/v1/sampling`. Counts are totals since the process started. */
export interface SamplingView {
  readonly services: readonly {
    readonly service: string | null;
    /** Spans received (every receiver). */
    readonly seen: number;
    /** Spans in resources a filter processor kept; null when no filter decided on this service. */
    readonly keptByFilter: number | null;
    /** Spans a sampling processor kept; null when no sampler saw this service. */
    readonly keptBySampling: number | null;
    /** Per sampling processor: spans it saw and kept. */
    readonly samplers: readonly { readonly processor: string; readonly seen: number; readonly kept: number }[];
  }[];
  /** Traces decided, per processor and policy (null: no policy decided). */
  readonly policies: readonly { readonly processor: string; readonly policy: string | null; readonly sampled: number; readonly notSampled: number }[];
  /** Newest first; at most `maxRecentDropped`. `at`: ISO time of the decision. */
  readonly recentDropped: readonly (DroppedTrace & { readonly at: string })[];
  readonly maxRecentDropped: number;
}

/** `degraded`: with several workers, one died and its replacement is not ready yet. */
export type ServiceStatus = 'starting' | 'ready' | 'degraded' | 'stopping' | 'stopped';

/** The admin API's shape of one instance. */
export interface InstanceView {
  readonly id: string;
  readonly service: string | null;
  readonly host: string | null;
  readonly pid: number | null;
  readonly kept: boolean | null;
  readonly selector: string | null;
  readonly firstSeen: string;
  readonly lastSeen: string;
  readonly spansPerSecond: number;
  readonly metricPointsPerSecond: number;
  /** At most MAX_KEPT_ATTRIBUTES (service/inventory.ts); keys and strings longer than MAX_KEPT_VALUE_LENGTH end with TRUNCATION_MARK. */
  readonly attributes: Record<string, unknown>;
  /** How many of the resource's attributes are not in `attributes` (0: all are). */
  readonly omittedAttributes: number;
}

/** Where receivers record the instances they see and filters their decisions (the service's Inventory). */
export interface InstanceRecorder {
  observe(block: ResourceBlock, signal: Signal): void;
  /** `filterId`: the filter processor whose decision this is; `spans`: the resource's spans (0 for other signals), counted as kept or not by the filter. */
  decide(attributes: Attributes, kept: boolean, selector: string | null, filterId?: string | null, spans?: number): void;
  /** Decides again every instance `filterId` decided, after its rules changed. */
  redecide(filterId: string, decide: (attributes: Attributes) => { kept: boolean; selector: string | null }): void;
}

/** A sampled-out trace as the admin API shows it. */
export interface DroppedTrace {
  /** Hex, as in Jaeger. */
  readonly traceId: string;
  readonly service: string | null;
  /** The sampling processor's id. */
  readonly processor: string;
  /** tail_sampling: the drop policy that dropped it, null when no policy sampled it; probabilistic_sampler: its policy label (trace_id_hash, ...). */
  readonly policy: string | null;
  /** Why, in words: "no policy sampled", "drop policy", "mode hash_seed, 25%", ... */
  readonly reason: string;
}

/**
 * Where sampling processors report their decisions (the service's SamplingStats, service/sampling-stats.ts).
 * Called per resource (or per trace part), never per span, so that it stays cheap.
 */
export interface SamplingRecorder {
  /** Spans of one resource (`attributes`) that `processor` saw, and how many of them it kept. */
  sampled(processor: string, attributes: Attributes, seen: number, kept: number): void;
  /** One trace decided by `processor`: counted under `policy` (null: no policy decided it). */
  traceDecided(processor: string, policy: string | null, kept: boolean): void;
  /** A trace sampled out; the last MAX_RECENT_DROPPED are kept. */
  dropped(trace: DroppedTrace): void;
}

/** The service's own metrics, as components write them (implemented by service/telemetry.ts). */
export interface ComponentTelemetry {
  counter(name: string, help: string, labels: Record<string, string>): { inc(n: number): void };
  gauge(name: string, help: string, labels: Record<string, string>): { set(n: number): void };
  /** Counter named by signal: `otelcol_<prefix>_<spans|metric_points>`. */
  signalCounter(prefix: string, signal: Signal, help: string, labels: Record<string, string>): { inc(n: number): void };
}

export interface CreateSettings {
  /** `type[/name]` as written in the config. */
  readonly id: string;
  readonly logger: Logger;
  readonly telemetry: ComponentTelemetry;
  /** Where receivers record the instances they see and filters their decisions. */
  readonly inventory?: InstanceRecorder;
  /** Where sampling processors report what they saw, kept and sampled out. */
  readonly sampling?: SamplingRecorder;
}

export interface Factory<C> {
  readonly type: string;
  readonly kind: ComponentKind;
  /** Reads and validates this component's config, merged over its defaults; problems go to `node.issues`. */
  parseConfig(node: Node): C;
  /** Present when its components can change settings while running (component/live.ts). */
  readonly live?: LiveSettings<C>;
  /**
   * Why its components cannot run as one copy in each worker process (`service::workers` above 1):
   * state that must be one per process across requests or connections. Absent: they can.
   */
  readonly singleProcess?: string;
}

export interface ReceiverFactory<C> extends Factory<C> {
  readonly kind: 'receiver';
  readonly signals: readonly Signal[];
  create(settings: CreateSettings, config: C, next: ReadonlyMap<Signal, Consumer>): Component;
  /** The server authenticators this config names (`auth: { authenticator }`), for the config validation. */
  authenticatorsOf?(config: C): readonly AuthenticatorRef[];
}

export interface ProcessorFactory<C> extends Factory<C> {
  readonly kind: 'processor';
  readonly signals: readonly Signal[];
  /** Must come first in every pipeline that lists it (memory_limiter); validation rejects it elsewhere. */
  readonly firstInPipeline?: boolean;
  create(settings: CreateSettings, config: C, signal: Signal, next: Consumer): Component & Consumer;
}

export interface ExporterFactory<C> extends Factory<C> {
  readonly kind: 'exporter';
  readonly signals: readonly Signal[];
  /** Why this config cannot export `signal` (e.g. no URL for it), or undefined when it can. */
  cannotExport?(config: C, signal: Signal): string | undefined;
  create(settings: CreateSettings, config: C): Component & Consumer;
  /** The client authenticator this config names (`auth: { authenticator }`), for the config validation. */
  authenticatorsOf?(config: C): readonly AuthenticatorRef[];
}

/** A connector is an exporter in one pipeline and a receiver in another. */
export interface ConnectorFactory<C> extends Factory<C> {
  readonly kind: 'connector';
  /** Supported [from, to] signal pairs. */
  readonly routes: ReadonlyArray<readonly [Signal, Signal]>;
  create(settings: CreateSettings, config: C, from: Signal, next: ReadonlyMap<Signal, Consumer>): Component & Consumer;
}

export interface ExtensionFactory<C> extends Factory<C> {
  readonly kind: 'extension';
  /** What `auth: { authenticator }` may use it for: receivers need 'server', exporters 'client'. */
  readonly authenticates?: readonly ('server' | 'client')[];
  /**
   * Serves the whole process rather than a pipeline (admin, health_check): with several workers
   * (`service::workers`) it runs once, in the primary process, instead of in each worker.
   */
  readonly inPrimary?: boolean;
  create(settings: CreateSettings, config: C): Component & { onStatus?(status: ServiceStatus): void };
}

export type AnyFactory =
  | ReceiverFactory<unknown>
  | ProcessorFactory<unknown>
  | ExporterFactory<unknown>
  | ConnectorFactory<unknown>
  | ExtensionFactory<unknown>;
