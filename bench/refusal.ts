import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildPool, DEFAULT_POOL, keptInstanceIds } from './obi';
import { cpuSeconds, installCleanup } from './proc';
import { round } from './report';
import { startServer, type SystemName } from './systems';

// `npm run bench:refusal`: the CPU a server spends on each request it refuses because its sending
// queue is full. The exporter sends to a TCP port that accepts and never answers, so its calls
// hang and the default queue (1000 batches) fills; then every OTLP/HTTP request is refused with
// 503. spansieve refuses before reading the body (Consumer.wouldRefuse); a server that parses
// first pays for the whole request. Prints one JSON line per system and writes
// bench/results/refusal.json.

const ROOT = path.resolve(__dirname, '..', '..');
const RESULTS = path.join(ROOT, 'bench', 'results', 'refusal.json');
const FILL_REQUESTS = 1500;
const MEASURED_REQUESTS = 3000;
const CONCURRENCY = 8;

async function sendAll(address: string, bodies: readonly Buffer[], count: number): Promise<Map<number, number>> {
  const [host, port] = address.split(':') as [string, string];
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  const statuses = new Map<number, number>();
  let next = 0;
  const post = (body: Buffer) =>
    new Promise<number>((resolve, reject) => {
      const req = http.request(
        { host, port: Number(port), method: 'POST', path: '/v1/traces', agent, headers: { 'content-type': 'application/x-protobuf', 'content-length': body.length } },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  const worker = async () => {
    while (next < count) {
      const status = await post(bodies[next++ % bodies.length]!);
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
    }
  };
  try {
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  } finally {
    agent.destroy();
  }
  return statuses;
}

async function main(): Promise<void> {
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'spansieve-refusal-'));
  installCleanup(() => fs.rmSync(workDir, { recursive: true, force: true }));
  const hole = net.createServer(() => {});
  await new Promise<void>((resolve) => hole.listen(0, '127.0.0.1', resolve));
  const holePort = (hole.address() as net.AddressInfo).port;
  const pool = buildPool(DEFAULT_POOL);
  const bodies = pool.requests.map((request) => request.body);
  const results = [];
  try {
    for (const system of ['spansieve', 'collector'] as SystemName[]) {
      const server = await startServer({ system, keepIds: keptInstanceIds(DEFAULT_POOL), sinkGrpcPort: holePort, workDir, label: `refusal-${system}` });
      try {
        const filling = await sendAll(server.httpAddress, bodies, FILL_REQUESTS);
        if (!filling.has(503)) throw new Error(`${system}: the sending queue did not fill (${JSON.stringify([...filling])})`);
        const before = cpuSeconds(server.pid);
        const statuses = await sendAll(server.httpAddress, bodies, MEASURED_REQUESTS);
        const cpu = cpuSeconds(server.pid) - before;
        const refused = statuses.get(503) ?? 0;
        const result = {
          type: 'refusal',
          system,
          transport: 'http-protobuf',
          bytes_per_request: Math.round(bodies.reduce((sum, body) => sum + body.length, 0) / bodies.length),
          requests: MEASURED_REQUESTS,
          refused,
          other_statuses: Object.fromEntries([...statuses].filter(([status]) => status !== 503)),
          cpu_seconds: round(cpu, 3),
          cpu_ms_per_refused_request: refused > 0 ? round((cpu * 1000) / refused, 3) : null,
        };
        results.push(result);
        process.stdout.write(`${JSON.stringify(result)}\n`);
      } finally {
        await server.stop();
      }
    }
  } finally {
    hole.close();
  }
  fs.mkdirSync(path.dirname(RESULTS), { recursive: true });
  fs.writeFileSync(RESULTS, `${JSON.stringify({ command: 'npm run bench:refusal', date: new Date().toISOString(), results }, null, 2)}\n`);
  process.stdout.write(`written to ${path.relative(process.cwd(), RESULTS)}\n`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
