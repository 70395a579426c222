/* eslint-disable @typescript-eslint/no-require-imports -- components load on first use, see below */
import type { AnyFactory, ComponentKind } from './component/component';

// A component's module (its factory, its code, the libraries it uses) is loaded only when a
// config names its type: the otlp → filter → otlp sidecar never loads tail sampling, OTTL's
// parser, spanmetrics, the admin page or Prometheus' encoders, about 3 MiB less RSS at idle
// and under load (docs/performance.md, "Memory: what spansieve's RSS is made of"). Each entry
// names its kind and type so that lookups and the "known:" list of an error load nothing.

interface FactoryEntry {
  readonly kind: ComponentKind;
  readonly type: string;
  readonly load: () => AnyFactory;
}

/** Every component spansieve can build, by kind and type. Adding a component = adding its entry here. */
const ENTRIES: readonly FactoryEntry[] = [
  { kind: 'receiver', type: 'otlp', load: () => (require('./receivers/otlp/otlp-receiver') as typeof import('./receivers/otlp/otlp-receiver')).otlpReceiverFactory },
  { kind: 'processor', type: 'memory_limiter', load: () => (require('./processors/memorylimiter/memory-limiter') as typeof import('./processors/memorylimiter/memory-limiter')).memoryLimiterFactory },
  { kind: 'processor', type: 'filter', load: () => (require('./processors/filter/filter') as typeof import('./processors/filter/filter')).filterFactory },
  { kind: 'processor', type: 'probabilistic_sampler', load: () => (require('./processors/probabilisticsampler/probabilistic-sampler') as typeof import('./processors/probabilisticsampler/probabilistic-sampler')).probabilisticSamplerFactory },
  { kind: 'processor', type: 'tail_sampling', load: () => (require('./processors/tailsampling/tail-sampling') as typeof import('./processors/tailsampling/tail-sampling')).tailSamplingFactory },
  { kind: 'exporter', type: 'otlp', load: () => (require('./exporters/otlp/otlp-exporter') as typeof import('./exporters/otlp/otlp-exporter')).otlpExporterFactory },
  { kind: 'exporter', type: 'otlphttp', load: () => (require('./exporters/otlphttp/otlphttp-exporter') as typeof import('./exporters/otlphttp/otlphttp-exporter')).otlpHttpExporterFactory },
  { kind: 'exporter', type: 'debug', load: () => (require('./exporters/debug/debug-exporter') as typeof import('./exporters/debug/debug-exporter')).debugExporterFactory },
  { kind: 'connector', type: 'forward', load: () => (require('./connectors/forward/forward-connector') as typeof import('./connectors/forward/forward-connector')).forwardConnectorFactory },
  { kind: 'connector', type: 'spanmetrics', load: () => (require('./connectors/spanmetrics/spanmetrics-connector') as typeof import('./connectors/spanmetrics/spanmetrics-connector')).spanMetricsConnectorFactory },
  { kind: 'connector', type: 'servicegraph', load: () => (require('./connectors/servicegraph/servicegraph-connector') as typeof import('./connectors/servicegraph/servicegraph-connector')).serviceGraphConnectorFactory },
  { kind: 'exporter', type: 'prometheus', load: () => (require('./exporters/prometheus/prometheus-exporter') as typeof import('./exporters/prometheus/prometheus-exporter')).prometheusExporterFactory },
  { kind: 'exporter', type: 'prometheusremotewrite', load: () => (require('./exporters/prometheusremotewrite/prometheusremotewrite-exporter') as typeof import('./exporters/prometheusremotewrite/prometheusremotewrite-exporter')).prometheusRemoteWriteExporterFactory },
  { kind: 'extension', type: 'health_check', load: () => (require('./extensions/healthcheck/health-check') as typeof import('./extensions/healthcheck/health-check')).healthCheckFactory },
  { kind: 'extension', type: 'admin', load: () => (require('./extensions/admin/admin') as typeof import('./extensions/admin/admin')).adminExtensionFactory },
  { kind: 'extension', type: 'file_storage', load: () => (require('./extensions/filestorage/file-storage') as typeof import('./extensions/filestorage/file-storage')).fileStorageFactory },
  { kind: 'extension', type: 'bearertokenauth', load: () => (require('./extensions/bearertokenauth/bearertokenauth') as typeof import('./extensions/bearertokenauth/bearertokenauth')).bearerTokenAuthFactory },
];

/** Where the config finds the factory of a type (tests pass their own, e.g. a list with an extra factory). */
export interface FactorySource {
  find(kind: ComponentKind, type: string): AnyFactory | undefined;
  types(kind: ComponentKind): string[];
}

function loadEntry(entry: FactoryEntry): AnyFactory {
  const factory = entry.load();
  // A wrong entry would give a type another component's config rules: fail at once, loudly.
  if (factory.kind !== entry.kind || factory.type !== entry.type) {
    throw new Error(`components.ts: the entry ${entry.kind} "${entry.type}" loads ${factory.kind} "${factory.type}"`);
  }
  return factory;
}

/** Loads the one component module asked for (Node caches it). */
export function findFactory(kind: ComponentKind, type: string): AnyFactory | undefined {
  const entry = ENTRIES.find((e) => e.kind === kind && e.type === type);
  return entry && loadEntry(entry);
}

/** The types of one kind, without loading any module. */
export function knownTypes(kind: ComponentKind): string[] {
  return ENTRIES.filter((e) => e.kind === kind).map((e) => e.type);
}

/** Every factory, loading every component module: for tests and docs checks, not for the service. */
export function allFactories(): readonly AnyFactory[] {
  return ENTRIES.map(loadEntry);
}

/** spansieve's own components, each loaded when first looked up. */
export const FACTORIES: FactorySource = { find: findFactory, types: knownTypes };

/** A source over a given list (tests: spansieve's factories plus their own). */
export function factoryList(factories: readonly AnyFactory[]): FactorySource {
  return {
    find: (kind, type) => factories.find((f) => f.kind === kind && f.type === type),
    types: (kind) => factories.filter((f) => f.kind === kind).map((f) => f.type),
  };
}
