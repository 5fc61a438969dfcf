/**
 * TLSF (two-level segregated fit): free blocks are kept in size classes, a
 * first level per power of two split into SL_COUNT second levels, with a
 * bitmap of non-empty classes at each level. Finding a class that holds a
 * fitting block is two bit scans.
 *
 * Worst case: `insert`, `remove`, `replace` and `find` are O(1). `find` first
 * tries at most EXACT_SCAN_MAX blocks of the request's own class (the
 * tightest fits; measured on the shipped traces this raises utilization by
 * several points over plain good fit), then takes the head of the first
 * non-empty class above it, where every block fits. A request can therefore
 * fail while a fitting block sits in its own class beyond that bound: TLSF's
 * price for constant time.
 *
 * Twins: `tlsf_fast_path.ts` writes this search out for the fast path, and
 * `native/tlsf.zig` implements it again for the native path; a change to the
 * search is a change to all three (the differential and lockstep tests
 * prove they agree).
 *
 * @module
 */

import { lowestBit, TWO_POW_32 } from "../../_math.ts";
import { corruptionAt } from "../check/corruption.ts";
import { alignmentGap, type BlockWords } from "../block.ts";
import type { ControlBlock } from "../control_block.ts";
import {
  CONTROL_FL_BITMAP_OFFSET,
  CONTROL_FL_COUNT_OFFSET,
  CONTROL_MAGIC,
  CONTROL_MAGIC_OFFSET,
  CONTROL_POLICY_OFFSET,
  CONTROL_SL_BITMAPS_OFFSET,
  controlBytes,
  controlHeadsOffset,
  GRANULE_BYTES,
  GRANULE_LOG2,
  MIN_BLOCK_BYTES,
  POLICY_ID_TLSF,
  SL_COUNT,
  SL_LOG2,
  SMALL_BLOCK_BYTES,
} from "../layout.ts";
import { type FreeListPolicy, listedBlockProblem, type PolicyName } from "./policy.ts";

/** Blocks of the request's own class that `find` tries before the good-fit search. */
export const EXACT_SCAN_MAX = 8;

const TWO_POW_31 = 2147483648;
const TWO_POW_30 = 1073741824;

/** floor(log2(value)) for an integer 1 <= value < 2^53. */
export function floorLog2(value: number): number {
  if (value < TWO_POW_32) return 31 - Math.clz32(value);
  return 63 - Math.clz32(Math.floor(value / TWO_POW_32));
}

/** The class `fl * SL_COUNT + sl` a free block of `sizeBytes` is listed in. */
export function classOf(sizeBytes: number): number {
  if (sizeBytes < TWO_POW_31) return classOfSmall(sizeBytes);
  const log2 = floorLog2(sizeBytes);
  const fl = log2 - (SL_LOG2 + GRANULE_LOG2) + 1;
  const sl = Math.floor(sizeBytes / 2 ** (log2 - SL_LOG2)) - SL_COUNT;
  return fl * SL_COUNT + sl;
}

/**
 * {@linkcode classOf} of a size below 2^31, in 32-bit integer arithmetic
 * only: the common case, small enough for V8 to inline into hot paths.
 */
export function classOfSmall(sizeBytes: number): number {
  // Literals, not the imported constants (each import costs V8 a checked
  // load): SMALL_BLOCK_BYTES 128, GRANULE_LOG2 3, SL_LOG2 4, SL_COUNT 16,
  // so fl = log2 - (SL_LOG2 + GRANULE_LOG2) + 1 = log2 - 6.
  if (sizeBytes < 128) return sizeBytes >>> 3;
  const log2 = 31 - clz32(sizeBytes);
  return ((log2 - 6) << 4) + (sizeBytes >>> (log2 - 4)) - 16;
}

const clz32 = Math.clz32;
if (SMALL_BLOCK_BYTES !== 128 || GRANULE_LOG2 !== 3 || SL_LOG2 !== 4 || SL_COUNT !== 16) {
  throw new Error("classOfSmall no longer matches layout.ts");
}

/** The class from which every block is at least `sizeBytes` (the size rounded up to its class). */
export function searchClassOf(sizeBytes: number): number {
  if (sizeBytes < SMALL_BLOCK_BYTES) return sizeBytes >>> GRANULE_LOG2;
  if (sizeBytes < TWO_POW_30) {
    return classOf(sizeBytes + (1 << (31 - Math.clz32(sizeBytes) - SL_LOG2)) - 1);
  }
  return classOf(sizeBytes + 2 ** (floorLog2(sizeBytes) - SL_LOG2) - 1);
}

/** The number of first levels a heap whose largest block is `sizeBytes` needs. */
export function flCountFor(sizeBytes: number): number {
  return Math.floor(classOf(sizeBytes) / SL_COUNT) + 1;
}

/** A native class search: `(blockSizeBytes, alignBytes) => block or 0`. */
export type NativeTlsfFind = (blockSizeBytes: number, alignBytes: number) => number;

/** TLSF over the shared block format, control block in managed memory. */
export class TlsfPolicy implements FreeListPolicy {
  readonly name: PolicyName = "tlsf";
  readonly id = POLICY_ID_TLSF;
  readonly controlBytes: number;
  /** The number of first levels, sized at initialisation from the largest region. */
  readonly flCount: number;

  readonly #blocks: BlockWords;
  readonly #control: ControlBlock;
  /** The words holding the control block, and the index of its first word. */
  readonly #controlWords: Uint32Array;
  readonly #controlIndex: number;
  readonly #headsOffset: number;
  #nativeFind: NativeTlsfFind | null = null;

  /** True when an address lies in the heap's block areas (see the constructor). */
  readonly #inHeap: (address: number) => boolean;

  /**
   * Creates the policy over a control block.
   *
   * @param blocks Access to the managed memory.
   * @param control Where the control block lives (at least `controlBytes`).
   * @param largestBlockBytes The largest block the heap can ever hold.
   * @param inHeap True when an address lies in the heap's block areas: a list
   *   link elsewhere is corruption, found before it is read through.
   */
  constructor(
    blocks: BlockWords,
    control: ControlBlock,
    largestBlockBytes: number,
    inHeap: (address: number) => boolean = () => true,
  ) {
    this.#inHeap = inHeap;
    this.#blocks = blocks;
    this.#control = control;
    this.#controlWords = control.words;
    this.#controlIndex = control.index;
    this.flCount = TlsfPolicy.flCountFor(largestBlockBytes);
    this.controlBytes = controlBytes(this.flCount);
    this.#headsOffset = controlHeadsOffset(this.flCount);
  }

  /** The first levels needed when the largest block is `largestBlockBytes`. */
  static flCountFor(largestBlockBytes: number): number {
    return flCountFor(Math.max(largestBlockBytes, MIN_BLOCK_BYTES));
  }

  /** Routes `find` to the native search (or back to TS with `null`). */
  useNative(find: NativeTlsfFind | null): void {
    this.#nativeFind = find;
  }

  initControl(): void {
    const words = this.#controlWords;
    const i = this.#controlIndex;
    words[i + CONTROL_MAGIC_OFFSET / 4] = CONTROL_MAGIC;
    words[i + CONTROL_POLICY_OFFSET / 4] = POLICY_ID_TLSF;
    words[i + CONTROL_FL_COUNT_OFFSET / 4] = this.flCount;
    words[i + CONTROL_FL_BITMAP_OFFSET / 4] = 0;
    words[i + CONTROL_FL_BITMAP_OFFSET / 4 + 1] = 0;
    for (let fl = 0; fl < this.flCount; fl++) words[i + CONTROL_SL_BITMAPS_OFFSET / 4 + fl] = 0;
    for (let c = 0; c < this.flCount * SL_COUNT; c++) {
      this.#control.writeU64(this.#headsOffset + 8 * c, 0);
    }
  }

  #head(sizeClass: number): number {
    return this.#control.readU64(this.#headsOffset + 8 * sizeClass);
  }

  #setHead(sizeClass: number, block: number): void {
    this.#control.writeU64(this.#headsOffset + 8 * sizeClass, block);
  }

  #markNonEmpty(sizeClass: number): void {
    const words = this.#controlWords;
    const fl = sizeClass >>> SL_LOG2;
    words[this.#controlIndex + CONTROL_SL_BITMAPS_OFFSET / 4 + fl] |= 1 << (sizeClass & 15);
    words[this.#controlIndex + CONTROL_FL_BITMAP_OFFSET / 4 + (fl >>> 5)] |= 1 << (fl & 31);
  }

  #markEmpty(sizeClass: number): void {
    const words = this.#controlWords;
    const fl = sizeClass >>> SL_LOG2;
    const slIndex = this.#controlIndex + CONTROL_SL_BITMAPS_OFFSET / 4 + fl;
    words[slIndex] &= ~(1 << (sizeClass & 15));
    if (words[slIndex] === 0) {
      words[this.#controlIndex + CONTROL_FL_BITMAP_OFFSET / 4 + (fl >>> 5)] &= ~(1 << (fl & 31));
    }
  }

  insert(block: number, sizeBytes: number, _after: number): void {
    const sizeClass = classOf(sizeBytes);
    const head = this.#head(sizeClass);
    const blocks = this.#blocks;
    blocks.setPrev(block, 0);
    blocks.setNext(block, head);
    if (head !== 0) blocks.setPrev(head, block);
    else this.#markNonEmpty(sizeClass);
    this.#setHead(sizeClass, block);
  }

  remove(block: number, sizeBytes: number): void {
    const blocks = this.#blocks;
    const previous = blocks.prev(block);
    const next = blocks.next(block);
    if (next !== 0) blocks.setPrev(next, previous);
    if (previous !== 0) {
      blocks.setNext(previous, next);
      return;
    }
    const sizeClass = classOf(sizeBytes);
    this.#setHead(sizeClass, next);
    if (next === 0) this.#markEmpty(sizeClass);
  }

  replace(oldBlock: number, oldSizeBytes: number, newBlock: number, newSizeBytes: number): void {
    this.remove(oldBlock, oldSizeBytes);
    this.insert(newBlock, newSizeBytes, 0);
  }

  find(blockSizeBytes: number, alignBytes: number): number {
    if (this.#nativeFind !== null) return this.#nativeFind(blockSizeBytes, alignBytes);
    const searchBytes = alignBytes <= GRANULE_BYTES
      ? blockSizeBytes
      : blockSizeBytes + alignBytes + MIN_BLOCK_BYTES - GRANULE_BYTES;
    // The request's own class first: a block there that fits is the
    // tightest available, and taking it keeps the larger blocks whole.
    const exact = this.#scanClass(classOf(searchBytes), blockSizeBytes, alignBytes);
    if (exact !== 0) return exact;
    return this.#findGoodFit(searchClassOf(searchBytes));
  }

  findsAnyOf(
    freeBytes: number,
    blockSizeBytes: number,
    alignBytes: number,
    blocksFreed: number,
  ): boolean {
    const searchBytes = alignBytes <= GRANULE_BYTES
      ? blockSizeBytes
      : blockSizeBytes + alignBytes + MIN_BLOCK_BYTES - GRANULE_BYTES;
    // find() ends with a good fit: the head of the first non-empty class at
    // or above the search class, whose every block holds the request.
    if (classOf(freeBytes) >= searchClassOf(searchBytes)) return true;
    // It starts with the first EXACT_SCAN_MAX blocks of the request's own
    // class. A freed block goes to its list's head, and only the other blocks
    // freed after it can lie above it there.
    return alignBytes <= GRANULE_BYTES && blocksFreed <= EXACT_SCAN_MAX &&
      freeBytes >= blockSizeBytes && classOf(freeBytes) === classOf(searchBytes);
  }

  /** The head of the first non-empty class at or above `sizeClass`, or 0. */
  #findGoodFit(sizeClass: number): number {
    let fl = sizeClass >>> SL_LOG2;
    if (fl >= this.flCount) return 0;
    const words = this.#controlWords;
    const slBitmaps = this.#controlIndex + CONTROL_SL_BITMAPS_OFFSET / 4;
    let slMap = words[slBitmaps + fl] & (~0 << (sizeClass & 15));
    if (slMap === 0) {
      fl = this.#firstFlAbove(fl);
      if (fl < 0) return 0;
      slMap = words[slBitmaps + fl];
    }
    return this.#head(fl * SL_COUNT + lowestBit(slMap));
  }

  /** The lowest non-empty first level above `fl`, or -1. */
  #firstFlAbove(fl: number): number {
    const words = this.#controlWords;
    const flBitmap = this.#controlIndex + CONTROL_FL_BITMAP_OFFSET / 4;
    const from = fl + 1;
    if (from < 32) {
      const low = words[flBitmap] & (~0 << from);
      if (low !== 0) return lowestBit(low);
    }
    const high = words[flBitmap + 1] & (from <= 32 ? ~0 : ~0 << (from - 32));
    return high === 0 ? -1 : 32 + lowestBit(high);
  }

  /** The first of at most EXACT_SCAN_MAX blocks of `sizeClass` that fits, or 0. */
  #scanClass(sizeClass: number, blockSizeBytes: number, alignBytes: number): number {
    if (sizeClass >>> SL_LOG2 >= this.flCount) return 0;
    const blocks = this.#blocks;
    let block = this.#head(sizeClass);
    for (let steps = 0; block !== 0 && steps < EXACT_SCAN_MAX; steps++) {
      this.#listed(block);
      const gap = alignBytes <= GRANULE_BYTES ? 0 : alignmentGap(block, alignBytes);
      if (gap + blockSizeBytes <= blocks.size(block)) return block;
      block = blocks.next(block);
    }
    return 0;
  }

  /**
   * A listed free block where a block of `blockSizeBytes` fits at
   * `alignBytes`, looking at every listed block large enough, at most
   * `limit` of them; 0 if none. find() asks for room for the worst-case
   * alignment gap, so for a large alignment it turns away blocks that hold
   * the request at their actual gap (a 1 MiB-aligned byte in a free block
   * of 1 MiB that contains a multiple of 1 MiB): this scan, for the rare
   * aligned request find() refused, keeps that from being OUT_OF_MEMORY.
   *
   * @param blockSizeBytes The block to place, header included.
   * @param alignBytes The payload alignment, more than the granule.
   * @param limit The most blocks to look at (a damaged list may loop).
   * @returns The first block that fits, or 0.
   */
  findAligned(blockSizeBytes: number, alignBytes: number, limit: number): number {
    const blocks = this.#blocks;
    // Every block of a class above the one find() searched holds the request
    // at any gap (find() took none, so those classes are empty): only the
    // classes from the block size's up to the searched one can hide a fit.
    const last = Math.min(
      classOf(blockSizeBytes + alignBytes + MIN_BLOCK_BYTES - GRANULE_BYTES),
      this.flCount * SL_COUNT - 1,
    );
    let steps = 0;
    for (let sizeClass = classOf(blockSizeBytes); sizeClass <= last; sizeClass++) {
      for (let block = this.#head(sizeClass); block !== 0; block = blocks.next(block)) {
        if (++steps > limit) return 0;
        this.#listed(block);
        if (alignmentGap(block, alignBytes) + blockSizeBytes <= blocks.size(block)) return block;
      }
    }
    return 0;
  }

  listed(limit: number): number[] {
    const result: number[] = [];
    for (let sizeClass = 0; sizeClass < this.flCount * SL_COUNT; sizeClass++) {
      for (let block = this.#head(sizeClass); block !== 0; block = this.#blocks.next(block)) {
        if (result.length >= limit) return result;
        result.push(this.#listed(block));
      }
    }
    return result;
  }

  verify(limit: number): void {
    const blocks = this.#blocks;
    const words = this.#controlWords;
    const control = this.#controlIndex;
    let visited = 0;
    for (let fl = 0; fl < this.flCount; fl++) {
      const slMap = words[control + CONTROL_SL_BITMAPS_OFFSET / 4 + fl];
      const flBit = (words[control + CONTROL_FL_BITMAP_OFFSET / 4 + (fl >>> 5)] >>> (fl & 31)) & 1;
      if ((flBit === 1) !== (slMap !== 0)) {
        this.#corrupt(this.#control.address, `first-level bit ${fl} disagrees with its bitmap`);
      }
      for (let sl = 0; sl < SL_COUNT; sl++) {
        const sizeClass = fl * SL_COUNT + sl;
        const head = this.#head(sizeClass);
        if (((slMap >>> sl) & 1) !== (head === 0 ? 0 : 1)) {
          this.#corrupt(
            this.#control.address,
            `bitmap bit of class ${sizeClass} disagrees with its list`,
          );
        }
        let previous = 0;
        for (let block = head; block !== 0; block = blocks.next(block)) {
          if (++visited > limit) this.#corrupt(block, "the free lists do not end");
          this.#listed(block);
          if (!blocks.isFree(block)) this.#corrupt(block, "a listed block is not free");
          if (blocks.prev(block) !== previous) this.#corrupt(block, "its back link is wrong");
          if (classOf(blocks.size(block)) !== sizeClass) {
            this.#corrupt(block, `it is listed in class ${sizeClass}, not its own`);
          }
          previous = block;
        }
      }
    }
  }

  /** A listed block about to be read, or HEAP_CORRUPTION for a forged link (listedBlockProblem). */
  #listed(block: number): number {
    const problem = listedBlockProblem(this.#blocks, this.#inHeap, block);
    if (problem !== null) this.#corrupt(block, problem);
    return block;
  }

  #corrupt(address: number, invariant: string): never {
    throw corruptionAt(address, invariant);
  }

  largestFree(): number {
    // No list holds more blocks than the window has room for: a longer walk is a cycle.
    const blocksMax = Math.floor((this.#blocks.words.length * 4) / MIN_BLOCK_BYTES);
    for (let c = this.flCount * SL_COUNT - 1; c >= 0; c--) {
      let largest = 0;
      let steps = 0;
      for (let block = this.#head(c); block !== 0; block = this.#blocks.next(block)) {
        if (++steps > blocksMax) this.#corrupt(block, "the free lists do not end");
        largest = Math.max(largest, this.#blocks.size(this.#listed(block)));
      }
      if (largest !== 0) return largest;
    }
    return 0;
  }
}
