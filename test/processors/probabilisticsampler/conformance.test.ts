import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Service } from '../../../src/service/service';
import { types } from '../../../src/pdata/codec';
import { parseRequest } from '../../../src/pdata/scan';
import { freePorts, waitFor } from '../../helpers/ports';
import { startService } from '../../helpers/service';
import { OTELCOL_SKIP, ReferenceCollector } from '../../helpers/reference-collector';
import { GrpcSink } from '../../helpers/sink';
import { corpusRequests } from './corpus';

// The same corpus through the reference Collector's probabilistic_sampler (v0.160.0) and
// spansieve's, one pipeline per configuration below on each side, each exporting to its own sink:
// the kept spans, their tracestates and the shape of what is sent (resources, scopes) must be
// identical, request by request, and so must the count_traces_sampled metric per policy.
//
//   test --HTTP--> otelcol   otlp --> probabilistic_sampler/<v> --> otlp_grpc/<v> --> sink <v>
//   test --HTTP--> spansieve otlp --> probabilistic_sampler/<v> --> otlp/<v>      --> sink <v>
//
// Both exporters run without a sending queue, so an answered request has been exported.

const skip = OTELCOL_SKIP;

const VARIANTS: Record<string, Record<string, unknown>> = {
  default25: { sampling_percentage: 25 },
  hash10: { sampling_percentage: 10, hash_seed: 12345, fail_closed: false },
  prop10: { sampling_percentage: 10, mode: 'proportional' },
  prop50p1: { sampling_percentage: 50, mode: 'proportional', sampling_precision: 1, fail_closed: false },
  eq33: { sampling_percentage: 33.3, mode: 'equalizing', fail_closed: false },
  eq100: { sampling_percentage: 100, mode: 'equalizing' },
  zero: { sampling_percentage: 0, fail_closed: false },
};
const NAMES = Object.keys(VARIANTS);

interface SpanOut {
  readonly spanId: string;
  readonly traceState: string;
}
type Shape = { resource: string; scopes: SpanOut[][] }[][];

/** Every exported request: its resources (by service.instance.id), their scopes, the spans kept. */
function shape(sink: GrpcSink): Shape {
  return sink.requests.map((request) => {
    const decoded = types.ExportTraceServiceRequest.toObject(types.ExportTraceServiceRequest.decode(request.body), { bytes: String, defaults: true }) as {
      resourceSpans: { resource?: { attributes: { key: string; value: { stringValue?: string } }[] }; scopeSpans: { spans: { spanId: string; traceState: string }[] }[] }[];
    };
    return decoded.resourceSpans.map((rs) => ({
      resource: rs.resource?.attributes.find((a) => a.key === 'service.instance.id')?.value.stringValue ?? '',
      scopes: rs.scopeSpans.map((ss) => ss.spans.map((s) => ({ spanId: Buffer.from(s.spanId, 'base64').toString('hex'), traceState: s.traceState }))),
    }));
  });
}

function spansOf(s: Shape): SpanOut[] {
  return s.flat().flatMap((r) => r.scopes.flat());
}

/** `policy/sampled` -> count over every processor, from Prometheus text. */
function sampledCounts(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line.startsWith('otelcol_processor_probabilistic_sampler_count_traces_sampled')) continue;
    const labels = new Map([...line.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1]!, m[2]!]));
    const key = `${labels.get('policy')}/${labels.get('sampled')}`;
    out.set(key, (out.get(key) ?? 0) + Number(line.slice(line.lastIndexOf(' ') + 1)));
  }
  return out;
}

void describe('probabilistic_sampler: the same decisions as the Collector v0.160.0', { skip }, () => {
  const collectorSinks = new Map(NAMES.map((n) => [n, new GrpcSink()]));
  const spansieveSinks = new Map(NAMES.map((n) => [n, new GrpcSink()]));
  const requests = corpusRequests({ seed: 20261202, traces: 1500, requests: 6, traceStateShare: 0.6, priorityShare: 0.06 });
  const totalSpans = requests.reduce((n, body) => n + parseRequest('traces', body).batch.itemCount, 0);
  let service: Service | undefined;
  let otelcol: ReferenceCollector | undefined;
  let collectorHttp = 0;
  let collectorMetrics = 0;
  let spansieveHttp = 0;

  before(async () => {
    for (const sink of [...collectorSinks.values(), ...spansieveSinks.values()]) await sink.start();
    [collectorHttp, collectorMetrics, spansieveHttp] = await freePorts(3);
    const direct = { sending_queue: { enabled: false }, retry_on_failure: { enabled: false } };
    const processors = Object.fromEntries(NAMES.map((n) => [`probabilistic_sampler/${n}`, VARIANTS[n]]));
    const pipelines = (exporter: string) =>
      Object.fromEntries(NAMES.map((n) => [`traces/${n}`, { receivers: ['otlp'], processors: [`probabilistic_sampler/${n}`], exporters: [`${exporter}/${n}`] }]));
    const exporters = (type: string, sinks: Map<string, GrpcSink>) =>
      Object.fromEntries(NAMES.map((n) => [`${type}/${n}`, { endpoint: `127.0.0.1:${sinks.get(n)!.port}`, tls: { insecure: true }, ...direct }]));

    service = await startService({
      receivers: { otlp: { protocols: { http: { endpoint: `127.0.0.1:${spansieveHttp}` } } } },
      processors,
      exporters: exporters('otlp', spansieveSinks),
      service: { pipelines: pipelines('otlp'), telemetry: { metrics: { address: '127.0.0.1:0' } } },
    });

    const collectorConfig = {
      receivers: { otlp: { protocols: { http: { endpoint: `127.0.0.1:${collectorHttp}` } } } },
      processors,
      exporters: exporters('otlp_grpc', collectorSinks),
      service: {
        telemetry: {
          logs: { level: 'info' },
          metrics: { level: 'detailed', readers: [{ pull: { exporter: { prometheus: { host: '127.0.0.1', port: collectorMetrics, without_scope_info: true } } } }] },
        },
        pipelines: pipelines('otlp_grpc'),
      },
    };
    otelcol = await ReferenceCollector.start(collectorConfig);
    for (const body of requests) {
      for (const port of [collectorHttp, spansieveHttp]) {
        const res = await fetch(`http://127.0.0.1:${port}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/x-protobuf' }, body });
        assert.equal(res.status, 200, `port ${port}: ${await res.text()}`);
      }
    }
  });

  after(async () => {
    await otelcol?.stop();
    await service?.shutdown();
    for (const sink of [...collectorSinks.values(), ...spansieveSinks.values()]) await sink.stop();
  });

  for (const name of NAMES) {
    void test(`${name} ${JSON.stringify(VARIANTS[name])}: the same spans kept, the same tracestates, the same resources and scopes`, (t) => {
      const expected = shape(collectorSinks.get(name)!);
      const actual = shape(spansieveSinks.get(name)!);
      const expectedSpans = spansOf(expected);
      const actualSpans = spansOf(actual);
      const byId = new Map(actualSpans.map((s) => [s.spanId, s.traceState]));
      const missing = expectedSpans.filter((s) => !byId.has(s.spanId));
      const wrongState = expectedSpans.filter((s) => byId.has(s.spanId) && byId.get(s.spanId) !== s.traceState);
      assert.deepEqual(
        { missing: missing.slice(0, 5), wrongState: wrongState.slice(0, 5).map((s) => ({ ...s, spansieve: byId.get(s.spanId) })), extra: actualSpans.length - (expectedSpans.length - missing.length) },
        { missing: [], wrongState: [], extra: 0 },
      );
      assert.deepEqual(actual, expected);
      t.diagnostic(`kept ${expectedSpans.length} spans, ${expectedSpans.filter((s) => s.traceState.includes('th:')).length} with a th`);
      assert.ok(expectedSpans.length > 0 && expectedSpans.length < totalSpans, 'a sampler that keeps all or nothing tests little');
    });
  }

  void test('count_traces_sampled per policy and outcome equals the Collector`s', { timeout: 30_000 }, async () => {
    // The Collector's series carry no processor id: the totals over every processor compare.
    let collectorText = '';
    await waitFor('the Collector`s metrics', async () => {
      collectorText = await (await fetch(`http://127.0.0.1:${collectorMetrics}/metrics`)).text();
      return collectorText.includes('otelcol_processor_probabilistic_sampler_count_traces_sampled');
    });
    const ours = await service!.telemetry.registry.metrics();
    const theirs = sampledCounts(collectorText);
    assert.ok(theirs.size >= 4, collectorText);
    assert.deepEqual(Object.fromEntries([...sampledCounts(ours)].sort()), Object.fromEntries([...theirs].sort()));
  });
});
