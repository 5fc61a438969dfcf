/**
 * The TLSF hot path: `alloc` at the default alignment, `free`, and
 * `realloc` in place, written out over one `Int32Array` for every TLSF heap
 * searched in TypeScript without debug mode (any number of regions, a window
 * of any length at any base address). `PhysicalAllocator` uses it where it
 * applies (`fastPathActive`); the option `fastPath: false` turns it off.
 * Windows of one region take a twin written for them alone instead
 * (`tlsfFastPathFor` in tlsf_compact_fast_path.ts: the narrow and compact
 * twins), which V8 compiles into less code; this class serves the others,
 * and its small helpers (headerIntact, writeHeader, writeFree, setFlags)
 * serve all three.
 *
 * Inside, a block is named by its byte offset from the window's base, an
 * int32 however high the window lies (identity-mapped memory sits at the
 * machine's physical addresses, far above 2^32), so V8 keeps every
 * computation in 32-bit registers. It serves the blocks in the window's
 * first SPAN_BYTES_MAX bytes (the span, viewed by an `Int32Array` of its
 * own: V8 runs typed-array indices of 2^31 or more many times slower);
 * blocks past it, list heads past it and sizes of 2^31 or more are the
 * general path's, except a region's top free block (see #carveBig). Over
 * several regions, a slot table over the span finds a block's region. The
 * bytes stay those of the general layout: links, heads and footers hold
 * absolute u64 addresses, which the Zig side reads too. A link converts by
 * its low word, `offset = (lo - baseLo) | 0`, exact inside the span; its
 * high word must be the one the offset implies (the base's, plus one past
 * the point where the low word wraps), or the link is not trusted. Only the
 * header check word needs an address, and only its low 32 bits
 * (`headerCheck`). Addresses cross the API once, at entry and exit.
 *
 * It makes exactly the decisions of the general path (`TlsfPolicy.find` in
 * tlsf.ts, then the edits of `BlockEdits` in ../block_edits.ts) and writes
 * exactly the same bytes, so the two can serve
 * the same heap in turns; `tests/tlsf_fast_path_test.ts` runs both side by
 * side and compares every result, every error and every byte. The general
 * path is built from small verified steps that V8 cannot inline into one
 * function (it inlines at most 920 bytes of bytecode into each); measured
 * on the shipped traces, this file serves the same operations in about
 * half the time.
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

import { lowestBit } from "../../_math.ts";
import { blockSizeFor } from "../block.ts";
import type { HeapCounters } from "../counters.ts";
import {
  CONTROL_FL_BITMAP_OFFSET,
  CONTROL_SL_BITMAPS_OFFSET,
  controlBytes,
  controlHeadsOffset,
  FLAG_FREE,
  FLAG_LAST,
  FLAG_PREV_FREE,
  FLAGS_MASK,
  FOOTER_BYTES,
  FREE_NEXT_OFFSET,
  FREE_PREV_OFFSET,
  HEADER_BYTES,
  HEADER_CHECK_OFFSET,
  HEADER_SLACK_OFFSET,
  headerCheck,
  MIN_BLOCK_BYTES,
  SL_COUNT,
  SL_LOG2,
} from "../layout.ts";
import { classOf, classOfSmall, EXACT_SCAN_MAX, searchClassOf } from "./tlsf.ts";

/** Returned when the general path must run the operation instead. */
export const FALLBACK = -1;
/** #successorWord0: the successor is a free block of 2^31 bytes or more, or ending past the span. */
const BIG_SUCCESSOR = -2;

/*
 * V8 decides what to inline into a hot function by counting bytecode, and
 * every imported constant costs a module-variable load and a hole check.
 * This file therefore writes the layout's numbers as literals:
 *   flags: FREE 1, PREV_FREE 2, LAST 4, all 7;
 *   word offsets in a block: slack 2, check 3, next link 4, previous link 6;
 *   HEADER_BYTES 16, MIN_BLOCK_BYTES 40, FOOTER_BYTES 8, SL_COUNT 16 (SL_LOG2 4);
 * and proves them against layout.ts here, once, when the module loads.
 */
const LITERALS_MATCH_LAYOUT = FLAG_FREE === 1 && FLAG_PREV_FREE === 2 && FLAG_LAST === 4 &&
  FLAGS_MASK === 7 && HEADER_SLACK_OFFSET === 8 && HEADER_CHECK_OFFSET === 12 &&
  FREE_NEXT_OFFSET === 16 && FREE_PREV_OFFSET === 24 && HEADER_BYTES === 16 &&
  MIN_BLOCK_BYTES === 40 && FOOTER_BYTES === 8 && SL_COUNT === 16 && SL_LOG2 === 4 &&
  EXACT_SCAN_MAX === 8;
if (!LITERALS_MATCH_LAYOUT) throw new Error("tlsf_fast_path.ts no longer matches layout.ts");

/** The fast path serves blocks in the window's first SPAN_BYTES_MAX bytes: their offsets are int32. */
export const SPAN_BYTES_MAX = 2 ** 31 - 8;

/**
 * Region lookups cut the span into at most this many slots (a power of two),
 * each naming the first region that ends past its start.
 */
const REGION_SLOTS_MAX = 1 << 16;

/** One region's block area, as addresses. */
export interface TlsfFastPathRegion {
  /** The address of the region's first block. */
  readonly blockStart: number;
  /** The end of the region's block area (exclusive). */
  readonly blockEnd: number;
}

/** Where the fast path's heap lives. */
export interface TlsfFastPathLayout {
  /** The window as 32-bit words. */
  readonly words: Uint32Array;
  /** The address of the window's byte 0, a multiple of 8. */
  readonly baseAddress: number;
  /** The usable regions' block areas, in address order. */
  readonly regions: readonly TlsfFastPathRegion[];
  /** The words holding the control block, and the index of its first word. */
  readonly controlWords: Uint32Array;
  /** Index of the control block's first word in `controlWords`. */
  readonly controlIndex: number;
  /** The TLSF policy's first-level count. */
  readonly flCount: number;
  /** The heap's check-word key. */
  readonly key: number;
  /**
   * True when the window ends at or below 2^31 (`NarrowBlockWords`): the
   * general path then reads only the low words of links and heads, and so
   * does the fast path; above, both read the high words too.
   */
  readonly narrow: boolean;
}

/**
 * True when the fast path can serve a heap whose window starts at
 * `baseAddress` and whose lowest usable region's blocks start at
 * `blockStart`: offset 0 must name no block (it stands for the null link),
 * and some block must lie in the window's first SPAN_BYTES_MAX bytes (the
 * span, where offsets are int32). Any window length, any number of regions.
 *
 * @param baseAddress The address of the window's byte 0.
 * @param blockStart The address of the lowest usable region's first block.
 * @returns Whether `TlsfFastPath` applies.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fastPathFits } from "./tlsf_fast_path.ts";
 *
 * assert.equal(fastPathFits(2 ** 36, 2 ** 36 + 4096), true);
 * assert.equal(fastPathFits(2 ** 36, 2 ** 36), false);
 * ```
 */
export function fastPathFits(baseAddress: number, blockStart: number): boolean {
  return blockStart > baseAddress && blockStart - baseAddress < SPAN_BYTES_MAX - 40;
}

/** `alloc`, `free` and in-place `realloc` of the common TLSF heap. */
export class TlsfFastPath {
  /** The span's words as int32 (V8 keeps their loads in 32-bit registers). */
  readonly #words: Int32Array;
  /** The window's base address, added and subtracted only at the API. */
  readonly #base: number;
  /** The base address's low word (int32) and high word. */
  readonly #baseLo: number;
  readonly #baseHi: number;
  readonly #baseHiAbove: number;
  /** The general path reads no high words (see TlsfFastPathLayout.narrow). */
  readonly #narrow: boolean;
  /** The first offset whose address's low word has wrapped past 2^32 (its high word is baseHi + 1). */
  readonly #carryAt: number;
  /** One region in the span: its block area, [start, end) as offsets from the base. */
  readonly #single: boolean;
  readonly #start: number;
  readonly #end: number;
  /** Several regions: their block areas (clipped to the span), and per slot the first region ending past it. */
  readonly #starts: Int32Array;
  readonly #ends: Int32Array;
  readonly #slotRegion: Int32Array;
  readonly #slotShift: number;
  /** The end of the last block area in the span: no block the fast path edits reaches past it. */
  readonly #limit: number;
  /** Blocks lie past the span too: a list head may be one the fast path cannot reach. */
  readonly #clipped: boolean;
  /**
   * Per block area: where its region's block area really ends (past the span
   * for the last one, maybe), and a view of its last 8 bytes: the footer of a
   * free block of 2^31 bytes or more that ends the region (a heap's top).
   */
  readonly #realEnds: Float64Array;
  readonly #footers: Int32Array[];
  /** The block area of the block #usedBlock found last (several regions). */
  #foundStart = 0;
  #foundEnd = 0;
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
    const base = layout.baseAddress;
    const regions = layout.regions;
    // Offset 0 names no block (a null link), and every offset must be an int32.
    if (regions.length === 0 || !fastPathFits(base, regions[0].blockStart)) {
      throw new RangeError(
        "TlsfFastPath needs a block past the window's byte 0 and in its first 2^31 bytes",
      );
    }
    const spanWords = Math.min(layout.words.length, SPAN_BYTES_MAX / 4);
    // Int32 views: V8 keeps their loads in 32-bit registers, where uint32 loads may become
    // doubles; and a view of at most 2^31 bytes keeps every index an int32 (V8 runs typed-array
    // indices of 2^31 or more many times slower).
    this.#words = new Int32Array(layout.words.buffer, layout.words.byteOffset, spanWords);
    const spanBytes = spanWords * 4;
    this.#base = base;
    this.#baseLo = base | 0;
    this.#baseHi = Math.floor(base / 2 ** 32);
    this.#baseHiAbove = this.#baseHi + 1;
    this.#narrow = layout.narrow;
    const wrap = 2 ** 32 - (base >>> 0);
    this.#carryAt = wrap < spanBytes ? wrap : 0x7fffffff;
    // The block areas in the span. One that reaches past it is cut 40 bytes short of its end, so
    // the header after any block the fast path edits lies in the span (blocks past are the general
    // path's).
    const areas = regions.map((r) => {
      const end = r.blockEnd - base;
      return [r.blockStart - base, end <= spanBytes ? end : spanBytes - 40];
    }).filter(([start, end]) => end - start >= 40);
    this.#starts = Int32Array.from(areas, ([start]) => start);
    this.#ends = Int32Array.from(areas, ([, end]) => end);
    this.#single = areas.length === 1;
    this.#start = areas[0][0];
    this.#end = areas[0][1];
    this.#limit = areas[areas.length - 1][1];
    this.#clipped = regions.some((r) => r.blockEnd - base > spanBytes);
    const inSpan = regions.filter((r) => {
      const end = r.blockEnd - base;
      return (end <= spanBytes ? end : spanBytes - 40) - (r.blockStart - base) >= 40;
    });
    this.#realEnds = Float64Array.from(inSpan, (r) => r.blockEnd - base);
    this.#footers = inSpan.map((r) =>
      new Int32Array(layout.words.buffer, layout.words.byteOffset + r.blockEnd - base - 8, 2)
    );
    let slotShift = 3;
    while ((this.#limit >>> slotShift) >= REGION_SLOTS_MAX) slotShift++;
    this.#slotShift = slotShift;
    this.#slotRegion = this.#single ? new Int32Array(0) : slotRegions(this.#ends, slotShift);
    // The control block through a view of its own: its words' index in the window may pass 2^31.
    const control = layout.controlWords;
    this.#control = new Int32Array(
      control.buffer,
      control.byteOffset + layout.controlIndex * 4,
      controlBytes(layout.flCount) / 4,
    );
    this.#flBitmap = CONTROL_FL_BITMAP_OFFSET / 4;
    this.#slBitmaps = CONTROL_SL_BITMAPS_OFFSET / 4;
    this.#heads = controlHeadsOffset(layout.flCount) / 4;
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
    const control = this.#control;
    // TlsfPolicy.find at the default alignment: at most EXACT_SCAN_MAX
    // blocks of the request's own class, then the head of the first
    // non-empty class above it. Written out here rather than called so that
    // this method is compiled on its own, with its helpers inlined.
    // Every `block` below is an offset from the window's base. No block in the span is this large.
    if (blockSize > this.#limit) return FALLBACK;
    const sizeClass = classOfSmall(blockSize);
    let block = 0;
    if (sizeClass < this.#classCount) {
      let candidate = this.#readLink(control, this.#heads + 2 * sizeClass);
      for (let steps = 0; candidate !== 0 && steps < 8; steps++) {
        if (!this.#inRegion(candidate)) return FALLBACK;
        const j = candidate >> 2;
        if (words[j] - (words[j] & 7) >= blockSize) {
          block = candidate;
          break;
        }
        candidate = this.#readLink(words, j + 4);
      }
    }
    if (block === 0) {
      // A list head, unlike a scanned block, has not been bounds-checked yet.
      block = this.#goodFit(searchClassOf(blockSize));
      if (block === 0) return 0;
      if (!this.#inRegion(block)) return FALLBACK;
    }
    const i = block >> 2;
    const word0 = words[i];
    const size = word0 - (word0 & 7);
    if (
      (word0 & 1) === 0 || !headerIntact(words, i, this.#lo(block), this.#key) ||
      !this.#linksIntact(i, block)
    ) {
      return FALLBACK;
    }
    // A size of 2^31 or more (negative here, or a high word), or an end past the span: a
    // region's top free block, maybe.
    if (size < 0 || words[i + 1] !== 0 || block + size > this.#limit) {
      return this.#carveBig(i, block, word0, blockSize, sizeBytes);
    }
    if (size < blockSize) return FALLBACK;
    const remainder = size - blockSize;
    if (this.#clipped && remainder >= 40 && !this.#headInSpan(remainder)) return FALLBACK;
    const counters = this.#counters;
    counters.dropFree(size);
    // #unlink(i, size), written out: the most frequent list update (links verified above).
    const previous = this.#verifiedLink(words, i + 6);
    const next = this.#verifiedLink(words, i + 4);
    if (next !== 0) this.#writeLink(words, (next >> 2) + 6, previous);
    if (previous !== 0) this.#writeLink(words, (previous >> 2) + 4, next);
    else this.#setHead(classOfSmall(size), next, next === 0);
    let usedSize = size;
    let last = word0 & 4;
    if (remainder >= 40) {
      const tail = block + blockSize;
      // #link(tail, remainder), written out.
      const tailClass = classOfSmall(remainder);
      const head = this.#readLink(control, this.#heads + 2 * tailClass);
      const t = tail >> 2;
      this.#writeLink(words, t + 6, 0);
      this.#writeLink(words, t + 4, head);
      if (head !== 0) this.#writeLink(words, (head >> 2) + 6, tail);
      this.#setHead(tailClass, tail, head === 0);
      writeFree(words, t, this.#lo(tail), remainder, last, this.#key);
      counters.addFree(remainder);
      usedSize = blockSize;
      last = 0;
    } else if (last === 0) {
      const n = i + (size >> 2);
      setFlags(words, n, this.#lo(block + size), words[n] & ~2, this.#key);
    }
    const slack = usedSize - 16 - sizeBytes;
    writeHeader(words, i, this.#lo(block), usedSize, (word0 & 2) | last, slack, this.#key);
    counters.addUsed(sizeBytes, slack);
    return this.#base + block + 16;
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
    const i = block >> 2;
    const word0 = words[i];
    const size = word0 - (word0 & 7);
    const nextWord0 = this.#successorWord0(i, block, size, word0);
    if (nextWord0 === FALLBACK) return FALLBACK;
    const previous = (word0 & 2) === 0 ? 0 : this.#freePredecessor(i, block);
    if (previous === FALLBACK) return FALLBACK;
    if (nextWord0 === BIG_SUCCESSOR) return this.#freeIntoBig(i, block, size, previous);
    if (
      this.#clipped &&
      !this.#headInSpan(
        block - (previous === 0 ? block : previous) + size +
          ((nextWord0 & 1) === 0 ? 0 : nextWord0 - (nextWord0 & 7)),
      )
    ) return FALLBACK;

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
      writeHeader(words, i, this.#lo(block), 0, 1, 0, this.#key);
      const previousSize = block - previous;
      counters.dropFree(previousSize);
      start = previous;
      total += previousSize;
      this.#unlink(i - (previousSize >> 2), previousSize);
    }
    // #link(start, total), written out.
    const s = start >> 2;
    const startClass = classOfSmall(total);
    const head = this.#readLink(this.#control, this.#heads + 2 * startClass);
    this.#writeLink(words, s + 6, 0);
    this.#writeLink(words, s + 4, head);
    if (head !== 0) this.#writeLink(words, (head >> 2) + 6, start);
    this.#setHead(startClass, start, head === 0);
    writeFree(words, s, this.#lo(start), total, last, this.#key);
    counters.addFree(total);
    if (last === 0) {
      const after = s + (total >> 2);
      setFlags(words, after, this.#lo(start + total), words[after] | 2, this.#key);
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
    const i = block >> 2;
    const word0 = this.#words[i];
    const size = word0 - (word0 & 7);
    const nextWord0 = this.#successorWord0(i, block, size, word0);
    // FALLBACK, BIG_SUCCESSOR, or (rare: a used successor of 2^31 bytes or more) a negative word.
    if (nextWord0 < 0) return FALLBACK;
    const newBlockSize = blockSizeFor(sizeBytes);
    if (newBlockSize <= size) {
      const remainder = size - newBlockSize;
      const freed = (nextWord0 & 1) === 0 ? remainder : remainder + nextWord0 - (nextWord0 & 7);
      if (this.#clipped && freed >= 40 && !this.#headInSpan(freed)) return FALLBACK;
      this.#shrink(i, block, word0, newBlockSize, sizeBytes, nextWord0);
      return address;
    }
    if ((nextWord0 & 1) !== 0 && size + nextWord0 - (nextWord0 & 7) >= newBlockSize) {
      const remainder = size + nextWord0 - (nextWord0 & 7) - newBlockSize;
      if (this.#clipped && remainder >= 40 && !this.#headInSpan(remainder)) return FALLBACK;
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
      writeFree(words, t, this.#lo(tail), remainder + nextSize, nextWord0 & 4, this.#key);
      counters.dropFree(nextSize);
      counters.addFree(remainder + nextSize);
    } else if (remainder >= 40) {
      writeFree(words, t, this.#lo(tail), remainder, word0 & 4, this.#key);
      this.#link(tail, remainder);
      counters.addFree(remainder);
      if ((word0 & 4) === 0) {
        setFlags(words, i + (size >> 2), this.#lo(block + size), nextWord0 | 2, this.#key);
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
      writeFree(words, i + (newBlockSize >> 2), this.#lo(tail), remainder, nextLast, this.#key);
      counters.addFree(remainder);
      this.#writeUsed(i, block, newBlockSize, word0 & 2, sizeBytes, oldSlack);
    } else {
      if (nextLast === 0) {
        const after = i + ((size + nextSize) >> 2);
        setFlags(words, after, this.#lo(block + size + nextSize), words[after] & ~2, this.#key);
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
    writeHeader(this.#words, i, this.#lo(block), blockSize, flags, slack, this.#key);
    this.#counters.slackBytes += slack - oldSlack;
  }

  /**
   * alloc from a free block of 2^31 bytes or more or ending past the span
   * (verified: header, links): served when it ends its region (a heap's top: its footer is the region's
   * last 8 bytes, written through #footers) and the tail left free starts in
   * the span; its sizes go in two words and its classes by `classOf`.
   */
  #carveBig(i: number, block: number, word0: number, blockSize: number, sizeBytes: number): number {
    const words = this.#words;
    if (this.#narrow || (word0 & 4) === 0) return FALLBACK;
    const region = this.#single ? 0 : this.#regionOf(block);
    if (region < 0) return FALLBACK;
    const size = (word0 >>> 0) - (word0 & 7) + words[i + 1] * 2 ** 32;
    const tail = block + blockSize;
    if (
      size < blockSize || block + size !== this.#realEnds[region] || tail + 40 > this.#ends[region]
    ) return FALLBACK;
    const remainder = size - blockSize;
    // (A remainder under 40 bytes, which the block would keep whole, failed the test of `tail` above.)
    const tailClass = classOf(remainder);
    const head = this.#readLink(this.#control, this.#heads + 2 * tailClass);
    // The tail's list head, unless it is `block` (unlinked first), must be one the fast path writes.
    if (head !== 0 && head !== block && !this.#inRegion(head)) return FALLBACK;
    const counters = this.#counters;
    counters.dropFree(size);
    this.#unlinkFrom(i, classOf(size));
    this.#linkInto(tail, tailClass);
    this.#writeBigFree(tail, remainder, 4, region);
    counters.addFree(remainder);
    const slack = blockSize - 16 - sizeBytes;
    writeHeader(words, i, this.#lo(block), blockSize, word0 & 2, slack, this.#key);
    counters.addUsed(sizeBytes, slack);
    return this.#base + block + 16;
  }

  /**
   * free of the used block `block` whose successor is a free block of 2^31
   * bytes or more (links verified): served when that one ends the region, as
   * #carveBig; merges with the free predecessor `previous` (0: none) too.
   */
  #freeIntoBig(i: number, block: number, size: number, previous: number): number {
    const words = this.#words;
    const n = i + (size >> 2);
    const nextWord0 = words[n];
    const nextSize = (nextWord0 >>> 0) - (nextWord0 & 7) + words[n + 1] * 2 ** 32;
    const region = this.#single ? 0 : this.#regionOf(block);
    if (
      this.#narrow || region < 0 || (nextWord0 & 5) !== 5 ||
      block + size + nextSize !== this.#realEnds[region]
    ) return FALLBACK;
    const start = previous === 0 ? block : previous;
    const total = block - start + size + nextSize;
    const totalClass = classOf(total);
    const head = this.#readLink(this.#control, this.#heads + 2 * totalClass);
    if (head !== 0 && !this.#inRegion(head)) return FALLBACK;
    const counters = this.#counters;
    const slack = words[i + 2];
    counters.dropUsed(size - 16 - slack, slack);
    counters.dropFree(nextSize);
    this.#unlinkFrom(n, classOf(nextSize));
    if (previous !== 0) {
      // The general path's tombstone: freeing `address` again is a double free.
      writeHeader(words, i, this.#lo(block), 0, 1, 0, this.#key);
      counters.dropFree(block - previous);
      this.#unlink(previous >> 2, block - previous);
    }
    this.#linkInto(start, totalClass);
    this.#writeBigFree(start, total, 4, region);
    counters.addFree(total);
    return 0;
  }

  /** Takes the free block at word `i` off the list of `sizeClass` (its links verified). */
  #unlinkFrom(i: number, sizeClass: number): void {
    const words = this.#words;
    const previous = this.#verifiedLink(words, i + 6);
    const next = this.#verifiedLink(words, i + 4);
    if (next !== 0) this.#writeLink(words, (next >> 2) + 6, previous);
    if (previous !== 0) this.#writeLink(words, (previous >> 2) + 4, next);
    else this.#setHead(sizeClass, next, next === 0);
  }

  /** Puts the free block `block` at the head of the list of `sizeClass`. */
  #linkInto(block: number, sizeClass: number): void {
    const words = this.#words;
    const head = this.#readLink(this.#control, this.#heads + 2 * sizeClass);
    const i = block >> 2;
    this.#writeLink(words, i + 6, 0);
    this.#writeLink(words, i + 4, head);
    if (head !== 0) this.#writeLink(words, (head >> 2) + 6, block);
    this.#setHead(sizeClass, block, head === 0);
  }

  /** Writes a free block of 2^31 bytes or more that ends block area `region`: header and footer, sizes in two words. */
  #writeBigFree(block: number, size: number, last: number, region: number): void {
    const hi = Math.floor(size / 2 ** 32);
    const word0 = ((size - hi * 2 ** 32) | 1 | last) >>> 0;
    const i = block >> 2;
    const words = this.#words;
    words[i] = word0;
    words[i + 1] = hi;
    words[i + 2] = 0;
    words[i + 3] = headerCheck(this.#lo(block), word0, hi, 0, this.#key);
    const footer = this.#footers[region];
    footer[0] = size - hi * 2 ** 32;
    footer[1] = hi;
  }

  /**
   * The block (an offset) of the live payload at `address`, verified as the
   * general path's BlockVerifier.usedBlockAt does; 0 when any check fails.
   */
  #usedBlock(address: number): number {
    // An integer address on the granule inside the window; anything else is the general path's to report.
    if (typeof address !== "number") return 0;
    const block = address - 16 - this.#base;
    if ((block | 0) !== block || (block & 7) !== 0) return 0;
    let end = this.#end;
    if (this.#single) {
      if (block < this.#start || block + 40 > end) return 0;
    } else {
      end = this.#enterRegion(block);
      if (end === 0) return 0;
    }
    const words = this.#words;
    const i = block >> 2;
    const word0 = words[i];
    const size = word0 - (word0 & 7);
    if (
      (word0 & 1) !== 0 || !headerIntact(words, i, this.#lo(block), this.#key) || size < 40 ||
      block + size > end || words[i + 1] !== 0
    ) {
      return 0;
    }
    return block;
  }

  /**
   * The first header word of the physical successor of the used block at
   * word `i` (found by #usedBlock), verified (and its list links and extent,
   * when it is free); 0 when the block ends its region, FALLBACK when a check fails.
   */
  #successorWord0(i: number, block: number, size: number, word0: number): number {
    if ((word0 & 4) !== 0) return 0;
    const next = block + size;
    if (next >= (this.#single ? this.#end : this.#foundEnd)) return FALLBACK;
    const words = this.#words;
    const n = i + (size >> 2);
    const nextWord0 = words[n];
    if (!headerIntact(words, n, this.#lo(next), this.#key)) return FALLBACK;
    if ((nextWord0 & 1) === 0) return nextWord0;
    if (!this.#linksIntact(n, next)) return FALLBACK;
    // A free successor of 2^31 bytes or more (negative here, or a high word), or ending past the
    // span: a region's top, maybe.
    return nextWord0 < 0 || words[n + 1] !== 0 || next + nextWord0 - (nextWord0 & 7) > this.#limit
      ? BIG_SUCCESSOR
      : nextWord0;
  }

  /**
   * The free block before the block at word `i` (found by #usedBlock), found
   * by its footer and verified (header, free flag, size, list links) as the
   * general path's BlockVerifier.checkedPrevious and checkedLinks do;
   * FALLBACK when a check fails.
   */
  #freePredecessor(i: number, block: number): number {
    const start = this.#single ? this.#start : this.#foundStart;
    // The footer is read only when a free block can lie before this one in the region.
    if (block - 40 < start) return FALLBACK;
    const words = this.#words;
    // A footer holds a size: in a wide window its high word must be 0, as the general path reads it.
    const previousSize = this.#narrow || words[i - 1] === 0 ? words[i - 2] : 0;
    const previous = block - previousSize;
    if (previousSize < 40 || (previousSize & 7) !== 0 || previous < start) return FALLBACK;
    const p = i - (previousSize >> 2);
    const word0 = words[p];
    if (
      (word0 & 1) === 0 || word0 - (word0 & 7) !== previousSize ||
      !headerIntact(words, p, this.#lo(previous), this.#key) || !this.#linksIntact(p, previous)
    ) {
      return FALLBACK;
    }
    return previous;
  }

  /** Remembers the block area holding `block` (several regions) and returns its end; 0 when none does. */
  #enterRegion(block: number): number {
    const region = this.#regionOf(block);
    if (region < 0) return 0;
    this.#foundStart = this.#starts[region];
    return this.#foundEnd = this.#ends[region];
  }

  /**
   * The region whose block area holds a whole smallest block at `block` (an
   * offset), or -1: the slot's first region ending past it, or the next few
   * (a slot holds the ends of several regions only when they are tiny; the
   * general path serves what this bounded search misses).
   */
  #regionOf(block: number): number {
    const slot = block >>> this.#slotShift;
    if (slot >= this.#slotRegion.length) return -1;
    let region = this.#slotRegion[slot];
    if (region < 0) return -1;
    const starts = this.#starts;
    const ends = this.#ends;
    for (let steps = 0; steps < 4 && region < ends.length; steps++, region++) {
      if (block < starts[region]) return -1;
      if (block + 40 <= ends[region]) return region;
    }
    return -1;
  }

  /** The head of the first non-empty class at or above `sizeClass` (an offset, -1 untrusted), or 0. */
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
    return this.#readLink(control, this.#heads + 2 * ((fl << 4) + lowestBit(slMap)));
  }

  /** Takes the free block at word `i` off its class list (TlsfPolicy.remove); its links are verified. */
  #unlink(i: number, size: number): void {
    const words = this.#words;
    const previous = this.#verifiedLink(words, i + 6);
    const next = this.#verifiedLink(words, i + 4);
    if (next !== 0) this.#writeLink(words, (next >> 2) + 6, previous);
    if (previous !== 0) this.#writeLink(words, (previous >> 2) + 4, next);
    else this.#setHead(classOfSmall(size), next, next === 0);
  }

  /** Puts the free block `block` at the head of its class list (TlsfPolicy.insert). */
  #link(block: number, size: number): void {
    const words = this.#words;
    const sizeClass = classOfSmall(size);
    const head = this.#readLink(this.#control, this.#heads + 2 * sizeClass);
    const i = block >> 2;
    this.#writeLink(words, i + 6, 0);
    this.#writeLink(words, i + 4, head);
    if (head !== 0) this.#writeLink(words, (head >> 2) + 6, block);
    this.#setHead(sizeClass, block, head === 0);
  }

  /**
   * True when the list a free block of `size` bytes joins has no head or one
   * in the span: pushing a block links the old head back to it (a window
   * with blocks past the span can have heads the fast path cannot write).
   */
  #headInSpan(size: number): boolean {
    const head = this.#readLink(this.#control, this.#heads + 2 * classOfSmall(size));
    return head === 0 || this.#inRegion(head);
  }

  /**
   * Makes `block` (0: none) the head of `sizeClass`; when `flips`, the
   * class was empty or becomes empty, and its bitmap bits follow.
   */
  #setHead(sizeClass: number, block: number, flips: boolean): void {
    this.#writeLink(this.#control, this.#heads + 2 * sizeClass, block);
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

  /** The low word (int32) of the address of the block at offset `block`, all the check word needs. */
  #lo(block: number): number {
    return (this.#baseLo + block) | 0;
  }

  /**
   * The u64 link, head or list neighbour at `array[i]` as an offset: 0 for
   * the null link, -1 (outside every region) when its high word is not the
   * one its low word implies inside the window (in a wide window; a narrow
   * one's high words are not read, as the general path reads none).
   */
  #readLink(array: Int32Array, i: number): number {
    const lo = array[i];
    // A narrow window's general path (NarrowBlockWords) ignores high words: so does this one.
    // Offset 0, the window's byte 0, names no block: a link to it is not the null link.
    if (this.#narrow) return lo === 0 ? 0 : ((lo - this.#baseLo) | 0) || -1;
    const hi = array[i + 1];
    if ((lo | hi) === 0) return 0;
    const offset = (lo - this.#baseLo) | 0;
    return hi === (offset < this.#carryAt ? this.#baseHi : this.#baseHiAbove) && offset !== 0
      ? offset
      : -1;
  }

  /** A link `#linksIntact` has verified, as an offset (0: null): its high word needs no second look. */
  #verifiedLink(array: Int32Array, i: number): number {
    const lo = array[i];
    if (this.#narrow) return lo === 0 ? 0 : (lo - this.#baseLo) | 0;
    return (lo | array[i + 1]) === 0 ? 0 : (lo - this.#baseLo) | 0;
  }

  /** Writes the block at `offset` (0: the null link) as a u64 address at `array[i]`. */
  #writeLink(array: Int32Array, i: number, offset: number): void {
    if (offset === 0) {
      array[i] = 0;
      array[i + 1] = 0;
    } else {
      array[i] = (this.#baseLo + offset) | 0;
      array[i + 1] = offset < this.#carryAt ? this.#baseHi : this.#baseHiAbove;
    }
  }

  /** True when `block` is a granule offset with a whole smallest block inside a block area. */
  #inRegion(block: number): boolean {
    if (this.#single) return block >= this.#start && block + 40 <= this.#end && (block & 7) === 0;
    return this.#inRegions(block);
  }

  /** #inRegion over several regions (a method of its own: a heap of one region inlines none of it). */
  #inRegions(block: number): boolean {
    return (block & 7) === 0 && this.#regionOf(block) >= 0;
  }

  /**
   * Safe unlinking (BlockVerifier.checkedLinks): the list neighbours of the
   * free block at word `i` lie in the region and point back at it.
   */
  #linksIntact(i: number, block: number): boolean {
    const words = this.#words;
    const next = this.#readLink(words, i + 4);
    const previous = this.#readLink(words, i + 6);
    return (next === 0 ||
      (this.#inRegion(next) && this.#readLink(words, (next >> 2) + 6) === block)) &&
      (previous === 0 ||
        (this.#inRegion(previous) && this.#readLink(words, (previous >> 2) + 4) === block));
  }
}

/** True when the check word of the header at word `i` (whose address's low word is `lo`) matches. */
export function headerIntact(words: Int32Array, i: number, lo: number, key: number): boolean {
  return words[i + 3] === (headerCheck(lo, words[i], words[i + 1], words[i + 2], key) | 0);
}

/** Writes a whole header (high size word 0: the window is shorter than 2^31 bytes). */
export function writeHeader(
  words: Int32Array,
  i: number,
  lo: number,
  size: number,
  flags: number,
  slack: number,
  key: number,
): void {
  const word0 = (size | flags) >>> 0;
  words[i] = word0;
  words[i + 1] = 0;
  words[i + 2] = slack;
  words[i + 3] = headerCheck(lo, word0, 0, slack, key);
}

/** Writes a free block's header (FREE plus `last`) and its footer, the size as a u64. */
export function writeFree(
  words: Int32Array,
  i: number,
  lo: number,
  size: number,
  last: number,
  key: number,
): void {
  writeHeader(words, i, lo, size, 1 | last, 0, key);
  const footer = i + (size >> 2) - 2;
  words[footer] = size;
  words[footer + 1] = 0;
}

/** Replaces the flag bits of the header at word `i` by those of `word0`, keeping it intact. */
export function setFlags(
  words: Int32Array,
  i: number,
  lo: number,
  word0: number,
  key: number,
): void {
  words[i] = word0;
  words[i + 3] = headerCheck(lo, word0, words[i + 1], words[i + 2], key);
}

/**
 * Per slot of `1 << slotShift` bytes: the first region whose block area
 * ends past the slot's start (-1: none), where a lookup starts.
 */
function slotRegions(ends: Int32Array, slotShift: number): Int32Array {
  const slots = new Int32Array((ends[ends.length - 1] >>> slotShift) + 1).fill(-1);
  let region = 0;
  for (let slot = 0; slot < slots.length; slot++) {
    while (region < ends.length && ends[region] <= slot * 2 ** slotShift) region++;
    if (region < ends.length) slots[slot] = region;
  }
  return slots;
}
