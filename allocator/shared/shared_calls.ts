/**
 * The calls of a shared heap's Worker: alloc, free and realloc through the
 * Worker cache first and under the block lock otherwise, and the cache's
 * drains at detach and slot reclaim. `PhysicalAllocator` delegates to one of
 * these when its heap is shared, and lends it the general path's operations
 * (`OwnedHeap`), which run only while the block lock is held.
 *
 * @module
 */

import { DoubleFreeError, InvalidAddressError } from "../errors.ts";
import type { BlockWords } from "../heap/block.ts";
import { HEADER_BYTES } from "../heap/layout.ts";
import { hex } from "../memory/physical_memory.ts";
import type { SharedHeapState } from "./shared_heap.ts";
import {
  BIN_DEPTH,
  CACHE_SIZE_MAX,
  REFILL_BLOCKS,
  STATE_CACHED,
  STATE_LIVE,
  STATE_NONE,
  type WorkerCache,
} from "./worker_cache.ts";

/** The general path's operations a shared heap's calls run with the block lock held. */
export interface OwnedHeap {
  /** tryAlloc() on the heap: validates, then carves a block, or 0. */
  tryAllocOwned(sizeBytes: number, alignBytes: number): number;
  /** Frees a used block of the block heap (validated there). */
  freeBlock(address: number): void;
  /** realloc() on the heap. */
  reallocOwned(address: number, sizeBytes: number): number;
  /** Throws AllocatorClosedError or MemoryDetachedError when the heap may not be used. */
  assertOpen(operation: string): void;
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

  /**
   * Wraps a Worker's handle on a shared heap.
   *
   * @param shared The Worker's handle (slot, lock, books).
   * @param owned The general path, run under the lock.
   * @param blocks The block words of the window.
   * @param defaultAlignBytes The heap's default alignment.
   * @param cacheLow The lowest payload address a cache may hold.
   * @param cacheHigh The end of the payload addresses a cache may hold.
   */
  constructor(
    shared: SharedHeapState,
    owned: OwnedHeap,
    blocks: BlockWords,
    defaultAlignBytes: number,
    cacheLow: number,
    cacheHigh: number,
  ) {
    this.#shared = shared;
    this.#owned = owned;
    this.#cache = shared.cache;
    this.#blocks = blocks;
    this.#defaultAlignBytes = defaultAlignBytes;
    this.#cacheLow = cacheLow;
    this.#cacheHigh = cacheHigh;
  }

  /** tryAlloc() of a shared heap: from the Worker cache, else under the block lock. */
  tryAlloc(sizeBytes: number, alignBytes: number): number {
    const shared = this.#shared;
    const cache = this.#cache;
    if (
      cache !== null && alignBytes === this.#defaultAlignBytes && typeof sizeBytes === "number" &&
      sizeBytes > 0 && sizeBytes <= CACHE_SIZE_MAX && (sizeBytes | 0) === sizeBytes &&
      !shared.detached
    ) {
      const cached = cache.pop(sizeBytes);
      if (cached !== 0) return cached;
    }
    shared.enter("allocate");
    try {
      this.#owned.assertOpen("allocate");
      let address = this.#owned.tryAllocOwned(sizeBytes, alignBytes);
      if (address === 0 && cache !== null) {
        // Short of memory: this Worker's cached blocks go back to the heap first
        // (other Workers' caches are theirs to drain).
        cache.drain(shared.slot, 0, BIN_DEPTH, (cached) => this.#owned.freeBlock(cached));
        address = this.#owned.tryAllocOwned(sizeBytes, alignBytes);
      }
      if (address !== 0 && cache !== null) {
        cache.setState(address, STATE_LIVE);
        if (alignBytes === this.#defaultAlignBytes) this.#refill(cache, sizeBytes);
      }
      return address;
    } finally {
      shared.leave();
    }
  }

  /**
   * After a cache miss, under the lock: carves REFILL_BLOCKS - 1 more blocks
   * of the same size into the Worker's cache, so the next allocations of that
   * size take no lock (a batch refill, like SLUB's per-CPU slab refill).
   */
  #refill(cache: WorkerCache, sizeBytes: number): void {
    if (sizeBytes > CACHE_SIZE_MAX || (sizeBytes | 0) !== sizeBytes) return;
    for (let extra = 1; extra < REFILL_BLOCKS; extra++) {
      const address = this.#owned.tryAllocOwned(sizeBytes, this.#defaultAlignBytes);
      if (address === 0) return;
      cache.setState(address, STATE_LIVE);
      if (!cache.push(address, sizeBytes)) {
        this.#owned.freeBlock(address);
        cache.setState(address, STATE_NONE);
        return;
      }
    }
  }

  /** free() of a shared heap: into the Worker cache, else under the block lock. */
  free(address: number): void {
    const shared = this.#shared;
    const cache = this.#cache;
    if (cache !== null && !shared.detached && this.#cacheFree(cache, address)) return;
    shared.enter("free");
    try {
      this.#owned.assertOpen("free");
      this.refuseCached(address, "free");
      this.#owned.freeBlock(address);
      cache?.setState(address, STATE_NONE);
    } finally {
      shared.leave();
    }
  }

  /**
   * Puts a live small payload into this Worker's cache without the lock;
   * false when it is not one (the locked path then frees it or reports why).
   * The header is read, never written: a torn read (a neighbour's edit under
   * the lock) fails the check word and sends the call to the locked path.
   */
  #cacheFree(cache: WorkerCache, address: number): boolean {
    if (
      typeof address !== "number" || !(address >= this.#cacheLow && address < this.#cacheHigh) ||
      address % this.#defaultAlignBytes !== 0
    ) return false;
    const state = cache.state(address);
    if (state === STATE_CACHED) {
      throw new DoubleFreeError(
        `Cannot free address ${hex(address)}: the block is already free (in a Worker cache)`,
      );
    }
    const block = address - HEADER_BYTES;
    const blocks = this.#blocks;
    if (state !== STATE_LIVE || !blocks.headerValid(block) || blocks.isFree(block)) return false;
    const sizeBytes = blocks.size(block) - HEADER_BYTES - blocks.slack(block);
    if (sizeBytes > CACHE_SIZE_MAX || sizeBytes <= 0) return false;
    if (cache.push(address, sizeBytes)) return true;
    // The bin is full: half of it goes back to the heap in one hold of the lock.
    this.locked("free", () => {
      cache.drain(this.#shared.slot, sizeBytes, BIN_DEPTH / 2, (a) => this.#owned.freeBlock(a));
    });
    return cache.push(address, sizeBytes);
  }

  /** Refuses an address sitting in a Worker cache (freed already), under the lock. */
  refuseCached(address: number, operation: string): void {
    const cache = this.#cache;
    if (
      cache !== null && typeof address === "number" && address >= this.#cacheLow &&
      address < this.#cacheHigh && cache.state(address) === STATE_CACHED
    ) {
      const message = `Cannot ${operation} address ${
        hex(address)
      }: the block is free (in a Worker cache)`;
      throw operation === "free" || operation === "reallocate"
        ? new DoubleFreeError(message)
        : new InvalidAddressError(message);
    }
  }

  /** realloc() of a shared heap: under the block lock (a move re-enters it). */
  realloc(address: number, sizeBytes: number): number {
    const shared = this.#shared;
    shared.enter("reallocate");
    try {
      this.#owned.assertOpen("reallocate");
      this.refuseCached(address, "reallocate");
      const resized = this.#owned.reallocOwned(address, sizeBytes);
      this.#cache?.setState(resized, STATE_LIVE);
      return resized;
    } finally {
      shared.leave();
    }
  }

  /** Runs `body` with the block lock held. */
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

  /** Drains this Worker's cache into the heap, then gives the slot back. */
  detach(): void {
    const shared = this.#shared;
    const cache = this.#cache;
    if (cache !== null && !shared.detached) {
      this.locked("detach", () => {
        cache.drain(shared.slot, 0, BIN_DEPTH, (address) => this.#owned.freeBlock(address));
      });
    }
    shared.detach();
  }

  /** Drains the cache of slot `slot` (a Worker that ended) into the heap and frees the slot. */
  reclaimSlot(slot: number): void {
    const shared = this.#shared;
    shared.checkReclaim(slot);
    const cache = this.#cache;
    if (cache !== null) {
      this.locked("reclaim a slot", () => {
        cache.drain(slot, 0, BIN_DEPTH, (address) => this.#owned.freeBlock(address));
        cache.resetSlot(slot);
      });
    }
    shared.releaseSlot(slot);
  }
}
