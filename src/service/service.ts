import * as fs from 'node:fs';
import pino, { type Logger } from 'pino';
import * as YAML from 'yaml';
import { canHandOver, type DryRunResult, type FilterLists, type Host, type QueueRequest, type ServiceControl, type ServiceStatus } from '../component/component';
import { ConfigIssues, Node, isRecord } from '../config/reader';
import type { ServiceConfig } from '../config/service-config';
import { decide, FilterProcessor, filterLists, parseFilterConfig, type FilterConfig } from '../processors/filter/filter';
import { Graph } from '../pipeline/graph';
import type { InstanceView } from '../component/component';
import { Inventory } from './inventory';
import { SelfTelemetry, TelemetryServer } from './telemetry';

export interface ServiceOptions {
  /** Defaults to pino JSON lines on stdout at the configured level. */
  readonly logger?: Logger;
  /** Kept across reloads by the caller; a fresh one otherwise. */
  readonly inventory?: Inventory;
  /** The file the config came from, where filter lists can be saved back. */
  readonly configFile?: string;
}

/** One running configuration: its own telemetry, its component graph and their lifecycle. */
export class Service implements ServiceControl {
  readonly telemetry = new SelfTelemetry();
  readonly logger: Logger;
  readonly graph: Graph;
  readonly inventory: Inventory;
  private readonly telemetryServer: TelemetryServer | undefined;
  private readonly configFile: string | undefined;
  private status: ServiceStatus = 'stopped';
  /** Each filter processor's raw config as currently applied (config file or admin API). */
  private readonly filterSources = new Map<string, Record<string, unknown>>();
  /** Filters changed through the admin API and not saved to the config file. */
  private readonly unsaved = new Set<string>();

  constructor(
    readonly config: ServiceConfig,
    options: ServiceOptions = {},
  ) {
    this.logger = options.logger ?? pino({ level: config.telemetry.logLevel, name: 'spansieve', base: undefined });
    this.inventory = options.inventory ?? new Inventory();
    this.configFile = options.configFile;
    this.graph = new Graph(config, this.logger, this.telemetry, this.inventory);
    for (const id of this.filterIds()) {
      const raw = isRecord(config.raw.processors) ? config.raw.processors[id] : undefined;
      this.filterSources.set(id, isRecord(raw) ? { ...raw } : {});
    }
    this.telemetryServer = config.telemetry.metricsAddress ? new TelemetryServer(this.telemetry, config.telemetry.metricsAddress) : undefined;
  }

  get state(): ServiceStatus {
    return this.status;
  }

  async start(): Promise<void> {
    const host: Host = { reportStatus: (status) => this.setStatus(status), control: this, extensions: this.graph.extensions };
    this.setStatus('starting');
    try {
      await this.telemetryServer?.start();
      await this.graph.start(host);
    } catch (err) {
      await this.shutdown();
      throw err;
    }
    this.setStatus('ready');
    this.logger.info(
      {
        pipelines: this.config.pipelines.map((p) => p.id),
        receivers: [...this.graph.receivers.keys()],
        exporters: [...this.graph.exporters.keys()],
      },
      'spansieve is ready',
    );
  }

  /** Stops receivers, drains queues, then stops the rest. Safe to call more than once. */
  async shutdown(): Promise<void> {
    if (this.status === 'stopped' || this.status === 'stopping') return;
    this.setStatus('stopping');
    await this.graph.shutdown();
    await this.telemetryServer?.shutdown();
    this.setStatus('stopped');
    this.logger.info('spansieve stopped');
  }

  /**
   * Stops for a reload: like shutdown(), but the exporters listed in `handOver` give up their
   * unsent batches (returned by exporter id, for adoptQueues() of the next service) instead of
   * draining them, and any other exporter drains in the background (`draining`).
   */
  async stopForReload(
    handOver: ReadonlySet<string>,
  ): Promise<{ carried: Map<string, QueueRequest[]>; draining: Promise<void>; abandon: () => Promise<void> }> {
    this.setStatus('stopping');
    const stopped = await this.graph.stopForReload(handOver);
    await this.telemetryServer?.shutdown();
    this.setStatus('stopped');
    return stopped;
  }

  /** The shutdown deadline passed: exporters stop retrying and drop what is left (counted, logged). */
  abandonQueues(): Promise<void> {
    return this.graph.abandonQueues();
  }

  /** Gives each exporter the batches its predecessor released. */
  adoptQueues(carried: ReadonlyMap<string, readonly QueueRequest[]>): void {
    for (const [id, batches] of carried) {
      if (batches.length === 0) continue;
      const exporter = this.graph.exporters.get(id);
      if (canHandOver(exporter)) exporter.adoptQueue(batches);
      else {
        const items = batches.reduce((n, b) => n + b.itemCount, 0);
        this.logger.error({ exporter: id, batches: batches.length, items }, 'no exporter of the new configuration can take these queued batches; dropping them');
      }
    }
  }

  private setStatus(status: ServiceStatus): void {
    this.status = status;
    for (const extension of this.graph.extensions.values()) extension.onStatus?.(status);
  }

  instances(): InstanceView[] {
    return this.inventory.list();
  }

  filters(): Map<string, FilterLists> {
    const out = new Map<string, FilterLists>();
    for (const id of this.filterIds()) {
      const processor = this.filterProcessors(id)[0];
      if (processor) out.set(id, filterLists(processor.config));
    }
    return out;
  }

  setFilter(id: string, lists: unknown): string[] {
    const parsed = this.parseLists(id, lists);
    if (parsed.errors.length > 0) return parsed.errors;
    const { config, raw } = parsed;
    this.applyFilter(id, config!, raw);
    this.unsaved.add(id);
    this.logger.info({ filter: id, keep: raw.keep ?? null, drop: raw.drop ?? [] }, 'filter lists replaced through the admin API');
    return [];
  }

  dryRun(id: string, lists: unknown): DryRunResult {
    const parsed = this.parseLists(id, lists);
    if (parsed.errors.length > 0) return { errors: parsed.errors, instances: [] };
    const config = parsed.config!;
    return {
      errors: [],
      instances: this.inventory.preview((attributes) => {
        const decision = decide(config, attributes);
        return { kept: decision.kept, selector: decision.selector?.text ?? null };
      }),
    };
  }

  /** Validates new lists over a filter's current config, as setFilter and dryRun take them. */
  private parseLists(id: string, lists: unknown): { errors: string[]; config?: FilterConfig; raw: Record<string, unknown> } {
    const issues = new ConfigIssues();
    const body = new Node(lists, '', issues);
    const at = body.struct(['keep', 'drop']);
    const raw: Record<string, unknown> = { ...this.filterSources.get(id) };
    if (!isRecord(lists)) return { errors: issues.errors.length > 0 ? issues.errors : ['the body must be a JSON object with "keep" and/or "drop"'], raw };
    delete raw.keep;
    delete raw.drop;
    if (!at('keep').isAbsent) raw.keep = lists.keep;
    if (!at('drop').isAbsent) raw.drop = lists.drop;
    const config = parseFilterConfig(new Node(raw, `processors::${id}`, issues));
    return { errors: issues.errors, config, raw };
  }

  /** Swaps a filter processor's rules in every pipeline; receivers and queues are untouched. */
  applyFilter(id: string, config: FilterConfig, raw: Record<string, unknown>): void {
    for (const processor of this.filterProcessors(id)) processor.setConfig(config);
    this.filterSources.set(id, raw);
    this.unsaved.delete(id);
  }

  /** True when the admin API changed this filter's lists and they were not saved. */
  hasUnsavedChanges(id: string): boolean {
    return this.unsaved.has(id);
  }

  async saveFilter(id: string): Promise<void> {
    if (!this.configFile) throw new Error('spansieve was started without a config file; there is nothing to save to');
    const raw = this.filterSources.get(id);
    if (!raw) throw new Error(`no filter processor "${id}"`);
    const doc = YAML.parseDocument(await fs.promises.readFile(this.configFile, 'utf8'));
    for (const key of ['keep', 'drop'] as const) {
      if (raw[key] === undefined) doc.deleteIn(['processors', id, key]);
      else doc.setIn(['processors', id, key], doc.createNode(raw[key]));
    }
    // Write beside and rename, so a reader (or the file watcher) never sees half a file.
    const temporary = `${this.configFile}.${process.pid}.tmp`;
    await fs.promises.writeFile(temporary, doc.toString());
    await fs.promises.rename(temporary, this.configFile);
    this.unsaved.delete(id);
    this.logger.info({ filter: id, file: this.configFile }, 'filter lists saved to the config file');
  }

  filterIds(): string[] {
    return [...this.config.processors.values()].filter((p) => p.factory.type === 'filter').map((p) => p.id);
  }

  private filterProcessors(id: string): FilterProcessor[] {
    return this.graph.processors.filter((p) => p.id === id && p.component instanceof FilterProcessor).map((p) => p.component as FilterProcessor);
  }
}
