import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HpackDecoder, HpackError, encodeHeaders, encodeInteger, huffmanDecode, huffmanEncode } from '../../../src/util/h2/hpack';

// RFC 7541 Appendix C examples: the encoded octets, the header list, the dynamic table after
// (newest first) and its size.

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
type Pairs = [string, string][];
const flat = (pairs: Pairs) => pairs.flat();

interface Step {
  readonly input: string;
  readonly headers: Pairs;
  readonly table: Pairs;
  readonly size: number;
}

function series(tableSize: number, steps: readonly Step[]): void {
  const decoder = new HpackDecoder({ maxTableSize: tableSize });
  steps.forEach((step, i) => {
    assert.deepEqual(decoder.decode(hex(step.input)), flat(step.headers), `step ${i}`);
    assert.deepEqual(decoder.table, step.table, `table after step ${i}`);
    assert.equal(decoder.tableSize, step.size, `table size after step ${i}`);
  });
}

test('C.1 integers: 10 in a 5-bit prefix, 1337 in a 5-bit prefix, 42 at an octet boundary', () => {
  const out: number[] = [];
  encodeInteger(out, 10, 5, 0);
  encodeInteger(out, 1337, 5, 0);
  encodeInteger(out, 42, 8, 0);
  assert.deepEqual(out, [0x0a, 0x1f, 0x9a, 0x0a, 0x2a]);
  // And back: a literal without indexing whose new name is 1337 octets long is read as such.
  const name = 'a'.repeat(1337);
  const block = encodeHeaders([[name, 'v']]);
  assert.deepEqual(new HpackDecoder().decode(block), [name, 'v']);
});

test('C.2 single representations', () => {
  series(4096, [{ input: '400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572', headers: [['custom-key', 'custom-header']], table: [['custom-key', 'custom-header']], size: 55 }]);
  series(4096, [{ input: '040c 2f73 616d 706c 652f 7061 7468', headers: [[':path', '/sample/path']], table: [], size: 0 }]);
  series(4096, [{ input: '1008 7061 7373 776f 7264 0673 6563 7265 74', headers: [['password', 'secret']], table: [], size: 0 }]);
  series(4096, [{ input: '82', headers: [[':method', 'GET']], table: [], size: 0 }]);
});

const REQ1: Pairs = [[':method', 'GET'], [':scheme', 'http'], [':path', '/'], [':authority', 'www.example.com']];
const REQ2: Pairs = [...REQ1, ['cache-control', 'no-cache']];
const REQ3: Pairs = [[':method', 'GET'], [':scheme', 'https'], [':path', '/index.html'], [':authority', 'www.example.com'], ['custom-key', 'custom-value']];
const REQ_TABLES: Pairs[] = [
  [[':authority', 'www.example.com']],
  [['cache-control', 'no-cache'], [':authority', 'www.example.com']],
  [['custom-key', 'custom-value'], ['cache-control', 'no-cache'], [':authority', 'www.example.com']],
];

test('C.3 requests without Huffman coding', () => {
  series(4096, [
    { input: '8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d', headers: REQ1, table: REQ_TABLES[0]!, size: 57 },
    { input: '8286 84be 5808 6e6f 2d63 6163 6865', headers: REQ2, table: REQ_TABLES[1]!, size: 110 },
    { input: '8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65', headers: REQ3, table: REQ_TABLES[2]!, size: 164 },
  ]);
});

test('C.4 requests with Huffman coding', () => {
  series(4096, [
    { input: '8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff', headers: REQ1, table: REQ_TABLES[0]!, size: 57 },
    { input: '8286 84be 5886 a8eb 1064 9cbf', headers: REQ2, table: REQ_TABLES[1]!, size: 110 },
    { input: '8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf', headers: REQ3, table: REQ_TABLES[2]!, size: 164 },
  ]);
});

const DATE1 = 'Mon, 21 Oct 2013 20:13:21 GMT';
const DATE2 = 'Mon, 21 Oct 2013 20:13:22 GMT';
const LOC = 'https://www.example.com';
const COOKIE = 'foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1';
const RESP: Step[] = [
  {
    input: '', headers: [[':status', '302'], ['cache-control', 'private'], ['date', DATE1], ['location', LOC]],
    table: [['location', LOC], ['date', DATE1], ['cache-control', 'private'], [':status', '302']], size: 222,
  },
  {
    input: '', headers: [[':status', '307'], ['cache-control', 'private'], ['date', DATE1], ['location', LOC]],
    // ':status: 302' was evicted to make room (table size 256).
    table: [[':status', '307'], ['location', LOC], ['date', DATE1], ['cache-control', 'private']], size: 222,
  },
  {
    input: '', headers: [[':status', '200'], ['cache-control', 'private'], ['date', DATE2], ['location', LOC], ['content-encoding', 'gzip'], ['set-cookie', COOKIE]],
    table: [['set-cookie', COOKIE], ['content-encoding', 'gzip'], ['date', DATE2]], size: 215,
  },
];

test('C.5 responses without Huffman coding, table size 256 (evictions)', () => {
  const inputs = [
    '4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d',
    '4803 3330 37c1 c0bf',
    '88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d 54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31',
  ];
  series(256, RESP.map((step, i) => ({ ...step, input: inputs[i]! })));
});

test('C.6 responses with Huffman coding, table size 256 (evictions)', () => {
  const inputs = [
    '4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3',
    '4883 640e ffc1 c0bf',
    '88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab 77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07',
  ];
  series(256, RESP.map((step, i) => ({ ...step, input: inputs[i]! })));
});

test('Huffman: every octet round-trips; the C.4 string encodes as the RFC shows', () => {
  const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
  assert.deepEqual(huffmanDecode(huffmanEncode(all), 0, huffmanEncode(all).length), all);
  for (let n = 0; n < 40; n++) {
    const s = Buffer.from(Array.from({ length: n }, (_, i) => (i * 37 + n) & 0xff));
    const e = huffmanEncode(s);
    assert.deepEqual(huffmanDecode(e, 0, e.length), s);
  }
  assert.equal(huffmanEncode(Buffer.from('www.example.com')).toString('hex'), 'f1e3c2e5f23a6ba0ab90f4ff');
});

test('Huffman: padding longer than 7 bits, padding with a zero bit, and EOS are refused', () => {
  // 'a' is 00011 (5 bits): padded with 1s to one octet it is 0x1f.
  assert.equal(huffmanDecode(Buffer.from([0x1f]), 0, 1).toString(), 'a');
  assert.throws(() => huffmanDecode(Buffer.from([0x1f, 0xff]), 0, 2), HpackError); // 11 bits of padding
  assert.throws(() => huffmanDecode(Buffer.from([0x1e]), 0, 1), HpackError); // padding 110
  assert.throws(() => huffmanDecode(Buffer.from([0xff, 0xff, 0xff, 0xfc]), 0, 4), HpackError); // EOS (30 ones) then 00
  assert.throws(() => huffmanDecode(Buffer.from([0xff, 0xff, 0xff, 0xff]), 0, 4), HpackError); // EOS then padding
});

test('decoder errors: index 0, index past the table, truncated input, late or oversized size update', () => {
  assert.throws(() => new HpackDecoder().decode(Buffer.from([0x80])), HpackError);
  assert.throws(() => new HpackDecoder().decode(Buffer.from([0xbe])), HpackError); // 62: empty dynamic table
  assert.throws(() => new HpackDecoder().decode(Buffer.from([0x40, 0x05, 0x61])), HpackError); // name says 5 octets, 1 there
  assert.throws(() => new HpackDecoder().decode(Buffer.from([0xff, 0x80, 0x80])), HpackError); // integer never ends
  assert.throws(() => new HpackDecoder().decode(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0x0f])), HpackError); // integer > 2^31
  assert.throws(() => new HpackDecoder().decode(Buffer.from([0x82, 0x20])), HpackError); // size update after a field
  assert.throws(() => new HpackDecoder({ maxTableSize: 4096 }).decode(Buffer.from([0x3f, 0xe2, 0x1f])), HpackError); // 4097
});

test('size update to 0 empties the table; a later update may grow it again up to the setting', () => {
  const d = new HpackDecoder();
  d.decode(hex('400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572'));
  assert.equal(d.tableSize, 55);
  assert.deepEqual(d.decode(Buffer.from([0x20, 0x82])), [':method', 'GET']);
  assert.equal(d.tableSize, 0);
  assert.throws(() => d.decode(Buffer.from([0xbe])), HpackError);
  // Back to 4096 (0x3f e1 1f), then an entry is kept again.
  d.decode(Buffer.from([0x3f, 0xe1, 0x1f, ...hex('400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572')]));
  assert.equal(d.tableSize, 55);
});

test('an entry larger than the table empties it and is not added; many entries evict in order', () => {
  const d = new HpackDecoder({ maxTableSize: 100 });
  const literal = (name: string, value: string) => Buffer.concat([Buffer.from([0x40, name.length]), Buffer.from(name), Buffer.from([value.length]), Buffer.from(value)]);
  d.decode(literal('a', 'b'));
  assert.equal(d.tableSize, 34);
  assert.deepEqual(d.decode(literal('big', 'x'.repeat(80))), ['big', 'x'.repeat(80)]);
  assert.equal(d.tableSize, 0);
  for (let i = 0; i < 500; i++) d.decode(literal(`k${i % 10}`, `v${i}`));
  // 100 octets hold two entries of 36-37 octets: the last two, newest first.
  assert.deepEqual(d.table, [['k9', 'v499'], ['k8', 'v498']]);
  assert.deepEqual(d.decode(Buffer.from([0xbe, 0xbf])), ['k9', 'v499', 'k8', 'v498']);
});

test('encoder: static matches indexed, other fields literal; the decoder reads them back', () => {
  const fields: Pairs = [[':status', '200'], ['content-type', 'application/grpc'], ['grpc-status', '0'], ['grpc-message', 'caf\u00e9']];
  const block = encodeHeaders(fields);
  assert.equal(block[0], 0x88);
  assert.deepEqual(new HpackDecoder().decode(block), flat(fields));
});
