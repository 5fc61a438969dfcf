/**
 * Proves that an allocator never writes a byte outside its block areas and
 * its control block: gaps between regions, regions too small for a block,
 * unaligned region ends, slack in front of a region's first block, and the
 * bytes of the buffer in front of and behind the window (memory given as a
 * view at an offset).
 *
 * Made right after the allocator, it copies every such byte of the window's
 * buffer (so use it on buffer-backed test memory, not on a mapped window of
 * gigabytes); `verify()` compares them again and names the first one that changed.
 */
import assert from "#assert";
import { inspectHeap } from "../../allocator/heap/_inspect.ts";
import type { PhysicalAllocator } from "../../mod.ts";

/** A run of window bytes the allocator must never write, and their contents when made. */
interface Guarded {
  readonly offset: number;
  readonly copy: Uint8Array;
}

/** The bytes of a heap's window outside its block areas and control block. */
export class OutsideBytes {
  /** The whole buffer the window views. */
  readonly #buffer: Uint8Array;
  /** The address byte 0 of `#buffer` stands for (may be negative: bytes in front of the window). */
  readonly #bufferAddress: number;
  readonly #guarded: Guarded[] = [];

  /**
   * Copies the bytes to guard.
   *
   * @param heap A freshly made allocator.
   */
  constructor(heap: PhysicalAllocator) {
    const internals = inspectHeap(heap);
    const window = internals.window;
    this.#buffer = new Uint8Array(window.buffer);
    this.#bufferAddress = internals.baseAddress - window.byteOffset;
    const owned: [number, number][] = [];
    for (const region of internals.layout.regions) {
      if (!region.skipped) owned.push([region.blockStart, region.blockEnd]);
    }
    const control = internals.layout.controlAddress;
    if (control !== 0) owned.push([control, control + internals.controlBytes]);
    owned.sort((a, b) => a[0] - b[0]);
    let cursor = this.#bufferAddress;
    const end = this.#bufferAddress + this.#buffer.byteLength;
    for (const [start, stop] of owned) {
      if (start > cursor) this.#guard(cursor, start);
      cursor = Math.max(cursor, stop);
    }
    if (end > cursor) this.#guard(cursor, end);
  }

  /** The number of guarded bytes. */
  get guardedBytes(): number {
    return this.#guarded.reduce((sum, g) => sum + g.copy.length, 0);
  }

  #guard(start: number, end: number): void {
    const offset = start - this.#bufferAddress;
    this.#guarded.push({ offset, copy: this.#buffer.slice(offset, end - this.#bufferAddress) });
  }

  /** Asserts every guarded byte still holds what it held when the heap was made. */
  verify(): void {
    const buffer = this.#buffer;
    for (const { offset, copy } of this.#guarded) {
      for (let i = 0; i < copy.length; i++) {
        if (buffer[offset + i] !== copy[i]) {
          assert.fail(
            `the allocator wrote the byte at address ${
              this.#bufferAddress + offset + i
            } outside its block areas (was ${copy[i]}, now ${buffer[offset + i]})`,
          );
        }
      }
    }
  }
}
