import { DEFAULT_POOL, type PoolSpec } from './obi';

// Named load shapes (`npm run bench -- --shapes ...`): the request sizes, resource counts and
// kept fractions users send. OBI batches up to 4,096 spans per request; a sidecar keeping one or
// two processes of a busy host sees a low kept fraction over a few resources.

export interface Shape {
  readonly name: string;
  readonly description: string;
  readonly pool: PoolSpec;
  /** gRPC: HTTP/2 sessions the load is spread over (round robin). HTTP/1.1 always opens one connection per request in flight. */
  readonly connections: number;
}

const shape = (name: string, description: string, pool: Partial<PoolSpec>, connections = 1): Shape => ({
  name,
  description,
  pool: { ...DEFAULT_POOL, ...pool },
  connections,
});

export const SHAPES: readonly Shape[] = [
  shape('default', '200 spans over 40 resources, 20 kept (50 %), 100 keep selectors', {}),
  // The shape of the issue that found the smaller lead: ~100 spans over 8 processes, 2 of them kept.
  shape('obi-sidecar', '96 spans over 8 processes, 2 kept (25 %)', {
    resourcesPerRequest: 8, keptPerRequest: 2, spansPerResource: 12, keptInstances: 2, droppedInstances: 6,
  }),
  shape('kept-2pct', '200 spans over 50 resources, 1 kept (2 %)', {
    resourcesPerRequest: 50, keptPerRequest: 1, spansPerResource: 4, keptInstances: 10, droppedInstances: 100,
  }),
  shape('kept-25pct', '200 spans over 40 resources, 10 kept (25 %)', { keptPerRequest: 10 }),
  shape('kept-100pct', '200 spans over 20 resources, all kept', {
    resourcesPerRequest: 20, keptPerRequest: 20, spansPerResource: 10, droppedInstances: 0,
  }),
  shape('one-span-resources', '200 resources of 1 span each, 50 kept (25 %)', {
    resourcesPerRequest: 200, keptPerRequest: 50, spansPerResource: 1, keptInstances: 100, droppedInstances: 200,
  }),
  // OBI's largest batch; a smaller pool keeps the load generator's memory reasonable.
  shape('obi-batch-4096', '4,096 spans over 16 processes, 4 kept (25 %)', {
    requests: 24, resourcesPerRequest: 16, keptPerRequest: 4, spansPerResource: 256, keptInstances: 4, droppedInstances: 12,
  }),
  shape('four-connections', '200 spans over 40 resources, 20 kept (50 %), over 4 gRPC connections', {}, 4),
];

/**
 * Requests the closed loop keeps in flight when `--concurrency` is not given: about 24,576 spans
 * (256 obi-sidecar requests), at least 16, at most 256. With 16 in flight a server taking ~100-span
 * requests waited on the loop's round trips (spansieve's core 0.82-0.94 busy at its maximum); with
 * this much work in flight its core is 0.97-1.00 busy (docs/performance.md, "Requests in flight").
 */
export function closedLoopConcurrency(spansPerRequest: number, given: number | undefined): number {
  if (given !== undefined) return given;
  return Math.min(256, Math.max(16, Math.ceil(24_576 / spansPerRequest)));
}

export const SHAPE_NAMES: readonly string[] = SHAPES.map((s) => s.name);

export function shapeNamed(name: string): Shape {
  const found = SHAPES.find((s) => s.name === name);
  if (!found) throw new Error(`unknown shape ${JSON.stringify(name)}; one of ${SHAPE_NAMES.join(', ')}, or all`);
  return found;
}
