/**
 * The shared heap header: the first bytes of a shared heap's window, where
 * every Worker finds what it needs to join the heap. Everything a Worker
 * would otherwise keep in JS objects (options, the heap secret, lock words,
 * the running counters, who is attached) lives here, so any Worker can read
 * it and a Worker that attaches later rebuilds nothing but views.
 *
 * ```text
 * window byte 0 (the address the heap's baseAddress stands for)
 * +0    u32 magic "PMAS"          +4   u32 format version
 * +8    u32 header bytes          +12  i32 state (0 creating, 1 ready)
 * +16   f64 base address          +24  f64 window bytes
 * +32   u32 policy index          +36  u32 default alignment
 * +40   u32 option flags          +44  u32 Worker slots
 * +48   u32 lock timeout (ms)     +52  i32 attached Workers
 * +56   (reserved, 8 bytes)
 * +64   u32 x 4 heap secret (crypto.getRandomValues)
 * +80   f64 x 5 block counters: free bytes, free blocks, used bytes, used blocks, slack bytes
 * +120  (reserved, 8 bytes)
 * +128  16 locks of 8 bytes: i32 owner (slot | generation << 8; 0 = free), i32 sleepers
 *       lock 0 (the heap lock) guards the blocks, the frames, the chunk directory, the slab
 *       page map and the layers' scalars; locks 1 to 15 (class locks) guard the slab caches'
 *       records and lists: kmalloc cache id -> lock 1 + id % 15 (classLockOf)
 * +256  i32 per Worker slot: even free, odd attached (one more at every change)
 * ...   padded to 64 bytes: the caches of every slot (worker_cache.ts), when the heap has them
 * ...   the state map (worker_cache.ts), padded to 64 bytes
 * ...   the layer state (allocator/slab/layer_state.ts), when the heap has the
 *       page-frame and slab layers: their tables, list heads, counters and
 *       the kmalloc caches' records, a multiple of 64 bytes
 * ...   the heap's one region (control block, blocks, chunks of frames)
 * ```
 *
 * @module
 */

import { alignUp } from "../_math.ts";
import { SLOT_CACHE_BYTES, stateMapBytes } from "./worker_cache.ts";
import { layerStateLayout } from "../slab/layer_state.ts";
import { KMALLOC_CLASSES } from "../slab/kmalloc.ts";
import { LAYER_WINDOW_BYTES, LAYERS_MIN_AREA_BYTES } from "../slab/layered_heap.ts";

/** "PMAS" read as a little-endian u32. */
export const SHARED_MAGIC = 0x53414d50;
/** The layout drawn above; bumped whenever it or the block layout changes. */
export const SHARED_FORMAT_VERSION = 6;

/** Byte offsets of the header's fields (see the drawing in the module doc). */
export const SH_MAGIC = 0;
export const SH_VERSION = 4;
export const SH_HEADER_BYTES = 8;
export const SH_STATE = 12;
export const SH_BASE_ADDRESS = 16;
export const SH_WINDOW_BYTES = 24;
export const SH_POLICY = 32;
export const SH_ALIGN = 36;
export const SH_FLAGS = 40;
export const SH_SLOT_COUNT = 44;
export const SH_LOCK_TIMEOUT_MS = 48;
export const SH_ATTACHED = 52;
export const SH_SECRET = 64;
export const SH_COUNTERS = 80;
export const SH_LOCKS = 128;
export const SH_SLOTS = 256;

/** Words of the heap secret. */
export const SECRET_WORDS = 4;
/** Locks in the header; lock 0 guards the block layer. */
export const LOCK_COUNT = 16;
/** Bytes of one lock: the owner word and the sleepers word. */
export const LOCK_BYTES = 8;
/** The heap lock: blocks, frames, chunk directory, slab page map, the layers' scalars. */
export const LOCK_BLOCKS = 0;
/** Class locks (locks 1 to CLASS_LOCK_COUNT): each guards the slab caches mapped to it. */
export const CLASS_LOCK_COUNT = LOCK_COUNT - 1;

/**
 * The class lock of slab cache `cacheId`: 1 + cacheId % CLASS_LOCK_COUNT.
 * The 22 kmalloc classes the Worker caches hold (ids 2 to 23, 24 to 256
 * bytes) are more than the 15 locks, so ids 2 to 8 (24 to 72 bytes) share a
 * lock with ids 17 to 23 (160 to 256 bytes): classes far apart in size,
 * which one workload asks for together less often than neighbours.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { classLockOf } from "./shared_header.ts";
 *
 * assert.equal(classLockOf(2), 3); // kmalloc-24
 * assert.equal(classLockOf(17), 3); // kmalloc-160 shares it
 * assert.equal(classLockOf(14), 15); // kmalloc-120
 * ```
 */
export function classLockOf(cacheId: number): number {
  return 1 + cacheId % CLASS_LOCK_COUNT;
}

/** `state` while the creating Worker writes the heap. */
export const STATE_CREATING = 0;
/** `state` once the heap may be attached to. */
export const STATE_READY = 1;

/** Option flag: debug mode. */
export const FLAG_DEBUG = 1;
/** Option flag: the TLSF fast path is off. */
export const FLAG_NO_FAST_PATH = 2;
/** Option flag: Worker caches (worker_cache.ts) are on. */
export const FLAG_WORKER_CACHES = 4;
/** Option flag: the header holds a layer state (the page-frame and slab layers may serve the heap). */
export const FLAG_LAYERS = 8;

/** Slot ids fit the owner word's low byte, 0 meaning "no owner". */
export const WORKER_SLOTS_MAX = 255;
/** Worker slots when the options give none. */
export const WORKER_SLOTS_DEFAULT = 16;
/** How long a waiter waits for one hold of a lock before it reports the owner. */
export const LOCK_TIMEOUT_MS_DEFAULT = 5000;

/** Bytes of the header proper: the fields, the locks and the slot table. */
export function slotTableEnd(slotCount: number): number {
  return alignUp(SH_SLOTS + 4 * slotCount, 64);
}

/** Bytes of the Worker caches and the state map (0 without Worker caches), from the slot table's end. */
function cachesBytes(slotCount: number, windowBytes: number, workerCaches: boolean): number {
  if (!workerCaches) return 0;
  return alignUp(slotCount * SLOT_CACHE_BYTES + stateMapBytes(windowBytes), 64);
}

/** Bytes of a shared heap's layer state: sized for the whole window (the region is a little smaller). */
export function layerStateBytes(windowBytes: number): number {
  return layerStateLayout(Math.min(windowBytes, LAYER_WINDOW_BYTES), KMALLOC_CLASSES.length)
    .totalBytes;
}

/** Byte offset (from the window's byte 0) of the layer state. */
export function layerStateOffset(
  slotCount: number,
  windowBytes: number,
  workerCaches: boolean,
): number {
  return slotTableEnd(slotCount) + cachesBytes(slotCount, windowBytes, workerCaches);
}

/**
 * Bytes before the first byte the block heap may use: the header proper,
 * then (with Worker caches) every slot's cache and the state map, then
 * (with layers) the layer state.
 */
export function sharedHeaderBytes(
  slotCount: number,
  windowBytes: number,
  workerCaches: boolean,
  layers = false,
): number {
  return layerStateOffset(slotCount, windowBytes, workerCaches) +
    (layers ? layerStateBytes(windowBytes) : 0);
}

/**
 * Whether a shared heap over `windowBytes` gets the page-frame and slab
 * layers by default: its region (the window past the header) leaves a block
 * area the layers serve (LAYERS_MIN_AREA_BYTES, with room for the control block).
 */
export function layersFit(slotCount: number, windowBytes: number, workerCaches: boolean): boolean {
  return windowBytes - sharedHeaderBytes(slotCount, windowBytes, workerCaches, true) >=
    LAYERS_MIN_AREA_BYTES + (64 << 10);
}

/** Whether Worker caches fit a window by default: caches and state map take at most 1/8 of it. */
export function workerCachesFit(slotCount: number, windowBytes: number): boolean {
  return 8 * cachesBytes(slotCount, windowBytes, true) <= windowBytes;
}

/** Typed views of a shared header (all over the same SharedArrayBuffer). */
export interface SharedHeaderViews {
  /** The whole buffer as i32 words (locks, state, slots: used with Atomics). */
  readonly i32: Int32Array;
  /** The whole buffer as u32 words. */
  readonly u32: Uint32Array;
  /** The whole buffer as f64 values (base address, window bytes, counters). */
  readonly f64: Float64Array;
  /** Byte offset of the header (the window's byte 0) in the buffer, a multiple of 8. */
  readonly offsetBytes: number;
}

/**
 * Views of the header at `offsetBytes` of `buffer`.
 *
 * @param buffer The shared buffer.
 * @param offsetBytes Where the window starts in it; a multiple of 8.
 * @returns Views over the whole buffer and the header's offset.
 */
export function headerViews(buffer: SharedArrayBuffer, offsetBytes: number): SharedHeaderViews {
  return {
    i32: new Int32Array(buffer, 0, buffer.byteLength >>> 2),
    u32: new Uint32Array(buffer, 0, buffer.byteLength >>> 2),
    f64: new Float64Array(buffer, 0, buffer.byteLength >>> 3),
    offsetBytes,
  };
}

/** Word index (i32/u32) of the header field at byte offset `field`. */
export function wordAt(views: SharedHeaderViews, field: number): number {
  return (views.offsetBytes + field) >>> 2;
}

/** Index in `f64` of the header field at byte offset `field`. */
export function f64At(views: SharedHeaderViews, field: number): number {
  return (views.offsetBytes + field) >>> 3;
}

/** Word index of the owner word of lock `lock`. */
export function lockWordAt(views: SharedHeaderViews, lock: number): number {
  return wordAt(views, SH_LOCKS + lock * LOCK_BYTES);
}

/** Word index of slot `slot`'s state (slots count from 1). */
export function slotWordAt(views: SharedHeaderViews, slot: number): number {
  return wordAt(views, SH_SLOTS + 4 * (slot - 1));
}
