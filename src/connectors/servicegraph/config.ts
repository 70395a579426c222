import type { Node } from '../../config/reader';
import { parseBuckets } from '../histogram';

// The servicegraph connector's options, named as in the Collector's servicegraph connector
// (connector/servicegraphconnector). See docs/servicegraph-connector.md.

export interface ServiceGraphConfig {
  /** Latency histogram upper bounds, in seconds. */
  readonly latencyBounds: readonly number[];
  /** Extra attributes (resource first, then span) added as client_<name> / server_<name>. */
  readonly dimensions: readonly string[];
  readonly store: { readonly ttlMs: number; readonly maxItems: number };
  readonly cacheLoopMs: number;
  readonly storeExpirationLoopMs: number;
  /** 0: flush after every batch of spans. */
  readonly flushIntervalMs: number;
  /** A CLIENT span with one of these attributes is a database call: its edge completes without a SERVER span. */
  readonly databaseNameAttributes: readonly string[];
  /** Skip spans marked span.metrics.skip (OBI already emits their service graph). */
  readonly honorSpanMetricsSkip: boolean;
}

export const DEFAULT_LATENCY_BOUNDS_S: readonly number[] = [0.002, 0.004, 0.006, 0.008, 0.01, 0.05, 0.1, 0.2, 0.4, 0.8, 1, 1.4, 2, 5, 10, 15];
export const DEFAULT_FLUSH_INTERVAL_MS = 15_000;
/** Series not updated for this long are dropped at the next cache loop (as in the Collector). */
export const SERIES_STALENESS_MS = 15 * 60_000;

export function parseServiceGraphConfig(node: Node): ServiceGraphConfig {
  const at = node.struct([
    'latency_histogram_buckets',
    'dimensions',
    'store',
    'cache_loop',
    'store_expiration_loop',
    'metrics_flush_interval',
    'database_name_attributes',
    'honor_span_metrics_skip',
  ]);
  const store = at('store').struct(['ttl', 'max_items']);
  const ttlMs = store('ttl').duration(2000);
  if (ttlMs <= 0) store('ttl').report('must be a positive duration, e.g. 2s');
  const buckets = at('latency_histogram_buckets');
  const latencyBounds = buckets.isAbsent ? [...DEFAULT_LATENCY_BOUNDS_S] : parseBuckets(buckets, 's');
  if (!buckets.isAbsent && latencyBounds.length === 0) buckets.report('at least one bucket is required');
  const positive = (key: string, fallback: number): number => {
    const ms = at(key).duration(fallback);
    if (ms <= 0) {
      at(key).report('must be a positive duration');
      return fallback;
    }
    return ms;
  };
  const dbAttrs = at('database_name_attributes')
    .list()
    .map((item) => item.string(''))
    .filter((s) => s.length > 0);
  return {
    latencyBounds,
    dimensions: at('dimensions')
      .list()
      .map((item) => item.string(''))
      .filter((s) => s.length > 0),
    store: { ttlMs: ttlMs > 0 ? ttlMs : 2000, maxItems: store('max_items').integer(1000, 1) },
    cacheLoopMs: positive('cache_loop', 60_000),
    storeExpirationLoopMs: positive('store_expiration_loop', 2000),
    flushIntervalMs: at('metrics_flush_interval').duration(DEFAULT_FLUSH_INTERVAL_MS),
    databaseNameAttributes: dbAttrs.length > 0 ? dbAttrs : ['db.name'],
    honorSpanMetricsSkip: at('honor_span_metrics_skip').boolean(true),
  };
}
