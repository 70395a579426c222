import { re2js } from './lazy-modules';

// User-supplied patterns that are matched against data a sender controls (selector values, later
// OTTL IsMatch) run on RE2 semantics: matching time is linear in the input, so no pattern and input
// can block the event loop (V8's backtracking engine takes 2^n steps for /^(a+)+$/ on "aaa...ab").
// The Collector's regexes are RE2 too. Patterns are written in JavaScript syntax; RE2 refuses what
// needs backtracking (backreferences, lookaround).

/** A compiled pattern: `test` finds a match anywhere in the value (unanchored, like RegExp.test). */
export interface LinearRegex {
  readonly source: string;
  readonly flags: string;
  test(value: string): boolean;
}

/** JavaScript flags accepted; `g`, `y` and `d` change nothing for a yes/no test, `u` is RE2's default. */
const ACCEPTED_FLAGS = /^[imsugyd]*$/;

/**
 * Compiles a pattern written in JavaScript syntax with JavaScript flags for RE2 matching.
 * Throws an Error whose message says what is wrong (and why, for syntax RE2 refuses on purpose).
 */
export function compileLinearRegex(pattern: string, flags = ''): LinearRegex {
  if (!ACCEPTED_FLAGS.test(flags)) {
    const bad = [...new Set(flags.replace(/[imsugyd]/g, ''))].join('');
    throw new Error(`unsupported flag${bad.length > 1 ? 's' : ''} "${bad}" (accepted: i, m, s; u, g, y and d are ignored)`);
  }
  const unsupported = unsupportedSyntax(pattern);
  if (unsupported) throw new Error(`${unsupported} is not supported: patterns run on RE2 (linear-time matching), which has no backtracking`);
  const { RE2JS } = re2js();
  let re2Flags = 0;
  if (flags.includes('i')) re2Flags |= RE2JS.CASE_INSENSITIVE;
  if (flags.includes('m')) re2Flags |= RE2JS.MULTILINE;
  if (flags.includes('s')) re2Flags |= RE2JS.DOTALL;
  let compiled: InstanceType<typeof RE2JS>;
  try {
    // translateRegExp rewrites JavaScript-only spellings RE2 lacks (\uXXXX, \cX, an empty pattern).
    compiled = RE2JS.compile(RE2JS.translateRegExp(pattern), re2Flags);
  } catch (err) {
    throw new Error((err as Error).message.replace(/^error parsing regexp: /, ''), { cause: err });
  }
  return { source: pattern, flags, test: (value) => compiled.test(value) };
}

/** Names syntax that needs a backtracking engine, or undefined. Character classes are skipped. */
function unsupportedSyntax(pattern: string): string | undefined {
  let inClass = false;
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i];
    if (ch === '\\') {
      const next = pattern[i + 1] ?? '';
      if (!inClass && /[1-9]/.test(next)) return `a backreference (\\${next})`;
      if (!inClass && next === 'k' && pattern[i + 2] === '<') return 'a named backreference (\\k<...>)';
      i++;
    } else if (inClass) {
      if (ch === ']') inClass = false;
    } else if (ch === '[') {
      inClass = true;
      if (pattern[i + 1] === '^') i++;
      if (pattern[i + 1] === ']') i++; // a leading ']' is literal
    } else if (ch === '(' && pattern[i + 1] === '?') {
      const rest = pattern.slice(i + 2, i + 4);
      if (rest.startsWith('=') || rest.startsWith('!')) return `a lookahead (?${rest[0]}...)`;
      if (rest === '<=' || rest === '<!') return `a lookbehind (?${rest}...)`;
    }
  }
  return undefined;
}

/**
 * Compiles a pattern written in RE2 syntax as Go's regexp package reads it (OTTL's IsMatch), without the
 * JavaScript-syntax translation above. Throws an Error with RE2's reason.
 */
export function compileRe2Pattern(pattern: string): LinearRegex {
  const { RE2JS } = re2js();
  let compiled: InstanceType<typeof RE2JS>;
  try {
    compiled = RE2JS.compile(pattern);
  } catch (err) {
    throw new Error((err as Error).message, { cause: err });
  }
  return { source: pattern, flags: '', test: (value) => compiled.test(value) };
}
