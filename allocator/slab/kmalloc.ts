/**
 * The kmalloc size classes: the caches `alloc()` uses for small requests,
 * like SLUB's kmalloc-8 … kmalloc-8k. Neighbouring classes are at most 25%
 * apart (8-byte steps to 128, then four steps per doubling), so rounding a
 * request up wastes less than a fifth of it above 128 bytes.
 *
 * @module
 */

/** Every class, ascending; the last is the largest request a slab serves. */
export const KMALLOC_CLASSES: readonly number[] = [
  8,
  16,
  24,
  32,
  40,
  48,
  56,
  64,
  72,
  80,
  88,
  96,
  104,
  112,
  120,
  128,
  160,
  192,
  224,
  256,
  320,
  384,
  448,
  512,
  640,
  768,
  896,
  1024,
  1280,
  1536,
  1792,
  2048,
];

/** The largest request a kmalloc class serves. */
export const KMALLOC_MAX_BYTES = 2048;

/** The most bytes a kmalloc object may hold beyond its request (its slack is one byte). */
export const KMALLOC_SLACK_MAX = 255;

/**
 * The class index for each request size in 8-byte steps: `classBySize[(size + 7) >> 3]`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { KMALLOC_CLASSES, KMALLOC_CLASS_BY_STEP } from "./kmalloc.ts";
 *
 * assert.equal(KMALLOC_CLASSES[KMALLOC_CLASS_BY_STEP[(100 + 7) >> 3]], 104);
 * assert.equal(KMALLOC_CLASSES[KMALLOC_CLASS_BY_STEP[(129 + 7) >> 3]], 160);
 * ```
 */
export const KMALLOC_CLASS_BY_STEP: Uint8Array = (() => {
  const table = new Uint8Array((KMALLOC_MAX_BYTES >> 3) + 1);
  let cls = 0;
  for (let step = 0; step < table.length; step++) {
    while (KMALLOC_CLASSES[cls] < step << 3) cls++;
    table[step] = cls;
  }
  return table;
})();

/** The alignment every object of a class has: the largest power of two dividing its size. */
export function classAlignBytes(objectBytes: number): number {
  return Math.min(objectBytes & -objectBytes, 4096);
}
