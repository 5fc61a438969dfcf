/**
 * The assertions the tests and tools use, behind the import-map entry
 * `#assert`: `node:assert/strict`, standing in for `@std/assert` (JSR is
 * unreachable here; see the README). Switching to `@std/assert` means
 * rewriting this one module to give its functions these names.
 *
 * The entry points at this module rather than at `node:assert/strict`
 * itself because through a bare import-map entry the checker loses the
 * `asserts` signatures (`assert.ok(x)` would no longer narrow `x`).
 *
 * @example
 * ```ts
 * import assert from "#assert";
 *
 * const found: number | undefined = [1, 2].find((n) => n > 1);
 * assert.ok(found);
 * assert.equal(found + 1, 3);
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";

export default assert;
