import type { Logger } from 'pino';
import {
  canAbandon,
  canHandOver,
  type Component,
  type ComponentKind,
  type ComponentTelemetry,
  type Consumer,
  type ConnectorFactory,
  type ComponentStatusEvent,
  type ComponentStatusWatcher,
  type CreateSettings,
  type ExporterFactory,
  type Host,
  type InstanceRecorder,
  type SamplingRecorder,
  type ProcessorFactory,
  type QueueRequest,
  type ReceiverFactory,
} from '../component/component';
import { RetryableError } from '../component/errors';
import type { ComponentConfig, PipelineConfig, ServiceConfig } from '../config/service-config';
import type { Attributes } from '../pdata/attributes';
import type { Batch, Signal } from '../pdata/batch';

async function abandonAll(components: readonly Component[]): Promise<void> {
  await Promise.all(components.map((c) => (canAbandon(c) ? c.abandonQueue() : Promise.resolve())));
}

/** Hands a batch to several consumers at once; fails if any failed, preferring a retryable error. */
export class FanOut implements Consumer {
  constructor(private readonly consumers: readonly Consumer[]) {}

  /** Not async for one consumer: its promise is returned as is, without another promise around it. */
  consume(batch: Batch): Promise<void> {
    return this.consumers.length === 1 ? this.consumers[0]!.consume(batch) : this.consumeAll(batch);
  }

  private async consumeAll(batch: Batch): Promise<void> {
    const results = await Promise.allSettled(this.consumers.map((consumer) => consumer.consume(batch)));
    const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason as unknown);
    if (failures.length > 0) throw failures.find((err) => err instanceof RetryableError) ?? failures[0];
  }

  mayKeep(attributes: Attributes): boolean {
    for (const consumer of this.consumers) if (consumer.mayKeep?.(attributes) ?? true) return true;
    return false;
  }

  /** One branch refusing fails the whole batch (consume above), so it refuses for all. */
  wouldRefuse(): string | undefined {
    for (const consumer of this.consumers) {
      const reason = consumer.wouldRefuse?.();
      if (reason !== undefined) return reason;
    }
    return undefined;
  }
}

/** Stands for a pipeline's first consumer before it exists, so connectors can point at later pipelines. */
class PipelineEntry implements Consumer {
  target: Consumer | undefined;

  consume(batch: Batch): Promise<void> {
    return this.target!.consume(batch);
  }

  mayKeep(attributes: Attributes): boolean {
    return this.target!.mayKeep?.(attributes) ?? true;
  }

  wouldRefuse(): string | undefined {
    return this.target!.wouldRefuse?.();
  }
}

export interface BuiltProcessor {
  readonly pipeline: string;
  readonly id: string;
  readonly component: Component & Consumer;
}

/**
 * The running form of a config: receivers -> processors -> fan-out -> exporters, per pipeline.
 * Exporters, receivers and connectors are shared by id; processors are one instance per pipeline.
 */
export class Graph {
  readonly receivers = new Map<string, Component>();
  readonly processors: BuiltProcessor[] = [];
  readonly exporters = new Map<string, Component & Consumer>();
  readonly connectors = new Map<string, Component & Consumer>();
  readonly extensions = new Map<string, Component & { onStatus?(status: string): void } & Partial<ComponentStatusWatcher>>();

  constructor(
    private readonly config: ServiceConfig,
    private readonly logger: Logger,
    private readonly telemetry: ComponentTelemetry,
    private readonly inventory?: InstanceRecorder,
    private readonly sampling?: SamplingRecorder,
    /** Also told every component status event (a worker passes them to the primary's health_check). */
    private readonly statusSink?: (component: string, event: ComponentStatusEvent) => void,
  ) {
    const entries = new Map<string, PipelineEntry>(config.pipelines.map((p) => [p.id, new PipelineEntry()]));

    for (const id of config.serviceExtensions) {
      const ext = config.extensions.get(id)!;
      this.extensions.set(id, (ext.factory as unknown as { create: (s: CreateSettings, c: unknown) => Component }).create(this.settings(ext), ext.config));
    }

    const exportersUsed = new Set(config.pipelines.flatMap((p) => p.exporters).filter((id) => config.exporters.has(id)));
    for (const id of exportersUsed) {
      const exporter = config.exporters.get(id)!;
      this.exporters.set(id, (exporter.factory as ExporterFactory<unknown>).create(this.settings(exporter), exporter.config));
    }

    // Connector instances per (id, incoming signal), feeding the pipelines that list them as a receiver.
    for (const pipeline of config.pipelines) {
      for (const id of pipeline.exporters) {
        const connector = config.connectors.get(id);
        const key = `${id}:${pipeline.signal}`;
        if (!connector || this.connectors.has(key)) continue;
        const next = this.consumersOf(id, entries, (p) => (connector.factory as ConnectorFactory<unknown>).routes.some(([a, b]) => a === pipeline.signal && b === p.signal));
        this.connectors.set(key, (connector.factory as ConnectorFactory<unknown>).create(this.settings(connector), connector.config, pipeline.signal, next));
      }
    }

    for (const pipeline of config.pipelines) {
      const targets = pipeline.exporters.map((id) => this.exporters.get(id) ?? this.connectors.get(`${id}:${pipeline.signal}`)!);
      let next: Consumer = new FanOut(targets);
      for (const id of [...pipeline.processors].reverse()) {
        const processor = config.processors.get(id)!;
        const component = (processor.factory as ProcessorFactory<unknown>).create(this.settings(processor, pipeline), processor.config, pipeline.signal, next);
        this.processors.unshift({ pipeline: pipeline.id, id, component });
        next = component;
      }
      entries.get(pipeline.id)!.target = next;
    }

    const receiversUsed = new Set(config.pipelines.flatMap((p) => p.receivers).filter((id) => config.receivers.has(id)));
    for (const id of receiversUsed) {
      const receiver = config.receivers.get(id)!;
      const next = this.consumersOf(id, entries, () => true);
      this.receivers.set(id, (receiver.factory as ReceiverFactory<unknown>).create(this.settings(receiver), receiver.config, next));
    }
  }

  /** The running instances of a component: one per pipeline for a processor, per incoming signal for a connector. */
  instancesOf(kind: ComponentKind, id: string): Component[] {
    switch (kind) {
      case 'receiver':
        return this.receivers.has(id) ? [this.receivers.get(id)!] : [];
      case 'processor':
        return this.processors.filter((p) => p.id === id).map((p) => p.component);
      case 'exporter':
        return this.exporters.has(id) ? [this.exporters.get(id)!] : [];
      case 'connector':
        return [...this.connectors].filter(([key]) => key.slice(0, key.lastIndexOf(':')) === id).map(([, c]) => c);
      case 'extension':
        return this.extensions.has(id) ? [this.extensions.get(id)!] : [];
    }
  }

  /** Starts exporters first and receivers last, so nothing is accepted before it can be sent on. */
  async start(host: Host): Promise<void> {
    for (const group of this.startOrder()) {
      for (const [id, component] of group) {
        try {
          await component.start(host);
        } catch (err) {
          throw new Error(`failed to start ${id}: ${(err as Error).message}`, { cause: err });
        }
      }
    }
  }

  /** Stops receivers first, then drains processors, connectors and exporters in that order. */
  async shutdown(): Promise<void> {
    for (const group of this.startOrder().reverse()) await this.stopGroup(group);
  }

  /**
   * For a reload: stops like shutdown(), except that each exporter in `handOver` that can release
   * its queue does so (its batches are returned, by exporter id, for the next configuration), and
   * the other exporters drain in the background (`draining`) instead of holding the reload up.
   */
  async stopForReload(
    handOver: ReadonlySet<string>,
  ): Promise<{ carried: Map<string, QueueRequest[]>; draining: Promise<void>; abandon: () => Promise<void> }> {
    const [extensions, , connectors, processors, receivers] = this.startOrder();
    for (const [id, exporter] of this.exporters) if (handOver.has(id) && canHandOver(exporter)) exporter.prepareRelease();
    for (const group of [receivers!, processors!, connectors!]) await this.stopGroup(group);
    const carried = new Map<string, QueueRequest[]>();
    const draining: Promise<void>[] = [];
    const left: Component[] = [];
    await Promise.all(
      [...this.exporters].map(async ([id, exporter]) => {
        const group = new Map<string, Component>([[`exporter ${id}`, exporter]]);
        if (handOver.has(id) && canHandOver(exporter)) {
          carried.set(id, await exporter.releaseQueue());
          await this.stopGroup(group);
          return;
        }
        if (handOver.has(id)) {
          // Kept, without a queue to move (debug, prometheus): stopped before the successor
          // starts (the prometheus exporter's port must be free for it).
          await this.stopGroup(group);
          return;
        }
        if (canAbandon(exporter)) this.logger.info({ exporter: id }, 'the reload does not carry this exporter over: its queue drains in the background');
        left.push(exporter);
        draining.push(this.stopGroup(group));
      }),
    );
    await this.stopGroup(extensions!);
    const abandon = () => abandonAll(left);
    return { carried, draining: Promise.all(draining).then(() => undefined), abandon };
  }

  /** The shutdown deadline passed: every exporter that can stops retrying and drops what is left. */
  abandonQueues(): Promise<void> {
    return abandonAll([...this.exporters.values()]);
  }

  private async stopGroup(group: ReadonlyMap<string, Component>): Promise<void> {
    await Promise.all(
      [...group].map(async ([id, component]) => {
        try {
          await component.shutdown();
        } catch (err) {
          this.logger.error({ err, component: id }, 'error during shutdown');
        }
      }),
    );
  }

  private startOrder(): Map<string, Component>[] {
    return [
      new Map([...this.extensions].map(([id, c]) => [`extension ${id}`, c])),
      new Map([...this.exporters].map(([id, c]) => [`exporter ${id}`, c])),
      new Map([...this.connectors].map(([id, c]) => [`connector ${id}`, c])),
      new Map(this.processors.map((p) => [`processor ${p.id} in pipeline ${p.pipeline}`, p.component])),
      new Map([...this.receivers].map(([id, c]) => [`receiver ${id}`, c])),
    ];
  }

  /** Per signal, the fan-out over the entries of pipelines that list `id` as a receiver. */
  private consumersOf(id: string, entries: ReadonlyMap<string, PipelineEntry>, accepts: (p: PipelineConfig) => boolean): Map<Signal, Consumer> {
    const next = new Map<Signal, Consumer>();
    for (const signal of ['traces', 'metrics'] as const) {
      const pipelines = this.config.pipelines.filter((p) => p.signal === signal && p.receivers.includes(id) && accepts(p));
      if (pipelines.length > 0) next.set(signal, new FanOut(pipelines.map((p) => entries.get(p.id)!)));
    }
    return next;
  }

  private settings(component: ComponentConfig, pipeline?: PipelineConfig): CreateSettings {
    const bindings: Record<string, string> = { 'otelcol.component.kind': component.kind, 'otelcol.component.id': component.id };
    if (pipeline) bindings['otelcol.pipeline.id'] = pipeline.id;
    // `kind:id` names a component in status events, as the Collector's health_check shows it.
    const name = `${component.kind}:${component.id}`;
    const reportStatus = (event: ComponentStatusEvent): void => {
      for (const extension of this.extensions.values()) extension.onComponentStatus?.(name, event);
      this.statusSink?.(name, event);
    };
    return { id: component.id, logger: this.logger.child(bindings), telemetry: this.telemetry, reportStatus, ...(this.inventory ? { inventory: this.inventory } : {}), ...(this.sampling ? { sampling: this.sampling } : {}) };
  }
}
