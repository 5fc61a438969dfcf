/**
 * How far the slab path is from its limit: `bench/traces/bash.rep` (every
 * request at most 256 bytes) replayed on the default heap beside a model of
 * the same slab layout written for speed alone, in one run.
 *
 *   deno bench --allow-read bench/slab_model_bench.ts
 *
 * The model keeps the layers' formats (objects in `Int32Array` words, an
 * out-of-band descriptor per slab with its free head, in-use and carved
 * counts, bitmap and one slack byte per object, safe-linked free links, a
 * page map from frame to descriptor and class) and makes the same checks
 * before it writes, but has no front door (no open, detached or shared
 * checks, no argument validation), keeps each class's state in one
 * `Int32Array` instead of a `SlabCache` object, never moves slabs between
 * lists (a full slab is dropped; a slab that stops being full is pushed on a
 * plain array), never gives a slab back, and carves the rare request over the
 * largest kmalloc class from a bump pointer. It is not an allocator (nothing
 * is ever reused across slabs, no errors are reported): only the cost of the
 * hot path's work.
 *
 * @module
 */

import { decodeTrace, REPLAY_ALLOC, REPLAY_FREE, REPLAY_REALLOC } from "../tools/trace/decode.ts";
import type { DecodedTrace } from "../tools/trace/decode.ts";
import { parseRep } from "../tools/trace/rep_format.ts";
import { heapBytesFor } from "../tools/trace/replay.ts";
import { physicalTarget } from "../tools/trace/target_physical.ts";
import { KMALLOC_CLASS_BY_STEP, KMALLOC_CLASSES } from "../allocator/slab/kmalloc.ts";

const FRAME_BYTES = 4096;
/** Words of one class's state: descriptor, first frame's offset, object bytes, objects per slab, index multiplier, bitmap words, secret. */
const CLASS_WORDS = 8;
/** Descriptors live at the top of the model's window, slabs from its bottom. */
const DESCRIPTOR_AREA_BYTES = 32 << 20;
/** Requests over this (33 of bash's 261,515) are carved from a bump pointer and never freed. */
const MODEL_MAX_BYTES: number = KMALLOC_CLASSES.at(-1)!;

/** The slab layout's hot path alone (see the module doc). */
class SlabModel {
  readonly words: Int32Array;
  readonly bytes: Uint8Array;
  readonly pageDescriptorPlusOne: Int32Array;
  readonly pageClass: Int32Array;
  readonly classes = new Int32Array(KMALLOC_CLASSES.length * CLASS_WORDS);
  readonly partial: number[][] = KMALLOC_CLASSES.map(() => []);
  nextSlabBytes = FRAME_BYTES;
  nextDescriptorBytes: number;

  constructor(windowBytes: number) {
    this.words = new Int32Array(windowBytes >> 2);
    this.bytes = new Uint8Array(this.words.buffer);
    this.pageDescriptorPlusOne = new Int32Array(windowBytes / FRAME_BYTES);
    this.pageClass = new Int32Array(windowBytes / FRAME_BYTES);
    this.nextDescriptorBytes = windowBytes - DESCRIPTOR_AREA_BYTES;
    KMALLOC_CLASSES.forEach((objectBytes, cls) => {
      const c = cls * CLASS_WORDS;
      const perSlab = Math.floor(FRAME_BYTES / objectBytes);
      this.classes[c] = -1;
      this.classes[c + 2] = objectBytes;
      this.classes[c + 3] = perSlab;
      this.classes[c + 4] = Math.ceil(2 ** 20 / objectBytes) | 0;
      this.classes[c + 5] = (perSlab + 31) >>> 5;
      this.classes[c + 6] = (0x9e3779b9 * (cls + 1)) | 0;
    });
  }

  /** A window offset for `sizeBytes`. */
  alloc(sizeBytes: number): number {
    if (sizeBytes > MODEL_MAX_BYTES) return this.#bump(sizeBytes);
    const c = KMALLOC_CLASS_BY_STEP[(sizeBytes + 7) >> 3] * CLASS_WORDS;
    const classes = this.classes;
    if (classes[c] === -1) this.#nextSlab(c);
    const w = this.words;
    const d = classes[c];
    const size = classes[c + 2];
    const carved = w[d + 2];
    const head = w[d];
    const index = head === -1 ? carved : head;
    const offset = classes[c + 1] + index * size;
    let next = -1;
    if (head !== -1) {
      next = w[offset >> 2] ^ classes[c + 6] ^ Math.imul(offset, 0x9e3779b1);
      if (
        next !== -1 &&
        ((next >>> 0) >= carved || (w[d + 4 + (next >>> 5)] & (1 << (next & 31))) !== 0)
      ) throw new Error("forged link");
    }
    const bitWord = d + 4 + (index >>> 5);
    const bit = 1 << (index & 31);
    if ((w[bitWord] & bit) !== 0 || index >= classes[c + 3]) throw new Error("live object");
    if (index === carved) w[d + 2] = carved + 1;
    else w[d] = next;
    w[bitWord] |= bit;
    this.bytes[((d + 4 + classes[c + 5]) << 2) + index] = size - sizeBytes;
    if (++w[d + 1] === classes[c + 3]) classes[c] = -1;
    return offset;
  }

  /** Frees the object at window offset `offset` (a bump-carved one stays). */
  free(offset: number): void {
    const page = offset >>> 12;
    const d = this.pageDescriptorPlusOne[page] - 1;
    if (d < 0) return;
    const c = this.pageClass[page];
    const classes = this.classes;
    const size = classes[c + 2];
    const from = offset & 4095;
    const index = Math.imul(from, classes[c + 4]) >>> 20;
    const w = this.words;
    if (index * size !== from || index >= w[d + 2]) throw new Error("not an object");
    const bitWord = d + 4 + (index >>> 5);
    const bit = 1 << (index & 31);
    if ((w[bitWord] & bit) === 0) throw new Error("double free");
    w[bitWord] &= ~bit;
    w[offset >> 2] = w[d] ^ classes[c + 6] ^ Math.imul(offset, 0x9e3779b1);
    w[d] = index;
    if (--w[d + 1] === classes[c + 3] - 1 && classes[c] !== d) {
      this.partial[c / CLASS_WORDS].push(d);
    }
  }

  /** Frames for a request over MODEL_MAX_BYTES, never given back. */
  #bump(sizeBytes: number): number {
    const offset = this.nextSlabBytes;
    this.nextSlabBytes += Math.ceil(sizeBytes / FRAME_BYTES) * FRAME_BYTES;
    return offset;
  }

  /** Makes the class at state word `c` take a partial slab, or a new one. */
  #nextSlab(c: number): void {
    const w = this.words;
    const partial = this.partial[c / CLASS_WORDS];
    for (let d = partial.pop(); d !== undefined; d = partial.pop()) {
      if (w[d + 1] < this.classes[c + 3]) {
        this.classes[c] = d;
        this.classes[c + 1] = w[d + 3];
        return;
      }
    }
    const descriptorWords = 4 + this.classes[c + 5] + ((this.classes[c + 3] + 3) >>> 2);
    const d = this.nextDescriptorBytes >> 2;
    this.nextDescriptorBytes += descriptorWords * 4;
    w.fill(0, d, d + descriptorWords);
    w[d] = -1;
    const base = this.nextSlabBytes;
    this.nextSlabBytes += FRAME_BYTES;
    w[d + 3] = base;
    this.pageDescriptorPlusOne[base >>> 12] = d + 1;
    this.pageClass[base >>> 12] = c;
    this.classes[c] = d;
    this.classes[c + 1] = base;
  }
}

/** Replays `trace` on the model (a realloc is an alloc, a copy-free move and a free). */
function replayModel(model: SlabModel, trace: DecodedTrace, slots: Float64Array): void {
  const { kinds, ids, sizesBytes, opCount } = trace;
  for (let i = 0; i < opCount; i++) {
    const id = ids[i];
    const size = sizesBytes[i] > 0 ? sizesBytes[i] : 1;
    if (kinds[i] === REPLAY_ALLOC) slots[id] = model.alloc(size) + 1;
    else if (kinds[i] === REPLAY_FREE) {
      if (slots[id] !== 0) model.free(slots[id] - 1);
      slots[id] = 0;
    } else if (kinds[i] === REPLAY_REALLOC) {
      const moved = model.alloc(size) + 1;
      if (slots[id] !== 0) model.free(slots[id] - 1);
      slots[id] = moved;
    }
  }
}

const trace = decodeTrace(
  parseRep(await Deno.readTextFile(new URL("./traces/bash.rep", import.meta.url))),
  "bash",
);
const group = `bash.rep replay (${trace.opCount} operations)`;
const slots = new Float64Array(trace.slotCount);
const modelBytes = 2 * DESCRIPTOR_AREA_BYTES + 2 * heapBytesFor(trace);

Deno.bench("slab model: bash.rep replay", { group, baseline: true }, (b) => {
  const model = new SlabModel(modelBytes);
  slots.fill(0);
  b.start();
  replayModel(model, trace, slots);
  b.end();
});

const heapTarget = physicalTarget({ policy: "tlsf" });
Deno.bench("tlsf (default heap): bash.rep replay", { group }, (b) => {
  const heap = heapTarget.create(trace, heapBytesFor(trace));
  b.start();
  heap.run(trace);
  b.end();
  heap.close();
});
