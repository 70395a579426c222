import pino, { type Logger } from 'pino';
import { Writable } from 'node:stream';
import * as YAML from 'yaml';
import { parseConfigText } from '../../src/config/load';
import { ConfigIssues, ConfigValidationError } from '../../src/config/reader';
import { buildServiceConfig } from '../../src/config/service-config';
import { Service } from '../../src/service/service';

export interface CapturedLogs {
  readonly lines: Record<string, unknown>[];
  readonly logger: Logger;
}

/** A pino logger whose JSON lines are kept in memory for assertions. */
export function captureLogs(level = 'info'): CapturedLogs {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) lines.push(JSON.parse(line) as Record<string, unknown>);
      callback();
    },
  });
  return { lines, logger: pino({ level }, stream) };
}

/** Builds and starts a service from a config document (object or YAML text, env-expanded). */
export async function startService(config: Record<string, unknown> | string, logger?: Logger): Promise<Service> {
  const issues = new ConfigIssues();
  const text = typeof config === 'string' ? config : YAML.stringify(withEphemeralTelemetry(config));
  const doc = parseConfigText(text, 'test config', issues);
  if (issues.errors.length > 0) throw new ConfigValidationError(issues.errors);
  const service = new Service(buildServiceConfig(doc, issues), { logger: logger ?? pino({ level: 'silent' }) });
  await service.start();
  return service;
}

/**
 * Self-metrics default to 127.0.0.1:8888; a test that does not choose their address gets a port
 * the system picks, so tests never collide with each other or with a service running beside them.
 */
function withEphemeralTelemetry(config: Record<string, unknown>): Record<string, unknown> {
  const service = (config.service ?? {}) as Record<string, unknown>;
  if (service.telemetry !== undefined) return config;
  return { ...config, service: { ...service, telemetry: { metrics: { address: '127.0.0.1:0' } } } };
}
