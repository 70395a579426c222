import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import pino from 'pino';
import type { Consumer } from '../../../src/component/component';
import { ConfigIssues, Node } from '../../../src/config/reader';
import type { AttrValue } from '../../../src/pdata/attributes';
import { Batch, type ResourceBlock, type Signal } from '../../../src/pdata/batch';
import { PermanentError } from '../../../src/component/errors';
import { parseRequest } from '../../../src/pdata/scan';
import { FanOut } from '../../../src/pipeline/graph';
import { decide, FilterProcessor, keeps, parseFilterConfig, type FilterConfig } from '../../../src/processors/filter/filter';
import { pidOfInstanceId } from '../../../src/pdata/instance-id';
import { parseSelector, SelectorList, type Selector } from '../../../src/processors/filter/selectors';
import { SelfTelemetry } from '../../../src/service/telemetry';
import { encodeTraces, hostInstance, obiResourceSpans, obiSpan } from '../../helpers/obi';

const ID = 'service.instance.id';

function attrs(values: Record<string, AttrValue>): Map<string, AttrValue> {
  return new Map(Object.entries(values));
}

function block(values: Record<string, AttrValue>, itemCount = 1): ResourceBlock {
  return { bytes: new Uint8Array([0x0a, itemCount]), attributes: attrs(values), itemCount };
}

/** Parses selectors as written in a config's keep list; fails the test on any config issue. */
function list(...written: Record<string, unknown>[]): SelectorList {
  const issues = new ConfigIssues();
  const selectors = written.map((value, i) => parseSelector(new Node(value, `keep[${i}]`, issues)));
  assert.deepEqual(issues.errors, []);
  return new SelectorList(selectors.map((s) => s!));
}

/** The written index of the selector matching these attributes, or -1. */
function matchIndex(selectors: SelectorList, values: Record<string, AttrValue>): number {
  const found = selectors.match(attrs(values));
  return found === undefined ? -1 : selectors.selectors.indexOf(found);
}

/** Which of these instance ids one selector matches. */
function matching(selector: Record<string, unknown>, ids: string[]): string[] {
  const selectors = list(selector);
  return ids.filter((id) => selectors.match(attrs({ [ID]: id })) !== undefined);
}

/** Config issues for one selector that should be refused. */
function refusal(value: Record<string, unknown>): string[] {
  const issues = new ConfigIssues();
  const selector = parseSelector(new Node(value, 'processors::filter::keep[0]', issues));
  assert.equal(selector, undefined);
  return issues.errors;
}

function filterConfig(value: Record<string, unknown>): FilterConfig {
  const issues = new ConfigIssues();
  const config = parseFilterConfig(new Node(value, 'processors::filter', issues));
  assert.deepEqual(issues.errors, []);
  return config;
}

void describe('selector conditions', () => {
  void test('exact values match the whole value, case-sensitively', () => {
    assert.deepEqual(matching({ [ID]: 'web-1:4242' }, ['web-1:4242', 'web-1:42420', 'xweb-1:4242', 'Web-1:4242', 'web-1:424']), ['web-1:4242']);
    const selector = list({ [ID]: 'web-1:4242' }).selectors[0]!;
    assert.deepEqual(selector.exact, { key: ID, value: 'web-1:4242' });
    assert.equal(selector.text, 'service.instance.id="web-1:4242"');
  });

  void test('globs: * is any run (also empty), ? one character, anchored at both ends, other characters literal', () => {
    assert.deepEqual(matching({ [ID]: 'edge-*:*' }, ['edge-7:100', 'edge-:1', 'edge-eu-1:', 'edge-7', 'xedge-7:1', 'EDGE-7:1']), ['edge-7:100', 'edge-:1', 'edge-eu-1:']);
    assert.deepEqual(matching({ [ID]: 'web-?:42' }, ['web-1:42', 'web-12:42', 'web-:42', 'web-1:421']), ['web-1:42']);
    assert.deepEqual(matching({ [ID]: 'a.b(c)*' }, ['a.b(c)', 'a.b(c)d', 'axb(c)d', 'a.bcd']), ['a.b(c)', 'a.b(c)d']);
    assert.deepEqual(matching({ [ID]: 'x[1]+?' }, ['x[1]+y', 'x1+y', 'x[1]y']), ['x[1]+y']);
    assert.equal(list({ [ID]: 'edge-*' }).selectors[0]!.exact, undefined);
  });

  void test('/regex/ is unanchored unless written so, and takes flags', () => {
    assert.deepEqual(matching({ [ID]: '/cart/' }, ['shop.cart-1.cart', 'cart', 'car-t']), ['shop.cart-1.cart', 'cart']);
    assert.deepEqual(matching({ [ID]: '/^web-\\d+:42$/' }, ['web-12:42', 'web-x:42', 'web-1:421', 'aweb-1:42']), ['web-12:42']);
    assert.deepEqual(matching({ [ID]: '/^WEB/i' }, ['web-1:1', 'WEB-2:2', 'aweb']), ['web-1:1', 'WEB-2:2']);
    assert.deepEqual(matching({ [ID]: '/^WEB/' }, ['web-1:1', 'WEB-2:2']), ['WEB-2:2']);
    assert.deepEqual(matching({ [ID]: '/a.b/s' }, ['a\nb', 'axb']), ['a\nb', 'axb']);
    assert.deepEqual(matching({ [ID]: '/a.b/' }, ['a\nb', 'axb']), ['axb']);
    // A stateful flag (g, y) must not make the same value match only every other time.
    const global = list({ [ID]: '/web/g' });
    const web = attrs({ [ID]: 'web-1:1' });
    assert.notEqual(global.match(web), undefined);
    assert.notEqual(global.match(web), undefined);
    assert.notEqual(global.match(web), undefined);
  });

  void test('an invalid regex or an unknown flag is a config error at the condition', () => {
    const [unbalanced] = refusal({ [ID]: '/(web/' });
    assert.match(unbalanced!, /^processors::filter::keep\[0\]::service\.instance\.id: invalid regular expression \/\(web\/: /);
    const [badFlag] = refusal({ [ID]: '/web/q' });
    assert.match(badFlag!, /^processors::filter::keep\[0\]::service\.instance\.id: /);
  });

  void test('selectors with several keys match only when every key matches', () => {
    const selectors = list({ 'service.name': 'cart', 'k8s.namespace.name': 'shop', [ID]: 'shop.*' });
    assert.equal(selectors.selectors[0]!.exact, undefined);
    assert.equal(matchIndex(selectors, { 'service.name': 'cart', 'k8s.namespace.name': 'shop', [ID]: 'shop.cart-1.cart' }), 0);
    assert.equal(matchIndex(selectors, { 'service.name': 'cart', 'k8s.namespace.name': 'prod', [ID]: 'shop.cart-1.cart' }), -1);
    assert.equal(matchIndex(selectors, { 'service.name': 'cart', 'k8s.namespace.name': 'shop', [ID]: 'prod.cart-1.cart' }), -1);
    assert.equal(matchIndex(selectors, { 'service.name': 'cart', [ID]: 'shop.cart-1.cart' }), -1);
  });

  void test('pid selectors match host-form ids ending in that PID, never k8s or docker forms', () => {
    const ids = ['host:4242', 'web-1.example:4242', '[::1]:4242', 'host:14242', 'host:42420', 'host:4242x', 'shop.pod-4242.4242', 'svc.ctr-4242', '4242', 'host:'];
    assert.deepEqual(matching({ pid: 4242 }, ids), ['host:4242', 'web-1.example:4242', '[::1]:4242']);
    assert.deepEqual(matching({ pid: '4242' }, ids), ['host:4242', 'web-1.example:4242', '[::1]:4242']);
    assert.deepEqual(matching({ pid: 14242 }, ids), ['host:14242']);
    assert.equal(pidOfInstanceId('ns.pod.container'), undefined);
    assert.equal(pidOfInstanceId('host:4242'), '4242');
    // The PID is read from service.instance.id, not from any attribute named pid.
    assert.equal(matchIndex(list({ pid: 4242 }), { pid: 4242, 'process.pid': 4242 }), -1);
  });

  void test('pid must be a positive integer', () => {
    for (const bad of [0, -1, 1.5, 'abc', '42a', true]) {
      const errors = refusal({ pid: bad });
      assert.deepEqual(errors, [`processors::filter::keep[0]::pid: pid must be a positive integer, got ${JSON.stringify(bad)}`]);
    }
  });

  void test('a resource without the attribute matches no kind of condition on it', () => {
    const none = { 'service.name': 'web' };
    for (const selector of [{ [ID]: 'web-1:1' }, { [ID]: '*' }, { [ID]: '/.*/' }, { pid: 1 }, { 'service.name': 'web', [ID]: '*' }]) {
      assert.equal(matchIndex(list(selector), none), -1, JSON.stringify(selector));
    }
    // An empty value is present: "*" and /.*/ match it.
    assert.equal(matchIndex(list({ [ID]: '*' }), { [ID]: '' }), 0);
    assert.equal(matchIndex(list({ [ID]: '/^$/' }), { [ID]: '' }), 0);
  });

  void test('numeric and boolean attribute values match by their text', () => {
    const values = { 'server.port': 8080, 'debug.enabled': true, 'big.id': 9007199254740993n, ratio: 1.5 };
    assert.equal(matchIndex(list({ 'server.port': 8080 }), values), 0);
    assert.equal(matchIndex(list({ 'server.port': '8080' }), values), 0);
    assert.equal(matchIndex(list({ 'server.port': '80*' }), values), 0);
    assert.equal(matchIndex(list({ 'server.port': '/^80\\d\\d$/' }), values), 0);
    assert.equal(matchIndex(list({ 'server.port': 8081 }), values), -1);
    assert.equal(matchIndex(list({ 'server.port': '08080' }), values), -1);
    assert.equal(matchIndex(list({ 'debug.enabled': true }), values), 0);
    assert.equal(matchIndex(list({ 'debug.enabled': 'true' }), values), 0);
    assert.equal(matchIndex(list({ 'debug.enabled': false }), values), -1);
    assert.equal(matchIndex(list({ 'big.id': '9007199254740993' }), values), 0);
    assert.equal(matchIndex(list({ 'big.id': '9007199254740992' }), values), -1);
    assert.equal(matchIndex(list({ ratio: 1.5 }), values), 0);
    assert.equal(matchIndex(list({ 'server.port': 8080, 'debug.enabled': true }), values), 0);
    assert.equal(matchIndex(list({ 'server.port': 8080, 'debug.enabled': false }), values), -1);
  });

  void test('the first matching selector in written order is reported, exact-indexed and scanned mixed', () => {
    const selectors = list(
      { 'service.name': 'api' }, // 0 exact, another key
      { [ID]: 'edge-*' }, // 1 glob (scanned)
      { [ID]: 'web-1:4242' }, // 2 exact
      { pid: 4242 }, // 3 scanned
      { [ID]: '/4242$/' }, // 4 scanned
      { [ID]: 'web-1:4242' }, // 5 exact duplicate of 2
      { [ID]: 'edge-1' }, // 6 exact, shadowed by 1
    );
    assert.equal(selectors.selectors.filter((s: Selector) => s.exact !== undefined).length, 4);
    assert.equal(matchIndex(selectors, { [ID]: 'web-1:4242', 'service.name': 'api' }), 0);
    assert.equal(matchIndex(selectors, { [ID]: 'web-1:4242', 'service.name': 'web' }), 2);
    assert.equal(matchIndex(selectors, { [ID]: 'web-2:4242' }), 3);
    assert.equal(matchIndex(selectors, { [ID]: 'web-2:x4242' }), 4);
    assert.equal(matchIndex(selectors, { [ID]: 'edge-1' }), 1);
    assert.equal(matchIndex(selectors, { [ID]: 'web-2:4243' }), -1);

    // A scanned selector written before an exact one wins even though the exact one is found first.
    const scannedFirst = list({ [ID]: '/^web/' }, { [ID]: 'web-1:4242' }, { pid: 4242 });
    assert.equal(matchIndex(scannedFirst, { [ID]: 'web-1:4242' }), 0);
    // And an exact one written before a scanned one wins over it.
    const exactFirst = list({ [ID]: 'web-1:4242' }, { [ID]: '/^web/' });
    assert.equal(matchIndex(exactFirst, { [ID]: 'web-1:4242' }), 0);
    assert.equal(matchIndex(exactFirst, { [ID]: 'web-9:1' }), 1);
    // Exact selectors on different keys: the earlier written one.
    const twoKeys = list({ 'service.name': 'web' }, { [ID]: 'web-1:4242' });
    assert.equal(matchIndex(twoKeys, { [ID]: 'web-1:4242', 'service.name': 'web' }), 0);
    const twoKeysReversed = list({ [ID]: 'web-1:4242' }, { 'service.name': 'web' });
    assert.equal(matchIndex(twoKeysReversed, { [ID]: 'web-1:4242', 'service.name': 'web' }), 0);
    assert.equal(matchIndex(twoKeysReversed, { [ID]: 'web-2:1', 'service.name': 'web' }), 1);
  });
});

void describe('keep and drop', () => {
  const web1 = block({ [ID]: 'web-1:4242', 'service.name': 'web' });
  const web2 = block({ [ID]: 'web-2:4243', 'service.name': 'web' });
  const cart = block({ [ID]: 'shop.cart-1.cart', 'service.name': 'cart' });
  const jaeger = block({ [ID]: 'jaeger.jaeger-0.jaeger', 'service.name': 'jaeger-all-in-one' });
  const bare = block({});

  const kept = (config: FilterConfig, blocks: ResourceBlock[]) =>
    blocks.filter((b) => {
      const decision = decide(config, b.attributes);
      assert.equal(keeps(config, b.attributes), decision.kept, 'keeps() agrees with decide()');
      return decision.kept;
    });

  void test('keep is any-of', () => {
    const config = filterConfig({ keep: [{ pid: 4242 }, { 'service.name': 'cart' }] });
    assert.deepEqual(kept(config, [web1, web2, cart, jaeger, bare]), [web1, cart]);
    assert.equal(decide(config, cart.attributes).selector, config.keep!.selectors[1]);
    assert.deepEqual(decide(config, web2.attributes), { kept: false, selector: undefined });
  });

  void test('drop applies after keep and names the dropping selector', () => {
    const config = filterConfig({ keep: [{ 'service.name': 'web' }, { 'service.name': 'cart' }], drop: [{ [ID]: 'web-2:*' }] });
    assert.deepEqual(kept(config, [web1, web2, cart, jaeger]), [web1, cart]);
    assert.deepEqual(decide(config, web2.attributes), { kept: false, selector: config.drop.selectors[0] });
    assert.deepEqual(decide(config, web1.attributes), { kept: true, selector: config.keep!.selectors[0] });
  });

  void test('without keep everything is kept unless dropped', () => {
    const config = filterConfig({ drop: [{ 'service.name': '/^jaeger/' }] });
    assert.equal(config.keep, undefined);
    assert.deepEqual(kept(config, [web1, web2, cart, jaeger, bare]), [web1, web2, cart, bare]);
    assert.deepEqual(decide(config, web1.attributes), { kept: true, selector: undefined });
    const empty = filterConfig({});
    assert.deepEqual(kept(empty, [web1, jaeger, bare]), [web1, jaeger, bare]);
  });
});

class Recorder implements Consumer {
  readonly batches: Batch[] = [];

  async consume(batch: Batch): Promise<void> {
    this.batches.push(batch);
  }
}

async function counterValue(telemetry: SelfTelemetry, name: string, processor: string): Promise<number | undefined> {
  if (telemetry.registry.getSingleMetric(name) === undefined) return undefined;
  const text = await telemetry.registry.getSingleMetricAsString(name);
  const line = text.split('\n').find((l) => l.startsWith(`${name}{processor="${processor}"} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

function processor(signal: Signal, config: Record<string, unknown>) {
  const telemetry = new SelfTelemetry();
  const next = new Recorder();
  const filter = new FilterProcessor({ id: 'filter/obi', logger: pino({ level: 'silent' }), telemetry }, filterConfig(config), signal, next);
  return { telemetry, next, filter };
}

void describe('FilterProcessor.consume', () => {
  void test('drops and keeps whole resources and counts dropped spans', async () => {
    const { telemetry, next, filter } = processor('traces', { keep: [{ pid: 4242 }, { 'service.name': 'cart' }] });
    const a = block({ [ID]: 'web-1:4242' }, 3);
    const b = block({ [ID]: 'web-2:4243' }, 2);
    const c = block({ [ID]: 'shop.cart-1.cart', 'service.name': 'cart' }, 5);
    const d = block({ [ID]: 'web-3:1' }, 7);

    await filter.consume(new Batch('traces', [a, b, c, d]));
    assert.equal(next.batches.length, 1);
    assert.deepEqual(next.batches[0]!.resources, [a, c]);
    assert.equal(next.batches[0]!.resources[0], a);
    assert.equal(next.batches[0]!.itemCount, 8);
    assert.equal(next.batches[0]!.signal, 'traces');
    assert.equal(await counterValue(telemetry, 'otelcol_processor_filter_spans_filtered', 'filter/obi'), 9);

    // All kept: the same batch object goes on, the counter does not move.
    const allKept = new Batch('traces', [c, a]);
    await filter.consume(allKept);
    assert.equal(next.batches.length, 2);
    assert.equal(next.batches[1], allKept);
    assert.equal(await counterValue(telemetry, 'otelcol_processor_filter_spans_filtered', 'filter/obi'), 9);

    // All dropped: nothing goes on.
    await filter.consume(new Batch('traces', [b, d]));
    assert.equal(next.batches.length, 2);
    assert.equal(await counterValue(telemetry, 'otelcol_processor_filter_spans_filtered', 'filter/obi'), 18);

    // New rules apply from the next batch.
    filter.reconfigure(filterConfig({ drop: [{ pid: 4242 }] }));
    await filter.consume(new Batch('traces', [a, b, d]));
    assert.deepEqual(next.batches[2]!.resources, [b, d]);
    assert.equal(await counterValue(telemetry, 'otelcol_processor_filter_spans_filtered', 'filter/obi'), 21);
  });

  void test('metrics count dropped data points under their own name', async () => {
    const { telemetry, next, filter } = processor('metrics', { drop: [{ 'service.name': 'noisy' }] });
    await filter.consume(new Batch('metrics', [block({ 'service.name': 'noisy' }, 40), block({ 'service.name': 'quiet' }, 2)]));
    assert.equal(next.batches.length, 1);
    assert.equal(next.batches[0]!.itemCount, 2);
    assert.equal(await counterValue(telemetry, 'otelcol_processor_filter_datapoints_filtered', 'filter/obi'), 40);
    assert.equal(await counterValue(telemetry, 'otelcol_processor_filter_spans_filtered', 'filter/obi'), undefined);
  });

  void test('mayKeep answers what consume would keep, and defers to the next consumer', () => {
    const { filter } = processor('traces', { keep: [{ pid: 4242 }], drop: [{ 'service.name': 'noisy' }] });
    assert.equal(filter.mayKeep(attrs({ [ID]: 'web-1:4242' })), true);
    assert.equal(filter.mayKeep(attrs({ [ID]: 'web-1:4243' })), false);
    assert.equal(filter.mayKeep(attrs({ [ID]: 'web-1:4242', 'service.name': 'noisy' })), false);
    const refusingNext: Consumer = { consume: async () => {}, mayKeep: () => false };
    const chained = new FilterProcessor({ id: 'filter/a', logger: pino({ level: 'silent' }), telemetry: new SelfTelemetry() }, filterConfig({}), 'traces', refusingNext);
    assert.equal(chained.mayKeep(attrs({ [ID]: 'web-1:4242' })), false);
  });

  void test('wouldRefuse is the next consumer\'s; a fan-out refuses when any branch would', () => {
    const { filter } = processor('traces', { keep: [{ pid: 4242 }] });
    assert.equal(filter.wouldRefuse(), undefined);
    const full: Consumer = { consume: async () => {}, wouldRefuse: () => 'sending queue of exporter otlp is full (1 batches)' };
    const open: Consumer = { consume: async () => {} };
    const chained = new FilterProcessor({ id: 'filter/a', logger: pino({ level: 'silent' }), telemetry: new SelfTelemetry() }, filterConfig({}), 'traces', full);
    assert.equal(chained.wouldRefuse(), 'sending queue of exporter otlp is full (1 batches)');
    assert.equal(new FanOut([open, full]).wouldRefuse(), 'sending queue of exporter otlp is full (1 batches)');
    assert.equal(new FanOut([open, open]).wouldRefuse(), undefined);
  });

  void test('a block the receiver only counted is checked before it is kept', async () => {
    const { next, filter } = processor('traces', { keep: [{ pid: 4242 }] });
    const body = Buffer.from(encodeTraces([obiResourceSpans(hostInstance('web-1', 4242), [obiSpan({ name: 'GET /a' }), obiSpan({ name: 'GET /b' })])]));
    // Counted only: as if no pipeline kept it when it arrived (the rules changed since).
    const counted = parseRequest('traces', body, () => false).batch;
    assert.equal(counted.resources[0]!.unchecked, true);
    await filter.consume(counted);
    assert.equal(next.batches[0]!.resources[0]!.unchecked, false);
    assert.equal(next.batches[0]!.itemCount, 2);
    assert.deepEqual(Buffer.from(next.batches[0]!.toRequestBytes()), body);

    const at = body.indexOf('GET /b');
    body[at + 1] = 0xff;
    const malformed = parseRequest('traces', body, () => false).batch;
    await assert.rejects(filter.consume(malformed), (err: unknown) => {
      assert.ok(err instanceof PermanentError);
      assert.match(err.message, /^invalid traces resource: scope_spans\[1\]\.spans\[0\]\.name: string is not valid UTF-8$/);
      return true;
    });
    assert.equal(next.batches.length, 1, 'nothing of the malformed batch went on');
  });
});
