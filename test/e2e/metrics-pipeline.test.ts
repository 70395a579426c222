import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Service } from '../../src/service/service';
import { types } from '../../src/pdata/codec';
import { hostInstance, k8sInstance } from '../helpers/obi';
import { encodeMetrics, obiResourceMetrics } from '../helpers/obi-metrics';
import { freePorts, waitFor } from '../helpers/ports';
import { startService } from '../helpers/service';
import { HttpSink } from '../helpers/sink';

// OBI's own metrics through the metrics pipeline (otlp receiver -> filter -> exporter): every
// metric type and temporality passes for kept processes, byte for byte, and nothing of the
// dropped ones does.

const kept = hostInstance('web-1', 4242, 'backend');
const dropped = [hostInstance('web-1', 4243, 'backend'), k8sInstance('kube-system', 'coredns-1', 'coredns', 'coredns')];

const everyType = {
  durations: [0.01, 0.2], // histogram, cumulative
  cpuSeconds: 3, // sum, monotonic, cumulative, double
  networkBytesDelta: 42, // sum, monotonic, delta, int
  memoryBytes: 1024, // gauge, int
  cpuUtilization: 0.5, // gauge, double, unit 1
  rpcExponential: [1, 2], // exponential histogram, delta
};

describe('metrics pipeline: receiver -> filter -> exporter', () => {
  let sink: HttpSink;
  let service: Service;
  let otlpPort: number;

  before(async () => {
    sink = new HttpSink();
    await sink.start();
    [otlpPort] = await freePorts(1);
    service = await startService({
      receivers: { otlp: { protocols: { http: { endpoint: `127.0.0.1:${otlpPort}` } } } },
      processors: { 'filter/obi': { keep: [{ 'service.instance.id': kept.instanceId }] } },
      exporters: { otlphttp: { endpoint: `http://127.0.0.1:${sink.port}`, compression: 'none' } },
      service: {
        pipelines: { metrics: { receivers: ['otlp'], processors: ['filter/obi'], exporters: ['otlphttp'] } },
        telemetry: { metrics: { level: 'none' } },
      },
    });
  });

  after(async () => {
    await service?.shutdown();
    await sink?.stop();
  });

  test('sums, gauges, histograms, exponential histograms and summaries, delta and cumulative, pass unchanged for kept processes only', async () => {
    const keptResource = obiResourceMetrics(kept, everyType);
    // A summary and a non-monotonic delta sum too.
    keptResource.scopeMetrics[0]!.metrics.push(
      { name: 'gc.pause', unit: 's', summary: { dataPoints: [{ timeUnixNano: '1', count: 3, sum: 0.3, quantileValues: [{ quantile: 0.5, value: 0.1 }] }] } },
      { name: 'queue.size', unit: '{item}', sum: { aggregationTemporality: 1, isMonotonic: false, dataPoints: [{ timeUnixNano: '1', asInt: -2 }] } },
    );
    const body = encodeMetrics([obiResourceMetrics(dropped[0]!, everyType), keptResource, obiResourceMetrics(dropped[1]!, everyType)]);
    const res = await fetch(`http://127.0.0.1:${otlpPort}/v1/metrics`, { method: 'POST', headers: { 'content-type': 'application/x-protobuf' }, body });
    assert.equal(res.status, 200);
    await waitFor('the exporter to send', () => sink.requests.length > 0);

    const received = sink.requests.filter((r) => r.signal === 'metrics');
    assert.equal(received.length, 1);
    const request = types.ExportMetricsServiceRequest.toObject(types.ExportMetricsServiceRequest.decode(received[0]!.body), { longs: String, enums: Number }) as {
      resourceMetrics: Array<{ resource: { attributes: Array<{ key: string; value: { stringValue?: string } }> }; scopeMetrics: Array<{ metrics: Array<Record<string, unknown>> }> }>;
    };
    assert.equal(request.resourceMetrics.length, 1);
    const ids = request.resourceMetrics.map((rm) => rm.resource.attributes.find((a) => a.key === 'service.instance.id')?.value.stringValue);
    assert.deepEqual(ids, [kept.instanceId]);
    const sent = types.ResourceMetrics.toObject(types.ResourceMetrics.fromObject(keptResource), { longs: String, enums: Number });
    assert.deepEqual(request.resourceMetrics[0], sent, 'the kept resource arrives exactly as sent');
    const kinds = request.resourceMetrics[0].scopeMetrics[0]!.metrics.map((m) => Object.keys(m).find((k) => ['gauge', 'sum', 'histogram', 'exponentialHistogram', 'summary'].includes(k)));
    assert.deepEqual(kinds.sort(), ['exponentialHistogram', 'gauge', 'gauge', 'histogram', 'sum', 'sum', 'sum', 'summary']);
  });
});
