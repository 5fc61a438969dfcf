/**
 * The hot paths of the page-frame and slab layers beside the block fast path
 * and glibc reached through FFI (its fastest binding: `usize` values kept as
 * BigInt), all in one run; ns per alloc+free pair. Every heap holds 10^4 live
 * allocations first, and the harness's own cost per call is measured too, so
 * the distance to the limit is visible.
 *
 *   deno bench --allow-ffi --allow-read --allow-env bench/layers_bench.ts
 *
 * @module
 */

import { PhysicalAllocator } from "../mod.ts";

const HEAP_BYTES = 64 << 20;
const SMALL_SIZES = [16, 24, 32, 48, 64, 96, 128, 256];

function heapWithLive(layers: boolean): PhysicalAllocator {
  const heap = PhysicalAllocator.fromBuffer(new Uint8Array(HEAP_BYTES), { layers, native: false });
  const live: number[] = [];
  for (let i = 0; i < 10_000; i++) live.push(heap.alloc(SMALL_SIZES[i & 7] + (i % 5)));
  for (let i = 0; i < live.length; i += 3) heap.free(live[i]);
  return heap;
}

const layered = heapWithLive(true);
const blocks = heapWithLive(false);
const cache = layered.createCache("bench_object", 32);
const keep = cache.alloc(); // keeps the cache's slab warm between pairs
const libc = Deno.dlopen(
  "libc.so.6",
  {
    malloc: { parameters: ["usize"], result: "usize" },
    free: { parameters: ["usize"], result: "void" },
  } as const,
);
const SIZE_32 = 32n;
const BIG_SIZES = SMALL_SIZES.map((size) => BigInt(size));
let sink = 0;

const small = "alloc+free pair, 32 bytes";
Deno.bench({ name: "harness (a counter per call)", group: small, fn: () => void sink++ });
Deno.bench({
  name: "slab: kmalloc-32 via alloc/free",
  group: small,
  baseline: true,
  fn: () => layered.free(layered.alloc(32)),
});
Deno.bench({
  name: "slab: createCache object",
  group: small,
  fn: () => cache.free(cache.alloc()),
});
Deno.bench({
  name: "blocks: TLSF fast path (layers: false)",
  group: small,
  fn: () => blocks.free(blocks.alloc(32)),
});
Deno.bench({
  name: "glibc malloc+free via FFI (usize BigInt)",
  group: small,
  fn: () => libc.symbols.free(libc.symbols.malloc(SIZE_32)),
});

const mixed = "alloc+free pair, 16 to 256 bytes";
let i = 0;
let j = 0;
let k = 0;
Deno.bench({
  name: "slab: kmalloc classes",
  group: mixed,
  baseline: true,
  fn: () => layered.free(layered.alloc(SMALL_SIZES[i++ & 7])),
});
Deno.bench({
  name: "blocks: TLSF fast path (layers: false)",
  group: mixed,
  fn: () => blocks.free(blocks.alloc(SMALL_SIZES[j++ & 7])),
});
Deno.bench({
  name: "glibc malloc+free via FFI (usize BigInt)",
  group: mixed,
  fn: () => libc.symbols.free(libc.symbols.malloc(BIG_SIZES[k++ & 7])),
});

const page = "alloc+free pair, 4 KiB page-aligned";
Deno.bench({
  name: "frames: alloc(4096, 4096)",
  group: page,
  baseline: true,
  fn: () => layered.free(layered.alloc(4096, 4096)),
});
Deno.bench({
  name: "frames: allocPages(0)/freePages",
  group: page,
  fn: () => layered.freePages(layered.allocPages(0)),
});
Deno.bench({
  name: "blocks: alloc(4096, 4096) (layers: false)",
  group: page,
  fn: () => blocks.free(blocks.alloc(4096, 4096)),
});

globalThis.addEventListener("unload", () => {
  cache.free(keep);
  libc.close();
});
