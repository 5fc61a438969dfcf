/**
 * A fresh compiled copy of a function, with type feedback of its own.
 *
 * V8 keeps type feedback per function literal (and per cached source). A
 * timed loop shared by several FFI libraries sees several call targets at
 * each call site, turns polymorphic and loses Deno's fast FFI call path:
 * whichever target runs it first is timed fast and the others several times
 * slower. Giving every target its own copy keeps each one monomorphic, so
 * the replay times each allocator, not the order the targets ran in.
 *
 * @module
 */

/** Copies made so far: part of each copy's source, so no two share a cache entry. */
let copyCount = 0;

/**
 * Compiles `fn` again from its source text. The copy sees only globals and
 * the names in `scope`, never the module's other bindings, so `fn` must use
 * nothing else.
 *
 * @param fn A function that uses only its parameters, globals and `scope`.
 * @param scope Values the copy may refer to by name (constants, helpers).
 * @returns The copy; it behaves as `fn` does.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { freshCopy } from "./fresh_copy.ts";
 *
 * const FACTOR = 1; // what `scale` sees; its copy sees the scope's FACTOR instead
 * const scale = (x: number) => x * FACTOR;
 * const copy = freshCopy(scale, { FACTOR: 2 });
 * assert.equal(scale(21), 21);
 * assert.equal(copy(21), 42);
 * ```
 */
// deno-lint-ignore no-explicit-any
export function freshCopy<F extends (...args: any[]) => unknown>(
  fn: F,
  scope: Record<string, unknown> = {},
): F {
  const names = Object.keys(scope);
  const make = new Function(...names, `return (${fn.toString()}); // copy ${++copyCount}`);
  return make(...names.map((name) => scope[name])) as F;
}
