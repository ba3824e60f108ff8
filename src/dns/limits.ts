// Per-client rate limiting (pure given the injected clock, in milliseconds).

/** Token bucket per key: `rate` tokens per second, up to `burst`; a bounded number of keys. */
export class TokenBuckets {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly rate: number,
    private readonly burst: number,
    private readonly maxKeys: number,
    private readonly clock: () => number,
  ) {
    if (!(rate > 0) || !(burst >= 1) || !Number.isInteger(maxKeys) || maxKeys < 1) {
      throw new RangeError(`TokenBuckets: need rate > 0, burst >= 1, maxKeys >= 1, got ${rate}, ${burst}, ${maxKeys}`);
    }
  }

  /** Takes one token for `key`; false when its bucket is empty (the query is to be dropped). */
  take(key: string): boolean {
    const now = this.clock();
    let b = this.buckets.get(key);
    if (b === undefined) {
      if (this.buckets.size >= this.maxKeys) this.sweep(now);
      b = { tokens: this.burst, at: now };
      this.buckets.set(key, b);
    } else if (now > b.at) {
      b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) * this.rate) / 1000);
      b.at = now;
    }
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  get size(): number {
    return this.buckets.size;
  }

  /** Forgets buckets that have refilled (they behave like new ones); if none has, forgets all. */
  private sweep(now: number): void {
    for (const [key, b] of this.buckets) {
      if (b.tokens + ((now - b.at) * this.rate) / 1000 >= this.burst) this.buckets.delete(key);
    }
    // spoofed sources can fill the table faster than it drains; memory stays bounded either way
    if (this.buckets.size >= this.maxKeys) this.buckets.clear();
  }
}
