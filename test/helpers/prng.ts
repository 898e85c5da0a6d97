// mulberry32: a small seeded PRNG, good enough for jitter, simulations, property and fuzz tests.
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The same generator with the helpers simulations use (the sequence is `seeded`'s). */
export class Rng {
  readonly next: () => number;
  constructor(seed: number) {
    this.next = seeded(seed);
  }
  /** The raw 32-bit output (next() is it divided by 2^32, exactly). */
  u32(): number {
    return this.next() * 4294967296;
  }
  /** 0 ≤ n < bound (the mesh's RandomInt). */
  readonly int = (bound: number): number => Math.floor(this.next() * bound);
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)] as T;
  }
  shuffle<T>(xs: T[]): T[] {
    for (let i = xs.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [xs[i], xs[j]] = [xs[j] as T, xs[i] as T];
    }
    return xs;
  }
}
