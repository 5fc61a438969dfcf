//! Builds `libpma`, the native hot path of the allocator (see native/root.zig).
//!
//!   zig build -Doptimize=ReleaseFast   -> zig-out/lib/libpma.so (.dylib, .dll)
//!   zig build test                     -> runs the `test` blocks beside the code
//!
//! Written for Zig 0.15.2 (pinned in tools/zig.sh and build.zig.zon).

const std = @import("std");

pub fn build(b: *std.Build) void {
    const target = b.standardTargetOptions(.{});
    const optimize = b.standardOptimizeOption(.{});

    const root_module = b.createModule(.{
        .root_source_file = b.path("native/root.zig"),
        .target = target,
        .optimize = optimize,
    });
    const library = b.addLibrary(.{
        .linkage = .dynamic,
        .name = "pma",
        .root_module = root_module,
    });
    b.installArtifact(library);

    const tests = b.addTest(.{ .root_module = root_module });
    const run_tests = b.addRunArtifact(tests);
    const test_step = b.step("test", "Run the Zig unit tests beside the code");
    test_step.dependOn(&run_tests.step);
}
