/**
 * The conformance suite every policy and path must pass, like Zig's
 * `std.heap.testAllocator`: registered once per configuration.
 */
import assert from "#assert";
import {
  type AllocatorOptions,
  type AllocatorStats,
  bufferMemory,
  PhysicalAllocator,
} from "../../mod.ts";
import { HeapModel } from "./heap_model.ts";
import { Random } from "./random.ts";

/** Snapshot of everything a failed call must leave unchanged. */
export function snapshot(heap: PhysicalAllocator, live: readonly number[] = []): unknown {
  const stats: AllocatorStats = heap.stats();
  return { stats, blocks: [...heap.blocks()], payloads: live.map((a) => [...heap.bytes(a)]) };
}

/**
 * Registers the suite for allocators made with `options`. `heapBytesMin`
 * makes every heap at least that large (so that the page-frame and slab
 * layers serve it), and adds it as a layout of the model run.
 */
export function defineConformanceSuite(
  label: string,
  options: AllocatorOptions,
  base = 0,
  heapBytesMin = 0,
): void {
  const make = (bytes: number, extra: AllocatorOptions = {}) =>
    PhysicalAllocator.fromBuffer(new Uint8Array(Math.max(bytes, heapBytesMin)), {
      ...options,
      ...extra,
      baseAddress: base + 0x1000,
    });

  Deno.test(`PhysicalAllocator (${label}) allocates, frees and restores one free block`, () => {
    const heap = make(1 << 16);
    const before = heap.stats();
    const addresses = [1, 7, 8, 9, 100, 1000, 4000].map((size) => heap.alloc(size));
    for (const address of addresses) assert.equal(address % 8, 0);
    heap.check();
    for (const address of addresses.reverse()) heap.free(address);
    heap.check();
    heap.trim(); // the layers keep reserves until trimmed
    assert.equal(heap.stats().freeBlocks, 1);
    assert.deepEqual(heap.stats(), before);
  });

  Deno.test(`PhysicalAllocator (${label}) honours every power-of-two alignment to 1 MiB`, () => {
    const heap = make(4 << 20);
    for (let align = 1; align <= 1 << 20; align *= 2) {
      const address = heap.alloc(24, align);
      assert.equal(address % align, 0, `alignment ${align}`);
      heap.check();
      heap.free(address);
    }
    const pages = Array.from({ length: 16 }, () => heap.alloc(4096, 4096));
    for (const page of pages) assert.equal(page % 4096, 0);
    pages.forEach((page) => heap.free(page));
    heap.check();
    heap.trim(); // the layers keep reserves until trimmed
    assert.equal(heap.stats().freeBlocks, 1);
  });

  Deno.test(`PhysicalAllocator (${label}) rejects bad sizes and alignments without change`, () => {
    const heap = make(4096);
    const live = [heap.alloc(10)];
    const before = snapshot(heap, live);
    for (const size of [0, -1, 1.5, NaN, Infinity, 2 ** 53, "8" as unknown as number]) {
      assert.throws(() => heap.alloc(size), { code: "INVALID_SIZE" }, `size ${String(size)}`);
      assert.throws(() => heap.tryAlloc(size), { code: "INVALID_SIZE" });
    }
    for (const align of [0, 3, 12, -8, 0.5, NaN, 2 ** 31]) {
      assert.throws(() => heap.alloc(8, align), { code: "INVALID_ALIGNMENT" }, `align ${align}`);
    }
    const tooLarge = Math.max(1 << 20, 2 * heapBytesMin);
    assert.throws(() => heap.alloc(tooLarge), (error: Error & { code: string }) => {
      assert.equal(error.code, "OUT_OF_MEMORY");
      assert.match(error.message, /largest free block holds \d+ bytes/);
      return true;
    });
    assert.equal(heap.tryAlloc(tooLarge), 0);
    assert.deepEqual(snapshot(heap, live), before);
    heap.check();
  });

  Deno.test(`PhysicalAllocator (${label}) rejects bad frees without change`, () => {
    const heap = make(4096);
    const a = heap.alloc(64);
    const b = heap.alloc(64);
    heap.free(a);
    const before = snapshot(heap, [b]);
    const cases: [number, string][] = [
      [a, "DOUBLE_FREE"],
      [b + 8, "INVALID_FREE"],
      [b + 3, "INVALID_FREE"],
      [0, "INVALID_FREE"],
      [-8, "INVALID_FREE"],
      [0x100000 + 2 * heapBytesMin, "INVALID_FREE"],
      [NaN, "INVALID_FREE"],
      [b + 0.5, "INVALID_FREE"],
    ];
    for (const [address, code] of cases) {
      assert.throws(() => heap.free(address), { code }, `free(${address})`);
      assert.throws(() => heap.realloc(address, 8), { code }, `realloc(${address})`);
    }
    assert.throws(() => heap.free(b + 8), /inside the (block|kmalloc-\d+ object) at/);
    assert.throws(() => heap.bytes(a), { code: "INVALID_ADDRESS" });
    assert.deepEqual(snapshot(heap, [b]), before);
    heap.check();
  });

  Deno.test(`PhysicalAllocator (${label}) reallocates in place and by moving`, async (t) => {
    await t.step("shrinks in place", () => {
      const heap = make(4096);
      const a = heap.alloc(1000);
      heap.bytes(a).fill(7);
      assert.equal(heap.realloc(a, 100), a);
      assert.ok(heap.bytes(a).every((byte) => byte === 7));
      heap.check();
      assert.equal(heap.stats().usedBytes, 100);
    });
    await t.step("grows in place into a free successor", () => {
      const heap = make(4096);
      // 300 bytes: a block even where slab classes serve small requests.
      const a = heap.alloc(300);
      heap.bytes(a).fill(9);
      assert.equal(heap.realloc(a, 2000), a);
      assert.ok(heap.bytes(a, 300).every((byte) => byte === 9));
      heap.check();
    });
    await t.step("moves and keeps the payload when the successor is used", () => {
      const heap = make(4096);
      const a = heap.alloc(100);
      const fence = heap.alloc(8);
      heap.bytes(a).forEach((_, i, view) => (view[i] = i));
      const b = heap.realloc(a, 500);
      assert.notEqual(b, a);
      assert.deepEqual([...heap.bytes(b, 100)], Array.from({ length: 100 }, (_, i) => i));
      heap.free(fence);
      heap.free(b);
      heap.check();
      heap.trim(); // the layers keep reserves until trimmed
      assert.equal(heap.stats().freeBlocks, 1);
    });
    await t.step("keeps the block when moving runs out of memory", () => {
      const heap = make(4096);
      const a = heap.alloc(100);
      heap.alloc(8);
      const before = snapshot(heap, [a]);
      assert.throws(() => heap.realloc(a, 100_000 + 2 * heapBytesMin), {
        code: "OUT_OF_MEMORY",
      });
      assert.throws(() => heap.realloc(a, 0), { code: "INVALID_SIZE" });
      assert.deepEqual(snapshot(heap, [a]), before);
    });
  });

  Deno.test(`PhysicalAllocator (${label}) skips a first region too small for any block`, () => {
    const memory = bufferMemory([
      { start: base + 0x1000, length: 39 },
      { start: base + 0x1100, length: 8192 },
    ]);
    memory.regions[0].bytes.fill(0xee);
    const heap = new PhysicalAllocator(memory, options);
    const stats = heap.stats();
    assert.equal(stats.skippedRegions, 1);
    assert.equal(stats.skippedBytes, 39);
    const live = Array.from({ length: 20 }, () => heap.alloc(64));
    for (const address of live) assert.ok(address >= base + 0x1100);
    assert.ok(memory.regions[0].bytes.every((byte) => byte === 0xee), "skipped region written");
    heap.check();
  });

  Deno.test(`PhysicalAllocator (${label}) uses 1000 regions of 64 bytes`, () => {
    const ranges = Array.from(
      { length: 1000 },
      (_, i) => ({ start: base + 0x1000 + i * 128, length: 64 }),
    );
    const heap = new PhysicalAllocator(bufferMemory(ranges), options);
    assert.equal(heap.stats().skippedRegions, 0);
    const live: number[] = [];
    for (let address = heap.tryAlloc(48); address !== 0; address = heap.tryAlloc(48)) {
      live.push(address);
    }
    assert.equal(live.length, 1000);
    heap.check();
    for (const address of live) heap.free(address);
    heap.check();
    assert.equal(heap.stats().freeBlocks, 1000);
    assert.equal(heap.stats().usedBytes, 0);
  });

  Deno.test(`PhysicalAllocator (${label}) handles odd region bases and big alignments`, () => {
    const memory = bufferMemory([
      { start: base + 0x1003, length: 1001 },
      { start: base + 0x20007, length: 70_001 },
    ]);
    new Uint8Array(memory.regions[0].bytes.buffer).fill(0xa5);
    const heap = new PhysicalAllocator(memory, options);
    const model = new HeapModel(
      heap,
      memory.regions.map((r) => ({
        start: r.base,
        end: r.base + r.bytes.byteLength,
      })),
    );
    const address = heap.alloc(100, 65536);
    model.added(address, 100, 65536, 1);
    assert.equal(heap.tryAlloc(100, 1 << 20), 0, "no region holds a 1 MiB boundary");
    model.verifyAll();
  });

  Deno.test(`PhysicalAllocator (${label}) recovers after exhausting memory`, () => {
    const heap = make(1 << 16);
    const live: number[] = [];
    for (let a = heap.tryAlloc(100); a !== 0; a = heap.tryAlloc(100)) live.push(a);
    assert.ok(live.length > 400);
    assert.throws(() => heap.alloc(100), { code: "OUT_OF_MEMORY" });
    for (let i = 0; i < live.length; i += 2) heap.free(live[i]);
    heap.check();
    const again = heap.alloc(100);
    assert.ok(again > 0);
    for (let i = 1; i < live.length; i += 2) heap.free(live[i]);
    heap.free(again);
    heap.check();
    heap.trim(); // the layers keep reserves until trimmed
    assert.equal(heap.stats().freeBlocks, 1);
  });

  Deno.test(`PhysicalAllocator (${label}) survives 100k random operations against a model`, () => {
    runModel(options, 20260526, 100_000, base, heapBytesMin);
  });
}

/** A randomized run on several region layouts, checked against the model after each step. */
export function runModel(
  options: AllocatorOptions,
  seed: number,
  operations: number,
  base = 0,
  heapBytesMin = 0,
): void {
  const random = new Random(seed);
  const layouts = [
    ...(heapBytesMin > 0 ? [[{ start: base + 0x1000, length: heapBytesMin }]] : []),
    [{ start: base + 0x1000, length: 256 * 1024 }],
    [{ start: base + 0x1000, length: 30 }, { start: base + 0x2003, length: 50_000 }, {
      start: base + 0x40000,
      length: 100_000,
    }],
    Array.from(
      { length: 64 },
      (_, i) => ({ start: base + 0x10000 + i * 8192, length: 200 + i * 100 }),
    ),
  ];
  const perLayout = Math.ceil(operations / layouts.length);
  for (const ranges of layouts) {
    const memory = bufferMemory(ranges);
    // Not zeros: the model's outside-bytes check then also sees a stray write of 0.
    new Uint8Array(memory.regions[0].bytes.buffer).fill(0xa5);
    const heap = new PhysicalAllocator(memory, options);
    const model = new HeapModel(
      heap,
      ranges.map((r) => ({ start: r.start, end: r.start + r.length })),
    );
    for (let step = 0; step < perLayout; step++) {
      const live = [...model.live.keys()];
      const roll = random.next();
      if (roll < 0.5 || live.length === 0) {
        const size = random.next() < 0.8 ? random.int(1, 256) : random.int(257, 8192);
        const align = random.next() < 0.8 ? 8 : 2 ** random.int(0, 13);
        const address = heap.tryAlloc(size, align);
        if (address !== 0) model.added(address, size, Math.max(align, 1), step);
      } else if (roll < 0.85) {
        const address = random.pick(live);
        model.removed(address);
        heap.free(address);
      } else {
        const address = random.pick(live);
        const old = model.live.get(address)!;
        const size = random.int(1, 4096);
        try {
          const result = heap.realloc(address, size);
          model.verifyBytes({ ...old, address: result }, Math.min(old.sizeBytes, size));
          model.forget(address);
          model.added(result, size, 8, step);
        } catch (error) {
          assert.equal((error as { code?: string }).code, "OUT_OF_MEMORY");
          model.verifyBytes(old, old.sizeBytes);
        }
      }
      model.verifyAll();
    }
    model.verifyAll();
    model.verifyOutside();
  }
}
