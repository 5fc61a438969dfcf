/**
 * The native library for tests: loaded if present; in CI (`CI=true`) a
 * missing library fails the test run, locally it is a visible skip.
 *
 * @module
 */

import { loadNative } from "../../native/loader.ts";
import type { NativeSymbols } from "../../native/symbols.ts";

/** True when running in CI, where the native library is required. */
export const IN_CI = Deno.env.get("CI") === "true";

/**
 * The native library, or null (with a printed skip notice) when it is absent
 * outside CI. In CI an absent library throws, so the test fails.
 *
 * @param what The tests that need the library, for the skip notice.
 */
export function nativeOrSkip(what: string): NativeSymbols | null {
  if (IN_CI) return loadNative(true);
  const native = loadNative("auto");
  if (native === null) {
    console.warn(
      `%cSKIPPED ${what}: native library not built (run \`bash tools/zig.sh build -Doptimize=ReleaseFast\`)`,
      "color: yellow; font-weight: bold",
    );
  }
  return native;
}
