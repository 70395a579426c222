// Node flags spansieve runs with: `npm start`, the `spansieve` bin (its shebang), the Dockerfile and
// the benchmark all pass these (a test keeps them in step).
//
// --max-semi-space-size=2 (MiB): spansieve's old generation is small (about 10 MiB live), and V8
// lets the young generation grow to 16 MiB semi-spaces; when the old generation's headroom is no
// larger than the young generation, V8 starts a full mark-compact every few hundred milliseconds
// instead of scavenging. Capping the young generation restores cheap scavenges and cuts peak RSS
// (docs/performance.md).
//
// --initial-heap-size=32 (MiB): with about 10 MiB live, V8 kept the old generation's limit within a
// few MiB of it and ran a mark-compact (5-9 ms pauses) every 0.7-0.9 s under steady load; with this
// floor under the limit they come every 2-3 s, and the CPU per span fell by about a tenth, peak RSS
// unchanged within noise (docs/performance.md, "Mark-compact cadence").
export const SPANSIEVE_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=2', '--initial-heap-size=32'];

/** Set in the environment of the process the CLI re-executes with V8's heap limit, so it does it once. */
export const HEAP_LIMIT_ENV = 'SPANSIEVE_HEAP_LIMIT_SET';

export type HeapLimitAction =
  | { kind: 'none'; reason: string }
  | { kind: 'execve'; args: string[]; env: NodeJS.ProcessEnv }
  | { kind: 'warn'; flag: string };

/**
 * What the CLI does so that V8's old space is limited to `limitMib` (from memory_limiter). The
 * limit is fixed when the isolate is created, so it needs a new process image: `process.execve`
 * (Node >= 22.15 and 23.11) replaces this one with the same pid and nothing left resident. Without
 * it the CLI only warns: a child process would keep the parent resident (about 40-50 MiB of RSS,
 * a quarter of a 200 MiB limit) to forward signals, against the very limit it is meant to serve.
 */
export function heapLimitAction(
  limitMib: number | undefined,
  proc: { execArgv: readonly string[]; argv: readonly string[]; env: NodeJS.ProcessEnv; execPath: string; canExecve: boolean },
): HeapLimitAction {
  if (limitMib === undefined) return { kind: 'none', reason: 'no memory_limiter' };
  const flag = `--max-old-space-size=${limitMib}`;
  const given = [...proc.execArgv, ...(proc.env.NODE_OPTIONS ?? '').split(/\s+/)].some((arg) => /^--max[-_]old[-_]space[-_]size\b/.test(arg));
  if (given) return { kind: 'none', reason: 'set on the command line or in NODE_OPTIONS' };
  if (proc.env[HEAP_LIMIT_ENV] === '1') return { kind: 'none', reason: 'already re-executed' };
  if (!proc.canExecve) return { kind: 'warn', flag };
  return { kind: 'execve', args: [proc.execPath, ...proc.execArgv, flag, ...proc.argv.slice(1)], env: { ...proc.env, [HEAP_LIMIT_ENV]: '1' } };
}
