/**
 * The bad-input catalog of shared mode: attaching to buffers that hold no
 * heap or another format version, detaching twice, using a heap after
 * detach, running out of Worker slots, bad slot ids, shared options the
 * shared mode refuses, and a lock left held by a Worker that stopped. Each
 * asserts the error class, its code, a message naming the value, and that
 * the shared memory is byte-for-byte unchanged.
 */
import assert from "node:assert/strict";
import {
  type AllocatorError,
  DoubleFreeError,
  HeapDetachedError,
  InvalidAddressError,
  InvalidOptionError,
  LockTimeoutError,
  MemoryInUseError,
  PhysicalAllocator,
  SharedHeapInvalidError,
  SharedHeapVersionError,
  WorkerSlotError,
} from "../mod.ts";
import {
  classLockOf,
  headerViews,
  LOCK_BLOCKS,
  lockWordAt,
  SH_VERSION,
  slotTableEnd,
  wordAt,
} from "../allocator/shared/shared_header.ts";
import { KMALLOC_CLASS_BY_STEP } from "../allocator/slab/kmalloc.ts";
import { SLOT_CACHE_BYTES, STATE_CACHED, STATE_SHIFT } from "../allocator/shared/worker_cache.ts";
import { messageQueue } from "../tools/shared/run.ts";
import type { SharedRunJob } from "../tools/shared/protocol.ts";

type ErrorClass = new (...args: never[]) => AllocatorError;

/** Asserts `call` throws `error` with its code and `names` in the message, and `memory` is unchanged. */
function assertRefused(
  memory: SharedArrayBuffer,
  call: () => unknown,
  error: ErrorClass,
  code: string,
  names: string,
): void {
  const before = new Uint8Array(memory).slice();
  assert.throws(call, (thrown: unknown) => {
    assert.ok(thrown instanceof error, `expected ${error.name}, got ${String(thrown)}`);
    assert.equal((thrown as AllocatorError).code, code);
    assert.ok((thrown as Error).message.includes(names), (thrown as Error).message);
    return true;
  });
  assert.deepEqual(new Uint8Array(memory), before, "the shared memory changed");
}

Deno.test("shared bad input: attaching to a buffer with no heap", () => {
  const memory = new SharedArrayBuffer(4096);
  new Uint8Array(memory).fill(0x11);
  assertRefused(
    memory,
    () => PhysicalAllocator.attach(memory),
    SharedHeapInvalidError,
    "SHARED_HEAP_INVALID",
    "0x11111111",
  );
  const tiny = new SharedArrayBuffer(64);
  assertRefused(
    tiny,
    () => PhysicalAllocator.attach(tiny),
    SharedHeapInvalidError,
    "SHARED_HEAP_INVALID",
    "64 bytes",
  );
});

Deno.test("shared bad input: attaching to a non-shared buffer or a value", () => {
  const memory = new SharedArrayBuffer(16);
  for (const value of [new ArrayBuffer(4096), new Uint8Array(4096), 42, null, Symbol("x"), 1n]) {
    assertRefused(
      memory,
      () => PhysicalAllocator.attach(value as unknown as SharedArrayBuffer),
      SharedHeapInvalidError,
      "SHARED_HEAP_INVALID",
      "expected a SharedArrayBuffer",
    );
  }
});

Deno.test("shared bad input: attach with a wrong format version", () => {
  const memory = new SharedArrayBuffer(1 << 16);
  const heap = PhysicalAllocator.fromBuffer(memory);
  heap.detach();
  const views = headerViews(memory, 0);
  views.u32[wordAt(views, SH_VERSION)] = 9;
  assertRefused(
    memory,
    () => PhysicalAllocator.attach(memory),
    SharedHeapVersionError,
    "SHARED_HEAP_VERSION",
    "version 9",
  );
});

Deno.test("shared bad input: attach through a view of another length than the heap's", () => {
  const memory = new SharedArrayBuffer(1 << 16);
  using heap = PhysicalAllocator.fromBuffer(memory);
  heap.alloc(8);
  assertRefused(
    memory,
    () => PhysicalAllocator.attach(new Uint8Array(memory, 0, 1 << 15)),
    SharedHeapInvalidError,
    "SHARED_HEAP_INVALID",
    "32768-byte view",
  );
});

Deno.test("shared bad input: detaching twice, and every call after detach", () => {
  const memory = new SharedArrayBuffer(1 << 16);
  using keeper = PhysicalAllocator.fromBuffer(memory);
  const heap = PhysicalAllocator.attach(memory);
  const address = heap.alloc(64);
  heap.detach();
  assertRefused(memory, () => heap.detach(), HeapDetachedError, "HEAP_DETACHED", "slot 2");
  const calls: [string, () => unknown][] = [
    ["allocate", () => heap.alloc(8)],
    ["allocate", () => heap.tryAlloc(8)],
    ["free", () => heap.free(address)],
    ["reallocate", () => heap.realloc(address, 100)],
    ["view", () => heap.bytes(address)],
    ["size", () => heap.sizeOf(address)],
    ["read stats", () => heap.stats()],
    ["check", () => heap.check()],
    ["walk", () => heap.blocks()],
    ["reclaim slot", () => heap.reclaimSlot(1)],
  ];
  for (const [operation, call] of calls) {
    assertRefused(memory, call, HeapDetachedError, "HEAP_DETACHED", `Cannot ${operation}`);
  }
  keeper.free(address);
  keeper.check();
});

Deno.test("shared bad input: no free Worker slot, and bad slot ids to reclaim", () => {
  const memory = new SharedArrayBuffer(1 << 16);
  using heap = PhysicalAllocator.fromBuffer(memory, { workerSlots: 2 });
  using second = PhysicalAllocator.attach(memory);
  assertRefused(
    memory,
    () => PhysicalAllocator.attach(memory),
    WorkerSlotError,
    "WORKER_SLOT",
    "all 2",
  );
  for (const slot of [0, 1, 3, 1.5, -1, NaN]) {
    assertRefused(
      memory,
      () => heap.reclaimSlot(slot),
      WorkerSlotError,
      "WORKER_SLOT",
      `slot ${slot}`,
    );
  }
  second.detach();
  assertRefused(memory, () => heap.reclaimSlot(2), WorkerSlotError, "WORKER_SLOT", "no Worker");
});

Deno.test("shared bad input: shared options refused before memory is written", () => {
  const memory = new SharedArrayBuffer(1 << 16);
  const cases: [object, string][] = [
    [{ policy: "first-fit" }, "first-fit"],
    [{ native: true }, "native: true"],
    [{ layers: "yes" }, `layers "yes"`],
    [{ workerSlots: 0 }, "workerSlots 0"],
    [{ workerSlots: 256 }, "workerSlots 256"],
    [{ workerSlots: "4" }, `workerSlots "4"`],
    [{ lockTimeoutMs: 0 }, "lockTimeoutMs 0"],
    [{ lockTimeoutMs: 1.5 }, "lockTimeoutMs 1.5"],
  ];
  for (const [options, names] of cases) {
    assertRefused(
      memory,
      () => PhysicalAllocator.fromBuffer(memory, options),
      InvalidOptionError,
      "INVALID_OPTION",
      names,
    );
  }
  assertRefused(
    memory,
    () => PhysicalAllocator.attach(memory, { lockTimeoutMs: -5 }),
    InvalidOptionError,
    "INVALID_OPTION",
    "lockTimeoutMs -5",
  );
});

Deno.test("shared bad input: creating a heap over one Workers still use", () => {
  const memory = new SharedArrayBuffer(1 << 16);
  using heap = PhysicalAllocator.fromBuffer(memory);
  heap.alloc(100);
  assertRefused(
    memory,
    () => PhysicalAllocator.fromBuffer(memory),
    SharedHeapInvalidError,
    "SHARED_HEAP_INVALID",
    "1 Workers attached",
  );
});

Deno.test("shared bad input: a lock left held by a stopped Worker times out naming its slot", async () => {
  const memory = new SharedArrayBuffer(1 << 18);
  using heap = PhysicalAllocator.fromBuffer(memory, { lockTimeoutMs: 300 });
  const live = heap.alloc(64);
  const worker = new Worker(new URL("../tools/shared/worker.ts", import.meta.url).href, {
    type: "module",
  });
  try {
    const messages = messageQueue(worker);
    const job: SharedRunJob = {
      heap: memory,
      baseAddress: 0x1000,
      exchange: new SharedArrayBuffer(4),
      registry: new SharedArrayBuffer(8),
      control: new SharedArrayBuffer(4),
      index: 0,
      seed: 1,
      operations: 0,
      workload: "small",
      fill: false,
      detach: false,
      stopHoldingLock: true,
      warmupOperations: 0,
      nullHeap: false,
    };
    worker.postMessage(job);
    await messages.next();
    Atomics.store(new Int32Array(job.control), 0, 1);
    Atomics.notify(new Int32Array(job.control), 0);
    const holding = await messages.next() as unknown as { kind: string; slot: number };
    assert.equal(holding.kind, "holding");
    worker.terminate();
    const started = performance.now();
    assertRefused(
      memory,
      () => heap.alloc(8),
      LockTimeoutError,
      "LOCK_TIMEOUT",
      `slot ${holding.slot}`,
    );
    assert.ok(performance.now() - started >= 290, "waited for the timeout");
    assert.throws(() => heap.free(live), (e: unknown) => (e as LockTimeoutError).ownerSlot === 2);
    assertRefused(
      memory,
      () => heap.reclaimSlot(holding.slot),
      WorkerSlotError,
      "WORKER_SLOT",
      "holds lock 0",
    );
    const views = headerViews(memory, 0);
    assert.equal(Atomics.load(views.i32, lockWordAt(views, LOCK_BLOCKS)) & 0xff, holding.slot);
  } finally {
    worker.terminate();
  }
});

Deno.test("shared bad input: a block in a Worker cache is freed, so every use of it is refused", () => {
  const memory = new SharedArrayBuffer(4 << 20);
  using a = PhysicalAllocator.fromBuffer(memory);
  using b = PhysicalAllocator.attach(memory);
  const block = a.alloc(64);
  a.free(block);
  const name = `0x${block.toString(16)}`;
  assertRefused(memory, () => a.free(block), DoubleFreeError, "DOUBLE_FREE", name);
  assertRefused(memory, () => b.free(block), DoubleFreeError, "DOUBLE_FREE", name);
  assertRefused(memory, () => b.realloc(block, 10), DoubleFreeError, "DOUBLE_FREE", name);
  assertRefused(memory, () => b.bytes(block), InvalidAddressError, "INVALID_ADDRESS", name);
  assertRefused(memory, () => a.sizeOf(block), InvalidAddressError, "INVALID_ADDRESS", name);
  assertRefused(
    memory,
    () =>
      PhysicalAllocator.fromBuffer(new SharedArrayBuffer(4 << 20), {
        debug: true,
        workerCaches: true,
      }),
    InvalidOptionError,
    "INVALID_OPTION",
    "workerCaches true",
  );
  a.check();
});

Deno.test("shared bad input: a heap every Worker left is refused to a new creator unless reinitialize", () => {
  const memory = new SharedArrayBuffer(1 << 16);
  const old = PhysicalAllocator.fromBuffer(memory);
  const kept = old.alloc(100);
  old.close();
  assertRefused(
    memory,
    () => PhysicalAllocator.fromBuffer(memory),
    MemoryInUseError,
    "MEMORY_IN_USE",
    "reinitialize",
  );
  // It is still a heap to join: the allocation survives the last detach.
  using joined = PhysicalAllocator.attach(memory);
  assert.equal(joined.sizeOf(kept), 100);
  joined.close();
  using fresh = PhysicalAllocator.fromBuffer(memory, { reinitialize: true });
  assert.equal(fresh.stats().usedBlocks, 0);
  fresh.check();
});

Deno.test("shared bad input: with the heap lock held by a stopped slot, a slab class refills and drains under its class lock, and every call that needs the heap lock times out leaving the heap unchanged", () => {
  const memory = new SharedArrayBuffer(4 << 20);
  using heap = PhysicalAllocator.fromBuffer(memory, { lockTimeoutMs: 50 });
  const stopped = PhysicalAllocator.attach(memory);
  const live = Array.from({ length: 48 }, () => heap.alloc(100));
  const views = headerViews(memory, 0);
  // What a Worker that ended inside an operation leaves behind (see worker.ts stopHoldingLock).
  const owner = lockWordAt(views, LOCK_BLOCKS);
  assert.equal(Atomics.compareExchange(views.i32, owner, 0, stopped.workerSlot | (1 << 8)), 0);
  assert.equal(heap.sizeOf(live[0]), 100, "a live object is read without a lock");
  assert.equal(heap.bytes(live[1]).length, 100);
  const slot = `slot ${stopped.workerSlot}`;
  assertRefused(memory, () => heap.alloc(5000), LockTimeoutError, "LOCK_TIMEOUT", slot);
  assertRefused(memory, () => heap.alloc(20, 64), LockTimeoutError, "LOCK_TIMEOUT", slot);
  assertRefused(memory, () => heap.realloc(live[2], 5000), LockTimeoutError, "LOCK_TIMEOUT", slot);
  assertRefused(memory, () => heap.stats(), LockTimeoutError, "LOCK_TIMEOUT", slot);
  // kmalloc-208 has no slab yet: its refill takes its class lock, then needs the heap lock.
  assertRefused(memory, () => heap.alloc(200), LockTimeoutError, "LOCK_TIMEOUT", slot);
  // kmalloc-104's bin fills and drains, and refills, under its class lock alone.
  for (let i = 3; i < live.length; i++) heap.free(live[i]);
  for (let i = 3; i < live.length; i++) live[i] = heap.alloc(100);
  for (let i = 3; i < live.length; i++) heap.free(live[i]);
  Atomics.store(views.i32, owner, 0);
  heap.check();
  for (let i = 3; i < live.length; i++) live[i] = heap.alloc(100);
  // Now the class lock of kmalloc-104 held: its drain times out, other classes go on.
  const classLock = lockWordAt(views, classLockOf(KMALLOC_CLASS_BY_STEP[104 >> 3]));
  assert.equal(
    Atomics.compareExchange(views.i32, classLock, 0, stopped.workerSlot | (2 << 8)),
    0,
  );
  // Frees go to the cache until the bin is full: the one that needs a drain times out.
  let full = -1;
  for (let i = 3; i < live.length && full < 0; i++) {
    try {
      heap.free(live[i]);
    } catch (error) {
      assert.ok(error instanceof LockTimeoutError);
      full = i;
    }
  }
  assert.ok(full > 3, "some frees went to the cache without the lock");
  assertRefused(memory, () => heap.free(live[full]), LockTimeoutError, "LOCK_TIMEOUT", slot);
  // A move between classes whose old bin is full needs the lock for the free: refused before any change.
  assertRefused(memory, () => heap.realloc(live[2], 500), LockTimeoutError, "LOCK_TIMEOUT", slot);
  assert.notEqual(heap.alloc(97), 0, "a cached object of the class, without the lock");
  // kmalloc-40 (another class lock) refills, making its first slab under the heap lock.
  const other = Array.from({ length: 40 }, () => heap.alloc(40));
  for (const address of other) heap.free(address);
  assertRefused(memory, () => heap.check(), LockTimeoutError, "LOCK_TIMEOUT", slot);
  Atomics.store(views.i32, classLock, 0);
  heap.check();
  assert.equal(heap.sizeOf(live[full]), 100);
});

Deno.test("shared bad input: with a class lock held by a stopped slot, a block's realloc that needs no slab object runs under the heap lock alone, a slab object's move to a block frees it into the Worker cache, page runs come and go, and a realloc that needs every lock times out, changing nothing", () => {
  const memory = new SharedArrayBuffer(4 << 20);
  using heap = PhysicalAllocator.fromBuffer(memory, { lockTimeoutMs: 50 });
  const stopped = PhysicalAllocator.attach(memory);
  // Blocks above CACHE_SIZE_MAX (4 KiB): no Worker cache holds them.
  const block = heap.alloc(5000);
  heap.bytes(block).fill(0x5a);
  const fence = heap.alloc(5000); // the block cannot grow in place: its realloc moves it
  const object = heap.alloc(100); // a kmalloc-104 object
  heap.bytes(object).fill(0x77);
  const page = heap.allocPages(0);
  const views = headerViews(memory, 0);
  const classLock = lockWordAt(views, classLockOf(KMALLOC_CLASS_BY_STEP[104 >> 3]));
  assert.equal(
    Atomics.compareExchange(views.i32, classLock, 0, stopped.workerSlot | (2 << 8)),
    0,
  );
  const moved = heap.realloc(block, 9000);
  assert.notEqual(moved, block, "moved past its neighbour");
  assert.equal(heap.realloc(moved, 6000), moved, "shrunk in place");
  assert.equal(heap.realloc(fence, 100), fence, "shrunk in place to a slab class's size");
  // The object's free goes to the Worker cache's bin, which needs no lock.
  const grown = heap.realloc(object, 5000);
  // Page runs are the frames', the heap lock's: allocated and freed without the class locks.
  const run = heap.allocPages(2);
  heap.freePages(run);
  assert.equal(heap.freePages(heap.allocPages(0)), undefined);
  // A page run's realloc takes every lock.
  const slot = `slot ${stopped.workerSlot}`;
  assertRefused(memory, () => heap.realloc(page, 9000), LockTimeoutError, "LOCK_TIMEOUT", slot);
  Atomics.store(views.i32, classLock, 0);
  heap.check();
  assert.equal(heap.sizeOf(moved), 6000);
  assert.ok(heap.bytes(moved, 5000).every((byte) => byte === 0x5a), "the payload moved along");
  assert.equal(heap.sizeOf(fence), 100);
  assert.equal(heap.sizeOf(grown), 5000);
  assert.ok(
    heap.bytes(grown, 100).every((byte) => byte === 0x77),
    "the object's bytes moved along",
  );
  heap.free(moved);
  assert.equal(heap.sizeOf(heap.realloc(page, 9000)), 9000);
  heap.check();
});

Deno.test("shared bad input: a block's realloc whose move reaches a slab cache leaves the heap lock alone unchanged and runs under every lock", () => {
  const memory = new SharedArrayBuffer(4 << 20);
  using heap = PhysicalAllocator.fromBuffer(memory, { lockTimeoutMs: 50, workerCaches: false });
  const stopped = PhysicalAllocator.attach(memory);
  // A cold mid class (kmalloc-320) turns its first requests away to blocks.
  const block = heap.alloc(300);
  heap.alloc(300); // a fence: the block cannot grow in place
  const views = headerViews(memory, 0);
  const classLock = lockWordAt(views, classLockOf(KMALLOC_CLASS_BY_STEP[200 >> 3]));
  assert.equal(
    Atomics.compareExchange(views.i32, classLock, 0, stopped.workerSlot | (2 << 8)),
    0,
  );
  // Under the heap lock alone the move's allocation reaches kmalloc and
  // stops before any change; under every lock the held class lock times out.
  const slot = `slot ${stopped.workerSlot}`;
  assertRefused(memory, () => heap.realloc(block, 480), LockTimeoutError, "LOCK_TIMEOUT", slot);
  assert.equal(heap.realloc(block, 1000) !== 0, true, "a move to a block needs no class lock");
  Atomics.store(views.i32, classLock, 0);
  heap.check();
});

Deno.test("shared bad input: a Worker cache refill that meets a forged slab link leaves its pick where it was", () => {
  const memory = new SharedArrayBuffer(4 << 20);
  using a = PhysicalAllocator.fromBuffer(memory);
  using b = PhysicalAllocator.attach(memory);
  // Slot 1's slabs of kmalloc-32, then its objects freed: its bin drains
  // batches back, so its slabs hold free lists.
  const objects = Array.from({ length: 400 }, () => a.alloc(32));
  for (const address of objects) a.free(address);
  // Slot 2's first object: a slab of its own at the partial list's head, so
  // slot 1's next refill picks a slab of its own further down.
  b.alloc(32);
  // A use-after-free overwrites the link word of every object slot 1 freed
  // (its bin keeps offsets elsewhere, so only the slabs' free lists break).
  const words = new DataView(memory);
  const probe = a.alloc(32);
  // An address less this is its byte offset in the buffer.
  const base = probe - a.bytes(probe).byteOffset;
  a.free(probe);
  for (const address of objects) words.setInt32(address - base, 0x41414141, true);
  // Lock words change hands at every hold: everything else must stay.
  const views = headerViews(memory, 0);
  const bytes = () => {
    const copy = new Uint8Array(memory).slice();
    const locks = new Int32Array(copy.buffer);
    for (let lock = 0; lock < 16; lock++) locks[lockWordAt(views, lock)] = 0;
    return copy;
  };
  let refused = false;
  for (let i = 0; i < 400 && !refused; i++) {
    const before = bytes();
    try {
      a.alloc(32);
    } catch (error) {
      assert.equal((error as AllocatorError).code, "HEAP_CORRUPTION");
      const after = bytes();
      const changed = after.findIndex((byte, at) => byte !== before[at]);
      assert.equal(changed, -1, `the refused refill changed byte ${changed} of the buffer`);
      refused = true;
    }
  }
  assert.ok(refused, "a refill met a forged link");
});

Deno.test("shared bad input: reclaimSlot gives back a block a Worker ended with between its bin and its mark", () => {
  const memory = new SharedArrayBuffer(4 << 20);
  const slotCount = 4;
  using heap = PhysicalAllocator.fromBuffer(memory, { workerSlots: slotCount });
  const dead = PhysicalAllocator.attach(memory);
  const before = heap.stats();
  const block = dead.alloc(1000); // a block of a Worker cache's class
  dead.bytes(block).fill(9);
  // What a Worker terminated inside a pop leaves: the bin no longer holds
  // the block, and its state byte still says cached (the pop sets it live last).
  const stateMap = slotTableEnd(slotCount) + slotCount * SLOT_CACHE_BYTES;
  new Uint8Array(memory)[stateMap + ((block - 0x1000) >>> STATE_SHIFT)] = STATE_CACHED;
  assert.throws(() => heap.free(block), DoubleFreeError);
  heap.reclaimSlot(dead.workerSlot);
  heap.check();
  const after = heap.stats();
  assert.equal(after.usedBlocks, before.usedBlocks, "the block went back to the heap");
  assert.equal(after.usedBytes, before.usedBytes);
  // Freed by the repair: a second free is refused (the block is free, or part of a larger free block).
  assert.throws(
    () => heap.free(block),
    (error: unknown) => typeof (error as AllocatorError).code === "string",
  );
  heap.free(heap.alloc(1000));
  heap.check();
});
