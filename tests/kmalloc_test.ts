/**
 * The kmalloc classes (allocator/slab/kmalloc.ts): their spacing and slab
 * sizes, how `alloc` routes a request of a mid class (above
 * KMALLOC_SMALL_MAX_BYTES) to blocks until the class has turned away a
 * slab's worth of requests, and the empty slabs the caches keep for them.
 */
import assert from "#assert";
import { PhysicalAllocator } from "../mod.ts";
import {
  KMALLOC_CLASS_BY_STEP,
  KMALLOC_CLASSES,
  KMALLOC_MAX_BYTES,
  KMALLOC_SLAB_OBJECTS_MIN,
  KMALLOC_SLACK_MAX,
  KMALLOC_SMALL_CLASS_COUNT,
  KMALLOC_SMALL_MAX_BYTES,
} from "../allocator/slab/kmalloc.ts";
import { slabOrderFor } from "../allocator/slab/slab_cache.ts";

/** The slabinfo line of kmalloc class `bytes`, or undefined while the class has no slab. */
function classInfo(heap: PhysicalAllocator, bytes: number) {
  return heap.stats().layers?.slabinfo.find((info) => info.name === `kmalloc-${bytes}`);
}

Deno.test("KMALLOC_CLASSES are 8 bytes or at most 25% apart, and each holds every size mapped to it", () => {
  assert.equal(KMALLOC_CLASSES.at(-1), KMALLOC_MAX_BYTES);
  assert.equal(KMALLOC_CLASSES[KMALLOC_SMALL_CLASS_COUNT - 1], KMALLOC_SMALL_MAX_BYTES);
  for (let i = 1; i < KMALLOC_CLASSES.length; i++) {
    const [previous, next] = [KMALLOC_CLASSES[i - 1], KMALLOC_CLASSES[i]];
    assert.ok(next - previous === 8 || next <= previous * 1.25, `class ${next}`);
    // The one-byte slack of a kmalloc object must hold any request of its class.
    assert.ok(next - previous - 1 <= KMALLOC_SLACK_MAX);
  }
  for (let size = 1; size <= KMALLOC_MAX_BYTES; size++) {
    const cls = KMALLOC_CLASSES[KMALLOC_CLASS_BY_STEP[(size + 7) >> 3]];
    assert.ok(cls >= size && cls - size < 8 + cls / 8, `size ${size} -> class ${cls}`);
  }
});

Deno.test("slabOrderFor gives every kmalloc class at least KMALLOC_SLAB_OBJECTS_MIN objects", () => {
  for (const bytes of KMALLOC_CLASSES) {
    const slabBytes = 4096 << slabOrderFor(bytes, KMALLOC_SLAB_OBJECTS_MIN);
    assert.ok(Math.floor(slabBytes / bytes) >= KMALLOC_SLAB_OBJECTS_MIN, `kmalloc-${bytes}`);
    // The tail left over stays within SLUB's 1/16.
    assert.ok(slabBytes % bytes <= slabBytes / 16, `kmalloc-${bytes} tail`);
  }
  // A named cache keeps the fewest frames: 4 objects of 1000 bytes fill one.
  assert.equal(slabOrderFor(1000), 0);
  assert.equal(slabOrderFor(1000, KMALLOC_SLAB_OBJECTS_MIN), 2);
});

Deno.test("PhysicalAllocator.alloc() serves a mid class from blocks until it has turned away a slab's worth", () => {
  const heap = PhysicalAllocator.fromBuffer(new Uint8Array(8 << 20));
  const bytes = KMALLOC_CLASSES[KMALLOC_SMALL_CLASS_COUNT + 2];
  const size = bytes - 5;
  const perSlab = Math.floor((4096 << slabOrderFor(bytes, KMALLOC_SLAB_OBJECTS_MIN)) / bytes);
  const live: number[] = [];
  for (let i = 0; i < perSlab; i++) live.push(heap.alloc(size));
  assert.equal(classInfo(heap, bytes), undefined, "a cold class took a slab");
  // A small class takes its slab at the first request.
  const small = heap.alloc(KMALLOC_SMALL_MAX_BYTES - 3);
  assert.equal(classInfo(heap, KMALLOC_SMALL_MAX_BYTES)?.activeObjects, 1);
  // The next request of the mid class takes a slab, and later ones use it.
  live.push(heap.alloc(size), heap.alloc(size));
  const info = classInfo(heap, bytes);
  assert.equal(info?.activeObjects, 2);
  assert.equal(info?.objectsPerSlab, perSlab);
  assert.ok(perSlab >= KMALLOC_SLAB_OBJECTS_MIN);
  for (const address of live) assert.equal(heap.sizeOf(address), size);
  // A slab object grows in place within its class, and moves to blocks past the largest class.
  const last = live.pop()!;
  assert.equal(heap.realloc(last, bytes), last);
  const moved = heap.realloc(last, KMALLOC_MAX_BYTES + 1);
  assert.equal(heap.sizeOf(moved), KMALLOC_MAX_BYTES + 1);
  live.push(moved);
  // Frees come back through the front door from either layer.
  for (const address of live) heap.free(address);
  heap.free(small);
  assert.equal(classInfo(heap, bytes)?.activeObjects ?? 0, 0);
  heap.check();
  heap.trim();
  heap.check();
});

Deno.test("A mid class whose slabs all went back turns away a slab's worth again", () => {
  const heap = PhysicalAllocator.fromBuffer(new Uint8Array(8 << 20));
  const bytes = KMALLOC_CLASSES.at(-1)!;
  const perSlab = Math.floor((4096 << slabOrderFor(bytes, KMALLOC_SLAB_OBJECTS_MIN)) / bytes);
  const blocks: number[] = [];
  for (let i = 0; i < perSlab; i++) blocks.push(heap.alloc(bytes));
  const first = heap.alloc(bytes);
  assert.equal(classInfo(heap, bytes)?.activeObjects, 1);
  heap.free(first);
  heap.trim(); // gives the empty slab back
  assert.equal(classInfo(heap, bytes), undefined);
  for (let i = 0; i < perSlab; i++) blocks.push(heap.alloc(bytes));
  assert.equal(classInfo(heap, bytes), undefined, "the class took a slab while cold");
  const again = heap.alloc(bytes);
  assert.equal(classInfo(heap, bytes)?.activeObjects, 1, "the class stayed cold");
  heap.free(again);
  for (const address of blocks) heap.free(address);
  heap.check();
});

Deno.test("The caches keep one empty slab per 64 frames in use when that is more than 4", () => {
  const heap = PhysicalAllocator.fromBuffer(new Uint8Array(32 << 20));
  // About 400 frames of 16-byte objects in use: up to 6 empty slabs may stay.
  const filler = Array.from({ length: 400 * 256 }, () => heap.alloc(16));
  const sizes = [24, 32, 40, 48, 56, 64, 72];
  const objects = sizes.map((size) => heap.alloc(size));
  const layers = () => heap.stats().layers!;
  const emptySlabs = () => layers().slabinfo.reduce((sum, l) => sum + l.slabs - l.activeSlabs, 0);
  const inUse = layers().totalFrames - layers().freeFrames;
  const kept = Math.max(4, Math.floor(inUse / 64));
  assert.ok(kept > 4 && kept < sizes.length, `${inUse} frames in use keep ${kept}`);
  objects.forEach((address, i) => {
    heap.free(address);
    assert.equal(emptySlabs(), Math.min(i + 1, kept), `after freeing the ${sizes[i]}-byte object`);
  });
  heap.check();
  for (const address of filler) heap.free(address);
  heap.trim();
  assert.equal(layers().chunks, 0);
});
