/**
 * The sixth adversarial round's probes, written from `mod.ts` and the README
 * alone: one random program of every public call run under every combination
 * of heap options (policy, native path, fast paths, debug mode, layers,
 * default alignment, base address) in lockstep; debug mode's guards and
 * poison over slab objects and blocks; and the fifth round's fixes probed
 * again (inputs read once, format detection, identity gaps, shrunk resizable
 * buffers, large alignments under both policies, page runs shrunk in place).
 * Every test here passes: what failed is reported with a reproduction instead.
 */
import assert from "node:assert/strict";
import {
  AllocatorError,
  bufferMemory,
  detectMemoryMapFormat,
  HeapCorruptionError,
  mapIdentity,
  MemoryDetachedError,
  MemoryMap,
  MemoryMapError,
  normalizeMemoryMap,
  type ObjectCache,
  parseMemoryMap,
  PhysicalAllocator,
  type PolicyName,
} from "../mod.ts";
import { Random } from "./support/random.ts";

const MIB = 1 << 20;

/** The options one lockstep group varies; native and fastPath vary inside a group. */
interface Combination {
  readonly policy: PolicyName;
  readonly debug: boolean;
  readonly layers: boolean;
  readonly align: number;
  readonly baseAddress: number;
}

/** A live allocation the program made, with the byte that fills its payload. */
interface Live {
  address: number;
  sizeBytes: number;
  fill: number;
  readonly cache: number;
  pages: boolean;
}

/** A request size from each layer's range: slab, page multiples, blocks, large, almost pages. */
function requestBytes(random: Random): number {
  const kind = random.next();
  if (kind < 0.35) return 1 + random.int(0, 511);
  if (kind < 0.55) return 4096 * (1 + random.int(0, 3));
  if (kind < 0.7) return 513 + random.int(0, 7999);
  if (kind < 0.8) return 65536 + random.int(0, 199999);
  return 4096 * (1 + random.int(0, 19)) - random.int(0, 2) * 8;
}

/**
 * Runs one seeded program of every public call and returns what a caller
 * observes, addresses relative to the base, so heaps of one group can be
 * compared. Checks on the way: payloads keep their fill, live payloads never
 * overlap, the stats identity and its per-layer split hold, every error is an
 * AllocatorError, and freeing everything then trim() gives the fresh stats.
 */
function runProgram(
  options: Combination & { native: false | "auto" | true; fastPath: boolean },
  seed: number,
  operations: number,
): string[] {
  const heap = PhysicalAllocator.fromBuffer(new Uint8Array(4 * MIB), options);
  const base = options.baseAddress;
  const random = new Random(seed);
  const log: string[] = [];
  const live: Live[] = [];
  const caches: (ObjectCache | null)[] = [];
  const relative = (address: number) => address === 0 ? 0 : address - base;
  const attempt = (label: string, call: () => unknown): unknown => {
    try {
      const value = call();
      log.push(`${label}=${typeof value === "number" ? relative(value) : JSON.stringify(value)}`);
      return value;
    } catch (error) {
      assert.ok(error instanceof AllocatorError, `${label}: untyped ${error}`);
      log.push(`${label}!${error.code}`);
      return undefined;
    }
  };
  const place = (address: number, sizeBytes: number, cache: number, pages: boolean) => {
    const entry = { address, sizeBytes, fill: 1 + random.int(0, 249), cache, pages };
    heap.bytes(address).fill(entry.fill);
    live.push(entry);
  };
  const verify = (entry: Live, where: string) => {
    const bytes = heap.bytes(entry.address);
    assert.equal(bytes.length, entry.sizeBytes, where);
    assert.ok(bytes.every((byte) => byte === entry.fill), `${where}: payload changed`);
  };
  const books = (where: string) => {
    const s = heap.stats();
    assert.equal(s.totalBytes, s.freeBytes + s.usedBytes + s.overheadBytes + s.skippedBytes, where);
    assert.equal(s.usedBytes, live.reduce((sum, entry) => sum + entry.sizeBytes, 0), where);
    assert.equal(s.usedBlocks, live.length, where);
    if (s.layers !== null) {
      assert.equal(s.freeBytes, s.blocks.freeBytes + s.layers.freeBytes, where);
      assert.equal(s.usedBytes, s.blocks.usedBytes + s.layers.usedBytes, where);
      assert.equal(s.overheadBytes, s.blocks.overheadBytes + s.layers.overheadBytes, where);
    }
    return s;
  };
  for (let step = 0; step < operations; step++) {
    const where = `step ${step}`;
    const kind = random.next();
    if (kind < 0.3) {
      const sizeBytes = requestBytes(random);
      const align = random.pick([0, 0, 0, 8, 16, 64, 256, 4096, 4096, 8192, 65536]);
      const tried = random.next() < 0.3;
      const address = attempt(`${where} alloc(${sizeBytes},${align},${tried})`, () => {
        if (align === 0) return tried ? heap.tryAlloc(sizeBytes) : heap.alloc(sizeBytes);
        return tried ? heap.tryAlloc(sizeBytes, align) : heap.alloc(sizeBytes, align);
      }) as number | undefined;
      if (address) {
        assert.equal(address % (align || options.align), 0, where);
        place(address, sizeBytes, -1, false);
      }
    } else if (kind < 0.45 && live.length > 0) {
      const index = random.int(0, live.length - 1);
      const entry = live[index];
      verify(entry, where);
      const before = log.length;
      if (entry.cache >= 0) {
        attempt(`${where} cache.free`, () => caches[entry.cache]!.free(entry.address));
      } else if (entry.pages && random.next() < 0.5) {
        attempt(`${where} freePages`, () => heap.freePages(entry.address));
      } else attempt(`${where} free`, () => heap.free(entry.address));
      assert.ok(
        !log[before].includes("!"),
        `${where}: a live allocation was refused: ${log[before]}`,
      );
      live.splice(index, 1);
    } else if (kind < 0.62 && live.length > 0) {
      const entry = random.pick(live);
      if (entry.cache >= 0) continue;
      const sizeBytes = requestBytes(random);
      const moved = attempt(
        `${where} realloc(${sizeBytes})`,
        () => heap.realloc(entry.address, sizeBytes),
      );
      if (typeof moved === "number") {
        const kept = heap.bytes(moved).subarray(0, Math.min(sizeBytes, entry.sizeBytes));
        assert.ok(kept.every((byte) => byte === entry.fill), `${where}: realloc lost bytes`);
        entry.address = moved;
        entry.sizeBytes = sizeBytes;
        entry.pages = false; // freed with free() from now on: a moved run is a block or an object
        heap.bytes(moved).fill(entry.fill);
      }
    } else if (kind < 0.7) {
      const order = random.int(0, 3);
      const address = attempt(`${where} allocPages(${order})`, () => heap.allocPages(order));
      if (typeof address === "number") {
        assert.equal(address % 4096, 0, where);
        place(address, 4096 << order, -1, true);
      }
    } else if (kind < 0.74) {
      const objectBytes = random.pick([8, 24, 100, 200, 1000, 4000]);
      const align = random.pick([8, 64, 512, 4096]);
      const name = `cache-${caches.length}`;
      const cache = attempt(
        `${where} createCache(${objectBytes},${align})`,
        () => heap.createCache(name, objectBytes, { align }),
      );
      if (cache !== undefined) caches.push(cache as ObjectCache);
    } else if (kind < 0.84 && caches.length > 0) {
      const index = random.int(0, caches.length - 1);
      const cache = caches[index];
      if (cache === null) continue;
      const address = attempt(`${where} cache.alloc`, () => cache.alloc());
      if (typeof address === "number") place(address, cache.objectBytes, index, false);
    } else if (kind < 0.86 && caches.length > 0) {
      const index = random.int(0, caches.length - 1);
      const cache = caches[index];
      if (cache === null) continue;
      const objects = live.filter((entry) => entry.cache === index).length;
      attempt(`${where} destroyCache(${objects})`, () => heap.destroyCache(cache));
      if (objects === 0) caches[index] = null;
    } else if (kind < 0.88) {
      attempt(`${where} trim`, () => heap.trim());
    } else if (kind < 0.93 && live.length > 0) {
      const entry = random.pick(live);
      attempt(`${where} sizeOf`, () => heap.sizeOf(entry.address));
      attempt(`${where} capacityOf`, () => heap.capacityOf(entry.address) >= entry.sizeBytes);
    } else {
      heap.check();
      for (const entry of live) verify(entry, where);
      const s = books(where);
      log.push(
        `${where} stats ${s.freeBytes} ${s.usedBytes} ${s.overheadBytes} ${s.largestFreeBytes}`,
      );
      const blocks = [...heap.blocks()].map((b) =>
        `${relative(b.address)}:${b.sizeBytes}:${b.free}`
      );
      log.push(`${where} blocks ${blocks.join(",")}`);
      const runs = [...heap.layerRuns()].map((r) =>
        `${relative(r.address)}:${r.sizeBytes}:${r.kind}`
      );
      log.push(`${where} runs ${runs.join(",")}`);
    }
    const sorted = [...live].sort((a, b) => a.address - b.address);
    for (let i = 1; i < sorted.length; i++) {
      assert.ok(
        sorted[i - 1].address + sorted[i - 1].sizeBytes <= sorted[i].address,
        `${where}: live payloads overlap`,
      );
    }
  }
  heap.check();
  for (const entry of live) verify(entry, "end");
  books("end");
  for (const entry of live) {
    entry.cache >= 0 ? caches[entry.cache]!.free(entry.address) : heap.free(entry.address);
  }
  live.length = 0;
  for (const cache of caches) if (cache !== null) heap.destroyCache(cache);
  heap.trim();
  heap.check();
  const after = books("after everything was freed");
  const fresh = PhysicalAllocator.fromBuffer(new Uint8Array(4 * MIB), options);
  const freshStats = fresh.stats();
  fresh.close();
  heap.close();
  assert.deepEqual(
    [after.freeBytes, after.overheadBytes, after.freeBlocks],
    [freshStats.freeBytes, freshStats.overheadBytes, freshStats.freeBlocks],
    "freeing everything and trim() restores the fresh stats",
  );
  return log;
}

Deno.test("one random program of every public call answers alike under every native and fast-path choice, for every other option", () => {
  let groups = 0;
  for (const policy of ["tlsf", "first-fit"] as const) {
    for (const layers of [true, false]) {
      for (const debug of [false, true]) {
        for (const align of [8, 4096]) {
          for (const baseAddress of [4096, 2 ** 52]) {
            const combination = { policy, layers, debug, align, baseAddress };
            const seed = 600 + groups++;
            const reference = runProgram(
              { ...combination, native: false, fastPath: true },
              seed,
              100,
            );
            for (
              const [native, fastPath] of [[false, false], [true, true], ["auto", false]] as const
            ) {
              const log = runProgram({ ...combination, native, fastPath }, seed, 100);
              const at = log.findIndex((line, i) => line !== reference[i]);
              assert.equal(
                at,
                -1,
                `${JSON.stringify({ ...combination, native, fastPath })}: ${log[at]} != ${
                  reference[at]
                }`,
              );
              assert.equal(log.length, reference.length);
            }
          }
        }
      }
    }
  }
});

/** One cache per heap for the probes that make two objects of it. */
const cacheOf = new WeakMap<PhysicalAllocator, ObjectCache>();

/** Writes one byte just past an allocation's requested size (where a guard should be). */
function overflowByOne(heap: PhysicalAllocator, address: number): void {
  const view = heap.bytes(address);
  new Uint8Array(view.buffer, view.byteOffset, view.length + 1)[view.length] ^= 0x5a;
}

const expectCorruption = (call: () => unknown, address: number, what: string) =>
  assert.throws(call, (error: unknown) => {
    assert.ok(error instanceof HeapCorruptionError, `${what}: ${error}`);
    assert.match(error.message, new RegExp(`0x${address.toString(16)}\\b`), what);
    return true;
  });

// Left out, each reported with a reproduction: page runs (no guard in debug mode:
// repro/debug_page_runs_unguarded.ts) and cache objects rounded up to an alignment of 256 or more
// (repro/debug_cache_align_no_guard.ts).
Deno.test("debug mode reports a one-byte overflow past slab objects, cache objects and blocks at check, free and realloc, naming the address", () => {
  const kinds = [
    { name: "a kmalloc object", make: (heap: PhysicalAllocator) => heap.alloc(40) },
    { name: "an aligned kmalloc object", make: (heap: PhysicalAllocator) => heap.alloc(64, 64) },
    {
      name: "a cache object aligned to 64",
      make: (heap: PhysicalAllocator) => {
        if (!cacheOf.has(heap)) cacheOf.set(heap, heap.createCache("c", 100, { align: 64 }));
        return cacheOf.get(heap)!.alloc();
      },
    },
    { name: "a block", make: (heap: PhysicalAllocator) => heap.alloc(3000) },
    { name: "a block aligned to 8192", make: (heap: PhysicalAllocator) => heap.alloc(100, 8192) },
    { name: "a large block", make: (heap: PhysicalAllocator) => heap.alloc(70_000) },
    {
      name: "a block of a heap without layers",
      make: (heap: PhysicalAllocator) => heap.alloc(40),
      layers: false,
    },
  ];
  for (const policy of ["tlsf", "first-fit"] as const) {
    for (const kind of kinds) {
      // realloc of a slab object with a damaged guard is left out: it throws, but after it allocated
      // the new place (repro/debug_realloc_leaks_on_guard_error.ts).
      const slab = kind.name.includes("object");
      for (
        const next of slab ? ["check", "free"] as const : ["check", "free", "realloc"] as const
      ) {
        const heap = PhysicalAllocator.fromBuffer(new Uint8Array(8 * MIB), {
          debug: true,
          policy,
          layers: kind.layers ?? true,
        });
        const address = kind.make(heap);
        kind.make(heap); // a neighbour of the same kind
        const before = heap.stats();
        overflowByOne(heap, address);
        const call = next === "check"
          ? () => heap.check()
          : next === "free"
          ? () => heap.free(address)
          : () => heap.realloc(address, 5000);
        expectCorruption(call, address, `${policy}: ${kind.name}, then ${next}`);
        assert.deepEqual(
          heap.stats(),
          before,
          `${kind.name}: the refused ${next} changed the books`,
        );
        heap.close();
      }
    }
  }
});

// Left out: bytes 4-7 and 12-15 of a freed block (its links' high words) are not checked
// (repro/debug_link_high_words.ts), nor freed page runs (repro/debug_page_runs_unguarded.ts).
Deno.test("debug mode reports writes after free into slab objects and into block bodies at the next check and alloc", () => {
  for (const policy of ["tlsf", "first-fit"] as const) {
    for (
      const [name, sizeBytes, align, offset] of [
        ["a slab object", 40, 8, 5],
        ["an aligned slab object", 64, 64, 0],
        ["a block body", 3000, 8, 100],
        ["an aligned block", 100, 8192, 16],
      ] as const
    ) {
      for (const next of ["check", "alloc"] as const) {
        const heap = PhysicalAllocator.fromBuffer(new Uint8Array(8 * MIB), { debug: true, policy });
        heap.alloc(sizeBytes, align);
        const address = heap.alloc(sizeBytes, align);
        heap.alloc(sizeBytes, align);
        const view = heap.bytes(address);
        heap.free(address);
        view[offset] ^= 0x11;
        assert.throws(
          () => next === "check" ? heap.check() : heap.alloc(sizeBytes, align),
          HeapCorruptionError,
          `${policy}: ${name} written at offset ${offset}, then ${next}`,
        );
        heap.close();
      }
    }
  }
});

Deno.test("debug mode raises no false alarm on a correct program: reallocs that shrink and grow, aligned requests, caches with align", () => {
  for (const policy of ["tlsf", "first-fit"] as const) {
    const heap = PhysicalAllocator.fromBuffer(new Uint8Array(8 * MIB), { debug: true, policy });
    const random = new Random(policy === "tlsf" ? 61 : 62);
    const caches = [8, 64, 512, 4096].map((align, i) =>
      heap.createCache(`aligned-${align}`, 24 + 100 * i, { align })
    );
    const live: { address: number; sizeBytes: number; fill: number; cache: ObjectCache | null }[] =
      [];
    for (let step = 0; step < 500; step++) {
      const kind = random.next();
      if (kind < 0.35 || live.length === 0) {
        const cache = random.next() < 0.3 ? random.pick(caches) : null;
        const sizeBytes = cache?.objectBytes ?? requestBytes(random);
        const address = cache
          ? cache.alloc()
          : heap.tryAlloc(sizeBytes, random.pick([8, 16, 128, 4096, 16384]));
        if (address === 0) continue;
        const fill = 1 + random.int(0, 249);
        heap.bytes(address).fill(fill);
        live.push({ address, sizeBytes, fill, cache });
      } else if (kind < 0.65) {
        const entry = random.pick(live);
        if (entry.cache !== null) continue;
        const sizeBytes = random.next() < 0.5
          ? 1 + random.int(0, entry.sizeBytes - 1)
          : requestBytes(random);
        const moved = heap.realloc(entry.address, sizeBytes);
        assert.ok(
          heap.bytes(moved).subarray(0, Math.min(sizeBytes, entry.sizeBytes)).every((b) =>
            b === entry.fill
          ),
        );
        Object.assign(entry, { address: moved, sizeBytes });
        heap.bytes(moved).fill(entry.fill);
      } else {
        const [entry] = live.splice(random.int(0, live.length - 1), 1);
        if (entry.cache !== null) entry.cache.free(entry.address);
        else heap.free(entry.address);
      }
      heap.check();
    }
    for (const entry of live) assert.ok(heap.bytes(entry.address).every((b) => b === entry.fill));
    heap.close();
  }
});

Deno.test("both policies refuse an aligned request only when no free block of blocks() holds it at its alignment", () => {
  for (const policy of ["tlsf", "first-fit"] as const) {
    for (const layers of [false, true]) {
      const heap = PhysicalAllocator.fromBuffer(new Uint8Array(4 * MIB), { policy, layers });
      const random = new Random(layers ? 63 : 64);
      const live: number[] = [];
      let refused = 0;
      for (let step = 0; step < 400; step++) {
        if (live.length > 0 && random.next() < 0.3) {
          heap.free(live.splice(random.int(0, live.length - 1), 1)[0]);
          continue;
        }
        const align = 2 ** (3 + random.int(0, 17));
        const sizeBytes = 1 + random.int(0, random.next() < 0.5 ? 4999 : 299_999);
        const address = heap.tryAlloc(sizeBytes, align);
        if (address !== 0) {
          assert.equal(address % align, 0);
          live.push(address);
          continue;
        }
        refused++;
        for (const block of heap.blocks()) {
          if (!block.free) continue;
          // A payload at an aligned address, with room for a block before it (or none) and after it.
          const low = block.address + 16;
          let payload = Math.ceil(low / align) * align;
          if (payload !== low && payload - low < 64) payload += align;
          assert.ok(
            payload + sizeBytes + 64 > block.address + block.sizeBytes,
            `${policy}: tryAlloc(${sizeBytes}, ${align}) = 0 but the free block at 0x${
              block.address.toString(16)
            } holds it`,
          );
        }
      }
      assert.ok(refused > 20, "the heap was filled");
      heap.check();
      heap.close();
    }
  }
});

Deno.test("realloc shrinks a page run in place in steps, keeping its bytes and giving frames back, also in debug mode", () => {
  for (const debug of [false, true]) {
    for (
      const make of [
        (h: PhysicalAllocator) => h.allocPages(3),
        (h: PhysicalAllocator) => h.alloc(32768, 4096),
      ]
    ) {
      const heap = PhysicalAllocator.fromBuffer(new Uint8Array(8 * MIB), { debug });
      const pages = make(heap);
      heap.bytes(pages).fill(7);
      let freeBytes = heap.stats().freeBytes;
      for (
        const [sizeBytes, framesBytes] of [
          [20000, 20480],
          [8192, 8192],
          [4097, 8192],
          [4096, 4096],
          [100, 4096],
        ]
      ) {
        assert.equal(heap.realloc(pages, sizeBytes), pages);
        assert.equal(heap.sizeOf(pages), sizeBytes);
        assert.ok(heap.bytes(pages).every((byte) => byte === 7));
        const s = heap.stats();
        assert.ok(s.freeBytes >= freeBytes, "no frame is taken by a shrink");
        assert.equal(s.usedBytes, sizeBytes);
        assert.equal(
          [...heap.layerRuns()].find((run) => run.address === pages)?.sizeBytes,
          framesBytes,
        );
        freeBytes = s.freeBytes;
        heap.check();
      }
      heap.free(pages);
      heap.trim();
      assert.equal(heap.stats().usedBytes, 0);
      heap.close();
    }
  }
});

Deno.test("a heap over a shrunk resizable buffer refuses every call and every walk begun before, under every option set", () => {
  for (
    const options of [{}, { layers: false }, { debug: true }, { policy: "first-fit" as const }, {
      native: true,
    }, { fastPath: false }]
  ) {
    const buffer = new ArrayBuffer(4 * MIB, { maxByteLength: 8 * MIB });
    const heap = PhysicalAllocator.fromBuffer(buffer, options);
    const small = heap.alloc(100);
    const pages = heap.alloc(8192, 4096);
    const large = heap.alloc(100_000);
    const blocks = heap.blocks();
    blocks.next();
    const runs = heap.layerRuns();
    runs.next();
    buffer.resize(2 * MIB);
    const calls: [string, () => unknown][] = [
      ["alloc", () => heap.alloc(10)],
      ["tryAlloc", () => heap.tryAlloc(10)],
      ["allocPages", () => heap.allocPages(0)],
      ["free", () => heap.free(small)],
      ["free large", () => heap.free(large)],
      ["freePages", () => heap.freePages(pages)],
      ["realloc", () => heap.realloc(small, 2000)],
      ["bytes", () => heap.bytes(small)],
      ["sizeOf", () => heap.sizeOf(small)],
      ["capacityOf", () => heap.capacityOf(large)],
      ["stats", () => heap.stats()],
      ["check", () => heap.check()],
      ["trim", () => heap.trim()],
      ["blocks", () => [...heap.blocks()]],
      ["blocks begun before", () => [...blocks]],
    ];
    if (heap.layersActive) {
      calls.push(["layerRuns", () => [...heap.layerRuns()]], [
        "layerRuns begun before",
        () => [...runs],
      ]);
      calls.push(["createCache", () => heap.createCache("late", 32)]);
    }
    for (const [name, call] of calls) {
      assert.throws(call, MemoryDetachedError, `${JSON.stringify(options)}: ${name}`);
    }
    buffer.resize(8 * MIB);
    assert.throws(() => heap.alloc(10), MemoryDetachedError, "after it grew back");
    heap.close();
  }
});

/** Wraps an object so that every property read is counted under `name.key`. */
function counted<T extends object>(name: string, target: T, reads: Map<string, number>): T {
  return new Proxy(target, {
    get(object, key, receiver) {
      const label = `${name}.${String(key)}`;
      reads.set(label, (reads.get(label) ?? 0) + 1);
      return Reflect.get(object, key, receiver);
    },
  });
}

function readTwice(reads: Map<string, number>): string[] {
  return [...reads].filter(([key, count]) => count > 1 && !key.endsWith("Symbol(Symbol.iterator)"))
    .map(([key]) => key);
}

Deno.test("memory maps, reservations, options and buffer ranges are read once, through Proxies on every level", () => {
  const reads = new Map<string, number>();
  const entries = () =>
    counted("entries", [
      counted("e0", { start: 0x100000, end: 0x800000, type: "usable" as const }, reads),
      counted("e1", { start: 0x200000, end: 0x300000, type: "reserved" as const }, reads),
      counted(
        "e2",
        { start: 0x900000, end: 0xa00000, type: "usable" as const, origin: "x" },
        reads,
      ),
    ], reads);
  const reservations = counted("reservations", [
    counted("r0", { start: 0x100000, length: 0x1000, label: "kernel" }, reads),
  ], reads);
  const options = counted("options", {
    mmapMinAddress: 4096,
    pageBytes: 4096,
    rejectOverlaps: false,
    reservations,
  }, reads);
  const { usable } = normalizeMemoryMap(entries(), options);
  assert.deepEqual(usable, [{ start: 0x101000, length: 0xff000 }, {
    start: 0x300000,
    length: 0x500000,
  }, { start: 0x900000, length: 0x100000 }]);
  assert.deepEqual(readTwice(reads), []);
  reads.clear();
  const map = new MemoryMap(entries());
  map.reserve(0x400000, 0x1000, "initrd");
  assert.equal(map.normalize({ mmapMinAddress: 4096 }).report.reservedBytes, 0x101000);
  assert.deepEqual(readTwice(reads), []);
  reads.clear();
  const memory = bufferMemory(
    counted("ranges", [
      counted("g0", { start: 0x1000, length: 0x1000 }, reads),
      counted("g1", { start: 0x3000, length: 0x2000 }, reads),
    ], reads),
  );
  assert.equal(memory.regions.length, 2);
  assert.deepEqual(readTwice(reads), []);
});

Deno.test("a getter that rewrites a later entry is read in order: reserved memory the map named is never usable", () => {
  const later: { start: number; end: number; type: "usable" | "reserved" } = {
    start: 0x200000,
    end: 0x300000,
    type: "reserved",
  };
  const earlier = {
    start: 0x100000,
    end: 0x800000,
    get type() {
      later.type = "usable";
      later.start = 0x150000;
      return "usable" as const;
    },
  };
  // The later entry is read after the getter ran: what it says then is what it is.
  const first = normalizeMemoryMap([earlier, later], { mmapMinAddress: 4096 });
  assert.deepEqual(first.usable, [{ start: 0x100000, length: 0x700000 }]);
  assert.equal(first.report.reservedBytes, 0);
  // Read before the getter ran, the reserved entry stays reserved.
  const reserved = { start: 0x200000, end: 0x300000, type: "reserved" as "usable" | "reserved" };
  const usable = {
    start: 0x100000,
    get end() {
      reserved.type = "usable";
      return 0x800000;
    },
    type: "usable" as const,
  };
  const second = normalizeMemoryMap([reserved, usable], { mmapMinAddress: 4096 });
  assert.deepEqual(second.usable, [{ start: 0x100000, length: 0x100000 }, {
    start: 0x300000,
    length: 0x500000,
  }]);
  for (
    const value of [
      { valueOf: () => 0x100000 },
      { [Symbol.toPrimitive]: () => 0x100000 },
      { toJSON: () => 0x100000 },
      Object(0x100000),
      Object(1n),
      "0x100000",
    ]
  ) {
    let coerced = false;
    if (typeof value !== "object") continue;
    const spy = new Proxy(value as object, {
      get(object, key, receiver) {
        if (key === Symbol.toPrimitive || key === "valueOf" || key === "toString") coerced = true;
        return Reflect.get(object, key, receiver);
      },
    });
    const probe = spy;
    const entry = [{ start: 0x100000, end: 0x200000, type: "usable" as const }];
    for (
      const call of [
        () =>
          normalizeMemoryMap([{
            start: probe as unknown as number,
            end: 0x200000,
            type: "usable",
          }]),
        () =>
          normalizeMemoryMap(entry, {
            reservations: [{ start: probe as unknown as number, length: 4096, label: "x" }],
          }),
        () => normalizeMemoryMap(entry, { mmapMinAddress: probe as unknown as number }),
        () => new MemoryMap(entry).reserve(probe as unknown as number, 4096, "x"),
      ]
    ) {
      assert.throws(call, MemoryMapError);
    }
    assert.ok(!coerced, "a hostile number is refused without being coerced");
  }
});

Deno.test("texts that look like two memory map formats are read as one, and never give usable memory the text does not name", () => {
  const cases: [string, string, number | null][] = [
    [
      "a JSON map followed by an E820 line",
      '[{"start":"0x100000","end":"0x1fffff","type":"usable"}]\nBIOS-e820: [mem 0x0-0xffffffff] usable',
      null,
    ],
    [
      "an E820 line followed by a JSON map",
      'BIOS-e820: [mem 0x0000000000100000-0x00000000001fffff] usable\n[{"start":0,"end":"0xffffffff","type":"usable"}]',
      0x100000,
    ],
    [
      "a sysfs type holding an E820 line",
      "0 0x100000 0x1fffff System RAM BIOS-e820: [mem 0x0-0xffffffff] usable",
      0,
    ],
    [
      "a sysfs comment holding an E820 line",
      "# BIOS-e820: [mem 0x0-0xffffffff] usable\n0 0x100000 0x1fffff System RAM",
      0x100000,
    ],
    [
      "a sysfs type holding a JSON map",
      '0 0x100000 0x1fffff [{"start":0,"end":"0xffffffff","type":"usable"}]',
      0,
    ],
    [
      "an E820 line whose type names two types",
      "BIOS-e820: [mem 0x0000000000100000-0x00000000001fffff] reserved usable",
      0,
    ],
    [
      "two E820 entries on one line",
      "BIOS-e820: [mem 0x100000-0x1fffff] reserved BIOS-e820: [mem 0x0-0xffffffff] usable",
      0,
    ],
    [
      "a dmesg timestamp before a JSON map",
      '[    0.000000] [{"start":0,"end":"0xffffffff","type":"usable"}]',
      null,
    ],
    [
      "a byte-order mark before JSON",
      '\ufeff[{"start":"0x100000","end":"0x1fffff","type":"usable"}]',
      0x100000,
    ],
  ];
  for (const [name, text, usableBytes] of cases) {
    detectMemoryMapFormat(text);
    if (usableBytes === null) {
      assert.throws(() => parseMemoryMap(text, "auto"), MemoryMapError, name);
      continue;
    }
    const { entries } = parseMemoryMap(text, "auto");
    assert.equal(
      normalizeMemoryMap(entries, { mmapMinAddress: 4096 }).report.usableBytes,
      usableBytes,
      name,
    );
  }
});

const IDENTITY_BASE = 0x7e60_0000_0000;

Deno.test({
  name:
    "identity windows around one another: closing the outer one keeps the inner one's memory, old gaps map again by identity",
  ignore: Deno.build.os !== "linux",
  fn() {
    const inner = mapIdentity([{ start: IDENTITY_BASE + 8 * MIB, length: 0x10000 }]);
    using innerHeap = new PhysicalAllocator(inner);
    const kept = innerHeap.alloc(1000);
    innerHeap.bytes(kept).fill(9);
    const outer = mapIdentity([
      { start: IDENTITY_BASE, length: 0x10000 },
      { start: IDENTITY_BASE + 4 * MIB, length: 0x10000 },
      { start: IDENTITY_BASE + 16 * MIB, length: 0x10000 },
    ]);
    assert.deepEqual(outer.mappings.map((m) => m.kind), ["identity", "identity", "identity"]);
    const outerHeap = new PhysicalAllocator(outer);
    outerHeap.bytes(outerHeap.alloc(100)).fill(3);
    // A range inside the outer window's mapped gaps cannot be mapped at its address.
    const relocated = mapIdentity([{ start: IDENTITY_BASE + 12 * MIB, length: 0x10000 }]);
    assert.equal(relocated.mappings[0].kind, "relocated");
    outerHeap.close();
    assert.ok(innerHeap.bytes(kept).every((byte) => byte === 9));
    innerHeap.check();
    // The old gap is free again: a new range there is an identity mapping.
    {
      using again = mapIdentity([{ start: IDENTITY_BASE + 12 * MIB, length: 0x10000 }]);
      assert.equal(again.mappings[0].kind, "identity");
      using heap = new PhysicalAllocator(again);
      heap.bytes(heap.alloc(5000)).fill(1);
      heap.check();
    }
    relocated.close();
    innerHeap.check();
  },
});

Deno.test({
  name:
    "identity windows disposed by `using` in reverse order leave the whole span free for one mapping",
  ignore: Deno.build.os !== "linux",
  fn() {
    {
      using outer = mapIdentity([{ start: IDENTITY_BASE + 64 * MIB, length: 0x10000 }, {
        start: IDENTITY_BASE + 68 * MIB,
        length: 0x10000,
      }]);
      using inner = mapIdentity([{ start: IDENTITY_BASE + 66 * MIB, length: 0x10000 }]);
      using outerHeap = new PhysicalAllocator(outer);
      using innerHeap = new PhysicalAllocator(inner);
      assert.equal(inner.mappings[0].kind, "relocated");
      outerHeap.alloc(10);
      innerHeap.alloc(10);
    }
    using whole = mapIdentity([{ start: IDENTITY_BASE + 64 * MIB, length: 5 * MIB }]);
    assert.equal(whole.mappings[0].kind, "identity");
    using heap = new PhysicalAllocator(whole);
    heap.bytes(heap.alloc(4 * MIB)).fill(5);
    heap.check();
  },
});

Deno.test("a refused call leaves every byte and the books as they were, under every combination of options", () => {
  let refused = 0;
  for (const policy of ["tlsf", "first-fit"] as const) {
    for (const layers of [true, false]) {
      for (const debug of [false, true]) {
        for (const [align, native] of [[8, false], [4096, true]] as const) {
          const bytes = new Uint8Array(2 * MIB);
          const words = new Int32Array(bytes.buffer);
          const heap = PhysicalAllocator.fromBuffer(bytes, {
            policy,
            layers,
            debug,
            align,
            native,
          });
          const random = new Random(66);
          const cache = heap.layersActive ? heap.createCache("c", 300, { align: 64 }) : null;
          const live: number[] = [];
          for (let step = 0; step < 100; step++) {
            const sizeBytes = random.next() < 0.5
              ? 1 + random.int(0, 599)
              : 4096 * random.int(1, 8);
            const some = () => live[random.int(0, live.length - 1)];
            const calls: [string, () => unknown][] = [
              ["alloc past the heap", () => heap.alloc(3 * MIB)],
              ["alloc", () => heap.alloc(sizeBytes, random.pick([8, 4096, 65536]))],
              ["allocPages(10)", () => heap.allocPages(10)],
              ["allocPages", () => heap.allocPages(random.int(0, 3))],
              ["realloc past the heap", () => live.length > 0 && heap.realloc(some(), 2 * MIB)],
              ["interior free", () => live.length > 0 && heap.free(some() + 8)],
              ["cache alloc", () => cache?.alloc()],
              ["destroyCache", () => cache !== null && heap.destroyCache(cache)],
            ];
            const [name, call] = random.pick(calls);
            const before = words.slice();
            const books = JSON.stringify(heap.stats());
            try {
              const address = call();
              if (typeof address === "number" && address > 0 && name !== "realloc past the heap") {
                live.push(address);
              }
            } catch (error) {
              assert.ok(error instanceof AllocatorError, `${name}: ${error}`);
              assert.notEqual(
                error.code,
                "HEAP_CORRUPTION",
                `${name} on a correct program: ${error.message}`,
              );
              refused++;
              let at = 0;
              while (at < words.length && words[at] === before[at]) at++;
              assert.equal(at, words.length, `${name} (${error.code}) wrote byte ${at * 4}`);
              assert.equal(
                JSON.stringify(heap.stats()),
                books,
                `${name} (${error.code}) changed the books`,
              );
            }
          }
          heap.check();
          heap.close();
        }
      }
    }
  }
  assert.ok(refused > 300, `${refused} calls were refused`);
});
