// Typed, path-aware reading of untyped config. Every problem is recorded with its key path
// (`receivers::otlp::protocols::grpc::endpoint: ...`) and reading goes on, so one run of
// `spansieve validate` reports every error at once.

import { parseHostPort } from '../util/net';

export class ConfigIssues {
  readonly errors: string[] = [];

  report(path: string, message: string): void {
    this.errors.push(path ? `${path}: ${message}` : message);
  }
}

export class ConfigValidationError extends Error {
  constructor(readonly errors: readonly string[]) {
    super(`invalid configuration:\n  ${errors.join('\n  ')}`);
  }
}

/** A value at a path in the config tree. */
export class Node {
  constructor(
    readonly value: unknown,
    readonly path: string,
    readonly issues: ConfigIssues,
  ) {}

  get isAbsent(): boolean {
    return this.value === undefined || this.value === null;
  }

  child(key: string): Node {
    const record = isRecord(this.value) ? this.value : {};
    return new Node(record[key], this.path ? `${this.path}::${key}` : key, this.issues);
  }

  report(message: string): void {
    this.issues.report(this.path, message);
  }

  /**
   * Reads a mapping, reporting keys outside `allowed`. Absent or null reads as empty, as in the
   * Collector, where `otlp:` with nothing under it means all defaults.
   */
  object(allowed?: readonly string[]): Record<string, Node> {
    if (this.isAbsent) return {};
    if (!isRecord(this.value)) {
      this.report(`expected a mapping, got ${describe(this.value)}`);
      return {};
    }
    const out: Record<string, Node> = {};
    for (const key of Object.keys(this.value)) {
      if (allowed && !allowed.includes(key)) {
        this.issues.report(
          this.path ? `${this.path}::${key}` : key,
          allowed.length > 0 ? `unknown key (allowed: ${allowed.join(', ')})` : 'unknown key (this component takes no options)',
        );
        continue;
      }
      out[key] = this.child(key);
    }
    return out;
  }

  /** Checks a mapping against its allowed keys and returns an accessor for its fields (absent ones read as defaults). */
  struct(allowed: readonly string[]): (key: string) => Node {
    this.object(allowed);
    return (key) => this.child(key);
  }

  list(): Node[] {
    if (this.isAbsent) return [];
    if (!Array.isArray(this.value)) {
      this.report(`expected a list, got ${describe(this.value)}`);
      return [];
    }
    return this.value.map((v, i) => new Node(v, `${this.path}[${i}]`, this.issues));
  }

  string(fallback: string): string {
    if (this.isAbsent) return fallback;
    if (typeof this.value === 'string') return this.value;
    if (typeof this.value === 'number' || typeof this.value === 'boolean') return String(this.value);
    this.report(`expected a string, got ${describe(this.value)}`);
    return fallback;
  }

  boolean(fallback: boolean): boolean {
    if (this.isAbsent) return fallback;
    if (typeof this.value === 'boolean') return this.value;
    if (this.value === 'true' || this.value === 'false') return this.value === 'true';
    this.report(`expected true or false, got ${describe(this.value)}`);
    return fallback;
  }

  integer(fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
    if (this.isAbsent) return fallback;
    const n = typeof this.value === 'string' && /^-?\d+$/.test(this.value) ? Number(this.value) : this.value;
    if (typeof n !== 'number' || !Number.isInteger(n)) {
      this.report(`expected an integer, got ${describe(this.value)}`);
      return fallback;
    }
    if (n < min || n > max) {
      this.report(`must be between ${min} and ${max}, got ${n}`);
      return fallback;
    }
    return n;
  }

  number(fallback: number, min: number, max = Number.MAX_VALUE): number {
    if (this.isAbsent) return fallback;
    const n = typeof this.value === 'string' && this.value.trim() !== '' ? Number(this.value) : this.value;
    if (typeof n !== 'number' || !Number.isFinite(n)) {
      this.report(`expected a number, got ${describe(this.value)}`);
      return fallback;
    }
    if (n < min || n > max) {
      this.report(`must be between ${min} and ${max}, got ${n}`);
      return fallback;
    }
    return n;
  }

  oneOf<T extends string>(fallback: T, allowed: readonly T[]): T {
    if (this.isAbsent) return fallback;
    if (typeof this.value === 'string' && (allowed as readonly string[]).includes(this.value)) return this.value as T;
    this.report(`must be one of ${allowed.join(', ')}, got ${describe(this.value)}`);
    return fallback;
  }

  /** A Go-style duration ("500ms", "5s", "1m30s") as milliseconds. */
  duration(fallbackMs: number): number {
    if (this.isAbsent) return fallbackMs;
    if (this.value === 0 || this.value === '0') return 0;
    const ms = typeof this.value === 'string' ? parseDuration(this.value) : undefined;
    if (ms === undefined) {
      this.report(`expected a duration such as "500ms", "5s" or "1m", got ${describe(this.value)}`);
      return fallbackMs;
    }
    return ms;
  }

  stringMap(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [key, node] of Object.entries(this.object())) out[key] = node.string('');
    return out;
  }

  /** `host:port` with a port in 0..65535; `[v6]:port` allowed. */
  endpoint(fallback: string): string {
    const value = this.string(fallback);
    if (parseHostPort(value) === undefined) {
      this.report(`expected host:port (e.g. 127.0.0.1:4317), got ${JSON.stringify(value)}`);
      return fallback;
    }
    return value;
  }
}

const DURATION_UNITS: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

export function parseDuration(text: string): number | undefined {
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/gy;
  let total = 0;
  let consumed = 0;
  for (let match = re.exec(text); match !== null; match = re.exec(text)) {
    total += Number(match[1]) * DURATION_UNITS[match[2]!]!;
    consumed = re.lastIndex;
  }
  return consumed === text.length && text.length > 0 ? total : undefined;
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function describe(value: unknown): string {
  if (Array.isArray(value)) return 'a list';
  if (isRecord(value)) return 'a mapping';
  return JSON.stringify(value);
}
