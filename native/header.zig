//! Reading and checking block headers (layout in `layout.zig`).
//!
//! The check word is `headerCheck(B, word0, word1, slack, key)`, the same
//! hash as `headerCheck` in `allocator/heap/layout.ts`: Zig's wrapping `*%` on
//! u32 is JavaScript's `Math.imul`, and the address contributes its low 32
//! bits. `key` is the heap's secret (a random u32 drawn when the heap is
//! created and passed with every call), so a header forged without it passes
//! with probability 2^-32.

const std = @import("std");
const layout = @import("layout.zig");
const window_ = @import("window.zig");
const Window = window_.Window;

/// The check word of a header at `address` with the given first three words,
/// keyed with the heap's secret `key`.
pub fn headerCheck(address: u64, word0: u32, word1: u32, slack: u32, key: u32) u32 {
    // Three independent multiplies, not a chain: short latency on every header.
    // The key joins the magic, so keying costs no instruction.
    const h = ((word0 ^ @as(u32, @truncate(address))) *% 0x9e3779b1) ^
        ((word1 ^ layout.header_magic ^ key) *% 0x85ebca77) ^
        (slack *% 0xc2b2ae3d);
    return h ^ (h >> 15);
}

/// A block header as read from memory.
pub const Header = struct {
    word0: u32,
    word1: u32,
    slack: u32,
    check: u32,

    /// Reads the header of the block at `block`, which must lie in the window.
    pub fn read(window: Window, block: u64) window_.Error!Header {
        if (block % layout.granule_bytes != 0 or block == 0) return error.OutOfWindow;
        const bytes = try window.bytes(block, layout.header_bytes);
        return .{
            .word0 = std.mem.readInt(u32, bytes[layout.header_size_lo_offset..][0..4], .little),
            .word1 = std.mem.readInt(u32, bytes[layout.header_size_hi_offset..][0..4], .little),
            .slack = std.mem.readInt(u32, bytes[layout.header_slack_offset..][0..4], .little),
            .check = std.mem.readInt(u32, bytes[layout.header_check_offset..][0..4], .little),
        };
    }

    /// The block size in bytes: the size words without the flag bits.
    pub fn sizeBytes(self: Header) u64 {
        return (@as(u64, self.word1) << 32) | (self.word0 & ~layout.flags_mask);
    }

    /// True if the block is free.
    pub fn isFree(self: Header) bool {
        return self.word0 & layout.flag_free != 0;
    }

    /// True if the check word matches the other words at `block` under `key`.
    pub fn isValid(self: Header, block: u64, key: u32) bool {
        return self.check == headerCheck(block, self.word0, self.word1, self.slack, key);
    }
};

/// What a free block's header must show before its size is trusted.
pub const BlockError = window_.Error || error{
    /// The header's check word, free flag, slack or size is wrong.
    BadHeader,
};

/// The size of the free block at `block`, after checking in every build mode
/// that its header is intact under `key`, free, slack-free, at least a
/// minimal block, and that the whole block lies in the window.
pub fn freeBlockSize(window: Window, block: u64, key: u32) BlockError!u64 {
    const header = try Header.read(window, block);
    if (!header.isValid(block, key)) return error.BadHeader;
    if (!header.isFree() or header.slack != 0) return error.BadHeader;
    const size_bytes = header.sizeBytes();
    if (size_bytes < layout.min_block_bytes) return error.BadHeader;
    if (!window.contains(block, size_bytes)) return error.BadHeader;
    return size_bytes;
}

test "headerCheck matches values computed by allocator/heap/layout.ts" {
    // headerCheck(0, 0, 0, 0, 0), headerCheck(0x1000, 41, 0, 0, 0) and
    // headerCheck(0x1000, 41, 0, 0, 0xdeadbeef) from the TS side.
    try std.testing.expectEqual(@as(u32, 0x9655db6e), headerCheck(0, 0, 0, 0, 0));
    try std.testing.expectEqual(@as(u32, 0x5829cacc), headerCheck(0x1000, 41, 0, 0, 0));
    try std.testing.expectEqual(@as(u32, 0xe53a5b1c), headerCheck(0x1000, 41, 0, 0, 0xdeadbeef));
    // Only the low 32 bits of the address count.
    try std.testing.expectEqual(headerCheck(0x1000, 1, 2, 3, 9), headerCheck(0x7_0000_1000, 1, 2, 3, 9));
}

test "a different key gives a different check word" {
    try std.testing.expect(headerCheck(0x1000, 41, 0, 0, 1) != headerCheck(0x1000, 41, 0, 0, 2));
}

test "Header splits the size from the flag bits" {
    var buffer align(8) = [_]u8{0} ** 0x48;
    const size_bytes: u64 = 0x48;
    const word0: u32 = @as(u32, @truncate(size_bytes)) | layout.flag_free | layout.flag_last;
    std.mem.writeInt(u32, buffer[0..4], word0, .little);
    std.mem.writeInt(u32, buffer[12..16], headerCheck(0x1000, word0, 0, 0, 7), .little);
    const window = try Window.init(@floatFromInt(@intFromPtr(&buffer)), buffer.len, 0x1000);
    const header = try Header.read(window, 0x1000);
    try std.testing.expectEqual(size_bytes, header.sizeBytes());
    try std.testing.expect(header.isFree());
    try std.testing.expect(header.isValid(0x1000, 7));
    try std.testing.expect(!header.isValid(0x1000, 8));
    try std.testing.expect(!header.isValid(0x1008, 7));
    try std.testing.expectEqual(size_bytes, try freeBlockSize(window, 0x1000, 7));
    try std.testing.expectError(error.BadHeader, freeBlockSize(window, 0x1000, 8));
}

test "freeBlockSize refuses a block that runs past the window" {
    var buffer align(8) = [_]u8{0} ** 0x40;
    const word0: u32 = 0x48 | layout.flag_free;
    std.mem.writeInt(u32, buffer[0..4], word0, .little);
    std.mem.writeInt(u32, buffer[12..16], headerCheck(0x1000, word0, 0, 0, 7), .little);
    const window = try Window.init(@floatFromInt(@intFromPtr(&buffer)), buffer.len, 0x1000);
    try std.testing.expectError(error.BadHeader, freeBlockSize(window, 0x1000, 7));
    try std.testing.expectError(error.OutOfWindow, freeBlockSize(window, 0x1040, 7));
}
