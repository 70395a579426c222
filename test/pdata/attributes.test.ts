import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isAscii, isValidUtf8 } from '../../src/pdata/attributes';

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
