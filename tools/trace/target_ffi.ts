/**
 * Native allocators called through Deno FFI as replay targets: glibc's
 * `malloc`, `free` and `realloc` (what a Deno program gets when it asks the C
 * library), mimalloc's `mi_malloc`, `mi_free` and `mi_realloc` (Debian's
 * `libmimalloc2.0`), and the Rust allocators rlsf (a TLSF) and talc (a
 * kernel-style allocator) through the project's own C wrapper
 * (`tools/trace/peers/`, see `rust_peers.ts`). jemalloc (`libjemalloc2`)
 * cannot be one: its initial-exec TLS makes `dlopen` fail with "cannot
 * allocate memory in static TLS block", and preloading it would replace
 * Deno's own malloc.
 *
 * Every peer is called through the same binding, {@linkcode FFI_BINDING}:
 * the fastest of those `bench/ffi_binding_bench.ts` measures. Sizes are
 * converted to BigInt once per trace, before timing, so the timed loop
 * passes and keeps only the values the binding returns. The checked face
 * converts to numbers for the verifying replay.
 *
 * glibc's and mimalloc's heap is the process's, warm from the verifying
 * replay and the warm-up runs. rlsf and talc manage an arena the target
 * keeps and reuses for every heap of the same size, so each repetition runs
 * on memory touched before. Their blocks cannot be seen from outside, so
 * `blockEnd` is NaN (no utilization score), and `close` frees every block
 * the replay left live.
 *
 * @module
 */

import { type DecodedTrace, REPLAY_ALLOC, REPLAY_FREE, REPLAY_REALLOC } from "./decode.ts";
import { freshCopy } from "./fresh_copy.ts";
import type { ReplayHeap, ReplayTarget } from "./replay_heap.ts";

/**
 * How pointers cross the FFI boundary: `"pointer"` objects, or `"usize"`
 * values kept as BigInt. Sizes are `"usize"` BigInts either way.
 */
export type FfiBinding = "pointer" | "usize";

/**
 * The binding every native peer uses: the fastest that
 * `bench/ffi_binding_bench.ts` measured on a replayed trace.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { FFI_BINDING } from "./target_ffi.ts";
 *
 * assert.ok(FFI_BINDING === "pointer" || FFI_BINDING === "usize");
 * ```
 */
export const FFI_BINDING: FfiBinding = "pointer";

/** The names of an allocator's functions in its library. */
interface SymbolNames {
  readonly malloc: string;
  readonly free: string;
  readonly realloc: string;
  /** For arena allocators (rlsf, talc): `int init(uint8_t *arena, size_t length)`. */
  readonly init?: string;
}

/** A pointer as the binding passes it: a pointer object (or null), or a BigInt (0n for NULL). */
type Native = Deno.PointerValue | bigint;

function symbolsOf(names: SymbolNames, binding: FfiBinding, sized: boolean) {
  const pointer = binding;
  return {
    /** void *malloc(size_t size); */
    malloc: { name: names.malloc, parameters: ["usize"], result: pointer },
    /** void free(void *ptr); or, sized: void free(void *ptr, size_t size); */
    free: { name: names.free, parameters: sized ? [pointer, "usize"] : [pointer], result: "void" },
    /** void *realloc(void *ptr, size_t size); or, sized: (void *ptr, size_t old, size_t size) */
    realloc: {
      name: names.realloc,
      parameters: sized ? [pointer, "usize", "usize"] : [pointer, "usize"],
      result: pointer,
    },
    ...(names.init === undefined ? {} : {
      /** int init(uint8_t *arena, size_t length); */
      init: { name: names.init, parameters: ["buffer", "usize"], result: "u32" },
    }),
  } as const satisfies Deno.ForeignLibraryInterface;
}

/** The symbols as called; `size` arguments exist only for sized allocators. */
interface NativeAllocator {
  malloc(sizeBytes: bigint): Native;
  free(pointer: Native, sizeBytes?: bigint): void;
  realloc(pointer: Native, oldOrNewBytes: bigint, sizeBytes?: bigint): Native;
  init(arena: ArrayBuffer, lengthBytes: bigint): number;
}

/**
 * True when the shared library at `path` can be loaded (nothing is bound).
 *
 * @param path A library path or soname.
 * @returns Whether `Deno.dlopen` succeeds.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { libraryOpens } from "./target_ffi.ts";
 *
 * assert.equal(libraryOpens("/nonexistent/libnothing.so"), false);
 * ```
 */
export function libraryOpens(path: string): boolean {
  try {
    Deno.dlopen(path, {}).close();
    return true;
  } catch {
    return false;
  }
}

/** glibc's chunk header: the size word (the previous chunk's size overlaps its payload). */
const GLIBC_HEADER_BYTES = 8;
/** mimalloc keeps no per-block header (size classes live in page metadata). */
const MIMALLOC_HEADER_BYTES = 0;

/** Options of the native peers' targets. */
export interface FfiTargetOptions {
  /** The library to load. */
  readonly libraryPath?: string;
  /** The binding. @default {FFI_BINDING} */
  readonly binding?: FfiBinding;
}

/**
 * The glibc replay target; loads `libc.so.6` on first use.
 *
 * @param options The library and the binding.
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
 * for (const binding of ["pointer", "usize"] as const) {
 *   const heap = glibcTarget({ binding }).create(trace, 0);
 *   assert.equal(heap.run(trace), 0);
 *   heap.close();
 * }
 * ```
 */
export function glibcTarget(options: FfiTargetOptions = {}): ReplayTarget {
  const names = { malloc: "malloc", free: "free", realloc: "realloc" };
  return ffiTarget("glibc", options.libraryPath ?? "libc.so.6", names, {
    headerBytesPerBlock: GLIBC_HEADER_BYTES,
    binding: options.binding,
  });
}

/**
 * The mimalloc replay target; loads `libmimalloc.so.2` on first use.
 *
 * @param options The library and the binding.
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
export function mimallocTarget(options: FfiTargetOptions = {}): ReplayTarget {
  const names = { malloc: "mi_malloc", free: "mi_free", realloc: "mi_realloc" };
  return ffiTarget("mimalloc", options.libraryPath ?? "libmimalloc.so.2", names, {
    headerBytesPerBlock: MIMALLOC_HEADER_BYTES,
    binding: options.binding,
  });
}

/**
 * A replay target for one of the Rust peers of `tools/trace/peers/` (an
 * arena allocator whose `free` and `realloc` take the block's size).
 *
 * @param name `rlsf` or `talc`: the prefix of its functions (`rlsf_peer_malloc`...).
 * @param libraryPath The built `cdylib` (see `rust_peers.ts`).
 * @param headerBytesPerBlock The allocator's header bytes per live block.
 * @param binding The binding, default {@linkcode FFI_BINDING}.
 * @returns The target, named `name`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { rustPeerTarget } from "./target_ffi.ts";
 *
 * assert.equal(rustPeerTarget("talc", "/nonexistent/libpma_peers.so", 8).name, "talc");
 * ```
 */
export function rustPeerTarget(
  name: "rlsf" | "talc",
  libraryPath: string,
  headerBytesPerBlock: number,
  binding?: FfiBinding,
): ReplayTarget {
  const names = {
    malloc: `${name}_peer_malloc`,
    free: `${name}_peer_free`,
    realloc: `${name}_peer_realloc`,
    init: `${name}_peer_init`,
  };
  return ffiTarget(name, libraryPath, names, { headerBytesPerBlock, binding, arena: true });
}

interface FfiTargetShape {
  readonly headerBytesPerBlock: number;
  readonly binding?: FfiBinding;
  /** True for allocators over an arena of their own (sized free and realloc). */
  readonly arena?: boolean;
}

function ffiTarget(
  name: string,
  libraryPath: string,
  names: SymbolNames,
  shape: FfiTargetShape,
): ReplayTarget {
  const binding = shape.binding ?? FFI_BINDING;
  const sized = shape.arena === true;
  let library: NativeAllocator | null = null;
  // A loop of its own, so its FFI calls stay monomorphic (see fresh_copy.ts).
  const loop = freshCopy(sized ? runSized : runUnsized, {
    REPLAY_ALLOC,
    REPLAY_FREE,
    REPLAY_REALLOC,
    bigSizes,
  });
  // One arena for every heap of the same size: memory touched before.
  let arena: ArrayBuffer | null = null;
  return {
    name,
    own: false,
    headerBytesPerBlock: shape.headerBytesPerBlock,
    create(trace: DecodedTrace, heapBytes: number): ReplayHeap {
      library ??= Deno.dlopen(libraryPath, symbolsOf(names, binding, sized))
        .symbols as unknown as NativeAllocator;
      if (sized) {
        const lengthBytes = Math.ceil(heapBytes / 4096) * 4096;
        if (arena?.byteLength !== lengthBytes) arena = new ArrayBuffer(lengthBytes);
        new Uint8Array(arena).fill(0);
        if (library.init(arena, BigInt(lengthBytes)) !== 1) {
          throw new RangeError(`${name} cannot make a heap of ${lengthBytes} bytes`);
        }
      }
      return new FfiHeap(library, binding, sized, loop, trace);
    },
  };
}

/** Each trace's sizes as BigInts, made once (the timed loop never converts). */
const bigSizesOf = new WeakMap<Float64Array, bigint[]>();

function bigSizes(trace: DecodedTrace): bigint[] {
  let sizes = bigSizesOf.get(trace.sizesBytes);
  if (sizes === undefined) {
    sizes = Array.from(trace.sizesBytes, (size) => BigInt(size > 0 ? size : 1));
    bigSizesOf.set(trace.sizesBytes, sizes);
  }
  return sizes;
}

class FfiHeap implements ReplayHeap {
  readonly baseAddress = 0;
  readonly #native: NativeAllocator;
  readonly #nil: Native;
  readonly #sized: boolean;
  readonly #loop: RunLoop;
  readonly #slots: Native[];
  readonly #slotSizes: bigint[];
  /** Live blocks of the checked face, by address: the native value and the size. */
  readonly #blocks = new Map<number, { value: Native; sizeBytes: bigint }>();

  constructor(
    native: NativeAllocator,
    binding: FfiBinding,
    sized: boolean,
    loop: RunLoop,
    trace: DecodedTrace,
  ) {
    this.#native = native;
    this.#nil = binding === "pointer" ? null : 0n;
    this.#sized = sized;
    this.#loop = loop;
    this.#slots = new Array(trace.slotCount).fill(this.#nil);
    this.#slotSizes = new Array(trace.slotCount).fill(0n);
  }

  alloc(sizeBytes: number): number {
    const size = BigInt(sizeBytes);
    return this.#keep(this.#native.malloc(size), size);
  }

  free(address: number): void {
    const block = this.#take(address);
    this.#free(block.value, block.sizeBytes);
  }

  realloc(address: number, sizeBytes: number): number {
    const block = this.#blocks.get(address) ?? { value: this.#nil, sizeBytes: 0n };
    const size = BigInt(sizeBytes);
    const moved = this.#sized
      ? this.#native.realloc(block.value, block.sizeBytes, size)
      : this.#native.realloc(block.value, size);
    if (moved === this.#nil) return 0;
    this.#take(address);
    return this.#keep(moved, size);
  }

  view(address: number, lengthBytes: number): Uint8Array {
    const pointer = pointerOf(this.#blocks.get(address)!.value);
    return new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(pointer!, lengthBytes));
  }

  blockEnd(): number {
    return NaN;
  }

  check(): void {}

  run(trace: DecodedTrace): number {
    return this.#loop(this.#native, this.#nil, this.#slots, this.#slotSizes, trace);
  }

  close(): void {
    for (let id = 0; id < this.#slots.length; id++) {
      if (this.#slots[id] !== this.#nil) this.#free(this.#slots[id], this.#slotSizes[id]);
      this.#slots[id] = this.#nil;
    }
    for (const block of this.#blocks.values()) this.#free(block.value, block.sizeBytes);
    this.#blocks.clear();
  }

  #free(value: Native, sizeBytes: bigint): void {
    if (this.#sized) this.#native.free(value, sizeBytes);
    else this.#native.free(value);
  }

  #keep(value: Native, sizeBytes: bigint): number {
    if (value === this.#nil) return 0;
    const address = Number(typeof value === "bigint" ? value : Deno.UnsafePointer.value(value));
    this.#blocks.set(address, { value, sizeBytes });
    return address;
  }

  #take(address: number): { value: Native; sizeBytes: bigint } {
    const block = this.#blocks.get(address) ?? { value: this.#nil, sizeBytes: 0n };
    this.#blocks.delete(address);
    return block;
  }
}

/** A timed loop: replays `trace` through `native`, returns the failed requests. */
type RunLoop = (
  native: NativeAllocator,
  nil: Native,
  slots: Native[],
  slotSizes: bigint[],
  trace: DecodedTrace,
) => number;

/** The timed loop of C-style allocators: `free(ptr)`, `realloc(ptr, size)`. */
function runUnsized(
  native: NativeAllocator,
  nil: Native,
  slots: Native[],
  _slotSizes: bigint[],
  trace: DecodedTrace,
): number {
  const { malloc, free, realloc } = native;
  const sizes = bigSizes(trace);
  const { kinds, ids, opCount } = trace;
  let failed = 0;
  for (let i = 0; i < opCount; i++) {
    const kind = kinds[i];
    const id = ids[i];
    if (kind === REPLAY_ALLOC) {
      const pointer = malloc(sizes[i]);
      if (pointer === nil) failed++;
      slots[id] = pointer;
    } else if (kind === REPLAY_FREE) {
      free(slots[id]);
      slots[id] = nil;
    } else if (kind === REPLAY_REALLOC) {
      const moved = realloc(slots[id], sizes[i]);
      if (moved === nil) failed++;
      else slots[id] = moved;
    }
  }
  return failed;
}

/** The timed loop of sized allocators: `free(ptr, size)`, `realloc(ptr, old, size)`. */
function runSized(
  native: NativeAllocator,
  nil: Native,
  slots: Native[],
  slotSizes: bigint[],
  trace: DecodedTrace,
): number {
  const { malloc, free, realloc } = native;
  const sizes = bigSizes(trace);
  const { kinds, ids, opCount } = trace;
  let failed = 0;
  for (let i = 0; i < opCount; i++) {
    const kind = kinds[i];
    const id = ids[i];
    if (kind === REPLAY_ALLOC) {
      const pointer = malloc(sizes[i]);
      if (pointer === nil) failed++;
      slots[id] = pointer;
      slotSizes[id] = sizes[i];
    } else if (kind === REPLAY_FREE) {
      if (slots[id] !== nil) free(slots[id], slotSizes[id]);
      slots[id] = nil;
    } else if (kind === REPLAY_REALLOC) {
      const moved = realloc(slots[id], slotSizes[id], sizes[i]);
      if (moved === nil) failed++;
      else {
        slots[id] = moved;
        slotSizes[id] = sizes[i];
      }
    }
  }
  return failed;
}

function pointerOf(value: Native): Deno.PointerValue {
  return typeof value === "bigint" ? Deno.UnsafePointer.create(value) : value;
}
