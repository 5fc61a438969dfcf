import assert from "#assert";
import { blockSizeFor, BlockWords } from "../allocator/heap/block.ts";
import {
  controlBytes,
  FL_COUNT_MAX,
  FLAG_LAST,
  GRANULE_BYTES,
  MIN_BLOCK_BYTES,
} from "../allocator/heap/layout.ts";
import { ControlBlock } from "../allocator/heap/control_block.ts";
import type { FreeListPolicy } from "../allocator/heap/policy/policy.ts";
import { FirstFitPolicy } from "../allocator/heap/policy/first_fit.ts";
import { TlsfPolicy } from "../allocator/heap/policy/tlsf.ts";
import { viewAddress } from "../native/loader.ts";
import type { NativeSymbols } from "../native/symbols.ts";
import { Random } from "./support/random.ts";
import { nativeOrSkip } from "./support/native_library.ts";

const native = nativeOrSkip("tests/native_find_test.ts (native finds against the TS policies)");

/** A heap image laid out block by block by the TS policies, with no allocator around it. */
interface Heap {
  readonly policy: FreeListPolicy;
  /** window_address, window_bytes, base_address, control_host, control_bytes. */
  readonly memory: [number, number, number, number, number];
  readonly key: number;
  readonly freeCount: number;
  /** The used blocks, in address order. */
  readonly used: readonly number[];
}

/**
 * Fills a fresh window with alternating used and free blocks of random sizes,
 * listing the free ones with the TS policy exactly as the allocator does.
 */
function buildHeap(
  policyName: "first-fit" | "tlsf",
  random: Random,
  windowBytes: number,
  baseAddress: number,
  detached = false,
): Heap {
  const window = new Uint8Array(windowBytes);
  const key = random.int(0, 0xffffffff);
  const blocks = new BlockWords(window, baseAddress, key);
  // Sized for the most first levels; TLSF uses what the window needs.
  const control = detached
    ? ControlBlock.detached(controlBytes(FL_COUNT_MAX))
    : new ControlBlock(blocks.words, 0, baseAddress, controlBytes(FL_COUNT_MAX));
  const memory: Heap["memory"] = [
    viewAddress(window),
    windowBytes,
    baseAddress,
    viewAddress(control.words) + 4 * control.index,
    control.sizeBytes,
  ];
  const policy = policyName === "tlsf"
    ? new TlsfPolicy(blocks, control, windowBytes)
    : new FirstFitPolicy(blocks, control);
  policy.initControl();
  const end = baseAddress + windowBytes;
  let block = detached ? baseAddress : baseAddress + Math.ceil(policy.controlBytes / 64) * 64;
  let previousFree = 0;
  let freeCount = 0;
  const used: number[] = [];
  let free = random.next() < 0.5;
  while (block < end) {
    const large = random.next() < 0.05;
    let sizeBytes = GRANULE_BYTES * random.int(MIN_BLOCK_BYTES / 8, large ? 4096 : 64);
    if (end - block - sizeBytes < MIN_BLOCK_BYTES) sizeBytes = end - block;
    const flags = block + sizeBytes === end ? FLAG_LAST : 0;
    if (free) {
      blocks.writeFree(block, sizeBytes, flags);
      policy.insert(block, sizeBytes, previousFree);
      previousFree = block;
      freeCount++;
    } else {
      blocks.writeHeader(block, sizeBytes, flags, 0);
      used.push(block);
    }
    block += sizeBytes;
    free = !free;
  }
  return { policy, memory, key, freeCount, used };
}

function nativeFind(lib: NativeSymbols, heap: Heap, blockSizeBytes: number, alignBytes: number) {
  const { memory, key } = heap;
  return heap.policy.name === "tlsf"
    ? lib.pma_tlsf_find(...memory, key, blockSizeBytes, alignBytes)
    : lib.pma_first_fit_find(...memory, key, blockSizeBytes, alignBytes, heap.freeCount);
}

const layouts = [
  { baseAddress: 0x1000, detached: false },
  { baseAddress: 2 ** 40 + 0x2000, detached: false },
  { baseAddress: 0x1000, detached: true },
  { baseAddress: 2 ** 40 + 0x2000, detached: true },
];

for (const policyName of ["first-fit", "tlsf"] as const) {
  for (const { baseAddress, detached } of layouts) {
    Deno.test({
      name: `pma_${policyName.replace("-", "_")}_find() returns the block the TS policy finds ` +
        `(base 0x${baseAddress.toString(16)}, control ${detached ? "detached" : "in the window"})`,
      ignore: native === null,
      fn() {
        const random = new Random(0xf1d + baseAddress + (detached ? 1 : 0));
        let requests = 0;
        let found = 0;
        for (let heapIndex = 0; heapIndex < 20; heapIndex++) {
          const windowBytes = 1 << random.int(12, 20);
          const heap = buildHeap(policyName, random, windowBytes, baseAddress, detached);
          for (let i = 0; i < 500; i++) {
            const sizeBytes = random.int(1, random.next() < 0.2 ? 1 << 16 : 512);
            const alignBytes = 2 ** (random.next() < 0.5 ? 3 : random.int(3, 14));
            const blockSizeBytes = blockSizeFor(sizeBytes);
            const expected = heap.policy.find(blockSizeBytes, alignBytes);
            const actual = nativeFind(native!, heap, blockSizeBytes, alignBytes);
            if (actual !== expected) {
              assert.fail(
                `${policyName} find(${blockSizeBytes}, ${alignBytes}) on heap ${heapIndex}: ` +
                  `native 0x${actual.toString(16)}, TS 0x${expected.toString(16)}`,
              );
            }
            requests++;
            if (expected !== 0) found++;
          }
        }
        // Both outcomes must be exercised for the comparison to mean anything.
        assert.ok(found > requests / 10, `only ${found} of ${requests} requests found a block`);
        assert.ok(found < requests, `all ${requests} requests found a block`);
      },
    });
  }
}

Deno.test({
  name: "pma_first_fit_find() stops after steps_max blocks like the TS scan",
  ignore: native === null,
  fn() {
    const heap = buildHeap("first-fit", new Random(7), 1 << 16, 0x1000);
    const listed = heap.policy.listed(heap.freeCount + 1);
    const last = listed[listed.length - 1];
    const find = (stepsMax: number) =>
      native!.pma_first_fit_find(...heap.memory, heap.key, 40, 8, stepsMax);
    assert.equal(find(heap.freeCount), listed[0]);
    assert.equal(find(0), 0);
    assert.notEqual(last, listed[0]);
  },
});

Deno.test({
  name: "pma_first_fit_predecessor() finds the insert position the address-ordered list needs",
  ignore: native === null,
  fn() {
    const random = new Random(0x9e3);
    let checked = 0;
    for (let heapIndex = 0; heapIndex < 20; heapIndex++) {
      const heap = buildHeap("first-fit", random, 1 << random.int(14, 18), 0x1000);
      const listed = heap.policy.listed(heap.freeCount + 1);
      const { memory, freeCount } = heap;
      for (const block of heap.used) {
        const before = listed.filter((free) => free < block);
        const expected = before.at(-1) ?? 0;
        const after = before.length === 0 ? 0 : random.pick([0, ...before]);
        const actual = native!.pma_first_fit_predecessor(...memory, block, after, freeCount);
        assert.equal(
          actual,
          expected,
          `block 0x${block.toString(16)} after 0x${after.toString(16)}`,
        );
        checked++;
      }
      if (listed.length > 2) {
        const past = listed[listed.length - 1] + 8;
        const tooFew = native!.pma_first_fit_predecessor(...memory, past, 0, 0);
        assert.equal(tooFew, -1);
      }
    }
    assert.ok(checked > 500, `only ${checked} positions checked`);
  },
});
