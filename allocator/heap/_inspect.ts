/**
 * Read-only access to an allocator's internals for tests and tools: its
 * header key, its region layout and its window. Internal: `mod.ts` does not
 * export this module, and only `physical_allocator.ts` registers the reader.
 *
 * @module
 */

import type { PhysicalAllocator } from "./physical_allocator.ts";
import type { HeapLayout } from "./regions.ts";

/** What an allocator shows of itself to tests. */
export interface HeapInternals {
  /** The header check-word key. */
  readonly key: number;
  /** Where the control block and every region's block area lie. */
  readonly layout: HeapLayout;
  /** The window: exactly the bytes the allocator may read or write. */
  readonly window: Uint8Array;
  /** The address of the window's byte 0. */
  readonly baseAddress: number;
  /** Bytes of the control block (at `layout.controlAddress`, or detached when that is 0). */
  readonly controlBytes: number;
}

let reader: ((heap: PhysicalAllocator) => HeapInternals) | null = null;

/**
 * Lets `physical_allocator.ts` (and only it) expose its internals.
 *
 * @param read Reads the internals of a heap.
 */
export function registerInspector(read: (heap: PhysicalAllocator) => HeapInternals): void {
  reader = read;
}

/**
 * The internals of `heap`.
 *
 * @param heap An allocator.
 * @returns Its key, layout and window.
 */
export function inspectHeap(heap: PhysicalAllocator): HeapInternals {
  if (reader === null) throw new Error("physical_allocator.ts is not loaded");
  return reader(heap);
}

/**
 * The header key of `heap`, for tests that forge headers.
 *
 * @param heap An allocator.
 * @returns Its header key.
 */
export function headerKeyOf(heap: PhysicalAllocator): number {
  return inspectHeap(heap).key;
}
