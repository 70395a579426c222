import type { Node } from '../../config/reader';
import { DEFAULT_MAX_SIZE, MAX_MAX_SIZE, MIN_MAX_SIZE } from '../exponential-histogram';
import { parseBuckets, type HistogramUnit } from '../histogram';

// The spanmetrics connector's options, named as in the Collector's spanmetrics connector
// (connector/spanmetricsconnector). See docs/spanmetrics-connector.md.

export interface Dimension {
  /** '' for a glob dimension. */
  readonly name: string;
  /** Used when neither the span nor its resource has the attribute; without it the dimension is left out. */
  readonly default: string | undefined;
  /** A glob dimension (Collector v0.160): every span or resource attribute whose key matches. */
  readonly glob?: RegExp;
}

/**
 * A glob pattern as the Collector compiles it (gobwas/glob with '.' as separator) as an anchored
 * RegExp: `*` any run without '.', `**` any run, `?` one character but '.', `[abc]` `[a-z]`
 * `[!abc]` classes, `{a,b}` alternatives, `\\` escapes. undefined when malformed.
 */
export function compileGlob(pattern: string): RegExp | undefined {
  let out = '';
  let depth = 0;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '\\') {
      if (i + 1 >= pattern.length) return undefined;
      out += escapeRegExp(pattern[++i]!);
    } else if (c === '*') {
      if (pattern[i + 1] === '*') {
        out += '.*';
        i++;
      } else out += '[^.]*';
    } else if (c === '?') out += '[^.]';
    else if (c === '[') {
      const close = pattern.indexOf(']', i + 1);
      if (close < 0) return undefined;
      let body = pattern.slice(i + 1, close);
      const negated = body.startsWith('!');
      if (negated) body = body.slice(1);
      if (body === '') return undefined;
      out += `[${negated ? '^' : ''}${body.replace(/[\\\]^]/g, (m) => `\\${m}`)}]`;
      i = close;
    } else if (c === '{') {
      out += '(?:';
      depth++;
    } else if (c === '}' && depth > 0) {
      out += ')';
      depth--;
    } else if (c === ',' && depth > 0) out += '|';
    else out += escapeRegExp(c);
  }
  if (depth !== 0) return undefined;
  try {
    return new RegExp(`^(?:${out})$`, 's');
  } catch {
    return undefined;
  }
}

function escapeRegExp(c: string): string {
  return /[.*+?^${}()|[\]\\/-]/.test(c) ? `\\${c}` : c;
}

export interface SpanMetricsConfig {
  readonly dimensions: readonly Dimension[];
  /** Extra dimensions for the calls metric only. */
  readonly callsDimensions: readonly Dimension[];
  /** Extra dimensions for the duration histogram only. */
  readonly histogramDimensions: readonly Dimension[];
  /** Built-in dimensions to leave out (service.name, span.name, span.kind, status.code). */
  readonly excludeDimensions: readonly string[];
  /** Scope names whose spans get span.instrumentation.scope.name / .version attributes. */
  readonly includeInstrumentationScope: readonly string[];
  readonly exemplars: { readonly enabled: boolean; readonly maxPerDataPoint: number };
  /** The events metric: one series per span event and dimensions. */
  readonly events: { readonly enabled: boolean; readonly dimensions: readonly Dimension[] };
  /** Skip spans marked span.metrics.skip (OBI's, and Beyla's, mark for "metrics already made"). */
  readonly honorSpanMetricsSkip: boolean;
  /** Adds `sampling.method` ("extrapolated" / "counted") to every series (Collector v0.160.0). */
  readonly enableMetricsSamplingMethod: boolean;
  readonly histogram: {
    readonly disable: boolean;
    readonly unit: HistogramUnit;
    /** Upper bounds in `unit`, strictly increasing (explicit buckets). */
    readonly bounds: readonly number[];
    /** Set: base-2 exponential buckets instead of explicit ones (Collector: `histogram.exponential`). */
    readonly exponential: { readonly maxSize: number } | undefined;
  };
  readonly namespace: string;
  readonly temporality: 'cumulative' | 'delta';
  readonly flushIntervalMs: number;
  /** A resource that received no span for this long is dropped at a flush; 0: never. */
  readonly expirationMs: number;
  /** A series that received no span for this long is dropped at a flush; 0: never. */
  readonly seriesExpirationMs: number;
  /** 0: no limit. */
  readonly cardinalityLimit: number;
  /** Resource attributes that identify a resource; empty means all of them. */
  readonly resourceMetricsKeyAttributes: readonly string[];
  readonly resourceMetricsCacheSize: number;
  /** For delta temporality: how many series' last flush times are remembered. */
  readonly timestampCacheSize: number;
}

export const DEFAULT_BUCKETS_MS: readonly number[] = [2, 4, 6, 8, 10, 50, 100, 200, 400, 800, 1000, 1400, 2000, 5000, 10_000, 15_000];
export const DEFAULT_NAMESPACE = 'traces.span.metrics';
/** The Collector flushes every 60s; spansieve every 15s, so a 15s scrape sees fresh values (see the docs). */
export const DEFAULT_FLUSH_INTERVAL_MS = 15_000;
export const BUILTIN_DIMENSIONS = ['service.name', 'span.name', 'span.kind', 'status.code'] as const;
/** Also accepted by exclude_dimensions: what the Collector adds under feature gates that spansieve keeps off. */
const GATED_DIMENSIONS = ['collector.instance.id', 'otel.status_code'];
export const DEFAULT_MAX_EXEMPLARS_PER_POINT = 5;

const TEMPORALITIES = ['AGGREGATION_TEMPORALITY_CUMULATIVE', 'AGGREGATION_TEMPORALITY_DELTA'] as const;

export function parseDimensions(node: Node, taken: Set<string>): Dimension[] {
  const out: Dimension[] = [];
  const globs: Array<{ text: string; glob: RegExp; at: Node }> = [];
  for (const item of node.list()) {
    const at = item.struct(['name', 'default', 'glob']);
    const name = at('name').string('');
    const globText = at('glob').string('');
    if (globText) {
      if (name) {
        at('glob').report('set either name or glob, not both');
        continue;
      }
      if (!at('default').isAbsent) {
        at('default').report('not supported on a glob dimension');
        continue;
      }
      const glob = compileGlob(globText);
      if (!glob) {
        at('glob').report(`invalid glob ${JSON.stringify(globText)}`);
        continue;
      }
      globs.push({ text: globText, glob, at: at('glob') });
      out.push({ name: '', default: undefined, glob });
      continue;
    }
    if (!name) {
      at('name').report('required (or glob): the span or resource attribute to use, e.g. http.response.status_code');
      continue;
    }
    if (taken.has(name)) {
      at('name').report(`duplicate dimension name ${JSON.stringify(name)}`);
      continue;
    }
    taken.add(name);
    const def = at('default');
    out.push({ name, default: def.isAbsent ? undefined : def.string('') });
  }
  for (const { text, glob, at } of globs) {
    for (const name of taken) if (glob.test(name)) at.report(`dimension name ${JSON.stringify(name)} conflicts with glob ${JSON.stringify(text)}`);
  }
  return out;
}

export function parseSpanMetricsConfig(node: Node): SpanMetricsConfig {
  const at = node.struct([
    'dimensions',
    'calls_dimensions',
    'exclude_dimensions',
    'histogram',
    'namespace',
    'aggregation_temporality',
    'metrics_flush_interval',
    'metrics_expiration',
    'aggregation_cardinality_limit',
    'resource_metrics_key_attributes',
    'resource_metrics_cache_size',
    'metric_timestamp_cache_size',
    'series_expiration',
    'exemplars',
    'events',
    'dimensions_cache_size',
    'include_instrumentation_scope',
    'add_resource_attributes',
    'enable_metrics_sampling_method',
    'honor_span_metrics_skip',
  ]);
  const builtins = new Set<string>(BUILTIN_DIMENSIONS);
  const dimensions = parseDimensions(at('dimensions'), new Set(builtins));
  const common = new Set<string>([...builtins, ...dimensions.map((d) => d.name)]);
  const callsDimensions = parseDimensions(at('calls_dimensions'), new Set(common));

  const histogram = at('histogram').struct(['disable', 'unit', 'explicit', 'exponential', 'dimensions']);
  const exponential = parseExponential(histogram('exponential'));
  if (exponential && !histogram('explicit').isAbsent) histogram('exponential').report('use either `explicit` or `exponential` buckets histogram, not both (as in the Collector)');
  const unitNode = histogram('unit');
  const unitText = unitNode.isAbsent ? 'ms' : unitNode.string('ms').toLowerCase();
  let unit: HistogramUnit = 'ms';
  if (unitText === 'ms' || unitText === 's') unit = unitText;
  else unitNode.report(`unknown unit ${JSON.stringify(unitText)}, allowed units are "ms" and "s"`);
  const explicit = histogram('explicit').struct(['buckets']);
  const defaultBounds = unit === 'ms' ? [...DEFAULT_BUCKETS_MS] : DEFAULT_BUCKETS_MS.map((b) => b / 1000);
  const bounds = explicit('buckets').isAbsent ? defaultBounds : parseBuckets(explicit('buckets'), unit);
  const histogramDimensions = parseDimensions(histogram('dimensions'), new Set(common));

  const excludeDimensions = at('exclude_dimensions')
    .list()
    .map((item) => {
      const name = item.string('');
      if (!(BUILTIN_DIMENSIONS as readonly string[]).includes(name) && !GATED_DIMENSIONS.includes(name)) {
        item.report(`can only exclude ${[...BUILTIN_DIMENSIONS, ...GATED_DIMENSIONS].join(', ')}`);
      }
      return name;
    });

  const exemplars = at('exemplars').struct(['enabled', 'max_per_data_point']);
  const events = at('events').struct(['enabled', 'dimensions']);
  const eventsEnabled = events('enabled').boolean(false);
  // Event dimensions may repeat the common ones (the Collector checks them only against the built-ins).
  const eventDimensions = parseDimensions(events('dimensions'), new Set(builtins));
  if (eventsEnabled && eventDimensions.length === 0) events('dimensions').report('at least one dimension is required when events are enabled (as in the Collector)');
  // Deprecated in the Collector (replaced by aggregation_cardinality_limit), where it only logs a warning.
  at('dimensions_cache_size').integer(0, 0);
  // The Collector copies resource attributes unless a feature gate (off by default) removes them; spansieve always copies them.
  at('add_resource_attributes').boolean(false);
  const seriesExpirationMs = at('series_expiration').duration(0);
  if (seriesExpirationMs < 0) at('series_expiration').report('must not be negative');

  const temporality = at('aggregation_temporality').oneOf<(typeof TEMPORALITIES)[number]>('AGGREGATION_TEMPORALITY_CUMULATIVE', TEMPORALITIES);
  const flushIntervalMs = at('metrics_flush_interval').duration(DEFAULT_FLUSH_INTERVAL_MS);
  if (flushIntervalMs <= 0) at('metrics_flush_interval').report('must be a positive duration, e.g. 15s');

  return {
    dimensions,
    callsDimensions,
    histogramDimensions,
    excludeDimensions,
    includeInstrumentationScope: at('include_instrumentation_scope')
      .list()
      .map((item) => item.string('')),
    exemplars: { enabled: exemplars('enabled').boolean(false), maxPerDataPoint: exemplars('max_per_data_point').integer(DEFAULT_MAX_EXEMPLARS_PER_POINT, 0) },
    events: { enabled: eventsEnabled, dimensions: eventDimensions },
    honorSpanMetricsSkip: at('honor_span_metrics_skip').boolean(true),
    enableMetricsSamplingMethod: at('enable_metrics_sampling_method').boolean(false),
    histogram: { disable: histogram('disable').boolean(false), unit, bounds, exponential },
    namespace: at('namespace').string(DEFAULT_NAMESPACE),
    temporality: temporality === 'AGGREGATION_TEMPORALITY_DELTA' ? 'delta' : 'cumulative',
    flushIntervalMs: flushIntervalMs > 0 ? flushIntervalMs : DEFAULT_FLUSH_INTERVAL_MS,
    expirationMs: at('metrics_expiration').duration(0),
    seriesExpirationMs: Math.max(0, seriesExpirationMs),
    cardinalityLimit: at('aggregation_cardinality_limit').integer(0, 0),
    resourceMetricsKeyAttributes: at('resource_metrics_key_attributes')
      .list()
      .map((item) => item.string('')),
    resourceMetricsCacheSize: at('resource_metrics_cache_size').integer(1000, 1),
    timestampCacheSize: at('metric_timestamp_cache_size').integer(1000, 1),
  };
}

/**
 * `histogram.exponential` (`{}`: the defaults). max_size 0 means the default, as in the
 * Collector; outside 2..16384 it is an error here, where go-expohisto would quietly clamp it.
 */
function parseExponential(node: Node): { maxSize: number } | undefined {
  // `exponential:` with nothing under it is null: the Collector then keeps explicit buckets.
  if (node.isAbsent) return undefined;
  const at = node.struct(['max_size']);
  const size = at('max_size').integer(0, Number.MIN_SAFE_INTEGER);
  if (size === 0) return { maxSize: DEFAULT_MAX_SIZE };
  if (size < MIN_MAX_SIZE || size > MAX_MAX_SIZE) {
    at('max_size').report(`must be between ${MIN_MAX_SIZE} and ${MAX_MAX_SIZE} buckets (0 or absent: ${DEFAULT_MAX_SIZE}), got ${size}`);
    return { maxSize: DEFAULT_MAX_SIZE };
  }
  return { maxSize: size };
}
