/**
 * The slab hot path: `alloc` of a kmalloc class at the default alignment and
 * `free` of any live slab object, written out over one `Int32Array` for heaps
 * whose layers run without debug mode. `PhysicalAllocator` tries it first
 * (`slabFastPathActive`); the option `fastPath: false` turns it off.
 *
 * The general path (`LayeredHeap.kmalloc` → `SlabCache.alloc`, and
 * `LayeredHeap.free` → `SlabCache.freeFast`) is a chain of small calls across
 * classes that V8 does not inline into one function (it inlines at most about
 * 920 bytes of bytecode into each). This file makes exactly its decisions and
 * writes exactly its bytes, so the two can serve one heap in turns;
 * `tests/slab_fast_path_test.ts` runs both side by side and compares every
 * result, error and byte.
 *
 * Every check the general path makes before it writes is made here too: the
 * owner is found from the address (the slab page map, a copy of the frame
 * table out of the payloads' reach), never from payload bytes; a free link is
 * decoded with its key (safe-linking) and must name a carved, free object; an
 * object's state bit must say it is free before it is handed out and live
 * before it is freed. When a check fails, or the call is not the common case
 * (first use of a class, no partial or empty slab, a slot shared by several
 * chunks, bad arguments), the method returns {@linkcode FALLBACK} (or false)
 * and the general path runs the call: it performs it or throws its precise
 * error. Nothing is written before that, except an empty slab moved to the
 * partial list when the class had no partial one, which the general path's
 * alloc does first too (SlabCache.alloc's refill), so the two end alike; a
 * forged link in that slab makes the general path move it back before it
 * throws, so a refused alloc leaves the heap as it was.
 *
 * Its calls take and return window offsets, never addresses: int32 values
 * from the layers' window (its first 2^31 bytes), which V8 passes and
 * returns as small integers. `PhysicalAllocator` turns an address into an
 * offset at its door (`address - base`) and back (`base + offset`), in
 * functions small enough for V8 to inline into the caller's loop. Over
 * identity-mapped memory (windows far above 2^31) an address is no small
 * integer, and every call that took or returned one would box it in a heap
 * number; this way none does, and both backends run the same int32 code.
 *
 * @module
 */

import { FRAME_SHIFT, NONE } from "../frames/frame_table.ts";
import { SLOT_SHIFT } from "../frames/chunk_directory.ts";
import { KMALLOC_CLASS_BY_STEP, KMALLOC_MAX_BYTES } from "./kmalloc.ts";
import type { LayeredHeap } from "./layered_heap.ts";
import { FRAME_INDEX_BITS } from "./slab_page_map.ts";
import { D_BITMAP, D_CARVED, D_FREE, D_IN_USE, D_SLAB, type SlabCache } from "./slab_cache.ts";

/** Returned by `allocOffset`, `reallocAt` and `freeAt` when the general path must run the call instead. */
export const FALLBACK = -1;
/** Returned by `freeAt` when it freed the object. */
export const FREED = 1;
/** Returned by `freeAt` when no chunk holds the address: it is the block heap's to free or refuse. */
export const NOT_IN_LAYERS = 0;

/** What the fast path needs of the heap's memory: whether it was closed (an unmapped window). */
export interface ClosableMemory {
  /** True once the memory was released: its bytes may be unmapped, the view still attached. */
  readonly closed?: boolean;
}

/** #locate: no chunk holds the address (LayeredHeap.free would return false). */
const OUTSIDE = -1;
/** #locate: a chunk holds it, but it is not a live slab object (the general path reports or frees it). */
const INSIDE = -2;

/*
 * As in tlsf_fast_path.ts, the formats' numbers are written as literals
 * (imported constants cost a module-variable load and a hole check each in
 * the bytecode V8 counts for inlining), and proved against their sources here,
 * once, when the module loads:
 *   descriptor words: free head 0, in use 1, carved 2, slab 3, bitmap from 4;
 *   frame shift 12 (mask 4095); slab page map info: frame index bits 3
 *   (mask 7); directory slot shift 16; NONE -1; kmalloc's largest class 512.
 */
const LITERALS_MATCH_FORMATS = D_FREE === 0 && D_IN_USE === 1 && D_CARVED === 2 &&
  D_SLAB === 3 && D_BITMAP === 4 && FRAME_SHIFT === 12 && FRAME_INDEX_BITS === 3 &&
  SLOT_SHIFT === 16 && NONE === -1 && KMALLOC_MAX_BYTES === 512;
if (!LITERALS_MATCH_FORMATS) throw new Error("slab_fast_path.ts no longer matches its formats");

/** `alloc` and `free` of the layers' slab objects, the common case written out. */
export class SlabFastPath {
  /** The layers' window as int32 words (frame tables, descriptors, free links). */
  readonly #words: Int32Array;
  /** The same window as bytes (kmalloc slack bytes). */
  readonly #bytes: Uint8Array;
  /** `#words.length` when made: a view of a detached or shrunk buffer has length 0. */
  readonly #wordCount: number;
  /** The heap's memory, closed (and maybe unmapped) behind the heap's back when `closed` says so. */
  readonly #memory: ClosableMemory;
  readonly #layers: LayeredHeap;
  /** Every cache by id (the kmalloc classes first); the same array the layers grow. */
  readonly #caches: SlabCache[];
  /** Each cache's free-link key by id; the same array the layers grow. */
  readonly #secrets: number[];
  /** The kmalloc cache of each request size in 8-byte steps: `[(size + 7) >> 3]` (one load, not two). */
  readonly #kmallocByStep: readonly SlabCache[];
  /** The chunk directory's and the frames' per-slot and per-chunk arrays (fixed at creation). */
  readonly #slotLo: Int32Array;
  readonly #slotHi: Int32Array;
  readonly #starts: Int32Array;
  readonly #ends: Int32Array;
  /** The layers' slab page map (see slab_page_map.ts): its phase and arrays, fixed at creation. */
  readonly #phaseBytes: number;
  readonly #pageDescriptors: Int32Array;
  readonly #pageInfo: Int32Array;
  /** What #locate found: the object's cache and index in its slab. */
  #foundCache: SlabCache | null = null;
  #foundIndex = 0;

  /**
   * Creates the fast path over layers without debug mode.
   *
   * @param layers The heap's page-frame and slab layers.
   * @param memory The heap's memory: no call is served once it is closed.
   */
  constructor(layers: LayeredHeap, memory: ClosableMemory) {
    const frames = layers.frames;
    this.#words = frames.words;
    this.#bytes = new Uint8Array(
      frames.words.buffer,
      frames.words.byteOffset,
      frames.words.byteLength,
    );
    this.#wordCount = frames.words.length;
    this.#memory = memory;
    this.#layers = layers;
    this.#caches = layers.caches;
    this.#secrets = layers.cacheSecrets;
    this.#kmallocByStep = Array.from(KMALLOC_CLASS_BY_STEP, (index) => layers.caches[index]);
    this.#slotLo = frames.directory.slotLo;
    this.#slotHi = frames.directory.slotHi;
    this.#starts = frames.directory.startOffset;
    this.#ends = frames.directory.endOffset;
    this.#phaseBytes = layers.slabPages.phaseBytes;
    this.#pageDescriptors = layers.slabPages.descriptorPlusOne;
    this.#pageInfo = layers.slabPages.info;
  }

  /**
   * Hands out an object of the kmalloc class for `sizeBytes` from the class's
   * partial slab (general path: LayeredHeap.kmalloc, then SlabCache.alloc).
   *
   * @param sizeBytes The size asked for: any value (only int32 sizes of 1 to 512 are served).
   * @returns The object's window offset, or FALLBACK.
   */
  allocOffset(sizeBytes: number): number {
    if (
      typeof sizeBytes !== "number" || !(sizeBytes >= 1 && sizeBytes <= 512) ||
      (sizeBytes | 0) !== sizeBytes || !this.#open()
    ) return FALLBACK;
    const cache = this.#kmallocByStep[(sizeBytes + 7) >> 3];
    if (cache.partialHead === -1 && !cache.reuseEmpty()) return FALLBACK;
    const w = this.#words;
    const d = cache.currentDescriptor;
    const base = cache.currentBase;
    const size = cache.objectBytes;
    const carved = w[d + 2];
    const head = w[d];
    const index = head === -1 ? carved : head;
    const offset = base + index * size;
    let next = -1;
    if (head !== -1) {
      next = w[offset >> 2] ^ this.#secrets[cache.id] ^ Math.imul(offset, 0x9e3779b1);
      if (
        next !== -1 &&
        ((next >>> 0) >= carved || (w[d + 4 + (next >>> 5)] & (1 << (next & 31))) !== 0)
      ) return FALLBACK;
    }
    // Everything verified: from here on, the general path's writes.
    const bitWord = d + 4 + (index >>> 5);
    const bits = w[bitWord];
    const bit = 1 << (index & 31);
    if ((bits & bit) !== 0 || index >= cache.objectsPerSlab) return FALLBACK;
    if (index === carved) w[d + 2] = carved + 1;
    else w[d] = next;
    w[bitWord] = bits | bit;
    this.#bytes[((d + 4 + cache.bitmapWords) << 2) + index] = size - sizeBytes;
    cache.activeObjects++;
    cache.requestedBytes += sizeBytes;
    if (++w[d + 1] === cache.objectsPerSlab) cache.partialFilled();
    return offset;
  }

  /**
   * True while the memory may be read: not closed (an identity window may be
   * unmapped then), its buffer neither detached nor shrunk. The heap's door
   * checks only that the heap is open; the general path reports the rest.
   */
  #open(): boolean {
    return this.#words.length === this.#wordCount && this.#memory.closed !== true;
  }

  /**
   * Takes back the live slab object at window offset `offsetNumber`
   * (general path: LayeredHeap.free, then SlabCache.freeFast).
   *
   * @param offsetNumber The address minus the window's base: any number (NaN, fractions, huge).
   * @returns FREED; or, having written nothing, NOT_IN_LAYERS or FALLBACK (the general layer path must run the call).
   */
  freeAt(offsetNumber: number): number {
    const d = this.#locate(offsetNumber);
    if (d < 0) return d === OUTSIDE ? NOT_IN_LAYERS : FALLBACK;
    this.#release(this.#foundCache!, d, this.#foundIndex, offsetNumber | 0);
    return FREED;
  }

  /**
   * The general path's writes of a free (SlabCache.freeFast) for object
   * `index` at window offset `offset` of the slab with descriptor `d`, which
   * #locate verified to be live.
   */
  #release(cache: SlabCache, d: number, index: number, offset: number): void {
    const size = cache.objectBytes;
    const w = this.#words;
    const bitWord = d + 4 + (index >>> 5);
    w[bitWord] &= ~(1 << (index & 31));
    w[offset >> 2] = w[d] ^ this.#secrets[cache.id] ^ Math.imul(offset, 0x9e3779b1);
    w[d] = index;
    cache.activeObjects--;
    cache.requestedBytes -= cache.keepsSizes
      ? size - this.#bytes[((d + 4 + cache.bitmapWords) << 2) + index]
      : size;
    const inUse = --w[d + 1];
    if (inUse === 0) {
      cache.slabFreed(d, 0);
      // Only a slab that has just emptied can give its cache a second empty slab.
      if (cache.emptySlabs > 1) this.#layers.trim();
    } else if (inUse === cache.objectsPerSlab - 1) cache.slabFreed(d, inUse);
  }

  /**
   * Resizes the live kmalloc object at window offset `offsetNumber` to
   * `sizeBytes` of 1 to 512 (general path: PhysicalAllocator's realloc of a
   * layer address): in place when the size keeps its class, else moved to an
   * object of the new class (alloc, copy, free, as the general path does).
   *
   * @param offsetNumber The address minus the window's base: any number.
   * @param sizeBytes Any value.
   * @returns The object's window offset, or FALLBACK (having written nothing but what the module doc says).
   */
  reallocAt(offsetNumber: number, sizeBytes: number): number {
    if (
      typeof sizeBytes !== "number" || !(sizeBytes >= 1 && sizeBytes <= 512) ||
      (sizeBytes | 0) !== sizeBytes
    ) return FALLBACK;
    const d = this.#locate(offsetNumber);
    if (d < 0) return FALLBACK;
    const cache = this.#foundCache!;
    if (!cache.keepsSizes) return FALLBACK;
    const index = this.#foundIndex;
    const slackByte = ((d + 4 + cache.bitmapWords) << 2) + index;
    const oldBytes = cache.objectBytes - this.#bytes[slackByte];
    // #locate found a live object: the offset is an int32.
    const from = offsetNumber | 0;
    if (sizeBytes === oldBytes) return from;
    if (cache === this.#kmallocByStep[(sizeBytes + 7) >> 3]) {
      this.#bytes[slackByte] = cache.objectBytes - sizeBytes;
      cache.requestedBytes += sizeBytes - oldBytes;
      return from;
    }
    const to = this.allocOffset(sizeBytes);
    if (to === FALLBACK) return FALLBACK;
    // At most 512 bytes between two objects (8-byte aligned, apart): copied
    // in int32 words, then bytes, which costs less than copyWithin's call.
    const copyBytes = oldBytes < sizeBytes ? oldBytes : sizeBytes;
    const w = this.#words;
    const fromWord = from >> 2;
    const toWord = to >> 2;
    const copyWords = copyBytes >> 2;
    for (let k = 0; k < copyWords; k++) w[toWord + k] = w[fromWord + k];
    const bytes = this.#bytes;
    for (let k = copyWords << 2; k < copyBytes; k++) bytes[to + k] = bytes[from + k];
    // The old object is still live (verified above; the alloc touched no
    // other slab): freed without finding it again.
    this.#release(cache, d, index, from);
    return to;
  }

  /**
   * Finds the live slab object at window offset `offsetNumber` from the
   * address alone (slab page map, chunk directory, the slab's bitmap): its
   * descriptor's word index, with its cache and index left in #foundCache
   * and #foundIndex. Else OUTSIDE exactly when ChunkDirectory.find would find
   * no chunk, and INSIDE for everything else (and while the memory is not
   * open: the general path reports that).
   */
  #locate(offsetNumber: number): number {
    if (!this.#open()) return INSIDE;
    // From here on int32 arithmetic: a non-integer offset (the general path
    // reports it) or one past 2^31 (beyond every chunk) goes no further.
    const offset = offsetNumber | 0;
    if (offset !== offsetNumber) {
      return offsetNumber >= 0 && offsetNumber < 2147483648 ? INSIDE : OUTSIDE;
    }
    // The slab page map (slab_page_map.ts): the slab's descriptor, cache and
    // frame in two loads. A negative offset maps past the last page.
    const phased = offset + this.#phaseBytes;
    const page = phased >>> 12;
    const descriptors = this.#pageDescriptors;
    const d = page < descriptors.length ? descriptors[page] - 1 : -1;
    if (d < 0) return this.#inChunk(offset) ? INSIDE : OUTSIDE;
    const info = this.#pageInfo[page];
    const cache = this.#caches[info >>> 3];
    const size = cache.objectBytes;
    const from = (phased & 4095) + ((info & 7) << 12);
    // The index by an int32 multiply (see SlabCache.indexMultiplier);
    // exactness is proved by the test after it, as the general path's `%` does.
    const index = Math.imul(from, cache.indexMultiplier) >>> 20;
    const w = this.#words;
    if (index * size !== from || index >= w[d + 2]) return INSIDE;
    if ((w[d + 4 + (index >>> 5)] & (1 << (index & 31))) === 0) return INSIDE;
    this.#foundCache = cache;
    this.#foundIndex = index;
    return d;
  }

  /**
   * True when a chunk holds window offset `offset` (an int32), exactly when
   * ChunkDirectory.find would find one: the chunk directory's slot, then the
   * at most two chunks it names.
   */
  #inChunk(offset: number): boolean {
    const slot = offset >>> 16;
    if (slot >= this.#slotLo.length) return false;
    const id = this.#slotLo[slot];
    if (id < 0) return id !== -1; // NONE, or MULTI: the general scan decides
    if (offset >= this.#starts[id] && offset < this.#ends[id]) return true;
    const hi = this.#slotHi[slot];
    return hi >= 0 && offset >= this.#starts[hi] && offset < this.#ends[hi];
  }
}
