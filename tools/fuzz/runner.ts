/**
 * Runs an operation stream on several lanes in lockstep (one policy; the TS
 * path, the native path or both) and checks every answer.
 *
 * Checks, and how often (the cost trade-off):
 * - Every operation, every lane: the lanes return the same address (or the
 *   same failure); a new payload is aligned, lies inside one region and
 *   overlaps no live payload (a sorted index, O(log n)); every payload is
 *   filled with its own byte pattern, verified whole before it is freed or
 *   reallocated and, for the kept prefix, after a realloc. These are cheap,
 *   O(log n + payload bytes).
 * - Every `checkEvery` operations (and after each exhaust phase and at the
 *   end of each epoch): `check()` (a full walk of every block and free list,
 *   O(heap)), the stats identity `total = free + used + overhead + skipped`,
 *   the ledger's live count and bytes against `stats()`, and `stats()` equal
 *   across lanes, no byte outside the block areas and control block changed
 *   (each heap is a view into a pattern-filled buffer, so this covers the
 *   bytes around the view too), and bad-input probes (Symbol and bigint
 *   arguments, a header forged inside a live payload) fail with typed errors
 *   and change nothing. `stats()` itself is O(regions) (it lists them) and O(free
 *   blocks) for first-fit's largest block, so it is not cheap on the
 *   thousand-region layouts either.
 * - At the end of each epoch: the bad-input probes of `verifyHeaps`, then each
 *   lane's buffer is transferred away and calls must fail with MEMORY_DETACHED.
 * - `mapped`: the lanes' heaps lie in memory from `mapIdentity` over
 *   MAPPED_LAYOUTS, windows of 2^31 bytes and more with unmapped holes (only
 *   the pages touched cost memory): the first lane's at the layout's
 *   addresses (or higher, when they are taken), every other lane's mapped
 *   elsewhere, each handed to its allocator at the layout's addresses. The outside-bytes and detach checks are
 *   left out there (the holes cannot be read; the mappings are closed instead).
 * - `thorough`: `checkEvery` is 1 and each lane also drives the shared
 *   `HeapModel` (tests/support/heap_model.ts), whose `verifyAll` runs
 *   `check()` and the totals after every operation and whose overlap check is
 *   the plain O(n) scan.
 *
 * @module
 */

import assert from "#assert";
import {
  AllocatorError,
  type AllocatorOptions,
  bufferMemory,
  type IdentityMemory,
  mapIdentity,
  MemoryDetachedError,
  NativeUnavailableError,
  PhysicalAllocator,
  type PhysicalMemory,
  type PolicyName,
} from "../../mod.ts";
import { inspectHeap } from "../../allocator/heap/_inspect.ts";
import { headerCheck } from "../../allocator/heap/layout.ts";
import { HeapModel } from "../../tests/support/heap_model.ts";
import { OutsideBytes } from "../../tests/support/outside_bytes.ts";
import { Random } from "../../tests/support/random.ts";
import {
  type FuzzOp,
  type FuzzRange,
  OP_ALLOC,
  OP_EXHAUST,
  OP_FREE,
  OP_LAYOUT,
  OP_REALLOC,
  REGION_LAYOUTS,
} from "./stream.ts";

/** The execution paths a lane can take. */
export type FuzzPath = "ts" | "native";

/** What to run and how hard to check. */
export interface RunConfig {
  /** The policy every lane uses. */
  readonly policy: PolicyName;
  /** One lane per path; with two, their answers are compared operation by operation. */
  readonly paths: readonly FuzzPath[];
  /** Run `check()` and compare stats every this many operations (1: every operation). */
  readonly checkEvery: number;
  /** Also drive the shared HeapModel and verify it after every operation. */
  readonly thorough?: boolean;
  /** Create the allocators with `debug: true` (guard bytes and poison). */
  readonly debug?: boolean;
  /**
   * Added to every address of every region layout, a multiple of 4096:
   * 2^32 puts the windows above 4 GiB, where links carry high words and the
   * TLSF fast path works in offsets from a high base. @default {0}
   */
  readonly baseShift?: number;
  /**
   * Heaps over identity-mapped memory laid out as MAPPED_LAYOUTS (windows of
   * 2^31 bytes and more, see the module doc). Needs `--allow-ffi`. @default {false}
   */
  readonly mapped?: boolean;
  /**
   * A fault injected for tests of the shrinker: called after each operation,
   * a returned message is reported as a failure there.
   */
  readonly inject?: (op: FuzzOp, liveCount: number) => string | null;
}

/** The first failure of a run. */
export interface FuzzFailure {
  /** The index, in the operations given, of the operation that failed. */
  readonly index: number;
  /** What went wrong. */
  readonly message: string;
}

/** What a run did. */
export interface RunResult {
  /** Operations run (up to and including a failing one). */
  readonly opsRun: number;
  /** Allocator calls made per lane (alloc, free, realloc; exhaust phases make many). */
  readonly heapCalls: number;
  /** The first failure, or null. */
  readonly failure: FuzzFailure | null;
  /** Epochs that ran without their native lane (see `LaneRunner.nativeSkippedEpochs`). */
  readonly nativeSkippedEpochs: number;
}

/** A failed check inside a run. */
class CheckFailure extends Error {}

function fail(message: string): never {
  throw new CheckFailure(message);
}

/** Live allocations, shared by all lanes (their answers are equal or the run has failed). */
interface Entry {
  readonly size: number;
  readonly fill: number;
  index: number;
}

const EXHAUST_ALLOCS_MAX = 200_000;
const EXHAUST_FREE_FRACTION = 0.9;
const DEFAULT_ALIGN_BYTES = 8;

/**
 * Layouts of `mapped` runs (page-aligned, addresses from 4 GiB; `baseShift`
 * is added): windows of 2^31 bytes and more whose last region straddles the
 * window's first 2^31 bytes (the TLSF fast path's span), so blocks lie on
 * both sides of it, a window of 6 GiB whose regions lie far apart, and one
 * region above 4 GiB (the window of the fast path's compact twin, whose
 * links all carry one high word); the last two are large enough for the
 * page-frame and slab layers.
 */
export const MAPPED_LAYOUTS: readonly (readonly FuzzRange[])[] = [
  [
    { start: 2 ** 32 + 0x1000, length: 256 * 1024 },
    { start: 2 ** 32 + 2 ** 31 - 128 * 1024, length: 512 * 1024 },
  ],
  [
    { start: 2 ** 32, length: 64 * 1024 },
    { start: 2 ** 32 + 0x100000, length: 1 << 20 },
    { start: 2 ** 32 + 2 ** 31 - 64 * 1024, length: 256 * 1024 },
    { start: 10 * 2 ** 30, length: 512 * 1024 },
  ],
  [{ start: 2 ** 32 + 0x1000, length: 1 << 20 }],
  // Large enough for the page-frame and slab layers: one region (the compact
  // twin's window), and a window of more than 2^31 bytes whose layers' region
  // straddles its first 2^31 bytes.
  [{ start: 2 ** 32 + 0x1000, length: 4 << 20 }],
  [
    { start: 2 ** 32, length: 64 * 1024 },
    { start: 2 ** 32 + 2 ** 31 - (1 << 20), length: 4 << 20 },
  ],
];

/** Where the lanes after the first map their memory in `mapped` runs: this far above, per lane. */
const LANE_SHIFT_BYTES = 0x1000_0000_0000;
/** How far a lane's mapping moves up when its place is taken. */
const LANE_MOVE_BYTES = 0x200_0000_0000;

/** One allocator per path over identical memory. */
interface Lane {
  readonly path: FuzzPath;
  readonly heap: PhysicalAllocator;
  readonly model: HeapModel | null;
  /** The window bytes outside block areas and control block, copied when the heap was made (null: mapped). */
  readonly outside: OutsideBytes | null;
  /** The lane's mapping in `mapped` runs, closed with the lane. */
  readonly mapping: IdentityMemory | null;
}

/** Lockstep execution of operations with the checks listed in the module doc. */
export class LaneRunner {
  readonly #config: RunConfig;
  #lanes: Lane[] = [];
  #ranges: readonly FuzzRange[] = [];
  readonly #live: number[] = [];
  readonly #entries = new Map<number, Entry>();
  /** Live payload addresses in ascending order, for the overlap check. */
  readonly #sorted: number[] = [];
  #fillCounter = 0;
  #liveBytes = 0;
  heapCalls = 0;
  /** Epochs whose layout the native path cannot serve (the control block lives outside the window). */
  nativeSkippedEpochs = 0;

  /**
   * Creates the runner with heaps over layout 0.
   *
   * @throws {Error} If a native lane is asked for and the allocator cannot take the native path.
   */
  constructor(config: RunConfig) {
    this.#config = config;
    this.#layout(0);
  }

  /** Releases the lanes' allocators. */
  close(): void {
    for (const lane of this.#lanes) {
      lane.heap.close();
      lane.mapping?.close();
    }
    this.#lanes = [];
  }

  /**
   * At the end of an epoch: transfers each lane's buffer away and checks
   * that calls then fail with MemoryDetachedError before reading anything.
   */
  #detachLanes(): void {
    for (const lane of this.#lanes) {
      if (lane.mapping !== null) continue;
      const buffer = inspectHeap(lane.heap).window.buffer as ArrayBuffer;
      const address = this.#live[0] ?? 0x1000;
      buffer.transfer();
      for (const call of [() => lane.heap.alloc(8), () => lane.heap.free(address)]) {
        try {
          call();
        } catch (error) {
          if (error instanceof MemoryDetachedError) continue;
          fail(`${lane.path}: a call after the buffer was transferred threw ${String(error)}`);
        }
        fail(`${lane.path}: a call after the buffer was transferred did not throw`);
      }
    }
  }

  /** Runs one operation and the per-operation checks. @throws {CheckFailure} On a failed check. */
  run(op: FuzzOp, opIndex: number): void {
    switch (op.kind) {
      case OP_LAYOUT:
        this.verifyHeaps();
        this.#detachLanes();
        this.#layout(op.size);
        break;
      case OP_ALLOC:
        this.#alloc(op.size, op.align);
        break;
      case OP_FREE:
        if (this.#live.length > 0) this.#free(this.#live[op.pick % this.#live.length]);
        break;
      case OP_REALLOC:
        if (this.#live.length > 0) this.#realloc(this.#live[op.pick % this.#live.length], op.size);
        break;
      case OP_EXHAUST:
        this.#exhaust(op.size, op.pick);
        break;
      default:
        fail(`unknown operation kind ${op.kind}`);
    }
    const injected = this.#config.inject?.(op, this.#live.length) ?? null;
    if (injected !== null) fail(injected);
    if (this.#config.thorough) {
      for (const lane of this.#lanes) lane.model!.verifyAll();
    }
    if ((opIndex + 1) % this.#config.checkEvery === 0) this.verifyHeaps();
  }

  /**
   * `check()`, the stats identity, the ledger's totals, equal stats on every
   * lane, and no byte outside the block areas and control block changed.
   */
  verifyHeaps(): void {
    let first: unknown = null;
    for (const lane of this.#lanes) {
      lane.heap.check();
      lane.outside?.verify();
      const { nativeActive: _, ...s } = lane.heap.stats();
      if (s.totalBytes !== s.freeBytes + s.usedBytes + s.overheadBytes + s.skippedBytes) {
        fail(`${lane.path}: stats identity broken: ${JSON.stringify(s)}`);
      }
      if (s.usedBlocks !== this.#live.length || s.usedBytes !== this.#liveBytes) {
        fail(
          `${lane.path}: stats count ${s.usedBlocks} blocks / ${s.usedBytes} bytes, ledger ${this.#live.length} / ${this.#liveBytes}`,
        );
      }
      if (first === null) first = s;
      else assert.deepEqual(s, first, `${lane.path} stats differ from ${this.#lanes[0].path}`);
      this.#probeBadInputs(lane);
    }
  }

  /**
   * Bad calls the stream does not make: Symbol and bigint arguments, and the
   * free of an address inside a live payload that holds a header forged
   * without the heap's key. Each must throw a typed error and change nothing
   * (stats, `check()`, the payload's pattern).
   */
  #probeBadInputs(lane: Lane): void {
    const heap = lane.heap;
    const before = JSON.stringify(heap.stats());
    const live = this.#live.find((address) =>
      this.#entries.get(address)!.size >= PROBE_PAYLOAD_MIN
    );
    const probes: [string, () => unknown][] = [
      ["free(Symbol)", () => heap.free(Symbol("fuzz") as never)],
      ["free(bigint)", () => heap.free(BigInt(live ?? 0x1000) as never)],
      ["alloc(bigint)", () => heap.alloc(64n as never)],
      ["alloc(8, Symbol)", () => heap.alloc(8, Symbol("fuzz") as never)],
    ];
    if (live !== undefined) {
      const entry = this.#entries.get(live)!;
      probes.push(["free() of a forged header inside a live payload", () => {
        forgeUsedHeaders(heap.bytes(live), live, this.#fillCounter);
        try {
          heap.free(live + PROBE_FORGED_OFFSET + 16);
        } finally {
          heap.bytes(live).fill(entry.fill);
        }
      }]);
    }
    for (const [what, call] of probes) {
      try {
        call();
      } catch (error) {
        if (!(error instanceof AllocatorError)) {
          fail(`${lane.path}: ${what} threw ${String(error)}`);
        }
        continue;
      }
      fail(`${lane.path}: ${what} did not throw`);
    }
    heap.check();
    if (JSON.stringify(heap.stats()) !== before) {
      fail(`${lane.path}: a refused bad call changed stats`);
    }
  }

  #layout(index: number): void {
    this.close();
    this.#live.length = 0;
    this.#sorted.length = 0;
    this.#entries.clear();
    this.#liveBytes = 0;
    const shift = this.#config.baseShift ?? 0;
    const layouts = this.#config.mapped === true ? MAPPED_LAYOUTS : REGION_LAYOUTS;
    this.#ranges = layouts[index % layouts.length].map((range) => ({
      start: range.start + shift,
      length: range.length,
    }));
    const regions = this.#ranges.map((r) => ({ start: r.start, end: r.start + r.length }));
    this.#lanes = [];
    for (const path of this.#config.paths) {
      const mapping = this.#config.mapped === true ? this.#mapLane(this.#lanes.length) : null;
      const heap = this.#makeHeap(path, mapping);
      if (heap === null) {
        mapping?.close();
        continue;
      }
      this.#lanes.push({
        path,
        heap,
        model: this.#config.thorough ? new HeapModel(heap, regions) : null,
        outside: mapping === null ? new OutsideBytes(heap) : null,
        mapping,
      });
    }
  }

  /** The memory of lane `index` of a `mapped` run: lane 0 at the layout's addresses, never relocated. */
  #mapLane(index: number): IdentityMemory {
    // The layout must hold, so it is never relocated range by range; where something of the
    // process maps already (V8 reserves its sandbox, a TiB, at a random address), all of it
    // moves up, up to 3 times (the heap still sees the layout's addresses).
    for (let move = 0;; move++) {
      const shift = index * LANE_SHIFT_BYTES + move * LANE_MOVE_BYTES;
      try {
        return mapIdentity(
          this.#ranges.map((range) => ({ start: range.start + shift, length: range.length })),
          { relocate: false },
        );
      } catch (error) {
        if (move === 3 || !String(error).includes("EEXIST")) throw error;
      }
    }
  }

  /**
   * An allocator for one lane, or null for a native lane on a layout the
   * native path cannot serve: when no region holds the control block it
   * lives outside the window the library reads (`native: true` then throws
   * NativeUnavailableError by design), and that epoch runs on the TS lane only.
   */
  #makeHeap(path: FuzzPath, mapping: IdentityMemory | null): PhysicalAllocator | null {
    const options: AllocatorOptions = {
      policy: this.#config.policy,
      native: path === "native",
      debug: this.#config.debug === true,
    };
    let heap: PhysicalAllocator;
    try {
      // A mapped lane's regions are handed over at the layout's addresses, wherever they are mapped.
      const memory = mapping === null ? paddedMemory(this.#ranges) : {
        regions: mapping.regions.map((region, i) => ({
          base: this.#ranges[i].start,
          bytes: region.bytes,
        })),
      };
      heap = new PhysicalAllocator(memory, options);
    } catch (error) {
      if (path === "native" && error instanceof NativeUnavailableError) {
        this.nativeSkippedEpochs++;
        return null;
      }
      throw error;
    }
    if (path === "native" && !heap.nativeActive) {
      throw new Error(
        "Cannot fuzz the native path: an allocator made with native: true reports nativeActive false",
      );
    }
    return heap;
  }

  /** The same call on every lane; the answers must agree. */
  #each<T>(call: (heap: PhysicalAllocator) => T): T {
    const answers = this.#lanes.map((lane) => {
      try {
        return call(lane.heap);
      } catch (error) {
        if (error instanceof AllocatorError && error.code === "OUT_OF_MEMORY") return "OOM" as T;
        throw error;
      }
    });
    this.heapCalls++;
    for (let i = 1; i < answers.length; i++) {
      if (answers[i] !== answers[0]) {
        fail(
          `lanes disagree: ${this.#lanes[0].path} answered ${answers[0]}, ${
            this.#lanes[i].path
          } answered ${answers[i]}`,
        );
      }
    }
    return answers[0];
  }

  #alloc(size: number, align: number): number {
    const address = this.#each((heap) =>
      align === 0 ? heap.tryAlloc(size) : heap.tryAlloc(size, align)
    );
    if (address !== 0) this.#accept(address, size, Math.max(align, DEFAULT_ALIGN_BYTES));
    return address;
  }

  #free(address: number): void {
    const entry = this.#entries.get(address)!;
    this.#verifyPayload(address, entry, entry.size);
    for (const lane of this.#lanes) lane.model?.removed(address);
    this.#each((heap) => heap.free(address));
    this.#forget(address);
  }

  #realloc(address: number, size: number): void {
    const entry = this.#entries.get(address)!;
    this.#verifyPayload(address, entry, entry.size);
    const result = this.#each((heap) => heap.realloc(address, size)) as number | "OOM";
    if (result === "OOM") {
      this.#verifyPayload(address, entry, entry.size);
      return;
    }
    this.#verifyPayload(result, entry, Math.min(entry.size, size));
    for (const lane of this.#lanes) lane.model?.forget(address);
    this.#forget(address);
    this.#accept(result, size, DEFAULT_ALIGN_BYTES);
  }

  #exhaust(size: number, seed: number): void {
    let count = 0;
    while (count < EXHAUST_ALLOCS_MAX && this.#alloc(size, 0) !== 0) count++;
    const random = new Random(seed);
    for (const address of [...this.#live]) {
      if (random.next() < EXHAUST_FREE_FRACTION) this.#free(address);
    }
    this.verifyHeaps();
  }

  /** Checks a new payload, fills it with a fresh pattern and records it. */
  #accept(address: number, size: number, align: number): void {
    if (address % align !== 0) fail(`payload ${address} is not aligned to ${align}`);
    const range = this.#rangeOf(address);
    if (range === null || address + size > range.start + range.length) {
      fail(`payload ${address}+${size} lies outside every region`);
    }
    const at = this.#insertionPoint(address);
    const previous = this.#sorted[at - 1];
    if (previous !== undefined && previous + this.#entries.get(previous)!.size > address) {
      fail(`payload ${address}+${size} overlaps live payload ${previous}`);
    }
    const next = this.#sorted[at];
    if (next !== undefined && address + size > next) {
      fail(`payload ${address}+${size} overlaps live payload ${next}`);
    }
    this.#sorted.splice(at, 0, address);
    const fill = (this.#fillCounter = (this.#fillCounter + 1) % 255) + 1;
    this.#entries.set(address, { size, fill, index: this.#live.length });
    this.#live.push(address);
    this.#liveBytes += size;
    for (const lane of this.#lanes) {
      if (lane.model !== null) lane.model.added(address, size, align, fill);
      else lane.heap.bytes(address).fill(fill);
    }
  }

  #forget(address: number): void {
    const entry = this.#entries.get(address)!;
    const last = this.#live.pop()!;
    if (last !== address) {
      this.#live[entry.index] = last;
      this.#entries.get(last)!.index = entry.index;
    }
    this.#entries.delete(address);
    this.#sorted.splice(this.#insertionPoint(address), 1);
    this.#liveBytes -= entry.size;
  }

  /** Index of the first sorted address that is at least `address`. */
  #insertionPoint(address: number): number {
    const sorted = this.#sorted;
    let low = 0;
    let high = sorted.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (sorted[middle] < address) low = middle + 1;
      else high = middle;
    }
    return low;
  }

  /** The layout range holding `address` (layouts list ranges in address order), or null. */
  #rangeOf(address: number): FuzzRange | null {
    const ranges = this.#ranges;
    let low = 0;
    let high = ranges.length - 1;
    while (low < high) {
      const middle = (low + high + 1) >>> 1;
      if (ranges[middle].start <= address) low = middle;
      else high = middle - 1;
    }
    const range = ranges[low];
    return range.start <= address && address < range.start + range.length ? range : null;
  }

  /** Asserts, on every lane, that the first `length` bytes at `address` hold `entry`'s pattern. */
  #verifyPayload(address: number, entry: Entry, length: number): void {
    const word = Math.imul(entry.fill, 0x01010101) >>> 0;
    for (const lane of this.#lanes) {
      const view = lane.heap.bytes(address, length);
      // Payloads are 8-aligned in an 8-aligned window: compare words, then the tail.
      const words = new Uint32Array(view.buffer, view.byteOffset, length >>> 2);
      let at = -1;
      for (let i = 0; i < words.length; i++) {
        if (words[i] !== word) {
          at = i * 4;
          break;
        }
      }
      for (let i = words.length * 4; at < 0 && i < length; i++) {
        if (view[i] !== entry.fill) at = i;
      }
      if (at >= 0) {
        fail(
          `${lane.path}: payload ${address} byte ${at} no longer holds its pattern ${entry.fill}`,
        );
      }
    }
  }
}

/** The smallest live payload a forged-header probe writes into. */
const PROBE_PAYLOAD_MIN = 128;
/** Where in that payload the forged header goes (8-aligned, as block headers are). */
const PROBE_FORGED_OFFSET = 32;

/**
 * Writes two used block headers (a 48-byte block and its successor) at
 * PROBE_FORGED_OFFSET into `payload` (at `payloadAddress`), their check words computed with a key
 * derived from `salt`: not the heap's, except with probability 2^-32.
 */
function forgeUsedHeaders(payload: Uint8Array, payloadAddress: number, salt: number): void {
  const words = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const key = Math.imul(salt + 1, 0x9e3779b1) >>> 0;
  const blockBytes = 48;
  for (const offset of [PROBE_FORGED_OFFSET, PROBE_FORGED_OFFSET + blockBytes]) {
    const address = payloadAddress + offset;
    words.setUint32(offset, blockBytes, true);
    words.setUint32(offset + 4, 0, true);
    words.setUint32(offset + 8, 0, true);
    words.setUint32(offset + 12, headerCheck(address, blockBytes, 0, 0, key), true);
  }
}

/** Bytes of the buffer in front of and behind the window: the heap is a view at an offset. */
const PAD_BYTES = 40;
/** What the whole buffer holds before the heap is made, so a stray write of 0 shows too. */
const BUFFER_FILL = 0xa5;

/**
 * Memory like `bufferMemory(ranges)`, but its window is a view PAD_BYTES into
 * a larger buffer, and every byte of the buffer starts as BUFFER_FILL: the
 * outside-bytes check then also proves the bytes around the view untouched.
 */
function paddedMemory(ranges: readonly FuzzRange[]): PhysicalMemory {
  const plain = bufferMemory(ranges);
  const span = plain.regions[0].bytes.buffer.byteLength;
  const windowStart = plain.regions[0].base - plain.regions[0].bytes.byteOffset;
  const buffer = new ArrayBuffer(span + 2 * PAD_BYTES);
  new Uint8Array(buffer).fill(BUFFER_FILL);
  return {
    regions: plain.regions.map((region) => ({
      base: region.base,
      bytes: new Uint8Array(buffer, PAD_BYTES + region.base - windowStart, region.bytes.byteLength),
    })),
  };
}

/**
 * Runs operations on fresh lanes and reports the first failure.
 *
 * @param ops The operations (any iterable; a stream is consumed lazily).
 * @param config Policy, paths and checks.
 * @param limit Stop after this many operations.
 * @returns Operations run, allocator calls and the first failure.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { runOps } from "./runner.ts";
 * import { streamOps } from "./stream.ts";
 *
 * const result = runOps(streamOps(1, 2000), { policy: "tlsf", paths: ["ts"], checkEvery: 100 });
 * assert.equal(result.failure, null);
 * assert.equal(result.opsRun, 2000);
 * ```
 */
export function runOps(
  ops: Iterable<FuzzOp>,
  config: RunConfig,
  limit = Infinity,
): RunResult {
  const runner = new LaneRunner(config);
  let index = 0;
  try {
    for (const op of ops) {
      if (index >= limit) break;
      runner.run(op, index);
      index++;
    }
    // A failure found by the closing check belongs to the last operation.
    index = Math.max(index - 1, 0);
    runner.verifyHeaps();
    return {
      opsRun: index + 1,
      heapCalls: runner.heapCalls,
      failure: null,
      nativeSkippedEpochs: runner.nativeSkippedEpochs,
    };
  } catch (error) {
    const message = error instanceof CheckFailure
      ? error.message
      : `${(error as Error).name}: ${(error as Error).message.split("\n")[0]}`;
    return {
      opsRun: index + 1,
      heapCalls: runner.heapCalls,
      failure: { index, message },
      nativeSkippedEpochs: runner.nativeSkippedEpochs,
    };
  } finally {
    runner.close();
  }
}
