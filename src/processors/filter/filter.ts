import * as os from 'node:os';
import type { Component, Consumer, CreateSettings, InstanceRecorder, ProcessorFactory } from '../../component/component';
import type { InstanceDecision, LiveReconfigurable } from '../../component/live';
import type { Node } from '../../config/reader';
import type { Attributes } from '../../pdata/attributes';
import { itemNoun, type Batch, type ResourceBlock, type Signal } from '../../pdata/batch';
import { PermanentError } from '../../component/errors';
import { checkDeferredBlock } from '../../pdata/scan';
import { RESOURCE_ITEMS } from '../../pdata/fields';
import { WireFormatError, WireReader } from '../../pdata/wire';
import { OttlRuntimeError, type ConditionSequence, type TelemetryItem } from '../../ottl';
import { OTTL_KEYS, bindOttlRules, parseOttlConfig, type OttlConfig, type OttlGroup, type OttlRules } from './ottl-rules';
import { sharedProcessTable, type ProcessTable } from './process-table';
import { parseSelector, SelectorList, type ProcessContext, type Selector } from './selectors';
import { filterMetricsBlock } from './metric-rules';
import { filterSpansBlock } from './span-rules';
import { wireResource, type WireResource } from './wire-items';

export interface FilterConfig {
  /** Absent means keep everything (then `drop` alone decides). */
  readonly keep: SelectorList | undefined;
  readonly drop: SelectorList;
  /** Set when a `process:` selector needs /proc kept fresh while the processor runs. */
  readonly processTable: ProcessTable | undefined;
  /** The Collector's OTTL keys (error_mode, traces, metrics, trace_conditions, metric_conditions), if any. */
  readonly ottl?: OttlConfig | undefined;
}

export interface FilterDecision {
  readonly kept: boolean;
  /** The selector that decided, or undefined when the default decided. */
  readonly selector: Selector | undefined;
}

/** decide(...).kept without building the decision. */
export function keeps(config: FilterConfig, attributes: Attributes): boolean {
  if (config.keep && config.keep.match(attributes) === undefined) return false;
  return config.drop.isEmpty || config.drop.match(attributes) === undefined;
}

// Decisions are immutable and few (two per selector at most): shared, not built per resource.
const NOT_KEPT: FilterDecision = Object.freeze({ kept: false, selector: undefined });
const KEPT_BY_DEFAULT: FilterDecision = Object.freeze({ kept: true, selector: undefined });
const keptDecisions = new WeakMap<Selector, FilterDecision>();
const droppedDecisions = new WeakMap<Selector, FilterDecision>();

function sharedDecision(cache: WeakMap<Selector, FilterDecision>, kept: boolean, selector: Selector): FilterDecision {
  let decision = cache.get(selector);
  if (decision === undefined) cache.set(selector, (decision = Object.freeze({ kept, selector })));
  return decision;
}

/** Keep if any `keep` selector matches (or there is no `keep`), then drop if any `drop` selector matches. */
export function decide(config: FilterConfig, attributes: Attributes): FilterDecision {
  let keptBy: Selector | undefined;
  if (config.keep) {
    keptBy = config.keep.match(attributes);
    if (!keptBy) return NOT_KEPT;
  }
  const droppedBy = config.drop.isEmpty ? undefined : config.drop.match(attributes);
  if (droppedBy) return sharedDecision(droppedDecisions, false, droppedBy);
  return keptBy === undefined ? KEPT_BY_DEFAULT : sharedDecision(keptDecisions, true, keptBy);
}

export function parseSelectorList(node: Node, processes?: ProcessContext): SelectorList | undefined {
  if (node.isAbsent) return undefined;
  const selectors: Selector[] = [];
  for (const item of node.list()) {
    const selector = parseSelector(item, processes);
    if (selector) selectors.push(selector);
  }
  return new SelectorList(selectors);
}

export const FILTER_KEYS = ['keep', 'drop', 'host_names', 'process_refresh_interval', ...OTTL_KEYS] as const;

export function parseFilterConfig(node: Node): FilterConfig {
  const at = node.struct(FILTER_KEYS);
  const hostNamesNode = at('host_names');
  const hostNames = hostNamesNode.isAbsent ? [os.hostname()] : hostNamesNode.list().map((n) => n.string(''));
  const refreshMs = at('process_refresh_interval').duration(5000);
  if (refreshMs < 100) at('process_refresh_interval').report('must be at least 100ms');
  const processes: ProcessContext = { table: sharedProcessTable('/proc', Math.max(refreshMs, 100)), hostNames: new Set(hostNames) };
  const keep = parseSelectorList(at('keep'), processes);
  const keepValue = at('keep').value;
  if (keep?.isEmpty && Array.isArray(keepValue) && keepValue.length === 0) {
    at('keep').report('an empty keep list drops everything; remove `keep` to keep all, or list what to keep');
  }
  const drop = parseSelectorList(at('drop'), processes) ?? new SelectorList([]);
  const usesProcesses = [...(keep?.selectors ?? []), ...drop.selectors].some((selector) => selector.usesProcesses);
  const ottl = parseOttlConfig(at);
  return { keep, drop, processTable: usesProcesses ? processes.table : undefined, ottl };
}

/** The lists of a filter processor as written (selectors as plain objects). */
export interface FilterLists {
  readonly keep: readonly Record<string, unknown>[] | undefined;
  readonly drop: readonly Record<string, unknown>[];
}

/** The lists as written, for the admin API and for saving back to the config file. */
export function filterLists(config: FilterConfig): FilterLists {
  return {
    keep: config.keep?.selectors.map((selector) => selector.source),
    drop: config.drop.selectors.map((selector) => selector.source),
  };
}

/** The OTTL rules a dry run applies, per config: the traces rules, else the metrics rules (bound without a logger: a preview logs nothing). */
const previewRules = new WeakMap<FilterConfig, { rules: OttlRules; signal: Signal } | null>();

function rulesForPreview(config: FilterConfig): { rules: OttlRules; signal: Signal } | null {
  let entry = previewRules.get(config);
  if (entry === undefined) {
    const signal: Signal = (config.ottl?.traces.length ?? 0) > 0 ? 'traces' : 'metrics';
    const rules = bindOttlRules(config.ottl, signal, undefined, '');
    entry = rules ? { rules, signal } : null;
    previewRules.set(config, entry);
  }
  return entry;
}

const plural = (n: number, noun: string): string => `${n} ${noun}${n === 1 ? '' : 's'}`;

/** What a resource-level verdict cannot know: the conditions below the resource, counted. */
function itemLevelNote(rules: OttlRules, signal: Signal): string | undefined {
  const count = (pick: (g: OttlGroup) => ConditionSequence<TelemetryItem> | undefined): number =>
    rules.groups.reduce((n, g) => n + (pick(g)?.conditions.length ?? 0), 0);
  const notes: string[] = [];
  if (signal === 'traces') {
    const spans = count((g) => g.scope) + count((g) => g.span);
    const events = count((g) => g.spanevent);
    if (spans > 0) notes.push(`spans may be dropped by ${plural(spans, 'span condition')}`);
    if (events > 0) notes.push(`span events may be dropped by ${plural(events, 'span event condition')}`);
  } else {
    const points = count((g) => g.scope) + count((g) => g.metric) + count((g) => g.datapoint);
    if (points > 0) notes.push(`data points may be dropped by ${plural(points, 'metric condition')}`);
  }
  return notes.length > 0 ? notes.join('; ') : undefined;
}

/**
 * A decision as the inventory and the admin API show it: the selectors, then the OTTL conditions
 * that read only the resource, evaluated on its exact bytes (`resource`, from the inventory) as
 * the processor evaluates them. Without those bytes a config with such conditions cannot be judged.
 */
function instanceDecision(config: FilterConfig, attributes: Attributes, resource?: Uint8Array): InstanceDecision | undefined {
  const decision = decide(config, attributes);
  const selector = decision.selector?.text ?? null;
  const ottl = decision.kept ? rulesForPreview(config) : null;
  if (!ottl) return { kept: decision.kept, selector };
  const note = itemLevelNote(ottl.rules, ottl.signal);
  const kept = note === undefined ? { kept: true, selector } : { kept: true, selector, note };
  if (!ottl.rules.groups.some((g) => g.resource)) return kept;
  if (resource === undefined) return undefined;
  try {
    const item = { resource: wireResource(resource) };
    if (ottl.rules.groups.some((g) => g.resource?.eval(item))) return { kept: false, selector: OTTL_SELECTOR };
  } catch (err) {
    if (err instanceof WireFormatError) return undefined;
    if (err instanceof OttlRuntimeError) return { kept: false, selector: OTTL_SELECTOR, note: `error_mode propagate: ${err.message}; the data is refused` };
    throw err;
  }
  return kept;
}

/** The OTTL rules bound to one processor instance, with their per-resource decisions. */
interface BoundOttl {
  readonly rules: OttlRules;
  /** Whether the resource-level conditions drop a resource, by its decoded attributes (one map per distinct Resource message). */
  readonly resourceDrops: WeakMap<Attributes, boolean>;
}

export class FilterProcessor implements Component, Consumer, LiveReconfigurable<FilterConfig> {
  private readonly filtered: { inc(n: number): void };
  private readonly inventory: InstanceRecorder | undefined;
  private rules: FilterConfig;
  private ottl: BoundOttl | undefined;
  private started = false;
  private readonly id: string;
  private readonly logger: CreateSettings['logger'] | undefined;

  constructor(
    settings: CreateSettings,
    config: FilterConfig,
    private readonly signal: Signal,
    private readonly next: Consumer,
  ) {
    this.rules = config;
    this.id = settings.id;
    this.logger = settings.logger;
    this.inventory = settings.inventory;
    this.ottl = this.bind(config);
    const noun = itemNoun(signal) === 'spans' ? 'spans' : 'datapoints';
    this.filtered = settings.telemetry.counter(
      `otelcol_processor_filter_${noun}_filtered`,
      `Number of ${noun === 'spans' ? 'spans' : 'data points'} dropped by the filter processor`,
      { processor: settings.id },
    );
  }

  private bind(config: FilterConfig): BoundOttl | undefined {
    const rules = bindOttlRules(config.ottl, this.signal, this.logger, this.id);
    return rules ? { rules, resourceDrops: new WeakMap() } : undefined;
  }

  get config(): FilterConfig {
    return this.rules;
  }

  /** Replaces the rules; takes effect from the next batch (and at once in the inventory). */
  reconfigure(config: FilterConfig): void {
    const previous = this.rules;
    this.rules = config;
    this.ottl = this.bind(config);
    this.inventory?.redecide(this.id, (attributes, resource) => instanceDecision(config, attributes, resource));
    if (this.started) {
      config.processTable?.acquire();
      previous.processTable?.release();
    }
  }

  async start(): Promise<void> {
    this.started = true;
    this.rules.processTable?.acquire();
  }

  async shutdown(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    this.rules.processTable?.release();
  }

  mayKeep(attributes: Attributes): boolean {
    // OTTL resource conditions answer from the decision cached when this resource was last seen
    // (their exact values come from the bytes, which this question does not have).
    return keeps(this.rules, attributes) && this.ottl?.resourceDrops.get(attributes) !== true && (this.next.mayKeep?.(attributes) ?? true);
  }

  /** Passed on as it is: whether a request unread holds anything kept cannot be known. */
  wouldRefuse(): string | undefined {
    return this.next.wouldRefuse?.();
  }

  /** Not async: the next consumer's promise is returned as is; a failure still arrives as a rejection. */
  consume(batch: Batch): Promise<void> {
    let kept: Batch | undefined;
    try {
      kept = this.ottl ? this.keptPartOttl(batch, this.ottl) : this.keptPart(batch);
    } catch (err) {
      if (err instanceof OttlRuntimeError) {
        // error_mode: propagate. The same data would fail the same way: the sender should not retry.
        this.logger?.error({ processor: this.id, err: err.message }, 'failed processing traces or metrics (error_mode: propagate)');
        return Promise.reject(new PermanentError(`processor ${this.id}: ${err.message}`));
      }
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    return kept === undefined ? NOTHING_TO_SEND : this.next.consume(kept);
  }

  /** The batch with the dropped resources taken out; undefined when none is left. */
  private keptPart(batch: Batch): Batch | undefined {
    const rules = this.rules;
    let kept: ResourceBlock[] | undefined;
    let dropped = 0;
    const inventory = this.inventory;
    for (let i = 0; i < batch.resources.length; i++) {
      const block = batch.resources[i]!;
      const decision = decide(rules, block.attributes);
      inventory?.decide(block.attributes, decision.kept, decision.selector?.text ?? null, this.id, this.signal === 'traces' ? block.itemCount : 0);
      if (decision.kept && block.unchecked) {
        // Read unchecked because no pipeline kept it on arrival; the rules changed since.
        kept ??= batch.resources.slice(0, i);
        kept.push(checkedBlock(this.signal, block));
      } else if (decision.kept) {
        kept?.push(block);
      } else {
        kept ??= batch.resources.slice(0, i);
        dropped += block.itemCount;
      }
    }
    if (!kept) return batch;
    if (dropped > 0) this.filtered.inc(dropped);
    return kept.length === 0 ? undefined : batch.withResources(kept);
  }

  /** keptPart with OTTL conditions: selectors first, then the conditions on what they keep. */
  private keptPartOttl(batch: Batch, ottl: BoundOttl): Batch | undefined {
    const rules = this.rules;
    const kept: ResourceBlock[] = [];
    let changed = false;
    let dropped = 0;
    const inventory = this.inventory;
    for (const block of batch.resources) {
      const decision = decide(rules, block.attributes);
      let out: ResourceBlock | undefined;
      if (decision.kept) {
        const resource = wireResource(block.bytes);
        if (this.resourceDropped(block, resource, ottl)) {
          inventory?.decide(block.attributes, false, OTTL_SELECTOR, this.id);
        } else {
          inventory?.decide(block.attributes, true, decision.selector?.text ?? null, this.id);
          out = this.applyItemLevel(block.unchecked ? checkedBlock(this.signal, block) : block, resource, ottl.rules);
        }
      } else {
        inventory?.decide(block.attributes, false, decision.selector?.text ?? null, this.id);
      }
      if (out !== block) changed = true;
      if (out) kept.push(out);
      dropped += block.itemCount - (out?.itemCount ?? 0);
    }
    if (dropped > 0) this.filtered.inc(dropped);
    if (!changed) return batch;
    return kept.length === 0 ? undefined : batch.withResources(kept);
  }

  /** The resource-level conditions' verdict, cached per distinct resource unless they read the block's schema_url. */
  private resourceDropped(block: ResourceBlock, resource: WireResource, ottl: BoundOttl): boolean {
    const cacheable = !ottl.rules.perBlock;
    if (cacheable) {
      const cached = ottl.resourceDrops.get(block.attributes);
      if (cached !== undefined) return cached;
    }
    let drop = false;
    const item = { resource };
    for (const group of ottl.rules.groups) {
      if (group.resource?.eval(item)) {
        drop = true;
        break;
      }
    }
    if (cacheable) ottl.resourceDrops.set(block.attributes, drop);
    return drop;
  }

  /** Scope, span, event, metric and datapoint conditions, and the Collector's removal of emptied scopes and resources. */
  private applyItemLevel(block: ResourceBlock, resource: WireResource, rules: OttlRules): ResourceBlock | undefined {
    let bytes = block.bytes;
    let items = block.itemCount;
    for (const group of rules.groups) {
      if (group.wire) {
        // Each group runs on what the previous one left (the resource itself never changes). Under
        // error_mode propagate an evaluation error throws OttlRuntimeError: consume fails the batch.
        const filtered = this.signal === 'traces'
          ? filterSpansBlock(bytes, resource, group)
          : filterMetricsBlock(bytes, resource, { scope: group.scope, metric: group.metric, datapoint: group.datapoint });
        if (filtered === null) return undefined;
        if (filtered) {
          bytes = filtered.bytes;
          items = filtered.itemCount;
        }
      } else if (items === 0 && (group.liftedItemLevel || !hasScopes(bytes))) {
        // Span conditions leave no empty scope, resource conditions no resource without scopes.
        return undefined;
      }
    }
    return bytes === block.bytes ? block : { bytes, attributes: block.attributes, itemCount: items, unchecked: false };
  }
}

/** What the inventory shows as the deciding selector when an OTTL condition dropped a resource. */
const OTTL_SELECTOR = 'OTTL condition';

/** Whether a ResourceSpans / ResourceMetrics holds any ScopeSpans / ScopeMetrics (scope_spans / scope_metrics). */
function hasScopes(bytes: Uint8Array): boolean {
  const reader = new WireReader(bytes, 0, bytes.length);
  while (!reader.done) {
    const tag = reader.tag();
    if (tag === RESOURCE_ITEMS.scopes) return true;
    reader.skip(tag & 7);
  }
  return false;
}

/** The block, checked now; malformed or invalid content refuses the batch, as the receiver would have. */
function checkedBlock(signal: Signal, block: ResourceBlock): ResourceBlock {
  try {
    return checkDeferredBlock(signal, block);
  } catch (err) {
    if (err instanceof WireFormatError) throw new PermanentError(`invalid ${signal} resource: ${err.message}`);
    throw err;
  }
}

const NOTHING_TO_SEND: Promise<void> = Promise.resolve();

export const filterFactory: ProcessorFactory<FilterConfig> = {
  type: 'filter',
  kind: 'processor',
  signals: ['traces', 'metrics'],
  parseConfig: parseFilterConfig,
  live: {
    keys: ['keep', 'drop'],
    current: (config) => ({ ...filterLists(config) }),
    // The rules are read once per batch and the process table is swapped on reconfigure, so any
    // change of the processor's own options is taken in place (host_names and the refresh too).
    appliesInPlace: () => true,
    decide: instanceDecision,
  },
  create: (settings, config, signal, next) => new FilterProcessor(settings, config, signal, next),
};
