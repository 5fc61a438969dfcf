/**
 * C allocators called through Deno FFI as replay targets: glibc's `malloc`,
 * `free` and `realloc` (what a Deno program gets when it asks the C
 * library), and mimalloc's `mi_malloc`, `mi_free` and `mi_realloc` (Debian's
 * `libmimalloc2.0`). jemalloc (`libjemalloc2`) cannot be one: its
 * initial-exec TLS makes `dlopen` fail with "cannot allocate memory in
 * static TLS block", and preloading it would replace Deno's own malloc.
 *
 * The binding takes and returns `"pointer"`: in Deno 2 a `"usize"` or
 * `"u64"` result is always a BigInt, which measured slower here (3.6 M
 * malloc+free per second against 4.2 M for pointer objects), so the timed
 * loop keeps pointer objects in an array and never converts them. The
 * checked face converts to numbers for the verifying replay.
 *
 * A C allocator's blocks cannot be seen from outside and its heap is the
 * process's, not a fresh one, so `blockEnd` is NaN (no utilization score)
 * and `close` frees every block the replay left live.
 *
 * @module
 */

import { type DecodedTrace, REPLAY_ALLOC, REPLAY_FREE, REPLAY_REALLOC } from "./decode.ts";
import type { ReplayHeap, ReplayTarget } from "./replay_heap.ts";

/** The names of an allocator's three functions in its library. */
interface SymbolNames {
  readonly malloc: string;
  readonly free: string;
  readonly realloc: string;
}

function symbolsOf(names: SymbolNames) {
  return {
    /** void *malloc(size_t size); */
    malloc: { name: names.malloc, parameters: ["usize"], result: "pointer" },
    /** void free(void *ptr); */
    free: { name: names.free, parameters: ["pointer"], result: "void" },
    /** void *realloc(void *ptr, size_t size); */
    realloc: { name: names.realloc, parameters: ["pointer", "usize"], result: "pointer" },
  } as const satisfies Deno.ForeignLibraryInterface;
}

/**
 * The symbols as called. Deno accepts a number for a `"usize"` parameter at
 * run time although its types ask for a BigInt; passing numbers keeps BigInt
 * off the hot path.
 */
interface Libc {
  malloc(sizeBytes: number): Deno.PointerValue;
  free(pointer: Deno.PointerValue): void;
  realloc(pointer: Deno.PointerValue, sizeBytes: number): Deno.PointerValue;
}

/** glibc's chunk header: the size word (the previous chunk's size overlaps its payload). */
const GLIBC_HEADER_BYTES = 8;
/** mimalloc keeps no per-block header (size classes live in page metadata). */
const MIMALLOC_HEADER_BYTES = 0;

/**
 * The glibc replay target; loads `libc.so.6` on first use.
 *
 * @param libraryPath The C library to load.
 * @returns The target, named `glibc`.
 * @throws {Deno.errors.NotCapable} From `create` if FFI is not allowed.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeTrace } from "./decode.ts";
 * import { parseRep } from "./rep_format.ts";
 * import { glibcTarget } from "./target_ffi.ts";
 *
 * const trace = decodeTrace(parseRep("0\n1\n2\n1\na 0 100\nr 0 300\n"), "two");
 * const heap = glibcTarget().create(trace, 0);
 * assert.equal(heap.run(trace), 0);
 * heap.close();
 * ```
 */
export function glibcTarget(libraryPath = "libc.so.6"): ReplayTarget {
  return ffiTarget(
    "glibc",
    libraryPath,
    { malloc: "malloc", free: "free", realloc: "realloc" },
    GLIBC_HEADER_BYTES,
  );
}

/**
 * The mimalloc replay target; loads `libmimalloc.so.2` on first use.
 *
 * @param libraryPath The mimalloc library to load.
 * @returns The target, named `mimalloc`.
 * @throws {Deno.errors.NotFound} From `create` if the library is not installed.
 *
 * @example Skipped where mimalloc is not installed
 * ```ts
 * import assert from "node:assert/strict";
 * import { mimallocTarget } from "./target_ffi.ts";
 *
 * assert.equal(mimallocTarget().name, "mimalloc");
 * ```
 */
export function mimallocTarget(libraryPath = "libmimalloc.so.2"): ReplayTarget {
  return ffiTarget(
    "mimalloc",
    libraryPath,
    { malloc: "mi_malloc", free: "mi_free", realloc: "mi_realloc" },
    MIMALLOC_HEADER_BYTES,
  );
}

function ffiTarget(
  name: string,
  libraryPath: string,
  names: SymbolNames,
  headerBytesPerBlock: number,
): ReplayTarget {
  let library: Libc | null = null;
  return {
    name,
    own: false,
    headerBytesPerBlock,
    create(trace: DecodedTrace): ReplayHeap {
      library ??= Deno.dlopen(libraryPath, symbolsOf(names)).symbols as unknown as Libc;
      return new FfiHeap(library, trace.slotCount);
    },
  };
}

class FfiHeap implements ReplayHeap {
  readonly baseAddress = 0;
  readonly #libc: Libc;
  readonly #slots: (Deno.PointerObject | null)[];
  /** Live blocks of the checked face, by address. */
  readonly #pointers = new Map<number, Deno.PointerObject>();

  constructor(libc: Libc, slotCount: number) {
    this.#libc = libc;
    this.#slots = new Array(slotCount).fill(null);
  }

  alloc(sizeBytes: number): number {
    return this.#keep(this.#libc.malloc(sizeBytes));
  }

  free(address: number): void {
    this.#libc.free(this.#take(address));
  }

  realloc(address: number, sizeBytes: number): number {
    const moved = this.#libc.realloc(this.#pointers.get(address) ?? null, sizeBytes);
    if (moved === null) return 0;
    this.#take(address);
    return this.#keep(moved);
  }

  view(address: number, lengthBytes: number): Uint8Array {
    const pointer = this.#pointers.get(address)!;
    return new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(pointer, lengthBytes));
  }

  blockEnd(): number {
    return NaN;
  }

  check(): void {}

  run(trace: DecodedTrace): number {
    const { malloc, free, realloc } = this.#libc;
    const slots = this.#slots;
    const { kinds, ids, sizesBytes, opCount } = trace;
    let failed = 0;
    for (let i = 0; i < opCount; i++) {
      const kind = kinds[i];
      const id = ids[i];
      if (kind === REPLAY_ALLOC) {
        const size = sizesBytes[i];
        const pointer = malloc(size > 0 ? size : 1);
        if (pointer === null) failed++;
        slots[id] = pointer;
      } else if (kind === REPLAY_FREE) {
        free(slots[id]);
        slots[id] = null;
      } else if (kind === REPLAY_REALLOC) {
        const size = sizesBytes[i];
        const moved = realloc(slots[id], size > 0 ? size : 1);
        if (moved === null) failed++;
        else slots[id] = moved;
      }
    }
    return failed;
  }

  close(): void {
    const free = this.#libc.free;
    for (let id = 0; id < this.#slots.length; id++) {
      if (this.#slots[id] !== null) free(this.#slots[id]);
      this.#slots[id] = null;
    }
    for (const pointer of this.#pointers.values()) free(pointer);
    this.#pointers.clear();
  }

  #keep(pointer: Deno.PointerValue): number {
    if (pointer === null) return 0;
    const address = Number(Deno.UnsafePointer.value(pointer));
    this.#pointers.set(address, pointer);
    return address;
  }

  #take(address: number): Deno.PointerValue {
    const pointer = this.#pointers.get(address) ?? null;
    this.#pointers.delete(address);
    return pointer;
  }
}
