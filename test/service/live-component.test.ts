import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import * as YAML from 'yaml';
import type { Component, Consumer, ProcessorFactory } from '../../src/component/component';
import type { LiveReconfigurable } from '../../src/component/live';
import { allFactories, factoryList } from '../../src/components';
import { parseConfigText } from '../../src/config/load';
import { ConfigIssues, ConfigValidationError } from '../../src/config/reader';
import { buildServiceConfig, type ServiceConfig } from '../../src/config/service-config';
import type { Batch } from '../../src/pdata/batch';
import { Supervisor } from '../../src/service/supervisor';
import { encodeTraces, hostInstance, obiResourceSpans, obiSpan } from '../helpers/obi';
import { freePorts } from '../helpers/ports';

// A second live-editable component, unknown to src/: a processor that lets batches through or
// not. Registered through its own factory list, it is listed, edited, tried, saved and reloaded in
// place through the same ServiceControl, admin API and Supervisor as the filter processor, which
// is the point: nothing in service/ knows either of them.

interface GateConfig {
  readonly open: boolean;
  /** Not live: a change restarts the service. */
  readonly label: string;
}

class Gate implements Component, Consumer, LiveReconfigurable<GateConfig> {
  passed = 0;
  stopped = 0;

  constructor(
    public config: GateConfig,
    private readonly next: Consumer,
  ) {}

  reconfigure(config: GateConfig): void {
    this.config = config;
  }

  consume(batch: Batch): Promise<void> {
    if (!this.config.open) {
      this.stopped += batch.itemCount;
      return Promise.resolve();
    }
    this.passed += batch.itemCount;
    return this.next.consume(batch);
  }

  async start(): Promise<void> {}
  async shutdown(): Promise<void> {}
}

const gates: Gate[] = [];

const gateFactory: ProcessorFactory<GateConfig> = {
  type: 'gate',
  kind: 'processor',
  signals: ['traces', 'metrics'],
  parseConfig(node) {
    const at = node.struct(['open', 'label']);
    return { open: at('open').boolean(true), label: at('label').string('') };
  },
  live: {
    keys: ['open'],
    current: (config) => ({ open: config.open }),
    appliesInPlace: (before, after) => JSON.stringify((before as { label?: unknown } | null)?.label) === JSON.stringify((after as { label?: unknown } | null)?.label),
    decide: (config) => ({ kept: config.open, selector: config.open ? 'open' : null }),
  },
  create: (_settings, config, _signal, next) => {
    const gate = new Gate(config, next);
    gates.push(gate);
    return gate;
  },
};

describe('a live-editable component the service does not know', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spansieve-live-'));
  const file = path.join(dir, 'spansieve.yaml');
  let supervisor: Supervisor;
  let httpPort: number;
  let adminPort: number;

  const load = (): ServiceConfig => {
    const issues = new ConfigIssues();
    const doc = parseConfigText(fs.readFileSync(file, 'utf8'), file, issues);
    if (issues.errors.length > 0) throw new ConfigValidationError(issues.errors);
    return buildServiceConfig(doc, issues, factoryList([...allFactories(), gateFactory]));
  };
  const control = () => supervisor.service!;
  const send = async () => {
    const body = encodeTraces([obiResourceSpans(hostInstance('web-1', 4242), [obiSpan(), obiSpan()])]);
    const res = await fetch(`http://127.0.0.1:${httpPort}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/x-protobuf' }, body });
    assert.equal(res.status, 200);
  };
  const editFile = (edit: (doc: YAML.Document) => void) => {
    const doc = YAML.parseDocument(fs.readFileSync(file, 'utf8'));
    edit(doc);
    fs.writeFileSync(file, doc.toString());
  };

  before(async () => {
    [httpPort, adminPort] = await freePorts(2);
    fs.writeFileSync(
      file,
      `receivers:
  otlp:
    protocols:
      http: { endpoint: 127.0.0.1:${httpPort} }
processors:
  filter/obi: {}
  gate/a:
    open: false   # closed at first
    label: first
exporters:
  debug: { verbosity: basic }
extensions:
  admin: { endpoint: 127.0.0.1:${adminPort} }
service:
  extensions: [admin]
  pipelines:
    traces: { receivers: [otlp], processors: [filter/obi, gate/a], exporters: [debug] }
  telemetry: { metrics: { level: none } }
`,
    );
    supervisor = new Supervisor(load, pino({ level: 'silent' }), file);
    await supervisor.start();
  });

  after(async () => {
    await supervisor?.shutdown();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('is listed beside the filter, edited in place (invalid edits change nothing), tried and saved', async () => {
    assert.equal(gates.length, 1);
    const gate = gates[0]!;
    assert.deepEqual(Object.fromEntries(control().liveSettings()), { 'filter/obi': { keep: undefined, drop: [] }, 'gate/a': { open: false } });
    const listed = await (await fetch(`http://127.0.0.1:${adminPort}/api/v1/filters`)).json();
    assert.deepEqual(listed, { 'filter/obi': { drop: [] }, 'gate/a': { open: false } });

    await send();
    assert.deepEqual([gate.passed, gate.stopped], [0, 2]);

    assert.deepEqual(control().setLive('gate/a', { open: 'wide' }), ['processors::gate/a::open: expected true or false, got "wide"']);
    assert.deepEqual(control().setLive('gate/a', { open: true, label: 'x' }), ['label: unknown key (allowed: open)']);
    assert.deepEqual(control().setLive('gate/a', []), ['expected a mapping, got a list']);
    assert.deepEqual(control().setLive('gate/a', null), ['the body must be a JSON object with "open"']);
    assert.equal(gate.config.open, false, 'an invalid edit changes nothing');

    // Through the admin API: the same PUT as for a filter.
    const put = await fetch(`http://127.0.0.1:${adminPort}/api/v1/filters/gate%2Fa`, { method: 'PUT', body: JSON.stringify({ open: true }) });
    assert.equal(put.status, 200);
    assert.deepEqual(await put.json(), { open: true });
    assert.equal(gates.length, 1, 'reconfigured, not rebuilt');
    assert.deepEqual(gate.config, { open: true, label: 'first' }, 'the keys that are not live stay as configured');
    await send();
    assert.deepEqual([gate.passed, gate.stopped], [2, 2]);

    // A dry run decides through the gate's own decide(), and changes nothing.
    assert.deepEqual(control().dryRun('gate/a', { open: false }), { errors: [], instances: [{ id: 'web-1:4242', kept: false, selector: null }] });
    assert.deepEqual(control().dryRun('gate/a', {}), { errors: [], instances: [{ id: 'web-1:4242', kept: true, selector: 'open' }] });
    assert.equal(gate.config.open, true);

    await control().saveLive('gate/a');
    const saved = fs.readFileSync(file, 'utf8');
    assert.deepEqual((YAML.parse(saved) as { processors: Record<string, unknown> }).processors['gate/a'], { open: true, label: 'first' });
    assert.match(saved, /label: first/);
  });

  test('a reload changing only its live keys reconfigures it in place; any other change of it restarts', async () => {
    const gate = gates[0]!;
    editFile((doc) => doc.setIn(['processors', 'gate/a', 'open'], false));
    assert.deepEqual(await supervisor.reload('test'), { kind: 'filters', ids: ['gate/a'] });
    assert.equal(gates.length, 1);
    assert.equal(gate.config.open, false);

    editFile((doc) => doc.setIn(['processors', 'gate/a', 'label'], 'second'));
    assert.deepEqual(await supervisor.reload('test'), { kind: 'restarted' });
    assert.equal(gates.length, 2, 'a new service built a new gate');
    assert.deepEqual(gates[1]!.config, { open: false, label: 'second' });
    assert.deepEqual(Object.fromEntries(control().liveSettings())['gate/a'], { open: false });
  });
});
