import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, test } from 'node:test';
import pino from 'pino';
import { PermanentError } from '../../../src/component/errors';
import { ConfigIssues, Node } from '../../../src/config/reader';
import type { Batch } from '../../../src/pdata/batch';
import { types } from '../../../src/pdata/codec';
import { parseRequest } from '../../../src/pdata/scan';
import { FilterProcessor, parseFilterConfig, type FilterConfig } from '../../../src/processors/filter/filter';
import { SelfTelemetry } from '../../../src/service/telemetry';
import { Capture, testSettings } from '../../helpers/components';
import { encodeTraces, hostInstance, obiResourceSpans, obiSpan } from '../../helpers/obi';

// The Collector's filter processor config (error_mode, traces / metrics blocks, trace_conditions)
// in spansieve's filter: validation, resource-level decisions on the fast path, span-level on the wire.

const PATH = 'processors::filter';

function errorsOf(raw: unknown): string[] {
  const issues = new ConfigIssues();
  parseFilterConfig(new Node(raw, PATH, issues));
  return issues.errors;
}

function config(raw: unknown): FilterConfig {
  const issues = new ConfigIssues();
  const c = parseFilterConfig(new Node(raw, PATH, issues));
  assert.deepEqual(issues.errors, []);
  return c;
}

const SEED = {
  error_mode: 'ignore',
  traces: { span: ['not ContainsValue(["ip-10-0-1-5:297514", "ip-10-0-1-5:297533"], resource.attributes["service.instance.id"])'] },
};

const health = (): ReturnType<typeof obiSpan> => obiSpan({ name: 'GET /health', attributes: [{ key: 'url.path', value: { stringValue: '/health' } }] });
const users = (): ReturnType<typeof obiSpan> => obiSpan();

function request(): Buffer {
  return encodeTraces([
    obiResourceSpans(hostInstance('ip-10-0-1-5', 297514, 'envoy'), [health(), users()]),
    obiResourceSpans(hostInstance('ip-10-0-1-5', 297533, 'backend'), [users(), users()]),
    obiResourceSpans(hostInstance('ip-10-0-1-5', 1, 'sshd'), [users()]),
    obiResourceSpans(hostInstance('ip-10-0-1-5', 297600, 'envoy'), [health()]),
  ]);
}

async function run(raw: unknown, body: Buffer = request()): Promise<{ out: Batch | undefined; input: Batch; processor: FilterProcessor }> {
  const capture = new Capture();
  const processor = new FilterProcessor(testSettings('filter', new SelfTelemetry()), config(raw), 'traces', capture);
  const input = parseRequest('traces', body, (a) => processor.mayKeep(a)).batch;
  await processor.consume(input);
  return { out: capture.batches[0], input, processor };
}

function spanNames(batch: Batch | undefined): string[][] {
  return (batch?.resources ?? []).map((b) => {
    const rs = types.ResourceSpans.toObject(types.ResourceSpans.decode(b.bytes)) as { scopeSpans?: { spans?: { name: string }[] }[] };
    return (rs.scopeSpans ?? []).flatMap((ss) => (ss.spans ?? []).map((s) => s.name));
  });
}

describe('filter: the Collector OTTL config', () => {
  test('the seed config, trace_conditions (flat and structured) and metrics.resource are accepted', () => {
    config(SEED);
    config({ trace_conditions: ['resource.attributes["service.name"] == "x"', 'span.attributes["url.path"] == "/health"', 'spanevent.name == "e"', 'scope.name == "s"'] });
    config({ error_mode: 'silent', trace_conditions: [{ context: 'span', conditions: ['name == "x"'], error_mode: 'propagate' }, { conditions: ['span.kind == SPAN_KIND_CLIENT'] }] });
    config({ error_mode: 'propagate', metrics: { resource: ['resource.attributes["service.name"] == "x"'] } });
    config({ metric_conditions: ['resource.attributes["service.name"] == "x"'], keep: [{ 'service.name': 'x' }] });
  });

  test('an unsupported function or path is refused at its key path, pointing to docs/ottl.md', () => {
    const errors = errorsOf({ traces: { span: ['name == "x"', 'SHA256(name) == "x"'], spanevent: ['nme == "x"'] } });
    assert.equal(errors.length, 2, errors.join('\n'));
    assert.match(errors[0]!, /^processors::filter::traces::span\[1\]: unable to parse OTTL condition .*SHA256.*docs\/ottl\.md/);
    assert.match(errors[1]!, /^processors::filter::traces::spanevent\[0\]: .*"nme".*docs\/ottl\.md/);
    const inferred = errorsOf({ trace_conditions: ['name == "x"'] });
    assert.match(inferred[0]!, /^processors::filter::trace_conditions\[0\]: .*docs\/ottl\.md/);
  });

  test('unknown keys list the OTTL keys; conflicting and mixed styles are refused as in the Collector', () => {
    assert.match(errorsOf({ spans: {} })[0]!, /processors::filter::spans: unknown key \(allowed: keep, drop, host_names, process_refresh_interval, error_mode, traces, metrics, trace_conditions, metric_conditions\)/);
    assert.match(errorsOf({ traces: { logs: [] } })[0]!, /processors::filter::traces::logs: unknown key \(allowed: resource, span, spanevent\)/);
    assert.match(errorsOf({ error_mode: 'warn' })[0]!, /processors::filter::error_mode: must be one of propagate, ignore, silent/);
    assert.match(errorsOf({ traces: { span: ['true'] }, trace_conditions: ['span.name == "x"'] })[0]!, /cannot use context inferred trace conditions/);
    assert.match(errorsOf({ trace_conditions: ['span.name == "x"', { conditions: ['span.name == "y"'] }] })[0]!, /multiple configuration styles/);
    assert.match(errorsOf({ trace_conditions: [{ context: 'metric', conditions: ['name == "y"'] }] })[0]!, /trace_conditions\[0\]::context: unknown context "metric"/);
  });

  test('metric-, datapoint- and scope-level metric conditions are accepted; a bad one is refused at its key path', () => {
    config({ metrics: { metric: ['name == "x"', 'type == METRIC_DATA_TYPE_SUM'], datapoint: ['attributes["a"] == "b"'] } });
    config({ metric_conditions: ['datapoint.attributes["a"] == "b"', 'metric.name == "x"', 'scope.name == "s"'] });
    config({ metric_conditions: [{ context: 'metric', conditions: ['HasAttrOnDatapoint("a", "b")'] }] });
    config({ metric_conditions: [{ context: 'datapoint', conditions: ['value_int == 0'], error_mode: 'propagate' }] });
    assert.match(errorsOf({ metrics: { datapoint: ['nme == "x"'] } })[0]!, /^processors::filter::metrics::datapoint\[0\]: unable to parse OTTL condition/);
  });
});

describe('filter: resource-level OTTL on the fast path', () => {
  test('the seed config keeps the listed instances byte for byte; mayKeep answers for the dropped ones once seen', async () => {
    const { out, input, processor } = await run(SEED);
    assert.equal(out?.resources.length, 2);
    assert.equal(out?.resources[0], input.resources[0], 'same block object');
    assert.equal(out?.resources[0]?.bytes, input.resources[0]?.bytes, 'same bytes view');
    assert.equal(out?.itemCount, 4);
    assert.equal(processor.mayKeep(input.resources[2]!.attributes), false);
    assert.equal(processor.mayKeep(input.resources[0]!.attributes), true);
    // The second request: the dropped resources are only counted by the receiver, not checked.
    const again = parseRequest('traces', request(), (a) => processor.mayKeep(a)).batch;
    assert.deepEqual(again.resources.map((b) => b.unchecked ?? false), [false, false, true, true]);
  });

  test('an int-valued service.instance.id: a selector "100" keeps it, OTTL != "100" differs from it', async () => {
    const body = encodeTraces([{ resource: { attributes: [{ key: 'service.instance.id', value: { intValue: 100 } }] }, scopeSpans: [{ scope: {}, spans: [users()] }] }] as never);
    assert.equal((await run({ keep: [{ 'service.instance.id': '100' }] }, body)).out?.resources.length, 1);
    assert.equal((await run({ traces: { span: ['resource.attributes["service.instance.id"] != "100"'] } }, body)).out, undefined);
    assert.equal((await run({ traces: { span: ['resource.attributes["service.instance.id"] != 100'] } }, body)).out?.resources.length, 1);
  });

  test('keep selectors decide first, OTTL conditions drop from what they keep', async () => {
    const { out } = await run({ keep: [{ 'service.name': 'envoy' }], traces: { resource: ['attributes["service.instance.id"] == "ip-10-0-1-5:297600"'] } });
    assert.deepEqual(spanNames(out), [['GET /health', 'GET /users/*']]);
  });

  test('resource.dropped_attributes_count and schema_url are read from the block', async () => {
    const body = encodeTraces([
      { resource: { attributes: [], droppedAttributesCount: 3 }, scopeSpans: [{ scope: {}, spans: [users()] }], schemaUrl: 'https://x/1' },
      { resource: { attributes: [], droppedAttributesCount: 0 }, scopeSpans: [{ scope: {}, spans: [users()] }], schemaUrl: 'https://x/2' },
    ] as never);
    assert.equal((await run({ traces: { resource: ['dropped_attributes_count > 2'] } }, body)).out?.resources.length, 1);
    assert.equal((await run({ trace_conditions: ['resource.schema_url == "https://x/2"'] }, body)).out?.resources.length, 1);
  });

  test('a resource without scopes is removed by resource conditions, as in the Collector', async () => {
    const body = encodeTraces([{ resource: { attributes: [] }, scopeSpans: [] }, { resource: { attributes: [] }, scopeSpans: [{ scope: {}, spans: [] }] }] as never);
    assert.equal((await run({ traces: { resource: ['false'] } }, body)).out?.resources.length, 1);
    // Span conditions also remove empty scopes, hence both resources.
    assert.equal((await run({ traces: { span: ['name == "nothing"'] } }, body)).out, undefined);
    // Without OTTL nothing changes.
    assert.equal((await run({}, body)).out?.resources.length, 2);
  });
});

describe('filter: span-level OTTL on the wire', () => {
  test('health checks are dropped; a resource that loses nothing keeps its bytes', async () => {
    const { out, input } = await run({ error_mode: 'ignore', traces: { span: ['attributes["url.path"] == "/health"'] } });
    assert.deepEqual(spanNames(out), [['GET /users/*'], ['GET /users/*', 'GET /users/*'], ['GET /users/*']]);
    assert.notEqual(out?.resources[0]?.bytes, input.resources[0]?.bytes);
    assert.equal(out?.resources[1]?.bytes, input.resources[1]?.bytes, 'untouched resource: same view');
    assert.deepEqual(out?.resources.map((b) => b.itemCount), [1, 2, 1]);
    assert.equal(out?.itemCount, 4);
  });

  test('span events are removed from their span; the span stays', async () => {
    const span = { ...users(), events: [{ name: 'exception', timeUnixNano: '1', attributes: [{ key: 'exception.type', value: { stringValue: 'IOError' } }] }, { name: 'log', timeUnixNano: '2' }] };
    const body = encodeTraces([{ resource: { attributes: [] }, scopeSpans: [{ scope: { name: 's' }, spans: [span] }] }] as never);
    const { out } = await run({ traces: { spanevent: ['attributes["exception.type"] == "IOError"'] } }, body);
    const rs = types.ResourceSpans.toObject(types.ResourceSpans.decode(out!.resources[0]!.bytes)) as { scopeSpans: { spans: { events?: { name: string }[] }[] }[] };
    assert.deepEqual(rs.scopeSpans[0]!.spans[0]!.events?.map((e) => e.name), ['log']);
    assert.equal(out?.itemCount, 1);
  });

  test('error_mode propagate fails the batch with a permanent error; ignore and silent go on', async () => {
    const raw = (mode: string): unknown => ({ error_mode: mode, traces: { span: ['Substring(name, 0, 12) == "GET /health/"', 'name == "GET /health"'] } });
    await assert.rejects(run(raw('propagate')), (err: Error) => err instanceof PermanentError && /failed to eval condition: Substring/.test(err.message));
    for (const mode of ['ignore', 'silent']) {
      const { out } = await run(raw(mode));
      assert.deepEqual(spanNames(out), [['GET /users/*'], ['GET /users/*', 'GET /users/*'], ['GET /users/*']], mode);
    }
  });
});

describe('filter: OTTL rules at run time', () => {
  async function counterValue(telemetry: SelfTelemetry, name: string): Promise<number | undefined> {
    if (telemetry.registry.getSingleMetric(name) === undefined) return undefined;
    const text = await telemetry.registry.getSingleMetricAsString(name);
    const line = text.split('\n').find((l) => l.startsWith(`${name}{processor="filter"} `));
    return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
  }

  test('spans dropped by conditions are counted in otelcol_processor_filter_spans_filtered', async () => {
    const telemetry = new SelfTelemetry();
    const processor = new FilterProcessor(testSettings('filter', telemetry), config({ keep: [{ 'service.name': 'envoy' }], traces: { span: ['name == "GET /health"'] } }), 'traces', new Capture());
    await processor.consume(parseRequest('traces', request()).batch);
    // sshd and backend by the selector (3 spans), the two health checks of envoy by the condition.
    assert.equal(await counterValue(telemetry, 'otelcol_processor_filter_spans_filtered'), 5);
  });

  test('new rules (setConfig) forget the cached verdicts; a resource read unchecked is checked before it is kept', async () => {
    const capture = new Capture();
    const processor = new FilterProcessor(testSettings('filter', new SelfTelemetry()), config(SEED), 'traces', capture);
    await processor.consume(parseRequest('traces', request(), (a) => processor.mayKeep(a)).batch);
    const second = parseRequest('traces', request(), (a) => processor.mayKeep(a)).batch;
    assert.equal(second.resources[2]?.unchecked, true);
    processor.reconfigure(config({ traces: { span: ['name == "GET /health"'] } }));
    assert.equal(processor.mayKeep(second.resources[2].attributes), true);
    await processor.consume(second);
    const out = capture.batches[1];
    assert.deepEqual(spanNames(out), [['GET /users/*'], ['GET /users/*', 'GET /users/*'], ['GET /users/*']]);
    assert.ok(out?.resources.every((b) => !b.unchecked));
  });

  test('error_mode ignore logs a failing condition at most once per 10 s; silent does not log', async () => {
    for (const [mode, expected] of [['ignore', 1], ['silent', 0]] as const) {
      const lines: string[] = [];
      const logger = pino({ level: 'warn' }, new Writable({ write(chunk: Buffer, _enc, done) { lines.push(chunk.toString()); done(); } }));
      const processor = new FilterProcessor({ ...testSettings('filter', new SelfTelemetry()), logger }, config({ error_mode: mode, traces: { span: ['Substring(name, 0, 12) == "x"'] } }), 'traces', new Capture());
      await processor.consume(parseRequest('traces', request()).batch);
      await processor.consume(parseRequest('traces', request()).batch);
      await new Promise((resolve) => setImmediate(resolve));
      assert.equal(lines.length, expected, `${mode}: ${lines.join('')}`);
      if (expected) assert.match(lines[0]!, /Substring\(name, 0, 12\).*error_mode: ignore/);
    }
  });

  test('a metrics pipeline applies metrics.resource conditions and not the traces ones', async () => {
    const type = types.ExportMetricsServiceRequest;
    const gauge = { name: 'g', gauge: { dataPoints: [{ asDouble: 1, timeUnixNano: '1' }] } };
    const body = Buffer.from(type.encode(type.fromObject({ resourceMetrics: ['a', 'b'].map((name) => ({ resource: { attributes: [{ key: 'service.name', value: { stringValue: name } }] }, scopeMetrics: [{ metrics: [gauge] }] })) })).finish());
    const capture = new Capture();
    const processor = new FilterProcessor(testSettings('filter', new SelfTelemetry()), config({ traces: { resource: ['true'] }, metrics: { resource: ['attributes["service.name"] == "a"'] } }), 'metrics', capture);
    await processor.consume(parseRequest('metrics', body, (a) => processor.mayKeep(a)).batch);
    assert.deepEqual(capture.resourceMetrics().map((rm) => rm.resource?.attributes?.[0]?.value.stringValue), ['b']);
  });

  const metricsBody = (): Buffer => {
    const type = types.ExportMetricsServiceRequest;
    const point = (route: string, v: number): unknown => ({ asDouble: v, timeUnixNano: '1', attributes: [{ key: 'http.route', value: { stringValue: route } }] });
    return Buffer.from(type.encode(type.fromObject({ resourceMetrics: [
      { resource: { attributes: [{ key: 'service.name', value: { stringValue: 'a' } }] }, scopeMetrics: [{ metrics: [{ name: 'g', gauge: { dataPoints: [point('/health', 1), point('/api', 2), point('/health', 3)] } }] }] },
      { resource: { attributes: [{ key: 'service.name', value: { stringValue: 'b' } }] }, scopeMetrics: [{ metrics: [{ name: 'h', gauge: { dataPoints: [point('/health', 4)] } }] }] },
    ] })).finish());
  };

  test('a legacy datapoint rule drops the points it matches, then emptied metrics and resources; the points are counted', async () => {
    const telemetry = new SelfTelemetry();
    const capture = new Capture();
    const processor = new FilterProcessor(testSettings('filter', telemetry), config({ metrics: { datapoint: ['attributes["http.route"] == "/health"'] } }), 'metrics', capture);
    await processor.consume(parseRequest('metrics', metricsBody(), (a) => processor.mayKeep(a)).batch);
    const left = capture.resourceMetrics();
    assert.deepEqual(left.map((rm) => rm.resource?.attributes?.[0]?.value.stringValue), ['a']);
    const points = (left[0]?.scopeMetrics?.[0]?.metrics?.[0] as { gauge?: { dataPoints?: { asDouble?: number }[] } } | undefined)?.gauge?.dataPoints;
    assert.deepEqual(points?.map((p) => p.asDouble), [2]);
    assert.equal(capture.batches[0]?.itemCount, 1);
    assert.equal(await counterValue(telemetry, 'otelcol_processor_filter_datapoints_filtered'), 3);
  });

  test('error_mode propagate fails a metrics batch with a permanent error; ignore goes on', async () => {
    const raw = (mode: string): unknown => ({ error_mode: mode, metrics: { datapoint: ['attributes["http.route"][0] == "x"'] } });
    const run = async (mode: string): Promise<Capture> => {
      const capture = new Capture();
      const processor = new FilterProcessor(testSettings('filter', new SelfTelemetry()), config(raw(mode)), 'metrics', capture);
      await processor.consume(parseRequest('metrics', metricsBody()).batch);
      return capture;
    };
    await assert.rejects(run('propagate'), (err: Error) => err instanceof PermanentError);
    assert.equal((await run('ignore')).batches[0]?.itemCount, 4);
  });
});
