/**
 * One Worker's handle on a shared heap: its slot, the heap's locks, and the
 * books it copies in and out of the shared header around every locked
 * operation (the block counters; the layers' fields when another Worker
 * changed them, and back when this hold changed them). `PhysicalAllocator`
 * holds one when it was made over a SharedArrayBuffer (`fromBuffer`) or
 * joined one (`attach`); the header's layout is drawn in shared_header.ts.
 *
 * Locks (shared_header.ts): lock 0, the heap lock, guards the blocks, the
 * frames, the chunk directory, the slab page map and the layers' scalars;
 * locks 1 to 15, the class locks, guard the slab caches (each cache's record,
 * lists and descriptors). Three kinds of hold, always in the order class
 * locks (ascending) -> heap lock, so no two Workers wait on each other:
 *
 * - every lock (`enter`): the general path, and whatever walks every cache
 *   (stats, check, trim, reserve release, drains of a whole Worker cache);
 * - one class lock (`enterClass`), then the heap lock only if the operation
 *   makes or gives back a slab (`needHeap`): a Worker cache's refill or drain
 *   of one slab class, so Workers on classes of different locks never wait
 *   on each other;
 * - the heap lock alone (`enterBlocks`): a Worker cache's refill or drain of
 *   a block class, which touches no slab cache.
 *
 * @module
 */

import {
  HeapDetachedError,
  InvalidMemoryError,
  InvalidOptionError,
  SharedHeapInvalidError,
  SharedHeapVersionError,
  WorkerSlotError,
} from "../errors.ts";
import type { HeapCounters } from "../heap/counters.ts";
import { describeValue, hex } from "../memory/physical_memory.ts";
import { drawHeaderKey } from "../heap/_header_key.ts";
import { HeapLock } from "./heap_lock.ts";
import type { SlabCache } from "../slab/slab_cache.ts";
import { SLOT_CACHE_BYTES, stateMapBytes, WorkerCache } from "./worker_cache.ts";
import { LayerState, layerStateLayout } from "../slab/layer_state.ts";
import { KMALLOC_CLASSES, KMALLOC_SMALL_MAX_BYTES } from "../slab/kmalloc.ts";
import { LAYER_WINDOW_BYTES, type LayeredHeap } from "../slab/layered_heap.ts";
import {
  classLockOf,
  f64At,
  FLAG_DEBUG,
  FLAG_LAYERS,
  FLAG_NO_FAST_PATH,
  FLAG_WORKER_CACHES,
  headerViews,
  layerStateOffset,
  LOCK_BLOCKS,
  LOCK_COUNT,
  LOCK_TIMEOUT_MS_DEFAULT,
  lockWordAt,
  SECRET_WORDS,
  SH_ALIGN,
  SH_ATTACHED,
  SH_BASE_ADDRESS,
  SH_COUNTERS,
  SH_FLAGS,
  SH_HEADER_BYTES,
  SH_LOCK_TIMEOUT_MS,
  SH_MAGIC,
  SH_POLICY,
  SH_SECRET,
  SH_SLOT_COUNT,
  SH_SLOTS,
  SH_STATE,
  SH_VERSION,
  SH_WINDOW_BYTES,
  SHARED_FORMAT_VERSION,
  SHARED_MAGIC,
  sharedHeaderBytes,
  type SharedHeaderViews,
  slotTableEnd,
  slotWordAt,
  STATE_READY,
  wordAt,
  WORKER_SLOTS_DEFAULT,
  WORKER_SLOTS_MAX,
} from "./shared_header.ts";

/** What a shared heap's header records about the heap (written once, by its creator). */
export interface SharedHeapSettings {
  /** The address of the window's byte 0 (the header's first byte). */
  readonly baseAddress: number;
  /** The policy's index in POLICY_NAMES. */
  readonly policyIndex: number;
  /** The default payload alignment. */
  readonly alignBytes: number;
  /** Debug mode. */
  readonly debug: boolean;
  /** Whether the TLSF fast path may serve the heap. */
  readonly fastPath: boolean;
  /** Worker slots, 1 to 255. */
  readonly slotCount: number;
  /** The lock timeout every Worker of the heap uses. */
  readonly lockTimeoutMs: number;
  /** Whether each Worker caches freed small blocks (worker_cache.ts). */
  readonly workerCaches: boolean;
  /** Whether the header holds a layer state: the page-frame and slab layers serve the heap. */
  readonly layers: boolean;
}

/** A Worker's handle on a shared heap. */
export class SharedHeapState {
  /** The shared buffer holding the whole heap. */
  readonly buffer: SharedArrayBuffer;
  /** This Worker's slot id, 1 to `slotCount`. */
  readonly slot: number;
  /** Bytes of the header: the heap's one region starts this far into the window. */
  readonly headerBytes: number;
  /** Bytes of the window (the caller's view): header and region. */
  readonly windowBytes: number;
  /** The settings recorded in the header. */
  readonly settings: SharedHeapSettings;
  /** True for the Worker that creates the heap, until `publish`. */
  readonly creating: boolean;
  /** This Worker's cache of freed small blocks, or null when the heap has none. */
  readonly cache: WorkerCache | null;
  /** The key of the heap's header check words: word 0 of the heap secret, the same in every Worker. */
  readonly headerKey: number;
  /** The page-frame and slab layers' state in the header, or null when the heap has none. */
  readonly layerState: LayerState | null;
  /** This Worker's layers over `layerState` (set once they are built), else null. */
  #layers: LayeredHeap | null = null;
  readonly #views: SharedHeaderViews;
  /** Every lock by number: 0 the heap lock, 1 to 15 the class locks. */
  readonly #locks: HeapLock[];
  readonly #countersIndex: number;
  #counters: HeapCounters | null = null;
  /** Nesting of holds of every lock (enter), and of fine holds inside them. */
  #depth = 0;
  /** The class lock of a fine hold (enterClass), else 0. */
  #classLock = 0;
  /** True while a fine hold (enterClass, enterBlocks, enterHeapOnly) holds the heap lock. */
  #heapHeld = false;
  /** True while enterHeapOnly's hold lasts (the layers' heap fields loaded, caches not). */
  #heapOnly = false;
  /** The first lock a hold of every lock takes: 1, or 0 when the heap has no slab caches. */
  readonly #firstLock: number;
  /** needHeap, bound once (the layers call it when a class-locked refill makes a slab). */
  readonly #needHeap = (): void => this.needHeap();
  #detached = false;
  /**
   * The slot word this Worker wrote when it took its slot: odd, and unlike
   * every earlier holder's (a slot word is even while free, odd while held,
   * and one more at every change). Another value there means another Worker
   * reclaimed the slot: this handle's calls are refused from then on.
   */
  readonly #token: number;
  /** Word index in the header views of this Worker's slot word. */
  readonly #slotWord: number;

  private constructor(
    view: Uint8Array,
    settings: SharedHeapSettings,
    slot: number,
    creating: boolean,
    headerKey: number,
    token: number,
  ) {
    this.#token = token;
    this.headerKey = headerKey;
    this.buffer = view.buffer as SharedArrayBuffer;
    this.#views = headerViews(this.buffer, view.byteOffset);
    this.#slotWord = slotWordAt(this.#views, slot);
    this.windowBytes = view.byteLength;
    this.settings = settings;
    this.slot = slot;
    this.creating = creating;
    this.headerBytes = sharedHeaderBytes(
      settings.slotCount,
      view.byteLength,
      settings.workerCaches,
      settings.layers,
    );
    this.layerState = settings.layers
      ? new LayerState(
        this.buffer,
        view.byteOffset +
          layerStateOffset(settings.slotCount, view.byteLength, settings.workerCaches),
        layerStateLayout(
          Math.min(view.byteLength, LAYER_WINDOW_BYTES),
          KMALLOC_CLASSES.length,
        ),
        // The creator writes the state fresh (nothing is read from the buffer before publish).
        creating,
      )
      : null;
    const cachesOffset = view.byteOffset + slotTableEnd(settings.slotCount);
    this.cache = settings.workerCaches
      ? new WorkerCache(
        this.buffer,
        cachesOffset,
        slot,
        settings.slotCount,
        new Uint8Array(
          this.buffer,
          cachesOffset + settings.slotCount * SLOT_CACHE_BYTES,
          stateMapBytes(view.byteLength),
        ),
        settings.baseAddress,
        // With layers, the classes up to the largest small kmalloc class hold
        // slab objects (at the default alignment of 8, which every class
        // keeps); a mid class takes a slab only once it is busy, a rule a
        // Worker cache's refill would bypass, so those bins hold blocks.
        settings.layers && settings.alignBytes === 8 ? KMALLOC_SMALL_MAX_BYTES : 0,
      )
      : null;
    this.#countersIndex = f64At(this.#views, SH_COUNTERS);
    // Without layers there is no slab cache: "every lock" is the heap lock.
    this.#firstLock = settings.layers ? 1 : LOCK_COUNT;
    this.#locks = Array.from(
      { length: LOCK_COUNT },
      (_, lock) =>
        new HeapLock(
          this.#views.i32,
          lockWordAt(this.#views, lock),
          slot,
          settings.lockTimeoutMs,
          lock === LOCK_BLOCKS ? "heap" : `class ${lock}`,
        ),
    );
  }

  /**
   * The handle of the Worker about to create a shared heap over `view`
   * (slot 1). Writes nothing: `publish` writes the header once the heap
   * below it is written, so a failed creation leaves the buffer as it was.
   *
   * @throws {SharedHeapInvalidError} If the buffer holds a heap other Workers are attached to.
   * @throws {InvalidMemoryError} If the view is misaligned or too small for the header.
   */
  static forCreation(view: Uint8Array, settings: SharedHeapSettings): SharedHeapState {
    const headerBytes = sharedHeaderBytes(
      settings.slotCount,
      view.byteLength,
      settings.workerCaches,
      settings.layers,
    );
    if (view.byteOffset % 8 !== 0 || view.byteLength < headerBytes) {
      throw new InvalidMemoryError(
        `Cannot create a shared heap over ${view.byteLength} bytes at buffer offset ${view.byteOffset}: it needs a multiple of 8 as offset and more than its ${headerBytes}-byte header`,
      );
    }
    const views = headerViews(view.buffer as SharedArrayBuffer, view.byteOffset);
    const attached = Atomics.load(views.i32, wordAt(views, SH_ATTACHED));
    if (Atomics.load(views.u32, wordAt(views, SH_MAGIC)) === SHARED_MAGIC && attached > 0) {
      throw new SharedHeapInvalidError(
        `Cannot create a shared heap over a buffer that holds one with ${attached} Workers attached: attach to it instead`,
      );
    }
    // Slot words start at a random generation: no handle of a heap made
    // over this buffer before can hold the token of a slot of this one.
    const generation = crypto.getRandomValues(new Int32Array(1))[0] & ~1;
    return new SharedHeapState(view, settings, 1, true, drawHeaderKey(), generation | 1);
  }

  /**
   * Joins the shared heap in `view`: validates its header and claims a slot.
   *
   * @throws {SharedHeapInvalidError} If the view holds no ready heap of its length.
   * @throws {SharedHeapVersionError} If the heap has another format version.
   * @throws {WorkerSlotError} If every slot is taken.
   */
  static attach(view: Uint8Array, lockTimeoutMs?: number): SharedHeapState {
    const settings = readSettings(view, lockTimeoutMs);
    const views = headerViews(view.buffer as SharedArrayBuffer, view.byteOffset);
    for (let slot = 1; slot <= settings.slotCount; slot++) {
      const word = slotWordAt(views, slot);
      const free = Atomics.load(views.i32, word);
      if ((free & 1) !== 0) continue;
      const token = (free + 1) | 0;
      if (Atomics.compareExchange(views.i32, word, free, token) === free) {
        Atomics.add(views.i32, wordAt(views, SH_ATTACHED), 1);
        const key = Atomics.load(views.u32, wordAt(views, SH_SECRET));
        return new SharedHeapState(view, settings, slot, false, key, token);
      }
    }
    throw new WorkerSlotError(
      `Cannot attach to the shared heap: all ${settings.slotCount} Worker slots are taken (detach a Worker, or reclaim the slot of one that ended)`,
    );
  }

  /**
   * Makes `counters` the Worker's books and `layers` its layers over the
   * layer state (null when the heap has none). The creator then stores the
   * layers' fields, writes the header and marks the heap ready (the heap
   * below it is written by now).
   */
  publish(counters: HeapCounters, layers: LayeredHeap | null): void {
    this.#counters = counters;
    this.#layers = layers;
    if (!this.creating) return;
    layers?.leaveShared();
    const { i32, u32, f64 } = this.#views;
    const views = this.#views;
    const s = this.settings;
    u32[wordAt(views, SH_VERSION)] = SHARED_FORMAT_VERSION;
    u32[wordAt(views, SH_HEADER_BYTES)] = this.headerBytes;
    f64[f64At(views, SH_BASE_ADDRESS)] = s.baseAddress;
    f64[f64At(views, SH_WINDOW_BYTES)] = this.windowBytes;
    u32[wordAt(views, SH_POLICY)] = s.policyIndex;
    u32[wordAt(views, SH_ALIGN)] = s.alignBytes;
    u32[wordAt(views, SH_FLAGS)] = (s.debug ? FLAG_DEBUG : 0) |
      (s.fastPath ? 0 : FLAG_NO_FAST_PATH) | (s.workerCaches ? FLAG_WORKER_CACHES : 0) |
      (s.layers ? FLAG_LAYERS : 0);
    this.cache?.reset(stateMapBytes(this.windowBytes));
    u32[wordAt(views, SH_SLOT_COUNT)] = s.slotCount;
    u32[wordAt(views, SH_LOCK_TIMEOUT_MS)] = s.lockTimeoutMs;
    const secret = wordAt(views, SH_SECRET);
    crypto.getRandomValues(u32.subarray(secret + 1, secret + SECRET_WORDS));
    u32[secret] = this.headerKey;
    for (let word = lockWordAt(views, 0); word < lockWordAt(views, LOCK_COUNT); word++) {
      i32[word] = 0;
    }
    for (let slot = 1; slot <= s.slotCount; slot++) {
      i32[slotWordAt(views, slot)] = this.#token & ~1;
    }
    i32[slotWordAt(views, 1)] = this.#token;
    i32[wordAt(views, SH_ATTACHED)] = 1;
    counters.storeTo(f64, this.#countersIndex);
    u32[wordAt(views, SH_MAGIC)] = SHARED_MAGIC;
    Atomics.store(i32, wordAt(views, SH_STATE), STATE_READY);
  }

  /** True when a Worker is attached to slot `slot` (1 to slotCount). */
  slotAttached(slot: number): boolean {
    const views = this.#views;
    return slot >= 1 && slot <= this.settings.slotCount &&
      (Atomics.load(views.i32, slotWordAt(views, slot)) & 1) === 1;
  }

  /** Workers attached now. */
  attachedWorkers(): number {
    return Atomics.load(this.#views.i32, wordAt(this.#views, SH_ATTACHED));
  }

  /** True once `detach` has run, or another Worker reclaimed this Worker's slot. */
  get detached(): boolean {
    // A plain load, at every call: the slot word changes only when the slot changes hands.
    return this.#detached || this.#views.i32[this.#slotWord] !== this.#token;
  }

  /**
   * Takes every lock (the class locks in ascending order, then the heap
   * lock; re-entrant within this Worker) and loads the books.
   *
   * @param operation The call, for the error message.
   * @throws {HeapDetachedError} If this Worker detached.
   * @throws {LockTimeoutError} If another slot holds a lock past the timeout.
   */
  enter(operation: string): void {
    if (this.#depth === 0) {
      this.#refuseDetached(operation);
      if (this.#classLock !== 0 || this.#heapHeld) {
        throw new Error("A shared heap's hold of every lock cannot start inside a fine hold");
      }
      const locks = this.#locks;
      const first = this.#firstLock;
      let lock = first;
      try {
        for (; lock < LOCK_COUNT; lock++) locks[lock].acquire();
        locks[LOCK_BLOCKS].acquire();
      } catch (error) {
        while (--lock >= first) locks[lock].release();
        throw error;
      }
      this.#counters!.loadFrom(this.#views.f64, this.#countersIndex);
      this.#layers?.enterShared();
    }
    this.#depth++;
  }

  /** Stores the books (and the layers' fields) and releases every lock when the outermost hold ends. */
  leave(): void {
    if (--this.#depth === 0) {
      try {
        this.#layers?.leaveShared();
        this.#counters!.storeTo(this.#views.f64, this.#countersIndex);
      } finally {
        const locks = this.#locks;
        locks[LOCK_BLOCKS].release();
        for (let lock = LOCK_COUNT - 1; lock >= this.#firstLock; lock--) locks[lock].release();
      }
    }
  }

  /**
   * Takes the class lock of `cache` alone and loads that cache's fields (a
   * Worker cache's refill or drain of one slab class); inside a hold of
   * every lock, only nests. End it with leaveFine(the result).
   *
   * @param operation The call, for the error message.
   * @param cache A Worker-cached kmalloc cache of the heap's layers.
   * @returns True when it took the lock, false when it nested.
   * @throws {HeapDetachedError} If this Worker detached.
   * @throws {LockTimeoutError} If another slot holds the lock past the timeout.
   */
  enterClass(operation: string, cache: SlabCache): boolean {
    if (this.#depth > 0) {
      this.#depth++;
      return false;
    }
    this.#refuseDetached(operation);
    const lock = classLockOf(cache.id);
    this.#locks[lock].acquire();
    this.#classLock = lock;
    this.#layers!.enterCache(cache, this.#needHeap);
    return true;
  }

  /**
   * Takes the heap lock alone and loads the block books (a Worker cache's
   * refill or drain of a block class: it touches no slab cache and no layer
   * field); inside a hold of every lock, only nests. End it with leaveFine.
   *
   * @returns True when it took the lock, false when it nested.
   * @throws {HeapDetachedError} If this Worker detached.
   * @throws {LockTimeoutError} If another slot holds the lock past the timeout.
   */
  enterBlocks(operation: string): boolean {
    if (this.#depth > 0) {
      this.#depth++;
      return false;
    }
    this.#refuseDetached(operation);
    this.#locks[LOCK_BLOCKS].acquire();
    this.#heapHeld = true;
    this.#counters!.loadFrom(this.#views.f64, this.#countersIndex);
    return true;
  }

  /**
   * Takes the heap lock alone and loads the block books and the layers' heap
   * fields, for a call that touches no slab cache (a block's free, a large
   * request); a call that reaches one throws EveryLockNeeded before it
   * changes anything (LayeredHeap.enterHeapOnly). Inside a hold of every
   * lock, only nests. End it with leaveFine.
   *
   * @returns True when it took the lock, false when it nested.
   * @throws {HeapDetachedError} If this Worker detached.
   * @throws {LockTimeoutError} If another slot holds the lock past the timeout.
   */
  enterHeapOnly(operation: string): boolean {
    if (this.#depth > 0) {
      this.#depth++;
      return false;
    }
    this.#refuseDetached(operation);
    this.#locks[LOCK_BLOCKS].acquire();
    this.#heapHeld = true;
    this.#heapOnly = true;
    this.#counters!.loadFrom(this.#views.f64, this.#countersIndex);
    this.#layers?.enterHeapOnly();
    return true;
  }

  /**
   * Inside a class hold (enterClass): takes the heap lock too, after the
   * class lock, and loads the block books and the heap's layer fields; once
   * per hold. A no-op inside a hold of every lock.
   *
   * @throws {LockTimeoutError} If another slot holds the heap lock past the timeout.
   */
  needHeap(): void {
    if (this.#depth > 0 || this.#heapHeld) return;
    this.#locks[LOCK_BLOCKS].acquire();
    this.#heapHeld = true;
    this.#counters!.loadFrom(this.#views.f64, this.#countersIndex);
    this.#layers?.enterHeap();
  }

  /**
   * Ends a fine hold: stores what it loaded and releases its locks (the
   * heap lock, then the class lock), or ends the nesting.
   *
   * @param took What enterClass or enterBlocks returned.
   */
  leaveFine(took: boolean): void {
    if (!took) {
      this.#depth--;
      return;
    }
    const classLock = this.#classLock;
    const heapHeld = this.#heapHeld;
    const heapOnly = this.#heapOnly;
    this.#classLock = 0;
    this.#heapHeld = false;
    this.#heapOnly = false;
    try {
      if (heapHeld) {
        // A blocks-only hold changed no layer field.
        if (heapOnly) this.#layers?.leaveHeapOnly();
        else if (classLock !== 0) this.#layers!.leaveHeap();
        this.#counters!.storeTo(this.#views.f64, this.#countersIndex);
      }
      if (classLock !== 0) this.#layers!.leaveCache();
    } finally {
      if (heapHeld) this.#locks[LOCK_BLOCKS].release();
      if (classLock !== 0) this.#locks[classLock].release();
    }
  }

  #refuseDetached(operation: string): void {
    if (this.#detached) {
      throw new HeapDetachedError(
        `Cannot ${operation}: this Worker detached from the shared heap (it held slot ${this.slot})`,
      );
    }
    if (Atomics.load(this.#views.i32, this.#slotWord) !== this.#token) {
      throw new HeapDetachedError(
        `Cannot ${operation}: another Worker reclaimed this Worker's slot ${this.slot} (reclaimSlot), so its handle may no longer be used`,
      );
    }
  }

  /**
   * Gives the slot back. Later calls throw HeapDetachedError.
   *
   * @throws {HeapDetachedError} If this Worker already detached.
   */
  detach(): void {
    if (this.#detached) {
      throw new HeapDetachedError(
        `Cannot detach: this Worker already detached from the shared heap (slot ${this.slot})`,
      );
    }
    this.#refuseDetached("detach");
    this.#detached = true;
    const views = this.#views;
    // Free again, and unlike every earlier value of the word (see #token).
    if (
      Atomics.compareExchange(views.i32, this.#slotWord, this.#token, (this.#token + 1) | 0) ===
        this.#token
    ) {
      Atomics.sub(views.i32, wordAt(views, SH_ATTACHED), 1);
    }
  }

  /**
   * Checks that slot `slot` may be reclaimed: another Worker's, attached,
   * and holding no lock (a Worker that ended inside an operation may have
   * left the heap half-edited; nothing can finish its operation).
   *
   * @throws {WorkerSlotError} If `slot` is not attached, is this Worker's own, or holds a lock.
   * @throws {HeapDetachedError} If this Worker detached.
   */
  checkReclaim(slot: number): void {
    if (this.#detached) {
      throw new HeapDetachedError(
        `Cannot reclaim slot ${describeValue(slot)}: this Worker detached from the shared heap`,
      );
    }
    const views = this.#views;
    const count = this.settings.slotCount;
    if (!Number.isInteger(slot) || slot < 1 || slot > count || slot === this.slot) {
      throw new WorkerSlotError(
        `Cannot reclaim slot ${
          describeValue(slot)
        }: expected another Worker's slot from 1 to ${count}`,
      );
    }
    for (let lock = 0; lock < LOCK_COUNT; lock++) {
      if ((Atomics.load(views.i32, lockWordAt(views, lock)) & 0xff) === slot) {
        throw new WorkerSlotError(
          `Cannot reclaim slot ${slot}: it holds lock ${lock}, so its last operation may be half-done`,
        );
      }
    }
    if ((Atomics.load(views.i32, slotWordAt(views, slot)) & 1) !== 1) {
      throw new WorkerSlotError(`Cannot reclaim slot ${slot}: no Worker is attached to it`);
    }
  }

  /**
   * Revokes the handle of slot `slot` (checked by `checkReclaim`): its slot
   * word moves on and stays odd (held, now by the reclaim), so that
   * Worker's next call is refused and no Worker attaches before releaseSlot.
   */
  revokeSlot(slot: number): void {
    const views = this.#views;
    const word = slotWordAt(views, slot);
    const held = Atomics.load(views.i32, word);
    if ((held & 1) === 1) Atomics.compareExchange(views.i32, word, held, (held + 2) | 0);
  }

  /** Frees slot `slot` (checked by `checkReclaim`, revoked, its cache drained). */
  releaseSlot(slot: number): void {
    const views = this.#views;
    const word = slotWordAt(views, slot);
    const held = Atomics.load(views.i32, word);
    if (
      (held & 1) === 1 && Atomics.compareExchange(views.i32, word, held, (held + 1) | 0) === held
    ) {
      Atomics.sub(views.i32, wordAt(views, SH_ATTACHED), 1);
    }
  }
}

/**
 * Validates the shared options of `fromBuffer`.
 *
 * @throws {InvalidOptionError} If `workerSlots` or `lockTimeoutMs` is out of range.
 */
export function sharedOptions(
  workerSlots: unknown,
  lockTimeoutMs: unknown,
): { slotCount: number; lockTimeoutMs: number } {
  const slots = workerSlots ?? WORKER_SLOTS_DEFAULT;
  if (!Number.isInteger(slots) || (slots as number) < 1 || (slots as number) > WORKER_SLOTS_MAX) {
    throw new InvalidOptionError(
      `Cannot create a shared heap with workerSlots ${
        describeValue(slots)
      }: expected an integer from 1 to ${WORKER_SLOTS_MAX}`,
    );
  }
  return { slotCount: slots as number, lockTimeoutMs: validTimeout(lockTimeoutMs) };
}

function validTimeout(value: unknown): number {
  const timeout = value ?? LOCK_TIMEOUT_MS_DEFAULT;
  if (!Number.isInteger(timeout) || (timeout as number) < 1 || (timeout as number) > 0x7fffffff) {
    throw new InvalidOptionError(
      `Cannot use lockTimeoutMs ${
        describeValue(timeout)
      }: expected a positive integer of milliseconds`,
    );
  }
  return timeout as number;
}

/** Reads and validates the header in `view`; reads only. */
function readSettings(view: Uint8Array, lockTimeoutMs: unknown): SharedHeapSettings {
  const timeout = lockTimeoutMs === undefined ? undefined : validTimeout(lockTimeoutMs);
  if (view.byteOffset % 8 !== 0 || view.byteLength < SH_SLOTS) {
    throw new SharedHeapInvalidError(
      `Cannot attach to ${view.byteLength} bytes at buffer offset ${view.byteOffset}: too small or misaligned for a shared heap header`,
    );
  }
  const views = headerViews(view.buffer as SharedArrayBuffer, view.byteOffset);
  const { i32, u32, f64 } = views;
  const magic = Atomics.load(u32, wordAt(views, SH_MAGIC));
  if (magic !== SHARED_MAGIC) {
    throw new SharedHeapInvalidError(
      `Cannot attach: the buffer holds no shared heap (magic word ${hex(magic)}, expected ${
        hex(SHARED_MAGIC)
      })`,
    );
  }
  const version = u32[wordAt(views, SH_VERSION)];
  if (version !== SHARED_FORMAT_VERSION) {
    throw new SharedHeapVersionError(
      `Cannot attach to a shared heap of format version ${version}: this module reads version ${SHARED_FORMAT_VERSION}`,
    );
  }
  if (Atomics.load(i32, wordAt(views, SH_STATE)) !== STATE_READY) {
    throw new SharedHeapInvalidError("Cannot attach: the shared heap is still being created");
  }
  const settings: SharedHeapSettings = {
    baseAddress: f64[f64At(views, SH_BASE_ADDRESS)],
    policyIndex: u32[wordAt(views, SH_POLICY)],
    alignBytes: u32[wordAt(views, SH_ALIGN)],
    debug: (u32[wordAt(views, SH_FLAGS)] & FLAG_DEBUG) !== 0,
    fastPath: (u32[wordAt(views, SH_FLAGS)] & FLAG_NO_FAST_PATH) === 0,
    slotCount: u32[wordAt(views, SH_SLOT_COUNT)],
    lockTimeoutMs: timeout ?? u32[wordAt(views, SH_LOCK_TIMEOUT_MS)],
    workerCaches: (u32[wordAt(views, SH_FLAGS)] & FLAG_WORKER_CACHES) !== 0,
    layers: (u32[wordAt(views, SH_FLAGS)] & FLAG_LAYERS) !== 0,
  };
  const windowBytes = f64[f64At(views, SH_WINDOW_BYTES)];
  if (
    windowBytes !== view.byteLength ||
    settings.slotCount < 1 || settings.slotCount > WORKER_SLOTS_MAX ||
    u32[wordAt(views, SH_HEADER_BYTES)] !==
      sharedHeaderBytes(settings.slotCount, windowBytes, settings.workerCaches, settings.layers) ||
    !Number.isSafeInteger(settings.baseAddress) || settings.baseAddress <= 0 ||
    settings.baseAddress % 8 !== 0 || settings.lockTimeoutMs < 1
  ) {
    throw new SharedHeapInvalidError(
      `Cannot attach: the shared heap header is inconsistent with the ${view.byteLength}-byte view (window ${windowBytes} bytes, ${settings.slotCount} slots, base ${
        hex(settings.baseAddress)
      })`,
    );
  }
  return settings;
}
