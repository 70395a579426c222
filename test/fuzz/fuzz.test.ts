import { describe, test } from 'node:test';
import fc from 'fast-check';
import { corpusInputs } from './corpus';
import { TARGETS, type FuzzTarget } from './targets';

// The fuzz targets in the regular test run: every input ever saved to the corpus (inputs that
// once failed), then a fixed-seed run of each target. Longer runs: `npm run fuzz`.

const SEED = 20261202;
const RUNS = 2_000;

for (const target of TARGETS as FuzzTarget<never>[]) {
  describe(`fuzz target ${target.name}`, () => {
    test('the saved corpus', () => {
      for (const { file, input } of corpusInputs(target)) {
        try {
          target.check(input);
        } catch (err) {
          throw new Error(`corpus/${target.name}/${file}: ${(err as Error).message}`, { cause: err });
        }
      }
    });

    test(`${RUNS} inputs from seed ${SEED}`, () => {
      fc.assert(
        fc.property(target.arbitrary, (input) => {
          target.check(input);
        }),
        { numRuns: RUNS, seed: SEED },
      );
    });
  });
}
