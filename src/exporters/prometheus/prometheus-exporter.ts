import * as http from 'node:http';
import type { Logger } from 'pino';
import type { Metric, RegistryContentType } from 'prom-client';
import type { Component, Consumer, CreateSettings, ExporterFactory } from '../../component/component';
import type { Node } from '../../config/reader';
import type { Batch } from '../../pdata/batch';
import { boundPort, closeServer, listen } from '../../util/net';
import { promClient } from '../../util/lazy-modules';
import { Accumulator, samplesOf, type Family } from '../internal/prometheus/accumulator';
import { normalizeNamespace, parseLabelMap, type LabelPairs } from '../internal/prometheus/translation';

// A scrape endpoint for the metrics spansieve keeps: OTLP metrics are translated to Prometheus
// series (internal/prometheus/translation.ts) and held with their latest values (accumulator.ts); each scrape writes
// them out through a prom-client Registry in text format 0.0.4, or OpenMetrics 1.0 when
// enable_open_metrics is set and the scraper asks for it (Prometheus does).
//
// Why a Registry of our own metric objects instead of prom-client's Counter/Histogram: those
// record observations, while OTLP brings values already aggregated (cumulative bucket counts,
// sums, start times) that must be exposed as they are. prom-client's Registry accepts any object
// with name/type/get() and still does the exposition: escaping, content types, the OpenMetrics
// counter `_total` rule and `# EOF`. So the state is ours and the format is prom-client's.

export interface PrometheusExporterConfig {
  readonly endpoint: string;
  /** Normalized (label-name rules). */
  readonly namespace: string;
  readonly constLabels: LabelPairs;
  readonly metricExpirationMs: number;
  readonly enableOpenMetrics: boolean;
  readonly resourceToTelemetry: boolean;
  readonly addMetricSuffixes: boolean;
}

export const DEFAULT_ENDPOINT = '127.0.0.1:8889';

export function parsePrometheusExporterConfig(node: Node): PrometheusExporterConfig {
  const at = node.struct([
    'endpoint',
    'namespace',
    'const_labels',
    'metric_expiration',
    'enable_open_metrics',
    'resource_to_telemetry_conversion',
    'add_metric_suffixes',
    'send_timestamps',
  ]);
  if (at('send_timestamps').boolean(false)) at('send_timestamps').report('not supported by spansieve: samples carry no timestamps, Prometheus uses the scrape time');
  const r2t = at('resource_to_telemetry_conversion').struct(['enabled']);
  const expiration = at('metric_expiration').duration(5 * 60_000);
  if (expiration <= 0) at('metric_expiration').report('must be a positive duration, e.g. 5m');
  return {
    endpoint: at('endpoint').endpoint(DEFAULT_ENDPOINT),
    namespace: normalizeNamespace(at('namespace').string('')),
    constLabels: parseLabelMap(at('const_labels')),
    metricExpirationMs: expiration > 0 ? expiration : 5 * 60_000,
    enableOpenMetrics: at('enable_open_metrics').boolean(false),
    resourceToTelemetry: r2t('enabled').boolean(false),
    addMetricSuffixes: at('add_metric_suffixes').boolean(true),
  };
}

interface ExpositionValue {
  metricName?: string;
  labels: Record<string, string>;
  value: number;
  /** prom-client writes it in OpenMetrics only, as `# {labels} value timestamp`. */
  exemplar?: { labelSet: Readonly<Record<string, string>>; value: number; timestamp: number };
}

/**
 * A metric family as prom-client's Registry reads it (name, help, type, get()). get() reads the
 * name back from the object: for OpenMetrics the Registry renames counters (drops `_total`)
 * before asking for their values.
 */
function registryFamily(name: string, help: string, type: Family['type'], values: ExpositionValue[]): Metric {
  const family = {
    name,
    help,
    type,
    aggregator: 'sum',
    get() {
      return Promise.resolve({ name: family.name, help, type, values, aggregator: 'sum' });
    },
  };
  return family as unknown as Metric;
}

function labelsRecord(labels: LabelPairs): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [n, v] of labels) out[n] = v;
  return out;
}

export class PrometheusExporter implements Component, Consumer {
  readonly accumulator: Accumulator;
  private server: http.Server | undefined;
  private readonly logger: Logger;
  private readonly sent: { inc(n: number): void };
  private readonly failed: { inc(n: number): void };

  constructor(
    settings: CreateSettings,
    private readonly config: PrometheusExporterConfig,
  ) {
    this.logger = settings.logger;
    this.accumulator = new Accumulator(
      {
        namespace: config.namespace,
        addMetricSuffixes: config.addMetricSuffixes,
        constLabels: config.constLabels,
        resourceToTelemetry: config.resourceToTelemetry,
        expirationMs: config.metricExpirationMs,
      },
      settings.logger,
    );
    const labels = { exporter: settings.id };
    this.sent = settings.telemetry.signalCounter('exporter_sent', 'metrics', 'Number of items successfully sent to destination', labels);
    this.failed = settings.telemetry.signalCounter('exporter_send_failed', 'metrics', 'Number of items the exporter failed to send and dropped', labels);
  }

  /** The port actually bound (the config may ask for port 0). */
  get port(): number {
    return this.server ? boundPort(this.server) : 0;
  }

  async start(): Promise<void> {
    this.server = http.createServer((req, res) => this.handle(req, res));
    await listen(this.server, this.config.endpoint);
    this.logger.info({ endpoint: this.config.endpoint }, 'prometheus exporter: serving metrics at /metrics');
  }

  async shutdown(): Promise<void> {
    await closeServer(this.server);
    this.server = undefined;
  }

  async consume(batch: Batch): Promise<void> {
    const now = Date.now();
    let accepted = 0;
    let dropped = 0;
    for (const block of batch.resources) {
      const result = this.accumulator.accumulate(block, now);
      accepted += result.accepted;
      dropped += result.dropped;
    }
    if (accepted > 0) this.sent.inc(accepted);
    if (dropped > 0) this.failed.inc(dropped);
  }

  /** The exposition for a scrape; `openMetrics` picks the format. */
  async render(openMetrics: boolean): Promise<{ contentType: string; body: string }> {
    const { Registry } = promClient();
    const contentType = openMetrics ? Registry.OPENMETRICS_CONTENT_TYPE : Registry.PROMETHEUS_CONTENT_TYPE;
    const registry = new Registry<RegistryContentType>();
    registry.setContentType(contentType);
    const families = this.accumulator.collect(Date.now());
    const targetInfos = this.accumulator.targetInfos();
    if (targetInfos.length > 0) {
      const values = targetInfos.map((labels) => ({ labels: labelsRecord([...labels, ...this.config.constLabels.filter(([n]) => !labels.some(([m]) => m === n))]), value: 1 }));
      registry.registerMetric(registryFamily(this.accumulator.targetInfoName, 'Target metadata', 'gauge', values));
    }
    for (const family of families) {
      if (family.name === this.accumulator.targetInfoName) continue;
      const values: ExpositionValue[] = [];
      for (const series of family.series.values()) {
        const labels = labelsRecord(series.labels);
        for (const sample of samplesOf(series)) {
          const sampleLabels = sample.extra ? { ...labels, [sample.extra[0]]: sample.extra[1] } : labels;
          const value: ExpositionValue = sample.suffix ? { metricName: family.name + sample.suffix, labels: sampleLabels, value: sample.value } : { labels: sampleLabels, value: sample.value };
          if (sample.exemplar) value.exemplar = { labelSet: sample.exemplar.labels, value: sample.exemplar.value, timestamp: sample.exemplar.timestampSec };
          values.push(value);
        }
      }
      registry.registerMetric(registryFamily(family.name, family.help, family.type, values));
    }
    return { contentType, body: await registry.metrics() };
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found; metrics are at /metrics\n');
      return;
    }
    const openMetrics = this.config.enableOpenMetrics && wantsOpenMetrics(req.headers.accept);
    this.render(openMetrics).then(
      ({ contentType, body }) => {
        res.writeHead(200, { 'content-type': contentType });
        if (req.method === 'HEAD') res.end();
        else res.end(body);
      },
      (err: Error) => {
        this.logger.error({ err: err.message }, 'prometheus exporter: rendering the metrics failed');
        res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err.message}\n`);
      },
    );
  }
}

/** True when an Accept header lists OpenMetrics with a non-zero quality. */
export function wantsOpenMetrics(accept: string | undefined): boolean {
  if (!accept) return false;
  return accept.split(',').some((part) => {
    const [type, ...params] = part.split(';').map((s) => s.trim());
    if (type !== 'application/openmetrics-text') return false;
    const q = params.find((p) => p.startsWith('q='));
    return q === undefined || Number(q.slice(2)) > 0;
  });
}

export const prometheusExporterFactory: ExporterFactory<PrometheusExporterConfig> = {
  singleProcess: 'it serves its series on one port; several workers would share that port and a scrape would land on one of them, seeing only its part',
  type: 'prometheus',
  kind: 'exporter',
  signals: ['metrics'],
  parseConfig: parsePrometheusExporterConfig,
  create: (settings, config) => new PrometheusExporter(settings, config),
};
