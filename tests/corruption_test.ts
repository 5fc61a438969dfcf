/**
 * Corruption detection: headers overwritten by a payload overflow, footers,
 * free-list links and the control block, each found by `free`, `realloc` or
 * `check()` and reported as HEAP_CORRUPTION naming the address, with the
 * heap left exactly as it was found.
 */
import assert from "#assert";
import { headerKeyOf } from "../allocator/heap/_inspect.ts";
import { HeapCorruptionError, PhysicalAllocator, POLICY_NAMES, type PolicyName } from "../mod.ts";
import { hex } from "../allocator/memory/physical_memory.ts";
import {
  CONTROL_FL_BITMAP_OFFSET,
  CONTROL_SL_BITMAPS_OFFSET,
  controlHeadsOffset,
  FLAG_LAST,
  FREE_NEXT_OFFSET,
  FREE_PREV_OFFSET,
  HEADER_BYTES,
  HEADER_SLACK_OFFSET,
  headerCheck,
} from "../allocator/heap/layout.ts";

const BASE_ADDRESS = 0x1000;

/** A heap with three used 24-byte blocks, and the whole window as bytes (the "wider view"). */
function makeHeap(policy: PolicyName) {
  const heap = PhysicalAllocator.fromBuffer(new Uint8Array(64 * 1024), { policy, native: false });
  const a = heap.alloc(24);
  const b = heap.alloc(24);
  const c = heap.alloc(24);
  // Writing past bytes(a)'s end: a view over the same buffer, wider than the payload.
  const window = new Uint8Array(heap.bytes(a).buffer);
  const at = (address: number) => address - BASE_ADDRESS;
  const words = new Uint32Array(window.buffer);
  const word = (address: number) => (address - BASE_ADDRESS) / 4;
  return { heap, a, b, c, window, at, words, word };
}

/**
 * Asserts `call` throws HeapCorruptionError with `address` as its address and
 * in its message, and that the call changed no byte of the heap.
 */
function assertCorruption(
  window: Uint8Array,
  call: () => unknown,
  address: number,
  message?: RegExp,
): void {
  const before = window.slice();
  assert.throws(call, (error: unknown) => {
    assert.ok(error instanceof HeapCorruptionError, `threw ${String(error)}`);
    assert.equal(error.code, "HEAP_CORRUPTION");
    assert.equal(hex(error.address), hex(address));
    assert.ok(error.message.includes(hex(address)), `"${error.message}" names ${hex(address)}`);
    if (message !== undefined) assert.match(error.message, message);
    return true;
  });
  assert.deepEqual(window, before, "the failing call modified the heap");
}

for (const policy of POLICY_NAMES) {
  Deno.test(`PhysicalAllocator (${policy}) reports a header overwritten by a payload overflow`, async (t) => {
    // Each overflow writes past the end of a's 24-byte payload into b's header.
    const overflows: [string, (h: ReturnType<typeof makeHeap>) => void][] = [
      ["the size", (h) => (h.window[h.at(h.b - HEADER_BYTES)] ^= 0x40)],
      ["the flags", (h) => (h.window[h.at(h.b - HEADER_BYTES)] |= 1)],
      ["the slack word", (h) => (h.window[h.at(h.b - HEADER_BYTES + HEADER_SLACK_OFFSET)] = 7)],
      ["the check word", (h) => (h.window[h.at(h.b - 1)] ^= 0xff)],
      [
        "the whole header, with zeros",
        (h) => h.window.fill(0, h.at(h.b - HEADER_BYTES), h.at(h.b)),
      ],
      ["a memset of 0x41 over it", (h) => h.window.fill(0x41, h.at(h.a), h.at(h.b))],
    ];
    for (const [what, overflow] of overflows) {
      await t.step(`overwriting ${what}`, () => {
        const h = makeHeap(policy);
        overflow(h);
        const header = h.b - HEADER_BYTES;
        assertCorruption(h.window, () => h.heap.free(h.b), header, /corrupted/);
        assertCorruption(h.window, () => h.heap.realloc(h.b, 8), header, /corrupted/);
        assertCorruption(h.window, () => h.heap.realloc(h.b, 4000), header);
        assertCorruption(h.window, () => h.heap.bytes(h.b), header);
        assertCorruption(h.window, () => h.heap.check(), header, /check word mismatch/);
        // Freeing or growing the block before it must not trust the damaged neighbour.
        assertCorruption(h.window, () => h.heap.free(h.a), header, /after/);
        assertCorruption(h.window, () => h.heap.realloc(h.a, 100), header, /after/);
      });
    }
  });

  Deno.test(`PhysicalAllocator (${policy}) reports a damaged footer of a free block`, () => {
    const h = makeHeap(policy);
    h.heap.free(h.b); // b's block is free between a and c; its footer ends just before c's header
    const freeBlock = h.b - HEADER_BYTES;
    const footer = h.c - HEADER_BYTES - 8;
    h.words[h.word(footer)] = 48;
    // free(c) finds its free predecessor through that footer.
    assertCorruption(h.window, () => h.heap.free(h.c), h.c - HEADER_BYTES, /footer \(48\)/);
    assertCorruption(h.window, () => h.heap.check(), freeBlock, /footer != the size/);
  });

  Deno.test(`PhysicalAllocator (${policy}) reports corrupted free-list links`, async (t) => {
    const cases: [string, (h: ReturnType<typeof makeHeap>, free: number) => number, RegExp][] = [
      ["a next link into a used block", (h, free) => {
        h.words[h.word(free + FREE_NEXT_OFFSET)] = h.c - HEADER_BYTES;
        return h.c - HEADER_BYTES;
      }, /listed block is not a free block/],
      ["a next link to itself (a cycle)", (h, free) => {
        h.words[h.word(free + FREE_NEXT_OFFSET)] = free;
        return free;
      }, /listed twice|does not end/],
      ["a wrong back link", (h, free) => {
        h.words[h.word(free + FREE_PREV_OFFSET)] = h.a - HEADER_BYTES;
        return free;
      }, /back link is wrong/],
    ];
    for (const [what, corrupt, message] of cases) {
      await t.step(what, () => {
        const h = makeHeap(policy);
        h.heap.free(h.b); // a lone free block: its links are the first 16 bytes of b's old payload
        const free = h.b - HEADER_BYTES;
        const reported = corrupt(h, free);
        assertCorruption(h.window, () => h.heap.check(), reported, message);
      });
    }
  });

  Deno.test(`PhysicalAllocator (${policy}) does not carve a forged block a corrupted link points to`, () => {
    const h = makeHeap(policy);
    const victim = h.heap.alloc(200);
    h.heap.alloc(8);
    h.heap.free(h.b);
    // A free header forged inside a live payload (4096 bytes, FLAG_FREE), and every list
    // head or link that could lead a search to it.
    const forged = victim + 16;
    h.words[h.word(forged)] = 4096 | 1;
    h.words[h.word(forged) + 1] = 0;
    h.words[h.word(h.b - HEADER_BYTES + FREE_NEXT_OFFSET)] = forged;
    const flCount = policy === "tlsf" ? h.words[h.word(BASE_ADDRESS + 8)] : 0;
    const heads = BASE_ADDRESS + controlHeadsOffset(flCount);
    for (let i = 0; i < (flCount === 0 ? 1 : flCount * 16); i++) {
      if (h.words[h.word(heads + 8 * i)] !== 0) h.words[h.word(heads + 8 * i)] = forged;
    }
    assertCorruption(h.window, () => h.heap.alloc(64), forged, /damaged header/);
    assertCorruption(h.window, () => h.heap.tryAlloc(64), forged, /damaged header/);
  });

  Deno.test(`PhysicalAllocator (${policy}) does not unlink a free neighbour whose links do not point back`, () => {
    const h = makeHeap(policy);
    h.heap.free(h.b);
    const free = h.b - HEADER_BYTES;
    // A write after free puts a live payload's address in b's next link: unlinking b
    // would write b's previous link into that payload.
    h.words[h.word(free + FREE_NEXT_OFFSET)] = h.c;
    assertCorruption(h.window, () => h.heap.free(h.a), free, /do not point back/);
    // First-fit lists c's free successor after b, so its back link is checked (and broken) first.
    const tail = h.c - HEADER_BYTES + 40;
    const reported = policy === "first-fit" ? tail : free;
    assertCorruption(h.window, () => h.heap.free(h.c), reported, /do not point back/);
    assertCorruption(h.window, () => h.heap.realloc(h.a, 48), free, /do not point back/);
  });

  Deno.test(`PhysicalAllocator (${policy}) reports a corrupted list head in the control block`, () => {
    const h = makeHeap(policy);
    h.heap.free(h.b);
    // The control block sits at the start of the buffer; point every list head at block c.
    const flCount = policy === "tlsf" ? h.words[h.word(BASE_ADDRESS + 8)] : 0;
    const heads = BASE_ADDRESS + controlHeadsOffset(flCount);
    const headCount = flCount === 0 ? 1 : flCount * 16;
    for (let i = 0; i < headCount; i++) {
      if (h.words[h.word(heads + 8 * i)] !== 0) h.words[h.word(heads + 8 * i)] = h.c - HEADER_BYTES;
    }
    assertCorruption(h.window, () => h.heap.check(), h.c - HEADER_BYTES, /listed block/);
  });
}

for (const policy of POLICY_NAMES) {
  Deno.test(`PhysicalAllocator (${policy}) reports a region's first block forged to follow a free block`, () => {
    // A header rewritten whole, check word included, to claim a free
    // predecessor where none can be: the footer it would read lies before
    // the region (in identity-mapped memory, possibly unmapped), so it must
    // not be read at all.
    const h = makeHeap(policy);
    const first = h.a - HEADER_BYTES;
    const i = h.word(first);
    h.words[i] |= 2; // FLAG_PREV_FREE
    h.words[i + 3] = headerCheck(
      first,
      h.words[i],
      h.words[i + 1],
      h.words[i + 2],
      headerKeyOf(h.heap),
    );
    assertCorruption(
      h.window,
      () => h.heap.free(h.a),
      h.a - HEADER_BYTES,
      /flagged as following a free block, but no block fits before it in its region/,
    );
  });
}

for (const policy of ["tlsf", "first-fit"] as const) {
  Deno.test(`PhysicalAllocator.check() (${policy}) reports a LAST flag forged on or off`, async (t) => {
    // Headers rewritten whole, check word included: only check()'s position test sees them.
    const forgeFlag = (h: ReturnType<typeof makeHeap>, block: number, on: boolean) => {
      const i = h.word(block);
      h.words[i] = on ? h.words[i] | FLAG_LAST : h.words[i] & ~FLAG_LAST;
      h.words[i + 3] = headerCheck(
        block,
        h.words[i],
        h.words[i + 1],
        h.words[i + 2],
        headerKeyOf(h.heap),
      );
    };
    await t.step("set on a block in the middle of its region", () => {
      const h = makeHeap(policy);
      forgeFlag(h, h.b - HEADER_BYTES, true);
      assertCorruption(h.window, () => h.heap.check(), h.b - HEADER_BYTES, /LAST flag/);
    });
    await t.step("cleared on the last block of its region", () => {
      const h = makeHeap(policy);
      const last = [...h.heap.blocks()].at(-1)!.address;
      forgeFlag(h, last, false);
      assertCorruption(h.window, () => h.heap.check(), last, /LAST flag/);
    });
  });
}

Deno.test("PhysicalAllocator (tlsf) reports a corrupted control-block bitmap", async (t) => {
  const cases: [string, (h: ReturnType<typeof makeHeap>) => void, RegExp][] = [
    ["a second-level bit set for an empty class", (h) => {
      h.words[h.word(BASE_ADDRESS + CONTROL_SL_BITMAPS_OFFSET)] |= 1 << 3;
    }, /bitmap bit of class 3 disagrees with its list/],
    ["a second-level bit cleared for a listed class", (h) => {
      h.words[h.word(BASE_ADDRESS + CONTROL_SL_BITMAPS_OFFSET)] = 0;
    }, /disagrees/],
    ["a first-level bit cleared", (h) => {
      h.words[h.word(BASE_ADDRESS + CONTROL_FL_BITMAP_OFFSET)] = 0;
    }, /first-level bit \d+ disagrees with its bitmap/],
    ["a first-level bit set for an empty level", (h) => {
      h.words[h.word(BASE_ADDRESS + CONTROL_FL_BITMAP_OFFSET)] |= 1 << 2;
    }, /first-level bit 2 disagrees/],
  ];
  for (const [what, corrupt, message] of cases) {
    await t.step(what, () => {
      const h = makeHeap("tlsf");
      h.heap.free(h.b); // a 40-byte free block: class 5 of first level 0
      corrupt(h);
      assertCorruption(h.window, () => h.heap.check(), BASE_ADDRESS, message);
    });
  }
});
