import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { AttrValue } from '../../src/pdata/attributes';
import { parseRequest } from '../../src/pdata/scan';
import { Inventory, MAX_KEPT_ATTRIBUTES, MAX_KEPT_VALUE_LENGTH, TRUNCATION_MARK } from '../../src/service/inventory';
import { wideResourceRequest } from '../helpers/wide-resource';

// The inventory is bounded in instances and bytes whatever senders put in their resources, keeps
// only what the admin page shows, and evicts the least recently seen first.

function block(attributes: Record<string, AttrValue>, itemCount = 1) {
  return { bytes: new Uint8Array(0), attributes: new Map(Object.entries(attributes)), itemCount };
}

void describe('Inventory bounds', () => {
  void test('at most maxInstances: the least recently seen goes first, an instance seen again stays', () => {
    const inventory = new Inventory(Date.now, 3);
    for (const id of ['a', 'b', 'c']) inventory.observe(block({ 'service.instance.id': id }), 'traces');
    inventory.observe(block({ 'service.instance.id': 'a' }), 'traces'); // a is now the most recent
    inventory.observe(block({ 'service.instance.id': 'd' }), 'traces');
    assert.deepEqual(inventory.list().map((i) => i.id), ['a', 'c', 'd']);
    // A decision does not count as seen: it does not keep an instance from eviction.
    inventory.decide(new Map([['service.instance.id', 'c']]), true, null, 'filter');
    inventory.observe(block({ 'service.instance.id': 'e' }), 'traces');
    assert.deepEqual(inventory.list().map((i) => i.id), ['a', 'd', 'e']);
  });

  void test('the same attributes object in every request (the receiver caches it): recency and eviction as for new objects', () => {
    const inventory = new Inventory(Date.now, 2);
    const attrs = (id: string) => new Map<string, AttrValue>([['service.instance.id', id]]);
    const [a, b, c] = [attrs('a'), attrs('b'), attrs('c')];
    const seen = (m: Map<string, AttrValue>, n = 1) => inventory.observe({ bytes: new Uint8Array(0), attributes: m, itemCount: n }, 'traces');
    seen(a);
    seen(b);
    seen(a); // a most recent: b goes first
    seen(c);
    assert.deepEqual(inventory.list().map((i) => i.id), ['a', 'c']);
    // b was evicted: its object, seen again, makes a new record (and a, now the oldest, goes).
    seen(b, 5);
    assert.deepEqual(inventory.list().map((i) => i.id), ['b', 'c']);
    inventory.decide(b, true, 'sel', 'filter');
    assert.equal(inventory.list()[0]!.kept, true);
    // A decision through a cached object does not count as seen: c stays the oldest.
    inventory.decide(c, false, null, 'filter');
    seen(a);
    assert.deepEqual(inventory.list().map((i) => i.id), ['a', 'b']);
    // Another object with the same id finds the same record and makes it the most recent.
    seen(attrs('b'));
    seen(c);
    assert.deepEqual(inventory.list().map((i) => i.id), ['b', 'c']);
    assert.equal(inventory.size.instances, 2);
  });

  void test('at most maxBytes: large instances push out old ones; the estimate stays under the bound', () => {
    const inventory = new Inventory(Date.now, 10_000, 200_000);
    const wide = (i: number) => block(Object.fromEntries([['service.instance.id', `w:${i}`], ...Array.from({ length: 100 }, (_, k) => [`key-${k}`, 'x'.repeat(1000)] as const)]));
    for (let i = 0; i < 100; i++) inventory.observe(wide(i), 'traces');
    const { instances, bytes } = inventory.size;
    assert.ok(bytes <= 200_000, `${bytes} bytes`);
    assert.ok(instances >= 2 && instances < 100, `${instances} instances`);
    assert.equal(inventory.list().at(-1)!.id, 'w:99');
  });

  void test('attributes kept: identity first, at most MAX_KEPT_ATTRIBUTES, long keys and values cut and marked, the rest counted', () => {
    const inventory = new Inventory();
    const attributes: Record<string, AttrValue> = {};
    for (let k = 0; k < 200; k++) attributes[`k${k}`] = k;
    attributes['long'] = 'y'.repeat(10_000);
    attributes['service.instance.id'] = 'host:42';
    attributes['service.name'] = 'svc';
    inventory.observe(block(attributes), 'traces');
    const [view] = inventory.list();
    assert.equal(Object.keys(view!.attributes).length, MAX_KEPT_ATTRIBUTES);
    assert.equal(view!.attributes['service.instance.id'], 'host:42');
    assert.equal(view!.service, 'svc');
    assert.equal(view!.omittedAttributes, 203 - MAX_KEPT_ATTRIBUTES);

    const cut = new Inventory();
    cut.observe(block({ 'service.instance.id': 'c:1', ['K'.repeat(1000)]: 'v', value: 'z'.repeat(1000), list: ['a'.repeat(1000), 'b'] }), 'traces');
    const [c] = cut.list();
    assert.equal(c!.attributes.value, 'z'.repeat(MAX_KEPT_VALUE_LENGTH) + TRUNCATION_MARK);
    assert.ok(`${'K'.repeat(MAX_KEPT_VALUE_LENGTH)}${TRUNCATION_MARK}` in c!.attributes);
    // A list shares one budget of characters: cut inside its first item, the second left out.
    const list = c!.attributes.list as string[];
    assert.equal(list.length, 1);
    assert.ok(list[0]!.endsWith(TRUNCATION_MARK) && list[0]!.length <= MAX_KEPT_VALUE_LENGTH + 1);
    assert.equal(c!.omittedAttributes, 0);
  });

  void test('a million-attribute resource: the record is small and costs O(kept), not O(sent)', () => {
    const attributes = parseRequest('traces', wideResourceRequest('wide:1', 1_000_000)).batch.resources[0]!.attributes;
    const inventory = new Inventory();
    inventory.observe({ bytes: new Uint8Array(0), attributes, itemCount: 1 }, 'traces');
    const [view] = inventory.list();
    assert.equal(view!.id, 'wide:1');
    assert.equal(Object.keys(view!.attributes).length, MAX_KEPT_ATTRIBUTES);
    assert.equal(view!.omittedAttributes, 1_000_002 - MAX_KEPT_ATTRIBUTES);
    assert.ok(inventory.size.bytes < 64 * 1024, `${inventory.size.bytes} bytes`);
  });

  void test('redecide uses the kept attributes when complete; an incomplete instance shows no decision until seen again', () => {
    const inventory = new Inventory();
    const small = new Map<string, AttrValue>([['service.instance.id', 's:1'], ['team', 'blue']]);
    const big = new Map<string, AttrValue>([['service.instance.id', 'b:1'], ['team', 'blue'], ['blob', 'x'.repeat(5000)]]);
    for (const attributes of [small, big]) {
      inventory.observe({ bytes: new Uint8Array(0), attributes, itemCount: 1 }, 'traces');
      inventory.decide(attributes, false, null, 'filter/a');
    }
    inventory.redecide('filter/a', (attributes) => ({ kept: attributes.get('team') === 'blue', selector: 'team="blue"' }));
    const byId = new Map(inventory.list().map((i) => [i.id, i]));
    assert.equal(byId.get('s:1')!.kept, true);
    assert.equal(byId.get('s:1')!.selector, 'team="blue"');
    assert.equal(byId.get('b:1')!.kept, null, 'its blob value was cut: the rules cannot be evaluated on what is kept');
    inventory.decide(big, true, 'team="blue"', 'filter/a');
    assert.equal(inventory.list().find((i) => i.id === 'b:1')!.kept, true);
  });
});
