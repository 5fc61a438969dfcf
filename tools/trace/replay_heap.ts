/**
 * The interface every allocator replayed by the trace tools implements:
 * the project's allocator on each policy, path and backend, and the peers
 * (`@thi.ng/malloc`, glibc through FFI).
 *
 * A {@linkcode ReplayHeap} has two faces. The checked face (`alloc`, `free`,
 * `realloc`, `view`, `blockEnd`) is called by the verifying replay, one
 * call per operation through this interface. The timed face, `run`, is one
 * method per implementation that replays a whole decoded trace with direct
 * calls into the allocator, so the timing loop of each allocator is its own
 * monomorphic code and measures the allocator rather than dispatch.
 *
 * @module
 */

import type { DecodedTrace } from "./decode.ts";

/** One fresh heap of a replayed allocator. */
export interface ReplayHeap {
  /** True when the project's native (Zig) path serves this heap; undefined for peers. */
  readonly nativeActive?: boolean;
  /** The address the footprint is measured from (the managed memory's first byte). */
  readonly baseAddress: number;
  /**
   * Allocates `sizeBytes` (at least 1).
   * @returns The payload address, or 0 when memory is short.
   */
  alloc(sizeBytes: number): number;
  /** Frees the payload at `address`. */
  free(address: number): void;
  /**
   * Resizes the payload at `address`, keeping its prefix.
   * @returns The new payload address, or 0 when memory is short (the old payload is then kept).
   */
  realloc(address: number, sizeBytes: number): number;
  /** A view of `lengthBytes` bytes of the payload at `address`. */
  view(address: number, lengthBytes: number): Uint8Array;
  /**
   * The address one past the end of the block holding the payload at
   * `address` (header, payload and padding), or NaN when the allocator's
   * blocks cannot be seen (glibc).
   */
  blockEnd(address: number): number;
  /** Proves the heap consistent; peers without a checker do nothing. */
  check(): void;
  /**
   * Replays the whole trace without any checks, as fast as the allocator allows.
   * @returns The number of failed requests.
   */
  run(trace: DecodedTrace): number;
  /** Releases the heap (for glibc: frees every block still live). */
  close(): void;
}

/** A named allocator configuration that makes fresh heaps. */
export interface ReplayTarget {
  /** A short name for tables: `tlsf`, `first-fit/native`, `@thi.ng/malloc`, `glibc`. */
  readonly name: string;
  /** True for the project's own allocator, false for peers. */
  readonly own: boolean;
  /** Bytes of header every live block costs (for the header overhead score). */
  readonly headerBytesPerBlock: number;
  /**
   * Makes a fresh heap of `heapBytes` for replaying `trace`. Targets keep
   * and reuse their memory for the next heap of the same size, so make one
   * heap at a time: close it before the next `create`.
   * @param trace The trace that will be replayed (for its slot count).
   * @param heapBytes The size of the managed memory; ignored by glibc.
   */
  create(trace: DecodedTrace, heapBytes: number): ReplayHeap;
}
