import * as http from 'node:http';
import { Counter, Gauge, Registry } from 'prom-client';
import { itemNoun, type Signal } from '../pdata/batch';
import { listen, closeServer } from '../util/net';

type CounterOf = Counter<string>;

/**
 * The service's own metrics, with the Collector's names, on one prom-client registry. Components
 * bind their label children once at creation, so the hot path only increments.
 */
export class SelfTelemetry {
  readonly registry = new Registry();
  private readonly counters = new Map<string, CounterOf>();
  private readonly gauges = new Map<string, Gauge<string>>();

  constructor() {
    // Registered for their collect() callbacks, read on every scrape.
    new Gauge({
      name: 'otelcol_process_memory_rss',
      help: 'Total physical memory (resident set size) of the process, in bytes',
      registers: [this.registry],
      collect() {
        this.set(process.memoryUsage.rss());
      },
    });
    new Gauge({
      name: 'otelcol_process_uptime',
      help: 'Uptime of the process, in seconds',
      registers: [this.registry],
      collect() {
        // The process's, not this service generation's: a reload that restarts the service keeps it.
        this.set(process.uptime());
      },
    });
  }

  counter(name: string, help: string, labels: Record<string, string>): { inc(n: number): void } {
    let counter = this.counters.get(name);
    if (!counter) {
      counter = new Counter({ name, help, labelNames: Object.keys(labels), registers: [this.registry] });
      this.counters.set(name, counter);
    }
    return counter.labels(labels);
  }

  gauge(name: string, help: string, labels: Record<string, string>): { set(n: number): void } {
    let gauge = this.gauges.get(name);
    if (!gauge) {
      gauge = new Gauge({ name, help, labelNames: Object.keys(labels), registers: [this.registry] });
      this.gauges.set(name, gauge);
    }
    return gauge.labels(labels);
  }

  /** Counter named by signal: `otelcol_<prefix>_<spans|metric_points>`. */
  signalCounter(prefix: string, signal: Signal, help: string, labels: Record<string, string>): { inc(n: number): void } {
    return this.counter(`otelcol_${prefix}_${itemNoun(signal)}`, `${help} (${itemNoun(signal).replace('_', ' ')})`, labels);
  }
}

/** Serves the registry at `path` on `address`. */
export class TelemetryServer {
  private server: http.Server | undefined;

  constructor(
    private readonly telemetry: SelfTelemetry,
    private readonly address: string,
    private readonly path = '/metrics',
  ) {}

  async start(): Promise<void> {
    this.server = http.createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      if (req.method !== 'GET' || url.pathname !== this.path) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end(`not found; metrics are at ${this.path}\n`);
        return;
      }
      this.telemetry.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': this.telemetry.registry.contentType }).end(text),
        (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(err.message),
      );
    });
    await listen(this.server, this.address);
  }

  async shutdown(): Promise<void> {
    await closeServer(this.server);
  }
}
