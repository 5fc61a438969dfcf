/**
 * A slab cache: objects of one size carved from slabs of page frames, like
 * Linux's `kmem_cache` (mm/slub.c). No per-object header: a free object holds
 * only its free-list link in its first word, and every other fact lives out
 * of band in the slab's descriptor, a small block of the block heap.
 *
 * ```text
 * slab (2^order frames, from the buddy)        descriptor (i32 words, out of band)
 * ┌──────┬──────┬──────┬─────┬──────┬──────┐   ┌──────────┬───────┬─────────┬──────────┬─────────────┬──────────────────┐
 * │ obj0 │ obj1 │ obj2 │ ... │ objN │ tail │   │ 0 free   │ 1 in  │ 2 carved│ 3 slab   │ 4.. bitmap  │ kmalloc: u8 slack│
 * └──────┴──────┴──────┴─────┴──────┴──────┘   │ head idx │ use   │ count   │ ref      │ 1 bit/object│ per object       │
 *  free object: word 0 = next ^ key(own offset) └──────────┴───────┴─────────┴──────────┴─────────────┴──────────────────┘
 * ```
 *
 * - The free list is hardened like glibc's safe-linking and SLUB's
 *   CONFIG_SLAB_FREELIST_HARDENED: a link is stored as `next ^ secret ^
 *   mix(own offset)`; a decoded link that is not an object index below the
 *   slab's carved count, or that names a live object, is reported as
 *   HEAP_CORRUPTION before anything is written, and never followed.
 * - Objects never handed out are carved lazily (`carved` grows), so a new slab
 *   costs no free-list build.
 * - The bitmap holds each object's state: double frees and frees of objects
 *   never handed out are told apart from state, not guessed.
 * - Debug mode: a new slab is filled with POISON_BYTE and a freed object is
 *   poisoned again after its link word; the poison is verified when the
 *   object is handed out and at `check()`. A live object's bytes past the size
 *   asked for (at least GUARD_BYTES_MIN: the class is chosen for the size plus
 *   the guard) hold GUARD_BYTE, verified at free, realloc and `check()`.
 *
 * @module
 */

import { DoubleFreeError, HeapCorruptionError, InvalidFreeError } from "../errors.ts";
import { hex } from "../memory/physical_memory.ts";
import { GUARD_BYTE, POISON_BYTE } from "../heap/check/debug_guard.ts";
import type { FrameAllocator } from "../frames/buddy.ts";
import { E_AUX, E_NEXT, E_PREV, FRAME_BYTES, KIND_SLAB_HEAD, NONE } from "../frames/frame_table.ts";
import type { SlabPageMap } from "./slab_page_map.ts";
import { KMALLOC_SLAB_OBJECTS_MIN } from "./kmalloc.ts";

/** Descriptor word: index of the first free object, or NONE. */
export const D_FREE = 0;
/** Descriptor word: objects in use. */
export const D_IN_USE = 1;
/** Descriptor word: objects carved so far (never-used ones follow). */
export const D_CARVED = 2;
/** Descriptor word: the slab's frame ref (proved by check). */
export const D_SLAB = 3;
/** Descriptor word where the bitmap starts. */
export const D_BITMAP = 4;

/**
 * A Worker byte (SlabCache.workerByteWord) of an object in a Worker cache.
 * Hidden slack is always smaller: a Worker cache class serves requests at
 * most 23 bytes below its size.
 */
export const OBJECT_CACHED = 255;

/** Partial slabs a Worker cache's refill looks at for one of its own (allocForWorker). */
export const PARTIAL_SCAN_MAX = 8;

/** The most objects one slab holds (bounds the descriptor). */
export const SLAB_OBJECTS_MAX = 512;
/** The smallest object: one link word, and 8-byte alignment. */
export const OBJECT_BYTES_MIN = 8;
/** The largest slab: 2^SLAB_ORDER_MAX frames. */
export const SLAB_ORDER_MAX = 3;

/** Cache record word: 1 once destroyed. */
export const C_DESTROYED = 0;
/** Cache record word: objects in use. */
export const C_ACTIVE_OBJECTS = 1;
/** Cache record word: bytes requested by the objects in use. */
export const C_REQUESTED_BYTES = 2;
/** Cache record word: slabs on the partial list. */
export const C_PARTIAL_SLABS = 3;
/** Cache record word: slabs on the full list. */
export const C_FULL_SLABS = 4;
/** Cache record word: slabs on the empty list. */
export const C_EMPTY_SLABS = 5;
/** Cache record word: head of the partial list. */
export const C_PARTIAL_HEAD = 6;
/** Cache record word: head of the full list. */
export const C_FULL_HEAD = 7;
/** Cache record word: head of the empty list. */
export const C_EMPTY_HEAD = 8;
/** Cache record word: descriptor word index of the partial list's head. */
export const C_CURRENT_DESCRIPTOR = 9;
/** Cache record word: window offset of the partial list's head's first frame. */
export const C_CURRENT_BASE = 10;
/** Cache record word: tail of the partial list. */
export const C_PARTIAL_TAIL = 11;
/** Cache record word: the cache's free-link key. */
export const C_SECRET = 12;
/**
 * Cache record word (shared heaps): moves on whenever a Worker stores the
 * cache's fields, under the cache's class lock, so the next Worker to take
 * that lock loads them (LayeredHeap.enterCache); 0 when the record is written.
 */
export const C_VERSION = 13;
/** Words of one cache record (a multiple of 16: records of two caches share no cache line). */
export const CACHE_RECORD_WORDS = 16;

/** Writes a fresh cache record: no slabs, lists empty. */
export function initCacheRecord(record: Int32Array, secret: number): void {
  record.fill(0);
  record[C_PARTIAL_HEAD] = NONE;
  record[C_FULL_HEAD] = NONE;
  record[C_EMPTY_HEAD] = NONE;
  record[C_PARTIAL_TAIL] = NONE;
  record[C_SECRET] = secret | 0;
}

/** Where descriptors come from: small blocks of the block heap. */
export interface DescriptorSource {
  /**
   * Before the cache reads or changes the frames: a shared heap's Worker
   * holding this cache's class lock alone takes the heap lock too (the
   * frames are the heap lock's); else nothing.
   */
  holdFrames(): void;
  /** A block of `sizeBytes` (8-aligned); its address or 0. */
  take(sizeBytes: number): number;
  /** Gives the block at `address` back. */
  give(address: number): void;
}

/** One /proc/slabinfo-like line. */
export interface SlabInfo {
  /** The cache's name. */
  readonly name: string;
  /** Objects in use. */
  readonly activeObjects: number;
  /** Objects the cache's slabs hold. */
  readonly totalObjects: number;
  /** Bytes of one object. */
  readonly objectBytes: number;
  /** Objects of one slab. */
  readonly objectsPerSlab: number;
  /** Frames of one slab. */
  readonly pagesPerSlab: number;
  /** Slabs with at least one object in use. */
  readonly activeSlabs: number;
  /** Slabs. */
  readonly slabs: number;
}

/**
 * The largest share of a slab its tail (the bytes past its last object) may
 * waste: 1/SLAB_LEFTOVER_FRACTION, SLUB's first `fract_leftover` (16).
 */
export const SLAB_LEFTOVER_FRACTION = 16;

/**
 * The slab size (order) for `objectBytes`: the smallest order whose tail
 * wastes at most 1/SLAB_LEFTOVER_FRACTION of the slab (SLUB's
 * calc_slab_order) and that holds at least `objectsMin` objects, else the
 * order that wastes least. Small slabs keep a cache's memory close to its
 * live objects: a rarely used class costs one frame, not eight, and a slab
 * empties (and goes back) sooner.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { slabOrderFor } from "./slab_cache.ts";
 *
 * assert.equal(slabOrderFor(144), 0); // 28 objects, 64 bytes left over
 * assert.equal(slabOrderFor(2100), 3); // 15 objects in 8 frames, 3.9% left over
 * assert.equal(slabOrderFor(512, 16), 1); // 16 objects in 2 frames
 * ```
 */
export function slabOrderFor(objectBytes: number, objectsMin = 1): number {
  let best = 0;
  let bestWaste = Infinity;
  for (let order = 0; order <= SLAB_ORDER_MAX; order++) {
    const bytes = FRAME_BYTES << order;
    const objects = Math.min(SLAB_OBJECTS_MAX, Math.floor(bytes / objectBytes));
    if (objects === 0) continue;
    const waste = (bytes - objects * objectBytes) / bytes;
    if (waste <= 1 / SLAB_LEFTOVER_FRACTION && objects >= objectsMin) return order;
    if (waste < bestWaste) {
      best = order;
      bestWaste = waste;
    }
  }
  return best;
}

/** A cache of equal-sized objects. */
export class SlabCache {
  /** The cache's id (the aux bits of its slabs' head frames). */
  readonly id: number;
  /** The cache's name. */
  readonly name: string;
  /** Bytes of one object (a multiple of 8). */
  readonly objectBytes: number;
  /**
   * ceil(2^20 / objectBytes): slab_fast_path.ts finds an object's index as
   * `Math.imul(from, indexMultiplier) >>> 20`, an int32 multiply (a division
   * costs several times more), and proves it exact. For a multiple `k *
   * objectBytes` of a slab (k < 512, slab bytes <= 2^15) the error term
   * k * (objectBytes * multiplier - 2^20) < 2^15 stays below 2^20, and the
   * product below 2^32.
   */
  readonly indexMultiplier: number;
  /** log2 of the frames of one slab. */
  readonly slabOrder: number;
  /** Objects of one slab. */
  readonly objectsPerSlab: number;
  /** True for kmalloc classes: each object's requested size is kept (as slack). */
  readonly keepsSizes: boolean;
  /**
   * Called when a slab of this cache has just become empty (its lists are
   * consistent again): the layers keep a bounded number of empty slabs.
   */
  onEmptied: ((cache: SlabCache) => void) | null = null;
  /**
   * Set by the layers when they gave this cache's last empty slab back to
   * keep their reserve of empty slabs within bounds; cleared when the cache
   * next makes a slab, which then calls `onReserveMissed` (the slab given
   * back was wanted again: the layers widen their reserve).
   */
  reserveTaken = false;
  /** Called when the cache makes a slab while `reserveTaken` is set (see there). */
  onReserveMissed: (() => void) | null = null;
  /**
   * Worker-cached caches: called under the lock when an object's hidden
   * slack (written by the Worker cache that handed it out) is cleared, so
   * the Worker's count of hidden bytes follows.
   */
  onHiddenCleared: ((bytes: number) => void) | null = null;
  /**
   * The cache's counters and list heads (C_* words): its own JS memory, or a
   * record in a shared heap's layer state that every Worker's SlabCache reads.
   */
  readonly #rec: Int32Array;
  /** True once destroyed (LayeredHeap.destroyCache): no slabs, its id free for a new cache. */
  destroyed = false;
  /** Objects in use. */
  activeObjects = 0;
  /** Bytes requested by the objects in use. */
  requestedBytes = 0;
  /** Slabs on each list. */
  partialSlabs = 0;
  /** Slabs whose every object is in use. */
  fullSlabs = 0;
  /** Slabs with no object in use. */
  emptySlabs = 0;
  /** Head refs of the partial, full and empty lists. */
  partialHead = NONE;
  /** Head of the full list. */
  fullHead = NONE;
  /** Head of the empty list. */
  emptyHead = NONE;
  /** Objects in Worker caches, counted by the last check() (workerCached). */
  cachedObjects = 0;
  /** Hidden slack bytes of live objects, counted by the last check() (workerCached). */
  hiddenBytes = 0;
  /** Bytes of one descriptor. */
  readonly descriptorBytes: number;
  readonly #words: Int32Array;
  readonly #bytes: Uint8Array;
  readonly #frames: FrameAllocator;
  readonly #descriptors: DescriptorSource;
  readonly #secret: number;
  /** The layers' page → slab map, kept equal to the frame table (slab_page_map.ts), or null. */
  readonly #pages: SlabPageMap | null;
  /** Words of the descriptor's bitmap (its kmalloc slack bytes follow them). */
  readonly bitmapWords: number;
  /** True when Worker caches hold this cache's objects (a shared heap's kmalloc class). */
  readonly workerCached: boolean;
  /**
   * Descriptor word (from the descriptor's start) of the Worker bytes, when
   * workerCached: byte i is OBJECT_CACHED while object i sits in a Worker
   * cache (in use to the slab, free to the program), else the slack its
   * Worker cache hid (the size asked for is objectBytes - slack - hidden).
   * Written by the Worker holding the object, with plain byte stores (no
   * two objects share a byte), or under the lock.
   */
  readonly workerByteWord: number;
  /**
   * Descriptor word of the slab's owner, when workerCached: the Worker slot
   * whose cache last refilled from it (0: none). A refill takes objects from
   * a slab of its own Worker first (allocForWorker), like SLUB's per-CPU
   * slabs, so two Workers' objects (and their Worker bytes, written at every
   * pop and push) share few cache lines.
   */
  readonly ownerWord: number;
  /** Debug mode: poison and guard bytes (see the module doc). */
  readonly #debug: boolean;
  /**
   * Descriptor word index of the partial list's head (valid while it is not
   * NONE). Written only here (by the list edits); read by alloc() and by
   * slab_fast_path.ts.
   */
  currentDescriptor = 0;
  /** Window offset of the partial list's head's first frame (as currentDescriptor). */
  currentBase = 0;
  /** The descriptor and index of the object alloc() last handed out (a Worker cache's refill marks it). */
  allocatedDescriptor = 0;
  allocatedIndex = 0;
  /** The partial list's tail (a slab that stops being full joins there). */
  #partialTail = NONE;

  /**
   * Creates a cache; slabs come later, on demand.
   *
   * @param id The cache id.
   * @param name Its name.
   * @param objectBytes Object size, a multiple of 8 from 8 to FRAME_BYTES << SLAB_ORDER_MAX.
   * @param frames The frame allocator slabs come from.
   * @param descriptors Where descriptors come from.
   * @param keepsSizes Whether each object's requested size is kept.
   * @param secret The free-link key.
   * @param debug Whether objects get guard bytes and free objects poison.
   * @param pages The layers' slab page map, kept equal to the frame table.
   * @param record The cache's record (CACHE_RECORD_WORDS words): null for a
   *   fresh one in JS memory; a shared heap's record otherwise.
   * @param fresh Whether to write the record's initial state (false: join a written one).
   * @param workerCached Whether Worker caches hold its objects (a shared heap's
   *   kmalloc classes): descriptors get a cached bitmap and hidden slack bytes.
   */
  constructor(
    id: number,
    name: string,
    objectBytes: number,
    frames: FrameAllocator,
    descriptors: DescriptorSource,
    keepsSizes: boolean,
    secret: number,
    debug = false,
    pages: SlabPageMap | null = null,
    record: Int32Array | null = null,
    fresh = true,
    workerCached = false,
  ) {
    this.#rec = record ?? new Int32Array(CACHE_RECORD_WORDS);
    // A joining Worker's fields are loaded when it first holds the lock (LayeredHeap.enterShared).
    if (fresh) initCacheRecord(this.#rec, secret);
    this.#pages = pages;
    this.#debug = debug;
    this.id = id;
    this.name = name;
    this.objectBytes = objectBytes;
    // `| 0` keeps the field a small integer (Math.ceil gives V8 a double, which it would box).
    this.indexMultiplier = Math.ceil(2 ** 20 / objectBytes) | 0;
    this.slabOrder = slabOrderFor(objectBytes, keepsSizes ? KMALLOC_SLAB_OBJECTS_MIN : 1);
    this.objectsPerSlab = Math.min(
      SLAB_OBJECTS_MAX,
      Math.floor((FRAME_BYTES << this.slabOrder) / objectBytes),
    );
    this.keepsSizes = keepsSizes;
    this.bitmapWords = (this.objectsPerSlab + 31) >>> 5;
    const slackWords = keepsSizes ? (this.objectsPerSlab + 3) >>> 2 : 0;
    this.workerCached = workerCached;
    this.workerByteWord = D_BITMAP + this.bitmapWords + slackWords;
    // Worker-cached objects: one byte per object, OBJECT_CACHED while it sits
    // in a Worker cache, else the slack hidden from the slab's books.
    // ... and a word naming the Worker slot whose cache refills from the slab (0: none).
    const cachedWords = workerCached ? ((this.objectsPerSlab + 3) >>> 2) + 1 : 0;
    this.ownerWord = this.workerByteWord + cachedWords - 1;
    this.descriptorBytes = (D_BITMAP + this.bitmapWords + slackWords + cachedWords) * 4;
    this.#words = frames.words;
    this.#bytes = new Uint8Array(
      frames.words.buffer,
      frames.words.byteOffset,
      frames.words.byteLength,
    );
    this.#frames = frames;
    this.#descriptors = descriptors;
    this.#secret = secret | 0;
  }

  /** The link key of the object at window offset `offset`. */
  #key(offset: number): number {
    return this.#secret ^ Math.imul(offset, 0x9e3779b1);
  }

  /**
   * Hands out one object: the first free one of the first partial slab.
   *
   * @param sizeBytes The size requested (kept for kmalloc classes), at most objectBytes.
   * @returns The object's window offset, or -1 when no slab can be had.
   * @throws {HeapCorruptionError} If the slab's free link was overwritten.
   */
  alloc(sizeBytes: number): number {
    if (this.partialHead === NONE && this.#refill() === NONE) return -1;
    const w = this.#words;
    // The partial list's head, its descriptor and frame offset are kept in
    // fields (set by #setHead): the common case reads no frame table entry.
    const d = this.currentDescriptor;
    const base = this.currentBase;
    const size = this.objectBytes;
    const carved = w[d + D_CARVED];
    let index = w[d + D_FREE];
    let next = NONE;
    if (index === NONE) {
      index = carved;
    } else {
      const offset = base + index * size;
      next = w[offset >> 2] ^ this.#secret ^ Math.imul(offset, 0x9e3779b1);
      if (
        next !== NONE &&
        ((next >>> 0) >= carved || (w[d + D_BITMAP + (next >>> 5)] & (1 << (next & 31))) !== 0)
      ) this.#refuseForged(d, offset, next);
    }
    // Everything is verified before the first write: a throw changes nothing.
    const bitWord = d + D_BITMAP + (index >>> 5);
    const bits = w[bitWord];
    const bit = 1 << (index & 31);
    if ((bits & bit) !== 0 || index >= this.objectsPerSlab) {
      this.#refuseForged(d, base + index * size, index);
    }
    if (this.#debug) this.#verifyPoison(base + index * size, "allocate");
    if (index === carved) w[d + D_CARVED] = carved + 1;
    else w[d + D_FREE] = next;
    w[bitWord] = bits | bit;
    if (this.keepsSizes) {
      this.#bytes[((d + D_BITMAP + this.bitmapWords) << 2) + index] = size - sizeBytes;
    }
    this.activeObjects++;
    this.requestedBytes += sizeBytes;
    if (this.#debug) {
      const offset = base + index * size;
      this.#bytes.fill(GUARD_BYTE, offset + sizeBytes, offset + size);
    }
    this.allocatedDescriptor = d;
    this.allocatedIndex = index;
    if (++w[d + D_IN_USE] === this.objectsPerSlab) this.#move(this.partialHead, 1, 2);
    return base + index * size;
  }

  /**
   * A Worker cache's refill (workerCached, under the lock): one object from
   * a partial slab owned by Worker slot `slot`, else one owned by nobody (or
   * by a slot `ownerGone` says has left), else a new or empty slab, which
   * `slot` then owns; when no frames are left, from the partial list's head
   * whoever owns it. At most PARTIAL_SCAN_MAX partial slabs are looked at.
   *
   * @param sizeBytes The size to record (the object's size: Worker caches hide the rest).
   * @param slot The refilling Worker's slot.
   * @param ownerGone Whether the Worker of a slot left the heap.
   * @returns The object's window offset, or -1 when no slab can be had.
   */
  allocForWorker(sizeBytes: number, slot: number, ownerGone: (slot: number) => boolean): number {
    const w = this.#words;
    let pick = NONE;
    let slab = this.partialHead;
    for (let n = 0; slab !== NONE && n < PARTIAL_SCAN_MAX; n++) {
      const owner = w[this.descriptorOf(slab) + this.ownerWord];
      if (owner === slot) {
        pick = slab;
        break;
      }
      if (pick === NONE && (owner === 0 || ownerGone(owner))) pick = slab;
      slab = w[this.#frames.entry(slab) + E_NEXT];
    }
    // A new (or empty) slab goes to the partial list's head.
    if (pick === NONE && this.#refill() !== NONE) pick = this.partialHead;
    if (pick === NONE) pick = this.partialHead;
    if (pick === NONE) return -1;
    // A forged link in the picked slab makes alloc throw: the pick then goes
    // back where it was, with its owner, so the throw changes nothing.
    const ownerAt = this.descriptorOf(pick) + this.ownerWord;
    const formerOwner = w[ownerAt];
    const formerPrevious = pick === this.partialHead ? NONE : w[this.#frames.entry(pick) + E_PREV];
    if (formerPrevious !== NONE) {
      this.#unlink(pick, 1);
      this.#push(pick, 1);
    }
    w[ownerAt] = slot;
    try {
      return this.alloc(sizeBytes);
    } catch (error) {
      w[ownerAt] = formerOwner;
      if (formerPrevious !== NONE && this.partialHead === pick) {
        this.#unlink(pick, 1);
        this.#insertAfter(pick, formerPrevious);
      }
      throw error;
    }
  }

  /**
   * The common free: takes back the object at window offset `offset` of the
   * slab whose descriptor is `d` and first frame is at offset `base`, when it
   * is exactly a live object. Returns false, having written nothing, for
   * anything else (the caller's `free` then finds and reports the error).
   */
  freeFast(offset: number, d: number, base: number): boolean {
    // Worker-cached objects have a cached bit and hidden slack: free() looks at them.
    if (this.#debug || this.workerCached) return false;
    const w = this.#words;
    const size = this.objectBytes;
    const from = offset - base;
    const index = (from / size) | 0;
    if (index * size !== from || index >= w[d + D_CARVED]) return false;
    const bitWord = d + D_BITMAP + (index >>> 5);
    const bits = w[bitWord];
    const bit = 1 << (index & 31);
    if ((bits & bit) === 0) return false;
    w[bitWord] = bits & ~bit;
    w[offset >> 2] = w[d + D_FREE] ^ this.#secret ^ Math.imul(offset, 0x9e3779b1);
    w[d + D_FREE] = index;
    this.activeObjects--;
    this.requestedBytes -= this.keepsSizes
      ? size - this.#bytes[((d + D_BITMAP + this.bitmapWords) << 2) + index]
      : size;
    const inUse = --w[d + D_IN_USE];
    if (inUse === this.objectsPerSlab - 1) this.#move(w[d + D_SLAB], 2, 1);
    if (inUse === 0) this.#move(w[d + D_SLAB], 1, 3);
    return true;
  }

  /**
   * Moves the empty list's head to the partial list, as an alloc that finds
   * no partial slab does first (#refill), so slab_fast_path.ts serves that
   * alloc too (a cache whose last object comes and goes empties and refills
   * its slab at every turn).
   *
   * @returns False, having changed nothing, when the cache keeps no empty slab.
   */
  reuseEmpty(): boolean {
    if (this.emptyHead === NONE) return false;
    this.#move(this.emptyHead, 3, 1);
    return true;
  }

  /**
   * After an alloc that used the last free object of the partial list's head
   * (its in-use count reached objectsPerSlab): moves that slab to the full list.
   */
  partialFilled(): void {
    this.#move(this.partialHead, 1, 2);
  }

  /**
   * After a free that left `inUse` objects in use in the slab with descriptor
   * `d`: moves it from the full to the partial list, or from the partial to
   * the empty list, when its count crossed either end.
   */
  slabFreed(d: number, inUse: number): void {
    if (inUse === this.objectsPerSlab - 1) this.#move(this.#words[d + D_SLAB], 2, 1);
    if (inUse === 0) this.#move(this.#words[d + D_SLAB], 1, 3);
  }

  /** A slab for the partial list: an empty one or a new one; NONE when no frames. */
  #refill(): number {
    if (this.emptyHead !== NONE) {
      const slab = this.emptyHead;
      this.#move(slab, 3, 1);
      return slab;
    }
    // A refill that fails changes nothing: the part that may fail goes first.
    // With a free buddy block that holds the run, the run cannot fail: the
    // descriptor (a small block) is taken first, and its failure writes
    // nothing. Else the frames must reclaim or grow, which may fail, having
    // written nothing: the run first, then the descriptor. Only when the
    // frames' growth took the room the descriptor needed is the run given
    // back, the frames then not exactly as before.
    const frameCount = 1 << this.slabOrder;
    let d = 0;
    let slab = NONE;
    this.#descriptors.holdFrames();
    if (this.#frames.hasFreeBlock(frameCount)) {
      d = this.#descriptors.take(this.descriptorBytes);
      if (d === 0) return NONE;
      slab = this.#frames.allocRun(frameCount, KIND_SLAB_HEAD, this.id);
    } else {
      slab = this.#frames.allocRun(frameCount, KIND_SLAB_HEAD, this.id);
      if (slab === NONE) return NONE;
      d = this.#descriptors.take(this.descriptorBytes);
      if (d === 0) {
        this.#frames.freeRun(slab, frameCount);
        return NONE;
      }
    }
    const dw = (d - this.#frames.baseAddress) >> 2;
    const w = this.#words;
    if (this.#debug) {
      const start = this.#frames.offsetOf(slab);
      this.#bytes.fill(POISON_BYTE, start, start + (FRAME_BYTES << this.slabOrder));
    }
    w.fill(0, dw, dw + (this.descriptorBytes >> 2));
    w[dw + D_FREE] = NONE;
    w[dw + D_SLAB] = slab;
    w[this.#frames.entry(slab) + E_AUX] = dw;
    this.#pages?.set(this.#frames.offsetOf(slab), 1 << this.slabOrder, dw, this.id);
    this.#push(slab, 1);
    if (this.reserveTaken) {
      this.reserveTaken = false;
      this.onReserveMissed?.();
    }
    return slab;
  }

  /**
   * Takes back the object at window offset `offset` in `slab` (the slab's head ref).
   * Verifies before it writes: a throw leaves everything as it was.
   *
   * @param offset The object's window offset.
   * @param slab The ref of the slab's head frame.
   * @param address The address freed (for messages).
   * @throws {InvalidFreeError} If the offset is not the start of an object handed out.
   * @throws {DoubleFreeError} If the object is free.
   */
  free(offset: number, slab: number, address: number): void {
    const d = this.#words[this.#frames.entry(slab) + E_AUX];
    this.freeIndex(d, this.indexOf(offset, slab, address, "free", d), offset, address);
  }

  /**
   * free() of object `index` at window offset `offset` of the slab with
   * descriptor `d`, found from the address by the caller (a Worker cache's
   * drain, which located it from the slab page map): every check of free()
   * but the lookup.
   *
   * @throws {DoubleFreeError} If the object is free.
   */
  freeIndex(d: number, index: number, offset: number, address: number): void {
    const w = this.#words;
    const slab = w[d + D_SLAB];
    const bitWord = d + D_BITMAP + (index >>> 5);
    const bit = 1 << (index & 31);
    if ((w[bitWord] & bit) === 0) {
      throw new DoubleFreeError(
        `Cannot free ${hex(address)}: the ${this.name} object is already free`,
      );
    }
    if (this.workerCached) {
      if (this.isCached(d, index)) {
        throw new DoubleFreeError(
          `Cannot free ${
            hex(address)
          }: the ${this.name} object is already free (in a Worker cache)`,
        );
      }
      this.#clearHidden(d, index);
    }
    if (this.#debug) this.verifyGuard(offset, d, index, "free");
    w[bitWord] &= ~bit;
    w[offset >> 2] = w[d + D_FREE] ^ this.#key(offset);
    w[d + D_FREE] = index;
    if (this.#debug) this.#bytes.fill(POISON_BYTE, offset + 4, offset + this.objectBytes);
    this.activeObjects--;
    this.requestedBytes -= this.objectBytes - this.slackOf(d, index);
    const inUse = --w[d + D_IN_USE];
    if (inUse === this.objectsPerSlab - 1) this.#move(slab, 2, 1);
    if (inUse === 0) this.#move(slab, 1, 3);
  }

  /**
   * The index of the object at `offset`, verified to be the start of an
   * object this slab carved; throws InvalidFreeError otherwise.
   */
  indexOf(offset: number, slab: number, address: number, operation: string, d: number): number {
    const from = offset - this.#frames.offsetOf(slab);
    const index = Math.floor(from / this.objectBytes);
    if (from < 0 || from % this.objectBytes !== 0 || index >= this.#words[d + D_CARVED]) {
      const where = index < this.#words[d + D_CARVED]
        ? `inside the ${this.name} object at ${hex(address - (from % this.objectBytes))}`
        : `not an object the ${this.name} slab handed out`;
      throw new InvalidFreeError(`Cannot ${operation} ${hex(address)}: ${where}`);
    }
    return index;
  }

  /** The descriptor word index of `slab`. */
  descriptorOf(slab: number): number {
    return this.#words[this.#frames.entry(slab) + E_AUX];
  }

  /** True when object `index` of the slab with descriptor `d` is in use. */
  inUse(d: number, index: number): boolean {
    return (this.#words[d + D_BITMAP + (index >>> 5)] & (1 << (index & 31))) !== 0;
  }

  /** True when object `index` of the slab with descriptor `d` sits in a Worker cache (workerCached). */
  isCached(d: number, index: number): boolean {
    if (!this.workerCached) return false;
    return this.#bytes[((d + this.workerByteWord) << 2) + index] === OBJECT_CACHED;
  }

  /** Hidden slack of object `index` (written by the Worker cache that handed it out), 0 unless workerCached. */
  hiddenOf(d: number, index: number): number {
    if (!this.workerCached) return 0;
    const byte = this.#bytes[((d + this.workerByteWord) << 2) + index];
    return byte === OBJECT_CACHED ? 0 : byte;
  }

  /** Clears object `index`'s hidden slack (its size is recorded in full again). */
  #clearHidden(d: number, index: number): void {
    const at = ((d + this.workerByteWord) << 2) + index;
    const hidden = this.#bytes[at];
    if (hidden === 0 || hidden === OBJECT_CACHED) return;
    this.#bytes[at] = 0;
    this.onHiddenCleared?.(hidden);
  }

  /** Bytes beyond the request of object `index` (0 unless kmalloc). */
  slackOf(d: number, index: number): number {
    return this.keepsSizes ? this.#bytes[((d + D_BITMAP + this.bitmapWords) << 2) + index] : 0;
  }

  /** Records a new requested size for a live kmalloc object (realloc in place). */
  resize(d: number, index: number, sizeBytes: number): void {
    const old = this.objectBytes - this.slackOf(d, index);
    if (this.workerCached) this.#clearHidden(d, index);
    if (this.#debug) {
      const offset = this.#objectOffset(d, index);
      this.verifyGuard(offset, d, index, "reallocate");
      this.#bytes.fill(GUARD_BYTE, offset + sizeBytes, offset + this.objectBytes);
    }
    this.#bytes[((d + D_BITMAP + this.bitmapWords) << 2) + index] = this.objectBytes - sizeBytes;
    this.requestedBytes += sizeBytes - old;
  }

  /** Window offset of object `index` of the slab with descriptor `d`. */
  #objectOffset(d: number, index: number): number {
    return this.#frames.offsetOf(this.#words[d + D_SLAB]) + index * this.objectBytes;
  }

  /**
   * Debug mode: verifies that the live object at `offset` still holds
   * GUARD_BYTE past the size asked for.
   *
   * @throws {HeapCorruptionError} Naming the first overwritten guard byte.
   */
  verifyGuard(offset: number, d: number, index: number, operation: string): void {
    const bytes = this.#bytes;
    const end = offset + this.objectBytes;
    for (let at = end - this.slackOf(d, index); at < end; at++) {
      if (bytes[at] === GUARD_BYTE) continue;
      const address = this.#frames.baseAddress + at;
      throw new HeapCorruptionError(
        address,
        `Heap corruption at ${hex(address)}: cannot ${operation} the ${this.name} object at ${
          hex(this.#frames.baseAddress + offset)
        }: its guard byte was overwritten (written past its size)`,
      );
    }
  }

  /** Debug mode: verifies the poison of the free object at `offset` (after its link word). */
  #verifyPoison(offset: number, operation: string): void {
    const bytes = this.#bytes;
    const end = offset + this.objectBytes;
    for (let at = offset + 4; at < end; at++) {
      if (bytes[at] === POISON_BYTE) continue;
      const address = this.#frames.baseAddress + at;
      throw new HeapCorruptionError(
        address,
        `Heap corruption at ${hex(address)}: cannot ${operation}: the free ${this.name} object at ${
          hex(this.#frames.baseAddress + offset)
        } was written after it was freed`,
      );
    }
  }

  /** Gives empty slabs back to the frames, keeping `keep` of them. */
  shrink(keep: number): void {
    for (let n = 0; this.emptySlabs > keep && n < 1 << 30; n++) {
      const slab = this.emptyHead;
      const d = this.descriptorOf(slab);
      this.#unlink(slab, 3);
      this.#pages?.clear(this.#frames.offsetOf(slab), 1 << this.slabOrder);
      this.#frames.freeRun(slab, 1 << this.slabOrder);
      this.#descriptors.give(this.#frames.baseAddress + (d << 2));
    }
  }

  /**
   * A Worker-cached cache's marks, read from every slab: the window offsets
   * of the objects marked cached, and the hidden slack bytes of the others.
   */
  workerMarks(): { cachedOffsets: number[]; hiddenBytes: number } {
    const cachedOffsets: number[] = [];
    let hiddenBytes = 0;
    for (const list of [1, 2, 3]) {
      let slab = this.#head(list);
      for (let n = 0; slab !== NONE && n < 1 << 30; n++) {
        const d = this.descriptorOf(slab);
        const base = this.#frames.offsetOf(slab);
        for (let index = 0; index < this.objectsPerSlab; index++) {
          if (this.isCached(d, index)) cachedOffsets.push(base + index * this.objectBytes);
          else hiddenBytes += this.hiddenOf(d, index);
        }
        slab = this.#words[this.#frames.entry(slab) + E_NEXT];
      }
    }
    return { cachedOffsets, hiddenBytes };
  }

  /** Slabs of the cache. */
  get slabs(): number {
    return this.partialSlabs + this.fullSlabs + this.emptySlabs;
  }

  /** The cache's slabinfo line. */
  info(): SlabInfo {
    return {
      name: this.name,
      activeObjects: this.activeObjects,
      totalObjects: this.slabs * this.objectsPerSlab,
      objectBytes: this.objectBytes,
      objectsPerSlab: this.objectsPerSlab,
      pagesPerSlab: 1 << this.slabOrder,
      activeSlabs: this.partialSlabs + this.fullSlabs,
      slabs: this.slabs,
    };
  }

  #head(list: number): number {
    return list === 1 ? this.partialHead : list === 2 ? this.fullHead : this.emptyHead;
  }

  #setHead(list: number, ref: number, delta: number): void {
    if (list === 1) {
      this.partialHead = ref;
      this.partialSlabs += delta;
      if (ref !== NONE) {
        this.currentDescriptor = this.#words[this.#frames.entry(ref) + E_AUX];
        this.currentBase = this.#frames.offsetOf(ref);
      }
    } else if (list === 2) {
      this.fullHead = ref;
      this.fullSlabs += delta;
    } else {
      this.emptyHead = ref;
      this.emptySlabs += delta;
    }
  }

  #push(slab: number, list: number): void {
    const w = this.#words;
    const e = this.#frames.entry(slab);
    const old = this.#head(list);
    w[e + E_NEXT] = old;
    w[e + E_PREV] = NONE;
    if (old !== NONE) w[this.#frames.entry(old) + E_PREV] = slab;
    else if (list === 1) this.#partialTail = slab;
    this.#setHead(list, slab, 1);
    if (list === 3) this.onEmptied?.(this);
  }

  /** Puts `slab` on the partial list right after `previous`, a slab of that list. */
  #insertAfter(slab: number, previous: number): void {
    const w = this.#words;
    const e = this.#frames.entry(slab);
    const p = this.#frames.entry(previous);
    const next = w[p + E_NEXT];
    w[e + E_PREV] = previous;
    w[e + E_NEXT] = next;
    w[p + E_NEXT] = slab;
    if (next !== NONE) w[this.#frames.entry(next) + E_PREV] = slab;
    else this.#partialTail = slab;
    this.partialSlabs++;
  }

  /** Puts `slab` at the partial list's tail. */
  #append(slab: number): void {
    const tail = this.#partialTail;
    if (tail === NONE) return this.#push(slab, 1);
    const w = this.#words;
    const e = this.#frames.entry(slab);
    w[e + E_NEXT] = NONE;
    w[e + E_PREV] = tail;
    w[this.#frames.entry(tail) + E_NEXT] = slab;
    this.#partialTail = slab;
    this.partialSlabs++;
  }

  #unlink(slab: number, list: number): void {
    const w = this.#words;
    const e = this.#frames.entry(slab);
    const next = w[e + E_NEXT];
    const prev = w[e + E_PREV];
    if (prev === NONE) this.#setHead(list, next, -1);
    else {
      w[this.#frames.entry(prev) + E_NEXT] = next;
      this.#setHead(list, this.#head(list), -1);
    }
    if (next !== NONE) w[this.#frames.entry(next) + E_PREV] = prev;
    else if (list === 1) this.#partialTail = prev;
  }

  /**
   * A slab that stops being full joins the partial list's tail, not its head
   * (FIFO): at the head it would take the next allocation at once and be full
   * again, so a workload that frees and allocates in turns would move one slab
   * between the full and partial lists at every pair. At the tail it gathers
   * more frees before it is used again.
   */
  #move(slab: number, from: number, to: number): void {
    this.#unlink(slab, from);
    if (from === 2 && to === 1) this.#append(slab);
    else this.#push(slab, to);
  }

  /**
   * alloc's refusal of a forged link in the partial list's head, whose
   * descriptor is `d`. A head with no object in use is an empty slab that
   * this alloc (its refill) or the fast path (reuseEmpty) has just moved
   * there from the empty list: it goes back first, to the empty list's head
   * where it was, so that the throw leaves the heap as it found it.
   */
  #refuseForged(d: number, offset: number, link: number): never {
    if (this.#words[d + D_IN_USE] === 0) this.#move(this.partialHead, 1, 3);
    this.#forged(offset, link);
  }

  #forged(offset: number, link: number): never {
    const address = this.#frames.baseAddress + offset;
    throw new HeapCorruptionError(
      address,
      `Heap corruption at ${
        hex(address)
      }: the free link of a ${this.name} object was overwritten (decodes to ${link})`,
    );
  }

  /**
   * Proves the cache's lists, descriptors, bitmaps and free lists consistent.
   *
   * @returns Bytes of the descriptors and of the slabs' frames, for the heap's accounting.
   * @throws {HeapCorruptionError} Naming the slab and the broken invariant.
   */
  check(): { descriptorBytes: number; slabFrames: number } {
    this.cachedObjects = 0;
    this.hiddenBytes = 0;
    let active = 0;
    let requested = 0;
    for (
      const [list, expected] of [[1, this.partialSlabs], [2, this.fullSlabs], [3, this.emptySlabs]]
    ) {
      let slab = this.#head(list);
      let prev = NONE;
      let n = 0;
      for (; slab !== NONE && n <= expected; n++) {
        const e = this.#frames.entry(slab);
        const w = this.#words;
        this.#assert(
          w[e] === (KIND_SLAB_HEAD | (this.slabOrder << 4) | (this.id << 8)),
          slab,
          "listed frame is not this cache's slab head",
        );
        this.#assert(w[e + E_PREV] === prev, slab, "slab list back link");
        const inUse = this.#checkSlab(slab);
        this.#assert(
          list === 1
            ? inUse > 0 && inUse < this.objectsPerSlab
            : list === 2
            ? inUse === this.objectsPerSlab
            : inUse === 0,
          slab,
          `slab with ${inUse} objects in use on list ${list}`,
        );
        active += inUse;
        requested += this.#requestedIn(slab);
        prev = slab;
        slab = w[e + E_NEXT];
      }
      this.#assert(
        n === expected && slab === NONE,
        NONE,
        `list ${list} holds ${n} slabs, counted ${expected}`,
      );
      if (list === 1) this.#assert(prev === this.#partialTail, NONE, "partial list tail");
    }
    this.#assert(
      active === this.activeObjects,
      NONE,
      `active objects ${active}, counted ${this.activeObjects}`,
    );
    this.#assert(
      requested === this.requestedBytes,
      NONE,
      `requested bytes ${requested}, counted ${this.requestedBytes}`,
    );
    return {
      descriptorBytes: this.slabs * this.descriptorBytes,
      slabFrames: this.slabs << this.slabOrder,
    };
  }

  /** Walks one slab's free list and bitmap; returns its objects in use. */
  #checkSlab(slab: number): number {
    const w = this.#words;
    const d = this.descriptorOf(slab);
    this.#assert(w[d + D_SLAB] === slab, slab, "descriptor names another slab");
    if (this.workerCached) {
      const owner = w[d + this.ownerWord];
      this.#assert(owner >= 0 && owner <= 255, slab, `owner slot ${owner}`);
    }
    const carved = w[d + D_CARVED];
    this.#assert(carved >= 0 && carved <= this.objectsPerSlab, slab, "carved count out of range");
    const seen = new Uint8Array(carved);
    const base = this.#frames.offsetOf(slab);
    let index = w[d + D_FREE];
    let free = 0;
    for (; index !== NONE && free <= carved; free++) {
      this.#assert(
        index >= 0 && index < carved && seen[index] === 0 && !this.inUse(d, index),
        slab,
        `free list names object ${index}`,
      );
      seen[index] = 1;
      const offset = base + index * this.objectBytes;
      index = w[offset >> 2] ^ this.#key(offset);
    }
    let bits = 0;
    for (let i = 0; i < this.objectsPerSlab; i++) {
      if (this.workerCached) {
        const hidden = this.hiddenOf(d, i);
        this.#assert(
          !this.isCached(d, i) || (this.inUse(d, i) && hidden === 0 && this.slackOf(d, i) === 0),
          slab,
          `object ${i} is cached but not in use with no slack`,
        );
        this.#assert(
          hidden === 0 || (this.inUse(d, i) && hidden + this.slackOf(d, i) < this.objectBytes),
          slab,
          `object ${i} hides ${hidden} bytes`,
        );
        if (this.isCached(d, i)) this.cachedObjects++;
        this.hiddenBytes += hidden;
      }
      if (!this.inUse(d, i)) {
        if (this.#debug && (i >= carved || seen[i] === 1)) {
          this.#verifyPoison(base + i * this.objectBytes, "check");
        }
        continue;
      }
      bits++;
      if (this.#debug) this.verifyGuard(base + i * this.objectBytes, d, i, "check");
    }
    this.#assert(bits + free === carved, slab, `bitmap ${bits} + free ${free} != carved ${carved}`);
    this.#assert(bits === w[d + D_IN_USE], slab, "in-use count differs from the bitmap");
    return bits;
  }

  #requestedIn(slab: number): number {
    const d = this.descriptorOf(slab);
    let bytes = 0;
    for (let i = 0; i < this.objectsPerSlab; i++) {
      if (this.inUse(d, i)) bytes += this.objectBytes - this.slackOf(d, i);
    }
    return bytes;
  }

  #assert(condition: boolean, slab: number, invariant: string): asserts condition {
    if (condition) return;
    const address = slab === NONE ? 0 : this.#frames.address(slab);
    throw new HeapCorruptionError(
      address,
      `Heap corruption in cache ${this.name} at ${hex(address)}: ${invariant}`,
    );
  }

  /**
   * Copies the shared words into the fields. The fields are this Worker's
   * copy of the layer state while it holds a shared heap's lock (as
   * HeapCounters are the block books'): loaded when another Worker changed
   * the state since, stored before the lock is released. An unshared heap's
   * fields are the state itself (plain fields keep its hot paths fast).
   */
  loadShared(): void {
    const r = this.#rec;
    this.destroyed = r[C_DESTROYED] !== 0;
    this.activeObjects = r[C_ACTIVE_OBJECTS];
    this.requestedBytes = r[C_REQUESTED_BYTES];
    this.partialSlabs = r[C_PARTIAL_SLABS];
    this.fullSlabs = r[C_FULL_SLABS];
    this.emptySlabs = r[C_EMPTY_SLABS];
    this.partialHead = r[C_PARTIAL_HEAD];
    this.fullHead = r[C_FULL_HEAD];
    this.emptyHead = r[C_EMPTY_HEAD];
    this.currentDescriptor = r[C_CURRENT_DESCRIPTOR];
    this.currentBase = r[C_CURRENT_BASE];
    this.#partialTail = r[C_PARTIAL_TAIL];
  }

  /** Copies the fields into the shared words (a shared heap's Worker, before it releases the lock). */
  storeShared(): void {
    const r = this.#rec;
    r[C_DESTROYED] = this.destroyed ? 1 : 0;
    r[C_ACTIVE_OBJECTS] = this.activeObjects;
    r[C_REQUESTED_BYTES] = this.requestedBytes;
    r[C_PARTIAL_SLABS] = this.partialSlabs;
    r[C_FULL_SLABS] = this.fullSlabs;
    r[C_EMPTY_SLABS] = this.emptySlabs;
    r[C_PARTIAL_HEAD] = this.partialHead;
    r[C_FULL_HEAD] = this.fullHead;
    r[C_EMPTY_HEAD] = this.emptyHead;
    r[C_CURRENT_DESCRIPTOR] = this.currentDescriptor;
    r[C_CURRENT_BASE] = this.currentBase;
    r[C_PARTIAL_TAIL] = this.#partialTail;
  }
}
