import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';

// Preloaded into spansieve by the benchmark (`node --require dist/bench/elu-probe.js`): writes the
// main thread's cumulative event-loop idle and active milliseconds to a file named by the pid, so
// the harness can tell "the core was not filled" (event loop idle) from "the loop was busy".
// Ten writes a second: negligible next to the load.

export function eluFile(pid: number): string {
  return path.join(os.tmpdir(), `spansieve-bench-elu-${pid}`);
}

/** Cumulative idle and active milliseconds written by the probe in process `pid`, or undefined. */
export function readElu(pid: number): { idle: number; active: number } | undefined {
  try {
    const [idle, active] = fs.readFileSync(eluFile(pid), 'utf8').split(' ').map(Number);
    return idle !== undefined && active !== undefined && Number.isFinite(idle) && Number.isFinite(active) ? { idle, active } : undefined;
  } catch {
    return undefined;
  }
}

// Only as a preload (--require runs before any main module): importing it for readElu starts nothing.
if (require.main === undefined) {
  const file = eluFile(process.pid);
  const scratch = `${file}.tmp`;
  const write = () => {
    const elu = performance.eventLoopUtilization();
    try {
      // Rename, so that the harness never reads a half-written file.
      fs.writeFileSync(scratch, `${elu.idle} ${elu.active}`);
      fs.renameSync(scratch, file);
    } catch {
      // The harness reads what it can; a missing sample only loses the ELU column.
    }
  };
  setInterval(write, 100).unref();
  process.on('exit', () => {
    fs.rmSync(file, { force: true });
    fs.rmSync(scratch, { force: true });
  });
}
