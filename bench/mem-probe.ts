import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as v8 from 'node:v8';

// Preloaded into spansieve by the soak (`node --require dist/bench/mem-probe.js`): writes
// process.memoryUsage() (heap used/total, external, array buffers) and the young generation's size
// to a file named by the pid once a second, so that RSS over time can be split into V8 heap and
// off-heap memory without touching src/.

export interface MemSample {
  readonly rss: number;
  readonly heapTotal: number;
  readonly heapUsed: number;
  readonly external: number;
  readonly arrayBuffers: number;
  /** Committed size of V8's new space (both semi-spaces), bytes. */
  readonly newSpace: number;
  /** Bytes of V8 heap committed outside the new space (old, code, large-object spaces...). */
  readonly oldSpaces: number;
}

export function memFile(pid: number): string {
  return path.join(os.tmpdir(), `spansieve-bench-mem-${pid}`);
}

/** The last sample written by the probe in process `pid`, or undefined. */
export function readMem(pid: number): MemSample | undefined {
  try {
    return JSON.parse(fs.readFileSync(memFile(pid), 'utf8')) as MemSample;
  } catch {
    return undefined;
  }
}

if (require.main === undefined) {
  const file = memFile(process.pid);
  const scratch = `${file}.tmp`;
  const write = () => {
    const usage = process.memoryUsage();
    let newSpace = 0;
    let other = 0;
    for (const space of v8.getHeapSpaceStatistics()) {
      if (space.space_name === 'new_space') newSpace += space.space_size;
      else other += space.space_size;
    }
    const sample: MemSample = { ...usage, newSpace, oldSpaces: other };
    try {
      // Rename, so that the harness never reads a half-written file.
      fs.writeFileSync(scratch, JSON.stringify(sample));
      fs.renameSync(scratch, file);
    } catch {
      // a missing sample only loses the heap columns
    }
  };
  setInterval(write, 1000).unref();
  process.on('exit', () => {
    fs.rmSync(file, { force: true });
    fs.rmSync(scratch, { force: true });
  });
}
