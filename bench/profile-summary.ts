import * as fs from 'node:fs';

// Summarises a V8 .cpuprofile (from `--profile`, under bench/results/profiles/): self time by
// function and by category, as fractions of the sampled time, idle excluded from the busy share.
// `--last S` keeps only the samples of the profile's last S seconds (the measured window, without
// start-up: module loading and config parsing otherwise take a large share of a short run).
//   node dist/bench/profile-summary.js FILE.cpuprofile [--last S] [--top 25] [--json]

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  parent?: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

/** First match wins: ordered from the most specific. */
const CATEGORIES: [string, (f: CallFrame) => boolean][] = [
  ['idle', (f) => f.functionName === '(idle)'],
  ['gc', (f) => f.functionName === '(garbage collector)'],
  ['program (native, unattributed)', (f) => f.functionName === '(program)'],
  ['parse: byte checks (schema.ts)', (f) => f.url.endsWith('/pdata/schema.js')],
  ['parse: attributes / utf8', (f) => f.url.endsWith('/pdata/attributes.js')],
  ['parse: scanner / wire', (f) => /\/pdata\/(scan|wire)\.js$/.test(f.url)],
  ['pdata: other', (f) => f.url.includes('/src/pdata/')],
  ['filter / keep list', (f) => f.url.includes('/src/processors/')],
  ['exporter (otlp, helper, queue)', (f) => f.url.includes('/src/exporters/')],
  ['receiver (otlp)', (f) => f.url.includes('/src/receivers/')],
  ['spansieve: other', (f) => f.url.includes('/dist/src/')],
  ['node:http2 (js)', (f) => f.url.includes('internal/http2/') || f.url === 'node:http2'],
  ['streams', (f) => f.url.includes('internal/streams/')],
  ['timers / ticks / promises', (f) => /internal\/(timers|process\/task_queues|process\/promises)/.test(f.url) || f.url === 'node:timers'],
  ['async hooks / resources', (f) => /internal\/async_hooks|async_hooks/.test(f.url)],
  ['node: other js', (f) => f.url.startsWith('node:')],
  ['native (no url)', (f) => f.url === ''],
];

function categoryOf(frame: CallFrame): string {
  for (const [name, match] of CATEGORIES) if (match(frame)) return name;
  return 'other';
}

export interface ProfileSummary {
  file: string;
  sampledMs: number;
  busyMs: number;
  categories: { name: string; ms: number; busyShare: number }[];
  functions: { name: string; ms: number; busyShare: number }[];
}

export function summarise(file: string, top: number, lastSeconds = Infinity): ProfileSummary {
  const profile = JSON.parse(fs.readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map<number, ProfileNode>();
  for (const node of profile.nodes) byId.set(node.id, node);
  for (const node of profile.nodes) for (const child of node.children ?? []) byId.get(child)!.parent = node.id;
  // The benchmark's own preload (its file writes): kept apart from spansieve's work.
  const underProbe = (id: number): boolean => {
    for (let n = byId.get(id); n !== undefined; n = n.parent === undefined ? undefined : byId.get(n.parent)) {
      if (n.callFrame.url.endsWith('bench/elu-probe.js')) return true;
    }
    return false;
  };
  const selfUs = new Map<number, number>();
  // timeDeltas[i] is the time since the previous sample; it belongs to sample i.
  const from = profile.endTime - lastSeconds * 1e6;
  let at = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    const delta = Math.max(0, profile.timeDeltas[i] ?? 0);
    at += delta;
    if (at < from) continue;
    const id = profile.samples[i]!;
    selfUs.set(id, (selfUs.get(id) ?? 0) + delta);
  }
  const categories = new Map<string, number>();
  const functions = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (const [id, us] of selfUs) {
    const frame = byId.get(id)!.callFrame;
    const category = underProbe(id) ? 'bench ELU probe' : categoryOf(frame);
    total += us;
    if (category === 'idle') idle += us;
    categories.set(category, (categories.get(category) ?? 0) + us);
    const where = frame.url ? `${frame.url.replace(/^.*\/dist\//, '').replace(/^node:internal\//, '')}:${frame.lineNumber + 1}` : '';
    const key = `${frame.functionName || '(anonymous)'} ${where}`.trim();
    functions.set(key, (functions.get(key) ?? 0) + us);
  }
  const busy = total - idle;
  const rows = (m: Map<string, number>) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .map(([name, us]) => ({ name, ms: Math.round(us / 1000), busyShare: name === 'idle' ? 0 : Number((us / busy).toFixed(4)) }));
  return {
    file,
    sampledMs: Math.round(total / 1000),
    busyMs: Math.round(busy / 1000),
    categories: rows(categories),
    functions: rows(functions)
      .filter((r) => r.name !== '(idle)')
      .slice(0, top),
  };
}

if (require.main === module) {
  const args = process.argv.slice(2);
  const topAt = args.indexOf('--top');
  const top = topAt >= 0 ? Number(args[topAt + 1]) : 25;
  const lastAt = args.indexOf('--last');
  const last = lastAt >= 0 ? Number(args[lastAt + 1]) : Infinity;
  const json = args.includes('--json');
  const files = args.filter((a) => a.endsWith('.cpuprofile'));
  for (const file of files) {
    const s = summarise(file, top, last);
    if (json) {
      console.log(JSON.stringify(s));
      continue;
    }
    console.log(`${s.file}: sampled ${s.sampledMs} ms, busy ${s.busyMs} ms (${((100 * s.busyMs) / Math.max(1, s.sampledMs)).toFixed(1)} %)`);
    for (const c of s.categories) console.log(`  ${(100 * c.busyShare).toFixed(1).padStart(5)} %  ${String(c.ms).padStart(7)} ms  ${c.name}`);
    console.log('  top functions (self):');
    for (const f of s.functions) console.log(`  ${(100 * f.busyShare).toFixed(1).padStart(5)} %  ${String(f.ms).padStart(7)} ms  ${f.name}`);
  }
}
