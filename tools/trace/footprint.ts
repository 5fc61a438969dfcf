/**
 * Where the bytes under a replay's peak footprint go: a per-layer breakdown
 * of the layered heap (page frames, slabs, blocks), for finding the causes of
 * a low utilization (issue 11).
 *
 * The replay is the scoreboard's: the same heap size and the same calls
 * (`tryAlloc`, `free`, `realloc`). A first pass finds the operation at which
 * the footprint (highest end of anything handed out, minus the base) reached
 * its peak and the one at which live bytes did; a second pass stops at each
 * and classifies every 8-byte granule below the peak footprint:
 *
 * | category       | what                                                          |
 * | -------------- | ------------------------------------------------------------- |
 * | live           | bytes requested by live allocations                           |
 * | rounding       | a live allocation's capacity beyond its request (size class)  |
 * | slab-free      | free objects in slabs that hold a live object                 |
 * | slab-empty     | slabs with no live object (each cache's reserve)              |
 * | slab-tail      | a slab's bytes past its last object                           |
 * | frames-free    | free page frames                                              |
 * | frame-table    | chunks' frame tables, their padding and block headers         |
 * | block-header   | headers of the block heap's used blocks (16 bytes each)       |
 * | block-free     | free blocks of the block heap                                 |
 * | descriptor     | slab descriptors (small blocks the layers took)               |
 *
 * It also attributes the footprint's growth to the kind of request that
 * raised it (slab object by class, page run, block).
 *
 * ```sh
 * deno run -A tools/trace/footprint.ts bench/traces/bash.rep [more.rep ...] [--blocks]
 * ```
 *
 * @module
 */

import { PhysicalAllocator } from "../../mod.ts";
import { KMALLOC_CLASS_BY_STEP, KMALLOC_CLASSES } from "../../allocator/slab/kmalloc.ts";
import { HEADER_BYTES } from "../../allocator/heap/layout.ts";
import {
  type DecodedTrace,
  decodeTrace,
  REPLAY_ALLOC,
  REPLAY_FREE,
  REPLAY_REALLOC,
} from "./decode.ts";
import { parseRep } from "./rep_format.ts";
import { heapBytesFor } from "./replay.ts";

/** The categories of the breakdown, in table order. */
export const CATEGORIES = [
  "unknown",
  "live",
  "rounding",
  "slab-free",
  "slab-empty",
  "slab-tail",
  "frames-free",
  "frame-table",
  "block-header",
  "block-free",
  "descriptor",
] as const;

/** One category's name. */
export type Category = typeof CATEGORIES[number];

const BASE_ADDRESS = 0x1000;
const GRANULE = 8;

/** What one trace's analysis found. */
export interface FootprintReport {
  /** The trace. */
  readonly trace: string;
  /** Peak live requested bytes (size-0 requests count as 1). */
  readonly peakLiveBytes: number;
  /** Peak footprint in bytes. */
  readonly peakFootprintBytes: number;
  /** The operation at which the footprint reached its peak. */
  readonly peakFootprintOp: number;
  /** Bytes per category below the peak footprint, at the operation that set it. */
  readonly atPeakFootprint: Record<Category, number>;
  /** Bytes per category below the peak footprint, at the operation where live bytes peaked. */
  readonly atPeakLive: Record<Category, number>;
  /** Footprint growth in bytes per kind of request that raised it. */
  readonly growthByKind: Record<string, number>;
}

type Live = { address: number; size: number };

function kindOf(address: number, size: number, heap: PhysicalAllocator): string {
  if (size <= KMALLOC_CLASSES.at(-1)! && heap.layersActive) {
    const cls = KMALLOC_CLASSES[KMALLOC_CLASS_BY_STEP[(size + 7) >> 3]];
    if (heap.capacityOf(address) === cls) return `slab ${cls}`;
  }
  if (heap.layersActive && address % 4096 === 0 && heap.capacityOf(address) % 4096 === 0) {
    return "pages";
  }
  return size <= 256 ? "block <=256" : size <= 4096 ? "block <=4K" : "block >4K";
}

/** Replays `trace` up to (and including) operation `stopAt`, calling `snapshot` there. */
function replay(
  trace: DecodedTrace,
  layers: boolean,
  stopAt: number,
  snapshot: ((heap: PhysicalAllocator, live: Map<number, Live>) => void) | null,
): {
  peakLive: number;
  peakLiveOp: number;
  peakEnd: number;
  peakEndOp: number;
  growth: Record<string, number>;
} {
  const heapBytes = Math.ceil(heapBytesFor(trace) / 4096) * 4096;
  const heap = PhysicalAllocator.fromBuffer(new Uint8Array(heapBytes), { layers });
  const live = new Map<number, Live>();
  const growth: Record<string, number> = {};
  let liveBytes = 0, peakLive = 0, peakLiveOp = -1, peakEnd = BASE_ADDRESS, peakEndOp = -1;
  const { kinds, ids, sizesBytes, opCount } = trace;
  try {
    for (let i = 0; i < opCount && i <= stopAt; i++) {
      const kind = kinds[i];
      const id = ids[i];
      const old = live.get(id);
      if (kind === REPLAY_FREE) {
        if (old === undefined) continue;
        heap.free(old.address);
        liveBytes -= old.size;
        live.delete(id);
      } else if (kind === REPLAY_ALLOC || kind === REPLAY_REALLOC) {
        const size = sizesBytes[i] > 0 ? sizesBytes[i] : 1;
        const address = old === undefined ? heap.tryAlloc(size) : heap.realloc(old.address, size);
        if (address === 0) throw new Error(`${trace.name}: operation ${i} failed`);
        liveBytes += size - (old?.size ?? 0);
        live.set(id, { address, size });
        const end = address + heap.capacityOf(address);
        if (end > peakEnd) {
          const k = kindOf(address, size, heap);
          growth[k] = (growth[k] ?? 0) + end - peakEnd;
          peakEnd = end;
          peakEndOp = i;
        }
        if (liveBytes > peakLive) {
          peakLive = liveBytes;
          peakLiveOp = i;
        }
      }
    }
    snapshot?.(heap, live);
  } finally {
    heap.close();
  }
  return { peakLive, peakLiveOp, peakEnd, peakEndOp, growth };
}

/** Classifies every granule of [base, limit) at the heap's current state. */
function classify(
  heap: PhysicalAllocator,
  live: Map<number, Live>,
  limit: number,
): Record<Category, number> {
  const granules = new Uint8Array(Math.ceil((limit - BASE_ADDRESS) / GRANULE));
  const mark = (from: number, to: number, category: Category) => {
    const c = CATEGORIES.indexOf(category);
    const a = Math.max(0, Math.floor((from - BASE_ADDRESS) / GRANULE));
    const b = Math.min(granules.length, Math.ceil((to - BASE_ADDRESS) / GRANULE));
    if (a < b) granules.fill(c, a, b);
  };
  const liveAt = new Map<number, Live>();
  for (const entry of live.values()) liveAt.set(entry.address, entry);
  const chunkStarts = new Set<number>();
  const runs = [...heap.layerRuns()];
  for (const run of runs) chunkStarts.add(run.chunk);
  for (const block of heap.blocks()) {
    if (block.address >= limit) break;
    const payload = block.address + HEADER_BYTES;
    const end = block.address + block.sizeBytes;
    if (block.free) mark(block.address, end, "block-free");
    else if (chunkStarts.has(payload)) mark(block.address, end, "frame-table");
    else if (liveAt.has(payload)) {
      const entry = liveAt.get(payload)!;
      mark(block.address, end, "block-header");
      mark(payload, end, "rounding");
      mark(payload, payload + entry.size, "live");
    } else mark(block.address, end, "descriptor");
  }
  // Slabs: which objects live in each, from the live set sorted by address.
  const liveSorted = [...live.values()].sort((a, b) => a.address - b.address);
  const firstAtOrAbove = (address: number) => {
    let lo = 0, hi = liveSorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (liveSorted[mid].address < address) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
  for (const run of runs) {
    if (run.address >= limit) continue;
    const end = run.address + run.sizeBytes;
    if (run.kind === "table") continue; // already marked with its chunk
    if (run.kind === "free") {
      mark(run.address, end, "frames-free");
      continue;
    }
    if (run.kind === "pages") {
      // A large request served from free frames holds less than its run.
      mark(run.address, end, "rounding");
      mark(run.address, run.address + (liveAt.get(run.address)?.size ?? run.sizeBytes), "live");
      continue;
    }
    let i = firstAtOrAbove(run.address);
    if (i >= liveSorted.length || liveSorted[i].address >= end) {
      mark(run.address, end, "slab-empty");
      continue;
    }
    const objectBytes = heap.capacityOf(liveSorted[i].address);
    const objects = Math.min(512, Math.floor(run.sizeBytes / objectBytes));
    mark(run.address, run.address + objects * objectBytes, "slab-free");
    mark(run.address + objects * objectBytes, end, "slab-tail");
    for (; i < liveSorted.length && liveSorted[i].address < end; i++) {
      const { address, size } = liveSorted[i];
      mark(address, address + objectBytes, "rounding");
      mark(address, address + size, "live");
    }
  }
  const bytes = Object.fromEntries(CATEGORIES.map((c) => [c, 0])) as Record<Category, number>;
  for (let g = 0; g < granules.length; g++) bytes[CATEGORIES[granules[g]]] += GRANULE;
  return bytes;
}

/**
 * Analyses one trace (see the module doc).
 *
 * @param trace The decoded trace.
 * @param layers Whether the layers serve the heap.
 * @returns The breakdown.
 */
export function analyseFootprint(trace: DecodedTrace, layers = true): FootprintReport {
  const first = replay(trace, layers, Infinity, null);
  let atPeakFootprint!: Record<Category, number>;
  let atPeakLive!: Record<Category, number>;
  replay(trace, layers, first.peakEndOp, (heap, live) => {
    atPeakFootprint = classify(heap, live, first.peakEnd);
  });
  replay(trace, layers, first.peakLiveOp, (heap, live) => {
    atPeakLive = classify(heap, live, first.peakEnd);
  });
  return {
    trace: trace.name,
    peakLiveBytes: first.peakLive,
    peakFootprintBytes: first.peakEnd - BASE_ADDRESS,
    peakFootprintOp: first.peakEndOp,
    atPeakFootprint,
    atPeakLive,
    growthByKind: first.growth,
  };
}

function formatReport(r: FootprintReport): string {
  const kb = (n: number) => (n / 1024).toFixed(0).padStart(7);
  const pct = (n: number) => (100 * n / r.peakFootprintBytes).toFixed(1).padStart(5) + "%";
  const lines = [
    `${r.trace}: peak live ${kb(r.peakLiveBytes)} KiB, peak footprint ${
      kb(r.peakFootprintBytes)
    } KiB (op ${r.peakFootprintOp}), utilization ${
      (100 * r.peakLiveBytes / r.peakFootprintBytes).toFixed(1)
    }%`,
    `  ${"category".padEnd(13)} ${"at peak footprint".padStart(18)} ${"at peak live".padStart(18)}`,
  ];
  for (const c of CATEGORIES) {
    const a = r.atPeakFootprint[c], b = r.atPeakLive[c];
    if (a === 0 && b === 0) continue;
    lines.push(`  ${c.padEnd(13)} ${kb(a)} KiB ${pct(a)} ${kb(b)} KiB ${pct(b)}`);
  }
  const growth = Object.entries(r.growthByKind).sort((a, b) => b[1] - a[1]);
  lines.push(
    `  footprint raised by: ${
      growth.map(([k, v]) => `${k} ${(v / 1024).toFixed(0)} KiB`).join(", ")
    }`,
  );
  return lines.join("\n");
}

if (import.meta.main) {
  const files = Deno.args.filter((a) => a.endsWith(".rep"));
  const layers = !Deno.args.includes("--blocks");
  for (const file of files) {
    const name = file.split("/").at(-1)!.replace(/\.rep$/, "");
    const trace = decodeTrace(parseRep(await Deno.readTextFile(file)), name);
    console.log(formatReport(analyseFootprint(trace, layers)));
  }
}
