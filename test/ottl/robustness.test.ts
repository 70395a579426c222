import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  DATAPOINT_CONTEXT, OttlCompileError, OttlRuntimeError, RESOURCE_CONTEXT, SPAN_CONTEXT, compileCondition,
  type OttlValue, type TelemetryItem,
} from '../../src/ottl';

// Any text compiles or fails with OttlCompileError, and a compiled condition evaluates to a boolean
// or fails with OttlRuntimeError: never an internal TypeError or a hang, whatever config and data say.

const PIECES = [
  'name', 'attributes', '["a"]', '["b"]', '[0]', '[1]', 'resource.', 'span.', 'status.code', 'kind', 'trace_id',
  '==', '!=', '<', '>=', 'and', 'or', 'not', '(', ')', '[', ']', '{', '}', '"a"', '"b"', '":"', ':', ',', '1', '0', '-', '+',
  '*', '/', '1.5', '.5', 'nil', 'true', 'false', '0x0a', 'SPAN_KIND_SERVER', 'IsMatch(', 'Substring(', 'Len(', 'Split(',
  'String(', 'Int(', 'Concat(', 'ContainsValue(', 'TraceID(', 'Hex(', 'Duration("1s")', 'set(', '=', ' ', 'x', '\\', '"',
];

const ATTRS = new Map<string, OttlValue>([
  ['a', 'text'], ['b', 7n], ['c', [1n, 'x']], ['d', new Map<string, OttlValue>([['a', 1.5]])], ['e', null], ['f', new Uint8Array([1])],
]);
const ITEM: TelemetryItem = {
  resource: { attributes: ATTRS },
  span: { name: 'GET /a', kind: 2, attributes: ATTRS },
  metric: { type: 1, name: 'm' },
  dataPoint: { attributes: ATTRS, value: 2n },
};

const VALUES = [
  'name', 'attributes["a"]', 'attributes["c"][0]', 'attributes["c"][9]', 'attributes["a"]["x"]', 'attributes["d"]["a"]',
  'Len(attributes["a"])', 'Len(attributes["b"])', 'Substring(name, 1, 3)', 'Substring(name, 4, 30)', 'Int(attributes["a"])',
  'attributes["b"] / 0', 'attributes["b"] * 2.5', 'Split(name, "/")[5]', 'Split(name, "/")[1]', '-attributes["a"]',
  'TraceID(attributes["f"])', 'String(attributes["d"])', 'Concat([name, attributes["e"]], "-")', 'Hex(attributes["b"])',
  'Double(attributes["c"])', 'ContainsValue(attributes["c"], 1)', 'ContainsValue(attributes["a"], 1)', 'IsMatch(name, "^G")',
  'Duration("1s") + Duration("2ms")', 'nil', '1', '"x"', '[1, "x"]', '{"a": 1.5}',
];

test('random conditions: only OttlCompileError at compile, only OttlRuntimeError at evaluation', () => {
  let compiled = 0;
  let evaluated = 0;
  fc.assert(
    fc.property(
      fc.oneof(
        fc.array(fc.constantFrom(...PIECES), { maxLength: 14 }).map((parts) => parts.join(' ')),
        fc.tuple(fc.constantFrom(...VALUES), fc.constantFrom('==', '!=', '<', '>='), fc.constantFrom(...VALUES), fc.constantFrom(' and ', ' or ', ' and not '), fc.constantFrom(...VALUES))
          .map(([a, op, b, join, c]) => `${a} ${op} ${b}${join}IsString(${c})`),
      ),
      fc.constantFrom(SPAN_CONTEXT, RESOURCE_CONTEXT, DATAPOINT_CONTEXT),
      (text, ctx) => {
      let cond;
      try {
        cond = compileCondition(text, ctx);
        compiled++;
      } catch (err) {
        assert.ok(err instanceof OttlCompileError, `${text}: ${String(err)}`);
        return;
      }
      try {
        assert.equal(typeof cond.eval(ITEM), 'boolean');
        evaluated++;
      } catch (err) {
        assert.ok(err instanceof OttlRuntimeError, `${text}: ${String(err)}`);
      }
      },
    ),
    { numRuns: 3000, seed: 16 },
  );
  // Not vacuous: some random texts are valid conditions and evaluate.
  assert.ok(compiled > 300 && evaluated > 200, `compiled ${compiled}, evaluated ${evaluated}`);
});

test('well-formed comparisons over random values never throw outside OTTL errors', () => {
  const value = fc.oneof(
    fc.constant('nil'), fc.integer().map(String), fc.double({ noNaN: true, noDefaultInfinity: true, min: -1e6, max: 1e6 }).map((d) => d.toFixed(3).replace(/^-/, '- ')),
    fc.string({ maxLength: 5 }).map((s) => JSON.stringify(s)), fc.constantFrom('true', 'false', 'attributes["a"]', 'attributes["b"]', 'attributes["c"]', 'attributes["d"]', 'attributes["e"]', 'attributes["zz"]', '[1, "x"]', '{"a": 1.5}'),
  );
  fc.assert(
    fc.property(value, fc.constantFrom('==', '!=', '<', '<=', '>', '>='), value, (l, op, r) => {
      const text = `${l} ${op} ${r}`;
      const cond = compileCondition(text, SPAN_CONTEXT);
      assert.equal(typeof cond.eval(ITEM), 'boolean', text);
    }),
    { numRuns: 2000, seed: 16 },
  );
});
