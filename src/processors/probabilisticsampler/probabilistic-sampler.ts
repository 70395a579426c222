import type { Component, Consumer, CreateSettings, ProcessorFactory, SamplingRecorder } from '../../component/component';
import { PermanentError } from '../../component/errors';
import type { Attributes } from '../../pdata/attributes';
import { readString } from '../../pdata/attributes';
import type { Batch, ResourceBlock } from '../../pdata/batch';
import { checkDeferredBlock } from '../../pdata/scan';
import { ANY_VALUE, KEY_VALUE, RESOURCE_ITEMS, SCOPE_ITEMS, SPAN, fieldOf } from '../../pdata/fields';
import { WireFormatError, WireReader, readVarintBigInt, varintSize, writeVarint } from '../../pdata/wire';
import { parseProbabilisticSamplerConfig, type ProbabilisticSamplerConfig } from './config';
import { POLICIES, Priority, Sampler } from './sampler';

// The Collector's probabilistic_sampler for traces, on the bytes: each span is decided by its
// trace id (and tracestate, and `sampling.priority`) without decoding the span. A resource whose
// spans are all kept unchanged leaves as it came; otherwise only that resource is rebuilt, from
// the kept spans, with the tracestate of a kept span replaced where the Collector rewrites it.
// Scopes and resources left without spans are removed, as the Collector does.
// See docs/probabilistic-sampler-processor.md.

const RESOURCE_SCOPE_SPANS = RESOURCE_ITEMS.scopes;
const SCOPE_SPANS = SCOPE_ITEMS.items;
const SPAN_TRACE_ID = SPAN.trace_id;
const SPAN_TRACE_STATE = SPAN.trace_state;
const SPAN_TRACE_STATE_FIELD = fieldOf(SPAN.trace_state);
const SPAN_ATTRIBUTES = SPAN.attributes;
const PRIORITY_KEY = Buffer.from('sampling.priority', 'utf8');
const ENCODED_CACHE_LIMIT = 256;
// Scratch readers, one per nesting level (block, scope, span, key-value): no reader object per span.
const blockReader = new WireReader(new Uint8Array(0), 0, 0);
const scopeReader = new WireReader(new Uint8Array(0), 0, 0);
const spanReader = new WireReader(new Uint8Array(0), 0, 0);
const kvReader = new WireReader(new Uint8Array(0), 0, 0);

/** What pass one learned about the spans of one resource, reused across resources. */
class ResourcePlan {
  /** Per span: [start, end) of its message, whether kept, its new tracestate (undefined: as is). */
  spanStart: number[] = [];
  spanEnd: number[] = [];
  spanKept: boolean[] = [];
  spanTraceState: (string | undefined)[] = [];
  /** Bytes of the span's trace_state fields (tag, length, value), replaced when rewritten. */
  spanTraceStateBytes: number[] = [];
  /** Per scope: [start, end) of its message and its first span's index; the next scope's first ends it. */
  scopeStart: number[] = [];
  scopeEnd: number[] = [];
  scopeFirstSpan: number[] = [];
  spans = 0;
  scopes = 0;

  reset(): void {
    this.spans = 0;
    this.scopes = 0;
  }

  addScope(start: number, end: number): void {
    const i = this.scopes++;
    this.scopeStart[i] = start;
    this.scopeEnd[i] = end;
    this.scopeFirstSpan[i] = this.spans;
  }

  addSpan(start: number, end: number, kept: boolean, traceState: string | undefined, traceStateBytes: number): void {
    const i = this.spans++;
    this.spanStart[i] = start;
    this.spanEnd[i] = end;
    this.spanKept[i] = kept;
    this.spanTraceState[i] = traceState;
    this.spanTraceStateBytes[i] = traceStateBytes;
  }

  spansOf(scope: number): [number, number] {
    return [this.scopeFirstSpan[scope]!, scope + 1 < this.scopes ? this.scopeFirstSpan[scope + 1]! : this.spans];
  }
}

export class ProbabilisticSamplerProcessor implements Component, Consumer {
  private readonly sampler: Sampler;
  private readonly plan = new ResourcePlan();
  /** One counter per policy and outcome, index policy * 2 + (sampled ? 1 : 0). */
  private readonly counters: { inc(n: number): void }[] = [];
  private readonly counts: number[];
  private readonly encodedCache = new Map<string, Buffer>();
  /** Where decisions are shown (the admin API's /api/v1/sampling): counts per resource, one dropped trace per resource. */
  private readonly sampling: SamplingRecorder | undefined;
  private readonly id: string;
  private readonly reason: string;
  /** The first span dropped in the resource being planned: its trace id (hex) and policy label. */
  private droppedTraceId: string | undefined;
  private droppedPolicy = '';

  constructor(
    settings: CreateSettings,
    config: ProbabilisticSamplerConfig,
    private readonly next: Consumer,
  ) {
    this.sampler = new Sampler(config);
    this.sampling = settings.sampling;
    this.id = settings.id;
    this.reason = `mode ${this.sampler.mode}, sampling_percentage ${config.samplingPercentage}`;
    for (const policy of POLICIES) {
      for (const sampled of ['false', 'true']) {
        this.counters.push(
          settings.telemetry.counter('otelcol_processor_probabilistic_sampler_count_traces_sampled', 'Count of traces that were sampled or not', {
            processor: settings.id,
            policy,
            sampled,
          }),
        );
      }
    }
    this.counts = new Array<number>(this.counters.length).fill(0);
  }

  async start(): Promise<void> {}

  async shutdown(): Promise<void> {}

  /** Spans are decided one by one, never a whole resource: passed on. */
  mayKeep(attributes: Attributes): boolean {
    return this.next.mayKeep?.(attributes) ?? true;
  }

  wouldRefuse(): string | undefined {
    return this.next.wouldRefuse?.();
  }

  consume(batch: Batch): Promise<void> {
    let kept: Batch | undefined;
    try {
      kept = this.sample(batch);
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    } finally {
      this.flushCounts();
    }
    return kept === undefined ? NOTHING_TO_SEND : this.next.consume(kept);
  }

  /** The sampled batch; the batch itself when nothing changed, undefined when nothing is left. */
  private sample(batch: Batch): Batch | undefined {
    let out: ResourceBlock[] | undefined;
    for (let i = 0; i < batch.resources.length; i++) {
      let block = batch.resources[i]!;
      // Counted unread because a later filter drops it: checked before its spans are read.
      if (block.unchecked) block = checkedBlock(block);
      this.droppedTraceId = undefined;
      const result = this.sampleBlock(block);
      if (this.sampling) this.report(block);
      if (result === block && block === batch.resources[i]) {
        out?.push(block);
        continue;
      }
      out ??= batch.resources.slice(0, i);
      if (result !== undefined) out.push(result);
    }
    if (!out) return batch;
    return out.length === 0 ? undefined : batch.withResources(out);
  }

  /** The plan's counts for the resource just sampled, and its first dropped trace. */
  private report(block: ResourceBlock): void {
    const plan = this.plan;
    let kept = 0;
    for (let i = 0; i < plan.spans; i++) if (plan.spanKept[i]) kept++;
    if (plan.spans > 0) this.sampling!.sampled(this.id, block.attributes, plan.spans, kept);
    if (this.droppedTraceId !== undefined) {
      const name = block.attributes.get('service.name');
      this.sampling!.dropped({ traceId: this.droppedTraceId, service: typeof name === 'string' ? name : null, processor: this.id, policy: this.droppedPolicy, reason: this.reason });
    }
  }

  /** The block as it goes on: itself if unchanged, a rebuilt one, or undefined when no span is kept. */
  private sampleBlock(block: ResourceBlock): ResourceBlock | undefined {
    const bytes = block.bytes;
    const plan = this.plan;
    plan.reset();
    let changed = false;
    const reader = blockReader.reset(bytes, 0, bytes.length);
    while (!reader.done) {
      const tag = reader.tag();
      if (tag !== RESOURCE_SCOPE_SPANS) {
        reader.skip(tag & 7);
        continue;
      }
      const scopeStart = reader.lengthDelimited();
      if (this.planScope(bytes, scopeStart, reader.pos)) changed = true;
    }
    if (plan.scopes === 0) return undefined;
    if (!changed) return block;
    return this.rebuild(block);
  }

  /** Decides the spans of one ScopeSpans; true when it must be rewritten (or removed). */
  private planScope(buf: Uint8Array, start: number, end: number): boolean {
    const plan = this.plan;
    plan.addScope(start, end);
    let changed = false;
    let kept = 0;
    const reader = scopeReader.reset(buf, start, end);
    while (!reader.done) {
      const tag = reader.tag();
      if (tag !== SCOPE_SPANS) {
        reader.skip(tag & 7);
        continue;
      }
      const spanStart = reader.lengthDelimited();
      if (this.planSpan(buf, spanStart, reader.pos)) changed = true;
      if (plan.spanKept[plan.spans - 1]) kept++;
    }
    // A scope left without spans (or that came without) is removed, as the Collector does.
    return changed || kept === 0;
  }

  /** Decides one span; true when it is dropped or its tracestate changes. */
  private planSpan(buf: Uint8Array, start: number, end: number): boolean {
    let traceIdStart = 0;
    let traceIdEnd = 0;
    let traceStateStart = -1;
    let traceStateEnd = -1;
    let traceStateBytes = 0;
    let priority = Priority.Defer;
    let priorityFound = false;
    const reader = spanReader.reset(buf, start, end);
    while (!reader.done) {
      const fieldStart = reader.pos;
      const tag = reader.tag();
      switch (tag) {
        case SPAN_TRACE_ID:
          traceIdStart = reader.lengthDelimited();
          traceIdEnd = reader.pos;
          break;
        case SPAN_TRACE_STATE:
          // The last occurrence wins, as protobuf reads it; all of them go when it is rewritten.
          traceStateStart = reader.lengthDelimited();
          traceStateEnd = reader.pos;
          traceStateBytes += reader.pos - fieldStart;
          break;
        case SPAN_ATTRIBUTES: {
          const kvStart = reader.lengthDelimited();
          if (!priorityFound) {
            const found = samplingPriority(buf, kvStart, reader.pos);
            if (found !== undefined) {
              priorityFound = true;
              priority = found;
            }
          }
          break;
        }
        default:
          reader.skip(tag & 7);
      }
    }
    const traceState = traceStateStart < 0 ? '' : readString(buf, traceStateStart, traceStateEnd);
    const decision = this.sampler.decide(buf, traceIdStart, traceIdEnd, traceState, priority);
    this.counts[POLICIES.indexOf(decision.policy) * 2 + (decision.sampled ? 1 : 0)]!++;
    if (!decision.sampled && this.droppedTraceId === undefined && this.sampling) {
      this.droppedTraceId = Buffer.from(buf.buffer, buf.byteOffset + traceIdStart, traceIdEnd - traceIdStart).toString('hex');
      this.droppedPolicy = decision.policy;
    }
    const rewritten = decision.sampled && decision.traceState !== undefined && decision.traceState !== traceState ? decision.traceState : undefined;
    this.plan.addSpan(start, end, decision.sampled, rewritten, traceStateBytes);
    return !decision.sampled || rewritten !== undefined;
  }

  /** Writes the resource again: its other fields as they were, then the kept scopes and spans. */
  private rebuild(block: ResourceBlock): ResourceBlock | undefined {
    const plan = this.plan;
    const buf = block.bytes;
    // Sizes first: spans, then scopes, then the resource.
    const spanSize: number[] = new Array<number>(plan.spans);
    const tsBytes: (Buffer | undefined)[] = new Array<Buffer | undefined>(plan.spans);
    for (let i = 0; i < plan.spans; i++) {
      if (!plan.spanKept[i]) continue;
      const ts = plan.spanTraceState[i];
      let size = plan.spanEnd[i]! - plan.spanStart[i]!;
      if (ts !== undefined) {
        const encoded = this.encodedTraceState(ts);
        tsBytes[i] = encoded;
        size += -plan.spanTraceStateBytes[i]! + (encoded.length > 0 ? 1 + varintSize(encoded.length) + encoded.length : 0);
      }
      spanSize[i] = size;
    }
    const scopeSize: number[] = new Array<number>(plan.scopes);
    let keptScopes = 0;
    let items = 0;
    let resourceSize = 0;
    for (let s = 0; s < plan.scopes; s++) {
      const [first, last] = plan.spansOf(s);
      let size = 0;
      let kept = 0;
      let oldSpanBytes = 0;
      for (let i = first; i < last; i++) {
        const len = plan.spanEnd[i]! - plan.spanStart[i]!;
        oldSpanBytes += 1 + varintSize(len) + len;
        if (!plan.spanKept[i]) continue;
        kept++;
        size += 1 + varintSize(spanSize[i]!) + spanSize[i]!;
      }
      if (kept === 0) {
        scopeSize[s] = -1;
        continue;
      }
      // The scope's other fields (its InstrumentationScope, schema_url) keep their bytes.
      size += plan.scopeEnd[s]! - plan.scopeStart[s]! - oldSpanBytes;
      scopeSize[s] = size;
      keptScopes++;
      items += kept;
      resourceSize += 1 + varintSize(size) + size;
    }
    if (keptScopes === 0) return undefined;
    let oldScopeBytes = 0;
    for (let s = 0; s < plan.scopes; s++) {
      const len = plan.scopeEnd[s]! - plan.scopeStart[s]!;
      oldScopeBytes += 1 + varintSize(len) + len;
    }
    resourceSize += buf.length - oldScopeBytes;

    const out = Buffer.allocUnsafe(resourceSize);
    let pos = 0;
    let scope = 0;
    const reader = new WireReader(buf, 0, buf.length);
    while (!reader.done) {
      const fieldStart = reader.pos;
      const tag = reader.tag();
      reader.skip(tag & 7);
      if (tag !== RESOURCE_SCOPE_SPANS) {
        out.set(buf.subarray(fieldStart, reader.pos), pos);
        pos += reader.pos - fieldStart;
        continue;
      }
      const s = scope++;
      if (scopeSize[s]! < 0) continue;
      pos = writeVarint(out, pos, RESOURCE_SCOPE_SPANS);
      pos = writeVarint(out, pos, scopeSize[s]!);
      pos = this.writeScope(buf, s, out, pos, spanSize, tsBytes);
    }
    if (pos !== resourceSize) throw new Error(`probabilistic_sampler: rebuilt resource is ${pos} bytes, expected ${resourceSize}`);
    return { bytes: out, attributes: block.attributes, itemCount: items };
  }

  private writeScope(buf: Uint8Array, scope: number, out: Buffer, pos: number, spanSize: number[], tsBytes: (Buffer | undefined)[]): number {
    const plan = this.plan;
    let span = plan.spansOf(scope)[0];
    const reader = new WireReader(buf, plan.scopeStart[scope]!, plan.scopeEnd[scope]!);
    while (!reader.done) {
      const fieldStart = reader.pos;
      const tag = reader.tag();
      reader.skip(tag & 7);
      if (tag !== SCOPE_SPANS) {
        out.set(buf.subarray(fieldStart, reader.pos), pos);
        pos += reader.pos - fieldStart;
        continue;
      }
      const i = span++;
      if (!plan.spanKept[i]) continue;
      pos = writeVarint(out, pos, SCOPE_SPANS);
      pos = writeVarint(out, pos, spanSize[i]!);
      const ts = tsBytes[i];
      if (ts === undefined) {
        out.set(buf.subarray(plan.spanStart[i], plan.spanEnd[i]), pos);
        pos += plan.spanEnd[i]! - plan.spanStart[i]!;
      } else {
        pos = writeSpanWithTraceState(buf, plan.spanStart[i]!, plan.spanEnd[i]!, ts, out, pos);
      }
    }
    return pos;
  }

  /** The tracestate as bytes; the few that recur (the consistent modes' `ot=th:...`) are kept. */
  private encodedTraceState(ts: string): Buffer {
    let encoded = this.encodedCache.get(ts);
    if (encoded === undefined) {
      encoded = Buffer.from(ts, 'utf8');
      if (this.encodedCache.size >= ENCODED_CACHE_LIMIT) this.encodedCache.clear();
      this.encodedCache.set(ts, encoded);
    }
    return encoded;
  }

  private flushCounts(): void {
    const counts = this.counts;
    for (let i = 0; i < counts.length; i++) {
      if (counts[i] === 0) continue;
      this.counters[i]!.inc(counts[i]!);
      counts[i] = 0;
    }
  }
}

/**
 * The span's fields as they were, every trace_state dropped and the new one written before the
 * first field numbered above 3 (where an encoder puts it), or at the end.
 */
function writeSpanWithTraceState(buf: Uint8Array, start: number, end: number, ts: Buffer, out: Buffer, pos: number): number {
  let written = ts.length === 0;
  const reader = new WireReader(buf, start, end);
  while (!reader.done) {
    const fieldStart = reader.pos;
    const tag = reader.tag();
    reader.skip(tag & 7);
    if (tag === SPAN_TRACE_STATE) continue;
    if (!written && Math.floor(tag / 8) > SPAN_TRACE_STATE_FIELD) {
      pos = writeTraceState(ts, out, pos);
      written = true;
    }
    out.set(buf.subarray(fieldStart, reader.pos), pos);
    pos += reader.pos - fieldStart;
  }
  if (!written) pos = writeTraceState(ts, out, pos);
  return pos;
}

function writeTraceState(ts: Buffer, out: Buffer, pos: number): number {
  out[pos++] = SPAN_TRACE_STATE;
  pos = writeVarint(out, pos, ts.length);
  out.set(ts, pos);
  return pos + ts.length;
}

/**
 * The priority a KeyValue gives when its key is `sampling.priority` (undefined for any other
 * key): an int or double 0 never samples, above 0 always does, as does a string Go's ParseFloat
 * reads as such; anything else defers to the sampler.
 */
function samplingPriority(buf: Uint8Array, start: number, end: number): Priority | undefined {
  const reader = kvReader.reset(buf, start, end);
  let isPriority = false;
  let valueStart = -1;
  let valueEnd = -1;
  while (!reader.done) {
    const tag = reader.tag();
    if (tag === KEY_VALUE.key) {
      const s = reader.lengthDelimited();
      isPriority = reader.pos - s === PRIORITY_KEY.length && PRIORITY_KEY.equals(buf.subarray(s, reader.pos));
      if (!isPriority) return undefined;
    } else if (tag === KEY_VALUE.value) {
      valueStart = reader.lengthDelimited();
      valueEnd = reader.pos;
    } else reader.skip(tag & 7);
  }
  if (!isPriority) return undefined;
  return valueStart < 0 ? Priority.Defer : priorityOfValue(buf, valueStart, valueEnd);
}

function priorityOfValue(buf: Uint8Array, start: number, end: number): Priority {
  // AnyValue is a oneof: the last value field wins.
  let priority = Priority.Defer;
  const reader = new WireReader(buf, start, end);
  while (!reader.done) {
    const tag = reader.tag();
    switch (tag) {
      case ANY_VALUE.string_value: {
        const s = reader.lengthDelimited();
        priority = priorityOfNumber(parseGoFloat(readString(buf, s, reader.pos)));
        break;
      }
      case ANY_VALUE.int_value: {
        const value = readVarintBigInt(reader);
        priority = value === 0n ? Priority.DoNotSample : value > 0n ? Priority.MustSample : Priority.Defer;
        break;
      }
      case ANY_VALUE.double_value:
        priority = priorityOfNumber(reader.double());
        break;
      default:
        reader.skip(tag & 7);
        // Any other value type (bool, bytes, array, map) defers.
        priority = Priority.Defer;
    }
  }
  return priority;
}

function priorityOfNumber(value: number | undefined): Priority {
  if (value === undefined) return Priority.Defer;
  if (value === 0) return Priority.DoNotSample;
  return value > 0 ? Priority.MustSample : Priority.Defer;
}

const DECIMAL = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
const HEX = /^([+-]?)0[xX]([0-9a-fA-F]*)(?:\.([0-9a-fA-F]*))?[pP]([+-]?\d+)$/;
const SPECIAL = /^(?:[+-]?(?:inf|infinity)|nan)$/i;

/** Go's strconv.ParseFloat(s, 64) where it succeeds, else undefined (syntax or range error). */
export function parseGoFloat(s: string): number | undefined {
  if (SPECIAL.test(s)) return /nan/i.test(s) ? NaN : s.startsWith('-') ? -Infinity : Infinity;
  if (s.includes('_')) {
    if (!underscoresOk(s)) return undefined;
    s = s.replace(/_/g, '');
  }
  let value: number;
  if (DECIMAL.test(s)) {
    value = Number(s);
  } else {
    const hex = HEX.exec(s);
    if (!hex || hex[2]! + (hex[3] ?? '') === '') return undefined;
    const digits = hex[2]! + (hex[3] ?? '');
    let mantissa = 0;
    for (const d of digits) mantissa = mantissa * 16 + parseInt(d, 16);
    value = mantissa * 2 ** (Number(hex[4]) - 4 * (hex[3] ?? '').length);
    if (hex[1] === '-') value = -value;
  }
  return Number.isFinite(value) ? value : undefined;
}

/** Go's rule: an underscore only between digits, or between a base prefix and a digit. */
function underscoresOk(s: string): boolean {
  let i = s.startsWith('+') || s.startsWith('-') ? 1 : 0;
  let saw = '^';
  let hex = false;
  if (s.length - i >= 2 && s[i] === '0' && 'bBoOxX'.includes(s[i + 1]!)) {
    hex = s[i + 1] === 'x' || s[i + 1] === 'X';
    saw = '0';
    i += 2;
  }
  for (; i < s.length; i++) {
    const c = s[i]!;
    if ((c >= '0' && c <= '9') || (hex && /[a-fA-F]/.test(c))) {
      saw = '0';
    } else if (c === '_') {
      if (saw !== '0') return false;
      saw = '_';
    } else {
      if (saw === '_') return false;
      saw = '!';
    }
  }
  return saw !== '_';
}

/** The block, checked now; malformed or invalid content refuses the batch, as the receiver would have. */
function checkedBlock(block: ResourceBlock): ResourceBlock {
  try {
    return checkDeferredBlock('traces', block);
  } catch (err) {
    if (err instanceof WireFormatError) throw new PermanentError(`invalid traces resource: ${err.message}`);
    throw err;
  }
}

const NOTHING_TO_SEND: Promise<void> = Promise.resolve();

export const probabilisticSamplerFactory: ProcessorFactory<ProbabilisticSamplerConfig> = {
  type: 'probabilistic_sampler',
  kind: 'processor',
  signals: ['traces'],
  parseConfig: parseProbabilisticSamplerConfig,
  create: (settings, config, _signal, next) => new ProbabilisticSamplerProcessor(settings, config, next),
};
