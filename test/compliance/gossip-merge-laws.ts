// The merge laws every gossip CRDT must obey, as a reusable suite (DNS entries now, the IPAM
// ring later): over random states from a seeded generator, merging is idempotent
// (a ⊔ a = a), commutative (a ⊔ b = b ⊔ a) and associative ((a ⊔ b) ⊔ c = a ⊔ (b ⊔ c)), and
// merging never loses what either side knew (a ⊑ a ⊔ b). A failure names the seed and case.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { seeded } from '../helpers/prng.js';

export interface MergeLawSubject<S> {
  /** Suite name, e.g. "dns entries". */
  readonly name: string;
  /** A random state. */
  random(rand: () => number): S;
  /** a ⊔ b, without changing a or b. */
  merge(a: S, b: S): S;
  /** A canonical, comparable form of a state. */
  canonical(s: S): unknown;
}

export function mergeLawSuite<S>(subject: MergeLawSubject<S>, opts: { seeds?: readonly number[]; cases?: number } = {}): void {
  const seeds = opts.seeds ?? [1, 2, 3];
  const cases = opts.cases ?? 200;
  const c = (s: S) => subject.canonical(s);
  for (const seed of seeds) {
    test(`${subject.name}: merge laws (seed ${seed}, ${cases} cases)`, () => {
      const rand = seeded(seed);
      for (let i = 0; i < cases; i++) {
        const [a, b, d] = [subject.random(rand), subject.random(rand), subject.random(rand)];
        const where = `seed ${seed} case ${i}`;
        assert.deepEqual(c(subject.merge(a, a)), c(a), `idempotent, ${where}`);
        const ab = subject.merge(a, b);
        assert.deepEqual(c(ab), c(subject.merge(b, a)), `commutative, ${where}`);
        assert.deepEqual(c(subject.merge(ab, d)), c(subject.merge(a, subject.merge(b, d))), `associative, ${where}`);
        assert.deepEqual(c(subject.merge(ab, a)), c(ab), `absorbs its inputs, ${where}`);
      }
    });
  }
}
