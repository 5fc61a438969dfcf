/**
 * Native (Zig) vs pure-TS hot path, side by side in one run.
 *
 *   bash tools/zig.sh build -Doptimize=ReleaseFast
 *   deno bench --allow-ffi --allow-read --allow-env bench/native_bench.ts
 *
 * 1. First-fit scans over 10^2, 10^4 and 10^6 free blocks, with a request
 *    only the last block satisfies: the TS policy's `find` (baseline) against
 *    `pma_first_fit_find` on the same heap image.
 * 2. alloc+free pairs per policy on a fragmented heap, through the public
 *    allocator: `native: false` (baseline) against `native: "auto"` (which
 *    must never be slower) and `native: true` (every search native).
 *
 * Without the library only the TS benches run (a notice says so).
 *
 * @module
 */

import { BlockWords } from "../allocator/heap/block.ts";
import { ControlBlock } from "../allocator/heap/control_block.ts";
import { controlBytes, FLAG_LAST, MIN_BLOCK_BYTES } from "../allocator/heap/layout.ts";
import { FirstFitPolicy } from "../allocator/heap/policy/first_fit.ts";
import { type NativeMode, PhysicalAllocator, type PolicyName } from "../mod.ts";
import { loadNative, viewAddress } from "../native/loader.ts";

const native = loadNative("auto");
if (native === null) {
  console.warn("native library not built: only the TS benches run");
}

const BASE_ADDRESS = 0x1000;

/**
 * A first-fit heap of `freeCount` free blocks of MIN_BLOCK_BYTES, each after
 * a used block of the same size, except the last free block, which is one
 * granule larger: a request of its size is satisfied by it alone.
 */
/** Any header key: the bench builds its heap image by hand. */
const BENCH_KEY = 0x5eed1234;

function scanHeap(freeCount: number) {
  const controlSizeBytes = controlBytes(0);
  const lastBytes = MIN_BLOCK_BYTES + 8;
  const windowBytes = controlSizeBytes + freeCount * 2 * MIN_BLOCK_BYTES + 8;
  const window = new Uint8Array(windowBytes);
  const blocks = new BlockWords(window, BASE_ADDRESS, BENCH_KEY);
  const control = new ControlBlock(blocks.words, 0, BASE_ADDRESS, controlSizeBytes);
  const policy = new FirstFitPolicy(blocks, control);
  policy.initControl();
  let block = BASE_ADDRESS + controlSizeBytes;
  let previousFree = 0;
  for (let i = 0; i < freeCount; i++) {
    blocks.writeHeader(block, MIN_BLOCK_BYTES, 0, 0);
    block += MIN_BLOCK_BYTES;
    const last = i === freeCount - 1;
    const sizeBytes = last ? lastBytes : MIN_BLOCK_BYTES;
    blocks.writeFree(block, sizeBytes, last ? FLAG_LAST : 0);
    policy.insert(block, sizeBytes, previousFree);
    previousFree = block;
    block += sizeBytes;
  }
  return {
    policy,
    lastBlock: previousFree,
    requestBytes: lastBytes,
    windowAddress: native === null ? 0 : viewAddress(window),
    windowBytes,
    controlBytes: controlSizeBytes,
  };
}

for (const freeCount of [1e2, 1e4, 1e6]) {
  const heap = scanHeap(freeCount);
  const group = `first-fit scan over 10^${Math.log10(freeCount)} free blocks`;
  const check = (found: number) => {
    if (found !== heap.lastBlock) throw new Error(`scan found ${found}, not the last block`);
  };
  Deno.bench({
    name: `TS   ${group}`,
    group,
    baseline: true,
    fn() {
      check(heap.policy.find(heap.requestBytes, 8));
    },
  });
  if (native !== null) {
    Deno.bench({
      name: `Zig  ${group}`,
      group,
      fn() {
        check(
          native.pma_first_fit_find(
            heap.windowAddress,
            heap.windowBytes,
            BASE_ADDRESS,
            heap.windowAddress,
            heap.controlBytes,
            BENCH_KEY,
            heap.requestBytes,
            8,
            freeCount,
          ),
        );
      },
    });
  }
}

/** An allocator whose heap holds `holeCount` small free holes between live blocks. */
function fragmentedHeap(policy: PolicyName, nativeMode: NativeMode, holeCount: number) {
  const heap = PhysicalAllocator.fromBuffer(new Uint8Array(holeCount * 256 + (1 << 20)), {
    policy,
    native: nativeMode,
  });
  const live: number[] = [];
  for (let i = 0; i < 2 * holeCount; i++) live.push(heap.alloc(24 + (i % 7) * 8));
  for (let i = 0; i < live.length; i += 2) heap.free(live[i]);
  return heap;
}

for (const policy of ["first-fit", "tlsf"] as const) {
  for (const holeCount of [1e2, 1e4]) {
    const group = `${policy} alloc+free pair, 10^${Math.log10(holeCount)} free holes`;
    const sizes = [16, 64, 200, 1000, 4000];
    const modes: NativeMode[] = native === null ? [false] : [false, "auto", true];
    for (const nativeMode of modes) {
      const heap = fragmentedHeap(policy, nativeMode, holeCount);
      let i = 0;
      const label = nativeMode === false ? "TS  " : nativeMode === true ? "Zig " : "auto";
      Deno.bench({
        name: `${label} ${group}`,
        group,
        baseline: nativeMode === false,
        fn() {
          const size = sizes[i++ % sizes.length];
          heap.free(heap.alloc(size, i % 4 === 0 ? 64 : 8));
        },
      });
    }
  }
}
