import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as YAML from 'yaml';
import { parseConfigText } from '../../src/config/load';
import { ConfigIssues } from '../../src/config/reader';
import { buildServiceConfig } from '../../src/config/service-config';

// The Helm chart (deploy/helm/spansieve): lint, render for several value sets, decode every
// rendered object strictly into the Kubernetes API types (scripts/k8s-validate), check the
// properties docs/kubernetes.md promises, run spansieve's own validation on the rendered config,
// and keep the plain manifests and the OBI values snippet in step with the chart. helm and
// k8s-validate come from scripts/install-peers.sh helm.

const ROOT = path.resolve(__dirname, '..', '..', '..');
const CHART = path.join(ROOT, 'deploy', 'helm', 'spansieve');
const PEERS = process.env.SPANSIEVE_PEERS_DIR ?? path.join(os.homedir(), '.cache', 'spansieve', 'peers');
const HELM = process.env.SPANSIEVE_HELM_BIN ?? path.join(PEERS, 'bin', 'helm');
const VALIDATE = process.env.SPANSIEVE_K8S_VALIDATE_BIN ?? path.join(PEERS, 'bin', 'k8s-validate');

const VALUE_SETS: Record<string, string[]> = {
  default: [],
  'process-selectors': ['ci/process-selectors-values.yaml'],
  servicemonitor: ['ci/servicemonitor-values.yaml'],
  minimal: ['ci/minimal-values.yaml'],
};

type Doc = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- rendered manifests, checked field by field

function run(cmd: string, args: string[], input?: string, env?: NodeJS.ProcessEnv): SpawnSyncReturns<string> {
  const result = spawnSync(cmd, args, { encoding: 'utf8', input, cwd: ROOT, env: env ?? process.env, timeout: 60_000 });
  if (result.error) throw new Error(`${cmd}: ${result.error.message} (scripts/install-peers.sh helm installs helm and k8s-validate)`);
  return result;
}

function helm(...args: string[]): SpawnSyncReturns<string> {
  return run(HELM, args);
}

function valuesArgs(set: string): string[] {
  return (VALUE_SETS[set] ?? []).flatMap((file) => ['-f', path.join(CHART, file)]);
}

const rendered = new Map<string, string>();
function render(set: string): string {
  let text = rendered.get(set);
  if (text === undefined) {
    const result = helm('template', 'spansieve', CHART, '--namespace', 'spansieve', ...valuesArgs(set));
    assert.equal(result.status, 0, result.stderr);
    text = result.stdout;
    rendered.set(set, text);
  }
  return text;
}

function objects(set: string): Doc[] {
  return YAML.parseAllDocuments(render(set))
    .map((d) => d.toJS() as Doc | null)
    .filter((d): d is Doc => d !== null);
}

function find(docs: Doc[], kind: string): Doc {
  const found = docs.filter((d) => d.kind === kind);
  assert.ok(found.length === 1 && found[0], `one ${kind}`);
  return found[0];
}

function container(docs: Doc[]): Doc {
  const ds = find(docs, 'DaemonSet');
  assert.equal(ds.spec.template.spec.containers.length, 1);
  return ds.spec.template.spec.containers[0] as Doc;
}

describe('Helm chart deploy/helm/spansieve', () => {
  for (const set of Object.keys(VALUE_SETS)) {
    test(`${set} values: helm lint --strict passes and every rendered object decodes strictly`, () => {
      const lint = helm('lint', '--strict', CHART, ...valuesArgs(set));
      assert.equal(lint.status, 0, lint.stdout + lint.stderr);
      const validate = run(VALIDATE, [], render(set));
      assert.equal(validate.status, 0, validate.stdout + validate.stderr);
      const kinds = ['ConfigMap', 'Service', 'DaemonSet', ...(set === 'servicemonitor' ? ['ServiceMonitor'] : [])];
      assert.deepEqual(
        validate.stdout.trim().split('\n').map((line) => /^ok ([A-Za-z]+)\//.exec(line)?.[1]).sort(),
        kinds.sort(),
        validate.stdout,
      );
    });

    test(`${set} values: spansieve accepts the rendered config with the DaemonSet's environment`, () => {
      const docs = objects(set);
      // The container's environment; values from the API (node name, secrets) stand in as text.
      const env: NodeJS.ProcessEnv = {};
      for (const entry of container(docs).env as { name: string; value?: string }[]) env[entry.name] = entry.value ?? 'from-the-api';
      // What `spansieve validate` does (loadConfig), with that environment instead of this process's.
      const issues = new ConfigIssues();
      const doc = parseConfigText(find(docs, 'ConfigMap').data['config.yaml'] as string, 'config.yaml', issues, env);
      assert.ok(doc !== undefined, issues.errors.join('\n'));
      const config = buildServiceConfig(doc, issues);
      assert.deepEqual(config.pipelines.map((p) => p.id).sort(), ['metrics', 'metrics/traces', 'traces']);
    });
  }

  test('the validator rejects an unknown field, a misplaced field and a wrong type (it is strict)', () => {
    const cases: [string, (text: string) => string, RegExp][] = [
      ['unknown container field', (t) => t.replace('imagePullPolicy: IfNotPresent', 'imagePullPolicy: IfNotPresent\n          restartPolicyy: Always'), /unknown field "spec.template.spec.containers\[0\].restartPolicyy"/],
      ['field of the pod spec in the DaemonSet spec', (t) => t.replace(/^spec:\n {2}selector:/m, 'spec:\n  hostPID: true\n  selector:'), /unknown field "spec.hostPID"/],
      ['string for a boolean', (t) => t.replace('hostPID: true', 'hostPID: "yes"'), /hostPID|cannot unmarshal|bool/],
      ['port name longer than 15 characters', (t) => t.replace('- name: otlp-grpc\n              containerPort', '- name: otlp-grpc-receiver-port\n              containerPort'), /otlp-grpc-receiver-port/],
    ];
    for (const [what, mutate, message] of cases) {
      const text = mutate(render('default'));
      assert.notEqual(text, render('default'), `${what}: the mutation applies`);
      const result = run(VALIDATE, [], text);
      assert.equal(result.status, 1, `${what}: ${result.stdout}`);
      assert.match(result.stdout, message, what);
    }
  });

  test('values.schema.json rejects unknown keys and out-of-range ports; contradictory values fail with a message', () => {
    for (const [args, message] of [
      [['--set', 'replicas=3'], /additional properties 'replicas' not allowed|replicas/],
      [['--set', 'ports.otlpGrpc.port=70000'], /70000|maximum/],
      [['--set', 'processSelectors.readOtherUser=true'], /readOtherUser/],
      [['--set', 'config.servce.pipelines=null'], /servce/],
      [['--set', 'processSelectors.enabled=false', '--set', 'processSelectors.readOtherUsers=true'], /readOtherUsers needs processSelectors.enabled/],
      [['--set', 'service.enabled=false', '--set', 'serviceMonitor.enabled=true'], /serviceMonitor.enabled needs service.enabled/],
    ] as [string[], RegExp][]) {
      const result = helm('template', 'spansieve', CHART, ...args);
      assert.notEqual(result.status, 0, `${args.join(' ')} must fail`);
      assert.match(result.stderr, message, args.join(' '));
    }
  });

  test('default: DaemonSet with hostPorts 4317/4318, hostPID, non-root without capabilities, probes on health_check', () => {
    const docs = objects('default');
    const pod = find(docs, 'DaemonSet').spec.template.spec;
    const c = container(docs);
    assert.equal(pod.hostPID, true);
    assert.equal(pod.hostNetwork, undefined);
    assert.equal(pod.automountServiceAccountToken, false);
    const ports = Object.fromEntries((c.ports as Doc[]).map((p) => [p.name, p]));
    assert.equal(ports['otlp-grpc'].hostPort, 4317);
    assert.equal(ports['otlp-http'].hostPort, 4318);
    assert.deepEqual(
      (c.ports as Doc[]).filter((p) => p.hostPort !== undefined).map((p) => p.name as string),
      ['otlp-grpc', 'otlp-http'],
    );
    assert.deepEqual(c.securityContext, {
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      runAsUser: 1000,
      runAsGroup: 1000,
      runAsNonRoot: true,
      capabilities: { drop: ['ALL'] },
    });
    for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) assert.deepEqual(c[probe].httpGet, { path: '/', port: 'health' }, probe);
    assert.ok(c.resources.limits.memory && c.resources.requests.cpu);
    // bin/spansieve sets V8's heap limit from memory_limiter: no NODE_OPTIONS unless asked.
    assert.ok(!(c.env as Doc[]).some((e) => e.name === 'NODE_OPTIONS'));
    const svc = find(docs, 'Service');
    assert.equal(svc.spec.internalTrafficPolicy, 'Local');
    // The config reloads in place: mounted as a directory (a subPath mount never updates), and no
    // checksum annotation that would restart the pods on every config change.
    const mount = (c.volumeMounts as Doc[]).find((m) => m.mountPath === '/etc/spansieve')!;
    assert.equal(mount.subPath, undefined);
    assert.equal(mount.readOnly, true);
    assert.deepEqual(c.args, ['--config', '/etc/spansieve/config.yaml']);
    assert.equal(find(docs, 'DaemonSet').spec.template.metadata.annotations, undefined);
  });

  test('process-selectors: root with exactly CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH, AppArmor unconfined', () => {
    const docs = objects('process-selectors');
    const c = container(docs);
    assert.equal(find(docs, 'DaemonSet').spec.template.spec.hostPID, true);
    assert.equal(c.securityContext.runAsUser, 0);
    assert.equal(c.securityContext.allowPrivilegeEscalation, false);
    assert.equal(c.securityContext.privileged, undefined);
    assert.deepEqual(c.securityContext.capabilities, { drop: ['ALL'], add: ['SYS_PTRACE', 'DAC_READ_SEARCH'] });
    assert.deepEqual(c.securityContext.appArmorProfile, { type: 'Unconfined' });
  });

  test('servicemonitor: scrapes the prometheus port with honorLabels and the self-metrics port', () => {
    const docs = objects('servicemonitor');
    const sm = find(docs, 'ServiceMonitor');
    assert.equal(sm.metadata.labels.release, 'kube-prometheus-stack');
    assert.deepEqual(
      (sm.spec.endpoints as Doc[]).map((e): unknown[] => [e.port, e.honorLabels ?? false, e.interval]),
      [
        ['prometheus', true, '15s'],
        ['metrics', false, '15s'],
      ],
    );
  });

  test('minimal: no hostPID, no hostPort, the overridden names, image and health path', () => {
    const docs = objects('minimal');
    const ds = find(docs, 'DaemonSet');
    const c = container(docs);
    assert.equal(ds.metadata.name, 'sieve');
    assert.equal(ds.spec.template.spec.hostPID, false);
    assert.ok((c.ports as Doc[]).every((p) => p.hostPort === undefined));
    assert.equal(c.image, 'registry.example.com/observability/spansieve:0.1.0-rc.1');
    assert.equal(c.readinessProbe.httpGet.path, '/healthz');
    assert.deepEqual(c.resources, { requests: { cpu: '50m', memory: '96Mi' }, limits: { cpu: '500m', memory: '192Mi' } });
    assert.ok((c.env as Doc[]).some((e) => e.name === 'NODE_OPTIONS' && e.value === '--max-old-space-size=150'));
  });

  test('deploy/kubernetes/spansieve.yaml is the default render (scripts/render-manifests.sh)', () => {
    const result = run('bash', [path.join(ROOT, 'scripts', 'render-manifests.sh')], undefined, { ...process.env, SPANSIEVE_HELM_BIN: HELM });
    assert.equal(result.status, 0, result.stderr);
    const committed = fs.readFileSync(path.join(ROOT, 'deploy', 'kubernetes', 'spansieve.yaml'), 'utf8');
    assert.ok(committed === result.stdout, 'deploy/kubernetes/spansieve.yaml is stale: bash scripts/render-manifests.sh > deploy/kubernetes/spansieve.yaml');
  });

  test("deploy/helm/obi-values.yaml points OBI at the chart's hostPorts and excludes the chart's pods", () => {
    const obi = YAML.parse(fs.readFileSync(path.join(ROOT, 'deploy', 'helm', 'obi-values.yaml'), 'utf8')) as Doc;
    const data = obi.config.data;
    assert.deepEqual([data.otel_traces_export.endpoint, data.otel_traces_export.protocol], ['http://${HOST_IP}:4317', 'grpc']);
    assert.deepEqual([data.otel_metrics_export.endpoint, data.otel_metrics_export.protocol], ['http://${HOST_IP}:4318', 'http/protobuf']);
    const podLabels = find(objects('default'), 'DaemonSet').spec.template.metadata.labels as Record<string, string>;
    const exclusion = (data.discovery.exclude_instrument as Doc[]).map((e) => e.k8s_pod_labels as Record<string, string>);
    assert.ok(
      exclusion.some((labels) => Object.entries(labels).every(([k, v]) => podLabels[k] === v)),
      `an exclude_instrument entry matches the pods' labels ${JSON.stringify(podLabels)}`,
    );
  });
});
