import { types } from '../../src/pdata/codec';
import { parseRequest } from '../../src/pdata/scan';
import type { Batch } from '../../src/pdata/batch';
import { resourceAttributes, type ObiInstance } from './obi';
import { int, str } from './otlp-json';

// OBI-shaped OTLP metrics (../shared/reference/obi-output.md): one ResourceMetrics per process,
// carrying the process's service.instance.id; HTTP durations in seconds with OBI's buckets.

export const OBI_DURATION_BUCKETS = [0, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10];

export const DELTA = 1;
export const CUMULATIVE = 2;

export function nowNanos(offsetMs = 0): string {
  return (BigInt(Date.now() + offsetMs) * 1_000_000n).toString();
}

export const httpServerAttributes = (route = '/api/items', port = 8080) => [
  str('http.request.method', 'GET'),
  int('http.response.status_code', 200),
  str('http.route', route),
  str('url.scheme', 'http'),
  str('server.address', 'backend'),
  int('server.port', port),
];

/** Bucket counts (one per bound, plus the overflow bucket) for observations in seconds. */
export function bucketCounts(bounds: readonly number[], observations: readonly number[]): number[] {
  const counts = new Array<number>(bounds.length + 1).fill(0);
  for (const v of observations) {
    const i = bounds.findIndex((b) => v <= b);
    counts[i < 0 ? bounds.length : i]!++;
  }
  return counts;
}

export interface MetricsSpec {
  /** http.server.request.duration observations, in seconds (cumulative histogram). */
  readonly durations?: readonly number[];
  /** process.cpu.time, a cumulative monotonic sum in seconds. */
  readonly cpuSeconds?: number;
  /** process.network.io, a delta monotonic sum in bytes. */
  readonly networkBytesDelta?: number;
  /** process.memory.usage, a gauge in bytes. */
  readonly memoryBytes?: number;
  /** process.cpu.utilization, a gauge with unit 1. */
  readonly cpuUtilization?: number;
  /** rpc.server.call.duration as a delta exponential histogram: scale 0, positive bucket counts from offset -8. */
  readonly rpcExponential?: readonly number[];
  /** Start time of delta points (ns string); defaults to a second ago. */
  readonly deltaStart?: string;
  readonly time?: string;
}

export function obiResourceMetrics(instance: ObiInstance, spec: MetricsSpec) {
  const time = spec.time ?? nowNanos();
  const start = nowNanos(-60_000);
  const deltaStart = spec.deltaStart ?? nowNanos(-1000);
  const metrics: Record<string, unknown>[] = [];
  if (spec.durations) {
    metrics.push({
      name: 'http.server.request.duration',
      description: 'Duration of HTTP service calls from the server side, in seconds',
      unit: 's',
      histogram: {
        aggregationTemporality: CUMULATIVE,
        dataPoints: [
          {
            attributes: httpServerAttributes(),
            startTimeUnixNano: start,
            timeUnixNano: time,
            count: spec.durations.length,
            sum: spec.durations.reduce((s, v) => s + v, 0),
            bucketCounts: bucketCounts(OBI_DURATION_BUCKETS, spec.durations),
            explicitBounds: OBI_DURATION_BUCKETS,
          },
        ],
      },
    });
  }
  if (spec.cpuSeconds !== undefined) {
    metrics.push({
      name: 'process.cpu.time',
      unit: 's',
      sum: { aggregationTemporality: CUMULATIVE, isMonotonic: true, dataPoints: [{ attributes: [str('cpu.mode', 'user')], startTimeUnixNano: start, timeUnixNano: time, asDouble: spec.cpuSeconds }] },
    });
  }
  if (spec.networkBytesDelta !== undefined) {
    metrics.push({
      name: 'process.network.io',
      unit: 'By',
      sum: {
        aggregationTemporality: DELTA,
        isMonotonic: true,
        dataPoints: [{ attributes: [str('network.io.direction', 'transmit')], startTimeUnixNano: deltaStart, timeUnixNano: time, asInt: spec.networkBytesDelta }],
      },
    });
  }
  if (spec.memoryBytes !== undefined) {
    metrics.push({ name: 'process.memory.usage', unit: 'By', gauge: { dataPoints: [{ timeUnixNano: time, asInt: spec.memoryBytes }] } });
  }
  if (spec.cpuUtilization !== undefined) {
    metrics.push({ name: 'process.cpu.utilization', unit: '1', gauge: { dataPoints: [{ timeUnixNano: time, asDouble: spec.cpuUtilization }] } });
  }
  if (spec.rpcExponential) {
    const count = spec.rpcExponential.reduce((s, v) => s + v, 0);
    metrics.push({
      name: 'rpc.server.call.duration',
      unit: 's',
      exponentialHistogram: {
        aggregationTemporality: DELTA,
        dataPoints: [
          {
            attributes: [str('rpc.system.name', 'grpc'), str('rpc.method', 'GetFeature')],
            startTimeUnixNano: deltaStart,
            timeUnixNano: time,
            count,
            sum: 0.01 * count,
            scale: 0,
            zeroCount: 0,
            positive: { offset: -8, bucketCounts: spec.rpcExponential },
          },
        ],
      },
    });
  }
  // OBI's metrics resource: the trace resource without otel.scope.name.
  const attributes = resourceAttributes(instance).filter((kv) => kv.key !== 'otel.scope.name');
  return { resource: { attributes }, scopeMetrics: [{ scope: { name: 'go.opentelemetry.io/obi' }, metrics }] };
}

export function encodeMetrics(resourceMetrics: ReturnType<typeof obiResourceMetrics>[]): Buffer {
  const type = types.ExportMetricsServiceRequest;
  return Buffer.from(type.encode(type.fromObject({ resourceMetrics })).finish());
}

/** A metrics Batch as the receiver would build it. */
export function metricsBatch(resourceMetrics: Record<string, unknown>[]): Batch {
  const type = types.ExportMetricsServiceRequest;
  return parseRequest('metrics', type.encode(type.fromObject({ resourceMetrics })).finish()).batch;
}
