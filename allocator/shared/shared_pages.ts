/**
 * A shared heap's page runs as the Worker caches see them without the lock:
 * whether an address is the head of a live page run of an order a Worker
 * cache holds, found from the address (the chunk directory, then the frame
 * table), never from bytes a payload could forge.
 *
 * A live run's chunk bounds and its head's frame table entry do not change
 * while the run is live (a chunk with a live run is never given back, and
 * only the run's free rewrites its entry), so a Worker holding the run reads
 * them without the lock. The directory's slots may change meanwhile (another
 * chunk added to or taken out of the slot), so a read finds the chunk only
 * when the slot names it at that moment and its bounds hold the address;
 * anything else (a slot several chunks overlap or that is being rewritten, a
 * frame that is no run's head, a run of another order or with slack bytes
 * past a request) gives -1, and the caller decides under the lock
 * (LayeredHeap.wholePageRunOrder), where it frees, verifies or reports it. A free racing with another Worker's free
 * of the same run, with no synchronisation between them, is a data race in
 * the program and may go unseen, as with blocks and slab objects.
 *
 * @module
 */

import type { FrameAllocator } from "../frames/buddy.ts";
import {
  E_AUX,
  E_PREV,
  E_TAG,
  FRAME_BYTES,
  FRAME_SHIFT,
  KIND_MASK,
  KIND_PAGES_HEAD,
  tagOrder,
} from "../frames/frame_table.ts";
import { SLOT_SHIFT } from "../frames/chunk_directory.ts";
import { PAGE_ORDER_MAX } from "./worker_cache.ts";

/** The page runs of a shared heap's frames, read without the lock. */
export class SharedPages {
  readonly #words: Int32Array;
  readonly #baseAddress: number;
  readonly #slotLo: Int32Array;
  readonly #slotHi: Int32Array;
  readonly #starts: Int32Array;
  readonly #ends: Int32Array;
  readonly #chunkFrames: Int32Array;
  readonly #chunkTableWord: Int32Array;

  /**
   * Views the frames' state (arrays in the shared memory, never the
   * fields a Worker loads under the lock).
   *
   * @param frames A shared heap's frame allocator.
   */
  constructor(frames: FrameAllocator) {
    this.#words = frames.words;
    this.#baseAddress = frames.baseAddress;
    this.#slotLo = frames.directory.slotLo;
    this.#slotHi = frames.directory.slotHi;
    this.#starts = frames.directory.startOffset;
    this.#ends = frames.directory.endOffset;
    this.#chunkFrames = frames.chunkFrames;
    this.#chunkTableWord = frames.chunkTableWord;
  }

  /**
   * The order of the live page run that starts at `address`, when a Worker
   * cache may hold it: a run of exactly 2^order frames (0 to PAGE_ORDER_MAX)
   * with no slack bytes recorded. -1 for anything else.
   *
   * @param address Any value.
   */
  orderAt(address: number): number {
    // Frames are page-aligned addresses (the window's base need not be).
    if (typeof address !== "number" || address % FRAME_BYTES !== 0) return -1;
    const offset = address - this.#baseAddress;
    // int32 from here on: an offset outside the window goes no further.
    if ((offset | 0) !== offset || offset < 0) return -1;
    const slot = offset >>> SLOT_SHIFT;
    if (slot >= this.#slotLo.length) return -1;
    let chunk = this.#slotLo[slot];
    // NONE, or a slot several chunks overlap (MULTI): the locked path decides.
    if (chunk < 0) return -1;
    if (!(offset >= this.#starts[chunk] && offset < this.#ends[chunk])) {
      chunk = this.#slotHi[slot];
      if (chunk < 0 || !(offset >= this.#starts[chunk] && offset < this.#ends[chunk])) return -1;
    }
    const local = (offset - this.#starts[chunk]) >> FRAME_SHIFT;
    if (
      local >= this.#chunkFrames[chunk] || (offset - this.#starts[chunk]) !== local << FRAME_SHIFT
    ) {
      return -1;
    }
    const entry = this.#chunkTableWord[chunk] + (local << 2);
    const words = this.#words;
    const tagWord = words[entry + E_TAG];
    if ((tagWord & KIND_MASK) !== KIND_PAGES_HEAD) return -1;
    const order = tagOrder(tagWord);
    if (
      order > PAGE_ORDER_MAX || words[entry + E_AUX] !== 1 << order || words[entry + E_PREV] !== 0
    ) {
      return -1;
    }
    return order;
  }
}
