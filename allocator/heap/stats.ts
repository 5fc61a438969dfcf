/**
 * The shape of `PhysicalAllocator.stats()`.
 *
 * Every byte of every region is counted in exactly one of four buckets, so
 * `totalBytes === freeBytes + usedBytes + overheadBytes + skippedBytes`
 * holds exactly at all times.
 *
 * @module
 */

import type { PolicyName } from "./policy/policy.ts";
import type { LayerStats } from "../slab/layered_heap.ts";

/** The block heap's share of the accounting (the layers' chunks and descriptors count as their own). */
export interface BlockLayerStats {
  /** Payload bytes of free blocks. */
  readonly freeBytes: number;
  /** Bytes requested by live block allocations, not counting the layers' blocks. */
  readonly usedBytes: number;
  /** Headers, slack, the control block and trimmed bytes. */
  readonly overheadBytes: number;
}

/** One region as the allocator manages it. */
export interface RegionStats {
  /** The region's first address, where the allocator sees it. */
  readonly base: number;
  /** The region's length in bytes. */
  readonly lengthBytes: number;
  /** The firmware address the region was given. */
  readonly physicalBase: number;
  /** True when `base === physicalBase`: addresses handed out are physical addresses. */
  readonly identity: boolean;
  /** `base - physicalBase`: what to subtract from an address to get the physical one. */
  readonly offsetBytes: number;
  /** True when the region is too small for a block and was never written. */
  readonly skipped: boolean;
  /** True when the control block lives at the region's start. */
  readonly holdsControl: boolean;
}

/** A snapshot of the heap's accounting. */
export interface AllocatorStats {
  /** The policy in use. */
  readonly policy: PolicyName;
  /** True when the native library serves the policy's searches. */
  readonly nativeActive: boolean;
  /** Bytes of all regions. */
  readonly totalBytes: number;
  /** Payload bytes of free blocks (block sizes minus headers). */
  readonly freeBytes: number;
  /** Bytes requested by live allocations. */
  readonly usedBytes: number;
  /** Headers, slack of used blocks, the control block and bytes trimmed to granules. */
  readonly overheadBytes: number;
  /** Bytes of regions too small to hold a block. */
  readonly skippedBytes: number;
  /** Free blocks of the block heap. */
  readonly freeBlocks: number;
  /** Live allocations in every layer (blocks, page runs, slab objects). */
  readonly usedBlocks: number;
  /** The block heap's share of free, used and overhead bytes. */
  readonly blocks: BlockLayerStats;
  /**
   * The page-frame and slab layers' share (buddyinfo, slabinfo), or null when
   * they do not serve the heap. Totals: free, used and overhead bytes are the
   * sums of `blocks` and `layers`.
   */
  readonly layers: LayerStats | null;
  /** The largest payload one free block can hold (its size minus the header), or 0. */
  readonly largestFreeBytes: number;
  /** Regions too small to hold a block. */
  readonly skippedRegions: number;
  /** Every region, in address order. */
  readonly regions: readonly RegionStats[];
}
