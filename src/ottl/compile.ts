// Compiles parsed OTTL conditions against a context schema the caller supplies (which paths exist and
// how to read them, which enum symbols, which extra converters), following pkg/ottl's parser:
// literal folding, typed argument binding (functions.go), path and key rules (ctxutil), math (math.go).

import { convertFor, type ParamKind } from './getters';
import { parseCondition, walkCalls, type ArgNode, type BoolNode, type CallNode, type KeyNode, type PathNode, type ValueNode } from './parser';
import { STANDARD_CONVERTERS, COLLECTOR_CONVERTERS } from './functions';
import {
  OttlDuration, OttlRuntimeError, OttlTime, OttlTypeError, compareValues, goTypeName, hasRawStringEquals, wrapInt64,
  type CompareOp, type OttlValue,
} from './values';

export const OTTL_DOCS = 'docs/ottl.md';

/** One readable field of a context. */
export interface OttlField<C> {
  /** Reads the value; absent for a field that only groups sub-fields (span `status`). */
  readonly get?: (ctx: C) => OttlValue;
  /** `["k"]` / `[0]` index into the value (maps and lists, with the Collector's path rules). */
  readonly indexable?: boolean;
  /** Sub-fields after a `.` (`status.code`, `trace_id.string`). */
  readonly fields?: Readonly<Record<string, OttlField<C>>>;
  /**
   * For an indexable map: whether its value at a key is exactly a string, both given as UTF-8, read
   * on the encoded item without building the map; undefined when it cannot tell (see RawStringEquals).
   */
  readonly rawStringEquals?: (ctx: C, key: Uint8Array, utf8: Uint8Array) => boolean | undefined;
}

export type OttlFieldTable<C> = Readonly<Record<string, OttlField<C>>>;

/** A converter parameter: its name (snake_case, for named arguments), kind, list-ness and optionality. */
export interface OttlParam {
  readonly name: string;
  readonly kind: ParamKind;
  readonly list?: boolean;
  readonly optional?: boolean;
}

/** A bound argument: a getter of the converted value, with the value itself when it is a literal. */
export interface BoundArg<C> {
  readonly get: (ctx: C) => unknown;
  readonly literal: boolean;
}

export type OttlArgs<C> = readonly (BoundArg<C> | readonly BoundArg<C>[] | undefined)[];

export interface OttlFunction<C> {
  readonly params: readonly OttlParam[];
  /** Builds the call; an Error thrown here is a compile error. */
  create(args: OttlArgs<C>): (ctx: C) => OttlValue;
}

/**
 * What a caller supplies for one OTTL context (span, resource, datapoint, ...): the fields per context
 * name it can read (its own name plus the higher contexts, e.g. span: span, resource, scope,
 * instrumentation_scope), its enum symbols, and converters only it offers (IsRootSpan).
 */
export interface OttlContext<C> {
  readonly name: string;
  readonly docRef?: string;
  readonly fields: Readonly<Record<string, OttlFieldTable<C>>>;
  readonly enums?: Readonly<Record<string, bigint>>;
  readonly functions?: Readonly<Record<string, OttlFunction<C>>>;
}

/**
 * How a path's first segment is read:
 * - `legacy`: the filter processor's `traces.span` style blocks: a first segment naming a context this
 *   context can read selects it, anything else is a field of the context itself (same as `prepend`);
 * - `prepend`: `trace_conditions` with an explicit `context:`: paths without a valid context name get it;
 * - `explicit`: `trace_conditions` with an inferred context: every path must start with a context name.
 */
export type PathContextMode = 'legacy' | 'prepend' | 'explicit';

/** A path a condition reads: the context it belongs to and its text without the context. */
export interface OttlPathRef {
  readonly context: string;
  readonly path: string;
}

export interface CompiledCondition<C> {
  readonly text: string;
  readonly context: string;
  /**
   * Every path read (and every context-specific converter, as `IsRootSpan()`), so a caller can tell
   * resource-only conditions from span-level ones.
   */
  readonly paths: readonly OttlPathRef[];
  /** The contexts those paths belong to. */
  readonly contexts: ReadonlySet<string>;
  /** The constant result when the condition does not depend on the data. */
  readonly constant?: boolean;
  /** Evaluates; throws OttlRuntimeError (what error_mode decides about). */
  eval(ctx: C): boolean;
}

/** A condition that does not compile (syntax, unknown path/function/enum, argument errors). */
export class OttlCompileError extends Error {
  override readonly name = 'OttlCompileError';
}

interface Getter<C> {
  readonly get: (ctx: C) => OttlValue;
  /** Set for literals: the value, computed once. */
  readonly literal?: { readonly value: OttlValue };
  /** Set for `path["key"]`: the map the key is looked up in, and the key (for RawStringEquals). */
  readonly keyed?: { readonly map: (ctx: C) => OttlValue; readonly key: string; readonly raw?: OttlField<C>['rawStringEquals'] };
}

function literal<C>(value: OttlValue): Getter<C> {
  return { get: () => value, literal: { value } };
}

export interface CompileOptions {
  readonly mode?: PathContextMode;
}

class Compiler<C> {
  readonly paths: OttlPathRef[] = [];
  private readonly functions: Readonly<Record<string, OttlFunction<C>>>;

  constructor(private readonly ctx: OttlContext<C>, private readonly mode: PathContextMode) {
    this.functions = { ...(STANDARD_CONVERTERS as Readonly<Record<string, OttlFunction<C>>>), ...ctx.functions };
  }

  bool(node: BoolNode): { eval: (c: C) => boolean; constant?: boolean } {
    switch (node.kind) {
      case 'const':
        return { eval: () => node.value, constant: node.value };
      case 'not': {
        const inner = this.bool(node.value);
        if (inner.constant !== undefined) return { eval: () => !inner.constant, constant: !inner.constant };
        const f = inner.eval;
        return { eval: (c) => !f(c) };
      }
      case 'and':
      case 'or': {
        const isAnd = node.kind === 'and';
        const parts = (isAnd ? node.values : node.terms).map((n) => this.bool(n));
        // Literals fold as in the Collector: a decisive constant wins, neutral ones drop out.
        const live: ((c: C) => boolean)[] = [];
        for (const p of parts) {
          if (p.constant === undefined) live.push(p.eval);
          else if (p.constant !== isAnd) return { eval: () => !isAnd, constant: !isAnd };
        }
        if (live.length === 0) return { eval: () => isAnd, constant: isAnd };
        if (live.length === 1) return { eval: live[0] as (c: C) => boolean };
        return isAnd
          ? { eval: (c) => { for (const f of live) if (!f(c)) return false; return true; } }
          : { eval: (c) => { for (const f of live) if (f(c)) return true; return false; } };
      }
      case 'compare': {
        const l = this.value(node.left);
        const r = this.value(node.right);
        const op: CompareOp = node.op;
        if (l.literal && r.literal) {
          const v = compareValues(l.literal.value, r.literal.value, op);
          return { eval: () => v, constant: v };
        }
        const lg = l.get;
        const rg = r.get;
        const fast = op === '==' || op === '!=' ? rawStringEquals(l, r) ?? rawStringEquals(r, l) : undefined;
        if (fast) {
          // Same result as compareValues on the decoded value: equal UTF-8 bytes are equal strings.
          const equals = fast;
          const eq = op === '==';
          return { eval: (c) => { const v = equals(c); return v === undefined ? compareValues(lg(c), rg(c), op) : v === eq; } };
        }
        return { eval: (c) => compareValues(lg(c), rg(c), op) };
      }
      case 'call': {
        const g = this.call(node.call);
        return {
          eval: (c) => {
            const v = g.get(c);
            if (typeof v !== 'boolean') {
              throw new OttlRuntimeError(`value returned from Converter in constant expression must be bool but got ${goTypeName(v)}`);
            }
            return v;
          },
        };
      }
    }
  }

  value(node: ValueNode): Getter<C> {
    switch (node.kind) {
      case 'nil': return literal(null);
      case 'string':
      case 'bool':
      case 'bytes':
      case 'int':
      case 'float':
        return literal(node.value);
      case 'enum': {
        const v = this.ctx.enums?.[node.name];
        if (v === undefined) {
          if (!this.ctx.enums || Object.keys(this.ctx.enums).length === 0) {
            throw new OttlCompileError(`${this.ctx.name} context does not provide Enum support (${node.name})`);
          }
          throw new OttlCompileError(`enum symbol, ${node.name}, not found (the ${this.ctx.name} context has: ${Object.keys(this.ctx.enums).join(', ')})`);
        }
        return literal(v);
      }
      case 'path': return this.path(node.path);
      case 'call': return this.call(node.call);
      case 'list': {
        const items = node.values.map((v) => this.value(v));
        if (items.every((i) => i.literal)) return literal(items.map((i) => i.literal?.value ?? null));
        return { get: (c) => items.map((i) => i.get(c)) };
      }
      case 'map': {
        const entries = node.entries.map(([k, v]) => [k, this.value(v)] as const);
        const build = (c: C): OttlValue => new Map(entries.map(([k, g]) => [k, g.get(c)]));
        if (entries.every(([, g]) => g.literal)) return literal(build(undefined as unknown as C));
        return { get: build };
      }
      case 'neg': {
        const g = this.value(node.value).get;
        return {
          get: (c) => {
            const v = g(c);
            if (typeof v === 'bigint') return wrapInt64(-v);
            if (typeof v === 'number') return -v;
            throw new OttlRuntimeError(`unsupported unary minus operation on type ${goTypeName(v)}`);
          },
        };
      }
      case 'math': {
        const l = this.value(node.left).get;
        const r = this.value(node.right).get;
        const op = node.op;
        return { get: (c) => mathOp(l(c), op, r(c)) };
      }
    }
  }

  private path(p: PathNode): Getter<C> {
    const { context, fields } = this.resolveContext(p);
    const table = this.ctx.fields[context];
    if (!table) throw new OttlCompileError(`context "${context}" from path "${p.text}" is not valid for the ${this.ctx.name} context`);
    const first = fields[0];
    if (!first) throw new OttlCompileError(`path "${p.text}" has no field after the context name "${context}"`);
    let field = table[first.name];
    let i = 0;
    const unknown = (segment: string): OttlCompileError =>
      new OttlCompileError(
        `segment "${segment}" from path "${p.text}" is not a valid path for the ${context} context ` +
          `(valid: ${Object.keys(table).join(', ')}; see ${OTTL_DOCS})`,
      );
    if (!field) throw unknown(first.name);
    while (field.fields && i + 1 < fields.length && (field.fields[fields[i + 1]?.name ?? ''] || !field.get)) {
      if ((fields[i]?.keys.length ?? 0) > 0) break;
      const next = fields[i + 1] as (typeof fields)[number];
      const sub: OttlField<C> | undefined = field.fields[next.name];
      if (!sub) throw new OttlCompileError(`segment "${next.name}" from path "${p.text}" is not a valid path for the ${context} context (valid after "${fields[i]?.name ?? ''}": ${Object.keys(field.fields).join(', ')}; see ${OTTL_DOCS})`);
      field = sub;
      i++;
    }
    const last = fields[i] as (typeof fields)[number];
    if (!field.get) {
      throw new OttlCompileError(`path "${p.text}" is not supported by spansieve (readable: ${Object.keys(field.fields ?? {}).map((k) => `${last.name}.${k}`).join(', ')}; see ${OTTL_DOCS})`);
    }
    if (i + 1 < fields.length) {
      throw new OttlCompileError(`the path section "${fields[i + 1]?.name ?? ''}" of "${p.text}" was not used by the context - this likely means you are using extra path sections`);
    }
    for (let j = 0; j < i; j++) {
      if ((fields[j]?.keys.length ?? 0) > 0) throw keysUnused(fields[j]?.name ?? '');
    }
    const text = fields.map((f, j) => (j === 0 ? f.name : `.${f.name}`) + (f.keys.length ? '[…]' : '')).join('');
    this.paths.push({ context, path: text.replace(/\[…\]/g, '') });
    const get = field.get;
    if (last.keys.length === 0) return { get };
    if (!field.indexable) throw keysUnused(last.name);
    const keys = last.keys.map((k) => this.key(k));
    const only = keys.length === 1 ? keys[0]!.s : undefined;
    return { get: (c) => indexPathValue(get(c), keys, c), ...(only === undefined ? {} : { keyed: { map: get, key: only, raw: field.rawStringEquals } }) };
  }

  private resolveContext(p: PathNode): { context: string; fields: PathNode['fields'] } {
    const names = Object.keys(this.ctx.fields);
    if (this.mode === 'explicit') {
      if (p.context === '') {
        throw new OttlCompileError(`missing context name for path "${p.text}", possibly valid options are: ${names.map((n) => `"${n}.${p.text}"`).join(', ')}`);
      }
      if (!this.ctx.fields[p.context]) {
        throw new OttlCompileError(`context "${p.context}" from path "${p.text}" is not valid, it must be replaced by one of: ${names.map((n) => `"${n}"`).join(', ')}`);
      }
      return { context: p.context, fields: p.fields };
    }
    if (p.context !== '' && this.ctx.fields[p.context]) return { context: p.context, fields: p.fields };
    if (p.context !== '') return { context: this.ctx.name, fields: [{ name: p.context, keys: [] }, ...p.fields] };
    return { context: this.ctx.name, fields: p.fields };
  }

  private key(k: KeyNode): ResolvedKey<C> {
    switch (k.kind) {
      case 'string': return { s: k.value };
      case 'int': return { i: k.value };
      case 'expr': return { g: this.value(k.value).get };
    }
  }

  call(call: CallNode): Getter<C> {
    if (call.editor) throw new OttlCompileError(`converter names must start with an uppercase letter but got '${call.name}'`);
    const fn = this.functions[call.name];
    if (!fn) {
      const known = COLLECTOR_CONVERTERS.has(call.name) || call.name === 'IsRootSpan' || call.name.startsWith('HasAttr');
      throw new OttlCompileError(
        known
          ? `converter "${call.name}" is not supported in the ${this.ctx.name} context by spansieve (see the converters table in ${OTTL_DOCS})`
          : `undefined function "${call.name}" (see the converters table in ${OTTL_DOCS})`,
      );
    }
    if (this.ctx.functions?.[call.name]) {
      // A context's own converter reads its data without a path (IsRootSpan reads the span).
      this.paths.push({ context: this.ctx.name, path: `${call.name}()` });
    }
    let args: OttlArgs<C>;
    try {
      args = this.bindArgs(fn, call.args);
    } catch (err) {
      throw new OttlCompileError(`error while parsing arguments for call to "${call.name}": ${(err as Error).message}`);
    }
    let run: (c: C) => OttlValue;
    try {
      run = fn.create(args);
    } catch (err) {
      throw new OttlCompileError(`couldn't create function: ${(err as Error).message}`);
    }
    if (call.keys.length === 0) return { get: run };
    const keys = call.keys.map((k) => this.key(k));
    return { get: (c) => indexConverterValue(run(c), keys, c) };
  }

  private bindArgs(fn: OttlFunction<C>, args: readonly ArgNode[]): OttlArgs<C> {
    let seenNamed = false;
    for (const a of args) {
      if (a.name !== undefined) seenNamed = true;
      else if (seenNamed) throw new Error('unnamed argument used after named argument');
    }
    const required = fn.params.filter((p) => !p.optional).length;
    if (args.length < required || args.length > fn.params.length) {
      throw new Error(`incorrect number of arguments. Expected: ${fn.params.length} Received: ${args.length}`);
    }
    const bound: (BoundArg<C> | readonly BoundArg<C>[] | undefined)[] = new Array<undefined>(fn.params.length);
    args.forEach((a, i) => {
      let index = i;
      if (a.name !== undefined) {
        index = fn.params.findIndex((p) => toCamel(p.name) === toCamel(a.name ?? ''));
        if (index < 0) throw new Error(`no such parameter: ${a.name}`);
      }
      const param = fn.params[index] as OttlParam;
      try {
        bound[index] = this.bindArg(param, a);
      } catch (err) {
        throw new Error(`invalid argument at position ${i}: ${(err as Error).message}`, { cause: err });
      }
    });
    return bound;
  }

  private bindArg(param: OttlParam, a: ArgNode): BoundArg<C> | readonly BoundArg<C>[] {
    const v = a.value;
    if (!v) throw new Error(`must be a value (a bare function name "${a.functionName ?? ''}" is only for function parameters)`);
    if (param.list) {
      if (v.kind !== 'list') throw new Error(`must be a list of type ${param.kind}`);
      return v.values.map((item, idx) => {
        try {
          return this.bindOne(param.kind, item);
        } catch (err) {
          throw new Error(`error while parsing list argument at index ${idx}: ${(err as Error).message}`, { cause: err });
        }
      });
    }
    return this.bindOne(param.kind, v);
  }

  private bindOne(kind: ParamKind, v: ValueNode): BoundArg<C> {
    switch (kind) {
      case 'string':
        if (v.kind !== 'string') throw new Error('must be a string');
        return { get: () => v.value, literal: true };
      case 'int64':
        if (v.kind !== 'int') throw new Error('must be an int');
        return { get: () => v.value, literal: true };
      case 'float64':
        if (v.kind !== 'float') throw new Error('must be a float');
        return { get: () => v.value, literal: true };
      case 'bool':
        if (v.kind !== 'bool') throw new Error('must be a bool');
        return { get: () => v.value, literal: true };
      default:
    }
    const g = this.value(v);
    if (g.literal) {
      // A literal argument is converted once, here: a type mismatch is a compile error, as in OTTL.
      const converted = convertFor(kind, g.literal.value);
      return { get: () => converted, literal: true };
    }
    const raw = g.get;
    return {
      get: (c) => {
        let value: OttlValue;
        try {
          value = raw(c);
        } catch (err) {
          // Wrapped: an inner TypeError is no longer a TypeError for the Is* converters.
          throw new OttlRuntimeError(`error getting value in ${kind}: ${(err as Error).message}`, { cause: err });
        }
        return convertFor(kind, value);
      },
      literal: false,
    };
  }
}

function keysUnused(name: string): OttlCompileError {
  return new OttlCompileError(`the keys indexing "${name}" were not used by the context - this likely means you are trying to index a path that does not support indexing`);
}

/** strcase.ToCamel as the Collector applies it to named arguments (`utf8_safe` -> `Utf8Safe`). */
export function toCamel(s: string): string {
  let out = '';
  let capNext = true;
  for (const ch of s) {
    if (ch === '_' || ch === ' ' || ch === '-' || ch === '.') { capNext = true; continue; }
    if (/[0-9]/.test(ch)) { out += ch; capNext = true; continue; }
    out += capNext ? ch.toUpperCase() : ch;
    capNext = false;
  }
  return out;
}

interface ResolvedKey<C> {
  readonly s?: string;
  readonly i?: bigint;
  readonly g?: (c: C) => OttlValue;
}

/** `m["k"] == "literal"` answered on the map's bytes when it can (RawStringEquals); undefined when the shape does not fit. */
function rawStringEquals<C>(path: Getter<C>, other: Getter<C>): ((c: C) => boolean | undefined) | undefined {
  const keyed = path.keyed;
  const lit = other.literal?.value;
  if (!keyed || typeof lit !== 'string') return undefined;
  const utf8 = Buffer.from(lit, 'utf8');
  // A lone surrogate would encode as U+FFFD's bytes, which then would wrongly match U+FFFD.
  if (utf8.toString('utf8') !== lit) return undefined;
  const { map, key, raw } = keyed;
  if (raw) {
    const keyUtf8 = Buffer.from(key, 'utf8');
    if (keyUtf8.toString('utf8') === key) return (c) => raw(c, keyUtf8, utf8);
  }
  return (c) => {
    const m = map(c);
    return hasRawStringEquals(m) ? m.stringEquals(key, utf8) : undefined;
  };
}

/** Path indexing (ctxutil): a missing map key is nil; a wrong type or an out-of-range index is an error. */
function indexPathValue<C>(base: OttlValue, keys: readonly ResolvedKey<C>[], c: C): OttlValue {
  let v = base;
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i] as ResolvedKey<C>;
    if (v instanceof Map) {
      const name = k.s ?? keyFromExpression(k, c, 'string');
      const m = v as ReadonlyMap<string, OttlValue>;
      if (!m.has(name)) return null;
      v = m.get(name) ?? null;
    } else if (Array.isArray(v)) {
      const idx = k.i ?? keyFromExpression(k, c, 'int64');
      const list = v as readonly OttlValue[];
      if (idx < 0n || idx >= BigInt(list.length)) throw new OttlRuntimeError(`index ${idx} out of bounds`);
      v = list[Number(idx)] ?? null;
    } else if (i === 0 && v === null) {
      // The whole map is absent (a resource without attributes reads as an empty map in the Collector).
      return null;
    } else {
      throw new OttlRuntimeError(`type ${pdataTypeName(v)} does not support string indexing`);
    }
  }
  return v;
}

function keyFromExpression<C>(k: ResolvedKey<C>, c: C, want: 'string'): string;
function keyFromExpression<C>(k: ResolvedKey<C>, c: C, want: 'int64'): bigint;
function keyFromExpression<C>(k: ResolvedKey<C>, c: C, want: 'string' | 'int64'): string | bigint {
  if (!k.g) throw new OttlRuntimeError(`unable to resolve ${want === 'string' ? 'a string index in map' : 'an integer index in slice'}: invalid key type`);
  const v = k.g(c);
  if (want === 'string' ? typeof v === 'string' : typeof v === 'bigint') return v as string | bigint;
  throw new OttlRuntimeError(`could not resolve key for map/slice, expecting '${want}' but got '${goTypeName(v)}'`);
}

function pdataTypeName(v: OttlValue): string {
  switch (typeof v) {
    case 'string': return 'Str';
    case 'boolean': return 'Bool';
    case 'bigint': return 'Int';
    case 'number': return 'Double';
    default:
  }
  if (v === null) return 'Empty';
  if (v instanceof Uint8Array) return 'Bytes';
  return goTypeName(v);
}

/** Converter-result indexing (expression.go getIndexedValue): a missing map key is an error here. */
function indexConverterValue<C>(base: OttlValue, keys: readonly ResolvedKey<C>[], c: C): OttlValue {
  let v = base;
  for (const k of keys) {
    let key: OttlValue;
    if (k.s !== undefined) key = k.s;
    else if (k.i !== undefined) key = k.i;
    else {
      if (!k.g) throw new OttlRuntimeError('malformed or empty indexing key');
      key = k.g(c);
      if (key === null) throw new OttlRuntimeError('key expression returned nil, expected an int or string');
      if (typeof key !== 'string' && typeof key !== 'bigint') throw new OttlRuntimeError(`key expression must evaluate to string or int, got ${goTypeName(key)}`);
    }
    if (typeof key === 'string') {
      if (!(v instanceof Map)) throw new OttlRuntimeError(`type ${goTypeName(v)} does not support string indexing`);
      const m = v as ReadonlyMap<string, OttlValue>;
      if (!m.has(key)) throw new OttlRuntimeError('key not found in map');
      v = m.get(key) ?? null;
    } else {
      const list: readonly OttlValue[] | undefined = Array.isArray(v) ? (v as readonly OttlValue[]) : undefined;
      if (!list && !(v instanceof Uint8Array)) throw new OttlRuntimeError(`type ${goTypeName(v)} does not support int indexing`);
      const len = list ? list.length : (v as Uint8Array).length;
      if (key < 0n || key >= BigInt(len)) throw new OttlRuntimeError(`index ${key} out of bounds`);
      v = list ? (list[Number(key)] ?? null) : BigInt((v as Uint8Array)[Number(key)] ?? 0);
    }
  }
  return v;
}

/** math.go: int64/float64 arithmetic (int64 wraps like Go), time and duration arithmetic. */
export function mathOp(x: OttlValue, op: '+' | '-' | '*' | '/', y: OttlValue): OttlValue {
  if (typeof x === 'bigint' || typeof x === 'number') {
    if (typeof y !== 'bigint' && typeof y !== 'number') throw new OttlRuntimeError(`${goFormat(y)} must be int64 or float64`);
    if (typeof x === 'bigint' && typeof y === 'bigint') {
      switch (op) {
        case '+': return wrapInt64(x + y);
        case '-': return wrapInt64(x - y);
        case '*': return wrapInt64(x * y);
        case '/':
          if (y === 0n) throw new OttlRuntimeError('attempted to divide by 0');
          return wrapInt64(x / y);
      }
    }
    const a = Number(x);
    const b = Number(y);
    switch (op) {
      case '+': return a + b;
      case '-': return a - b;
      case '*': return a * b;
      case '/':
        if (b === 0) throw new OttlRuntimeError('attempted to divide by 0');
        return a / b;
    }
  }
  if (x instanceof OttlTime) {
    if (op === '+') {
      if (y instanceof OttlDuration) return new OttlTime(x.unixNano + y.nanos);
      throw new OttlRuntimeError(`time.Time must be added to time.Duration; found ${goFormat(y)} instead`);
    }
    if (op === '-') {
      if (y instanceof OttlTime) return new OttlDuration(x.unixNano - y.unixNano);
      if (y instanceof OttlDuration) return new OttlTime(x.unixNano - y.nanos);
      throw new OttlRuntimeError(`time.Time or time.Duration must be subtracted from time.Time; found ${goFormat(y)} instead`);
    }
    throw new OttlRuntimeError('only addition and subtraction supported for time.Time and time.Duration');
  }
  if (x instanceof OttlDuration) {
    if (op === '+') {
      if (y instanceof OttlDuration) return new OttlDuration(wrapInt64(x.nanos + y.nanos));
      if (y instanceof OttlTime) return new OttlTime(y.unixNano + x.nanos);
      throw new OttlRuntimeError(`time.Duration must be added to time.Duration or time.Time; found ${goFormat(y)} instead`);
    }
    if (op === '-') {
      if (y instanceof OttlDuration) return new OttlDuration(wrapInt64(x.nanos - y.nanos));
      throw new OttlRuntimeError(`time.Duration must be subtracted from time.Duration; found ${goFormat(y)} instead`);
    }
    throw new OttlRuntimeError('only addition and subtraction supported for time.Time and time.Duration');
  }
  throw new OttlRuntimeError(`${goFormat(x)} must be int64, float64, time.Time or time.Duration`);
}

function goFormat(v: OttlValue): string {
  if (v === null) return '<nil>';
  if (typeof v === 'string' || typeof v === 'boolean' || typeof v === 'bigint' || typeof v === 'number') return String(v);
  return goTypeName(v);
}

/** Compiles one condition for a context. Throws OttlCompileError (syntax errors included). */
export function compileCondition<C>(text: string, context: OttlContext<C>, options: CompileOptions = {}): CompiledCondition<C> {
  let ast: BoolNode;
  try {
    ast = parseCondition(text);
  } catch (err) {
    throw new OttlCompileError((err as Error).message, { cause: err });
  }
  const compiler = new Compiler(context, options.mode ?? 'legacy');
  const compiled = compiler.bool(ast);
  const paths = compiler.paths;
  return {
    text,
    context: context.name,
    paths,
    contexts: new Set(paths.map((p) => p.context)),
    ...(compiled.constant !== undefined ? { constant: compiled.constant } : {}),
    eval: compiled.eval,
  };
}

/** Compiles a list of conditions; all errors are reported at once, each naming its condition. */
export function compileConditions<C>(texts: readonly string[], context: OttlContext<C>, options: CompileOptions = {}): CompiledCondition<C>[] {
  const out: CompiledCondition<C>[] = [];
  const errors: string[] = [];
  for (const t of texts) {
    try {
      out.push(compileCondition(t, context, options));
    } catch (err) {
      if (!(err instanceof OttlCompileError)) throw err;
      errors.push(`unable to parse OTTL condition ${JSON.stringify(t)}: ${err.message}`);
    }
  }
  if (errors.length > 0) throw new OttlCompileError(errors.join('\n'));
  return out;
}

export type ErrorMode = 'propagate' | 'ignore' | 'silent';

/**
 * The Collector's ConditionSequence (logic OR, as the filter processor uses it): true when a condition
 * matches. An evaluation error under `propagate` is thrown (the filter processor then keeps the item and
 * fails the whole batch); under `ignore` it is reported to `onError` (the Collector logs a warning) and
 * under `silent` dropped; in both the erroring condition counts as false and the next one runs.
 */
export class ConditionSequence<C> {
  constructor(
    readonly conditions: readonly CompiledCondition<C>[],
    readonly errorMode: ErrorMode,
    private readonly onError?: (err: OttlRuntimeError, condition: CompiledCondition<C>) => void,
  ) {}

  eval(ctx: C): boolean {
    for (const cond of this.conditions) {
      let match: boolean;
      try {
        match = cond.eval(ctx);
      } catch (err) {
        if (!(err instanceof OttlRuntimeError)) throw err;
        if (this.errorMode === 'propagate') {
          throw new OttlRuntimeError(`failed to eval condition: ${cond.text}, ${err.message}`, { cause: err });
        }
        if (this.errorMode === 'ignore') this.onError?.(err, cond);
        continue;
      }
      if (match) return true;
    }
    return false;
  }
}

/** The Collector's context inference priority (context_inferrer.go), lowest context first. */
export const CONTEXT_INFER_PRIORITY: readonly string[] = [
  'log', 'exemplar', 'datapoint', 'metric', 'spanevent', 'span', 'profile', 'scope', 'instrumentation_scope', 'resource',
];

/**
 * Infers a condition's context as `trace_conditions` / `metric_conditions` do: the lowest-priority
 * context among its paths' first segments; if that context lacks a function or enum the condition uses,
 * the lowest of the contexts that can read it and have them. `candidates` are the contexts the signal
 * offers (traces: resource, scope, span, spanevent). Throws OttlCompileError.
 */
export function inferContext(text: string, candidates: Readonly<Record<string, OttlContext<never>>>): string {
  let ast: BoolNode;
  try {
    ast = parseCondition(text);
  } catch (err) {
    throw new OttlCompileError((err as Error).message, { cause: err });
  }
  const functions = new Set<string>();
  const enums = new Set<string>();
  const pathContexts: string[] = [];
  walkCalls(ast, (c) => functions.add(c.name), (p) => pathContexts.push(p.context), (e) => enums.add(e));
  const prio = (n: string): number => {
    const i = CONTEXT_INFER_PRIORITY.indexOf(n);
    return i < 0 ? Number.MAX_SAFE_INTEGER : i;
  };
  let inferred: string | undefined;
  for (const pc of pathContexts) if (!inferred || prio(pc) < prio(inferred)) inferred = pc;
  const supported = Object.keys(candidates);
  if (!inferred) {
    throw new OttlCompileError(`unable to infer context from condition, path's first segment must be a valid context name: ${supported.map((s) => JSON.stringify(s)).join(', ')} (${JSON.stringify(text)})`);
  }
  const fits = (name: string): string | undefined => {
    const cand = candidates[name];
    if (!cand) return `inferred context "${name}" is not a valid candidate`;
    for (const f of functions) {
      if (!STANDARD_CONVERTERS[f] && !cand.functions?.[f]) return `inferred context "${name}" does not support the function "${f}"`;
    }
    for (const e of enums) if (cand.enums?.[e] === undefined) return `inferred context "${name}" does not support the enum symbol "${e}"`;
    return undefined;
  };
  if (functions.size === 0 && enums.size === 0) {
    if (!candidates[inferred]) {
      throw new OttlCompileError(`context "${inferred}" inferred from the condition ${JSON.stringify(text)} is not a supported context: ${supported.map((s) => JSON.stringify(s)).join(', ')}`);
    }
    return inferred;
  }
  const problem = fits(inferred);
  if (!problem) return inferred;
  if (candidates[inferred]) {
    const lower = supported
      .filter((n) => n !== inferred && Object.hasOwn(candidates[n]?.fields ?? {}, inferred))
      .sort((a, b) => prio(a) - prio(b));
    for (const l of lower) if (!fits(l)) return l;
  }
  throw new OttlCompileError(problem);
}

export { OttlTypeError };
