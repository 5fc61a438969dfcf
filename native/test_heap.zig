//! Test helper: lays out free blocks and control blocks by hand in a test
//! buffer, byte for byte as the TS allocator writes them. Used by tests only.

const std = @import("std");
const assert = std.debug.assert;
const layout = @import("layout.zig");
const headerCheck = @import("header.zig").headerCheck;
const Window = @import("window.zig").Window;
const ControlBytes = @import("window.zig").ControlBytes;

/// The key the test heaps use: any value works, a non-zero one proves it is used.
pub const test_key: u32 = 0x5eed_1234;

/// A heap image in `bytes` whose byte 0 stands for `base_address`.
pub const TestHeap = struct {
    bytes: []align(8) u8,
    base_address: u64,
    /// The heap's check-word key.
    key: u32 = test_key,

    /// The window the native functions see, as the two numbers TS passes.
    pub fn windowAddress(self: TestHeap) f64 {
        return @floatFromInt(@intFromPtr(self.bytes.ptr));
    }

    /// The base address as the number TS passes.
    pub fn baseAddress(self: TestHeap) f64 {
        return @floatFromInt(self.base_address);
    }

    /// The window over the heap.
    pub fn window(self: TestHeap) Window {
        return Window.init(self.windowAddress(), @floatFromInt(self.bytes.len), self.baseAddress()) catch unreachable;
    }

    /// The control block at `control` with `fl_count` first levels, as the TS side passes it.
    pub fn control(self: TestHeap, control_address: u64, fl_count: u32) ControlBytes {
        const host = @intFromPtr(self.bytes.ptr) + (control_address - self.base_address);
        return ControlBytes.init(@floatFromInt(host), @floatFromInt(layout.controlBytes(fl_count))) catch unreachable;
    }

    fn slice(self: TestHeap, address: u64, comptime len: usize) *[len]u8 {
        const offset = address - self.base_address;
        assert(offset + len <= self.bytes.len);
        return self.bytes[offset..][0..len];
    }

    /// Writes the u32 at `address`.
    pub fn writeU32(self: TestHeap, address: u64, value: u32) void {
        std.mem.writeInt(u32, self.slice(address, 4), value, .little);
    }

    /// Writes the u64 at `address`.
    pub fn writeU64(self: TestHeap, address: u64, value: u64) void {
        std.mem.writeInt(u64, self.slice(address, 8), value, .little);
    }

    /// Writes a header (with its check word) for a block of `size_bytes`.
    pub fn writeHeader(self: TestHeap, block: u64, size_bytes: u64, flags: u32, slack: u32) void {
        const word0: u32 = @as(u32, @truncate(size_bytes)) | flags;
        const word1: u32 = @truncate(size_bytes >> 32);
        self.writeU32(block + layout.header_size_lo_offset, word0);
        self.writeU32(block + layout.header_size_hi_offset, word1);
        self.writeU32(block + layout.header_slack_offset, slack);
        self.writeU32(block + layout.header_check_offset, headerCheck(block, word0, word1, slack, self.key));
    }

    /// Writes a free block: header, links and footer.
    pub fn writeFreeBlock(self: TestHeap, block: u64, size_bytes: u64, next: u64, prev: u64) void {
        self.writeHeader(block, size_bytes, layout.flag_free, 0);
        self.writeU64(block + layout.free_next_offset, next);
        self.writeU64(block + layout.free_prev_offset, prev);
        self.writeU64(block + size_bytes - layout.footer_bytes, size_bytes);
    }

    /// Writes free blocks at `blocks` with `sizes`, linked in the given order,
    /// and returns the head (0 for none).
    pub fn writeFreeList(self: TestHeap, blocks: []const u64, sizes: []const u64) u64 {
        assert(blocks.len == sizes.len);
        for (blocks, sizes, 0..) |block, size_bytes, i| {
            const next = if (i + 1 < blocks.len) blocks[i + 1] else 0;
            const prev = if (i > 0) blocks[i - 1] else 0;
            self.writeFreeBlock(block, size_bytes, next, prev);
        }
        return if (blocks.len == 0) 0 else blocks[0];
    }

    /// Writes a control block for `policy_id` with `fl_count` first levels,
    /// all lists empty.
    pub fn writeControl(self: TestHeap, control_address: u64, policy_id: u32, fl_count: u32) void {
        const control_bytes = layout.controlBytes(fl_count);
        const offset = control_address - self.base_address;
        @memset(self.bytes[offset..][0..control_bytes], 0);
        self.writeU32(control_address + layout.control_magic_offset, layout.control_magic);
        self.writeU32(control_address + layout.control_policy_offset, policy_id);
        self.writeU32(control_address + layout.control_fl_count_offset, fl_count);
    }
};
