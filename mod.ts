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

export * from "./allocator/physical_allocator.ts";
export * from "./allocator/errors.ts";
export * from "./allocator/memory.ts";
export * from "./allocator/stats.ts";
export type { PolicyName } from "./allocator/policy.ts";
export type { NativeMode } from "./allocator/native_route.ts";
export type { LayerRun, LayerStats } from "./allocator/slab/layered_heap.ts";
export type { SlabInfo } from "./allocator/slab/slab_cache.ts";
export * from "./allocator/memory_map.ts";
export * from "./allocator/memory_map_parse.ts";
export * from "./allocator/memory_map_normalize.ts";
export * from "./allocator/memory_map_samples.ts";
export * from "./allocator/memory_map_host.ts";
export * from "./allocator/identity_memory.ts";
