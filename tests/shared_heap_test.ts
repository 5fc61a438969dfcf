/**
 * Shared heaps across Workers: random operations with cross-Worker frees and
 * reallocs, every payload filled with its owner's pattern and verified at
 * free, then a model check and `check()` once every Worker has joined; and
 * the single-thread properties of shared mode (same addresses, same books,
 * slots, counters in the shared header).
 */
import assert from "node:assert/strict";
import { HeapDetachedError, PhysicalAllocator } from "../mod.ts";
import { modelCheck, runSharedWorkers } from "../tools/shared/run.ts";
import {
  f64At,
  headerViews,
  SH_COUNTERS,
  sharedHeaderBytes,
} from "../allocator/shared/shared_header.ts";
import { Random } from "./support/random.ts";
import { classOf, refillBlocks } from "../allocator/shared/worker_cache.ts";

Deno.test("shared heap: 3 Workers with cross-Worker frees and reallocs leave a heap the model proves", async () => {
  const run = await runSharedWorkers({
    workers: 3,
    operations: 6000,
    seed: 12,
    workload: "mixed",
    fill: true,
    heapBytes: 8 << 20,
  });
  try {
    const received = run.results.reduce((sum, result) => sum + result.received, 0);
    const reallocs = run.results.reduce((sum, result) => sum + result.reallocs, 0);
    assert.ok(received > 100, `only ${received} blocks crossed Workers`);
    assert.ok(reallocs > 100, `only ${reallocs} reallocs`);
    assert.deepEqual(run.results.map((result) => result.slot).sort(), [2, 3, 4]);
    assert.equal(run.heap.layersActive, true, "the page-frame and slab layers serve the Workers");
    assert.equal(run.heap.attachedWorkers, 1, "every Worker detached");
    const report = modelCheck(run);
    assert.equal(report.firstProblem, "");
    assert.equal(report.corrupt, 0);
    assert.equal(report.operations, 18000);
  } finally {
    run.heap.close();
  }
});

Deno.test("shared heap: bounded stress, 4 Workers on small blocks", async () => {
  const run = await runSharedWorkers({
    workers: 4,
    operations: 25_000,
    seed: 99,
    workload: "small",
    fill: true,
    heapBytes: 4 << 20,
    exchangeSlots: 8,
  });
  try {
    assert.equal(run.heap.layersActive, true, "small blocks are kmalloc slab objects");
    const report = modelCheck(run);
    assert.equal(report.firstProblem, "");
    assert.equal(report.corrupt, 0);
    assert.equal(report.operations, 100_000);
  } finally {
    run.heap.close();
  }
});

Deno.test("shared heap: 3 Workers allocating page runs beside objects, freed by any Worker, leave a heap the model proves", async () => {
  const run = await runSharedWorkers({
    workers: 3,
    operations: 1_500,
    seed: 17,
    workload: "pages",
    fill: true,
    heapBytes: 16 << 20,
    exchangeSlots: 8,
  });
  try {
    assert.ok(run.heap.stats().layers!.pageFrames > 0, "page runs are live at the end");
    const report = modelCheck(run);
    assert.equal(report.firstProblem, "");
    assert.equal(report.corrupt, 0);
    assert.equal(report.operations, 4_500);
  } finally {
    run.heap.close();
  }
});

Deno.test("shared heap: 4 Workers refilling and draining slab classes of 4 class locks, beside stats(), check() and trim() on every lock, all finish with every payload intact", async () => {
  let driverCalls = 0;
  const run = await runSharedWorkers({
    workers: 4,
    operations: 40_000,
    seed: 7,
    workload: "refill",
    fill: true,
    heapBytes: 8 << 20,
    // A lock order that could deadlock would stall a Worker: it throws LOCK_TIMEOUT after the
    // heap's default timeout, and the run fails (bounded).
    duringRun: async (heap, running) => {
      while (running()) {
        const stats = heap.stats();
        assert.ok(stats.layers !== null);
        heap.check();
        heap.trim();
        driverCalls++;
        await new Promise((resolve) => setTimeout(resolve, 0));
      }
    },
  });
  try {
    assert.ok(driverCalls > 0, "the driver's calls ran beside the Workers");
    const allocs = run.results.reduce((sum, result) => sum + result.allocs, 0);
    assert.ok(allocs > 4 * 512, `only ${allocs} allocations: the bins did not cycle`);
    const report = modelCheck(run);
    assert.equal(report.firstProblem, "");
    assert.equal(report.corrupt, 0);
    assert.equal(report.operations, 160_000);
  } finally {
    run.heap.close();
  }
});

Deno.test("shared heap: 3 Workers refilling and draining one slab class (one class lock) keep every payload intact", async () => {
  const run = await runSharedWorkers({
    workers: 3,
    operations: 40_000,
    seed: 8,
    workload: "refill-same",
    fill: true,
    heapBytes: 8 << 20,
  });
  try {
    const report = modelCheck(run);
    assert.equal(report.firstProblem, "");
    assert.equal(report.corrupt, 0);
    assert.equal(report.operations, 120_000);
  } finally {
    run.heap.close();
  }
});

Deno.test("shared heap: a large request short of memory gets the layers' reserves (under the heap lock alone it reaches them, and runs again under every lock), as an unshared heap does", () => {
  const served = (heap: PhysicalAllocator) => {
    const small = Array.from({ length: 3000 }, () => heap.alloc(64));
    for (const address of small) heap.free(address);
    assert.ok(heap.stats().layers!.chunks > 0, "the slabs' chunks stay as reserves");
    let count = 0;
    while (heap.tryAlloc(60_000) !== 0) count++;
    assert.equal(heap.stats().layers!.chunks, 0, "every reserve went back to the blocks");
    heap.check();
    return count;
  };
  using shared = PhysicalAllocator.fromBuffer(new SharedArrayBuffer(2 << 20), {
    workerCaches: false,
  });
  using plain = PhysicalAllocator.fromBuffer(new Uint8Array(2 << 20));
  assert.equal(served(shared), served(plain));
});

Deno.test("shared heap: two handles see the same addresses, payloads and books", () => {
  const memory = new SharedArrayBuffer(1 << 18);
  using a = PhysicalAllocator.fromBuffer(memory, { baseAddress: 0x10000 });
  using b = PhysicalAllocator.attach(memory);
  assert.equal(a.workerSlot, 1);
  assert.equal(a.layersActive, false, "a shared heap under 1.2 MiB has the block layer only");
  assert.equal(b.workerSlot, 2);
  assert.equal(a.attachedWorkers, 2);
  assert.equal(b.stats().regions[0].base, 0x10000 + sharedHeaderBytes(16, 1 << 18, false));
  const random = new Random(5);
  const live: number[] = [];
  for (let i = 0; i < 2000; i++) {
    const heap = random.next() < 0.5 ? a : b;
    if (live.length === 0 || random.next() < 0.55) {
      const address = heap.alloc(random.int(1, 300));
      heap.bytes(address).fill(address & 0xff);
      live.push(address);
    } else {
      const at = random.int(0, live.length - 1);
      const other = heap === a ? b : a;
      assert.ok(other.bytes(live[at]).every((byte) => byte === (live[at] & 0xff)));
      heap.free(live[at]);
      live.splice(at, 1);
    }
  }
  assert.deepEqual(a.stats(), b.stats());
  assert.deepEqual([...a.blocks()], [...b.blocks()]);
  a.check();
  b.check();
});

Deno.test("shared heap: the counters live in the shared header", () => {
  const memory = new SharedArrayBuffer(1 << 16);
  using heap = PhysicalAllocator.fromBuffer(memory);
  heap.alloc(100);
  const views = headerViews(memory, 0);
  const at = f64At(views, SH_COUNTERS);
  const stats = heap.stats();
  assert.deepEqual([...views.f64.subarray(at, at + 4)], [
    stats.freeBytes,
    stats.freeBlocks,
    stats.usedBytes,
    stats.usedBlocks,
  ]);
  assert.equal(stats.usedBytes, 100);
});

Deno.test("shared heap: a Uint8Array view at an offset is the window; the bytes around it stay", () => {
  const memory = new SharedArrayBuffer(1 << 16);
  const outside = new Uint8Array(memory);
  outside.fill(0x5a);
  const view = new Uint8Array(memory, 4096, 32768);
  using heap = PhysicalAllocator.fromBuffer(view);
  using other = PhysicalAllocator.attach(view);
  other.free(heap.alloc(1000));
  heap.check();
  assert.ok(outside.subarray(0, 4096).every((byte) => byte === 0x5a));
  assert.ok(outside.subarray(4096 + 32768).every((byte) => byte === 0x5a));
});

Deno.test("shared heap: close() detaches, and a detached slot is reused by the next Worker", () => {
  const memory = new SharedArrayBuffer(1 << 16);
  using heap = PhysicalAllocator.fromBuffer(memory, { workerSlots: 2 });
  const second = PhysicalAllocator.attach(memory);
  assert.equal(second.workerSlot, 2);
  second.close();
  second.close();
  assert.equal(heap.attachedWorkers, 1);
  using third = PhysicalAllocator.attach(memory);
  assert.equal(third.workerSlot, 2);
});

Deno.test("shared heap: reclaimSlot frees the slot of a Worker terminated without detaching", async () => {
  const memory = new SharedArrayBuffer(1 << 16);
  using heap = PhysicalAllocator.fromBuffer(memory, { workerSlots: 2 });
  const worker = new Worker(
    `data:text/javascript,${
      encodeURIComponent(`
      import { PhysicalAllocator } from ${
        JSON.stringify(new URL("../mod.ts", import.meta.url).href)
      };
      self.onmessage = (e) => { const h = PhysicalAllocator.attach(e.data); self.postMessage(h.workerSlot); };
    `)
    }`,
    { type: "module" },
  );
  const slot = await new Promise<number>((resolve) => {
    worker.onmessage = (event) => resolve(event.data);
    worker.postMessage(memory);
  });
  worker.terminate();
  assert.equal(slot, 2);
  assert.throws(() => PhysicalAllocator.attach(memory), { code: "WORKER_SLOT" });
  heap.reclaimSlot(slot);
  using next = PhysicalAllocator.attach(memory);
  assert.equal(next.workerSlot, 2);
});

Deno.test("shared heap: reclaimSlot of a Worker still making calls revokes its handle first, so it never shares the slot's cache", async () => {
  const memory = new SharedArrayBuffer(4 << 20);
  using heap = PhysicalAllocator.fromBuffer(memory, { workerSlots: 3 });
  // A Worker busy in a loop of calls, as terminate() leaves one running in
  // Deno until its next turn of the event loop; it reports how its loop ended.
  const worker = new Worker(
    `data:text/javascript,${
      encodeURIComponent(`
      import { PhysicalAllocator } from ${
        JSON.stringify(new URL("../mod.ts", import.meta.url).href)
      };
      self.onmessage = (e) => {
        const h = PhysicalAllocator.attach(e.data);
        for (let i = 0; i < 10000; i++) h.free(h.alloc(64));
        self.postMessage(h.workerSlot);
        try {
          for (;;) h.free(h.alloc(64));
        } catch (error) {
          self.postMessage(error.code);
        }
      };
    `)
    }`,
    { type: "module" },
  );
  const next = () =>
    new Promise<unknown>((resolve) => {
      worker.onmessage = (event) => resolve(event.data);
    });
  try {
    let message = next();
    worker.postMessage(memory);
    const slot = await message as number;
    message = next();
    heap.reclaimSlot(slot);
    assert.equal(await message, "HEAP_DETACHED", "the revoked Worker's next call was refused");
    heap.check();
    using taker = PhysicalAllocator.attach(memory);
    assert.equal(taker.workerSlot, slot, "the slot went to the next Worker");
    for (let i = 0; i < 1000; i++) taker.free(taker.alloc(64));
    heap.check();
  } finally {
    worker.terminate();
  }
  // A handle whose slot was reclaimed (its Worker thought gone) refuses every call.
  const stale = PhysicalAllocator.attach(memory);
  const object = stale.alloc(32);
  heap.reclaimSlot(stale.workerSlot);
  for (const call of [() => stale.alloc(64), () => stale.free(object), () => stale.detach()]) {
    assert.throws(call, (error: unknown) => error instanceof HeapDetachedError);
  }
  heap.free(object);
  heap.check();
});

Deno.test("shared heap: Worker caches serve a freed small block again and give it back on detach", () => {
  const memory = new SharedArrayBuffer(4 << 20);
  const heap = PhysicalAllocator.fromBuffer(memory);
  using other = PhysicalAllocator.attach(memory);
  const a = heap.alloc(100);
  const before = other.stats();
  heap.free(a);
  // Cached by its freeing Worker: no longer used, counted as overhead, the heap's blocks unchanged.
  const cached = other.stats();
  assert.equal(cached.usedBlocks, before.usedBlocks - 1);
  assert.equal(cached.usedBytes, before.usedBytes - 100);
  assert.equal(cached.freeBlocks, before.freeBlocks);
  assert.equal(cached.overheadBytes, before.overheadBytes + 100);
  assert.equal(other.alloc(100) === a, false, "another Worker's cache is not used");
  assert.equal(heap.alloc(100), a, "the freeing Worker's cache serves the same size");
  assert.equal(heap.alloc(100) === a, false);
  heap.free(a);
  other.check();
  heap.close();
  // heap's cache (a, and the objects its miss took in advance) went back to their slabs:
  // the two live objects and other's bin are all the kmalloc-104 objects still active.
  assert.equal(other.stats().usedBlocks, 2, "the blocks other and heap still hold");
  const line = other.stats().layers!.slabinfo.find((l) => l.name === "kmalloc-104")!;
  assert.equal(line.activeObjects, 2 + refillBlocks(classOf(100)) - 1);
  assert.equal(line.slabs, 2, "each Worker's cache refilled from a slab of its own");
  other.check();
});

Deno.test("shared heap: a Worker's free goes to its own cache, whoever allocated the block", () => {
  const memory = new SharedArrayBuffer(4 << 20);
  using a = PhysicalAllocator.fromBuffer(memory);
  using b = PhysicalAllocator.attach(memory);
  const block = a.alloc(48);
  b.free(block);
  assert.notEqual(a.alloc(48), block);
  assert.equal(b.alloc(48), block);
  b.check();
});

Deno.test("shared heap: reclaimSlot drains the cache of a Worker that ended without detaching", () => {
  const memory = new SharedArrayBuffer(4 << 20);
  using heap = PhysicalAllocator.fromBuffer(memory);
  const lost = PhysicalAllocator.attach(memory);
  const blocks = Array.from({ length: 20 }, (_, i) => lost.alloc(16 + (i % 4)));
  for (const block of blocks) lost.free(block);
  assert.equal(heap.stats().usedBlocks, 0);
  assert.ok(heap.stats().freeBlocks < 2 || heap.stats().overheadBytes > 0);
  heap.reclaimSlot(lost.workerSlot);
  heap.trim(); // the layers' empty slabs and free chunk
  assert.equal(heap.stats().freeBlocks, 1, "every cached block went back and merged");
  heap.check();
});

Deno.test("shared heap: workerCaches false frees straight into the heap", () => {
  const memory = new SharedArrayBuffer(4 << 20);
  using heap = PhysicalAllocator.fromBuffer(memory, { workerCaches: false, layers: false });
  heap.free(heap.alloc(100));
  assert.equal(heap.stats().freeBlocks, 1);
  using debug = PhysicalAllocator.fromBuffer(new SharedArrayBuffer(4 << 20), { debug: true });
  debug.free(debug.alloc(100));
  debug.trim(); // the layers' empty slab and free chunk
  assert.equal(debug.stats().freeBlocks, 1);
  debug.check();
});

Deno.test("shared heap: short of memory, a Worker's own cached blocks go back before the alloc fails", () => {
  const memory = new SharedArrayBuffer(4 << 20);
  using heap = PhysicalAllocator.fromBuffer(memory);
  const whole = heap.stats().largestFreeBytes;
  const live: number[] = [];
  for (let size = 1; size <= 256; size++) {
    for (let i = 0; i < 4; i++) live.push(heap.alloc(size));
  }
  for (const address of live) heap.free(address);
  assert.ok(heap.stats().largestFreeBytes < whole, "cached blocks split the free space");
  const big = heap.alloc(whole);
  assert.equal(heap.stats().usedBlocks, 1);
  heap.free(big);
  heap.check();
  assert.equal(heap.stats().freeBlocks, 1);
});

Deno.test("shared heap: freePages of a run another Worker allocated (a chunk's first frame) frees it", () => {
  for (const workerCaches of [true, false]) {
    for (const order of [0, 3]) {
      const memory = new SharedArrayBuffer(8 << 20);
      using heap = PhysicalAllocator.fromBuffer(memory, { workerCaches });
      using other = PhysicalAllocator.attach(memory);
      // The first run of the heap's first chunk: the chunk's block starts there,
      // so a handle that has not seen the chunk would take the address for a block.
      const run = heap.allocPages(order);
      other.freePages(run);
      assert.throws(() => other.freePages(run), { code: "DOUBLE_FREE" }, `order ${order}`);
      assert.throws(() => heap.freePages(run), { code: "DOUBLE_FREE" }, `order ${order}`);
      other.check();
    }
  }
});
