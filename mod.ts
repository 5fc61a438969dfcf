/**
 * A kernel-style physical memory allocator: block headers `{ size, is_free }`
 * at the start of every block, an intrusive free list kept inside the managed
 * memory, aligned payloads, several regions, first-fit and TLSF policies over
 * one block format, heap validation and statistics; firmware memory maps
 * (sysfs, E820, JSON) and identity-mapped memory obtained with `mmap` through
 * Deno FFI, so that the addresses the allocator hands out are physical ones.
 *
 * The layers, each in a folder of `allocator/`: `heap/` (the block allocator,
 * its policies and checks), `memory/` (the memory it manages: ArrayBuffers or
 * identity-mapped host memory), `memory_map/` (firmware maps: parse, normalize,
 * reserve). This module exports what a user needs and nothing internal.
 *
 * @example Allocate, use and free
 * ```ts
 * import assert from "node:assert/strict";
 * import { PhysicalAllocator } from "@phys/allocator";
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

// The allocator: blocks, with page frames and slab caches layered over them.
export {
  type AllocatorOptions,
  type AttachOptions,
  type BufferAllocatorOptions,
  type CacheOptions,
  type HeapBlock,
  type ObjectCache,
  PhysicalAllocator,
} from "./allocator/heap/physical_allocator.ts";
export type { AllocatorStats, BlockLayerStats, RegionStats } from "./allocator/heap/stats.ts";
export type { LayerRun, LayerStats } from "./allocator/slab/layered_heap.ts";
export type { SlabInfo } from "./allocator/slab/slab_cache.ts";
export { isPolicyName, POLICY_NAMES, type PolicyName } from "./allocator/heap/policy/policy.ts";
export type { NativeMode } from "./allocator/heap/policy/native_route.ts";

// Errors: every one carries a stable `code`.
export {
  AllocatorClosedError,
  AllocatorError,
  type AllocatorErrorCode,
  CacheDestroyedError,
  CacheInUseError,
  DoubleFreeError,
  HeapCorruptionError,
  HeapDetachedError,
  InvalidAddressError,
  InvalidAlignmentError,
  InvalidFreeError,
  InvalidMemoryError,
  InvalidOptionError,
  InvalidSizeError,
  LockTimeoutError,
  MappingFailedError,
  MemoryDetachedError,
  MemoryInUseError,
  MemoryMapError,
  NativeUnavailableError,
  OutOfMemoryError,
  SharedHeapInvalidError,
  SharedHeapVersionError,
  WorkerSlotError,
} from "./allocator/errors.ts";

// The memory a heap manages.
export {
  type AddressRange,
  bufferMemory,
  DEFAULT_BUFFER_BASE_ADDRESS,
  type MemoryRegion,
  type PhysicalMemory,
} from "./allocator/memory/physical_memory.ts";
export {
  type IdentityMapOptions,
  type IdentityMemory,
  mapIdentity,
  type MappingKind,
  type RegionMapping,
  RELOCATION_ALIGN_BYTES,
} from "./allocator/memory/identity_memory.ts";

// Firmware memory maps.
export {
  formatBytes,
  MEMORY_TYPES,
  type MemoryMapEntry,
  type MemoryType,
  PAGE_BYTES,
} from "./allocator/memory_map/entry.ts";
export {
  detectMemoryMapFormat,
  MEMORY_MAP_FORMATS,
  type MemoryMapFormat,
  parseAddress,
  parseE820,
  parseMemoryMap,
  parseMemoryMapJson,
  parseSysfsDump,
  parseSysfsMemmap,
  type SysfsMemmapText,
} from "./allocator/memory_map/parse.ts";
export { MemoryMap } from "./allocator/memory_map/memory_map.ts";
export {
  type AccountedSpan,
  type Disposition,
  type MemoryMapReport,
  type NormalizedMemoryMap,
  normalizeMemoryMap,
  type NormalizeOptions,
  type OverlapRecord,
  type ReasonTotal,
  type Reservation,
  type ReservationRecord,
} from "./allocator/memory_map/normalize.ts";
export {
  type HostMemoryMap,
  type HostReadOptions,
  readMmapMinAddress,
  readSysfsMemmap,
} from "./allocator/memory_map/host.ts";
export {
  SAMPLE_MAP_NAMES,
  type SampleMapName,
  sampleMemoryMap,
} from "./allocator/memory_map/samples.ts";
