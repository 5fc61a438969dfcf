/**
 * A kernel-style physical memory allocator: block headers `{ size, is_free }`
 * at the start of every block, an intrusive free list kept inside the managed
 * memory, aligned payloads, several regions, first-fit and TLSF policies over
 * one block format, heap validation and statistics; firmware memory maps
 * (sysfs, E820, JSON) and identity-mapped memory obtained with `mmap` through
 * Deno FFI, so that the addresses the allocator hands out are physical ones.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { PhysicalAllocator } from "./mod.ts";
 *
 * using heap = PhysicalAllocator.fromBuffer(new Uint8Array(1 << 20));
 * const a = heap.alloc(100);
 * const page = heap.alloc(4096, 4096);
 * assert.equal(page % 4096, 0);
 * heap.free(a);
 * heap.free(page);
 * heap.check();
 * ```
 *
 * @module
 */

export * from "./allocator/heap/physical_allocator.ts";
export * from "./allocator/errors.ts";
export * from "./allocator/memory/physical_memory.ts";
export * from "./allocator/heap/stats.ts";
export type { PolicyName } from "./allocator/heap/policy/policy.ts";
export type { NativeMode } from "./allocator/heap/policy/native_route.ts";
export * from "./allocator/memory_map/entry.ts";
export * from "./allocator/memory_map/parse.ts";
export * from "./allocator/memory_map/normalize.ts";
export * from "./allocator/memory_map/samples.ts";
export * from "./allocator/memory_map/host.ts";
export * from "./allocator/memory/identity_memory.ts";
