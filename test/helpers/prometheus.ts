import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { freePort, waitFor } from './ports';

// A real Prometheus (Debian's package, 2.42) on a free loopback port with a temporary TSDB.
// scripts/run-tests.js installs it (install-peers.sh prometheus) and passes its path in
// SPANSIEVE_PROMETHEUS_BIN.

export interface PromSample {
  metric: Record<string, string>;
  value: [number, string];
}

export interface ScrapeTarget {
  readonly job: string;
  readonly target: string;
}

export function prometheusBinary(): string {
  const configured = process.env.SPANSIEVE_PROMETHEUS_BIN;
  if (configured) {
    if (!fs.existsSync(configured)) throw new Error(`Prometheus is not installed at ${configured}; run bash scripts/install-peers.sh prometheus`);
    return configured;
  }
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const full = path.join(dir, 'prometheus');
    if (dir && fs.existsSync(full)) return full;
  }
  throw new Error('prometheus is not on PATH; run bash scripts/install-peers.sh prometheus (npm test does)');
}

export class Prometheus {
  private constructor(
    private readonly child: ChildProcess,
    readonly port: number,
    private readonly dir: string,
    readonly output: string[],
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Scrapes `targets` every second (honor_labels: true keeps spansieve's job and instance labels). */
  static async start(options: { targets?: readonly ScrapeTarget[]; remoteWriteReceiver?: boolean }): Promise<Prometheus> {
    const port = await freePort();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spansieve-prometheus-'));
    const scrapeConfigs = (options.targets ?? []).map(
      (t) => `  - job_name: ${t.job}\n    honor_labels: true\n    scrape_interval: 1s\n    scrape_timeout: 1s\n    static_configs:\n      - targets: ['${t.target}']`,
    );
    const config = [
      'global:',
      '  scrape_interval: 1s',
      '  evaluation_interval: 1s',
      ...(scrapeConfigs.length > 0 ? ['scrape_configs:', ...scrapeConfigs] : []),
    ].join('\n');
    const configFile = path.join(dir, 'prometheus.yml');
    fs.writeFileSync(configFile, `${config}\n`);
    const args = [
      `--config.file=${configFile}`,
      `--storage.tsdb.path=${path.join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
      ...(options.remoteWriteReceiver ? ['--web.enable-remote-write-receiver'] : []),
    ];
    const output: string[] = [];
    const child = spawn(prometheusBinary(), args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.on('data', (chunk: Buffer) => output.push(chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => output.push(chunk.toString()));
    const prometheus = new Prometheus(child, port, dir, output);
    try {
      await waitFor(
        'Prometheus to be ready',
        async () => {
          if (child.exitCode !== null) throw new Error(`prometheus exited with ${child.exitCode}: ${output.join('').slice(-2000)}`);
          const res = await fetch(`${prometheus.url}/-/ready`);
          return res.ok;
        },
        90_000,
        250,
      );
    } catch (err) {
      await prometheus.stop();
      throw err;
    }
    return prometheus;
  }

  /** An instant PromQL query; throws on an API error. */
  async query(promql: string): Promise<PromSample[]> {
    const res = await fetch(`${this.url}/api/v1/query?query=${encodeURIComponent(promql)}`);
    const body = (await res.json()) as { status: string; error?: string; data?: { resultType: string; result: PromSample[] } };
    if (body.status !== 'success') throw new Error(`PromQL ${promql}: ${body.error ?? res.status}`);
    return body.data?.result ?? [];
  }

  /** The query's values keyed by the given labels joined with '|'. */
  async valuesBy(promql: string, ...labels: string[]): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    for (const sample of await this.query(promql)) out.set(labels.map((l) => sample.metric[l] ?? '').join('|'), Number(sample.value[1]));
    return out;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
