// The Collector filter processor's OTTL configuration (error_mode, traces / metrics blocks,
// trace_conditions / metric_conditions), compiled into groups the filter runs after its selectors.
// Conditions that read only the resource are lifted to a per-resource decision (cached per
// distinct resource, like the selectors' answer); the rest run on the wire (span-rules.ts,
// metric-rules.ts).

import type { Logger } from 'pino';
import type { Node } from '../../config/reader';
import {
  ConditionSequence, DATAPOINT_CONTEXT, METRIC_CONTEXT, METRIC_CONTEXTS, OTTL_DOCS, OttlCompileError, RESOURCE_CONTEXT, SPAN_CONTEXT, SPAN_EVENT_CONTEXT,
  TRACE_CONTEXTS, compileCondition, inferContext,
  type CompiledCondition, type ErrorMode, type OttlContext, type OttlRuntimeError, type PathContextMode, type TelemetryItem,
} from '../../ottl';
import type { Signal } from '../../pdata/batch';

export const ERROR_MODES: readonly ErrorMode[] = ['propagate', 'ignore', 'silent'];

/** One compiled condition with where it came from (for logs and the inventory). */
interface SourcedCondition {
  readonly condition: CompiledCondition<TelemetryItem>;
  /** Its config path, e.g. `processors::filter::traces::span[0]`. */
  readonly path: string;
}

/**
 * One Collector "consumer": the legacy block, or one entry of trace_conditions. Groups run one
 * after the other, each on what the previous left, as in the Collector.
 */
export interface OttlGroupSource {
  readonly errorMode: ErrorMode;
  readonly resource: readonly SourcedCondition[];
  readonly scope: readonly SourcedCondition[];
  readonly span: readonly SourcedCondition[];
  readonly spanevent: readonly SourcedCondition[];
  readonly metric: readonly SourcedCondition[];
  readonly datapoint: readonly SourcedCondition[];
}

/** The OTTL part of a filter config, as parsed (not yet bound to a logger). */
export interface OttlConfig {
  readonly errorMode: ErrorMode;
  readonly traces: readonly OttlGroupSource[];
  readonly metrics: readonly OttlGroupSource[];
}

export const OTTL_KEYS = ['error_mode', 'traces', 'metrics', 'trace_conditions', 'metric_conditions'] as const;

const CONTEXT_BY_LEGACY_KEY: Readonly<Record<string, OttlContext<TelemetryItem>>> = {
  resource: RESOURCE_CONTEXT, span: SPAN_CONTEXT, spanevent: SPAN_EVENT_CONTEXT, metric: METRIC_CONTEXT, datapoint: DATAPOINT_CONTEXT,
};

type Level = 'resource' | 'scope' | 'span' | 'spanevent' | 'metric' | 'datapoint';

function emptyGroup(errorMode: ErrorMode): { -readonly [K in keyof OttlGroupSource]: OttlGroupSource[K] extends readonly SourcedCondition[] ? SourcedCondition[] : OttlGroupSource[K] } {
  return { errorMode, resource: [], scope: [], span: [], spanevent: [], metric: [], datapoint: [] };
}

function compileAt(node: Node, context: OttlContext<TelemetryItem>, mode: PathContextMode): SourcedCondition | undefined {
  if (typeof node.value !== 'string') {
    node.report(`expected an OTTL condition (a string), got ${node.value === null ? 'null' : typeof node.value}`);
    return undefined;
  }
  try {
    return { condition: compileCondition(node.value, context, { mode }), path: node.path };
  } catch (err) {
    if (!(err instanceof OttlCompileError)) throw err;
    node.report(withDocs(`unable to parse OTTL condition ${JSON.stringify(node.value)}: ${err.message}`));
    return undefined;
  }
}

function withDocs(message: string): string {
  return message.includes(OTTL_DOCS) ? message : `${message} (supported paths and functions: ${OTTL_DOCS})`;
}

/** Reads error_mode, traces, metrics, trace_conditions and metric_conditions; problems go to the node's issues. */
export function parseOttlConfig(at: (key: string) => Node): OttlConfig | undefined {
  const present = OTTL_KEYS.some((key) => !at(key).isAbsent);
  const errorMode = at('error_mode').oneOf<ErrorMode>('ignore', ERROR_MODES);
  if (!present) return undefined;
  const traces: OttlGroupSource[] = [];
  const metrics: OttlGroupSource[] = [];

  const tracesNode = at('traces');
  const traceConditions = at('trace_conditions');
  if (!tracesNode.isAbsent && !traceConditions.isAbsent) {
    traceConditions.report('cannot use context inferred trace conditions "trace_conditions" and the settings "traces.resource", "traces.span", "traces.spanevent" at the same time');
  } else if (!tracesNode.isAbsent) {
    const block = tracesNode.struct(['resource', 'span', 'spanevent']);
    const group = emptyGroup(errorMode);
    for (const key of ['resource', 'span', 'spanevent'] as const) {
      for (const item of block(key).list()) {
        const c = compileAt(item, CONTEXT_BY_LEGACY_KEY[key]!, 'legacy');
        if (c) group[key].push(c);
      }
    }
    traces.push(group);
  } else if (!traceConditions.isAbsent) {
    traces.push(...parseContextConditions(traceConditions, errorMode, 'traces'));
  }

  const metricsNode = at('metrics');
  const metricConditions = at('metric_conditions');
  if (!metricsNode.isAbsent && !metricConditions.isAbsent) {
    metricConditions.report('cannot use context inferred metric conditions "metric_conditions" and the settings "metrics.resource", "metrics.metric", "metrics.datapoint" at the same time');
  } else if (!metricsNode.isAbsent) {
    const block = metricsNode.struct(['resource', 'metric', 'datapoint']);
    const group = emptyGroup(errorMode);
    for (const key of ['resource', 'metric', 'datapoint'] as const) {
      for (const item of block(key).list()) {
        const c = compileAt(item, CONTEXT_BY_LEGACY_KEY[key]!, 'legacy');
        if (c) group[key].push(c);
      }
    }
    metrics.push(group);
  } else if (!metricConditions.isAbsent) {
    metrics.push(...parseContextConditions(metricConditions, errorMode, 'metrics'));
  }
  return { errorMode, traces, metrics };
}

/**
 * trace_conditions / metric_conditions: a list of strings (one group, each condition's context
 * inferred), or a list of `{context, conditions, error_mode}` (a group each). Mixing both is an
 * error, as in the Collector.
 */
function parseContextConditions(node: Node, errorMode: ErrorMode, signal: Signal): OttlGroupSource[] {
  const items = node.list();
  const contexts = signal === 'traces' ? TRACE_CONTEXTS : METRIC_CONTEXTS;
  const strings = items.filter((i) => typeof i.value === 'string');
  if (strings.length > 0 && strings.length < items.length) {
    node.report('configuring multiple configuration styles is not supported, please use only Basic configuration (a list of conditions) or only Advanced configuration (a list of {context, conditions, error_mode})');
    return [];
  }
  if (strings.length > 0) return [parseGroup(strings, undefined, errorMode, contexts)];
  const groups: OttlGroupSource[] = [];
  for (const item of items) {
    const at = item.struct(['context', 'conditions', 'error_mode']);
    const mode = at('error_mode').oneOf<ErrorMode>(errorMode, ERROR_MODES);
    let context: string | undefined;
    if (!at('context').isAbsent) {
      const name = at('context').string('').toLowerCase();
      if (!Object.hasOwn(contexts, name)) {
        at('context').report(`unknown context ${JSON.stringify(name)} for ${signal} (allowed: ${Object.keys(contexts).join(', ')})`);
        continue;
      }
      context = name;
    }
    const conditions = at('conditions').list();
    if (conditions.length === 0) at('conditions').report('at least one condition is required');
    groups.push(parseGroup(conditions, context, mode, contexts));
  }
  return groups;
}

function parseGroup(
  items: readonly Node[], context: string | undefined, errorMode: ErrorMode,
  contexts: Readonly<Record<string, OttlContext<TelemetryItem>>>,
): OttlGroupSource {
  const group = emptyGroup(errorMode);
  for (const item of items) {
    if (typeof item.value !== 'string') {
      item.report(`expected an OTTL condition (a string), got ${item.value === null ? 'null' : typeof item.value}`);
      continue;
    }
    let name = context;
    if (name === undefined) {
      try {
        name = inferContext(item.value, contexts);
      } catch (err) {
        if (!(err instanceof OttlCompileError)) throw err;
        item.report(withDocs(`unable to infer the context of OTTL condition ${JSON.stringify(item.value)}: ${err.message}`));
        continue;
      }
    }
    const c = compileAt(item, contexts[name]!, context === undefined ? 'explicit' : 'prepend');
    if (!c) continue;
    group[name as Level].push(c);
  }
  return group;
}

/** Reads only the resource (its attributes and dropped count; schema_url is per block): decidable per distinct resource. */
export function readsResourceOnly(c: CompiledCondition<TelemetryItem>): boolean {
  return c.paths.every((p) => p.context === 'resource');
}

export function readsSchemaUrl(c: CompiledCondition<TelemetryItem>): boolean {
  return c.paths.some((p) => p.context === 'resource' && p.path === 'schema_url');
}

/** A group compiled for one signal, with resource-only conditions lifted out. */
export interface OttlGroup {
  /**
   * Conditions decided once per resource: the resource context's, and the span / scope ones that
   * read only the resource (true for one span means true for all of its resource's spans).
   */
  readonly resource: ConditionSequence<TelemetryItem> | undefined;
  readonly scope: ConditionSequence<TelemetryItem> | undefined;
  readonly span: ConditionSequence<TelemetryItem> | undefined;
  readonly spanevent: ConditionSequence<TelemetryItem> | undefined;
  /**
   * Metric and datapoint conditions (metrics only). undefined when the config leaves the level
   * unset: a set one also removes metrics and scopes left (or already) empty.
   */
  readonly metric: ConditionSequence<TelemetryItem> | undefined;
  readonly datapoint: ConditionSequence<TelemetryItem> | undefined;
  /** Span / scope conditions lifted to the resource: a resource whose spans are all gone is removed. */
  readonly liftedItemLevel: boolean;
  /** Scope, span, span event, metric or datapoint conditions remain: the block's bytes are read. */
  readonly wire: boolean;
}

export interface OttlRules {
  readonly groups: readonly OttlGroup[];
  /** Some group reads the resource per block (schema_url): no cached per-resource decision. */
  readonly perBlock: boolean;
  /** Some group reads below the resource. */
  readonly wire: boolean;
}

/** Warnings of error_mode ignore, at most one per condition every 10 s (the Collector logs each). */
function warner(logger: Logger | undefined, processor: string): (err: OttlRuntimeError, c: CompiledCondition<TelemetryItem>) => void {
  const last = new Map<CompiledCondition<TelemetryItem>, { at: number; suppressed: number }>();
  return (err, c) => {
    if (!logger) return;
    const now = Date.now();
    const entry = last.get(c);
    if (entry && now - entry.at < 10_000) {
      entry.suppressed++;
      return;
    }
    logger.warn({ processor, condition: c.text, suppressed: entry?.suppressed ?? 0, err: err.message }, 'failed to evaluate an OTTL condition; it counts as false (error_mode: ignore)');
    last.set(c, { at: now, suppressed: 0 });
  };
}

export function bindOttlRules(config: OttlConfig | undefined, signal: Signal, logger: Logger | undefined, processor: string): OttlRules | undefined {
  const sources = signal === 'traces' ? config?.traces : config?.metrics;
  if (!sources || sources.length === 0) return undefined;
  const onError = warner(logger, processor);
  const seq = (list: readonly CompiledCondition<TelemetryItem>[], mode: ErrorMode): ConditionSequence<TelemetryItem> | undefined =>
    list.length === 0 ? undefined : new ConditionSequence(list, mode, onError);
  const groups: OttlGroup[] = [];
  for (const g of sources) {
    const conds = (list: readonly SourcedCondition[]): CompiledCondition<TelemetryItem>[] => list.map((s) => s.condition);
    // Only for traces: for metrics a set scope / metric / datapoint level also removes metrics
    // and scopes that are empty, which a per-resource verdict cannot reproduce.
    const lifted = signal === 'traces' ? [...conds(g.scope), ...conds(g.span)].filter(readsResourceOnly) : [];
    const liftable = (c: CompiledCondition<TelemetryItem>): boolean => signal === 'traces' && readsResourceOnly(c);
    const scope = conds(g.scope).filter((c) => !liftable(c));
    const span = conds(g.span).filter((c) => !liftable(c));
    const group: OttlGroup = {
      // Resource conditions first: the Collector evaluates the resource before its spans.
      resource: seq([...conds(g.resource), ...lifted], g.errorMode),
      scope: seq(scope, g.errorMode),
      span: seq(span, g.errorMode),
      spanevent: seq(conds(g.spanevent), g.errorMode),
      metric: seq(conds(g.metric), g.errorMode),
      datapoint: seq(conds(g.datapoint), g.errorMode),
      liftedItemLevel: lifted.length > 0,
      wire: scope.length > 0 || span.length > 0 || g.spanevent.length > 0 || g.metric.length > 0 || g.datapoint.length > 0,
    };
    groups.push(group);
  }
  const all = sources.flatMap((g) => [...g.resource, ...g.scope, ...g.span].map((s) => s.condition));
  return { groups, perBlock: all.some(readsSchemaUrl), wire: groups.some((g) => g.wire) };
}

/** Every condition's text, for filterLists-style views. */
export function conditionCount(config: OttlConfig | undefined): number {
  if (!config) return 0;
  return [...config.traces, ...config.metrics].reduce((n, g) => n + g.resource.length + g.scope.length + g.span.length + g.spanevent.length + g.metric.length + g.datapoint.length, 0);
}
