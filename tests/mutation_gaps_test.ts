/**
 * Tests that kill the mutants issue 15 found surviving the suite (finding 5):
 * each pins one behaviour a realistic one-line change would break.
 */
import assert from "#assert";
import { bufferMemory, HeapCorruptionError, PhysicalAllocator } from "../mod.ts";
import { HEADER_BYTES } from "../allocator/heap/layout.ts";
import { OutsideBytes } from "./support/outside_bytes.ts";

const BASE = 0x1000;

for (const policy of ["tlsf", "first-fit"] as const) {
  Deno.test(
    `PhysicalAllocator.realloc() (${policy}) that must move checks a free predecessor before writing`,
    () => {
      const bytes = new Uint8Array(1 << 16);
      const heap = PhysicalAllocator.fromBuffer(bytes, { policy, native: false });
      const a = heap.alloc(64);
      const b = heap.alloc(64);
      heap.alloc(64); // keeps b from growing in place
      heap.free(a); // b's predecessor is free: b's header says PREV_FREE
      // Damage a's footer, the u64 just before b's header.
      const footer = b - HEADER_BYTES - 8 - BASE;
      new DataView(bytes.buffer).setUint32(footer, 8, true);
      const before = bytes.slice();
      assert.throws(() => heap.realloc(b, 4000), HeapCorruptionError);
      assert.deepEqual(bytes, before, "the failed realloc changed the heap");
    },
  );

  Deno.test(`PhysicalAllocator.stats() (${policy}) reports largestFreeBytes exactly`, () => {
    const heap = PhysicalAllocator.fromBuffer(new Uint8Array(1 << 16), { policy, native: false });
    const live = [100, 3000, 50, 9000, 700].map((size) => heap.alloc(size));
    heap.free(live[1]);
    heap.free(live[3]);
    for (let round = 0; round < 2; round++) {
      const largest = Math.max(
        ...[...heap.blocks()].filter((b) => b.free).map((b) => b.sizeBytes),
      );
      const reported = heap.stats().largestFreeBytes;
      assert.equal(reported, largest - HEADER_BYTES);
      // The largest block holds exactly that payload: one more granule does not fit.
      assert.equal(heap.tryAlloc(reported + 8), 0);
      const fitted = heap.alloc(reported);
      heap.free(fitted);
      heap.free(live[round === 0 ? 0 : 2]);
    }
  });

  Deno.test(
    `PhysicalAllocator (${policy}, debug) reports a write after free in the tail a carve absorbs`,
    () => {
      const bytes = new Uint8Array(1 << 16);
      const heap = PhysicalAllocator.fromBuffer(bytes, { policy, native: false, debug: true });
      const a = heap.alloc(200);
      heap.alloc(64); // keeps a from merging with the rest
      heap.free(a);
      const block = a - HEADER_BYTES;
      const freed = [...heap.blocks()].find((b) => b.address === block);
      assert.ok(freed !== undefined && freed.free);
      // A request whose block leaves 32 bytes of `freed`: too few to split, so the carve absorbs them.
      const blockBytes = freed.sizeBytes - 32;
      const request = blockBytes - HEADER_BYTES - 16; // 16 guard bytes in debug mode
      // A stray write into those 32 bytes (before the footer), after the free.
      bytes[block + blockBytes + 8 - BASE] = 0x42;
      assert.throws(() => heap.alloc(request), HeapCorruptionError);
    },
  );

  Deno.test(
    `PhysicalAllocator.free() (${policy}, general path) never writes past a region's block area`,
    () => {
      const memory = bufferMemory([{ start: 0x1000, length: 4000 }, {
        start: 0x3003,
        length: 3001,
      }]);
      new Uint8Array(memory.regions[0].bytes.buffer).fill(0xa5);
      const heap = new PhysicalAllocator(memory, { policy, native: false, fastPath: false });
      const outside = new OutsideBytes(heap);
      for (let round = 0; round < 3; round++) {
        // Fill each region, then free in orders that merge into the last block (LAST flag).
        const live: number[] = [];
        for (let p = heap.tryAlloc(120); p !== 0; p = heap.tryAlloc(120)) live.push(p);
        const order = round === 0
          ? live
          : round === 1
          ? [...live].reverse()
          : live.filter((_, i) => i % 2).concat(live.filter((_, i) => i % 2 === 0));
        for (const address of order) heap.free(address);
        heap.check();
        outside.verify();
      }
    },
  );
}
