import type { Logger } from 'pino';
import type { Component, Consumer, ConnectorFactory, CreateSettings } from '../../component/component';
import { errorMessage } from '../../component/errors';
import type { Node } from '../../config/reader';
import { attrValueToString, type Attributes } from '../../pdata/attributes';
import type { Batch } from '../../pdata/batch';
import {
  SPAN_KIND_CLIENT,
  SPAN_KIND_CONSUMER,
  SPAN_KIND_PRODUCER,
  SPAN_KIND_SERVER,
  STATUS_CODE_ERROR,
  WantedAttributes,
  forEachSpan,
  type SpanView,
} from '../../pdata/spans';
import { bucketIndex } from '../histogram';
import { SKIP_MARK_KEY, resourceIsMarked, spanIsMarked } from '../skip-mark';
import {
  TEMPORALITY_CUMULATIVE,
  buildMetricsBatch,
  msToNanos,
  type PlainHistogramPoint,
  type PlainKeyValue,
  type PlainMetric,
  type PlainNumberPoint,
} from '../metrics-output';
import { SERIES_STALENESS_MS, parseServiceGraphConfig, type ServiceGraphConfig } from './config';
import { EdgeStore, type ConnectionType, type Edge } from './store';

// Traces -> metrics, as the Collector's servicegraph connector: each CLIENT (or PRODUCER) span is
// paired with the SERVER (or CONSUMER) span whose parent it is — the same request seen from both
// ends — even when the two arrive in different batches, within store.ttl. Each pair is one request
// on the edge client -> server: counted, failed if either side failed, and its latency recorded
// from both sides. That is what shows which hop of a proxy chain is slow.

const SEP = '\u0000';

interface LatencyHistogram {
  readonly counts: number[];
  count: number;
  sum: number;
}

interface EdgeSeries {
  readonly attributes: PlainKeyValue[];
  total: number;
  failed: number;
  readonly server: LatencyHistogram;
  readonly client: LatencyHistogram;
  lastUpdated: number;
}

export class ServiceGraphConnector implements Component, Consumer {
  readonly store: EdgeStore;
  private readonly series = new Map<string, EdgeSeries>();
  private readonly logger: Logger;
  private readonly startMs: number;
  private readonly counters: { totalEdges: { inc(n: number): void }; expiredEdges: { inc(n: number): void }; droppedSpans: { inc(n: number): void } };
  private readonly timers: NodeJS.Timeout[] = [];
  private flushing: Promise<void> | undefined;
  /** Span attributes the dimensions and database names read; the others are never decoded. */
  private readonly wanted: WantedAttributes;

  constructor(
    settings: CreateSettings,
    private readonly config: ServiceGraphConfig,
    private readonly next: Consumer,
    private readonly now: () => number = Date.now,
  ) {
    this.logger = settings.logger;
    this.startMs = now();
    const labels = { connector: settings.id };
    const t = settings.telemetry;
    this.counters = {
      totalEdges: t.counter('otelcol_connector_servicegraph_total_edges', 'Total number of unique edges', labels),
      expiredEdges: t.counter('otelcol_connector_servicegraph_expired_edges', 'Number of edges that expired before finding its matching span', labels),
      droppedSpans: t.counter('otelcol_connector_servicegraph_dropped_spans', 'Number of spans dropped when trying to add edges', labels),
    };
    this.wanted = new WantedAttributes([...config.dimensions, ...config.databaseNameAttributes]);
    this.store = new EdgeStore(config.store.ttlMs, config.store.maxItems, (edge) => this.onComplete(edge), (edge) => this.onExpire(edge), now);
  }

  async start(): Promise<void> {
    const every = (ms: number, fn: () => void) => {
      const timer = setInterval(fn, ms);
      timer.unref();
      this.timers.push(timer);
    };
    every(this.config.storeExpirationLoopMs, () => this.store.expire());
    every(this.config.cacheLoopMs, () => this.cleanStaleSeries());
    if (this.config.flushIntervalMs > 0) {
      every(this.config.flushIntervalMs, () => {
        this.flush().catch((err: unknown) => this.logger.error({ err: errorMessage(err) }, 'servicegraph: flush failed'));
      });
    }
  }

  /** Stops the timers and flushes what was counted since the last flush, so it is not lost. */
  async shutdown(): Promise<void> {
    const wasStarted = this.timers.length > 0;
    for (const timer of this.timers.splice(0)) clearInterval(timer);
    if (wasStarted) await this.flush();
  }

  async consume(batch: Batch): Promise<void> {
    for (const block of batch.resources) {
      const serviceName = block.attributes.get('service.name');
      if (typeof serviceName !== 'string' || serviceName === '') continue;
      const honor = this.config.honorSpanMetricsSkip;
      if (honor && resourceIsMarked(block)) continue;
      try {
        if (honor) {
          forEachSpan(
            block.bytes,
            (span) => {
              if (!spanIsMarked(span)) this.visit(span, serviceName, block.attributes);
            },
            this.wanted,
            SKIP_MARK_KEY,
          );
        } else {
          forEachSpan(block.bytes, (span) => this.visit(span, serviceName, block.attributes), this.wanted);
        }
      } catch (err) {
        // Never fail the traces pipeline over derived metrics: the other exporters got the spans.
        this.logger.error({ err: errorMessage(err), service: serviceName }, 'servicegraph: could not read the spans of a resource');
      }
    }
    if (this.config.flushIntervalMs <= 0) await this.flush();
  }

  /** Emits every edge series downstream (cumulative); runs on the timer. */
  flush(): Promise<void> {
    if (this.flushing) return this.flushing;
    this.flushing = this.doFlush().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  /** Drops series that were not updated for 15 minutes (the Collector's cache loop). */
  cleanStaleSeries(): void {
    const cutoff = this.now() - SERIES_STALENESS_MS;
    for (const [key, series] of this.series) if (series.lastUpdated < cutoff) this.series.delete(key);
  }

  private visit(span: SpanView, serviceName: string, resourceAttrs: Attributes): void {
    let connectionType: ConnectionType = '';
    let result;
    switch (span.kind) {
      case SPAN_KIND_PRODUCER:
      case SPAN_KIND_CLIENT: {
        if (span.kind === SPAN_KIND_PRODUCER) connectionType = 'messaging_system';
        const latency = span.durationNs / 1e9;
        result = this.store.upsert(span.traceIdHex() + span.spanIdHex(), (edge) => {
          edge.connectionType = connectionType;
          edge.clientService = serviceName;
          edge.clientLatencySec = latency;
          edge.failed ||= span.statusCode === STATUS_CODE_ERROR;
          this.addDimensions('client', edge, resourceAttrs, span);
          // A database call has no SERVER span: the client span stands for both ends.
          const dbName = this.databaseName(resourceAttrs, span);
          if (dbName !== undefined) {
            edge.connectionType = 'database';
            edge.serverService = dbName;
            edge.serverLatencySec = latency;
          }
        });
        break;
      }
      case SPAN_KIND_CONSUMER:
      case SPAN_KIND_SERVER: {
        if (span.kind === SPAN_KIND_CONSUMER) connectionType = 'messaging_system';
        const latency = span.durationNs / 1e9;
        result = this.store.upsert(span.traceIdHex() + span.parentSpanIdHex(), (edge) => {
          edge.connectionType = connectionType;
          edge.serverService = serviceName;
          edge.serverLatencySec = latency;
          edge.failed ||= span.statusCode === STATUS_CODE_ERROR;
          this.addDimensions('server', edge, resourceAttrs, span);
        });
        break;
      }
      default:
        return;
    }
    if (result === 'full') this.counters.droppedSpans.inc(1);
    else if (result === 'new') this.counters.totalEdges.inc(1);
  }

  private addDimensions(side: 'client' | 'server', edge: Edge, resourceAttrs: Attributes, span: SpanView): void {
    for (const dim of this.config.dimensions) {
      const value = resourceAttrs.get(dim) ?? span.attributes().get(dim);
      if (value !== undefined) edge.dimensions.set(`${side}_${dim}`, attrValueToString(value));
    }
  }

  private databaseName(resourceAttrs: Attributes, span: SpanView): string | undefined {
    for (const name of this.config.databaseNameAttributes) {
      const value = resourceAttrs.get(name) ?? span.attributes().get(name);
      if (value !== undefined && value !== null) return attrValueToString(value);
    }
    return undefined;
  }

  private onExpire(edge: Edge): void {
    this.counters.expiredEdges.inc(1);
    this.logger.debug({ client: edge.clientService, server: edge.serverService }, 'servicegraph: edge expired before its other half arrived');
  }

  private onComplete(edge: Edge): void {
    const failed = String(edge.failed);
    let key = `${edge.clientService}${SEP}${edge.serverService}${SEP}${edge.connectionType}${SEP}${failed}`;
    for (const dim of this.config.dimensions) {
      for (const side of ['client', 'server']) {
        const value = edge.dimensions.get(`${side}_${dim}`);
        if (value !== undefined) key += `${SEP}${side}_${dim}_${value}`;
      }
    }
    let series = this.series.get(key);
    if (!series) {
      const attributes: PlainKeyValue[] = [
        { key: 'client', value: { stringValue: edge.clientService } },
        { key: 'server', value: { stringValue: edge.serverService } },
        { key: 'connection_type', value: { stringValue: edge.connectionType } },
        { key: 'failed', value: { boolValue: edge.failed } },
      ];
      for (const [k, v] of edge.dimensions) attributes.push({ key: k, value: { stringValue: v } });
      const histogram = (): LatencyHistogram => ({ counts: new Array<number>(this.config.latencyBounds.length + 1).fill(0), count: 0, sum: 0 });
      series = { attributes, total: 0, failed: 0, server: histogram(), client: histogram(), lastUpdated: 0 };
      this.series.set(key, series);
    }
    series.total++;
    if (edge.failed) series.failed++;
    this.observe(series.server, edge.serverLatencySec);
    this.observe(series.client, edge.clientLatencySec);
    series.lastUpdated = this.now();
  }

  private observe(histogram: LatencyHistogram, value: number): void {
    histogram.counts[bucketIndex(this.config.latencyBounds, value)]!++;
    histogram.count++;
    histogram.sum += value;
  }

  private async doFlush(): Promise<void> {
    if (this.series.size === 0) return;
    const start = msToNanos(this.startMs);
    const time = msToNanos(this.now());
    const total: PlainNumberPoint[] = [];
    const failed: PlainNumberPoint[] = [];
    const server: PlainHistogramPoint[] = [];
    const client: PlainHistogramPoint[] = [];
    const bounds = this.config.latencyBounds;
    const histogramPoint = (attributes: PlainKeyValue[], h: LatencyHistogram): PlainHistogramPoint => ({
      attributes,
      startTimeUnixNano: start,
      timeUnixNano: time,
      count: h.count,
      sum: h.sum,
      bucketCounts: [...h.counts],
      explicitBounds: bounds,
    });
    for (const series of this.series.values()) {
      total.push({ attributes: series.attributes, startTimeUnixNano: start, timeUnixNano: time, asInt: series.total });
      if (series.failed > 0) failed.push({ attributes: series.attributes, startTimeUnixNano: start, timeUnixNano: time, asInt: series.failed });
      server.push(histogramPoint(series.attributes, series.server));
      client.push(histogramPoint(series.attributes, series.client));
    }
    const sum = (name: string, dataPoints: PlainNumberPoint[]): PlainMetric => ({
      name,
      sum: { dataPoints, aggregationTemporality: TEMPORALITY_CUMULATIVE, isMonotonic: true },
    });
    const histogram = (name: string, dataPoints: PlainHistogramPoint[]): PlainMetric => ({
      name,
      unit: 's',
      histogram: { dataPoints, aggregationTemporality: TEMPORALITY_CUMULATIVE },
    });
    const metrics: PlainMetric[] = [sum('traces_service_graph_request_total', total)];
    if (failed.length > 0) metrics.push(sum('traces_service_graph_request_failed_total', failed));
    metrics.push(histogram('traces_service_graph_request_server', server), histogram('traces_service_graph_request_client', client));
    try {
      await this.next.consume(buildMetricsBatch([{ resource: undefined, scope: { name: 'traces_service_graph' }, metrics }]));
    } catch (err) {
      this.logger.error({ err: errorMessage(err) }, 'servicegraph: the metrics pipeline refused the flushed metrics');
    }
  }
}

export const serviceGraphConnectorFactory: ConnectorFactory<ServiceGraphConfig> = {
  singleProcess: 'it pairs client and server spans and counts series; several workers would each see part of the pairs and export partial counts for the same series',
  type: 'servicegraph',
  kind: 'connector',
  routes: [['traces', 'metrics']],
  parseConfig: (node: Node) => parseServiceGraphConfig(node),
  create(settings, config, _from, next) {
    const target = next.get('metrics');
    if (!target) throw new Error(`connector ${settings.id} has no metrics pipeline to send to`);
    return new ServiceGraphConnector(settings, config, target);
  },
};
