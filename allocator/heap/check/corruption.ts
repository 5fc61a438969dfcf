/**
 * The one way the heap reports a broken invariant: a HeapCorruptionError
 * whose message starts `Heap corruption at` and names the address.
 *
 * @module
 */

import { HeapCorruptionError } from "../../errors.ts";
import { describeValue, hex } from "../../memory/physical_memory.ts";

/**
 * The error for a broken invariant at `address`.
 *
 * @param address The block or structure found broken.
 * @param invariant What does not hold there.
 * @param what What lies at `address`, with a trailing space (`"free block "`), or nothing.
 * @returns The error, for the caller to throw.
 */
export function corruptionAt(address: number, invariant: string, what = ""): HeapCorruptionError {
  // A link read from outside the window comes back undefined: say so rather than print it.
  if (typeof address !== "number" || !Number.isFinite(address)) {
    return new HeapCorruptionError(
      -1,
      `Heap corruption at ${what}an address outside the window (${
        describeValue(address)
      }): ${invariant}`,
    );
  }
  return new HeapCorruptionError(
    address,
    `Heap corruption at ${what}${hex(address)}: ${invariant}`,
  );
}
