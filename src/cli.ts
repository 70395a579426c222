#!/usr/bin/env -S node --max-semi-space-size=2 --initial-heap-size=32
import cluster from 'node:cluster';
import * as path from 'node:path';
import * as v8 from 'node:v8';
import pino from 'pino';
import { readConfigFile } from './config/load';
import { ConfigIssues, ConfigValidationError } from './config/reader';
import { buildServiceConfig, workerConfig, type ServiceConfig } from './config/service-config';
import { zeroConfig, type ZeroConfigOptions } from './config/zero-config';
import type { InstanceView } from './component/component';
import { heapLimitMib, type MemoryLimiterConfig } from './processors/memorylimiter/memory-limiter';
import { heapLimitAction } from './service/node-flags';
import { Primary } from './service/primary';
import { Supervisor } from './service/supervisor';
import { runWorker, WORKER_COUNT_ENV, WORKER_INDEX_ENV } from './service/worker';
import { installLeanAsyncResourceBind } from './util/lean-async-bind';

/** After service::shutdown_timeout, the time exporters get to count and log what they drop before the process exits anyway. */
const EXIT_MARGIN_MS = 500;

export const DEFAULT_CONFIG = path.resolve(__dirname, '..', '..', 'config', 'default.yaml');

const USAGE = `spansieve: keep only the processes you chose from OTLP traffic and export them.

Usage:
  spansieve [--config FILE]                 run (default config: config/default.yaml)
  spansieve validate [--config FILE]        check a config, print every error, exit 1 if any
  spansieve instances [--admin URL] [--token T] [--json]
                                            list the instances a running spansieve has seen
                                            (admin API, default http://127.0.0.1:13180;
                                            token also from SPANSIEVE_ADMIN_TOKEN)
  spansieve --keep LIST --jaeger HOST:PORT  run without a file: receive OTLP on the defaults,
                                            keep LIST, send traces to Jaeger over OTLP/gRPC

Options for the file-less form:
  --keep LIST     comma-separated: an instance id ("web-1:4242"), a glob ("edge-*:*"),
                  a bare PID ("4242": host-form id ending in :4242), or key=value
  --drop LIST     same forms, dropped after keep
  --jaeger H:P    Jaeger's OTLP/gRPC endpoint (plaintext)
  --debug         also print every kept span
  --grpc H:P      OTLP/gRPC listen address (default 127.0.0.1:4317)
  --http H:P      OTLP/HTTP listen address (default 127.0.0.1:4318)
  --health H:P    health_check address (default 127.0.0.1:13133)
  --metrics H:P   self-metrics address (default 127.0.0.1:8888)
  --admin H:P     admin API and page (default 127.0.0.1:13180)

While running: SIGHUP or an edit of the config file reloads it (an invalid file is rejected
and the running config stays); SIGTERM/SIGINT drain the queues and exit.
`;

export interface CliArgs {
  command: 'run' | 'validate' | 'help' | 'instances' | 'node-flags';
  configFile: string | undefined;
  zero: ZeroConfigOptions | undefined;
  instances?: { admin: string; token: string | undefined; json: boolean };
}

export function parseArgs(argv: readonly string[]): CliArgs {
  const args = [...argv];
  let command: CliArgs['command'] = 'run';
  if (args[0] === 'instances') {
    return { command: 'instances', configFile: undefined, zero: undefined, instances: parseInstancesArgs(args.slice(1)) };
  }
  // node-flags (bin/spansieve's first step) takes the run arguments and prints the node flags they need.
  if (args[0] === 'validate' || args[0] === 'node-flags') {
    command = args[0];
    args.shift();
  } else if (args[0] === 'help' || args.includes('--help') || args.includes('-h')) {
    return { command: 'help', configFile: undefined, zero: undefined };
  }
  let configFile: string | undefined;
  const zero: { -readonly [K in keyof ZeroConfigOptions]: ZeroConfigOptions[K] } = {};
  let usesZero = false;
  while (args.length > 0) {
    const flag = args.shift()!;
    const [name, inline] = flag.includes('=') && flag.startsWith('--') ? [flag.slice(0, flag.indexOf('=')), flag.slice(flag.indexOf('=') + 1)] : [flag, undefined];
    const value = (): string => {
      const v = inline ?? args.shift();
      if (v === undefined || v.startsWith('--')) throw new UsageError(`${name} needs a value`);
      return v;
    };
    switch (name) {
      case '--config':
        configFile = value();
        break;
      case '--keep':
      case '--drop':
      case '--jaeger':
      case '--grpc':
      case '--http':
      case '--health':
      case '--metrics':
      case '--admin':
        zero[name.slice(2) as 'keep' | 'drop' | 'jaeger' | 'grpc' | 'http' | 'health' | 'metrics' | 'admin'] = value();
        usesZero = true;
        break;
      case '--debug':
        zero.debug = true;
        usesZero = true;
        break;
      default:
        throw new UsageError(`unknown argument ${JSON.stringify(flag)}`);
    }
  }
  if (usesZero && configFile) throw new UsageError('--config cannot be combined with the file-less options (--keep, --drop, --jaeger, --debug, --grpc, --http, --health, --metrics, --admin)');
  if (usesZero && !zero.jaeger && !zero.debug) throw new UsageError('the file-less form needs --jaeger HOST:PORT (or --debug to print spans)');
  return { command, configFile: usesZero ? undefined : (configFile ?? DEFAULT_CONFIG), zero: usesZero ? zero : undefined };
}

function parseInstancesArgs(args: string[]): { admin: string; token: string | undefined; json: boolean } {
  const out = { admin: 'http://127.0.0.1:13180', token: process.env.SPANSIEVE_ADMIN_TOKEN || undefined, json: false };
  while (args.length > 0) {
    const flag = args.shift()!;
    if (flag === '--json') out.json = true;
    else if (flag === '--admin' || flag === '--token') {
      const v = args.shift();
      if (v === undefined) throw new UsageError(`${flag} needs a value`);
      if (flag === '--admin') out.admin = /^https?:\/\//.test(v) ? v : `http://${v}`;
      else out.token = v;
    } else throw new UsageError(`unknown argument ${JSON.stringify(flag)}`);
  }
  return out;
}

export class UsageError extends Error {}

/** Loads and validates the config the arguments name; throws ConfigValidationError with every problem. */
export function loadConfig(args: CliArgs): ServiceConfig {
  const issues = new ConfigIssues();
  const doc = args.zero ? zeroConfig(args.zero) : readConfigFile(args.configFile!, issues);
  // Unreadable or unparsable: nothing to validate further. Env errors are reported with the rest.
  if (doc === undefined) throw new ConfigValidationError(issues.errors);
  return buildServiceConfig(doc, issues);
}

async function main(argv: readonly string[]): Promise<number> {
  let args: CliArgs;
  try {
    args = parseArgs(argv);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`spansieve: ${err.message}\n\n${USAGE}`);
      return 2;
    }
    throw err;
  }
  if (args.command === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  if (args.command === 'instances') return listInstances(args.instances!);
  if (args.command === 'node-flags') {
    process.stdout.write(nodeFlagsFor(args));
    return 0;
  }
  let config: ServiceConfig;
  try {
    config = loadConfig(args);
  } catch (err) {
    if (err instanceof ConfigValidationError) {
      process.stderr.write(`spansieve: ${args.configFile ?? 'command-line config'} is invalid:\n${err.errors.map((e) => `  ${e}\n`).join('')}`);
      return 1;
    }
    throw err;
  }
  if (args.command === 'validate') {
    process.stdout.write(`${args.configFile ?? 'command-line config'} is valid: pipelines ${config.pipelines.map((p) => p.id).join(', ')}\n`);
    return 0;
  }

  if (cluster.isWorker) return workerMain(args, config);
  const logger = pino({ level: config.telemetry.logLevel, name: 'spansieve', base: undefined });
  applyHeapLimit(config, logger);
  if (config.workers > 1) return primaryMain(args, config, logger);
  if (installLeanAsyncResourceBind()) logger.debug('AsyncResource#bind replaced by one without the deprecated asyncResource accessor');
  // The first load was validated above; reloads read the file again.
  let first: ServiceConfig | undefined = config;
  const supervisor = new Supervisor(
    (): ServiceConfig => {
      const loaded = first ?? loadConfig(args);
      first = undefined;
      return loaded;
    },
    logger,
    args.configFile,
  );
  try {
    await supervisor.start();
  } catch (err) {
    logger.fatal({ err: (err as Error).message }, 'spansieve failed to start');
    return 1;
  }
  supervisor.watchConfigFile();
  // reload() logs its own failures and never rejects; the catch is a last guard, since an
  // unhandled rejection would end the process without draining.
  process.on('SIGHUP', () => void supervisor.reload('SIGHUP').catch((err: unknown) => logger.error({ err }, 'reload failed')));
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) {
        logger.warn({ signal }, 'second signal: exiting without waiting for queues to drain');
        resolve(1);
        return;
      }
      stopping = true;
      logger.info({ signal }, 'shutting down: draining queues');
      // The Supervisor's deadline makes exporters give up and receivers destroy their connections
      // well before this; this is the backstop that makes the process end whatever still holds it.
      const timeoutMs = supervisor.service?.config.shutdownTimeoutMs ?? 0;
      if (timeoutMs > 0) {
        setTimeout(() => {
          logger.error({ timeoutMs }, 'shutdown_timeout passed and the shutdown has not finished: exiting now');
          resolve(1);
        }, timeoutMs + EXIT_MARGIN_MS).unref();
      }
      supervisor.shutdown().then(
        () => resolve(0),
        (err: unknown) => {
          logger.error({ err }, 'error while shutting down');
          resolve(1);
        },
      );
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
}

/** A worker of the multi-core mode: the pipelines, answering the primary (service/worker.ts). */
async function workerMain(args: CliArgs, config: ServiceConfig): Promise<number> {
  const index = Number(process.env[WORKER_INDEX_ENV]);
  const count = Number(process.env[WORKER_COUNT_ENV]);
  const logger = pino({ level: config.telemetry.logLevel, name: 'spansieve', base: { worker: index } });
  installLeanAsyncResourceBind();
  let first: ServiceConfig | undefined = config;
  const load = (): ServiceConfig => {
    const loaded = first ?? loadConfig(args);
    first = undefined;
    if (loaded.workers !== count) throw new ConfigValidationError([`service::workers: changes only with a restart of spansieve (running ${count} workers, the file asks for ${loaded.workers})`]);
    return workerConfig(loaded);
  };
  return runWorker(load, logger, args.configFile);
}

/** The primary of the multi-core mode (service::workers above 1; service/primary.ts). */
async function primaryMain(args: CliArgs, config: ServiceConfig, logger: pino.Logger): Promise<number> {
  if (installLeanAsyncResourceBind()) logger.debug('AsyncResource#bind replaced by one without the deprecated asyncResource accessor');
  const primary = new Primary(config, () => loadConfig(args), logger, args.configFile);
  try {
    await primary.start();
  } catch (err) {
    logger.fatal({ err: (err as Error).message }, 'spansieve failed to start');
    return 1;
  }
  primary.watchConfigFile();
  process.on('SIGHUP', () => void primary.reload('SIGHUP'));
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) {
        logger.warn({ signal }, 'second signal: ending the workers without waiting for queues to drain');
        primary.killWorkers();
        resolve(1);
        return;
      }
      stopping = true;
      logger.info({ signal, workers: primary.workerCount }, 'shutting down: every worker drains its queues');
      // Each worker has its own deadline (service::shutdown_timeout); this backstop ends those that hang.
      const timeoutMs = config.shutdownTimeoutMs;
      if (timeoutMs > 0) {
        setTimeout(() => {
          logger.error({ timeoutMs }, 'shutdown_timeout passed and the shutdown has not finished: exiting now');
          primary.killWorkers();
          resolve(1);
        }, timeoutMs + 4 * EXIT_MARGIN_MS).unref();
      }
      primary.shutdown().then(
        (ok) => resolve(ok ? 0 : 1),
        (err: unknown) => {
          logger.error({ err }, 'error while shutting down');
          resolve(1);
        },
      );
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
}

/**
 * V8's old-space limit from memory_limiter, as the Collector pairs it with GOMEMLIMIT: the process
 * replaces itself once with --max-old-space-size where Node can (process.execve), else a warning
 * names the flag. Only at start: a reload cannot change it.
 */
function applyHeapLimit(config: ServiceConfig, logger: pino.Logger): void {
  const limitMib = configHeapLimitMib(config);
  const execve = (process as unknown as { execve?: (file: string, args: string[], env: NodeJS.ProcessEnv) => never }).execve;
  const action = heapLimitAction(limitMib, { execArgv: process.execArgv, argv: process.argv, env: process.env, execPath: process.execPath, canExecve: typeof execve === 'function' });
  if (action.kind === 'execve') {
    logger.info({ heapLimitMib: limitMib }, 'restarting node with the V8 heap limit memory_limiter sets');
    execve!.call(process, process.execPath, action.args, action.env);
  } else if (action.kind === 'warn') {
    logger.warn(
      { heapLimitMib: limitMib, heapSizeLimitMib: Math.round(v8.getHeapStatistics().heap_size_limit / 2 ** 20) },
      `this Node cannot restart itself with V8's heap limit from memory_limiter; start node with ${action.flag} (command line or NODE_OPTIONS)`,
    );
  } else if (limitMib !== undefined) {
    logger.debug({ heapLimitMib: limitMib, reason: action.reason, heapSizeLimitMib: Math.round(v8.getHeapStatistics().heap_size_limit / 2 ** 20) }, 'V8 heap limit not changed');
  }
}

function configHeapLimitMib(config: ServiceConfig): number | undefined {
  const used = new Set(config.pipelines.flatMap((p) => p.processors));
  const limiters = [...config.processors.values()].filter((p) => p.factory.type === 'memory_limiter' && used.has(p.id)).map((p) => p.config as MemoryLimiterConfig);
  return heapLimitMib(limiters);
}

/**
 * `spansieve node-flags ARGS`: the node flags a run with ARGS needs (V8's heap limit from
 * memory_limiter), for bin/spansieve to exec node with, since Node 20 cannot replace its own
 * process. Prints nothing when none is needed or the config is invalid (the run then reports it).
 */
function nodeFlagsFor(args: CliArgs): string {
  let config: ServiceConfig;
  try {
    config = loadConfig(args);
  } catch {
    return '';
  }
  const action = heapLimitAction(configHeapLimitMib(config), { execArgv: process.execArgv, argv: process.argv, env: process.env, execPath: process.execPath, canExecve: false });
  return action.kind === 'warn' ? `${action.flag}\n` : '';
}

/** `spansieve instances`: the admin API's inventory as a terminal table. */
async function listInstances(options: { admin: string; token: string | undefined; json: boolean }): Promise<number> {
  let res: Response;
  try {
    res = await fetch(new URL('/api/v1/instances', options.admin), { headers: options.token ? { authorization: `Bearer ${options.token}` } : {} });
  } catch (err) {
    process.stderr.write(`spansieve: cannot reach the admin API at ${options.admin}: ${(err as Error).message}\n`);
    return 1;
  }
  if (!res.ok) {
    process.stderr.write(`spansieve: admin API answered ${res.status}: ${await res.text()}\n`);
    return 1;
  }
  const instances = (await res.json()) as InstanceView[];
  if (options.json) {
    process.stdout.write(`${JSON.stringify(instances, null, 2)}\n`);
    return 0;
  }
  process.stdout.write(formatInstances(instances));
  return 0;
}

export function formatInstances(instances: readonly InstanceView[]): string {
  const header = ['INSTANCE', 'SERVICE', 'PID', 'KEPT', 'SELECTOR', 'SPANS/S', 'POINTS/S', 'LAST SEEN'];
  const rows = instances.map((i) => [
    i.id || '(no service.instance.id)',
    i.service ?? '',
    i.pid === null ? '' : String(i.pid),
    i.kept === null ? '?' : i.kept ? 'yes' : 'no',
    i.selector ?? '',
    i.spansPerSecond.toFixed(1),
    i.metricPointsPerSecond.toFixed(1),
    i.lastSeen.replace('T', ' ').replace(/\.\d+Z$/, 'Z'),
  ]);
  const widths = header.map((h, col) => Math.max(h.length, ...rows.map((r) => r[col]!.length)));
  const line = (cells: string[]) => `${cells.map((c, col) => c.padEnd(widths[col]!)).join('  ').trimEnd()}\n`;
  return [line(header), ...rows.map(line)].join('') + (rows.length === 0 ? '(no instances seen yet)\n' : '');
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`spansieve: ${(err as Error).stack ?? String(err)}\n`);
      process.exit(70);
    },
  );
}
