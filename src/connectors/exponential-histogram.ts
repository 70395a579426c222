// Base-2 exponential histograms as the Collector's spanmetrics connector aggregates durations
// (its go-expohisto structure, so the same spans give the same scale, offset and counts): a new
// histogram starts at scale 20; when a value falls outside the max_size buckets the populated
// range allows, the scale is lowered just enough (each step halves the index range) and the
// buckets are merged pairwise. Bucket i holds (2^(i·2^-scale), 2^((i+1)·2^-scale)]: upper bounds
// inclusive, so an exact power of two ends a bucket. 0 goes to the zero count (threshold 0).

export const MAX_SCALE = 20;
/** The exponent mapping's lowest scale: index = exponent >> 10. */
export const MIN_SCALE = -10;
export const DEFAULT_MAX_SIZE = 160;
/** The range go-expohisto accepts for max_size (it clamps what is outside). */
export const MIN_MAX_SIZE = 2;
export const MAX_MAX_SIZE = 16384;

const MIN_NORMAL_EXPONENT = -1022;
const MAX_NORMAL_EXPONENT = 1023;
/** The smallest normal double, 2^-1022. */
const MIN_NORMAL = 2 ** -1022;

const bits = new DataView(new ArrayBuffer(8));

/** The unbiased binary exponent of a positive normal double. */
function exponentOf(value: number): number {
  bits.setFloat64(0, value);
  return ((bits.getUint32(0) >>> 20) & 0x7ff) - 1023;
}

/** Whether a positive normal double is an exact power of two (its significand bits are all 0). */
function isPowerOfTwo(value: number): boolean {
  bits.setFloat64(0, value);
  return (bits.getUint32(0) & 0xfffff) === 0 && bits.getUint32(4) === 0;
}

/** The bucket index of a positive finite value at `scale`, exactly as go-expohisto maps it. */
export function mapToIndex(value: number, scale: number): number {
  if (scale <= 0) {
    const shift = -scale;
    if (value < MIN_NORMAL) return (MIN_NORMAL_EXPONENT >> shift) - (shift < 2 ? 1 : 0);
    // An exact power of two belongs to the bucket below (upper bounds are inclusive).
    return (exponentOf(value) - (isPowerOfTwo(value) ? 1 : 0)) >> shift;
  }
  if (value <= MIN_NORMAL) return (MIN_NORMAL_EXPONENT << scale) - 1;
  if (isPowerOfTwo(value)) return (exponentOf(value) << scale) - 1;
  // Math.LOG2E · 2^scale is exactly the Collector's scale factor (math.Ldexp(math.Log2E, scale)).
  const index = Math.floor(Math.log(value) * (Math.LOG2E * 2 ** scale));
  const max = ((MAX_NORMAL_EXPONENT + 1) << scale) - 1;
  return index >= max ? max : index;
}

/** How many scale steps bring indices low..high within maxSize buckets (go-expohisto's changeScale). */
export function scaleChange(low: number, high: number, maxSize: number): number {
  let change = 0;
  while (high - low >= maxSize) {
    high >>= 1;
    low >>= 1;
    change++;
  }
  return change;
}

export class ExponentialHistogram {
  /** Bucket counts from index `offset` on; empty until a positive value is recorded. */
  counts: number[] = [];
  offset = 0;
  private currentScale = MAX_SCALE;
  count = 0;
  zeroCount = 0;
  sum = 0;
  min = 0;
  max = 0;

  constructor(readonly maxSize: number = DEFAULT_MAX_SIZE) {}

  /** The scale to emit: 0 when only zeros (or nothing) were recorded, as the Collector's. */
  get scale(): number {
    return this.count === this.zeroCount ? 0 : this.currentScale;
  }

  /** Records `value` (finite, ≥ 0) `incr` times: one span standing for `incr` spans. */
  record(value: number, incr = 1): void {
    if (this.count === 0) {
      this.min = value;
      this.max = value;
    } else {
      if (value < this.min) this.min = value;
      if (value > this.max) this.max = value;
    }
    this.count += incr;
    if (value === 0) {
      this.zeroCount += incr;
      return;
    }
    // One multiplication, as the Collector adds value × incr.
    this.sum += incr === 1 ? value : value * incr;
    let index = mapToIndex(value, this.currentScale);
    if (this.counts.length === 0) {
      this.offset = index;
      this.counts.push(incr);
      return;
    }
    const end = this.offset + this.counts.length - 1;
    const low = Math.min(index, this.offset);
    const high = Math.max(index, end);
    if (high - low >= this.maxSize) {
      this.downscale(scaleChange(low, high, this.maxSize));
      index = mapToIndex(value, this.currentScale);
    }
    this.add(index, incr);
  }

  private add(index: number, incr: number): void {
    if (index < this.offset) {
      const grow = this.offset - index;
      this.counts = [...new Array<number>(grow).fill(0), ...this.counts];
      this.offset = index;
    } else if (index >= this.offset + this.counts.length) {
      while (this.offset + this.counts.length <= index) this.counts.push(0);
    }
    this.counts[index - this.offset]! += incr;
  }

  /** Lowers the scale by `by`, merging each 2^by neighbouring buckets into one. */
  private downscale(by: number): void {
    if (by <= 0) return;
    const newScale = this.currentScale - by;
    if (newScale < MIN_SCALE) throw new Error(`exponential histogram: scale ${newScale} below ${MIN_SCALE}`);
    const first = this.offset >> by;
    const last = (this.offset + this.counts.length - 1) >> by;
    const merged = new Array<number>(last - first + 1).fill(0);
    for (let i = 0; i < this.counts.length; i++) merged[((this.offset + i) >> by) - first]! += this.counts[i]!;
    this.counts = merged;
    this.offset = first;
    this.currentScale = newScale;
  }
}
