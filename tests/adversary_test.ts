/**
 * A hostile user of the public API (mod.ts and the README only): slab caches
 * after destroyCache, page frames and every kind of address, failed
 * allocations, shared heaps with Worker caches, multi-region heaps and odd
 * values. Every refused call must throw an exported error class with a
 * stable code and leave the heap unchanged: its `stats()` and every byte of
 * the buffer under it.
 */
import assert from "node:assert/strict";
import {
  AllocatorError,
  bufferMemory,
  CacheDestroyedError,
  CacheInUseError,
  DoubleFreeError,
  HeapDetachedError,
  InvalidAddressError,
  InvalidFreeError,
  InvalidOptionError,
  InvalidSizeError,
  MemoryInUseError,
  type ObjectCache,
  OutOfMemoryError,
  PhysicalAllocator,
  WorkerSlotError,
} from "../mod.ts";

/** An error class exported by mod.ts, with its code. */
type ErrorClass = abstract new (...args: never[]) => AllocatorError;

/** The heap as a user can see it: its stats and the bytes of the buffer under it. */
function picture(heap: PhysicalAllocator, bytes: Uint8Array): { stats: string; bytes: Uint8Array } {
  return { stats: JSON.stringify(heap.stats()), bytes: bytes.slice() };
}

/** Asserts that the heap still looks like `before` (first differing byte named). */
function assertPicture(
  heap: PhysicalAllocator,
  bytes: Uint8Array,
  before: { stats: string; bytes: Uint8Array },
  what: string,
): void {
  assert.equal(JSON.stringify(heap.stats()), before.stats, `${what}: stats changed`);
  const now = new Int32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >> 2);
  const then = new Int32Array(before.bytes.buffer, 0, before.bytes.byteLength >> 2);
  for (let i = 0; i < now.length; i++) {
    if (now[i] !== then[i]) assert.fail(`${what}: buffer word ${i} changed`);
  }
}

/** Runs `call`, which must throw `errorClass` with `code` and change nothing. */
function refuses(
  heap: PhysicalAllocator,
  bytes: Uint8Array,
  what: string,
  call: () => unknown,
  errorClass: ErrorClass,
  code: string,
): AllocatorError {
  const before = picture(heap, bytes);
  let thrown: unknown = null;
  try {
    call();
  } catch (error) {
    thrown = error;
  }
  assert.ok(thrown instanceof errorClass, `${what}: expected ${errorClass.name}, got ${thrown}`);
  assert.equal((thrown as AllocatorError).code, code, what);
  assertPicture(heap, bytes, before, what);
  return thrown as AllocatorError;
}

/** Runs `call`, which must throw some AllocatorError and change nothing; returns it. */
function refusesTyped(
  heap: PhysicalAllocator,
  bytes: Uint8Array,
  what: string,
  call: () => unknown,
): AllocatorError {
  return refuses(heap, bytes, what, call, AllocatorError, codeOf(call, what));
}

/** The code `call` throws (it must throw an AllocatorError). */
function codeOf(call: () => unknown, what: string): string {
  try {
    call();
  } catch (error) {
    if (error instanceof AllocatorError) return error.code;
    throw error;
  }
  throw new Error(`${what}: expected the call to throw`);
}

/** Asserts that no two [start, end) intervals overlap. */
function assertDisjoint(intervals: [number, number][], what: string): void {
  const sorted = [...intervals].sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < sorted.length; i++) {
    assert.ok(sorted[i][0] >= sorted[i - 1][1], `${what}: ${sorted[i - 1]} overlaps ${sorted[i]}`);
  }
}

Deno.test("a destroyed cache refuses every call, and changes nothing doing so", () => {
  const bytes = new Uint8Array(8 << 20);
  const heap = PhysicalAllocator.fromBuffer(bytes);
  const cache = heap.createCache("inode", 100);
  const object = cache.alloc();
  const error = refuses(
    heap,
    bytes,
    "destroy in use",
    () => heap.destroyCache(cache),
    CacheInUseError,
    "CACHE_IN_USE",
  );
  assert.match(error.message, /inode/);
  cache.free(object);
  heap.destroyCache(cache);
  for (
    const [what, call] of [
      ["destroy twice", () => heap.destroyCache(cache)],
      ["alloc", () => cache.alloc()],
      ["free", () => cache.free(object)],
      ["info", () => cache.info()],
    ] as [string, () => unknown][]
  ) {
    refuses(heap, bytes, `after destroy: ${what}`, call, CacheDestroyedError, "CACHE_DESTROYED");
  }
  // The name is free again; the old handle stays dead and cannot reach the new cache's objects.
  const again = heap.createCache("inode", 64);
  const fresh = again.alloc();
  refuses(
    heap,
    bytes,
    "old handle frees new object",
    () => cache.free(fresh),
    CacheDestroyedError,
    "CACHE_DESTROYED",
  );
  refuses(
    heap,
    bytes,
    "old handle destroyed again",
    () => heap.destroyCache(cache),
    CacheDestroyedError,
    "CACHE_DESTROYED",
  );
  assert.equal(again.info().activeObjects, 1);
  again.free(fresh);
  heap.destroyCache(again);
  heap.check();
});

Deno.test("destroyCache refuses what is not a cache of this heap", () => {
  const bytes = new Uint8Array(8 << 20);
  const heap = PhysicalAllocator.fromBuffer(bytes);
  const other = PhysicalAllocator.fromBuffer(new Uint8Array(8 << 20));
  const mine = heap.createCache("dentry", 64);
  const theirs = other.createCache("dentry", 64);
  const impostors: [string, unknown][] = [
    ["another heap's cache", theirs],
    ["a look-alike of a kmalloc cache", { name: "kmalloc-64", objectBytes: 64 }],
    ["a Proxy of a real cache", new Proxy(mine, {})],
    ["an object inheriting from a real cache", Object.create(mine)],
    ["null", null],
    ["a string", "dentry"],
  ];
  for (const [what, impostor] of impostors) {
    refuses(
      heap,
      bytes,
      what,
      () => heap.destroyCache(impostor as ObjectCache),
      InvalidOptionError,
      "INVALID_OPTION",
    );
  }
  // The kmalloc classes' names are taken; a live cache's name is too.
  refuses(
    heap,
    bytes,
    "kmalloc name",
    () => heap.createCache("kmalloc-8", 8),
    InvalidOptionError,
    "INVALID_OPTION",
  );
  refuses(
    heap,
    bytes,
    "taken name",
    () => heap.createCache("dentry", 8),
    InvalidOptionError,
    "INVALID_OPTION",
  );
  // Objects are not freed through the wrong cache.
  const object = mine.alloc();
  const kmalloc = heap.alloc(64);
  refuses(
    heap,
    bytes,
    "other heap's cache frees",
    () => theirs.free(object),
    InvalidFreeError,
    "INVALID_FREE",
  );
  refuses(
    heap,
    bytes,
    "cache frees a kmalloc object",
    () => mine.free(kmalloc),
    InvalidFreeError,
    "INVALID_FREE",
  );
  refuses(
    heap,
    bytes,
    "cache frees an interior address",
    () => mine.free(object + 8),
    InvalidFreeError,
    "INVALID_FREE",
  );
  mine.free(object);
  heap.free(kmalloc);
  heap.destroyCache(mine);
  other.destroyCache(theirs);
  heap.check();
  other.check();
});

Deno.test("every kind of address that is not a live payload is refused by every call", () => {
  const bytes = new Uint8Array(8 << 20);
  const heap = PhysicalAllocator.fromBuffer(bytes);
  const cache = heap.createCache("page-sized", 4096, { align: 4096 });
  const kmalloc = heap.alloc(100);
  const pages = heap.allocPages(2);
  const large = heap.alloc(64 << 10, 4096);
  const block = heap.alloc(5000, 4096);
  const object = cache.alloc();
  const freedObject = heap.alloc(32);
  heap.free(freedObject);
  const freedPage = heap.allocPages(0);
  heap.freePages(freedPage);
  const table = [...heap.layerRuns()].find((run) => run.kind === "table")!.address;
  const slabEnd = [...heap.layerRuns()].find((run) => run.kind === "slab")!.address + 4088;
  const end = 4096 + bytes.length;
  const bad: [string, number][] = [
    ["inside a kmalloc object", kmalloc + 8],
    ["before a kmalloc object", kmalloc - 8],
    ["the second frame of a page run", pages + 4096],
    ["the last bytes of a page run", pages + 16380],
    ["inside a large page run", large + 4096],
    ["inside a block", block + 8],
    ["a block's header", block - 16],
    ["inside a cache object", object + 8],
    ["a freed kmalloc object", freedObject],
    ["a freed page", freedPage],
    ["a frame table", table],
    ["inside a frame table", table + 8],
    ["slab tail past its last object", slabEnd],
    ["the heap's base", 4096],
    ["the heap's end", end],
    ["just below the heap's end", end - 8],
  ];
  for (const [what, address] of bad) {
    for (
      const [call, run] of [
        ["sizeOf", () => heap.sizeOf(address)],
        ["capacityOf", () => heap.capacityOf(address)],
        ["bytes", () => heap.bytes(address)],
        ["free", () => heap.free(address)],
        ["freePages", () => heap.freePages(address)],
        ["realloc", () => heap.realloc(address, 16)],
        ["cache.free", () => cache.free(address)],
      ] as [string, () => unknown][]
    ) {
      const error = refusesTyped(heap, bytes, `${call} of ${what}`, run);
      assert.ok(
        ["INVALID_ADDRESS", "INVALID_FREE", "DOUBLE_FREE"].includes(error.code),
        `${call} of ${what}: ${error.code}`,
      );
    }
  }
  // freePages takes page runs only.
  refuses(
    heap,
    bytes,
    "freePages of a block",
    () => heap.freePages(block),
    InvalidFreeError,
    "INVALID_FREE",
  );
  refuses(
    heap,
    bytes,
    "freePages of a cache object",
    () => heap.freePages(object),
    InvalidFreeError,
    "INVALID_FREE",
  );
  // Live payloads of every kind answer.
  assert.equal(heap.sizeOf(pages), 16384);
  assert.equal(heap.sizeOf(large), 64 << 10);
  assert.equal(heap.sizeOf(object), 4096);
  assert.equal(heap.bytes(pages, 0).length, 0);
  refuses(
    heap,
    bytes,
    "view past a page run",
    () => heap.bytes(pages, 16385),
    AllocatorError,
    "INVALID_SIZE",
  );
  refuses(
    heap,
    bytes,
    "view past a cache object",
    () => heap.bytes(object, 4097),
    AllocatorError,
    "INVALID_SIZE",
  );
  heap.check();
});

Deno.test("realloc between the slab, block and page layers keeps the payload", () => {
  const heap = PhysicalAllocator.fromBuffer(new Uint8Array(16 << 20));
  let address = heap.alloc(8);
  heap.bytes(address).set([1, 2, 3, 4, 5, 6, 7, 8]);
  const sizes = [16, 200, 256, 257, 4096, 4097, 8192, 64 << 10, 1 << 20, 4 << 20, (4 << 20) + 1];
  for (const size of [...sizes, 100, 8, 4096, 3]) {
    address = heap.realloc(address, size);
    assert.equal(heap.sizeOf(address), size);
    assert.ok(heap.capacityOf(address) >= size);
    assert.deepEqual([...heap.bytes(address, 3)], [1, 2, 3], `realloc to ${size}`);
  }
  const pages = heap.allocPages(3);
  heap.bytes(pages)[0] = 9;
  const shrunk = heap.realloc(pages, 100);
  assert.equal(heap.bytes(shrunk)[0], 9);
  const cache = heap.createCache("moving", 300);
  const object = cache.alloc();
  heap.bytes(object)[0] = 5;
  const moved = heap.realloc(object, 1000);
  assert.equal(heap.bytes(moved)[0], 5);
  assert.equal(cache.info().activeObjects, 0);
  heap.check();
});

Deno.test("large requests from 64 KiB to 4 MiB are aligned and never overlap", () => {
  const heap = PhysicalAllocator.fromBuffer(new Uint8Array(16 << 20));
  const live: number[] = [];
  for (const size of [64 << 10, 128 << 10, 1 << 20, 2 << 20, 4 << 20, (64 << 10) + 8, 3 << 20]) {
    for (const align of [8, 4096, 8192]) {
      const address = heap.tryAlloc(size, align);
      if (address === 0) continue;
      assert.equal(address % align, 0);
      assert.equal(heap.sizeOf(address), size);
      live.push(address);
    }
  }
  assert.ok(live.length >= 12, `only ${live.length} large allocations fit`);
  assertDisjoint(live.map((a) => [a, a + heap.capacityOf(a)]), "large allocations");
  const fresh = PhysicalAllocator.fromBuffer(new Uint8Array(16 << 20)).stats();
  for (const address of live) heap.free(address);
  heap.trim();
  heap.check();
  assert.equal(heap.stats().usedBytes, 0);
  assert.equal(heap.stats().freeBytes, fresh.freeBytes);
});

for (const policy of ["tlsf", "first-fit"] as const) {
  for (const fastPath of [true, false]) {
    Deno.test(`a failed allocation changes nothing (${policy}, fastPath ${fastPath})`, () => {
      const bytes = new Uint8Array(3 << 20);
      const heap = PhysicalAllocator.fromBuffer(bytes, { policy, fastPath });
      const tooBig: [number, number][] = [[4 << 20, 4096], [3 << 20, 8], [64, 1 << 22]];
      for (const [size, align] of tooBig) {
        refuses(
          heap,
          bytes,
          `fresh alloc(${size}, ${align})`,
          () => heap.alloc(size, align),
          OutOfMemoryError,
          "OUT_OF_MEMORY",
        );
        const before = picture(heap, bytes);
        assert.equal(heap.tryAlloc(size, align), 0);
        assertPicture(heap, bytes, before, `fresh tryAlloc(${size}, ${align})`);
      }
      refuses(
        heap,
        bytes,
        "fresh allocPages(10)",
        () => heap.allocPages(10),
        OutOfMemoryError,
        "OUT_OF_MEMORY",
      );
      // Fill with page-ish blocks, then with the smallest objects, then try everything.
      const live: number[] = [];
      for (const size of [4000, 8]) {
        for (let address = heap.tryAlloc(size); address !== 0; address = heap.tryAlloc(size)) {
          live.push(address);
        }
      }
      const cache = heap.createCache("late", 64);
      const attempts: [string, () => unknown][] = [
        ["alloc(8)", () => heap.alloc(8)],
        ["alloc(4096, 4096)", () => heap.alloc(4096, 4096)],
        ["alloc(100000)", () => heap.alloc(100000)],
        ["allocPages(0)", () => heap.allocPages(0)],
        ["cache alloc", () => cache.alloc()],
        ["realloc 8 -> 300", () => heap.realloc(live.at(-1)!, 300)],
        ["realloc 4000 -> 100000", () => heap.realloc(live[0], 100000)],
      ];
      for (const [what, call] of attempts) {
        refuses(heap, bytes, `full: ${what}`, call, OutOfMemoryError, "OUT_OF_MEMORY");
      }
      const before = picture(heap, bytes);
      assert.equal(heap.tryAlloc(8), 0);
      assertPicture(heap, bytes, before, "full: tryAlloc(8)");
      assertDisjoint(live.map((a) => [a, a + heap.capacityOf(a)]), "live payloads");
      heap.check();
      for (const address of live) heap.free(address);
      heap.destroyCache(cache);
      heap.trim();
      heap.check();
      assert.equal(heap.stats().usedBlocks, 0);
    });
  }
}

Deno.test("a shared heap's Worker caches refuse frees, views and reallocs of cached blocks", () => {
  const memory = new SharedArrayBuffer(1 << 20);
  const bytes = new Uint8Array(memory);
  const creator = PhysicalAllocator.fromBuffer(memory, { workerSlots: 4 });
  const joiner = PhysicalAllocator.attach(memory);
  const block = creator.alloc(24);
  creator.free(block); // into the creator's Worker cache
  for (const [who, heap] of [["creator", creator], ["joiner", joiner]] as const) {
    refuses(
      heap,
      bytes,
      `${who} frees a cached block`,
      () => heap.free(block),
      DoubleFreeError,
      "DOUBLE_FREE",
    );
    // Inside a cached block is an interior free, as on an unshared heap.
    refuses(
      heap,
      bytes,
      `${who} frees inside it`,
      () => heap.free(block + 8),
      InvalidFreeError,
      "INVALID_FREE",
    );
    refuses(
      heap,
      bytes,
      `${who} reallocs it`,
      () => heap.realloc(block, 100),
      DoubleFreeError,
      "DOUBLE_FREE",
    );
    refuses(
      heap,
      bytes,
      `${who} sizes it`,
      () => heap.sizeOf(block),
      InvalidAddressError,
      "INVALID_ADDRESS",
    );
    refuses(
      heap,
      bytes,
      `${who} views it`,
      () => heap.bytes(block),
      InvalidAddressError,
      "INVALID_ADDRESS",
    );
  }
  // Handed out again, moved to another class by realloc, freed through the other handle.
  const again = creator.alloc(24);
  creator.bytes(again).fill(1);
  const moved = creator.realloc(again, 200);
  assert.ok(creator.bytes(moved, 24).every((byte) => byte === 1));
  refuses(
    creator,
    bytes,
    "free of the old address",
    () => creator.free(again),
    DoubleFreeError,
    "DOUBLE_FREE",
  );
  joiner.free(moved);
  refuses(
    creator,
    bytes,
    "free of a block the joiner cached",
    () => creator.free(moved),
    DoubleFreeError,
    "DOUBLE_FREE",
  );
  refuses(
    joiner,
    bytes,
    "joiner frees it twice",
    () => joiner.free(moved),
    DoubleFreeError,
    "DOUBLE_FREE",
  );
  creator.check();
  joiner.detach();
  creator.detach();
});

Deno.test("a shared heap keeps a default alignment above 8 through its Worker caches", () => {
  const heap = PhysicalAllocator.fromBuffer(new SharedArrayBuffer(1 << 20), { align: 64 });
  const first = Array.from({ length: 40 }, () => heap.alloc(24));
  for (const address of first) heap.free(address);
  for (let i = 0; i < 40; i++) assert.equal(heap.alloc(24) % 64, 0);
  for (let i = 0; i < 10; i++) {
    const small = heap.alloc(24, 8);
    const wide = heap.alloc(24, 128);
    heap.free(small);
    assert.equal(wide % 128, 0);
    assert.equal(heap.alloc(24, 128) % 128, 0);
  }
  heap.check();
});

Deno.test("a detached Worker's handle refuses every call; its cached blocks went back", () => {
  const memory = new SharedArrayBuffer(1 << 20);
  const creator = PhysicalAllocator.fromBuffer(memory);
  const worker = PhysicalAllocator.attach(memory);
  const cached = worker.alloc(16);
  worker.free(cached);
  const live = worker.alloc(40);
  worker.detach();
  for (
    const [what, call] of [
      ["alloc", () => worker.alloc(8)],
      ["free", () => worker.free(live)],
      ["sizeOf", () => worker.sizeOf(live)],
      ["stats", () => worker.stats()],
      ["check", () => worker.check()],
      ["reclaimSlot", () => worker.reclaimSlot(1)],
      ["detach", () => worker.detach()],
    ] as [string, () => unknown][]
  ) {
    assert.throws(call, HeapDetachedError, what);
  }
  assert.throws(() => creator.sizeOf(cached), InvalidAddressError);
  assert.equal(creator.sizeOf(live), 40);
  creator.free(live);
  for (const slot of [0, -1, creator.workerSlot, 99, NaN, "2", 2.5, 256]) {
    assert.throws(() => creator.reclaimSlot(slot as number), WorkerSlotError, String(slot));
  }
  creator.check();
  assert.equal(creator.stats().usedBlocks, 0);
});

Deno.test("a shared heap over bytes of an open shared heap of the same buffer is refused", () => {
  const memory = new SharedArrayBuffer(2 << 20);
  const whole = new Uint8Array(memory);
  const first = PhysicalAllocator.fromBuffer(new Uint8Array(memory, 0, 1 << 20));
  const live = Array.from({ length: 20 }, (_, i) => first.alloc(64 + i));
  live.forEach((address, i) => first.bytes(address).fill(i + 1));
  const before = whole.slice();
  for (const [offset, length] of [[4096, 1 << 20], [8, 1 << 19], [(1 << 20) - 4096, 4096 + 64]]) {
    assert.throws(
      () => PhysicalAllocator.fromBuffer(new Uint8Array(memory, offset, length)),
      MemoryInUseError,
      `a heap at offset ${offset}`,
    );
    assert.deepEqual(whole, before, `a heap at offset ${offset} wrote the buffer`);
  }
  // A heap beside it is fine, and neither disturbs the other.
  const beside = PhysicalAllocator.fromBuffer(new Uint8Array(memory, 1 << 20, 1 << 20));
  const other = Array.from({ length: 1000 }, () => beside.alloc(64));
  for (let i = 0; i < 1000; i++) first.free(first.alloc(48));
  live.forEach((address, i) => assert.ok(first.bytes(address).every((byte) => byte === i + 1)));
  first.check();
  beside.check();
  for (const address of other) beside.free(address);
  // Closed, its bytes may be taken again.
  first.close();
  beside.close();
  PhysicalAllocator.fromBuffer(new Uint8Array(memory, 4096, 1 << 20)).close();
});

Deno.test("a heap of several regions refuses addresses in its holes and at region ends", () => {
  const ranges = [
    { start: 0x1000, length: 0x200000 },
    { start: 0x300000, length: 0x1000 },
    { start: 0x400000, length: 64 },
    { start: 0x500000, length: 0x100000 },
  ];
  for (const policy of ["tlsf", "first-fit"] as const) {
    const memory = bufferMemory(ranges);
    const heap = new PhysicalAllocator(memory, { policy });
    const bytes = new Uint8Array(memory.regions[0].bytes.buffer);
    const addresses = [
      0x201000,
      0x201008,
      0x2ffff8,
      0x300000,
      0x300008,
      0x301000,
      0x400000,
      0x400008,
      0x400040,
      0x500000,
      0x600000,
      0x5ffff8,
      0x1000,
      0xfff8,
    ];
    for (const address of addresses) {
      const what = `${policy} ${address.toString(16)}`;
      refuses(
        heap,
        bytes,
        `free ${what}`,
        () => heap.free(address),
        InvalidFreeError,
        "INVALID_FREE",
      );
      refuses(
        heap,
        bytes,
        `sizeOf ${what}`,
        () => heap.sizeOf(address),
        InvalidAddressError,
        "INVALID_ADDRESS",
      );
    }
    const fresh = picture(heap, bytes).stats;
    const live: number[] = [];
    for (const size of [8, 100, 3000, 4096, 70000, 1 << 20]) {
      while (live.length < 3000) {
        const address = heap.tryAlloc(size);
        if (address === 0) break;
        live.push(address);
      }
    }
    const spans = live.map((a): [number, number] => [a, a + heap.capacityOf(a)]);
    assertDisjoint(spans, `${policy} payloads`);
    for (const [start, end] of spans) {
      assert.ok(
        ranges.some((r) => start >= r.start && end <= r.start + r.length),
        `${policy}: payload ${start.toString(16)}..${end.toString(16)} lies outside every region`,
      );
    }
    for (const address of live) heap.free(address);
    heap.trim();
    heap.check();
    assert.equal(JSON.stringify(heap.stats()), fresh);
  }
});

Deno.test("odd values are refused with typed errors and change nothing", () => {
  const bytes = new Uint8Array(4 << 20);
  const heap = PhysicalAllocator.fromBuffer(bytes);
  const live = heap.alloc(64);
  const cache = heap.createCache("odd", 48);
  const odd: [string, unknown][] = [
    ["NaN", NaN],
    ["2**53", 2 ** 53],
    ['"64"', "64"],
    ["a Symbol", Symbol("size")],
    ["64n", 64n],
    ["an object with valueOf", { valueOf: () => 64 }],
    ["a Proxy", new Proxy({}, {})],
    ["-1", -1],
    ["Infinity", Infinity],
    ["1.5", 1.5],
    ["null", null],
    ["true", true],
    ["new Number(64)", new Number(64)],
  ];
  for (const [what, value] of odd) {
    const v = value as number;
    const calls: [string, () => unknown][] = [
      ["alloc", () => heap.alloc(v)],
      ["alloc align", () => heap.alloc(64, v)],
      ["tryAlloc", () => heap.tryAlloc(v)],
      ["free", () => heap.free(v)],
      ["realloc size", () => heap.realloc(live, v)],
      ["realloc address", () => heap.realloc(v, 8)],
      ["sizeOf", () => heap.sizeOf(v)],
      ["capacityOf", () => heap.capacityOf(v)],
      ["allocPages", () => heap.allocPages(v)],
      ["freePages", () => heap.freePages(v)],
      ["cache.free", () => cache.free(v)],
      ["createCache size", () => heap.createCache(`odd ${what}`, v)],
      ["createCache align", () => heap.createCache(`odd ${what}`, 8, { align: v })],
    ];
    for (const [call, run] of calls) {
      // null as an alignment means "the default"; everything else is refused.
      if (value === null && (call === "alloc align" || call === "createCache align")) continue;
      refusesTyped(heap, bytes, `${call}(${what})`, run);
    }
    if (value !== null) {
      refusesTyped(heap, bytes, `bytes(live, ${what})`, () => heap.bytes(live, v));
    }
  }
  // A detached buffer: every call throws a typed error, close() does not.
  const buffer = new ArrayBuffer(4 << 20);
  const doomed = PhysicalAllocator.fromBuffer(buffer);
  const address = doomed.alloc(100);
  const doomedCache = doomed.createCache("doomed", 64);
  structuredClone(buffer, { transfer: [buffer] });
  for (
    const call of [
      () => doomed.alloc(8),
      () => doomed.free(address),
      () => doomed.sizeOf(address),
      () => doomed.stats(),
      () => doomed.check(),
      () => doomedCache.alloc(),
      () => doomed.createCache("late", 8),
      () => doomed.destroyCache(doomedCache),
      () => doomed.allocPages(0),
      () => doomed.trim(),
    ]
  ) {
    assert.throws(call, { code: "MEMORY_DETACHED" });
  }
  doomed.close();
  heap.check();
});

Deno.test("bufferMemory refuses odd ranges with InvalidMemoryError; odd starts still align payloads", () => {
  const refused: [string, unknown][] = [
    ["no ranges", []],
    ["null", null],
    ["an object", {}],
    ["overlapping ranges", [{ start: 0x1000, length: 0x2000 }, { start: 0x2000, length: 0x1000 }]],
    ["a range at 0", [{ start: 0, length: 0x1000 }]],
    ["a NaN start", [{ start: NaN, length: 0x1000 }]],
    ["a negative length", [{ start: 0x1000, length: -1 }]],
    ["a fractional length", [{ start: 0x1000, length: 64.5 }]],
    ["a start of 2^53", [{ start: 2 ** 53, length: 64 }]],
    ["a string start", [{ start: "4096", length: 64 }]],
    ["a BigInt start", [{ start: 4096n, length: 64 }]],
    ["a Symbol start", [{ start: Symbol("start"), length: 64 }]],
    ["a null range", [null]],
    ["ranges 32 TiB apart", [{ start: 0x1000, length: 64 }, { start: 2 ** 45, length: 64 }]],
  ];
  for (const [what, ranges] of refused) {
    assert.throws(
      () => bufferMemory(ranges as { start: number; length: number }[]),
      { code: "INVALID_MEMORY" },
      what,
    );
  }
  for (const start of [0x1001, 0x1003, 0x1004]) {
    const ranges = [{ start, length: 256 }, { start: 0x2005, length: 4096 }];
    const heap = new PhysicalAllocator(bufferMemory(ranges));
    const live = [heap.alloc(8), heap.alloc(8, 16), heap.alloc(100), heap.alloc(8, 64)];
    for (const [i, align] of [8, 16, 8, 64].entries()) assert.equal(live[i] % align, 0);
    const spans = live.map((a): [number, number] => [a, a + heap.capacityOf(a)]);
    assertDisjoint(spans, `start ${start}`);
    for (const [from, to] of spans) {
      assert.ok(ranges.some((r) => from >= r.start && to <= r.start + r.length));
    }
    heap.check();
  }
});

Deno.test("with slab and frame reserves, a failed allocation still changes nothing", () => {
  for (const fastPath of [true, false]) {
    const bytes = new Uint8Array(4 << 20);
    const heap = PhysicalAllocator.fromBuffer(bytes, { fastPath });
    const smalls: number[] = [];
    for (const size of [8, 16, 32, 64, 104, 128, 256]) {
      for (let i = 0; i < 40; i++) smalls.push(heap.alloc(size));
    }
    const pages = [heap.allocPages(0), heap.allocPages(3)];
    for (const address of smalls) heap.free(address);
    for (const address of pages) heap.freePages(address);
    // The block heap nearly full, one slab kept busy: trimming the reserves helps only so much.
    const big = heap.alloc(heap.stats().largestFreeBytes - 200);
    const busy = heap.alloc(16);
    let failures = 0;
    for (const size of [130000, 121000, 118000, 110000, 81920, 5000]) {
      for (const align of [8, 4096]) {
        const before = picture(heap, bytes);
        const address = heap.tryAlloc(size, align);
        if (address === 0) {
          failures++;
          assertPicture(heap, bytes, before, `fastPath ${fastPath}: tryAlloc(${size}, ${align})`);
        } else {
          heap.free(address);
        }
      }
    }
    assert.ok(failures >= 4, `only ${failures} allocations failed`);
    // With its last slab object freed, the reserves go back and serve a block.
    heap.free(busy);
    const served = heap.tryAlloc(5000);
    assert.notEqual(served, 0, "a request the reserves can serve failed");
    heap.free(served);
    heap.free(big);
    heap.check();
  }
});

Deno.test("a shared heap's failed allocation keeps the Worker cache's blocks where they were", () => {
  const memory = new SharedArrayBuffer(1 << 20);
  const bytes = new Uint8Array(memory);
  const heap = PhysicalAllocator.fromBuffer(memory);
  const live: number[] = [];
  for (let address; (address = heap.tryAlloc(24)) !== 0;) live.push(address);
  // Eight blocks side by side in this Worker's cache: together far too small
  // for what follows, and merged (320 bytes) enough for the last request.
  live.sort((a, b) => a - b);
  const first = live.findIndex((address, i) => live[i + 7] === address + 7 * 40);
  assert.ok(first >= 0, "eight 24-byte blocks side by side");
  for (const address of live.splice(first, 8)) heap.free(address);
  for (const attempt of ["tryAlloc", "alloc", "realloc"] as const) {
    const before = picture(heap, bytes);
    if (attempt === "tryAlloc") assert.equal(heap.tryAlloc(100000), 0);
    else if (attempt === "alloc") {
      assert.throws(() => heap.alloc(100000), { code: "OUT_OF_MEMORY" });
    } else {
      assert.throws(() => heap.realloc(live[0], 100000), { code: "OUT_OF_MEMORY" });
    }
    assertPicture(heap, bytes, before, `shared ${attempt}(100000) with blocks cached`);
  }
  // A request the cached blocks can serve drains them and succeeds.
  const small = heap.tryAlloc(200);
  assert.notEqual(small, 0, "the cached blocks did not serve a request they hold");
  heap.free(small);
  for (const address of live) heap.free(address);
  heap.check();
  heap.close();
});

Deno.test("random use of every layer never hands out bytes of a live allocation", () => {
  let seed = 0x2545f491;
  const random = (n: number) => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) % n;
  };
  const heap = PhysicalAllocator.fromBuffer(new Uint8Array(2 << 20));
  let caches = [heap.createCache("a", 72), heap.createCache("b", 4000, { align: 64 })];
  type Live = { address: number; tag: number; how: "heap" | "pages" | 0 | 1 };
  const live: Live[] = [];
  let tag = 0;
  const fill = (entry: Live) => heap.bytes(entry.address).fill(entry.tag);
  const intact = (entry: Live) => heap.bytes(entry.address).every((byte) => byte === entry.tag);
  for (let step = 0; step < 4000; step++) {
    const op = random(10);
    if (op < 4 || live.length === 0) {
      let address = 0;
      let how: Live["how"] = "heap";
      try {
        switch (random(6)) {
          case 0:
            address = heap.alloc(1 + random(256));
            break;
          case 1:
            address = heap.alloc(257 + random(6000), 8 << random(4));
            break;
          case 2:
            address = heap.alloc(4096 * (1 + random(20)), 4096);
            break;
          case 3:
            address = heap.allocPages(random(5));
            how = "pages";
            break;
          default: {
            const which = random(2) as 0 | 1;
            address = caches[which].alloc();
            how = which;
          }
        }
      } catch (error) {
        assert.ok(error instanceof OutOfMemoryError, String(error));
        continue;
      }
      const entry = { address, tag: (++tag % 255) + 1, how };
      fill(entry);
      live.push(entry);
    } else if (op < 7) {
      const [entry] = live.splice(random(live.length), 1);
      assert.ok(intact(entry), `step ${step}: the payload at ${entry.address} was overwritten`);
      if (entry.how === "pages") heap.freePages(entry.address);
      else if (entry.how === "heap") heap.free(entry.address);
      else caches[entry.how].free(entry.address);
    } else if (op < 9) {
      const index = random(live.length);
      const entry = live[index];
      if (entry.how !== "heap") continue;
      assert.ok(intact(entry), `step ${step}: the payload at ${entry.address} was overwritten`);
      const kept = Math.min(heap.sizeOf(entry.address), 64);
      try {
        entry.address = heap.realloc(entry.address, 1 + random(3 * 4096));
      } catch (error) {
        assert.ok(error instanceof OutOfMemoryError, String(error));
      }
      const head = heap.bytes(entry.address, Math.min(kept, heap.sizeOf(entry.address)));
      assert.ok(head.every((byte) => byte === entry.tag), `step ${step}: realloc lost the payload`);
      fill(entry);
    } else if (random(50) === 0) {
      // Every cache object back, then the caches destroyed and made again (other sizes).
      for (let i = live.length - 1; i >= 0; i--) {
        const entry = live[i];
        if (entry.how !== 0 && entry.how !== 1) continue;
        assert.ok(intact(entry), `step ${step}: the payload at ${entry.address} was overwritten`);
        caches[entry.how].free(entry.address);
        live.splice(i, 1);
      }
      for (const cache of caches) heap.destroyCache(cache);
      caches = [
        heap.createCache("a", 8 + 8 * random(40)),
        heap.createCache("b", 4000, { align: 64 }),
      ];
    }
  }
  const spans = live.map((
    e,
  ): [number, number] => [e.address, e.address + heap.capacityOf(e.address)]);
  assertDisjoint(spans, "live allocations");
  for (const entry of live) assert.ok(intact(entry));
  heap.check();
});

Deno.test("bytes() refuses a null length, and a closed allocator's cache refuses info()", () => {
  const bytes = new Uint8Array(4 << 20);
  const heap = PhysicalAllocator.fromBuffer(bytes);
  const address = heap.alloc(40);
  const before = picture(heap, bytes);
  assert.throws(
    () => heap.bytes(address, null as unknown as number),
    (error: unknown) => error instanceof InvalidSizeError && error.code === "INVALID_SIZE",
  );
  assertPicture(heap, bytes, before, "bytes(address, null)");
  assert.equal(heap.bytes(address).length, 40);
  const cache = heap.createCache("probe", 48);
  heap.close();
  assert.throws(() => cache.info(), { code: "ALLOCATOR_CLOSED" });
});

Deno.test("a revoked Proxy anywhere in the input gets a typed error, never a TypeError", () => {
  const { proxy, revoke } = Proxy.revocable({}, {});
  revoke();
  const revoked = proxy as never;
  using heap = PhysicalAllocator.fromBuffer(new Uint8Array(2 << 20));
  const calls: [string, () => unknown, string][] = [
    ["new PhysicalAllocator(memory)", () => new PhysicalAllocator(revoked), "INVALID_MEMORY"],
    ["regions", () => new PhysicalAllocator({ regions: revoked }), "INVALID_MEMORY"],
    ["a region", () => new PhysicalAllocator({ regions: [revoked] }), "INVALID_MEMORY"],
    [
      "a region's bytes",
      () => new PhysicalAllocator({ regions: [{ base: 0x1000, bytes: revoked }] }),
      "INVALID_MEMORY",
    ],
    [
      "constructor options",
      () => new PhysicalAllocator(bufferMemory([{ start: 0x1000, length: 1 << 16 }]), revoked),
      "INVALID_OPTION",
    ],
    ["fromBuffer(memory)", () => PhysicalAllocator.fromBuffer(revoked), "INVALID_MEMORY"],
    [
      "fromBuffer options",
      () => PhysicalAllocator.fromBuffer(new Uint8Array(1 << 16), revoked),
      "INVALID_OPTION",
    ],
    ["attach(memory)", () => PhysicalAllocator.attach(revoked), "SHARED_HEAP_INVALID"],
    ["bufferMemory(ranges)", () => bufferMemory(revoked), "INVALID_MEMORY"],
    ["a range", () => bufferMemory([revoked]), "INVALID_MEMORY"],
    ["createCache options", () => heap.createCache("c", 8, revoked), "INVALID_OPTION"],
    ["createCache name", () => heap.createCache(revoked, 8), "INVALID_OPTION"],
    ["alloc", () => heap.alloc(revoked), "INVALID_SIZE"],
    ["free", () => heap.free(revoked), "INVALID_FREE"],
    ["realloc", () => heap.realloc(heap.alloc(8), revoked), "INVALID_SIZE"],
  ];
  for (const [what, call, code] of calls) {
    assert.throws(call, (error: unknown) => {
      assert.ok(error instanceof AllocatorError, `${what}: ${String(error)}`);
      assert.equal(error.code, code, what);
      return true;
    });
  }
  heap.check();
  assert.equal(heap.stats().usedBlocks, 1, "the realloc's object alone is live");
});

Deno.test("a getter in the input is read once: a value that changes between reads cannot split a decision", () => {
  let debugReads = 0;
  // Read twice, `debug` would say false to the shared heap's Worker caches and true to its layers.
  const options = {
    get debug() {
      return debugReads++ > 0;
    },
  };
  using shared = PhysicalAllocator.fromBuffer(new SharedArrayBuffer(4 << 20), options);
  assert.equal(debugReads, 1);
  shared.free(shared.alloc(8));
  shared.free(shared.alloc(5000));
  shared.check();
  // A range whose start passes the checks once, then would name another address.
  let startReads = 0;
  const range = {
    get start() {
      return startReads++ === 0 ? 0x1000 : -0x1000;
    },
    length: 1 << 16,
  };
  const memory = bufferMemory([range]);
  assert.equal(startReads, 1);
  assert.equal(memory.regions[0].base, 0x1000);
  // A region whose bytes would swap to a view of another buffer after the checks.
  const bytes = new Uint8Array(1 << 16);
  let bytesReads = 0;
  const region = {
    base: 0x1000,
    get bytes() {
      return bytesReads++ === 0 ? bytes : new Uint8Array(16);
    },
  };
  using heap = new PhysicalAllocator({ regions: [region] });
  assert.equal(bytesReads, 1);
  const address = heap.alloc(100);
  heap.bytes(address).fill(7);
  assert.equal(bytes[address - 0x1000], 7, "the heap writes the view it checked");
  heap.check();
});

Deno.test("a cache alloc that finds no page frames for a slab changes nothing", () => {
  for (const policy of ["tlsf", "first-fit"] as const) {
    const bytes = new Uint8Array(3 << 19);
    using heap = PhysicalAllocator.fromBuffer(bytes, { policy });
    const cache = heap.createCache("big", 4000);
    // Blocks fill the heap, then pages every free frame: small free blocks stay.
    while (heap.tryAlloc(70_000) !== 0) { /* filled */ }
    while (true) {
      try {
        heap.allocPages(0);
      } catch {
        break;
      }
    }
    const before = picture(heap, bytes);
    // The slab's descriptor (a small block) would fit; its frames do not.
    assert.throws(() => cache.alloc(), OutOfMemoryError);
    assertPicture(heap, bytes, before, `${policy}: the refused cache alloc`);
    heap.check();
  }
});

Deno.test("a Uint8Array subclass whose getters lie is read through the engine's own accessors", () => {
  class Long extends Uint8Array {
    override get byteLength(): number {
      return 1 << 30;
    }
  }
  class Negative extends Uint8Array {
    override get byteOffset(): number {
      return -8;
    }
  }
  for (const View of [Long, Negative]) {
    const bytes = new View(new ArrayBuffer(2 << 20));
    using heap = PhysicalAllocator.fromBuffer(bytes);
    assert.equal(heap.stats().totalBytes, 2 << 20, `${View.name}: the view's real length`);
    heap.free(heap.alloc(100));
    heap.check();
    using regions = new PhysicalAllocator({
      regions: [{ base: 0x1000, bytes: new View(new ArrayBuffer(2 << 20)) }],
    });
    assert.equal(regions.stats().totalBytes, 2 << 20);
    const shared = new View(new SharedArrayBuffer(2 << 20) as unknown as ArrayBuffer);
    using creator = PhysicalAllocator.fromBuffer(shared);
    using joiner = PhysicalAllocator.attach(shared);
    joiner.free(creator.alloc(100));
    creator.check();
  }
});

Deno.test("a shrinking realloc on a full heap stays where it stands when the move finds no memory", () => {
  const bytes = new Uint8Array(2 << 20);
  using heap = PhysicalAllocator.fromBuffer(bytes);
  const pages = heap.allocPages(2);
  const page = heap.alloc(4096, 4096);
  const object = heap.alloc(200); // kmalloc-200: a shrink to 100 would move it to kmalloc-104
  heap.bytes(object).fill(5);
  for (const size of [64, 8, 16, 24, 32, 48, 96, 104, 128, 2048]) {
    while (heap.tryAlloc(size) !== 0) { /* fill the heap */ }
  }
  for (const [address, size] of [[pages, 100], [page, 2048], [object, 100]]) {
    assert.equal(heap.realloc(address, size), address, `realloc to ${size} in place`);
    assert.equal(heap.sizeOf(address), size);
  }
  assert.ok(heap.bytes(object).every((byte) => byte === 5));
  assert.equal(
    heap.stats().layers!.pageFrames,
    2,
    "the 4-frame run kept 1 frame, the 1-frame run its own",
  );
  heap.check();
  heap.freePages(pages);
  heap.free(page);
  heap.free(object);
  heap.check();
});
