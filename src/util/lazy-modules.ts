import type * as PromClient from 'prom-client';
import type * as Protobuf from 'protobufjs';

// Libraries loaded on first use rather than at start. The protobuf fast path needs neither: a
// service with no Prometheus exporter, no remote write, no self-metrics endpoint and no JSON
// traffic never loads them: about 3 MiB less at idle, 7-8 MiB less at peak (docs/performance.md).

let promClientModule: typeof PromClient | undefined;
let protobufModule: typeof Protobuf | undefined;

export function promClient(): typeof PromClient {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (promClientModule ??= require('prom-client') as typeof PromClient);
}

export function protobufjs(): typeof Protobuf {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (protobufModule ??= require('protobufjs') as typeof Protobuf);
}
