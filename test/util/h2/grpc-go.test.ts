import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { encodeHeaders } from '../../../src/util/h2/hpack';
import { createH2Server } from '../../../src/util/h2/server';
import { freePorts, waitFor } from '../../helpers/ports';

// grpc-go as the client: the Jaeger v2 binary (a Collector distribution) receives OTLP/HTTP and
// exports it with its otlp exporter (grpc-go, HPACK dynamic table, BDP pings, window updates) to
// an src/util/h2 server. Skipped without the binary (scripts/install-peers.sh jaeger).

const JAEGER = process.env.SPANSIEVE_JAEGER_BIN ?? path.join(os.homedir(), '.cache', 'spansieve', 'peers', 'bin', 'jaeger');
const OK_HEADERS = encodeHeaders([[':status', '200'], ['content-type', 'application/grpc']]);
const OK_TRAILERS = encodeHeaders([['grpc-status', '0']]);

function spans(n: number): string {
  const list = Array.from({ length: n }, (_, i) => ({
    traceId: '0102030405060708090a0b0c0d0e0f10', spanId: (i + 1).toString(16).padStart(16, '0'), name: `span-${'x'.repeat(100)}`, kind: 1, startTimeUnixNano: '1', endTimeUnixNano: '2',
  }));
  return JSON.stringify({ resourceSpans: [{ resource: { attributes: [{ key: 'service.name', value: { stringValue: 'h2' } }] }, scopeSpans: [{ spans: list }] }] });
}

test('grpc-go (the Collector otlp exporter in Jaeger v2) makes unary calls to the h2 server: 200 small and 5 large exports', { skip: fs.existsSync(JAEGER) ? false : `no Jaeger binary at ${JAEGER}` }, async () => {
  const calls: { path: string | undefined; bytes: number }[] = [];
  const server = createH2Server({
    onRequest(stream) {
      calls.push({ path: stream.header(':path'), bytes: stream.bodyBytes });
      stream.respondEncoded(OK_HEADERS, Buffer.alloc(5), OK_TRAILERS);
    },
  });
  await new Promise<void>((resolve) => server.server.listen(0, '127.0.0.1', () => resolve()));
  const grpcPort = (server.server.address() as net.AddressInfo).port;
  const [httpPort] = await freePorts(1);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spansieve-h2-grpcgo-'));
  const config = path.join(dir, 'config.yaml');
  fs.writeFileSync(config, `receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:${httpPort}
exporters:
  otlp:
    endpoint: 127.0.0.1:${grpcPort}
    compression: none
    tls:
      insecure: true
    sending_queue:
      enabled: false
    retry_on_failure:
      enabled: false
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [otlp]
`);
  const output: string[] = [];
  const child = spawn(JAEGER, ['--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.on('data', (d: Buffer) => output.push(d.toString()));
  child.stderr.on('data', (d: Buffer) => output.push(d.toString()));
  const post = (body: string) => fetch(`http://127.0.0.1:${httpPort}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/json' }, body }).then((r) => r.status, () => 0);
  try {
    const small = spans(1);
    // The receiver answers once the export (no queue, no retry) has an answer from our server.
    await waitFor('the Collector accepting exports', async () => (await post(small)) === 200, 30_000);
    for (let i = 0; i < 200; i++) assert.equal(await post(small), 200, `small export ${i}`);
    // ~470 KB messages: past the 65,535-octet default windows grpc-go starts with.
    const large = spans(3000);
    for (let i = 0; i < 5; i++) assert.equal(await post(large), 200, `large export ${i}`);
    assert.ok(calls.length >= 206, `calls: ${calls.length}`);
    assert.ok(calls.every((c) => c.path === '/opentelemetry.proto.collector.trace.v1.TraceService/Export'));
    assert.ok(calls.slice(-5).every((c) => c.bytes > 65_535), `large bodies: ${calls.slice(-5).map((c) => c.bytes).join(',')}`);
  } catch (err) {
    process.stderr.write(output.join('').slice(-3000));
    throw err;
  } finally {
    child.kill('SIGTERM');
    await new Promise((resolve) => child.once('exit', resolve));
    for (const c of server.connections) c.destroy();
    await server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
