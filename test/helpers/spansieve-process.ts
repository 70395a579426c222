import { spawn, type ChildProcess } from 'node:child_process';
import * as net from 'node:net';
import * as path from 'node:path';
import { encodeTraces, hostInstance, obiResourceSpans, obiSpan } from './obi';
import { waitFor } from './ports';

// spansieve as a real process (for kill -9), a load of OBI-shaped OTLP/HTTP requests that keeps
// what was acknowledged, and a TCP proxy that plays a backend outage.

const CLI = path.resolve(__dirname, '..', '..', 'src', 'cli.js');

export class SpansieveProcess {
  child: ChildProcess | undefined;
  readonly output: string[] = [];

  constructor(
    private readonly configFile: string,
    readonly httpPort: number,
  ) {}

  /** Starts and waits until OTLP/HTTP answers 200. */
  async start(): Promise<void> {
    const child = spawn(process.execPath, [CLI, '--config', this.configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    child.stdout.on('data', (c: Buffer) => this.output.push(c.toString()));
    child.stderr.on('data', (c: Buffer) => this.output.push(c.toString()));
    await waitFor(
      'spansieve to accept OTLP/HTTP',
      async () => {
        if (child.exitCode !== null) throw new Error(`spansieve exited with ${child.exitCode}: ${this.output.join('').slice(-3000)}`);
        try {
          const res = await fetch(`http://127.0.0.1:${this.httpPort}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/x-protobuf' }, body: new Uint8Array(0) });
          return res.ok;
        } catch {
          return false;
        }
      },
      30_000,
    );
  }

  async kill9(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGKILL');
    await exited;
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }
}

/**
 * Clients sending OBI-shaped requests at about `spansPerSecond`, each request one trace; keeps
 * the span ids (and the trace ids) of every request answered 200.
 */
export class OtlpLoad {
  readonly acknowledged = new Set<string>();
  readonly acknowledgedTraces = new Map<string, string[]>();
  refused = 0;
  private running = true;
  private readonly loops: Promise<void>[] = [];

  constructor(
    port: number,
    spansPerSecond: number,
    private readonly spansPerRequest = 50,
    clients = 4,
  ) {
    const intervalMs = (1000 * spansPerRequest * clients) / spansPerSecond;
    for (let c = 0; c < clients; c++) this.loops.push(this.loop(port, c, intervalMs));
  }

  private async loop(port: number, client: number, intervalMs: number): Promise<void> {
    let next = performance.now();
    while (this.running) {
      const traceId = Buffer.from(crypto.getRandomValues(new Uint8Array(16)));
      const spans = Array.from({ length: this.spansPerRequest }, () => obiSpan({ traceId }));
      const body = encodeTraces([obiResourceSpans(hostInstance('web', 1000 + client), spans)]);
      try {
        const res = await fetch(`http://127.0.0.1:${port}/v1/traces`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-protobuf' },
          body,
          signal: AbortSignal.timeout(10_000),
        });
        await res.arrayBuffer();
        if (res.status === 200) {
          const ids = spans.map((span) => Buffer.from(span.spanId).toString('hex'));
          for (const id of ids) this.acknowledged.add(id);
          this.acknowledgedTraces.set(traceId.toString('hex'), ids);
        } else this.refused++;
      } catch {
        this.refused++;
      }
      next += intervalMs;
      const wait = next - performance.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      else next = performance.now();
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }
}

/** A TCP forwarder to `target` on a fixed port; down() refuses connections and cuts open ones, up() listens again. */
export class OutageProxy {
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();
  port = 0;

  constructor(private readonly target: number) {}

  async up(): Promise<void> {
    const server = net.createServer((client) => {
      const upstream = net.connect(this.target, '127.0.0.1');
      for (const socket of [client, upstream]) {
        this.sockets.add(socket);
        socket.on('close', () => this.sockets.delete(socket));
        socket.on('error', () => {
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream);
      upstream.pipe(client);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as net.AddressInfo).port;
    this.server = server;
  }

  async down(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const socket of this.sockets) socket.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
