import { HUFFMAN_CODES, HUFFMAN_LENGTHS } from './huffman-table';

// HPACK (RFC 7541): the decoder a server needs for request headers (static and dynamic table,
// Huffman strings, size updates, eviction) and a small encoder for responses (static-indexed or
// literal without indexing, so the peer's table size never matters to us).

/** A malformed header block: the connection must end with COMPRESSION_ERROR (RFC 9113 4.3). */
export class HpackError extends Error {}

/** RFC 7541 Appendix A. Index 1 is STATIC_TABLE[0]. */
export const STATIC_TABLE: readonly (readonly [string, string])[] = [
  [':authority', ''], [':method', 'GET'], [':method', 'POST'], [':path', '/'], [':path', '/index.html'],
  [':scheme', 'http'], [':scheme', 'https'], [':status', '200'], [':status', '204'], [':status', '206'],
  [':status', '304'], [':status', '400'], [':status', '404'], [':status', '500'], ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'], ['accept-language', ''], ['accept-ranges', ''], ['accept', ''],
  ['access-control-allow-origin', ''], ['age', ''], ['allow', ''], ['authorization', ''], ['cache-control', ''],
  ['content-disposition', ''], ['content-encoding', ''], ['content-language', ''], ['content-length', ''],
  ['content-location', ''], ['content-range', ''], ['content-type', ''], ['cookie', ''], ['date', ''],
  ['etag', ''], ['expect', ''], ['expires', ''], ['from', ''], ['host', ''], ['if-match', ''],
  ['if-modified-since', ''], ['if-none-match', ''], ['if-range', ''], ['if-unmodified-since', ''],
  ['last-modified', ''], ['link', ''], ['location', ''], ['max-forwards', ''], ['proxy-authenticate', ''],
  ['proxy-authorization', ''], ['range', ''], ['referer', ''], ['refresh', ''], ['retry-after', ''],
  ['server', ''], ['set-cookie', ''], ['strict-transport-security', ''], ['transfer-encoding', ''],
  ['user-agent', ''], ['vary', ''], ['via', ''], ['www-authenticate', ''],
];

/** RFC 7541 4.1: an entry's size is its name and value octets plus 32. */
export const ENTRY_OVERHEAD = 32;

// The Huffman code as a binary trie: node n's children at [2n] (bit 0) and [2n+1] (bit 1); a
// negative child is a leaf holding -(symbol + 1). Symbol 256 is EOS.
const TRIE = buildTrie();

function buildTrie(): Int32Array {
  const trie = new Int32Array(2 * 512);
  let nodes = 1;
  const add = (symbol: number, code: number, length: number) => {
    let node = 0;
    for (let bit = length - 1; bit >= 0; bit--) {
      const slot = 2 * node + ((code >>> bit) & 1);
      if (bit === 0) {
        trie[slot] = -(symbol + 1);
      } else {
        if (trie[slot] === 0) trie[slot] = nodes++;
        node = trie[slot]!;
      }
    }
  };
  for (let s = 0; s < 256; s++) add(s, HUFFMAN_CODES[s]!, HUFFMAN_LENGTHS[s]!);
  add(256, 0x3fffffff, 30);
  return trie;
}

/** RFC 7541 5.2: decode a Huffman string; EOS inside it, or padding that is long or not all ones, is an error. */
export function huffmanDecode(input: Buffer, start: number, end: number): Buffer {
  // Each symbol takes at least 5 bits.
  const out = Buffer.allocUnsafe(Math.ceil(((end - start) * 8) / 5));
  let length = 0;
  let node = 0;
  let pending = 0; // bits read since the last symbol
  let allOnes = true;
  for (let i = start; i < end; i++) {
    const byte = input[i]!;
    for (let bit = 7; bit >= 0; bit--) {
      const b = (byte >>> bit) & 1;
      const next = TRIE[2 * node + b]!;
      if (next < 0) {
        const symbol = -next - 1;
        if (symbol === 256) throw new HpackError('EOS in a Huffman string');
        out[length++] = symbol;
        node = 0;
        pending = 0;
        allOnes = true;
      } else {
        node = next;
        pending++;
        if (b === 0) allOnes = false;
      }
    }
  }
  if (pending > 7 || !allOnes) throw new HpackError('bad Huffman padding');
  return out.subarray(0, length);
}

/** Huffman-encodes octets (the encoder here does not need it; tests and a future client may). */
export function huffmanEncode(input: Buffer): Buffer {
  let bits = 0;
  for (const b of input) bits += HUFFMAN_LENGTHS[b]!;
  const out = Buffer.alloc(Math.ceil(bits / 8));
  let acc = 0; // up to 7 leftover bits + a 30-bit code: kept below 2^53 as a float-safe integer
  let accBits = 0;
  let o = 0;
  for (const b of input) {
    acc = acc * 2 ** HUFFMAN_LENGTHS[b]! + HUFFMAN_CODES[b]!;
    accBits += HUFFMAN_LENGTHS[b]!;
    while (accBits >= 8) {
      accBits -= 8;
      out[o++] = Math.floor(acc / 2 ** accBits) & 0xff;
      acc %= 2 ** accBits;
    }
  }
  if (accBits > 0) out[o] = ((acc << (8 - accBits)) | ((1 << (8 - accBits)) - 1)) & 0xff;
  return out;
}

/** Appends an HPACK integer with an N-bit prefix; `first` holds the bits above the prefix. */
export function encodeInteger(out: number[], value: number, prefixBits: number, first: number): void {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    out.push(first | value);
    return;
  }
  out.push(first | max);
  value -= max;
  while (value >= 128) {
    out.push((value % 128) + 128);
    value = Math.floor(value / 128);
  }
  out.push(value);
}

export interface HpackDecoderOptions {
  /** Our SETTINGS_HEADER_TABLE_SIZE: the most the peer may size its table to. Default 4096. */
  readonly maxTableSize?: number;
}

/**
 * One connection's request-header decoder. `decode` returns the header list as a flat array
 * [name0, value0, name1, value1, ...]; names and values are latin1 strings (octets as they came).
 * Throws HpackError on anything malformed; the caller ends the connection, as the table is then
 * out of step with the peer's.
 */
export class HpackDecoder {
  private readonly settingsMax: number;
  private maxSize: number;
  private size = 0;
  // The dynamic table, newest last: dynamic index 1 is the last element.
  private names: string[] = [];
  private values: string[] = [];
  private evicted = 0; // entries at the front of names/values that are gone (trimmed in batches)

  constructor(options: HpackDecoderOptions = {}) {
    this.settingsMax = options.maxTableSize ?? 4096;
    this.maxSize = this.settingsMax;
  }

  /** The dynamic table's size in octets (RFC 7541 4.1), for tests. */
  get tableSize(): number {
    return this.size;
  }

  /** The dynamic table, newest first, for tests. */
  get table(): [string, string][] {
    const out: [string, string][] = [];
    for (let i = this.names.length - 1; i >= this.evicted; i--) out.push([this.names[i]!, this.values[i]!]);
    return out;
  }

  decode(block: Buffer): string[] {
    const out: string[] = [];
    let p = 0;
    const end = block.length;
    let fieldSeen = false;
    // decodeInteger/decodeString share these through closures to return two values without objects.
    let pos = 0;
    const integer = (prefixBits: number): number => {
      const max = (1 << prefixBits) - 1;
      let value = block[pos++]! & max;
      if (value < max) return value;
      let shift = 1;
      for (;;) {
        if (pos >= end) throw new HpackError('truncated integer');
        const b = block[pos++]!;
        value += (b & 0x7f) * shift;
        if (value > 0x7fffffff) throw new HpackError('integer too large');
        if ((b & 0x80) === 0) return value;
        shift *= 128;
      }
    };
    const string = (): string => {
      if (pos >= end) throw new HpackError('truncated string');
      const huffman = (block[pos]! & 0x80) !== 0;
      const length = integer(7);
      if (pos + length > end) throw new HpackError('truncated string');
      const s = huffman ? huffmanDecode(block, pos, pos + length).toString('latin1') : block.toString('latin1', pos, pos + length);
      pos += length;
      return s;
    };
    while (p < end) {
      const b = block[p]!;
      pos = p;
      if (b & 0x80) {
        // 6.1 indexed field
        const index = integer(7);
        if (index === 0) throw new HpackError('index 0');
        this.push(out, index);
        fieldSeen = true;
      } else if (b & 0x40) {
        // 6.2.1 literal with incremental indexing
        const index = integer(6);
        const name = index === 0 ? string() : this.nameAt(index);
        const value = string();
        out.push(name, value);
        this.add(name, value);
        fieldSeen = true;
      } else if (b & 0x20) {
        // 6.3 dynamic table size update: only at the start of a block (4.2)
        if (fieldSeen) throw new HpackError('table size update after a field');
        const size = integer(5);
        if (size > this.settingsMax) throw new HpackError('table size update above the limit');
        this.maxSize = size;
        this.evict(0);
      } else {
        // 6.2.2 without indexing (0000), 6.2.3 never indexed (0001): both 4-bit prefixes
        const index = integer(4);
        const name = index === 0 ? string() : this.nameAt(index);
        out.push(name, string());
        fieldSeen = true;
      }
      p = pos;
    }
    return out;
  }

  private push(out: string[], index: number): void {
    if (index <= STATIC_TABLE.length) {
      const entry = STATIC_TABLE[index - 1]!;
      out.push(entry[0], entry[1]);
      return;
    }
    const i = this.names.length - (index - STATIC_TABLE.length);
    if (i < this.evicted) throw new HpackError(`index ${index} beyond the table`);
    out.push(this.names[i]!, this.values[i]!);
  }

  private nameAt(index: number): string {
    if (index <= STATIC_TABLE.length) return STATIC_TABLE[index - 1]![0];
    const i = this.names.length - (index - STATIC_TABLE.length);
    if (i < this.evicted) throw new HpackError(`index ${index} beyond the table`);
    return this.names[i]!;
  }

  private add(name: string, value: string): void {
    // Octet lengths: the strings are latin1, one octet per character.
    const entrySize = name.length + value.length + ENTRY_OVERHEAD;
    // 4.4: an entry larger than the table empties it and is not added.
    this.evict(entrySize);
    if (entrySize > this.maxSize) return;
    this.names.push(name);
    this.values.push(value);
    this.size += entrySize;
  }

  /** Evicts oldest entries until `room` more octets fit. */
  private evict(room: number): void {
    while (this.size + room > this.maxSize && this.evicted < this.names.length) {
      this.size -= this.names[this.evicted]!.length + this.values[this.evicted]!.length + ENTRY_OVERHEAD;
      this.evicted++;
    }
    // Trim the evicted front now and then, not on every eviction.
    if (this.evicted > 64 && this.evicted * 2 > this.names.length) {
      this.names = this.names.slice(this.evicted);
      this.values = this.values.slice(this.evicted);
      this.evicted = 0;
    }
  }
}

const STATIC_FULL = new Map<string, number>();
const STATIC_NAME = new Map<string, number>();
STATIC_TABLE.forEach(([name, value], i) => {
  if (!STATIC_FULL.has(`${name}\0${value}`)) STATIC_FULL.set(`${name}\0${value}`, i + 1);
  if (!STATIC_NAME.has(name)) STATIC_NAME.set(name, i + 1);
});

/**
 * Encodes a header list without touching the dynamic table: a full static match as an indexed
 * field, anything else as a literal without indexing (with a static name index when there is
 * one). Names must be lowercase; names and values are written as latin1 octets.
 */
export function encodeHeaders(fields: readonly (readonly [string, string])[]): Buffer {
  const out: number[] = [];
  for (const [name, value] of fields) {
    const full = STATIC_FULL.get(`${name}\0${value}`);
    if (full !== undefined) {
      encodeInteger(out, full, 7, 0x80);
      continue;
    }
    const nameIndex = STATIC_NAME.get(name);
    if (nameIndex !== undefined) {
      encodeInteger(out, nameIndex, 4, 0x00);
    } else {
      out.push(0x00);
      encodeInteger(out, name.length, 7, 0x00);
      for (let i = 0; i < name.length; i++) out.push(name.charCodeAt(i) & 0xff);
    }
    encodeInteger(out, value.length, 7, 0x00);
    for (let i = 0; i < value.length; i++) out.push(value.charCodeAt(i) & 0xff);
  }
  return Buffer.from(out);
}
