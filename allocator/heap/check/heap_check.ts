/**
 * `check()`: a full walk of every region and every free list that proves the
 * heap's invariants (see `layout.ts`) and the allocator's counters.
 *
 * @module
 */

import { corruptionAt } from "./corruption.ts";
import type { BlockWords } from "../block.ts";
import {
  FLAG_FREE,
  FLAG_LAST,
  FLAG_PREV_FREE,
  GRANULE_BYTES,
  HEADER_BYTES,
  MIN_BLOCK_BYTES,
} from "../layout.ts";
import type { HeapCounters } from "../counters.ts";
import type { FreeListPolicy } from "../policy/policy.ts";
import type { RegionLayout } from "../regions.ts";

/** What `checkHeap` walks. */
export interface HeapCheckInput {
  /** Access to the managed memory. */
  readonly blocks: BlockWords;
  /** The usable regions, in address order. */
  readonly regions: readonly RegionLayout[];
  /** The policy whose lists must match the walk. */
  readonly policy: FreeListPolicy;
  /** The allocator's running totals, to be proved against the walk. */
  readonly expected: Readonly<HeapCounters>;
}

function corrupt(address: number, invariant: string): never {
  throw corruptionAt(address, invariant);
}

/**
 * Walks every region's blocks and every free list and throws on the first
 * broken invariant.
 *
 * @param input The heap to prove.
 * @throws {HeapCorruptionError} Naming the address and the invariant.
 */
export function checkHeap(input: HeapCheckInput): void {
  const { blocks, policy, expected } = input;
  const walked: Walk = {
    free: new Set(),
    freeBytes: 0,
    freeBlocks: 0,
    usedBytes: 0,
    usedBlocks: 0,
    slackBytes: 0,
  };
  for (const region of input.regions) walkRegion(blocks, region, walked);

  for (const key of ["freeBytes", "freeBlocks", "usedBytes", "usedBlocks", "slackBytes"] as const) {
    if (walked[key] !== expected[key]) {
      corrupt(
        input.regions[0].blockStart,
        `the block walk finds ${key} = ${walked[key]}, the allocator counts ${expected[key]}`,
      );
    }
  }
  const listed = policy.listed(walked.freeBlocks + 1);
  const seen = new Set<number>();
  for (const block of listed) {
    if (!walked.free.has(block)) corrupt(block, "a listed block is not a free block of the walk");
    if (seen.has(block)) corrupt(block, "a free block is listed twice");
    seen.add(block);
  }
  if (listed.length !== walked.freeBlocks) {
    const missing = [...walked.free].find((block) => !seen.has(block)) ?? 0;
    corrupt(
      missing,
      `the free lists hold ${listed.length} blocks, the walk finds ${walked.freeBlocks} free`,
    );
  }
  policy.verify(walked.freeBlocks + 1);
}

/** What a walk counts: mutable counters and the free blocks it met. */
interface Walk {
  free: Set<number>;
  freeBytes: number;
  freeBlocks: number;
  usedBytes: number;
  usedBlocks: number;
  slackBytes: number;
}

function walkRegion(blocks: BlockWords, region: RegionLayout, walked: Walk): void {
  const stepsMax = (region.blockEnd - region.blockStart) / MIN_BLOCK_BYTES;
  let block = region.blockStart;
  let previousFree = false;
  for (let steps = 0; block < region.blockEnd; steps++) {
    if (steps > stepsMax) corrupt(block, "the region holds more blocks than fit in it");
    if (!blocks.headerValid(block)) corrupt(block, "check word mismatch");
    const size = blocks.size(block);
    const flags = blocks.flags(block);
    if (size < MIN_BLOCK_BYTES || size % GRANULE_BYTES !== 0) {
      corrupt(block, `block size ${size} is below the minimum or not a granule multiple`);
    }
    if (block + size > region.blockEnd) corrupt(block, `block size ${size} leaves its region`);
    if (((flags & FLAG_LAST) !== 0) !== (block + size === region.blockEnd)) {
      corrupt(block, "the LAST flag does not match the block's position");
    }
    if (((flags & FLAG_PREV_FREE) !== 0) !== previousFree) {
      corrupt(block, "the PREV_FREE flag does not match the previous block");
    }
    const free = (flags & FLAG_FREE) !== 0;
    if (free) {
      if (previousFree) corrupt(block, "two adjacent blocks are free (missed coalescing)");
      if (blocks.previousFooter(block + size) !== size) corrupt(block, "the footer != the size");
      if (blocks.slack(block) !== 0) corrupt(block, "a free block has slack");
      walked.free.add(block);
      walked.freeBlocks++;
      walked.freeBytes += size - HEADER_BYTES;
    } else {
      const slack = blocks.slack(block);
      if (slack > size - HEADER_BYTES - 1) corrupt(block, `slack ${slack} exceeds the payload`);
      walked.usedBlocks++;
      walked.slackBytes += slack;
      walked.usedBytes += size - HEADER_BYTES - slack;
    }
    previousFree = free;
    block += size;
  }
}
