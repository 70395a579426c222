import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as YAML from 'yaml';
import { freePorts, waitFor } from './ports';

// A real Jaeger v2 (all-in-one, memory storage) on free loopback ports. scripts/run-tests.js
// installs it and passes its path in SPANSIEVE_JAEGER_BIN.

export interface JaegerTag {
  key: string;
  type: string;
  value: unknown;
}

export interface JaegerSpan {
  traceID: string;
  spanID: string;
  operationName: string;
  startTime: number;
  duration: number;
  tags: JaegerTag[];
  processID: string;
  references: { refType: string; traceID: string; spanID: string }[];
  logs: { timestamp: number; fields: JaegerTag[] }[];
}

export interface JaegerTrace {
  traceID: string;
  spans: JaegerSpan[];
  processes: Record<string, { serviceName: string; tags: JaegerTag[] }>;
}

export function jaegerBinary(): string {
  const bin = process.env.SPANSIEVE_JAEGER_BIN ?? path.join(os.homedir(), '.cache', 'spansieve', 'peers', 'bin', 'jaeger');
  if (!fs.existsSync(bin)) throw new Error(`Jaeger is not installed at ${bin}; run bash scripts/install-peers.sh jaeger (npm test does)`);
  return bin;
}

export interface JaegerOptions {
  /** YAML lines (unindented) put under `tls:` of both OTLP receiver protocols. */
  readonly receiverTls?: readonly string[];
  /** YAML lines (unindented) added under the OTLP receiver's `http:` (e.g. max_request_body_size). */
  readonly receiverHttp?: readonly string[];
  /** Extra exporters (YAML lines, unindented, under `exporters:`) added to the traces pipeline. */
  readonly exporters?: Readonly<Record<string, readonly string[]>>;
}

/** The parts of a Jaeger v2 config file startFromFile() rewrites. */
interface JaegerFileConfig {
  extensions: {
    jaeger_query: { http?: unknown; grpc?: unknown };
    jaeger_storage: { metric_backends?: Record<string, { prometheus?: { endpoint?: string } }> };
    healthcheckv2?: { http?: unknown };
  };
  receivers: { otlp: { protocols: unknown } };
}

function indent(lines: readonly string[], spaces: number): string {
  return lines.map((line) => `${' '.repeat(spaces)}${line}`).join('\n');
}

export class Jaeger {
  private constructor(
    private readonly child: ChildProcess,
    readonly otlpGrpcPort: number,
    readonly otlpHttpPort: number,
    readonly queryPort: number,
    private readonly dir: string,
    readonly output: string[],
  ) {}

  static async start(options: JaegerOptions = {}): Promise<Jaeger> {
    const tls = options.receiverTls ? `\n        tls:\n${indent(options.receiverTls, 10)}` : '';
    const extra = Object.entries(options.exporters ?? {});
    const httpExtra = options.receiverHttp ? `\n${indent(options.receiverHttp, 8)}` : '';
    const [grpcPort, httpPort, queryPort, queryGrpcPort, healthPort] = await freePorts(5);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spansieve-jaeger-'));
    const config = `
service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter${extra.map(([name]) => `, ${name}`).join('')}]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_query:
    # Jaeger would otherwise trace itself to the default OTLP port, where spansieve may listen.
    enable_tracing: false
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:${queryPort}
    grpc:
      endpoint: 127.0.0.1:${queryGrpcPort}
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
  healthcheckv2:
    use_v2: true
    http:
      endpoint: 127.0.0.1:${healthPort}
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:${grpcPort}${tls}
      http:
        endpoint: 127.0.0.1:${httpPort}${tls}${httpExtra}
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
${extra.map(([name, lines]) => `  ${name}:\n${indent(lines, 4)}`).join('\n')}
`;
    return Jaeger.launch(config, dir, grpcPort, httpPort, queryPort);
  }

  /**
   * Runs a Jaeger config file as written (README's config/jaeger-local.yaml), on free loopback
   * ports instead of its own, and with its Prometheus metric backends pointed at `prometheusUrl`.
   */
  static async startFromFile(file: string, options: { prometheusUrl?: string } = {}): Promise<Jaeger> {
    const doc = YAML.parse(fs.readFileSync(file, 'utf8')) as JaegerFileConfig;
    const [grpcPort, httpPort, queryPort, queryGrpcPort, healthPort] = await freePorts(5);
    const ext = doc.extensions;
    ext.jaeger_query.http = { endpoint: `127.0.0.1:${queryPort}` };
    ext.jaeger_query.grpc = { endpoint: `127.0.0.1:${queryGrpcPort}` };
    if (ext.healthcheckv2) ext.healthcheckv2.http = { endpoint: `127.0.0.1:${healthPort}` };
    doc.receivers.otlp.protocols = { grpc: { endpoint: `127.0.0.1:${grpcPort}` }, http: { endpoint: `127.0.0.1:${httpPort}` } };
    for (const backend of Object.values(ext.jaeger_storage.metric_backends ?? {})) {
      if (backend.prometheus && options.prometheusUrl) backend.prometheus.endpoint = options.prometheusUrl;
    }
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spansieve-jaeger-'));
    return Jaeger.launch(YAML.stringify(doc), dir, grpcPort, httpPort, queryPort);
  }

  private static async launch(config: string, dir: string, grpcPort: number, httpPort: number, queryPort: number): Promise<Jaeger> {
    const configFile = path.join(dir, 'jaeger.yaml');
    fs.writeFileSync(configFile, config);
    const output: string[] = [];
    const child = spawn(jaegerBinary(), ['--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.on('data', (chunk: Buffer) => output.push(chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => output.push(chunk.toString()));
    const jaeger = new Jaeger(child, grpcPort, httpPort, queryPort, dir, output);
    try {
      await waitFor(
        'Jaeger to answer on its query API',
        async () => {
          if (child.exitCode !== null) throw new Error(`jaeger exited with ${child.exitCode}: ${output.join('').slice(-2000)}`);
          const res = await fetch(`http://127.0.0.1:${queryPort}/api/services`);
          return res.ok;
        },
        60_000,
        200,
      );
    } catch (err) {
      await jaeger.stop();
      throw err;
    }
    return jaeger;
  }

  async services(): Promise<string[]> {
    const res = await fetch(`http://127.0.0.1:${this.queryPort}/api/services`);
    return ((await res.json()) as { data: string[] | null }).data ?? [];
  }

  async traces(service: string, limit = 1000): Promise<JaegerTrace[]> {
    const res = await fetch(`http://127.0.0.1:${this.queryPort}/api/traces?service=${encodeURIComponent(service)}&limit=${limit}&lookback=2h`);
    if (!res.ok) throw new Error(`jaeger /api/traces: HTTP ${res.status}: ${await res.text()}`);
    return ((await res.json()) as { data: JaegerTrace[] | null }).data ?? [];
  }

  async trace(traceIdHex: string): Promise<JaegerTrace | undefined> {
    const res = await fetch(`http://127.0.0.1:${this.queryPort}/api/traces/${traceIdHex}`);
    if (res.status === 404) return undefined;
    if (!res.ok) throw new Error(`jaeger /api/traces/${traceIdHex}: HTTP ${res.status}`);
    return ((await res.json()) as { data: JaegerTrace[] }).data[0];
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The tag value by key, from a span's tags or its process's tags. */
export function tagValue(tags: readonly JaegerTag[], key: string): unknown {
  return tags.find((tag) => tag.key === key)?.value;
}
