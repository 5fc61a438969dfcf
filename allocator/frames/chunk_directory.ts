/**
 * The chunk directory: which chunk, if any, owns an address. Found from the
 * address alone (never from bytes a payload could forge), in O(1): the
 * window is cut into 64 KiB slots and each slot names the (at most two)
 * chunks that overlap it; a slot overlapped by more (only small chunks can
 * do that) is marked and falls back to a bounded scan of every chunk.
 *
 * State is 32-bit: window-relative byte offsets (the window is below 2^31
 * bytes whenever the layers are on) and chunk ids.
 *
 * @module
 */

import { CHUNK_COUNT_MAX, NONE } from "./frame_table.ts";

/**
 * log2 of the bytes one directory slot covers: the frames of a chunk of
 * CHUNK_FRAMES_MIN (buddy.ts), so that a slot overlaps at most two chunks of
 * the usual sizes and the scan serves only the small chunks taken when the
 * block heap runs short.
 */
export const SLOT_SHIFT = 16;
/** A slot overlapped by more than two chunks: scan. */
export const MULTI = -2;

/** Registered chunks and the slot directory over the window. */
export class ChunkDirectory {
  /** Window offset of each chunk's first byte (its payload); -1 when the id is unused. */
  readonly startOffset: Int32Array = new Int32Array(CHUNK_COUNT_MAX).fill(-1);
  /** Window offset just past each chunk. */
  readonly endOffset: Int32Array = new Int32Array(CHUNK_COUNT_MAX).fill(-1);
  /** Highest chunk id in use + 1: bounds every scan. */
  idLimit = 0;
  /** Chunks registered. */
  count = 0;
  /**
   * Per slot: the first chunk id overlapping it, NONE, or MULTI. Written
   * only here; read by find() and by allocator/slab/slab_fast_path.ts.
   */
  readonly slotLo: Int32Array;
  /** Per slot: the second chunk id overlapping it, or NONE (as slotLo). */
  readonly slotHi: Int32Array;

  /**
   * Creates an empty directory for a window of `windowBytes` (below 2^31).
   *
   * @param windowBytes Bytes of the window.
   */
  constructor(windowBytes: number) {
    const slots = (windowBytes >>> SLOT_SHIFT) + 2;
    this.slotLo = new Int32Array(slots).fill(NONE);
    this.slotHi = new Int32Array(slots).fill(NONE);
  }

  /** A free chunk id, or NONE when CHUNK_COUNT_MAX chunks exist. */
  freeId(): number {
    for (let id = 0; id < this.idLimit; id++) {
      if (this.startOffset[id] === -1) return id;
    }
    return this.idLimit < CHUNK_COUNT_MAX ? this.idLimit : NONE;
  }

  /** Registers chunk `id` over window offsets [start, end). */
  add(id: number, start: number, end: number): void {
    this.startOffset[id] = start;
    this.endOffset[id] = end;
    this.count++;
    if (id >= this.idLimit) this.idLimit = id + 1;
    for (let s = start >>> SLOT_SHIFT; s <= (end - 1) >>> SLOT_SHIFT; s++) {
      if (this.slotLo[s] === NONE) this.slotLo[s] = id;
      else if (this.slotHi[s] === NONE) this.slotHi[s] = id;
      else this.slotLo[s] = MULTI;
    }
  }

  /** Forgets chunk `id`. */
  remove(id: number): void {
    const start = this.startOffset[id];
    const end = this.endOffset[id];
    this.startOffset[id] = -1;
    this.endOffset[id] = -1;
    this.count--;
    while (this.idLimit > 0 && this.startOffset[this.idLimit - 1] === -1) this.idLimit--;
    for (let s = start >>> SLOT_SHIFT; s <= (end - 1) >>> SLOT_SHIFT; s++) this.#rebuildSlot(s);
  }

  #rebuildSlot(s: number): void {
    const lo = s * (1 << SLOT_SHIFT);
    const hi = lo + (1 << SLOT_SHIFT);
    this.slotLo[s] = NONE;
    this.slotHi[s] = NONE;
    for (let id = 0; id < this.idLimit; id++) {
      const start = this.startOffset[id];
      if (start === -1 || start >= hi || this.endOffset[id] <= lo) continue;
      if (this.slotLo[s] === NONE) this.slotLo[s] = id;
      else if (this.slotHi[s] === NONE) this.slotHi[s] = id;
      else this.slotLo[s] = MULTI;
    }
  }

  /**
   * The id of the chunk holding window offset `offset`, or NONE.
   *
   * @param offset A window offset (any number; out-of-window ones give NONE).
   * @returns The chunk id or NONE.
   */
  find(offset: number): number {
    // No range test up front: `>>>` maps a negative, huge or NaN offset to
    // some slot (or past the end), and the bounds test below refuses it.
    const s = offset >>> SLOT_SHIFT;
    if (s >= this.slotLo.length) return NONE;
    const a = this.slotLo[s];
    if (a >= 0) {
      if (offset >= this.startOffset[a] && offset < this.endOffset[a]) return a;
      const b = this.slotHi[s];
      if (b >= 0 && offset >= this.startOffset[b] && offset < this.endOffset[b]) return b;
      return NONE;
    }
    if (a === NONE || !(offset >= 0)) return NONE;
    for (let id = 0; id < this.idLimit; id++) {
      if (offset >= this.startOffset[id] && offset < this.endOffset[id]) return id;
    }
    return NONE;
  }
}
