//! The managed memory as native code sees it: a window of host bytes whose
//! byte 0 stands for `base_address`, and the control block's own bytes.
//!
//! The host pointer of address `a` is `window_address + (a - base_address)`.
//! Every number arrives from JavaScript as an f64 (a JavaScript number holds
//! every address below 2^53), so no bigint or pointer object crosses the FFI
//! boundary per call. Reads are unaligned little-endian loads: an
//! ArrayBuffer's host pointer carries no alignment promise this code may rely on.
//!
//! Every argument and every read is checked explicitly, in every build mode
//! (ReleaseFast compiles `assert` out): a number that is not an integer in
//! range is `error.InvalidArgument`, and an address outside the window (a
//! link or size read from a damaged heap) is `error.OutOfWindow`. No read
//! ever leaves the `window_bytes` the caller handed over.

const std = @import("std");
const layout = @import("layout.zig");

/// What a check of an argument or a read can find.
pub const Error = error{
    /// A number that is not an integer in its range: a caller's bug.
    InvalidArgument,
    /// An address outside the window: the heap's links or sizes are damaged.
    OutOfWindow,
};

/// The managed memory's window; cheap to copy, holds no state of its own.
pub const Window = struct {
    /// Host pointer of window byte 0.
    window_address: u64,
    /// Length of the window in bytes: no read leaves it.
    window_bytes: u64,
    /// The address window byte 0 stands for.
    base_address: u64,

    /// A window from the three numbers the TS side passes.
    pub fn init(window_address: f64, window_bytes: f64, base_address: f64) Error!Window {
        const window = Window{
            .window_address = try fromNumber(window_address),
            .window_bytes = try fromNumber(window_bytes),
            .base_address = try fromNumber(base_address),
        };
        if (window.window_address == 0 or window.window_bytes == 0) return error.InvalidArgument;
        if (window.base_address + window.window_bytes > layout.address_limit) return error.InvalidArgument;
        return window;
    }

    /// The host pointer of the `len` bytes at `address`, all inside the window.
    pub fn bytes(self: Window, address: u64, comptime len: usize) Error!*const [len]u8 {
        if (address < self.base_address) return error.OutOfWindow;
        const offset = address - self.base_address;
        if (offset > self.window_bytes or self.window_bytes - offset < len) return error.OutOfWindow;
        return @ptrFromInt(self.window_address + offset);
    }

    /// True when the `len` bytes at `address` lie inside the window.
    pub fn contains(self: Window, address: u64, len: u64) bool {
        if (address < self.base_address) return false;
        const offset = address - self.base_address;
        return offset <= self.window_bytes and self.window_bytes - offset >= len;
    }

    /// A free-list link read from the heap: 0 (none), or a granule-aligned
    /// block whose minimal block lies in the window; anything else is
    /// `error.OutOfWindow`, blamed on the block (or control block) holding the link.
    pub fn checkLink(self: Window, link: u64) Error!u64 {
        if (link == 0) return 0;
        if (link % layout.granule_bytes != 0 or !self.contains(link, layout.min_block_bytes)) {
            return error.OutOfWindow;
        }
        return link;
    }

    /// The little-endian u32 at `address`.
    pub fn readU32(self: Window, address: u64) Error!u32 {
        return std.mem.readInt(u32, try self.bytes(address, 4), .little);
    }

    /// The little-endian u64 at `address`.
    pub fn readU64(self: Window, address: u64) Error!u64 {
        return std.mem.readInt(u64, try self.bytes(address, 8), .little);
    }
};

/// A control block read through its own host pointer and length. It normally
/// sits inside the window, but when no region can hold it the allocator keeps
/// it in a small buffer of its own; the TS side passes its host pointer and
/// its length either way, and no read leaves that length.
pub const ControlBytes = struct {
    /// Host pointer of the control block's byte 0.
    host_address: u64,
    /// Length of the control block in bytes.
    len_bytes: u64,

    /// The control block of `len_bytes` at host pointer `host_address`.
    pub fn init(host_address: f64, len_bytes: f64) Error!ControlBytes {
        const control = ControlBytes{
            .host_address = try fromNumber(host_address),
            .len_bytes = try fromNumber(len_bytes),
        };
        if (control.host_address == 0) return error.InvalidArgument;
        if (control.len_bytes < layout.controlBytes(0)) return error.InvalidArgument;
        return control;
    }

    fn bytes(self: ControlBytes, offset_bytes: u64, comptime len: usize) Error!*const [len]u8 {
        if (offset_bytes > self.len_bytes or self.len_bytes - offset_bytes < len) return error.InvalidArgument;
        return @ptrFromInt(self.host_address + offset_bytes);
    }

    /// The little-endian u32 at `offset_bytes` into the control block.
    pub fn readU32(self: ControlBytes, offset_bytes: u64) Error!u32 {
        return std.mem.readInt(u32, try self.bytes(offset_bytes, 4), .little);
    }

    /// The little-endian u64 at `offset_bytes` into the control block.
    pub fn readU64(self: ControlBytes, offset_bytes: u64) Error!u64 {
        return std.mem.readInt(u64, try self.bytes(offset_bytes, 8), .little);
    }
};

/// An address or size passed as a JavaScript number: an integer in [0, 2^53].
/// NaN, infinities, fractions and negative values are `error.InvalidArgument`,
/// never converted (converting them is undefined behaviour).
pub fn fromNumber(value: f64) Error!u64 {
    if (!(value >= 0)) return error.InvalidArgument; // also catches NaN
    if (value > @as(f64, @floatFromInt(layout.address_limit))) return error.InvalidArgument;
    if (@floor(value) != value) return error.InvalidArgument;
    return @intFromFloat(value);
}

/// An address or size returned as a JavaScript number (exact below 2^53).
pub fn toNumber(value: u64) f64 {
    std.debug.assert(value <= layout.address_limit);
    return @floatFromInt(value);
}

test "Window maps an address to its host byte by one subtraction" {
    var buffer = [_]u8{0} ** 32;
    std.mem.writeInt(u32, buffer[8..12], 0xdeadbeef, .little);
    std.mem.writeInt(u64, buffer[16..24], 0x1_0000_0002, .little);
    const window = try Window.init(toNumber(@intFromPtr(&buffer)), 32, 0x1000);
    try std.testing.expectEqual(@as(u32, 0xdeadbeef), try window.readU32(0x1008));
    try std.testing.expectEqual(@as(u64, 0x1_0000_0002), try window.readU64(0x1010));
}

test "Window refuses every read outside its bytes" {
    var buffer = [_]u8{0} ** 32;
    const window = try Window.init(toNumber(@intFromPtr(&buffer)), 32, 0x1000);
    try std.testing.expectError(error.OutOfWindow, window.readU32(0xff8));
    try std.testing.expectError(error.OutOfWindow, window.readU64(0x1019));
    try std.testing.expectError(error.OutOfWindow, window.readU32(0x1020));
    try std.testing.expectError(error.OutOfWindow, window.readU64(std.math.maxInt(u64) - 2));
    try std.testing.expectEqual(@as(u64, 0), try window.readU64(0x1018));
}

test "Window.checkLink accepts 0 and in-window granules only" {
    var buffer = [_]u8{0} ** 64;
    const window = try Window.init(toNumber(@intFromPtr(&buffer)), 64, 0x1000);
    try std.testing.expectEqual(@as(u64, 0), try window.checkLink(0));
    try std.testing.expectEqual(@as(u64, 0x1018), try window.checkLink(0x1018));
    try std.testing.expectError(error.OutOfWindow, window.checkLink(0x101c));
    try std.testing.expectError(error.OutOfWindow, window.checkLink(0x1020));
    try std.testing.expectError(error.OutOfWindow, window.checkLink(0xff8));
    try std.testing.expectError(error.OutOfWindow, window.checkLink(std.math.maxInt(u64) - 7));
}

test "Window.init refuses negative, fractional and non-finite numbers" {
    var buffer = [_]u8{0} ** 32;
    const host: f64 = @floatFromInt(@intFromPtr(&buffer));
    try std.testing.expectError(error.InvalidArgument, Window.init(host, 32, -16));
    try std.testing.expectError(error.InvalidArgument, Window.init(host, 32, 0.5));
    try std.testing.expectError(error.InvalidArgument, Window.init(host, 32, std.math.nan(f64)));
    try std.testing.expectError(error.InvalidArgument, Window.init(host, std.math.inf(f64), 0));
    try std.testing.expectError(error.InvalidArgument, Window.init(0, 32, 0x1000));
    try std.testing.expectError(error.InvalidArgument, Window.init(host, 0, 0x1000));
    try std.testing.expectError(error.InvalidArgument, Window.init(host, 32, 0x20_0000_0000_0000));
}

test "ControlBytes reads only inside its own length" {
    var detached = [_]u8{0} ** 48;
    std.mem.writeInt(u64, detached[8..16], 0x1234, .little);
    const control = try ControlBytes.init(@floatFromInt(@intFromPtr(&detached)), 48);
    try std.testing.expectEqual(@as(u64, 0x1234), try control.readU64(8));
    try std.testing.expectError(error.InvalidArgument, control.readU64(44));
    try std.testing.expectError(error.InvalidArgument, ControlBytes.init(@floatFromInt(@intFromPtr(&detached)), 8));
}

test "fromNumber and toNumber round-trip addresses up to 2^53" {
    try std.testing.expectEqual(@as(u64, 1 << 53), try fromNumber(toNumber(1 << 53)));
    try std.testing.expectEqual(@as(u64, 0x1234_5678_9abc), try fromNumber(0x1234_5678_9abc));
    try std.testing.expectError(error.InvalidArgument, fromNumber(-0.0 - 1));
}
