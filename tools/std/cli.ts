/**
 * The command-line parser the tools use, behind the import-map entry `#cli`:
 * `node:util`'s `parseArgs`, standing in for `@std/cli` (JSR is unreachable
 * here; see the README). Switching means offering this `parseArgs` shape
 * over `@std/cli`'s here.
 *
 * @example
 * ```ts
 * import assert from "#assert";
 * import { parseArgs } from "#cli";
 *
 * const { values } = parseArgs({ args: ["--ops", "10"], options: { ops: { type: "string" } } });
 * assert.equal(values.ops, "10");
 * ```
 *
 * @module
 */

export { parseArgs } from "node:util";
