import * as fs from 'node:fs';
import type { Logger } from 'pino';
import { isRecord } from '../config/reader';
import { componentsOf, sectionOf, type ServiceConfig } from '../config/service-config';
import type { ComponentKind, ComponentStatusEvent, QueueRequest } from '../component/component';
import { Inventory } from './inventory';
import { loadNewConfig } from './reload-config';
import { Service } from './service';

export type ReloadOutcome =
  | { kind: 'unchanged' }
  /** Only live-editable components (filter processors) changed, and took their new settings in place. */
  | { kind: 'filters'; ids: string[] }
  | { kind: 'restarted' }
  | { kind: 'rejected'; errors: readonly string[] }
  /**
   * Something unexpected failed (an unreadable config that is not a validation error, a component
   * that threw while stopping), or neither the new nor the previous configuration could start
   * (`running: false`: no service runs until a restore attempt or a later reload succeeds).
   */
  | { kind: 'failed'; error: string; running: boolean };

/** How often a supervisor left without a service tries to start the last configuration again. */
const RESTORE_RETRY_MS = 5000;

/**
 * Runs the service and reloads it on demand (SIGHUP, a change of the config file). A new config
 * is validated first and an invalid one leaves the running service alone. When only the settings
 * of live-editable components changed (filter lists; component/live.ts) they are swapped in
 * place: receivers, queues and connections are untouched, so nothing in flight is lost. Any other change restarts the service: receivers stop, each exporter that
 * stays hands its unsent batches to its successor (the others drain in the background), and the
 * new service starts (clients see refused connections for that moment and retry).
 */
export class Supervisor {
  private current: Service | undefined;
  /** The document the running service was built or last reloaded from. */
  private appliedRaw: Record<string, unknown> = {};
  private readonly inventory = new Inventory();
  private reloading: Promise<ReloadOutcome> | undefined;
  private watching = false;
  /** Old exporters still draining after reloads, and how to make them give up at the shutdown deadline. */
  private readonly draining = new Map<Promise<void>, () => Promise<void>>();
  private shuttingDown = false;
  private deadlinePassed = false;
  /**
   * Set while no service runs because both the new and the previous configuration failed to
   * start: the configuration to start again, and the batches released by the stopped service,
   * kept for whichever service starts next.
   */
  private down: { config: ServiceConfig; carried: Map<string, QueueRequest[]> } | undefined;
  private restoreTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly load: () => ServiceConfig,
    private readonly logger: Logger,
    private readonly configFile: string | undefined,
    private readonly restoreRetryMs = RESTORE_RETRY_MS,
    private readonly onComponentStatus?: (component: string, event: ComponentStatusEvent) => void,
  ) {}

  get service(): Service | undefined {
    return this.current;
  }

  async start(): Promise<void> {
    const config = this.load();
    const service = this.create(config);
    await service.start();
    this.current = service;
    this.appliedRaw = config.raw;
  }

  /**
   * Reloads when the config file changes on disk. Polled with stat, which follows symlinks, so
   * editors that replace the file and a Kubernetes ConfigMap update (the kubelet swaps the
   * `..data` symlink the file points through) are noticed. A new inode counts as a change: a
   * replacement may keep the size and, on a coarse clock, the modification time.
   */
  watchConfigFile(intervalMs = 1000): void {
    if (!this.configFile || this.watching) return;
    this.watching = true;
    fs.watchFile(this.configFile, { interval: intervalMs }, (now, before) => {
      if (now.mtimeMs !== before.mtimeMs || now.size !== before.size || now.ino !== before.ino) void this.reload('config file changed'); // never rejects
    });
  }

  /**
   * Serialised: a reload requested during another runs after it. Never rejects: an unexpected
   * error is logged and returned as `failed`, so it neither blocks later reloads nor shutdown().
   */
  reload(reason: string): Promise<ReloadOutcome> {
    return this.serialised(() => this.doReload(reason), reason);
  }

  private serialised(run: () => Promise<ReloadOutcome>, reason: string): Promise<ReloadOutcome> {
    const previous = this.reloading ?? Promise.resolve<ReloadOutcome>({ kind: 'unchanged' });
    const next = previous.then(run).catch((err: unknown): ReloadOutcome => {
      const error = err instanceof Error ? err.message : String(err);
      this.logger.error({ reason, err }, 'reload failed unexpectedly');
      return { kind: 'failed', error, running: this.current !== undefined };
    });
    this.reloading = next;
    return next;
  }

  /**
   * Stops the service; sending queues drain for at most service::shutdown_timeout, after which
   * exporters stop retrying and drop what is left, counted and logged (a process killed at the
   * end of a grace period would lose it without a trace).
   */
  async shutdown(): Promise<void> {
    if (this.configFile && this.watching) fs.unwatchFile(this.configFile);
    this.watching = false;
    this.shuttingDown = true;
    clearTimeout(this.restoreTimer);
    const timeoutMs = (this.current?.config ?? this.down?.config)?.shutdownTimeoutMs ?? 0;
    const deadline =
      timeoutMs > 0
        ? setTimeout(() => {
            this.logger.error({ timeoutMs }, 'shutdown deadline passed: exporters stop retrying');
            this.deadlinePassed = true;
            void this.current?.abandonQueues();
            for (const abandon of this.draining.values()) void abandon();
          }, timeoutMs)
        : undefined;
    try {
      await this.reloading;
      // A reload that was under way may have started a service after the deadline passed.
      if (this.deadlinePassed) void this.current?.abandonQueues();
      await this.current?.shutdown();
      if (this.down) this.logLoss(this.down.carried, 'stopped without a running service');
      this.down = undefined;
      await Promise.all(this.draining.keys());
    } finally {
      clearTimeout(deadline);
    }
  }

  private async doReload(reason: string): Promise<ReloadOutcome> {
    // No new service once shutdown has begun.
    if (this.shuttingDown) return { kind: 'unchanged' };
    const loaded = loadNewConfig(this.load, this.logger, reason);
    if ('errors' in loaded) return { kind: 'rejected', errors: loaded.errors };
    const next = loaded.config;
    const running = this.current;
    if (!running) {
      if (!this.down) return { kind: 'unchanged' };
      // Nothing runs since a failed restore: the new configuration gets its chance first.
      this.logger.warn({ reason }, 'no service is running: starting the new configuration');
      return this.startReplacement(next, this.down.config, this.down.carried, reason);
    }
    // Live-editable components (the filter processors) whose bodies changed in a way they can
    // take while running are compared blanked; if nothing else changed they are reconfigured in place.
    const live = running.liveComponents();
    const inPlace = [...live].filter(([id, c]) => c.live.appliesInPlace(bodyOf(this.appliedRaw, c.kind, id), bodyOf(next.raw, c.kind, id)));
    if (canonical(blanked(this.appliedRaw, inPlace)) === canonical(blanked(next.raw, inPlace))) {
      const changed: string[] = [];
      for (const [id, { kind, raw: applied }] of inPlace) {
        const raw = bodyOf(next.raw, kind, id);
        const body = isRecord(raw) ? { ...raw } : {};
        if (running.hasUnsavedChanges(id)) this.logger.warn({ reason, filter: id }, 'unsaved filter changes made through the admin API are replaced by the new configuration');
        // Against what runs, admin API changes included (saved or not), not the file as last loaded.
        if (canonical(body) !== canonical(applied)) changed.push(id);
        running.applyLive(id, componentsOf(next, kind).get(id)!.config, body);
      }
      this.appliedRaw = next.raw;
      // Messages and fields as documented (docs/telemetry.md); `filters`: the live-editable components changed.
      this.logger.info({ reason, filters: changed }, changed.length > 0 ? 'filter lists reloaded in place' : 'configuration unchanged');
      return changed.length > 0 ? { kind: 'filters', ids: changed } : { kind: 'unchanged' };
    }
    this.logger.warn({ reason }, 'configuration changed beyond filter lists: restarting the service (queues carried over)');
    for (const id of live.keys()) {
      if (running.hasUnsavedChanges(id)) this.logger.warn({ reason, filter: id }, 'unsaved filter changes made through the admin API are replaced by the new configuration');
    }
    // Exporters that stay (same id, so same type) take over their predecessors' unsent batches;
    // the old config's other exporters drain in the background. Either way the reload does not
    // wait for a backend that is down, and nothing queued is dropped.
    let carried = new Map<string, QueueRequest[]>();
    try {
      const stopped = await running.stopForReload(exportersIn(next));
      carried = stopped.carried;
      this.track(stopped.draining, stopped.abandon);
    } catch (err) {
      // Half stopped: stop every component again (each logs its own errors) so that nothing of
      // it holds ports, then start as usual. Its unsent batches are lost with it.
      this.logger.error({ reason, err }, 'the running service failed to stop for the reload; shutting its components down');
      await running.graph.shutdown().catch((shutdownErr: unknown) => this.logger.error({ err: shutdownErr }, 'error while shutting the service down'));
    }
    this.current = undefined;
    return this.startReplacement(next, running.config, carried, reason);
  }

  /**
   * Starts `next` with the released batches; if it fails, `previous` again. If that fails too,
   * no service runs: the batches are kept, `previous` is retried every restoreRetryMs, and a
   * later reload may start another configuration instead. shutdown() still completes.
   */
  private async startReplacement(next: ServiceConfig, previous: ServiceConfig, carried: Map<string, QueueRequest[]>, reason: string): Promise<ReloadOutcome> {
    const error = await this.tryStart(next, carried);
    if (error === undefined) return { kind: 'restarted' };
    this.logger.error({ reason, err: error }, 'the new configuration failed to start; starting the previous one again');
    const restoreError = await this.tryStart(previous, carried);
    if (restoreError === undefined) return { kind: 'rejected', errors: [error] };
    this.down = { config: previous, carried };
    this.logger.error(
      { reason, err: restoreError, batches: carriedSize(carried).batches, retryMs: this.restoreRetryMs },
      'the previous configuration failed to start too: no service is running; retrying it periodically (a valid reload starts the new one)',
    );
    this.scheduleRestore();
    return { kind: 'failed', error: `the new configuration failed to start (${error}); the previous one too (${restoreError})`, running: false };
  }

  /** Builds and starts a service for `config`; undefined on success, else why it failed. */
  private async tryStart(config: ServiceConfig, carried: Map<string, QueueRequest[]>): Promise<string | undefined> {
    try {
      const service = this.create(config);
      await service.start();
      this.current = service;
      this.down = undefined;
      clearTimeout(this.restoreTimer);
      service.adoptQueues(carried);
      this.appliedRaw = config.raw;
      return undefined;
    } catch (err) {
      return err instanceof Error ? err.message : String(err);
    }
  }

  private scheduleRestore(): void {
    clearTimeout(this.restoreTimer);
    this.restoreTimer = setTimeout(() => {
      void this.serialised(async () => {
        const down = this.down;
        if (!down || this.current || this.shuttingDown) return { kind: 'unchanged' };
        const error = await this.tryStart(down.config, down.carried);
        if (error === undefined) {
          this.logger.warn('the previous configuration started again');
          return { kind: 'restarted' };
        }
        this.logger.error({ err: error, retryMs: this.restoreRetryMs }, 'the previous configuration still fails to start; retrying');
        this.scheduleRestore();
        return { kind: 'failed', error, running: false };
      }, 'restore');
    }, this.restoreRetryMs);
    this.restoreTimer.unref();
  }

  private logLoss(carried: ReadonlyMap<string, readonly QueueRequest[]>, why: string): void {
    const { batches, items } = carriedSize(carried);
    if (batches > 0) this.logger.error({ batches, items }, `${why}: the batches the stopped service had not sent are lost`);
  }

  /** Old exporters still draining after a reload: shutdown() waits for them too. */
  private track(draining: Promise<void>, abandon: () => Promise<void>): void {
    if (this.deadlinePassed) void abandon();
    this.draining.set(draining, abandon);
    void draining.finally(() => this.draining.delete(draining));
  }

  private create(config: ServiceConfig): Service {
    return new Service(config, { logger: this.logger, inventory: this.inventory, ...(this.configFile ? { configFile: this.configFile } : {}), ...(this.onComponentStatus ? { onComponentStatus: this.onComponentStatus } : {}) });
  }
}

/** Batches and items of what a stopped service released, for log lines. */
function carriedSize(carried: ReadonlyMap<string, readonly QueueRequest[]>): { batches: number; items: number } {
  let batches = 0;
  let items = 0;
  for (const list of carried.values()) {
    batches += list.length;
    for (const batch of list) items += batch.itemCount;
  }
  return { batches, items };
}

/** Exporters the config's pipelines use. */
function exportersIn(config: ServiceConfig): Set<string> {
  return new Set(config.pipelines.flatMap((p) => p.exporters).filter((id) => config.exporters.has(id)));
}

/** A component's raw body (the mapping under its id) in a document. */
function bodyOf(raw: Record<string, unknown>, kind: ComponentKind, id: string): unknown {
  const section = raw[sectionOf(kind)];
  return isRecord(section) ? section[id] : undefined;
}

/** The document with the bodies of the given components blanked, for comparison. */
function blanked(raw: Record<string, unknown>, components: ReadonlyArray<readonly [string, { readonly kind: ComponentKind }]>): Record<string, unknown> {
  const out = { ...raw };
  for (const [id, { kind }] of components) {
    const key = sectionOf(kind);
    const section = out[key];
    if (isRecord(section) && id in section) out[key] = { ...section, [id]: null };
  }
  return out;
}

/** JSON with mapping keys sorted: reordering keys in the file is not a change. */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    isRecord(v) ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, v[k]])) : v,
  );
}
