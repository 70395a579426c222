import type { InstanceView, SamplingView } from '../component/component';
import type { DryRunResult } from '../component/live';

// With several workers (service::workers) each worker has its own inventory and sampling counts:
// a connection, and so an instance's requests, may land on any of them. The primary shows one
// view, merged here from what every worker answers.

/** One row per instance id: rates and seen-times over all workers, the rest from the worker that saw it last. */
export function mergeInstances(lists: readonly (readonly InstanceView[])[]): InstanceView[] {
  const byId = new Map<string, InstanceView>();
  for (const list of lists) {
    for (const view of list) {
      const other = byId.get(view.id);
      if (!other) {
        byId.set(view.id, view);
        continue;
      }
      const newer = view.lastSeen >= other.lastSeen ? view : other;
      byId.set(view.id, {
        ...newer,
        firstSeen: view.firstSeen < other.firstSeen ? view.firstSeen : other.firstSeen,
        spansPerSecond: view.spansPerSecond + other.spansPerSecond,
        metricPointsPerSecond: view.metricPointsPerSecond + other.metricPointsPerSecond,
      });
    }
  }
  return [...byId.values()].sort((a, b) => a.id.localeCompare(b.id));
}

type ServiceRow = SamplingView['services'][number];

function addNullable(a: number | null, b: number | null): number | null {
  return a === null && b === null ? null : (a ?? 0) + (b ?? 0);
}

/** Counts summed per service, sampler and policy; the newest sampled-out traces of all workers. */
export function mergeSampling(views: readonly SamplingView[]): SamplingView {
  const services = new Map<string | null, ServiceRow>();
  const policies = new Map<string, SamplingView['policies'][number]>();
  for (const view of views) {
    for (const row of view.services) {
      const other = services.get(row.service);
      if (!other) {
        services.set(row.service, row);
        continue;
      }
      const samplers = new Map(other.samplers.map((s) => [s.processor, s]));
      for (const s of row.samplers) {
        const o = samplers.get(s.processor);
        samplers.set(s.processor, o ? { processor: s.processor, seen: o.seen + s.seen, kept: o.kept + s.kept } : s);
      }
      services.set(row.service, {
        service: row.service,
        seen: other.seen + row.seen,
        keptByFilter: addNullable(other.keptByFilter, row.keptByFilter),
        keptBySampling: addNullable(other.keptBySampling, row.keptBySampling),
        samplers: [...samplers.values()].sort((a, b) => a.processor.localeCompare(b.processor)),
      });
    }
    for (const p of view.policies) {
      const key = JSON.stringify([p.processor, p.policy]);
      const o = policies.get(key);
      policies.set(key, o ? { ...p, sampled: o.sampled + p.sampled, notSampled: o.notSampled + p.notSampled } : p);
    }
  }
  const maxRecentDropped = Math.max(0, ...views.map((v) => v.maxRecentDropped));
  return {
    services: [...services.values()].sort((a, b) => (a.service ?? '').localeCompare(b.service ?? '')),
    policies: [...policies.values()].sort((a, b) => a.processor.localeCompare(b.processor) || (a.policy ?? '').localeCompare(b.policy ?? '')),
    recentDropped: views
      .flatMap((v) => v.recentDropped)
      .sort((a, b) => b.at.localeCompare(a.at))
      .slice(0, maxRecentDropped),
    maxRecentDropped,
  };
}

/** Every worker validated the same settings, so errors are the same; instances are merged by id (a decision wins over null). */
export function mergeDryRuns(results: readonly DryRunResult[]): DryRunResult {
  const errors = results.find((r) => r.errors.length > 0)?.errors;
  if (errors) return { errors, instances: [] };
  const byId = new Map<string, DryRunResult['instances'][number]>();
  for (const r of results) for (const i of r.instances) if (!byId.has(i.id) || byId.get(i.id)!.kept === null) byId.set(i.id, i);
  return { errors: [], instances: [...byId.values()].sort((a, b) => a.id.localeCompare(b.id)) };
}
