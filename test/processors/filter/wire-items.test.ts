import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { SPAN_CONTEXT, compileCondition, type TelemetryItem } from '../../../src/ottl';
import { SPAN } from '../../../src/pdata/fields';
import { WireAttributes, WireSpan, decodeOttlKeyValues } from '../../../src/processors/filter/wire-items';

// The span path's wire attributes: a key read alone (its fast paths for the usual layout) and
// `attributes["k"] == "literal"` answered on the bytes (RawStringEquals) give what a full decode
// gives, on KeyValues built by hand in usual and unusual layouts.

function varint(n: number): number[] {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return out;
}
const len = (field: number, ...payload: Buffer[]): Buffer => {
  const body = Buffer.concat(payload);
  return Buffer.concat([Buffer.from([...varint(field * 8 + 2), ...varint(body.length)]), body]);
};
const str = (field: number, s: string): Buffer => len(field, Buffer.from(s));
const intField = (field: number, n: number): Buffer => Buffer.from([...varint(field * 8), ...varint(n)]);

const LONG = `/${'x'.repeat(140)}`;
/** AnyValue payloads: plain strings, other types, a string then an int (the last of the oneof wins), an unknown field after. */
const anyValue = fc.oneof(
  fc.constantFrom('/health', '/healthz', '/heaLth', '', 'é', 'è', LONG).map((s) => str(1, s)),
  fc.constantFrom(200, 0).map((n) => intField(3, n)),
  fc.constant(Buffer.concat([str(1, '/health'), intField(3, 7)])),
  fc.constant(Buffer.concat([str(1, '/health'), intField(9, 1)])),
  fc.constant(Buffer.alloc(0)),
);
/** One KeyValue: key then value, value then key, key without value, two key fields (before or after the value). */
const keyValue = fc.tuple(fc.constantFrom('url.path', 'url', 'é', '', LONG), anyValue, fc.constantFrom('kv', 'vk', 'k', 'kk', 'kvk', 'kuk')).map(([key, value, layout]) => {
  const k = str(1, key);
  const v = len(2, value);
  switch (layout) {
    case 'kv': return len(9, k, v);
    case 'vk': return len(9, v, k);
    case 'k': return len(9, k);
    case 'kvk': return len(9, str(1, 'other'), v, k);
    // an unknown field between the value and the key that replaces the first
    case 'kuk': return len(9, str(1, 'other'), v, intField(7, 1), k);
    default: return len(9, str(1, 'other'), k, v);
  }
});
const literal = fc.constantFrom('/health', '', 'é', LONG, '/healthz', '/heaLth');
const key = fc.constantFrom('url.path', 'url', 'é', '', LONG, 'absent');

test('WireAttributes: a key read alone and stringEquals answer as the full decode', () => {
  fc.assert(
    fc.property(fc.array(keyValue, { maxLength: 5 }), key, literal, (kvs, k, lit) => {
      const body = Buffer.concat(kvs);
      const full = decodeOttlKeyValues(body, 0, body.length, SPAN.attributes);
      const lazy = () => new WireAttributes(body, 0, body.length, SPAN.attributes);
      assert.deepEqual(lazy().get(k), full.get(k));
      assert.equal(lazy().has(k), full.has(k));
      const raw = lazy().stringEquals(k, Buffer.from(lit));
      if (raw !== undefined) assert.equal(raw, full.get(k) === lit);
    }),
    { numRuns: 2000, seed: 16 },
  );
});

/** Span fields other than attributes, of every wire type, placed between the KeyValues. */
const otherField = fc.oneof(
  fc.constant(str(5, 'GET')),
  fc.constantFrom(0, 3, 300, 2 ** 40).map((n) => intField(6, n)),
  fc.constant(Buffer.from([(7 << 3) | 1, 1, 2, 3, 4, 5, 6, 7, 8])),
  // flags: field 16, fixed32, a two-byte tag
  fc.constant(Buffer.from([0x85, 0x01, 1, 0, 0, 0])),
  fc.constant(len(15, str(2, 'x'.repeat(200)))),
);

test('attributes["k"] == / != "literal" on wire spans decide as on decoded spans', () => {
  fc.assert(
    fc.property(fc.array(fc.oneof(keyValue, otherField), { maxLength: 7 }), key, literal, fc.constantFrom('==', '!='), fc.boolean(), (kvs, k, lit, op, flipped) => {
      const span = Buffer.concat([str(5, 'GET'), ...kvs]);
      const path = `attributes[${JSON.stringify(k)}]`;
      const text = flipped ? `${JSON.stringify(lit)} ${op} ${path}` : `${path} ${op} ${JSON.stringify(lit)}`;
      const condition = compileCondition(text, SPAN_CONTEXT, { mode: 'legacy' });
      const wire: TelemetryItem = { resource: {}, span: new WireSpan(span, 0, span.length) };
      const decoded: TelemetryItem = { resource: {}, span: { attributes: decodeOttlKeyValues(span, 0, span.length, SPAN.attributes) } };
      assert.equal(condition.eval(wire), condition.eval(decoded), text);
    }),
    { numRuns: 2000, seed: 16 },
  );
});

test('a wire span answers attributes["k"] == "literal" on its bytes: other fields skipped, an absent key is false, an unusual layout is left to the decode', () => {
  const kv = (k: string, v: string) => len(9, str(1, k), len(2, str(1, v)));
  const span = Buffer.concat([str(1, 'a'.repeat(16)), intField(6, 2), Buffer.from([0x85, 0x01, 1, 0, 0, 0]), kv('http.method', 'GET'), len(15, str(2, 'y'.repeat(300))), kv('url.path', '/health')]);
  const wire = (bytes: Buffer) => new WireSpan(bytes, 0, bytes.length);
  const key = Buffer.from('url.path');
  assert.equal(wire(span).attributeStringEquals(key, Buffer.from('/health')), true);
  assert.equal(wire(span).attributeStringEquals(key, Buffer.from('/healthz')), false);
  assert.equal(wire(span).attributeStringEquals(key, Buffer.from('/heaLth')), false);
  assert.equal(wire(span).attributeStringEquals(Buffer.from('absent'), Buffer.from('/health')), false);
  // The first KeyValue with the key wins, as pcommon's Get.
  const twice = Buffer.concat([kv('url.path', '/a'), kv('url.path', '/health')]);
  assert.equal(wire(twice).attributeStringEquals(key, Buffer.from('/health')), false);
  // A later key field replaces the first, also after the value: the bytes leave it to the decode.
  const replaced = len(9, str(1, 'other'), len(2, str(1, '/health')), str(1, 'url.path'));
  assert.equal(wire(replaced).attributeStringEquals(key, Buffer.from('/health')), undefined);
  assert.equal(wire(replaced).attributes.get('url.path'), '/health');
  // Value before key: the bytes cannot tell cheaply.
  const valueFirst = Buffer.concat([len(9, len(2, str(1, '/health')), str(1, 'url.path'))]);
  assert.equal(wire(valueFirst).attributeStringEquals(key, Buffer.from('/health')), undefined);
  // Truncated bytes are never read past their end.
  assert.equal(wire(span.subarray(0, span.length - 3)).attributeStringEquals(key, Buffer.from('/health')), undefined);
  // Once the map was built, the map answers.
  const read = wire(span);
  assert.equal(read.attributes.get('url.path'), '/health');
  assert.equal(read.attributeStringEquals(key, Buffer.from('/health')), undefined);
});

test('stringEquals answers on the usual layout without decoding; a lone surrogate literal means U+FFFD on both paths', () => {
  const body = Buffer.concat([len(9, str(1, 'a'), len(2, str(1, 'x'))), len(9, str(1, 'url.path'), len(2, str(1, '/health')))]);
  const attrs = new WireAttributes(body, 0, body.length, SPAN.attributes);
  assert.equal(attrs.stringEquals('url.path', Buffer.from('/health')), true);
  assert.equal(attrs.stringEquals('url.path', Buffer.from('/healthz')), false);
  // No KeyValue has the key: nil, which equals no string.
  assert.equal(attrs.stringEquals('absent', Buffer.from('/health')), false);
  // A KeyValue with two key fields is keyed by the last: the first occurrence of url.path is "/a".
  const twoKeys = Buffer.concat([len(9, str(1, 'other'), str(1, 'url.path'), len(2, str(1, '/a'))), len(9, str(1, 'url.path'), len(2, str(1, '/health')))]);
  const twice = () => new WireAttributes(twoKeys, 0, twoKeys.length, SPAN.attributes);
  assert.equal(twice().get('url.path'), '/a');
  assert.notEqual(twice().stringEquals('url.path', Buffer.from('/health')), true);
  // A lone surrogate (from a YAML "\ud800" escape) is read as U+FFFD by the parser, as by the decoded comparison.
  const fffd = Buffer.concat([len(9, str(1, 'k'), len(2, str(1, '\ufffd')))]);
  const span = { resource: {}, span: new WireSpan(fffd, 0, fffd.length) };
  const decoded = { resource: {}, span: { attributes: new Map([['k', '\ufffd']]) } };
  const lone = compileCondition('attributes["k"] == "\ud800"', SPAN_CONTEXT, { mode: 'legacy' });
  assert.equal(lone.eval(span), lone.eval(decoded));
  assert.equal(compileCondition('attributes["k"] == "\ufffd"', SPAN_CONTEXT, { mode: 'legacy' }).eval(span), true);
});
