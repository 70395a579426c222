import type { Node } from '../config/reader';

// Explicit-bucket histograms as the trace -> metrics connectors (spanmetrics, servicegraph) read
// their bounds and count into them.

export type HistogramUnit = 'ms' | 's';

/** Reads a list of durations ("2ms", "1s") as bounds in `unit`, checking that they increase. */
export function parseBuckets(node: Node, unit: HistogramUnit): number[] {
  const divider = unit === 'ms' ? 1 : 1000;
  const bounds: number[] = [];
  for (const item of node.list()) {
    if (typeof item.value === 'number' && item.value !== 0) {
      item.report(`expected a duration such as "100ms" or "2s", got ${item.value} (a bare number has no unit)`);
      continue;
    }
    const ms = item.duration(-1);
    if (ms < 0) continue;
    const bound = ms / divider;
    if (bounds.length > 0 && bound <= bounds[bounds.length - 1]!) {
      item.report('bucket bounds must be strictly increasing');
      continue;
    }
    bounds.push(bound);
  }
  return bounds;
}

/** Index of the first bound >= value (upper bounds are inclusive); bounds.length for the overflow bucket. */
export function bucketIndex(bounds: readonly number[], value: number): number {
  let lo = 0;
  let hi = bounds.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (bounds[mid]! < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
