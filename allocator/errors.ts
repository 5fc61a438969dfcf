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
  | "TRACE_INVALID";

/**
 * The common base class of every error this module throws.
 *
 * @example Telling errors apart by code
 * ```ts
 * import assert from "node:assert/strict";
 * import { AllocatorError, PhysicalAllocator } from "../mod.ts";
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

/** No free block can hold the request. The message names the largest free block. */
export class OutOfMemoryError extends AllocatorError {
  /** Creates the error. @param message The request and the largest free block. */
  constructor(message: string) {
    super("OUT_OF_MEMORY", message);
  }
}

/** `free` or `realloc` of an address that is not the payload of a block. */
export class InvalidFreeError extends AllocatorError {
  /** Creates the error. @param message The address and what was found there. */
  constructor(message: string) {
    super("INVALID_FREE", message);
  }
}

/** `free` or `realloc` of a block that is already free. */
export class DoubleFreeError extends AllocatorError {
  /** Creates the error. @param message The address freed twice. */
  constructor(message: string) {
    super("DOUBLE_FREE", message);
  }
}

/** An address argument that is not a live allocation (for example to `bytes`). */
export class InvalidAddressError extends AllocatorError {
  /** Creates the error. @param message The address and what was found there. */
  constructor(message: string) {
    super("INVALID_ADDRESS", message);
  }
}

/** A size that is not a positive safe integer, or a length past a payload. */
export class InvalidSizeError extends AllocatorError {
  /** Creates the error. @param message The size given. */
  constructor(message: string) {
    super("INVALID_SIZE", message);
  }
}

/** An alignment that is not a power of two within the supported range. */
export class InvalidAlignmentError extends AllocatorError {
  /** Creates the error. @param message The alignment given. */
  constructor(message: string) {
    super("INVALID_ALIGNMENT", message);
  }
}

/** An option with an unknown or out-of-range value. */
export class InvalidOptionError extends AllocatorError {
  /** Creates the error. @param message The option and its value. */
  constructor(message: string) {
    super("INVALID_OPTION", message);
  }
}

/** Memory regions that cannot be managed: empty, overlapping or not in one window. */
export class InvalidMemoryError extends AllocatorError {
  /** Creates the error. @param message The region at fault. */
  constructor(message: string) {
    super("INVALID_MEMORY", message);
  }
}

/**
 * The memory's buffer was detached (transferred with `ArrayBuffer.prototype.transfer`,
 * posted to a worker) or shrunk below the heap's window after the allocator
 * was made. Every later call throws this; nothing is read or written.
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
 */
export class MemoryInUseError extends AllocatorError {
  /** Creates the error. @param message The memory and who holds it. */
  constructor(message: string) {
    super("MEMORY_IN_USE", message);
  }
}

/** A header, footer or list link that breaks an invariant of the heap. */
export class HeapCorruptionError extends AllocatorError {
  /** The address of the block or structure found broken. */
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

/** A call on an allocator (or memory) that has been closed. */
export class AllocatorClosedError extends AllocatorError {
  /** Creates the error. @param message The call refused. */
  constructor(message: string) {
    super("ALLOCATOR_CLOSED", message);
  }
}

/** The native library was required but could not be loaded. */
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

/** A memory map (sysfs, E820 text or JSON) that cannot be parsed or normalised. */
export class MemoryMapError extends AllocatorError {
  /** Creates the error. @param message The line or entry at fault and why. */
  constructor(message: string) {
    super("MEMORY_MAP_INVALID", message);
  }
}

/** `mmap` or `munmap` of a region failed in a way no fallback covers. */
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
