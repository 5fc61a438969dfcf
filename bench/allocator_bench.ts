/**
 * alloc+free pairs of each policy on the pure-TS path, side by side in one
 * run, on an empty heap and on a heap with 10^4 live blocks.
 *
 *   deno bench --allow-ffi --allow-read --allow-env bench/allocator_bench.ts
 *
 * @module
 */

import { PhysicalAllocator, type PolicyName } from "../mod.ts";

const POLICIES: PolicyName[] = ["tlsf", "first-fit"];
const SIZES = [16, 24, 40, 64, 100, 256, 1000, 4000];

function heapWithLiveBlocks(policy: PolicyName, liveCount: number): PhysicalAllocator {
  const heap = PhysicalAllocator.fromBuffer(new Uint8Array(32 << 20), { policy, native: false });
  const live: number[] = [];
  for (let i = 0; i < liveCount; i++) live.push(heap.alloc(SIZES[i % SIZES.length]));
  // Free every third block so the free lists hold many small holes.
  for (let i = 0; i < live.length; i += 3) heap.free(live[i]);
  return heap;
}

for (const liveCount of [0, 10_000]) {
  const group = `alloc+free pair, ${liveCount} live blocks`;
  for (const policy of POLICIES) {
    const heap = heapWithLiveBlocks(policy, liveCount);
    let i = 0;
    Deno.bench({
      name: `${policy} ${group}`,
      group,
      baseline: policy === "tlsf",
      fn() {
        heap.free(heap.alloc(SIZES[i++ & 7]));
      },
    });
  }
}

const pageGroup = "page-aligned 4 KiB alloc+free pair";
for (const policy of POLICIES) {
  const heap = heapWithLiveBlocks(policy, 1000);
  Deno.bench({
    name: `${policy} ${pageGroup}`,
    group: pageGroup,
    baseline: policy === "tlsf",
    fn() {
      heap.free(heap.alloc(4096, 4096));
    },
  });
}
