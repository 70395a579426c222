import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as net from 'node:net';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Service } from '../../../src/service/service';
import { encodeTraces, hostInstance, obiResourceSpans, obiSpan } from '../../helpers/obi';
import { freePorts, waitFor } from '../../helpers/ports';
import { ProcessTable } from '../../../src/processors/filter/process-table';
import { startService } from '../../helpers/service';
import { GrpcSink } from '../../helpers/sink';

// process: selectors against real processes: each is a small server on a free port with a
// distinct command line. OBI-shaped payloads name them "<host>:<pid>".

const HOST = 'sieve-test-host';
const REFRESH = '200ms';

interface Proc {
  child: ChildProcess;
  pid: number;
}

/** A node process listening on `port` (v4, or v6 loopback), tagged with `marker` in its command line. */
async function startProcess(marker: string, port: number, host = '127.0.0.1'): Promise<Proc> {
  const script = `require('net').createServer().listen(${port}, '${host}', () => process.stdout.write('up\\n'))`;
  const child = spawn(process.execPath, ['-e', script, marker], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.stdout.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`process ${marker} exited with ${code}`)));
  });
  return { child, pid: child.pid! };
}

async function stopProcess(proc: Proc): Promise<void> {
  if (proc.child.exitCode !== null || proc.child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => proc.child.once('exit', () => resolve()));
  proc.child.kill('SIGKILL');
  await exited;
}

async function ipv6Available(): Promise<boolean> {
  const server = net.createServer();
  return new Promise((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(0, '::1', () => server.close(() => resolve(true)));
  });
}

describe('process selectors (real processes, /proc)', () => {
  const marker = `sieve-${randomBytes(4).toString('hex')}`;
  const sink = new GrpcSink();
  const procs: Proc[] = [];
  let service: Service;
  let httpPort: number;
  let portB: number;
  let portRange: number;
  let portV6: number;
  let byArgs: Proc;
  let byPort: Proc;
  let byExeAndArgs: Proc;
  let byPid: Proc;
  let byRange: Proc;
  let unselected: Proc;
  let v6: Proc | undefined;

  async function send(pids: readonly number[], host = HOST): Promise<void> {
    const body = encodeTraces(pids.map((pid) => obiResourceSpans(hostInstance(host, pid, 'proc-svc'), [obiSpan()])));
    const res = await fetch(`http://127.0.0.1:${httpPort}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/x-protobuf' }, body });
    assert.equal(res.status, 200, await res.text());
  }

  /** The instance ids that reached the sink from requests sent by `fn`. */
  async function keptFrom(fn: () => Promise<void>): Promise<string[]> {
    const before = sink.requests.length;
    await fn();
    const ids = sink.requests.slice(before).flatMap((r) => {
      const probe = new GrpcSink();
      probe.requests.push(r);
      return probe.instanceIds();
    });
    return ids.sort();
  }

  before(async () => {
    await sink.start();
    [httpPort, portB, portRange, portV6] = await freePorts(4);
    const [p1, p2, p3, p4] = await freePorts(4);
    byArgs = await startProcess(`${marker}-args`, p1);
    byPort = await startProcess(`${marker}-port`, portB);
    byExeAndArgs = await startProcess(`${marker}-exe`, p2);
    byPid = await startProcess(`${marker}-pid`, p3);
    byRange = await startProcess(`${marker}-range`, portRange);
    unselected = await startProcess(`${marker}-other`, p4);
    procs.push(byArgs, byPort, byExeAndArgs, byPid, byRange, unselected);
    if (await ipv6Available()) {
      v6 = await startProcess(`${marker}-v6`, portV6, '::1');
      procs.push(v6);
    }
    const selectorPid = byPid.pid;
    service = await startService({
      receivers: { otlp: { protocols: { http: { endpoint: `127.0.0.1:${httpPort}` } } } },
      processors: {
        'filter/procs': {
          host_names: [HOST],
          process_refresh_interval: REFRESH,
          keep: [
            { process: { cmd_args: `*${marker}-args*` } },
            { process: { open_ports: [portB] } },
            { process: { exe_path: '*/node*', cmd_args: `*${marker}-exe` } },
            { process: { pid: selectorPid } },
            { process: { open_ports: [`${portRange}-${portRange}`, portV6] } },
          ],
        },
      },
      exporters: { otlp: { endpoint: `127.0.0.1:${sink.port}`, tls: { insecure: true }, sending_queue: { enabled: false } } },
      service: {
        pipelines: { traces: { receivers: ['otlp'], processors: ['filter/procs'], exporters: ['otlp'] } },
        telemetry: { metrics: { level: 'none' } },
      },
    });
  });

  after(async () => {
    await service?.shutdown();
    await Promise.all(procs.map(stopProcess));
    await sink.stop();
  });

  test('exe path, command line, listening port (v4 and v6, single and range) and pid select live processes', async () => {
    const wanted = [byArgs, byPort, byExeAndArgs, byPid, byRange, ...(v6 ? [v6] : [])];
    const kept = await keptFrom(() => send([...wanted, unselected].map((p) => p.pid)));
    assert.deepEqual(kept, wanted.map((p) => `${HOST}:${p.pid}`).sort());
  });

  test('the host part must be this host: the same PID from another host is not kept', async () => {
    const kept = await keptFrom(() => send([byArgs.pid, byPort.pid], 'some-other-host'));
    assert.deepEqual(kept, []);
  });

  test('a PID with no live process matches nothing', async () => {
    // PIDs are below the kernel's pid_max (at most 2^22); this one is above it.
    const kept = await keptFrom(() => send([4_999_999]));
    assert.deepEqual(kept, []);
  });

  test('a restarted process is kept under its new PID with no config change; the old PID no longer matches', async () => {
    const oldArgsPid = byArgs.pid;
    const oldPortPid = byPort.pid;
    await stopProcess(byArgs);
    await stopProcess(byPort);
    // Restart both: same command line, same port, new PIDs.
    byArgs = await startProcess(`${marker}-args`, (await freePorts(1))[0]);
    await waitFor('the port to be free again', async () => {
      try {
        byPort = await startProcess(`${marker}-port`, portB);
        return true;
      } catch {
        return false;
      }
    });
    procs.push(byArgs, byPort);
    assert.notEqual(byArgs.pid, oldArgsPid);
    assert.notEqual(byPort.pid, oldPortPid);

    // New PIDs are looked up on first sight: kept at once, before any periodic refresh.
    const keptNew = await keptFrom(() => send([byArgs.pid, byPort.pid]));
    assert.deepEqual(keptNew, [`${HOST}:${byArgs.pid}`, `${HOST}:${byPort.pid}`].sort());

    // The old PIDs stop matching once the table has been refreshed.
    await new Promise((resolve) => setTimeout(resolve, 600));
    const keptOld = await keptFrom(() => send([oldArgsPid, oldPortPid]));
    assert.deepEqual(keptOld, []);
  });
});

describe('process selector configuration', () => {
  test('bad process selectors are reported with their paths', async () => {
    await assert.rejects(
      startService({
        receivers: { otlp: {} },
        processors: {
          'filter/bad': {
            keep: [
              { process: { open_ports: [0, '9010-9000', 'http', 70000] } },
              { process: {} },
              { process: { exe: '/usr/bin/envoy' } },
              { process: { pid: 'x' } },
            ],
          },
        },
        exporters: { debug: {} },
        service: { pipelines: { traces: { receivers: ['otlp'], processors: ['filter/bad'], exporters: ['debug'] } } },
      }),
      (err: Error) => {
        for (const expected of [
          'processors::filter/bad::keep[0]::process::open_ports[0]: expected a port',
          'processors::filter/bad::keep[0]::process::open_ports[1]: expected a port',
          'processors::filter/bad::keep[0]::process::open_ports[2]: expected a port',
          'processors::filter/bad::keep[0]::process::open_ports[3]: expected a port',
          'processors::filter/bad::keep[1]::process: a process selector needs at least one of exe_path, cmd_args, open_ports, pid',
          'processors::filter/bad::keep[2]::process::exe: unknown key',
          'processors::filter/bad::keep[3]::process::pid: expected an integer',
        ]) {
          assert.ok(err.message.includes(expected), `missing "${expected}" in:\n${err.message}`);
        }
        return true;
      },
    );
  });
});

describe('process table', () => {
  test('a process a refresh caught before it listened is read again when first asked for', async () => {
    const [port] = await freePorts(1);
    // Listens only when told to (a line on stdin), so a refresh can run in between.
    const script = `process.stdin.once('data', () => require('net').createServer().listen(${port}, '127.0.0.1', () => process.stdout.write('up\\n')))`;
    const child = spawn(process.execPath, ['-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
    try {
      const table = new ProcessTable('/proc', 60_000);
      await waitFor('the child to exist', () => table.refresh().some((f) => f.pid === child.pid));
      const up = new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
      child.stdin.write('listen\n');
      await up;
      assert.ok(table.get(child.pid!)?.listeningPorts.has(port), 'the port opened after the refresh is seen');
    } finally {
      child.kill('SIGKILL');
    }
  });
});
