//! The managed memory as native code sees it: a window of host bytes whose
//! byte 0 stands for `base_address`.
//!
//! The host pointer of address `a` is `window_address + (a - base_address)`.
//! Both numbers arrive from JavaScript as exact f64 values (a JavaScript
//! number holds every address below 2^53), so no bigint or pointer object
//! crosses the FFI boundary per call. Reads are unaligned little-endian loads:
//! an ArrayBuffer's host pointer carries no alignment promise this code may rely on.

const std = @import("std");
const assert = std.debug.assert;
const layout = @import("layout.zig");

/// The managed memory's window; cheap to copy, holds no state of its own.
pub const Window = struct {
    /// Host pointer of window byte 0.
    window_address: u64,
    /// The address window byte 0 stands for.
    base_address: u64,

    /// A window from the two numbers the TS side passes.
    pub fn init(window_address: f64, base_address: f64) Window {
        const window = Window{
            .window_address = fromNumber(window_address),
            .base_address = fromNumber(base_address),
        };
        assert(window.window_address != 0);
        return window;
    }

    /// The host pointer of the `len` bytes at `address`.
    pub fn bytes(self: Window, address: u64, comptime len: usize) *const [len]u8 {
        assert(address >= self.base_address);
        assert(address + len <= layout.address_limit);
        const host = self.window_address + (address - self.base_address);
        return @ptrFromInt(host);
    }

    /// The little-endian u32 at `address`.
    pub fn readU32(self: Window, address: u64) u32 {
        return std.mem.readInt(u32, self.bytes(address, 4), .little);
    }

    /// The little-endian u64 at `address`.
    pub fn readU64(self: Window, address: u64) u64 {
        return std.mem.readInt(u64, self.bytes(address, 8), .little);
    }
};

/// An address or size passed as a JavaScript number: an integer in [0, 2^53].
pub fn fromNumber(value: f64) u64 {
    assert(value >= 0);
    assert(value <= @as(f64, @floatFromInt(layout.address_limit)));
    assert(@floor(value) == value);
    return @intFromFloat(value);
}

/// An address or size returned as a JavaScript number (exact below 2^53).
pub fn toNumber(value: u64) f64 {
    assert(value <= layout.address_limit);
    return @floatFromInt(value);
}

test "Window maps an address to its host byte by one subtraction" {
    var buffer = [_]u8{0} ** 32;
    std.mem.writeInt(u32, buffer[8..12], 0xdeadbeef, .little);
    std.mem.writeInt(u64, buffer[16..24], 0x1_0000_0002, .little);
    const window = Window.init(toNumber(@intFromPtr(&buffer)), 0x1000);
    try std.testing.expectEqual(@as(u32, 0xdeadbeef), window.readU32(0x1008));
    try std.testing.expectEqual(@as(u64, 0x1_0000_0002), window.readU64(0x1010));
}

test "fromNumber and toNumber round-trip addresses up to 2^53" {
    try std.testing.expectEqual(@as(u64, 1 << 53), fromNumber(toNumber(1 << 53)));
    try std.testing.expectEqual(@as(u64, 0x1234_5678_9abc), fromNumber(0x1234_5678_9abc));
}
