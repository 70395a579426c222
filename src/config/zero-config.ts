import { DEFAULT_GRPC_ENDPOINT, DEFAULT_HTTP_ENDPOINT } from '../receivers/otlp/otlp-receiver';

export interface ZeroConfigOptions {
  readonly keep?: string;
  readonly drop?: string;
  readonly jaeger?: string;
  readonly debug?: boolean;
  readonly grpc?: string;
  readonly http?: string;
  readonly health?: string;
  readonly metrics?: string;
  readonly admin?: string;
}

/**
 * One command-line item as a selector: "4242" is a PID, "key=value" an attribute condition,
 * anything else a service.instance.id (exact, glob or /regex/).
 */
export function selectorFromArg(item: string): Record<string, unknown> {
  if (/^\d+$/.test(item)) return { pid: Number(item) };
  const eq = item.indexOf('=');
  if (eq > 0 && !item.startsWith('/')) return { [item.slice(0, eq)]: item.slice(eq + 1) };
  return { 'service.instance.id': item };
}

function selectors(list: string | undefined): Record<string, unknown>[] | undefined {
  if (list === undefined) return undefined;
  return list
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map(selectorFromArg);
}

/** The config document the file-less command line stands for; validated like any file. */
export function zeroConfig(options: ZeroConfigOptions): Record<string, unknown> {
  const exporters: Record<string, unknown> = {};
  if (options.jaeger) exporters['otlp/jaeger'] = { endpoint: options.jaeger, tls: { insecure: true } };
  if (options.debug) exporters.debug = { verbosity: 'normal' };
  const filter: Record<string, unknown> = {};
  const keep = selectors(options.keep);
  const drop = selectors(options.drop);
  if (keep) filter.keep = keep;
  if (drop) filter.drop = drop;
  return {
    receivers: {
      otlp: {
        protocols: {
          grpc: { endpoint: options.grpc ?? DEFAULT_GRPC_ENDPOINT },
          http: { endpoint: options.http ?? DEFAULT_HTTP_ENDPOINT },
        },
      },
    },
    processors: { 'filter/cli': filter },
    exporters,
    extensions: {
      health_check: options.health ? { endpoint: options.health } : {},
      admin: options.admin ? { endpoint: options.admin } : {},
    },
    service: {
      extensions: ['health_check', 'admin'],
      ...(options.metrics ? { telemetry: { metrics: { address: options.metrics } } } : {}),
      pipelines: {
        traces: { receivers: ['otlp'], processors: ['filter/cli'], exporters: Object.keys(exporters) },
      },
    },
  };
}
