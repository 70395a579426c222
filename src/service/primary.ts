import cluster, { type Worker } from 'node:cluster';
import * as fs from 'node:fs';
import type { Logger } from 'pino';
import type { Component, ComponentStatusEvent, ComponentStatusWatcher, CreateSettings, ExtensionFactory, Host, InstanceView, SamplingView, ServiceControl, ServiceStatus } from '../component/component';
import type { DryRunResult } from '../component/live';
import { primaryExtensions, type ServiceConfig } from '../config/service-config';
import { loadNewConfig } from './reload-config';
import { SelfTelemetry, TelemetryServer } from './telemetry';
import { WORKER_COUNT_ENV, WORKER_INDEX_ENV, type FromWorker, type ToWorker, type WorkerCall, type WorkerSnapshot } from './worker';
import { mergeDryRuns, mergeInstances, mergeSampling } from './worker-merge';

// The primary process of the multi-core mode (service::workers above 1). It forks the workers
// (service/worker.ts), which share the receivers' listening sockets through node:cluster (new
// connections are handed to them in turn) and run the pipelines. The primary runs what must be
// one per process: the self-metrics endpoint (sums of the workers' metrics), the extensions that
// serve the whole process (admin, health_check: `inPrimary`), and the ServiceControl behind the
// admin API, which asks every worker. It forwards reloads and the shutdown, and replaces a
// worker that dies.

/** How long the primary waits for a worker's answer. */
const CALL_TIMEOUT_MS = 10_000;
/** How long a scrape waits for a worker's metrics before using its last ones. */
const SNAPSHOT_TIMEOUT_MS = 2_000;
/** A worker that dies within this time of its start is restarted after a growing delay. */
const QUICK_DEATH_MS = 10_000;
const MAX_RESTART_DELAY_MS = 30_000;

interface Slot {
  readonly index: number;
  worker: Worker | undefined;
  ready: boolean;
  startedAt: number;
  restartDelayMs: number;
  restartTimer: NodeJS.Timeout | undefined;
  lastSnapshot: WorkerSnapshot | undefined;
  /** Components of this worker whose last status event was an error: cleared when the worker exits. */
  readonly failing: Set<string>;
  readonly calls: Map<number, { resolve(value: unknown): void; reject(err: Error): void }>;
}

export class Primary implements ServiceControl {
  private readonly slots: Slot[];
  private readonly telemetry: SelfTelemetry;
  /** Counters of workers that died, so that the sums on /metrics do not fall back. */
  private readonly retired = new SelfTelemetry();
  private readonly telemetryServer: TelemetryServer | undefined;
  private readonly extensions = new Map<string, Component & { onStatus?(status: ServiceStatus): void } & Partial<ComponentStatusWatcher>>();
  private status: ServiceStatus = 'starting';
  private stopping = false;
  private seq = 0;
  /** Live settings changed through the admin API and not replaced by a reload: a replacement worker gets them too. */
  private readonly liveEdits = new Map<string, unknown>();
  private reloading: Promise<void> = Promise.resolve();
  private watching = false;
  private readonly restarts;
  private readonly readyGauge;

  constructor(
    private readonly config: ServiceConfig,
    private readonly load: () => ServiceConfig,
    private readonly logger: Logger,
    private readonly configFile: string | undefined,
  ) {
    this.slots = Array.from({ length: config.workers }, (_, index) => ({
      index,
      worker: undefined,
      ready: false,
      startedAt: 0,
      restartDelayMs: 0,
      restartTimer: undefined,
      lastSnapshot: undefined,
      calls: new Map(),
      failing: new Set(),
    }));
    this.telemetry = new SelfTelemetry(() => process.memoryUsage.rss() + this.slots.reduce((sum, s) => sum + (s.lastSnapshot?.rss ?? 0), 0));
    this.restarts = this.telemetry.counter('spansieve_worker_restarts', 'Worker processes that died and were replaced (service::workers)', {});
    this.readyGauge = this.telemetry.gauge('spansieve_workers_ready', 'Worker processes running and ready (service::workers)', {});
    this.restarts.inc(0);
    this.readyGauge.set(0);
    this.telemetryServer = config.telemetry.metricsAddress ? new TelemetryServer(this.telemetry, config.telemetry.metricsAddress, '/metrics', () => this.refreshMetrics()) : undefined;
    for (const ext of primaryExtensions(config)) {
      const settings: CreateSettings = { id: ext.id, logger: logger.child({ 'otelcol.component.kind': 'extension', 'otelcol.component.id': ext.id }), telemetry: this.telemetry };
      this.extensions.set(ext.id, (ext.factory as ExtensionFactory<unknown>).create(settings, ext.config));
    }
  }

  get workerCount(): number {
    return this.slots.length;
  }

  /** Starts the endpoints and extensions, then the workers; rejects (everything stopped again) when one fails to start. */
  async start(): Promise<void> {
    cluster.setupPrimary({
      // The launcher's node flags (bin/spansieve: semi-space, initial heap, memory_limiter's heap
      // limit) apply to each worker: the heap limit is per worker.
      execArgv: [...process.execArgv],
      // Structured clone: Maps (live settings) cross as they are.
      serialization: 'advanced',
    });
    this.setStatus('starting');
    const host: Host = { reportStatus: (status) => this.setStatus(status), control: this, extensions: this.extensions };
    try {
      await this.telemetryServer?.start();
      for (const [id, ext] of this.extensions) {
        try {
          await ext.start(host);
        } catch (err) {
          throw new Error(`failed to start extension ${id}: ${(err as Error).message}`, { cause: err });
        }
      }
      await Promise.all(this.slots.map((slot) => this.fork(slot)));
    } catch (err) {
      this.stopping = true;
      await this.stopWorkers();
      await this.stopOwn();
      throw err;
    }
    this.setStatus('ready');
    this.logger.info({ workers: this.slots.length, pids: this.slots.map((s) => s.worker?.process.pid) }, 'spansieve is ready (multi-core: one primary, workers share the listeners)');
  }

  /** Every worker drains and exits (today's graceful shutdown each); resolves true when all exited with 0. */
  async shutdown(): Promise<boolean> {
    this.stopping = true;
    if (this.configFile && this.watching) fs.unwatchFile(this.configFile);
    this.watching = false;
    this.setStatus('stopping');
    const ok = await this.stopWorkers();
    await this.stopOwn();
    this.setStatus('stopped');
    this.logger.info('spansieve stopped');
    return ok;
  }

  /** The last resort (a second signal, the shutdown deadline): ends every worker now. */
  killWorkers(): void {
    for (const slot of this.slots) slot.worker?.process.kill('SIGKILL');
  }

  watchConfigFile(intervalMs = 1000): void {
    if (!this.configFile || this.watching) return;
    this.watching = true;
    fs.watchFile(this.configFile, { interval: intervalMs }, (now, before) => {
      if (now.mtimeMs !== before.mtimeMs || now.size !== before.size || now.ino !== before.ino) void this.reload('config file changed');
    });
  }

  /**
   * Validates the file once here, then has every worker reload it (each in place or by a restart
   * of its service, as a single process does). Serialised; never rejects.
   */
  reload(reason: string): Promise<void> {
    this.reloading = this.reloading.then(() => this.doReload(reason)).catch((err: unknown) => this.logger.error({ reason, err }, 'reload failed unexpectedly'));
    return this.reloading;
  }

  private async doReload(reason: string): Promise<void> {
    if (this.stopping) return;
    const loaded = loadNewConfig(this.load, this.logger, reason);
    if ('errors' in loaded) return;
    const next = loaded.config;
    if (next.workers !== this.slots.length) {
      this.logger.error({ reason, workers: this.slots.length, wanted: next.workers }, 'new configuration rejected: service::workers changes only with a restart of spansieve; the running one stays');
      return;
    }
    if (primaryPart(next) !== primaryPart(this.config)) {
      this.logger.warn({ reason }, 'with several workers, changes to the admin and health_check extensions and service::telemetry::metrics take effect at the next start');
    }
    // The file's settings replace unsaved admin API changes, as in a single process.
    this.liveEdits.clear();
    const outcomes = await Promise.allSettled(this.readySlots().map((slot) => this.call(slot, { op: 'reload', reason }, next.shutdownTimeoutMs + CALL_TIMEOUT_MS)));
    for (const [i, o] of outcomes.entries()) if (o.status === 'rejected') this.logger.error({ reason, worker: i, err: (o.reason as Error).message }, 'a worker did not reload');
  }

  // ServiceControl: the admin API's view, merged from every ready worker.

  async instances(): Promise<InstanceView[]> {
    return mergeInstances((await this.callAll({ op: 'instances' })) as InstanceView[][]);
  }

  async sampling(): Promise<SamplingView> {
    return mergeSampling((await this.callAll({ op: 'sampling' })) as SamplingView[]);
  }

  async liveSettings(): Promise<Map<string, Record<string, unknown>>> {
    return (await this.call(this.firstReady(), { op: 'liveSettings' })) as Map<string, Record<string, unknown>>;
  }

  /** Every worker validates the same settings the same way: all apply them or none does. */
  async setLive(id: string, settings: unknown): Promise<string[]> {
    const results = (await this.callAll({ op: 'setLive', id, settings })) as string[][];
    const errors = results.find((e) => e.length > 0);
    if (errors) return errors;
    this.liveEdits.set(id, settings);
    return [];
  }

  /** One worker writes the file; the others only forget that the settings were unsaved. */
  async saveLive(id: string): Promise<void> {
    const first = this.firstReady();
    await this.call(first, { op: 'saveLive', id });
    await Promise.all(this.readySlots().filter((s) => s !== first).map((s) => this.call(s, { op: 'markSaved', id })));
  }

  async dryRun(id: string, settings: unknown): Promise<DryRunResult> {
    return mergeDryRuns((await this.callAll({ op: 'dryRun', id, settings })) as DryRunResult[]);
  }

  private readySlots(): Slot[] {
    return this.slots.filter((s) => s.ready && s.worker);
  }

  private firstReady(): Slot {
    const slot = this.readySlots()[0];
    if (!slot) throw new Error('no worker process is ready');
    return slot;
  }

  private callAll(call: WorkerCall): Promise<unknown[]> {
    const slots = this.readySlots();
    if (slots.length === 0) return Promise.reject(new Error('no worker process is ready'));
    return Promise.all(slots.map((s) => this.call(s, call)));
  }

  private call(slot: Slot, call: WorkerCall, timeoutMs = CALL_TIMEOUT_MS): Promise<unknown> {
    const worker = slot.worker;
    if (!worker) return Promise.reject(new Error(`worker ${slot.index} is not running`));
    const seq = ++this.seq;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        slot.calls.delete(seq);
        reject(new Error(`worker ${slot.index} did not answer ${call.op} within ${timeoutMs} ms`));
      }, timeoutMs);
      slot.calls.set(seq, {
        resolve: (value) => {
          clearTimeout(timer);
          resolve(value);
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      });
      const message: ToWorker = { type: 'call', seq, call };
      worker.send(message, (err: Error | null) => {
        if (err) slot.calls.get(seq)?.reject(err);
      });
    });
  }

  /** Forks the worker of a slot; resolves when it is ready, rejects if it exits before. */
  private fork(slot: Slot): Promise<void> {
    const worker = cluster.fork({ [WORKER_INDEX_ENV]: String(slot.index), [WORKER_COUNT_ENV]: String(this.slots.length) });
    slot.worker = worker;
    slot.ready = false;
    slot.startedAt = Date.now();
    return new Promise<void>((resolve, reject) => {
      worker.on('message', (message: FromWorker) => {
        if (message.type === 'result') {
          const pending = slot.calls.get(message.seq);
          slot.calls.delete(message.seq);
          if (message.error !== undefined) pending?.reject(new Error(message.error));
          else pending?.resolve(message.value);
        } else if (message.type === 'ready') {
          void this.onReady(slot, worker).then(resolve);
        } else if (message.type === 'status') {
          const name = `${message.component} (worker ${slot.index})`;
          if (message.event.status === 'ok') slot.failing.delete(name);
          else slot.failing.add(name);
          this.componentStatus(name, message.event);
        }
      });
      worker.on('exit', (code: number | null, signal: string | null) => {
        const wasReady = slot.ready;
        if (slot.worker === worker) {
          slot.worker = undefined;
          slot.ready = false;
        }
        for (const pending of slot.calls.values()) pending.reject(new Error(`worker ${slot.index} exited`));
        // Its replacement starts with fresh components: what the dead one reported no longer holds.
        for (const name of slot.failing) this.componentStatus(name, { status: 'ok' });
        slot.failing.clear();
        slot.calls.clear();
        this.readyGauge.set(this.readySlots().length);
        if (!wasReady) reject(new Error(`worker ${slot.index} (pid ${worker.process.pid}) exited before it was ready (code ${code}, signal ${signal})`));
        this.onExit(slot, worker, code, signal);
      });
    });
  }

  private async onReady(slot: Slot, worker: Worker): Promise<void> {
    // A replacement takes the admin API's unsaved live changes the others run with.
    for (const [id, settings] of this.liveEdits) {
      const errors = (await this.call(slot, { op: 'setLive', id, settings }).catch((err: Error) => [err.message])) as string[];
      if (errors.length > 0) this.logger.error({ worker: slot.index, component: id, errors }, 'a replacement worker could not take the live settings the others run with');
    }
    if (slot.worker !== worker) return;
    slot.ready = true;
    this.readyGauge.set(this.readySlots().length);
    if (this.status === 'degraded' && this.readySlots().length === this.slots.length) {
      this.logger.info({ worker: slot.index, pid: worker.process.pid, pids: this.slots.map((s) => s.worker?.process.pid) }, 'replacement worker ready: every worker runs again');
      this.setStatus('ready');
    }
  }

  private onExit(slot: Slot, worker: Worker, code: number | null, signal: string | null): void {
    if (slot.lastSnapshot) {
      for (const f of slot.lastSnapshot.families) if (f.kind === 'counter') for (const [labels, value] of f.series) this.retired.counter(f.name, f.help, { ...labels }).inc(value);
      slot.lastSnapshot = undefined;
    }
    if (this.stopping || this.status === 'starting') return;
    const quick = Date.now() - slot.startedAt < QUICK_DEATH_MS;
    slot.restartDelayMs = quick ? Math.min(Math.max(slot.restartDelayMs * 2, 100), MAX_RESTART_DELAY_MS) : 100;
    this.restarts.inc(1);
    this.setStatus('degraded');
    this.logger.error({ worker: slot.index, pid: worker.process.pid, code, signal, restartInMs: slot.restartDelayMs }, 'worker process died: starting a replacement');
    slot.restartTimer = setTimeout(() => {
      slot.restartTimer = undefined;
      if (!this.stopping) this.fork(slot).catch(() => undefined); // a failed start exits, and onExit tries again
    }, slot.restartDelayMs);
  }

  /** Asks every worker to drain and exit; resolves true when each exited with 0. */
  private async stopWorkers(): Promise<boolean> {
    for (const slot of this.slots) clearTimeout(slot.restartTimer);
    const exits = this.slots.flatMap((slot) => {
      const worker = slot.worker;
      if (!worker || worker.isDead()) return [];
      const exited = new Promise<boolean>((resolve) => worker.once('exit', (code: number | null) => resolve(code === 0)));
      const message: ToWorker = { type: 'shutdown' };
      // Without the channel (it just closed) a signal asks for the same graceful shutdown.
      worker.send(message, (err: Error | null) => {
        if (err) worker.process.kill('SIGTERM');
      });
      return [exited];
    });
    return (await Promise.all(exits)).every(Boolean);
  }

  private async stopOwn(): Promise<void> {
    for (const [id, ext] of [...this.extensions].reverse()) await ext.shutdown().catch((err: unknown) => this.logger.error({ err, extension: id }, 'error while stopping an extension'));
    await this.telemetryServer?.shutdown();
  }

  /** A worker's component status event, for the extensions that follow them (health_check). */
  private componentStatus(name: string, event: ComponentStatusEvent): void {
    for (const ext of this.extensions.values()) ext.onComponentStatus?.(name, event);
  }

  private setStatus(status: ServiceStatus): void {
    this.status = status;
    for (const ext of this.extensions.values()) ext.onStatus?.(status);
  }

  /** Asks each ready worker for its metrics (a worker that does not answer in time counts with its last ones) and sums them. */
  private async refreshMetrics(): Promise<void> {
    await Promise.all(
      this.readySlots().map(async (slot) => {
        try {
          slot.lastSnapshot = (await this.call(slot, { op: 'snapshot' }, SNAPSHOT_TIMEOUT_MS)) as WorkerSnapshot;
        } catch {
          // keeps the last one
        }
      }),
    );
    this.telemetry.setSums([...this.slots.map((s) => s.lastSnapshot?.families ?? []), this.retired.snapshot()]);
    for (const slot of this.slots) {
      const labels = { worker: String(slot.index) };
      const families = slot.lastSnapshot?.families ?? [];
      const total = (name: string) => families.find((f) => f.name === name)?.series.reduce((sum, [, v]) => sum + v, 0) ?? 0;
      this.telemetry.gauge('spansieve_worker_accepted_spans', "Spans the worker's receivers accepted since that worker process started", labels).set(total('otelcol_receiver_accepted_spans'));
      this.telemetry.gauge('spansieve_worker_accepted_metric_points', "Metric points the worker's receivers accepted since that worker process started", labels).set(total('otelcol_receiver_accepted_metric_points'));
      if (slot.lastSnapshot) this.telemetry.gauge('spansieve_worker_heap_size_limit', "V8's heap size limit of the worker process, in bytes (memory_limiter's limit applies per worker)", labels).set(slot.lastSnapshot.heapLimitBytes);
    }
  }
}

/** The settings only the primary applies (they need a restart with several workers). */
function primaryPart(config: ServiceConfig): string {
  return JSON.stringify([config.telemetry.metricsAddress, primaryExtensions(config).map((e) => [e.id, e.config])]);
}
