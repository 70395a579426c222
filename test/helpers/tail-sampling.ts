// The tail_sampling processor in process with an injected clock: decisions happen on tick(), no
// timer runs, so its tests never sleep. Shared by test/processors/tailsampling/*.test.ts.
import type { Consumer } from '../../src/component/component';
import type { Batch } from '../../src/pdata/batch';
import { types } from '../../src/pdata/codec';
import { parseRequest } from '../../src/pdata/scan';
import { parseTailSamplingConfig, type TailSamplingConfig } from '../../src/processors/tailsampling/config';
import { TailSamplingProcessor } from '../../src/processors/tailsampling/tail-sampling';
import type { SelfTelemetry } from '../../src/service/telemetry';
import { Capture, parseWith, testSettings } from './components';
import { encodeTraces, hostInstance, obiResourceSpans, obiSpan, type SpanSpec } from './obi';

export class Clock {
  now = 1_000_000;
  readonly fn = (): number => this.now;
}

/** A parsed config, decision_wait 10 s unless `raw` says otherwise. */
export function tailSamplingConfig(raw: Record<string, unknown>): TailSamplingConfig {
  return parseWith(parseTailSamplingConfig, { decision_wait: '10s', ...raw });
}

/** A processor on `clock` (not started) sending what it keeps to `next`. */
export function tailSampler(raw: Record<string, unknown>, next: Consumer, clock: Clock, telemetry: SelfTelemetry): TailSamplingProcessor {
  return new TailSamplingProcessor(testSettings('tail_sampling', telemetry), tailSamplingConfig(raw), next, { clock: clock.fn, timer: false });
}

/** Reads a metric: the sum of the series of `name` whose labels include `labels` (0 when there is none). */
export function metricReader(telemetry: SelfTelemetry): (name: string, labels?: Record<string, string>) => Promise<number> {
  return async (name, labels = {}) => {
    const text = await telemetry.registry.metrics();
    let sum = 0;
    for (const line of text.split('\n')) {
      if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
      if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) sum += Number(line.split(' ').pop());
    }
    return sum;
  };
}

/** One batch of these spans, one resource per service (default "frontend"). */
export function batchOf(...spans: (SpanSpec & { service?: string })[]): Batch {
  const byService = new Map<string, ReturnType<typeof obiSpan>[]>();
  for (const spec of spans) {
    const service = spec.service ?? 'frontend';
    byService.set(service, [...(byService.get(service) ?? []), obiSpan(spec)]);
  }
  const body = encodeTraces([...byService].map(([service, list], i) => obiResourceSpans(hostInstance(`h${i}`, 1000 + i, service), list)));
  return parseRequest('traces', body).batch;
}

export interface DecodedSpan {
  /** Hex. */
  traceId: string;
  spanId: string;
  name: string;
}

/** Every span the capture received, in order. */
export function keptSpans(capture: Capture): DecodedSpan[] {
  return capture.batches.flatMap((b) =>
    b.resources.flatMap((block) => {
      const rs = types.ResourceSpans.toObject(types.ResourceSpans.decode(block.bytes), { bytes: String, longs: String }) as { scopeSpans?: { spans?: DecodedSpan[] }[] };
      return (rs.scopeSpans ?? []).flatMap((ss) => ss.spans ?? []).map((s) => ({ ...s, traceId: Buffer.from(s.traceId, 'base64').toString('hex') }));
    }),
  );
}

/** Lets the processor's queued sends run. */
export const flush = () => new Promise((resolve) => setImmediate(resolve));
