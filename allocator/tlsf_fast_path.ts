/**
 * The TLSF hot path: `alloc` at the default alignment and `free`, fused
 * into straight-line code over one `Uint32Array`, for the heaps most
 * programs make (one region, a window ending below 2^31, TLSF searched in
 * TypeScript, no debug mode).
 *
 * It makes exactly the decisions of the general path (`PhysicalAllocator`
 * with `TlsfPolicy`) and writes exactly the same bytes, so the two can serve
 * the same heap in turns; `tests/tlsf_fast_path_test.ts` replays both
 * side by side and compares every result and every byte. The general path
 * is built from small verified steps that V8 cannot inline into one
 * function; here the same steps are written out once, each header word is
 * read once, and the list and bitmap updates are done in place.
 *
 * Every check the general path makes before it writes (header check words,
 * free flags, sizes inside the region, safe unlinking of list neighbours)
 * is made here too, never fewer. When one fails, or the request is not the
 * common case, the method returns {@linkcode FALLBACK} before writing
 * anything, and the general path runs the operation instead: it either
 * performs it or throws its precise error.
 *
 * @module
 */

import type { HeapCounters } from "./heap_counters.ts";
import {
  CONTROL_FL_BITMAP_OFFSET,
  CONTROL_SL_BITMAPS_OFFSET,
  controlHeadsOffset,
  FLAG_FREE,
  FLAG_LAST,
  FLAG_PREV_FREE,
  FLAGS_MASK,
  FOOTER_BYTES,
  HEADER_BYTES,
  headerCheck,
  MIN_BLOCK_BYTES,
  SL_COUNT,
  SL_LOG2,
} from "./layout.ts";
import { classOf, EXACT_SCAN_MAX, searchClassOf } from "./policy_tlsf.ts";

/** Returned when the general path must run the operation instead. */
export const FALLBACK = -1;

/** Word offsets inside a block (see layout.ts). */
const CHECK_WORD = 3;
const NEXT_WORD = 4;
const PREV_WORD = 6;

/** Where the fast path's heap lives. */
export interface TlsfFastPathLayout {
  /** The window as 32-bit words. */
  readonly words: Uint32Array;
  /** The address of the window's byte 0; the window ends below 2^31. */
  readonly baseAddress: number;
  /** The address of the region's first block. */
  readonly blockStart: number;
  /** The end of the region's block area (exclusive). */
  readonly blockEnd: number;
  /** The words holding the control block, and the index of its first word. */
  readonly controlWords: Uint32Array;
  /** Index of the control block's first word in `controlWords`. */
  readonly controlIndex: number;
  /** The TLSF policy's first-level count. */
  readonly flCount: number;
}

/** `alloc` and `free` of the common TLSF heap, in one function each. */
export class TlsfFastPath {
  readonly #words: Uint32Array;
  readonly #base: number;
  readonly #start: number;
  readonly #end: number;
  readonly #control: Uint32Array;
  /** Index of the first-level bitmap, of the first second-level bitmap and of the first list head. */
  readonly #flBitmap: number;
  readonly #slBitmaps: number;
  readonly #heads: number;
  readonly #classCount: number;
  readonly #counters: HeapCounters;

  /**
   * Creates the fast path over a heap the general path has initialised.
   *
   * @param layout Where the heap and its control block live.
   * @param counters The totals the general path keeps too.
   */
  constructor(layout: TlsfFastPathLayout, counters: HeapCounters) {
    this.#words = layout.words;
    this.#base = layout.baseAddress;
    this.#start = layout.blockStart;
    this.#end = layout.blockEnd;
    this.#control = layout.controlWords;
    this.#flBitmap = layout.controlIndex + CONTROL_FL_BITMAP_OFFSET / 4;
    this.#slBitmaps = layout.controlIndex + CONTROL_SL_BITMAPS_OFFSET / 4;
    this.#heads = layout.controlIndex + controlHeadsOffset(layout.flCount) / 4;
    this.#classCount = layout.flCount * SL_COUNT;
    this.#counters = counters;
  }

  /**
   * Carves a block of `blockSize` bytes for a payload of `sizeBytes` at the
   * default alignment.
   *
   * @param blockSize The block size, from `blockSizeFor(sizeBytes)`, at most the largest block area.
   * @param sizeBytes The payload size asked for.
   * @returns The payload address, 0 when no free block fits, or FALLBACK.
   */
  alloc(blockSize: number, sizeBytes: number): number {
    const block = this.#find(blockSize);
    if (block <= 0) return block;
    if (block < this.#start || block >= this.#end || (block & 7) !== 0) return FALLBACK;
    const words = this.#words;
    const i = (block - this.#base) >> 2;
    const word0 = words[i];
    const size = word0 - (word0 & FLAGS_MASK);
    if (
      (word0 & FLAG_FREE) === 0 || !this.#headerIntact(i, block) || !this.#linksIntact(i, block) ||
      size < blockSize
    ) {
      return FALLBACK;
    }
    const flags = word0 & FLAGS_MASK;
    const remainder = size - blockSize;
    const counters = this.#counters;
    counters.dropFree(size);
    this.#unlink(i, size);
    let usedSize = size;
    let last = flags & FLAG_LAST;
    if (remainder >= MIN_BLOCK_BYTES) {
      const tail = block + blockSize;
      this.#link(tail, remainder);
      this.#writeFree(tail, remainder, last);
      counters.addFree(remainder);
      usedSize = blockSize;
      last = 0;
    } else if (last === 0) {
      this.#setFlags(block + size, words[(block + size - this.#base) >> 2] & ~FLAG_PREV_FREE);
    }
    const slack = usedSize - HEADER_BYTES - sizeBytes;
    this.#writeHeader(block, usedSize, (flags & FLAG_PREV_FREE) | last, slack);
    counters.addUsed(sizeBytes, slack);
    return block + HEADER_BYTES;
  }

  /**
   * Frees the payload at `address` and merges the block with free neighbours.
   *
   * @param address What the caller passed to `free`.
   * @returns 0 when freed, or FALLBACK (nothing was written).
   */
  free(address: number): number {
    // An integer below 2^31 whose block lies inside the region; anything else is the general path's.
    if (typeof address !== "number" || (address | 0) !== address || (address & 7) !== 0) {
      return FALLBACK;
    }
    const block = address - HEADER_BYTES;
    if (block < this.#start || block + MIN_BLOCK_BYTES > this.#end) return FALLBACK;
    const words = this.#words;
    const base = this.#base;
    const i = (block - base) >> 2;
    const word0 = words[i];
    const size = word0 - (word0 & FLAGS_MASK);
    if (
      (word0 & FLAG_FREE) !== 0 || !this.#headerIntact(i, block) || size < MIN_BLOCK_BYTES ||
      block + size > this.#end
    ) {
      return FALLBACK;
    }
    // The successor and predecessor, verified as the general path does, before any write.
    let last = word0 & FLAG_LAST;
    let next = 0;
    let nextWord0 = 0;
    if (last === 0) {
      next = block + size;
      if (next >= this.#end || !this.#headerIntact((next - base) >> 2, next)) return FALLBACK;
      nextWord0 = words[(next - base) >> 2];
      if ((nextWord0 & FLAG_FREE) !== 0 && !this.#linksIntact((next - base) >> 2, next)) {
        return FALLBACK;
      }
    }
    let previous = 0;
    if ((word0 & FLAG_PREV_FREE) !== 0) {
      previous = this.#freePredecessor(i, block);
      if (previous === 0) return FALLBACK;
    }

    const counters = this.#counters;
    const slack = words[i + 2];
    counters.dropUsed(size - HEADER_BYTES - slack, slack);
    let start = block;
    let total = size;
    if ((nextWord0 & FLAG_FREE) !== 0) {
      const nextSize = nextWord0 - (nextWord0 & FLAGS_MASK);
      last = nextWord0 & FLAG_LAST;
      counters.dropFree(nextSize);
      total += nextSize;
      this.#unlink((next - base) >> 2, nextSize);
      if (previous === 0) this.#link(block, total);
    }
    if (previous !== 0) {
      // The tombstone of the general path: freeing `address` again is a double free.
      this.#writeHeader(block, 0, FLAG_FREE, 0);
      const previousSize = block - previous;
      counters.dropFree(previousSize);
      start = previous;
      total += previousSize;
      this.#unlink((previous - base) >> 2, previousSize);
      this.#link(previous, total);
    } else if ((nextWord0 & FLAG_FREE) === 0) {
      this.#link(block, total);
    }
    this.#writeFree(start, total, last);
    counters.addFree(total);
    if (last === 0) {
      const after = start + total;
      this.#setFlags(after, words[(after - base) >> 2] | FLAG_PREV_FREE);
    }
    return 0;
  }

  /**
   * The free block before the block at word `i`, found by its footer and
   * verified (header, free flag, size, list links); 0 when any check fails.
   */
  #freePredecessor(i: number, block: number): number {
    const words = this.#words;
    const previousSize = words[i - 2];
    const previous = block - previousSize;
    if (previousSize < MIN_BLOCK_BYTES || (previousSize & 7) !== 0 || previous < this.#start) {
      return 0;
    }
    const p = (previous - this.#base) >> 2;
    const word0 = words[p];
    if (
      (word0 & FLAG_FREE) === 0 || word0 - (word0 & FLAGS_MASK) !== previousSize ||
      !this.#headerIntact(p, previous) || !this.#linksIntact(p, previous)
    ) {
      return 0;
    }
    return previous;
  }

  /**
   * The policy's search: at most EXACT_SCAN_MAX blocks of the request's own
   * class, then the head of the first non-empty class above it. Returns a
   * block address, 0 when none fits, or FALLBACK when a list link leaves
   * the region (the general path reports that).
   */
  #find(blockSize: number): number {
    const words = this.#words;
    const sizeClass = classOf(blockSize);
    if (sizeClass < this.#classCount) {
      let block = this.#control[this.#heads + 2 * sizeClass];
      for (let steps = 0; block !== 0 && steps < EXACT_SCAN_MAX; steps++) {
        if (block < this.#start || block >= this.#end || (block & 7) !== 0) return FALLBACK;
        const j = (block - this.#base) >> 2;
        const word0 = words[j];
        if (word0 - (word0 & FLAGS_MASK) >= blockSize) return block;
        block = words[j + NEXT_WORD];
      }
    }
    return this.#goodFit(searchClassOf(blockSize));
  }

  /** The head of the first non-empty class at or above `sizeClass`, or 0. */
  #goodFit(sizeClass: number): number {
    if (sizeClass >= this.#classCount) return 0;
    const control = this.#control;
    let fl = sizeClass >>> SL_LOG2;
    let slMap = control[this.#slBitmaps + fl] & (~0 << (sizeClass & (SL_COUNT - 1)));
    if (slMap === 0) {
      const from = fl + 1;
      let flMap = from < 32 ? control[this.#flBitmap] & (~0 << from) : 0;
      let flBase = 0;
      if (flMap === 0) {
        flMap = control[this.#flBitmap + 1] & (from <= 32 ? ~0 : ~0 << (from - 32));
        flBase = 32;
      }
      if (flMap === 0) return 0;
      fl = flBase + lowestBit(flMap);
      slMap = control[this.#slBitmaps + fl];
    }
    return control[this.#heads + 2 * ((fl << SL_LOG2) + lowestBit(slMap))];
  }

  /** Takes the free block at word `i` off its class list (TlsfPolicy.remove). */
  #unlink(i: number, size: number): void {
    const words = this.#words;
    const base = this.#base;
    const previous = words[i + PREV_WORD];
    const next = words[i + NEXT_WORD];
    if (next !== 0) setLink(words, ((next - base) >> 2) + PREV_WORD, previous);
    if (previous !== 0) {
      setLink(words, ((previous - base) >> 2) + NEXT_WORD, next);
      return;
    }
    const sizeClass = classOf(size);
    setLink(this.#control, this.#heads + 2 * sizeClass, next);
    if (next === 0) {
      const control = this.#control;
      const fl = sizeClass >>> SL_LOG2;
      const slMap = control[this.#slBitmaps + fl] & ~(1 << (sizeClass & (SL_COUNT - 1)));
      control[this.#slBitmaps + fl] = slMap;
      if (slMap === 0) control[this.#flBitmap + (fl >>> 5)] &= ~(1 << (fl & 31));
    }
  }

  /** Puts the free block `block` at the head of its class list (TlsfPolicy.insert). */
  #link(block: number, size: number): void {
    const words = this.#words;
    const control = this.#control;
    const sizeClass = classOf(size);
    const head = control[this.#heads + 2 * sizeClass];
    const i = (block - this.#base) >> 2;
    setLink(words, i + PREV_WORD, 0);
    setLink(words, i + NEXT_WORD, head);
    if (head !== 0) {
      setLink(words, ((head - this.#base) >> 2) + PREV_WORD, block);
    } else {
      const fl = sizeClass >>> SL_LOG2;
      control[this.#slBitmaps + fl] |= 1 << (sizeClass & (SL_COUNT - 1));
      control[this.#flBitmap + (fl >>> 5)] |= 1 << (fl & 31);
    }
    setLink(control, this.#heads + 2 * sizeClass, block);
  }

  /** True when the check word of the header at word `i` (address `block`) matches. */
  #headerIntact(i: number, block: number): boolean {
    const words = this.#words;
    return words[i + CHECK_WORD] === headerCheck(block, words[i], words[i + 1], words[i + 2]);
  }

  /**
   * Safe unlinking: the list neighbours of the free block at word `i` lie
   * in the region, on the granule, and point back at it.
   */
  #linksIntact(i: number, block: number): boolean {
    const words = this.#words;
    const next = words[i + NEXT_WORD];
    const previous = words[i + PREV_WORD];
    return (next === 0 || this.#pointsBack(next, PREV_WORD, block)) &&
      (previous === 0 || this.#pointsBack(previous, NEXT_WORD, block));
  }

  /** True when `neighbour` is a granule address in the region whose link at `linkWord` is `block`. */
  #pointsBack(neighbour: number, linkWord: number, block: number): boolean {
    return neighbour >= this.#start && neighbour < this.#end && (neighbour & 7) === 0 &&
      this.#words[((neighbour - this.#base) >> 2) + linkWord] === block;
  }

  /** Writes a whole header (high size word 0: the window ends below 2^31). */
  #writeHeader(block: number, size: number, flags: number, slack: number): void {
    const words = this.#words;
    const i = (block - this.#base) >> 2;
    const word0 = (size | flags) >>> 0;
    words[i] = word0;
    words[i + 1] = 0;
    words[i + 2] = slack;
    words[i + CHECK_WORD] = headerCheck(block, word0, 0, slack);
  }

  /** Writes a free block's header and footer. */
  #writeFree(block: number, size: number, last: number): void {
    this.#writeHeader(block, size, FLAG_FREE | last, 0);
    setLink(this.#words, (block + size - FOOTER_BYTES - this.#base) >> 2, size);
  }

  /** Replaces the flag bits of the header at `block` by those of `word0`, keeping it intact. */
  #setFlags(block: number, word0: number): void {
    const words = this.#words;
    const i = (block - this.#base) >> 2;
    words[i] = word0;
    words[i + CHECK_WORD] = headerCheck(block, word0 >>> 0, words[i + 1], words[i + 2]);
  }
}

/** Writes a u64 link, head or footer below 2^31 at word `i`: the value, then a zero high word. */
function setLink(words: Uint32Array, i: number, value: number): void {
  words[i] = value;
  words[i + 1] = 0;
}

/** Index of the lowest set bit of a non-zero u32. */
function lowestBit(value: number): number {
  return 31 - Math.clz32(value & -value);
}
