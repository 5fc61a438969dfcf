//! First-fit: one free list in address order, scanned from its head for the
//! first block the request fits in (with its alignment gap, see `fit.zig`).
//!
//! The control block holds the one list head, a u64 at `controlHeadsOffset(0)`.
//! The walk is bounded by `steps_max` (the TS side passes its free block
//! count), so a corrupted, cyclic list ends the walk instead of hanging it.

const std = @import("std");
const layout = @import("layout.zig");
const fit = @import("fit.zig");
const header = @import("header.zig");
const window_ = @import("window.zig");
const Window = window_.Window;
const ControlBytes = window_.ControlBytes;

/// How far ahead of the scanned block the scan asks the CPU to read.
const scan_prefetch_bytes = 4096;

/// What a walk can find besides a block: a bad argument, a read outside
/// the window, a damaged header, or a link that breaks address order. The
/// block at fault is left in `fault` for the error message.
pub const WalkError = header.BlockError || fit.RequestError || error{BadLink};

/// The block a failed walk stopped at, for the caller's error message.
pub const Fault = struct { block: u64 = 0 };

/// The first free block, in list order, that holds a block of
/// `block_size_bytes` with its payload aligned to `align_bytes`; 0 if none of
/// the first `steps_max` blocks does.
pub fn find(
    window: Window,
    control: ControlBytes,
    key: u32,
    block_size_bytes: u64,
    align_bytes: u64,
    steps_max: u32,
    fault: *Fault,
) WalkError!u64 {
    try fit.checkRequest(block_size_bytes, align_bytes);
    try checkControl(control);
    // `fault` names the block whose header or link is at fault; 0 is the control block.
    fault.block = 0;
    var block = try window.checkLink(try control.readU64(layout.controlHeadsOffset(0)));
    var steps: u32 = 0;
    while (block != 0 and steps < steps_max) : (steps += 1) {
        fault.block = block;
        const size_bytes = try header.freeBlockSize(window, block, key);
        // The list is in address order, so the blocks ahead lie at higher
        // addresses: a read-ahead hint (it never faults) keeps a long scan
        // streaming from DRAM (bench/native_bench.ts's 10^6-block case shows it).
        @prefetch(@as([*]const u8, try window.bytes(block, 1)) + scan_prefetch_bytes, .{ .locality = 0 });
        if (fit.fits(block, size_bytes, block_size_bytes, align_bytes)) return block;
        const next = try window.checkLink(try window.readU64(block + layout.free_next_offset));
        // Address order: a link never points backwards.
        if (next != 0 and next < block + size_bytes) return error.BadLink;
        block = next;
    }
    return 0;
}

/// Where the free block `block` goes in the address-ordered list: the listed
/// block it follows, or 0 for the head. The walk starts at `after` (a listed
/// block known to precede `block`, or 0 for the head) and mirrors the TS
/// policy's `insert`; null if it takes more than `steps_max` + 1 steps (a
/// corrupted list: the TS side reports it).
pub fn predecessor(
    window: Window,
    control: ControlBytes,
    block: u64,
    after: u64,
    steps_max: u32,
    fault: *Fault,
) WalkError!?u64 {
    if (block == 0 or after >= block) return error.InvalidArgument;
    if (after != 0 and (window.checkLink(after) catch 0) != after) return error.InvalidArgument;
    try checkControl(control);
    fault.block = 0;
    const head = try window.checkLink(try control.readU64(layout.controlHeadsOffset(0)));
    if (head == 0 or block < head) return 0;
    var current = if (after != 0) after else head;
    fault.block = current;
    var next = try window.checkLink(try window.readU64(current + layout.free_next_offset));
    var steps: u64 = 0;
    while (next != 0 and next < block) : (steps += 1) {
        if (steps > steps_max) return null;
        if (next <= current) return error.BadLink;
        current = next;
        fault.block = current;
        next = try window.checkLink(try window.readU64(current + layout.free_next_offset));
    }
    if (current >= block) return error.BadLink;
    return current;
}

/// Checks the control block is a first-fit one, in every build mode.
fn checkControl(control: ControlBytes) window_.Error!void {
    if (try control.readU32(layout.control_magic_offset) != layout.control_magic) return error.InvalidArgument;
    if (try control.readU32(layout.control_policy_offset) != layout.policy_id_first_fit) return error.InvalidArgument;
}

const TestHeap = @import("test_heap.zig").TestHeap;

fn testFind(heap: TestHeap, block_size_bytes: u64, align_bytes: u64, steps_max: u32) !u64 {
    var fault = Fault{};
    return find(heap.window(), heap.control(0x1000, 0), heap.key, block_size_bytes, align_bytes, steps_max, &fault);
}

fn testPredecessor(heap: TestHeap, block: u64, after: u64, steps_max: u32) !?u64 {
    var fault = Fault{};
    return predecessor(heap.window(), heap.control(0x1000, 0), block, after, steps_max, &fault);
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
    try std.testing.expectEqual(@as(u64, 0x1040), try testFind(heap, 48, 8, 100));
    try std.testing.expectEqual(@as(u64, 0x1100), try testFind(heap, 56, 8, 100));
    try std.testing.expectEqual(@as(u64, 0x1200), try testFind(heap, 136, 8, 100));
    try std.testing.expectEqual(@as(u64, 0), try testFind(heap, 264, 8, 100));
}

test "find skips a block whose alignment gap leaves too little room" {
    var bytes align(8) = [_]u8{0} ** 1024;
    const heap = testHeap(&bytes);
    // 0x1108: payload 0x1118 -> 64-aligned 0x1140 is a 0x28 gap, fits 0x28 + 48 <= 96.
    // 0x1040: payload 0x1050 -> 0x1080, gap 0x30, 0x30 + 48 > 64.
    const head = heap.writeFreeList(&.{ 0x1040, 0x1108 }, &.{ 64, 96 });
    heap.writeU64(0x1000 + layout.controlHeadsOffset(0), head);
    try std.testing.expectEqual(@as(u64, 0x1108), try testFind(heap, 48, 64, 100));
}

test "find stops after steps_max blocks" {
    var bytes align(8) = [_]u8{0} ** 1024;
    const heap = testHeap(&bytes);
    const head = heap.writeFreeList(&.{ 0x1040, 0x1100, 0x1200 }, &.{ 48, 128, 256 });
    heap.writeU64(0x1000 + layout.controlHeadsOffset(0), head);
    try std.testing.expectEqual(@as(u64, 0), try testFind(heap, 136, 8, 2));
    try std.testing.expectEqual(@as(u64, 0x1200), try testFind(heap, 136, 8, 3));
}

test "find on an empty list returns 0" {
    var bytes align(8) = [_]u8{0} ** 256;
    const heap = testHeap(&bytes);
    try std.testing.expectEqual(@as(u64, 0), try testFind(heap, 48, 8, 100));
}

test "predecessor finds the listed block a free block follows" {
    var bytes align(8) = [_]u8{0} ** 1024;
    const heap = testHeap(&bytes);
    const head = heap.writeFreeList(&.{ 0x1040, 0x1100, 0x1200 }, &.{ 48, 128, 256 });
    heap.writeU64(0x1000 + layout.controlHeadsOffset(0), head);
    try std.testing.expectEqual(@as(?u64, 0), try testPredecessor(heap, 0x1020, 0, 10));
    try std.testing.expectEqual(@as(?u64, 0x1040), try testPredecessor(heap, 0x10c0, 0, 10));
    try std.testing.expectEqual(@as(?u64, 0x1100), try testPredecessor(heap, 0x11a0, 0, 10));
    try std.testing.expectEqual(@as(?u64, 0x1200), try testPredecessor(heap, 0x1320, 0x1100, 10));
}

test "predecessor gives up on a walk longer than steps_max" {
    var bytes align(8) = [_]u8{0} ** 1024;
    const heap = testHeap(&bytes);
    const head = heap.writeFreeList(&.{ 0x1040, 0x1100, 0x1200 }, &.{ 48, 128, 256 });
    heap.writeU64(0x1000 + layout.controlHeadsOffset(0), head);
    try std.testing.expectEqual(@as(?u64, null), try testPredecessor(heap, 0x1320, 0, 0));
    try std.testing.expectEqual(@as(?u64, 0x1200), try testPredecessor(heap, 0x1320, 0, 1));
}

test "find reports a link out of the window, a forged header and a backward link" {
    var bytes align(8) = [_]u8{0} ** 1024;
    const heap = testHeap(&bytes);
    const head = heap.writeFreeList(&.{ 0x1040, 0x1100 }, &.{ 48, 128 });
    heap.writeU64(0x1000 + layout.controlHeadsOffset(0), head);
    var fault = Fault{};
    const window = heap.window();
    const control = heap.control(0x1000, 0);
    heap.writeU64(0x1040 + layout.free_next_offset, 0x7fff_0000);
    try std.testing.expectError(error.OutOfWindow, find(window, control, heap.key, 56, 8, 10, &fault));
    try std.testing.expectEqual(@as(u64, 0x1040), fault.block);
    heap.writeU64(0x1040 + layout.free_next_offset, std.math.maxInt(u64));
    try std.testing.expectError(error.OutOfWindow, find(window, control, heap.key, 56, 8, 10, &fault));
    try std.testing.expectEqual(@as(u64, 0x1040), fault.block);
    heap.writeU64(0x1040 + layout.free_next_offset, 0x1040);
    try std.testing.expectError(error.BadLink, find(window, control, heap.key, 56, 8, 10, &fault));
    heap.writeU64(0x1040 + layout.free_next_offset, 0x1100);
    try std.testing.expectError(error.BadHeader, find(window, control, heap.key +% 1, 56, 8, 10, &fault));
    try std.testing.expectEqual(@as(u64, 0x1040), fault.block);
    try std.testing.expectEqual(@as(u64, 0x1100), try find(window, control, heap.key, 56, 8, 10, &fault));
}

test "find refuses a control block of another policy and a bad request" {
    var bytes align(8) = [_]u8{0} ** 1024;
    const heap = testHeap(&bytes);
    heap.writeU32(0x1000 + layout.control_policy_offset, layout.policy_id_tlsf);
    try std.testing.expectError(error.InvalidArgument, testFind(heap, 48, 8, 10));
    heap.writeU32(0x1000 + layout.control_policy_offset, layout.policy_id_first_fit);
    try std.testing.expectError(error.InvalidArgument, testFind(heap, 44, 8, 10));
    try std.testing.expectError(error.InvalidArgument, testFind(heap, 48, 12, 10));
}
