/**
 * alloc+free pairs of each policy on the pure-TS path, side by side in one
 * run, on an empty heap and on a heap with 10^4 live blocks; TLSF both on its
 * fast path (the default) and with `fastPath: false` (the general path). The
 * blocks alone (`layers: false`); bench/layers_bench.ts sets them beside the
 * page-frame and slab layers.
 *
 *   deno bench --allow-ffi --allow-read --allow-env bench/allocator_bench.ts
 *
 * @module
 */

import { type AllocatorOptions, PhysicalAllocator, POLICY_NAMES, type PolicyName } from "../mod.ts";

const POLICIES: readonly PolicyName[] = POLICY_NAMES;
const SIZES = [16, 24, 40, 64, 100, 256, 1000, 4000];

/** The allocators compared: TLSF on each path, then first-fit. */
const VARIANTS: { name: string; options: AllocatorOptions }[] = [
  { name: "tlsf", options: { policy: "tlsf", layers: false } },
  { name: "tlsf (general path)", options: { policy: "tlsf", fastPath: false, layers: false } },
  { name: "first-fit", options: { policy: "first-fit", layers: false } },
];

function heapWithLiveBlocks(options: AllocatorOptions, liveCount: number): PhysicalAllocator {
  const heap = PhysicalAllocator.fromBuffer(new Uint8Array(32 << 20), {
    ...options,
    native: false,
  });
  const live: number[] = [];
  for (let i = 0; i < liveCount; i++) live.push(heap.alloc(SIZES[i % SIZES.length]));
  // Free every third block so the free lists hold many small holes.
  for (let i = 0; i < live.length; i += 3) heap.free(live[i]);
  return heap;
}

for (const liveCount of [0, 10_000]) {
  const group = `alloc+free pair, ${liveCount} live blocks`;
  for (const variant of VARIANTS) {
    const heap = heapWithLiveBlocks(variant.options, liveCount);
    let i = 0;
    Deno.bench({
      name: `${variant.name} ${group}`,
      group,
      baseline: variant.name === "tlsf",
      fn() {
        heap.free(heap.alloc(SIZES[i++ & 7]));
      },
    });
  }
}

const pageGroup = "page-aligned 4 KiB alloc+free pair";
for (const policy of POLICIES) {
  const heap = heapWithLiveBlocks({ policy, layers: false }, 1000);
  Deno.bench({
    name: `${policy} ${pageGroup}`,
    group: pageGroup,
    baseline: policy === "tlsf",
    fn() {
      heap.free(heap.alloc(4096, 4096));
    },
  });
}
