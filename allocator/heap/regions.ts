/**
 * How regions become block areas: trimming to granules, skipping regions too
 * small for a block (the seed's TODO [1]) and placing the control block in
 * the first region that can hold it.
 *
 * @module
 */

import { alignDown, alignUp } from "../_math.ts";
import { InvalidMemoryError } from "../errors.ts";
import { GRANULE_BYTES, MIN_BLOCK_BYTES } from "./layout.ts";
import type { MemoryRegion } from "../memory/physical_memory.ts";

/** Where one region's blocks live, or why it has none. */
export interface RegionLayout {
  /** The region's index in address order. */
  readonly index: number;
  /** The region's first address. */
  readonly base: number;
  /** The region's length in bytes. */
  readonly lengthBytes: number;
  /** The firmware address of the region, equal to `base` unless it was relocated. */
  readonly physicalBase: number;
  /** True when the region is too small for a block and is never written to. */
  readonly skipped: boolean;
  /** Address of the first block (after the control block, if it lives here); 0 when skipped. */
  readonly blockStart: number;
  /** End of the block area (exclusive); 0 when skipped. */
  readonly blockEnd: number;
  /** Bytes of the control block placed at the region's start, or 0. */
  readonly controlBytes: number;
}

/** The regions' layouts and where the control block went. */
export interface HeapLayout {
  /** Every region, in address order. */
  readonly regions: readonly RegionLayout[];
  /** Address of the control block, or 0 when no region can hold it (it is then detached). */
  readonly controlAddress: number;
  /** The largest block area before the control block is placed: an upper bound on any block. */
  readonly largestAreaBytes: number;
}

/** The granule-aligned area of a region, or null when it holds no block. */
function blockArea(region: MemoryRegion): { start: number; end: number } | null {
  const start = alignUp(region.base, GRANULE_BYTES);
  const end = alignDown(region.base + region.bytes.byteLength, GRANULE_BYTES);
  return end - start >= MIN_BLOCK_BYTES ? { start, end } : null;
}

/** The largest block area of any region: bounds the size classes a policy needs. */
export function largestBlockArea(regions: readonly MemoryRegion[]): number {
  let largest = 0;
  for (const region of regions) {
    const area = blockArea(region);
    if (area !== null) largest = Math.max(largest, area.end - area.start);
  }
  return largest;
}

/**
 * Lays out regions: sorts them by address, trims each to granules, skips
 * those too small for one block and puts a control block of
 * `controlBytesNeeded` at the start of the first region that still has room
 * for a block after it. A too-small first region is skipped, not written.
 *
 * @param regions The memory's regions, in any order.
 * @param controlBytesNeeded Bytes of the policy's control block.
 * @returns The layout of every region.
 * @throws {InvalidMemoryError} If no region can hold a single block.
 */
export function layoutRegions(
  regions: readonly MemoryRegion[],
  controlBytesNeeded: number,
): HeapLayout {
  const sorted = [...regions].sort((a, b) => a.base - b.base);
  const controlSpan = alignUp(controlBytesNeeded, GRANULE_BYTES);
  let controlAddress = 0;
  const layouts = sorted.map((region, index): RegionLayout => {
    const area = blockArea(region);
    const common = {
      index,
      base: region.base,
      lengthBytes: region.bytes.byteLength,
      physicalBase: region.physicalBase ?? region.base,
    };
    if (area === null) {
      return { ...common, skipped: true, blockStart: 0, blockEnd: 0, controlBytes: 0 };
    }
    let start = area.start;
    let controlBytes = 0;
    if (controlAddress === 0 && area.end - area.start >= controlSpan + MIN_BLOCK_BYTES) {
      controlAddress = area.start;
      controlBytes = controlSpan;
      start += controlSpan;
    }
    return { ...common, skipped: false, blockStart: start, blockEnd: area.end, controlBytes };
  });
  if (layouts.every((layout) => layout.skipped)) {
    throw new InvalidMemoryError(
      `Cannot manage memory: none of its ${layouts.length} regions can hold one ${MIN_BLOCK_BYTES}-byte block`,
    );
  }
  return { regions: layouts, controlAddress, largestAreaBytes: largestBlockArea(regions) };
}
