import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { jaegerBinary, tagValue, type JaegerTrace } from '../helpers/jaeger';
import { freePorts, waitFor } from '../helpers/ports';
import { buildSpansieveImage, MINBASE_IMAGE, must, podman, podmanEnv, requirePodman, ROOT, run, SPANSIEVE_IMAGE } from '../helpers/podman';
import { prometheusBinary } from '../helpers/prometheus';
import { CHAIN, NOISE } from './fake-obi';

// deploy/compose/compose.yaml: docker-compose validates it, and podman-compose runs as much of it
// as a test machine allows. Run: spansieve (the Dockerfile's image), Jaeger v2 and Prometheus, each
// with the compose file's own config, command, environment and volumes. The images that cannot be
// pulled here are replaced by an override file: Jaeger and Prometheus by a minimal Debian image
// with this machine's binaries mounted in, and OBI (it needs eBPF and a privileged container) by
// fake-obi.ts, which sends what OBI would for requests through the Envoy chain. Not run: OBI,
// the two Envoys, the Go backend and the client, which only produce telemetry through OBI.

const COMPOSE_DIR = path.join(ROOT, 'deploy', 'compose');
const COMPOSE_FILE = path.join(COMPOSE_DIR, 'compose.yaml');

interface PromResult {
  metric: Record<string, string>;
  value: [number, string];
}

test('docker-compose validates deploy/compose/compose.yaml', async () => {
  await requirePodman(['docker-compose']);
  const env = { ...process.env, PUBLISH_ADDRESS: '127.0.0.1' };
  await must('docker-compose', ['-f', COMPOSE_FILE, 'config', '--quiet'], { env });
  const services = (await must('docker-compose', ['-f', COMPOSE_FILE, 'config', '--services'], { env })).trim().split('\n').sort();
  assert.deepEqual(services, ['backend', 'client', 'envoy-back', 'envoy-front', 'jaeger', 'obi', 'prometheus', 'spansieve']);
});

describe('the compose scenario under podman-compose, OBI replaced by OTLP it would send', () => {
  const project = `spansieve-compose-test-${process.pid}-${randomBytes(3).toString('hex')}`;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spansieve-compose-'));
  let env: NodeJS.ProcessEnv;
  let files: string[];
  let jaegerPort: number;
  let prometheusPort: number;
  let composeStarted = false;

  const compose = (...args: string[]) => must('podman-compose', ['-p', project, ...files, ...args], { env, cwd: COMPOSE_DIR });

  before(async () => {
    // iptables: netavark runs it for the compose network.
    await requirePodman(['podman-compose', 'iptables']);
    await buildSpansieveImage();
    const override = path.join(dir, 'compose.podman.yaml');
    fs.writeFileSync(
      override,
      `# Stand-ins for the images this machine cannot pull (see compose.test.ts).
services:
  spansieve:
    image: ${SPANSIEVE_IMAGE}
  jaeger:
    image: ${MINBASE_IMAGE}
    entrypoint: ["/peer/jaeger"]
    volumes:
      - ${path.resolve(jaegerBinary())}:/peer/jaeger:ro
  prometheus:
    image: ${MINBASE_IMAGE}
    entrypoint: ["/peer/prometheus"]
    volumes:
      - ${path.resolve(prometheusBinary())}:/peer/prometheus:ro
  fake-obi:
    image: ${SPANSIEVE_IMAGE}
    entrypoint: ["node", "/app/dist/test/deploy/fake-obi.js"]
    volumes:
      - ${path.join(ROOT, 'dist', 'test')}:/app/dist/test:ro
    environment:
      FAKE_OBI_ENDPOINT: http://spansieve:4318
      FAKE_OBI_HOSTNAME: obi
    depends_on: [spansieve]
`,
    );
    files = ['-f', COMPOSE_FILE, '-f', override];
    [jaegerPort, prometheusPort] = await freePorts(2);
    const [envoyPort] = await freePorts(1);
    env = { ...podmanEnv(), PUBLISH_ADDRESS: '127.0.0.1', JAEGER_UI_PORT: String(jaegerPort), PROMETHEUS_PORT: String(prometheusPort), ENVOY_PORT: String(envoyPort) };
    composeStarted = true;
    await compose('up', '-d', '--no-build', 'jaeger', 'prometheus', 'spansieve', 'fake-obi');
    // podman-compose exits 0 even when a container cannot start: say why here, not as a timeout later.
    const created = await podman('ps', '-a', '--format', '{{.Names}}', '--filter', `label=io.podman.compose.project=${project}`, '--filter', 'status=created');
    const notStarted = created.trim().split('\n').filter(Boolean);
    if (notStarted.length > 0) {
      const why = await run('podman', ['start', notStarted[0]!]);
      throw new Error(`containers not started: ${notStarted.join(', ')}; podman start ${notStarted[0]}: ${(why.stderr || why.stdout).trim()}`);
    }
  });

  after(async () => {
    if (composeStarted) {
      const down = await run('podman-compose', ['-p', project, ...files, 'down', '-t', '0'], { env, cwd: COMPOSE_DIR });
      if (down.code !== 0) console.log(`podman-compose down: ${down.stderr}`);
      // Whatever down left behind (podman-compose labels every container with its project).
      const left = (await run('podman', ['ps', '-aq', '--filter', `label=io.podman.compose.project=${project}`])).stdout.trim();
      if (left) await run('podman', ['rm', '-f', '-t', '0', ...left.split('\n')]);
      await run('podman', ['network', 'rm', '-f', `${project}_default`]);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const jaegerGet = async <T>(pathAndQuery: string): Promise<T> => {
    const res = await fetch(`http://127.0.0.1:${jaegerPort}${pathAndQuery}`);
    if (!res.ok) throw new Error(`jaeger ${pathAndQuery}: HTTP ${res.status}: ${await res.text()}`);
    return (await res.json()) as T;
  };

  const promQuery = async (query: string): Promise<PromResult[]> => {
    const res = await fetch(`http://127.0.0.1:${prometheusPort}/api/v1/query?query=${encodeURIComponent(query)}`);
    if (!res.ok) throw new Error(`prometheus ${query}: HTTP ${res.status}: ${await res.text()}`);
    return ((await res.json()) as { data: { result: PromResult[] } }).data.result;
  };

  const logsOnFailure = async (what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<void> => {
    try {
      await waitFor(what, check, timeoutMs, 500);
    } catch (err) {
      const names = (await run('podman', ['ps', '-a', '--format', '{{.Names}}', '--filter', `label=io.podman.compose.project=${project}`])).stdout.trim().split('\n');
      let logs = '';
      for (const name of names.filter(Boolean)) {
        const out = await run('podman', ['logs', '--tail', '15', name]);
        logs += `--- ${name}\n${out.stdout}${out.stderr}`;
      }
      throw new Error(`${(err as Error).message}\ncontainer logs (tails):\n${logs.slice(-8000)}`, { cause: err });
    }
  };

  test('Jaeger has the whole chain, and only the three kept processes', async () => {
    let chain: JaegerTrace | undefined;
    await logsOnFailure(
      'a trace through envoy-front, envoy-back and backend in Jaeger',
      async () => {
        const traces = (await jaegerGet<{ data: JaegerTrace[] | null }>('/api/traces?service=backend&limit=20&lookback=1h')).data ?? [];
        chain = traces.find((trace) => trace.spans.length === 5);
        return chain !== undefined;
      },
      90_000,
    );
    const instances = new Set(chain!.spans.map((span) => String(tagValue(chain!.processes[span.processID]!.tags, 'service.instance.id'))));
    assert.deepEqual([...instances].sort(), Object.values(CHAIN).map((i) => i.instanceId).sort());
    const services = (await jaegerGet<{ data: string[] | null }>('/api/services')).data ?? [];
    assert.deepEqual(services.sort(), ['backend', 'envoy']);
    for (const noise of NOISE) assert.ok(!services.includes(noise.serviceName), `${noise.serviceName} was not dropped`);
  });

  test('Prometheus scrapes RED, service-graph and OBI metrics with the processes as job/instance', async () => {
    await logsOnFailure(
      'spanmetrics for the three processes in Prometheus',
      async () => (await promQuery('sum by (instance) (traces_span_metrics_calls_total)')).length === 3,
      90_000,
    );
    const byInstance = (await promQuery('sum by (job, instance) (traces_span_metrics_calls_total)')).map((r) => `${r.metric.job}/${r.metric.instance}`).sort();
    assert.deepEqual(byInstance, ['backend/obi:103', 'envoy/obi:101', 'envoy/obi:102']);
    await logsOnFailure(
      'the service graph edges envoy -> envoy -> backend',
      async () => (await promQuery('traces_service_graph_request_total')).length >= 2,
      60_000,
    );
    const edges = (await promQuery('traces_service_graph_request_total')).map((r) => `${r.metric.client_service_instance_id}->${r.metric.server_service_instance_id}`).sort();
    assert.deepEqual(edges, ['obi:101->obi:102', 'obi:102->obi:103']);
    await logsOnFailure('OBI metrics of the kept processes', async () => (await promQuery('http_server_request_duration_seconds_count')).length === 3, 60_000);
    const obi = (await promQuery('http_server_request_duration_seconds_count')).map((r) => r.metric.instance).sort();
    assert.deepEqual(obi, ['obi:101', 'obi:102', 'obi:103']);
  });

  test("Jaeger's Monitor tab reads the call rates back from Prometheus", async () => {
    await logsOnFailure(
      'a call rate for envoy from /api/metrics/calls',
      async () => {
        const body = await jaegerGet<{ metrics?: { metricPoints?: { gaugeValue?: { doubleValue?: number } }[] }[] }>(
          `/api/metrics/calls?service=envoy&endTs=${Date.now()}&lookback=300000&step=5000&ratePer=60000`,
        );
        return (body.metrics ?? []).some((m) => (m.metricPoints ?? []).some((p) => (p.gaugeValue?.doubleValue ?? 0) > 0));
      },
      60_000,
    );
  });
});
