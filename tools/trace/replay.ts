/**
 * Replaying a decoded trace on a {@linkcode ReplayTarget}, two ways:
 *
 * - {@linkcode verifyReplay}: one checked pass. Every payload is filled with
 *   a byte pattern derived from its id; the pattern is verified at free,
 *   before a realloc and (the kept prefix) after it, and on every block
 *   still live at the end, then `check()` runs. The same pass measures
 *   peak live payload bytes and the peak footprint (highest end of a used
 *   block minus the base of the memory: the malloc-lab definition), whose
 *   ratio is the utilization.
 * - {@linkcode timeReplay}: the throughput. The trace is already decoded
 *   into typed arrays; each repetition runs on a fresh heap (made and
 *   released outside the timed span) with no checks, over memory the target
 *   keeps and reuses, so every repetition runs on pages the warm-up and the
 *   earlier repetitions touched (glibc and mimalloc keep the process's warm
 *   heap); the JIT is warmed on a prefix first; repetitions continue until the middle half of the samples
 *   lies within 5% of the median (or a time budget runs out); the median
 *   is reported. {@linkcode ReplayTimer} does the same one repetition at a
 *   time, so a scoreboard can interleave targets.
 *
 * Heap size: {@linkcode heapBytesFor} gives 4 × the trace's peak live bytes
 * + 64 bytes per peak live block + 1 MiB. The footprint, not the heap size,
 * is what utilization measures, so the generous heap costs no score.
 *
 * @module
 */

import { HeapCorruptionError } from "../../mod.ts";
import { hex } from "../../allocator/memory/physical_memory.ts";
import { type DecodedTrace, REPLAY_ALLOC, REPLAY_FREE, REPLAY_REALLOC } from "./decode.ts";
import type { ReplayHeap, ReplayTarget } from "./replay_heap.ts";

/** What {@linkcode replayCalls} calls: `PhysicalAllocator`, of any checkout, backend or mode. */
export interface CallsHeap {
  tryAlloc(sizeBytes: number): number;
  free(address: number): void;
  realloc(address: number, sizeBytes: number): number;
}

/**
 * Replays `trace` on `heap` with direct calls and no checks; `slots` (one
 * per trace id, zeroed) holds each live id's address. It uses only its
 * parameters and {@linkcode REPLAY_KINDS}, so that a tool timing several
 * heaps in one process gives each its own copy with its own type feedback:
 * `freshCopy(replayCalls, REPLAY_KINDS)` (fresh_copy.ts).
 */
export function replayCalls(heap: CallsHeap, trace: DecodedTrace, slots: Float64Array): void {
  const { kinds, ids, sizesBytes, opCount } = trace;
  for (let i = 0; i < opCount; i++) {
    const id = ids[i];
    const size = sizesBytes[i] > 0 ? sizesBytes[i] : 1;
    if (kinds[i] === REPLAY_ALLOC) slots[id] = heap.tryAlloc(size);
    else if (kinds[i] === REPLAY_FREE) {
      if (slots[id] !== 0) heap.free(slots[id]);
      slots[id] = 0;
    } else if (kinds[i] === REPLAY_REALLOC) {
      slots[id] = slots[id] === 0 ? heap.tryAlloc(size) : heap.realloc(slots[id], size);
    }
  }
}

/** The names {@linkcode replayCalls} refers to, as a scope for its fresh copies. */
export const REPLAY_KINDS = { REPLAY_ALLOC, REPLAY_FREE, REPLAY_REALLOC };

/** What a verified replay measured. */
export interface VerifyResult {
  /** Requests the allocator could not satisfy. */
  readonly failedRequests: number;
  /** The most payload bytes live at once (size-0 requests count as 1 byte). */
  readonly peakLiveBytes: number;
  /** The most blocks live at once. */
  readonly peakLiveBlocks: number;
  /** Highest end of a used block minus the memory's base, at its peak; NaN if unknown. */
  readonly peakFootprintBytes: number;
  /** `peakLiveBytes / peakFootprintBytes`; NaN if the footprint is unknown. */
  readonly utilization: number;
  /** Payload bytes written and verified. */
  readonly patternBytes: number;
  /** True when the project's native path served the replay; undefined for peers. */
  readonly nativeActive?: boolean;
}

/**
 * The heap size a replay of `trace` gets (see the module doc).
 *
 * @param trace The decoded trace.
 * @returns Bytes, a multiple of 64 KiB.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeTrace } from "./decode.ts";
 * import { parseRep } from "./rep_format.ts";
 * import { heapBytesFor } from "./replay.ts";
 *
 * const trace = decodeTrace(parseRep("0\n1\n1\n1\na 0 1000\n"), "t");
 * assert.equal(heapBytesFor(trace), (1 << 20) + 65536);
 * ```
 */
export function heapBytesFor(trace: DecodedTrace): number {
  const bytes = 4 * trace.peakLiveBytes + 64 * trace.peakLiveBlocks + (1 << 20);
  return Math.ceil(bytes / 65536) * 65536;
}

/** The pattern byte at offset `offset` of the payload of block `id`. */
function patternByte(id: number, offset: number): number {
  return ((Math.imul(id, 0x9e3779b1) >>> 24) + offset * 7) & 255;
}

function writePattern(bytes: Uint8Array, id: number, from: number): void {
  for (let offset = from; offset < bytes.length; offset++) bytes[offset] = patternByte(id, offset);
}

function verifyPattern(
  heap: ReplayHeap,
  address: number,
  id: number,
  lengthBytes: number,
  when: string,
): void {
  const bytes = heap.view(address, lengthBytes);
  for (let offset = 0; offset < lengthBytes; offset++) {
    if (bytes[offset] !== patternByte(id, offset)) {
      throw new HeapCorruptionError(
        address,
        `Payload of id ${id} at ${hex(address)} was overwritten ${when}: byte ${offset} is ${
          bytes[offset]
        }, expected ${patternByte(id, offset)}`,
      );
    }
  }
}

/**
 * Replays `trace` once on a fresh heap of `target`, verifying every payload
 * and the heap (see the module doc).
 *
 * @param target The allocator to replay on.
 * @param trace The decoded trace.
 * @param heapBytes The heap size.
 * @returns The failed requests, peaks and utilization.
 * @throws {HeapCorruptionError} If a payload's pattern was overwritten (naming the operation)
 *   or `check()` finds the heap broken.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeTrace } from "./decode.ts";
 * import { parseRep } from "./rep_format.ts";
 * import { heapBytesFor, verifyReplay } from "./replay.ts";
 * import { physicalTarget } from "./target_physical.ts";
 *
 * const trace = decodeTrace(parseRep("0\n2\n4\n1\na 0 100\na 1 50\nr 0 400\nf 1\n"), "t");
 * const result = verifyReplay(physicalTarget(), trace, heapBytesFor(trace));
 * assert.equal(result.failedRequests, 0);
 * assert.equal(result.peakLiveBytes, 450);
 * assert.ok(result.utilization > 0 && result.utilization <= 1);
 * ```
 */
export function verifyReplay(
  target: ReplayTarget,
  trace: DecodedTrace,
  heapBytes: number,
): VerifyResult {
  const heap = target.create(trace, heapBytes);
  try {
    const result = verifyOnHeap(heap, trace);
    heap.check();
    return { ...result, nativeActive: heap.nativeActive };
  } finally {
    heap.close();
  }
}

function verifyOnHeap(heap: ReplayHeap, trace: DecodedTrace): VerifyResult {
  const addresses = new Float64Array(trace.slotCount);
  const sizes = new Float64Array(trace.slotCount);
  const { kinds, ids, sizesBytes, opCount } = trace;
  let failed = 0, liveBytes = 0, liveBlocks = 0, patternBytes = 0;
  let peakLiveBytes = 0, peakLiveBlocks = 0, peakEnd = heap.baseAddress;
  for (let i = 0; i < opCount; i++) {
    const kind = kinds[i];
    const id = ids[i];
    const address = addresses[id];
    if (kind === REPLAY_FREE) {
      if (address === 0) continue;
      verifyPattern(heap, address, id, sizes[id], `before operation ${i} (free)`);
      heap.free(address);
      liveBytes -= sizes[id];
      liveBlocks--;
      addresses[id] = 0;
      continue;
    }
    if (kind !== REPLAY_ALLOC && kind !== REPLAY_REALLOC) continue;
    const size = sizesBytes[i] > 0 ? sizesBytes[i] : 1;
    let moved: number;
    if (address === 0) {
      moved = heap.alloc(size);
      if (moved === 0) {
        failed++;
        continue;
      }
      writePattern(heap.view(moved, size), id, 0);
      liveBlocks++;
      liveBytes += size;
    } else {
      verifyPattern(heap, address, id, sizes[id], `before operation ${i} (realloc)`);
      moved = heap.realloc(address, size);
      if (moved === 0) {
        failed++;
        continue;
      }
      const kept = Math.min(size, sizes[id]);
      verifyPattern(heap, moved, id, kept, `by operation ${i} (realloc)`);
      writePattern(heap.view(moved, size), id, kept);
      liveBytes += size - sizes[id];
    }
    patternBytes += size;
    addresses[id] = moved;
    sizes[id] = size;
    const end = heap.blockEnd(moved);
    if (!(end <= peakEnd)) peakEnd = end;
    if (liveBytes > peakLiveBytes) peakLiveBytes = liveBytes;
    if (liveBlocks > peakLiveBlocks) peakLiveBlocks = liveBlocks;
  }
  for (let id = 0; id < trace.slotCount; id++) {
    if (addresses[id] !== 0) verifyPattern(heap, addresses[id], id, sizes[id], "at the end");
  }
  const peakFootprintBytes = peakEnd - heap.baseAddress;
  return {
    failedRequests: failed,
    peakLiveBytes,
    peakLiveBlocks,
    peakFootprintBytes,
    utilization: peakLiveBytes / peakFootprintBytes,
    patternBytes,
  };
}

/** Options of {@linkcode timeReplay}. */
export interface TimeOptions {
  /** Unmeasured warm-up runs on a prefix of the trace. @default {3} */
  readonly warmupRuns?: number;
  /** Operations in the warm-up prefix. @default {50000} */
  readonly warmupOps?: number;
  /** Fewest measured repetitions (unless one repetition outlasts 4 budgets). @default {5} */
  readonly repetitionsMin?: number;
  /** Most measured repetitions. @default {40} */
  readonly repetitionsMax?: number;
  /** Time after which repetitions stop once the minimum is reached, in ms. @default {3000} */
  readonly budgetMs?: number;
  /** Stop when (p75 - p25) / median falls below this. @default {0.05} */
  readonly spreadMax?: number;
}

/** A throughput measurement. */
export interface TimeResult {
  /** Operations per second at the median repetition. */
  readonly opsPerSecond: number;
  /** The median repetition's time in ms. */
  readonly medianMs: number;
  /** Every repetition's time in ms, in order. */
  readonly samplesMs: readonly number[];
  /** (p75 - p25) / median of the samples. */
  readonly spread: number;
  /** Failed requests of the last repetition. */
  readonly failedRequests: number;
}

/**
 * Measures the throughput of `target` on `trace` (see the module doc).
 *
 * @param target The allocator.
 * @param trace The decoded trace.
 * @param heapBytes The heap size of every repetition.
 * @param options Warm-up, repetitions and budget.
 * @returns The median throughput and the samples.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeTrace } from "./decode.ts";
 * import { parseRep } from "./rep_format.ts";
 * import { heapBytesFor, timeReplay } from "./replay.ts";
 * import { physicalTarget } from "./target_physical.ts";
 *
 * const trace = decodeTrace(parseRep("0\n1\n2\n1\na 0 100\nf 0\n"), "t");
 * const time = timeReplay(physicalTarget(), trace, heapBytesFor(trace), { budgetMs: 10 });
 * assert.ok(time.opsPerSecond > 0);
 * assert.ok(time.samplesMs.length >= 5);
 * ```
 */
export function timeReplay(
  target: ReplayTarget,
  trace: DecodedTrace,
  heapBytes: number,
  options: TimeOptions = {},
): TimeResult {
  const timer = new ReplayTimer(target, trace, heapBytes, options);
  timer.warm();
  while (!timer.done) timer.step();
  return timer.result();
}

/**
 * The throughput measurement of {@linkcode timeReplay} one repetition at a
 * time, so a scoreboard can interleave the repetitions of several targets
 * (round robin) and load from other processes falls on all of them alike.
 *
 * It deliberately does not force a garbage collection between repetitions:
 * measured here, calling `gc()` (under `--v8-flags=--expose-gc`) before each
 * repetition made the TLSF replay of `gcc.rep` 2.7 times slower, as the
 * forced full collections keep the replay loop from staying optimised.
 *
 * @example Two targets, interleaved
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeTrace } from "./decode.ts";
 * import { parseRep } from "./rep_format.ts";
 * import { heapBytesFor, ReplayTimer } from "./replay.ts";
 * import { physicalTarget } from "./target_physical.ts";
 *
 * const trace = decodeTrace(parseRep("0\n1\n2\n1\na 0 100\nf 0\n"), "t");
 * const timers = ["tlsf", "first-fit"].map((policy) =>
 *   new ReplayTimer(physicalTarget({ policy: policy as "tlsf" }), trace, heapBytesFor(trace), { budgetMs: 5 })
 * );
 * for (const timer of timers) timer.warm();
 * while (timers.some((timer) => !timer.done)) for (const timer of timers) if (!timer.done) timer.step();
 * assert.ok(timers.every((timer) => timer.result().opsPerSecond > 0));
 * ```
 */
export class ReplayTimer {
  readonly #target: ReplayTarget;
  readonly #trace: DecodedTrace;
  readonly #heapBytes: number;
  readonly #options: TimeOptions;
  readonly #samples: number[] = [];
  #spentMs = 0;
  #failed = 0;
  #spread = Infinity;
  #done = false;

  /**
   * Prepares a measurement; nothing runs until `warm` or `step`.
   *
   * @param target The allocator.
   * @param trace The decoded trace.
   * @param heapBytes The heap size of every repetition.
   * @param options Warm-up, repetitions and budget.
   */
  constructor(
    target: ReplayTarget,
    trace: DecodedTrace,
    heapBytes: number,
    options: TimeOptions = {},
  ) {
    this.#target = target;
    this.#trace = trace;
    this.#heapBytes = heapBytes;
    this.#options = options;
  }

  /** True when enough repetitions have run (stable, or out of budget). */
  get done(): boolean {
    return this.#done;
  }

  /**
   * True when no more repetitions may run: the most repetitions have, or
   * the time spent exceeds four budgets. A done timer that is not exhausted
   * can keep stepping beside others that are not done yet.
   */
  get exhausted(): boolean {
    const options = this.#options;
    return this.#samples.length >= (options.repetitionsMax ?? 40) ||
      this.#spentMs > 4 * (options.budgetMs ?? 3000);
  }

  /** Runs the unmeasured warm-up replays on a prefix of the trace. */
  warm(): void {
    const warmup = prefix(this.#trace, this.#options.warmupOps ?? 50_000);
    for (let run = 0; run < (this.#options.warmupRuns ?? 3); run++) {
      const heap = this.#target.create(warmup, this.#heapBytes);
      heap.run(warmup);
      heap.close();
    }
  }

  /** Runs and times one repetition on a fresh heap, then decides whether more are needed. */
  step(): void {
    const options = this.#options;
    const started = performance.now();
    const heap = this.#target.create(this.#trace, this.#heapBytes);
    const begin = performance.now();
    this.#failed = heap.run(this.#trace);
    this.#samples.push(performance.now() - begin);
    heap.close();
    this.#spentMs += performance.now() - started;
    this.#spread = spreadOf(this.#samples);
    const budgetMs = options.budgetMs ?? 3000;
    const count = this.#samples.length;
    this.#done = this.exhausted ||
      (count >= (options.repetitionsMin ?? 5) &&
        (this.#spread <= (options.spreadMax ?? 0.05) || this.#spentMs > budgetMs));
  }

  /**
   * The measurement so far.
   *
   * @returns The median throughput and the samples.
   * @throws {RangeError} If no repetition has run.
   */
  result(): TimeResult {
    if (this.#samples.length === 0) throw new RangeError("No repetition has run yet");
    const medianMs = quantile(this.#samples, 0.5);
    return {
      opsPerSecond: this.#trace.opCount / (medianMs / 1000),
      medianMs,
      samplesMs: [...this.#samples],
      spread: this.#spread,
      failedRequests: this.#failed,
    };
  }
}

function prefix(trace: DecodedTrace, opCount: number): DecodedTrace {
  if (opCount >= trace.opCount) return trace;
  return {
    ...trace,
    opCount,
    kinds: trace.kinds.subarray(0, opCount),
    ids: trace.ids.subarray(0, opCount),
    sizesBytes: trace.sizesBytes.subarray(0, opCount),
  };
}

function quantile(samples: readonly number[], q: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  const position = (sorted.length - 1) * q;
  const low = Math.floor(position);
  const high = Math.ceil(position);
  return sorted[low] + (sorted[high] - sorted[low]) * (position - low);
}

function spreadOf(samples: readonly number[]): number {
  if (samples.length < 3) return Infinity;
  return (quantile(samples, 0.75) - quantile(samples, 0.25)) / quantile(samples, 0.5);
}
