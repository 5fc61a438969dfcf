/**
 * Integer helpers every layer shares: power-of-two rounding, bit scans and
 * 64-bit values split into two u32 words.
 *
 * @module
 */

/** 2^32: the weight of the high word of a u64 stored as two u32 words. */
export const TWO_POW_32 = 4294967296;

/**
 * Rounds `value` up to a multiple of `alignBytes`, a power of two.
 *
 * @param value A non-negative integer below 2^53.
 * @param alignBytes A power of two.
 * @returns The smallest multiple of `alignBytes` that is at least `value`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { alignUp } from "./_math.ts";
 *
 * assert.equal(alignUp(4097, 4096), 8192);
 * assert.equal(alignUp(8192, 4096), 8192);
 * ```
 */
export function alignUp(value: number, alignBytes: number): number {
  // Masks in 32-bit arithmetic where the result fits: an integer modulo is a
  // slow division on the allocation path.
  if (value <= 0x3fffffff && alignBytes <= 0x40000000) {
    return (value + alignBytes - 1) & -alignBytes;
  }
  const remainder = value % alignBytes;
  return remainder === 0 ? value : value + (alignBytes - remainder);
}

/**
 * Rounds `value` down to a multiple of `alignBytes`, a power of two.
 *
 * @param value A non-negative integer below 2^53.
 * @param alignBytes A power of two.
 * @returns The largest multiple of `alignBytes` that is at most `value`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { alignDown } from "./_math.ts";
 *
 * assert.equal(alignDown(4097, 4096), 4096);
 * ```
 */
export function alignDown(value: number, alignBytes: number): number {
  return value - (value % alignBytes);
}

/**
 * The index of the lowest set bit of a non-zero u32.
 *
 * @param value A non-zero 32-bit integer.
 * @returns 0 to 31.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { lowestBit } from "./_math.ts";
 *
 * assert.equal(lowestBit(0b1000), 3);
 * ```
 */
export function lowestBit(value: number): number {
  return 31 - Math.clz32(value & -value);
}
