import type { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { stringify } from 'yaml';
import { SPANSIEVE_NODE_FLAGS } from '../src/service/node-flags';
import { freePorts, spawnPinned, stopChild, waitForPort } from './proc';

// The servers under test, each started fresh per measurement and pinned to core 0:
//   spansieve          node dist/src/cli.js: otlp receiver -> filter (keep list) -> otlp exporter -> sink
//   spansieve-storage  the same with the exporter's sending queue on disk (file_storage, fsync off)
//   collector          the Jaeger v2 binary (a Collector distribution with contrib's filter processor):
//                      otlp receiver -> filter (OTTL keep-only) -> otlp exporter -> sink
//   collector-storage  the reference Collector (scripts/install-peers.sh otelcol: Jaeger's build has
//                      no file_storage), the same pipeline with sending_queue.storage: file_storage
//   collector-ref      the reference Collector with its queue in memory (not in the default list):
//                      collector-storage's own baseline, same build
//   spansieve-workers  spansieve with service::workers = the cores it is pinned to (--cores): the
//                      multi-core mode, N cluster workers sharing the listeners (not in the default list)
//   spansieve-node-h2  spansieve with its gRPC port on node:http2 (protocols::grpc::http2: node) instead
//                      of its own HTTP/2 layer (the default): the A/B of that layer (not in the default list)
//   floor              bench/floor.ts: reads each request and answers an empty success; no sink leg
//   floor-raw          the same with gRPC on spansieve's own HTTP/2 layer (src/util/h2), not node:http2
//                      (not in the default list)
// With a TLS transport every system serves TLS on both receiver ports (ServerOptions.tls); the
// forward to the sink stays plaintext.

export type SystemName = 'spansieve' | 'spansieve-storage' | 'spansieve-workers' | 'spansieve-node-h2' | 'collector' | 'collector-storage' | 'collector-ref' | 'floor' | 'floor-raw';
export const SYSTEMS: readonly SystemName[] = ['spansieve', 'spansieve-storage', 'spansieve-workers', 'spansieve-node-h2', 'collector', 'collector-storage', 'collector-ref', 'floor', 'floor-raw'];
/** What runs without --systems. */
export const DEFAULT_SYSTEMS: readonly SystemName[] = ['spansieve', 'spansieve-storage', 'collector', 'collector-storage', 'floor'];
/** The persistent-queue comparison (--storage). */
export const STORAGE_SYSTEMS: readonly SystemName[] = ['spansieve', 'spansieve-storage', 'collector-storage'];

/** The floors answer themselves: nothing reaches the sink. */
export const isFloor = (system: SystemName): boolean => system === 'floor' || system === 'floor-raw';

/** Whether the system keeps its sending queue on disk. */
export const persistent = (system: SystemName): boolean => system === 'spansieve-storage' || system === 'collector-storage';
/** Whether the system is a Go Collector (configured by collectorConfig). */
export const isCollector = (system: SystemName): boolean => system === 'collector' || system === 'collector-storage' || system === 'collector-ref';
/** Whether the system runs the reference Collector build (otelcolBinary). */
export const isReferenceBuild = (system: SystemName): boolean => system === 'collector-storage' || system === 'collector-ref';

export const SERVER_CPU = 0;
export const LOADGEN_CPU = 1;

const ROOT = path.resolve(__dirname, '..', '..');

export function jaegerBinary(): string {
  const bin = process.env.SPANSIEVE_JAEGER_BIN ?? path.join(os.homedir(), '.cache', 'spansieve', 'peers', 'bin', 'jaeger');
  if (!fs.existsSync(bin)) throw new Error(`Jaeger is not installed at ${bin}; run: bash scripts/install-peers.sh jaeger`);
  return bin;
}

export function otelcolBinary(): string {
  const bin = process.env.SPANSIEVE_OTELCOL_BIN ?? path.join(os.homedir(), '.cache', 'spansieve', 'peers', 'bin', 'otelcol');
  if (!fs.existsSync(bin)) throw new Error(`the reference Collector is not installed at ${bin}; run: bash scripts/install-peers.sh otelcol`);
  return bin;
}

export interface ServerOptions {
  readonly system: SystemName;
  readonly keepIds: readonly string[];
  readonly sinkGrpcPort: number;
  readonly workDir: string;
  /** Extra node flags for spansieve (e.g. --cpu-prof). */
  readonly nodeFlags?: readonly string[];
  readonly label: string;
  /**
   * false: the exporter's sending_queue is disabled, so the receiver answers only once the batch
   * was forwarded (used for the closed-loop max, on both systems). Default: the component defaults.
   */
  readonly sendingQueue?: boolean;
  /** Serve TLS on both receiver ports with this certificate (the TLS transports); plaintext when absent. */
  readonly tls?: ServerTls;
  /** The CPUs the server is pinned to (--cores); default [SERVER_CPU]. */
  readonly cpus?: readonly number[];
}

/** PEM files of the server's certificate and key. */
export interface ServerTls {
  readonly certFile: string;
  readonly keyFile: string;
}

export interface RunningServer {
  readonly system: SystemName;
  readonly pid: number;
  readonly grpcAddress: string;
  readonly httpAddress: string;
  readonly configFile: string | undefined;
  readonly logFile: string;
  stop(): Promise<void>;
}

/**
 * The otlp receiver of both systems: the same keys in spansieve and the Collector, `tls` per
 * protocol (configtls' cert_file / key_file) when serving TLS.
 */
function otlpReceiver(
  grpcPort: number,
  httpPort: number,
  tls: ServerTls | undefined,
  grpcExtra: Record<string, unknown> = {},
  httpExtra: Record<string, unknown> = {},
): Record<string, unknown> {
  const serverTls = tls ? { tls: { cert_file: tls.certFile, key_file: tls.keyFile } } : {};
  return {
    protocols: {
      grpc: { endpoint: `127.0.0.1:${grpcPort}`, ...serverTls, ...grpcExtra },
      http: { endpoint: `127.0.0.1:${httpPort}`, ...serverTls, ...httpExtra },
    },
  };
}

/** The exporter both systems use: OTLP/gRPC to the sink, plaintext, uncompressed. */
function sinkExporter(sinkGrpcPort: number, sendingQueue: boolean): Record<string, unknown> {
  return {
    endpoint: `127.0.0.1:${sinkGrpcPort}`,
    compression: 'none',
    tls: { insecure: true },
    ...(sendingQueue ? {} : { sending_queue: { enabled: false } }),
  };
}

export function spansieveConfig(
  grpcPort: number,
  httpPort: number,
  sinkGrpcPort: number,
  keepIds: readonly string[],
  sendingQueue = true,
  storageDirectory?: string,
  tls?: ServerTls,
  workers = 1,
  /** protocols::grpc::http2; undefined: the default. */
  grpcHttp2?: 'spansieve' | 'node',
): Record<string, unknown> {
  const exporter = sinkExporter(sinkGrpcPort, sendingQueue);
  if (storageDirectory !== undefined && sendingQueue) exporter.sending_queue = { storage: 'file_storage' };
  // SPANSIEVE_BENCH_HTTP2=node|spansieve: the otlp exporter's HTTP/2 client, for A/B runs (default: the exporter's default).
  const http2 = process.env.SPANSIEVE_BENCH_HTTP2;
  if (http2) exporter.http2 = http2;
  // SPANSIEVE_BENCH_HTTP1=node|spansieve: the OTLP/HTTP port's HTTP/1.1 server, for A/B runs (default: the receiver's default).
  const http1 = process.env.SPANSIEVE_BENCH_HTTP1;
  return {
    receivers: { otlp: otlpReceiver(grpcPort, httpPort, tls, grpcHttp2 ? { http2: grpcHttp2 } : {}, http1 ? { http1 } : {}) },
    processors: {
      'filter/keep': { keep: keepIds.map((id) => ({ 'service.instance.id': id })) },
    },
    exporters: {
      'otlp/sink': exporter,
    },
    ...(storageDirectory !== undefined ? { extensions: { file_storage: { directory: storageDirectory, create_directory: true } } } : {}),
    service: {
      ...(storageDirectory !== undefined ? { extensions: ['file_storage'] } : {}),
      pipelines: { traces: { receivers: ['otlp'], processors: ['filter/keep'], exporters: ['otlp/sink'] } },
      // With workers, info: the harness waits for the primary's "ready" line (every worker listening).
      telemetry: { metrics: { level: 'none' }, logs: { level: workers > 1 ? 'info' : 'warn' } },
      ...(workers > 1 ? { workers } : {}),
    },
  };
}

/** The OTTL keep-only condition for contrib's filter processor. */
export function ottlKeepOnly(keepIds: readonly string[]): string {
  return `not ContainsValue([${keepIds.map((id) => JSON.stringify(id)).join(', ')}], resource.attributes["service.instance.id"])`;
}

export function collectorConfig(
  grpcPort: number,
  httpPort: number,
  sinkGrpcPort: number,
  keepIds: readonly string[],
  sendingQueue = true,
  storageDirectory?: string,
  tls?: ServerTls,
): Record<string, unknown> {
  const exporter = sinkExporter(sinkGrpcPort, sendingQueue);
  if (storageDirectory !== undefined && sendingQueue) exporter.sending_queue = { storage: 'file_storage' };
  return {
    receivers: { otlp: otlpReceiver(grpcPort, httpPort, tls) },
    processors: {
      // traces.resource (filterprocessor v0.140 config.go: TraceFilters.ResourceConditions): the
      // condition is evaluated once per ResourceSpans, the cheapest form for a per-process choice.
      'filter/keep': { error_mode: 'ignore', traces: { resource: [ottlKeepOnly(keepIds)] } },
    },
    exporters: {
      'otlp/sink': exporter,
    },
    ...(storageDirectory !== undefined ? { extensions: { file_storage: { directory: storageDirectory, create_directory: true } } } : {}),
    service: {
      ...(storageDirectory !== undefined ? { extensions: ['file_storage'] } : {}),
      pipelines: { traces: { receivers: ['otlp'], processors: ['filter/keep'], exporters: ['otlp/sink'] } },
      telemetry: { metrics: { level: 'none' }, logs: { level: 'warn' } },
    },
  };
}

export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const [grpcPort, httpPort] = (await freePorts(2)) as [number, number];
  const logFile = path.join(options.workDir, `${options.label}.log`);
  const log = fs.openSync(logFile, 'w');
  const cpus = options.cpus ?? [SERVER_CPU];
  let child: ChildProcess;
  let configFile: string | undefined;
  switch (options.system) {
    case 'spansieve':
    case 'spansieve-storage':
    case 'spansieve-workers':
    case 'spansieve-node-h2': {
      configFile = path.join(options.workDir, `${options.label}.yaml`);
      // The multi-core mode: one worker per core it is pinned to.
      const workers = options.system === 'spansieve-workers' ? cpus.length : 1;
      fs.writeFileSync(configFile, stringify(
          spansieveConfig(grpcPort, httpPort, options.sinkGrpcPort, options.keepIds, options.sendingQueue ?? true, storageDirectory(options), options.tls, workers,
            options.system === 'spansieve-node-h2' ? 'node' : undefined),
        ));
      child = spawnPinned(cpus, process.execPath, [...SPANSIEVE_NODE_FLAGS, ...(options.nodeFlags ?? []), path.join(ROOT, 'dist', 'src', 'cli.js'), '--config', configFile], {
        stdio: ['ignore', log, log],
        cwd: options.workDir,
      });
      break;
    }
    case 'collector':
    case 'collector-storage':
    case 'collector-ref': {
      configFile = path.join(options.workDir, `${options.label}.yaml`);
      fs.writeFileSync(configFile, stringify(
        collectorConfig(grpcPort, httpPort, options.sinkGrpcPort, options.keepIds, options.sendingQueue ?? true, storageDirectory(options), options.tls),
        { lineWidth: 0 },
      ));
      const bin = options.system === 'collector' ? jaegerBinary() : otelcolBinary();
      child = spawnPinned(cpus, bin, ['--config', configFile], { stdio: ['ignore', log, log], cwd: options.workDir });
      break;
    }
    case 'floor':
    case 'floor-raw':
      child = spawnPinned(cpus, process.execPath, [
        path.join(ROOT, 'dist', 'bench', 'floor.js'), ...(options.system === 'floor-raw' ? ['--raw'] : []), `127.0.0.1:${grpcPort}`, `127.0.0.1:${httpPort}`,
        ...(options.tls ? [options.tls.certFile, options.tls.keyFile] : []),
      ], {
        stdio: ['ignore', log, log],
      });
      break;
  }
  fs.closeSync(log);
  const alive = () => {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${options.system} exited (${child.exitCode ?? child.signalCode}); log ${logFile}:\n${tail(logFile)}`);
    }
  };
  const server: RunningServer = {
    system: options.system,
    pid: child.pid!,
    grpcAddress: `127.0.0.1:${grpcPort}`,
    httpAddress: `127.0.0.1:${httpPort}`,
    configFile,
    logFile,
    stop: () => stopChild(child, 10_000),
  };
  try {
    await waitForPort(grpcPort, 60_000, alive);
    await waitForPort(httpPort, 60_000, alive);
    // The port answers once the first worker listens; the cluster hands connections only to
    // workers that listen, so a load started then would all go to that one.
    if (options.system === 'spansieve-workers' && cpus.length > 1) await waitForLog(logFile, /spansieve is ready/, 60_000, alive);
  } catch (err) {
    await server.stop();
    throw err;
  }
  return server;
}

async function waitForLog(file: string, pattern: RegExp, timeoutMs: number, alive: () => void): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pattern.test(tail(file, 1_000_000))) {
    alive();
    if (Date.now() > deadline) throw new Error(`no ${String(pattern)} in ${file} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** file_storage's directory for a persistent system: fresh per measurement, inside the run's temporary directory. */
function storageDirectory(options: ServerOptions): string | undefined {
  return persistent(options.system) ? path.join(options.workDir, `${options.label}-queue`) : undefined;
}

export function tail(file: string, bytes = 3000): string {
  try {
    const text = fs.readFileSync(file, 'utf8');
    return text.slice(-bytes);
  } catch {
    return '';
  }
}
