/**
 * The hot paths of the page-frame and slab layers beside the block fast path,
 * glibc reached through FFI at its fastest binding (pointer objects, sizes
 * converted to BigInt before timing: `FFI_BINDING` in
 * `tools/trace/target_ffi.ts`) and the harness's own cost, all in one run.
 *
 *   deno bench --allow-ffi --allow-read --allow-env bench/layers_bench.ts
 *
 * Every iteration runs PAIRS alloc+free pairs (time per iteration / 1000 =
 * ns per pair; one pair per iteration would time mostly the bench timer).
 * Every heap holds 10^4 live allocations first. Each target runs its own
 * compiled copy of each loop (`tools/trace/fresh_copy.ts`), so one target's
 * calls do not make another's call sites polymorphic. The last group replays
 * `bench/traces/bash.rep` (100% requests of at most 256 bytes) through the
 * scoreboard's own targets, beside a no-op target whose allocator only counts:
 * what is left after it is the allocator's cost per operation.
 *
 * @module
 */

import { mapIdentity, PhysicalAllocator } from "../mod.ts";
import { loadTraces } from "../tools/trace/main.ts";
import { freshCopy } from "../tools/trace/fresh_copy.ts";
import { heapBytesFor } from "../tools/trace/replay.ts";
import { physicalTarget } from "../tools/trace/target_physical.ts";
import { glibcTarget, libraryOpens } from "../tools/trace/target_ffi.ts";
import { noopTarget } from "../tools/trace/target_noop.ts";

const PAIRS = 1000;
const HEAP_BYTES = 64 << 20;
const SMALL_SIZES = [16, 24, 32, 48, 64, 96, 128, 256];
const MIXED_BYTES = Array.from({ length: PAIRS }, (_, i) => SMALL_SIZES[i & 7]);
const MIXED_BIG = MIXED_BYTES.map((size) => BigInt(size));
/** Sizes of the mid kmalloc classes (over 256 bytes): blocks, or slabs once a class is warm. */
const MID_SIZES = [264, 300, 350, 392, 416, 450, 480, 512];
const MID_BYTES = Array.from({ length: PAIRS }, (_, i) => MID_SIZES[i & 7]);
const MID_BIG = MID_BYTES.map((size) => BigInt(size));

/** Where the identity-mapped heap lies: far above 2^31, where no address is a small integer. */
const IDENTITY_BASE = 64 * 2 ** 30;

function heapWithLive(layers: boolean, identity = false): PhysicalAllocator {
  const options = { layers, native: false };
  const heap = identity
    ? new PhysicalAllocator(mapIdentity([{ start: IDENTITY_BASE, length: HEAP_BYTES }]), options)
    : PhysicalAllocator.fromBuffer(new Uint8Array(HEAP_BYTES), options);
  const live: number[] = [];
  for (let i = 0; i < 10_000; i++) live.push(heap.alloc(SMALL_SIZES[i & 7] + (i % 5)));
  for (let i = 0; i < live.length; i += 3) heap.free(live[i]);
  return heap;
}

const layered = heapWithLive(true);
const blocks = heapWithLive(false);
/** The default heap over identity-mapped memory at 64 GiB, or null where mapping is impossible. */
const identity = (() => {
  try {
    return heapWithLive(true, true);
  } catch {
    return null;
  }
})();
const cache = layered.createCache("bench_object", 32);
const keep = cache.alloc(); // keeps the cache's slab warm between pairs
// Warms every mid class (a slab's worth of requests) and keeps one object of each live, so
// their slabs stay partial between pairs, as `keep` does for the cache.
const keepMid = MID_SIZES.map((size) => {
  const objects = Array.from({ length: 64 }, () => layered.alloc(size));
  // The last one is a slab object (the first ones a cold class turned away to blocks).
  for (const address of objects.slice(0, -1)) layered.free(address);
  return objects.at(-1)!;
});
const glibc = libraryOpens("libc.so.6")
  ? Deno.dlopen(
    "libc.so.6",
    {
      malloc: { parameters: ["usize"], result: "pointer" },
      free: { parameters: ["pointer"], result: "void" },
    } as const,
  ).symbols
  : null;
const counter = { calls: 0 };

/** One bench per target, each on its own copy of `loop`. */
function group(
  name: string,
  loop: (target: never) => void,
  targets: readonly [string, unknown][],
): void {
  for (const [targetName, target] of targets) {
    if (target === null) continue;
    const copy = freshCopy(loop, { PAIRS, MIXED_BYTES, MIXED_BIG, MID_BYTES, MID_BIG });
    Deno.bench(
      `${targetName} (x${PAIRS})`,
      { group: name, baseline: targetName === "harness" },
      () => copy(target as never),
    );
  }
}

group(
  "alloc+free pair, 32 bytes",
  ((t: { run(i: number): void }) => {
    for (let i = 0; i < PAIRS; i++) t.run(i);
  }) as (target: never) => void,
  [
    ["harness", { run: () => void counter.calls++ }],
    ["slab: kmalloc-32 via alloc/free", { run: () => layered.free(layered.alloc(32)) }],
    [
      "slab: kmalloc-32, identity-mapped at 64 GiB",
      identity && {
        run: () => identity.free(identity.alloc(32)),
      },
    ],
    ["slab: createCache object", { run: () => cache.free(cache.alloc()) }],
    ["blocks: TLSF fast path (layers: false)", { run: () => blocks.free(blocks.alloc(32)) }],
    ["glibc malloc+free via FFI", glibc && { run: () => glibc.free(glibc.malloc(32n)) }],
  ],
);

group(
  "alloc+free pair, 16 to 256 bytes",
  ((t: { run(i: number): void }) => {
    for (let i = 0; i < PAIRS; i++) t.run(i);
  }) as (target: never) => void,
  [
    ["harness", { run: (i: number) => void (counter.calls += MIXED_BYTES[i]) }],
    ["slab: kmalloc classes", { run: (i: number) => layered.free(layered.alloc(MIXED_BYTES[i])) }],
    [
      "slab: kmalloc classes, identity-mapped at 64 GiB",
      identity && {
        run: (i: number) => identity.free(identity.alloc(MIXED_BYTES[i])),
      },
    ],
    ["blocks: TLSF fast path (layers: false)", {
      run: (i: number) => blocks.free(blocks.alloc(MIXED_BYTES[i])),
    }],
    [
      "glibc malloc+free via FFI",
      glibc && { run: (i: number) => glibc.free(glibc.malloc(MIXED_BIG[i])) },
    ],
  ],
);

group(
  "alloc+free pair, 264 to 512 bytes",
  ((t: { run(i: number): void }) => {
    for (let i = 0; i < PAIRS; i++) t.run(i);
  }) as (target: never) => void,
  [
    ["harness", { run: (i: number) => void (counter.calls += MID_BYTES[i]) }],
    ["slab: mid kmalloc classes", {
      run: (i: number) => layered.free(layered.alloc(MID_BYTES[i])),
    }],
    ["blocks: TLSF fast path (layers: false)", {
      run: (i: number) => blocks.free(blocks.alloc(MID_BYTES[i])),
    }],
    [
      "glibc malloc+free via FFI",
      glibc && { run: (i: number) => glibc.free(glibc.malloc(MID_BIG[i])) },
    ],
  ],
);

group(
  "alloc+free pair, 4 KiB page-aligned",
  ((t: { run(): void }) => {
    for (let i = 0; i < PAIRS; i++) t.run();
  }) as (target: never) => void,
  [
    ["harness", { run: () => void counter.calls++ }],
    ["frames: alloc(4096, 4096)", { run: () => layered.free(layered.alloc(4096, 4096)) }],
    ["frames: allocPages(0)/freePages", { run: () => layered.freePages(layered.allocPages(0)) }],
    ["blocks: alloc(4096, 4096) (layers: false)", {
      run: () => blocks.free(blocks.alloc(4096, 4096)),
    }],
  ],
);

// A real trace through the scoreboard's targets: one warm heap per repetition, as `score` times them.
const trace = (await loadTraces([new URL("./traces/bash.rep", import.meta.url).pathname]))[0];
const replayTargets = [
  noopTarget(),
  physicalTarget({ policy: "tlsf" }),
  physicalTarget({ policy: "tlsf", layers: false }),
  ...(glibc === null ? [] : [glibcTarget()]),
];
for (const target of replayTargets) {
  Deno.bench(`${target.name}: bash.rep replay`, {
    group: `bash.rep replay (${trace.opCount} operations)`,
    baseline: target.name === "noop",
  }, (b) => {
    const heap = target.create(trace, heapBytesFor(trace));
    b.start();
    heap.run(trace);
    b.end();
    heap.close();
  });
}

globalThis.addEventListener("unload", () => {
  cache.free(keep);
  for (const address of keepMid) layered.free(address);
});
