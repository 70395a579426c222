import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { createRequire } from 'node:module';
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
      await waitFor('the child to exist', async () => (await table.refresh()).some((f) => f.pid === child.pid));
      const up = new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
      child.stdin.write('listen\n');
      await up;
      assert.ok(table.get(child.pid!)?.listeningPorts.has(port), 'the port opened after the refresh is seen');
    } finally {
      child.kill('SIGKILL');
    }
  });
});

/** How to start a command in a new network namespace here, or undefined when none is allowed. */
function unshareArgs(): string[] | undefined {
  // As root a plain new network namespace; otherwise inside a new user namespace, if allowed.
  for (const args of [['-n'], ['-r', '-n']]) {
    if (spawnSync('unshare', [...args, 'true']).status === 0) return args;
  }
  return undefined;
}

describe('open_ports in another network namespace', () => {
  const args = unshareArgs();

  test('a listener in the process\'s own network namespace is seen (lookup, refresh, and through a filter)', { skip: args ? false : 'unshare -n is not permitted here' }, async () => {
    // A port nothing listens on in this namespace: only the child's namespace has the listener.
    const [port, httpPort] = await freePorts(2);
    const script = `require('net').createServer().listen(${port}, '0.0.0.0', () => process.stdout.write('up\\n'))`;
    const child = spawn('unshare', [...args!, process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    const sink = new GrpcSink();
    let service: Service | undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout.once('data', () => resolve());
        child.once('exit', (code) => reject(new Error(`unshare exited with ${code}`)));
      });
      // unshare execs the command: the child's PID is the listener's.
      const pid = child.pid!;
      assert.notEqual(readlinkSync(`/proc/${pid}/ns/net`), readlinkSync('/proc/self/ns/net'), 'the listener is in another network namespace');

      const table = new ProcessTable('/proc', 60_000);
      assert.ok(table.get(pid)?.listeningPorts.has(port), 'a lookup reads the process\'s own namespace');
      const refreshed = (await table.refresh()).find((f) => f.pid === pid);
      assert.ok(refreshed?.listeningPorts.has(port), 'a refresh reads the process\'s own namespace');
      // This process listens on nothing in the child's namespace.
      assert.ok(!(await table.refresh()).some((f) => f.pid === process.pid && f.listeningPorts.has(port)));

      await sink.start();
      service = await startService({
        receivers: { otlp: { protocols: { http: { endpoint: `127.0.0.1:${httpPort}` } } } },
        processors: { 'filter/ns': { host_names: [HOST], keep: [{ process: { open_ports: [port] } }] } },
        exporters: { otlp: { endpoint: `127.0.0.1:${sink.port}`, tls: { insecure: true }, sending_queue: { enabled: false } } },
        service: {
          pipelines: { traces: { receivers: ['otlp'], processors: ['filter/ns'], exporters: ['otlp'] } },
          telemetry: { metrics: { level: 'none' } },
        },
      });
      const body = encodeTraces([pid, process.pid].map((p) => obiResourceSpans(hostInstance(HOST, p, 'ns-svc'), [obiSpan()])));
      const res = await fetch(`http://127.0.0.1:${httpPort}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/x-protobuf' }, body });
      assert.equal(res.status, 200, await res.text());
      assert.deepEqual(sink.instanceIds(), [`${HOST}:${pid}`]);
    } finally {
      await service?.shutdown();
      await sink.stop();
      child.kill('SIGKILL');
    }
  });
});

describe('process table walk (a fake /proc)', () => {
  const BOOT_S = 1_700_000_000;
  let root: string;

  /** A process directory as /proc shows it: cmdline, stat, and optionally ns/net, fd links and net tables. */
  function fakeProcess(pid: number, options: { cmdline?: string; ns?: string; sockets?: string[]; listeners?: [inode: string, port: number][] } = {}): void {
    const dir = join(root, String(pid));
    mkdirSync(join(dir, 'fd'), { recursive: true });
    writeFileSync(join(dir, 'cmdline'), `${options.cmdline ?? `proc-${pid}`}\0`);
    writeFileSync(join(dir, 'stat'), `${pid} (proc) S ${Array.from({ length: 18 }, () => '0').join(' ')} 100 0`);
    if (options.ns) {
      mkdirSync(join(dir, 'ns'));
      symlinkSync(options.ns, join(dir, 'ns', 'net'));
    }
    (options.sockets ?? []).forEach((inode, fd) => symlinkSync(`socket:[${inode}]`, join(dir, 'fd', String(fd + 3))));
    if (options.listeners) {
      mkdirSync(join(dir, 'net'));
      const header = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n';
      const lines = options.listeners.map(([inode, port], i) => `   ${i}: 0100007F:${port.toString(16).toUpperCase().padStart(4, '0')} 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 ${inode} 1 0000000000000000 100 0 0 10 0\n`);
      writeFileSync(join(dir, 'net', 'tcp'), header + lines.join(''));
      writeFileSync(join(dir, 'net', 'tcp6'), header);
    }
  }

  before(() => {
    root = mkdtempSync(join(tmpdir(), 'spansieve-proc-'));
    writeFileSync(join(root, 'stat'), `cpu 0 0 0 0\nbtime ${BOOT_S}\n`);
  });

  after(() => rmSync(root, { recursive: true, force: true }));

  test('listeners are read per network namespace, once, through any of its processes', async () => {
    // 101 and 102 share namespace A, whose tables are only under 101; 201 is alone in B.
    fakeProcess(101, { ns: 'net:[1]', sockets: ['5001'], listeners: [['5001', 8000], ['5002', 8001]] });
    fakeProcess(102, { ns: 'net:[1]', sockets: ['5002'] });
    fakeProcess(201, { ns: 'net:[2]', sockets: ['5001', '7001'], listeners: [['7001', 9000]] });
    const table = new ProcessTable(root, 60_000);
    const ports = new Map((await table.refresh()).map((f) => [f.pid, [...f.listeningPorts]]));
    assert.deepEqual(ports.get(101), [8000]);
    assert.deepEqual(ports.get(102), [8001], 'namespace A read once, through 101');
    assert.deepEqual(ports.get(201), [9000], 'inode 5001 listens in A, not in B');
    assert.equal(table.get(102)?.startedAt, BOOT_S * 1000 + 1000);
    rmSync(join(root, '101'), { recursive: true });
    rmSync(join(root, '102'), { recursive: true });
    rmSync(join(root, '201'), { recursive: true });
  });

  test('a refresh lets the event loop run, and keeps what a lookup read meanwhile', async () => {
    const COUNT = 600;
    for (let pid = 1000; pid < 1000 + COUNT; pid++) fakeProcess(pid);
    const table = new ProcessTable(root, 60_000);
    // Which command lines the walk has read, seen through the fs module the table uses.
    const nodeFs = createRequire(__filename)('node:fs') as typeof import('node:fs');
    const realRead = nodeFs.readFileSync;
    const walked: string[] = [];
    nodeFs.readFileSync = ((file: string, ...rest: unknown[]) => {
      if (typeof file === 'string' && file.endsWith('cmdline')) walked.push(file);
      return (realRead as (...a: unknown[]) => unknown)(file, ...rest);
    }) as typeof nodeFs.readFileSync;
    let turns = 0;
    const ticker = setInterval(() => turns++, 0);
    try {
      const walk = table.refresh();
      await waitFor('the walk to read some processes and yield', () => walked.length > 0 && walked.length < COUNT, 10_000, 0);
      nodeFs.readFileSync = realRead;
      // A process the walk has already read changes its command line and is looked up.
      const pid = Number(basename(dirname(walked[0]!)));
      writeFileSync(join(root, String(pid), 'cmdline'), 'renamed\0');
      assert.equal(table.get(pid)?.cmdline, 'renamed');
      const turnsBefore = turns;
      const facts = await walk;
      assert.equal(facts.length, COUNT);
      assert.ok(turns > turnsBefore, 'the event loop ran while the walk went on');
      assert.equal(table.get(pid)?.cmdline, 'renamed', 'the walk did not overwrite the newer lookup');
    } finally {
      nodeFs.readFileSync = realRead;
      clearInterval(ticker);
    }
  });
});
