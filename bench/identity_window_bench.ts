/**
 * One replay of a shipped trace (git) on heaps over an `ArrayBuffer` and over
 * identity-mapped memory of several shapes, side by side in one run: a small
 * window at 64 GiB, one region of 2^31 + 64 MiB (a window longer than the
 * fast path's span of 2^31 bytes: its top free block is longer than 2^31),
 * and the boot demo's host map moved to 64 GiB (four regions, a window of
 * 25 GiB). Each shape with the TLSF fast path and with `fastPath: false`, the
 * block allocator alone (`layers: false`) and with the page-frame and slab
 * layers. Mappings are MAP_NORESERVE and kept across iterations (each
 * iteration makes a fresh heap over them with `reinitialize`), so only pages
 * the replay touched cost memory, and page faults are not timed.
 *
 *   deno bench --allow-ffi --allow-read --allow-env bench/identity_window_bench.ts
 *
 * @module
 */

import {
  type AllocatorOptions,
  bufferMemory,
  mapIdentity,
  PhysicalAllocator,
  type PhysicalMemory,
} from "../mod.ts";
import { type DecodedTrace, decodeTrace } from "../tools/trace/decode.ts";
import { parseRep } from "../tools/trace/rep_format.ts";
import { heapBytesFor } from "../tools/trace/replay.ts";

const TRACE = "git";
const trace = decodeTrace(
  parseRep(Deno.readTextFileSync(new URL(`./traces/${TRACE}.rep`, import.meta.url))),
  TRACE,
);
const heapBytes = Math.ceil(heapBytesFor(trace) / 4096) * 4096;
const GIB = 2 ** 30;
const AT = 64 * GIB;

/** The memories compared, made once. */
const SHAPES: { name: string; memory: PhysicalMemory }[] = [
  { name: "buffer", memory: bufferMemory([{ start: 0x1000, length: heapBytes }]) },
  { name: "identity at 64 GiB", memory: mapIdentity([{ start: AT, length: heapBytes }]) },
  {
    name: "identity, one region of 2^31 + 64 MiB",
    memory: mapIdentity([{ start: AT + 4 * GIB, length: 2 * GIB + (64 << 20) }]),
  },
  {
    name: "identity, the host's four regions (25 GiB window)",
    memory: mapIdentity([
      { start: AT + 8 * GIB + 0x1000, length: 0x9e000 },
      { start: AT + 8 * GIB + 0x100000, length: 0xf00000 },
      { start: AT + 8 * GIB + 0x3000000, length: 0xbd000000 },
      { start: AT + 12 * GIB, length: 21 * GIB },
    ]),
  },
];

function replay(heap: PhysicalAllocator, decoded: DecodedTrace, slots: Float64Array): void {
  const { kinds, ids, sizesBytes, opCount } = decoded;
  for (let i = 0; i < opCount; i++) {
    const id = ids[i];
    const size = sizesBytes[i] > 0 ? sizesBytes[i] : 1;
    if (kinds[i] === 0) slots[id] = heap.alloc(size);
    else if (kinds[i] === 1) {
      if (slots[id] !== 0) heap.free(slots[id]);
      slots[id] = 0;
    } else if (kinds[i] === 2) {
      slots[id] = slots[id] === 0 ? heap.alloc(size) : heap.realloc(slots[id], size);
    }
  }
}

const slots = new Float64Array(trace.slotCount);
for (const layers of [false, true]) {
  for (const fastPath of [true, false]) {
    const group = `${TRACE} replay, ${
      layers ? "with layers" : "blocks alone"
    }, fastPath: ${fastPath}`;
    for (const shape of SHAPES) {
      const options: AllocatorOptions = { layers, fastPath, reinitialize: true, native: false };
      Deno.bench(`${shape.name} (${group})`, { group, baseline: shape.name === "buffer" }, () => {
        // The allocator gets the regions without `close`: closing it must not unmap them.
        const heap = new PhysicalAllocator({ regions: shape.memory.regions }, options);
        slots.fill(0);
        replay(heap, trace, slots);
        heap.close();
      });
    }
  }
}
