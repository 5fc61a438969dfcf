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

import { NONE } from "./frame_table.ts";

/** Where a directory keeps its state (allocator/slab/layer_state.ts's LayerState fits). */
export interface DirectoryState {
  /** Scalar words: S_ID_LIMIT and S_CHUNK_COUNT. */
  readonly scalars: Int32Array;
  /** Per chunk id: start offset, -1 when unused. */
  readonly startOffset: Int32Array;
  /** Per chunk id: end offset, -1 when unused. */
  readonly endOffset: Int32Array;
  /** Per slot: the first chunk overlapping it. */
  readonly slotLo: Int32Array;
  /** Per slot: the second chunk overlapping it. */
  readonly slotHi: Int32Array;
}

/** Scalar word of the directory's idLimit (the layer state's S_ID_LIMIT). */
export const DIRECTORY_ID_LIMIT_WORD = 5;
/** Scalar word of the directory's count (the layer state's S_CHUNK_COUNT). */
export const DIRECTORY_COUNT_WORD = 6;

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
  readonly startOffset: Int32Array;
  /** Window offset just past each chunk. */
  readonly endOffset: Int32Array;
  readonly #scalars: Int32Array;
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
   * A directory over `state` (empty when the state is fresh): its slots
   * cover a window of `(slotLo.length - 2) << SLOT_SHIFT` bytes.
   *
   * @param state The arrays and scalar words the directory keeps.
   */
  constructor(state: DirectoryState) {
    this.#scalars = state.scalars;
    this.startOffset = state.startOffset;
    this.endOffset = state.endOffset;
    this.slotLo = state.slotLo;
    this.slotHi = state.slotHi;
  }

  /** A free chunk id, or NONE when every id is in use. */
  freeId(): number {
    for (let id = 0; id < this.idLimit; id++) {
      if (this.startOffset[id] === -1) return id;
    }
    return this.idLimit < this.startOffset.length ? this.idLimit : NONE;
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

  /**
   * Copies the shared words into the fields. The fields are this Worker's
   * copy of the layer state while it holds a shared heap's lock (as
   * HeapCounters are the block books'): loaded when another Worker changed
   * the state since, stored before the lock is released. An unshared heap's
   * fields are the state itself (plain fields keep its hot paths fast).
   */
  loadShared(): void {
    const r = this.#scalars;
    this.idLimit = r[DIRECTORY_ID_LIMIT_WORD];
    this.count = r[DIRECTORY_COUNT_WORD];
  }

  /** Copies the fields into the shared words (a shared heap's Worker, before it releases the lock). */
  storeShared(): void {
    const r = this.#scalars;
    r[DIRECTORY_ID_LIMIT_WORD] = this.idLimit;
    r[DIRECTORY_COUNT_WORD] = this.count;
  }
}
