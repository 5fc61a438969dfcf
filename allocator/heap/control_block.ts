/**
 * Where the allocator's own metadata (list heads, TLSF bitmaps) lives.
 *
 * The control block sits at the start of the first region that can hold it
 * and one block, inside the managed memory as the seed plans. When no region
 * can (a firmware map of only tiny regions, the seed's TODO [1]) it lives in
 * a small buffer of its own instead, and the regions are used for blocks only.
 *
 * @module
 */

import { TWO_POW_32 } from "../_math.ts";

/** Word access to a control block, inside the window or detached from it. */
export class ControlBlock {
  /** The words holding the control block. */
  readonly words: Uint32Array;
  /** Index in `words` of the control block's first word. */
  readonly index: number;
  /** The control block's address in the memory window, or 0 when detached. */
  readonly address: number;
  /** Bytes of the control block. */
  readonly sizeBytes: number;

  /**
   * Wraps control-block words.
   *
   * @param words The words the block lives in (the window's, or its own).
   * @param index Index of the block's first word in `words`.
   * @param address The block's address in the window, or 0 when detached.
   * @param sizeBytes Bytes of the block.
   */
  constructor(words: Uint32Array, index: number, address: number, sizeBytes: number) {
    this.words = words;
    this.index = index;
    this.address = address;
    this.sizeBytes = sizeBytes;
  }

  /**
   * A control block of `sizeBytes` inside the window's words, narrow when
   * every address it holds stays below 2^31.
   */
  static within(
    words: Uint32Array,
    index: number,
    address: number,
    sizeBytes: number,
    narrow: boolean,
  ): ControlBlock {
    return narrow
      ? new NarrowControlBlock(words, index, address, sizeBytes)
      : new ControlBlock(words, index, address, sizeBytes);
  }

  /** A control block of `sizeBytes` in a buffer of its own. */
  static detached(sizeBytes: number, narrow = false): ControlBlock {
    return ControlBlock.within(new Uint32Array(Math.ceil(sizeBytes / 4)), 0, 0, sizeBytes, narrow);
  }

  /** Reads the u32 at `offsetBytes`. */
  word(offsetBytes: number): number {
    return this.words[this.index + offsetBytes / 4];
  }

  /** Writes the u32 at `offsetBytes`. */
  setWord(offsetBytes: number, value: number): void {
    this.words[this.index + offsetBytes / 4] = value;
  }

  /** Reads the u64 at `offsetBytes` as a number. */
  readU64(offsetBytes: number): number {
    const i = this.index + offsetBytes / 4;
    return this.words[i] + this.words[i + 1] * TWO_POW_32;
  }

  /** Writes a number below 2^53 as the u64 at `offsetBytes`. */
  writeU64(offsetBytes: number, value: number): void {
    const i = this.index + offsetBytes / 4;
    this.words[i] = value >>> 0;
    this.words[i + 1] = Math.floor(value / TWO_POW_32);
  }
}

/**
 * A control block of a window that ends below 2^31 (see `NarrowBlockWords`):
 * every head is an address below 2^31, so only low words are read.
 */
export class NarrowControlBlock extends ControlBlock {
  /** Reads a u64 field whose high word is 0. */
  override readU64(offsetBytes: number): number {
    return this.words[this.index + offsetBytes / 4];
  }

  /** Writes a value below 2^31 as a u64 field. */
  override writeU64(offsetBytes: number, value: number): void {
    const i = this.index + offsetBytes / 4;
    this.words[i] = value;
    this.words[i + 1] = 0;
  }
}
