/**
 * Which slab every page frame of the layers belongs to, one entry per 4 KiB
 * frame of the layers' window: the owner of a slab object found from its
 * address in two loads, for `slab_fast_path.ts`'s `free`.
 *
 * The frame table says the same (chunk directory → chunk → frame entry →
 * head frame → descriptor), but as a chain of seven dependent loads on every
 * free; this map is a copy of its answer for slab frames, written when a slab
 * is made (`SlabCache` refill) and cleared when it is given back (`shrink`),
 * the only two places where a frame becomes or stops being a slab frame. It
 * lives outside the managed memory, so no payload can write it, and `check()`
 * proves it equal to the frame table.
 *
 * ```text
 * page = (window offset + (baseAddress mod 4096)) >>> 12   (frames are 4096-aligned in absolute terms)
 * descriptorPlusOne[page]: the slab's descriptor word index + 1, or 0 for no slab
 * info[page]: cache id << 3 | the frame's index in its slab (slabs have at most 8 frames)
 * ```
 *
 * Both arrays are sized when the layers are made (4 bytes per frame each of
 * the window the layers address, at most 2 GiB: 4 MiB); pages never written
 * stay the operating system's shared zero page.
 *
 * @module
 */

import type { FrameAllocator } from "../frames/buddy.ts";
import {
  E_AUX,
  E_NEXT,
  E_TAG,
  FRAME_BYTES,
  FRAME_SHIFT,
  KIND_MASK,
  KIND_SLAB_HEAD,
  KIND_SLAB_TAIL,
  LOCAL_MASK,
  tagAux,
} from "../frames/frame_table.ts";
import { SLAB_ORDER_MAX } from "./slab_cache.ts";

/** Bits of an info entry that hold the frame's index in its slab (slabs have at most 8 frames). */
export const FRAME_INDEX_BITS = 3;
if (SLAB_ORDER_MAX > FRAME_INDEX_BITS) {
  throw new Error("slab_page_map.ts: a slab may have more frames than an info entry can index");
}

/** Scalar word of mappedPages (the layer state's S_MAPPED_PAGES). */
export const PAGE_MAP_MAPPED_WORD = 7;

/** Where a page map keeps its state (layer_state.ts's LayerState fits). */
export interface PageMapState {
  /** Scalar words: PAGE_MAP_MAPPED_WORD. */
  readonly scalars: Int32Array;
  /** Per page: descriptor + 1, or 0. */
  readonly descriptorPlusOne: Int32Array;
  /** Per page: cache id << FRAME_INDEX_BITS | frame index. */
  readonly info: Int32Array;
}

/** The slab of every slab frame, by page. */
export class SlabPageMap {
  /** baseAddress mod 4096: added to a window offset, it makes frames start at multiples of 4096. */
  readonly phaseBytes: number;
  /** Per page: descriptor word index + 1 of its slab, or 0. */
  readonly descriptorPlusOne: Int32Array;
  /** Per page: cache id << FRAME_INDEX_BITS | the frame's index in its slab. */
  readonly info: Int32Array;
  readonly #scalars: Int32Array;
  /** Pages mapped now (check() compares it with the caches' slabs). */
  mappedPages = 0;

  /**
   * A map over `state` (empty when the state is fresh), sized for the window
   * the layers address: ceil((window bytes + phase) / 4096) + 1 pages.
   *
   * @param state The arrays and scalar words the map keeps.
   * @param baseAddress The address of the window's byte 0.
   */
  constructor(state: PageMapState, baseAddress: number) {
    this.phaseBytes = baseAddress % FRAME_BYTES;
    this.#scalars = state.scalars;
    this.descriptorPlusOne = state.descriptorPlusOne;
    this.info = state.info;
  }

  /** The page of window offset `offset`. */
  pageOf(offset: number): number {
    return (offset + this.phaseBytes) >>> FRAME_SHIFT;
  }

  /**
   * Records a new slab.
   *
   * @param slabOffset Window offset of its first frame.
   * @param frameCount Its frames (1 to 2^FRAME_INDEX_BITS).
   * @param descriptor Its descriptor's word index.
   * @param cacheId Its cache's id.
   */
  set(slabOffset: number, frameCount: number, descriptor: number, cacheId: number): void {
    const first = this.pageOf(slabOffset);
    for (let i = 0; i < frameCount; i++) {
      this.descriptorPlusOne[first + i] = descriptor + 1;
      this.info[first + i] = (cacheId << FRAME_INDEX_BITS) | i;
    }
    this.mappedPages += frameCount;
  }

  /**
   * Forgets a slab that is given back.
   *
   * @param slabOffset Window offset of its first frame.
   * @param frameCount Its frames.
   */
  clear(slabOffset: number, frameCount: number): void {
    const first = this.pageOf(slabOffset);
    this.descriptorPlusOne.fill(0, first, first + frameCount);
    this.info.fill(0, first, first + frameCount);
    this.mappedPages -= frameCount;
  }

  /**
   * Proves the map equal to the frame table: every slab frame of every chunk
   * maps to its slab's descriptor, cache and index, and no other page is mapped.
   *
   * @param frames The frame allocator whose tables the map copies.
   * @returns A description of the first difference, or null.
   */
  difference(frames: FrameAllocator): string | null {
    const w = frames.words;
    const dir = frames.directory;
    let slabFrames = 0;
    for (let id = 0; id < dir.idLimit; id++) {
      if (dir.startOffset[id] === -1) continue;
      const table = frames.chunkTableWord[id];
      for (let local = 0; local < frames.chunkFrames[id]; local++) {
        const kind = w[table + (local << 2) + E_TAG] & KIND_MASK;
        if (kind !== KIND_SLAB_HEAD && kind !== KIND_SLAB_TAIL) continue;
        const headLocal = kind === KIND_SLAB_HEAD
          ? local
          : w[table + (local << 2) + E_NEXT] & LOCAL_MASK;
        const head = table + (headLocal << 2);
        const page = this.pageOf(dir.startOffset[id] + (local << FRAME_SHIFT));
        const info = (tagAux(w[head + E_TAG]) << FRAME_INDEX_BITS) | (local - headLocal);
        if (this.descriptorPlusOne[page] !== w[head + E_AUX] + 1 || this.info[page] !== info) {
          return `slab frame ${local} of chunk ${id} is mapped to descriptor ${
            this.descriptorPlusOne[page] - 1
          }, info ${this.info[page]} (expected ${w[head + E_AUX]}, ${info})`;
        }
        slabFrames++;
      }
    }
    let mapped = 0;
    for (let page = 0; page < this.descriptorPlusOne.length; page++) {
      if (this.descriptorPlusOne[page] !== 0) mapped++;
    }
    if (mapped !== slabFrames || this.mappedPages !== slabFrames) {
      return `${mapped} pages mapped (counted ${this.mappedPages}), ${slabFrames} slab frames`;
    }
    return null;
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
    this.mappedPages = r[PAGE_MAP_MAPPED_WORD];
  }

  /** Copies the fields into the shared words (a shared heap's Worker, before it releases the lock). */
  storeShared(): void {
    const r = this.#scalars;
    r[PAGE_MAP_MAPPED_WORD] = this.mappedPages;
  }
}
