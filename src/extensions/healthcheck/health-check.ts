import * as http from 'node:http';
import type { Component, ExtensionFactory, ServiceStatus } from '../../component/component';
import type { Node } from '../../config/reader';
import { closeServer, listen } from '../../util/net';

export interface HealthCheckConfig {
  readonly endpoint: string;
  readonly path: string;
}

/** 200 while the service is ready, 503 while it starts or stops: for probes and orchestrators. */
export class HealthCheck implements Component {
  private server: http.Server | undefined;
  private status: ServiceStatus = 'starting';
  private readonly since = new Date();

  constructor(private readonly config: HealthCheckConfig) {}

  onStatus(status: ServiceStatus): void {
    this.status = status;
  }

  async start(): Promise<void> {
    this.server = http.createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (path !== this.config.path) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end(`not found; health is at ${this.config.path}\n`);
        return;
      }
      const ready = this.status === 'ready';
      const body = JSON.stringify({
        status: ready ? 'Server available' : 'Server not available',
        state: this.status,
        upSince: this.since.toISOString(),
      });
      res.writeHead(ready ? 200 : 503, { 'content-type': 'application/json' }).end(body);
    });
    await listen(this.server, this.config.endpoint);
  }

  async shutdown(): Promise<void> {
    await closeServer(this.server);
  }
}

export const healthCheckFactory: ExtensionFactory<HealthCheckConfig> = {
  inPrimary: true,
  type: 'health_check',
  kind: 'extension',
  parseConfig(node: Node): HealthCheckConfig {
    const at = node.struct(['endpoint', 'path']);
    const path = at('path').string('/');
    if (!path.startsWith('/')) at('path').report(`must start with "/", got ${JSON.stringify(path)}`);
    return { endpoint: at('endpoint').endpoint('127.0.0.1:13133'), path };
  },
  create: (_settings, config) => new HealthCheck(config),
};
