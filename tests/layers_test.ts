/**
 * The page-frame and slab layers behind PhysicalAllocator: routing, the page
 * goal, slab caches, reserves, realloc across layers and a model run that
 * mixes every layer.
 */
import assert from "node:assert/strict";
import { mapIdentity, PhysicalAllocator } from "../mod.ts";
import { runModel } from "./support/conformance.ts";
import { HeapModel } from "./support/heap_model.ts";
import { Random } from "./support/random.ts";

const MIB = 1 << 20;

function heapOf(bytes: number, options = {}) {
  const window = new Uint8Array(bytes);
  return { heap: PhysicalAllocator.fromBuffer(window, options), window };
}

Deno.test("PhysicalAllocator routes small, page and other requests to slabs, frames and blocks", () => {
  const { heap } = heapOf(8 * MIB);
  assert.ok(heap.layersActive);
  const small = heap.alloc(100);
  assert.equal(heap.capacityOf(small), 104, "kmalloc-104");
  const page = heap.alloc(4096, 4096);
  assert.equal(page % 4096, 0);
  const run = heap.alloc(3 * 4096, 4096);
  assert.equal(heap.sizeOf(run), 3 * 4096);
  // Page-sized but not page-aligned: a block (16 bytes of header, not up to a frame of rounding).
  const unaligned = heap.alloc(2 * 4096);
  const block = heap.alloc(300);
  const aligned = heap.alloc(24, 16);
  assert.equal(aligned % 16, 0);
  assert.equal(heap.capacityOf(aligned), 32, "the 24-byte class is only 8-aligned");
  const bigAlign = heap.alloc(24, 8192);
  assert.equal(bigAlign % 8192, 0);
  const s = heap.stats();
  assert.equal(s.layers!.pageFrames, 4);
  assert.equal(s.usedBlocks, 7);
  assert.equal(s.usedBytes, 100 + 4096 + 3 * 4096 + 2 * 4096 + 300 + 24 + 24);
  assert.equal(
    s.blocks.usedBytes,
    2 * 4096 + 300 + 24,
    "the unaligned page-sized request, the block and the 8192-aligned request",
  );
  heap.check();
  for (const address of [small, page, run, unaligned, block, aligned, bigAlign]) heap.free(address);
  heap.check();
  heap.trim(); // the layers keep reserves until trimmed
  assert.equal(heap.stats().freeBlocks, 1);
  assert.equal(
    heap.stats().layers!.chunks,
    0,
    "nothing lives in the layers: every chunk went back",
  );
});

Deno.test("PhysicalAllocator gives slab objects no header: consecutive objects abut", () => {
  const { heap } = heapOf(4 * MIB);
  const a = heap.alloc(16);
  const b = heap.alloc(16);
  const c = heap.alloc(13);
  assert.equal(b - a, 16);
  assert.equal(c - b, 16);
  assert.equal(heap.sizeOf(c), 13);
  assert.equal(heap.bytes(c).length, 13);
  assert.throws(() => heap.bytes(c, 14), { code: "INVALID_SIZE" });
  heap.free(b);
  assert.equal(heap.alloc(9), b, "the freed object is handed out first");
});

Deno.test("PhysicalAllocator meets the page goal: N pages from N x 4 KiB + 1% + 64 KiB", () => {
  for (const pages of [300, 1000, 16384]) {
    const bytes = pages * 4096 + Math.ceil(pages * 4096 / 100) + 65536;
    const { heap } = heapOf(Math.ceil(bytes / 8) * 8);
    const before = heap.stats();
    const addresses: number[] = [];
    for (let i = 0; i < pages; i++) addresses.push(heap.alloc(4096, 4096));
    assert.equal(new Set(addresses).size, pages);
    for (const address of addresses) assert.equal(address % 4096, 0);
    heap.check();
    for (const address of addresses) heap.free(address);
    heap.check();
    heap.trim(); // the frames keep one free chunk in reserve until trimmed
    assert.equal(heap.stats().freeBytes, before.freeBytes, `${pages} pages`);
    assert.deepEqual(heap.stats(), before);
  }
});

Deno.test("PhysicalAllocator.allocPages() remembers the order and frees the whole run", () => {
  const { heap } = heapOf(16 * MIB);
  const runs = Array.from({ length: 11 }, (_, order) => heap.allocPages(order));
  runs.forEach((address, order) => assert.equal(heap.sizeOf(address), 4096 << order));
  heap.check();
  assert.throws(() => heap.allocPages(11), { code: "INVALID_SIZE" });
  assert.throws(() => heap.allocPages(-1), { code: "INVALID_SIZE" });
  assert.throws(() => heap.freePages(runs[3] + 4096), { code: "INVALID_FREE" });
  runs.forEach((address) => heap.freePages(address));
  heap.check();
  assert.equal(heap.stats().usedBlocks, 0);
});

Deno.test("PhysicalAllocator.createCache() carves objects and reports slabinfo", () => {
  const { heap } = heapOf(4 * MIB);
  const cache = heap.createCache("task_struct", 1000, { align: 64 });
  assert.equal(cache.objectBytes, 1024);
  const objects = Array.from({ length: 10 }, () => cache.alloc());
  for (const address of objects) assert.equal(address % 64, 0);
  const info = cache.info();
  assert.equal(info.activeObjects, 10);
  assert.equal(info.objectBytes, 1024);
  assert.equal(info.objectsPerSlab * info.objectBytes <= info.pagesPerSlab * 4096, true);
  assert.equal(info.totalObjects, info.slabs * info.objectsPerSlab);
  assert.ok(heap.stats().layers!.slabinfo.some((line) => line.name === "task_struct"));
  heap.check();
  heap.free(objects[0]); // the front door frees cache objects too
  for (const address of objects.slice(1)) cache.free(address);
  assert.equal(cache.info().activeObjects, 0);
  heap.check();
});

Deno.test("A slab cache gives empty slabs beyond one back to the buddy allocator", () => {
  const { heap } = heapOf(8 * MIB);
  const keep = heap.alloc(4096, 4096); // something lives, so reserves are kept
  const objects = Array.from({ length: 64 * 5 }, () => heap.alloc(64));
  const kmalloc64 = () => heap.stats().layers!.slabinfo.find((line) => line.name === "kmalloc-64")!;
  assert.equal(kmalloc64().slabs, 5);
  const freeFramesBefore = heap.stats().layers!.freeFrames;
  for (const address of objects) heap.free(address);
  assert.equal(kmalloc64().slabs, 1, "one empty slab kept as a reserve");
  assert.equal(kmalloc64().activeSlabs, 0);
  assert.equal(heap.stats().layers!.freeFrames, freeFramesBefore + 4);
  heap.check();
  heap.free(keep);
  assert.ok(heap.stats().layers!.chunks <= 1, "one free chunk kept in reserve");
  heap.trim();
  assert.equal(heap.stats().layers!.chunks, 0);
});

Deno.test("PhysicalAllocator.realloc() moves payloads across layers", () => {
  const { heap } = heapOf(8 * MIB);
  let address = heap.alloc(20);
  heap.bytes(address).forEach((_, i, view) => (view[i] = i + 1));
  const expected = Array.from({ length: 20 }, (_, i) => i + 1);
  assert.equal(heap.realloc(address, 23), address, "same class: in place");
  assert.equal(heap.sizeOf(address), 23);
  for (const size of [4096, 300, 100, 8192, 24]) {
    address = heap.realloc(address, size);
    assert.deepEqual([...heap.bytes(address, 20)], expected, `after realloc to ${size}`);
    assert.equal(heap.sizeOf(address), size);
    heap.check();
  }
  heap.free(address);
  assert.equal(heap.stats().usedBytes, 0);
});

Deno.test("PhysicalAllocator with layers: false is the block allocator alone", () => {
  const { heap } = heapOf(8 * MIB, { layers: false });
  assert.equal(heap.layersActive, false);
  assert.ok(heap.fastPathActive);
  const page = heap.alloc(4096, 4096);
  assert.equal(heap.stats().layers, null);
  assert.equal(heap.capacityOf(page) >= 4096, true);
  assert.equal([...heap.blocks()].filter((b) => !b.free).length, 1);
  assert.throws(() => heap.createCache("x", 64), { code: "INVALID_OPTION" });
  assert.throws(() => heapOf(8 * MIB, { layers: 1 }), { code: "INVALID_OPTION" });
  assert.equal(heapOf(512 * 1024).heap.layersActive, false, "a heap too small for chunks");
});

Deno.test("PhysicalAllocator in debug mode guards slab objects and poisons free ones", () => {
  const { heap, window } = heapOf(8 * MIB, { debug: true });
  assert.ok(heap.layersActive);
  const a = heap.alloc(20);
  const b = heap.alloc(20);
  const classBytes =
    heap.stats().layers!.slabinfo.find((line) =>
      line.activeObjects > 0 && line.name.startsWith("kmalloc-")
    )!.objectBytes;
  assert.ok(classBytes >= 20 + 16, "the class holds the size and the guard");
  assert.equal(heap.capacityOf(a), 20, "debug mode: every byte past the size is guard");
  heap.check();
  // An overflow by one byte lands in the guard: reported at free, nothing changed.
  window[a + 20 - 0x1000] = 0;
  const raw = window.slice();
  assert.throws(() => heap.free(a), { code: "HEAP_CORRUPTION" });
  assert.ok(raw.every((byte, i) => byte === window[i]));
  assert.throws(() => heap.check(), /guard byte was overwritten/);
  window[a + 20 - 0x1000] = 0xfd;
  heap.free(a);
  // A write after free is reported when the object is handed out again.
  window[a + 8 - 0x1000] = 1;
  assert.throws(() => heap.check(), /written after it was freed/);
  assert.throws(() => heap.alloc(20), { code: "HEAP_CORRUPTION" });
  window[a + 8 - 0x1000] = 0xdd;
  assert.equal(heap.alloc(20), a);
  const inodes = heap.createCache("inode", 64);
  assert.equal(inodes.objectBytes, 64);
  const inode = inodes.alloc();
  assert.equal(heap.sizeOf(inode), 64);
  window[inode + 64 - 0x1000] = 7;
  assert.throws(() => inodes.free(inode), { code: "HEAP_CORRUPTION" });
  window[inode + 64 - 0x1000] = 0xfd;
  inodes.free(inode);
  const big = heap.createCache("big", 16384);
  const bigObject = big.alloc();
  assert.equal(big.info().objectsPerSlab, 1, "16 KiB + guard: one object in a slab of 8 frames");
  assert.equal(heap.sizeOf(bigObject), 16384);
  big.free(bigObject);
  heap.free(a);
  heap.free(b);
  heap.check();
});

Deno.test("PhysicalAllocator in debug mode with layers passes the model run", () => {
  runModel({ debug: true }, 20261203, 12_000, 0, 4 * MIB);
});

Deno.test("PhysicalAllocator survives a random run mixing every layer against a model", () => {
  const random = new Random(20261202);
  const bytes = 24 * MIB;
  const { heap } = heapOf(bytes);
  const model = new HeapModel(heap, [{ start: 0x1000, end: 0x1000 + bytes }]);
  for (let step = 0; step < 20_000; step++) {
    const live = [...model.live.keys()];
    const roll = random.next();
    if (roll < 0.55 || live.length === 0) {
      const kind = random.next();
      const [size, align] = kind < 0.6
        ? [random.int(1, 256), 2 ** random.int(0, 4)]
        : kind < 0.8
        ? [4096 * random.int(1, 40), 4096]
        : [random.int(257, 20_000), 2 ** random.int(0, 13)];
      const address = heap.tryAlloc(size, align);
      if (address !== 0) model.added(address, size, Math.max(align, 1), step);
    } else if (roll < 0.9) {
      const address = random.pick(live);
      model.removed(address);
      heap.free(address);
    } else {
      const address = random.pick(live);
      const old = model.live.get(address)!;
      const size = random.next() < 0.5 ? random.int(1, 300) : 4096 * random.int(1, 4);
      let result: number;
      try {
        result = heap.realloc(address, size);
      } catch (error) {
        // The heap fills up as the run goes on: a failed realloc keeps the old allocation intact.
        assert.equal((error as { code?: string }).code, "OUT_OF_MEMORY");
        model.verifyBytes(old, old.sizeBytes);
        continue;
      }
      model.verifyBytes({ ...old, address: result }, Math.min(old.sizeBytes, size));
      model.forget(address);
      model.added(result, size, 8, step);
    }
    if (step % 50 === 0) model.verifyAll();
  }
  model.verifyAll();
  for (const address of [...model.live.keys()]) {
    model.removed(address);
    heap.free(address);
  }
  model.verifyAll();
  heap.trim(); // the layers keep reserves until trimmed
  assert.equal(heap.stats().freeBlocks, 1);
});

Deno.test("PhysicalAllocator layers serve an identity-mapped window larger than 2 GiB", () => {
  const GIB = 2 ** 30;
  // Two regions 4 GiB apart at 72 GiB: the window spans 4 GiB, the layers use its first 2 GiB.
  using memory = mapIdentity([
    { start: 72 * GIB, length: 8 * MIB },
    { start: 76 * GIB, length: 8 * MIB },
  ]);
  const heap = new PhysicalAllocator(memory);
  assert.ok(heap.layersActive);
  const small = Array.from({ length: 1000 }, (_, i) => heap.alloc(16 + (i % 100)));
  const pages = Array.from({ length: 100 }, () => heap.alloc(4096, 4096));
  for (const page of pages) assert.equal(page % 4096, 0);
  assert.ok(heap.stats().layers!.chunks > 0);
  for (const address of [...small, ...pages]) {
    assert.ok(address >= 72 * GIB && address < 72 * GIB + 8 * MIB, "chunks lie in the first 2 GiB");
  }
  heap.check();
  for (const address of [...small, ...pages]) heap.free(address);
  heap.check();
  heap.trim();
  assert.equal(heap.stats().layers!.chunks, 0);
});

/** Fills the block heap's largest free block but `leaveBytes` with one block (never a page run). */
function fillLargest(heap: PhysicalAllocator, leaveBytes: number): number {
  let size = heap.stats().largestFreeBytes - leaveBytes;
  if (size % 4096 === 0) size -= 8; // a multiple of 4096 would be a page run
  return heap.alloc(size);
}

Deno.test("PhysicalAllocator gives reserves back for a block only when that surely serves it", () => {
  const { heap } = heapOf(2 * MIB);
  const low = heap.alloc(600_000);
  heap.free(heap.alloc(32)); // a chunk with an empty kmalloc-32 slab: both kept in reserve
  assert.equal(heap.stats().layers!.chunks, 1);
  fillLargest(heap, 0);
  heap.free(low); // 600 KB free below the reserved chunk
  heap.check();
  // 600 KB + the chunk (about 66 KB) cannot hold 1 MB: the reserves stay, nothing changes.
  const before = JSON.stringify(heap.stats());
  assert.throws(() => heap.alloc(1_000_000), { code: "OUT_OF_MEMORY" });
  assert.equal(JSON.stringify(heap.stats()), before, "a failed alloc changes nothing");
  assert.equal(heap.tryAlloc(1_000_000), 0);
  assert.equal(JSON.stringify(heap.stats()), before, "a failed tryAlloc changes nothing");
  heap.check();
  // They can hold 620 KB: the reserves go back and the allocation succeeds.
  const served = heap.alloc(620_000);
  assert.equal(heap.stats().layers!.chunks, 0, "the reserved chunk went back to the blocks");
  assert.equal(heap.sizeOf(served), 620_000);
  heap.check();
});

Deno.test("The frames take back the caches' empty slabs before they grow the footprint", () => {
  const { heap } = heapOf(8 * MIB);
  const a = heap.alloc(32); // the first chunk, with a kmalloc-32 slab of 1 frame
  const pages: number[] = [];
  while (heap.stats().layers!.freeFrames > 0) pages.push(heap.allocPages(0));
  heap.free(a); // kmalloc-32 keeps its empty slab: the only free frame
  const before = heap.stats().layers!;
  assert.equal(before.freeFrames, 0);
  pages.push(heap.allocPages(0)); // served by the reserve's frame, not by a new or grown chunk
  const after = heap.stats().layers!;
  assert.equal(after.totalFrames, before.totalFrames, "the frames did not grow");
  const kmalloc32 = after.slabinfo.find((line) => line.name === "kmalloc-32");
  assert.equal(kmalloc32?.slabs ?? 0, 0, "kmalloc-32 gave its empty slab back");
  // A run larger than every kept empty slab leaves them be: the frames grow instead.
  const b = heap.alloc(32); // a new kmalloc-32 slab (the frames grow for it)
  while (heap.stats().layers!.freeFrames > 0) pages.push(heap.allocPages(0));
  heap.free(b);
  const kept = heap.stats().layers!;
  pages.push(heap.allocPages(2));
  assert.ok(heap.stats().layers!.totalFrames > kept.totalFrames, "the frames grew for 4 frames");
  assert.equal(
    heap.stats().layers!.slabinfo.find((line) => line.name === "kmalloc-32")?.slabs,
    1,
    "kmalloc-32 kept its empty slab",
  );
  for (const page of pages) heap.freePages(page);
  heap.check();
});

Deno.test("A cache alloc takes other caches' empty slabs only when that surely serves it", () => {
  const { heap } = heapOf(2 * MIB);
  const big = heap.createCache("big", 16384); // slabs of 4 frames
  const small = heap.createCache("small", 64); // slabs of 1 frame
  const a = heap.alloc(32); // the first chunk, with a kmalloc-32 slab of 1 frame
  const pages: number[] = [];
  while (heap.stats().layers!.freeFrames > 0) pages.push(heap.allocPages(0));
  fillLargest(heap, 2048); // room for a descriptor, none for a chunk
  heap.free(a); // kmalloc-32 keeps its empty slab of 1 frame
  heap.check();
  const before = JSON.stringify(heap.stats());
  assert.throws(() => big.alloc(), { code: "OUT_OF_MEMORY" }, "1 free frame cannot hold 4");
  assert.equal(JSON.stringify(heap.stats()), before, "a failed cache alloc changes nothing");
  heap.check();
  const object = small.alloc(); // the kmalloc-32 reserve slab's frame serves it
  assert.equal(heap.sizeOf(object), 64);
  const kmalloc32 = heap.stats().layers!.slabinfo.find((line) => line.name === "kmalloc-32");
  assert.equal(kmalloc32?.slabs ?? 0, 0, "kmalloc-32 gave its empty slab up");
  small.free(object);
  for (const page of pages) heap.freePages(page);
  heap.check();
});

Deno.test("PhysicalAllocator.destroyCache() refuses a cache with live objects, changing nothing", () => {
  const { heap } = heapOf(4 * MIB);
  const inodes = heap.createCache("inode", 200);
  const objects = [inodes.alloc(), inodes.alloc(), inodes.alloc()];
  const before = JSON.stringify(heap.stats());
  assert.throws(() => heap.destroyCache(inodes), (error: Error & { code: string }) => {
    assert.equal(error.code, "CACHE_IN_USE");
    assert.match(error.message, /^Cannot destroy cache inode: 3 of its objects are live$/);
    return true;
  });
  assert.equal(JSON.stringify(heap.stats()), before);
  assert.equal(inodes.info().activeObjects, 3, "the cache still works");
  for (const address of objects) inodes.free(address);
  heap.check();
});

Deno.test("PhysicalAllocator.destroyCache() gives the slabs back and refuses later use", () => {
  const { heap } = heapOf(4 * MIB);
  const fresh = JSON.stringify(heap.stats());
  const keep = heap.alloc(64); // something lives elsewhere in the layers
  const dentries = heap.createCache("dentry", 192);
  const objects = Array.from({ length: 100 }, () => dentries.alloc());
  const slabFrames = heap.stats().layers!.slabFrames;
  const { slabs, pagesPerSlab } = dentries.info();
  assert.ok(slabs >= 2);
  for (const address of objects) dentries.free(address);
  assert.equal(dentries.info().slabs, 1, "one empty slab kept as a reserve");
  heap.destroyCache(dentries);
  const layers = heap.stats().layers!;
  assert.equal(layers.slabFrames, slabFrames - slabs * pagesPerSlab, "every slab went back");
  assert.ok(!layers.slabinfo.some((line) => line.name === "dentry"), "gone from slabinfo");
  heap.check();
  for (
    const [what, call] of [
      ["alloc", () => dentries.alloc()],
      ["free", () => dentries.free(objects[0])],
      ["info", () => dentries.info()],
      ["destroyCache", () => heap.destroyCache(dentries)],
    ] as const
  ) {
    assert.throws(call, (error: Error & { code: string }) => {
      assert.equal(error.code, "CACHE_DESTROYED", what);
      assert.match(error.message, /cache dentry: it was destroyed/);
      return true;
    });
  }
  // The name and the id serve a new cache, with a new free-link key.
  const again = heap.createCache("dentry", 96);
  const object = again.alloc();
  assert.equal(heap.sizeOf(object), 96);
  again.free(object);
  heap.destroyCache(again);
  heap.free(keep);
  heap.trim();
  assert.equal(JSON.stringify(heap.stats()), fresh, "trim() restores the fresh heap");
  heap.check();
});

Deno.test("PhysicalAllocator.destroyCache() refuses what is not its own cache", () => {
  const { heap } = heapOf(4 * MIB);
  const { heap: other } = heapOf(4 * MIB);
  const foreign = other.createCache("inode", 200);
  for (const value of [foreign, null, 7, { name: "inode", objectBytes: 200 }]) {
    assert.throws(
      () => heap.destroyCache(value as never),
      { code: "INVALID_OPTION" },
      String(value),
    );
  }
  assert.equal(foreign.info().slabs, 0, "the other heap's cache is untouched");
});

Deno.test("PhysicalAllocator serves a large request from free frames that hold it already", () => {
  const { heap } = heapOf(8 * MIB);
  heap.freePages(heap.allocPages(6)); // 64 free frames stay in the layers
  const before = heap.stats();
  const large = heap.alloc(100_000); // 25 frames from the free order-6 block
  assert.equal(heap.sizeOf(large), 100_000);
  assert.equal(heap.capacityOf(large), 25 * 4096);
  assert.equal(heap.bytes(large).length, 100_000);
  const s = heap.stats();
  assert.equal(s.layers!.pageFrames, 25);
  assert.equal(s.usedBytes, before.usedBytes + 100_000, "the request, not its frames");
  assert.equal(s.totalBytes, s.freeBytes + s.usedBytes + s.overheadBytes + s.skippedBytes);
  heap.check();
  // No free block of 64 frames is left: a 200 KB request goes to the blocks.
  const block = heap.alloc(200_000);
  assert.equal(heap.stats().layers!.pageFrames, 25);
  assert.equal(heap.stats().blocks.usedBytes, before.blocks.usedBytes + 200_000);
  const moved = heap.realloc(large, 120_000);
  assert.equal(heap.sizeOf(moved), 120_000);
  heap.free(moved);
  heap.free(block);
  heap.check();
  heap.trim();
  assert.equal(heap.stats().layers!.chunks, 0);
});

Deno.test("The caches keep at most 4 empty slabs in all, the one just emptied among them", () => {
  const { heap } = heapOf(8 * MIB);
  const keep = heap.alloc(4096, 4096);
  const sizes = [8, 16, 24, 32, 40, 48];
  const objects = sizes.map((size) => heap.alloc(size));
  const emptySlabs = () =>
    heap.stats().layers!.slabinfo.reduce((sum, line) => sum + line.slabs - line.activeSlabs, 0);
  objects.forEach((address, i) => {
    heap.free(address);
    assert.equal(emptySlabs(), Math.min(i + 1, 4), `after freeing the ${sizes[i]}-byte object`);
    const line = heap.stats().layers!.slabinfo.find((l) => l.name === `kmalloc-${sizes[i]}`)!;
    assert.equal(line.slabs, 1, "the cache just emptied keeps its slab");
  });
  heap.check();
  heap.free(keep);
  heap.trim();
  assert.equal(heap.stats().layers!.chunks, 0);
});

Deno.test("The reserve widens for a loop over more classes than it holds, and narrows after", () => {
  const { heap } = heapOf(8 * MIB);
  const keep = heap.alloc(4096, 4096);
  const sizes = [8, 16, 24, 32, 40, 48, 56, 64];
  const emptySlabs = () =>
    heap.stats().layers!.slabinfo.reduce((sum, line) => sum + line.slabs - line.activeSlabs, 0);
  // Each turn empties a slab: with 4 kept in all, every turn would give one
  // back that a later turn makes again. Each slab made again widens the reserve.
  for (let turn = 0; turn < 4 * sizes.length; turn++) {
    heap.free(heap.alloc(sizes[turn % sizes.length]));
  }
  assert.equal(emptySlabs(), sizes.length, "every class of the loop keeps its empty slab");
  const framesInLoop = heap.stats().layers!.totalFrames - heap.stats().layers!.freeFrames;
  for (let turn = 0; turn < 2 * sizes.length; turn++) {
    heap.free(heap.alloc(sizes[turn % sizes.length]));
  }
  assert.equal(
    heap.stats().layers!.totalFrames - heap.stats().layers!.freeFrames,
    framesInLoop,
    "the loop makes no slab once widened",
  );
  // A loop on one class empties its slab at every turn and makes none: the
  // widening (at most 16) narrows, one slab per 64 slabs emptied, back to 4 in all.
  for (let turn = 0; turn < 65 * 16; turn++) heap.free(heap.alloc(8));
  // A class the reserve never gave a slab of (a class it did would widen it again).
  heap.free(heap.alloc(72));
  assert.equal(emptySlabs(), 4);
  heap.check();
  heap.free(keep);
  heap.trim();
  assert.equal(heap.stats().layers!.chunks, 0);
});

Deno.test("Every size and alignment keeps its size exactly, in debug mode too (slack bytes hold up to 255)", () => {
  for (const debug of [false, true]) {
    using heap = PhysicalAllocator.fromBuffer(new Uint8Array(8 << 20), { debug });
    for (let size = 200; size <= 520; size += 7) {
      for (const align of [8, 16, 64, 128, 256, 512, 4096]) {
        // Twenty of each: a mid class serves slab objects once a slab's worth was asked for.
        for (let copy = 0; copy < 20; copy++) {
          const address = heap.alloc(size, align);
          assert.equal(address % align, 0);
          assert.equal(heap.sizeOf(address), size, `debug ${debug}: alloc(${size}, ${align})`);
        }
      }
    }
    heap.check();
  }
});

Deno.test("freePages frees what allocPages returned as a block (no layers), and refuses a block that is not whole pages", () => {
  for (const shared of [false, true]) {
    const memory = shared ? new SharedArrayBuffer(2 << 20) : new ArrayBuffer(2 << 20);
    using heap = PhysicalAllocator.fromBuffer(memory, { layers: false });
    for (const order of [0, 1, 3]) {
      const pages = heap.allocPages(order);
      assert.equal(pages % 4096, 0);
      assert.equal(heap.sizeOf(pages), 4096 << order);
      heap.freePages(pages);
      assert.throws(() => heap.freePages(pages), { code: "DOUBLE_FREE" }, `shared ${shared}`);
    }
    const block = heap.alloc(5000, 4096);
    const before = heap.stats();
    assert.throws(() => heap.freePages(block), { code: "INVALID_FREE" }, `shared ${shared}`);
    assert.deepEqual(heap.stats(), before, "the refused call changed nothing");
    heap.free(block);
    heap.check();
  }
});
