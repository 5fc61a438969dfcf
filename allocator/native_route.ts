/**
 * Routing a policy's searches to the Zig library.
 *
 * @module
 */

import type { ControlBlock } from "./control_block.ts";
import type { FreeListPolicy } from "./policy.ts";

/** `"auto"` uses the library where present and faster, `true` requires it, `false` never loads it. */
export type NativeMode = "auto" | boolean;

/**
 * Connects `policy` to the native library according to `mode`.
 *
 * @returns True when native searches are active.
 */
export function attachNative(
  mode: NativeMode,
  _policy: FreeListPolicy,
  _buffer: ArrayBuffer,
  _baseAddress: number,
  _control: ControlBlock,
): boolean {
  if (mode !== "auto" && mode !== true && mode !== false) {
    throw new TypeError(`native mode ${String(mode)}`);
  }
  return false;
}
