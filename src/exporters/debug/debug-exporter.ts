import type { Logger } from 'pino';
import type { Component, Consumer, CreateSettings, ExporterFactory } from '../../component/component';
import type { Node } from '../../config/reader';
import { attrValueToString } from '../../pdata/attributes';
import type { Batch } from '../../pdata/batch';
import { TooDeepError, decodeToPlain, types, type PlainMessage } from '../../pdata/codec';

export interface DebugExporterConfig {
  /** basic: one line per batch; normal: one line per span or metric; detailed: normal plus attributes. */
  readonly verbosity: 'basic' | 'normal' | 'detailed';
}

const SPAN_KINDS = ['UNSPECIFIED', 'INTERNAL', 'SERVER', 'CLIENT', 'PRODUCER', 'CONSUMER'];
const STATUS_CODES = ['UNSET', 'OK', 'ERROR'];

interface PlainSpan {
  name?: string;
  kind?: number;
  traceId?: string;
  spanId?: string;
  startTimeUnixNano?: string;
  endTimeUnixNano?: string;
  status?: { code?: number; message?: string };
  attributes?: unknown[];
}

/** Prints what reaches it through pino: the quickest way to see what the filter kept. */
export class DebugExporter implements Component, Consumer {
  private readonly logger: Logger;

  constructor(
    settings: CreateSettings,
    private readonly config: DebugExporterConfig,
  ) {
    this.logger = settings.logger;
  }

  async start(): Promise<void> {}

  async shutdown(): Promise<void> {}

  async consume(batch: Batch): Promise<void> {
    if (!this.logger.isLevelEnabled('info')) return;
    if (this.config.verbosity === 'basic') {
      this.logger.info({ signal: batch.signal, resources: batch.resources.length, items: batch.itemCount }, `${batch.signal}: ${batch.itemCount} items`);
      return;
    }
    for (const block of batch.resources) {
      const service = attrValueToString(block.attributes.get('service.name') ?? '');
      const instance = attrValueToString(block.attributes.get('service.instance.id') ?? '');
      try {
        if (batch.signal === 'traces') this.printSpans(decodeToPlain(types.ResourceSpans, block.bytes), service, instance);
        else this.printMetrics(decodeToPlain(types.ResourceMetrics, block.bytes), service, instance);
      } catch (err) {
        // Valid data the receiver took: not shown, rather than refused.
        if (!(err instanceof TooDeepError)) throw err;
        this.logger.info({ signal: batch.signal, 'service.name': service, 'service.instance.id': instance, items: block.itemCount }, `resource not shown: ${err.message}`);
      }
    }
  }

  private printSpans(resource: PlainMessage, service: string, instance: string): void {
    for (const scope of (resource.scopeSpans as { spans?: PlainSpan[] }[] | undefined) ?? []) {
      for (const span of scope.spans ?? []) {
        const durationMs = (Number(BigInt(span.endTimeUnixNano ?? '0') - BigInt(span.startTimeUnixNano ?? '0')) / 1e6).toFixed(3);
        const kind = SPAN_KINDS[span.kind ?? 0] ?? String(span.kind);
        const status = STATUS_CODES[span.status?.code ?? 0] ?? String(span.status?.code);
        const line = { service, instance, span: span.name ?? '', kind, durationMs: Number(durationMs), status, traceId: span.traceId, spanId: span.spanId };
        const detail = this.config.verbosity === 'detailed' ? { ...line, attributes: span.attributes } : line;
        this.logger.info(detail, `span ${service} ${instance} "${line.span}" ${kind} ${durationMs}ms ${status} trace=${span.traceId ?? ''}`);
      }
    }
  }

  private printMetrics(resource: PlainMessage, service: string, instance: string): void {
    for (const scope of (resource.scopeMetrics as { metrics?: Record<string, unknown>[] }[] | undefined) ?? []) {
      for (const metric of scope.metrics ?? []) {
        const type = ['gauge', 'sum', 'histogram', 'exponentialHistogram', 'summary'].find((key) => key in metric) ?? 'empty';
        const points = ((metric[type] as { dataPoints?: unknown[] } | undefined)?.dataPoints ?? []).length;
        const line = { service, instance, metric: metric.name, type, points };
        this.logger.info(this.config.verbosity === 'detailed' ? { ...line, data: metric[type] } : line, `metric ${service} ${instance} ${String(metric.name)} ${type} points=${points}`);
      }
    }
  }
}

export const debugExporterFactory: ExporterFactory<DebugExporterConfig> = {
  type: 'debug',
  kind: 'exporter',
  signals: ['traces', 'metrics'],
  parseConfig(node: Node): DebugExporterConfig {
    const at = node.struct(['verbosity']);
    return { verbosity: at('verbosity').oneOf<DebugExporterConfig['verbosity']>('normal', ['basic', 'normal', 'detailed']) };
  },
  create: (settings, config) => new DebugExporter(settings, config),
};
