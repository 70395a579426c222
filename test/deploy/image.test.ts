import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { EXPORT_METHOD } from '../../src/pdata/otlp';
import { rawExportMethod } from '../helpers/grpc';
import { Jaeger } from '../helpers/jaeger';
import { encodeTraces, hostInstance, obiResourceSpans, obiSpan } from '../helpers/obi';
import { freePorts, waitFor } from '../helpers/ports';
import { buildSpansieveImage, imageSize, isLoopback, listeners, NODE_BASE_IMAGE, podman, requirePodman, ROOT, run, SPANSIEVE_IMAGE } from '../helpers/podman';

// The Dockerfile, built under podman on a stand-in Node 20 base (install-peers.sh podman) and run:
// non-root, healthy, OTLP in and out to a Jaeger outside the container, a prompt SIGTERM, and only
// the ports README's table says are exposed listening beyond loopback.

interface PortRow {
  readonly port: number;
  readonly exposed: boolean;
}

/** The port table under README's `image-ports` marker. */
function readmePorts(): PortRow[] {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const start = readme.indexOf('<!-- image-ports:');
  assert.ok(start >= 0, 'README.md has no image-ports table');
  const rows: PortRow[] = [];
  for (const line of readme.slice(start).split('\n').slice(1)) {
    if (!line.startsWith('|')) {
      if (rows.length > 0) break;
      continue;
    }
    const cells = line.split('|').map((cell) => cell.trim());
    const port = /^`(\d+)`$/.exec(cells[1] ?? '');
    if (!port) continue;
    const where = cells[3] ?? '';
    assert.ok(/^`0\.0\.0\.0`, exposed/.test(where) || /^loopback only/.test(where), `README image-ports row for ${port[1]}: '${where}'`);
    rows.push({ port: Number(port[1]), exposed: where.startsWith('`0.0.0.0`') });
  }
  return rows;
}

function dockerfileExpose(): number[] {
  const dockerfile = fs.readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
  return dockerfile
    .split('\n')
    .filter((line) => /^EXPOSE\s/.test(line))
    .flatMap((line) => line.trim().split(/\s+/).slice(1))
    .map(Number)
    .sort((a, b) => a - b);
}

function grpcExport(port: number, body: Buffer): Promise<void> {
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const method = rawExportMethod('traces');
  return new Promise<void>((resolve, reject) => {
    client.makeUnaryRequest(EXPORT_METHOD.traces, method.requestSerialize, method.responseDeserialize, body, (err) => {
      client.close();
      if (err) reject(err);
      else resolve();
    });
  });
}

const sorted = (ports: Iterable<number>): number[] => [...new Set(ports)].sort((a, b) => a - b);

describe('the Dockerfile image under podman', () => {
  let jaeger: Jaeger;
  const name = `spansieve-image-test-${process.pid}-${randomBytes(3).toString('hex')}`;
  let grpcPort: number;
  let httpPort: number;
  let healthPort: number;
  let pid: number;
  let started = false;

  before(async () => {
    await requirePodman();
    const build = await buildSpansieveImage();
    const [size, base] = [await imageSize(SPANSIEVE_IMAGE), await imageSize(NODE_BASE_IMAGE)];
    console.log(`image ${build.built ? 'built' : 'up to date'} in ${build.seconds.toFixed(1)} s; ${SPANSIEVE_IMAGE} ${(size / 1e6).toFixed(1)} MB, ${((size - base) / 1e6).toFixed(1)} MB on top of the base`);
    jaeger = await Jaeger.start();
    [grpcPort, httpPort, healthPort] = await freePorts(3);
    // slirp4netns with allow_host_loopback: the container reaches the host's 127.0.0.1 (where the
    // test's Jaeger listens, loopback only) as 10.0.2.2; ports are published on 127.0.0.1 only.
    started = true;
    await podman(
      'run', '-d', '--name', name,
      '--network', 'slirp4netns:allow_host_loopback=true',
      '-p', `127.0.0.1:${grpcPort}:4317`, '-p', `127.0.0.1:${httpPort}:4318`, '-p', `127.0.0.1:${healthPort}:13133`,
      '-e', `SPANSIEVE_JAEGER_ENDPOINT=10.0.2.2:${jaeger.otlpGrpcPort}`,
      SPANSIEVE_IMAGE,
    );
    pid = Number((await podman('inspect', '--format', '{{.State.Pid}}', name)).trim());
    await waitFor('the container to answer health_check', async () => (await fetch(`http://127.0.0.1:${healthPort}/`)).ok, 60_000, 200);
  });

  after(async () => {
    if (started) await run('podman', ['rm', '--force', '--time', '0', name]);
    await jaeger?.stop();
  });

  test('runs as a non-root user', () => {
    const uid = /^Uid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    assert.ok(uid, 'no Uid line');
    assert.notEqual(Number(uid[1]), 0);
  });

  test('its HEALTHCHECK passes', async () => {
    const check = await podman('inspect', '--format', '{{json .Config.Healthcheck}}', name);
    assert.match(check, /13133/, 'the image has a HEALTHCHECK on health_check');
    const result = await run('podman', ['healthcheck', 'run', name]);
    assert.equal(result.code, 0, `podman healthcheck run: ${result.stdout}${result.stderr}`);
  });

  test('OTLP sent to the container over HTTP and gRPC reaches a Jaeger outside it', async () => {
    const traceIds = [randomBytes(16), randomBytes(16)];
    const body = (traceId: Buffer, serviceName: string) => encodeTraces([obiResourceSpans(hostInstance('obi', 4242, serviceName), [obiSpan({ traceId })])]);
    const res = await fetch(`http://127.0.0.1:${httpPort}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/x-protobuf' }, body: body(traceIds[0]!, 'image-http') });
    assert.equal(res.status, 200, await res.text());
    await grpcExport(grpcPort, body(traceIds[1]!, 'image-grpc'));
    for (const traceId of traceIds) {
      await waitFor(`trace ${traceId.toString('hex')} in Jaeger`, async () => (await jaeger.trace(traceId.toString('hex'))) !== undefined, 30_000, 200);
    }
  });

  test('only the ports README documents as exposed listen beyond loopback, and they match EXPOSE', () => {
    const rows = readmePorts();
    const documented = sorted(rows.filter((row) => row.exposed).map((row) => row.port));
    assert.deepEqual(dockerfileExpose(), documented, 'Dockerfile EXPOSE and README disagree');
    const open = listeners(pid);
    assert.deepEqual(sorted(open.filter((l) => !isLoopback(l.address)).map((l) => l.port)), documented, `listeners: ${JSON.stringify(open)}`);
    // The loopback-only rows are really served, on loopback: the table is about these ports.
    for (const row of rows.filter((r) => !r.exposed)) {
      assert.ok(open.some((l) => l.port === row.port && isLoopback(l.address)), `port ${row.port} is not listening on loopback: ${JSON.stringify(open)}`);
    }
  });

  test('SIGTERM stops it promptly and cleanly', async () => {
    const started = performance.now();
    await podman('kill', '--signal', 'TERM', name);
    const code = Number((await podman('wait', name)).trim());
    const seconds = (performance.now() - started) / 1000;
    console.log(`stopped ${seconds.toFixed(2)} s after SIGTERM, exit code ${code}`);
    assert.equal(code, 0);
    assert.ok(seconds < 10, `took ${seconds.toFixed(1)} s`);
  });
});
