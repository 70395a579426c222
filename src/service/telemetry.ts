import * as http from 'node:http';
import type { Counter, Gauge, Registry } from 'prom-client';
import type { ComponentTelemetry } from '../component/component';
import { itemNoun, type Signal } from '../pdata/batch';
import { promClient } from '../util/lazy-modules';
import { listen, closeServer } from '../util/net';

/** One labelled series: components hold it and add to it or set it. */
class SeriesValue {
  value = 0;
  /** Series appear in the exposition once first counted or set, as prom-client's children do. */
  touched = false;

  constructor(readonly labels: Readonly<Record<string, string>>) {}

  inc(n: number): void {
    this.value += n;
    this.touched = true;
  }

  set(n: number): void {
    this.value = n;
    this.touched = true;
  }
}

/** A worker's self-metrics as sent to the primary (service::workers): touched series only. */
export interface FamilySnapshot {
  readonly name: string;
  readonly kind: 'counter' | 'gauge';
  readonly help: string;
  readonly series: readonly (readonly [Readonly<Record<string, string>>, number])[];
}

interface Family {
  readonly kind: 'counter' | 'gauge';
  readonly help: string;
  readonly labelNames: readonly string[];
  readonly series: Map<string, SeriesValue>;
}

/**
 * The service's own metrics, with the Collector's names. Components bind their series once at
 * creation, so the hot path only adds to a number. The prom-client registry that exposes them is
 * built on first use (the metrics endpoint, a test): with metrics off prom-client is never loaded.
 */
export class SelfTelemetry implements ComponentTelemetry {
  private readonly families = new Map<string, Family>();
  private promRegistry: Registry | undefined;

  /** `rss`: what otelcol_process_memory_rss reports (the primary adds its workers'). */
  constructor(private readonly rss: () => number = () => process.memoryUsage.rss()) {}

  counter(name: string, help: string, labels: Record<string, string>): { inc(n: number): void } {
    return this.series(name, 'counter', help, labels);
  }

  gauge(name: string, help: string, labels: Record<string, string>): { set(n: number): void } {
    return this.series(name, 'gauge', help, labels);
  }

  /** Counter named by signal: `otelcol_<prefix>_<spans|metric_points>`. */
  signalCounter(prefix: string, signal: Signal, help: string, labels: Record<string, string>): { inc(n: number): void } {
    return this.counter(`otelcol_${prefix}_${itemNoun(signal)}`, `${help} (${itemNoun(signal).replace('_', ' ')})`, labels);
  }

  /** The prom-client registry with every metric so far and the process gauges. */
  get registry(): Registry {
    if (!this.promRegistry) {
      const { Gauge, Registry } = promClient();
      const registry = new Registry();
      this.promRegistry = registry;
      // Registered for their collect() callbacks, read on every scrape.
      const rssGauge: Gauge = new Gauge({
        name: 'otelcol_process_memory_rss',
        help: 'Total physical memory (resident set size) of the process, in bytes',
        registers: [registry],
        collect: () => {
          rssGauge.set(this.rss());
        },
      });
      new Gauge({
        name: 'otelcol_process_uptime',
        help: 'Uptime of the process, in seconds',
        registers: [registry],
        collect() {
          // The process's, not this service generation's: a reload that restarts the service keeps it.
          this.set(process.uptime());
        },
      });
      for (const [name, family] of this.families) this.expose(registry, name, family);
    }
    return this.promRegistry;
  }

  /** Every family's touched series, for the primary to sum. */
  snapshot(): FamilySnapshot[] {
    return [...this.families].map(([name, f]) => ({
      name,
      kind: f.kind,
      help: f.help,
      series: [...f.series.values()].filter((v) => v.touched).map((v) => [v.labels, v.value] as const),
    }));
  }

  /**
   * Sets the families in `snapshots` to their sums over all of them (the primary, from its
   * workers' snapshots): each series is the sum of that series in every snapshot, counters and
   * gauges alike (queue sizes and capacities add up too). Series not in any snapshot read 0.
   */
  setSums(snapshots: readonly (readonly FamilySnapshot[])[]): void {
    for (const list of snapshots) for (const f of list) for (const series of this.families.get(f.name)?.series.values() ?? []) series.value = 0;
    for (const list of snapshots) {
      for (const f of list) {
        if (this.families.get(f.name)?.kind !== undefined && this.families.get(f.name)!.kind !== f.kind) continue;
        for (const [labels, value] of f.series) {
          const series = this.series(f.name, f.kind, f.help, labels);
          series.set(series.value + value);
        }
      }
    }
  }

  private series(name: string, kind: Family['kind'], help: string, labels: Record<string, string>): SeriesValue {
    let family = this.families.get(name);
    if (!family) {
      family = { kind, help, labelNames: Object.keys(labels), series: new Map() };
      this.families.set(name, family);
      if (this.promRegistry) this.expose(this.promRegistry, name, family);
    } else if (family.kind !== kind) {
      throw new Error(`self-metric ${name} is already a ${family.kind}`);
    }
    const names = Object.keys(labels);
    if (names.length !== family.labelNames.length || names.some((label) => !family.labelNames.includes(label))) {
      throw new Error(`self-metric ${name} has labels ${family.labelNames.join(', ')}, not ${names.join(', ')}`);
    }
    const key = JSON.stringify(family.labelNames.map((label) => labels[label]));
    let series = family.series.get(key);
    if (!series) {
      series = new SeriesValue({ ...labels });
      family.series.set(key, series);
    }
    return series;
  }

  /** A prom-client metric that reads the family's series at each collection. */
  private expose(registry: Registry, name: string, family: Family): void {
    const { Counter, Gauge } = promClient();
    const options = { name, help: family.help, labelNames: family.labelNames, registers: [registry] };
    if (family.kind === 'counter') {
      new Counter({
        ...options,
        collect(this: Counter<string>) {
          this.reset();
          for (const series of family.series.values()) if (series.touched) this.inc(series.labels, series.value);
        },
      });
    } else {
      new Gauge({
        ...options,
        collect(this: Gauge<string>) {
          this.reset();
          for (const series of family.series.values()) if (series.touched) this.set(series.labels, series.value);
        },
      });
    }
  }
}

/** Serves the registry at `path` on `address`. */
export class TelemetryServer {
  private server: http.Server | undefined;

  constructor(
    private readonly telemetry: SelfTelemetry,
    private readonly address: string,
    private readonly path = '/metrics',
    /** Runs before each scrape is rendered (the primary gathers its workers' metrics). */
    private readonly beforeScrape: () => Promise<void> = () => Promise.resolve(),
  ) {}

  async start(): Promise<void> {
    this.server = http.createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      if (req.method !== 'GET' || url.pathname !== this.path) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end(`not found; metrics are at ${this.path}\n`);
        return;
      }
      this.beforeScrape()
        .then(() => this.telemetry.registry.metrics())
        .then(
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
