/**
 * The calls of a shared heap's Worker: alloc, free and realloc through the
 * Worker cache first (slab objects of the kmalloc classes, blocks of the
 * larger classes, page runs of orders 0 to PAGE_ORDER_MAX) and under the
 * heap's locks otherwise, and the cache's
 * drains at detach and slot reclaim. `PhysicalAllocator` delegates to one of
 * these when its heap is shared, and lends it the general path's operations
 * (`OwnedHeap`), which run only while every lock is held. A Worker cache's
 * refill or drain of one slab class holds that class's lock (and the heap
 * lock only to make or give back a slab); of one block class or page order,
 * the heap lock alone (shared_heap.ts draws the locks and their order).
 *
 * @module
 */

import {
  DoubleFreeError,
  HeapCorruptionError,
  InvalidAddressError,
  LockTimeoutError,
} from "../errors.ts";
import type { SlabCache } from "../slab/slab_cache.ts";
import { EveryLockNeeded, type LayeredHeap } from "../slab/layered_heap.ts";
import { KMALLOC_CLASS_BY_STEP, KMALLOC_MAX_BYTES } from "../slab/kmalloc.ts";
import { SharedSlabs, SLAB_LOCKED } from "./shared_slabs.ts";
import { SharedPages } from "./shared_pages.ts";
import { FRAME_BYTES } from "../frames/frame_table.ts";
import type { BlockWords } from "../heap/block.ts";
import { GRANULE_BYTES, HEADER_BYTES } from "../heap/layout.ts";
import { hex } from "../memory/physical_memory.ts";
import type { SharedHeapState } from "./shared_heap.ts";
import {
  BIN_ENTRIES_MAX,
  CACHE_SIZE_MAX,
  classCapacity,
  classHolding,
  classOf,
  PAGE_BIN_FIRST,
  PAGE_ORDER_MAX,
  refillBlocks,
  RUN_ALIGN_BYTES,
  STATE_CACHED,
  STATE_LIVE,
  STATE_NONE,
  type WorkerCache,
} from "./worker_cache.ts";

/**
 * How long reclaimSlot waits between revoking a slot's handle and draining
 * its cache: far longer than any call a Worker cache serves without a lock
 * (microseconds), so one the revoked Worker had begun has ended.
 */
const RECLAIM_QUIET_MS = 20;

/** The general path's operations a shared heap's calls run with every lock held. */
export interface OwnedHeap {
  /** tryAlloc() on the heap: validates, then serves it from the layers or blocks, or 0. */
  tryAllocOwned(sizeBytes: number, alignBytes: number): number;
  /** A block of the block heap for a valid request (never a slab object or page run), or 0. */
  tryAllocBlock(sizeBytes: number, alignBytes: number): number;
  /** True when the page-frame and slab layers own `address` (it lies in a chunk of frames). */
  inLayers(address: number): boolean;
  /** Frees a used block of the block heap (validated there). */
  freeBlock(address: number): void;
  /** free() on the heap: a slab object, a page run or a block (validated there). */
  freeOwned(address: number): void;
  /**
   * True when freeing the used blocks at `addresses` would surely let
   * `tryAllocOwned(sizeBytes, alignBytes)` succeed (after it returned 0).
   */
  blocksWouldServe(addresses: readonly number[], sizeBytes: number, alignBytes: number): boolean;
  /** realloc() on the heap. */
  reallocOwned(address: number, sizeBytes: number): number;
  /**
   * realloc() of an address no chunk of the layers holds, under the heap
   * lock alone: in place, else moved with tryAllocOwned (throwing
   * EveryLockNeeded, before any change, when that reaches a slab cache) and
   * the old block freed directly; 0 when no memory was found (nothing changed).
   */
  reallocBlockHeld(address: number, sizeBytes: number): number;
  /**
   * Splits the used block at payload `address`, just allocated, into `count`
   * used blocks of `pieceBytes` each holding `sizeBytes` (BlockEdits.splitUsed).
   */
  splitRun(address: number, pieceBytes: number, count: number, sizeBytes: number): void;
  /** Throws AllocatorClosedError or MemoryDetachedError when the heap may not be used. */
  assertOpen(operation: string): void;
  /** The payload addresses of every used block of the block heap (the layers' own blocks too). */
  usedBlockPayloads(): number[];
}

/** One Worker's calls on a shared heap. */
export class SharedCalls {
  readonly #shared: SharedHeapState;
  readonly #owned: OwnedHeap;
  readonly #cache: WorkerCache | null;
  readonly #blocks: BlockWords;
  readonly #defaultAlignBytes: number;
  /** Payload addresses a Worker cache may hold: [low, high). */
  readonly #cacheLow: number;
  readonly #cacheHigh: number;
  /** The window's bytes (a realloc through the cache copies the payload). */
  readonly #window: Uint8Array;
  /** The page-frame and slab layers, or null when the heap has none. */
  readonly #layers: LayeredHeap | null;
  /** Their kmalloc objects as the Worker cache sees them, or null (no layers, or no cache). */
  readonly #slabs: SharedSlabs | null;
  /** Their page runs as the Worker cache sees them, or null (no layers, or no cache). */
  readonly #pages: SharedPages | null;
  /** Whether the Worker of a slab's owner slot left the heap (its slabs are anybody's). */
  readonly #ownerGone: (slot: number) => boolean;
  /** Drains one cached block, slab object or page run of bin `bin` into the heap (every lock held). */
  readonly #drainOne: (address: number, bin: number) => void;
  /**
   * Drains one cached slab object into its slab, under its class lock (or
   * every lock), or one cached block or page run under the heap lock (or every lock).
   */
  readonly #drainFine: (address: number, bin: number) => void;

  /**
   * Wraps a Worker's handle on a shared heap.
   *
   * @param shared The Worker's handle (slot, lock, books).
   * @param owned The general path, run under every lock.
   * @param blocks The block words of the window.
   * @param defaultAlignBytes The heap's default alignment.
   * @param cacheLow The lowest payload address a cache may hold.
   * @param cacheHigh The end of the payload addresses a cache may hold.
   * @param layers The page-frame and slab layers, or null when the heap has none.
   */
  constructor(
    shared: SharedHeapState,
    owned: OwnedHeap,
    blocks: BlockWords,
    defaultAlignBytes: number,
    cacheLow: number,
    cacheHigh: number,
    layers: LayeredHeap | null,
  ) {
    this.#layers = layers;
    this.#ownerGone = (slot) => !shared.slotAttached(slot);
    this.#slabs = layers !== null && shared.cache !== null ? new SharedSlabs(layers) : null;
    this.#pages = layers !== null && shared.cache !== null ? new SharedPages(layers.frames) : null;
    const slabClassEnd = shared.cache?.slabClassEnd ?? 0;
    // Hidden slack a locked call clears (a slab object's size recorded in full) leaves this slot's count.
    if (shared.cache !== null) {
      const cache = shared.cache;
      layers?.setHiddenCleared((bytes) => cache.addSlabHidden(-bytes));
    }
    this.#drainOne = (address, bin) => {
      if (bin >= PAGE_BIN_FIRST) return this.#freeCachedPages(address);
      if (bin < slabClassEnd) {
        // Back to its slab: no longer cached (the locked free then finds it live).
        if (this.#slabs!.locate(address) < 0 || !this.#slabs!.foundCached()) {
          throw new HeapCorruptionError(
            address,
            `Heap corruption at ${
              hex(address)
            }: a Worker cache holds a slab object that is not cached`,
          );
        }
        this.#slabs!.markLive(0);
        this.#owned.freeOwned(address);
      } else {
        this.#owned.freeBlock(address);
      }
    };
    this.#drainFine = (address, bin) => {
      if (bin >= PAGE_BIN_FIRST) return this.#freeCachedPages(address);
      if (bin >= slabClassEnd) return this.#owned.freeBlock(address);
      const slabs = this.#slabs!;
      // Re-validated under the lock: a cached object's page map entries and bits do not change.
      if (slabs.locate(address) < 0 || !slabs.foundCached()) {
        throw new HeapCorruptionError(
          address,
          `Heap corruption at ${
            hex(address)
          }: a Worker cache holds a slab object that is not cached`,
        );
      }
      slabs.markLive(0);
      this.#layers!.freeWorkerObject(
        slabs.foundCache!,
        slabs.foundDescriptor,
        slabs.foundIndex,
        address,
      );
    };
    this.#shared = shared;
    this.#owned = owned;
    this.#cache = shared.cache;
    this.#blocks = blocks;
    this.#defaultAlignBytes = defaultAlignBytes;
    this.#cacheLow = cacheLow;
    this.#cacheHigh = cacheHigh;
    const words = blocks.words;
    this.#window = new Uint8Array(words.buffer, words.byteOffset, words.byteLength);
  }

  /** tryAlloc() of a shared heap: from the Worker cache, else under the heap's locks. */
  tryAlloc(sizeBytes: number, alignBytes: number): number {
    const cache = this.#cache;
    if (
      cache !== null && alignBytes === this.#defaultAlignBytes && typeof sizeBytes === "number" &&
      sizeBytes > 0 && sizeBytes <= CACHE_SIZE_MAX && (sizeBytes | 0) === sizeBytes &&
      !this.#shared.detached
    ) {
      const cls = classOf(sizeBytes);
      if (cls < cache.slabClassEnd) return this.#slabAlloc(cache, cls, sizeBytes);
      const cached = cache.pop(cls, sizeBytes);
      if (cached !== 0) return cached;
      return this.#allocMiss(cache, cls, sizeBytes);
    }
    if (cache !== null && alignBytes === FRAME_BYTES && this.#pages !== null) {
      const order = pageOrderOf(sizeBytes);
      if (order >= 0 && !this.#shared.detached) return this.#pagesAlloc(cache, order);
    }
    return this.#allocLocked(sizeBytes, alignBytes);
  }

  /**
   * A page run of `order` from the Worker cache, else a batch of them taken
   * from the frames under the heap lock alone (Linux's per-CPU page lists);
   * when the frames have none, the general path under the locks.
   */
  #pagesAlloc(cache: WorkerCache, order: number): number {
    const address = cache.popEntry(PAGE_BIN_FIRST + order);
    if (address === 0) return this.#pagesMiss(cache, order);
    // Bins are in the heap's memory: what one held is verified before it is
    // handed out, without the lock when the directory names the chunk, else
    // under the heap lock (a slot other chunks share or are changing).
    if (cache.state(address) !== STATE_CACHED || this.#cachedPageOrder(address) !== order) {
      throw new HeapCorruptionError(
        address,
        `Heap corruption at ${
          hex(address)
        }: a Worker cache held an entry that is not a cached page run of order ${order}`,
      );
    }
    cache.markPagesLive(address);
    return address;
  }

  /**
   * The order of the live page run at `address` as SharedPages.orderAt
   * tells it: read without the lock, and when that cannot place the address,
   * under the heap lock from the layers' own tables (the directory scanned
   * when several chunks share a slot); -1 when it is none.
   */
  #cachedPageOrder(address: number): number {
    const order = this.#pages!.orderAt(address);
    if (order >= 0) return order;
    return this.#heapLocked("allocate", () => {
      const locked = this.#layers!.wholePageRunOrder(address);
      return locked <= PAGE_ORDER_MAX ? locked : -1;
    });
  }

  /**
   * Runs `body` holding the heap lock alone with the layers' heap fields
   * loaded (enterHeapOnly): for calls on frames, chunks and blocks that
   * reach no slab cache.
   */
  #heapLocked<T>(operation: string, body: () => T): T {
    const took = this.#shared.enterHeapOnly(operation);
    try {
      this.#owned.assertOpen(operation);
      return body();
    } finally {
      this.#shared.leaveFine(took);
    }
  }

  /**
   * A page-bin miss: the caller's run and refillBlocks(bin) - 1 more into
   * the (empty) bin, under the heap lock alone (frames and chunks are its);
   * the general path when the frames cannot serve the first.
   */
  #pagesMiss(cache: WorkerCache, order: number): number {
    const layers = this.#layers!;
    const first = this.#heapLocked("allocate", () => {
      const run = layers.allocPages(1 << order);
      // The batch takes free frames only: the frames grow for the caller's run alone.
      for (let extra = refillBlocks(PAGE_BIN_FIRST + order) - 1; run !== 0 && extra > 0; extra--) {
        if (!layers.frames.hasFreeBlock(1 << order)) break;
        const address = layers.allocPages(1 << order);
        if (address === 0) break;
        cache.pushPages(address, order);
      }
      return run;
    });
    return first !== 0 ? first : this.#allocLocked(FRAME_BYTES << order, FRAME_BYTES);
  }

  /**
   * Frees a page run a Worker cache held (its state byte cleared), under
   * the heap lock or every lock.
   *
   * @throws {HeapCorruptionError} If it is not a live page run: the bin was overwritten.
   */
  #freeCachedPages(address: number): void {
    if (!this.#layers!.freePageRun(address)) {
      throw new HeapCorruptionError(
        address,
        `Heap corruption at ${hex(address)}: a Worker cache held a page run that is not live`,
      );
    }
  }

  /**
   * True when the frame table says, read without the lock, that `address`
   * is the head of a live page run a Worker cache takes (free() then frees
   * it without the lock, or reports it as already cached).
   */
  takesPageRun(address: number): boolean {
    return this.#pages !== null && this.#cache !== null && !this.#shared.detached &&
      this.#pages.orderAt(address) >= 0;
  }

  /**
   * Puts the live page run at `address` into this Worker's cache without
   * the lock when it is one the cache takes (orders 0 to PAGE_ORDER_MAX, no
   * slack bytes), draining a batch first when its bin is full; false
   * otherwise (the locked path then frees it or reports why).
   */
  #pagesFree(cache: WorkerCache, pages: SharedPages, address: number): boolean {
    const order = pages.orderAt(address);
    if (order < 0) return false;
    const bin = PAGE_BIN_FIRST + order;
    if (!cache.hasRoom(bin)) {
      this.#heapLocked("free", () => {
        cache.drain(this.#shared.slot, bin, refillBlocks(bin), this.#drainFine);
      });
    }
    return cache.pushPages(address, order);
  }

  /** A slab object of slab class `cls` from the Worker cache, else a refill under its class lock. */
  #slabAlloc(cache: WorkerCache, cls: number, sizeBytes: number): number {
    const object = cache.popEntry(cls);
    if (object === 0) return this.#slabMiss(cache, cls, sizeBytes);
    const slabs = this.#slabs!;
    if (slabs.locate(object) !== cls || !slabs.foundCached()) {
      throw new HeapCorruptionError(
        object,
        `Heap corruption at ${
          hex(object)
        }: a Worker cache held an object that is not a cached slab object`,
      );
    }
    const hidden = classCapacity(cls) - sizeBytes;
    slabs.markLive(hidden);
    cache.addSlabHidden(hidden);
    return object;
  }

  /**
   * A slab-class miss: the caller's object and a batch more of its kmalloc
   * class into the bin, taken from the class's slabs (SLUB's per-CPU
   * refill) under the class's lock alone (the heap lock too only when a
   * slab is made); the objects stay in use to their slabs. When no slab can
   * be had, the general path under every lock (the layers' reserves, else a
   * block).
   */
  #slabMiss(cache: WorkerCache, cls: number, sizeBytes: number): number {
    const slabCache = this.#layers!.caches[KMALLOC_CLASS_BY_STEP[classCapacity(cls) >> 3]];
    const took = this.#shared.enterClass("allocate", slabCache);
    let first = 0;
    try {
      this.#owned.assertOpen("allocate");
      first = this.#refillSlabs(cache, cls, sizeBytes, slabCache);
    } finally {
      this.#shared.leaveFine(took);
    }
    if (first !== 0) return first;
    return this.locked("allocate", () => {
      // Another Worker may have freed objects since: the refill once more, then any layer.
      const retried = this.#refillSlabs(cache, cls, sizeBytes, slabCache);
      if (retried !== 0) return retried;
      const address = this.#owned.tryAllocOwned(sizeBytes, this.#defaultAlignBytes);
      if (address !== 0 && !this.#owned.inLayers(address)) cache.setLive(address, 0);
      return this.#retryWithoutSlabsAndPages(address, sizeBytes, this.#defaultAlignBytes);
    });
  }

  /**
   * The refill of #slabMiss, its lock held: the caller's object (0 when no
   * slab can be had) and up to refillBlocks(cls) - 1 more into the bin. A
   * lock timeout on the heap lock (making a slab for the batch) ends the
   * batch: the objects taken so far are consistent, and the caller's call
   * succeeds. So does a forged free link met by the batch (the slab keeps
   * it, nothing written): the caller's object is sound, and the refill whose
   * first object meets that link reports it, having changed nothing.
   */
  #refillSlabs(cache: WorkerCache, cls: number, sizeBytes: number, slabCache: SlabCache): number {
    const layers = this.#layers!;
    const slabs = this.#slabs!;
    const capacity = classCapacity(cls);
    const slot = this.#shared.slot;
    const first = layers.cacheAllocForWorker(slabCache, slot, this.#ownerGone);
    if (first === 0) return 0;
    slabs.found(slabCache);
    slabs.markLive(capacity - sizeBytes);
    cache.addSlabHidden(capacity - sizeBytes);
    try {
      for (let extra = refillBlocks(cls) - 1; extra > 0; extra--) {
        const object = layers.cacheAllocForWorker(slabCache, slot, this.#ownerGone);
        if (object === 0) break;
        slabs.found(slabCache);
        slabs.markCached();
        if (!cache.pushEntry(object, cls)) {
          slabs.markLive(0);
          layers.freeWorkerObject(slabCache, slabs.foundDescriptor, slabs.foundIndex, object);
          break;
        }
      }
    } catch (error) {
      if (!(error instanceof LockTimeoutError || error instanceof HeapCorruptionError)) throw error;
    }
    return first;
  }

  /**
   * A cache miss: carves the caller's block and a batch more of its class
   * into the bin (like SLUB's per-CPU slab refill), so the next allocations
   * of the class take no lock. The carving holds the heap lock alone (it
   * touches no slab cache); when no free block holds the class, the rest
   * (draining this Worker's cache, the layers' reserves) holds every lock.
   */
  #allocMiss(cache: WorkerCache, cls: number, sizeBytes: number): number {
    const shared = this.#shared;
    const took = shared.enterBlocks("allocate");
    try {
      this.#owned.assertOpen("allocate");
      let address = this.#carveRun(cache, cls, sizeBytes);
      if (address !== 0) return address;
      address = this.#carveClass(cache, cls, sizeBytes);
      if (address !== 0) {
        this.#refillBlockByBlock(cache, cls);
        return address;
      }
    } finally {
      shared.leaveFine(took);
    }
    shared.enter("allocate");
    try {
      this.#owned.assertOpen("allocate");
      let address = this.#carveRun(cache, cls, sizeBytes);
      if (address !== 0) return address;
      address = this.#carveClass(cache, cls, sizeBytes);
      if (address === 0 && this.#cacheWouldServe(cache, sizeBytes, this.#defaultAlignBytes)) {
        // Short of memory: this Worker's cached blocks go back to the heap first
        // (other Workers' caches are theirs to drain).
        cache.drain(shared.slot, -1, BIN_ENTRIES_MAX, this.#drainOne);
        address = this.#carveClass(cache, cls, sizeBytes);
      }
      if (address !== 0) {
        this.#refillBlockByBlock(cache, cls);
        return address;
      }
      // Last, any layer (a class block is not to be had): the layers' reserves may serve it.
      address = this.#owned.tryAllocOwned(sizeBytes, this.#defaultAlignBytes);
      if (address !== 0 && !this.#owned.inLayers(address)) cache.setLive(address, 0);
      return this.#retryWithoutSlabsAndPages(address, sizeBytes, this.#defaultAlignBytes);
    } finally {
      shared.leave();
    }
  }

  /**
   * The caller's block and refillBlocks(cls) - 1 more of class `cls` into
   * its (empty) bin, carved in one search as one run and split into blocks
   * side by side, the run aligned to RUN_ALIGN_BYTES: the run's state bytes
   * fill one cache line of the state map that no other Worker's blocks
   * write (exact when the heap's base address is a multiple of it, as
   * fromBuffer's default is). 0 when no free block holds the run, or when
   * the heap's default alignment is above a granule (the pieces would not
   * keep it).
   */
  #carveRun(cache: WorkerCache, cls: number, sizeBytes: number): number {
    if (this.#defaultAlignBytes !== GRANULE_BYTES) return 0;
    const capacity = classCapacity(cls);
    const count = refillBlocks(cls);
    const pieceBytes = capacity + HEADER_BYTES;
    const run = this.#owned.tryAllocBlock(count * pieceBytes - HEADER_BYTES, RUN_ALIGN_BYTES);
    if (run === 0) return 0;
    this.#owned.splitRun(run, pieceBytes, count, capacity);
    cache.setLive(run, capacity - sizeBytes);
    for (let index = 1; index < count; index++) {
      const address = run + index * pieceBytes;
      cache.setLive(address, 0);
      // The bin was empty at the miss; a full one would lose the block, so it goes back.
      if (!cache.push(address, cls, 0)) {
        cache.clearLive(address);
        this.#owned.freeBlock(address);
      }
    }
    return run;
  }

  /**
   * A live block of class `cls` for `sizeBytes`, the capacity recorded in
   * its header and the rest kept as hidden slack; a block of exactly
   * `sizeBytes` when the capacity does not fit; 0 when neither does.
   */
  #carveClass(cache: WorkerCache, cls: number, sizeBytes: number): number {
    const capacity = classCapacity(cls);
    let address = this.#owned.tryAllocBlock(capacity, this.#defaultAlignBytes);
    if (address !== 0) {
      cache.setLive(address, capacity - sizeBytes);
      return address;
    }
    address = this.#owned.tryAllocBlock(sizeBytes, this.#defaultAlignBytes);
    if (address !== 0) cache.setLive(address, 0);
    return address;
  }

  /** Carves up to refillBlocks(cls) - 1 blocks of class `cls` one by one into its (empty) bin. */
  #refillBlockByBlock(cache: WorkerCache, cls: number): void {
    const capacity = classCapacity(cls);
    for (let extra = refillBlocks(cls) - 1; extra > 0; extra--) {
      const address = this.#owned.tryAllocBlock(capacity, this.#defaultAlignBytes);
      if (address === 0) return;
      cache.setLive(address, 0);
      if (!cache.push(address, cls, 0)) {
        cache.clearLive(address);
        this.#owned.freeBlock(address);
        return;
      }
    }
  }

  /**
   * True when draining this Worker's cache would surely serve a request the
   * heap just refused: only then is it drained, so a failed allocation
   * changes nothing (the cached blocks stay where they were).
   */
  #cacheWouldServe(cache: WorkerCache, sizeBytes: number, alignBytes: number): boolean {
    const cached = cache.cachedBy(this.#shared.slot);
    return cached.length > 0 && this.#owned.blocksWouldServe(cached, sizeBytes, alignBytes);
  }

  /**
   * After an allocation found no memory (`address` 0): this Worker's cached
   * slab objects go back to their slabs, and its cached page runs to the
   * frames, and the allocation is tried once more (the layers then give
   * emptied slabs and chunks back when that serves it). Unlike cached
   * blocks, whether they would serve is not known in advance (a slab may
   * hold other objects, a chunk other runs), so they go back even when the
   * retry fails (only this Worker's cache changes).
   */
  #retryWithoutSlabsAndPages(address: number, sizeBytes: number, alignBytes: number): number {
    const cache = this.#cache;
    const slot = this.#shared.slot;
    if (
      address !== 0 || cache === null ||
      cache.slabObjectsIn(slot) === 0 && cache.pageRunsIn(slot) === 0
    ) {
      return address;
    }
    cache.drainSlabs(slot, this.#drainOne);
    for (let order = 0; order <= PAGE_ORDER_MAX; order++) {
      cache.drain(slot, PAGE_BIN_FIRST + order, BIN_ENTRIES_MAX, this.#drainOne);
    }
    const retried = this.#owned.tryAllocOwned(sizeBytes, alignBytes);
    if (retried !== 0 && !this.#owned.inLayers(retried)) cache.setLive(retried, 0);
    return retried;
  }

  /**
   * An allocation no cache serves (large, aligned, or an invalid request):
   * one above the kmalloc classes first under the heap lock alone (a page
   * run or a block: no slab cache), then, when that finds no memory (the
   * reserves, the Worker cache's drains) or for anything else, under every lock.
   */
  #allocLocked(sizeBytes: number, alignBytes: number): number {
    const shared = this.#shared;
    const cache = this.#cache;
    if (this.#layers !== null && typeof sizeBytes === "number" && sizeBytes > KMALLOC_MAX_BYTES) {
      const took = shared.enterHeapOnly("allocate");
      try {
        this.#owned.assertOpen("allocate");
        const address = this.#owned.tryAllocOwned(sizeBytes, alignBytes);
        if (address !== 0) {
          if (cache !== null && !this.#owned.inLayers(address)) cache.setLive(address, 0);
          return address;
        }
      } catch (error) {
        if (!(error instanceof EveryLockNeeded)) throw error;
      } finally {
        shared.leaveFine(took);
      }
    }
    shared.enter("allocate");
    try {
      this.#owned.assertOpen("allocate");
      let address = this.#owned.tryAllocOwned(sizeBytes, alignBytes);
      if (address === 0 && cache !== null && this.#cacheWouldServe(cache, sizeBytes, alignBytes)) {
        cache.drain(shared.slot, -1, BIN_ENTRIES_MAX, this.#drainOne);
        address = this.#owned.tryAllocOwned(sizeBytes, alignBytes);
      }
      address = this.#retryWithoutSlabsAndPages(address, sizeBytes, alignBytes);
      // Only blocks have state bytes: slab objects and page runs are told from the frame tables.
      if (address !== 0 && cache !== null && !this.#owned.inLayers(address)) {
        cache.setLive(address, 0);
      }
      return address;
    } finally {
      shared.leave();
    }
  }

  /** free() of a shared heap: into the Worker cache, else under every lock. */
  free(address: number): void {
    const shared = this.#shared;
    const cache = this.#cache;
    if (cache !== null && !shared.detached) {
      if (this.#slabs !== null && this.#slabFree(cache, this.#slabs, address)) return;
      if (this.#cacheFree(cache, address)) return;
      if (this.#pages !== null && this.#pagesFree(cache, this.#pages, address)) return;
    }
    // A block no layer owns, or a page run, is freed under the heap lock alone (no slab cache).
    if (this.#layers !== null && this.#freeBlockHeapOnly(address)) return;
    shared.enter("free");
    try {
      this.#owned.assertOpen("free");
      this.refuseCached(address, "free");
      this.#owned.freeOwned(address);
      cache?.clearLive(address);
    } finally {
      shared.leave();
    }
  }

  /**
   * free() of an address no chunk of the layers holds (a block, or a bad
   * address the block heap reports) or of a page run, under the heap lock
   * alone; false when the layers own it otherwise (a slab object, or an
   * address they report: the caller frees it under every lock).
   */
  #freeBlockHeapOnly(address: number): boolean {
    const shared = this.#shared;
    const took = shared.enterHeapOnly("free");
    try {
      this.#owned.assertOpen("free");
      // A page run is the frames' (the heap lock's); anything else of the layers needs every lock.
      if (this.#owned.inLayers(address)) return this.#layers!.freePageRun(address);
      this.refuseCached(address, "free");
      this.#owned.freeOwned(address);
      this.#cache?.clearLive(address);
      return true;
    } finally {
      shared.leaveFine(took);
    }
  }

  /**
   * Puts a live slab object into this Worker's cache without the lock; false
   * when it is not one the cache takes (the locked path then frees it or
   * reports why).
   *
   * @throws {DoubleFreeError} If the object sits in a Worker cache.
   */
  #slabFree(cache: WorkerCache, slabs: SharedSlabs, address: number): boolean {
    const cls = slabs.locate(address);
    if (cls < 0) return false;
    if (slabs.foundCached()) {
      throw new DoubleFreeError(
        `Cannot free address ${hex(address)}: the object is already free (in a Worker cache)`,
      );
    }
    // A size recorded under the lock (a slack byte) is freed there: the bin holds whole objects.
    if (slabs.foundSlack() !== 0) return false;
    if (!cache.hasRoom(cls)) {
      // The bin is full: a batch of it goes back to its slabs in one hold of the class lock.
      this.#drainSlabClass(cache, cls, slabs.foundCache!);
      if (slabs.locate(address) !== cls) return false;
    }
    cache.addSlabHidden(-slabs.markCached());
    cache.pushEntry(address, cls);
    return true;
  }

  /**
   * Gives a batch of this Worker's bin of slab class `cls` back to the slabs
   * of `slabCache`, under its class lock alone; the heap lock too only when
   * the cache then holds more than one empty slab (trimClassHeld). A lock
   * timeout on that heap lock leaves the empty slab for a later trim: the
   * drain is done, and the call that asked for it goes on.
   */
  #drainSlabClass(cache: WorkerCache, cls: number, slabCache: SlabCache): void {
    const shared = this.#shared;
    const took = shared.enterClass("free", slabCache);
    try {
      this.#owned.assertOpen("free");
      cache.drain(shared.slot, cls, refillBlocks(cls), this.#drainFine);
      try {
        this.#layers!.trimClassHeld(slabCache);
      } catch (error) {
        if (!(error instanceof LockTimeoutError)) throw error;
      }
    } finally {
      shared.leaveFine(took);
    }
  }

  /**
   * The size class of the live payload at `address` when a Worker cache may
   * hold it (its header records a class capacity), else -1: not a payload,
   * or one the locked path frees or reports. The header is read, never
   * written: a torn read (a neighbour's edit under the lock) fails the check
   * word and sends the call to the locked path.
   *
   * @throws {DoubleFreeError} If the payload sits in a Worker cache (`operation` names the call).
   */
  #cachedClass(cache: WorkerCache, address: number, operation: string): number {
    if (
      typeof address !== "number" || !(address >= this.#cacheLow && address < this.#cacheHigh) ||
      address % this.#defaultAlignBytes !== 0
    ) return -1;
    const state = cache.state(address);
    if (state === STATE_CACHED) {
      // An address just past a cached entry's start shares its state byte: the locked path reports it.
      if (!this.#cachedAt(address)) return -1;
      throw new DoubleFreeError(
        `Cannot ${operation} address ${hex(address)}: it is already free (in a Worker cache)`,
      );
    }
    const block = address - HEADER_BYTES;
    const blocks = this.#blocks;
    if (state === STATE_NONE || !blocks.headerValid(block) || blocks.isFree(block)) return -1;
    const cls = classHolding(blocks.size(block) - HEADER_BYTES - blocks.slack(block));
    // A block of a slab class's size (served by blocks when no slab could be had) is freed under the lock.
    return cls < cache.slabClassEnd ? -1 : cls;
  }

  /**
   * Puts a live payload of a size class into this Worker's cache without the
   * lock; false when it is not one (the locked path then frees it or reports
   * why).
   */
  #cacheFree(cache: WorkerCache, address: number): boolean {
    const cls = this.#cachedClass(cache, address, "free");
    if (cls < 0) return false;
    const hidden = cache.hiddenBytes(address);
    if (cache.push(address, cls, hidden)) return true;
    // The bin is full: a batch of it goes back to the heap in one hold of the heap lock alone.
    const shared = this.#shared;
    const took = shared.enterBlocks("free");
    try {
      this.#owned.assertOpen("free");
      cache.drain(shared.slot, cls, refillBlocks(cls), this.#drainFine);
    } finally {
      shared.leaveFine(took);
    }
    return cache.push(address, cls, hidden);
  }

  /**
   * True when the state byte of `address` says cached (255) and `address`
   * is the cached entry itself: one state byte covers 32 window bytes, and
   * only a cached block's payload (its header just before it) or a cached
   * page run's first frame (page-aligned) starts there.
   */
  #cachedAt(address: number): boolean {
    return this.#cache!.state(address) === STATE_CACHED &&
      (address % FRAME_BYTES === 0 || this.#blocks.headerValid(address - HEADER_BYTES));
  }

  /** Refuses an address sitting in a Worker cache (freed already), under the lock. */
  refuseCached(address: number, operation: string): void {
    const cache = this.#cache;
    if (
      cache !== null && typeof address === "number" && address >= this.#cacheLow &&
      address < this.#cacheHigh && this.#cachedAt(address)
    ) {
      const message = `Cannot ${operation} address ${hex(address)}: it is free (in a Worker cache)`;
      throw operation === "free" || operation === "reallocate"
        ? new DoubleFreeError(message)
        : new InvalidAddressError(message);
    }
  }

  /**
   * The size asked for of the live payload at `address`, read without the
   * lock; -1 when the lock-free read does not apply (no Worker cache, this
   * Worker detached, not a live payload the state map knows, a torn header
   * read): the locked path then answers or reports why. The size and slack
   * words of a live block change only by its holder's own calls; a
   * neighbour's edit under the lock rewrites only its flags and check word.
   */
  livePayloadBytes(address: number): number {
    const cache = this.#cache;
    const slabs = this.#slabs;
    if (slabs !== null && !this.#shared.detached) {
      const cls = slabs.locate(address);
      if (cls >= 0) {
        if (slabs.foundCached()) return -1;
        return classCapacity(cls) - slabs.foundSlack() - slabs.foundHidden();
      }
      if (cls === SLAB_LOCKED) return -1;
    }
    if (
      cache === null || this.#shared.detached || typeof address !== "number" ||
      !(address >= this.#cacheLow && address < this.#cacheHigh) ||
      address % this.#defaultAlignBytes !== 0
    ) return -1;
    const state = cache.state(address);
    const block = address - HEADER_BYTES;
    const blocks = this.#blocks;
    if (
      state === STATE_NONE || state === STATE_CACHED || !blocks.headerValid(block) ||
      blocks.isFree(block)
    ) return -1;
    return blocks.size(block) - HEADER_BYTES - blocks.slack(block) - (state - STATE_LIVE);
  }

  /** Hidden slack of the live payload at `address`: what its header records beyond the size asked for. */
  hiddenBytes(address: number): number {
    const cache = this.#cache;
    if (
      cache === null || typeof address !== "number" || !(address >= this.#cacheLow) ||
      !(address < this.#cacheHigh)
    ) return 0;
    return cache.hiddenBytes(address);
  }

  /**
   * realloc() of a shared heap: a payload of a size class resized to a size
   * class moves through the Worker cache (in place within its class) with
   * no lock of its own, and so does a slab object of a class moved to any
   * size (the new payload's alloc takes the locks it needs); a block's
   * realloc tries the heap lock alone next; anything else runs under every lock.
   */
  realloc(address: number, sizeBytes: number): number {
    const cache = this.#cache;
    if (
      cache !== null && typeof sizeBytes === "number" && sizeBytes > 0 &&
      (sizeBytes | 0) === sizeBytes && !this.#shared.detached
    ) {
      const resized = this.#cacheRealloc(cache, address, sizeBytes);
      if (resized !== 0) return resized;
    }
    // A page run is the layers' (every lock): the frame table tells one without the lock.
    if (this.#pages === null || this.#pages.orderAt(address) < 0) {
      const resized = this.#reallocBlockHeapOnly(address, sizeBytes);
      if (resized !== 0) return resized;
    }
    return this.#reallocLocked(address, sizeBytes);
  }

  /**
   * realloc() of a block under the heap lock alone: in place, or moved to a
   * block or page run (a size above the kmalloc classes), it touches no slab
   * cache. 0, having changed nothing, when the layers own the address (a
   * slab object or page run), when the move needs a slab object (the call
   * that reaches a slab cache throws EveryLockNeeded before it changes
   * anything), or when no memory was found (the reserves and Worker caches
   * are given back under every lock).
   */
  #reallocBlockHeapOnly(address: number, sizeBytes: number): number {
    const shared = this.#shared;
    const took = shared.enterHeapOnly("reallocate");
    try {
      this.#owned.assertOpen("reallocate");
      if (this.#owned.inLayers(address)) return 0;
      this.refuseCached(address, "reallocate");
      const resized = this.#owned.reallocBlockHeld(address, sizeBytes);
      const cache = this.#cache;
      if (resized !== 0 && cache !== null) {
        // Resized in place, its header records the new size; moved, the old block is free.
        cache.clearLive(address);
        if (!this.#owned.inLayers(resized)) cache.setLive(resized, 0);
      }
      return resized;
    } catch (error) {
      if (error instanceof EveryLockNeeded) return 0;
      throw error;
    } finally {
      shared.leaveFine(took);
    }
  }

  /** realloc() of a slab object through the cache; 0 when it does not apply (the locked path then runs). */
  #slabRealloc(cache: WorkerCache, slabs: SharedSlabs, address: number, sizeBytes: number): number {
    const cls = slabs.locate(address);
    if (cls < 0) return 0;
    if (slabs.foundCached()) {
      throw new DoubleFreeError(
        `Cannot reallocate address ${hex(address)}: the object is free (in a Worker cache)`,
      );
    }
    if (slabs.foundSlack() !== 0) return 0;
    const oldHidden = slabs.foundHidden();
    const capacity = classCapacity(cls);
    if (sizeBytes <= CACHE_SIZE_MAX && classOf(sizeBytes) === cls) {
      // Within its class the object stays: only the hidden slack changes.
      slabs.markLive(capacity - sizeBytes);
      cache.addSlabHidden(capacity - sizeBytes - oldHidden);
      return address;
    }
    // The old object's free must not need the lock once the new one is taken.
    if (!cache.hasRoom(cls)) return 0;
    const moved = this.tryAlloc(sizeBytes, this.#defaultAlignBytes);
    if (moved === 0) return 0;
    const base = this.#blocks.baseAddress;
    const from = address - base;
    this.#window.copyWithin(moved - base, from, from + Math.min(capacity - oldHidden, sizeBytes));
    this.free(address);
    return moved;
  }

  /**
   * realloc() through the cache, to a positive int32 size (a slab object's
   * to any, a block's to CACHE_SIZE_MAX); 0 when it does not apply (the
   * locked path then runs).
   */
  #cacheRealloc(cache: WorkerCache, address: number, sizeBytes: number): number {
    if (this.#slabs !== null) {
      const moved = this.#slabRealloc(cache, this.#slabs, address, sizeBytes);
      if (moved !== 0) return moved;
    }
    if (sizeBytes > CACHE_SIZE_MAX) return 0;
    const cls = this.#cachedClass(cache, address, "reallocate");
    if (cls < 0) return 0;
    const target = classOf(sizeBytes);
    if (target === cls) {
      // Within its class the block stays: only the hidden slack changes.
      cache.clearLive(address);
      cache.setLive(address, classCapacity(cls) - sizeBytes);
      return address;
    }
    // The old block's free must not need the lock once the new block is taken:
    // a lock timeout there would leave both live (the heap changed by a call that threw).
    if (!cache.hasRoom(cls)) return 0;
    const moved = this.tryAlloc(sizeBytes, this.#defaultAlignBytes);
    if (moved === 0) return 0;
    const base = this.#blocks.baseAddress;
    const from = address - base;
    const keptBytes = Math.min(classCapacity(cls) - cache.hiddenBytes(address), sizeBytes);
    this.#window.copyWithin(moved - base, from, from + keptBytes);
    this.free(address);
    return moved;
  }

  /** realloc() under every lock (a move re-enters it through the facade's alloc and free). */
  #reallocLocked(address: number, sizeBytes: number): number {
    const shared = this.#shared;
    shared.enter("reallocate");
    try {
      this.#owned.assertOpen("reallocate");
      this.refuseCached(address, "reallocate");
      const resized = this.#owned.reallocOwned(address, sizeBytes);
      // Resized in place: its header records the new size, so no slack stays hidden.
      if (resized === address && this.#cache !== null && !this.#owned.inLayers(address)) {
        this.#cache.clearLive(address);
        this.#cache.setLive(address, 0);
      }
      return resized;
    } finally {
      shared.leave();
    }
  }

  /** Runs `body` with every lock held (class locks ascending, then the heap lock). */
  locked<T>(operation: string, body: () => T): T {
    const shared = this.#shared;
    shared.enter(operation);
    try {
      this.#owned.assertOpen(operation);
      return body();
    } finally {
      shared.leave();
    }
  }

  /**
   * Drains this Worker's cache into the heap (every lock held: trim()).
   *
   * @returns True when it held anything.
   */
  drainOwnCache(): boolean {
    const cache = this.#cache;
    if (cache === null || this.#shared.detached) return false;
    const held = cache.addressesIn(this.#shared.slot).size > 0;
    cache.drain(this.#shared.slot, -1, BIN_ENTRIES_MAX, this.#drainOne);
    return held;
  }

  /** Drains this Worker's cache into the heap, then gives the slot back. */
  detach(): void {
    const shared = this.#shared;
    const cache = this.#cache;
    if (cache !== null && !shared.detached) {
      this.locked("detach", () => {
        cache.drain(shared.slot, -1, BIN_ENTRIES_MAX, this.#drainOne);
      });
    }
    shared.detach();
  }

  /** Drains the cache of slot `slot` (a Worker that ended) into the heap and frees the slot. */
  reclaimSlot(slot: number): void {
    const shared = this.#shared;
    shared.checkReclaim(slot);
    const cache = this.#cache;
    // terminate() lets a Worker busy in a loop run on until its next turn of
    // the event loop (seconds, in Deno 2.9). Its handle is revoked first (its
    // next call is refused), and its cache drained only once a call it had
    // begun must have ended, so no two Workers ever use one cache.
    shared.revokeSlot(slot);
    if (cache !== null) {
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, RECLAIM_QUIET_MS);
    }
    if (cache !== null) {
      this.locked("reclaim a slot", () => {
        cache.drain(slot, -1, BIN_ENTRIES_MAX, this.#drainOne);
        cache.resetSlot(slot);
      });
    }
    shared.releaseSlot(slot);
    // Only with this Worker the last attached is no other inside a lock-free call.
    if (cache !== null && shared.attachedWorkers() === 1) {
      this.locked("reclaim a slot", () => this.#repairCaches(cache));
    }
  }

  /**
   * With every lock held and this Worker the only one attached: gives back
   * what a Worker that ended inside a lock-free cache call (between a bin
   * and a mark: a pop, a push) left marked cached in no bin, a slab object
   * or a block, and sets the hidden slack counts from the bytes. Nothing
   * else can move meanwhile; without this, that object would stay lost
   * (its frees refused as double frees) and check() would count it.
   */
  #repairCaches(cache: WorkerCache): void {
    const inBins = cache.addressesIn(this.#shared.slot);
    const base = this.#blocks.baseAddress;
    let slabHidden = 0;
    if (this.#layers !== null && this.#slabs !== null) {
      for (const slabCache of this.#layers.caches) {
        if (!slabCache.workerCached) continue;
        const marks = slabCache.workerMarks();
        slabHidden += marks.hiddenBytes;
        for (const offset of marks.cachedOffsets) {
          // Bin 0 is a slab class's: the object goes back to its slab.
          if (!inBins.has(base + offset)) this.#drainOne(base + offset, 0);
        }
      }
    }
    let blockHidden = 0;
    const orphans: number[] = [];
    for (const payload of this.#owned.usedBlockPayloads()) {
      if (!(payload >= this.#cacheLow && payload < this.#cacheHigh)) continue;
      // A chunk's payload is its first frame, whose state byte a cached page run may hold.
      if (this.#owned.inLayers(payload)) continue;
      const state = cache.state(payload);
      if (state === STATE_CACHED && !inBins.has(payload)) orphans.push(payload);
      else if (state !== STATE_CACHED && state !== STATE_NONE) blockHidden += state - 1;
    }
    for (const payload of orphans) {
      cache.clearLive(payload);
      this.#owned.freeBlock(payload);
    }
    // Page runs marked cached in no bin (a run's state byte is 255 only while a bin holds it).
    if (this.#layers !== null) {
      const runs = [...this.#layers.runs()].filter((run) =>
        run.kind === "pages" && cache.state(run.address) === STATE_CACHED &&
        !inBins.has(run.address)
      );
      for (const run of runs) {
        cache.markPagesLive(run.address);
        this.#freeCachedPages(run.address);
      }
    }
    cache.rebaseHidden(blockHidden, slabHidden);
  }
}

/** The order k of a request of exactly FRAME_BYTES << k bytes (k up to PAGE_ORDER_MAX), else -1. */
function pageOrderOf(sizeBytes: number): number {
  for (let order = 0; order <= PAGE_ORDER_MAX; order++) {
    if (sizeBytes === FRAME_BYTES << order) return order;
  }
  return -1;
}
