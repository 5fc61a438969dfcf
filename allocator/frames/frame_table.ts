/**
 * The page-frame layer's metadata format: one 16-byte entry per 4 KiB frame,
 * like Linux's `struct page` array (mem_map), kept out of band at the end of
 * each chunk, never inside a frame.
 *
 * ```text
 * chunk = one used block of the block heap (B = block header, P = payload, 4 KiB aligned)
 * B        P                                           P + n*4096
 * │ hdr 16 │ frame 0 │ frame 1 │ ... │ frame n-1 │ frame table: n × 16 B │
 *                                                 └─ metaBytes = 16n (no padding: see chunkMetaBytes)
 *
 * frame table entry (four i32 words)
 * ┌────────────────────────────┬──────────────┬──────────────┬─────────────────┐
 * │ +0 kind | order<<4 | aux<<8│ +4 next ref  │ +8 prev ref  │ +12 aux word    │
 * └────────────────────────────┴──────────────┴──────────────┴─────────────────┘
 * FREE_HEAD  : first frame of a free buddy block of 2^order frames; next/prev link free_area[order]
 * FREE_TAIL  : any other frame of a free buddy block
 * PAGES_HEAD : first frame of a run handed out by allocPages/alloc; aux word = frame count
 * PAGES_TAIL : other frames of that run; next = the head's ref
 * SLAB_HEAD  : first frame of a slab of 2^order frames; aux = cache id; next/prev link
 *              the cache's slab lists; aux word = word index of the slab descriptor
 * SLAB_TAIL  : other frames of a slab; next = the head's ref
 * ```
 *
 * A frame is named by a 32-bit ref, `chunkId << CHUNK_REF_SHIFT | local
 * frame index`, never by an absolute address: the layer's state is all
 * 32-bit words, so it reads through Int32Array views.
 *
 * Invariants, proved by `check()`:
 * - every frame of every chunk is covered by exactly one head and its tails;
 * - a free block of order o starts at a local index that is a multiple of 2^o
 *   and lies wholly inside its chunk; its buddy is `local ^ (1 << o)`;
 * - a free block is never next to a free buddy of the same order (free merges).
 *
 * @module
 */

/** Bytes of one page frame. */
export const FRAME_BYTES = 4096;
/** log2(FRAME_BYTES). */
export const FRAME_SHIFT = 12;
/** The largest buddy order: a block of 2^ORDER_MAX frames (4 MiB). */
export const ORDER_MAX = 10;
/** Frames of a full chunk: one block of ORDER_MAX. */
export const CHUNK_FRAMES_MAX = 1 << ORDER_MAX;
/** Bits of a frame ref that hold the local frame index. */
export const CHUNK_REF_SHIFT = 10;
/** Mask of the local frame index in a frame ref. */
export const LOCAL_MASK = (1 << CHUNK_REF_SHIFT) - 1;
/** The most chunks a heap keeps at once (chunk ids fit the ref's high bits). */
export const CHUNK_COUNT_MAX = 1 << 16;

/** Bytes of one frame table entry. */
export const ENTRY_BYTES = 16;
/** Word offset of the tag (kind, order, aux bits). */
export const E_TAG = 0;
/** Word offset of the next ref (lists) or of the head's ref (tails). */
export const E_NEXT = 1;
/** Word offset of the previous ref (lists). */
export const E_PREV = 2;
/** Word offset of the aux word (frame count of a run, descriptor of a slab). */
export const E_AUX = 3;

/** No frame (end of a list). */
export const NONE = -1;

/** Kind: first frame of a free buddy block. */
export const KIND_FREE_HEAD = 1;
/** Kind: other frame of a free buddy block. */
export const KIND_FREE_TAIL = 2;
/** Kind: first frame of a page run in use. */
export const KIND_PAGES_HEAD = 3;
/** Kind: other frame of a page run in use. */
export const KIND_PAGES_TAIL = 4;
/** Kind: first frame of a slab. */
export const KIND_SLAB_HEAD = 5;
/** Kind: other frame of a slab. */
export const KIND_SLAB_TAIL = 6;
/** Mask of the kind bits of a tag. */
export const KIND_MASK = 15;

/** A tag word from its parts. */
export function tag(kind: number, order: number, aux: number): number {
  return kind | (order << 4) | (aux << 8);
}

/** The order bits of a tag. */
export function tagOrder(tagWord: number): number {
  return (tagWord >>> 4) & 15;
}

/** The aux bits of a tag (the cache id of a slab head). */
export function tagAux(tagWord: number): number {
  return tagWord >>> 8;
}

/**
 * Bytes of a chunk's metadata area for `frameCount` frames: its frame table,
 * unpadded. The chunk's block is then not a multiple of FRAME_BYTES, so the
 * next chunk's page-aligned payload may leave a gap of up to 4 KiB before it;
 * that gap is an ordinary free block, which small blocks (slab descriptors
 * among them) fill, where padding the table would waste it for good.
 *
 * @param frameCount Frames in the chunk, 1 to CHUNK_FRAMES_MAX.
 * @returns The metadata bytes.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { chunkMetaBytes } from "./frame_table.ts";
 *
 * assert.equal(chunkMetaBytes(1024), 16384);
 * assert.equal(chunkMetaBytes(64), 1024);
 * ```
 */
export function chunkMetaBytes(frameCount: number): number {
  return frameCount * ENTRY_BYTES;
}

/** The smallest order whose block holds `frameCount` frames. */
export function orderFor(frameCount: number): number {
  return frameCount <= 1 ? 0 : 32 - Math.clz32(frameCount - 1);
}
