import * as path from 'node:path';
import { promisify } from 'node:util';
import * as zlib from 'node:zlib';
import { compress as snappyBlockCompress } from 'snappyjs';

// The request compressions the Collector's configgrpc / confighttp speak, with one bound for all:
// no decompression produces (or allocates) more than the caller's limit.
//
// - gzip, deflate / zlib (zlib format): node:zlib, bounded by maxOutputLength.
// - zstd: WebAssembly zstd (@bokuweb/zstd-wasm: no native build, installs with npm ci). Its
//   one-shot ZSTD_decompress writes into a buffer of the size it is given, so the frames are walked
//   first (header, block headers): a declared content size above the limit is refused unread, and
//   otherwise the output buffer is the smaller of the limit and what the blocks can produce.
// - snappy: the block format (confighttp's `Content-Encoding: snappy`, remote write) and the framing
//   format (gRPC's `snappy`, confighttp's `x-snappy-framed`, recognised by its stream identifier
//   under `snappy` too, as confighttp does). Decoded here, strictly: snappyjs's decoder does not
//   check its bounds (a crafted literal length sends it backwards through the input).

export type Compression = 'gzip' | 'deflate' | 'zstd' | 'snappy' | 'x-snappy-framed';

/** A body that cannot be decompressed: too large once decompressed (tooLarge) or malformed. */
export class DecompressError extends Error {
  constructor(
    readonly tooLarge: boolean,
    message: string,
  ) {
    super(message);
  }
}

// ---- zstd ---------------------------------------------------------------------------------------

interface ZstdLibrary {
  init(): Promise<void>;
  compress(buf: Uint8Array, level?: number): Uint8Array;
}

/** The Emscripten module under the library: what a bounded decompression needs. */
interface ZstdWasm {
  _malloc(size: number): number;
  _free(pointer: number): void;
  _ZSTD_decompress(dst: number, dstCapacity: number, src: number, srcSize: number): number;
  _ZSTD_isError(code: number): number;
  HEAPU8: Uint8Array;
}

let zstdLoading: Promise<void> | undefined;
let zstdLibrary: ZstdLibrary | undefined;
let zstdWasm: ZstdWasm | undefined;

/**
 * Loads the zstd WebAssembly module (about 60 ms and 7 MiB, once per process). Components call it
 * from start(), so no request waits for it; safe to call any number of times.
 */
export function loadZstd(): Promise<void> {
  zstdLoading ??= (async () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const library = require('@bokuweb/zstd-wasm') as ZstdLibrary;
    await library.init();
    // The package's export map hides its module file; its public decompress cannot be bounded
    // (it trusts the frame's declared size) nor tell a too-small buffer from corrupt data.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const wasm = (require(path.join(path.dirname(require.resolve('@bokuweb/zstd-wasm')), 'module.js')) as { Module: ZstdWasm }).Module;
    if (typeof wasm._ZSTD_decompress !== 'function' || typeof wasm._malloc !== 'function') throw new Error('@bokuweb/zstd-wasm: unexpected module layout');
    zstdLibrary = library;
    zstdWasm = wasm;
  })().catch((err: unknown) => {
    zstdLoading = undefined;
    throw new Error(`cannot load zstd (@bokuweb/zstd-wasm): ${(err as Error).message}`);
  });
  return zstdLoading;
}

export function zstdReady(): boolean {
  return zstdWasm !== undefined;
}

const ZSTD_MAGIC = 0xfd2fb528;
const ZSTD_BLOCK_MAX = 128 * 1024;
/** ZSTD_error_dstSize_tooSmall: the output would not fit the buffer. */
const ZSTD_ERROR_DST_TOO_SMALL = 70;
/** ZSTD_decompress takes sizes as 32-bit signed numbers here (wasm32). */
const ZSTD_MAX_CAPACITY = 2 ** 31 - 1;

/**
 * Walks the frames' headers and block headers: the decompressed size, exact when every frame
 * declares its content size, otherwise an upper bound (a compressed block yields at most 128 KiB).
 */
function zstdExtent(data: Uint8Array): { size: number; exact: boolean } {
  const truncated = () => new DecompressError(false, 'truncated zstd frame');
  const u32 = (at: number) => (data[at]! | (data[at + 1]! << 8) | (data[at + 2]! << 16)) + data[at + 3]! * 2 ** 24;
  let pos = 0;
  let size = 0;
  let exact = true;
  while (pos < data.length) {
    if (data.length - pos < 4) throw truncated();
    const magic = u32(pos);
    if (magic >= 0x184d2a50 && magic <= 0x184d2a5f) {
      // A skippable frame: 4-byte magic, 4-byte length, that many bytes.
      if (data.length - pos < 8) throw truncated();
      pos += 8 + u32(pos + 4);
      if (pos > data.length) throw truncated();
      continue;
    }
    if (magic !== ZSTD_MAGIC) throw new DecompressError(false, `not a zstd frame (magic 0x${magic.toString(16).padStart(8, '0')})`);
    pos += 4;
    if (pos >= data.length) throw truncated();
    const descriptor = data[pos++]!;
    const singleSegment = (descriptor & 0x20) !== 0;
    const sizeFlag = descriptor >> 6;
    if (!singleSegment) pos++;
    pos += [0, 1, 2, 4][descriptor & 3]!;
    const sizeBytes = sizeFlag === 0 ? (singleSegment ? 1 : 0) : [0, 2, 4, 8][sizeFlag]!;
    if (pos + sizeBytes > data.length) throw truncated();
    let declared: number | undefined;
    if (sizeBytes === 1) declared = data[pos]!;
    else if (sizeBytes === 2) declared = (data[pos]! | (data[pos + 1]! << 8)) + 256;
    else if (sizeBytes === 4) declared = u32(pos);
    else if (sizeBytes === 8) declared = u32(pos) + u32(pos + 4) * 2 ** 32;
    pos += sizeBytes;
    let blocks = 0;
    for (let last = false; !last; ) {
      if (pos + 3 > data.length) throw truncated();
      const header = data[pos]! | (data[pos + 1]! << 8) | (data[pos + 2]! << 16);
      pos += 3;
      last = (header & 1) === 1;
      const type = (header >> 1) & 3;
      const blockSize = header >>> 3;
      if (type === 3) throw new DecompressError(false, 'invalid zstd block type');
      pos += type === 1 ? 1 : blockSize;
      blocks += type === 2 ? ZSTD_BLOCK_MAX : blockSize;
      if (pos > data.length) throw truncated();
    }
    if (descriptor & 0x04) pos += 4;
    if (pos > data.length) throw truncated();
    if (declared === undefined) exact = false;
    size += declared ?? blocks;
  }
  return { size, exact };
}

/** Decompresses zstd frames into at most `limit` bytes. loadZstd() must have resolved. */
function zstdDecompress(data: Uint8Array, limit: number): Buffer {
  const wasm = zstdWasm;
  if (!wasm) throw new Error('zstd is not loaded (loadZstd() was not awaited)');
  const extent = zstdExtent(data);
  if (extent.exact && extent.size > limit) throw new DecompressError(true, `decompressed size ${extent.size} exceeds the limit of ${limit} bytes`);
  if (data.length === 0) return Buffer.alloc(0);
  // At least one byte, so that zstd still checks frames that claim to hold nothing.
  const capacity = Math.max(1, Math.min(extent.size, limit, ZSTD_MAX_CAPACITY));
  const src = wasm._malloc(data.length);
  const dst = src === 0 ? 0 : wasm._malloc(capacity);
  try {
    if (src === 0 || dst === 0) throw new DecompressError(true, `cannot allocate ${capacity + data.length} bytes to decompress zstd`);
    wasm.HEAPU8.set(data, src);
    const result = wasm._ZSTD_decompress(dst, capacity, src, data.length);
    if (wasm._ZSTD_isError(result)) {
      const code = -(result | 0);
      if (code === ZSTD_ERROR_DST_TOO_SMALL && !extent.exact && capacity < extent.size) {
        throw new DecompressError(true, `decompressed size exceeds the limit of ${limit} bytes`);
      }
      throw new DecompressError(false, `invalid zstd data (zstd error ${code})`);
    }
    // One copy out of the WebAssembly heap (HEAPU8 is re-read: the heap may have grown).
    return Buffer.from(wasm.HEAPU8.subarray(dst, dst + result));
  } finally {
    if (dst !== 0) wasm._free(dst);
    if (src !== 0) wasm._free(src);
  }
}

// ---- snappy -------------------------------------------------------------------------------------

/** CRC-32C lookup tables for 8 bytes at a time (slicing-by-8): table k is for the byte k places from the end. */
const CRC32C_TABLES = (() => {
  const tables = Array.from({ length: 8 }, () => new Int32Array(256));
  const t0 = tables[0]!;
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t0[n] = c;
  }
  for (let k = 1; k < 8; k++) {
    const prev = tables[k - 1]!;
    const table = tables[k]!;
    for (let n = 0; n < 256; n++) table[n] = (prev[n]! >>> 8) ^ t0[prev[n]! & 0xff]!;
  }
  return tables as [Int32Array, Int32Array, Int32Array, Int32Array, Int32Array, Int32Array, Int32Array, Int32Array];
})();

/** CRC-32C (Castagnoli), masked as the snappy framing format stores it. */
export function snappyChecksum(data: Uint8Array): number {
  const [t0, t1, t2, t3, t4, t5, t6, t7] = CRC32C_TABLES;
  let crc = -1;
  let i = 0;
  for (const end = data.length - 8; i <= end; i += 8) {
    crc ^= data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24);
    crc =
      t7[crc & 0xff]! ^
      t6[(crc >>> 8) & 0xff]! ^
      t5[(crc >>> 16) & 0xff]! ^
      t4[crc >>> 24]! ^
      t3[data[i + 4]!]! ^
      t2[data[i + 5]!]! ^
      t1[data[i + 6]!]! ^
      t0[data[i + 7]!]!;
  }
  for (; i < data.length; i++) crc = t0[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8);
  crc = ~crc >>> 0;
  return ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

/** The decompressed length a snappy block declares (its varint preamble), and the preamble's size. */
function snappyBlockLength(src: Uint8Array): { length: number; skip: number } {
  let length = 0;
  for (let i = 0; i < 5 && i < src.length; i++) {
    const byte = src[i]!;
    length += (byte & 0x7f) * 2 ** (7 * i);
    if (byte < 0x80) {
      if (length > 0xffffffff) break;
      return { length, skip: i + 1 };
    }
  }
  throw new DecompressError(false, 'invalid snappy block: bad length preamble');
}

/** Decodes one snappy block, refusing a declared length above `limit` before allocating. */
function snappyBlockDecode(src: Uint8Array, limit: number): Buffer {
  const corrupt = (why: string) => new DecompressError(false, `invalid snappy block: ${why}`);
  const { length, skip } = snappyBlockLength(src);
  if (length > limit) throw new DecompressError(true, `decompressed size ${length} exceeds the limit of ${limit} bytes`);
  const out = Buffer.allocUnsafe(length);
  const end = src.length;
  let ip = skip;
  let op = 0;
  while (ip < end) {
    const tag = src[ip++]!;
    let len: number;
    let offset: number;
    switch (tag & 3) {
      case 0: {
        len = (tag >>> 2) + 1;
        if (len > 60) {
          const extra = len - 60;
          if (ip + extra > end) throw corrupt('truncated literal length');
          len = 0;
          for (let i = extra - 1; i >= 0; i--) len = len * 256 + src[ip + i]!;
          len += 1;
          ip += extra;
        }
        if (len > end - ip) throw corrupt('literal runs past the input');
        if (len > length - op) throw corrupt('output longer than declared');
        out.set(src.subarray(ip, ip + len), op);
        ip += len;
        op += len;
        continue;
      }
      case 1:
        if (ip + 1 > end) throw corrupt('truncated copy');
        len = ((tag >>> 2) & 7) + 4;
        offset = ((tag >>> 5) << 8) | src[ip]!;
        ip += 1;
        break;
      case 2:
        if (ip + 2 > end) throw corrupt('truncated copy');
        len = (tag >>> 2) + 1;
        offset = src[ip]! | (src[ip + 1]! << 8);
        ip += 2;
        break;
      default:
        if (ip + 4 > end) throw corrupt('truncated copy');
        len = (tag >>> 2) + 1;
        offset = (src[ip]! | (src[ip + 1]! << 8) | (src[ip + 2]! << 16)) + src[ip + 3]! * 2 ** 24;
        ip += 4;
    }
    if (offset === 0 || offset > op) throw corrupt('copy from before the start');
    if (len > length - op) throw corrupt('output longer than declared');
    if (offset >= len) {
      out.copyWithin(op, op - offset, op - offset + len);
      op += len;
    } else {
      // Overlapping copy: a run, byte by byte.
      for (let i = 0; i < len; i++, op++) out[op] = out[op - offset]!;
    }
  }
  if (op !== length) throw corrupt(`${op} bytes decoded, ${length} declared`);
  return out;
}

const SNAPPY_STREAM_IDENTIFIER = Buffer.from([0xff, 0x06, 0x00, 0x00, 0x73, 0x4e, 0x61, 0x50, 0x70, 0x59]);
/** A framed chunk holds at most this much uncompressed data. */
const SNAPPY_FRAME_MAX = 65536;

function isSnappyFramed(data: Uint8Array): boolean {
  if (data.length < SNAPPY_STREAM_IDENTIFIER.length) return false;
  for (let i = 0; i < SNAPPY_STREAM_IDENTIFIER.length; i++) if (data[i] !== SNAPPY_STREAM_IDENTIFIER[i]) return false;
  return true;
}

/** Decodes a snappy framing-format stream into at most `limit` bytes, checksums checked. */
function snappyFramedDecode(src: Uint8Array, limit: number): Buffer {
  const corrupt = (why: string) => new DecompressError(false, `invalid snappy stream: ${why}`);
  if (!isSnappyFramed(src)) throw corrupt('no stream identifier');
  const parts: Uint8Array[] = [];
  let total = 0;
  let pos = 0;
  while (pos < src.length) {
    if (pos + 4 > src.length) throw corrupt('truncated chunk header');
    const type = src[pos]!;
    const size = src[pos + 1]! | (src[pos + 2]! << 8) | (src[pos + 3]! << 16);
    pos += 4;
    if (pos + size > src.length) throw corrupt('truncated chunk');
    const body = src.subarray(pos, pos + size);
    pos += size;
    if (type === 0xff) {
      if (!isSnappyFramed(src.subarray(pos - size - 4, pos))) throw corrupt('bad stream identifier');
      continue;
    }
    if (type === 0x00 || type === 0x01) {
      if (size < 4) throw corrupt('chunk too short for its checksum');
      const expected = (body[0]! | (body[1]! << 8) | (body[2]! << 16)) + body[3]! * 2 ** 24;
      const payload = body.subarray(4);
      const declared = type === 0x00 ? snappyBlockLength(payload).length : payload.length;
      if (declared > SNAPPY_FRAME_MAX) throw corrupt(`chunk of ${declared} bytes (at most ${SNAPPY_FRAME_MAX})`);
      if (total + declared > limit) throw new DecompressError(true, `decompressed size exceeds the limit of ${limit} bytes`);
      const data = type === 0x00 ? snappyBlockDecode(payload, SNAPPY_FRAME_MAX) : payload;
      if (snappyChecksum(data) !== expected) throw corrupt('checksum mismatch');
      parts.push(data);
      total += data.length;
      continue;
    }
    // 0x80-0xfe: skippable (0xfe is padding); 0x02-0x7f: reserved, must not be skipped.
    if (type < 0x80) throw corrupt(`reserved chunk type 0x${type.toString(16)}`);
  }
  return Buffer.concat(parts, total);
}

/** The snappy framing format: stream identifier, then checksummed chunks of at most 64 KiB. */
function snappyFramedEncode(data: Uint8Array): Buffer {
  const parts: Uint8Array[] = [SNAPPY_STREAM_IDENTIFIER];
  let size = SNAPPY_STREAM_IDENTIFIER.length;
  for (let at = 0; at < data.length; at += SNAPPY_FRAME_MAX) {
    const chunk = data.subarray(at, Math.min(data.length, at + SNAPPY_FRAME_MAX));
    const compressed = snappyBlockCompress(chunk);
    // As Go's writer: stored as is unless compression saves at least an eighth.
    const stored = compressed.length >= chunk.length - (chunk.length >> 3);
    const payload = stored ? chunk : compressed;
    const header = Buffer.allocUnsafe(8);
    header[0] = stored ? 0x01 : 0x00;
    header.writeUIntLE(payload.length + 4, 1, 3);
    header.writeUInt32LE(snappyChecksum(chunk), 4);
    parts.push(header, payload);
    size += 8 + payload.length;
  }
  return Buffer.concat(parts, size);
}

// ---- the interface ------------------------------------------------------------------------------

/**
 * Decompresses a request body or message into at most `limit` bytes. `snappy` takes the block
 * format or, recognised by its stream identifier, the framing format. zstd needs loadZstd() first.
 * Throws DecompressError (tooLarge, or malformed with a message saying what is wrong).
 */
export async function decompress(compression: Compression, data: Uint8Array, limit: number): Promise<Buffer> {
  if (compression !== 'gzip' && compression !== 'deflate') return decompressOther(compression, data, limit);
  try {
    const options = { maxOutputLength: Math.max(1, limit) };
    // Not the *Sync forms: on Node 20 they keep ~16 KB of native memory per invalid body (30,000
    // bad bodies: 490 MB, found by the decompress fuzz target); this also runs off the event loop.
    return await inflateAsync(compression === 'gzip' ? zlib.gunzip : zlib.inflate, data, options);
  } catch (err) {
    throw zlibError(compression, err, limit);
  }
}

/**
 * decompress() on the calling thread, with zlib's *Sync forms, which on Node 20 keep ~16 KB of
 * native memory per invalid gzip/deflate input: for tests and small trusted inputs, never for
 * what a client sends.
 */
export function decompressSync(compression: Compression, data: Uint8Array, limit: number): Buffer {
  if (compression !== 'gzip' && compression !== 'deflate') return decompressOther(compression, data, limit);
  try {
    const options = { maxOutputLength: Math.max(1, limit) };
    return compression === 'gzip' ? zlib.gunzipSync(data, options) : zlib.inflateSync(data, options);
  } catch (err) {
    throw zlibError(compression, err, limit);
  }
}

function decompressOther(compression: 'zstd' | 'snappy' | 'x-snappy-framed', data: Uint8Array, limit: number): Buffer {
  switch (compression) {
    case 'zstd':
      return zstdDecompress(data, limit);
    case 'snappy':
      return isSnappyFramed(data) ? snappyFramedDecode(data, limit) : snappyBlockDecode(data, limit);
    case 'x-snappy-framed':
      return snappyFramedDecode(data, limit);
  }
}

function zlibError(compression: Compression, err: unknown, limit: number): DecompressError {
  const tooLarge = (err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE' || (err as Error).message.includes('Cannot create a Buffer larger');
  if (tooLarge) return new DecompressError(true, `decompressed size exceeds the limit of ${limit} bytes`);
  return new DecompressError(false, `invalid ${compression} data: ${(err as Error).message}`);
}

/** zlib's callback form as a promise. */
function inflateAsync(
  inflate: (buf: Uint8Array, options: zlib.ZlibOptions, callback: (err: Error | null, out: Buffer) => void) => void,
  data: Uint8Array,
  options: zlib.ZlibOptions,
): Promise<Buffer> {
  return new Promise((resolve, reject) => inflate(data, options, (err, out) => (err ? reject(err) : resolve(out))));
}

const gzipAsync = promisify(zlib.gzip);
const deflateAsync = promisify(zlib.deflate);

/** Defaults when no level is given: zlib's default; zstd level 3 (the zstd library's default). */
export const ZSTD_DEFAULT_LEVEL = 3;

/**
 * Compresses a request body. gzip and deflate run on libuv's thread pool; zstd (WebAssembly,
 * loadZstd() first) and snappy run on the calling thread. `snappy` is the block format,
 * `x-snappy-framed` the framing format (gRPC's snappy codec writes the latter).
 */
export async function compress(compression: Compression, data: Uint8Array, level?: number): Promise<Buffer> {
  switch (compression) {
    case 'gzip':
      return gzipAsync(data, level === undefined ? {} : { level });
    case 'deflate':
      return deflateAsync(data, level === undefined ? {} : { level });
    default:
      return compressSync(compression, data, level);
  }
}

/** As compress(), on the calling thread (gzip and deflate too). zstd needs loadZstd() first. */
export function compressSync(compression: Compression, data: Uint8Array, level?: number): Buffer {
  switch (compression) {
    case 'gzip':
      return zlib.gzipSync(data, level === undefined ? {} : { level });
    case 'deflate':
      return zlib.deflateSync(data, level === undefined ? {} : { level });
    case 'zstd': {
      const library = zstdLibrary;
      if (!library) throw new Error('zstd is not loaded (loadZstd() was not awaited)');
      const out = library.compress(data, level ?? ZSTD_DEFAULT_LEVEL);
      return Buffer.from(out.buffer, out.byteOffset, out.byteLength);
    }
    case 'snappy': {
      const out = snappyBlockCompress(data);
      return Buffer.from(out.buffer, out.byteOffset, out.byteLength);
    }
    case 'x-snappy-framed':
      return snappyFramedEncode(data);
  }
}
