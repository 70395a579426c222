import type { AttrValue, Attributes } from '../pdata/attributes';
import type { ResourceBlock, Signal } from '../pdata/batch';
import { INSTANCE_ID, pidOfInstanceId } from '../processors/filter/selectors';

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

interface InstanceRecord {
  readonly id: string;
  /** As decoded from the first resource seen, for deciding again when filter lists change. */
  readonly source: Attributes;
  readonly attributes: Record<string, unknown>;
  readonly firstSeen: number;
  lastSeen: number;
  readonly spans: Rate;
  readonly points: Rate;
  kept: boolean | null;
  selector: string | null;
  /** The filter processor whose decision `kept` is. */
  decidedBy: string | null;
}

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
  readonly attributes: Record<string, unknown>;
}

export class Inventory {
  private readonly records = new Map<string, InstanceRecord>();

  constructor(private readonly clock: () => number = Date.now) {}

  /** Records that a resource arrived (called by receivers for every resource). */
  observe(block: ResourceBlock, signal: Signal): void {
    const record = this.recordFor(block.attributes);
    const now = this.clock();
    record.lastSeen = now;
    (signal === 'traces' ? record.spans : record.points).add(block.itemCount, now);
  }

  /** Records a filter decision for a resource's instance. */
  decide(attributes: Attributes, kept: boolean, selector: string | null, filterId: string | null = null): void {
    const record = this.recordFor(attributes);
    record.kept = kept;
    record.selector = selector;
    record.decidedBy = filterId;
  }

  /** Decides again, for the instances last decided by `filterId`, after its lists changed. */
  redecide(filterId: string, decide: (attributes: Attributes) => { kept: boolean; selector: string | null }): void {
    for (const record of this.records.values()) {
      if (record.decidedBy !== filterId) continue;
      const decision = decide(record.source);
      record.kept = decision.kept;
      record.selector = decision.selector;
    }
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
        };
      });
  }

  private recordFor(attributes: Attributes): InstanceRecord {
    const idValue = attributes.get(INSTANCE_ID);
    const id = typeof idValue === 'string' ? idValue : '';
    let record = this.records.get(id);
    if (!record) {
      if (this.records.size >= MAX_INSTANCES) this.evictOldest();
      const now = this.clock();
      record = {
        id,
        source: attributes,
        attributes: Object.fromEntries([...attributes].map(([k, v]) => [k, toJson(v)])),
        firstSeen: now,
        lastSeen: now,
        spans: new Rate(now),
        points: new Rate(now),
        kept: null,
        selector: null,
        decidedBy: null,
      };
      this.records.set(id, record);
    }
    return record;
  }

  private evictOldest(): void {
    let oldest: InstanceRecord | undefined;
    for (const record of this.records.values()) if (!oldest || record.lastSeen < oldest.lastSeen) oldest = record;
    if (oldest) this.records.delete(oldest.id);
  }
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}

function toJson(value: AttrValue): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Uint8Array) return Buffer.from(value).toString('base64');
  if (Array.isArray(value)) return (value as readonly AttrValue[]).map(toJson);
  if (value !== null && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toJson(v)]));
  return value;
}
