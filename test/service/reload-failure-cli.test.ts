import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import * as YAML from 'yaml';
import { encodeTraces, hostInstance, obiResourceSpans, obiSpan } from '../helpers/obi';
import { freePorts, waitFor } from '../helpers/ports';

// The CLI process after a reload whose new and previous configurations both fail to start: it
// must stay up (before, the rejected reload became an unhandled rejection that ended the
// process without draining), take later reloads, and exit 0 on SIGTERM.

const CLI = path.resolve(__dirname, '..', '..', 'src', 'cli.js');

/** Tries to listen on `port` again and again until it succeeds or `stop()` is called. */
function grabber(port: number): { server: Promise<net.Server | undefined>; stop: () => void } {
  let stopped = false;
  const server = new Promise<net.Server | undefined>((resolve) => {
    const attempt = () => {
      if (stopped) return resolve(undefined);
      const s = net.createServer();
      s.once('error', () => setImmediate(attempt));
      s.listen(port, '127.0.0.1', () => resolve(s));
    };
    attempt();
  });
  return { server, stop: () => (stopped = true) };
}

describe('CLI: a reload that leaves no configuration running', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spansieve-reload-cli-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('the process stays up, a later reload starts the service again, SIGTERM exits 0', { timeout: 60_000 }, async () => {
    const [httpPort, occupiedPort] = await freePorts(2);
    const occupier = net.createServer();
    await new Promise<void>((resolve) => occupier.listen(occupiedPort, '127.0.0.1', resolve));
    const file = path.join(dir, 'spansieve.yaml');
    const write = (withOccupied: boolean) => {
      const protocols: Record<string, unknown> = { http: { endpoint: `127.0.0.1:${httpPort}` } };
      if (withOccupied) protocols.grpc = { endpoint: `127.0.0.1:${occupiedPort}` };
      fs.writeFileSync(
        file,
        YAML.stringify({
          receivers: { otlp: { protocols } },
          exporters: { debug: { verbosity: 'basic' } },
          service: { pipelines: { traces: { receivers: ['otlp'], exporters: ['debug'] } }, telemetry: { metrics: { level: 'none' }, logs: { level: 'info' } } },
        }),
      );
    };
    write(false);
    const child = spawn(process.execPath, [CLI, '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
    let alive = true;
    void exited.then(() => (alive = false));
    const body = encodeTraces([obiResourceSpans(hostInstance('cli-host', 1), [obiSpan()])]);
    const send = async () => (await fetch(`http://127.0.0.1:${httpPort}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/x-protobuf' }, body })).status;
    try {
      await waitFor('the service to start', async () => (await send()) === 200, 30_000);
      // The new config needs a port another process holds; while it fails, this test takes the
      // previous config's port, freed by the restart, so that starting it again fails too. The
      // race is retried a few times if the service wins it.
      let bothFailed = false;
      for (let attempt = 0; attempt < 5 && !bothFailed && alive; attempt++) {
        write(true);
        const grab = grabber(httpPort);
        const linesBefore = out.length;
        child.kill('SIGHUP');
        await waitFor('the reload to end', () => /the previous configuration failed to start too|spansieve is ready/.test(out.slice(linesBefore)) || !alive, 20_000, 10);
        grab.stop();
        const held = await grab.server;
        bothFailed = /the previous configuration failed to start too/.test(out.slice(linesBefore));
        if (bothFailed) {
          // Alive after the failed reload, and after another SIGHUP while nothing runs.
          await new Promise((resolve) => setTimeout(resolve, 500));
          assert.ok(alive, `the process ended after the failed reload:\n${out.slice(-3000)}`);
          const before = out.length;
          child.kill('SIGHUP');
          await waitFor('the second reload to be handled', () => /the previous configuration failed to start too|failed to start/.test(out.slice(before)) || !alive, 20_000, 10);
          assert.ok(alive, `the process ended after a second reload:\n${out.slice(-3000)}`);
        }
        await new Promise<void>((resolve) => (held ? held.close(() => resolve()) : resolve()));
      }
      assert.ok(alive, `the process ended after a failed reload:\n${out.slice(-3000)}`);
      assert.ok(bothFailed, `the previous configuration always restarted first:\n${out.slice(-3000)}`);
      // A good configuration again: the next reload starts it.
      write(false);
      child.kill('SIGHUP');
      await waitFor('the service to run again', async () => (await send().catch(() => 0)) === 200, 20_000);
      assert.ok(alive);
    } finally {
      if (alive) child.kill('SIGTERM');
      await new Promise((resolve) => occupier.close(resolve));
    }
    const { code, signal } = await exited;
    assert.equal(signal, null);
    assert.equal(code, 0, out.slice(-3000));
    assert.match(out, /shutting down: draining queues/);
    assert.match(out, /spansieve stopped/);
  });
});
