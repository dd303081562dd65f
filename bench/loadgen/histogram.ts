/**
 * Latency histogram in nanoseconds, bucket for bucket the same as mqttload's: exact below 1,024 ns, then
 * 512 linear buckets per power of two (relative error under 0.1%). Workers keep one each and send it
 * sparse; the main process merges them, so percentiles cover every delivery without storing samples.
 */

const LINEAR = 1024;
const SUB = 512;
export const BUCKETS = LINEAR + 54 * SUB;

/** Bucket of `ns` (non-negative). */
export function bucketOf(ns: number): number {
  const v = Math.floor(ns);
  if (v < LINEAR) return v < 0 ? 0 : v;
  // Integer ops below 2^32 ns (4.3 s), the float path above.
  const small = v < 4294967296;
  const e = small ? 31 - Math.clz32(v) : Math.floor(Math.log2(v));
  const sub = (small ? v >>> (e - 9) : Math.floor(v / 2 ** (e - 9))) & (SUB - 1);
  const i = LINEAR + (e - 10) * SUB + sub;
  return i < BUCKETS ? i : BUCKETS - 1;
}

/** Middle of bucket `i`, as mqttload reports it. */
export function bucketValue(i: number): number {
  if (i < LINEAR) return i;
  const e = 10 + Math.floor((i - LINEAR) / SUB);
  const sub = (i - LINEAR) % SUB;
  const width = 2 ** (e - 9);
  return (SUB + sub) * width + width / 2;
}

/** A histogram on the wire: [bucket, count] pairs for the non-empty buckets. */
export interface SparseHistogram {
  buckets: [number, number][];
  count: number;
  sum: number;
  max: number;
}

export class Histogram {
  readonly counts: Float64Array = new Float64Array(BUCKETS);
  count = 0;
  sum = 0;
  max = 0;

  add(ns: number): void {
    this.counts[bucketOf(ns)]++;
    this.count++;
    this.sum += ns;
    if (ns > this.max) this.max = ns;
  }

  /** The p-th percentile (0..100), capped at the maximum; 0 when empty. */
  percentile(p: number): number {
    if (this.count === 0) return 0;
    let want = Math.floor((p / 100) * this.count);
    if (want >= this.count) want = this.count - 1;
    let acc = 0;
    for (let i = 0; i < BUCKETS; i++) {
      acc += this.counts[i];
      if (acc > want) return Math.min(bucketValue(i), this.max);
    }
    return this.max;
  }

  mean(): number {
    return this.count === 0 ? 0 : this.sum / this.count;
  }

  merge(other: SparseHistogram): void {
    for (const [i, n] of other.buckets) this.counts[i] += n;
    this.count += other.count;
    this.sum += other.sum;
    if (other.max > this.max) this.max = other.max;
  }

  toSparse(): SparseHistogram {
    const buckets: [number, number][] = [];
    for (let i = 0; i < BUCKETS; i++) if (this.counts[i] > 0) buckets.push([i, this.counts[i]]);
    return { buckets, count: this.count, sum: this.sum, max: this.max };
  }
}
