import type { Component, Consumer, CreateSettings, Host, QueueAbandon, QueueHandover } from '../../component/component';
import type { Batch } from '../../pdata/batch';
import { ExporterHelper, type HelperConfig } from './exporterhelper';

/**
 * An exporter that sends each batch's request bytes as they are (otlp, otlphttp): taking batches,
 * refusing them, and handing its queue over on a reload are the helper's; a subclass implements
 * only the push of one attempt and its own start and shutdown.
 */
export abstract class RequestExporter implements Component, Consumer, QueueHandover, QueueAbandon {
  protected readonly helper: ExporterHelper;

  constructor(settings: CreateSettings, helperConfig: HelperConfig) {
    this.helper = new ExporterHelper(settings, helperConfig, (batch, signal) => this.push(batch, signal), true);
  }

  abstract start(host?: Host): Promise<void>;
  abstract shutdown(): Promise<void>;
  protected abstract push(batch: Batch, signal: AbortSignal): Promise<void>;

  consume(batch: Batch): Promise<void> {
    return this.helper.consume(batch);
  }

  wouldRefuse(): string | undefined {
    return this.helper.wouldRefuse();
  }

  abandonQueue(): Promise<void> {
    return this.helper.abandonQueue();
  }

  prepareRelease(): void {
    this.helper.prepareRelease();
  }

  releaseQueue(): Promise<Batch[]> {
    return this.helper.releaseQueue();
  }

  adoptQueue(batches: readonly Batch[]): void {
    this.helper.adoptQueue(batches);
  }
}
