// Rewriting an encoded message without decoding it: unchanged runs of fields are copied as views,
// changed fields are re-framed, and nothing is built until the first change. Used where filters
// remove scopes, spans or events (processors/filter/span-rules.ts) and where the scanner drops
// invalid items (scan.ts).

import { RESOURCE_ITEMS } from './fields';
import { WireReader, varintSize, writeVarint } from './wire';

/** Encoded pieces of a message under construction: its content is their concatenation. */
export type Parts = Uint8Array[];

function partsLength(parts: Parts): number {
  let n = 0;
  for (const p of parts) n += p.length;
  return n;
}

/** Appends the length-delimited field `tag` (from fields.ts) holding `content` to `out`. */
function pushFramed(out: Parts, tag: number, content: Parts): void {
  const len = partsLength(content);
  const header = new Uint8Array(varintSize(tag) + varintSize(len));
  writeVarint(header, writeVarint(header, 0, tag), len);
  out.push(header, ...content);
}

/** The pieces as one new buffer. */
export function concatParts(parts: Parts): Buffer {
  const out = Buffer.allocUnsafe(partsLength(parts));
  let pos = 0;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.length;
  }
  return out;
}

/** The content of a message with some of its fields cut or replaced. */
export class Splice {
  parts: Parts | undefined;
  private copyFrom: number;

  constructor(private readonly buf: Uint8Array, start: number) {
    this.copyFrom = start;
  }

  /** Leaves out the field at [fieldStart, fieldEnd). */
  cut(fieldStart: number, fieldEnd: number): void {
    const parts = (this.parts ??= []);
    if (fieldStart > this.copyFrom) parts.push(this.buf.subarray(this.copyFrom, fieldStart));
    this.copyFrom = fieldEnd;
  }

  /** Puts the field `tag` with new content in place of the field at [fieldStart, fieldEnd). */
  replace(fieldStart: number, fieldEnd: number, tag: number, content: Parts): void {
    this.cut(fieldStart, fieldEnd);
    pushFramed(this.parts!, tag, content);
  }

  /** The new content, or undefined when nothing changed. */
  finish(end: number): Parts | undefined {
    if (this.parts && end > this.copyFrom) this.parts.push(this.buf.subarray(this.copyFrom, end));
    return this.parts;
  }
}

/**
 * Rebuilds a ResourceSpans / ResourceMetrics scope by scope: every other field keeps its bytes and
 * place; `rewrite` gets each ScopeSpans / ScopeMetrics content [start, end) of `bytes` and answers
 * null (remove it), undefined (keep its bytes) or its new content (re-framed). The new bytes, or
 * undefined when no scope changed.
 */
export function rewriteScopes(bytes: Uint8Array, rewrite: (start: number, end: number) => Parts | null | undefined): Buffer | undefined {
  const splice = new Splice(bytes, 0);
  const reader = new WireReader(bytes, 0, bytes.length);
  while (!reader.done) {
    const fieldStart = reader.pos;
    const tag = reader.tag();
    if (tag !== RESOURCE_ITEMS.scopes) {
      reader.skip(tag & 7);
      continue;
    }
    const s = reader.lengthDelimited();
    const e = reader.pos;
    const content = rewrite(s, e);
    if (content === null) splice.cut(fieldStart, e);
    else if (content !== undefined) splice.replace(fieldStart, e, RESOURCE_ITEMS.scopes, content);
  }
  const parts = splice.finish(bytes.length);
  return parts ? concatParts(parts) : undefined;
}
