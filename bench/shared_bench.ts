/**
 * What a single Worker pays for shared mode: alloc+free pairs on an unshared
 * heap (the baseline) and on a shared heap over a SharedArrayBuffer (every
 * call takes and releases the block lock and copies the counters in and
 * out of the shared header), side by side, on an empty heap and on a heap
 * with 10^4 live blocks. The goal is at most 1.1x.
 *
 *   deno bench --allow-read --allow-env bench/shared_bench.ts
 *
 * @module
 */

import { PhysicalAllocator } from "../mod.ts";

const SIZES = [16, 24, 40, 64, 100, 256, 1000, 4000];
const HEAP_BYTES = 32 << 20;

function heapWithLiveBlocks(memory: ArrayBuffer | SharedArrayBuffer, liveCount: number) {
  const heap = PhysicalAllocator.fromBuffer(memory, { native: false });
  const live: number[] = [];
  for (let i = 0; i < liveCount; i++) live.push(heap.alloc(SIZES[i % SIZES.length]));
  for (let i = 0; i < live.length; i += 3) heap.free(live[i]);
  return heap;
}

for (const liveCount of [0, 10_000]) {
  const group = `alloc+free pair, ${liveCount} live blocks`;
  for (const shared of [false, true]) {
    const heap = heapWithLiveBlocks(
      shared ? new SharedArrayBuffer(HEAP_BYTES) : new ArrayBuffer(HEAP_BYTES),
      liveCount,
    );
    let i = 0;
    Deno.bench({
      name: `${shared ? "shared" : "unshared"} ${group}`,
      group,
      baseline: !shared,
      fn() {
        heap.free(heap.alloc(SIZES[i++ & 7]));
      },
    });
  }
}

const reallocGroup = "alloc+realloc+free, 0 live blocks";
for (const shared of [false, true]) {
  const heap = heapWithLiveBlocks(
    shared ? new SharedArrayBuffer(HEAP_BYTES) : new ArrayBuffer(HEAP_BYTES),
    0,
  );
  let i = 0;
  Deno.bench({
    name: `${shared ? "shared" : "unshared"} ${reallocGroup}`,
    group: reallocGroup,
    baseline: !shared,
    fn() {
      heap.free(heap.realloc(heap.alloc(SIZES[i++ & 7]), 300));
    },
  });
}
