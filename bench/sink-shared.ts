import { performance } from 'node:perf_hooks';

// What the load generator (bench/loadgen.ts) and its sink thread (bench/sink-worker.ts) share.

/** The sink's counters, in this order, in a shared Float64Array (written by the sink thread only). */
export const SINK_COUNTERS = ['sinkRequests', 'sinkSpans', 'sinkUnmatched', 'verified'] as const;
export type SinkCounter = (typeof SINK_COUNTERS)[number];

/** workerData of the sink thread. */
export interface SinkShared {
  readonly counters: SharedArrayBuffer;
}

export type SinkRequest =
  /** Per pool index: send time (ms, sharedClock), 1 while a sink arrival is awaited, arrivals seen. */
  | { readonly type: 'pool'; readonly sentAt: SharedArrayBuffer; readonly awaiting: SharedArrayBuffer; readonly seen: SharedArrayBuffer; readonly keptSpans: readonly number[]; readonly keepIds: readonly string[] }
  /** Zero the counters and samples; check the next `verifyBudget` forwards in full. */
  | { readonly type: 'reset'; readonly verifyBudget: number }
  /** The latency samples since the last call, and the verification errors. */
  | { readonly type: 'samples' };

export interface SinkReply {
  readonly id: number;
  readonly result: undefined | { readonly latencyMs: number[]; readonly verifyErrors: string[] };
}

export interface SinkReady {
  readonly type: 'ready';
  readonly grpcPort: number;
  readonly httpPort: number;
  /** The sink thread's id (/proc/PID/task/TID). */
  readonly tid: number;
  /** Which gRPC sink: 'src/util/h2' or 'node:http2' (BENCH_SINK=node). */
  readonly sink: string;
}

/**
 * Milliseconds on the monotonic clock every thread of the process reads alike (performance.now()
 * counts from each thread's own start), so a send time taken in one thread and an arrival in the
 * other subtract.
 */
export function sharedClock(): () => number {
  const base = Number(process.hrtime.bigint()) / 1e6 - performance.now();
  return () => performance.now() + base;
}
