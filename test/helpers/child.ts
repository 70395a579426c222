import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as YAML from 'yaml';
import { waitFor } from './ports';

/** spansieve's CLI run as its own process, on a config written to a temporary file. */
export class SpansieveProcess {
  readonly output: string[] = [];
  readonly exited: Promise<{ code: number | null; at: number }>;

  private constructor(
    readonly child: ChildProcess,
    private readonly dir: string,
  ) {
    child.stdout!.on('data', (c: Buffer) => this.output.push(c.toString()));
    child.stderr!.on('data', (c: Buffer) => this.output.push(c.toString()));
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve({ code, at: performance.now() })));
  }

  /** `fdLimit` sets the child's RLIMIT_NOFILE, soft and hard: Node raises the soft limit to the hard one at start-up. */
  static start(config: Record<string, unknown>, options: { fdLimit?: number } = {}): SpansieveProcess {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spansieve-child-'));
    const file = path.join(dir, 'config.yaml');
    fs.writeFileSync(file, YAML.stringify(config));
    const cli = path.resolve(__dirname, '..', '..', 'src', 'cli.js');
    const child =
      options.fdLimit === undefined
        ? spawn(process.execPath, [cli, '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] })
        : spawn('bash', ['-c', `ulimit -n ${options.fdLimit} && exec "$0" "$@"`, process.execPath, cli, '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    return new SpansieveProcess(child, dir);
  }

  async ready(healthPort: number): Promise<void> {
    await waitFor(`spansieve ready (health_check on ${healthPort})`, async () => {
      if (this.child.exitCode !== null) throw new Error(`spansieve exited: ${this.output.join('')}`);
      return (await fetch(`http://127.0.0.1:${healthPort}/`)).status === 200;
    });
  }

  /** Sends the signal; resolves with the exit code and the seconds it took. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<{ code: number | null; seconds: number }> {
    const sent = performance.now();
    this.child.kill(signal);
    const { code, at } = await this.exited;
    return { code, seconds: (at - sent) / 1000 };
  }

  /** Kills what is left and removes the config file. */
  async dispose(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGKILL');
      await this.exited;
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  get log(): string {
    return this.output.join('');
  }
}

/** A TCP connection that is open (connected) and sends nothing. */
export function idleConnection(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => resolve(socket));
    socket.once('error', reject);
  });
}

/**
 * Opens `n` idle connections, a batch at a time; errors after connecting are ignored. A connection
 * reset before it was established (a server at its fd limit may refuse it that early) is left out.
 */
export async function idleConnections(port: number, n: number): Promise<net.Socket[]> {
  const sockets: net.Socket[] = [];
  for (let i = 0; i < n; i += 100) {
    const batch = await Promise.all(Array.from({ length: Math.min(100, n - i) }, () => idleConnection(port).catch(() => undefined)));
    for (const s of batch) {
      if (s === undefined) continue;
      s.on('error', () => undefined);
      sockets.push(s);
    }
  }
  return sockets;
}

/** An OTLP/HTTP upload that sends its headers and `sent` of `declared` body bytes, then stalls. */
export function stalledHttpUpload(port: number, declared = 1000, sent = 3): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => {
      socket.write(
        `POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-protobuf\r\nContent-Length: ${declared}\r\n\r\n` + 'x'.repeat(sent),
        () => resolve(socket),
      );
    });
    socket.on('error', () => undefined);
    socket.once('error', reject);
  });
}

/** A gRPC Export call that sends a prefix declaring `declared` bytes and `sent` of them, then stalls. */
export async function stalledGrpcCall(port: number, declared = 1000, sent = 3, headers: http2.OutgoingHttpHeaders = {}): Promise<{ session: http2.ClientHttp2Session; stream: http2.ClientHttp2Stream }> {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    session.once('connect', () => resolve());
    session.once('error', reject);
  });
  const stream = session.request({
    ':method': 'POST',
    ':path': '/opentelemetry.proto.collector.trace.v1.TraceService/Export',
    'content-type': 'application/grpc',
    te: 'trailers',
    ...headers,
  });
  stream.on('error', () => undefined);
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(declared, 1);
  stream.write(Buffer.concat([prefix, Buffer.alloc(sent)]));
  return { session, stream };
}
