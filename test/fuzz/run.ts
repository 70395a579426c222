import fc from 'fast-check';
import { saveInput } from './corpus';
import { TARGETS } from './targets';

// `npm run fuzz -- [--runs N | --seconds S] [--target wire|json|decompress] [--seed N] [--progress]`: runs the
// fuzz targets (targets.ts) for N inputs in all (split evenly between the targets) or S seconds
// each, in chunks with fresh seeds; every failing input is shrunk, saved to test/fuzz/corpus/ and
// the run goes on. Exit status 1 when anything failed. `npm test` replays the corpus.

function option(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const seconds = option('seconds') === undefined ? undefined : Number(option('seconds'));
const totalRuns = Number(option('runs') ?? (seconds === undefined ? 30_000 : Infinity));
const only = option('target');
let seed = Number(option('seed') ?? Date.now() % 2 ** 31);
const targets = TARGETS.filter((t) => only === undefined || t.name === only);
if (targets.length === 0) {
  console.error(`unknown target ${only}; targets: ${TARGETS.map((t) => t.name).join(', ')}`);
  process.exit(2);
}
const CHUNK = 10_000;

let failures = 0;
let peakRss = 0;
async function main(): Promise<void> {
  for (const target of targets) {
    await target.prepare?.();
    const runs = Math.ceil(totalRuns / targets.length);
    const deadline = seconds === undefined ? Infinity : Date.now() + seconds * 1000;
    const started = Date.now();
    let done = 0;
    while (done < runs && Date.now() < deadline) {
      const numRuns = Math.min(CHUNK, runs - done);
      const details = await fc.check(
        fc.asyncProperty(target.arbitrary, async (input) => {
          await target.check(input);
        }),
        { numRuns, seed, interruptAfterTimeLimit: Math.max(1, deadline - Date.now()), markInterruptAsFailure: false },
      );
      done += details.numRuns;
      seed = (seed + 1) % 2 ** 31;
      peakRss = Math.max(peakRss, process.memoryUsage().rss);
      if (details.failed && details.counterexample) {
        failures++;
        const file = saveInput(target, details.counterexample[0]);
        console.log(`${target.name}: FAILED (seed ${details.seed}): ${String((details.errorInstance as Error | undefined)?.message ?? details.errorInstance)}\n  saved ${file}`);
      }
      if (process.argv.includes('--progress')) console.error(`${target.name}: ${done} inputs (seed ${details.seed})`);
      if (details.interrupted) break;
    }
    console.log(`${target.name}: ${done} inputs in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }
}

void main().then(() => {
  console.log(`fuzz: ${failures === 0 ? 'no failures' : `${failures} failing inputs saved`}; peak RSS ${(peakRss / 2 ** 20).toFixed(0)} MiB`);
  process.exitCode = failures === 0 ? 0 : 1;
});
