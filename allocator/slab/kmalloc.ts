/**
 * The kmalloc size classes: the caches `alloc()` uses for small requests,
 * like SLUB's kmalloc-8 … kmalloc-8k. Neighbouring classes are at most 25%
 * apart (8-byte steps to 128, then eight steps per doubling, 12.5%), so
 * rounding a request up wastes less than an eighth of it above 128 bytes.
 *
 * @module
 */

/**
 * The largest request a kmalloc class serves. Larger requests go to blocks,
 * whose 16-byte header costs less than class rounding there: chosen by
 * replaying the shipped traces (README, "Page frames and slab caches").
 */
export const KMALLOC_MAX_BYTES = 512;

/**
 * The largest small class. A class above it (a mid class) takes a slab only
 * once it has turned away a slab's worth of requests (they go to blocks)
 * since it last had one: a program that asks for a few objects of many mid
 * sizes would otherwise hold a mostly empty slab per size, while a size asked
 * for often soon gets the slab path's speed.
 */
export const KMALLOC_SMALL_MAX_BYTES = 256;

/** Every class, ascending: 8-byte steps to 128, then eight classes per doubling. */
export const KMALLOC_CLASSES: readonly number[] = (() => {
  const classes: number[] = [];
  for (
    let size = 8;
    size <= KMALLOC_MAX_BYTES;
    size += size < 128 ? 8 : 2 ** Math.floor(Math.log2(size)) >> 3
  ) {
    classes.push(size);
  }
  return classes;
})();

/**
 * The fewest objects a kmalloc class's slab holds (slabOrderFor): a mid class
 * with a few objects per frame would move a slab between its lists, or give
 * it back and make it again, every few calls. Small classes hold more per
 * frame anyway.
 */
export const KMALLOC_SLAB_OBJECTS_MIN = 16;

/** The number of small classes (the mid classes follow them in KMALLOC_CLASSES). */
export const KMALLOC_SMALL_CLASS_COUNT: number =
  KMALLOC_CLASSES.filter((size) => size <= KMALLOC_SMALL_MAX_BYTES).length;

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
 * assert.equal(KMALLOC_CLASSES[KMALLOC_CLASS_BY_STEP[(129 + 7) >> 3]], 144);
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
