import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseRequest } from '../../src/pdata/scan';
import { WireFormatError, hashBytes } from '../../src/pdata/wire';
import { encodeTraces, hostInstance, obiResourceSpans, obiSpan } from '../helpers/obi';

test('identical resource bytes are decoded once and share their attributes; others are decoded anew', () => {
  const web = hostInstance('cache-host', 1);
  const first = parseRequest('traces', encodeTraces([obiResourceSpans(web, [obiSpan()])])).batch.resources[0]!;
  const again = parseRequest('traces', encodeTraces([obiResourceSpans(web, [obiSpan(), obiSpan()])])).batch.resources[0]!;
  assert.equal(again.attributes, first.attributes, 'the same decoded map for the same resource bytes');
  assert.equal(again.itemCount, 2, 'spans are still counted per request');
  const other = parseRequest('traces', encodeTraces([obiResourceSpans(hostInstance('cache-host', 2), [obiSpan()])])).batch.resources[0]!;
  assert.notEqual(other.attributes, first.attributes);
  assert.equal(other.attributes.get('service.instance.id'), 'cache-host:2');
});

test('a malformed resource is refused every time, never served from the cache', () => {
  // ResourceSpans { resource { attributes { key: "k", value { string_value: <invalid UTF-8> } } } }
  const anyValue = Buffer.from([0x0a, 0x02, 0xc3, 0x28]);
  const keyValue = Buffer.concat([Buffer.from([0x0a, 0x01, 0x6b, 0x12, anyValue.length]), anyValue]);
  const resource = Buffer.concat([Buffer.from([0x0a, keyValue.length]), keyValue]);
  const resourceSpans = Buffer.concat([Buffer.from([0x0a, resource.length]), resource]);
  const request = Buffer.concat([Buffer.from([0x0a, resourceSpans.length]), resourceSpans]);
  for (let i = 0; i < 2; i++) {
    assert.throws(() => parseRequest('traces', request), (err: Error) => err instanceof WireFormatError && /resource_spans\[0\]\.resource/.test(err.message));
  }
});

test('two different resources whose bytes hash alike each keep their own attributes', () => {
  // Search Resource messages { attributes { key: "k", value { string_value: <n in base 36> } } }
  // until two share a hash (a 32-bit hash: a birthday search finds one within a few 100k).
  const resourceBytes = (value: string): Buffer => {
    const anyValue = Buffer.concat([Buffer.from([0x0a, value.length]), Buffer.from(value)]);
    const keyValue = Buffer.concat([Buffer.from([0x0a, 0x01, 0x6b, 0x12, anyValue.length]), anyValue]);
    return Buffer.concat([Buffer.from([0x0a, keyValue.length]), keyValue]);
  };
  const seen = new Map<number, string>();
  let pair: [string, string] | undefined;
  for (let n = 0; n < 2_000_000 && !pair; n++) {
    const value = n.toString(36);
    const bytes = resourceBytes(value);
    const hash = hashBytes(bytes, 0, bytes.length);
    const other = seen.get(hash);
    if (other !== undefined) pair = [other, value];
    else seen.set(hash, value);
  }
  assert.ok(pair, 'found two resources with the same hash');
  const requestWith = (value: string): Buffer => {
    const resource = resourceBytes(value);
    const resourceSpans = Buffer.concat([Buffer.from([0x0a, resource.length]), resource]);
    return Buffer.concat([Buffer.from([0x0a, resourceSpans.length]), resourceSpans]);
  };
  for (let round = 0; round < 2; round++) {
    for (const value of pair) {
      const block = parseRequest('traces', requestWith(value)).batch.resources[0]!;
      assert.equal(block.attributes.get('k'), value, `round ${round}: resource with k=${value}`);
    }
  }
});

test('the cache keeps its own copy: a request buffer changed after parsing does not change later lookups', () => {
  const web = hostInstance('copy-host', 9);
  const request = encodeTraces([obiResourceSpans(web, [obiSpan()])]);
  const first = parseRequest('traces', request).batch.resources[0]!;
  request.fill(0x20);
  const again = parseRequest('traces', encodeTraces([obiResourceSpans(web, [obiSpan()])])).batch.resources[0]!;
  assert.equal(again.attributes, first.attributes);
  assert.equal(again.attributes.get('service.instance.id'), 'copy-host:9');
});
