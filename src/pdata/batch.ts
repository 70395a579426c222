import type { Attributes } from './attributes';
import { encodeRepeatedField } from './wire';

export type Signal = 'traces' | 'metrics';

/**
 * One ResourceSpans or ResourceMetrics, kept as its encoded bytes. Its resource attributes are
 * decoded (processors decide on them); the spans or points inside are not, so a kept resource
 * leaves exactly as it arrived. Blocks are immutable and shared across fan-out.
 */
export interface ResourceBlock {
  readonly bytes: Uint8Array;
  readonly attributes: Attributes;
  /** Spans (traces) or data points (metrics) inside. */
  readonly itemCount: number;
}

/** The one data contract between components: a batch of resources of one signal. */
export class Batch {
  readonly itemCount: number;

  constructor(
    readonly signal: Signal,
    readonly resources: readonly ResourceBlock[],
  ) {
    let items = 0;
    for (const block of resources) items += block.itemCount;
    this.itemCount = items;
  }

  /** The batch as an ExportTraceServiceRequest / ExportMetricsServiceRequest (field 1 both); a Buffer. */
  toRequestBytes(): Buffer {
    return encodeRepeatedField(1, this.resources.map((block) => block.bytes));
  }

  withResources(resources: readonly ResourceBlock[]): Batch {
    return new Batch(this.signal, resources);
  }
}

export function itemNoun(signal: Signal): 'spans' | 'metric_points' {
  return signal === 'traces' ? 'spans' : 'metric_points';
}
