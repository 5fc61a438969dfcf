/**
 * The interface every placement policy implements over the shared block
 * format. A policy owns only the free lists (their heads live in the control
 * block inside managed memory); splitting, coalescing and headers belong to
 * the allocator, so every policy produces the same block format.
 *
 * @module
 */

import type { BlockWords } from "../block.ts";
import { GRANULE_BYTES } from "../layout.ts";

/**
 * The names of the placement policies, the default first: the one list every
 * option check, help text and tool reads (registry.ts maps each to its class).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { POLICY_NAMES, PhysicalAllocator } from "@phys/allocator";
 *
 * for (const policy of POLICY_NAMES) {
 *   const heap = PhysicalAllocator.fromBuffer(new Uint8Array(4096), { policy });
 *   assert.equal(heap.policy, policy);
 * }
 * ```
 */
export const POLICY_NAMES = ["tlsf", "first-fit"] as const;

/** The name of a placement policy: one of {@linkcode POLICY_NAMES}. */
export type PolicyName = typeof POLICY_NAMES[number];

/**
 * True when `value` names a placement policy.
 *
 * @param value Anything, for example a command-line argument.
 * @returns Whether it is one of {@linkcode POLICY_NAMES}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isPolicyName } from "@phys/allocator";
 *
 * assert.ok(isPolicyName("tlsf"));
 * assert.ok(!isPolicyName("best-fit"));
 * ```
 */
export function isPolicyName(value: unknown): value is PolicyName {
  return (POLICY_NAMES as readonly unknown[]).includes(value);
}

/** The free-list operations the allocator needs from a policy. */
export interface FreeListPolicy {
  /** The policy's name. */
  readonly name: PolicyName;
  /** The id stored in the control block. */
  readonly id: number;
  /** Bytes of the control block this policy needs. */
  readonly controlBytes: number;

  /** Writes an empty control block over the policy's control block. */
  initControl(): void;
  /**
   * Adds the free block `block` (header already written) to the lists.
   * `after` is 0 or a listed free block known to precede `block` in address
   * order with no listed block between them; first-fit starts its walk there.
   */
  insert(block: number, sizeBytes: number, after: number): void;
  /** Takes the free block `block` off its list. */
  remove(block: number, sizeBytes: number): void;
  /**
   * Puts `newBlock` in the list place of `oldBlock`, which is off the lists
   * afterwards. Callers guarantee no listed block lies between the two.
   */
  replace(oldBlock: number, oldSizeBytes: number, newBlock: number, newSizeBytes: number): void;
  /** The free block where a block of `blockSizeBytes` aligned to `alignBytes` fits, or 0. */
  find(blockSizeBytes: number, alignBytes: number): number;
  /**
   * True when a new free block of `freeBytes`, wherever it lies, would surely
   * be found for a block of `blockSizeBytes` aligned to `alignBytes` by a
   * find() that finds nothing among the blocks listed now. The layers ask
   * before they give their reserves back for a failed allocation: a reserve
   * is given back only when the retry cannot fail (a throw changes nothing).
   * `blocksFreed` is how many free blocks the giving back lists in all, this
   * one among them (Infinity when unknown): a policy that scans a list from
   * its head, where freed blocks go, may count on finding a block there.
   */
  findsAnyOf(
    freeBytes: number,
    blockSizeBytes: number,
    alignBytes: number,
    blocksFreed: number,
  ): boolean;
  /** Every listed free block, each list in order; bounded by `limit` blocks. */
  listed(limit: number): number[];
  /** The size of the largest listed free block, or 0. */
  largestFree(): number;
  /**
   * Proves the policy's own invariants (list order or size classes, bitmaps,
   * back links), reading at most `limit` listed blocks.
   *
   * @throws {HeapCorruptionError} Naming the block or control address at fault.
   */
  verify(limit: number): void;
}

/**
 * What is wrong with `block`, a block a free list links to, before anything
 * reads through it, or null: outside the heap's block areas (over identity
 * memory such an address may not even be mapped), misaligned, or not free.
 * A stray write forged the link; the policies report the answer as
 * HEAP_CORRUPTION at the block.
 *
 * @param blocks The heap's block words.
 * @param inHeap True when an address lies in the heap's block areas.
 * @param block The linked block.
 * @returns The broken invariant, or null.
 */
export function listedBlockProblem(
  blocks: BlockWords,
  inHeap: (address: number) => boolean,
  block: number,
): string | null {
  if (!inHeap(block)) return "a free list links outside the heap";
  if (block % GRANULE_BYTES !== 0) return "a free list links to a misaligned address";
  if (!blocks.isFree(block)) return "a listed block is not a free block (a link to a used one)";
  return null;
}
