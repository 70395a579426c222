import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { promisify } from 'node:util';
import { SelfTelemetry } from '../../src/service/telemetry';
import { loadZstd } from '../../src/util/compression';
import { zstdCompress } from '../helpers/compression';
import { encodeTraces, hostInstance, obiResourceSpans, obiSpan } from '../helpers/obi';
import { freePorts } from '../helpers/ports';

const run = promisify(execFile);

/**
 * Starts a service from `config` in a fresh process, sends it one OTLP/protobuf request over HTTP
 * (then scrapes `metricsUrl` if given) and reports the answer's status and which packages that
 * process had loaded.
 */
async function packagesLoadedBy(config: Record<string, unknown>, httpPort: number, body: Buffer, metricsUrl = ''): Promise<{ status: number; packages: string[] }> {
  const script = `
    const { startService } = require(${JSON.stringify(path.join(__dirname, '..', 'helpers', 'service.js'))});
    (async () => {
      const service = await startService(JSON.parse(process.argv[1]));
      try {
        const res = await fetch('http://127.0.0.1:${httpPort}/v1/traces', {
          method: 'POST', headers: { 'content-type': 'application/x-protobuf' }, body: Buffer.from(process.argv[2], 'base64'),
        });
        await res.arrayBuffer();
        if (process.argv[3]) await (await fetch(process.argv[3])).text();
        const packages = new Set(Object.keys(require.cache).filter((f) => f.includes('node_modules')).map((f) => f.split('node_modules/').pop().split('/')[0]));
        process.stdout.write(JSON.stringify({ status: res.status, packages: [...packages] }));
      } finally {
        await service.shutdown();
      }
    })().catch((err) => { console.error(err); process.exit(1); });`;
  const { stdout } = await run(process.execPath, ['-e', script, JSON.stringify(config), body.toString('base64'), metricsUrl], { timeout: 20_000 });
  return JSON.parse(stdout) as { status: number; packages: string[] };
}

function filterConfig(httpPort: number, metrics: Record<string, unknown>): Record<string, unknown> {
  return {
    receivers: { otlp: { protocols: { http: { endpoint: `127.0.0.1:${httpPort}` } } } },
    processors: { filter: { keep: [{ 'service.instance.id': 'h:1' }] } },
    exporters: { debug: { verbosity: 'basic' } },
    service: { pipelines: { traces: { receivers: ['otlp'], processors: ['filter'], exporters: ['debug'] } }, telemetry: { metrics } },
  };
}

describe('libraries the protobuf fast path does not need are not loaded', () => {
  const body = encodeTraces([obiResourceSpans(hostInstance('h', 1), [obiSpan()]), obiResourceSpans(hostInstance('h', 2), [obiSpan()])]);

  test('metrics off: neither prom-client nor protobufjs is loaded, while pino and yaml are', async () => {
    const [httpPort] = await freePorts(1);
    const { status, packages } = await packagesLoadedBy(filterConfig(httpPort, { level: 'none' }), httpPort, body);
    assert.equal(status, 200);
    assert.ok(packages.includes('pino') && packages.includes('yaml'), `the check sees loaded packages: ${packages.join(', ')}`);
    assert.ok(!packages.includes('prom-client'), `prom-client loaded: ${packages.join(', ')}`);
    assert.ok(!packages.includes('protobufjs'), `protobufjs loaded: ${packages.join(', ')}`);
  });

  test('with a self-metrics endpoint prom-client is loaded to serve a scrape', async () => {
    const [httpPort, metricsPort] = await freePorts(2);
    const config = filterConfig(httpPort, { address: `127.0.0.1:${metricsPort}` });
    const { status, packages } = await packagesLoadedBy(config, httpPort, body, `http://127.0.0.1:${metricsPort}/metrics`);
    assert.equal(status, 200);
    assert.ok(packages.includes('prom-client'), `prom-client not loaded: ${packages.join(', ')}`);
  });
});

describe('zstd is loaded by the first request that needs it', () => {
  test('not at start; a zstd request over HTTP and then over gRPC each loads it (or finds it loaded) and is accepted', async () => {
    const [httpPort, grpcPort] = await freePorts(2);
    await loadZstd();
    const body = encodeTraces([obiResourceSpans(hostInstance('h', 1), [obiSpan()])]);
    const zstdBody = Buffer.from(zstdCompress(body));
    const config = {
      receivers: { otlp: { protocols: { http: { endpoint: `127.0.0.1:${httpPort}` }, grpc: { endpoint: `127.0.0.1:${grpcPort}` } } } },
      exporters: { debug: { verbosity: 'basic' } },
      service: { pipelines: { traces: { receivers: ['otlp'], exporters: ['debug'] } }, telemetry: { metrics: { level: 'none' } } },
    };
    // Which call comes first varies, so each protocol's first-request path is taken in one run.
    for (const first of ['http', 'grpc'] as const) {
      const script = `
        const http2 = require('node:http2');
        const { startService } = require(${JSON.stringify(path.join(__dirname, '..', 'helpers', 'service.js'))});
        const loaded = () => Object.keys(require.cache).some((f) => f.includes('zstd-wasm'));
        const body = Buffer.from(process.argv[2], 'base64');
        const viaHttp = async () => (await fetch('http://127.0.0.1:${httpPort}/v1/traces', {
          method: 'POST', headers: { 'content-type': 'application/x-protobuf', 'content-encoding': 'zstd' }, body,
        })).status;
        const viaGrpc = () => new Promise((resolve, reject) => {
          const session = http2.connect('http://127.0.0.1:${grpcPort}');
          const prefix = Buffer.alloc(5); prefix[0] = 1; prefix.writeUInt32BE(body.length, 1);
          const call = session.request({ ':method': 'POST', ':path': '/opentelemetry.proto.collector.trace.v1.TraceService/Export', 'content-type': 'application/grpc', te: 'trailers', 'grpc-encoding': 'zstd' });
          let status;
          call.on('response', (h) => { if (h['grpc-status'] !== undefined) status = h['grpc-status']; });
          call.on('trailers', (t) => { status = t['grpc-status']; });
          call.resume();
          call.on('close', () => { session.close(); resolve(status); });
          call.on('error', reject);
          call.end(Buffer.concat([prefix, body]));
        });
        (async () => {
          const service = await startService(JSON.parse(process.argv[1]));
          try {
            const atStart = loaded();
            const results = process.argv[3] === 'http' ? [await viaHttp(), await viaGrpc()] : [await viaGrpc(), await viaHttp()];
            process.stdout.write(JSON.stringify({ atStart, results, after: loaded() }));
          } finally {
            await service.shutdown();
          }
        })().catch((err) => { console.error(err); process.exit(1); });`;
      const { stdout } = await run(process.execPath, ['-e', script, JSON.stringify(config), zstdBody.toString('base64'), first], { timeout: 20_000 });
      const result = JSON.parse(stdout) as { atStart: boolean; results: (number | string)[]; after: boolean };
      assert.equal(result.atStart, false, 'zstd not loaded at start');
      assert.deepEqual(result.results, first === 'http' ? [200, '0'] : ['0', 200], `${first} first`);
      assert.equal(result.after, true);
    }
  });
});

describe('SelfTelemetry', () => {
  test('counts before its registry exists; the registry then shows every touched series and later ones', async () => {
    const telemetry = new SelfTelemetry();
    const accepted = telemetry.counter('otelcol_test_accepted', 'accepted', { receiver: 'otlp', transport: 'grpc' });
    telemetry.counter('otelcol_test_accepted', 'accepted', { receiver: 'otlp', transport: 'http' });
    accepted.inc(3);
    // The same labels give the same series.
    telemetry.counter('otelcol_test_accepted', 'accepted', { transport: 'grpc', receiver: 'otlp' }).inc(2);
    const text = await telemetry.registry.metrics();
    assert.match(text, /otelcol_test_accepted\{receiver="otlp",transport="grpc"\} 5/);
    assert.doesNotMatch(text, /transport="http"/, 'a series never counted is not shown');
    assert.match(text, /otelcol_process_uptime/);

    telemetry.gauge('otelcol_test_queue_size', 'queue size', { exporter: 'otlp' }).set(7);
    accepted.inc(1);
    const later = await telemetry.registry.metrics();
    assert.match(later, /otelcol_test_queue_size\{exporter="otlp"\} 7/);
    assert.match(later, /otelcol_test_accepted\{receiver="otlp",transport="grpc"\} 6/);
  });

  test('a metric asked for with other labels or as another kind is a programming error', () => {
    const telemetry = new SelfTelemetry();
    telemetry.counter('otelcol_test_sent', 'sent', { exporter: 'otlp' });
    assert.throws(() => telemetry.counter('otelcol_test_sent', 'sent', { exporter: 'otlp', extra: 'x' }), /has labels exporter, not exporter, extra/);
    assert.throws(() => telemetry.gauge('otelcol_test_sent', 'sent', { exporter: 'otlp' }), /already a counter/);
  });
});
