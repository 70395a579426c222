import * as fs from 'node:fs';
// The module object itself (not an import namespace, whose bindings are read-only): patched below.
// eslint-disable-next-line @typescript-eslint/no-require-imports
import http2 = require('node:http2');
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';

// A diagnostic preload for spansieve (BENCH_SPANSIEVE_NODE_FLAGS="--require dist/bench/turn-probe.js";
// not used by default): how requests move through the event loop at the closed-loop maximum. It
// wraps node:http2's createServer (the receiver) and connect (the exporter) and records, per event
// loop turn, how many received requests completed and how many forwards were answered, and the
// time-weighted number of the generator's calls inside the process. Written at exit to
// spansieve-bench-turns-<pid>.json in /dev/shm (or the temporary directory).
//
// A "turn" is delimited with one setImmediate armed by the first event of a turn (never
// re-armed while idle, so the probe does not keep the loop awake).

const now = () => performance.now();
const histogram = new Map<string, Map<number, number>>();
const count = (name: string, value: number) => {
  let h = histogram.get(name);
  if (!h) histogram.set(name, (h = new Map<number, number>()));
  h.set(value, (h.get(value) ?? 0) + 1);
};

let turnArmed = false;
let turnStart = 0;
let receivedThisTurn = 0;
let answeredThisTurn = 0;
let acksThisTurn = 0;
let forwardsThisTurn = 0;
function touchTurn(): void {
  if (turnArmed) return;
  turnArmed = true;
  turnStart = now();
  setImmediate(() => {
    count('requests_completed_per_turn', receivedThisTurn);
    count('forwards_answered_per_turn', answeredThisTurn);
    count('acks_sent_per_turn', acksThisTurn);
    count('forwards_started_per_turn', forwardsThisTurn);
    count('turn_ms', Math.round((now() - turnStart) * 10) / 10);
    receivedThisTurn = answeredThisTurn = acksThisTurn = forwardsThisTurn = 0;
    turnArmed = false;
  });
}

// Time-weighted distribution of the generator's calls inside this process: open (headers in, not
// yet fully received), then waiting (received, ack not yet sent).
let receiving = 0;
let held = 0;
let lastChange = now();
const insideMs = new Map<string, number>();
function change(deltaReceiving: number, deltaHeld: number): void {
  const t = now();
  const key = `${receiving}/${held}`;
  insideMs.set(key, (insideMs.get(key) ?? 0) + (t - lastChange));
  lastChange = t;
  receiving += deltaReceiving;
  held += deltaHeld;
}

const waits: number[] = [];
const sinkRtts: number[] = [];

function watchServer<T extends http2.Http2Server | http2.Http2SecureServer>(server: T): T {
  server.on('stream', (stream: http2.ServerHttp2Stream) => {
    change(1, 0);
    let received = 0;
    stream.once('end', () => {
      received = now();
      receivedThisTurn++;
      touchTurn();
      change(-1, 1);
    });
    stream.once('close', () => {
      if (received > 0) {
        waits.push(now() - received);
        acksThisTurn++;
        touchTurn();
        change(0, -1);
      } else change(-1, 0);
    });
  });
  return server;
}

const createServer = http2.createServer;
const createSecureServer = http2.createSecureServer;
const connect = http2.connect;
const mutable = http2 as { -readonly [K in keyof typeof http2]: (typeof http2)[K] };
mutable.createServer = ((...args: Parameters<typeof createServer>) => watchServer(createServer(...args))) as typeof createServer;
mutable.createSecureServer = ((...args: Parameters<typeof createSecureServer>) => watchServer(createSecureServer(...args))) as typeof createSecureServer;
mutable.connect = ((...args: Parameters<typeof connect>) => {
  const session = connect(...args);
  const request = session.request.bind(session);
  session.request = (...rargs: Parameters<typeof request>) => {
    const stream = request(...rargs);
    const at = now();
    forwardsThisTurn++;
    touchTurn();
    stream.once('response', () => {
      sinkRtts.push(now() - at);
      answeredThisTurn++;
      touchTurn();
    });
    return stream;
  };
  return session;
}) as typeof connect;

function quantiles(samples: number[]): Record<string, number> {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? NaN;
  return { n: sorted.length, p10: at(0.1), p50: at(0.5), p90: at(0.9), p99: at(0.99) };
}

process.on('exit', () => {
  change(0, 0);
  const dir = fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir();
  const total = [...insideMs.values()].reduce((a, b) => a + b, 0);
  const report = {
    histograms: Object.fromEntries([...histogram].map(([name, h]) => [name, Object.fromEntries([...h].sort((a, b) => a[0] - b[0]))])),
    // "receiving/held" -> share of the time
    inside_share: Object.fromEntries([...insideMs].sort((a, b) => b[1] - a[1]).slice(0, 40).map(([k, v]) => [k, Math.round((1000 * v) / total) / 1000])),
    received_to_ack_ms: quantiles(waits),
    forward_response_ms: quantiles(sinkRtts),
  };
  fs.writeFileSync(path.join(dir, `spansieve-bench-turns-${process.pid}.json`), JSON.stringify(report, null, 1));
});
