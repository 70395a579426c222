import assert from 'node:assert/strict';
import type * as net from 'node:net';
import { describe, test } from 'node:test';
import { SpansieveProcess, idleConnections, stalledGrpcCall, stalledHttpUpload } from '../helpers/child';
import { encodeTraces, hostInstance, obiResourceSpans, obiSpan } from '../helpers/obi';
import { freePorts } from '../helpers/ports';

// SIGTERM must end the process whatever the clients do: a stalled upload, a call that never ends
// and many idle connections cannot hold it past service::shutdown_timeout (issue 13).

function config(ports: { grpc: number; http: number; health: number }, exporter: Record<string, unknown>, shutdownTimeout: string) {
  return {
    receivers: { otlp: { protocols: { grpc: { endpoint: `127.0.0.1:${ports.grpc}` }, http: { endpoint: `127.0.0.1:${ports.http}` } } } },
    exporters: exporter,
    extensions: { health_check: { endpoint: `127.0.0.1:${ports.health}` } },
    service: {
      extensions: ['health_check'],
      shutdown_timeout: shutdownTimeout,
      pipelines: { traces: { receivers: ['otlp'], exporters: Object.keys(exporter) } },
      telemetry: { metrics: { level: 'none' }, logs: { level: 'warn' } },
    },
  };
}

/** A stalled HTTP upload, a stalled gRPC call and `idle` idle connections split over both ports. */
async function holdConnections(ports: { grpc: number; http: number }, idle: number): Promise<() => void> {
  const upload = await stalledHttpUpload(ports.http);
  const call = await stalledGrpcCall(ports.grpc);
  const sockets: net.Socket[] = [...(await idleConnections(ports.http, idle / 2)), ...(await idleConnections(ports.grpc, idle / 2))];
  return () => {
    upload.destroy();
    call.session.destroy();
    for (const s of sockets) s.destroy();
  };
}

describe('SIGTERM ends the process whatever clients hold open', () => {
  test('nothing queued: exits within 2 s with a stalled upload, a stalled call and 1,000 idle connections', { timeout: 60_000 }, async (t) => {
    const [grpc, http, health] = await freePorts(3);
    const child = SpansieveProcess.start(config({ grpc, http, health }, { debug: {} }, '25s'));
    let release = () => undefined as void;
    try {
      await child.ready(health);
      release = await holdConnections({ grpc, http }, 1000);
      const { code, seconds } = await child.stop();
      t.diagnostic(`exited ${seconds.toFixed(2)} s after SIGTERM`);
      assert.ok(seconds < 2, `exited after ${seconds.toFixed(2)} s; ${child.log}`);
      assert.equal(code, 0, child.log);
    } finally {
      release();
      await child.dispose();
    }
  });

  test('a queue that cannot drain: exits by shutdown_timeout + 1 s, with the same clients connected', { timeout: 60_000 }, async (t) => {
    const [grpc, http, health, dead] = await freePorts(4);
    const exporter = { otlp: { endpoint: `127.0.0.1:${dead}`, tls: { insecure: true }, retry_on_failure: { initial_interval: '100ms', max_interval: '200ms' } } };
    const child = SpansieveProcess.start(config({ grpc, http, health }, exporter, '3s'));
    let release = () => undefined as void;
    try {
      await child.ready(health);
      const res = await fetch(`http://127.0.0.1:${http}/v1/traces`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-protobuf' },
        body: encodeTraces([obiResourceSpans(hostInstance('stuck', 1), [obiSpan()])]),
      });
      assert.equal(res.status, 200);
      release = await holdConnections({ grpc, http }, 1000);
      const { seconds } = await child.stop();
      t.diagnostic(`exited ${seconds.toFixed(2)} s after SIGTERM`);
      assert.ok(seconds < 4, `exited after ${seconds.toFixed(2)} s (shutdown_timeout 3 s); ${child.log}`);
      // The backend is down: only the deadline ends the drain.
      assert.ok(seconds >= 2.5, `exited after ${seconds.toFixed(2)} s, before the deadline`);
      assert.match(child.log, /shutdown deadline passed/);
    } finally {
      release();
      await child.dispose();
    }
  });
});
