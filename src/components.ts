import type { AnyFactory, ComponentKind } from './component/component';
import { debugExporterFactory } from './exporters/debug/debug-exporter';
import { otlpExporterFactory } from './exporters/otlp/otlp-exporter';
import { otlpHttpExporterFactory } from './exporters/otlphttp/otlphttp-exporter';
import { adminExtensionFactory } from './extensions/admin/admin';
import { bearerTokenAuthFactory } from './extensions/bearertokenauth/bearertokenauth';
import { fileStorageFactory } from './extensions/filestorage/file-storage';
import { healthCheckFactory } from './extensions/healthcheck/health-check';
import { forwardConnectorFactory } from './connectors/forward/forward-connector';
import { serviceGraphConnectorFactory } from './connectors/servicegraph/servicegraph-connector';
import { spanMetricsConnectorFactory } from './connectors/spanmetrics/spanmetrics-connector';
import { prometheusExporterFactory } from './exporters/prometheus/prometheus-exporter';
import { prometheusRemoteWriteExporterFactory } from './exporters/prometheusremotewrite/prometheusremotewrite-exporter';
import { filterFactory } from './processors/filter/filter';
import { memoryLimiterFactory } from './processors/memorylimiter/memory-limiter';
import { probabilisticSamplerFactory } from './processors/probabilisticsampler/probabilistic-sampler';
import { tailSamplingFactory } from './processors/tailsampling/tail-sampling';
import { otlpReceiverFactory } from './receivers/otlp/otlp-receiver';

/** Every component spansieve can build, by kind and type. Adding a component = adding its factory here. */
export const FACTORIES: readonly AnyFactory[] = [
  otlpReceiverFactory,
  memoryLimiterFactory,
  filterFactory,
  probabilisticSamplerFactory,
  tailSamplingFactory,
  otlpExporterFactory,
  otlpHttpExporterFactory,
  debugExporterFactory,
  forwardConnectorFactory,
  spanMetricsConnectorFactory,
  serviceGraphConnectorFactory,
  prometheusExporterFactory,
  prometheusRemoteWriteExporterFactory,
  healthCheckFactory,
  adminExtensionFactory,
  fileStorageFactory,
  bearerTokenAuthFactory,
] as readonly AnyFactory[];

export function findFactory(kind: ComponentKind, type: string): AnyFactory | undefined {
  return FACTORIES.find((factory) => factory.kind === kind && factory.type === type);
}

export function knownTypes(kind: ComponentKind): string[] {
  return FACTORIES.filter((factory) => factory.kind === kind).map((factory) => factory.type);
}
