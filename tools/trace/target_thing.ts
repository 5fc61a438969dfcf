/**
 * `@thi.ng/malloc`'s `MemPool` (a TypeScript allocator over an ArrayBuffer)
 * as a replay target, with its defaults (8-byte alignment, splitting and
 * compaction on). Its block header is 8 bytes (size, next) just before the
 * payload, so the footprint reads the block size there.
 *
 * @module
 */

import { MemPool } from "@thi.ng/malloc";
import { type DecodedTrace, REPLAY_ALLOC, REPLAY_FREE, REPLAY_REALLOC } from "./decode.ts";
import type { ReplayHeap, ReplayTarget } from "./replay_heap.ts";

/** `@thi.ng/malloc`'s block header: u32 size, u32 next. */
const THING_HEADER_BYTES = 8;

/**
 * The `@thi.ng/malloc` replay target.
 *
 * @returns The target, named `@thi.ng/malloc`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeTrace } from "./decode.ts";
 * import { parseRep } from "./rep_format.ts";
 * import { thingTarget } from "./target_thing.ts";
 *
 * const trace = decodeTrace(parseRep("0\n1\n2\n1\na 0 100\nf 0\n"), "two");
 * const heap = thingTarget().create(trace, 1 << 16);
 * assert.equal(heap.run(trace), 0);
 * heap.close();
 * ```
 */
export function thingTarget(): ReplayTarget {
  // One buffer for every heap of the same size, so each repetition runs on
  // pages touched before; a fresh pool over it starts from zeroed bytes.
  let kept: ArrayBuffer | null = null;
  return {
    name: "@thi.ng/malloc",
    own: false,
    headerBytesPerBlock: THING_HEADER_BYTES,
    create(trace: DecodedTrace, heapBytes: number): ReplayHeap {
      const lengthBytes = Math.ceil(heapBytes / 8) * 8;
      if (kept?.byteLength !== lengthBytes) kept = new ArrayBuffer(lengthBytes);
      new Uint8Array(kept).fill(0);
      return new ThingHeap(new MemPool({ buf: kept }), trace.slotCount);
    },
  };
}

class ThingHeap implements ReplayHeap {
  readonly baseAddress: number;
  readonly #pool: MemPool;
  readonly #words: Uint32Array;
  readonly #bytes: Uint8Array;
  readonly #slots: Float64Array;

  constructor(pool: MemPool, slotCount: number) {
    this.#pool = pool;
    // The pool is made without a `start` option, so it manages the buffer from byte 0.
    this.baseAddress = 0;
    this.#words = new Uint32Array(pool.buf);
    this.#bytes = new Uint8Array(pool.buf);
    this.#slots = new Float64Array(slotCount);
  }

  alloc(sizeBytes: number): number {
    return this.#pool.malloc(sizeBytes);
  }

  free(address: number): void {
    this.#pool.free(address);
  }

  realloc(address: number, sizeBytes: number): number {
    return this.#pool.realloc(address, sizeBytes);
  }

  view(address: number, lengthBytes: number): Uint8Array {
    return this.#bytes.subarray(address, address + lengthBytes);
  }

  blockEnd(address: number): number {
    const block = address - THING_HEADER_BYTES;
    return block + this.#words[block >>> 2];
  }

  check(): void {}

  run(trace: DecodedTrace): number {
    const pool = this.#pool;
    const slots = this.#slots;
    const { kinds, ids, sizesBytes, opCount } = trace;
    let failed = 0;
    for (let i = 0; i < opCount; i++) {
      const kind = kinds[i];
      const id = ids[i];
      if (kind === REPLAY_ALLOC) {
        const size = sizesBytes[i];
        const address = pool.malloc(size > 0 ? size : 1);
        if (address === 0) failed++;
        slots[id] = address;
      } else if (kind === REPLAY_FREE) {
        const address = slots[id];
        if (address !== 0) pool.free(address);
        slots[id] = 0;
      } else if (kind === REPLAY_REALLOC) {
        const address = slots[id];
        const size = sizesBytes[i];
        const moved = address === 0
          ? pool.malloc(size > 0 ? size : 1)
          : pool.realloc(address, size > 0 ? size : 1);
        if (moved === 0) failed++;
        else slots[id] = moved;
      }
    }
    return failed;
  }

  close(): void {}
}
