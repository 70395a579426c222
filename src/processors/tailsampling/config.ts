import type { Node } from '../../config/reader';
import { compileConditions, OttlCompileError, type ErrorMode } from '../../ottl';
import { compileRe2Pattern } from '../../util/regex';
import { SPAN_OTTL_CONTEXT, SPAN_EVENT_OTTL_CONTEXT } from './ottl-item';

// The Collector's tail_sampling configuration (processor/tailsamplingprocessor v0.160.0), key for
// key, plus spansieve's byte bound on buffered spans.

export type PolicyConfig =
  | { readonly type: 'always_sample' }
  | { readonly type: 'latency'; readonly thresholdMs: number; readonly upperThresholdMs: number }
  | { readonly type: 'status_code'; readonly codes: readonly number[] }
  | { readonly type: 'probabilistic'; readonly hashSalt: string; readonly samplingPercentage: number }
  | {
      readonly type: 'string_attribute';
      readonly key: string;
      readonly values: readonly string[];
      readonly regex: boolean;
      readonly cacheMaxSize: number;
      readonly invert: boolean;
    }
  | { readonly type: 'numeric_attribute'; readonly key: string; readonly min: bigint | undefined; readonly max: bigint | undefined; readonly invert: boolean }
  | { readonly type: 'boolean_attribute'; readonly key: string; readonly value: boolean; readonly invert: boolean }
  | { readonly type: 'rate_limiting'; readonly spansPerSecond: number; readonly burstCapacity: number }
  | { readonly type: 'span_count'; readonly minSpans: number; readonly maxSpans: number }
  | { readonly type: 'trace_state'; readonly key: string; readonly values: readonly string[] }
  | { readonly type: 'trace_flags' }
  | { readonly type: 'ottl_condition'; readonly span: readonly string[]; readonly spanEvent: readonly string[]; readonly errorMode: ErrorMode }
  | { readonly type: 'and'; readonly policies: readonly PolicyConfig[] }
  | { readonly type: 'not'; readonly policy: PolicyConfig }
  | { readonly type: 'drop'; readonly policies: readonly PolicyConfig[] }
  | {
      readonly type: 'composite';
      readonly maxTotalSpansPerSecond: number;
      readonly policies: readonly { readonly name: string; readonly policy: PolicyConfig; readonly spansPerSecond: number }[];
    };

export interface NamedPolicy {
  readonly name: string;
  readonly policy: PolicyConfig;
}

export interface TailSamplingConfig {
  readonly decisionWaitMs: number;
  readonly decisionWaitAfterRootReceivedMs: number;
  readonly numTraces: number;
  readonly expectedNewTracesPerSec: number;
  readonly sampledCacheSize: number;
  readonly nonSampledCacheSize: number;
  readonly sampleOnFirstMatch: boolean;
  readonly dropPendingTracesOnShutdown: boolean;
  readonly maximumTraceSizeBytes: number;
  /** spansieve: bound on the bytes of buffered resources (undecided traces' spans). */
  readonly maxBufferedBytes: number;
  /** spansieve: id of a file_storage extension; buffered spans are written there before they are acknowledged. */
  readonly storage?: string;
  readonly policies: readonly NamedPolicy[];
}

export const DEFAULT_DECISION_WAIT_MS = 30_000;
export const DEFAULT_NUM_TRACES = 50_000;
export const DEFAULT_MAX_BUFFERED_BYTES = 256 * 1024 * 1024;

const TOP_KEYS = [
  'decision_wait', 'decision_wait_after_root_received', 'num_traces', 'expected_new_traces_per_sec', 'decision_cache', 'policies',
  'sample_on_first_match', 'drop_pending_traces_on_shutdown', 'maximum_trace_size_bytes', 'block_on_overflow', 'num_shards',
  'sampling_strategy', 'tail_storage', 'max_buffered_bytes', 'storage',
] as const;

const LEAF_TYPES = [
  'always_sample', 'latency', 'numeric_attribute', 'probabilistic', 'status_code', 'string_attribute', 'rate_limiting',
  'span_count', 'trace_state', 'boolean_attribute', 'ottl_condition', 'trace_flags',
] as const;
/** Types the Collector has that spansieve does not implement; named so the error says so. */
const UNSUPPORTED_TYPES = ['bytes_limiting'] as const;
const SHARED_KEYS = ['name', 'type', 'latency', 'numeric_attribute', 'probabilistic', 'status_code', 'string_attribute', 'rate_limiting', 'bytes_limiting', 'span_count', 'trace_state', 'boolean_attribute', 'ottl_condition'];

type Level = 'top' | 'and' | 'composite' | 'not' | 'drop';

/** What each nesting level may hold, as the Collector's config structs allow. */
const LEVEL_TYPES: Record<Level, readonly string[]> = {
  top: [...LEAF_TYPES, 'and', 'not', 'drop', 'composite'],
  and: [...LEAF_TYPES, 'not'],
  drop: [...LEAF_TYPES, 'not'],
  composite: [...LEAF_TYPES, 'and'],
  not: [...LEAF_TYPES],
};
const LEVEL_KEYS: Record<Level, readonly string[]> = {
  top: [...SHARED_KEYS, 'composite', 'and', 'not', 'drop'],
  and: [...SHARED_KEYS, 'not'],
  drop: [...SHARED_KEYS, 'not'],
  composite: [...SHARED_KEYS, 'and'],
  not: SHARED_KEYS,
};

export function parseTailSamplingConfig(node: Node): TailSamplingConfig {
  const at = node.struct(TOP_KEYS);
  const decisionWaitMs = at('decision_wait').duration(DEFAULT_DECISION_WAIT_MS);
  if (decisionWaitMs < 1) at('decision_wait').report('must be at least 1ms');
  const cache = at('decision_cache').struct(['sampled_cache_size', 'non_sampled_cache_size']);
  if (at('block_on_overflow').boolean(false)) at('block_on_overflow').report('is not supported by spansieve: a full buffer decides its oldest traces early instead of blocking');
  at('num_shards').integer(1, 1, 256); // one event loop: accepted and ignored, the limits are not divided
  at('sampling_strategy').oneOf('trace-complete', ['trace-complete'] as const);
  if (!at('tail_storage').isAbsent) {
    at('tail_storage').report('is not supported by spansieve (the Collector\'s feature-gated tail storage extensions); to keep undecided traces across restarts use storage: file_storage');
  }
  const storage = parseStorage(at('storage'));
  const policiesNode = at('policies');
  const policies = parsePolicyList(policiesNode, 'top');
  return {
    decisionWaitMs: Math.max(decisionWaitMs, 1),
    decisionWaitAfterRootReceivedMs: at('decision_wait_after_root_received').duration(0),
    numTraces: at('num_traces').integer(DEFAULT_NUM_TRACES, 1),
    expectedNewTracesPerSec: at('expected_new_traces_per_sec').integer(0, 0),
    sampledCacheSize: cache('sampled_cache_size').integer(0, 0),
    nonSampledCacheSize: cache('non_sampled_cache_size').integer(0, 0),
    sampleOnFirstMatch: at('sample_on_first_match').boolean(false),
    dropPendingTracesOnShutdown: at('drop_pending_traces_on_shutdown').boolean(false),
    maximumTraceSizeBytes: at('maximum_trace_size_bytes').integer(0, 0),
    maxBufferedBytes: at('max_buffered_bytes').integer(DEFAULT_MAX_BUFFERED_BYTES, 1024),
    ...(storage !== undefined ? { storage } : {}),
    policies,
  };
}

function parseStorage(node: Node): string | undefined {
  if (node.isAbsent) return undefined;
  const id = node.string('');
  if (!/^file_storage(?:\/[^\s/]+)?$/.test(id)) {
    node.report(`expected the id of a file_storage extension (file_storage or file_storage/<name>), got ${JSON.stringify(node.value)}`);
    return undefined;
  }
  return id;
}

function parsePolicyList(node: Node, level: Level): NamedPolicy[] {
  const out: NamedPolicy[] = [];
  const names = new Set<string>();
  for (const item of node.list()) {
    const name = item.child('name').string('');
    if (level === 'top') {
      if (name === '') item.child('name').report('policy name cannot be empty');
      else if (names.has(name)) item.child('name').report(`duplicate policy name "${name}"`);
    }
    names.add(name);
    const parsed = parsePolicy(item, level);
    if (parsed) out.push(parsed);
  }
  return out;
}

function parsePolicy(node: Node, level: Level): NamedPolicy | undefined {
  const at = node.struct(LEVEL_KEYS[level]);
  const name = at('name').string('');
  const typeNode = at('type');
  const type = typeNode.string('');
  if (typeNode.isAbsent) {
    typeNode.report('missing: the policy type');
    return undefined;
  }
  if ((UNSUPPORTED_TYPES as readonly string[]).includes(type)) {
    typeNode.report(`"${type}" is not supported by spansieve`);
    return undefined;
  }
  if (!LEVEL_TYPES[level].includes(type)) {
    typeNode.report(`unknown sampling policy type ${JSON.stringify(type)} here (allowed: ${LEVEL_TYPES[level].join(', ')})`);
    return undefined;
  }
  const policy = parsePolicyBody(type, at(type), level);
  return policy ? { name, policy } : undefined;
}

function parsePolicyBody(type: string, node: Node, level: Level): PolicyConfig | undefined {
  switch (type) {
    case 'always_sample':
      return { type };
    case 'trace_flags':
      return { type };
    case 'latency': {
      const at = node.struct(['threshold_ms', 'upper_threshold_ms']);
      const thresholdMs = at('threshold_ms').integer(0, Number.MIN_SAFE_INTEGER);
      const upperThresholdMs = at('upper_threshold_ms').integer(0, Number.MIN_SAFE_INTEGER);
      return { type, thresholdMs, upperThresholdMs };
    }
    case 'status_code': {
      const at = node.struct(['status_codes']);
      const list = at('status_codes').list();
      if (list.length === 0) {
        at('status_codes').report('expected at least one status code to filter on');
        return undefined;
      }
      const codes = list.map((n) => STATUS_CODES[n.oneOf('UNSET', ['OK', 'ERROR', 'UNSET'] as const)]);
      return { type, codes };
    }
    case 'probabilistic': {
      const at = node.struct(['hash_salt', 'sampling_percentage']);
      return { type, hashSalt: at('hash_salt').string(''), samplingPercentage: at('sampling_percentage').number(0, -Number.MAX_VALUE) };
    }
    case 'string_attribute': {
      const at = node.struct(['key', 'values', 'enabled_regex_matching', 'cache_max_size', 'invert_match']);
      const values = at('values').list().map((n) => n.string(''));
      const regex = at('enabled_regex_matching').boolean(false);
      if (regex) {
        values.forEach((pattern, i) => {
          try {
            compileRe2Pattern(pattern);
          } catch (err) {
            at('values').list()[i]?.report(`invalid regex \`${pattern}\`: ${(err as Error).message}`);
          }
        });
      }
      return {
        type,
        key: at('key').string(''),
        values,
        regex,
        cacheMaxSize: at('cache_max_size').integer(0, Number.MIN_SAFE_INTEGER),
        invert: at('invert_match').boolean(false),
      };
    }
    case 'numeric_attribute': {
      const at = node.struct(['key', 'min_value', 'max_value', 'invert_match']);
      const min = int64(at('min_value'));
      const max = int64(at('max_value'));
      // As the Collector: 0 means unset, and one bound is needed.
      if (min === 0n && max === 0n) {
        node.report('at least one of min_value or max_value must be set');
        return undefined;
      }
      return { type, key: at('key').string(''), min: min === 0n ? undefined : min, max: max === 0n ? undefined : max, invert: at('invert_match').boolean(false) };
    }
    case 'boolean_attribute': {
      const at = node.struct(['key', 'value', 'invert_match']);
      return { type, key: at('key').string(''), value: at('value').boolean(false), invert: at('invert_match').boolean(false) };
    }
    case 'rate_limiting': {
      const at = node.struct(['spans_per_second', 'burst_capacity']);
      const spansPerSecond = at('spans_per_second').integer(0, 0);
      const burst = at('burst_capacity').integer(0, 0);
      return { type, spansPerSecond, burstCapacity: burst > 0 ? burst : spansPerSecond * 2 };
    }
    case 'span_count': {
      const at = node.struct(['min_spans', 'max_spans']);
      return { type, minSpans: at('min_spans').integer(0, -(2 ** 31), 2 ** 31 - 1), maxSpans: at('max_spans').integer(0, -(2 ** 31), 2 ** 31 - 1) };
    }
    case 'trace_state': {
      const at = node.struct(['key', 'values']);
      return { type, key: at('key').string(''), values: at('values').list().map((n) => n.string('')) };
    }
    case 'ottl_condition': {
      const at = node.struct(['error_mode', 'span', 'spanevent']);
      const errorMode = at('error_mode').oneOf<ErrorMode>('propagate', ['propagate', 'ignore', 'silent']);
      const span = at('span').list().map((n) => n.string(''));
      const spanEvent = at('spanevent').list().map((n) => n.string(''));
      if (span.length === 0 && spanEvent.length === 0) {
        node.report('expected at least one OTTL condition to filter on');
        return undefined;
      }
      checkConditions(at('span'), span, 'span');
      checkConditions(at('spanevent'), spanEvent, 'spanevent');
      return { type, span, spanEvent, errorMode };
    }
    case 'and': {
      const at = node.struct(['and_sub_policy']);
      return { type, policies: parsePolicyList(at('and_sub_policy'), 'and').map((p) => p.policy) };
    }
    case 'drop': {
      const at = node.struct(['drop_sub_policy']);
      return { type, policies: parsePolicyList(at('drop_sub_policy'), 'drop').map((p) => p.policy) };
    }
    case 'not': {
      const at = node.struct(['not_sub_policy']);
      const sub = parsePolicy(at('not_sub_policy'), 'not');
      if (!sub) {
        if (at('not_sub_policy').isAbsent) at('not_sub_policy').report('missing: the policy to invert');
        return undefined;
      }
      return { type, policy: sub.policy };
    }
    case 'composite': {
      void level;
      const at = node.struct(['max_total_spans_per_second', 'policy_order', 'composite_sub_policy', 'rate_allocation']);
      const maxTotal = at('max_total_spans_per_second').integer(0, 0);
      // Accepted as in the Collector, where v0.160.0 evaluates the sub-policies in listed order regardless.
      at('policy_order').list().map((n) => n.string(''));
      const subs = parsePolicyList(at('composite_sub_policy'), 'composite');
      const percent = new Map<string, number>();
      for (const item of at('rate_allocation').list()) {
        const a = item.struct(['policy', 'percent']);
        percent.set(a('policy').string(''), a('percent').integer(0, Number.MIN_SAFE_INTEGER));
      }
      const share = subs.length > 0 ? maxTotal / subs.length : 0;
      return {
        type,
        maxTotalSpansPerSecond: maxTotal,
        policies: subs.map((s) => {
          const p = percent.get(s.name);
          // float64 → int64 as the Collector converts it: truncated.
          return { name: s.name, policy: s.policy, spansPerSecond: Math.trunc(p !== undefined && p > 0 ? (p / 100) * maxTotal : share) };
        }),
      };
    }
    default:
      return undefined;
  }
}

const STATUS_CODES = { UNSET: 0, OK: 1, ERROR: 2 } as const;

function int64(node: Node): bigint {
  if (node.isAbsent) return 0n;
  const v = node.value;
  if ((typeof v === 'number' && Number.isInteger(v)) || (typeof v === 'string' && /^-?\d+$/.test(v))) {
    const b = BigInt(v);
    if (b >= -(2n ** 63n) && b < 2n ** 63n) return b;
  }
  node.report(`expected a 64-bit integer, got ${JSON.stringify(v)}`);
  return 0n;
}

function checkConditions(node: Node, texts: string[], kind: 'span' | 'spanevent'): void {
  if (texts.length === 0) return;
  try {
    compileConditions(texts, kind === 'span' ? SPAN_OTTL_CONTEXT : SPAN_EVENT_OTTL_CONTEXT, { mode: 'prepend' });
  } catch (err) {
    if (err instanceof OttlCompileError) node.report(err.message);
    else throw err;
  }
}
