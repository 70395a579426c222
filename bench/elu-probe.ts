import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';

// Preloaded into spansieve by the benchmark (`node --require dist/bench/elu-probe.js`): writes the
// main thread's cumulative event-loop idle and active milliseconds to a file named by the pid, so
// the harness can tell "the core was not filled" (event loop idle) from "the loop was busy".
// Ten writes a second, each ONE pwrite into a file opened once, on tmpfs when there is one: the
// first version created a file and renamed it over the old one every time, and on this machine's
// shared ext4 those metadata operations blocked the event loop for 10-30 ms a second, which the CPU
// profiles of spansieve showed as `rename` (3-8 % of the main thread).

const SHM = '/dev/shm';

export function eluFile(pid: number): string {
  const dir = fs.existsSync(SHM) ? SHM : os.tmpdir();
  return path.join(dir, `spansieve-bench-elu-${pid}`);
}

/** The record is written twice; a read that caught a write half done has two different copies. */
function record(idle: number, active: number): string {
  const one = `${idle.toFixed(3).padStart(16)} ${active.toFixed(3).padStart(16)}`;
  return `${one}|${one}\n`;
}

/** Parses a record; undefined when it is torn, missing or malformed. */
export function parseRecord(text: string): { idle: number; active: number } | undefined {
  const line = text.endsWith('\n') ? text.slice(0, -1) : undefined;
  const bar = line?.indexOf('|') ?? -1;
  if (line === undefined || bar < 0 || line.slice(0, bar) !== line.slice(bar + 1)) return undefined;
  const [idle, active] = line.slice(0, bar).trim().split(/\s+/).map(Number);
  return idle !== undefined && active !== undefined && Number.isFinite(idle) && Number.isFinite(active) ? { idle, active } : undefined;
}

/** Cumulative idle and active milliseconds written by the probe in process `pid`, or undefined. */
export function readElu(pid: number): { idle: number; active: number } | undefined {
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      const parsed = parseRecord(fs.readFileSync(eluFile(pid), 'utf8'));
      if (parsed) return parsed;
    } catch {
      return undefined; // no file: the probe is not running
    }
  }
  return undefined;
}

// Only as a preload (--require runs before any main module): importing it for readElu starts nothing.
if (require.main === undefined) {
  const file = eluFile(process.pid);
  let fd: number | undefined;
  try {
    fd = fs.openSync(file, 'w');
  } catch {
    // The harness reads what it can; without the file only the ELU column is lost.
  }
  const write = () => {
    if (fd === undefined) return;
    const elu = performance.eventLoopUtilization();
    try {
      // Same length every time, at offset 0: the file never shrinks or holds a stale tail.
      fs.writeSync(fd, record(elu.idle, elu.active), 0);
    } catch {
      // A missing sample only loses the ELU column.
    }
  };
  write();
  setInterval(write, 100).unref();
  process.on('exit', () => {
    if (fd !== undefined) fs.closeSync(fd);
    fs.rmSync(file, { force: true });
  });
}
