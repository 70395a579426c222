import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MAX_DECODED_VALUES, decodeKeyValues, isAscii, isValidUtf8, omittedValues } from '../../src/pdata/attributes';
import { types } from '../../src/pdata/codec';
import { RESOURCE } from '../../src/pdata/fields';
import { parseRequest } from '../../src/pdata/scan';
import { resourceMessage } from '../../src/pdata/spans';
import { wideResourceRequest } from '../helpers/wide-resource';

// isAscii reads four bytes per step: a high byte must be found at every offset, in every tail length.

void describe('isAscii / isValidUtf8', () => {
  void test('a single high byte is found at any position of strings of length 1 to 12', () => {
    for (let length = 1; length <= 12; length++) {
      for (let at = 0; at < length; at++) {
        const buf = Buffer.alloc(length + 4, 0x61);
        buf[2 + at] = 0xff;
        assert.equal(isAscii(buf, 2, 2 + length), false, `length ${length}, high byte at ${at}`);
        assert.equal(isValidUtf8(buf, 2, 2 + length), false, `length ${length}, 0xff at ${at} is not UTF-8`);
      }
      assert.equal(isAscii(Buffer.alloc(length, 0x7f), 0, length), true);
    }
  });

  void test('only the range counts: high bytes just outside it are ignored', () => {
    const buf = Buffer.from([0xff, 0x61, 0x62, 0x63, 0x64, 0x65, 0xff]);
    assert.equal(isAscii(buf, 1, 6), true);
    assert.equal(isAscii(buf, 0, 6), false);
    assert.equal(isAscii(buf, 1, 7), false);
    assert.equal(isAscii(buf, 3, 3), true, 'empty range');
  });

  void test('valid multi-byte UTF-8 is accepted, a truncated sequence is not', () => {
    const text = Buffer.from('größe ✓ 日本', 'utf8');
    assert.equal(isAscii(text, 0, text.length), false);
    assert.equal(isValidUtf8(text, 0, text.length), true);
    assert.equal(isValidUtf8(text, 0, text.length - 1), false);
  });
});

void describe('decodeKeyValues bound', () => {
  const kv = (key: string, value: Record<string, unknown>) => ({ key, value });
  function resourceBytes(attributes: { key: string; value: Record<string, unknown> }[]): Buffer {
    // A ResourceSpans is field 1 (resource) + ...; the Resource message holds field 1 attributes.
    const encoded = Buffer.from(types.ResourceSpans.encode(types.ResourceSpans.fromObject({ resource: { attributes } })).finish());
    const message = resourceMessage(encoded)!;
    return Buffer.from(message);
  }

  void test('a resource with many attributes: the first MAX_DECODED_VALUES, identity keys wherever they are, the rest counted', () => {
    const attributes = Array.from({ length: 5000 }, (_, i) => kv(`k${i}`, { stringValue: 'v' }));
    attributes.push(kv('service.instance.id', { stringValue: 'late:1' }), kv('host.name', { stringValue: 'h' }), kv('service.name', { stringValue: 'svc' }));
    attributes.push(kv('service.instance.id', { stringValue: 'duplicate' }));
    const bytes = resourceBytes(attributes);
    const decoded = decodeKeyValues(bytes, 0, bytes.length, RESOURCE.attributes);
    assert.equal(decoded.size, MAX_DECODED_VALUES + 3);
    assert.equal(decoded.get(`k${MAX_DECODED_VALUES - 1}`), 'v');
    assert.equal(decoded.has(`k${MAX_DECODED_VALUES}`), false);
    assert.equal(decoded.get('service.instance.id'), 'late:1', 'first occurrence wins, also past the bound');
    assert.equal(decoded.get('service.name'), 'svc');
    assert.equal(omittedValues(decoded), 5000 - MAX_DECODED_VALUES);
  });

  void test('nested values share the bound: a huge array is cut, the values after it are counted', () => {
    const big = { arrayValue: { values: Array.from({ length: 1000 }, (_, i) => ({ intValue: i })) } };
    const bytes = resourceBytes([kv('service.name', { stringValue: 'svc' }), kv('big', big), kv('after', { boolValue: true })]);
    const decoded = decodeKeyValues(bytes, 0, bytes.length, RESOURCE.attributes);
    assert.equal((decoded.get('big') as unknown[]).length, MAX_DECODED_VALUES - 2);
    assert.equal(decoded.has('after'), false);
    assert.equal(omittedValues(decoded), 1000 - (MAX_DECODED_VALUES - 2) + 1);
  });

  void test('an ordinary resource is decoded in full and reports nothing omitted', () => {
    const bytes = resourceBytes([kv('service.name', { stringValue: 'svc' }), kv('list', { arrayValue: { values: [{ intValue: 1 }, { stringValue: 'x' }] } })]);
    const decoded = decodeKeyValues(bytes, 0, bytes.length, RESOURCE.attributes);
    assert.deepEqual([...decoded], [['service.name', 'svc'], ['list', [1, 'x']]]);
    assert.equal(omittedValues(decoded), 0);
  });

  void test('a million attributes decode in time proportional to their size (bounded map)', () => {
    const request = wideResourceRequest('wide:1', 1_000_000);
    const started = process.hrtime.bigint();
    const parsed = parseRequest('traces', request);
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    const attributes = parsed.batch.resources[0]!.attributes;
    assert.equal(attributes.get('service.instance.id'), 'wide:1');
    assert.ok(attributes.size <= MAX_DECODED_VALUES + 3);
    assert.equal(omittedValues(attributes), 1_000_002 - MAX_DECODED_VALUES);
    // About 0.1-0.3 s on a busy 2-core machine; decoding every attribute took 1.5-3.5 s there.
    assert.ok(ms < 1500, `${ms} ms for a 16 MB request`);
  });
});
