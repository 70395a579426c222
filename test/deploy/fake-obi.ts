import { randomBytes } from 'node:crypto';
import { encodeMetrics, obiResourceMetrics } from '../helpers/obi-metrics';
import { encodeTraces, hostInstance, obiResourceSpans, obiSpan, type ObiInstance } from '../helpers/obi';
import { int, str } from '../helpers/otlp-json';

// Stands in for OBI in the compose test (compose.test.ts), where eBPF cannot run: every second it
// sends what OBI would for one request through client -> envoy-front :9000 -> envoy-back :8000
// -> backend :8080 (a SERVER and a CLIENT span per Envoy, a SERVER span for the backend, linked
// parent to child), plus spans from two processes spansieve must drop (spansieve itself, had OBI
// not excluded it, and Prometheus), and every few seconds each process's OBI metrics.
// Runs inside the spansieve image, which has the compiled src/ these helpers need.

const endpoint = process.env.FAKE_OBI_ENDPOINT ?? 'http://spansieve:4318';
const host = process.env.FAKE_OBI_HOSTNAME ?? 'obi';

export const CHAIN = {
  envoyFront: hostInstance(host, 101, 'envoy'),
  envoyBack: hostInstance(host, 102, 'envoy'),
  backend: hostInstance(host, 103, 'backend'),
};
export const NOISE = [hostInstance(host, 104, 'node'), hostInstance(host, 105, 'prometheus')];

function clientAttributes(peer: string, port: number) {
  return [str('http.request.method', 'GET'), int('http.response.status_code', 200), str('url.full', `http://${peer}:${port}/`), str('server.address', peer), int('server.port', port)];
}

function serverAttributes(self: string, port: number) {
  return [
    str('http.request.method', 'GET'),
    int('http.response.status_code', 200),
    str('url.path', '/'),
    str('url.scheme', 'http'),
    str('http.route', '/'),
    str('server.address', self),
    int('server.port', port),
  ];
}

/** One request through the chain: per process, its spans of that request. */
function chainRequest(): [ObiInstance, ReturnType<typeof obiSpan>[]][] {
  const traceId = randomBytes(16);
  const now = BigInt(Date.now()) * 1_000_000n;
  const ms = 1_000_000n;
  const s1 = obiSpan({ traceId, name: 'GET /', kind: 2, startNs: now, durationNs: 9n * ms, attributes: serverAttributes('envoy-front', 9000) });
  const c1 = obiSpan({ traceId, parentSpanId: s1.spanId, name: 'GET', kind: 3, startNs: now + ms, durationNs: 7n * ms, attributes: clientAttributes('envoy-back', 8000) });
  const s2 = obiSpan({ traceId, parentSpanId: c1.spanId, name: 'GET /', kind: 2, startNs: now + 2n * ms, durationNs: 5n * ms, attributes: serverAttributes('envoy-back', 8000) });
  const c2 = obiSpan({ traceId, parentSpanId: s2.spanId, name: 'GET', kind: 3, startNs: now + 3n * ms, durationNs: 3n * ms, attributes: clientAttributes('backend', 8080) });
  const s3 = obiSpan({ traceId, parentSpanId: c2.spanId, name: 'GET /', kind: 2, startNs: now + 4n * ms, durationNs: 1n * ms, attributes: serverAttributes('backend', 8080) });
  return [
    [CHAIN.envoyFront, [s1, c1]],
    [CHAIN.envoyBack, [s2, c2]],
    [CHAIN.backend, [s3]],
    ...NOISE.map((instance): [ObiInstance, ReturnType<typeof obiSpan>[]] => [instance, [obiSpan({ name: 'POST /v1/traces', kind: 3 })]]),
  ];
}

async function post(path: string, body: Buffer): Promise<void> {
  try {
    const res = await fetch(`${endpoint}${path}`, { method: 'POST', headers: { 'content-type': 'application/x-protobuf' }, body });
    if (!res.ok) console.error(`fake-obi: ${path}: HTTP ${res.status} ${await res.text()}`);
  } catch (err) {
    // spansieve may not listen yet; OBI retries too.
    console.error(`fake-obi: ${path}: ${(err as Error).message}`);
  }
}

const durations: number[] = [];

async function tick(n: number): Promise<void> {
  // OBI sends one ResourceSpans per process per batch, here one batch per request.
  await post('/v1/traces', encodeTraces(chainRequest().map(([instance, spans]) => obiResourceSpans(instance, spans))));
  durations.push(0.009);
  if (n % 3 === 0) {
    const instances = [...Object.values(CHAIN), ...NOISE];
    await post('/v1/metrics', encodeMetrics(instances.map((instance) => obiResourceMetrics(instance, { durations }))));
  }
}

if (require.main === module) {
  // PID 1 in its container: without a handler SIGTERM would be ignored.
  process.on('SIGTERM', () => process.exit(0));
  let n = 0;
  const loop = async (): Promise<void> => {
    await tick(n++);
    setTimeout(() => void loop(), 1000);
  };
  void loop();
}
