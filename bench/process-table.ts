import { spawn, type ChildProcess } from 'node:child_process';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { ProcessTable } from '../src/processors/filter/process-table';

// `node dist/bench/process-table.js [processes] [refreshes]`: how long the event loop is held up
// while the process table of `process:` selectors refreshes. Starts `processes` idle children
// (a tenth of them holding a listening socket) besides whatever runs on the machine, refreshes the
// table `refreshes` times, and prints one JSON line: processes seen, refresh wall time and the
// CPU time, and the event loop's delay over the run (max, p99, mean; ms; a refresh every 50 ms).

const PROCESSES = Number(process.argv[2] ?? 500);
const REFRESHES = Number(process.argv[3] ?? 10);

function startChild(listen: boolean): ChildProcess {
  // A listener keeps its socket open for the whole run; the others only sleep.
  return listen
    ? spawn('python3', ['-c', 'import socket,time; s=socket.socket(); s.bind(("127.0.0.1",0)); s.listen(); print(1, flush=True); time.sleep(600)'], { stdio: ['ignore', 'pipe', 'ignore'] })
    : spawn('sleep', ['600'], { stdio: 'ignore' });
}

async function main(): Promise<void> {
  const children: ChildProcess[] = [];
  process.on('exit', () => children.forEach((c) => c.kill('SIGKILL')));
  for (let i = 0; i < PROCESSES; i++) children.push(startChild(i % 10 === 0));
  await Promise.all(children.filter((c) => c.stdout).map((c) => new Promise((resolve) => c.stdout!.once('data', resolve))));

  const table = new ProcessTable('/proc', 60_000);
  const walls: number[] = [];
  const cpus: number[] = [];
  let seen = 0;
  // Enabled across the whole run: a loop blocked by a synchronous walk shows as one late sample.
  const delay = monitorEventLoopDelay({ resolution: 1 });
  delay.enable();
  for (let i = 0; i < REFRESHES; i++) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    const started = performance.now();
    const cpu = process.cpuUsage();
    // Awaited whether refresh() returns facts (a synchronous walk) or a promise of them.
    seen = (await table.refresh()).length;
    const used = process.cpuUsage(cpu);
    cpus.push((used.user + used.system) / 1000);
    walls.push(performance.now() - started);
  }
  await new Promise((resolve) => setTimeout(resolve, 50));
  delay.disable();
  const median = (values: number[]) => Math.round([...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]! * 100) / 100;
  const ms = (ns: number) => Math.round(ns / 1e4) / 100;
  process.stdout.write(
    `${JSON.stringify({
      processes: seen,
      refreshes: REFRESHES,
      refresh_wall_ms_median: median(walls),
      refresh_cpu_ms_median: median(cpus),
      loop_delay_ms_max: ms(delay.max),
      loop_delay_ms_p99: ms(delay.percentile(99)),
      loop_delay_ms_mean: ms(delay.mean),
    })}\n`,
  );
  children.forEach((c) => c.kill('SIGKILL'));
}

main().catch((err: unknown) => {
  process.stderr.write(`${String(err)}\n`);
  process.exit(1);
});
