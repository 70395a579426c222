import type { Attributes } from '../pdata/attributes';
import type { DroppedTrace, SamplingRecorder, SamplingView } from '../component/component';

// What the filters and samplers did, per service (service.name): spans seen, kept by a filter,
// kept by a sampler; traces decided per sampling policy; the last traces sampled out. Fed by
// receivers (through the Inventory), filters and sampling processors, once per resource; read by
// the admin API (GET /api/v1/sampling). Totals since the process started (kept across reloads).

/** Sampled-out traces kept for the admin API, newest first. */
export const MAX_RECENT_DROPPED = 100;
/** Services (and processor/policy pairs) counted; past it the first counted goes. */
export const MAX_SAMPLING_SERVICES = 1000;
const MAX_NAME_LENGTH = 256;

interface ServiceCounts {
  readonly service: string | null;
  seen: number;
  filterDecided: boolean;
  keptByFilter: number;
  samplers: Map<string, { seen: number; kept: number }>;
  /** False once evicted (MAX_SAMPLING_SERVICES): a cached reference to it is then stale. */
  held: boolean;
}

interface PolicyCounts {
  readonly processor: string;
  readonly policy: string | null;
  sampled: number;
  notSampled: number;
}

export class SamplingStats implements SamplingRecorder {
  private readonly services = new Map<string, ServiceCounts>();
  private readonly policies = new Map<string, PolicyCounts>();
  /** processor -> policy -> its entry in `policies`, so that a decision needs no key string (one call per trace). */
  private readonly policyIndex = new Map<string, Map<string | null, PolicyCounts>>();
  /** The resource attributes of the last countsFor call and their counts (a sampler reports the parts of a block one after another). */
  private lastAttributes: Attributes | undefined;
  private lastCounts: ServiceCounts | undefined;
  /** Counts by attributes object: the receiver hands out one object per distinct resource, so a resource seen before costs one lookup. */
  private readonly byAttributes = new WeakMap<Attributes, ServiceCounts>();
  /** A ring of the recent sampled-out traces, as parallel arrays (no object per trace: this is on the data path); `next` is where the next one goes. */
  private readonly recentTrace: DroppedTrace[] = [];
  private readonly recentAt: number[] = [];
  private next = 0;

  constructor(private readonly clock: () => number = Date.now) {}

  /** Spans received for a resource (receivers, through the Inventory). */
  seen(attributes: Attributes, spans: number): void {
    this.countsFor(attributes).seen += spans;
  }

  /** A filter's decision on a resource's spans. */
  filtered(attributes: Attributes, spans: number, kept: boolean): void {
    const counts = this.countsFor(attributes);
    counts.filterDecided = true;
    if (kept) counts.keptByFilter += spans;
  }

  sampled(processor: string, attributes: Attributes, seen: number, kept: number): void {
    const samplers = this.countsFor(attributes).samplers;
    let s = samplers.get(processor);
    if (!s) samplers.set(processor, (s = { seen: 0, kept: 0 }));
    s.seen += seen;
    s.kept += kept;
  }

  traceDecided(processor: string, policy: string | null, kept: boolean): void {
    let p = this.policyIndex.get(processor)?.get(policy);
    if (!p) {
      const key = `${processor}\u0000${policy ?? ''}\u0000${policy === null ? 0 : 1}`;
      p = { processor, policy, sampled: 0, notSampled: 0 };
      this.policies.set(key, p);
      let byPolicy = this.policyIndex.get(processor);
      if (!byPolicy) this.policyIndex.set(processor, (byPolicy = new Map<string | null, PolicyCounts>()));
      byPolicy.set(policy, p);
      if (this.policies.size > MAX_SAMPLING_SERVICES) {
        const oldest = this.policies.keys().next().value!;
        const gone = this.policies.get(oldest)!;
        this.policies.delete(oldest);
        this.policyIndex.get(gone.processor)?.delete(gone.policy);
      }
    }
    if (kept) p.sampled++;
    else p.notSampled++;
  }

  /** Keeps the caller's object as is (it must not change it); the service name is cut when shown. */
  dropped(trace: DroppedTrace): void {
    this.recentTrace[this.next] = trace;
    this.recentAt[this.next] = this.clock();
    this.next = this.next + 1 === MAX_RECENT_DROPPED ? 0 : this.next + 1;
  }

  view(): SamplingView {
    const services = [...this.services.values()]
      .sort((a, b) => (a.service ?? '').localeCompare(b.service ?? ''))
      .map((c) => {
        const samplers = [...c.samplers].map(([processor, s]) => ({ processor, seen: s.seen, kept: s.kept })).sort((a, b) => a.processor.localeCompare(b.processor));
        return {
          service: c.service,
          seen: c.seen,
          keptByFilter: c.filterDecided ? c.keptByFilter : null,
          // Samplers in a row keep a subset of each other's: the last (fewest kept) is what went on.
          keptBySampling: samplers.length === 0 ? null : Math.min(...samplers.map((s) => s.kept)),
          samplers,
        };
      });
    const n = this.recentTrace.length;
    const recentDropped = [];
    for (let i = 1; i <= n; i++) {
      const at = (this.next - i + n) % n;
      const t = this.recentTrace[at]!;
      recentDropped.push({ traceId: t.traceId, service: t.service === null ? null : cut(t.service), processor: t.processor, policy: t.policy, reason: t.reason, at: new Date(this.recentAt[at]!).toISOString() });
    }
    const policies = [...this.policies.values()].map((p) => ({ ...p })).sort((a, b) => a.processor.localeCompare(b.processor) || (a.policy ?? '').localeCompare(b.policy ?? ''));
    return { services, policies, recentDropped, maxRecentDropped: MAX_RECENT_DROPPED };
  }

  private countsFor(attributes: Attributes): ServiceCounts {
    if (attributes === this.lastAttributes) return this.lastCounts!;
    let counts = this.byAttributes.get(attributes);
    if (counts === undefined || !counts.held) {
      counts = this.countsByName(attributes);
      this.byAttributes.set(attributes, counts);
    }
    // An evicted entry is never the cached one: the entry just added is.
    this.lastAttributes = attributes;
    this.lastCounts = counts;
    return counts;
  }

  private countsByName(attributes: Attributes): ServiceCounts {
    const name = attributes.get('service.name');
    const service = typeof name === 'string' ? cut(name) : null;
    // A service without a name gets a key no name can take.
    const key = service ?? '\u0000';
    let counts = this.services.get(key);
    if (!counts) {
      counts = { service, seen: 0, filterDecided: false, keptByFilter: 0, samplers: new Map(), held: true };
      this.services.set(key, counts);
      if (this.services.size > MAX_SAMPLING_SERVICES) {
        const [oldestKey, oldest] = this.services.entries().next().value!;
        oldest.held = false;
        this.services.delete(oldestKey);
      }
    }
    return counts;
  }
}

function cut(text: string): string {
  return text.length <= MAX_NAME_LENGTH ? text : text.slice(0, MAX_NAME_LENGTH) + '…';
}
