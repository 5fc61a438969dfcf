/**
 * A hostile user of the public API, third round: what tests/adversary_test.ts
 * and the bad-input catalogs leave out. Heaps over odd views, high addresses
 * and several regions refuse every address near a live one (fractions, other
 * types, ± 2^31, ± 2^32, metadata) and change nothing; forged writes over
 * freed slab objects, freed blocks and headers never make the heap hand out
 * bytes of a live allocation; churn through caches, reserves and `trim()`
 * keeps the books; failed allocations at every layer change nothing; and
 * Workers free, resize and double-free each other's allocations of every
 * size, use a handle after `detach()` and carry on after one of them is
 * terminated mid-run. Every refused call must throw an exported error class
 * with a stable code, and leave `stats()` and every byte under the heap as
 * they were.
 */
import assert from "node:assert/strict";
import {
  AllocatorError,
  bufferMemory,
  mapIdentity,
  type ObjectCache,
  PhysicalAllocator,
  type PhysicalMemory,
} from "../mod.ts";
import { Random } from "./support/random.ts";
import { differenceFrom, type Picture, picture, refusesUnchanged } from "./support/refusals.ts";
import { RpcWorker } from "./support/rpc_worker.ts";

/**
 * Runs every call, each of which must throw an AllocatorError, then checks that the heap
 * still looks like `before` (a picture taken once: refused calls change nothing, so it
 * stays right for every later batch).
 */
function refuseAll(
  heap: PhysicalAllocator,
  views: readonly Uint8Array[],
  before: Picture,
  what: string,
  calls: Record<string, () => unknown>,
): void {
  for (const [name, call] of Object.entries(calls)) {
    let thrown: unknown = null;
    try {
      call();
    } catch (error) {
      thrown = error;
    }
    assert.ok(thrown !== null, `${what} ${name}: expected a throw`);
    assert.ok(thrown instanceof AllocatorError, `${what} ${name}: got ${thrown}`);
  }
  const difference = differenceFrom(heap, views, before);
  assert.equal(difference, null, `${what}: refused calls changed the heap: ${difference}`);
}

function assertStatsIdentity(heap: PhysicalAllocator, what: string): void {
  const s = heap.stats();
  assert.equal(
    s.totalBytes,
    s.freeBytes + s.usedBytes + s.overheadBytes + s.skippedBytes,
    `${what}: totalBytes = freeBytes + usedBytes + overheadBytes + skippedBytes`,
  );
}

const hex = (address: number): string => `0x${address.toString(16)}`;
const MIB = 1 << 20;

/** Heaps placed where the fast paths do their address arithmetic differently. */
const PLACEMENTS: readonly {
  name: string;
  make: () => { heap: PhysicalAllocator; views: Uint8Array[] };
}[] = [
  {
    name: "a view at byte offset 4 of odd length",
    make: () => {
      const buffer = new ArrayBuffer(2 * MIB + 64);
      const heap = PhysicalAllocator.fromBuffer(new Uint8Array(buffer, 4, 2 * MIB + 5));
      return { heap, views: [new Uint8Array(buffer)] };
    },
  },
  {
    name: "a view at byte offset 12 whose window crosses 2^31",
    make: () => {
      const buffer = new ArrayBuffer(2 * MIB + 64);
      const heap = PhysicalAllocator.fromBuffer(new Uint8Array(buffer, 12, 2 * MIB + 3), {
        baseAddress: 0x7ff0_0000,
      });
      return { heap, views: [new Uint8Array(buffer)] };
    },
  },
  {
    name: "buffer memory at 64 GiB",
    make: () => {
      const memory = bufferMemory([{ start: 64 * 2 ** 30, length: 2 * MIB }]);
      return { heap: new PhysicalAllocator(memory), views: [memory.regions[0].bytes] };
    },
  },
  {
    name: "buffer memory at 2^48 - 1 GiB",
    make: () => {
      const memory = bufferMemory([{ start: 2 ** 48 - 2 ** 30, length: 2 * MIB }]);
      return { heap: new PhysicalAllocator(memory), views: [memory.regions[0].bytes] };
    },
  },
  {
    name: "three regions, one at an odd start",
    make: () => {
      const memory = bufferMemory([
        { start: 0x1000, length: MIB + 24 },
        { start: 0x20_0000, length: 2 * MIB },
        { start: 0x60_0008, length: 8192 },
      ]);
      return { heap: new PhysicalAllocator(memory), views: [wholeBuffer(memory)] };
    },
  },
];

function wholeBuffer(memory: PhysicalMemory): Uint8Array {
  return new Uint8Array(memory.regions[0].bytes.buffer as ArrayBuffer);
}

/** Allocations of every layer: slab classes, mid classes, blocks, page runs, a named cache's. */
function allocateEveryKind(
  heap: PhysicalAllocator,
): { live: Map<number, number>; freed: number[]; cache: ObjectCache } {
  const live = new Map<number, number>();
  const cache = heap.createCache("probe", 40);
  for (
    const [sizeBytes, alignBytes] of [
      [8],
      [24],
      [256],
      [264],
      [512],
      [513],
      [4096],
      [4096, 4096],
      [
        5000,
      ],
      [70000],
      [64, 64],
    ]
  ) {
    live.set(heap.alloc(sizeBytes, alignBytes), sizeBytes);
    live.set(heap.alloc(sizeBytes, alignBytes), sizeBytes);
  }
  live.set(heap.allocPages(1), 8192);
  for (let i = 0; i < 3; i++) live.set(cache.alloc(), 40);
  const freed: number[] = [];
  let i = 0;
  for (const address of [...live.keys()]) {
    if (i++ % 3 !== 0) continue;
    try {
      heap.free(address);
    } catch {
      cache.free(address);
    }
    live.delete(address);
    freed.push(address);
  }
  return { live, freed, cache };
}

Deno.test("odd views, high addresses and several regions refuse every address near a live one", () => {
  for (const placement of PLACEMENTS) {
    const { heap, views } = placement.make();
    const { live, freed, cache } = allocateEveryKind(heap);
    const candidates = new Set<number>();
    for (const address of live.keys()) {
      for (const delta of [1, -8, 8, 2 ** 31, -(2 ** 31), 2 ** 32, -(2 ** 32), 2 ** 53]) {
        candidates.add(address + delta);
      }
    }
    for (const address of freed) candidates.add(address);
    for (const run of heap.layerRuns()) {
      candidates.add(run.address + 8).add(run.address + run.sizeBytes - 8).add(run.chunk - 8);
    }
    for (const block of heap.blocks()) candidates.add(block.address).add(block.address + 16);
    const before = picture(heap, views);
    for (const address of candidates) {
      if (live.has(address)) continue;
      refuseAll(heap, views, before, `${placement.name}: ${hex(address)}`, {
        free: () => heap.free(address),
        realloc: () => heap.realloc(address, 5000),
        sizeOf: () => heap.sizeOf(address),
        capacityOf: () => heap.capacityOf(address),
        bytes: () => heap.bytes(address),
        freePages: () => heap.freePages(address),
        "cache.free": () => cache.free(address),
      });
    }
    for (const [address, sizeBytes] of live) assert.equal(heap.sizeOf(address), sizeBytes);
    heap.check();
    assertStatsIdentity(heap, placement.name);
  }
});

Deno.test("a live address as a fraction, a string, a Number, a BigInt or an array is refused", () => {
  for (const placement of PLACEMENTS) {
    const { heap, views } = placement.make();
    const { live, cache } = allocateEveryKind(heap);
    const before = picture(heap, views);
    for (const address of live.keys()) {
      const ulp = Math.max(2 ** -20, address * 2 ** -52);
      const forms: unknown[] = [
        address + 0.5,
        address - 0.5,
        address + ulp * 2,
        address + 2 ** 32 + 0.5,
        String(address),
        new Number(address),
        BigInt(address),
        [address],
      ];
      for (const form of forms) {
        const value = form as number;
        refuseAll(heap, views, before, `${placement.name}: ${hex(address)} as ${String(form)}`, {
          free: () => heap.free(value),
          realloc: () => heap.realloc(value, 16),
          sizeOf: () => heap.sizeOf(value),
          bytes: () => heap.bytes(value),
          "cache.free": () => cache.free(value),
          "realloc to 16.5": () => heap.realloc(address, 16.5),
        });
      }
    }
    heap.check();
  }
});

Deno.test("identity-mapped heaps at 64 GiB and over a window longer than 2^31 bytes refuse near addresses", () => {
  const gib = 2 ** 30;
  const layouts = [
    [{ start: 64 * gib, length: 2 * MIB }],
    // A small region in the window's first 2 GiB (where the layers' chunks must lie) and a
    // large one above it.
    [{ start: 66 * gib, length: 64 * 1024 }, { start: 68 * gib + 2 * MIB, length: 4 * MIB }],
    // A region straddling the window's first 2 GiB.
    [{ start: 72 * gib, length: 64 * 1024 }, { start: 74 * gib - 2 * MIB, length: 6 * MIB }],
  ];
  for (const ranges of layouts) {
    using memory = mapIdentity(ranges);
    const heap = new PhysicalAllocator(memory);
    const views = memory.regions.map((region) => region.bytes);
    const what = `regions ${ranges.map((range) => hex(range.start)).join(", ")}`;
    const { live, freed, cache } = allocateEveryKind(heap);
    const before = picture(heap, views);
    const candidates = new Set<number>(freed);
    for (const address of live.keys()) {
      for (const delta of [8, -8, 2 ** 31, -(2 ** 31), 2 ** 32, -(2 ** 32)]) {
        candidates.add(address + delta);
      }
    }
    for (const address of candidates) {
      if (live.has(address)) continue;
      refuseAll(heap, views, before, `${what}: ${hex(address)}`, {
        free: () => heap.free(address),
        realloc: () => heap.realloc(address, 100),
        sizeOf: () => heap.sizeOf(address),
        bytes: () => heap.bytes(address),
        "cache.free": () => cache.free(address),
      });
    }
    // Churn through every layer; no two live allocations share a byte.
    const rnd = new Random(ranges.length);
    const sizes = [8, 24, 100, 256, 300, 512, 4096, 70000];
    for (let i = 0; i < 1500; i++) {
      const sizeBytes = rnd.pick(sizes);
      const address = heap.tryAlloc(sizeBytes, i % 16 === 6 ? 4096 : 8);
      if (address !== 0) {
        for (const [other, otherBytes] of live) {
          assert.ok(address >= other + otherBytes || other >= address + sizeBytes, what);
        }
        live.set(address, sizeBytes);
      }
      if (i % 3 === 2 && live.size > 0) {
        const victim = rnd.pick([...live.keys()]);
        if (live.get(victim) === 40) continue; // the named cache's objects stay
        heap.free(victim);
        live.delete(victim);
      }
    }
    for (const [address, sizeBytes] of live) assert.equal(heap.sizeOf(address), sizeBytes, what);
    heap.check();
    assertStatsIdentity(heap, what);
    heap.close();
  }
});

Deno.test("a destroyed cache's handle never reaches the cache made after it", () => {
  const bytes = new Uint8Array(4 * MIB);
  const heap = PhysicalAllocator.fromBuffer(bytes);
  const destroyed = heap.createCache("first", 64);
  const old = destroyed.alloc();
  destroyed.free(old);
  heap.destroyCache(destroyed);
  const next = heap.createCache("second", 64);
  const object = next.alloc();
  const other = next.alloc();
  for (
    const [what, call] of [
      ["free of the new cache's object", () => destroyed.free(object)],
      ["alloc", () => destroyed.alloc()],
      ["info", () => destroyed.info()],
      ["destroyCache again", () => heap.destroyCache(destroyed)],
    ] as const
  ) {
    assert.equal(refusesUnchanged(heap, [bytes], what, call), "CACHE_DESTROYED", what);
  }
  next.free(object);
  assert.equal(
    refusesUnchanged(heap, [bytes], "destroy in use", () => heap.destroyCache(next)),
    "CACHE_IN_USE",
  );
  // Another heap's cache of the same name, over the same addresses, is refused.
  const elsewhere = PhysicalAllocator.fromBuffer(new Uint8Array(4 * MIB));
  const twin = elsewhere.createCache("second", 64);
  twin.alloc();
  refusesUnchanged(
    heap,
    [bytes],
    "destroyCache of another heap's cache",
    () => heap.destroyCache(twin),
  );
  refusesUnchanged(heap, [bytes], "free through another heap's cache", () => twin.free(other));
  assert.equal(heap.sizeOf(other), 64);
  heap.check();
  elsewhere.check();
});

/** One seeded round of forged writes over freed memory, then use; no live bytes handed out twice. */
function forgeAndUse(
  seed: number,
  sizes: readonly number[],
  fastPath: boolean,
  codes: Map<string, number>,
): string[] {
  const base = 0x1000;
  const rnd = new Random(seed);
  const bytes = new Uint8Array(2 * MIB);
  const heap = PhysicalAllocator.fromBuffer(bytes, { fastPath, baseAddress: base });
  const data = new DataView(bytes.buffer);
  const live = new Map<number, number>();
  const untyped: string[] = [];
  const noteLive = (address: number, sizeBytes: number, what: string): void => {
    assert.ok(address >= base && address + sizeBytes <= base + bytes.length, `${what} outside`);
    for (const [other, capacity] of live) {
      assert.ok(
        address >= other + capacity || other >= address + sizeBytes,
        `seed ${seed}: ${what} at ${hex(address)} overlaps the live ${hex(other)}`,
      );
    }
    live.set(address, Math.max(sizeBytes, heap.capacityOf(address)));
  };
  const attempt = (call: () => void): void => {
    try {
      call();
    } catch (error) {
      if (error instanceof assert.AssertionError) throw error;
      if (!(error instanceof AllocatorError)) untyped.push(`seed ${seed}: ${error}`);
      else codes.set(error.code, (codes.get(error.code) ?? 0) + 1);
    }
  };
  const sizeBytes = rnd.pick(sizes);
  const count = rnd.int(10, 60);
  for (let i = 0; i < count; i++) noteLive(heap.alloc(sizeBytes), sizeBytes, "fill");
  const mine = [...live.keys()];
  const freed = mine.filter(() => rnd.next() < 0.5);
  for (const address of freed) {
    heap.free(address);
    live.delete(address);
  }
  if (freed.length === 0) return untyped;
  const word = (address: number, index: number) => address - base + 4 * index;
  for (let j = rnd.int(1, 3); j > 0; j--) {
    const target = rnd.pick(freed);
    const other = rnd.pick(freed);
    const low = data.getUint32(word(target, 0), true);
    switch (rnd.int(0, 7)) {
      case 0: // a zeroed free link
        data.setBigUint64(word(target, 0), 0n, true);
        break;
      case 1: // another free object's link, replayed
        data.setBigUint64(word(target, 0), data.getBigUint64(word(other, 0), true), true);
        break;
      case 2: // one bit of the link flipped
        data.setUint32(word(target, rnd.int(0, 1)), low ^ (1 << rnd.int(0, 31)), true);
        break;
      case 3: // the link moved by an object or a granule
        data.setUint32(word(target, 0), low + rnd.pick([8, -8, sizeBytes, -sizeBytes]), true);
        break;
      case 4: // a live object's offset and address
        data.setUint32(word(target, 0), rnd.pick(mine) - base, true);
        data.setUint32(word(target, 1), rnd.pick(mine), true);
        break;
      case 5: // the object's own offset
        data.setUint32(word(target, 0), target - base, true);
        break;
      case 6: // the 16 bytes before the payload (a block's header)
        data.setUint32(word(target, rnd.int(-4, -1)), rnd.int(0, 2 ** 32 - 1), true);
        break;
      default: // the second and third words (a block's free-list links)
        data.setUint32(word(target, rnd.int(2, 3)), rnd.pick(mine) - base, true);
    }
  }
  for (let i = 0; i < 3 * count; i++) {
    const roll = rnd.next();
    if (roll < 0.6) {
      const size = rnd.next() < 0.8 ? sizeBytes : rnd.pick(sizes);
      attempt(() => {
        const address = heap.tryAlloc(size);
        if (address !== 0) noteLive(address, size, `alloc ${size}`);
      });
    } else if (roll < 0.9 && live.size > 0) {
      const address = rnd.pick([...live.keys()]);
      attempt(() => {
        heap.free(address);
        live.delete(address);
      });
    } else if (roll < 0.95) {
      const address = rnd.pick(freed);
      attempt(() => {
        heap.free(address); // live again since, or refused
        live.delete(address);
      });
    } else if (live.size > 0) {
      const address = rnd.pick([...live.keys()]);
      const size = rnd.pick(sizes);
      attempt(() => {
        const moved = heap.realloc(address, size);
        live.delete(address);
        noteLive(moved, size, `realloc to ${size}`);
      });
    }
  }
  attempt(() => heap.check());
  attempt(() => heap.trim());
  attempt(() => assertStatsIdentity(heap, `seed ${seed}`));
  return untyped;
}

Deno.test("forged writes over freed slab objects never hand out live bytes", () => {
  const sizes = [8, 16, 24, 40, 64, 104, 128, 192, 256, 264, 300, 400, 512];
  const codes = new Map<string, number>();
  for (let seed = 1; seed <= 80; seed++) {
    assert.deepEqual(forgeAndUse(seed, sizes, seed % 2 === 0, codes), []);
  }
  assert.ok((codes.get("HEAP_CORRUPTION") ?? 0) > 0, "some forged link was reported");
});

Deno.test("forged writes over freed blocks and their headers never hand out live bytes", () => {
  const sizes = [600, 1000, 2048, 3000, 5000, 9000, 20000];
  const codes = new Map<string, number>();
  for (let seed = 1; seed <= 80; seed++) {
    assert.deepEqual(forgeAndUse(seed, sizes, seed % 2 === 0, codes), []);
  }
  assert.ok((codes.get("HEAP_CORRUPTION") ?? 0) > 0, "some forged header was reported");
});

Deno.test("churn through many classes, caches, destroyCache and trim keeps the books", () => {
  const sizes = [8, 16, 24, 40, 56, 72, 104, 136, 200, 256, 264, 336, 448, 512, 600, 4096, 70000];
  const heaps: { name: string; make: () => PhysicalAllocator }[] = [
    { name: "default", make: () => PhysicalAllocator.fromBuffer(new Uint8Array(3 * MIB)) },
    {
      name: "general paths",
      make: () => PhysicalAllocator.fromBuffer(new Uint8Array(3 * MIB), { fastPath: false }),
    },
    {
      name: "64 GiB, three regions",
      make: () =>
        new PhysicalAllocator(bufferMemory([
          { start: 64 * 2 ** 30, length: 1_200_000 },
          { start: 64 * 2 ** 30 + 2 * MIB, length: MIB },
          { start: 64 * 2 ** 30 + 4 * MIB, length: 5000 },
        ])),
    },
  ];
  for (const { name, make } of heaps) {
    for (let seed = 1; seed <= 3; seed++) {
      const rnd = new Random(seed);
      const heap = make();
      const fresh = JSON.stringify(heap.stats());
      const live = new Map<number, { sizeBytes: number; cache: ObjectCache | null }>();
      const caches: ObjectCache[] = [];
      const note = (address: number, sizeBytes: number, cache: ObjectCache | null) => {
        for (const [other, entry] of live) {
          assert.ok(
            address >= other + entry.sizeBytes || other >= address + sizeBytes,
            `${name} seed ${seed}: ${hex(address)} overlaps ${hex(other)}`,
          );
        }
        live.set(address, { sizeBytes, cache });
      };
      for (let step = 0; step < 1500; step++) {
        const roll = rnd.next();
        try {
          if (roll < 0.35) {
            const sizeBytes = rnd.pick(sizes);
            note(heap.alloc(sizeBytes), sizeBytes, null);
          } else if (roll < 0.65 && live.size > 0) {
            const address = rnd.pick([...live.keys()]);
            const { cache } = live.get(address)!;
            if (cache === null) heap.free(address);
            else cache.free(address);
            live.delete(address);
          } else if (roll < 0.72 && caches.length > 0) {
            const cache = rnd.pick(caches);
            note(cache.alloc(), cache.objectBytes, cache);
          } else if (roll < 0.75 && caches.length < 6) {
            caches.push(
              heap.createCache(`c${step}`, rnd.pick([8, 24, 100, 264, 700, 2000, 4096]), {
                align: rnd.pick([8, 16, 256, 4096]),
              }),
            );
          } else if (roll < 0.78 && caches.length > 0) {
            const cache = caches.splice(rnd.int(0, caches.length - 1), 1)[0];
            for (const [address, entry] of live) {
              if (entry.cache === cache) {
                cache.free(address);
                live.delete(address);
              }
            }
            heap.destroyCache(cache);
          } else if (roll < 0.8) {
            heap.trim();
          } else if (roll < 0.85 && live.size > 0) {
            const address = rnd.pick([...live.keys()]);
            if (live.get(address)!.cache !== null) continue;
            const sizeBytes = rnd.pick([8, 100, 300, 512, 513, 4096, 9000]);
            const moved = heap.realloc(address, sizeBytes);
            live.delete(address);
            note(moved, sizeBytes, null);
          } else if (roll < 0.9) {
            const order = rnd.int(0, 3);
            note(heap.allocPages(order), 4096 << order, null);
          }
        } catch (error) {
          assert.ok(error instanceof AllocatorError, `${name}: ${error}`);
          assert.equal(error.code, "OUT_OF_MEMORY", `${name}: ${error.message}`);
        }
        if (step % 100 === 0) {
          heap.check();
          assertStatsIdentity(heap, `${name} seed ${seed} step ${step}`);
          const stats = heap.stats();
          let usedBytes = 0;
          for (const entry of live.values()) usedBytes += entry.sizeBytes;
          assert.equal(stats.usedBytes, usedBytes, `${name} seed ${seed} step ${step}: usedBytes`);
          assert.equal(
            stats.usedBlocks,
            live.size,
            `${name} seed ${seed} step ${step}: usedBlocks`,
          );
        }
      }
      for (const [address, { cache }] of live) {
        if (cache === null) heap.free(address);
        else cache.free(address);
      }
      for (const cache of caches) heap.destroyCache(cache);
      heap.trim();
      heap.check();
      assert.equal(JSON.stringify(heap.stats()), fresh, `${name} seed ${seed}: trim restores`);
    }
  }
});

Deno.test("failed allocations of blocks, slabs, pages and reallocs change nothing", () => {
  const sizes = [8, 24, 64, 200, 264, 400, 512, 600, 2000, 4096, 8192, 40000, 70000, 300000];
  const configs: {
    name: string;
    make: (bytes: number) => { heap: PhysicalAllocator; view: Uint8Array };
  }[] = [
    { name: "tlsf", make: (n) => plainHeap(n, {}) },
    { name: "first-fit", make: (n) => plainHeap(n, { policy: "first-fit" }) },
    { name: "debug", make: (n) => plainHeap(n, { debug: true }) },
    {
      name: "two regions",
      make: (n) => {
        const memory = bufferMemory([{ start: 0x1000, length: n }, {
          start: 0x1000 + n + 0x10000,
          length: 300000,
        }]);
        return { heap: new PhysicalAllocator(memory), view: wholeBuffer(memory) };
      },
    },
  ];
  let failures = 0;
  for (const { name, make } of configs) {
    for (let seed = 1; seed <= 6; seed++) {
      const rnd = new Random(seed);
      const { heap, view } = make(rnd.pick([MIB + 128 * 1024, 3 << 19]));
      // Named caches hold slabs and empty-slab reserves; their own alloc() is not asked here.
      const caches = [heap.createCache("a", 100), heap.createCache("b", 2000, { align: 64 })];
      const live: number[] = [];
      const request = (): () => number => {
        const roll = rnd.int(0, 5);
        const sizeBytes = rnd.pick(sizes);
        if (roll <= 2) return () => heap.alloc(sizeBytes);
        if (roll === 3) {
          const alignBytes = rnd.pick([16, 64, 4096, 8192]);
          return () => heap.alloc(sizeBytes, alignBytes);
        }
        if (roll === 4) {
          const order = rnd.int(0, 6);
          return () => heap.allocPages(order);
        }
        if (live.length === 0) return () => heap.alloc(sizeBytes);
        const index = rnd.int(0, live.length - 1);
        const newSize = sizeBytes * rnd.int(1, 4);
        return () => {
          const moved = heap.realloc(live[index], newSize);
          live.splice(index, 1);
          return moved;
        };
      };
      const cacheObjects: [ObjectCache, number][] = [];
      for (let i = 0; i < 300; i++) {
        try {
          live.push(request()());
          if (i % 10 === 0) {
            const cache = rnd.pick(caches);
            cacheObjects.push([cache, cache.alloc()]);
          }
        } catch (error) {
          assert.ok(error instanceof AllocatorError);
        }
      }
      for (const [cache, address] of cacheObjects) if (rnd.next() < 0.8) cache.free(address);
      for (let i = live.length - 1; i >= 0; i--) {
        if (rnd.next() < 0.6) heap.free(live.splice(i, 1)[0]);
      }
      if (seed % 2 === 0) heap.trim();
      for (let i = 0; i < 150; i++) {
        const call = request();
        const before = picture(heap, [view]);
        try {
          const address = call();
          assert.notEqual(address, 0);
          live.push(address);
        } catch (error) {
          assert.ok(error instanceof AllocatorError, `${name}: ${error}`);
          failures++;
          const difference = differenceFrom(heap, [view], before);
          assert.equal(
            difference,
            null,
            `${name} seed ${seed} call ${i}: ${error.code} but ${difference}`,
          );
          if (live.length > 0 && rnd.next() < 0.3) {
            heap.free(live.splice(rnd.int(0, live.length - 1), 1)[0]);
          }
        }
      }
      heap.check();
      assertStatsIdentity(heap, `${name} seed ${seed}`);
    }
  }
  assert.ok(failures > 100, `only ${failures} failed allocations were tried`);
});

function plainHeap(
  sizeBytes: number,
  options: { policy?: "first-fit"; debug?: boolean },
): { heap: PhysicalAllocator; view: Uint8Array } {
  const view = new Uint8Array(sizeBytes);
  return { heap: PhysicalAllocator.fromBuffer(view, options), view };
}

Deno.test("options whose getters answer differently on each read still give a working heap", () => {
  const flips: [string, unknown, unknown][] = [
    ["align", 8, 3],
    ["align", 4096, 8],
    ["policy", "tlsf", "first-fit"],
    ["policy", "first-fit", "bogus"],
    ["baseAddress", 0x1000, 0x1004],
    ["debug", false, true],
    ["debug", true, false],
    ["layers", true, false],
    ["fastPath", true, false],
    ["reinitialize", false, true],
  ];
  for (const [key, first, later] of flips) {
    let reads = 0;
    const options = Object.defineProperty({}, key, {
      enumerable: true,
      get: () => reads++ === 0 ? first : later,
    });
    let heap: PhysicalAllocator;
    try {
      heap = PhysicalAllocator.fromBuffer(new Uint8Array(2 * MIB), options);
    } catch (error) {
      assert.ok(error instanceof AllocatorError, `${key}: ${error}`);
      continue;
    }
    const addresses = [heap.alloc(8), heap.alloc(100), heap.alloc(5000), heap.alloc(4096, 4096)];
    for (const address of addresses) assert.equal(address % heap.defaultAlignBytes, 0, key);
    for (const address of addresses) heap.free(address);
    heap.check();
    heap.close();
  }
});

Deno.test("odd values are refused without being coerced, also when coercing would free", () => {
  const bytes = new Uint8Array(2 * MIB);
  const heap = PhysicalAllocator.fromBuffer(bytes);
  const victim = heap.alloc(40);
  const block = heap.alloc(5000);
  const cache = heap.createCache("odd", 24);
  const object = cache.alloc();
  let coerced = 0;
  const reentrant = {
    valueOf: () => (coerced++, heap.free(victim), 16),
    toString: () => (coerced++, heap.free(victim), "16"),
  };
  const throwing = {
    valueOf: () => {
      coerced++;
      throw new Error("valueOf");
    },
    [Symbol.toPrimitive]: () => {
      coerced++;
      throw new Error("toPrimitive");
    },
  };
  const trapping = new Proxy({}, {
    get: () => {
      coerced++;
      throw new Error("get trap");
    },
  });
  const values: unknown[] = [
    reentrant,
    throwing,
    trapping,
    Symbol("s"),
    16n,
    NaN,
    Infinity,
    2 ** 53,
  ];
  for (const value of values) {
    const v = value as number;
    const calls: Record<string, () => unknown> = {
      "alloc(v)": () => heap.alloc(v),
      "alloc(16, v)": () => heap.alloc(16, v),
      "tryAlloc(v)": () => heap.tryAlloc(v),
      "free(v)": () => heap.free(v),
      "realloc(v, 16)": () => heap.realloc(v, 16),
      "realloc(slab, v)": () => heap.realloc(victim, v),
      "realloc(block, v)": () => heap.realloc(block, v),
      "realloc(cache object, v)": () => heap.realloc(object, v),
      "sizeOf(v)": () => heap.sizeOf(v),
      "capacityOf(v)": () => heap.capacityOf(v),
      "bytes(v)": () => heap.bytes(v),
      "bytes(block, v)": () => heap.bytes(block, v),
      "allocPages(v)": () => heap.allocPages(v),
      "freePages(v)": () => heap.freePages(v),
      "cache.free(v)": () => cache.free(v),
      "createCache(v, 8)": () => heap.createCache(value as string, 8),
      "createCache(name, v)": () => heap.createCache("n", v),
      "createCache(name, 8, { align: v })": () => heap.createCache("n", 8, { align: v }),
      "reclaimSlot(v)": () => heap.reclaimSlot(v),
    };
    for (const [name, call] of Object.entries(calls)) {
      refusesUnchanged(heap, [bytes], `${name} with ${String(typeof value)}`, call);
    }
  }
  assert.equal(coerced, 0, "no value was coerced");
  assert.equal(heap.sizeOf(victim), 40);
  heap.check();
});

/** A Worker that runs one call of its handle on a shared heap per message. */
const WORKER_SOURCE = `
import { AllocatorError, PhysicalAllocator } from ${
  JSON.stringify(new URL("../mod.ts", import.meta.url).href)
};
let heap = null;
self.onmessage = ({ data: { id, call, args } }) => {
  try {
    let result;
    switch (call) {
      case "attach": heap = PhysicalAllocator.attach(args[0]); result = heap.workerSlot; break;
      case "alloc": result = heap.alloc(args[0], args[1] ?? 8); break;
      case "allocPages": result = heap.allocPages(args[0]); break;
      case "free": heap.free(args[0]); break;
      case "realloc": result = heap.realloc(args[0], args[1]); break;
      case "sizeOf": result = heap.sizeOf(args[0]); break;
      case "fill": heap.bytes(args[0]).fill(args[1]); break;
      case "read": result = [...heap.bytes(args[0])]; break;
      case "check": heap.check(); break;
      case "detach": heap.detach(); break;
      case "stats": result = heap.stats().usedBlocks; break;
      case "churn": {
        const end = Date.now() + args[0];
        const live = [];
        const sizes = [8, 24, 64, 200, 300, 512, 1000, 4096, 70000];
        let n = 0;
        while (Date.now() < end) {
          if (live.length > 40 || (live.length > 0 && (n & 1))) heap.free(live.splice((n * 7) % live.length, 1)[0]);
          else live.push(heap.alloc(sizes[n % sizes.length]));
          n++;
        }
        for (const address of live) heap.free(address);
        result = n;
        break;
      }
      case "spin": {
        // Churn in batches, each ended by a heartbeat and a turn of the event loop: Deno's
        // terminate() stops a Worker only at such a turn (a Worker in an endless loop of
        // calls keeps running, and keeps using its slot, after terminate() returns).
        const beats = new Int32Array(args[0]);
        self.postMessage({ id, result: "spinning" });
        const live = [];
        const sizes = [8, 24, 64, 200, 300, 512, 1000, 4096, 70000];
        let n = 0;
        const batch = () => {
          for (let i = 0; i < 64; i++, n++) {
            if (live.length > 40 || (live.length > 0 && (n & 1))) heap.free(live.splice((n * 7) % live.length, 1)[0]);
            else live.push(heap.alloc(sizes[n % sizes.length]));
          }
          Atomics.add(beats, 0, 1);
          setTimeout(batch, 0);
        };
        batch();
        return;
      }
    }
    self.postMessage({ id, result });
  } catch (error) {
    const typed = error instanceof AllocatorError;
    self.postMessage({ id, error: { code: typed ? error.code : "UNTYPED", message: String(error) } });
  }
};`;

/** A Worker holding its own handle on a shared heap, driven call by call. */
class HeapWorker extends RpcWorker {
  constructor() {
    super(WORKER_SOURCE);
  }
}

Deno.test("Workers free, resize and double-free each other's allocations of every size", async () => {
  const memory = new SharedArrayBuffer(4 * MIB);
  using heap = PhysicalAllocator.fromBuffer(memory, { lockTimeoutMs: 1000 });
  const a = new HeapWorker();
  const b = new HeapWorker();
  try {
    await a.ok("attach", memory);
    await b.ok("attach", memory);
    const kinds: [string, unknown[], number][] = [];
    for (const size of [1, 24, 256, 264, 300, 512, 513, 3000, 4096, 70000]) {
      kinds.push(["alloc", [size], size]);
    }
    kinds.push(["alloc", [4096, 4096], 4096], ["alloc", [64, 64], 64]);
    kinds.push(["allocPages", [0], 4096], ["allocPages", [2], 16384]);
    for (let round = 0; round < 3; round++) {
      for (const [call, args, sizeBytes] of kinds) {
        const what = `${call}(${args}) round ${round}`;
        const address = await a.ok(call, ...args) as number;
        await a.ok("fill", address, 0x5a);
        assert.equal(await b.ok("sizeOf", address), sizeBytes, what);
        assert.ok((await b.ok("read", address) as number[]).every((x) => x === 0x5a), what);
        let last = address;
        if (round > 0) {
          const newSize = round === 1 ? 2000 : 16;
          last = await b.ok("realloc", address, newSize) as number;
          const kept = Math.min(newSize, sizeBytes);
          const payload = (await a.ok("read", last) as number[]).slice(0, kept);
          assert.ok(payload.every((x) => x === 0x5a), `${what}: realloc kept the payload`);
        }
        await b.ok("free", last);
        for (const worker of [a, b]) {
          await worker.refused(["DOUBLE_FREE", "INVALID_FREE"], "free", last);
          await worker.refused(["INVALID_ADDRESS", "DOUBLE_FREE", "INVALID_FREE"], "sizeOf", last);
          await worker.refused(["DOUBLE_FREE", "INVALID_FREE"], "realloc", last, 50);
        }
        assert.throws(() => heap.free(last), AllocatorError);
      }
    }
    // Frees that land in a Worker's cache: the other Worker's and the owner's second free.
    for (const size of [8, 24, 300, 1000, 4096]) {
      const addresses: number[] = [];
      for (let i = 0; i < 5; i++) addresses.push(await a.ok("alloc", size) as number);
      for (const address of addresses) await a.ok("free", address);
      for (const address of addresses) await b.refused("DOUBLE_FREE", "free", address);
      for (const address of addresses) await a.refused("DOUBLE_FREE", "free", address);
    }
    const [countA, countB] = await Promise.all([a.ok("churn", 150), b.ok("churn", 150)]);
    assert.ok((countA as number) > 0 && (countB as number) > 0);
    await a.ok("check");
    assert.equal(heap.stats().usedBlocks, 0);
    assertStatsIdentity(heap, "after the Workers");
    // A detached handle refuses every call; its allocation stays the others' to free.
    const kept = await b.ok("alloc", 100) as number;
    await b.ok("detach");
    for (const call of ["alloc", "free", "sizeOf", "check", "detach", "stats"]) {
      await b.refused("HEAP_DETACHED", call, call === "alloc" ? 8 : kept);
    }
    await a.ok("free", kept);
    heap.check();
  } finally {
    a.worker.terminate();
    b.worker.terminate();
  }
});

Deno.test("a Worker terminated mid-run leaves a heap the others keep using", async () => {
  for (let trial = 0; trial < 3; trial++) {
    const memory = new SharedArrayBuffer(4 * MIB);
    using heap = PhysicalAllocator.fromBuffer(memory, { lockTimeoutMs: 150 });
    const survivor = new HeapWorker();
    const victim = new HeapWorker();
    const beats = new Int32Array(new SharedArrayBuffer(4));
    try {
      await survivor.ok("attach", memory);
      const slot = await victim.ok("attach", memory) as number;
      await victim.ok("spin", beats.buffer);
      // The survivor works beside the victim, which is terminated meanwhile.
      const churning = survivor.call("churn", 80);
      await new Promise((resolve) => setTimeout(resolve, 20 + 15 * trial));
      victim.worker.terminate();
      const churned = await churning;
      assert.equal(churned.error, undefined, churned.error?.message);
      // Only once its heartbeat stopped is the victim surely gone.
      let last = Atomics.load(beats, 0);
      for (let quietMs = 0, waitedMs = 0; quietMs < 50; waitedMs += 10) {
        assert.ok(waitedMs < 3000, "the terminated Worker stopped");
        await new Promise((resolve) => setTimeout(resolve, 10));
        const now = Atomics.load(beats, 0);
        quietMs = now === last ? quietMs + 10 : 0;
        last = now;
      }
      assert.ok(last > 0, "the victim ran");
      heap.reclaimSlot(slot);
      assert.equal(heap.attachedWorkers, 2);
      heap.check();
      const after = await survivor.call("churn", 40);
      assert.equal(after.error, undefined, after.error?.message);
      heap.check();
      assertStatsIdentity(heap, `trial ${trial}`);
    } finally {
      survivor.worker.terminate();
      victim.worker.terminate();
    }
  }
});
