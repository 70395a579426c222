// Memory bound of the tail_sampling processor: 1M OBI-shaped traces (2 spans each, the two ends in
// separate requests from two processes) offered to one processor with num_traces 10,000 and
// decision_wait 10 s on a simulated clock running faster than the offers can be decided, so the
// buffer stays full and the oldest traces are decided early. Prints JSON: RSS peak, heap peak,
// traces kept, early decisions. Run: npx tsc -p tsconfig.json && node dist/bench/tail-sampling-memory.js [traces]
import { randomBytes } from 'node:crypto';
import { types } from '../src/pdata/codec';
import { SelfTelemetry } from '../src/service/telemetry';
import { int, str } from './obi';
import { markerOffsets, offer, processorUnderTest, traceIdMarker, type TraceTemplate } from './tail-sampling-load';

const TOTAL = Number(process.argv[2] ?? 1_000_000);
const PER_REQUEST = 100;
const NUM_TRACES = 10_000;
const START_NS = 1_700_000_000_000_000_000n;

/** One request of PER_REQUEST spans from one process; trace ids are rewritten in place per offer. */
function template(service: string, pid: number, root: boolean): TraceTemplate {
  const marker = traceIdMarker;
  const spans = Array.from({ length: PER_REQUEST }, (_, i) => ({
    traceId: marker(i),
    spanId: randomBytes(8),
    ...(root ? {} : { parentSpanId: randomBytes(8) }),
    name: 'GET /users/*',
    kind: 2,
    startTimeUnixNano: START_NS.toString(),
    endTimeUnixNano: (START_NS + BigInt(1 + (i % 50)) * 10_000_000n).toString(),
    attributes: [str('http.request.method', 'GET'), int('http.response.status_code', i % 50 === 0 ? 500 : 200), str('url.path', '/users/42'), str('http.route', '/users/*'), str('server.address', 'backend'), int('server.port', 8080)],
    status: { code: i % 50 === 0 ? 2 : 0 },
  }));
  const resource = {
    attributes: [str('service.name', service), str('service.instance.id', `host:${pid}`), str('host.name', 'host'), str('telemetry.sdk.language', 'go'), str('telemetry.distro.name', 'opentelemetry-ebpf-instrumentation')],
  };
  const type = types.ExportTraceServiceRequest;
  const bytes = Buffer.from(type.encode(type.fromObject({ resourceSpans: [{ resource, scopeSpans: spans.map((span) => ({ scope: {}, spans: [span] })) }] })).finish());
  return { bytes, idOffsets: markerOffsets(bytes, PER_REQUEST) };
}

async function main(): Promise<void> {
  let now = 0;
  const telemetry = new SelfTelemetry();
  const { processor, keptSpans: kept } = processorUnderTest(NUM_TRACES, () => now, telemetry);
  const front = template('frontend', 100, true);
  const back = template('backend', 200, false);
  let rssPeak = 0;
  let heapPeak = 0;
  const started = process.hrtime.bigint();
  for (let first = 0; first < TOTAL; first += PER_REQUEST) {
    await processor.consume(offer(front, first));
    // The other end of the same traces, from the other process, 2 simulated seconds later.
    if (first >= 2 * PER_REQUEST) await processor.consume(offer(back, first - 2 * PER_REQUEST));
    now += 10; // 100 requests per simulated second: 10,000 new traces a second, far more than num_traces / decision_wait
    if (now % 1000 === 0) processor.tick();
    if ((first / PER_REQUEST) % 50 === 0) {
      const m = process.memoryUsage();
      rssPeak = Math.max(rssPeak, m.rss);
      heapPeak = Math.max(heapPeak, m.heapUsed);
    }
  }
  now += 20_000;
  processor.tick();
  await processor.shutdown();
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const text = await telemetry.registry.metrics();
  const metric = (name: string, filter = ''): number =>
    text
      .split('\n')
      .filter((l) => l.startsWith(name) && l.includes(filter))
      .reduce((n, l) => n + Number(l.split(' ').pop()), 0);
  console.log(
    JSON.stringify({
      traces: TOTAL,
      spansOffered: TOTAL * 2,
      numTraces: NUM_TRACES,
      rssPeakMiB: Math.round(rssPeak / 1048576),
      heapPeakMiB: Math.round(heapPeak / 1048576),
      decidedEarly: metric('otelcol_processor_tail_sampling_sampling_trace_dropped_too_early'),
      tracesSampled: metric('otelcol_processor_tail_sampling_global_count_traces_sampled', 'decision="sampled"'),
      lateSpans: metric('otelcol_processor_tail_sampling_late_spans'),
      keptSpans: kept(),
      seconds: Math.round(seconds * 10) / 10,
      spansPerSecond: Math.round((TOTAL * 2) / seconds),
    }),
  );
}

void main();
