/**
 * Typed errors with stable codes. A call that throws one of these has left
 * the heap exactly as it was before the call.
 *
 * @module
 */

/** The stable codes of {@linkcode AllocatorError}s. */
export type AllocatorErrorCode =
  | "OUT_OF_MEMORY"
  | "INVALID_FREE"
  | "DOUBLE_FREE"
  | "INVALID_ADDRESS"
  | "INVALID_SIZE"
  | "INVALID_ALIGNMENT"
  | "INVALID_OPTION"
  | "INVALID_MEMORY"
  | "MEMORY_DETACHED"
  | "MEMORY_IN_USE"
  | "HEAP_CORRUPTION"
  | "ALLOCATOR_CLOSED"
  | "NATIVE_UNAVAILABLE"
  | "MEMORY_MAP_INVALID"
  | "MAPPING_FAILED"
  | "TRACE_INVALID"
  | "SHARED_HEAP_INVALID"
  | "SHARED_HEAP_VERSION"
  | "HEAP_DETACHED"
  | "WORKER_SLOT"
  | "LOCK_TIMEOUT"
  | "CACHE_IN_USE"
  | "CACHE_DESTROYED";

/**
 * The common base class of every error this module throws.
 *
 * @example Telling errors apart by code
 * ```ts
 * import assert from "node:assert/strict";
 * import { AllocatorError, PhysicalAllocator } from "@phys/allocator";
 *
 * const heap = PhysicalAllocator.fromBuffer(new Uint8Array(4096));
 * assert.throws(() => heap.alloc(0), (e) => e instanceof AllocatorError && e.code === "INVALID_SIZE");
 * ```
 */
export class AllocatorError extends Error {
  /** The stable, machine-readable code of this error. */
  readonly code: AllocatorErrorCode;

  /**
   * Creates an error with a code and a message.
   *
   * @param code The stable code.
   * @param message What was asked and what was found.
   * @param options Standard error options (`cause`).
   */
  constructor(code: AllocatorErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/**
 * No free block can hold the request. The message names the largest free block.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { OutOfMemoryError, PhysicalAllocator } from "@phys/allocator";
 *
 * const heap = PhysicalAllocator.fromBuffer(new Uint8Array(4096));
 * assert.throws(() => heap.alloc(1 << 20), OutOfMemoryError);
 * assert.equal(heap.tryAlloc(1 << 20), 0); // tryAlloc reports it as 0 instead
 * ```
 */
export class OutOfMemoryError extends AllocatorError {
  /** Creates the error. @param message The request and the largest free block. */
  constructor(message: string) {
    super("OUT_OF_MEMORY", message);
  }
}

/**
 * `free` or `realloc` of an address that is not the payload of a block.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { InvalidFreeError, PhysicalAllocator } from "@phys/allocator";
 *
 * const heap = PhysicalAllocator.fromBuffer(new Uint8Array(4096));
 * const a = heap.alloc(64);
 * assert.throws(() => heap.free(a + 8), InvalidFreeError); // an interior address
 * ```
 */
export class InvalidFreeError extends AllocatorError {
  /** Creates the error. @param message The address and what was found there. */
  constructor(message: string) {
    super("INVALID_FREE", message);
  }
}

/**
 * `free` or `realloc` of a block that is already free.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DoubleFreeError, PhysicalAllocator } from "@phys/allocator";
 *
 * const heap = PhysicalAllocator.fromBuffer(new Uint8Array(4096));
 * const a = heap.alloc(64);
 * heap.free(a);
 * assert.throws(() => heap.free(a), DoubleFreeError);
 * ```
 */
export class DoubleFreeError extends AllocatorError {
  /** Creates the error. @param message The address freed twice. */
  constructor(message: string) {
    super("DOUBLE_FREE", message);
  }
}

/**
 * An address argument that is not a live allocation (for example to `bytes`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { InvalidAddressError, PhysicalAllocator } from "@phys/allocator";
 *
 * const heap = PhysicalAllocator.fromBuffer(new Uint8Array(4096));
 * assert.throws(() => heap.bytes(0x10), InvalidAddressError);
 * ```
 */
export class InvalidAddressError extends AllocatorError {
  /** Creates the error. @param message The address and what was found there. */
  constructor(message: string) {
    super("INVALID_ADDRESS", message);
  }
}

/**
 * A size that is not a positive safe integer, or a length past a payload.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { InvalidSizeError, PhysicalAllocator } from "@phys/allocator";
 *
 * const heap = PhysicalAllocator.fromBuffer(new Uint8Array(4096));
 * assert.throws(() => heap.alloc(-1), InvalidSizeError);
 * assert.throws(() => heap.bytes(heap.alloc(4), 5), InvalidSizeError);
 * ```
 */
export class InvalidSizeError extends AllocatorError {
  /** Creates the error. @param message The size given. */
  constructor(message: string) {
    super("INVALID_SIZE", message);
  }
}

/**
 * An alignment that is not a power of two within the supported range.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { InvalidAlignmentError, PhysicalAllocator } from "@phys/allocator";
 *
 * const heap = PhysicalAllocator.fromBuffer(new Uint8Array(4096));
 * assert.throws(() => heap.alloc(16, 24), InvalidAlignmentError);
 * ```
 */
export class InvalidAlignmentError extends AllocatorError {
  /** Creates the error. @param message The alignment given. */
  constructor(message: string) {
    super("INVALID_ALIGNMENT", message);
  }
}

/**
 * An option with an unknown or out-of-range value.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { InvalidOptionError, PhysicalAllocator } from "@phys/allocator";
 *
 * assert.throws(
 *   () => PhysicalAllocator.fromBuffer(new Uint8Array(4096), { align: 3 }),
 *   (error) => error instanceof Error && error.name === "InvalidAlignmentError",
 * );
 * const options = JSON.parse('{ "policy": "best-fit" }'); // e.g. from a config file
 * assert.throws(() => PhysicalAllocator.fromBuffer(new Uint8Array(4096), options), InvalidOptionError);
 * ```
 */
export class InvalidOptionError extends AllocatorError {
  /** Creates the error. @param message The option and its value. */
  constructor(message: string) {
    super("INVALID_OPTION", message);
  }
}

/**
 * Memory regions that cannot be managed: empty, overlapping or not in one window.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { InvalidMemoryError, PhysicalAllocator } from "@phys/allocator";
 *
 * assert.throws(() => PhysicalAllocator.fromBuffer(new Uint8Array(8)), InvalidMemoryError);
 * ```
 */
export class InvalidMemoryError extends AllocatorError {
  /** Creates the error. @param message The region at fault. */
  constructor(message: string) {
    super("INVALID_MEMORY", message);
  }
}

/**
 * The memory's buffer was detached (transferred with `ArrayBuffer.prototype.transfer`,
 * posted to a worker) or shrunk below the heap's window after the allocator
 * was made. Every later call throws this; nothing is read or written. A
 * resizable buffer that grows back does not reopen the heap: the bytes past
 * the cut came back zeroed.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryDetachedError, PhysicalAllocator } from "@phys/allocator";
 *
 * const buffer = new ArrayBuffer(4096);
 * const heap = PhysicalAllocator.fromBuffer(buffer);
 * buffer.transfer(); // the heap's memory now belongs to someone else
 * assert.throws(() => heap.alloc(8), MemoryDetachedError);
 * ```
 */
export class MemoryDetachedError extends AllocatorError {
  /** Creates the error. @param message The call refused and the window's buffer. */
  constructor(message: string) {
    super("MEMORY_DETACHED", message);
  }
}

/**
 * Memory that already holds a live heap: another allocator in this process
 * manages it, or its control block is initialised. Pass `reinitialize: true`
 * to overwrite it deliberately.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryInUseError, PhysicalAllocator } from "@phys/allocator";
 *
 * const memory = new Uint8Array(4096);
 * PhysicalAllocator.fromBuffer(memory);
 * assert.throws(() => PhysicalAllocator.fromBuffer(memory), MemoryInUseError);
 * PhysicalAllocator.fromBuffer(memory, { reinitialize: true }); // deliberately
 * ```
 */
export class MemoryInUseError extends AllocatorError {
  /** Creates the error. @param message The memory and who holds it. */
  constructor(message: string) {
    super("MEMORY_IN_USE", message);
  }
}

/**
 * A header, footer or list link that breaks an invariant of the heap.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { HeapCorruptionError, PhysicalAllocator } from "@phys/allocator";
 *
 * const memory = new Uint8Array(4096);
 * const heap = PhysicalAllocator.fromBuffer(memory, { baseAddress: 0x1000 });
 * const a = heap.alloc(24);
 * memory.fill(0xff, a - 0x1000 + 24, a - 0x1000 + 48); // overflow into the next header
 * assert.throws(() => heap.check(), HeapCorruptionError);
 * ```
 */
export class HeapCorruptionError extends AllocatorError {
  /** The address of the block or structure found broken, or -1 when it lies outside the window. */
  readonly address: number;

  /**
   * Creates the error.
   *
   * @param address The address of the broken structure.
   * @param message The broken invariant.
   */
  constructor(address: number, message: string) {
    super("HEAP_CORRUPTION", message);
    this.address = address;
  }
}

/**
 * A call on an allocator (or memory) that has been closed.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { AllocatorClosedError, PhysicalAllocator } from "@phys/allocator";
 *
 * const heap = PhysicalAllocator.fromBuffer(new Uint8Array(4096));
 * heap.close();
 * assert.throws(() => heap.alloc(8), AllocatorClosedError);
 * ```
 */
export class AllocatorClosedError extends AllocatorError {
  /** Creates the error. @param message The call refused. */
  constructor(message: string) {
    super("ALLOCATOR_CLOSED", message);
  }
}

/**
 * The native library was required but could not be loaded.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { NativeUnavailableError, PhysicalAllocator } from "@phys/allocator";
 *
 * try {
 *   PhysicalAllocator.fromBuffer(new Uint8Array(4096), { native: true }).close();
 * } catch (error) {
 *   // Without --allow-ffi, or before libpma is built.
 *   assert.ok(error instanceof NativeUnavailableError);
 * }
 * ```
 */
export class NativeUnavailableError extends AllocatorError {
  /**
   * Creates the error.
   *
   * @param message The paths tried and why each failed.
   * @param options The underlying load error as `cause`.
   */
  constructor(message: string, options?: ErrorOptions) {
    super("NATIVE_UNAVAILABLE", message, options);
  }
}

/**
 * A memory map (sysfs, E820 text or JSON) that cannot be parsed or normalised.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryMapError, parseMemoryMapJson } from "@phys/allocator";
 *
 * assert.throws(() => parseMemoryMapJson("[{\"start\": 1}]"), MemoryMapError);
 * ```
 */
export class MemoryMapError extends AllocatorError {
  /** Creates the error. @param message The line or entry at fault and why. */
  constructor(message: string) {
    super("MEMORY_MAP_INVALID", message);
  }
}

/**
 * `mmap` or `munmap` of a region failed in a way no fallback covers.
 *
 * @example Telling a failed mapping apart
 * ```ts
 * import assert from "node:assert/strict";
 * import { AllocatorError, MappingFailedError } from "@phys/allocator";
 *
 * const error: AllocatorError = new MappingFailedError("Cannot map 0x1000: ENOMEM");
 * assert.equal(error.code, "MAPPING_FAILED");
 * ```
 */
export class MappingFailedError extends AllocatorError {
  /** Creates the error. @param message The range and the errno. */
  constructor(message: string) {
    super("MAPPING_FAILED", message);
  }
}

/** An allocation trace that cannot be parsed. */
export class TraceFormatError extends AllocatorError {
  /** Creates the error. @param message The line number and what is wrong with it. */
  constructor(message: string) {
    super("TRACE_INVALID", message);
  }
}

/**
 * A buffer given to `PhysicalAllocator.attach` holds no shared heap (no magic
 * word, a window of another length, a heap still being created), or
 * `fromBuffer` was asked to create one over a shared heap Workers still use.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { PhysicalAllocator, SharedHeapInvalidError } from "@phys/allocator";
 *
 * assert.throws(() => PhysicalAllocator.attach(new SharedArrayBuffer(4096)), SharedHeapInvalidError);
 * ```
 */
export class SharedHeapInvalidError extends AllocatorError {
  /** Creates the error. @param message The buffer and what its header holds instead. */
  constructor(message: string) {
    super("SHARED_HEAP_INVALID", message);
  }
}

/**
 * A shared heap written by an incompatible version of this module (its
 * header's format version differs).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SharedHeapVersionError } from "@phys/allocator";
 *
 * const error = new SharedHeapVersionError("Cannot attach: format version 9, expected 1");
 * assert.equal(error.code, "SHARED_HEAP_VERSION");
 * ```
 */
export class SharedHeapVersionError extends AllocatorError {
  /** Creates the error. @param message The version found and the one expected. */
  constructor(message: string) {
    super("SHARED_HEAP_VERSION", message);
  }
}

/**
 * A call on a shared heap this Worker has detached from (including a second
 * `detach()`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { HeapDetachedError, PhysicalAllocator } from "@phys/allocator";
 *
 * const heap = PhysicalAllocator.fromBuffer(new SharedArrayBuffer(1 << 16));
 * heap.detach();
 * assert.throws(() => heap.alloc(8), HeapDetachedError);
 * ```
 */
export class HeapDetachedError extends AllocatorError {
  /** Creates the error. @param message The call refused. */
  constructor(message: string) {
    super("HEAP_DETACHED", message);
  }
}

/**
 * No Worker slot is free in a shared heap, or `reclaimSlot` was given a slot
 * that cannot be reclaimed (not attached, the caller's own, or holding a lock).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { PhysicalAllocator, WorkerSlotError } from "@phys/allocator";
 *
 * const heap = PhysicalAllocator.fromBuffer(new SharedArrayBuffer(1 << 16), { workerSlots: 1 });
 * assert.throws(() => PhysicalAllocator.attach(heap.sharedBuffer!), WorkerSlotError);
 * ```
 */
export class WorkerSlotError extends AllocatorError {
  /** Creates the error. @param message The slot and why it was refused. */
  constructor(message: string) {
    super("WORKER_SLOT", message);
  }
}

/**
 * A lock of a shared heap stayed held for longer than the heap's lock
 * timeout: its owner (a Worker slot) is stuck or ended in the middle of an
 * operation. The lock is not taken from it: the heap may be half-edited.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { LockTimeoutError } from "@phys/allocator";
 *
 * const error = new LockTimeoutError("Cannot take the block lock: held by slot 2 for 5000 ms", 2);
 * assert.equal(error.code, "LOCK_TIMEOUT");
 * assert.equal(error.ownerSlot, 2);
 * ```
 */
export class LockTimeoutError extends AllocatorError {
  /** The Worker slot holding the lock when the wait ended. */
  readonly ownerSlot: number;

  /**
   * Creates the error.
   *
   * @param message The lock, its owner and how long the wait lasted.
   * @param ownerSlot The slot holding the lock.
   */
  constructor(message: string, ownerSlot: number) {
    super("LOCK_TIMEOUT", message);
    this.ownerSlot = ownerSlot;
  }
}

/**
 * `destroyCache` of a slab cache that still has live objects; the message
 * names the cache and how many objects live.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { CacheInUseError, PhysicalAllocator } from "@phys/allocator";
 *
 * const heap = PhysicalAllocator.fromBuffer(new Uint8Array(4 << 20));
 * const inodes = heap.createCache("inode", 200);
 * const inode = inodes.alloc();
 * assert.throws(() => heap.destroyCache(inodes), CacheInUseError);
 * inodes.free(inode);
 * heap.destroyCache(inodes);
 * ```
 */
export class CacheInUseError extends AllocatorError {
  /** Creates the error. @param message The cache and its live objects. */
  constructor(message: string) {
    super("CACHE_IN_USE", message);
  }
}

/**
 * A call on a slab cache that `destroyCache` destroyed.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { CacheDestroyedError, PhysicalAllocator } from "@phys/allocator";
 *
 * const heap = PhysicalAllocator.fromBuffer(new Uint8Array(4 << 20));
 * const inodes = heap.createCache("inode", 200);
 * heap.destroyCache(inodes);
 * assert.throws(() => inodes.alloc(), CacheDestroyedError);
 * ```
 */
export class CacheDestroyedError extends AllocatorError {
  /** Creates the error. @param message The call refused. */
  constructor(message: string) {
    super("CACHE_DESTROYED", message);
  }
}
