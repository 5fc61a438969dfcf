//! Reading and checking block headers (layout in `layout.zig`).
//!
//! The check word is `headerCheck(B, word0, word1, slack)`, the same hash as
//! `headerCheck` in `allocator/heap/layout.ts`: Zig's wrapping `*%` on u32 is
//! JavaScript's `Math.imul`, and the address contributes its low 32 bits.

const std = @import("std");
const assert = std.debug.assert;
const layout = @import("layout.zig");
const Window = @import("window.zig").Window;

/// The check word of a header at `address` with the given first three words.
pub fn headerCheck(address: u64, word0: u32, word1: u32, slack: u32) u32 {
    // Three independent multiplies, not a chain: short latency on every header.
    const h = ((word0 ^ @as(u32, @truncate(address))) *% 0x9e3779b1) ^
        ((word1 ^ layout.header_magic) *% 0x85ebca77) ^
        (slack *% 0xc2b2ae3d);
    return h ^ (h >> 15);
}

/// A block header as read from memory.
pub const Header = struct {
    word0: u32,
    word1: u32,
    slack: u32,
    check: u32,

    /// Reads the header of the block at `block`.
    pub fn read(window: Window, block: u64) Header {
        assert(block % layout.granule_bytes == 0);
        assert(block != 0);
        return .{
            .word0 = window.readU32(block + layout.header_size_lo_offset),
            .word1 = window.readU32(block + layout.header_size_hi_offset),
            .slack = window.readU32(block + layout.header_slack_offset),
            .check = window.readU32(block + layout.header_check_offset),
        };
    }

    /// The block size in bytes: the size words without the flag bits.
    pub fn sizeBytes(self: Header) u64 {
        const size_bytes = (@as(u64, self.word1) << 32) | (self.word0 & ~layout.flags_mask);
        assert(size_bytes < layout.address_limit);
        return size_bytes;
    }

    /// True if the block is free.
    pub fn isFree(self: Header) bool {
        return self.word0 & layout.flag_free != 0;
    }

    /// True if the check word matches the other words at `block`.
    pub fn isValid(self: Header, block: u64) bool {
        return self.check == headerCheck(block, self.word0, self.word1, self.slack);
    }
};

/// The size of the free block at `block`; in safety-checked builds asserts the
/// block's header is intact, free, slack-free and at least a minimal block.
pub fn freeBlockSize(window: Window, block: u64) u64 {
    const header = Header.read(window, block);
    if (std.debug.runtime_safety) {
        assert(header.isValid(block));
        assert(header.isFree());
        assert(header.slack == 0);
    }
    const size_bytes = header.sizeBytes();
    assert(size_bytes >= layout.min_block_bytes);
    assert(size_bytes % layout.granule_bytes == 0);
    return size_bytes;
}

test "headerCheck matches values computed by allocator/heap/layout.ts" {
    // headerCheck(0, 0, 0, 0) and headerCheck(0x1000, 41, 0, 0) from the TS side.
    try std.testing.expectEqual(@as(u32, 0x9655db6e), headerCheck(0, 0, 0, 0));
    try std.testing.expectEqual(@as(u32, 0x5829cacc), headerCheck(0x1000, 41, 0, 0));
    // Only the low 32 bits of the address count.
    try std.testing.expectEqual(headerCheck(0x1000, 1, 2, 3), headerCheck(0x7_0000_1000, 1, 2, 3));
}

test "Header splits the size from the flag bits" {
    var buffer align(8) = [_]u8{0} ** 16;
    const size_bytes: u64 = 0x2_0000_0048;
    const word0: u32 = @as(u32, @truncate(size_bytes)) | layout.flag_free | layout.flag_last;
    std.mem.writeInt(u32, buffer[0..4], word0, .little);
    std.mem.writeInt(u32, buffer[4..8], 2, .little);
    std.mem.writeInt(u32, buffer[12..16], headerCheck(0x1000, word0, 2, 0), .little);
    const window = Window.init(@floatFromInt(@intFromPtr(&buffer)), 0x1000);
    const header = Header.read(window, 0x1000);
    try std.testing.expectEqual(size_bytes, header.sizeBytes());
    try std.testing.expect(header.isFree());
    try std.testing.expect(header.isValid(0x1000));
    try std.testing.expect(!header.isValid(0x1008));
}
