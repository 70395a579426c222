import { omittedValues, type AttrValue, type Attributes } from '../pdata/attributes';
import type { ResourceBlock, Signal } from '../pdata/batch';
import { RESOURCE_ITEMS } from '../pdata/fields';
import { WireFormatError, WireReader } from '../pdata/wire';
import type { InstanceRecorder, InstanceView } from '../component/component';
import { INSTANCE_ID, pidOfInstanceId } from '../pdata/instance-id';
import { SamplingStats } from './sampling-stats';

// Every instance (service.instance.id) that has sent data: what it is, when it was seen, how much
// it sends, and whether the filter keeps it. Fed by receivers (seen) and filter processors
// (decisions); read by the admin API and `spansieve instances`.

const RATE_WINDOW_MS = 10_000;
const MAX_INSTANCES = 10_000;

/** Items per second over the last complete window (or the current one while there is none). */
class Rate {
  private windowStart: number;
  private count = 0;
  private lastRate: number | undefined;

  constructor(now: number) {
    this.windowStart = now;
  }

  add(n: number, now: number): void {
    this.roll(now);
    this.count += n;
  }

  perSecond(now: number): number {
    this.roll(now);
    if (this.lastRate !== undefined) return this.lastRate;
    const elapsed = Math.max(now - this.windowStart, 1000);
    return (this.count * 1000) / elapsed;
  }

  private roll(now: number): void {
    const elapsed = now - this.windowStart;
    if (elapsed < RATE_WINDOW_MS) return;
    // A window with no data in it (or several) means the rate dropped to what the last one saw.
    this.lastRate = elapsed >= 2 * RATE_WINDOW_MS ? 0 : (this.count * 1000) / elapsed;
    this.windowStart = now;
    this.count = 0;
  }
}

/** Attributes kept per instance, in the order they arrived; the rest are counted only. */
export const MAX_KEPT_ATTRIBUTES = 64;
/** Longer keys and string values are cut to this many characters and marked (TRUNCATION_MARK). */
export const MAX_KEPT_VALUE_LENGTH = 256;
export const TRUNCATION_MARK = '…';
/** Bound on the estimated size of everything the inventory holds. */
export const MAX_INVENTORY_BYTES = 16 * 1024 * 1024;
/** Estimated fixed cost of one record (object, rates, map entry), on top of its strings. */
const RECORD_OVERHEAD_BYTES = 400;

interface InstanceRecord {
  readonly id: string;
  /**
   * What the filter's rules can be evaluated on again when they change: the resource's decoded
   * attributes when the kept copy is complete, undefined when it is not (too many attributes, a
   * value cut or not a plain value); such an instance is decided again by its next resource.
   */
  readonly source: Attributes | undefined;
  /**
   * The resource's ResourceSpans / ResourceMetrics without its scopes (the Resource message and
   * schema_url, exact types: what OTTL resource conditions read), kept with a complete `source`
   * only and when at most MAX_KEPT_RESOURCE_BYTES; undefined when not kept.
   */
  readonly resource: Uint8Array | undefined;
  readonly attributes: Record<string, unknown>;
  /** Attributes of the resource not kept (beyond MAX_KEPT_ATTRIBUTES, or beyond the decoder's bound). */
  readonly omittedAttributes: number;
  /** Estimated bytes held, for the byte bound. */
  readonly bytes: number;
  readonly firstSeen: number;
  lastSeen: number;
  readonly spans: Rate;
  readonly points: Rate;
  kept: boolean | null;
  selector: string | null;
  /** The filter processor whose decision `kept` is. */
  decidedBy: string | null;
  /** Neighbours in the recency list (older, newer); undefined at its ends. */
  older: InstanceRecord | undefined;
  newer: InstanceRecord | undefined;
  /** False once evicted: a cached reference to it (byAttributes) is then stale. */
  held: boolean;
}

/**
 * Bounded in instances (maxInstances) and in estimated bytes (maxBytes): the least recently seen
 * instance goes first. Records are linked in recency order (an instance seen again moves to the
 * newest end), so eviction and every update cost O(1) whatever the number of instances, with no
 * Map re-insertion per resource.
 */
export class Inventory implements InstanceRecorder {
  private readonly records = new Map<string, InstanceRecord>();
  /** The least and the most recently seen record. */
  private oldest: InstanceRecord | undefined;
  private newest: InstanceRecord | undefined;
  /**
   * The record of a resource's attributes object. The receiver's resource cache hands out the
   * same object for the same resource bytes in every request, so a resource seen before costs one
   * lookup here instead of reading and cutting its id and looking that up.
   */
  private readonly byAttributes = new WeakMap<Attributes, InstanceRecord>();
  private bytes = 0;
  /** Spans seen, kept by filters and samplers, per service (the admin API's /api/v1/sampling). */
  readonly sampling: SamplingStats;

  constructor(
    private readonly clock: () => number = Date.now,
    private readonly maxInstances = MAX_INSTANCES,
    private readonly maxBytes = MAX_INVENTORY_BYTES,
  ) {
    this.sampling = new SamplingStats(clock);
  }

  /** Instances held and their estimated bytes (tests, self-observation). */
  get size(): { instances: number; bytes: number } {
    return { instances: this.records.size, bytes: this.bytes };
  }

  /** Records that a resource arrived (called by receivers for every resource). */
  observe(block: ResourceBlock, signal: Signal): void {
    const record = this.recordFor(block.attributes, true, block.bytes);
    const now = this.clock();
    record.lastSeen = now;
    (signal === 'traces' ? record.spans : record.points).add(block.itemCount, now);
    if (signal === 'traces') this.sampling.seen(block.attributes, block.itemCount);
  }

  /** Records a filter decision for a resource's instance. */
  decide(attributes: Attributes, kept: boolean, selector: string | null, filterId: string | null = null, spans = 0): void {
    if (spans > 0) this.sampling.filtered(attributes, spans, kept);
    const record = this.recordFor(attributes, false);
    record.kept = kept;
    record.selector = selector;
    record.decidedBy = filterId;
  }

  /**
   * Decides again, for the instances last decided by `filterId`, after its lists changed. An
   * instance whose attributes were not all kept shows no decision (null) until its next resource.
   */
  redecide(filterId: string, decide: (attributes: Attributes, resource: Uint8Array | undefined) => { kept: boolean; selector: string | null } | undefined): void {
    for (const record of this.records.values()) {
      if (record.decidedBy !== filterId) continue;
      const decision = record.source === undefined ? undefined : decide(record.source, record.resource);
      record.kept = decision?.kept ?? null;
      record.selector = decision?.selector ?? null;
    }
  }

  /**
   * What `decide` says for every instance, in list() order, changing nothing (a dry run of new
   * rules). An instance whose attributes were not all kept gets null, as redecide() would give it.
   */
  preview(
    decide: (attributes: Attributes, resource: Uint8Array | undefined) => { kept: boolean; selector: string | null; note?: string } | undefined,
  ): { id: string; kept: boolean | null; selector: string | null; note?: string }[] {
    return [...this.records.values()]
      .sort((a, b) => a.id.localeCompare(b.id))
      .map((r) => {
        const decision = r.source === undefined ? undefined : decide(r.source, r.resource);
        const out = { id: r.id, kept: decision?.kept ?? null, selector: decision?.selector ?? null };
        return decision?.note === undefined ? out : { ...out, note: decision.note };
      });
  }

  list(): InstanceView[] {
    const now = this.clock();
    return [...this.records.values()]
      .sort((a, b) => a.id.localeCompare(b.id))
      .map((r) => {
        const pid = pidOfInstanceId(r.id);
        const host = typeof r.attributes['host.name'] === 'string' ? r.attributes['host.name'] : pid !== undefined ? r.id.slice(0, r.id.lastIndexOf(':')) : null;
        return {
          id: r.id,
          service: typeof r.attributes['service.name'] === 'string' ? r.attributes['service.name'] : null,
          host,
          pid: pid === undefined ? null : Number(pid),
          kept: r.kept,
          selector: r.selector,
          firstSeen: new Date(r.firstSeen).toISOString(),
          lastSeen: new Date(r.lastSeen).toISOString(),
          spansPerSecond: round(r.spans.perSecond(now)),
          metricPointsPerSecond: round(r.points.perSecond(now)),
          attributes: r.attributes,
          omittedAttributes: r.omittedAttributes,
        };
      });
  }

  private recordFor(attributes: Attributes, seen: boolean, block?: Uint8Array): InstanceRecord {
    let record = this.byAttributes.get(attributes);
    if (record === undefined || !record.held) {
      record = this.findOrAdd(attributes, seen, block);
      this.byAttributes.set(attributes, record);
    } else if (seen) {
      this.touch(record);
    }
    return record;
  }

  /** The record of the resource's instance (moved to the newest end when `seen`), or a new one (evicting the oldest while over a bound). */
  private findOrAdd(attributes: Attributes, seen: boolean, block: Uint8Array | undefined): InstanceRecord {
    const idValue = attributes.get(INSTANCE_ID);
    // The id is a map key and shown as is: cut like any value (instances sharing a long prefix merge).
    const id = typeof idValue === 'string' ? cut(idValue) : '';
    let record = this.records.get(id);
    if (record) {
      if (seen) this.touch(record);
      return record;
    }
    const now = this.clock();
    const kept = keptAttributes(attributes);
    const resource = kept.complete && block ? resourceWithoutScopes(block) : undefined;
    record = {
      id,
      source: kept.complete ? kept.source : undefined,
      resource,
      attributes: kept.attributes,
      omittedAttributes: kept.omitted,
      bytes: RECORD_OVERHEAD_BYTES + 2 * id.length + kept.bytes + (resource?.length ?? 0),
      firstSeen: now,
      lastSeen: now,
      spans: new Rate(now),
      points: new Rate(now),
      kept: null,
      selector: null,
      decidedBy: null,
      older: this.newest,
      newer: undefined,
      held: true,
    };
    this.records.set(id, record);
    if (this.newest) this.newest.newer = record;
    else this.oldest = record;
    this.newest = record;
    this.bytes += record.bytes;
    while (this.records.size > this.maxInstances || (this.bytes > this.maxBytes && this.records.size > 1)) this.evictOldest();
    return record;
  }

  /** Moves a record to the newest end of the recency list. */
  private touch(record: InstanceRecord): void {
    if (record === this.newest) return;
    // Not the newest, so it has a newer neighbour.
    const newer = record.newer!;
    const older = record.older;
    newer.older = older;
    if (older) older.newer = newer;
    else this.oldest = newer;
    record.older = this.newest;
    record.newer = undefined;
    this.newest!.newer = record;
    this.newest = record;
  }

  private evictOldest(): void {
    const oldest = this.oldest;
    if (!oldest) return;
    this.oldest = oldest.newer;
    if (this.oldest) this.oldest.older = undefined;
    else this.newest = undefined;
    oldest.newer = undefined;
    oldest.held = false;
    this.records.delete(oldest.id);
    this.bytes -= oldest.bytes;
  }
}

/**
 * What the inventory keeps of a resource's attributes: the first MAX_KEPT_ATTRIBUTES, JSON-ready,
 * strings and keys cut to MAX_KEPT_VALUE_LENGTH; identity attributes first whatever their place.
 * Costs O(MAX_KEPT_ATTRIBUTES) whatever the resource holds.
 */
function keptAttributes(attributes: Attributes): { attributes: Record<string, unknown>; source: Attributes; complete: boolean; omitted: number; bytes: number } {
  const out: Record<string, unknown> = {};
  const source = new Map<string, AttrValue>();
  let complete = omittedValues(attributes) === 0;
  let bytes = 0;
  let count = 0;
  const add = (key: string, value: AttrValue): void => {
    const k = cut(key);
    if (k in out) return;
    const budget = { chars: MAX_KEPT_VALUE_LENGTH, cut: false };
    const json = toJson(value, budget);
    if (budget.cut || k !== key) complete = false;
    else source.set(key, value);
    out[k] = json;
    bytes += 2 * k.length + 2 * (MAX_KEPT_VALUE_LENGTH - budget.chars) + 16;
    count++;
  };
  for (const key of IDENTITY_KEYS) {
    const value = attributes.get(key);
    if (value !== undefined) add(key, value);
  }
  for (const [key, value] of attributes) {
    if (count >= MAX_KEPT_ATTRIBUTES) break;
    if (!IDENTITY_KEYS.includes(key)) add(key, value);
  }
  const omitted = attributes.size - count + omittedValues(attributes);
  if (omitted > 0) complete = false;
  return { attributes: out, source, complete, omitted, bytes };
}

/** Bound on the resource bytes kept per instance (64 attributes of 256 characters fit). */
export const MAX_KEPT_RESOURCE_BYTES = 48 * 1024;

/**
 * A copy of a ResourceSpans / ResourceMetrics without its scopes (their spans or metrics), or
 * undefined when larger than MAX_KEPT_RESOURCE_BYTES or malformed (a block read unchecked).
 */
function resourceWithoutScopes(block: Uint8Array): Uint8Array | undefined {
  const runs: [number, number][] = [];
  let size = 0;
  try {
    const reader = new WireReader(block, 0, block.length);
    while (!reader.done) {
      const start = reader.pos;
      const tag = reader.tag();
      reader.skip(tag & 7);
      if (tag === RESOURCE_ITEMS.scopes) continue;
      runs.push([start, reader.pos]);
      size += reader.pos - start;
      if (size > MAX_KEPT_RESOURCE_BYTES) return undefined;
    }
  } catch (err) {
    if (err instanceof WireFormatError) return undefined;
    throw err;
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const [s, e] of runs) {
    out.set(block.subarray(s, e), at);
    at += e - s;
  }
  return out;
}

const IDENTITY_KEYS = [INSTANCE_ID, 'service.name', 'host.name'];

function cut(text: string, max = MAX_KEPT_VALUE_LENGTH): string {
  return text.length <= max ? text : text.slice(0, max) + TRUNCATION_MARK;
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}

/** JSON-ready form of a value, strings cut and nested values bounded by the budget of characters. */
function toJson(value: AttrValue, budget: { chars: number; cut: boolean }): unknown {
  if (typeof value === 'string') {
    const text = cut(value, Math.max(budget.chars, 0));
    if (text !== value) budget.cut = true;
    budget.chars -= Math.min(value.length, Math.max(budget.chars, 0));
    return text;
  }
  budget.chars -= 8;
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Uint8Array) {
    if (value.length > MAX_KEPT_VALUE_LENGTH) budget.cut = true;
    return toJson(Buffer.from(value.subarray(0, MAX_KEPT_VALUE_LENGTH)).toString('base64'), budget);
  }
  if (Array.isArray(value)) {
    const items: unknown[] = [];
    for (const item of value as readonly AttrValue[]) {
      if (budget.chars <= 0) {
        budget.cut = true;
        break;
      }
      items.push(toJson(item, budget));
    }
    return items;
  }
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      if (budget.chars <= 0) {
        budget.cut = true;
        break;
      }
      out[k] = toJson(v, budget);
    }
    return out;
  }
  return value;
}
