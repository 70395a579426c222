import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import * as YAML from 'yaml';
import type { InstanceView } from '../../src/component/component';
import { encodeTraces, hostInstance, obiResourceSpans, obiSpan } from '../helpers/obi';
import { freePorts, waitFor } from '../helpers/ports';
import { wideResourceRequest, withInstanceId } from '../helpers/wide-resource';

// One unauthenticated client sends valid 16 MB requests, each one resource with a million
// attributes and its own service.instance.id, half of them kept (to debug and spanmetrics ->
// prometheus), half dropped by the filter. Before the inventory and the resource decoding were
// bounded, RSS grew by 16+ MiB per request until V8 ran out of heap, and each request blocked
// the event loop for seconds. Now the server's memory stays flat and a second client's small
// requests keep being answered.

const CLI = path.resolve(__dirname, '..', '..', 'src', 'cli.js');
const MAX_WIDE_REQUESTS = 100;
/** Sending stops after this long even if fewer requests went out (a busy machine). */
const SEND_BUDGET_MS = 40_000;
/**
 * Idle RSS is ~60 MiB and measured peaks ~115 MiB. Bounds that add up: two 16 MB bodies in
 * flight with their parse, the inventory (16 MiB), spanmetrics' resources (1000 x ~17 KiB), V8's
 * slack. Unbounded, 100 such requests grew RSS by more than 1.6 GiB.
 */
const RSS_CEILING_MIB = 300;
/** One wide request blocks the loop ~0.1-0.3 s on a busy 2-core machine (it was 4.6 s and more). */
const PROBE_LATENCY_BOUND_MS = 3000;

function rssMiB(pid: number): number {
  const match = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match ? Number(match[1]) / 1024 : 0;
}

function post(port: number, body: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, path: '/v1/traces', method: 'POST', agent: false, headers: { 'content-type': 'application/x-protobuf', 'content-length': body.length } },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

describe('a million resource attributes per request, many instances', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spansieve-wide-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('RSS stays bounded, the process stays up, another client keeps being served, SIGTERM exits 0', { timeout: 120_000 }, async (t) => {
    const [httpPort, adminPort, promPort] = await freePorts(3);
    const file = path.join(dir, 'spansieve.yaml');
    fs.writeFileSync(
      file,
      YAML.stringify({
        receivers: { otlp: { protocols: { http: { endpoint: `127.0.0.1:${httpPort}` } } } },
        processors: { 'filter/obi': { keep: [{ 'service.instance.id': 'probe-host:1' }, { 'service.instance.id': 'wide-keep:*' }] } },
        connectors: { spanmetrics: { metrics_flush_interval: '1s' } },
        exporters: { debug: { verbosity: 'basic' }, prometheus: { endpoint: `127.0.0.1:${promPort}` } },
        extensions: { admin: { endpoint: `127.0.0.1:${adminPort}` } },
        service: {
          extensions: ['admin'],
          pipelines: {
            traces: { receivers: ['otlp'], processors: ['filter/obi'], exporters: ['debug', 'spanmetrics'] },
            metrics: { receivers: ['spanmetrics'], exporters: ['prometheus'] },
          },
          telemetry: { metrics: { level: 'none' }, logs: { level: 'warn' } },
        },
      }),
    );
    // The flags `npm start` and the bin use.
    const child = spawn(process.execPath, ['--max-semi-space-size=2', '--initial-heap-size=32', CLI, '--config', file], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    let alive = true;
    void exited.then(() => (alive = false));
    try {
      await waitFor('the server to listen', async () => (await post(httpPort, encodeTraces([]))) === 200, 30_000);
      const idleRss = rssMiB(child.pid!);

      // The other client: one small request every 20 ms, its latency recorded.
      const probeBody = encodeTraces([obiResourceSpans(hostInstance('probe-host', 1), [obiSpan()])]);
      const probeFailures: string[] = [];
      let probeMax = 0;
      let probes = 0;
      let probing = true;
      const prober = (async () => {
        while (probing) {
          const started = Date.now();
          try {
            const status = await post(httpPort, probeBody);
            if (status !== 200) probeFailures.push(`HTTP ${status}`);
          } catch (err) {
            probeFailures.push((err as Error).message);
          }
          probeMax = Math.max(probeMax, Date.now() - started);
          probes++;
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      })();

      const template = wideResourceRequest('wide-keep:000000', 1_000_000);
      const statuses: number[] = [];
      let maxRss = idleRss;
      const started = Date.now();
      try {
        for (let i = 1; i <= MAX_WIDE_REQUESTS && Date.now() - started < SEND_BUDGET_MS && alive; i++) {
          const id = `${i % 2 === 1 ? 'wide-keep' : 'wide-drop'}:${String(i).padStart(6, '0')}`;
          statuses.push(await post(httpPort, withInstanceId(template, 'wide-keep:000000', id)));
          if (alive) maxRss = Math.max(maxRss, rssMiB(child.pid!));
        }
      } finally {
        probing = false;
        await prober;
      }
      const sent = statuses.length;
      // In the test output: how many fit in the budget and what they cost.
      t.diagnostic(`${sent} wide requests in ${Date.now() - started} ms; RSS idle ${idleRss.toFixed(0)} MiB, max ${maxRss.toFixed(0)} MiB; ${probes} probes, max latency ${probeMax} ms`);

      assert.ok(alive, `the server exited: ${stderr.slice(-2000)}`);
      assert.ok(sent >= 20, `only ${sent} wide requests were answered in ${SEND_BUDGET_MS} ms`);
      assert.deepEqual(new Set(statuses), new Set([200]), 'every wide request is valid and accepted');
      assert.ok(maxRss < RSS_CEILING_MIB, `RSS reached ${maxRss.toFixed(0)} MiB (ceiling ${RSS_CEILING_MIB} MiB) after ${sent} requests`);
      assert.deepEqual(probeFailures, [], 'the other client was always answered');
      assert.ok(probeMax < PROBE_LATENCY_BOUND_MS, `the other client waited up to ${probeMax} ms`);

      // The inventory lists them, bounded: identity, 64 attributes, the rest counted.
      const instances = (await (await fetch(`http://127.0.0.1:${adminPort}/api/v1/instances`)).json()) as InstanceView[];
      const wide = instances.find((i) => i.id === 'wide-keep:000001');
      assert.ok(wide, 'the first wide instance is listed');
      assert.equal(Object.keys(wide.attributes).length, 64);
      assert.equal(wide.omittedAttributes, 1_000_002 - 64);
      assert.equal(wide.kept, true);
      assert.equal(instances.find((i) => i.id === 'wide-drop:000002')?.kept, false);
      // The kept ones went through spanmetrics to the scrape endpoint (at its next flush).
      await waitFor('the kept instances on the scrape endpoint', async () =>
        (await (await fetch(`http://127.0.0.1:${promPort}/metrics`)).text()).includes('instance="wide-keep:000001"'),
      );
    } finally {
      if (alive) child.kill('SIGTERM');
    }
    assert.equal(await exited, 0, stderr.slice(-2000));
  });
});
