import * as v8 from 'node:v8';
import type { Logger } from 'pino';
import type { ServiceConfig } from '../config/service-config';
import { Supervisor } from './supervisor';
import type { FamilySnapshot } from './telemetry';

// One worker process of the multi-core mode (service::workers above 1; the primary is
// service/primary.ts). It runs the pipelines as a single process does, on listening sockets it
// shares with the other workers through node:cluster, and answers the primary over IPC: its
// self-metrics, inventory and live settings, reloads and the shutdown.

/** The worker's index (0 .. workers-1), set by the primary in each worker's environment. */
export const WORKER_INDEX_ENV = 'SPANSIEVE_WORKER_INDEX';
/** The number of workers the primary runs; a worker refuses a reload that asks for another number. */
export const WORKER_COUNT_ENV = 'SPANSIEVE_WORKERS';

/** What the primary asks a worker. */
export type WorkerCall =
  | { readonly op: 'snapshot' | 'instances' | 'sampling' | 'liveSettings' }
  | { readonly op: 'setLive' | 'dryRun'; readonly id: string; readonly settings: unknown }
  | { readonly op: 'saveLive' | 'markSaved'; readonly id: string }
  | { readonly op: 'reload'; readonly reason: string };

export type ToWorker = { readonly type: 'call'; readonly seq: number; readonly call: WorkerCall } | { readonly type: 'shutdown' };

export type FromWorker =
  | { readonly type: 'ready' }
  | { readonly type: 'result'; readonly seq: number; readonly value?: unknown; readonly error?: string };

/** A worker's answer to `snapshot`. */
export interface WorkerSnapshot {
  readonly families: FamilySnapshot[];
  readonly rss: number;
  /** V8's heap limit in this worker: memory_limiter's limit applies per worker. */
  readonly heapLimitBytes: number;
}

/** After service::shutdown_timeout, the time exporters get to count and log what they drop before the worker exits anyway. */
const EXIT_MARGIN_MS = 500;

/**
 * Runs the worker until the primary asks it to stop, the primary goes away (its IPC channel
 * closes, e.g. after kill -9: the worker must not linger) or it gets SIGTERM/SIGINT itself (a
 * terminal's Ctrl-C reaches the whole process group). Resolves with the exit code.
 */
export async function runWorker(load: () => ServiceConfig, logger: Logger, configFile: string | undefined): Promise<number> {
  const supervisor = new Supervisor(load, logger, configFile);
  const send = (message: FromWorker): void => {
    if (process.connected) process.send!(message);
  };
  // Reloads come from the primary; the default SIGHUP action would end the process.
  process.on('SIGHUP', () => undefined);

  // Handlers are registered below in this same tick, before the start can settle.
  const started = supervisor.start();
  let stopping: Promise<number> | undefined;
  const stop = (why: string): Promise<number> => {
    stopping ??= (async () => {
      await started.catch(() => undefined);
      logger.info({ why }, 'worker shutting down: draining queues');
      const timeoutMs = supervisor.service?.config.shutdownTimeoutMs ?? 0;
      let backstop: NodeJS.Timeout | undefined;
      const timedOut = new Promise<number>((resolve) => {
        if (timeoutMs > 0) backstop = setTimeout(() => resolve(1), timeoutMs + EXIT_MARGIN_MS);
      });
      try {
        return await Promise.race([supervisor.shutdown().then(() => 0), timedOut]);
      } catch (err) {
        logger.error({ err }, 'error while shutting down');
        return 1;
      } finally {
        clearTimeout(backstop);
      }
    })();
    return stopping;
  };

  const done = new Promise<number>((resolve) => {
    const stopFor = (why: string) => () => void stop(why).then(resolve);
    process.on('SIGTERM', stopFor('SIGTERM'));
    process.on('SIGINT', stopFor('SIGINT'));
    // node:cluster's own listener ends a worker at once when the channel closes: replaced by a
    // graceful shutdown, so that what the sending queues hold is still sent.
    process.removeAllListeners('disconnect');
    process.on('disconnect', stopFor('the primary process is gone'));
    process.on('message', (message: ToWorker) => {
      if (message.type === 'shutdown') stopFor('asked by the primary')();
      else if (message.type === 'call') {
        answer(supervisor, message.call).then(
          (value) => send({ type: 'result', seq: message.seq, value }),
          (err: unknown) => send({ type: 'result', seq: message.seq, error: err instanceof Error ? err.message : String(err) }),
        );
      }
    });
  });

  try {
    await started;
  } catch (err) {
    logger.fatal({ err: (err as Error).message }, 'worker failed to start');
    return 1;
  }
  if (stopping) return stopping;
  send({ type: 'ready' });
  return done;
}

async function answer(supervisor: Supervisor, call: WorkerCall): Promise<unknown> {
  if (call.op === 'reload') return supervisor.reload(call.reason);
  const service = supervisor.service;
  if (call.op === 'snapshot') {
    const snapshot: WorkerSnapshot = { families: service?.telemetry.snapshot() ?? [], rss: process.memoryUsage.rss(), heapLimitBytes: v8.getHeapStatistics().heap_size_limit };
    return snapshot;
  }
  if (!service) throw new Error(`worker ${process.pid} runs no service at the moment (a reload failed)`);
  switch (call.op) {
    case 'instances':
      return service.instances();
    case 'sampling':
      return service.sampling();
    case 'liveSettings':
      return service.liveSettings();
    case 'setLive':
      return service.setLive(call.id, call.settings);
    case 'dryRun':
      return service.dryRun(call.id, call.settings);
    case 'saveLive':
      return service.saveLive(call.id);
    case 'markSaved':
      service.markSaved(call.id);
      return undefined;
  }
}
