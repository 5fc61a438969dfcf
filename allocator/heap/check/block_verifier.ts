/**
 * Finding and verifying blocks before the allocator trusts them: the block
 * of a payload address (with precise errors for foreign, interior and freed
 * addresses), physical neighbours by header and footer, and list links
 * (safe unlinking). Every read stays inside a usable region, so a bad
 * address never touches unmapped memory.
 *
 * @module
 */

import { corruptionAt } from "./corruption.ts";
import type { BlockWords } from "../block.ts";
import {
  DoubleFreeError,
  HeapCorruptionError,
  InvalidAddressError,
  InvalidFreeError,
} from "../../errors.ts";
import { GRANULE_BYTES, HEADER_BYTES, MIN_BLOCK_BYTES } from "../layout.ts";
import { describeValue, hex } from "../../memory/physical_memory.ts";
import type { RegionLayout } from "../regions.ts";

/** Where a payload address was found, for precise error messages. */
interface Located {
  readonly block: number;
  readonly region: RegionLayout;
}

/** The error classes a bad payload address is reported with. */
export type AddressErrorClass = typeof InvalidFreeError | typeof InvalidAddressError;

/** Block lookup and verification over the usable regions of one heap. */
export class BlockVerifier {
  readonly #blocks: BlockWords;
  readonly #usable: readonly RegionLayout[];
  readonly #starts: Float64Array;
  readonly #poisonsTombstones: boolean;

  /**
   * Creates a verifier.
   *
   * @param blocks Access to the managed memory.
   * @param usable The usable regions, in address order.
   * @param poisonsTombstones True in debug mode, where freed memory is poisoned (tombstones too).
   */
  constructor(blocks: BlockWords, usable: readonly RegionLayout[], poisonsTombstones: boolean) {
    this.#blocks = blocks;
    this.#usable = usable;
    this.#starts = Float64Array.from(usable, (region) => region.blockStart);
    this.#poisonsTombstones = poisonsTombstones;
  }

  /** The usable region whose block area contains `address`, or null. */
  regionOf(address: number): RegionLayout | null {
    const starts = this.#starts;
    let low = 0;
    let high = starts.length - 1;
    while (low < high) {
      const middle = (low + high + 1) >>> 1;
      if (starts[middle] <= address) low = middle;
      else high = middle - 1;
    }
    const region = this.#usable[low];
    return region.blockStart <= address && address < region.blockEnd ? region : null;
  }

  /**
   * The block whose payload starts at `address`, which must be a used block
   * with an intact header. Reads nothing outside a usable region.
   */
  usedBlockAt(
    address: number,
    operation: string,
    ErrorClass: AddressErrorClass,
  ): number {
    if (typeof address !== "number" || !Number.isSafeInteger(address) || address <= 0) {
      throw new ErrorClass(
        `Cannot ${operation} address ${
          describeValue(address)
        }: it is not a positive integer address`,
      );
    }
    const block = address - HEADER_BYTES;
    const region = address % GRANULE_BYTES === 0 ? this.regionOf(block) : null;
    if (region === null || block + MIN_BLOCK_BYTES > region.blockEnd) {
      throw new ErrorClass(
        `Cannot ${operation} address ${hex(address)}: it is not the payload of any block`,
      );
    }
    const blocks = this.#blocks;
    if (!blocks.headerValid(block)) {
      const located = this.#locate(address, region);
      if (
        located !== null && located.block !== block && this.#poisonsTombstones &&
        ErrorClass === InvalidFreeError && blocks.isFree(located.block)
      ) {
        // Debug mode poisons tombstones away (debug_guard.ts): inside free memory means freed.
        throw new DoubleFreeError(
          `Cannot ${operation} address ${hex(address)}: it lies inside the free block at ${
            hex(located.block)
          }, so it was freed already`,
        );
      }
      if (located === null || located.block !== block) {
        throw new ErrorClass(
          `Cannot ${operation} address ${hex(address)}: ${
            located === null
              ? "it is not the payload of any block"
              : `it lies inside the block at ${hex(located.block)}`
          }`,
        );
      }
      throw new HeapCorruptionError(
        block,
        `Cannot ${operation} address ${hex(address)}: the header at ${
          hex(block)
        } is corrupted (check word mismatch)`,
      );
    }
    if (blocks.isFree(block)) {
      // A stale free header (of a block since merged away) can lie inside a
      // live payload: the walk tells a real free block from that.
      const located = this.#locate(address, region);
      if (located !== null && located.block !== block && !blocks.isFree(located.block)) {
        throw new ErrorClass(
          `Cannot ${operation} address ${hex(address)}: it lies inside the block at ${
            hex(located.block)
          }`,
        );
      }
      if (ErrorClass === InvalidAddressError) {
        throw new InvalidAddressError(
          `Cannot ${operation} address ${hex(address)}: the block is free`,
        );
      }
      throw new DoubleFreeError(
        `Cannot ${operation} address ${hex(address)}: the block is already free`,
      );
    }
    const size = blocks.size(block);
    if (size < MIN_BLOCK_BYTES || block + size > region.blockEnd) {
      throw corruptionAt(block, `size ${size} leaves its region`, "block ");
    }
    return block;
  }

  /** Walks a region to find the block whose area holds `address`; for error messages only. */
  #locate(address: number, region: RegionLayout): Located | null {
    let block = region.blockStart;
    while (block < region.blockEnd) {
      // A walk that stops at a damaged header exactly where `address`'s block
      // should start has found that block: its header was overwritten.
      if (!this.#blocks.headerValid(block)) {
        return block === address - HEADER_BYTES ? { block, region } : null;
      }
      const size = this.#blocks.size(block);
      if (size < MIN_BLOCK_BYTES) return null;
      if (address < block + size) return { block, region };
      block += size;
    }
    return null;
  }

  /** The header at `next`, the physical successor of `block`, verified before use. */
  checkedNeighbour(next: number, block: number): number {
    if (!this.#blocks.headerValid(next)) {
      throw new HeapCorruptionError(
        next,
        `Heap corruption at block ${hex(next)} after ${
          hex(block)
        }: check word mismatch (a payload overflow?)`,
      );
    }
    return next;
  }

  /** The free physical predecessor of `block`, found by its footer and verified. */
  checkedPrevious(block: number): number {
    const blocks = this.#blocks;
    const region = this.regionOf(block);
    // The footer is read only when it lies in the region: before the first
    // block may be a hole that identity-mapped memory leaves unmapped.
    const footerInRegion = region !== null && block - MIN_BLOCK_BYTES >= region.blockStart;
    const previousSize = footerInRegion ? blocks.previousFooter(block) : 0;
    const previous = block - previousSize;
    const sane = footerInRegion && previousSize >= MIN_BLOCK_BYTES &&
      previousSize % GRANULE_BYTES === 0 && previous >= region.blockStart;
    if (
      !sane || !blocks.headerValid(previous) || !blocks.isFree(previous) ||
      blocks.size(previous) !== previousSize
    ) {
      throw new HeapCorruptionError(
        block,
        `Heap corruption before block ${hex(block)}: ${
          footerInRegion
            ? `its free predecessor's footer (${previousSize}) does not match a free header`
            : "it is flagged as following a free block, but no block fits before it in its region"
        }`,
      );
    }
    return previous;
  }

  /**
   * Safe unlinking (glibc's `fd->bk == p && bk->fd == p`): before the policy
   * rewrites the list neighbours of the free block `block`, they must lie in
   * a usable region and point back at it, so a corrupted link is reported
   * instead of followed into an arbitrary write.
   */
  checkedLinks(block: number): void {
    const blocks = this.#blocks;
    const next = blocks.next(block);
    const previous = blocks.prev(block);
    // A link is followed only into a usable region: in identity-mapped
    // memory a read in a hole between regions would kill the process.
    if (
      (next !== 0 && (this.regionOf(next) === null || blocks.prev(next) !== block)) ||
      (previous !== 0 && (this.regionOf(previous) === null || blocks.next(previous) !== block))
    ) {
      throw corruptionAt(
        block,
        `its list links (next ${hex(next)}, previous ${hex(previous)}) do not point back at it`,
        "free block ",
      );
    }
  }
}
