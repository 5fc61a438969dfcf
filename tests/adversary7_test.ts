/**
 * The seventh adversarial round's probes, written from `mod.ts` and the README
 * alone: sizes at every boundary (the smallest heaps, heaps around the size
 * where the layers switch on, windows ending at 2^31 and 2^32, regions ending
 * at 64 KiB and chunk boundaries, requests around 512, 4096 and 65536 bytes,
 * the largest block and one byte more, every page order, sizes that wrap a
 * 32-bit integer); heaps filled to OUT_OF_MEMORY and churned at scale (page
 * runs, caches, hundreds of thousands of tiny objects, thousands of cache
 * lifetimes, shared heaps) down to the fresh heap's `stats()`; and the native
 * library from the outside (a path to a non-library, a directory, libc, a
 * library of another ABI version; heaps with and without it side by side;
 * forged list writes under `native: true`). Every test here passes: what
 * failed is reported with a reproduction instead.
 */
import assert from "node:assert/strict";
import {
  AllocatorError,
  bufferMemory,
  InvalidMemoryError,
  type ObjectCache,
  PhysicalAllocator,
  type PolicyName,
} from "../mod.ts";
import { Random } from "./support/random.ts";

const KIB = 1024;
const MIB = 1 << 20;
const PAGE_BYTES = 4096;
const POLICIES: readonly PolicyName[] = ["tlsf", "first-fit"];
/** Request sizes at the kmalloc, page and 64 KiB boundaries. */
const BOUNDARY_SIZES = [1, 7, 8, 9, 511, 512, 513, 4095, 4096, 4097, 65535, 65536, 65537];

/** The error code `fn` throws, or null when it returns. */
function codeOf(fn: () => unknown): string | null {
  try {
    fn();
    return null;
  } catch (error) {
    assert.ok(error instanceof AllocatorError, `untyped error: ${error}`);
    return error.code;
  }
}

/** Asserts the stats identity and the per-layer split of the totals. */
function assertBooks(heap: PhysicalAllocator): void {
  const s = heap.stats();
  assert.equal(s.totalBytes, s.freeBytes + s.usedBytes + s.overheadBytes + s.skippedBytes);
  if (s.layers !== null) {
    assert.equal(s.freeBytes, s.blocks.freeBytes + s.layers.freeBytes);
    assert.equal(s.usedBytes, s.blocks.usedBytes + s.layers.usedBytes);
    assert.equal(s.overheadBytes, s.blocks.overheadBytes + s.layers.overheadBytes);
  }
}

/** A live allocation and the byte its payload holds. */
interface Live {
  readonly address: number;
  readonly sizeBytes: number;
  readonly fill: number;
  readonly kind: "block" | "pages" | "cache";
  readonly cache?: ObjectCache;
}

/** Asserts no two live payloads overlap and every payload still holds its byte. */
function assertLive(heap: PhysicalAllocator, live: readonly Live[]): void {
  const sorted = [...live].sort((a, b) => a.address - b.address);
  for (let i = 1; i < sorted.length; i++) {
    const previous = sorted[i - 1];
    assert.ok(
      previous.address + heap.sizeOf(previous.address) <= sorted[i].address,
      `overlap: ${previous.address} and ${sorted[i].address}`,
    );
  }
  for (const x of live) {
    assert.ok(heap.bytes(x.address).every((b) => b === x.fill), `payload at ${x.address}`);
  }
}

/** Whether two buffers of a multiple of 4 bytes hold the same bytes (word by word, for speed). */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  const x = new Int32Array(a.buffer, a.byteOffset, a.length >> 2);
  const y = new Int32Array(b.buffer, b.byteOffset, b.length >> 2);
  if (a.length !== b.length) return false;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

function release(heap: PhysicalAllocator, x: Live): void {
  if (x.kind === "pages") heap.freePages(x.address);
  else if (x.kind === "cache") x.cache!.free(x.address);
  else heap.free(x.address);
}

Deno.test("the smallest heaps: every buffer is refused with InvalidMemoryError or serves a byte, and acceptance only grows", () => {
  let accepted = false;
  for (let bytes = 0; bytes <= 256; bytes += 8) {
    for (const policy of POLICIES) {
      let heap: PhysicalAllocator;
      try {
        heap = PhysicalAllocator.fromBuffer(new Uint8Array(bytes), { policy });
      } catch (error) {
        assert.ok(error instanceof InvalidMemoryError, `${bytes}: ${error}`);
        assert.ok(!accepted || policy === "tlsf", `${bytes} refused after a smaller was accepted`);
        continue;
      }
      if (policy === "first-fit") accepted = true;
      const largest = heap.stats().largestFreeBytes;
      assert.ok(largest > 0);
      const a = heap.alloc(largest);
      heap.bytes(a).fill(0xa5);
      assert.equal(codeOf(() => heap.alloc(1)), "OUT_OF_MEMORY");
      heap.free(a);
      assert.equal(codeOf(() => heap.alloc(largest + 1)), "OUT_OF_MEMORY");
      heap.check();
      assertBooks(heap);
      heap.close();
    }
  }
  assert.ok(accepted);
});

Deno.test("heaps around 1 MiB, where the layers switch on, answer every boundary request and page order and free back to the fresh stats", () => {
  for (const bytes of [MIB - 8, MIB, MIB + 8, MIB + PAGE_BYTES, MIB + 64 * KIB, 1.25 * MIB]) {
    for (const policy of POLICIES) {
      using heap = PhysicalAllocator.fromBuffer(new Uint8Array(bytes), { policy });
      // The threshold is on the block area past the control block (about 2 KiB for TLSF).
      if (bytes < MIB || bytes >= MIB + PAGE_BYTES) {
        assert.equal(heap.layersActive, bytes >= MIB, `${bytes}`);
      }
      const fresh = JSON.stringify(heap.stats());
      const live: Live[] = [];
      let fill = 1;
      for (const size of BOUNDARY_SIZES) {
        for (const align of [undefined, 8, 16, 4096, 65536]) {
          const address = heap.tryAlloc(size, align);
          if (address === 0) continue;
          assert.equal(address % (align ?? 8), 0);
          assert.equal(heap.sizeOf(address), size);
          heap.bytes(address).fill(fill);
          live.push({ address, sizeBytes: size, fill: fill++ & 255, kind: "block" });
        }
      }
      for (let order = 0; order <= 10; order++) {
        let address: number;
        try {
          address = heap.allocPages(order);
        } catch (error) {
          assert.equal((error as AllocatorError).code, "OUT_OF_MEMORY");
          continue;
        }
        assert.equal(address % PAGE_BYTES, 0);
        assert.equal(heap.sizeOf(address), PAGE_BYTES << order);
        heap.bytes(address).fill(fill);
        live.push({ address, sizeBytes: PAGE_BYTES << order, fill: fill++ & 255, kind: "pages" });
      }
      assert.equal(codeOf(() => heap.allocPages(11)), "INVALID_SIZE");
      assertLive(heap, live);
      heap.check();
      assertBooks(heap);
      for (const x of live) release(heap, x);
      heap.trim();
      heap.check();
      assert.equal(JSON.stringify(heap.stats()), fresh, `${bytes} ${policy}`);
    }
  }
});

Deno.test("windows ending at 2^31, 2^32 and near 2^53: the largest block is served, one byte more and an alignment of the heap's size are refused, fills stay inside", () => {
  for (const bytes of [64, PAGE_BYTES, 64 * KIB, MIB, MIB + 64 * KIB]) {
    for (const end of [2 ** 31, 2 ** 32, 2 ** 53 - 8 * MIB]) {
      for (const policy of POLICIES) {
        for (const native of [false, true, "auto"] as const) {
          const base = end - bytes;
          using heap = PhysicalAllocator.fromBuffer(new Uint8Array(bytes), {
            baseAddress: base,
            policy,
            native,
          });
          const fresh = JSON.stringify(heap.stats());
          const largest = heap.stats().largestFreeBytes;
          const a = heap.alloc(largest);
          assert.ok(a >= base && a + largest <= end);
          heap.free(a);
          assert.equal(codeOf(() => heap.alloc(largest + 1)), "OUT_OF_MEMORY");
          // The heap's first byte is aligned to its size, so no payload can be.
          const alignCode = codeOf(() => heap.alloc(8, bytes));
          assert.equal(
            alignCode,
            (bytes & (bytes - 1)) === 0 ? "OUT_OF_MEMORY" : "INVALID_ALIGNMENT",
          );
          assert.equal(codeOf(() => heap.alloc(1, 2 ** 30)), "OUT_OF_MEMORY");
          assert.equal(JSON.stringify(heap.stats()), fresh);
          const live: Live[] = [];
          let misses = 0;
          for (let i = 0; misses < 40; i++) {
            const size = BOUNDARY_SIZES[i % BOUNDARY_SIZES.length];
            const address = heap.tryAlloc(size, i % 3 === 0 ? 4096 : undefined);
            if (address === 0) {
              misses++;
              continue;
            }
            assert.ok(address >= base && address + size <= end, `${address} + ${size}`);
            heap.bytes(address).fill(live.length & 255);
            live.push({ address, sizeBytes: size, fill: live.length & 255, kind: "block" });
          }
          assertLive(heap, live);
          heap.check();
          assertBooks(heap);
          for (const x of live) release(heap, x);
          heap.trim();
          assert.equal(JSON.stringify(heap.stats()), fresh, `${bytes} ${end} ${policy} ${native}`);
        }
      }
    }
  }
});

Deno.test("sizes past the heap and sizes that wrap a 32-bit integer are never served, by any path or call", () => {
  const huge = [
    2 ** 31 - 8,
    2 ** 31,
    2 ** 32 - 8,
    2 ** 32,
    2 ** 32 + 8,
    2 ** 32 + 512,
    2 ** 32 + 4096,
    2 ** 48 + 16,
    2 ** 53 - 8,
    2 ** 53 - 1,
  ];
  const optionSets = [
    {},
    { fastPath: false },
    { policy: "first-fit" as const },
    { policy: "first-fit" as const, native: true },
    { native: true },
    { layers: false },
    { debug: true },
    { baseAddress: 2 ** 32 - 2 * MIB },
  ];
  for (const options of optionSets) {
    using heap = PhysicalAllocator.fromBuffer(new Uint8Array(2 * MIB), options);
    const small = heap.alloc(64);
    const block = heap.alloc(2000);
    const pages = heap.allocPages(0);
    const before = JSON.stringify(heap.stats());
    for (const size of huge) {
      assert.equal(codeOf(() => heap.alloc(size)), "OUT_OF_MEMORY");
      assert.equal(heap.tryAlloc(size), 0);
      assert.equal(codeOf(() => heap.alloc(size, 4096)), "OUT_OF_MEMORY");
      for (const address of [small, block, pages]) {
        assert.equal(codeOf(() => heap.realloc(address, size)), "OUT_OF_MEMORY");
      }
      assert.equal(codeOf(() => heap.bytes(small, size)), "INVALID_SIZE");
      assert.notEqual(codeOf(() => heap.createCache("wrap", size)), null);
    }
    for (const order of [11, 2 ** 31, 2 ** 32, 2 ** 32 + 1, -1, 0.5]) {
      assert.equal(codeOf(() => heap.allocPages(order)), "INVALID_SIZE");
    }
    for (const align of [2 ** 31, 2 ** 32, 2 ** 32 + 8]) {
      assert.equal(codeOf(() => heap.alloc(8, align)), "INVALID_ALIGNMENT");
    }
    assert.equal(JSON.stringify(heap.stats()), before, JSON.stringify(options));
    heap.check();
  }
});

Deno.test("heaps filled to OUT_OF_MEMORY with blocks, page runs and cache objects, half freed and refilled with other sizes, keep the books and come back to the fresh stats", () => {
  const optionSets = [
    { policy: "tlsf" as const },
    { policy: "first-fit" as const },
    { policy: "tlsf" as const, fastPath: false },
    { policy: "tlsf" as const, debug: true },
  ];
  for (const options of optionSets) {
    const random = new Random(7);
    using heap = PhysicalAllocator.fromBuffer(new Uint8Array(4 * MIB), options);
    const fresh = JSON.stringify(heap.stats());
    const caches: ObjectCache[] = [];
    for (let i = 0; i < 5; i++) {
      caches.push(heap.createCache(`c${i}`, 8 + i * 40, { align: 8 << (i % 4) }));
    }
    const sizesA = BOUNDARY_SIZES;
    const sizesB = [3, 16, 40, 200, 256, 700, 3000, 8192, 12289, 100000];
    let live: Live[] = [];
    let fill = 1;
    for (let round = 0; round < 6; round++) {
      const sizes = round % 2 === 0 ? sizesA : sizesB;
      let misses = 0;
      for (let i = 0; misses < 30; i++) {
        const r = random.next();
        let x: Live;
        try {
          if (r < 0.15) {
            const order = random.int(0, 4);
            x = { address: heap.allocPages(order), sizeBytes: 0, fill: fill & 255, kind: "pages" };
          } else if (r < 0.35) {
            const cache = random.pick(caches);
            x = { address: cache.alloc(), sizeBytes: 0, fill: fill & 255, kind: "cache", cache };
          } else {
            const size = sizes[i % sizes.length];
            const align = random.next() < 0.2 ? 4096 : undefined;
            x = {
              address: heap.alloc(size, align),
              sizeBytes: size,
              fill: fill & 255,
              kind: "block",
            };
          }
        } catch (error) {
          assert.equal((error as AllocatorError).code, "OUT_OF_MEMORY");
          misses++;
          continue;
        }
        fill++;
        heap.bytes(x.address).fill(x.fill);
        live.push(x);
        if (round === 3 && i === 50) heap.trim();
      }
      assertLive(heap, live);
      heap.check();
      assertBooks(heap);
      const kept: Live[] = [];
      live.forEach((x, k) => k % 2 === 1 ? kept.push(x) : release(heap, x));
      live = kept;
      if (round === 2) heap.trim();
      heap.check();
      assertBooks(heap);
    }
    for (const x of live) release(heap, x);
    for (const cache of caches) heap.destroyCache(cache);
    heap.trim();
    heap.check();
    assert.equal(JSON.stringify(heap.stats()), fresh, JSON.stringify(options));
  }
});

Deno.test("3 x 10^5 tiny objects, half replaced, then 3000 cache lifetimes of every size and alignment, end at the fresh stats", () => {
  for (const options of [{}, { policy: "first-fit" as const }, { layers: false }]) {
    using heap = PhysicalAllocator.fromBuffer(new Uint8Array(32 * MIB), options);
    const fresh = JSON.stringify(heap.stats());
    const count = 300_000;
    const addresses = new Float64Array(count);
    for (let i = 0; i < count; i++) {
      addresses[i] = heap.alloc(1 + (i % 16));
      heap.bytes(addresses[i])[0] = i & 255;
    }
    heap.check();
    for (let i = 0; i < count; i++) assert.equal(heap.bytes(addresses[i])[0], i & 255);
    for (let i = 0; i < count; i += 2) heap.free(addresses[i]);
    for (let i = 0; i < count; i += 2) addresses[i] = heap.alloc(17 + (i % 7));
    heap.check();
    assertBooks(heap);
    for (let i = 0; i < count; i++) heap.free(addresses[i]);
    heap.trim();
    assert.equal(JSON.stringify(heap.stats()), fresh);
    if (!heap.layersActive) continue;
    for (let i = 0; i < 3000; i++) {
      const align = 1 << (i % 13);
      const cache = heap.createCache(`x${i % 7}`, 1 + (i * 37) % 16384, { align });
      const objects = [cache.alloc(), cache.alloc()];
      for (const o of objects) assert.equal(o % align, 0);
      assert.notEqual(objects[0], objects[1]);
      for (const o of objects) cache.free(o);
      heap.destroyCache(cache);
      if (i % 500 === 0) heap.trim();
    }
    heap.trim();
    heap.check();
    assert.equal(JSON.stringify(heap.stats()), fresh, JSON.stringify(options));
  }
});

Deno.test("regions ending at 64 KiB boundaries and at 2^32, and slivers beside them, churned under both policies and native paths", () => {
  const layouts = [
    [{ start: 0x10000, length: MIB }, { start: 0x200000, length: MIB + 64 * KIB }],
    [{ start: 0x10000 - 16, length: MIB + 16 + 64 * KIB }],
    [{ start: 0x8, length: 64 * KIB - 8 }, { start: 64 * KIB, length: 4 * MIB }],
    [{ start: 0x1000, length: 24 }, { start: 0x2000, length: 40 }, {
      start: 0x100000,
      length: 2 * MIB - 0x1000,
    }],
    [{ start: 2 ** 31 - 2 * MIB, length: 2 * MIB }],
    [{ start: 2 ** 32 - 3 * MIB, length: 3 * MIB }],
  ];
  const random = new Random(3);
  for (const layout of layouts) {
    for (const policy of POLICIES) {
      for (const native of [false, true]) {
        using heap = new PhysicalAllocator(bufferMemory(layout), { policy, native });
        const fresh = JSON.stringify(heap.stats());
        const live: Live[] = [];
        let fill = 1;
        for (let round = 0; round < 4; round++) {
          let misses = 0;
          while (misses < 20) {
            const pages = random.next() < 0.2;
            let x: Live;
            try {
              if (pages) {
                const order = random.int(0, 10);
                const address = heap.allocPages(order);
                assert.equal(address % PAGE_BYTES, 0);
                x = { address, sizeBytes: PAGE_BYTES << order, fill: fill & 255, kind: "pages" };
              } else {
                const size = random.pick(BOUNDARY_SIZES);
                const align = random.pick([undefined, 8, 64, 4096, 65536]);
                const address = heap.alloc(size, align);
                assert.equal(address % (align ?? 8), 0);
                x = { address, sizeBytes: size, fill: fill & 255, kind: "block" };
              }
            } catch (error) {
              assert.equal((error as AllocatorError).code, "OUT_OF_MEMORY");
              misses++;
              continue;
            }
            fill++;
            assert.ok(
              layout.some((r) =>
                x.address >= r.start && x.address + x.sizeBytes <= r.start + r.length
              ),
              `${x.address} + ${x.sizeBytes} outside every region`,
            );
            heap.bytes(x.address).fill(x.fill);
            live.push(x);
          }
          assertLive(heap, live);
          heap.check();
          assertBooks(heap);
          for (let k = live.length - 1 - (round % 2); k >= 0; k -= 2) {
            release(heap, live[k]);
            live.splice(k, 1);
          }
        }
        for (const x of live) release(heap, x);
        heap.trim();
        heap.check();
        assert.equal(JSON.stringify(heap.stats()), fresh, `${JSON.stringify(layout)} ${policy}`);
      }
    }
  }
});

Deno.test("shared heaps from the smallest to past the layers' threshold, filled by two handles, come back to the fresh stats", () => {
  let accepted = false;
  for (let bytes = 0; bytes <= 1024; bytes += 8) {
    try {
      const heap = PhysicalAllocator.fromBuffer(new SharedArrayBuffer(bytes));
      accepted = true;
      heap.free(heap.alloc(1));
      heap.check();
      heap.close();
    } catch (error) {
      assert.ok(error instanceof InvalidMemoryError, `${bytes}: ${error}`);
      assert.ok(!accepted, `${bytes} refused after a smaller was accepted`);
    }
  }
  assert.ok(accepted);
  const random = new Random(11);
  for (const bytes of [MIB, 1.2 * MIB, 1.3 * MIB, 2 * MIB]) {
    for (const workerCaches of [true, false]) {
      const memory = new SharedArrayBuffer(bytes);
      using creator = PhysicalAllocator.fromBuffer(memory, { workerCaches });
      const fresh = JSON.stringify(creator.stats());
      const joiner = PhysicalAllocator.attach(memory);
      const live: Live[] = [];
      for (let round = 0; round < 4; round++) {
        let misses = 0;
        while (misses < 20) {
          const handle = random.next() < 0.5 ? creator : joiner;
          try {
            if (random.next() < 0.15) {
              const address = handle.allocPages(random.int(0, 5));
              live.push({ address, sizeBytes: 0, fill: 0, kind: "pages" });
            } else {
              const size = random.pick([1, 8, 9, 100, 256, 257, 512, 513, 4096, 4097, 65537]);
              const address = handle.alloc(size);
              handle.bytes(address).fill(live.length & 255);
              live.push({ address, sizeBytes: size, fill: live.length & 255, kind: "block" });
            }
          } catch (error) {
            assert.equal((error as AllocatorError).code, "OUT_OF_MEMORY");
            misses++;
          }
        }
        assertLive(creator, live.filter((x) => x.kind === "block"));
        creator.check();
        for (let k = live.length - 1; k >= 0; k -= 2) {
          release(random.next() < 0.5 ? creator : joiner, live[k]);
          live.splice(k, 1);
        }
        joiner.trim();
      }
      for (const x of live) release(joiner, x);
      joiner.detach();
      creator.trim();
      creator.check();
      assert.equal(JSON.stringify(creator.stats()), fresh, `${bytes} ${workerCaches}`);
    }
  }
});

Deno.test("a heap served by the native library keeps working beside heaps created without it, step for step with a TypeScript twin", () => {
  const random = new Random(5);
  for (const policy of POLICIES) {
    using native = PhysicalAllocator.fromBuffer(new Uint8Array(MIB), {
      policy,
      native: true,
      layers: false,
    });
    assert.ok(native.nativeActive);
    using twin = PhysicalAllocator.fromBuffer(new Uint8Array(MIB), {
      policy,
      native: false,
      layers: false,
    });
    const liveNative: number[] = [];
    const liveTwin: number[] = [];
    for (let step = 0; step < 3000; step++) {
      if (step % 500 === 0) {
        // Another heap without the library, made and used in the middle.
        using other = PhysicalAllocator.fromBuffer(new Uint8Array(64 * KIB), {
          policy,
          native: false,
        });
        other.free(other.alloc(100));
        other.check();
      }
      if (liveNative.length > 0 && random.next() < 0.45) {
        const k = random.int(0, liveNative.length - 1);
        native.free(liveNative.splice(k, 1)[0]);
        twin.free(liveTwin.splice(k, 1)[0]);
      } else {
        const size = random.int(1, 3000);
        const align = random.pick([undefined, 8, 64, 4096]);
        const a = native.tryAlloc(size, align);
        const b = twin.tryAlloc(size, align);
        assert.equal(a, b, `step ${step}`);
        if (a !== 0) {
          liveNative.push(a);
          liveTwin.push(b);
        }
      }
    }
    assert.ok(native.nativeActive);
    native.check();
    assert.deepEqual({ ...native.stats(), nativeActive: false }, twin.stats());
  }
});

Deno.test("native: true over forged free-list words: typed errors, never an untyped throw, an address outside the window or overlapping live memory", () => {
  const random = new Random(1);
  const counts: Record<string, number> = {};
  for (let t = 0; t < 200; t++) {
    const buffer = new Uint8Array(64 * KIB);
    const base = [4096, 2 ** 31 - 64 * KIB, 2 ** 32 - 64 * KIB, 2 ** 40][t % 4];
    const policy: PolicyName = t % 8 < 6 ? "first-fit" : "tlsf";
    using heap = PhysicalAllocator.fromBuffer(buffer, {
      policy,
      native: true,
      layers: false,
      baseAddress: base,
    });
    const sizes = new Map<number, number>();
    const all: number[] = [];
    for (let i = 0; i < 60; i++) {
      const size = random.int(8, 207);
      const address = heap.alloc(size);
      all.push(address);
      sizes.set(address, size);
    }
    const freed: number[] = [];
    for (let i = 0; i < 60; i += 2) {
      heap.free(all[i]);
      freed.push(all[i]);
      sizes.delete(all[i]);
    }
    const view = new DataView(buffer.buffer);
    for (let j = random.int(1, 3); j > 0; j--) {
      const offset = random.pick(freed) - base - 16 + random.int(0, 9) * 4;
      const r = random.next();
      const value = r < 0.3
        ? random.int(0, 2 ** 32 - 1)
        : r < 0.6
        ? ((random.int(0, 64 * KIB - 1) & ~7) + base) % 2 ** 32
        : r < 0.8
        ? 0
        : 0xffffffff;
      if (offset >= 0 && offset + 4 <= buffer.length) view.setUint32(offset, value >>> 0, true);
    }
    for (let i = 0; i < 40; i++) {
      const r = random.next();
      const code = codeOf(() => {
        if (r < 0.5) {
          const address = heap.alloc(random.int(8, 307));
          const size = heap.sizeOf(address);
          assert.ok(address >= base && address + size <= base + buffer.length);
          for (const [other, otherSize] of sizes) {
            assert.ok(
              address + size <= other || other + otherSize <= address,
              `${address} overlaps live ${other}`,
            );
          }
          sizes.set(address, size);
          all.push(address);
        } else if (r < 0.8) {
          const address = all.splice(random.int(0, all.length - 1), 1)[0];
          if (address !== undefined) {
            heap.free(address);
            sizes.delete(address);
          }
        } else {
          heap.check();
        }
      });
      if (code !== null) counts[code] = (counts[code] ?? 0) + 1;
    }
  }
  assert.ok((counts.HEAP_CORRUPTION ?? 0) > 0, JSON.stringify(counts));
});

Deno.test("free-list links forged into cycles, self-loops, used and interior blocks: every call under every native mode ends with a typed answer and never overlaps live memory", () => {
  const patterns = 8;
  for (const native of [false, true, "auto"] as const) {
    for (const policy of POLICIES) {
      for (const base of [4096, 2 ** 32 - 64 * KIB, 2 ** 44]) {
        for (let pattern = 0; pattern < patterns; pattern++) {
          for (const call of ["allocBig", "allocSmall", "freeLive", "realloc", "check"] as const) {
            const buffer = new Uint8Array(64 * KIB);
            using heap = PhysicalAllocator.fromBuffer(buffer, {
              policy,
              native,
              layers: false,
              baseAddress: base,
            });
            const all: number[] = [];
            for (let i = 0; i < 80; i++) all.push(heap.alloc(24 + (i % 4) * 8));
            for (let i = 0; i < 80; i += 2) heap.free(all[i]);
            const blocks = [...heap.blocks()];
            const free = blocks.filter((b) => b.free).map((b) => b.address);
            const used = blocks.filter((b) => !b.free).map((b) => b.address);
            const live = new Map<number, number>();
            for (let i = 1; i < 80; i += 2) live.set(all[i], heap.sizeOf(all[i]));
            // The link words a free block's bytes show: the next block at +16, the previous at +24.
            const view = new DataView(buffer.buffer);
            const setWord = (block: number, offset: number, value: number) => {
              view.setUint32(block - base + offset, value % 2 ** 32, true);
              view.setUint32(block - base + offset + 4, Math.floor(value / 2 ** 32), true);
            };
            switch (pattern) {
              case 0:
                setWord(free[10], 16, free[10]);
                break;
              case 1:
                setWord(free[10], 16, free[5]);
                break;
              case 2:
                setWord(free[5], 24, free[10]);
                break;
              case 3:
                setWord(free[10], 16, used[7]);
                break;
              case 4:
                setWord(free[10], 16, free[5] + 8);
                break;
              case 5:
                setWord(free[3], 16, free[20]);
                setWord(free[20], 16, free[3]);
                break;
              case 6:
                setWord(free[free.length - 2], 16, free[0]);
                break;
              case 7:
                setWord(free[10], 24, free[10]);
                setWord(free[10], 16, free[11]);
                setWord(free[11], 24, free[11]);
                break;
            }
            const served = (address: number) => {
              const size = heap.sizeOf(address);
              assert.ok(address >= base && address + size <= base + buffer.length);
              for (const [other, otherSize] of live) {
                assert.ok(address + size <= other || other + otherSize <= address);
              }
              live.set(address, size);
            };
            codeOf(() => {
              if (call === "allocBig") served(heap.alloc(60000));
              else if (call === "allocSmall") {
                for (let i = 0; i < 50; i++) served(heap.alloc(24));
              } else if (call === "freeLive") {
                for (let i = 1; i < 80; i += 2) heap.free(all[i]);
              } else if (call === "realloc") {
                for (let i = 1; i < 80; i += 2) {
                  live.delete(all[i]);
                  served(heap.realloc(all[i], 200));
                }
              } else heap.check();
            });
            assert.equal(
              codeOf(() => heap.check()),
              "HEAP_CORRUPTION",
              `${native} ${policy} ${pattern}`,
            );
          }
        }
      }
    }
  }
});

Deno.test("near-full heaps: a page run of every order, a cache object, a new cache and aligned blocks that find no memory change no byte and no count", () => {
  const random = new Random(2);
  for (let t = 0; t < 16; t++) {
    const options =
      [{}, { policy: "first-fit" as const }, { debug: true }, { fastPath: false }][t % 4];
    const buffer = new Uint8Array(2 * MIB + random.int(0, 511) * PAGE_BYTES);
    using heap = PhysicalAllocator.fromBuffer(buffer, options);
    const caches = [
      heap.createCache("a", random.int(8, 3000)),
      heap.createCache("b", random.int(1, 16384), { align: 1 << random.int(0, 12) }),
    ];
    const live: Live[] = [];
    let misses = 0;
    while (misses < 15) {
      const r = random.next();
      try {
        if (r < 0.25) {
          live.push({
            address: heap.allocPages(random.int(0, 10)),
            sizeBytes: 0,
            fill: 0,
            kind: "pages",
          });
        } else if (r < 0.5) {
          const cache = random.pick(caches);
          live.push({ address: cache.alloc(), sizeBytes: 0, fill: 0, kind: "cache", cache });
        } else {
          const size = random.int(1, random.next() < 0.2 ? 300000 : 600);
          live.push({ address: heap.alloc(size), sizeBytes: size, fill: 0, kind: "block" });
        }
      } catch (error) {
        assert.equal((error as AllocatorError).code, "OUT_OF_MEMORY");
        misses++;
      }
    }
    for (let i = live.length - 1; i >= 0; i--) {
      if (random.next() < 0.4) release(heap, live.splice(i, 1)[0]);
    }
    const calls: (() => unknown)[] = [];
    for (let order = 0; order <= 10; order++) calls.push(() => heap.allocPages(order));
    calls.push(() => caches[0].alloc(), () => caches[1].alloc());
    calls.push(() => heap.createCache(`new${t}`, random.int(1, 16384)));
    for (const size of [64, 300, 512, 4096, 65536, MIB, 4 * MIB]) {
      calls.push(() => heap.alloc(size, 4096), () => heap.alloc(size));
    }
    let failed = 0;
    for (const call of calls) {
      const bytes = buffer.slice();
      const stats = JSON.stringify(heap.stats());
      const code = codeOf(call);
      if (code === null) continue;
      failed++;
      assert.equal(code, "OUT_OF_MEMORY");
      assert.equal(JSON.stringify(heap.stats()), stats);
      assert.ok(sameBytes(buffer, bytes), `bytes changed by a refused call`);
    }
    assert.ok(failed > 0);
    heap.check();
    assertBooks(heap);
  }
});

Deno.test("windows ending exactly at 2^53 are refused naming the region; 8 bytes lower they serve blocks, pages and slab objects", () => {
  for (const bytes of [64, PAGE_BYTES, MIB, MIB + 64 * KIB]) {
    for (const native of [false, true]) {
      for (const policy of POLICIES) {
        assert.throws(
          () =>
            PhysicalAllocator.fromBuffer(new Uint8Array(bytes), {
              baseAddress: 2 ** 53 - bytes,
              native,
              policy,
            }),
          (error: Error) =>
            error instanceof InvalidMemoryError && error.message.includes("2^53") &&
            error.message.includes((2 ** 53 - bytes).toString(16)),
        );
        for (const gap of [8, 16, PAGE_BYTES]) {
          using heap = PhysicalAllocator.fromBuffer(new Uint8Array(bytes), {
            baseAddress: 2 ** 53 - bytes - gap,
            native,
            policy,
          });
          const fresh = JSON.stringify(heap.stats());
          const largest = heap.stats().largestFreeBytes;
          const a = heap.alloc(largest);
          assert.ok(a + largest <= 2 ** 53 - gap);
          heap.bytes(a).fill(1);
          heap.free(a);
          if (heap.layersActive) {
            const page = heap.allocPages(0);
            assert.equal(page % PAGE_BYTES, 0);
            heap.freePages(page);
            heap.free(heap.alloc(32));
          }
          heap.trim();
          heap.check();
          assert.equal(JSON.stringify(heap.stats()), fresh);
        }
      }
    }
  }
});

/** Copies `from` to `to` recursively (files and folders only). */
async function copyTree(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const entry of Deno.readDir(from)) {
    if (entry.isDirectory) await copyTree(`${from}/${entry.name}`, `${to}/${entry.name}`);
    else if (entry.isFile) await Deno.copyFile(`${from}/${entry.name}`, `${to}/${entry.name}`);
  }
}

Deno.test({
  name:
    "PMA_NATIVE_LIB naming a non-library, a directory, /dev/null, /dev/zero, libc or a libpma of another ABI: native: true throws NativeUnavailableError naming it, auto falls back",
  permissions: { read: true, write: true, run: true, env: true, ffi: true },
  fn: async () => {
    const root = new URL("..", import.meta.url).pathname;
    const temp = await Deno.makeTempDir({ prefix: "adversary7_" });
    try {
      // A copy of the module without zig-out/, so the env path is the only candidate.
      const module = `${temp}/module`;
      await Deno.mkdir(module);
      await Deno.copyFile(`${root}mod.ts`, `${module}/mod.ts`);
      await copyTree(`${root}allocator`, `${module}/allocator`);
      await copyTree(`${root}native`, `${module}/native`);
      // A libpma whose ABI version is one more, built from an edited copy of the sources.
      const build = `${temp}/build`;
      await copyTree(`${root}native`, `${build}/native`);
      await Deno.mkdir(`${build}/tools`);
      await Deno.copyFile(`${root}tools/zig.sh`, `${build}/tools/zig.sh`);
      await Deno.copyFile(`${root}build.zig`, `${build}/build.zig`);
      await Deno.copyFile(`${root}build.zig.zon`, `${build}/build.zig.zon`);
      await Deno.symlink(`${root}.zig`, `${build}/.zig`);
      const rootZig = await Deno.readTextFile(`${build}/native/root.zig`);
      const version = Number(/pub const abi_version: u32 = (\d+);/.exec(rootZig)![1]);
      await Deno.writeTextFile(
        `${build}/native/root.zig`,
        rootZig.replace(
          `pub const abi_version: u32 = ${version};`,
          `pub const abi_version: u32 = ${version + 1};`,
        ),
      );
      const built = await new Deno.Command("bash", {
        args: ["tools/zig.sh", "build", "-Doptimize=ReleaseFast"],
        cwd: build,
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(built.code, 0, new TextDecoder().decode(built.stderr));
      const notLibrary = `${temp}/not_a_library.so`;
      await Deno.writeTextFile(notLibrary, "hello\n");
      const libc = ["/lib/x86_64-linux-gnu/libc.so.6", "/lib64/libc.so.6", "/usr/lib/libc.so.6"]
        .find((path) => {
          try {
            return Deno.statSync(path).isFile;
          } catch {
            return false;
          }
        })!;
      assert.ok(libc, "no libc found");
      const script = `${module}/probe.ts`;
      await Deno.writeTextFile(
        script,
        `import { PhysicalAllocator } from "./mod.ts";
const lines = [];
for (const policy of ["first-fit", "tlsf"]) {
  for (const native of [true, "auto"]) {
    try {
      const heap = PhysicalAllocator.fromBuffer(new Uint8Array(1 << 16), { policy, native, layers: false });
      const live = [];
      for (let i = 0; i < 40; i++) live.push(heap.alloc(8 + (i % 5) * 24));
      for (let i = 0; i < 40; i += 2) heap.free(live[i]);
      heap.check();
      lines.push("ok " + heap.nativeActive);
    } catch (e) {
      lines.push(e.constructor.name + " " + e.code + " " + e.message.replaceAll("\\n", " "));
    }
  }
}
console.log(JSON.stringify(lines));
`,
      );
      const cases: [string, RegExp][] = [
        // The loader looks at the file before dlopen (a FIFO would block it, a library cut
        // short would crash it): what is no regular file or too short is refused by name.
        [notLibrary, /too short|invalid ELF|Could not open/],
        [temp, /not a regular file|Is a directory|Could not open/],
        ["/dev/null", /not a regular file|file too short|Could not open/],
        ["/dev/zero", /not a regular file|invalid ELF header|Could not open/],
        [libc, /undefined symbol: pma_/],
        [
          `${build}/zig-out/lib/libpma.so`,
          new RegExp(`ABI version ${version + 1}, expected ${version}`),
        ],
      ];
      for (const [path, why] of cases) {
        const output = await new Deno.Command(Deno.execPath(), {
          args: ["run", "--no-config", "-A", script],
          env: { PMA_NATIVE_LIB: path, PMA_CACHE_DIR: `${temp}/empty_cache`, NO_COLOR: "1" },
          stdout: "piped",
          stderr: "piped",
        }).output();
        const stderr = new TextDecoder().decode(output.stderr);
        assert.equal(output.code, 0, stderr);
        const [ffTrue, ffAuto, tlsfTrue, tlsfAuto] = JSON.parse(
          new TextDecoder().decode(output.stdout),
        ) as string[];
        for (const line of [ffTrue, tlsfTrue]) {
          assert.match(line, /^NativeUnavailableError NATIVE_UNAVAILABLE /, path);
          assert.ok(line.includes(path), `${path} not named: ${line}`);
          assert.match(line, why);
        }
        assert.equal(ffAuto, "ok false", path);
        assert.equal(tlsfAuto, "ok false", path);
      }
    } finally {
      await Deno.remove(temp, { recursive: true });
    }
  },
});
