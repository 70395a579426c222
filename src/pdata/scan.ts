import { decodeKeyValues, isValidUtf8, type AttrValue, type Attributes } from './attributes';
import { Batch, type ResourceBlock, type Signal } from './batch';
import {
  EntityRefSpec,
  ExponentialHistogramDataPointSpec,
  HistogramDataPointSpec,
  InstrumentationScopeSpec,
  KeyValueSpec,
  NumberDataPointSpec,
  SpanSpec,
  SummaryDataPointSpec,
  captured,
  checkField,
  checkMessage,
  spec,
  str,
  sub,
  varint,
  type MessageSpec,
} from './schema';
import { EXPORT_REQUEST, METRIC, POINTS_HOLDER as DATA, RESOURCE, RESOURCE_ITEMS, SCOPE_ITEMS, fieldOf } from './fields';
import { Splice, rewriteScopes } from './splice';
import { WIRE_LEN, WireFormatError, WireReader, hashBytes } from './wire';

// Splits an export request into resource blocks straight from the wire: checks every byte that
// will be forwarded, decodes only resource attributes, counts spans / points. Items that are well
// formed but invalid (spans without valid ids, metrics without a name) are rejected, and only then
// is their resource rebuilt without them (on the wire: every other byte is kept as it arrived).

export interface ParsedRequest {
  readonly batch: Batch;
  /** Items refused as invalid: reported to the client as partial success. */
  readonly rejected: number;
  readonly rejectMessage: string;
}

const EMPTY_ATTRIBUTES: ReadonlyMap<string, AttrValue> = new Map();

// Field numbers of fields.ts's tags, for the checks that compare numbers (any wire type).
const RESOURCES_FIELD = fieldOf(EXPORT_REQUEST.resources);
const RESOURCE_FIELD = fieldOf(RESOURCE_ITEMS.resource);
const SCOPES_FIELD = fieldOf(RESOURCE_ITEMS.scopes);
const SCHEMA_URL_FIELD = fieldOf(RESOURCE_ITEMS.schema_url);
const ITEMS_FIELD = fieldOf(SCOPE_ITEMS.items);
const DATA_POINTS_FIELD = fieldOf(DATA.data_points);
const AGGREGATION_TEMPORALITY_FIELD = fieldOf(DATA.aggregation_temporality);
const IS_MONOTONIC_FIELD = fieldOf(DATA.is_monotonic);
const METRIC_NAME_FIELD = fieldOf(METRIC.name);

/**
 * Decoded attributes by the exact bytes of their Resource message. OBI sends the same resource
 * bytes for a process in every batch, so after the first request a resource costs a hash, one
 * native compare and no allocation, instead of a check and a decode of every attribute. Keyed by
 * a hash of the bytes; an entry matches only when its bytes are equal. Bounded: cleared when full.
 */
interface CachedResource {
  readonly bytes: Buffer;
  readonly attributes: ReadonlyMap<string, AttrValue>;
  /** Another resource whose bytes have the same hash. */
  readonly next: CachedResource | undefined;
}
const resourceCache = new Map<number, CachedResource>();
/** Entries added since the last clear (an upper bound: chains dropped by the chain cap still count). */
let resourceCacheEntries = 0;
const RESOURCE_CACHE_MAX_ENTRIES = 4096;
/** Entries kept per hash value; beyond that the newest replaces the chain. */
const RESOURCE_CACHE_MAX_CHAIN = 4;
/** Bound on the cached bytes' total size (the maps are about as large again). */
const RESOURCE_CACHE_MAX_TOTAL_BYTES = 8 * 1024 * 1024;
/** Larger resources are decoded each time. */
const RESOURCE_CACHE_MAX_BYTES = 64 * 1024;
let resourceCacheBytes = 0;

function resourceAttributes(buf: Uint8Array, start: number, end: number): ReadonlyMap<string, AttrValue> {
  const length = end - start;
  const cacheable = length <= RESOURCE_CACHE_MAX_BYTES;
  const hash = cacheable ? hashBytes(buf, start, end) : 0;
  let chain = 0;
  if (cacheable) {
    for (let entry = resourceCache.get(hash); entry !== undefined; entry = entry.next, chain++) {
      if (entry.bytes.length === length && entry.bytes.compare(buf, start, end) === 0) return entry.attributes;
    }
  }
  const attributes = decodeKeyValues(buf, start, end, RESOURCE.attributes);
  checkMessage(buf, start, end, ResourceSpec);
  if (cacheable) {
    if (resourceCacheEntries >= RESOURCE_CACHE_MAX_ENTRIES || resourceCacheBytes + length > RESOURCE_CACHE_MAX_TOTAL_BYTES) {
      resourceCache.clear();
      resourceCacheEntries = 0;
      resourceCacheBytes = 0;
    }
    // A copy: the request's buffer must not be kept alive (or seen changed) by the cache.
    const bytes = Buffer.from(buf.subarray(start, end));
    // Chains stay short whatever the input, so a lookup costs a few compares at most.
    const next = chain < RESOURCE_CACHE_MAX_CHAIN ? resourceCache.get(hash) : undefined;
    resourceCache.set(hash, { bytes, attributes, next });
    resourceCacheEntries++;
    resourceCacheBytes += length;
  }
  return attributes;
}

/** Whether any pipeline may keep a resource with these attributes (Consumer.mayKeep). */
export type ResourcePredicate = (attributes: Attributes) => boolean;

/**
 * Splits and checks an export request. With `mayKeep`, a resource no pipeline keeps has only its
 * spans or points counted, not checked: they are dropped, so their content cannot reach anyone.
 */
export function parseRequest(signal: Signal, buf: Uint8Array, mayKeep?: ResourcePredicate): ParsedRequest {
  const scanItem = signal === 'traces' ? scanSpan : scanMetric;
  const container = signal === 'traces' ? 'resource_spans' : 'resource_metrics';
  const blocks: ResourceBlock[] = [];
  const reasons: string[] = [];
  let rejected = 0;
  const reader = new WireReader(buf, 0, buf.length);
  let index = 0;
  while (!reader.done) {
    const tag = reader.tag();
    if (tag !== EXPORT_REQUEST.resources) {
      if (Math.floor(tag / 8) === RESOURCES_FIELD) throw new WireFormatError(`${container}: wrong wire type ${tag & 7}`);
      reader.skip(tag & 7);
      continue;
    }
    const resourceIndex = index++;
    let start: number;
    let scanned: ScannedResource;
    try {
      start = reader.lengthDelimited();
      scanned = scanResource(signal, buf, start, reader.pos, mayKeep);
    } catch (err) {
      throw err instanceof WireFormatError ? err.at(`${container}[${resourceIndex}]`) : err;
    }
    if (scanned.invalid === undefined) {
      blocks.push({ bytes: buf.subarray(start, reader.pos), attributes: scanned.attributes, itemCount: scanned.items, unchecked: scanned.unchecked });
      continue;
    }
    const repaired = repairResource(buf.subarray(start, reader.pos), scanItem);
    rejected += scanned.items - repaired.items;
    reasons.push(...scanned.invalid.map((reason) => `${container}[${resourceIndex}].${reason}`));
    blocks.push({ bytes: repaired.bytes, attributes: scanned.attributes, itemCount: repaired.items, unchecked: false });
  }
  const noun = signal === 'traces' ? 'spans' : 'data points';
  const rejectMessage =
    rejected === 0
      ? ''
      : `${rejected} ${noun} rejected: ${reasons.slice(0, 3).join('; ')}${reasons.length > 3 ? `; and ${reasons.length - 3} more` : ''}`;
  return { batch: new Batch(signal, blocks), rejected, rejectMessage };
}

/**
 * A block the receiver only counted, checked now because a component keeps it after all. Throws
 * WireFormatError when it is malformed or holds an invalid item (too late to reject just that item).
 */
export function checkDeferredBlock(signal: Signal, block: ResourceBlock): ResourceBlock {
  const scanned = scanResource(signal, block.bytes, 0, block.bytes.length, undefined);
  if (scanned.invalid !== undefined) throw new WireFormatError(scanned.invalid.join('; '));
  return { bytes: block.bytes, attributes: scanned.attributes, itemCount: scanned.items, unchecked: false };
}

interface ScannedResource {
  attributes: ReadonlyMap<string, AttrValue>;
  items: number;
  /** One reason per invalid item, with its location inside the resource (undefined: none). */
  invalid: string[] | undefined;
  /** Items were counted, not checked (no pipeline keeps this resource). */
  unchecked: boolean;
}

/**
 * Where an item is inside its resource. One instance is reused while scanning; its text is built
 * only when an item is invalid, since building it per span costs more than checking the span.
 */
class ItemLocation {
  scopeName = '';
  scopeIndex = 0;
  itemName = '';
  itemIndex = 0;

  toString(): string {
    return this.scopeName ? `${this.scopeName}[${this.scopeIndex}].${this.itemName}[${this.itemIndex}]` : '';
  }
}

const NOWHERE = new ItemLocation();
const resourceLocation = new ItemLocation();
const resourceReader = new WireReader(new Uint8Array(0), 0, 0);
const sharedResult: ScannedResource = { attributes: EMPTY_ATTRIBUTES, items: 0, invalid: undefined, unchecked: false };

function addInvalid(result: ScannedResource, reason: string): void {
  (result.invalid ??= []).push(reason);
}

type ItemScanner = (buf: Uint8Array, start: number, end: number, at: ItemLocation, result: ScannedResource) => void;

function scanResource(signal: Signal, buf: Uint8Array, start: number, end: number, mayKeep: ResourcePredicate | undefined): ScannedResource {
  return signal === 'traces'
    ? scanResourceLevel(buf, start, end, 'scope_spans', 'spans', scanSpan, countSpan, mayKeep)
    : scanResourceLevel(buf, start, end, 'scope_metrics', 'metrics', scanMetric, countMetric, mayKeep);
}

function scanResourceLevel(
  buf: Uint8Array,
  start: number,
  end: number,
  scopeName: string,
  itemName: string,
  scanItem: ItemScanner,
  countItem: ItemScanner,
  mayKeep: ResourcePredicate | undefined,
): ScannedResource {
  // One result, reader and location for every resource (scans do not nest): the caller reads the
  // result before the next scan. Allocating them per resource showed in the allocation profile.
  const result = sharedResult;
  result.attributes = EMPTY_ATTRIBUTES;
  result.items = 0;
  result.invalid = undefined;
  result.unchecked = false;
  // OTLP writers put the resource first; scopes before it (or without one) are always checked.
  let countOnly = false;
  const reader = resourceReader.reset(buf, start, end);
  const location = resourceLocation;
  location.scopeName = scopeName;
  location.itemName = itemName;
  let scopeIndex = 0;
  while (!reader.done) {
    const tag = reader.tag();
    const field = Math.floor(tag / 8);
    if (field === RESOURCE_FIELD) {
      expectLen(tag, 'resource');
      const s = reader.lengthDelimited();
      try {
        result.attributes = resourceAttributes(buf, s, reader.pos);
      } catch (err) {
        throw err instanceof WireFormatError ? err.at('resource') : err;
      }
      countOnly = mayKeep !== undefined && !mayKeep(result.attributes);
    } else if (field === SCOPES_FIELD) {
      location.scopeIndex = scopeIndex++;
      try {
        if ((tag & 7) !== WIRE_LEN) throw new WireFormatError(`wire type ${tag & 7}, expected 2`);
        const s = reader.lengthDelimited();
        scanScope(buf, s, reader.pos, location, countOnly ? countItem : scanItem, result);
        result.unchecked ||= countOnly;
      } catch (err) {
        throw err instanceof WireFormatError ? err.at(`${scopeName}[${location.scopeIndex}]`) : err;
      }
    } else if (field === SCHEMA_URL_FIELD) {
      checkField(reader, ScopeHolder, SCHEMA_URL_FIELD, tag & 7);
    } else {
      reader.skip(tag & 7);
    }
  }
  // A second resource field (the last one wins) may have changed the answer.
  if (result.unchecked && mayKeep!(result.attributes)) return scanResourceLevel(buf, start, end, scopeName, itemName, scanItem, countItem, undefined);
  return result;
}

/** Reused for every scope: scanScope does not nest. */
const scopeReader = new WireReader(new Uint8Array(0), 0, 0);

function scanScope(buf: Uint8Array, start: number, end: number, at: ItemLocation, scanItem: ItemScanner, result: ScannedResource): void {
  const reader = scopeReader.reset(buf, start, end);
  let itemIndex = 0;
  while (!reader.done) {
    const tag = reader.tag();
    const field = Math.floor(tag / 8);
    if (field === ITEMS_FIELD) {
      at.itemIndex = itemIndex++;
      try {
        if ((tag & 7) !== WIRE_LEN) throw new WireFormatError(`wire type ${tag & 7}, expected 2`);
        const s = reader.lengthDelimited();
        scanItem(buf, s, reader.pos, at, result);
      } catch (err) {
        throw err instanceof WireFormatError ? err.at(`${at.itemName}[${at.itemIndex}]`) : err;
      }
    } else {
      checkField(reader, ScopeHolder, field, tag & 7);
    }
  }
}

const ResourceSpec: MessageSpec = spec('Resource', { 1: sub('attributes', KeyValueSpec), 2: varint('dropped_attributes_count'), 3: sub('entity_refs', EntityRefSpec) });
/** Fields 1 (scope) and 3 (schema_url) of ScopeSpans / ScopeMetrics; field 3 (schema_url) of ResourceSpans / ResourceMetrics too. */
const ScopeHolder: MessageSpec = spec('Scope', { 1: sub('scope', InstrumentationScopeSpec), 3: str('schema_url') });

function expectLen(tag: number, name: string): void {
  if ((tag & 7) !== WIRE_LEN) throw new WireFormatError(`wire type ${tag & 7}, expected 2`).at(name);
}

function scanSpan(buf: Uint8Array, start: number, end: number, at: ItemLocation, result: ScannedResource): void {
  result.items++;
  // checkMessage leaves where trace_id (slot 0) and span_id (slot 1) were in `captured`.
  captured[1] = 0;
  captured[3] = 0;
  checkMessage(buf, start, end, SpanSpec);
  const traceIdLen = captured[1];
  const spanIdLen = captured[3];
  const traceIdZero = allZero(buf, captured[0]!, captured[0]! + traceIdLen);
  const spanIdZero = allZero(buf, captured[2]!, captured[2]! + spanIdLen);
  if (traceIdLen !== 16 || traceIdZero) addInvalid(result, `${at.toString()}: trace_id ${describeId(traceIdLen, traceIdZero, 16)}`);
  else if (spanIdLen !== 8 || spanIdZero) addInvalid(result, `${at.toString()}: span_id ${describeId(spanIdLen, spanIdZero, 8)}`);
}

/** Counts a span of a resource no pipeline keeps; scanScope has checked its length. */
function countSpan(_buf: Uint8Array, _start: number, _end: number, _at: ItemLocation, result: ScannedResource): void {
  result.items++;
}

function describeId(len: number, zero: boolean, want: number): string {
  if (len === 0) return 'is missing';
  if (len !== want) return `has ${len} bytes, expected ${want}`;
  return zero ? 'is all zeros' : 'is invalid';
}

function allZero(buf: Uint8Array, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (buf[i] !== 0) return false;
  return true;
}

/** Metric.data fields and the point message each holds. */
const METRIC_DATA: Record<number, { name: string; point: MessageSpec }> = {
  5: { name: 'gauge', point: NumberDataPointSpec },
  7: { name: 'sum', point: NumberDataPointSpec },
  9: { name: 'histogram', point: HistogramDataPointSpec },
  10: { name: 'exponential_histogram', point: ExponentialHistogramDataPointSpec },
  11: { name: 'summary', point: SummaryDataPointSpec },
};

const MetricSpec: MessageSpec = spec('Metric', { 1: str('name'), 2: str('description'), 3: str('unit'), 12: sub('metadata', KeyValueSpec) });

function scanMetric(buf: Uint8Array, start: number, end: number, at: ItemLocation, result: ScannedResource): void {
  const reader = new WireReader(buf, start, end);
  let nameLen = 0;
  let points = 0;
  while (!reader.done) {
    const tag = reader.tag();
    const field = Math.floor(tag / 8);
    const data = METRIC_DATA[field];
    if (data !== undefined) {
      expectLen(tag, data.name);
      const s = reader.lengthDelimited();
      try {
        points += scanMetricData(buf, s, reader.pos, data.point);
      } catch (err) {
        throw err instanceof WireFormatError ? err.at(data.name) : err;
      }
    } else if (field === METRIC_NAME_FIELD) {
      expectLen(tag, 'name');
      const s = reader.lengthDelimited();
      if (!isValidUtf8(buf, s, reader.pos)) throw new WireFormatError('string is not valid UTF-8').at('name');
      nameLen = reader.pos - s;
    } else {
      checkField(reader, MetricSpec, field, tag & 7);
    }
  }
  result.items += points;
  if (nameLen <= 0) addInvalid(result, `${at.toString()}: metric name is empty`);
}

/** Counts a metric's points, reading only the framing of the metric and its data field. */
function countMetric(buf: Uint8Array, start: number, end: number, _at: ItemLocation, result: ScannedResource): void {
  const reader = new WireReader(buf, start, end);
  while (!reader.done) {
    const tag = reader.tag();
    if ((tag & 7) === WIRE_LEN && METRIC_DATA[Math.floor(tag / 8)] !== undefined) {
      const s = reader.lengthDelimited();
      const data = new WireReader(buf, s, reader.pos);
      while (!data.done) {
        const dataTag = data.tag();
        if (dataTag === DATA.data_points) result.items++;
        data.skip(dataTag & 7);
      }
    } else {
      reader.skip(tag & 7);
    }
  }
}

function scanMetricData(buf: Uint8Array, start: number, end: number, point: MessageSpec): number {
  const reader = new WireReader(buf, start, end);
  let points = 0;
  while (!reader.done) {
    const tag = reader.tag();
    const field = Math.floor(tag / 8);
    if (field === DATA_POINTS_FIELD) {
      expectLen(tag, `data_points[${points}]`);
      const s = reader.lengthDelimited();
      try {
        checkMessage(buf, s, reader.pos, point);
      } catch (err) {
        throw err instanceof WireFormatError ? err.at(`data_points[${points}]`) : err;
      }
      points++;
    } else {
      // aggregation_temporality and is_monotonic are varints.
      if ((field === AGGREGATION_TEMPORALITY_FIELD || field === IS_MONOTONIC_FIELD) && (tag & 7) !== 0) throw new WireFormatError(`field ${field}: wire type ${tag & 7}, expected 0`);
      reader.skip(tag & 7);
    }
  }
  return points;
}

interface Repaired {
  bytes: Uint8Array;
  items: number;
}

/**
 * Rebuilds an already scanned ResourceSpans / ResourceMetrics without its invalid items: only the
 * length prefixes of its scopes are rewritten; every other field, known or not, keeps its bytes.
 */
function repairResource(bytes: Uint8Array, scanItem: ItemScanner): Repaired {
  let items = 0;
  const out = rewriteScopes(bytes, (start, end) => {
    const kept = new Splice(bytes, start);
    const scope = new WireReader(bytes, start, end);
    while (!scope.done) {
      const itemFieldStart = scope.pos;
      const itemTag = scope.tag();
      if (itemTag !== SCOPE_ITEMS.items) {
        scope.skip(itemTag & 7);
        continue;
      }
      const s = scope.lengthDelimited();
      const verdict: ScannedResource = { attributes: EMPTY_ATTRIBUTES, items: 0, invalid: undefined, unchecked: false };
      scanItem(bytes, s, scope.pos, NOWHERE, verdict);
      if (verdict.invalid !== undefined) kept.cut(itemFieldStart, scope.pos);
      else items += verdict.items;
    }
    // Every scope is re-framed, changed or not.
    return kept.finish(end) ?? [bytes.subarray(start, end)];
  });
  return { bytes: out ?? Buffer.from(bytes), items };
}

/** The scanner's own tables, for test/pdata/schema.test.ts, which checks them against proto/. */
export const SCANNER_TABLES = { ResourceSpec, ScopeHolder, MetricSpec, METRIC_DATA };
