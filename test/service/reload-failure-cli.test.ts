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

describe('CLI: a reload that leaves no configuration running', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spansieve-reload-cli-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('the process stays up, a later reload starts the service again, SIGTERM exits 0', { timeout: 60_000 }, async () => {
    const [httpPort, occupiedPort] = await freePorts(2);
    const occupier = net.createServer();
    await new Promise<void>((resolve) => occupier.listen(occupiedPort, '127.0.0.1', resolve));
    const file = path.join(dir, 'spansieve.yaml');
    // The previous configuration cannot start again once its file_storage directory is gone (it
    // is not created for it): that, with the new configuration's port held by another process,
    // makes both fail, deterministically.
    const storage = path.join(dir, 'storage');
    fs.mkdirSync(storage);
    const write = (withOccupied: boolean) => {
      const protocols: Record<string, unknown> = { http: { endpoint: `127.0.0.1:${httpPort}` } };
      if (withOccupied) protocols.grpc = { endpoint: `127.0.0.1:${occupiedPort}` };
      fs.writeFileSync(
        file,
        YAML.stringify({
          receivers: { otlp: { protocols } },
          exporters: { debug: { verbosity: 'basic' } },
          extensions: { file_storage: { directory: storage } },
          service: {
            extensions: ['file_storage'],
            pipelines: { traces: { receivers: ['otlp'], exporters: ['debug'] } },
            telemetry: { metrics: { level: 'none' }, logs: { level: 'info' } },
          },
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
      fs.rmSync(storage, { recursive: true, force: true });
      write(true);
      const linesBefore = out.length;
      child.kill('SIGHUP');
      await waitFor('the reload to end', () => /the previous configuration failed to start too|spansieve is ready/.test(out.slice(linesBefore)) || !alive, 20_000, 10);
      const bothFailed = /the previous configuration failed to start too/.test(out.slice(linesBefore));
      if (bothFailed) {
        // Alive after the failed reload, and after another SIGHUP while nothing runs.
        const before = out.length;
        child.kill('SIGHUP');
        await waitFor('the second reload to be handled', () => /failed to start/.test(out.slice(before)) || !alive, 20_000, 10);
        assert.ok(alive, `the process ended after a second reload:\n${out.slice(-3000)}`);
      }
      assert.ok(alive, `the process ended after a failed reload:\n${out.slice(-3000)}`);
      assert.ok(bothFailed, `the previous configuration restarted:\n${out.slice(-3000)}`);
      // A good configuration again: the next reload starts it.
      fs.mkdirSync(storage);
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
