//! First-fit: one free list in address order, scanned from its head for the
//! first block the request fits in (with its alignment gap, see `fit.zig`).
//!
//! The control block holds the one list head, a u64 at `controlHeadsOffset(0)`.
//! The walk is bounded by `steps_max` (the TS side passes its free block
//! count), so a corrupted, cyclic list ends the walk instead of hanging it.

const std = @import("std");
const assert = std.debug.assert;
const layout = @import("layout.zig");
const fit = @import("fit.zig");
const header = @import("header.zig");
const Window = @import("window.zig").Window;
const ControlBytes = @import("window.zig").ControlBytes;

/// How far ahead of the scanned block the scan asks the CPU to read.
const scan_prefetch_bytes = 4096;

/// The first free block, in list order, that holds a block of
/// `block_size_bytes` with its payload aligned to `align_bytes`; 0 if none of
/// the first `steps_max` blocks does.
pub fn find(
    window: Window,
    control: ControlBytes,
    block_size_bytes: u64,
    align_bytes: u64,
    steps_max: u32,
) u64 {
    fit.assertRequest(block_size_bytes, align_bytes);
    if (std.debug.runtime_safety) {
        assert(control.readU32(layout.control_magic_offset) == layout.control_magic);
        assert(control.readU32(layout.control_policy_offset) == layout.policy_id_first_fit);
    }
    var block = control.readU64(layout.controlHeadsOffset(0));
    var steps: u32 = 0;
    while (block != 0 and steps < steps_max) : (steps += 1) {
        // The list is in address order, so the blocks ahead lie at higher
        // addresses: a read-ahead hint (it never faults) keeps a long scan
        // streaming from DRAM (bench/native_bench.ts's 10^6-block case shows it).
        @prefetch(@as([*]const u8, window.bytes(block, 1)) + scan_prefetch_bytes, .{ .locality = 0 });
        const size_bytes = header.freeBlockSize(window, block);
        if (fit.fits(block, size_bytes, block_size_bytes, align_bytes)) return block;
        const next = window.readU64(block + layout.free_next_offset);
        // Address order: a link never points backwards.
        assert(next == 0 or next >= block + size_bytes);
        block = next;
    }
    return 0;
}

/// Where the free block `block` goes in the address-ordered list: the listed
/// block it follows, or 0 for the head. The walk starts at `after` (a listed
/// block known to precede `block`, or 0 for the head) and mirrors the TS
/// policy's `insert`; null if it takes more than `steps_max` + 1 steps (a
/// corrupted list: the TS side reports it).
pub fn predecessor(window: Window, control: ControlBytes, block: u64, after: u64, steps_max: u32) ?u64 {
    assert(block != 0);
    assert(after < block);
    const head = control.readU64(layout.controlHeadsOffset(0));
    if (head == 0 or block < head) return 0;
    var current = if (after != 0) after else head;
    var next = window.readU64(current + layout.free_next_offset);
    var steps: u64 = 0;
    while (next != 0 and next < block) : (steps += 1) {
        if (steps > steps_max) return null;
        assert(next > current);
        current = next;
        next = window.readU64(current + layout.free_next_offset);
    }
    assert(current < block);
    return current;
}

const TestHeap = @import("test_heap.zig").TestHeap;

fn testControl(window: Window) ControlBytes {
    return ControlBytes.init(window, 0x1000);
}

fn testHeap(bytes: []align(8) u8) TestHeap {
    const heap = TestHeap{ .bytes = bytes, .base_address = 0x1000 };
    heap.writeControl(0x1000, layout.policy_id_first_fit, 0);
    return heap;
}

test "find returns the first block in list order that fits" {
    var bytes align(8) = [_]u8{0} ** 1024;
    const heap = testHeap(&bytes);
    const head = heap.writeFreeList(&.{ 0x1040, 0x1100, 0x1200 }, &.{ 48, 128, 256 });
    heap.writeU64(0x1000 + layout.controlHeadsOffset(0), head);
    const window = heap.window();
    try std.testing.expectEqual(@as(u64, 0x1040), find(window, testControl(window), 48, 8, 100));
    try std.testing.expectEqual(@as(u64, 0x1100), find(window, testControl(window), 56, 8, 100));
    try std.testing.expectEqual(@as(u64, 0x1200), find(window, testControl(window), 136, 8, 100));
    try std.testing.expectEqual(@as(u64, 0), find(window, testControl(window), 264, 8, 100));
}

test "find skips a block whose alignment gap leaves too little room" {
    var bytes align(8) = [_]u8{0} ** 1024;
    const heap = testHeap(&bytes);
    // 0x1108: payload 0x1118 -> 64-aligned 0x1140 is a 0x28 gap, fits 0x28 + 48 <= 96.
    // 0x1040: payload 0x1050 -> 0x1080, gap 0x30, 0x30 + 48 > 64.
    const head = heap.writeFreeList(&.{ 0x1040, 0x1108 }, &.{ 64, 96 });
    heap.writeU64(0x1000 + layout.controlHeadsOffset(0), head);
    try std.testing.expectEqual(@as(u64, 0x1108), find(heap.window(), testControl(heap.window()), 48, 64, 100));
}

test "find stops after steps_max blocks" {
    var bytes align(8) = [_]u8{0} ** 1024;
    const heap = testHeap(&bytes);
    const head = heap.writeFreeList(&.{ 0x1040, 0x1100, 0x1200 }, &.{ 48, 128, 256 });
    heap.writeU64(0x1000 + layout.controlHeadsOffset(0), head);
    try std.testing.expectEqual(@as(u64, 0), find(heap.window(), testControl(heap.window()), 136, 8, 2));
    try std.testing.expectEqual(@as(u64, 0x1200), find(heap.window(), testControl(heap.window()), 136, 8, 3));
}

test "find on an empty list returns 0" {
    var bytes align(8) = [_]u8{0} ** 256;
    const heap = testHeap(&bytes);
    try std.testing.expectEqual(@as(u64, 0), find(heap.window(), testControl(heap.window()), 48, 8, 100));
}

test "predecessor finds the listed block a free block follows" {
    var bytes align(8) = [_]u8{0} ** 1024;
    const heap = testHeap(&bytes);
    const head = heap.writeFreeList(&.{ 0x1040, 0x1100, 0x1200 }, &.{ 48, 128, 256 });
    heap.writeU64(0x1000 + layout.controlHeadsOffset(0), head);
    const window = heap.window();
    try std.testing.expectEqual(@as(?u64, 0), predecessor(window, testControl(window), 0x1020, 0, 10));
    try std.testing.expectEqual(@as(?u64, 0x1040), predecessor(window, testControl(window), 0x10c0, 0, 10));
    try std.testing.expectEqual(@as(?u64, 0x1100), predecessor(window, testControl(window), 0x11a0, 0, 10));
    try std.testing.expectEqual(@as(?u64, 0x1200), predecessor(window, testControl(window), 0x1320, 0x1100, 10));
}

test "predecessor gives up on a walk longer than steps_max" {
    var bytes align(8) = [_]u8{0} ** 1024;
    const heap = testHeap(&bytes);
    const head = heap.writeFreeList(&.{ 0x1040, 0x1100, 0x1200 }, &.{ 48, 128, 256 });
    heap.writeU64(0x1000 + layout.controlHeadsOffset(0), head);
    try std.testing.expectEqual(@as(?u64, null), predecessor(heap.window(), testControl(heap.window()), 0x1320, 0, 0));
    try std.testing.expectEqual(@as(?u64, 0x1200), predecessor(heap.window(), testControl(heap.window()), 0x1320, 0, 1));
}
