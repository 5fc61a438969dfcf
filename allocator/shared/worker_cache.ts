/**
 * Per-Worker caches of freed small blocks (magazines, like SLUB's per-CPU
 * slabs), in the shared memory, so that the common alloc and free take no
 * lock and touch no atomic.
 *
 * A cached block stays a used block of the block heap: its header is not
 * written while it sits in a cache (a neighbour's free may rewrite the
 * header's flags and check word under the block lock at any time), so a
 * cache bin holds blocks of exactly one requested size and hands them out
 * for that size only. What a Worker cache changes lives beside the heap:
 *
 * ```text
 * per slot (SLOT_CACHE_BYTES):  +0 i32 cached blocks  +8 f64 cached bytes (requested)
 *                               +16 per bin (sizes 1..CACHE_SIZE_MAX): i32 count, u32 x BIN_DEPTH entries
 *                                   (entry = (address - base) / 8)
 * state map: one byte per 32 bytes of the window, at (payload - base) >> 5
 *            (two payloads are at least 40 bytes apart, so they never share a byte):
 *            0 not a live payload, 1 live (handed out), 2 cached (freed into a Worker cache)
 * ```
 *
 * A miss takes the lock and carves REFILL_BLOCKS blocks of its size at once
 * (one for the caller, the rest into the bin); a full bin gives half of
 * itself back to the heap in one hold of the lock.
 *
 * Only the Worker owning a cache writes it, and only the Worker holding a
 * block (live or cached in its cache) writes the block's state byte, with
 * plain stores: a block passes between Workers only through the program's
 * own synchronisation (postMessage, Atomics), which orders those stores.
 * Double frees are told from the state byte (2: cached), not guessed; a
 * double free racing with the first free in another Worker, with no
 * synchronisation between them, is a data race in the program and may go
 * unseen (as with SLUB's per-CPU freelists).
 *
 * @module
 */

/** Requested sizes up to this many bytes are cached. */
export const CACHE_SIZE_MAX = 256;
/** Blocks one bin holds; a full bin drains half of itself under the block lock. */
export const BIN_DEPTH = 8;
/** Blocks one cache miss carves under the lock: the one asked for, the rest into the bin. */
export const REFILL_BLOCKS = 4;
/** Bytes of one bin: its count and its entries. */
const BIN_BYTES = 4 + 4 * BIN_DEPTH;
/** Bytes of a slot's cache: totals then bins for sizes 1..CACHE_SIZE_MAX. */
export const SLOT_CACHE_BYTES = 16 + CACHE_SIZE_MAX * BIN_BYTES;
/** Window bytes per state byte. */
export const STATE_SHIFT = 5;

/** State byte: not a live payload (free, never handed out, or not a payload). */
export const STATE_NONE = 0;
/** State byte: a live payload. */
export const STATE_LIVE = 1;
/** State byte: freed into a Worker cache. */
export const STATE_CACHED = 2;

/** Bytes of the state map of a window of `windowBytes`. */
export function stateMapBytes(windowBytes: number): number {
  return Math.ceil(windowBytes / (1 << STATE_SHIFT));
}

/** One Worker's cache, and read access to every slot's totals. */
export class WorkerCache {
  readonly #i32: Int32Array;
  readonly #u32: Uint32Array;
  readonly #f64: Float64Array;
  readonly #states: Uint8Array;
  readonly #base: number;
  /** Word index of this slot's cache. */
  readonly #own: number;
  /** Word index of slot 1's cache. */
  readonly #first: number;
  readonly #slotCount: number;

  /**
   * Wraps the caches.
   *
   * @param buffer The shared buffer.
   * @param cachesOffsetBytes Buffer offset of slot 1's cache (a multiple of 8).
   * @param slot This Worker's slot.
   * @param slotCount Slots of the heap.
   * @param stateMap The state map bytes.
   * @param baseAddress The address of the window's byte 0.
   */
  constructor(
    buffer: SharedArrayBuffer,
    cachesOffsetBytes: number,
    slot: number,
    slotCount: number,
    stateMap: Uint8Array,
    baseAddress: number,
  ) {
    this.#i32 = new Int32Array(buffer, 0, buffer.byteLength >>> 2);
    this.#u32 = new Uint32Array(buffer, 0, buffer.byteLength >>> 2);
    this.#f64 = new Float64Array(buffer, 0, buffer.byteLength >>> 3);
    this.#states = stateMap;
    this.#base = baseAddress;
    this.#first = cachesOffsetBytes >>> 2;
    this.#own = this.#slotIndex(slot);
    this.#slotCount = slotCount;
  }

  #slotIndex(slot: number): number {
    return this.#first + (slot - 1) * (SLOT_CACHE_BYTES >>> 2);
  }

  /** The state byte of the payload at `address` (an address inside the window). */
  state(address: number): number {
    return this.#states[(address - this.#base) >>> STATE_SHIFT];
  }

  /** Sets the state byte of the payload at `address`. */
  setState(address: number, state: number): void {
    this.#states[(address - this.#base) >>> STATE_SHIFT] = state;
  }

  /** A cached block for exactly `sizeBytes` (1..CACHE_SIZE_MAX), made live; 0 on a miss. */
  pop(sizeBytes: number): number {
    const bin = this.#own + 4 + (sizeBytes - 1) * (BIN_BYTES >>> 2);
    const count = this.#i32[bin];
    if (count === 0) return 0;
    this.#i32[bin] = count - 1;
    const address = this.#base + this.#u32[bin + count] * 8;
    this.#states[(address - this.#base) >>> STATE_SHIFT] = STATE_LIVE;
    this.#i32[this.#own]--;
    this.#f64[(this.#own >>> 1) + 1] -= sizeBytes;
    return address;
  }

  /**
   * Caches the live payload at `address` holding `sizeBytes`; false when its
   * bin is full (the caller drains it and tries again).
   */
  push(address: number, sizeBytes: number): boolean {
    const bin = this.#own + 4 + (sizeBytes - 1) * (BIN_BYTES >>> 2);
    const count = this.#i32[bin];
    if (count === BIN_DEPTH) return false;
    this.#u32[bin + count + 1] = (address - this.#base) / 8;
    this.#i32[bin] = count + 1;
    this.#states[(address - this.#base) >>> STATE_SHIFT] = STATE_CACHED;
    this.#i32[this.#own]++;
    this.#f64[(this.#own >>> 1) + 1] += sizeBytes;
    return true;
  }

  /**
   * Takes up to `limit` blocks out of slot `slot`'s bin for `sizeBytes`
   * (all bins when `sizeBytes` is 0) and hands each to `free` with its
   * state byte cleared. The caller holds the block lock, and `slot` is its
   * own or one no Worker uses any more.
   */
  drain(slot: number, sizeBytes: number, limit: number, free: (address: number) => void): void {
    const own = this.#slotIndex(slot);
    const first = sizeBytes === 0 ? 1 : sizeBytes;
    const last = sizeBytes === 0 ? CACHE_SIZE_MAX : sizeBytes;
    for (let size = first; size <= last; size++) {
      const bin = own + 4 + (size - 1) * (BIN_BYTES >>> 2);
      const count = Math.min(this.#i32[bin], BIN_DEPTH);
      const keep = Math.max(0, count - limit);
      for (let entry = count; entry > keep; entry--) {
        const address = this.#base + this.#u32[bin + entry] * 8;
        this.#states[(address - this.#base) >>> STATE_SHIFT] = STATE_NONE;
        this.#i32[own]--;
        this.#f64[(own >>> 1) + 1] -= size;
        this.#i32[bin] = entry - 1;
        free(address);
      }
    }
  }

  /** Blocks and requested bytes cached by every slot (a snapshot; exact once Workers are idle). */
  totals(): { blocks: number; bytes: number } {
    let blocks = 0;
    let bytes = 0;
    for (let slot = 1; slot <= this.#slotCount; slot++) {
      const index = this.#slotIndex(slot);
      blocks += this.#i32[index];
      bytes += this.#f64[(index >>> 1) + 1];
    }
    return { blocks, bytes };
  }

  /** Clears every slot's cache and the state map (the creator, before publishing). */
  reset(stateMapBytes: number): void {
    this.#i32.fill(0, this.#first, this.#first + this.#slotCount * (SLOT_CACHE_BYTES >>> 2));
    this.#states.fill(0, 0, stateMapBytes);
  }

  /** Clears slot `slot`'s cache after a drain (its totals are zero by then). */
  resetSlot(slot: number): void {
    const index = this.#slotIndex(slot);
    this.#i32.fill(0, index, index + (SLOT_CACHE_BYTES >>> 2));
  }
}
