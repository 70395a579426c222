import type { Attributes } from './attributes';
import { EXPORT_REQUEST, fieldOf } from './fields';
import { encodeRepeatedField, varintSize } from './wire';

export type Signal = 'traces' | 'metrics';

const RESOURCES_FIELD = fieldOf(EXPORT_REQUEST.resources);
const RESOURCES_TAG_SIZE = varintSize(EXPORT_REQUEST.resources);

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
  /**
   * Set when the receiver counted the items without checking them, because no pipeline would keep
   * this resource. A component that keeps it anyway must check it first (checkDeferredBlock).
   */
  readonly unchecked?: boolean;
}

/** The one data contract between components: a batch of resources of one signal. */
export class Batch {
  readonly itemCount: number;
  /** The export request, when compact() has built it already. */
  private encoded: Buffer | undefined;

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
    return this.encoded ?? encodeRepeatedField(RESOURCES_FIELD, this.resources.map((block) => block.bytes));
  }

  /**
   * The same batch with its blocks copied into one new buffer laid out as its export request.
   * Received blocks are views into the whole request they came in; a batch that waits in a queue
   * would keep all of that request alive, dropped resources included. After compact() it holds
   * only its own bytes, and toRequestBytes() is free.
   */
  compact(): Batch {
    if (this.encoded) return this;
    const encoded = this.toRequestBytes();
    const tagSize = RESOURCES_TAG_SIZE;
    let pos = 0;
    const resources = this.resources.map((block): ResourceBlock => {
      pos += tagSize + varintSize(block.bytes.length);
      const bytes = encoded.subarray(pos, pos + block.bytes.length);
      pos += block.bytes.length;
      return { ...block, bytes };
    });
    const compacted = new Batch(this.signal, resources);
    compacted.encoded = encoded;
    return compacted;
  }

  withResources(resources: readonly ResourceBlock[]): Batch {
    return new Batch(this.signal, resources);
  }
}

export function itemNoun(signal: Signal): 'spans' | 'metric_points' {
  return signal === 'traces' ? 'spans' : 'metric_points';
}
