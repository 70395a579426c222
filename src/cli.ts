#!/usr/bin/env node
import * as path from 'node:path';
import pino from 'pino';
import { readConfigFile } from './config/load';
import { ConfigIssues, ConfigValidationError } from './config/reader';
import { buildServiceConfig, type ServiceConfig } from './config/service-config';
import { zeroConfig, type ZeroConfigOptions } from './config/zero-config';
import { Service } from './service/service';

export const DEFAULT_CONFIG = path.resolve(__dirname, '..', '..', 'config', 'default.yaml');

const USAGE = `spansieve: keep only the processes you chose from OTLP traffic and export them.

Usage:
  spansieve [--config FILE]                 run (default config: config/default.yaml)
  spansieve validate [--config FILE]        check a config, print every error, exit 1 if any
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
`;

interface CliArgs {
  command: 'run' | 'validate' | 'help';
  configFile: string | undefined;
  zero: ZeroConfigOptions | undefined;
}

export function parseArgs(argv: readonly string[]): CliArgs {
  const args = [...argv];
  let command: CliArgs['command'] = 'run';
  if (args[0] === 'validate') {
    command = 'validate';
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
        zero[name.slice(2) as 'keep' | 'drop' | 'jaeger' | 'grpc' | 'http' | 'health' | 'metrics'] = value();
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
  if (usesZero && configFile) throw new UsageError('--config cannot be combined with the file-less options (--keep, --drop, --jaeger, --debug, --grpc, --http, --health, --metrics)');
  if (usesZero && !zero.jaeger && !zero.debug) throw new UsageError('the file-less form needs --jaeger HOST:PORT (or --debug to print spans)');
  return { command, configFile: usesZero ? undefined : (configFile ?? DEFAULT_CONFIG), zero: usesZero ? zero : undefined };
}

export class UsageError extends Error {}

/** Loads and validates the config the arguments name; throws ConfigValidationError with every problem. */
export function loadConfig(args: CliArgs): ServiceConfig {
  const issues = new ConfigIssues();
  const doc = args.zero ? zeroConfig(args.zero) : readConfigFile(args.configFile!, issues);
  if (issues.errors.length > 0) throw new ConfigValidationError(issues.errors);
  return buildServiceConfig(doc, issues);
}

async function main(argv: readonly string[]): Promise<number> {
  const log = pino({ name: 'spansieve', base: undefined });
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

  const service = new Service(config);
  try {
    await service.start();
  } catch (err) {
    service.logger.fatal({ err: (err as Error).message }, 'spansieve failed to start');
    return 1;
  }
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) {
        log.warn({ signal }, 'second signal: exiting without waiting for queues to drain');
        resolve(1);
        return;
      }
      stopping = true;
      service.logger.info({ signal }, 'shutting down: draining queues');
      service.shutdown().then(
        () => resolve(0),
        (err: unknown) => {
          service.logger.error({ err }, 'error while shutting down');
          resolve(1);
        },
      );
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
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
