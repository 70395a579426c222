// Micro-benchmark of selector value matching: RE2 (re2js) against V8's RegExp for regex selectors,
// the segment matcher against the RegExp globs used to compile to, and the ReDoS probe of issue 14.
// Prints JSON. Run: npx tsc -p tsconfig.json && node dist/bench/regex.js
import { compileGlob } from '../src/util/glob';
import { compileLinearRegex } from '../src/util/regex';

function nsPerCall(test: (value: string) => boolean, values: readonly string[], minMs = 300): number {
  let calls = 0;
  let sink = 0;
  const start = process.hrtime.bigint();
  let elapsed = 0n;
  while (elapsed < BigInt(minMs) * 1_000_000n) {
    for (const value of values) if (test(value)) sink++;
    calls += values.length;
    elapsed = process.hrtime.bigint() - start;
  }
  if (sink < 0) console.log(sink);
  return Math.round(Number(elapsed) / calls);
}

function msOnce(run: () => void): number {
  const start = process.hrtime.bigint();
  run();
  return Number(process.hrtime.bigint() - start) / 1e6;
}

function globRegExp(glob: string): RegExp {
  let pattern = '';
  for (const ch of glob) pattern += ch === '*' ? '.*' : ch === '?' ? '.' : ch.replace(/[\\^$.|+()[\]{}/-]/g, '\\$&');
  return new RegExp(`^${pattern}$`, 's');
}

const values = ['envoy', 'backend', 'edge-17', 'frontend-proxy', 'checkout-service-7f9c', 'ip-10-0-1-5:297514', 'payment', 'edge-x'];

const regexes: [string, string][] = [
  ['^(envoy|backend)$', ''],
  ['^edge-[0-9]+$', ''],
  ['proxy', 'i'],
  ['^ip-10-0-\\d+-\\d+:\\d+$', ''],
];
const globs = ['edge-*', '*:297514', 'ip-10-*-5:*', 'check?ut-*'];

const redos = `${'a'.repeat(10_000)}b`;
const coldStart = process.hrtime.bigint();
const cold = compileLinearRegex('^(a+)+$');
const coldMatched = cold.test(redos);
const redosColdMs = Number(process.hrtime.bigint() - coldStart) / 1e6;
const warm: number[] = [];
for (let i = 0; i < 20; i++) warm.push(msOnce(() => cold.test(redos)));
warm.sort((a, b) => a - b);

console.log(
  JSON.stringify(
    {
      node: process.version,
      redos: {
        pattern: '/^(a+)+$/',
        input: "10,000 'a' + 'b'",
        matched: coldMatched,
        cold_ms_incl_module_load_and_compile: Number(redosColdMs.toFixed(2)),
        warm_ms_median: Number(warm[10]!.toFixed(2)),
        warm_ms_max: Number(warm[19]!.toFixed(2)),
      },
      regex_ns_per_value: regexes.map(([source, flags]) => ({
        pattern: `/${source}/${flags}`,
        v8_regexp: nsPerCall(((re) => (v: string) => re.test(v))(new RegExp(source, flags)), values),
        re2js: nsPerCall(((re) => (v: string) => re.test(v))(compileLinearRegex(source, flags)), values),
      })),
      glob_ns_per_value: globs.map((glob) => ({
        glob,
        v8_regexp: nsPerCall(((re) => (v: string) => re.test(v))(globRegExp(glob)), values),
        segments: nsPerCall(((g) => (v: string) => g.test(v))(compileGlob(glob)), values),
      })),
      glob_polynomial: {
        glob: '*a*a*a*a*a*a*c',
        input: "10,000 'a'",
        segments_ms: Number(msOnce(() => compileGlob('*a*a*a*a*a*a*c').test('a'.repeat(10_000))).toFixed(3)),
      },
    },
    null,
    2,
  ),
);
