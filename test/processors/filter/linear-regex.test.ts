import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { ConfigIssues, Node } from '../../../src/config/reader';
import { parseSelector, SelectorList } from '../../../src/processors/filter/selectors';
import { compileGlob } from '../../../src/util/glob';
import { compileLinearRegex } from '../../../src/util/regex';

const ID = 'service.instance.id';

function refusal(value: Record<string, unknown>): string[] {
  const issues = new ConfigIssues();
  assert.equal(parseSelector(new Node(value, 'processors::filter/obi::keep[0]', issues)), undefined);
  return issues.errors;
}

/**
 * Runs one selector match in a child process killed after 2 s: a backtracking engine needs far
 * longer (2^n steps; 915 ms already at 26 characters), RE2 about a millisecond. No timing asserted
 * in-process; bench/regex.ts measures it.
 */
function matchesInChild(selector: Record<string, unknown>, value: string): { status: number | null; signal: string | null; stdout: string } {
  const script = `
    const { ConfigIssues, Node } = require(${JSON.stringify(path.resolve(__dirname, '../../../src/config/reader'))});
    const { parseSelector, SelectorList } = require(${JSON.stringify(path.resolve(__dirname, '../../../src/processors/filter/selectors'))});
    const [selector, key, value] = JSON.parse(process.argv[1]);
    const list = new SelectorList([parseSelector(new Node(selector, 'keep[0]', new ConfigIssues()))]);
    process.stdout.write(String(list.match(new Map([[key, value]])) !== undefined));
  `;
  const [key] = Object.keys(selector);
  const run = spawnSync(process.execPath, ['-e', script, JSON.stringify([selector, key, value])], { timeout: 2000, encoding: 'utf8' });
  return { status: run.status, signal: run.signal, stdout: run.stdout };
}

void describe('selector regexes run on RE2 (linear time)', () => {
  void test("/^(a+)+$/ against 10,000 'a's and a 'b' completes (catastrophic backtracking before)", () => {
    const run = matchesInChild({ 'service.name': '/^(a+)+$/' }, `${'a'.repeat(10_000)}b`);
    assert.equal(run.signal, null, 'the match was killed after 2 s: the pattern backtracks');
    assert.equal(run.status, 0);
    assert.equal(run.stdout, 'false');
    assert.equal(matchesInChild({ 'service.name': '/^(a+)+$/' }, 'a'.repeat(10_000)).stdout, 'true');
  });

  void test('globs take polynomial-free time too: "*a*a*a*a*a*a*c" against 10,000 a\'s', () => {
    const run = matchesInChild({ 'service.name': '*a*a*a*a*a*a*c' }, 'a'.repeat(10_000));
    assert.equal(run.signal, null, 'the match was killed after 2 s: the glob backtracks');
    assert.equal(run.stdout, 'false');
    assert.equal(compileGlob('*a*a*a*a*a*a*c').test(`${'a'.repeat(100)}c`), true);
  });

  void test('backreferences and lookaround are refused at validation, naming the key path and the reason', () => {
    const cases: [string, RegExp][] = [
      ['/^(a)\\1$/', /a backreference \(\\1\) is not supported: patterns run on RE2/],
      ['/^(?<x>a)\\k<x>$/', /a named backreference/],
      ['/^web(?=-1)/', /a lookahead \(\?=\.\.\.\) is not supported/],
      ['/^web(?!-1)/', /a lookahead \(\?!\.\.\.\) is not supported/],
      ['/(?<=web)-1/', /a lookbehind \(\?<=\.\.\.\) is not supported/],
      ['/(?<!web)-1/', /a lookbehind \(\?<!\.\.\.\) is not supported/],
    ];
    for (const [pattern, reason] of cases) {
      const errors = refusal({ [ID]: pattern });
      assert.equal(errors.length, 1, pattern);
      assert.ok(errors[0]!.startsWith(`processors::filter/obi::keep[0]::service.instance.id: invalid regular expression ${pattern}: `), errors[0]);
      assert.match(errors[0]!, reason);
    }
    // In a character class these characters are literal and accepted.
    assert.equal(compileLinearRegex('^[(?=]+$').test('(?='), true);
  });

  void test('other syntax RE2 lacks, unknown flags and the v flag are config errors; long patterns are quoted shortened', () => {
    assert.match(refusal({ [ID]: '/a{2000}/' })[0]!, /invalid repeat count/);
    assert.match(refusal({ [ID]: '/web/q' })[0]!, /unsupported flag "q"/);
    assert.match(refusal({ [ID]: '/web/v' })[0]!, /unsupported flag "v"/);
    const long = refusal({ [ID]: `/(${'x'.repeat(5000)}/` })[0]!;
    assert.ok(long.length < 700, `${long.length} characters`);
  });

  void test('JavaScript spellings and flags keep their meaning', () => {
    const match = (pattern: string, flags: string, value: string): boolean => compileLinearRegex(pattern, flags).test(value);
    assert.equal(match('^\\u0041$', '', 'A'), true);
    assert.equal(match('^web$', 'i', 'WEB'), true);
    assert.equal(match('^b$', 'm', 'a\nb'), true);
    assert.equal(match('^b$', '', 'a\nb'), false);
    assert.equal(match('a.b', 's', 'a\nb'), true);
    assert.equal(match('a.b', '', 'a\nb'), false);
    assert.equal(match('^.$', '', '😀'), true, 'one code point, as with the u flag');
    assert.equal(match('', '', 'x'), true);
    assert.equal(match('web', 'gy', 'a web'), true);
  });

  void test('exact selectors stay in the hash index; globs and regexes are scanned', () => {
    const issues = new ConfigIssues();
    const parse = (value: Record<string, unknown>) => parseSelector(new Node(value, 'keep', issues))!;
    const list = new SelectorList([parse({ [ID]: 'web:1' }), parse({ [ID]: 'web:*' }), parse({ [ID]: '/^web:/' })]);
    assert.deepEqual(list.selectors[0]!.exact, { key: ID, value: 'web:1' });
    assert.equal(list.selectors[1]!.exact, undefined);
    assert.equal(list.match(new Map([[ID, 'web:2']])), list.selectors[1]);
  });

  void test('glob ? is one character, also outside the BMP', () => {
    assert.equal(compileGlob('a?b').test('a😀b'), true);
    assert.equal(compileGlob('a??b').test('a😀b'), false);
    assert.equal(compileGlob('*?').test('😀'), true);
    assert.equal(compileGlob('?*?').test('😀'), false);
  });
});
