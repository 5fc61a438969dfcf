/**
 * The TLSF hot path of a narrow window of one region: a heap over an
 * `ArrayBuffer` (`fromBuffer`), whose window ends at or below 2^31
 * (`narrowFits`). `tlsfFastPathFor` (tlsf_compact_fast_path.ts) builds it
 * for such heaps; the twins `TlsfCompactFastPath` (one region anywhere
 * else) and `TlsfFastPath` (any window) serve the others.
 *
 * In a narrow window every address is an int32 and every high word of a
 * link, head, size or footer is 0, and the general path reads none of them
 * (`NarrowBlockWords`): so this twin names a block by its address and reads
 * a link with one load, as the general path does. Written for this window
 * alone, its `alloc`, `free` and `resize` stay small enough for V8 to inline
 * their helpers (it inlines at most 920 bytes of bytecode into each
 * function), which the twins for other windows, reading and checking high
 * words, cannot afford here.
 *
 * Everything else is `TlsfFastPath`'s contract: exactly the general path's
 * checks before any write, its decisions and its bytes, FALLBACK (nothing
 * written) where a check fails or the call is not the common case;
 * `tests/tlsf_fast_path_test.ts` runs every twin in lockstep against the
 * general path.
 *
 * @module
 */

import { lowestBit } from "../../_math.ts";
import { blockSizeFor } from "../block.ts";
import type { HeapCounters } from "../counters.ts";
import {
  CONTROL_FL_BITMAP_OFFSET,
  CONTROL_SL_BITMAPS_OFFSET,
  controlHeadsOffset,
  SL_COUNT,
} from "../layout.ts";
import { classOfSmall, searchClassOf } from "./tlsf.ts";
import {
  FALLBACK,
  fastPathFits,
  headerIntact,
  setFlags,
  type TlsfFastPathLayout,
  writeFree,
  writeHeader,
} from "./tlsf_fast_path.ts";

/** Narrow windows end at or below this address (as `NarrowBlockWords`'s do). */
const NARROW_END = 2 ** 31;

/**
 * True when {@linkcode TlsfNarrowFastPath} serves a heap over `layout`: a
 * narrow window (ending at or below 2^31, whose high words the general path
 * does not read) with one usable region, its blocks past the window's byte 0.
 *
 * @param layout Where the heap lives.
 * @returns Whether the narrow twin applies.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { narrowFits } from "./tlsf_narrow_fast_path.ts";
 *
 * const window = { words: new Uint32Array(1024), controlWords: new Uint32Array(0), controlIndex: 0 };
 * const at = (base: number, narrow: boolean) => ({
 *   ...window, baseAddress: base, flCount: 9, key: 1, narrow,
 *   regions: [{ blockStart: base + 512, blockEnd: base + 4096 }],
 * });
 * assert.equal(narrowFits(at(0x1000, true)), true);
 * assert.equal(narrowFits(at(2 ** 36, false)), false);
 * ```
 */
export function narrowFits(layout: TlsfFastPathLayout): boolean {
  return layout.narrow && layout.regions.length === 1 &&
    fastPathFits(layout.baseAddress, layout.regions[0].blockStart) &&
    layout.regions[0].blockEnd <= NARROW_END;
}

/** `alloc`, `free` and in-place `realloc` of a TLSF heap in a narrow window of one region. */
export class TlsfNarrowFastPath {
  /** The window's words as int32 (every value below 2^31 but check words; see headerIntact). */
  readonly #words: Int32Array;
  readonly #base: number;
  readonly #start: number;
  readonly #end: number;
  readonly #control: Int32Array;
  /** Index in `#control` of the first-level bitmap, of the first second-level bitmap, of the first list head. */
  readonly #flBitmap: number;
  readonly #slBitmaps: number;
  readonly #heads: number;
  readonly #classCount: number;
  readonly #counters: HeapCounters;
  readonly #key: number;

  /**
   * Creates the fast path over a heap the general path has initialised.
   *
   * @param layout Where the heap and its control block live.
   * @param counters The totals the general path keeps too.
   */
  constructor(layout: TlsfFastPathLayout, counters: HeapCounters) {
    if (!narrowFits(layout)) {
      throw new RangeError("TlsfNarrowFastPath needs a narrow window of one region");
    }
    // Int32 views: V8 keeps their loads in 32-bit registers, where uint32 loads may become doubles.
    this.#words = int32View(layout.words);
    this.#base = layout.baseAddress;
    this.#start = layout.regions[0].blockStart;
    this.#end = layout.regions[0].blockEnd;
    this.#control = int32View(layout.controlWords);
    this.#flBitmap = layout.controlIndex + CONTROL_FL_BITMAP_OFFSET / 4;
    this.#slBitmaps = layout.controlIndex + CONTROL_SL_BITMAPS_OFFSET / 4;
    this.#heads = layout.controlIndex + controlHeadsOffset(layout.flCount) / 4;
    this.#classCount = layout.flCount * SL_COUNT;
    this.#counters = counters;
    this.#key = layout.key;
  }

  /**
   * Carves a block of `blockSize` bytes for a payload of `sizeBytes` at the
   * default alignment (general path: TlsfPolicy.find, then BlockEdits.carve in block_edits.ts).
   *
   * @param blockSize The block size, from `blockSizeFor(sizeBytes)`, at most the largest block area.
   * @param sizeBytes The payload size asked for.
   * @returns The payload address, 0 when no free block fits, or FALLBACK.
   */
  alloc(blockSize: number, sizeBytes: number): number {
    const words = this.#words;
    const base = this.#base;
    // TlsfPolicy.find at the default alignment: at most EXACT_SCAN_MAX
    // blocks of the request's own class, then the head of the first
    // non-empty class above it. Written out here rather than called so that
    // this method is compiled on its own, with its helpers inlined.
    const sizeClass = classOfSmall(blockSize);
    let block = 0;
    if (sizeClass < this.#classCount) {
      let candidate = this.#control[this.#heads + 2 * sizeClass];
      for (let steps = 0; candidate !== 0 && steps < 8; steps++) {
        if (!this.#inRegion(candidate)) return FALLBACK;
        const j = (candidate - base) >> 2;
        if (words[j] - (words[j] & 7) >= blockSize) {
          block = candidate;
          break;
        }
        candidate = words[j + 4];
      }
    }
    if (block === 0) {
      // A list head, unlike a scanned block, has not been bounds-checked yet.
      block = this.#goodFit(searchClassOf(blockSize));
      if (block === 0) return 0;
      if (!this.#inRegion(block)) return FALLBACK;
    }
    const i = (block - base) >> 2;
    const word0 = words[i];
    const size = word0 - (word0 & 7);
    if (
      (word0 & 1) === 0 || !headerIntact(words, i, block, this.#key) ||
      !this.#linksIntact(i, block) || size < blockSize
    ) {
      return FALLBACK;
    }
    const counters = this.#counters;
    const remainder = size - blockSize;
    counters.dropFree(size);
    // #unlink(i, size), written out: the most frequent list update.
    const previous = words[i + 6];
    const next = words[i + 4];
    if (next !== 0) setLink(words, ((next - base) >> 2) + 6, previous);
    if (previous !== 0) setLink(words, ((previous - base) >> 2) + 4, next);
    else this.#setHead(classOfSmall(size), next, next === 0);
    let usedSize = size;
    let last = word0 & 4;
    if (remainder >= 40) {
      const tail = block + blockSize;
      // #link(tail, remainder), written out.
      const tailClass = classOfSmall(remainder);
      const head = this.#control[this.#heads + 2 * tailClass];
      const t = i + (blockSize >> 2);
      setLink(words, t + 6, 0);
      setLink(words, t + 4, head);
      if (head !== 0) setLink(words, ((head - base) >> 2) + 6, tail);
      this.#setHead(tailClass, tail, head === 0);
      writeFree(words, t, tail, remainder, last, this.#key);
      counters.addFree(remainder);
      usedSize = blockSize;
      last = 0;
    } else if (last === 0) {
      const n = i + (size >> 2);
      setFlags(words, n, block + size, words[n] & ~2, this.#key);
    }
    const slack = usedSize - 16 - sizeBytes;
    writeHeader(words, i, block, usedSize, (word0 & 2) | last, slack, this.#key);
    counters.addUsed(sizeBytes, slack);
    return block + 16;
  }

  /**
   * Frees the payload at `address` and merges the block with its free
   * neighbours (general path: PhysicalAllocator.free).
   *
   * @param address What the caller passed to `free`.
   * @returns 0 when freed, or FALLBACK (nothing was written).
   */
  free(address: number): number {
    const block = this.#usedBlock(address);
    if (block === 0) return FALLBACK;
    const words = this.#words;
    const i = (block - this.#base) >> 2;
    const word0 = words[i];
    const size = word0 - (word0 & 7);
    const nextWord0 = this.#successorWord0(i, block, size, word0);
    if (nextWord0 === FALLBACK) return FALLBACK;
    const previous = (word0 & 2) === 0 ? 0 : this.#freePredecessor(i, block);
    if (previous === FALLBACK) return FALLBACK;

    const counters = this.#counters;
    const slack = words[i + 2];
    counters.dropUsed(size - 16 - slack, slack);
    let start = block;
    let total = size;
    let last = word0 & 4;
    if ((nextWord0 & 1) !== 0) {
      const nextSize = nextWord0 - (nextWord0 & 7);
      last = nextWord0 & 4;
      counters.dropFree(nextSize);
      total += nextSize;
      this.#unlink(i + (size >> 2), nextSize);
    }
    if (previous !== 0) {
      // The general path's tombstone: freeing `address` again is a double free.
      writeHeader(words, i, block, 0, 1, 0, this.#key);
      const previousSize = block - previous;
      counters.dropFree(previousSize);
      start = previous;
      total += previousSize;
      this.#unlink(i - (previousSize >> 2), previousSize);
    }
    // #link(start, total), written out.
    const base = this.#base;
    const s = (start - base) >> 2;
    const startClass = classOfSmall(total);
    const head = this.#control[this.#heads + 2 * startClass];
    setLink(words, s + 6, 0);
    setLink(words, s + 4, head);
    if (head !== 0) setLink(words, ((head - base) >> 2) + 6, start);
    this.#setHead(startClass, start, head === 0);
    writeFree(words, s, start, total, last, this.#key);
    counters.addFree(total);
    if (last === 0) {
      const after = s + (total >> 2);
      setFlags(words, after, start + total, words[after] | 2, this.#key);
    }
    return 0;
  }

  /**
   * Resizes the allocation at `address` in place where the general path
   * would: shrinking, or growing into a free successor.
   *
   * @param address What the caller passed to `realloc`.
   * @param sizeBytes The new payload size asked for.
   * @returns `address` when resized in place, 0 when the payload must move
   *   (the block and its successor are verified), or FALLBACK (nothing was written).
   */
  resize(address: number, sizeBytes: number): number {
    if (typeof sizeBytes !== "number" || (sizeBytes | 0) !== sizeBytes || sizeBytes <= 0) {
      return FALLBACK;
    }
    const block = this.#usedBlock(address);
    if (block === 0) return FALLBACK;
    const i = (block - this.#base) >> 2;
    const word0 = this.#words[i];
    const size = word0 - (word0 & 7);
    const nextWord0 = this.#successorWord0(i, block, size, word0);
    if (nextWord0 === FALLBACK) return FALLBACK;
    const newBlockSize = blockSizeFor(sizeBytes);
    if (newBlockSize <= size) {
      this.#shrink(i, block, word0, newBlockSize, sizeBytes, nextWord0);
      return address;
    }
    if ((nextWord0 & 1) !== 0 && size + nextWord0 - (nextWord0 & 7) >= newBlockSize) {
      this.#grow(i, block, word0, newBlockSize, sizeBytes, nextWord0);
      return address;
    }
    return 0;
  }

  /** Shrinks the used block `block` to `newBlockSize`, giving the rest back (general path: BlockEdits.shrinkInPlace). */
  #shrink(
    i: number,
    block: number,
    word0: number,
    newBlockSize: number,
    sizeBytes: number,
    nextWord0: number,
  ): void {
    const words = this.#words;
    const counters = this.#counters;
    const size = word0 - (word0 & 7);
    const oldSlack = words[i + 2];
    const remainder = size - newBlockSize;
    const tail = block + newBlockSize;
    const t = i + (newBlockSize >> 2);
    counters.usedBytes += sizeBytes - (size - 16 - oldSlack);
    let usedSize = newBlockSize;
    if (remainder > 0 && (nextWord0 & 1) !== 0) {
      const nextSize = nextWord0 - (nextWord0 & 7);
      this.#unlink(i + (size >> 2), nextSize);
      this.#link(tail, remainder + nextSize);
      writeFree(words, t, tail, remainder + nextSize, nextWord0 & 4, this.#key);
      counters.dropFree(nextSize);
      counters.addFree(remainder + nextSize);
    } else if (remainder >= 40) {
      writeFree(words, t, tail, remainder, word0 & 4, this.#key);
      this.#link(tail, remainder);
      counters.addFree(remainder);
      if ((word0 & 4) === 0) {
        setFlags(words, i + (size >> 2), block + size, nextWord0 | 2, this.#key);
      }
    } else {
      usedSize = size;
    }
    // A block that keeps its whole size keeps its LAST flag too.
    const flags = usedSize === size ? word0 & 6 : word0 & 2;
    this.#writeUsed(i, block, usedSize, flags, sizeBytes, oldSlack);
  }

  /** Grows the used block `block` into its free successor (general path: BlockEdits.growInPlace). */
  #grow(
    i: number,
    block: number,
    word0: number,
    newBlockSize: number,
    sizeBytes: number,
    nextWord0: number,
  ): void {
    const words = this.#words;
    const counters = this.#counters;
    const size = word0 - (word0 & 7);
    const nextSize = nextWord0 - (nextWord0 & 7);
    const nextLast = nextWord0 & 4;
    const oldSlack = words[i + 2];
    const remainder = size + nextSize - newBlockSize;
    counters.usedBytes += sizeBytes - (size - 16 - oldSlack);
    counters.dropFree(nextSize);
    this.#unlink(i + (size >> 2), nextSize);
    if (remainder >= 40) {
      const tail = block + newBlockSize;
      this.#link(tail, remainder);
      writeFree(words, i + (newBlockSize >> 2), tail, remainder, nextLast, this.#key);
      counters.addFree(remainder);
      this.#writeUsed(i, block, newBlockSize, word0 & 2, sizeBytes, oldSlack);
    } else {
      if (nextLast === 0) {
        const after = i + ((size + nextSize) >> 2);
        setFlags(words, after, block + size + nextSize, words[after] & ~2, this.#key);
      }
      this.#writeUsed(i, block, size + nextSize, (word0 & 2) | nextLast, sizeBytes, oldSlack);
    }
  }

  /** Writes a used block's header for a payload of `sizeBytes` and books the slack change. */
  #writeUsed(
    i: number,
    block: number,
    blockSize: number,
    flags: number,
    sizeBytes: number,
    oldSlack: number,
  ): void {
    const slack = blockSize - 16 - sizeBytes;
    writeHeader(this.#words, i, block, blockSize, flags, slack, this.#key);
    this.#counters.slackBytes += slack - oldSlack;
  }

  /**
   * The block of the live payload at `address`, verified as the general
   * path's BlockVerifier.usedBlockAt does; 0 when any check fails.
   */
  #usedBlock(address: number): number {
    // An integer below 2^31 on the granule; anything else is the general path's to report.
    if (typeof address !== "number" || (address | 0) !== address || (address & 7) !== 0) return 0;
    const block = address - 16;
    if (block < this.#start || block + 40 > this.#end) return 0;
    const words = this.#words;
    const i = (block - this.#base) >> 2;
    const word0 = words[i];
    const size = word0 - (word0 & 7);
    if (
      (word0 & 1) !== 0 || !headerIntact(words, i, block, this.#key) || size < 40 ||
      block + size > this.#end
    ) {
      return 0;
    }
    return block;
  }

  /**
   * The first header word of the physical successor of the used block at
   * word `i`, verified (and its list links, when it is free); 0 when the
   * block ends its region, FALLBACK when a check fails.
   */
  #successorWord0(i: number, block: number, size: number, word0: number): number {
    if ((word0 & 4) !== 0) return 0;
    const next = block + size;
    if (next >= this.#end) return FALLBACK;
    const n = i + (size >> 2);
    const nextWord0 = this.#words[n];
    if (
      !headerIntact(this.#words, n, next, this.#key) ||
      ((nextWord0 & 1) !== 0 && !this.#linksIntact(n, next))
    ) {
      return FALLBACK;
    }
    return nextWord0;
  }

  /**
   * The free block before the block at word `i`, found by its footer and
   * verified (header, free flag, size, list links) as the general path's
   * BlockVerifier.checkedPrevious and checkedLinks do; FALLBACK when a check fails.
   */
  #freePredecessor(i: number, block: number): number {
    // The footer is read only when a free block can lie before this one in the region.
    if (block - 40 < this.#start) return FALLBACK;
    const words = this.#words;
    const previousSize = words[i - 2];
    const previous = block - previousSize;
    if (previousSize < 40 || (previousSize & 7) !== 0 || previous < this.#start) return FALLBACK;
    const p = i - (previousSize >> 2);
    const word0 = words[p];
    if (
      (word0 & 1) === 0 || word0 - (word0 & 7) !== previousSize ||
      !headerIntact(words, p, previous, this.#key) || !this.#linksIntact(p, previous)
    ) {
      return FALLBACK;
    }
    return previous;
  }

  /** The head of the first non-empty class at or above `sizeClass`, or 0. */
  #goodFit(sizeClass: number): number {
    if (sizeClass >= this.#classCount) return 0;
    const control = this.#control;
    let fl = sizeClass >>> 4;
    let slMap = control[this.#slBitmaps + fl] & (~0 << (sizeClass & 15));
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
    return control[this.#heads + 2 * ((fl << 4) + lowestBit(slMap))];
  }

  /** Takes the free block at word `i` off its class list (TlsfPolicy.remove). */
  #unlink(i: number, size: number): void {
    const words = this.#words;
    const previous = words[i + 6];
    const next = words[i + 4];
    if (next !== 0) setLink(words, this.#index(next) + 6, previous);
    if (previous !== 0) setLink(words, this.#index(previous) + 4, next);
    else this.#setHead(classOfSmall(size), next, next === 0);
  }

  /** Puts the free block `block` at the head of its class list (TlsfPolicy.insert). */
  #link(block: number, size: number): void {
    const words = this.#words;
    const sizeClass = classOfSmall(size);
    const head = this.#control[this.#heads + 2 * sizeClass];
    const i = this.#index(block);
    setLink(words, i + 6, 0);
    setLink(words, i + 4, head);
    if (head !== 0) setLink(words, this.#index(head) + 6, block);
    this.#setHead(sizeClass, block, head === 0);
  }

  /**
   * Makes `block` (0: none) the head of `sizeClass`; when `flips`, the
   * class was empty or becomes empty, and its bitmap bits follow.
   */
  #setHead(sizeClass: number, block: number, flips: boolean): void {
    setLink(this.#control, this.#heads + 2 * sizeClass, block);
    if (flips) this.#flipClass(sizeClass, block !== 0);
  }

  /** Marks `sizeClass` non-empty or empty in the bitmaps (TlsfPolicy.#markNonEmpty, #markEmpty). */
  #flipClass(sizeClass: number, nonEmpty: boolean): void {
    const control = this.#control;
    const fl = sizeClass >>> 4;
    const sl = this.#slBitmaps + fl;
    const flWord = this.#flBitmap + (fl >>> 5);
    if (nonEmpty) {
      control[sl] |= 1 << (sizeClass & 15);
      control[flWord] |= 1 << (fl & 31);
    } else {
      control[sl] &= ~(1 << (sizeClass & 15));
      if (control[sl] === 0) control[flWord] &= ~(1 << (fl & 31));
    }
  }

  /** The word index of `address` in the window. */
  #index(address: number): number {
    return (address - this.#base) >> 2;
  }

  /** True when `address` is a granule address inside the region's block area. */
  #inRegion(address: number): boolean {
    return address >= this.#start && address < this.#end && (address & 7) === 0;
  }

  /**
   * Safe unlinking (BlockVerifier.checkedLinks): the list neighbours of the
   * free block at word `i` lie in the region and point back at it.
   */
  #linksIntact(i: number, block: number): boolean {
    const words = this.#words;
    const next = words[i + 4];
    const previous = words[i + 6];
    return (next === 0 ||
      (this.#inRegion(next) && words[((next - this.#base) >> 2) + 6] === block)) &&
      (previous === 0 ||
        (this.#inRegion(previous) && words[((previous - this.#base) >> 2) + 4] === block));
  }
}

/** Writes a u64 link whose high word is 0 (every address in a narrow window is below 2^31). */
function setLink(words: Int32Array, i: number, value: number): void {
  words[i] = value;
  words[i + 1] = 0;
}

function int32View(words: Uint32Array): Int32Array {
  return new Int32Array(words.buffer, words.byteOffset, words.length);
}
