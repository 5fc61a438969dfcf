/**
 * Routing a policy's searches to the Zig library (`native/`).
 *
 * Only searches cross the FFI boundary; every write to the heap stays in
 * TypeScript, so both paths produce byte-identical heaps whenever their
 * searches agree, and the differential tests prove they do.
 *
 * Routing under `"auto"` follows `bench/native_bench.ts` (the figures are in
 * the README): a native first-fit walk beats the TS walk from a couple of
 * listed blocks on, so first-fit walks go native once the list holds
 * NATIVE_WALK_BLOCKS_MIN blocks (a margin over that crossover). A TLSF search
 * is a constant handful of reads that gains nothing from an FFI call, and the
 * TS fast path serves TLSF only without the library, so under `"auto"` TLSF
 * stays in TS, where it needs no library at all.
 * `native: true` sends every search of either policy to the library, which is
 * what the differential tests need.
 *
 * @module
 */

import type { ControlBlock } from "../control_block.ts";
import { HeapCorruptionError, InvalidOptionError } from "../../errors.ts";
import { describeValue, hex } from "../../memory/physical_memory.ts";
import { loadNative, NATIVE_RESULT, viewAddress } from "../../../native/loader.ts";
import type { FreeListPolicy } from "./policy.ts";
import { FirstFitPolicy, type NativeFirstFit } from "./first_fit.ts";
import { type NativeTlsfFind, TlsfPolicy } from "./tlsf.ts";
import type { NativeSymbols } from "../../../native/symbols.ts";

/** `"auto"` uses the library where present and faster, `true` requires it, `false` never loads it. */
export type NativeMode = "auto" | boolean;

/** Under `"auto"`, first-fit walks go native once the free list holds this many blocks. */
export const NATIVE_WALK_BLOCKS_MIN = 8;

/**
 * Connects `policy` to the native library according to `mode`.
 *
 * Every native search gets the window's host pointer and length and the
 * control block's host pointer and length, and checks every read against
 * them; a negative result (a refused argument, a damaged heap) becomes a
 * typed error here, before the TS side writes anything.
 *
 * @param mode The `native` option.
 * @param policy The policy whose searches may go native.
 * @param window The memory window: exactly the bytes native code may read.
 * @param baseAddress The address the window's byte 0 stands for.
 * @param control The policy's control block.
 * @param key The heap's check-word key.
 * @returns True when some searches run natively.
 * @throws {NativeUnavailableError} If `mode` is true and the library cannot serve this heap.
 * @throws {InvalidOptionError} If `mode` is not "auto", true or false.
 */
export function attachNative(
  mode: NativeMode,
  policy: FreeListPolicy,
  window: Uint8Array,
  baseAddress: number,
  control: ControlBlock,
  key: number,
): boolean {
  if (mode !== "auto" && mode !== true && mode !== false) {
    throw new InvalidOptionError(
      `Cannot create allocator with native ${describeValue(mode)}: expected "auto", true or false`,
    );
  }
  // TLSF under "auto" never searches natively: it must not even look for the library
  // (a path-scoped --allow-ffi would make the pointer lookups below throw).
  if (policy instanceof TlsfPolicy && mode !== true) return false;
  const symbols = loadNative(mode);
  if (symbols === null) return false;
  const pointers = hostPointers(mode, window, control);
  if (pointers === null) return false;
  const memory: NativeMemory = {
    ...pointers,
    windowBytes: window.byteLength,
    baseAddress,
    controlBytes: control.sizeBytes,
    controlAddress: control.address,
    key,
  };
  if (policy instanceof FirstFitPolicy) {
    policy.useNative(
      firstFitWalks(symbols, memory),
      mode === true ? 0 : NATIVE_WALK_BLOCKS_MIN,
    );
    return true;
  }
  if (!(policy instanceof TlsfPolicy)) return false;
  policy.useNative(tlsfFind(symbols, memory));
  return true;
}

/** The numbers every native search of one heap gets. */
interface NativeMemory {
  readonly windowAddress: number;
  readonly windowBytes: number;
  readonly baseAddress: number;
  readonly controlHost: number;
  readonly controlBytes: number;
  /** The control block's address in the heap (0 when it lives in a buffer of its own), for errors. */
  readonly controlAddress: number;
  readonly key: number;
}

/**
 * The first-fit walks over `memory`. The numbers are copied into constants
 * the closures capture, so a call costs no property loads; each argument list
 * is spelled out (a spread would allocate on the hot path).
 */
function firstFitWalks(symbols: NativeSymbols, memory: NativeMemory): NativeFirstFit {
  const { windowAddress, windowBytes, baseAddress, controlHost, controlBytes, key } = memory;
  const { controlAddress } = memory;
  const find = symbols.pma_first_fit_find;
  const predecessor = symbols.pma_first_fit_predecessor;
  return {
    find: (blockSizeBytes, alignBytes, stepsMax) =>
      checked(
        find(
          windowAddress,
          windowBytes,
          baseAddress,
          controlHost,
          controlBytes,
          key,
          blockSizeBytes,
          alignBytes,
          stepsMax,
        ),
        controlAddress,
      ),
    predecessor: (block, after, stepsMax) =>
      checked(
        predecessor(
          windowAddress,
          windowBytes,
          baseAddress,
          controlHost,
          controlBytes,
          block,
          after,
          stepsMax,
        ),
        controlAddress,
      ),
  };
}

/** The TLSF search over `memory` (see firstFitWalks). */
function tlsfFind(symbols: NativeSymbols, memory: NativeMemory): NativeTlsfFind {
  const { windowAddress, windowBytes, baseAddress, controlHost, controlBytes, key } = memory;
  const { controlAddress } = memory;
  const find = symbols.pma_tlsf_find;
  return (blockSizeBytes, alignBytes) =>
    checked(
      find(
        windowAddress,
        windowBytes,
        baseAddress,
        controlHost,
        controlBytes,
        key,
        blockSizeBytes,
        alignBytes,
      ),
      controlAddress,
    );
}

/** The host pointers of the window and control block, or null under "auto" when Deno refuses them. */
function hostPointers(
  mode: NativeMode,
  window: Uint8Array,
  control: ControlBlock,
): { windowAddress: number; controlHost: number } | null {
  try {
    return {
      windowAddress: viewAddress(window),
      controlHost: viewAddress(control.words) + 4 * control.index,
    };
  } catch (error) {
    // A path-scoped --allow-ffi lets the library load but refuses pointer lookups.
    if (mode === "auto") return null;
    throw error;
  }
}

/**
 * A native search result, or the typed error its negative code stands for
 * (codes in `native/root.zig`); -1 (a walk too long) passes through to the
 * caller, which reports it with the block it started from.
 */
function checked(result: number, controlAddress: number): number {
  if (result >= NATIVE_RESULT.WALK_TOO_LONG) return result;
  if (result === NATIVE_RESULT.INVALID_ARGUMENT) {
    // The numbers this side passes are its own, checked when the heap was
    // made: what libpma refuses then is the control block's words (magic,
    // policy id, first-level count), which a stray write can reach.
    throw new HeapCorruptionError(
      controlAddress,
      `Heap corruption at ${
        hex(controlAddress)
      }: libpma refused the control block (its magic, policy id or first-level count was overwritten) or the request`,
    );
  }
  const block = NATIVE_RESULT.CORRUPT_BASE - result;
  const at = block === 0 ? controlAddress : block;
  throw new HeapCorruptionError(
    at,
    `Heap corruption at ${
      hex(at)
    }: the native search found a damaged header, link or bitmap (a free block outside the window, with a bad check word, or out of order)`,
  );
}
