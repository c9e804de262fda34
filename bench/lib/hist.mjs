// A small log-bucketed latency histogram (HdrHistogram-like, ~1% precision), in µs.
const RATIO = Math.log(1.01);
const MAX_BUCKET = 2400; // 1.01^2400 µs ≈ 2e10 µs: anything longer lands in the last bucket

export class Histogram {
  constructor() {
    this.counts = new Float64Array(MAX_BUCKET + 1);
    this.n = 0;
    this.sum = 0;
    this.max = 0;
    this.min = Infinity;
  }
  record(us) {
    const v = us < 1 ? 1 : us;
    const b = Math.min(MAX_BUCKET, Math.ceil(Math.log(v) / RATIO));
    this.counts[b]++;
    this.n++;
    this.sum += v;
    if (v > this.max) this.max = v;
    if (v < this.min) this.min = v;
  }
  merge(o) {
    for (let i = 0; i <= MAX_BUCKET; i++) this.counts[i] += o.counts[i];
    this.n += o.n;
    this.sum += o.sum;
    this.max = Math.max(this.max, o.max);
    this.min = Math.min(this.min, o.min);
  }
  /** Value (µs) at quantile q in [0, 1]: the upper edge of the bucket holding it. */
  quantile(q) {
    if (this.n === 0) return NaN;
    const target = Math.max(1, Math.ceil(q * this.n));
    let acc = 0;
    for (let i = 0; i <= MAX_BUCKET; i++) {
      acc += this.counts[i];
      if (acc >= target) return Math.min(this.max, Math.exp(i * RATIO));
    }
    return this.max;
  }
  toJSON() {
    const nz = [];
    for (let i = 0; i <= MAX_BUCKET; i++) if (this.counts[i]) nz.push([i, this.counts[i]]);
    return { n: this.n, sum: this.sum, max: this.max, min: this.min, buckets: nz };
  }
  static fromJSON(j) {
    const h = new Histogram();
    for (const [i, c] of j.buckets) h.counts[i] = c;
    h.n = j.n;
    h.sum = j.sum;
    h.max = j.max;
    h.min = j.min;
    return h;
  }
}
