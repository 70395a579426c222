import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as YAML from 'yaml';
import { waitFor } from './ports';

// The reference Collector (a Collector builder build, v0.160.0) or the Jaeger v2 binary run as a
// process on a config written to a temporary directory, for conformance tests that send the same
// data to it and to spansieve and compare what both export to a capture server (helpers/sink.ts).

const PEERS = path.join(os.homedir(), '.cache', 'spansieve', 'peers', 'bin');

/** The reference Collector build (scripts/install-peers.sh otelcol). */
export const OTELCOL_BIN = process.env.SPANSIEVE_OTELCOL_BIN ?? path.join(PEERS, 'otelcol');

/** A test's `skip` when the reference Collector is missing, else false. */
export const OTELCOL_SKIP: string | false = fs.existsSync(OTELCOL_BIN) ? false : `the reference Collector is not installed at ${OTELCOL_BIN} (bash scripts/install-peers.sh otelcol)`;

/** A binary with a filter processor for OTTL conformance. */
export interface OttlReference {
  readonly bin: string;
  readonly version: 'v0.160.0' | 'v0.140.1';
  /** The OTLP gRPC exporter's type name in that version. */
  readonly otlpExporter: 'otlp_grpc' | 'otlp';
}

/**
 * The reference Collector (v0.160.0), else the Jaeger binary (its v0.140.1 filter processor);
 * SPANSIEVE_OTTL_REFERENCE=jaeger forces Jaeger. Undefined when neither is installed.
 */
export function ottlReference(): OttlReference | undefined {
  const jaeger = process.env.SPANSIEVE_JAEGER_BIN ?? path.join(PEERS, 'jaeger');
  if (process.env.SPANSIEVE_OTTL_REFERENCE !== 'jaeger' && fs.existsSync(OTELCOL_BIN)) return { bin: OTELCOL_BIN, version: 'v0.160.0', otlpExporter: 'otlp_grpc' };
  if (fs.existsSync(jaeger)) return { bin: jaeger, version: 'v0.140.1', otlpExporter: 'otlp' };
  return undefined;
}

export const OTTL_SKIP_REASON = 'neither the reference Collector nor Jaeger is installed (scripts/install-peers.sh)';

export interface ReferenceOptions {
  /** The binary; the reference Collector by default. */
  readonly bin?: string;
  /**
   * OTLP/HTTP receiver ports: ready once each answers a POST (any status; the Collector opens its
   * receivers after its pipelines). Without them: ready when the log says "Everything is ready"
   * (telemetry logs at level info).
   */
  readonly httpPorts?: readonly number[];
  readonly timeoutMs?: number;
}

/** A running reference Collector; `stop` ends it (SIGTERM, then SIGKILL) and removes its directory. */
export class ReferenceCollector {
  readonly output: string[] = [];
  private readonly exited: Promise<void>;

  private constructor(
    readonly child: ChildProcess,
    readonly dir: string,
  ) {
    child.stdout!.on('data', (c: Buffer) => this.output.push(c.toString()));
    child.stderr!.on('data', (c: Buffer) => this.output.push(c.toString()));
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
  }

  /** Writes `config` (an object as YAML, or YAML text) and starts the binary on it; resolves when it is ready. */
  static async start(config: Record<string, unknown> | string, options: ReferenceOptions = {}): Promise<ReferenceCollector> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spansieve-reference-'));
    const file = path.join(dir, 'config.yaml');
    fs.writeFileSync(file, typeof config === 'string' ? config : YAML.stringify(config));
    const child = spawn(options.bin ?? OTELCOL_BIN, ['--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    const collector = new ReferenceCollector(child, dir);
    try {
      await collector.ready(options.httpPorts, options.timeoutMs ?? 30_000);
    } catch (err) {
      await collector.stop();
      throw err;
    }
    return collector;
  }

  get log(): string {
    return this.output.join('');
  }

  private async ready(httpPorts: readonly number[] | undefined, timeoutMs: number): Promise<void> {
    let exited = false;
    void this.exited.then(() => (exited = true));
    const check = async (): Promise<boolean> => {
      if (exited) return true;
      if (httpPorts === undefined) return this.log.includes('Everything is ready');
      for (const port of httpPorts) {
        try {
          const res = await fetch(`http://127.0.0.1:${port}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
          await res.arrayBuffer();
        } catch {
          return false;
        }
      }
      return true;
    };
    await waitFor(`the reference Collector (${path.basename(String(this.child.spawnfile))}) ready`, check, timeoutMs, 100);
    if (exited) throw new Error(`the reference Collector exited (${String(this.child.exitCode ?? this.child.signalCode)}): ${this.log.slice(-4000)}`);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
      await this.exited;
      clearTimeout(timer);
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/** `<bin> validate` on `config`: what it printed (its exit status is not needed: the output names each refused component). */
export async function validateWithReference(config: Record<string, unknown> | string, bin = OTELCOL_BIN): Promise<string> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spansieve-reference-validate-'));
  try {
    const file = path.join(dir, 'config.yaml');
    fs.writeFileSync(file, typeof config === 'string' ? config : YAML.stringify(config));
    const out: string[] = [];
    const proc = spawn(bin, ['validate', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    proc.stdout.on('data', (d: Buffer) => out.push(d.toString()));
    proc.stderr.on('data', (d: Buffer) => out.push(d.toString()));
    await new Promise((resolve) => proc.once('exit', resolve));
    return out.join('');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
