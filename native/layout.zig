//! The in-memory format of blocks and of the allocator's control block.
//!
//! Mirrors `allocator/heap/layout.ts` constant by constant; `tests/layout_test.ts`
//! reads every constant back through `pma_layout_value` and proves the two
//! agree. Every field is little-endian.
//!
//! The block layout is drawn once, in `allocator/heap/layout.ts`: a 16-byte
//! header (size with flag bits, slack, check word), then the payload; a free
//! block holds its list links after the header and a size footer at its end.
//!
//! Control block (inside managed memory, at `control_address`):
//!
//! ```text
//! +0 u32 magic  +4 u32 policy id  +8 u32 fl_count  +16 u32 fl bitmap lo  +20 u32 fl bitmap hi
//! +24 u32 sl_bitmap[fl_count]  controlHeadsOffset(fl_count): u64 heads[max(1, fl_count * sl_count)]
//! ```
//!
//! The check word is `headerCheck(B, word0, word1, slack, key)` (`header.zig`),
//! keyed with the heap's random secret; every call passes the key.
//!
//! Invariants (checked where they are read):
//! - size is a multiple of granule_bytes and at least min_block_bytes, so the
//!   flag bits fit in the low bits it leaves zero.
//! - flag_free ⟹ the block is on exactly one free list and its footer equals its size.
//! - TLSF: bit `sl` of `sl_bitmap[fl]` is set ⟺ `heads[fl * sl_count + sl] != 0`,
//!   and bit `fl` of the fl bitmap is set ⟺ `sl_bitmap[fl] != 0`.

const std = @import("std");
const assert = std.debug.assert;

/// Every block address and size is a multiple of this; also the default payload alignment.
pub const granule_bytes: u64 = 8;
/// log2(granule_bytes).
pub const granule_log2: u6 = 3;

/// Bytes of the block header.
pub const header_bytes: u64 = 16;
/// Byte offset of the low 32 bits of the size, which also carry the flag bits.
pub const header_size_lo_offset: u64 = 0;
/// Byte offset of the high bits of the size (sizes stay below 2^53).
pub const header_size_hi_offset: u64 = 4;
/// Byte offset of the slack word (payload capacity beyond the requested size).
pub const header_slack_offset: u64 = 8;
/// Byte offset of the check word.
pub const header_check_offset: u64 = 12;

/// Flag: the block is free.
pub const flag_free: u32 = 1;
/// Flag: the physically previous block is free, so its footer is valid.
pub const flag_prev_free: u32 = 2;
/// Flag: the block is the last of its region.
pub const flag_last: u32 = 4;
/// All flag bits.
pub const flags_mask: u32 = 7;

/// Byte offset, in a free block, of the u64 address of the next free block.
pub const free_next_offset: u64 = 16;
/// Byte offset, in a free block, of the u64 address of the previous free block.
pub const free_prev_offset: u64 = 24;
/// Bytes of the size footer at the end of a free block.
pub const footer_bytes: u64 = 8;

/// The smallest block: header, two links and the footer.
pub const min_block_bytes: u64 = 40;

/// Seed of the header check hash; the ASCII bytes "PMA1".
pub const header_magic: u32 = 0x504d4131;

/// Control block: magic word identifying an initialised control block ("PMAC").
pub const control_magic: u32 = 0x504d4143;
/// Control block: byte offset of the magic word.
pub const control_magic_offset: u64 = 0;
/// Control block: byte offset of the policy id.
pub const control_policy_offset: u64 = 4;
/// Control block: byte offset of the number of first-level size classes.
pub const control_fl_count_offset: u64 = 8;
/// Control block: byte offset of the first-level bitmap (two u32 words, low first).
pub const control_fl_bitmap_offset: u64 = 16;
/// Control block: byte offset of the second-level bitmaps (one u32 per first level).
pub const control_sl_bitmaps_offset: u64 = 24;

/// Policy id stored in the control block for first-fit.
pub const policy_id_first_fit: u32 = 1;
/// Policy id stored in the control block for TLSF.
pub const policy_id_tlsf: u32 = 2;

/// TLSF: log2 of the number of second-level classes per first level.
pub const sl_log2: u6 = 4;
/// TLSF: second-level classes per first level.
pub const sl_count: u32 = 16;
/// TLSF: sizes below this are classed linearly in first level 0.
pub const small_block_bytes: u64 = @as(u64, sl_count) << granule_log2;
/// TLSF: the most first levels any heap can need (block sizes stay below 2^53).
pub const fl_count_max: u32 = 53 - (@as(u32, sl_log2) + granule_log2) + 1;

/// The largest alignment `alloc` accepts: 1 GiB.
pub const align_bytes_max: u64 = 1 << 30;

/// Addresses and sizes stay below this so an f64 holds them exactly.
pub const address_limit: u64 = 1 << 53;

comptime {
    assert(std.math.isPowerOfTwo(granule_bytes));
    assert(granule_bytes == 1 << granule_log2);
    assert(header_bytes % granule_bytes == 0);
    assert(header_size_hi_offset == header_size_lo_offset + 4);
    assert(header_slack_offset == header_size_hi_offset + 4);
    assert(header_check_offset == header_slack_offset + 4);
    assert(header_check_offset + 4 == header_bytes);
    // The flags live in the low bits a granule-multiple size leaves zero.
    assert(flags_mask == flag_free | flag_prev_free | flag_last);
    assert(flags_mask < granule_bytes);
    assert(flag_free & flag_prev_free == 0);
    assert(flag_free & flag_last == 0);
    assert(flag_prev_free & flag_last == 0);
    // A free block holds its header, both links and the footer without overlap.
    assert(free_next_offset == header_bytes);
    assert(free_prev_offset == free_next_offset + 8);
    assert(min_block_bytes == free_prev_offset + 8 + footer_bytes);
    assert(min_block_bytes % granule_bytes == 0);
    assert(control_policy_offset == control_magic_offset + 4);
    assert(control_fl_count_offset == control_policy_offset + 4);
    assert(control_fl_bitmap_offset >= control_fl_count_offset + 4);
    assert(control_fl_bitmap_offset % 8 == 0);
    assert(control_sl_bitmaps_offset == control_fl_bitmap_offset + 8);
    assert(policy_id_first_fit != policy_id_tlsf);
    assert(sl_count == 1 << sl_log2);
    // One u32 second-level bitmap per first level.
    assert(sl_count <= 32);
    assert(small_block_bytes == 128);
    // Two u32 words hold the first-level bitmap.
    assert(fl_count_max <= 64);
    assert(fl_count_max == 47);
    assert(std.math.isPowerOfTwo(align_bytes_max));
    assert(align_bytes_max < address_limit);
}

/// Byte offset of the list heads in a control block with `fl_count` first
/// levels: after the second-level bitmaps, rounded up to 8 bytes.
pub fn controlHeadsOffset(fl_count: u32) u64 {
    assert(fl_count <= fl_count_max);
    const bitmaps_end = control_sl_bitmaps_offset + 4 * @as(u64, fl_count);
    return (bitmaps_end + 7) & ~@as(u64, 7);
}

/// Bytes of a control block: first-fit has one list head (`fl_count` 0),
/// TLSF has `fl_count * sl_count` heads.
pub fn controlBytes(fl_count: u32) u64 {
    assert(fl_count <= fl_count_max);
    const head_count: u64 = if (fl_count == 0) 1 else @as(u64, fl_count) * sl_count;
    return controlHeadsOffset(fl_count) + 8 * head_count;
}

/// Ids of the constants `pma_layout_value` reports, in ABI order: each name is
/// the TS constant's name in `allocator/heap/layout.ts`. Append only; never reorder.
pub const LayoutValueId = enum(u32) {
    GRANULE_BYTES,
    GRANULE_LOG2,
    HEADER_BYTES,
    HEADER_SIZE_LO_OFFSET,
    HEADER_SIZE_HI_OFFSET,
    HEADER_SLACK_OFFSET,
    HEADER_CHECK_OFFSET,
    FLAG_FREE,
    FLAG_PREV_FREE,
    FLAG_LAST,
    FLAGS_MASK,
    FREE_NEXT_OFFSET,
    FREE_PREV_OFFSET,
    FOOTER_BYTES,
    MIN_BLOCK_BYTES,
    HEADER_MAGIC,
    CONTROL_MAGIC,
    CONTROL_MAGIC_OFFSET,
    CONTROL_POLICY_OFFSET,
    CONTROL_FL_COUNT_OFFSET,
    CONTROL_FL_BITMAP_OFFSET,
    CONTROL_SL_BITMAPS_OFFSET,
    POLICY_ID_FIRST_FIT,
    POLICY_ID_TLSF,
    SL_LOG2,
    SL_COUNT,
    SMALL_BLOCK_BYTES,
    FL_COUNT_MAX,
    ALIGN_BYTES_MAX,
};

/// The number of layout value ids; ids at or past it are unknown.
pub const layout_value_count: u32 = @typeInfo(LayoutValueId).@"enum".fields.len;

/// The value of the layout constant `id` (exact as an f64).
pub fn layoutValue(id: LayoutValueId) f64 {
    const value: u64 = switch (id) {
        .GRANULE_BYTES => granule_bytes,
        .GRANULE_LOG2 => granule_log2,
        .HEADER_BYTES => header_bytes,
        .HEADER_SIZE_LO_OFFSET => header_size_lo_offset,
        .HEADER_SIZE_HI_OFFSET => header_size_hi_offset,
        .HEADER_SLACK_OFFSET => header_slack_offset,
        .HEADER_CHECK_OFFSET => header_check_offset,
        .FLAG_FREE => flag_free,
        .FLAG_PREV_FREE => flag_prev_free,
        .FLAG_LAST => flag_last,
        .FLAGS_MASK => flags_mask,
        .FREE_NEXT_OFFSET => free_next_offset,
        .FREE_PREV_OFFSET => free_prev_offset,
        .FOOTER_BYTES => footer_bytes,
        .MIN_BLOCK_BYTES => min_block_bytes,
        .HEADER_MAGIC => header_magic,
        .CONTROL_MAGIC => control_magic,
        .CONTROL_MAGIC_OFFSET => control_magic_offset,
        .CONTROL_POLICY_OFFSET => control_policy_offset,
        .CONTROL_FL_COUNT_OFFSET => control_fl_count_offset,
        .CONTROL_FL_BITMAP_OFFSET => control_fl_bitmap_offset,
        .CONTROL_SL_BITMAPS_OFFSET => control_sl_bitmaps_offset,
        .POLICY_ID_FIRST_FIT => policy_id_first_fit,
        .POLICY_ID_TLSF => policy_id_tlsf,
        .SL_LOG2 => sl_log2,
        .SL_COUNT => sl_count,
        .SMALL_BLOCK_BYTES => small_block_bytes,
        .FL_COUNT_MAX => fl_count_max,
        .ALIGN_BYTES_MAX => align_bytes_max,
    };
    assert(value < address_limit);
    return @floatFromInt(value);
}

test "controlHeadsOffset rounds the end of the bitmaps up to 8 bytes" {
    try std.testing.expectEqual(@as(u64, 24), controlHeadsOffset(0));
    try std.testing.expectEqual(@as(u64, 32), controlHeadsOffset(1));
    try std.testing.expectEqual(@as(u64, 32), controlHeadsOffset(2));
    try std.testing.expectEqual(@as(u64, 24 + 188 + 4), controlHeadsOffset(fl_count_max));
}

test "controlBytes counts one head for first-fit and fl_count * sl_count for TLSF" {
    try std.testing.expectEqual(@as(u64, 32), controlBytes(0));
    try std.testing.expectEqual(@as(u64, 32 + 8 * 16), controlBytes(1));
}

test "layoutValue reports every id" {
    try std.testing.expectEqual(@as(f64, 40), layoutValue(.MIN_BLOCK_BYTES));
    try std.testing.expectEqual(@as(f64, 0x504d4131), layoutValue(.HEADER_MAGIC));
    try std.testing.expectEqual(@as(u32, 29), layout_value_count);
}
