import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http2 from 'node:http2';
import * as https from 'node:https';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { makeBenchCerts, type BenchCerts } from '../../bench/certs';
import { collectorConfig, spansieveConfig, startServer, type SystemName } from '../../bench/systems';
import { buildServiceConfig } from '../../src/config/service-config';

// The benchmark's TLS transports: the generated certificates, the receivers' tls keys in both
// systems' configs (absent with TLS off), and each system actually serving TLS that a client
// trusting only the generated CA accepts.

const KEEP = ['host-a:1'];
type Protocols = { grpc: Record<string, unknown>; http: Record<string, unknown> };
const protocols = (doc: Record<string, unknown>) => (doc.receivers as { otlp: { protocols: Protocols } }).otlp.protocols;

/** One empty OTLP/gRPC Export over TLS: resolves with grpc-status. */
function grpcExport(address: string, ca: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`https://${address}`, { ca });
    session.on('error', reject);
    const stream = session.request({ ':method': 'POST', ':path': '/opentelemetry.proto.collector.trace.v1.TraceService/Export', 'content-type': 'application/grpc', te: 'trailers' });
    let status = '';
    stream.on('response', (h) => (status = String(h['grpc-status'] ?? status)));
    stream.on('trailers', (t) => (status = String(t['grpc-status'])));
    stream.on('error', reject);
    stream.on('close', () => {
      session.close();
      resolve(status);
    });
    stream.resume();
    stream.end(Buffer.alloc(5));
  });
}

/** One empty OTLP/HTTP export over HTTPS: resolves with the status code. Without `ca`: Node's default roots. */
function httpExport(address: string, ca: Buffer | undefined): Promise<number> {
  const colon = address.lastIndexOf(':');
  return new Promise((resolve, reject) => {
    const req = https.request(
      { host: address.slice(0, colon), port: Number(address.slice(colon + 1)), method: 'POST', path: '/v1/traces', ca, headers: { 'content-type': 'application/x-protobuf', 'content-length': 0 } },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe('bench: TLS transports', () => {
  let dir: string;
  let certs: BenchCerts;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-tls-'));
    certs = makeBenchCerts(path.join(dir, 'tls'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('configs: tls on both receiver protocols only when asked for, and spansieve accepts it', () => {
    for (const make of [spansieveConfig, collectorConfig]) {
      const plain = protocols(make(4317, 4318, 4319, KEEP));
      assert.deepEqual(plain, { grpc: { endpoint: '127.0.0.1:4317' }, http: { endpoint: '127.0.0.1:4318' } });
      const tls = protocols(make(4317, 4318, 4319, KEEP, true, undefined, certs));
      for (const p of [tls.grpc, tls.http]) assert.deepEqual(p.tls, { cert_file: certs.certFile, key_file: certs.keyFile });
    }
    buildServiceConfig(spansieveConfig(4317, 4318, 4319, KEEP, true, undefined, certs));
  });

  const systems: SystemName[] = ['spansieve', 'floor', 'floor-raw'];
  const jaeger = process.env.SPANSIEVE_JAEGER_BIN;
  for (const system of [...systems, 'collector' as const]) {
    const skip = system === 'collector' && jaeger === undefined ? 'SPANSIEVE_JAEGER_BIN not set' : false;
    test(`${system} serves TLS on both ports with the generated certificate; a client trusting only the CA is accepted`, { skip }, async () => {
      // No sink listens: the sending queue acknowledges the (empty) requests anyway.
      const server = await startServer({ system, keepIds: KEEP, sinkGrpcPort: 1, workDir: dir, label: `tls-${system}`, tls: certs });
      try {
        const ca = fs.readFileSync(certs.caFile);
        assert.equal(await grpcExport(server.grpcAddress, ca), '0');
        assert.equal(await httpExport(server.httpAddress, ca), 200);
        // Not plaintext (Node resets, Go answers 400 "HTTP request to an HTTPS server"), and the CA
        // is what makes the certificate trusted.
        const plain = await fetch(`http://${server.httpAddress}/v1/traces`, { method: 'POST', body: '' }).then((r) => r.status, () => 0);
        assert.notEqual(plain, 200);
        await assert.rejects(httpExport(server.httpAddress, undefined), /certificate/);
      } finally {
        await server.stop();
      }
    });
  }
});
