/**
 * Debug mode (`debug: true`, allocator/heap/check/debug_guard.ts): guard bytes catch
 * payload overflows at free, realloc and check(); poison catches writes
 * after free when the memory is handed out again and at check(); the
 * accounting stays exact.
 */
import assert from "#assert";
import { HeapCorruptionError, PhysicalAllocator, POLICY_NAMES, type PolicyName } from "../mod.ts";
import { GUARD_BYTES_MIN } from "../allocator/heap/check/debug_guard.ts";
import { hex } from "../allocator/memory/physical_memory.ts";
import { runModel } from "./support/conformance.ts";

const BASE_ADDRESS = 0x1000;

function makeHeap(policy: PolicyName, debug = true) {
  const bytes = new Uint8Array(64 * 1024);
  const heap = PhysicalAllocator.fromBuffer(bytes, { policy, native: false, debug });
  // The whole window: writes through it reach past any payload, like a wild pointer.
  return { heap, window: () => bytes };
}

/** Asserts HEAP_CORRUPTION whose message matches `message`, and that the call changed no byte. */
function assertCaught(window: Uint8Array, call: () => unknown, message: RegExp): void {
  const before = window.slice();
  assert.throws(call, (error: unknown) => {
    assert.ok(error instanceof HeapCorruptionError, `threw ${String(error)}`);
    assert.equal(error.code, "HEAP_CORRUPTION");
    assert.match(error.message, message);
    return true;
  });
  assert.deepEqual(window, before, "the failing call modified the heap");
}

for (const policy of POLICY_NAMES) {
  Deno.test(`PhysicalAllocator (${policy}, debug) catches a one-byte payload overflow`, async (t) => {
    for (const [size, overflowBytes] of [[24, 1], [24, GUARD_BYTES_MIN], [100, 3], [1, 1]]) {
      await t.step(`${overflowBytes} bytes past a ${size}-byte payload`, () => {
        const { heap, window } = makeHeap(policy);
        const a = heap.alloc(size);
        const b = heap.alloc(size);
        const view = window();
        view.fill(0x77, a - BASE_ADDRESS, a - BASE_ADDRESS + size + overflowBytes);
        const named = new RegExp(`address ${hex(a)}: .*payload offset ${size} `);
        assertCaught(view, () => heap.free(a), named);
        assertCaught(view, () => heap.realloc(a, size + 500), named);
        assertCaught(view, () => heap.realloc(a, 1), named);
        assertCaught(view, () => heap.check(), /guard .* damaged/);
        heap.free(b); // the neighbour is intact and still frees
      });
    }
  });

  Deno.test(`PhysicalAllocator (${policy}, debug) catches an overflow past a resized payload`, () => {
    const { heap, window } = makeHeap(policy);
    const a = heap.alloc(100);
    heap.alloc(8); // a fence, so growth happens by moving or in place as the policy allows
    assert.equal(heap.realloc(a, 50), a);
    const view = window();
    view[a - BASE_ADDRESS + 50] = 0;
    assertCaught(view, () => heap.free(a), new RegExp(`payload offset 50 \\(${hex(a + 50)}\\)`));
  });

  Deno.test(`PhysicalAllocator (${policy}, debug) catches a write after free when the memory is reused`, () => {
    const { heap, window } = makeHeap(policy);
    const a = heap.alloc(100);
    heap.alloc(8); // keeps a's block from merging with the free tail
    heap.free(a);
    const view = window();
    view[a - BASE_ADDRESS + 40] = 1; // a use-after-free write
    assertCaught(view, () => heap.alloc(100), new RegExp(`freed memory at ${hex(a + 40)}`));
    assertCaught(view, () => heap.check(), new RegExp(`freed memory at ${hex(a + 40)}`));
  });

  Deno.test(`PhysicalAllocator (${policy}, debug) poisons freed memory across coalescing`, () => {
    const { heap, window } = makeHeap(policy);
    const a = heap.alloc(64);
    const b = heap.alloc(64);
    const c = heap.alloc(64);
    heap.alloc(8);
    heap.free(a);
    heap.free(c);
    heap.free(b); // merges both ways: b's header, a's footer and c's header are body now
    heap.check();
    const view = window();
    for (const address of [b - 16, b, b + 40, c - 16, c - 8, c + 40, a + 60]) {
      view[address - BASE_ADDRESS] ^= 0xff;
      assertCaught(view, () => heap.check(), new RegExp(`freed memory at ${hex(address)}`));
      view[address - BASE_ADDRESS] ^= 0xff;
    }
    heap.check();
    assert.throws(() => heap.free(b), { code: "DOUBLE_FREE" });
    assert.throws(() => heap.free(c), { code: "DOUBLE_FREE" });
    assert.throws(() => heap.free(a), { code: "DOUBLE_FREE" });
  });

  Deno.test(`PhysicalAllocator (${policy}, debug) keeps stats exact and counts guards as overhead`, () => {
    const debug = makeHeap(policy).heap;
    const plain = makeHeap(policy, false).heap;
    const sizes = [1, 7, 8, 24, 100, 4000];
    const addresses = sizes.map((size) => debug.alloc(size));
    sizes.forEach((size) => plain.alloc(size));
    addresses.forEach((address, i) => assert.equal(debug.bytes(address).length, sizes[i]));
    assert.throws(() => debug.bytes(addresses[0], 2), { code: "INVALID_SIZE" });
    const s = debug.stats();
    assert.equal(s.totalBytes, s.freeBytes + s.usedBytes + s.overheadBytes + s.skippedBytes);
    assert.equal(s.usedBytes, plain.stats().usedBytes);
    // Every block's slack (overhead) holds at least the guard.
    const blockSizes = new Map([...debug.blocks()].map((b) => [b.address, b.sizeBytes]));
    addresses.forEach((address, i) => {
      const slack = blockSizes.get(address - 16)! - 16 - sizes[i];
      assert.ok(slack >= GUARD_BYTES_MIN, `slack ${slack} of a ${sizes[i]}-byte payload`);
    });
    debug.check();
    addresses.forEach((address) => debug.free(address));
    debug.check();
    assert.equal(debug.stats().freeBlocks, 1);
  });

  Deno.test(`PhysicalAllocator (${policy}, debug) survives 20k random operations against the model`, () => {
    runModel({ policy, native: false, debug: true }, 20261126, 20_000);
  });
}
