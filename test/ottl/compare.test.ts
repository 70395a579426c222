import assert from 'node:assert/strict';
import { test } from 'node:test';
import { goJson } from '../../src/ottl/getters';
import { OttlDuration, OttlId, OttlTime, compareValues, type CompareOp, type OttlValue } from '../../src/ottl/values';

const show = (v: OttlValue): string => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : goJson(v));

const OPS: readonly CompareOp[] = ['==', '!=', '<', '<=', '>', '>='];
/** The six results in OPS order, as a compact string of T/F. */
const row = (a: OttlValue, b: OttlValue): string => OPS.map((op) => (compareValues(a, b, op) ? 'T' : 'F')).join('');

test('nil: equal to nil only; inequalities with nil are false except !=', () => {
  assert.equal(row(null, null), 'TFFTFT');
  for (const v of ['', 'x', 0n, 1n, 0, true, false, new Map(), [], new Uint8Array([1])] as OttlValue[]) {
    assert.equal(row(v, null), 'FTFFFF', `${show(v)} vs nil`);
    assert.equal(row(null, v), 'FTFFFF', `nil vs ${show(v)}`);
  }
});

test('int vs double compare numerically; int64 stays exact', () => {
  assert.equal(row(1n, 1), 'TFFTFT');
  assert.equal(row(1, 1n), 'TFFTFT');
  assert.equal(row(1n, 1.5), 'FTTTFF');
  assert.equal(row(2.5, 2n), 'FTFFTT');
  assert.equal(row(9007199254740993n, 9007199254740992n), 'FTFFTT', 'no precision loss between two ints');
  assert.equal(row(NaN, NaN), 'FTFFFF');
});

test('mixed types: only != is true', () => {
  const pairs: [OttlValue, OttlValue][] = [
    ['1', 1n], [1n, '1'], ['true', true], [true, 1n], [1, 'a'], [new Uint8Array([1]), '01'],
    [new Map(), []], [[], new Map()], [new OttlId('span', new Uint8Array(8)), new Uint8Array(8)],
    [new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]), new OttlId('span', new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]))],
    [new OttlTime(1n), 1n], [new OttlDuration(1n), 1n],
  ];
  for (const [a, b] of pairs) assert.equal(row(a, b), 'FTFFFF', `${show(a)} vs ${show(b)}`);
});

test('strings order by UTF-8 bytes; bools false < true; bytes lexicographically', () => {
  assert.equal(row('a', 'b'), 'FTTTFF');
  assert.equal(row('abc', 'abc'), 'TFFTFT');
  assert.equal(row('ab', 'abc'), 'FTTTFF');
  // U+FF61 sorts before U+1F600 in UTF-8 (and in code points); UTF-16 units would say the opposite.
  assert.equal(row('\uff61', '\u{1f600}'), 'FTTTFF');
  assert.equal(row(false, true), 'FTTTFF');
  assert.equal(row(true, true), 'TFFTFT');
  assert.equal(row(new Uint8Array([1, 2]), new Uint8Array([1, 3])), 'FTTTFF');
  assert.equal(row(new Uint8Array([1, 2]), new Uint8Array([1, 2])), 'TFFTFT');
});

test('an empty bytes value compares like nil (the Collector reads it as a nil []byte)', () => {
  assert.equal(row(new Uint8Array(0), null), 'TFFTFT');
  assert.equal(row(new Uint8Array([1]), new Uint8Array(0)), 'FTFFFF');
});

test('maps and lists: deep equality only, types must match (1 != 1.0), no ordering', () => {
  const m = (o: Record<string, OttlValue>): Map<string, OttlValue> => new Map(Object.entries(o));
  assert.equal(row(m({ a: 1n, b: ['x'] }), m({ b: ['x'], a: 1n })), 'TFFFFF');
  assert.equal(row(m({ a: 1n }), m({ a: 1 })), 'FTFFFF');
  assert.equal(row(['a', 1n], ['a', 1n]), 'TFFFFF');
  assert.equal(row(['a', 1n], [1n, 'a']), 'FTFFFF');
  assert.equal(row([NaN], [NaN]), 'FTFFFF');
});

test('ids compare by value with == and != only; times and durations order', () => {
  const id = (b: number): OttlId => new OttlId('trace', new Uint8Array(16).fill(b));
  assert.equal(row(id(1), id(1)), 'TFFFFF');
  assert.equal(row(id(1), id(2)), 'FTFFFF');
  assert.equal(row(new OttlId('span', new Uint8Array(8)), new OttlId('trace', new Uint8Array(8))), 'FTFFFF');
  assert.equal(row(new OttlTime(1n), new OttlTime(2n)), 'FTTTFF');
  assert.equal(row(new OttlDuration(5n), new OttlDuration(5n)), 'TFFTFT');
});
