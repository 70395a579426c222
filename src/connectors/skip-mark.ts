import type { Attributes, AttrValue } from '../pdata/attributes';
import type { ResourceBlock } from '../pdata/batch';
import { WantedAttributes, type SpanView } from '../pdata/spans';

// OBI (and Beyla) put `span.metrics.skip=true` on spans whose RED metrics and service graph they
// already emit themselves: as a span attribute (bool) on the spans OBI generates, as a resource
// attribute (string "true", through OTEL_RESOURCE_ATTRIBUTES) on SDK-instrumented services Beyla
// injects. Trace-derived metrics of such spans would count every call twice.

export const SPAN_METRICS_SKIP = 'span.metrics.skip';
const KEY_BYTES = Buffer.from(SPAN_METRICS_SKIP, 'utf8');
const WANTED = new WantedAttributes([SPAN_METRICS_SKIP]);

/** bool true, or the string "true" in any case, as Go's strconv.ParseBool reads it. */
export function isSkipMark(value: AttrValue | undefined): boolean {
  return value === true || (typeof value === 'string' && (value === 'true' || value === 'TRUE' || value === 'True' || value === 't' || value === 'T' || value === '1'));
}

/**
 * How a block's spans are to be treated: 'all' when its resource is marked, 'spans' when the key
 * occurs somewhere in its bytes (some span may be marked: check each), 'none' otherwise. The byte
 * search is one native scan per block, so unmarked traffic pays no per-span cost.
 */
export function skipScope(block: ResourceBlock, resourceAttributes: Attributes = block.attributes): 'all' | 'spans' | 'none' {
  if (isSkipMark(resourceAttributes.get(SPAN_METRICS_SKIP))) return 'all';
  const bytes = block.bytes;
  const haystack = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return haystack.indexOf(KEY_BYTES) >= 0 ? 'spans' : 'none';
}

export function spanIsMarked(span: SpanView): boolean {
  return isSkipMark(span.attribute(WANTED));
}
