import assert from 'node:assert/strict';
import { test } from 'node:test';
import { OttlSyntaxError, goUnquote, parseCondition, tokenize, type BoolNode } from '../../src/ottl/parser';

const types = (src: string): string[] => tokenize(src).slice(0, -1).map((t) => `${t.type}:${t.text}`);

test('lexer: rules in the Collector order (first match wins, not longest)', () => {
  // Bytes before Int; Float before Int; `1.` is a float.
  assert.deepEqual(types('0x0aFF 1. .5 12'), ['Bytes:0x0aFF', 'Float:1.', 'Float:.5', 'Int:12']);
  // Int has no sign in v0.160.0: `1-1` is Int, OpAddSub, Int (v0.140.1 lexed `-1` as one Int).
  assert.deepEqual(types('1-1'), ['Int:1', 'OpAddSub:-', 'Int:1']);
  // `1e5` is not a float: Int then a Lowercase word.
  assert.deepEqual(types('1e5'), ['Int:1', 'Lowercase:e5']);
  // Keywords need a word boundary; `\b` at the start of the remaining input always holds.
  assert.deepEqual(types('nil nilx not_a notx and1 or'), ['Nil:nil', 'Lowercase:nilx', 'Lowercase:not_a', 'Lowercase:notx', 'Lowercase:and1', 'OpOr:or']);
  assert.deepEqual(types('1and'), ['Int:1', 'OpAnd:and']);
  // Function names are Uppercase + Lowercase runs; enums a single Uppercase token.
  assert.deepEqual(types('IsMatch SPAN_KIND_SERVER'), ['Uppercase:I', 'Lowercase:s', 'Uppercase:M', 'Lowercase:atch', 'Uppercase:SPAN_KIND_SERVER']);
  assert.deepEqual(types('a >= b => c = d'), ['Lowercase:a', 'OpComparison:>=', 'Lowercase:b', 'LambdaArrow:=>', 'Lowercase:c', 'Equal:=', 'Lowercase:d']);
  assert.deepEqual(types('true truex'), ['Boolean:true', 'Lowercase:truex']);
});

test('lexer: unknown characters and unterminated strings are errors with the position', () => {
  assert.throws(() => tokenize('name == \'x\''), (e: unknown) => e instanceof OttlSyntaxError && /at 1:9 near `'x'`/.test(e.message));
  assert.throws(() => tokenize('name == "abc'), /invalid input text/);
});

test('strings unquote as Go does', () => {
  assert.equal(goUnquote('"a\\tb\\n\\"c\\\\"'), 'a\tb\n"c\\');
  assert.equal(goUnquote('"\\x41\\101\\u00e9\\U0001F600"'), 'AAé😀');
  assert.throws(() => goUnquote('"\\q"'), /invalid escape/);
  assert.throws(() => goUnquote('"\\\'"'), /invalid escape/);
  assert.throws(() => parseCondition('name == "a\\qb"'), /condition has invalid syntax at 1:9/);
});

const shape = (n: BoolNode): string => {
  switch (n.kind) {
    case 'or': return `or(${n.terms.map(shape).join(',')})`;
    case 'and': return `and(${n.values.map(shape).join(',')})`;
    case 'not': return `not(${shape(n.value)})`;
    case 'compare': return `${n.left.kind === 'path' ? n.left.path.text : n.left.kind}${n.op}${n.right.kind}`;
    case 'const': return String(n.value);
    case 'call': return `${n.call.name}()`;
  }
};

test('precedence: and binds tighter than or; not applies to one value; parentheses nest', () => {
  assert.equal(shape(parseCondition('a == 1 or b == 2 and c == 3')), 'or(a==int,and(b==int,c==int))');
  assert.equal(shape(parseCondition('(a == 1 or b == 2) and c == 3')), 'and(or(a==int,b==int),c==int)');
  assert.equal(shape(parseCondition('not a == 1 and not (b == 2 or true)')), 'and(not(a==int),not(or(b==int,true)))');
  assert.equal(shape(parseCondition('IsMatch(name, "x") or false')), 'or(IsMatch(),false)');
  assert.equal(shape(parseCondition('((a == nil))')), 'a==nil');
  assert.equal(shape(parseCondition('IsMatch(name, "x") == true')), 'call==bool');
});

test('values: paths with context and nested keys, converters with named args and keys, lists, maps, math', () => {
  const n = parseCondition('resource.attributes["a"]["b"][0] == Split(name, delimiter = ",")[1]');
  assert.ok(n.kind === 'compare' && n.left.kind === 'path');
  assert.equal(n.left.path.context, 'resource');
  assert.deepEqual(n.left.path.fields.map((f) => [f.name, f.keys.map((k) => k.kind)]), [['attributes', ['string', 'string', 'int']]]);
  assert.ok(n.right.kind === 'call');
  assert.equal(n.right.call.args[1]?.name, 'delimiter');
  assert.equal(n.right.call.keys.length, 1);

  const m = parseCondition('[1, "a", {"k": [true]}] != {"x": 1.5, "y": nil,}');
  assert.ok(m.kind === 'compare' && m.left.kind === 'list' && m.right.kind === 'map');
  assert.equal(m.right.entries.length, 2);

  const math = parseCondition('1 + 2 * 3 - -4 == 3');
  assert.ok(math.kind === 'compare' && math.left.kind === 'math');
  // (1 + (2*3)) - (-4): * binds tighter, the negative literal folds.
  assert.equal(math.left.op, '-');
  assert.ok(math.left.right.kind === 'int' && math.left.right.value === -4n);
  assert.ok(math.left.left.kind === 'math' && math.left.left.op === '+');

  const e = parseCondition('kind == SPAN_KIND_SERVER');
  assert.ok(e.kind === 'compare' && e.right.kind === 'enum' && e.right.name === 'SPAN_KIND_SERVER');
  const b = parseCondition('span_id == 0x0102030405060708');
  assert.ok(b.kind === 'compare' && b.right.kind === 'bytes' && b.right.value.length === 8);
});

test('syntax errors name the position and the text there', () => {
  assert.throws(() => parseCondition('name == '), /condition has invalid syntax at 1:9: unexpected end of condition/);
  assert.throws(() => parseCondition('name = "x"'), (e: unknown) => e instanceof OttlSyntaxError && /at 1:6 near `= "x"`/.test(e.message));
  assert.throws(() => parseCondition('attributes["a"] == 1e5'), /near `e5`/);
  assert.throws(() => parseCondition('span_id == 0xABC'), /even number of hexadecimal digits/);
  assert.throws(() => parseCondition('x == 9223372036854775808'), /value out of range/);
  assert.throws(() => parseCondition('a == 1 b == 2'), /near `b == 2`/);
  assert.throws(() => parseCondition('Len(attributes) > '), /unexpected end/);
});

test('editors (lowercase functions) are refused in conditions', () => {
  // Alone, an editor is not a boolean value at all (a syntax error, as in the Collector) ...
  assert.throws(() => parseCondition('isMatch(name, "x")'), /condition has invalid syntax at 1:19/);
  // ... and as a value it parses, then is refused by name.
  assert.throws(() => parseCondition('isMatch(name, "x") == true'), /converter names must start with an uppercase letter but got 'isMatch'/);
  assert.throws(() => parseCondition('set(name, "x") == nil'), /got 'set'/);
});
