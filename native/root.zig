//! The C ABI of `libpma`: the allocator's hot path over the block format of
//! `allocator/heap/layout.ts`, called from Deno through `native/symbols.ts`.
//!
//! Only fixed-width scalars cross the boundary. Addresses and sizes travel as
//! f64 (exact below 2^53), so a call costs no bigint and no pointer object.
//! Memory is reached through `window_address` (host pointer of window byte 0)
//! and `base_address` (the address that byte stands for); `control_address`
//! is the control block's address in the same coordinates, which may lie
//! outside the window (a detached control block, see `window.ControlBytes`).
//! No function allocates, keeps state, returns an error or panics across the
//! boundary: "not found" is 0, and a broken precondition is an assertion that
//! fires in Debug builds (`zig build test`) and is assumed in ReleaseFast.

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

/// The ABI version `native/loader.ts` checks right after loading; bump it on
/// any change of an export's signature or meaning, or of the layout.
pub const abi_version: u32 = 3;

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

/// `controlHeadsOffset(fl_count)` of the layout.
export fn pma_control_heads_offset(fl_count: u32) f64 {
    return toNumber(layout.controlHeadsOffset(fl_count));
}

/// `controlBytes(fl_count)` of the layout.
export fn pma_control_bytes(fl_count: u32) f64 {
    return toNumber(layout.controlBytes(fl_count));
}

/// `headerCheck(address, word0, word1, slack)` of the layout.
export fn pma_header_check(address: f64, word0: u32, word1: u32, slack: u32) u32 {
    return header.headerCheck(fromNumber(address), word0, word1, slack);
}

/// `value` rounded up to a multiple of `align_bytes` (a power of two).
export fn pma_align_up(value: f64, align_bytes: f64) f64 {
    return toNumber(fit.alignUp(fromNumber(value), fromNumber(align_bytes)));
}

/// The payload address of the block at `block`.
export fn pma_block_ptr(block: f64) f64 {
    return toNumber(fit.blockPtr(fromNumber(block)));
}

/// First-fit: the first of at most `steps_max` free blocks, in list order,
/// that holds a block of `block_size_bytes` with its payload aligned to
/// `align_bytes`; 0 if none does.
export fn pma_first_fit_find(
    window_address: f64,
    base_address: f64,
    control_address: f64,
    block_size_bytes: f64,
    align_bytes: f64,
    steps_max: u32,
) f64 {
    const window = Window.init(window_address, base_address);
    const block = first_fit.find(
        window,
        ControlBytes.init(window, control_address),
        fromNumber(block_size_bytes),
        fromNumber(align_bytes),
        steps_max,
    );
    return toNumber(block);
}

/// First-fit: the listed block the free block `block` goes after (0 for the
/// head), walking from `after` (0 for the head) as the TS `insert` does; -1 if
/// the walk exceeds `steps_max` + 1 steps (a corrupted list).
export fn pma_first_fit_predecessor(
    window_address: f64,
    base_address: f64,
    control_address: f64,
    block: f64,
    after: f64,
    steps_max: u32,
) f64 {
    const window = Window.init(window_address, base_address);
    const found = first_fit.predecessor(
        window,
        ControlBytes.init(window, control_address),
        fromNumber(block),
        fromNumber(after),
        steps_max,
    );
    return if (found) |previous| toNumber(previous) else -1;
}

/// TLSF: a free block that holds a block of `block_size_bytes` with its
/// payload aligned to `align_bytes`; 0 if the search finds none.
export fn pma_tlsf_find(
    window_address: f64,
    base_address: f64,
    control_address: f64,
    block_size_bytes: f64,
    align_bytes: f64,
) f64 {
    const window = Window.init(window_address, base_address);
    const block = tlsf.find(
        window,
        ControlBytes.init(window, control_address),
        fromNumber(block_size_bytes),
        fromNumber(align_bytes),
    );
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
