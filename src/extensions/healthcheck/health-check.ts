import * as http from 'node:http';
import type { Component, ComponentStatusEvent, ComponentStatusWatcher, ExtensionFactory, ServiceStatus } from '../../component/component';
import type { Node } from '../../config/reader';
import { closeServer, listen } from '../../util/net';

/** The Collector v2 health check's `component_health` (spansieve applies it without a feature gate). */
export interface ComponentHealthConfig {
  /** A component in a recoverable error for `recoveryDurationMs` makes the answer unhealthy. */
  readonly includeRecoverableErrors: boolean;
  readonly recoveryDurationMs: number;
}

export interface HealthCheckConfig {
  readonly endpoint: string;
  readonly path: string;
  /** undefined: components' status events do not change the answer (the Collector's default). */
  readonly componentHealth?: ComponentHealthConfig | undefined;
}

interface Recorded {
  readonly event: ComponentStatusEvent;
  readonly since: number;
}

/**
 * 200 while the service is ready, 503 while it starts or stops: for probes and orchestrators. With
 * `component_health.include_recoverable_errors`, 500 while a component (memory_limiter refusing
 * data) has been in a recoverable error for longer than `recovery_duration`.
 */
export class HealthCheck implements Component, ComponentStatusWatcher {
  private server: http.Server | undefined;
  private status: ServiceStatus = 'starting';
  private readonly since = new Date();
  private readonly components = new Map<string, Recorded>();

  constructor(
    private readonly config: HealthCheckConfig,
    private readonly now: () => number = Date.now,
  ) {}

  onStatus(status: ServiceStatus): void {
    this.status = status;
  }

  onComponentStatus(component: string, event: ComponentStatusEvent): void {
    const last = this.components.get(component);
    // The time of the first event of a run of the same status counts, as recovery_duration's clock.
    if (last?.event.status === event.status) this.components.set(component, { event, since: last.since });
    else this.components.set(component, { event, since: this.now() });
  }

  /** The component in a recoverable error past recovery_duration, if any (the oldest). */
  private failing(): [string, Recorded] | undefined {
    const health = this.config.componentHealth;
    if (!health?.includeRecoverableErrors) return undefined;
    const now = this.now();
    let worst: [string, Recorded] | undefined;
    for (const entry of this.components) {
      const [, recorded] = entry;
      if (recorded.event.status !== 'recoverable_error' || now - recorded.since < health.recoveryDurationMs) continue;
      if (!worst || recorded.since < worst[1].since) worst = entry;
    }
    return worst;
  }

  async start(): Promise<void> {
    this.server = http.createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (path !== this.config.path) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end(`not found; health is at ${this.config.path}\n`);
        return;
      }
      const ready = this.status === 'ready';
      const failing = ready ? this.failing() : undefined;
      const body = JSON.stringify({
        status: ready && !failing ? 'Server available' : 'Server not available',
        state: this.status,
        upSince: this.since.toISOString(),
        ...(failing ? { healthy: false, component: failing[0], error: failing[1].event.error ?? '', errorSince: new Date(failing[1].since).toISOString() } : {}),
      });
      res.writeHead(!ready ? 503 : failing ? 500 : 200, { 'content-type': 'application/json' }).end(body);
    });
    await listen(this.server, this.config.endpoint);
  }

  async shutdown(): Promise<void> {
    await closeServer(this.server);
  }
}

function parseComponentHealth(node: Node): ComponentHealthConfig | undefined {
  if (node.isAbsent) return undefined;
  const at = node.struct(['include_recoverable_errors', 'include_permanent_errors', 'recovery_duration']);
  // No spansieve component reports a permanent error: accepted for the Collector's configs, nothing to apply.
  at('include_permanent_errors').boolean(false);
  return {
    includeRecoverableErrors: at('include_recoverable_errors').boolean(false),
    recoveryDurationMs: at('recovery_duration').duration(5 * 60_000),
  };
}

export const healthCheckFactory: ExtensionFactory<HealthCheckConfig> = {
  inPrimary: true,
  type: 'health_check',
  kind: 'extension',
  parseConfig(node: Node): HealthCheckConfig {
    const at = node.struct(['endpoint', 'path', 'component_health']);
    const path = at('path').string('/');
    if (!path.startsWith('/')) at('path').report(`must start with "/", got ${JSON.stringify(path)}`);
    return { endpoint: at('endpoint').endpoint('127.0.0.1:13133'), path, componentHealth: parseComponentHealth(at('component_health')) };
  },
  create: (_settings, config) => new HealthCheck(config),
};
