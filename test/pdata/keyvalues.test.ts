import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ANY_VALUE, KEY_VALUE, SPAN, VALUES } from '../../src/pdata/fields';
import { MAX_TYPED_DEPTH, decodeTypedKeyValues, decodeTypedValue, keyValueBytes } from '../../src/pdata/keyvalues';
import { doubleKeysOf } from '../../src/pdata/spans';

// Hand-built KeyValue lists (short fields: one-byte tags and lengths).
function ld(tag: number, body: Uint8Array | string): Buffer {
  const b = typeof body === 'string' ? Buffer.from(body) : body;
  return Buffer.concat([Buffer.from([tag, b.length]), b]);
}
const str = (s: string): Buffer => ld(ANY_VALUE.string_value, s);
const int = (n: number): Buffer => Buffer.from([ANY_VALUE.int_value, n]);
function dbl(n: number): Buffer {
  const b = Buffer.alloc(9);
  b[0] = ANY_VALUE.double_value;
  b.writeDoubleLE(n, 1);
  return b;
}
const kv = (key: string, value: Buffer): Buffer => ld(SPAN.attributes, Buffer.concat([ld(KEY_VALUE.key, key), ld(KEY_VALUE.value, value)]));

void describe('pdata/keyvalues', () => {
  const list = Buffer.concat([kv('a', str('first')), kv('n', int(5)), kv('d', dbl(2)), kv('a', str('second')), kv('d', int(1)), kv('n', dbl(3))]);

  void test('the first occurrence of a key wins, ints stay bigint, doubles numbers', () => {
    const m = decodeTypedKeyValues(list, 0, list.length, SPAN.attributes, 128);
    assert.deepEqual([...m], [['a', 'first'], ['n', 5n], ['d', 2]]);
  });

  void test('keyValueBytes finds the first matching key, by string or by bytes', () => {
    for (const key of ['a', Buffer.from('a')]) {
      const r = keyValueBytes(list, 0, list.length, SPAN.attributes, key);
      assert.ok(r);
      assert.equal(decodeTypedValue(list, r[0], r[1], 128), 'first');
    }
    assert.equal(keyValueBytes(list, 0, list.length, SPAN.attributes, 'missing'), undefined);
  });

  void test('doubleKeysOf: the first occurrence decides', () => {
    assert.deepEqual(doubleKeysOf(list, 0, list.length, SPAN.attributes), new Set(['d']));
  });

  void test('nesting deeper than maxDepth reads as an empty list', () => {
    let v: Buffer = str('x');
    for (let i = 0; i < 3; i++) v = ld(ANY_VALUE.array_value, ld(VALUES.values, v));
    assert.deepEqual(decodeTypedValue(v, 0, v.length, 2), [[[]]]);
    assert.deepEqual(decodeTypedValue(v, 0, v.length, Infinity), [[['x']]]);
  });

  void test('a value nested as deep as the receiver accepts decodes without overflowing the stack', () => {
    const varint = (n: number): number[] => {
      const out: number[] = [];
      while (n > 0x7f) {
        out.push((n & 0x7f) | 0x80);
        n >>>= 7;
      }
      out.push(n);
      return out;
    };
    const wrap = (tag: number, body: Buffer): Buffer => Buffer.concat([Buffer.from([tag, ...varint(body.length)]), body]);
    let value = str('leaf');
    for (let i = 0; i < 20_000; i++) value = wrap(ANY_VALUE.array_value, wrap(VALUES.values, value));
    let decoded = decodeTypedValue(value, 0, value.length, MAX_TYPED_DEPTH);
    let depth = 0;
    while (Array.isArray(decoded) && decoded.length > 0) {
      decoded = decoded[0]!;
      depth++;
    }
    assert.equal(depth, MAX_TYPED_DEPTH);
  });
});
