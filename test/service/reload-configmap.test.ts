import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as YAML from 'yaml';
import { encodeTraces, hostInstance, obiResourceSpans, obiSpan } from '../helpers/obi';
import { freePorts, postTracesRetrying, waitFor } from '../helpers/ports';
import { GrpcSink } from '../helpers/sink';

// The Helm chart mounts its ConfigMap as a directory and relies on spansieve's file watch to
// apply a changed ConfigMap without a pod restart. The kubelet never rewrites a file there: it
// swaps a symlink, so this test lays the directory out and updates it the way the kubelet does.

const CLI = path.resolve(__dirname, '..', '..', 'src', 'cli.js');

/**
 * A directory laid out like a mounted ConfigMap: the files live in a timestamped directory,
 * `..data` points at it, and each key is a symlink `<key> -> ..data/<key>`. An update writes a
 * new timestamped directory, points `..data_tmp` at it, renames that over `..data` (the one
 * atomic step) and removes the old directory, as the kubelet's atomic writer does.
 */
class ConfigMapDir {
  private generation = 0;
  private current: string | undefined;

  constructor(readonly dir: string) {}

  /** `mtime`: seconds since the epoch to give the new files (whole seconds are stored exactly). */
  update(files: Record<string, string>, mtime?: number): void {
    const stamp = `..2026_12_02_07_00_00.${String(++this.generation).padStart(9, '0')}`;
    fs.mkdirSync(path.join(this.dir, stamp));
    for (const [key, text] of Object.entries(files)) {
      const file = path.join(this.dir, stamp, key);
      fs.writeFileSync(file, text, { mode: 0o644 });
      if (mtime !== undefined) fs.utimesSync(file, mtime, mtime);
    }
    fs.symlinkSync(stamp, path.join(this.dir, '..data_tmp'));
    fs.renameSync(path.join(this.dir, '..data_tmp'), path.join(this.dir, '..data'));
    for (const key of Object.keys(files)) {
      if (!fs.existsSync(path.join(this.dir, key))) fs.symlinkSync(path.join('..data', key), path.join(this.dir, key));
    }
    if (this.current) fs.rmSync(path.join(this.dir, this.current), { recursive: true });
    this.current = stamp;
  }
}

describe('reload: a ConfigMap mounted as a directory (kubelet ..data swap)', () => {
  const sink = new GrpcSink();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spansieve-configmap-'));
  const configMap = new ConfigMapDir(dir);
  const configFile = path.join(dir, 'config.yaml');
  let child: ChildProcess | undefined;
  let out = '';
  let httpPort = 0;

  // Ids of equal length, so that a swap can keep the file's size.
  const a = hostInstance('cm-host', 1001, 'a');
  const b = hostInstance('cm-host', 1002, 'b');

  const config = (keep: string) =>
    YAML.stringify({
      receivers: { otlp: { protocols: { http: { endpoint: `127.0.0.1:${httpPort}` } } } },
      processors: { 'filter/cm': { keep: [{ 'service.instance.id': keep }] } },
      exporters: { otlp: { endpoint: `127.0.0.1:${sink.port}`, tls: { insecure: true } } },
      service: {
        pipelines: { traces: { receivers: ['otlp'], processors: ['filter/cm'], exporters: ['otlp'] } },
        telemetry: { metrics: { level: 'none' }, logs: { level: 'info' } },
      },
    });

  // One modification time for both updates below, so that the second keeps it.
  const mtime = Math.floor(Date.now() / 1000) - 3600;

  const reloadsInPlace = () => out.split('\n').filter((line) => line.includes('"filter lists reloaded in place"') && line.includes('"config file changed"')).length;

  /** Sends spans of both instances and returns the instance ids that reach the sink. */
  async function exportedOf(): Promise<string[]> {
    sink.requests.splice(0);
    const res = await postTracesRetrying(httpPort, encodeTraces([obiResourceSpans(a, [obiSpan()]), obiResourceSpans(b, [obiSpan()])]));
    assert.equal(res.status, 200);
    await waitFor('the kept spans to reach the sink', () => sink.instanceIds().length > 0);
    return [...new Set(sink.instanceIds())];
  }

  before(async () => {
    await sink.start();
    [httpPort] = await freePorts(1);
    configMap.update({ 'config.yaml': config(a.instanceId) });
    child = spawn(process.execPath, [CLI, '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
    await waitFor('spansieve to start', () => out.includes('spansieve is ready'), 30_000);
  });

  after(async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child!.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }
    await sink.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('an updated ConfigMap is applied in place, without a restart', { timeout: 30_000 }, async () => {
    assert.deepEqual(await exportedOf(), [a.instanceId]);
    const before = reloadsInPlace();
    configMap.update({ 'config.yaml': `# updated by helm upgrade\n${config(b.instanceId)}` }, mtime);
    await waitFor('the file watch to reload the swapped config', () => reloadsInPlace() > before, 15_000);
    assert.deepEqual(await exportedOf(), [b.instanceId]);
    assert.ok(!out.includes('restarting the service'), out);
  });

  test('a swap to a file of the same size and modification time is noticed too', { timeout: 30_000 }, async () => {
    // Only the inode tells this file from the last one (a coarse clock, or a tool that keeps
    // times): the watch must not rely on size and mtime alone.
    const previous = fs.readFileSync(configFile, 'utf8');
    const next = previous.replace(b.instanceId, a.instanceId);
    assert.equal(next.length, previous.length);
    const before = reloadsInPlace();
    configMap.update({ 'config.yaml': next }, mtime);
    assert.equal(fs.statSync(configFile).mtimeMs, mtime * 1000);
    await waitFor('the file watch to reload the swapped config', () => reloadsInPlace() > before, 15_000);
    assert.deepEqual(await exportedOf(), [a.instanceId]);
    assert.equal(child!.exitCode, null);
  });
});
