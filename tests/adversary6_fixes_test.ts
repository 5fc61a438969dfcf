/**
 * What the sixth adversarial round found, fixed: each test failed before its
 * fix. A debug-mode realloc whose guard was overwritten, identity memory
 * closed inside another identity memory's window, and a shared heap's
 * close() that meets a corrupt heap; a debug-mode write after free into a
 * link's unused high word; and, left by the fifth round, a free
 * link forged to point between the heap's regions.
 */
import assert from "node:assert/strict";
import {
  AllocatorClosedError,
  bufferMemory,
  HeapCorruptionError,
  mapIdentity,
  PhysicalAllocator,
} from "../mod.ts";
import { CAN_MAP_IDENTITY } from "./support/identity.ts";

const MIB = 1 << 20;
const GIB = 2 ** 30;

Deno.test("debug mode: a realloc whose guard was overwritten throws before it allocates anything", () => {
  for (const layers of [true, false]) {
    for (const [sizeBytes, newSizeBytes] of [[40, 5000], [40, 100], [3000, 5000], [3000, 100000]]) {
      const heap = PhysicalAllocator.fromBuffer(new Uint8Array(8 * MIB), { debug: true, layers });
      const a = heap.alloc(sizeBytes);
      heap.alloc(sizeBytes);
      const view = heap.bytes(a);
      new Uint8Array(view.buffer, view.byteOffset, sizeBytes + 1)[sizeBytes] ^= 0x5a;
      const before = heap.stats();
      assert.throws(() => heap.realloc(a, newSizeBytes), HeapCorruptionError);
      assert.deepEqual(heap.stats(), before, `layers ${layers}, ${sizeBytes} -> ${newSizeBytes}`);
      heap.close();
    }
  }
});

Deno.test({
  name:
    "identity memory closed inside another's window leaves zero pages there, which that one unmaps",
  ignore: !CAN_MAP_IDENTITY,
  fn() {
    const base = 75 * GIB;
    const inner = mapIdentity([{ start: base + 4 * MIB, length: MIB }]);
    const outer = mapIdentity([{ start: base, length: MIB }, {
      start: base + 8 * MIB,
      length: MIB,
    }]);
    assert.deepEqual([...outer.mappings, ...inner.mappings].map((m) => m.kind), [
      "identity",
      "identity",
      "identity",
    ]);
    inner.regions[0].bytes.fill(9);
    inner.close();
    // The outer window reaches the inner memory's old pages: zero pages now, not a hole.
    const window = new Uint8Array(outer.regions[0].bytes.buffer);
    assert.equal(window[4 * MIB], 0);
    assert.equal(window[5 * MIB - 1], 0);
    // No one else maps there while the outer memory holds those pages.
    const blocked = mapIdentity([{ start: base + 4 * MIB, length: MIB }]);
    assert.equal(blocked.mappings[0].kind, "relocated");
    blocked.close();
    outer.close();
    // Everything went back with the outer memory.
    using again = mapIdentity([{ start: base + 4 * MIB, length: MIB }]);
    assert.equal(again.mappings[0].kind, "identity");
  },
});

Deno.test("a shared heap's handle closes even when its Worker cache meets a corrupt heap on the way", () => {
  const memory = new SharedArrayBuffer(4 * MIB);
  // Blocks at 4096-byte alignment: the 40 bytes asked for sit right before the next header.
  const creator = PhysicalAllocator.fromBuffer(memory, { align: 4096 });
  const joiner = PhysicalAllocator.attach(memory);
  const a = joiner.alloc(40);
  const view = joiner.bytes(a);
  new Uint8Array(view.buffer, view.byteOffset, 41)[40] ^= 1; // a one-byte overflow into a header
  creator.free(a); // into the creator's Worker cache
  for (const heap of [joiner, creator]) {
    assert.throws(() => heap.close(), HeapCorruptionError);
    assert.equal(heap.closed, true);
    assert.throws(() => heap.alloc(8), AllocatorClosedError);
    heap.close(); // exactly once: nothing more to release, nothing thrown
  }
});

Deno.test("a free link forged to point between the heap's regions is corruption before anything reads there", () => {
  for (const policy of ["tlsf", "first-fit"] as const) {
    // Two regions with a hole between them in one window (over identity memory such a hole
    // may be another mapping's pages, or none).
    const memory = bufferMemory([{ start: MIB, length: MIB }, { start: 4 * MIB, length: MIB }]);
    const heap = new PhysicalAllocator(memory, { policy, layers: false });
    heap.alloc(5000);
    const b = heap.alloc(5000);
    heap.alloc(5000);
    const stale = heap.bytes(b);
    heap.free(b);
    new DataView(stale.buffer, stale.byteOffset).setBigUint64(0, BigInt(3 * MIB), true);
    assert.throws(() => heap.check(), (error: unknown) => {
      assert.ok(error instanceof HeapCorruptionError, `${policy}: ${String(error)}`);
      assert.match(error.message, /links outside the heap/, policy);
      return true;
    });
  }
});

Deno.test("debug mode: a write after free into a link's unused high word is reported (below 2^31)", () => {
  for (const layers of [true, false]) {
    for (const byte of [5, 13]) {
      const heap = PhysicalAllocator.fromBuffer(new Uint8Array(8 * MIB), { debug: true, layers });
      heap.alloc(3000);
      const b = heap.alloc(3000);
      heap.alloc(3000);
      const stale = heap.bytes(b);
      heap.free(b);
      stale[byte] ^= 0x11;
      const before = heap.stats();
      assert.throws(() => heap.check(), HeapCorruptionError, `layers ${layers}, byte ${byte}`);
      assert.throws(() => heap.alloc(3000), HeapCorruptionError, `layers ${layers}, byte ${byte}`);
      assert.deepEqual(heap.stats(), before);
      heap.close();
    }
  }
});
