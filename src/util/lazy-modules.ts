import type * as PromClient from 'prom-client';
import type * as Protobuf from 'protobufjs';
import type * as Re2js from 're2js';

// Libraries loaded on first use rather than at start. The protobuf fast path needs neither: a
// service with no Prometheus exporter, no remote write, no self-metrics endpoint and no JSON
// traffic never loads them: about 3 MiB less at idle, 7-8 MiB less at peak (docs/performance.md).

let promClientModule: typeof PromClient | undefined;
let protobufModule: typeof Protobuf | undefined;
let re2jsModule: typeof Re2js | undefined;

export function promClient(): typeof PromClient {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (promClientModule ??= require('prom-client') as typeof PromClient);
}

export function protobufjs(): typeof Protobuf {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (protobufModule ??= require('protobufjs') as typeof Protobuf);
}

/** RE2 for regex selectors: only configs that use a `/regex/` load it (2.6 MiB, about 50 ms). */
export function re2js(): typeof Re2js {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (re2jsModule ??= require('re2js') as typeof Re2js);
}
