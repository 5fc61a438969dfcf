/**
 * The project's {@linkcode PhysicalAllocator} as a replay target, on a
 * chosen policy, path (TypeScript or native) and backend (an ArrayBuffer,
 * or identity-mapped memory from `mapIdentity`).
 *
 * The footprint reads the block size from the header just before a payload
 * (the `allocator/heap/layout.ts` byte contract), so it counts whole blocks.
 *
 * @module
 */

import {
  bufferMemory,
  mapIdentity,
  OutOfMemoryError,
  PhysicalAllocator,
  type PhysicalMemory,
  type PolicyName,
} from "../../mod.ts";
import {
  FLAGS_MASK,
  HEADER_BYTES,
  HEADER_SIZE_HI_OFFSET,
  HEADER_SIZE_LO_OFFSET,
} from "../../allocator/heap/layout.ts";
import { type DecodedTrace, REPLAY_ALLOC, REPLAY_FREE, REPLAY_REALLOC } from "./decode.ts";
import type { ReplayHeap, ReplayTarget } from "./replay_heap.ts";

/** Where a replayed heap's memory comes from. */
export type BackendName = "buffer" | "identity";

/** Options of {@linkcode physicalTarget}. */
export interface PhysicalTargetOptions {
  /** The placement policy. @default {"tlsf"} */
  readonly policy?: PolicyName;
  /** The search path: TypeScript only (`false`), native required (`true`) or `"auto"`. @default {false} */
  readonly native?: boolean | "auto";
  /** The memory backend. @default {"buffer"} */
  readonly backend?: BackendName;
  /** Whether the page-frame and slab layers serve the heap (`false`: blocks alone). @default {true} */
  readonly layers?: boolean;
}

/** Buffer heaps start at this address, as `PhysicalAllocator.fromBuffer` does. */
const BUFFER_BASE_ADDRESS = 0x1000;
/** Identity heaps are mapped at 64 GiB, far from anything Deno maps. */
const IDENTITY_BASE_ADDRESS = 0x10_0000_0000;
const PAGE_BYTES = 4096;

/**
 * Makes a replay target for the project's allocator.
 *
 * @param options Policy, path and backend.
 * @returns A target named like `tlsf`, `first-fit/native` or `tlsf/identity`.
 *
 * @example Replaying one allocation
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeTrace } from "./decode.ts";
 * import { parseRep } from "./rep_format.ts";
 * import { physicalTarget } from "./target_physical.ts";
 *
 * const trace = decodeTrace(parseRep("0\n1\n1\n1\na 0 100\n"), "one");
 * const heap = physicalTarget({ policy: "first-fit" }).create(trace, 1 << 16);
 * assert.equal(heap.run(trace), 0);
 * heap.check();
 * heap.close();
 * ```
 */
export function physicalTarget(options: PhysicalTargetOptions = {}): ReplayTarget {
  const policy = options.policy ?? "tlsf";
  const native = options.native ?? false;
  const backend = options.backend ?? "buffer";
  const layers = options.layers ?? true;
  const name = policy + (native === true ? "/native" : native === "auto" ? "/auto" : "") +
    (backend === "identity" ? "/identity" : "") + (layers ? "" : "/blocks");
  // One memory for every heap of the same size, kept across repetitions so
  // each one runs on pages touched before (a fresh buffer would time page
  // faults and cold caches, not the allocator). A heap in use is never shared.
  let kept: PhysicalMemory | null = null;
  let inUse = false;
  return {
    name,
    own: true,
    headerBytesPerBlock: HEADER_BYTES,
    create(trace: DecodedTrace, heapBytes: number): ReplayHeap {
      const lengthBytes = Math.ceil(heapBytes / PAGE_BYTES) * PAGE_BYTES;
      const makeMemory = () =>
        backend === "identity"
          ? mapIdentity([{ start: IDENTITY_BASE_ADDRESS, length: lengthBytes }])
          : bufferMemory([{ start: BUFFER_BASE_ADDRESS, length: lengthBytes }]);
      const reuse = !inUse;
      if (reuse && kept?.regions[0].bytes.length !== lengthBytes) {
        kept?.close?.();
        kept = makeMemory();
      }
      const memory = reuse ? kept! : makeMemory();
      // Every heap starts from the same bytes; on a kept memory this also keeps its pages touched.
      memory.regions[0].bytes.fill(0);
      // The allocator gets the regions without `close`: closing the heap must not release kept memory.
      const allocator = new PhysicalAllocator({ regions: memory.regions }, {
        policy,
        native,
        layers,
      });
      inUse ||= reuse;
      const release = reuse ? () => (inUse = false) : () => memory.close?.();
      return new PhysicalHeap(allocator, memory, trace.slotCount, release);
    },
  };
}

class PhysicalHeap implements ReplayHeap {
  readonly baseAddress: number;
  readonly nativeActive: boolean;
  readonly #allocator: PhysicalAllocator;
  readonly #words: Uint32Array;
  readonly #windowBase: number;
  readonly #slots: Float64Array;
  readonly #release: () => void;

  constructor(
    allocator: PhysicalAllocator,
    memory: PhysicalMemory,
    slotCount: number,
    release: () => void,
  ) {
    const region = memory.regions[0];
    this.#release = release;
    this.#allocator = allocator;
    this.nativeActive = allocator.nativeActive;
    this.baseAddress = region.base;
    this.#windowBase = region.base - region.bytes.byteOffset;
    this.#words = new Uint32Array(region.bytes.buffer);
    this.#slots = new Float64Array(slotCount);
  }

  alloc(sizeBytes: number): number {
    return this.#allocator.tryAlloc(sizeBytes);
  }

  free(address: number): void {
    this.#allocator.free(address);
  }

  realloc(address: number, sizeBytes: number): number {
    try {
      return this.#allocator.realloc(address, sizeBytes);
    } catch (error) {
      if (error instanceof OutOfMemoryError) return 0;
      throw error;
    }
  }

  view(address: number, lengthBytes: number): Uint8Array {
    return this.#allocator.bytes(address, lengthBytes);
  }

  blockEnd(address: number): number {
    if (this.#allocator.layersActive) return address + this.#allocator.capacityOf(address);
    const block = address - HEADER_BYTES;
    const word = (block - this.#windowBase) >>> 2;
    const sizeLow = this.#words[word + HEADER_SIZE_LO_OFFSET / 4] & ~FLAGS_MASK;
    const sizeHigh = this.#words[word + HEADER_SIZE_HI_OFFSET / 4];
    return block + (sizeLow >>> 0) + sizeHigh * 2 ** 32;
  }

  check(): void {
    this.#allocator.check();
  }

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
        } catch (error) {
          if (!(error instanceof OutOfMemoryError)) throw error;
          failed++;
        }
      }
    }
    return failed;
  }

  close(): void {
    this.#allocator.close();
    this.#release();
  }
}
