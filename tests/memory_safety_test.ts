/**
 * Issue 15: the window is the caller's view, bytes outside it never change
 * (on the TS and native paths), forged headers are refused, and memory that
 * holds a live heap is refused unless `reinitialize` asks otherwise.
 */
import assert from "#assert";
import {
  AllocatorClosedError,
  HeapCorruptionError,
  InvalidFreeError,
  MemoryInUseError,
  PhysicalAllocator,
} from "../mod.ts";
import { HEADER_BYTES, headerCheck } from "../allocator/heap/layout.ts";
import { nativeOrSkip } from "./support/native_library.ts";

const native = nativeOrSkip("tests/memory_safety_test.ts (native runs)");
const NATIVE_MODES = native === null ? [false] : [false, true];

for (const policy of ["first-fit", "tlsf"] as const) {
  for (const mode of NATIVE_MODES) {
    Deno.test(
      `PhysicalAllocator.fromBuffer() (${policy}${
        mode ? ", native" : ""
      }) over a view 1 MiB into its buffer never touches the caller's bytes around it`,
      () => {
        const big = new Uint8Array(3 << 20);
        for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff;
        const outside = [big.slice(0, 1 << 20), big.slice(2 << 20)];
        const view = big.subarray(1 << 20, 2 << 20);
        const heap = PhysicalAllocator.fromBuffer(view, { policy, native: mode });
        const live: number[] = [];
        for (let i = 0; i < 400; i++) {
          if (i % 3 === 2) heap.free(live.splice((i * 7) % live.length, 1)[0]);
          else live.push(heap.alloc(16 + (i % 13) * 40, i % 5 === 0 ? 64 : 8));
        }
        heap.check();
        for (const address of live) heap.free(address);
        heap.check();
        assert.deepEqual(big.slice(0, 1 << 20), outside[0], "bytes in front of the view changed");
        assert.deepEqual(big.slice(2 << 20), outside[1], "bytes behind the view changed");
      },
    );
  }
}

Deno.test("PhysicalAllocator.fromBuffer() at byte offset 4 reports the base address it was given", () => {
  const heap = PhysicalAllocator.fromBuffer(new Uint8Array(new ArrayBuffer(8192), 4, 4096));
  const first = [...heap.blocks()][0];
  assert.ok(first.address >= 0x1000 && first.address < 0x1000 + 4096);
  assert.equal(heap.stats().regions[0].base, 0x1000);
});

Deno.test("PhysicalAllocator.free() refuses a header forged without the heap's key", () => {
  const bytes = new Uint8Array(1 << 16);
  const heap = PhysicalAllocator.fromBuffer(bytes, { native: false });
  const big = heap.alloc(1024);
  const words = new Uint32Array(bytes.buffer);
  const forged = big + 256;
  // A used block and a used successor, checked with every key a forger might guess.
  for (const key of [0, 1, 0xffffffff]) {
    for (const at of [forged, forged + 256]) {
      const i = (at - 0x1000) / 4;
      words.set([256, 0, 0, headerCheck(at, 256, 0, 0, key)], i);
    }
    assert.throws(() => heap.free(forged + HEADER_BYTES), InvalidFreeError);
  }
  const next = heap.alloc(200);
  assert.ok(next >= big + 1024 || next + 200 <= big, "alloc handed out memory inside a live block");
});

Deno.test("new PhysicalAllocator() over a live heap is refused; reinitialize closes the old one", () => {
  const bytes = new Uint8Array(1 << 16);
  const first = PhysicalAllocator.fromBuffer(bytes);
  const kept = first.alloc(64);
  const before = bytes.slice();
  assert.throws(() => PhysicalAllocator.fromBuffer(bytes), MemoryInUseError);
  assert.deepEqual(bytes, before, "a refused constructor wrote memory");
  const second = PhysicalAllocator.fromBuffer(bytes, { reinitialize: true });
  assert.throws(() => first.sizeOf(kept), AllocatorClosedError);
  second.check();
  second.close();
  // A closed heap leaves no live control block: the memory can be taken again.
  const third = PhysicalAllocator.fromBuffer(bytes);
  third.check();
});

Deno.test("new PhysicalAllocator() refuses an initialised control block left by a heap never closed", () => {
  const bytes = new Uint8Array(1 << 16);
  PhysicalAllocator.fromBuffer(bytes).alloc(8);
  const copy = bytes.slice(); // another process's heap, as far as this one knows
  assert.throws(() => PhysicalAllocator.fromBuffer(copy), MemoryInUseError);
  PhysicalAllocator.fromBuffer(copy, { reinitialize: true }).check();
});

Deno.test("PhysicalAllocator.stats() (tlsf) reports a cyclic free list instead of hanging", () => {
  const bytes = new Uint8Array(1 << 16);
  const heap = PhysicalAllocator.fromBuffer(bytes, { native: false });
  heap.alloc(64);
  // The largest free block (the one stats() walks first) links back at itself.
  const block = [...heap.blocks()].filter((b) => b.free).at(-1)!.address;
  new DataView(bytes.buffer).setUint32(block + 16 - 0x1000, block, true);
  assert.throws(() => heap.stats(), HeapCorruptionError);
});
