/**
 * Runs N Workers over one shared heap (worker.ts), then proves the heap
 * against the model the Workers kept: every live payload still carries its
 * key's pattern, the heap's counters match the live set, every live payload
 * is a used block, and `check()` passes. Used by tests/shared_heap_test.ts,
 * the stress run and the scaling table (tools/shared/main.ts).
 *
 * @module
 */

import { cpuUsage } from "node:process";
import { PhysicalAllocator } from "../../mod.ts";
import {
  type SharedRunJob,
  type SharedRunResult,
  verifyPattern,
  type WorkloadName,
} from "./protocol.ts";

/** How a run is set up. */
export interface SharedRunOptions {
  /** Workers, 1 to 15. */
  readonly workers: number;
  /** Operations per Worker. */
  readonly operations: number;
  /** Seed of Worker 0 (Worker i uses seed + i). */
  readonly seed: number;
  /** The operation mix. */
  readonly workload: WorkloadName;
  /** Whether payloads are filled and verified. */
  readonly fill: boolean;
  /** Bytes of the shared heap. */
  readonly heapBytes: number;
  /** Exchange slots (0 turns cross-Worker hand-overs into plain frees of nothing). */
  readonly exchangeSlots?: number;
  /** Untimed operations each Worker runs (and frees) before the start signal; 0 by default. */
  readonly warmupOperations?: number;
  /** Workers run the loop against a stand-in heap that does nothing (the harness alone). */
  readonly nullHeap?: boolean;
  /**
   * Each Worker gets a shared heap of its own (nothing shared between
   * Workers: the scaling the machine gives this very loop); the run's `heap`
   * is the first Worker's, and the others are closed when the run ends.
   */
  readonly separateHeaps?: boolean;
  /**
   * Called with the driver's handle once the Workers have started, and
   * awaited with them; `running()` turns false when the last Worker reported
   * (tests call stats(), check() and trim() beside the Workers).
   */
  readonly duringRun?: (heap: PhysicalAllocator, running: () => boolean) => Promise<void>;
}

/** A finished run: the heap (the driver's own handle, slot 1) and what each Worker reported. */
export interface SharedRun {
  /** The driver's handle on the heap. */
  readonly heap: PhysicalAllocator;
  /** One report per Worker. */
  readonly results: SharedRunResult[];
  /** From the start signal to the last report. */
  readonly wallMs: number;
  /**
   * CPU time the process used in that interval (every Worker's, the driver
   * waiting idle): unlike wall time, barely moved by other processes.
   */
  readonly cpuMs: number;
  /** Blocks left in the exchange table. */
  readonly exchanged: number[];
  /** The registry (keys, sizes). */
  readonly registry: SharedArrayBuffer;
  /** Whether payloads carry patterns. */
  readonly fill: boolean;
}

const BASE_ADDRESS = 0x1000;

/**
 * Runs the Workers to completion.
 *
 * @throws {Error} If a Worker reports an error.
 */
export async function runSharedWorkers(options: SharedRunOptions): Promise<SharedRun> {
  const buffer = new SharedArrayBuffer(options.heapBytes);
  const heap = PhysicalAllocator.fromBuffer(buffer, { baseAddress: BASE_ADDRESS });
  const others: PhysicalAllocator[] = [];
  const bufferFor = (index: number): SharedArrayBuffer => {
    if (index === 0 || options.separateHeaps !== true) return buffer;
    const own = new SharedArrayBuffer(options.heapBytes);
    others.push(PhysicalAllocator.fromBuffer(own, { baseAddress: BASE_ADDRESS }));
    return own;
  };
  const exchange = new SharedArrayBuffer(4 * (options.exchangeSlots ?? 64));
  const registry = new SharedArrayBuffer(options.heapBytes);
  const control = new SharedArrayBuffer(4);
  const workers: Worker[] = [];
  const ready: Promise<unknown>[] = [];
  const done: Promise<SharedRunResult>[] = [];
  for (let index = 0; index < options.workers; index++) {
    const worker = new Worker(new URL("./worker.ts", import.meta.url).href, { type: "module" });
    workers.push(worker);
    const messages = messageQueue(worker);
    ready.push(messages.next());
    done.push(messages.next().then((m) => m as SharedRunResult));
    const job: SharedRunJob = {
      heap: bufferFor(index),
      baseAddress: BASE_ADDRESS,
      // Heaps of their own hand blocks over only within their own heap: a table each.
      exchange: options.separateHeaps === true && index > 0
        ? new SharedArrayBuffer(4 * (options.exchangeSlots ?? 64))
        : exchange,
      registry,
      control,
      index,
      seed: options.seed + index,
      operations: options.operations,
      workload: options.workload,
      fill: options.fill,
      detach: true,
      stopHoldingLock: false,
      warmupOperations: options.warmupOperations ?? 0,
      nullHeap: options.nullHeap ?? false,
    };
    worker.postMessage(job);
  }
  try {
    await Promise.all(ready);
    const cpuStart = cpuUsage();
    const start = performance.now();
    Atomics.store(new Int32Array(control), 0, 1);
    Atomics.notify(new Int32Array(control), 0);
    let running = true;
    let end = 0;
    const finished = Promise.all(done).finally(() => {
      running = false;
      end = performance.now();
    });
    const [results] = await Promise.all([finished, options.duringRun?.(heap, () => running)]);
    const wallMs = end - start;
    const cpu = cpuUsage(cpuStart);
    const cpuMs = (cpu.user + cpu.system) / 1000;
    const exchanged = [...new Int32Array(exchange)].filter((address) => address !== 0);
    return { heap, results, wallMs, cpuMs, exchanged, registry, fill: options.fill };
  } finally {
    for (const worker of workers) worker.terminate();
    for (const other of others) other.close();
  }
}

/** Messages of a Worker in order; an "error" message rejects. */
export function messageQueue(worker: Worker): { next(): Promise<{ kind: string }> } {
  const waiting: ((m: { kind: string }) => void)[] = [];
  const failing: ((e: Error) => void)[] = [];
  const received: { kind: string }[] = [];
  worker.onmessage = (event: MessageEvent<{ kind: string; message?: string }>) => {
    if (event.data.kind === "error") {
      for (const fail of failing.splice(0)) fail(new Error(event.data.message));
      return;
    }
    const resolve = waiting.shift();
    failing.shift();
    if (resolve) resolve(event.data);
    else received.push(event.data);
  };
  worker.onerror = (event) => {
    event.preventDefault();
    for (const fail of failing.splice(0)) fail(new Error(event.message));
  };
  return {
    next() {
      const early = received.shift();
      if (early) return Promise.resolve(early);
      return new Promise((resolve, reject) => {
        waiting.push(resolve);
        failing.push(reject);
      });
    },
  };
}

/** What the model check found. */
export interface ModelReport {
  /** Live payloads after the run (Workers' lists and the exchange table). */
  readonly liveBlocks: number;
  /** Corruptions the Workers reported plus those found here. */
  readonly corrupt: number;
  /** The first problem found, or "". */
  readonly firstProblem: string;
  /** Operations across Workers. */
  readonly operations: number;
}

/**
 * Proves the heap against the live set, then frees every live block,
 * closes the driver's handle (draining its Worker cache) and checks through
 * a new handle that the heap is one free block again. Throws
 * HeapCorruptionError if `check()` fails.
 */
export function modelCheck(run: SharedRun): ModelReport {
  const { heap } = run;
  const keys = new Int32Array(run.registry, 0, run.registry.byteLength >>> 3);
  const sizes = new Int32Array(run.registry, run.registry.byteLength >>> 1);
  let corrupt = 0;
  let firstProblem = "";
  const problem = (message: string) => {
    corrupt++;
    if (firstProblem === "") firstProblem = message;
  };
  for (const result of run.results) {
    corrupt += result.corrupt;
    if (firstProblem === "" && result.firstCorruption !== "") firstProblem = result.firstCorruption;
  }
  const live = [...run.results.flatMap((result) => result.live), ...run.exchanged];
  if (new Set(live).size !== live.length) problem("a live address is held twice");
  let usedBytes = 0;
  for (const address of live) {
    const slot = (address - BASE_ADDRESS) >>> 3;
    const bytes = heap.bytes(address);
    usedBytes += bytes.length;
    if (!run.fill) continue; // throughput runs keep no registry
    const bad = verifyPattern(bytes, keys[slot], sizes[slot]);
    if (bad >= 0) problem(`live block ${address} differs at byte ${bad}`);
    if (bytes.length !== sizes[slot]) problem(`live block ${address} holds ${bytes.length} bytes`);
  }
  heap.check();
  const stats = heap.stats();
  if (stats.usedBlocks !== live.length) {
    problem(`${stats.usedBlocks} used blocks, ${live.length} live in the model`);
  }
  if (stats.usedBytes !== usedBytes) problem(`${stats.usedBytes} used bytes, model ${usedBytes}`);
  const used = new Set([...heap.blocks()].filter((b) => !b.free).map((b) => b.address + 16));
  // Slab objects and page runs lie inside the layers' chunks (used blocks of their own).
  const runs = [...heap.layerRuns()];
  const inLayers = (address: number) =>
    runs.some((run) => address >= run.address && address < run.address + run.sizeBytes);
  for (const address of live) {
    if (!used.has(address) && !inLayers(address)) {
      problem(`${address} is in no used block or layer run`);
    }
  }
  for (const address of live) heap.free(address);
  heap.check();
  // The driver's frees went to its Worker cache: detaching drains it into the heap.
  const buffer = heap.sharedBuffer!;
  heap.close();
  using after = PhysicalAllocator.attach(buffer);
  after.check();
  // The layers keep an empty slab per cache and a free chunk: trim() gives them back.
  after.trim();
  after.check();
  const final = after.stats();
  if (final.freeBlocks !== 1) problem(`${final.freeBlocks} free blocks after all frees`);
  if (final.usedBlocks !== 0) problem(`${final.usedBlocks} used blocks after all frees`);
  const operations = run.results.reduce((sum, result) => sum + result.operations, 0);
  return { liveBlocks: live.length, corrupt, firstProblem, operations };
}
