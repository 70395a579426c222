import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as YAML from 'yaml';
import { encodeTraces, hostInstance, obiResourceSpans, obiSpan } from '../helpers/obi';
import { freePorts, waitFor } from '../helpers/ports';
import { GrpcSink } from '../helpers/sink';

// docs/kubernetes.md says which capability each process: selector needs, and the Helm chart
// grants exactly that (processSelectors.readOtherUsers: uid 0 with CAP_SYS_PTRACE and
// CAP_DAC_READ_SEARCH; by default uid 1000 with none). This runs the real CLI with those
// credentials (setpriv) against a process of another user and checks which selectors match.

const CLI = path.resolve(__dirname, '..', '..', 'src', 'cli.js');
const NODE = fs.realpathSync(process.execPath);
const isRoot = process.getuid?.() === 0;
const hasSetpriv = spawnSync('setpriv', ['--version']).status === 0;

type Selector = 'exe_path' | 'open_ports' | 'cmd_args';

describe('process: selectors under the Helm chart\'s privileges', { skip: isRoot && hasSetpriv ? false : 'needs root and setpriv (util-linux) to run as other users with chosen capabilities' }, () => {
  const sink = new GrpcSink();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spansieve-privileges-'));
  const children: ChildProcess[] = [];
  let target: ChildProcess;
  let targetPort = 0;

  before(async () => {
    fs.chmodSync(dir, 0o755); // readable by the unprivileged runs
    await sink.start();
    // A listener owned by another user (nobody), as the node's processes are to spansieve.
    target = spawn(
      'setpriv',
      ['--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all', NODE, '-e', "require('net').createServer().listen(0, '127.0.0.1', function () { console.log(this.address().port); })", 'privileges-target'],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    children.push(target);
    let out = '';
    target.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    await waitFor('the target to listen', () => /^\d+\n/.test(out));
    targetPort = Number(out.trim());
  });

  after(async () => {
    for (const child of children) {
      if (child.exitCode !== null || child.signalCode !== null) continue;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }
    await sink.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** Runs spansieve with `credentials` (setpriv options) and returns the selectors that kept the target's resource. */
  async function matching(name: string, credentials: string[]): Promise<Selector[]> {
    const [httpPort] = await freePorts(1);
    const selectors: Record<Selector, Record<string, unknown>> = {
      exe_path: { exe_path: NODE },
      open_ports: { open_ports: [targetPort] },
      cmd_args: { cmd_args: '*privileges-target*' },
    };
    const doc = {
      receivers: { otlp: { protocols: { http: { endpoint: `127.0.0.1:${httpPort}` } } } },
      processors: Object.fromEntries(Object.entries(selectors).map(([key, process]) => [`filter/${key}`, { keep: [{ process }] }])),
      // No queue: the receiver answers once each exporter has sent, so what did not arrive was dropped.
      exporters: Object.fromEntries(
        Object.keys(selectors).map((key) => [
          `otlp/${key}`,
          { endpoint: `127.0.0.1:${sink.port}`, tls: { insecure: true }, headers: { 'x-selector': key, 'x-run': name }, sending_queue: { enabled: false } },
        ]),
      ),
      service: {
        pipelines: Object.fromEntries(Object.keys(selectors).map((key) => [`traces/${key}`, { receivers: ['otlp'], processors: [`filter/${key}`], exporters: [`otlp/${key}`] }])),
        telemetry: { metrics: { level: 'none' } },
      },
    };
    const file = path.join(dir, `${name}.yaml`);
    fs.writeFileSync(file, YAML.stringify(doc), { mode: 0o644 });
    const child = spawn('setpriv', [...credentials, '--', NODE, CLI, '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (out += c.toString()));
    await waitFor(`spansieve (${name}) to start`, () => {
      if (child.exitCode !== null) throw new Error(`spansieve (${name}) exited ${child.exitCode}: ${out}`);
      return out.includes('spansieve is ready');
    }, 30_000);
    const send = async (): Promise<void> => {
      const body = encodeTraces([obiResourceSpans(hostInstance(os.hostname(), target.pid!), [obiSpan()])]);
      const res = await fetch(`http://127.0.0.1:${httpPort}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/x-protobuf' }, body });
      assert.equal(res.status, 200, await res.text());
    };
    const selectorsFrom = (from: number): Selector[] =>
      sink.requests
        .slice(from)
        .filter((r) => r.headers['x-run'] === name)
        .map((r) => r.headers['x-selector'] as Selector)
        .sort();
    // cmd_args needs no privilege: once it matches, the process table has read the target (a
    // table that reads processes in the background may not have it at the first request).
    await waitFor(`spansieve (${name}) to know the target`, async () => {
      const from = sink.requests.length;
      await send();
      return selectorsFrom(from).includes('cmd_args');
    });
    const from = sink.requests.length;
    await send();
    const matched = selectorsFrom(from);
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await exited;
    return matched;
  }

  // The four runs are independent: started together, they take the time of about one.
  const CREDENTIALS: Record<string, string[]> = {
    'chart-read-other-users': ['--bounding-set=-all,+sys_ptrace,+dac_read_search', '--inh-caps=-all'],
    'chart-default': ['--reuid=1000', '--regid=1000', '--clear-groups', '--bounding-set=-all', '--inh-caps=-all'],
    'ptrace-only': ['--bounding-set=-all,+sys_ptrace', '--inh-caps=-all'],
    'dac-read-search-only': ['--bounding-set=-all,+dac_read_search', '--inh-caps=-all'],
  };
  let matched: Promise<Record<string, Selector[]>> | undefined;
  const outcome = (name: string): Promise<Selector[] | undefined> => {
    matched ??= Promise.all(Object.entries(CREDENTIALS).map(async ([run, credentials]) => [run, await matching(run, credentials)] as const)).then((pairs) => Object.fromEntries(pairs));
    return matched.then((all) => all[name]);
  };

  test('readOtherUsers (uid 0, only CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH): exe_path, open_ports and cmd_args match', async () => {
    assert.deepEqual(await outcome('chart-read-other-users'), ['cmd_args', 'exe_path', 'open_ports']);
  });

  test('the default (uid 1000, no capability): only cmd_args matches', async () => {
    assert.deepEqual(await outcome('chart-default'), ['cmd_args']);
  });

  test('each capability is needed: CAP_SYS_PTRACE alone misses open_ports, CAP_DAC_READ_SEARCH alone misses both', async () => {
    assert.deepEqual(await outcome('ptrace-only'), ['cmd_args', 'exe_path']);
    assert.deepEqual(await outcome('dac-read-search-only'), ['cmd_args']);
  });
});
