/**
 * The page-frame allocator: a binary buddy allocator over 4 KiB frames, in
 * chunks taken from the block heap on demand, grown in place while the block
 * after them is free, and given back when wholly free.
 *
 * Like Linux's `mm/page_alloc.c`: one free list per order (`free_area`), a
 * block's buddy is `local ^ (1 << order)`, and the metadata is a frame table
 * outside the frames (allocator/frames/frame_table.ts). A chunk of n frames
 * need not be a power of two: its frames start as the maximal aligned blocks
 * that fit, and a buddy past the chunk's end simply never merges.
 *
 * Alignment promise: a run of 2^k frames starts at a multiple of 2^k frames
 * from its chunk's first frame, and every frame is 4096-byte aligned in
 * absolute terms; nothing larger is promised in absolute terms (consecutive
 * chunks cannot abut on 4 MiB boundaries, since a 16-byte block header sits
 * between them).
 *
 * @module
 */

import { alignUp } from "../_math.ts";
import { HeapCorruptionError } from "../errors.ts";
import { hex } from "../memory/physical_memory.ts";
import { ChunkDirectory, type DirectoryState } from "./chunk_directory.ts";
import {
  CHUNK_FRAMES_MAX,
  CHUNK_REF_SHIFT,
  chunkMetaBytes,
  E_AUX,
  E_NEXT,
  E_PREV,
  E_TAG,
  FRAME_BYTES,
  FRAME_SHIFT,
  KIND_FREE_HEAD,
  KIND_FREE_TAIL,
  KIND_MASK,
  KIND_PAGES_HEAD,
  KIND_PAGES_TAIL,
  KIND_SLAB_HEAD,
  KIND_SLAB_TAIL,
  LOCAL_MASK,
  NONE,
  ORDER_MAX,
  orderFor,
  tag,
  tagOrder,
} from "./frame_table.ts";

/** Where chunks come from: the block heap below. */
export interface ChunkSource {
  /** Takes a block whose payload of `payloadBytes` is FRAME_BYTES-aligned; its payload address or 0. */
  take(payloadBytes: number): number;
  /** Gives back the chunk block of `payloadBytes` whose payload is at `payloadAddress`. */
  give(payloadAddress: number, payloadBytes: number): void;
  /** Grows that chunk block in place from `oldBytes` to `newBytes`; false (nothing written) if it cannot. */
  growInPlace(payloadAddress: number, oldBytes: number, newBytes: number): boolean;
  /** The largest payload one free block could hold now, or 0. */
  largestFreeBytes(): number;
  /**
   * Before the frames take or grow a chunk for a run of `order`: gives the
   * layers' reserves (empty slabs) back when that surely frees a block of
   * `order` (true), else changes nothing (false).
   */
  reclaim?(order: number): boolean;
}

/**
 * Frames of a new chunk, at least (64 KiB). Chunks start small and grow in
 * place (CHUNK_GROW_FRAMES at a time) while the block after them is free, so
 * the free frames at the edge of the layers stay few: free frames inside a
 * chunk cannot serve the block heap, and a block placed above them would keep
 * them below the heap's footprint. (A new chunk of a quarter of the frames
 * held, as before, left up to a quarter of them free at the peak: README,
 * "Page frames and slab caches".)
 */
export const CHUNK_FRAMES_MIN = 16;
/** Frames a chunk grows by in place, at least (see #grow). */
export const CHUNK_GROW_FRAMES = 16;

/** What `refAt` answers for an address inside a chunk's metadata area. */
export const IN_CHUNK_META = -3;

/** Scalar word of totalFrames (the layer state's S_TOTAL_FRAMES). */
export const FRAMES_TOTAL_WORD = 0;
/** Scalar word of freeFrames. */
export const FRAMES_FREE_WORD = 1;
/** Scalar word of metaBytes. */
export const FRAMES_META_BYTES_WORD = 2;
/** Scalar word of chunksTaken. */
export const FRAMES_CHUNKS_TAKEN_WORD = 3;
/** Scalar word of chunksGrown. */
export const FRAMES_CHUNKS_GROWN_WORD = 4;

/**
 * Where a frame allocator keeps its state between calls (allocator/slab/layer_state.ts's
 * LayerState fits): in JS memory, or in a shared heap's memory for every Worker.
 */
export interface FrameState extends DirectoryState {
  /** Head ref of the free list of each order. */
  readonly heads: Int32Array;
  /** Free blocks on each order's list. */
  readonly freeBlocks: Int32Array;
  /** Frames of each chunk. */
  readonly chunkFrames: Int32Array;
  /** Free frames of each chunk. */
  readonly chunkFreeFrames: Int32Array;
  /** Word index of each chunk's frame table entry 0. */
  readonly chunkTableWord: Int32Array;
}

/** The buddy allocator and its chunks. */
export class FrameAllocator {
  /** The window as i32 words (the frame tables live in it). */
  readonly words: Int32Array;
  /** The address of the window's byte 0. */
  readonly baseAddress: number;
  /** Which chunk owns an address. */
  readonly directory: ChunkDirectory;
  /** Frames of each chunk. */
  readonly chunkFrames: Int32Array;
  /** Free frames of each chunk. */
  readonly chunkFreeFrames: Int32Array;
  /** Word index of each chunk's frame table entry 0. */
  readonly chunkTableWord: Int32Array;
  /** Head ref of the free list of each order, or NONE. */
  readonly heads: Int32Array;
  /** Free blocks on each order's list (buddyinfo). */
  readonly freeBlocks: Int32Array;
  readonly #scalars: Int32Array;
  /** Frames of all chunks. */
  totalFrames = 0;
  /** Free frames of all chunks. */
  freeFrames = 0;
  /** Bytes of all chunks' metadata areas. */
  metaBytes = 0;
  /** Chunks taken from the block heap since creation. */
  chunksTaken = 0;
  /** Chunks grown in place since creation. */
  chunksGrown = 0;
  readonly #source: ChunkSource;

  /**
   * Creates a frame allocator over `state` (with no chunks yet when the state is fresh).
   *
   * @param words The window as i32 words; the window must be below 2^31 bytes.
   * @param baseAddress The address of the window's byte 0.
   * @param source The block heap chunks come from.
   * @param state Where the allocator's lists, tables and counters live.
   */
  constructor(words: Int32Array, baseAddress: number, source: ChunkSource, state: FrameState) {
    this.words = words;
    this.baseAddress = baseAddress;
    this.directory = new ChunkDirectory(state);
    this.#scalars = state.scalars;
    this.heads = state.heads;
    this.freeBlocks = state.freeBlocks;
    this.chunkFrames = state.chunkFrames;
    this.chunkFreeFrames = state.chunkFreeFrames;
    this.chunkTableWord = state.chunkTableWord;
    this.#source = source;
  }

  /** Word index of the frame table entry of `ref`. */
  entry(ref: number): number {
    return this.chunkTableWord[ref >>> CHUNK_REF_SHIFT] + ((ref & LOCAL_MASK) << 2);
  }

  /** Window offset of the frame `ref`. */
  offsetOf(ref: number): number {
    return this.directory.startOffset[ref >>> CHUNK_REF_SHIFT] +
      ((ref & LOCAL_MASK) << FRAME_SHIFT);
  }

  /**
   * The frame holding window offset `offset`: its ref, IN_CHUNK_META when
   * the offset lies in a chunk's metadata area, or NONE outside every chunk.
   */
  refAt(offset: number): number {
    const id = this.directory.find(offset);
    if (id === NONE) return NONE;
    const local = (offset - this.directory.startOffset[id]) >>> FRAME_SHIFT;
    if (local >= this.chunkFrames[id]) return IN_CHUNK_META;
    return (id << CHUNK_REF_SHIFT) | local;
  }

  /**
   * Takes a run of `frameCount` frames (1 to CHUNK_FRAMES_MAX) from a block
   * of the smallest order that holds it, giving the tail back, and marks it.
   *
   * @param frameCount Frames wanted.
   * @param headKind KIND_PAGES_HEAD or KIND_SLAB_HEAD.
   * @param tagAux The aux bits of the head's tag (a slab's cache id).
   * @returns The run's first frame ref, or NONE when no chunk can serve it.
   */
  allocRun(frameCount: number, headKind: number, tagAux: number): number {
    const order = orderFor(frameCount);
    let ref = this.#takeBlock(order);
    // Empty slabs kept as reserves go back before the frames grow the footprint.
    if (ref === NONE && this.#source.reclaim?.(order) === true) ref = this.#takeBlock(order);
    if (ref === NONE) {
      if (!this.#grow(order)) return NONE;
      ref = this.#takeBlock(order);
      if (ref === NONE) return NONE;
    }
    const w = this.words;
    const head = this.entry(ref);
    w[head + E_TAG] = tag(headKind, order, tagAux);
    w[head + E_NEXT] = NONE;
    w[head + E_PREV] = NONE;
    w[head + E_AUX] = frameCount;
    const tailKind = headKind === KIND_SLAB_HEAD ? KIND_SLAB_TAIL : KIND_PAGES_TAIL;
    for (let i = 1; i < frameCount; i++) {
      const e = head + (i << 2);
      w[e + E_TAG] = tailKind;
      w[e + E_NEXT] = ref;
    }
    const chunk = ref >>> CHUNK_REF_SHIFT;
    const local = ref & LOCAL_MASK;
    // The tail beyond frameCount: its pieces' buddies are all inside the run, so none merges.
    this.#releaseRange(chunk, local + frameCount, local + (1 << order), false);
    return ref;
  }

  /**
   * Gives back the run of `frameCount` frames at `ref` (verified by the caller), merging buddies.
   *
   * @param ref The run's first frame.
   * @param frameCount Its frames.
   */
  freeRun(ref: number, frameCount: number): void {
    const chunk = ref >>> CHUNK_REF_SHIFT;
    const local = ref & LOCAL_MASK;
    const head = this.entry(ref);
    for (let i = 0; i < frameCount; i++) this.words[head + (i << 2) + E_TAG] = KIND_FREE_TAIL;
    this.#releaseRange(chunk, local, local + frameCount, true);
  }

  /** Frees [from, to) of `chunk` as maximal aligned blocks, merging them when `merge`. */
  #releaseRange(chunk: number, from: number, to: number, merge: boolean): void {
    let local = from;
    for (let step = 0; local < to && step <= 2 * ORDER_MAX + 2; step++) {
      let order = 0;
      while (
        order < ORDER_MAX && (local & ((2 << order) - 1)) === 0 && local + (2 << order) <= to
      ) order++;
      this.chunkFreeFrames[chunk] += 1 << order;
      this.freeFrames += 1 << order;
      if (merge) this.#freeBlock(chunk, local, order);
      else this.#pushFree((chunk << CHUNK_REF_SHIFT) | local, order);
      local += 1 << order;
    }
  }

  #freeBlock(chunk: number, startLocal: number, startOrder: number): void {
    const w = this.words;
    const frames = this.chunkFrames[chunk];
    const base = chunk << CHUNK_REF_SHIFT;
    let local = startLocal;
    let order = startOrder;
    while (order < ORDER_MAX) {
      const buddy = local ^ (1 << order);
      if (buddy + (1 << order) > frames) break;
      const e = this.entry(base | buddy);
      if (w[e + E_TAG] !== tag(KIND_FREE_HEAD, order, 0)) break;
      this.#unlink(base | buddy, order);
      w[e + E_TAG] = KIND_FREE_TAIL;
      if (buddy < local) local = buddy;
      order++;
    }
    this.#pushFree(base | local, order);
  }

  #pushFree(ref: number, order: number): void {
    const w = this.words;
    const e = this.entry(ref);
    const old = this.heads[order];
    w[e + E_TAG] = tag(KIND_FREE_HEAD, order, 0);
    w[e + E_NEXT] = old;
    w[e + E_PREV] = NONE;
    w[e + E_AUX] = 0;
    if (old !== NONE) w[this.entry(old) + E_PREV] = ref;
    this.heads[order] = ref;
    this.freeBlocks[order]++;
  }

  #unlink(ref: number, order: number): void {
    const w = this.words;
    const e = this.entry(ref);
    const next = w[e + E_NEXT];
    const prev = w[e + E_PREV];
    if (prev === NONE) this.heads[order] = next;
    else w[this.entry(prev) + E_NEXT] = next;
    if (next !== NONE) w[this.entry(next) + E_PREV] = prev;
    this.freeBlocks[order]--;
  }

  /** Takes a free block of `order` (splitting a larger one), or NONE. */
  #takeBlock(order: number): number {
    let found = order;
    while (found <= ORDER_MAX && this.heads[found] === NONE) found++;
    if (found > ORDER_MAX) return NONE;
    const ref = this.heads[found];
    this.#unlink(ref, found);
    const chunk = ref >>> CHUNK_REF_SHIFT;
    this.chunkFreeFrames[chunk] -= 1 << found;
    this.freeFrames -= 1 << found;
    while (found > order) {
      found--;
      // The upper half goes back as a free block; its frames are FREE_TAIL already.
      this.#pushFree(ref + (1 << found), found);
      this.chunkFreeFrames[chunk] += 1 << found;
      this.freeFrames += 1 << found;
    }
    return ref;
  }

  /**
   * Makes a free block of `order` available: grows the first chunk (by id)
   * whose block is followed by a free block large enough, else takes a new
   * chunk from the block heap.
   */
  #grow(order: number): boolean {
    const dir = this.directory;
    const run = 1 << order;
    for (let id = 0; id < dir.idLimit; id++) {
      if (dir.startOffset[id] === -1) continue;
      const frames = this.chunkFrames[id];
      // The new frames must hold an aligned run of 2^order frames.
      const least = alignUp(frames, run) + run;
      if (least > CHUNK_FRAMES_MAX) continue;
      const step = Math.min(CHUNK_FRAMES_MAX, Math.max(least, frames + CHUNK_GROW_FRAMES));
      if (this.#growChunk(id, step) || (step > least && this.#growChunk(id, least))) return true;
    }
    return this.#addNewChunk(run);
  }

  /** Grows chunk `id` in place to `frameCount` frames, moving its frame table up; false if it cannot. */
  #growChunk(id: number, frameCount: number): boolean {
    const dir = this.directory;
    const start = dir.startOffset[id];
    const oldFrames = this.chunkFrames[id];
    const oldBytes = dir.endOffset[id] - start;
    const newBytes = frameCount * FRAME_BYTES + chunkMetaBytes(frameCount);
    if (!this.#source.growInPlace(this.baseAddress + start, oldBytes, newBytes)) return false;
    const oldTable = this.chunkTableWord[id];
    const newTable = (start + frameCount * FRAME_BYTES) >> 2;
    this.words.copyWithin(newTable, oldTable, oldTable + (chunkMetaBytes(oldFrames) >> 2));
    this.words.fill(0, newTable + (oldFrames << 2), newTable + (frameCount << 2));
    for (let i = oldFrames; i < frameCount; i++) {
      this.words[newTable + (i << 2) + E_TAG] = KIND_FREE_TAIL;
    }
    this.chunkTableWord[id] = newTable;
    this.chunkFrames[id] = frameCount;
    this.totalFrames += frameCount - oldFrames;
    this.metaBytes += chunkMetaBytes(frameCount) - chunkMetaBytes(oldFrames);
    dir.remove(id);
    dir.add(id, start, start + newBytes);
    this.chunksGrown++;
    this.#releaseRange(id, oldFrames, frameCount, true);
    return true;
  }

  /** Takes a new chunk of at least `minFrames` frames from the block heap; false when none fits. */
  #addNewChunk(minFrames: number): boolean {
    const wanted = Math.max(minFrames, CHUNK_FRAMES_MIN);
    if (this.#addChunk(wanted)) return true;
    // A smaller chunk: half of what the largest free block could hold, so
    // that blocks are not starved, and never fewer frames than asked for.
    const largest = this.#source.largestFreeBytes();
    const fit = Math.floor((largest - FRAME_BYTES) / (FRAME_BYTES + 16)) - 1;
    const half = Math.min(CHUNK_FRAMES_MAX, Math.max(minFrames, fit >> 1));
    if (half >= minFrames && half < wanted && this.#addChunk(half)) return true;
    return minFrames < half && this.#addChunk(minFrames);
  }

  #addChunk(frameCount: number): boolean {
    const id = this.directory.freeId();
    if (id === NONE) return false;
    const meta = chunkMetaBytes(frameCount);
    const payload = this.#source.take(frameCount * FRAME_BYTES + meta);
    if (payload === 0) return false;
    const start = payload - this.baseAddress;
    const end = start + frameCount * FRAME_BYTES + meta;
    this.directory.add(id, start, end);
    this.chunkFrames[id] = frameCount;
    this.chunkFreeFrames[id] = 0;
    this.chunkTableWord[id] = (start + frameCount * FRAME_BYTES) >> 2;
    this.totalFrames += frameCount;
    this.metaBytes += meta;
    this.chunksTaken++;
    const table = this.chunkTableWord[id];
    this.words.fill(0, table, table + (meta >> 2));
    for (let i = 0; i < frameCount; i++) this.words[table + (i << 2) + E_TAG] = KIND_FREE_TAIL;
    this.#releaseRange(id, 0, frameCount, false);
    return true;
  }

  /**
   * Gives wholly free chunks back to the block heap, keeping `keep` of them.
   *
   * @param keep How many wholly free chunks to keep as a reserve.
   */
  trim(keep: number): void {
    let kept = 0;
    const dir = this.directory;
    for (let id = 0; id < dir.idLimit; id++) {
      if (dir.startOffset[id] === -1 || this.chunkFreeFrames[id] !== this.chunkFrames[id]) continue;
      if (kept < keep) {
        kept++;
        continue;
      }
      this.#removeChunk(id);
    }
  }

  /** True when a free block can hold a run of `frameCount` frames now, without a new chunk. */
  hasFreeBlock(frameCount: number): boolean {
    for (let order = orderFor(frameCount); order <= ORDER_MAX; order++) {
      if (this.heads[order] !== NONE) return true;
    }
    return false;
  }

  /** True when some chunk is wholly free. */
  hasFreeChunk(): boolean {
    const dir = this.directory;
    for (let id = 0; id < dir.idLimit; id++) {
      if (dir.startOffset[id] !== -1 && this.chunkFreeFrames[id] === this.chunkFrames[id]) {
        return true;
      }
    }
    return false;
  }

  #removeChunk(id: number): void {
    const frames = this.chunkFrames[id];
    let local = 0;
    for (let step = 0; local < frames && step <= ORDER_MAX + 1; step++) {
      const order = tagOrder(this.words[this.entry((id << CHUNK_REF_SHIFT) | local) + E_TAG]);
      this.#unlink((id << CHUNK_REF_SHIFT) | local, order);
      local += 1 << order;
    }
    const payload = this.baseAddress + this.directory.startOffset[id];
    const payloadBytes = this.directory.endOffset[id] - this.directory.startOffset[id];
    this.totalFrames -= frames;
    this.freeFrames -= frames;
    this.metaBytes -= chunkMetaBytes(frames);
    this.chunkFrames[id] = 0;
    this.chunkFreeFrames[id] = 0;
    this.directory.remove(id);
    this.#source.give(payload, payloadBytes);
  }

  /**
   * Proves every chunk's frame table and every free list consistent.
   *
   * @throws {HeapCorruptionError} Naming the frame and the broken invariant.
   */
  check(): void {
    const counted = new Int32Array(ORDER_MAX + 1);
    let freeFrames = 0;
    const dir = this.directory;
    for (let id = 0; id < dir.idLimit; id++) {
      if (dir.startOffset[id] === -1) continue;
      const chunkFree = this.#checkChunk(id, counted);
      this.#assert(
        chunkFree === this.chunkFreeFrames[id],
        id << CHUNK_REF_SHIFT,
        "chunk free count",
      );
      freeFrames += chunkFree;
    }
    this.#assert(freeFrames === this.freeFrames, NONE, "free frame total differs from the tables");
    for (let order = 0; order <= ORDER_MAX; order++) {
      let ref = this.heads[order];
      let prev = NONE;
      let n = 0;
      for (; ref !== NONE && n <= this.totalFrames; n++) {
        this.#assert(dir.startOffset[ref >>> CHUNK_REF_SHIFT] !== -1, ref, "list link to no chunk");
        const e = this.entry(ref);
        this.#assert(
          this.words[e + E_TAG] === tag(KIND_FREE_HEAD, order, 0),
          ref,
          "listed frame is not a free head of its order",
        );
        this.#assert(this.words[e + E_PREV] === prev, ref, "free list back link");
        prev = ref;
        ref = this.words[e + E_NEXT];
      }
      this.#assert(
        n === counted[order] && n === this.freeBlocks[order],
        this.heads[order],
        `order ${order} list holds ${n} blocks, tables ${counted[order]}`,
      );
    }
  }

  /** Walks one chunk's table; returns its free frames and counts its free blocks per order. */
  #checkChunk(id: number, counted: Int32Array): number {
    const w = this.words;
    const frames = this.chunkFrames[id];
    let free = 0;
    let local = 0;
    for (let step = 0; local < frames && step < frames; step++) {
      const ref = (id << CHUNK_REF_SHIFT) | local;
      const t = w[this.entry(ref) + E_TAG];
      const kind = t & KIND_MASK;
      const order = tagOrder(t);
      let count: number;
      let tailKind: number;
      if (kind === KIND_FREE_HEAD) {
        count = 1 << order;
        tailKind = KIND_FREE_TAIL;
        this.#assert((local & (count - 1)) === 0, ref, "free block not aligned to its order");
        const buddy = local ^ count;
        this.#assert(
          order === ORDER_MAX || buddy + count > frames ||
            w[this.entry((id << CHUNK_REF_SHIFT) | buddy) + E_TAG] !== t,
          ref,
          "two free buddies not merged",
        );
        counted[order]++;
        free += count;
      } else if (kind === KIND_PAGES_HEAD || kind === KIND_SLAB_HEAD) {
        count = kind === KIND_PAGES_HEAD ? w[this.entry(ref) + E_AUX] : 1 << order;
        tailKind = kind === KIND_PAGES_HEAD ? KIND_PAGES_TAIL : KIND_SLAB_TAIL;
        this.#assert(
          count >= 1 && count <= 1 << order && (local & ((1 << order) - 1)) === 0,
          ref,
          "run size or alignment",
        );
      } else {
        this.#assert(false, ref, `frame of kind ${kind} where a head belongs`);
      }
      this.#assert(local + count <= frames, ref, "block runs past its chunk");
      for (let i = 1; i < count; i++) {
        const e = this.entry(ref + i);
        this.#assert(w[e + E_TAG] === tailKind, ref + i, "tail frame of the wrong kind");
        this.#assert(
          tailKind === KIND_FREE_TAIL || w[e + E_NEXT] === ref,
          ref + i,
          "tail names another head",
        );
      }
      local += count;
    }
    return free;
  }

  /** Address of frame `ref` (for messages). */
  address(ref: number): number {
    return this.baseAddress + this.offsetOf(ref);
  }

  #assert(condition: boolean, ref: number, invariant: string): asserts condition {
    if (condition) return;
    const address = ref >= 0 && this.directory.startOffset[ref >>> CHUNK_REF_SHIFT] !== -1
      ? this.address(ref)
      : 0;
    throw new HeapCorruptionError(
      address,
      `Heap corruption at frame ${hex(address)}: ${invariant}`,
    );
  }

  /**
   * Copies the shared words into the fields. The fields are this Worker's
   * copy of the layer state while it holds a shared heap's lock (as
   * HeapCounters are the block books'): loaded when another Worker changed
   * the state since, stored before the lock is released. An unshared heap's
   * fields are the state itself (plain fields keep its hot paths fast).
   */
  loadShared(): void {
    const r = this.#scalars;
    this.totalFrames = r[FRAMES_TOTAL_WORD];
    this.freeFrames = r[FRAMES_FREE_WORD];
    this.metaBytes = r[FRAMES_META_BYTES_WORD];
    this.chunksTaken = r[FRAMES_CHUNKS_TAKEN_WORD];
    this.chunksGrown = r[FRAMES_CHUNKS_GROWN_WORD];
  }

  /** Copies the fields into the shared words (a shared heap's Worker, before it releases the lock). */
  storeShared(): void {
    const r = this.#scalars;
    r[FRAMES_TOTAL_WORD] = this.totalFrames;
    r[FRAMES_FREE_WORD] = this.freeFrames;
    r[FRAMES_META_BYTES_WORD] = this.metaBytes;
    r[FRAMES_CHUNKS_TAKEN_WORD] = this.chunksTaken;
    r[FRAMES_CHUNKS_GROWN_WORD] = this.chunksGrown;
  }
}
