import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';

// What the memory_limiter measures and what it measures against: the process's live memory, and the
// memory the container may use (cgroup v2, then v1, then the machine's total).

/** Bytes the limiter compares with its limits. */
export type MemoryReader = () => number;

/**
 * The V8 heap in use plus the backing stores of every ArrayBuffer (every Buffer: received request
 * bodies, socket reads, queued export requests). Like the Go heap's Alloc the Collector reads, it
 * includes garbage not yet collected and falls once that is collected, which RSS does not reliably
 * do (freed malloc memory is often kept by the allocator). Not `external`: on Node 20 it did not
 * fall when Buffers were freed.
 */
export const liveMemory: MemoryReader = () => {
  const usage = process.memoryUsage();
  return usage.heapUsed + usage.arrayBuffers;
};

/** cgroup v1's "no limit": the largest page-aligned signed 64-bit value. */
const V1_UNLIMITED = 9223372036854771712;

/**
 * The memory limit of the cgroup the process runs in, in bytes, or undefined when none is set or
 * none can be read: cgroup v2 `memory.max` under `root`, then v1 `memory/memory.limit_in_bytes`.
 * `root` is `/sys/fs/cgroup` outside tests; in a container it is the container's own cgroup.
 */
export function cgroupMemoryLimit(root = '/sys/fs/cgroup'): number | undefined {
  const v2 = readTrimmed(path.join(root, 'memory.max'));
  if (v2 !== undefined) return v2 === 'max' ? undefined : parseBytes(v2);
  const v1 = readTrimmed(path.join(root, 'memory', 'memory.limit_in_bytes'));
  if (v1 === undefined) return undefined;
  const bytes = parseBytes(v1);
  return bytes === undefined || bytes >= V1_UNLIMITED ? undefined : bytes;
}

/** What `limit_percentage` is a percentage of: the cgroup limit when set and below the machine's memory, else the machine's memory. */
export function totalMemory(root = '/sys/fs/cgroup', machine = os.totalmem()): { bytes: number; source: 'cgroup' | 'machine' } {
  const limit = cgroupMemoryLimit(root);
  return limit !== undefined && limit < machine ? { bytes: limit, source: 'cgroup' } : { bytes: machine, source: 'machine' };
}

function readTrimmed(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return undefined;
  }
}

function parseBytes(text: string): number | undefined {
  if (!/^\d+$/.test(text)) return undefined;
  const n = Number(text);
  return n > 0 ? n : undefined;
}

let exposedGc: (() => void) | undefined;

/**
 * A full garbage collection, without starting node with --expose-gc (which would put `gc` on every
 * global object): the flag is set at run time and `gc` taken from a fresh context, where V8 installs
 * it; the main context's globals stay as they were.
 */
export function forceGc(): void {
  if (!exposedGc) {
    v8.setFlagsFromString('--expose-gc');
    exposedGc = vm.runInNewContext('gc') as () => void;
  }
  exposedGc();
}
