import assert from "#assert";
import { InvalidMemoryError, MappingFailedError } from "../allocator/errors.ts";
import {
  type IdentityMemory,
  mapIdentity,
  RELOCATION_ALIGN_BYTES,
} from "../allocator/memory/identity_memory.ts";
import { resolveWindow } from "../allocator/memory/physical_memory.ts";
import { normalizeMemoryMap } from "../allocator/memory_map/normalize.ts";
import { sampleMemoryMap } from "../allocator/memory_map/samples.ts";
import { PhysicalAllocator } from "../allocator/heap/physical_allocator.ts";

// Addresses from this machine's own usable RAM above 4 GiB (0x100000000-0x640000000):
// far from where Linux puts a process's binary, heap, stack and libraries.
const GIB = 2 ** 30;
const MIB = 2 ** 20;

/** Our own libc handle, to occupy ranges before asking mapIdentity for them. */
const libc = Deno.build.os === "linux"
  ? (() => {
    try {
      return Deno.dlopen(
        "libc.so.6",
        {
          mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
          munmap: { parameters: ["pointer", "usize"], result: "i32" },
        } as const,
      );
    } catch {
      return undefined;
    }
  })()
  : undefined;

/** Maps `lengthBytes` exactly at `address` (NOREPLACE); true on success. */
function occupy(address: number, lengthBytes: number): boolean {
  if (libc === undefined) return false;
  const flags = 0x100000 | 0x4000 | 0x02 | 0x20;
  const hint = Deno.UnsafePointer.create(BigInt(address));
  const pointer = libc.symbols.mmap(hint, BigInt(lengthBytes), 3, flags, -1, 0n);
  const value = pointer === null ? 0 : Number(Deno.UnsafePointer.value(pointer));
  if (value === address) return true;
  if (value !== 0 && value !== 2 ** 64 - 1) libc.symbols.munmap(pointer, BigInt(lengthBytes));
  return false;
}

function release(address: number, lengthBytes: number): void {
  libc?.symbols.munmap(Deno.UnsafePointer.create(BigInt(address)), BigInt(lengthBytes));
}

/** Why mmap at fixed addresses is impossible here, or undefined when it works. */
function fixedMappingProblem(): string | undefined {
  if (Deno.build.os !== "linux") return `mmap at fixed addresses is Linux-only (${Deno.build.os})`;
  if (libc === undefined) return "libc.so.6 cannot be loaded";
  const probe = 9 * GIB;
  if (!occupy(probe, 64 * 1024)) {
    return `mmap(MAP_FIXED_NOREPLACE) at 0x${probe.toString(16)} failed`;
  }
  release(probe, 64 * 1024);
  return undefined;
}

const problem = fixedMappingProblem();
const inCi = Deno.env.get("CI") === "true";
if (problem !== undefined) {
  console.log(`identity_memory_test: SKIPPING identity-mapping tests: ${problem}`);
}

Deno.test({
  name: "mapIdentity() can map at fixed addresses wherever CI runs",
  ignore: !inCi,
  fn() {
    assert.equal(problem, undefined, `identity mapping is impossible in CI: ${problem}`);
  },
});

const identityTest = (name: string, fn: () => void) =>
  Deno.test({ name, ignore: problem !== undefined, fn });

function assertOneWindow(memory: IdentityMemory): void {
  const window = resolveWindow(memory);
  assert.equal(window.baseAddress, memory.windowBase);
  assert.equal(window.bytes.byteLength, memory.windowBytes);
  for (const region of memory.regions) {
    assert.equal(region.base - region.bytes.byteOffset, memory.windowBase);
  }
}

identityTest("mapIdentity() maps ranges at their physical addresses in one window", () => {
  const ranges = [
    { start: 8 * GIB, length: 64 * 1024 },
    { start: 8 * GIB + 16 * MIB, length: 2 * MIB },
    { start: 10 * GIB, length: 4096 },
  ];
  using memory = mapIdentity(ranges);
  assert.deepEqual(
    memory.mappings.map((m) => [m.kind, m.base, m.physicalBase, m.offsetBytes, m.lengthBytes]),
    ranges.map((r) => ["identity", r.start, r.start, 0, r.length]),
  );
  assert.ok(memory.regions.every((region) => region.physicalBase === undefined));
  assert.equal(memory.windowBase, 8 * GIB);
  assert.equal(memory.windowBytes, 2 * GIB + 4096);
  assertOneWindow(memory);
  for (const region of memory.regions) {
    assert.equal(region.bytes[0], 0, "anonymous pages read as zero");
    region.bytes[0] = 0xa5;
    region.bytes[region.bytes.length - 1] = 0x5a;
    assert.equal(region.bytes[0], 0xa5);
    assert.equal(region.bytes[region.bytes.length - 1], 0x5a);
  }
});

identityTest("mapIdentity() maps the normalised qemu sample and reports each region", () => {
  const { usable } = normalizeMemoryMap(sampleMemoryMap("qemu"));
  using memory = mapIdentity(usable);
  assertOneWindow(memory);
  const described = memory.mappings.map((m) =>
    `0x${m.physicalBase.toString(16)} ${m.kind}${m.kind === "relocated" ? ` ${m.reason}` : ""}`
  );
  console.log(`qemu sample: ${described.join(", ")}`);
  for (const [index, mapping] of memory.mappings.entries()) {
    const region = memory.regions[index];
    assert.equal(mapping.physicalBase, usable[index].start);
    assert.equal(mapping.base, region.base);
    assert.equal(mapping.offsetBytes, mapping.base - mapping.physicalBase);
    assert.equal(
      region.physicalBase,
      mapping.kind === "relocated" ? mapping.physicalBase : undefined,
    );
    region.bytes[4095] = index + 1;
    assert.equal(region.bytes[4095], index + 1);
  }
  // The top region (4 GiB up) is free in a fresh process, but the test runner's other files
  // and the runtime may hold mappings there; a relocation must then say why.
  const top = memory.mappings.at(-1)!;
  if (top.kind === "relocated") {
    assert.ok(
      typeof top.reason === "string" && top.reason.length > 0,
      "a relocation names its reason",
    );
  }
});

identityTest("mapIdentity() costs resident memory only for the pages touched", () => {
  const before = Deno.memoryUsage().rss;
  using memory = mapIdentity([{ start: 12 * GIB, length: 8 * GIB }]);
  const bytes = memory.regions[0].bytes;
  for (let offset = 0; offset < bytes.length; offset += GIB) bytes[offset] = 1;
  const grownBytes = Deno.memoryUsage().rss - before;
  assert.ok(grownBytes < 64 * MIB, `8 GiB mapped, 8 pages touched, RSS grew ${grownBytes} bytes`);
});

identityTest(
  "mapIdentity() relocates a range that is already mapped and reports the offset",
  () => {
    const taken = 14 * GIB + 0x5000;
    const lengthBytes = 0x10000;
    assert.ok(occupy(taken, lengthBytes));
    try {
      using memory = mapIdentity([{ start: taken, length: lengthBytes }]);
      const [mapping] = memory.mappings;
      const [region] = memory.regions;
      assert.equal(mapping.kind, "relocated");
      assert.match(mapping.reason ?? "", /EEXIST \(17\)/);
      assert.notEqual(mapping.base, taken);
      assert.equal(mapping.offsetBytes, mapping.base - taken);
      assert.equal(mapping.offsetBytes % RELOCATION_ALIGN_BYTES, 0);
      assert.equal(region.base, mapping.base);
      assert.equal(region.physicalBase, taken);
      assertOneWindow(memory);
      region.bytes.fill(7);
      assert.equal(region.bytes[lengthBytes - 1], 7);
    } finally {
      release(taken, lengthBytes);
    }
  },
);

identityTest("mapIdentity() relocates just above the highest identity-mapped range", () => {
  const free = { start: 15 * GIB, length: 4 * MIB };
  const taken = { start: 16 * GIB + 0x3000, length: 0x8000 };
  assert.ok(occupy(taken.start, taken.length));
  try {
    using memory = mapIdentity([free, taken]);
    assert.deepEqual(memory.mappings.map((m) => m.kind), ["identity", "relocated"]);
    const expected = free.start + free.length + (taken.start % RELOCATION_ALIGN_BYTES);
    assert.equal(memory.mappings[1].base, expected);
    assert.equal(memory.mappings[1].offsetBytes, expected - taken.start);
    assert.equal(
      memory.windowBytes,
      expected + taken.length - free.start,
      "the window stays compact",
    );
    assertOneWindow(memory);
  } finally {
    release(taken.start, taken.length);
  }
});

identityTest("mapIdentity() steps relocation candidates by whole 2 MiB strides", () => {
  const free = { start: 19 * GIB, length: 4 * MIB };
  const taken = { start: 20 * GIB + 0x3000, length: 0x8000 };
  // The first candidate (just above `free`, at taken's 2 MiB phase) is taken too.
  const firstCandidate = free.start + free.length + (taken.start % RELOCATION_ALIGN_BYTES);
  assert.ok(occupy(taken.start, taken.length));
  assert.ok(occupy(firstCandidate, taken.length));
  try {
    using memory = mapIdentity([free, taken]);
    const relocated = memory.mappings[1];
    assert.equal(relocated.kind, "relocated");
    assert.equal(relocated.base, firstCandidate + RELOCATION_ALIGN_BYTES, "the second candidate");
    assert.ok(relocated.offsetBytes % RELOCATION_ALIGN_BYTES === 0, "offset is whole 2 MiB");
    assertOneWindow(memory);
  } finally {
    release(taken.start, taken.length);
    release(firstCandidate, taken.length);
  }
});

identityTest("mapIdentity() without relocation fails and leaves nothing mapped", () => {
  const free = { start: 17 * GIB, length: 64 * 1024 };
  const taken = { start: 18 * GIB, length: 64 * 1024 };
  assert.ok(occupy(taken.start, taken.length));
  try {
    assert.throws(
      () => mapIdentity([free, taken], { relocate: false }),
      (error) =>
        error instanceof MappingFailedError && error.code === "MAPPING_FAILED" &&
        /Cannot map 0x480000000-0x480010000 at its physical address: EEXIST \(17\)/.test(
          error.message,
        ),
    );
    assert.ok(occupy(free.start, free.length), "the range mapped before the failure was unmapped");
    release(free.start, free.length);
  } finally {
    release(taken.start, taken.length);
  }
});

identityTest("IdentityMemory.close() unmaps once, sets closed and may be called twice", () => {
  const range = { start: 19 * GIB, length: 64 * 1024 };
  const memory = mapIdentity([range]);
  const bytes = memory.regions[0].bytes;
  bytes[0] = 1;
  assert.equal(memory.closed, false);
  memory.close();
  assert.equal(memory.closed, true);
  // The window was detached before munmap: the view is empty, nothing can read unmapped pages.
  assert.equal(bytes.byteLength, 0);
  memory.close();
  assert.equal(memory.closed, true);
  assert.ok(occupy(range.start, range.length), "the range is free again after close()");
  release(range.start, range.length);
});

identityTest("IdentityMemory[Symbol.dispose]() closes at the end of a using block", () => {
  let escaped: IdentityMemory | undefined;
  {
    using memory = mapIdentity([{ start: 20 * GIB, length: 4096 }]);
    escaped = memory;
    assert.equal(memory.closed, false);
  }
  assert.equal(escaped.closed, true);
  escaped[Symbol.dispose](); // harmless after close
});

identityTest("mapIdentity() memory carries a PhysicalAllocator at physical addresses", () => {
  const ranges = [{ start: 21 * GIB, length: 2 * MIB }, { start: 22 * GIB, length: 16 * MIB }];
  const memory = mapIdentity(ranges);
  const heap = new PhysicalAllocator(memory);
  try {
    const pages: number[] = [];
    for (let i = 0; i < 64; i++) pages.push(heap.alloc(4096, 4096));
    for (const page of pages) {
      assert.equal(page % 4096, 0);
      assert.ok(ranges.some((r) => r.start <= page && page + 4096 <= r.start + r.length));
      heap.bytes(page, 4096).fill(0xcc);
    }
    const region = memory.regions.find((r) =>
      r.base <= pages[0] && pages[0] < r.base + r.bytes.length
    );
    assert.equal(
      region?.bytes[pages[0] - region.base],
      0xcc,
      "allocator address == mapped address",
    );
    heap.check();
    for (const page of pages) heap.free(page);
    heap.check();
  } finally {
    heap.close();
  }
  assert.equal(memory.closed, true, "closing the allocator unmapped the memory");
});

identityTest("mapIdentity() rejects empty, unaligned and overlapping ranges", () => {
  const invalid = (pattern: RegExp) => (error: unknown) =>
    error instanceof InvalidMemoryError && pattern.test(error.message);
  assert.throws(() => mapIdentity([]), invalid(/no ranges given/));
  assert.throws(
    () => mapIdentity([{ start: 23 * GIB + 100, length: 4096 }]),
    invalid(/at 0x5c0000064: its start must be a positive multiple of the 4096-byte page/),
  );
  assert.throws(
    () => mapIdentity([{ start: 23 * GIB, length: 100 }]),
    invalid(/length 100: its length must be a positive multiple/),
  );
  assert.throws(
    () =>
      mapIdentity([{ start: 23 * GIB, length: 8192 }, { start: 23 * GIB + 4096, length: 4096 }]),
    invalid(/0x5c0001000: it overlaps the range at 0x5c0000000/),
  );
  assert.throws(() => mapIdentity([{ start: 0, length: 4096 }]), invalid(/at 0x0/));
  assert.ok(occupy(23 * GIB, 8192), "failed validation left nothing mapped");
  release(23 * GIB, 8192);
});

Deno.test({
  name: "mapIdentity() names the library it could not load",
  ignore: Deno.build.os !== "linux",
  fn() {
    assert.throws(
      () => mapIdentity([{ start: 24 * GIB, length: 4096 }], { libraryPath: "libnot-there.so.9" }),
      (error) => error instanceof MappingFailedError && /libnot-there\.so\.9/.test(error.message),
    );
  },
});
