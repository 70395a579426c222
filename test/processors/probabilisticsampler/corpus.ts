import { encodeTraces, hostInstance, k8sInstance, obiResourceSpans, obiSpan, type ObiInstance } from '../../helpers/obi';
import { str } from '../../helpers/otlp-json';
import { seededRandom } from '../../helpers/random';

// A reproducible corpus of OBI-shaped spans for the probabilistic_sampler tests: many traces, each
// with spans from several processes; tracestates with and without `ot=th:` / `rv:` (consistent,
// inconsistent, malformed, other vendors' members); `sampling.priority` of every type.

function bytes(random: () => number, n: number): Buffer {
  const out = Buffer.alloc(n);
  for (let i = 0; i < n; i++) out[i] = Math.floor(random() * 256);
  return out;
}

function pick<T>(random: () => number, items: readonly T[]): T {
  return items[Math.floor(random() * items.length)]!;
}

const hex14 = (random: () => number): string => bytes(random, 7).toString('hex');

/** Tracestates a trace may arrive with; '' most often. `rv` is filled in per trace. */
export function traceStateChoices(rv: string): string[] {
  const many = Array.from({ length: 32 }, (_, i) => `k${i}=v`).join(',');
  return [
    ...Array<string>(12).fill(''),
    'ot=th:8',
    'ot=th:c',
    'ot=th:fd70a',
    'ot=th:0',
    'ot=th:C',
    'ot=th:80',
    'ot=th:e666',
    'ot=th:ffffffffffffff',
    `ot=rv:${rv}`,
    `ot=rv:${rv};th:8`,
    `ot=th:4;rv:${rv}`,
    `ot=rv:${rv.toUpperCase()}`,
    `ot=rv:${rv};th:fd70a`,
    'vendor=abc',
    'vendor=abc,ot=th:e',
    ' ot=th:c , congo=t61rcWkgMzE',
    'ot=th:8;x:y',
    'ot=foo:bar',
    'a@b=1,ot=th:a',
    // The Collector rejects these (fail_closed decides).
    'ot=th:zz',
    'ot=rv:123',
    'ot=th:8;',
    'Bad=1',
    'ot=th:123456789abcdef',
    many,
    'ot=th:8,ot=th:c',
    `ot=rv:abc;th:8;rv:${rv}`,
    'a=1,,b=2',
  ];
}

/** `sampling.priority` values of every kind the Collector reads, and some it ignores. */
export const PRIORITIES: ReadonlyArray<Record<string, unknown>> = [
  { intValue: 0 },
  { intValue: 1 },
  { intValue: -1 },
  { intValue: 5 },
  { doubleValue: 0 },
  { doubleValue: 2.5 },
  { doubleValue: -0.5 },
  { stringValue: '1' },
  { stringValue: '0' },
  { stringValue: 'abc' },
  { stringValue: '1_000' },
  { stringValue: '0x1p-2' },
  { stringValue: 'nan' },
  { stringValue: '-inf' },
  { stringValue: '1e400' },
  { stringValue: '1e-400' },
  { stringValue: ' 1' },
  { boolValue: true },
];

export interface CorpusOptions {
  readonly seed: number;
  readonly traces: number;
  /** Requests to split the corpus into. */
  readonly requests: number;
  /** Fraction of traces with a tracestate drawn from traceStateChoices (else none). */
  readonly traceStateShare?: number;
  /** Fraction of spans with a sampling.priority attribute. */
  readonly priorityShare?: number;
}

/** Export requests (protobuf bytes), OBI-shaped: each process a resource, each span its own scope. */
export function corpusRequests(options: CorpusOptions): Buffer[] {
  const random = seededRandom(options.seed);
  const instances: ObiInstance[] = [
    hostInstance('web-1', 1201, 'frontend'),
    hostInstance('web-2', 1202, 'frontend'),
    k8sInstance('shop', 'cart-7d9f', 'cart'),
    k8sInstance('shop', 'payment-55c', 'payment'),
    hostInstance('db-1', 3306, 'mysql'),
  ];
  const perRequest: Map<ObiInstance, ReturnType<typeof obiSpan>[]>[] = Array.from({ length: options.requests }, () => new Map());
  for (let t = 0; t < options.traces; t++) {
    const traceId = bytes(random, 16);
    const rv = hex14(random);
    const withState = random() < (options.traceStateShare ?? 0.5);
    const traceState = withState ? pick(random, traceStateChoices(rv)) : '';
    const spans = 1 + Math.floor(random() * 5);
    for (let s = 0; s < spans; s++) {
      const attributes = [str('http.request.method', 'GET'), str('http.route', '/users/*')];
      if (random() < (options.priorityShare ?? 0.05)) attributes.push({ key: 'sampling.priority', value: pick(random, PRIORITIES) } as ReturnType<typeof str>);
      const span = { ...obiSpan({ traceId, spanId: bytes(random, 8), attributes, startNs: 1_700_000_000_000_000_000n + BigInt(t) * 1000n }), ...(traceState ? { traceState } : {}) };
      const request = perRequest[Math.floor(random() * options.requests)]!;
      const instance = pick(random, instances);
      const list = request.get(instance) ?? [];
      list.push(span);
      request.set(instance, list);
    }
  }
  return perRequest.map((request, i) => {
    const resources = [...request].map(([instance, spans]) => obiResourceSpans(instance, spans));
    if (i === 0) {
      // Not OBI's shape, but the Collector's rules for it matter: several spans in one scope,
      // a scope with no spans, a resource with no scopes.
      const shared = obiResourceSpans(hostInstance('batch-1', 77), []);
      const several = resources.flatMap((r) => r.scopeSpans.slice(0, 3).flatMap((ss) => ss.spans));
      resources.push({ ...shared, scopeSpans: [{ scope: {}, spans: several.map((span) => ({ ...span, spanId: bytes(random, 8) })) }, { scope: {}, spans: [] }] });
      resources.push(obiResourceSpans(hostInstance('empty-1', 78), []));
    }
    return encodeTraces(resources);
  });
}
