import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { EXPORT_METHOD } from '../../../src/pdata/otlp';
import { SPANSIEVE_NODE_FLAGS } from '../../../src/service/node-flags';
import { hostInstance, obiTraceRequest } from '../../helpers/obi';
import { freePorts, waitFor } from '../../helpers/ports';
import { GrpcSink } from '../../helpers/sink';

// The issue's end-to-end case: memory_limiter { limit_mib: 200 } first in the pipeline, an otlp
// exporter whose backend accepts connections and never answers, a sending queue far larger than
// memory, and 2 MB requests from several clients for 30 s. The server (a child process, so its own
// peak RSS can be read) must stay under the limit plus the documented margin, keep answering with
// retryable codes, and accept again once the backend answers.

const ROOT = path.resolve(__dirname, '..', '..', '..', '..');
const CLI = path.join(ROOT, 'dist', 'src', 'cli.js');
const LIMIT_MIB = 200;
/** docs/memory-limiter-processor.md, "What is measured": RSS beyond the measured memory. */
const MARGIN_MIB = 100;
const OVERLOAD_MS = 30_000;
const HTTP_CLIENTS = 6;
const GRPC_CLIENTS = 2;
/** Clients pause this long after a refusal (less than the 1 s Retry-After, to press harder). */
const PAUSE_AFTER_REFUSAL_MS = 100;
/** A client gives up on an answer after this long (counted as a failure, not a refusal). */
const REQUEST_TIMEOUT_MS = 15_000;

/** A gRPC backend that takes calls and answers none until it recovers; it keeps no request bodies. */
class StalledBackend extends GrpcSink {
  stalled = true;
  answered = 0;

  constructor() {
    super();
    this.reply = () => {
      this.requests.length = 0;
      if (this.stalled) return { kind: 'hang' };
      this.answered++;
      return { kind: 'ok' };
    };
  }

  recover(): void {
    this.stalled = false;
  }
}

interface Tally {
  offeredBytes: number;
  accepted: number;
  acceptedAfterRecovery: number;
  refused: Map<string, number>;
  other: string[];
}

function status(pid: number, field: string): number {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match ? Number(match[1]) / 1024 : NaN;
}

function limiterConfig(ports: { grpc: number; http: number; metrics: number; backend: number }): string {
  return `
receivers:
  otlp:
    protocols:
      grpc: { endpoint: 127.0.0.1:${ports.grpc} }
      http: { endpoint: 127.0.0.1:${ports.http} }
processors:
  memory_limiter:
    check_interval: 100ms
    limit_mib: ${LIMIT_MIB}
    min_gc_interval_when_soft_limited: 1s
    max_gc_interval_when_soft_limited: 2s
    max_gc_interval_when_hard_limited: 1s
exporters:
  otlp/stalled:
    endpoint: 127.0.0.1:${ports.backend}
    tls: { insecure: true }
    compression: none
    timeout: 10s
    retry_on_failure: { initial_interval: 200ms, max_interval: 1s, max_elapsed_time: 0 }
    sending_queue: { queue_size: 100000 }
service:
  shutdown_timeout: 5s
  telemetry:
    metrics: { address: 127.0.0.1:${ports.metrics} }
    logs: { level: info }
  pipelines:
    traces:
      receivers: [otlp]
      processors: [memory_limiter]
      exporters: [otlp/stalled]
`;
}

void describe('memory_limiter under a 10x overload with a stalled backend', () => {
  const backend = new StalledBackend();
  let child: ChildProcess | undefined;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spansieve-memlimit-'));

  after(async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await new Promise((resolve) => child!.once('exit', resolve));
    }
    await backend.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  void test('peak RSS stays under the limit plus the margin, refusals are retryable, throughput recovers', { timeout: 90_000 }, async () => {
    await backend.start();
    const [grpcPort, httpPort, metricsPort] = await freePorts(3);
    const configFile = path.join(dir, 'config.yaml');
    fs.writeFileSync(configFile, limiterConfig({ grpc: grpcPort, http: httpPort, metrics: metricsPort, backend: backend.port }));
    let stderr = '';
    child = spawn(process.execPath, [...SPANSIEVE_NODE_FLAGS, CLI, '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    // Logs (stdout) and errors, for the failure message.
    child.stdout!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const pid = child.pid!;
    await waitFor('spansieve to listen', async () => (await fetch(`http://127.0.0.1:${metricsPort}/metrics`).then((r) => r.ok, () => false)), 20_000);

    // About 2 MB: 10 instances of 600 spans each.
    const body = obiTraceRequest(Array.from({ length: 10 }, (_, i) => hostInstance(`load-${i}`, 1000 + i)), 600);
    assert.ok(body.length > 1.8e6 && body.length < 2.3e6, `request of ${body.length} bytes`);
    const tally: Tally = { offeredBytes: 0, accepted: 0, acceptedAfterRecovery: 0, refused: new Map(), other: [] };
    const note = (outcome: string): void => {
      if (outcome === 'ok') {
        tally.accepted++;
        if (!backend.stalled) tally.acceptedAfterRecovery++;
      } else if (outcome === 'http 503' || outcome === 'grpc 14') tally.refused.set(outcome, (tally.refused.get(outcome) ?? 0) + 1);
      else tally.other.push(outcome);
    };
    let running = true;
    const agent = new http.Agent({ keepAlive: true, maxSockets: HTTP_CLIENTS });
    const httpClient = async (): Promise<void> => {
      while (running) {
        tally.offeredBytes += body.length;
        const outcome = await postHttp(agent, httpPort, body);
        note(outcome);
        if (outcome !== 'ok') await sleep(PAUSE_AFTER_REFUSAL_MS);
      }
    };
    const grpcClient = async (): Promise<void> => {
      while (running) {
        tally.offeredBytes += body.length;
        // One connection per call: on a kept connection, calls refused before their message is read
        // use up the connection's flow-control window and later calls stall (a receiver bug,
        // reported with issue 13; it is not what this test is about).
        const session = http2.connect(`http://127.0.0.1:${grpcPort}`);
        session.on('error', () => undefined);
        const outcome = await postGrpc(session, body);
        session.destroy();
        note(outcome);
        if (outcome !== 'ok') await sleep(PAUSE_AFTER_REFUSAL_MS);
      }
    };
    const rssSamples: number[] = [];
    const sampler = setInterval(() => rssSamples.push(status(pid, 'VmRSS')), 500);
    const clients = [...Array.from({ length: HTTP_CLIENTS }, httpClient), ...Array.from({ length: GRPC_CLIENTS }, grpcClient)];

    const stopClients = async (): Promise<void> => {
      running = false;
      // Unref'd: a pending give-up timer must not keep the test process alive.
      await Promise.race([Promise.all(clients), new Promise((resolve) => setTimeout(resolve, 20_000).unref())]);
      clearInterval(sampler);
      agent.destroy();
    };
    /** What the overload phase alone did. */
    const during = { peakRssMiB: 0, refused: 0, accepted: 0, offeredBytes: 0, recoveryMs: 0 };
    try {
      await sleep(OVERLOAD_MS);
      during.peakRssMiB = status(pid, 'VmHWM');
      during.refused = [...tally.refused.values()].reduce((a, b) => a + b, 0);
      during.accepted = tally.accepted;
      during.offeredBytes = tally.offeredBytes;
      backend.recover();
      const recoveredAt = Date.now();
      await waitFor('requests to be accepted again after the backend recovered', () => tally.acceptedAfterRecovery >= 20, 25_000);
      during.recoveryMs = Date.now() - recoveredAt;
    } catch (err) {
      const metrics = await fetch(`http://127.0.0.1:${metricsPort}/metrics`).then((r) => r.text(), () => '(no metrics)');
      process.stdout.write(`# ${JSON.stringify({ accepted: tally.accepted, refused: Object.fromEntries(tally.refused), other: tally.other.slice(0, 5), answered: backend.answered })}\n`);
      process.stdout.write(`${metrics.split('\n').filter((l) => l.startsWith('otelcol_') && !l.includes('uptime')).map((l) => `# ${l}`).join('\n')}\n# ${stderr.split('\n').slice(-30).join('\n# ')}\n`);
      throw err;
    } finally {
      await stopClients();
    }
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const peak = status(pid, 'VmHWM');

    const report = {
      requestBytes: body.length,
      offeredMiBDuringOverload: Math.round(during.offeredBytes / 2 ** 20),
      acceptedDuringOverload: during.accepted,
      refusedDuringOverload: during.refused,
      refused: Object.fromEntries(tally.refused),
      acceptedAfterRecovery: tally.acceptedAfterRecovery,
      msUntil20AcceptedAfterRecovery: during.recoveryMs,
      peakRssMiBDuringOverload: Math.round(during.peakRssMiB),
      peakRssMiB: Math.round(peak),
      rssMiBSamples: rssSamples.map(Math.round).join(' '),
      backendAnswered: backend.answered,
    };
    process.stdout.write(`# ${JSON.stringify(report)}\n`);

    assert.equal(child.exitCode, null, `spansieve exited: ${stderr}`);
    assert.ok(peak < LIMIT_MIB + MARGIN_MIB, `peak RSS ${Math.round(peak)} MiB, limit ${LIMIT_MIB} MiB + margin ${MARGIN_MIB} MiB`);
    assert.deepEqual(tally.other, [], 'every answer is a success or a retryable refusal');
    assert.ok(during.offeredBytes >= 10 * LIMIT_MIB * 2 ** 20, 'the clients offered at least 10 times the limit');
    assert.ok(tally.refused.get('http 503')! > 0 && tally.refused.get('grpc 14')! > 0, 'both transports saw retryable refusals');
    if (typeof (process as { execve?: unknown }).execve !== 'function') {
      // No execve on this Node: the CLI names the flag instead of restarting itself with it.
      assert.match(stderr, /start node with --max-old-space-size=200 \(command line or NODE_OPTIONS\)/);
    }
    assert.match(metrics, /otelcol_processor_memory_limiter_refused_spans\{processor="memory_limiter"\} [1-9]/);

    const termAt = Date.now();
    child.kill('SIGTERM');
    const code = await new Promise<number | null>((resolve) => child!.once('exit', (c) => resolve(c)));
    process.stdout.write(`# exit ${Date.now() - termAt} ms after SIGTERM\n`);
    assert.equal(code, 0, stderr);
  });
});

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function postHttp(agent: http.Agent, port: number, body: Buffer): Promise<string> {
  return new Promise((resolve) => {
    const req = http.request(
      { host: '127.0.0.1', port, path: '/v1/traces', method: 'POST', agent, headers: { 'content-type': 'application/x-protobuf', 'content-length': body.length } },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode === 200 ? 'ok' : res.statusCode === 503 && res.headers['retry-after'] ? 'http 503' : `http ${res.statusCode}`));
        res.on('error', (err) => resolve(`http error ${err.message}`));
      },
    );
    // The server may answer 503 and close before the whole body is written.
    req.on('error', (err) => resolve(`http error ${err.message}`));
    req.setTimeout(REQUEST_TIMEOUT_MS, () => req.destroy(new Error('no answer in time')));
    req.end(body);
  });
}

function postGrpc(session: http2.ClientHttp2Session, body: Buffer): Promise<string> {
  return new Promise((resolve) => {
    const stream = session.request({ ':method': 'POST', ':path': EXPORT_METHOD.traces, 'content-type': 'application/grpc', te: 'trailers' });
    let done = false;
    const finish = (outcome: string): void => {
      if (!done) resolve(outcome);
      done = true;
    };
    stream.on('trailers', (trailers) => finish(trailers['grpc-status'] === '0' ? 'ok' : `grpc ${String(trailers['grpc-status'])}`));
    stream.on('response', (headers) => {
      // A trailers-only answer carries the status in the headers.
      if (headers['grpc-status'] !== undefined) finish(headers['grpc-status'] === '0' ? 'ok' : `grpc ${String(headers['grpc-status'])}`);
    });
    stream.on('error', (err) => finish(`grpc error ${err.message}`));
    stream.on('close', () => finish(`grpc closed without status (rst ${stream.rstCode})`));
    stream.setTimeout(REQUEST_TIMEOUT_MS, () => stream.close(http2.constants.NGHTTP2_CANCEL));
    stream.resume();
    const prefix = Buffer.alloc(5);
    prefix.writeUInt32BE(body.length, 1);
    stream.write(prefix);
    stream.end(body);
  });
}
