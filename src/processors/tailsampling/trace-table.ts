// The processor's traces by id: an open-addressing hash table keyed by the 16 trace id bytes, read
// straight from the received bytes. A JS Map keyed by a latin1 string per span cost a string per
// span, its hash, and 3-4 cache misses per lookup in a table of num_traces entries (the largest
// single cost of the server under the tail-sampling bench); here a lookup hashes four words and
// reads one slot's key (16 bytes in a typed array, off the GC heap). Linear probing, deletions
// shift the following entries back (no tombstones), so a slot number is valid only until the next
// insert or delete.

const MIN_CAPACITY = 1024;
/** The most slots allocated up front (12.5 MiB with the values); past it the table grows as it fills. */
const MAX_PRESIZED = 1 << 19;

export class TraceTable<T> {
  /** 4 words of id per slot. */
  private keys: Int32Array;
  private used: Uint8Array;
  private values: (T | undefined)[];
  private mask: number;
  private count = 0;
  // The key being looked up.
  private k0 = 0;
  private k1 = 0;
  private k2 = 0;
  private k3 = 0;

  /** `expected`: the entries it will likely hold (num_traces): slots for them at half load are made now, up to MAX_PRESIZED, instead of rehashing as it fills. */
  constructor(expected = 0) {
    let capacity = MIN_CAPACITY;
    while (capacity < expected * 2 && capacity < MAX_PRESIZED) capacity *= 2;
    this.keys = new Int32Array(4 * capacity);
    this.used = new Uint8Array(capacity);
    this.values = new Array<T | undefined>(capacity).fill(undefined);
    this.mask = capacity - 1;
  }

  get size(): number {
    return this.count;
  }

  /** Slot of the id at buf[at..at+16), or -1. */
  find(buf: Uint8Array, at: number): number {
    this.loadBytes(buf, at);
    return this.probe();
  }

  /** Slot of the id given as a trace key (one character per byte), or -1. */
  findKey(key: string): number {
    this.loadKey(key);
    return this.probe();
  }

  /** Adds an id not in the table; returns its slot. */
  insert(buf: Uint8Array, at: number, value: T): number {
    this.grow();
    this.loadBytes(buf, at);
    return this.place(value);
  }

  insertKey(key: string, value: T): number {
    this.grow();
    this.loadKey(key);
    return this.place(value);
  }

  get(slot: number): T {
    return this.values[slot]!;
  }

  set(slot: number, value: T): void {
    this.values[slot] = value;
  }

  /** Removes the entry at `slot`; entries after it in its probe run move back. */
  delete(slot: number): void {
    const keys = this.keys;
    const used = this.used;
    const values = this.values;
    const mask = this.mask;
    let hole = slot;
    let i = slot;
    for (;;) {
      i = (i + 1) & mask;
      if (used[i] === 0) break;
      const home = hashOf(keys[4 * i]!, keys[4 * i + 1]!, keys[4 * i + 2]!, keys[4 * i + 3]!) & mask;
      // Moves back when its home is not in (hole, i] (cyclically).
      if (hole <= i ? home <= hole || home > i : home <= hole && home > i) {
        keys.copyWithin(4 * hole, 4 * i, 4 * i + 4);
        values[hole] = values[i];
        hole = i;
      }
    }
    used[hole] = 0;
    values[hole] = undefined;
    this.count--;
  }

  /** Every value, in no particular order. */
  forEach(visit: (value: T) => void): void {
    for (let i = 0; i <= this.mask; i++) if (this.used[i] === 1) visit(this.values[i]!);
  }

  private loadBytes(b: Uint8Array, at: number): void {
    this.k0 = b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24);
    this.k1 = b[at + 4]! | (b[at + 5]! << 8) | (b[at + 6]! << 16) | (b[at + 7]! << 24);
    this.k2 = b[at + 8]! | (b[at + 9]! << 8) | (b[at + 10]! << 16) | (b[at + 11]! << 24);
    this.k3 = b[at + 12]! | (b[at + 13]! << 8) | (b[at + 14]! << 16) | (b[at + 15]! << 24);
  }

  private loadKey(s: string): void {
    const c = (i: number): number => s.charCodeAt(i) & 255;
    this.k0 = c(0) | (c(1) << 8) | (c(2) << 16) | (c(3) << 24);
    this.k1 = c(4) | (c(5) << 8) | (c(6) << 16) | (c(7) << 24);
    this.k2 = c(8) | (c(9) << 8) | (c(10) << 16) | (c(11) << 24);
    this.k3 = c(12) | (c(13) << 8) | (c(14) << 16) | (c(15) << 24);
  }

  private probe(): number {
    const keys = this.keys;
    const used = this.used;
    const mask = this.mask;
    const k0 = this.k0;
    const k1 = this.k1;
    const k2 = this.k2;
    const k3 = this.k3;
    for (let i = hashOf(k0, k1, k2, k3) & mask; used[i] === 1; i = (i + 1) & mask) {
      const p = 4 * i;
      if (keys[p] === k0 && keys[p + 1] === k1 && keys[p + 2] === k2 && keys[p + 3] === k3) return i;
    }
    return -1;
  }

  private place(value: T): number {
    const mask = this.mask;
    let i = hashOf(this.k0, this.k1, this.k2, this.k3) & mask;
    while (this.used[i] === 1) i = (i + 1) & mask;
    const p = 4 * i;
    this.keys[p] = this.k0;
    this.keys[p + 1] = this.k1;
    this.keys[p + 2] = this.k2;
    this.keys[p + 3] = this.k3;
    this.used[i] = 1;
    this.values[i] = value;
    this.count++;
    return i;
  }

  /** Keeps the load at most one half, so probe runs stay short; grows fourfold while small (fewer rehashes). */
  private grow(): void {
    if ((this.count + 1) * 2 <= this.mask + 1) return;
    const oldKeys = this.keys;
    const oldUsed = this.used;
    const oldValues = this.values;
    const capacity = (this.mask + 1) * (this.mask + 1 < 1 << 16 ? 4 : 2);
    this.keys = new Int32Array(4 * capacity);
    this.used = new Uint8Array(capacity);
    this.values = new Array<T | undefined>(capacity).fill(undefined);
    this.mask = capacity - 1;
    this.count = 0;
    for (let i = 0; i < oldUsed.length; i++) {
      if (oldUsed[i] !== 1) continue;
      this.k0 = oldKeys[4 * i]!;
      this.k1 = oldKeys[4 * i + 1]!;
      this.k2 = oldKeys[4 * i + 2]!;
      this.k3 = oldKeys[4 * i + 3]!;
      this.place(oldValues[i]!);
    }
  }
}

/** Mixes all four words (ids need not be random: tests and some SDKs use small or sequential ones). */
function hashOf(k0: number, k1: number, k2: number, k3: number): number {
  let h = Math.imul(k0 ^ 0x2545f491, 0x9e3779b1);
  h = Math.imul(h ^ (h >>> 15) ^ k1, 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13) ^ k2, 0xc2b2ae35);
  h = Math.imul(h ^ (h >>> 16) ^ k3, 0x27d4eb2f);
  return (h ^ (h >>> 15)) >>> 0;
}
