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
  fc.constantFrom('/health', '/healthz', '', 'é', LONG).map((s) => str(1, s)),
  fc.constantFrom(200, 0).map((n) => intField(3, n)),
  fc.constant(Buffer.concat([str(1, '/health'), intField(3, 7)])),
  fc.constant(Buffer.concat([str(1, '/health'), intField(9, 1)])),
  fc.constant(Buffer.alloc(0)),
);
/** One KeyValue: key then value, value then key, key without value, two key fields. */
const keyValue = fc.tuple(fc.constantFrom('url.path', 'url', 'é', '', LONG), anyValue, fc.constantFrom('kv', 'vk', 'k', 'kk')).map(([key, value, layout]) => {
  const k = str(1, key);
  const v = len(2, value);
  switch (layout) {
    case 'kv': return len(9, k, v);
    case 'vk': return len(9, v, k);
    case 'k': return len(9, k);
    default: return len(9, str(1, 'other'), k, v);
  }
});
const literal = fc.constantFrom('/health', '', 'é', LONG, '/healthz');
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

test('attributes["k"] == / != "literal" on wire spans decide as on decoded spans', () => {
  fc.assert(
    fc.property(fc.array(keyValue, { maxLength: 5 }), key, literal, fc.constantFrom('==', '!='), fc.boolean(), (kvs, k, lit, op, flipped) => {
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

test('stringEquals answers on the usual layout without decoding; a lone surrogate literal means U+FFFD on both paths', () => {
  const body = Buffer.concat([len(9, str(1, 'a'), len(2, str(1, 'x'))), len(9, str(1, 'url.path'), len(2, str(1, '/health')))]);
  const attrs = new WireAttributes(body, 0, body.length, SPAN.attributes);
  assert.equal(attrs.stringEquals('url.path', Buffer.from('/health')), true);
  assert.equal(attrs.stringEquals('url.path', Buffer.from('/healthz')), false);
  assert.equal(attrs.stringEquals('absent', Buffer.from('/health')), undefined);
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
