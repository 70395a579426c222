import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';

// Child processes (all killed on exit, error or signal), CPU pinning, /proc readings, ports.

const children = new Set<ChildProcess>();

/** Starts `command` pinned to `cpus` (one CPU or a list) with taskset (which execs it: the pid is the command's). */
export function spawnPinned(cpus: number | readonly number[], command: string, args: readonly string[], options: SpawnOptions = {}): ChildProcess {
  const child = spawn('taskset', ['-c', cpuList(typeof cpus === 'number' ? [cpus] : cpus), command, ...args], { ...options });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/**
 * A CPU set as the kernel writes it in Cpus_allowed_list and taskset reads it: ascending, runs of
 * consecutive CPUs as ranges ("0", "0-1", "0,2-3").
 */
export function cpuList(cpus: readonly number[]): string {
  const sorted = [...new Set(cpus)].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++;
    parts.push(j === i ? String(sorted[i]) : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}

/** Moves a running process and every one of its threads to `cpus` (taskset -a -p). */
export function repin(pid: number, cpus: readonly number[]): void {
  execFileSync('taskset', ['-a', '-p', '-c', cpuList(cpus), String(pid)], { stdio: 'pipe' });
}

export function killAll(signal: NodeJS.Signals = 'SIGKILL'): void {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      try {
        process.kill(child.pid, signal);
      } catch {
        // already gone
      }
    }
  }
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the process has exited. */
export async function stopChild(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

let cleanupInstalled = false;

/** Kills every child on exit, SIGINT, SIGTERM and uncaught errors; runs `onExit` once first. */
export function installCleanup(onExit: () => void): void {
  if (cleanupInstalled) return;
  cleanupInstalled = true;
  let done = false;
  const cleanup = () => {
    if (done) return;
    done = true;
    try {
      onExit();
    } finally {
      killAll('SIGKILL');
    }
  };
  process.on('exit', cleanup);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      process.stderr.write(`\nbench: ${signal}: stopping every child process\n`);
      cleanup();
      process.exit(130);
    });
  }
  process.on('uncaughtException', (err) => {
    process.stderr.write(`bench: ${err.stack ?? err.message}\n`);
    cleanup();
    process.exit(1);
  });
}

export function taskset(): string {
  try {
    execFileSync('taskset', ['--version'], { stdio: 'pipe' });
    return 'taskset';
  } catch {
    throw new Error('taskset (util-linux) is required to pin processes to cores: apt-get install util-linux');
  }
}

let clockTicks: number | undefined;

export function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** utime + stime of the whole process (every thread, live or exited), in seconds. */
export function cpuSeconds(pid: number): number {
  const { user, system } = cpuSplitSeconds(pid);
  return user + system;
}

/** utime and stime of a process: in user space and in the kernel on its behalf (syscalls, loopback TCP). */
export function cpuSplitSeconds(pid: number): { user: number; system: number } {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // After the command name: field 3 (state) is index 0, so utime (14) is 11 and stime (15) is 12.
  return { user: Number(fields[11]) / ticksPerSecond(), system: Number(fields[12]) / ticksPerSecond() };
}

/** utime + stime of one thread of a process, in seconds; NaN once it is gone. */
export function taskCpuSeconds(pid: number, tid: number): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / ticksPerSecond();
  } catch {
    return NaN;
  }
}

/** The process and its descendants (e.g. cluster workers), from /proc's parent pids. */
export function processTree(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(entry));
      children.set(ppid, list);
    } catch {
      // exited meanwhile
    }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    out.push(p);
    for (const child of children.get(p) ?? []) walk(child);
  };
  walk(pid);
  return out;
}

/** utime and stime of each process (a multi-process server and its workers); one that exited counts 0. */
export function processCpuSplitSeconds(pids: readonly number[]): { user: number; system: number }[] {
  return pids.map((pid) => {
    try {
      return cpuSplitSeconds(pid);
    } catch {
      return { user: 0, system: 0 }; // exited meanwhile
    }
  });
}

/** CPU seconds per thread name (comm) of a process's live threads, e.g. main thread vs GC helpers. */
export function threadCpuSeconds(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  let tids: string[];
  try {
    tids = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const seconds = (Number(fields[11]) + Number(fields[12])) / ticksPerSecond();
      out.set(tid === String(pid) ? 'main' : name, (out.get(tid === String(pid) ? 'main' : name) ?? 0) + seconds);
    } catch {
      // the thread ended meanwhile
    }
  }
  return out;
}

/** Busy time of one CPU (everything but idle and iowait), in seconds, from /proc/stat. */
export function cpuBusySeconds(cpu: number): number {
  const line = fs
    .readFileSync('/proc/stat', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`cpu${cpu} `));
  if (!line) return NaN;
  const [user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number);
  return ((user ?? 0) + (nice ?? 0) + (system ?? 0) + (irq ?? 0) + (softirq ?? 0) + (steal ?? 0)) / ticksPerSecond();
}

/** Busy time of a set of CPUs, summed. */
export function cpusBusySeconds(cpus: readonly number[]): number {
  return cpus.reduce((sum, cpu) => sum + cpuBusySeconds(cpu), 0);
}

/** Peak resident set size (VmHWM) in MiB. */
export function peakRssMb(pid: number): number {
  return statusKb(pid, 'VmHWM') / 1024;
}

/** Resets VmHWM to the current RSS (Linux clear_refs 5); false when the kernel or permissions refuse. */
export function resetPeakRss(pid: number): boolean {
  try {
    fs.writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/** Anonymous resident memory (RssAnon: heaps, not the mapped binary) in MiB. */
export function rssAnonMb(pid: number): number {
  return statusKb(pid, 'RssAnon') / 1024;
}

/** Resident size of the process's brk heap ([heap] in smaps: glibc malloc's main arena) in MiB. */
export function brkHeapMb(pid: number): number {
  try {
    const smaps = fs.readFileSync(`/proc/${pid}/smaps`, 'utf8');
    const at = smaps.indexOf(' [heap]\n');
    if (at < 0) return 0;
    const match = /^Rss:\s+(\d+) kB/m.exec(smaps.slice(at));
    return match ? Number(match[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

export function rssMb(pid: number): number {
  return statusKb(pid, 'VmRSS') / 1024;
}

function statusKb(pid: number, field: string): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
  return match ? Number(match[1]) : NaN;
}

export function threadCount(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/^Threads:\s+(\d+)/m.exec(status)?.[1] ?? NaN);
}

/** The CPUs a process may run on (from its affinity mask), e.g. "0". */
export function allowedCpus(pid: number): string {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return /^Cpus_allowed_list:\s+(\S+)/m.exec(status)?.[1] ?? '?';
}

export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export async function freePorts(n: number): Promise<number[]> {
  const ports: number[] = [];
  while (ports.length < n) {
    const port = await freePort();
    if (!ports.includes(port)) ports.push(port);
  }
  return ports;
}

/** Resolves once a TCP connection to 127.0.0.1:port succeeds. */
export async function waitForPort(port: number, timeoutMs: number, alive: () => void): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    alive();
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

export function loadAverage(): number[] {
  return os.loadavg().map((n) => Math.round(n * 100) / 100);
}
