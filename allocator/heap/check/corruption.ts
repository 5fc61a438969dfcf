/**
 * The one way the heap reports a broken invariant: a HeapCorruptionError
 * whose message starts `Heap corruption at` and names the address.
 *
 * @module
 */

import { HeapCorruptionError } from "../../errors.ts";
import { hex } from "../../memory/physical_memory.ts";

/**
 * The error for a broken invariant at `address`.
 *
 * @param address The block or structure found broken.
 * @param invariant What does not hold there.
 * @param what What lies at `address`, with a trailing space (`"free block "`), or nothing.
 * @returns The error, for the caller to throw.
 */
export function corruptionAt(address: number, invariant: string, what = ""): HeapCorruptionError {
  return new HeapCorruptionError(
    address,
    `Heap corruption at ${what}${hex(address)}: ${invariant}`,
  );
}
