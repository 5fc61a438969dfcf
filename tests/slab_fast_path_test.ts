/**
 * The slab fast path (allocator/slab/slab_fast_path.ts) against the general
 * layer path: where it is switched on, and that it makes exactly the general
 * path's decisions. Two heaps over separate buffers at the same base address
 * and under one fixed key, one with the fast paths on and one made with
 * `fastPath: false`, run the same seeded good and bad operations in lockstep:
 * every result, every error (class, code, message), every `stats()` and,
 * periodically, every byte of the two buffers must be equal. On corrupted
 * slabs the two must fail alike, and the failed call must write nothing.
 *
 * The lockstep runs over buffers at a low base, over buffers far above 4 GiB
 * (addresses no small integer holds: the fast path works in window offsets,
 * and its door turns addresses into them), over identity-mapped memory
 * above 4 GiB, and over an identity-mapped window longer than 2^31 bytes
 * (the layers live in its first 2 GiB; the rest is the block heap's).
 */
import assert from "#assert";
import { withHeaderKey } from "../allocator/heap/_header_key.ts";
import { AllocatorError, bufferMemory, PhysicalAllocator } from "../mod.ts";
import { mapIdentity } from "../allocator/memory/identity_memory.ts";
import { FREED, SlabFastPath } from "../allocator/slab/slab_fast_path.ts";
import { KMALLOC_MAX_BYTES, KMALLOC_SMALL_MAX_BYTES } from "../allocator/slab/kmalloc.ts";
import { Random } from "./support/random.ts";

/** How often the fast path served a call and how often it handed it to the general path. */
interface Counts {
  allocServed: number;
  /** Allocations above KMALLOC_SMALL_MAX_BYTES (mid classes) the fast path served. */
  allocServedMid: number;
  allocFallback: number;
  freeServed: number;
  freeFallback: number;
  reallocServed: number;
}

/** Counts the fast path's answers while `run` runs. */
function countingFastPath<T>(run: (counts: Counts) => T): T {
  const counts: Counts = {
    allocServed: 0,
    allocServedMid: 0,
    allocFallback: 0,
    freeServed: 0,
    freeFallback: 0,
    reallocServed: 0,
  };
  const proto = SlabFastPath.prototype;
  const { allocOffset, freeAt, reallocAt } = proto;
  proto.reallocAt = function (this: SlabFastPath, offset: number, sizeBytes: number): number {
    const result = reallocAt.call(this, offset, sizeBytes);
    if (result !== -1) counts.reallocServed++;
    return result;
  };
  proto.allocOffset = function (this: SlabFastPath, sizeBytes: number): number {
    const offset = allocOffset.call(this, sizeBytes);
    if (offset === -1) counts.allocFallback++;
    else counts.allocServed++;
    if (offset !== -1 && sizeBytes > KMALLOC_SMALL_MAX_BYTES) counts.allocServedMid++;
    return offset;
  };
  proto.freeAt = function (this: SlabFastPath, offset: number): number {
    const freed = freeAt.call(this, offset);
    if (freed === FREED) counts.freeServed++;
    else counts.freeFallback++;
    return freed;
  };
  try {
    return run(counts);
  } finally {
    proto.allocOffset = allocOffset;
    proto.freeAt = freeAt;
    proto.reallocAt = reallocAt;
  }
}

type Outcome =
  | { ok: true; value: unknown }
  | { ok: false; type: unknown; code: unknown; message: string; allocatorError: boolean };

/** The number a call returned; fails when it threw. */
function valueOf(result: Outcome, where: string): number {
  if (!result.ok) assert.fail(`${where}: threw ${result.message}`);
  return result.value as number;
}

function outcome(call: () => unknown): Outcome {
  try {
    return { ok: true, value: call() };
  } catch (error) {
    const e = error as Error & { code?: unknown };
    return {
      ok: false,
      type: e?.constructor,
      code: e?.code,
      message: e?.message,
      allocatorError: error instanceof AllocatorError,
    };
  }
}

interface Pair {
  readonly fast: PhysicalAllocator;
  readonly slow: PhysicalAllocator;
  readonly fastBytes: Uint8Array;
  readonly slowBytes: Uint8Array;
  /** The window's base address (both heaps). */
  readonly base: number;
  /** Unmaps identity-mapped memory. */
  close(): void;
}

const PAIR_KEY = 0x51ab1234;
const BASE = 0x10000;
const HEAP_BYTES = 12 << 20;
const GIB = 2 ** 30;
/** Of a window longer than this, the first COMPARED_BYTES and the last 64 KiB are compared. */
const COMPARED_BYTES = HEAP_BYTES;
const COMPARED_TAIL_BYTES = 64 << 10;

/** Where a pair's memory comes from. */
interface PairConfig {
  readonly name: string;
  readonly base: number;
  /** The window's length. @default {HEAP_BYTES} */
  readonly windowBytes?: number;
  /** "fast": the fast heap identity-mapped, the general heap in a buffer at the same base; "both": both mapped (the general heap's memory mapped SHADOW_SHIFT_BYTES higher and handed over at the base). */
  readonly mapped?: "fast" | "both";
}

/** Where the general heap of a "both" pair is mapped: this far above the fast heap's window. */
const SHADOW_SHIFT_BYTES = 0x3000_0000_0000;

const CONFIGS: readonly PairConfig[] = [
  { name: "buffers at 64 KiB", base: BASE },
  { name: "buffers at 64 GiB + 64 KiB (addresses past 2^32)", base: 64 * GIB + BASE },
  { name: "buffers at 2^48 - 1 GiB", base: 2 ** 48 - GIB },
  { name: "identity-mapped at 20 GiB", base: 20 * GIB, mapped: "fast" },
  {
    name: "identity-mapped, a window of 2^31 + 4 MiB at 34 TiB",
    base: 0x2200_0000_0000,
    windowBytes: 2 * GIB + (4 << 20),
    mapped: "both",
  },
];

/** Why identity mapping is impossible here, or undefined when mapIdentity works. */
const IDENTITY_PROBLEM = (() => {
  try {
    mapIdentity([{ start: 20 * GIB, length: 64 * 1024 }]).close();
    return undefined;
  } catch (error) {
    return String(error);
  }
})();
/** In CI (as root on Linux) identity mapping must work: a failure to map fails the test, never skips it. */
const IN_CI = Deno.env.get("CI") === "true";

/** Maps `length` bytes at `start`, or (when that address is taken, as by V8's sandbox) 2 TiB higher, up to 3 times. */
function mapMovable(start: number, length: number) {
  for (let move = 0;; move++) {
    try {
      return mapIdentity([{ start: start + move * 0x200_0000_0000, length }], { relocate: false });
    } catch (error) {
      if (move === 3 || !String(error).includes("EEXIST")) throw error;
    }
  }
}

function makePair(config: PairConfig = CONFIGS[0]): Pair {
  const windowBytes = config.windowBytes ?? HEAP_BYTES;
  const fastMemory = config.mapped === undefined
    ? bufferMemory([{ start: config.base, length: windowBytes }])
    : config.mapped === "fast"
    ? mapIdentity([{ start: config.base, length: windowBytes }])
    : mapMovable(config.base, windowBytes);
  const base = fastMemory.regions[0].base;
  let slowMemory;
  try {
    slowMemory = config.mapped === "both"
      ? mapMovable(base + SHADOW_SHIFT_BYTES, windowBytes)
      : bufferMemory([{ start: base, length: windowBytes }]);
  } catch (error) {
    fastMemory.close?.();
    throw error;
  }
  const fastBytes = fastMemory.regions[0].bytes;
  const slowBytes = slowMemory.regions[0].bytes;
  // One key for both (headers and slab free links), so equal decisions write equal bytes.
  const [fast, slow] = withHeaderKey(PAIR_KEY, () => [
    new PhysicalAllocator({ regions: [{ base, bytes: fastBytes }] }),
    new PhysicalAllocator({ regions: [{ base, bytes: slowBytes }] }, { fastPath: false }),
  ]);
  const pair = {
    fast,
    slow,
    fastBytes,
    slowBytes,
    base,
    close: () => {
      fastMemory.close?.();
      slowMemory.close?.();
    },
  };
  assert.equal(fast.slabFastPathActive, true);
  assert.equal(slow.slabFastPathActive, false);
  assertSameBytes(pair, "fresh heaps");
  return pair;
}

/** Runs `call` on both heaps; asserts equal outcomes (errors typed) and equal stats. */
function both(pair: Pair, where: string, call: (heap: PhysicalAllocator) => unknown): Outcome {
  const fastResult = outcome(() => call(pair.fast));
  const slowResult = outcome(() => call(pair.slow));
  assert.deepEqual(fastResult, slowResult, `${where}: fast and general path disagree`);
  if (!fastResult.ok) assert.ok(fastResult.allocatorError, `${where}: ${fastResult.message}`);
  assert.deepEqual(pair.fast.stats(), pair.slow.stats(), `${where}: stats differ`);
  return fastResult;
}

/** Compares the windows' bytes (of a window longer than COMPARED_BYTES, its head and its last 64 KiB). */
function assertSameBytes(pair: Pair, where: string): void {
  const length = pair.fastBytes.length;
  const ranges = length <= COMPARED_BYTES
    ? [[0, length]]
    : [[0, COMPARED_BYTES], [length - COMPARED_TAIL_BYTES, length]];
  for (const [start, end] of ranges) {
    const a = new Int32Array(
      pair.fastBytes.buffer,
      pair.fastBytes.byteOffset + start,
      (end - start) >> 2,
    );
    const b = new Int32Array(
      pair.slowBytes.buffer,
      pair.slowBytes.byteOffset + start,
      (end - start) >> 2,
    );
    for (let i = 0; i < a.length; i++) {
      if (a[i] !== b[i]) {
        assert.fail(
          `${where}: heap bytes differ at address 0x${(pair.base + start + i * 4).toString(16)}`,
        );
      }
    }
  }
}

/** Sizes the kmalloc classes serve (mostly), a few beyond them, and pages. */
function drawSize(random: Random): number {
  const roll = random.next();
  if (roll < 0.75) return random.int(1, 64);
  if (roll < 0.9) return random.int(65, 256);
  if (roll < 0.95) return random.int(257, 2048);
  return 4096 * random.int(1, 3);
}

/** Values no call may accept: each must throw the same typed error on both heaps. */
const BAD_VALUES: readonly unknown[] = [
  0,
  -8,
  1.5,
  NaN,
  Infinity,
  2 ** 40,
  "32",
  32n,
  Symbol("size"),
  null,
  undefined,
  {},
];

/**
 * Sizes of the mid classes (above KMALLOC_SMALL_MAX_BYTES) mostly, a few
 * sizes often enough that their classes take slabs, then small ones and
 * blocks, and pages.
 */
function drawMidSize(random: Random): number {
  const roll = random.next();
  if (roll < 0.4) return random.pick([264, 300, 392, 416, 500, KMALLOC_MAX_BYTES]);
  if (roll < 0.6) return random.int(KMALLOC_SMALL_MAX_BYTES + 1, KMALLOC_MAX_BYTES);
  if (roll < 0.85) return random.int(1, KMALLOC_SMALL_MAX_BYTES);
  if (roll < 0.97) return random.int(KMALLOC_MAX_BYTES + 1, 4096);
  return 4096 * random.int(1, 3);
}

function runLockstep(
  config: PairConfig,
  seed: number,
  steps: number,
  counts: Counts,
  draw: (random: Random) => number = drawSize,
  reallocsServedMin = steps / 100,
): void {
  const pair = makePair(config);
  try {
    lockstepSteps(pair, seed, steps, draw);
  } finally {
    pair.close();
  }
  assert.equal(counts.allocServed > steps / 10, true, `fast alloc served ${counts.allocServed}`);
  assert.equal(counts.freeServed > steps / 10, true, `fast free served ${counts.freeServed}`);
  assert.equal(
    counts.reallocServed > reallocsServedMin,
    true,
    `realloc served ${counts.reallocServed}`,
  );
}

/** runLockstep's good and bad calls on `pair`. */
function lockstepSteps(
  pair: Pair,
  seed: number,
  steps: number,
  draw: (random: Random) => number,
): void {
  const base = pair.base;
  const random = new Random(seed);
  const live: number[] = [];
  const stale: number[] = [];
  // Slab objects only: a freed block's address may come back as a layer's
  // internal block (a slab descriptor), which the front door does not refuse.
  const small = new Set<number>();
  const caches = [
    [pair.fast.createCache("lockstep_24", 24), pair.slow.createCache("lockstep_24", 24)],
    [pair.fast.createCache("lockstep_200", 200), pair.slow.createCache("lockstep_200", 200)],
  ];
  for (let step = 0; step < steps; step++) {
    const where = `seed ${seed}, step ${step}`;
    // Phases of 600 steps: filling, then draining (so slabs empty, move and go back).
    const draining = Math.floor(step / 600) % 2 === 1;
    const roll = random.next();
    if (live.length === 0 || roll < (draining ? 0.25 : 0.5)) {
      const size = draw(random);
      const align = random.pick([undefined, undefined, undefined, 8, 16, 4096]);
      const throwing = random.next() < 0.5;
      const result = both(
        pair,
        `${where}: alloc(${size}, ${align})`,
        (h) => throwing ? h.alloc(size, align) : h.tryAlloc(size, align),
      );
      if (result.ok && result.value !== 0) {
        const address = result.value as number;
        live.push(address);
        if (size <= KMALLOC_MAX_BYTES && (align ?? 8) <= 8) small.add(address);
        if (random.next() < 0.5) {
          pair.fast.bytes(address).fill(step & 0xff);
          pair.slow.bytes(address).fill(step & 0xff);
        }
      }
    } else if (roll < 0.85) {
      const address = live.splice(random.int(0, live.length - 1), 1)[0];
      both(pair, `${where}: free(${address})`, (h) => h.free(address));
      if (small.delete(address)) stale.push(address);
      if (stale.length > 32) stale.shift();
    } else if (roll < 0.9) {
      // Named caches: their objects are freed through the front door.
      const [fastCache, slowCache] = random.pick(caches);
      const result = both(
        pair,
        `${where}: cache alloc`,
        (h) => (h === pair.fast ? fastCache : slowCache).alloc(),
      );
      if (result.ok) {
        live.push(result.value as number);
        small.add(result.value as number);
      }
    } else if (roll < 0.95) {
      const index = random.int(0, live.length - 1);
      const size = random.next() < 0.2 ? random.pick<unknown>(BAD_VALUES) as number : draw(random);
      const result = both(
        pair,
        `${where}: realloc(${live[index]}, ${String(size)})`,
        (h) => h.realloc(live[index], size),
      );
      if (result.ok) {
        small.delete(live[index]);
        live[index] = result.value as number;
      }
    } else {
      // Bad frees and bad sizes: stale (double free), interior, foreign,
      // non-numbers; addresses whose low 32 bits or window offset are a live
      // object's (a door that truncated an address would take them for it).
      const target = random.pick(live);
      const bad = random.pick<unknown>([
        ...stale.filter((address) => !live.includes(address)),
        target + 8,
        target + 1,
        target + 0.5,
        target - 8,
        target + 2 ** 31,
        target + 2 ** 32,
        target - 2 ** 32,
        target + 2 ** 53,
        target - base,
        -target,
        base + (random.int(0, HEAP_BYTES >> 3) << 3) + 4,
        base - 8,
        ...BAD_VALUES,
      ]);
      // A neighbour of the target may be a live object of its own: then it is no bad free.
      if (live.includes(bad as number)) continue;
      const freeResult = both(pair, `${where}: free(${String(bad)})`, (h) => h.free(bad as number));
      assert.equal(freeResult.ok, false, `${where}: free(${String(bad)}) was accepted`);
      if (typeof bad !== "number" || !Number.isInteger(bad) || bad <= 0) {
        both(pair, `${where}: alloc(${String(bad)})`, (h) => h.alloc(bad as number));
      }
    }
    if (step % 97 === 0) assertSameBytes(pair, where);
  }
  for (const address of live) both(pair, `seed ${seed}: final free`, (h) => h.free(address));
  assertSameBytes(pair, `seed ${seed}: after freeing everything`);
  pair.fast.check();
  pair.slow.check();
}

Deno.test("SlabFastPath serves exactly the heaps it applies to", () => {
  const big = () => new Uint8Array(4 << 20);
  assert.equal(PhysicalAllocator.fromBuffer(big()).slabFastPathActive, true);
  for (
    const options of [
      { fastPath: false },
      { debug: true },
      { layers: false },
      { align: 16 },
    ]
  ) {
    const heap = PhysicalAllocator.fromBuffer(big(), options);
    assert.equal(heap.slabFastPathActive, false, JSON.stringify(options));
  }
  assert.equal(PhysicalAllocator.fromBuffer(new Uint8Array(64 << 10)).slabFastPathActive, false);
});

/** The configurations this process can run (identity mapping may be impossible outside CI). */
function runnable(configs: readonly PairConfig[]): PairConfig[] {
  return configs.filter((config) => {
    if (config.mapped === undefined || IDENTITY_PROBLEM === undefined) return true;
    assert.ok(!IN_CI, `identity mapping is impossible in CI: ${IDENTITY_PROBLEM}`);
    console.log(`SKIPPING "${config.name}": ${IDENTITY_PROBLEM}`);
    return false;
  });
}

Deno.test("SlabFastPath makes exactly the general path's decisions, in lockstep", async (t) => {
  for (const config of runnable(CONFIGS)) {
    await t.step(config.name, () => {
      for (const seed of [0x51ab1, 0x51ab2, 0x51ab3]) {
        countingFastPath((counts) => runLockstep(config, seed, 3000, counts));
      }
    });
  }
});

Deno.test("SlabFastPath makes exactly the general path's decisions on mid classes, in lockstep", async (t) => {
  for (const config of runnable([CONFIGS[0], CONFIGS[1], CONFIGS[3]])) {
    await t.step(config.name, () => {
      for (const seed of [0x3d1, 0x3d2]) {
        countingFastPath((counts) => {
          // Mid classes go cold again whenever their slabs all go back (a
          // draining phase): fewer reallocs find both classes warm.
          runLockstep(config, seed, 3000, counts, drawMidSize, 10);
          assert.ok(counts.allocServedMid > 100, `fast mid allocs served ${counts.allocServedMid}`);
        });
      }
    });
  }
});

Deno.test("SlabFastPath fails exactly like the general path on forged free links", async (t) => {
  for (const config of runnable(CONFIGS)) {
    await t.step(config.name, () => {
      const pair = makePair(config);
      try {
        countingFastPath((counts) => forgedLink(pair, counts));
      } finally {
        pair.close();
      }
    });
  }
});

/** A forged free link in a partial slab: the alloc that would follow it is refused alike, writing nothing. */
function forgedLink(pair: Pair, counts: Counts): void {
  {
    // A partial kmalloc-32 slab with free objects on its list.
    const objects = [];
    for (let i = 0; i < 8; i++) {
      objects.push(valueOf(both(pair, "fill", (h) => h.alloc(32)), "fill"));
    }
    for (const address of [objects[2], objects[5]]) both(pair, "free", (h) => h.free(address));
    // Overwrite the link word of the list head (the last freed) the same way in both heaps.
    for (const bytes of [pair.fastBytes, pair.slowBytes]) {
      new DataView(bytes.buffer, bytes.byteOffset).setInt32(
        objects[5] - pair.base,
        0x7fff0001,
        true,
      );
    }
    const before = pair.fastBytes.slice(0, COMPARED_BYTES);
    const served = counts.allocServed;
    const result = both(pair, "alloc after a forged link", (h) => h.alloc(32));
    assert.equal(result.ok, false);
    assert.equal(!result.ok && result.code, "HEAP_CORRUPTION");
    assert.equal(counts.allocServed, served, "the fast path served a forged link");
    assert.deepEqual(
      pair.fastBytes.slice(0, COMPARED_BYTES),
      before,
      "the failed alloc wrote bytes",
    );
    assertSameBytes(pair, "after the refused alloc");
  }
}

Deno.test("SlabFastPath's doors refuse a closed heap, closed memory and a shrunk buffer before any read", () => {
  const calls = (heap: PhysicalAllocator, live: number) => [
    () => heap.alloc(32),
    () => heap.tryAlloc(32),
    () => heap.free(live),
    () => heap.realloc(live, 40),
    () => heap.realloc(live, 300),
  ];
  // The allocator closed (after a slab object was served, so the fast path is warm).
  const closedHeap = PhysicalAllocator.fromBuffer(new Uint8Array(4 << 20));
  assert.equal(closedHeap.slabFastPathActive, true);
  const closedLive = closedHeap.alloc(32);
  closedHeap.close();
  for (const call of calls(closedHeap, closedLive)) {
    assert.throws(call, { code: "ALLOCATOR_CLOSED" });
  }
  // The memory closed behind the heap's back (identity memory is unmapped then).
  let closed = false;
  const memory = bufferMemory([{ start: 64 * GIB, length: 4 << 20 }]);
  const heap = new PhysicalAllocator({
    regions: memory.regions,
    get closed() {
      return closed;
    },
  });
  assert.equal(heap.slabFastPathActive, true);
  const live = heap.alloc(32);
  heap.free(heap.alloc(32));
  closed = true;
  for (const call of calls(heap, live)) assert.throws(call, { code: "ALLOCATOR_CLOSED" });
  closed = false;
  heap.free(live);
  heap.check();
  if (IDENTITY_PROBLEM === undefined) {
    const mapped = mapIdentity([{ start: 24 * GIB, length: 4 << 20 }]);
    const onMapped = new PhysicalAllocator(mapped);
    const mappedLive = onMapped.alloc(32);
    mapped.close();
    for (const call of calls(onMapped, mappedLive)) {
      assert.throws(call, { code: "ALLOCATOR_CLOSED" });
    }
  } else assert.ok(!IN_CI, `identity mapping is impossible in CI: ${IDENTITY_PROBLEM}`);
  // The buffer shrunk below the window.
  const buffer = new ArrayBuffer(4 << 20, { maxByteLength: 8 << 20 });
  const shrunk = PhysicalAllocator.fromBuffer(buffer);
  const shrunkLive = shrunk.alloc(32);
  buffer.resize(1 << 20);
  for (const call of calls(shrunk, shrunkLive)) assert.throws(call, { code: "MEMORY_DETACHED" });
  // Grown back, the view is in bounds again (the bytes past 1 MiB are zero now: nothing more is asked).
  buffer.resize(8 << 20);
  assert.equal(shrunk.slabFastPathActive, true);
});
