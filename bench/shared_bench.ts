/**
 * What a single Worker pays for shared mode: alloc+free pairs on an unshared
 * heap with its default page-frame and slab layers (the baseline), on a
 * shared heap over a SharedArrayBuffer with the same layers (a call its
 * Worker cache does not serve takes and releases the lock and copies the
 * counters, and the layers' fields when they changed, in and out of the
 * shared header), and both with the block layer alone, side by side, on an
 * empty heap and on a heap with 10^4 live blocks. The goal is at most 1.1x.
 * Then page runs (allocPages(0)+freePages), and a real program's trace
 * replayed on one Worker (python3_objects.rep: its frees and allocations
 * come in bursts, so the Worker caches refill and drain, moving objects
 * between bins and slabs, which a pair in a loop never does).
 *
 *   deno bench --allow-read --allow-env bench/shared_bench.ts
 *
 * @module
 */

import { PhysicalAllocator } from "../mod.ts";
import { freshCopy } from "../tools/trace/fresh_copy.ts";
import { loadTraces } from "../tools/trace/main.ts";
import { heapBytesFor, REPLAY_KINDS, replayCalls } from "../tools/trace/replay.ts";

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

// Page runs: allocPages(0)+freePages pairs (frames under the heap lock on a shared heap).
const pagesGroup = "allocPages(0)+freePages, 1 page live";
for (const variant of VARIANTS.filter((v) => v.layers)) {
  const heap = heapWithLiveBlocks(variant, 0);
  heap.allocPages(0);
  Deno.bench({
    name: `${variant.name} ${pagesGroup}`,
    group: pagesGroup,
    baseline: variant === VARIANTS[0],
    fn() {
      heap.freePages(heap.allocPages(0));
    },
  });
}

// A real program's calls, not one pair in a loop: a trace replayed on one Worker, where the
// Worker caches' refills and drains (objects moved between bins and slabs) show.
const [trace] = await loadTraces([
  new URL("./traces/python3_objects.rep", import.meta.url).pathname,
]);
const replayGroup = `${trace.name} replay (${trace.opCount} operations)`;
const replayBytes = Math.ceil(heapBytesFor(trace) / 4096) * 4096 + (1 << 20);
for (const variant of VARIANTS.filter((v) => v.layers)) {
  const memory = variant.shared ? new SharedArrayBuffer(replayBytes) : new ArrayBuffer(replayBytes);
  const slots = new Float64Array(trace.slotCount);
  // A copy per variant: the two heaps' calls do not share one loop's type feedback.
  const replay = freshCopy(replayCalls, REPLAY_KINDS);
  Deno.bench({
    name: `${variant.name} ${replayGroup}`,
    group: replayGroup,
    baseline: variant === VARIANTS[0],
    fn() {
      const heap = PhysicalAllocator.fromBuffer(memory, { native: false, reinitialize: true });
      slots.fill(0);
      replay(heap, trace, slots);
      heap.close();
    },
  });
}
