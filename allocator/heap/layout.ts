/**
 * The in-memory format of blocks and of the allocator's control block.
 *
 * Defined once here and mirrored byte for byte by `native/layout.zig`;
 * `tests/layout_test.ts` proves the two agree. Every field is little-endian.
 *
 * ```text
 * block address B (a multiple of GRANULE_BYTES)
 * ┌────────────────────────┬────────────────┬────────────────┬────────────────┐
 * │ +0 u32 size_lo | flags │ +4 u32 size_hi │ +8 u32 slack   │ +12 u32 check  │  header
 * ├────────────────────────┴────────────────┴────────────────┴────────────────┤
 * │ used block: payload at B + HEADER_BYTES (the seed's `block_ptr`)           │
 * │ free block: +16 u64 next free block, +24 u64 previous free block (0 = none)│
 * │             ...                                                            │
 * │             B + size - 8: u64 size footer (boundary tag for coalescing)    │
 * └────────────────────────────────────────────────────────────────────────────┘
 * ```
 *
 * Invariants, asserted by the allocator and proved by `check()`:
 * - `size` is a multiple of GRANULE_BYTES and at least MIN_BLOCK_BYTES; the
 *   flag bits live in the low bits that this leaves zero.
 * - FLAG_FREE ⟹ the block is on exactly one free list and its footer equals its size.
 * - FLAG_PREV_FREE ⟺ the physically previous block in the same region is free.
 * - FLAG_LAST ⟺ the block ends its region's block area.
 * - Two physically adjacent blocks are never both free (free() coalesces).
 * - `slack` is the payload capacity a used block has beyond the size asked
 *   for; it is 0 in free blocks.
 * - `check` is `headerCheck(B, word0, word1, slack, key)` with the heap's
 *   secret key: a header overwritten by a payload overflow, or forged without
 *   the key, no longer matches it and is reported, never trusted.
 *
 * @module
 */

/** Every block address and size is a multiple of this; it is also the default payload alignment. */
export const GRANULE_BYTES = 8;
/** log2(GRANULE_BYTES). */
export const GRANULE_LOG2 = 3;

/** Bytes of the block header, the seed's `{ size, is_free }` plus slack and check words. */
export const HEADER_BYTES = 16;
/** Byte offset of the low 32 bits of the size, which also carry the flag bits. */
export const HEADER_SIZE_LO_OFFSET = 0;
/** Byte offset of the high bits of the size (sizes stay below 2^53). */
export const HEADER_SIZE_HI_OFFSET = 4;
/** Byte offset of the slack word (payload capacity beyond the requested size). */
export const HEADER_SLACK_OFFSET = 8;
/** Byte offset of the check word. */
export const HEADER_CHECK_OFFSET = 12;

/** Flag: the block is free. */
export const FLAG_FREE = 1;
/** Flag: the physically previous block is free, so its footer is valid. */
export const FLAG_PREV_FREE = 2;
/** Flag: the block is the last of its region. */
export const FLAG_LAST = 4;
/** All flag bits; they fit in the zero low bits of a granule-multiple size. */
export const FLAGS_MASK = 7;

/** Byte offset, in a free block, of the u64 address of the next free block. */
export const FREE_NEXT_OFFSET = 16;
/** Byte offset, in a free block, of the u64 address of the previous free block. */
export const FREE_PREV_OFFSET = 24;
/** Bytes of the size footer at the end of a free block. */
export const FOOTER_BYTES = 8;

/** The smallest block: header, two links and the footer. */
export const MIN_BLOCK_BYTES = 40;

/** Seed of the header check hash; the ASCII bytes "PMA1". */
export const HEADER_MAGIC = 0x504d4131;

/** Control block: magic word identifying an initialised control block ("PMAC"). */
export const CONTROL_MAGIC = 0x504d4143;
/** Control block: byte offset of the magic word. */
export const CONTROL_MAGIC_OFFSET = 0;
/** Control block: byte offset of the policy id. */
export const CONTROL_POLICY_OFFSET = 4;
/** Control block: byte offset of the number of first-level size classes. */
export const CONTROL_FL_COUNT_OFFSET = 8;
/** Control block: byte offset of the first-level bitmap (two u32 words, low first). */
export const CONTROL_FL_BITMAP_OFFSET = 16;
/** Control block: byte offset of the second-level bitmaps (one u32 per first level). */
export const CONTROL_SL_BITMAPS_OFFSET = 24;

/** Policy id stored in the control block for first-fit. */
export const POLICY_ID_FIRST_FIT = 1;
/** Policy id stored in the control block for TLSF. */
export const POLICY_ID_TLSF = 2;

/** TLSF: log2 of the number of second-level classes per first level. */
export const SL_LOG2 = 4;
/** TLSF: second-level classes per first level. */
export const SL_COUNT = 16;
/** TLSF: sizes below this are classed linearly in first level 0. */
export const SMALL_BLOCK_BYTES = SL_COUNT << GRANULE_LOG2; // 128
/** TLSF: the most first levels any heap can need (block sizes stay below 2^53). */
export const FL_COUNT_MAX = 53 - (SL_LOG2 + GRANULE_LOG2) + 1;

/** The largest alignment `alloc` accepts: 1 GiB. */
export const ALIGN_BYTES_MAX = 2 ** 30;

/**
 * Byte offset of the list heads in a control block with `flCount` first
 * levels: after the second-level bitmaps, rounded up to 8 bytes.
 */
export function controlHeadsOffset(flCount: number): number {
  const bitmapsEnd = CONTROL_SL_BITMAPS_OFFSET + 4 * flCount;
  return (bitmapsEnd + 7) & ~7;
}

/**
 * Bytes of a control block: a first-fit block has one list head (`flCount`
 * 0), a TLSF block has `flCount * SL_COUNT` heads.
 */
export function controlBytes(flCount: number): number {
  const headCount = flCount === 0 ? 1 : flCount * SL_COUNT;
  return controlHeadsOffset(flCount) + 8 * headCount;
}

/**
 * The check word of a header at `address` with the given first three words,
 * keyed with the heap's secret `key` (a random u32 from
 * `crypto.getRandomValues`, drawn when the heap is made). Multiplicative mixing (Math.imul) matches Zig's
 * wrapping `*%` on u32. Without the key, a forged header passes with
 * probability 2^-32. The key guards against headers written blind (a payload
 * overflow, stale bytes, a header copied from another heap); it is not a MAC:
 * code that can read this heap's headers can recover it.
 */
export function headerCheck(
  address: number,
  word0: number,
  word1: number,
  slack: number,
  key: number,
): number {
  // Every header written or verified runs this, several times an
  // operation: three independent multiplies (not a chain) keep its latency
  // short, and `imul` bound once keeps it small enough for V8 to inline.
  // `address >>> 0` is the address modulo 2^32 (ToUint32), exact for any address below 2^53.
  // The key joins the magic, so keying costs no instruction.
  const h = imul(word0 ^ (address >>> 0), 0x9e3779b1) ^
    imul(word1 ^ HEADER_MAGIC ^ key, 0x85ebca77) ^ imul(slack, 0xc2b2ae3d);
  return (h ^ (h >>> 15)) >>> 0;
}

const imul = Math.imul;
