/**
 * The block surgery of the general path: carve a used block out of a free
 * one, free a used block and merge it with its free neighbours, shrink and
 * grow in place. Every edit verifies what it is about to read or unlink
 * before it writes, so an edit either completes or throws with the heap
 * untouched.
 *
 * Twin: `policy/tlsf_fast_path.ts` writes the same edits out for the common
 * TLSF heap (one region, window below 2^31, default alignment, no debug
 * mode), byte for byte; `tests/tlsf_fast_path_test.ts` runs the two in
 * lockstep. A change here is a change there.
 *
 * @module
 */

import { alignmentGap, blockPtr, type BlockWords } from "./block.ts";
import type { BlockVerifier } from "./check/block_verifier.ts";
import { corruptionAt } from "./check/corruption.ts";
import type { DebugGuard } from "./check/debug_guard.ts";
import type { HeapCounters } from "./counters.ts";
import {
  FLAG_FREE,
  FLAG_LAST,
  FLAG_PREV_FREE,
  GRANULE_BYTES,
  HEADER_BYTES,
  MIN_BLOCK_BYTES,
} from "./layout.ts";
import type { FreeListPolicy } from "./policy/policy.ts";
import type { RegionLayout } from "./regions.ts";

/** The general path's edits of blocks, over one heap's words, lists and books. */
export class BlockEdits {
  readonly #blocks: BlockWords;
  readonly #policy: FreeListPolicy;
  readonly #counters: HeapCounters;
  readonly #verifier: BlockVerifier;
  readonly #debug: DebugGuard | null;

  /**
   * @param blocks The heap's block words.
   * @param policy The free lists.
   * @param counters The heap's running totals.
   * @param verifier Verifies neighbours and links before they are read.
   * @param debug Guard and poison in debug mode, else null.
   */
  constructor(
    blocks: BlockWords,
    policy: FreeListPolicy,
    counters: HeapCounters,
    verifier: BlockVerifier,
    debug: DebugGuard | null,
  ) {
    this.#blocks = blocks;
    this.#policy = policy;
    this.#counters = counters;
    this.#verifier = verifier;
    this.#debug = debug;
  }

  /** Writes one free block over the block area of every usable region. */
  initRegions(usable: readonly RegionLayout[]): void {
    this.#policy.initControl();
    for (const region of usable) {
      const blockBytes = region.blockEnd - region.blockStart;
      this.#blocks.writeFree(region.blockStart, blockBytes, FLAG_LAST);
      this.#debug?.poisonFree(region.blockStart, region.blockStart, region.blockEnd);
      this.#policy.insert(region.blockStart, blockBytes, 0);
      this.#counters.addFree(blockBytes);
    }
  }

  /**
   * Turns part of the free block `block` (a search result, so verified here
   * first) into a used block of `blockBytes` holding `sizeBytes` at `alignBytes`.
   *
   * @returns The payload address.
   */
  carve(block: number, blockBytes: number, alignBytes: number, sizeBytes: number): number {
    const blocks = this.#blocks;
    const freeBytes = blocks.size(block);
    const flags = blocks.flags(block);
    check(blocks.isFree(block), block, "a block handed out by the policy is not free");
    // Never trust a search result: a corrupted list link may point anywhere.
    check(
      blocks.headerValid(block),
      block,
      "a block handed out by the policy has a damaged header",
    );
    this.#verifier.checkedLinks(block);
    const gapBytes = alignBytes <= GRANULE_BYTES ? 0 : alignmentGap(block, alignBytes);
    const start = block + gapBytes;
    const availableBytes = freeBytes - gapBytes;
    check(availableBytes >= blockBytes, block, "a block handed out by the policy is too small");
    const remainderBytes = availableBytes - blockBytes;
    const splitTail = remainderBytes >= MIN_BLOCK_BYTES;
    const usedBytes = splitTail ? blockBytes : availableBytes;
    const tail = start + usedBytes;

    this.#counters.dropFree(freeBytes);
    if (gapBytes > 0) {
      this.#policy.replace(block, freeBytes, block, gapBytes);
      blocks.writeFree(block, gapBytes, flags & FLAG_PREV_FREE);
      this.#counters.addFree(gapBytes);
      if (splitTail) this.#policy.insert(tail, remainderBytes, block);
    } else if (splitTail) {
      this.#policy.replace(block, freeBytes, tail, remainderBytes);
    } else {
      this.#policy.remove(block, freeBytes);
    }
    if (splitTail) {
      blocks.writeFree(tail, remainderBytes, flags & FLAG_LAST);
      this.#counters.addFree(remainderBytes);
    } else if ((flags & FLAG_LAST) === 0) {
      blocks.setFlag(tail, FLAG_PREV_FREE, false);
    }
    const prevFree = gapBytes > 0 ? FLAG_PREV_FREE : flags & FLAG_PREV_FREE;
    const last = splitTail ? 0 : flags & FLAG_LAST;
    const slackBytes = usedBytes - HEADER_BYTES - sizeBytes;
    blocks.writeHeader(start, usedBytes, prevFree | last, slackBytes);
    this.#counters.addUsed(sizeBytes, slackBytes);
    return blockPtr(start);
  }

  /**
   * Frees the verified used block `block` and merges it with its free
   * neighbours; both are verified before anything is written.
   */
  free(block: number): void {
    const blocks = this.#blocks;
    const blockBytes = blocks.size(block);
    const flags = blocks.flags(block);
    const next = this.checkedSuccessor(block, blockBytes, flags);
    const previous = this.checkedPredecessor(block, flags);

    const slackBytes = blocks.slack(block);
    this.#counters.dropUsed(blockBytes - HEADER_BYTES - slackBytes, slackBytes);
    const nextFree = next !== 0 && blocks.isFree(next);
    let start = block;
    let mergedBytes = blockBytes;
    let last = flags & FLAG_LAST;
    if (nextFree) {
      const nextBytes = blocks.size(next);
      last = blocks.flags(next) & FLAG_LAST;
      this.#counters.dropFree(nextBytes);
      mergedBytes += nextBytes;
      if (previous !== 0) this.#policy.remove(next, nextBytes);
      else this.#policy.replace(next, nextBytes, block, mergedBytes);
    }
    if (previous !== 0) {
      // Leave a tombstone (a free header of size 0) so that freeing the same
      // payload again is reported as a double free rather than trusted.
      blocks.writeHeader(block, 0, FLAG_FREE, 0);
      const previousBytes = blocks.size(previous);
      this.#counters.dropFree(previousBytes);
      start = previous;
      mergedBytes += previousBytes;
      this.#policy.replace(previous, previousBytes, previous, mergedBytes);
    } else if (!nextFree) {
      this.#policy.insert(block, mergedBytes, 0);
    }
    blocks.writeFree(start, mergedBytes, last);
    this.#counters.addFree(mergedBytes);
    if (last === 0) blocks.setFlag(start + mergedBytes, FLAG_PREV_FREE, true);
    this.#debug?.poisonFreed(start, block, blockBytes);
  }

  /**
   * Shrinks the used block `block` to `newBlockBytes` (holding `sizeBytes`),
   * giving the rest to its free successor or to a new free block. `next` is
   * its verified successor (0 when it is the last of its region).
   */
  shrinkInPlace(block: number, newBlockBytes: number, sizeBytes: number, next: number): void {
    const blocks = this.#blocks;
    const blockBytes = blocks.size(block);
    const flags = blocks.flags(block);
    const oldSlackBytes = blocks.slack(block);
    const remainderBytes = blockBytes - newBlockBytes;
    this.#counters.usedBytes += sizeBytes - (blockBytes - HEADER_BYTES - oldSlackBytes);
    if (remainderBytes > 0 && next !== 0 && blocks.isFree(next)) {
      const nextBytes = blocks.size(next);
      const tail = block + newBlockBytes;
      const nextLast = blocks.flags(next) & FLAG_LAST;
      this.#policy.replace(next, nextBytes, tail, remainderBytes + nextBytes);
      blocks.writeFree(tail, remainderBytes + nextBytes, nextLast);
      this.#counters.dropFree(nextBytes);
      this.#counters.addFree(remainderBytes + nextBytes);
      this.#setUsedHeader(block, newBlockBytes, flags & FLAG_PREV_FREE, sizeBytes, oldSlackBytes);
    } else if (remainderBytes >= MIN_BLOCK_BYTES) {
      const tail = block + newBlockBytes;
      blocks.writeFree(tail, remainderBytes, flags & FLAG_LAST);
      this.#policy.insert(tail, remainderBytes, 0);
      this.#counters.addFree(remainderBytes);
      if (next !== 0) blocks.setFlag(next, FLAG_PREV_FREE, true);
      this.#setUsedHeader(block, newBlockBytes, flags & FLAG_PREV_FREE, sizeBytes, oldSlackBytes);
    } else {
      const keptFlags = flags & (FLAG_PREV_FREE | FLAG_LAST);
      this.#setUsedHeader(block, blockBytes, keptFlags, sizeBytes, oldSlackBytes);
    }
  }

  /**
   * Splits the used block `block` (just carved by the caller, so verified)
   * into `count` used blocks of `pieceBytes`, each holding `sizeBytes`; the
   * last keeps what is left as slack. A Worker cache refill carves one run
   * and splits it: one search instead of `count`, and the Worker's blocks
   * side by side (its state bytes and payloads in cache lines of its own).
   * No neighbour changes: the run's neighbours saw a used block, and still do.
   */
  splitUsed(block: number, pieceBytes: number, count: number, sizeBytes: number): void {
    const blocks = this.#blocks;
    const blockBytes = blocks.size(block);
    const flags = blocks.flags(block);
    const oldSlackBytes = blocks.slack(block);
    check((flags & FLAG_FREE) === 0, block, "a run to split is used");
    check(
      count >= 1 && pieceBytes * count <= blockBytes && pieceBytes % GRANULE_BYTES === 0 &&
        pieceBytes >= MIN_BLOCK_BYTES && sizeBytes <= pieceBytes - HEADER_BYTES,
      block,
      `a run of ${blockBytes} bytes splits into ${count} blocks of ${pieceBytes}`,
    );
    this.#counters.dropUsed(blockBytes - HEADER_BYTES - oldSlackBytes, oldSlackBytes);
    for (let index = 0; index < count; index++) {
      const piece = block + index * pieceBytes;
      const last = index === count - 1;
      const bytes = last ? blockBytes - index * pieceBytes : pieceBytes;
      const pieceFlags = (index === 0 ? flags & FLAG_PREV_FREE : 0) |
        (last ? flags & FLAG_LAST : 0);
      const slackBytes = bytes - HEADER_BYTES - sizeBytes;
      blocks.writeHeader(piece, bytes, pieceFlags, slackBytes);
      this.#counters.addUsed(sizeBytes, slackBytes);
    }
  }

  /**
   * Grows the used block `block` into its verified free successor `next`, to
   * `newBlockBytes` holding `sizeBytes`.
   */
  growInPlace(block: number, newBlockBytes: number, sizeBytes: number, next: number): void {
    const blocks = this.#blocks;
    const blockBytes = blocks.size(block);
    const flags = blocks.flags(block);
    const oldSlackBytes = blocks.slack(block);
    const nextBytes = blocks.size(next);
    const nextLast = blocks.flags(next) & FLAG_LAST;
    const remainderBytes = blockBytes + nextBytes - newBlockBytes;
    this.#counters.usedBytes += sizeBytes - (blockBytes - HEADER_BYTES - oldSlackBytes);
    this.#counters.dropFree(nextBytes);
    if (remainderBytes >= MIN_BLOCK_BYTES) {
      const tail = block + newBlockBytes;
      this.#policy.replace(next, nextBytes, tail, remainderBytes);
      blocks.writeFree(tail, remainderBytes, nextLast);
      this.#counters.addFree(remainderBytes);
      this.#setUsedHeader(block, newBlockBytes, flags & FLAG_PREV_FREE, sizeBytes, oldSlackBytes);
    } else {
      this.#policy.remove(next, nextBytes);
      if (nextLast === 0) blocks.setFlag(block + blockBytes + nextBytes, FLAG_PREV_FREE, false);
      const keptFlags = (flags & FLAG_PREV_FREE) | nextLast;
      this.#setUsedHeader(block, blockBytes + nextBytes, keptFlags, sizeBytes, oldSlackBytes);
    }
  }

  /**
   * The verified physical successor of the used block `block` (0 when it is
   * the last of its region); when that successor is free, its list links are
   * verified too, since free and realloc are about to unlink it.
   */
  checkedSuccessor(block: number, blockBytes: number, flags: number): number {
    if ((flags & FLAG_LAST) !== 0) return 0;
    const next = this.#verifier.checkedNeighbour(block + blockBytes, block);
    if (this.#blocks.isFree(next)) this.#verifier.checkedLinks(next);
    return next;
  }

  /**
   * The verified free physical predecessor of the used block `block` with
   * header flags `flags`, or 0; its list links are verified too, since free
   * is about to unlink it.
   */
  checkedPredecessor(block: number, flags: number): number {
    if ((flags & FLAG_PREV_FREE) === 0) return 0;
    const previous = this.#verifier.checkedPrevious(block);
    this.#verifier.checkedLinks(previous);
    return previous;
  }

  #setUsedHeader(
    block: number,
    blockBytes: number,
    flags: number,
    sizeBytes: number,
    oldSlackBytes: number,
  ): void {
    const slackBytes = blockBytes - HEADER_BYTES - sizeBytes;
    this.#blocks.writeHeader(block, blockBytes, flags, slackBytes);
    this.#counters.slackBytes += slackBytes - oldSlackBytes;
  }
}

function check(condition: boolean, address: number, invariant: string): asserts condition {
  if (!condition) throw corruptionAt(address, invariant);
}
