import type { PoolSpec } from './obi';

// Messages between the orchestrator (run.ts) and the load generator + sink child (loadgen.ts).

export type Transport = 'grpc' | 'grpc-gzip' | 'http-protobuf' | 'http-protobuf-gzip' | 'grpc-tls' | 'http-protobuf-tls';
export const TRANSPORTS: readonly Transport[] = ['grpc', 'grpc-gzip', 'http-protobuf', 'http-protobuf-gzip', 'grpc-tls', 'http-protobuf-tls'];
/** What runs without --transports: the TLS variants are opt-in, so the default run keeps its length. */
export const DEFAULT_TRANSPORTS: readonly Transport[] = ['grpc', 'grpc-gzip', 'http-protobuf', 'http-protobuf-gzip'];

/** Whether the load generator connects over TLS (the server under test then serves TLS on both ports). */
export const isTls = (transport: Transport): boolean => transport.endsWith('-tls');

export interface Target {
  readonly transport: Transport;
  readonly grpcAddress: string;
  readonly httpAddress: string;
  /** Whether forwarded requests are expected at the sink (not for the floor). */
  readonly expectSink: boolean;
  /** PEM file of the CA the load generator trusts; required for a TLS transport. */
  readonly caFile?: string;
  /** gRPC sessions to spread the load over (default 1). */
  readonly connections?: number;
}

export type Command =
  | { readonly type: 'pool'; readonly spec: PoolSpec }
  | { readonly type: 'target'; readonly target: Target }
  /** Sends single requests until one is acknowledged (and seen at the sink when expected). */
  | { readonly type: 'probe'; readonly timeoutMs: number }
  /** Open loop: requests at a fixed span rate, whatever the server does. */
  | { readonly type: 'fixed'; readonly spansPerSecond: number; readonly maxInFlight: number }
  /** Closed loop: `concurrency` requests always in flight. */
  | { readonly type: 'closed'; readonly concurrency: number }
  | { readonly type: 'snapshot' }
  /** The last TAIL_BYTES bytes (hex) of each pool request as the current target's transport sends it. */
  | { readonly type: 'tails' }
  | { readonly type: 'stop'; readonly drainMs: number }
  | { readonly type: 'exit' };

export interface PoolInfo {
  readonly requests: number;
  readonly spansPerRequest: number;
  readonly keptSpansPerRequest: number;
  readonly bytesPerRequest: number;
  readonly gzipBytesPerRequest: number;
  readonly buildMs: number;
}

/** Cumulative counters since the load started, plus samples since the previous snapshot. */
export interface Snapshot {
  /** Milliseconds (monotonic clock of the load generator). */
  readonly at: number;
  readonly sentRequests: number;
  readonly sentSpans: number;
  readonly ackedRequests: number;
  readonly ackedSpans: number;
  readonly failedRequests: number;
  /** Fixed-rate sends skipped because maxInFlight requests were outstanding. */
  readonly skippedRequests: number;
  readonly inFlight: number;
  readonly sinkRequests: number;
  /** Spans the sink received (by the markers found, from the pool's known kept counts). */
  readonly sinkSpans: number;
  /** Forwarded requests without a marker, or whose marker was not outstanding. */
  readonly sinkUnmatched: number;
  /** Send -> sink arrival, ms, for requests that arrived since the previous snapshot. */
  readonly sinkLatencyMs: number[];
  /** Send -> acknowledgement, ms, since the previous snapshot. */
  readonly rttMs: number[];
  readonly verified: number;
  readonly verifyErrors: string[];
  readonly lastError: string;
}

export type Reply =
  | { readonly id: number; readonly ok: true; readonly result?: unknown }
  | { readonly id: number; readonly ok: false; readonly error: string };

export interface Hello {
  readonly type: 'hello';
  readonly sinkGrpcPort: number;
  readonly sinkHttpPort: number;
  /** The sink's thread in the load generator's process (/proc/PID/task/TID), for its CPU. */
  readonly sinkTid: number;
  /** Which gRPC sink runs: 'src/util/h2' (default) or 'node:http2' (BENCH_SINK=node). */
  readonly sink: string;
}
