import { attrValueToString, type Attributes } from '../../pdata/attributes';
import type { Node } from '../../config/reader';
import type { PortRange, ProcessCriteria, ProcessTable } from './process-table';
import { processMatches } from './process-table';
import { INSTANCE_ID, pidOfInstanceId } from '../../pdata/instance-id';
import { compileGlob } from '../../util/glob';
import { compileLinearRegex } from '../../util/regex';

// Selectors choose resources by their attributes. Each is a mapping whose keys must all match:
//   "text"       exact
//   "a*b?"       glob (* any run, ? one character), whole value
//   "/re/flags"  regular expression (unanchored, as written), RE2 semantics (linear time)
//   pid: 4242    host-form service.instance.id "<host>:4242" (split on the last ':')
//   process: {exe_path, cmd_args, open_ports, pid}
//                a live local process, looked up in /proc by the PID of a host-form instance id
//                whose host part is one of this host's names
// A resource without an attribute does not match a condition on it.

type ValueTest = (value: string) => boolean;

interface Condition {
  readonly key: string;
  readonly test: ValueTest;
}

export interface Selector {
  /** The selector as the user wrote it, for listings and the admin API. */
  readonly source: Readonly<Record<string, unknown>>;
  readonly text: string;
  readonly conditions: readonly Condition[];
  /** Set when the selector is a single exact condition: indexed in a hash map instead of scanned. */
  readonly exact?: { key: string; value: string };
  /** True when it has a `process:` condition, which needs the process table refreshed. */
  readonly usesProcesses: boolean;
}

/** What `process:` conditions need: where to look processes up and which hosts are local. */
export interface ProcessContext {
  readonly table: ProcessTable;
  readonly hostNames: ReadonlySet<string>;
}

/** Reads one selector, reporting problems under its path; undefined when it is unusable. */
export function parseSelector(node: Node, processes?: ProcessContext): Selector | undefined {
  const entries = node.object();
  if (node.isAbsent || Object.keys(entries).length === 0) {
    node.report('a selector needs at least one attribute condition, e.g. { service.instance.id: "host:1234" }');
    return undefined;
  }
  const conditions: Condition[] = [];
  let exact: Selector['exact'];
  let ok = true;
  for (const [key, valueNode] of Object.entries(entries)) {
    const condition =
      key === 'pid' ? parsePidCondition(valueNode) : key === 'process' ? parseProcessCondition(valueNode, processes) : parseValueCondition(key, valueNode);
    if (!condition) {
      ok = false;
      continue;
    }
    conditions.push(condition.condition);
    if (condition.exactValue !== undefined && Object.keys(entries).length === 1) exact = { key: condition.condition.key, value: condition.exactValue };
  }
  if (!ok) return undefined;
  const source = node.value as Record<string, unknown>;
  return { source, text: selectorText(source), conditions, usesProcesses: 'process' in entries, ...(exact ? { exact } : {}) };
}

const PROCESS_KEYS = ['exe_path', 'cmd_args', 'open_ports', 'pid'];
const YOUNG_PROCESS_MS = 10_000;
const RECHECK_MS = 10;

function parseProcessCondition(node: Node, processes: ProcessContext | undefined): { condition: Condition; exactValue?: string } | undefined {
  const at = node.struct(PROCESS_KEYS);
  if (node.isAbsent || typeof node.value !== 'object' || Object.keys(node.value as object).length === 0) {
    node.report(`a process selector needs at least one of ${PROCESS_KEYS.join(', ')}`);
    return undefined;
  }
  const criteria: { -readonly [K in keyof ProcessCriteria]: ProcessCriteria[K] } = {};
  const before = node.issues.errors.length;
  if (!at('exe_path').isAbsent) criteria.exePath = compileGlob(at('exe_path').string(''));
  if (!at('cmd_args').isAbsent) criteria.cmdArgs = compileGlob(at('cmd_args').string(''));
  if (!at('pid').isAbsent) criteria.pid = at('pid').integer(0, 1);
  if (!at('open_ports').isAbsent) criteria.openPorts = at('open_ports').list().map(parsePortRange).filter((r): r is PortRange => r !== undefined);
  if (node.issues.errors.length > before) return undefined;
  if (!processes) {
    node.report('process selectors are not available here');
    return undefined;
  }
  const { table, hostNames } = processes;
  return {
    condition: {
      key: INSTANCE_ID,
      test: (instanceId) => {
        const colon = instanceId.lastIndexOf(':');
        if (colon < 0 || !hostNames.has(instanceId.slice(0, colon))) return false;
        const pid = pidOfInstanceId(instanceId);
        if (pid === undefined) return false;
        const facts = table.get(Number(pid));
        if (facts === undefined) return false;
        if (processMatches(criteria, facts)) return true;
        // A process read just after it started may not have exec'd or opened its listener yet:
        // while it is young, look again on a miss instead of waiting for the periodic refresh.
        const young = facts.startedAt === undefined || facts.readAt - facts.startedAt < YOUNG_PROCESS_MS;
        if (!young) return false;
        const fresh = table.get(Number(pid), RECHECK_MS);
        return fresh !== undefined && fresh !== facts && processMatches(criteria, fresh);
      },
    },
  };
}

function parsePortRange(node: Node): PortRange | undefined {
  const raw = node.value;
  const text = typeof raw === 'number' ? String(raw) : typeof raw === 'string' ? raw.trim() : '';
  const match = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(text);
  const from = match ? Number(match[1]) : NaN;
  const to = match ? Number(match[2] ?? match[1]) : NaN;
  if (!match || from < 1 || to > 65535 || from > to) {
    node.report(`expected a port (8000) or a range ("9000-9010") within 1-65535, got ${JSON.stringify(raw)}`);
    return undefined;
  }
  return { from, to };
}

function parsePidCondition(node: Node): { condition: Condition; exactValue?: string } | undefined {
  const raw = node.value;
  const pid = typeof raw === 'number' ? raw : typeof raw === 'string' && /^\d+$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isInteger(pid) || pid <= 0) {
    node.report(`pid must be a positive integer, got ${JSON.stringify(raw)}`);
    return undefined;
  }
  const suffix = String(pid);
  return { condition: { key: INSTANCE_ID, test: (id) => pidOfInstanceId(id) === suffix } };
}

function parseValueCondition(key: string, node: Node): { condition: Condition; exactValue?: string } | undefined {
  const raw = node.value;
  if (typeof raw === 'number' || typeof raw === 'boolean') {
    const want = String(raw);
    return { condition: { key, test: (v) => v === want }, exactValue: want };
  }
  if (typeof raw !== 'string') {
    node.report(`expected a string, number or boolean to match, got ${raw === null ? 'null' : Array.isArray(raw) ? 'a list' : typeof raw}`);
    return undefined;
  }
  const regex = /^\/(.*)\/([a-z]*)$/s.exec(raw);
  if (regex) {
    try {
      // RE2 semantics: the value is sender-controlled, so matching must take linear time.
      const re = compileLinearRegex(regex[1]!, regex[2]);
      return { condition: { key, test: (v) => re.test(v) } };
    } catch (err) {
      node.report(`invalid regular expression ${clip(raw)}: ${clip((err as Error).message)}`);
      return undefined;
    }
  }
  if (/[*?]/.test(raw)) {
    const glob = compileGlob(raw);
    return { condition: { key, test: (v) => glob.test(v) } };
  }
  return { condition: { key, test: (v) => v === raw }, exactValue: raw };
}

const MAX_QUOTED = 200;

/** Keeps error messages short whatever the user wrote. */
function clip(text: string): string {
  return text.length <= MAX_QUOTED ? text : `${text.slice(0, MAX_QUOTED)}... (${text.length} characters)`;
}

function selectorText(source: Record<string, unknown>): string {
  return Object.entries(source)
    .map(([key, value]) => `${key}=${JSON.stringify(value)}`)
    .join(', ');
}

/**
 * An ordered list of selectors compiled for lookup: single exact conditions are found through a
 * hash map (cost independent of their number); the rest are tried in order.
 */
export class SelectorList {
  // Parallel arrays rather than a Map of Maps: iterating a Map allocates, and match() runs for
  // every resource of every request.
  private readonly exactKeys: string[] = [];
  private readonly exactValues: Map<string, number>[] = [];
  private readonly scanned: { index: number; selector: Selector }[] = [];

  constructor(readonly selectors: readonly Selector[]) {
    selectors.forEach((selector, index) => {
      if (selector.exact) {
        let at = this.exactKeys.indexOf(selector.exact.key);
        if (at < 0) {
          at = this.exactKeys.push(selector.exact.key) - 1;
          this.exactValues.push(new Map<string, number>());
        }
        const values = this.exactValues[at]!;
        if (!values.has(selector.exact.value)) values.set(selector.exact.value, index);
      } else {
        this.scanned.push({ index, selector });
      }
    });
  }

  get isEmpty(): boolean {
    return this.selectors.length === 0;
  }

  /** The first selector (in written order) matching these attributes, or undefined. */
  match(attributes: Attributes): Selector | undefined {
    let best = Infinity;
    for (let i = 0; i < this.exactKeys.length; i++) {
      const value = attributes.get(this.exactKeys[i]!);
      if (value === undefined) continue;
      const index = this.exactValues[i]!.get(attrValueToString(value));
      if (index !== undefined && index < best) best = index;
    }
    for (let i = 0; i < this.scanned.length; i++) {
      const { index, selector } = this.scanned[i]!;
      if (index > best) break;
      if (matchesAll(selector, attributes)) {
        best = index;
        break;
      }
    }
    return best === Infinity ? undefined : this.selectors[best];
  }
}

function matchesAll(selector: Selector, attributes: Attributes): boolean {
  for (const condition of selector.conditions) {
    const value = attributes.get(condition.key);
    if (value === undefined || !condition.test(attrValueToString(value))) return false;
  }
  return true;
}
