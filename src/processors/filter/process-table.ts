import * as fs from 'node:fs';
import * as path from 'node:path';
import type { GlobMatcher } from '../../util/glob';

// What /proc says about local processes, for `process:` selectors. spansieve runs beside OBI with
// the host's PID namespace, so a host-form instance id "<host>:<pid>" names a PID it can look at.

export interface ProcessFacts {
  readonly pid: number;
  readonly exePath: string | undefined;
  /** The command line, arguments joined by single spaces. */
  readonly cmdline: string;
  /** TCP ports (v4 and v6) on which the process holds a listening socket. */
  readonly listeningPorts: ReadonlySet<number>;
  /** When these facts were read (ms since the epoch). */
  readonly readAt: number;
  /** When the process started (ms since the epoch), if known. */
  readonly startedAt: number | undefined;
}

export interface PortRange {
  readonly from: number;
  readonly to: number;
}

/** A `process:` selector: every given criterion must hold. */
export interface ProcessCriteria {
  readonly exePath?: GlobMatcher;
  readonly cmdArgs?: GlobMatcher;
  readonly openPorts?: readonly PortRange[];
  readonly pid?: number;
}

export function processMatches(criteria: ProcessCriteria, facts: ProcessFacts): boolean {
  if (criteria.pid !== undefined && criteria.pid !== facts.pid) return false;
  if (criteria.exePath && (facts.exePath === undefined || !criteria.exePath.test(facts.exePath))) return false;
  if (criteria.cmdArgs && !criteria.cmdArgs.test(facts.cmdline)) return false;
  if (criteria.openPorts) {
    let listening = false;
    for (const port of facts.listeningPorts) {
      if (criteria.openPorts.some((range) => port >= range.from && port <= range.to)) {
        listening = true;
        break;
      }
    }
    if (!listening) return false;
  }
  return true;
}

/**
 * Facts about live processes, cached per PID and re-read every refresh. A PID not seen before is
 * read on first use, so a restarted process (new PID) is recognised from its first span.
 *
 * The periodic refresh walks /proc in slices of at most SLICE_MS of work, yielding to the event
 * loop between them, so requests are not held up on a host with many processes.
 */
export class ProcessTable {
  private facts = new Map<number, ProcessFacts | null>();
  /**
   * PIDs get() has read itself. A refresh may catch a process between its start and its listen();
   * a PID's first get() therefore reads it again rather than trusting such a snapshot.
   */
  private asked = new Set<number>();
  /** PIDs get() read while a walk was under way: their facts are newer than the walk's. */
  private readDuringWalk = new Set<number>();
  private walk: Promise<ProcessFacts[]> | undefined;
  /** Bumped when the last user releases the table: a walk under way stops at its next slice. */
  private generation = 0;
  private timer: NodeJS.Timeout | undefined;
  private users = 0;

  constructor(
    readonly procRoot = '/proc',
    private readonly refreshMs = 5000,
  ) {}

  /**
   * Facts for a PID, or undefined when no such process is alive (or it cannot be read). With
   * `maxAgeMs`, cached facts older than that are read again.
   */
  get(pid: number, maxAgeMs = Infinity): ProcessFacts | undefined {
    let facts = this.facts.get(pid);
    if (facts === undefined || !this.asked.has(pid) || (facts !== null && Date.now() - facts.readAt > maxAgeMs)) {
      facts = this.read(pid, new ListenerTables());
      this.facts.set(pid, facts);
      this.asked.add(pid);
      if (this.walk) this.readDuringWalk.add(pid);
    }
    return facts ?? undefined;
  }

  /** Every live process's facts, read afresh (one walk at a time: a second call shares it). */
  refresh(): Promise<ProcessFacts[]> {
    this.walk ??= this.walkProc().finally(() => {
      this.walk = undefined;
    });
    return this.walk;
  }

  /** Starts periodic refreshes while at least one processor uses the table. */
  acquire(): void {
    if (this.users++ === 0) {
      const refresh = () => void this.refresh().catch(() => undefined);
      refresh();
      this.timer = setInterval(refresh, this.refreshMs);
      this.timer.unref();
    }
  }

  release(): void {
    if (this.users > 0 && --this.users === 0) {
      clearInterval(this.timer);
      this.timer = undefined;
      this.generation++;
    }
  }

  private async walkProc(): Promise<ProcessFacts[]> {
    const generation = this.generation;
    this.readDuringWalk.clear();
    let names: string[];
    try {
      names = await fs.promises.readdir(this.procRoot);
    } catch {
      names = [];
    }
    // Each network namespace's tables are read once per walk, by the first process found in it.
    const tables = new ListenerTables();
    const next = new Map<number, ProcessFacts | null>();
    let sliceStart = performance.now();
    for (const name of names) {
      if (!/^\d+$/.test(name)) continue;
      const pid = Number(name);
      next.set(pid, this.read(pid, tables));
      if (performance.now() - sliceStart >= SLICE_MS) {
        await new Promise<void>((resolve) => setImmediate(resolve));
        if (generation !== this.generation) return [];
        sliceStart = performance.now();
      }
    }
    for (const pid of this.readDuringWalk) next.set(pid, this.facts.get(pid) ?? null);
    this.readDuringWalk.clear();
    this.facts = next;
    for (const pid of this.asked) if (!next.has(pid)) this.asked.delete(pid);
    return [...next.values()].filter((f): f is ProcessFacts => f !== null);
  }

  private read(pid: number, tables: ListenerTables): ProcessFacts | null {
    const dir = path.join(this.procRoot, String(pid));
    let cmdline: string;
    try {
      cmdline = fs.readFileSync(path.join(dir, 'cmdline'), 'latin1').replace(/\0+$/, '').split('\0').join(' ');
    } catch {
      return null;
    }
    let exePath: string | undefined;
    try {
      exePath = fs.readlinkSync(path.join(dir, 'exe'));
    } catch {
      exePath = undefined;
    }
    const listeningPorts = new Set<number>();
    const sockets = socketInodes(dir);
    if (sockets.length > 0) {
      const listeners = tables.of(pid, dir);
      for (const inode of sockets) {
        const port = listeners.get(inode);
        if (port !== undefined) listeningPorts.add(port);
      }
    }
    return { pid, exePath, cmdline, listeningPorts, readAt: Date.now(), startedAt: this.startTime(dir) };
  }

  private bootTimeMs: number | undefined;

  /** Start time from /proc/PID/stat (field 22, clock ticks after boot; 100 per second on Linux). */
  private startTime(dir: string): number | undefined {
    try {
      if (this.bootTimeMs === undefined) {
        const btime = /^btime (\d+)$/m.exec(fs.readFileSync(path.join(this.procRoot, 'stat'), 'latin1'));
        if (!btime) return undefined;
        this.bootTimeMs = Number(btime[1]) * 1000;
      }
      const stat = fs.readFileSync(path.join(dir, 'stat'), 'latin1');
      // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      return this.bootTimeMs + Number(fields[19]) * 10;
    } catch {
      return undefined;
    }
  }
}

/** Most time a refresh works before letting the event loop run (ms). */
const SLICE_MS = 5;

/** Inodes of the sockets a process holds, from the targets of /proc/PID/fd/* ("socket:[123]"). */
function socketInodes(dir: string): string[] {
  const inodes: string[] = [];
  let fds: string[];
  try {
    fds = fs.readdirSync(path.join(dir, 'fd'));
  } catch {
    return inodes; // no access to its descriptors: it matches no port selector
  }
  for (const fd of fds) {
    let target: string;
    try {
      target = fs.readlinkSync(path.join(dir, 'fd', fd));
    } catch {
      continue;
    }
    if (target.startsWith('socket:[')) inodes.push(target.slice(8, -1));
  }
  return inodes;
}

/**
 * Listening TCP sockets (inode -> port) per network namespace, read from /proc/PID/net/tcp and
 * tcp6 of a process in it: /proc/net is spansieve's own namespace, which in a container is not the
 * host's. Each namespace is read once per instance (one refresh, or one lookup).
 */
class ListenerTables {
  private readonly byNamespace = new Map<string, Map<string, number>>();

  of(pid: number, dir: string): ReadonlyMap<string, number> {
    let namespace: string;
    try {
      namespace = fs.readlinkSync(path.join(dir, 'ns', 'net')); // "net:[4026531840]"
    } catch {
      namespace = `pid:${pid}`; // unknown namespace: this process's own tables, not shared
    }
    let listeners = this.byNamespace.get(namespace);
    if (!listeners) {
      listeners = readListeners(dir);
      // A process that exited in between has no tables: let the next one of its namespace try.
      if (listeners) this.byNamespace.set(namespace, listeners);
    }
    return listeners ?? EMPTY;
  }
}

const EMPTY: ReadonlyMap<string, number> = new Map();

function readListeners(dir: string): Map<string, number> | undefined {
  let sockets: Map<string, number> | undefined;
  for (const file of ['tcp', 'tcp6']) {
    let text: string;
    try {
      text = fs.readFileSync(path.join(dir, 'net', file), 'latin1');
    } catch {
      continue;
    }
    sockets ??= new Map();
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      // local_address is fields[1] ("0100007F:1F90"), st is fields[3] (0A = LISTEN), inode fields[9].
      if (fields.length < 10 || fields[3] !== '0A') continue;
      const port = parseInt(fields[1]!.slice(fields[1]!.lastIndexOf(':') + 1), 16);
      sockets.set(fields[9]!, port);
    }
  }
  return sockets;
}

/** One table per /proc root, shared by every filter processor of the process. */
const tables = new Map<string, ProcessTable>();

export function sharedProcessTable(procRoot = '/proc', refreshMs = 5000): ProcessTable {
  const key = `${procRoot}|${refreshMs}`;
  let table = tables.get(key);
  if (!table) {
    table = new ProcessTable(procRoot, refreshMs);
    tables.set(key, table);
  }
  return table;
}
