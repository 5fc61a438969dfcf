/**
 * Reading and writing block headers, footers and free-list links in the
 * managed memory, and the seed's alignment math (`block_ptr`).
 *
 * All access goes through one `Uint32Array` over the memory window: an
 * address becomes a word index by one subtraction and one division, and a
 * u64 field is two words. Plain numbers, no bigint: addresses stay below 2^53.
 *
 * @module
 */

import {
  FLAG_FREE,
  FLAG_LAST,
  FLAG_PREV_FREE,
  FLAGS_MASK,
  FOOTER_BYTES,
  FREE_NEXT_OFFSET,
  FREE_PREV_OFFSET,
  GRANULE_BYTES,
  HEADER_BYTES,
  headerCheck,
  MIN_BLOCK_BYTES,
} from "./layout.ts";
import { alignUp, TWO_POW_32 } from "../_math.ts";

/**
 * The payload address of the block at `blockAddress`: the seed's `block_ptr`,
 * the first address after the header, which is granule-aligned because both
 * the block address and `HEADER_BYTES` are.
 *
 * @param blockAddress The address of a block header.
 * @returns The address of the block's payload.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { blockPtr } from "./block.ts";
 *
 * assert.equal(blockPtr(0x1000), 0x1010);
 * ```
 */
export function blockPtr(blockAddress: number): number {
  return blockAddress + HEADER_BYTES;
}

/**
 * The block size that holds a payload of `sizeBytes`: header plus payload,
 * rounded up to a granule and to at least the smallest block.
 *
 * @param sizeBytes The payload size asked for, a positive integer.
 * @returns The size of the block to carve.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { blockSizeFor } from "./block.ts";
 *
 * assert.equal(blockSizeFor(1), 40);
 * assert.equal(blockSizeFor(100), 120);
 * ```
 */
export function blockSizeFor(sizeBytes: number): number {
  const size = alignUp(sizeBytes + HEADER_BYTES, GRANULE_BYTES);
  return size < MIN_BLOCK_BYTES ? MIN_BLOCK_BYTES : size;
}

/**
 * The bytes a free block at `blockAddress` must skip before a payload aligned
 * to `alignBytes` can start: 0, or at least the smallest block so the skipped
 * bytes can become a free block of their own.
 *
 * @param blockAddress The address of the free block.
 * @param alignBytes The payload alignment, a power of two, at least a granule.
 * @returns The gap in bytes between the free block and the aligned block.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { alignmentGap } from "./block.ts";
 *
 * assert.equal(alignmentGap(0x1ff0, 0x1000), 0);
 * assert.equal(alignmentGap(0x1000, 0x1000), 0xff0);
 * ```
 */
export function alignmentGap(blockAddress: number, alignBytes: number): number {
  const payload = alignUp(blockAddress + HEADER_BYTES, alignBytes);
  const gap = payload - HEADER_BYTES - blockAddress;
  if (gap === 0 || gap >= MIN_BLOCK_BYTES) return gap;
  return alignUp(blockAddress + HEADER_BYTES + MIN_BLOCK_BYTES, alignBytes) - HEADER_BYTES -
    blockAddress;
}

/**
 * Word-level access to headers, footers and links in the memory window.
 *
 * Callers pass granule-aligned addresses inside usable regions; the
 * allocator guarantees that before it reads, so these accessors do no
 * bounds checks of their own beyond the typed array's.
 */
export class BlockWords {
  /** The window as 32-bit words. */
  readonly words: Uint32Array;
  /** The address byte 0 of the window stands for; a multiple of 8. */
  readonly baseAddress: number;
  /** The heap's secret check-word key (see `headerCheck`). */
  readonly key: number;

  /**
   * Wraps a window.
   *
   * @param window The window all regions lie in: a view whose byte offset is a multiple of 4.
   * @param baseAddress The address of the window's byte 0, a multiple of 8.
   * @param key The heap's check-word key.
   */
  constructor(window: Uint8Array, baseAddress: number, key: number) {
    this.words = new Uint32Array(
      window.buffer as ArrayBuffer,
      window.byteOffset,
      Math.floor(window.byteLength / 4),
    );
    this.baseAddress = baseAddress;
    this.key = key;
  }

  /** Word index of `address`, which must be a multiple of 4. */
  index(address: number): number {
    return (address - this.baseAddress) / 4;
  }

  /** Reads a u64 field as a number. */
  readU64(address: number): number {
    const i = (address - this.baseAddress) / 4;
    return this.words[i] + this.words[i + 1] * TWO_POW_32;
  }

  /** Writes a number below 2^53 as a u64 field. */
  writeU64(address: number, value: number): void {
    const i = (address - this.baseAddress) / 4;
    this.words[i] = value >>> 0;
    this.words[i + 1] = Math.floor(value / TWO_POW_32);
  }

  /** The size of the block at `block`, without flag bits. */
  size(block: number): number {
    const i = (block - this.baseAddress) / 4;
    const word0 = this.words[i];
    return word0 - (word0 & FLAGS_MASK) + this.words[i + 1] * TWO_POW_32;
  }

  /** The flag bits of the block at `block`. */
  flags(block: number): number {
    return this.words[(block - this.baseAddress) / 4] & FLAGS_MASK;
  }

  /** True when the block at `block` is free. */
  isFree(block: number): boolean {
    return (this.words[(block - this.baseAddress) / 4] & FLAG_FREE) !== 0;
  }

  /** The slack word of the block at `block`. */
  slack(block: number): number {
    return this.words[(block - this.baseAddress) / 4 + 2];
  }

  /**
   * Writes a whole header: size, flags, slack and the check word.
   *
   * @param block The block address.
   * @param sizeBytes The block size, a granule multiple.
   * @param flags The flag bits.
   * @param slackBytes Payload capacity beyond the requested size (0 when free).
   */
  writeHeader(block: number, sizeBytes: number, flags: number, slackBytes: number): void {
    const i = (block - this.baseAddress) / 4;
    const word0 = ((sizeBytes >>> 0) | flags) >>> 0;
    const word1 = Math.floor(sizeBytes / TWO_POW_32);
    this.words[i] = word0;
    this.words[i + 1] = word1;
    this.words[i + 2] = slackBytes;
    this.words[i + 3] = headerCheck(block, word0, word1, slackBytes, this.key);
  }

  /** Sets or clears one flag, keeping the check word valid. */
  setFlag(block: number, flag: number, on: boolean): void {
    const i = (block - this.baseAddress) / 4;
    const word0 = (on ? this.words[i] | flag : this.words[i] & ~flag) >>> 0;
    this.words[i] = word0;
    this.words[i + 3] = headerCheck(block, word0, this.words[i + 1], this.words[i + 2], this.key);
  }

  /** True when the check word matches the header's other words. */
  headerValid(block: number): boolean {
    const i = (block - this.baseAddress) / 4;
    const words = this.words;
    return words[i + 3] === headerCheck(block, words[i], words[i + 1], words[i + 2], this.key);
  }

  /** Writes a free block's header (FLAG_FREE plus the given flags) and footer. */
  writeFree(block: number, sizeBytes: number, flags: number): void {
    this.writeHeader(block, sizeBytes, (flags & (FLAG_PREV_FREE | FLAG_LAST)) | FLAG_FREE, 0);
    this.writeU64(block + sizeBytes - FOOTER_BYTES, sizeBytes);
  }

  /** The size stored in the footer just before `block`, that of the previous free block. */
  previousFooter(block: number): number {
    return this.readU64(block - FOOTER_BYTES);
  }

  /** The next free block on the list of the free block `block`, or 0. */
  next(block: number): number {
    return this.readU64(block + FREE_NEXT_OFFSET);
  }

  /** The previous free block on the list of the free block `block`, or 0. */
  prev(block: number): number {
    return this.readU64(block + FREE_PREV_OFFSET);
  }

  /** Sets the next link of the free block `block`. */
  setNext(block: number, next: number): void {
    this.writeU64(block + FREE_NEXT_OFFSET, next);
  }

  /** Sets the previous link of the free block `block`. */
  setPrev(block: number, prev: number): void {
    this.writeU64(block + FREE_PREV_OFFSET, prev);
  }

  /** True when the block is the last of its region. */
  isLast(block: number): boolean {
    return (this.words[(block - this.baseAddress) / 4] & FLAG_LAST) !== 0;
  }
}

/** Windows ending at or below this address use {@linkcode NarrowBlockWords}. */
export const NARROW_WINDOW_END = 2 ** 31;

/**
 * BlockWords for a window that ends below 2^31, where every address and size
 * fits 31 bits and so every high word is 0. Reading only the low words keeps
 * the allocator's arithmetic in 32-bit integers, which V8 runs faster than
 * doubles (the replays show it); the high words are still written, so the
 * bytes are exactly those of the general layout that the Zig side reads.
 */
export class NarrowBlockWords extends BlockWords {
  /** Reads a u64 field whose high word is 0. */
  override readU64(address: number): number {
    return this.words[(address - this.baseAddress) / 4];
  }

  /** Writes a value below 2^31 as a u64 field. */
  override writeU64(address: number, value: number): void {
    const i = (address - this.baseAddress) / 4;
    this.words[i] = value;
    this.words[i + 1] = 0;
  }

  /** Writes a whole header of a block below 2^31 (its high size word is 0). */
  override writeHeader(block: number, sizeBytes: number, flags: number, slackBytes: number): void {
    const i = (block - this.baseAddress) / 4;
    const word0 = (sizeBytes | flags) >>> 0;
    this.words[i] = word0;
    this.words[i + 1] = 0;
    this.words[i + 2] = slackBytes;
    this.words[i + 3] = headerCheck(block, word0, 0, slackBytes, this.key);
  }

  /** The size of the block at `block`, without flag bits. */
  override size(block: number): number {
    const word0 = this.words[(block - this.baseAddress) / 4];
    return word0 - (word0 & FLAGS_MASK);
  }
}

/**
 * The word access for a window: narrow when the whole window lies below 2^31.
 *
 * @param window The window all regions lie in: a view whose byte offset is a multiple of 4.
 * @param baseAddress The address of the window's byte 0, a multiple of 8.
 * @param key The heap's check-word key.
 * @returns A BlockWords over the window.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { blockWordsFor, NarrowBlockWords } from "./block.ts";
 *
 * assert.ok(blockWordsFor(new Uint8Array(4096), 0x1000, 7) instanceof NarrowBlockWords);
 * ```
 */
export function blockWordsFor(window: Uint8Array, baseAddress: number, key: number): BlockWords {
  return baseAddress + window.byteLength <= NARROW_WINDOW_END
    ? new NarrowBlockWords(window, baseAddress, key)
    : new BlockWords(window, baseAddress, key);
}
