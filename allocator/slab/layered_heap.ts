/**
 * The page-frame and slab layers over the block heap, behind one front door:
 * chunks of frames come from the block heap on demand (allocator/frames/),
 * slabs come from the frames, and kmalloc classes and named caches carve
 * objects from slabs. The owner of any address is found from the address
 * (chunk directory, then frame table), never from bytes a payload could forge.
 *
 * Reserves: each cache keeps at most one empty slab (the caches at most
 * EMPTY_SLABS_KEPT_MAX in all, or one per FRAMES_PER_EMPTY_SLAB_KEPT frames in
 * use when that is more, widened while caches keep making again the slabs
 * it gave back: EMPTY_SLABS_WIDENED_MAX) and the frames keep one wholly free chunk,
 * also when nothing lives in the layers, so a workload that
 * swings around a slab or chunk boundary does not take and give them back on
 * every call; `releaseReserves()` (PhysicalAllocator.trim()) gives them back,
 * and a failed allocation does so only when that surely serves it, as do the
 * frames before they take or grow a chunk (#reclaimEmptySlabs).
 *
 * State: the tables live in a LayerState (layer_state.ts): JS memory of its
 * own for an unshared heap, a shared heap's header otherwise, where every
 * Worker's layers view the same words and copy the scalar fields in and out:
 * the frames', directory's, page map's and layers' own under the heap lock
 * (enterHeap, leaveHeap: one version word), each cache's under its class
 * lock (enterCache, leaveCache: a version word in its record), all of them
 * when a Worker holds every lock (enterShared, leaveShared).
 *
 * @module
 */

import { alignUp } from "../_math.ts";
import { DoubleFreeError, HeapCorruptionError, InvalidFreeError } from "../errors.ts";
import { hex } from "../memory/physical_memory.ts";
import { FrameAllocator, IN_CHUNK_META } from "../frames/buddy.ts";
import {
  CHUNK_REF_SHIFT,
  E_AUX,
  E_NEXT,
  E_PREV,
  E_TAG,
  FRAME_BYTES,
  FRAME_SHIFT,
  KIND_FREE_HEAD,
  KIND_FREE_TAIL,
  KIND_MASK,
  KIND_PAGES_HEAD,
  KIND_PAGES_TAIL,
  KIND_SLAB_HEAD,
  KIND_SLAB_TAIL,
  LOCAL_MASK,
  NONE,
  tagAux,
  tagOrder,
} from "../frames/frame_table.ts";
import {
  classAlignBytes,
  KMALLOC_CLASS_BY_STEP,
  KMALLOC_CLASSES,
  KMALLOC_MAX_BYTES,
  KMALLOC_SLACK_MAX,
  KMALLOC_SMALL_CLASS_COUNT,
} from "./kmalloc.ts";
import {
  C_SECRET,
  C_VERSION,
  CACHE_RECORD_WORDS,
  D_SLAB,
  SlabCache,
  type SlabInfo,
} from "./slab_cache.ts";
import { InternalBlocks } from "./internal_blocks.ts";
import { SlabPageMap } from "./slab_page_map.ts";
import {
  LayerState,
  S_BLOCK_BYTES,
  S_BLOCK_COUNT,
  S_CACHES_MADE,
  S_PAGE_FRAMES,
  S_PAGE_RUNS,
  S_PAGE_SLACK_BYTES,
  S_SEED,
  S_VERSION,
} from "./layer_state.ts";
import { drawHeaderKey } from "../heap/_header_key.ts";

/** What the layers need from the block heap below them. */
export interface BlockSource {
  /** A used block of `sizeBytes` aligned to `alignBytes`, not counted as a user allocation; 0 if none fits. */
  take(sizeBytes: number, alignBytes: number): number;
  /** Frees a block `take` returned. */
  give(address: number): void;
  /** Grows the block `take` returned at `address` in place to `sizeBytes`; false (nothing written) if it cannot. */
  growInPlace(address: number, sizeBytes: number): boolean;
  /** The largest payload one free block could hold, or 0. */
  largestFreeBytes(): number;
}

/** The part of the window (from its start) where chunks and descriptors may lie: offsets stay below 2^31. */
export const LAYER_WINDOW_BYTES = 2 ** 31 - 4096;

/** Layers serve a heap only when its largest region has a block area at least this large. */
export const LAYERS_MIN_AREA_BYTES = 1 << 20;

/** The most caches (kmalloc classes included) one heap holds: ids fit a frame tag's aux bits. */
export const CACHE_COUNT_MAX = 1 << 16;

/** What the layers hold, for `stats()`. */
export interface LayerStats {
  /** Chunks of frames taken from the block heap. */
  readonly chunks: number;
  /** Frames in those chunks. */
  readonly totalFrames: number;
  /** Free frames. */
  readonly freeFrames: number;
  /** Frames in page runs handed out by allocPages or alloc. */
  readonly pageFrames: number;
  /** Frames in slabs. */
  readonly slabFrames: number;
  /** Free blocks per order, like /proc/buddyinfo (index = order). */
  readonly buddyinfo: readonly number[];
  /** Every cache that has or had slabs, like /proc/slabinfo. */
  readonly slabinfo: readonly SlabInfo[];
  /** Bytes the layers took from the block heap (chunks and slab descriptors). */
  readonly blockBytes: number;
  /** Of those, bytes handed out (page runs, objects' requested sizes). */
  readonly usedBytes: number;
  /** Of those, bytes of free frames. */
  readonly freeBytes: number;
  /** Of those, the rest: frame tables, descriptors, free and rounded slab space. */
  readonly overheadBytes: number;
}

/** A run of a chunk, as `PhysicalAllocator.layerRuns()` yields it. */
export interface LayerRun {
  /** The address of the run's first byte. */
  readonly address: number;
  /** Its bytes. */
  readonly sizeBytes: number;
  /** Free frames, a page run in use, a slab, or the chunk's frame table. */
  readonly kind: "free" | "pages" | "slab" | "table";
  /** The address of its chunk's first frame (the payload of the chunk's block). */
  readonly chunk: number;
}

/** Where an address lives in the layers. */
export interface LayerOwner {
  /** Bytes requested for it (its payload size). */
  readonly sizeBytes: number;
  /** Bytes it may hold. */
  readonly capacityBytes: number;
  /** True for a page run (allocPages or a page-sized alloc), false for a slab object. */
  readonly pages: boolean;
}

/**
 * The fewest empty slabs the caches may keep in all (each keeps at most one):
 * a slab reserve per kmalloc class would keep up to 24 frames below the
 * footprint (README, "Page frames and slab caches").
 */
const EMPTY_SLABS_KEPT_MAX = 4;

/**
 * Beyond EMPTY_SLABS_KEPT_MAX, the caches may keep one empty slab per this
 * many frames in use: a slab given back and soon made again costs a
 * descriptor block and a buddy run each way, while at most 1/64 of the
 * frames in use kept empty costs little footprint.
 */
const FRAMES_PER_EMPTY_SLAB_KEPT = 64;

/**
 * The most empty slabs by which an unshared heap's reserve widens beyond
 * EMPTY_SLABS_KEPT_MAX, one for each slab the reserve gave back and its
 * cache then made again: a loop over more classes than the reserve holds
 * would otherwise give a slab back and make one at every call. The frames'
 * next growth ends the widening (#reclaimEmptySlabs).
 */
const EMPTY_SLABS_WIDENED_MAX = 16;

/**
 * The widening narrows by one slab after this many slabs emptied with no
 * miss (see EMPTY_SLABS_WIDENED_MAX): a loop that needs it misses again
 * within a few calls and widens it back, while a heap that left such a loop
 * does not keep the reserve.
 */
const SLABS_EMPTIED_PER_NARROWING = 64;

/** Layer state versions wrap within 30 bits: never -1, the version a joining Worker has seen. */
const VERSION_MASK = 0x3fffffff;

/**
 * A shared heap's layer state, for the layers of one of its Workers: the
 * state lives in the heap's memory, and the creator writes it fresh.
 */
export interface SharedLayerState {
  /** The state (its cache records hold the kmalloc classes). */
  readonly state: LayerState;
  /** True for the Worker creating the heap: it writes the initial state. */
  readonly fresh: boolean;
}

/**
 * Thrown (shared heaps) when a call holding the heap lock alone reaches a
 * slab cache, before it changed anything: the caller releases the lock and
 * runs the call again holding every lock.
 */
export class EveryLockNeeded extends Error {
  /** Creates the signal. */
  constructor() {
    super("The call needs every lock of the shared heap");
  }
}

/** The frames and slab layers of one heap. */
export class LayeredHeap {
  /** The frame allocator. */
  readonly frames: FrameAllocator;
  /** Every cache by id: the kmalloc classes first. */
  readonly caches: SlabCache[] = [];
  /** The layers' tables, lists and counters (in the shared heap's memory when shared). */
  readonly state: LayerState;
  /** True when the state lives in a shared heap (every Worker builds these objects over it). */
  readonly shared: boolean;
  readonly #scalars: Int32Array;
  /** Page runs handed out. */
  pageRuns = 0;
  /** Frames in them. */
  pageFrames = 0;
  /** Bytes of those runs past their requests (a large block request served from free frames). */
  pageSlackBytes = 0;
  /**
   * Objects and page runs alive in the layers: summed when asked (stats), so
   * that no alloc or free pays for a counter of its own.
   */
  get live(): number {
    let live = this.pageRuns;
    for (const cache of this.caches) live += cache.activeObjects;
    return live;
  }
  /** Blocks the layers took from the block heap, and their requested bytes. */
  blockCount = 0;
  /** Requested bytes of those blocks. */
  blockBytes = 0;
  /** Each cache's free-link key, by id (for slab_fast_path.ts; the caches keep their own). */
  readonly cacheSecrets: number[] = [];
  readonly #source: BlockSource;
  /**
   * Payload addresses of the blocks the layers took from the block heap
   * (chunks, slab descriptors): the block heap must refuse them from users,
   * since `alloc` never handed them out. A shared heap's Workers cannot
   * share a JS set: they tell these blocks from the frame tables instead
   * (#isChunkOrDescriptor), and this is null.
   */
  readonly #internalBlocks: InternalBlocks | null;
  /**
   * Per mid class (see KMALLOC_SMALL_MAX_BYTES): requests it turned away to
   * the blocks since it last had a slab; at objectsPerSlab it takes one (a
   * cold class asks the blocks, a busy one is served at slab speed, and one
   * whose slabs keep going back, as reserves run short, goes cold again).
   */
  readonly #midTurnedAway = new Int32Array(KMALLOC_CLASSES.length - KMALLOC_SMALL_CLASS_COUNT);
  /** The caches that may hold empty slabs (#slabEmptied's list; others hold none). */
  readonly #emptyHolders: SlabCache[] = [];
  /** Empty slabs the reserve holds beyond EMPTY_SLABS_KEPT_MAX (see EMPTY_SLABS_WIDENED_MAX). */
  #emptySlabsWidened = 0;
  /** Slabs emptied so far: the clock of the widening's narrowing. */
  #slabsEmptied = 0;
  /** `#slabsEmptied` when a cache last missed a slab the reserve gave back. */
  #slabsEmptiedAtMiss = 0;
  /** Which slab every slab frame belongs to (for slab_fast_path.ts's free; proved by check()). */
  readonly slabPages: SlabPageMap;
  /** Per cache id: the bytes a user object holds (its object size less the debug guard). */
  readonly #requestedOf: number[] = [];
  readonly #baseAddress: number;
  /** The heap version (S_VERSION) whose words the heap fields hold (shared heaps; -1: none yet). */
  #seenVersion = 0;
  /** Per cache id: the record version (C_VERSION) whose words its fields hold (shared heaps). */
  #seenCacheVersions: Int32Array = new Int32Array(0);
  /** Per cache id: its record (shared heaps). */
  #records: Int32Array[] = [];
  /**
   * The cache whose class lock alone this Worker holds (shared heaps), else
   * null: only that cache's fields are its own then, and the heap's only
   * after #needHeap.
   */
  #classHeld: SlabCache | null = null;
  /** A cache record's words before leaveCache stores the fields. */
  readonly #recordBefore = new Int32Array(CACHE_RECORD_WORDS);
  /** True while a shared heap's Worker holds the heap lock alone (enterHeapOnly): no cache is its own. */
  #heapOnly = false;
  /** The heap's scalar words before leaveHeap stores the fields. */
  readonly #scalarsBefore = new Int32Array(S_VERSION);
  /** Takes the heap lock when only a class lock is held (a shared heap's Worker sets it). */
  #needHeap: () => void = () => {};
  /** True when this hold of a shared heap's lock may have changed the layers' fields. */
  #dirty = false;
  /** Guard bytes every object gets in debug mode (GUARD_BYTES_MIN), else 0. */
  readonly #guardBytes: number;

  /**
   * Creates the layers; nothing is taken from the block heap until needed.
   *
   * @param window The window: exactly the heap's bytes, at a byte offset of its buffer that is a multiple of 4.
   * @param baseAddress The address of its byte 0.
   * @param source The block heap.
   * @param guardBytes Debug mode: guard bytes past every object (0: no debug mode).
   * @param shared A shared heap's layer state, or null for state in JS memory of its own.
   */
  constructor(
    window: Uint8Array,
    baseAddress: number,
    source: BlockSource,
    guardBytes = 0,
    shared: SharedLayerState | null = null,
  ) {
    this.#source = source;
    this.#guardBytes = guardBytes;
    this.#baseAddress = baseAddress;
    // The layers' state is 32-bit window offsets: they view (and place chunks
    // and descriptors in) the window's first LAYER_WINDOW_BYTES only.
    const words = new Int32Array(
      window.buffer,
      window.byteOffset,
      Math.min(window.byteLength, LAYER_WINDOW_BYTES) >> 2,
    );
    this.shared = shared !== null;
    this.state = shared?.state ?? LayerState.unshared(words.byteLength);
    this.#scalars = this.state.scalars;
    this.#internalBlocks = shared === null ? new InternalBlocks() : null;
    this.slabPages = new SlabPageMap(this.state, baseAddress);
    this.frames = new FrameAllocator(words, baseAddress, {
      take: (payloadBytes) => this.#take(payloadBytes, FRAME_BYTES),
      give: (address, payloadBytes) => this.#give(address, payloadBytes),
      growInPlace: (address, oldBytes, newBytes) => {
        // A chunk grown in place moves its frame table, whose slab entries a
        // shared heap's Workers read and write under their class locks alone
        // (not the heap lock the growth holds): there the frames take a new
        // chunk instead.
        if (this.shared) return false;
        // Only inside the part of the window the layers address.
        if (address - baseAddress + newBytes > this.frames.words.byteLength) return false;
        if (!source.growInPlace(address, newBytes)) return false;
        this.blockBytes += newBytes - oldBytes;
        return true;
      },
      largestFreeBytes: () => source.largestFreeBytes(),
      reclaim: (order) => this.#reclaimEmptySlabs(order),
    }, this.state);
    const fresh = shared === null || shared.fresh;
    // A joining Worker loads the state when it first holds the lock.
    if (!fresh) this.#seenVersion = -1;
    if (shared !== null) {
      this.#seenCacheVersions = new Int32Array(KMALLOC_CLASSES.length).fill(fresh ? 0 : -1);
      for (let id = 0; id < KMALLOC_CLASSES.length; id++) {
        this.#records[id] = this.state.cacheRecord(id);
      }
    }
    // drawHeaderKey: random, or fixed inside withHeaderKey so that tests can
    // compare two heaps byte for byte.
    if (fresh) this.#scalars[S_SEED] = drawHeaderKey() | 0;
    for (let id = 0; id < KMALLOC_CLASSES.length; id++) {
      const bytes = KMALLOC_CLASSES[id];
      if (fresh) this.createCache(`kmalloc-${bytes}`, bytes, true);
      else this.#joinCache(id, `kmalloc-${bytes}`, bytes);
    }
  }

  /** A joining Worker's SlabCache over kmalloc class `id`'s record, written by the heap's creator. */
  #joinCache(id: number, name: string, objectBytes: number): void {
    const record = this.state.cacheRecord(id);
    this.#requestedOf[id] = objectBytes;
    this.cacheSecrets[id] = record[C_SECRET];
    this.#addCache(
      new SlabCache(
        id,
        name,
        objectBytes,
        this.frames,
        this.#descriptorSource(id),
        true,
        record[C_SECRET],
        this.#guardBytes > 0,
        this.slabPages,
        record,
        false,
        this.#guardBytes === 0,
      ),
    );
  }

  #descriptorSource(id: number) {
    return {
      // Under a class lock alone (a Worker cache's refill making a slab): the frames need the heap lock.
      holdFrames: () => {
        if (this.#classHeld !== null) this.#needHeap();
      },
      take: (sizeBytes: number) => this.#take(sizeBytes, 8),
      give: (address: number) => this.#give(address, this.caches[id].descriptorBytes),
    };
  }

  #addCache(cache: SlabCache): void {
    cache.onEmptied = (emptied) => this.#slabEmptied(emptied);
    cache.onReserveMissed = () => {
      if (this.#emptySlabsWidened < EMPTY_SLABS_WIDENED_MAX) this.#emptySlabsWidened++;
      this.#slabsEmptiedAtMiss = this.#slabsEmptied;
    };
    this.caches[cache.id] = cache;
  }

  #take(sizeBytes: number, alignBytes: number): number {
    // Under a class lock alone (a Worker cache's refill making a slab): the blocks need the heap lock.
    if (this.#classHeld !== null) this.#needHeap();
    const address = this.#source.take(sizeBytes, alignBytes);
    if (address !== 0 && address - this.#baseAddress + sizeBytes > this.frames.words.byteLength) {
      // Beyond the part of the window the layers address: not usable by them.
      this.#source.give(address);
      return 0;
    }
    if (address !== 0) {
      this.blockCount++;
      this.blockBytes += sizeBytes;
      this.#internalBlocks?.add(address);
    }
    return address;
  }

  #give(address: number, sizeBytes: number): void {
    if (this.#classHeld !== null) this.#needHeap();
    this.blockCount--;
    this.blockBytes -= sizeBytes;
    this.#internalBlocks?.delete(address);
    this.#source.give(address);
  }

  /**
   * True when `address` is the payload of a block the layers took for
   * themselves (a chunk or a slab descriptor): never a user's allocation.
   */
  isInternalBlock(address: number): boolean {
    if (this.#internalBlocks !== null) return this.#internalBlocks.has(address);
    return this.#isChunkOrDescriptor(address);
  }

  /**
   * isInternalBlock() from the frame tables alone (a shared heap): a chunk
   * is a payload the chunk directory starts at; a descriptor is a payload
   * whose word D_SLAB names a slab head whose aux word names this very
   * payload. A user's block cannot pass the second test by writing that
   * word: the aux word lies in a frame table and names one descriptor.
   */
  #isChunkOrDescriptor(address: number): boolean {
    if (typeof address !== "number" || this.blockCount === 0) return false;
    const frames = this.frames;
    const offset = address - this.#baseAddress;
    if (!(offset >= 0 && offset + 16 <= frames.words.byteLength) || (offset & 7) !== 0) {
      return false;
    }
    const dir = frames.directory;
    const id = dir.find(offset);
    if (id !== NONE) return dir.startOffset[id] === offset;
    const d = offset >> 2;
    const slab = frames.words[d + D_SLAB];
    const chunk = slab >>> CHUNK_REF_SHIFT;
    if (
      slab < 0 || chunk >= dir.idLimit || dir.startOffset[chunk] === -1 ||
      (slab & LOCAL_MASK) >= frames.chunkFrames[chunk]
    ) return false;
    const e = frames.entry(slab);
    return (frames.words[e + E_TAG] & KIND_MASK) === KIND_SLAB_HEAD &&
      frames.words[e + E_AUX] === d;
  }

  /**
   * Adds a cache of `objectBytes` objects.
   *
   * @param name Its name.
   * @param objectBytes Object size: rounded up to 8, at most 16 KiB (plus the debug guard).
   * @param keepsSizes Whether requested sizes are kept (kmalloc classes).
   * @returns The cache.
   */
  createCache(
    name: string,
    objectBytes: number,
    keepsSizes = false,
    alignBytes = 8,
  ): SlabCache {
    this.#dirty = true;
    // A destroyed cache's id is given to the new cache: ids stay below CACHE_COUNT_MAX.
    let id = this.caches.findIndex((cache) => cache.destroyed);
    if (id === -1) id = this.caches.length;
    const debug = this.#guardBytes > 0;
    const requestedBytes = (objectBytes + 7) & ~7;
    // Debug mode: a named cache's objects grow by the guard (rounded up to
    // the cache's alignment, so objects stay aligned), which their u8 slack
    // records; when that slack could not hold the rounded guard (a large
    // alignment), such caches get poison but no guard bytes.
    const guarded = alignUp(requestedBytes + this.#guardBytes, Math.max(alignBytes, 8));
    const guardBytes = keepsSizes || guarded - requestedBytes > KMALLOC_SLACK_MAX
      ? 0
      : this.#guardBytes;
    const bytes = guardBytes === 0 ? requestedBytes : guarded;
    this.#requestedOf[id] = requestedBytes;
    // A reused id gets a fresh key: links of the old cache never decode in the new one.
    const made = this.#scalars[S_CACHES_MADE];
    const secret = this.#scalars[S_SEED] ^ Math.imul(made + 1, 0x85ebca77);
    this.#scalars[S_CACHES_MADE] = made + 1;
    this.cacheSecrets[id] = secret | 0;
    // A shared heap's caches (its kmalloc classes) keep their records in its
    // memory, and Worker caches hold their objects.
    const cache = new SlabCache(
      id,
      name,
      bytes,
      this.frames,
      this.#descriptorSource(id),
      keepsSizes || debug,
      secret,
      debug,
      this.slabPages,
      this.shared ? this.state.cacheRecord(id) : null,
      true,
      this.shared && keepsSizes && !debug,
    );
    this.#addCache(cache);
    return cache;
  }

  /**
   * After a slab of `emptied` became empty: when the caches hold more than
   * EMPTY_SLABS_KEPT_MAX empty slabs in all, the other caches' go back to the
   * frames (`emptied` keeps its own, so an alloc+free loop on one cache does
   * not make and unmake a slab at every turn).
   */
  #slabEmptied(emptied: SlabCache): void {
    // Under its class lock alone, a cache sees no other cache: it keeps one
    // empty slab of its own (trimClassHeld), and the walk waits for a hold
    // of every lock.
    if (this.#classHeld !== null) return;
    this.#slabsEmptied++;
    if (
      this.#emptySlabsWidened > 0 &&
      this.#slabsEmptied - this.#slabsEmptiedAtMiss > SLABS_EMPTIED_PER_NARROWING
    ) {
      this.#emptySlabsWidened--;
      this.#slabsEmptiedAtMiss = this.#slabsEmptied;
    }
    // Only caches that emptied a slab can hold one: the walk is over those (a
    // few: the caches keep EMPTY_SLABS_KEPT_MAX empty slabs in all), not over
    // every cache, since a cache whose last object comes and goes empties a
    // slab at every turn. A shared heap's other Workers empty slabs too, out
    // of this Worker's sight: there the list is every cache holding one.
    const holders = this.#emptyHolders;
    if (this.shared) {
      holders.length = 0;
      for (const cache of this.caches) if (cache.emptySlabs > 0) holders.push(cache);
    } else if (!holders.includes(emptied)) holders.push(emptied);
    let total = 0;
    let kept = 0;
    for (const cache of holders) {
      if (cache.emptySlabs === 0) continue;
      holders[kept++] = cache;
      total += cache.emptySlabs;
    }
    // A store to an array's length is a call into V8's runtime: made only when the list shrank.
    if (kept !== holders.length) holders.length = kept;
    const frames = this.frames;
    const keep = Math.max(
      EMPTY_SLABS_KEPT_MAX + this.#emptySlabsWidened,
      Math.floor((frames.totalFrames - frames.freeFrames) / FRAMES_PER_EMPTY_SLAB_KEPT),
    );
    if (total <= keep) return;
    // In id order, as a walk over every cache would give them back.
    holders.sort((a, b) => a.id - b.id);
    for (const cache of holders) {
      if (cache === emptied || cache.emptySlabs === 0) continue;
      total -= cache.emptySlabs;
      cache.shrink(0);
      // A shared heap's Workers would each count the same miss: only unshared reserves widen.
      cache.reserveTaken = !this.shared;
      if (total <= keep) break;
    }
  }

  /**
   * Sets the callback every Worker-cached cache calls when it clears an
   * object's hidden slack under the lock (a shared heap's Worker counts it).
   */
  setHiddenCleared(callback: (bytes: number) => void): void {
    for (const cache of this.caches) cache.onHiddenCleared = callback;
  }

  /** True when `createCache` can make another cache (an id is free). */
  get cacheIdFree(): boolean {
    return this.caches.length < CACHE_COUNT_MAX || this.caches.some((cache) => cache.destroyed);
  }

  /**
   * Destroys `cache`, which has no live objects (the caller checked): its
   * slabs, all empty, go back to the frames; its id may serve a new cache.
   *
   * @param cache A named cache with no live objects.
   */
  destroyCache(cache: SlabCache): void {
    this.#dirty = true;
    cache.shrink(0);
    cache.destroyed = true;
    this.trim();
  }

  /**
   * A kmalloc object for `sizeBytes` (1 to KMALLOC_MAX_BYTES) aligned to
   * `alignBytes`: the smallest class that holds it with that alignment.
   *
   * @returns Its address, or 0 when no class fits or no slab can be had.
   */
  kmalloc(sizeBytes: number, alignBytes: number): number {
    if (this.#heapOnly) throw new EveryLockNeeded();
    this.#dirty = true;
    const wanted = sizeBytes + this.#guardBytes;
    if (wanted > KMALLOC_MAX_BYTES) return 0;
    let index = KMALLOC_CLASS_BY_STEP[(wanted + 7) >> 3];
    if (alignBytes > 8) {
      for (; index < KMALLOC_CLASSES.length; index++) {
        if (classAlignBytes(KMALLOC_CLASSES[index]) >= alignBytes) break;
      }
      if (index === KMALLOC_CLASSES.length) return 0;
      // The slack byte holds the object size less the size asked for (debug guards included).
      if (KMALLOC_CLASSES[index] - sizeBytes > KMALLOC_SLACK_MAX) return 0;
    }
    const cache = this.caches[index];
    if (index >= KMALLOC_SMALL_CLASS_COUNT && cache.slabs === 0) {
      const turnedAway = this.#midTurnedAway[index - KMALLOC_SMALL_CLASS_COUNT];
      this.#midTurnedAway[index - KMALLOC_SMALL_CLASS_COUNT] = turnedAway < cache.objectsPerSlab
        ? turnedAway + 1
        : 0;
      if (turnedAway < cache.objectsPerSlab) return 0;
    }
    const offset = cache.alloc(sizeBytes);
    if (offset < 0) return 0;
    return this.#baseAddress + offset;
  }

  /**
   * An object of `cache`.
   *
   * @returns Its address, or 0 when no slab can be had.
   */
  cacheAlloc(cache: SlabCache): number {
    if (this.#heapOnly) throw new EveryLockNeeded();
    this.#dirty = true;
    const offset = cache.alloc(this.#requestedOf[cache.id]);
    if (offset < 0) return 0;
    return this.#baseAddress + offset;
  }

  /**
   * An object of a Worker-cached `cache` for a Worker cache's refill, from a
   * slab of Worker slot `slot` (SlabCache.allocForWorker), its whole size recorded.
   *
   * @returns Its address, or 0 when no slab can be had.
   */
  cacheAllocForWorker(
    cache: SlabCache,
    slot: number,
    ownerGone: (slot: number) => boolean,
  ): number {
    this.#dirty = true;
    const offset = cache.allocForWorker(this.#requestedOf[cache.id], slot, ownerGone);
    if (offset < 0) return 0;
    return this.#baseAddress + offset;
  }

  /**
   * A run of `frameCount` frames (1 to 1024), page-aligned.
   *
   * @returns Its address, or 0 when no chunk can serve it.
   */
  allocPages(frameCount: number, sizeBytes: number = frameCount * FRAME_BYTES): number {
    this.#dirty = true;
    const ref = this.frames.allocRun(frameCount, KIND_PAGES_HEAD, 0);
    if (ref === NONE) return 0;
    // The bytes of the run past the request, in the head's otherwise unused prev word.
    const slack = frameCount * FRAME_BYTES - sizeBytes;
    this.frames.words[this.frames.entry(ref) + E_PREV] = slack;
    this.pageSlackBytes += slack;
    this.pageRuns++;
    this.pageFrames += frameCount;
    return this.frames.address(ref);
  }

  /** True when `address` lies in a chunk (so the layers own it, or refuse it). */
  owns(address: number): boolean {
    return this.frames.directory.count !== 0 && typeof address === "number" &&
      this.frames.directory.find(address - this.#baseAddress) !== NONE;
  }

  /**
   * Frees `address` if a chunk holds it.
   *
   * @returns False when no chunk holds the address (the block heap's then).
   * @throws {InvalidFreeError} If it is not the start of a live page run or object.
   * @throws {DoubleFreeError} If it is free.
   * @throws {HeapCorruptionError} If the frame table is inconsistent.
   */
  free(address: number, onlyCache: SlabCache | null = null): boolean {
    const frames = this.frames;
    const dir = frames.directory;
    if (dir.count === 0 || typeof address !== "number") return false;
    const offset = address - this.#baseAddress;
    const id = dir.find(offset);
    if (id === NONE) return false;
    if (this.#heapOnly) throw new EveryLockNeeded();
    // (Only now: a block's free leaves the layers' fields alone, and a shared heap stores none.)
    this.#dirty = true;
    // The common case first: a live object of a slab, one entry (two for a tail frame) read.
    const local = (offset - dir.startOffset[id]) >>> FRAME_SHIFT;
    if (local < frames.chunkFrames[id]) {
      const w = frames.words;
      let headLocal = local;
      let e = frames.chunkTableWord[id] + (local << 2);
      if ((w[e + E_TAG] & KIND_MASK) === KIND_SLAB_TAIL) {
        headLocal = w[e + E_NEXT] & LOCAL_MASK;
        e = frames.chunkTableWord[id] + (headLocal << 2);
      }
      const t = w[e + E_TAG];
      if ((t & KIND_MASK) === KIND_SLAB_HEAD) {
        const cache = this.caches[tagAux(t)];
        if (
          (onlyCache === null || onlyCache === cache) &&
          cache.freeFast(offset, w[e + E_AUX], dir.startOffset[id] + (headLocal << FRAME_SHIFT))
        ) {
          if (cache.emptySlabs > 1) this.trim();
          return true;
        }
      }
    }
    return this.#freeChecked(address, offset, onlyCache);
  }

  /** free() when the common case does not apply: finds and reports what is wrong, or frees pages. */
  #freeChecked(address: number, offset: number, onlyCache: SlabCache | null): boolean {
    const ref = this.frames.refAt(offset);
    const slab = this.#slabOf(ref, address, "free");
    if (slab !== NONE) {
      const cache = this.caches[tagAux(this.frames.words[this.frames.entry(slab) + E_TAG])];
      if (onlyCache !== null && cache !== onlyCache) {
        throw new InvalidFreeError(
          `Cannot free ${
            hex(address)
          } to cache ${onlyCache.name}: it belongs to cache ${cache.name}`,
        );
      }
      cache.free(offset, slab, address);
      if (cache.emptySlabs > 1) this.trim();
      return true;
    }
    if (onlyCache !== null) {
      throw new InvalidFreeError(
        `Cannot free ${hex(address)} to cache ${onlyCache.name}: it is a page run`,
      );
    }
    if (this.#freeRun(ref)) this.trim();
    return true;
  }

  /**
   * Frees the live page run whose head frame is `ref`; true when its chunk
   * is wholly free then (the caller trims).
   */
  #freeRun(ref: number): boolean {
    const frameCount = this.frames.words[this.frames.entry(ref) + E_AUX];
    this.pageSlackBytes -= this.frames.words[this.frames.entry(ref) + E_PREV];
    this.frames.freeRun(ref, frameCount);
    this.pageRuns--;
    this.pageFrames -= frameCount;
    const chunk = ref >>> CHUNK_REF_SHIFT;
    return this.frames.chunkFreeFrames[chunk] === this.frames.chunkFrames[chunk];
  }

  /**
   * Frees the live page run that starts at `address`, touching no slab
   * cache: for a shared heap's hold of the heap lock alone (frames, page
   * books and chunks are the heap lock's). False, having written nothing,
   * for anything else (a slab object, a freed run, an interior or foreign
   * address): the caller frees it under every lock, which frees or reports it.
   *
   * @param address Any value.
   * @returns Whether it freed a page run.
   */
  freePageRun(address: number): boolean {
    const ref = this.#pageRunAt(address);
    if (ref === NONE) return false;
    this.#dirty = true;
    // A wholly free chunk beyond one goes back; the caches' empty slabs wait for every lock.
    if (this.#freeRun(ref)) this.frames.trim(1);
    return true;
  }

  /**
   * The order of the live page run that starts at `address` when it is
   * exactly 2^order frames with no slack bytes past a request (a shared
   * heap's Worker cache takes such runs), read from the layers' tables
   * (under the heap lock on a shared heap); -1 for anything else.
   */
  wholePageRunOrder(address: number): number {
    const ref = this.#pageRunAt(address);
    if (ref === NONE) return -1;
    const entry = this.frames.entry(ref);
    const order = tagOrder(this.frames.words[entry + E_TAG]);
    return this.frames.words[entry + E_AUX] === 1 << order &&
        this.frames.words[entry + E_PREV] === 0
      ? order
      : -1;
  }

  /** The head frame of the live page run that starts at `address`, else NONE. */
  #pageRunAt(address: number): number {
    if (!this.owns(address)) return NONE;
    const offset = address - this.#baseAddress;
    const ref = this.frames.refAt(offset);
    if (ref < 0 || this.frames.offsetOf(ref) !== offset) return NONE;
    const kind = this.frames.words[this.frames.entry(ref) + E_TAG] & KIND_MASK;
    return kind === KIND_PAGES_HEAD ? ref : NONE;
  }

  /**
   * Gives back reserves beyond one: an empty slab per cache and one wholly
   * free chunk stay, also when nothing lives in the layers, so a heap that
   * swings between empty and not does not take and give a chunk at every
   * swing (releaseReserves() gives back the rest: PhysicalAllocator.trim()).
   */
  trim(): void {
    if (this.#heapOnly) throw new EveryLockNeeded();
    this.#dirty = true;
    for (const cache of this.caches) if (cache.emptySlabs > 1) cache.shrink(1);
    this.frames.trim(1);
  }

  /** Gives back every reserve (empty slabs, free chunks): the block heap ran short. */
  releaseReserves(): boolean {
    if (this.#heapOnly) throw new EveryLockNeeded();
    this.#dirty = true;
    this.#emptySlabsWidened = 0;
    let released = false;
    for (const cache of this.caches) {
      if (cache.emptySlabs > 0) {
        cache.shrink(0);
        released = true;
      }
    }
    if (this.frames.hasFreeChunk()) {
      this.frames.trim(0);
      released = true;
    }
    return released;
  }

  /**
   * For the frames, before they take or grow a chunk for a run of `order`:
   * when an empty slab of that order or more is kept, every cache's empty
   * slabs go back, so the run is served from memory the layers already hold
   * instead of growing the footprint (a reserve kept for a quiet cache costs
   * nothing until then; given back together, neighbouring frames merge into
   * the larger runs a mid class or a page run needs). When none is that
   * large, nothing changes: the run may still fail, and a failed call must
   * leave the heap as it was. Unshared heaps only: a shared heap's caller
   * holds one class lock, not the others'.
   *
   * @returns True when it gave slabs back (a block of `order` is then free).
   */
  #reclaimEmptySlabs(order: number): boolean {
    if (this.shared) return false;
    // The footprint is about to grow: the heap is past the steady state the widening served.
    this.#emptySlabsWidened = 0;
    if (!this.caches.some((c) => c.emptySlabs > 0 && c.slabOrder >= order)) return false;
    this.releaseEmptySlabs();
    return true;
  }

  /** Frees every cache's empty slabs into the buddy allocator; the chunks stay. */
  releaseEmptySlabs(): void {
    if (this.#heapOnly) throw new EveryLockNeeded();
    this.#dirty = true;
    for (const cache of this.caches) if (cache.emptySlabs > 0) cache.shrink(0);
  }

  /**
   * The blocks `releaseReserves()` would give back to the block heap: the
   * descriptors of every empty slab, and the chunks wholly free once those
   * slabs are freed. Nothing is written.
   *
   * @returns The payload addresses of those blocks.
   */
  releasableBlocks(): number[] {
    if (this.#heapOnly) throw new EveryLockNeeded();
    const frames = this.frames;
    const dir = frames.directory;
    const freeAfter = frames.chunkFreeFrames.slice(0, dir.idLimit);
    const blocks: number[] = [];
    for (const cache of this.caches) {
      let slab = cache.emptyHead;
      for (let n = 0; slab !== NONE && n < cache.emptySlabs; n++) {
        freeAfter[slab >>> CHUNK_REF_SHIFT] += 1 << cache.slabOrder;
        blocks.push(this.#baseAddress + (cache.descriptorOf(slab) << 2));
        slab = frames.words[frames.entry(slab) + E_NEXT];
      }
    }
    for (let id = 0; id < dir.idLimit; id++) {
      if (dir.startOffset[id] === -1 || freeAfter[id] !== frames.chunkFrames[id]) continue;
      blocks.push(this.#baseAddress + dir.startOffset[id]);
    }
    return blocks;
  }

  /**
   * The slab head ref when `ref` is a slab frame; NONE when it is the head of a
   * live page run at exactly `address`; throws for anything else.
   */
  #slabOf(ref: number, address: number, operation: string): number {
    if (ref === IN_CHUNK_META) {
      throw new InvalidFreeError(
        `Cannot ${operation} ${hex(address)}: it lies in a page-frame table, not in an allocation`,
      );
    }
    const w = this.frames.words;
    const e = this.frames.entry(ref);
    const kind = w[e + E_TAG] & KIND_MASK;
    const frameAddress = this.frames.address(ref);
    if (kind === KIND_SLAB_TAIL) return w[e + E_NEXT];
    if (
      kind === KIND_PAGES_HEAD || kind === KIND_PAGES_TAIL || kind === KIND_FREE_HEAD ||
      kind === KIND_FREE_TAIL
    ) {
      if (address !== frameAddress || kind === KIND_PAGES_TAIL) {
        const head = kind === KIND_PAGES_TAIL ? w[e + E_NEXT] : ref;
        throw new InvalidFreeError(
          `Cannot ${operation} ${hex(address)}: inside the page ${
            kind === KIND_PAGES_HEAD || kind === KIND_PAGES_TAIL
              ? `run at ${hex(this.frames.address(head))}`
              : "frame at " + hex(frameAddress) + ", which is free"
          }`,
        );
      }
      if (kind !== KIND_PAGES_HEAD) {
        throw new DoubleFreeError(`Cannot ${operation} ${hex(address)}: the page frame is free`);
      }
      return NONE;
    }
    if (kind === KIND_SLAB_HEAD) return ref;
    throw new HeapCorruptionError(
      frameAddress,
      `Heap corruption at frame ${hex(frameAddress)}: its table entry has kind ${kind}`,
    );
  }

  /**
   * The live allocation at `address`: its requested size and capacity.
   * With `verifyGuard` in debug mode, a slab object's guard bytes are
   * verified too (a realloc checks them before it moves anything).
   *
   * @throws {InvalidFreeError} / {DoubleFreeError} As `free` would (the caller may rethrow its own class).
   * @throws {HeapCorruptionError} With `verifyGuard`, if the guard bytes were overwritten.
   */
  ownerOf(address: number, operation: string, verifyGuard = false): LayerOwner {
    const offset = address - this.#baseAddress;
    const ref = this.frames.refAt(offset);
    const slab = this.#slabOf(ref, address, operation);
    if (slab === NONE) {
      const e = this.frames.entry(ref);
      const bytes = this.frames.words[e + E_AUX] << FRAME_SHIFT;
      return {
        sizeBytes: bytes - this.frames.words[e + E_PREV],
        capacityBytes: bytes,
        pages: true,
      };
    }
    const cache = this.caches[tagAux(this.frames.words[this.frames.entry(slab) + E_TAG])];
    const d = cache.descriptorOf(slab);
    const index = cache.indexOf(offset, slab, address, operation, d);
    if (!cache.inUse(d, index) || cache.isCached(d, index)) {
      throw new DoubleFreeError(
        `Cannot ${operation} ${hex(address)}: the ${cache.name} object is free${
          cache.isCached(d, index) ? " (in a Worker cache)" : ""
        }`,
      );
    }
    if (verifyGuard && this.#guardBytes > 0) cache.verifyGuard(offset, d, index, operation);
    return {
      sizeBytes: cache.objectBytes - cache.slackOf(d, index) - cache.hiddenOf(d, index),
      capacityBytes: cache.objectBytes,
      pages: false,
    };
  }

  /**
   * Resizes a kmalloc object in place when `sizeBytes` maps to its own class.
   *
   * @returns True when done in place.
   */
  resizeInPlace(address: number, sizeBytes: number): boolean {
    this.#dirty = true;
    const wanted = sizeBytes + this.#guardBytes;
    if (wanted > KMALLOC_MAX_BYTES) return false;
    const offset = address - this.#baseAddress;
    const ref = this.frames.refAt(offset);
    const w = this.frames.words;
    const kind = w[this.frames.entry(ref) + E_TAG] & KIND_MASK;
    if (kind !== KIND_SLAB_HEAD && kind !== KIND_SLAB_TAIL) return false;
    const slab = kind === KIND_SLAB_TAIL ? w[this.frames.entry(ref) + E_NEXT] : ref;
    const cache = this.caches[tagAux(w[this.frames.entry(slab) + E_TAG])];
    if (cache !== this.caches[KMALLOC_CLASS_BY_STEP[(wanted + 7) >> 3]]) {
      return false;
    }
    const d = cache.descriptorOf(slab);
    cache.resize(d, cache.indexOf(offset, slab, address, "reallocate", d), sizeBytes);
    return true;
  }

  /**
   * Shrinks the live allocation at `address` (verified by ownerOf) to
   * `sizeBytes` where it stands, when its size can be recorded there: a page
   * run (its frames past the new size go back to the buddy allocator), or a
   * kmalloc object whose slack still fits its byte. For a realloc whose move found no memory: a shrink
   * then still succeeds where the address can keep it.
   *
   * @returns Whether it shrank (false: nothing written).
   */
  shrinkInPlace(address: number, sizeBytes: number): boolean {
    const offset = address - this.#baseAddress;
    const ref = this.frames.refAt(offset);
    const w = this.frames.words;
    const e = this.frames.entry(ref);
    const kind = w[e + E_TAG] & KIND_MASK;
    if (kind === KIND_PAGES_HEAD) {
      const frameCount = w[e + E_AUX];
      const needed = Math.max(1, Math.ceil(sizeBytes / FRAME_BYTES));
      if (needed > frameCount) return false;
      this.#dirty = true;
      // The frames past the new size go back, so a run stays the fewest frames that hold it.
      if (needed < frameCount) {
        this.frames.freeRun(ref + needed, frameCount - needed);
        w[e + E_AUX] = needed;
        this.pageFrames -= frameCount - needed;
      }
      const slack = needed * FRAME_BYTES - sizeBytes;
      this.pageSlackBytes += slack - w[e + E_PREV];
      w[e + E_PREV] = slack;
      return true;
    }
    if (kind !== KIND_SLAB_HEAD && kind !== KIND_SLAB_TAIL) return false;
    const slab = kind === KIND_SLAB_TAIL ? w[e + E_NEXT] : ref;
    const cache = this.caches[tagAux(w[this.frames.entry(slab) + E_TAG])];
    if (
      !cache.keepsSizes || sizeBytes + this.#guardBytes > cache.objectBytes ||
      cache.objectBytes - sizeBytes > KMALLOC_SLACK_MAX
    ) return false;
    this.#dirty = true;
    const d = cache.descriptorOf(slab);
    cache.resize(d, cache.indexOf(offset, slab, address, "reallocate", d), sizeBytes);
    return true;
  }

  /** Every chunk's runs in address order: free blocks, page runs, slabs, then its table. */
  *runs(): IterableIterator<LayerRun> {
    const frames = this.frames;
    const dir = frames.directory;
    for (let id = 0; id < dir.idLimit; id++) {
      if (dir.startOffset[id] === -1) continue;
      const chunk = this.#baseAddress + dir.startOffset[id];
      const count = frames.chunkFrames[id];
      let local = 0;
      for (let step = 0; local < count && step < count; step++) {
        const ref = (id << CHUNK_REF_SHIFT) | local;
        const t = frames.words[frames.entry(ref) + E_TAG];
        const kind = t & KIND_MASK;
        const runFrames = kind === KIND_PAGES_HEAD
          ? frames.words[frames.entry(ref) + E_AUX]
          : 1 << tagOrder(t);
        yield {
          address: chunk + local * FRAME_BYTES,
          sizeBytes: runFrames * FRAME_BYTES,
          kind: kind === KIND_FREE_HEAD ? "free" : kind === KIND_PAGES_HEAD ? "pages" : "slab",
          chunk,
        };
        local += runFrames;
      }
      const tableStart = chunk + count * FRAME_BYTES;
      yield {
        address: tableStart,
        sizeBytes: this.#baseAddress + dir.endOffset[id] - tableStart,
        kind: "table",
        chunk,
      };
    }
  }

  /** The layers' accounting. */
  stats(): LayerStats {
    let requested = 0;
    let slabFrames = 0;
    for (const cache of this.caches) {
      requested += cache.requestedBytes;
      slabFrames += cache.slabs << cache.slabOrder;
    }
    const usedBytes = requested + this.pageFrames * FRAME_BYTES - this.pageSlackBytes;
    const freeBytes = this.frames.freeFrames * FRAME_BYTES;
    return {
      chunks: this.frames.directory.count,
      totalFrames: this.frames.totalFrames,
      freeFrames: this.frames.freeFrames,
      pageFrames: this.pageFrames,
      slabFrames,
      buddyinfo: [...this.frames.freeBlocks],
      slabinfo: this.caches.filter((c) => !c.destroyed && (c.slabs > 0 || !c.keepsSizes)).map((
        c,
      ) => c.info()),
      blockBytes: this.blockBytes,
      usedBytes,
      freeBytes,
      overheadBytes: this.blockBytes - usedBytes - freeBytes,
    };
  }

  /**
   * Proves the frames, every cache and the layers' books consistent.
   *
   * @param verifyBlock Verifies that `address` is a used block of `sizeBytes` in the block heap.
   * @throws {HeapCorruptionError} Naming what is broken.
   */
  check(verifyBlock: (address: number, sizeBytes: number) => void): void {
    this.frames.check();
    let slabFrames = 0;
    let descriptorBytes = 0;
    let descriptors = 0;
    for (const cache of this.caches) {
      const books = cache.check();
      slabFrames += books.slabFrames;
      descriptorBytes += books.descriptorBytes;
      descriptors += cache.slabs;
    }
    const frames = this.frames;
    const dir = frames.directory;
    let chunkBytes = 0;
    for (let id = 0; id < dir.idLimit; id++) {
      if (dir.startOffset[id] === -1) continue;
      const bytes = dir.endOffset[id] - dir.startOffset[id];
      verifyBlock(this.#baseAddress + dir.startOffset[id], bytes);
      chunkBytes += bytes;
    }
    const inUse = frames.totalFrames - frames.freeFrames;
    const fail = (what: string) => {
      throw new HeapCorruptionError(0, `Heap corruption in the page-frame layers: ${what}`);
    };
    const mapDifference = this.slabPages.difference(frames);
    if (mapDifference !== null) fail(`slab page map: ${mapDifference}`);
    if (inUse !== slabFrames + this.pageFrames) {
      fail(`${inUse} frames in use, ${slabFrames} in slabs + ${this.pageFrames} in page runs`);
    }
    if (
      chunkBytes + descriptorBytes !== this.blockBytes ||
      dir.count + descriptors !== this.blockCount
    ) {
      fail(`blocks taken ${this.blockCount} (${this.blockBytes} bytes) != chunks and descriptors`);
    }
    let pageSlack = 0;
    for (const run of this.runs()) {
      if (run.kind !== "pages") continue;
      const slack =
        frames.words[frames.entry(frames.refAt(run.address - this.#baseAddress)) + E_PREV];
      if (slack < 0 || slack >= FRAME_BYTES) {
        fail(`page run at ${hex(run.address)} has slack ${slack}`);
      }
      pageSlack += slack;
    }
    if (pageSlack !== this.pageSlackBytes) {
      fail(`page runs hold ${pageSlack} bytes past their requests, counted ${this.pageSlackBytes}`);
    }
  }

  /**
   * A shared heap's Worker, once it holds every lock (class locks, then the
   * heap lock) and before it uses the layers: loads the heap's fields and
   * every cache's (enterHeap, and enterCache's load for each). The fields
   * are this Worker's copy of the state while it holds the locks (as
   * HeapCounters are the block books'); an unshared heap's fields are the
   * state itself, so its hot paths read plain fields.
   */
  enterShared(): void {
    this.enterHeap();
    for (const cache of this.caches) this.#loadCache(cache);
  }

  /**
   * A shared heap's Worker holding every lock, before it releases them: when
   * this hold changed the layers, stores the heap's fields and every cache's
   * and moves their version words on.
   */
  leaveShared(): void {
    if (!this.#dirty) return;
    this.leaveHeap();
    for (const cache of this.caches) this.#storeCache(cache);
    this.#dirty = false;
  }

  /**
   * A shared heap's Worker, once it holds the heap lock: when another Worker
   * changed the heap's fields since this Worker last saw them (the version
   * word S_VERSION moved), copies the state's words into them: the layers'
   * counters, the frames', the chunk directory's and the slab page map's.
   */
  enterHeap(): void {
    const version = Atomics.load(this.#scalars, S_VERSION);
    if (version === this.#seenVersion) return;
    const r = this.#scalars;
    this.pageRuns = r[S_PAGE_RUNS];
    this.pageFrames = r[S_PAGE_FRAMES];
    this.pageSlackBytes = r[S_PAGE_SLACK_BYTES];
    this.blockCount = r[S_BLOCK_COUNT];
    this.blockBytes = r[S_BLOCK_BYTES];
    this.frames.loadShared();
    this.frames.directory.loadShared();
    this.slabPages.loadShared();
    this.#seenVersion = version;
  }

  /**
   * A shared heap's Worker holding the heap lock alone, for a call that
   * touches no slab cache (a block's free, a page run or block for a large
   * request): loads the heap's fields (enterHeap); until leaveHeapOnly, a
   * call that reaches a cache throws EveryLockNeeded before it changes anything.
   */
  enterHeapOnly(): void {
    this.enterHeap();
    this.#heapOnly = true;
  }

  /** Ends enterHeapOnly: stores the heap's fields (leaveHeap). */
  leaveHeapOnly(): void {
    this.#heapOnly = false;
    this.leaveHeap();
    // No cache field changed (the guards above): a later hold of every lock stores nothing.
    this.#dirty = false;
  }

  /**
   * A shared heap's Worker, before it releases the heap lock: stores the
   * heap's fields and, when they changed, moves S_VERSION on (a call refused
   * before any change leaves the words as they were).
   */
  leaveHeap(): void {
    const r = this.#scalars;
    const before = this.#scalarsBefore;
    // A loop, not set(subarray()): no view is made at every release of the heap lock.
    for (let word = 0; word < S_VERSION; word++) before[word] = r[word];
    r[S_PAGE_RUNS] = this.pageRuns;
    r[S_PAGE_FRAMES] = this.pageFrames;
    r[S_PAGE_SLACK_BYTES] = this.pageSlackBytes;
    r[S_BLOCK_COUNT] = this.blockCount;
    r[S_BLOCK_BYTES] = this.blockBytes;
    this.frames.storeShared();
    this.frames.directory.storeShared();
    this.slabPages.storeShared();
    for (let word = 0; word < S_VERSION; word++) {
      if (r[word] === before[word]) continue;
      const version = (this.#seenVersion + 1) & VERSION_MASK;
      Atomics.store(r, S_VERSION, version);
      this.#seenVersion = version;
      return;
    }
  }

  /**
   * A shared heap's Worker, once it holds the class lock of `cache` and no
   * other lock (a Worker cache's refill or drain): loads that cache's fields
   * when another Worker stored them since. Until leaveCache, only this
   * cache's fields are the Worker's; making or giving back a slab takes the
   * heap lock too (`needHeap`, in class -> heap order).
   *
   * @param cache A Worker-cached kmalloc cache.
   * @param needHeap Takes the heap lock and calls enterHeap (once per hold).
   */
  enterCache(cache: SlabCache, needHeap: () => void): void {
    this.#loadCache(cache);
    this.#needHeap = needHeap;
    this.#classHeld = cache;
  }

  /** A shared heap's Worker, before it releases the class lock enterCache took: stores that cache's fields. */
  leaveCache(): void {
    const cache = this.#classHeld!;
    this.#classHeld = null;
    this.#storeCache(cache);
    // What this hold changed is stored (the heap's fields by leaveHeap): a
    // later hold of every lock that changes nothing must store nothing.
    this.#dirty = false;
  }

  #loadCache(cache: SlabCache): void {
    const version = Atomics.load(this.#records[cache.id], C_VERSION);
    if (version === this.#seenCacheVersions[cache.id]) return;
    cache.loadShared();
    this.#seenCacheVersions[cache.id] = version;
  }

  /**
   * Stores `cache`'s fields and, only when they changed, moves its version
   * on: a call refused before any change (a lock timeout on the heap lock in
   * a refill) leaves the record, version word too, as it was.
   */
  #storeCache(cache: SlabCache): void {
    const record = this.#records[cache.id];
    const before = this.#recordBefore;
    before.set(record);
    cache.storeShared();
    for (let word = 0; word < CACHE_RECORD_WORDS; word++) {
      if (record[word] === before[word]) continue;
      const version = (this.#seenCacheVersions[cache.id] + 1) & VERSION_MASK;
      Atomics.store(record, C_VERSION, version);
      this.#seenCacheVersions[cache.id] = version;
      return;
    }
  }

  /**
   * A Worker cache's drain, under the class lock of the object's cache (or
   * every lock): takes back the cached object at `address`, which
   * SharedSlabs.locate found in `cache`'s slab with descriptor word `d`, as
   * its object `index`, and marked live. Its empty slabs stay until trimClassHeld.
   *
   * @throws {DoubleFreeError} / {InvalidFreeError} As SlabCache.free (not an object in use).
   */
  freeWorkerObject(cache: SlabCache, d: number, index: number, address: number): void {
    this.#dirty = true;
    cache.freeIndex(d, index, address - this.#baseAddress, address);
  }

  /**
   * After a drain under the class lock of `cache` alone: gives its empty
   * slabs beyond one back, and free chunks beyond one, taking the heap lock
   * (only then). On a shared heap each cache keeps one empty slab of its own
   * (an unshared heap's caches keep EMPTY_SLABS_KEPT_MAX in all): a cache
   * under its class lock cannot see the others'.
   */
  trimClassHeld(cache: SlabCache): void {
    if (cache.emptySlabs <= 1) return;
    this.#dirty = true;
    this.#needHeap();
    cache.shrink(1);
    this.frames.trim(1);
  }
}
