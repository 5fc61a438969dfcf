/**
 * A replay target whose allocator does nothing: `tryAlloc` hands out the
 * next multiple of 16 from a counter, `free` ignores its address, `realloc`
 * keeps it. Its replay loop is the project's target's (`target_physical.ts`)
 * line for line, so timing it gives the harness's own cost per operation:
 * what the trace's arrays, the slot table and the branches cost before any
 * allocator runs. It is a measuring stick only (no memory: `view` refuses).
 *
 * @module
 */

import { type DecodedTrace, REPLAY_ALLOC, REPLAY_FREE, REPLAY_REALLOC } from "./decode.ts";
import type { ReplayHeap, ReplayTarget } from "./replay_heap.ts";

/**
 * The no-op replay target.
 *
 * @returns The target, named `noop`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeTrace } from "./decode.ts";
 * import { parseRep } from "./rep_format.ts";
 * import { noopTarget } from "./target_noop.ts";
 *
 * const trace = decodeTrace(parseRep("0\n1\n2\n1\na 0 100\nf 0\n"), "two");
 * const heap = noopTarget().create(trace, 0);
 * assert.equal(heap.run(trace), 0);
 * heap.close();
 * ```
 */
export function noopTarget(): ReplayTarget {
  return {
    name: "noop",
    own: false,
    headerBytesPerBlock: 0,
    create(trace: DecodedTrace): ReplayHeap {
      return new NoopHeap(trace.slotCount);
    },
  };
}

/** The allocator a no-op heap calls: the same method names as PhysicalAllocator's. */
class NoopAllocator {
  #next = 16;

  tryAlloc(sizeBytes: number): number {
    const address = this.#next;
    this.#next += 16 + (sizeBytes & 0);
    return address;
  }

  free(_address: number): void {}

  realloc(address: number, _sizeBytes: number): number {
    return address;
  }
}

class NoopHeap implements ReplayHeap {
  readonly baseAddress = 16;
  readonly #allocator = new NoopAllocator();
  readonly #slots: Float64Array;

  constructor(slotCount: number) {
    this.#slots = new Float64Array(slotCount);
  }

  alloc(sizeBytes: number): number {
    return this.#allocator.tryAlloc(sizeBytes);
  }

  free(address: number): void {
    this.#allocator.free(address);
  }

  realloc(address: number, sizeBytes: number): number {
    return this.#allocator.realloc(address, sizeBytes);
  }

  view(): Uint8Array {
    throw new Error("The no-op target has no memory to view");
  }

  blockEnd(address: number): number {
    return address;
  }

  check(): void {}

  /** target_physical.ts's replay loop, calling the no-op allocator. */
  run(trace: DecodedTrace): number {
    const allocator = this.#allocator;
    const slots = this.#slots;
    const { kinds, ids, sizesBytes, opCount } = trace;
    let failed = 0;
    for (let i = 0; i < opCount; i++) {
      const kind = kinds[i];
      const id = ids[i];
      if (kind === REPLAY_ALLOC) {
        const size = sizesBytes[i];
        const address = allocator.tryAlloc(size > 0 ? size : 1);
        if (address === 0) failed++;
        slots[id] = address;
      } else if (kind === REPLAY_FREE) {
        const address = slots[id];
        if (address !== 0) allocator.free(address);
        slots[id] = 0;
      } else if (kind === REPLAY_REALLOC) {
        const address = slots[id];
        const size = sizesBytes[i];
        if (address === 0) {
          slots[id] = allocator.tryAlloc(size > 0 ? size : 1);
          if (slots[id] === 0) failed++;
          continue;
        }
        try {
          slots[id] = allocator.realloc(address, size > 0 ? size : 1);
        } catch {
          failed++;
        }
      }
    }
    return failed;
  }

  close(): void {}
}
