/**
 * What a single Worker pays for shared mode: alloc+free pairs on an unshared
 * heap with its default page-frame and slab layers (the baseline), on a
 * shared heap over a SharedArrayBuffer with the same layers (a call its
 * Worker cache does not serve takes and releases the lock and copies the
 * counters, and the layers' fields when they changed, in and out of the
 * shared header), and both with the block layer alone, side by side, on an
 * empty heap and on a heap with 10^4 live blocks. The goal is at most 1.1x.
 *
 *   deno bench --allow-read --allow-env bench/shared_bench.ts
 *
 * @module
 */

import { PhysicalAllocator } from "../mod.ts";

const SIZES = [16, 24, 40, 64, 100, 256, 1000, 4000];
const HEAP_BYTES = 32 << 20;

const VARIANTS = [
  { name: "unshared, with layers", shared: false, layers: true },
  { name: "shared, with layers", shared: true, layers: true },
  { name: "unshared, block layer", shared: false, layers: false },
  { name: "shared, block layer", shared: true, layers: false },
];

function heapWithLiveBlocks(variant: typeof VARIANTS[number], liveCount: number) {
  const memory = variant.shared ? new SharedArrayBuffer(HEAP_BYTES) : new ArrayBuffer(HEAP_BYTES);
  const heap = PhysicalAllocator.fromBuffer(memory, { native: false, layers: variant.layers });
  const live: number[] = [];
  for (let i = 0; i < liveCount; i++) live.push(heap.alloc(SIZES[i % SIZES.length]));
  for (let i = 0; i < live.length; i += 3) heap.free(live[i]);
  return heap;
}

for (const liveCount of [0, 10_000]) {
  const group = `alloc+free pair, ${liveCount} live blocks`;
  for (const variant of VARIANTS) {
    const heap = heapWithLiveBlocks(variant, liveCount);
    let i = 0;
    Deno.bench({
      name: `${variant.name} ${group}`,
      group,
      baseline: variant === VARIANTS[0],
      fn() {
        heap.free(heap.alloc(SIZES[i++ & 7]));
      },
    });
  }
}

const reallocGroup = "alloc+realloc+free, 0 live blocks";
for (const variant of VARIANTS) {
  const heap = heapWithLiveBlocks(variant, 0);
  let i = 0;
  Deno.bench({
    name: `${variant.name} ${reallocGroup}`,
    group: reallocGroup,
    baseline: variant === VARIANTS[0],
    fn() {
      heap.free(heap.realloc(heap.alloc(SIZES[i++ & 7]), 300));
    },
  });
}
