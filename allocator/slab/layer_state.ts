/**
 * The page-frame and slab layers' mutable state as typed arrays: one source
 * of truth that can live in JS memory (an unshared heap) or in the heap's
 * SharedArrayBuffer (a shared heap, where every Worker builds the same
 * objects over the same words).
 *
 * Every counter, list head and table the layers keep between calls is a word
 * here; the JS objects of the layers (FrameAllocator, ChunkDirectory,
 * SlabPageMap, SlabCache, LayeredHeap) hold only views and constants, and
 * read their counters through getters over these words.
 *
 * ```text
 * layer state (i32 words, sized from the layers' window when the heap is made)
 * ┌──────────────────────┬───────────────┬──────────────────────────────────────┐
 * │ scalars (32 words)   │ buddy heads   │ buddy free blocks per order          │
 * │ S_* below            │ 11 words      │ 11 words                             │
 * ├──────────────────────┴───────────────┴──────────────────────────────────────┤
 * │ per chunk id (chunkCapacity each): frames, free frames, table word,          │
 * │                                    start offset, end offset                  │
 * │ per directory slot (64 KiB of window): first chunk, second chunk             │
 * │ per page of the window: slab descriptor + 1, cache id << 3 | frame index     │
 * │ per cache (cacheRecords, shared heaps only): CACHE_RECORD_WORDS words (C_*)  │
 * └──────────────────────────────────────────────────────────────────────────────┘
 * ```
 *
 * Chunk capacity: a chunk is a used block of at least one frame and its
 * 16-byte table entry behind a 16-byte header, so no window holds more than
 * `layerWindowBytes / (FRAME_BYTES + 32)` of them: the arrays are sized to
 * that bound (and to CHUNK_COUNT_MAX), which no heap can reach.
 *
 * @module
 */

import { CHUNK_COUNT_MAX, FRAME_BYTES, NONE, ORDER_MAX } from "../frames/frame_table.ts";
import {
  DIRECTORY_COUNT_WORD,
  DIRECTORY_ID_LIMIT_WORD,
  SLOT_SHIFT,
} from "../frames/chunk_directory.ts";
import {
  FRAMES_CHUNKS_GROWN_WORD,
  FRAMES_CHUNKS_TAKEN_WORD,
  FRAMES_FREE_WORD,
  FRAMES_META_BYTES_WORD,
  FRAMES_TOTAL_WORD,
} from "../frames/buddy.ts";
import { PAGE_MAP_MAPPED_WORD } from "./slab_page_map.ts";
import { CACHE_RECORD_WORDS } from "./slab_cache.ts";

/** Scalar word: frames of all chunks. */
export const S_TOTAL_FRAMES = FRAMES_TOTAL_WORD;
/** Scalar word: free frames of all chunks. */
export const S_FREE_FRAMES = FRAMES_FREE_WORD;
/** Scalar word: bytes of all chunks' frame tables. */
export const S_META_BYTES = FRAMES_META_BYTES_WORD;
/** Scalar word: chunks taken since creation. */
export const S_CHUNKS_TAKEN = FRAMES_CHUNKS_TAKEN_WORD;
/** Scalar word: chunks grown in place since creation. */
export const S_CHUNKS_GROWN = FRAMES_CHUNKS_GROWN_WORD;
/** Scalar word: the chunk directory's highest id in use + 1. */
export const S_ID_LIMIT = DIRECTORY_ID_LIMIT_WORD;
/** Scalar word: chunks registered in the directory. */
export const S_CHUNK_COUNT = DIRECTORY_COUNT_WORD;
/** Scalar word: pages the slab page map maps. */
export const S_MAPPED_PAGES = PAGE_MAP_MAPPED_WORD;
/** Scalar word: page runs handed out. */
export const S_PAGE_RUNS = 8;
/** Scalar word: frames in those runs. */
export const S_PAGE_FRAMES = 9;
/** Scalar word: bytes of those runs past their requests. */
export const S_PAGE_SLACK_BYTES = 10;
/** Scalar word: blocks the layers took from the block heap. */
export const S_BLOCK_COUNT = 11;
/** Scalar word: requested bytes of those blocks. */
export const S_BLOCK_BYTES = 12;
/** Scalar word: caches made since creation (draws each one's key). */
export const S_CACHES_MADE = 13;
/** Scalar word: the layers' key seed. */
export const S_SEED = 14;
/** Scalar word: moves on whenever a shared heap's Worker stores changed layer fields (layered_heap.ts). */
export const S_VERSION = 15;
/** Scalar words (room for more). */
export const SCALAR_WORDS = 32;

/** Sizes of a layer state. */
export interface LayerStateLayout {
  /** Bytes of the window the layers address. */
  readonly layerWindowBytes: number;
  /** Chunk ids. */
  readonly chunkCapacity: number;
  /** Directory slots. */
  readonly slotCount: number;
  /** Pages of the slab page map. */
  readonly pageCount: number;
  /** Cache records in the state (0: each cache keeps its own record). */
  readonly cacheRecords: number;
  /** Bytes of the whole state, a multiple of 64. */
  readonly totalBytes: number;
}

/**
 * The sizes of the layer state for a window.
 *
 * @param layerWindowBytes Bytes of the window the layers address (below 2^31).
 * @param cacheRecords Cache records kept in the state (shared heaps), else 0.
 * @returns The layout.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { layerStateLayout } from "./layer_state.ts";
 *
 * const layout = layerStateLayout(16 << 20, 0);
 * assert.equal(layout.chunkCapacity, 4065);
 * assert.equal(layout.totalBytes % 64, 0);
 * ```
 */
export function layerStateLayout(
  layerWindowBytes: number,
  cacheRecords: number,
): LayerStateLayout {
  const chunkCapacity = Math.min(
    CHUNK_COUNT_MAX,
    Math.floor(layerWindowBytes / (FRAME_BYTES + 32)) + 1,
  );
  const slotCount = (layerWindowBytes >>> SLOT_SHIFT) + 2;
  // Pages for any phase of the base address (slab_page_map.ts): a shared
  // heap sizes its state before it knows where its region starts.
  const pageCount = Math.ceil((layerWindowBytes + FRAME_BYTES - 1) / FRAME_BYTES) + 1;
  const words = SCALAR_WORDS + 2 * (ORDER_MAX + 1) + 5 * chunkCapacity + 2 * slotCount +
    2 * pageCount + cacheRecords * CACHE_RECORD_WORDS;
  return {
    layerWindowBytes,
    chunkCapacity,
    slotCount,
    pageCount,
    cacheRecords,
    totalBytes: Math.ceil((4 * words + CACHE_RECORD_WORDS * 4) / 64) * 64,
  };
}

/** Views of one layer state. */
export class LayerState {
  /** The sizes. */
  readonly layout: LayerStateLayout;
  /** Scalar words (S_*). */
  readonly scalars: Int32Array;
  /** Head ref of the buddy free list of each order. */
  readonly heads: Int32Array;
  /** Free blocks on each order's list. */
  readonly freeBlocks: Int32Array;
  /** Frames of each chunk. */
  readonly chunkFrames: Int32Array;
  /** Free frames of each chunk. */
  readonly chunkFreeFrames: Int32Array;
  /** Word index of each chunk's frame table entry 0. */
  readonly chunkTableWord: Int32Array;
  /** Window offset of each chunk's first byte; -1 for an unused id. */
  readonly startOffset: Int32Array;
  /** Window offset just past each chunk; -1 for an unused id. */
  readonly endOffset: Int32Array;
  /** Per directory slot: the first chunk overlapping it. */
  readonly slotLo: Int32Array;
  /** Per directory slot: the second chunk overlapping it. */
  readonly slotHi: Int32Array;
  /** Per page: slab descriptor + 1, or 0. */
  readonly descriptorPlusOne: Int32Array;
  /** Per page: cache id << 3 | the frame's index in its slab. */
  readonly info: Int32Array;
  /** Cache records, CACHE_RECORD_WORDS each (empty when each cache keeps its own). */
  readonly cacheWords: Int32Array;

  /**
   * Views a layer state of `layout` at byte `offsetBytes` of `buffer`.
   *
   * @param buffer An ArrayBuffer (unshared) or the heap's SharedArrayBuffer.
   * @param offsetBytes Where the state starts, a multiple of 64.
   * @param layout Its sizes.
   * @param fresh Writes the initial state (empty lists and tables); false joins a written one.
   */
  constructor(
    buffer: ArrayBufferLike,
    offsetBytes: number,
    layout: LayerStateLayout,
    fresh: boolean,
  ) {
    this.layout = layout;
    let at = offsetBytes;
    const take = (words: number): Int32Array => {
      const view = new Int32Array(buffer, at, words);
      at += 4 * words;
      return view;
    };
    this.scalars = take(SCALAR_WORDS);
    this.heads = take(ORDER_MAX + 1);
    this.freeBlocks = take(ORDER_MAX + 1);
    this.chunkFrames = take(layout.chunkCapacity);
    this.chunkFreeFrames = take(layout.chunkCapacity);
    this.chunkTableWord = take(layout.chunkCapacity);
    this.startOffset = take(layout.chunkCapacity);
    this.endOffset = take(layout.chunkCapacity);
    this.slotLo = take(layout.slotCount);
    this.slotHi = take(layout.slotCount);
    this.descriptorPlusOne = take(layout.pageCount);
    this.info = take(layout.pageCount);
    // Cache records start on a 64-byte line of their own.
    at = Math.ceil(at / 64) * 64;
    this.cacheWords = take(layout.cacheRecords * CACHE_RECORD_WORDS);
    if (fresh) this.#init(offsetBytes);
  }

  /** A layer state in JS memory of its own (an unshared heap). */
  static unshared(layerWindowBytes: number): LayerState {
    const layout = layerStateLayout(layerWindowBytes, 0);
    return new LayerState(new ArrayBuffer(layout.totalBytes), 0, layout, true);
  }

  #init(offsetBytes: number): void {
    const all = new Int32Array(this.scalars.buffer, offsetBytes, this.layout.totalBytes >> 2);
    all.fill(0);
    this.heads.fill(NONE);
    this.startOffset.fill(-1);
    this.endOffset.fill(-1);
    this.slotLo.fill(NONE);
    this.slotHi.fill(NONE);
  }

  /** The record of cache `id` (shared heaps: a view into the state). */
  cacheRecord(id: number): Int32Array {
    return this.cacheWords.subarray(id * CACHE_RECORD_WORDS, (id + 1) * CACHE_RECORD_WORDS);
  }
}
