/**
 * Debug mode (`debug: true`): guard bytes after every payload and poison in
 * every free block, so payload overflows and writes after free are caught at
 * the next `free`, `realloc`, allocation of the same memory or `check()`.
 *
 * ```text
 * used block   ┌ header 16 ┬ payload (the size asked for) ┬ guard: GUARD_BYTE × slack ┐
 * free block   ┌ header 16 ┬ next 8 ┬ prev 8 ┬ POISON_BYTE … POISON_BYTE ┬ footer 8 ┐
 *                                            └──── the poisoned body ────┘
 * ```
 *
 * Guard: an allocation asks the carving for `sizeBytes + GUARD_BYTES_MIN`
 * but records `sizeBytes` as its size, so the block's slack word (capacity
 * past the size asked for, see layout.ts) is at least GUARD_BYTES_MIN, and
 * every slack byte holds GUARD_BYTE. No extra header field is needed: the
 * guard is exactly the slack. `stats()` counts guard bytes as overhead
 * (slack is overhead), so `total = free + used + overhead + skipped` stays
 * exact and `usedBytes` still sums the sizes asked for.
 *
 * Poison: the body of every free block (all but its header, its two list
 * links and its footer) holds POISON_BYTE. Writes to those bytes after a
 * free are found when the memory is handed out again (the part about to be
 * carved is verified) or by `check()` (every body is verified). A write to
 * the first 16 bytes of a freed payload lands on the list links instead and
 * is found by `check()`'s list walk, not here.
 *
 * Tombstones: when a freed block merges into a free predecessor, free()
 * leaves a tombstone header (size 0, FLAG_FREE) at it so that a second free
 * is reported as a double free. Debug mode poisons the tombstone too (later
 * carves can cut a tombstone in half, and a half tombstone cannot be told
 * from a write after free), and the allocator instead reports a free of an
 * address inside a free block as a double free in debug mode: every byte
 * there is poison, so the address was freed already (or never allocated).
 *
 * Cost: every byte of managed memory is written once at construction (the
 * first poison), so debug mode touches all pages of identity-mapped memory;
 * an allocation verifies the poison of the bytes it takes and a free writes
 * poison over the bytes it gives back, O(size) each; `check()` verifies every
 * free byte. `bench/debug_bench.ts` measures it.
 *
 * The poison invariant is kept incrementally: a free poisons only the bytes
 * that joined a free body (the freed block, the footer of a free
 * predecessor, the header and links of a free successor), because the rest
 * of a merged body was poisoned already. So a free costs O(its size), not
 * O(the merged block).
 *
 * @module
 */

import { alignmentGap, type BlockWords, NarrowBlockWords } from "../block.ts";
import { HeapCorruptionError } from "../../errors.ts";
import {
  FOOTER_BYTES,
  FREE_NEXT_OFFSET,
  FREE_PREV_OFFSET,
  GRANULE_BYTES,
  HEADER_BYTES,
  MIN_BLOCK_BYTES,
} from "../layout.ts";
import { hex } from "../../memory/physical_memory.ts";
import type { RegionLayout } from "../regions.ts";

/**
 * Guard bytes every allocation gets at least, past its payload.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { PhysicalAllocator } from "@phys/allocator";
 * import { GUARD_BYTES_MIN } from "./debug_guard.ts";
 *
 * const heap = PhysicalAllocator.fromBuffer(new Uint8Array(4096), { debug: true });
 * const a = heap.alloc(24);
 * const block = [...heap.blocks()].find((b) => b.address === a - 16)!;
 * assert.ok(block.sizeBytes - 16 - 24 >= GUARD_BYTES_MIN);
 * ```
 */
export const GUARD_BYTES_MIN = 16;
/**
 * The byte every guard byte holds (MSVC's "no man's land" value).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { PhysicalAllocator } from "@phys/allocator";
 * import { GUARD_BYTE } from "./debug_guard.ts";
 *
 * const bytes = new Uint8Array(4096);
 * const heap = PhysicalAllocator.fromBuffer(bytes, { debug: true });
 * const a = heap.alloc(24);
 * assert.equal(bytes[a - 0x1000 + 24], GUARD_BYTE);
 * ```
 */
export const GUARD_BYTE = 0xfd;
/**
 * The byte every byte of a free block's body holds (MSVC's "dead" value).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { PhysicalAllocator } from "@phys/allocator";
 * import { POISON_BYTE } from "./debug_guard.ts";
 *
 * const bytes = new Uint8Array(4096);
 * const heap = PhysicalAllocator.fromBuffer(bytes, { debug: true });
 * const a = heap.alloc(64);
 * heap.alloc(8);
 * heap.free(a);
 * assert.equal(bytes[a - 0x1000 + 40], POISON_BYTE);
 * ```
 */
export const POISON_BYTE = 0xdd;
/** Offset of a free block's body: after the header and the two links. */
const BODY_OFFSET = FREE_PREV_OFFSET + 8;

/**
 * Writes and verifies guard bytes and poison in the memory window.
 *
 * @example Catching a payload overflow at free
 * ```ts
 * import assert from "node:assert/strict";
 * import { PhysicalAllocator } from "@phys/allocator";
 *
 * const heap = PhysicalAllocator.fromBuffer(new Uint8Array(4096), { debug: true });
 * const a = heap.alloc(10);
 * new Uint8Array(heap.bytes(a).buffer)[a - 0x1000 + 10] = 0; // one byte past the payload
 * assert.throws(() => heap.free(a), { code: "HEAP_CORRUPTION" });
 * ```
 */
export class DebugGuard {
  readonly #blocks: BlockWords;
  readonly #bytes: Uint8Array;

  /**
   * Creates the guard over the allocator's window.
   *
   * @param blocks Access to headers in the window.
   * @param window The window's bytes (byte 0 is `blocks.baseAddress`).
   */
  constructor(blocks: BlockWords, window: Uint8Array) {
    this.#blocks = blocks;
    this.#bytes = window;
  }

  /**
   * Fills the slack of the used block `block` with the guard pattern.
   *
   * @param block A used block whose header is written.
   */
  armUsed(block: number): void {
    const end = block + this.#blocks.size(block);
    const base = this.#blocks.baseAddress;
    this.#bytes.fill(GUARD_BYTE, end - this.#blocks.slack(block) - base, end - base);
  }

  /**
   * Verifies the guard of the used block `block`.
   *
   * @param block A used block with a valid header.
   * @param operation The call, for the message: `"free"`, `"reallocate"`, `"check"`.
   * @throws {HeapCorruptionError} Naming the payload address and the first damaged byte.
   */
  verifyUsed(block: number, operation: string): void {
    const blocks = this.#blocks;
    const end = block + blocks.size(block);
    const guardStart = end - blocks.slack(block);
    const damaged = this.#firstMismatch(guardStart, end, GUARD_BYTE);
    if (damaged < 0) return;
    const payload = block + HEADER_BYTES;
    throw new HeapCorruptionError(
      block,
      `Cannot ${operation} address ${hex(payload)}: the guard after its ${
        guardStart - payload
      }-byte payload is damaged at payload offset ${damaged - payload} (${hex(damaged)}): found 0x${
        this.#byteAt(damaged).toString(16)
      }, expected 0x${GUARD_BYTE.toString(16)} (a payload overflow)`,
    );
  }

  /**
   * Poisons the part of the free block `block`'s body inside `[from, to)`.
   *
   * @param block A free block whose header is written.
   * @param from First address to poison (clamped to the body).
   * @param to End of the range (clamped to the body).
   */
  poisonFree(block: number, from: number, to: number): void {
    const [start, end] = this.#body(block, from, to);
    if (start >= end) return;
    const base = this.#blocks.baseAddress;
    this.#bytes.fill(POISON_BYTE, start - base, end - base);
  }

  /**
   * Poisons what a free of the block at `freed` (of `sizeBytes`) added to
   * the body of the free block `merged` it became part of: the freed block
   * (including the tombstone free() leaves there when it merged into a free
   * predecessor), a predecessor's footer and a successor's header and links.
   *
   * @param merged The free block after coalescing.
   * @param freed The block that was freed.
   * @param sizeBytes Its size.
   */
  poisonFreed(merged: number, freed: number, sizeBytes: number): void {
    this.poisonFree(merged, freed - FOOTER_BYTES, freed + sizeBytes + BODY_OFFSET);
  }

  /**
   * Verifies the poison in the part of the free block `block`'s body inside `[from, to)`.
   *
   * @param block A free block with a valid header.
   * @param from First address to verify (clamped to the body).
   * @param to End of the range (clamped to the body).
   * @param operation The call, for the message.
   * @throws {HeapCorruptionError} Naming the first byte written after it was freed.
   */
  verifyFree(block: number, from: number, to: number, operation: string): void {
    this.#verifyLinkHighWords(block, operation);
    const [start, end] = this.#body(block, from, to);
    const damaged = start < end ? this.#firstMismatch(start, end, POISON_BYTE) : -1;
    if (damaged >= 0) {
      throw new HeapCorruptionError(
        block,
        `Cannot ${operation}: freed memory at ${hex(damaged)} (in the free block at ${
          hex(block)
        }) was written after it was freed: found 0x${
          this.#byteAt(damaged).toString(16)
        }, expected 0x${POISON_BYTE.toString(16)}`,
      );
    }
  }

  /**
   * Below 2^31 a free block's links are written with high words of 0 and
   * never read there (NarrowBlockWords): bytes no poison covers, so a write
   * after free into them is looked for here.
   */
  #verifyLinkHighWords(block: number, operation: string): void {
    if (!(this.#blocks instanceof NarrowBlockWords)) return;
    for (const at of [block + FREE_NEXT_OFFSET + 4, block + FREE_PREV_OFFSET + 4]) {
      const word = this.#blocks.words[(at - this.#blocks.baseAddress) / 4];
      if (word === 0) continue;
      throw new HeapCorruptionError(
        block,
        `Cannot ${operation}: freed memory at ${hex(at)} (in the free block at ${
          hex(block)
        }) was written after it was freed: found 0x${
          word.toString(16)
        } in a link's high word, expected 0`,
      );
    }
  }

  /**
   * Verifies, before a free block is carved for a block of `blockSizeBytes`
   * aligned to `alignBytes`, the poison of every byte the new block can take.
   *
   * @throws {HeapCorruptionError} Naming the first byte written after it was freed.
   */
  verifyBeforeCarve(block: number, blockSizeBytes: number, alignBytes: number): void {
    const start = alignBytes <= GRANULE_BYTES ? block : block + alignmentGap(block, alignBytes);
    // Without a split the used block takes the whole rest, less than MIN_BLOCK_BYTES more.
    this.verifyFree(block, start, start + blockSizeBytes + MIN_BLOCK_BYTES, "allocate");
  }

  /**
   * After a realloc in place left `block` used with a new size: arms its
   * guard and poisons what the free block after it took over from the old
   * block (which ended at `oldEnd`) and from a free successor it merged with.
   */
  afterResize(block: number, oldEnd: number, regionEnd: number): void {
    this.armUsed(block);
    const next = block + this.#blocks.size(block);
    if (next < regionEnd && this.#blocks.isFree(next)) {
      this.poisonFree(next, next, oldEnd + BODY_OFFSET);
    }
  }

  /**
   * `check()` in debug mode: every used block's guard and every free block's poison.
   *
   * @param regions The usable regions, whose blocks `checkHeap` has proved well formed.
   * @throws {HeapCorruptionError} At the first damaged guard or poison byte.
   */
  verifyHeap(regions: readonly RegionLayout[]): void {
    const blocks = this.#blocks;
    for (const region of regions) {
      for (let block = region.blockStart; block < region.blockEnd; block += blocks.size(block)) {
        if (blocks.isFree(block)) {
          this.verifyFree(block, block, block + blocks.size(block), "check");
        } else this.verifyUsed(block, "check");
      }
    }
  }

  /** The body of the free block `block`, clamped to `[from, to)`. */
  #body(block: number, from: number, to: number): [number, number] {
    const end = block + this.#blocks.size(block) - FOOTER_BYTES;
    return [Math.max(from, block + BODY_OFFSET), Math.min(to, end)];
  }

  #byteAt(address: number): number {
    return this.#bytes[address - this.#blocks.baseAddress];
  }

  /** The first address in `[start, end)` whose byte is not `value`, or -1. */
  #firstMismatch(start: number, end: number, value: number): number {
    const bytes = this.#bytes;
    const base = this.#blocks.baseAddress;
    let i = start - base;
    const stop = end - base;
    // Word compares over the 4-aligned middle; the window starts at an 8-aligned address and a byte offset that is a multiple of 4.
    const word = Math.imul(value, 0x01010101) >>> 0;
    for (; i < stop && (i & 3) !== 0; i++) if (bytes[i] !== value) return i + base;
    const wordStop = stop - (stop & 3);
    if (i < wordStop) {
      const words = new Uint32Array(bytes.buffer, bytes.byteOffset + i, (wordStop - i) >>> 2);
      for (let w = 0; w < words.length; w++) {
        if (words[w] !== word) {
          i += w * 4;
          while (bytes[i] === value) i++;
          return i + base;
        }
      }
      i = wordStop;
    }
    for (; i < stop; i++) if (bytes[i] !== value) return i + base;
    return -1;
  }
}
