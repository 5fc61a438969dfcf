//! Alignment math and the aligned fit test every policy shares.
//!
//! A used block's payload starts `header_bytes` after the block. To give the
//! payload an alignment A, the block may start `gap` bytes into the free block
//! it is carved from; the gap becomes a free block of its own, so it is either
//! 0 or at least `min_block_bytes`:
//!
//! ```text
//! B                      B+gap             p = B+gap+header_bytes (A-aligned)
//! ┌──────────────────────┬─────────────────┬──────────────────────────┬──────┐
//! │ gap: 0 or ≥ min block│ header          │ payload ...              │ rest │
//! └──────────────────────┴─────────────────┴──────────────────────────┴──────┘
//! ```

const std = @import("std");
const assert = std.debug.assert;
const layout = @import("layout.zig");

/// `value` rounded up to a multiple of `align_bytes` (a power of two).
pub fn alignUp(value: u64, align_bytes: u64) u64 {
    assert(std.math.isPowerOfTwo(align_bytes));
    // Blocks lie in a window below address_limit and alignments are at most
    // align_bytes_max, so this sum never wraps.
    assert(value <= layout.address_limit + layout.align_bytes_max);
    const aligned = (value + align_bytes - 1) & ~(align_bytes - 1);
    assert(aligned >= value);
    assert(aligned % align_bytes == 0);
    return aligned;
}

/// The payload address of the block at `block` (the seed's `block_ptr`).
pub fn blockPtr(block: u64) u64 {
    assert(block % layout.granule_bytes == 0);
    assert(block + layout.header_bytes <= layout.address_limit);
    return block + layout.header_bytes;
}

/// A request no fit test can take.
pub const RequestError = error{InvalidArgument};

/// The largest block size a request may ask for: with the worst alignment gap
/// it still stays below `address_limit`, so no sum below overflows it.
pub const block_size_bytes_max: u64 = layout.address_limit / 2;

/// Checks, in every build mode, what every fit test demands of a request.
pub fn checkRequest(block_size_bytes: u64, align_bytes: u64) RequestError!void {
    if (block_size_bytes < layout.min_block_bytes) return error.InvalidArgument;
    if (block_size_bytes > block_size_bytes_max) return error.InvalidArgument;
    if (block_size_bytes % layout.granule_bytes != 0) return error.InvalidArgument;
    if (!std.math.isPowerOfTwo(align_bytes)) return error.InvalidArgument;
    if (align_bytes < layout.granule_bytes or align_bytes > layout.align_bytes_max) return error.InvalidArgument;
}

/// Bytes skipped at the start of the free block at `block` so that the
/// payload is aligned to `align_bytes`: 0 or at least `min_block_bytes`.
pub fn alignGapBytes(block: u64, align_bytes: u64) u64 {
    var payload = alignUp(block + layout.header_bytes, align_bytes);
    var gap_bytes = payload - layout.header_bytes - block;
    if (gap_bytes != 0 and gap_bytes < layout.min_block_bytes) {
        payload = alignUp(block + layout.header_bytes + layout.min_block_bytes, align_bytes);
        gap_bytes = payload - layout.header_bytes - block;
    }
    assert(gap_bytes == 0 or gap_bytes >= layout.min_block_bytes);
    assert(gap_bytes < align_bytes + layout.min_block_bytes);
    return gap_bytes;
}

/// True if a block of `block_size_bytes` with its payload aligned to
/// `align_bytes` fits in the free block of `free_size_bytes` at `block`.
pub fn fits(block: u64, free_size_bytes: u64, block_size_bytes: u64, align_bytes: u64) bool {
    if (align_bytes <= layout.granule_bytes) return block_size_bytes <= free_size_bytes;
    return alignGapBytes(block, align_bytes) + block_size_bytes <= free_size_bytes;
}

test "alignUp rounds up to a power of two" {
    try std.testing.expectEqual(@as(u64, 0), alignUp(0, 8));
    try std.testing.expectEqual(@as(u64, 16), alignUp(9, 8));
    try std.testing.expectEqual(@as(u64, 4096), alignUp(4096, 4096));
    try std.testing.expectEqual(@as(u64, 1 << 30), alignUp(1, 1 << 30));
}

test "blockPtr skips the header" {
    try std.testing.expectEqual(@as(u64, 0x1010), blockPtr(0x1000));
}

test "alignGapBytes is 0 or at least a minimal block" {
    // Payload 0x1010 is already 16-aligned.
    try std.testing.expectEqual(@as(u64, 0), alignGapBytes(0x1000, 16));
    // Payload 0x1018 needs 8 bytes to reach 32-alignment: too small a gap, so
    // skip to the next aligned payload past a minimal block (0x1040).
    try std.testing.expectEqual(@as(u64, 0x28), alignGapBytes(0x1008, 32));
    // Payload 0x1010 moves to 0x2000 for 4096-alignment.
    try std.testing.expectEqual(@as(u64, 0xff0), alignGapBytes(0x1000, 4096));
}

test "fits accounts for the alignment gap" {
    try std.testing.expect(fits(0x1000, 64, 64, 8));
    try std.testing.expect(!fits(0x1000, 64, 72, 8));
    try std.testing.expect(fits(0x1008, 0x28 + 48, 48, 32));
    try std.testing.expect(!fits(0x1008, 0x28 + 40, 48, 32));
}
