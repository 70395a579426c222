import * as fs from 'node:fs';
import * as os from 'node:os';
import type { AnyFactory, ComponentKind, ConnectorFactory, ExporterFactory, ExtensionFactory, ProcessorFactory, ReceiverFactory } from '../component/component';
import { FACTORIES, type FactorySource } from '../components';
import type { Signal } from '../pdata/batch';
import { ConfigIssues, ConfigValidationError, Node } from './reader';

// The whole configuration, validated into one frozen model: every component's config parsed by
// its factory, every pipeline's references resolved. All problems are collected, each with its path.

export interface ComponentConfig {
  readonly id: string;
  readonly kind: ComponentKind;
  readonly factory: AnyFactory;
  readonly config: unknown;
}

export interface PipelineConfig {
  readonly id: string;
  readonly signal: Signal;
  readonly receivers: readonly string[];
  readonly processors: readonly string[];
  readonly exporters: readonly string[];
}

export interface TelemetryConfig {
  readonly metricsAddress: string | undefined;
  readonly logLevel: 'debug' | 'info' | 'warn' | 'error';
}

export interface ServiceConfig {
  readonly receivers: ReadonlyMap<string, ComponentConfig>;
  readonly processors: ReadonlyMap<string, ComponentConfig>;
  readonly exporters: ReadonlyMap<string, ComponentConfig>;
  readonly connectors: ReadonlyMap<string, ComponentConfig>;
  readonly extensions: ReadonlyMap<string, ComponentConfig>;
  readonly serviceExtensions: readonly string[];
  readonly pipelines: readonly PipelineConfig[];
  readonly telemetry: TelemetryConfig;
  /**
   * How long a shutdown (SIGTERM/SIGINT) may spend draining sending queues before exporters stop
   * retrying and drop what is left, counted and logged; 0 waits as long as retries allow.
   */
  readonly shutdownTimeoutMs: number;
  /**
   * Worker processes that run the pipelines (`service::workers`, `auto`: the cores available);
   * 1, the default, is a single process with no workers.
   */
  readonly workers: number;
  /** The raw (env-expanded) document, kept so the config can be written back. */
  readonly raw: Record<string, unknown>;
}

const SECTIONS = [
  ['receivers', 'receiver'],
  ['processors', 'processor'],
  ['exporters', 'exporter'],
  ['connectors', 'connector'],
  ['extensions', 'extension'],
] as const;

const ID_PATTERN = /^([a-z][a-z0-9_]*)(?:\/([^\s/]+))?$/;

/** The config section (`processors`) of a kind (`processor`). */
export function sectionOf(kind: ComponentKind): (typeof SECTIONS)[number][0] {
  return SECTIONS.find(([, k]) => k === kind)![0];
}

/** The configured components of one kind, by id, in document order. */
export function componentsOf(config: ServiceConfig, kind: ComponentKind): ReadonlyMap<string, ComponentConfig> {
  return config[sectionOf(kind)];
}

/**
 * Validates a parsed document; throws ConfigValidationError listing every problem. `factories`:
 * the component types it may use (all of spansieve's by default; tests pass their own).
 */
export function buildServiceConfig(doc: unknown, issues = new ConfigIssues(), factories: FactorySource = FACTORIES): ServiceConfig {
  const root = new Node(doc, '', issues);
  const top = root.struct(['receivers', 'processors', 'exporters', 'connectors', 'extensions', 'service']);
  const sections = {} as Record<(typeof SECTIONS)[number][0], Map<string, ComponentConfig>>;
  for (const [section, kind] of SECTIONS) {
    const components = new Map<string, ComponentConfig>();
    for (const [id, node] of Object.entries(top(section).object())) {
      const parsed = parseComponent(kind, id, node, factories);
      if (parsed) components.set(id, parsed);
    }
    sections[section] = components;
  }

  const service = top('service').struct(['extensions', 'pipelines', 'telemetry', 'shutdown_timeout', 'workers']);
  const serviceExtensions = service('extensions')
    .list()
    .map((node) => {
      const id = node.string('');
      if (!sections.extensions.has(id)) node.report(`references extension "${id}" which is not configured`);
      return id;
    })
    .filter((id) => sections.extensions.has(id));

  checkQueueStorage(sections.exporters, sections.extensions, serviceExtensions, top('exporters'));
  checkProcessorStorage(sections.processors, sections.extensions, serviceExtensions, top('processors'));
  checkAuthenticators(sections.receivers, 'server', sections.extensions, serviceExtensions, top('receivers'));
  checkAuthenticators(sections.exporters, 'client', sections.extensions, serviceExtensions, top('exporters'));

  const pipelines: PipelineConfig[] = [];
  const pipelinesNode = service('pipelines');
  if (pipelinesNode.isAbsent) pipelinesNode.report('at least one pipeline is required (service::pipelines::traces)');
  for (const [id, node] of Object.entries(pipelinesNode.object())) {
    const pipeline = parsePipeline(id, node, sections);
    if (pipeline) pipelines.push(pipeline);
  }
  checkConnectors(pipelines, sections.connectors, pipelinesNode);
  checkStoragePipelines(pipelines, sections.processors, top('processors'));
  const workersNode = service('workers');
  const workers = workersNode.value === 'auto' ? os.availableParallelism() : workersNode.integer(1, 1, 256);
  // `auto` is checked as several workers whatever this machine has, so that a config valid here is valid everywhere.
  if (workers > 1 || workersNode.value === 'auto') checkSingleProcess(pipelines, sections, serviceExtensions, top, `service::workers: ${String(workersNode.value)}`);

  const telemetry = service('telemetry').struct(['metrics', 'logs']);
  const metrics = telemetry('metrics').struct(['address', 'level']);
  const level = metrics('level').oneOf('normal', ['none', 'basic', 'normal', 'detailed']);
  const logs = telemetry('logs').struct(['level']);
  const config: ServiceConfig = {
    ...sections,
    serviceExtensions,
    pipelines,
    telemetry: {
      metricsAddress: level === 'none' ? undefined : metrics('address').endpoint('127.0.0.1:8888'),
      logLevel: logs('level').oneOf('info', ['debug', 'info', 'warn', 'error']),
    },
    // Below Kubernetes' default 30 s grace period, so what is dropped is counted before a SIGKILL.
    shutdownTimeoutMs: service('shutdown_timeout').duration(25_000),
    workers,
    raw: (doc ?? {}) as Record<string, unknown>,
  };
  if (issues.errors.length > 0) throw new ConfigValidationError(issues.errors);
  return config;
}

/**
 * What a worker process runs (service::workers above 1): the pipelines and the extensions they
 * use, without the extensions that serve the whole process (`inPrimary`: admin, health_check) and
 * the self-metrics endpoint, which run once in the primary.
 */
export function workerConfig(config: ServiceConfig): ServiceConfig {
  const inPrimary = (id: string) => (config.extensions.get(id)?.factory as ExtensionFactory<unknown> | undefined)?.inPrimary === true;
  return {
    ...config,
    extensions: new Map([...config.extensions].filter(([id]) => !inPrimary(id))),
    serviceExtensions: config.serviceExtensions.filter((id) => !inPrimary(id)),
    telemetry: { ...config.telemetry, metricsAddress: undefined },
  };
}

/** The extensions the primary runs with several workers (`inPrimary`), in service::extensions order. */
export function primaryExtensions(config: ServiceConfig): ComponentConfig[] {
  return config.serviceExtensions.map((id) => config.extensions.get(id)!).filter((e) => (e.factory as ExtensionFactory<unknown>).inPrimary === true);
}

function parseComponent(kind: ComponentKind, id: string, node: Node, factories: FactorySource): ComponentConfig | undefined {
  const match = ID_PATTERN.exec(id);
  if (!match) {
    node.report(`invalid component id "${id}": expected type or type/name`);
    return undefined;
  }
  const type = match[1]!;
  const factory = factories.find(kind, type);
  if (!factory) {
    const known = factories.types(kind);
    node.report(`unknown ${kind} type "${type}" (known: ${known.join(', ') || 'none'})`);
    return undefined;
  }
  return { id, kind, factory, config: factory.parseConfig(node) };
}

function parsePipeline(id: string, node: Node, sections: Record<string, Map<string, ComponentConfig>>): PipelineConfig | undefined {
  const match = /^(traces|metrics|logs)(?:\/[^\s/]+)?$/.exec(id);
  if (!match) {
    node.report(`invalid pipeline id "${id}": expected traces[/name] or metrics[/name]`);
    return undefined;
  }
  if (match[1] === 'logs') {
    node.report('logs pipelines are not supported; spansieve handles traces and metrics');
    return undefined;
  }
  const signal = match[1] as Signal;
  const at = node.struct(['receivers', 'processors', 'exporters']);
  const refs = (key: 'receivers' | 'processors' | 'exporters', required: boolean): string[] => {
    const listNode = at(key);
    const ids: string[] = [];
    const items = listNode.list();
    if (required && items.length === 0) listNode.report(`a pipeline needs at least one ${key.slice(0, -1)}`);
    for (const item of items) {
      const ref = item.string('');
      const connectorAllowed = key !== 'processors';
      const component = sections[key]!.get(ref) ?? (connectorAllowed ? sections.connectors!.get(ref) : undefined);
      if (!component) {
        item.report(`references ${key.slice(0, -1)} "${ref}" which is not configured`);
        continue;
      }
      if (component.kind !== 'connector' && 'signals' in component.factory && !component.factory.signals.includes(signal)) {
        item.report(`${component.kind} "${ref}" does not support ${signal}`);
        continue;
      }
      const cannot = component.kind === 'exporter' ? (component.factory as ExporterFactory<unknown>).cannotExport?.(component.config, signal) : undefined;
      if (cannot !== undefined) {
        item.report(`exporter "${ref}" cannot export ${signal}: ${cannot}`);
        continue;
      }
      if (ids.includes(ref)) {
        item.report(`"${ref}" is listed twice`);
        continue;
      }
      if (key === 'processors' && (component.factory as ProcessorFactory<unknown>).firstInPipeline && items.indexOf(item) > 0) {
        // Behind another processor it would let that one spend memory and CPU on data it then refuses.
        item.report(`processor "${ref}" must be the first processor of the pipeline`);
      }
      ids.push(ref);
    }
    return ids;
  };
  return { id, signal, receivers: refs('receivers', true), processors: refs('processors', false), exporters: refs('exporters', true) };
}

/**
 * With several workers every component in use runs once per worker: one whose state must be one
 * per process (its factory's `singleProcess`) is refused, with the reason.
 */
function checkSingleProcess(
  pipelines: readonly PipelineConfig[],
  sections: Record<(typeof SECTIONS)[number][0], Map<string, ComponentConfig>>,
  serviceExtensions: readonly string[],
  top: (key: string) => Node,
  setting: string,
): void {
  const used = new Set<ComponentConfig>();
  for (const p of pipelines) {
    for (const id of p.receivers) used.add((sections.receivers.get(id) ?? sections.connectors.get(id))!);
    for (const id of p.processors) used.add(sections.processors.get(id)!);
    for (const id of p.exporters) used.add((sections.exporters.get(id) ?? sections.connectors.get(id))!);
  }
  for (const id of serviceExtensions) used.add(sections.extensions.get(id)!);
  for (const c of used) {
    const reason = c.factory.singleProcess;
    if (reason !== undefined) {
      top(sectionOf(c.kind)).child(c.id).report(`${c.factory.type} cannot run with ${setting} (one copy per worker process): ${reason}; run it with service::workers: 1`);
    }
  }
}

/** A connector must be an exporter in one pipeline and a receiver in another, on a route it supports. */
function checkConnectors(pipelines: readonly PipelineConfig[], connectors: ReadonlyMap<string, ComponentConfig>, at: Node): void {
  for (const [id, connector] of connectors) {
    const factory = connector.factory as ConnectorFactory<unknown>;
    const from = pipelines.filter((p) => p.exporters.includes(id));
    const to = pipelines.filter((p) => p.receivers.includes(id));
    if (from.length === 0 && to.length === 0) continue;
    if (from.length === 0 || to.length === 0) {
      at.report(`connector "${id}" must be used as an exporter in one pipeline and as a receiver in another`);
      continue;
    }
    for (const f of from) {
      const routes = to.filter((t) => factory.routes.some(([a, b]) => a === f.signal && b === t.signal));
      if (routes.length === 0) at.report(`connector "${id}" cannot connect ${f.signal} (pipeline ${f.id}) to ${to.map((t) => `${t.signal} (pipeline ${t.id})`).join(', ')}`);
    }
  }
  // A pipeline reaching itself through connectors would loop forever.
  const edges = new Map<string, string[]>();
  for (const p of pipelines) {
    edges.set(
      p.id,
      pipelines.filter((q) => q.receivers.some((r) => connectors.has(r) && p.exporters.includes(r))).map((q) => q.id),
    );
  }
  const visiting = new Set<string>();
  const done = new Set<string>();
  const visit = (id: string): boolean => {
    if (visiting.has(id)) return true;
    if (done.has(id)) return false;
    visiting.add(id);
    const cyclic = (edges.get(id) ?? []).some(visit);
    visiting.delete(id);
    done.add(id);
    return cyclic;
  };
  for (const p of pipelines) {
    if (visit(p.id)) {
      at.report(`pipelines form a cycle through connectors starting at "${p.id}"`);
      break;
    }
  }
}

/**
 * `sending_queue.storage` names a file_storage extension that is configured and enabled, and no
 * two exporters... share it wrongly: two file_storage extensions must not share a directory.
 */
function checkQueueStorage(
  exporters: ReadonlyMap<string, ComponentConfig>,
  extensions: ReadonlyMap<string, ComponentConfig>,
  enabled: readonly string[],
  exportersNode: Node,
): void {
  for (const [id, exporter] of exporters) {
    const storage = (exporter.config as { helper?: { queue?: { storage?: string } } } | undefined)?.helper?.queue?.storage;
    if (storage === undefined) continue;
    const node = exportersNode.child(id).child('sending_queue').child('storage');
    if (!extensions.has(storage)) node.report(`references extension "${storage}" which is not configured (add it under extensions)`);
    else if (!enabled.includes(storage)) node.report(`references extension "${storage}" which is not enabled (list it in service::extensions)`);
  }
  const directories = new Map<string, string>();
  for (const [id, extension] of extensions) {
    if (extension.factory.type !== 'file_storage' || !enabled.includes(id)) continue;
    // The same directory through a symlink is the same directory.
    const directory = realDirectory((extension.config as { directory: string }).directory);
    const other = directories.get(directory);
    if (other !== undefined) exportersNode.issues.report(`extensions::${id}::directory`, `is also the directory of ${other}; each file_storage needs its own`);
    directories.set(directory, id);
  }
}

/** A processor's `storage` (tail_sampling) names a file_storage extension that is configured and enabled. */
function checkProcessorStorage(processors: ReadonlyMap<string, ComponentConfig>, extensions: ReadonlyMap<string, ComponentConfig>, enabled: readonly string[], processorsNode: Node): void {
  for (const [id, processor] of processors) {
    const storage = (processor.config as { storage?: unknown } | undefined)?.storage;
    if (typeof storage !== 'string') continue;
    const node = processorsNode.child(id).child('storage');
    if (!extensions.has(storage)) node.report(`references extension "${storage}" which is not configured (add it under extensions)`);
    else if (!enabled.includes(storage)) node.report(`references extension "${storage}" which is not enabled (list it in service::extensions)`);
  }
}

/** A processor with `storage` owns one queue: it can run in one pipeline only (each pipeline has its own instance). */
function checkStoragePipelines(pipelines: readonly PipelineConfig[], processors: ReadonlyMap<string, ComponentConfig>, processorsNode: Node): void {
  for (const [id, processor] of processors) {
    if (typeof (processor.config as { storage?: unknown } | undefined)?.storage !== 'string') continue;
    const using = pipelines.filter((p) => p.processors.includes(id)).map((p) => p.id);
    if (using.length > 1) processorsNode.child(id).child('storage').report(`a processor with storage can be in one pipeline only; it is in ${using.join(', ')}`);
  }
}

/**
 * Every `auth: { authenticator }` names an extension that is configured, enabled, and an
 * authenticator of the kind the component needs (server for receivers, client for exporters).
 */
function checkAuthenticators(
  components: ReadonlyMap<string, ComponentConfig>,
  role: 'server' | 'client',
  extensions: ReadonlyMap<string, ComponentConfig>,
  enabled: readonly string[],
  sectionNode: Node,
): void {
  for (const [id, component] of components) {
    const refs = (component.factory as ReceiverFactory<unknown> | ExporterFactory<unknown>).authenticatorsOf?.(component.config) ?? [];
    for (const ref of refs) {
      const at = `${sectionNode.path}::${id}::${ref.key}`;
      const extension = extensions.get(ref.id);
      if (!extension) {
        sectionNode.issues.report(at, `references extension "${ref.id}" which is not configured (add it under extensions)`);
      } else if (!(extension.factory as ExtensionFactory<unknown>).authenticates?.includes(role)) {
        sectionNode.issues.report(at, `extension "${ref.id}" is not a ${role} authenticator (bearertokenauth is one)`);
      } else if (!enabled.includes(ref.id)) {
        sectionNode.issues.report(at, `references extension "${ref.id}" which is not enabled (list it in service::extensions)`);
      }
    }
  }
}

function realDirectory(directory: string): string {
  try {
    return fs.realpathSync(directory);
  } catch {
    return directory; // not there yet (create_directory)
  }
}
