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
import { bufferAddress, controlAddressFor, loadNative } from "../../../native/loader.ts";
import type { FreeListPolicy } from "./policy.ts";
import { FirstFitPolicy } from "./first_fit.ts";
import { TlsfPolicy } from "./tlsf.ts";

/** `"auto"` uses the library where present and faster, `true` requires it, `false` never loads it. */
export type NativeMode = "auto" | boolean;

/** Under `"auto"`, first-fit walks go native once the free list holds this many blocks. */
export const NATIVE_WALK_BLOCKS_MIN = 8;

/**
 * Connects `policy` to the native library according to `mode`.
 *
 * @param mode The `native` option.
 * @param policy The policy whose searches may go native.
 * @param buffer The memory window.
 * @param baseAddress The address the window's byte 0 stands for.
 * @param control The policy's control block.
 * @returns True when some searches run natively.
 * @throws {NativeUnavailableError} If `mode` is true and the library cannot serve this heap.
 * @throws {InvalidOptionError} If `mode` is not "auto", true or false.
 */
export function attachNative(
  mode: NativeMode,
  policy: FreeListPolicy,
  buffer: ArrayBuffer,
  baseAddress: number,
  control: ControlBlock,
): boolean {
  const symbols = loadNative(mode);
  if (symbols === null) return false;
  const windowAddress = bufferAddress(buffer);
  const controlAddress = controlAddressFor(
    windowAddress,
    baseAddress,
    control.words,
    control.index,
  );
  if (policy instanceof FirstFitPolicy) {
    const find = symbols.pma_first_fit_find;
    const predecessor = symbols.pma_first_fit_predecessor;
    policy.useNative(
      {
        find: (blockSizeBytes, alignBytes, stepsMax) =>
          find(windowAddress, baseAddress, controlAddress, blockSizeBytes, alignBytes, stepsMax),
        predecessor: (block, after, stepsMax) =>
          predecessor(windowAddress, baseAddress, controlAddress, block, after, stepsMax),
      },
      mode === true ? 0 : NATIVE_WALK_BLOCKS_MIN,
    );
    return true;
  }
  if (policy instanceof TlsfPolicy && mode === true) {
    const find = symbols.pma_tlsf_find;
    policy.useNative((blockSizeBytes, alignBytes) =>
      find(windowAddress, baseAddress, controlAddress, blockSizeBytes, alignBytes)
    );
    return true;
  }
  return false;
}
