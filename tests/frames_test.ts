import assert from "node:assert/strict";
import { type ChunkSource, FrameAllocator } from "../allocator/frames/buddy.ts";
import { LayerState } from "../allocator/slab/layer_state.ts";
import {
  CHUNK_REF_SHIFT,
  chunkMetaBytes,
  E_TAG,
  FRAME_BYTES,
  KIND_FREE_HEAD,
  KIND_PAGES_HEAD,
  NONE,
  ORDER_MAX,
  tag,
} from "../allocator/frames/frame_table.ts";

const BASE = 0x1000;

/**
 * A chunk source over a plain buffer: page-aligned payloads handed out in
 * order, with a log; the newest chunk grows in place (when `grows`).
 */
function bumpSource(
  windowBytes: number,
  grows = true,
): ChunkSource & { given: number[]; taken: number; grown: number } {
  let next = 0x2000;
  let newest = 0;
  const source = {
    given: [] as number[],
    taken: 0,
    grown: 0,
    take(payloadBytes: number): number {
      if (next + payloadBytes > BASE + windowBytes) return 0;
      const address = next;
      newest = address;
      next += payloadBytes + 16;
      next = Math.ceil(next / FRAME_BYTES) * FRAME_BYTES;
      source.taken++;
      return address;
    },
    growInPlace(payloadAddress: number, _oldBytes: number, newBytes: number): boolean {
      if (!grows || payloadAddress !== newest) return false;
      if (payloadAddress + newBytes + 16 > BASE + windowBytes) return false;
      next = Math.ceil((payloadAddress + newBytes + 16) / FRAME_BYTES) * FRAME_BYTES;
      source.grown++;
      return true;
    },
    give(payloadAddress: number): void {
      source.given.push(payloadAddress);
    },
    largestFreeBytes: () => BASE + windowBytes - next,
  };
  return source;
}

function makeFrames(windowBytes = 16 << 20, grows = true) {
  const buffer = new ArrayBuffer(windowBytes);
  const source = bumpSource(windowBytes, grows);
  const frames = new FrameAllocator(
    new Int32Array(buffer),
    BASE,
    source,
    LayerState.unshared(windowBytes),
  );
  return { frames, source };
}

Deno.test("FrameAllocator.allocRun() serves every order aligned to it within the chunk", () => {
  const { frames } = makeFrames();
  for (let order = 0; order <= ORDER_MAX; order++) {
    const ref = frames.allocRun(1 << order, KIND_PAGES_HEAD, 0);
    assert.notEqual(ref, NONE, `order ${order}`);
    const local = ref & ((1 << CHUNK_REF_SHIFT) - 1);
    assert.equal(local % (1 << order), 0, `order ${order} at local ${local}`);
    assert.equal(frames.address(ref) % FRAME_BYTES, 0);
    frames.check();
    frames.freeRun(ref, 1 << order);
    frames.check();
  }
});

Deno.test("FrameAllocator splits a block into buddies and merges them back", () => {
  const { frames } = makeFrames();
  const a = frames.allocRun(1, KIND_PAGES_HEAD, 0);
  // The first chunk holds 16 frames: one order-4 block split down to order 0.
  assert.equal(frames.totalFrames, 16);
  assert.deepEqual([...frames.freeBlocks], [1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]);
  const b = frames.allocRun(1, KIND_PAGES_HEAD, 0);
  assert.equal(b, a ^ 1, "the buddy of frame 0 at order 0 is frame 1");
  assert.deepEqual([...frames.freeBlocks], [0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]);
  frames.freeRun(a, 1);
  assert.deepEqual([...frames.freeBlocks], [1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]);
  frames.freeRun(b, 1);
  // Both halves free: merged all the way up (the chunk stays until trimmed).
  assert.deepEqual([...frames.freeBlocks], [0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
  frames.check();
});

Deno.test("FrameAllocator hands out a run of 3 frames and gives the fourth back", () => {
  const { frames } = makeFrames();
  const run = frames.allocRun(3, KIND_PAGES_HEAD, 0);
  assert.equal(frames.freeFrames, 16 - 3);
  const single = frames.allocRun(1, KIND_PAGES_HEAD, 0);
  assert.equal(single, run + 3, "the tail frame of the order-2 block is free");
  frames.check();
  frames.freeRun(run, 3);
  frames.freeRun(single, 1);
  assert.equal(frames.freeFrames, 16);
  frames.check();
});

Deno.test("FrameAllocator takes chunks on demand and gives wholly free ones back", () => {
  const { frames, source } = makeFrames(16 << 20, false);
  const runs: number[] = [];
  for (let i = 0; i < 40; i++) runs.push(frames.allocRun(1, KIND_PAGES_HEAD, 0));
  assert.equal(source.taken, 3, "16 frames each: none can grow here");
  assert.equal(frames.directory.count, 3);
  for (const ref of runs) frames.freeRun(ref, 1);
  frames.trim(1);
  assert.equal(frames.directory.count, 1, "one wholly free chunk kept as a reserve");
  frames.trim(0);
  assert.equal(frames.directory.count, 0);
  assert.equal(source.given.length, 3);
  assert.equal(frames.totalFrames, 0);
  frames.check();
});

Deno.test("FrameAllocator takes a chunk of 1024 frames for an order-10 run", () => {
  const { frames, source } = makeFrames();
  const ref = frames.allocRun(1024, KIND_PAGES_HEAD, 0);
  assert.notEqual(ref, NONE);
  assert.equal(frames.totalFrames, 1024);
  assert.equal(source.taken, 1);
  assert.equal(frames.refAt(frames.offsetOf(ref) + 1024 * FRAME_BYTES), -3, "metadata area");
  assert.equal(chunkMetaBytes(1024), 1024 * 16, "the frame table, unpadded");
  frames.freeRun(ref, 1024);
  frames.check();
});

Deno.test("FrameAllocator merges only inside a chunk whose frame count is not a power of two", () => {
  // A window too small for 16 frames: the chunk gets what fits (half of it, at least the run).
  const { frames } = makeFrames(17 * FRAME_BYTES);
  const ref = frames.allocRun(1, KIND_PAGES_HEAD, 0);
  assert.notEqual(ref, NONE);
  const total = frames.totalFrames;
  assert.ok(total > 1 && total < 16 && (total & (total - 1)) !== 0, `chunk of ${total} frames`);
  frames.check();
  frames.freeRun(ref, 1);
  frames.check();
  assert.equal(frames.freeFrames, total);
});

Deno.test("FrameAllocator.check() reports a frame table entry overwritten", () => {
  const { frames } = makeFrames();
  const ref = frames.allocRun(1, KIND_PAGES_HEAD, 0);
  const entry = frames.entry(ref ^ 1);
  assert.equal(frames.words[entry + E_TAG], tag(KIND_FREE_HEAD, 0, 0));
  frames.words[entry + E_TAG] = 0x7f;
  assert.throws(() => frames.check(), { code: "HEAP_CORRUPTION" });
});

Deno.test("FrameAllocator grows a chunk in place, moving its frame table, before taking another", () => {
  const { frames, source } = makeFrames();
  const runs: number[] = [];
  for (let i = 0; i < 40; i++) {
    runs.push(frames.allocRun(1, KIND_PAGES_HEAD, 0));
    frames.check();
  }
  assert.equal(source.taken, 1, "one chunk");
  assert.equal(frames.chunkFrames[0], 48, "16 frames, grown twice by 16");
  assert.equal(source.grown, 2);
  // Consecutive frames: the chunk kept its place, only its table moved up.
  runs.forEach((ref, i) => assert.equal(frames.address(ref), 0x2000 + i * FRAME_BYTES));
  assert.equal(frames.refAt(48 * FRAME_BYTES + 0x1000), -3, "the table follows frame 47");
  const big = frames.allocRun(64, KIND_PAGES_HEAD, 0);
  assert.equal(frames.chunkFrames[0], 128, "grown to hold an aligned run of 64");
  assert.equal((big & 1023) % 64, 0);
  frames.check();
  for (const ref of [...runs, big]) frames.freeRun(ref, ref === big ? 64 : 1);
  frames.check();
  assert.equal(frames.freeFrames, frames.totalFrames);
});

Deno.test("FrameAllocator takes a new chunk when the last one cannot grow", () => {
  const { frames, source } = makeFrames(16 << 20, false);
  for (let i = 0; i < 20; i++) frames.allocRun(1, KIND_PAGES_HEAD, 0);
  assert.equal(source.taken, 2, "16 frames each");
  assert.equal(frames.totalFrames, 32);
  frames.check();
});
