/**
 * The C ABI of `libpma` (built from `native/root.zig`): one symbol table for
 * `Deno.dlopen`, the ABI version the loader's handshake expects, and the ids
 * of the layout constants `pma_layout_value` reports.
 *
 * Addresses and sizes cross the boundary as `f64` (exact below 2^53), so a
 * call costs no bigint and no pointer object. Memory is reached through three
 * numbers: `window_address`, the host pointer of the memory window's byte 0,
 * `window_bytes`, its length, and `base_address`, the address that byte
 * stands for; the host pointer of address `a` is
 * `window_address + (a - base_address)`. The control block is passed as its
 * own host pointer and length (it may live outside the window). libpma
 * checks every argument and every read against these lengths in every build
 * mode and answers a failed check with a negative result
 * ({@linkcode NATIVE_RESULT} in `loader.ts`). `key` is the heap's check-word key.
 *
 * @module
 */

/**
 * The ABI version this TS side speaks; `pma_abi_version()` must return it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { PMA_ABI_VERSION } from "./symbols.ts";
 *
 * assert.equal(PMA_ABI_VERSION, 4);
 * ```
 */
export const PMA_ABI_VERSION = 4;

/**
 * The names (as exported by `allocator/heap/layout.ts`) of the layout constants,
 * indexed by the id `pma_layout_value(id)` takes. Append only; never reorder.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { LAYOUT_VALUE_NAMES } from "./symbols.ts";
 *
 * assert.equal(LAYOUT_VALUE_NAMES[0], "GRANULE_BYTES");
 * ```
 */
export const LAYOUT_VALUE_NAMES = [
  "GRANULE_BYTES",
  "GRANULE_LOG2",
  "HEADER_BYTES",
  "HEADER_SIZE_LO_OFFSET",
  "HEADER_SIZE_HI_OFFSET",
  "HEADER_SLACK_OFFSET",
  "HEADER_CHECK_OFFSET",
  "FLAG_FREE",
  "FLAG_PREV_FREE",
  "FLAG_LAST",
  "FLAGS_MASK",
  "FREE_NEXT_OFFSET",
  "FREE_PREV_OFFSET",
  "FOOTER_BYTES",
  "MIN_BLOCK_BYTES",
  "HEADER_MAGIC",
  "CONTROL_MAGIC",
  "CONTROL_MAGIC_OFFSET",
  "CONTROL_POLICY_OFFSET",
  "CONTROL_FL_COUNT_OFFSET",
  "CONTROL_FL_BITMAP_OFFSET",
  "CONTROL_SL_BITMAPS_OFFSET",
  "POLICY_ID_FIRST_FIT",
  "POLICY_ID_TLSF",
  "SL_LOG2",
  "SL_COUNT",
  "SMALL_BLOCK_BYTES",
  "FL_COUNT_MAX",
  "ALIGN_BYTES_MAX",
] as const;

/**
 * The symbols of `libpma`, for `Deno.dlopen`. Each parameter carries its C
 * prototype as a comment. None of them blocks, allocates or keeps state.
 *
 * @example Opening a local build
 * ```ts ignore
 * import { NATIVE_SYMBOLS } from "./symbols.ts";
 *
 * const library = Deno.dlopen("zig-out/lib/libpma.so", NATIVE_SYMBOLS);
 * console.log(library.symbols.pma_block_ptr(0x1000)); // 4112
 * library.close();
 * ```
 */
export const NATIVE_SYMBOLS = {
  /** `uint32_t pma_abi_version(void)`: the ABI version, checked against PMA_ABI_VERSION. */
  pma_abi_version: { parameters: [], result: "u32" },
  /** `double pma_layout_value(uint32_t id)`: a layout constant by id, NaN past the last id. */
  pma_layout_value: {
    parameters: [
      "u32", // uint32_t id: index into LAYOUT_VALUE_NAMES
    ],
    result: "f64",
  },
  /** `double pma_control_heads_offset(uint32_t fl_count)`: `controlHeadsOffset(flCount)`. */
  pma_control_heads_offset: {
    parameters: [
      "u32", // uint32_t fl_count: first levels, 0 for first-fit
    ],
    result: "f64",
  },
  /** `double pma_control_bytes(uint32_t fl_count)`: `controlBytes(flCount)`. */
  pma_control_bytes: {
    parameters: [
      "u32", // uint32_t fl_count: first levels, 0 for first-fit
    ],
    result: "f64",
  },
  /** `uint32_t pma_header_check(double address, uint32_t word0, uint32_t word1, uint32_t slack, uint32_t key)`. */
  pma_header_check: {
    parameters: [
      "f64", // double address: the block address, an integer below 2^53
      "u32", // uint32_t word0: size low bits | flags
      "u32", // uint32_t word1: size high bits
      "u32", // uint32_t slack: the slack word
      "u32", // uint32_t key: the heap's check-word key
    ],
    result: "u32",
  },
  /** `double pma_align_up(double value, double align_bytes)`: `value` rounded up to a power of two. */
  pma_align_up: {
    parameters: [
      "f64", // double value: an integer below 2^53
      "f64", // double align_bytes: a power of two
    ],
    result: "f64",
  },
  /** `double pma_block_ptr(double block)`: the payload address of a block (block + HEADER_BYTES). */
  pma_block_ptr: {
    parameters: [
      "f64", // double block: a granule-aligned block address
    ],
    result: "f64",
  },
  /** First-fit scan: the first fitting free block in list order, 0 if none, negative on a failed check. */
  pma_first_fit_find: {
    parameters: [
      "f64", // double window_address: host pointer of window byte 0
      "f64", // double window_bytes: length of the window; no read leaves it
      "f64", // double base_address: the address window byte 0 stands for
      "f64", // double control_host: host pointer of the control block
      "f64", // double control_bytes: length of the control block; no read leaves it
      "u32", // uint32_t key: the heap's check-word key
      "f64", // double block_size_bytes: the block to place, header included
      "f64", // double align_bytes: payload alignment, a power of two >= 8
      "u32", // uint32_t steps_max: the most blocks to inspect
    ],
    result: "f64",
  },
  /** First-fit insert position: the listed block a free block goes after (0: head), -1 if the walk runs past steps_max, other negatives on a failed check. */
  pma_first_fit_predecessor: {
    parameters: [
      "f64", // double window_address: host pointer of window byte 0
      "f64", // double window_bytes: length of the window; no read leaves it
      "f64", // double base_address: the address window byte 0 stands for
      "f64", // double control_host: host pointer of the control block
      "f64", // double control_bytes: length of the control block; no read leaves it
      "f64", // double block: the free block to be listed
      "f64", // double after: a listed block known to precede `block`, or 0 to walk from the head
      "u32", // uint32_t steps_max: the listed block count; a longer walk means corruption
    ],
    result: "f64",
  },
  /** TLSF search: a fitting free block (a bounded walk of the request's own class, else good fit), 0 if none, negative on a failed check. */
  pma_tlsf_find: {
    parameters: [
      "f64", // double window_address: host pointer of window byte 0
      "f64", // double window_bytes: length of the window; no read leaves it
      "f64", // double base_address: the address window byte 0 stands for
      "f64", // double control_host: host pointer of the control block
      "f64", // double control_bytes: length of the control block; no read leaves it
      "u32", // uint32_t key: the heap's check-word key
      "f64", // double block_size_bytes: the block to place, header included
      "f64", // double align_bytes: payload alignment, a power of two >= 8
    ],
    result: "f64",
  },
} as const satisfies Deno.ForeignLibraryInterface;

/** The callable symbols of a loaded `libpma`. */
export type NativeSymbols = Deno.DynamicLibrary<typeof NATIVE_SYMBOLS>["symbols"];
