import { decodeAnyValue, type AttrValue } from '../pdata/attributes';
import type { ResourceBlock } from '../pdata/batch';
import type { SpanView } from '../pdata/spans';

// OBI (and Beyla) put `span.metrics.skip=true` on spans whose RED metrics and service graph they
// already emit themselves: as a span attribute (bool) on the spans OBI generates, as a resource
// attribute (string "true", through OTEL_RESOURCE_ATTRIBUTES) on SDK-instrumented services Beyla
// injects. Trace-derived metrics of such spans would count every call twice.

export const SPAN_METRICS_SKIP = 'span.metrics.skip';
const KEY_BYTES = Buffer.from(SPAN_METRICS_SKIP, 'utf8');

/** bool true, or the string "true" in any case, as Go's strconv.ParseBool reads it. */
export function isSkipMark(value: AttrValue | undefined): boolean {
  return value === true || (typeof value === 'string' && (value === 'true' || value === 'TRUE' || value === 'True' || value === 't' || value === 'T' || value === '1'));
}

/** Pass to forEachSpan so that the span walk notes the mark (see spanIsMarked). */
export const SKIP_MARK_KEY: Uint8Array = KEY_BYTES;

/** Whether a resource is marked: then none of its spans is counted. */
export function resourceIsMarked(block: ResourceBlock): boolean {
  return isSkipMark(block.attributes.get(SPAN_METRICS_SKIP));
}

/** Whether a span (walked by forEachSpan with SKIP_MARK_KEY) is marked. */
export function spanIsMarked(span: SpanView): boolean {
  if (span.markStart < 0) return false;
  return isSkipMark(span.markStart === span.markEnd ? null : decodeAnyValue(span.buf, span.markStart, span.markEnd));
}
