import assert from "node:assert/strict";
import { Random } from "./support/random.ts";

/** mulberry32 as published, its state a uint32: the reference the seeds of the tests and tools were drawn from. */
function reference(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    let t = (state = (state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

Deno.test("Random draws mulberry32's sequence, so every recorded seed replays", () => {
  for (const seed of [0, 1, 7, 20260526, 0x7fffffff, 0x80000000, 0xffffffff, -1]) {
    const random = new Random(seed);
    const expected = reference(seed);
    for (let i = 0; i < 10_000; i++) {
      assert.equal(random.next(), expected(), `seed ${seed}, draw ${i}`);
    }
  }
});
