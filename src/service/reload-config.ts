import type { Logger } from 'pino';
import { ConfigValidationError } from '../config/reader';
import type { ServiceConfig } from '../config/service-config';

/**
 * The new configuration a reload asks for, or its validation errors, logged (the running one
 * stays). Any other error is thrown. One process (supervisor.ts) and the multi-core primary
 * (primary.ts) log a rejection the same way.
 */
export function loadNewConfig(load: () => ServiceConfig, logger: Logger, reason: string): { config: ServiceConfig } | { errors: readonly string[] } {
  try {
    return { config: load() };
  } catch (err) {
    if (!(err instanceof ConfigValidationError)) throw err;
    logger.error({ reason, errors: err.errors }, 'new configuration rejected; the running one stays');
    return { errors: err.errors };
  }
}
