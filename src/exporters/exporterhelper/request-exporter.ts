import type { Component, Consumer, CreateSettings, Host, QueueAbandon, QueueHandover, QueueRequest } from '../../component/component';
import type { Batch } from '../../pdata/batch';
import type { PushSignal } from './attempt-signal';
import { ExporterHelper, compactedBatchRequests, type HelperConfig, type RequestType } from './exporterhelper';

/**
 * An exporter whose sending queue carries requests of type R: refusing, abandoning and the reload
 * hand-over are the helper's; a subclass implements consume (turning a batch into its request),
 * the push of one attempt, and its own start and shutdown.
 */
export abstract class QueueingExporter<R extends QueueRequest> implements Component, Consumer, QueueHandover, QueueAbandon {
  protected readonly helper: ExporterHelper<R>;

  constructor(settings: CreateSettings, helperConfig: HelperConfig, requests: RequestType<R>) {
    this.helper = new ExporterHelper<R>(settings, helperConfig, (request, signal) => this.push(request, signal), requests);
  }

  abstract start(host?: Host): Promise<void>;
  abstract shutdown(): Promise<void>;
  abstract consume(batch: Batch): Promise<void>;
  protected abstract push(request: R, signal: PushSignal): Promise<void>;

  wouldRefuse(): string | undefined {
    return this.helper.wouldRefuse();
  }

  abandonQueue(): Promise<void> {
    return this.helper.abandonQueue();
  }

  prepareRelease(): void {
    this.helper.prepareRelease();
  }

  releaseQueue(): Promise<QueueRequest[]> {
    return this.helper.releaseQueue();
  }

  adoptQueue(requests: readonly QueueRequest[]): void {
    this.helper.adoptQueue(requests);
  }
}

/** An exporter that sends each batch's request bytes as they are (otlp, otlphttp). */
export abstract class RequestExporter extends QueueingExporter<Batch> {
  constructor(settings: CreateSettings, helperConfig: HelperConfig) {
    super(settings, helperConfig, compactedBatchRequests);
  }

  consume(batch: Batch): Promise<void> {
    return this.helper.consume(batch);
  }
}
