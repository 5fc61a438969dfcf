//! TLSF (two-level segregated fit): free blocks sit in size classes indexed
//! by a first level (the power of two of the size) and a second level (one of
//! `sl_count` linear steps within it); two bitmap levels find a non-empty
//! class in O(1).
//!
//! ```text
//! size s < small_block_bytes:  fl = 0,            sl = s >> granule_log2
//! otherwise, f = floorLog2(s): fl = f - (sl_log2 + granule_log2 - 1),
//!                              sl = (s >> (f - sl_log2)) - sl_count
//! ```
//!
//! `find` first walks the request's own class (at most `exact_steps_max`
//! blocks) for a block that fits: those are the tightest fits. Then it takes
//! the head of the first non-empty class above a "good fit" (the search size
//! rounded up to the next class boundary), where any block fits.
//!
//! Twins: `allocator/heap/policy/tlsf.ts` (TlsfPolicy.find, the TS general
//! path) and `allocator/heap/policy/tlsf_fast_path.ts` (its written-out copy)
//! make the same search; the differential tests prove the three agree.

const std = @import("std");
const assert = std.debug.assert;
const layout = @import("layout.zig");
const fit = @import("fit.zig");
const header = @import("header.zig");
const window_ = @import("window.zig");
const Window = window_.Window;
const ControlBytes = window_.ControlBytes;
const first_fit = @import("first_fit.zig");
const Fault = first_fit.Fault;

/// What a search can find besides a block; a damaged bitmap is `BadControl`.
pub const FindError = first_fit.WalkError || error{BadControl};

/// The most blocks of the request's own class `find` inspects before the
/// good-fit search (EXACT_SCAN_MAX on the TS side).
pub const exact_steps_max: u32 = 8;

/// A size class.
pub const Class = struct {
    fl: u32,
    sl: u32,
};

/// The class of a block of `size_bytes` (a multiple of granule_bytes).
pub fn mapping(size_bytes: u64) Class {
    assert(size_bytes % layout.granule_bytes == 0);
    return classOf(size_bytes);
}

/// The class to search for a block of at least `size_bytes`: the size rounded
/// up to the next class boundary, so every block of the class fits.
pub fn mappingSearch(size_bytes: u64) Class {
    assert(size_bytes % layout.granule_bytes == 0);
    var rounded = size_bytes;
    if (size_bytes >= layout.small_block_bytes) {
        const f: u6 = std.math.log2_int(u64, size_bytes);
        rounded += (@as(u64, 1) << (f - layout.sl_log2)) - 1;
    }
    return classOf(rounded);
}

/// The class of any size below 2^53; the bits under a large class's step are ignored.
fn classOf(size_bytes: u64) Class {
    assert(size_bytes < layout.address_limit);
    if (size_bytes < layout.small_block_bytes) {
        return .{ .fl = 0, .sl = @intCast(size_bytes >> layout.granule_log2) };
    }
    const f: u6 = std.math.log2_int(u64, size_bytes);
    const class = Class{
        .fl = @as(u32, f) - (layout.sl_log2 + layout.granule_log2 - 1),
        .sl = @intCast((size_bytes >> (f - layout.sl_log2)) - layout.sl_count),
    };
    assert(class.fl >= 1);
    assert(class.fl < layout.fl_count_max);
    assert(class.sl < layout.sl_count);
    return class;
}

/// The size a good-fit class must guarantee for a block of `block_size_bytes`
/// whose payload is aligned to `align_bytes`: room for the worst alignment gap.
pub fn searchSizeBytes(block_size_bytes: u64, align_bytes: u64) u64 {
    assert(block_size_bytes <= fit.block_size_bytes_max);
    assert(align_bytes <= layout.align_bytes_max);
    if (align_bytes <= layout.granule_bytes) return block_size_bytes;
    return block_size_bytes + align_bytes + layout.min_block_bytes - layout.granule_bytes;
}

/// A view of a TLSF control block; every word it reads is checked before use.
const Control = struct {
    bytes: ControlBytes,
    fl_count: u32,

    fn init(bytes: ControlBytes) FindError!Control {
        if (try bytes.readU32(layout.control_magic_offset) != layout.control_magic) return error.InvalidArgument;
        if (try bytes.readU32(layout.control_policy_offset) != layout.policy_id_tlsf) return error.InvalidArgument;
        const fl_count = try bytes.readU32(layout.control_fl_count_offset);
        if (fl_count < 1 or fl_count > layout.fl_count_max) return error.BadControl;
        // The heads are read from here on: the bytes handed over must hold them all.
        if (bytes.len_bytes < layout.controlBytes(fl_count)) return error.InvalidArgument;
        return .{ .bytes = bytes, .fl_count = fl_count };
    }

    fn flBitmap(self: Control) FindError!u64 {
        const bitmap = try self.bytes.readU64(layout.control_fl_bitmap_offset);
        if (bitmap >> @intCast(self.fl_count) != 0) return error.BadControl;
        return bitmap;
    }

    fn slBitmap(self: Control, fl: u32) FindError!u32 {
        assert(fl < self.fl_count);
        return self.bytes.readU32(layout.control_sl_bitmaps_offset + 4 * @as(u64, fl));
    }

    fn head(self: Control, class: Class) FindError!u64 {
        assert(class.fl < self.fl_count);
        assert(class.sl < layout.sl_count);
        const index = @as(u64, class.fl) * layout.sl_count + class.sl;
        return self.bytes.readU64(layout.controlHeadsOffset(self.fl_count) + 8 * index);
    }

    /// The first non-empty class at or above `class`, if any.
    fn findSuitableClass(self: Control, class: Class) FindError!?Class {
        if (class.fl >= self.fl_count) return null;
        const sl_map = try self.slBitmap(class.fl) & (~@as(u32, 0) << @intCast(class.sl));
        if (sl_map != 0) return .{ .fl = class.fl, .sl = @ctz(sl_map) };
        const fl_map = try self.flBitmap() & (~@as(u64, 0) << @intCast(class.fl + 1));
        if (fl_map == 0) return null;
        const fl: u32 = @ctz(fl_map);
        const sl_bitmap = try self.slBitmap(fl);
        if (sl_bitmap == 0) return error.BadControl;
        return .{ .fl = fl, .sl = @ctz(sl_bitmap) };
    }
};

/// A free block that holds a block of `block_size_bytes` with its payload
/// aligned to `align_bytes`, or 0 if the TLSF search finds none. Every block
/// it reads must have an intact free header under `key`.
pub fn find(
    window: Window,
    control_bytes: ControlBytes,
    key: u32,
    block_size_bytes: u64,
    align_bytes: u64,
    fault: *Fault,
) FindError!u64 {
    try fit.checkRequest(block_size_bytes, align_bytes);
    const control = try Control.init(control_bytes);
    const search_bytes = searchSizeBytes(block_size_bytes, align_bytes);
    // The request's own class first: its fitting blocks are the tightest.
    const class = mapping(search_bytes);
    // `fault` names the block whose header or link is at fault; 0 is the control block.
    fault.block = 0;
    if (class.fl < control.fl_count) {
        var block = try window.checkLink(try control.head(class));
        var steps: u32 = 0;
        while (block != 0 and steps < exact_steps_max) : (steps += 1) {
            fault.block = block;
            const size_bytes = try header.freeBlockSize(window, block, key);
            if (fit.fits(block, size_bytes, block_size_bytes, align_bytes)) return block;
            block = try window.checkLink(try window.readU64(block + layout.free_next_offset));
        }
    }
    fault.block = 0;
    if (try control.findSuitableClass(mappingSearch(search_bytes))) |suitable| {
        const block = try window.checkLink(try control.head(suitable));
        if (block == 0) return error.BadControl;
        fault.block = block;
        const size_bytes = try header.freeBlockSize(window, block, key);
        // The class promises the fit: a smaller block means a damaged header or list.
        if (!fit.fits(block, size_bytes, block_size_bytes, align_bytes)) return error.BadHeader;
        return block;
    }
    return 0;
}

const TestHeap = @import("test_heap.zig").TestHeap;
const test_control: u64 = 0x1000;
const test_fl_count: u32 = 4;

/// Pushes a free block onto the front of its class list, as the TS side does.
fn testInsert(heap: TestHeap, block: u64, size_bytes: u64) void {
    const class = mapping(size_bytes);
    const heads = test_control + layout.controlHeadsOffset(test_fl_count);
    const head_address = heads + 8 * (@as(u64, class.fl) * layout.sl_count + class.sl);
    const window = heap.window();
    const old_head = window.readU64(head_address) catch unreachable;
    heap.writeFreeBlock(block, size_bytes, old_head, 0);
    if (old_head != 0) heap.writeU64(old_head + layout.free_prev_offset, block);
    heap.writeU64(head_address, block);
    const sl_address = test_control + layout.control_sl_bitmaps_offset + 4 * @as(u64, class.fl);
    heap.writeU32(sl_address, (window.readU32(sl_address) catch unreachable) | (@as(u32, 1) << @intCast(class.sl)));
    const fl_address = test_control + layout.control_fl_bitmap_offset;
    heap.writeU64(fl_address, (window.readU64(fl_address) catch unreachable) | (@as(u64, 1) << @intCast(class.fl)));
}

fn testFind(heap: TestHeap, block_size_bytes: u64, align_bytes: u64) !u64 {
    var fault = Fault{};
    return find(heap.window(), heap.control(test_control, test_fl_count), heap.key, block_size_bytes, align_bytes, &fault);
}

fn testHeap(bytes: []align(8) u8) TestHeap {
    const heap = TestHeap{ .bytes = bytes, .base_address = 0x1000 };
    heap.writeControl(test_control, layout.policy_id_tlsf, test_fl_count);
    return heap;
}

test "mapping classes small sizes linearly and large ones in 16 steps per power of two" {
    try std.testing.expectEqual(Class{ .fl = 0, .sl = 5 }, mapping(40));
    try std.testing.expectEqual(Class{ .fl = 0, .sl = 15 }, mapping(120));
    try std.testing.expectEqual(Class{ .fl = 1, .sl = 0 }, mapping(128));
    try std.testing.expectEqual(Class{ .fl = 1, .sl = 1 }, mapping(136));
    try std.testing.expectEqual(Class{ .fl = 3, .sl = 15 }, mapping(1000));
    try std.testing.expectEqual(Class{ .fl = 46, .sl = 15 }, mapping((1 << 53) - 8));
}

test "mappingSearch rounds up to the next class boundary" {
    try std.testing.expectEqual(Class{ .fl = 0, .sl = 5 }, mappingSearch(40));
    try std.testing.expectEqual(Class{ .fl = 1, .sl = 1 }, mappingSearch(136));
    try std.testing.expectEqual(Class{ .fl = 2, .sl = 1 }, mappingSearch(264));
    try std.testing.expectEqual(Class{ .fl = 1, .sl = 15 }, mappingSearch(248));
    try std.testing.expectEqual(Class{ .fl = 2, .sl = 0 }, mappingSearch(256));
}

test "searchSizeBytes adds the worst alignment gap" {
    try std.testing.expectEqual(@as(u64, 48), searchSizeBytes(48, 8));
    try std.testing.expectEqual(@as(u64, 48 + 64 + 40 - 8), searchSizeBytes(48, 64));
}

test "find takes the head of the first non-empty class at or above the search class" {
    var bytes align(8) = [_]u8{0} ** 4096;
    const heap = testHeap(&bytes);
    testInsert(heap, 0x1400, 48);
    testInsert(heap, 0x1500, 200);
    testInsert(heap, 0x1600, 600);
    try std.testing.expectEqual(@as(u64, 0x1400), try testFind(heap, 48, 8));
    try std.testing.expectEqual(@as(u64, 0x1500), try testFind(heap, 56, 8));
    try std.testing.expectEqual(@as(u64, 0x1600), try testFind(heap, 208, 8));
    try std.testing.expectEqual(@as(u64, 0), try testFind(heap, 608, 8));
}

test "find falls back to walking the search size's own class" {
    var bytes align(8) = [_]u8{0} ** 4096;
    const heap = testHeap(&bytes);
    // Class [256, 272) holds 264 and 256; a 264-byte request rounds up to the
    // class above, which is empty, so the walk of [256, 272) finds 264.
    testInsert(heap, 0x1500, 264);
    testInsert(heap, 0x1400, 256);
    try std.testing.expectEqual(@as(u64, 0x1500), try testFind(heap, 264, 8));
    try std.testing.expectEqual(@as(u64, 0x1400), try testFind(heap, 256, 8));
    try std.testing.expectEqual(@as(u64, 0), try testFind(heap, 272, 8));
}

test "find with alignment searches for room for the gap" {
    var bytes align(8) = [_]u8{0} ** 4096;
    const heap = testHeap(&bytes);
    testInsert(heap, 0x1400, 96);
    testInsert(heap, 0x1500, 256);
    // search = 48 + 64 + 32 = 144 -> good fit is the 256 block.
    try std.testing.expectEqual(@as(u64, 0x1500), try testFind(heap, 48, 64));
}

test "find refuses a search size past the control block's first levels" {
    var bytes align(8) = [_]u8{0} ** 4096;
    const heap = testHeap(&bytes);
    testInsert(heap, 0x1400, 1000);
    try std.testing.expectEqual(@as(u64, 0), try testFind(heap, 1024, 8));
}

test "find reports a damaged bitmap, a forged head and a link out of the window" {
    var bytes align(8) = [_]u8{0} ** 4096;
    const heap = testHeap(&bytes);
    testInsert(heap, 0x1500, 200);
    const fl_address = test_control + layout.control_fl_bitmap_offset;
    heap.writeU64(fl_address, 1 << 40);
    try std.testing.expectError(error.BadControl, testFind(heap, 48, 8));
    heap.writeU64(fl_address, 1 << 1);
    var key_heap = heap;
    key_heap.key +%= 1;
    try std.testing.expectError(error.BadHeader, testFind(key_heap, 48, 8));
    // 200 is class (1, 9); a 200-byte request walks that class first.
    const head_address = test_control + layout.controlHeadsOffset(test_fl_count) + 8 * (1 * layout.sl_count + 9);
    heap.writeU64(head_address, 0x9_0000_0000);
    try std.testing.expectError(error.OutOfWindow, testFind(heap, 200, 8));
}
