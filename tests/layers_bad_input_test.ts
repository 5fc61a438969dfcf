/**
 * Bad input to the page-frame and slab layers: every case asserts the error
 * class, its code, a message naming the address, and that the heap — stats,
 * blocks, live payloads and the raw window — is byte-for-byte unchanged.
 */
import assert from "node:assert/strict";
import { PhysicalAllocator } from "../mod.ts";
import { snapshot } from "./support/conformance.ts";

const BASE = 0x1000;

function fixture() {
  const window = new Uint8Array(8 << 20);
  const heap = PhysicalAllocator.fromBuffer(window, { baseAddress: BASE });
  const objects = Array.from({ length: 8 }, () => heap.alloc(48));
  const freedObject = objects.pop()!;
  heap.free(freedObject);
  const pages = [heap.alloc(4096, 4096), heap.alloc(3 * 4096, 4096)];
  const freedPage = heap.alloc(4096, 4096);
  const block = heap.alloc(1000);
  const cache = heap.createCache("dentry", 192);
  const dentries = [cache.alloc(), cache.alloc()];
  // Freed last: a slab made after it could take its frame (a free of that address would then be valid).
  heap.free(freedPage);
  const otherCache = heap.createCache("inode", 192);
  const live = [...objects, ...pages, block, ...dentries];
  live.forEach((address, i) => heap.bytes(address).fill(i + 1));
  return {
    window,
    heap,
    objects,
    freedObject,
    pages,
    freedPage,
    block,
    cache,
    otherCache,
    dentries,
    live,
  };
}

type Fixture = ReturnType<typeof fixture>;

/** A slab descriptor: a small used block that no alloc handed out. */
function descriptorOf(f: Fixture): number {
  const users = new Set(f.live);
  const internal = [...f.heap.blocks()].find((b) =>
    !b.free && b.sizeBytes < 1000 && !users.has(b.address + 16)
  );
  assert.ok(internal !== undefined, "the fixture has a slab descriptor block");
  return internal.address + 16;
}

const cases: [string, string, (f: Fixture) => void][] = [
  ["double free of a slab object", "DOUBLE_FREE", (f) => f.heap.free(f.freedObject)],
  ["free inside a slab object", "INVALID_FREE", (f) => f.heap.free(f.objects[0] + 8)],
  ["free at an odd address in a slab", "INVALID_FREE", (f) => f.heap.free(f.objects[0] + 3)],
  [
    "free of a slab object never handed out",
    "INVALID_FREE",
    (f) => f.heap.free(f.objects[0] + 48 * 20),
  ],
  ["free of half an address in a slab", "INVALID_FREE", (f) => f.heap.free(f.objects[1] + 0.5)],
  ["double free of a page", "DOUBLE_FREE", (f) => f.heap.free(f.freedPage)],
  ["free inside a page run", "INVALID_FREE", (f) => f.heap.free(f.pages[1] + 4096)],
  ["free inside a page", "INVALID_FREE", (f) => f.heap.free(f.pages[0] + 64)],
  ["freePages of a slab object", "INVALID_FREE", (f) => f.heap.freePages(f.objects[0] + 8)],
  [
    "free of a cache object to the wrong cache",
    "INVALID_FREE",
    (f) => f.otherCache.free(f.dentries[0]),
  ],
  ["free of a kmalloc object to a cache", "INVALID_FREE", (f) => f.cache.free(f.objects[0])],
  ["free of a page to a cache", "INVALID_FREE", (f) => f.cache.free(f.pages[0])],
  ["free of a block to a cache", "INVALID_FREE", (f) => f.cache.free(f.block)],
  ["realloc of a freed slab object", "DOUBLE_FREE", (f) => f.heap.realloc(f.freedObject, 10)],
  ["realloc inside a page run", "INVALID_FREE", (f) => f.heap.realloc(f.pages[1] + 4096, 10)],
  ["realloc of a slab object to size 0", "INVALID_SIZE", (f) => f.heap.realloc(f.objects[0], 0)],
  ["bytes of a freed slab object", "INVALID_ADDRESS", (f) => f.heap.bytes(f.freedObject)],
  ["sizeOf inside a page run", "INVALID_ADDRESS", (f) => f.heap.sizeOf(f.pages[1] + 8)],
  ["bytes past a slab object's size", "INVALID_SIZE", (f) => f.heap.bytes(f.objects[0], 49)],
  ["createCache of 0 bytes", "INVALID_SIZE", (f) => f.heap.createCache("zero", 0)],
  ["createCache of 64 KiB objects", "INVALID_SIZE", (f) => f.heap.createCache("huge", 65536)],
  ["createCache of 16 KiB + 1 bytes", "INVALID_SIZE", (f) => f.heap.createCache("big", 16385)],
  [
    "createCache aligned to 3",
    "INVALID_ALIGNMENT",
    (f) => f.heap.createCache("odd", 8, { align: 3 }),
  ],
  [
    "createCache without a name",
    "INVALID_OPTION",
    (f) => f.heap.createCache(7 as unknown as string, 8),
  ],
  ["free of a Symbol", "INVALID_FREE", (f) => f.heap.free(Symbol("x") as unknown as number)],
  [
    "free of a bigint in a slab",
    "INVALID_FREE",
    (f) => f.heap.free(BigInt(f.objects[0]) as unknown as number),
  ],
  // Found by the adversarial review: the layers' own metadata lives in blocks of the block heap.
  ["free of a slab descriptor", "INVALID_FREE", (f) => f.heap.free(descriptorOf(f))],
  ["realloc of a slab descriptor", "INVALID_FREE", (f) => f.heap.realloc(descriptorOf(f), 8)],
  ["bytes of a slab descriptor", "INVALID_ADDRESS", (f) => f.heap.bytes(descriptorOf(f))],
  ["sizeOf of a slab descriptor", "INVALID_ADDRESS", (f) => f.heap.sizeOf(descriptorOf(f))],
  ["capacityOf of a slab descriptor", "INVALID_ADDRESS", (f) => f.heap.capacityOf(descriptorOf(f))],
  [
    "freePages of a slab object on a page boundary",
    "INVALID_FREE",
    (f) => f.heap.freePages(f.objects.find((a) => a % 4096 === 0)!),
  ],
  ["freePages of a block", "INVALID_FREE", (f) => f.heap.freePages(f.block - (f.block % 4096))],
  [
    "a cache named like a kmalloc class",
    "INVALID_OPTION",
    (f) => f.heap.createCache("kmalloc-64", 8),
  ],
  ["a second cache of a taken name", "INVALID_OPTION", (f) => f.heap.createCache("dentry", 8)],
  [
    "cache options that are not an object",
    "INVALID_OPTION",
    (f) => f.heap.createCache("x", 8, null as unknown as { align: number }),
  ],
  [
    "free of an object without a primitive value",
    "INVALID_FREE",
    (f) => f.heap.free(Object.create(null)),
  ],
];

for (const [name, code, call] of cases) {
  Deno.test(`Layers reject ${name} with ${code}, changing nothing`, () => {
    const f = fixture();
    const before = snapshot(f.heap, f.live);
    const raw = f.window.slice();
    assert.throws(() => call(f), (error: Error & { code: string }) => {
      assert.equal(error.code, code, error.message);
      assert.match(error.message, /^Cannot /);
      return true;
    });
    assert.deepEqual(snapshot(f.heap, f.live), before);
    assert.ok(raw.every((byte, i) => byte === f.window[i]), "raw memory changed");
    f.heap.check();
  });
}

Deno.test("Layers reject a free in a chunk's frame table", () => {
  const f = fixture();
  // Each chunk's table follows its frames.
  const table = [...f.heap.layerRuns()].find((run) => run.kind === "table")!;
  const raw = f.window.slice();
  assert.throws(() => f.heap.free(table.address + 16), /page-frame table/);
  assert.ok(raw.every((byte, i) => byte === f.window[i]));
});

Deno.test("Layers detect a forged slab free link before following it", () => {
  const f = fixture();
  // The freed object heads its slab's free list; overwrite its link word as a use-after-free would.
  const offset = f.freedObject - BASE;
  new DataView(f.window.buffer).setInt32(offset, 0x41414141, true);
  const before = snapshot(f.heap, f.live);
  const raw = f.window.slice();
  assert.throws(() => f.heap.alloc(48), (error: Error & { code: string; address: number }) => {
    assert.equal(error.code, "HEAP_CORRUPTION");
    assert.equal(error.address, f.freedObject);
    assert.match(error.message, /free link of a kmalloc-48 object was overwritten/);
    return true;
  });
  assert.deepEqual(snapshot(f.heap, f.live), before);
  assert.ok(raw.every((byte, i) => byte === f.window[i]));
  assert.throws(() => f.heap.check(), { code: "HEAP_CORRUPTION" });
});

for (const fastPath of [true, false]) {
  Deno.test(`Layers refuse a forged link of an empty slab and keep it empty (fastPath: ${fastPath})`, () => {
    const window = new Uint8Array(8 << 20);
    const heap = PhysicalAllocator.fromBuffer(window, { baseAddress: BASE, fastPath });
    const live = [heap.alloc(48), heap.alloc(1000)];
    live.forEach((address, i) => heap.bytes(address).fill(i + 1));
    // A kmalloc-64 slab emptied again: the class's only slab, kept on its empty list.
    const objects = Array.from({ length: 5 }, () => heap.alloc(64));
    for (const address of objects) heap.free(address);
    const info = () => heap.stats().layers!.slabinfo.find((c) => c.name === "kmalloc-64")!;
    assert.equal(info().slabs, 1, "the emptied slab is kept");
    // The last freed object heads the free list: a use-after-free overwrites its link.
    new DataView(window.buffer).setInt32(objects[4] - BASE, 0x41414141, true);
    const before = snapshot(heap, live);
    const slabinfo = info();
    const raw = window.slice();
    assert.throws(() => heap.alloc(64), { code: "HEAP_CORRUPTION" });
    // The slab did not move to the partial list on the way to the throw.
    assert.deepEqual(info(), slabinfo);
    assert.deepEqual(snapshot(heap, live), before);
    assert.ok(raw.every((byte, i) => byte === window[i]), "the refused alloc wrote bytes");
  });
}

Deno.test("Layers detect a forged link that names a live object", () => {
  const f = fixture();
  // A link that decodes to a live object's index must be refused too: write
  // the encoding of index 0 (live) by copying a genuine link from another heap state.
  const offset = f.freedObject - BASE;
  const view = new DataView(f.window.buffer);
  const genuine = view.getInt32(offset, true);
  // The genuine link decodes to NONE (-1); flipping bits makes it decode to 0 (-1 ^ -1 = 0).
  view.setInt32(offset, genuine ^ -1, true);
  assert.throws(() => f.heap.alloc(48), { code: "HEAP_CORRUPTION" });
});

Deno.test("Layers keep debug-mode cache objects aligned to the cache's alignment", () => {
  using heap = PhysicalAllocator.fromBuffer(new Uint8Array(4 << 20), { debug: true });
  for (const [objectBytes, align] of [[40, 32], [40, 64], [100, 128], [200, 256], [4000, 4096]]) {
    const cache = heap.createCache(`aligned-${align}`, objectBytes, { align });
    const objects = [cache.alloc(), cache.alloc(), cache.alloc()];
    assert.deepEqual(objects.map((address) => address % align), [0, 0, 0], `align ${align}`);
    for (const address of objects) {
      heap.bytes(address).fill(0x5a);
      cache.free(address);
    }
  }
  heap.check();
});

Deno.test("PhysicalAllocator.capacityOf() in debug mode is the size asked for: the rest is guard", () => {
  using heap = PhysicalAllocator.fromBuffer(new Uint8Array(4 << 20), { debug: true });
  for (const sizeBytes of [1, 100, 300, 5000]) {
    const address = heap.alloc(sizeBytes);
    assert.equal(heap.capacityOf(address), sizeBytes);
    heap.bytes(address, heap.capacityOf(address)).fill(0x5a);
    heap.free(address);
  }
  heap.check();
});
