/**
 * A shared heap's kmalloc slab objects as the Worker caches see them without
 * the lock: the owner of an object found from its address (the slab page map,
 * then the descriptor), and the object's two bits of per-object state a
 * Worker cache writes.
 *
 * An object in a Worker cache stays in use to its slab (its bitmap bit set,
 * its slack byte 0, its requested bytes the whole object), like a block in a
 * Worker cache stays a used block; the descriptor of a Worker-cached cache
 * (slab_cache.ts, `workerCached`) adds, per object:
 *
 * ```text
 * Worker byte (after the slack bytes): OBJECT_CACHED (255) while the object
 *             sits in a Worker cache, else its hidden slack (what the caller
 *             asked for below the object size, at most 23 bytes). Written by
 *             the Worker holding the object with plain byte stores (no two
 *             objects share a byte, so no atomic read-modify-write), or
 *             under the lock.
 * ```
 *
 * The page map entries and the in-use bit of a live object do not change
 * while a Worker holds it (a slab with a live object is never given back),
 * so these reads need no lock; anything else (not a slab frame, not the
 * start of a live object, a slack byte set under the lock, a class no Worker
 * cache holds) is left to the locked path, which reports it. Double frees
 * are told from the Worker byte, not guessed.
 *
 * @module
 */

import type { LayeredHeap } from "../slab/layered_heap.ts";
import type { SlabCache } from "../slab/slab_cache.ts";
import { D_BITMAP, OBJECT_CACHED } from "../slab/slab_cache.ts";
import { FRAME_SHIFT } from "../frames/frame_table.ts";
import { FRAME_INDEX_BITS } from "../slab/slab_page_map.ts";
import { classHolding } from "./worker_cache.ts";

/** locate(): the address lies in no slab frame (a block, a page run, or not in the heap). */
export const NOT_SLAB = -2;
/** locate(): a slab frame, but no live object a Worker cache takes without the lock. */
export const SLAB_LOCKED = -1;

/** The slab objects of a shared heap's layers, read and marked without the lock. */
export class SharedSlabs {
  readonly #words: Int32Array;
  readonly #bytes: Uint8Array;
  readonly #baseAddress: number;
  readonly #windowBytes: number;
  readonly #phaseBytes: number;
  readonly #pageDescriptors: Int32Array;
  readonly #pageInfo: Int32Array;
  readonly #caches: readonly SlabCache[];
  /** Per cache id: the Worker cache class whose capacity is its object size, or -1. */
  readonly #classOfCache: Int8Array;
  /** The cache of the object the last locate() found. */
  foundCache: SlabCache | null = null;
  /** Its descriptor's word index. */
  foundDescriptor = 0;
  /** Its index in its slab. */
  foundIndex = 0;

  /**
   * Views the layers' state.
   *
   * @param layers A shared heap's layers (their kmalloc caches are Worker-cached).
   */
  constructor(layers: LayeredHeap) {
    const frames = layers.frames;
    this.#words = frames.words;
    this.#bytes = new Uint8Array(
      frames.words.buffer,
      frames.words.byteOffset,
      frames.words.byteLength,
    );
    this.#baseAddress = frames.baseAddress;
    this.#windowBytes = frames.words.byteLength;
    this.#phaseBytes = layers.slabPages.phaseBytes;
    this.#pageDescriptors = layers.slabPages.descriptorPlusOne;
    this.#pageInfo = layers.slabPages.info;
    this.#caches = layers.caches;
    this.#classOfCache = Int8Array.from(
      layers.caches,
      (cache) => cache.workerCached ? classHolding(cache.objectBytes) : -1,
    );
  }

  /**
   * Finds the slab object at `address` and whether a Worker cache may take
   * it without the lock: sets foundCache, foundDescriptor and foundIndex.
   *
   * @param address Any value.
   * @returns The Worker cache class of a live object of a Worker-cached
   *   cache with no slack byte; NOT_SLAB outside every slab frame; else SLAB_LOCKED.
   */
  locate(address: number): number {
    if (typeof address !== "number") return NOT_SLAB;
    const offset = address - this.#baseAddress;
    if (!(offset >= 0 && offset < this.#windowBytes) || (offset & 7) !== 0) return NOT_SLAB;
    const page = (offset + this.#phaseBytes) >>> FRAME_SHIFT;
    const descriptorPlusOne = this.#pageDescriptors[page];
    if (descriptorPlusOne === 0) return NOT_SLAB;
    const info = this.#pageInfo[page];
    const id = info >>> FRAME_INDEX_BITS;
    const cls = this.#classOfCache[id];
    if (cls < 0) return SLAB_LOCKED;
    const cache = this.#caches[id];
    const slabOffset = ((page - (info & ((1 << FRAME_INDEX_BITS) - 1))) << FRAME_SHIFT) -
      this.#phaseBytes;
    const from = offset - slabOffset;
    const index = Math.imul(from, cache.indexMultiplier) >>> 20;
    if (index * cache.objectBytes !== from || index >= cache.objectsPerSlab) return SLAB_LOCKED;
    const d = descriptorPlusOne - 1;
    if ((this.#words[d + D_BITMAP + (index >>> 5)] & (1 << (index & 31))) === 0) {
      return SLAB_LOCKED;
    }
    this.foundCache = cache;
    this.foundDescriptor = d;
    this.foundIndex = index;
    return cls;
  }

  /**
   * Makes the object `cache` just handed out (its alloc, under its lock)
   * the found one, as locate() of its address would.
   */
  found(cache: SlabCache): void {
    this.foundCache = cache;
    this.foundDescriptor = cache.allocatedDescriptor;
    this.foundIndex = cache.allocatedIndex;
  }

  /** True when the object locate() found sits in a Worker cache. */
  foundCached(): boolean {
    return this.#bytes[this.#workerByteAt()] === OBJECT_CACHED;
  }

  /** The slack byte (set under the lock) of the object locate() found. */
  foundSlack(): number {
    const cache = this.foundCache!;
    return this.#bytes[
      ((this.foundDescriptor + D_BITMAP + cache.bitmapWords) << 2) + this.foundIndex
    ];
  }

  /** The hidden slack of the object locate() found (not cached). */
  foundHidden(): number {
    return this.#bytes[this.#workerByteAt()];
  }

  #workerByteAt(): number {
    return ((this.foundDescriptor + this.foundCache!.workerByteWord) << 2) + this.foundIndex;
  }

  /**
   * Marks the object locate() found cached.
   *
   * @returns The hidden slack it had.
   */
  markCached(): number {
    const at = this.#workerByteAt();
    const hidden = this.#bytes[at];
    this.#bytes[at] = OBJECT_CACHED;
    return hidden;
  }

  /** Marks the object locate() found live (not cached) with `hiddenBytes` of hidden slack. */
  markLive(hiddenBytes: number): void {
    this.#bytes[this.#workerByteAt()] = hiddenBytes;
  }
}
