import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseRequest } from '../../src/pdata/scan';
import { WireFormatError } from '../../src/pdata/wire';
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
