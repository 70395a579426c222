import * as fs from 'node:fs';
import pino, { type Logger } from 'pino';
import * as YAML from 'yaml';
import { canHandOver, type AnyFactory, type ComponentKind, type Host, type QueueRequest, type ServiceControl, type ServiceStatus } from '../component/component';
import { canReconfigure, isLiveEditable, type DryRunResult, type LiveSettings } from '../component/live';
import { ConfigIssues, Node, isRecord } from '../config/reader';
import { componentsOf, sectionOf, type ServiceConfig } from '../config/service-config';
import { Graph } from '../pipeline/graph';
import type { InstanceView, SamplingView } from '../component/component';
import { Inventory } from './inventory';
import { SelfTelemetry, TelemetryServer } from './telemetry';

export interface ServiceOptions {
  /** Defaults to pino JSON lines on stdout at the configured level. */
  readonly logger?: Logger;
  /** Kept across reloads by the caller; a fresh one otherwise. */
  readonly inventory?: Inventory;
  /** The file the config came from, where live settings (filter lists) can be saved back. */
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
  /** Live-editable components (component/live.ts) as currently applied. */
  private readonly live: Map<string, LiveComponent>;
  /** Components changed through the admin API and not saved to the config file. */
  private readonly unsaved = new Set<string>();

  constructor(
    readonly config: ServiceConfig,
    options: ServiceOptions = {},
  ) {
    this.logger = options.logger ?? pino({ level: config.telemetry.logLevel, name: 'spansieve', base: undefined });
    this.inventory = options.inventory ?? new Inventory();
    this.configFile = options.configFile;
    this.graph = new Graph(config, this.logger, this.telemetry, this.inventory, this.inventory.sampling);
    this.live = liveComponentsOf(config);
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

  sampling(): SamplingView {
    return this.inventory.sampling.view();
  }

  /** Live-editable components that run (have instances), in config order. */
  liveSettings(): Map<string, Record<string, unknown>> {
    const out = new Map<string, Record<string, unknown>>();
    for (const [id, live] of this.live) {
      if (this.graph.instancesOf(live.kind, id).length > 0) out.set(id, live.factory.live.current(live.config));
    }
    return out;
  }

  setLive(id: string, settings: unknown): string[] {
    const parsed = this.parseLive(id, settings);
    if (parsed.errors.length > 0) return parsed.errors;
    this.applyLive(id, parsed.config, parsed.raw);
    this.unsaved.add(id);
    // Messages and fields as documented (docs/telemetry.md): the filters were the first live-editable components.
    this.logger.info({ filter: id, ...this.live.get(id)!.factory.live.current(parsed.config) }, 'filter lists replaced through the admin API');
    return [];
  }

  dryRun(id: string, settings: unknown): DryRunResult {
    const parsed = this.parseLive(id, settings);
    if (parsed.errors.length > 0) return { errors: parsed.errors, instances: [] };
    const live = this.live.get(id)!.factory.live;
    // A component that does not decide on instances leaves every decision null.
    return { errors: [], instances: this.inventory.preview((attributes) => live.decide?.(parsed.config, attributes)) };
  }

  /**
   * Validates new live settings the way the config file is validated: the body's keys replace
   * those of the component's current raw config, and its factory parses the result (same
   * messages, paths under `<kind>s::<id>`).
   */
  private parseLive(id: string, settings: unknown): { errors: string[]; config: unknown; raw: Record<string, unknown> } {
    const live = this.live.get(id);
    if (!live) return { errors: [`no live-editable component "${id}"`], config: undefined, raw: {} };
    const keys = live.factory.live.keys;
    const issues = new ConfigIssues();
    const body = new Node(settings, '', issues);
    const at = body.struct(keys);
    if (!isRecord(settings)) {
      const errors = issues.errors.length > 0 ? issues.errors : [`the body must be a JSON object with ${keys.map((k) => `"${k}"`).join(' and/or ')}`];
      return { errors, config: undefined, raw: {} };
    }
    const raw: Record<string, unknown> = { ...live.raw };
    for (const key of keys) {
      delete raw[key];
      if (!at(key).isAbsent) raw[key] = settings[key];
    }
    const config = live.factory.parseConfig(new Node(raw, `${sectionOf(live.kind)}::${id}`, issues));
    return { errors: issues.errors, config, raw };
  }

  /**
   * Gives every instance of a live-editable component a new validated config (from the admin API
   * or a reload in place); receivers and queues are untouched. `raw`: the body it was parsed from.
   */
  applyLive(id: string, config: unknown, raw: Record<string, unknown>): void {
    const live = this.live.get(id);
    if (!live) throw new Error(`no live-editable component "${id}"`);
    for (const instance of this.graph.instancesOf(live.kind, id)) if (canReconfigure(instance)) instance.reconfigure(config);
    live.config = config;
    live.raw = raw;
    this.unsaved.delete(id);
  }

  /** Another worker saved this component's settings to the file (service::workers): they are not unsaved here any more. */
  markSaved(id: string): void {
    this.unsaved.delete(id);
  }

  /** True when the admin API changed this component's settings and they were not saved. */
  hasUnsavedChanges(id: string): boolean {
    return this.unsaved.has(id);
  }

  async saveLive(id: string): Promise<void> {
    if (!this.configFile) throw new Error('spansieve was started without a config file; there is nothing to save to');
    const live = this.live.get(id);
    if (!live) throw new Error(`no live-editable component "${id}"`);
    const doc = YAML.parseDocument(await fs.promises.readFile(this.configFile, 'utf8'));
    const at = [sectionOf(live.kind), id];
    for (const key of live.factory.live.keys) {
      if (live.raw[key] === undefined) doc.deleteIn([...at, key]);
      else doc.setIn([...at, key], doc.createNode(live.raw[key]));
    }
    // Write beside and rename, so a reader (or the file watcher) never sees half a file.
    const temporary = `${this.configFile}.${process.pid}.tmp`;
    await fs.promises.writeFile(temporary, doc.toString());
    await fs.promises.rename(temporary, this.configFile);
    this.unsaved.delete(id);
    this.logger.info({ filter: id, file: this.configFile }, 'filter lists saved to the config file');
  }

  /** The live-editable components of this configuration, by id: their kind, capability and raw body as now applied. */
  liveComponents(): ReadonlyMap<string, { readonly kind: ComponentKind; readonly live: LiveSettings<unknown>; readonly raw: Readonly<Record<string, unknown>> }> {
    return new Map([...this.live].map(([id, c]) => [id, { kind: c.kind, live: c.factory.live, raw: c.raw }]));
  }
}

/** A live-editable component as currently applied (config file, reload or admin API). */
interface LiveComponent {
  readonly kind: ComponentKind;
  readonly factory: AnyFactory & { readonly live: LiveSettings<unknown> };
  config: unknown;
  /** Its raw body in the document, with the live keys as last applied. */
  raw: Record<string, unknown>;
}

const KINDS: readonly ComponentKind[] = ['receiver', 'processor', 'exporter', 'connector', 'extension'];

/**
 * The live-editable components of a config. The admin API addresses them by id alone; ids are
 * unique per kind, so should two kinds both have a live-editable `x`, the first kind listed wins.
 */
function liveComponentsOf(config: ServiceConfig): Map<string, LiveComponent> {
  const out = new Map<string, LiveComponent>();
  for (const kind of KINDS) {
    const section = config.raw[sectionOf(kind)];
    for (const [id, component] of componentsOf(config, kind)) {
      const factory = component.factory;
      if (!isLiveEditable(factory) || out.has(id)) continue;
      const raw = isRecord(section) ? section[id] : undefined;
      out.set(id, { kind, factory, config: component.config, raw: isRecord(raw) ? { ...raw } : {} });
    }
  }
  return out;
}
