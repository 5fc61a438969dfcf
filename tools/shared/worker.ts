/**
 * A Worker that attaches to a shared heap and runs random operations on it:
 * allocations whose payloads it fills with a pattern of their key, frees and
 * reallocs that verify the pattern first, and hand-overs of live blocks to
 * other Workers through a shared exchange table (so frees and reallocs cross
 * Workers). A shared registry maps each live payload to its key and size:
 * an allocation the heap hands out while it is still live elsewhere is
 * caught when the registry entry is not empty.
 *
 * Driven by run.ts; the message types are there.
 *
 * @module
 */

/// <reference lib="deno.worker" />

import { PhysicalAllocator } from "../../mod.ts";
import { Random } from "../../tests/support/random.ts";
import { headerViews, LOCK_BLOCKS, lockWordAt } from "../../allocator/shared/shared_header.ts";
import {
  fillPattern,
  type SharedRunJob,
  type SharedRunResult,
  verifyPattern,
  type WorkloadName,
} from "./protocol.ts";

self.onmessage = (event: MessageEvent<SharedRunJob>) => {
  const job = event.data;
  let heap: PhysicalAllocator | null = null;
  try {
    heap = PhysicalAllocator.attach(job.heap);
    const target: WorkloadHeap = job.nullHeap ? new NullHeap() : heap;
    if (job.warmupOperations > 0) warmUp(target, job);
    self.postMessage({ kind: "ready", slot: heap.workerSlot });
    const control = new Int32Array(job.control);
    // Bounded by the driver: it sets the go word right after every Worker is ready.
    Atomics.wait(control, 0, 0, 60_000);
    if (job.stopHoldingLock) {
      stopHoldingLock(heap, job.heap);
      return;
    }
    const result = runOperations(target, job);
    if (job.detach) heap.detach();
    self.postMessage(result);
  } catch (error) {
    self.postMessage({ kind: "error", message: String((error as Error)?.stack ?? error) });
  }
};

/**
 * Leaves the block lock exactly as a Worker that ended in the middle of an
 * operation leaves it (owner word = its slot), tells the driver, and stops
 * here until the driver terminates it.
 */
function stopHoldingLock(heap: PhysicalAllocator, buffer: SharedArrayBuffer): void {
  const views = headerViews(buffer, 0);
  const owner = lockWordAt(views, LOCK_BLOCKS);
  if (Atomics.compareExchange(views.i32, owner, 0, heap.workerSlot | (1 << 8)) !== 0) {
    throw new Error("the block lock was not free");
  }
  self.postMessage({ kind: "holding", slot: heap.workerSlot });
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 60_000);
}

/** What the workload calls on a heap. */
type WorkloadHeap = Pick<
  PhysicalAllocator,
  "alloc" | "allocPages" | "free" | "realloc" | "bytes" | "workerSlot"
>;

/**
 * A heap that does nothing (allocations are fresh addresses, frees and
 * reallocs are no-ops): the workload loop against it costs what the loop
 * itself costs (random numbers, the live list, the calls), the part of a
 * throughput figure that is not the allocator's.
 */
class NullHeap {
  readonly workerSlot = 0;
  #next = 0x1000;
  alloc(sizeBytes: number): number {
    const address = this.#next;
    this.#next = ((address + sizeBytes + 23) & ~7) % 0x4000_0000 + 0x1000;
    return address;
  }
  allocPages(order: number): number {
    return this.alloc(4096 << order);
  }
  free(_address: number): void {}
  realloc(address: number, _sizeBytes: number): number {
    return address;
  }
  bytes(_address: number): Uint8Array {
    return new Uint8Array(0);
  }
}

/**
 * Runs the job's mix untimed through the very code the timed run uses (so
 * the JIT's feedback does not change at the start signal), on a private
 * exchange table and without payloads, then frees every block it still
 * holds: the loop and the heap's calls are compiled, and this Worker's
 * cache is filled, when the timed run starts.
 */
function warmUp(heap: WorkloadHeap, job: SharedRunJob): void {
  const exchange = new SharedArrayBuffer(4 * 64);
  const result = runOperations(heap, {
    ...job,
    operations: job.warmupOperations,
    seed: job.seed ^ 0x5eed,
    fill: false,
    exchange,
  });
  for (const address of [...result.live, ...new Int32Array(exchange)]) {
    if (address !== 0) heap.free(address);
  }
}

/**
 * What one run of the mix works with. The warm-up and the timed run each
 * make one of the same shape and hand it to the same module functions (no
 * closures made per run): the functions the warm-up compiled serve the timed
 * run, instead of being deoptimized at the start signal for meeting a new
 * closure, and compiled again while the clock runs.
 */
interface Run {
  readonly heap: WorkloadHeap;
  readonly workload: WorkloadName;
  readonly random: Random;
  readonly exchange: Int32Array;
  /** Whether payloads are filled and verified, and the registry kept. */
  readonly fill: boolean;
  readonly keys: Int32Array;
  readonly sizes: Int32Array;
  readonly baseAddress: number;
  /** This Worker's index + 1, the top byte of its keys. */
  readonly owner: number;
  nextKey: number;
  readonly live: number[];
  readonly result: SharedRunResult;
}

function runOperations(heap: WorkloadHeap, job: SharedRunJob): SharedRunResult {
  const live: number[] = [];
  const result: SharedRunResult = {
    kind: "done",
    index: job.index,
    slot: heap.workerSlot,
    operations: 0,
    allocs: 0,
    frees: 0,
    reallocs: 0,
    handedOver: 0,
    received: 0,
    corrupt: 0,
    firstCorruption: "",
    live,
    elapsedMs: 0,
  };
  const run: Run = {
    heap,
    workload: job.workload,
    random: new Random(job.seed),
    exchange: new Int32Array(job.exchange),
    fill: job.fill,
    keys: new Int32Array(job.registry, 0, job.registry.byteLength >>> 3),
    sizes: new Int32Array(job.registry, job.registry.byteLength >>> 1),
    baseAddress: job.baseAddress,
    owner: job.index + 1,
    nextKey: 1,
    live,
    result,
  };
  const start = performance.now();
  for (let op = 0; op < job.operations; op++) step(run);
  result.elapsedMs = performance.now() - start;
  result.operations = job.operations;
  return result;
}

function fail(run: Run, message: string): void {
  run.result.corrupt++;
  if (run.result.firstCorruption === "") run.result.firstCorruption = message;
}

/**
 * Records a new payload in the registry under a fresh key and fills it with
 * the key's pattern. Without payload checks (throughput runs) the registry
 * is not kept either: its atomics and its cache lines shared between Workers
 * would be measured too.
 */
function register(run: Run, address: number, sizeBytes: number): void {
  if (!run.fill) return;
  const key = ((run.owner << 24) | (run.nextKey++ & 0xffffff)) | 0;
  const slot = (address - run.baseAddress) >>> 3;
  if (Atomics.compareExchange(run.keys, slot, 0, key) !== 0) {
    fail(run, `alloc returned ${address}, still live (key ${Atomics.load(run.keys, slot)})`);
  }
  Atomics.store(run.sizes, slot, sizeBytes);
  fillPattern(run.heap.bytes(address), key);
}

/** Verifies a payload against its registry entry and clears the entry. */
function release(run: Run, address: number): void {
  if (!run.fill) return;
  const slot = (address - run.baseAddress) >>> 3;
  const key = Atomics.load(run.keys, slot);
  const sizeBytes = Atomics.load(run.sizes, slot);
  if (key === 0) fail(run, `block ${address} has no registry entry`);
  const bytes = run.heap.bytes(address);
  if (bytes.length !== sizeBytes) {
    fail(run, `block ${address} holds ${bytes.length}, not ${sizeBytes}`);
  }
  const bad = verifyPattern(bytes, key, sizeBytes);
  if (bad >= 0) fail(run, `block ${address} (key ${key}) differs at byte ${bad}`);
  Atomics.store(run.keys, slot, 0);
}

/** One random operation of the run's workload. */
function step(run: Run): void {
  const { workload, random, heap, live, result } = run;
  if (workload === "refill" || workload === "refill-same") return refillStep(run);
  const roll = random.next();
  const liveTarget = workload === "small" ? 64 : 256;
  if (live.length === 0 || (roll < 0.45 && live.length < liveTarget * 2)) {
    // "pages": a quarter of the allocations are page runs of 1, 2 or 4 frames.
    const order = workload === "pages" && random.next() < 0.25 ? random.int(0, 2) : -1;
    const sizeBytes = order >= 0 ? 4096 << order : sizeFor(workload, random);
    const address = order >= 0 ? heap.allocPages(order) : heap.alloc(sizeBytes);
    register(run, address, sizeBytes);
    live.push(address);
    result.allocs++;
    return;
  }
  const at = random.int(0, live.length - 1);
  const address = live[at];
  if (roll < 0.8 || workload === "small") {
    release(run, address);
    heap.free(address);
    live[at] = live[live.length - 1];
    live.pop();
    result.frees++;
  } else if (roll < 0.9) {
    release(run, address);
    const sizeBytes = sizeFor(workload, random);
    const moved = heap.realloc(address, sizeBytes);
    register(run, moved, sizeBytes);
    live[at] = moved;
    result.reallocs++;
  } else {
    // Hand the block to whichever Worker takes this exchange slot next; take what was there.
    const exchange = run.exchange;
    const previous = Atomics.exchange(exchange, random.int(0, exchange.length - 1), address);
    result.handedOver++;
    if (previous === 0) {
      live[at] = live[live.length - 1];
      live.pop();
    } else {
      live[at] = previous;
      result.received++;
    }
  }
}

/**
 * Payload sizes: "small" is 8 to 128 bytes, uniform; "mixed" (and "pages"
 * besides its page runs) is 4 to 128 bytes 70% of the time, 129 to 1024
 * 25%, 1025 to 8192 5%.
 */
function sizeFor(workload: WorkloadName, random: Random): number {
  if (workload === "small") return random.int(8, 128);
  const roll = random.next();
  if (roll < 0.7) return random.int(4, 128);
  if (roll < 0.95) return random.int(129, 1024);
  return random.int(1025, 8192);
}

/** Live objects a "refill" Worker cycles through: far more than a bin holds (84 of 32 bytes). */
const REFILL_LIVE = 512;
/**
 * The "refill" sizes, by Worker index: kmalloc-32, -64, -96 and -128 (ids 3,
 * 7, 11, 15: class locks 4, 8, 12, 1), so Workers work on different classes
 * with different class locks; "refill-same" gives every Worker the first.
 */
const REFILL_SIZES = [32, 64, 96, 128];
/** Whether the "refill" Worker is allocating (up to REFILL_LIVE) or freeing (down to none). */
let refillGrowing = true;

/**
 * One operation of the "refill" mixes: allocate objects of one size until
 * the Worker holds REFILL_LIVE, then free them all, newest first, and again:
 * the bin refills (a batch: 42 objects of 32 bytes, 14 of 128) every batch
 * allocations and drains every batch frees, so a refill or drain, each under
 * a lock, comes every 14 to 42 operations (the "small" mix, in the steady
 * state, takes none).
 */
function refillStep(run: Run): void {
  const { heap, live, result } = run;
  if (refillGrowing && live.length >= REFILL_LIVE) refillGrowing = false;
  else if (!refillGrowing && live.length === 0) refillGrowing = true;
  if (refillGrowing) {
    const sizeBytes =
      REFILL_SIZES[run.workload === "refill" ? result.index % REFILL_SIZES.length : 0];
    const address = heap.alloc(sizeBytes);
    register(run, address, sizeBytes);
    live.push(address);
    result.allocs++;
    return;
  }
  const address = live.pop()!;
  release(run, address);
  heap.free(address);
  result.frees++;
}
