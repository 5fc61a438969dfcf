/**
 * The running totals behind `stats()` and the accounting half of `check()`:
 * one object shared by the general allocator path and the TLSF fast path, so
 * whichever path serves an operation keeps the same books.
 *
 * @module
 */

import { HEADER_BYTES } from "./layout.ts";

/** Free and used totals, updated by every operation that changes a block. */
export class HeapCounters {
  /** Payload capacity of the free blocks (their sizes minus headers). */
  freeBytes = 0;
  /** Free blocks. */
  freeBlocks = 0;
  /** Bytes requested by the live allocations. */
  usedBytes = 0;
  /** Live allocations. */
  usedBlocks = 0;
  /** Payload capacity of used blocks beyond the bytes requested. */
  slackBytes = 0;

  /** Counts a new free block of `sizeBytes`. */
  addFree(sizeBytes: number): void {
    this.freeBytes += sizeBytes - HEADER_BYTES;
    this.freeBlocks++;
  }

  /** Forgets a free block of `sizeBytes` (merged, carved or taken). */
  dropFree(sizeBytes: number): void {
    this.freeBytes -= sizeBytes - HEADER_BYTES;
    this.freeBlocks--;
  }

  /** Counts a new used block holding `sizeBytes` with `slackBytes` to spare. */
  addUsed(sizeBytes: number, slackBytes: number): void {
    this.usedBlocks++;
    this.usedBytes += sizeBytes;
    this.slackBytes += slackBytes;
  }

  /** Forgets a used block that held `sizeBytes` with `slackBytes` to spare. */
  dropUsed(sizeBytes: number, slackBytes: number): void {
    this.usedBlocks--;
    this.usedBytes -= sizeBytes;
    this.slackBytes -= slackBytes;
  }

  /**
   * Reads the five totals from `values` at `index` (a shared heap's header):
   * a shared heap keeps its books in the shared memory and copies them in
   * when a Worker takes the block lock, so both paths stay monomorphic.
   */
  loadFrom(values: Float64Array, index: number): void {
    this.freeBytes = values[index];
    this.freeBlocks = values[index + 1];
    this.usedBytes = values[index + 2];
    this.usedBlocks = values[index + 3];
    this.slackBytes = values[index + 4];
  }

  /** Writes the five totals to `values` at `index`, before the block lock is released. */
  storeTo(values: Float64Array, index: number): void {
    values[index] = this.freeBytes;
    values[index + 1] = this.freeBlocks;
    values[index + 2] = this.usedBytes;
    values[index + 3] = this.usedBlocks;
    values[index + 4] = this.slackBytes;
  }
}
