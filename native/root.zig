//! The C ABI of `libpma`: the allocator's hot path over the block format of
//! `allocator/heap/layout.ts`, called from Deno through `native/symbols.ts`.
//!
//! Only fixed-width scalars cross the boundary. Addresses and sizes travel as
//! f64 (exact below 2^53), so a call costs no bigint and no pointer object.
//! Memory is reached through `window_address` (host pointer of window byte 0),
//! `window_bytes` (its length: no read leaves it) and `base_address` (the
//! address window byte 0 stands for); the control block through its own host
//! pointer and length. `key` is the heap's check-word secret.
//!
//! No function allocates, keeps state or panics across the boundary, and no
//! safety property rests on an `assert` (ReleaseFast compiles them out): every
//! argument and every address read from the heap is checked explicitly, and a
//! failed check is a negative result the TS side turns into a typed error:
//!
//! ```text
//! >= 0   a block address (0: none found)
//! -1     result_walk_too_long: a first-fit walk ran past steps_max (a cycle)
//! -2     result_invalid_argument: a number out of range, a foreign control block
//! <= -8  result_corrupt_base - B: the heap is damaged at block B (0: the control block)
//! ```

const std = @import("std");
const layout = @import("layout.zig");
const header = @import("header.zig");
const fit = @import("fit.zig");
const first_fit = @import("first_fit.zig");
const tlsf = @import("tlsf.zig");
const window_ = @import("window.zig");
const Window = window_.Window;
const ControlBytes = window_.ControlBytes;
const fromNumber = window_.fromNumber;
const toNumber = window_.toNumber;
const Fault = first_fit.Fault;

/// Result: a first-fit walk took more than steps_max + 1 steps.
pub const result_walk_too_long: f64 = -1;
/// Result: an argument is not an integer in range, or the control block is not the policy's.
pub const result_invalid_argument: f64 = -2;
/// Result base: `result_corrupt_base - B` means the heap is damaged at block B.
pub const result_corrupt_base: f64 = -8;

/// The result of a search that failed with `err` at `fault`.
fn failure(err: tlsf.FindError, fault: Fault) f64 {
    return switch (err) {
        error.InvalidArgument => result_invalid_argument,
        error.BadControl => result_corrupt_base,
        error.OutOfWindow, error.BadHeader, error.BadLink => result_corrupt_base - toNumber(fault.block),
    };
}

/// The window and control block of a search, both checked.
const Memory = struct {
    window: Window,
    control: ControlBytes,

    fn init(window_address: f64, window_bytes: f64, base_address: f64, control_host: f64, control_bytes: f64) window_.Error!Memory {
        return .{
            .window = try Window.init(window_address, window_bytes, base_address),
            .control = try ControlBytes.init(control_host, control_bytes),
        };
    }
};

/// The ABI version `native/loader.ts` checks right after loading; bump it on
/// any change of an export's signature or meaning, or of the layout.
pub const abi_version: u32 = 4;

/// The ABI version of this library.
export fn pma_abi_version() u32 {
    return abi_version;
}

/// The layout constant with id `id` (see `layout.LayoutValueId`), or NaN for
/// an id past the last, so the TS side can count the ids.
export fn pma_layout_value(id: u32) f64 {
    if (id >= layout.layout_value_count) return std.math.nan(f64);
    return layout.layoutValue(@enumFromInt(id));
}

/// `controlHeadsOffset(fl_count)` of the layout; -2 past fl_count_max.
export fn pma_control_heads_offset(fl_count: u32) f64 {
    if (fl_count > layout.fl_count_max) return result_invalid_argument;
    return toNumber(layout.controlHeadsOffset(fl_count));
}

/// `controlBytes(fl_count)` of the layout; -2 past fl_count_max.
export fn pma_control_bytes(fl_count: u32) f64 {
    if (fl_count > layout.fl_count_max) return result_invalid_argument;
    return toNumber(layout.controlBytes(fl_count));
}

/// `headerCheck(address, word0, word1, slack, key)` of the layout; an
/// address that is not an integer in [0, 2^53] checks as its low 32 bits of 0.
export fn pma_header_check(address: f64, word0: u32, word1: u32, slack: u32, key: u32) u32 {
    return header.headerCheck(fromNumber(address) catch 0, word0, word1, slack, key);
}

/// `value` rounded up to a multiple of `align_bytes` (a power of two up to
/// align_bytes_max); -2 for any other argument.
export fn pma_align_up(value: f64, align_bytes: f64) f64 {
    const v = fromNumber(value) catch return result_invalid_argument;
    const a = fromNumber(align_bytes) catch return result_invalid_argument;
    if (!std.math.isPowerOfTwo(a) or a > layout.align_bytes_max) return result_invalid_argument;
    const aligned = fit.alignUp(v, a);
    if (aligned > layout.address_limit) return result_invalid_argument;
    return toNumber(aligned);
}

/// The payload address of the block at `block`; -2 for an address that is
/// not granule-aligned or whose payload would pass 2^53.
export fn pma_block_ptr(block: f64) f64 {
    const b = fromNumber(block) catch return result_invalid_argument;
    if (b % layout.granule_bytes != 0 or b + layout.header_bytes > layout.address_limit) {
        return result_invalid_argument;
    }
    return toNumber(fit.blockPtr(b));
}

/// First-fit: the first of at most `steps_max` free blocks, in list order,
/// that holds a block of `block_size_bytes` with its payload aligned to
/// `align_bytes`; 0 if none does, negative on a failed check (see above).
export fn pma_first_fit_find(
    window_address: f64,
    window_bytes: f64,
    base_address: f64,
    control_host: f64,
    control_bytes: f64,
    key: u32,
    block_size_bytes: f64,
    align_bytes: f64,
    steps_max: u32,
) f64 {
    var fault = Fault{};
    const memory = Memory.init(window_address, window_bytes, base_address, control_host, control_bytes) catch
        return result_invalid_argument;
    const size = fromNumber(block_size_bytes) catch return result_invalid_argument;
    const alignment = fromNumber(align_bytes) catch return result_invalid_argument;
    const block = first_fit.find(memory.window, memory.control, key, size, alignment, steps_max, &fault) catch |err|
        return failure(err, fault);
    return toNumber(block);
}

/// First-fit: the listed block the free block `block` goes after (0 for the
/// head), walking from `after` (0 for the head) as the TS `insert` does; -1 if
/// the walk exceeds `steps_max` + 1 steps (a corrupted list), other negative
/// values on a failed check (see above).
export fn pma_first_fit_predecessor(
    window_address: f64,
    window_bytes: f64,
    base_address: f64,
    control_host: f64,
    control_bytes: f64,
    block: f64,
    after: f64,
    steps_max: u32,
) f64 {
    var fault = Fault{};
    const memory = Memory.init(window_address, window_bytes, base_address, control_host, control_bytes) catch
        return result_invalid_argument;
    const b = fromNumber(block) catch return result_invalid_argument;
    const a = fromNumber(after) catch return result_invalid_argument;
    const found = first_fit.predecessor(memory.window, memory.control, b, a, steps_max, &fault) catch |err|
        return failure(err, fault);
    return if (found) |previous| toNumber(previous) else result_walk_too_long;
}

/// TLSF: a free block that holds a block of `block_size_bytes` with its
/// payload aligned to `align_bytes`; 0 if the search finds none, negative on
/// a failed check (see above).
export fn pma_tlsf_find(
    window_address: f64,
    window_bytes: f64,
    base_address: f64,
    control_host: f64,
    control_bytes: f64,
    key: u32,
    block_size_bytes: f64,
    align_bytes: f64,
) f64 {
    var fault = Fault{};
    const memory = Memory.init(window_address, window_bytes, base_address, control_host, control_bytes) catch
        return result_invalid_argument;
    const size = fromNumber(block_size_bytes) catch return result_invalid_argument;
    const alignment = fromNumber(align_bytes) catch return result_invalid_argument;
    const block = tlsf.find(memory.window, memory.control, key, size, alignment, &fault) catch |err|
        return failure(err, fault);
    return toNumber(block);
}

test {
    std.testing.refAllDecls(@This());
    _ = layout;
    _ = header;
    _ = fit;
    _ = first_fit;
    _ = tlsf;
    _ = window_;
}

test "pma_layout_value is NaN past the last id" {
    try std.testing.expect(std.math.isNan(pma_layout_value(layout.layout_value_count)));
    try std.testing.expectEqual(@as(f64, 8), pma_layout_value(0));
}

test "pma_align_up and pma_block_ptr work on numbers" {
    try std.testing.expectEqual(@as(f64, 0x2000), pma_align_up(0x1001, 0x1000));
    try std.testing.expectEqual(@as(f64, 0x1010), pma_block_ptr(0x1000));
}

test "every export refuses numbers out of range instead of converting them" {
    try std.testing.expectEqual(result_invalid_argument, pma_align_up(-8, 8));
    try std.testing.expectEqual(result_invalid_argument, pma_align_up(8, 12));
    try std.testing.expectEqual(result_invalid_argument, pma_align_up(std.math.nan(f64), 8));
    try std.testing.expectEqual(result_invalid_argument, pma_block_ptr(-16));
    try std.testing.expectEqual(result_invalid_argument, pma_block_ptr(0x1004));
    try std.testing.expectEqual(result_invalid_argument, pma_control_bytes(layout.fl_count_max + 1));
    var bytes align(8) = [_]u8{0} ** 256;
    const host: f64 = @floatFromInt(@intFromPtr(&bytes));
    // A negative base address (a window below 0) and a control block too short.
    try std.testing.expectEqual(result_invalid_argument, pma_tlsf_find(host, 256, -16, host, 256, 0, 48, 8));
    try std.testing.expectEqual(result_invalid_argument, pma_first_fit_find(host, 256, 0x1000, host, 8, 0, 48, 8, 4));
    try std.testing.expectEqual(result_invalid_argument, pma_first_fit_predecessor(host, -1, 0x1000, host, 64, 0x1040, 0, 4));
    // Zeroed bytes are no first-fit control block.
    try std.testing.expectEqual(result_invalid_argument, pma_first_fit_find(host, 256, 0x1000, host, 64, 0, 48, 8, 4));
}

test "a head outside the window is corruption of the control block, a bad link of its block" {
    var bytes align(8) = [_]u8{0} ** 256;
    const heap = @import("test_heap.zig").TestHeap{ .bytes = &bytes, .base_address = 0x1000 };
    heap.writeControl(0x1000, layout.policy_id_first_fit, 0);
    heap.writeU64(0x1000 + layout.controlHeadsOffset(0), 0x2000);
    const host: f64 = @floatFromInt(@intFromPtr(&bytes));
    try std.testing.expectEqual(result_corrupt_base, pma_first_fit_find(host, 256, 0x1000, host, 32, heap.key, 48, 8, 4));
    heap.writeFreeBlock(0x1040, 48, std.math.maxInt(u64), 0);
    heap.writeU64(0x1000 + layout.controlHeadsOffset(0), 0x1040);
    try std.testing.expectEqual(result_corrupt_base - 0x1040, pma_first_fit_find(host, 256, 0x1000, host, 32, heap.key, 56, 8, 4));
}
