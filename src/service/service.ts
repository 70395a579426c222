import pino, { type Logger } from 'pino';
import type { Host, ServiceStatus } from '../component/component';
import type { ServiceConfig } from '../config/service-config';
import { Graph } from '../pipeline/graph';
import { SelfTelemetry, TelemetryServer } from './telemetry';

export interface ServiceOptions {
  /** Defaults to pino JSON lines on stdout at the configured level. */
  readonly logger?: Logger;
}

/** One running configuration: its own telemetry, its component graph and their lifecycle. */
export class Service {
  readonly telemetry = new SelfTelemetry();
  readonly logger: Logger;
  readonly graph: Graph;
  private readonly telemetryServer: TelemetryServer | undefined;
  private status: ServiceStatus = 'stopped';

  constructor(
    readonly config: ServiceConfig,
    options: ServiceOptions = {},
  ) {
    this.logger = options.logger ?? pino({ level: config.telemetry.logLevel, name: 'spansieve', base: undefined });
    this.graph = new Graph(config, this.logger, this.telemetry);
    this.telemetryServer = config.telemetry.metricsAddress ? new TelemetryServer(this.telemetry, config.telemetry.metricsAddress) : undefined;
  }

  get state(): ServiceStatus {
    return this.status;
  }

  async start(): Promise<void> {
    const host: Host = { reportStatus: (status) => this.setStatus(status) };
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

  private setStatus(status: ServiceStatus): void {
    this.status = status;
    for (const extension of this.graph.extensions.values()) extension.onStatus?.(status);
  }
}
