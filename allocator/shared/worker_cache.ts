/**
 * Per-Worker caches of freed small blocks (magazines, like SLUB's per-CPU
 * slabs), in the shared memory, so that the common alloc and free take no
 * lock and touch no atomic.
 *
 * Bins are keyed by size class, like kmalloc's caches: a class is a payload
 * capacity (24 to 128 bytes in steps of 8, to 256 in steps of 16, to 512 in
 * steps of 32, to 1024 in steps of 64, to 4096 in steps of 128: a page, the
 * largest block a program allocates often enough to be worth a bin), and a
 * request is served by the smallest class that holds it. On a heap with the
 * page-frame and slab layers, the classes up to 256 bytes are its kmalloc
 * classes and their bins hold slab objects, whose state is their slab's
 * (shared_slabs.ts); the rest hold blocks. A cached block stays a used block of the
 * block heap whose header records the class capacity as its requested size
 * (the header is not written while the block sits in a cache, or by anyone
 * but the lock holder: a neighbour's free rewrites its flags and check word
 * under the block lock at any time). What the caller asked for below the
 * capacity (the hidden slack) is kept in the block's state byte instead, so
 * `sizeOf` and `bytes` still answer the size asked for, and every slot
 * counts the hidden slack of the blocks it handed out and freed, for
 * `stats()` to move from used bytes to overhead.
 *
 * ```text
 * per slot (SLOT_CACHE_BYTES, a multiple of 64: no two Workers write one cache line)
 *   +0 f64 hidden slack bytes of blocks (the slack this slot's pops and frees added and took away)
 *   +8 f64 hidden slack bytes of slab objects (the same for the slab classes)
 *   +64 per class, in class order: i32 count, u32 x binDepth(class) entries
 *       (entry = (address - base) / 8; binDepth = twice the class's batch)
 *   (cached blocks and bytes are not counted as they change: totals() sums the bins)
 * state map: one byte per 32 bytes of the window, at (payload - base) >> 5
 *            (two payloads are at least 40 bytes apart, so they never share a byte):
 *            0 not a live payload, 255 cached (freed into a Worker cache),
 *            1 + s live (handed out) with s bytes of hidden slack (0 to 127)
 * ```
 *
 * Page runs: past the size classes, one bin per order from 0 to
 * PAGE_ORDER_MAX holds page runs of exactly that order (allocPages(order),
 * or alloc(4096 << order, 4096)), like Linux's per-CPU page lists. A cached
 * run stays in use to the frames (its frame table entry says so); its state
 * byte (at the run's address) says 255 while it sits in a bin and 0
 * otherwise: a live run is told from the frame table, never from a state
 * byte (shared_pages.ts).
 *
 * A miss takes the lock and carves a batch of its class at once (the
 * caller's block, and `refillBlocks(class)` more into the bin, as one run of
 * blocks side by side); a bin that reaches its depth (twice the batch) gives
 * a batch back to the heap in one hold of the lock. A batch's blocks take
 * about REFILL_BYTES (headers included), so a run covers about one cache
 * line of the state map (64 bytes = 2 KiB of window) and large classes keep
 * fewer blocks.
 *
 * Only the Worker owning a cache writes it, and only the Worker holding a
 * block (live or cached in its cache) writes the block's state byte, with
 * plain stores: a block passes between Workers only through the program's
 * own synchronisation (postMessage, Atomics), which orders those stores.
 * Double frees are told from the state byte (255: cached), not guessed; a
 * double free racing with the first free in another Worker, with no
 * synchronisation between them, is a data race in the program and may go
 * unseen (as with SLUB's per-CPU freelists).
 *
 * @module
 */

import { FRAME_BYTES } from "../frames/frame_table.ts";

/** Requested sizes up to this many bytes are cached (the largest class). */
export const CACHE_SIZE_MAX = 4096;
/** Blocks of one batch at most (the smallest class's). */
export const REFILL_BLOCKS_MAX = 48;
/** Block bytes one refill or drain batch aims at: fewer blocks for larger classes. */
export const REFILL_BYTES = 2048;
/** More blocks than any bin holds (a drain limit meaning "all"). */
export const BIN_ENTRIES_MAX = 2 * REFILL_BLOCKS_MAX;

/** Payload capacity of each size class, smallest first (every one a granule multiple). */
export const CLASS_CAPACITIES: readonly number[] = classCapacities();
/** Size classes. */
export const CLASS_COUNT = CLASS_CAPACITIES.length;

function classCapacities(): number[] {
  const capacities: number[] = [];
  // The smallest block (40 bytes) holds 24 payload bytes; steps double with the size.
  for (let c = 24; c <= 128; c += 8) capacities.push(c);
  for (let c = 144; c <= 256; c += 16) capacities.push(c);
  for (let c = 288; c <= 512; c += 32) capacities.push(c);
  for (let c = 576; c <= 1024; c += 64) capacities.push(c);
  for (let c = 1152; c <= CACHE_SIZE_MAX; c += 128) capacities.push(c);
  return capacities;
}

/** The class of a request of n bytes (1..CACHE_SIZE_MAX), at index (n + 7) >> 3. */
const CLASS_OF_GRANULES: Uint8Array = (() => {
  const table = new Uint8Array((CACHE_SIZE_MAX >>> 3) + 1);
  let cls = 0;
  for (let granules = 1; granules < table.length; granules++) {
    while (CLASS_CAPACITIES[cls] < granules * 8) cls++;
    table[granules] = cls;
  }
  return table;
})();

/** The largest order of page runs a Worker cache holds (16 KiB). */
export const PAGE_ORDER_MAX = 2;
/** The bin of page runs of order 0; order k's is PAGE_BIN_FIRST + k. */
export const PAGE_BIN_FIRST = CLASS_COUNT;
/** Bins of one slot: the size classes', then one per page order. */
export const BIN_COUNT = CLASS_COUNT + PAGE_ORDER_MAX + 1;
/**
 * Page runs one refill takes (besides the caller's) and one drain gives
 * back, by order: a bin holds twice that, 32 KiB of order 0, 32 KiB of
 * order 1 and 64 KiB of order 2 at most.
 */
const PAGE_REFILL_OF = [4, 2, 2];

/** Capacity of class `cls`, as a typed array for the hot paths. */
const CAPACITY_OF: Uint16Array = Uint16Array.from(CLASS_CAPACITIES);

/** Blocks one refill carves (besides the caller's) and one drain gives back, per bin. */
const REFILL_OF: Uint8Array = Uint8Array.from([
  ...CLASS_CAPACITIES.map((capacity) =>
    Math.max(2, Math.min(REFILL_BLOCKS_MAX, Math.floor(REFILL_BYTES / (capacity + 16))))
  ),
  ...PAGE_REFILL_OF,
]);

/** Words of a slot's totals line (64 bytes). */
const TOTALS_WORDS = 16;
/** Word offset of each bin in a slot's cache: its count, then 2 x batch entries. */
const BIN_AT: Uint16Array = (() => {
  const offsets = new Uint16Array(BIN_COUNT + 1);
  offsets[0] = TOTALS_WORDS;
  for (let bin = 0; bin < BIN_COUNT; bin++) {
    offsets[bin + 1] = offsets[bin] + 1 + 2 * REFILL_OF[bin];
  }
  return offsets;
})();
/** Bytes of a slot's cache: totals, then bins, padded to a cache line. */
export const SLOT_CACHE_BYTES = Math.ceil((4 * BIN_AT[BIN_COUNT]) / 64) * 64;
/** Window bytes per state byte. */
export const STATE_SHIFT = 5;
/** Window bytes whose state bytes fill one 64-byte cache line: a refill run starts at a multiple. */
export const RUN_ALIGN_BYTES = 64 << STATE_SHIFT;

/** State byte: not a live payload (free, never handed out, or not a payload). */
export const STATE_NONE = 0;
/** State byte: a live payload with no hidden slack; 1 + s: live with s bytes of hidden slack. */
export const STATE_LIVE = 1;
/** State byte: freed into a Worker cache. */
export const STATE_CACHED = 255;

/** Bytes of the state map of a window of `windowBytes`. */
export function stateMapBytes(windowBytes: number): number {
  return Math.ceil(windowBytes / (1 << STATE_SHIFT));
}

/** The class serving a request of `sizeBytes` (an integer from 1 to CACHE_SIZE_MAX). */
export function classOf(sizeBytes: number): number {
  return CLASS_OF_GRANULES[(sizeBytes + 7) >>> 3];
}

/** The class whose capacity is exactly `payloadBytes`, or -1 (a block a cache may not hold). */
export function classHolding(payloadBytes: number): number {
  if (payloadBytes < 1 || payloadBytes > CACHE_SIZE_MAX || (payloadBytes & 7) !== 0) return -1;
  const cls = CLASS_OF_GRANULES[payloadBytes >>> 3];
  return CAPACITY_OF[cls] === payloadBytes ? cls : -1;
}

/** Capacity of class `cls`. */
export function classCapacity(cls: number): number {
  return CAPACITY_OF[cls];
}

/** Blocks (or page runs) a refill of bin `cls` adds to it, and a drain of it when full gives back. */
export function refillBlocks(cls: number): number {
  return REFILL_OF[cls];
}

/** What every slot's cache holds (a snapshot; exact once Workers are idle). */
export interface CacheTotals {
  /** Blocks in block-class bins. */
  readonly blocks: number;
  /** Their payload capacities. */
  readonly bytes: number;
  /** Hidden slack of live blocks. */
  readonly hiddenBytes: number;
  /** Slab objects in slab-class bins (heaps with layers). */
  readonly slabObjects: number;
  /** Their object bytes. */
  readonly slabBytes: number;
  /** Hidden slack of live slab objects handed out by Worker caches. */
  readonly slabHiddenBytes: number;
  /** Page runs in page bins. */
  readonly pageRuns: number;
  /** Their bytes. */
  readonly pageBytes: number;
}

/** One Worker's cache, and read access to every slot's totals. */
export class WorkerCache {
  readonly #i32: Int32Array;
  readonly #u32: Uint32Array;
  readonly #f64: Float64Array;
  readonly #states: Uint8Array;
  readonly #base: number;
  /** Index in #f64 of this slot's hidden slack bytes. */
  readonly #ownHidden: number;

  /** Word index of this slot's cache (its bins are at BIN_AT offsets). */
  readonly #bins: number;
  /** Word index of slot 1's cache. */
  readonly #first: number;
  readonly #slotCount: number;
  /**
   * Classes below this one are slab classes: their bins hold kmalloc slab
   * objects (a heap with the page-frame and slab layers), not blocks; 0 when
   * every class is a block class.
   */
  readonly slabClassEnd: number;

  /**
   * Wraps the caches.
   *
   * @param buffer The shared buffer.
   * @param cachesOffsetBytes Buffer offset of slot 1's cache (a multiple of 64).
   * @param slot This Worker's slot.
   * @param slotCount Slots of the heap.
   * @param stateMap The state map bytes.
   * @param baseAddress The address of the window's byte 0.
   * @param slabBytesMax Classes of capacities up to this hold slab objects (0: none).
   */
  constructor(
    buffer: SharedArrayBuffer,
    cachesOffsetBytes: number,
    slot: number,
    slotCount: number,
    stateMap: Uint8Array,
    baseAddress: number,
    slabBytesMax = 0,
  ) {
    this.slabClassEnd = slabBytesMax === 0 ? 0 : classOf(slabBytesMax) + 1;
    this.#i32 = new Int32Array(buffer, 0, buffer.byteLength >>> 2);
    this.#u32 = new Uint32Array(buffer, 0, buffer.byteLength >>> 2);
    this.#f64 = new Float64Array(buffer, 0, buffer.byteLength >>> 3);
    this.#states = stateMap;
    this.#base = baseAddress;
    this.#first = cachesOffsetBytes >>> 2;
    const own = this.#slotIndex(slot);
    this.#ownHidden = own >>> 1;
    this.#bins = own;
    this.#slotCount = slotCount;
  }

  #slotIndex(slot: number): number {
    return this.#first + (slot - 1) * (SLOT_CACHE_BYTES >>> 2);
  }

  /** The state byte of the payload at `address` (an address inside the window). */
  state(address: number): number {
    return this.#states[(address - this.#base) >>> STATE_SHIFT];
  }

  /**
   * Marks the payload at `address` live with `hiddenBytes` of hidden slack
   * (0 for a block whose header records the size asked for), and counts the
   * slack in this slot.
   */
  setLive(address: number, hiddenBytes: number): void {
    this.#states[(address - this.#base) >>> STATE_SHIFT] = STATE_LIVE + hiddenBytes;
    this.#f64[this.#ownHidden] += hiddenBytes;
  }

  /**
   * Marks the live payload at `address` not live (freed to the heap, or its
   * header rewritten), taking its hidden slack off this slot's count.
   */
  clearLive(address: number): void {
    const at = (address - this.#base) >>> STATE_SHIFT;
    const state = this.#states[at];
    if (state !== STATE_CACHED && state !== STATE_NONE) this.#f64[this.#ownHidden] -= state - 1;
    this.#states[at] = STATE_NONE;
  }

  /** Hidden slack of the live payload at `address` (0 when it has none or is not live). */
  hiddenBytes(address: number): number {
    const state = this.#states[(address - this.#base) >>> STATE_SHIFT];
    return state === STATE_CACHED || state === STATE_NONE ? 0 : state - 1;
  }

  /**
   * A cached block of class `cls` made live for a request of `sizeBytes`;
   * 0 when the bin is empty.
   */
  pop(cls: number, sizeBytes: number): number {
    const bin = this.#bins + BIN_AT[cls];
    const count = this.#i32[bin];
    if (count === 0) return 0;
    this.#i32[bin] = count - 1;
    const offset = this.#u32[bin + count] * 8;
    const hidden = CAPACITY_OF[cls] - sizeBytes;
    this.#states[offset >>> STATE_SHIFT] = STATE_LIVE + hidden;
    this.#f64[this.#ownHidden] += hidden;
    return this.#base + offset;
  }

  /**
   * Caches the live payload at `address`, whose header records the capacity
   * of class `cls` and whose state byte `hiddenBytes` of hidden slack; false
   * when its bin is full (the caller drains it and tries again).
   */
  push(address: number, cls: number, hiddenBytes: number): boolean {
    const bin = this.#bins + BIN_AT[cls];
    const count = this.#i32[bin];
    if (count >= 2 * REFILL_OF[cls]) return false;
    const offset = address - this.#base;
    this.#u32[bin + count + 1] = offset / 8;
    this.#i32[bin] = count + 1;
    this.#states[offset >>> STATE_SHIFT] = STATE_CACHED;
    this.#f64[this.#ownHidden] -= hiddenBytes;
    return true;
  }

  /**
   * The last entry of this Worker's bin `cls`, taken out of it, its state
   * left to the caller: a slab object of a slab class (its state is its
   * slab's: the caller marks it live), or a page run of bin PAGE_BIN_FIRST +
   * order (the caller verifies it, then markPagesLive); 0 when the bin is empty.
   */
  popEntry(cls: number): number {
    const bin = this.#bins + BIN_AT[cls];
    const count = this.#i32[bin];
    if (count === 0) return 0;
    this.#i32[bin] = count - 1;
    return this.#base + this.#u32[bin + count] * 8;
  }

  /**
   * Puts `address` into this Worker's bin `cls`, its state left to the
   * caller (a slab object it marked cached); false when the bin is full.
   */
  pushEntry(address: number, cls: number): boolean {
    const bin = this.#bins + BIN_AT[cls];
    const count = this.#i32[bin];
    if (count >= 2 * REFILL_OF[cls]) return false;
    this.#u32[bin + count + 1] = (address - this.#base) / 8;
    this.#i32[bin] = count + 1;
    return true;
  }

  /** Marks the page run at `address`, taken out of a bin, live (its state byte 0). */
  markPagesLive(address: number): void {
    this.#states[(address - this.#base) >>> STATE_SHIFT] = STATE_NONE;
  }

  /** Caches the live page run of order `order` at `address`; false when its bin is full. */
  pushPages(address: number, order: number): boolean {
    if (!this.pushEntry(address, PAGE_BIN_FIRST + order)) return false;
    this.#states[(address - this.#base) >>> STATE_SHIFT] = STATE_CACHED;
    return true;
  }

  /** Every slot's cached page runs: address and order. */
  cachedPages(): { address: number; order: number }[] {
    const runs: { address: number; order: number }[] = [];
    for (let slot = 1; slot <= this.#slotCount; slot++) {
      const own = this.#slotIndex(slot);
      for (let order = 0; order <= PAGE_ORDER_MAX; order++) {
        const bin = own + BIN_AT[PAGE_BIN_FIRST + order];
        const count = Math.min(this.#i32[bin], 2 * REFILL_OF[PAGE_BIN_FIRST + order]);
        for (let entry = 1; entry <= count; entry++) {
          runs.push({ address: this.#base + this.#u32[bin + entry] * 8, order });
        }
      }
    }
    return runs;
  }

  /** Page runs slot `slot`'s bins hold. */
  pageRunsIn(slot: number): number {
    const own = this.#slotIndex(slot);
    let runs = 0;
    for (let bin = PAGE_BIN_FIRST; bin < BIN_COUNT; bin++) runs += this.#i32[own + BIN_AT[bin]];
    return runs;
  }

  /** Counts `bytes` more (or fewer) hidden slack of live slab objects in this slot. */
  addSlabHidden(bytes: number): void {
    this.#f64[this.#ownHidden + 1] += bytes;
  }

  /** Whether bin `cls` (a class's, or PAGE_BIN_FIRST + order) takes one more entry without a drain. */
  hasRoom(cls: number): boolean {
    return this.#i32[this.#bins + BIN_AT[cls]] < 2 * REFILL_OF[cls];
  }

  /**
   * Takes up to `limit` entries out of slot `slot`'s bin `cls` (every bin
   * when `cls` is -1) and hands each to `free` with its bin, its state byte
   * cleared (a slab object's state is its slab's: bins below slabClassEnd).
   * The caller holds the locks of what it drains (every lock; a slab class's
   * class lock; the heap lock for a block class or page order), and `slot`
   * is its own or one no Worker uses any more.
   */
  drain(
    slot: number,
    cls: number,
    limit: number,
    free: (address: number, bin: number) => void,
  ): void {
    const own = this.#slotIndex(slot);
    const first = cls === -1 ? 0 : cls;
    const last = cls === -1 ? BIN_COUNT - 1 : cls;
    for (let c = first; c <= last; c++) {
      const bin = own + BIN_AT[c];
      const count = Math.min(this.#i32[bin], 2 * REFILL_OF[c]);
      const keep = Math.max(0, count - limit);
      for (let entry = count; entry > keep; entry--) {
        const address = this.#base + this.#u32[bin + entry] * 8;
        if (c >= this.slabClassEnd) {
          this.#states[(address - this.#base) >>> STATE_SHIFT] = STATE_NONE;
        }
        this.#i32[bin] = entry - 1;
        free(address, c);
      }
    }
  }

  /** Slab objects slot `slot`'s bins hold. */
  slabObjectsIn(slot: number): number {
    const own = this.#slotIndex(slot);
    let objects = 0;
    for (let c = 0; c < this.slabClassEnd; c++) objects += this.#i32[own + BIN_AT[c]];
    return objects;
  }

  /** Drains every slab class of slot `slot` (as drain does, the lock held). */
  drainSlabs(slot: number, free: (address: number, bin: number) => void): void {
    for (let c = 0; c < this.slabClassEnd; c++) this.drain(slot, c, BIN_ENTRIES_MAX, free);
  }

  /**
   * The payload addresses of the blocks slot `slot` holds, in every block
   * class (what `drain(slot, -1, ...)` would give the block heap directly),
   * without taking them out.
   */
  cachedBy(slot: number): number[] {
    const own = this.#slotIndex(slot);
    const addresses: number[] = [];
    for (let c = this.slabClassEnd; c < CLASS_COUNT; c++) {
      const bin = own + BIN_AT[c];
      const count = Math.min(this.#i32[bin], 2 * REFILL_OF[c]);
      for (let entry = count; entry > 0; entry--) {
        addresses.push(this.#base + this.#u32[bin + entry] * 8);
      }
    }
    return addresses;
  }

  /** Every address slot `slot`'s bins hold: slab objects, blocks and page runs. */
  addressesIn(slot: number): Set<number> {
    const own = this.#slotIndex(slot);
    const addresses = new Set<number>();
    for (let c = 0; c < BIN_COUNT; c++) {
      const bin = own + BIN_AT[c];
      const count = Math.min(this.#i32[bin], 2 * REFILL_OF[c]);
      for (let entry = 1; entry <= count; entry++) {
        addresses.add(this.#base + this.#u32[bin + entry] * 8);
      }
    }
    return addresses;
  }

  /**
   * Sets this slot's hidden slack counts so that every slot's add up to
   * `blockBytes` and `slabBytes`, counted from the state bytes and the slab
   * descriptors: a Worker that ended inside a lock-free call may have
   * changed a byte and not its count, or the count and not the byte.
   */
  rebaseHidden(blockBytes: number, slabBytes: number): void {
    let otherBlocks = 0;
    let otherSlabs = 0;
    for (let slot = 1; slot <= this.#slotCount; slot++) {
      const index = this.#slotIndex(slot) >>> 1;
      if (index === this.#ownHidden) continue;
      otherBlocks += this.#f64[index];
      otherSlabs += this.#f64[index + 1];
    }
    this.#f64[this.#ownHidden] = blockBytes - otherBlocks;
    this.#f64[this.#ownHidden + 1] = slabBytes - otherSlabs;
  }

  /**
   * Blocks and bytes cached by every slot, and the hidden slack of every
   * live block (a snapshot; exact once Workers are idle).
   */
  totals(): CacheTotals {
    let blocks = 0;
    let bytes = 0;
    let hiddenBytes = 0;
    let slabObjects = 0;
    let slabBytes = 0;
    let slabHiddenBytes = 0;
    let pageRuns = 0;
    let pageBytes = 0;
    for (let slot = 1; slot <= this.#slotCount; slot++) {
      const index = this.#slotIndex(slot);
      hiddenBytes += this.#f64[index >>> 1];
      slabHiddenBytes += this.#f64[(index >>> 1) + 1];
      for (let order = 0; order <= PAGE_ORDER_MAX; order++) {
        const count = this.#i32[index + BIN_AT[PAGE_BIN_FIRST + order]];
        pageRuns += count;
        pageBytes += count * (FRAME_BYTES << order);
      }
      for (let cls = 0; cls < CLASS_COUNT; cls++) {
        const count = this.#i32[index + BIN_AT[cls]];
        if (cls < this.slabClassEnd) {
          slabObjects += count;
          slabBytes += count * CAPACITY_OF[cls];
        } else {
          blocks += count;
          bytes += count * CAPACITY_OF[cls];
        }
      }
    }
    return {
      blocks,
      bytes,
      hiddenBytes,
      slabObjects,
      slabBytes,
      slabHiddenBytes,
      pageRuns,
      pageBytes,
    };
  }

  /** Clears every slot's cache and the state map (the creator, before publishing). */
  reset(stateMapBytes: number): void {
    this.#i32.fill(0, this.#first, this.#first + this.#slotCount * (SLOT_CACHE_BYTES >>> 2));
    this.#states.fill(0, 0, stateMapBytes);
  }

  /**
   * Clears slot `slot`'s bins after a drain (they are empty by then),
   * moving its hidden slack count to this slot: the blocks it handed out
   * live on, in whichever Worker holds them.
   */
  resetSlot(slot: number): void {
    const index = this.#slotIndex(slot);
    this.#f64[this.#ownHidden] += this.#f64[index >>> 1];
    this.#f64[this.#ownHidden + 1] += this.#f64[(index >>> 1) + 1];
    this.#i32.fill(0, index, index + (SLOT_CACHE_BYTES >>> 2));
  }
}
