/**
 * A hostile user of shared heaps' per-Worker page caches, fourth round: page
 * runs of orders 0 to 2 go through a bin of the freeing Worker without a lock
 * (README "Shared heaps", "Page runs of orders 0 to 2"). Every call on a run
 * sitting in a bin, and on its interior addresses, from its Worker and from
 * another handle, is a typed error that changes no byte of the shared memory;
 * requests that are almost pages keep their sizes and never reach a bin with
 * slack; forged state bytes, bin counts and bin entries are refused, never a
 * live run handed out twice; a heap filled to `OUT_OF_MEMORY` while other
 * handles hold cached runs keeps its books; and real Workers that hand page
 * runs to each other, detach and are terminated (their slot reclaimed) never
 * overwrite a live payload.
 */
import assert from "node:assert/strict";
import { AllocatorError, type AllocatorStats, PhysicalAllocator } from "../mod.ts";
import { Random } from "./support/random.ts";
import { refusesUnchanged } from "./support/refusals.ts";
import { type Reply, RpcWorker } from "./support/rpc_worker.ts";

const MIB = 1 << 20;
const hex = (address: number): string => `0x${address.toString(16)}`;

function assertBalanced(stats: AllocatorStats, what: string): void {
  assert.equal(
    stats.totalBytes,
    stats.freeBytes + stats.usedBytes + stats.overheadBytes + stats.skippedBytes,
    `${what}: totalBytes = freeBytes + usedBytes + overheadBytes + skippedBytes`,
  );
}

/** The index of the first word where `now` and `before` differ, or -1. */
function firstDifference(now: Int32Array, before: Int32Array): number {
  for (let i = 0; i < now.length; i++) if (now[i] !== before[i]) return i;
  return -1;
}

/** The code of the error `call` throws, or "ok". */
function outcome(call: () => unknown): string {
  try {
    call();
    return "ok";
  } catch (error) {
    return error instanceof AllocatorError ? error.code : `untyped ${error}`;
  }
}

/**
 * A Worker that churns page runs of orders 0 to 3 and small objects, each payload filled with
 * a tag of its own (worker, sequence) and verified at every hand-over and before every free,
 * and hands allocations to the other Workers through an exchange table (per entry: a state
 * word 0 empty / 1 writing / 2 full / 3 reading, the address, the size, the tag). It works in
 * batches, each ended by a heartbeat and a turn of the event loop (where `terminate()` stops it).
 */
const STRESS_WORKER = `
import { AllocatorError, PhysicalAllocator } from ${
  JSON.stringify(new URL("../mod.ts", import.meta.url).href)
};
let heap = null;
const codeOf = (error) => error instanceof AllocatorError ? error.code : "UNTYPED " + error;
function verify(address, sizeBytes, tag, what) {
  const bytes = heap.bytes(address);
  if (bytes.length !== sizeBytes) throw new Error(what + ": size " + bytes.length + " != " + sizeBytes + " at " + address);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  for (let i = 0; i + 4 <= sizeBytes; i += 4) {
    if (view.getUint32(i, true) !== tag) {
      throw new Error(what + ": payload of " + address.toString(16) + " (" + sizeBytes + " B) overwritten at +" + i + ": " + view.getUint32(i, true).toString(16) + " != " + tag.toString(16));
    }
  }
}
function fill(address, tag) {
  const bytes = heap.bytes(address);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  for (let i = 0; i + 4 <= bytes.length; i += 4) view.setUint32(i, tag, true);
}
self.onmessage = ({ data: { id, call, args } }) => {
  try {
    let result;
    switch (call) {
      case "attach": heap = PhysicalAllocator.attach(args[0]); result = heap.workerSlot; break;
      case "detach": heap.detach(); break;
      case "check": heap.check(); break;
      case "run": {
        // args: exchange buffer, heartbeat buffer, worker index, batches, seed
        const table = new Int32Array(args[0]);
        const beats = new Int32Array(args[1]);
        const me = args[2];
        let batches = args[3];
        let seed = args[4] | 0;
        const random = () => {
          let t = (seed = (seed + 0x6d2b79f5) | 0);
          t = Math.imul(t ^ (t >>> 15), t | 1);
          t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
          return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
        };
        const entries = table.length / 4;
        const live = new Map(); // address -> [sizeBytes, tag]
        let sequence = 0, handed = 0, taken = 0, failures = 0;
        const alloc = () => {
          const roll = random();
          let address, sizeBytes, pages = false;
          try {
            if (roll < 0.5) {
              const order = Math.floor(random() * 4);
              sizeBytes = 4096 << order;
              address = random() < 0.5 ? heap.allocPages(order) : heap.alloc(sizeBytes, 4096);
              pages = true;
            } else {
              sizeBytes = 8 * (1 + Math.floor(random() * 80));
              address = heap.alloc(sizeBytes);
            }
          } catch (error) {
            if (codeOf(error) !== "OUT_OF_MEMORY") throw error;
            failures++;
            return;
          }
          if (live.has(address)) throw new Error("address " + address.toString(16) + " handed out while live here");
          const tag = ((me + 1) << 24 | (++sequence & 0xffffff)) >>> 0;
          fill(address, tag);
          live.set(address, [sizeBytes, tag, pages]);
        };
        const release = (address) => {
          const [sizeBytes, tag, pages] = live.get(address);
          verify(address, sizeBytes, tag, "free");
          live.delete(address);
          if (pages && random() < 0.5) heap.freePages(address); else heap.free(address);
        };
        const step = () => {
          const roll = random();
          if (roll < 0.4 && live.size < 24) return alloc();
          if (roll < 0.7 && live.size > 0) {
            const keys = [...live.keys()];
            return release(keys[Math.floor(random() * keys.length)]);
          }
          const entry = Math.floor(random() * entries) * 4;
          if (roll < 0.85 && live.size > 0) {
            if (Atomics.compareExchange(table, entry, 0, 1) !== 0) return;
            const keys = [...live.keys()];
            const address = keys[Math.floor(random() * keys.length)];
            const [sizeBytes, tag, pages] = live.get(address);
            verify(address, sizeBytes, tag, "hand over");
            live.delete(address);
            table[entry + 1] = address; table[entry + 2] = pages ? -sizeBytes : sizeBytes; table[entry + 3] = tag | 0;
            Atomics.store(table, entry, 2);
            handed++;
            return;
          }
          if (Atomics.compareExchange(table, entry, 2, 3) !== 2) return;
          const address = table[entry + 1], pages = table[entry + 2] < 0, tag = table[entry + 3] >>> 0;
          const sizeBytes = Math.abs(table[entry + 2]);
          Atomics.store(table, entry, 0);
          verify(address, sizeBytes, tag, "take over");
          if (live.has(address)) throw new Error("taken address " + address.toString(16) + " is live here");
          taken++;
          if (random() < 0.3) {
            // Resize what another Worker allocated: to another page order or a small size.
            const newSize = random() < 0.5 ? 4096 << Math.floor(random() * 4) : 8 * (1 + Math.floor(random() * 80));
            let moved;
            try { moved = heap.realloc(address, newSize); } catch (error) {
              if (codeOf(error) !== "OUT_OF_MEMORY") throw error;
              live.set(address, [sizeBytes, tag, pages]);
              return;
            }
            const kept = Math.min(sizeBytes, newSize) & ~3;
            const view = new DataView(heap.bytes(moved).buffer, heap.bytes(moved).byteOffset, kept);
            for (let i = 0; i < kept; i += 4) if (view.getUint32(i, true) !== tag) throw new Error("realloc lost the payload of " + address.toString(16));
            const newTag = ((me + 1) << 24 | (++sequence & 0xffffff)) >>> 0;
            fill(moved, newTag);
            live.set(moved, [newSize, newTag, false]);
          } else live.set(address, [sizeBytes, tag, pages]);
        };
        const batch = () => {
          try {
            for (let i = 0; i < 48; i++) step();
            Atomics.add(beats, me, 1);
            if (--batches > 0) { setTimeout(batch, 0); return; }
            for (const address of [...live.keys()]) release(address);
            self.postMessage({ id, result: { handed, taken, failures } });
          } catch (error) {
            self.postMessage({ id, error: { code: codeOf(error), message: String(error) + (error.stack ?? "") } });
          }
        };
        batch();
        return;
      }
    }
    self.postMessage({ id, result });
  } catch (error) {
    self.postMessage({ id, error: { code: codeOf(error), message: String(error) } });
  }
};`;

/** A Worker holding its own handle on a shared heap, driven call by call. */
class StressWorker extends RpcWorker {
  constructor() {
    super(STRESS_WORKER);
  }
}

/** Takes every entry left in the exchange table: verifies its payload's tag and frees it. */
function drainExchange(heap: PhysicalAllocator, table: Int32Array): number {
  let freed = 0;
  for (let entry = 0; entry < table.length; entry += 4) {
    if (Atomics.load(table, entry) !== 2) continue;
    const [address, sizeBytes, tag] = [
      table[entry + 1],
      Math.abs(table[entry + 2]),
      table[entry + 3],
    ];
    const view = new DataView(
      heap.bytes(address).buffer,
      heap.bytes(address).byteOffset,
      sizeBytes,
    );
    assert.equal(heap.sizeOf(address), sizeBytes, `handed-over ${hex(address)} keeps its size`);
    for (let i = 0; i + 4 <= sizeBytes; i += 4) {
      assert.equal(view.getInt32(i, true), tag, `handed-over ${hex(address)} intact at +${i}`);
    }
    heap.free(address);
    table[entry] = 0;
    freed++;
  }
  return freed;
}

Deno.test("Workers handing page runs to each other never overwrite a live payload, detached or terminated", async () => {
  for (let trial = 0; trial < 2; trial++) {
    const memory = new SharedArrayBuffer(3 * MIB);
    using heap = PhysicalAllocator.fromBuffer(memory, { lockTimeoutMs: 2000 });
    heap.trim();
    const fresh = heap.stats();
    const table = new Int32Array(new SharedArrayBuffer(64 * 4 * 4));
    const beats = new Int32Array(new SharedArrayBuffer(4 * 4));
    const workers = [0, 1, 2, 3].map(() => new StressWorker());
    try {
      const slots: number[] = [];
      for (const worker of workers) slots.push(await worker.ok("attach", memory) as number);
      // Worker 3 runs until it is terminated; 0 to 2 run a fixed number of batches.
      const runs = workers.map((worker, i) =>
        worker.call(
          "run",
          table.buffer,
          beats.buffer,
          i,
          i === 3 ? 1e9 : 60 + 20 * i,
          7 + i + trial,
        )
      );
      let victimReply: Reply | null = null;
      runs[3].then((reply) => victimReply = reply);
      for (let waitedMs = 0; Atomics.load(beats, 3) < 10 + 10 * trial; waitedMs += 5) {
        assert.equal(
          victimReply,
          null,
          `the Worker to terminate ended: ${JSON.stringify(victimReply)}`,
        );
        assert.ok(waitedMs < 3000, "the Worker to terminate ran its batches");
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      workers[3].worker.terminate();
      // Only once its heartbeat stopped is the terminated Worker surely gone.
      let last = Atomics.load(beats, 3);
      for (let quietMs = 0, waitedMs = 0; quietMs < 60; waitedMs += 10) {
        assert.ok(waitedMs < 3000, "the terminated Worker stopped");
        await new Promise((resolve) => setTimeout(resolve, 10));
        const now = Atomics.load(beats, 3);
        quietMs = now === last ? quietMs + 10 : 0;
        last = now;
      }
      heap.reclaimSlot(slots[3]);
      const done = await Promise.all(runs.slice(0, 3));
      for (const [i, reply] of done.entries()) {
        assert.equal(reply.error, undefined, `Worker ${i}: ${reply.error?.message}`);
      }
      const counts = done.map((reply) => reply.result as { handed: number; taken: number });
      assert.ok(counts.some((count) => count.handed > 0 && count.taken > 0), "runs changed hands");
      // One Worker detaches while the others hold cached runs; the rest leave afterwards.
      await workers[0].ok("detach");
      await workers[1].ok("check");
      drainExchange(heap, table);
      await workers[1].ok("detach");
      await workers[2].ok("detach");
      assertBalanced(heap.stats(), `trial ${trial}`);
      heap.check();
    } finally {
      for (const worker of workers) worker.worker.terminate();
    }
    // The terminated Worker's own allocations are lost to it, not to the books.
    assert.equal(heap.attachedWorkers, 1);
    const after = heap.stats();
    assert.ok(after.usedBytes >= 0 && after.usedBytes <= 24 * 32768);
    assert.ok(fresh.totalBytes === after.totalBytes);
  }
});

Deno.test("every call on a cached run or inside it, from its Worker or another, is refused unchanged", () => {
  const memory = new SharedArrayBuffer(2 * MIB);
  /** Every byte of the buffer: what a refused call must leave as it was. */
  const all = [new Uint8Array(memory)];
  using heap = PhysicalAllocator.fromBuffer(memory, { lockTimeoutMs: 50 });
  using other = PhysicalAllocator.attach(memory);
  const runs = [heap.allocPages(0), heap.allocPages(1), heap.allocPages(2)];
  // The first run of the first chunk sits at the chunk's first frame.
  const chunkStarts = new Set([...heap.layerRuns()].map((run) => run.chunk));
  const atChunkStart = heap.allocPages(0);
  const live = heap.allocPages(1);
  heap.bytes(live).fill(0x6b);
  heap.freePages(runs[0]);
  heap.free(runs[1]);
  other.freePages(runs[2]); // into the other handle's bin
  other.free(atChunkStart);
  const cached = [...runs, atChunkStart];
  assert.ok(cached.some((run) => chunkStarts.has(run)), "a cached run at a chunk's first frame");
  const sizes = [1, 100, 256, 4095, 4096, 4097, 8192, 16384, 65536];
  for (const [name, handle] of [["its Worker", heap], ["another handle", other]] as const) {
    for (const run of cached) {
      const orderBytes = run === runs[1] ? 8192 : run === runs[2] ? 16384 : 4096;
      for (const offset of [0, 8, 32, 4095, 4096, 8192, 12288]) {
        if (offset >= orderBytes) continue;
        const address = run + offset;
        const what = `${name}: ${hex(address)} (cached run ${hex(run)} + ${offset})`;
        // 8 bytes in shares the run's state byte, and is an interior free all the same
        // (as on an unshared heap; DOUBLE_FREE before 35fc523).
        const freeCode = offset === 0 ? "DOUBLE_FREE" : "INVALID_FREE";
        const calls: [string, () => unknown, string][] = [
          ["free", () => handle.free(address), freeCode],
          ["freePages", () => handle.freePages(address), offset === 0 ? freeCode : "INVALID_FREE"],
          ["bytes", () => handle.bytes(address), "INVALID_ADDRESS"],
          ["sizeOf", () => handle.sizeOf(address), "INVALID_ADDRESS"],
          ["capacityOf", () => handle.capacityOf(address), "INVALID_ADDRESS"],
        ];
        for (const sizeBytes of sizes) {
          calls.push([`realloc ${sizeBytes}`, () => handle.realloc(address, sizeBytes), freeCode]);
        }
        for (const [call, run, code] of calls) {
          const thrown = refusesUnchanged(heap, all, `${what} ${call}`, run);
          assert.equal(thrown, code, `${what} ${call}`);
        }
      }
    }
    // Inside the live run: refused as interior, the run stays the program's.
    for (const offset of [8, 32, 4095, 4096]) {
      const what = `${name}: inside the live run ${hex(live)} + ${offset}`;
      assert.equal(
        refusesUnchanged(
          heap,
          all,
          what,
          () => handle.freePages(live + offset),
        ),
        "INVALID_FREE",
      );
      assert.equal(
        refusesUnchanged(heap, all, what, () => handle.free(live + offset)),
        "INVALID_FREE",
      );
      assert.equal(
        refusesUnchanged(heap, all, what, () => handle.sizeOf(live + offset)),
        "INVALID_ADDRESS",
      );
    }
  }
  assert.ok(heap.bytes(live).every((byte) => byte === 0x6b));
  assert.equal(other.sizeOf(live), 8192);
  // The cached runs come back to their own bins' Workers, once each.
  assert.equal(heap.allocPages(0), runs[0]);
  assert.equal(heap.allocPages(1), runs[1]);
  assert.equal(other.allocPages(0), atChunkStart);
  assert.equal(other.alloc(16384, 4096), runs[2]);
  for (const run of [...runs, atChunkStart, live]) other.free(run);
  heap.check();
});

Deno.test("requests that are almost pages keep their sizes, and a run with slack never enters a bin", () => {
  const memory = new SharedArrayBuffer(8 * MIB);
  using heap = PhysicalAllocator.fromBuffer(memory, { lockTimeoutMs: 1 });
  using other = PhysicalAllocator.attach(memory);
  const requests: [number, number | undefined, boolean][] = [
    // [size, alignment, freed into a Worker cache without the lock]
    [4096, 4096, true],
    [8192, 4096, true],
    [16384, 4096, true],
    [8192, 8192, false],
    [4097, 4096, false],
    [4095, 4096, false],
    [5000, 4096, false],
    [12288, 4096, false],
    [32768, 4096, false],
    [4096, undefined, true], // a block of the 4096-byte class: the class bin, no page bin
  ];
  // Another Worker holds the heap lock: a free that needs it times out and changes nothing.
  const lockWord = new Int32Array(memory, 128, 1);
  for (const [sizeBytes, alignBytes, cached] of requests) {
    const what = `alloc(${sizeBytes}, ${alignBytes})`;
    const address = heap.alloc(sizeBytes, alignBytes);
    assert.equal(heap.sizeOf(address), sizeBytes, what);
    assert.equal(other.sizeOf(address), sizeBytes, what);
    heap.bytes(address).fill(0x3c);
    const stats = JSON.stringify(heap.stats());
    const words = new Int32Array(memory);
    assert.equal(Atomics.compareExchange(lockWord, 0, 0, other.workerSlot | (1 << 8)), 0);
    let before = words.slice();
    try {
      if (cached) {
        heap.free(address);
        before = words.slice();
        assert.equal(outcome(() => other.free(address)), "DOUBLE_FREE", what);
      } else {
        assert.equal(outcome(() => heap.free(address)), "LOCK_TIMEOUT", what);
      }
      assert.equal(firstDifference(words, before), -1, `${what}: unchanged`);
    } finally {
      Atomics.store(lockWord, 0, 0);
    }
    if (!cached) assert.equal(JSON.stringify(heap.stats()), stats, `${what}: unchanged`);
    if (!cached) {
      assert.equal(heap.sizeOf(address), sizeBytes, `${what} kept its size`);
      assert.ok(heap.bytes(address).every((byte) => byte === 0x3c));
      other.free(address);
    }
  }
  // A page run resized to another page order and freed: its books stay right.
  for (let order = 0; order <= 3; order++) {
    for (const newSize of [4096, 8192, 16384, 32768, 4097, 200, 70000]) {
      const run = heap.allocPages(order);
      heap.bytes(run).fill(order + 1);
      const moved = other.realloc(run, newSize);
      assert.equal(heap.sizeOf(moved), newSize, `allocPages(${order}) -> realloc(${newSize})`);
      const kept = Math.min(newSize, 4096 << order);
      assert.ok(heap.bytes(moved, kept).every((byte) => byte === order + 1));
      heap.free(moved);
      assert.equal(outcome(() => other.free(moved)), "DOUBLE_FREE");
    }
  }
  assert.equal(heap.stats().usedBlocks, 0);
  assertBalanced(heap.stats(), "after the resizes");
  heap.check();
});

Deno.test("almost-page requests, page runs and their reallocs answer as on an unshared heap (lockstep)", () => {
  const memory = new SharedArrayBuffer(8 * MIB);
  using first = PhysicalAllocator.fromBuffer(memory);
  using second = PhysicalAllocator.attach(memory);
  const handles = [first, second];
  using plain = PhysicalAllocator.fromBuffer(new Uint8Array(8 * MIB));
  const random = new Random(404);
  const sizes = [4095, 4096, 4097, 8191, 8192, 8193, 12288, 16384, 16385, 32768, 3000, 100];
  const aligns = [undefined, 4096, 8192, 16384];
  const live: { shared: number; plain: number; sizeBytes: number }[] = [];
  for (let step = 0; step < 2500; step++) {
    const heap = handles[random.int(0, 1)];
    const roll = random.next();
    let what: string;
    if (live.length === 0 || (roll < 0.4 && live.length < 60)) {
      if (random.next() < 0.4) {
        const order = random.int(0, 3);
        what = `allocPages(${order})`;
        live.push({
          shared: heap.allocPages(order),
          plain: plain.allocPages(order),
          sizeBytes: 4096 << order,
        });
      } else {
        const [sizeBytes, alignBytes] = [random.pick(sizes), random.pick(aligns)];
        what = `alloc(${sizeBytes}, ${alignBytes})`;
        live.push({
          shared: heap.alloc(sizeBytes, alignBytes),
          plain: plain.alloc(sizeBytes, alignBytes),
          sizeBytes,
        });
      }
      const entry = live.at(-1)!;
      heap.bytes(entry.shared).fill(step & 0xff);
      plain.bytes(entry.plain).fill(step & 0xff);
    } else if (roll < 0.75) {
      const [entry] = live.splice(random.int(0, live.length - 1), 1);
      // freePages frees a block of whole pages at a page boundary (what allocPages returns
      // when no frames serve it): only where both heaps placed the entry at one.
      const viaPages = random.next() < 0.5 && entry.shared % 4096 === 0 &&
        entry.plain % 4096 === 0;
      what = `${viaPages ? "freePages" : "free"} of ${entry.sizeBytes} bytes`;
      const codes = [
        outcome(() => viaPages ? heap.freePages(entry.shared) : heap.free(entry.shared)),
        outcome(() => viaPages ? plain.freePages(entry.plain) : plain.free(entry.plain)),
      ];
      assert.equal(codes[0], codes[1], `step ${step}: ${what}`);
      if (codes[0] !== "ok") live.push(entry);
    } else {
      const entry = live[random.int(0, live.length - 1)];
      const sizeBytes = random.next() < 0.6 ? 4096 << random.int(0, 3) : random.pick(sizes);
      what = `realloc ${entry.sizeBytes} -> ${sizeBytes}`;
      entry.shared = heap.realloc(entry.shared, sizeBytes);
      entry.plain = plain.realloc(entry.plain, sizeBytes);
      const kept = Math.min(entry.sizeBytes, sizeBytes);
      assert.deepEqual(heap.bytes(entry.shared, kept), plain.bytes(entry.plain, kept), what);
      entry.sizeBytes = sizeBytes;
      heap.bytes(entry.shared).fill(step & 0xff);
      plain.bytes(entry.plain).fill(step & 0xff);
    }
    for (const entry of live.slice(-3)) {
      assert.equal(second.sizeOf(entry.shared), plain.sizeOf(entry.plain), `step ${step}: ${what}`);
      assert.ok(first.capacityOf(entry.shared) >= entry.sizeBytes, `step ${step}: ${what}`);
    }
    if (step % 250 === 0) {
      const [s, p] = [heap.stats(), plain.stats()];
      assert.equal(s.usedBytes, p.usedBytes, `step ${step}`);
      assert.equal(s.usedBlocks, p.usedBlocks, `step ${step}`);
      assertBalanced(s, `step ${step}`);
      heap.check();
      for (const entry of live) {
        assert.deepEqual(first.bytes(entry.shared), plain.bytes(entry.plain), `step ${step}`);
      }
    }
  }
  for (const entry of live) second.free(entry.shared);
  first.detach();
  second.detach();
  using after = PhysicalAllocator.attach(memory);
  after.trim();
  assert.equal(after.stats().usedBlocks, 0);
  after.check();
});

/** Where a free of `run` into its Worker's bin wrote: its bin's count word, its entry word, its state byte. */
function freeIntoBin(
  heap: PhysicalAllocator,
  memory: SharedArrayBuffer,
  base: number,
  run: number,
): { count: number; entry: number; state: number } {
  const words = new Int32Array(memory);
  const bytes = new Uint8Array(memory);
  const before = words.slice(0, 1 << 18);
  const beforeBytes = bytes.slice(0, 1 << 20);
  heap.freePages(run);
  // The count word grows by one; the newest entry is the count-th word after it.
  const count = before.findIndex((word, i) => words[i] === word + 1);
  const entry = count + words[count];
  assert.equal(words[entry], (run - base) / 8, "the entry holds the run's offset / 8");
  const state = beforeBytes.findIndex((byte, i) => byte === 0 && bytes[i] === 255);
  assert.ok(
    entry > 0 && count > 0 && state > 0,
    `the bin entry ${entry}, its count ${count}, the state byte ${state}`,
  );
  return { count, entry, state };
}

/** Allocations of `order` until `n` were tried: none may overlap a live range; returns the codes. */
function takeRuns(
  heap: PhysicalAllocator,
  live: Map<number, number>,
  order: number,
  n: number,
  what: string,
): string[] {
  const codes: string[] = [];
  for (let i = 0; i < n; i++) {
    let run = 0;
    const code = outcome(() => run = heap.allocPages(order));
    codes.push(code);
    if (code !== "ok") {
      assert.equal(code, "HEAP_CORRUPTION", `${what}: allocPages(${order})`);
      continue;
    }
    for (const [start, sizeBytes] of live) {
      assert.ok(
        run + (4096 << order) <= start || start + sizeBytes <= run,
        `${what}: allocPages(${order}) handed out ${hex(run)}, overlapping live ${hex(start)}`,
      );
    }
    live.set(run, 4096 << order);
  }
  return codes;
}

/** Closes a heap whose bins were forged: its drain may report them, never anything else. */
function closeForged(heap: PhysicalAllocator): void {
  const code = outcome(() => heap.close());
  assert.ok(code === "ok" || code === "HEAP_CORRUPTION", `close(): ${code}`);
}

Deno.test("forged state bytes, bin counts and bin entries never hand out a live run twice", () => {
  const base = 0x100000;
  const setup = () => {
    const memory = new SharedArrayBuffer(2 * MIB);
    const heap = PhysicalAllocator.fromBuffer(memory, { baseAddress: base, lockTimeoutMs: 100 });
    return { memory, heap, words: new Int32Array(memory), bytes: new Uint8Array(memory) };
  };
  // A cached run marked live again, then freed again: pushed twice, handed out once.
  {
    const { memory, heap, bytes } = setup();
    const live = new Map<number, number>();
    const run = heap.allocPages(0);
    const { state } = freeIntoBin(heap, memory, base, run);
    bytes[state] = 0;
    heap.freePages(run);
    assert.throws(() => heap.check(), { code: "HEAP_CORRUPTION" }, "a run twice in a bin");
    const codes = takeRuns(heap, live, 0, 8, "a run pushed twice");
    assert.ok(codes.includes("HEAP_CORRUPTION"));
    closeForged(heap);
  }
  // A live run marked cached: never handed out, its free refused, check() sees it.
  {
    const { memory, heap, bytes } = setup();
    const run = heap.allocPages(0);
    const other = heap.allocPages(0);
    const { state } = freeIntoBin(heap, memory, base, other);
    assert.equal(heap.allocPages(0), other);
    const runState = state - (other - run) / 32;
    assert.equal(bytes[runState], 0);
    bytes[runState] = 255;
    assert.throws(() => heap.check(), { code: "HEAP_CORRUPTION" });
    const live = new Map([[run, 4096], [other, 4096]]);
    takeRuns(heap, live, 0, 8, "a live run marked cached");
    assert.equal(outcome(() => heap.sizeOf(run)), "INVALID_ADDRESS");
    bytes[runState] = 0;
    assert.equal(heap.sizeOf(run), 4096, "the run is the program's again");
    closeForged(heap);
  }
  // Counts past the bin, negative or huge: refused at every pop, the frames still serve.
  for (const forged of [9, 17, -1, 0x7fffffff, 1 << 20]) {
    const { memory, heap, words } = setup();
    const run = heap.allocPages(0);
    const { count } = freeIntoBin(heap, memory, base, run);
    const live = new Map<number, number>();
    words[count] = forged;
    const codes = takeRuns(heap, live, 0, 4, `count ${forged}`);
    assert.ok(codes.includes("HEAP_CORRUPTION"), `count ${forged}: ${codes}`);
    takeRuns(heap, live, 1, 4, `count ${forged}, order 1`);
    heap.bytes(heap.alloc(5000, 4096)).fill(1);
    closeForged(heap);
  }
  // Entries: another order, an interior frame, a slab page, a live block, the header, outside.
  const targets: [string, (heap: PhysicalAllocator, live: Map<number, number>) => number][] = [
    ["a cached run of order 1", (heap) => {
      const run = heap.allocPages(1);
      heap.freePages(run);
      return run;
    }],
    ["the second frame of a cached run of order 1", (heap) => {
      const run = heap.allocPages(1);
      heap.freePages(run);
      return run + 4096;
    }],
    ["a live slab object's page", (heap, live) => {
      const object = heap.alloc(64);
      live.set(object, 64);
      return object - (object - base) % 4096;
    }],
    ["a live page-aligned block", (heap, live) => {
      const block = heap.alloc(70000, 4096);
      live.set(block, 70000);
      return block;
    }],
    ["the header", () => base],
    ["below the window", () => base - 4096],
    ["past the window", () => base + 2 * MIB],
    ["an unaligned address", (heap) => heap.allocPages(0) + 8],
  ];
  for (const [name, target] of targets) {
    const { memory, heap, words, bytes } = setup();
    const live = new Map<number, number>();
    const address = target(heap, live);
    const run = heap.allocPages(0);
    const { count, entry, state } = freeIntoBin(heap, memory, base, run);
    // Mark the target cached too, when it is in the window: only the frame table tells.
    const targetState = state + (address - run) / 32;
    const inWindow = address >= base && address < base + 2 * MIB && Number.isInteger(targetState);
    const saved = inWindow ? bytes[targetState] : 0;
    if (inWindow) bytes[targetState] = 255;
    words[entry + 1] = (address - base) / 8;
    words[count] += 1;
    const codes = takeRuns(heap, live, 0, 6, `an entry at ${name}`);
    assert.ok(codes.includes("HEAP_CORRUPTION"), `an entry at ${name}: ${codes}`);
    if (inWindow) bytes[targetState] = saved;
    for (const [start, sizeBytes] of live) {
      if (sizeBytes !== 4096) assert.equal(heap.sizeOf(start), sizeBytes, `${name}: still live`);
    }
    closeForged(heap);
  }
});

Deno.test("a heap filled with pages while other handles hold cached runs keeps its books, and trim() restores it", () => {
  const memory = new SharedArrayBuffer(2 * MIB);
  const handles = [PhysicalAllocator.fromBuffer(memory, { lockTimeoutMs: 200 })];
  handles.push(PhysicalAllocator.attach(memory), PhysicalAllocator.attach(memory));
  const [heap] = handles;
  heap.trim();
  const fresh = heap.stats();
  // Handles 1 and 2 each keep runs of every cached order in their bins.
  for (const handle of handles.slice(1)) {
    for (let order = 0; order <= 2; order++) {
      const runs = [0, 1, 2].map(() => handle.allocPages(order));
      for (const run of runs) handle.freePages(run);
    }
  }
  assert.ok(heap.stats().overheadBytes - fresh.overheadBytes >= 2 * 7 * 4096, "cached runs");
  const live: { address: number; sizeBytes: number; fill: number }[] = [];
  let failures = 0;
  for (let step = 0; failures < 24; step++) {
    const order = step % 4;
    const handle = handles[step % 3];
    const before = heap.stats();
    const viaTry = step % 2 === 1;
    let address = 0;
    const code = outcome(() => {
      address = viaTry ? handle.tryAlloc(4096 << order, 4096) : handle.allocPages(order);
    });
    const after = heap.stats();
    assertBalanced(after, `step ${step}`);
    if (code === "ok" && address !== 0) {
      const fill = (step % 250) + 1;
      heap.bytes(address).fill(fill);
      live.push({ address, sizeBytes: 4096 << order, fill });
      continue;
    }
    failures++;
    assert.ok(viaTry ? code === "ok" : code === "OUT_OF_MEMORY", `step ${step}: ${code}`);
    // A failed allocation may give the Worker's cached runs back, never a live byte.
    assert.equal(after.usedBytes, before.usedBytes, `step ${step}: used bytes`);
    assert.equal(after.usedBlocks, before.usedBlocks, `step ${step}: used blocks`);
    if (failures % 3 === 0 && live.length > 0) {
      const freed = live.splice(0, 1)[0];
      handles[2].free(freed.address);
    }
  }
  assert.ok(live.length > 100, "the heap filled with pages");
  for (const { address, sizeBytes, fill } of live) {
    const bytes = handles[1].bytes(address);
    assert.equal(bytes.length, sizeBytes);
    assert.ok(bytes.every((byte) => byte === fill), `${hex(address)} intact`);
  }
  heap.check();
  for (const { address } of live) handles[1].free(address);
  for (const handle of handles) handle.detach();
  using after = PhysicalAllocator.attach(memory);
  after.trim();
  assert.deepEqual(after.stats(), fresh);
  after.check();
});
