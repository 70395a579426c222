import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import fc from 'fast-check';
import { corpusInputs } from './corpus';
import { TARGETS, type FuzzTarget } from './targets';

// The fuzz targets in the regular test run: every input ever saved to the corpus (inputs that
// once failed), then a fixed-seed run of each target. Longer runs: `npm run fuzz`.

const SEED = 20261202;
const RUNS = 2_000;

for (const target of TARGETS as FuzzTarget<never>[]) {
  describe(`fuzz target ${target.name}`, () => {
    before(async () => {
      await target.prepare?.();
    });
    test('the saved corpus', async () => {
      for (const { file, input } of corpusInputs(target)) {
        try {
          await target.check(input);
        } catch (err) {
          throw new Error(`corpus/${target.name}/${file}: ${(err as Error).message}`, { cause: err });
        }
      }
    });

    test(`${RUNS} inputs from seed ${SEED}`, async () => {
      await fc.assert(
        fc.asyncProperty(target.arbitrary, async (input) => {
          await target.check(input);
        }),
        { numRuns: RUNS, seed: SEED },
      );
    });
  });
}

test('invalid gzip bodies do not leak memory (zlib *Sync kept ~16 KB of native memory per failure)', () => {
  // In a fresh process, so that nothing else the test runner's process allocates or frees counts.
  // The *Sync forms grow external memory 468 MiB and RSS 270 MiB here.
  const child = spawnSync(process.execPath, [path.join(__dirname, 'gzip-refusals.js'), '5000', '6'], { encoding: 'utf8' });
  assert.equal(child.status, 0, child.stderr);
  const { externalMb, rssMb } = JSON.parse(child.stdout) as { externalMb: number; rssMb: number };
  assert.ok(externalMb < 32, `external memory grew ${externalMb.toFixed(1)} MiB over 30,000 invalid bodies`);
  assert.ok(rssMb < 64, `RSS grew ${rssMb.toFixed(1)} MiB over 30,000 invalid bodies`);
});
