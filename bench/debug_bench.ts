/**
 * The cost of debug mode (guard bytes and poison, allocator/heap/check/debug_guard.ts):
 * alloc+free pairs with `debug: true` against the same pairs without, per
 * policy and payload size, on the TS path. Each pair runs on a heap holding
 * a few hundred live blocks so the searches are not trivially the first block.
 *
 * ```sh
 * deno bench --allow-ffi --allow-read --allow-env bench/debug_bench.ts
 * ```
 */
import { PhysicalAllocator, POLICY_NAMES, type PolicyName } from "../mod.ts";

const HEAP_BYTES = 4 << 20;
const LIVE_BLOCKS = 256;
/** Pairs per bench iteration, so one iteration is long enough to time well. */
const PAIRS = 100;

function makeHeap(policy: PolicyName, debug: boolean): PhysicalAllocator {
  const heap = PhysicalAllocator.fromBuffer(new Uint8Array(HEAP_BYTES), {
    policy,
    native: false,
    debug,
  });
  const live = Array.from({ length: LIVE_BLOCKS * 2 }, (_, i) => heap.alloc(16 + (i % 7) * 40));
  // Free every other block: a heap with holes of several sizes.
  live.forEach((address, i) => i % 2 === 0 && heap.free(address));
  return heap;
}

for (const policy of POLICY_NAMES) {
  for (const sizeBytes of [64, 1024, 16384]) {
    const group = `alloc+free ${sizeBytes} B (${policy})`;
    for (const debug of [false, true]) {
      const heap = makeHeap(policy, debug);
      Deno.bench({
        name: `${PAIRS} pairs, ${debug ? "debug" : "normal"}`,
        group,
        baseline: !debug,
        fn() {
          for (let i = 0; i < PAIRS; i++) heap.free(heap.alloc(sizeBytes));
        },
      });
    }
  }
}
