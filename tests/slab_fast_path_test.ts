/**
 * The slab fast path (allocator/slab/slab_fast_path.ts) against the general
 * layer path: where it is switched on, and that it makes exactly the general
 * path's decisions. Two heaps over separate buffers at the same base address
 * and under one fixed key, one with the fast paths on and one made with
 * `fastPath: false`, run the same seeded good and bad operations in lockstep:
 * every result, every error (class, code, message), every `stats()` and,
 * periodically, every byte of the two buffers must be equal. On corrupted
 * slabs the two must fail alike, and the failed call must write nothing.
 */
import assert from "#assert";
import { withHeaderKey } from "../allocator/heap/_header_key.ts";
import { AllocatorError, PhysicalAllocator } from "../mod.ts";
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
  const { alloc, free, realloc } = proto;
  proto.realloc = function (this: SlabFastPath, address: number, sizeBytes: number): number {
    const result = realloc.call(this, address, sizeBytes);
    if (result !== -1) counts.reallocServed++;
    return result;
  };
  proto.alloc = function (this: SlabFastPath, sizeBytes: number): number {
    const address = alloc.call(this, sizeBytes);
    if (address === -1) counts.allocFallback++;
    else counts.allocServed++;
    if (address !== -1 && sizeBytes > KMALLOC_SMALL_MAX_BYTES) counts.allocServedMid++;
    return address;
  };
  proto.free = function (this: SlabFastPath, address: number): number {
    const freed = free.call(this, address);
    if (freed === FREED) counts.freeServed++;
    else counts.freeFallback++;
    return freed;
  };
  try {
    return run(counts);
  } finally {
    proto.alloc = alloc;
    proto.free = free;
    proto.realloc = realloc;
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
}

const PAIR_KEY = 0x51ab1234;
const BASE = 0x10000;
const HEAP_BYTES = 12 << 20;

function makePair(): Pair {
  const fastBytes = new Uint8Array(HEAP_BYTES);
  const slowBytes = new Uint8Array(HEAP_BYTES);
  // One key for both (headers and slab free links), so equal decisions write equal bytes.
  const [fast, slow] = withHeaderKey(PAIR_KEY, () => [
    PhysicalAllocator.fromBuffer(fastBytes, { baseAddress: BASE }),
    PhysicalAllocator.fromBuffer(slowBytes, { baseAddress: BASE, fastPath: false }),
  ]);
  assert.equal(fast.slabFastPathActive, true);
  assert.equal(slow.slabFastPathActive, false);
  assertSameBytes({ fast, slow, fastBytes, slowBytes }, "fresh heaps");
  return { fast, slow, fastBytes, slowBytes };
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

function assertSameBytes(pair: Pair, where: string): void {
  const a = new Int32Array(pair.fastBytes.buffer);
  const b = new Int32Array(pair.slowBytes.buffer);
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) {
      assert.fail(`${where}: heap bytes differ at address 0x${(BASE + i * 4).toString(16)}`);
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
  seed: number,
  steps: number,
  counts: Counts,
  draw: (random: Random) => number = drawSize,
  reallocsServedMin = steps / 100,
): void {
  const pair = makePair();
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
      // Bad frees and bad sizes: stale (double free), interior, foreign, non-numbers.
      const target = random.pick(live);
      const bad = random.pick<unknown>([
        ...stale.filter((address) => !live.includes(address)),
        target + 8,
        target + 1,
        target + 0.5,
        target - 8,
        target + 2 ** 31,
        BASE + (random.int(0, HEAP_BYTES >> 3) << 3) + 4,
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
  assert.equal(counts.allocServed > steps / 10, true, `fast alloc served ${counts.allocServed}`);
  assert.equal(counts.freeServed > steps / 10, true, `fast free served ${counts.freeServed}`);
  assert.equal(
    counts.reallocServed > reallocsServedMin,
    true,
    `realloc served ${counts.reallocServed}`,
  );
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

Deno.test("SlabFastPath makes exactly the general path's decisions, in lockstep", () => {
  for (const seed of [0x51ab1, 0x51ab2, 0x51ab3]) {
    countingFastPath((counts) => runLockstep(seed, 3000, counts));
  }
});

Deno.test("SlabFastPath makes exactly the general path's decisions on mid classes, in lockstep", () => {
  for (const seed of [0x3d1, 0x3d2]) {
    countingFastPath((counts) => {
      // Mid classes go cold again whenever their slabs all go back (a
      // draining phase): fewer reallocs find both classes warm.
      runLockstep(seed, 3000, counts, drawMidSize, 10);
      assert.ok(counts.allocServedMid > 100, `fast mid allocs served ${counts.allocServedMid}`);
    });
  }
});

Deno.test("SlabFastPath fails exactly like the general path on forged free links", () => {
  countingFastPath((counts) => {
    const pair = makePair();
    // A partial kmalloc-32 slab with free objects on its list.
    const objects = [];
    for (let i = 0; i < 8; i++) {
      objects.push(valueOf(both(pair, "fill", (h) => h.alloc(32)), "fill"));
    }
    for (const address of [objects[2], objects[5]]) both(pair, "free", (h) => h.free(address));
    // Overwrite the link word of the list head (the last freed) the same way in both heaps.
    for (const bytes of [pair.fastBytes, pair.slowBytes]) {
      new DataView(bytes.buffer).setInt32(objects[5] - BASE, 0x7fff0001, true);
    }
    const before = pair.fastBytes.slice();
    const served = counts.allocServed;
    const result = both(pair, "alloc after a forged link", (h) => h.alloc(32));
    assert.equal(result.ok, false);
    assert.equal(!result.ok && result.code, "HEAP_CORRUPTION");
    assert.equal(counts.allocServed, served, "the fast path served a forged link");
    assert.deepEqual(pair.fastBytes, before, "the failed alloc wrote bytes");
    assertSameBytes(pair, "after the refused alloc");
  });
});
