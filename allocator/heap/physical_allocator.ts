/**
 * The physical memory allocator: block headers at the start of every block,
 * an intrusive free list inside the managed memory, aligned payloads, several
 * regions, and a choice of placement policy over one block format.
 *
 * @module
 */

import { blockSizeFor, type BlockWords, blockWordsFor, NarrowBlockWords } from "./block.ts";
import {
  AllocatorClosedError,
  AllocatorError,
  CacheDestroyedError,
  CacheInUseError,
  HeapCorruptionError,
  InvalidAddressError,
  InvalidAlignmentError,
  InvalidFreeError,
  InvalidMemoryError,
  InvalidOptionError,
  InvalidSizeError,
  MemoryDetachedError,
  MemoryInUseError,
  OutOfMemoryError,
  SharedHeapInvalidError,
} from "../errors.ts";
import { SharedHeapState, sharedOptions } from "../shared/shared_heap.ts";
import { layersFit, workerCachesFit } from "../shared/shared_header.ts";
import { type CacheTotals, STATE_CACHED, type WorkerCache } from "../shared/worker_cache.ts";
import { SharedCalls } from "../shared/shared_calls.ts";
import { corruptionAt } from "./check/corruption.ts";
import { BlockEdits } from "./block_edits.ts";
import { type AddressErrorClass, BlockVerifier } from "./check/block_verifier.ts";
import { ControlBlock, NarrowControlBlock } from "./control_block.ts";
import { checkHeap } from "./check/heap_check.ts";
import { HeapCounters } from "./counters.ts";
import { DebugGuard, GUARD_BYTES_MIN } from "./check/debug_guard.ts";
import {
  ALIGN_BYTES_MAX,
  CONTROL_FL_COUNT_OFFSET,
  CONTROL_MAGIC,
  CONTROL_MAGIC_OFFSET,
  CONTROL_POLICY_OFFSET,
  controlHeadsOffset,
  FLAG_LAST,
  FLAG_PREV_FREE,
  GRANULE_BYTES,
  HEADER_BYTES,
  MIN_BLOCK_BYTES,
  SL_COUNT,
} from "./layout.ts";
import { drawHeaderKey } from "./_header_key.ts";
import { registerInspector } from "./_inspect.ts";
import {
  DEFAULT_BUFFER_BASE_ADDRESS,
  describeValue,
  hex,
  type MemoryRegion,
  type PhysicalMemory,
  plainView,
  resolveWindow,
} from "../memory/physical_memory.ts";
import { claimMemory, type MemoryClaim } from "../memory/memory_claims.ts";
import { attachNative, type NativeMode } from "./policy/native_route.ts";
import {
  type FreeListPolicy,
  isPolicyName,
  POLICY_NAMES,
  type PolicyName,
} from "./policy/policy.ts";
import { POLICIES } from "./policy/registry.ts";
import { TlsfPolicy } from "./policy/tlsf.ts";
import { FALLBACK, fastPathFits, type TlsfFastPath } from "./policy/tlsf_fast_path.ts";
import { type TlsfCompactFastPath, tlsfFastPathFor } from "./policy/tlsf_compact_fast_path.ts";
import type { TlsfNarrowFastPath } from "./policy/tlsf_narrow_fast_path.ts";
import { type HeapLayout, largestBlockArea, layoutRegions, type RegionLayout } from "./regions.ts";
import type { AllocatorStats, RegionStats } from "./stats.ts";
import {
  CACHE_COUNT_MAX,
  LayeredHeap,
  type LayerRun,
  LAYERS_MIN_AREA_BYTES,
} from "../slab/layered_heap.ts";
import { KMALLOC_MAX_BYTES } from "../slab/kmalloc.ts";
import {
  FALLBACK as SLAB_FALLBACK,
  FREED as SLAB_FREED,
  NOT_IN_LAYERS as SLAB_NOT_IN_LAYERS,
  SlabFastPath,
} from "../slab/slab_fast_path.ts";
import type { SlabCache, SlabInfo } from "../slab/slab_cache.ts";
import { CHUNK_FRAMES_MAX, FRAME_BYTES, ORDER_MAX } from "../frames/frame_table.ts";

/**
 * Requests of at least this many bytes (not page multiples at 4096) are served
 * from free page frames when a free buddy block holds them already (see
 * #allocLayered): from 64 KiB the rounding up to whole frames wastes at most
 * 1/16 of the request.
 */
const PAGE_RUN_BLOCK_MIN_BYTES = 65536;

/** Options of a {@linkcode PhysicalAllocator}. */
export interface AllocatorOptions {
  /**
   * The placement policy: `"tlsf"` (O(1) segregated fits) or `"first-fit"`
   * (the seed's address-ordered scan, O(n)).
   *
   * @default {"tlsf"}
   */
  policy?: PolicyName;
  /**
   * The payload alignment of `alloc` calls that give none: a power of two.
   *
   * @default {8}
   */
  align?: number;
  /**
   * Whether searches run in the Zig library: `"auto"` uses it where it is
   * faster and present, `true` requires it, `false` never loads it.
   *
   * @default {"auto"}
   */
  native?: NativeMode;
  /**
   * Debug mode (allocator/heap/check/debug_guard.ts): every block payload and
   * slab object is followed by at least 16 guard bytes, verified at `free`,
   * `realloc` and `check()`, and free memory is poisoned and verified when it
   * is handed out again and at `check()`, so overflows and writes after free
   * throw HeapCorruptionError. Guard bytes live in the block's slack and count
   * as `overheadBytes`. Page runs (whole frames) have neither guard bytes nor
   * poison, and the objects of a cache aligned to 256 bytes or more no guard.
   *
   * @default {false}
   */
  debug?: boolean;
  /**
   * Whether the TLSF fast path (allocator/heap/policy/tlsf_fast_path.ts) may serve
   * `alloc`, `free` and `realloc`. It serves them only where it applies (TLSF searched
   * in TypeScript, one usable region, a window ending below 2^31, no debug
   * mode) and makes exactly the general path's decisions; the slab fast path
   * (allocator/slab/slab_fast_path.ts) likewise serves small `alloc` and slab
   * `free` calls where the layers run without debug mode at the default
   * alignment of 8. `false` forces the general paths, to compare or to step
   * through the general code.
   *
   * @default {true}
   */
  fastPath?: boolean;
  /**
   * Whether to write a fresh heap over memory that already holds one. By
   * default the constructor refuses (MemoryInUseError) memory that another
   * open allocator of this process manages, or whose control block is
   * initialised (a heap nobody closed). With `true` it overwrites that heap,
   * and the open allocators over the same bytes are closed, so their next
   * call throws AllocatorClosedError instead of corrupting the new heap.
   * An existing heap cannot be adopted: its header key lives only in the
   * allocator that wrote it, so its headers could not be verified.
   *
   * @default {false}
   */
  reinitialize?: boolean;
  /**
   * Whether the page-frame and slab layers (allocator/frames/, allocator/slab/)
   * serve `alloc` beside the blocks: small requests from kmalloc slab classes,
   * page-multiple requests aligned to exactly 4096 from buddy page frames,
   * everything else from blocks. They serve heaps with a region whose block
   * area holds at least 1 MiB (what is left of it after the policy's control
   * block and granule rounding: a buffer of exactly 1 MiB has blocks alone),
   * placing their chunks in the window's first 2 GiB; in debug mode
   * slab objects get guard bytes and free ones poison, as blocks do (page
   * runs neither: see `debug`). `false`
   * gives the pure block allocator. A shared heap keeps the layers' state in
   * its header (from a buffer of about 1.2 MiB; smaller ones have blocks alone).
   *
   * @default {true}
   */
  layers?: boolean;
}

/** Options of {@linkcode PhysicalAllocator.createCache}. */
export interface CacheOptions {
  /**
   * The alignment of every object, a power of two up to 4096: the object size
   * is rounded up to a multiple of it.
   *
   * @default {8}
   */
  align?: number;
}

/** A slab cache made by {@linkcode PhysicalAllocator.createCache}: objects of one size. */
export interface ObjectCache {
  /** The cache's name. */
  readonly name: string;
  /** Bytes of each object. */
  readonly objectBytes: number;
  /**
   * Hands out one object.
   *
   * @returns Its address.
   * @throws {OutOfMemoryError} If no slab can be had.
   */
  alloc(): number;
  /**
   * Takes an object back.
   *
   * @param address An object of this cache.
   * @throws {InvalidFreeError} If `address` is not an object of this cache.
   * @throws {DoubleFreeError} If the object is free.
   */
  free(address: number): void;
  /** The cache's slabinfo line. */
  info(): SlabInfo;
}

/** Options of {@linkcode PhysicalAllocator.fromBuffer}. */
export interface BufferAllocatorOptions extends AllocatorOptions {
  /**
   * The address the buffer's first byte stands for; a non-zero multiple of 8.
   *
   * @default {4096}
   */
  baseAddress?: number;
  /**
   * Shared heaps only (a SharedArrayBuffer given): how many Workers may be
   * attached at once, 1 to 255.
   *
   * @default {16}
   */
  workerSlots?: number;
  /**
   * Shared heaps only: how long a Worker waits for one hold of a lock by
   * another Worker before it throws LockTimeoutError naming the holder.
   *
   * @default {5000}
   */
  lockTimeoutMs?: number;
  /**
   * Shared heaps only: whether each Worker keeps a cache of the small blocks
   * it frees (requested sizes up to 256 bytes, 8 blocks per size) and hands
   * them out again without taking the lock. Cached blocks count as overhead
   * in `stats()` until they are used again or the Worker detaches. Not with
   * `debug`.
   *
   * @default {true when the caches take at most 1/8 of the buffer and debug is off}
   */
  workerCaches?: boolean;
}

/** Options of {@linkcode PhysicalAllocator.attach}. */
export interface AttachOptions {
  /**
   * This Worker's lock timeout; defaults to the one the heap was created with.
   */
  lockTimeoutMs?: number;
}

/**
 * The shared-heap state `fromBuffer` and `attach` hand to the constructor,
 * keyed by the memory object they made (the constructor's signature stays
 * the public one).
 */
const SHARED_BY_MEMORY = new WeakMap<PhysicalMemory, SharedHeapState>();

/** The claim of a Worker joining a shared heap: its header's Worker slots do the claiming. */
const NO_CLAIM: MemoryClaim = { release() {} };

/** The region of a shared heap's creator widened to its whole view: header and window. */
function sharedViewRegions(memory: PhysicalMemory, shared: SharedHeapState): MemoryRegion[] {
  const window = memory.regions[0];
  return [{
    base: window.base - shared.headerBytes,
    bytes: new Uint8Array(
      window.bytes.buffer,
      window.bytes.byteOffset - shared.headerBytes,
      window.bytes.byteLength + shared.headerBytes,
    ),
  }];
}

/**
 * A physical memory allocator over one or more regions.
 *
 * Addresses are plain numbers: the address of a payload in the memory's
 * address space (for identity-mapped memory, the physical address).
 *
 * @example Allocate, use, free
 * ```ts
 * import assert from "node:assert/strict";
 * import { PhysicalAllocator } from "@phys/allocator";
 *
 * using heap = PhysicalAllocator.fromBuffer(new Uint8Array(64 * 1024));
 * const page = heap.alloc(4096, 4096);
 * assert.equal(page % 4096, 0);
 * heap.bytes(page).fill(0xab);
 * heap.free(page);
 * heap.check();
 * assert.equal(heap.stats().usedBlocks, 0);
 * ```
 */
export class PhysicalAllocator implements Disposable {
  /** The placement policy in use. */
  readonly policy: PolicyName;
  /** The payload alignment of `alloc` calls that give none. */
  readonly defaultAlignBytes: number;

  readonly #memory: PhysicalMemory;
  readonly #blocks: BlockWords;
  /** The whole window as bytes, made once (realloc copies payloads through it). */
  readonly #window: Uint8Array;
  /** The window's length when made: a different length now means a detached or shrunk buffer. */
  readonly #windowBytes: number;
  /**
   * The window's length when a call first found it changed (detached, or a
   * resizable buffer shrunk below it), else -1: from then on every call
   * throws MemoryDetachedError, also after the buffer grew back.
   */
  #detachedBytes = -1;
  /** This heap's hold on its memory's bytes (see memory_claims.ts). */
  readonly #claim: MemoryClaim;
  readonly #layout: HeapLayout;
  readonly #policy: FreeListPolicy;
  readonly #control: ControlBlock;
  readonly #usable: readonly RegionLayout[];
  readonly #verifier: BlockVerifier;
  /** The general path's block edits (block_edits.ts). */
  readonly #edits: BlockEdits;
  #nativeActive = false;
  #closed = false;
  /** Guard and poison in debug mode, else null. */
  readonly #debug: DebugGuard | null;
  /** Bytes added to every request for its guard: GUARD_BYTES_MIN in debug mode, else 0. */
  readonly #guardBytes: number;

  readonly #counters = new HeapCounters();
  /** This Worker's handle on a shared heap, else null. */
  readonly #shared: SharedHeapState | null;
  /** This Worker's cache of freed small blocks (shared heaps), else null. */
  readonly #cache: WorkerCache | null;
  /** The shared heap's calls (Worker cache, block lock), else null. */
  readonly #sharedCalls: SharedCalls | null;
  /** The TLSF fast path for the common heap (a twin chosen by tlsfFastPathFor), else null. */
  readonly #fast: TlsfNarrowFastPath | TlsfCompactFastPath | TlsfFastPath | null;
  readonly #totalBytes: number;
  readonly #skippedBytes: number;
  readonly #fixedOverheadBytes: number;
  /** The slab cache behind each handle createCache returned (destroyed ones say so themselves). */
  readonly #cacheOf = new WeakMap<ObjectCache, SlabCache>();
  /** The page-frame and slab layers, or null when blocks serve everything. */
  readonly #layers: LayeredHeap | null;
  /** The slab fast path for layers without debug mode (see slab_fast_path.ts), else null. */
  readonly #slabFast: SlabFastPath | null;
  /** #slabFast while the allocator is open, else null: the one test the doors make first. */
  #slabDoor: SlabFastPath | null;
  /** The window's base address, which the doors subtract from addresses and add to offsets. */
  readonly #slabBase: number;

  /**
   * Creates an allocator over memory made of regions and writes one free
   * block into every region large enough for one.
   *
   * @param memory The regions to manage; all must view one window buffer.
   * @param options Policy, default alignment and native path.
   * @throws {InvalidMemoryError} If the regions overlap, view different buffers or none can hold
   *   a block (a region that starts at an address that is not a multiple of 8 is used from its
   *   first multiple of 8).
   * @throws {InvalidOptionError} If an option has an unknown value.
   * @throws {InvalidAlignmentError} If the `align` option is not a power of two up to 1 GiB.
   * @throws {NativeUnavailableError} If `native: true` and the library cannot be loaded.
   * @throws {MemoryInUseError} If the memory holds a live heap and `reinitialize` is not true.
   *
   * @example Several regions, the first too small for any block
   * ```ts
   * import assert from "node:assert/strict";
   * import { bufferMemory, PhysicalAllocator } from "@phys/allocator";
   *
   * const memory = bufferMemory([
   *   { start: 0x1000, length: 24 },
   *   { start: 0x2000, length: 4096 },
   * ]);
   * const heap = new PhysicalAllocator(memory, { policy: "first-fit" });
   * assert.equal(heap.stats().skippedRegions, 1);
   * assert.ok(heap.alloc(100) > 0x2000);
   * ```
   */
  constructor(memory: PhysicalMemory, options: AllocatorOptions = {}) {
    options = readOptions<AllocatorOptions>(options, ALLOCATOR_OPTION_NAMES);
    const policyName = options.policy === undefined ? POLICY_NAMES[0] : options.policy;
    if (!isPolicyName(policyName)) {
      throw new InvalidOptionError(
        `Cannot create allocator with policy ${describeValue(policyName)}: expected ${
          POLICY_NAMES.map((name) => `"${name}"`).join(" or ")
        }`,
      );
    }
    const align = options.align === undefined ? GRANULE_BYTES : options.align;
    validateAlignment(align, "create allocator");
    validateFlagOptions(options);
    this.policy = policyName;
    this.defaultAlignBytes = Math.max(align, GRANULE_BYTES);
    this.#memory = memory;
    this.#shared = SHARED_BY_MEMORY.get(memory) ?? null;
    this.#cache = this.#shared?.cache ?? null;

    const window = resolveWindow(memory);
    this.#window = window.bytes;
    this.#windowBytes = window.bytes.byteLength;
    // Every Worker of a shared heap keys its check words with the key in the shared header.
    const key = this.#shared?.headerKey ?? drawHeaderKey();
    this.#blocks = blockWordsFor(window.bytes, window.baseAddress, key);
    this.#debug = options.debug === true ? new DebugGuard(this.#blocks, window.bytes) : null;
    this.#guardBytes = options.debug === true ? GUARD_BYTES_MIN : 0;
    const largestArea = largestBlockArea(window.regions);
    const policyEntry = POLICIES[policyName];
    const controlBytes = policyEntry.controlBytes(largestArea);
    this.#layout = layoutRegions(window.regions, controlBytes);
    const controlAddress = this.#layout.controlAddress;
    const narrow = this.#blocks instanceof NarrowBlockWords;
    this.#control = controlAddress === 0
      ? ControlBlock.detached(controlBytes, narrow)
      : ControlBlock.within(
        this.#blocks.words,
        this.#blocks.index(controlAddress),
        controlAddress,
        controlBytes,
        narrow,
      );
    // (The verifier is made below; the policy asks only once the heap serves calls.)
    this.#policy = policyEntry.create(
      this.#blocks,
      this.#control,
      largestArea,
      (address) => this.#verifier.regionOf(address) !== null,
    );
    const tlsf = this.#policy instanceof TlsfPolicy ? this.#policy : null;
    this.#usable = this.#layout.regions.filter((region) => !region.skipped);
    this.#verifier = new BlockVerifier(this.#blocks, this.#usable, options.debug === true);
    // A Worker joining a shared heap expects it live; its creator is refused one like anybody.
    const joining = this.#shared !== null && !this.#shared.creating;
    if (options.reinitialize !== true && !joining) {
      refuseLiveHeap(this.#control, window.baseAddress);
    }
    this.#edits = new BlockEdits(
      this.#blocks,
      this.#policy,
      this.#counters,
      this.#verifier,
      this.#debug,
    );

    const totals = regionTotals(this.#layout.regions);
    this.#totalBytes = totals.totalBytes;
    this.#skippedBytes = totals.skippedBytes;
    this.#fixedOverheadBytes = totals.totalBytes - totals.skippedBytes - totals.blockAreaBytes;
    this.#nativeActive = attachNative(
      options.native === undefined ? "auto" : options.native,
      this.#policy,
      window.bytes,
      window.baseAddress,
      this.#control,
      this.#blocks.key,
    );
    // The last check, then the first write: a refused claim leaves the memory as it was.
    // A shared heap's joining Workers hold it together (its header's slot table keeps the
    // books); its creator claims the whole view, header included, so that a second heap
    // this Worker makes over overlapping bytes of the buffer is refused, not written over it.
    this.#claim = joining ? NO_CLAIM : claimMemory(
      this.#shared === null ? window.regions : sharedViewRegions(memory, this.#shared),
      options.reinitialize === true,
      this,
      PhysicalAllocator.#retire,
    );
    // A Worker joining a shared heap finds it written; only its creator writes it.
    if (this.#shared === null || this.#shared.creating) this.#edits.initRegions(this.#usable);
    this.#fast = options.fastPath !== false && tlsf !== null && this.#debug === null &&
        !this.#nativeActive && fastPathFits(window.baseAddress, this.#usable[0].blockStart)
      ? tlsfFastPathFor({
        words: this.#blocks.words,
        baseAddress: window.baseAddress,
        regions: this.#usable,
        controlWords: this.#control.words,
        controlIndex: this.#control.index,
        flCount: tlsf.flCount,
        key: this.#blocks.key,
        narrow: this.#blocks instanceof NarrowBlockWords,
      }, this.#counters)
      : null;
    this.#layers = this.#layersFor(options.layers, window.bytes, window.baseAddress);
    // Published after the layers were set up: the shared books hold every block written so far.
    this.#shared?.publish(this.#counters, this.#layers);
    this.#sharedCalls = this.#shared === null ? null : new SharedCalls(
      this.#shared,
      {
        tryAllocOwned: (sizeBytes, alignBytes) => this.#tryAllocOwned(sizeBytes, alignBytes),
        freeBlock: (address) => this.#freeBlock(address),
        freeOwned: (address) => this.#freeUnserved(address, SLAB_FALLBACK),
        tryAllocBlock: (sizeBytes, alignBytes) => this.#allocBlock(sizeBytes, alignBytes),
        inLayers: (address) => this.#layers !== null && this.#layers.owns(address),
        blocksWouldServe: (addresses, sizeBytes, alignBytes) =>
          this.#blocksWouldServe(
            addresses,
            sizeBytes,
            alignBytes < GRANULE_BYTES ? GRANULE_BYTES : alignBytes,
          ),
        reallocOwned: (address, sizeBytes) => this.#reallocOwned(address, sizeBytes),
        reallocBlockHeld: (address, sizeBytes) => this.#reallocBlock(address, sizeBytes, true),
        splitRun: (address, pieceBytes, count, sizeBytes) =>
          this.#edits.splitUsed(address - HEADER_BYTES, pieceBytes, count, sizeBytes),
        assertOpen: (operation) => this.#assertOpen(operation),
        usedBlockPayloads: () =>
          [...this.#walk()].filter((block) => !block.free).map((block) =>
            block.address + HEADER_BYTES
          ),
      },
      this.#blocks,
      this.defaultAlignBytes,
      this.#usable[0].blockStart + HEADER_BYTES,
      this.#usable[0].blockEnd,
      this.#layers,
    );
    // A shared heap's calls run the general path under its lock (its fields are the Worker's copy then).
    this.#slabFast = options.fastPath !== false && this.#layers !== null && this.#debug === null &&
        this.defaultAlignBytes === GRANULE_BYTES && this.#shared === null
      ? new SlabFastPath(this.#layers, this.#memory)
      : null;
    this.#slabDoor = this.#slabFast;
    this.#slabBase = window.baseAddress;
  }

  #layersFor(
    option: boolean | undefined,
    window: Uint8Array,
    baseAddress: number,
  ): LayeredHeap | null {
    if (option !== undefined && typeof option !== "boolean") {
      throw new InvalidOptionError(
        `Cannot create allocator with layers ${describeValue(option)}: expected true or false`,
      );
    }
    const largest = Math.max(0, ...this.#usable.map((r) => r.blockEnd - r.blockStart));
    // A shared heap's layers keep their state in its header, when it has one.
    // (its creator decided, from the same region: see layersFit).
    const shared = this.#shared;
    if (shared !== null && shared.layerState === null) return null;
    if (shared === null && (option === false || largest < LAYERS_MIN_AREA_BYTES)) return null;
    return new LayeredHeap(
      window,
      baseAddress,
      {
        take: (sizeBytes, alignBytes) => this.#allocBlock(sizeBytes, alignBytes),
        give: (address) => this.#freeBlock(address),
        growInPlace: (address, sizeBytes) => this.#growBlockInPlace(address, sizeBytes),
        largestFreeBytes: () => {
          const largestFree = this.#policy.largestFree();
          return largestFree === 0 ? 0 : largestFree - HEADER_BYTES;
        },
      },
      this.#guardBytes,
      shared === null ? null : { state: shared.layerState!, fresh: shared.creating },
    );
  }

  /**
   * Grows the layers' block at `address` (a chunk) in place to hold
   * `sizeBytes`, when its successor is free and large enough; false (nothing
   * written) otherwise, and always in debug mode (guards would move).
   */
  #growBlockInPlace(address: number, sizeBytes: number): boolean {
    if (this.#debug !== null) return false;
    const blocks = this.#blocks;
    const block = address - HEADER_BYTES;
    const size = blocks.size(block);
    const next = this.#edits.checkedSuccessor(block, size, blocks.flags(block));
    const newBlockSize = blockSizeFor(sizeBytes);
    if (next === 0 || !blocks.isFree(next) || size + blocks.size(next) < newBlockSize) return false;
    this.#edits.growInPlace(block, newBlockSize, sizeBytes, next);
    return true;
  }

  /** True when the page-frame and slab layers serve this allocator. */
  get layersActive(): boolean {
    return this.#layers !== null;
  }

  /**
   * Creates an allocator over a fresh or given buffer: one region covering
   * all of it. Needs no Deno permission.
   *
   * @param bytes The memory to manage, written by the allocator from now on.
   * @param options Policy, alignment, native path and the buffer's base address.
   * @returns The allocator.
   * @throws {InvalidMemoryError} If `bytes` is not a Uint8Array or ArrayBuffer, or too small for one block.
   * @throws {InvalidOptionError} If an option has an unknown value.
   * @throws {MemoryInUseError} If an open allocator of this Worker manages any of the
   *   bytes (a shared heap too: its header and window), and `reinitialize` is not true.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { PhysicalAllocator } from "@phys/allocator";
   *
   * const heap = PhysicalAllocator.fromBuffer(new ArrayBuffer(4096), { policy: "first-fit" });
   * const address = heap.alloc(16);
   * assert.equal(address % 8, 0);
   * ```
   */
  static fromBuffer(
    bytes: Uint8Array | ArrayBuffer | SharedArrayBuffer,
    options: BufferAllocatorOptions = {},
  ): PhysicalAllocator {
    if (!isBufferOrView(bytes)) {
      throw new InvalidMemoryError(
        `Cannot use ${
          describeValue(bytes)
        } as memory: expected a Uint8Array, an ArrayBuffer or a SharedArrayBuffer`,
      );
    }
    options = readOptions<BufferAllocatorOptions>(options, BUFFER_OPTION_NAMES);
    // A view's own getters are read no further (a subclass may lie about its length).
    if (bytes instanceof Uint8Array) bytes = plainView(bytes, "use memory");
    const buffer = bytes instanceof Uint8Array ? bytes.buffer : bytes;
    if ((buffer as ArrayBuffer).detached === true) {
      throw new InvalidMemoryError(
        "Cannot use a detached (transferred) buffer as memory: it has no bytes any more",
      );
    }
    const view = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
    if (view.buffer instanceof SharedArrayBuffer) {
      return PhysicalAllocator.#createShared(view, options);
    }
    const baseAddress = options.baseAddress === undefined
      ? DEFAULT_BUFFER_BASE_ADDRESS
      : options.baseAddress;
    validateBaseAddress(baseAddress);
    const memory: PhysicalMemory = {
      regions: [{
        base: baseAddress,
        bytes: new Uint8Array(view.buffer as ArrayBuffer, view.byteOffset, view.byteLength),
      }],
    };
    return new PhysicalAllocator(memory, options);
  }

  /**
   * Joins the shared heap another Worker created with `fromBuffer` over a
   * SharedArrayBuffer (sent to this Worker with `postMessage`): validates the
   * heap's header, claims a Worker slot and builds views; writes nothing
   * else. Every Worker sees the same addresses and may free, realloc or read
   * any allocation; `detach()` (or `close()`, `using`) gives the slot back.
   *
   * @param bytes The SharedArrayBuffer, or the same Uint8Array view of it the heap was created over.
   * @param options This Worker's lock timeout.
   * @returns This Worker's allocator over the shared heap.
   * @throws {SharedHeapInvalidError} If the buffer holds no ready shared heap of the view's length.
   * @throws {SharedHeapVersionError} If the heap was written by another format version.
   * @throws {WorkerSlotError} If every Worker slot is taken.
   * @throws {InvalidOptionError} If `lockTimeoutMs` is not a positive integer.
   *
   * @example Two handles on one heap (each Worker would hold one)
   * ```ts
   * import assert from "node:assert/strict";
   * import { PhysicalAllocator } from "@phys/allocator";
   *
   * const memory = new SharedArrayBuffer(1 << 16);
   * using creator = PhysicalAllocator.fromBuffer(memory);
   * using joiner = PhysicalAllocator.attach(memory);
   * const a = joiner.alloc(100);
   * creator.bytes(a).fill(7);
   * creator.free(a);
   * joiner.check();
   * assert.equal(joiner.stats().usedBlocks, 0);
   * ```
   */
  static attach(
    bytes: SharedArrayBuffer | Uint8Array,
    options: AttachOptions = {},
  ): PhysicalAllocator {
    const view = !isBufferOrView(bytes)
      ? bytes
      : bytes instanceof SharedArrayBuffer
      ? new Uint8Array(bytes)
      : bytes instanceof Uint8Array
      ? plainView(bytes, "attach")
      : bytes;
    if (
      !isBufferOrView(view) || !(view instanceof Uint8Array) ||
      !(view.buffer instanceof SharedArrayBuffer)
    ) {
      throw new SharedHeapInvalidError(
        `Cannot attach to ${
          describeValue(bytes)
        }: expected a SharedArrayBuffer or a Uint8Array over one`,
      );
    }
    // (null options mean none, as they always have here.)
    options = options === null
      ? {}
      : readOptions<AttachOptions>(options, ["lockTimeoutMs"], "attach");
    const shared = SharedHeapState.attach(view, options.lockTimeoutMs);
    try {
      return PhysicalAllocator.#overShared(view, shared, {
        policy: POLICY_NAMES[shared.settings.policyIndex],
        align: shared.settings.alignBytes,
        debug: shared.settings.debug,
        fastPath: shared.settings.fastPath,
      });
    } catch (error) {
      shared.detach();
      throw error;
    }
  }

  static #createShared(view: Uint8Array, options: BufferAllocatorOptions): PhysicalAllocator {
    const policy = options.policy === undefined ? POLICY_NAMES[0] : options.policy;
    if (policy !== "tlsf") {
      throw new InvalidOptionError(
        `Cannot create a shared heap with policy ${
          describeValue(policy)
        }: shared heaps use "tlsf" (first-fit keeps its list length in the Worker)`,
      );
    }
    if (options.native === true) {
      throw new InvalidOptionError(
        "Cannot create a shared heap with native: true: shared heaps search in TypeScript",
      );
    }
    if (options.layers !== undefined && typeof options.layers !== "boolean") {
      throw new InvalidOptionError(
        `Cannot create allocator with layers ${
          describeValue(options.layers)
        }: expected true or false`,
      );
    }
    const { slotCount, lockTimeoutMs } = sharedOptions(options.workerSlots, options.lockTimeoutMs);
    const caches = options.workerCaches;
    if ((caches !== undefined && typeof caches !== "boolean") || (caches && options.debug)) {
      throw new InvalidOptionError(
        `Cannot create a shared heap with workerCaches ${
          describeValue(caches)
        }: expected true or false, and false in debug mode`,
      );
    }
    const baseAddress = options.baseAddress === undefined
      ? DEFAULT_BUFFER_BASE_ADDRESS
      : options.baseAddress;
    validateBaseAddress(baseAddress);
    const align = options.align === undefined ? GRANULE_BYTES : options.align;
    validateAlignment(align, "create allocator");
    const workerCaches = caches ??
      (options.debug !== true && workerCachesFit(slotCount, view.byteLength));
    const shared = SharedHeapState.forCreation(view, {
      baseAddress,
      policyIndex: POLICY_NAMES.indexOf(policy),
      alignBytes: Math.max(align, GRANULE_BYTES),
      debug: options.debug === true,
      fastPath: options.fastPath !== false,
      slotCount,
      lockTimeoutMs,
      workerCaches,
      layers: options.layers !== false && layersFit(slotCount, view.byteLength, workerCaches),
    });
    return PhysicalAllocator.#overShared(view, shared, { ...options, native: false });
  }

  /** The allocator over a shared heap's region (the window after its header). */
  static #overShared(
    view: Uint8Array,
    shared: SharedHeapState,
    options: AllocatorOptions,
  ): PhysicalAllocator {
    const memory: PhysicalMemory = {
      regions: [{
        base: shared.settings.baseAddress + shared.headerBytes,
        bytes: view.subarray(shared.headerBytes),
      }],
    };
    SHARED_BY_MEMORY.set(memory, shared);
    return new PhysicalAllocator(memory, { ...options, native: false });
  }

  /** True when the Zig library serves this allocator's searches. */
  get nativeActive(): boolean {
    return this.#nativeActive;
  }

  /** True when the slab fast path serves this allocator's small `alloc` and slab `free` calls. */
  get slabFastPathActive(): boolean {
    return this.#slabFast !== null;
  }

  /** True when the TLSF fast path serves this allocator's `alloc`, `free` and `realloc` calls. */
  get fastPathActive(): boolean {
    return this.#fast !== null;
  }

  /** True when the heap lives in a SharedArrayBuffer that several Workers may use. */
  get shared(): boolean {
    return this.#shared !== null;
  }

  /** The SharedArrayBuffer of a shared heap (to `postMessage` to Workers that attach), else null. */
  get sharedBuffer(): SharedArrayBuffer | null {
    return this.#shared?.buffer ?? null;
  }

  /** This Worker's slot in a shared heap (1 for its creator), 0 for an unshared heap. */
  get workerSlot(): number {
    return this.#shared?.slot ?? 0;
  }

  /** Workers attached to a shared heap now (1 for an unshared heap). */
  get attachedWorkers(): number {
    return this.#shared?.attachedWorkers() ?? 1;
  }

  /**
   * Gives this Worker's slot in a shared heap back; the heap and every
   * allocation stay for the other Workers. Later calls on this allocator
   * throw HeapDetachedError. `close()` and `using` detach too.
   *
   * @throws {HeapDetachedError} If this Worker already detached.
   * @throws {SharedHeapInvalidError} If the heap is not shared.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { PhysicalAllocator } from "@phys/allocator";
   *
   * const heap = PhysicalAllocator.fromBuffer(new SharedArrayBuffer(1 << 16));
   * heap.detach();
   * assert.throws(() => heap.detach(), { code: "HEAP_DETACHED" });
   * ```
   */
  detach(): void {
    if (this.#shared === null) {
      throw new SharedHeapInvalidError(
        "Cannot detach: the heap is not shared (no SharedArrayBuffer)",
      );
    }
    this.#sharedCalls!.detach();
  }

  /**
   * Frees the slot of a Worker that ended without detaching, after its
   * owner called `terminate()` on it. Refused while the slot holds a lock:
   * that Worker stopped inside an operation and the heap may be half-edited.
   * `terminate()` stops a Worker busy in a loop only at its next turn of
   * the event loop (seconds later, in Deno 2.9), so the slot's handle is
   * revoked first: that Worker's next call is refused (`HeapDetachedError`),
   * and its cache is drained 20 ms later, once a call it had begun has
   * ended; no two Workers ever use one slot's cache.
   *
   * @param slot The ended Worker's `workerSlot`.
   * @throws {WorkerSlotError} If the slot is not attached, is this Worker's own, or holds a lock.
   * @throws {HeapDetachedError} If this Worker detached.
   * @throws {SharedHeapInvalidError} If the heap is not shared.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { PhysicalAllocator } from "@phys/allocator";
   *
   * const memory = new SharedArrayBuffer(1 << 16);
   * const heap = PhysicalAllocator.fromBuffer(memory);
   * const lost = PhysicalAllocator.attach(memory); // as if its Worker ended without detach()
   * heap.reclaimSlot(lost.workerSlot);
   * assert.equal(heap.attachedWorkers, 1);
   * ```
   */
  reclaimSlot(slot: number): void {
    if (this.#shared === null) {
      throw new SharedHeapInvalidError("Cannot reclaim a slot: the heap is not shared");
    }
    this.#sharedCalls!.reclaimSlot(slot);
  }

  /** True once `close()` has run or the memory was closed. */
  get closed(): boolean {
    return this.#closed || this.#memory.closed === true;
  }

  /**
   * Allocates a payload of `sizeBytes` aligned to `alignBytes`.
   *
   * @param sizeBytes The payload size, a positive integer.
   * @param alignBytes The payload alignment, a power of two up to 1 GiB; defaults to the allocator's.
   * @returns The payload's address.
   * @throws {InvalidSizeError} If the size is not a positive safe integer.
   * @throws {InvalidAlignmentError} If the alignment is not a power of two up to 1 GiB.
   * @throws {OutOfMemoryError} If no free block fits; the message names the largest.
   * @throws {HeapCorruptionError} In debug mode, if the memory handed out was written after it was freed.
   * @throws {AllocatorClosedError} If the allocator was closed.
   * @throws {MemoryDetachedError} If the memory's buffer was detached, transferred or shrunk.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { PhysicalAllocator } from "@phys/allocator";
   *
   * const heap = PhysicalAllocator.fromBuffer(new Uint8Array(1 << 16));
   * assert.equal(heap.alloc(100, 256) % 256, 0);
   * assert.throws(() => heap.alloc(1 << 20), { code: "OUT_OF_MEMORY" });
   * ```
   */
  alloc(sizeBytes: number, alignBytes: number = this.defaultAlignBytes): number {
    const address = this.tryAlloc(sizeBytes, alignBytes);
    if (address === 0) throw this.#outOfMemory(sizeBytes, alignBytes);
    return address;
  }

  /**
   * Like `alloc`, but returns 0 instead of throwing when no free block fits.
   * Invalid arguments still throw.
   *
   * @param sizeBytes The payload size, a positive integer.
   * @param alignBytes The payload alignment, a power of two up to 1 GiB.
   * @returns The payload's address, or 0 when memory is short.
   * @throws {InvalidSizeError} If the size is not a positive safe integer.
   * @throws {InvalidAlignmentError} If the alignment is not a power of two up to 1 GiB.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { PhysicalAllocator } from "@phys/allocator";
   *
   * const heap = PhysicalAllocator.fromBuffer(new Uint8Array(4096));
   * assert.equal(heap.tryAlloc(1 << 20), 0);
   * ```
   */
  tryAlloc(sizeBytes: number, alignBytes: number = this.defaultAlignBytes): number {
    // The slab fast path's door (the doors of free and realloc likewise): it
    // validates the size itself and serves only the default alignment (8).
    // It answers in window offsets (int32), and the door adds the base: small
    // enough for V8 to inline into the caller, so an address past 2^31
    // (identity-mapped memory) is never boxed into a heap number on the way.
    const slab = this.#slabDoor;
    if (slab !== null && alignBytes === this.defaultAlignBytes) {
      const offset = slab.allocOffset(sizeBytes);
      if (offset !== SLAB_FALLBACK) return this.#slabBase + offset;
    }
    // The unary plus tells V8 the general answer is a number too: where the
    // door is inlined, its two answers then merge as an unboxed double (else
    // every address past 2^31 is boxed at the merge).
    return +this.#tryAllocSlow(sizeBytes, alignBytes);
  }

  /** tryAlloc() of what the slab fast path's door did not serve (a shared heap's calls, checks first). */
  #tryAllocSlow(sizeBytes: number, alignBytes: number): number {
    if (this.#sharedCalls !== null) return this.#sharedCalls.tryAlloc(sizeBytes, alignBytes);
    this.#assertOpen("allocate");
    return this.#tryAllocOwned(sizeBytes, alignBytes);
  }

  /** tryAlloc() once the heap is this caller's (unshared, or the block lock held). */
  #tryAllocOwned(sizeBytes: number, alignBytes: number): number {
    validateSize(sizeBytes, "allocate");
    // The default alignment was validated when the allocator was made.
    if (alignBytes !== this.defaultAlignBytes) {
      validateAlignment(alignBytes, `allocate ${sizeBytes} bytes`);
    }
    const align = alignBytes < GRANULE_BYTES ? GRANULE_BYTES : alignBytes;
    if (this.#layers !== null) {
      const address = this.#allocLayered(sizeBytes, align);
      if (address !== 0) return address;
    }
    const address = this.#allocBlock(sizeBytes, align);
    if (address !== 0 || !this.#reservesWouldServe(sizeBytes, align)) return address;
    this.#layers!.releaseReserves();
    return this.#allocBlock(sizeBytes, align);
  }

  /**
   * True when giving the layers' reserves back would surely let a block of
   * `sizeBytes` at `align` be carved, after the block heap found none: each
   * block given back (a chunk, an empty slab's descriptor) merges with its
   * free neighbours and with blocks given back beside it, and the policy must
   * surely find one merged block. Only then are reserves given back, so a
   * failed allocation changes nothing.
   */
  #reservesWouldServe(sizeBytes: number, align: number): boolean {
    if (this.#layers === null) return false;
    return this.#blocksWouldServe(this.#layers.releasableBlocks(), sizeBytes, align);
  }

  /**
   * True when freeing the used blocks at payload `addresses` would surely let
   * a block of `sizeBytes` at `align` be carved: each block merges with its
   * free neighbours and with freed blocks beside it, and the policy must
   * surely find one merged block (a shared heap's Worker cache is drained on
   * the same test).
   */
  #blocksWouldServe(addresses: readonly number[], sizeBytes: number, align: number): boolean {
    const blockSize = blockSizeFor(sizeBytes + this.#guardBytes);
    if (blockSize > this.#layout.largestAreaBytes) return false;
    const blocks = this.#blocks;
    const extents = addresses.map((address) => {
      const block = address - HEADER_BYTES;
      const flags = blocks.flags(block);
      const end = block + blocks.size(block);
      const start = (flags & FLAG_PREV_FREE) !== 0 ? block - blocks.previousFooter(block) : block;
      const nextFree = (flags & FLAG_LAST) === 0 && blocks.isFree(end);
      return { start, end: nextFree ? end + blocks.size(end) : end };
    }).sort((a, b) => a.start - b.start);
    // The free blocks the giving back leaves, by size.
    const merged: number[] = [];
    for (let i = 0; i < extents.length; i++) {
      let { start, end } = extents[i];
      // Extents that touch merge into one free block once both chunks are back.
      while (i + 1 < extents.length && extents[i + 1].start <= end) {
        end = Math.max(end, extents[++i].end);
      }
      merged.push(end - start);
    }
    return merged.some((freeBytes) =>
      this.#policy.findsAnyOf(freeBytes, blockSize, align, merged.length)
    );
  }

  /** A block for a validated request, or 0. */
  #allocBlock(sizeBytes: number, align: number): number {
    const blockSize = blockSizeFor(sizeBytes + this.#guardBytes);
    if (blockSize > this.#layout.largestAreaBytes) return 0;
    if (this.#fast !== null && align === GRANULE_BYTES) {
      const address = this.#fast.alloc(blockSize, sizeBytes);
      if (address !== FALLBACK) return address;
    }
    return this.#allocGeneral(blockSize, align, sizeBytes);
  }

  /** The layers' answer to a validated request (slab, frames), or 0 to use blocks. */
  #allocLayered(sizeBytes: number, align: number): number {
    const layers = this.#layers!;
    if (sizeBytes <= KMALLOC_MAX_BYTES) return layers.kmalloc(sizeBytes, align);
    if (
      sizeBytes <= CHUNK_FRAMES_MAX * FRAME_BYTES && sizeBytes % FRAME_BYTES === 0 &&
      align === FRAME_BYTES
    ) return layers.allocPages(sizeBytes / FRAME_BYTES);
    // A large request takes free frames when a free buddy block holds it
    // already: frames the slabs left free cannot serve blocks, and the block
    // heap would place it above them (raising the footprint). Never in debug
    // mode: a page run has no guard bytes past the request.
    if (
      sizeBytes >= PAGE_RUN_BLOCK_MIN_BYTES && sizeBytes <= CHUNK_FRAMES_MAX * FRAME_BYTES &&
      align <= FRAME_BYTES && this.#guardBytes === 0
    ) {
      const frames = Math.ceil(sizeBytes / FRAME_BYTES);
      if (layers.frames.hasFreeBlock(frames)) return layers.allocPages(frames, sizeBytes);
    }
    return 0;
  }

  /** tryAlloc() on the general path (kept apart as #freeGeneral is). */
  #allocGeneral(blockSize: number, align: number, sizeBytes: number): number {
    let block = this.#policy.find(blockSize, align);
    if (block === 0 && align > GRANULE_BYTES && this.#policy instanceof TlsfPolicy) {
      block = this.#policy.findAligned(blockSize, align, this.#counters.freeBlocks);
    }
    if (block === 0) return 0;
    if (this.#debug === null) return this.#edits.carve(block, blockSize, align, sizeBytes);
    this.#debug.verifyBeforeCarve(block, blockSize, align);
    const address = this.#edits.carve(block, blockSize, align, sizeBytes);
    this.#debug.armUsed(address - HEADER_BYTES);
    return address;
  }

  /**
   * Frees the allocation at `address` and merges it with free neighbours.
   *
   * @param address A payload address returned by `alloc`, `tryAlloc` or `realloc`.
   * @throws {InvalidFreeError} If `address` is not the payload of a block.
   * @throws {DoubleFreeError} If the block is already free.
   * @throws {HeapCorruptionError} If the block's or a neighbour's header is damaged, or (debug mode) its guard bytes.
   * @throws {AllocatorClosedError} If the allocator was closed.
   * @throws {MemoryDetachedError} If the memory's buffer was detached, transferred or shrunk.
   *
   * @example Freeing everything restores one free block per region
   * ```ts
   * import assert from "node:assert/strict";
   * import { PhysicalAllocator } from "@phys/allocator";
   *
   * const heap = PhysicalAllocator.fromBuffer(new Uint8Array(4096));
   * const a = heap.alloc(64);
   * const b = heap.alloc(64);
   * heap.free(a);
   * heap.free(b);
   * assert.equal(heap.stats().freeBlocks, 1);
   * assert.throws(() => heap.free(b), { code: "DOUBLE_FREE" });
   * ```
   */
  free(address: number): void {
    // The slab fast path's door (see tryAlloc): an address is no number, or
    // a window offset from here on. The fast path also says when no chunk
    // holds the address: then the layers are not asked again.
    const slab = this.#slabDoor;
    const layered = slab === null
      ? SLAB_FALLBACK
      : typeof address !== "number"
      ? SLAB_NOT_IN_LAYERS
      : slab.freeAt(address - this.#slabBase);
    if (layered !== SLAB_FREED) this.#freeSlow(address, layered);
  }

  /** free() of what the slab fast path's door did not free (`layered` says why): checks first. */
  #freeSlow(address: number, layered: number): void {
    if (this.#sharedCalls !== null) return this.#sharedCalls.free(address);
    this.#assertOpen("free");
    this.#freeUnserved(address, layered);
  }

  /**
   * free() of what the slab fast path did not free (`layered` says why):
   * kept apart so that free() stays small enough for V8 to inline with the
   * fast path it calls.
   */
  #freeUnserved(address: number, layered: number): void {
    if (this.#layers !== null) {
      if (layered === SLAB_FALLBACK && this.#layers.free(address)) return;
      this.#refuseInternal(address, "free", InvalidFreeError);
    }
    if (this.#fast === null || this.#fast.free(address) === FALLBACK) this.#freeGeneral(address);
  }

  /** Frees a block of the block heap (the layers' chunks and descriptors). */
  #freeBlock(address: number): void {
    if (this.#fast === null || this.#fast.free(address) === FALLBACK) this.#freeGeneral(address);
  }

  /**
   * free() on the general path. Kept apart from free() so that free() stays
   * small enough for V8 to inline into callers, in front of the fast path.
   */
  #freeGeneral(address: number): void {
    const block = this.#verifier.usedBlockAt(address, "free", InvalidFreeError);
    this.#debug?.verifyUsed(block, "free");
    this.#edits.free(block);
  }

  /**
   * Resizes the allocation at `address`: shrinks in place, grows in place
   * when the next block is free, and otherwise moves the payload to a new
   * block (aligned to the allocator's default) and frees the old one. A page
   * run shrinks in place too (its frames past the new size go back, its page
   * alignment stays); a slab object stays while the new size falls in its own
   * size class (its slack changes), and otherwise moves to the class (or
   * layer) that the new size falls in.
   *
   * @param address A live payload address.
   * @param sizeBytes The new payload size, a positive integer.
   * @returns The payload's address, which changes only when it moved.
   * @throws {InvalidFreeError} If `address` is not the payload of a block.
   * @throws {DoubleFreeError} If the block is free.
   * @throws {InvalidSizeError} If the size is not a positive safe integer.
   * @throws {OutOfMemoryError} If the payload must move and no block fits; the old block is kept.
   * @throws {HeapCorruptionError} If a header is damaged, or (debug mode) the guard bytes or poison.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { PhysicalAllocator } from "@phys/allocator";
   *
   * const heap = PhysicalAllocator.fromBuffer(new Uint8Array(4096));
   * const a = heap.alloc(8);
   * heap.bytes(a).set([1, 2, 3, 4, 5, 6, 7, 8]);
   * const b = heap.realloc(a, 200);
   * assert.deepEqual([...heap.bytes(b, 8)], [1, 2, 3, 4, 5, 6, 7, 8]);
   * ```
   */
  realloc(address: number, sizeBytes: number): number {
    // The slab fast path's door (see tryAlloc, also for the unary plus).
    const slab = this.#slabDoor;
    if (slab !== null && typeof address === "number") {
      const offset = slab.reallocAt(address - this.#slabBase, sizeBytes);
      if (offset !== SLAB_FALLBACK) return this.#slabBase + offset;
    }
    return +this.#reallocSlow(address, sizeBytes);
  }

  /** realloc() of what the slab fast path's door did not serve: checks first. */
  #reallocSlow(address: number, sizeBytes: number): number {
    if (this.#sharedCalls !== null) return this.#sharedCalls.realloc(address, sizeBytes);
    this.#assertOpen("reallocate");
    return this.#reallocOwned(address, sizeBytes);
  }

  /** realloc() once the heap is this caller's. */
  #reallocOwned(address: number, sizeBytes: number): number {
    if (this.#layers !== null && this.#layers.owns(address)) {
      return this.#reallocLayered(address, sizeBytes);
    }
    return this.#reallocBlock(address, sizeBytes, false);
  }

  /**
   * realloc() of an address no chunk of the layers holds (a block, or a bad
   * address the block heap reports): in place when it can, else moved.
   * `held` (a shared heap's hold of the heap lock alone): the new payload
   * comes from #tryAllocOwned (which throws EveryLockNeeded, before any
   * change, when it reaches a slab cache) and the old block is freed
   * directly, not through the facade (which would take locks), and 0 means
   * no memory was found, nothing changed.
   */
  #reallocBlock(address: number, sizeBytes: number, held: boolean): number {
    if (this.#layers !== null) this.#refuseInternal(address, "reallocate", InvalidFreeError);
    if (this.#fast !== null) {
      const resized = this.#fast.resize(address, sizeBytes);
      if (resized > 0) return resized;
      if (resized === 0) return this.#move(address, address - HEADER_BYTES, sizeBytes, held);
    }
    return this.#reallocGeneral(address, sizeBytes, held);
  }

  /** realloc() of an address in a chunk: in place within its kmalloc class, else moved. */
  #reallocLayered(address: number, sizeBytes: number): number {
    const layers = this.#layers!;
    // Debug mode: the guard is verified before anything is written (a move
    // would allocate first, and the free that ends it would find it then).
    const owner = layers.ownerOf(address, "reallocate", this.#debug !== null);
    validateSize(sizeBytes, "reallocate", address);
    if (sizeBytes === owner.sizeBytes || layers.resizeInPlace(address, sizeBytes)) return address;
    // A page run shrinks where it stands, as a block does (its frames past the
    // new size go back): it keeps its address and its page alignment.
    if (owner.pages && sizeBytes < owner.sizeBytes && layers.shrinkInPlace(address, sizeBytes)) {
      return address;
    }
    const moved = this.tryAlloc(sizeBytes, this.defaultAlignBytes);
    if (moved === 0) {
      // A shrink stays where it stands when no memory holds it smaller.
      if (sizeBytes < owner.sizeBytes && layers.shrinkInPlace(address, sizeBytes)) return address;
      throw this.#outOfMemory(sizeBytes, this.defaultAlignBytes);
    }
    const from = address - this.#blocks.baseAddress;
    this.#window.copyWithin(
      moved - this.#blocks.baseAddress,
      from,
      from + Math.min(owner.sizeBytes, sizeBytes),
    );
    this.free(address);
    return moved;
  }

  /** realloc() on the general path (kept apart as #freeGeneral is); `held` as in #reallocBlock. */
  #reallocGeneral(address: number, sizeBytes: number, held: boolean): number {
    const block = this.#verifier.usedBlockAt(address, "reallocate", InvalidFreeError);
    // The address goes into the message only on error: building it costs more than a reallocation.
    validateSize(sizeBytes, "reallocate", address);
    this.#debug?.verifyUsed(block, "reallocate");
    const blocks = this.#blocks;
    const size = blocks.size(block);
    const flags = blocks.flags(block);
    const next = this.#edits.checkedSuccessor(block, size, flags);
    const newBlockSize = blockSizeFor(sizeBytes + this.#guardBytes);
    if (newBlockSize <= size) {
      this.#edits.shrinkInPlace(block, newBlockSize, sizeBytes, next);
      this.#debug?.afterResize(block, block + size, this.#verifier.regionOf(block)!.blockEnd);
      return address;
    }
    if (next !== 0 && blocks.isFree(next) && size + blocks.size(next) >= newBlockSize) {
      this.#debug?.verifyFree(next, next, block + newBlockSize + MIN_BLOCK_BYTES, "reallocate");
      this.#edits.growInPlace(block, newBlockSize, sizeBytes, next);
      this.#debug?.afterResize(block, block + size, this.#verifier.regionOf(block)!.blockEnd);
      return address;
    }
    return this.#move(address, block, sizeBytes, held);
  }

  /**
   * Moves the verified live allocation at `address` (block `block`) to a new
   * block of `sizeBytes` at the default alignment, like C's realloc; `held`
   * as in #reallocBlock.
   */
  #move(address: number, block: number, sizeBytes: number, held: boolean): number {
    const blocks = this.#blocks;
    // Verified before anything is written: the free() that ends the move must not throw.
    this.#edits.checkedPredecessor(block, blocks.flags(block));
    const oldSizeBytes = blocks.size(block) - HEADER_BYTES - blocks.slack(block);
    const moved = held
      ? this.#tryAllocOwned(sizeBytes, this.defaultAlignBytes)
      : this.tryAlloc(sizeBytes, this.defaultAlignBytes);
    if (moved === 0) {
      if (held) return 0;
      throw this.#outOfMemory(sizeBytes, this.defaultAlignBytes);
    }
    const from = address - blocks.baseAddress;
    this.#window.copyWithin(
      moved - blocks.baseAddress,
      from,
      from + Math.min(oldSizeBytes, sizeBytes),
    );
    if (held) this.#freeBlock(address);
    else this.free(address);
    return moved;
  }

  /**
   * A view of a live allocation's payload.
   *
   * @param address A live payload address.
   * @param lengthBytes How many bytes to view; defaults to the size requested.
   * @returns A `Uint8Array` over the payload in the managed memory.
   * @throws {InvalidAddressError} If `address` is not a live payload.
   * @throws {InvalidSizeError} If `lengthBytes` exceeds the size requested.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { PhysicalAllocator } from "@phys/allocator";
   *
   * const heap = PhysicalAllocator.fromBuffer(new Uint8Array(4096));
   * const a = heap.alloc(10);
   * assert.equal(heap.bytes(a).length, 10);
   * assert.throws(() => heap.bytes(a, 11), { code: "INVALID_SIZE" });
   * ```
   */
  bytes(address: number, lengthBytes?: number): Uint8Array {
    // A shared heap views a live block of the Worker cache's without the lock (its size is stable).
    const live = this.#sharedCalls?.livePayloadBytes(address) ?? -1;
    if (live >= 0) return this.#view(address, live, lengthBytes);
    return this.#locked("view", () => this.#bytesOwned(address, lengthBytes));
  }

  #bytesOwned(address: number, lengthBytes: number | undefined): Uint8Array {
    this.#sharedCalls?.refuseCached(address, "view");
    return this.#view(address, this.#payloadBytes(address, "view"), lengthBytes);
  }

  /** A view of `lengthBytes` (default: all `sizeBytes`) of the verified payload at `address`. */
  #view(address: number, sizeBytes: number, lengthBytes: number | undefined): Uint8Array {
    // Only a missing length means the whole payload: null is a bad length like any other.
    const length = lengthBytes === undefined ? sizeBytes : lengthBytes;
    if (!Number.isSafeInteger(length) || length < 0 || length > sizeBytes) {
      throw new InvalidSizeError(
        `Cannot view ${describeValue(length)} bytes at ${
          hex(address)
        }: the allocation holds ${sizeBytes} bytes`,
      );
    }
    const window = this.#window;
    return new Uint8Array(
      window.buffer,
      window.byteOffset + (address - this.#blocks.baseAddress),
      length,
    );
  }

  /**
   * The size requested for the live allocation at `address`.
   *
   * @param address A live payload address.
   * @returns The payload size in bytes.
   * @throws {InvalidAddressError} If `address` is not a live payload.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { PhysicalAllocator } from "@phys/allocator";
   *
   * const heap = PhysicalAllocator.fromBuffer(new Uint8Array(4096));
   * assert.equal(heap.sizeOf(heap.alloc(13)), 13);
   * ```
   */
  sizeOf(address: number): number {
    const live = this.#sharedCalls?.livePayloadBytes(address) ?? -1;
    if (live >= 0) return live;
    return this.#locked("size", () => {
      this.#sharedCalls?.refuseCached(address, "size");
      return this.#payloadBytes(address, "size");
    });
  }

  /**
   * The bytes the live allocation at `address` may hold, like C's
   * malloc_usable_size: its block payload with slack, its slab object or its
   * page run. At least `sizeOf(address)`. Unlike malloc_usable_size, the
   * bytes past `sizeOf` are not the caller's to use: `bytes()` views at most
   * `sizeOf` bytes, and `realloc` is the way to grow into the capacity.
   *
   * @param address A live payload address.
   * @returns The capacity in bytes.
   * @throws {InvalidAddressError} If `address` is not a live payload.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { PhysicalAllocator } from "@phys/allocator";
   *
   * const heap = PhysicalAllocator.fromBuffer(new Uint8Array(4 << 20));
   * assert.equal(heap.capacityOf(heap.alloc(100)), 104); // the kmalloc-104 class
   * ```
   */
  capacityOf(address: number): number {
    return this.#locked("size", () => this.#capacityOfOwned(address));
  }

  #capacityOfOwned(address: number): number {
    this.#sharedCalls?.refuseCached(address, "size");
    // Debug mode: every byte past the size asked for is a guard byte.
    if (this.#debug !== null) return this.#payloadBytes(address, "size");
    if (this.#layers !== null && this.#layers.owns(address)) {
      try {
        return this.#layers.ownerOf(address, "size").capacityBytes;
      } catch (error) {
        if (!(error instanceof AllocatorError) || error.code === "HEAP_CORRUPTION") throw error;
        throw new InvalidAddressError(error.message);
      }
    }
    this.#refuseInternal(address, "size", InvalidAddressError);
    const block = this.#verifier.usedBlockAt(address, "size", InvalidAddressError);
    return this.#blocks.size(block) - HEADER_BYTES;
  }

  /** True when `address` is the payload of a live block of the block heap. */
  #isLiveBlock(address: number): boolean {
    try {
      this.#verifier.usedBlockAt(address, "free pages", InvalidFreeError);
      return true;
    } catch {
      return false;
    }
  }

  /** True when `address` is a live slab object (any question about it is free()'s to answer). */
  #isSlabObject(address: number): boolean {
    try {
      return !this.#layers!.ownerOf(address, "free pages").pages;
    } catch {
      return false;
    }
  }

  /**
   * Throws when `address` is a block the layers took for themselves (a chunk
   * or a slab descriptor): alloc never handed it out, so no caller may free,
   * resize or view it, although the block heap would find a used block there.
   */
  #refuseInternal(address: number, operation: string, ErrorClass: AddressErrorClass): void {
    if (this.#layers !== null && this.#layers.isInternalBlock(address)) {
      throw new ErrorClass(
        `Cannot ${operation} address ${
          hex(address)
        }: it is not an allocation (the page-frame and slab layers keep their own metadata there)`,
      );
    }
  }

  /** The requested size of the live allocation at `address`, in any layer. */
  #payloadBytes(address: number, operation: string): number {
    if (this.#layers !== null && this.#layers.owns(address)) {
      try {
        return this.#layers.ownerOf(address, operation).sizeBytes;
      } catch (error) {
        if (!(error instanceof AllocatorError) || error.code === "HEAP_CORRUPTION") throw error;
        throw new InvalidAddressError(error.message);
      }
    }
    this.#refuseInternal(address, operation, InvalidAddressError);
    const block = this.#verifier.usedBlockAt(address, operation, InvalidAddressError);
    // A shared heap's size class may record more than was asked for (its hidden slack).
    return this.#blocks.size(block) - HEADER_BYTES - this.#blocks.slack(block) -
      (this.#sharedCalls?.hiddenBytes(address) ?? 0);
  }

  /**
   * Allocates 2^order contiguous page frames (4 KiB each), like Linux's
   * alloc_pages: from the buddy allocator when the layers serve this heap,
   * else (or when the frames cannot serve it) a 4096-aligned block of
   * 4096 << order bytes. freePages frees either.
   *
   * @param order 0 to 10 (4 KiB to 4 MiB).
   * @returns The first frame's address, a multiple of 4096.
   * @throws {InvalidSizeError} If the order is not an integer from 0 to 10.
   * @throws {OutOfMemoryError} If no frames are free.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { PhysicalAllocator } from "@phys/allocator";
   *
   * const heap = PhysicalAllocator.fromBuffer(new Uint8Array(8 << 20));
   * const pages = heap.allocPages(2);
   * assert.equal(pages % 4096, 0);
   * assert.equal(heap.sizeOf(pages), 16384);
   * heap.freePages(pages);
   * ```
   */
  allocPages(order: number): number {
    this.#assertOpen("allocate pages");
    if (!Number.isInteger(order) || order < 0 || order > ORDER_MAX) {
      throw new InvalidSizeError(
        `Cannot allocate pages of order ${
          describeValue(order)
        }: the order must be an integer from 0 to ${ORDER_MAX}`,
      );
    }
    return this.alloc(FRAME_BYTES << order, FRAME_BYTES);
  }

  /**
   * Frees pages from `allocPages` (their order is remembered in the frame table).
   *
   * @param address The address `allocPages` returned.
   * @throws {InvalidFreeError} If `address` is not page-aligned or not a live allocation.
   * @throws {DoubleFreeError} If the pages are free.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { PhysicalAllocator } from "@phys/allocator";
   *
   * const heap = PhysicalAllocator.fromBuffer(new Uint8Array(8 << 20));
   * const page = heap.allocPages(0);
   * heap.freePages(page);
   * assert.throws(() => heap.freePages(page), { code: "DOUBLE_FREE" });
   * ```
   */
  freePages(address: number): void {
    this.#assertOpen("free pages");
    if (typeof address !== "number" || address % FRAME_BYTES !== 0) {
      throw new InvalidFreeError(
        `Cannot free pages at ${
          typeof address === "number" ? hex(address) : describeValue(address)
        }: the address is not a multiple of ${FRAME_BYTES}`,
      );
    }
    // A shared heap's Worker knows the layers' state only while it holds the
    // lock (another Worker may have made the chunk): the checks run there,
    // unless the frame table says at once that a Worker cache takes the run.
    const shared = this.#sharedCalls;
    if (shared === null) this.#refuseNotPages(address);
    else if (!shared.takesPageRun(address)) {
      shared.locked("free pages", () => this.#refuseNotPages(address));
    }
    // free() tells a live page run from a freed one (DOUBLE_FREE) or an interior address.
    this.free(address);
  }

  /**
   * freePages()'s refusal of a live block that is not whole pages, or of a
   * slab object (free() would free them). A block of whole pages at a page
   * boundary is what allocPages returns when no frames serve it (a heap
   * without the layers, or frames short of a run): freePages frees it.
   */
  #refuseNotPages(address: number): void {
    const inChunk = this.#layers !== null && this.#layers.owns(address);
    if (!inChunk && this.#isLiveBlock(address)) {
      const sizeBytes = this.#payloadBytes(address, "free pages");
      if (sizeBytes % FRAME_BYTES !== 0) {
        throw new InvalidFreeError(
          `Cannot free pages at ${
            hex(address)
          }: it is a block of ${sizeBytes} bytes, not whole pages (allocPages, or an alloc of whole pages at a page boundary)`,
        );
      }
    }
    if (inChunk && this.#isSlabObject(address)) {
      throw new InvalidFreeError(
        `Cannot free pages at ${hex(address)}: it is a slab object, not a page run`,
      );
    }
  }

  /**
   * Creates a slab cache of `objectBytes` objects, like Linux's
   * kmem_cache_create: objects come from slabs of page frames, with no
   * header, and go back to the cache.
   *
   * @param name The cache's name (in slabinfo).
   * @param objectBytes Bytes of each object, 1 to 16384 (rounded up to 8 and to the alignment).
   * @param options The objects' alignment.
   * @returns The cache.
   * @throws {InvalidOptionError} If the heap is shared (its Workers share the kmalloc caches
   *   only), the layers do not serve this heap, the name is empty, not a
   *   string or taken (the kmalloc classes are named `kmalloc-8` ... `kmalloc-256`), or the
   *   options are not an object.
   * @throws {InvalidSizeError} If the object size is out of range.
   * @throws {InvalidAlignmentError} If the alignment is not a power of two up to 4096.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { PhysicalAllocator } from "@phys/allocator";
   *
   * const heap = PhysicalAllocator.fromBuffer(new Uint8Array(8 << 20));
   * const inodes = heap.createCache("inode", 200);
   * const a = inodes.alloc();
   * const b = inodes.alloc();
   * assert.equal(heap.sizeOf(a), 200);
   * inodes.free(a);
   * assert.throws(() => inodes.free(a), { code: "DOUBLE_FREE" });
   * assert.equal(inodes.info().activeObjects, 1);
   * inodes.free(b);
   * ```
   */
  createCache(name: string, objectBytes: number, options: CacheOptions = {}): ObjectCache {
    // The options first: a getter among them runs the caller's code, which may
    // close the heap or detach its buffer; the checks below see what it left.
    options = readOptions<CacheOptions>(
      options,
      ["align"],
      `create cache ${typeof name === "string" ? name : describeValue(name)}`,
    );
    this.#assertOpen("create a cache");
    if (this.#shared !== null) {
      throw new InvalidOptionError(
        `Cannot create cache ${
          describeValue(name)
        } on a shared heap: its Workers share the kmalloc caches only (a named cache's handle lives in one Worker)`,
      );
    }
    if (this.#layers === null) {
      throw new InvalidOptionError(
        `Cannot create cache ${
          describeValue(name)
        }: the page-frame and slab layers do not serve this heap`,
      );
    }
    if (typeof name !== "string" || name.length === 0) {
      throw new InvalidOptionError(
        `Cannot create cache ${describeValue(name)}: the name must be a non-empty string`,
      );
    }
    if (this.#layers.caches.some((cache) => !cache.destroyed && cache.name === name)) {
      throw new InvalidOptionError(
        `Cannot create cache ${describeValue(name)}: a cache of that name exists`,
      );
    }
    const align = options.align === undefined ? GRANULE_BYTES : options.align;
    if (
      !Number.isInteger(align) || align <= 0 || align > FRAME_BYTES || (align & (align - 1)) !== 0
    ) {
      throw new InvalidAlignmentError(
        `Cannot create cache ${name} with alignment ${
          describeValue(align)
        }: the alignment must be a power of two from 1 to ${FRAME_BYTES}`,
      );
    }
    // At most 16 KiB: a slab of 8 frames holds two objects, or one with debug guards.
    if (!Number.isInteger(objectBytes) || objectBytes <= 0 || objectBytes > FRAME_BYTES * 4) {
      throw new InvalidSizeError(
        `Cannot create cache ${name} of ${
          describeValue(objectBytes)
        } bytes: the size must be an integer from 1 to ${FRAME_BYTES * 4}`,
      );
    }
    const step = Math.max(align, GRANULE_BYTES);
    if (!this.#layers.cacheIdFree) {
      throw new InvalidOptionError(
        `Cannot create cache ${name}: the heap already holds ${CACHE_COUNT_MAX} caches`,
      );
    }
    const rounded = Math.ceil(objectBytes / step) * step;
    return this.#cacheHandle(this.#layers.createCache(name, rounded, false, step), rounded);
  }

  #cacheHandle(cache: SlabCache, objectBytes: number): ObjectCache {
    const layers = this.#layers!;
    const handle: ObjectCache = {
      name: cache.name,
      objectBytes,
      alloc: () => {
        this.#assertOpen("allocate from a cache");
        this.#assertNotDestroyed(cache, "allocate from");
        // Other caches' empty slabs serve a new slab when they surely can:
        // the frames take them back before they grow (LayeredHeap's reclaim).
        const address = layers.cacheAlloc(cache);
        if (address === 0) {
          throw new OutOfMemoryError(
            `Cannot allocate a ${cache.name} object of ${cache.objectBytes} bytes: no page frames are free`,
          );
        }
        return address;
      },
      free: (address: number) => {
        this.#assertOpen("free to a cache");
        this.#assertNotDestroyed(cache, "free to");
        if (!layers.free(address, cache)) {
          throw new InvalidFreeError(
            `Cannot free ${describeValue(address)} to cache ${cache.name}: it is not in any slab`,
          );
        }
      },
      info: () => {
        this.#assertOpen("describe a cache");
        this.#assertNotDestroyed(cache, "describe");
        return cache.info();
      },
    };
    this.#cacheOf.set(handle, cache);
    return handle;
  }

  #assertNotDestroyed(cache: SlabCache, operation: string): void {
    if (cache.destroyed) {
      throw new CacheDestroyedError(
        `Cannot ${operation} cache ${cache.name}: it was destroyed (destroyCache)`,
      );
    }
  }

  /**
   * Destroys a cache made by {@linkcode PhysicalAllocator.createCache}, like
   * Linux's kmem_cache_destroy: its slabs (all empty) go back to the page
   * frames, its name may be given to a new cache, and every later call on it
   * throws CacheDestroyedError.
   *
   * @param cache The cache `createCache` returned.
   * @throws {CacheInUseError} If objects of the cache are live (the message names the cache and their count).
   * @throws {CacheDestroyedError} If the cache was destroyed already.
   * @throws {InvalidOptionError} If `cache` is not a cache this heap made.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { PhysicalAllocator } from "@phys/allocator";
   *
   * const heap = PhysicalAllocator.fromBuffer(new Uint8Array(8 << 20));
   * const inodes = heap.createCache("inode", 200);
   * const inode = inodes.alloc();
   * assert.throws(() => heap.destroyCache(inodes), { code: "CACHE_IN_USE" });
   * inodes.free(inode);
   * heap.destroyCache(inodes);
   * assert.throws(() => inodes.alloc(), { code: "CACHE_DESTROYED" });
   * heap.createCache("inode", 200); // the name is free again
   * ```
   */
  destroyCache(cache: ObjectCache): void {
    this.#assertOpen("destroy a cache");
    const slabCache = typeof cache === "object" && cache !== null
      ? this.#cacheOf.get(cache)
      : undefined;
    if (slabCache === undefined) {
      throw new InvalidOptionError(
        `Cannot destroy cache ${describeValue(cache)}: it is not a cache this heap made`,
      );
    }
    this.#assertNotDestroyed(slabCache, "destroy");
    if (slabCache.activeObjects > 0) {
      throw new CacheInUseError(
        `Cannot destroy cache ${slabCache.name}: ${slabCache.activeObjects} of its objects are live`,
      );
    }
    this.#layers!.destroyCache(slabCache);
  }

  /**
   * Accounting of every byte of every region.
   *
   * @returns A snapshot; `totalBytes = freeBytes + usedBytes + overheadBytes + skippedBytes`.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { PhysicalAllocator } from "@phys/allocator";
   *
   * const heap = PhysicalAllocator.fromBuffer(new Uint8Array(4096));
   * heap.alloc(100);
   * const s = heap.stats();
   * assert.equal(s.totalBytes, s.freeBytes + s.usedBytes + s.overheadBytes + s.skippedBytes);
   * assert.equal(s.usedBytes, 100);
   * ```
   */
  stats(): AllocatorStats {
    return this.#locked("read stats", () => this.#statsOwned());
  }

  #statsOwned(): AllocatorStats {
    const largest = this.#policy.largestFree();
    const layerBlocks = this.#layers === null ? 0 : this.#layers.blockCount;
    const layerLive = this.#layers === null ? 0 : this.#layers.live;
    // Blocks, slab objects and page runs in Worker caches are in use to the heap and
    // overhead to the caller, and so is the slack a size class hides beyond the size asked for.
    const cached = this.#cache?.totals() ?? NO_CACHE_TOTALS;
    const cachedBytes = cached.bytes + cached.hiddenBytes;
    const layerCachedBytes = cached.slabBytes + cached.slabHiddenBytes + cached.pageBytes;
    const layerStats = this.#layers?.stats() ?? null;
    const layers = layerStats === null || layerCachedBytes === 0 ? layerStats : {
      ...layerStats,
      usedBytes: layerStats.usedBytes - layerCachedBytes,
      overheadBytes: layerStats.overheadBytes + layerCachedBytes,
    };
    const blocks = {
      freeBytes: this.#counters.freeBytes,
      usedBytes: this.#counters.usedBytes - (layers?.blockBytes ?? 0) - cachedBytes,
      overheadBytes: this.#overheadBytes() + cachedBytes,
    };
    return {
      policy: this.policy,
      nativeActive: this.#nativeActive,
      totalBytes: this.#totalBytes,
      freeBytes: blocks.freeBytes + (layers?.freeBytes ?? 0),
      usedBytes: blocks.usedBytes + (layers?.usedBytes ?? 0),
      overheadBytes: blocks.overheadBytes + (layers?.overheadBytes ?? 0),
      skippedBytes: this.#skippedBytes,
      freeBlocks: this.#counters.freeBlocks,
      usedBlocks: this.#counters.usedBlocks - layerBlocks + layerLive - cached.blocks -
        cached.slabObjects - cached.pageRuns,
      blocks,
      layers,
      largestFreeBytes: largest === 0 ? 0 : largest - HEADER_BYTES,
      skippedRegions: this.#layout.regions.length - this.#usable.length,
      regions: this.#layout.regions.map((region): RegionStats => ({
        base: region.base,
        lengthBytes: region.lengthBytes,
        physicalBase: region.physicalBase,
        identity: region.base === region.physicalBase,
        offsetBytes: region.base - region.physicalBase,
        skipped: region.skipped,
        holdsControl: region.controlBytes > 0,
      })),
    };
  }

  /**
   * A shared heap with one Worker attached (no other Worker can pop or push
   * meanwhile): the slab objects marked cached in their descriptors, and the
   * page runs marked cached in the state map, are exactly those in the
   * Worker caches' bins, and the hidden slack bytes in the descriptors add
   * up to what the slots counted.
   */
  #checkCachedSlabObjects(): void {
    const cache = this.#cache;
    const layers = this.#layers;
    if (cache === null || layers === null || this.#shared!.attachedWorkers() !== 1) return;
    let cachedObjects = 0;
    let hiddenBytes = 0;
    for (const slabCache of layers.caches) {
      cachedObjects += slabCache.cachedObjects;
      hiddenBytes += slabCache.hiddenBytes;
    }
    const totals = cache.totals();
    if (cachedObjects !== totals.slabObjects || hiddenBytes !== totals.slabHiddenBytes) {
      throw new HeapCorruptionError(
        0,
        `Heap corruption in the Worker caches: ${cachedObjects} slab objects marked cached, ${totals.slabObjects} in the bins; ${hiddenBytes} hidden bytes in the slabs, ${totals.slabHiddenBytes} counted`,
      );
    }
    // The page runs marked cached are exactly those in the bins, each of its bin's order.
    const marked = new Map<number, number>();
    for (const run of layers.runs()) {
      if (run.kind === "pages" && cache.state(run.address) === STATE_CACHED) {
        marked.set(run.address, run.sizeBytes);
      }
    }
    const binned = cache.cachedPages();
    for (const { address, order } of binned) {
      if (marked.get(address) !== FRAME_BYTES << order) {
        throw new HeapCorruptionError(
          address,
          `Heap corruption in the Worker caches: a bin of order ${order} holds ${
            hex(address)
          }, not a page run of that order marked cached`,
        );
      }
    }
    if (marked.size !== binned.length) {
      throw new HeapCorruptionError(
        0,
        `Heap corruption in the Worker caches: ${marked.size} page runs marked cached, ${binned.length} in the bins`,
      );
    }
  }

  #overheadBytes(): number {
    return (this.#counters.freeBlocks + this.#counters.usedBlocks) * HEADER_BYTES +
      this.#counters.slackBytes +
      this.#fixedOverheadBytes;
  }

  /**
   * Gives the page-frame and slab layers' reserves back to the block heap,
   * like C's malloc_trim: the empty slab each cache keeps and the wholly free
   * chunk the frames keep (reserves that spare a heap swinging between empty
   * and not from taking and giving a chunk at every swing). After every
   * allocation is freed, `trim()` restores the heap's fresh `stats()`.
   * An allocation that finds no free memory trims by itself and retries,
   * only when the retry surely succeeds: a failed allocation changes nothing.
   * On a shared heap the calling Worker's cache goes back first (blocks,
   * slab objects and page runs it holds for its next calls; other Workers'
   * caches are theirs, given back when they detach).
   *
   * @returns True when anything was given back.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { PhysicalAllocator } from "@phys/allocator";
   *
   * const heap = PhysicalAllocator.fromBuffer(new Uint8Array(4 << 20));
   * const fresh = heap.stats().freeBytes;
   * heap.free(heap.alloc(32)); // a kmalloc-32 slab stays in reserve
   * assert.ok(heap.stats().freeBytes < fresh);
   * heap.trim();
   * assert.equal(heap.stats().freeBytes, fresh);
   * ```
   */
  trim(): boolean {
    return this.#locked("trim", () => {
      const drained = this.#sharedCalls?.drainOwnCache() ?? false;
      return (this.#layers?.releaseReserves() ?? false) || drained;
    });
  }

  /**
   * Walks every region and free list and proves the heap consistent.
   *
   * @throws {HeapCorruptionError} Naming the address and the broken invariant.
   *
   * @example
   * ```ts
   * import { PhysicalAllocator } from "@phys/allocator";
   *
   * const heap = PhysicalAllocator.fromBuffer(new Uint8Array(4096));
   * heap.alloc(10);
   * heap.check();
   * ```
   */
  check(): void {
    this.#locked("check", () => this.#checkOwned());
  }

  #checkOwned(): void {
    this.#verifyControlWords();
    checkHeap({
      blocks: this.#blocks,
      regions: this.#usable,
      policy: this.#policy,
      expected: this.#counters,
    });
    this.#debug?.verifyHeap(this.#usable);
    this.#layers?.check((address, sizeBytes) => {
      const block = this.#verifier.usedBlockAt(address, "check", InvalidAddressError);
      const payload = this.#blocks.size(block) - HEADER_BYTES - this.#blocks.slack(block);
      if (payload !== sizeBytes) {
        throw corruptionAt(block, `a layer block holds ${payload} bytes, not ${sizeBytes}`);
      }
    });
    this.#checkCachedSlabObjects();
    const s = this.#statsOwned();
    if (s.totalBytes !== s.freeBytes + s.usedBytes + s.overheadBytes + s.skippedBytes) {
      throw new HeapCorruptionError(
        this.#control.address,
        `Heap accounting is broken: total ${s.totalBytes} bytes != free ${s.freeBytes} + used ${s.usedBytes} + overhead ${s.overheadBytes} + skipped ${s.skippedBytes}`,
      );
    }
  }

  /**
   * Every block of every usable region in address order: for pictures and
   * teaching. Bounded by the region sizes.
   *
   * @returns The blocks with their addresses, sizes and state.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { PhysicalAllocator } from "@phys/allocator";
   *
   * const heap = PhysicalAllocator.fromBuffer(new Uint8Array(4096));
   * heap.alloc(100);
   * assert.deepEqual([...heap.blocks()].map((b) => b.free), [false, true]);
   * ```
   */
  blocks(): IterableIterator<HeapBlock> {
    // A shared heap is walked under its lock into a list: a generator would hold it across yields.
    if (this.#shared !== null) return this.#locked("walk", () => [...this.#walk()]).values();
    this.#assertOpen("walk");
    return this.#walk();
  }

  *#walk(): IterableIterator<HeapBlock> {
    for (const region of this.#usable) {
      let block = region.blockStart;
      while (block < region.blockEnd) {
        // The caller may close the allocator (or lose the buffer) between two steps.
        this.#assertOpen("walk");
        const sizeBytes = this.#blocks.size(block);
        if (sizeBytes < MIN_BLOCK_BYTES) return;
        yield {
          address: block,
          sizeBytes,
          free: this.#blocks.isFree(block),
          regionIndex: region.index,
        };
        block += sizeBytes;
      }
    }
  }

  /**
   * The runs of every chunk of the page-frame layer, in address order within
   * each chunk (free frames, page runs, slabs, then the chunk's frame table):
   * for pictures and teaching. Nothing when the layers do not serve the heap.
   *
   * @returns The runs with their addresses, sizes and kinds.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { PhysicalAllocator } from "@phys/allocator";
   *
   * const heap = PhysicalAllocator.fromBuffer(new Uint8Array(4 << 20));
   * heap.alloc(4096, 4096);
   * heap.alloc(32);
   * const kinds = [...heap.layerRuns()].map((run) => run.kind);
   * assert.deepEqual(kinds.slice(0, 2), ["pages", "slab"]);
   * assert.equal(kinds.at(-1), "table");
   * ```
   */
  layerRuns(): IterableIterator<LayerRun> {
    // A shared heap is walked under its lock into a list, as blocks() is.
    if (this.#shared !== null) {
      return this.#locked("walk", () => [...(this.#layers?.runs() ?? [])]).values();
    }
    this.#assertOpen("walk");
    return this.#walkLayers();
  }

  *#walkLayers(): IterableIterator<LayerRun> {
    if (this.#layers === null) return;
    const runs = this.#layers.runs();
    while (true) {
      // The caller may close the allocator (or lose the buffer) between two
      // steps: checked before the walk reads the next run (as #walk does).
      this.#assertOpen("walk");
      const step = runs.next();
      if (step.done === true) return;
      yield step.value;
    }
  }

  /**
   * Releases the memory (for identity-mapped memory, unmaps it) exactly
   * once; every later call on the allocator throws `AllocatorClosedError`.
   * A Worker of a shared heap gives its Worker cache back first; when that
   * finds the heap corrupt, the handle closes all the same, its slot stays
   * taken (another Worker's `reclaimSlot` frees it), and close() then throws
   * the `HeapCorruptionError`.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { PhysicalAllocator } from "@phys/allocator";
   *
   * const heap = PhysicalAllocator.fromBuffer(new Uint8Array(4096));
   * heap.close();
   * assert.throws(() => heap.alloc(1), { code: "ALLOCATOR_CLOSED" });
   * ```
   */
  close(): void {
    if (this.#closed) return;
    // A Worker cache that cannot be drained (a corrupt heap) still closes this
    // handle: the error comes after, and the slot stays taken for reclaimSlot.
    let drainFailure: unknown = null;
    if (this.#sharedCalls !== null && !this.#shared!.detached) {
      try {
        this.#sharedCalls.detach();
      } catch (error) {
        drainFailure = error;
      }
    }
    this.#closed = true;
    this.#slabDoor = null;
    this.#claim.release();
    // Clearing the magic lets a new allocator take the memory without reinitialize
    // (not a shared heap's: other Workers use it, and may attach later).
    if (
      this.#shared === null && this.#memory.closed !== true && this.#detachedBytes < 0 &&
      this.#window.byteLength === this.#windowBytes
    ) {
      this.#control.setWord(CONTROL_MAGIC_OFFSET, 0);
    }
    if (this.#memory.closed !== true) this.#memory.close?.();
    if (drainFailure !== null) throw drainFailure;
  }

  static {
    registerInspector((heap) => ({
      key: heap.#blocks.key,
      layout: heap.#layout,
      window: heap.#window,
      baseAddress: heap.#blocks.baseAddress,
      controlBytes: heap.#control.sizeBytes,
    }));
  }

  /**
   * Closes an allocator whose memory a `reinitialize` took, without touching
   * that memory (it holds the new heap now) or releasing it.
   */
  static #retire(allocator: PhysicalAllocator): void {
    allocator.#closed = true;
    allocator.#slabDoor = null;
  }

  /** Same as `close()`, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }

  /**
   * check()'s proof of the control block's own words, which the searches
   * trust: its magic, its policy id, TLSF's first-level count, and below 2^31
   * the list heads' high words (written 0 and never read there).
   */
  #verifyControlWords(): void {
    const control = this.#control;
    const flCount = this.#policy instanceof TlsfPolicy ? this.#policy.flCount : 0;
    const expected: [number, number, string][] = [
      [CONTROL_MAGIC_OFFSET, CONTROL_MAGIC, "magic"],
      [CONTROL_POLICY_OFFSET, this.#policy.id, "policy id"],
      [CONTROL_FL_COUNT_OFFSET, flCount, "first-level count"],
    ];
    if (control instanceof NarrowControlBlock) {
      const heads = controlHeadsOffset(flCount);
      const headCount = flCount === 0 ? 1 : flCount * SL_COUNT;
      for (let head = 0; head < headCount; head++) {
        expected.push([heads + 8 * head + 4, 0, `list head ${head}'s high word`]);
      }
    }
    for (const [offset, value, what] of expected) {
      const found = control.word(offset);
      if (found === value) continue;
      throw new HeapCorruptionError(
        control.address + offset,
        `Heap corruption at ${hex(control.address + offset)}: the control block's ${what} is 0x${
          found.toString(16)
        }, expected 0x${value.toString(16)}`,
      );
    }
  }

  /** Runs `body` with the heap this caller's: the block lock held when shared. */
  #locked<T>(operation: string, body: () => T): T {
    if (this.#sharedCalls !== null) return this.#sharedCalls.locked(operation, body);
    this.#assertOpen(operation);
    return body();
  }

  /**
   * Throws unless the allocator is open and its memory attached. The test is
   * kept apart from the throw (#refuseClosed) so that this stays a few bytes
   * of bytecode: every call inlines it, and V8's inlining budget per function
   * (about 920 bytes) is better spent on the fast paths.
   */
  #assertOpen(operation: string): void {
    if (
      this.#closed || this.#memory.closed === true ||
      this.#window.byteLength !== this.#windowBytes || this.#detachedBytes >= 0
    ) {
      this.#refuseClosed(operation);
    }
  }

  /** #assertOpen's cold half: the error for a closed allocator or a detached window. */
  #refuseClosed(operation: string): never {
    if (this.#closed || this.#memory.closed === true) {
      throw new AllocatorClosedError(`Cannot ${operation}: the allocator is closed`);
    }
    // Else the window's length changed: a detached buffer has length 0, one
    // shrunk below the window an out-of-bounds view of length 0. A resizable
    // buffer may grow back, zeroed past the cut: the first answer stays, and
    // the slab door, which tests the length alone, closes.
    if (this.#detachedBytes < 0) this.#detachedBytes = this.#window.byteLength;
    this.#slabDoor = null;
    throw new MemoryDetachedError(
      `Cannot ${operation}: the memory's buffer was detached, transferred or shrunk (window of ${this.#windowBytes} bytes at ${
        hex(this.#blocks.baseAddress)
      }, of which ${this.#detachedBytes} were left when a call first found it changed)`,
    );
  }

  #outOfMemory(sizeBytes: number, alignBytes: number): OutOfMemoryError {
    const largest = this.#policy.largestFree();
    return new OutOfMemoryError(
      `Cannot allocate ${sizeBytes} bytes aligned to ${alignBytes}: no free block fits (largest free block holds ${
        largest === 0 ? 0 : largest - HEADER_BYTES
      } bytes; ${this.#counters.freeBytes} bytes free in ${this.#counters.freeBlocks} blocks)`,
    );
  }
}

/** One block as `PhysicalAllocator.blocks()` reports it. */
export interface HeapBlock {
  /** The block's header address. */
  readonly address: number;
  /** The block's size including its header. */
  readonly sizeBytes: number;
  /** True when the block is free. */
  readonly free: boolean;
  /** The index of its region in address order. */
  readonly regionIndex: number;
}

/** Bytes of all regions, of skipped ones, and of the block areas (the rest is fixed overhead). */
/** What an unshared heap's (absent) Worker caches hold. */
const NO_CACHE_TOTALS: CacheTotals = {
  blocks: 0,
  bytes: 0,
  hiddenBytes: 0,
  slabObjects: 0,
  slabBytes: 0,
  slabHiddenBytes: 0,
  pageRuns: 0,
  pageBytes: 0,
};

function regionTotals(regions: readonly RegionLayout[]): {
  totalBytes: number;
  skippedBytes: number;
  blockAreaBytes: number;
} {
  let totalBytes = 0;
  let skippedBytes = 0;
  let blockAreaBytes = 0;
  for (const region of regions) {
    totalBytes += region.lengthBytes;
    if (region.skipped) skippedBytes += region.lengthBytes;
    else blockAreaBytes += region.blockEnd - region.blockStart;
  }
  return { totalBytes, skippedBytes, blockAreaBytes };
}

/**
 * Refuses memory whose control block is initialised: a heap some allocator
 * (maybe of another process, or one never closed) may still use.
 */
function refuseLiveHeap(control: ControlBlock, baseAddress: number): void {
  if (control.word(CONTROL_MAGIC_OFFSET) !== CONTROL_MAGIC) return;
  throw new MemoryInUseError(
    `Cannot create allocator over memory at ${hex(baseAddress)}: its control block at ${
      hex(control.address)
    } already holds a heap (close() that allocator, or pass reinitialize: true)`,
  );
}

/**
 * True when `value` is a Uint8Array, an ArrayBuffer or a SharedArrayBuffer;
 * false for anything else, a revoked Proxy too (whose `instanceof` throws).
 */
function isBufferOrView(value: unknown): value is Uint8Array | ArrayBuffer | SharedArrayBuffer {
  try {
    return value instanceof Uint8Array || value instanceof ArrayBuffer ||
      value instanceof SharedArrayBuffer;
  } catch {
    return false;
  }
}

/** The options of `new PhysicalAllocator` (every key of AllocatorOptions). */
const ALLOCATOR_OPTION_NAMES = [
  "policy",
  "align",
  "native",
  "debug",
  "fastPath",
  "reinitialize",
  "layers",
] as const;

/** The options of `fromBuffer` (every key of BufferAllocatorOptions). */
const BUFFER_OPTION_NAMES = [
  ...ALLOCATOR_OPTION_NAMES,
  "baseAddress",
  "workerSlots",
  "lockTimeoutMs",
  "workerCaches",
] as const;

/**
 * Reads each of `names` from the caller's options once, into a plain object
 * of its own: a getter or Proxy is read exactly once (a value that changed
 * between two reads would split a decision, a shared heap's debug mode and
 * its Worker caches say), and a read that throws (a revoked Proxy, a
 * throwing getter) is refused with a typed error. Refuses options that are
 * not an object (null, a number, a string), naming them.
 */
function readOptions<T extends object>(
  options: unknown,
  names: readonly (keyof T & string)[],
  subject = "create allocator",
): T {
  if (typeof options !== "object" || options === null) {
    throw new InvalidOptionError(
      `Cannot ${subject} with options ${describeValue(options)}: expected an object`,
    );
  }
  const copy: Record<string, unknown> = {};
  for (const name of names) {
    let value: unknown;
    try {
      value = (options as Record<string, unknown>)[name];
    } catch (error) {
      throw new InvalidOptionError(
        `Cannot ${subject}: reading its option ${name} threw ${
          error instanceof Error ? error.name : describeValue(error)
        }`,
      );
    }
    if (value !== undefined) copy[name] = value;
  }
  return copy as T;
}

/** Checks the boolean options, naming any other value. */
function validateFlagOptions(options: AllocatorOptions): void {
  for (const name of ["debug", "fastPath", "reinitialize"] as const) {
    const value = options[name];
    if (value !== undefined && typeof value !== "boolean") {
      throw new InvalidOptionError(
        `Cannot create allocator with ${name} ${describeValue(value)}: expected true or false`,
      );
    }
  }
}

function validateSize(sizeBytes: number, operation: string, address?: number): void {
  // A positive int32 (every size in practice) is valid without the general test.
  if (typeof sizeBytes === "number" && (sizeBytes | 0) === sizeBytes && sizeBytes > 0) return;
  if (typeof sizeBytes !== "number" || !Number.isSafeInteger(sizeBytes) || sizeBytes <= 0) {
    const target = address === undefined ? "" : ` ${hex(address)}`;
    throw new InvalidSizeError(
      `Cannot ${operation}${target}: size ${
        describeValue(sizeBytes)
      } is not a positive integer number of bytes`,
    );
  }
}

function validateBaseAddress(baseAddress: number): void {
  if (
    !Number.isSafeInteger(baseAddress) || baseAddress <= 0 || baseAddress % GRANULE_BYTES !== 0
  ) {
    throw new InvalidOptionError(
      `Cannot use base address ${
        describeValue(baseAddress)
      }: it must be a positive multiple of ${GRANULE_BYTES}`,
    );
  }
}

function validateAlignment(alignBytes: number, operation: string): void {
  if (
    typeof alignBytes !== "number" || !Number.isSafeInteger(alignBytes) || alignBytes <= 0 ||
    alignBytes > ALIGN_BYTES_MAX || (alignBytes & (alignBytes - 1)) !== 0
  ) {
    throw new InvalidAlignmentError(
      `Cannot ${operation} with alignment ${
        describeValue(alignBytes)
      }: the alignment must be a power of two from 1 to ${ALIGN_BYTES_MAX}`,
    );
  }
}
