// HTTP/1.1 request heads (RFC 9112) and chunked bodies, parsed from a socket's bytes. Strict: what
// Node's llhttp refuses is refused here too (400, 431 past 16 KiB of head), never thrown out.

/** Node's default --max-http-header-size: request line and header fields together. */
export const MAX_HEAD_BYTES = 16 * 1024;
/** A chunked body's trailer section (read and dropped) may be at most this long. */
const MAX_TRAILER_BYTES = 16 * 1024;

/** A request the connection cannot go on with: answered with `status`, then closed. */
export class HttpParseError {
  constructor(
    readonly status: 400 | 408 | 417 | 431,
    readonly message: string,
  ) {}
}

export interface RequestHead {
  readonly method: string;
  /** The request target as sent (origin-form for a POST: path and query). */
  readonly target: string;
  /** 0 for HTTP/1.0, 1 for HTTP/1.1. */
  readonly minor: number;
  /** Name (lower case), value (OWS trimmed), name, value, … in the order received. */
  readonly headers: readonly string[];
  /** -1: no Content-Length. */
  readonly contentLength: number;
  readonly chunked: boolean;
  /** The connection may take another request after this one's answer. */
  readonly keepAlive: boolean;
  readonly expectContinue: boolean;
}

/** The first value of header `name` (lower case), as Node keeps one for the single-valued ones. */
export function headerValue(head: RequestHead, name: string): string | undefined {
  const h = head.headers;
  for (let i = 0; i < h.length; i += 2) if (h[i] === name) return h[i + 1];
  return undefined;
}

/** Headers Node keeps the first of (IncomingMessage's rule); others are joined with ", " ("; " for cookie). */
const FIRST_WINS = new Set([
  'age', 'authorization', 'content-length', 'content-type', 'etag', 'expires', 'from', 'host', 'if-modified-since',
  'if-unmodified-since', 'last-modified', 'location', 'max-forwards', 'proxy-authorization', 'referer', 'retry-after', 'server', 'user-agent',
]);

/** The headers as node:http's `req.headers` (for code written against it, such as authenticators). */
export function headerRecord(head: RequestHead): Record<string, string> {
  const out: Record<string, string> = Object.create(null) as Record<string, string>;
  const h = head.headers;
  for (let i = 0; i < h.length; i += 2) {
    const name = h[i]!;
    const value = h[i + 1]!;
    const prior = out[name];
    if (prior === undefined) out[name] = value;
    else if (!FIRST_WINS.has(name)) out[name] = `${prior}${name === 'cookie' ? '; ' : ', '}${value}`;
  }
  return out;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const REQUEST_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([\x21-\x7e\x80-\xff]+) HTTP\/1\.([01])$/;
/** Field values: visible characters, spaces, tabs and obs-text; never CR, LF, NUL or other controls. */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const BAD_VALUE = /[\x00-\x08\x0a-\x1f\x7f]/;
const DIGITS = /^[0-9]+$/;

const CR = 13;
const LF = 10;

/**
 * The index just past the end of a request head (its empty line) in `buf[from, end)`, -1 when it
 * is not all there yet. `from` may be the previous call's `end` less 3, to scan only what is new.
 */
export function findHeadEnd(buf: Uint8Array, from: number, end: number): number {
  for (let i = buf.indexOf(LF, Math.max(0, from)); i !== -1 && i < end; i = buf.indexOf(LF, i + 1)) {
    // "\r\n\r\n" ending at i.
    if (i >= 3 && buf[i - 1] === CR && buf[i - 2] === LF && buf[i - 3] === CR) return i + 1;
  }
  return -1;
}

/** Empty lines before a request line are skipped (RFC 9112 2.2): how many bytes of them lead `buf`. */
export function leadingEmptyLines(buf: Uint8Array, start: number, end: number): number {
  let i = start;
  while (i + 1 < end && buf[i] === CR && buf[i + 1] === LF) i += 2;
  return i - start;
}

/** Parses the head in `buf[start, headEnd)` (headEnd from findHeadEnd, leading empty lines skipped). */
export function parseHead(buf: Buffer, start: number, headEnd: number): RequestHead | HttpParseError {
  if (headEnd - start > MAX_HEAD_BYTES) return new HttpParseError(431, 'request header fields too large');
  const lines = buf.toString('latin1', start, headEnd - 4).split('\r\n');
  const requestLine = REQUEST_LINE.exec(lines[0]!);
  if (!requestLine) return new HttpParseError(400, `malformed request line ${JSON.stringify(lines[0]!.slice(0, 100))}`);
  const minor = requestLine[3] === '1' ? 1 : 0;
  const headers: string[] = [];
  let contentLength = -1;
  let transferEncoding: string | undefined;
  let connection: string | undefined;
  let expect: string | undefined;
  let host = false;
  for (let n = 1; n < lines.length; n++) {
    const line = lines[n]!;
    const colon = line.indexOf(':');
    // No colon, an empty name, whitespace before the colon or a folded line (RFC 9112 5.1, 5.2).
    if (colon <= 0) return new HttpParseError(400, `malformed header line ${JSON.stringify(line.slice(0, 100))}`);
    const rawName = line.slice(0, colon);
    if (!TOKEN.test(rawName)) return new HttpParseError(400, `malformed header name ${JSON.stringify(rawName.slice(0, 100))}`);
    const value = trimOws(line, colon + 1);
    if (BAD_VALUE.test(value)) return new HttpParseError(400, `invalid character in header ${rawName}`);
    const name = rawName.toLowerCase();
    headers.push(name, value);
    switch (name) {
      case 'content-length': {
        if (!DIGITS.test(value) || value.length > 15) return new HttpParseError(400, `invalid Content-Length ${JSON.stringify(value.slice(0, 100))}`);
        const length = Number(value);
        if (contentLength !== -1 && contentLength !== length) return new HttpParseError(400, 'conflicting Content-Length headers');
        contentLength = length;
        break;
      }
      case 'transfer-encoding':
        transferEncoding = transferEncoding === undefined ? value : `${transferEncoding}, ${value}`;
        break;
      case 'connection':
        connection = connection === undefined ? value : `${connection}, ${value}`;
        break;
      case 'expect':
        expect = value;
        break;
      case 'host':
        if (host) return new HttpParseError(400, 'more than one Host header');
        host = true;
        break;
    }
  }
  if (minor === 1 && !host) return new HttpParseError(400, 'missing Host header');
  let chunked = false;
  if (transferEncoding !== undefined) {
    // A request with both is a smuggling attempt as often as not (RFC 9112 6.3): refused, as llhttp does.
    if (contentLength !== -1) return new HttpParseError(400, 'both Content-Length and Transfer-Encoding');
    if (transferEncoding.trim().toLowerCase() !== 'chunked' || minor === 0) {
      return new HttpParseError(400, `unsupported Transfer-Encoding ${JSON.stringify(transferEncoding.slice(0, 100))}; only chunked is accepted`);
    }
    chunked = true;
  }
  let keepAlive = minor === 1;
  if (connection !== undefined) {
    for (const option of connection.toLowerCase().split(',')) {
      const token = option.trim();
      if (token === 'close') {
        keepAlive = false;
        break;
      }
      if (token === 'keep-alive') keepAlive = true;
    }
  }
  let expectContinue = false;
  if (expect !== undefined) {
    if (expect.toLowerCase() !== '100-continue') return new HttpParseError(417, `unsupported Expect ${JSON.stringify(expect.slice(0, 100))}`);
    // An HTTP/1.0 client does not wait for 100 Continue (RFC 9110 10.1.1): nothing to answer.
    expectContinue = minor === 1;
  }
  return { method: requestLine[1]!, target: requestLine[2]!, minor, headers, contentLength, chunked, keepAlive, expectContinue };
}

function trimOws(line: string, from: number): string {
  let start = from;
  let end = line.length;
  while (start < end && (line.charCodeAt(start) === 32 || line.charCodeAt(start) === 9)) start++;
  while (end > start && (line.charCodeAt(end - 1) === 32 || line.charCodeAt(end - 1) === 9)) end--;
  return line.slice(start, end);
}

const enum Chunk {
  Size,
  Extension,
  SizeLf,
  Data,
  DataCr,
  DataLf,
  TrailerStart,
  TrailerLine,
  TrailerLf,
  FinalLf,
  Done,
}

/** A chunked body (RFC 9112 7.1) fed in pieces; chunk data is handed on as views of the input. */
export class ChunkedDecoder {
  private state = Chunk.Size;
  private size = 0;
  private digits = 0;
  private remaining = 0;
  private trailerBytes = 0;

  constructor(private readonly onData: (data: Buffer) => void) {}

  get done(): boolean {
    return this.state === Chunk.Done;
  }

  /**
   * Decodes `buf[start, end)`: returns the index just past the body's end once it is complete
   * (the rest belongs to the next request), `end` when all was taken and more is needed, or an
   * error. onData may be called before an error is found later in the same input.
   */
  feed(buf: Buffer, start: number, end: number): number | HttpParseError {
    let i = start;
    while (i < end) {
      switch (this.state) {
        case Chunk.Size: {
          const c = buf[i++]!;
          const digit = hexValue(c);
          if (digit >= 0) {
            // 13 hex digits reach 2^52: far past any body accepted, and still an exact number.
            if (++this.digits > 13) return new HttpParseError(400, 'chunk size too large');
            this.size = this.size * 16 + digit;
          } else if (this.digits === 0) {
            return new HttpParseError(400, 'malformed chunk size');
          } else if (c === CR) {
            this.state = Chunk.SizeLf;
          } else if (c === 0x3b /* ; */ || c === 32 || c === 9) {
            this.state = Chunk.Extension;
          } else {
            return new HttpParseError(400, 'malformed chunk size');
          }
          break;
        }
        case Chunk.Extension: {
          // Chunk extensions are ignored; their length counts against the trailer allowance.
          const c = buf[i++]!;
          if (c === CR) this.state = Chunk.SizeLf;
          else if (c === LF || ++this.trailerBytes > MAX_TRAILER_BYTES) return new HttpParseError(400, 'malformed chunk extension');
          break;
        }
        case Chunk.SizeLf:
          if (buf[i++] !== LF) return new HttpParseError(400, 'malformed chunk size line');
          if (this.size === 0) {
            this.state = Chunk.TrailerStart;
          } else {
            this.remaining = this.size;
            this.state = Chunk.Data;
          }
          this.size = 0;
          this.digits = 0;
          break;
        case Chunk.Data: {
          const take = Math.min(this.remaining, end - i);
          this.onData(buf.subarray(i, i + take));
          i += take;
          this.remaining -= take;
          if (this.remaining === 0) this.state = Chunk.DataCr;
          break;
        }
        case Chunk.DataCr:
          if (buf[i++] !== CR) return new HttpParseError(400, 'chunk data longer than its size');
          this.state = Chunk.DataLf;
          break;
        case Chunk.DataLf:
          if (buf[i++] !== LF) return new HttpParseError(400, 'chunk data longer than its size');
          this.state = Chunk.Size;
          break;
        case Chunk.TrailerStart: {
          const c = buf[i++]!;
          if (c === CR) this.state = Chunk.FinalLf;
          else if (c === LF) return new HttpParseError(400, 'malformed trailer section');
          else this.state = Chunk.TrailerLine;
          if (++this.trailerBytes > MAX_TRAILER_BYTES) return new HttpParseError(400, 'trailer section too large');
          break;
        }
        case Chunk.TrailerLine: {
          const c = buf[i++]!;
          if (c === CR) this.state = Chunk.TrailerLf;
          else if (c === LF) return new HttpParseError(400, 'malformed trailer section');
          if (++this.trailerBytes > MAX_TRAILER_BYTES) return new HttpParseError(400, 'trailer section too large');
          break;
        }
        case Chunk.TrailerLf:
          if (buf[i++] !== LF) return new HttpParseError(400, 'malformed trailer section');
          this.state = Chunk.TrailerStart;
          break;
        case Chunk.FinalLf:
          if (buf[i++] !== LF) return new HttpParseError(400, 'malformed end of chunked body');
          this.state = Chunk.Done;
          return i;
        case Chunk.Done:
          return i;
      }
    }
    return end;
  }
}

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}
