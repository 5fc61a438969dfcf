/**
 * The TLSF hot path of a window of one region anywhere in the address
 * space (`compactFits`): identity-mapped memory at the machine's physical
 * addresses (64 GiB, say), or a buffer heap with a high `baseAddress`.
 * {@linkcode tlsfFastPathFor} picks the fast path of every heap: the narrow
 * twin (tlsf_narrow_fast_path.ts) for one region below 2^31, this one for
 * one region elsewhere, and `TlsfFastPath` (tlsf_fast_path.ts) for every
 * other window (several regions, 2^31 bytes and more, a region crossing a
 * multiple of 4 GiB or whose addresses' low words pass 2^31).
 *
 * In such a region every address has the same high word, and its low word
 * is an int32 above 0: that low word names the block, as the address itself
 * does in the narrow twin, so the header check word, links and heads are
 * written from it directly and V8 keeps every computation in 32-bit
 * registers. A link is trusted only when its high word is the region's (the
 * general path reads the whole u64); no block of 2^31 bytes or more, no
 * block past the span, no region lookup and no carry exist here, so the
 * code the general twin needs for them is left out. That keeps `alloc`,
 * `free` and `resize` small enough for V8 to inline their helpers (it
 * inlines at most 920 bytes of bytecode into each function), which the
 * general twin is not.
 *
 * Everything else is `TlsfFastPath`'s contract: exactly the general path's
 * checks before any write, its decisions and its bytes, FALLBACK (nothing
 * written) where a check fails or the call is not the common case;
 * `tests/tlsf_fast_path_test.ts` runs every twin in lockstep against the
 * general path.
 *
 * @module
 */

import type { HeapCounters } from "../counters.ts";
import { blockSizeFor } from "../block.ts";
import {
  CONTROL_FL_BITMAP_OFFSET,
  CONTROL_SL_BITMAPS_OFFSET,
  controlHeadsOffset,
  SL_COUNT,
} from "../layout.ts";
import { lowestBit } from "../../_math.ts";
import { classOfSmall, searchClassOf } from "./tlsf.ts";
import {
  FALLBACK,
  fastPathFits,
  headerIntact,
  setFlags,
  SPAN_BYTES_MAX,
  TlsfFastPath,
  type TlsfFastPathLayout,
  writeFree,
  writeHeader,
} from "./tlsf_fast_path.ts";
import { narrowFits, TlsfNarrowFastPath } from "./tlsf_narrow_fast_path.ts";

/** The low words of a compact region's addresses lie in [1, COMPACT_LOW_WORD_END): int32s above 0. */
const COMPACT_LOW_WORD_END = 2 ** 31 - 8;

/**
 * True when {@linkcode TlsfCompactFastPath} serves a heap over `layout`: one
 * usable region, whose blocks lie past the window's byte 0 and in its first
 * SPAN_BYTES_MAX bytes, and whose addresses all share the window base's high
 * word and have a low word below 2^31 (an int32 above 0: the block's name).
 *
 * @param layout Where the heap lives.
 * @returns Whether the compact twin applies.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { compactFits } from "./tlsf_compact_fast_path.ts";
 *
 * const window = { words: new Uint32Array(1024), controlWords: new Uint32Array(0), controlIndex: 0 };
 * const at = (base: number) => ({
 *   ...window, baseAddress: base, flCount: 9, key: 1, narrow: base < 2 ** 31,
 *   regions: [{ blockStart: base + 512, blockEnd: base + 4096 }],
 * });
 * assert.equal(compactFits(at(0x1000)), true);
 * assert.equal(compactFits(at(2 ** 36)), true);
 * assert.equal(compactFits(at(2 ** 32 - 1024)), false); // crosses 4 GiB
 * assert.equal(compactFits(at(2 ** 32 + 2 ** 31)), false); // low words of 2^31 and more
 * ```
 */
export function compactFits(layout: TlsfFastPathLayout): boolean {
  if (layout.regions.length !== 1) return false;
  const { blockStart, blockEnd } = layout.regions[0];
  const base = layout.baseAddress;
  const hiBase = Math.floor(base / 2 ** 32) * 2 ** 32;
  return fastPathFits(base, blockStart) && blockEnd - base <= SPAN_BYTES_MAX &&
    blockEnd - base <= layout.words.length * 4 && blockEnd - hiBase <= COMPACT_LOW_WORD_END;
}

/**
 * The fast path for a heap over `layout`: the compact twin where it fits,
 * else the general one.
 *
 * @param layout Where the heap lives (see `fastPathFits`: it must fit the general twin).
 * @param counters The totals the general path keeps too.
 * @returns The fast path to try before the general path.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { PhysicalAllocator } from "@phys/allocator";
 *
 * // PhysicalAllocator builds its fast path with tlsfFastPathFor: a buffer heap gets the compact twin.
 * const heap = PhysicalAllocator.fromBuffer(new Uint8Array(1 << 16));
 * assert.equal(heap.fastPathActive, true);
 * ```
 */
export function tlsfFastPathFor(
  layout: TlsfFastPathLayout,
  counters: HeapCounters,
): TlsfNarrowFastPath | TlsfCompactFastPath | TlsfFastPath {
  if (narrowFits(layout)) return new TlsfNarrowFastPath(layout, counters);
  return compactFits(layout)
    ? new TlsfCompactFastPath(layout, counters)
    : new TlsfFastPath(layout, counters);
}

/** `alloc`, `free` and in-place `realloc` of a compact TLSF heap (see the module doc). */
export class TlsfCompactFastPath {
  /** The window's words as int32 (V8 keeps their loads in 32-bit registers), up to the region's end. */
  readonly #words: Int32Array;
  /** The high word of every address in the region, and that high word times 2^32. */
  readonly #hi: number;
  readonly #hiBase: number;
  /** The low word of the window's base address (int32, at least 0). */
  readonly #baseLo: number;
  /** The region's block area, [start, end), as low words. */
  readonly #start: number;
  readonly #end: number;
  /** The control block's list heads (two words each), and its bitmaps: first level (two words), then second. */
  readonly #heads: Int32Array;
  readonly #flBitmap: Int32Array;
  readonly #slBitmaps: Int32Array;
  readonly #classCount: number;
  readonly #counters: HeapCounters;
  readonly #key: number;

  /**
   * Creates the fast path over a heap the general path has initialised.
   *
   * @param layout Where the heap and its control block live; `compactFits(layout)` must hold.
   * @param counters The totals the general path keeps too.
   */
  constructor(layout: TlsfFastPathLayout, counters: HeapCounters) {
    if (!compactFits(layout)) {
      throw new RangeError(
        "TlsfCompactFastPath needs one region in the window's first 2^31 bytes, its low words below 2^31",
      );
    }
    const base = layout.baseAddress;
    const region = layout.regions[0];
    // Every field an int32 where it can be (a Smi field keeps V8's arithmetic in 32-bit
    // registers; a double one, such as `Math.floor`'s result even when 0, turns every use into
    // float arithmetic), and `#hiBase` the Smi 0 below 4 GiB.
    const hi = Math.floor(base / 2 ** 32) | 0;
    const hiBase = hi === 0 ? 0 : hi * 2 ** 32;
    this.#hi = hi;
    this.#hiBase = hiBase;
    this.#baseLo = (base - hiBase) | 0;
    this.#start = (region.blockStart - hiBase) | 0;
    this.#end = (region.blockEnd - hiBase) | 0;
    this.#words = new Int32Array(
      layout.words.buffer,
      layout.words.byteOffset,
      (region.blockEnd - base) / 4,
    );
    const control = layout.controlWords;
    const at = control.byteOffset + layout.controlIndex * 4;
    this.#heads = new Int32Array(
      control.buffer,
      at + controlHeadsOffset(layout.flCount),
      2 * layout.flCount * SL_COUNT,
    );
    this.#flBitmap = new Int32Array(control.buffer, at + CONTROL_FL_BITMAP_OFFSET, 2);
    this.#slBitmaps = new Int32Array(
      control.buffer,
      at + CONTROL_SL_BITMAPS_OFFSET,
      layout.flCount,
    );
    this.#classCount = layout.flCount * SL_COUNT;
    this.#counters = counters;
    this.#key = layout.key;
  }

  /**
   * Carves a block of `blockSize` bytes for a payload of `sizeBytes` at the
   * default alignment (TlsfFastPath.alloc's twin).
   *
   * @param blockSize The block size, from `blockSizeFor(sizeBytes)`, at most the largest block area.
   * @param sizeBytes The payload size asked for.
   * @returns The payload address, 0 when no free block fits, or FALLBACK.
   */
  alloc(blockSize: number, sizeBytes: number): number {
    const words = this.#words;
    const baseLo = this.#baseLo;
    const hi = this.#hi;
    // Every `block` below is the low word of a block's address (see the module doc).
    const sizeClass = classOfSmall(blockSize);
    let block = 0;
    if (sizeClass < this.#classCount) {
      let candidate = linkAt(this.#heads, 2 * sizeClass, hi);
      for (let steps = 0; candidate !== 0 && steps < 8; steps++) {
        if (!this.#inRegion(candidate)) return FALLBACK;
        const j = (candidate - baseLo) >> 2;
        if (words[j] - (words[j] & 7) >= blockSize) {
          block = candidate;
          break;
        }
        candidate = linkAt(words, j + 4, hi);
      }
    }
    if (block === 0) {
      // A list head, unlike a scanned block, has not been bounds-checked yet.
      block = this.#goodFit(searchClassOf(blockSize));
      if (block === 0) return 0;
      if (!this.#inRegion(block)) return FALLBACK;
    }
    const i = (block - baseLo) >> 2;
    const word0 = words[i];
    const size = word0 - (word0 & 7);
    // A size of 2^31 or more (negative here, or a high word) or past the region is damage.
    if (
      (word0 & 1) === 0 || !headerIntact(words, i, block, this.#key) ||
      !this.#linksIntact(i, block) || size < blockSize || words[i + 1] !== 0 ||
      block + size > this.#end
    ) {
      return FALLBACK;
    }
    const counters = this.#counters;
    const remainder = size - blockSize;
    counters.dropFree(size);
    // #unlink(i, size), written out: the most frequent list update (links verified above).
    const previous = words[i + 6];
    const next = words[i + 4];
    if (next !== 0) putLink(words, ((next - baseLo) >> 2) + 6, previous, hi);
    if (previous !== 0) putLink(words, ((previous - baseLo) >> 2) + 4, next, hi);
    else this.#setHead(classOfSmall(size), next, next === 0);
    let usedSize = size;
    let last = word0 & 4;
    if (remainder >= 40) {
      const tail = block + blockSize;
      // #link(tail, remainder), written out.
      const tailClass = classOfSmall(remainder);
      const head = linkAt(this.#heads, 2 * tailClass, hi);
      const t = i + (blockSize >> 2);
      words[t + 6] = 0;
      words[t + 7] = 0;
      putLink(words, t + 4, head, hi);
      if (head !== 0) putAddress(words, ((head - baseLo) >> 2) + 6, tail, hi);
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
    return this.#hiBase + block + 16;
  }

  /**
   * Frees the payload at `address` and merges the block with its free
   * neighbours (TlsfFastPath.free's twin).
   *
   * @param address What the caller passed to `free`.
   * @returns 0 when freed, or FALLBACK (nothing was written).
   */
  free(address: number): number {
    const block = this.#usedBlock(address);
    if (block === 0) return FALLBACK;
    const words = this.#words;
    const baseLo = this.#baseLo;
    const i = (block - baseLo) >> 2;
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
    const hi = this.#hi;
    const s = (start - baseLo) >> 2;
    const startClass = classOfSmall(total);
    const head = linkAt(this.#heads, 2 * startClass, hi);
    words[s + 6] = 0;
    words[s + 7] = 0;
    putLink(words, s + 4, head, hi);
    if (head !== 0) putAddress(words, ((head - baseLo) >> 2) + 6, start, hi);
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
   * would (TlsfFastPath.resize's twin).
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
    const i = (block - this.#baseLo) >> 2;
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

  /** Shrinks the used block `block` to `newBlockSize`, giving the rest back (BlockEdits.shrinkInPlace). */
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

  /** Grows the used block `block` into its free successor (BlockEdits.growInPlace). */
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
    // An integer address on the granule whose low word names a block; anything else is the general path's.
    if (typeof address !== "number") return 0;
    const block = address - 16 - this.#hiBase;
    if ((block | 0) !== block || (block & 7) !== 0) return 0;
    if (block < this.#start || block + 40 > this.#end) return 0;
    const words = this.#words;
    const i = (block - this.#baseLo) >> 2;
    const word0 = words[i];
    const size = word0 - (word0 & 7);
    if (
      (word0 & 1) !== 0 || !headerIntact(words, i, block, this.#key) || size < 40 ||
      block + size > this.#end
    ) {
      return 0;
    }
    // (Its high size word is checked by #successorWord0, which free and resize call next.)
    return block;
  }

  /**
   * The first header word of the physical successor of the used block at
   * word `i` (found by #usedBlock), verified (and its list links and extent,
   * when it is free); 0 when the block ends its region, FALLBACK when a check fails.
   */
  #successorWord0(i: number, block: number, size: number, word0: number): number {
    // The used block's own high size word first (see #usedBlock): the general path reads it.
    if (this.#words[i + 1] !== 0) return FALLBACK;
    if ((word0 & 4) !== 0) return 0;
    const next = block + size;
    if (next >= this.#end) return FALLBACK;
    const n = i + (size >> 2);
    const nextWord0 = this.#words[n];
    if (!headerIntact(this.#words, n, next, this.#key)) return FALLBACK;
    if ((nextWord0 & 1) === 0) return nextWord0;
    // A free successor of 2^31 bytes or more (negative here, or a high word) or past the region is damage.
    return nextWord0 < 0 || this.#words[n + 1] !== 0 ||
        next + nextWord0 - (nextWord0 & 7) > this.#end || !this.#linksIntact(n, next)
      ? FALLBACK
      : nextWord0;
  }

  /**
   * The free block before the block at word `i` (found by #usedBlock), found
   * by its footer and verified (header, free flag, size, list links) as the
   * general path's BlockVerifier.checkedPrevious and checkedLinks do;
   * FALLBACK when a check fails.
   */
  #freePredecessor(i: number, block: number): number {
    // The footer is read only when a free block can lie before this one in the region.
    if (block - 40 < this.#start) return FALLBACK;
    const words = this.#words;
    // A footer holds a u64 size: its high word must be 0 (a narrow window's general path reads none).
    const previousSize = words[i - 1] === 0 ? words[i - 2] : 0;
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

  /** The head of the first non-empty class at or above `sizeClass` (-1 untrusted), or 0. */
  #goodFit(sizeClass: number): number {
    if (sizeClass >= this.#classCount) return 0;
    const slBitmaps = this.#slBitmaps;
    let fl = sizeClass >>> 4;
    let slMap = slBitmaps[fl] & (~0 << (sizeClass & 15));
    if (slMap === 0) {
      const from = fl + 1;
      let flMap = from < 32 ? this.#flBitmap[0] & (~0 << from) : 0;
      let flBase = 0;
      if (flMap === 0) {
        flMap = this.#flBitmap[1] & (from <= 32 ? ~0 : ~0 << (from - 32));
        flBase = 32;
      }
      if (flMap === 0) return 0;
      fl = flBase + lowestBit(flMap);
      slMap = slBitmaps[fl];
    }
    return linkAt(this.#heads, 2 * ((fl << 4) + lowestBit(slMap)), this.#hi);
  }

  /** Takes the free block at word `i` off its class list (TlsfPolicy.remove); its links are verified. */
  #unlink(i: number, size: number): void {
    const words = this.#words;
    const previous = words[i + 6];
    const next = words[i + 4];
    if (next !== 0) putLink(words, this.#index(next) + 6, previous, this.#hi);
    if (previous !== 0) putLink(words, this.#index(previous) + 4, next, this.#hi);
    else this.#setHead(classOfSmall(size), next, next === 0);
  }

  /** Puts the free block `block` at the head of its class list (TlsfPolicy.insert). */
  #link(block: number, size: number): void {
    const words = this.#words;
    const hi = this.#hi;
    const sizeClass = classOfSmall(size);
    const head = linkAt(this.#heads, 2 * sizeClass, hi);
    const i = this.#index(block);
    words[i + 6] = 0;
    words[i + 7] = 0;
    putLink(words, i + 4, head, hi);
    if (head !== 0) putAddress(words, this.#index(head) + 6, block, hi);
    this.#setHead(sizeClass, block, head === 0);
  }

  /**
   * Makes `block` (0: none) the head of `sizeClass`; when `flips`, the
   * class was empty or becomes empty, and its bitmap bits follow.
   */
  #setHead(sizeClass: number, block: number, flips: boolean): void {
    putLink(this.#heads, 2 * sizeClass, block, this.#hi);
    if (flips) this.#flipClass(sizeClass, block !== 0);
  }

  /** Marks `sizeClass` non-empty or empty in the bitmaps (TlsfPolicy.#markNonEmpty, #markEmpty). */
  #flipClass(sizeClass: number, nonEmpty: boolean): void {
    const slBitmaps = this.#slBitmaps;
    const fl = sizeClass >>> 4;
    const flWord = fl >>> 5;
    if (nonEmpty) {
      slBitmaps[fl] |= 1 << (sizeClass & 15);
      this.#flBitmap[flWord] |= 1 << (fl & 31);
    } else {
      slBitmaps[fl] &= ~(1 << (sizeClass & 15));
      if (slBitmaps[fl] === 0) this.#flBitmap[flWord] &= ~(1 << (fl & 31));
    }
  }

  /** The word index of the block `block`. */
  #index(block: number): number {
    return (block - this.#baseLo) >> 2;
  }

  /** True when `block` is a granule-aligned low word with a whole smallest block in the region. */
  #inRegion(block: number): boolean {
    return block >= this.#start && block + 40 <= this.#end && (block & 7) === 0;
  }

  /**
   * Safe unlinking (BlockVerifier.checkedLinks): the list neighbours of the
   * free block at word `i` lie in the region and point back at it.
   */
  #linksIntact(i: number, block: number): boolean {
    const words = this.#words;
    const hi = this.#hi;
    const next = linkAt(words, i + 4, hi);
    const previous = linkAt(words, i + 6, hi);
    // A neighbour's link back names `block` (a low word above 0) with the region's high word.
    const n = this.#index(next) + 6;
    const p = this.#index(previous) + 4;
    return (next === 0 || (this.#inRegion(next) && words[n] === block && words[n + 1] === hi)) &&
      (previous === 0 ||
        (this.#inRegion(previous) && words[p] === block && words[p + 1] === hi));
  }
}

/**
 * The u64 link, head or list neighbour at `array[i]` as a block's low word:
 * 0 for the null link, -1 (no block) when its high word is not the region's
 * or its low word is 0 there (that address lies at or below the window's
 * byte 0, in no region for the general path either).
 */
function linkAt(array: Int32Array, i: number, hi: number): number {
  const lo = array[i];
  if (array[i + 1] === hi && lo !== 0) return lo;
  return (lo | array[i + 1]) === 0 ? 0 : -1;
}

/** Writes the block `block` (a low word above 0) as a u64 address at `array[i]`. */
function putAddress(array: Int32Array, i: number, block: number, hi: number): void {
  array[i] = block;
  array[i + 1] = hi;
}

/** Writes the block `block` (a low word; 0: the null link) as a u64 address at `array[i]`. */
function putLink(array: Int32Array, i: number, block: number, hi: number): void {
  array[i] = block;
  array[i + 1] = block === 0 ? 0 : hi;
}
