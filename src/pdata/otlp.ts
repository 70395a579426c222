import type { Signal } from './batch';

/** The OTLP/gRPC export method of each signal: the receiver routes on it, the otlp exporter calls it. */
export const EXPORT_METHOD: Record<Signal, string> = {
  traces: '/opentelemetry.proto.collector.trace.v1.TraceService/Export',
  metrics: '/opentelemetry.proto.collector.metrics.v1.MetricsService/Export',
};
