// Lexer and parser for OTTL conditions, following the Collector's grammar (pkg/ottl grammar.go,
// v0.160.0): the same token rules in the same order, and ordered choice between alternatives.

export type TokenType =
  | 'Bytes' | 'Float' | 'Int' | 'String' | 'Nil' | 'OpNot' | 'OpOr' | 'OpAnd' | 'OpComparison'
  | 'LambdaArrow' | 'OpAddSub' | 'OpMultDiv' | 'Boolean' | 'Equal' | 'LParen' | 'RParen' | 'LBrace'
  | 'RBrace' | 'Colon' | 'Punct' | 'Uppercase' | 'Lowercase' | 'Underscore' | 'EOF';

export interface Token {
  readonly type: TokenType;
  readonly text: string;
  /** Offset in the source (UTF-16 units). */
  readonly offset: number;
}

// The rule order matters: the first rule that matches at the current position wins (not the longest),
// and each rule is matched against the rest of the input, so `\b` at its start always holds.
// Go's `\s` is [\t\n\f\r ]; `\d` and `\b` are ASCII in both engines.
const RULES: readonly (readonly [TokenType | 'whitespace', RegExp])[] = [
  ['Bytes', /^0x[a-fA-F0-9]+/],
  ['Float', /^(?:\d+\.\d*|\d*\.\d+)(?:[eE][-+]?\d+)?/],
  ['Int', /^\d+/],
  ['String', /^"(?:\\[^]|[^\\"])*"/],
  ['Nil', /^\bnil\b/],
  ['OpNot', /^\bnot\b/],
  ['OpOr', /^\bor\b/],
  ['OpAnd', /^\band\b/],
  ['OpComparison', /^(?:==|!=|>=|<=|>|<)/],
  ['LambdaArrow', /^=>/],
  ['OpAddSub', /^[+-]/],
  ['OpMultDiv', /^[/*]/],
  ['Boolean', /^\b(?:true|false)\b/],
  ['Equal', /^=/],
  ['LParen', /^\(/],
  ['RParen', /^\)/],
  ['LBrace', /^\{/],
  ['RBrace', /^\}/],
  ['Colon', /^:/],
  ['Punct', /^[,.[\]]/],
  ['Uppercase', /^[A-Z][A-Z0-9_]*/],
  ['Lowercase', /^[a-z][a-z0-9_]*/],
  ['whitespace', /^[\t\n\f\r ]+/],
  ['Underscore', /^\b_\b/],
];

/** A condition that does not parse: the message names the position and the text there. */
export class OttlSyntaxError extends Error {
  override readonly name = 'OttlSyntaxError';
  constructor(message: string, readonly offset: number) {
    super(message);
  }
}

function position(src: string, offset: number): string {
  let line = 1;
  let col = 1;
  for (let i = 0; i < offset && i < src.length; i++) {
    if (src[i] === '\n') { line++; col = 1; } else col++;
  }
  return `${line}:${col}`;
}

function syntaxError(src: string, offset: number, reason: string): OttlSyntaxError {
  const near = src.slice(offset, offset + 10).trim();
  const where = near ? `at ${position(src, offset)} near \`${near}\`` : `at ${position(src, offset)}`;
  return new OttlSyntaxError(`condition has invalid syntax ${where}: ${reason}`, offset);
}

export function tokenize(src: string): Token[] {
  const tokens: Token[] = [];
  let pos = 0;
  while (pos < src.length) {
    const rest = src.slice(pos);
    let matched = false;
    for (const [type, re] of RULES) {
      const m = re.exec(rest);
      if (!m || m[0].length === 0) continue;
      if (type !== 'whitespace') tokens.push({ type, text: m[0], offset: pos });
      pos += m[0].length;
      matched = true;
      break;
    }
    if (!matched) throw syntaxError(src, pos, `invalid input text ${JSON.stringify(rest.slice(0, 16))}`);
  }
  tokens.push({ type: 'EOF', text: '', offset: src.length });
  return tokens;
}

// ---------------------------------------------------------------------------------------------
// AST

export type KeyNode =
  | { readonly kind: 'string'; readonly value: string }
  | { readonly kind: 'int'; readonly value: bigint }
  | { readonly kind: 'expr'; readonly value: ValueNode };

export interface FieldNode {
  readonly name: string;
  readonly keys: readonly KeyNode[];
}

export interface PathNode {
  /** The first segment when a `.` follows it (the grammar's context slot), else ''. */
  readonly context: string;
  readonly fields: readonly FieldNode[];
  readonly offset: number;
  readonly text: string;
}

export interface ArgNode {
  readonly name?: string;
  readonly value?: ValueNode;
  /** A bare function name (for FunctionGetter parameters). */
  readonly functionName?: string;
}

export interface CallNode {
  readonly name: string;
  readonly args: readonly ArgNode[];
  readonly keys: readonly KeyNode[];
  readonly offset: number;
  readonly editor: boolean;
}

export type ValueNode =
  | { readonly kind: 'nil' }
  | { readonly kind: 'string'; readonly value: string }
  | { readonly kind: 'bool'; readonly value: boolean }
  | { readonly kind: 'bytes'; readonly value: Uint8Array }
  | { readonly kind: 'enum'; readonly name: string }
  | { readonly kind: 'int'; readonly value: bigint }
  | { readonly kind: 'float'; readonly value: number }
  | { readonly kind: 'path'; readonly path: PathNode }
  | { readonly kind: 'call'; readonly call: CallNode }
  | { readonly kind: 'list'; readonly values: readonly ValueNode[] }
  | { readonly kind: 'map'; readonly entries: readonly (readonly [string, ValueNode])[] }
  | { readonly kind: 'math'; readonly op: '+' | '-' | '*' | '/'; readonly left: ValueNode; readonly right: ValueNode }
  | { readonly kind: 'neg'; readonly value: ValueNode };

export type BoolNode =
  | { readonly kind: 'or'; readonly terms: readonly BoolNode[] }
  | { readonly kind: 'and'; readonly values: readonly BoolNode[] }
  | { readonly kind: 'not'; readonly value: BoolNode }
  | { readonly kind: 'compare'; readonly op: '==' | '!=' | '<' | '<=' | '>' | '>='; readonly left: ValueNode; readonly right: ValueNode }
  | { readonly kind: 'const'; readonly value: boolean }
  | { readonly kind: 'call'; readonly call: CallNode };

// ---------------------------------------------------------------------------------------------
// Literal captures

const INT64_MAX = (1n << 63n) - 1n;

/** Go's strconv.Unquote for a double-quoted literal. */
export function goUnquote(quoted: string): string {
  const body = quoted.slice(1, -1);
  if (body.includes('\n')) throw new Error('invalid syntax (a string literal cannot contain a newline)');
  const bytes: number[] = [];
  const pushText = (s: string): void => { for (const b of Buffer.from(s, 'utf8')) bytes.push(b); };
  const hexAt = (i: number, n: number): number => {
    const h = body.slice(i, i + n);
    if (h.length !== n || !/^[0-9a-fA-F]+$/.test(h)) throw new Error(`invalid escape \\${body[i - 1] ?? ''}${h}`);
    return parseInt(h, 16);
  };
  for (let i = 0; i < body.length; i++) {
    const ch = body[i] ?? '';
    if (ch !== '\\') {
      const cp = body.codePointAt(i) ?? 0;
      const s = String.fromCodePoint(cp);
      pushText(s);
      i += s.length - 1;
      continue;
    }
    const e = body[++i] ?? '';
    switch (e) {
      case 'a': bytes.push(7); break;
      case 'b': bytes.push(8); break;
      case 'f': bytes.push(12); break;
      case 'n': bytes.push(10); break;
      case 'r': bytes.push(13); break;
      case 't': bytes.push(9); break;
      case 'v': bytes.push(11); break;
      case '\\': bytes.push(92); break;
      case '"': bytes.push(34); break;
      case 'x': bytes.push(hexAt(i + 1, 2)); i += 2; break;
      case 'u':
      case 'U': {
        const n = e === 'u' ? 4 : 8;
        const cp = hexAt(i + 1, n);
        if (cp > 0x10ffff || (cp >= 0xd800 && cp < 0xe000)) throw new Error(`invalid escape \\${e}${body.slice(i + 1, i + 1 + n)}`);
        pushText(String.fromCodePoint(cp));
        i += n;
        break;
      }
      default: {
        if (e >= '0' && e <= '7') {
          const o = body.slice(i, i + 3);
          if (!/^[0-7]{3}$/.test(o) || parseInt(o, 8) > 255) throw new Error(`invalid escape \\${o}`);
          bytes.push(parseInt(o, 8));
          i += 2;
          break;
        }
        throw new Error(`invalid escape \\${e}`);
      }
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

// ---------------------------------------------------------------------------------------------
// Parser: ordered choice with backtracking, like participle with full lookahead.

class Fail extends Error {}
const FAIL = new Fail();

class Parser {
  private pos = 0;
  private furthest = 0;
  private furthestExpected = '';
  /** An error found while capturing a literal (bad escape, overflow): reported as such. */
  private captureError: OttlSyntaxError | undefined;

  constructor(private readonly src: string, private readonly toks: readonly Token[]) {}

  private peek(offset = 0): Token {
    return this.toks[Math.min(this.pos + offset, this.toks.length - 1)] as Token;
  }

  private fail(expected: string): never {
    if (this.pos >= this.furthest) {
      if (this.pos > this.furthest) this.furthestExpected = '';
      this.furthest = this.pos;
      if (!this.furthestExpected.includes(expected)) {
        this.furthestExpected = this.furthestExpected ? `${this.furthestExpected} or ${expected}` : expected;
      }
    }
    throw FAIL;
  }

  private is(type: TokenType, text?: string): boolean {
    const t = this.peek();
    return t.type === type && (text === undefined || t.text === text);
  }

  private expect(type: TokenType, text?: string): Token {
    if (!this.is(type, text)) this.fail(text !== undefined ? `"${text}"` : type);
    return this.toks[this.pos++] as Token;
  }

  /** Tries an alternative; on failure the position is restored and undefined returned. */
  private attempt<T>(f: () => T): T | undefined {
    const saved = this.pos;
    try {
      return f();
    } catch (err) {
      if (err !== FAIL) throw err;
      this.pos = saved;
      return undefined;
    }
  }

  private capture<T>(tok: Token, f: () => T): T {
    try {
      return f();
    } catch (err) {
      this.captureError ??= syntaxError(this.src, tok.offset, (err as Error).message);
      this.fail('a valid literal');
    }
  }

  parseCondition(): BoolNode {
    let node: BoolNode | undefined;
    try {
      const parsed = this.booleanExpression();
      this.expect('EOF');
      node = parsed;
    } catch (err) {
      if (err !== FAIL) throw err;
    }
    if (node) return node;
    if (this.captureError) throw this.captureError;
    const tok = this.toks[Math.min(this.furthest, this.toks.length - 1)] as Token;
    const unexpected = tok.type === 'EOF' ? 'unexpected end of condition' : `unexpected token "${tok.text}"`;
    throw syntaxError(this.src, tok.offset, `${unexpected}${this.furthestExpected ? ` (expected ${this.furthestExpected})` : ''}`);
  }

  private booleanExpression(): BoolNode {
    const terms = [this.term()];
    while (this.is('OpOr')) {
      this.pos++;
      terms.push(this.term());
    }
    return terms.length === 1 ? (terms[0] as BoolNode) : { kind: 'or', terms };
  }

  private term(): BoolNode {
    const values = [this.booleanValue()];
    while (this.is('OpAnd')) {
      this.pos++;
      values.push(this.booleanValue());
    }
    return values.length === 1 ? (values[0] as BoolNode) : { kind: 'and', values };
  }

  private booleanValue(): BoolNode {
    const negated = this.is('OpNot');
    if (negated) this.pos++;
    const inner =
      this.attempt(() => this.comparison()) ??
      this.attempt(() => this.constExpr()) ??
      this.attempt((): BoolNode => {
        this.expect('LParen');
        const e = this.booleanExpression();
        this.expect('RParen');
        return e;
      });
    if (!inner) this.fail('a comparison, a boolean, a converter or "("');
    return negated ? { kind: 'not', value: inner } : inner;
  }

  private comparison(): BoolNode {
    const left = this.value();
    const op = this.expect('OpComparison').text as '==';
    const right = this.value();
    return { kind: 'compare', op, left, right };
  }

  private constExpr(): BoolNode {
    if (this.is('Boolean')) return { kind: 'const', value: this.toks[this.pos++]?.text === 'true' };
    return { kind: 'call', call: this.converter() };
  }

  /** A function name: adjacent Uppercase/Lowercase tokens (whitespace between them is elided). */
  private functionName(first: 'Uppercase' | 'Lowercase'): string {
    let name = this.expect(first).text;
    while (this.is('Uppercase') || this.is('Lowercase')) name += this.toks[this.pos++]?.text ?? '';
    return name;
  }

  private converter(): CallNode {
    return this.call('Uppercase');
  }

  private call(first: 'Uppercase' | 'Lowercase'): CallNode {
    const offset = this.peek().offset;
    const name = this.functionName(first);
    this.expect('LParen');
    const args: ArgNode[] = [];
    if (!this.is('RParen')) {
      args.push(this.argument());
      while (this.is('Punct', ',')) {
        this.pos++;
        args.push(this.argument());
      }
    }
    this.expect('RParen');
    const keys = this.keys();
    return { name, args, keys, offset, editor: first === 'Lowercase' };
  }

  private argument(): ArgNode {
    const name = this.attempt(() => {
      const n = this.functionName('Lowercase');
      this.expect('Equal');
      return n;
    });
    const value = this.attempt(() => this.value());
    if (value) return { name, value };
    const fn = this.attempt(() => this.functionName('Uppercase'));
    if (fn !== undefined) return { name, functionName: fn };
    return this.fail('an argument');
  }

  private keys(): KeyNode[] {
    const keys: KeyNode[] = [];
    for (;;) {
      const k = this.attempt(() => this.key());
      if (!k) return keys;
      keys.push(k);
    }
  }

  private key(): KeyNode {
    this.expect('Punct', '[');
    const k =
      this.attempt((): KeyNode => {
        const t = this.expect('String');
        this.expect('Punct', ']');
        return { kind: 'string', value: this.capture(t, () => goUnquote(t.text)) };
      }) ??
      this.attempt((): KeyNode => {
        const t = this.expect('Int');
        this.expect('Punct', ']');
        return { kind: 'int', value: this.capture(t, () => parseInt64(t.text)) };
      }) ??
      this.attempt((): KeyNode => {
        const v = this.mathExpression();
        this.expect('Punct', ']');
        return { kind: 'expr', value: v };
      });
    if (!k) this.fail('a string, an int or an expression in "[...]"');
    return k;
  }

  private value(): ValueNode {
    if (this.is('Nil')) {
      this.pos++;
      return { kind: 'nil' };
    }
    const literal = this.attempt(() => {
      const l = this.mathExprLiteral();
      if (this.is('OpAddSub') || this.is('OpMultDiv')) this.fail('a value');
      return l;
    });
    if (literal) return literal;
    if (this.is('LParen') && this.attempt(() => this.lambda())) {
      // Lambdas need a Collector feature gate and only serve list converters conditions never use.
      this.fail('a value (lambda expressions are not supported)');
    }
    const math = this.attempt(() => this.mathExpression());
    if (math) return math;
    const t = this.peek();
    switch (t.type) {
      case 'Bytes':
        this.pos++;
        return { kind: 'bytes', value: this.capture(t, () => parseBytes(t.text)) };
      case 'String':
        this.pos++;
        return { kind: 'string', value: this.capture(t, () => goUnquote(t.text)) };
      case 'Boolean':
        this.pos++;
        return { kind: 'bool', value: t.text === 'true' };
      case 'Uppercase':
        if (this.peek(1).type !== 'Lowercase') {
          this.pos++;
          return { kind: 'enum', name: t.text };
        }
        break;
      case 'LBrace':
        return this.map();
      case 'Punct':
        if (t.text === '[') return this.list();
        break;
      default:
    }
    return this.fail('a value');
  }

  private lambda(): true {
    this.expect('LParen');
    if (!this.is('RParen')) {
      if (!this.is('Lowercase') && !this.is('Underscore')) this.fail('a parameter');
      this.pos++;
      while (this.is('Punct', ',')) {
        this.pos++;
        if (!this.is('Lowercase') && !this.is('Underscore')) this.fail('a parameter');
        this.pos++;
      }
    }
    this.expect('RParen');
    this.expect('LambdaArrow');
    return true;
  }

  private map(): ValueNode {
    this.expect('LBrace');
    const entries: (readonly [string, ValueNode])[] = [];
    while (this.is('String')) {
      const t = this.toks[this.pos++] as Token;
      this.expect('Colon');
      const v = this.value();
      entries.push([this.capture(t, () => goUnquote(t.text)), v]);
      if (this.is('Punct', ',')) this.pos++;
    }
    this.expect('RBrace');
    return { kind: 'map', entries };
  }

  private list(): ValueNode {
    this.expect('Punct', '[');
    const values: ValueNode[] = [];
    if (!this.is('Punct', ']')) {
      values.push(this.value());
      while (this.is('Punct', ',')) {
        this.pos++;
        values.push(this.value());
      }
    }
    this.expect('Punct', ']');
    return { kind: 'list', values };
  }

  private mathExprLiteral(): ValueNode {
    const t = this.peek();
    if (t.type === 'Lowercase') {
      const editor = this.attempt(() => this.call('Lowercase'));
      if (editor) return { kind: 'call', call: editor };
      return { kind: 'path', path: this.path() };
    }
    if (t.type === 'Uppercase') return { kind: 'call', call: this.converter() };
    if (t.type === 'Float') {
      this.pos++;
      return { kind: 'float', value: this.capture(t, () => parseGoFloat(t.text)) };
    }
    if (t.type === 'Int') {
      this.pos++;
      return { kind: 'int', value: this.capture(t, () => parseInt64(t.text)) };
    }
    return this.fail('a path, a converter or a number');
  }

  private path(): PathNode {
    const start = this.peek();
    let context = '';
    if (this.is('Lowercase') && this.peek(1).type === 'Punct' && this.peek(1).text === '.') {
      context = start.text;
      this.pos += 2;
    }
    const fields: FieldNode[] = [this.field()];
    while (this.is('Punct', '.')) {
      this.pos++;
      fields.push(this.field());
    }
    const end = this.toks[this.pos - 1] as Token;
    return { context, fields, offset: start.offset, text: this.src.slice(start.offset, end.offset + end.text.length) };
  }

  private field(): FieldNode {
    const name = this.expect('Lowercase').text;
    return { name, keys: this.keys() };
  }

  private mathExpression(): ValueNode {
    let left = this.addSubTerm();
    while (this.is('OpAddSub')) {
      const op = this.toks[this.pos++]?.text as '+' | '-';
      left = { kind: 'math', op, left, right: this.addSubTerm() };
    }
    return left;
  }

  private addSubTerm(): ValueNode {
    let left = this.mathValue();
    while (this.is('OpMultDiv')) {
      const op = this.toks[this.pos++]?.text as '*' | '/';
      left = { kind: 'math', op, left, right: this.mathValue() };
    }
    return left;
  }

  private mathValue(): ValueNode {
    let unary: string | undefined;
    if (this.is('OpAddSub')) unary = this.toks[this.pos++]?.text;
    let v: ValueNode;
    if (this.is('LParen')) {
      this.pos++;
      v = this.mathExpression();
      this.expect('RParen');
    } else {
      v = this.mathExprLiteral();
    }
    if (unary !== '-') return v;
    // A negative number literal folds into a literal; anything else negates at evaluation.
    if (v.kind === 'int') return { kind: 'int', value: BigInt.asIntN(64, -v.value) };
    if (v.kind === 'float') return { kind: 'float', value: -v.value };
    return { kind: 'neg', value: v };
  }
}

function parseInt64(text: string): bigint {
  const v = BigInt(text);
  if (v > INT64_MAX) throw new Error(`strconv.ParseInt: parsing ${JSON.stringify(text)}: value out of range`);
  return v;
}

function parseGoFloat(text: string): number {
  const v = Number(text.endsWith('.') ? text.slice(0, -1) : text);
  if (!Number.isFinite(v)) throw new Error(`strconv.ParseFloat: parsing ${JSON.stringify(text)}: value out of range`);
  return v;
}

function parseBytes(text: string): Uint8Array {
  const hex = text.slice(2);
  if (hex.length % 2 !== 0) throw new Error(`byte literals must have an even number of hexadecimal digits, but got ${text}`);
  return new Uint8Array(Buffer.from(hex, 'hex'));
}

/** Parses one condition into its syntax tree; throws OttlSyntaxError. Editors are refused as in OTTL. */
export function parseCondition(src: string): BoolNode {
  const node = new Parser(src, tokenize(src)).parseCondition();
  const editors: string[] = [];
  walkCalls(node, (c) => { if (c.editor) editors.push(c.name); });
  if (editors.length > 0) {
    throw new OttlSyntaxError(editors.map((e) => `converter names must start with an uppercase letter but got '${e}'`).join('; '), 0);
  }
  return node;
}

function walkValue(v: ValueNode, f: (c: CallNode) => void, p?: (p: PathNode) => void, e?: (name: string) => void): void {
  switch (v.kind) {
    case 'path':
      p?.(v.path);
      for (const fl of v.path.fields) walkKeys(fl.keys, f, p, e);
      break;
    case 'call':
      f(v.call);
      for (const a of v.call.args) if (a.value) walkValue(a.value, f, p, e);
      walkKeys(v.call.keys, f, p, e);
      break;
    case 'list': for (const x of v.values) walkValue(x, f, p, e); break;
    case 'map': for (const [, x] of v.entries) walkValue(x, f, p, e); break;
    case 'math': walkValue(v.left, f, p, e); walkValue(v.right, f, p, e); break;
    case 'neg': walkValue(v.value, f, p, e); break;
    case 'enum': e?.(v.name); break;
    default:
  }
}

function walkKeys(keys: readonly KeyNode[], f: (c: CallNode) => void, p?: (p: PathNode) => void, e?: (name: string) => void): void {
  for (const k of keys) if (k.kind === 'expr') walkValue(k.value, f, p, e);
}

/** Visits every call, path and enum symbol in a condition. */
export function walkCalls(node: BoolNode, f: (c: CallNode) => void, p?: (p: PathNode) => void, e?: (name: string) => void): void {
  switch (node.kind) {
    case 'or': for (const t of node.terms) walkCalls(t, f, p, e); break;
    case 'and': for (const t of node.values) walkCalls(t, f, p, e); break;
    case 'not': walkCalls(node.value, f, p, e); break;
    case 'compare': walkValue(node.left, f, p, e); walkValue(node.right, f, p, e); break;
    case 'call':
      f(node.call);
      for (const a of node.call.args) if (a.value) walkValue(a.value, f, p, e);
      walkKeys(node.call.keys, f, p, e);
      break;
    default:
  }
}
