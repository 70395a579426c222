// CPU cost of tail_sampling's `storage` (file_storage, fsync off): the same OBI-shaped requests
// (100 spans, 50 traces, a tenth with an error) through the processor with and without storage,
// alternating, on a simulated clock (decision_wait 1 s, a tick every 100 requests). Prints one
// line per run: wall time and process CPU (the file writes' threads included) per span.
// Run: npx tsc -p tsconfig.json && node dist/bench/tail-sampling-storage.js [requests] [rounds]
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import pino from 'pino';
import type { Consumer, CreateSettings } from '../src/component/component';
import { ConfigIssues, Node } from '../src/config/reader';
import { FileStorage } from '../src/extensions/filestorage/file-storage';
import { types } from '../src/pdata/codec';
import { parseRequest } from '../src/pdata/scan';
import { parseTailSamplingConfig } from '../src/processors/tailsampling/config';
import { TailSamplingProcessor } from '../src/processors/tailsampling/tail-sampling';
import { SelfTelemetry } from '../src/service/telemetry';

const REQUESTS = Number(process.argv[2] ?? 3000);
const ROUNDS = Number(process.argv[3] ?? 3);

function request(): Buffer {
  const spans = [];
  for (let t = 0; t < 50; t++) {
    const traceId = randomBytes(16);
    for (let s = 0; s < 2; s++) {
      spans.push({
        traceId,
        spanId: randomBytes(8),
        name: 'GET /users/*',
        kind: 2,
        startTimeUnixNano: '1700000000000000000',
        endTimeUnixNano: '1700000000001500000',
        attributes: [{ key: 'http.route', value: { stringValue: '/users/*' } }, { key: 'http.response.status_code', value: { intValue: 200 } }],
        status: { code: s === 1 && t % 10 === 0 ? 2 : 0 },
      });
    }
  }
  const resource = { attributes: [{ key: 'service.name', value: { stringValue: 'web' } }, { key: 'service.instance.id', value: { stringValue: 'web-1' } }] };
  return Buffer.from(types.ExportTraceServiceRequest.encode(types.ExportTraceServiceRequest.fromObject({ resourceSpans: [{ resource, scopeSpans: [{ spans }] }] })).finish());
}

const settings = (id: string, telemetry: SelfTelemetry): CreateSettings => ({ id, logger: pino({ level: 'silent' }), telemetry });
const sink: Consumer = { consume: () => Promise.resolve() };

async function run(bodies: Buffer[], storage: boolean): Promise<{ wallMs: number; cpuMs: number }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spansieve-ts-bench-'));
  const telemetry = new SelfTelemetry();
  const extension = new FileStorage(settings('file_storage', telemetry), { directory: dir, timeoutMs: 1000, fsync: false, createDirectory: false, directoryPermissions: 0o750 });
  await extension.start();
  const issues = new ConfigIssues();
  const config = parseTailSamplingConfig(
    new Node({ decision_wait: '1s', ...(storage ? { storage: 'file_storage' } : {}), policies: [{ name: 'errors', type: 'status_code', status_code: { status_codes: ['ERROR'] } }] }, 'tail_sampling', issues),
  );
  if (issues.errors.length > 0) throw new Error(issues.errors.join('\n'));
  let now = 1_000_000;
  const processor = new TailSamplingProcessor(settings('tail_sampling', telemetry), config, sink, { clock: () => now, timer: false });
  await processor.start({ reportStatus: () => {}, extensions: new Map([['file_storage', extension]]) });
  const cpu = process.cpuUsage();
  const started = performance.now();
  const inFlight: Promise<void>[] = [];
  for (let i = 0; i < REQUESTS; i++) {
    // 16 requests in flight, as concurrent clients would have.
    inFlight.push(processor.consume(parseRequest('traces', bodies[i % bodies.length]!).batch));
    if (inFlight.length >= 16) await Promise.all(inFlight.splice(0));
    if (i % 100 === 99) {
      now += 1000;
      processor.tick();
    }
  }
  await Promise.all(inFlight);
  now += 2000;
  processor.tick();
  await processor.shutdown();
  await extension.shutdown();
  const used = process.cpuUsage(cpu);
  const wallMs = performance.now() - started;
  fs.rmSync(dir, { recursive: true, force: true });
  return { wallMs, cpuMs: (used.user + used.system) / 1000 };
}

async function main(): Promise<void> {
  const bodies = Array.from({ length: 200 }, request);
  for (let round = 0; round < ROUNDS; round++) {
    for (const storage of [false, true]) {
      const { wallMs, cpuMs } = await run(bodies, storage);
      const perSpan = (cpuMs * 1000) / (REQUESTS * 100);
      console.log(JSON.stringify({ round, storage, requests: REQUESTS, spans: REQUESTS * 100, wallMs: Math.round(wallMs), cpuMs: Math.round(cpuMs), cpuMicrosPerSpan: Number(perSpan.toFixed(2)), loadavg: os.loadavg()[0] }));
    }
  }
}

void main();
