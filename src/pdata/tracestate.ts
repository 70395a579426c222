import { ALWAYS_SAMPLE, parseRValue, parseTValue, probability, type U56 } from './sampling-threshold';

// The W3C `tracestate` with its OpenTelemetry member (`ot=rv:...;th:...`), parsed and written as
// the Collector's pkg/sampling (v0.160.0) does, including what it keeps of a value it rejects:
// the sampler writes back what was parsed, so the partial state after an error matters too.

/** The `ot` member: r-value, t-value, and other `key:value` pairs in arrival order. */
export class OTelTraceState {
  rvalue = '';
  randomness: U56 = { hi: 0, lo: 0 };
  tvalue = '';
  threshold: U56 = ALWAYS_SAMPLE;
  readonly extras: string[] = [];

  hasAnyValue(): boolean {
    return this.rvalue !== '' || this.tvalue !== '' || this.extras.length > 0;
  }

  serialize(): string {
    const parts: string[] = [];
    if (this.rvalue !== '') parts.push(`rv:${this.rvalue}`);
    if (this.tvalue !== '') parts.push(`th:${this.tvalue}`);
    for (const kv of this.extras) parts.push(kv);
    return parts.join(';');
  }
}

export class W3CTraceState {
  ot = new OTelTraceState();
  /** Other vendors' members as `key=value`, in arrival order (whitespace around them dropped). */
  readonly extras: string[] = [];

  serialize(): string {
    const parts: string[] = [];
    if (this.ot.hasAnyValue()) parts.push(`ot=${this.ot.serialize()}`);
    for (const kv of this.extras) parts.push(kv);
    return parts.join(',');
  }
}

export interface ParsedTraceState {
  readonly state: W3CTraceState;
  /** Why the Collector rejects this tracestate; undefined when it accepts it. */
  readonly error: string | undefined;
}

const MAX_MEMBERS = 32;
const MAX_W3C_LENGTH = 1024;
const MAX_KEY_LENGTH = 256;
const MAX_TENANT_LENGTH = 241;
const MAX_SYSTEM_LENGTH = 14;
const MAX_OTEL_LENGTH = 256;

const isLcAlpha = (c: number): boolean => c >= 97 && c <= 122;
const isDigit = (c: number): boolean => c >= 48 && c <= 57;
const isLcAlphaNum = (c: number): boolean => isLcAlpha(c) || isDigit(c);
const isKeyChar = (c: number): boolean => isLcAlphaNum(c) || c === 95 || c === 45 || c === 42 || c === 47; // _ - * /
const isNonBlankValueChar = (c: number): boolean => (c >= 0x21 && c <= 0x2b) || (c >= 0x2d && c <= 0x3c) || (c >= 0x3e && c <= 0x7e);

function keyCharsFrom(s: string, from: number): boolean {
  for (let i = from; i < s.length; i++) if (!isKeyChar(s.charCodeAt(i))) return false;
  return true;
}

/** Strips spaces and tabs at both ends (the W3C's optional whitespace). */
function trimOws(s: string): string {
  let start = 0;
  let end = s.length;
  while (start < end && (s.charCodeAt(start) === 32 || s.charCodeAt(start) === 9)) start++;
  while (end > start && (s.charCodeAt(end - 1) === 32 || s.charCodeAt(end - 1) === 9)) end--;
  return start === 0 && end === s.length ? s : s.slice(start, end);
}

function isValidW3CKey(key: string): boolean {
  if (key === '') return false;
  const at = key.indexOf('@');
  if (at >= 0) {
    const tenant = key.slice(0, at);
    const system = key.slice(at + 1);
    if (tenant === '' || system === '') return false;
    if (!isLcAlphaNum(tenant.charCodeAt(0)) || !isLcAlpha(system.charCodeAt(0))) return false;
    return keyCharsFrom(tenant, 1) && keyCharsFrom(system, 1);
  }
  return isLcAlpha(key.charCodeAt(0)) && keyCharsFrom(key, 1);
}

function isValidW3CValue(value: string): boolean {
  if (value === '' || value.length > 256) return false;
  if (!isNonBlankValueChar(value.charCodeAt(value.length - 1))) return false;
  for (let i = 0; i < value.length - 1; i++) {
    const c = value.charCodeAt(i);
    if (c !== 0x20 && !isNonBlankValueChar(c)) return false;
  }
  return true;
}

function isValidW3C(input: string): boolean {
  for (const raw of input.split(',')) {
    const member = trimOws(raw);
    if (member === '') continue;
    const eq = member.indexOf('=');
    if (eq < 1) return false;
    if (!isValidW3CKey(member.slice(0, eq)) || !isValidW3CValue(member.slice(eq + 1))) return false;
  }
  return true;
}

function isValidOTelKey(key: string): boolean {
  if (key === '' || !isLcAlpha(key.charCodeAt(0))) return false;
  for (let i = 1; i < key.length; i++) if (!isLcAlphaNum(key.charCodeAt(i))) return false;
  return true;
}

function isValidOTelValue(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    // A-Z a-z 0-9 . _ -
    if (!(isLcAlphaNum(c) || (c >= 65 && c <= 90) || c === 46 || c === 95 || c === 45)) return false;
  }
  return true;
}

function isValidOTel(input: string): boolean {
  if (input === '' || input.endsWith(';')) return false;
  for (const member of input.split(';')) {
    if (member === '') return false;
    const colon = member.indexOf(':');
    if (colon < 1) return false;
    if (!isValidOTelKey(member.slice(0, colon)) || !isValidOTelValue(member.slice(colon + 1))) return false;
  }
  return true;
}

/** The `ot` member's value; on an error, what the Collector had parsed by then. */
export function parseOTelTraceState(input: string): { state: OTelTraceState; error: string | undefined } {
  const state = new OTelTraceState();
  if (input.length > MAX_OTEL_LENGTH) return { state, error: 'invalid tracestate size' };
  if (!isValidOTel(input)) return { state, error: 'invalid syntax' };
  let error: string | undefined;
  for (const member of input.split(';')) {
    const colon = member.indexOf(':');
    const key = member.slice(0, colon);
    const value = member.slice(colon + 1);
    if (key === 'rv') {
      const rnd = parseRValue(value);
      state.rvalue = rnd ? value : '';
      state.randomness = rnd ?? { hi: 0, lo: 0 };
      if (!rnd) error ??= 'r-value must have 14 hex digits';
    } else if (key === 'th') {
      const th = parseTValue(value);
      state.tvalue = th ? value : '';
      state.threshold = th ?? ALWAYS_SAMPLE;
      if (!th) error ??= 'invalid t-value';
    } else {
      state.extras.push(member);
    }
  }
  return { state, error };
}

/**
 * A span's tracestate as the Collector's NewW3CTraceState reads it. Its quirks are kept: a
 * 32nd list member (empty ones counted) is an error, and members up to the error stay parsed.
 */
export function parseTraceState(input: string): ParsedTraceState {
  const state = new W3CTraceState();
  if (input === '') return { state, error: undefined };
  if (input.length > MAX_W3C_LENGTH) return { state, error: 'invalid tracestate size' };
  if (!isValidW3C(input)) return { state, error: 'invalid syntax' };
  let error: string | undefined;
  let rest = input;
  let items = 0;
  while (rest !== '') {
    items++;
    if (items >= MAX_MEMBERS) return { state, error: 'invalid tracestate size' };
    const sep = rest.indexOf(',');
    let member: string;
    if (sep < 0) {
      member = rest;
      rest = '';
    } else {
      member = rest.slice(0, sep);
      rest = rest.slice(sep + 1);
    }
    member = trimOws(member);
    if (member === '') continue;
    const eq = member.indexOf('=');
    if (eq < 0) continue;
    const key = member.slice(0, eq);
    const value = member.slice(eq + 1);
    if (key.length > MAX_KEY_LENGTH) {
      error ??= 'invalid tracestate size';
      continue;
    }
    const at = key.indexOf('@');
    if (at >= 0 && (at > MAX_TENANT_LENGTH || key.length - at - 1 > MAX_SYSTEM_LENGTH)) {
      error ??= 'invalid tracestate size';
      continue;
    }
    if (key === 'ot') {
      const ot = parseOTelTraceState(value);
      state.ot = ot.state;
      if (ot.error) error ??= ot.error;
    } else {
      state.extras.push(`${key}=${value}`);
    }
  }
  return { state, error };
}

/**
 * The adjusted count a span's tracestate gives (OpenTelemetry's `1 / probability` of its `ot=th:`
 * threshold), as the Collector's pkg/sampling reads it; 0 when there is no threshold or the
 * Collector rejects the tracestate (no sampling information).
 */
export function adjustedCount(traceState: string): number {
  if (traceState === '') return 0;
  const parsed = parseTraceState(traceState);
  if (parsed.error !== undefined || parsed.state.ot.tvalue === '') return 0;
  return 1 / probability(parsed.state.ot.threshold);
}
