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

/// A control block read through its host pointer. It normally sits inside the
/// window, but when no region can hold it the allocator keeps it in a small
/// buffer of its own; the TS side then passes the "address" that buffer would
/// have in window coordinates, `base_address + (host - window_address)`, which
/// may lie below `base_address` or be negative. Either way
/// host = window_address + (control_address - base_address).
pub const ControlBytes = struct {
    /// Host pointer of the control block's byte 0.
    host_address: u64,

    /// The control block at `control_address` (an integer, |value| < 2^53).
    pub fn init(window: Window, control_address: f64) ControlBytes {
        assert(@abs(control_address) < @as(f64, @floatFromInt(layout.address_limit)));
        assert(@floor(control_address) == control_address);
        const control: i64 = @intFromFloat(control_address);
        const offset = control - @as(i64, @intCast(window.base_address));
        const host = @as(i64, @intCast(window.window_address)) + offset;
        assert(host > 0);
        return .{ .host_address = @intCast(host) };
    }

    /// The little-endian u32 at `offset_bytes` into the control block.
    pub fn readU32(self: ControlBytes, offset_bytes: u64) u32 {
        const pointer: *const [4]u8 = @ptrFromInt(self.host_address + offset_bytes);
        return std.mem.readInt(u32, pointer, .little);
    }

    /// The little-endian u64 at `offset_bytes` into the control block.
    pub fn readU64(self: ControlBytes, offset_bytes: u64) u64 {
        const pointer: *const [8]u8 = @ptrFromInt(self.host_address + offset_bytes);
        return std.mem.readInt(u64, pointer, .little);
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

test "ControlBytes reads a control block inside or outside the window" {
    var window_bytes = [_]u8{0} ** 64;
    var detached = [_]u8{0} ** 16;
    std.mem.writeInt(u32, window_bytes[8..12], 7, .little);
    std.mem.writeInt(u64, detached[8..16], 0x1234, .little);
    const window_address: f64 = @floatFromInt(@intFromPtr(&window_bytes));
    const window = Window.init(window_address, 0x1000);
    try std.testing.expectEqual(@as(u32, 7), ControlBytes.init(window, 0x1000).readU32(8));
    // Window coordinates of the detached buffer: below or above the base, maybe negative.
    const host: f64 = @floatFromInt(@intFromPtr(&detached));
    const outside = ControlBytes.init(window, 0x1000 + (host - window_address));
    try std.testing.expectEqual(@as(u64, 0x1234), outside.readU64(8));
    // A window far above the detached buffer puts it at a negative address.
    const far_address = window_address + 0x100_0000_0000;
    const far = Window.init(far_address, 0x1000);
    const negative_address = 0x1000 + (host - far_address);
    try std.testing.expect(negative_address < 0);
    try std.testing.expectEqual(@as(u64, 0x1234), ControlBytes.init(far, negative_address).readU64(8));
}

test "fromNumber and toNumber round-trip addresses up to 2^53" {
    try std.testing.expectEqual(@as(u64, 1 << 53), fromNumber(toNumber(1 << 53)));
    try std.testing.expectEqual(@as(u64, 0x1234_5678_9abc), fromNumber(0x1234_5678_9abc));
}
